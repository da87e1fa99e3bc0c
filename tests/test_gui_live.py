"""The main window through a real live lab session: the real agent (`xdpscope agent --stdio`), the
real kernel, frames injected through the agent. The plot items must hold the engine's numbers for
the interval (what was injected, split as tests/expect.py says the kernel splits it), and the
UI thread must never block, not even while the agent compiles the program for seconds."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import time

import numpy as np
import pytest
from PySide6.QtCore import QElapsedTimer, QSettings, QTimer

from backend.data.sample import FLUSH_BINS, VERDICTS
from gui.main_window import MainWindow
from gui.plots import SeriesPlot
from tests import expect
from tests.conftest import ROOT

pytestmark = pytest.mark.kernel

COUNT = 6000   # frames injected: 1500 per target, batches of 50 -> flushes of 12 and 13
BATCH = 50
HZ = 20


class TickGaps:
    """A 10 ms QTimer on the UI thread; the longest gap between its ticks is how long the
    event loop was blocked."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.max_gap_ms = 0
        self.ticks = 0

    def start(self) -> None:
        self.clock.start()
        self.timer.start()

    def _tick(self) -> None:
        self.max_gap_ms = max(self.max_gap_ms, self.clock.restart())
        self.ticks += 1

    def stop(self) -> None:
        self.timer.stop()


def data(curve):
    x, y = curve.getOriginalDataset()
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


@pytest.fixture
def win(qtbot, tmp_path):
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                   agent_commands=[[str(ROOT / "xdpscope"), "agent", "--stdio"]])
    qtbot.addWidget(w)
    w.window_box.setValue(3600)  # the whole session is in the window
    w.show()
    yield w
    if w.session is not None and w.session.client.running:
        w.session.client.stop()
        w.session.client.proc.waitForFinished(10_000)


def shown(w) -> dict:
    """What the plots hold: every visible curve's data, and the window's flush histogram."""
    out = {}
    for panel in (w.verdicts, w.fanout, w.flush, w.errors, w.napi):
        for plot in (p for p in vars(panel).values() if isinstance(p, SeriesPlot)):
            for name, c in plot.curves.items():
                if c.isVisible():
                    out[(type(panel).__name__, plot.plot.titleLabel.text, name)] = data(c)
    out["flush histogram"] = np.asarray(w.flush.hist.opts["height"], dtype=float)
    return out


def test_live_lab_session_plots_hold_the_engine_numbers(win, qtbot, lab, tmp_path):
    w = win
    w.start_agent()
    qtbot.waitUntil(lambda: w.session.state == "ready", timeout=30_000)
    targets = [*lab.targets, lab.nxtarget]  # the nx target's frames fail at flush with ENXIO
    samples = []
    w.live.sig_sample.connect(samples.append)

    # attach from the sources panel's signal; the agent compiles for seconds: the UI must not block
    gaps = TickGaps()
    gaps.start()
    t0 = time.monotonic()
    w.sources_panel.sig_attach.emit({"iface": lab.ingress, "program": "redirect", "targets": targets,
                                     "policy": "rr", "mode": "auto", "hz": HZ})
    qtbot.waitUntil(lambda: w.session.attached, timeout=120_000)
    attach_s = time.monotonic() - t0
    gaps.stop()
    assert w.source is w.live
    # Not a speed test (that is benchmarks/): a blocking attach would freeze the loop for the whole
    # attach, one gap as long as the attach itself; a responsive loop ticks all along. (The agent
    # keeps compiled programs, so an attach may take only ~0.3 s; the first frame after it may take
    # ~0.1 s: hence 0.8 of the attach, not half.)
    assert gaps.ticks >= 3, "the UI timer hardly ran during attach"
    assert gaps.max_gap_ms < attach_s * 1000 * 0.8, \
        f"event loop blocked {gaps.max_gap_ms} ms during attach ({attach_s:.1f} s)"
    print(f"attach {attach_s:.2f} s, longest UI gap {gaps.max_gap_ms} ms over {gaps.ticks} ticks")
    assert w.meta_panel.value("iface") == lab.ingress

    # record the session from the toolbar, as a user would
    w.settings.setValue("record_dir", str(tmp_path))
    w.choose_record_path = lambda default: str(default)  # the Save dialog, answered with its suggestion
    w.record_action.setChecked(True)
    assert w.recorder.active

    # inject through the agent, as the inject panel does, and wait for the response
    with qtbot.waitSignal(w.session.client.sig_response, timeout=60_000,
                          check_params_cb=lambda rid, ok, res: isinstance(res, dict) and "frames" in res) as r:
        w.sources_panel.sig_inject.emit({"iface": lab.ingress, "count": COUNT, "batch": BATCH}, False)
    assert r.args[1] is True and r.args[2]["frames"] == COUNT

    per_target = {t: COUNT // len(targets) for t in targets}
    want_flush = expect.flushes(expect.round_robin(COUNT, targets), BATCH)
    want_hist = np.zeros(FLUSH_BINS)
    for size, n in expect.total(want_flush).items():
        want_hist[int(size)] = n

    def settled() -> bool:  # every counter of the injection has arrived in a sample
        got = np.sum([s.verdict_totals() for s in samples], axis=0) if samples else np.zeros(len(VERDICTS))
        errs = sum(s.redirect_errors.get(lab.nxtarget, {}).get("ENXIO", 0) for s in samples)
        flushed = sum(sum(h) for s in samples for h in s.flush.values())
        return got[VERDICTS.index("REDIRECT")] == COUNT and errs == per_target[lab.nxtarget] and flushed == want_hist.sum()

    qtbot.waitUntil(settled, timeout=20_000)
    qtbot.wait(300)  # a few more (empty) samples: nothing else may arrive
    w.frame(force=True)
    h = w.live.model.history
    assert len(h) == len(samples), "every sample the agent sent is in the model"
    t = np.array([s.t for s in samples])
    dt = np.array([s.dt for s in samples])

    # the engine's own numbers for the interval, from the samples it sent
    totals = np.sum([s.verdict_totals() for s in samples], axis=0)
    assert list(totals) == [COUNT if a == "REDIRECT" else 0 for a in VERDICTS]
    assert {n: sum(s.target_totals().get(n, 0) for s in samples) for n in targets} == per_target

    # 1. verdicts: curve points are the samples; rate * dt summed over them is the injected count
    for a, name in enumerate(VERDICTS):
        x, y = data(w.verdicts.rates.curves[name])
        np.testing.assert_array_equal(x, t)
        np.testing.assert_allclose(y, [s.verdict_totals()[a] / s.dt for s in samples])
        assert np.sum(y * dt) == pytest.approx(COUNT if name == "REDIRECT" else 0, abs=1e-6)
    _, y = data(w.verdicts.rates.curves["total"])
    assert np.sum(y * dt) == pytest.approx(COUNT, abs=1e-6)

    # 2. fan-out: per-target rate curves integrate to 1500 each; share bars are 25 % each
    for name in targets:
        x, y = data(w.fanout.rates.curves[name])
        np.testing.assert_array_equal(x, t)
        assert np.sum(y * dt) == pytest.approx(per_target[name], abs=1e-6)
    assert w.fanout.share_labels == targets
    np.testing.assert_allclose(w.fanout.share.opts["height"], [100 / len(targets)] * len(targets))
    assert f"total {COUNT:,} frames in window" in w.fanout.summary.text()

    # 3. flushes: histogram bars = the kernel's flush rule (expect.flushes), summed over targets;
    #    the heatmap holds the same flushes per sample; the mean curve is frames / flushes
    np.testing.assert_array_equal(w.flush.hist.opts["height"], want_hist)
    image = np.asarray(w.flush.heat.image)
    per_sample = np.array([np.sum(list(s.flush.values()), axis=0) if s.flush else np.zeros(FLUSH_BINS)
                           for s in samples])
    np.testing.assert_array_equal(image, per_sample)
    np.testing.assert_array_equal(image.sum(axis=0), want_hist)
    assert int(image @ np.arange(FLUSH_BINS) @ np.ones(len(image))) == COUNT
    _, y = data(w.flush.mean.curves["mean"])
    n_flush = per_sample.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(y, np.where(n_flush > 0, per_sample @ np.arange(FLUSH_BINS) / n_flush, np.nan))
    assert f"{int(want_hist.sum()):,} flushes, {COUNT:,} frames in window" in w.flush.summary.text()
    for target, sizes in want_flush.items():  # one target's bulk queue: its own flushes
        w.flush.target.setCurrentText(target)
        w.frame(force=True)
        mine = np.zeros(FLUSH_BINS)
        for size, n in sizes.items():
            mine[int(size)] = n
        np.testing.assert_array_equal(w.flush.hist.opts["height"], mine)
        assert f"{int(mine.sum()):,} flushes, {per_target[target]:,} frames in window" in w.flush.summary.text()
    w.flush.target.setCurrentIndex(0)
    w.frame(force=True)

    # 4. errors: every frame to the nx target failed with ENXIO at flush, and was a devmap drop
    _, y = data(w.errors.rates.curves[f"redirect error {lab.nxtarget} ENXIO"])
    assert np.sum(y * dt) == pytest.approx(per_target[lab.nxtarget], abs=1e-6)
    _, y = data(w.errors.rates.curves[f"devmap drops {lab.nxtarget}"])
    assert np.sum(y * dt) == pytest.approx(per_target[lab.nxtarget], abs=1e-6)
    assert f"redirect error {lab.nxtarget} ENXIO: {per_target[lab.nxtarget]:,}" in w.errors.summary.text()

    # 5. NAPI: the target peers polled the frames they received (the nx peer is down: none)
    # a device in another namespace is named name@netns (the peers live in the lab's namespace)
    named = {n.split("@")[0]: n for s in samples for n in s.napi}
    peers = {t: named.get(p, p) for t, p in zip(lab.targets, lab.target_peers)}
    work = {p: sum(s.napi.get(p, {}).get("work", 0) for s in samples) for p in peers.values()}
    assert work == {p: per_target[t] for t, p in peers.items()}
    x, y = data(w.napi.work.curves["work/poll"])
    napi = h.napi[h.start:h.end]
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(y, np.where(napi[:, 0] > 0, napi[:, 1] / napi[:, 0], np.nan))
    assert np.nanmax(y) > 0
    # one device's NAPI: each peer's own work per poll, as the engine's samples say
    offered = [w.napi.device.itemText(i) for i in range(w.napi.device.count())]
    for peer in (p for p in peers.values() if work[p]):
        assert peer in offered
        w.napi.device.setCurrentText(peer)
        w.frame(force=True)
        _, y = data(w.napi.work.curves["work/poll"])
        polls = np.array([s.napi.get(peer, {}).get("polls", 0) for s in samples], dtype=float)
        mine = np.array([s.napi.get(peer, {}).get("work", 0) for s in samples], dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.testing.assert_allclose(y, np.where(polls > 0, mine / polls, np.nan))
        assert f"{peer} {int(polls.sum()):,} polls {int(mine.sum()):,} packets" in w.napi.summary.text()
    w.napi.device.setCurrentIndex(0)

    # the UI timer kept drawing during the whole session
    assert len(w.frame_times) > 10

    # the recording, replayed: every plot shows what it showed live, sample for sample
    w.record_action.setChecked(False)
    w.frame(force=True)
    live = shown(w)
    assert w.open_trace(w.recorder.path), w.last_error
    assert len(w.replay.times) == w.recorder.count >= len(samples) - 5  # recording began just after attach
    w.replay.to_end()
    w.frame(force=True)
    replayed = shown(w)
    rh = w.replay.model.history
    assert rh.verdicts[rh.start:rh.end, VERDICTS.index("REDIRECT")].sum() == COUNT  # the whole injection
    assert replayed.keys() == live.keys()
    np.testing.assert_array_equal(replayed.pop("flush histogram"), live.pop("flush histogram"))
    for key, (x, y) in replayed.items():
        lx, ly = live[key]
        assert len(x) == w.recorder.count, key  # one point per recorded sample
        i = np.searchsorted(lx, x)
        np.testing.assert_array_equal(lx[i], x, err_msg=str(key))
        np.testing.assert_array_equal(ly[i], y, err_msg=str(key))
    w.set_source(w.live)

    with qtbot.waitSignal(w.session.sig_detached, timeout=15_000):
        w.sources_panel.sig_detach.emit()
