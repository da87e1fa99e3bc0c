"""Bad input gets one clear line on stderr and a non-zero exit, never a traceback."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.kernel

BAD_C = "int f(struct xdp_md *ctx)\n{\n    return XDP_PASS  /* no semicolon */\n}\n"


def fails(*args: str, **kw) -> str:
    p = run_cli(*args, check=False, **kw)
    assert p.returncode != 0, f"expected failure: {args}"
    assert "Traceback" not in p.stderr and p.stdout == "", p.stderr
    assert p.stderr.startswith("xdpscope: "), p.stderr
    return p.stderr


def test_unknown_interface(tmp_path):
    assert fails("record", "--iface", "nosuch0", "--program", "drop", "-o", str(tmp_path / "t")) == \
        "xdpscope: nosuch0: no such network interface\n"
    assert "no such network interface" in fails("inject", "--iface", "nosuch0", "--count", "5")
    assert not (tmp_path / "t").exists()


def test_not_root(lab, tmp_path):
    def as_nobody(*args: str) -> str:
        return fails(*args, preexec_fn=_drop_root)
    assert "needs root" in as_nobody("record", "--iface", lab.ingress, "--program", "drop", "-o", str(tmp_path / "t"))
    assert "needs root" in as_nobody("inject", "--iface", lab.ingress, "--count", "5")
    assert "needs root" in as_nobody("lab", "status")


def _drop_root() -> None:
    import os
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def test_compile_error_shows_compiler_message_with_lines(lab, tmp_path):
    prog = tmp_path / "broken.c"
    prog.write_text(BAD_C)
    err = fails("record", "--iface", lab.ingress, "--program", str(prog), "-o", str(tmp_path / "t"))
    assert err.splitlines()[0] == "xdpscope: broken.c: compile error"
    assert "broken.c:3:20: error: expected ';' after return statement" in err


@pytest.mark.parametrize("args,message", [
    (["--program", "drop", "--hz", "0"], "--hz must be between 1 and 100"),
    (["--program", "drop", "--hz", "500"], "--hz must be between 1 and 100"),
    (["--program", "mix", "--mix", "PASS=50"], "summing to 100"),
    (["--program", "mix", "--mix", "PASS"], "is not VERDICT=PERCENT"),
    (["--program", "redirect"], "needs --targets"),
    (["--program", "redirect", "--targets", "nosuch9"], "nosuch9: no such network interface"),
    (["--program", "nosuch"], "unknown program 'nosuch'"),
    (["--program", "/nonexistent/p.c"], "cannot read program"),
    (["--program", "cpumap", "--targets", "1"], "CPU ids 0..n-1"),
])
def test_bad_record_parameters(lab, tmp_path, args, message):
    assert message in fails("record", "--iface", lab.ingress, *args, "-o", str(tmp_path / "t"))


@pytest.mark.parametrize("args,message", [
    (["--count", "0"], "--count must be between"),
    (["--count", "10", "--batch", "1000"], "--batch must be between 1 and 256"),
    (["--count", "10", "--size", "20"], "--size must be between"),
    (["--count", "10", "--flows", "11"], "--flows must be between"),
])
def test_bad_inject_parameters(lab, args, message):
    assert message in fails("inject", "--iface", lab.ingress, *args)


def test_inject_without_program(lab):
    assert "no XDP program attached" in fails("inject", "--iface", lab.ingress, "--count", "5")


def test_attach_refused_by_driver_with_its_reason(lab, tmp_path):
    err = fails("record", "--iface", lab.bigmtu, "--program", "drop", "--mode", "native", "-o", str(tmp_path / "t"))
    assert "native XDP attach refused: ERANGE" in err and "driver says: veth: Peer MTU is too large to set XDP" in err
    assert len(err.splitlines()) == 1


def test_existing_trace_is_not_overwritten(lab, tmp_path):
    out = tmp_path / "keep.xst"
    out.write_text("precious")
    assert "exists" in fails("record", "--iface", lab.ingress, "--program", "drop", "-o", str(out))
    assert out.read_text() == "precious"


def test_corrupt_and_truncated_traces(record, lab, tmp_path):
    garbage = tmp_path / "garbage.xst"
    garbage.write_bytes(b"\x00\x01not sqlite" * 100)
    assert "not an xdpscope trace" in fails("summary", str(garbage), "--json")
    assert "no such trace file" in fails("summary", str(tmp_path / "missing.xst"), "--json")
    rec = record("--iface", lab.ingress, "--program", "drop", "--hz", "50")
    import time
    time.sleep(1)
    assert rec.stop() == 0
    truncated = tmp_path / "truncated.xst"
    data = rec.out.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    assert "truncated" in fails("summary", str(truncated), "--json")
    other = tmp_path / "other.sqlite"
    shutil.copy(rec.out, other)
    import sqlite3
    with sqlite3.connect(other) as db:
        db.execute("DROP TABLE samples")
    assert "not an xdpscope trace" in fails("summary", str(other), "--json")


def test_unreadable_sample_row(tmp_path):
    """A trace with a damaged row: summary and report name the row, in one line."""
    import sqlite3

    from gui.testing import write_trace
    path = tmp_path / "damaged.xst"
    write_trace(path, 20)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE samples SET data = ? WHERE seq = 5", (b"not zlib",))
    assert "sample row seq=5: unreadable data" in fails("summary", str(path), "--json")
    assert "sample row seq=5: unreadable data" in fails("report", str(path), "-o", str(tmp_path / "r.html"))
    assert not (tmp_path / "r.html").exists()


# -- issue 9: hostile or unlucky input, the data side ----------------------------------------------

def usage_error(*args: str) -> str:
    """A usage error: one line, exit 2 (as argparse exits), nothing attached or written."""
    p = run_cli(*args, check=False)
    assert p.returncode == 2 and p.stdout == "", (p.returncode, p.stderr)
    assert p.stderr.startswith("xdpscope: ") and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    return p.stderr


@pytest.mark.parametrize("value", ["-5", "nan", "inf", "1e12", "0", "soon"])
def test_bad_duration(lab, tmp_path, value):
    err = usage_error("record", "--iface", lab.ingress, "--program", "drop", "--duration", value,
                      "-o", str(tmp_path / "t.xst"))
    assert "--duration" in err and ("between 0.001 and 2592000" in err or "not a number" in err), err
    assert not (tmp_path / "t.xst").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_bad_hz(lab, tmp_path, value):
    assert "--hz must be between 1 and 100" in fails("record", "--iface", lab.ingress, "--program", "drop",
                                                     f"--hz={value}", "-o", str(tmp_path / "t.xst"))


@pytest.mark.parametrize("value", ["-1", "99999999999", "-99999999999999999999"])
def test_bad_count(lab, value):
    assert "--count must be between 1 and 2147483647" in fails("inject", "--iface", lab.ingress, "--count", value)


@pytest.mark.parametrize("option,value", [("--from", "nan"), ("--to", "nan"), ("--from", "inf"), ("--to", "-1")])
def test_bad_summary_window(option, value):
    assert option in usage_error("summary", str(ROOT / "resources" / "sample.xst"), f"{option}={value}")


def test_output_is_a_directory(lab, tmp_path):
    out = tmp_path / "dir.xst"
    out.mkdir()
    assert "exists" in fails("record", "--iface", lab.ingress, "--program", "drop", "-o", str(out))
    assert "is a directory" in fails("record", "--iface", lab.ingress, "--program", "drop", "-o", str(out),
                                     "--overwrite")
    html = tmp_path / "r.html"
    html.mkdir()
    assert "r.html: is a directory" in fails("report", str(ROOT / "resources" / "sample.xst"), "-o", str(html))
    assert out.is_dir() and not list(out.iterdir()) and html.is_dir() and not list(html.iterdir())


def test_binary_c_file(lab, tmp_path):
    prog = tmp_path / "prog.c"
    prog.write_bytes(Path(sys.executable).read_bytes()[:4096])  # an ELF file named .c
    err = fails("record", "--iface", lab.ingress, "--program", str(prog), "-o", str(tmp_path / "t.xst"))
    assert err.startswith(f"xdpscope: {prog}: not a C source file") and err.count("\n") == 1, err


def test_unreadable_trace_to_summary(tmp_path):
    secret = tmp_path / "secret.xst"
    shutil.copy(ROOT / "resources" / "sample.xst", secret)
    secret.chmod(0o600)
    tmp_path.chmod(0o755)
    err = fails("summary", str(secret), preexec_fn=_drop_root)
    assert f"{secret}: cannot read trace: Permission denied" in err, err
    assert "not a file" in fails("summary", str(tmp_path))
    fifo = tmp_path / "fifo.xst"
    os.mkfifo(fifo)
    assert "not a file" in fails("summary", str(fifo))  # never opened: it would block


def _trace(tmp_path: Path, name: str = "t.xst") -> Path:
    from gui.testing import write_trace
    path = tmp_path / name
    write_trace(path, 20)
    return path


@pytest.mark.parametrize("key,message", [
    (["flush", "xs-t0", 999999999], "999999999 is not an index 0..16"),
    (["flush", "xs-t0", "3"], "'3' is not an index 0..16"),
    (["actions", 0, 7], "7 is not an index 0..4"),
    (["napi", "eth0", "hist", 9], "9 is not an index 0..8"),
    (["targets", "", 0], "'' is not a name"),
    (["devmap", "xs-t0"], "2 parts, not 3"),
])
def test_bad_column_keys(tmp_path, key, message):
    path = _trace(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE columns SET key = ? WHERE id = 3", (json.dumps(key),))
    err = fails("summary", str(path), "--json")
    assert "column 3: unreadable key" in err and message in err, err
    assert "column 3: unreadable key" in fails("report", str(path), "-o", str(tmp_path / "r.html"))
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("row,message", [
    ('{"actions": [[1, "x", 0, 0, 0]]}', "is not an integer: 'x'"),
    ('{"actions": [[1, Infinity, 0, 0, 0]]}', "Infinity is not a number JSON allows"),
    ('{"actions": [[1, NaN, 0, 0, 0]]}', "NaN is not a number JSON allows"),
    ('{"actions": [[1, 1e308, 0, 0, 0]]}', "is not an integer: 1e+308"),
    ('{"actions": [[1, 1e999, 0, 0, 0]]}', "1e999 is not a finite number"),
    ('{"run": {"ns": 99999999999999999999}}', "is outside int64"),
])
def test_bad_column_values_in_a_v1_trace(tmp_path, row, message):
    from tests.test_trace import sample, write_v1
    path = tmp_path / "v1.xst"
    write_v1(path, [sample(i) for i in range(10)])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE samples SET data = ? WHERE seq = 4", (row,))
    err = fails("summary", str(path), "--json")
    assert "sample row seq=4" in err and message in err, err


def test_counter_totals_beyond_int64(tmp_path):
    """Each value fits in int64 (as the format stores them); a total that does not is an error, never a wrap."""
    from backend.data.sample import Sample
    from backend.data.trace import TraceWriter
    path = tmp_path / "big.xst"
    with TraceWriter(path, {"iface": "xs-in"}) as w:
        w.write(Sample(t=0.1, dt=0.1, verdicts=[[0, 0, 0, 0, 2**62]]))
        w.write(Sample(t=0.2, dt=0.1, verdicts=[[0, 0, 0, 0, 2**62]]))
    err = fails("summary", str(path), "--json")
    assert "['actions', 0, 4] is 9223372036854775808, beyond int64" in err, err


@pytest.mark.parametrize("key,value,message", [
    ("hz", '"fast"', "meta key 'hz': expected a number"),
    ("targets", json.dumps([f"t{i}" for i in range(100_000)]), "meta key 'targets': expected a list of at most 64"),
    ("driver", "[1, 2]", "meta key 'driver': expected a string"),
    ("created", "1e300", "meta key 'created': expected a number 0..253402300799"),
    ("probes", "[1]", "meta key 'probes': expected a JSON object"),
    ("cpus", "-1", "meta key 'cpus': expected an integer 0..8192"),
    ("iface", "NaN", "meta key 'iface': unreadable JSON"),
])
def test_bad_meta_types(tmp_path, key, value, message):
    path = _trace(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
    assert message in fails("summary", str(path), "--json")
    assert message in fails("report", str(path), "-o", str(tmp_path / "r.pdf"))


def test_meta_not_utf8(tmp_path):
    path = _trace(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = CAST(X'22FFFE22' AS TEXT) WHERE key = 'iface'")
    assert "corrupt or unreadable trace" in fails("summary", str(path), "--json")
