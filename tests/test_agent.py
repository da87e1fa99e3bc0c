"""The agent protocol (docs/agent-protocol.md) against the real engine, as the GUI drives it."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import XDPSCOPE

pytestmark = pytest.mark.kernel


class AgentProc:
    def __init__(self):
        self.p = subprocess.Popen([*XDPSCOPE, "agent", "--stdio"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.next_id = 0
        self.samples: list[dict] = []
        self.events: list[dict] = []

    def read(self) -> dict:
        line = self.p.stdout.readline()
        assert line, f"agent died: {self.p.stderr.read()}"
        return json.loads(line)

    def call(self, cmd: str, **args):
        self.next_id += 1
        self.p.stdin.write(json.dumps({"id": self.next_id, "cmd": cmd, **args}) + "\n")
        self.p.stdin.flush()
        while True:
            msg = self.read()
            if msg.get("id") == self.next_id:
                return msg
            self.collect(msg)

    def collect(self, msg: dict) -> None:
        if msg.get("event") == "sample":
            self.samples.append(msg["sample"])
        else:
            self.events.append(msg)

    def close(self) -> int:
        if self.p.poll() is None:
            self.p.stdin.close()
            for line in self.p.stdout:
                self.collect(json.loads(line))
        return self.p.wait(timeout=30)


@pytest.fixture
def agent():
    a = AgentProc()
    assert a.read()["event"] == "ready"
    yield a
    if a.p.poll() is None:
        a.p.kill()
        a.p.wait()


def test_attach_stream_inject_detach(agent, lab):
    meta = agent.call("attach", iface=lab.ingress, program="redirect", targets=lab.targets[:2], hz=20)
    assert meta["ok"], meta
    assert meta["result"]["iface"] == lab.ingress and meta["result"]["mode"] == "native"
    done = agent.call("inject", iface=lab.ingress, count=6400, batch=64)
    assert done["ok"] and done["result"]["frames"] == 6400
    assert agent.call("detach")["ok"]
    assert agent.call("stop") == {"id": agent.next_id, "ok": True, "result": {}}
    assert agent.close() == 0
    redirected = sum(cpu[4] for s in agent.samples for cpu in s["actions"])
    per_target = {t: sum(sum(s.get("targets", {}).get(t, [0])) for s in agent.samples) for t in lab.targets[:2]}
    flushes = sum(s.get("flush", {}).get(t, [0] * 17)[16] for s in agent.samples for t in lab.targets[:2])
    assert (redirected, per_target, flushes) == (6400, {lab.targets[0]: 3200, lab.targets[1]: 3200}, 400)
    assert any(e.get("event") == "detached" for e in agent.events)


def test_errors_are_answers_not_crashes(agent, lab):
    assert agent.call("attach", iface="nosuch0", program="drop") == \
        {"id": 1, "ok": False, "error": "nosuch0: no such network interface"}
    assert agent.call("bogus")["error"] == "unknown command 'bogus'"
    assert agent.call("inject", iface=lab.ingress, count=10)["error"].endswith(
        "no XDP program attached (start `xdpscope record` first)")
    assert agent.call("attach", iface=lab.ingress, program="drop")["ok"]
    assert agent.call("attach", iface=lab.ingress, program="drop")["error"] == "already attached: detach first"
    assert agent.call("interfaces")["ok"]
    assert agent.close() == 0  # end of stdin: detach and exit


def test_lab_and_interfaces(agent, lab):
    st = agent.call("lab", action="status", prefix=lab.prefix)
    assert st["ok"] and st["result"]["ingress"] == lab.ingress
    names = {i["name"]: i for i in agent.call("interfaces")["result"]}
    assert names[lab.ingress]["driver"] == "veth"
    assert names[lab.bigmtu]["modes"]["generic"]["possible"] is True
