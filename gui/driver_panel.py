"""The "Driver" dock: the program's (BPF) verdict counts beside the verdicts the NIC driver's own XDP
counters (ethtool -S) tell, over the visible window, with why they differ (backend.data.driver.EXPLAIN)."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from backend.data import driver
from backend.data.sample import VERDICTS
from backend.data.series import verdict_counts

from .model import History
from .plots.view import View

COLUMNS = ("program (BPF)", "driver", "difference")


def driver_counts(h: History, sl: slice) -> np.ndarray:
    return h.driver.data[sl, :len(h.driver.names)]


def window_verdicts(view: View, driver_name: str) -> tuple[list[int], list[int] | None]:
    """(program verdict totals, driver-derived verdict totals or None) over the view's window,
    from the history's cached sum bins (View.total)."""
    h = view.h
    bpf = [int(round(x)) for x in view.total(("verdicts",), verdict_counts)[:len(VERDICTS)]]  # shared with the Verdicts plot
    names = tuple(h.driver.names)
    drv = None
    if names and driver_name in driver.VERDICT_COUNTERS:
        sums = view.total(("driver-tab", "driver", names), driver_counts)
        stats = {n: int(round(v)) for n, v in zip(names, sums)}
        if any(driver._matches(stats, p) for pats in driver.VERDICT_COUNTERS[driver_name].values() for p in pats):
            drv = driver.verdicts(driver_name, stats)
    return bpf, drv


class DriverPanel(QWidget):
    title = "Driver"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(len(VERDICTS), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setVerticalHeaderLabels(list(VERDICTS))
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setToolTip(f"over the visible window; difference = driver - program.\n{driver.EXPLAIN}")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setToolTip(driver.EXPLAIN)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.note)
        lay.addWidget(self.table, 1)
        self._key: tuple | None = None
        self.values: dict[str, tuple[int, int | None, int | None]] = {}  # verdict -> shown numbers
        self._show({}, "no data")

    def invalidate(self) -> None:
        self._key = None

    def refresh(self, view: View, meta: dict) -> bool:
        """Recompute when the window (or the driver, or its counter columns) changed."""
        name = meta.get("driver") or ""
        key = (view.key, name, len(view.h.driver.names))
        if key == self._key:
            return False
        self._key = key
        bpf, drv = window_verdicts(view, name)
        values = {a: (b, d, d - b) if drv is not None else (b, None, None)
                  for a, b, d in zip(VERDICTS, bpf, drv or [0] * len(VERDICTS))}
        if drv is not None:
            note = f"{name}: driver counters vs the program's verdicts in the window (difference = driver - program)"
        elif not name:
            note = "driver unknown for this session"
        else:
            note = f"{name}: no XDP verdict counters of this driver in the window"
        self._show(values, note)
        return True

    def _show(self, values: dict, note: str) -> None:
        self.values = values
        self.note.setText(note)
        for r, a in enumerate(VERDICTS):
            for c, v in enumerate(values.get(a, (None, None, None))):
                item = QTableWidgetItem("–" if v is None else f"{v:,}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
