"""The driver of a run: cells = feature source (data set × backbone set) × augmenter row × seed.

:class:`Runner` takes the plan (:mod:`featbench.bench.plan`), asks the results store what is already
recorded, and hands the rest to an executor (:mod:`featbench.bench.executors`) as
:class:`~featbench.bench.jobs.TrainJob` s: one job is one K-stack of configurations of one cell, in the
SEARCH phase (grid points, scored on validation and test) or the REFIT phase (the configuration chosen on
validation, trained on train+val, scored on test). Executors only compute; the driver alone writes the
store, one transaction per finished job, so a run killed at any moment resumes with every finished stack
kept. Stacks are planned from the full grid (structural groups cut into stacks of ``stack_size``) and
recorded all-or-nothing, so a resumed run trains exactly the stacks an uninterrupted one would have, and
gets bit-identical numbers. A job that raises (or whose worker dies for good) comes back as a
:class:`~featbench.bench.jobs.JobFailure`: the cells that needed it are reported failed, every other cell
goes on, and a rerun retries only them.

With ``--search halving`` (featbench.training.halving) a cell's search is a sequence of rungs: a rung's
jobs are the K-stacks of the configurations still alive, each trained from the previous rung's recorded
head states to the rung's epoch; when every stack of a rung is recorded, the best fraction on
validation goes on. Each rung record carries its ``rung_epoch``; the states are kept in the store until
the cell is finished, so a killed run resumes at the last finished rung. With ``--probe lbfgs`` every
source and seed also gets a probe cell, one PROBE job (featbench.training.probe) whose sweep and refit
are recorded together.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence

import attrs

from ..records import PROBE, REFIT, SEARCH, CellRecord, ConfigRecord, select_best
from . import executors
from .executors import Executor
from .jobs import JobFailure, JobResult, LoadOptions, TrainJob
from .plan import CellPlan, Plan, config_key, make_plan, plan_cells
from .progress import Listener
from .spec import RunSpec

# ---- the driver -------------------------------------------------------------------------------


@attrs.frozen
class RunOutcome:
    run_id: int
    cell_keys: tuple[str, ...]  # planned, in table order
    cells_finished: int  # cells finished by this run
    cells_skipped: int  # cells already in the store
    configs_trained: int  # configurations newly recorded by this run
    interrupted: bool
    failures: Mapping[str, JobFailure] = attrs.field(factory=dict)  # cell key -> the job failure that stopped it

    @property
    def cells_failed(self) -> int:
        return len(self.failures)


def environment(device: str, executor: str = "local", threads: int | None = None) -> dict:
    """Versions and machine facts recorded with every run (the driver's; Ray workers must match them)."""
    import numpy
    import torch

    from .. import __version__

    v = {"featbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
         "numpy": numpy.__version__, "platform": platform.platform(), "device": device, "executor": executor,
         "threads": threads if threads is not None else executors.module(executor).default_threads()}
    if device.startswith("cuda") and torch.cuda.is_available():  # a Ray driver may have no GPU of its own
        v["gpu"] = torch.cuda.get_device_name(0)
    return v


class Runner:
    """Plans cells, skips what the store holds, feeds the rest to an executor and records every result."""

    def __init__(self, spec: RunSpec, host, store, *, device: str, registry_path: str | None = None,
                 executor: Executor | None = None, listener: Listener | None = None, load: LoadOptions | None = None,
                 plan: Plan | None = None):
        self.spec = spec
        self.host = host
        self.store = store
        self.device = device
        self.listener = listener or Listener()
        self.load = load or LoadOptions.from_spec(spec, device)
        self.plan = plan or make_plan(spec, host, registry_path)
        self.cells = plan_cells(spec, self.plan, device, self.load.weights)
        self.executor = executor or executors.create(spec, host, self.load, self.listener)
        self._by_key = {c.key: c for c in self.cells}

    def run(self) -> RunOutcome:
        spec, store = self.spec, self.store
        keys = [c.key for c in self.cells]
        versions = {**environment(self.device, spec.executor, spec.threads), "plugins": self.host.distributions()}
        run_id = store.begin_run(spec.to_json(), versions, keys)
        done = store.done_cells(keys)
        pending = [c for c in self.cells if c.key not in done]
        self._run_id = run_id
        self._owners: dict[str, list[str]] = {}  # config key -> cells waiting on it
        self._waiting: dict[str, set[str]] = {}  # cell key -> search keys it still needs
        self._in_flight: set[str] = set()
        self._sources: set[str] = set()
        self._finished = 0
        self._failures: dict[str, JobFailure] = {}
        self._trained = 0
        self._done_total = len(done)
        todo = 0
        interrupted = False
        try:
            for cell in pending:
                todo += self._start(cell)
            self.listener.planned(len(keys), len(done), todo, spec.epochs)
            for result in self.executor.completed():
                if isinstance(result, JobFailure):
                    self._fail(result)
                else:
                    self._record(result)
        except KeyboardInterrupt:
            interrupted = True
        except BaseException:
            store.finish_run(run_id, "failed")  # everything finished so far stays recorded
            raise
        store.finish_run(run_id, "interrupted" if interrupted else "failed" if self._failures else "finished")
        return RunOutcome(
            run_id, tuple(keys), self._finished, len(done), self._trained, interrupted, dict(self._failures)
        )

    # -- scheduling ------------------------------------------------------------------------

    def _job(
        self,
        cell: CellPlan,
        phase: str,
        configs: Sequence[Mapping[str, float]],
        keys: Sequence[str],
        stop: int | None = None,
        states: Sequence[bytes] = (),
    ) -> TrainJob:
        bb = f"/{cell.source.backbone_label}" if cell.source.backbones else ""
        rung = f" (rung: epoch {stop})" if stop is not None else ""
        return TrainJob(
            source=cell.source,
            source_id=cell.source_id,
            augmenter=cell.row.augmenter,
            loss=cell.loss,
            phase=phase,
            configs=tuple(dict(c) for c in configs),
            keys=tuple(keys),
            settings=cell.settings,
            val_fraction=self.spec.val_fraction,
            log_every=self.spec.log_every,
            label=f"{cell.row.label} on {cell.source.dataset}{bb} seed {cell.seed}{rung}",
            threads=self.spec.threads,
            stop_epoch=stop,
            states=tuple(states),
        )

    def _submit(self, job: TrainJob) -> int:
        self._in_flight.update(job.keys)
        self.executor.submit(job)
        return len(job.keys)

    def _start(self, cell: CellPlan) -> int:
        """Submit what the cell still needs; returns the number of configurations submitted."""
        if cell.rungs:
            return self._start_rung(cell)
        if cell.probe:
            key = self._refit_key(cell, {})
            if key in self.store.configs([key]):
                self._finish(cell)
                return 0
            self._owners.setdefault(key, []).append(cell.key)
            return self._submit(self._job(cell, PROBE, [{}], [key]))
        if not cell.search_keys:
            return self._refit(cell)
        recorded = self.store.configs(cell.search_keys)
        missing: set[str] = set()
        n = 0
        for group in cell.stacks:
            gkeys = [cell.search_keys[i] for i in group]
            if all(k in recorded for k in gkeys):
                continue
            missing.update(k for k in gkeys if k not in recorded)
            if not any(k in self._in_flight for k in gkeys):
                n += self._submit(self._job(cell, SEARCH, [cell.configs[i] for i in group], gkeys))
        if not missing:
            return self._refit(cell)
        self._waiting[cell.key] = missing
        for k in missing:
            self._owners.setdefault(k, []).append(cell.key)
        return n + 1  # and its refit, later

    def _halving(self, cell: CellPlan) -> tuple[int, list[int], list[ConfigRecord]]:
        """Where a halving cell stands: (the first rung not fully recorded, or len(rungs) when all are;
        the configurations alive at it; every rung record so far, rung by rung)."""
        from ..training.halving import survivors

        alive = list(range(len(cell.configs)))
        done: list[ConfigRecord] = []
        for r in range(len(cell.rungs)):
            keys = [cell.rung_keys[r][i] for i in alive]
            recs = self.store.configs(keys)
            if len(recs) < len(keys):
                return r, alive, done
            done += [recs[k] for k in keys]
            if r + 1 < len(cell.rungs):
                alive = [alive[j] for j in survivors([recs[k].val for k in keys], cell.keep)]
        return len(cell.rungs), alive, done

    def _start_rung(self, cell: CellPlan) -> int:
        """Submit the K-stacks of the cell's first unfinished rung (its refit once every rung is recorded)."""
        from ..training.protocol import stacks

        r, alive, _ = self._halving(cell)
        if r == len(cell.rungs):
            return self._refit(cell)
        keys = cell.rung_keys[r]
        recorded = self.store.configs([keys[i] for i in alive])
        before = self.store.head_states([cell.rung_keys[r - 1][i] for i in alive]) if r else {}
        missing: set[str] = set()
        n = 0
        for group in stacks(cell.row.params, [cell.configs[i] for i in alive], self.spec.stack_size):
            idx = [alive[j] for j in group]
            gkeys = [keys[i] for i in idx]
            if all(k in recorded for k in gkeys):
                continue
            missing.update(k for k in gkeys if k not in recorded)
            if any(k in self._in_flight for k in gkeys):
                continue
            states = [before.get(cell.rung_keys[r - 1][i]) for i in idx] if r else []
            if any(s is None for s in states):  # a state that is gone is recomputed from epoch 0 (same numbers)
                states = []
            n += self._submit(self._job(cell, SEARCH, [cell.configs[i] for i in idx], gkeys, cell.rungs[r], states))
        self._waiting[cell.key] = missing
        for k in missing:
            self._owners.setdefault(k, []).append(cell.key)
        return n + 1

    def _probe_key(self, cell: CellPlan, wd: float) -> str:
        return config_key(
            cell.source_id, cell.augmenter, cell.loss, SEARCH, {"wd": wd}, cell.settings, self.spec.val_fraction
        )

    def _chosen(self, cell: CellPlan) -> tuple[dict, list[ConfigRecord]]:
        if cell.probe:
            from ..training.probe import candidates

            key = self._refit_key(cell, {})
            recs = self.store.configs([key, *(self._probe_key(cell, wd) for wd in candidates())])
            search = sorted((r for k, r in recs.items() if k != key), key=lambda r: r.hp["wd"])
            return dict(recs[key].hp), search
        if cell.rungs:
            _, alive, done = self._halving(cell)
            last = done[-len(alive) :]
            return dict(cell.configs[alive[select_best([rec.val for rec in last])]]), done
        if not cell.search_keys:
            return dict(cell.configs[0]), []
        recs = self.store.configs(cell.search_keys)
        search = [recs[k] for k in cell.search_keys]
        return dict(cell.configs[select_best([r.val for r in search])]), search

    def _refit_key(self, cell: CellPlan, hp: Mapping[str, float]) -> str:
        if cell.probe:  # one key for the whole probe (its weight decay is chosen inside the job)
            return config_key(
                cell.source_id, cell.augmenter, cell.loss, REFIT, {"probe": cell.augmenter}, cell.settings,
                self.spec.val_fraction,
            )
        return config_key(
            cell.source_id, cell.row.augmenter, cell.loss, REFIT, hp, cell.settings, self.spec.val_fraction
        )

    def _refit(self, cell: CellPlan) -> int:
        hp, _ = self._chosen(cell)
        key = self._refit_key(cell, hp)
        if key in self.store.configs([key]):
            self._finish(cell)
            return 0
        self._owners.setdefault(key, []).append(cell.key)
        if key in self._in_flight:
            return 0
        return self._submit(self._job(cell, REFIT, [hp], [key]))

    # -- recording -------------------------------------------------------------------------

    def _record(self, result: JobResult) -> None:
        job = result.job
        if job.source_id not in self._sources:
            s = result.source
            self.store.record_source(
                job.source_id, s.dataset, s.backbones, s.metric, s.num_classes, s.test_y, s.cache_keys, s.files
            )
            self._sources.add(job.source_id)
        keys, phases = list(job.keys), [job.phase] * len(job.keys)
        if job.phase == PROBE:  # the sweep's keys follow from the values it tried; the refit's is the job's
            cell = self._by_key[self._owners[job.keys[0]][0]]
            keys = [self._probe_key(cell, o.hp["wd"]) for o in result.outcomes[:-1]] + keys
            phases = [SEARCH] * (len(keys) - 1) + [REFIT]
        records = [
            ConfigRecord(
                key=k,
                source_id=job.source_id,
                augmenter=job.augmenter,
                loss=job.loss,
                seed=job.settings.seed,
                phase=p,
                device=result.device,
                **attrs.asdict(o, recurse=False),
            )
            for k, p, o in zip(keys, phases, result.outcomes)
        ]
        new = self.store.record_configs(self._run_id, records)
        self._trained += new
        self._in_flight.difference_update(job.keys)
        self.listener.job_finished(job, new)
        for k in job.keys:
            for cell_key in self._owners.pop(k, []):
                cell = self._by_key[cell_key]
                if job.phase in (REFIT, PROBE):
                    self._finish(cell)
                    continue
                waiting = self._waiting.get(cell_key)
                if waiting is not None:
                    waiting.discard(k)
                    if not waiting:
                        del self._waiting[cell_key]
                        if cell.rungs:
                            self._start_rung(cell)
                        else:
                            self._refit(cell)

    def _fail(self, failure: JobFailure) -> None:
        """A job failed for good: every cell waiting on it fails in this run (what it recorded stays)."""
        job = failure.job
        self._in_flight.difference_update(job.keys)
        self.listener.job_failed(failure)
        for k in job.keys:
            for cell_key in self._owners.pop(k, []):
                self._waiting.pop(cell_key, None)  # its other search stacks still get recorded, but no refit
                self._failures.setdefault(cell_key, failure)

    def _finish(self, cell: CellPlan) -> None:
        hp, search = self._chosen(cell)
        key = self._refit_key(cell, hp)
        refit = self.store.configs([key])[key]
        if cell.rungs or cell.probe:
            val = next((r.val for r in reversed(search) if r.hp == hp), None)
        else:
            val = search[select_best([r.val for r in search])].val if search else None
        rec = CellRecord(
            key=cell.key,
            source_id=cell.source_id,
            dataset=cell.source.dataset,
            backbones=cell.source.backbone_label,
            row=cell.row.label,
            augmenter=cell.row.augmenter,
            loss=cell.loss,
            seed=cell.seed,
            metric=self._metric(cell),
            value=refit.test,
            top1=refit.top1,
            mean_per_class=refit.mean_per_class,
            hp=hp,
            val_value=val,
            grid_size=len(search) if cell.probe else len(cell.configs),  # the probe: the weight decays tried
            diverged_configs=sum(r.diverged for r in search) + int(refit.diverged),
            seconds=sum(r.seconds for r in search) + refit.seconds,
            refit_key=key,
        )
        if cell.rungs:
            self.store.drop_head_states([k for keys in cell.rung_keys for k in keys])
        if self.store.record_cell(self._run_id, rec, [*(r.key for r in search), key]):
            self._finished += 1
            self._done_total += 1
            self.listener.cell_finished(rec, self._done_total, len(self.cells))

    def _metric(self, cell: CellPlan) -> str:
        return self.store.source_metric(cell.source_id)
