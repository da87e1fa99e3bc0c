"""Trace files: a recording of Samples in one SQLite file (docs/trace-format.md).

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
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import XdpscopeError
from .sample import Sample

FORMAT_VERSION = 1
APPLICATION_ID = 0x78647073  # "xdps": lets `file`/sqlite tools tell our traces from other SQLite files

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE samples (seq INTEGER PRIMARY KEY, t REAL NOT NULL, dt REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX samples_t ON samples (t);
"""


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class TraceWriter:
    """Appends Samples to a new trace file; each write() is committed before it returns."""

    def __init__(self, path: str | os.PathLike, meta: dict) -> None:
        self.path = Path(path)
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

    def write(self, sample: Sample) -> None:
        d = sample.to_dict()
        t, dt = d.pop("t"), d.pop("dt")
        self._conn().execute("INSERT INTO samples (t, dt, data) VALUES (?, ?, ?)", (t, dt, _json(d)))

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
        # One pass over the covering index on t (it holds the rowid): no table pages, no per-row objects kept.
        rows = np.fromiter(self._db.execute("SELECT t, seq FROM samples ORDER BY t, seq"),
                           dtype=[("t", "f8"), ("seq", "i8")])
        self._t = np.ascontiguousarray(rows["t"])
        self._seq = np.ascontiguousarray(rows["seq"])
        self._t.flags.writeable = False

    def __len__(self) -> int:
        return len(self._t)

    def times(self) -> np.ndarray:
        """Sample end times t (seconds since session start), ascending; read-only view."""
        return self._t

    def _sample(self, seq: int, t: float, dt: float, data: str) -> Sample:
        try:
            d = json.loads(data)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            return Sample.from_dict({**d, "t": t, "dt": dt})
        except (ValueError, TypeError) as e:
            raise XdpscopeError(f"{self.path}: sample row seq={seq}: unreadable JSON ({e})") from e

    def samples(self, t_from: float | None = None, t_to: float | None = None) -> Iterator[Sample]:
        """Samples with t_from <= t <= t_to (either bound optional), ordered by t."""
        lo = -np.inf if t_from is None else t_from
        hi = np.inf if t_to is None else t_to
        try:
            # the cursor is lazy: a 24 h trace streams through in constant memory
            for row in self._db.execute("SELECT seq, t, dt, data FROM samples WHERE t >= ? AND t <= ? "
                                        "ORDER BY t, seq", (float(lo), float(hi))):
                yield self._sample(*row)
        except sqlite3.DatabaseError as e:
            raise XdpscopeError(f"{self.path}: corrupt or unreadable trace: {e}") from e

    def sample_at(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample index {index} out of range (trace has {len(self)})")
        seq = int(self._seq[index])
        try:
            row = self._db.execute("SELECT seq, t, dt, data FROM samples WHERE seq = ?", (seq,)).fetchone()
        except sqlite3.DatabaseError as e:
            raise XdpscopeError(f"{self.path}: corrupt or unreadable trace: {e}") from e
        return self._sample(*row)

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
