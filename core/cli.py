"""Command line: ``featbench plugins``, ``run``, ``extract`` and ``convert``. Only this module prints for humans.

Every user error ends as one line ``featbench: error: PROBLEM (FIX)`` on stderr and exit status 2;
``--debug`` shows tracebacks instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence

from . import __version__
from .errors import ConfigError, FeatbenchError, UnknownNameError

DEFAULT_LOSS = "hinge"


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
    parser = argparse.ArgumentParser(prog="featbench", parents=[_common(True)],
                                     description="Benchmark feature-space augmentation of frozen deep features.")
    parser.add_argument("--version", action="version", version=f"featbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    late = _common(False)

    pp = sub.add_parser("plugins", parents=[late], help="list registered backbones, augmenters, losses and data sets")
    pp.add_argument("--json", action="store_true", help="print JSON")

    rp = sub.add_parser("run", parents=[late], help="train and compare augmenters on feature sets",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Train linear heads with each augmenter on each feature set and print a comparison.\n"
                                    "Several --hp values (or --grid) are searched on the validation split, then the\n"
                                    "chosen configuration is refit on train+val and scored on test.")
    rp.add_argument("--aug", default="none,sea", metavar="NAME[,NAME...]|all", help="augmenters to compare (default: none,sea)")
    rp.add_argument("--features", action="append", default=[], metavar="A.npz[,B.npz...]",
                    help="a feature set (several comma-separated files form an ensemble); repeat for more columns. "
                         "Default: the embedded scikit-learn digits set")
    rp.add_argument("--loss", default=DEFAULT_LOSS, help=f"training loss (default: {DEFAULT_LOSS})")
    rp.add_argument("--hp", action="append", default=[], metavar="KEY=V[,V2...]",
                    help="fix a hyper-parameter, or give several values to search (repeatable)")
    rp.add_argument("--grid", default=None, metavar="NAME", help="search a named grid from registry.yaml (paper, quick)")
    rp.add_argument("--epochs", type=int, default=100, help="training epochs (default: 100)")
    rp.add_argument("--batch-size", type=int, default=256, help="mini-batch size (default: 256)")
    rp.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    rp.add_argument("--seeds", type=int, default=1, help="number of seeds, seed..seed+N-1 (default: 1)")
    rp.add_argument("--val-fraction", type=float, default=0.2, help="hold-out fraction of train for the search when there is no val split")
    rp.add_argument("--metric", choices=["top1", "mean_per_class"], default=None, help="override the feature set's metric")
    rp.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    rp.add_argument("--format", default="table", help="table, markdown, csv, json or latex (default: table)")
    rp.add_argument("--gain-of", default=None, metavar="NAME", help="augmenter of the Gain row (default: sea, else the last)")
    rp.add_argument("--out", default=None, metavar="DIR", help="also write results.json, cells.jsonl and the table here")
    rp.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    _image_options(rp, extract=False)

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


def _host(args):
    from .manager import load_plugins

    return load_plugins(local_modules=args.plugins, disabled=args.disabled, strict=args.strict_plugins or None)


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


def _versions(device: str) -> dict:
    import numpy
    import torch

    v = {"featbench": __version__, "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
         "platform": platform.platform(), "device": device}
    if device.startswith("cuda"):
        v["gpu"] = torch.cuda.get_device_name(0)
    return v


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
    """The keyword arguments of ``featbench.sources.feature_set_for`` / ``extract`` from the image options."""
    if args.image_size is not None and args.image_size < 8:
        raise ConfigError(f"--image-size {args.image_size} is too small", "e.g. --image-size 224")
    if args.extract_batch_size < 1:
        raise ConfigError(f"--extract-batch-size {args.extract_batch_size} must be at least 1", "e.g. --extract-batch-size 64")
    return dict(host=host, cache_dir=args.cache_dir, device=args.device, weights=_parse_weights(args.weights),
                progress=not args.quiet, data_root=args.data_root, preprocess=args.image_size,
                batch_size=args.extract_batch_size, workers=args.workers)


def _image_feature_sets(args, host):
    """One FeatureSet per --dataset, from the --backbones ensemble (extracting what the cache lacks)."""
    import attrs

    from .sources import feature_set_for

    if not args.backbones or not args.dataset:
        raise ConfigError("--backbones and --dataset go together", "e.g. --backbones timm:test_resnet --dataset digits")
    if getattr(args, "features", None):
        raise ConfigError("--features and --backbones/--dataset are alternatives", "give one of them")
    options = _source_options(args, host)
    sets = []
    for dataset in _split(args.dataset):
        fs = feature_set_for(dataset, _split(args.backbones), **options)
        sets.append(attrs.evolve(fs, metric=args.metric) if getattr(args, "metric", None) else fs)
    return sets


def _feature_sets(args, host=None):
    from .features import load_features

    if args.backbones or args.dataset:
        return _image_feature_sets(args, host)
    if not args.features:
        from .demo import digits_features

        if not args.quiet:
            print("featbench: no --features given: using the embedded default (scikit-learn digits, pixel features)", file=sys.stderr)
        fs = digits_features(seed=0)
        if args.metric:
            import attrs

            fs = attrs.evolve(fs, metric=args.metric)
        return [fs]
    return [load_features([p for p in spec.split(",") if p], metric=args.metric) for spec in args.features]


def _check_settings(args) -> None:
    if args.epochs < 1:
        raise ConfigError(f"--epochs {args.epochs} must be at least 1", "e.g. --epochs 100")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} must be at least 1", "e.g. --batch-size 256")
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds} must be at least 1", "e.g. --seeds 3")
    if not 0 < args.val_fraction < 1:
        raise ConfigError(f"--val-fraction {args.val_fraction} must be between 0 and 1", "e.g. --val-fraction 0.2")
    from .report import FORMATS

    if args.format not in FORMATS:
        raise UnknownNameError("output format", args.format, FORMATS)


def _prepare_out(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".featbench-write-test")
        with open(probe, "w") as f:
            f.write("")
        os.remove(probe)
    except OSError as exc:
        raise ConfigError(f"cannot write to --out {path}: {exc.strerror or exc}", "choose a writable directory") from None
    return path


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _plan(args, host):
    """Resolve augmenters, loss and each augmenter's grid before any computation."""
    from .config import grid_values, load_registry
    from .grid import expand_grid, hparams_for, parse_hp_args

    names = host.list_augmenters() if args.aug.strip() == "all" else [a.strip() for a in args.aug.split(",") if a.strip()]
    if not names:
        raise ConfigError("--aug is empty", f"name augmenters, e.g. --aug none,sea (registered: {', '.join(host.list_augmenters())})")
    aug_classes = {n: host.get_augmenter(n) for n in names}
    loss_cls = host.get_loss(args.loss)
    user_hp = parse_hp_args(args.hp)
    registry = load_registry(args.registry) if args.grid else None
    plans = []
    known: set[str] = set()
    for name, cls in aug_classes.items():
        params = hparams_for(loss_cls, cls)
        known |= set(params)
        values = grid_values(registry, args.grid, ["trainer", args.loss, name]) if registry is not None else {}
        values = {k: v for k, v in values.items() if k in params}
        values.update({k: v for k, v in user_hp.items() if k in params})
        plans.append((name, cls, params, expand_grid(params, values)))
    for k in user_hp:
        if k not in known:
            raise UnknownNameError("hyper-parameter", k, known, f"for --aug {','.join(names)} with --loss {args.loss}")
    return plans, loss_cls


def cmd_run(args) -> int:
    from .protocol import run_cell
    from .report import aggregate, render, to_json_data
    from .train import TrainSettings, resolve_device

    _check_settings(args)
    host = _host(args)
    plans, loss_cls = _plan(args, host)
    out = _prepare_out(args.out)
    sets = _feature_sets(args, host)
    device = resolve_device(args.device)
    seeds = list(range(args.seed, args.seed + args.seeds))
    total = len(sets) * len(plans) * len(seeds)
    results = []
    done = 0
    cells_path = os.path.join(out, "cells.jsonl") if out else None
    interrupted = False
    try:
        for fs in sets:
            for name, cls, params, configs in plans:
                for seed in seeds:
                    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, seed=seed, device=device)
                    r = run_cell(fs, name, cls, args.loss, loss_cls(), params, configs, settings, args.val_fraction)
                    results.append(r)
                    done += 1
                    if not args.quiet:
                        extra = f", {sum(r.diverged)} diverged" if any(r.diverged) else ""
                        print(f"[{done}/{total}] {name} on {fs.name} (seed {seed}, {len(configs)} config(s)): "
                              f"{r.metric} {r.value:.2f} in {r.seconds:.1f}s{extra}", file=sys.stderr)
                    if cells_path:
                        with open(cells_path, "a", encoding="utf-8") as f:
                            f.write(json.dumps({k: v for k, v in _cell_dict(r).items()}) + "\n")
    except KeyboardInterrupt:
        interrupted = True
        print(f"featbench: interrupted after {done}/{total} cells; reporting those", file=sys.stderr)
    if not results:
        return 130
    meta = {"versions": _versions(device),
            "settings": {"epochs": args.epochs, "batch_size": args.batch_size, "seeds": seeds, "loss": args.loss,
                         "grid": args.grid, "hp": args.hp, "val_fraction": args.val_fraction, "momentum": 0.9}}
    report = aggregate(results, args.gain_of, meta)
    text = render(report, args.format)
    print(text)
    if out:
        _write_atomic(os.path.join(out, "results.json"), json.dumps(to_json_data(report), indent=2, default=str))
        _write_atomic(os.path.join(out, f"table.{ {'table': 'txt', 'markdown': 'md', 'latex': 'tex'}.get(args.format, args.format) }"), text + "\n")
    return 130 if interrupted else 0


def _cell_dict(r) -> dict:
    return {"augmenter": r.augmenter, "loss": r.loss, "features": r.features, "metric": r.metric, "value": r.value,
            "top1": r.top1, "mean_per_class": r.mean_per_class, "hp": r.hp, "seed": r.seed, "seconds": r.seconds,
            "grid_size": r.grid_size, "val_value": r.val_value, "diverged": list(r.diverged),
            "unaugmented_batches": r.unaugmented_batches}


def cmd_extract(args) -> int:
    from .sources import extract

    options = _source_options(args, _host(args))
    for dataset in _split(args.dataset):
        _, _, feats = extract(dataset, _split(args.backbones), **options)
        for f in feats:
            sizes = ", ".join(f"{s} {c.x.shape[0]}x{c.x.shape[1]}" for s, c in f.splits.items())
            print(f"{dataset} {f.backbone}: {sizes}; extracted {', '.join(f.extracted) or 'nothing (all cached)'}")
    return 0


def cmd_convert(args) -> int:
    from .convert import convert_byol

    sd = convert_byol(args.input, args.output)
    print(f"wrote {args.output}: {len(sd)} tensors (torchvision resnet50 keys, with the online classifier as fc); "
          f"use it with --weights B={args.output}")
    return 0


COMMANDS = {"plugins": cmd_plugins, "run": cmd_run, "extract": cmd_extract, "convert": cmd_convert}


def _format_warning(message, category, filename, lineno, file=None, line=None):
    print(f"featbench: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug
    old_show = warnings.showwarning
    if not debug:
        warnings.showwarning = _format_warning
    try:
        return COMMANDS[args.command](args)
    except FeatbenchError as exc:
        if debug:
            raise
        print(f"featbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("featbench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unexpected environment problem
        if debug:
            raise
        print(f"featbench: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(rerun with --debug for the traceback and report it)", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = old_show
