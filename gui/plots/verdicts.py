"""Verdicts: packets/s per verdict and their total, optionally per CPU, with two cursors."""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QWidget

from backend.data import verdicts as methods
from backend.data.sample import VERDICTS
from backend.data.series import cpu_counts, per_second, verdict_counts

from .. import si
from ..palette import DARK, Theme
from .base import Panel, SeriesPlot, Summary
from .view import View

ALL_VERDICTS = "all verdicts"
RUNS = "runs (kernel)"   # the kernel's run count: the total where the verdicts are unknown
WARN = "#E69F00"


def method_of(meta: dict) -> str:
    """The session's verdict method (trace metadata "verdict_method"; older traces: derived), or
    "" when there is no session."""
    return methods.legacy(meta) if meta else ""


def method_html(method: str) -> str:
    """The method as the panel's label says it: plain when exact, a warning when inexact."""
    if not method:
        return ""
    if methods.is_exact(method):
        return f"verdicts: <b>{html.escape(method)}</b> (exact)"
    return f"<span style='color:{WARN}'>⚠ verdicts <b>inexact</b>: {html.escape(method[len(methods.INEXACT):])}</span>"


@dataclass(frozen=True)
class VerdictState:
    log_y: bool = False
    per_cpu: bool = False
    cpu_verdict: str = ALL_VERDICTS        # the verdict the per-CPU plot shows (or all)
    cursors: tuple[float, float] | None = None  # C1, C2 (seconds since session start)


def run_counts(h, sl: slice) -> np.ndarray:
    """Rows: the kernel's run count of the program (BPF stats) in each sample."""
    return h.run[sl][:, 0]


class VerdictPanel(Panel):
    title = "Verdicts"
    State = VerdictState

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent, theme)
        self.rates = SeriesPlot(self.add_plot(0, 0), "Verdicts (packets/s)", " pps", theme, marker_labels=True)
        self.log_box = QCheckBox("log y")
        self.log_box.toggled.connect(self.set_log)
        self.cpu_box = QCheckBox("per CPU")
        self.cpu_box.toggled.connect(self.set_per_cpu)
        self.cpu_verdict = QComboBox()
        self.cpu_verdict.addItems([ALL_VERDICTS, *VERDICTS])
        self.cpu_verdict.currentIndexChanged.connect(lambda _: self.update_state(cpu_verdict=self.cpu_verdict.currentText()))
        self.cpu_verdict.setEnabled(False)
        self.cursor_box = QCheckBox("cursors")
        self.cursor_box.setToolTip("Two cursors on the time axis: time, frames and rate between them")
        self.cursor_box.toggled.connect(self.set_cursors)
        for w in (self.log_box, self.cpu_box, self.cpu_verdict, self.cursor_box):
            self.controls.addWidget(w)
        self.cursor_text = Summary()
        self.controls.addWidget(self.cursor_text, 1)
        # how the verdicts were counted (docs/verdict-methods.md): a line of its own, always in view
        self.method_label = QLabel()
        self.method_label.setWordWrap(True)
        self.method_label.setContentsMargins(4, 0, 4, 0)
        self.layout().insertWidget(1, self.method_label)
        self.method = ""
        self.runs_text = Summary()  # inexact: the kernel's run count in the window
        self.layout().insertWidget(2, self.runs_text)
        self.runs_text.hide()
        self.cpu: SeriesPlot | None = None
        self.cursors: list[pg.InfiniteLine] = []
        self._view: View | None = None

    def show_state(self) -> None:
        st = self.st
        for box, on in ((self.log_box, st.log_y), (self.cpu_box, st.per_cpu), (self.cursor_box, st.cursors is not None)):
            box.blockSignals(True)
            box.setChecked(on)
            box.blockSignals(False)
        self.cpu_verdict.blockSignals(True)
        self.cpu_verdict.setCurrentIndex(max(self.cpu_verdict.findText(st.cpu_verdict), 0))
        self.cpu_verdict.blockSignals(False)
        self.set_log(st.log_y)
        self.set_per_cpu(st.per_cpu)
        self.set_cursors(st.cursors is not None, st.cursors)

    def set_log(self, on: bool) -> None:
        self.update_state(log_y=on)
        self.rates.plot.setLogMode(False, on)
        if self.cpu:
            self.cpu.plot.setLogMode(False, on)

    def set_per_cpu(self, on: bool) -> None:
        self.update_state(per_cpu=on)
        self.cpu_verdict.setEnabled(on)
        if on and self.cpu is None:
            self.cpu = SeriesPlot(self.add_plot(1, 0, compact=(0, 1)), "Per CPU (packets/s)", " pps", self.theme)
            self.cpu.plot.setXLink(self.rates.plot)
            self.cpu.plot.setLogMode(False, self.st.log_y)
            self.resizeEvent(None)  # two rows: one row if the panel is short
        elif not on and self.cpu is not None:
            self.remove_plot(self.cpu.plot)
            self.cpu = None
        self.invalidate()

    # -- cursors -----------------------------------------------------------------------------
    def set_cursors(self, on: bool, at: tuple[float, float] | None = None) -> None:
        """Two draggable cursors (at `at`, else at 1/3 and 2/3 of the visible window), with the
        deltas between them."""
        for c in self.cursors:
            self.rates.plot.removeItem(c)
        self.cursors = []
        if on:
            (x0, x1), _ = self.rates.plot.vb.viewRange()
            at = at or (x0 + (x1 - x0) / 3, x0 + 2 * (x1 - x0) / 3)
            for pos, name in zip(at, ("C1", "C2")):
                c = pg.InfiniteLine(pos=pos, angle=90, movable=True,
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
        counts = h.verdicts[h.start + i0:h.start + i1].sum(axis=0)
        frames = {name: int(round(counts[k])) for k, name in enumerate(VERDICTS)}
        frames["total"] = int(round(counts.sum()))
        dt = b - a
        return {"a": a, "b": b, "dt": dt, "samples": int(i1 - i0), "frames": frames,
                "rates": {k: (v / dt if dt > 0 else float("nan")) for k, v in frames.items()}}

    def _cursor_moved(self, *_) -> None:
        # the cursors are part of the state (an export draws them where they are); no redraw needed
        self.st = self.State(self.st.log_y, self.st.per_cpu, self.st.cpu_verdict,
                             tuple(float(c.value()) for c in self.cursors) if len(self.cursors) == 2 else None)
        d = self.cursor_deltas()
        if d is None:
            self.cursor_text.setText("")
            return
        busy = [k for k in (*VERDICTS, "total") if d["frames"][k]] or ["total"]
        self.cursor_text.setText(
            f"C1 {d['a']:.3f} s  C2 {d['b']:.3f} s  Δt {d['dt']:.3f} s ({d['samples']} samples): "
            + ", ".join(f"{k} {d['frames'][k]:,} frames ({si.si(d['rates'][k], 'pps')})" for k in busy))

    def show_method(self, meta: dict) -> None:
        method = method_of(meta)
        if method != self.method:
            self.method = method
            self.method_label.setText(method_html(method))
            self.method_label.setToolTip(method)
            self.method_label.setVisible(bool(method))
            self.runs_text.setVisible(bool(method) and not methods.is_exact(method))

    def window_runs(self, v: View) -> int:
        """The kernel's run count of the program over the window (BPF stats)."""
        return int(round(v.total(("runs",), run_counts)))

    def draw(self, v: View) -> None:
        self._view = v
        self.show_method(v.meta)
        n = v.smooth
        t, rates = v.series(("verdicts", n), per_second(verdict_counts, n))
        for a, name in enumerate(VERDICTS):
            self.rates.set(name, t, rates[:, a], self.theme.verdicts[name])
        inexact = bool(self.method) and not methods.is_exact(self.method)
        if inexact:  # the verdicts are unknown: the total is what the kernel ran
            self.rates.set(RUNS, *v.series(("runs", n), per_second(run_counts, n)), self.theme.verdicts["total"])
            self.rates.hide_except({*VERDICTS, RUNS})
            runs = self.window_runs(v)
            self.runs_text.setText(f"total: the program ran {runs:,} times in the window (the kernel's run count)"
                                   if v.h.has_run else "total unknown: no run count in this session")
        else:
            self.rates.set("total", t, rates[:, -1], self.theme.verdicts["total"])
            self.rates.hide_except({*VERDICTS, "total"})
        self.rates.finish(v)
        if self.cpu is not None:
            sel = VERDICTS.index(self.st.cpu_verdict) if self.st.cpu_verdict in VERDICTS else -1
            t, r = v.series(("cpu", sel, n), per_second(lambda h, sl: cpu_counts(h, sl, sel), n))
            names = set()
            for c in range(r.shape[1]):
                names.add(f"cpu{c}")
                self.cpu.set(f"cpu{c}", t, r[:, c], self.theme.color(c))
            self.cpu.hide_except(names)
            self.cpu.finish(v)
        if self.cursors:
            self._cursor_moved()
