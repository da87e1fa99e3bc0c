"""Samples as columns (backend/data/block.py): exact round trips, merged groups and totals."""
from __future__ import annotations

import numpy as np
import pytest

from backend.data.block import Block, leaves, nest
from backend.data.sample import Sample
from gui.testing import synthetic

pytestmark = pytest.mark.unit


def test_leaves_and_nest_are_inverse():
    s = synthetic(50, targets=3)
    s.cpumap_bulk, s.cpumap_drops = [0, 1, 0, 0, 0, 0, 0, 0, 2], 0
    s.napi_hist["eth0"] = [0, 2, 0, 0, 0, 0, 0, 0, 0]
    s.oversize_flushes["xs-t2"] = 1
    pairs = leaves(s)
    assert (("actions", 1, 0), 1) in pairs and (("cpumap", "drops"), 0) in pairs  # zeros are kept
    assert (("napi", "eth0", "hist", 1), 2) in pairs and (("redirect_errors", "xs-nx", "ENXIO"), 0) in pairs
    assert (("devmap", "xs-t2", "oversize_flushes"), 1) in pairs   # the trace key of its own family
    assert Sample.from_leaves(s.t, s.dt, pairs) == s
    # the JSON form nests by trace key, as every earlier xdpscope wrote samples
    d = s.to_dict()
    assert d["cpumap"] == {"bulk": [0, 1, 0, 0, 0, 0, 0, 0, 2], "drops": 0} and d["napi"]["eth0"]["hist"][1] == 2
    assert d == {"t": s.t, "dt": s.dt, **nest(pairs)} and Sample.from_dict(d) == s
    assert Sample(0, 0).cpumap_drops is None and ("cpumap", "drops") not in dict(leaves(Sample(0, 0)))  # unmeasured
    # a sample event as agents have always sent it: the verdicts family's JSON name is "actions"
    old = {"t": 1.2, "dt": 0.1, "actions": [[0, 0, 0, 0, 64], [1, 0, 2, 0, 0]], "targets": {"xs-t0": [64, 0]}}
    s = Sample.from_dict(old)
    assert s.verdicts == old["actions"] and s.verdict_totals() == [1, 0, 2, 0, 64] and s.to_dict() == old


def test_block_round_trip_with_members_that_come_and_go():
    samples = [synthetic(i, targets=1 + i % 3) for i in range(1, 120)]
    samples[5].exceptions = {}
    samples[6].run = {}
    b = Block.from_samples(samples)
    assert list(b.samples()) == samples
    assert b.values.shape == (119, len(b.keys)) and b.values.dtype == np.int64
    j = b.keys.index(("targets", "xs-t2", 0))  # only every third sample has the third target
    assert b.present[:, j].tolist() == [i % 3 == 2 for i in range(1, 120)]
    assert len(Block.from_samples([])) == 0 and list(Block.from_samples([]).samples()) == []


def test_merged_and_totals():
    samples = [synthetic(i) for i in range(1, 11)]
    b = Block.from_samples(samples)
    m = b.merged(4)  # groups 1-4, 5-8, 9-10
    assert m.t.tolist() == [samples[3].t, samples[7].t, samples[9].t]
    np.testing.assert_allclose(m.dt, [0.4, 0.4, 0.2])
    j = b.keys.index(("actions", 0, 2))  # PASS on cpu0: 10 + i
    assert m.values[:, j].tolist() == [sum(10 + i for i in g) for g in ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10))]
    assert ("exceptions", "ABORTED") not in b.keys  # only samples 50, 100, ... have it
    totals = b.totals()
    assert totals[("targets", "xs-t1", 0)] == sum(2 * i for i in range(1, 11))
    assert totals == m.totals() == Block.from_samples([m.sample(i) for i in range(len(m))]).totals()
    assert b.merged(1) is b
