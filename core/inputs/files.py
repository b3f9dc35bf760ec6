"""Writing a file so that readers see its old content or its new content, never a mix or a fragment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def replacing(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path next to ``path`` to write; on success it is renamed over ``path``, on any
    error (KeyboardInterrupt included) it is removed and ``path`` is left as it was."""
    tmp = f"{path}.tmp{os.getpid()}{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8) atomically (:func:`replacing`)."""
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
