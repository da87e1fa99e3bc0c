"""Opening a 24 h trace at 10 Hz (864,000 samples) in the GUI's replay path, and seeking in it.

The trace is written first (once; kept with --keep): TraceWriter creates the file and its meta,
the rows go in one transaction on the writer's connection (the documented schema, see
docs/trace-format.md; a per-sample commit would take minutes and measure nothing of the GUI).
Each row's data is a real Sample.to_dict() (gui.testing.synthetic: 2 CPUs, 8 targets, flushes,
errors, napi, run time), 1000 distinct ones used in turn.

Measured (offscreen Qt, a 1600x1000 main window):
- open:  MainWindow.open_trace(path): TraceReader (meta + the t column), ReplaySource (loads the
         first window), set_source and the first forced frame: until the plots hold the data.
         Also reported: the ReplaySource part alone.
- seek:  ReplaySource.seek(t) to random positions (what the timeline slider calls: reset the model,
         load exactly the window ending at t), and seek + the forced frame that draws it.
Median and max over --seeks seeks, for each --windows length.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_open_seek.py [--trace /tmp/24h.xst]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def write_trace(path: Path, n: int, hz: float, targets: int) -> float:
    from backend.trace import TraceWriter, _json
    from gui.testing import synthetic

    dt = 1.0 / hz
    variants = []
    for i in range(1, 1001):
        d = synthetic(i, dt, targets=targets).to_dict()
        d.pop("t"), d.pop("dt")
        variants.append(_json(d))
    t0 = time.perf_counter()
    names = [f"xs-t{k}" for k in range(targets)]
    w = TraceWriter(path, {"program": "redirect", "iface": "xs-in", "targets": names, "hz": hz,
                           "host": "bench", "cpus": 2, "mode": "native", "driver": "veth"})
    db = w._conn()
    db.execute("BEGIN")
    db.executemany("INSERT INTO samples (t, dt, data) VALUES (?, ?, ?)",
                   ((round(i * dt, 6), dt, variants[i % 1000]) for i in range(1, n + 1)))
    db.execute("COMMIT")
    w.close()
    return time.perf_counter() - t0


def ms(v: float) -> float:
    return round(v * 1000, 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", default=str(Path(tempfile.gettempdir()) / "xdpscope-bench-24h.xst"))
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--targets", type=int, default=8)
    ap.add_argument("--seeks", type=int, default=20)
    ap.add_argument("--windows", default="30,300", help="window lengths (s) to seek with; the first is used to open")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the trace file")
    a = ap.parse_args()

    from backend.trace import TraceReader
    from benchmarks.gui_common import bench_window
    from gui.replay import ReplaySource

    n = int(a.hours * 3600 * a.hz)
    path = Path(a.trace)
    write_s = None
    reuse = a.keep and path.exists()
    if reuse:
        with TraceReader(path) as r:
            reuse = len(r) == n
    if not reuse:
        write_s = write_trace(path, n, a.hz, a.targets)
    size_mb = path.stat().st_size / 1e6
    windows = [int(w) for w in a.windows.split(",")]

    app, tmpdir, w = bench_window(1600, 1000)
    tmp = tmpdir.name
    w.window_box.setValue(windows[0])
    w.show()
    app.processEvents()

    # the replay source alone (reader + first window), then the window's whole open path
    t0 = time.perf_counter()
    src = ReplaySource(path, window=windows[0])
    source_s = time.perf_counter() - t0
    src.close()
    t0 = time.perf_counter()
    assert w.open_trace(path), w.last_error
    open_s = time.perf_counter() - t0
    app.processEvents()
    src = w.replay
    assert len(src.times) == n

    rng = np.random.default_rng(7)
    seeks = {}
    for win in windows:
        w.window_box.setValue(win)  # reloads the window at the playhead
        app.processEvents()
        only, with_draw, loaded = [], [], []
        for t in rng.uniform(src.t_first, src.t_last, a.seeks):
            t1 = time.perf_counter()
            src.seek(float(t))
            t2 = time.perf_counter()
            w.frame(force=True)
            t3 = time.perf_counter()
            only.append(t2 - t1)
            with_draw.append(t3 - t1)
            loaded.append(len(src.model.history))
            app.processEvents()
        seeks[str(win)] = {"samples_loaded": int(np.median(loaded)),
                           "seek_ms": {"median": ms(np.median(only)), "max": ms(max(only))},
                           "seek_and_draw_ms": {"median": ms(np.median(with_draw)), "max": ms(max(with_draw))},
                           "each_seek_ms": [ms(v) for v in only]}
    out = {"benchmark": "gui_open_seek", "samples": n, "hz": a.hz, "hours": a.hours, "targets": a.targets,
           "trace_mb": round(size_mb, 1), "write_seconds": None if write_s is None else round(write_s, 1),
           "open_ms": ms(open_s), "replay_source_ms": ms(source_s), "open_window_s": windows[0],
           "seeks": a.seeks, "seek": seeks, "target": {"open_ms": 1000, "seek_ms": 50}}
    print(json.dumps(out, indent=1))
    w.close()
    if not a.keep:
        path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
