"""The Path dock in the main window (pytest-qt, offscreen): it follows the replay's window and its
A-B range with the numbers of summarize() for them; hover gives an edge's exact frames and rate, a
click the node's measured-by text and its kernel source link; it exports like the plots."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import QPointF, QSettings, Qt  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from backend.data import pathmodel as pm  # noqa: E402
from backend.data.summary import summarize  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402

VIRTIO = Path(__file__).resolve().parent.parent / "resources" / "virtio-sample.xst"


@pytest.fixture
def win(qtbot, tmp_path):
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.timer.stop()  # frames drawn explicitly
    w.resize(1600, 1000)
    w.show()
    w.window_box.setValue(10)
    assert w.open_trace(VIRTIO)
    qtbot.wait(100)  # the Path tab is raised once its tab bar exists
    w.frame(force=True)
    return w


def window_path(w) -> pm.Path:
    """The path of summarize() over the samples the window shows."""
    from gui.plots import make_view
    v = make_view(w.source.model, float(w.window_box.value()))
    return pm.build(summarize(VIRTIO, float(v.t[0]), float(v.t[-1])), w.path_panel.expand())


def same_numbers(a: pm.Path, b: pm.Path) -> None:
    assert [n.id for n in a.nodes] == [n.id for n in b.nodes]
    assert [x.text for x in a.nums()] == [x.text for x in b.nums()]


def test_dock_is_shown_and_follows_the_replay(win):
    panel = win.path_panel
    assert win.docks["Path"].isVisible() and panel.shown()
    assert panel.path is not None and "virtnet_poll" in [n.title for n in panel.path.nodes]
    same_numbers(panel.path, window_path(win))
    before = panel.path.edge("prog", "redir").frames.value
    win.source.seek(12.0)  # the playhead moves: the window and its numbers with it
    win.frame(force=True)
    same_numbers(panel.path, window_path(win))
    assert panel.path.edge("prog", "redir").frames.value != before
    assert "window" in panel.where.text() and "v6.1" in panel.where.text()


def test_ab_range(win):
    bar = win.replay_bar
    bar.loop_a.setValue(2.0)
    bar.loop_b.setValue(29.0)
    bar.loop.setChecked(True)
    win.frame(force=True)
    want = summarize(VIRTIO, 2.0, 29.0)
    p = win.path_panel.path
    assert p.edge("prog", "redir").frames.value == want["actions"]["REDIRECT"]
    assert p.edge("flush", "xmit:vnic2").frames.value == want["devmap"]["vnic2"]["sent"]
    assert "A–B range" in win.path_panel.where.text()


def bezier(pts, t: float) -> tuple[float, float]:
    w = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3)
    return sum(c * p[0] for c, p in zip(w, pts)), sum(c * p[1] for c, p in zip(w, pts))


def scene_point(panel, x: float, y: float):
    return panel.view.mapFromScene(QPointF(x, y))


def test_hover_edge_and_click_node(win, qtbot):
    panel = win.path_panel
    e = panel.path.edge("prog", "redir")
    mx, my = bezier(e.points, 0.5)  # a point on the edge's curve
    QTest.mouseMove(panel.view.viewport(), scene_point(panel, mx, my))
    qtbot.waitUntil(lambda: "REDIRECT:" in panel.info.text(), timeout=2000)
    assert f"{e.frames.text} frames" in panel.info.text() and f"{e.rate.text} frames/s" in panel.info.text()
    n = panel.path.node("poll")
    QTest.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     scene_point(panel, n.x + n.w / 2, n.y + n.h - 4))
    qtbot.waitUntil(lambda: panel.selected == "poll", timeout=2000)
    text = panel.info.text()
    assert "napi:napi_poll" in text and "https://elixir.bootlin.com/linux/v6.1/A/ident/virtnet_poll" in text
    assert "drivers/net/virtio_net.c" in text


def test_rx_queues_choice(win):
    panel = win.path_panel
    assert panel.path.expanded  # the vlab guest's queues differ: one row each by default
    panel.queues.setCurrentIndex(2)
    win.frame(force=True)
    assert not panel.path.expanded and any(n.id == "rxq" for n in panel.path.nodes)


def test_export_png_and_svg(win, tmp_path):
    from gui.export import export
    png, svg = tmp_path / "path.png", tmp_path / "path.svg"
    export(win, "Path", "png", 1000, 560, png)
    img = QImage(str(png))
    assert (img.width(), img.height()) == (1000, 560)
    assert len({img.pixel(x, y) for x in range(0, 1000, 25) for y in range(0, 560, 25)}) > 5  # not blank
    export(win, "Path", "svg", 1000, 560, svg)
    text = svg.read_text()
    assert "virtnet_poll" in text and "bq_xmit_all" in text


@pytest.mark.kernel
def test_live_session_through_the_receive_path(qtbot, tmp_path, lab):
    """A live session driven like the GUI does (real agent, inject with wire: true): the dock's
    edges hold the frames sent, NAPI work, veth's counter and the failing target's ENXIO loss."""
    from tests.conftest import ROOT
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                   agent_commands=[[str(ROOT / "xdpscope"), "agent", "--stdio"]])
    qtbot.addWidget(w)
    w.window_box.setValue(3600)  # the whole session is in the window
    w.show()
    try:
        w.start_agent()
        qtbot.waitUntil(lambda: w.session.state == "ready", timeout=30_000)
        samples = []
        w.live.sig_sample.connect(samples.append)
        targets = [lab.targets[0], lab.nxtarget]
        w.sources_panel.sig_attach.emit({"iface": lab.ingress, "program": "redirect", "targets": targets,
                                         "policy": "rr", "mode": "auto", "hz": 20})
        qtbot.waitUntil(lambda: w.session.attached, timeout=120_000)
        n = 2000
        with qtbot.waitSignal(w.session.client.sig_response, timeout=60_000,
                              check_params_cb=lambda rid, ok, res: isinstance(res, dict) and "frames" in res) as r:
            w.sources_panel.sig_inject.emit({"iface": lab.ingress, "count": n, "wire": True, "rate": 20000.0}, False)
        assert r.args[1] is True and r.args[2]["frames"] == n == r.args[2]["peer_tx_packets"]

        def settled() -> bool:
            work = sum(s.napi.get(lab.ingress, {}).get("work", 0) for s in samples)
            errs = sum(s.redirect_errors.get(lab.nxtarget, {}).get("ENXIO", 0) for s in samples)
            return work == n and errs == n // 2

        qtbot.waitUntil(settled, timeout=20_000)
        qtbot.wait(300)
        w.frame(force=True)
        p = w.path_panel.path
        assert p.edge("prog", "redir").frames.value == n
        assert p.edge("poll", "recv").frames.value == n
        assert dict((k, x.value) for k, x in p.edge("recv", "prog").also)["driver xdp_packets"] == n
        assert p.edge("flush", f"xmit:{lab.targets[0]}").frames.value == n // 2
        loss = p.edge("flush", f"drop:{lab.nxtarget}")
        assert loss.loss and loss.frames.value == n // 2 and "ENXIO" in loss.label
        assert p.node("poll").title == "veth_poll" and p.version.startswith("v6.")
    finally:
        if w.session is not None and w.session.client.running:
            w.session.client.stop()
            w.session.client.proc.waitForFinished(10_000)
