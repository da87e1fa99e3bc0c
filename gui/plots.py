"""The plot panels. They read model columns on the UI timer (never per sample) and skip the
work when the visible window and the data have not changed since their last draw.

All x values are seconds since the session start (sample.t). Rates are count deltas / dt; with
smoothing on (View.smooth = n) a rate is the counts of the last n samples over their intervals:
the view changes, the history and recordings never do.

Readability rules (issue 12): a colour-blind-safe palette, series that overlap get distinct
dashes, legends sit under the plot (never over data), axes and hover use SI prefixes, the hover
readout follows the mouse and leaves with it.
"""
from __future__ import annotations

import html
import re
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
import shiboken6
from PySide6.QtCore import QEvent, QObject, QRectF, QSize, Qt
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from backend.data.sample import ACTIONS, FLUSH_BINS

from . import si
from .model import NAPI_FIELDS, AppModel, History, Keyed
from .palette import DARK, DASHES, Theme, dash_glyph, dash_style

pg.setConfigOptions(antialias=False, background=DARK.background, foreground=DARK.foreground)

VERDICT_COLORS = DARK.verdicts
BULK_SIZE = FLUSH_BINS - 1  # DEV_MAP_BULK_SIZE: a devmap bulk queue flushes at 16 frames
HEATMAP_MAX_COLUMNS = 600  # heatmap time bins; beyond this, samples are summed per column
MAX_POINTS = 1000          # min/max pairs per curve; more samples than this are peak-decimated
# UI timer frames (View.throttle): a panel redraws at most once per REDRAW_MIN_S, or per pixel of
# its time axis when that is longer (a 1 h window moves 1 px per ~3 s: redrawing at 20 Hz shows
# nothing new), but at least every REDRAW_MAX_S; and one panel per frame, the one that has waited
# longest, so panels take turns instead of all redrawing (and repainting) in the same tick.
REDRAW_MIN_S = 0.1
REDRAW_MAX_S = 0.5
MIN_PLOT_PX = 120          # a plot is at least this high, or its panel lays its plots out in one row
OVERLAP_TOL = 0.015        # series within 1.5 % of the axis height at most points look like one line
OVERLAP_SHARE = 0.8
TIME_LABEL = "time since session start (s)"
_panels: "weakref.WeakSet[Panel]" = weakref.WeakSet()
_hovers: "weakref.WeakSet[Hover]" = weakref.WeakSet()


def color(i: int, theme: Theme = DARK) -> str:
    return theme.color(i)


def _pow2(x: float) -> int:
    """Smallest power of two >= x (>= 1): bin widths from a few sizes, so caches are reused."""
    return 1 << max(0, int(np.ceil(np.log2(max(float(x), 1.0)))))


def rate(h: History, sl: slice, counts: np.ndarray) -> np.ndarray:
    """counts (rows of sl, any trailing shape) / dt of each row; NaN where dt is not positive."""
    dt = h.dt[sl]
    dt = np.where(dt > 0, dt, np.nan)
    return counts / (dt if counts.ndim == 1 else dt.reshape((-1,) + (1,) * (counts.ndim - 1)))


def rolling(a: np.ndarray, n: int) -> np.ndarray:
    """Sums over the trailing n rows of a (fewer at the start), along axis 0."""
    cs = np.cumsum(a, axis=0)
    if n < len(a):
        cs[n:] = cs[n:] - cs[:-n].copy()
    return cs


def ratio(num, den, n: int = 1):
    """A row function: num(h, sl) / den(h, sl) per row, or with n > 1 the sums of both over the
    trailing n rows (a moving average that weighs each sample by its interval, so a rate over n
    samples is their frames over their seconds). Zero denominators give NaN."""
    def fn(h: History, sl: slice) -> np.ndarray:
        if n > 1:
            lo = max(h.start, sl.start - n + 1)
            wide = slice(lo, sl.stop)
            a, b = rolling(num(h, wide), n)[sl.start - lo:], rolling(den(h, wide), n)[sl.start - lo:]
        else:
            a, b = num(h, sl), den(h, sl)
        b = np.where(b > 0, b, np.nan)
        if a.ndim > b.ndim:
            b = b.reshape(b.shape + (1,) * (a.ndim - b.ndim))
        with np.errstate(invalid="ignore", divide="ignore"):
            return a / b
    return fn


def dts(h: History, sl: slice) -> np.ndarray:
    return h.dt[sl]


def per_second(counts, n: int = 1):
    """A row function: counts per second of each row, or over the trailing n rows."""
    return ratio(counts, dts, n)


@dataclass
class View:
    """The visible window of one model, computed once per frame and shared by every panel.

    Panels ask it for per-row series through functions fn(history, storage slice) -> values
    (one row per sample); with more than 2*MAX_POINTS samples in the window it answers from
    min/max bins cached in the history (each bin computed once), so a frame costs about the same
    for a one-hour window as for a one-minute one. Window totals come from cached sum bins."""

    h: History
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

    def points(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of values already computed for every row of the window, peak-decimated when
        long. Not cached (a pass over y per call): panels use series(), which is."""
        t, n = self.t, self.n
        if n <= 2 * MAX_POINTS:
            return t, y
        k = -(-n // MAX_POINTS)
        head = (-self.a) % k
        m = (n - head) // k * k
        y2 = y.reshape(n, -1)
        body = np.ascontiguousarray(y2[head:head + m].T).reshape(y2.shape[1], m // k, k)
        lo, hi = np.fmin.reduce(body, axis=2), np.fmax.reduce(body, axis=2)
        yy = np.stack([lo, hi], axis=2).reshape(y2.shape[1], -1).T.reshape((-1,) + y.shape[1:])
        tb = t[head:head + m].reshape(m // k, k)
        xx = np.stack([tb[:, 0], tb[:, -1]], axis=1).reshape(-1)
        return (np.concatenate([t[:head], xx, t[head + m:]]),
                np.concatenate([y[:head], yy, y[head + m:]]))

    def rate(self, counts: np.ndarray) -> np.ndarray:
        """counts (rows in the window, any trailing shape) / dt of each row."""
        return rate(self.h, self.sl, counts)


def make_view(model: AppModel, length: float, throttle: bool = False, smooth: int = 1,
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


class SIAxis(pg.AxisItem):
    """A value axis with SI-prefixed ticks (0, 500 k, 1 M, 1.5 M), also in log mode."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.enableAutoSIPrefix(False)

    def tickStrings(self, values, scale, spacing):
        if self.logMode:
            return [si.si(10.0 ** v) for v in values]
        return [si.tick(v * scale, spacing * scale) for v in values]


def fmt_value(v: float, unit: str = "") -> str:
    """A hover value: exact with thousands separators, and SI-prefixed when large."""
    if v is None or not np.isfinite(v):
        return "–"
    exact = si.thousands(float(v)) + unit
    return f"{exact}  ({si.si(float(v), unit.strip())})" if abs(v) >= 1e4 else exact


_fmt = si.thousands  # kept for callers of the old name


class Hover:
    """Readout of the exact values under the mouse: the nearest sample of every curve, or the bar
    under the cursor. It follows the mouse (placed on the side with room, never cut at an edge),
    and hides when the mouse leaves the plot or the panel, and when the session changes."""

    def __init__(self, plot: pg.PlotItem, unit: str = "", bar_labels: list[str] | None = None,
                 theme: Theme = DARK) -> None:
        self.plot = plot
        self.unit = unit
        self.bar_labels = bar_labels
        self.theme = theme
        self.line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(theme.muted, width=1))
        self.text = pg.TextItem(color=theme.hover_text, fill=pg.mkBrush(*theme.hover_fill),
                                border=pg.mkPen(theme.muted, width=1), anchor=(0, 0))
        for item in (self.line, self.text):
            item.setZValue(100)
            item.hide()
            plot.addItem(item, ignoreBounds=True)
        self._pos = None  # scene position of the mouse while it is over the plot
        plot.scene().sigMouseMoved.connect(self._moved)
        _hovers.add(self)

    @property
    def visible(self) -> bool:
        return self.text.isVisible()

    def _moved(self, pos) -> None:
        vb = self.plot.vb
        if not self.plot.isVisible() or not vb.sceneBoundingRect().contains(pos):
            self.hide()
            return
        self._pos = pos
        p = vb.mapSceneToView(pos)
        self.show_at(p.x(), p.y())

    def hide(self) -> None:
        self._pos = None
        self.line.hide()
        self.text.hide()

    def refresh(self) -> None:
        """The data under a still mouse changed (live scrolling): read out again."""
        if self._pos is not None and self.visible:
            self._moved(self._pos)

    def readout(self, x: float) -> str:
        """The values at x as HTML lines: t, then each named curve (its colour and line style)."""
        lines: list[str] = []
        for item in self.plot.items:
            if isinstance(item, pg.PlotDataItem) and item.isVisible() and item.name():
                xs, ys = item.getOriginalDataset()
                if xs is None or len(xs) == 0:
                    continue
                i = int(np.clip(np.searchsorted(xs, x), 0, len(xs) - 1))
                if i > 0 and abs(xs[i - 1] - x) < abs(xs[i] - x):
                    i -= 1
                if not lines:
                    lines.append(f"t = {xs[i]:.3f} s")
                pen = item.opts.get("pen")
                c = pen.color().name() if hasattr(pen, "color") else self.theme.hover_text
                glyph = dash_glyph(getattr(item, "_xs_rank", 0))
                lines.append(f'<span style="color:{c}">{glyph}</span> {html.escape(item.name())}: '
                             f"{fmt_value(ys[i], self.unit)}")
            elif isinstance(item, pg.BarGraphItem) and item.opts.get("height") is not None:
                xs, hs = np.asarray(item.opts["x"]), np.asarray(item.opts["height"])
                if len(xs) == 0:
                    continue
                i = int(np.argmin(np.abs(xs - x)))
                label = self.bar_labels[i] if self.bar_labels and i < len(self.bar_labels) else f"{xs[i]:g}"
                lines.append(f"{html.escape(label)}: {fmt_value(hs[i], self.unit)}")
        return "<br>".join(lines)

    def show_at(self, x: float, y: float | None = None) -> str:
        text = self.readout(x)
        if not text:
            self.hide()
            return ""
        (x0, x1), (y0, y1) = self.plot.vb.viewRange()
        y = y1 if y is None else y
        # on the side of the mouse with more room: a box at the right edge opens to the left
        ax = 1.0 if x > (x0 + x1) / 2 else 0.0
        ay = 1.0 if y < (y0 + y1) / 2 else 0.0
        self.line.setPos(x)
        self.text.setHtml(f'<div style="font-size:8pt">{text}</div>')
        self.text.setAnchor((ax, ay))
        self.text.setPos(x, y)
        self.line.show()
        self.text.show()
        return re.sub(r"<[^>]+>", "", text.replace("<br>", "\n"))


NICE = np.array([1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10])


def nice_ceiling(v: float, current: float | None = None) -> float:
    """A round number >= v (1, 1.2, 1.5, 2 ... 8 x 10^k) for the top of a y axis; `current` is kept
    while v is within (current / 2.5, current]: the axis (whose ticks and labels cost more to
    paint than the curves) then stays the same from frame to frame."""
    if not np.isfinite(v) or v <= 0:
        return current if current else 1.0
    if current and current / 2.5 < v <= current:
        return current
    e = 10.0 ** np.floor(np.log10(v))
    return float(NICE[np.searchsorted(NICE, v / e * (1 - 1e-12))] * e)


class Summary(QWidget):
    """A one-line text over a plot that changes on every redraw without moving anything. A QLabel
    asks for a new layout on every setText, which repaints the dock and the main window (more
    work than the plots); this widget has a fixed height, ignores the text's width and only
    repaints itself. The full text is also its tooltip (it is elided when too long)."""

    def __init__(self) -> None:
        super().__init__()
        self._text = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setAutoFillBackground(True)  # opaque: nothing behind it is repainted

    def sizeHint(self) -> QSize:
        return QSize(200, self.fontMetrics().height() + 4)

    def minimumSizeHint(self) -> QSize:
        return QSize(20, self.fontMetrics().height() + 4)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        if text != self._text:
            self._text = text
            self.setToolTip(text)
            self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        r = self.rect().adjusted(4, 0, -4, 0)
        p.drawText(r, int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft),
                   self.fontMetrics().elidedText(self._text, Qt.TextElideMode.ElideRight, r.width()))
        p.end()


def no_min_width(label: pg.LabelItem) -> None:
    """A LabelItem asks for its text's width as its minimum: a long title then pushes the plots
    of a narrow panel out of it. Let it be clipped instead (the tooltip of the panel says it all)."""
    update = label.updateMin

    def update_min() -> None:
        update()
        label.setMinimumWidth(0)
    label.updateMin = update_min
    update_min()


def style_plot(plot: pg.PlotItem, title: str, theme: Theme) -> None:
    """Title, axes and fonts in the theme's colours, compact (a plot may be 120 px high)."""
    no_min_width(plot.titleLabel)
    plot.setTitle(title, color=theme.foreground, size="9pt")
    plot.layout.setRowFixedHeight(0, 18)
    for name in ("left", "bottom", "right", "top"):
        ax = plot.getAxis(name)
        ax.setPen(pg.mkPen(theme.muted, width=1))
        ax.setTextPen(pg.mkPen(theme.foreground))
        ax.label.setDefaultTextColor(pg.mkColor(theme.foreground))
    plot.getAxis("left").setWidth(52)  # room for '1.5 M' / '999 k': the axes of stacked plots line up


def set_label(plot: pg.PlotItem, side: str, text: str, theme: Theme) -> None:
    plot.setLabel(side, text, **{"color": theme.foreground, "font-size": "8pt"})


def overlaps(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """Two series drawn over the same x look like one line: where either is clearly off the
    baseline (above 4 tol), they are within tol of each other at most points. Near the baseline
    every small series meets every other: that is not one line hiding another."""
    if a.shape != b.shape or not len(a):
        return False
    ok = np.isfinite(a) & np.isfinite(b)
    ok &= np.maximum(np.abs(np.where(ok, a, 0)), np.abs(np.where(ok, b, 0))) > 4 * tol
    if ok.sum() < 3:
        return False
    return float(np.mean(np.abs(a[ok] - b[ok]) <= tol)) >= OVERLAP_SHARE


class SeriesPlot:
    """A time plot with one thin curve per named series, created on first use; its legend sits
    under the plot, series that overlap an earlier one get a dash pattern (kept for the session),
    and it draws the session's timeline markers and the A-B range."""

    def __init__(self, plot: pg.PlotItem, title: str, unit: str = "", theme: Theme = DARK,
                 marker_labels: bool = False) -> None:
        self.plot = plot
        self.theme = theme
        self.unit = unit
        style_plot(plot, title, theme)
        set_label(plot, "bottom", TIME_LABEL, theme)
        plot.setMouseEnabled(x=False, y=True)  # x follows the window; y may be zoomed
        plot.setAutoVisible(y=True)
        self.legend = pg.LabelItem("", size="8pt", color=theme.foreground, justify="left")
        no_min_width(self.legend)
        plot.layout.addItem(self.legend, 4, 1)
        plot.layout.setRowFixedHeight(4, 0)
        self._legend_key: tuple | None = None
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.ranks: dict[str, int] = {}  # dash rank of each series (0: solid), sticky for the session
        self._colors: dict[str, str] = {}
        # invisible, unnamed: keeps y = 0 inside the auto range so flat rates are not magnified noise
        self.baseline = plot.plot([0.0, 0.0], [0.0, 0.0], pen=pg.mkPen((0, 0, 0, 0), width=1))
        self.hover = Hover(plot, unit, theme=theme)
        self._xrange: tuple[float, float] | None = None
        self._ymax: dict[str, float] = {}     # largest value of each shown curve
        self._ceiling: float | None = None    # invisible top of the y auto range (nice_ceiling)
        self.marker_labels = marker_labels
        self._markers: list[pg.InfiniteLine] = []
        self._marker_src: tuple = ()
        self.region: pg.LinearRegionItem | None = None

    def curve(self, name: str, pen_color) -> pg.PlotDataItem:
        c = self.curves.get(name)
        if c is None:
            # no pyqtgraph downsampling or clipping: View.series hands over <= ~2 points per pixel
            c = self.plot.plot(pen=pg.mkPen(pen_color, width=1), name=name, connect="finite")
            c._xs_rank = 0
            self.curves[name] = c
            self._colors[name] = pg.mkColor(pen_color).name()
        return c

    def set(self, name: str, x: np.ndarray, y: np.ndarray, pen_color) -> None:
        c = self.curve(name, pen_color)
        c.setData(x, y)
        self._ymax[name] = float(np.fmax.reduce(y)) if len(y) else np.nan  # fmax: NaN gaps skipped
        if not c.isVisible():
            c.show()

    def hide_except(self, names: set[str]) -> None:
        for name, c in self.curves.items():
            if name not in names and c.isVisible():
                self._ymax.pop(name, None)
                c.setData([], [])
                c.hide()

    def reset_styles(self) -> None:
        """A new session: series start solid again."""
        for name, c in self.curves.items():
            if self.ranks.get(name):
                c.setPen(pg.mkPen(self._colors[name], width=1))
                c._xs_rank = 0
                c.setZValue(0)
        self.ranks.clear()
        self._legend_key = None
        self.hover.hide()

    def _restyle(self) -> None:
        """Give a series that overlaps earlier ones the next dash pattern (and draw it above them)."""
        shown = [n for n, c in self.curves.items() if c.isVisible()]
        tol = OVERLAP_TOL * (self._ceiling or 1.0)
        ys = {n: np.asarray(self.curves[n].getOriginalDataset()[1] if self.curves[n].yData is not None else [],
                            dtype=float).reshape(-1) for n in shown}
        # a series that is all zero lies on the baseline: not a line another one hides
        active = [n for n in shown if len(ys[n]) and np.fmax.reduce(np.abs(ys[n]), initial=0.0) > 0]
        for i, n in enumerate(active):
            rank = min(sum(overlaps(ys[n], ys[m], tol) for m in active[:i]), len(DASHES) - 1)
            if rank > self.ranks.get(n, 0):
                self.ranks[n] = rank
                c = self.curves[n]
                c.setPen(pg.mkPen(self._colors[n], width=1, **dash_style(rank)))
                c._xs_rank = rank
                c.setZValue(rank)

    def _legend(self) -> None:
        shown = [n for n, c in self.curves.items() if c.isVisible()]
        width = max(int(self.plot.width()), 200)
        key = (tuple((n, self._colors[n], self.ranks.get(n, 0)) for n in shown), width // 40)
        if key == self._legend_key:
            return
        self._legend_key = key
        lines, line, used = [], [], 0
        for n in shown:
            w = 7 * (len(n) + 5)  # ~7 px a character at 8 pt
            if line and used + w > width - 60:
                lines.append(line)
                line, used = [], 0
            line.append(f'<span style="color:{self._colors[n]}">{dash_glyph(self.ranks.get(n, 0))}</span>'
                        f"&nbsp;{html.escape(n)}")
            used += w
        if line:
            lines.append(line)
        self.legend.setText("<br>".join("&nbsp;&nbsp;&nbsp;".join(l) for l in lines),
                            color=self.theme.foreground, size="8pt")
        self.plot.layout.setRowFixedHeight(4, 15 * len(lines))

    def set_markers(self, markers: tuple) -> None:
        """Vertical lines at the session's markers (attach, switch, inject, record, errors)."""
        src = self._marker_src
        if len(markers) >= len(src) and markers[:len(src)] == src:
            new = markers[len(src):]
        else:  # another session: start over
            for line in self._markers:
                self.plot.removeItem(line)
            self._markers, new = [], markers
        for m in new:
            c = self.theme.marker.get(m.kind, self.theme.foreground)
            opts = {"position": 0.97, "color": c, "anchors": [(0, 0), (0, 0)],
                    "fill": pg.mkBrush(*self.theme.hover_fill[:3], 170)}
            line = pg.InfiniteLine(pos=m.t, angle=90, movable=False,
                                   pen=pg.mkPen(c, width=1, style=Qt.PenStyle.DashLine),
                                   label=m.label if self.marker_labels else None,
                                   labelOpts=opts if self.marker_labels else None)
            line.setZValue(50)
            line.setToolTip(f"{m.t:.3f} s: {m.label}")
            self.plot.addItem(line, ignoreBounds=True)
            self._markers.append(line)
        self._marker_src = tuple(markers)

    def set_region(self, region: tuple | None) -> None:
        """Shade the A-B range (replay loop / report range)."""
        if region is None:
            if self.region is not None:
                self.region.hide()
            return
        if self.region is None:
            self.region = pg.LinearRegionItem(values=region, movable=False, brush=pg.mkBrush(*self.theme.region),
                                              pen=pg.mkPen(self.theme.region[:3], width=1))
            self.region.setZValue(-20)
            self.plot.addItem(self.region, ignoreBounds=True)
        self.region.setRegion(region)
        self.region.show()

    def set_xrange(self, t0: float, t1: float) -> None:
        """The time window, at the end of a draw; also settles the y auto range: an invisible line
        from (t0, 0) to (t1, a round number above the data) keeps 0 in range (flat rates are not
        magnified noise) and makes the top of the axis change only in round steps. Then the
        line styles and the legend follow what is shown."""
        ymax = max((v for v in self._ymax.values() if np.isfinite(v)), default=np.nan)
        ceiling = nice_ceiling(ymax, self._ceiling)
        if self._xrange != (t0, t1) or ceiling != self._ceiling:
            self._xrange, self._ceiling = (t0, t1), ceiling
            self.baseline.setData([t0, t1], [0.0, ceiling])
            self.plot.setXRange(t0, max(t1, t0 + 1e-6), padding=0)
        self._restyle()
        self._legend()
        self.hover.refresh()

    def finish(self, v: "View") -> None:
        """End of a draw from View v: x range, markers, A-B range."""
        self.set_markers(v.markers)
        self.set_region(v.region)
        self.set_xrange(v.t0, v.t1)


def set_choices(box: QComboBox, everything: str | list[str], names: list[str]) -> None:
    """A panel's "all, or one of these" box: offer what the history holds now (names come and go
    with a replay's window), keeping the choice by name. `everything` may be several entries
    (e.g. "session devices", "all devices") before the names."""
    special = [everything] if isinstance(everything, str) else list(everything)
    if [box.itemText(i) for i in range(len(special), box.count())] != names \
            or [box.itemText(i) for i in range(min(len(special), box.count()))] != special:
        current = box.currentText()
        box.blockSignals(True)
        box.clear()
        box.addItems([*special, *names])
        box.setCurrentIndex(max(box.findText(current), 0))
        box.blockSignals(False)


class _LeaveFilter(QObject):
    """Hides a panel's hover readouts when the mouse leaves its plots."""

    def __init__(self, panel: "Panel") -> None:
        super().__init__(panel)
        self.panel = weakref.ref(panel)

    def eventFilter(self, obj, ev) -> bool:
        panel = self.panel()
        if ev.type() == QEvent.Type.Leave and panel is not None and shiboken6.isValid(panel):
            panel.hide_hover()
        return False


class Panel(QWidget):
    """Base: a layout of plots that redraws only when its view key or options change. When the
    panel is too short for its rows of plots at MIN_PLOT_PX each, the plots go into one row."""

    title = ""

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent)
        self.theme = theme
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground(theme.background)
        self._leave = _LeaveFilter(self)
        self.glw.viewport().installEventFilter(self._leave)
        self.glw.installEventFilter(self._leave)
        self.controls = QHBoxLayout()
        self.controls.setContentsMargins(4, 2, 4, 0)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(self.controls)
        lay.addWidget(self.glw, 1)
        self._key: tuple | None = None
        self._drawn_at = -1e9
        self._places: list[tuple] = []  # (item, wide (row, col, rowspan, colspan), one-row place)
        self.compact = False
        _panels.add(self)

    # -- plots and their arrangement ---------------------------------------------------------
    def add_plot(self, row: int, col: int, rowspan: int = 1, colspan: int = 1,
                 compact: tuple[int, int] | None = None, si_axis: bool = True) -> pg.PlotItem:
        """A plot at (row, col) in the normal layout and at `compact` (row, col) in the one-row
        layout used when the panel is short."""
        axes = {"left": SIAxis("left")} if si_axis else None
        plot = pg.PlotItem(axisItems=axes)
        place = (row, col, rowspan, colspan)
        short = (0, compact[1], 1, 1) if compact else place
        self._places.append((plot, place, short))
        r, c, rs, cs = short if self.compact else place
        self.glw.ci.addItem(plot, r, c, rs, cs)
        return plot

    def remove_plot(self, plot: pg.PlotItem) -> None:
        self._places = [p for p in self._places if p[0] is not plot]
        self.glw.removeItem(plot)

    def rows(self) -> int:
        return max((p[1][0] + p[1][2] for p in self._places), default=1)

    def arrange(self, compact: bool) -> None:
        if compact == self.compact:
            return
        self.compact = compact
        ci = self.glw.ci
        for item, _, _ in self._places:
            ci.removeItem(item)
        for item, place, short in self._places:
            ci.addItem(item, *(short if compact else place))
        self.invalidate()

    def resizeEvent(self, event) -> None:
        if event is not None:
            super().resizeEvent(event)
        need = self.rows() * (MIN_PLOT_PX + 12) + 30  # plots, spacing, the controls row
        if self.rows() > 1 and any(p[1] != p[2] for p in self._places):
            if not self.compact and self.height() < need:
                self.arrange(True)
            elif self.compact and self.height() > need + 24:  # hysteresis: no flapping at the edge
                self.arrange(False)

    def plots(self) -> list[pg.PlotItem]:
        return [p[0] for p in self._places]

    def series_plots(self) -> list[SeriesPlot]:
        return [v for v in vars(self).values() if isinstance(v, SeriesPlot)]

    def hide_hover(self) -> None:
        scene = self.glw.scene()
        for hv in list(_hovers):
            if shiboken6.isValid(hv.plot) and hv.plot.scene() is scene:
                hv.hide()

    def invalidate(self) -> None:
        self._key = None
        self._drawn_at = -1e9
        self.hide_hover()

    def new_session(self) -> None:
        """Another session (source or attach): forget line styles and readouts."""
        self.invalidate()
        for sp in self.series_plots():
            sp.reset_styles()

    def choice_box(self, everything: str, tip: str) -> QComboBox:
        """An "all, or one of these" box in the controls (its items: set_choices); a choice redraws."""
        box = QComboBox()
        box.setToolTip(tip)
        box.addItem(everything)
        box.currentIndexChanged.connect(self.invalidate)
        self.controls.addWidget(box)
        return box

    def shown(self) -> bool:
        """Visible on screen: a panel in a hidden dock tab is isVisible() but has nothing to show."""
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def min_interval(self, view: View) -> float:
        """Seconds between redraws on the UI timer: one pixel of the time axis, within bounds."""
        px = max(self.glw.width() - 60, 100)  # minus the y axis
        return float(np.clip((view.t1 - view.t0) / px, REDRAW_MIN_S, REDRAW_MAX_S))

    def _due(self, view: View, now: float) -> bool:
        return view.key != self._key and self.shown() and now - self._drawn_at >= self.min_interval(view)

    def refresh(self, view: View) -> bool:
        """Redraw if the view changed; True when something was drawn. On a UI timer frame
        (view.throttle) only the panel whose turn it is draws: of the shown panels of this window
        that are due (changed, and their min_interval passed), the one drawn longest ago."""
        if view.key == self._key:
            return False
        now = time.monotonic()
        if view.throttle:
            turn = view._cache.get("turn")
            if turn is None:
                top = self.window()
                due = [p for p in list(_panels) if shiboken6.isValid(p) and p.window() is top and p._due(view, now)]
                turn = view._cache["turn"] = min(due, key=lambda p: p._drawn_at) if due else False
            if turn is not self:
                return False
        self._key = view.key
        self._drawn_at = now
        self.draw(view)
        # settle auto ranges now rather than in the paint: there they change the view again,
        # which schedules a second paint of the whole plot widget
        for item in self.glw.ci.items:
            vb = getattr(item, "vb", None)
            if vb is not None:
                vb.prepareForPaint()
        return True

    def draw(self, view: View) -> None:
        raise NotImplementedError


class VerdictPanel(Panel):
    title = "Verdicts"

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent, theme)
        self.rates = SeriesPlot(self.add_plot(0, 0), "Verdicts (packets/s)", " pps", theme, marker_labels=True)
        self.log_box = QCheckBox("log y")
        self.log_box.toggled.connect(self.set_log)
        self.cpu_box = QCheckBox("per CPU")
        self.cpu_box.toggled.connect(self.set_per_cpu)
        self.cpu_verdict = QComboBox()
        self.cpu_verdict.addItems(["all verdicts", *ACTIONS])
        self.cpu_verdict.currentIndexChanged.connect(self.invalidate)
        self.cpu_verdict.setEnabled(False)
        self.cursor_box = QCheckBox("cursors")
        self.cursor_box.setToolTip("Two cursors on the time axis: time, frames and rate between them")
        self.cursor_box.toggled.connect(self.set_cursors)
        for w in (self.log_box, self.cpu_box, self.cpu_verdict, self.cursor_box):
            self.controls.addWidget(w)
        self.cursor_text = Summary()
        self.controls.addWidget(self.cursor_text, 1)
        self.cpu: SeriesPlot | None = None
        self.cursors: list[pg.InfiniteLine] = []
        self._view: View | None = None

    def set_log(self, on: bool) -> None:
        self.rates.plot.setLogMode(False, on)
        if self.cpu:
            self.cpu.plot.setLogMode(False, on)

    def set_per_cpu(self, on: bool) -> None:
        self.cpu_verdict.setEnabled(on)
        if on and self.cpu is None:
            self.cpu = SeriesPlot(self.add_plot(1, 0, compact=(0, 1)), "Per CPU (packets/s)", " pps", self.theme)
            self.cpu.plot.setXLink(self.rates.plot)
            self.cpu.plot.setLogMode(False, self.log_box.isChecked())
            self.resizeEvent(None)  # two rows: one row if the panel is short
        elif not on and self.cpu is not None:
            self.remove_plot(self.cpu.plot)
            self.cpu = None
        self.invalidate()

    # -- cursors -----------------------------------------------------------------------------
    def set_cursors(self, on: bool) -> None:
        """Two draggable cursors in the visible window (at 1/3 and 2/3), with the deltas between."""
        for c in self.cursors:
            self.rates.plot.removeItem(c)
        self.cursors = []
        if on:
            (x0, x1), _ = self.rates.plot.vb.viewRange()
            for i, (frac, name) in enumerate(((1 / 3, "C1"), (2 / 3, "C2"))):
                c = pg.InfiniteLine(pos=x0 + frac * (x1 - x0), angle=90, movable=True,
                                    pen=pg.mkPen(self.theme.foreground, width=1),
                                    hoverPen=pg.mkPen(self.theme.series[3], width=2),
                                    label=name, labelOpts={"position": 0.05, "color": self.theme.foreground})
                c.setZValue(90)
                c.sigPositionChanged.connect(self._cursor_moved)
                self.rates.plot.addItem(c, ignoreBounds=True)
                self.cursors.append(c)
        self._cursor_moved()

    def set_cursor_times(self, a: float, b: float) -> None:
        if not self.cursors:
            self.cursor_box.setChecked(True)
        self.cursors[0].setValue(a)
        self.cursors[1].setValue(b)

    def cursor_deltas(self) -> dict | None:
        """Between the cursors (a < t <= b): seconds, samples, frames per verdict and their rates,
        from the history's counts (exact: sums of counter deltas, not of rates)."""
        if len(self.cursors) != 2 or self._view is None:
            return None
        a, b = sorted(float(c.value()) for c in self.cursors)
        h = self._view.h
        t = h.t[h.start:h.end]
        i0, i1 = np.searchsorted(t, a, side="right"), np.searchsorted(t, b, side="right")
        counts = h.actions[h.start + i0:h.start + i1].sum(axis=0)
        frames = {name: int(round(counts[k])) for k, name in enumerate(ACTIONS)}
        frames["total"] = int(round(counts.sum()))
        dt = b - a
        return {"a": a, "b": b, "dt": dt, "samples": int(i1 - i0), "frames": frames,
                "rates": {k: (v / dt if dt > 0 else float("nan")) for k, v in frames.items()}}

    def _cursor_moved(self, *_) -> None:
        d = self.cursor_deltas()
        if d is None:
            self.cursor_text.setText("")
            return
        busy = [k for k in (*ACTIONS, "total") if d["frames"][k]] or ["total"]
        self.cursor_text.setText(
            f"C1 {d['a']:.3f} s  C2 {d['b']:.3f} s  Δt {d['dt']:.3f} s ({d['samples']} samples): "
            + ", ".join(f"{k} {d['frames'][k]:,} frames ({si.si(d['rates'][k], 'pps')})" for k in busy))

    def draw(self, v: View) -> None:
        self._view = v
        n = v.smooth
        t, rates = v.series(("verdicts", n), per_second(verdict_counts, n))
        for a, name in enumerate(ACTIONS):
            self.rates.set(name, t, rates[:, a], self.theme.verdicts[name])
        self.rates.set("total", t, rates[:, -1], self.theme.verdicts["total"])
        self.rates.finish(v)
        if self.cpu is not None:
            sel = self.cpu_verdict.currentIndex() - 1
            t, r = v.series(("cpu", sel, n), per_second(lambda h, sl: cpu_counts(h, sl, sel), n))
            names = set()
            for c in range(r.shape[1]):
                names.add(f"cpu{c}")
                self.cpu.set(f"cpu{c}", t, r[:, c], self.theme.color(c))
            self.cpu.hide_except(names)
            self.cpu.finish(v)
        if self.cursors:
            self._cursor_moved()


def verdict_counts(h: History, sl: slice) -> np.ndarray:
    """Rows x 6: frames per verdict (ACTIONS order), then their total."""
    counts = h.actions[sl]
    return np.concatenate([counts, counts.sum(axis=1, keepdims=True)], axis=1)


def verdict_rates(h: History, sl: slice) -> np.ndarray:
    """Rows x 6: packets/s per verdict (ACTIONS order), then their total."""
    return rate(h, sl, verdict_counts(h, sl))


def cpu_counts(h: History, sl: slice, verdict: int) -> np.ndarray:
    per_cpu = h.cpu_actions[sl]  # rows x cpu x action
    return per_cpu.sum(axis=2) if verdict < 0 else per_cpu[:, :, verdict]


def cpu_rates(h: History, sl: slice, verdict: int) -> np.ndarray:
    """Rows x CPUs: packets/s of one verdict (index into ACTIONS), or of all (-1), per CPU."""
    return rate(h, sl, cpu_counts(h, sl, verdict))


def target_counts(h: History, sl: slice) -> np.ndarray:
    return h.targets.data[sl, :len(h.targets.names)]


def target_rates(h: History, sl: slice) -> np.ndarray:
    return rate(h, sl, target_counts(h, sl))


class FanoutPanel(Panel):
    title = "Redirect fan-out"

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent, theme)
        self.rates = SeriesPlot(self.add_plot(0, 0), "Redirects per target (packets/s)", " pps", theme)
        self.share_plot = self.add_plot(0, 1, si_axis=False)
        style_plot(self.share_plot, "Share in window (%)", theme)
        self.share_plot.setMouseEnabled(x=False, y=False)
        self.share_plot.setYRange(0, 100, padding=0.02)
        self.glw.ci.layout.setColumnStretchFactor(0, 3)
        self.glw.ci.layout.setColumnStretchFactor(1, 1)
        self.share = pg.BarGraphItem(x=[], height=[], width=0.7, brush=theme.color(0), pen=pg.mkPen((0, 0, 0, 0), width=1))
        self.share_plot.addItem(self.share)
        self.share_labels: list[str] = []
        self.share_hover = Hover(self.share_plot, " %", self.share_labels, theme)
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)

    def draw(self, v: View) -> None:
        names = list(v.h.targets.names)
        n = v.smooth
        t, rates = v.series(("targets", n), per_second(target_counts, n))
        for i, name in enumerate(names):
            self.rates.set(name, t, rates[:, i], self.theme.color(i))
        self.rates.hide_except(set(names))
        self.rates.finish(v)
        totals = v.total(("targets",), target_counts)
        total = totals.sum()
        share = totals / total * 100 if total > 0 else np.zeros(len(names))
        if self.share_labels != names:
            self.share_labels[:] = names
            self.share_plot.getAxis("bottom").setTicks([list(enumerate(names))])
            self.share_plot.setXRange(-0.5, max(len(names), 1) - 0.5, padding=0)
        self.share.setOpts(x=np.arange(len(names)), height=share,
                           brushes=[self.theme.color(i) for i in range(len(names))])
        self.summary.setText("  ".join(f"{n}: {int(c):,}" for n, c in zip(names, totals))
                             + (f"   total {int(total):,} frames in window" if names else "no redirects"))


class FlushPanel(Panel):
    title = "Flush batches"
    ALL = "all targets"

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent, theme)
        self.hist_plot = self.add_plot(0, 0)
        style_plot(self.hist_plot, "Flush sizes in window (flushes)", theme)
        set_label(self.hist_plot, "bottom", f"frames per flush ({BULK_SIZE} = devmap bulk size)", theme)
        self.hist_plot.setMouseEnabled(x=False, y=False)
        self.hist_plot.setXRange(-0.8, FLUSH_BINS - 0.2, padding=0)  # room for the "16" under the last bar
        self.hist_plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(0, FLUSH_BINS, 2)]])
        self.hist = pg.BarGraphItem(x=np.arange(FLUSH_BINS), height=np.zeros(FLUSH_BINS), width=0.8,
                                    brush=theme.color(1), pen=pg.mkPen((0, 0, 0, 0), width=1))
        self.hist_plot.addItem(self.hist)
        self.hist_hover = Hover(self.hist_plot, " flushes",
                                [f"size {i}" + (" (full bulk queue)" if i == BULK_SIZE else "") for i in range(FLUSH_BINS)],
                                theme)
        self.mean = SeriesPlot(self.add_plot(0, 1), "Mean flush size (frames)", " frames", theme)
        self.mean.plot.addItem(pg.InfiniteLine(
            pos=BULK_SIZE, angle=0, movable=False, pen=pg.mkPen(theme.muted, width=1, style=Qt.PenStyle.DashLine),
            label=f"bulk size {BULK_SIZE}", labelOpts={"position": 0.02, "color": theme.muted, "anchors": [(0, 0), (0, 0)]}))
        self.heat_plot = self.add_plot(1, 0, colspan=2, compact=(0, 2), si_axis=False)
        style_plot(self.heat_plot, "Flushes: time × frames per flush", theme)
        set_label(self.heat_plot, "bottom", TIME_LABEL, theme)
        self.heat_plot.getAxis("left").setTicks([[(i, f"{i} bulk" if i == BULK_SIZE else str(i))
                                                  for i in range(0, FLUSH_BINS, 4)]])
        self.heat_plot.setMouseEnabled(x=False, y=False)
        self.heat_plot.setYRange(-0.5, FLUSH_BINS - 0.5, padding=0)
        self.heat_plot.disableAutoRange(axis="x")
        self.heat = pg.ImageItem(axisOrder="col-major")
        cmap = (pg.colormap.get(theme.heatmap) if isinstance(theme.heatmap, str) else
                pg.ColorMap(np.linspace(0, 1, len(theme.heatmap)), [pg.mkColor(c) for c in theme.heatmap]))
        self.heat.setColorMap(cmap)
        self.heat_plot.addItem(self.heat)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=cmap, interactive=False, width=10,
                                        colorMapMenu=False)
        self.colorbar.setImageItem(self.heat, insert_in=self.heat_plot)
        self.colorbar.axis.setPen(pg.mkPen(theme.muted))
        self.colorbar.axis.setTextPen(pg.mkPen(theme.foreground))
        self.colorbar.axis.setLabel("flushes", **{"color": theme.foreground, "font-size": "8pt"})
        self.colorbar.axis.tickStrings = lambda values, scale, spacing: [si.tick(v * scale, spacing * scale)
                                                                         for v in values]
        self._heat_x: tuple[float, float] | None = None
        self._hist_top: float | None = None
        self._heat_top: float | None = None
        self.target = self.choice_box(self.ALL, "Flushes of all devmap targets together, or of one target's bulk queue")
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)

    def draw(self, v: View) -> None:
        set_choices(self.target, self.ALL, v.h.flush_by_target.names)
        target = None if self.target.currentIndex() <= 0 else self.target.currentText()
        counts = lambda h, sl: flush_counts(h, sl, target)  # noqa: E731
        hist = v.total(("flush", target), counts)  # flushes of each size in the window
        self.hist.setOpts(height=hist)
        top = nice_ceiling(float(hist.max()), self._hist_top)
        if top != self._hist_top:
            self._hist_top = top
            self.hist_plot.setYRange(0, top, padding=0.02)
        n = v.smooth
        frames = lambda h, sl: flush_counts(h, sl, target) @ np.arange(FLUSH_BINS)  # noqa: E731
        flushes = lambda h, sl: flush_counts(h, sl, target).sum(axis=1)  # noqa: E731
        self.mean.set("mean", *v.series(("flush mean", target, n), ratio(frames, flushes, n)), self.theme.color(1))
        self.mean.finish(v)
        if self._heat_x != (v.t0, v.t1):
            self._heat_x = (v.t0, v.t1)
            self.heat_plot.setXRange(v.t0, v.t1, padding=0)
        if v.n:
            image, x0, width = v.columns(("flush", target), counts, HEATMAP_MAX_COLUMNS)
            top = max(float(image.max()), 1.0)
            self.heat.setImage(image, autoLevels=False, levels=(0, top))
            if top != self._heat_top:
                self._heat_top = top
                self.colorbar.setLevels((0, top))
            self.heat.setRect(QRectF(x0, -0.5, width, FLUSH_BINS))
            self.heat.show()
        else:
            self.heat.hide()
        total = hist.sum()
        frames_n = float(hist @ np.arange(FLUSH_BINS))
        self.summary.setText(f"{int(total):,} flushes, {int(frames_n):,} frames in window"
                             + (f", mean {frames_n / total:.2f} (bulk size {BULK_SIZE})" if total else ""))


def flush_counts(h: History, sl: slice, target: str | None = None) -> np.ndarray:
    """Rows x 17: devmap flushes of each size, of all targets (None) or of one."""
    if target is None:
        return h.flush[sl]
    return h.flush_by_target.table(h.base + sl.start, h.base + sl.stop, target)


def flush_mean(h: History, sl: slice, target: str | None = None) -> np.ndarray:
    """Mean frames per flush of each row; NaN for rows without flushes."""
    flush = flush_counts(h, sl, target)
    nflush = flush.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(nflush > 0, (flush @ np.arange(FLUSH_BINS)) / nflush, np.nan)


class ErrorsPanel(Panel):
    title = "Errors"

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent, theme)
        self.rates = SeriesPlot(self.add_plot(0, 0), "Errors and drops (per second)", " /s", theme)
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)
        self._colors: dict[str, int] = {}  # kind -> palette index, stable as kinds appear

    @staticmethod
    def kinds(h: History) -> list[tuple[str, Keyed | None, int]]:
        """(name, column group, column) of every error kind seen in the session (None, -1: cpumap drops)."""
        out: list[tuple[str, Keyed | None, int]] = []
        for prefix, k in (("exception", h.exceptions), ("redirect error", h.redirect_errors),
                          ("devmap drops", h.devmap_drops)):
            out.extend((f"{prefix} {name}", k, i) for i, name in enumerate(k.names) if k.seen[i])
        if h.has_cpumap_drops:
            out.append(("cpumap drops", None, -1))
        return out

    def series(self, v: View) -> list[tuple[str, np.ndarray]]:
        """(name, counts per sample in window) for every error kind seen in the session."""
        return [(name, k.data[v.sl, i] if k is not None else v.h.cpumap_drops[v.sl])
                for name, k, i in self.kinds(v.h)]

    def draw(self, v: View) -> None:
        kinds = self.kinds(v.h)
        names = tuple(n for n, _, _ in kinds)

        def counts(h: History, sl: slice) -> np.ndarray:
            return np.stack([k.data[sl, i] if k is not None else h.cpumap_drops[sl] for _, k, i in kinds], axis=1)

        totals = []
        if kinds:
            n = v.smooth
            t, rates = v.series(("errors", names, n), per_second(counts, n))
            for i, name in enumerate(names):
                c = self._colors.setdefault(name, len(self._colors) + 5)  # vermillion first: errors
                self.rates.set(name, t, rates[:, i], self.theme.color(c))
            totals = v.total(("errors", names), counts)
        self.rates.hide_except(set(names))
        self.rates.finish(v)
        self.summary.setText("in window: " + ("; ".join(f"{n}: {int(c):,}" for n, c in zip(names, totals))
                                               if kinds else "no errors"))


def session_devices(meta: dict, names: list[str]) -> list[str]:
    """The devices of the session among NAPI device names: its interface, its redirect targets and
    their veth peers (the lab names a peer <end>-p), or the list the session metadata names.
    napi:napi_poll traces every device of the machine: other users' devices are not the session's."""
    listed = meta.get("napi_devices") or meta.get("devices")
    if isinstance(listed, list):
        mine = {str(d) for d in listed}
    else:
        ends = {str(meta.get("iface") or "")} | {str(t) for t in (meta.get("targets") or [])}
        ends.discard("")
        mine = ends | {f"{e}-p" for e in ends}
    return [n for n in names if n in mine]


class NapiPanel(Panel):
    title = "NAPI and run time"
    SESSION = "session devices"
    ALL = "all devices"

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent, theme)
        self.work = SeriesPlot(self.add_plot(0, 0), "NAPI work per poll (packets)", " packets", theme)
        # side by side: the panel is usually a short strip at the bottom of the window
        self.runtime = SeriesPlot(self.add_plot(0, 1), "Program run time per packet (ns)", " ns", theme)
        self.runtime.plot.setXLink(self.work.plot)
        # napi_poll fires for every device's NAPI: in a lab the target peers poll too, in a VM eth0
        self.device = self.choice_box(self.SESSION, "NAPI instances of the session's devices (default), of all "
                                      "devices of the machine, or of one (napi:napi_poll traces every device)")
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)

    def selection(self, h: History, meta: dict) -> tuple[list[str] | str | None, list[str]]:
        """(devices to sum: a list, one name, or None for all; the session's devices)."""
        names = h.napi_dev["polls"].names
        mine = session_devices(meta, names)
        i = self.device.currentIndex()
        if i <= 0:
            return mine, mine
        if i == 1:
            return None, mine
        return self.device.currentText(), mine

    def draw(self, v: View) -> None:
        h = v.h
        names = h.napi_dev["polls"].names
        set_choices(self.device, [self.SESSION, self.ALL], names)
        dev, mine = self.selection(h, v.meta)
        key = dev if not isinstance(dev, list) else tuple(dev)
        n = v.smooth
        pair = lambda h, sl: napi_counts(h, sl, dev)  # noqa: E731
        t, y = v.series(("napi", key, n), ratio(lambda h, sl: pair(h, sl)[:, 1:3], lambda h, sl: pair(h, sl)[:, 0], n))
        self.work.set("work/poll", t, y[:, 0], self.theme.verdicts["PASS"])
        self.work.set("budget", t, y[:, 1], self.theme.verdicts["DROP"])
        self.runtime.set("ns/packet", *v.series(("run", n), ratio(lambda h, sl: h.run[sl][:, 1],
                                                                  lambda h, sl: h.run[sl][:, 0], n)),
                         self.theme.color(0))
        self.work.finish(v)
        self.runtime.finish(v)
        notes = []
        shown = names if dev is None else ([dev] if isinstance(dev, str) else dev)
        if shown:
            polls, work = v.total(("napi_totals", tuple(shown)), lambda h, sl: napi_device_counts(h, sl, shown))
            notes.append("in window: " + ", ".join(f"{n} {int(p):,} polls {int(w):,} packets"
                                                   for n, p, w in zip(shown, polls, work)))
        others = len(names) - len(mine)
        if isinstance(dev, list) and others:
            notes.append(f"{others} other device{'s' * (others > 1)} not shown (choose '{self.ALL}')")
        if not h.has_napi:
            notes.append("no NAPI data in this session (napi:napi_poll not traced)")
        elif isinstance(dev, list) and not mine:
            notes.append("no NAPI polls of the session's devices")
        if not h.has_run:
            notes.append("no run-time data (attach with run_time on)")
        self.summary.setText("; ".join(notes))


def napi_counts(h: History, sl: slice, dev: str | list[str] | None = None) -> np.ndarray:
    """Rows x NAPI_FIELDS: of all devices together (None), of a list of devices, or of one
    device (zeros if never seen)."""
    if dev is None:
        return h.napi[sl]
    out = np.zeros((sl.stop - sl.start, len(NAPI_FIELDS)))
    for d in ([dev] if isinstance(dev, str) else dev):
        for j, f in enumerate(NAPI_FIELDS):
            k = h.napi_dev[f]
            if d in k.index:
                out[:, j] += k.data[sl, k.index[d]]
    return out


def napi_device_counts(h: History, sl: slice, names: list[str]) -> np.ndarray:
    """Rows x 2 x devices: polls, then work, per device (in `names` order)."""
    return np.stack([napi_counts(h, sl, n)[:, :2] for n in names], axis=2)


def napi_per_poll(h: History, sl: slice, dev: str | list[str] | None = None) -> np.ndarray:
    """Rows x 2: work per poll and budget per poll (NaN without polls), of all devices or some."""
    napi = napi_counts(h, sl, dev)
    polls = np.where(napi[:, 0] > 0, napi[:, 0], np.nan)
    return napi[:, 1:3] / polls[:, None]


def run_ns(h: History, sl: slice) -> np.ndarray:
    """Program run time per packet, ns (NaN without runs)."""
    run = h.run[sl]
    return run[:, 1] / np.where(run[:, 0] > 0, run[:, 0], np.nan)


QUEUE_COUNTER = re.compile(r"rx_queue_(\d+)_xdp_(\w+)$")
QUEUE_KINDS = {"packets": "packets", "drops": "drops", "tx": "tx", "redirects": "redirects", "redirect": "redirects"}


def queue_columns(h: History) -> dict[str, dict[int, int]]:
    """kind (packets, drops, tx, redirects) -> RX queue -> driver column index."""
    out: dict[str, dict[int, int]] = {}
    for i, name in enumerate(h.driver.names):
        m = QUEUE_COUNTER.match(name)
        if m and m.group(2) in QUEUE_KINDS:
            out.setdefault(QUEUE_KINDS[m.group(2)], {})[int(m.group(1))] = i
    return out


class QueuesPanel(Panel):
    """Per RX queue: the driver's own rx_queue_N_xdp_* counters (ethtool -S), as rates."""

    title = "RX queues"

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent, theme)
        self.rates = SeriesPlot(self.add_plot(0, 0), "XDP per RX queue, driver counters (packets/s)", " pps", theme)
        self.kind = QComboBox()
        self.kind.addItems(["packets", "redirects", "tx", "drops"])
        self.kind.setToolTip("Which rx_queue_N_xdp_* counter of the driver (ethtool -S) to plot per queue")
        self.kind.currentIndexChanged.connect(self.invalidate)
        self.controls.addWidget(self.kind)
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)

    def draw(self, v: View) -> None:
        cols = queue_columns(v.h).get(self.kind.currentText(), {})
        queues = sorted(cols)
        idx = [cols[q] for q in queues]
        names = [f"rx{q}" for q in queues]
        counts = lambda h, sl: h.driver.data[sl][:, idx]  # noqa: E731
        if queues:
            n = v.smooth
            t, r = v.series(("queues", tuple(idx), n), per_second(counts, n))
            for i, name in enumerate(names):
                self.rates.set(name, t, r[:, i], self.theme.color(i))
            totals = v.total(("queues", tuple(idx)), counts)
            self.summary.setText(f"{self.kind.currentText()} in window: "
                                 + ", ".join(f"{n} {int(c):,}" for n, c in zip(names, totals)))
        else:
            driver = v.meta.get("driver") or "the driver"
            self.summary.setText(f"no rx_queue_N_xdp_{self.kind.currentText()} counters of {driver} in this session")
        self.rates.hide_except(set(names))
        self.rates.finish(v)


PANELS = (VerdictPanel, FanoutPanel, FlushPanel, ErrorsPanel, NapiPanel, QueuesPanel)
