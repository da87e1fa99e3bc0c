"""The sources panel: agent state, interfaces, program and parameters, attach/detach, inject, lab.

It only builds requests and shows answers; LiveSource talks to the agent.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QSpinBox,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget, QScrollArea)

from backend.sample import ACTIONS

BUILTIN_PROGRAMS = [
    {"name": "pass", "description": "XDP_PASS every frame"},
    {"name": "drop", "description": "XDP_DROP every frame"},
    {"name": "tx", "description": "XDP_TX: bounce every frame out of the same NIC"},
    {"name": "redirect", "description": "XDP_REDIRECT to the targets through a devmap"},
    {"name": "cpumap", "description": "XDP_REDIRECT to other CPUs through a cpumap"},
    {"name": "mix", "description": "verdicts drawn at the given percentages"},
    {"name": "watch", "description": "observe the program already attached (replaces nothing)"},
    {"name": "user", "description": "your own XDP program (a C file, compiled by the agent)"},
]
AGENT_COLORS = {"ready": "#50c060", "starting": "#f0a030", "dead": "#e04848", "stopped": "#909090"}


class SourcesPanel(QWidget):
    sig_start_agent = Signal()
    sig_stop_agent = Signal()
    sig_attach = Signal(dict)
    sig_detach = Signal()
    sig_inject = Signal(dict, bool)  # args, loop
    sig_stop_inject = Signal()
    sig_lab = Signal(str)            # up / down

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        inner = QWidget()
        lay = QVBoxLayout(inner)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self._agent_box())
        lay.addWidget(self._iface_box(), 1)
        lay.addWidget(self._program_box())
        lay.addWidget(self._inject_box())
        lay.addWidget(self._lab_box())
        lay.addStretch(0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.interfaces: list[dict] = []
        self.set_programs(BUILTIN_PROGRAMS)
        self.set_agent_state("stopped", "")
        self.set_attached(False)

    # -- construction ----------------------------------------------------------------------
    def _agent_box(self) -> QGroupBox:
        box = QGroupBox("Agent")
        lay = QVBoxLayout(box)
        row = QHBoxLayout()
        self.agent_state = QLabel()
        row.addWidget(self.agent_state, 1)
        self.agent_btn = QPushButton("Start agent")
        self.agent_btn.clicked.connect(self._agent_clicked)
        row.addWidget(self.agent_btn)
        lay.addLayout(row)
        self.agent_msg = QLabel()
        self.agent_msg.setWordWrap(True)
        self.agent_msg.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.agent_msg)
        return box

    def _iface_box(self) -> QGroupBox:
        box = QGroupBox("Interfaces")
        lay = QVBoxLayout(box)
        self.iface_tree = QTreeWidget()
        self.iface_tree.setHeaderLabels(["name", "driver", "XDP now", "native", "generic"])
        self.iface_tree.setRootIsDecorated(False)
        self.iface_tree.setMinimumHeight(120)
        lay.addWidget(self.iface_tree)
        return box

    def _program_box(self) -> QGroupBox:
        box = QGroupBox("Program")
        form = QFormLayout(box)
        self.program = QComboBox()
        self.program.currentIndexChanged.connect(self._program_changed)
        form.addRow("program", self.program)
        self.program_desc = QLabel()
        self.program_desc.setWordWrap(True)
        form.addRow(self.program_desc)
        self.targets = QListWidget()
        self.targets.setMaximumHeight(90)
        self.targets.setToolTip("Redirect targets (check several)")
        form.addRow("targets", self.targets)
        self.policy = QComboBox()
        self.policy.addItems(["rr", "hash", "cpu"])
        self.policy.setToolTip("rr: round robin; hash: by flow; cpu: by receiving CPU")
        form.addRow("policy", self.policy)
        mix = QHBoxLayout()
        self.mix: dict[str, QSpinBox] = {}
        for name, default in zip(ACTIONS, (0, 25, 50, 0, 25)):
            sb = QSpinBox()
            sb.setRange(0, 100)
            sb.setValue(default)
            sb.setSuffix("%")
            sb.setToolTip(name)
            self.mix[name] = sb
            mix.addWidget(QLabel(name[:3]))
            mix.addWidget(sb)
        self.mix_row = QWidget()
        self.mix_row.setLayout(mix)
        form.addRow("mix", self.mix_row)
        file_row = QHBoxLayout()
        self.user_file = QLineEdit()
        self.user_file.setPlaceholderText("your XDP program, C")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        file_row.addWidget(self.user_file, 1)
        file_row.addWidget(browse)
        self.file_row = QWidget()
        self.file_row.setLayout(file_row)
        form.addRow("C file", self.file_row)
        self.mode = QComboBox()
        self.mode.addItems(["auto", "native", "generic"])
        form.addRow("mode", self.mode)
        self.hz = QSpinBox()
        self.hz.setRange(1, 100)
        self.hz.setValue(20)
        self.hz.setSuffix(" Hz")
        form.addRow("sample rate", self.hz)
        self.run_time = QCheckBox("run time per packet (BPF stats)")
        form.addRow(self.run_time)
        self.trace_redirects = QCheckBox("trace every redirect (slow; for programs not ours)")
        form.addRow(self.trace_redirects)
        row = QHBoxLayout()
        self.attach_btn = QPushButton("Attach")
        self.attach_btn.clicked.connect(self._attach)
        self.detach_btn = QPushButton("Detach")
        self.detach_btn.clicked.connect(self.sig_detach.emit)
        row.addWidget(self.attach_btn)
        row.addWidget(self.detach_btn)
        form.addRow(row)
        return box

    def _inject_box(self) -> QGroupBox:
        box = QGroupBox("Inject (BPF_PROG_TEST_RUN live frames)")
        form = QFormLayout(box)
        self.inj_count = self._spin(1, 100_000_000, 100_000)
        self.inj_batch = self._spin(1, 256, 64)
        self.inj_size = self._spin(60, 9000, 64)
        self.inj_flows = self._spin(1, 65536, 1)
        for label, w in (("frames", self.inj_count), ("batch", self.inj_batch), ("size", self.inj_size),
                         ("flows", self.inj_flows)):
            form.addRow(label, w)
        self.inj_loop = QCheckBox("repeat until stopped")
        form.addRow(self.inj_loop)
        row = QHBoxLayout()
        self.inject_btn = QPushButton("Inject")
        self.inject_btn.clicked.connect(self._inject)
        self.stop_inject_btn = QPushButton("Stop")
        self.stop_inject_btn.clicked.connect(self.sig_stop_inject.emit)
        row.addWidget(self.inject_btn)
        row.addWidget(self.stop_inject_btn)
        form.addRow(row)
        return box

    def _lab_box(self) -> QGroupBox:
        box = QGroupBox("Lab (veth + netns)")
        lay = QVBoxLayout(box)
        row = QHBoxLayout()
        self.lab_up_btn = QPushButton("Lab up")
        self.lab_up_btn.clicked.connect(lambda: self.sig_lab.emit("up"))
        self.lab_down_btn = QPushButton("Lab down")
        self.lab_down_btn.clicked.connect(lambda: self.sig_lab.emit("down"))
        row.addWidget(self.lab_up_btn)
        row.addWidget(self.lab_down_btn)
        lay.addLayout(row)
        self.lab_label = QLabel("lab: unknown")
        self.lab_label.setWordWrap(True)
        lay.addWidget(self.lab_label)
        return box

    @staticmethod
    def _spin(lo: int, hi: int, value: int) -> QSpinBox:
        sb = QSpinBox()
        sb.setRange(lo, hi)
        sb.setValue(value)
        sb.setGroupSeparatorShown(True)
        return sb

    # -- answers from the agent ------------------------------------------------------------
    def set_agent_state(self, state: str, message: str) -> None:
        self.agent_state.setText(f"<b style='color:{AGENT_COLORS.get(state, '#ccc')}'>● {state}</b>")
        self.agent_msg.setText(message)
        self.agent_btn.setText("Stop agent" if state in ("ready", "starting") else "Start agent")
        live = state == "ready"
        for w in (self.attach_btn, self.inject_btn, self.lab_up_btn, self.lab_down_btn):
            w.setEnabled(live)
        if not live:
            self.detach_btn.setEnabled(False)

    def set_interfaces(self, interfaces: list[dict]) -> None:
        self.interfaces = [i for i in interfaces if isinstance(i, dict)]
        current = self.selected_iface()
        checked = set(self.selected_targets())
        self.iface_tree.clear()
        self.targets.clear()
        bold = QFont()
        bold.setBold(True)
        for itf in self.interfaces:
            name, driver = itf.get("name", "?"), itf.get("driver", "")
            xdp = itf.get("xdp") or {}
            now = f"{xdp.get('mode', '')} #{xdp.get('prog_id')}" if xdp.get("attached") else ""
            modes = itf.get("modes") or {}
            cols = [name, driver + (" ★" if driver == "virtio_net" else ""), now]
            tips = []
            for m in ("native", "generic"):
                info = modes.get(m) or {}
                cols.append({True: "yes", False: "no"}.get(info.get("possible"), "?"))  # None: unknown
                if info.get("why"):
                    tips.append(f"{m}: {info['why']}")
            item = QTreeWidgetItem(cols)
            tip = "\n".join(tips) or "all modes possible"
            for c in range(len(cols)):
                item.setToolTip(c, tip)
            for c, m in ((3, "native"), (4, "generic")):
                ok = (modes.get(m) or {}).get("possible")
                color = "#d0a040" if ok is None else "#50c060" if ok else "#e04848"
                item.setForeground(c, QBrush(QColor(color)))
            if driver == "virtio_net":  # the driver this tool is about: make it stand out
                item.setFont(1, bold)
                item.setToolTip(1, "virtio_net: the paravirtual NIC whose XDP path xdpscope explains\n" + tip)
            self.iface_tree.addTopLevelItem(item)
            if name == current:
                self.iface_tree.setCurrentItem(item)
            t = QListWidgetItem(name)
            t.setFlags(t.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            t.setCheckState(Qt.CheckState.Checked if name in checked else Qt.CheckState.Unchecked)
            self.targets.addItem(t)
        for c in range(5):
            self.iface_tree.resizeColumnToContents(c)

    def set_programs(self, programs: list[dict]) -> None:
        names = {p.get("name") for p in programs if isinstance(p, dict)}
        merged = [p for p in programs if isinstance(p, dict)]
        if "user" not in names:
            merged.append(BUILTIN_PROGRAMS[-1])
        cur = self.program.currentText()
        self.program.blockSignals(True)
        self.program.clear()
        for p in merged:
            self.program.addItem(p["name"], p)
        idx = self.program.findText(cur or "redirect")
        self.program.setCurrentIndex(max(idx, 0))
        self.program.blockSignals(False)
        self._program_changed()

    def set_lab(self, lab: dict | None) -> None:
        if not lab:
            self.lab_label.setText("lab: down")
            return
        self.lab_label.setText(f"lab up: ingress <b>{lab.get('ingress')}</b>, targets "
                               f"{', '.join(lab.get('targets', []))}")
        # preselect the lab for attach: ingress as interface, its targets checked
        for i in range(self.iface_tree.topLevelItemCount()):
            if self.iface_tree.topLevelItem(i).text(0) == lab.get("ingress"):
                self.iface_tree.setCurrentItem(self.iface_tree.topLevelItem(i))
        for i in range(self.targets.count()):
            it = self.targets.item(i)
            if it.text() in lab.get("targets", []):
                it.setCheckState(Qt.CheckState.Checked)

    def set_attached(self, attached: bool, meta: dict | None = None) -> None:
        self.detach_btn.setEnabled(attached)
        self.attach_btn.setText("Attached" if attached else "Attach")
        if attached:
            self.attach_btn.setEnabled(False)
        elif self.agent_btn.text() == "Stop agent":
            self.attach_btn.setEnabled(True)

    # -- requests --------------------------------------------------------------------------
    def selected_iface(self) -> str:
        item = self.iface_tree.currentItem()
        return item.text(0) if item else ""

    def selected_targets(self) -> list[str]:
        return [self.targets.item(i).text() for i in range(self.targets.count())
                if self.targets.item(i).checkState() == Qt.CheckState.Checked]

    def attach_args(self) -> dict[str, Any]:
        prog = self.program.currentText()
        args: dict[str, Any] = {"iface": self.selected_iface(), "program": prog, "mode": self.mode.currentText(),
                                "hz": self.hz.value(), "run_time": self.run_time.isChecked(),
                                "trace_redirects": self.trace_redirects.isChecked()}
        if prog in ("redirect", "cpumap", "mix", "user"):
            args["targets"] = self.selected_targets()
            args["policy"] = self.policy.currentText()
        if prog == "mix":
            args["mix"] = {k: sb.value() for k, sb in self.mix.items() if sb.value()}
        if prog == "user":
            path = Path(self.user_file.text()).expanduser()
            args["source"] = path.read_text()
            args["source_name"] = path.name
        return args

    def _attach(self) -> None:
        try:
            args = self.attach_args()
        except OSError as e:
            self.agent_msg.setText(f"cannot read the C file: {e}")
            return
        if not args["iface"]:
            self.agent_msg.setText("select an interface first")
            return
        self.sig_attach.emit(args)

    def inject_args(self) -> dict[str, Any]:
        return {"iface": self.selected_iface(), "count": self.inj_count.value(), "batch": self.inj_batch.value(),
                "size": self.inj_size.value(), "flows": self.inj_flows.value()}

    def _inject(self) -> None:
        self.sig_inject.emit(self.inject_args(), self.inj_loop.isChecked())

    def _agent_clicked(self) -> None:
        (self.sig_stop_agent if self.agent_btn.text() == "Stop agent" else self.sig_start_agent).emit()

    def _program_changed(self, *_: Any) -> None:
        p = self.program.currentData() or {}
        name = self.program.currentText()
        self.program_desc.setText(p.get("description", ""))
        self.targets.setEnabled(name in ("redirect", "cpumap", "mix", "user"))
        self.policy.setEnabled(name in ("redirect", "cpumap", "mix", "user"))
        self.mix_row.setVisible(name == "mix")
        self.file_row.setVisible(name == "user")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "XDP program (C)", "", "C files (*.c);;All files (*)")
        if path:
            self.user_file.setText(path)
