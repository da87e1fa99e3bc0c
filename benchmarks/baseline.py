"""What the A/B benchmarks share: the baseline code in a git worktree, an agent process of either
tree (optionally pinned to CPUs) whose sample events are counted as they stream, and /proc figures.

The baseline is the commit before issue 15's work (580b957) unless --baseline says otherwise; it
runs with the same Python and venv, on the same lab, in the same run as this tree."""
from __future__ import annotations

import contextlib
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
BASELINE = "580b957"
TIMEOUT = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Tree:
    name: str
    root: Path


@contextlib.contextmanager
def trees(commit: str = BASELINE) -> Iterator[list[Tree]]:
    """[baseline, this tree]; the baseline is a temporary worktree, removed at the end."""
    wt = Path(tempfile.mkdtemp(prefix="xs-baseline-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(wt), commit],
                   check=True, capture_output=True)
    try:
        if (REPO / ".venv").exists():
            (wt / ".venv").symlink_to(REPO / ".venv")
        yield [Tree(f"baseline {commit}", wt), Tree("this tree", REPO)]
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(wt)], capture_output=True)


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def readline(stream, deadline: float) -> str:
    while time.monotonic() < deadline:
        r, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if r:
            line = stream.readline()
            if not line:
                raise RuntimeError("the process ended")
            return line
    raise RuntimeError("timed out")


@dataclass
class Counts:
    """Sample events seen so far (a reader thread updates them)."""
    samples: int = 0
    late: int = 0              # intervals longer than 1.5 periods
    longest_dt: float = 0.0
    dts: list[float] = field(default_factory=list)


class Agent:
    """`main.py agent --stdio` of one tree; a thread reads its events, counting samples."""

    def __init__(self, tree: Tree, cpus: set[int] | None = None):
        self.tree = tree
        self.p = subprocess.Popen([sys.executable, str(tree.root / "main.py"), "agent", "--stdio"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, cwd=tree.root, bufsize=1,
                                  preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        self.n = 0
        self.period = 0.0
        self.counts = Counts()
        self.cond = threading.Condition()
        self.msgs: list[dict] = []
        self.ready_s = 0.0
        t0 = time.monotonic()
        line = readline(self.p.stdout, t0 + TIMEOUT)
        if json.loads(line).get("event") != "ready":
            raise RuntimeError(f"{tree.name}: agent said {line!r}")
        self.ready_s = time.monotonic() - t0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stdout:
            m = json.loads(line)
            if m.get("event") == "sample":
                dt = m["sample"]["dt"]
                c = self.counts
                c.samples += 1
                c.longest_dt = max(c.longest_dt, dt)
                c.late += self.period > 0 and dt > 1.5 * self.period
                c.dts.append(dt)
            with self.cond:
                self.msgs.append(m)
                self.cond.notify_all()

    def wait(self, pred, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, m in enumerate(self.msgs):
                    if m.get("ok") is False and "id" in m:
                        raise RuntimeError(f"{self.tree.name}: {m.get('error')}")
                    if pred(m):
                        del self.msgs[:i + 1]
                        return m
                self.msgs.clear()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.tree.name}: timed out")
                self.cond.wait(left)

    def call(self, **req) -> dict:
        self.n += 1
        n = self.n
        self.p.stdin.write(json.dumps({"id": n, **req}) + "\n")
        self.p.stdin.flush()
        return self.wait(lambda m: m.get("id") == n)

    def attach(self, **req) -> dict:
        self.period = 1.0 / req.get("hz", 10)
        return self.call(cmd="attach", **req)

    def detach(self) -> None:
        self.call(cmd="detach")

    def close(self) -> None:
        try:
            self.p.stdin.write(json.dumps({"id": 0, "cmd": "stop"}) + "\n")
            self.p.stdin.flush()
            self.p.wait(10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.p.kill()


def spread(xs: list[float]) -> dict:
    """median with min and max (rounds of one figure)."""
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4), "max": round(max(xs), 4),
            "n": len(xs)}
