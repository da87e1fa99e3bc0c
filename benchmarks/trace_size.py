"""Trace size per hour at 100 Hz: the baseline commit against this tree, the same traffic for both.

Each tree's `main.py record` records `redirect` over 4 targets at 100 Hz, run-time statistics on,
for --seconds while live frames are injected from this process in bursts (1 s on, 1 s off: idle
and busy rows both count). Bytes per sample = the trace file's size after the recorder exited
(SQLite, with its -wal if any) / the samples in it (the tree's own `summary --json`); per hour =
that x 360,000. The same summary's REDIRECT total must equal the frames injected (exact).

    sudo .venv/bin/python benchmarks/trace_size.py [--seconds 60]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.kernel import host, injector  # noqa: E402
from backend.labs import veth as lab  # noqa: E402
from benchmarks.baseline import BASELINE, TIMEOUT, Tree, readline, trees  # noqa: E402

PREFIX = "ts"
HZ = 100


def record(tree: Tree, topo, out: Path, seconds: float, cpu: int) -> dict:
    cmd = [sys.executable, str(tree.root / "main.py"), "record", "--iface", topo.ingress, "--program", "redirect",
           "--targets", ",".join(topo.targets), "--hz", str(HZ), "--run-time", "-o", str(out), "--overwrite"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tree.root)
    frames = 0
    try:
        while readline(p.stdout, time.monotonic() + TIMEOUT).strip() != "ready":
            pass
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            burst_end = time.monotonic() + 1.0
            while time.monotonic() < burst_end:
                frames += injector.inject(topo.ingress, 50_000, batch=64, cpu=cpu).frames
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(TIMEOUT)
    size = sum(f.stat().st_size for f in out.parent.glob(out.name + "*"))
    s = json.loads(subprocess.run([sys.executable, str(tree.root / "main.py"), "summary", str(out), "--json"],
                                  capture_output=True, text=True, check=True, cwd=tree.root).stdout)
    n = s["samples"]
    return {"bytes": size, "samples": n, "bytes_per_sample": round(size / n, 1),
            "mb_per_hour_at_100hz": round(size / n * HZ * 3600 / 1e6, 1),
            "format_version": s.get("format_version"), "frames_injected": frames,
            "redirect_total": s["actions"]["REDIRECT"], "exact": s["actions"]["REDIRECT"] == frames}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--targets", type=int, default=4)
    ap.add_argument("--cpu", type=int, default=os.cpu_count() - 1, help="CPU the frames are injected from")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    host.require_root("the benchmark")
    res: dict = {"hz": HZ, "seconds": a.seconds, "targets": a.targets, "trees": {}}
    with trees(a.baseline) as (base, cur):
        topo = lab.up(PREFIX, a.targets)
        tmp = Path(tempfile.mkdtemp(prefix="xs-size-"))
        try:
            for i, t in enumerate((base, cur)):
                res["trees"][t.name] = record(t, topo, tmp / f"t{i}.xst", a.seconds, a.cpu)
        finally:
            lab.down(PREFIX)
    b, c = (res["trees"][t.name]["bytes_per_sample"] for t in (base, cur))
    res["ratio"] = round(c / b, 3)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
