"""Redirect fan-out: packets/s per redirect target, and each target's share of the window."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from backend.data.series import per_second, target_counts

from ..palette import DARK, Theme
from .base import Hover, Panel, SeriesPlot, Summary, style_plot
from .view import View


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
