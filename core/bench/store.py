"""The SQLite results store of a run directory (``DIR/featbench.sqlite``). The only module that speaks SQL.

Every trained configuration is one row of ``configs``, written in one transaction with its per-epoch
log; a finished cell is one row of ``cells`` plus its ``cell_configs`` (which configurations it chose
from), written in one transaction. The database runs in WAL mode with ``synchronous=FULL``: a process
killed at any moment (even ``kill -9``) leaves every committed row intact and no half-written one;
several processes may write to the same directory at once (writers queue on SQLite's lock; rows are
keyed by content hashes and inserted with ``INSERT OR IGNORE``, so a configuration computed twice is
stored once). Only the driver process writes: executors hand their results back to it.
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence

import attrs
import numpy as np

from ..errors import ConfigError, DataError, FeatbenchError, StorageError, shown, storage_hint
from ..records import REFIT, CellRecord, ConfigRecord, EpochLog, RunRecord

DB_NAME = "featbench.sqlite"
SCHEMA_VERSION = 2  # 2: configs.rung_epoch and head_states (successive halving)
APPLICATION_ID = 0x46426E63  # "FBnc" in the database header: this file is a featbench results store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, finished REAL, status TEXT NOT NULL,
    spec TEXT NOT NULL, versions TEXT NOT NULL, host TEXT, pid INTEGER);
CREATE TABLE IF NOT EXISTS run_cells (
    run_id INTEGER NOT NULL REFERENCES runs(id), position INTEGER NOT NULL, cell_key TEXT NOT NULL,
    PRIMARY KEY (run_id, position));
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY, dataset TEXT NOT NULL, backbones TEXT NOT NULL, metric TEXT NOT NULL,
    num_classes INTEGER NOT NULL, n_test INTEGER NOT NULL, test_y BLOB NOT NULL, cache_keys TEXT NOT NULL,
    files TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (
    key TEXT PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), source_id TEXT NOT NULL REFERENCES sources(id),
    augmenter TEXT NOT NULL, loss TEXT NOT NULL, seed INTEGER NOT NULL, phase TEXT NOT NULL, hp TEXT NOT NULL,
    val REAL, test REAL, top1 REAL, mean_per_class REAL, diverged INTEGER NOT NULL, seconds REAL NOT NULL,
    stack_size INTEGER NOT NULL, device TEXT NOT NULL, unaugmented_batches INTEGER NOT NULL, correct BLOB,
    created REAL NOT NULL, rung_epoch INTEGER);
CREATE INDEX IF NOT EXISTS configs_by_cell ON configs(source_id, augmenter, seed);
CREATE TABLE IF NOT EXISTS epochs (
    config_key TEXT NOT NULL REFERENCES configs(key), epoch INTEGER NOT NULL, train REAL, test REAL,
    PRIMARY KEY (config_key, epoch));
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), source_id TEXT NOT NULL REFERENCES sources(id),
    dataset TEXT NOT NULL, backbones TEXT NOT NULL, row TEXT NOT NULL, augmenter TEXT NOT NULL, loss TEXT NOT NULL,
    seed INTEGER NOT NULL, metric TEXT NOT NULL, value REAL, top1 REAL, mean_per_class REAL, hp TEXT NOT NULL,
    val_value REAL, grid_size INTEGER NOT NULL, diverged_configs INTEGER NOT NULL, seconds REAL NOT NULL,
    refit_key TEXT NOT NULL REFERENCES configs(key), created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS head_states (
    config_key TEXT PRIMARY KEY REFERENCES configs(key), state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cell_configs (
    cell_key TEXT NOT NULL REFERENCES cells(key), position INTEGER NOT NULL,
    config_key TEXT NOT NULL REFERENCES configs(key),
    PRIMARY KEY (cell_key, position));
"""

_CONFIG_COLUMNS = (
    "key",
    "run_id",
    "source_id",
    "augmenter",
    "loss",
    "seed",
    "phase",
    "hp",
    "val",
    "test",
    "top1",
    "mean_per_class",
    "diverged",
    "seconds",
    "stack_size",
    "device",
    "unaugmented_batches",
    "correct",
    "created",
    "rung_epoch",
)


def db_path(directory: str) -> str:
    return os.path.join(directory, DB_NAME)


def _nan(v) -> float:
    """SQLite stores NaN as NULL; read it back as NaN."""
    return float("nan") if v is None else float(v)


def _opt(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def pack_bools(a: np.ndarray) -> bytes:
    return np.packbits(np.asarray(a, dtype=bool)).tobytes()


def unpack_bools(blob: bytes, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(blob, dtype=np.uint8), count=n).astype(bool)


class Store:
    """An open results store. ``Store(None)`` is an in-memory store (a run without ``--out``).

    ``read_only``: opened with SQLite's ``mode=ro`` (``report``, ``plot``): nothing is created, no pragma
    is set, nothing is written, and it works on a read-only mount. ``check``: run ``PRAGMA quick_check``
    first (a store being resumed, or reported). A file that is not a featbench store, or is damaged, is
    refused before anything is written to it; a store another process keeps locked is refused after
    ``FEATBENCH_BUSY_TIMEOUT`` seconds.
    """

    def __init__(self, directory: str | None, create: bool = True, read_only: bool = False, check: bool = False):
        from ..limits import BUSY_TIMEOUT_S, setting

        self.directory = directory
        self.read_only = read_only
        self.busy_timeout = float(setting(BUSY_TIMEOUT_S))
        if directory is None:
            path = ":memory:"
        else:
            path = db_path(directory)
            if (read_only or not create) and not os.path.isfile(path):
                raise DataError(f"no featbench results store in {directory} (expected {DB_NAME})",
                                "pass the --out directory of a featbench run")
            if create and not read_only:
                os.makedirs(directory, exist_ok=True)
        self.path = path
        try:
            self.conn = _connect(path, read_only, self.busy_timeout)
            if directory is not None:
                self._check_identity()
                if check:
                    self.check_integrity()
            if read_only:
                return
            if directory is not None:
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise _database_error(exc, path, self.busy_timeout) from None
        except BaseException:
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()

    def _check_identity(self) -> None:
        """Refuse a database that is not a featbench store (an empty one is a new store, unless read-only)."""
        app = self.conn.execute("PRAGMA application_id").fetchone()[0]
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        tables = sorted(r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                        if not r[0].startswith("sqlite_"))
        if app in (0, APPLICATION_ID) and version > SCHEMA_VERSION:
            raise ConfigError(
                f"the results store was written by a newer featbench (schema {version} > {SCHEMA_VERSION})",
                "upgrade featbench to read it",
            )
        if app == APPLICATION_ID or (app == 0 and version >= 1 and "runs" in tables):  # (stores before application_id)
            return
        if app == 0 and version == 0 and not tables and not self.read_only:
            return  # an empty database: a new store
        what = (f"application_id {app:#x}" if app else "its tables are " + shown(", ".join(tables)) if tables
                else "it is empty")
        raise DataError(f"{self.path} is not a featbench results store ({what})",
                        "pass the --out directory of a featbench run, or move that file away")

    def check_integrity(self) -> None:
        """``PRAGMA quick_check``; a damaged store is a one-line DataError saying how to recover it."""
        rows = self.conn.execute("PRAGMA quick_check").fetchall()
        if rows and rows[0][0] != "ok":
            more = f"; {len(rows) - 1} more problem(s)" if len(rows) > 1 else ""
            raise _damaged(self.path, f"PRAGMA quick_check: {rows[0][0]}{more}")

    def _config_columns(self) -> set[str]:
        """The columns of ``configs`` (a schema-1 store opened read-only has no ``rung_epoch``)."""
        if getattr(self, "_columns", None) is None:
            self._columns = {r[1] for r in self.conn.execute("PRAGMA table_info(configs)")}
        return self._columns

    def _init_schema(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            if version == 1 and "rung_epoch" not in self._config_columns():  # written before successive halving
                self.conn.execute("ALTER TABLE configs ADD COLUMN rung_epoch INTEGER")
            for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                self.conn.execute(stmt)
            self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._columns = None

    # ---- plumbing ----------------------------------------------------------------------------

    def transaction(self):
        return _Transaction(self.conn, self.path, self.busy_timeout)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # ---- runs --------------------------------------------------------------------------------

    def begin_run(self, spec: Mapping, versions: Mapping, cell_keys: Sequence[str]) -> int:
        """Record a new run and the cells it plans, in order; returns its id."""
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO runs (started, status, spec, versions, host, pid) VALUES (?, 'running', ?, ?, ?, ?)",
                (
                    time.time(),
                    json.dumps(spec, sort_keys=True, default=str),
                    json.dumps(versions, sort_keys=True),
                    socket.gethostname(),
                    os.getpid(),
                ),
            )
            run_id = int(cur.lastrowid)
            self.conn.executemany(
                "INSERT INTO run_cells (run_id, position, cell_key) VALUES (?, ?, ?)",
                [(run_id, i, k) for i, k in enumerate(cell_keys)],
            )
        return run_id

    def discard_run(self, run_id: int) -> bool:
        """Delete run ``run_id`` and its plan if it recorded nothing (it failed on bad input); True if deleted."""
        with self.transaction():
            used = self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM configs WHERE run_id = ?) OR "
                "EXISTS (SELECT 1 FROM cells WHERE run_id = ?)",
                (run_id, run_id),
            ).fetchone()[0]
            if used:
                return False
            self.conn.execute("DELETE FROM run_cells WHERE run_id = ?", (run_id,))
            self.conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        return True

    def runs_of_other_processes(self, pid: int) -> int:
        """How many runs were begun by a process other than ``pid``."""
        return self.conn.execute("SELECT COUNT(*) FROM runs WHERE pid IS NOT ?", (pid,)).fetchone()[0]

    def finish_run(self, run_id: int, status: str) -> None:
        with self.transaction():
            self.conn.execute("UPDATE runs SET finished = ?, status = ? WHERE id = ?", (time.time(), status, run_id))

    def runs(self) -> list[RunRecord]:
        rows = self.conn.execute(
            "SELECT r.id, r.started, r.finished, r.status, r.spec, r.versions, COUNT(c.cell_key) FROM runs r "
            "LEFT JOIN run_cells c ON c.run_id = r.id GROUP BY r.id ORDER BY r.id"
        ).fetchall()
        return [
            RunRecord(
                id=r[0],
                started=r[1],
                finished=r[2],
                status=r[3],
                spec=json.loads(r[4]),
                versions=json.loads(r[5]),
                cells_planned=r[6],
            )
            for r in rows
        ]

    def run(self, run_id: int | None = None) -> RunRecord:
        """The run ``run_id``, or the latest one."""
        runs = self.runs()
        if not runs:
            raise DataError(f"the results store in {self.directory} holds no run", "run featbench run --out DIR first")
        if run_id is None:
            return runs[-1]
        for r in runs:
            if r.id == run_id:
                return r
        raise DataError(
            f"no run {run_id} in {self.directory} (runs: {', '.join(str(r.id) for r in runs)})",
            "pass one of those ids to --run",
        )

    def planned_cells(self, run_id: int) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute("SELECT cell_key FROM run_cells WHERE run_id = ? ORDER BY position", (run_id,))
        ]

    # ---- sources -----------------------------------------------------------------------------

    def record_source(
        self,
        source_id: str,
        dataset: str,
        backbones: str,
        metric: str,
        num_classes: int,
        test_y: np.ndarray,
        cache_keys: Sequence[str],
        files: Sequence[str],
    ) -> None:
        y = np.asarray(test_y, dtype=np.int32)
        with self.transaction():
            self.conn.execute(
                "INSERT OR IGNORE INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    source_id,
                    dataset,
                    backbones,
                    metric,
                    int(num_classes),
                    int(y.size),
                    y.tobytes(),
                    json.dumps(list(cache_keys)),
                    json.dumps(list(files)),
                ),
            )

    def source_metric(self, source_id: str) -> str:
        row = self.conn.execute("SELECT metric FROM sources WHERE id = ?", (source_id,)).fetchone()
        if row is None:
            raise KeyError(source_id)
        return row[0]

    # ---- configurations ----------------------------------------------------------------------

    def record_configs(self, run_id: int, records: Iterable[ConfigRecord]) -> int:
        """Insert configurations (and their epoch logs) in one transaction; returns how many were new."""
        new = 0
        now = time.time()
        with self.transaction():
            for r in records:
                cur = self.conn.execute(
                    f"INSERT OR IGNORE INTO configs ({', '.join(_CONFIG_COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(_CONFIG_COLUMNS))})",
                    (
                        r.key,
                        run_id,
                        r.source_id,
                        r.augmenter,
                        r.loss,
                        r.seed,
                        r.phase,
                        json.dumps(dict(r.hp), sort_keys=True),
                        _opt(r.val),
                        _opt(r.test),
                        _opt(r.top1),
                        _opt(r.mean_per_class),
                        int(r.diverged),
                        float(r.seconds),
                        int(r.stack_size),
                        r.device,
                        int(r.unaugmented_batches),
                        pack_bools(r.correct) if r.correct is not None else None,
                        now,
                        r.rung_epoch,
                    ),
                )
                if cur.rowcount:
                    new += 1
                    if r.state is not None:
                        self.conn.execute("INSERT OR IGNORE INTO head_states VALUES (?, ?)", (r.key, r.state))
                    self.conn.executemany(
                        "INSERT OR IGNORE INTO epochs VALUES (?, ?, ?, ?)",
                        [(r.key, e.epoch, _opt(e.train), _opt(e.test)) for e in r.epochs],
                    )
        return new

    def configs(self, keys: Iterable[str], with_epochs: bool = False) -> dict[str, ConfigRecord]:
        """The recorded configurations among ``keys``."""
        keys = list(keys)
        out: dict[str, ConfigRecord] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            columns = ", ".join(f"c.{c}" if c in self._config_columns() else f"NULL AS {c}" for c in _CONFIG_COLUMNS)
            rows = self.conn.execute(
                f"SELECT {columns}, s.n_test FROM configs c JOIN sources s ON s.id = "
                "c.source_id "
                f"WHERE c.key IN ({', '.join('?' * len(part))})",
                part,
            ).fetchall()
            for row in rows:
                rec = self._config(row)
                out[rec.key] = rec
        if with_epochs and out:
            logs: dict[str, list[EpochLog]] = {}
            keys_found = list(out)
            for start in range(0, len(keys_found), 500):
                part = keys_found[start : start + 500]
                for k, ep, tr, te in self.conn.execute(
                    "SELECT config_key, epoch, train, test FROM epochs WHERE config_key IN "
                    f"({', '.join('?' * len(part))}) "
                    "ORDER BY config_key, epoch",
                    part,
                ):
                    logs.setdefault(k, []).append(EpochLog(ep, _nan(tr), _nan(te)))
            out = {k: attrs.evolve(r, epochs=tuple(logs.get(k, ()))) for k, r in out.items()}
        return out

    @staticmethod
    def _config(row) -> ConfigRecord:
        d = dict(zip(_CONFIG_COLUMNS, row[:-1]))
        n_test = row[-1]
        return ConfigRecord(
            key=d["key"],
            source_id=d["source_id"],
            augmenter=d["augmenter"],
            loss=d["loss"],
            seed=d["seed"],
            phase=d["phase"],
            hp=json.loads(d["hp"]),
            val=None if d["phase"] == REFIT else _nan(d["val"]),
            test=_nan(d["test"]),
            top1=_nan(d["top1"]),
            mean_per_class=_nan(d["mean_per_class"]),
            diverged=bool(d["diverged"]),
            seconds=d["seconds"],
            stack_size=d["stack_size"],
            device=d["device"],
            unaugmented_batches=d["unaugmented_batches"],
            correct=unpack_bools(d["correct"], n_test) if d["correct"] is not None else None,
            rung_epoch=d["rung_epoch"],
        )

    def head_states(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The halving continuation states recorded for ``keys`` (those not dropped yet)."""
        out: dict[str, bytes] = {}
        for start in range(0, len(keys), 500):
            part = list(keys[start : start + 500])
            marks = ", ".join("?" * len(part))
            query = f"SELECT config_key, state FROM head_states WHERE config_key IN ({marks})"
            out.update(self.conn.execute(query, part))
        return out

    def drop_head_states(self, keys: Sequence[str]) -> None:
        """Forget continuation states no rung needs any more (the scores stay in ``configs``)."""
        with self.transaction():
            for start in range(0, len(keys), 500):
                part = list(keys[start : start + 500])
                marks = ", ".join("?" * len(part))
                self.conn.execute(f"DELETE FROM head_states WHERE config_key IN ({marks})", part)

    def count_configs(self, run_id: int | None = None) -> int:
        if run_id is None:
            return self.conn.execute("SELECT COUNT(*) FROM configs").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM configs WHERE run_id = ?", (run_id,)).fetchone()[0]

    # ---- cells -------------------------------------------------------------------------------

    def record_cell(self, run_id: int, cell: CellRecord, config_keys: Sequence[str]) -> bool:
        """Insert a finished cell and the configurations it chose from; False if it was already there."""
        with self.transaction():
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cell.key,
                    run_id,
                    cell.source_id,
                    cell.dataset,
                    cell.backbones,
                    cell.row,
                    cell.augmenter,
                    cell.loss,
                    cell.seed,
                    cell.metric,
                    _opt(cell.value),
                    _opt(cell.top1),
                    _opt(cell.mean_per_class),
                    json.dumps(dict(cell.hp), sort_keys=True),
                    _opt(cell.val_value),
                    cell.grid_size,
                    cell.diverged_configs,
                    float(cell.seconds),
                    cell.refit_key,
                    time.time(),
                ),
            )
            if not cur.rowcount:
                return False
            self.conn.executemany(
                "INSERT INTO cell_configs VALUES (?, ?, ?)", [(cell.key, i, k) for i, k in enumerate(config_keys)]
            )
        return True

    def done_cells(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        done: set[str] = set()
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            done.update(
                r[0]
                for r in self.conn.execute(f"SELECT key FROM cells WHERE key IN ({', '.join('?' * len(part))})", part)
            )
        return done

    def cells(self, keys: Sequence[str]) -> list[CellRecord]:
        """The finished cells among ``keys``, in the order of ``keys``, with correctness and test labels."""
        found: dict[str, CellRecord] = {}
        for start in range(0, len(keys), 500):
            part = list(keys[start : start + 500])
            rows = self.conn.execute(
                "SELECT c.key, c.source_id, c.dataset, c.backbones, c.row, c.augmenter, c.loss, c.seed, c.metric, "
                "c.value, "
                "c.top1, c.mean_per_class, c.hp, c.val_value, c.grid_size, c.diverged_configs, c.seconds, c.refit_key, "
                "s.cache_keys, s.test_y, s.n_test, f.correct FROM cells c JOIN sources s ON s.id = c.source_id "
                f"JOIN configs f ON f.key = c.refit_key WHERE c.key IN ({', '.join('?' * len(part))})",
                part,
            ).fetchall()
            for r in rows:
                n = r[20]
                found[r[0]] = CellRecord(
                    key=r[0],
                    source_id=r[1],
                    dataset=r[2],
                    backbones=r[3],
                    row=r[4],
                    augmenter=r[5],
                    loss=r[6],
                    seed=r[7],
                    metric=r[8],
                    value=_nan(r[9]),
                    top1=_nan(r[10]),
                    mean_per_class=_nan(r[11]),
                    hp=json.loads(r[12]),
                    val_value=_opt(r[13]),
                    grid_size=r[14],
                    diverged_configs=r[15],
                    seconds=r[16],
                    refit_key=r[17],
                    cache_keys=tuple(json.loads(r[18])),
                    test_y=np.frombuffer(r[19], dtype=np.int32).astype(np.int64),
                    correct=unpack_bools(r[21], n) if r[21] is not None else None,
                )
        return [found[k] for k in keys if k in found]

    def cell_config_keys(self, cell_key: str) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT config_key FROM cell_configs WHERE cell_key = ? ORDER BY position", (cell_key,)
            )
        ]


def _connect(path: str, read_only: bool, timeout: float) -> sqlite3.Connection:
    """A connection in autocommit mode; read-only ones through a ``mode=ro`` URI, so SQLite writes nothing.

    A read-only connection to a store nobody has open (no ``-wal`` file: the last connection removes it)
    is also ``immutable``: SQLite then creates no ``-shm`` file either, and reads a read-only mount. With
    a ``-wal`` file (a run in progress, or killed) the log must be read: SQLite uses (or makes) the ``-shm``
    index, which a read-only directory cannot hold unless the log is empty.
    """
    if not read_only:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    else:
        from urllib.parse import quote

        uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
        wal = path + "-wal"
        if not os.path.exists(wal):
            uri += "&immutable=1"
        elif not os.path.exists(path + "-shm") and not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            if os.path.getsize(wal) > 0:
                raise StorageError(f"cannot read {path} on a read-only file system: its write-ahead log {wal} holds "
                                   "changes that need a writable directory to be read",
                                   "copy the run directory somewhere writable and read it there")
            uri += "&immutable=1"
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return conn


def _storage_problem(exc: sqlite3.Error) -> bool:
    """SQLite errors that mean the file cannot be written (not that it is damaged)."""
    text = str(exc).lower()
    return any(m in text for m in ("disk is full", "unable to open", "readonly database", "disk i/o error"))


def _busy(exc: sqlite3.Error) -> bool:
    return any(m in str(exc).lower() for m in ("database is locked", "database is busy", "database table is locked"))


def _storage_error(exc: sqlite3.Error, path: str) -> StorageError:
    hint = storage_hint(errno.ENOSPC) if "full" in str(exc).lower() else "choose a writable --out directory"
    return StorageError(f"cannot write the results store {path}: {exc}", hint)


def _busy_error(path: str, timeout: float) -> StorageError:
    return StorageError(f"the results store {path} is locked by another process (waited {timeout:g} s)",
                        "wait for that process to finish or stop it, or raise FEATBENCH_BUSY_TIMEOUT=SECONDS")


def _damaged(path: str, what: str) -> DataError:
    return DataError(
        f"{path} is damaged ({what})",
        f"recover what it holds with `sqlite3 {path} .recover | sqlite3 NEW.sqlite` and use NEW.sqlite as the "
        "featbench.sqlite of a new run directory, or move it away and rerun",
    )


def _database_error(exc: sqlite3.DatabaseError, path: str, timeout: float) -> FeatbenchError:
    """The one-line error for a store that could not be opened or checked."""
    if _busy(exc):
        return _busy_error(path, timeout)
    if _storage_problem(exc):
        return _storage_error(exc, path)
    if "malformed" in str(exc).lower():
        return _damaged(path, str(exc))
    return DataError(f"{path} is not a readable featbench results store ({exc})",
                     "point at another directory, or move the damaged file away")


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception, KeyboardInterrupt included).

    A write that fails for lack of space (SQLITE_FULL) rolls back and becomes a :class:`StorageError`:
    the store keeps every transaction committed before it.
    """

    def __init__(self, conn: sqlite3.Connection, path: str, timeout: float):
        self.conn = conn
        self.path = path
        self.timeout = timeout

    def __enter__(self):
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise _busy_error(self.path, self.timeout) from None
            raise
        return self.conn

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                if _storage_problem(err):
                    raise _storage_error(err, self.path) from None
                if _busy(err):
                    raise _busy_error(self.path, self.timeout) from None
                raise
            return False
        self._rollback()
        if isinstance(exc, sqlite3.Error) and _storage_problem(exc):
            raise _storage_error(exc, self.path) from None
        if isinstance(exc, sqlite3.Error) and _busy(exc):
            raise _busy_error(self.path, self.timeout) from None
        return False
