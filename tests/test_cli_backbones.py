"""CLI: run/extract with --backbones and --dataset, --weights M=PATH (MoCo v3 format), convert byol, errors."""

from __future__ import annotations

import pickle

import bbdata
import numpy as np
import pytest
import torch

from featbench.cli import main


def test_run_on_images_then_again_from_the_cache(tmp_path, capsys):
    pytest.importorskip("sklearn")
    args = ["run", "--aug", "none,sea", "--backbones", "timm:test_resnet", "--dataset", "digits", "--image-size", "32",
            "--epochs", "2", "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split()[:2] == ["augmenter", "digits"] and "Gain (sea - none)" in out
    assert "extracting digits/train" in err
    assert main(args) == 0
    out2, err2 = capsys.readouterr()
    assert "extracting" not in err2 and "loaded from the cache" in err2
    assert out2.splitlines()[:4] == out.splitlines()[:4]  # same numbers from the cached features


def _folder(root, classes=("a", "b"), per_split=(3, 2)):
    for split, k in zip(("train", "test"), per_split):
        for ci, c in enumerate(classes):
            for j in range(k):
                bbdata.write_image(str(root / split / c / f"{j}.png"), 40 * ci + 7 * j)
    return root


def test_mocov3_checkpoint_through_weights_flag_gives_the_source_features(tmp_path, capsys):
    """Acceptance: a MoCo v3 pretrain-format checkpoint built from known weights, loaded with --weights M=PATH,
    yields exactly the source model's features (before the float16 cache rounding)."""
    import torchvision

    from featbench.inputs.sources import feature_set_for
    from featbench.manager import load_plugins

    torch.manual_seed(11)
    src = torchvision.models.resnet50(weights=None).eval()
    sd = {f"module.base_encoder.{k}": v for k, v in src.state_dict().items() if not k.startswith("fc.")}
    sd["module.base_encoder.fc.0.weight"] = torch.randn(16, 2048)
    sd["module.momentum_encoder.conv1.weight"] = torch.randn(64, 3, 7, 7)
    ckpt = tmp_path / "r-50-1000ep.pth.tar"
    torch.save({"epoch": 1000, "arch": "resnet50", "state_dict": sd}, ckpt)
    data = _folder(tmp_path / "imgs")
    assert main(["extract", "--backbones", "M", "--dataset", f"folder:{data}", "--weights", f"M={ckpt}", "--image-size", "32",
                 "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    assert "extracted train, val, test" in capsys.readouterr().out
    host = load_plugins(strict=True, entry_points=[])
    fs = feature_set_for(f"folder:{data}", ["M"], host=host, weights={"M": str(ckpt)}, cache_dir=str(tmp_path / "c"),
                         preprocess=32, progress=False)
    spec = host.get_backbone("M")
    splits = host.get_dataset(f"folder:{data}").load("")
    tf = spec.preprocess.with_size(32).transform()
    src.fc = torch.nn.Identity()
    from reference import extract_array

    from featbench.inputs.extract import ExtractSettings
    from featbench.inputs.features import l2_normalize

    # the source model through the same extraction path: bit-identical
    want = extract_array(src, splits.test, tf, ExtractSettings(progress=False))
    assert np.array_equal(fs.test_x, l2_normalize(want.astype(np.float16)))
    # and a plain forward pass agrees up to float16 rounding (the memory format changes the last bits)
    x = torch.stack([tf(splits.test.image(i)) for i in range(len(splits.test))])
    with torch.no_grad():
        plain = src.to(memory_format=torch.contiguous_format)(x).numpy()
    assert np.allclose(fs.test_x, l2_normalize(plain), atol=2e-4)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["run", "--dataset", "digits"]) == 2
    assert "--dataset needs --backbones" in capsys.readouterr().err
    assert main(["run", "--backbones", "S", "--dataset", "digits", "--weights", "S"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert main(["extract", "--backbones", "C", "--dataset", "digits", "--cache-dir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "drive.google.com" in err and "--weights C=FILE" in err
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    assert main(["convert", "byol", str(p), str(tmp_path / "o.pth")]) == 2
    assert "experiment_state" in capsys.readouterr().err


def test_plugins_lists_backbones_and_datasets(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for name in ("S", "M", "B", "C", "timm:", "torchvision:", "efficientnet-lite0", "mobilenet-v2", "cifar100", "digits",
                 "fashion-mnist", "folder:"):
        assert f" {name} " in out, name
    assert "MoCo v3 ResNet-50" in out
