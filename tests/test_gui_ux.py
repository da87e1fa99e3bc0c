"""The app as its users expect it (issue 12), offscreen: numbers as people read them, smoothing
that changes only the view, timeline markers, two cursors, a program switched in place on one
timeline, the privilege flow, recordings where the user chose with their real size, the bpftop
table's maths, cpumap targets as CPU ids, speed presets, the A-B range, reports in words and
naming the real cause. Real-window behaviour (mouse, wheel, keys, layout) is in test_gui_x11.py."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from backend.data.findings import rate_text
from backend.data.sample import VERDICTS, Sample
from backend.data.trace import TraceReader
from gui import si
from gui.main_window import MainWindow
from gui.model import AppModel, Marker
from gui.programs_table import ProgramReading, rates
from gui.testing import fake_agent_command, failing_agent_command, write_trace

DT = 0.1


def make_window(qtbot, tmp_path, commands=None):
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), agent_commands=commands)
    qtbot.addWidget(w)
    w.timer.stop()  # frames are drawn explicitly
    w.show()
    return w


def data(curve):
    x, y = curve.getOriginalDataset()
    return np.asarray(x, float), np.asarray(y, float)


# -- numbers ------------------------------------------------------------------------------------

def test_si_numbers_read_alike():
    assert [si.tick(v, 5e5) for v in (0, 5e5, 1e6, 1.5e6, 2e6)] == ["0", "500 k", "1 M", "1.5 M", "2 M"]
    assert [si.tick(v, 2500) for v in (0, 2500, 5000, 7500)] == ["0", "2.5 k", "5 k", "7.5 k"]
    assert si.si(651234, "pps") == "651 kpps" and si.si(999_950, "pps") == "1 Mpps" and si.si(12.5) == "12.5"
    assert si.thousands(651234) == "651,234" and rate_text(71923.3) == "71,923" and rate_text(12.54) == "12.5"
    assert si.byte_size(151_234) == "151.2 kB" and si.byte_size(999) == "999 B"


def test_axes_and_hover_use_si(qtbot, tmp_path):
    path = tmp_path / "t.xst"
    samples = write_trace(path, 300, DT)
    w = make_window(qtbot, tmp_path)
    w.window_box.setValue(10)
    assert w.open_trace(path)
    w.replay.seek(15.0)
    w.frame(force=True)
    axis = w.verdicts.rates.plot.getAxis("left")
    assert axis.tickStrings([0, 2e6, 4e6], 1.0, 2e6) == ["0", "2 M", "4 M"]  # never "2e+06"
    s = next(s for s in samples if s.t == pytest.approx(12.0))
    redirect = s.verdict_totals()[VERDICTS.index("REDIRECT")] / s.dt
    text = w.verdicts.rates.hover.show_at(12.0)
    assert f"REDIRECT: {redirect:,.0f} pps" in text


# -- smoothing: the view only -------------------------------------------------------------------

def test_smoothing_changes_the_view_not_the_data(qtbot, tmp_path):
    path = tmp_path / "t.xst"
    samples = write_trace(path, 300, DT)
    w = make_window(qtbot, tmp_path)
    w.window_box.setValue(30)
    assert w.open_trace(path)
    w.replay.to_end()
    w.frame(force=True)
    h = w.replay.model.history
    before = {k: np.copy(getattr(h, k)[h.start:h.end]) for k in ("t", "dt", "verdicts", "flush", "napi", "run")}
    x, raw = data(w.verdicts.rates.curves["PASS"])
    n = 10
    w.smooth_box.setCurrentIndex(w.smooth_box.findData(n))
    w.frame(force=True)
    x2, smooth = data(w.verdicts.rates.curves["PASS"])
    np.testing.assert_array_equal(x2, x)  # the same samples, only their values are averaged
    pas = np.array([s.verdict_totals()[VERDICTS.index("PASS")] for s in samples], float)
    dts = np.array([s.dt for s in samples])
    want = [pas[max(0, i - n + 1):i + 1].sum() / dts[max(0, i - n + 1):i + 1].sum() for i in range(len(samples))]
    np.testing.assert_allclose(smooth, want)
    assert not np.allclose(smooth, raw)
    for k, v in before.items():  # the history (what recordings and reports read) is untouched
        np.testing.assert_array_equal(getattr(h, k)[h.start:h.end], v)
    # flush mean over n samples: frames over flushes of the n samples
    _, mean = data(w.flush.mean.curves["mean"])
    fl = np.array([np.sum(list(s.flush.values()), axis=0) for s in samples], float)
    frames, flushes = fl @ np.arange(fl.shape[1]), fl.sum(axis=1)
    want = [frames[max(0, i - n + 1):i + 1].sum() / flushes[max(0, i - n + 1):i + 1].sum() for i in range(len(samples))]
    np.testing.assert_allclose(mean, want)
    w.smooth_box.setCurrentIndex(0)
    w.frame(force=True)
    np.testing.assert_array_equal(data(w.verdicts.rates.curves["PASS"])[1], raw)


# -- overlapping series, legends ------------------------------------------------------------------

def test_equal_series_get_distinct_dashes_and_the_legend_says_so(qtbot, tmp_path):
    m = AppModel()
    for i in range(1, 200):  # REDIRECT only: the total equals it; two targets of a round robin equal
        m.append(Sample(t=i * DT, dt=DT, verdicts=[[0, 0, 0, 0, 2 * (i % 7)]], targets={"a": [i % 7], "b": [i % 7]}))
    w = make_window(qtbot, tmp_path)
    from gui.sources import Source
    src = Source(w)
    src.model = m
    w.set_source(src)
    w.frame(force=True)
    v = w.verdicts.rates
    assert v.ranks.get("REDIRECT", 0) == 0 and v.ranks["total"] == 1  # dashed, drawn above REDIRECT
    assert v.curves["total"].opts["pen"].dashPattern() and v.curves["total"].zValue() > v.curves["REDIRECT"].zValue()
    assert w.fanout.rates.ranks == {"b": 1}
    assert "╍╍" in v.legend.text and "total" in v.legend.text  # the legend draws the line style
    # the legend is under the plot, outside the data area
    assert v.legend.sceneBoundingRect().top() >= v.plot.vb.sceneBoundingRect().bottom()
    # the palette tells ABORTED from DROP (the old red / orange pair did not)
    assert v.curves["ABORTED"].opts["pen"].color().name() != v.curves["DROP"].opts["pen"].color().name()


# -- markers and cursors ----------------------------------------------------------------------------

def test_live_markers_switch_in_place_and_recording_keeps_them(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path, [fake_agent_command(tmp_path, hz=50)])
    w.choose_record_path = lambda default: str(tmp_path / "rec.xst")
    w.start_agent()
    qtbot.waitUntil(lambda: w.session.state == "ready", timeout=15_000)
    sp = w.sources_panel
    qtbot.waitUntil(lambda: sp.iface_tree.topLevelItemCount() == 2, timeout=5_000)
    w.set_source(w.live)
    sp.sig_attach.emit({"iface": "xs-in", "program": "redirect", "targets": ["xs-t0"], "policy": "rr",
                        "mode": "auto", "hz": 50, "run_time": True})
    qtbot.waitUntil(lambda: w.session.attached, timeout=5_000)
    qtbot.waitUntil(lambda: sp.xdp_now().get("xs-in") == "generic #1", timeout=10_000)  # read back
    assert sp.attach_btn.text() == "Switch program" and sp.attach_btn.isEnabled()
    assert sp.run_time.isChecked() and "running: <b>redirect</b>" in sp.session_label.text()
    qtbot.waitUntil(lambda: len(w.live.model.history) >= 20, timeout=10_000)
    w.record_action.setChecked(True)
    assert w.recorder.active and w.recorder.path == tmp_path / "rec.xst"
    w.session.inject({"iface": "xs-in", "count": 1000, "batch": 32}, loop=False)
    qtbot.waitUntil(lambda: len(w.live.model.history) >= 40, timeout=10_000)
    w.record_action.setChecked(False)
    h = w.live.model.history
    t_before = float(h.t[h.end - 1])
    # switch the program in place: detach + attach, the timeline goes on, a marker says where
    sp.program.setCurrentText("redirect")
    sp.sig_attach.emit({"iface": "xs-in", "program": "redirect", "targets": ["xs-t0", "xs-t1"], "policy": "rr",
                        "mode": "auto", "hz": 50})
    qtbot.waitUntil(lambda: any(m.kind == "switch" for m in w.live.model.markers), timeout=10_000)
    qtbot.waitUntil(lambda: len(w.live.model.history) >= 80, timeout=10_000)
    h = w.live.model.history
    t = h.t[h.start:h.end]
    assert np.all(np.diff(t) > 0) and t[0] < t_before < t[-1]  # one timeline, not restarted at 0
    switch = next(m for m in w.live.model.markers if m.kind == "switch")
    assert t_before <= switch.t < t[-1]
    qtbot.waitUntil(lambda: sp.xdp_now().get("xs-in") == "generic #2", timeout=10_000)  # the new program
    # the panel shows the agent's answer for the new session: its targets, run time off
    assert "→ xs-t0, xs-t1" in sp.session_label.text() and not sp.run_time.isChecked()
    kinds = [m.kind for m in w.live.model.markers]
    assert kinds[:4] == ["attach", "record", "inject", "record"] and "switch" in kinds
    w.frame(force=True)
    lines = w.verdicts.rates._markers
    assert len(lines) == len(w.live.model.markers) and lines[-1].value() == pytest.approx(switch.t)
    # the recording holds the markers of its time; its replay shows them
    with TraceReader(tmp_path / "rec.xst") as r:
        stored = r.meta["markers"]
    assert [m["kind"] for m in stored] == ["record", "inject"]
    assert stored[1]["data"] == {"count": 1000, "batch": 32}
    assert w.open_trace(tmp_path / "rec.xst")
    assert [m.kind for m in w.replay.model.markers] == ["record", "inject"]
    # detach: the panel and the status bar say so, read back from the agent
    w.set_source(w.live)
    with qtbot.waitSignal(w.session.sig_detached, timeout=5_000):
        sp.detach_btn.click()
    qtbot.waitUntil(lambda: sp.xdp_now().get("xs-in") == "", timeout=10_000)
    assert "not attached" in w.source_label.text() and sp.session_label.text() == "not attached"
    assert sp.attach_btn.text() == "Attach"
    w.session.stop()
    qtbot.waitUntil(lambda: w.session.state == "stopped", timeout=5_000)


def test_two_cursors_give_time_frames_and_rate(qtbot, tmp_path):
    path = tmp_path / "t.xst"
    samples = write_trace(path, 300, DT)
    w = make_window(qtbot, tmp_path)
    w.window_box.setValue(30)
    assert w.open_trace(path)
    w.replay.to_end()
    w.frame(force=True)
    w.verdicts.set_cursor_times(12.05, 5.05)  # either order
    d = w.verdicts.cursor_deltas()
    sel = [s for s in samples if 5.05 < s.t <= 12.05]
    assert d["a"] == pytest.approx(5.05) and d["dt"] == pytest.approx(7.0) and d["samples"] == len(sel)
    for k, name in enumerate(VERDICTS):
        assert d["frames"][name] == sum(s.verdict_totals()[k] for s in sel)
    assert d["rates"]["REDIRECT"] == pytest.approx(d["frames"]["REDIRECT"] / 7.0)
    assert f"Δt 7.000 s ({len(sel)} samples)" in w.verdicts.cursor_text.text()


# -- privileges ---------------------------------------------------------------------------------------

def test_an_agent_without_root_is_not_ready_and_says_what_was_tried(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path, [failing_agent_command("sudo: a password is required"),
                                       fake_agent_command(tmp_path, root=False)])
    w.start_agent()
    qtbot.waitUntil(lambda: w.session.state == "unprivileged", timeout=15_000)
    sp = w.sources_panel
    msg = sp.agent_msg.text()
    assert "no privileges" in sp.agent_state.text() and "ready" not in sp.agent_state.text()
    assert "Tried:" in msg and "sudo: a password is required" in msg  # what failed, and why
    assert "replay a trace" in msg and "NOPASSWD" in msg  # what the user can do
    assert not sp.attach_btn.isEnabled() and not sp.inject_btn.isEnabled()
    w.session.stop()
    qtbot.waitUntil(lambda: w.session.state == "stopped", timeout=5_000)


def test_no_way_up_is_said_before_attach(qtbot, tmp_path, monkeypatch):
    """Not root, sudo and pkexec both fail before ready: dead, with each attempt and the advice."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    w = make_window(qtbot, tmp_path, [failing_agent_command("sudo: a password is required"),
                                       failing_agent_command("Error executing command as another user: Not authorized", 127)])
    w.start_agent()
    qtbot.waitUntil(lambda: w.session.state == "dead", timeout=15_000)
    msg = w.sources_panel.agent_msg.text()
    assert "could not start the agent as root" in msg
    assert "a password is required" in msg and "Not authorized" in msg and "replay a trace" in msg


# -- recordings -----------------------------------------------------------------------------------------

def test_recording_goes_where_the_user_chose_with_its_real_size(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path, [fake_agent_command(tmp_path, hz=50)])
    w.run_default_live()
    qtbot.waitUntil(lambda: w.session is not None and w.session.attached, timeout=15_000)
    w.choose_record_path = lambda default: None  # the Save dialog cancelled: nothing is recorded
    w.record_action.setChecked(True)
    assert not w.recorder.active and not w.record_action.isChecked()
    offered = []
    w.choose_record_path = lambda default: offered.append(default) or str(tmp_path / "mine.xst")
    w.record_action.setChecked(True)
    assert offered and offered[0].parent != Path.cwd()  # never the working directory by default
    qtbot.waitUntil(lambda: w.recorder.count >= 100, timeout=15_000)
    db = w.recorder.path
    on_disk = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
    live_size = w.recorder.size()
    assert live_size <= on_disk  # the trace's pages, not the file plus its write-ahead log
    w.record_action.setChecked(False)
    final = db.stat().st_size
    assert not Path(f"{db}-wal").exists() and w.recorder.size() == final
    assert abs(live_size - final) <= 64 * 1024  # what was shown is what the file became
    assert f"({si.byte_size(final)}) to {db}" in w.statusBar().currentMessage()
    assert w.recent()[0] == str(db.resolve())
    w.session.stop()


# -- the programs table (bpftop's maths) ----------------------------------------------------------------

def test_programs_table_rates():
    prev = {7: ProgramReading(7, "xdp_a", 1000, 50_000)}
    cur = [ProgramReading(7, "xdp_a", 3000, 250_000, ("xs-in (native)",)), ProgramReading(9, "new", 10, 100)]
    out = {r.id: r for r in rates(prev, 10.0, cur, 12.0, cpus=2)}
    a = out[7]
    assert a.runs_per_s == 1000.0 and a.ns_per_run == 100.0
    assert a.cpu_percent == pytest.approx(200_000 / (2.0 * 1e9 * 2) * 100)  # of the whole machine
    assert out[9].runs_per_s is None  # loaded since the last reading: no rate yet
    back = rates(prev, 10.0, [ProgramReading(7, "reused id", 5, 5)], 12.0, cpus=2)[0]
    assert back.runs_per_s is None  # counters went back: another program, no negative rate


def test_programs_table_from_the_agent(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path, [fake_agent_command(tmp_path, hz=20)])
    w.start_agent()
    qtbot.waitUntil(lambda: w.session.state == "ready", timeout=15_000)
    qtbot.waitUntil(lambda: w.sources_panel.cpus == 2, timeout=5_000)  # learned from the agent (cpumap targets)
    w.session.attach({"iface": "xs-in", "program": "redirect", "targets": ["xs-t0"]})
    qtbot.waitUntil(lambda: w.session.attached, timeout=5_000)
    w.docks["Programs"].raise_()
    w.programs.show()
    for _ in range(2):
        w.programs.poll()
        assert w.programs._pending
        qtbot.waitUntil(lambda: not w.programs._pending, timeout=5_000)
    row = w.programs.rows[0]
    assert row.name == "xs_fake" and row.ifaces == ("xs-in (generic)",)
    assert row.ns_per_run == pytest.approx(50.0) and row.runs_per_s > 0
    assert w.programs.table.item(0, 1).text() == "xs_fake"
    w.session.stop()


def test_cpumap_targets_are_cpu_ids(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path)
    sp = w.sources_panel
    sp.set_interfaces([{"name": "xs-in"}, {"name": "xs-t0"}])
    sp.set_cpus(4)
    sp.program.setCurrentText("cpumap")
    assert [sp.targets.item(i).text() for i in range(sp.targets.count())] == ["CPU 0", "CPU 1", "CPU 2", "CPU 3"]
    sp.targets.item(1).setCheckState(sp.targets.item(1).checkState().Checked)
    sp.iface_tree.setCurrentItem(sp.iface_tree.topLevelItem(0))
    assert sp.attach_args()["targets"] == ["1"]
    sp.program.setCurrentText("redirect")
    assert [sp.targets.item(i).text() for i in range(sp.targets.count())] == ["xs-in", "xs-t0"]


# -- replay controls ----------------------------------------------------------------------------------

def test_speed_presets_and_the_ab_range(qtbot, tmp_path, monkeypatch):
    path = tmp_path / "t.xst"
    write_trace(path, 300, DT)
    w = make_window(qtbot, tmp_path)
    w.window_box.setValue(30)
    assert w.open_trace(path)
    bar = w.replay_bar
    assert [bar.speed.itemData(i) for i in range(bar.speed.count())] == [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0]
    bar.speed.setCurrentIndex(5)
    assert w.replay.speed == 5.0
    w.replay.to_end()
    w.frame(force=True)
    assert w.verdicts.rates.region is None or not w.verdicts.rates.region.isVisible()
    bar.loop_a.setValue(10.0)
    bar.loop_b.setValue(20.0)
    w.frame(force=True)
    assert w.verdicts.rates.region.isVisible() and w.verdicts.rates.region.getRegion() == (10.0, 20.0)
    asked = []
    monkeypatch.setattr("gui.export.open_report_dialog", lambda win, window=None: asked.append(window))
    bar.report_btn.click()
    assert asked == [(10.0, 20.0)]


# -- reports --------------------------------------------------------------------------------------------

def test_report_findings_name_the_injector_batch(tmp_path):
    from backend.data.findings import findings
    from gui.report import fmt_value, words
    assert words({"possible": None, "why": "peer in another namespace", "fix": ""}) == \
        "possible: unknown; why: peer in another namespace"
    assert fmt_value(71923.3, "rate") == "71,923" and fmt_value(12.54, "rate") == "12.5"
    s = {"meta": {"iface": "xs-in", "targets": ["a", "b", "c", "d"],
                  "markers": [Marker(1.0, "inject", "inject", {"count": 64000, "batch": 8}).to_dict()]},
         "actions": {"ABORTED": 0, "DROP": 0, "PASS": 0, "TX": 0, "REDIRECT": 64000},
         "rates": {"mean_pps": {"REDIRECT": 640000.0, "TX": 0.0}}, "flush_mean": 2.0, "flush_median": 2,
         "redirect_targets": {t: 16000 for t in "abcd"}, "redirect_errors": {}, "devmap": {}, "exceptions": {},
         "cpumap": {}, "napi": {}, "mode": "native"}
    text = " ".join(findings(s))
    assert "The injector's batch explains it" in text and "batch of 8 frames" in text and "2.0 frames per target" in text
    assert "640,000" in text and "NAPI is not involved" in text
    s["meta"]["markers"] = []  # no record of the batch: still not NAPI, since no NAPI poll carried them
    text = " ".join(findings(s))
    assert "did not come through NAPI polls of xs-in" in text and "injector's batch size" in text
    s["napi"] = {"xs-in": {"polls": 32000, "work": 64000}}  # the driver's NAPI carried them
    assert "Each NAPI poll of xs-in handled 2.0 packets" in " ".join(findings(s))


def luminance(img) -> np.ndarray:
    from PySide6.QtGui import QImage
    img = img.convertToFormat(QImage.Format.Format_RGB32)
    px = np.frombuffer(img.constBits(), np.uint32).reshape(img.height(), img.bytesPerLine() // 4)[:, :img.width()]
    return 0.3 * ((px >> 16) & 255) + 0.59 * ((px >> 8) & 255) + 0.11 * (px & 255)


def test_pdf_report_plots_are_light_and_printable(qapp, tmp_path):
    from PySide6.QtGui import QImage
    from gui.report import build
    from tests.conftest import run_cli
    sample = Path(__file__).resolve().parents[1] / "resources" / "sample.xst"
    for plot in build(sample, size=(960, 400)).plots:  # each plot as the PDF holds it: white, dark ink
        lum = luminance(plot.image)
        assert (lum > 200).mean() > 0.8 and (lum < 60).mean() < 0.05, f"{plot.title}: not a light plot"
    out = tmp_path / "r.pdf"
    run_cli("report", str(sample), "-o", str(out))
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(out), str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) >= 3
    for i, page in enumerate(pages, 1):
        text = subprocess.run(["pdftotext", "-f", str(i), "-l", str(i), str(out), "-"], capture_output=True,
                              text=True, check=True).stdout
        if "Kernel path" in text:
            continue  # the path diagram (backend/data/pathmodel.py) is drawn in its own dark colours: not these plots
        lum = luminance(QImage(str(page)))
        assert (lum > 200).mean() > 0.8, f"page {i}: not a light page"
        assert (lum < 60).mean() < 0.05, f"page {i}: dark blocks"


def test_one_plot_exported_says_what_it_shows(qtbot, tmp_path):
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QLabel
    from gui.export import current_view, export, plot_context
    from gui.render import OffscreenPanel
    from gui.plots import FlushPanel
    path = tmp_path / "t.xst"
    write_trace(path, 300, DT)
    w = make_window(qtbot, tmp_path)
    w.window_box.setValue(10)
    assert w.open_trace(path)
    w.replay.seek(25.0)
    w.smooth_box.setCurrentIndex(w.smooth_box.findData(5))
    view = current_view(w)
    text = plot_context(w, view)
    assert text == ("xdpscope · redirect on xs-in · host test · trace t.xst · t = 15.00 … 25.00 s since session "
                    "start · moving average over 5 samples")
    with OffscreenPanel(FlushPanel, view, 800, 400, w.flush.state(), context=text) as op:
        assert [l.text() for l in op.panel.findChildren(QLabel)] == [text]
    out = tmp_path / "flush.png"
    export(w, "Flush batches", "png", 800, 400, out)
    img = QImage(str(out))
    assert (img.width(), img.height()) == (800, 400)


def test_export_draws_the_panels_state(qtbot, tmp_path):
    """A panel's options are its state dataclass: an exported copy draws exactly that state (log y,
    per CPU of one verdict, the cursors where they are; a flush target), whatever its widgets' order."""
    from backend.data.sample import VERDICTS
    from gui.export import current_view
    from gui.plots import FlushPanel, VerdictPanel
    from gui.plots.flush import FlushState
    from gui.plots.verdicts import VerdictState
    from gui.render import OffscreenPanel
    path = tmp_path / "t.xst"
    samples = write_trace(path, 300, DT)
    w = make_window(qtbot, tmp_path)
    w.window_box.setValue(10)
    assert w.open_trace(path)
    w.replay.seek(25.0)
    v = w.verdicts
    v.log_box.setChecked(True)
    v.cpu_box.setChecked(True)
    v.cpu_verdict.setCurrentText("PASS")
    w.frame(force=True)
    v.set_cursor_times(17.0, 21.5)
    w.frame(force=True)
    w.flush.target.setCurrentText("xs-t1")
    assert v.state() == VerdictState(log_y=True, per_cpu=True, cpu_verdict="PASS", cursors=(17.0, 21.5))
    assert w.flush.state() == FlushState(target="xs-t1")
    view = current_view(w)
    sel = [s for s in samples if 15.0 < s.t <= 25.0]
    with OffscreenPanel(VerdictPanel, view, 700, 500, v.state()) as op:
        p = op.panel
        assert p.state() == v.state() and p.rates.plot.getAxis("left").logMode
        assert [c.value() for c in p.cursors] == [17.0, 21.5]
        assert p.cursor_deltas()["frames"]["PASS"] == sum(s.verdict_totals()[2] for s in samples if 17.0 < s.t <= 21.5)
        _, y = data(p.cpu.curves["cpu1"])
        np.testing.assert_allclose(y, [s.verdicts[1][VERDICTS.index("PASS")] / s.dt for s in sel])
    with OffscreenPanel(FlushPanel, view, 700, 500, w.flush.state()) as op:
        want = np.sum([s.flush["xs-t1"] for s in sel], axis=0)
        np.testing.assert_array_equal(op.panel.hist.opts["height"], want)
        assert op.panel.target.currentText() == "xs-t1"
