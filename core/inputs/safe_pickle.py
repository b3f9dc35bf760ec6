"""Reading pickles without running code from them.

Some data we must read only exists as pickles: the CIFAR "python version" batches and BYOL's released
JAX/Haiku checkpoint. :func:`load` unpickles with an allow-list: numpy's array reconstruction, a few
inert builtins, and ``_codecs.encode`` for protocol-2 byte strings. Any other class or function the file
names (a Haiku container, a JAX array, a NamedTuple of the training code) becomes an inert
:class:`Record` that keeps its constructor arguments and state and never executes anything. Containers
built from a single mapping (``haiku.FlatMapping(dict)``, ``frozendict(dict)``) come back as plain dicts.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from ..errors import DataError

# numpy's own reconstruction functions, found without touching the deprecated ``numpy.core`` alias
_NUMPY = {
    ("numpy.core.multiarray", "_reconstruct"): np.zeros(0).__reduce__()[0],
    ("numpy.core.multiarray", "scalar"): np.float64(0).__reduce__()[0],
    ("numpy.core.numeric", "_frombuffer"): np.zeros(1).__reduce_ex__(5)[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_BUILTINS = {"set": set, "frozenset": frozenset, "tuple": tuple, "list": list, "dict": dict, "bytearray": bytearray,
             "complex": complex, "int": int, "float": float, "bool": bool, "str": str, "bytes": bytes, "slice": slice}


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 only)."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


class Record:
    """An inert stand-in for an object of a class we refuse to import (``qualname`` says which)."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], dict):
            return dict(args[0])  # a mapping container -> a plain dict
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args, **kwargs):  # never runs anything
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"Record({self.qualname}, {len(self.args)} args)"


_record_classes: dict[str, type] = {}


def _record_class(module: str, name: str) -> type:
    qual = f"{module}.{name}"
    if qual not in _record_classes:
        _record_classes[qual] = type(
            name, (Record,), {"qualname": qual, "__module__": "featbench.inputs.safe_pickle.records"}
        )
    return _record_classes[qual]


def _newobj(cls, *args):
    if not (isinstance(cls, type) and issubclass(cls, Record)):
        raise pickle.UnpicklingError(f"refusing copyreg.__newobj__ on {cls!r}")
    return cls.__new__(cls, *args)


def _reconstructor(cls, base, state):
    if isinstance(cls, type) and issubclass(cls, Record):
        return cls.__new__(cls, state)
    raise pickle.UnpicklingError(f"refusing copyreg._reconstructor on {cls!r}")


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        mod = module.replace("numpy._core", "numpy.core")
        if (mod, name) in _NUMPY:
            return _NUMPY[(mod, name)]
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return _BUILTINS[name]
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        if (module, name) == ("copyreg", "__newobj__"):
            return _newobj
        if (module, name) == ("copyreg", "_reconstructor"):
            return _reconstructor
        if module in (
            "builtins",
            "__builtin__",
            "os",
            "posix",
            "nt",
            "subprocess",
            "sys",
            "importlib",
            "runpy",
            "shutil",
        ):
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        return _record_class(module, name)


def loads(data: bytes, *, encoding: str = "ASCII") -> Any:
    """Unpickle ``data`` with the allow-list (see the module docstring)."""
    return _SafeUnpickler(io.BytesIO(data), encoding=encoding).load()


def load(path: str, *, encoding: str = "ASCII") -> Any:
    """Unpickle the file at ``path`` with the allow-list; a DataError if it cannot be read that way."""
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding=encoding).load()
    except FileNotFoundError:
        raise DataError(f"file not found: {path}", "check the path") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(
            f"{path}: cannot be read as a data-only pickle ({type(exc).__name__}: {exc})",
            "is it the right file? featbench never executes code from pickles",
        ) from None
