"""Writes that cannot lie, on a real full disk: a small tmpfs mounted for the test (root).

A recording that fills the disk ends with one line and a non-zero exit, and the trace keeps every
sample committed before (checked by decoding the file by hand, as docs/trace-format.md says, and
against the frames injected). A report onto a full disk fails the same way and leaves the old
report as it was. Also: a read-only mount and an output deleted while recording.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests import trace_by_hand
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.kernel



def mount_tmpfs(where: Path, *options: str) -> None:
    where.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)], check=True)


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MB tmpfs at tmp_path/fs, unmounted afterwards also when the test fails."""
    fs = tmp_path / "fs"
    mount_tmpfs(fs, "size=2m", "mode=0755")
    try:
        yield fs
    finally:
        subprocess.run(["umount", "-l", str(fs)], check=False)


def fill(fs: Path) -> None:
    """Write a filler file until the file system has no room left."""
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            os.write(fd, b"\xaa" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    assert os.statvfs(fs).f_bavail == 0


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    assert stderr.startswith("xdpscope: ") and stderr.count("\n") == 1, stderr
    return stderr


def test_full_disk_ends_the_recording_and_keeps_what_was_committed(lab, record, small_fs):
    targets = lab.targets[:2]
    rec = record("--iface", lab.ingress, "--program", "redirect", "--targets", ",".join(targets),
                 "--hz", "20", name="fs/full.xst")
    sent = 0
    deadline = time.monotonic() + 120  # a guard against a hang, not a measured time
    while rec.proc.poll() is None and time.monotonic() < deadline:
        p = run_cli("inject", "--iface", lab.ingress, "--count", "2000", check=False)
        if p.returncode == 0:
            sent += json.loads(p.stdout)["frames"]
        else:  # the recording ended (detached, and is exiting) between the check and the injection
            assert "no XDP program attached" in p.stderr, p.stderr
            rec.proc.wait(timeout=30)
    assert rec.proc.poll() is not None, "the recording did not end when the disk filled"
    rc, err = rec.proc.wait(), rec.proc.stderr.read()
    rec.proc.stdout.close()
    rec.proc.stderr.close()
    assert rc != 0
    one_line_error(err)
    assert "disk full" in err and "recording stopped" in err, err
    used = sum(p.stat().st_size for p in small_fs.glob("full.xst*"))  # the file and its -wal, -shm
    assert used > 1.5 * 2**20  # it really was the trace that filled the 2 MB

    s = rec.summary()  # the trace is readable, as it was left
    n, by_hand = trace_by_hand.totals(rec.out)
    assert n > 0 and s["samples"] == n and f"keeps the {n} samples" in err
    redirected = sum(v for k, v in by_hand.items() if k[0] == "actions" and k[2] == 4)
    assert s["actions"]["REDIRECT"] == redirected > 0
    for t in targets:
        assert s["redirect_targets"][t] == sum(v for k, v in by_hand.items() if k[:2] == ("targets", t))
    assert s["redirect_targets"][targets[0]] + s["redirect_targets"][targets[1]] == redirected
    # the program saw no more than was injected; frames injected after the last commit are not in the trace
    assert redirected <= sent
    assert sum(s["actions"].values()) == redirected  # every frame was redirected, nothing else


@pytest.mark.parametrize("ext", ["html", "pdf", "png"])
def test_report_onto_a_full_disk_keeps_the_old_report(small_fs, tmp_path, ext):
    old = small_fs / f"report.{ext}"
    old.write_bytes(b"the previous report\n")
    fill(small_fs)
    before = sorted(p.name for p in small_fs.iterdir())
    p = run_cli("report", str(ROOT / "resources" / "sample.xst"), "-o", str(old), check=False)
    assert p.returncode != 0 and p.stdout == ""
    err = one_line_error(p.stderr)
    assert f"{old}: cannot write: No space left on device" in err, err
    assert old.read_bytes() == b"the previous report\n"
    assert sorted(p.name for p in small_fs.iterdir()) == before  # no temporary file left behind
    # with room again, the same command replaces it whole
    (small_fs / "filler").unlink()
    run_cli("report", str(ROOT / "resources" / "sample.xst"), "-o", str(old))
    head = old.read_bytes()[:16]
    assert head.startswith({"html": b"<!DOCTYPE", "pdf": b"%PDF-", "png": b"\x89PNG"}[ext])


def test_read_only_mount_is_refused_before_attaching(lab, tmp_path):
    ro = tmp_path / "ro"
    mount_tmpfs(ro, "size=1m", "ro")
    try:
        for args in (["record", "--iface", lab.ingress, "--program", "drop", "-o", str(ro / "t.xst")],
                     ["report", str(ROOT / "resources" / "sample.xst"), "-o", str(ro / "r.html")]):
            p = run_cli(*args, check=False)
            assert p.returncode != 0 and p.stdout == ""
            assert "Read-only file system" in one_line_error(p.stderr), p.stderr
        assert not (ro / "t.xst").exists() and not list(ro.iterdir())
        assert _xdp_prog_id(lab.ingress) == 0  # nothing was attached
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def _xdp_prog_id(iface: str) -> int:
    from backend.kernel import nic
    return nic.interface(iface).xdp["prog_id"]


def test_output_deleted_while_recording(lab, record, tmp_path):
    rec = record("--iface", lab.ingress, "--program", "drop", "--hz", "50", name="gone.xst")
    run_cli("inject", "--iface", lab.ingress, "--count", "100")
    rec.out.unlink()
    try:
        rc = rec.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        rec.proc.send_signal(signal.SIGINT)
        raise AssertionError("the recording went on into a deleted file")
    err = rec.proc.stderr.read()
    assert rc != 0
    assert "deleted or replaced while recording" in one_line_error(err), err
    assert _xdp_prog_id(lab.ingress) == 0  # detached on the way out
