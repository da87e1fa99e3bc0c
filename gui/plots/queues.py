"""RX queues: the driver's own rx_queue_N_xdp_* counters (ethtool -S) per queue, as rates."""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import QComboBox, QWidget

from backend.data.series import per_second, queue_columns

from ..palette import DARK, Theme
from .base import Panel, SeriesPlot, Summary
from .view import View

QUEUE_KINDS = ("packets", "redirects", "tx", "drops")


@dataclass(frozen=True)
class QueuesState:
    kind: str = "packets"  # which rx_queue_N_xdp_* counter


class QueuesPanel(Panel):
    """Per RX queue: the driver's own rx_queue_N_xdp_* counters (ethtool -S), as rates."""

    title = "RX queues"
    State = QueuesState

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent, theme)
        self.rates = SeriesPlot(self.add_plot(0, 0), "XDP per RX queue, driver counters (packets/s)", " pps", theme)
        self.kind = QComboBox()
        self.kind.addItems(list(QUEUE_KINDS))
        self.kind.setToolTip("Which rx_queue_N_xdp_* counter of the driver (ethtool -S) to plot per queue")
        self.kind.currentIndexChanged.connect(lambda _: self.update_state(kind=self.kind.currentText()))
        self.controls.addWidget(self.kind)
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)

    def show_state(self) -> None:
        self.kind.blockSignals(True)
        self.kind.setCurrentIndex(max(self.kind.findText(self.st.kind), 0))
        self.kind.blockSignals(False)

    def draw(self, v: View) -> None:
        kind = self.st.kind
        cols = queue_columns(v.h).get(kind, {})
        queues = sorted(cols)
        idx = [cols[q] for q in queues]
        names = [f"rx{q}" for q in queues]
        counts = lambda h, sl: h.driver.data[sl][:, idx]  # noqa: E731
        if queues:
            n = v.smooth
            t, r = v.series(("queues", tuple(idx), n), per_second(counts, n))
            for i, name in enumerate(names):
                self.rates.set(name, t, r[:, i], self.theme.color(i))
            totals = v.total(("queues", tuple(idx)), counts)
            self.summary.setText(f"{kind} in window: "
                                 + ", ".join(f"{n} {int(c):,}" for n, c in zip(names, totals)))
        else:
            driver = v.meta.get("driver") or "the driver"
            self.summary.setText(f"no rx_queue_N_xdp_{kind} counters of {driver} in this session")
        self.rates.hide_except(set(names))
        self.rates.finish(v)
