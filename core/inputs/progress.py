"""What extraction reports while it works. Nothing in :mod:`featbench.inputs` prints: it calls an
:class:`ExtractListener`, whose methods are no-ops here; the command line prints the messages and draws
the progress bars."""

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
