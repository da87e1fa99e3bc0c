"""The path diagram of live lab sessions fed through the driver's receive path (inject --wire): its
edges equal the frames sent, the engine's totals and veth's own counters; the flush node's frames per
poll per target predict the flush histogram; a target that fails carries exactly its errors on the
loss edge."""
from __future__ import annotations

import contextlib
import os
import threading

import pytest

from backend.data import pathmodel as pm
from backend.kernel import wire
from tests.test_wire import queue_counter

pytestmark = pytest.mark.kernel


def session(record, lab, targets: list[str], send) -> tuple[dict, pm.Path, object]:
    rec = record("--iface", lab.ingress, "--program", "redirect", "--targets", ",".join(targets), "--hz", "20")
    result = send()
    assert rec.stop() == 0
    s = rec.summary()
    return s, pm.build(s), result


def predicted(p: pm.Path, s: dict, t: str) -> dict[str, int]:
    """The prediction the flush node states for target t, from the numbers on the diagram."""
    queued = p.edge("redir", f"bq:{t}").frames.value
    polls = pm.evaluate(pm.active_polls(s, s["iface"]), s)
    return {str(k): n for k, n in sorted(pm.predicted_flushes(int(queued), int(polls)).items())}


def test_edges_equal_the_frames_sent_and_the_driver(record, lab):
    n = 4000
    targets = lab.targets[:2]
    s, p, r = session(record, lab, targets, lambda: wire.send(lab.ingress, n, rate=20000.0))
    assert r.frames == n == r.peer_tx_packets
    assert p.edge("rxq", "poll").frames.value == n                 # NAPI work of the ingress
    assert p.edge("poll", "recv").frames.value == n
    runs = p.edge("recv", "prog")
    assert runs.frames.value == n and dict((k, x.value) for k, x in runs.also)["driver xdp_packets"] == n
    assert queue_counter(s, "packets") == n
    assert p.edge("prog", "redir").frames.value == n == queue_counter(s, "redirect")
    for t in targets:
        assert p.edge("redir", f"bq:{t}").frames.value == n // 2
        assert p.edge("flush", f"xmit:{t}").frames.value == n // 2
    for v, dst in (("PASS", "pass"), ("TX", "tx"), ("DROP", "drop"), ("ABORTED", "aborted")):
        assert p.edge("prog", dst).frames.value == 0
    assert not [e for e in p.edges if e.loss and e.frames.value]
    # one sender: every poll took the one frame just sent, so each target got 0 or 1 frames a poll
    napi = s["napi"][lab.ingress]
    assert napi["hist"][1] == napi["polls"] - napi["hist"][0] == n, f"polls were not of one frame: {napi}"
    for t in targets:
        assert predicted(p, s, t) == s["flush_batches_by_target"][t] == {"1": n // 2}
    flush = p.node("flush").text()
    assert flush.count("= measured") == 2 and "≠" not in flush


@contextlib.contextmanager
def threaded_napi(ifname: str, cpu: int, prio: int):
    """The ingress's NAPI in a kthread (sysfs `threaded`), pinned to cpu at a real-time priority, so
    a burst the sender writes is polled at once when the sender sleeps, never split."""
    knob = f"/sys/class/net/{ifname}/threaded"
    with open(knob, "w") as f:
        f.write("1")
    try:
        comm = f"napi/{ifname}-"[:15]
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit() and _comm(d).startswith(comm)]
        assert pids, f"no NAPI kthread of {ifname}"
        for pid in pids:
            os.sched_setaffinity(pid, {cpu})
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(prio))
        yield
    finally:
        with open(knob, "w") as f:
            f.write("0")


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def bursts(lab, n: int, burst: int, cpu: int = 0) -> wire.WireResult:
    """Send n frames in bursts, from a real-time thread above the NAPI kthread (a burst is written
    whole before the poll runs)."""
    out: list = []

    def run() -> None:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))  # this thread
        try:
            out.append(wire.send(lab.ingress, n, rate=3200.0, burst=burst, cpu=cpu))
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            out.append(e)
        finally:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    with threaded_napi(lab.ingress, cpu, 10):
        t = threading.Thread(target=run)
        t.start()
        t.join(timeout=120)
    assert out, "sender did not finish"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def test_frames_per_poll_per_target_predict_the_flush_sizes(record, lab):
    """Bursts of 40 polled whole: 20 frames per target per poll, so each poll flushes 16 (the bulk
    queue is full) and then 4 at its end — the flush node predicts exactly the measured histogram."""
    n, burst = 40 * 120, 40
    targets = lab.targets[:2]
    s, p, r = session(record, lab, targets, lambda: bursts(lab, n, burst))
    assert r.frames == n
    napi = s["napi"][lab.ingress]
    assert napi["work"] == n and napi["polls"] - napi["hist"][0] == n // burst, napi
    per_poll = [x for x in p.node("flush").nums() if x.expr[0] == "div" and x.expr[1][0] == "add"
                and x.expr[1][1][1][0] == "devmap"]
    assert [x.value for x in per_poll] == [burst / 2, burst / 2]
    for t in targets:
        assert s["flush_batches_by_target"][t] == {"4": n // burst, "16": n // burst}
        assert predicted(p, s, t) == s["flush_batches_by_target"][t]
    assert p.node("flush").text().count("= measured") == 2


def test_failing_target_loss_edge_carries_exactly_the_errors(record, lab):
    """xs-nx's peer is down: its frames are queued, then dropped at the flush with ENXIO."""
    n = 3000
    s, p, r = session(record, lab, [lab.targets[0], lab.nxtarget], lambda: wire.send(lab.ingress, n))
    assert r.frames == n
    half = n // 2
    loss = p.edge("flush", f"drop:{lab.nxtarget}")
    assert loss.loss and loss.frames.value == half
    assert s["redirect_errors"] == {lab.nxtarget: {"ENXIO": half}}
    assert s["devmap"][lab.nxtarget] == {"sent": 0, "drops": half}
    assert "ENXIO" in loss.label
    node = p.node(f"drop:{lab.nxtarget}").text()
    assert f"{half:,} ENXIO" in node
    assert p.edge("flush", f"xmit:{lab.nxtarget}").frames.value == 0
    assert p.edge("flush", f"xmit:{lab.targets[0]}").frames.value == half
    lost = sum(e.frames.value for e in p.edges if e.loss)
    assert lost == half  # no other loss drawn
    assert queue_counter(s, "redirect") == n  # veth counts the redirect: it failed later, at the flush
