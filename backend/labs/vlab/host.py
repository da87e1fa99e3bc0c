"""The vlab's host side: the lab namespace and its taps, the QEMU/TCG guest booted with virtme-ng,
its state (lab.json), and commands run in the guest through the spool (rpc.py).

Layout (all names are ours; nothing outside the lab namespace is touched, eth0 never):

    host netns "xdpscope-vlab"                    guest (QEMU, TCG, runs inside that netns)
      vlabtap1 (tap, multi_queue) -- netdev n1 -- virtio-net-pci mac 52:54:00:5c:0e:01 -> vnic1
      vlabtap2                    -- netdev n2 -- virtio-net-pci mac 52:54:00:5c:0e:02 -> vnic2
      vlabtap3                    -- netdev n3 -- virtio-net-pci mac 52:54:00:5c:0e:03 -> vnic3

Host and guest exchange files through one shared read-write directory (virtme-ng --rwdir, 9p),
the same path on both sides: STATE_DIR (default /tmp/xdpscope-vlab). The whole host filesystem
is visible read-only in the guest (so this project, its venv, bcc and the 6.1 headers are there);
/tmp and /var are copy-on-write tmpfs overlays.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.errors import XdpscopeError
from backend.labs.vlab import rpc

ROOT = Path(__file__).resolve().parents[3]

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
    agent = guest_module("guest", "--spool", sd)
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
    rpc.make_spool(sd)
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
        ready_path = rpc.ready_path(sd)
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


def start(command: list[str], *, timeout: float | None = None, cwd: str | None = None,
          input: str | None = None, state_dir: Path | None = None) -> str:
    """Start a command in the guest; returns a job id for wait(). Jobs run concurrently."""
    sd = Path(state_dir or STATE_DIR)
    if not status(sd):
        raise XdpscopeError("vlab: no lab is up (xdpscope vlab up)")
    return rpc.submit(sd, {"argv": list(command), "timeout": timeout, "cwd": cwd, "input": input})


def wait(job: str, *, timeout: float | None = None, state_dir: Path | None = None,
         command: list[str] | None = None) -> subprocess.CompletedProcess:
    sd = Path(state_dir or STATE_DIR)
    path = rpc.response_path(sd, job)
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
            rid = rpc.submit(sd, {"op": "shutdown", "grace": 2})
            t0 = time.monotonic()
            while time.monotonic() - t0 < grace and _alive_unreaped(pid):
                time.sleep(0.1)
            rpc.response_path(sd, rid).unlink(missing_ok=True)
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


def guest_module(name: str, *args: str) -> list[str]:
    """The command that runs this package's module `name` in the guest, under its system python
    (it has Debian's bcc), with this checkout on the path (the host's filesystem, over 9p)."""
    return ["env", f"PYTHONPATH={ROOT}", GUEST_PYTHON, "-m", f"backend.labs.vlab.{name}", *args]
