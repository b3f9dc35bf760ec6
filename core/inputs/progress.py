"""What extraction and downloads report while they work. Nothing in :mod:`featbench.inputs` prints: it
calls an :class:`ExtractListener`, whose methods are no-ops here; the command line prints the messages and
draws the progress bars."""

from __future__ import annotations


class ExtractListener:
    """Progress of feature extraction; implementations must not raise."""

    def message(self, text: str) -> None:
        """A one-line event: a model being built, a split being extracted or read from the cache."""

    def images_started(self, desc: str, total: int, done: int) -> None:
        """Extraction of ``total`` images begins, ``done`` of them already cached (a resumed entry)."""

    def images_done(self, n: int) -> None:
        """``n`` more images were extracted."""

    def images_finished(self) -> None:
        """The images of the last :meth:`images_started` are done (or extraction stopped)."""

    def fetching(self, line: str) -> None:
        """The one-line plan of what is about to be downloaded (a refusal repeats it in its error)."""

    def bytes_started(self, desc: str, total: int | None, done: int) -> None:
        """A download of ``total`` bytes (None: unknown) begins, ``done`` of them already here (a resumed file)."""

    def bytes_done(self, n: int) -> None:
        """``n`` more bytes arrived."""

    def bytes_finished(self) -> None:
        """The download of the last :meth:`bytes_started` ended (or stopped)."""
