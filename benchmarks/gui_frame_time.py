"""UI timer frame time with 1 h of history at 20 Hz and 8 redirect targets (offscreen Qt).

The main window's own timer is stopped; the benchmark plays its role: it feeds the history
(72,000 samples = 1 h at 20 Hz, 8 targets, 2 CPUs, every panel's data present), then simulates
a live session: the timer ticks at the window's FRAME_MS (~30 FPS) while samples arrive at 20 Hz
(so about one tick in three has nothing new, as in the app), and times each tick.

Measured per tick, in three runs of --live-seconds each:
- draw:           MainWindow.frame(), the timer callback: the model's visible window and the
                  redraw of the visible panel whose turn it is (numpy + pyqtgraph item updates).
                  This is what MainWindow.frame_times records.
- draw_and_paint: frame() then QApplication.processEvents() until idle: Qt paints what the
                  redraw invalidated (raster painting into the offscreen backing store), i.e. the
                  event loop's whole work for the tick, as in the running app.
- draw_and_repaint: frame() then a synchronous QWidget.repaint() of the whole plot widget of every
                  panel that redrew (every item of the panel painted again: an upper bound).
Reported for ticks that redrew (`redraw_*`) and for all ticks (`tick_*`), p50/p99/max in ms.
The default dock layout is used: Verdicts, Fan-out, Flushes and Errors are visible; NAPI is a
hidden tab (a hidden panel is not redrawn). `--all-panels` shows NAPI too (Errors then hidden).

`--profile` runs cProfile over the draw + paint run and says where the time goes: Python time by
pyqtgraph item kind (axes, text, legends, curves, images, view boxes, the Path dock, xdpscope's own
code), Qt painter calls (drawText, drawPath, ...) charged to the Python function that made them, and
what Qt did in C++ without calling Python (widgets, docks, compositing): processEvents' own time.
Also how many times each item kind's paint() ran per redraw.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_frame_time.py [--window 3600] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# XS_TREE: measure another checkout's GUI with this script (benchmarks/gui_ab.py: the baseline's)
sys.path.insert(0, os.environ.get("XS_TREE") or str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def stats(ms: list[float]) -> dict:
    if not ms:
        return {}
    a = np.asarray(ms)
    return {"n": len(a), "p50": round(float(np.percentile(a, 50)), 2), "p99": round(float(np.percentile(a, 99)), 2),
            "max": round(float(a.max()), 2)}


KINDS = (("AxisItem.py", "axes"), ("plots/axes.py", "axes"), ("LegendItem.py", "legends"), ("TextItem.py", "text"), ("LabelItem.py", "text"),
         ("PlotCurveItem.py", "curves"), ("PlotDataItem.py", "curves"), ("ScatterPlotItem.py", "curves"),
         ("ImageItem.py", "images"), ("BarGraphItem.py", "bars"), ("ViewBox", "view boxes"),
         ("GraphicsScene", "scene"), ("GraphicsView", "scene"), ("path_view.py", "path dock"),
         ("/gui/", "xdpscope gui code"), ("/backend/", "xdpscope data code"), ("pyqtgraph", "pyqtgraph other"),
         ("numpy", "numpy"))


def kind(key: tuple) -> str:
    filename = key[0]
    for part, name in KINDS:
        if part in filename:
            return name
    return "python other"


def where_time_goes(prof: cProfile.Profile, redraws: int) -> dict:
    """ms per redraw by kind; a builtin's time (a Qt or numpy call) goes to its callers' kinds."""
    st = pstats.Stats(prof).stats
    ms: dict[str, float] = {}
    calls: dict[str, int] = {}
    painter: dict[str, float] = {}
    for key, (cc, nc, tt, ct, callers) in st.items():
        if key[0] == "~":                              # a builtin: Qt, numpy, ...
            name = key[2]
            if "processEvents" in name:
                ms["Qt C++ without Python (widgets, docks, text items, compositing)"] = tt * 1000
                continue
            for caller, (_, _, ctt, _) in callers.items():
                k = kind(caller)
                ms[k] = ms.get(k, 0.0) + ctt * 1000
                if "QPainter" in name:
                    painter[f"{k}: {name}"] = painter.get(f"{k}: {name}", 0.0) + ctt * 1000
        else:
            k = kind(key)
            ms[k] = ms.get(k, 0.0) + tt * 1000
            if key[2] == "paint":
                calls[k] = calls.get(k, 0) + nc
    n = max(redraws, 1)
    top_painter = sorted(painter.items(), key=lambda kv: -kv[1])[:12]
    return {"ms_per_redraw": {k: round(v / n, 3) for k, v in sorted(ms.items(), key=lambda kv: -kv[1])},
            "paint_calls_per_redraw": {k: round(v / n, 2) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])},
            "qpainter_calls_ms_per_redraw": {k: round(v / n, 3) for k, v in top_painter}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--history", type=int, default=72_000, help="samples fed before timing (default 1 h at 20 Hz)")
    ap.add_argument("--hz", type=float, default=20.0)
    ap.add_argument("--targets", type=int, default=8)
    ap.add_argument("--window", type=int, default=3600, help="visible window, s (default: all of the hour)")
    ap.add_argument("--live-seconds", type=float, default=30.0, help="simulated live time that is timed")
    ap.add_argument("--size", default="1600x1000")
    ap.add_argument("--all-panels", action="store_true", help="raise the NAPI tab as well")
    ap.add_argument("--profile", action="store_true", help="where the draw + paint time goes (cProfile)")
    a = ap.parse_args()

    from gui.main_window import FRAME_MS
    from gui.sources import Source
    from benchmarks.gui_common import bench_window
    from gui.testing import synthetic

    width, height = (int(v) for v in a.size.split("x"))
    app, tmpdir, w = bench_window(width, height)
    tmp = tmpdir.name
    w.show()
    if a.all_panels:
        w.docks["NAPI"].raise_()
    app.processEvents()
    w.window_box.setValue(a.window)
    src = Source(w)
    w.set_source(src)
    dt = 1.0 / a.hz

    t0 = time.perf_counter()
    i = 0
    for i in range(1, a.history + 1):
        src.model.history.append(synthetic(i, dt, targets=a.targets))
    src.model.version += 1
    feed_s = time.perf_counter() - t0
    w.frame(force=True)
    app.processEvents()

    visible = [type(p).__name__ for p in w.panels if getattr(p, "shown", p.isVisible)()]
    ticks = int(a.live_seconds * 1000 / FRAME_MS)

    prof = cProfile.Profile() if a.profile else None

    def run(paint: str, start: int) -> tuple[list[float], list[float], int, dict]:
        """Real time: a tick every FRAME_MS of wall clock, samples appended as their 1/hz comes due
        (panels pace their redraws by the clock, so the simulation must not run faster)."""
        redraw, every = [], []
        draws = {type(p).__name__: 0 for p in w.panels}
        per_panel: dict[str, list[float]] = {}
        nxt = start
        t_start = time.perf_counter()
        for j in range(ticks):
            now = time.perf_counter()
            wait = t_start + (j + 1) * FRAME_MS / 1000 - now
            if wait > 0:
                time.sleep(wait)
            target = start + int((time.perf_counter() - t_start) * a.hz)
            while nxt < target:
                nxt += 1
                src.model.append(synthetic(nxt, dt, targets=a.targets))
            keys = [p._key for p in w.panels]
            profiling = prof is not None and paint == "events"
            if profiling:
                prof.enable()
            t = time.perf_counter()
            w.frame()
            drew = [p for p, k in zip(w.panels, keys) if p._key != k]
            if paint == "repaint":
                for p in drew:
                    getattr(p, "view", p.glw).viewport().repaint()  # the Path dock draws in its own view
            elif paint == "events":
                app.processEvents()  # queued scene updates -> viewport update requests
                app.processEvents()  # -> painting
            ms = (time.perf_counter() - t) * 1000
            if profiling:
                prof.disable()
            every.append(ms)
            if drew:
                redraw.append(ms)
            for p in drew:
                draws[type(p).__name__] += 1
            if len(drew) == 1:
                per_panel.setdefault(type(drew[0]).__name__, []).append(ms)
            app.processEvents()  # input, deferred deletes: outside the timed part, as between ticks
        secs = time.perf_counter() - t_start
        rates = {k: round(v / secs, 1) for k, v in draws.items()}
        return redraw, every, nxt, {"redraws_per_s": rates, "per_panel": {k: stats(v) for k, v in per_panel.items()}}

    d_redraw, d_every, nxt, d_rate = run("", i)
    p_redraw, p_every, nxt, p_rate = run("events", nxt)
    r_redraw, r_every, nxt, r_rate = run("repaint", nxt)
    h = src.model.history
    out = {
        "benchmark": "gui_frame_time",
        "history_samples_at_start": a.history, "hz": a.hz, "targets": a.targets, "window_s": a.window,
        "samples_in_view": int(min(len(h), a.window * a.hz)), "window_px": [width, height],
        "visible_panels": visible, "tick_ms": FRAME_MS, "ticks_per_run": ticks,
        "feed_seconds": round(feed_s, 2),
        "draw": {"redraw": stats(d_redraw), "tick": stats(d_every), **d_rate},
        "draw_and_paint": {"redraw": stats(p_redraw), "tick": stats(p_every), **p_rate},
        "draw_and_repaint": {"redraw": stats(r_redraw), "tick": stats(r_every), **r_rate},
        "load_average_at_end": os.getloadavg()[0],
        **({"profile_draw_and_paint": where_time_goes(prof, len(p_redraw))} if prof is not None else {}),
        "target_p99_ms": 16,
    }
    print(json.dumps(out, indent=1))
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
