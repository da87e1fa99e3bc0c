"""base.overlap_count (all earlier series at once) counts what the rule, pair by pair, says."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

from gui.plots.base import OVERLAP_SHARE, overlap_count

pytestmark = pytest.mark.unit


def overlaps(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """The rule for one pair, written plainly (the reference overlap_count is checked against)."""
    if a.shape != b.shape or not len(a):
        return False
    ok = np.isfinite(a) & np.isfinite(b)
    ok &= np.maximum(np.abs(np.where(ok, a, 0)), np.abs(np.where(ok, b, 0))) > 4 * tol
    if ok.sum() < 3:
        return False
    return float(np.mean(np.abs(a[ok] - b[ok]) <= tol)) >= OVERLAP_SHARE


def test_overlap_count_is_the_pairwise_count():
    rng = np.random.default_rng(3)
    tol = 0.015
    for trial in range(300):
        m = int(rng.integers(0, 40))
        base = rng.uniform(0, 1, m)
        series = []
        for _ in range(int(rng.integers(1, 9))):
            kind = rng.integers(0, 5)
            y = {0: base + rng.normal(0, 0.005, m), 1: rng.uniform(0, 1, m), 2: np.zeros(m),
                 3: base * rng.uniform(0.9, 1.1), 4: rng.uniform(0, 0.05, m)}[int(kind)]
            y = y.astype(float)
            if rng.random() < 0.3 and m:
                y[rng.integers(0, m, 3)] = np.nan
            if rng.random() < 0.1:
                y = y[: max(m - 1, 0)]  # another length: never one line with the rest
            series.append(y)
        a, earlier = series[-1], series[:-1]
        assert overlap_count(a, earlier, tol) == sum(overlaps(a, b, tol) for b in earlier), trial
    assert overlap_count(np.ones(10), [np.ones(10), np.ones(10) * 2], 0.015) == 1
