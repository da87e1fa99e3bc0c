"""Observer overhead: live-frame redirect Mpps of the instrumented `redirect` program with the
default probes, divided by the same program built without instrumentation and with no probes.

Both variants run interleaved in one process (A B A B ...) on the same lab, so machine noise
hits both alike; the ratio of the medians is reported. Goal: >= 0.97.

    sudo .venv/bin/python benchmarks/overhead.py [--frames 2000000] [--rounds 7]
"""
from __future__ import annotations

import argparse
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--targets", type=int, default=2)
    a = ap.parse_args()
    host.require_root("the benchmark")
    topo = lab.up("bench", a.targets)
    try:
        iface = nic.interface(topo.ingress)
        spec = dict(name="redirect", targets=topo.targets)
        instrumented = programs.load(programs.ProgramSpec(**spec), nic.ifindex_of)
        bare = programs.load(programs.ProgramSpec(**spec, count=False), nic.ifindex_of)
        prb = probes.load(iface.ifindex)
        set_probes(prb, False)  # loading attached them; each round turns them on for its turn
        mpps(bare.fd, iface, a.frames // 4, a.batch)  # warm-up
        with_obs, without = [], []
        for _ in range(a.rounds):
            set_probes(prb, True)
            with_obs.append(mpps(instrumented.fd, iface, a.frames, a.batch))
            set_probes(prb, False)
            without.append(mpps(bare.fd, iface, a.frames, a.batch))
        result = {
            "frames_per_run": a.frames, "rounds": a.rounds, "batch": a.batch, "targets": a.targets,
            "probes": prb.enabled, "raw_tracepoints": prb.raw,
            "instrumented_mpps": [round(x, 3) for x in with_obs],
            "bare_mpps": [round(x, 3) for x in without],
            "median_instrumented_mpps": round(statistics.median(with_obs), 3),
            "median_bare_mpps": round(statistics.median(without), 3),
            "ratio": round(statistics.median(with_obs) / statistics.median(without), 4),
            # each round's two runs sit side by side in time: their ratio cancels slow drifts
            "paired_ratio_median": round(statistics.median(w / b for w, b in zip(with_obs, without)), 4),
        }
        print(json.dumps(result, indent=2))
        return 0
    finally:
        lab.down("bench")


if __name__ == "__main__":
    sys.exit(main())
