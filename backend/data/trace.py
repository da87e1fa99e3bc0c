"""Trace files: a recording of Samples in one SQLite file (docs/trace-format.md).

A sample is stored as its leaves (backend/data/block.py): one row per sample whose data is a compressed
array of (column id, value) records, column ids naming leaf keys in the `columns` table. A window
of rows decodes into a Block in a few numpy operations. The reader also reads format_version 1
(one JSON text per row).

The writer commits every sample in its own transaction in WAL mode, so a SIGKILL of the recorder
loses at most the sample being written; close() folds the WAL back so a finished trace is one
self-contained file. A failed write (disk full) or a deleted file ends the writer with one line, the
trace keeping every committed sample. The reader opens read-only and never modifies a trace; it
validates everything it reads (meta types, column key shapes, times, values) and keeps its memory
bounded by the file, not by numbers written in it (docs/trace-format.md, "Reader errors").
"""
from __future__ import annotations

import errno
import json
import math
import os
import sqlite3
import stat
import struct
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from backend.data import schema
from backend.data.block import Block, Key, check_value
from backend.data.sample import json_leaves as _nested_leaves
from backend.data.schema import IGNORE, MAX_CPUS, check_key
from backend.data import modes
from backend.errors import XdpscopeError
from backend.data.sample import MAX_TARGETS, Sample

FORMAT_VERSION = 3   # 3: compact rows (colsets, bitmaps, varints); 2: zlib records; 1: JSON rows
APPLICATION_ID = 0x78647073  # "xdps": lets `file`/sqlite tools tell our traces from other SQLite files
RECORD = np.dtype([("column", "<u4"), ("value", "<i8")])  # one leaf of a sample row, packed: 12 bytes
CHUNK = 8192  # samples decoded at a time when streaming a whole trace

# Bounds that keep a hostile or damaged trace from costing more than its own size
# distinct names in one field (targets, napi devices, ...): a devmap holds 64 targets; the plots lay
# out one curve per name (a report of 512 targets takes seconds, of 4096 minutes)
MAX_NAMES = 256
MAX_DRIVER_NAMES = 4096  # driver counters: ~20 per queue of a 64-queue NIC is 1,300
MAX_COLUMNS = 200_000    # columns a trace may name (a 256-CPU machine with 64 targets: ~20,000)
STREAM_CELLS = 1 << 22   # samples x columns decoded at a time when streaming (~40 MB of matrix)
MAX_CELLS = 1 << 25      # the most samples x columns one block() may hold (~300 MB): else an error
MAX_T = 1e12             # |t|: seconds since the session start (31,000 years)
MAX_DT = 1e9             # seconds of one sample interval
MIN_DT = 1e-6            # the collector rounds t and dt to microseconds: a dt is 0 or at least this
MAX_JSON_DEPTH = 32      # nesting of one meta value
DELETED_CHECK_S = 1.0    # how often the writer checks that its file is still there
# what reading a damaged file can raise from SQLite (an error message quoting bytes that are not UTF-8
# reaches Python as UnicodeDecodeError)
DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)

_SCHEMA = {2: """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE columns (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
CREATE TABLE samples (seq INTEGER PRIMARY KEY, t REAL NOT NULL, dt REAL NOT NULL, data BLOB NOT NULL);
CREATE INDEX samples_t ON samples (t);
""", 3: """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE columns (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
CREATE TABLE colsets (id INTEGER PRIMARY KEY, cols BLOB NOT NULL UNIQUE);
CREATE TABLE samples (seq INTEGER PRIMARY KEY, t REAL NOT NULL, dt NOT NULL, colset INTEGER NOT NULL,
                      data BLOB NOT NULL);
"""}  # version 3 keeps no index on t: it cost as much as the rows; the reader sorts the times itself
COLSET = np.dtype("<u4")   # a colset: the column ids of a row, in its order
MAX_VARINT = 10            # bytes of a 64-bit LEB128 value


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: Any) -> Any:
    """Strict JSON from a trace: text only, no NaN/Infinity, no number too large for a float,
    nesting bounded by the recursion limit (RecursionError -> ValueError)."""
    if not isinstance(text, str):
        raise ValueError(f"stored as {type(text).__name__}, not text")

    def finite(s: str) -> float:
        v = float(s)
        if not math.isfinite(v):
            raise ValueError(f"{s} is not a finite number")
        return v
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=finite)
    except RecursionError:
        raise ValueError("nested too deep") from None


def encode(records: np.ndarray) -> bytes:
    """A format_version 2 row's data: its RECORD array, zlib-compressed (mostly small ints and zeros: ~4x)."""
    return zlib.compress(records.tobytes(), 1)


def encode_compact(values: list[int]) -> bytes:
    """A format_version 3 row's data: which values are nonzero as a two-level bitmap (a bit per byte
    of the bitmap saying whether that byte has a bit set, then only those bytes; bits least
    significant first), then each nonzero value as a zigzag LEB128 varint (-64..63: one byte). A
    zero costs a bit at most; the row's colset lists every column it has, zeros included."""
    bitmap = np.packbits(np.array([v != 0 for v in values], bool), bitorder="little")
    out = bytearray(np.packbits(bitmap != 0, bitorder="little").tobytes())
    out += bitmap[bitmap != 0].tobytes()
    for v in values:
        if v:
            z = ((v << 1) ^ (v >> 63)) & 0xFFFF_FFFF_FFFF_FFFF
            while z >= 0x80:
                out.append((z & 0x7F) | 0x80)
                z >>= 7
            out.append(z)
    return bytes(out)


def micros(dt: float) -> int | float:
    """dt as integer microseconds when that is exact (the collector rounds to them): 2-3 bytes in
    SQLite instead of 8; else the float itself."""
    us = round(dt * 1e6)
    return us if dt >= 0 and abs(us) < 2**53 and us / 1e6 == dt else dt


def decode_varints(parts: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The zigzag LEB128 values of each part (one part per row), all rows at once in numpy:
    (values int64, count of values per part). ValueError for a value that runs past its part or
    is longer than 64 bits."""
    lens = np.array([len(x) for x in parts], np.int64)
    buf = np.frombuffer(b"".join(parts), np.uint8)
    if not buf.size:
        return np.zeros(0, np.int64), np.zeros(len(parts), np.int64)
    term = buf < 0x80
    end = np.cumsum(lens)
    ends = end[lens > 0] - 1
    if not term[ends].all():
        raise ValueError("a varint runs past the end of its row")
    seen = np.concatenate([[0], np.cumsum(term)])
    counts = seen[end] - seen[end - lens]
    starts = np.flatnonzero(np.concatenate([[True], term[:-1]]))
    sizes = np.diff(np.append(starts, len(buf)))
    if sizes.max() > MAX_VARINT or (buf[starts[sizes == MAX_VARINT] + MAX_VARINT - 1] > 1).any():
        raise ValueError("a varint longer than 64 bits")
    pos = np.arange(len(buf)) - np.repeat(starts, sizes)
    z = np.add.reduceat((buf & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64), starts)
    return (z >> np.uint64(1)).astype(np.int64) ^ -(z & np.uint64(1)).astype(np.int64), counts


def check_output(path: str | os.PathLike) -> Path:
    """Refuse, before anything is attached, an output a trace cannot be written to: a directory,
    a missing or read-only directory (tried by creating a file there: root ignores mode bits, not
    a read-only mount)."""
    out = Path(path)
    parent = out.parent
    try:
        if out.is_dir():
            raise XdpscopeError(f"{out}: is a directory, not a trace file name")
        if not parent.is_dir():
            raise XdpscopeError(f"{out}: no such directory {str(parent)!r}")
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise XdpscopeError(f"{out}: cannot write in {str(parent)!r}: {e.strerror or e}") from None
    return out


def _disk_error(e: BaseException) -> str:
    text = str(e)
    if "full" in text or getattr(e, "errno", None) == errno.ENOSPC:
        return "disk full"
    return text


class TraceWriter:
    """Appends Samples to a new trace file; each write() is committed before it returns.

    A write that fails (disk full, I/O error) or finds the file deleted or replaced raises
    XdpscopeError saying how many samples the trace keeps; the file stays readable up to the last
    committed sample, and the writer refuses further writes."""

    def __init__(self, path: str | os.PathLike, meta: dict, format_version: int = FORMAT_VERSION) -> None:
        if format_version not in _SCHEMA:
            raise XdpscopeError(f"{path}: cannot write trace format_version {format_version} "
                                f"(writes {', '.join(map(str, _SCHEMA))})")
        self.path = Path(path)
        self.version = format_version
        self._colsets: dict[bytes, int] = {}   # colset (COLSET bytes) -> id (format_version 3)
        self.count = 0  # samples committed
        self.failed: str | None = None
        self._columns: dict[Key, int] = {}
        try:
            if self.path.is_dir():
                raise XdpscopeError(f"{self.path}: is a directory, not a trace file name")
            for suffix in ("", "-wal", "-shm", "-journal"):  # stale WAL of an older file would corrupt the new one
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        except OSError as e:
            raise XdpscopeError(f"{self.path}: cannot replace the old trace: {e.strerror or e}") from None
        self._db: sqlite3.Connection | None = None
        try:
            # autocommit: every statement is its own transaction, committed when execute() returns
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL: a commit survives the death of the process (not of the machine) without an fsync per sample
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._db.executescript(_SCHEMA[format_version])
            full = {**meta, "format_version": format_version}
            full.setdefault("created", time.time())
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, _json(v)) for k, v in full.items()])
            st = os.stat(self.path)
        except (sqlite3.Error, OSError, ValueError) as e:
            if self._db is not None:
                self._db.close()
                self._db = None
            raise XdpscopeError(f"{self.path}: cannot create trace: {_disk_error(e)}") from None
        self._ident = (st.st_dev, st.st_ino)
        self._checked = time.monotonic()
        self._new_colsets = {}

    def records(self, sample: Sample) -> tuple[np.ndarray, dict[Key, int]]:
        """The sample's leaves as RECORDs, and the columns it is the first to have (written in the
        sample's own transaction, so no row is ever committed without its names)."""
        cols, values, new = [], [], {}
        try:
            pairs = sample.leaves()
        except ValueError as e:
            raise XdpscopeError(f"{self.path}: sample t={sample.t}: {e}") from None
        for key, value in pairs:
            try:
                check_value(value)
            except ValueError as e:
                raise XdpscopeError(f"{self.path}: sample t={sample.t}: counter {list(key)} {e}") from None
            col = self._columns.get(key, new.get(key))
            if col is None:
                try:
                    check_key(key)  # never write a trace the reader refuses
                except ValueError as e:
                    raise XdpscopeError(f"{self.path}: sample t={sample.t}: counter {e}") from None
                col = new[key] = len(self._columns) + len(new)
            cols.append(col)
            values.append(value)
        out = np.empty(len(cols), RECORD)
        out["column"], out["value"] = cols, values
        return out, new

    def write(self, sample: Sample) -> None:
        """Commit one sample (and the columns it adds) in one transaction."""
        self._check_file()
        records, new = self.records(sample)
        db = self._conn()
        try:
            db.execute("BEGIN")
            try:
                db.executemany("INSERT INTO columns (id, key) VALUES (?, ?)",
                               [(col, _json(list(key))) for key, col in new.items()])
                if self.version == 2:
                    db.execute("INSERT INTO samples (t, dt, data) VALUES (?, ?, ?)",
                               (sample.t, sample.dt, encode(records)))
                else:
                    colset = self._colset(db, records["column"])
                    db.execute("INSERT INTO samples (t, dt, colset, data) VALUES (?, ?, ?, ?)",
                               (sample.t, micros(sample.dt), colset, encode_compact(records["value"].tolist())))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            self._fail(f"cannot write: {_disk_error(e)}")
        self._columns.update(new)
        self._colsets.update(self._new_colsets)
        self.count += 1

    def _colset(self, db: sqlite3.Connection, columns: np.ndarray) -> int:
        """The id of this row's column list, added in the row's own transaction when new (a
        session's samples mostly share a few)."""
        self._new_colsets: dict[bytes, int] = {}
        key = columns.astype(COLSET).tobytes()
        got = self._colsets.get(key)
        if got is None:
            got = self._new_colsets[key] = len(self._colsets)
            db.execute("INSERT INTO colsets (id, cols) VALUES (?, ?)", (got, key))
        return got

    def set_meta(self, key: str, value: Any) -> None:
        db = self._conn()
        try:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _json(value)))
        except sqlite3.Error as e:
            self._fail(f"cannot write: {_disk_error(e)}")

    def _fail(self, why: str) -> None:
        self.failed = why
        raise XdpscopeError(f"{self.path}: {why}; recording stopped, the trace keeps the {self.count} samples "
                            "committed before")

    def _check_file(self) -> None:
        """Once a second: the path still names the file being written (not deleted, not replaced)."""
        now = time.monotonic()
        if now - self._checked < DELETED_CHECK_S:
            return
        self._checked = now
        try:
            st = os.stat(self.path)
            same = (st.st_dev, st.st_ino) == self._ident
        except OSError:
            same = False
        if not same:
            self._fail("the trace file was deleted or replaced while recording")

    def close(self) -> None:
        """Record the sample count and end time and fold the WAL back into the file. After a failed
        write only the connection is closed: the trace (with its -wal file) keeps what was committed."""
        if self._db is None:
            return
        db, self._db = self._db, None
        try:
            if self.failed is None:
                (count,) = db.execute("SELECT COUNT(*) FROM samples").fetchone()
                for key, value in (("samples", count), ("ended", time.time())):
                    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _json(value)))
                db.execute("PRAGMA journal_mode=DELETE")  # checkpoint and drop the WAL: one file to copy or ship
        except sqlite3.Error as e:
            self.failed = f"cannot finish the trace: {_disk_error(e)}"
            raise XdpscopeError(f"{self.path}: {self.failed}; it keeps its {self.count} samples "
                                "(keep its -wal file beside it)") from None
        finally:
            db.close()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise XdpscopeError(f"{self.path}: trace writer is closed")
        if self.failed is not None:
            raise XdpscopeError(f"{self.path}: {self.failed}")
        return self._db

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # an error is on its way out: do not replace it with one from closing
            self.close()
        except XdpscopeError:
            pass


def _check_header(path: Path) -> None:
    """Cheap checks SQLite itself would only fail on later, at the first read of a missing page."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(100)
        wal = Path(f"{path}-wal")
        has_wal = wal.exists() and wal.stat().st_size > 0  # pages may live in the WAL, header size may lag
    except OSError as e:
        raise XdpscopeError(f"{path}: cannot read trace: {e.strerror or e}") from None
    if size == 0:
        raise XdpscopeError(f"{path}: empty file (0 bytes), not an xdpscope trace")
    if not head.startswith(b"SQLite format 3\0"):
        raise XdpscopeError(f"{path}: not an xdpscope trace (not an SQLite database)")
    if len(head) < 100:
        raise XdpscopeError(f"{path}: truncated trace ({size} bytes, shorter than an SQLite header)")
    page_size = struct.unpack(">H", head[16:18])[0] or 1  # stored as 1 for 65536
    page_size = 65536 if page_size == 1 else page_size
    changes, pages = struct.unpack(">II", head[24:32])
    valid_for = struct.unpack(">I", head[92:96])[0]
    if not has_wal and valid_for == changes and pages * page_size > size:
        raise XdpscopeError(f"{path}: truncated trace ({size} bytes, its header says {pages * page_size})")


# -- meta: the type of every key this version knows (others are kept as they are) ---------------

def _depth(x: Any) -> int:
    """Nesting depth of a JSON value, without recursion."""
    depth, level = 0, [x]
    while level:
        depth += 1
        level = [v for c in level if isinstance(c, (dict, list)) for v in (c.values() if isinstance(c, dict) else c)]
    return depth - 1


def _int(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"expected an integer {lo}..{hi}"
    return check


def _number(lo: float, hi: float) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"expected a number {lo:.15g}..{hi:.15g}"
    return check


def _of(kind: type, what: str) -> Callable[[Any], str | None]:
    return lambda v: None if isinstance(v, kind) and not isinstance(v, bool) or kind is bool and isinstance(v, bool) \
        else f"expected {what}"


def _names(most: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = isinstance(v, list) and len(v) <= most and all(isinstance(x, str) and 0 < len(x) <= 256 for x in v)
        return None if ok else f"expected a list of at most {most} names"
    return check


EPOCH = _number(0, 253402300799)  # up to 9999-12-31: what a date can show
_STR, _OBJ = _of(str, "a string"), _of(dict, "a JSON object")
META_TYPES: dict[str, Callable[[Any], str | None]] = {
    "format_version": _int(1, 2**31), "samples": _int(0, 2**63 - 1), "ifindex": _int(0, 2**32 - 1),
    "cpus": _int(0, MAX_CPUS), "hz": _number(0, 1e6),
    "created": EPOCH, "ended": EPOCH, "started": EPOCH, "wall_start": EPOCH,
    **dict.fromkeys(("host", "kernel", "version", "iface", "driver", "program", "mode", "mode_note",
                     "requested_mode", "source", "verdicts_from", "verdict_method", "headers", "recorded_by",
                     "file"), _STR),
    **dict.fromkeys(("params", "probes", "native", "converted"), _OBJ),
    "targets": _names(MAX_TARGETS), "prepared_targets": _names(MAX_TARGETS), "probes_enabled": _names(256),
    "run_time": _of(bool, "true or false"),
}


def check_meta(path: Path, meta: dict[str, Any]) -> None:
    """Each known key has its type (null: not recorded, as a missing key); any value is at most
    MAX_JSON_DEPTH deep. format_version is checked before this."""
    for key, value in meta.items():
        check = META_TYPES.get(key)
        why = check(value) if check is not None and value is not None else None
        if why is None and _depth(value) > MAX_JSON_DEPTH:
            why = f"nested more than {MAX_JSON_DEPTH} deep"
        if why is not None:
            shown = _json(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise XdpscopeError(f"{path}: meta key {key!r}: {why}, not {shown}")


class TraceReader:
    """Read-only view of a trace: meta, sample times as numpy, samples by window or index.

    Everything read is validated (docs/trace-format.md, "Reader errors"): a damaged or hostile file
    gets a one-line XdpscopeError, and memory stays bounded by the file's size, never by numbers
    written in it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            raise XdpscopeError(f"{self.path}: no such trace file") from None
        except OSError as e:
            raise XdpscopeError(f"{self.path}: cannot read trace: {e.strerror or e}") from None
        if not stat.S_ISREG(st.st_mode):  # a directory, a FIFO (opening it would block), a device
            raise XdpscopeError(f"{self.path}: not a file")
        _check_header(self.path)
        try:
            self._db = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
        except DB_ERRORS as e:
            raise XdpscopeError(f"{self.path}: cannot open trace: {e}") from None
        try:
            self._load()
        except DB_ERRORS as e:
            self._db.close()
            raise XdpscopeError(f"{self.path}: corrupt or unreadable trace: {e}") from None
        except XdpscopeError:
            self._db.close()
            raise

    def _load(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "samples"} <= tables:
            raise XdpscopeError(f"{self.path}: not an xdpscope trace (no meta/samples tables)")
        self.meta: dict[str, Any] = {}
        for key, value in self._db.execute("SELECT key, value FROM meta"):
            if not isinstance(key, str):
                raise XdpscopeError(f"{self.path}: meta key {key!r}: not text")
            try:
                self.meta[key] = parse_json(value)
            except ValueError as e:
                raise XdpscopeError(f"{self.path}: meta key {key!r}: unreadable JSON ({e})") from None
        version = self.meta.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise XdpscopeError(f"{self.path}: unknown trace format_version {version!r}")
        if version > FORMAT_VERSION:
            raise XdpscopeError(f"{self.path}: trace format_version {version} is newer than this xdpscope "
                                f"reads ({FORMAT_VERSION}); upgrade xdpscope")
        check_meta(self.path, self.meta)
        self.meta = modes.normalize_meta(self.meta)   # xdp/xdpgeneric of older traces: native/generic
        self.version = version
        if version == 1:
            self._ids, self._slots, self._keys = np.zeros(0, np.int64), np.zeros(0, np.intp), []
        else:
            self._load_columns(tables)
        if version >= 3:
            self._load_colsets(tables)
        # Version 2: one pass over the covering index on t (it holds the rowid), no table pages.
        # Version 3 has no index: one pass over the rows in rowid order, sorted here (by t, then seq).
        order = "t, seq" if version < 3 else "seq"
        try:
            rows = np.fromiter(self._db.execute(f"SELECT t, seq FROM samples ORDER BY {order}"),
                               dtype=[("t", "f8"), ("seq", "i8")])
        except (ValueError, TypeError, OverflowError) as e:
            raise XdpscopeError(f"{self.path}: a sample time is not a number ({e})") from None
        if version >= 3 and np.any(np.diff(rows["t"]) < 0):   # written out of time order (rare)
            rows = rows[np.lexsort((rows["seq"], rows["t"]))]
        bad = ~(np.abs(rows["t"]) <= MAX_T)  # NaN too
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise XdpscopeError(f"{self.path}: sample row seq={int(rows['seq'][i])}: time t={rows['t'][i]} is not "
                                f"a number of seconds within ±{MAX_T:g}")
        self._t = np.ascontiguousarray(rows["t"])
        self._seq = np.ascontiguousarray(rows["seq"])
        self._t.flags.writeable = False
        # written in time order (the normal case): a window is a range of rowids, read from the table
        # pages alone, without the index
        self._in_order = bool(np.all(np.diff(self._seq) > 0))

    def _load_columns(self, tables: set[str]) -> None:
        """The columns table as a sorted id array and, per id, its index in self._keys (-1: a column
        of a newer xdpscope, ignored)."""
        if "columns" not in tables:
            raise XdpscopeError(f"{self.path}: not an xdpscope trace (no columns table)")
        ids, slots, keys = [], [], []
        seen_keys: set[Key] = set()
        for col, key in self._db.execute("SELECT id, key FROM columns ORDER BY id"):
            try:
                if not isinstance(col, int) or not 0 <= col < 2**32:
                    raise ValueError(f"id {col!r} is not a record's u32")
                k = parse_json(key)
                if not isinstance(k, list) or not k or not isinstance(k[0], str):
                    raise ValueError("not a non-empty JSON array starting with a field name")
                if len(k) > schema.MAX_DEPTH or any(not isinstance(p, (str, int)) or isinstance(p, bool) for p in k):
                    raise ValueError(f"{k!r} is not a path of names and indexes")
                keep = check_key(tuple(k)) != IGNORE
                if tuple(k) in seen_keys:
                    raise ValueError(f"{k!r} names another column too")
                seen_keys.add(tuple(k))
            except ValueError as e:
                raise XdpscopeError(f"{self.path}: column {col!r}: unreadable key ({e})") from None
            ids.append(col)
            slots.append(len(keys) if keep else -1)
            if keep:
                keys.append(tuple(k))
                if len(keys) > MAX_COLUMNS:
                    raise XdpscopeError(f"{self.path}: more than {MAX_COLUMNS} columns: not a trace xdpscope wrote")
        self._check_names(keys)
        self._ids = np.array(ids, np.int64)
        self._slots = np.array(slots, np.intp)
        self._keys = keys

    def _load_colsets(self, tables: set[str]) -> None:
        """Every colset as the slots (self._keys index, -1: a column ignored) of its columns."""
        if "colsets" not in tables:
            raise XdpscopeError(f"{self.path}: not an xdpscope trace (no colsets table)")
        self._colsets: dict[int, np.ndarray] = {}
        for cid, cols in self._db.execute("SELECT id, cols FROM colsets"):
            try:
                if not isinstance(cid, int):
                    raise ValueError(f"id {cid!r} is not an integer")
                if not isinstance(cols, bytes) or len(cols) % COLSET.itemsize:
                    raise ValueError("not a blob of u32 column ids")
                ids = np.frombuffer(cols, COLSET).astype(np.int64)
                if len(ids) > len(self._ids) or len(np.unique(ids)) != len(ids):
                    raise ValueError("a column twice")
                pos = np.minimum(np.searchsorted(self._ids, ids), max(len(self._ids) - 1, 0))
                if len(ids) and (not len(self._ids) or (self._ids[pos] != ids).any()):
                    raise ValueError("a column id the columns table lacks")
            except ValueError as e:
                raise XdpscopeError(f"{self.path}: colset {cid!r}: unreadable ({e})") from None
            self._colsets[cid] = self._slots[pos] if len(ids) else np.zeros(0, np.intp)

    def _check_names(self, keys: list[Key]) -> None:
        """At most MAX_NAMES names (targets, devices...) in one field (MAX_DRIVER_NAMES counters)."""
        names: dict[str, set] = {}
        for k in keys:
            if len(k) > 1 and isinstance(k[1], str):
                names.setdefault(k[0], set()).add(k[1])
        for field, seen in names.items():
            most = MAX_DRIVER_NAMES if field == "driver" else MAX_NAMES
            if len(seen) > most:
                raise XdpscopeError(f"{self.path}: {len(seen)} names in {field!r}, more than {most}: "
                                    "not a trace xdpscope wrote")

    def __len__(self) -> int:
        return len(self._t)

    def times(self) -> np.ndarray:
        """Sample end times t (seconds since session start), ascending; read-only view."""
        return self._t

    def chunk(self) -> int:
        """Samples per Block when streaming: CHUNK, fewer for a trace of very many columns, so a
        Block's matrix stays within STREAM_CELLS."""
        return max(1, min(CHUNK, STREAM_CELLS // max(1, len(self._keys))))

    def _rows(self, i0: int, i1: int) -> list[tuple]:
        """(seq, t, dt, data) of the samples with index [i0, i1) in time order."""
        if i1 <= i0:
            return []
        s0, s1 = int(self._seq[i0]), int(self._seq[i1 - 1])
        try:
            what = "seq, t, dt, data" + (", colset" if self.version >= 3 else "")
            if self._in_order:
                return self._db.execute(f"SELECT {what} FROM samples WHERE seq BETWEEN ? AND ? "
                                        "ORDER BY seq", (s0, s1)).fetchall()
            wanted = set(self._seq[i0:i1].tolist())
            rows = self._db.execute(f"SELECT {what} FROM samples WHERE t >= ? AND t <= ? ORDER BY t, seq",
                                    (float(self._t[i0]), float(self._t[i1 - 1])))
            return [r for r in rows if r[0] in wanted]
        except DB_ERRORS as e:
            raise XdpscopeError(f"{self.path}: corrupt or unreadable trace: {e}") from None

    def block(self, i0: int, i1: int) -> Block:
        """The samples with index [i0, i1) in time order (indices into times()), as one Block."""
        i0, i1 = max(i0, 0), min(i1, len(self))
        rows = self._rows(i0, i1)
        if len(rows) != max(0, i1 - i0):
            raise XdpscopeError(f"{self.path}: samples changed while the trace was open "
                                f"({len(rows)} rows where {i1 - i0} were)")
        t, dt = self._times(rows)
        if self.version == 1:
            return self._json_block(rows, t, dt)
        return self._decode(rows, t, dt) if self.version == 2 else self._decode_compact(rows, t, dt)

    def _times(self, rows: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
        """t and dt of the rows, checked: numbers, |t| <= MAX_T, dt 0 or MIN_DT..MAX_DT."""
        def bad(row: tuple) -> XdpscopeError:
            seq, t, dt = row[:3]
            return XdpscopeError(f"{self.path}: sample row seq={seq}: t={t!r}, dt={dt!r}: not a time and an "
                                 f"interval of 0 or {MIN_DT:g}..{MAX_DT:g} s")
        try:
            t = np.array([r[1] for r in rows], np.float64)
            dt = np.array([r[2] / 1e6 if type(r[2]) is int and self.version >= 3 else r[2] for r in rows],
                          np.float64)  # format_version 3: integer microseconds, or seconds
        except (ValueError, TypeError):  # text or a blob where a number belongs
            raise bad(next((r for r in rows if not all(isinstance(x, (int, float)) for x in r[1:3])), rows[0])) \
                from None
        ok = (np.abs(t) <= MAX_T) & ((dt == 0) | ((dt >= MIN_DT) & (dt <= MAX_DT)))  # NaN fails too
        if not ok.all():
            raise bad(rows[int(np.flatnonzero(~ok)[0])])
        return t, dt

    def _json_block(self, rows: list[tuple], t: np.ndarray, dt: np.ndarray) -> Block:
        """format_version 1 rows (one JSON object per sample), every leaf checked."""
        cells, out = 0, []
        for seq, _, _, data in rows:
            try:
                d = parse_json(data)
            except ValueError as e:
                raise XdpscopeError(f"{self.path}: sample row seq={seq}: unreadable JSON ({e})") from None
            try:
                pairs = json_leaves(d)
            except ValueError as e:
                why = "unreadable JSON" if not isinstance(d, dict) else "bad counter"
                raise XdpscopeError(f"{self.path}: sample row seq={seq}: {why} ({e})") from None
            cells += len(pairs)
            if cells > MAX_CELLS:
                raise XdpscopeError(f"{self.path}: more than {MAX_CELLS} counters in one window")
            out.append(pairs)
        keys = list({k: None for pairs in out for k, _ in pairs})
        self._check_names(keys)
        self._check_cells(len(out), len(keys))  # before the matrix is made
        return Block.from_leaves(t, dt, out)

    def _check_cells(self, n: int, ncols: int) -> None:
        if n * ncols > MAX_CELLS:
            raise XdpscopeError(f"{self.path}: a window of {n} samples x {ncols} counters is too large to load "
                                f"(at most {MAX_CELLS} values): choose a shorter window")

    def _decode(self, rows: list[tuple], t: np.ndarray, dt: np.ndarray) -> Block:
        """Rows of RECORD arrays -> Block: one concatenation, one scatter into the matrix."""
        n = len(rows)
        most = RECORD.itemsize * len(self._ids)  # a row holds each column at most once
        raw, total = [], 0
        for seq, _, _, data in rows:
            try:
                if not isinstance(data, bytes):
                    raise TypeError(f"stored as {type(data).__name__}, not a blob")
                z = zlib.decompressobj()
                r = z.decompress(data, most + 1)  # bounded: a small blob cannot inflate to gigabytes
                if len(r) > most:
                    raise ValueError(f"more records than the trace has columns ({len(self._ids)})")
                if not z.eof:
                    raise ValueError("truncated zlib stream")
                if len(r) % RECORD.itemsize:
                    raise ValueError(f"{len(r)} bytes, not a whole number of records")
            except (zlib.error, TypeError, ValueError) as e:
                raise XdpscopeError(f"{self.path}: sample row seq={seq}: unreadable data ({e})") from None
            total += len(r) // RECORD.itemsize
            if total > MAX_CELLS:
                raise XdpscopeError(f"{self.path}: more than {MAX_CELLS} counters in one window")
            raw.append(r)
        rec = np.frombuffer(b"".join(raw), RECORD)
        row = np.repeat(np.arange(n), [len(r) // RECORD.itemsize for r in raw])
        pos = np.minimum(np.searchsorted(self._ids, rec["column"]), max(len(self._ids) - 1, 0))
        bad = (self._ids[pos] != rec["column"]) if len(self._ids) else np.ones(len(rec), bool)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise XdpscopeError(f"{self.path}: sample row seq={rows[int(row[i])][0]}: "
                                f"unknown column id {int(rec['column'][i])}")
        slot = self._slots[pos]
        keep = slot >= 0  # columns of a newer xdpscope are left out
        slot, row, value = slot[keep], row[keep], rec["value"][keep]
        used = np.flatnonzero(np.bincount(slot, minlength=len(self._keys)))  # columns in use, no sort
        self._check_cells(n, len(used))
        remap = np.zeros(len(self._keys), np.intp)
        remap[used] = np.arange(len(used))
        col = remap[slot]
        values = np.zeros((n, len(used)), np.int64)
        present = np.zeros((n, len(used)), bool)
        values[row, col] = value
        present[row, col] = True
        if int(present.sum()) != len(slot):  # a column twice in one row: never written so
            per_row = np.bincount(row, minlength=n) - present.sum(axis=1)
            seq = rows[int(np.flatnonzero(per_row)[0])][0]
            raise XdpscopeError(f"{self.path}: sample row seq={seq}: unreadable data (a column appears twice)")
        return Block(t, dt, [self._keys[int(i)] for i in used], values, present)

    def _decode_compact(self, rows: list[tuple], t: np.ndarray, dt: np.ndarray) -> Block:
        """format_version 3 rows -> Block: per colset, the rows' bitmaps unpacked and their varints
        decoded in numpy, then one scatter into the matrix."""
        n = len(rows)
        groups: dict[Any, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(r[4], []).append(i)
        cells = 0
        prow, pslot, vrow, vslot, vals = [], [], [], [], []
        for cid, idx in groups.items():
            slots = self._colsets.get(cid) if isinstance(cid, int) else None
            if slots is None:
                raise XdpscopeError(f"{self.path}: sample row seq={rows[idx[0]][0]}: unknown colset {cid!r}")
            m = len(slots)
            cells += m * len(idx)
            if cells > MAX_CELLS:
                raise XdpscopeError(f"{self.path}: more than {MAX_CELLS} counters in one window")
            datas = [rows[i][3] for i in idx]
            for i, d in zip(idx, datas):
                if not isinstance(d, bytes):
                    raise XdpscopeError(f"{self.path}: sample row seq={rows[i][0]}: unreadable data (not a blob)")
            try:
                owner, col, values = _compact_rows(datas, m)
            except ValueError:   # name the first bad row and say what is wrong with it
                for i, d in zip(idx, datas):
                    try:
                        _compact_rows([d], m)
                    except ValueError as e:
                        raise XdpscopeError(f"{self.path}: sample row seq={rows[i][0]}: unreadable data ({e})") \
                            from None
                raise AssertionError("a bad group of good rows")  # noqa: B904 (cannot happen)
            rows_of = np.array(idx, np.intp)
            prow.append(np.repeat(rows_of, m))
            pslot.append(np.tile(slots, len(idx)))
            vrow.append(rows_of[owner])
            vslot.append(slots[col])
            vals.append(values)
        cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
        prow, pslot = cat(prow, np.intp), cat(pslot, np.intp)
        vrow, vslot, vals = cat(vrow, np.intp), cat(vslot, np.intp), cat(vals, np.int64)
        keep, vkeep = pslot >= 0, vslot >= 0    # columns of a newer xdpscope are left out
        prow, pslot, vrow, vslot, vals = prow[keep], pslot[keep], vrow[vkeep], vslot[vkeep], vals[vkeep]
        used = np.flatnonzero(np.bincount(pslot, minlength=len(self._keys)))
        self._check_cells(n, len(used))
        remap = np.zeros(len(self._keys), np.intp)
        remap[used] = np.arange(len(used))
        values = np.zeros((n, len(used)), np.int64)
        present = np.zeros((n, len(used)), bool)
        present[prow, remap[pslot]] = True
        values[vrow, remap[vslot]] = vals
        return Block(t, dt, [self._keys[int(i)] for i in used], values, present)

    def index_range(self, t_from: float | None = None, t_to: float | None = None) -> tuple[int, int]:
        """Indices [i0, i1) of the samples with t_from <= t <= t_to (either bound optional)."""
        i0 = 0 if t_from is None else int(np.searchsorted(self._t, t_from, side="left"))
        i1 = len(self) if t_to is None else int(np.searchsorted(self._t, t_to, side="right"))
        return i0, max(i0, i1)

    def blocks(self, t_from: float | None = None, t_to: float | None = None,
               size: int | None = None) -> Iterator[Block]:
        """The samples with t_from <= t <= t_to as Blocks of at most `size` samples (default: chunk()):
        a 24 h trace streams through in bounded memory."""
        size = size or self.chunk()
        i0, i1 = self.index_range(t_from, t_to)
        for i in range(i0, i1, size):
            yield self.block(i, min(i + size, i1))

    def samples(self, t_from: float | None = None, t_to: float | None = None) -> Iterator[Sample]:
        """Samples with t_from <= t <= t_to (either bound optional), ordered by t."""
        for b in self.blocks(t_from, t_to, size=min(1024, self.chunk())):
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
        rows = self._rows(0, 1)
        if len(rows) != 1:
            raise XdpscopeError(f"{self.path}: samples changed while the trace was open")
        _, dt0 = self._times(rows)
        return float(self._t[-1] - self._t[0] + dt0[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "TraceReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _compact_rows(datas: list[bytes], m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of one colset of m columns (format_version 3 data) -> (row, column, value) of every
    nonzero value, rows in order, columns ascending. ValueError says what is wrong."""
    nbytes = (m + 7) // 8           # the bitmap's bytes, and their own bitmap's
    nlevel = (nbytes + 7) // 8
    if any(len(d) < nlevel for d in datas):
        raise ValueError(f"shorter than its {nlevel}-byte bitmap")
    level = np.unpackbits(np.frombuffer(b"".join(d[:nlevel] for d in datas), np.uint8).reshape(len(datas), nlevel),
                          axis=1, bitorder="little")
    if level[:, nbytes:].any():
        raise ValueError("bits set past the row's columns")
    level = level[:, :nbytes].astype(bool)
    kept = level.sum(axis=1).tolist()
    if any(len(d) < nlevel + k for d, k in zip(datas, kept)):
        raise ValueError("shorter than its bitmap")
    bitmap = np.zeros((len(datas), nbytes), np.uint8)
    bitmap[level] = np.frombuffer(b"".join(d[nlevel:nlevel + k] for d, k in zip(datas, kept)), np.uint8)
    bits = np.unpackbits(bitmap, axis=1, bitorder="little")
    if bits[:, m:].any() or (bitmap[level] == 0).any():
        raise ValueError("a bitmap byte of no bits, or bits set past the row's columns")
    nonzero = bits[:, :m].astype(bool)
    values, counts = decode_varints([d[nlevel + k:] for d, k in zip(datas, kept)])
    if (counts != nonzero.sum(axis=1)).any():
        raise ValueError("its values are not its bitmap's")
    if not values.all():
        raise ValueError("a zero where its bitmap says nonzero")
    owner, col = np.nonzero(nonzero)
    return owner, col, values


def json_leaves(d: Any) -> list[tuple[Key, int]]:
    """The leaves of a format_version 1 row (a Sample.to_dict() without t and dt), each key of a known
    shape and each value an integer within int64; fields and members of a newer xdpscope are left out."""
    out: list[tuple[Key, int]] = []
    for key, v in _nested_leaves(d):
        if check_key(key) != IGNORE:
            try:
                out.append((key, check_value(v)))
            except ValueError as e:
                raise ValueError(f"counter {list(key)} {e}") from None
    return out
