#!/usr/bin/env python3
"""xdpscope vlab guest agent: runs inside the QEMU guest (as virtme-ng's --exec command).

Stdlib only; runs under the guest's /usr/bin/python3 (the host's own, read-only via 9p).
The host and the guest share one directory (virtme-ng --rwdir, 9p). Protocol, all files JSON,
written to a temporary name and renamed, so a reader never sees half a file:

  ready.json          guest -> host, once NICs are renamed and up: kernel, NICs, boot time
  req/<id>.json       host -> guest: {"argv": [...], "timeout": s|null, "cwd": str|null,
                                      "input": str|null}  or  {"op": "shutdown"}
  resp/<id>.json      guest -> host: {"rc": int, "stdout": str, "stderr": str, "elapsed": s}

Each request runs in its own thread, so a long command (a collector) and short ones (ethtool -S)
can run side by side. On "shutdown" the agent answers and exits; virtme-ng then powers off.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def sh(*argv):
    return subprocess.run(argv, capture_output=True, text=True)


def setup_nics(nics):
    """nics: list of (mac, wanted_name). Rename by MAC, disable IPv6 (no noise), bring up."""
    for key in ("all", "default"):
        try:
            with open(f"/proc/sys/net/ipv6/conf/{key}/disable_ipv6", "w") as f:
                f.write("1")
        except OSError:
            pass
    by_mac = {}
    for name in os.listdir("/sys/class/net"):
        try:
            with open(f"/sys/class/net/{name}/address") as f:
                by_mac[f.read().strip().lower()] = name
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
            r = sh("ip", "link", "set", "dev", cur, "name", want)
            if r.returncode != 0:
                want = cur
        sh("ip", "link", "set", "dev", want, "up")
        with open(f"/sys/class/net/{want}/ifindex") as f:
            ifindex = int(f.read())
        drv = os.path.basename(os.path.realpath(f"/sys/class/net/{want}/device/driver"))
        out[want] = {"mac": mac, "ifindex": ifindex, "driver": drv}
    return out


def handle(spool, rid, req):
    t0 = time.monotonic()
    try:
        p = subprocess.run(req["argv"], capture_output=True, text=True, errors="replace",
                           timeout=req.get("timeout"), cwd=req.get("cwd"),
                           input=req.get("input"))
        resp = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
    except subprocess.TimeoutExpired as e:
        resp = {"rc": 124, "stdout": (e.stdout or b"").decode(errors="replace")
                if isinstance(e.stdout, bytes) else (e.stdout or ""),
                "stderr": f"vlab guest: timed out after {req.get('timeout')} s"}
    except Exception as e:  # noqa: BLE001 - report anything to the host, never die
        resp = {"rc": 127, "stdout": "", "stderr": f"vlab guest: {type(e).__name__}: {e}"}
    resp["elapsed"] = time.monotonic() - t0
    write_json(os.path.join(spool, "resp", rid + ".json"), resp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spool", required=True)
    ap.add_argument("--nic", action="append", default=[], help="MAC=NAME")
    ap.add_argument("--poll", type=float, default=0.05)
    a = ap.parse_args()
    for d in ("req", "resp"):
        os.makedirs(os.path.join(a.spool, d), exist_ok=True)
    if not os.path.ismount("/sys/fs/bpf"):
        sh("mount", "-t", "bpf", "bpf", "/sys/fs/bpf")
    nics = setup_nics([tuple(x.split("=", 1)) for x in a.nic])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    write_json(os.path.join(a.spool, "ready.json"),
               {"kernel": os.uname().release, "nics": nics, "uptime": uptime,
                "ncpus": os.cpu_count(), "pid": os.getpid()})
    reqdir = os.path.join(a.spool, "req")
    seen = set()
    threads = []
    while True:
        try:
            names = sorted(n for n in os.listdir(reqdir) if n.endswith(".json"))
        except OSError:
            names = []
        for n in names:
            if n in seen:
                continue
            seen.add(n)
            path = os.path.join(reqdir, n)
            try:
                with open(path) as f:
                    req = json.load(f)
                os.unlink(path)
            except (OSError, ValueError):
                seen.discard(n)
                continue
            rid = n[:-5]
            if req.get("op") == "shutdown":
                for t in threads:
                    t.join(timeout=req.get("grace", 5))
                write_json(os.path.join(a.spool, "resp", rid + ".json"),
                           {"rc": 0, "stdout": "", "stderr": "", "elapsed": 0})
                return 0
            t = threading.Thread(target=handle, args=(a.spool, rid, req), daemon=True)
            t.start()
            threads.append(t)
        threads = [t for t in threads if t.is_alive()]
        time.sleep(a.poll)


if __name__ == "__main__":
    sys.exit(main())
