"""Trace files: a recording of Samples in one SQLite file (docs/trace-format.md).

A sample is stored as its leaves (backend/block.py): one row per sample whose data is a compressed
array of (column id, value) records, column ids naming leaf keys in the `columns` table. A window
of rows decodes into a Block in a few numpy operations. The reader also reads format_version 1
(one JSON text per row).

The writer commits every sample in its own transaction in WAL mode, so a SIGKILL of the recorder
loses at most the sample being written; close() folds the WAL back so a finished trace is one
self-contained file. The reader opens read-only and never modifies a trace.
"""
from __future__ import annotations

import json
import os
import sqlite3
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .block import Block, Key, leaves
from .errors import XdpscopeError
from .sample import Sample

FORMAT_VERSION = 2
APPLICATION_ID = 0x78647073  # "xdps": lets `file`/sqlite tools tell our traces from other SQLite files
RECORD = np.dtype([("column", "<u4"), ("value", "<i8")])  # one leaf of a sample row, packed: 12 bytes
CHUNK = 8192  # samples decoded at a time when streaming a whole trace

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE columns (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
CREATE TABLE samples (seq INTEGER PRIMARY KEY, t REAL NOT NULL, dt REAL NOT NULL, data BLOB NOT NULL);
CREATE INDEX samples_t ON samples (t);
"""


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def encode(records: np.ndarray) -> bytes:
    """A sample row's data: its RECORD array, zlib-compressed (mostly small ints and zeros: ~4x)."""
    return zlib.compress(records.tobytes(), 1)


class TraceWriter:
    """Appends Samples to a new trace file; each write() is committed before it returns."""

    def __init__(self, path: str | os.PathLike, meta: dict) -> None:
        self.path = Path(path)
        self._columns: dict[Key, int] = {}
        for suffix in ("", "-wal", "-shm", "-journal"):  # stale WAL of an older file would corrupt the new one
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        try:
            # autocommit: every statement is its own transaction, committed when execute() returns
            self._db: sqlite3.Connection | None = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL: a commit survives the death of the process (not of the machine) without an fsync per sample
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise XdpscopeError(f"{self.path}: cannot create trace: {e}") from e
        full = {**meta, "format_version": FORMAT_VERSION}
        full.setdefault("created", time.time())
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, _json(v)) for k, v in full.items()])

    def records(self, sample: Sample) -> np.ndarray:
        """The sample's leaves as RECORDs; a leaf key seen for the first time gets its column row
        (committed before the sample that uses it, so a crash never leaves a row without its names)."""
        cols, values = [], []
        for key, value in leaves(sample):
            if not isinstance(value, (int, np.integer)):
                raise XdpscopeError(f"{self.path}: sample t={sample.t}: counter {list(key)} is not an integer: {value!r}")
            col = self._columns.get(key)
            if col is None:
                col = self._columns[key] = len(self._columns)
                self._conn().execute("INSERT INTO columns (id, key) VALUES (?, ?)", (col, _json(list(key))))
            cols.append(col)
            values.append(value)
        out = np.empty(len(cols), RECORD)
        out["column"], out["value"] = cols, values
        return out

    def write(self, sample: Sample) -> None:
        data = encode(self.records(sample))
        self._conn().execute("INSERT INTO samples (t, dt, data) VALUES (?, ?, ?)", (sample.t, sample.dt, data))

    def set_meta(self, key: str, value: Any) -> None:
        self._conn().execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _json(value)))

    def close(self) -> None:
        if self._db is None:
            return
        db, (count,) = self._db, self._db.execute("SELECT COUNT(*) FROM samples").fetchone()
        self.set_meta("samples", count)
        self.set_meta("ended", time.time())
        db.execute("PRAGMA journal_mode=DELETE")  # checkpoint and drop the WAL: one file to copy or ship
        db.close()
        self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise XdpscopeError(f"{self.path}: trace writer is closed")
        return self._db

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_header(path: Path) -> None:
    """Cheap checks SQLite itself would only fail on later, at the first read of a missing page."""
    size = path.stat().st_size
    if size == 0:
        raise XdpscopeError(f"{path}: empty file (0 bytes), not an xdpscope trace")
    with open(path, "rb") as f:
        head = f.read(100)
    if not head.startswith(b"SQLite format 3\0"):
        raise XdpscopeError(f"{path}: not an xdpscope trace (not an SQLite database)")
    if len(head) < 100:
        raise XdpscopeError(f"{path}: truncated trace ({size} bytes, shorter than an SQLite header)")
    page_size = struct.unpack(">H", head[16:18])[0] or 1  # stored as 1 for 65536
    page_size = 65536 if page_size == 1 else page_size
    changes, pages = struct.unpack(">II", head[24:32])
    valid_for = struct.unpack(">I", head[92:96])[0]
    wal = Path(f"{path}-wal")
    has_wal = wal.exists() and wal.stat().st_size > 0  # pages may live in the WAL, header size may lag
    if not has_wal and valid_for == changes and pages * page_size > size:
        raise XdpscopeError(f"{path}: truncated trace ({size} bytes, its header says {pages * page_size})")


class TraceReader:
    """Read-only view of a trace: meta, sample times as numpy, samples by window or index."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise XdpscopeError(f"{self.path}: no such trace file")
        if not self.path.is_file():
            raise XdpscopeError(f"{self.path}: not a file")
        _check_header(self.path)
        try:
            self._db = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error as e:
            raise XdpscopeError(f"{self.path}: cannot open trace: {e}") from e
        try:
            self._load()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise XdpscopeError(f"{self.path}: corrupt or unreadable trace: {e}") from e
        except XdpscopeError:
            self._db.close()
            raise

    def _load(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "samples"} <= tables:
            raise XdpscopeError(f"{self.path}: not an xdpscope trace (no meta/samples tables)")
        self.meta: dict[str, Any] = {}
        for key, value in self._db.execute("SELECT key, value FROM meta"):
            try:
                self.meta[key] = json.loads(value)
            except (json.JSONDecodeError, TypeError) as e:
                raise XdpscopeError(f"{self.path}: meta key {key!r}: unreadable JSON ({e})") from e
        version = self.meta.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise XdpscopeError(f"{self.path}: unknown trace format_version {version!r}")
        if version > FORMAT_VERSION:
            raise XdpscopeError(f"{self.path}: trace format_version {version} is newer than this xdpscope "
                                f"reads ({FORMAT_VERSION}); upgrade xdpscope")
        self.version = version
        self._keys: dict[int, Key] = {} if version == 1 else self._load_columns(tables)
        self._known = np.zeros(max(self._keys, default=-1) + 1, bool)  # column id -> in the columns table
        self._known[list(self._keys)] = True
        # One pass over the covering index on t (it holds the rowid): no table pages, no per-row objects kept.
        rows = np.fromiter(self._db.execute("SELECT t, seq FROM samples ORDER BY t, seq"),
                           dtype=[("t", "f8"), ("seq", "i8")])
        self._t = np.ascontiguousarray(rows["t"])
        self._seq = np.ascontiguousarray(rows["seq"])
        self._t.flags.writeable = False
        # written in time order (the normal case): a window is a range of rowids, read from the table
        # pages alone, without the index
        self._in_order = bool(np.all(np.diff(self._seq) > 0))

    def _load_columns(self, tables: set[str]) -> dict[int, Key]:
        if "columns" not in tables:
            raise XdpscopeError(f"{self.path}: not an xdpscope trace (no columns table)")
        keys = {}
        for col, key in self._db.execute("SELECT id, key FROM columns"):
            try:
                k = json.loads(key)
                if not isinstance(k, list) or not k or not isinstance(k[0], str):
                    raise ValueError("not a non-empty JSON array starting with a field name")
            except (ValueError, TypeError) as e:
                raise XdpscopeError(f"{self.path}: column {col}: unreadable key ({e})") from e
            keys[col] = tuple(k)
        return keys

    def __len__(self) -> int:
        return len(self._t)

    def times(self) -> np.ndarray:
        """Sample end times t (seconds since session start), ascending; read-only view."""
        return self._t

    def _rows(self, i0: int, i1: int) -> list[tuple]:
        """(seq, t, dt, data) of the samples with index [i0, i1) in time order."""
        if i1 <= i0:
            return []
        s0, s1 = int(self._seq[i0]), int(self._seq[i1 - 1])
        try:
            if self._in_order:
                return self._db.execute("SELECT seq, t, dt, data FROM samples WHERE seq BETWEEN ? AND ? "
                                        "ORDER BY seq", (s0, s1)).fetchall()
            wanted = set(self._seq[i0:i1].tolist())
            rows = self._db.execute("SELECT seq, t, dt, data FROM samples WHERE t >= ? AND t <= ? ORDER BY t, seq",
                                    (float(self._t[i0]), float(self._t[i1 - 1])))
            return [r for r in rows if r[0] in wanted]
        except sqlite3.DatabaseError as e:
            raise XdpscopeError(f"{self.path}: corrupt or unreadable trace: {e}") from e

    def block(self, i0: int, i1: int) -> Block:
        """The samples with index [i0, i1) in time order (indices into times()), as one Block."""
        i0, i1 = max(i0, 0), min(i1, len(self))
        rows = self._rows(i0, i1)
        if self.version == 1:
            return Block.from_samples([self._json_sample(*r) for r in rows])
        return self._decode(rows)

    def _json_sample(self, seq: int, t: float, dt: float, data: str) -> Sample:
        """A format_version 1 row."""
        try:
            d = json.loads(data)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            return Sample.from_dict({**d, "t": t, "dt": dt})
        except (ValueError, TypeError) as e:
            raise XdpscopeError(f"{self.path}: sample row seq={seq}: unreadable JSON ({e})") from e

    def _decode(self, rows: list[tuple]) -> Block:
        """Rows of RECORD arrays -> Block: one concatenation, one scatter into the matrix."""
        n = len(rows)
        raw = []
        for seq, _, _, data in rows:
            try:
                r = zlib.decompress(data)
                if len(r) % RECORD.itemsize:
                    raise ValueError(f"{len(r)} bytes, not a whole number of records")
            except (zlib.error, TypeError, ValueError) as e:
                raise XdpscopeError(f"{self.path}: sample row seq={seq}: unreadable data ({e})") from e
            raw.append(r)
        rec = np.frombuffer(b"".join(raw), RECORD)
        row = np.repeat(np.arange(n), [len(r) // RECORD.itemsize for r in raw])
        known = self._known
        bad = rec["column"] >= len(known)
        bad[~bad] = ~known[rec["column"][~bad]]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise XdpscopeError(f"{self.path}: sample row seq={rows[int(row[i])][0]}: "
                                f"unknown column id {int(rec['column'][i])}")
        ids = np.flatnonzero(np.bincount(rec["column"], minlength=len(known)))  # columns in use, no sort
        remap = np.zeros(len(known), np.intp)
        remap[ids] = np.arange(len(ids))
        col = remap[rec["column"]]
        values = np.zeros((n, len(ids)), np.int64)
        present = np.zeros((n, len(ids)), bool)
        values[row, col] = rec["value"]
        present[row, col] = True
        return Block(np.array([r[1] for r in rows], np.float64), np.array([r[2] for r in rows], np.float64),
                     [self._keys[int(i)] for i in ids], values, present)

    def index_range(self, t_from: float | None = None, t_to: float | None = None) -> tuple[int, int]:
        """Indices [i0, i1) of the samples with t_from <= t <= t_to (either bound optional)."""
        i0 = 0 if t_from is None else int(np.searchsorted(self._t, t_from, side="left"))
        i1 = len(self) if t_to is None else int(np.searchsorted(self._t, t_to, side="right"))
        return i0, max(i0, i1)

    def blocks(self, t_from: float | None = None, t_to: float | None = None, size: int = CHUNK) -> Iterator[Block]:
        """The samples with t_from <= t <= t_to as Blocks of at most `size` samples: a 24 h trace
        streams through in bounded memory."""
        i0, i1 = self.index_range(t_from, t_to)
        for i in range(i0, i1, size):
            yield self.block(i, min(i + size, i1))

    def samples(self, t_from: float | None = None, t_to: float | None = None) -> Iterator[Sample]:
        """Samples with t_from <= t <= t_to (either bound optional), ordered by t."""
        for b in self.blocks(t_from, t_to, size=1024):
            yield from b.samples()

    def sample_at(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample index {index} out of range (trace has {len(self)})")
        index %= len(self)
        return self.block(index, index + 1).sample(0)

    def duration(self) -> float:
        """Seconds covered: from the start of the first interval (t - dt) to the last t."""
        if not len(self):
            return 0.0
        (dt0,) = self._db.execute("SELECT dt FROM samples WHERE seq = ?", (int(self._seq[0]),)).fetchone()
        return float(self._t[-1] - self._t[0] + dt0)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "TraceReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
