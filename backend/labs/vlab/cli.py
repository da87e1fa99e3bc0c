"""`xdpscope vlab up|run|down|status|check` (docs/vlab.md); main.py hands its arguments over."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from backend.errors import XdpscopeError
from backend.labs.vlab.checks import xdp_check
from backend.labs.vlab.host import DEVICE_OPTS, NETNS, Config, down, run, status, up

def cli(argv: list[str]) -> int:
    """`xdpscope vlab up|run|down|status|check` (main.py can hand its arguments over as they are)."""
    ap = parser()
    a = ap.parse_args(argv)
    return _run(ap, a)


def parser():
    """The `xdpscope vlab` argument parser; every option says what it does and its default."""
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
