"""Observer overhead: live-frame redirect Mpps of the instrumented `redirect` program with the
default probes (A), divided by the same program built without instrumentation and with no probes
(B); and, as the peer's figure, the bare program observed the way other tools see the fan-out (C):
a classic tracepoint program on xdp:xdp_redirect, run per packet, counting per target in a per-CPU
map (the kernel samples' xdp_monitor and xdp_redirect_* did this; PEER_C below).

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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.kernel import attach, compile as bcompile, host, injector, nic, probes, programs  # noqa: E402
from backend.labs import veth as lab  # noqa: E402

PEER_C = """
BPF_PERCPU_HASH(redirects, u32, u64, 1024);
TRACEPOINT_PROBE(xdp, xdp_redirect)
{
    u32 to = args->to_ifindex;
    u64 zero = 0, *n = redirects.lookup_or_try_init(&to, &zero);
    if (n)
        (*n)++;
    return 0;
}
"""


def mpps(prog_fd: int, iface: nic.Interface, frames: int, batch: int, cpu: int) -> tuple[float, float]:
    """(Mpps by the wall clock, Mpps by this thread's CPU time). The frames' XDP run, devmap
    flushes and the targets' NAPI polls (softirq at local_bh_enable) run in this thread's syscall,
    so its CPU time is their cost; unlike the wall clock it leaves out the time other work held the
    CPU, which dominates the spread on a shared machine."""
    link = attach.attach(prog_fd, iface, "native")
    try:
        c0 = time.thread_time()
        r = injector.inject(iface.name, frames, batch=batch, cpu=cpu)
        return frames / r.seconds / 1e6, frames / (time.thread_time() - c0) / 1e6
    finally:
        link.close()


class Observer:
    """A bcc module whose tracepoint programs are attached for a run and detached after it."""

    def __init__(self, bpf):
        self.bpf = bpf
        self.set(False)   # loading attached them; each run turns its own on

    def set(self, on: bool) -> None:
        if on:
            self.bpf.attach_probes()
            return
        for tp in list(self.bpf.raw_tracepoint_fds):
            self.bpf.detach_raw_tracepoint(tp)
        for tp in list(self.bpf.tracepoint_fds):
            self.bpf.detach_tracepoint(tp)


class OneProbe:
    """One raw tracepoint program of a module attached for a run."""

    def __init__(self, bpf, fn: str):
        self.bpf, self.fn, self.tp = bpf, fn.encode(), fn[len("raw_tracepoint__"):].encode()

    def set(self, on: bool) -> None:
        if on:
            self.bpf.attach_raw_tracepoint(tp=self.tp, fn_name=self.fn)
        else:
            self.bpf.detach_raw_tracepoint(tp=self.tp)


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
    ap.add_argument("--per-probe", action="store_true",
                    help="also each part alone: the verdict counters, and each probe on the bare program")
    a = ap.parse_args()
    host.require_root("the benchmark")
    os.sched_setaffinity(0, {a.cpu})  # this process and the injection it drives: one CPU
    topo = lab.up("bench", a.targets)
    try:
        iface = nic.interface(topo.ingress)
        spec = dict(name="redirect", targets=topo.targets)
        instrumented = programs.load(programs.ProgramSpec(**spec), nic.ifindex_of)
        bare = programs.load(programs.ProgramSpec(**spec, count=False), nic.ifindex_of)
        prb = probes.load(iface.ifindex, targets=[nic.ifindex_of(t) for t in topo.targets], cpumap_id=0)
        enabled = prb.enabled
        default_probes = Observer(prb.bpf)
        peer = Observer(bcompile.compile_bpf(PEER_C, [], "peer tracepoint"))
        variants = {"A": (instrumented.fd, default_probes), "B": (bare.fd, None), "C": (bare.fd, peer)}
        if a.per_probe:
            variants["counters"] = (instrumented.fd, None)
            for fn in prb.bpf.function_names():
                if fn.startswith("raw_tracepoint__"):
                    variants[fn[len("raw_tracepoint__"):]] = (bare.fd, OneProbe(prb.bpf, fn))
        mpps(bare.fd, iface, a.frames // 4, a.batch, a.cpu)  # warm-up
        runs: dict[str, list[float]] = {k: [] for k in variants}
        cpu_runs: dict[str, list[float]] = {k: [] for k in variants}
        order = list(variants)
        for r in range(a.rounds):
            for k in order[r % len(order):] + order[:r % len(order)]:
                fd, p = variants[k]
                if p:
                    p.set(True)
                wall, cpu = mpps(fd, iface, a.frames, a.batch, a.cpu)
                runs[k].append(wall)
                cpu_runs[k].append(cpu)
                if p:
                    p.set(False)
        ab = [x / y for x, y in zip(runs["A"], runs["B"])]
        cb = [x / y for x, y in zip(runs["C"], runs["B"])]
        ab_cpu = [x / y for x, y in zip(cpu_runs["A"], cpu_runs["B"])]
        cb_cpu = [x / y for x, y in zip(cpu_runs["C"], cpu_runs["B"])]
        parts = {k: spread([x / y for x, y in zip(cpu_runs[k], cpu_runs["B"])]) for k in variants if k not in "ABC"}
        result = {
            "frames_per_run": a.frames, "rounds": a.rounds, "batch": a.batch, "targets": a.targets,
            "cpu": a.cpu, "probes": enabled, "peer": "classic tracepoint xdp:xdp_redirect, per-CPU count per target",
            "mpps": {k: spread(v) for k, v in runs.items()},
            "ratio_instrumented_over_bare": spread(ab),
            "ratio_per_packet_peer_over_bare": spread(cb),
            "cpu_time_mpps": {k: spread(v) for k, v in cpu_runs.items()},
            "cpu_time_ratio_instrumented_over_bare": spread(ab_cpu),
            "cpu_time_ratio_per_packet_peer_over_bare": spread(cb_cpu),
            **({"cpu_time_ratio_each_part_over_bare": parts} if parts else {}),
            "runs_mpps": {k: [round(x, 3) for x in v] for k, v in runs.items()},
            "runs_cpu_time_mpps": {k: [round(x, 3) for x in v] for k, v in cpu_runs.items()},
        }
        result["load_average_at_end"] = os.getloadavg()[0]
        print(json.dumps(result, indent=2))
        bcompile.release(peer.bpf)
        prb.close()
        bare.close()
        instrumented.close()
        return 0
    finally:
        lab.down("bench")

if __name__ == "__main__":
    sys.exit(main())
