#!/usr/bin/env python3
"""Guest-side check program for the vlab (runs in the QEMU guest under /usr/bin/python3 + bcc).

  guest_xdp.py drop     --dev vnic1 --marker DIR
  guest_xdp.py redirect --dev vnic1 --to vnic2 --to vnic3 --marker DIR [--no-target-prog]

Compiles a small XDP program with bcc, attaches it natively (XDP_FLAGS_DRV_MODE) to --dev,
writes DIR/attached (JSON: compile and attach times), waits until DIR/stop exists, then prints
one JSON object: the program's own per-CPU counters summed, per target, and the driver's ethtool -S
counters of every NIC involved (before/after deltas), and detaches.

drop:      counts every frame (and the ones with ethertype 0x88b5) and returns XDP_DROP.
redirect:  frames with ethertype 0x88b5 go round-robin (a per-CPU counter) through a devmap to
           the --to NICs; anything else passes. The targets get an XDP_PASS program, which
           virtio_net needs before it accepts ndo_xdp_xmit (without: -ENXIO, redirect errors).
"""
import argparse
import json
import os
import subprocess
import sys
import time

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


def ethtool_stats(dev):
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


def summed(stats):
    """rx_queue_0_xdp_drops + rx_queue_1_xdp_drops ... -> rx_xdp_drops (and tx_ likewise)."""
    tot = {}
    for k, v in stats.items():
        parts = k.split("_")
        if len(parts) > 3 and parts[1] == "queue" and parts[2].isdigit():
            key = parts[0] + "_" + "_".join(parts[3:])
            tot[key] = tot.get(key, 0) + v
    return tot


def delta(a, b):
    return {k: b[k] - a.get(k, 0) for k in b if b[k] - a.get(k, 0)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("drop", "redirect"))
    ap.add_argument("--dev", required=True)
    ap.add_argument("--to", action="append", default=[])
    ap.add_argument("--marker", required=True)
    ap.add_argument("--no-target-prog", action="store_true")
    ap.add_argument("--generic", action="store_true", help="attach in generic (skb) mode instead")
    ap.add_argument("--max-wait", type=float, default=600)
    a = ap.parse_args()

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


if __name__ == "__main__":
    sys.exit(main())
