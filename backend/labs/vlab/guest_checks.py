"""The vlab's check programs, run in the guest under its system python (Debian's bcc) by
checks.py: `python3 -m backend.labs.vlab.guest_checks xdp|attach ...`.

xdp: compiles a small XDP program of its own with bcc (an oracle apart from xdpscope's programs),
  attaches it natively (XDP_FLAGS_DRV_MODE) to --dev, writes DIR/attached (JSON: compile and attach
  times), waits until DIR/stop exists, then prints one JSON object: the program's own per-CPU
  counters summed, per target, and the driver's ethtool -S counters of every NIC involved
  (before/after deltas), and detaches.
    drop:      counts every frame (and those with ethertype 0x88b5) and returns XDP_DROP.
    redirect:  frames with ethertype 0x88b5 go round-robin (a per-CPU counter) through a devmap to
               the --to NICs; anything else passes. The targets get an XDP_PASS program, which
               virtio_net needs before it accepts ndo_xdp_xmit (without: -ENXIO, redirect errors).
attach: tries an XDP attach on NICs the way xdpscope attaches (backend/kernel/bpfsys: a bpf_link
  to a two-instruction XDP_PASS program, no compiler: bcc under TCG takes tens of seconds) and
  prints {nic: {"ok": bool, "errno": "EOPNOTSUPP", "error": str}}.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
import time

from backend.kernel import bpfsys

PROG = r"""
#include <uapi/linux/if_ether.h>
BPF_PERCPU_ARRAY(cnt, u64, 8);     /* 0 all, 1 magic, 2.. per target */
BPF_PERCPU_ARRAY(rr, u32, 1);
#if MODE_REDIRECT
BPF_DEVMAP(tx, NTARGETS);
#endif

static __always_inline void inc(int k) { u64 *v = cnt.lookup(&k); if (v) *v += 1; }

int xdp_main(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    inc(0);
    if ((void *)(eth + 1) > end)
        return XDP_PASS;
    int magic = eth->h_proto == bpf_htons(0x88b5);
    if (magic)
        inc(1);
#if MODE_REDIRECT
    if (!magic)
        return XDP_PASS;
    int z = 0;
    u32 *r = rr.lookup(&z);
    if (!r)
        return XDP_ABORTED;
    u32 t = *r % NTARGETS;
    *r += 1;
    inc(2 + t);
    return tx.redirect_map(t, 0);
#else
    return XDP_DROP;
#endif
}

int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }
"""


def ethtool_stats(dev: str) -> dict:
    p = subprocess.run(["ethtool", "-S", dev], capture_output=True, text=True)
    out = {}
    for line in p.stdout.splitlines()[1:]:
        if ":" in line:
            k, v = line.rsplit(":", 1)
            try:
                out[k.strip()] = int(v)
            except ValueError:
                pass
    return out


def summed(stats: dict) -> dict:
    """rx_queue_0_xdp_drops + rx_queue_1_xdp_drops ... -> rx_xdp_drops (and tx_ likewise)."""
    tot = {}
    for k, v in stats.items():
        parts = k.split("_")
        if len(parts) > 3 and parts[1] == "queue" and parts[2].isdigit():
            key = parts[0] + "_" + "_".join(parts[3:])
            tot[key] = tot.get(key, 0) + v
    return tot


def delta(a: dict, b: dict) -> dict:
    return {k: b[k] - a.get(k, 0) for k in b if b[k] - a.get(k, 0)}


def xdp_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="guest_checks xdp")
    ap.add_argument("mode", choices=("drop", "redirect"))
    ap.add_argument("--dev", required=True)
    ap.add_argument("--to", action="append", default=[])
    ap.add_argument("--marker", required=True)
    ap.add_argument("--no-target-prog", action="store_true")
    ap.add_argument("--generic", action="store_true", help="attach in generic (skb) mode instead")
    ap.add_argument("--max-wait", type=float, default=600)
    a = ap.parse_args(argv)

    t0 = time.monotonic()
    from bcc import BPF
    t1 = time.monotonic()
    redirect = a.mode == "redirect"
    cflags = ["-DMODE_REDIRECT=%d" % redirect, "-DNTARGETS=%d" % max(1, len(a.to))]
    b = BPF(text=PROG, cflags=cflags)
    fn = b.load_func("xdp_main", BPF.XDP)
    t2 = time.monotonic()
    flags = BPF.XDP_FLAGS_SKB_MODE if a.generic else BPF.XDP_FLAGS_DRV_MODE
    devs = [a.dev] + a.to
    attached = []
    result = {"mode": a.mode, "dev": a.dev, "targets": a.to, "import_s": t1 - t0, "compile_s": t2 - t1}
    try:
        if redirect:
            tx = b["tx"]
            for i, d in enumerate(a.to):
                with open(f"/sys/class/net/{d}/ifindex") as f:
                    tx[tx.Key(i)] = tx.Leaf(int(f.read()))
            if not a.no_target_prog:
                fp = b.load_func("xdp_pass", BPF.XDP)
                for d in a.to:
                    b.attach_xdp(d, fp, flags)
                    attached.append(d)
        before = {d: ethtool_stats(d) for d in devs}
        b.attach_xdp(a.dev, fn, flags)
        attached.append(a.dev)
        t3 = time.monotonic()
        result["attach_s"] = t3 - t2
        tmp = os.path.join(a.marker, "attached.tmp")
        with open(tmp, "w") as f:
            json.dump(result, f)
        os.rename(tmp, os.path.join(a.marker, "attached"))
        stop = os.path.join(a.marker, "stop")
        while not os.path.exists(stop) and time.monotonic() - t3 < a.max_wait:
            time.sleep(0.05)
        cnt = b["cnt"]
        vals = [sum(cnt[cnt.Key(k)]) for k in range(8)]
        result["prog"] = {"all": vals[0], "magic": vals[1],
                          "per_target": {d: vals[2 + i] for i, d in enumerate(a.to)}}
        result["per_cpu_all"] = list(cnt[cnt.Key(0)])
        after = {d: ethtool_stats(d) for d in devs}
        result["ethtool"] = {d: summed(delta(before[d], after[d])) for d in devs}
        result["ethtool_raw"] = {d: delta(before[d], after[d]) for d in devs}
    finally:
        for d in attached:
            b.remove_xdp(d, flags)
    json.dump(result, sys.stdout)
    print()
    return 0


def attach_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="guest_checks attach")
    ap.add_argument("nics", nargs="+", help="guest NICs to try")
    ap.add_argument("--mode", choices=("native", "generic"), default="native", help="XDP attach mode")
    ap.add_argument("--hold", type=float, default=0.0, help="seconds to keep the links before closing them")
    a = ap.parse_args(argv)
    flags = {"native": bpfsys.XDP_FLAGS_DRV_MODE, "generic": bpfsys.XDP_FLAGS_SKB_MODE}[a.mode]
    prog = bpfsys.load_xdp_pass(b"xs_vlab_pass")
    out, links = {}, []
    try:
        for nic in a.nics:
            with open(f"/sys/class/net/{nic}/ifindex") as f:
                ifindex = int(f.read())
            try:
                links.append(bpfsys.xdp_link_create(prog, ifindex, flags))
                out[nic] = {"ok": True, "errno": "", "error": ""}
            except OSError as e:   # 95 is both ENOTSUP and EOPNOTSUPP on Linux; the kernel says EOPNOTSUPP
                name = "EOPNOTSUPP" if e.errno == errno.EOPNOTSUPP else errno.errorcode.get(e.errno, str(e.errno))
                out[nic] = {"ok": False, "errno": name, "error": os.strerror(e.errno)}
            if not a.hold:
                for fd in links:
                    os.close(fd)
                links = []
        time.sleep(a.hold if links else 0)
    finally:
        for fd in links:
            os.close(fd)
        os.close(prog)
    json.dump(out, sys.stdout)
    print()
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("xdp", "attach"):
        print("usage: guest_checks xdp|attach ...", file=sys.stderr)
        return 2
    return (xdp_main if argv[0] == "xdp" else attach_main)(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
