"""Bad input gets one clear line on stderr and a non-zero exit, never a traceback."""
from __future__ import annotations

import shutil

import pytest

from tests.conftest import run_cli

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
