"""Trace file: round trip, crash safety (real SIGKILL), and one-line errors for every bad input."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from backend.errors import XdpscopeError
from backend.data.sample import Sample
from backend.data.trace import FORMAT_VERSION, TraceReader, TraceWriter
from tests import trace_by_hand

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
META = {"iface": "xs-in", "program": "redirect", "targets": ["xs-t0", "xs-t1"], "hz": 10,
        "probes": {"xdp:xdp_devmap_xmit": True, "napi:napi_poll": False}}


def sample(i: int) -> Sample:
    return Sample(t=0.1 * (i + 1), dt=0.1, verdicts=[[0, 1, 0, 0, 16 * i], [0, 0, 2, 0, 0]],
                  targets={"xs-t0": [8 * i, 0], "xs-t1": [8 * i, 0]},
                  flush={"xs-t0": [0] * 8 + [i] + [0] * 8},
                  exceptions={"ABORTED": i % 2} if i % 2 else {})


def write_trace(path: Path, n: int = 20, meta: dict | None = None, version: int = FORMAT_VERSION) -> list[Sample]:
    samples = [sample(i) for i in range(n)]
    with TraceWriter(path, META if meta is None else meta, format_version=version) as w:
        for s in samples:
            w.write(s)
    return samples


def error_of(path: Path) -> str:
    with pytest.raises(XdpscopeError) as e:
        TraceReader(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.xst"
    samples = write_trace(path)
    assert not Path(f"{path}-wal").exists()  # closed trace is one self-contained file
    with TraceReader(path) as r:
        assert len(r) == 20
        assert r.meta["format_version"] == FORMAT_VERSION
        assert r.meta["samples"] == 20
        assert r.meta["ended"] >= r.meta["created"]
        assert r.meta["targets"] == META["targets"] and r.meta["probes"] == META["probes"]
        assert r.times().dtype == np.float64
        assert np.array_equal(r.times(), [s.t for s in samples])
        assert list(r.samples()) == samples
        assert r.sample_at(0) == samples[0] and r.sample_at(7) == samples[7] and r.sample_at(-1) == samples[-1]
        with pytest.raises(IndexError):
            r.sample_at(20)
        assert r.duration() == pytest.approx(2.0)
        # inclusive window on t, using the exact stored t values as bounds
        assert list(r.samples(samples[3].t, samples[5].t)) == samples[3:6]
        assert list(r.samples(t_from=samples[18].t)) == samples[18:]
        assert list(r.samples(t_to=samples[1].t)) == samples[:2]
        assert list(r.samples(100, 200)) == []


LEAVES_1 = {("actions", 0, 0): 0, ("actions", 0, 1): 1, ("actions", 0, 2): 0, ("actions", 0, 3): 0,
            ("actions", 0, 4): 0, ("actions", 1, 0): 0, ("actions", 1, 1): 0, ("actions", 1, 2): 2,
            ("actions", 1, 3): 0, ("actions", 1, 4): 0,
            ("targets", "xs-t0", 0): 0, ("targets", "xs-t0", 1): 0,
            ("targets", "xs-t1", 0): 0, ("targets", "xs-t1", 1): 0,
            **{("flush", "xs-t0", i): 0 for i in range(17)}}


def _write(path: Path, n: int, version: int) -> None:
    with TraceWriter(path, META, format_version=version) as w:
        for i in range(n):
            w.write(sample(i))


def test_row_layout_version_2(tmp_path: Path) -> None:
    """The documented layout, decoded by hand: zlib of (u32 column, i64 value) records, keys in `columns`."""
    path = tmp_path / "a.xst"
    _write(path, 2, 2)
    db = sqlite3.connect(path)
    keys = {i: tuple(json.loads(k)) for i, k in db.execute("SELECT id, key FROM columns")}
    (seq, t, dt, data), _ = db.execute("SELECT seq, t, dt, data FROM samples ORDER BY seq").fetchall()
    assert (seq, t, dt) == (1, 0.1, 0.1)
    rec = np.frombuffer(zlib.decompress(data), dtype=[("column", "<u4"), ("value", "<i8")])
    leaves = {keys[int(c)]: int(v) for c, v in rec}
    assert leaves == LEAVES_1
    assert [keys[int(c)] for c in rec["column"]] == list(leaves)  # in the Sample's order
    assert len(keys) == len(leaves) + 1  # the second sample added ("exceptions", "ABORTED")
    assert keys[len(leaves)] == ("exceptions", "ABORTED")
    assert json.loads(db.execute("SELECT value FROM meta WHERE key='iface'").fetchone()[0]) == "xs-in"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    path = tmp_path / "meta.xst"
    write_trace(path, 3)
    _edit(path, "UPDATE meta SET value = '{oops' WHERE key = 'iface'")
    assert "'iface'" in error_of(path)


def test_row_layout_version_3(tmp_path: Path) -> None:
    """The compact layout, decoded by hand in plain Python: a colset names the row's columns, the
    data holds a two-level bitmap of the nonzero ones and their zigzag varints; dt in microseconds."""
    path = tmp_path / "c.xst"
    _write(path, 2, 3)
    db = sqlite3.connect(path)
    keys = {i: tuple(json.loads(k)) for i, k in db.execute("SELECT id, key FROM columns")}
    colsets = {i: np.frombuffer(c, "<u4").tolist() for i, c in db.execute("SELECT id, cols FROM colsets")}
    (seq, t, dt, colset, data), _ = db.execute("SELECT seq, t, dt, colset, data FROM samples ORDER BY seq").fetchall()
    assert (seq, t, dt, colset) == (1, 0.1, 100_000, 0) and len(colsets) == 2
    cols = colsets[colset]
    values, at = trace_by_hand.row_values(data, len(cols))
    leaves = {keys[c]: v for c, v in zip(cols, values)}
    assert at == len(data) and leaves == LEAVES_1 and list(leaves) == list(LEAVES_1)  # in the Sample's order
    assert len(data) == 1 + 1 + 2  # 31 columns: 4 bitmap bytes of which 1 has bits; values 1 and 2
    with TraceReader(path) as r:
        assert r.version == 3 == FORMAT_VERSION and list(r.samples()) == [sample(0), sample(1)]


@pytest.mark.parametrize("values", [[0], [1], [-1], [63, -64, 64, -65], [2**63 - 1, -(2**63)], [0] * 70 + [5] + [0] * 9,
                                    [2**31, -(2**40), 7, 0, 0, 300] * 40])
def test_compact_values_round_trip(values: list[int]) -> None:
    from backend.data.trace import encode_compact
    data = encode_compact(values)
    nbytes = (len(values) + 7) // 8
    level = data[:(nbytes + 7) // 8]
    kept = sum(bin(b).count("1") for b in level)
    at = len(level) + kept
    got = []
    while at < len(data):
        v, at = trace_by_hand.varint(data, at)
        got.append(v)
    assert got == [v for v in values if v]


def write_v1(path: Path, samples: list[Sample], meta: dict = META) -> None:
    """A format_version 1 trace, by its documented schema (one JSON text per row)."""
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "CREATE TABLE samples (seq INTEGER PRIMARY KEY, t REAL NOT NULL, dt REAL NOT NULL, "
                     "data TEXT NOT NULL); CREATE INDEX samples_t ON samples (t);")
    db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in
                                                     {**meta, "format_version": 1}.items()])
    for s in samples:
        d = s.to_dict()
        t, dt = d.pop("t"), d.pop("dt")
        db.execute("INSERT INTO samples (t, dt, data) VALUES (?, ?, ?)", (t, dt, json.dumps(d)))
    db.commit()
    db.close()


def test_reads_format_version_1(tmp_path: Path) -> None:
    path = tmp_path / "v1.xst"
    samples = [sample(i) for i in range(20)]
    write_v1(path, samples)
    with TraceReader(path) as r:
        assert r.version == 1 and len(r) == 20
        assert list(r.samples()) == samples
        assert list(r.samples(samples[3].t, samples[5].t)) == samples[3:6]
        assert r.sample_at(-1) == samples[-1]
        assert list(r.block(2, 9).samples()) == samples[2:9]


def test_block_is_the_window_as_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.xst"
    samples = write_trace(path, 20)
    with TraceReader(path) as r:
        b = r.block(4, 10)
        assert np.array_equal(b.t, [s.t for s in samples[4:10]]) and list(b.samples()) == samples[4:10]
        j = b.keys.index(("actions", 0, 4))
        assert b.values[:, j].tolist() == [16 * i for i in range(4, 10)]
        j = b.keys.index(("exceptions", "ABORTED"))  # only odd samples have it
        assert b.present[:, j].tolist() == [i % 2 == 1 for i in range(4, 10)]
        assert [len(x) for x in r.blocks(size=8)] == [8, 8, 4]
        assert len(r.block(20, 30)) == 0 and r.index_range(samples[3].t, samples[5].t) == (3, 6)


def test_non_integer_counter_is_refused(tmp_path: Path) -> None:
    with TraceWriter(tmp_path / "f.xst", {}) as w:
        with pytest.raises(XdpscopeError, match=r"counter \['run', 'ns'\] is not an integer: 1.5"):
            w.write(Sample(t=0.1, dt=0.1, run={"cnt": 1, "ns": 1.5}))


def test_writer_close_idempotent_overwrite_set_meta(tmp_path: Path) -> None:
    path = tmp_path / "a.xst"
    write_trace(path, 5)
    w = TraceWriter(path, {"iface": "other"})  # overwrites
    w.write(sample(0))
    w.set_meta("note", {"x": [1, 2]})
    w.close()
    w.close()
    with pytest.raises(XdpscopeError):
        w.write(sample(1))
    with TraceReader(path) as r:
        assert len(r) == 1 and r.meta["iface"] == "other" and r.meta["note"] == {"x": [1, 2]}
        assert r.meta["samples"] == 1 and "targets" not in r.meta


def test_empty_trace(tmp_path: Path) -> None:
    path = tmp_path / "e.xst"
    TraceWriter(path, {}).close()
    with TraceReader(path) as r:
        assert len(r) == 0 and r.duration() == 0.0 and r.times().shape == (0,)
        assert list(r.samples()) == [] and r.meta["samples"] == 0


WRITER = """
import sys
sys.path.insert(0, {root!r})
from backend.data.sample import Sample
from backend.data.trace import TraceWriter
w = TraceWriter({path!r}, {{"iface": "xs-in"}})
i = 0
while True:
    w.write(Sample(t=0.1 * (i + 1), dt=0.1, verdicts=[[0, 0, i, 0, 0]]))
    i += 1
    print(i, flush=True)
"""


def test_sigkill_writer_keeps_committed_samples(tmp_path: Path) -> None:
    path = tmp_path / "killed.xst"
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), path=str(path))],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # each line: that many samples were committed
            if int(line) >= 200:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert Path(f"{path}-wal").exists()  # the writer died with its WAL beside the file
    with TraceReader(path) as r:
        assert "ended" not in r.meta and r.meta["iface"] == "xs-in"
        n = len(r)
        assert n >= 200
        assert [s.verdicts[0][2] for s in r.samples()] == list(range(n))
        assert r.sample_at(n - 1).t == pytest.approx(0.1 * n)
    # the reader did not modify the crashed file: a second reader still sees the same
    with TraceReader(path) as r:
        assert len(r) == n


def test_missing_and_directory(tmp_path: Path) -> None:
    assert "no such" in error_of(tmp_path / "nope.xst")
    assert "not a file" in error_of(tmp_path)


def test_zero_length(tmp_path: Path) -> None:
    path = tmp_path / "zero.xst"
    path.write_bytes(b"")
    assert "empty" in error_of(path)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "rand.xst"
    path.write_bytes(np.random.default_rng(1).bytes(50_000))
    assert "not an SQLite" in error_of(path)


def test_random_bytes_behind_sqlite_magic(tmp_path: Path) -> None:
    path = tmp_path / "rand.xst"
    path.write_bytes(b"SQLite format 3\0" + np.random.default_rng(2).bytes(50_000))
    error_of(path)


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9])
def test_truncated_copy(tmp_path: Path, fraction: float) -> None:
    path = tmp_path / "full.xst"
    write_trace(path, 3000)
    data = path.read_bytes()
    cut = tmp_path / "cut.xst"
    cut.write_bytes(data[: int(len(data) * fraction)])
    assert "truncated" in error_of(cut)


def test_truncated_in_the_middle_of_a_page_header(tmp_path: Path) -> None:
    path = tmp_path / "full.xst"
    write_trace(path, 10)
    cut = tmp_path / "cut.xst"
    cut.write_bytes(path.read_bytes()[:60])
    assert "truncated" in error_of(cut)


def test_other_apps_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
    db.commit()
    db.close()
    assert "not an xdpscope trace" in error_of(path)


def _edit(path: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, args)
    db.commit()
    db.close()


def test_newer_format_version(tmp_path: Path) -> None:
    path = tmp_path / "new.xst"
    write_trace(path, 3)
    _edit(path, "UPDATE meta SET value = ? WHERE key = 'format_version'", str(FORMAT_VERSION + 1))
    msg = error_of(path)
    assert "newer" in msg and str(FORMAT_VERSION + 1) in msg


@pytest.mark.parametrize("value", ['"1"', "0", "null"])
def test_unknown_format_version(tmp_path: Path, value: str) -> None:
    path = tmp_path / "odd.xst"
    write_trace(path, 3)
    _edit(path, "UPDATE meta SET value = ? WHERE key = 'format_version'", value)
    assert "format_version" in error_of(path)


def test_missing_format_version(tmp_path: Path) -> None:
    path = tmp_path / "nov.xst"
    write_trace(path, 3)
    _edit(path, "DELETE FROM meta WHERE key = 'format_version'")
    assert "format_version" in error_of(path)


def test_bad_meta_json(tmp_path: Path) -> None:
    path = tmp_path / "meta.xst"
    write_trace(path, 3)
    _edit(path, "UPDATE meta SET value = '{oops' WHERE key = 'iface'")
    assert "'iface'" in error_of(path)


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", "", '"text"'])
def test_bad_v1_row_json_names_the_row(tmp_path: Path, data: str) -> None:
    path = tmp_path / "row.xst"
    samples = [sample(i) for i in range(10)]
    write_v1(path, samples)
    _edit(path, "UPDATE samples SET data = ? WHERE seq = 7", data)
    _assert_bad_row(path, samples, "unreadable JSON")


def _assert_bad_row(path: Path, samples: list[Sample], why: str) -> None:
    with TraceReader(path) as r:  # opening stays fast: rows are decoded when read
        assert len(r) == 10
        assert list(r.samples(t_to=samples[5].t)) == samples[:6]
        for read in (lambda: list(r.samples()), lambda: r.sample_at(6), lambda: r.block(0, 10)):
            with pytest.raises(XdpscopeError) as e:
                read()
            msg = str(e.value)
            assert "\n" not in msg and str(path) in msg and "seq=7" in msg and why in msg, msg


@pytest.mark.parametrize("data, why", [
    (b"{not zlib", "unreadable data"), ("text", "unreadable data"),
    (zlib.compress(b"\0" * 13), "not a whole number of records"),
    (zlib.compress(np.array([(999, 1)], dtype=[("c", "<u4"), ("v", "<i8")]).tobytes()), "unknown column id 999"),
])
def test_bad_row_data_names_the_row_version_2(tmp_path: Path, data: object, why: str) -> None:
    path = tmp_path / "row.xst"
    samples = write_trace(path, 10, version=2)
    _edit(path, "UPDATE samples SET data = ? WHERE seq = 7", data)
    _assert_bad_row(path, samples, why)


@pytest.mark.parametrize("data, why", [   # row seq=7 has 31 columns: a 1-byte level over 4 bitmap bytes
    ("text", "not a blob"), (b"", "shorter than its 1-byte bitmap"), (b"\xff", "bits set past the row's columns"),
    (b"\x01", "shorter than its bitmap"), (b"\x01\x00", "a bitmap byte of no bits"),
    (b"\x08\x80", "bits set past the row's columns"),          # column 31 of 0..30
    (b"\x01\x01", "its values are not its bitmap's"), (b"\x01\x01\x02\x02", "its values are not its bitmap's"),
    (b"\x01\x01\x80", "a varint runs past the end of its row"), (b"\x01\x01\x00", "a zero where its bitmap says"),
    (b"\x01\x01" + b"\xff" * 9 + b"\x02", "a varint longer than 64 bits"),
])
def test_bad_row_data_names_the_row(tmp_path: Path, data: object, why: str) -> None:
    path = tmp_path / "row.xst"
    samples = write_trace(path, 10)
    _edit(path, "UPDATE samples SET data = ? WHERE seq = 7", data)
    _assert_bad_row(path, samples, why)


@pytest.mark.parametrize("sql, why", [
    ("UPDATE samples SET colset = 99 WHERE seq = 7", "sample row seq=7: unknown colset 99"),
    ("UPDATE samples SET colset = 'x' WHERE seq = 7", "sample row seq=7: unknown colset 'x'"),
])
def test_bad_colset_of_a_row(tmp_path: Path, sql: str, why: str) -> None:
    path = tmp_path / "row.xst"
    samples = write_trace(path, 10)
    _edit(path, sql)
    _assert_bad_row(path, samples, why)


@pytest.mark.parametrize("cols, why", [
    (b"\x01\x00\x00", "not a blob of u32 column ids"), ("text", "not a blob of u32 column ids"),
    (np.array([0, 1, 1], "<u4").tobytes(), "a column twice"), (np.array([0, 999], "<u4").tobytes(), "lacks"),
])
def test_bad_colset(tmp_path: Path, cols: object, why: str) -> None:
    path = tmp_path / "cs.xst"
    write_trace(path, 3)
    _edit(path, "UPDATE colsets SET cols = ? WHERE id = 0", cols)
    msg = error_of(path)
    assert "colset 0: unreadable" in msg and why in msg, msg


@pytest.mark.parametrize("key", ["{oops", "[]", "[1, 2]", '"flush"'])
def test_bad_column_key(tmp_path: Path, key: str) -> None:
    path = tmp_path / "col.xst"
    write_trace(path, 3)
    _edit(path, "UPDATE columns SET key = ? WHERE id = 3", key)
    assert "column 3: unreadable key" in error_of(path)


def test_missing_samples_table(tmp_path: Path) -> None:
    path = tmp_path / "nosamples.xst"
    write_trace(path, 3)
    _edit(path, "DROP TABLE samples")
    assert "not an xdpscope trace" in error_of(path)
    path = tmp_path / "nocolumns.xst"
    write_trace(path, 3)
    _edit(path, "DROP TABLE columns")
    assert "no columns table" in error_of(path)
    path = tmp_path / "nocolsets.xst"
    write_trace(path, 3)
    _edit(path, "DROP TABLE colsets")
    assert "no colsets table" in error_of(path)


def test_copy_of_closed_trace_reads(tmp_path: Path) -> None:
    path = tmp_path / "a.xst"
    samples = write_trace(path, 5)
    copy = tmp_path / "copy.xst"
    shutil.copy(path, copy)
    os.chmod(copy, 0o444)  # bundled traces may be read-only
    with TraceReader(copy) as r:
        assert list(r.samples()) == samples


def test_convert_script_rewrites_v1_as_current(tmp_path: Path) -> None:
    old, new = tmp_path / "v1.xst", tmp_path / "v2.xst"
    samples = [sample(i) for i in range(30)]
    write_v1(old, samples, {**META, "ended": 12.5})
    script = ROOT / "scripts" / "convert-trace.py"
    done = subprocess.run([sys.executable, str(script), str(old), str(new)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"{new}: 30 samples", done
    with TraceReader(new) as r:
        assert r.version == FORMAT_VERSION and list(r.samples()) == samples
        assert r.meta["targets"] == META["targets"] and r.meta["converted"]["from_format_version"] == 1
        assert r.meta["converted"]["ended"] == 12.5
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "nope.xst"), str(new)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no such trace file" in bad.stderr


@pytest.mark.parametrize("name", ["sample.xst", "virtio-sample.xst"])
def test_convert_script_rewrites_the_bundled_traces_losslessly(tmp_path: Path, name: str) -> None:
    """The bundled version 2 recordings, rewritten as version 3: every sample, and every number of
    their summary, the same."""
    from backend.data.summary import summarize
    src, new = ROOT / "resources" / name, tmp_path / name
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert-trace.py"), str(src), str(new)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with TraceReader(src) as a, TraceReader(new) as b:
        assert (a.version, b.version) == (2, FORMAT_VERSION)
        assert list(a.samples()) == list(b.samples()) and len(a) > 300
        assert b.meta["converted"]["from_format_version"] == 2
    before, after = summarize(src), summarize(new)
    differs = {k for k in before if before[k] != after[k]}
    assert differs == {"format_version", "meta"}, differs


def test_compact_rows_are_far_smaller(tmp_path: Path) -> None:
    """format_version 3 against 2, for the same samples (the bundled lab session): the rows and
    their index take less than a third of the bytes, and read back the same."""
    with TraceReader(ROOT / "resources" / "sample.xst") as r:
        samples, meta = list(r.samples()), dict(r.meta)
    size = {}
    for version in (2, 3):
        path = tmp_path / f"v{version}.xst"
        with TraceWriter(path, meta, format_version=version) as w:
            for s in samples:
                w.write(s)
        with TraceReader(path) as r:
            assert r.version == version and list(r.samples()) == samples
        db = sqlite3.connect(path)
        (size[version],) = db.execute("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'samples%'").fetchone()
        db.close()
    assert size[3] * 3 < size[2], size
