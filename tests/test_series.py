"""backend/data/series.py: the derived series the plots draw, checked against sums computed here
from the samples themselves (no Qt, no root)."""
from __future__ import annotations

import numpy as np
import pytest

from backend.data import series
from backend.data.history import History
from backend.data.sample import FLUSH_BINS, VERDICTS, Sample

pytestmark = pytest.mark.unit


def sample(i: int) -> Sample:
    """Sample i with known counters; dt varies so a rate is not a count in disguise."""
    dt = 0.05 + 0.01 * (i % 3)
    return Sample(
        t=round(sum(0.05 + 0.01 * (k % 3) for k in range(1, i + 1)), 9), dt=dt,
        verdicts=[[0, i % 2, 3 * i, 0, 7 * i], [i % 5, 0, i, 2, 0]],
        targets={"t0": [4 * i, 0], "t1": [3 * i, 0]},
        flush={"t0": [1 if b == i % FLUSH_BINS else 0 for b in range(FLUSH_BINS)],
               "t1": [0] * (FLUSH_BINS - 1) + [i % 3]},
        napi={"eth0": {"polls": 2, "work": i, "budget": 128, "full": 0},
              "xs-in": {"polls": 1 + i % 2, "work": 2 * i, "budget": 64, "full": i % 2}},
        run={"cnt": 5 * i, "ns": 250 * i + 7},
        driver={"rx_queue_0_xdp_packets": i, "rx_queue_1_xdp_packets": 2 * i, "rx_queue_1_xdp_redirects": i,
                "rx_xdp_drops": 9},
    )


@pytest.fixture(scope="module")
def hist():
    samples = [sample(i) for i in range(1, 201)]
    h = History(capacity=1000)
    for s in samples:
        h.append(s)
    return h, samples


def test_verdict_counts_and_rates(hist):
    h, samples = hist
    sl = slice(h.start, h.end)
    counts = series.verdict_counts(h, sl)
    want = np.array([[*s.verdict_totals(), sum(s.verdict_totals())] for s in samples], float)
    np.testing.assert_array_equal(counts, want)
    rates = series.verdict_rates(h, sl)
    np.testing.assert_allclose(rates, want / np.array([s.dt for s in samples])[:, None])
    cpu1 = series.cpu_counts(h, sl, VERDICTS.index("PASS"))[:, 1]
    np.testing.assert_array_equal(cpu1, [s.verdicts[1][VERDICTS.index("PASS")] for s in samples])
    np.testing.assert_array_equal(series.cpu_counts(h, sl, -1)[:, 0], [sum(s.verdicts[0]) for s in samples])


def test_smoothed_rate_is_frames_over_seconds(hist):
    """A moving average over n samples is their frames over their seconds, not a mean of rates."""
    h, samples = hist
    n = 7
    fn = series.per_second(series.target_counts, n)
    got = fn(h, slice(h.start + 50, h.start + 60))
    for row, i in enumerate(range(50, 60)):
        window = samples[i - n + 1:i + 1]
        frames = sum(s.targets["t0"][0] for s in window)
        seconds = sum(s.dt for s in window)
        assert got[row, 0] == pytest.approx(frames / seconds)
    first = fn(h, slice(h.start, h.start + 1))  # at the start: the samples there are
    assert first[0, 1] == pytest.approx(samples[0].targets["t1"][0] / samples[0].dt)


def test_rolling_and_ratio_zero_denominator():
    np.testing.assert_array_equal(series.rolling(np.arange(1, 6, dtype=float), 2), [1, 3, 5, 7, 9])

    class H:
        start = 0
    num = lambda h, sl: np.array([1.0, 2.0, 3.0])[sl]  # noqa: E731
    den = lambda h, sl: np.array([1.0, 0.0, 2.0])[sl]  # noqa: E731
    got = series.ratio(num, den)(H(), slice(0, 3))
    assert got[0] == 1.0 and np.isnan(got[1]) and got[2] == 1.5


def test_flushes_mean_and_per_target(hist):
    h, samples = hist
    sl = slice(h.start, h.end)
    t1 = series.flush_counts(h, sl, "t1")
    np.testing.assert_array_equal(t1[:, FLUSH_BINS - 1], [s.flush["t1"][-1] for s in samples])
    mean = series.flush_mean(h, sl)
    for row, s in enumerate(samples):
        hist_all = np.add(s.flush["t0"], s.flush["t1"])
        n = hist_all.sum()
        if n:
            assert mean[row] == pytest.approx((hist_all @ np.arange(FLUSH_BINS)) / n)
        else:
            assert np.isnan(mean[row])


def test_napi_per_device_and_run_time(hist):
    h, samples = hist
    sl = slice(h.start, h.end)
    one = series.napi_counts(h, sl, "xs-in")
    np.testing.assert_array_equal(one[:, :2], [[s.napi["xs-in"]["polls"], s.napi["xs-in"]["work"]] for s in samples])
    both = series.napi_counts(h, sl, ["xs-in", "eth0"])
    np.testing.assert_array_equal(both, series.napi_counts(h, sl))
    assert not series.napi_counts(h, sl, "nosuch").any()
    per_poll = series.napi_per_poll(h, sl, "xs-in")
    np.testing.assert_allclose(per_poll[:, 0], [s.napi["xs-in"]["work"] / s.napi["xs-in"]["polls"] for s in samples])
    dev = series.napi_device_counts(h, sl, ["eth0", "xs-in"])
    assert dev.shape == (len(samples), 2, 2) and dev[:, 1, 0].sum() == sum(s.napi["eth0"]["work"] for s in samples)
    np.testing.assert_allclose(series.run_ns(h, sl), [s.run["ns"] / s.run["cnt"] for s in samples])


def test_queue_columns_and_session_devices(hist):
    h, _ = hist
    cols = series.queue_columns(h)
    assert set(cols) == {"packets", "redirects"} and sorted(cols["packets"]) == [0, 1]
    assert h.driver.names[cols["redirects"][1]] == "rx_queue_1_xdp_redirects"
    names = ["eth0", "xs-in", "xs-in-p@xs-lab", "xs-t0-p@xs-lab", "docker0", "xs-t1-p@xs-lab"]
    assert series.session_devices({"iface": "xs-in", "targets": ["xs-t0"]}, names) == [
        "xs-in", "xs-in-p@xs-lab", "xs-t0-p@xs-lab"]
    assert series.session_devices({"iface": "xs-in", "napi_devices": ["eth0"]}, names) == ["eth0"]
