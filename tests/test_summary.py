"""summarize(): every number of a known trace, and the inclusive window on t."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.errors import XdpscopeError
from backend.data.sample import Sample
from backend.data.summary import summarize
from backend.data.trace import TraceWriter

pytestmark = pytest.mark.unit

META = {"iface": "xs-in", "program": "redirect", "mode": "generic", "driver": "veth", "hz": 8,
        "targets": ["xs-t0", "xs-t1", "xs-t2"]}


def hist(n: int, **bins: int) -> list[int]:
    h = [0] * n
    for k, v in bins.items():
        h[int(k[1:])] = v
    return h


# dt values are exact binary fractions so durations and rates compare exactly
S1 = Sample(t=0.125, dt=0.125, verdicts=[[1, 2, 3, 4, 10], [0, 0, 1, 0, 6]],
            targets={"xs-t0": [6, 2], "xs-t1": [4, 4]},
            flush={"xs-t0": hist(17, b8=1), "xs-t1": hist(17, b8=1)},
            devmap={"xs-t0": {"sent": 8, "drops": 0}, "xs-t1": {"sent": 7, "drops": 1}},
            redirect_errors={"xs-t1": {"ENXIO": 2}}, exceptions={"ABORTED": 1},
            cpumap_bulk=hist(9, b8=2), cpumap_drops=1,
            napi={"xs-in": {"polls": 3, "work": 30, "budget": 192, "full": 0}}, napi_hist={"xs-in": hist(9, b4=3)},
            driver={"rx_xdp_packets": 27}, run={"cnt": 27, "ns": 2700})
S2 = Sample(t=0.25, dt=0.125, verdicts=[[0, 0, 0, 0, 16], [0, 0, 0, 0, 16]],
            targets={"xs-t0": [8, 8], "xs-t1": [8, 8]},
            flush={"xs-t0": hist(17, b16=1), "xs-t1": hist(17, b16=1)},
            devmap={"xs-t0": {"sent": 16, "drops": 0}, "xs-t1": {"sent": 16, "drops": 0}})
S3 = Sample(t=0.5, dt=0.25, verdicts=[[0, 5, 0, 0, 0]],  # a sample may carry fewer CPUs
            redirect_errors={"xs-t1": {"ENXIO": 1, "ENETDOWN": 3}}, exceptions={"ABORTED": 2, "TX": 1},
            cpumap_bulk=hist(9, b1=1), cpumap_drops=0,
            napi={"xs-in": {"polls": 1, "work": 5, "budget": 64, "full": 0}}, napi_hist={"xs-in": hist(9, b3=1)},
            driver={"rx_xdp_packets": 5, "rx_xdp_drops": 5}, run={"cnt": 5, "ns": 500})

ZERO = dict.fromkeys(("ABORTED", "DROP", "PASS", "TX", "REDIRECT"), 0)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "known.xst"
    with TraceWriter(path, META) as w:
        for s in (S1, S2, S3):
            w.write(s)
    return path


def per_verdict(aborted: float, drop: float, pass_: float, tx: float, redirect: float) -> dict:
    return {"ABORTED": aborted, "DROP": drop, "PASS": pass_, "TX": tx, "REDIRECT": redirect}


def test_whole_trace_every_number(trace: Path) -> None:
    got = summarize(trace)
    meta = got.pop("meta")  # the trace's meta as recorded (created/ended are wall-clock times)
    assert meta == {**META, "format_version": 3, "samples": 3, "created": meta["created"], "ended": meta["ended"]}
    assert got == {
        "format_version": 3, "iface": "xs-in", "program": "redirect", "mode": "generic", "driver": "veth",
        "hz": 8, "window": [None, None],
        "duration_s": 0.5, "samples": 3,
        "actions": per_verdict(1, 7, 4, 4, 48), "verdict_method": "program counters", "verdict_total": 64, "user_maps": {},
        "per_cpu_actions": [per_verdict(1, 7, 3, 4, 26), per_verdict(0, 0, 1, 0, 22)],
        "redirect_targets": {"xs-t0": 24, "xs-t1": 24, "xs-t2": 0},
        "redirect_errors": {"xs-t1": {"ENETDOWN": 3, "ENXIO": 3}},
        "devmap": {"xs-t0": {"drops": 0, "sent": 24}, "xs-t1": {"drops": 1, "sent": 23}},
        "flush_batches": {"8": 2, "16": 2},
        "flush_batches_by_target": {"xs-t0": {"8": 1, "16": 1}, "xs-t1": {"8": 1, "16": 1}},
        "flush_mean": 12.0,
        "flush_count": 4, "flush_frames": 48, "flush_median": 12.0,  # sizes 8, 8, 16, 16
        "flush_mean_by_target": {"xs-t0": 12.0, "xs-t1": 12.0},
        "redirect_shares": {"xs-t0": 50.0, "xs-t1": 50.0, "xs-t2": 0.0},
        "redirect_errors_by_errno": {"ENETDOWN": 3, "ENXIO": 3},
        "span": [0.0, 0.5],
        "exceptions": {"ABORTED": 3, "TX": 1},
        "cpumap": {"bulk": {"1": 1, "8": 2}, "drops": 1},
        "napi": {"xs-in": {"budget": 256, "full": 0, "hist": hist(9, b3=1, b4=3), "polls": 4, "work": 35}},
        "driver_counters": {"rx_xdp_drops": 5, "rx_xdp_packets": 32},
        # veth counts per queue (rx_queue_N_xdp_*): the virtio_net-style totals here match none of them
        "driver_verdicts": None, "driver_difference": None,
        "run": {"cnt": 32, "ns": 3200, "ns_per_run": 100.0},
        # every schema family's exact totals, nested by trace key
        "counters": {
            "actions": [[1, 7, 3, 4, 26], [0, 0, 1, 0, 22]],
            "targets": {"xs-t0": [14, 10], "xs-t1": [12, 12]},
            "flush": {"xs-t0": hist(17, b8=1, b16=1), "xs-t1": hist(17, b8=1, b16=1)},
            "devmap": {"xs-t0": {"sent": 24, "drops": 0}, "xs-t1": {"sent": 23, "drops": 1}},
            "redirect_errors": {"xs-t1": {"ENETDOWN": 3, "ENXIO": 3}},
            "exceptions": {"ABORTED": 3, "TX": 1},
            "cpumap": {"bulk": hist(9, b1=1, b8=2), "drops": 1},
            "napi": {"xs-in": {"polls": 4, "work": 35, "budget": 256, "full": 0, "hist": hist(9, b3=1, b4=3)}},
            "driver": {"rx_xdp_drops": 5, "rx_xdp_packets": 32},
            "run": {"cnt": 32, "ns": 3200}},
        "rates": {"peak_pps": per_verdict(8.0, 20.0, 32.0, 32.0, 256.0),
                  "mean_pps": per_verdict(2.0, 14.0, 8.0, 8.0, 96.0)},
    }


def test_stable_key_order(trace: Path) -> None:
    got = summarize(trace)
    assert list(got) == sorted(got)
    assert list(got["actions"]) == sorted(got["actions"])
    assert list(got["flush_batches"]) == ["8", "16"]  # sizes in numeric order
    assert list(got["redirect_errors"]["xs-t1"]) == ["ENETDOWN", "ENXIO"]
    json.dumps(got)


def test_window_inclusive(trace: Path) -> None:
    got = summarize(trace, 0.25, 0.5)  # S2 and S3, both bounds hit a sample exactly
    assert got["samples"] == 2 and got["duration_s"] == 0.375 and got["window"] == [0.25, 0.5]
    assert got["actions"] == per_verdict(0, 5, 0, 0, 32)
    assert got["per_cpu_actions"] == [per_verdict(0, 5, 0, 0, 16), per_verdict(0, 0, 0, 0, 16)]
    assert got["redirect_targets"] == {"xs-t0": 16, "xs-t1": 16, "xs-t2": 0}
    assert got["flush_batches"] == {"16": 2} and got["flush_mean"] == 16.0 and got["flush_median"] == 16.0
    assert got["span"] == [0.125, 0.5]
    assert got["redirect_errors"] == {"xs-t1": {"ENETDOWN": 3, "ENXIO": 1}}
    assert got["exceptions"] == {"ABORTED": 2, "TX": 1}
    assert got["run"] == {"cnt": 5, "ns": 500, "ns_per_run": 100.0}
    assert got["rates"]["peak_pps"] == per_verdict(0.0, 20.0, 0.0, 0.0, 256.0)
    assert got["rates"]["mean_pps"] == per_verdict(0.0, 5 / 0.375, 0.0, 0.0, 32 / 0.375)

    first = summarize(trace, t_to=0.25)  # S1 and S2
    assert first["samples"] == 2 and first["duration_s"] == 0.25
    assert first["actions"] == per_verdict(1, 2, 4, 4, 48)
    assert first["devmap"] == {"xs-t0": {"drops": 0, "sent": 24}, "xs-t1": {"drops": 1, "sent": 23}}
    assert first["cpumap"] == {"bulk": {"8": 2}, "drops": 1}

    only = summarize(trace, 0.25, 0.25)
    assert only["samples"] == 1 and only["actions"] == per_verdict(0, 0, 0, 0, 32)
    assert summarize(trace, t_from=0.26)["samples"] == 1
    assert summarize(trace, 0.126, 0.249)["samples"] == 0


def test_empty_window(trace: Path) -> None:
    got = summarize(trace, 10, 20)
    assert got["samples"] == 0 and got["duration_s"] == 0.0
    assert got["actions"] == ZERO and got["per_cpu_actions"] == []
    assert got["redirect_targets"] == {"xs-t0": 0, "xs-t1": 0, "xs-t2": 0}
    assert got["flush_batches"] == {} and got["flush_mean"] is None
    assert got["flush_median"] is None and got["flush_count"] == 0 and got["span"] is None
    assert got["redirect_shares"] == {"xs-t0": None, "xs-t1": None, "xs-t2": None}
    assert got["exceptions"] == {} and got["redirect_errors"] == {}
    assert got["run"] == {"cnt": 0, "ns": 0, "ns_per_run": None}
    assert got["rates"] == {"peak_pps": dict.fromkeys(ZERO, 0.0), "mean_pps": dict.fromkeys(ZERO, 0.0)}


def test_totals_are_sums_of_deltas_not_rates(tmp_path: Path) -> None:
    path = tmp_path / "odd.xst"
    with TraceWriter(path, {"iface": "x"}) as w:  # 1000 intervals of 3 frames over 1/3 ms: pps never integral
        for i in range(1000):
            w.write(Sample(t=(i + 1) / 3000, dt=1 / 3000, verdicts=[[0, 3, 0, 0, 0]]))
    got = summarize(path)
    assert got["actions"]["DROP"] == 3000 and isinstance(got["actions"]["DROP"], int)
    assert got["duration_s"] == pytest.approx(1 / 3, abs=1e-15)


def test_bad_file_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.xst"
    path.write_bytes(b"junk" * 100)
    with pytest.raises(XdpscopeError) as e:
        summarize(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_flush_median_of_histogram() -> None:
    from backend.data.summary import _median
    assert _median([0, 3, 0, 1]) == 1.0          # 1 1 1 3
    assert _median([0, 2, 0, 2]) == 2.0          # 1 1 3 3: mean of the middle two
    assert _median([0, 1, 1, 1]) == 2.0          # 1 2 3
    assert _median([0] * 17) is None


def test_driver_verdicts_beside_the_program_counts(tmp_path: Path) -> None:
    """virtio_net: PASS derived from the driver's counters, compared with the program's verdicts."""
    path = tmp_path / "virtio.xst"
    with TraceWriter(path, {"iface": "eth0", "driver": "virtio_net"}) as w:
        w.write(Sample(t=0.125, dt=0.125, verdicts=[[1, 3, 10, 2, 4]],
                       driver={"rx_queue_0_xdp_packets": 12, "rx_queue_0_xdp_drops": 4,
                               "rx_queue_0_xdp_tx": 2, "rx_queue_0_xdp_redirects": 3}))
        w.write(Sample(t=0.25, dt=0.125, verdicts=[[0, 0, 5, 0, 1]],
                       driver={"rx_queue_1_xdp_packets": 8, "rx_queue_1_xdp_redirects": 1}))
    got = summarize(path)
    assert got["driver_verdicts"] == per_verdict(0, 4, 10, 2, 4)   # PASS = 20 - 4 - 2 - 4
    assert got["driver_difference"] == per_verdict(-1, 1, -5, 0, -1)
    assert summarize(path, 1, 2)["driver_verdicts"] is None  # no driver counters in the window


def test_totals_at_the_edge_of_int64_are_exact(tmp_path: Path) -> None:
    """Totals are exact integers right up to int64's limits (never through a float or a wrap); one
    past them is an error naming the counter."""
    top, bottom = 2**63 - 1, -(2**63)
    path = tmp_path / "edge.xst"
    with TraceWriter(path, {"iface": "x"}) as w:
        w.write(Sample(t=0.125, dt=0.125, verdicts=[[0, 0, 0, 0, 2**62]], run={"cnt": 1, "ns": bottom + 2**62}))
        w.write(Sample(t=0.25, dt=0.125, verdicts=[[0, 0, 0, 0, 2**62 - 1]], run={"cnt": 1, "ns": -(2**62)}))
        w.write(Sample(t=0.375, dt=0.125, verdicts=[[0, 0, 0, 0, 0]], run={"cnt": 1, "ns": 0}))
    got = summarize(path)
    assert got["actions"]["REDIRECT"] == top and got["run"]["ns"] == bottom
    with TraceWriter(path, {"iface": "x"}) as w:  # the same sum over CPUs instead of samples, plus one
        w.write(Sample(t=0.125, dt=0.125, verdicts=[[0, 0, 0, 0, 2**62], [0, 0, 0, 0, 2**62]]))
    with pytest.raises(XdpscopeError, match=r"\['actions'\]\['REDIRECT'\] is 9223372036854775808, beyond int64"):
        summarize(path)


def test_many_samples_of_large_values_sum_exactly(tmp_path: Path) -> None:
    """9000 samples (more than one streamed block) of values near 2**49: the exact sum, as Python
    integers give it, not float rounding."""
    values = [2**49 + 7 * i + 1 for i in range(9000)]  # the first block sums beyond 2**62: the exact path
    path = tmp_path / "big.xst"
    with TraceWriter(path, {"iface": "x"}) as w:
        for i, v in enumerate(values):
            w.write(Sample(t=0.125 * (i + 1), dt=0.125, verdicts=[[0, v, 0, 0, 0]]))
    got = summarize(path)
    assert got["actions"]["DROP"] == sum(values) and got["samples"] == 9000
