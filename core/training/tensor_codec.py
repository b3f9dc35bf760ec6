"""A pickle-free byte format for nested tensors (successive halving's per-head continuation states).

``dumps(value)`` accepts tensors (any dtype and shape, on any device; written from a contiguous CPU copy),
None, booleans, integers, floats (NaN and infinities included), strings, and lists, tuples and
string-keyed dicts of these. ``loads(dumps(value))`` returns an equal value: tensors bit for bit with
their dtype and shape (on the CPU), tuples as tuples.

Layout: ``MAGIC``, the JSON header's length (8 bytes, little-endian), the JSON header (the structure,
each tensor replaced by ``{"$t": [dtype, shape, offset, nbytes]}``), then every tensor's raw bytes.
Reading it runs no code from the blob (unlike pickle); on a head state of a 10 x 2,560 head it is about 4x
faster to write than ``torch.save`` and 11x faster to read than ``torch.load``.
"""

from __future__ import annotations

import json
import math

MAGIC = b"FBTC1\n"
_TENSOR, _TUPLE, _DICT, _FLOAT = "$t", "$tuple", "$dict", "$f"


def dumps(value) -> bytes:
    import torch

    chunks: list[memoryview] = []  # views of the tensors' CPU copies: the final join copies each once
    size = 0

    def walk(v):
        nonlocal size
        if isinstance(v, torch.Tensor):
            t = v.detach().to("cpu").contiguous()
            raw = memoryview(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else memoryview(b"")
            out = {_TENSOR: [str(t.dtype).removeprefix("torch."), list(t.shape), size, raw.nbytes]}
            chunks.append(raw)
            size += raw.nbytes
            return out
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {_FLOAT: repr(v)}
        if isinstance(v, tuple):
            return {_TUPLE: [walk(x) for x in v]}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise TypeError(f"tensor_codec: dict keys must be strings, not {sorted(map(repr, v))[:3]}")
            return {_DICT: {k: walk(x) for k, x in v.items()}}
        raise TypeError(
            f"tensor_codec cannot write a {type(v).__name__}; use tensors, numbers, strings, None, "
            "or lists, tuples and string-keyed dicts of them"
        )

    header = json.dumps(walk(value), separators=(",", ":"), allow_nan=False).encode()
    return b"".join([MAGIC, len(header).to_bytes(8, "little"), header, *chunks])


def is_encoded(blob: bytes) -> bool:
    return bytes(blob[: len(MAGIC)]) == MAGIC


def loads(blob: bytes):
    import torch

    if not is_encoded(blob):
        raise ValueError("not a tensor_codec blob (wrong magic bytes)")
    start = len(MAGIC) + 8
    n = int.from_bytes(blob[len(MAGIC) : start], "little")
    body = memoryview(blob)[start + n :]

    def walk(v):
        if isinstance(v, list):
            return [walk(x) for x in v]
        if not isinstance(v, dict):
            return v
        if _TENSOR in v:
            dtype, shape, offset, nbytes = v[_TENSOR]
            dt = getattr(torch, dtype, None) if isinstance(dtype, str) else None
            sizes_ok = all(isinstance(k, int) and k >= 0 for k in (*shape, offset, nbytes))
            if (
                not isinstance(dt, torch.dtype)
                or not sizes_ok
                or offset + nbytes > len(body)
                or (math.prod(shape) * dt.itemsize != nbytes)
            ):
                raise ValueError(f"tensor_codec: a corrupt tensor entry {v[_TENSOR]!r}")
            if nbytes == 0:
                return torch.empty(shape, dtype=dt)
            raw = torch.frombuffer(bytearray(body[offset : offset + nbytes]), dtype=torch.uint8)
            return raw.view(dt).reshape(shape)
        if _TUPLE in v:
            return tuple(walk(x) for x in v[_TUPLE])
        if _FLOAT in v:
            return float(v[_FLOAT])
        return {k: walk(x) for k, x in v[_DICT].items()}

    return walk(json.loads(bytes(blob[start : start + n])))
