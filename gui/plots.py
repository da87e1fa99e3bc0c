"""The plot panels. They read model columns on the UI timer (never per sample) and skip the
work when the visible window and the data have not changed since their last draw.

All x values are seconds since the session start (sample.t). Rates are count deltas / dt.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from backend.sample import ACTIONS, FLUSH_BINS

from .model import NAPI_FIELDS, AppModel, History, Keyed

pg.setConfigOptions(antialias=False, background="#1e1f22", foreground="#c8c8c8")

VERDICT_COLORS = {"ABORTED": "#e04848", "DROP": "#f0a030", "PASS": "#50c060",
                  "TX": "#4090f0", "REDIRECT": "#c070f0", "total": "#e8e8e8"}
HEATMAP_MAX_COLUMNS = 600  # heatmap time bins; beyond this, samples are summed per column
MAX_POINTS = 1000          # min/max pairs per curve; more samples than this are peak-decimated
# UI timer frames (View.throttle): a panel redraws at most once per REDRAW_MIN_S, or per pixel of
# its time axis when that is longer (a 1 h window moves 1 px per ~3 s: redrawing at 20 Hz shows
# nothing new), but at least every REDRAW_MAX_S; and one panel per frame, the one that has waited
# longest, so panels take turns instead of all redrawing (and repainting) in the same tick.
REDRAW_MIN_S = 0.1
REDRAW_MAX_S = 0.5
_panels: "weakref.WeakSet[Panel]" = weakref.WeakSet()


def color(i: int) -> pg.QtGui.QColor:
    return pg.intColor(i, hues=9, values=1, maxValue=255, minValue=200, sat=200)


def _pow2(x: float) -> int:
    """Smallest power of two >= x (>= 1): bin widths from a few sizes, so caches are reused."""
    return 1 << max(0, int(np.ceil(np.log2(max(float(x), 1.0)))))


def rate(h: History, sl: slice, counts: np.ndarray) -> np.ndarray:
    """counts (rows of sl, any trailing shape) / dt of each row; NaN where dt is not positive."""
    dt = h.dt[sl]
    dt = np.where(dt > 0, dt, np.nan)
    return counts / (dt if counts.ndim == 1 else dt.reshape((-1,) + (1,) * (counts.ndim - 1)))


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


def make_view(model: AppModel, length: float, throttle: bool = False) -> View:
    """The window of `length` seconds ending at the model's view end. throttle: this is a UI
    timer frame, panels may defer redrawing (Panel.refresh); exports and forced frames draw."""
    end = model.view_end()
    h = model.history
    sl = h.window(end, length)
    # early in a session show [0, length] rather than negative time before the session existed
    t0, t1 = (end - length, end) if end >= length else (0.0, float(length))
    # history only appends: its serial and the absolute rows (with the window's end) fix the content
    return View(h, sl, t0, t1, (h.serial, h.base + sl.start, h.base + sl.stop, end, length), throttle)


class Hover:
    """Crosshair readout of the exact values under the mouse: nearest sample of every curve,
    or the bar under the cursor."""

    def __init__(self, plot: pg.PlotItem, unit: str = "", bar_labels: list[str] | None = None) -> None:
        self.plot = plot
        self.unit = unit
        self.bar_labels = bar_labels
        self.line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888", width=1))
        self.text = pg.TextItem(color="#ffffff", fill=pg.mkBrush(20, 20, 20, 200), anchor=(0, 0))
        for item in (self.line, self.text):
            item.setZValue(100)
            item.hide()
            plot.addItem(item, ignoreBounds=True)
        plot.scene().sigMouseMoved.connect(self._moved)

    def _moved(self, pos) -> None:
        vb = self.plot.vb
        if not vb.sceneBoundingRect().contains(pos):
            self.line.hide()
            self.text.hide()
            return
        p = vb.mapSceneToView(pos)
        self.show_at(p.x())

    def readout(self, x: float) -> str:
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
                lines.append(f"{item.name() or '?'}: {_fmt(ys[i])}{self.unit}")
            elif isinstance(item, pg.BarGraphItem) and item.opts.get("height") is not None:
                xs, hs = np.asarray(item.opts["x"]), np.asarray(item.opts["height"])
                if len(xs) == 0:
                    continue
                i = int(np.argmin(np.abs(xs - x)))
                label = self.bar_labels[i] if self.bar_labels and i < len(self.bar_labels) else f"{xs[i]:g}"
                lines.append(f"{label}: {_fmt(hs[i])}{self.unit}")
        return "\n".join(lines)

    def show_at(self, x: float) -> str:
        text = self.readout(x)
        if not text:
            return ""
        (x0, _), (_, y1) = self.plot.vb.viewRange()
        self.line.setPos(x)
        self.text.setText(text)
        self.text.setPos(x, y1)
        self.line.show()
        self.text.show()
        return text


def _fmt(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:,.3g}"


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


class SeriesPlot:
    """A time plot with one thin curve per named series, created on first use."""

    def __init__(self, plot: pg.PlotItem, title: str, unit: str = "") -> None:
        self.plot = plot
        plot.setTitle(title)
        # plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setLabel("bottom", "time since session start (s)")
        plot.setMouseEnabled(x=False, y=True)  # x follows the window; y may be zoomed
        plot.setAutoVisible(y=True)
        # top left: live data comes in at the right edge, which a legend there would cover; a dark,
        # slightly transparent box keeps it readable over the (older) curves under it
        self.legend = plot.addLegend(offset=(10, 10), labelTextSize="8pt", brush=pg.mkBrush(30, 31, 34, 210))
        self.curves: dict[str, pg.PlotDataItem] = {}
        # invisible, unnamed: keeps y = 0 inside the auto range so flat rates are not magnified noise
        self.baseline = plot.plot([0.0, 0.0], [0.0, 0.0], pen=pg.mkPen((0, 0, 0, 0), width=1))
        self.hover = Hover(plot, unit)
        self._xrange: tuple[float, float] | None = None
        self._ymax: dict[str, float] = {}     # largest value of each shown curve
        self._ceiling: float | None = None    # invisible top of the y auto range (nice_ceiling)

    def curve(self, name: str, pen_color) -> pg.PlotDataItem:
        c = self.curves.get(name)
        if c is None:
            # no pyqtgraph downsampling or clipping: View.series hands over <= ~2 points per pixel
            c = self.plot.plot(pen=pg.mkPen(pen_color, width=1), name=name, connect="finite")
            self.curves[name] = c
        return c

    def set(self, name: str, x: np.ndarray, y: np.ndarray, pen_color) -> None:
        c = self.curve(name, pen_color)
        c.setData(x, y)
        self._ymax[name] = float(np.fmax.reduce(y)) if len(y) else np.nan  # fmax: NaN gaps skipped
        if not c.isVisible():
            c.show()
            self.legend.addItem(c, name)

    def hide_except(self, names: set[str]) -> None:
        for name, c in self.curves.items():
            if name not in names and c.isVisible():
                self._ymax.pop(name, None)
                c.setData([], [])
                c.hide()
                self.legend.removeItem(c)

    def set_xrange(self, t0: float, t1: float) -> None:
        """The time window, at the end of a draw; also settles the y auto range: an invisible line
        from (t0, 0) to (t1, a round number above the data) keeps 0 in range (flat rates are not
        magnified noise) and makes the top of the axis change only in round steps."""
        ymax = max((v for v in self._ymax.values() if np.isfinite(v)), default=np.nan)
        ceiling = nice_ceiling(ymax, self._ceiling)
        if self._xrange != (t0, t1) or ceiling != self._ceiling:
            self._xrange, self._ceiling = (t0, t1), ceiling
            self.baseline.setData([t0, t1], [0.0, ceiling])
            self.plot.setXRange(t0, max(t1, t0 + 1e-6), padding=0)


def set_choices(box: QComboBox, everything: str, names: list[str]) -> None:
    """A panel's "all, or one of these" box: offer what the history holds now (names come and go
    with a replay's window), keeping the choice by name."""
    if [box.itemText(i) for i in range(1, box.count())] != names:
        current = box.currentText()
        box.blockSignals(True)
        box.clear()
        box.addItems([everything, *names])
        box.setCurrentIndex(max(box.findText(current), 0))
        box.blockSignals(False)


class Panel(QWidget):
    """Base: a layout of plots that redraws only when its view key or options change."""

    title = ""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.glw = pg.GraphicsLayoutWidget()
        self.controls = QHBoxLayout()
        self.controls.setContentsMargins(4, 2, 4, 0)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(self.controls)
        lay.addWidget(self.glw, 1)
        self._key: tuple | None = None
        self._drawn_at = -1e9
        _panels.add(self)

    def invalidate(self) -> None:
        self._key = None
        self._drawn_at = -1e9

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
                due = [p for p in _panels if p.window() is top and p._due(view, now)]
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

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rates = SeriesPlot(self.glw.addPlot(row=0, col=0), "Verdicts (packets/s)", " pps")
        self.log_box = QCheckBox("log y")
        self.log_box.toggled.connect(self.set_log)
        self.cpu_box = QCheckBox("per CPU")
        self.cpu_box.toggled.connect(self.set_per_cpu)
        self.cpu_verdict = QComboBox()
        self.cpu_verdict.addItems(["all verdicts", *ACTIONS])
        self.cpu_verdict.currentIndexChanged.connect(self.invalidate)
        self.cpu_verdict.setEnabled(False)
        for w in (self.log_box, self.cpu_box, self.cpu_verdict):
            self.controls.addWidget(w)
        self.controls.addStretch(1)
        self.cpu: SeriesPlot | None = None

    def set_log(self, on: bool) -> None:
        self.rates.plot.setLogMode(False, on)
        if self.cpu:
            self.cpu.plot.setLogMode(False, on)

    def set_per_cpu(self, on: bool) -> None:
        self.cpu_verdict.setEnabled(on)
        if on and self.cpu is None:
            self.cpu = SeriesPlot(self.glw.addPlot(row=1, col=0), "Per CPU (packets/s)", " pps")
            self.cpu.plot.setXLink(self.rates.plot)
            self.cpu.plot.setLogMode(False, self.log_box.isChecked())
        elif not on and self.cpu is not None:
            self.glw.removeItem(self.cpu.plot)
            self.cpu = None
        self.invalidate()

    def draw(self, v: View) -> None:
        t, rates = v.series(("verdicts",), verdict_rates)
        for a, name in enumerate(ACTIONS):
            self.rates.set(name, t, rates[:, a], VERDICT_COLORS[name])
        self.rates.set("total", t, rates[:, -1], VERDICT_COLORS["total"])
        self.rates.curves["total"].setZValue(-1)  # under the verdicts: one verdict alone equals the total
        self.rates.set_xrange(v.t0, v.t1)
        if self.cpu is not None:
            sel = self.cpu_verdict.currentIndex() - 1
            t, r = v.series(("cpu", sel), lambda h, sl: cpu_rates(h, sl, sel))
            names = set()
            for c in range(r.shape[1]):
                names.add(f"cpu{c}")
                self.cpu.set(f"cpu{c}", t, r[:, c], color(c))
            self.cpu.hide_except(names)
            self.cpu.set_xrange(v.t0, v.t1)


def verdict_rates(h: History, sl: slice) -> np.ndarray:
    """Rows x 6: packets/s per verdict (ACTIONS order), then their total."""
    counts = h.actions[sl]
    return rate(h, sl, np.concatenate([counts, counts.sum(axis=1, keepdims=True)], axis=1))


def cpu_rates(h: History, sl: slice, verdict: int) -> np.ndarray:
    """Rows x CPUs: packets/s of one verdict (index into ACTIONS), or of all (-1), per CPU."""
    per_cpu = h.cpu_actions[sl]  # rows x cpu x action
    return rate(h, sl, per_cpu.sum(axis=2) if verdict < 0 else per_cpu[:, :, verdict])


def target_counts(h: History, sl: slice) -> np.ndarray:
    return h.targets.data[sl, :len(h.targets.names)]


def target_rates(h: History, sl: slice) -> np.ndarray:
    return rate(h, sl, target_counts(h, sl))


class FanoutPanel(Panel):
    title = "Redirect fan-out"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rates = SeriesPlot(self.glw.addPlot(row=0, col=0), "Redirects per target (packets/s)", " pps")
        self.share_plot = self.glw.addPlot(row=0, col=1)
        self.share_plot.setTitle("Share in window (%)")
        self.share_plot.setMouseEnabled(x=False, y=False)
        self.share_plot.setYRange(0, 100, padding=0.02)
        self.glw.ci.layout.setColumnStretchFactor(0, 3)
        self.glw.ci.layout.setColumnStretchFactor(1, 1)
        self.share = pg.BarGraphItem(x=[], height=[], width=0.7, brush="#c070f0", pen=pg.mkPen((0, 0, 0, 0), width=1))
        self.share_plot.addItem(self.share)
        self.share_labels: list[str] = []
        self.share_hover = Hover(self.share_plot, " %", self.share_labels)
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)

    def draw(self, v: View) -> None:
        names = list(v.h.targets.names)
        t, rates = v.series(("targets",), target_rates)
        for i, name in enumerate(names):
            self.rates.set(name, t, rates[:, i], color(i))
        self.rates.hide_except(set(names))
        self.rates.set_xrange(v.t0, v.t1)
        totals = v.total(("targets",), target_counts)
        total = totals.sum()
        share = totals / total * 100 if total > 0 else np.zeros(len(names))
        if self.share_labels != names:
            self.share_labels[:] = names
            self.share_plot.getAxis("bottom").setTicks([list(enumerate(names))])
            self.share_plot.setXRange(-0.5, max(len(names), 1) - 0.5, padding=0)
        self.share.setOpts(x=np.arange(len(names)), height=share,
                           brushes=[color(i) for i in range(len(names))])
        self.summary.setText("  ".join(f"{n}: {int(c):,}" for n, c in zip(names, totals))
                             + (f"   total {int(total):,} frames in window" if names else "no redirects"))


class FlushPanel(Panel):
    title = "Flush batches"
    ALL = "all targets"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hist_plot = self.glw.addPlot(row=0, col=0)
        self.hist_plot.setTitle("Devmap flush sizes in window (flushes)")
        self.hist_plot.setLabel("bottom", "frames per flush")
        self.hist_plot.setMouseEnabled(x=False, y=False)
        self.hist_plot.setXRange(-0.5, FLUSH_BINS - 0.5, padding=0)
        self.hist = pg.BarGraphItem(x=np.arange(FLUSH_BINS), height=np.zeros(FLUSH_BINS), width=0.8,
                                    brush="#4090f0", pen=pg.mkPen((0, 0, 0, 0), width=1))
        self.hist_plot.addItem(self.hist)
        self.hist_hover = Hover(self.hist_plot, " flushes", [f"size {i}" for i in range(FLUSH_BINS)])
        self.mean = SeriesPlot(self.glw.addPlot(row=0, col=1), "Mean flush size (frames)")
        self.heat_plot = self.glw.addPlot(row=1, col=0, colspan=2)
        self.heat_plot.setTitle("Flushes: time x size")
        self.heat_plot.setLabel("left", "frames per flush")
        self.heat_plot.setLabel("bottom", "time since session start (s)")
        self.heat_plot.setMouseEnabled(x=False, y=False)
        self.heat_plot.setYRange(-0.5, FLUSH_BINS - 0.5, padding=0)
        self.heat_plot.disableAutoRange(axis="x")
        self.heat = pg.ImageItem(axisOrder="col-major")
        self.heat.setColorMap(pg.colormap.get("viridis"))
        self.heat_plot.addItem(self.heat)
        self._heat_x: tuple[float, float] | None = None
        self._hist_top: float | None = None
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
        self.mean.set("mean", *v.series(("flush mean", target), lambda h, sl: flush_mean(h, sl, target)), "#4090f0")
        self.mean.set_xrange(v.t0, v.t1)
        if self._heat_x != (v.t0, v.t1):
            self._heat_x = (v.t0, v.t1)
            self.heat_plot.setXRange(v.t0, v.t1, padding=0)
        if v.n:
            image, x0, width = v.columns(("flush", target), counts, HEATMAP_MAX_COLUMNS)
            self.heat.setImage(image, autoLevels=False, levels=(0, max(float(image.max()), 1.0)))
            self.heat.setRect(QRectF(x0, -0.5, width, FLUSH_BINS))
            self.heat.show()
        else:
            self.heat.hide()
        total = hist.sum()
        frames = float(hist @ np.arange(FLUSH_BINS))
        self.summary.setText(f"{int(total):,} flushes, {int(frames):,} frames in window"
                             + (f", mean {frames / total:.2f}" if total else ""))


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

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rates = SeriesPlot(self.glw.addPlot(row=0, col=0), "Errors and drops (per second)", " /s")
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)

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
            t, rates = v.series(("errors", names), lambda h, sl: rate(h, sl, counts(h, sl)))
            for i, name in enumerate(names):
                self.rates.set(name, t, rates[:, i], color(i))
            totals = v.total(("errors", names), counts)
        self.rates.hide_except(set(names))
        self.rates.set_xrange(v.t0, v.t1)
        self.summary.setText("in window: " + ("; ".join(f"{n}: {int(c):,}" for n, c in zip(names, totals))
                                               if kinds else "no errors"))


class NapiPanel(Panel):
    title = "NAPI and run time"
    ALL = "all devices"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.work = SeriesPlot(self.glw.addPlot(row=0, col=0), "NAPI work per poll (packets)")
        # side by side: the panel is usually a short strip at the bottom of the window
        self.runtime = SeriesPlot(self.glw.addPlot(row=0, col=1), "Program run time per packet (ns)", " ns")
        self.runtime.plot.setXLink(self.work.plot)
        # napi_poll fires for every device's NAPI: in a lab the target peers poll too, in a VM eth0
        self.device = self.choice_box(self.ALL, "NAPI instances of which device (napi:napi_poll traces every device)")
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)

    def draw(self, v: View) -> None:
        h = v.h
        set_choices(self.device, self.ALL, h.napi_dev["polls"].names)
        dev = None if self.device.currentIndex() <= 0 else self.device.currentText()
        t, y = v.series(("napi", dev), lambda h, sl: napi_per_poll(h, sl, dev))
        self.work.set("work/poll", t, y[:, 0], "#50c060")
        self.work.set("budget", t, y[:, 1], "#e04848")
        self.runtime.set("ns/packet", *v.series(("run",), run_ns), "#f0a030")
        self.work.set_xrange(v.t0, v.t1)
        self.runtime.set_xrange(v.t0, v.t1)
        notes = []
        names = h.napi_dev["polls"].names
        if names:
            polls, work = v.total(("napi_totals", len(names)), lambda h, sl: napi_device_counts(h, sl, names))
            notes.append("in window: " + ", ".join(f"{n} {int(p):,} polls {int(w):,} packets"
                                                   for n, p, w in zip(names, polls, work)))
        if not h.has_napi:
            notes.append("no NAPI data in this session (napi:napi_poll not traced)")
        if not h.has_run:
            notes.append("no run-time data (attach with run_time on)")
        self.summary.setText("; ".join(notes))


def napi_counts(h: History, sl: slice, dev: str | None = None) -> np.ndarray:
    """Rows x NAPI_FIELDS: of all devices together (None), or of one device (zeros if never seen)."""
    if dev is None:
        return h.napi[sl]
    out = np.zeros((sl.stop - sl.start, len(NAPI_FIELDS)))
    for j, f in enumerate(NAPI_FIELDS):
        k = h.napi_dev[f]
        if dev in k.index:
            out[:, j] = k.data[sl, k.index[dev]]
    return out


def napi_device_counts(h: History, sl: slice, names: list[str]) -> np.ndarray:
    """Rows x 2 x devices: polls, then work, per device (in `names` order)."""
    return np.stack([napi_counts(h, sl, n)[:, :2] for n in names], axis=2)


def napi_per_poll(h: History, sl: slice, dev: str | None = None) -> np.ndarray:
    """Rows x 2: work per poll and budget per poll (NaN without polls), of all devices or one."""
    napi = napi_counts(h, sl, dev)
    polls = np.where(napi[:, 0] > 0, napi[:, 0], np.nan)
    return napi[:, 1:3] / polls[:, None]


def run_ns(h: History, sl: slice) -> np.ndarray:
    """Program run time per packet, ns (NaN without runs)."""
    run = h.run[sl]
    return run[:, 1] / np.where(run[:, 0] > 0, run[:, 0], np.nan)


PANELS = (VerdictPanel, FanoutPanel, FlushPanel, ErrorsPanel, NapiPanel)
