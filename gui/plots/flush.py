"""Flush batches: devmap flush sizes in the window (histogram), the mean flush size over time, and
a time x size heatmap; of all targets or of one target's bulk queue (a session that counted every
device of every namespace: of the session's targets by default)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QWidget

from backend.data.sample import FLUSH_BINS
from backend.data.series import flush_counts, ratio

from .. import si
from ..palette import DARK, Theme
from .base import (BULK_SIZE, TIME_LABEL, Hover, Panel, SeriesPlot, Summary, nice_ceiling, set_choices, set_label,
                   style_plot)
from .napi import all_devices, session_device_names
from .view import View

HEATMAP_MAX_COLUMNS = 600  # heatmap time bins; beyond this, samples are summed per column
ALL_TARGETS = "all targets"
SESSION_TARGETS = "session targets"   # offered when the session counted every device (all_devices)


@dataclass(frozen=True)
class FlushState:
    target: str = ""  # the flushes of the session's targets (""), of all devmap targets, or of one


def flush_sum(h, sl: slice, targets: list[str] | None) -> np.ndarray:
    """Rows x sizes: flushes of these targets together (None: all targets)."""
    if targets is None:
        return flush_counts(h, sl)
    out = np.zeros((sl.stop - sl.start, FLUSH_BINS))
    for t in targets:
        out += flush_counts(h, sl, t)
    return out


class FlushPanel(Panel):
    title = "Flush batches"
    State = FlushState

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
        self.target = self.choice_box(ALL_TARGETS, "Flushes of all devmap targets together, or of one target's bulk queue",
                                      "target")
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)

    def selection(self, v: View) -> tuple[list[str] | None, tuple | None]:
        """(targets to sum, None for all; a cache key). The data holds the session's devices only,
        unless the session counted every device of every namespace: then the session's targets
        come first (the default), all devices next, then each one (name@netns when foreign)."""
        names = list(v.h.flush_by_target.names)
        if all_devices(v.meta):
            i = set_choices(self.target, [SESSION_TARGETS, ALL_TARGETS], names, self.st.target)
            if i == 0:
                mine = session_device_names(v.meta, names)
                return mine, ("session", tuple(mine))
            return (None, None) if i == 1 else ([names[i - 2]], names[i - 2])
        i = set_choices(self.target, ALL_TARGETS, names, self.st.target)
        return (None, None) if i <= 0 else ([names[i - 1]], names[i - 1])

    def draw(self, v: View) -> None:
        targets, target = self.selection(v)
        if targets is not None and len(targets) == 1:
            target = targets[0]   # one target: its own cached series, as before
            counts = lambda h, sl: flush_counts(h, sl, target)  # noqa: E731
        else:
            counts = lambda h, sl: flush_sum(h, sl, targets)  # noqa: E731
        hist = v.total(("flush", target), counts)  # flushes of each size in the window
        self.hist.setOpts(height=hist)
        top = nice_ceiling(float(hist.max()), self._hist_top)
        if top != self._hist_top:
            self._hist_top = top
            self.hist_plot.setYRange(0, top, padding=0.02)
        n = v.smooth
        frames = lambda h, sl: counts(h, sl) @ np.arange(FLUSH_BINS)  # noqa: E731
        flushes = lambda h, sl: counts(h, sl).sum(axis=1)  # noqa: E731
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
