"""Opening a 24 h trace at 10 Hz (864,000 samples) in the GUI's replay path, and seeking in it.

The same samples are written in each trace format asked for (--formats, default 1,2: the
JSON rows of format_version 1 and the column records of format_version 2, see
docs/trace-format.md), and every measurement is taken on each in the same run, so the ratios do
not depend on how busy the machine was. Each row's data is a real Sample (gui.testing.synthetic:
2 CPUs, 8 targets, flushes, errors, napi, run time), 1000 distinct ones used in turn; the rows go
in one transaction (a per-sample commit would take minutes and measure nothing of the GUI).

Measured (offscreen Qt, a 1600x1000 main window):
- open:  MainWindow.open_trace(path): TraceReader (meta + the t column), ReplaySource (loads the
         first window), set_source and the first forced frame: until the plots hold the data.
         Also reported: the ReplaySource part alone.
- seek:  ReplaySource.seek(t) to random positions (what the timeline slider calls: reset the model,
         load exactly the window ending at t), and seek + the forced frame that draws it; for each
         --windows length. Median and max over --seeks seeks.
- cold seek: the same, but the trace file's pages are dropped from the page cache before each
         seek (posix_fadvise DONTNEED): every page the seek needs comes from the disk, as after a
         while on a machine that reclaims cold page cache.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_open_seek.py [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

META = {"program": "redirect", "iface": "xs-in", "host": "bench", "cpus": 2, "mode": "native", "driver": "veth"}


def write_trace(path: Path, version: int, n: int, hz: float, targets: int) -> float:
    """A trace of n samples in the given format_version; seconds it took."""
    from backend.data.trace import TraceWriter, _json, encode
    from gui.testing import synthetic

    dt = 1.0 / hz
    meta = {**META, "targets": [f"xs-t{k}" for k in range(targets)], "hz": hz}
    t0 = time.perf_counter()
    variants = [synthetic(i, dt, targets=targets) for i in range(1, 1001)]
    if version == 2:
        w = TraceWriter(path, meta)
        datas = [encode(w.records(s)) for s in variants]  # also writes the columns table
        db = w._conn()
    else:
        datas = [_json({k: v for k, v in s.to_dict().items() if k not in ("t", "dt")}) for s in variants]
        path.unlink(missing_ok=True)
        db = sqlite3.connect(path, isolation_level=None)
        db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                         "CREATE TABLE samples (seq INTEGER PRIMARY KEY, t REAL NOT NULL, dt REAL NOT NULL, "
                         "data TEXT NOT NULL); CREATE INDEX samples_t ON samples (t);")
        db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, _json(v)) for k, v in
                                                         {**meta, "format_version": 1, "created": time.time()}.items()])
    db.execute("BEGIN")
    db.executemany("INSERT INTO samples (t, dt, data) VALUES (?, ?, ?)",
                   ((round(i * dt, 6), dt, datas[i % 1000]) for i in range(1, n + 1)))
    db.execute("COMMIT")
    if version == 2:
        w.close()
    else:
        db.close()
    return time.perf_counter() - t0


def drop_cache(path: Path) -> None:
    """Evict the file's pages from the page cache (clean pages: nothing is lost)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def ms(v: float) -> float:
    return round(v * 1000, 2)


def stats(values: list[float]) -> dict:
    return {"median": ms(float(np.median(values))), "max": ms(max(values))}


def measure(app, w, path: Path, windows: list[int], seeks: int, n: int) -> dict:
    from gui.sources.replay import ReplaySource

    w.window_box.setValue(windows[0])
    app.processEvents()
    drop_cache(path)
    t0 = time.perf_counter()
    src = ReplaySource(path, window=windows[0])
    source_s = time.perf_counter() - t0
    src.close()
    drop_cache(path)
    t0 = time.perf_counter()
    assert w.open_trace(path), w.last_error
    open_s = time.perf_counter() - t0
    app.processEvents()
    src = w.replay
    assert len(src.times) == n
    out = {"trace_mb": round(path.stat().st_size / 1e6, 1), "open_cold_ms": ms(open_s),
           "replay_source_cold_ms": ms(source_s), "seek": {}}
    for win in windows:
        w.window_box.setValue(win)  # reloads the window at the playhead
        app.processEvents()
        res: dict[str, list[float]] = {"warm": [], "warm_and_draw": [], "cold": []}
        loaded = []
        rng = np.random.default_rng(7)  # the same positions for every format and window
        for t in rng.uniform(src.t_first, src.t_last, seeks):
            t1 = time.perf_counter()
            src.seek(float(t))
            t2 = time.perf_counter()
            w.frame(force=True)
            t3 = time.perf_counter()
            res["warm"].append(t2 - t1)
            res["warm_and_draw"].append(t3 - t1)
            loaded.append(len(src.model.history))
            app.processEvents()
        for t in rng.uniform(src.t_first, src.t_last, seeks):
            drop_cache(path)
            t1 = time.perf_counter()
            src.seek(float(t))
            res["cold"].append(time.perf_counter() - t1)
        out["seek"][str(win)] = {"samples_loaded": int(np.median(loaded)),
                                 **{f"{k}_ms": stats(v) for k, v in res.items()},
                                 "each_cold_ms": [ms(v) for v in res["cold"]]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the traces are written")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--targets", type=int, default=8)
    ap.add_argument("--seeks", type=int, default=20)
    ap.add_argument("--formats", default="1,2", help="trace format_versions to measure")
    ap.add_argument("--windows", default="30,300", help="window lengths (s) to seek with; the first is used to open")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the trace files")
    a = ap.parse_args()

    from backend.data.trace import TraceReader
    from benchmarks.gui_common import bench_window

    n = int(a.hours * 3600 * a.hz)
    windows = [int(x) for x in a.windows.split(",")]
    app, tmpdir, w = bench_window(1600, 1000)
    w.show()
    app.processEvents()
    out = {"benchmark": "gui_open_seek", "samples": n, "hz": a.hz, "hours": a.hours, "targets": a.targets,
           "seeks": a.seeks, "open_window_s": windows[0], "formats": {}}
    for version in [int(v) for v in a.formats.split(",")]:
        path = Path(a.dir) / f"xdpscope-bench-{a.hours:g}h-v{version}.xst"
        reuse = a.keep and path.exists()
        if reuse:
            with TraceReader(path) as r:
                reuse = len(r) == n and r.version == version
        write_s = None if reuse else write_trace(path, version, n, a.hz, a.targets)
        res = measure(app, w, path, windows, a.seeks, n)
        out["formats"][str(version)] = {"write_seconds": None if write_s is None else round(write_s, 1), **res}
        if not a.keep:
            path.unlink(missing_ok=True)
    out["load_average"] = os.getloadavg()
    out["target"] = {"open_ms": 1000, "seek_ms": 50}
    print(json.dumps(out, indent=1))
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
