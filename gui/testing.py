"""Helpers for GUI tests and benchmarks: synthetic samples with known numbers, a fake agent.

The numbers are chosen so every plotted series has a closed form the tests can recompute.
"""
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

from backend.data.sample import FLUSH_BINS, Sample
from backend.data.trace import TraceWriter

TARGETS = ("xs-t0", "xs-t1")


def synthetic(i: int, dt: float = 0.1, cpus: int = 2, targets: int = 2) -> Sample:
    """Sample number i (1-based) of a session sampled every dt seconds."""
    names = [f"xs-t{k}" for k in range(targets)]
    redirect = [(k + 1) * i for k in range(targets)]           # per target, all on cpu0 but the last
    verdicts = [[0, i % 3, 10 + i, 0, sum(redirect)]] + [[1 if i % 50 == 0 else 0, 0, 5, 0, 0]
                                                           for _ in range(cpus - 1)]
    flush = {names[0]: [1 if b == i % FLUSH_BINS else 0 for b in range(FLUSH_BINS)]}
    if targets > 1:
        flush[names[1]] = [0] * (FLUSH_BINS - 1) + [i % 4]
    return Sample(
        t=round(i * dt, 9), dt=dt, verdicts=verdicts,
        targets={n: [r] + [0] * (cpus - 1) for n, r in zip(names, redirect)},
        flush=flush,
        devmap={names[-1]: {"sent": redirect[-1], "drops": i % 2}},
        redirect_errors={"xs-nx": {"ENXIO": i % 5}},
        exceptions={"ABORTED": 1} if i % 50 == 0 else {},
        napi={"eth0": {"polls": 2, "work": i, "budget": 128, "full": 0}},
        run={"cnt": 3 * i, "ns": 300 * i + i},
    )


def write_trace(path: str | os.PathLike, n: int, dt: float = 0.1, meta: dict | None = None,
                **kw) -> list[Sample]:
    samples = [synthetic(i, dt, **kw) for i in range(1, n + 1)]
    with TraceWriter(path, meta or {"program": "redirect", "iface": "xs-in", "targets": list(TARGETS),
                                   "hz": round(1 / dt), "host": "test"}) as w:
        for s in samples:
            w.write(s)
    return samples


FAKE_AGENT = r'''
import json, sys, threading, time
sys.path.insert(0, {repo!r})
from gui.testing import synthetic
from backend.agent import catalog

def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n"); sys.stdout.flush()

IFACES = [{{"name": "eth0", "ifindex": 2, "driver": "virtio_net", "kind": "", "mtu": 1500, "up": True,
           "xdp": {{"attached": False, "prog_id": 0, "mode": ""}},
           "modes": {{"native": {{"possible": False, "why": "EOPNOTSUPP: GUEST_TSO4 without CTRL_GUEST_OFFLOADS"}},
                     "generic": {{"possible": True, "why": ""}}}}}},
          {{"name": "xs-in", "ifindex": 5, "driver": "veth", "kind": "veth", "mtu": 1500, "up": True,
           "xdp": {{"attached": False, "prog_id": 0, "mode": ""}},
           "modes": {{"native": {{"possible": True, "why": ""}}, "generic": {{"possible": True, "why": ""}}}}}}]
LAB = {{"prefix": "xs", "ingress": "xs-in", "targets": ["xs-t0", "xs-t1"]}}
streaming = threading.Event()
state = {{"prog_id": 0, "attached": None, "runs": 0}}
print("fake agent starting", file=sys.stderr, flush=True)
send({{"event": "ready", "protocol": 1, "version": "0.0-fake", "root": {root}, "pid": 1}})

def stream(hz):
    i = 0
    while True:
        time.sleep(1 / hz)
        if streaming.is_set():
            i += 1
            send({{"event": "sample", "sample": synthetic(i, 1 / hz).to_dict()}})

threading.Thread(target=stream, args=({hz},), daemon=True).start()
for line in sys.stdin:
    req = json.loads(line)
    cmd, rid = req.get("cmd"), req.get("id")
    if cmd == "interfaces":  # the program attached as the kernel would say it (pyroute2's mode names)
        out = json.loads(json.dumps(IFACES))
        for itf in out:
            if state["attached"] and itf["name"] == state["attached"]:
                itf["xdp"] = {{"attached": True, "prog_id": state["prog_id"], "mode": "xdpgeneric"}}
        send({{"id": rid, "ok": True, "result": out}})
    elif cmd == "programs_running":
        state["runs"] += 1000
        progs = [{{"id": state["prog_id"], "name": "xs_fake", "run_cnt": state["runs"], "run_time_ns": 50 * state["runs"],
                  "ifaces": [{{"name": state["attached"], "mode": "xdpgeneric"}}]}}] if state["attached"] else []
        send({{"id": rid, "ok": True, "result": {{"t": time.monotonic(), "cpus": 2, "host": "fake", "stats_on": True,
              "programs": progs}}}})
    elif cmd == "catalog":  # the real agent's catalog: the GUI takes its limits from it
        send({{"id": rid, "ok": True, "result": catalog.answer()}})
    elif cmd == "programs":
        send({{"id": rid, "ok": True, "result": [{{"name": "redirect", "description": "fake redirect", "params": []}}]}})
    elif cmd == "lab":
        send({{"id": rid, "ok": True, "result": LAB if req.get("action") != "down" else None}})
    elif cmd == "attach":
        if state["attached"]:
            send({{"id": rid, "ok": False, "error": "already attached: detach first"}})
            continue
        state["prog_id"] += 1
        state["attached"] = req["iface"]
        streaming.set()
        send({{"id": rid, "ok": True, "result": {{"iface": req["iface"], "program": req["program"],
              "targets": req.get("targets", []), "hz": {hz}, "host": "fake", "mode": "generic", "cpus": 2,
              "params": {{"targets": req.get("targets", []), "policy": req.get("policy", "rr")}},
              "requested_mode": req.get("mode", "auto"), "run_time": bool(req.get("run_time")),
              "probes_enabled": []}}}})
    elif cmd == "inject":  # checked as the real agent checks it (the catalog)
        try:
            catalog.inject_args(req, iface_check=lambda v, label: v)
        except catalog.BadRequest as e:
            send({{"id": rid, "ok": False, "error": str(e)}})
            continue
        time.sleep(0.05)
        send({{"id": rid, "ok": True, "result": {{"frames": req.get("count", 0), "runs": 1, "seconds": 0.05, "prog_id": 9}}}})
    elif cmd == "detach":
        streaming.clear()
        state["attached"] = None
        send({{"id": rid, "ok": True, "result": {{}}}})
        send({{"event": "detached", "reason": "detach requested"}})
    elif cmd == "stop":
        send({{"id": rid, "ok": True, "result": {{}}}})
        break
    else:
        send({{"id": rid, "ok": False, "error": f"unknown command {{cmd}}"}})
print("fake agent stopped", file=sys.stderr, flush=True)
'''


def fake_agent_command(tmp_dir: str | os.PathLike, hz: int = 20, root: bool = True) -> list[str]:
    """A command line running a protocol-speaking fake agent that streams synthetic samples
    (root=False: an agent that started but has no privileges)."""
    repo = str(Path(__file__).resolve().parent.parent)
    script = Path(tmp_dir) / f"fake_agent{'' if root else '_noroot'}.py"
    script.write_text(textwrap.dedent(FAKE_AGENT.format(repo=repo, hz=hz, root=root)))
    return [sys.executable, str(script)]


def failing_agent_command(message: str = "xdpscope agent: bpf() not permitted", code: int = 1) -> list[str]:
    return [sys.executable, "-c", f"import sys; print({message!r}, file=sys.stderr); sys.exit({code})"]
