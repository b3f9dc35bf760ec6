"""The pickle-free state codec: every supported value comes back equal, bit for bit; nothing else is written."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from featbench.training import halving, tensor_codec


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_nested_values_round_trip_exactly():
    gen = torch.Generator().manual_seed(3)
    value = {
        "weight": torch.randn(3, 5, generator=gen),
        "half": torch.randn(4, generator=gen).to(torch.bfloat16),
        "f16": torch.randn(2, 2, generator=gen).half(),
        "f64": torch.randn(2, generator=gen, dtype=torch.float64),
        "alive": torch.tensor([True, False]),
        "rng": gen.get_state(),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 7),
        "ints": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "strided": torch.arange(12.0).reshape(3, 4).t(),
        "numbers": [1, -2, 0.1, float("nan"), float("inf"), -float("inf"), True, None, "name"],
        "pair": (1, (torch.ones(1), "x")),
        "nested": {"$t": [1], "$dict": {"k": None}, "list": [{"a": torch.zeros(2)}]},
        "big": 2**62,
    }
    back = tensor_codec.loads(tensor_codec.dumps(value))
    assert _same(value, back)
    assert back["strided"].is_contiguous() and torch.equal(back["strided"], value["strided"])


def test_halving_states_use_the_codec_and_still_read_torch_save_blobs():
    state = {"epoch": 3, "weight": torch.randn(2, 4), "augmenter": {}}
    blob = halving.encode(state)
    assert tensor_codec.is_encoded(blob) and _same(halving.decode(blob), state)
    buf = io.BytesIO()
    torch.save(state, buf)  # a store written before the codec
    assert _same(halving.decode(buf.getvalue()), state)


@pytest.mark.parametrize("bad", [object(), {1: torch.zeros(1)}, {"s": {1, 2}}, b"bytes"])
def test_unsupported_values_are_refused(bad):
    with pytest.raises(TypeError, match="tensor_codec"):
        tensor_codec.dumps(bad)


def _blob(entry, body: bytes = bytes(16)) -> bytes:
    header = json.dumps({"$dict": {"w": {"$t": entry}}}).encode()
    return tensor_codec.MAGIC + len(header).to_bytes(8, "little") + header + body


@pytest.mark.parametrize(
    "entry",
    [
        ["load", [4], 0, 16],  # a torch function, not a dtype
        ["nothing", [4], 0, 16],  # no such attribute
        [3, [4], 0, 16],  # not a name
        ["float32", [5], 0, 16],  # the shape does not match the bytes
        ["float32", [-4], 0, 16],
        ["float32", [4], 8, 16],  # past the end of the blob
        ["float32", [4.0], 0, 16],
    ],
)
def test_corrupt_entries_are_refused_without_running_anything(entry):
    assert torch.equal(tensor_codec.loads(_blob(["float32", [4], 0, 16]))["w"], torch.zeros(4))
    with pytest.raises(ValueError, match="corrupt"):
        tensor_codec.loads(_blob(entry))


def test_a_blob_without_the_magic_bytes_is_refused():
    with pytest.raises(ValueError, match="magic"):
        tensor_codec.loads(b"PK" + tensor_codec.dumps({"w": torch.ones(4)}))
