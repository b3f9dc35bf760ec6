"""Command line: ``featbench plugins``, ``run``, ``report``, ``plot``, ``extract``, ``download`` and
``convert``. It parses arguments and prints; the work is done elsewhere (``featbench run``:
:func:`featbench.run.run`). Only this module prints for humans: progress reaches it through listeners.

Every user error ends as one line ``featbench: error: PROBLEM (FIX)`` on stderr and exit status 2;
``--debug`` shows tracebacks instead. A run whose jobs failed prints its tables, then one such line per
distinct error and how many cells it failed (exit status 2 if all are bad input, else 1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

from . import __version__
from .errors import MAX_SHOWN, ConfigError, FeatbenchError, UnknownNameError, one_line, shown, storage_hint


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other featbench error."""

    def error(self, message: str):
        message = re.sub(r"'([^']{%d,})'" % MAX_SHOWN, lambda m: shown(m.group(1)), message)  # never a whole value
        print(one_line(f"featbench: error: {message} (see {self.prog} --help)"), file=sys.stderr)
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
    g.add_argument(
        "--registry", default=d(None), metavar="PATH", help="use this registry.yaml instead of the packaged one"
    )
    g.add_argument("--debug", action="store_true", default=d(False), help="show Python tracebacks on errors")
    g.add_argument(
        "--offline",
        action="store_true",
        default=d(False),
        help="open no network connection: list what is missing instead of fetching it (also FEATBENCH_OFFLINE=1)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="featbench",
        parents=[_common(True)],
        description="Benchmark feature-space augmentation of frozen deep features.",
    )
    parser.add_argument("--version", action="version", version=f"featbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    late = _common(False)

    pp = sub.add_parser("plugins", parents=[late], help="list registered backbones, augmenters, losses and data sets")
    pp.add_argument("--json", action="store_true", help="print JSON")
    pp.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also list every hyper-parameter: default, bounds, choices and the values each grid searches",
    )

    ck = sub.add_parser(
        "check-plugin",
        parents=[late],
        help="check augmenters and losses against the plugin contract",
        description="Run featbench.testing's contract checks on registered augmenters and losses (small synthetic "
        "data, a few seconds each): one line per check, exit status 1 if any fails.",
    )
    ck.add_argument("names", nargs="+", metavar="NAME", help="augmenter or loss names (see featbench plugins)")
    ck.add_argument("--device", default="cpu", help="where to run the checks: cpu (default) or cuda[:N]")

    rp = sub.add_parser(
        "run",
        parents=[late],
        help="train and compare augmenters on feature sets",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train linear heads with each augmenter on each feature source and print a comparison.\n"
        "Several --hp values (or --grid) are searched on the validation split, then the\n"
        "chosen configuration is refit on train+val and scored on test. With --out DIR every\n"
        "trained configuration is recorded in DIR/featbench.sqlite and a rerun skips it.\n"
        "--config SUITE.yaml takes every setting below (flags given here override it).",
    )
    _run_options(rp)

    rep = sub.add_parser("report", parents=[late], help="rebuild the tables of a run directory from its results store")
    rep.add_argument("dir", metavar="DIR", help="the --out directory of a featbench run")
    rep.add_argument("--format", default="table", help="output format, as for featbench run --format (default: table)")
    rep.add_argument("--run", type=int, default=None, metavar="ID", help="which run of DIR (default: the latest)")
    rep.add_argument("--layout", default=None, help="auto, table5, table4 or both (default: the run's)")
    rep.add_argument("--gain-of", default=None, metavar="NAME", help="row of the Gain line (default: the run's)")
    rep.add_argument("--digits", type=int, default=None, help="decimals (default: the run's)")

    pl = sub.add_parser(
        "plot", parents=[late], help="write PNG figures of a run directory (accuracy vs hyper-parameter, per epoch)"
    )
    pl.add_argument("dir", metavar="DIR", help="the --out directory of a featbench run")
    pl.add_argument("--run", type=int, default=None, metavar="ID", help="which run of DIR (default: the latest)")
    pl.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="NAME",
        help="hyper-parameter for the x axis (repeatable; default: every one the grid varies)",
    )
    pl.add_argument("--out", default=None, metavar="PLOTDIR", help="where to write the PNGs (default: DIR/plots)")

    ep = sub.add_parser(
        "extract", parents=[late], help="extract backbone features of a data set into the feature cache"
    )
    _add_options(ep, _EXTRACT_OPTIONS, required=("backbones", "datasets"))

    dp = sub.add_parser(
        "download", parents=[late], help="fetch data sets and backbone checkpoints ahead of time (verified, resumable)"
    )
    dp.add_argument(
        "names",
        metavar="NAME[,NAME...]",
        help="data sets (or paper: the eleven of Table 5) and backbones, e.g. paper,S,M,B,C",
    )
    _add_options(dp, _DOWNLOAD_OPTIONS)

    cp = sub.add_parser(
        "convert", parents=[late], help="convert a released checkpoint to a plain torchvision state dict"
    )
    cp.add_argument(
        "source", choices=["byol"], help="byol: BYOL's JAX/Haiku pretrain_res50x1.pkl (read without running code)"
    )
    cp.add_argument("input", metavar="PKL", help="the released file")
    cp.add_argument("output", metavar="OUT", help="where to write the .pth (use it with --weights B=OUT)")
    return parser


# ------------------------------------------------------------------------------------------------


_GROUPS = {
    "compare": "what to compare",
    "inputs": "features from images (instead of --features)",
    "compute": "where and how jobs run (benchmarks/README.md: performance)",
    "output": "output",
}


#: The run options ``featbench extract`` takes (the image inputs, the device, quiet).
_EXTRACT_OPTIONS = (
    "backbones",
    "datasets",
    "weights",
    "cache_dir",
    "data_root",
    "image_size",
    "extract_batch_size",
    "workers",
    "device",
    "quiet",
)
#: The run options ``featbench download`` takes.
_DOWNLOAD_OPTIONS = ("cache_dir", "data_root", "quiet")


def _run_options(rp: argparse.ArgumentParser) -> None:
    """The options of ``featbench run``; none has an argparse default, so only given flags override a suite."""
    rp.add_argument(
        "--config", default=None, metavar="SUITE.yaml", help="read settings from a suite file (see benchmarks/)"
    )
    from .bench.spec import option_fields

    _add_options(rp, list(option_fields()))


def _add_options(p: argparse.ArgumentParser, names: Sequence[str], required: Sequence[str] = ()) -> None:
    """Flags for the run options ``names``, generated from their declarations (featbench.bench.spec)."""
    import attrs

    from .bench.options import HELP, METAVAR, REPEAT, flag_of, scalar_type
    from .bench.spec import option_fields

    fields = option_fields()
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name in names:
        part, field = fields[name]
        flag = flag_of(field)
        if flag is None:
            continue
        if part not in groups:
            groups[part] = p.add_argument_group(_GROUPS.get(part) or f"executor {part.partition(':')[2]}")
        default = field.default if not isinstance(field.default, attrs.Factory) else None
        default = ",".join(default) if isinstance(default, tuple) else default
        shown = f" (default: {default})" if default not in (None, "") and "default" not in field.metadata[HELP] else ""
        kw = {
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": field.metadata[HELP] + shown,
            "required": name in required,
        }
        if field.metadata[METAVAR]:
            kw["metavar"] = field.metadata[METAVAR]
        if field.metadata[REPEAT]:
            kw["action"] = "append"
        else:
            try:
                kind = scalar_type(field.type)
            except TypeError:
                kind = str
            if kind is bool:
                kw.pop("metavar", None)
                kw["action"] = "store_true"
            elif kind in (int, float):
                kw["type"] = kind
        groups[part].add_argument(flag, **kw)


_RUN_NOT_SPEC = {"config", "command", "plugins", "disabled", "strict_plugins", "registry", "debug", "offline", "names"}


def _host(args, extra_plugins: Sequence[str] = ()):
    from .manager import load_plugins

    return load_plugins(
        local_modules=[*args.plugins, *extra_plugins],
        disabled=args.disabled,
        registry=args.registry,
        strict=args.strict_plugins or None,
    )


def cmd_plugins(args) -> int:
    host = _host(args)
    items = []
    for kind in ("backbone", "augmenter", "loss", "dataset"):
        for e in host.catalog(kind):
            item = {
                "kind": kind,
                "name": e.name,
                "plugin": e.provider.plugin,
                "distribution": e.provider.dist,
                "summary": e.summary,
            }
            hp = getattr(e.obj, "hparams", None)
            if hp:
                item["hparams"] = _hparams_listing(e.obj)
            items.append(item)
    failures = [{"plugin": f.plugin, "distribution": f.dist, "error": f.error} for f in host.failures]
    if args.json:
        print(json.dumps({"plugins": items, "failed": failures, "version": __version__}, indent=2))
        return 0
    from tabulate import tabulate

    rows = [[i["kind"], i["name"], i["distribution"], i["plugin"], i["summary"]] for i in items]
    print(tabulate(rows, headers=["kind", "name", "distribution", "plugin", "summary"], tablefmt="simple"))
    if args.verbose:
        print(
            "\nhyper-parameters (default, bounds or choices; the values each grid searches as the plugin declares "
            "them, before registry.yaml's entries):"
        )
        for i in items:
            for h in i.get("hparams", {}).values():
                print(f"  {i['kind']} {i['name']}: {h['text']}  -- {h['doc']}")
    for f in failures:
        print(f"FAILED  {f['plugin']} ({f['distribution']}): {f['error']}")
    return 0


def _hparams_listing(cls) -> dict:
    """Every hyper-parameter of a component: default, bounds, choices, declared grids and a line of text."""
    from .api import declared_grid, declared_grid_names

    grids = {g: declared_grid(cls, g) for g in declared_grid_names(cls)}
    out = {}
    for h in cls.hparams:
        own = {g: list(v[h.name]) for g, v in grids.items() if h.name in v}
        out[h.name] = {
            "default": h.default,
            "doc": h.doc,
            "low": h.low,
            "low_open": h.low_open,
            "high": h.high,
            "high_open": h.high_open,
            "integer": h.integer,
            "structural": h.structural,
            "choices": list(h.choices),
            "grids": own,
            "text": h.describe(own),
        }
    return out


def cmd_check_plugin(args) -> int:
    from .testing import augmenter_checks, loss_checks

    host = _host(args)
    todo = []
    for name in args.names:
        found = [(kind, name) for kind in ("augmenter", "loss") if name in host.catalog(kind)]
        if not found:
            other = [kind for kind in ("backbone", "dataset") if name in host.catalog(kind)]
            if other:
                raise ConfigError(
                    f"{name!r} is a {other[0]}: check-plugin checks augmenters and losses",
                    "name an augmenter or a loss",
                )
            raise UnknownNameError("augmenter or loss", name, [*host.list_augmenters(), *host.list_losses()])
        todo.extend(found)
    failed = total = 0
    for kind, name in todo:
        if kind == "augmenter":
            results = augmenter_checks(host.get_augmenter(name), name=name, device=args.device)
        else:
            results = loss_checks(host.get_loss(name), name=name, device=args.device)
        for r in results:
            print(f"{r} [{kind}]")
        total += len(results)
        failed += sum(not r.ok for r in results)
    summary = f"featbench: {failed} of {total} check(s) failed" if failed else f"featbench: all {total} check(s) passed"
    print(summary, file=sys.stderr)
    return 1 if failed else 0


class _Progress:
    """Progress on stderr: a bar over configuration-epochs on a TTY, one line per finished cell otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not quiet
        self.bar = None
        self.images = None  # the bar of the images being extracted

    # inputs.progress.ExtractListener protocol
    def message(self, text):
        if not self.quiet:
            self._say(f"featbench: {text}")

    def images_started(self, desc, total, done):
        if self.tty:
            from tqdm import tqdm

            self.images = tqdm(
                total=total, initial=done, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True, leave=False
            )

    def images_done(self, n):
        if self.images is not None:
            self.images.update(n)

    def images_finished(self):
        if self.images is not None:
            self.images.close()
            self.images = None

    def fetching(self, line):
        if not self.quiet:
            self._say(f"featbench: {line}")

    def bytes_started(self, desc, total, done):  # one bar at a time: a download's shares the images' slot
        if self.tty:
            from tqdm import tqdm

            self.images = tqdm(
                total=total,
                initial=done,
                desc=desc,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                dynamic_ncols=True,
                leave=False,
            )

    bytes_done = images_done
    bytes_finished = images_finished

    # bench.progress.Listener protocol
    def planned(self, cells_total, cells_done, configs_todo, epochs):
        if self.quiet:
            return
        self._say(
            f"featbench: {cells_total} cell(s), {cells_done} already recorded; {configs_todo} configuration(s) to train"
        )
        if self.tty and configs_todo:
            from tqdm import tqdm

            self.bar = tqdm(
                total=configs_todo * epochs, unit="cfg-ep", file=sys.stderr, dynamic_ncols=True, leave=False
            )

    def loading(self, source):
        if not self.quiet:
            self._say(
                f"featbench: loading features of {source.dataset}"
                + (f" [{source.backbone_label}]" if source.backbones else "")
            )

    def job_started(self, job):
        if self.bar is not None:
            self.bar.set_description(f"{job.phase} {job.label}", refresh=False)

    def epoch(self, job, epoch):
        if self.bar is not None:
            self.bar.update(len(job.configs))

    def job_finished(self, job, new_configs):
        pass

    def job_failed(self, failure):
        if not self.quiet:  # the error itself is printed once, with the others, when the run ends
            job = failure.job
            self._say(f"featbench: {job.phase} job of {job.label} failed (its error is reported at the end)")

    def cell_finished(self, cell, done, total):
        if self.quiet:
            return
        where = cell.dataset + (f" [{cell.backbones}]" if cell.backbones else "")
        extra = f", {cell.diverged_configs} diverged" if cell.diverged_configs else ""
        self._say(
            f"[{done}/{total}] {cell.row} on {where} (seed {cell.seed}, {cell.grid_size} config(s)): "
            f"{cell.metric} {cell.value:.2f} in {cell.seconds:.1f}s{extra}"
        )

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self):
        self.images_finished()
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _run_flags(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in _RUN_NOT_SPEC}


def cmd_run(args) -> int:
    from .run import build_spec, run

    spec = build_spec(_run_flags(args), args.config)
    host = _host(args, spec.plugins)
    progress = _Progress(spec.quiet)
    try:
        result = run(spec, host, registry_path=args.registry, listener=progress)
    finally:
        progress.close()
    outcome, out = result.outcome, result.out
    if outcome.interrupted:
        print(
            f"featbench: {_interruption()}; {outcome.cells_finished} cell(s) finished in this run, every finished "
            "configuration is recorded" + (f" in {out} (rerun the same command to resume)" if out else ""),
            file=sys.stderr,
        )
    if not spec.quiet:
        print(
            f"featbench: trained {outcome.configs_trained} configuration(s); {outcome.cells_skipped} cell(s) were "
            "already recorded",
            file=sys.stderr,
        )
    for line in result.warnings:
        print(f"featbench: warning: {line}", file=sys.stderr)
    print(result.text)
    if outcome.failures:
        code = _report_failures(outcome, args.debug, out)
        return _interrupted_status() if outcome.interrupted else code
    return _interrupted_status() if outcome.interrupted else 0


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
        print(
            one_line(f"featbench: error: {len(failures)} cell(s) failed: {error} (e.g. {failures[0].job.label})"),
            file=sys.stderr,
        )
    print(
        f"featbench: {outcome.cells_failed} of {len(outcome.cell_keys)} cell(s) failed; every other result is recorded"
        + (f" in {out}: rerun the same command to retry only the failed ones" if out else ""),
        file=sys.stderr,
    )
    return 2 if all(f.user_error for f in outcome.failures.values()) else 1


def cmd_report(args) -> int:
    from .bench.store import Store
    from .reporting.recorded import render_run

    with Store(_existing_dir(args.dir), read_only=True, check=True) as store:
        print(render_run(store, args.run, args.format, args.layout, args.gain_of, args.digits))
    return 0


def _existing_dir(path: str) -> str:
    if not os.path.isdir(path):
        raise ConfigError(f"no such run directory: {path}", "pass the --out directory of a featbench run")
    return path


def cmd_plot(args) -> int:
    from .bench.store import Store
    from .reporting.plot import write_plots

    with Store(_existing_dir(args.dir), read_only=True, check=True) as store:
        run = store.run(args.run)
        cells = store.cells(store.planned_cells(run.id))
        members = {c.key: store.cell_config_keys(c.key) for c in cells}
        configs = store.configs({k for keys in members.values() for k in keys}, with_epochs=True)
    from .run import prepare_out

    out = prepare_out(args.out or os.path.join(args.dir, "plots"))
    paths = write_plots(cells, members, configs, out, hps=args.hp or None)
    for p in paths:
        print(p)
    if not paths:
        print(
            "featbench: nothing to plot (no hyper-parameter varies in the grids and no per-epoch log; "
            "use --hp NAME=V1,V2,... and --log-every N)",
            file=sys.stderr,
        )
    return 0


def _fetch(args, spec, datasets, backbones, weights=None, required=()) -> list:
    """Download what a command needs and this machine lacks (``featbench.inputs.fetch``), its plan and progress
    on stderr; returns what no script can fetch."""
    from .inputs.fetch import fetch_inputs

    progress = _Progress(spec.quiet)
    try:
        return fetch_inputs(
            datasets,
            backbones,
            registry_path=args.registry,
            data_root=spec.data_root,
            cache_dir=spec.cache_dir,
            weights=weights,
            listener=progress,
            required=required,
        )
    finally:
        progress.close()


def cmd_download(args) -> int:
    from .bench.spec import build_spec, expand_datasets
    from .config import load_registry
    from .errors import DataError, UnknownNameError

    spec = build_spec(_run_flags(args))
    registry = load_registry(args.registry)
    catalogs = {kind: registry.get(kind) or {} for kind in ("datasets", "backbones")}
    datasets, backbones = [], []
    for name in expand_datasets([v.strip() for v in args.names.split(",") if v.strip()]):
        if name in catalogs["datasets"]:
            datasets.append(name)
        elif name in catalogs["backbones"]:
            backbones.append(name)
        else:
            valid = [*catalogs["datasets"], *catalogs["backbones"], "paper"]
            raise UnknownNameError("data set or backbone", name, valid)
    manual = _fetch(args, spec, datasets, backbones)
    fetched = [n for n in datasets + backbones if n not in {m.name for m in manual}]
    if fetched:
        print(f"in place: {', '.join(fetched)}")
    for m in manual[1:]:
        print(f"featbench: error: {m.kind} {m.name} cannot be fetched by a script ({m.manual})", file=sys.stderr)
    if manual:
        raise DataError(f"{manual[0].kind} {manual[0].name} cannot be fetched by a script", manual[0].manual)
    return 0


def cmd_extract(args) -> int:
    from .bench.spec import build_spec
    from .inputs.sources import extract

    spec = build_spec(_run_flags(args))
    i = spec.inputs
    options = dict(
        host=_host(args),
        cache_dir=i.cache_dir,
        device=spec.device,
        weights=dict(i.weights),
        progress=not spec.quiet,
        data_root=i.data_root,
        preprocess=i.image_size,
        batch_size=i.extract_batch_size,
        workers=i.workers,
    )
    _fetch(args, spec, spec.datasets, spec.backbones, i.weights, required=spec.backbones)
    progress = _Progress(spec.quiet)
    for dataset in spec.datasets:
        try:
            _, _, feats = extract(dataset, list(spec.backbones), listener=progress, **options)
        finally:
            progress.close()
        for f in feats:
            sizes = ", ".join(f"{s} {c.x.shape[0]}x{c.x.shape[1]}" for s, c in f.splits.items())
            print(f"{dataset} {f.backbone}: {sizes}; extracted {', '.join(f.extracted) or 'nothing (all cached)'}")
    return 0


def cmd_convert(args) -> int:
    from .inputs.convert import convert_byol

    sd = convert_byol(args.input, args.output)
    print(
        f"wrote {args.output}: {len(sd)} tensors (torchvision resnet50 keys, with the online classifier as fc); "
        f"use it with --weights B={args.output}"
    )
    return 0


COMMANDS = {
    "plugins": cmd_plugins,
    "check-plugin": cmd_check_plugin,
    "run": cmd_run,
    "report": cmd_report,
    "plot": cmd_plot,
    "extract": cmd_extract,
    "download": cmd_download,
    "convert": cmd_convert,
}


def _format_warning(message, category, filename, lineno, file=None, line=None):
    print(f"featbench: warning: {one_line(str(message))}", file=sys.stderr if file is None else file)


#: Environment variables main() sets for its own duration.
_ENV_SET = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "FEATBENCH_OFFLINE", "HF_HUB_OFFLINE")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where it lands in the main thread: handled like Ctrl-C (the run is marked interrupted,
    the results files of what finished are written), with exit status 143."""


_received: list[int] = []  # the signal that interrupted this main(), if any


def _on_sigterm(signum, frame):
    if not _received:  # once: a second SIGTERM must not interrupt the clean-up of the first
        _received.append(signum)
        raise Terminated()


def _handle_sigterm():
    """Install the SIGTERM handler (main thread only); returns the previous one."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _interruption() -> str:
    return "terminated (SIGTERM)" if _received else "interrupted"


def _interrupted_status() -> int:
    """128 + the signal: 143 for SIGTERM, 130 for Ctrl-C (SIGINT)."""
    return 128 + (_received[0] if _received else signal.SIGINT)


def _stdout_is_broken() -> bool:
    """True if stdout is a pipe whose reader has gone (poll reports an error on it); stdout then points at
    /dev/null, so that the interpreter's final flush does not complain."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        broken = any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real stdout (captured, closed)
        return False
    if broken:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    return broken


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
    old_term = _handle_sigterm()
    try:
        if args.registry:  # a missing or malformed file is a one-line error now, not a plugin failure later
            from .config import load_registry

            load_registry(args.registry)
        from .inputs.download import offline, set_offline

        if args.offline or offline():  # every connection refused, the Hugging Face hub's (timm) included
            set_offline()
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        if not _stdout_is_broken():
            raise
        return 128 + signal.SIGPIPE  # the reader went away (featbench report DIR | head): exit quietly
    except FeatbenchError as exc:
        if debug:
            raise
        print(f"featbench: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"featbench: {_interruption()}", file=sys.stderr)
        return _interrupted_status()
    except OSError as exc:  # a file featbench had to write or read (disk full, permissions, ...)
        if debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(
            one_line(
                f"featbench: error: {exc.strerror or exc}{where} ({storage_hint(exc.errno)}; rerun with --debug for "
                "the traceback)"
            ),
            file=sys.stderr,
        )
        return 2
    except Exception as exc:  # a bug or an unexpected environment problem
        if debug:
            raise
        print(
            one_line(
                f"featbench: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                "(rerun with --debug for the traceback and report it)"
            ),
            file=sys.stderr,
        )
        return 1
    finally:
        warnings.showwarning = old_show
        _restore_sigterm(old_term)
        for k, v in saved_env.items():  # main() may be called in-process: leave the environment as it was
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
