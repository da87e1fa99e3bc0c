"""The collector's vector path (backend/data/rawvec.py, Collector.sample) gives exactly the Sample
that decode() gives from the deltas of two read_raw() dicts: the same values, the same dict order,
the same JSON. Unit tests on recorded-style raw reads (keys that appear, leave, come back, zeros
the probes leave out), and kernel tests on real sessions reading the same kernel counts both ways."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from backend.data.decode import decode
from backend.data.rawvec import RawVector
from backend.data.sample import Sample, nest
from tests import wire

T0, T1, NX = (0, 11), (0, 12), (4026532000, 3)
NAMES = {T0: "xs-t0", T1: "xs-t1", NX: "veth0@blue", 0: "xs-t0", 1: "xs-t1", (0, 0): "(no device)"}


def text(s, vec=None) -> str:
    """The sample's JSON, checked against the leaf-at-a-time form to_dict() was before, and (the
    vector's last Sample) against the vector's dict and JSON of it."""
    d = s.to_dict()
    assert json.dumps(d) == json.dumps({"t": s.t, "dt": s.dt, **nest(s.leaves())})
    out = json.dumps(d, separators=(",", ":"))
    if vec is not None:
        assert json.dumps(vec.to_dict(s), separators=(",", ":")) == out
        assert vec.to_json(s) in (out, None)
        assert vec.to_json(s) is not None or vec._made is None
    return out


def old_path(last: dict, raw: dict, t: float, dt: float, names: dict = NAMES):
    return decode({k: v - last.get(k, 0) for k, v in raw.items()}, names, t, dt)


def reads(rng: random.Random, n: int):
    """n cumulative reads of two sources as a collector's would be: fixed verdicts and targets,
    probe entries that appear (hash order changes), zero bins left out, a driver counter that
    leaves and comes back, LEAF and ENTRY families."""
    counts: dict = {}
    devs: list = []
    for i in range(n):
        def grow(key, p=0.5, most=5):
            if rng.random() < p:
                counts[key] = counts.get(key, 0) + rng.randint(0, most)
            return counts.get(key, 0)
        fixed = {}
        for cpu in range(2):
            fixed.update({("verdicts", cpu, a): grow(("verdicts", cpu, a)) for a in range(5)})
            fixed.update({("targets", s, cpu): grow(("targets", s, cpu), 0.3) for s in range(2)})
        probes = {}
        if i % 10 == 0:                    # a device appears, hash order changes: now and then
            devs = [T0, T1, NX][:1 + min(i // 10, 2)]
            rng.shuffle(devs)
        for d in devs:
            for b in range(17):
                v = grow(("flush", d, b), 0.1)
                if v or b % 3 == 0:           # the probes leave zero bins out; a dict source may not
                    probes[("flush", d, b)] = v
            probes[("devmap", d, "sent")] = grow(("devmap", d, "sent"), 0.3)
            probes[("devmap", d, "drops")] = grow(("devmap", d, "drops"), 0.1)
            probes[("napi", d, "polls")] = grow(("napi", d, "polls"), 0.3)
            probes[("napi", d, "work")] = grow(("napi", d, "work"), 0.3)
            probes[("redirect_tp", d)] = grow(("redirect_tp", d), 0.3)
        if i % 20 != 2:
            probes[("redirect_errors", T1, -6)] = grow(("redirect_errors", T1, -6), 0.5)
        for cpu in range(2):
            for m in ("processed", "drops", "bulks"):
                probes[("cpumap_enqueue", cpu, m)] = grow(("cpumap_enqueue", cpu, m), 0.2)
        driver = {("driver", "rx_xdp_packets"): grow(("driver", "rx_xdp_packets"))}
        if i % 5 != 3:                     # counters the driver stops listing, then lists again
            driver[("driver", "rx_queue_1_xdp_packets")] = grow(("driver", "rx_queue_1_xdp_packets"))
        if i % 7 not in (2, 3):
            driver[("driver", "rx_queue_2_xdp_packets")] = grow(("driver", "rx_queue_2_xdp_packets"))
        driver[("run", "cnt")] = grow(("run", "cnt"))
        yield fixed, probes, driver


@pytest.mark.unit
@pytest.mark.parametrize("seed", range(20))
def test_vector_delta_decodes_as_the_dict_path(seed: int) -> None:
    rng = random.Random(seed)
    vec = RawVector(NAMES, size=4)     # small: the vector grows as keys appear
    last: dict = {}
    for i, (fixed, probes, driver) in enumerate(reads(rng, 40)):
        raw = {**fixed, **probes, **driver}
        for name, part in (("fixed", fixed), ("probes", probes), ("driver", driver)):
            vec.put(name, part)
        if i == 0:
            vec.commit()
        else:
            got = vec.sample(1.0 + i / 100, 0.01)
            want = old_path(last, raw, 1.0 + i / 100, 0.01)
            assert got == want, i
            assert text(got, vec) == text(want), i
        last = raw


@pytest.mark.unit
def test_same_slots_fill_the_template_as_decode_would(monkeypatch) -> None:
    """Counts that move every read (steady traffic): decode runs once per set of slots, and the
    filled template is decode's Sample, values, order and JSON."""
    from backend.data import rawvec
    calls = []
    real = rawvec.decode_parsed
    monkeypatch.setattr(rawvec, "decode_parsed", lambda *a: calls.append(1) or real(*a))
    vec = RawVector(NAMES)
    last: dict = {}
    for i in range(30):
        n = i * 7
        raw = {**{("verdicts", c, a): n * (a + 1) for c in range(2) for a in range(5)},
               **{("targets", s, c): n for s in range(2) for c in range(2)},
               ("flush", T0, 16): n, ("flush", T1, 3): n, ("devmap", T0, "sent"): n * 16, ("devmap", T0, "drops"): 0,
               ("napi", NX, "polls"): n, ("napi", NX, "work"): n * 3, ("redirect_tp", NX): n, ("run", "cnt"): n,
               **({("redirect_errors", T1, -6): n // 10} if i > 20 else {})}
        vec.put("all", raw)
        if i == 0:
            vec.commit()
        else:
            got = vec.sample(float(i), 0.01)
            want = old_path(last, raw, float(i), 0.01)
            assert got == want and text(got, vec) == text(want), i
        last = raw
    # one decode for the steady slots, one when an error counter appeared, one for each read
    # where it did not move (i // 10 stays), one when it moved again
    assert len(calls) <= 8


@pytest.mark.unit
def test_regions_of_changing_keys_are_used_again() -> None:
    """A hash map whose keys keep changing (devices that come and go) lays its region out again
    each time: the vector stays in proportion to its keys, and counts stay exact."""
    devs = [(0, 100 + i) for i in range(40)]
    names = {**NAMES, **{d: f'd%{d[1]}s"é' for d in devs}}   # (the JSON's %-format: names with % and quotes)
    vec = RawVector(names, size=4)
    region = None
    counts: dict = {}
    last: dict = {}
    rng = random.Random(3)
    for i in range(300):
        live = sorted(rng.sample(devs, rng.randint(1, 12)), key=lambda d: rng.random())
        keys = [k for d in live for k in (("devmap", d, "sent"), None, ("devmap", d, "drops"))]
        for k in keys:
            if k is not None:
                counts[k] = counts.get(k, 0) + rng.randint(0, 3)
        raw = {k: counts[k] for k in keys if k is not None}
        if region is None or i % 3 == 0:   # (the probes lay out again only when the keys differ)
            region = vec.region(keys, region)
            start = region[0]
            vec.layout("map", np.array([start + j for j, k in enumerate(keys) if k is not None]))
            where = {k: start + j for j, k in enumerate(keys) if k is not None}
        else:
            raw = {k: counts[k] for k in where}
        for k, slot in where.items():
            vec.cur[slot] = raw[k]
        if i == 0:
            vec.commit()
        else:
            got = vec.sample(float(i), 0.01)
            want = old_path(last, raw, float(i), 0.01, names)
            assert got == want and text(got, vec) == text(want), i
        last = raw
    assert len(vec.keys) <= 2 * 3 * 12 * 2


# -- real sessions ----------------------------------------------------------------------------------

def both_paths(c, send, rounds: int = 3) -> list:
    """Frames sent between reads; each read taken both ways on counts that hold still (settled,
    nothing sent meanwhile)."""
    c.settle()
    raw0 = c.read_raw()
    c.baseline()
    out = []
    for r in range(rounds):
        if r:   # the first interval: nothing happened (the zeros decode keeps)
            send()
        c.settle()
        raw1 = c.read_raw()
        got = c.sample()
        want = c.to_sample({k: v - raw0.get(k, 0) for k, v in raw1.items()}, got.t, got.dt)
        assert got == want
        assert text(got) == text(want) == json.dumps(c.to_dict(got), separators=(",", ":")) == c.to_json(got)
        out.append(got)
        raw0 = raw1
    return out


@pytest.mark.kernel
@pytest.mark.parametrize("trace_redirects", [False, True])
def test_session_vector_path_equals_dict_path(lab, trace_redirects: bool) -> None:
    from backend.agent.session import Session, SessionConfig
    from backend.kernel import injector, programs
    s = Session(SessionConfig(iface=lab.ingress, program=programs.ProgramSpec(name="redirect", targets=lab.targets),
                              hz=100, run_time=True, trace_redirects=trace_redirects))
    s.start()
    try:
        got = both_paths(s.collector, lambda: injector.inject(lab.ingress, 3000, cpu=0))
    finally:
        s.close()
    sent = sum(sum(n for n in per_cpu) for s_ in got for per_cpu in s_.targets.values())
    assert sent == 6000                           # the program's own count of what was injected
    assert sum(s_.run["cnt"] for s_ in got[1:]) == 6000   # the kernel's run count
    assert any(s_.flush for s_ in got) and any(s_.napi for s_ in got)


@pytest.mark.kernel
def test_watch_vector_path_equals_dict_path(lab) -> None:
    """Watching a program someone else attached: driver counters and the xdp_redirect probe."""
    import os

    from backend.agent.session import Session, SessionConfig
    from backend.kernel import attach, bpfsys, nic
    fd = bpfsys.load_xdp_pass()
    link = attach.attach(fd, nic.interface(lab.ingress), "native")
    try:
        s = Session(SessionConfig(iface=lab.ingress, program=None, hz=100))
        s.start()
        try:
            got = both_paths(s.collector, lambda: wire.send(lab, 2000))
        finally:
            s.close()
    finally:
        link.close()
        os.close(fd)
    assert sum(s_.verdict_totals()[2] for s_ in got) == 4000   # PASS, from veth's own counters
    assert sum(s_.driver.get("rx_queue_0_xdp_packets", 0) for s_ in got) == 4000


@pytest.mark.unit
def test_to_dict_nests_as_the_leaves_do() -> None:
    """Odd shapes: a CPU list with an empty entry, families sharing a trace field, a 0 that is
    data (cpumap drops), a value not nested as its family says (the leaf path says why)."""
    s = Sample(t=1.0, dt=0.5, cpumap_enqueue=[{}, {"processed": 3, "drops": 0, "bulks": 1}],
               devmap={"a": {"sent": 1, "drops": 0}}, oversize_flushes={"b": 2, "a": 1},
               napi={"d": {}}, napi_hist={"d": [0] * 9, "e": []}, cpumap_drops=0, cpumap_bulk=[0] * 9,
               verdicts=[[], [0, 1, 0, 0, 0]], run={"cnt": 5})
    text(s)
    assert s.to_dict()["devmap"] == {"a": {"sent": 1, "drops": 0, "oversize_flushes": 1}, "b": {"oversize_flushes": 2}}
    assert s.to_dict()["actions"] == [0, [0, 1, 0, 0, 0]]
    bad = Sample(t=0, dt=0, flush={"a": 3})
    with pytest.raises(ValueError, match="flush"):
        bad.to_dict()


@pytest.mark.kernel
def test_sampling_thread_real_time_and_gc_frozen_only_while_sampling(lab) -> None:
    """While run() samples, its thread is SCHED_FIFO and the objects made before are out of the
    collector's reach (gc.freeze); both undone when it returns."""
    import gc
    import os
    import threading

    from backend.agent.session import Session, SessionConfig
    from backend.kernel import programs
    s = Session(SessionConfig(iface=lab.ingress, program=programs.ProgramSpec(name="redirect", targets=lab.targets),
                              hz=100))
    s.start()
    seen = []

    def emit(sample) -> None:
        seen.append((os.sched_getscheduler(threading.get_native_id()), gc.get_freeze_count()))
        if len(seen) == 3:
            s.stop()

    before = os.sched_getscheduler(threading.get_native_id())
    try:
        s.run(emit)
    finally:
        s.close()
    assert len(seen) == 4                                    # three, and the last partial interval
    assert all(policy == os.SCHED_FIFO and frozen > 0 for policy, frozen in seen[:3])
    assert os.sched_getscheduler(threading.get_native_id()) == before and gc.get_freeze_count() == 0


@pytest.mark.unit
def test_agent_lines_are_json_dumps_text() -> None:
    """The agent's C-encoder path writes what json.dumps(separators, allow_nan=False) writes, and
    refuses what it refuses."""
    import math

    from backend.agent.server import _dumps
    rng = random.Random(7)
    for _ in range(200):
        vals = [rng.randint(-2**63, 2**64), rng.random() * 10 ** rng.randint(-300, 300), "é\n\"\u2028\\",
                None, True, False, -0.0, [], {}]
        msg = {"event": "sample", "sample": {str(i): rng.choice(vals) for i in range(8)}, "x": [rng.choice(vals)] * 3}
        assert _dumps(msg) == json.dumps(msg, separators=(",", ":"), allow_nan=False)
    for bad in ({"x": math.nan}, {"x": object()}, {"x": math.inf}):
        with pytest.raises((ValueError, TypeError)):
            _dumps(bad)
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        _dumps({"a": loop})
