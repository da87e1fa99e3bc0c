"""The engine end to end on the real kernel: record (bcc + bpf_link) -> inject (live frames)
-> summary --json, checked for exact equality with what the kernel must have done."""
from __future__ import annotations

import json
import signal
import time

import pytest

from backend.kernel import nic
from tests import expect
from tests.conftest import run_cli

pytestmark = pytest.mark.kernel


def inject(lab, count: int, batch: int = 64, flows: int = 1) -> dict:
    return json.loads(run_cli("inject", "--iface", lab.ingress, "--count", str(count),
                              "--batch", str(batch), "--flows", str(flows)).stdout)


def session(record, lab, program: str, *args: str, count: int, batch: int = 64, flows: int = 1) -> dict:
    """Record `program` on the lab ingress, inject, stop cleanly, return the summary."""
    rec = record("--iface", lab.ingress, "--program", program, "--hz", "20", *args)
    inject(lab, count, batch, flows)
    assert rec.stop() == 0
    return rec.summary()


def by_verdict(**nonzero: int) -> dict:
    return {a: nonzero.get(a, 0) for a in ("ABORTED", "DROP", "PASS", "TX", "REDIRECT")}


@pytest.mark.parametrize("ntargets,count,batch", [(2, 12800, 64), (3, 19200, 64), (3, 1000, 10), (3, 999, 256)])
def test_redirect_round_robin_exact(record, lab, ntargets, count, batch):
    targets = lab.targets[:ntargets]
    s = session(record, lab, "redirect", "--targets", ",".join(targets), count=count, batch=batch)
    want = expect.flushes(expect.round_robin(count, targets), batch)
    assert s["actions"] == by_verdict(REDIRECT=count)
    assert sum(s["redirect_targets"].values()) == count
    assert s["redirect_targets"] == {t: count // ntargets + (i < count % ntargets) for i, t in enumerate(targets)}
    assert s["flush_batches_by_target"] == expect.as_json(want)
    assert s["flush_batches"] == expect.total(want)
    assert s["devmap"] == {t: {"sent": n, "drops": 0} for t, n in s["redirect_targets"].items()}
    assert s["redirect_errors"] == {} and s["exceptions"] == {}


def test_batch_64_over_two_targets_flushes_only_16(record, lab):
    s = session(record, lab, "redirect", "--targets", ",".join(lab.targets[:2]), count=6400)
    assert s["flush_batches"] == {"16": 400}


@pytest.mark.parametrize("program,verdict", [("drop", "DROP"), ("pass", "PASS")])
def test_drop_and_pass_exact(record, lab, program, verdict):
    s = session(record, lab, program, count=5000, batch=50)
    assert s["actions"] == by_verdict(**{verdict: 5000})
    assert s["flush_batches"] == {} and s["redirect_targets"] == {}
    assert sum(cpu[verdict] for cpu in s["per_cpu_actions"]) == 5000  # per-CPU detail adds up


def test_tx_exact(record, lab):
    """Live-frame XDP_TX goes back out of the ingress device, through its bulk queue."""
    s = session(record, lab, "tx", count=3200, batch=40)
    assert s["actions"] == by_verdict(TX=3200)
    want = expect.flushes([lab.ingress] * 3200, 40)
    assert s["flush_batches_by_target"] == expect.as_json(want)  # 40 = 16 + 16 + 8 per batch
    assert s["devmap"] == {lab.ingress: {"sent": 3200, "drops": 0}}


def test_mix_exact(record, lab):
    pct = {"DROP": 30, "PASS": 40, "TX": 10, "REDIRECT": 20}
    targets = lab.targets[:2]
    s = session(record, lab, "mix", "--mix", ",".join(f"{k}={v}" for k, v in pct.items()),
                "--targets", ",".join(targets), count=6400)
    assert s["actions"] == by_verdict(**{k: 64 * v for k, v in pct.items()})
    assert s["redirect_targets"] == {targets[0]: 640, targets[1]: 640}
    want = expect.flushes(expect.mix_destinations(6400, pct, lab.ingress, targets), 64)
    assert s["flush_batches_by_target"] == expect.as_json(want)


def test_hash_keeps_each_flow_on_one_target(lab):
    """Flow by flow through the engine API: every frame of a flow lands on one target."""
    from backend.kernel import injector
    from backend.kernel.programs import ProgramSpec
    from backend.agent.session import Session, SessionConfig
    spec = ProgramSpec(name="redirect", targets=lab.targets, policy="hash")
    s = Session(SessionConfig(lab.ingress, spec, mode="native"))
    try:
        s.start()
        s.collector.sample()
        used = set()
        for flow in range(12):
            injector.inject(lab.ingress, 320, batch=64, flows=1, first_flow=flow)
            got = {t: n for t, n in s.collector.sample().target_totals().items() if n}
            assert list(got.values()) == [320], f"flow {flow} split over targets: {got}"
            used |= set(got)
        assert len(used) > 1, "12 flows all hashed to one target"
    finally:
        s.close()


def test_hash_totals_via_cli(record, lab):
    s = session(record, lab, "redirect", "--targets", ",".join(lab.targets), "--policy", "hash",
                count=4000, flows=8)
    assert s["actions"] == by_verdict(REDIRECT=4000)
    assert sum(s["redirect_targets"].values()) == 4000
    assert all(n % 500 == 0 for n in s["redirect_targets"].values())  # whole flows of 500


USER_PROG = """\
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>

/* A user's program: drop UDP from even source ports, pass the rest. */
int my_filter(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end)
        return XDP_ABORTED;
    return (ntohs(udp->source) & 1) ? XDP_PASS : XDP_DROP;
}
"""


def test_user_program_counted_without_edits(record, lab, tmp_path):
    prog = tmp_path / "my_filter.c"
    prog.write_text(USER_PROG)
    s = session(record, lab, str(prog), count=4000, flows=4)  # source ports 1024..1027
    assert s["actions"] == by_verdict(DROP=2000, PASS=2000)
    assert s["program"] == "my_filter.c"


def test_redirect_errors_by_errno(record, lab):
    """The nx target's peer cannot receive: its frames fail at flush with ENXIO, not silently."""
    s = session(record, lab, "redirect", "--targets", f"{lab.targets[0]},{lab.nxtarget}", count=6400)
    assert s["actions"] == by_verdict(REDIRECT=6400)
    assert s["redirect_targets"] == {lab.targets[0]: 3200, lab.nxtarget: 3200}
    assert s["redirect_errors"] == {lab.nxtarget: {"ENXIO": 3200}}
    assert s["devmap"] == {lab.targets[0]: {"sent": 3200, "drops": 0}, lab.nxtarget: {"sent": 0, "drops": 3200}}


def test_sigkill_leaves_no_program_and_a_readable_trace(record, lab):
    rec = record("--iface", lab.ingress, "--program", "drop", "--hz", "20")
    assert nic.interface(lab.ingress).xdp["attached"]
    inject(lab, 1000)
    time.sleep(0.5)  # let a few samples land
    rec.proc.send_signal(signal.SIGKILL)
    rec.proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while nic.interface(lab.ingress).xdp["attached"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not nic.interface(lab.ingress).xdp["attached"], "program outlived its SIGKILLed owner"
    s = rec.summary()
    assert s["actions"] == by_verdict(DROP=1000) and s["samples"] >= 5


def test_auto_mode_falls_back_with_the_drivers_reason(record, lab):
    from backend.data.trace import TraceReader
    rec = record("--iface", lab.bigmtu, "--program", "drop", "--mode", "auto")
    assert rec.stop() == 0
    with TraceReader(rec.out) as r:
        assert r.meta["mode"] == "generic" and r.meta["requested_mode"] == "auto"
        assert "ERANGE" in r.meta["mode_note"] and "Peer MTU is too large" in r.meta["mode_note"]


def test_duration_and_sigterm_end_a_recording(record, lab):
    from tests.conftest import Recorder
    timed = record("--iface", lab.ingress, "--program", "pass", "--hz", "10", "--duration", "1", name="timed.xst")
    assert timed.proc.wait(timeout=30) == 0
    s = timed.summary()
    assert 0.9 <= s["duration_s"] <= 1.3 and 9 <= s["samples"] <= 12
    term = record("--iface", lab.ingress, "--program", "pass", name="term.xst")
    assert isinstance(term, Recorder) and term.stop(signal.SIGTERM) == 0
    assert not nic.interface(lab.ingress).xdp["attached"]
