"""Trace file: round trip, crash safety (real SIGKILL), and one-line errors for every bad input."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.errors import XdpscopeError
from backend.sample import Sample
from backend.trace import FORMAT_VERSION, TraceReader, TraceWriter

ROOT = Path(__file__).resolve().parents[1]
META = {"iface": "xs-in", "program": "redirect", "targets": ["xs-t0", "xs-t1"], "hz": 10,
        "probes": {"xdp:xdp_devmap_xmit": True, "napi:napi_poll": False}}


def sample(i: int) -> Sample:
    return Sample(t=0.1 * (i + 1), dt=0.1, actions=[[0, 1, 0, 0, 16 * i], [0, 0, 2, 0, 0]],
                  targets={"xs-t0": [8 * i, 0], "xs-t1": [8 * i, 0]},
                  flush={"xs-t0": [0] * 8 + [i] + [0] * 8},
                  exceptions={"ABORTED": i % 2} if i % 2 else {})


def write_trace(path: Path, n: int = 20, meta: dict | None = None) -> list[Sample]:
    samples = [sample(i) for i in range(n)]
    with TraceWriter(path, META if meta is None else meta) as w:
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


def test_row_layout(tmp_path: Path) -> None:
    path = tmp_path / "a.xst"
    write_trace(path, 1)
    db = sqlite3.connect(path)
    seq, t, dt, data = db.execute("SELECT seq, t, dt, data FROM samples").fetchone()
    assert (seq, t, dt) == (1, 0.1, 0.1)
    assert " " not in data and "t" not in json.loads(data) and json.loads(data)["actions"] == [[0, 1, 0, 0, 0], [0, 0, 2, 0, 0]]
    assert json.loads(db.execute("SELECT value FROM meta WHERE key='iface'").fetchone()[0]) == "xs-in"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


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
from backend.sample import Sample
from backend.trace import TraceWriter
w = TraceWriter({path!r}, {{"iface": "xs-in"}})
i = 0
while True:
    w.write(Sample(t=0.1 * (i + 1), dt=0.1, actions=[[0, 0, i, 0, 0]]))
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
        assert [s.actions[0][2] for s in r.samples()] == list(range(n))
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
def test_bad_row_json_names_the_row(tmp_path: Path, data: str) -> None:
    path = tmp_path / "row.xst"
    samples = write_trace(path, 10)
    _edit(path, "UPDATE samples SET data = ? WHERE seq = 7", data)
    with TraceReader(path) as r:  # opening stays fast: rows are decoded when read
        assert len(r) == 10
        assert list(r.samples(t_to=samples[5].t)) == samples[:6]
        for read in (lambda: list(r.samples()), lambda: r.sample_at(6)):
            with pytest.raises(XdpscopeError) as e:
                read()
            msg = str(e.value)
            assert "\n" not in msg and str(path) in msg and "seq=7" in msg, msg


def test_missing_samples_table(tmp_path: Path) -> None:
    path = tmp_path / "nosamples.xst"
    write_trace(path, 3)
    _edit(path, "DROP TABLE samples")
    assert "not an xdpscope trace" in error_of(path)


def test_copy_of_closed_trace_reads(tmp_path: Path) -> None:
    path = tmp_path / "a.xst"
    samples = write_trace(path, 5)
    copy = tmp_path / "copy.xst"
    shutil.copy(path, copy)
    os.chmod(copy, 0o444)  # bundled traces may be read-only
    with TraceReader(copy) as r:
        assert list(r.samples()) == samples
