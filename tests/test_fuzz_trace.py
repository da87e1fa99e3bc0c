"""A few hundred mutated traces through `xdpscope summary`: only clean one-line errors or correct
totals, in bounded memory and time.

The corpus starts from the bundled recordings (resources/*.xst) and small traces written here in
both formats, and mutates them with a fixed seed: meta values and types, column keys, sample blobs,
times, v1 JSON rows, tables, SQLite pages, flipped bytes, truncations. Each mutation says what a
correct reader must do with it:
  KEEP   the data is unchanged (VACUUM, renumbered rows, an unknown meta key...): the summary must
         succeed with exactly the totals of the unmutated trace;
  ERROR  the data is invalid: one line on stderr starting "xdpscope: ", a non-zero exit;
  EITHER no oracle (a flipped byte may land in free space): an error as above, or a well-formed
         summary (valid JSON without NaN/inf, every count an int64).
Anything else (a traceback, a hang, a memory bomb) fails the test. Summaries run in-process
through main.main (the CLI's own entry point) under an address-space limit with tracemalloc
measuring each one's peak; a sample of the corpus also runs through the real CLI in a subprocess
whose own peak RSS (VmHWM) is checked.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest

import main as cli
from backend.data.sample import Sample
from backend.data.trace import RECORD, TraceWriter, encode_compact
from gui.testing import synthetic, write_trace
from tests.test_trace import write_v1

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
SEED = 20240609
KEEP, ERROR, EITHER = "keep", "error", "either"
PEAK_BYTES = 160 * 2**20      # tracemalloc peak of one in-process summary
CHILD_RSS_KB = 200 * 1024     # peak RSS of one `xdpscope summary` process (~80 MB measured)
ADDRESS_SPACE = 3 * 2**30     # added to the test process's current size while fuzzing: a bomb fails fast
INT64 = (-(2**63), 2**63 - 1)
# summary keys that are totals of the samples (compared exactly for KEEP mutations)
TOTALS = ("samples", "duration_s", "actions", "per_cpu_actions", "redirect_errors", "devmap", "flush_batches",
          "flush_batches_by_target", "exceptions", "cpumap", "napi", "driver_counters", "run", "span")


@dataclass
class Case:
    name: str
    path: Path
    expect: str  # KEEP, ERROR or EITHER
    source: str


def _db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _sql(path: Path, *statements: tuple | str) -> None:
    db = _db(path)
    try:
        for st in statements:
            db.execute(*st) if isinstance(st, tuple) else db.execute(st)
    finally:
        db.close()


def _many(path: Path, sql: str, rows: list[tuple]) -> None:
    """One transaction for many rows (autocommit would commit each one)."""
    db = sqlite3.connect(path)
    try:
        with db:
            db.executemany(sql, rows)
    finally:
        db.close()


def _meta_keys(path: Path) -> list[str]:
    db = _db(path)
    try:
        return [k for (k,) in db.execute("SELECT key FROM meta ORDER BY key")]
    finally:
        db.close()


def _column_ids(path: Path) -> list[int]:
    db = _db(path)
    try:
        return [c for (c,) in db.execute("SELECT id FROM columns ORDER BY id")]
    finally:
        db.close()


def _seqs(path: Path) -> list[int]:
    db = _db(path)
    try:
        return [s for (s,) in db.execute("SELECT seq FROM samples ORDER BY seq")]
    finally:
        db.close()


def _pages(path: Path, name: str) -> list[int]:
    db = _db(path)
    try:
        return [p for (p,) in db.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf'", (name,))]
    finally:
        db.close()


def records(*pairs: tuple[int, int]) -> bytes:
    return zlib.compress(np.array(list(pairs), RECORD).tobytes())


# -- bad values, by the kind of meta key they are wrong for ----------------------------------------
NOT_STR = ["5", "1.5", "true", "[1, 2]", '{"a": 1}']  # (null is allowed everywhere: "not recorded")
NOT_INT = ['"5"', "1.5", "-1", "true", "[1]", "1e300", "99999999999999999999999999"]
NOT_NUM = ['"fast"', "-5", "true", "[]", "1e300", '{"hz": 1}']
NOT_LIST = ['"xs-t0"', "5", '{"a": 1}', "[1, 2]", '[""]', json.dumps(["t%d" % i for i in range(100_000)])]
NOT_OBJ = ['"x"', "[1, 2]", "5", "true"]
META_BAD = {"hz": NOT_NUM, "created": NOT_NUM, "ended": NOT_NUM, "cpus": NOT_INT, "ifindex": NOT_INT,
            "samples": NOT_INT, "iface": NOT_STR, "driver": NOT_STR, "program": NOT_STR, "mode": NOT_STR,
            "host": NOT_STR, "targets": NOT_LIST, "probes": NOT_OBJ, "params": NOT_OBJ, "run_time": ['"yes"', "1"]}
BAD_JSON = ["NaN", "Infinity", "-Infinity", "1e999", "{oops", "[" * 5000 + "]" * 5000, '{"a": ' * 100 + "1" + "}" * 100]

BAD_KEYS = [["flush", "xs-t0", 999999999], ["flush", "xs-t0", 17], ["flush", "xs-t0", -1], ["flush", "xs-t0", "3"],
            ["flush", "xs-t0", True], ["flush", "xs-t0", 1.5], ["actions", 0, 5], ["actions", 8192, 0],
            ["actions", "0", 1], ["targets", "x" * 300, 0], ["targets", "", 0], ["napi", "eth0", "hist", 9],
            ["napi", "eth0", "hist"], ["devmap", "xs-t0"], ["devmap", "xs-t0", "sent", 1], ["cpumap", "bulk", 9],
            ["run", 1], ["driver", 5], ["exceptions", ["ABORTED"]], ["flush", "xs-t0", 2**40],
            [], [5, 1], ["flush", None, 3], ["redirect_errors", "xs-t0", {"ENXIO": 1}]]
KEY_JSON = ["{oops", '"flush"', "NaN", "[" * 3000 + "]" * 3000]

V1_BAD = [{"actions": [[1, "x", 0, 0, 0]]}, {"actions": [[1, float("inf"), 0, 0, 0]]},
          {"actions": [[1, 1e308, 0, 0, 0]]}, {"actions": [[1, True, 0, 0, 0]]},
          {"actions": [[10**30, 0, 0, 0, 0]]}, {"actions": 5}, {"actions": "abc"},
          {"flush": {"xs-t0": [0] * 1000 + [1]}}, {"targets": {"xs-t0": {"0": 1}}},
          {"napi": {"eth0": {"hist": [[1]]}}}, {"run": {"cnt": -(2**64)}}, {"devmap": {"xs-t0": [1, 2]}},
          {"exceptions": {"ABORTED": None}}]
V1_TEXT = ["NaN", "[1, 2]", '"text"', "{oops", '{"actions": [[NaN, 0, 0, 0, 0]]}',
           '{"actions": [[Infinity, 0, 0, 0, 0]]}', '{"actions": [[1e400, 0, 0, 0, 0]]}',
           '{"actions": ' + "[" * 5000 + "]" * 5000 + "}"]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst


def corpus(tmp: Path, sources: dict[str, Path]) -> list[Case]:
    """The mutated traces, made with one seeded generator (the same corpus on every run)."""
    rng = random.Random(SEED)
    cases: list[Case] = []
    n = 0

    def new(src: str, what: str) -> Path:
        nonlocal n
        n += 1
        return _copy(sources[src], tmp / f"m{n:03d}-{src}.xst")

    def add(src: str, name: str, path: Path, expect: str) -> None:
        cases.append(Case(f"{src}: {name}", path, expect, src))

    v2 = ["lab", "virtio", "small2"]   # format_version 2: zlib records (the bundled traces, one written)
    v3 = ["small3"]                    # format_version 3: colsets, bitmaps, varints
    for src in sources:
        for key, bad in META_BAD.items():  # a wrong type for a known meta key
            value = rng.choice(bad)
            p = new(src, "meta")
            _sql(p, ("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value)))
            add(src, f"meta {key} = {value[:40]}", p, ERROR)
        for value in BAD_JSON:  # unreadable JSON in any meta value
            key = rng.choice(_meta_keys(sources[src]))
            p = new(src, "meta-json")
            _sql(p, ("UPDATE meta SET value = ? WHERE key = ?", (value, key)))
            add(src, f"meta {key} JSON {value[:20]}", p, ERROR)
        for raw, why in ((b"\xff\xfe\x00garbage", "blob"), (b'"\xff\xfe"', "blob JSON")):
            p = new(src, "meta-blob")
            _sql(p, ("UPDATE meta SET value = ? WHERE key = 'iface'", (raw,)))
            add(src, f"meta iface as {why}", p, ERROR)
        p = new(src, "meta-targets")  # the case: 100,000 targets in the meta
        _sql(p, ("INSERT OR REPLACE INTO meta VALUES ('targets', ?)", (json.dumps([f"t{i}" for i in range(100_000)]),)))
        add(src, "meta with 100,000 targets", p, ERROR)
        p = new(src, "meta-utf8")  # text that is not UTF-8: SQLite stores it, Python cannot decode it
        _sql(p, "UPDATE meta SET value = CAST(X'22FFFE22' AS TEXT) WHERE key = 'iface'")
        add(src, "meta iface not UTF-8", p, ERROR)
        for i in range(3):  # what a newer xdpscope may add: kept, ignored
            p = new(src, "meta-new")
            value = json.dumps({"n": rng.randint(0, 10**6), "list": [rng.random() for _ in range(5)], "s": "é"})
            _sql(p, ("INSERT INTO meta VALUES (?, ?)", (f"future_{i}", value)))
            add(src, f"unknown meta key future_{i}", p, KEEP)
        for key in ("ended", "samples", "host", "probes"):  # optional keys missing: as a crashed recorder leaves
            p = new(src, "meta-missing")
            _sql(p, ("DELETE FROM meta WHERE key = ?", (key,)))
            add(src, f"meta {key} missing", p, KEEP)
        for key in ("driver", "targets", "hz"):  # null: not recorded
            p = new(src, "meta-null")
            _sql(p, ("INSERT OR REPLACE INTO meta VALUES (?, 'null')", (key,)))
            add(src, f"meta {key} null", p, KEEP)
        for value in ("0", "4", '"2"', "true", "null"):   # 4: newer than this xdpscope reads
            p = new(src, "meta-version")
            _sql(p, ("UPDATE meta SET value = ? WHERE key = 'format_version'", (value,)))
            add(src, f"format_version {value}", p, ERROR)

        # the time columns
        for sql, why in (("UPDATE samples SET t = 'abc' WHERE seq = {s}", "t text"),
                         ("UPDATE samples SET t = 9e999 WHERE seq = {s}", "t inf"),
                         ("UPDATE samples SET t = -9e999 WHERE seq = {s}", "t -inf"),
                         ("UPDATE samples SET t = 1e300 WHERE seq = {s}", "t 1e300"),
                         ("UPDATE samples SET t = X'00' WHERE seq = {s}", "t blob"),
                         ("UPDATE samples SET dt = -0.1 WHERE seq = {s}", "dt negative"),
                         ("UPDATE samples SET dt = 9e999 WHERE seq = {s}", "dt inf"),
                         ("UPDATE samples SET dt = 1e-300 WHERE seq = {s}", "dt 1e-300"),
                         ("UPDATE samples SET dt = 'x' WHERE seq = {s}", "dt text")):
            seq = rng.choice(_seqs(sources[src]))
            p = new(src, "time")
            _sql(p, sql.format(s=seq))
            add(src, f"{why} at seq {seq}", p, ERROR)

        # tables and rows
        if src not in v3:   # version 3 has no index on t
            p = new(src, "no-index")
            _sql(p, "DROP INDEX samples_t")
            add(src, "no index on t", p, KEEP)
        p = new(src, "renumbered")
        _sql(p, "UPDATE samples SET seq = -seq", "UPDATE samples SET seq = 1000000 - seq")  # reversed write order
        add(src, "rows renumbered in reverse", p, KEEP)
        p = new(src, "shuffled")
        db = _db(p)
        cols = [c for _, c, *_ in db.execute("PRAGMA table_info(samples)") if c != "seq"]
        rows = db.execute(f"SELECT {', '.join(cols)} FROM samples").fetchall()
        rng.shuffle(rows)
        db.execute("DELETE FROM samples")
        db.executemany(f"INSERT INTO samples ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
        db.close()
        add(src, "rows written out of time order", p, KEEP)
        for page_size in (512, 65536):
            p = new(src, "vacuum")
            _sql(p, f"PRAGMA page_size = {page_size}", "VACUUM")
            add(src, f"VACUUM, page size {page_size}", p, KEEP)
        for table in ("meta", "samples") + (("columns",) if src in v2 + v3 else ()) + (("colsets",) if src in v3 else ()):
            p = new(src, "drop")
            _sql(p, f"DROP TABLE {table}")
            add(src, f"no {table} table", p, ERROR)
        p = new(src, "empty")
        _sql(p, "DELETE FROM samples")
        add(src, "no samples", p, EITHER)

        # SQLite pages of one b-tree overwritten: the index may still list rows the table lost
        for name in ("samples", "samples_t", "meta") + (("columns",) if src in v2 + v3 else ()) + \
                (("colsets",) if src in v3 else ()):
            pages = _pages(sources[src], name)
            if not pages:
                continue
            p = new(src, "page")
            page_size = _db(p).execute("PRAGMA page_size").fetchone()[0]
            data = bytearray(p.read_bytes())
            for page in rng.sample(pages, min(2, len(pages))):
                at = (page - 1) * page_size
                data[at:at + page_size] = rng.randbytes(page_size)
            p.write_bytes(bytes(data))
            add(src, f"{name} pages overwritten", p, EITHER)

        # bytes: flips, zeros, truncation, junk appended
        size = sources[src].stat().st_size
        for i in range(8):
            p = new(src, "flip")
            data = bytearray(p.read_bytes())
            for _ in range(rng.randint(1, 16)):
                data[rng.randrange(100 if i else 0, size)] ^= 1 << rng.randrange(8)
            p.write_bytes(bytes(data))
            add(src, f"flipped bits #{i}", p, EITHER)
        for i in range(4):
            p = new(src, "cut")
            p.write_bytes(p.read_bytes()[:rng.randrange(1, size)])
            add(src, f"truncated #{i}", p, EITHER)
        p = new(src, "junk")
        with open(p, "ab") as f:
            f.write(rng.randbytes(5000))
        add(src, "junk after the last page", p, EITHER)

    for src in v2:  # format_version 2: columns and blobs
        ids = _column_ids(sources[src])
        for key in BAD_KEYS:
            p = new(src, "column")
            col = rng.choice(ids)
            _sql(p, ("UPDATE columns SET key = ? WHERE id = ?", (json.dumps(key), col)))
            add(src, f"column {col} key {json.dumps(key)[:40]}", p, ERROR)
        for text in KEY_JSON:
            p = new(src, "column-json")
            _sql(p, ("UPDATE columns SET key = ? WHERE id = ?", (text, rng.choice(ids))))
            add(src, f"column key JSON {text[:20]}", p, ERROR)
        p = new(src, "column-blob")
        _sql(p, ("UPDATE columns SET key = ? WHERE id = ?", (b'["flush", "\xff", 1]', rng.choice(ids))))
        add(src, "column key as a blob", p, ERROR)
        for new_id, why in ((-5, "negative id"), (2**40, "id beyond u32")):
            p = new(src, "column-id")
            _sql(p, ("UPDATE columns SET id = ? WHERE id = ?", (new_id, rng.choice(ids))))
            add(src, why, p, ERROR)
        p = new(src, "column-dup")  # two columns with one key: the UNIQUE index rebuilt without it
        _sql(p, "CREATE TABLE c2 (id INTEGER PRIMARY KEY, key TEXT NOT NULL)", "INSERT INTO c2 SELECT * FROM columns",
             "DROP TABLE columns", "ALTER TABLE c2 RENAME TO columns",
             ("UPDATE columns SET key = (SELECT key FROM columns WHERE id = ?) WHERE id = ?", (ids[0], ids[1])))
        add(src, "two columns with one key", p, ERROR)
        for key in (["future", "x", 1], ["napi", "eth0", "repoll"], ["cpumap", "bulk_v2", 1], ["targets", "new", 0]):
            p = new(src, "column-new")  # an unused column, or one a newer xdpscope writes: no totals change
            _sql(p, ("INSERT INTO columns (id, key) VALUES (?, ?)", (max(ids) + 7, json.dumps(key))))
            add(src, f"unused column {key}", p, KEEP)
        p = new(src, "column-10k")  # many columns, each one name: within bounds, the data unchanged
        _many(p, "INSERT INTO columns (id, key) VALUES (?, ?)",
              [(max(ids) + 1 + i, json.dumps(["future", f"c{i}"])) for i in range(10_000)])
        add(src, "10,000 extra columns", p, KEEP)
        p = new(src, "column-names")  # one name per column beyond any real trace (100,000 targets)
        _many(p, "INSERT INTO columns (id, key) VALUES (?, ?)",
              [(max(ids) + 1 + i, json.dumps(["targets", f"t{i}", 0])) for i in range(100_000)])
        add(src, "100,000 target names in the columns", p, ERROR)

        seqs = _seqs(sources[src])
        bomb = zlib.compress(b"\0" * 50_000_000, 9)  # 50 MB of records from ~50 kB
        blobs = [(rng.randbytes(64), "random bytes"), (bomb, "zlib bomb"), (records((999999, 1)), "unknown column"),
                 (records((ids[0], 1), (ids[0], 2)), "a column twice"), (records((ids[0], 1))[:-4], "truncated zlib"),
                 ("text", "text"), (b"", "empty"), (zlib.compress(b"\0" * 13), "13 bytes"),
                 (records((2**32 - 1, 5)), "column id 2^32-1"),
                 (zlib.compress(np.array([(ids[0], 1)] * 100_000, RECORD).tobytes()), "100,000 records")]
        for blob, why in blobs:
            p = new(src, "blob")
            seq = rng.choice(seqs)
            _sql(p, ("UPDATE samples SET data = ? WHERE seq = ?", (blob, seq)))
            add(src, f"row {seq}: {why}", p, ERROR)
        p = new(src, "overflow")  # every row says 2^62 for one column: the sum is beyond int64
        col = rng.choice(ids)
        _sql(p, ("UPDATE samples SET data = ?", (records((col, 2**62)),)))
        add(src, f"column {col} sums beyond int64", p, ERROR)

    for src in v3:  # format_version 3: colsets and compact rows
        seqs = _seqs(sources[src])
        db = _db(sources[src])
        colsets = {i: np.frombuffer(c, "<u4") for i, c in db.execute("SELECT id, cols FROM colsets")}
        ids = _column_ids(sources[src])
        db.close()
        for key in BAD_KEYS[:8]:
            p = new(src, "column")
            col = rng.choice(ids)
            _sql(p, ("UPDATE columns SET key = ? WHERE id = ?", (json.dumps(key), col)))
            add(src, f"column {col} key {json.dumps(key)[:40]}", p, ERROR)
        cid = rng.choice(sorted(colsets))
        for cols, why in ((b"\x01\x00\x00", "not u32s"), ("text", "text"), (b"", "no columns"),
                          (np.array([ids[0], ids[0]], "<u4").tobytes(), "a column twice"),
                          (np.array([999999], "<u4").tobytes(), "an unknown column"),
                          (np.array(ids * 2, "<u4").tobytes(), "more columns than the trace")):
            p = new(src, "colset")
            _sql(p, ("UPDATE colsets SET cols = ? WHERE id = ?", (cols, cid)))
            add(src, f"colset {cid}: {why}", p, EITHER if why == "no columns" else ERROR)
        p = new(src, "colset-new")   # a colset no row uses: nothing changes
        _sql(p, ("INSERT INTO colsets (id, cols) VALUES (?, ?)", (max(colsets) + 5, np.array(ids[:3], "<u4").tobytes())))
        add(src, "an unused colset", p, KEEP)
        m = len(colsets[cid])
        rows = [(b"", "empty"), (rng.randbytes(64), "random bytes"), ("text", "text"),
                (encode_compact([1] * m) + b"\x02", "a value too many"), (encode_compact([1] * m)[:-1], "a value short"),
                (encode_compact([0] * (m - 1) + [1])[:-1] + b"\x80", "a varint cut"),
                (encode_compact([1] + [0] * (m - 1))[:-1] + b"\xff" * 10 + b"\x01", "a varint of 71 bits"),
                (encode_compact([1] + [0] * (m - 1))[:-1] + b"\x00", "a zero stored"),
                (b"\xff" * 8 + encode_compact([1] * m), "bits past the columns")]
        for data, why in rows:
            p = new(src, "row")
            seq = rng.choice(seqs)
            _sql(p, ("UPDATE samples SET data = ?, colset = ? WHERE seq = ?", (data, cid, seq)))
            add(src, f"row {seq}: {why}", p, ERROR)
        for colset, why in ((987, "unknown colset"), ("x", "colset text"), (None, "colset null")):
            p = new(src, "row-colset")
            seq = rng.choice(seqs)
            try:
                _sql(p, ("UPDATE samples SET colset = ? WHERE seq = ?", (colset, seq)))
            except sqlite3.IntegrityError:   # NOT NULL holds
                continue
            add(src, f"row {seq}: {why}", p, ERROR)
        p = new(src, "overflow")  # every row says 2^62 for the first column of its colset: beyond int64
        _sql(p, ("UPDATE samples SET data = ?, colset = ?", (encode_compact([2**62] + [0] * (m - 1)), cid)))
        add(src, "a column sums beyond int64", p, ERROR)

    seqs = _seqs(sources["small1"])  # format_version 1: JSON rows
    for row in V1_BAD:
        p = new("small1", "v1")
        _sql(p, ("UPDATE samples SET data = ? WHERE seq = ?", (json.dumps(row), rng.choice(seqs))))
        add("small1", f"v1 row {json.dumps(row)[:40]}", p, ERROR)
    for text in V1_TEXT:
        p = new("small1", "v1-text")
        _sql(p, ("UPDATE samples SET data = ? WHERE seq = ?", (text, rng.choice(seqs))))
        add("small1", f"v1 row {text[:30]}", p, ERROR)
    for raw in (b"\xff\xfe{}", '{"actions": "\udcff"}'.encode("utf-8", "surrogatepass")):
        p = new("small1", "v1-blob")
        _sql(p, ("UPDATE samples SET data = ? WHERE seq = ?", (raw, rng.choice(seqs))))
        add("small1", f"v1 row blob {raw[:12]!r}", p, ERROR)
    p = new("small1", "v1-names")  # 300 targets, a few per row: more names than any real trace
    db = _db(p)
    for seq, data in db.execute("SELECT seq, data FROM samples").fetchall():
        d = json.loads(data)
        d["targets"] = {f"t{seq * 10 + k}": [1] for k in range(10)}
        db.execute("UPDATE samples SET data = ? WHERE seq = ?", (json.dumps(d), seq))
    db.close()
    add("small1", "v1 rows naming 400 targets", p, ERROR)
    p = new("small1", "v1-utf8")
    _sql(p, f"UPDATE samples SET data = CAST(X'7B22FF227D' AS TEXT) WHERE seq = {rng.choice(seqs)}")
    add("small1", "v1 row text not UTF-8", p, ERROR)
    p = new("small1", "v1-future")  # fields and members of a newer xdpscope are ignored
    db = _db(p)
    for seq, data in db.execute("SELECT seq, data FROM samples").fetchall():
        d = json.loads(data)
        d["future"] = {"a": [1, 2, {"b": 3}]}
        d.setdefault("napi", {}).setdefault("xs-in", {})["repoll"] = 7
        db.execute("UPDATE samples SET data = ? WHERE seq = ?", (json.dumps(d), seq))
    db.close()
    add("small1", "v1 rows with fields of a newer xdpscope", p, KEEP)
    return cases


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    sources = {"lab": ROOT / "resources" / "sample.xst", "virtio": ROOT / "resources" / "virtio-sample.xst",
               "small2": tmp / "small2.xst", "small1": tmp / "small1.xst", "small3": tmp / "small3.xst"}
    write_trace(sources["small3"], 60, targets=3)   # the current format_version (3)
    with TraceWriter(sources["small2"], {"program": "redirect", "iface": "xs-in", "targets": ["xs-t0", "xs-t1"],
                                         "hz": 10}, format_version=2) as w:
        for i in range(1, 61):
            w.write(synthetic(i, targets=3))
    samples = [Sample(t=0.125 * (i + 1), dt=0.125, verdicts=[[0, 1, 2, 0, 3 * i], [i, 0, 0, 1, 0]],
                      targets={"xs-t0": [2 * i, i]}, flush={"xs-t0": [0] * 16 + [i]},
                      napi={"xs-in": {"polls": 2, "work": i, "budget": 128, "full": 0}},
                      napi_hist={"xs-in": [0, i] + [0] * 7})
               for i in range(40)]
    write_v1(sources["small1"], samples, {"iface": "xs-in", "program": "redirect", "targets": ["xs-t0"], "hz": 8})
    base = {src: summary_in_process(path)[2] for src, path in sources.items()}
    assert all(s is not None and s["samples"] for s in base.values())
    cases = corpus(tmp, sources)
    return cases, base


def summary_in_process(path: Path) -> tuple[int, str, dict | None]:
    """`xdpscope summary PATH --json` through main.main: (exit code, stderr, summary or None)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["summary", str(path), "--json"])
    return rc, err.getvalue(), (json.loads(out.getvalue()) if rc == 0 else None)


def totals(s: dict) -> dict:
    out = {k: s[k] for k in TOTALS}
    out["redirect_targets"] = {k: v for k, v in s["redirect_targets"].items() if v}
    return out


def well_formed(s: dict) -> None:
    """A summary a reader can trust the shape of: strict JSON (no NaN/inf), counts within int64."""
    json.dumps(s, allow_nan=False)
    stack = [s]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, int):
            assert INT64[0] <= x <= INT64[1], x


def check(case: Case, rc: int, err: str, s: dict | None, base: dict) -> str | None:
    """None if the outcome is one the case allows, else what went wrong."""
    if rc != 0:
        if not err.startswith("xdpscope: ") or err.count("\n") != 1 or "Traceback" in err:
            return f"not a one-line error: rc={rc} {err[:300]!r}"
        return "unexpected error: " + err.strip() if case.expect == KEEP else None
    if err:
        return f"exit 0 with stderr {err[:200]!r}"
    if case.expect == ERROR:
        return "accepted an invalid trace"
    try:
        well_formed(s)
    except (AssertionError, ValueError) as e:
        return f"malformed summary: {e}"
    if case.expect == KEEP and totals(s) != totals(base[case.source]):
        return "totals differ from the unmutated trace"
    return None


def test_fuzzed_traces_give_clean_errors_or_correct_totals(fuzz):
    cases, base = fuzz
    assert len(cases) >= 300
    assert {c.expect for c in cases} == {KEEP, ERROR, EITHER}
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    vsz = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    failures, outcomes, peaks = [], {"ok": 0, "error": 0}, []
    resource.setrlimit(resource.RLIMIT_AS, (vsz + ADDRESS_SPACE, hard))  # a memory bomb fails, not the machine
    tracemalloc.start()
    try:
        for case in cases:
            tracemalloc.reset_peak()
            try:
                rc, err, s = summary_in_process(case.path)
            except BaseException as e:  # a traceback: the bug this test is for
                failures.append(f"{case.name}: {type(e).__name__}: {e}"[:400])
                continue
            peaks.append((tracemalloc.get_traced_memory()[1], case.name))
            outcomes["ok" if rc == 0 else "error"] += 1
            why = check(case, rc, err, s, base)
            if why:
                failures.append(f"{case.name}: {why}")
    finally:
        tracemalloc.stop()
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert not failures, f"{len(failures)} of {len(cases)} mutations:\n" + "\n".join(failures)
    peak, name = max(peaks)
    assert peak < PEAK_BYTES, f"{name}: one summary allocated {peak / 2**20:.0f} MB at its peak"
    assert outcomes["ok"] >= 50 and outcomes["error"] >= 150, outcomes  # both paths really exercised


# Runs main.py as `python main.py ARGS` does, then writes the process's peak RSS (VmHWM: the kernel's
# high-water mark of this program's own memory, which fork+exec starts afresh; getrusage's ru_maxrss
# would carry the size of the forking test process) to the file named by argv[1].
_HWM = """
import runpy, sys
hwm, sys.argv = sys.argv[1], sys.argv[2:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    kb = [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    open(hwm, "w").write(kb)
"""


def _run_cli(args: list[str], tmp: Path, timeout: float = 120) -> tuple[int, str, str, int]:
    """`python main.py ARGS` in a child process under an address-space limit:
    (exit code, stdout, stderr, peak RSS in kB)."""
    hwm = tmp / "hwm"
    p = subprocess.run([sys.executable, "-c", _HWM, str(hwm), str(ROOT / "main.py"), *args], capture_output=True,
                       text=True, timeout=timeout,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE)))
    return p.returncode, p.stdout, p.stderr, int(hwm.read_text())


def test_fuzzed_traces_through_the_real_cli(fuzz, tmp_path):
    """The memory bombs and a sample of the rest through `xdpscope summary` as a process: the same
    outcomes, and each process's peak RSS (as the kernel counts it) bounded."""
    cases, base = fuzz
    rng = random.Random(SEED)
    bombs = [c for c in cases if any(w in c.name for w in ("zlib bomb", "999999999", "100,000", "10,000"))]
    assert len(bombs) >= 9
    pick = bombs + rng.sample([c for c in cases if c.expect == KEEP], 3) \
        + rng.sample([c for c in cases if c.expect != KEEP], 6)
    failures = []
    for case in pick:
        rc, out, err, rss_kb = _run_cli(["summary", str(case.path), "--json"], tmp_path)
        why = check(case, rc, err, json.loads(out) if rc == 0 else None, base)
        if why:
            failures.append(f"{case.name}: {why}")
        elif rss_kb > CHILD_RSS_KB:
            failures.append(f"{case.name}: peak RSS {rss_kb / 1024:.0f} MB")
    assert not failures, "\n".join(failures)


def test_replay_opens_fuzzed_traces_or_says_why(fuzz, qapp):
    """The GUI's replay source on the same corpus: it opens (reading meta, duration() and the first
    window) and seeks to the end, or fails the open with one XdpscopeError line; never anything else."""
    from backend.errors import XdpscopeError
    from gui.sources.replay import ReplaySource
    cases, _ = fuzz
    failures, opened = [], 0
    for case in cases:
        try:
            src = ReplaySource(case.path, window=30.0)
        except XdpscopeError as e:
            if "\n" in str(e) or case.expect == KEEP:
                failures.append(f"{case.name}: {e}")
            continue
        except BaseException as e:
            failures.append(f"{case.name}: {type(e).__name__}: {e}"[:400])
            continue
        try:
            opened += 1
            statuses: list[str] = []
            src.sig_status.connect(statuses.append)
            src.to_end()  # a damaged row further on is said on sig_status, never raised
            if case.expect == KEEP and (statuses or len(src.times) != base_len(case)):
                failures.append(f"{case.name}: replay of a valid trace: {statuses}")
        except BaseException as e:
            failures.append(f"{case.name}: seek: {type(e).__name__}: {e}"[:400])
        finally:
            src.close()
    assert not failures, "\n".join(failures)
    assert opened >= 50


def base_len(case: Case) -> int:
    db = _db(case.path)
    try:
        return db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    finally:
        db.close()


def test_replay_of_a_trace_whose_first_row_is_lost(qapp, tmp_path):
    """The t index still lists every row, but the table page holding the first one is garbage: the
    replay's open (its duration() reads that row) fails in one line and closes the file; the main
    window says so and keeps what it showed."""
    from PySide6.QtCore import QSettings

    from backend.errors import XdpscopeError
    from gui.main_window import MainWindow
    from gui.sources.replay import ReplaySource
    path = tmp_path / "lost.xst"
    write_trace(path, 3000)
    db = _db(path)
    (page,), page_size = db.execute("SELECT pageno FROM dbstat WHERE name = 'samples' AND pagetype = 'leaf' "
                                    "ORDER BY path LIMIT 1").fetchone(), db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    data[(page - 1) * page_size:page * page_size] = random.Random(SEED).randbytes(page_size)
    path.write_bytes(bytes(data))
    with pytest.raises(XdpscopeError) as e:
        ReplaySource(path)
    assert "corrupt or unreadable trace" in str(e.value) and "\n" not in str(e.value)
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    try:
        assert not w.open_trace(path)
        assert "corrupt or unreadable trace" in w.last_error and w.source is None
    finally:
        w.close()


def test_reports_of_fuzzed_traces(fuzz, qapp, tmp_path):
    """Every third mutation through the report (summary, the app's model and panels, HTML): a report,
    or one XdpscopeError line and no file; a valid trace always gets its report."""
    from backend.errors import XdpscopeError
    from gui.report import write_report
    cases, _ = fuzz
    failures, written = [], 0
    for i, case in enumerate(cases[::3]):
        out = tmp_path / f"r{i}.html"
        try:
            write_report(case.path, out, size=(300, 150))
            written += 1
            if case.expect == ERROR:
                failures.append(f"{case.name}: report of an invalid trace")
        except XdpscopeError as e:
            if "\n" in str(e) or case.expect == KEEP or out.exists():
                failures.append(f"{case.name}: {e}")
        except BaseException as e:
            failures.append(f"{case.name}: {type(e).__name__}: {e}"[:400])
    assert not failures, "\n".join(failures)
    assert written >= 15
