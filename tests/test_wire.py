"""inject --wire: frames sent from the ingress's veth peer go through veth's receive path (NAPI poll ->
veth_xdp_rcv -> the program -> flush at the end of the poll). Checked against truths xdpscope did
not compute: the frames the kernel accepted from the socket, the peer's own tx counter, the
driver's XDP counters, and NAPI work."""
from __future__ import annotations

import json
import threading

import pytest

from tests.conftest import run_cli
from tests.test_agent import AgentProc
from tests.test_engine import by_verdict

pytestmark = pytest.mark.kernel


def wire(lab, count: int, *args: str) -> dict:
    return json.loads(run_cli("inject", "--iface", lab.ingress, "--count", str(count), "--wire", *args).stdout)


def queue_counter(s: dict, kind: str) -> int:
    return sum(v for k, v in s["driver_counters"].items() if k.startswith("rx_queue_") and k.endswith(f"_xdp_{kind}"))


def check_napi(s: dict, lab, n: int) -> None:
    """The ingress's NAPI polls did all the work: n frames, each poll within its budget."""
    napi = s["napi"][lab.ingress]
    assert napi["work"] == n
    assert sum(napi["hist"]) == napi["polls"]
    active = napi["polls"] - napi["hist"][0]
    assert -(-n // 64) <= active <= n           # at most 64 (the budget) frames per poll, at least one
    assert napi["budget"] == 64 * napi["polls"]  # veth's weight
    assert napi.get("full", 0) * 64 <= n


def test_wire_frames_run_the_program_in_napi(record, lab):
    n = 3000
    rec = record("--iface", lab.ingress, "--program", "redirect", "--targets", ",".join(lab.targets[:2]), "--hz", "20")
    r = wire(lab, n)
    assert rec.stop() == 0
    s = rec.summary()
    assert r["frames"] == n and r["peer_tx_packets"] == n and r["peer_tx_dropped"] == 0
    assert r["peer"] == lab.ingress_peer and r["netns"] == lab.netns and r["prog_id"] > 0
    assert s["actions"] == by_verdict(REDIRECT=n)
    assert s["redirect_targets"] == {lab.targets[0]: n // 2, lab.targets[1]: n // 2}
    assert s["devmap"] == {t: {"sent": n // 2, "drops": 0} for t in lab.targets[:2]}
    check_napi(s, lab, n)
    # veth's own counters (ethtool -S) agree
    assert queue_counter(s, "packets") == n and queue_counter(s, "redirect") == n
    assert s["driver_verdicts"]["REDIRECT"] == n


def test_wire_paced_with_flows(record, lab):
    n = 2000
    rec = record("--iface", lab.ingress, "--program", "drop", "--hz", "20")
    r = wire(lab, n, "--rate", "20000", "--flows", "4", "--size", "128", "--cpu", "0")
    assert rec.stop() == 0
    s = rec.summary()
    assert r["frames"] == n == r["peer_tx_packets"] and r["cpu"] == 0
    assert s["actions"] == by_verdict(DROP=n)
    check_napi(s, lab, n)
    assert queue_counter(s, "packets") == n and queue_counter(s, "drops") == n
    assert s["per_cpu_actions"][0]["DROP"] == n  # the NAPI poll ran on the sender's CPU


def test_hash_policy_keeps_wire_flows_whole(record, lab):
    n = 4000
    rec = record("--iface", lab.ingress, "--program", "redirect", "--targets", ",".join(lab.targets),
                 "--policy", "hash", "--hz", "20")
    wire(lab, n, "--flows", "8")
    assert rec.stop() == 0
    s = rec.summary()
    assert s["actions"] == by_verdict(REDIRECT=n)
    assert all(v % (n // 8) == 0 for v in s["redirect_targets"].values())  # whole flows of 500


def test_agent_inject_wire(lab):
    agent = AgentProc()
    try:
        assert agent.read()["event"] == "ready"
        assert agent.call("attach", iface=lab.ingress, program="drop", hz=20)["ok"]
        done = agent.call("inject", iface=lab.ingress, count=700, wire=True, rate=50000.0)
        assert done["ok"], done
        assert done["result"]["frames"] == 700 and done["result"]["peer_tx_packets"] == 700
        assert agent.call("detach")["ok"]
        assert agent.call("stop")["ok"]
        assert agent.close() == 0
        assert sum(cpu[1] for s in agent.samples for cpu in s["actions"]) == 700
        assert sum(d.get("work", 0) for s in agent.samples for dev, d in s.get("napi", {}).items()
                   if dev == lab.ingress) == 700
    finally:
        if agent.p.poll() is None:
            agent.p.kill()
            agent.p.wait()


def test_wire_to_a_stopped_injection(lab):
    """A cancelled send stops between batches and says how far it got."""
    from backend.kernel import wire as w
    from backend.errors import XdpscopeError
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(XdpscopeError, match="stopped after 0 of 100 frames"):
        w.send(lab.ingress, 100, cancel=cancel)


@pytest.mark.parametrize("args,message", [
    (["--iface", "eth0"], "carries the default route"),
    (["--iface", "lo"], "not veth: --wire sends from the ingress's veth peer"),
    (["--iface", "nosuch0"], "no such"),
    (["--size", "4000"], "--size must be between"),
    (["--size", "1600"], "larger than"),
    (["--flows", "0"], "--flows must be between"),
    (["--batch", "5000"], "--batch must be between 1 and 1024"),
    (["--burst", "8"], "--burst needs --rate"),
])
def test_wire_bad_input_is_one_line(lab, args, message):
    if "--iface" not in args:
        args = ["--iface", lab.ingress, *args]
    p = run_cli("inject", "--count", "10", "--wire", *args, check=False)
    assert p.returncode != 0 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_rate_without_wire_is_a_usage_error(lab):
    p = run_cli("inject", "--iface", lab.ingress, "--count", "10", "--rate", "100", check=False)
    assert p.returncode == 2 and "--rate and --burst pace frames sent --wire" in p.stderr
