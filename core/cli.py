"""Command line: ``featbench plugins``, ``run``, ``report``, ``plot``, ``extract`` and ``convert``. Only this
module prints for humans.

Every user error ends as one line ``featbench: error: PROBLEM (FIX)`` on stderr and exit status 2;
``--debug`` shows tracebacks instead. A run whose jobs failed prints its tables, then one such line per
distinct error and how many cells it failed (exit status 2 if all are bad input, else 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Sequence

from . import __version__
from .errors import ConfigError, FeatbenchError, UnknownNameError, storage_error, storage_hint


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other featbench error."""

    def error(self, message: str):
        print(f"featbench: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _common(defaults: bool) -> argparse.ArgumentParser:
    """Options valid before and after the sub-command (``featbench -p m run`` == ``featbench run -p m``)."""
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("plugins and diagnostics")
    g.add_argument("-p", "--plugin", dest="plugins", action="append", default=d([]), metavar="MODULE",
                   help="load a local plugin module (importable name or path to a .py file); repeatable")
    g.add_argument("--disable-plugin", dest="disabled", action="append", default=d([]), metavar="NAME",
                   help="do not load this plugin or distribution; repeatable (also FEATBENCH_DISABLE_PLUGINS=a,b)")
    g.add_argument("--strict-plugins", action="store_true", default=d(False),
                   help="fail on any plugin error instead of warning (also FEATBENCH_STRICT_PLUGINS=1)")
    g.add_argument("--registry", default=d(None), metavar="PATH", help="use this registry.yaml instead of the packaged one")
    g.add_argument("--debug", action="store_true", default=d(False), help="show Python tracebacks on errors")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="featbench", parents=[_common(True)],
                                     description="Benchmark feature-space augmentation of frozen deep features.")
    parser.add_argument("--version", action="version", version=f"featbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    late = _common(False)

    pp = sub.add_parser("plugins", parents=[late], help="list registered backbones, augmenters, losses and data sets")
    pp.add_argument("--json", action="store_true", help="print JSON")

    rp = sub.add_parser("run", parents=[late], help="train and compare augmenters on feature sets",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Train linear heads with each augmenter on each feature source and print a comparison.\n"
                                    "Several --hp values (or --grid) are searched on the validation split, then the\n"
                                    "chosen configuration is refit on train+val and scored on test. With --out DIR every\n"
                                    "trained configuration is recorded in DIR/featbench.sqlite and a rerun skips it.\n"
                                    "--config SUITE.yaml takes every setting below (flags given here override it).")
    _run_options(rp)

    rep = sub.add_parser("report", parents=[late], help="rebuild the tables of a run directory from its results store")
    rep.add_argument("dir", metavar="DIR", help="the --out directory of a featbench run")
    rep.add_argument("--format", default="table", help="table, markdown, csv, json or latex (default: table)")
    rep.add_argument("--run", type=int, default=None, metavar="ID", help="which run of DIR (default: the latest)")
    rep.add_argument("--layout", default=None, help="auto, table5, table4 or both (default: the run's)")
    rep.add_argument("--gain-of", default=None, metavar="NAME", help="row of the Gain line (default: the run's)")
    rep.add_argument("--digits", type=int, default=None, help="decimals (default: the run's)")

    pl = sub.add_parser("plot", parents=[late], help="write PNG figures of a run directory (accuracy vs hyper-parameter, per epoch)")
    pl.add_argument("dir", metavar="DIR", help="the --out directory of a featbench run")
    pl.add_argument("--run", type=int, default=None, metavar="ID", help="which run of DIR (default: the latest)")
    pl.add_argument("--hp", action="append", default=[], metavar="NAME", help="hyper-parameter for the x axis (repeatable; default: every one the grid varies)")
    pl.add_argument("--out", default=None, metavar="PLOTDIR", help="where to write the PNGs (default: DIR/plots)")

    ep = sub.add_parser("extract", parents=[late], help="extract backbone features of a data set into the feature cache")
    _image_options(ep, extract=True)
    ep.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    ep.add_argument("--quiet", action="store_true", help="no progress bars on stderr")

    cp = sub.add_parser("convert", parents=[late], help="convert a released checkpoint to a plain torchvision state dict")
    cp.add_argument("source", choices=["byol"], help="byol: BYOL's JAX/Haiku pretrain_res50x1.pkl (read without running code)")
    cp.add_argument("input", metavar="PKL", help="the released file")
    cp.add_argument("output", metavar="OUT", help="where to write the .pth (use it with --weights B=OUT)")
    return parser


def _image_options(p: argparse.ArgumentParser, extract: bool) -> None:
    """Options that take features from images: backbones x data sets through the feature cache."""
    g = p.add_argument_group("features from images (instead of --features)" if not extract else "what to extract")
    g.add_argument("--backbones", default=None, required=extract, metavar="NAME[,NAME...]",
                   help="backbones whose features are ensembled, e.g. S,M,B,C or timm:resnet50 (see featbench plugins)")
    g.add_argument("--dataset", default=None, required=extract, metavar="NAME[,NAME...]",
                   help="data sets, one column each, e.g. cifar100, digits, folder:PATH")
    g.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights for a backbone: a checkpoint file, 'random' or 'pretrained'; repeatable")
    g.add_argument("--cache-dir", default=None, metavar="DIR", help="feature and weights cache (default: $FEATBENCH_CACHE or ~/.cache/featbench)")
    g.add_argument("--data-root", default=None, metavar="DIR", help="where data sets live (default: $FEATBENCH_DATA or ~/.cache/featbench/data)")
    g.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="crop size N for every backbone, keeping each one's resize/crop ratio (default: each backbone's own)")
    g.add_argument("--extract-batch-size", type=int, default=64, metavar="B", help="images per forward pass (default: 64)")
    g.add_argument("--workers", type=int, default=None, metavar="N", help="image-decoding workers (default: by device)")


# ------------------------------------------------------------------------------------------------


def _run_options(rp: argparse.ArgumentParser) -> None:
    """The options of ``featbench run``; none has an argparse default, so only given flags override a suite."""
    from .bench.spec import DEFAULT_STACK, RunSpec

    D = RunSpec()
    S = argparse.SUPPRESS
    rp.add_argument("--config", default=None, metavar="SUITE.yaml", help="read settings from a suite file (see benchmarks/)")
    g = rp.add_argument_group("what to compare")
    g.add_argument("--aug", default=S, metavar="NAME[,NAME...]|all", help="augmenter rows (default: none,sea)")
    g.add_argument("--features", action="append", default=S, metavar="A.npz[,B.npz...]",
                   help="a feature-file column (several comma-separated files form an ensemble); repeatable. "
                        "Default without --dataset: the embedded scikit-learn digits set")
    g.add_argument("--dataset", dest="datasets", default=S, metavar="NAME[,NAME...]", help="data sets (columns)")
    g.add_argument("--backbones", default=S, metavar="B[,B...]", help="backbones; by default one ensemble of all of them")
    g.add_argument("--combos", default=S, metavar="all|singles|A+B[,...]",
                   help="backbone sets to evaluate: all non-empty subsets of --backbones (Table 4), each alone, or a list")
    g.add_argument("--weights", action="append", default=S, metavar="NAME=PATH", help="local checkpoint for a backbone; repeatable")
    g.add_argument("--cache-dir", default=S, metavar="DIR", help="feature and weights cache (default: $FEATBENCH_CACHE or ~/.cache/featbench)")
    g.add_argument("--data-root", default=S, metavar="DIR", help="where data sets live (default: $FEATBENCH_DATA or ~/.cache/featbench/data)")
    g.add_argument("--image-size", type=int, default=S, metavar="N",
                   help="crop size N for every backbone, keeping each one's resize/crop ratio (default: each backbone's own)")
    g.add_argument("--extract-batch-size", type=int, default=S, metavar="B", help="images per forward pass (default: 64)")
    g.add_argument("--workers", type=int, default=S, metavar="N", help="image-decoding workers (default: by device)")
    g.add_argument("--metric", choices=["top1", "mean_per_class"], default=S, help="override the sources' metric")
    g = rp.add_argument_group("protocol")
    g.add_argument("--loss", default=S, help=f"training loss (default: {D.loss})")
    g.add_argument("--hp", action="append", default=S, metavar="[ROW.]KEY=V[,V2...]",
                   help="fix a hyper-parameter, or give several values to search; ROW.KEY applies to one row (repeatable)")
    g.add_argument("--grid", default=S, metavar="NAME", help="search a named grid from registry.yaml (paper, quick)")
    g.add_argument("--epochs", type=int, default=S, help=f"training epochs (default: {D.epochs})")
    g.add_argument("--batch-size", type=int, default=S, help=f"mini-batch size (default: {D.batch_size})")
    g.add_argument("--seed", type=int, default=S, help=f"first seed (default: {D.seed})")
    g.add_argument("--seeds", type=int, default=S, help="number of seeds, seed..seed+N-1; tables show mean ± std (default: 1)")
    g.add_argument("--val-fraction", type=float, default=S, help=f"hold-out fraction of train for the search when there is no val split (default: {D.val_fraction})")
    g.add_argument("--device", default=S, help="auto, cpu or cuda[:N] (default: auto)")
    g.add_argument("--search", default=S, help="grid (every configuration, default) or halving (successive halving over "
                   "the same grid: rungs of epochs, the best fraction on validation goes on; benchmarks/README.md)")
    g.add_argument("--halving-keep", type=float, default=S, metavar="F",
                   help="fraction of configurations each rung passes on (default: 1/3)")
    g.add_argument("--halving-rungs", default=S, metavar="E1,E2,...",
                   help="rung epochs (default: E/3^(m-1), ..., E/3, E with m = 1 + floor(log3 N) for N configurations)")
    g.add_argument("--probe", default=S, metavar="lbfgs",
                   help="add the L-BFGS logistic-regression probe as a row (weight decay swept on validation) and a Gain row against it")
    g.add_argument("--max-heads", type=int, default=S, help=f"configurations trained together per job (default: {DEFAULT_STACK}; smaller stacks resume at a finer grain)")
    g = rp.add_argument_group("where jobs run")
    g.add_argument("--executor", default=S, help="local (this process, default) or ray (tasks on a Ray cluster: pip install 'featbench[ray]')")
    g.add_argument("--ray-address", default=S, metavar="HOST:PORT",
                   help="the Ray cluster (`ray start --head` prints it; default: RAY_ADDRESS, a cluster on this machine, or a new local one)")
    g.add_argument("--threads", type=int, default=S, metavar="N",
                   help="CPU threads per job, and CPUs per Ray task (default: local all cores, ray 1); "
                        "the same N gives bit-identical numbers under both executors")
    g.add_argument("--ray-gpus", type=float, default=S, metavar="F",
                   help=f"GPUs per Ray task on CUDA (default: {D.ray_gpus:g}; 0.5 puts two tasks on a GPU)")
    g.add_argument("--ray-retries", type=int, default=S, metavar="N",
                   help=f"re-runs of a Ray task whose worker or node died (default: {D.ray_retries}); errors are not retried")
    g = rp.add_argument_group("performance (benchmarks/README.md)")
    g.add_argument("--matmul", default=S, help="float32 matrix products: fp32 (default), tf32 (CUDA) or bf16 (CPUs with "
                   "bf16 units); reduced precision changes results slightly and is recorded with them")
    g.add_argument("--storage", default=S, help="dtype the training features are kept in: auto (default: float16 caches "
                   "stay half), float32, float16 or bfloat16")
    g.add_argument("--cuda-graphs", action="store_true", default=S, help="replay each training epoch as a CUDA graph "
                   "(GPU, augmenters that declare it safe)")
    g = rp.add_argument_group("output")
    g.add_argument("--format", default=S, help="table, markdown, csv, json or latex (default: table)")
    g.add_argument("--layout", default=S, help="auto (Table 5, plus Table 4 with several backbone sets), table5, table4 or both")
    g.add_argument("--gain-of", default=S, metavar="NAME", help="row of the Gain line (default: sea, else the last)")
    g.add_argument("--digits", type=int, default=S, help=f"decimals in tables (default: {D.digits})")
    g.add_argument("--out", default=S, metavar="DIR", help="run directory: results store, results.json and the table")
    g.add_argument("--log-every", type=int, default=S, metavar="N", help="record train/test accuracy every N epochs (for featbench plot)")
    g.add_argument("--quiet", action="store_true", default=S, help="no progress on stderr")


_RUN_NOT_SPEC = {"config", "command", "plugins", "disabled", "strict_plugins", "registry", "debug"}


def _host(args, extra_plugins: Sequence[str] = ()):
    from .manager import load_plugins

    return load_plugins(local_modules=[*args.plugins, *extra_plugins], disabled=args.disabled,
                        strict=args.strict_plugins or None)


def cmd_plugins(args) -> int:
    host = _host(args)
    items = []
    for kind in ("backbone", "augmenter", "loss", "dataset"):
        for e in host.catalog(kind):
            item = {"kind": kind, "name": e.name, "plugin": e.provider.plugin, "distribution": e.provider.dist, "summary": e.summary}
            hp = getattr(e.obj, "hparams", None)
            if hp:
                item["hparams"] = {h.name: {"default": h.default, "doc": h.doc} for h in hp}
            items.append(item)
    failures = [{"plugin": f.plugin, "distribution": f.dist, "error": f.error} for f in host.failures]
    if args.json:
        print(json.dumps({"plugins": items, "failed": failures, "version": __version__}, indent=2))
        return 0
    from tabulate import tabulate

    rows = [[i["kind"], i["name"], i["distribution"], i["plugin"], i["summary"]] for i in items]
    print(tabulate(rows, headers=["kind", "name", "distribution", "plugin", "summary"], tablefmt="simple"))
    for f in failures:
        print(f"FAILED  {f['plugin']} ({f['distribution']}): {f['error']}")
    return 0


def _parse_weights(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ConfigError(f"--weights {item!r} is not NAME=PATH", "e.g. --weights M=~/ckpt/r-50-1000ep.pth.tar")
        out[name.strip()] = value.strip()
    return out


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _source_options(args, host) -> dict:
    """The keyword arguments of ``featbench.inputs.sources.feature_set_for`` / ``extract`` from the image options."""
    if args.image_size is not None and args.image_size < 8:
        raise ConfigError(f"--image-size {args.image_size} is too small", "e.g. --image-size 224")
    if args.extract_batch_size < 1:
        raise ConfigError(f"--extract-batch-size {args.extract_batch_size} must be at least 1", "e.g. --extract-batch-size 64")
    return dict(host=host, cache_dir=args.cache_dir, device=args.device, weights=_parse_weights(args.weights),
                progress=not args.quiet, data_root=args.data_root, preprocess=args.image_size,
                batch_size=args.extract_batch_size, workers=args.workers)


def _prepare_out(path: str | None) -> str | None:
    if path is None:
        return None
    existed = os.path.isdir(path)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".featbench-write-test{os.getpid()}")
        with open(probe, "w") as f:
            f.write("")
        os.remove(probe)
    except OSError as exc:
        if not existed and os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
        raise ConfigError(f"cannot write to --out {path}: {exc.strerror or exc}", "choose a writable directory") from None
    return path


def _write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (``featbench.inputs.files``); a failure is a one-line StorageError."""
    from .inputs.files import write_text

    try:
        write_text(path, text)
    except OSError as exc:
        raise storage_error(exc, os.path.basename(path), path) from None


class _Progress:
    """Progress on stderr: a bar over configuration-epochs on a TTY, one line per finished cell otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not quiet
        self.bar = None

    # runner.Listener protocol
    def planned(self, cells_total, cells_done, configs_todo, epochs):
        if self.quiet:
            return
        self._say(f"featbench: {cells_total} cell(s), {cells_done} already recorded; {configs_todo} configuration(s) to train")
        if self.tty and configs_todo:
            from tqdm import tqdm

            self.bar = tqdm(total=configs_todo * epochs, unit="cfg-ep", file=sys.stderr, dynamic_ncols=True, leave=False)

    def loading(self, source):
        if not self.quiet:
            self._say(f"featbench: loading features of {source.dataset}" + (f" [{source.backbone_label}]" if source.backbones else ""))

    def job_started(self, job):
        if self.bar is not None:
            self.bar.set_description(f"{job.phase} {job.label}", refresh=False)

    def epoch(self, job, epoch):
        if self.bar is not None:
            self.bar.update(len(job.configs))

    def job_finished(self, job, new_configs):
        pass

    def job_failed(self, failure):
        if not self.quiet:
            self._say(f"featbench: {failure.job.phase} job of {failure.job.label} failed: {failure.error}")

    def cell_finished(self, cell, done, total):
        if self.quiet:
            return
        where = cell.dataset + (f" [{cell.backbones}]" if cell.backbones else "")
        extra = f", {cell.diverged_configs} diverged" if cell.diverged_configs else ""
        self._say(f"[{done}/{total}] {cell.row} on {where} (seed {cell.seed}, {cell.grid_size} config(s)): "
                  f"{cell.metric} {cell.value:.2f} in {cell.seconds:.1f}s{extra}")

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _run_flags(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in _RUN_NOT_SPEC}


def _preflight(spec, host, registry: str | None) -> None:
    """Check names, hyper-parameters and feature files (all but their NaN/Inf values) before anything is
    written; feature-file runs fail here before torch is even imported."""
    from .inputs.features import check_feature_files
    from .bench.driver import plan_rows, plan_sources

    plan_rows(spec, host, registry)
    for src in plan_sources(spec):
        if src.files:
            check_feature_files(list(src.files), name=src.dataset)
        elif not src.builtin:
            host.get_dataset(src.dataset)
    for b in spec.backbones:
        if not spec.feature_files or any(ds not in spec.feature_files for ds in spec.datasets):
            host.get_backbone(b)


def cmd_run(args) -> int:
    from .bench.driver import LoadOptions, Runner
    from .bench.store import Store, db_path
    from .bench.spec import build_spec
    from .training.trainer import check_matmul, resolve_device

    spec = build_spec(_run_flags(args), args.config)
    host = _host(args, spec.plugins)
    _preflight(spec, host, args.registry)
    if spec.executor != "ray":  # a Ray run's device is the cluster's, known once connected
        check_matmul(spec.matmul, resolve_device(spec.device))
    new_dir = spec.out is not None and not os.path.isdir(spec.out)
    new_db = spec.out is None or not os.path.exists(db_path(spec.out))
    out = _prepare_out(spec.out)
    progress = _Progress(spec.quiet)
    with contextlib.ExitStack() as context:
        try:
            if spec.executor == "ray":
                from .bench.executors.ray import cluster_device, connect

                context.enter_context(connect(spec.ray_address))
                device = cluster_device(spec.device)
            else:
                device = resolve_device(spec.device)
            check_matmul(spec.matmul, device)
            store = context.enter_context(Store(out))
        except BaseException:
            _remove_new_store(out, new_db, new_dir)
            raise
        last_run = max((r.id for r in store.runs()), default=0)
        try:
            load = LoadOptions(cache_dir=spec.cache_dir, device=device, weights=dict(spec.weights), progress=not spec.quiet,
                               data_root=spec.data_root, image_size=spec.image_size,
                               extract_batch_size=spec.extract_batch_size, workers=spec.workers)
            outcome = Runner(spec, host, store, device=device, registry_path=args.registry, listener=progress, load=load).run()
            _raise_if_nothing_but_bad_input(outcome)
        except BaseException:
            _forget_failed_run(store, out, last_run, new_db, new_dir)
            raise
        finally:
            progress.close()
        if outcome.interrupted:
            print(f"featbench: interrupted; {outcome.cells_finished} cell(s) finished in this run, every finished "
                  "configuration is recorded" + (f" in {out} (rerun the same command to resume)" if out else ""), file=sys.stderr)
        if not spec.quiet:
            print(f"featbench: trained {outcome.configs_trained} configuration(s); {outcome.cells_skipped} cell(s) were "
                  "already recorded", file=sys.stderr)
        for line in _divergence_warnings(store, store.cells(store.planned_cells(outcome.run_id))):
            print(f"featbench: warning: {line}", file=sys.stderr)
        text = _render_run(store, outcome.run_id, spec.format, spec.layout, spec.gain_of, spec.digits)
        if out:  # the files first: a command that fails prints nothing on stdout
            json_text = _render_run(store, outcome.run_id, "json", spec.layout, spec.gain_of, spec.digits)
            _write_atomic(os.path.join(out, "results.json"), json_text + "\n")
            ext = {"table": "txt", "markdown": "md", "latex": "tex"}.get(spec.format, spec.format)
            _write_atomic(os.path.join(out, f"table.{ext}"), text + "\n")
        print(text)
    if outcome.interrupted:
        return 130
    return _report_failures(outcome, args.debug, out) if outcome.failures else 0


def _raise_if_nothing_but_bad_input(outcome) -> None:
    """A run in which every cell failed on the same bad input (NaN in a feature file, say, which only loading
    finds) is a bad-input error like those found before training: one line, and no run left behind."""
    errors = {f.error for f in outcome.failures.values()}
    if (len(errors) == 1 and outcome.cells_failed == len(outcome.cell_keys) and outcome.configs_trained == 0
            and all(f.user_error for f in outcome.failures.values())):
        raise FeatbenchError(errors.pop())


def _report_failures(outcome, debug: bool, out: str | None) -> int:
    """One line per distinct error (how many cells it failed, and one of them), then what to do; exit
    status 2 if every error is bad input the user can fix, else 1."""
    by_error: dict[str, list] = {}
    for key in outcome.cell_keys:  # in table order, whatever order the jobs failed in
        if key in outcome.failures:
            by_error.setdefault(outcome.failures[key].error, []).append(outcome.failures[key])
    for error, failures in by_error.items():
        if debug:
            print(failures[0].detail.rstrip(), file=sys.stderr)
        print(f"featbench: error: {len(failures)} cell(s) failed: {error} (e.g. {failures[0].job.label})", file=sys.stderr)
    print(f"featbench: {outcome.cells_failed} of {len(outcome.cell_keys)} cell(s) failed; every other result is recorded"
          + (f" in {out}: rerun the same command to retry only the failed ones" if out else ""), file=sys.stderr)
    return 2 if all(f.user_error for f in outcome.failures.values()) else 1


def _forget_failed_run(store, out: str | None, last_run: int, new_db: bool, new_dir: bool) -> None:
    """A run that failed before recording anything leaves no trace: its run record is deleted, and the
    results store (and the --out directory) too when this run created them. Best effort: the original
    error is what the user needs to see."""
    if out is None:
        return
    try:
        if new_db and store.count_configs() == 0 and not store.runs_of_other_processes(os.getpid()):
            store.close()
            _remove_new_store(out, new_db, new_dir)
            return
        for run in store.runs():
            if run.id > last_run:
                store.discard_run(run.id)
    except Exception:  # noqa: BLE001 - never hide the error that made the run fail
        pass


def _remove_new_store(out: str | None, new_db: bool, new_dir: bool) -> None:
    """Remove the results store this run created (and the --out directory, if it created that and it is empty)."""
    from .bench.store import db_path

    if out is None or not new_db:
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(db_path(out) + suffix):
            os.remove(db_path(out) + suffix)
    if new_dir and os.path.isdir(out) and not os.listdir(out):
        os.rmdir(out)


def _divergence_warnings(store, cells) -> list[str]:
    """One line per cell in which a configuration diverged: which ones, and what that means for the cell."""
    lines = []
    for cell, bad in _diverged(store, cells):
        where = f"{cell.row} on {cell.dataset}" + (f" [{cell.backbones}]" if cell.backbones else "") + f" (seed {cell.seed})"
        shown = "; ".join(", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in d["varied"].items())
                          for d in bad[:3]) + ("; ..." if len(bad) > 3 else "")
        search = [d for d in bad if d["phase"] == "search"]
        refit = any(d["phase"] == "refit" for d in bad)
        if not search:
            lines.append(f"{where}: training diverged (weights became NaN/Inf with {shown}), so the cell has no result "
                         "(lower the learning rate)")
            continue
        if refit:
            what = "the chosen one diverged again in the final training, so the cell has no result"
        elif len(search) == cell.grid_size:
            what = "every one diverged, so the selection fell back to the first"
        else:
            what = "they were left out of the selection"
        lines.append(f"{where}: {len(search)} of {cell.grid_size} configuration(s) diverged (weights became NaN/Inf with "
                     f"{shown}); {what} (lower the learning rate)")
    return lines


def _diverged(store, cells) -> list[tuple]:
    """``(cell, [{"phase", "hp", "varied"}...])`` for every cell with a diverged configuration."""
    out = []
    for cell in cells:
        if not cell.diverged_configs:
            continue
        keys = store.cell_config_keys(cell.key)  # the grid in order, then the refit
        found = store.configs(keys)
        records = [found[k] for k in keys if k in found]
        varying = [k for k in cell.hp if k == "lr" or len({json.dumps(r.hp.get(k)) for r in records}) > 1]
        bad = [{"phase": r.phase, "hp": dict(r.hp), "varied": {k: r.hp[k] for k in varying if k in r.hp}}
               for r in records if r.diverged]
        out.append((cell, bad))
    return out


def _render_run(store, run_id: int | None, fmt: str, layout: str | None, gain_of: str | None, digits: int | None) -> str:
    """Render the tables of one run from the store alone (what ``run`` prints and ``report`` reprints)."""
    from .reporting.tables import build, render
    from .bench.spec import FORMATS

    if fmt not in FORMATS:
        raise UnknownNameError("output format", fmt, FORMATS)
    run = store.run(run_id)
    planned = store.planned_cells(run.id)
    cells = store.cells(planned)
    spec = run.spec
    meta = {"run": {"id": run.id, "status": run.status}, "cells": {"planned": len(planned), "finished": len(cells)},
            "versions": run.versions, "settings": spec}
    if fmt == "json":  # every diverged configuration, with the cell it belongs to
        meta["diverged"] = [{"augmenter": c.row, "dataset": c.dataset, "backbones": c.backbones, "seed": c.seed,
                             "phase": d["phase"], "hp": d["hp"]} for c, bad in _diverged(store, cells) for d in bad]
    report = build(cells, gain_of=gain_of if gain_of is not None else spec.get("gain_of"),
                   layout=layout or spec.get("layout", "auto"), meta=meta)
    return render(report, fmt, digits if digits is not None else spec.get("digits", 2))


def cmd_report(args) -> int:
    from .bench.store import Store

    with Store(_existing_dir(args.dir), create=False) as store:
        print(_render_run(store, args.run, args.format, args.layout, args.gain_of, args.digits))
    return 0


def _existing_dir(path: str) -> str:
    if not os.path.isdir(path):
        raise ConfigError(f"no such run directory: {path}", "pass the --out directory of a featbench run")
    return path


def cmd_plot(args) -> int:
    from .reporting.plot import write_plots
    from .bench.store import Store

    with Store(_existing_dir(args.dir), create=False) as store:
        run = store.run(args.run)
        cells = store.cells(store.planned_cells(run.id))
        members = {c.key: store.cell_config_keys(c.key) for c in cells}
        configs = store.configs({k for keys in members.values() for k in keys}, with_epochs=True)
    out = _prepare_out(args.out or os.path.join(args.dir, "plots"))
    paths = write_plots(cells, members, configs, out, hps=args.hp or None)
    for p in paths:
        print(p)
    if not paths:
        print("featbench: nothing to plot (no hyper-parameter varies in the grids and no per-epoch log; "
              "use --hp NAME=V1,V2,... and --log-every N)", file=sys.stderr)
    return 0


def cmd_extract(args) -> int:
    from .inputs.sources import extract

    options = _source_options(args, _host(args))
    for dataset in _split(args.dataset):
        _, _, feats = extract(dataset, _split(args.backbones), **options)
        for f in feats:
            sizes = ", ".join(f"{s} {c.x.shape[0]}x{c.x.shape[1]}" for s, c in f.splits.items())
            print(f"{dataset} {f.backbone}: {sizes}; extracted {', '.join(f.extracted) or 'nothing (all cached)'}")
    return 0


def cmd_convert(args) -> int:
    from .inputs.convert import convert_byol

    sd = convert_byol(args.input, args.output)
    print(f"wrote {args.output}: {len(sd)} tensors (torchvision resnet50 keys, with the online classifier as fc); "
          f"use it with --weights B={args.output}")
    return 0


COMMANDS = {"plugins": cmd_plugins, "run": cmd_run, "report": cmd_report, "plot": cmd_plot,
            "extract": cmd_extract, "convert": cmd_convert}


def _format_warning(message, category, filename, lineno, file=None, line=None):
    print(f"featbench: warning: {' '.join(str(message).split())}", file=sys.stderr if file is None else file)


#: Environment variables main() sets for its own duration.
_ENV_SET = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "FEATBENCH_REGISTRY")


def _use_registry(path: str) -> None:
    """Make ``--registry PATH`` the registry of everything in this run: grids, and the backbone and data-set
    catalogs the built-in plugins read (through ``$FEATBENCH_REGISTRY``, which workers inherit too)."""
    from .config import load_registry

    os.environ["FEATBENCH_REGISTRY"] = os.path.abspath(path)
    load_registry()  # a missing or malformed file is a one-line error now, not a plugin failure later


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug
    # No checkpoint is ever unpickled with code execution, not even by a library featbench calls:
    # torch.load(weights_only=False) anywhere in this process is turned into weights_only=True.
    saved_env = {k: os.environ.get(k) for k in _ENV_SET}
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    old_show = warnings.showwarning
    if not debug:
        warnings.showwarning = _format_warning
    try:
        if args.registry:  # the plugins that read registry.yaml (backbones, data sets) use the same file
            _use_registry(args.registry)
        return COMMANDS[args.command](args)
    except FeatbenchError as exc:
        if debug:
            raise
        print(f"featbench: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("featbench: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file featbench had to write or read (disk full, permissions, ...)
        if debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"featbench: error: {exc.strerror or exc}{where} ({storage_hint(exc.errno)}; rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug or an unexpected environment problem
        if debug:
            raise
        print(f"featbench: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(rerun with --debug for the traceback and report it)", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = old_show
        for k, v in saved_env.items():  # main() may be called in-process: leave the environment as it was
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
