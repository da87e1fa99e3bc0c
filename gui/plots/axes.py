"""The time axis of the time plots: pyqtgraph's bottom AxisItem with the same picture, made cheaper.

A live window moves the x range on every redraw, so the time axis is laid out again each time
(pyqtgraph's generateDrawSpecs: ~70 ticks at 1 h, each made of Python objects, and a text
measurement per label). TimeAxis gives the same specs (tests/test_time_axis.py compares them
with pyqtgraph's for many ranges and sizes): tick positions in one numpy pass, label sizes
measured once per string and font, the item's bounding rect taken once."""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt

_CENTER = Qt.AlignmentFlag.AlignCenter
_TEXT_FLAGS = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextDontClip


class TimeAxis(pg.AxisItem):
    """A bottom axis whose draw specs are pyqtgraph's, computed faster (see the module)."""

    def __init__(self, **kw) -> None:
        super().__init__("bottom", **kw)
        self._sizes: dict[tuple[str, str], tuple[float, float]] = {}  # (font key, text) -> label size

    def _plain(self) -> bool:
        """The case TimeAxis handles: ticks from tickValues, no grid, the axis line not cut at a tick."""
        return (self.orientation == "bottom" and self._tickLevels is None and self.grid is False
                and not self.logMode and not any(self.style["stopAxisAtTick"]))

    def _size(self, p, font: str, s: str) -> tuple[float, float]:
        got = self._sizes.get((font, s))
        if got is None:
            br = p.boundingRect(QRectF(0, 0, 100, 100), _CENTER, s)
            br.setHeight(br.height() * 0.8)  # as pyqtgraph: its boundingRect is a bit too large
            got = self._sizes[(font, s)] = (br.width(), br.height())
            if len(self._sizes) > 4096:      # labels of long sessions: keep the cache small
                self._sizes.clear()
        return got

    def tickValues(self, minVal: float, maxVal: float, size: float):
        """pyqtgraph's tick values (tickSpacing's levels, a finer level without the ticks of the
        coarser ones) with its np.isclose(rtol=0) written out: the same numbers, a third of the time."""
        if self.logMode:
            return super().tickValues(minVal, maxVal, size)
        lo, hi = sorted((minVal, maxVal))
        lo, hi = lo * self.scale, hi * self.scale
        ticks = []
        seen = np.array([])
        for spacing, offset in self.tickSpacing(lo, hi, size):
            start = (math.ceil((lo - offset) / spacing) * spacing) + offset
            num = int((hi - start) / spacing) + 1
            values = (np.arange(num) * spacing + start) / self.scale
            close = (np.abs(seen - values[:, np.newaxis]) <= spacing / self.scale * 0.01).any(axis=-1)
            values = values[~close]
            seen = np.concatenate([seen, values])
            ticks.append((spacing / self.scale, values.tolist()))
        return ticks

    def generateDrawSpecs(self, p):
        if not self._plain():
            return super().generateDrawSpecs(p)
        if self.style["tickFont"] is not None:
            p.setFont(self.style["tickFont"])
        bounds = self.mapRectFromParent(self.geometry())
        span = (bounds.topLeft() + pg.Point(-1.0, 1.0), bounds.topRight() + pg.Point(1.0, 1.0))
        tick_start = tick_stop = bounds.top()   # no grid: ticks start at the axis line
        points = list(map(self.mapToDevice, span))
        if None in points:
            return None
        length = pg.Point(points[1] - points[0]).length()
        if length == 0:
            return None
        levels = self.tickValues(self.range[0], self.range[1], length)
        dif = self.range[1] - self.range[0]
        if dif == 0:
            scale, offset = 1, 0
        else:
            scale = bounds.width() / dif
            offset = self.range[0] * scale
        x_lo, x_hi = sorted(x * scale - offset for x in self.range)

        positions: list[np.ndarray] = []   # per level: x of each tick, NaN where out of bounds
        tick_specs = []
        for i, (_, ticks) in enumerate(levels):
            tick_len = self.style["tickLength"] / ((i * 0.5) + 1.0)
            pen = self._level_pen(i, length, len(ticks))
            x = np.asarray(ticks, dtype=float) * scale - offset
            x = np.where((x < x_lo) | (x > x_hi), np.nan, x)
            positions.append(x)
            y2 = tick_stop + tick_len
            tick_specs += [(pen, QPointF(v, tick_start), QPointF(v, y2)) for v in x[~np.isnan(x)].tolist()]
        axis_spec = (self.pen(), span[0], span[1])
        if not self.style["showValues"]:
            return axis_spec, tick_specs, []

        font = p.font().key()
        text_offset = self.style["tickTextOffset"][1]
        br = self.boundingRect()
        text_w: list[float] = []   # every measured label so far, as pyqtgraph's textRects
        text_h: list[float] = []
        text_specs = []
        last_h = 0
        for i in range(min(len(levels), self.style["maxTextLevel"] + 1)):
            spacing, values = levels[i]
            strings = self.tickStrings(values, self.autoSIPrefixScale * self.scale, spacing)
            if len(strings) == 0:
                continue
            xs = positions[i]
            sizes = [None if np.isnan(x) else self._size(p, font, s) for x, s in zip(xs.tolist(), strings)]
            for s in sizes:
                if s is not None:
                    text_w.append(s[0])
                    text_h.append(s[1])
            size, size2 = (np.sum(text_w), np.max(text_h)) if text_w else (0, 0)
            if i > 0:   # always draw the top level; stop when the text gets crowded
                ratio = float(size) / length
                if any(len(text_specs) >= n and ratio >= limit for n, limit in self.style["textFillLimits"]):
                    break
            last_h = size2
            off = max(0, self.style["tickLength"]) + text_offset
            for x, s, sz in zip(xs.tolist(), strings, sizes):
                if sz is None:
                    continue
                w, h = sz
                rect = QRectF(x - w / 2.0, tick_stop + off, w, h)
                if br & rect != rect:   # as pyqtgraph: a label that does not fit is not drawn
                    continue
                text_specs.append((rect, _TEXT_FLAGS, s))
        self._updateMaxTextSize(last_h)
        return axis_spec, tick_specs, text_specs

    def _level_pen(self, i: int, length: float, n: int):
        """The tick pen of level i (pyqtgraph's: fainter for finer levels)."""
        alpha = self.style["tickAlpha"]
        if alpha is None:
            alpha = 255 / (i + 1)
        elif isinstance(alpha, float):
            alpha = min(255, max(0, int(round(alpha * 255))))
        pen = self.tickPen()
        if pen.brush().style() == Qt.BrushStyle.SolidPattern:
            pen = pg.QtGui.QPen(pen)
            color = pg.QtGui.QColor(pen.color())
            color.setAlpha(int(alpha))
            pen.setColor(color)
        return pen
