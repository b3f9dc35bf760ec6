"""Downloads (resume, checksums, offline, mirror), safe unpacking and the plan line, against a loopback server."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import zipfile
from collections import namedtuple

import pytest
from fetch_util import Loopback, md5, tree

from featbench.cli import main
from featbench.errors import DataError
from featbench.inputs.archives import unpack
from featbench.inputs.download import DownloadError, OfflineError, fetch

PAYLOAD = bytes(range(256)) * 12000  # 3 MB: several read chunks


def test_an_interrupted_download_resumes_from_its_byte_offset(tmp_path):
    with Loopback({"big.bin": PAYLOAD}) as server:
        dest = str(tmp_path / "big.bin")
        server.cut["big.bin"] = 1_500_000
        with pytest.raises(DownloadError, match="rerun"):
            fetch(f"{server.url}/big.bin", dest, expected=("md5", md5(PAYLOAD)), what="test")
        assert not os.path.exists(dest) and os.path.getsize(dest + ".part") == 1_500_000
        fetch(f"{server.url}/big.bin", dest, expected=("md5", md5(PAYLOAD)), what="test")
        assert server.requests == [("big.bin", ""), ("big.bin", "bytes=1500000-")]
    assert open(dest, "rb").read() == PAYLOAD and not os.path.exists(dest + ".part")


def test_a_server_that_ignores_range_sends_the_whole_file_again(tmp_path):
    with Loopback({"f.bin": PAYLOAD}) as server:
        server.honour_range = False
        dest = str(tmp_path / "f.bin")
        server.cut["f.bin"] = 1_200_000
        with pytest.raises(DownloadError):
            fetch(f"{server.url}/f.bin", dest, expected=("md5", md5(PAYLOAD)), what="test")
        fetch(f"{server.url}/f.bin", dest, expected=("md5", md5(PAYLOAD)), what="test")  # 200: written from the start
        assert server.requests == [("f.bin", ""), ("f.bin", "bytes=1200000-")]
    assert open(dest, "rb").read() == PAYLOAD


def test_a_stale_partial_file_that_spoils_the_checksum_is_deleted_and_the_next_try_succeeds(tmp_path):
    dest = str(tmp_path / "f.bin")
    with open(dest + ".part", "wb") as f:
        f.write(b"bytes of another file")
    with Loopback({"f.bin": PAYLOAD}) as server:
        with pytest.raises(DataError, match="it was deleted"):
            fetch(f"{server.url}/f.bin", dest, expected=("md5", md5(PAYLOAD)), what="test")
        assert os.listdir(tmp_path) == []
        fetch(f"{server.url}/f.bin", dest, expected=("md5", md5(PAYLOAD)), what="test")
    assert open(dest, "rb").read() == PAYLOAD


def test_a_wrong_checksum_is_refused_and_the_file_deleted(tmp_path):
    with Loopback({"f.bin": b"not what the catalog describes"}) as server:
        dest = str(tmp_path / "f.bin")
        with pytest.raises(DataError, match="expects 0123456789abcdef; it was deleted") as e:
            fetch(f"{server.url}/f.bin", dest, expected=("md5", "0123456789abcdef"), what="data set x")
    assert "\n" not in str(e.value) and os.listdir(tmp_path) == []


def test_offline_opens_no_connection(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_OFFLINE", "1")
    with Loopback({"f.bin": b"x"}) as server:
        with pytest.raises(OfflineError, match="FEATBENCH_OFFLINE"):
            fetch(f"{server.url}/f.bin", str(tmp_path / "f.bin"), expected=None, what="test")
        assert server.requests == [] and os.listdir(tmp_path) == []


# ---- unpacking -----------------------------------------------------------------------------------


def _tar_with(path: str, member: tarfile.TarInfo, data: bytes = b"") -> str:
    with tarfile.open(path, "w:gz") as t:
        ok = tarfile.TarInfo("good/file.txt")
        ok.size = 2
        t.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data) if member.isfile() else 0
        t.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _member(name: str, kind=tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname = kind, link
    return m


HOSTILE = {
    "dotdot": _member("../escaped.txt"),
    "nested-dotdot": _member("good/../../escaped.txt"),
    "absolute": _member("/tmp/featbench-escaped.txt"),
    "symlink-out": _member("good/link", tarfile.SYMTYPE, "../../outside"),
    "symlink-absolute": _member("good/link", tarfile.SYMTYPE, "/etc/passwd"),
    "hardlink-out": _member("good/hard", tarfile.LNKTYPE, "../outside"),
    "device": _member("good/dev", tarfile.CHRTYPE),
    "fifo": _member("good/fifo", tarfile.FIFOTYPE),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tar_members_are_refused_with_nothing_created(tmp_path, case):
    root, outside = tmp_path / "root", tmp_path / "outside-area"
    root.mkdir()
    outside.mkdir()
    archive = _tar_with(str(outside / "a.tar.gz"), HOSTILE[case], b"evil")
    before = tree(str(tmp_path))
    with pytest.raises(DataError, match="nothing was extracted") as e:
        unpack(archive, str(root / "ds"), str(root))
    assert "\n" not in str(e.value)
    assert tree(str(tmp_path)) == before  # not even the target folder or a temporary one
    assert not os.path.exists("/tmp/featbench-escaped.txt")


@pytest.mark.parametrize("name", ["../escaped.txt", "/abs/escaped.txt", "good/../../escaped.txt"])
def test_hostile_zip_members_are_refused(tmp_path, name):
    root = tmp_path / "root"
    root.mkdir()
    archive = str(tmp_path / "a.zip")
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("good/file.txt", b"ok")
        z.writestr(zipfile.ZipInfo(name), b"evil")
    before = tree(str(tmp_path))
    with pytest.raises(DataError, match="nothing was extracted"):
        unpack(archive, str(root / "ds"), str(root))
    assert tree(str(tmp_path)) == before


def test_zip_symlinks_are_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    archive = str(tmp_path / "a.zip")
    with zipfile.ZipFile(archive, "w") as z:
        info = zipfile.ZipInfo("good/link")
        info.external_attr = 0o120777 << 16
        z.writestr(info, "../../outside")
    with pytest.raises(DataError, match="symbolic link"):
        unpack(archive, str(root / "ds"), str(root))
    assert os.listdir(root) == []


def test_links_inside_the_target_and_merging_into_an_existing_folder(tmp_path):
    root = tmp_path / "root"
    (root / "ds" / "keep").mkdir(parents=True)
    (root / "ds" / "keep" / "old.txt").write_text("old")
    archive = _tar_with(str(tmp_path / "a.tar.gz"), _member("good/link", tarfile.SYMTYPE, "file.txt"))
    unpack(archive, str(root / "ds"), str(root))
    assert open(root / "ds" / "good" / "link").read() == "ok" and (root / "ds" / "keep" / "old.txt").exists()
    assert sorted(os.listdir(root / "ds")) == ["good", "keep"]  # no temporary folder left


def test_a_target_outside_the_root_is_refused(tmp_path):
    archive = _tar_with(str(tmp_path / "a.tar.gz"), _member("good/x"), b"x")
    (tmp_path / "root").mkdir()
    with pytest.raises(DataError, match="outside the data root"):
        unpack(archive, str(tmp_path / "elsewhere"), str(tmp_path / "root"))
    assert not (tmp_path / "elsewhere").exists()


# ---- the plan, through featbench download -----------------------------------------------------------


def test_too_little_disk_gives_one_line_before_any_byte_is_fetched(tmp_path, monkeypatch, capsys):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 1000, 1000))
    with Loopback({"cifar-10-python.tar.gz": b"x" * 5000}) as server:
        monkeypatch.setenv("FEATBENCH_MIRROR", server.url)
        code = main(["download", "cifar10", "--data-root", str(tmp_path / "data"), "--quiet"])
        assert server.requests == []
    err = capsys.readouterr().err
    assert (
        code == 2
        and err.count("\n") == 1
        and err.startswith("featbench: error: not enough disk space: to fetch: 1 data set (cifar10 170.5 MB)")
    )
    assert "1.0 kB free at" in err
    assert not (tmp_path / "data").exists()


def test_download_offline_lists_what_is_missing_and_connects_nowhere(tmp_path, monkeypatch, capsys):
    with Loopback({}) as server:
        monkeypatch.setenv("FEATBENCH_MIRROR", server.url)
        code = main(f"--offline download cifar10,dtd,S --data-root {tmp_path / 'd'} --cache-dir {tmp_path / 'c'}".split())
        assert server.requests == []
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 2
    assert err[0].startswith(
        "featbench: to fetch: 2 data sets (cifar10 170.5 MB, dtd 625.2 MB) and 1 checkpoint (S 102.5 MB)"
    )
    assert (
        err[1].startswith("featbench: error: 3 missing input(s) cannot be fetched offline")
        and "cifar10, dtd, S" in err[1]
    )
    assert os.listdir(tmp_path) == []
    assert "FEATBENCH_OFFLINE" not in os.environ  # main() leaves the environment as it found it


def test_cars_keeps_its_manual_message(tmp_path, capsys):
    code = main(["download", "cars", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "data set cars cannot be fetched by a script" in err and "official URL is dead" in err
    assert os.listdir(tmp_path) == []


def test_unknown_names_are_one_line(tmp_path, capsys):
    assert main(["download", "cifar11", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cifar10" in err


def test_download_b_fetches_the_jax_release_and_converts_it(monkeypatch, tmp_path, capsys):
    import torch
    from test_byol import release_pickle

    src, release = release_pickle(monkeypatch)
    cache = tmp_path / "cache"
    with Loopback({"pretrain_res50x1.pkl": release}) as server:
        monkeypatch.setenv("FEATBENCH_MIRROR", server.url)
        assert main(["download", "B", "--cache-dir", str(cache), "--quiet"]) == 0, capsys.readouterr().err
        assert [name for name, _ in server.requests] == ["pretrain_res50x1.pkl"]
    assert os.listdir(cache / "weights") == ["byol-pretrain_res50x1.pth"]  # the release itself is gone
    loaded = torch.load(cache / "weights" / "byol-pretrain_res50x1.pth", weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in src.items() if not k.endswith("num_batches_tracked"))
    assert "in place: B" in capsys.readouterr().out


def test_weights_locate_connects_nowhere_offline(tmp_path, monkeypatch):
    from featbench.api import WeightsSource
    from featbench.inputs.weights import WeightsUnavailableError, locate

    monkeypatch.setenv("FEATBENCH_OFFLINE", "1")
    with Loopback({"w.pth": b"weights"}) as server:
        with pytest.raises(WeightsUnavailableError, match="FEATBENCH_OFFLINE=1 forbids"):
            locate("X", WeightsSource(file="w.pth", url=f"{server.url}/w.pth"), str(tmp_path))
        assert server.requests == []
    assert os.listdir(tmp_path) == []


def test_download_cifar100_then_its_loader_reads_the_unpacked_pickles(tmp_path, monkeypatch, capsys):
    from fetch_util import cifar100_archive, registry_for

    from featbench.manager import load_plugins

    archive = cifar100_archive()
    registry = registry_for({"cifar-100-python.tar.gz": archive}, str(tmp_path / "registry.yaml"))
    data = tmp_path / "data"
    with Loopback({"cifar-100-python.tar.gz": archive}) as server:
        monkeypatch.setenv("FEATBENCH_MIRROR", server.url)
        assert main(["--registry", registry, "download", "cifar100", "--data-root", str(data)]) == 0, (
            capsys.readouterr().err
        )
        assert (
            main(["--registry", registry, "download", "cifar100", "--data-root", str(data)]) == 0
        )  # in place: no request
        assert len(server.requests) == 1
    assert tree(str(data)) == [
        "cifar-100-python",
        "cifar-100-python/meta",
        "cifar-100-python/test",
        "cifar-100-python/train",
    ]
    splits = load_plugins(entry_points=[], registry=registry).get_dataset("cifar100").load(str(data))
    assert splits.classes == ("class0", "class1", "class2", "class3") and len(splits.test) == 8
    assert len(splits.train) + len(splits.val) == 12 and splits.train.image(0).size == (32, 32)


def test_the_catalog_describes_every_paper_download_with_its_checksum_where_known():
    from featbench.bench.spec import PAPER_DATASETS
    from featbench.config import load_registry
    from featbench.inputs.fetch import dataset_downloads

    catalog = load_registry()["datasets"]
    unchecked = []
    for name in PAPER_DATASETS:
        files = dataset_downloads(name, catalog[name])
        if name == "cars":
            assert not files and "URL is dead" in catalog[name]["manual"]
            continue
        assert files and all(d.url.startswith(("http://", "https://")) and d.creates for d in files), name
        unchecked += [d.file for d in files if d.checksum is None]
    assert sorted(unchecked) == ["Partitions.zip", "fgvc-aircraft-2013b.tar.gz"]  # no published checksum known here
    (caltech,) = dataset_downloads("caltech101", catalog["caltech101"])
    assert caltech.inner == "caltech-101/101_ObjectCategories.tar.gz" and caltech.into == "caltech101"


def test_sha256_prefixes_are_accepted_and_checked(tmp_path):
    import hashlib

    digest = hashlib.sha256(PAYLOAD).hexdigest()
    with Loopback({"w.pth": PAYLOAD}) as server:
        fetch(f"{server.url}/w.pth", str(tmp_path / "a"), expected=("sha256", digest[:8]), what="checkpoint S")
        with pytest.raises(DataError, match="SHA-256"):
            fetch(f"{server.url}/w.pth", str(tmp_path / "b"), expected=("sha256", "0676ba61"), what="checkpoint S")
    assert sorted(os.listdir(tmp_path)) == ["a"]


def test_the_download_bar_is_drawn_only_on_a_terminal(monkeypatch, tmp_path):
    import sys

    from featbench.cli import _Progress

    calls = []

    class Recorder(_Progress):
        def bytes_started(self, desc, total, done):
            super().bytes_started(desc, total, done)
            calls.append((desc, total, done, self.images is not None))

    with Loopback({"f.bin": PAYLOAD}) as server:
        for tty in (False, True):
            monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty)
            listener = Recorder(quiet=False)
            fetch(f"{server.url}/f.bin", str(tmp_path / f"f{tty}"), expected=None, what="test", listener=listener)
            assert listener.images is None  # closed when the download ended
    assert calls == [("fFalse", len(PAYLOAD), 0, False), ("fTrue", len(PAYLOAD), 0, True)]


def test_an_interrupted_unpacking_leaves_only_a_temporary_folder_the_next_one_removes(tmp_path):
    from featbench.inputs.archives import TEMP_PREFIX

    root = tmp_path / "root"
    (root / "ds" / f"{TEMP_PREFIX}stale" / "half").mkdir(parents=True)
    archive = _tar_with(str(tmp_path / "a.tar.gz"), _member("good/x"), b"x")
    unpack(archive, str(root / "ds"), str(root))
    assert sorted(os.listdir(root / "ds")) == ["good"]


@pytest.mark.parametrize("file", ["../../escaped.pth", "/tmp/featbench-escaped.pth"])
def test_a_checkpoint_file_name_outside_the_cache_is_refused(tmp_path, file):
    from featbench.errors import ConfigError
    from featbench.inputs.fetch import missing_checkpoints

    registry = {"backbones": {"X": {"url": "https://example.org/x.pth", "file": file}}}
    with pytest.raises(ConfigError, match="leaves the weights cache"):
        missing_checkpoints(registry, ["X"], str(tmp_path), {})


def test_a_run_missing_a_checkpoint_no_script_fetches_downloads_nothing(tmp_path, monkeypatch, capsys):
    with Loopback({"cifar-10-python.tar.gz": b"x"}) as server:
        monkeypatch.setenv("FEATBENCH_MIRROR", server.url)
        args = f"run --aug sea --backbones S,C --dataset cifar10 --data-root {tmp_path / 'd'} --cache-dir {tmp_path / 'c'}"
        code = main([*args.split(), "--out", str(tmp_path / "o")])
        assert server.requests == []
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(
        "featbench: error: checkpoint C is missing and no script can fetch it, so nothing was downloaded"
    )
    assert "drive.google.com" in err[0] and "--weights C=FILE" in err[0]
    assert os.listdir(tmp_path) == []
