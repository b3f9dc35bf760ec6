"""The local executor: jobs one after the other in this process (``--executor local``, the default)."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator

from ...inputs.features import FeatureSet
from ...records import REFIT
from ..jobs import JobFailure, JobResult, LoadOptions, TrainJob, execute_job, load_source
from ..progress import Listener


class LocalExecutor:
    """Runs jobs one at a time in this process, REFIT jobs first so cells finish as early as possible.

    Keeps the most recently loaded feature set, so jobs of one source share one load. A job that raises
    is yielded as a :class:`JobFailure` (no retry: training is deterministic, so it would raise again); a
    source that fails to load fails its later jobs with the same error without loading it again.
    """

    def __init__(self, host, options: LoadOptions, listener: Listener | None = None):
        self.host = host
        self.options = options
        self.listener = listener or Listener()
        self._refits: deque[TrainJob] = deque()
        self._search: deque[TrainJob] = deque()
        self._loaded: tuple[str, FeatureSet] | None = None
        self._broken: dict[str, BaseException] = {}  # source id -> why it could not be loaded

    def submit(self, job: TrainJob) -> None:
        (self._refits if job.phase == REFIT else self._search).append(job)

    def _features(self, job: TrainJob) -> FeatureSet:
        if job.source_id in self._broken:
            raise self._broken[job.source_id]
        if self._loaded is None or self._loaded[0] != job.source_id:
            self._loaded = None  # free the previous source first
            self.listener.loading(job.source)
            try:
                self._loaded = (job.source_id, load_source(job.source, self.host, self.options, self.listener))
            except Exception as exc:
                self._broken[job.source_id] = exc
                raise
        return self._loaded[1]

    def completed(self) -> Iterator[JobResult | JobFailure]:
        while self._refits or self._search:
            job = self._refits.popleft() if self._refits else self._search.popleft()
            try:
                fs = self._features(job)
                self.listener.job_started(job)
                result = execute_job(job, fs, self.host, on_epoch=lambda e, j=job: self.listener.epoch(j, e))
            except Exception as exc:  # KeyboardInterrupt is no job failure: it stops the run
                yield JobFailure.from_exception(job, exc)
                continue
            yield result


@contextlib.contextmanager
def session(spec) -> Iterator[str]:
    """This machine's device for ``spec.device`` (``auto``: CUDA if present)."""
    from ...device import resolve_device

    yield resolve_device(spec.device)


def default_threads() -> int:
    """Torch threads a job trains with when ``--threads`` is not given: all this process has."""
    import torch

    return torch.get_num_threads()


def create(spec, host, load: LoadOptions, listener: Listener) -> LocalExecutor:
    return LocalExecutor(host, load, listener)
