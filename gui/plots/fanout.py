"""Redirect fan-out: packets/s per redirect target, and each target's share of the window; for a cpumap
session per target CPU (xdp:xdp_cpumap_enqueue), with the cpumap kthreads' work per CPU."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from backend.data import schema
from backend.data.series import per_second, target_counts

from ..palette import DARK, Theme
from .base import Hover, Panel, SeriesPlot, Summary, style_plot
from .view import View

ENQUEUE, KTHREAD = schema.CPUMAP_ENQUEUE.name, schema.CPUMAP_KTHREAD.name
ENQ_MEMBERS = schema.CPUMAP_ENQUEUE.positions[-1].names     # processed, drops, bulks
KT_MEMBERS = schema.CPUMAP_KTHREAD.positions[-1].names      # processed, drops, sched


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
        self.kthreads: SeriesPlot | None = None   # cpumap sessions: the kthreads' work per CPU
        self.cpu_totals: dict[int, dict[str, int]] = {}      # cpumap: target CPU -> enqueue totals in the window
        self.kthread_totals: dict[int, dict[str, int]] = {}  # cpumap: CPU -> kthread totals in the window

    def cpumap(self, v: View) -> bool:
        """A cpumap session: its fan-out is per target CPU (xdp:xdp_cpumap_enqueue), not per interface."""
        return v.h.has(ENQUEUE) or v.meta.get("program") == "cpumap"

    def draw(self, v: View) -> None:
        cpumap = self.cpumap(v)
        if cpumap and self.kthreads is None:
            self.kthreads = SeriesPlot(self.add_plot(1, 0, colspan=2, compact=(0, 2)),
                                       "cpumap kthreads per CPU (frames processed/s)", " pps", self.theme)
            self.kthreads.plot.setXLink(self.rates.plot)
            self.resizeEvent(None)
        elif not cpumap and self.kthreads is not None:
            self.remove_plot(self.kthreads.plot)
            self.kthreads = None
        title = "Redirects per target CPU (cpumap enqueue, packets/s)" if cpumap else "Redirects per target (packets/s)"
        if self.rates.plot.titleLabel.text != title:
            self.rates.plot.setTitle(title, color=self.theme.foreground, size="9pt")
        if cpumap:
            self.draw_cpumap(v)
        else:
            self.draw_targets(v)

    def draw_cpumap(self, v: View) -> None:
        """Per target CPU: frames enqueued to its cpumap queue (drops included); the kthreads
        (processed, drops, sched) per CPU they ran on; window totals of both."""
        n = v.smooth
        enq = v.h.per_cpu(ENQUEUE)
        cpus = enq.shape[1]
        names = [f"CPU {c}" for c in range(cpus)]
        t, rates = v.series((ENQUEUE, cpus, n), per_second(lambda h, sl: h.per_cpu(ENQUEUE)[sl][:, :, 0], n))
        for c, name in enumerate(names):
            self.rates.set(name, t, rates[:, c], self.theme.color(c))
        self.rates.hide_except(set(names))
        self.rates.finish(v)
        kt = v.h.per_cpu(KTHREAD)
        t, krates = v.series((KTHREAD, kt.shape[1], n), per_second(lambda h, sl: h.per_cpu(KTHREAD)[sl][:, :, 0], n))
        knames = [f"kthread CPU {c}" for c in range(kt.shape[1])]
        for c, name in enumerate(knames):
            self.kthreads.set(name, t, krates[:, c], self.theme.color(c))
        self.kthreads.hide_except(set(knames))
        self.kthreads.finish(v)
        enq_tot = v.total((ENQUEUE, "totals", cpus), lambda h, sl: h.per_cpu(ENQUEUE)[sl])     # cpus x members
        kt_tot = v.total((KTHREAD, "totals", kt.shape[1]), lambda h, sl: h.per_cpu(KTHREAD)[sl])
        self.cpu_totals = {c: dict(zip(ENQ_MEMBERS, map(int, np.rint(row)))) for c, row in enumerate(enq_tot) if row.any()}
        self.kthread_totals = {c: dict(zip(KT_MEMBERS, map(int, np.rint(row)))) for c, row in enumerate(kt_tot)
                               if row.any()}
        frames = enq_tot[:, 0] if len(enq_tot) else np.zeros(0)
        self._share(names, frames)
        enq_text = "  ".join(f"CPU {c}: {d['processed']:,} ({d['drops']:,} dropped)" for c, d in self.cpu_totals.items())
        kt_text = "  ".join(f"CPU {c}: {d['processed']:,} processed, {d['drops']:,} drops, {d['sched']:,} sched"
                            for c, d in self.kthread_totals.items())
        self.summary.setText((f"enqueued {enq_text}" if enq_text else "no cpumap enqueues")
                             + (f"   kthreads {kt_text}" if kt_text else "") + "   (window)")

    def _share(self, names: list[str], totals: np.ndarray) -> None:
        total = totals.sum()
        share = totals / total * 100 if total > 0 else np.zeros(len(names))
        if self.share_labels != names:
            self.share_labels[:] = names
            self.share_plot.getAxis("bottom").setTicks([list(enumerate(names))])
            self.share_plot.setXRange(-0.5, max(len(names), 1) - 0.5, padding=0)
        self.share.setOpts(x=np.arange(len(names)), height=share,
                           brushes=[self.theme.color(i) for i in range(len(names))])

    def draw_targets(self, v: View) -> None:
        self.cpu_totals, self.kthread_totals = {}, {}
        names = list(v.h.targets.names)
        n = v.smooth
        t, rates = v.series(("targets", n), per_second(target_counts, n))
        for i, name in enumerate(names):
            self.rates.set(name, t, rates[:, i], self.theme.color(i))
        self.rates.hide_except(set(names))
        self.rates.finish(v)
        totals = v.total(("targets",), target_counts)
        total = totals.sum()
        self._share(names, totals)
        self.summary.setText("  ".join(f"{n}: {int(c):,}" for n, c in zip(names, totals))
                             + (f"   total {int(total):,} frames in window" if names else "no redirects"))
