"""What a run reports while it works: the :class:`Listener` the driver and the executors call (extraction
of missing features included). The CLI turns it into progress lines and bars; every method is a no-op here."""

from __future__ import annotations

from ..inputs.progress import ExtractListener


class Listener(ExtractListener):
    """Progress events of one run, in the order they happen; implementations must not raise."""

    def planned(self, cells_total: int, cells_done: int, configs_todo: int, epochs: int) -> None: ...

    def loading(self, source) -> None: ...  # a SourceSpec whose features are being loaded

    def job_started(self, job) -> None: ...

    def epoch(self, job, epoch: int) -> None: ...

    def job_finished(self, job, new_configs: int) -> None: ...

    def job_failed(self, failure) -> None: ...

    def cell_finished(self, cell, done: int, total: int) -> None: ...
