"""The app in a real X window (Xvfb) driven by real input (xdotool: the X server's own pointer,
wheel and keyboard events, as a user's): the hover readout leaves with the mouse and with the
session, the wheel over a setting that is not focused scrolls the panel instead, every plot keeps
at least 120 px at 1024x700 (or sits in a tab), Reset layout restores the default, Space plays from
any focus but a text field.

Qt picks its platform once per process, and the rest of the suite runs offscreen, so each test
runs itself again in a child pytest on a fresh Xvfb display (the `xvfb` fixture) with
QT_QPA_PLATFORM=xcb; in the child the test body runs against the X server."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

CHILD = os.environ.get("XDPSCOPE_X11_CHILD") == "1"
os.environ["QT_QPA_PLATFORM"] = "xcb" if CHILD else os.environ.get("QT_QPA_PLATFORM", "offscreen")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIZE = (1600, 1000)


@pytest.fixture(scope="module")
def xvfb():
    """An Xvfb server on a free display for this module's children; always stopped."""
    for tool in ("Xvfb", "xdotool"):
        assert shutil.which(tool), f"{tool} is missing: scripts/setup.sh installs it"
    for n in range(140, 400):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            break
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", f"{SIZE[0]}x{SIZE[1]}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.05)
        yield f":{n}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def in_x11(request) -> bool:
    """In the parent: run this test in a child under Xvfb and check it passed; True in the child."""
    if CHILD:
        return True
    display = request.getfixturevalue("xvfb")
    env = {**os.environ, "DISPLAY": display, "XDPSCOPE_X11_CHILD": "1", "QT_QPA_PLATFORM": "xcb"}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", request.node.nodeid],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"under Xvfb {display}:\n{p.stdout[-6000:]}\n{p.stderr[-3000:]}"
    return False


# -- the child's side -----------------------------------------------------------------------------

def xdo(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=30)


def spin(qtbot, ms: int = 250) -> None:
    qtbot.wait(ms)


def global_of(widget, point=None):
    from PySide6.QtCore import QPoint
    g = widget.mapToGlobal(point if point is not None else widget.rect().center())
    assert isinstance(g, QPoint)
    return g


def move(qtbot, p) -> None:
    xdo("mousemove", "--sync", str(p.x()), str(p.y()))
    spin(qtbot)


def scene_to_global(panel, scene_point):
    glw = panel.glw
    return glw.mapToGlobal(glw.mapFromScene(scene_point))


@pytest.fixture
def win(qtbot, tmp_path):
    if not CHILD:
        yield None
        return
    from PySide6.QtCore import QSettings
    from gui.main_window import MainWindow
    from gui.testing import write_trace
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.move(0, 0)
    w.resize(*SIZE)
    w.show()
    w.raise_()
    w.activateWindow()
    qtbot.waitExposed(w)
    qtbot.waitUntil(w.isActiveWindow, timeout=5_000)
    w.layout_manager.settle()
    from backend.agent import catalog
    w.sources_panel.set_catalog(catalog.answer())  # as an agent answers it: the panel's limits and defaults
    write_trace(tmp_path / "a.xst", 300, 0.1)
    write_trace(tmp_path / "b.xst", 200, 0.1)
    assert w.open_trace(tmp_path / "a.xst")
    w.replay.seek(20.0)
    w.frame(force=True)
    spin(qtbot, 300)
    yield w


def test_hover_leaves_with_the_mouse_and_with_the_session(request, win, qtbot, tmp_path):
    if not in_x11(request):
        return
    w = win
    w.docks["Verdicts"].raise_()
    w.docks["Flushes"].raise_()
    spin(qtbot, 300)
    plot, hover = w.verdicts.rates.plot, w.verdicts.rates.hover
    vb = plot.vb.sceneBoundingRect()
    move(qtbot, scene_to_global(w.verdicts, vb.center()))
    qtbot.waitUntil(lambda: hover.visible, timeout=3_000)
    assert "t = " in hover.text.toPlainText()
    # it follows the mouse: a second position, a second readout
    first = hover.line.value()
    move(qtbot, scene_to_global(w.verdicts, vb.center() + type(vb.center())(vb.width() / 4, 0)))
    assert hover.visible and hover.line.value() > first
    # near the right edge the box opens to the left: never cut at the edge
    move(qtbot, scene_to_global(w.verdicts, type(vb.center())(vb.right() - 3, vb.top() + 10)))
    box = hover.text.mapRectToScene(hover.text.boundingRect())
    assert hover.visible and box.right() <= vb.right() + 1 and box.left() >= vb.left() - 1
    # the mouse leaves the plot for the Sources panel: the readout goes
    move(qtbot, global_of(w.sources_panel))
    qtbot.waitUntil(lambda: not hover.visible, timeout=3_000)
    assert not hover.line.isVisible()
    # the rightmost histogram bar (size 16): its readout is whole, not cut to "s"
    hb = w.flush.hist_plot.vb.sceneBoundingRect()
    move(qtbot, scene_to_global(w.flush, type(hb.center())(hb.right() - 4, hb.center().y())))
    hh = w.flush.hist_hover
    qtbot.waitUntil(lambda: hh.visible, timeout=3_000)
    box = hh.text.mapRectToScene(hh.text.boundingRect())
    assert hh.text.toPlainText().startswith("size 16 (full bulk queue): ")
    assert box.left() >= w.flush.hist_plot.sceneBoundingRect().left() and box.right() <= hb.right() + 1
    # leaving the window altogether (to the screen's corner, outside the window)
    w.resize(1500, 940)  # still the wide layout
    spin(qtbot, 600)
    hb = w.flush.hist_plot.vb.sceneBoundingRect()
    move(qtbot, scene_to_global(w.flush, hb.center()))
    qtbot.waitUntil(lambda: hh.visible, timeout=3_000)
    move(qtbot, type(hb.center().toPoint())(SIZE[0] - 5, SIZE[1] - 5))
    qtbot.waitUntil(lambda: not hh.visible, timeout=3_000)
    w.resize(*SIZE)
    spin(qtbot, 400)
    # a still mouse over the plot while the session changes: no readout of the old session stays
    w.layout_manager.settle()
    w.docks["Verdicts"].raise_()
    spin(qtbot, 300)
    vb = plot.vb.sceneBoundingRect()
    move(qtbot, scene_to_global(w.verdicts, vb.center()))
    qtbot.waitUntil(lambda: hover.visible, timeout=3_000)
    assert w.open_trace(tmp_path / "b.xst")
    spin(qtbot, 200)
    assert not hover.visible and not hover.line.isVisible()


def test_wheel_over_an_unfocused_setting_scrolls_the_panel(request, win, qtbot):
    if not in_x11(request):
        return
    from PySide6.QtWidgets import QScrollArea
    w = win
    sp = w.sources_panel
    w.docks["Sources"].raise_()
    spin(qtbot)
    area = sp.findChild(QScrollArea)
    bar = area.verticalScrollBar()
    assert bar.maximum() > 0, "the Sources panel must scroll for this test"
    w.window_box.setFocus()
    spin(qtbot, 100)
    for box in (sp.policy, sp.hz, sp.program, sp.mode):
        bar.setValue(0)
        area.ensureWidgetVisible(box)
        spin(qtbot)
        value = box.currentText() if hasattr(box, "currentText") else box.value()
        before = bar.value()
        move(qtbot, global_of(box))
        for _ in range(2):
            xdo("click", "5")  # wheel down
        spin(qtbot, 300)
        assert (box.currentText() if hasattr(box, "currentText") else box.value()) == value, box
        assert not box.hasFocus()
        if before < bar.maximum():
            assert bar.value() > before, f"{box}: the panel did not scroll"
    # the inject batch spin box (64 -> 58 in the issue), over it and wheeling up and down
    area.ensureWidgetVisible(sp.inj_batch)
    spin(qtbot)
    move(qtbot, global_of(sp.inj_batch))
    xdo("click", "4")
    xdo("click", "5")
    xdo("click", "5")
    spin(qtbot, 300)
    assert sp.inj_batch.value() == 64
    # focused, the wheel does change it: the user asked
    sp.inj_batch.setFocus()
    spin(qtbot, 100)
    move(qtbot, global_of(sp.inj_batch))
    xdo("click", "4")
    spin(qtbot, 300)
    assert sp.inj_batch.value() == 65


def test_every_plot_readable_at_1024x700_and_back(request, win, qtbot):
    if not in_x11(request):
        return
    w = win
    from gui.plots import MIN_PLOT_PX
    for size, kind in (((1024, 700), "compact"), (SIZE, "wide"), ((1024, 700), "compact")):
        w.resize(*size)
        qtbot.waitUntil(lambda: (w.width(), w.height()) == size, timeout=5_000)
        spin(qtbot, 600)  # the layout settles after a resize
        assert w.layout_manager.kind == kind
        w.frame(force=True)
        sizes = w.layout_manager.plot_sizes()
        shown = [(n, h) for n, h, on in sizes if on]
        assert shown, "no plot on screen"
        small = [(n, h) for n, h in shown if h < MIN_PLOT_PX]
        assert not small, f"at {size}: plots under {MIN_PLOT_PX} px: {small}"
        # a plot not on screen is in a dock tab behind another (never squashed out of sight)
        for name, h, on in sizes:
            if not on:
                assert w.tabifiedDockWidgets(w.docks[name]), f"{name} is neither shown nor in a tab"
        # the right-hand docks are not cut: each dock lies inside the window
        for name, d in w.docks.items():
            if d.isVisible() and not d.isFloating():
                g = d.geometry()
                assert g.right() <= w.width() and g.bottom() <= w.height(), f"{name} cut at {size}"
    # one plot of every panel, shown one at a time from its tab, has its room
    for name in ("Verdicts", "Fan-out", "Flushes", "Errors", "NAPI", "RX queues"):
        w.docks[name].raise_()
        spin(qtbot, 150)
        w.frame(force=True)
        for n, h, on in w.layout_manager.plot_sizes():
            if n == name:
                assert on and h >= MIN_PLOT_PX, (name, h)


def dock_state(w) -> dict:
    """What the user sees of the docks: area, floating, tab group, and for a dock on screen its
    geometry (a tab behind another has none to see)."""
    out = {}
    for name, d in w.docks.items():
        on_screen = d.isVisible() and not d.visibleRegion().isEmpty()
        g = d.geometry()
        out[name] = (w.dockWidgetArea(d), d.isVisible(), d.isFloating(),
                     tuple(sorted(x.objectName() for x in w.tabifiedDockWidgets(d))),
                     (g.x(), g.y(), g.width(), g.height()) if on_screen else None)
    return out


def same_layout(a: dict, b: dict, tol: int = 30) -> bool:
    """The same docks in the same places, geometries within tol px: the default's splitters are set
    in proportion to the window, whose toolbars have their final heights only once it is shown."""
    def close(g, h):
        return g is None and h is None or g is not None and h is not None and all(abs(x - y) <= tol for x, y in zip(g, h))
    return a.keys() == b.keys() and all(a[k][:4] == b[k][:4] and close(a[k][4], b[k][4]) for k in a)


def diff(a: dict, b: dict) -> dict:
    return {k: (a[k], b.get(k)) for k in a if not same_layout({k: a[k]}, {k: b.get(k)})}


def test_reset_layout_restores_the_default(request, win, qtbot, tmp_path):
    if not in_x11(request):
        return
    from PySide6.QtCore import QSettings, Qt
    from gui.main_window import MainWindow
    w = win
    spin(qtbot, 400)
    default = dock_state(w)
    # rearrange as a user would: move into a tab, float, close, resize
    w.tabifyDockWidget(w.docks["Fan-out"], w.docks["Flushes"])
    w.docks["Errors"].setFloating(True)
    w.docks["NAPI"].close()
    w.resizeDocks([w.docks["Sources"]], [600], Qt.Orientation.Horizontal)
    spin(qtbot, 300)
    assert not same_layout(dock_state(w), default)
    w.close()  # the broken layout is saved ...
    w2 = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w2)
    w2.move(0, 0)
    w2.show()
    qtbot.waitExposed(w2)
    spin(qtbot, 500)
    assert not same_layout(dock_state(w2), default)  # ... and comes back, as layouts do
    reset = next(a for a in w2.menuBar().actions() if a.text() == "&View").menu().actions()[-1]
    assert reset.text() == "&Reset layout"
    reset.trigger()
    spin(qtbot, 500)
    assert same_layout(dock_state(w2), default), diff(dock_state(w2), default)
    w2.close()
    w3 = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w3)
    w3.move(0, 0)
    w3.show()
    qtbot.waitExposed(w3)
    spin(qtbot, 500)
    assert same_layout(dock_state(w3), default), diff(dock_state(w3), default)  # the reset is what is kept


def test_space_plays_from_any_focus_but_text_fields(request, win, qtbot):
    if not in_x11(request):
        return
    w = win
    src, bar, sp = w.replay, w.replay_bar, w.sources_panel
    w.docks["Sources"].raise_()
    w.docks["Verdicts"].raise_()
    spin(qtbot)
    speed = bar.speed.currentText()
    log_y = w.verdicts.log_box.isChecked()
    clicked = []
    sp.agent_btn.clicked.connect(lambda: clicked.append(1))
    for widget in (bar.speed, w.window_box, bar.loop_a, bar.slider, bar.play_btn, sp.agent_btn,
                   w.verdicts.log_box, w.verdicts.glw, sp.iface_tree, w.log):
        widget.setFocus()
        qtbot.waitUntil(widget.hasFocus, timeout=2_000)
        was = src.playing
        xdo("key", "space")
        spin(qtbot, 200)
        assert src.playing != was, f"Space with the focus on {type(widget).__name__} did not play/pause"
        src.set_playing(False)
        spin(qtbot, 50)
    assert bar.speed.currentText() == speed  # never "×": nothing was typed into it
    assert w.window_box.value() == 30 and w.verdicts.log_box.isChecked() == log_y and not clicked
    # in a text field Space is a character
    sp.program.setCurrentText("user")
    w.docks["Sources"].raise_()
    spin(qtbot)
    sp.user_file.setFocus()
    qtbot.waitUntil(sp.user_file.hasFocus, timeout=2_000)
    xdo("type", "a b")
    spin(qtbot, 200)
    assert sp.user_file.text() == "a b" and not src.playing
