"""Time to the first sample, this tree against the baseline commit, interleaved in one run.

Three figures, as issue 15 states its goals:
- `record` → `ready`: a fresh `main.py record` process until it prints "ready" (imports, compile,
  load, attach, probes), then SIGINT;
- agent Attach → first sample: one long-lived `main.py agent --stdio` per tree (the GUI's), started
  and ready before timing; `attach` → the first `sample` event; detach; repeated on the same agent.
  The first attach of each agent is reported apart (`first_attach`);
- the first Attach of a fresh agent, for each of several program shapes (program, target count,
  policy, mix) it never attached before: an agent per tree and shape, up 3 s before the Attach
  (it may prepare things at start), then closed.

This tree runs twice: as installed (compiler output stored on disk, backend/kernel/build_store.py)
and with the store off (XDPSCOPE_BUILD_CACHE=off: every process compiles, the agent's prewarm
included), so the disk's share and the prewarm's can be told apart.
Variants rotate order each round so machine noise hits all alike; ratios are of medians against the
baseline, with the rounds' min and max beside them.

    sudo .venv/bin/python benchmarks/startup.py [--baseline 580b957] [--rounds 7] [--json out.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.kernel import host  # noqa: E402
from backend.labs import veth as lab  # noqa: E402
from benchmarks.baseline import BASELINE, TIMEOUT, Agent, Tree, readline, spread, trees  # noqa: E402

PREFIX = "sb"
STORE_ENV = "XDPSCOPE_BUILD_CACHE"
# (label, attach arguments; targets: how many of the lab's, or CPU ids for cpumap)
SHAPES = [("redirect, 1 target, rr", dict(program="redirect", targets=1)),
          ("redirect, 3 targets, hash", dict(program="redirect", targets=3, policy="hash")),
          ("redirect, 2 targets, cpu", dict(program="redirect", targets=2, policy="cpu")),
          ("mix 40/30/10/20, 2 targets", dict(program="mix", targets=2,
                                              mix={"PASS": 40, "DROP": 30, "TX": 10, "REDIRECT": 20})),
          ("cpumap, CPUs 0-1", dict(program="cpumap", targets=["0", "1"])),
          ("tx", dict(program="tx")),
          ("drop", dict(program="drop"))]


@dataclass
class Variant:
    name: str
    tree: Tree
    env: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def environ(env: dict[str, str]):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def time_record(v: Variant, ingress: str, targets: list[str], out: Path) -> float:
    cmd = [sys.executable, str(v.tree.root / "main.py"), "record", "--iface", ingress, "--program", "redirect",
           "--targets", ",".join(targets), "-o", str(out), "--overwrite"]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=v.tree.root,
                         env={**os.environ, **v.env})
    try:
        while readline(p.stdout, t0 + TIMEOUT).strip() != "ready":
            pass
        return time.monotonic() - t0
    except RuntimeError as e:
        raise RuntimeError(f"{v.name}: record: {e}: {p.stderr.read()[-800:] if p.poll() is not None else ''}")
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(TIMEOUT)


def time_attach(ag: Agent, ingress: str, **req) -> float:
    t0 = time.monotonic()
    r = ag.attach(iface=ingress, hz=100, **req)
    if not r.get("ok"):
        raise RuntimeError(f"{ag.tree.name}: attach {req}: {r.get('error')}")
    ag.wait(lambda m: m.get("event") == "sample")
    dt = time.monotonic() - t0
    ag.detach()
    return dt


def shape_request(shape: dict, lab_targets: list[str]) -> dict:
    req = dict(shape)
    if isinstance(req.get("targets"), int):
        req["targets"] = lab_targets[:req["targets"]]
    return req


def first_attach(v: Variant, ingress: str, req: dict) -> float:
    """A fresh agent, up 3 s, then its first Attach of this shape."""
    with environ(v.env):
        ag = Agent(v.tree)
    try:
        time.sleep(3)
        return time_attach(ag, ingress, **req)
    finally:
        ag.close()


def rotate(variants: list[Variant], r: int) -> list[Variant]:
    k = r % len(variants)
    return variants[k:] + variants[:k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default=BASELINE, help="commit to compare against (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per figure (default: %(default)s)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    host.require_root("the benchmark")
    res: dict = {"rounds": a.rounds, "load_before": os.getloadavg()}
    with trees(a.baseline) as (base, cur):
        variants = [Variant(base.name, base), Variant(cur.name, cur),
                    Variant(f"{cur.name}, store off", cur, {STORE_ENV: "off"})]
        names = [v.name for v in variants]
        topo = lab.up(PREFIX, 3)
        out = Path(tempfile.mkdtemp(prefix="xs-startup-"))
        rec: dict[str, list[float]] = {n: [] for n in names}
        att: dict[str, list[float]] = {n: [] for n in names}
        first: dict[str, float] = {}
        ready: dict[str, float] = {}
        shapes: dict[str, dict[str, float]] = {label: {} for label, _ in SHAPES}
        try:
            for r in range(a.rounds):
                for v in rotate(variants, r):
                    rec[v.name].append(time_record(v, topo.ingress, topo.targets[:2], out / "t.db"))
            agents = {}
            try:
                for v in variants:
                    with environ(v.env):
                        agents[v.name] = Agent(v.tree)
                    ready[v.name] = agents[v.name].ready_s
                time.sleep(3)   # an agent may prepare things at start: Attach comes once it is up
                for r in range(a.rounds + 1):
                    for v in rotate(variants, r):
                        dt = time_attach(agents[v.name], topo.ingress, program="redirect", targets=topo.targets[:2])
                        if r:
                            att[v.name].append(dt)
                        else:
                            first[v.name] = dt
            finally:
                for ag in agents.values():
                    ag.close()
            for i, (label, shape) in enumerate(SHAPES):
                for v in rotate(variants, i):
                    shapes[label][v.name] = first_attach(v, topo.ingress, shape_request(shape, topo.targets))
        finally:
            lab.down(PREFIX)
    res["load_after"] = os.getloadavg()
    for key, label, d in (("record_to_ready", "record → ready", rec), ("attach_to_first_sample",
                                                                       "agent attach → first sample (2nd and later)", att)):
        res[key] = {name: spread(v) for name, v in d.items()}
        res[f"{key}_ratio"] = {n: round(statistics.median(d[n]) / statistics.median(d[base.name]), 3)
                               for n in names[1:]}
        print(f"{label}: " + "; ".join(f"{n}: median {statistics.median(v):.3f} s "
                                       f"(min {min(v):.3f}, max {max(v):.3f})" for n, v in d.items())
              + "; ratio " + ", ".join(f"{n}: {x:.3f}" for n, x in res[f"{key}_ratio"].items()))
    res["first_attach_s"] = {n: round(v, 3) for n, v in first.items()}
    res["agent_ready_s"] = {n: round(v, 3) for n, v in ready.items()}
    res["first_attach_of_a_fresh_agent_by_shape_s"] = {k: {n: round(x, 3) for n, x in v.items()}
                                                       for k, v in shapes.items()}
    print("first attach of each agent: " + "; ".join(f"{n}: {v:.3f} s" for n, v in first.items()))
    print("agent start → ready: " + "; ".join(f"{n}: {v:.3f} s" for n, v in ready.items()))
    print("first Attach of a fresh agent (up 3 s), by shape:")
    for label, by in shapes.items():
        print(f"  {label}: " + "; ".join(f"{n}: {x:.3f} s" for n, x in by.items()))
    worst = {n: max(by[n] for by in shapes.values()) for n in names}
    res["first_attach_of_a_fresh_agent_worst_s"] = {n: round(x, 3) for n, x in worst.items()}
    print("  worst: " + "; ".join(f"{n}: {x:.3f} s" for n, x in worst.items()))
    print(f"load average before {res['load_before']}, after {res['load_after']}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
