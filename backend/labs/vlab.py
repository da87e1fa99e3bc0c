"""The QEMU virtio_net lab: a TCG guest with 3 virtio-net-pci NICs fed from host-side taps.

    up()    boots Debian's stock kernel (linux-image-amd64, 6.1) under QEMU/TCG with virtme-ng:
            the guest runs the host's own userspace read-only over 9p (so /usr/bin/python3, bcc and
            /usr/src/linux-headers-<ver> are there), and vlab/guest_agent.py as its only program.
    run()   runs a command in the guest, returns a subprocess.CompletedProcess.
    send()  writes frames into a guest NIC's tap from inside the lab namespace: they reach the
            guest through virtio_net's real receive path (virtnet_poll -> receive_mergeable).
    down()  stops the guest and removes the namespace and taps, also after a failure or a crash.
    record() runs `xdpscope record` in the guest (the engine, exactly as on a host) and brings the
            trace out into the shared directory; xdpscope() runs any other subcommand there.

Layout (all names are ours; nothing outside the lab namespace is touched, eth0 never):

    host netns "xdpscope-vlab"                    guest (QEMU, TCG, runs inside that netns)
      vlabtap1 (tap, multi_queue) -- netdev n1 -- virtio-net-pci mac 52:54:00:5c:0e:01 -> vnic1
      vlabtap2                    -- netdev n2 -- virtio-net-pci mac 52:54:00:5c:0e:02 -> vnic2
      vlabtap3                    -- netdev n3 -- virtio-net-pci mac 52:54:00:5c:0e:03 -> vnic3

Host and guest exchange files through one shared read-write directory (virtme-ng --rwdir, 9p),
the same path on both sides: STATE_DIR (default /tmp/xdpscope-vlab). The agent's request and
response spool lives there (see vlab/guest_agent.py); put trace files there too. The whole host
filesystem is visible read-only in the guest, /tmp and /var are copy-on-write tmpfs overlays.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.errors import XdpscopeError

ROOT = Path(__file__).resolve().parents[2]
GUEST_AGENT = ROOT / "vlab" / "guest_agent.py"
HOSTNET = ROOT / "vlab" / "hostnet.py"

NETNS = "xdpscope-vlab"
TAP_FMT = "vlabtap{}"
MAC_FMT = "52:54:00:5c:0e:{:02x}"
GUEST_NIC_FMT = "vnic{}"
STATE_DIR = Path(os.environ.get("XDPSCOPE_VLAB_DIR", "/tmp/xdpscope-vlab"))
GUEST_PYTHON = "/usr/bin/python3"  # the host's system python: it has Debian's bcc

# virtio-net-pci device options. With a tap backend QEMU offers GUEST_TSO4/6, ECN, UFO and
# GUEST_CSUM; virtio_net (6.1, virtnet_xdp_set) refuses native XDP with any of them (EOPNOTSUPP,
# "Can't set XDP while host is implementing GRO_HW/CSUM") unless it can turn them off through the
# control queue, i.e. unless CTRL_GUEST_OFFLOADS was negotiated. QEMU offers it by default, so the
# default device attaches natively (measured). Presets:
DEVICE_OPTS = {
    "default": "",                                   # QEMU's defaults: native XDP works
    "no-ctrl-offloads": "ctrl_guest_offloads=off",   # native XDP fails: EOPNOTSUPP (like eth0 here)
    "no-offloads": "ctrl_guest_offloads=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,"
                   "guest_ufo=off,guest_csum=off",   # native XDP works without the control queue
}
DEFAULT_DEVICE_OPTS = DEVICE_OPTS["default"]


@dataclass
class Config:
    nics: int = 3
    queues: int = 4            # per NIC; the guest uses min(queues, cpus) and XDP needs cpus more
    cpus: int = 2
    memory: str = "1G"
    kernel: str | None = None  # /boot/vmlinuz-<ver>; default: newest with /lib/modules/<ver>/build
    device_opts: str = DEFAULT_DEVICE_OPTS
    nic_opts: dict = field(default_factory=dict)  # NIC number -> device options for that NIC only
    boot_timeout: float = 240.0
    state_dir: Path = field(default_factory=lambda: STATE_DIR)

    def tap(self, i: int) -> str:
        return TAP_FMT.format(i)

    def mac(self, i: int) -> str:
        return MAC_FMT.format(i)

    def opts(self, i: int) -> str:
        return self.nic_opts.get(i, self.nic_opts.get(str(i), self.device_opts))


# ---------------------------------------------------------------------------------------------
# prerequisites


def find_vng() -> str:
    for cand in (Path(sys.executable).parent / "vng", shutil.which("vng")):
        if cand and Path(cand).exists():
            return str(cand)
    raise XdpscopeError("vlab: virtme-ng is not installed (pip install virtme-ng: provides `vng`)")


def find_kernel() -> str:
    """Newest /boot/vmlinuz-<ver> whose headers are at /lib/modules/<ver>/build (bcc needs them)."""
    found = []
    for k in Path("/boot").glob("vmlinuz-*"):
        ver = k.name[len("vmlinuz-"):]
        if (Path("/lib/modules") / ver / "build").exists() and (Path("/lib/modules") / ver / "kernel").is_dir():
            found.append((k.stat().st_mtime, str(k)))
    if not found:
        raise XdpscopeError("vlab: no guest kernel: apt-get install linux-image-amd64 linux-headers-amd64")
    return sorted(found)[-1][1]


def check_prerequisites() -> list[str]:
    """Problems that stop `up` from working here, as one-line messages (empty: ready)."""
    probs = []
    if os.geteuid() != 0:
        probs.append("vlab needs root (network namespace, taps)")
    if not shutil.which("qemu-system-x86_64"):
        probs.append("qemu-system-x86_64 missing: apt-get install qemu-system-x86")
    if not shutil.which("busybox"):
        probs.append("busybox missing (virtme-ng builds its initramfs with it): apt-get install busybox-static")
    for fn in (find_vng, find_kernel):
        try:
            fn()
        except XdpscopeError as e:
            probs.append(str(e))
    if not os.path.exists(f"{GUEST_PYTHON}") or not os.path.isdir("/usr/lib/python3/dist-packages/bcc"):
        probs.append("bcc for the guest missing: apt-get install python3-bpfcc")
    return probs


# ---------------------------------------------------------------------------------------------
# host side: namespace and taps


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise XdpscopeError(f"vlab: ip {' '.join(args)}: {p.stderr.strip()}")
    return p


def netns_exists() -> bool:
    return NETNS in _ip("netns", "list", check=False).stdout.split()


def _setup_netns(cfg: Config) -> None:
    if netns_exists():
        raise XdpscopeError(f"vlab: namespace {NETNS} exists: is a lab up? (xdpscope vlab down)")
    _ip("netns", "add", NETNS)
    _ip("-n", NETNS, "link", "set", "lo", "up")
    # No IPv6 on the taps: the host would send router solicitations / DAD into the guest's NICs
    # and spoil exact counts.
    for key in ("all", "default"):
        subprocess.run(["ip", "netns", "exec", NETNS, "sysctl", "-qw",
                        f"net.ipv6.conf.{key}.disable_ipv6=1"], capture_output=True)
    for i in range(1, cfg.nics + 1):
        tap = cfg.tap(i)
        _ip("-n", NETNS, "tuntap", "add", "dev", tap, "mode", "tap", "multi_queue")
        # tun's ring is txqueuelen long: frames written faster than TCG QEMU reads are dropped
        # (tap tx_dropped) once it is full.
        _ip("-n", NETNS, "link", "set", tap, "txqueuelen", "10000", "up")


def _teardown_netns(cfg: Config | None = None) -> None:
    if not netns_exists():
        return
    n = cfg.nics if cfg else 8
    for i in range(1, n + 1):
        _ip("-n", NETNS, "link", "del", TAP_FMT.format(i), check=False)
    _ip("netns", "del", NETNS, check=False)


# ---------------------------------------------------------------------------------------------
# guest


def qemu_opts(cfg: Config) -> list[str]:
    """The QEMU arguments for the NICs (virtme-ng adds machine, kernel, 9p root, consoles)."""
    opts = []
    vectors = 2 * cfg.queues + 2
    for i in range(1, cfg.nics + 1):
        opts += ["-netdev", f"tap,id=n{i},ifname={cfg.tap(i)},script=no,downscript=no,queues={cfg.queues}",
                 "-device", f"virtio-net-pci,netdev=n{i},mac={cfg.mac(i)},disable-legacy=on,"
                            f"mq=on,vectors={vectors}" + (f",{cfg.opts(i)}" if cfg.opts(i) else "")]
    opts += ["-pidfile", str(cfg.state_dir / "qemu.pid")]
    return opts


def vng_command(cfg: Config) -> list[str]:
    kernel = cfg.kernel or find_kernel()
    sd = str(cfg.state_dir)
    agent = [GUEST_PYTHON, str(GUEST_AGENT), "--spool", sd]
    for i in range(1, cfg.nics + 1):
        agent += ["--nic", f"{cfg.mac(i)}={GUEST_NIC_FMT.format(i)}"]
    return ["ip", "netns", "exec", NETNS, find_vng(),
            "--run", kernel,
            "--disable-kvm",          # nested KVM hangs on this machine; TCG works
            "--force-9p",             # Debian 12's virtiofsd (QEMU 7.2) does not take vng's args
            "--cpus", str(cfg.cpus), "--memory", cfg.memory,
            f"--rwdir={sd}={sd}",
            "--qemu-opts=" + shlex.join(qemu_opts(cfg)),
            "--exec", shlex.join(agent)]


@dataclass
class Lab:
    """What `up` leaves in STATE_DIR/lab.json for run/down in other processes."""
    pid: int
    config: dict
    ready: dict
    boot_s: float

    @property
    def nics(self) -> dict:
        return self.ready.get("nics", {})


def _state_file(sd: Path) -> Path:
    return sd / "lab.json"


def status(state_dir: Path | None = None) -> Lab | None:
    sd = Path(state_dir or STATE_DIR)
    try:
        d = json.loads(_state_file(sd).read_text())
    except (OSError, ValueError):
        return None
    lab = Lab(**d)
    if not _alive(lab.pid):
        return None
    return lab


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def up(cfg: Config | None = None, *, log=None) -> Lab:
    """Boot the lab; returns when the guest agent is ready (NICs renamed and up).

    On any failure everything started here is torn down again before the error is raised."""
    cfg = cfg or Config()
    probs = check_prerequisites()
    if probs:
        raise XdpscopeError("vlab: " + "; ".join(probs))
    sd = cfg.state_dir
    if status(sd):
        raise XdpscopeError(f"vlab: a lab is already up (state in {sd}); xdpscope vlab down")
    if sd.exists():
        shutil.rmtree(sd)
    (sd / "req").mkdir(parents=True)
    (sd / "resp").mkdir()
    t0 = time.monotonic()
    proc = None
    try:
        _setup_netns(cfg)
        cmd = vng_command(cfg)
        (sd / "command.txt").write_text(" ".join(cmd) + "\n")
        console = open(sd / "console.log", "wb")
        env = dict(os.environ)
        # vng runs `virtme-run` (and QEMU) through PATH: the venv's bin must be on it.
        env["PATH"] = str(Path(find_vng()).parent) + os.pathsep + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd="/", env=env)
        console.close()
        (sd / "vng.pid").write_text(str(proc.pid))
        ready_path = sd / "ready.json"
        while not ready_path.exists():
            if proc.poll() is not None:
                raise XdpscopeError(f"vlab: guest exited during boot (rc {proc.returncode}); "
                                    f"see {sd / 'console.log'}:\n" + _tail(sd / "console.log"))
            if time.monotonic() - t0 > cfg.boot_timeout:
                raise XdpscopeError(f"vlab: guest not ready after {cfg.boot_timeout:.0f} s; "
                                    f"see {sd / 'console.log'}:\n" + _tail(sd / "console.log"))
            time.sleep(0.2)
        ready = json.loads(ready_path.read_text())
        bad = {k: v for k, v in ready.get("nics", {}).items() if "error" in v}
        if bad:
            raise XdpscopeError(f"vlab: guest NICs missing: {bad}")
        c = asdict(cfg)
        c["state_dir"] = str(sd)
        lab = Lab(pid=proc.pid, config=c, ready=ready, boot_s=time.monotonic() - t0)
        _state_file(sd).write_text(json.dumps(asdict(lab), indent=1))
        if log:
            log(f"vlab up in {lab.boot_s:.1f} s: kernel {ready.get('kernel')}, NICs {list(lab.nics)}")
        return lab
    except BaseException:
        _kill(proc.pid if proc else None, sd)
        _teardown_netns(cfg)
        raise


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _kill(pid: int | None, sd: Path, grace: float = 5.0) -> None:
    """End vng (its own session: the process group is vng and the QEMU it forked) and QEMU."""
    qpid = None
    try:
        qpid = int((sd / "qemu.pid").read_text().strip())
    except (OSError, ValueError):
        pass
    if qpid is not None:
        try:
            if "qemu" not in Path(f"/proc/{qpid}/cmdline").read_text(errors="replace"):
                qpid = None
        except OSError:
            qpid = None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in (pid, qpid):
            if p is None:
                continue
            try:
                if p == pid:
                    os.killpg(p, sig)
                else:
                    os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p is not None and _alive_unreaped(p) for p in (pid, qpid)):
            time.sleep(0.1)
        if not any(p is not None and _alive_unreaped(p) for p in (pid, qpid)):
            break


def _alive_unreaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # our child (same process as up): reap it
    except ChildProcessError:
        pass
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return st.rsplit(")", 1)[1].split()[0] != "Z"


def _request(sd: Path, req: dict) -> str:
    rid = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
    tmp = sd / "req" / (rid + ".json.tmp")
    tmp.write_text(json.dumps(req))
    os.rename(tmp, sd / "req" / (rid + ".json"))
    return rid


def start(command: list[str], *, timeout: float | None = None, cwd: str | None = None,
          input: str | None = None, state_dir: Path | None = None) -> str:
    """Start a command in the guest; returns a job id for wait(). Jobs run concurrently."""
    sd = Path(state_dir or STATE_DIR)
    if not status(sd):
        raise XdpscopeError("vlab: no lab is up (xdpscope vlab up)")
    return _request(sd, {"argv": list(command), "timeout": timeout, "cwd": cwd, "input": input})


def wait(job: str, *, timeout: float | None = None, state_dir: Path | None = None,
         command: list[str] | None = None) -> subprocess.CompletedProcess:
    sd = Path(state_dir or STATE_DIR)
    path = sd / "resp" / (job + ".json")
    t0 = time.monotonic()
    lab = status(sd)
    while not path.exists():
        if lab and not _alive(lab.pid):
            raise XdpscopeError("vlab: the guest died; see " + str(sd / "console.log"))
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise XdpscopeError(f"vlab: no answer from the guest after {timeout:.0f} s")
        time.sleep(0.05)
    resp = json.loads(path.read_text())
    path.unlink()
    return subprocess.CompletedProcess(command or [], resp["rc"], resp["stdout"], resp["stderr"])


def run(command: list[str], *, timeout: float | None = 600, check: bool = False, cwd: str | None = None,
        input: str | None = None, state_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command in the guest and wait for it, like subprocess.run(capture_output=True, text=True).

    `timeout` is enforced inside the guest (rc 124 then); the host waits a little longer."""
    job = start(command, timeout=timeout, cwd=cwd, input=input, state_dir=state_dir)
    cp = wait(job, timeout=None if timeout is None else timeout + 30, state_dir=state_dir,
              command=list(command))
    if check and cp.returncode != 0:
        raise XdpscopeError(f"vlab: guest command {command} failed (rc {cp.returncode}): {cp.stderr.strip()}")
    return cp


def send(nic: int, count: int, *, capture: list[int] = (), size: int = 64, pps: float = 0.0,
         expect: int | None = None, settle: float = 3.0, dst: str | None = None,
         state_dir: Path | None = None) -> dict:
    """Write `count` frames into guest NIC `nic`'s tap (inside the lab namespace) and count the
    frames that come out of the taps of the NICs in `capture` (e.g. XDP_REDIRECT targets).

    Frames: dst = the guest NIC's MAC, ethertype 0x88b5, payload 'XDPSCOPE' + 64-bit sequence.
    Returns hostnet.py's JSON: sent, tap_tx_packets, tap_tx_dropped, captured {tap: n}, ..."""
    lab = status(state_dir)
    if not lab:
        raise XdpscopeError("vlab: no lab is up (xdpscope vlab up)")
    cmd = ["ip", "netns", "exec", NETNS, sys.executable, str(HOSTNET), "--dev", TAP_FMT.format(nic),
           "--dst", dst or MAC_FMT.format(nic), "--count", str(count), "--size", str(size),
           "--pps", str(pps), "--settle", str(settle)]
    for c in capture:
        cmd += ["--capture", TAP_FMT.format(c)]
    if expect is not None:
        cmd += ["--expect", str(expect)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise XdpscopeError(f"vlab: sending frames failed: {p.stderr.strip()}")
    return json.loads(p.stdout)


def down(state_dir: Path | None = None, *, grace: float = 20.0) -> bool:
    """Stop the guest (agent shutdown, then SIGTERM/SIGKILL) and remove namespace and taps.
    Safe to call at any time; returns True if a running lab was stopped."""
    sd = Path(state_dir or STATE_DIR)
    lab = status(sd)
    pid = None
    if lab is None:
        try:
            pid = int((sd / "vng.pid").read_text())
            if not _alive(pid):
                pid = None
        except (OSError, ValueError):
            pid = None
    else:
        pid = lab.pid
        try:
            rid = _request(sd, {"op": "shutdown", "grace": 2})
            t0 = time.monotonic()
            while time.monotonic() - t0 < grace and _alive_unreaped(pid):
                time.sleep(0.1)
            (sd / "resp" / (rid + ".json")).unlink(missing_ok=True)
        except OSError:
            pass
    _kill(pid, sd)
    _teardown_netns()
    try:
        _state_file(sd).unlink()
    except OSError:
        pass
    return lab is not None


def guest_nic(i: int) -> str:
    return GUEST_NIC_FMT.format(i)


GUEST_XDP = ROOT / "vlab" / "guest_xdp.py"


def xdp_check(mode: str = "drop", count: int = 1000, *, targets: tuple[int, ...] = (2, 3),
              target_prog: bool = True, generic: bool = False, settle: float = 3.0,
              state_dir: Path | None = None) -> dict:
    """End-to-end check on a running lab: compile + natively attach vlab/guest_xdp.py's program to
    vnic1 (bcc, in the guest), write `count` frames into vlabtap1, then read the program's counters
    and ethtool -S. mode "drop": every frame dropped and counted; "redirect": round-robin through a
    devmap to the `targets` NICs, frames counted again where they come out, at their host taps.

    Returns {"guest": guest_xdp.py's JSON, "send": send()'s JSON, "total_s": seconds}."""
    sd = Path(state_dir or STATE_DIR)
    t0 = time.monotonic()
    mk = sd / f"check-{mode}-{time.time_ns()}"
    mk.mkdir()
    argv = [GUEST_PYTHON, str(GUEST_XDP), mode, "--dev", guest_nic(1), "--marker", str(mk)]
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
            resp = sd / "resp" / (job + ".json")
            if resp.exists():  # the guest program ended before attaching: report why
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


def tap_stats(state_dir: Path | None = None) -> dict:
    """Host-side counters of the lab's taps: {tap: {tx_packets, tx_dropped, rx_packets, ...}}.
    A tap's tx is towards the guest: tx_packets counts frames QEMU has read (so it lags a fast
    sender under TCG), tx_dropped frames tun dropped because its ring (txqueuelen) was full."""
    p = _ip("-n", NETNS, "-s", "-j", "link", "show", check=False)
    out = {}
    try:
        for link in json.loads(p.stdout or "[]"):
            name = link.get("ifname", "")
            if name.startswith(TAP_FMT.format("")):
                st = link.get("stats64", {})
                out[name] = {f"{d}_{k}": st.get(d, {}).get(k, 0) for d in ("rx", "tx")
                             for k in ("packets", "bytes", "dropped", "errors")}
    except ValueError:
        pass
    return out


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
        return (self.sd / "resp" / (self.job + ".json")).exists()

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
    import re
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


def cli(argv: list[str]) -> int:
    """`xdpscope vlab up|run|down|status|check` (main.py can hand its arguments over as they are)."""
    import argparse
    ap = parser()
    a = ap.parse_args(argv)
    return _run(ap, a)


def parser():
    """The `xdpscope vlab` argument parser; every option says what it does and its default."""
    import argparse
    ap = argparse.ArgumentParser(prog="xdpscope vlab", description="QEMU/TCG virtio_net lab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="boot the guest (3 virtio-net NICs behind taps in netns " + NETNS + ")")
    u.add_argument("--nics", type=int, default=3, help="virtio-net NICs of the guest (default: 3)")
    u.add_argument("--queues", type=int, default=4, help="queue pairs per NIC (default: 4)")
    u.add_argument("--cpus", type=int, default=2, help="guest vCPUs (default: 2)")
    u.add_argument("--memory", default="1G", help="guest memory, QEMU syntax (default: 1G)")
    u.add_argument("--kernel", help="guest kernel image (default: the newest installed Debian linux-image)")
    u.add_argument("--device-opts", default="default",
                   help="preset (" + ", ".join(DEVICE_OPTS) + ") or raw virtio-net-pci options (default: default)")
    u.add_argument("--nic-opts", action="append", default=[], metavar="N=OPTS",
                   help="device options (preset or raw) for NIC N only, e.g. 4=no-ctrl-offloads")
    r = sub.add_parser("run", help="run a command in the guest")
    r.add_argument("--timeout", type=float, default=600, help="seconds before the command is killed (default: 600)")
    r.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments (after --)")
    sub.add_parser("down", help="stop the guest, remove namespace and taps")
    sub.add_parser("status", help="print the running guest as JSON (exit 1 when down)")
    c = sub.add_parser("check", help="attach a counting XDP program to vnic1 and send frames")
    c.add_argument("mode", choices=("drop", "redirect"), nargs="?", default="drop",
                   help="what the program does with the frames (default: drop)")
    c.add_argument("--count", type=int, default=1000, help="frames to send (default: 1000)")
    return ap


def _run(ap, a) -> int:
    if a.cmd == "up":
        nic_opts = {}
        for item in a.nic_opts:
            n, sep, opts = item.partition("=")
            if not sep or not n.isdigit() or not 1 <= int(n) <= a.nics:
                ap.error(f"--nic-opts {item}: expected N=OPTS with N in 1..{a.nics}")
            nic_opts[int(n)] = DEVICE_OPTS.get(opts, opts)
        cfg = Config(nics=a.nics, queues=a.queues, cpus=a.cpus, memory=a.memory, kernel=a.kernel,
                     device_opts=DEVICE_OPTS.get(a.device_opts, a.device_opts), nic_opts=nic_opts)
        up(cfg, log=lambda m: print(m, file=sys.stderr))
        return 0
    if a.cmd == "run":
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        if not cmd:
            ap.error("run: no command")
        cp = run(cmd, timeout=a.timeout)
        sys.stdout.write(cp.stdout)
        sys.stderr.write(cp.stderr)
        return cp.returncode
    if a.cmd == "down":
        print("vlab: stopped" if down() else "vlab: was not up (cleaned anyway)", file=sys.stderr)
        return 0
    if a.cmd == "status":
        lab = status()
        print(json.dumps(asdict(lab), indent=1) if lab else "vlab: down")
        return 0 if lab else 1
    if a.cmd == "check":
        print(json.dumps(xdp_check(a.mode, a.count), indent=1))
        return 0
    return 2


if __name__ == "__main__":
    try:
        sys.exit(cli(sys.argv[1:]))
    except XdpscopeError as e:
        print(f"xdpscope: {e}", file=sys.stderr)
        sys.exit(e.code)
