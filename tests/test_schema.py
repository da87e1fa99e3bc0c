"""The counter schema (backend/data/schema.py) drives every layer: for each family, a kernel-raw
counter goes through decode -> Sample -> trace (a real SQLite file, written and read) -> Block ->
History and summarize(), and comes out exact; a family appended at run time does too."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from backend.data import schema
from backend.data.decode import decode
from backend.data.history import History
from backend.data.sample import Sample
from backend.data.schema import Family, Index, Members, Name
from backend.data.summary import summarize
from backend.data.trace import TraceReader, TraceWriter

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
DEV = (0, 7)                                   # a DevId the names map gives a name
RAW = {"device": (DEV, "xs-t7"), "target": (1, "xs-t1"), "errno": (-6, "ENXIO"), "verdict": (2, "PASS"),
       "name": ("n1", "n1")}                   # raw part -> the name the Sample holds
NAMES = {DEV: "xs-t7", 1: "xs-t1"}
DELTAS = (5, 0, 7)                             # one counter's delta in three samples


def raw_key(fam: Family) -> tuple[tuple, tuple]:
    """A raw key of the family (every position filled) and its parts as the Sample holds them."""
    raw, parts = [], []
    for pos in fam.positions:
        if isinstance(pos, Name):
            r, p = RAW[pos.raw]
        elif isinstance(pos, Index):
            r = p = pos.n - 1 if pos.dense else 1        # the last bin; CPU 1
        else:
            r = p = pos.names[-1]
        raw.append(r)
        parts.append(p)
    return (fam.name, *raw), tuple(parts)


def cumulative(key: tuple) -> list[dict]:
    """Four kernel reads of one cumulative counter (the first is the baseline)."""
    total, reads = 1000, [{key: 1000}]
    for d in DELTAS:
        total += d
        reads.append({key: total})
    return reads


def nested(value, path: tuple):
    for p in path:
        value = value[p]
    return value


def round_trip(fam: Family, tmp_path: Path) -> None:
    key, parts = raw_key(fam)
    reads = cumulative(key)
    samples = []
    for i in range(1, len(reads)):
        delta = {k: v - reads[i - 1].get(k, 0) for k, v in reads[i].items()}
        samples.append(decode(delta, NAMES, t=0.25 * i, dt=0.25))
    for s, d in zip(samples, DELTAS):   # the Sample's field holds the delta where the key says
        leaves = {k: v for k, v in schema.walk(fam, s.get(fam.name)) if v or k == parts}  # bins fill with 0
        kept = d or fam.sparse is None   # sparse families leave a zero out
        assert leaves == ({parts: d} if kept else {}), (fam.name, s)
    path = tmp_path / f"{fam.name}.xst"
    with TraceWriter(path, {"iface": "xs-in", "program": "redirect"}) as w:
        for s in samples:
            w.write(s)
    trace_key = fam.fill(parts)
    with TraceReader(path) as r:
        assert list(r.samples()) == samples                      # lossless
        b = r.block(0, len(r))
        assert {k: v for k, v in b.totals().items() if v} == {trace_key: sum(DELTAS)}
        h = History(capacity=8)
        h.extend(b)
    # History: the family's groups hold the per-sample counts
    assert fam.name in h.families and history_column(h, fam, parts).tolist() == list(DELTAS), fam.name
    # summarize(): every family's exact total under its trace key
    got = summarize(path)
    assert nested(got["counters"], trace_key) == sum(DELTAS), got["counters"]
    assert got["samples"] == len(DELTAS) and got["duration_s"] == 0.75


def history_column(h: History, fam: Family, parts: tuple) -> np.ndarray:
    """The leaf's per-sample values as the History's groups hold them (a column of them)."""
    from backend.data.history import shape
    sh = shape(fam)
    sl = slice(h.start, h.end)
    if sh.names and sh.sparse:
        table = h.sparse(fam.name).table(h.base + h.start, h.base + h.end, sh.name_of(parts))
        return table[:, sh.fixed_col(parts)]
    if sh.names:
        k = h.keyed(fam.name, parts[-1] if sh.members else None)
        return k.data[sl, k.index[sh.name_of(parts)]]
    total = h.total(fam.name)
    return total[sl] if total.ndim == 1 else total[sl, sh.fixed_col(parts)]


@pytest.mark.parametrize("name", [f.name for f in schema.FAMILIES])
def test_every_family_round_trips(name: str, tmp_path: Path) -> None:
    round_trip(schema.BY_NAME[name], tmp_path)


def test_a_family_added_to_the_schema_round_trips(tmp_path: Path) -> None:
    """One schema entry and nothing else: decode, Sample, trace, Block, History and summary take it."""
    fam = Family("widgets", ("widgets", Name("device", raw="device"), "ring", Members(("filled", "lost"))),
                 "a counter a later xdpscope adds", sparse=schema.ENTRY)
    schema.add(fam)
    try:
        round_trip(fam, tmp_path)
        s = decode({("widgets", DEV, "lost"): 3}, NAMES, 1.0, 1.0)
        assert s.extra == {"widgets": {"xs-t7": {"lost": 3, "filled": 0}}}   # an entry is whole
        assert s.to_dict()["widgets"] == {"xs-t7": {"ring": {"lost": 3, "filled": 0}}}   # nested by trace key
        assert Sample.from_dict(s.to_dict()) == s
    finally:
        schema.remove("widgets")
    assert "widgets" not in schema.BY_NAME and schema.match(("widgets", "x", "ring", "lost")) is None


def test_a_name_every_family_may_hold_is_bounded() -> None:
    for fam in schema.FAMILIES:
        for pos in fam.positions:
            if isinstance(pos, Name):
                assert pos.raw in RAW, (fam.name, pos)   # decode knows every raw kind the schema uses


def test_trace_keys_are_unambiguous() -> None:
    """No leaf key matches two families (a reader could not tell which field it feeds)."""
    for fam in schema.FAMILIES:
        key = fam.fill(raw_key(fam)[1])
        assert schema.match(key)[0] is fam, key


def test_cflags_are_the_constants_the_c_uses() -> None:
    """Every -D constant of the schema is used by the C, and the C sizes nothing with a literal."""
    flags = schema.cflags()
    assert len(flags) == len({f.split("=")[0] for f in flags})
    c = "\n".join(p.read_text() for p in (ROOT / "bpf").glob("*.[ch]"))
    for f in flags:
        name = f[2:].split("=")[0]
        assert re.search(rf"\b{name}\b", c), f"{name} is declared in the schema but the C does not use it"
    # array members and per-CPU arrays are sized by a constant (an array of one entry is a scalar slot)
    assert not re.findall(r"\bu64 \w+\[\d+\]", c)
    assert not [m for m in re.findall(r"BPF_\w+\([^;]*?,\s*(\d+)\);", c) if m != "1"]
    with pytest.raises(ValueError, match="defined twice"):
        schema.add(Family("clash", ("clash",), "x", defines={"XS_VERDICTS": 6}))
        try:
            schema.cflags()
        finally:
            schema.remove("clash")


# -- summarize() without root ------------------------------------------------------------------

def _write(path: Path, samples: list[Sample], **meta) -> Path:
    with TraceWriter(path, {"iface": "xs-in", "program": "redirect", **meta}) as w:
        for s in samples:
            w.write(s)
    return path


def test_summarize_derived_numbers(tmp_path: Path) -> None:
    s1 = Sample(t=0.5, dt=0.5, verdicts=[[0, 0, 0, 0, 24]], targets={"a": [16], "b": [8]},
                flush={"a": [0] * 16 + [1], "b": [0] * 8 + [1] + [0] * 8},
                devmap={"a": {"sent": 16, "drops": 0}, "b": {"sent": 8, "drops": 0}},
                oversize_flushes={"b": 1}, cpumap_bulk=[0, 0, 3, 0, 0, 0, 0, 0, 0], cpumap_drops=2,
                napi={"xs-in": {"polls": 2, "work": 24}}, napi_hist={"xs-in": [0, 0, 0, 0, 0, 2, 0, 0, 0]})
    s2 = Sample(t=1.0, dt=0.5, verdicts=[[1, 0, 0, 0, 8]], targets={"a": [0], "b": [8]},
                flush={"b": [0] * 8 + [1] + [0] * 8}, devmap={"b": {"sent": 7, "drops": 1}},
                redirect_errors={"b": {"ENXIO": 1}}, exceptions={"ABORTED": 1})
    got = summarize(_write(tmp_path / "t.xst", [s1, s2], targets=["a", "b", "c"]))
    assert got["actions"] == {"ABORTED": 1, "DROP": 0, "PASS": 0, "TX": 0, "REDIRECT": 32}
    assert got["redirect_targets"] == {"a": 16, "b": 16, "c": 0}
    assert got["redirect_shares"] == {"a": 50.0, "b": 50.0, "c": 0.0}
    assert got["flush_batches"] == {"8": 2, "16": 1} and got["flush_count"] == 3 and got["flush_frames"] == 32
    assert got["flush_mean_by_target"] == {"a": 16.0, "b": 8.0} and got["flush_median"] == 8.0
    assert got["devmap"] == {"a": {"sent": 16, "drops": 0}, "b": {"sent": 15, "drops": 1, "oversize_flushes": 1}}
    assert got["cpumap"] == {"bulk": {"2": 3}, "drops": 2}
    assert got["napi"] == {"xs-in": {"polls": 2, "work": 24, "hist": [0, 0, 0, 0, 0, 2, 0, 0, 0]}}
    assert got["redirect_errors_by_errno"] == {"ENXIO": 1} and got["exceptions"] == {"ABORTED": 1}
    assert got["rates"]["peak_pps"]["REDIRECT"] == 48.0 and got["rates"]["mean_pps"]["REDIRECT"] == 32.0
    window = summarize(tmp_path / "t.xst", 0.75, 1.0)   # the second sample only
    assert window["samples"] == 1 and window["actions"]["REDIRECT"] == 8 and window["flush_batches"] == {"8": 1}


def test_bundled_traces_summaries_are_stable() -> None:
    """The bundled recordings give the numbers they gave before the schema drove the layers."""
    lab = summarize(ROOT / "resources" / "sample.xst")
    virtio = summarize(ROOT / "resources" / "virtio-sample.xst")
    for s in (lab, virtio):
        c = s["counters"]
        assert s["actions"] == dict(zip(schema.VERDICTS, np.sum(c["actions"], axis=0).tolist()))
        assert s["flush_count"] == sum(sum(h) for h in c.get("flush", {}).values())
        assert s["redirect_targets"] == {**dict.fromkeys(s["meta"].get("targets") or [], 0),
                                         **{t: sum(v) for t, v in c.get("targets", {}).items()}}
    assert lab["samples"] == 801 and virtio["samples"] == 309
