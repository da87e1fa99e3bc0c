"""Collector cost per sample at 100 Hz with every probe on, idle and under ~2 Mpps of live redirect
traffic, and late samples: the baseline commit against this tree, interleaved in one run.

Each tree runs its own `main.py agent --stdio`, pinned to CPU --agent-cpu; the live-frame injector
runs in this process pinned to CPU --traffic-cpu, so the frames' kernel work (XDP, devmap flushes,
the targets' NAPI) lands on that CPU, not on the agent's. A round attaches `redirect` (4 targets,
run-time statistics on, the per-packet xdp_redirect probe too: every probe) on one tree's agent,
measures --seconds idle, then --seconds with traffic, and detaches; trees alternate A B, B A.

Per sample: the agent process's CPU time (user + system, all threads: reading the maps, decoding,
the JSON it writes) divided by the samples it emitted. Late: an interval longer than 1.5 periods.

Control: the same fixed Python workload (no BPF, no I/O), pinned to the agent's CPU, timed in CPU
seconds with no traffic and with traffic on the other CPU (an XDP PASS program, frames injected
as above). If the VM's CPUs share a physical core or cache, the workload costs more under traffic,
and so does any collector, whatever it reads: `control_traffic_over_idle`.

    sudo .venv/bin/python benchmarks/collector_cost.py [--rounds 3] [--seconds 20]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.kernel import attach, bpfsys, host, injector, nic  # noqa: E402
from backend.labs import veth as lab  # noqa: E402
from benchmarks.baseline import BASELINE, Agent, cpu_seconds, spread, trees  # noqa: E402

PREFIX = "cc"
HZ = 100


class Traffic:
    """Live redirect frames injected in a loop from one CPU until stopped."""

    def __init__(self, iface: str, cpu: int):
        self.iface, self.cpu = iface, cpu
        self.stop = threading.Event()
        self.frames, self.seconds = 0, 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        os.sched_setaffinity(0, {self.cpu})
        while not self.stop.is_set():
            r = injector.inject(self.iface, 200_000, batch=64, cpu=self.cpu)   # ~0.1 s each
            self.frames += r.frames
            self.seconds += r.seconds

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def measure(ag: Agent, seconds: float) -> dict:
    c = ag.counts
    cpu0, n0, late0, t0 = cpu_seconds(ag.p.pid), c.samples, c.late, time.monotonic()
    k0 = len(c.dts)
    time.sleep(seconds)
    cpu1, n1, late1, t1 = cpu_seconds(ag.p.pid), c.samples, c.late, time.monotonic()
    n = n1 - n0
    dts = c.dts[k0:]
    return {"samples": n, "cpu_ms_per_sample": round((cpu1 - cpu0) * 1000 / max(n, 1), 4),
            "core_pct": round((cpu1 - cpu0) * 100 / (t1 - t0), 2), "late": late1 - late0,
            "late_pct": round((late1 - late0) * 100 / max(n, 1), 3),
            "longest_dt_ms": round(max(dts, default=0) * 1000, 1)}


CONTROL = ("import json, time\n"
           "d = {'a': list(range(50)), 'b': {str(i): i for i in range(50)}}\n"
           "t = time.process_time()\n"
           "for _ in range(20000): json.loads(json.dumps(d))\n"
           "print(time.process_time() - t)")


def control(cpu: int) -> float:
    """CPU seconds of the fixed workload on that CPU."""
    out = subprocess.run([sys.executable, "-c", CONTROL], capture_output=True, text=True, check=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    return float(out.stdout)


def control_runs(ingress: str, agent_cpu: int, traffic_cpu: int, rounds: int) -> dict:
    """The control workload idle and under traffic, alternating."""
    fd = bpfsys.load_xdp_pass()
    link = attach.attach(fd, nic.interface(ingress), "native")
    idle, busy = [], []
    try:
        for _ in range(rounds):
            idle.append(control(agent_cpu))
            with Traffic(ingress, traffic_cpu):
                busy.append(control(agent_cpu))
    finally:
        link.close()
        os.close(fd)
    return {"idle_s": spread(idle), "traffic_s": spread(busy),
            "control_traffic_over_idle": round(statistics.median(busy) / statistics.median(idle), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default=BASELINE, help="commit to compare against (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=20.0, help="per phase (default: %(default)s)")
    ap.add_argument("--targets", type=int, default=4)
    ap.add_argument("--agent-cpu", type=int, default=0)
    ap.add_argument("--traffic-cpu", type=int, default=os.cpu_count() - 1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    host.require_root("the benchmark")
    rows: dict[str, dict[str, list[dict]]] = {}
    mpps: dict[str, list[float]] = {}
    with trees(a.baseline) as (base, cur):
        topo = lab.up(PREFIX, a.targets)
        agents = {}
        try:
            ctl = control_runs(topo.ingress, a.agent_cpu, a.traffic_cpu, max(3, a.rounds))
            for t in (base, cur):
                agents[t.name] = Agent(t, cpus={a.agent_cpu})
                rows[t.name] = {"idle": [], "traffic": []}
                mpps[t.name] = []
            for r in range(a.rounds):
                for t in (base, cur) if r % 2 == 0 else (cur, base):
                    ag = agents[t.name]
                    ag.attach(iface=topo.ingress, program="redirect", targets=topo.targets, hz=HZ,
                              run_time=True, trace_redirects=True)
                    ag.wait(lambda m: m.get("event") == "sample")
                    time.sleep(1.0)                      # past the first samples' one-time work
                    rows[t.name]["idle"].append(measure(ag, a.seconds))
                    with Traffic(topo.ingress, a.traffic_cpu) as tr:
                        time.sleep(1.0)
                        rows[t.name]["traffic"].append(measure(ag, a.seconds))
                    mpps[t.name].append(round(tr.frames / tr.seconds / 1e6, 3) if tr.seconds else 0.0)
                    ag.detach()
                    print(t.name, r, rows[t.name]["idle"][-1], rows[t.name]["traffic"][-1], mpps[t.name][-1],
                          file=sys.stderr)
        finally:
            for ag in agents.values():
                ag.close()
            lab.down(PREFIX)
    out: dict = {"hz": HZ, "targets": a.targets, "seconds_per_phase": a.seconds, "rounds": a.rounds,
                 "agent_cpu": a.agent_cpu, "traffic_cpu": a.traffic_cpu, "control": ctl, "trees": {}}
    med = {}
    for name, phases in rows.items():
        tree = out["trees"][name] = {"traffic_mpps": spread(mpps[name])}
        for phase, rs in phases.items():
            tree[phase] = {k: spread([r[k] for r in rs]) for k in rs[0]}
            med[name, phase] = statistics.median(r["cpu_ms_per_sample"] for r in rs)
        tree["traffic_over_idle"] = round(med[name, "traffic"] / med[name, "idle"], 3)
    for phase in ("idle", "traffic"):
        out[f"ratio_{phase}"] = round(med[cur.name, phase] / med[base.name, phase], 3)
    out["load_average_at_end"] = os.getloadavg()[0]
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
