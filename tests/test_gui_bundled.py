"""The main window replays the bundled real recordings (resources/*.xst: a lab session and a
virtio_net guest session): at several playhead positions, every plot item holds the numbers of
the samples in the window, and the window totals are summarize()'s (the engine's numbers)."""
import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from backend.data.sample import FLUSH_BINS, VERDICTS
from backend.data.summary import summarize
from backend.data.trace import TraceReader
from gui.main_window import MainWindow

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 8


@pytest.fixture(params=["sample.xst", "virtio-sample.xst"])
def bundled(request, qtbot, tmp_path):
    path = ROOT / "resources" / request.param
    with TraceReader(path) as r:
        samples = list(r.samples())
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.timer.stop()  # frames are drawn explicitly: deterministic
    w.window_box.setValue(WINDOW)
    w.show()
    assert w.open_trace(path), w.last_error
    return w, path, samples


def data(curve):
    x, y = curve.getOriginalDataset()
    return np.asarray(x), np.asarray(y)


def per_poll(num, polls):
    num, polls = np.asarray(num, float), np.asarray(polls, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(polls > 0, num / polls, np.nan)


def test_bundled_trace_replays_exactly(bundled):
    w, path, samples = bundled
    times = np.array([s.t for s in samples])
    polled = set()
    by_target = 0
    for end in (float(times[len(times) // 3]), float(times[-1]), float(times[len(times) // 2])):
        w.replay.seek(end)
        w.frame(force=True)
        sel = [s for s in samples if end - WINDOW < s.t <= end]
        t, dt = np.array([s.t for s in sel]), np.array([s.dt for s in sel])
        engine = summarize(path, sel[0].t, sel[-1].t)
        assert engine["samples"] == len(sel)

        # 1. verdicts: delta / dt per verdict
        for a, name in enumerate(VERDICTS):
            x, y = data(w.verdicts.rates.curves[name])
            np.testing.assert_array_equal(x, t)
            np.testing.assert_allclose(y, [s.verdict_totals()[a] for s in sel] / dt)
            assert np.sum(y * dt) == pytest.approx(engine["actions"][name], abs=1e-6)

        # 2. fan-out per target, its window totals and shares
        redirected = {n: v for n, v in engine["redirect_targets"].items() if v}
        for name, total in redirected.items():
            _, y = data(w.fanout.rates.curves[name])
            np.testing.assert_allclose(y, [s.target_totals().get(name, 0) for s in sel] / dt)
            assert f"{name}: {total:,}" in w.fanout.summary.text()
        if redirected:
            shares = dict(zip(w.fanout.share_labels, w.fanout.share.opts["height"]))
            for name, pct in engine["redirect_shares"].items():
                if redirected.get(name):
                    assert shares[name] == pytest.approx(pct)

        # 3. flushes: the window's histogram is the engine's, bin for bin
        want = np.zeros(FLUSH_BINS)
        for size, n in engine["flush_batches"].items():
            want[int(size)] = n
        np.testing.assert_array_equal(w.flush.hist.opts["height"], want)
        per_sample = np.array([np.sum(list(s.flush.values()), axis=0) if s.flush else np.zeros(FLUSH_BINS)
                               for s in sel])
        np.testing.assert_array_equal(w.flush.heat.image, per_sample)
        flushed = [w.flush.target.itemText(i) for i in range(1, w.flush.target.count())]
        assert set(flushed) == {n for s in sel for n in s.flush}  # the targets the loaded window flushed to
        for target in flushed:
            w.flush.target.setCurrentText(target)
            w.frame(force=True)
            want = np.zeros(FLUSH_BINS)
            for size, n in engine["flush_batches_by_target"][target].items():
                want[int(size)] = n
            np.testing.assert_array_equal(w.flush.hist.opts["height"], want)
            np.testing.assert_array_equal(w.flush.heat.image, [s.flush.get(target, [0] * FLUSH_BINS) for s in sel])
            by_target += 1
        w.flush.target.setCurrentIndex(0)

        # 4. errors: every kind the session saw, per sample
        for target, errs in engine["redirect_errors"].items():
            for errno in errs:
                _, y = data(w.errors.rates.curves[f"redirect error {target} {errno}"])
                np.testing.assert_allclose(y, [s.redirect_errors.get(target, {}).get(errno, 0) for s in sel] / dt)
        for verdict, n in engine["exceptions"].items():
            _, y = data(w.errors.rates.curves[f"exception {verdict}"])
            assert np.sum(y * dt) == pytest.approx(n, abs=1e-6)

        # 5. NAPI: by default the session's devices only (its interface, targets and their lab
        #    peers <name>-p), then all devices, then each device; run time per packet
        meta = w.replay.model.meta
        ends = {meta["iface"], *meta.get("targets", [])}
        mine = ends | {f"{e}-p" for e in ends}
        _, y = data(w.napi.work.curves["work/poll"])
        field = lambda s, f, dev=None: sum(d.get(f, 0) for k, d in s.napi.items()  # noqa: E731
                                           if dev is None or k == dev or (isinstance(dev, set) and k in dev))
        np.testing.assert_allclose(y, per_poll([field(s, "work", mine) for s in sel], [field(s, "polls", mine) for s in sel]))
        assert w.napi.device.itemText(0) == "session devices" and w.napi.device.itemText(1) == "all devices"
        w.napi.device.setCurrentIndex(1)
        w.frame(force=True)
        _, y = data(w.napi.work.curves["work/poll"])
        np.testing.assert_allclose(y, per_poll([field(s, "work") for s in sel], [field(s, "polls") for s in sel]))
        devices = [w.napi.device.itemText(i) for i in range(2, w.napi.device.count())]
        assert set(devices) == {d for s in sel for d in s.napi}  # the devices the loaded window polled
        polled |= set(devices)
        for dev in devices:
            w.napi.device.setCurrentText(dev)
            w.frame(force=True)
            _, y = data(w.napi.work.curves["work/poll"])
            np.testing.assert_allclose(y, per_poll([field(s, "work", dev) for s in sel],
                                                   [field(s, "polls", dev) for s in sel]))
            polls = engine["napi"].get(dev, {}).get("polls", 0)
            work = engine["napi"].get(dev, {}).get("work", 0)
            if polls:
                assert f"{dev} {polls:,} polls {work:,} packets" in w.napi.summary.text()
        w.napi.device.setCurrentIndex(0)
        if engine["run"]["cnt"]:
            _, y = data(w.napi.runtime.curves["ns/packet"])
            np.testing.assert_allclose(y, per_poll([s.run.get("ns", 0) for s in sel], [s.run.get("cnt", 0) for s in sel]))
    assert polled  # both recordings traced napi_poll: the per-device views were checked
    assert by_target  # and flushed to several targets: the per-target flush views were checked
