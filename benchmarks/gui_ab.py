"""GUI frame time, the baseline commit against this tree, 1 h and 30 s windows, in one run: this
tree's benchmarks/gui_frame_time.py (see its docstring) on each tree's GUI code (XS_TREE) in the
order base 3600, this 3600, this 30, base 30, then both once more with --profile (where the draw +
paint time goes; profiling slows it, so those runs' times are not the figures).

    .venv/bin/python benchmarks/gui_ab.py [--live-seconds 15] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.baseline import BASELINE, Tree, trees  # noqa: E402


def run(tree: Tree, window: int, live: float, profile: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).with_name("gui_frame_time.py")), "--window", str(window),
           "--live-seconds", str(live), *(["--profile"] if profile else [])]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XS_TREE": str(tree.root)}
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tree.root, env=env, timeout=1800)
    if p.returncode:      # say it and go on: the other runs still mean something
        lines = [ln for ln in p.stderr.splitlines() if "propagateSizeHints" not in ln]
        return {"error": "\n".join(lines[-12:])}
    return json.loads(p.stdout)


def row(d: dict) -> dict:
    if "error" in d:
        return d
    return {"draw": d["draw"]["redraw"], "draw_and_paint": d["draw_and_paint"]["redraw"],
            "draw_and_repaint_p99": d["draw_and_repaint"]["redraw"].get("p99"),
            "per_panel_draw_and_paint": d["draw_and_paint"].get("per_panel"),
            "visible_panels": d["visible_panels"], "load_average_at_end": round(d["load_average_at_end"], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--live-seconds", type=float, default=15.0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    res: dict = {"live_seconds": a.live_seconds, "runs": {}}
    with trees(a.baseline) as (base, cur):
        for t, w in ((base, 3600), (cur, 3600), (cur, 30), (base, 30)):
            res["runs"][f"{t.name}, {w} s window"] = row(run(t, w, a.live_seconds))
            print(f"{t.name}, {w} s:", json.dumps(res["runs"][f"{t.name}, {w} s window"].get("draw_and_paint")),
                  file=sys.stderr)
        for t in (base, cur):
            d = run(t, 3600, min(a.live_seconds, 10.0), profile=True)
            res[f"profile {t.name}, 3600 s window"] = d.get("profile_draw_and_paint", d)
    for t in (base, cur):
        r = [res["runs"][f"{t.name}, {w} s window"].get("draw_and_paint") for w in (3600, 30)]
        if all(r):
            res[f"{t.name}: p99 30 s / 1 h"] = round(r[1]["p99"] / r[0]["p99"], 3)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
