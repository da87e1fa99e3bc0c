"""A user program's own maps (schema family "user_maps": what the program's authors count, such as
bcc's xdp_drop_count `dropcnt` per IP protocol): one series per map entry, the change of its value
per second, and each entry's total over the window."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtWidgets import QWidget

from backend.data.series import per_second

from ..palette import DARK, Theme
from .base import Panel, SeriesPlot, Summary, set_choices
from .view import View

ALL_MAPS = "all maps"
FAMILY = "user_maps"


@dataclass(frozen=True)
class UserMapsState:
    map: str = ALL_MAPS   # every map, or one map's name


def entry(column: str) -> tuple[str, str]:
    """A History column of the family ("map key": the name parts joined by a space) as (map, key);
    a C identifier has no space, so the first space splits them."""
    name, _, key = column.partition(" ")
    return name, key


def entry_counts(h, sl: slice) -> np.ndarray:
    """Rows x entries: the change of each map entry's value in each sample."""
    k = h.keyed(FAMILY)
    return k.data[sl, :len(k.names)]


class UserMapsPanel(Panel):
    title = "Program maps"
    State = UserMapsState

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent, theme)
        self.rates = SeriesPlot(self.add_plot(0, 0), "The program's own maps (change per second)", " /s", theme)
        self.map = self.choice_box(ALL_MAPS, "The user program's own array and hash maps of integers, sampled as "
                                   "counters: all of them, or one", "map")
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)
        self.window_totals: dict[str, dict[str, int]] = {}   # map -> key -> total in the window, as shown

    def draw(self, v: View) -> None:
        h = v.h
        columns = list(h.keyed(FAMILY).names)
        maps = sorted({entry(c)[0] for c in columns})
        i = set_choices(self.map, ALL_MAPS, maps, self.st.map)
        shown = [j for j, c in enumerate(columns) if i == 0 or entry(c)[0] == maps[i - 1]]
        n = v.smooth
        names = set()
        if columns:  # (no series of no columns: the binned path cannot shape them)
            t, rates = v.series((FAMILY, len(columns), n), per_second(entry_counts, n))
            for k, j in enumerate(shown):
                m, key = entry(columns[j])
                label = f"{m}[{key}]"
                names.add(label)
                self.rates.set(label, t, rates[:, j], self.theme.color(k))
        self.rates.hide_except(names)
        self.rates.finish(v)
        totals = v.total((FAMILY, len(columns)), entry_counts) if columns else np.zeros(0)
        self.window_totals = {}
        for j, c in enumerate(columns):
            m, key = entry(c)
            self.window_totals.setdefault(m, {})[key] = int(round(totals[j]))
        if not h.has(FAMILY):
            info = v.meta.get("user_maps") if isinstance(v.meta.get("user_maps"), dict) else {}
            skipped = info.get("not_sampled") if isinstance(info.get("not_sampled"), dict) else {}
            why = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
            self.summary.setText("no maps of the program in this session" + (f" (not sampled: {why})" if why else ""))
            return
        self.summary.setText("in window: " + "; ".join(
            f"{m}: " + ", ".join(f"[{k}] {n:,}" for k, n in keys.items() if n or len(keys) <= 8)
            for m, keys in self.window_totals.items() if i == 0 or m == maps[i - 1]))
