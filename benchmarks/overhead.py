"""Observer overhead: live-frame redirect Mpps of the instrumented `redirect` program with the
default probes (A), divided by the same program built without instrumentation and with no probes
(B); and, as the peer's figure, the bare program with only the per-packet xdp:xdp_redirect
tracepoint that other tools (xdp-monitor, xdp_redirect_* samples) need to see the fan-out (C).

Precision: the injector runs pinned to one CPU (--cpu), the three variants alternate in a rotated
order round after round (A B C, B C A, C A B, ...) in one process, so slow drifts and machine noise
hit all alike; each round gives paired ratios A/B and C/B, and the median of those is reported
with its spread (interquartile range and a 95 % bootstrap interval of the median). Goal: A/B >= 0.97.

    sudo .venv/bin/python benchmarks/overhead.py [--frames 2000000] [--rounds 31] [--cpu 1]
"""
from __future__ import annotations

import argparse
import os
import random
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.kernel import attach, host, injector, nic, probes, programs
from backend.labs import veth as lab  # noqa: E402


def mpps(prog_fd: int, iface: nic.Interface, frames: int, batch: int) -> float:
    link = attach.attach(prog_fd, iface, "native")
    try:
        r = injector.inject(iface.name, frames, batch=batch)
        return frames / r.seconds / 1e6
    finally:
        link.close()


def set_probes(p: probes.Probes, on: bool) -> None:
    """Attach or detach every probe of the session, as loading attached them."""
    for tp in p.enabled:
        cat, name = tp.split(":")
        if p.raw and tp in probes.RAW_PROBES:
            if on:
                p.bpf.attach_raw_tracepoint(tp=name.encode(), fn_name=f"raw_tracepoint__{name}".encode())
            else:
                p.bpf.detach_raw_tracepoint(tp=name.encode())
        elif on:
            p.bpf.attach_tracepoint(tp=tp.encode(), fn_name=f"tracepoint__{cat}__{name}".encode())
        else:
            p.bpf.detach_tracepoint(tp.encode())


def spread(xs: list[float], seed: int = 1) -> dict:
    """Median, interquartile range and a 95 % bootstrap interval of the median."""
    q = statistics.quantiles(xs, n=4)
    rnd = random.Random(seed)
    boots = sorted(statistics.median(rnd.choices(xs, k=len(xs))) for _ in range(2000))
    return {"median": round(statistics.median(xs), 4), "iqr": [round(q[0], 4), round(q[2], 4)],
            "ci95": [round(boots[50], 4), round(boots[1949], 4)], "n": len(xs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=2_000_000, help="frames per run (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=31, help="rounds of the three variants (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=64, help="injector batch (default: %(default)s)")
    ap.add_argument("--targets", type=int, default=2, help="redirect targets (default: %(default)s)")
    ap.add_argument("--cpu", type=int, default=os.cpu_count() - 1, help="CPU the injection runs on (default: the last)")
    a = ap.parse_args()
    host.require_root("the benchmark")
    os.sched_setaffinity(0, {a.cpu})  # this process and the injection it drives: one CPU
    topo = lab.up("bench", a.targets)
    try:
        iface = nic.interface(topo.ingress)
        spec = dict(name="redirect", targets=topo.targets)
        instrumented = programs.load(programs.ProgramSpec(**spec), nic.ifindex_of)
        bare = programs.load(programs.ProgramSpec(**spec, count=False), nic.ifindex_of)
        prb = probes.load(iface.ifindex)
        per_packet = probes.load(iface.ifindex, trace_redirects=True)
        set_probes(prb, False)  # loading attached them; each run turns its own on
        set_probes(per_packet, False)
        per_packet.enabled = ["xdp:xdp_redirect"]  # the peer method: only the per-packet probe
        variants = {"A": (instrumented.fd, prb), "B": (bare.fd, None), "C": (bare.fd, per_packet)}
        mpps(bare.fd, iface, a.frames // 4, a.batch)  # warm-up
        runs: dict[str, list[float]] = {k: [] for k in variants}
        order = list(variants)
        for r in range(a.rounds):
            for k in order[r % 3:] + order[:r % 3]:
                fd, p = variants[k]
                if p:
                    set_probes(p, True)
                runs[k].append(mpps(fd, iface, a.frames, a.batch))
                if p:
                    set_probes(p, False)
        ab = [x / y for x, y in zip(runs["A"], runs["B"])]
        cb = [x / y for x, y in zip(runs["C"], runs["B"])]
        result = {
            "frames_per_run": a.frames, "rounds": a.rounds, "batch": a.batch, "targets": a.targets,
            "cpu": a.cpu, "probes": prb.enabled, "raw_tracepoints": prb.raw,
            "mpps": {k: spread(v) for k, v in runs.items()},
            "ratio_instrumented_over_bare": spread(ab),
            "ratio_per_packet_peer_over_bare": spread(cb),
            "runs_mpps": {k: [round(x, 3) for x in v] for k, v in runs.items()},
        }
        print(json.dumps(result, indent=2))
        return 0
    finally:
        lab.down("bench")

if __name__ == "__main__":
    sys.exit(main())
