"""BPF vs driver counters: the report's "BPF vs driver" table and the GUI's Driver dock show the
program's verdicts beside those the driver's counters tell (virtio_net here), with known numbers."""
import dataclasses
import html
import json
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import QSettings

from backend.data.driver import EXPLAIN
from backend.data.sample import VERDICTS
from backend.data.summary import summarize
from backend.data.trace import TraceWriter
from gui.testing import synthetic
from tests.test_report import check_tables, parse

DT = 0.01
N = 3000  # 30 s at 100 Hz: a 25 s window has more rows than the plots draw, totals come from sum bins
META = {"program": "redirect", "iface": "eth0", "driver": "virtio_net", "targets": ["xs-t0", "xs-t1"],
        "hz": 100, "host": "test", "verdicts_from": "program counters"}


def with_driver(i: int):
    """synthetic(i) plus virtio_net queue counters: drops count ABORTED too, one frame in 3 samples
    is a redirect the program did not return (counted by the driver), PASS follows."""
    s = synthetic(i, DT)
    ab, drop, pas, tx, red = s.verdict_totals()
    extra = 1 if i % 3 == 0 else 0
    q = i % 2  # alternate queues
    return dataclasses.replace(s, driver={
        f"rx_queue_{q}_xdp_packets": ab + drop + pas + tx + red + extra,
        f"rx_queue_{q}_xdp_drops": ab + drop, f"rx_queue_{q}_xdp_tx": tx,
        f"rx_queue_{q}_xdp_redirects": red + extra, f"rx_queue_{q}_xdp_tx_drops": 0})


def expected(samples):
    bpf = [sum(s.verdict_totals()[a] for s in samples) for a in range(len(VERDICTS))]
    extra = sum(1 for s in samples if round(s.t / DT) % 3 == 0)
    drv = [0, bpf[0] + bpf[1], bpf[2], bpf[3], bpf[4] + extra]
    return {a: (b, d, d - b) for a, b, d in zip(VERDICTS, bpf, drv)}


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "virtio.xst"
    samples = [with_driver(i) for i in range(1, N + 1)]
    with TraceWriter(path, META) as w:
        for s in samples:
            w.write(s)
    return path, samples


def test_summary_and_report_table(trace, tmp_path):
    from gui.report import build, render_html
    path, samples = trace
    s = summarize(path, 5.0, 20.0)
    exp = expected([x for x in samples if 5.0 <= x.t <= 20.0])
    assert {a: (s["actions"][a], s["driver_verdicts"][a], s["driver_difference"][a]) for a in VERDICTS} == exp
    out = tmp_path / "r.html"
    out.write_text(render_html(build(path, 5.0, 20.0, with_plots=False), lambda i: ""), encoding="utf-8")
    check_tables(out, json.loads(json.dumps(s)))  # every cell, the new table's included
    cells = {json.dumps(k): text for k, _, text in parse(out).cells}
    for a, (b, d, diff) in exp.items():
        assert cells[json.dumps(["driver_verdicts", a])] == f"{d:,}"
        assert cells[json.dumps(["driver_difference", a])] == f"{diff:,}"
    assert "BPF vs driver (frames)" in parse(out).headings
    assert html.escape(EXPLAIN) in out.read_text()


def test_no_driver_table_without_verdict_counters(tmp_path):
    from gui.report import build, render_html
    path = tmp_path / "veth.xst"
    with TraceWriter(path, {**META, "driver": "veth"}) as w:
        for i in range(1, 20):
            w.write(dataclasses.replace(synthetic(i, DT), driver={"tx_queue_0_xdp_xmit": i}))
    assert summarize(path)["driver_verdicts"] is None
    assert "BPF vs driver" not in render_html(build(path, with_plots=False), lambda i: "")


@pytest.mark.parametrize("window", [10, 25])
def test_gui_driver_dock_shows_the_window(qtbot, tmp_path, trace, window):
    from gui.main_window import MainWindow
    path, samples = trace
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.timer.stop()
    w.window_box.setValue(window)
    w.show()
    assert w.open_trace(path)
    w.docks["Driver"].raise_()
    for end in (samples[-1].t, 12.345, samples[2600].t):
        w.replay.seek(end)
        w.frame(force=True)
        end = w.replay.position
        sel = [s for s in samples if end - window < s.t <= end]
        assert sel
        got = w.driver_panel.values
        assert got == expected(sel), end
        table = w.driver_panel.table
        for r, a in enumerate(VERDICTS):
            assert [table.item(r, c).text() for c in range(3)] == [f"{v:,}" for v in expected(sel)[a]]
    assert "PASS" in w.driver_panel.note.toolTip() and "virtio_net" in w.driver_panel.note.text()
