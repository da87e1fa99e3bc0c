"""Time to the first sample, this tree against the baseline commit, interleaved in one run.

Two figures, as issue 15 states its goals:
- `record` → `ready`: a fresh `main.py record` process until it prints "ready" (imports, compile,
  load, attach, probes), then SIGINT;
- agent Attach → first sample: one long-lived `main.py agent --stdio` per tree (the GUI's), started
  and ready before timing; `attach` → the first `sample` event; detach; repeated on the same agent.
  The first attach of each agent is reported apart (`first_attach`): it is the one that compiles
  (unless the agent prepared it at start); later ones are what a GUI user pays when attaching again
  or switching back to a program.

Trees alternate A B, B A, ... so machine noise hits both alike; ratios are of medians, with the
rounds' min and max beside them.

    sudo .venv/bin/python benchmarks/startup.py [--baseline 580b957] [--rounds 7] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.kernel import host  # noqa: E402
from backend.labs import veth as lab  # noqa: E402
from benchmarks.baseline import BASELINE, TIMEOUT, Agent, Tree, readline, spread, trees  # noqa: E402

PREFIX = "sb"


def time_record(tree: Tree, ingress: str, targets: list[str], out: Path) -> float:
    cmd = [sys.executable, str(tree.root / "main.py"), "record", "--iface", ingress, "--program", "redirect",
           "--targets", ",".join(targets), "-o", str(out), "--overwrite"]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tree.root)
    try:
        while readline(p.stdout, t0 + TIMEOUT).strip() != "ready":
            pass
        return time.monotonic() - t0
    except RuntimeError as e:
        raise RuntimeError(f"{tree.name}: record: {e}: {p.stderr.read()[-800:] if p.poll() is not None else ''}")
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(TIMEOUT)


def time_attach(ag: Agent, ingress: str, targets: list[str]) -> float:
    t0 = time.monotonic()
    ag.attach(iface=ingress, program="redirect", targets=targets, hz=100)
    ag.wait(lambda m: m.get("event") == "sample")
    dt = time.monotonic() - t0
    ag.detach()
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default=BASELINE, help="commit to compare against (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per figure (default: %(default)s)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    host.require_root("the benchmark")
    res: dict = {"rounds": a.rounds}
    with trees(a.baseline) as (base, cur):
        topo = lab.up(PREFIX, 2)
        out = Path(tempfile.mkdtemp(prefix="xs-startup-"))
        rec: dict[str, list[float]] = {base.name: [], cur.name: []}
        att: dict[str, list[float]] = {base.name: [], cur.name: []}
        first: dict[str, float] = {}
        ready: dict[str, float] = {}
        try:
            for r in range(a.rounds):
                for t in (base, cur) if r % 2 == 0 else (cur, base):
                    rec[t.name].append(time_record(t, topo.ingress, topo.targets, out / "t.db"))
            agents = {}
            try:
                for t in (base, cur):
                    agents[t.name] = Agent(t)
                    ready[t.name] = agents[t.name].ready_s
                time.sleep(3)   # an agent may prepare things at start: Attach comes once it is up
                for r in range(a.rounds + 1):
                    for t in (base, cur) if r % 2 == 0 else (cur, base):
                        dt = time_attach(agents[t.name], topo.ingress, topo.targets)
                        if r:
                            att[t.name].append(dt)
                        else:
                            first[t.name] = dt
            finally:
                for ag in agents.values():
                    ag.close()
        finally:
            lab.down(PREFIX)
    for key, label, d in (("record_to_ready", "record → ready", rec), ("attach_to_first_sample",
                                                                       "agent attach → first sample (2nd and later)", att)):
        res[key] = {name: spread(v) for name, v in d.items()}
        ratio = statistics.median(d[cur.name]) / statistics.median(d[base.name])
        res[f"{key}_ratio"] = round(ratio, 3)
        print(f"{label}: " + "; ".join(f"{n}: median {statistics.median(v):.3f} s "
                                       f"(min {min(v):.3f}, max {max(v):.3f})" for n, v in d.items())
              + f"; ratio {ratio:.3f}")
    res["first_attach_s"] = {n: round(v, 3) for n, v in first.items()}
    res["agent_ready_s"] = {n: round(v, 3) for n, v in ready.items()}
    print("first attach of each agent: " + "; ".join(f"{n}: {v:.3f} s" for n, v in first.items()))
    print("agent start → ready: " + "; ".join(f"{n}: {v:.3f} s" for n, v in ready.items()))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
