"""Shared fixtures. Kernel tests (marker `kernel`) run on the real kernel as root: they fail,
never skip, when not root, so a missing privilege cannot pass for a passing suite. Tests that
need neither root nor the kernel (marker `unit`) run first: a broken decode, schema or trace
shows in seconds, before minutes of kernel tests."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
XDPSCOPE = [sys.executable, str(ROOT / "main.py")]


def pytest_configure(config):
    config.addinivalue_line("markers", "unit: needs no root and no kernel; runs first")
    config.addinivalue_line("markers", "kernel: needs root and the real kernel (BPF, netlink)")
    config.addinivalue_line("markers", "vlab: boots a QEMU guest (minutes)")


def pytest_collection_modifyitems(session, config, items):
    """Unit tests first, everything else after, each group in its collected order (a stable sort)."""
    items.sort(key=lambda item: item.get_closest_marker("unit") is None)


@pytest.fixture(autouse=True)
def _kernel_tests_need_root(request):
    if request.node.get_closest_marker("kernel") and os.geteuid() != 0:
        pytest.fail("kernel tests need root: run `make test` as root")


@pytest.fixture(autouse=True)
def _no_stranded_frames(request):
    """A test that sends frames through the driver with XDP_TX leaves them in the ingress peer's ring
    (veth does not schedule a GRO-only peer's NAPI after XDP_TX; backend/labs/veth.py drop_stranded):
    the next test's first flush to the ingress would find the ring full and drop a batch."""
    yield
    if "lab" in request.fixturenames:
        from backend.labs import veth
        lab = request.getfixturevalue("lab")
        if isinstance(lab, veth.Lab):      # not test_vlab's guest
            veth.drop_stranded(lab)


def run_cli(*args: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run ./xdpscope ARGS and return the finished process (stdout/stderr as text)."""
    p = subprocess.run([*XDPSCOPE, *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"xdpscope {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


class Recorder:
    """`xdpscope record ...` in the background; ready once it printed `ready`."""

    def __init__(self, out: Path, *args: str):
        self.out = out
        self.proc = subprocess.Popen([*XDPSCOPE, "record", *args, "-o", str(out)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise AssertionError(f"record did not start: {line!r} {self.proc.stderr.read().strip()}")

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc

    def summary(self) -> dict:
        return json.loads(run_cli("summary", str(self.out), "--json").stdout)


@pytest.fixture(scope="session")
def lab():
    """One quiet lab for the session, with a prefix unique to this run; always torn down."""
    if os.geteuid() != 0:
        pytest.fail("the lab needs root")
    from backend.labs import veth as labmod
    prefix = f"x{os.getpid() % 100000}"
    try:
        yield labmod.up(prefix, targets=3)
    finally:
        labmod.down(prefix)


@pytest.fixture
def record(tmp_path):
    """Start recorders; any still running at the end of the test are stopped (detaching)."""
    started: list[Recorder] = []

    def start(*args: str, name: str = "trace.xst") -> Recorder:
        r = Recorder(tmp_path / name, *args)
        started.append(r)
        return r

    yield start
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()
