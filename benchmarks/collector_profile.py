"""Where one collector sample's CPU time goes, in-process, idle and under live traffic: the read
(maps, prog info, ethtool) into the counter vector, the delta and decode to a Sample, and the
JSON line the agent writes (Collector.to_json).
One sample every 10 ms as in the agent at 100 Hz (a tight loop would keep caches warm and
understate it); this process on CPU 0, the injector thread on the last CPU.

    sudo .venv/bin/python benchmarks/collector_profile.py [--samples 300] [--targets 4]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.agent.session import Session, SessionConfig  # noqa: E402
from backend.kernel import host, injector, programs  # noqa: E402
from backend.labs import veth as lab  # noqa: E402


def measure(c, n: int) -> dict:
    """The agent's sampling path, split in its phases: Collector.sample (the read into the
    counter vector; the delta and decode of what a Sample shows) and the sample's JSON line
    (Collector.to_json, as the agent writes it)."""
    parts = {"read": 0.0, "delta_and_decode": 0.0, "json": 0.0}
    c.baseline()
    size = shown = 0
    for _ in range(n):
        time.sleep(0.01)
        t0 = time.thread_time()
        user = c._read_vector()
        t1 = time.thread_time()
        s = c._decoded(user)
        t2 = time.thread_time()
        line = '{"event":"sample","sample":' + c.to_json(s) + "}"
        t3 = time.thread_time()
        for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
            parts[k] += v
        size, shown = len(line), len(s.leaves())
    return {**{f"{k}_ms": round(v * 1000 / n, 3) for k, v in parts.items()},
            "total_ms": round(sum(parts.values()) * 1000 / n, 3),
            "raw_keys": len(c._vec.order), "leaves": shown, "json_bytes": size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--targets", type=int, default=4)
    a = ap.parse_args()
    host.require_root("the benchmark")
    topo = lab.up("cp", a.targets)
    stop = threading.Event()

    def traffic() -> None:
        os.sched_setaffinity(0, {os.cpu_count() - 1})   # this thread only
        while not stop.is_set():
            injector.inject(topo.ingress, 200_000, cpu=os.cpu_count() - 1)

    try:
        s = Session(SessionConfig(iface=topo.ingress, program=programs.ProgramSpec(name="redirect", targets=topo.targets),
                                  hz=100, run_time=True, trace_redirects=True))
        s.start()
        try:
            os.sched_setaffinity(0, {0})
            out = {"idle": measure(s.collector, a.samples)}
            th = threading.Thread(target=traffic)
            th.start()
            time.sleep(1)
            out["traffic"] = measure(s.collector, a.samples)
            stop.set()
            th.join()
        finally:
            s.close()
    finally:
        stop.set()
        lab.down("cp")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
