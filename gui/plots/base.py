"""What every plot panel shares: the Panel base (redraw only when its view or state changed, take
turns on the UI timer, one-row layout when short), SeriesPlot (thin curves, legend under the plot,
dashes for overlapping series, markers, the A-B range), the hover readout, SI axes.

Readability rules (issue 12): a colour-blind-safe palette, series that overlap get distinct
dashes, legends sit under the plot (never over data), axes and hover use SI prefixes, the hover
readout follows the mouse and leaves with it.

Each panel's options are a small frozen dataclass (Panel.State): the widgets write it, draw()
reads it, and an export draws a fresh copy of the panel with the same state.
"""
from __future__ import annotations

import dataclasses
import html
import re
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
import shiboken6
from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QSizePolicy, QVBoxLayout, QWidget

from backend.data.sample import FLUSH_BINS

from .. import si
from .axes import TimeAxis
from ..palette import DARK, DASHES, Theme, dash_glyph, dash_style
from .view import View

pg.setConfigOptions(antialias=False, background=DARK.background, foreground=DARK.foreground)

BULK_SIZE = FLUSH_BINS - 1  # DEV_MAP_BULK_SIZE: a devmap bulk queue flushes at 16 frames
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


@dataclass(frozen=True)
class NoOptions:
    """The state of a panel without options."""


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
        # no automatic SI prefix in the label ("(x0.001)"): the ticks carry prefixes where needed; and
        # pyqtgraph re-sets the label's HTML on every range change while it is on
        ax.enableAutoSIPrefix(False)
    plot.getAxis("left").setWidth(52)  # room for '1.5 M' / '999 k': the axes of stacked plots line up


def set_label(plot: pg.PlotItem, side: str, text: str, theme: Theme) -> None:
    plot.setLabel(side, text, **{"color": theme.foreground, "font-size": "8pt"})


def overlap_count(a: np.ndarray, earlier: list[np.ndarray], tol: float) -> int:
    """How many of `earlier` overlap a, in one numpy pass (a plot of 8 series asks 28 pairs on every
    redraw). Two series drawn over the same x overlap (look like one line) when, where either is
    clearly off the baseline (above 4 tol) at 3 points or more, they are within tol of each other
    at most of them. Near the baseline every small series meets every other: that is not one line
    hiding another."""
    same = [b for b in earlier if b.shape == a.shape]
    if not same or not len(a):
        return 0
    b = np.stack(same)
    ok = np.isfinite(a) & np.isfinite(b)
    ok &= np.maximum(np.abs(np.where(ok, a, 0)), np.abs(np.where(ok, b, 0))) > 4 * tol
    n = ok.sum(axis=1)
    with np.errstate(invalid="ignore"):
        close = (np.abs(a - b) <= tol) & ok
    share = close.sum(axis=1) / np.maximum(n, 1)
    return int(np.count_nonzero((n >= 3) & (share >= OVERLAP_SHARE)))


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
            if not i or self.ranks.get(n, 0) >= len(DASHES) - 1:  # nothing earlier, or the last dash already
                continue
            rank = min(overlap_count(ys[n], [ys[m] for m in active[:i]], tol), len(DASHES) - 1)
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


def set_choices(box: QComboBox, everything: str | list[str], names: list[str], current: str = "") -> int:
    """A panel's "all, or one of these" box: offer what the history holds now (names come and go
    with a replay's window), selecting `current` by name (the first entry when it is not there).
    `everything` may be several entries (e.g. "session devices", "all devices") before the names.
    Returns the selected index (0: the first special entry)."""
    special = [everything] if isinstance(everything, str) else list(everything)
    items = [*special, *names]
    if [box.itemText(i) for i in range(box.count())] != items:
        box.blockSignals(True)
        box.clear()
        box.addItems(items)
        box.blockSignals(False)
    i = max(box.findText(current), 0) if current else 0
    if box.currentIndex() != i:
        box.blockSignals(True)
        box.setCurrentIndex(i)
        box.blockSignals(False)
    return i


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
    State: type = NoOptions  # the panel's options: a small frozen dataclass

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
        self.st = self.State()
        _panels.add(self)

    # -- options -------------------------------------------------------------------------------
    def state(self) -> Any:
        """The panel's options (what an export copies onto a fresh panel)."""
        return self.st

    def set_state(self, st: Any) -> None:
        """Take these options: the widgets show them, the next frame draws with them."""
        self.st = st
        self.show_state()
        self.invalidate()

    def update_state(self, **changes: Any) -> None:
        """One option changed (from a widget): a new state, redraw."""
        new = dataclasses.replace(self.st, **changes)
        if new != self.st:
            self.st = new
            self.invalidate()

    def show_state(self) -> None:
        """Set the option widgets from self.st (signals blocked: they only echo it)."""

    # -- plots and their arrangement ---------------------------------------------------------
    def add_plot(self, row: int, col: int, rowspan: int = 1, colspan: int = 1,
                 compact: tuple[int, int] | None = None, si_axis: bool = True) -> pg.PlotItem:
        """A plot at (row, col) in the normal layout and at `compact` (row, col) in the one-row
        layout used when the panel is short."""
        axes = {"left": SIAxis("left")} if si_axis else {}
        plot = pg.PlotItem(axisItems={**axes, "bottom": TimeAxis()})  # pyqtgraph's axis, laid out faster
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

    def choice_box(self, everything: str, tip: str, option: str) -> QComboBox:
        """An "all, or one of these" box in the controls (its items: set_choices); a choice sets the
        state's `option` to the chosen text."""
        box = QComboBox()
        box.setToolTip(tip)
        box.addItem(everything)
        box.currentIndexChanged.connect(lambda _: self.update_state(**{option: box.currentText()}))
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


