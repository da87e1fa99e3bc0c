"""GUI memory over a simulated live session at 20 Hz (time-compressed: no sleeping).

A main window (offscreen Qt, 1600x1000, a 3600 s window: the worst case for the plot caches) gets
samples as a live source delivers them (model.append, 8 targets, 2 CPUs, every panel's data
present), and draws a forced frame (every panel) every --frame-every simulated seconds. The
resident set size (VmRSS of this process) is read every simulated minute.

The history is a fixed-capacity ring (72,000 samples = 1 h at 20 Hz) stored as a "linear ring":
numpy arrays of 2 x capacity rows, allocated up front (untouched pages cost no RAM), appended in
place and compacted (the newest hour copied to the front) every `capacity` samples once full. So
RSS grows while the rows of the second half are first written (hours 1-2) and is flat from then
on, whatever the session length: the third hour is the check (`--hours 3`, the default).

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_memory.py [--hours 3]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))



def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=3.0, help="simulated session length")
    ap.add_argument("--frame-every", type=float, default=5.0, help="simulated seconds between drawn frames")
    ap.add_argument("--hz", type=float, default=20.0)
    ap.add_argument("--targets", type=int, default=8)
    ap.add_argument("--window", type=int, default=3600)
    a = ap.parse_args()

    from gui.sources import Source
    from benchmarks.gui_common import bench_window
    from gui.testing import synthetic

    app, tmpdir, w = bench_window(1600, 1000)
    tmp = tmpdir.name
    w.window_box.setValue(a.window)
    w.show()
    src = Source(w)
    w.set_source(src)
    app.processEvents()
    gc.collect()
    start = rss_mb()
    dt = 1.0 / a.hz
    per_frame, per_min = max(int(a.hz * a.frame_every), 1), int(a.hz * 60)
    total = int(a.hours * 3600 * a.hz)
    curve: list[tuple[float, float]] = [(0.0, round(start, 1))]
    t0 = time.perf_counter()
    for i in range(1, total + 1):
        src.model.append(synthetic(i, dt, targets=a.targets))
        if i % per_frame == 0:
            w.frame(force=True)
            app.processEvents()
        if i % per_min == 0:
            curve.append((round(i * dt / 60, 1), round(rss_mb(), 1)))
    elapsed = time.perf_counter() - t0
    hour = 60.0
    h = src.model.history
    arrays = h._arrays() + [k.data for k in h._keyed()]
    last_hour = [m for t, m in curve if t >= curve[-1][0] - hour]
    out = {"benchmark": "gui_memory", "simulated_hours": a.hours, "hz": a.hz, "targets": a.targets,
           "window_s": a.window, "samples": total, "capacity": src.model.capacity,
           "history_rows_held": len(h), "history_arrays_mb": round(sum(x.nbytes for x in arrays) / 2**20, 1),
           "wall_seconds": round(elapsed, 1),
           "rss_mb": {"start": round(start, 1), **{f"at_{int(t // 60)}h": m for t, m in curve if t > 0 and t % 60 == 0},
                      "max": max(m for _, m in curve),
                      "last_hour_min": min(last_hour), "last_hour_max": max(last_hour)},
           "bin_caches": len(h.bins),
           "bin_cache_mb": round(sum((b.v.nbytes + b.x.nbytes) if b.v is not None else 0
                                     for b in h.bins.values()) / 2**20, 2),
           "rss_every_10_min": [(t, m) for t, m in curve if t % 10 == 0]}
    print(json.dumps(out, indent=1))
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
