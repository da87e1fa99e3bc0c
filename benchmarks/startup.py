"""Time to the first sample, this tree against a baseline commit, interleaved in one run.

Two figures, as issue 15 states its goals:
- `record` → `ready`: a fresh `xdpscope record` process until it prints "ready" (compile, load,
  attach, probes), then SIGINT;
- agent Attach → first sample: one long-lived `xdpscope agent --stdio` (the GUI's), started before
  timing, then `attach` → the first `sample` event; detach; repeated on the same agent (the second
  and later attaches are what a GUI user pays when switching programs).

The baseline is checked out with `git worktree` (default: the last commit before this session's
performance work) and runs with the same Python, on the same lab, alternating A B A B, so machine
noise hits both alike. Ratios of medians are reported with the spread (min–max of the rounds).

    sudo .venv/bin/python benchmarks/startup.py [--baseline 7768344] [--rounds 7] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.kernel import host  # noqa: E402
from backend.labs import veth as lab  # noqa: E402

PREFIX = "sb"
TIMEOUT = 60.0


@dataclass
class Tree:
    name: str
    root: Path
    record: list[float] = field(default_factory=list)
    attach: list[float] = field(default_factory=list)


def _readline(p: subprocess.Popen, deadline: float) -> str:
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], deadline - time.monotonic())
        if r:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"process ended: {p.stderr.read()[-500:] if p.stderr else ''}")
            return line
    raise RuntimeError("timed out")


def time_record(tree: Tree, ingress: str, targets: list[str], out: Path) -> float:
    cmd = [sys.executable, str(tree.root / "main.py"), "record", "--iface", ingress, "--program", "redirect",
           "--targets", ",".join(targets), "-o", str(out), "--overwrite"]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tree.root)
    try:
        while _readline(p, t0 + TIMEOUT).strip() != "ready":
            pass
        return time.monotonic() - t0
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(TIMEOUT)


class Agent:
    def __init__(self, tree: Tree) -> None:
        self.p = subprocess.Popen([sys.executable, str(tree.root / "main.py"), "agent", "--stdio"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, cwd=tree.root)
        self.n = 0
        self.wait(lambda m: m.get("event") == "ready")

    def wait(self, pred) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while True:
            m = json.loads(_readline(self.p, deadline))
            if m.get("ok") is False:
                raise RuntimeError(m.get("error"))
            if pred(m):
                return m

    def send(self, **req) -> None:
        self.n += 1
        self.p.stdin.write(json.dumps({"id": self.n, **req}) + "\n")
        self.p.stdin.flush()

    def time_attach(self, ingress: str, targets: list[str]) -> float:
        t0 = time.monotonic()
        self.send(cmd="attach", iface=ingress, program="redirect", targets=targets, hz=100)
        self.wait(lambda m: m.get("event") == "sample")
        dt = time.monotonic() - t0
        self.send(cmd="detach")
        self.wait(lambda m: m.get("event") == "detached")
        return dt

    def close(self) -> None:
        self.send(cmd="stop")
        self.p.wait(TIMEOUT)


def spread(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.3f} s (min {min(xs):.3f}, max {max(xs):.3f}, n={len(xs)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default="7768344", help="commit to compare against (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per figure (default: %(default)s)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    host.require_root("the benchmark")
    wt = Path(tempfile.mkdtemp(prefix="xs-baseline-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(wt), a.baseline],
                   check=True, capture_output=True)
    trees = [Tree("baseline " + a.baseline, wt), Tree("this tree", REPO)]
    topo = lab.up(PREFIX, 2)
    out = Path(tempfile.mkdtemp(prefix="xs-startup-"))
    try:
        for r in range(a.rounds):
            for t in trees if r % 2 == 0 else trees[::-1]:
                t.record.append(time_record(t, topo.ingress, topo.targets, out / "t.db"))
        agents = [Agent(t) for t in trees]
        try:
            for r in range(a.rounds + 1):
                for t, ag in (zip(trees, agents) if r % 2 == 0 else list(zip(trees, agents))[::-1]):
                    dt = ag.time_attach(topo.ingress, topo.targets)
                    if r:  # the first attach of each agent is reported apart (warm-up)
                        t.attach.append(dt)
        finally:
            for ag in agents:
                ag.close()
    finally:
        lab.down(PREFIX)
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(wt)], capture_output=True)
    base, cur = trees
    res = {t.name: {"record_to_ready": t.record, "attach_to_first_sample": t.attach} for t in trees}
    for key, label in (("record", "record → ready"), ("attach", "agent attach → first sample")):
        b, c = getattr(base, key), getattr(cur, key)
        ratio = statistics.median(c) / statistics.median(b)
        res[f"{key}_ratio"] = ratio
        print(f"{label}: {base.name}: {spread(b)}; {cur.name}: {spread(c)}; ratio {ratio:.3f}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
