"""The vlab's guest agent: virtme-ng's --exec command in the QEMU guest (`python3 -m
backend.labs.vlab.guest --spool DIR --nic MAC=NAME ...`). It names the NICs by MAC, brings them
up, says ready (rpc.ready_path) and serves the host's requests (rpc.serve) until shutdown, after
which virtme-ng powers the guest off. Stdlib only: it runs under the guest's system python."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from backend.labs.vlab import rpc


def sh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


def setup_nics(nics: list[tuple[str, str]]) -> dict:
    """nics: (mac, wanted name). Rename by MAC, disable IPv6 (no noise in exact counts), bring up."""
    for key in ("all", "default"):
        try:
            Path(f"/proc/sys/net/ipv6/conf/{key}/disable_ipv6").write_text("1")
        except OSError:
            pass
    by_mac = {}
    for name in os.listdir("/sys/class/net"):
        try:
            by_mac[Path(f"/sys/class/net/{name}/address").read_text().strip().lower()] = name
        except OSError:
            pass
    out = {}
    for mac, want in nics:
        cur = by_mac.get(mac.lower())
        if cur is None:
            out[want] = {"mac": mac, "error": "not found"}
            continue
        if cur != want:
            sh("ip", "link", "set", "dev", cur, "down")
            if sh("ip", "link", "set", "dev", cur, "name", want).returncode != 0:
                want = cur
        sh("ip", "link", "set", "dev", want, "up")
        ifindex = int(Path(f"/sys/class/net/{want}/ifindex").read_text())
        drv = os.path.basename(os.path.realpath(f"/sys/class/net/{want}/device/driver"))
        out[want] = {"mac": mac, "ifindex": ifindex, "driver": drv}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description="vlab guest agent (runs in the guest)")
    ap.add_argument("--spool", required=True, help="the shared directory")
    ap.add_argument("--nic", action="append", default=[], help="MAC=NAME: the name the NIC with MAC gets")
    ap.add_argument("--poll", type=float, default=0.05, help="seconds between looks at the request spool")
    a = ap.parse_args()
    sd = Path(a.spool)
    for d in ("req", "resp"):
        (sd / d).mkdir(parents=True, exist_ok=True)
    if not os.path.ismount("/sys/fs/bpf"):
        sh("mount", "-t", "bpf", "bpf", "/sys/fs/bpf")
    nics = setup_nics([tuple(x.split("=", 1)) for x in a.nic])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    rpc.write_json(rpc.ready_path(sd), {"kernel": os.uname().release, "nics": nics, "uptime": uptime,
                                        "ncpus": os.cpu_count(), "pid": os.getpid()})
    return rpc.serve(sd, a.poll)


if __name__ == "__main__":
    sys.exit(main())
