"""Unpacking tar and zip archives without writing outside the target folder.

Invariants: every member is checked before anything is written, and one bad member refuses the whole
archive (nothing is extracted): absolute names, ``..`` components, links (symbolic or hard) that resolve
outside the target, and device, FIFO or other special files. Tar archives are additionally extracted
with tarfile's ``data`` filter where Python has it. Members are first unpacked into a temporary folder
beside the target (same file system), then moved into place entry by entry with ``os.replace``, so a
half-unpacked archive is never found at the target; an interrupted unpacking leaves only the temporary
folder, which the next attempt removes.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile

from ..errors import DataError

TEMP_PREFIX = ".featbench-unpack-"


def _refuse(archive: str, member: str, why: str) -> DataError:
    return DataError(
        f"archive {os.path.basename(archive)}: member {member!r} {why}; nothing was extracted",
        "the archive is damaged or malicious: delete it and download it from the catalog's URL",
    )


def _inside(name: str) -> bool:
    """Whether the relative archive path ``name`` stays inside the folder it is extracted to."""
    norm = posixpath.normpath(name.replace("\\", "/"))
    return not (norm.startswith(("/", "../")) or norm == ".." or (len(norm) > 1 and norm[1] == ":"))


def _check_name(archive: str, name: str) -> None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise _refuse(archive, name, "has an absolute path")
    if ".." in name.replace("\\", "/").split("/"):
        raise _refuse(archive, name, "climbs out of the target with '..'")


def check_tar(archive: str, members: list[tarfile.TarInfo]) -> None:
    for m in members:
        _check_name(archive, m.name)
        if m.issym():
            target = posixpath.join(posixpath.dirname(m.name), m.linkname)
            if m.linkname.startswith("/") or not _inside(target):
                raise _refuse(archive, m.name, f"is a link to {m.linkname!r}, outside the target")
        elif m.islnk():
            if m.linkname.startswith("/") or not _inside(m.linkname):
                raise _refuse(archive, m.name, f"is a hard link to {m.linkname!r}, outside the target")
        elif not (m.isfile() or m.isdir()):
            raise _refuse(archive, m.name, "is a device, FIFO or other special file")


def check_zip(archive: str, infos: list[zipfile.ZipInfo]) -> None:
    for info in infos:
        _check_name(archive, info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise _refuse(archive, info.filename, "is a symbolic link (links in zip archives are not unpacked)")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _refuse(archive, info.filename, "is a device, FIFO or other special file")


def _unpack_into(archive: str, folder: str) -> None:
    """Check every member of ``archive`` (tar of any compression, or zip), then extract it into ``folder``."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            infos = z.infolist()
            check_zip(archive, infos)
            z.extractall(folder)
        return
    try:
        with tarfile.open(archive, "r:*") as t:
            members = t.getmembers()
            check_tar(archive, members)
            if hasattr(tarfile, "data_filter"):
                t.extractall(folder, members=members, filter="data")
            else:  # Python without extraction filters: the checks above are the guard
                t.extractall(folder, members=members)
    except (tarfile.TarError, EOFError) as exc:
        raise DataError(
            f"archive {os.path.basename(archive)} cannot be read ({exc})",
            "it is damaged: delete it and download it again",
        ) from None


def _merge(src: str, dst: str) -> None:
    """Move ``src`` to ``dst``; folders that exist on both sides are merged, files replaced."""
    if os.path.isdir(src) and not os.path.islink(src) and os.path.isdir(dst) and not os.path.islink(dst):
        for name in sorted(os.listdir(src)):
            _merge(os.path.join(src, name), os.path.join(dst, name))
        os.rmdir(src)
    else:
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst)
        os.replace(src, dst)


def within(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([path, root]) == root


def unpack(archive: str, target: str, root: str, inner: str | None = None) -> None:
    """Extract ``archive`` into the folder ``target`` (created if needed), which must lie inside ``root``.

    ``inner`` names an archive inside ``archive`` (Caltech-101's ``101_ObjectCategories.tar.gz`` in its zip):
    only that one is unpacked into ``target``; the rest of the outer archive is discarded.
    """
    if not within(target, root):
        raise DataError(
            f"unpacking {os.path.basename(archive)}: {target} lies outside the data root {root}",
            "the catalog entry's into: must be a relative path inside the data root",
        )
    created = not os.path.isdir(target)
    os.makedirs(target, exist_ok=True)
    try:
        _unpack_checked(archive, target, inner)
    except BaseException:
        if created and not os.listdir(target):
            os.rmdir(target)
        raise


def _unpack_checked(archive: str, target: str, inner: str | None) -> None:
    for stale in os.listdir(target):  # left by an interrupted unpacking
        if stale.startswith(TEMP_PREFIX):
            shutil.rmtree(os.path.join(target, stale), ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=target)
    try:
        _unpack_into(archive, tmp)
        if inner is not None:
            _check_name(archive, inner)
            nested = os.path.join(tmp, inner)
            if not os.path.isfile(nested):
                raise DataError(
                    f"archive {os.path.basename(archive)} has no {inner}",
                    "the catalog entry's inner: names a file the archive lacks, or the file changed upstream",
                )
            tmp2 = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=target)
            try:
                _unpack_into(nested, tmp2)
            except BaseException:
                shutil.rmtree(tmp2, ignore_errors=True)
                raise
            shutil.rmtree(tmp)
            tmp = tmp2
        for name in sorted(os.listdir(tmp)):
            _merge(os.path.join(tmp, name), os.path.join(target, name))
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
