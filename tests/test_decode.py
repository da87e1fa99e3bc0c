"""decode (backend/data/decode.py): raw kernel counter deltas -> Sample, without root or bcc."""
from __future__ import annotations

import pytest

from backend.data.decode import decode
from backend.data.sample import Sample

pytestmark = pytest.mark.unit

T0, T1, NX = (0, 11), (0, 12), (4026532000, 3)   # DevIds: two of our namespace, one of another
NAMES = {T0: "xs-t0", T1: "xs-t1", NX: "veth0@blue", 0: "xs-t0", 1: "xs-t1"}


def test_every_family_decodes_to_its_field() -> None:
    raw = {
        ("verdicts", 0, 0): 1, ("verdicts", 0, 1): 0, ("verdicts", 0, 2): 3, ("verdicts", 0, 3): 0, ("verdicts", 0, 4): 8,
        ("verdicts", 1, 0): 0, ("verdicts", 1, 1): 0, ("verdicts", 1, 2): 0, ("verdicts", 1, 3): 0, ("verdicts", 1, 4): 2,
        ("targets", 0, 0): 6, ("targets", 0, 1): 2, ("targets", 1, 0): 0, ("targets", 1, 1): 0,
        **{("flush", T0, size): (1 if size == 8 else 0) for size in range(17)},
        **{("flush", T1, size): 0 for size in range(17)},                 # a target with no flush
        ("devmap", T0, "sent"): 8, ("devmap", T0, "drops"): 0,
        ("devmap", T1, "sent"): 0, ("devmap", T1, "drops"): 0,
        ("oversize_flushes", T0): 0, ("oversize_flushes", T1): 1,
        ("redirect_errors", T1, -6): 2, ("redirect_errors", (0, 0), -22): 1, ("redirect_errors", T0, -100): 0,
        ("exceptions", 0): 1, ("exceptions", 2): 0, ("exceptions", 5): 4,
        **{("cpumap_bulk", size): (2 if size == 8 else 0) for size in range(9)},
        ("cpumap_drops",): 0,
        ("napi", NX, "polls"): 3, ("napi", NX, "work"): 30, ("napi", NX, "full"): 0, ("napi", (0, 0), "polls"): 5,
        **{("napi_hist", NX, b): (3 if b == 4 else 0) for b in range(9)},
        ("driver", "rx_xdp_packets"): 27, ("driver", "rx_xdp_drops"): 0,
        ("run", "cnt"): 27, ("run", "ns"): 2700,
        ("user_maps", "pkts", "7"): 5, ("user_maps", "pkts", "8"): 0,
        ("cpumap_enqueue", 1, "processed"): 16, ("cpumap_enqueue", 1, "drops"): 0, ("cpumap_enqueue", 1, "bulks"): 2,
        ("cpumap_enqueue", 0, "processed"): 0, ("cpumap_enqueue", 0, "drops"): 0, ("cpumap_enqueue", 0, "bulks"): 0,
    }
    s = decode(raw, NAMES, t=1.23456789, dt=0.1000004)
    assert (s.t, s.dt) == (1.234568, 0.1)                           # microseconds, as traces keep them
    assert s.verdicts == [[1, 0, 3, 0, 8], [0, 0, 0, 0, 2]]          # every CPU, zeros kept
    assert s.targets == {"xs-t0": [6, 2], "xs-t1": [0, 0]}          # every target, zeros kept
    assert s.flush == {"xs-t0": [0] * 8 + [1] + [0] * 8}            # entries with a flush only, all bins
    assert s.devmap == {"xs-t0": {"sent": 8, "drops": 0}}
    assert s.oversize_flushes == {"xs-t1": 1}                       # its own field, not inside devmap
    assert s.redirect_errors == {"xs-t1": {"ENXIO": 2}, "?": {"EINVAL": 1}}  # no device: "?"
    assert s.exceptions == {"ABORTED": 1, "INVALID": 4}
    assert s.cpumap_bulk == [0] * 8 + [2] and s.cpumap_drops is None   # a zero drop count: left out
    assert s.napi == {"veth0@blue": {"polls": 3, "work": 30}, "(no device)": {"polls": 5}}
    assert s.napi_hist == {"veth0@blue": [0, 0, 0, 0, 3, 0, 0, 0, 0]}
    assert s.driver == {"rx_xdp_packets": 27}
    assert s.run == {"cnt": 27, "ns": 2700}
    assert s.user_maps == {"pkts": {"7": 5}}
    assert s.cpumap_enqueue == [{}, {"processed": 16, "drops": 0, "bulks": 2}]   # CPU 0 enqueued nothing


def test_an_entry_is_whole_when_the_read_left_out_zeros() -> None:
    """The probes leave out counters still at 0; an entry that counted anything is still whole."""
    raw = {("devmap", T0, "sent"): 8, ("flush", T0, 8): 1, ("cpumap_enqueue", 1, "bulks"): 2,
           ("napi", NX, "polls"): 3}
    s = decode(raw, NAMES, 0, 0)
    assert s.devmap == {"xs-t0": {"sent": 8, "drops": 0}} and s.flush == {"xs-t0": [0] * 8 + [1] + [0] * 8}
    assert s.cpumap_enqueue == [{}, {"processed": 0, "drops": 0, "bulks": 2}]
    assert s.napi == {"veth0@blue": {"polls": 3}}   # LEAF: only what counted


def test_unnamed_devices_and_slots_keep_their_numbers() -> None:
    s = decode({("flush", (0, 9), 1): 1, ("devmap", (77, 9), "sent"): 1, ("targets", 5, 0): 3}, {}, 0, 0)
    assert list(s.flush) == ["if9"] and list(s.devmap) == ["if9@77"] and s.targets == {"5": [3]}


def test_per_packet_tracepoint_counts_only_targets_the_program_does_not() -> None:
    raw = {("targets", 0, 0): 4, ("redirect_tp", T0): 9, ("redirect_tp", T1): 5, ("redirect_tp", NX): 0}
    s = decode(raw, NAMES, 0, 0)
    assert s.targets == {"xs-t0": [4], "xs-t1": [5]}   # the program's own count of xs-t0 wins; a zero is left out


def test_nothing_happened_is_an_empty_sample() -> None:
    assert decode({}, {}, 2.0, 0.5) == Sample(t=2.0, dt=0.5)
    zeros = {("flush", T0, 3): 0, ("exceptions", 1): 0, ("cpumap_bulk", 2): 0, ("driver", "x"): 0}
    assert decode(zeros, NAMES, 2.0, 0.5) == Sample(t=2.0, dt=0.5)


@pytest.mark.parametrize("key, why", [
    (("nonsense", 1), "no family 'nonsense'"),
    (("flush", T0), "2 parts expected"),
    (("flush", T0, 17), "17 does not fit"),
    (("napi", NX, "repoll"), "'repoll' does not fit"),
    (("verdicts", -1, 0), "-1 does not fit"),
    ((), "not (family, *parts)"),
])
def test_bad_raw_keys_say_what_is_wrong(key: tuple, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        decode({key: 1}, NAMES, 0, 0)
