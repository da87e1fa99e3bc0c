"""The XDP programs running on the agent's machine, as bpftop shows BPF programs: id, name,
interface, runs per second, ns per run and CPU %, from the kernel's BPF run statistics.

The agent answers `programs_running` with the raw counters (run_cnt, run_time_ns, its monotonic
clock); the rates are deltas between two answers, as in bpftop's bpf_program.rs:
  runs/s = delta run_cnt / delta t,  ns/run = delta run_time_ns / delta run_cnt,
  CPU %  = delta run_time_ns / (delta t * CPUs) * 100   (share of the whole machine).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from . import si
from .sources_panel import XDP_MODES

POLL_MS = 1000
COLUMNS = ("id", "name", "interface", "runs/s", "ns/run", "CPU %", "runs")


@dataclass(frozen=True)
class ProgramReading:
    """One program in one answer of the agent."""
    id: int
    name: str
    run_cnt: int
    run_time_ns: int
    ifaces: tuple[str, ...] = ()   # "xs-in (native)", ...

    @staticmethod
    def from_dict(d: dict) -> "ProgramReading | None":
        try:
            ifaces = tuple(f"{i.get('name', '?')} ({XDP_MODES.get(str(i.get('mode')), i.get('mode', '?'))})"
                           if isinstance(i, dict) else str(i)
                           for i in d.get("ifaces") or ())
            return ProgramReading(int(d["id"]), str(d.get("name", "")), int(d.get("run_cnt", 0)),
                                  int(d.get("run_time_ns", 0)), ifaces)
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class ProgramRate:
    """A program's rates between two readings (None: no previous reading yet, or no runs)."""
    id: int
    name: str
    ifaces: tuple[str, ...]
    runs: int                       # run_cnt now (since load, while stats were on)
    runs_per_s: float | None
    ns_per_run: float | None
    cpu_percent: float | None


def rates(prev: dict[int, ProgramReading], prev_t: float | None, cur: list[ProgramReading],
          t: float, cpus: int) -> list[ProgramRate]:
    """Rates of each program in `cur` against its reading in `prev` taken at prev_t (seconds of the
    agent's monotonic clock). A program loaded since (or whose counters went back: another program
    with a reused id) has no rates yet."""
    out = []
    dt = (t - prev_t) if prev_t is not None else 0.0
    for p in cur:
        old = prev.get(p.id)
        if old is None or dt <= 0 or p.run_cnt < old.run_cnt or p.run_time_ns < old.run_time_ns:
            out.append(ProgramRate(p.id, p.name, p.ifaces, p.run_cnt, None, None, None))
            continue
        d_cnt, d_ns = p.run_cnt - old.run_cnt, p.run_time_ns - old.run_time_ns
        out.append(ProgramRate(p.id, p.name, p.ifaces, p.run_cnt, d_cnt / dt,
                               d_ns / d_cnt if d_cnt else None,
                               d_ns / (dt * 1e9 * max(cpus, 1)) * 100))
    return sorted(out, key=lambda r: (-(r.cpu_percent or 0), -(r.runs_per_s or 0), r.id))


class ProgramsTable(QWidget):
    """The table, refreshed every second while it is shown and an agent is ready."""

    title = "Programs"
    sig_error = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.request: Callable[..., Any] | None = None  # AgentClient.request of a ready agent
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(False)
        self.table.setToolTip("XDP programs loaded on the agent's machine (bpftop's numbers):\n"
                              "runs/s = run count delta / s; ns/run = run time delta / run count delta;\n"
                              "CPU % = run time delta / (seconds x CPUs): share of the whole machine")
        self.stats = QCheckBox("measure (BPF run-time stats on while shown)")
        self.stats.setChecked(True)
        self.stats.setToolTip("The kernel counts run time only while statistics are enabled; like bpftop, "
                              "they are on only while this table is shown (it costs a few ns per run)")
        self.note = QLabel("no agent")
        self.note.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.stats)
        top.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.note)
        lay.addWidget(self.table, 1)
        self.prev: dict[int, ProgramReading] = {}
        self.prev_t: float | None = None
        self.rows: list[ProgramRate] = []
        self._pending = False
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    def set_request(self, request: Callable[..., Any] | None) -> None:
        """The agent to ask (None: no agent ready)."""
        self.request = request
        self.prev, self.prev_t, self._pending = {}, None, False
        if request is None:
            self.note.setText("no agent: start the agent (Sources) to see the machine's XDP programs")
            self.table.setRowCount(0)

    def poll(self) -> None:
        if self.request is None or self._pending or not self.isVisible():
            return
        self._pending = True
        self.request("programs_running", self._answer, stats=self.stats.isChecked())

    def _answer(self, ok: bool, result: Any) -> None:
        self._pending = False
        if not ok or not isinstance(result, dict):
            self.note.setText(f"programs_running: {result}")
            return
        self.show_answer(result)

    def show_answer(self, result: dict) -> None:
        cur = [r for r in (ProgramReading.from_dict(d) for d in result.get("programs") or [] if isinstance(d, dict))
               if r is not None]
        t = float(result.get("t", 0.0))
        cpus = int(result.get("cpus") or 1)
        self.rows = rates(self.prev, self.prev_t, cur, t, cpus)
        self.prev, self.prev_t = {p.id: p for p in cur}, t
        stats = result.get("stats_on")
        self.note.setText(f"{len(cur)} XDP program{'s' * (len(cur) != 1)} on {result.get('host') or 'the machine'}, "
                          f"{cpus} CPUs; run-time statistics " + ("on" if stats else
                          "OFF: runs and run time stay 0 (tick 'measure', or attach with run time)"))
        self._fill()

    def _fill(self) -> None:
        self.table.setRowCount(len(self.rows))
        for r, p in enumerate(self.rows):
            cells = (str(p.id), p.name, ", ".join(p.ifaces) or "–",
                     "–" if p.runs_per_s is None else si.thousands(round(p.runs_per_s)),
                     "–" if p.ns_per_run is None else f"{p.ns_per_run:,.1f}",
                     "–" if p.cpu_percent is None else f"{p.cpu_percent:.2f}",
                     f"{p.runs:,}")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c in (0, 3, 4, 5, 6):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
