"""The visible window of one model (gui/model.py), computed once per UI frame and shared by every
panel: which history rows, which time range, and how a series over them is decimated.

All x values are seconds since the session start (sample.t). Rates are count deltas / dt; with
smoothing on (View.smooth = n) a rate is the counts of the last n samples over their intervals:
the view changes, the history and recordings never do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_POINTS = 1000          # min/max pairs per curve; more samples than this are peak-decimated


def _pow2(x: float) -> int:
    """Smallest power of two >= x (>= 1): bin widths from a few sizes, so caches are reused."""
    return 1 << max(0, int(np.ceil(np.log2(max(float(x), 1.0)))))


@dataclass
class View:
    """The visible window of one model, computed once per frame and shared by every panel.

    Panels ask it for per-row series through functions fn(history, storage slice) -> values
    (one row per sample); with more than 2*MAX_POINTS samples in the window it answers from
    min/max bins cached in the history (each bin computed once), so a frame costs about the same
    for a one-hour window as for a one-minute one. Window totals come from cached sum bins."""

    h: Any  # backend.data.history.History
    sl: slice
    t0: float
    t1: float
    key: tuple
    throttle: bool = False  # the UI timer's frames: panels may defer a redraw (Panel.refresh)
    smooth: int = 1         # moving average over this many samples (1: off); the view only
    markers: tuple = ()     # timeline markers (model.Marker) of the session
    region: tuple | None = None  # (a, b): the A-B range to shade, seconds since session start
    meta: dict = field(default_factory=dict)  # the session's metadata (devices of the session...)
    _cache: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.sl.stop - self.sl.start

    @property
    def t(self) -> np.ndarray:
        return self.h.t[self.sl]

    @property
    def a(self) -> int:
        """Absolute row number of the first sample in the window."""
        return self.h.base + self.sl.start

    @property
    def e(self) -> int:
        return self.h.base + self.sl.stop

    def series(self, name: tuple, fn) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) to draw of fn's values over the window: the samples themselves, or with more than
        2*MAX_POINTS samples, raw rows up to the first bin boundary, then the min and max of each
        bin of k rows (k a power of two, bins anchored to absolute rows, cached), then the raw rows
        of the bin still filling. `name` identifies fn (and its parameters) for the cache."""
        h, n = self.h, self.n
        if n <= 2 * MAX_POINTS:
            return self.t, fn(h, self.sl)
        k = _pow2(n / MAX_POINTS)
        a, e = self.a, self.e
        b_lo, b_hi = -(-a // k), e // k
        x, v = h.reduce(name, fn, "minmax", k, b_lo, b_hi)
        head, tail = h.rows(a, b_lo * k), h.rows(b_hi * k, e)
        yh, yt = fn(h, head), fn(h, tail)
        return (np.concatenate([h.t[head], x.reshape(-1), h.t[tail]]),
                np.concatenate([yh, v.reshape((-1,) + yh.shape[1:]), yt]))

    def total(self, name: tuple, fn) -> np.ndarray:
        """Sum of fn's values over the window (exact for integer counts)."""
        h, n = self.h, self.n
        if n <= 2 * MAX_POINTS:
            return fn(h, self.sl).sum(axis=0)
        k = _pow2(n / MAX_POINTS)
        a, e = self.a, self.e
        b_lo, b_hi = -(-a // k), e // k
        _, v = h.reduce(name, fn, "sum", k, b_lo, b_hi)
        yh, yt = fn(h, h.rows(a, b_lo * k)), fn(h, h.rows(b_hi * k, e))
        return yh.sum(axis=0) + v.reshape((len(v),) + yh.shape[1:]).sum(axis=0) + yt.sum(axis=0)

    def columns(self, name: tuple, fn, max_cols: int) -> tuple[np.ndarray, float, float]:
        """(image rows = time columns, x of the first column's start, width in s) for a heatmap:
        one column per sample, or with more than max_cols samples, sums over bins of k rows
        (cached; the first and last bins may reach outside the window: columns stay fixed in time
        as the window scrolls, the plot's x range clips them)."""
        h, n = self.h, self.n
        t, dt = self.t, h.dt[self.sl]
        x0 = float(t[0] - dt[0])
        if n <= max_cols:
            return fn(h, self.sl), x0, max(float(t[-1]) - x0, 1e-6)
        k = _pow2(n / max_cols)
        a, e = self.a, self.e
        b_lo, b_hi = a // k, -(-e // k)
        _, v = h.reduce(name, fn, "sum", k, b_lo, b_hi)
        step = (float(t[-1]) - x0) / n  # seconds per sample
        return v, x0 - (a - b_lo * k) * step, (b_hi - b_lo) * k * step


def make_view(model: Any, length: float, throttle: bool = False, smooth: int = 1,
              region: tuple | None = None) -> View:
    """The window of `length` seconds ending at the model's view end. throttle: this is a UI
    timer frame, panels may defer redrawing (Panel.refresh); exports and forced frames draw.
    smooth: moving average over that many samples (the view only); region: an A-B range to shade."""
    end = model.view_end()
    h = model.history
    sl = h.window(end, length)
    # early in a session show [0, length] rather than negative time before the session existed
    t0, t1 = (end - length, end) if end >= length else (0.0, float(length))
    markers = tuple(getattr(model, "markers", ()))
    smooth = max(int(smooth), 1)
    # history only appends: its serial and the absolute rows (with the window's end) fix the content
    key = (h.serial, h.base + sl.start, h.base + sl.stop, end, length, smooth, len(markers), region)
    return View(h, sl, t0, t1, key, throttle, smooth, markers, region, model.meta)

