"""Replay drives the main window: the plot items must hold exactly the numbers of the window."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt

from backend.data.sample import FLUSH_BINS, VERDICTS
from gui.main_window import MainWindow
from gui.testing import write_trace

DT = 0.1
N = 300       # 30 s at 10 Hz
WINDOW = 10


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "t.xst"
    return path, write_trace(path, N, DT)


@pytest.fixture
def win(qtbot, tmp_path, trace):
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.timer.stop()  # frames are drawn explicitly: deterministic
    w.window_box.setValue(WINDOW)
    w.show()
    assert w.open_trace(trace[0])
    return w


def in_window(samples, end, length=WINDOW):
    return [s for s in samples if end - length < s.t <= end]


def data(curve):
    x, y = curve.getOriginalDataset()
    return np.asarray(x), np.asarray(y)


def check_window(w, samples, end):
    """Every panel shows exactly the samples with end - W < t <= end."""
    w.frame(force=True)
    sel = in_window(samples, end)
    assert sel, "test window must not be empty"
    t = np.array([s.t for s in sel])
    # 1. verdict rates: delta / dt, per verdict and total
    for a, name in enumerate(VERDICTS):
        x, y = data(w.verdicts.rates.curves[name])
        np.testing.assert_array_equal(x, t)
        np.testing.assert_allclose(y, [s.verdict_totals()[a] / s.dt for s in sel])
    _, y = data(w.verdicts.rates.curves["total"])
    np.testing.assert_allclose(y, [sum(s.verdict_totals()) / s.dt for s in sel])
    # displayed (not only stored) data: getData() after downsampling/clipping holds the same points
    if len(sel) > 1:  # a single point has no line to display
        x, y = w.verdicts.rates.curves["PASS"].getData()
        np.testing.assert_allclose(y, [s.verdict_totals()[2] / s.dt for s in sel])
    expect = [end - WINDOW, end] if end >= WINDOW else [0.0, WINDOW]  # no negative time at the start
    assert w.verdicts.rates.plot.vb.viewRange()[0] == pytest.approx(expect)
    # 2. fan-out: rate per target and share over the window
    totals = {}
    for name in ("xs-t0", "xs-t1"):
        x, y = data(w.fanout.rates.curves[name])
        np.testing.assert_array_equal(x, t)
        np.testing.assert_allclose(y, [s.target_totals()[name] / s.dt for s in sel])
        totals[name] = sum(s.target_totals()[name] for s in sel)
    grand = sum(totals.values())
    np.testing.assert_allclose(w.fanout.share.opts["height"], [totals["xs-t0"] / grand * 100,
                                                              totals["xs-t1"] / grand * 100])
    # 3. flushes: histogram bars, mean size per sample, heatmap time x size
    per_sample = np.array([np.sum([h for h in s.flush.values()], axis=0) for s in sel])
    np.testing.assert_array_equal(w.flush.hist.opts["height"], per_sample.sum(axis=0))
    assert per_sample.shape == (len(sel), FLUSH_BINS)
    np.testing.assert_array_equal(w.flush.heat.image, per_sample)
    n_flush = per_sample.sum(axis=1)
    mean = np.where(n_flush > 0, per_sample @ np.arange(FLUSH_BINS) / np.where(n_flush > 0, n_flush, 1), np.nan)
    _, y = data(w.flush.mean.curves["mean"])
    np.testing.assert_allclose(y, mean)
    # 4. errors: redirect errors by target and errno, devmap drops, exceptions (only kinds seen)
    _, y = data(w.errors.rates.curves["redirect error xs-nx ENXIO"])
    np.testing.assert_allclose(y, [s.redirect_errors["xs-nx"]["ENXIO"] / s.dt for s in sel])
    _, y = data(w.errors.rates.curves["devmap drops xs-t1"])
    np.testing.assert_allclose(y, [s.devmap["xs-t1"]["drops"] / s.dt for s in sel])
    aborted = [s.exceptions.get("ABORTED", 0) / s.dt for s in sel]
    if any(aborted):
        _, y = data(w.errors.rates.curves["exception ABORTED"])
        np.testing.assert_allclose(y, aborted)
    else:  # an error kind not in the loaded history has no curve
        assert "exception ABORTED" not in w.errors.rates.curves or not w.errors.rates.curves["exception ABORTED"].isVisible()
    assert "exception DROP" not in w.errors.rates.curves
    # 5. NAPI work per poll against budget; run time per packet. eth0 is not one of the
    #    session's devices (xs-in -> xs-t0, xs-t1): shown only when "all devices" is chosen
    assert [w.napi.device.itemText(i) for i in range(w.napi.device.count())] == ["session devices", "all devices", "eth0"]
    assert "1 other device not shown" in w.napi.summary.text()
    assert np.all(np.isnan(data(w.napi.work.curves["work/poll"])[1]))
    w.napi.device.setCurrentIndex(1)
    w.frame(force=True)
    _, y = data(w.napi.work.curves["work/poll"])
    np.testing.assert_allclose(y, [s.napi["eth0"]["work"] / s.napi["eth0"]["polls"] for s in sel])
    _, y = data(w.napi.work.curves["budget"])
    np.testing.assert_allclose(y, 64.0)
    polls, work = sum(s.napi["eth0"]["polls"] for s in sel), sum(s.napi["eth0"]["work"] for s in sel)
    assert f"in window: eth0 {polls:,} polls {work:,} packets" in w.napi.summary.text()
    w.napi.device.setCurrentIndex(0)
    _, y = data(w.napi.runtime.curves["ns/packet"])
    np.testing.assert_allclose(y, [s.run["ns"] / s.run["cnt"] for s in sel])
    return sel


def test_replay_plots_hold_the_window(win, trace):
    _, samples = trace
    src = win.replay
    assert src.position == pytest.approx(samples[0].t + WINDOW)
    check_window(win, samples, src.position)
    assert win.meta_panel.value("program") == "redirect"
    assert win.meta_panel.value("samples") == str(N)


def test_seek_step_jump(win, trace):
    _, samples = trace
    src = win.replay
    src.seek(17.35)                       # between samples: the window ends at the playhead
    sel = check_window(win, samples, 17.35)
    assert sel[-1].t == pytest.approx(17.3)
    src.step(1)
    assert src.position == pytest.approx(17.4)
    check_window(win, samples, src.position)
    src.step(-3)
    assert src.position == pytest.approx(17.1)
    check_window(win, samples, src.position)
    src.to_end()
    check_window(win, samples, samples[-1].t)
    src.to_start()
    sel = check_window(win, samples, samples[0].t)
    assert len(sel) == 1
    # the timeline slider seeks to the sample it points at
    win.replay_bar.slider.setValue(199)
    assert src.position == pytest.approx(samples[199].t)
    check_window(win, samples, samples[199].t)


def test_speed_and_play(win, trace):
    _, samples = trace
    src = win.replay
    src.seek(5.0)
    win.replay_bar.speed.setValue(10.0)
    src.set_playing(True)
    src.play_for(0.5)                     # 0.5 s of wall time at 10x = 5 s of trace
    assert src.position == pytest.approx(10.0)
    src.transport.playing = False                   # frame() must not advance by the wall clock while we check
    check_window(win, samples, 10.0)
    win.replay_bar.speed.setValue(0.1)
    src.play_for(1.0)
    assert src.position == pytest.approx(10.1)
    src.play_for(1000.0)                  # runs to the end and stops there
    assert src.position == pytest.approx(samples[-1].t) and not src.playing
    check_window(win, samples, samples[-1].t)


def test_loop_range(win, trace):
    _, samples = trace
    src = win.replay
    bar = win.replay_bar
    bar.loop_a.setValue(5.0)
    bar.loop_b.setValue(8.0)
    bar.loop.setChecked(True)
    src.seek(7.9)
    src.set_playing(True)
    src.play_for(0.3)                     # 7.9 + 0.3 passes B = 8.0: wraps to A + 0.2
    assert src.position == pytest.approx(5.2)
    src.transport.playing = False
    check_window(win, samples, 5.2)
    src.transport.playing = True
    for _ in range(50):
        src.play_for(0.25)
        assert 5.0 <= src.position <= 8.0
    bar.loop.setChecked(False)
    src.seek(7.9)
    src.play_for(0.3)
    assert src.position == pytest.approx(8.2)


def test_space_toggles_play(win, qtbot):
    win.activateWindow()
    win.verdicts.glw.setFocus()
    assert not win.replay.playing
    qtbot.keyClick(win.verdicts.glw, Qt.Key.Key_Space)
    assert win.replay.playing
    qtbot.keyClick(win.verdicts.glw, Qt.Key.Key_Space)
    assert not win.replay.playing


def test_window_length_reloads(win, trace):
    _, samples = trace
    win.replay.seek(20.0)
    win.window_box.setValue(4)
    w = 4
    win.frame(force=True)
    x, _ = data(win.verdicts.rates.curves["PASS"])
    np.testing.assert_array_equal(x, [s.t for s in samples if 20.0 - w < s.t <= 20.0])


def test_per_cpu_and_log(win, trace):
    _, samples = trace
    win.verdicts.cpu_box.setChecked(True)
    end = win.replay.position
    win.frame(force=True)
    sel = in_window(samples, end)
    for c in range(2):
        _, y = data(win.verdicts.cpu.curves[f"cpu{c}"])
        np.testing.assert_allclose(y, [sum(s.verdicts[c]) / s.dt for s in sel])
    win.verdicts.cpu_verdict.setCurrentIndex(1 + VERDICTS.index("PASS"))
    win.frame(force=True)
    _, y = data(win.verdicts.cpu.curves["cpu1"])
    np.testing.assert_allclose(y, [s.verdicts[1][2] / s.dt for s in sel])
    win.verdicts.log_box.setChecked(True)
    assert win.verdicts.rates.plot.ctrl.logYCheck.isChecked() or win.verdicts.rates.curves["PASS"].opts["logMode"][1]


def test_hover_shows_exact_values(win, trace):
    _, samples = trace
    win.replay.seek(12.0)
    win.frame(force=True)
    s = next(s for s in samples if s.t == pytest.approx(11.5))
    text = win.verdicts.rates.hover.show_at(11.51)
    assert "t = 11.500 s" in text
    assert f"PASS: {s.verdict_totals()[2] / s.dt:,.0f}" in text
    text = win.flush.hist_hover.show_at(16.2)
    sel = in_window(samples, 12.0)
    assert text == f"size 16 (full bulk queue): {sum(s.flush['xs-t1'][16] for s in sel) + sum(s.flush['xs-t0'][16] for s in sel):,} flushes"


def test_pause_freezes_live_view_but_data_arrives(qtbot, tmp_path, trace):
    """The live model path: samples appended while paused are stored, the view end stays."""
    from gui.sources import Source
    _, samples = trace
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.timer.stop()
    w.window_box.setValue(WINDOW)
    src = Source(w)
    w.set_source(src)
    src.model.extend(samples[:150])
    w.frame(force=True)
    x, _ = data(w.verdicts.rates.curves["PASS"])
    assert x[-1] == pytest.approx(15.0)
    w.pause_action.setChecked(True)
    src.model.extend(samples[150:])
    w.frame(force=True)
    x, _ = data(w.verdicts.rates.curves["PASS"])
    assert x[-1] == pytest.approx(15.0) and len(src.model.history) == N
    w.toggle_play()  # Space in live mode: unpause
    w.frame(force=True)
    x, _ = data(w.verdicts.rates.curves["PASS"])
    assert x[-1] == pytest.approx(30.0)


def test_bad_file_is_reported_and_current_replay_kept(win, tmp_path):
    bad = tmp_path / "bad.xst"
    bad.write_bytes(b"not a trace at all" * 10)
    before = win.replay
    assert not win.open_trace(bad)
    assert "not an xdpscope trace" in win.last_error
    assert win.replay is before and win.source is before


def test_settings_persist(qtbot, tmp_path, win):
    win.window_box.setValue(42)
    win.close()
    w2 = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w2)
    assert w2.window_box.value() == 42
    assert w2.last_dir() == str(tmp_path.resolve())


def test_unreadable_row_is_said_and_the_replay_stays_usable(qtbot, tmp_path):
    """A trace damaged where the replay has not read yet: the seek there says which row in one
    line and keeps the window shown; a damaged first window fails the open the same way."""
    import sqlite3
    path = tmp_path / "damaged.xst"
    samples = write_trace(path, N, DT)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE samples SET data = ? WHERE seq = 250", (b"not zlib",))
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.timer.stop()
    w.window_box.setValue(WINDOW)
    assert w.open_trace(path)
    start = w.replay.position
    check_window(w, samples, start)
    w.replay.seek(27.0)  # the window 17..27 s holds row 250
    assert "seq=250: unreadable data" in w.last_error and "\n" not in w.last_error
    assert w.replay.position == start  # stayed
    check_window(w, samples, start)
    w.replay.seek(20.0)  # rows 101..200: readable
    check_window(w, samples, 20.0)
    w.last_error = ""
    w.replay.set_playing(True)
    w.replay.play_for(6.0)  # playing into row 250 (t = 25 s) pauses there, said the same way
    assert not w.replay.playing and w.replay.position == 20.0 and "seq=250" in w.last_error
    w.replay.seek(12.0)  # elsewhere it goes on
    check_window(w, samples, 12.0)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE samples SET data = ? WHERE seq = 3", (b"not zlib",))
    assert not w.open_trace(path)
    assert "seq=3: unreadable data" in w.last_error
    assert w.replay is not None and w.replay.position == pytest.approx(12.0)  # the open replay is kept



def test_bar_pause_and_plots_follow_the_one_transport(win, trace, tmp_path):
    """One transport per model: whoever moves it (the source, a key, the bar), the bar, the
    shaded A-B range, the plots' window and the Pause button show the same state."""
    _, samples = trace
    src, bar = win.replay, win.replay_bar
    assert src.caps.seekable and not src.caps.recordable and bar.isEnabled() and not win.pause_action.isEnabled()
    src.set_loop(True, 12.0, 6.0)                 # set on the source, not through the bar
    assert (bar.loop_a.value(), bar.loop_b.value(), bar.loop.isChecked()) == (6.0, 12.0, True)
    assert win.region() == (6.0, 12.0) == src.transport.region()
    src.seek(9.0)
    check_window(win, samples, 9.0)
    assert win.verdicts.rates.region.getRegion() == (6.0, 12.0)
    assert bar.slider.value() == src.index() and bar.time_label.text().startswith("9.00 /")
    src.set_loop(False, samples[0].t, samples[-1].t)  # the whole trace, not looping: nothing shaded
    assert win.region() is None and not bar.loop.isChecked()
    # a live-like source (neither seekable nor attachable): the Pause button drives its transport
    from gui.sources import Source
    live = Source(win)
    for i in range(1, 51):
        live.model.append(samples[i - 1])
    win.set_source(live)
    assert win.pause_action.isEnabled() and not bar.isEnabled()
    win.pause_action.setChecked(True)
    assert live.transport.position == samples[49].t and not live.transport.playing
    live.model.append(samples[50])                # data keeps arriving; the view stays
    assert live.model.view_end() == samples[49].t
    live.model.set_paused(False)                  # e.g. a new session: the button follows
    assert not win.pause_action.isChecked() and live.model.view_end() == samples[50].t


def test_no_view_asks_the_source_class():
    """The GUI asks a source's capabilities, never its class (issue 10)."""
    import ast
    from pathlib import Path
    names = {"Source", "LiveSource", "ReplaySource"}
    root = Path(__file__).resolve().parent.parent / "gui"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("isinstance", "issubclass"):
                classes = node.args[1]
                used = {n.id if isinstance(n, ast.Name) else getattr(n, "attr", "") for n in
                        (classes.elts if isinstance(classes, ast.Tuple) else [classes])}
                assert not used & names, f"{path.relative_to(root.parent)}:{node.lineno} asks the source class"
