"""The kernel path diagram (backend/data/pathmodel.py), without root: every number on it is the value of
summarize() for the same window, on the bundled real traces (a virtio_net session recorded in the
vlab guest, a veth lab session), in the report and in the GUI's replayed windows alike."""
from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

from backend.data import pathmodel as pm
from backend.data.summary import summarize

ROOT = Path(__file__).resolve().parent.parent
VIRTIO = ROOT / "resources" / "virtio-sample.xst"
VETH = ROOT / "resources" / "sample.xst"
WINDOWS = [(None, None), (5.0, 20.0), (9.0, 12.5), (25.0, 26.0)]
SVG = "{http://www.w3.org/2000/svg}"


def at(s, path):
    """The summary value at a JSON path (the test's own walk, absent = 0 as the diagram counts it)."""
    for k in path:
        if isinstance(s, dict):
            s = s.get(k, 0)
        elif isinstance(s, list) and isinstance(k, int) and k < len(s):
            s = s[k]
        else:
            return 0
    return s


def value(expr, s):
    """An independent evaluation of a data-expr."""
    op, *args = expr
    if op == "key":
        return at(s, args[0])
    vals = [value(a, s) for a in args]
    if None in vals:
        return None
    if op == "add":
        return sum(vals)
    if op == "sub":
        return vals[0] - vals[1]
    if op == "div":
        return vals[0] / vals[1] if vals[1] else None
    raise AssertionError(op)


def shown(v, kind: str) -> str:
    from gui.report import fmt_value
    return fmt_value(v, {"int": "int", "rate": "rate", "mean": "mean", "pct": "pct"}[kind])


@pytest.mark.parametrize("trace", [VIRTIO, VETH], ids=["virtio", "veth"])
@pytest.mark.parametrize("window", WINDOWS)
def test_every_number_is_the_summary_of_its_window(trace, window):
    s = summarize(trace, *window)
    p = pm.build(s)
    assert p.nums()
    for n in p.nums():
        want = value(n.expr, s)
        if n.measured:
            assert n.value == at(s, n.expr[1]), n.expr
        assert (n.value is None) == (want is None) and (want is None or n.value == pytest.approx(want)), n.expr
        assert n.text == shown(want, n.kind), n.expr


@pytest.mark.parametrize("window", WINDOWS)
def test_virtio_edges_carry_the_summary_totals(window):
    s = summarize(VIRTIO, *window)
    p = pm.build(s)
    assert s["driver"] == "virtio_net"
    for v, dst in (("PASS", "pass"), ("TX", "tx"), ("REDIRECT", "redir"), ("DROP", "drop"), ("ABORTED", "aborted")):
        assert p.edge("prog", dst).frames.value == s["actions"][v]
        assert p.edge("prog", dst).rate.value == pytest.approx(s["actions"][v] / s["duration_s"])
    for t in ("vnic2", "vnic3"):
        d = s["devmap"].get(t, {"sent": 0, "drops": 0})
        assert p.edge("redir", f"bq:{t}").frames.value == d["sent"] + d["drops"]
        assert p.edge("flush", f"xmit:{t}").frames.value == d["sent"]
    napi = s["napi"]["vnic1"]
    assert p.edge("poll", "recv").frames.value == napi["work"]
    poll = p.node("poll").nums()
    assert poll[0].value == napi["polls"]
    assert poll[1].value == pytest.approx(napi["polls"] / s["duration_s"])
    assert p.node("flush").hist is not None
    assert [n.value for _, n in p.node("flush").hist] == [s["flush_batches"].get(str(i), 0) for i in range(17)]
    # the driver's count beside the program's where they differ (virtio counts ABORTED among drops)
    if s["actions"]["ABORTED"]:
        also = dict((k, n.value) for k, n in p.edge("prog", "aborted").also)
        assert also["driver counters"] == s["driver_verdicts"]["ABORTED"] != s["actions"]["ABORTED"]


def test_virtio_path_is_virtio_nets_functions_with_kernel_links():
    p = pm.build(summarize(VIRTIO))
    assert p.version == "v6.1"  # the session's kernel: 6.1.0-56-amd64
    titles = " ".join(n.title for n in p.nodes)
    for f in ("virtnet_poll", "virtnet_receive", "receive_buf", "bpf_prog_run_xdp", "page_to_skb",
              "virtnet_xdp_xmit", "xdp_do_redirect", "dev_map_enqueue", "bq_enqueue", "xdp_do_flush",
              "__dev_flush", "bq_xmit_all"):
        assert f in titles, f
    poll = p.node("poll")
    assert ("virtnet_poll", "https://elixir.bootlin.com/linux/v6.1/A/ident/virtnet_poll") in poll.links
    assert "napi:napi_poll" in poll.measured_by
    # the trace does not record the virtio features: both receive functions, said so
    assert "receive_mergeable / receive_small" in p.node("recv").title
    assert "does not record" in p.node("recv").sub
    # 6.1 runs the program inline: no virtnet_xdp_handler (6.3+)
    assert "virtnet_xdp_handler" not in titles


def test_mergeable_buffers_and_newer_kernels_pick_their_functions():
    s = summarize(VIRTIO)
    s["meta"] = {**s["meta"], "native": {"features": ["MRG_RXBUF", "VERSION_1"]}, "kernel": "6.18.44-fc"}
    p = pm.build(s)
    assert p.node("recv").title.endswith("receive_mergeable → virtnet_xdp_handler")
    assert p.version == "v6.18"
    s["meta"]["native"] = {"features": ["VERSION_1"]}
    assert "receive_small" in pm.build(s).node("recv").title
    assert pm.build(s).node("pass").title == "build_skb"


def test_rx_queues_one_row_each_when_they_differ():
    s = summarize(VIRTIO)
    auto, together = pm.build(s), pm.build(s, expand=False)
    assert auto.expanded and auto.queues == [1, 2, 3]
    rows = {e.src: e.frames.value for e in auto.edges if e.dst == "poll"}
    assert rows == {f"rxq{q}": s["driver_counters"][f"rx_queue_{q}_xdp_packets"] for q in (1, 2, 3)}
    assert not together.expanded and [e.src for e in together.edges if e.dst == "poll"] == ["rxq"]
    # alike queues: one row by default
    alike = json.loads(json.dumps(s))
    for q in (1, 3):
        for k in ("packets", "drops", "tx", "redirects"):
            alike["driver_counters"][f"rx_queue_{q}_xdp_{k}"] = alike["driver_counters"].get(f"rx_queue_2_xdp_{k}", 0)
    assert not pm.build(alike).expanded


def test_veth_test_run_trace_losses_and_the_tx_redirect():
    """The lab trace came from BPF_PROG_TEST_RUN: no NAPI poll of the ingress (said), XDP_TX went
    through the devmap back to the ingress, and xs-nx lost every frame at the flush with ENXIO."""
    s = summarize(VETH)
    p = pm.build(s)
    assert p.node("poll").title == "veth_poll" and p.node("poll").kind == "idle"
    assert any("BPF_PROG_TEST_RUN" in n for n in p.notes)
    assert p.edge("tx", "bq:xs-in").frames.value == s["devmap"]["xs-in"]["sent"] == s["actions"]["TX"]
    loss = p.edge("flush", "drop:xs-nx")
    assert loss.loss and loss.frames.value == s["devmap"]["xs-nx"]["drops"] == s["redirect_errors"]["xs-nx"]["ENXIO"]
    assert "ENXIO" in loss.label
    assert p.edge("flush", "xmit:xs-nx").frames.value == 0
    assert not any(e.loss for e in p.edges if e.dst.startswith(("drop:xs-t", "rerr:")))


def test_generic_and_other_drivers_have_their_own_paths():
    s = summarize(VETH)
    g = json.loads(json.dumps(s))
    g["mode"] = "generic"
    p = pm.build(g)
    titles = " ".join(n.title for n in p.nodes)
    assert "do_xdp_generic → netif_receive_generic_xdp" in titles and "bq_enqueue" not in titles
    assert not any(n.id == "flush" for n in p.nodes)
    o = json.loads(json.dumps(s))
    o["driver"] = o["meta"]["driver"] = "mlx5_core"
    p = pm.build(o)
    assert p.node("poll").title == "mlx5_core NAPI poll" and p.node("recv").title == "mlx5_core receive (driver code)"
    assert p.node("recv").links == []  # no function of that driver is named, so none is linked


@pytest.mark.parametrize("frames,polls,want", [
    (100, 100, {1: 100}),          # one frame per poll
    (50, 100, {1: 50}),            # half the polls send none to this target
    (2400, 100, {16: 100, 8: 100}),  # 24 per poll: 16 while filling, 8 at the end
    (3200, 100, {16: 200}),        # 32 per poll: two full queues
    (850, 100, {9: 50, 8: 50}),    # 8.5 per poll: round-robin spreads 8 and 9
    (0, 10, {}), (10, 0, {}),
])
def test_predicted_flushes(frames, polls, want):
    assert pm.predicted_flushes(frames, polls) == want
    if want:
        assert sum(k * n for k, n in want.items()) == frames


def test_layout_places_every_node_apart_inside_the_picture():
    for trace in (VIRTIO, VETH):
        for brief in (False, True):
            p = pm.build(summarize(trace), brief=brief)
            for n in p.nodes:
                assert 0 <= n.x and n.x + n.w <= p.width and 0 <= n.y and n.y + n.h <= p.height, n.id
            for i, a in enumerate(p.nodes):
                for b in p.nodes[i + 1:]:
                    apart = a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y
                    assert apart, (a.id, b.id)
            assert all(len(e.points) == 4 for e in p.edges)


def svg_numbers(svg_root: ET.Element) -> list[ET.Element]:
    return [t for t in svg_root.iter(f"{SVG}tspan") if "data-key" in t.attrib or "data-expr" in t.attrib]


def test_svg_numbers_name_their_summary_values():
    s = summarize(VIRTIO, 5.0, 20.0)
    root = ET.fromstring(pm.to_svg(pm.build(s)))
    nums = svg_numbers(root)
    assert len(nums) > 40
    for t in nums:
        v = at(s, json.loads(t.attrib["data-key"])) if "data-key" in t.attrib else value(json.loads(t.attrib["data-expr"]), s)
        assert t.text == shown(v, t.attrib["data-kind"])


def test_report_of_the_virtio_sample_has_the_path(tmp_path):
    """The HTML report's id="path" section: the functions named, REDIRECT's total on it, every
    number equal to `summary` for the same window."""
    from tests.conftest import run_cli
    out = tmp_path / "r.html"
    run_cli("report", str(VIRTIO), "-o", str(out), "--from", "2", "--to", "29")
    text = out.read_text()
    m = re.search(r'<div id="path"[^>]*>(.*?)</div>', text, re.S)
    assert m, "no path section"
    root = ET.fromstring(m.group(1))
    words = " ".join("".join(e.itertext()) for e in root.iter(f"{SVG}text"))
    for f in ("virtnet_poll", "bpf_prog_run_xdp", "xdp_do_redirect", "bq_enqueue", "xdp_do_flush", "bq_xmit_all"):
        assert f in words, f
    s = json.loads(run_cli("summary", str(VIRTIO), "--json", "--from", "2", "--to", "29").stdout)
    redirect = [t for t in svg_numbers(root) if t.attrib.get("data-key") == '["actions", "REDIRECT"]']
    assert redirect and all(t.text == f"{s['actions']['REDIRECT']:,}" for t in redirect)
    for t in svg_numbers(root):
        v = at(s, json.loads(t.attrib["data-key"])) if "data-key" in t.attrib else value(json.loads(t.attrib["data-expr"]), s)
        assert t.text == shown(v, t.attrib["data-kind"]), t.attrib


# -- the GUI's windows: the same numbers from the app's history -----------------------------------

@pytest.fixture(scope="module")
def qapp_module():
    from PySide6.QtWidgets import QApplication
    return QApplication.instance() or QApplication([])


@pytest.mark.parametrize("trace", [VIRTIO, VETH], ids=["virtio", "veth"])
def test_replayed_windows_equal_summarize(qapp_module, trace):
    """A replay seeks and plays: at each playhead the path built from the history's window equals
    the path of summarize() over exactly the samples of that window."""
    from gui.path_view import window_summary
    from gui.plots import make_view
    from gui.sources.replay import ReplaySource
    src = ReplaySource(trace, window=10.0)
    try:
        for t in (3.0, 10.0, 17.5, 29.0, src.t_last):
            src.seek(t)
            src.advance(min(t + 1.3, src.t_last))  # part of the window appended by playing
            v = make_view(src.model, 10.0)
            assert v.n
            times = v.t
            want = pm.build(summarize(trace, float(times[0]), float(times[-1])))
            got = pm.build(window_summary(v))
            assert [n.id for n in got.nodes] == [n.id for n in want.nodes]
            assert [(e.src, e.dst) for e in got.edges] == [(e.src, e.dst) for e in want.edges]
            for a, b in zip(got.nums(), want.nums()):
                assert a.text == b.text, (t, b.expr)
                assert a.value == pytest.approx(b.value) if b.value is not None else a.value is None
    finally:
        src.close()


def test_ab_range_of_a_replay_is_summarized_from_the_trace(qapp_module):
    """With an A-B range the path shows the range, also the part outside the loaded window."""
    from gui.path_view import summary_for
    from gui.plots import make_view
    from gui.sources.replay import ReplaySource
    src = ReplaySource(VIRTIO, window=5.0)
    try:
        src.seek(30.0)
        v = make_view(src.model, 5.0, region=(2.0, 29.0))
        s, what = summary_for(v)
        assert "A–B" in what
        want = summarize(VIRTIO, 2.0, 29.0)
        assert s["actions"] == want["actions"] and s["devmap"] == want["devmap"]
        assert np.isclose(s["duration_s"], want["duration_s"])
    finally:
        src.close()
