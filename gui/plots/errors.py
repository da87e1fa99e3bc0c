"""Errors: every kind of loss the session has seen, per second (exceptions, redirect errors by
target and errno, devmap drops, cpumap drops)."""
from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtWidgets import QWidget

from backend.data.series import per_second

from ..palette import DARK, Theme
from .base import Panel, SeriesPlot, Summary
from .view import View


class ErrorsPanel(Panel):
    title = "Errors"

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent, theme)
        self.rates = SeriesPlot(self.add_plot(0, 0), "Errors and drops (per second)", " /s", theme)
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)
        self._colors: dict[str, int] = {}  # kind -> palette index, stable as kinds appear

    @staticmethod
    def kinds(h: Any) -> list[tuple[str, Any, int]]:
        """(name, column group, column) of every error kind seen in the session (None, -1: cpumap drops)."""
        out: list[tuple[str, Any, int]] = []
        for prefix, k in (("exception", h.exceptions), ("redirect error", h.redirect_errors),
                          ("devmap drops", h.devmap_drops)):
            out.extend((f"{prefix} {name}", k, i) for i, name in enumerate(k.names) if k.seen[i])
        if h.has_cpumap_drops:
            out.append(("cpumap drops", None, -1))
        return out

    def draw(self, v: View) -> None:
        kinds = self.kinds(v.h)
        names = tuple(n for n, _, _ in kinds)

        def counts(h: Any, sl: slice) -> np.ndarray:
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
