"""Each probe against what the kernel must have done: cpumap bulks, NAPI work, exceptions,
per-packet redirect tracing for programs that are not ours, and BPF run-time statistics."""
from __future__ import annotations

import pytest

import time

from tests import expect, wire
from tests.test_engine import by_verdict, session

pytestmark = pytest.mark.kernel


def test_cpumap_bulks_of_eight(record, lab):
    """rr over CPUs 0,1 in batches of 64: 32 frames per CPU queue per batch = 4 bulks of 8."""
    s = session(record, lab, "cpumap", "--targets", "0,1", count=6400)
    assert s["actions"] == by_verdict(REDIRECT=6400)
    assert s["redirect_targets"] == {"cpu0": 3200, "cpu1": 3200}
    bulk = s["cpumap"]["bulk"]
    assert bulk == {"8": 800}


def test_cpumap_fanout_per_cpu_and_kthreads(record, lab):
    """xdp_cpumap_enqueue per target CPU: every frame sent reaches its CPU's queue, in bulks of 8;
    what the queue took (processed - drops) is exactly what that CPU's kthread processed."""
    n = 6400
    s = session(record, lab, "cpumap", "--targets", "0,1", count=n)
    enq, kthread = s["counters"]["cpumap_enqueue"], s["counters"]["cpumap_kthread"]
    assert [e["processed"] for e in enq] == [n // 2, n // 2]
    assert [e["bulks"] for e in enq] == [n // 2 // 8, n // 2 // 8]
    assert sum(e["drops"] for e in enq) == s["cpumap"].get("drops", 0)
    assert [k["processed"] for k in kthread] == [e["processed"] - e["drops"] for e in enq]
    assert [k["drops"] for k in kthread] == [0, 0] and all(k["sched"] >= 1 for k in kthread)


def test_napi_work_on_target_peers_equals_frames_sent(record, lab):
    s = session(record, lab, "redirect", "--targets", ",".join(lab.targets[:2]), count=6400)
    peers = {p: s["napi"][f"{p}@{lab.netns}"] for p in lab.target_peers[:2]}  # peers live in the lab netns
    assert {p: v["work"] for p, v in peers.items()} == {p: 3200 for p in peers}
    for v in peers.values():  # veth polls with a budget of 64; each poll lands in one work bin
        assert v["budget"] == 64 * v["polls"] and sum(v["hist"]) == v["polls"]


def test_driver_path_exceptions_and_napi(record, lab):
    """Through veth's receive path (not live frames, whose ABORTED raises no xdp_exception):
    every ABORTED verdict is an exception, and NAPI work on the ingress equals the frames."""
    rec = record("--iface", lab.ingress, "--program", "mix", "--mix", "ABORTED=50,DROP=50", "--hz", "20")
    wire.send(lab, 1000)
    time.sleep(0.3)  # NAPI runs after the last send returns
    assert rec.stop() == 0
    s = rec.summary()
    assert s["actions"] == by_verdict(ABORTED=500, DROP=500)
    assert s["exceptions"] == {"ABORTED": 500}
    assert s["napi"][lab.ingress]["work"] == 1000


def test_trace_redirects_gives_fanout_of_foreign_programs(record, lab, tmp_path):
    """A program that redirects by ifindex with no counters of ours: fan-out from xdp_redirect."""
    prog = tmp_path / "fwd.c"
    prog.write_text(f"int fwd(struct xdp_md *ctx) {{ return bpf_redirect({lab.ifindex[lab.targets[2]]}, 0); }}\n")
    s = session(record, lab, str(prog), "--trace-redirects", count=1000, batch=32)
    assert s["actions"] == by_verdict(REDIRECT=1000)
    assert s["redirect_targets"] == {lab.targets[2]: 1000}
    assert s["flush_batches"] == expect.total(expect.flushes([lab.targets[2]] * 1000, 32)) == {"8": 1, "16": 62}


def test_run_time_statistics(record, lab):
    s = session(record, lab, "drop", "--run-time", count=5000)
    assert s["run"]["cnt"] == 5000
    assert s["run"]["ns"] > 0 and s["run"]["ns_per_run"] == pytest.approx(s["run"]["ns"] / 5000)
