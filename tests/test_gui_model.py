"""The plots' cached reductions (gui/model.py Bins, gui/plots.py View) against direct numpy over
the window: long windows are drawn from min/max bins computed once per bin, window totals and
the heatmap from sum bins. They must agree with the plain computation, as the window scrolls,
the ring buffer wraps and targets appear mid-session."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np

from gui.model import AppModel
from gui.plots import MAX_POINTS, flush_counts, make_view, nice_ceiling, target_counts, verdict_rates
from gui.testing import synthetic


def test_cached_bins_equal_direct_computation():
    m = AppModel(capacity=5000)
    rng = np.random.default_rng(1)
    i = 0
    for _ in range(60):
        for _ in range(int(rng.integers(1, 500))):
            i += 1  # targets appear at 3000 and 9000 samples: columns are added mid-session
            m.append(synthetic(i, 0.05, targets=1 + (i > 3000) + (i > 9000)))
        for length in (30, 150, 240, 1000):
            v = make_view(m, length)
            h = v.h
            direct = verdict_rates(h, v.sl)
            x, y = v.series(("verdicts",), verdict_rates)
            assert np.all(np.diff(x) >= 0) and x[0] == v.t[0] and x[-1] == v.t[-1]
            if v.n <= 2 * MAX_POINTS:  # short windows: the samples themselves
                np.testing.assert_array_equal(x, v.t)
                np.testing.assert_array_equal(y, direct)
            else:  # peak decimation: same extremes per column, at most ~2 points per bin
                assert len(x) <= 2 * MAX_POINTS + 2 * (v.n // MAX_POINTS + 1) * 2
                np.testing.assert_array_equal(np.nanmax(y, axis=0), np.nanmax(direct, axis=0))
                np.testing.assert_array_equal(np.nanmin(y, axis=0), np.nanmin(direct, axis=0))
            # window totals: exact
            np.testing.assert_array_equal(v.total(("targets",), target_counts), target_counts(h, v.sl).sum(axis=0))
            np.testing.assert_array_equal(v.total(("flush",), flush_counts), flush_counts(h, v.sl).sum(axis=0))
            img, x0, width = v.columns(("flush",), flush_counts, 600)
            if v.n <= 600:  # one column per sample
                np.testing.assert_array_equal(img, flush_counts(h, v.sl))
            else:  # fixed columns covering the window; the edge columns may reach outside it
                assert len(img) <= 602
                assert img.sum() >= flush_counts(h, v.sl).sum()
                assert x0 <= v.t[0] - h.dt[v.sl][0] + 1e-9 and x0 + width >= v.t[-1] - 1e-6
    assert len(m.history) == 5000 and m.history.base > 0  # the ring wrapped


def test_nice_ceiling_is_stable_and_round():
    got = [nice_ceiling(v) for v in (0.3, 1, 1.01, 7.9, 8.1, 99, 101, 2.2e6)]
    np.testing.assert_allclose(got, [0.3, 1, 1.2, 8, 10, 100, 120, 2.5e6])
    assert nice_ceiling(5, 8) == 8          # kept while the data stays within (8/2.5, 8]
    assert nice_ceiling(3, 8) == 3          # much lower: a new ceiling
    assert nice_ceiling(9, 8) == 10         # higher: a new ceiling
    assert nice_ceiling(float("nan"), 4) == 4 and nice_ceiling(0) == 1
