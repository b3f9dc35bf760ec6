"""feature_set_for: extraction through the cache equals direct extraction; ensembles; cache reuse and keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import ensemble, extract_array

from featbench.inputs.cache import FeatureCache
from featbench.inputs.extract import ExtractSettings, extract_into
from featbench.inputs.features import l2_normalize
from featbench.inputs.sources import assemble, feature_set_for
from featbench.inputs.weights import build_backbone, resolve_weights
from featbench.manager import load_plugins

SIZE = 32  # --image-size for every test here: tiny images keep them fast


@pytest.fixture(scope="module")
def host():
    return load_plugins(strict=True, entry_points=[])


@pytest.fixture
def digits_root(tmp_path, host):
    pytest.importorskip("sklearn")
    return str(tmp_path / "data")


def direct(host, name, split_source, weights=None):
    """The straightforward path: build the model, transform every image, run it (no cache)."""
    spec = host.get_backbone(name)
    model = build_backbone(name, spec, resolve_weights(name, spec, weights))
    return extract_array(model, split_source, spec.preprocess.with_size(SIZE).transform(), ExtractSettings(batch_size=50, progress=False))


def test_cached_features_equal_direct_extraction(host, tmp_path, digits_root):
    fs = feature_set_for("digits", ["timm:test_resnet"], host=host, cache_dir=str(tmp_path / "c"), device="cpu",
                         progress=False, preprocess=SIZE)
    splits = host.get_dataset("digits").load(digits_root)
    for split, src in splits.items():
        want = l2_normalize(direct(host, "timm:test_resnet", src).astype(np.float16))  # the cache stores float16
        assert np.array_equal(getattr(fs, f"{split}_x"), want), split
        assert np.array_equal(getattr(fs, f"{split}_y"), src.labels)
    assert fs.name == "digits@timm:test_resnet" and fs.metric == "top1" and fs.num_classes == 10
    assert len(fs.cache_keys) == 3 and len(set(fs.cache_keys)) == 3


def test_second_call_builds_nothing_and_keys_track_what_changes_numbers(host, tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    kw = dict(host=host, cache_dir=str(tmp_path / "c"), progress=False, preprocess=SIZE)
    first = feature_set_for("digits", ["timm:test_resnet"], **kw)

    def no_build(*a, **k):
        raise AssertionError("the model was built although everything is cached")

    monkeypatch.setattr("featbench.inputs.sources.build_backbone", no_build)
    again = feature_set_for("digits", ["timm:test_resnet"], **kw)
    assert again.cache_keys == first.cache_keys and np.array_equal(again.train_x, first.train_x)
    with pytest.raises(AssertionError, match="was built"):  # another size is another key
        feature_set_for("digits", ["timm:test_resnet"], **{**kw, "preprocess": SIZE + 8})
    path = str(tmp_path / "w.pth")
    torch.save({"x": torch.zeros(1)}, path)
    spec = host.get_backbone("timm:test_resnet")
    assert resolve_weights("n", spec, path).id != resolve_weights("n", spec, "random").id


def test_ensemble_is_blockwise_normalised_concatenation(host, tmp_path):
    pytest.importorskip("sklearn")
    kw = dict(host=host, cache_dir=str(tmp_path / "c"), progress=False, preprocess=SIZE)
    a = feature_set_for("digits", ["timm:test_resnet"], **kw)
    b = feature_set_for("digits", ["timm:test_efficientnet"], **kw)
    both = feature_set_for("digits", ["timm:test_resnet", "timm:test_efficientnet"], **kw)
    assert both.dim == a.dim + b.dim and both.cache_keys == a.cache_keys + b.cache_keys
    ref = ensemble([a, b])
    for split in ("train", "val", "test"):
        got, want = getattr(both, f"{split}_x"), getattr(ref, f"{split}_x")
        assert np.allclose(got, want, atol=1e-6)
        assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


def test_assemble_in_row_chunks_equals_the_formula():
    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=(37, d)).astype(np.float16) for d in (5, 3)]
    want = l2_normalize(np.concatenate([l2_normalize(b) for b in blocks], axis=1))
    assert np.array_equal(assemble(blocks, row_chunk=10), want)
    assert np.array_equal(assemble(blocks[:1], row_chunk=10), l2_normalize(blocks[0]))


def test_interrupted_extraction_resumes_and_matches(host, tmp_path, digits_root):
    splits = host.get_dataset("digits").load(digits_root)
    src = splits.val  # 239 images
    spec = host.get_backbone("timm:test_resnet")
    model = build_backbone("t", spec, resolve_weights("t", spec))
    tf = spec.preprocess.with_size(SIZE).transform()
    cache = FeatureCache(str(tmp_path / "c"), chunk_rows=64)
    calls = {"n": 0}
    real = model.forward

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user presses ^C during the third batch
        return real(x)

    model.forward = flaky
    settings = ExtractSettings(batch_size=50, progress=False)
    with pytest.raises(KeyboardInterrupt):
        extract_into(cache.writer("k" * 64, src.labels, {}), model, src, tf, settings)
    w = cache.writer("k" * 64, src.labels, {})
    assert w.start == 64  # one complete chunk of 64 rows survived (100 rows were computed)
    model.forward = real
    extract_into(w, model, src, tf, settings)
    got = cache.load("k" * 64).x
    assert np.array_equal(got, extract_array(model, src, tf, settings).astype(np.float16))


def test_unknown_names_and_bad_weights_are_reported(host, tmp_path):
    from featbench.errors import ConfigError, UnknownNameError

    with pytest.raises(UnknownNameError, match="digits"):
        feature_set_for("digitz", ["S"], host=host, cache_dir=str(tmp_path), progress=False)
    with pytest.raises(ConfigError, match="not among the backbones"):
        feature_set_for("digits", ["timm:test_resnet"], host=host, weights={"M": "x.pth"}, cache_dir=str(tmp_path), progress=False)
    with pytest.raises(ConfigError, match="twice"):
        feature_set_for("digits", ["S", "S"], host=host, cache_dir=str(tmp_path), progress=False)


def test_missing_weights_fail_before_any_extraction(host, tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    from featbench.inputs.weights import WeightsUnavailableError

    def no_build(*a, **k):
        raise AssertionError("extraction started before all weights were found")

    monkeypatch.setattr("featbench.inputs.sources.build_backbone", no_build)
    with pytest.raises(WeightsUnavailableError, match="--weights C=FILE"):
        feature_set_for("digits", ["timm:test_resnet", "C"], host=host, cache_dir=str(tmp_path), progress=False, preprocess=SIZE)


class Recorder:
    """An ExtractListener that keeps what it is told."""

    def __init__(self):
        self.messages, self.images = [], []

    def message(self, text):
        self.messages.append(text)

    def images_started(self, desc, total, done):
        self.images.append([desc, total, done, 0])

    def images_done(self, n):
        self.images[-1][3] += n

    def images_finished(self):
        pass


def test_progress_goes_to_the_listener_and_nothing_is_printed(host, tmp_path, capsys):
    pytest.importorskip("sklearn")
    kw = dict(host=host, cache_dir=str(tmp_path / "c"), device="cpu", preprocess=SIZE)
    silent = Recorder()
    feature_set_for("digits", ["timm:test_resnet"], progress=False, listener=silent, **kw)
    assert silent.messages == [] and silent.images == []
    told = Recorder()
    fs = feature_set_for("digits", ["timm:test_resnet"], progress=True, listener=told, **kw)
    assert told.messages == ["timm:test_resnet: digits features loaded from the cache"] and told.images == []
    fresh = Recorder()
    feature_set_for("digits", ["timm:test_resnet"], progress=True, listener=fresh, **{**kw, "cache_dir": str(tmp_path / "d")})
    assert fresh.messages[0].startswith("timm:test_resnet: building the model")
    sizes = [len(y) for y in (fs.train_y, fs.val_y, fs.test_y)]
    assert [(total, done, seen) for _, total, done, seen in fresh.images] == [(n, 0, n) for n in sizes]
    assert capsys.readouterr() == ("", "")
