"""The vlab's checks and the engine in the guest, driven from the host: a counting XDP program
of its own (guest_checks.py, bcc: an oracle apart from xdpscope), a native attach tried on guest
NICs, `xdpscope record` in the guest with its trace brought out, the NIC's rx counter, rx IRQ
pinning and an independent log of napi:napi_poll."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from backend.errors import XdpscopeError
from backend.labs.vlab import rpc
from backend.labs.vlab.host import ROOT, STATE_DIR, guest_module, guest_nic, run, start, wait
from backend.labs.vlab.traffic import send, tap_stats


def attach_check(nics: list[str], mode: str = "native", *, state_dir: Path | None = None) -> dict:
    """Try an XDP attach (bpf_link, an XDP_PASS program of two instructions: no compiler) on each
    guest NIC: {nic: {"ok", "errno", "error"}}, what the kernel said."""
    cp = run(guest_module("guest_checks", "attach", "--mode", mode, *nics), timeout=300, check=True,
             state_dir=state_dir)
    return json.loads(cp.stdout)


def xdp_check(mode: str = "drop", count: int = 1000, *, targets: tuple[int, ...] = (2, 3),
              target_prog: bool = True, generic: bool = False, settle: float = 3.0,
              state_dir: Path | None = None) -> dict:
    """End-to-end check on a running lab: compile + natively attach guest_checks.py's program to
    vnic1 (bcc, in the guest), write `count` frames into vlabtap1, then read the program's counters
    and ethtool -S. mode "drop": every frame dropped and counted; "redirect": round-robin through a
    devmap to the `targets` NICs, frames counted again where they come out, at their host taps.

    Returns {"guest": guest_checks.py xdp's JSON, "send": send()'s JSON, "total_s": seconds}."""
    sd = Path(state_dir or STATE_DIR)
    t0 = time.monotonic()
    mk = sd / f"check-{mode}-{time.time_ns()}"
    mk.mkdir()
    argv = guest_module("guest_checks", "xdp", mode, "--dev", guest_nic(1), "--marker", str(mk))
    if mode == "redirect":
        for t in targets:
            argv += ["--to", guest_nic(t)]
        if not target_prog:
            argv.append("--no-target-prog")
    if generic:
        argv.append("--generic")
    try:
        job = start(argv, timeout=900, state_dir=sd)
        while not (mk / "attached").exists():
            if rpc.response_path(sd, job).exists():  # the guest program ended before attaching: report why
                cp = wait(job, state_dir=sd, command=argv)
                raise XdpscopeError(f"vlab: guest XDP program failed (rc {cp.returncode}): "
                                    f"{cp.stderr.strip().splitlines()[-1:] or cp.stdout}")
            if time.monotonic() - t0 > 600:
                raise XdpscopeError("vlab: guest XDP program not attached after 600 s")
            time.sleep(0.1)
        capture = list(targets) if mode == "redirect" else []
        taps0 = tap_stats(state_dir=sd)
        rx0 = guest_rx_packets(1, state_dir=sd)
        sent = send(1, count, capture=capture, expect=count if capture and target_prog else None,
                    settle=settle, state_dir=sd)
        # The guest may still be working through its receive ring (TCG is slow): wait until the
        # driver has seen every frame or nothing moved for `settle` seconds.
        wait_rx(1, rx0 + count, settle=settle, state_dir=sd)
        (mk / "stop").touch()
        cp = wait(job, timeout=300, state_dir=sd, command=argv)
        if cp.returncode != 0:
            raise XdpscopeError(f"vlab: guest XDP program failed (rc {cp.returncode}): {cp.stderr.strip()}")
        taps1 = tap_stats(state_dir=sd)
        taps = {t: {k: v - taps0[t].get(k, 0) for k, v in c.items()} for t, c in taps1.items()}
        return {"guest": json.loads(cp.stdout), "send": sent, "taps": taps, "total_s": time.monotonic() - t0}
    finally:
        shutil.rmtree(mk, ignore_errors=True)


def guest_rx_packets(nic: int, *, state_dir: Path | None = None) -> int:
    """The guest NIC's rx_packets: every frame the driver received, XDP_DROP included."""
    cp = run(["cat", f"/sys/class/net/{guest_nic(nic)}/statistics/rx_packets"], timeout=60, state_dir=state_dir)
    return int(cp.stdout)


def wait_rx(nic: int, total: int, *, settle: float = 5.0, state_dir: Path | None = None) -> int:
    """The guest may still be working through its receive ring (TCG is slow): wait until guest NIC
    `nic` has received `total` frames in all (rx_packets) or nothing moved for `settle` seconds;
    returns rx_packets."""
    last, t_last = None, time.monotonic()
    while True:
        n = guest_rx_packets(nic, state_dir=state_dir)
        if n >= total:
            return n
        if n != last:
            last, t_last = n, time.monotonic()
        elif time.monotonic() - t_last >= settle:
            return n
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# the engine in the guest

XDPSCOPE = str(ROOT / "xdpscope")       # the launcher: the same path in the guest (host fs over 9p)
GUEST_TMP = "/tmp/xdpscope-guest"       # guest-local (tmpfs overlay)
NAPI_INSTANCE = "/sys/kernel/tracing/instances/xdpscope-vlab-napi"


class GuestRecord:
    """`xdpscope record ARGS` running in the guest, exactly as on a host.

    The trace is written guest-locally first: SQLite's WAL needs shared memory that 9p does not
    give ("cannot create trace: disk I/O error" on the shared directory). When the recording ends
    (stop(), or its --duration) it is copied into the shared directory: `out`, the same path on the
    host and in the guest. `cpu`: run the recorder on that vCPU only (taskset); attaching XDP
    schedules the NIC's NAPI instances on the attaching CPU (virtnet_napi_enable)."""

    def __init__(self, args: list[str], out: str | Path, *, cpu: int | None = None,
                 ready_timeout: float = 900, state_dir: Path | None = None):
        self.sd = Path(state_dir or STATE_DIR)
        self.out = Path(out)
        if self.sd not in self.out.parents:
            raise XdpscopeError(f"vlab: a guest trace must go to the shared directory {self.sd}")
        self.dir = self.sd / f"rec-{time.time_ns()}"
        self.dir.mkdir()
        local = f"{GUEST_TMP}/{self.dir.name}.xst"
        d, o = shlex.quote(str(self.dir)), shlex.quote(str(self.out))
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
        script = (f"mkdir -p {GUEST_TMP}; {shlex.join([*pin, XDPSCOPE, 'record', *args, '-o', local, '--overwrite'])}"
                  f" > {d}/stdout 2> {d}/stderr & echo $! > {d}/pid; wait $!; rc=$?; "
                  f"if [ -f {local} ]; then rm -f {o}-wal {o}-shm; [ -f {local}-wal ] && cp {local}-wal {o}-wal; "
                  f"cp {local} {o}.tmp && mv {o}.tmp {o} && rm -f {local}*; fi; exit $rc")
        self.argv = ["sh", "-c", script]
        self.job = start(self.argv, timeout=None, state_dir=self.sd)
        t0 = time.monotonic()
        while "ready" not in self._read("stdout"):
            if self._done():
                cp = self.stop()
                raise XdpscopeError(f"vlab: guest record did not start (rc {cp.returncode}): {cp.stderr.strip()}")
            if time.monotonic() - t0 > ready_timeout:
                self.stop()
                raise XdpscopeError(f"vlab: guest record not ready after {ready_timeout:.0f} s")
            time.sleep(0.2)
        self.ready_s = time.monotonic() - t0
        self.stderr = self._read("stderr")

    def _read(self, name: str) -> str:
        try:
            return (self.dir / name).read_text(errors="replace")
        except OSError:
            return ""

    def _done(self) -> bool:
        return rpc.response_path(self.sd, self.job).exists()

    def stop(self, timeout: float = 300) -> subprocess.CompletedProcess:
        """SIGTERM the recorder (it detaches and writes its last sample), wait for the copy;
        returns the recorder's rc, stdout and stderr."""
        if not self._done():
            pid = self._read("pid").strip()
            if pid:
                run(["kill", "-TERM", pid], timeout=60, state_dir=self.sd)
        cp = wait(self.job, timeout=timeout, state_dir=self.sd, command=self.argv)
        cp = subprocess.CompletedProcess(self.argv, cp.returncode, self._read("stdout"), self._read("stderr"))
        shutil.rmtree(self.dir, ignore_errors=True)
        return cp


def record(args: list[str], out: str | Path, **kw) -> GuestRecord:
    """Start `xdpscope record ARGS` in the guest (returns once it printed `ready`)."""
    return GuestRecord(args, out, **kw)


def xdpscope(args: list[str], *, timeout: float = 600, state_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Run `xdpscope ARGS` in the guest (e.g. doctor --json)."""
    return run([XDPSCOPE, *args], timeout=timeout, state_dir=state_dir)


def pin_rx_irqs(nic: int, cpu: int = 0, *, state_dir: Path | None = None) -> list[int]:
    """Route every receive-queue interrupt of guest NIC `nic` to one vCPU, so its NAPI polls (and
    the XDP program) run there only: per-CPU state such as a round-robin counter then sees every
    frame in order. Unpinned, the guest moves the IRQ of one rx queue between vCPUs (measured:
    a 636/364 split of one flow). Returns the IRQ numbers."""
    name = guest_nic(nic)
    script = (f'd=$(basename "$(readlink -f /sys/class/net/{name}/device)") || exit 1; '
              f'for i in $(grep -E " $d-input\\.[0-9]+$" /proc/interrupts | cut -d: -f1); do '
              f'echo {cpu} > /proc/irq/$i/smp_affinity_list || exit 1; echo $i; done')
    cp = run(["sh", "-c", script], timeout=60, check=True, state_dir=state_dir)
    irqs = [int(x) for x in cp.stdout.split()]
    if not irqs:
        raise XdpscopeError(f"vlab: no receive IRQs found for {name}")
    return irqs


def napi_trace_start(nic: int, *, state_dir: Path | None = None) -> None:
    """Log every napi:napi_poll of guest NIC `nic` (CPU, work) in a tracefs instance of our own:
    an account of the polls independent of xdpscope's probes (each rx poll ends with one
    xdp_do_flush, so the polls' work decides the devmap flush sizes)."""
    d = NAPI_INSTANCE
    script = (f"rmdir {d} 2>/dev/null; mkdir {d} && echo 4096 > {d}/buffer_size_kb && "
              f"echo 'dev_name == \"{guest_nic(nic)}\"' > {d}/events/napi/napi_poll/filter && "
              f"echo 1 > {d}/events/napi/napi_poll/enable")
    run(["sh", "-c", script], timeout=60, check=True, state_dir=state_dir)


def napi_trace_stop(*, state_dir: Path | None = None) -> list[tuple[int, int]]:
    """End napi_trace_start's log: [(cpu, work), ...] in time order (polls with work 0 included)."""
    d = NAPI_INSTANCE
    cp = run(["sh", "-c", f"echo 0 > {d}/events/napi/napi_poll/enable; cat {d}/trace; rmdir {d}"],
             timeout=120, check=True, state_dir=state_dir)
    m = re.search(r"entries-in-buffer/entries-written: (\d+)/(\d+)", cp.stdout)
    if not m or m.group(1) != m.group(2):
        raise XdpscopeError(f"vlab: napi trace lost events ({m.group(0) if m else 'no header'})")
    polls = [(int(c), int(w)) for c, w in
             re.findall(r"\[(\d+)\][^\n]*napi_poll: [^\n]* work (-?\d+) budget \d+", cp.stdout)]
    if len(polls) != int(m.group(1)):
        raise XdpscopeError(f"vlab: napi trace: parsed {len(polls)} of {m.group(1)} events")
    return polls


