"""The sources panel: agent state, interfaces, program and parameters, attach/detach, inject, lab.

It only builds requests and shows answers; the session controller (gui/session.py) talks to the agent.
Its limits, defaults and choices come from the agent's catalog (set_catalog), never hard-coded.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QSpinBox,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget, QScrollArea)

from backend.data import verdicts
from backend.data.sample import VERDICTS

from . import si

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
AGENT_COLORS = {"ready": "#009E73", "starting": "#E69F00", "unprivileged": "#E69F00", "dead": "#D55E00",
                "stopped": "#909090"}
AGENT_WORDS = {"unprivileged": "no privileges"}
TARGET_PROGRAMS = ("redirect", "cpumap", "mix", "user")  # until the agent's catalog says (target_kind)
SUGGESTED = {"count": 100_000}  # a first value where the catalog has no default (within its limits)
# optional numbers without a default: the box's lowest step means "not sent" (the agent's default):
# rate 0 is the catalog's own "as fast as possible"; the CPU box gets one step below the catalog's minimum
OPTIONAL = {"rate": "as fast as possible", "cpu": "any"}
BELOW_MIN = {"cpu"}
WIRE_TIP = ("Through the driver: frames are sent from the ingress's veth peer, so the NIC's NAPI poll runs the "
            "program as on a real NIC (NAPI poll → driver receive → program → flush), and the driver counts them.\n"
            "Off: BPF_PROG_TEST_RUN with live frames runs the program in a syscall (the redirect, bulk-queue and "
            "flush path runs; no NAPI poll, no driver counter).")
# IFLA_XDP_ATTACHED as pyroute2 names it, and as the kernel numbers it
XDP_MODES = {"xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload", "xdpmulti": "multi",
             "native": "native", "generic": "generic", "offload": "offload", "multi": "multi"}


def xdp_now(xdp: dict | None) -> str:
    """The 'XDP now' cell: the program attached to the interface as the agent read it."""
    xdp = xdp or {}
    if not xdp.get("attached"):
        return ""
    mode = XDP_MODES.get(str(xdp.get("mode", "")), str(xdp.get("mode", "")))
    return f"{mode} #{xdp.get('prog_id')}"


def session_line(meta: dict | None) -> str:
    """What runs now, in words, from the agent's attach answer."""
    if not meta:
        return "not attached"
    targets = meta.get("targets") or []
    probes = meta.get("probes_enabled") or []
    parts = [f"<b>{meta.get('program', '?')}</b> ({meta.get('mode', '?')}) on <b>{meta.get('iface', '?')}</b>"]
    if targets:
        parts[0] += " → " + ", ".join(map(str, targets))
    method = verdicts.legacy(meta)
    parts.append(f"verdicts: {html.escape(method)}" if verdicts.is_exact(method) else
                 f"<span style='color:#E69F00'>⚠ verdicts {html.escape(method)}</span>")
    parts.append(f"{si.thousands(meta.get('hz') or 0)} Hz")
    parts.append("run time on" if meta.get("run_time") else "run time off")
    if "xdp:xdp_redirect" in probes:
        parts.append("every redirect traced")
    if isinstance(meta.get("probe_devices"), dict) and meta["probe_devices"].get("devices") == "all":
        parts.append("all devices of every namespace")
    return " · ".join(parts)


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
        self.cpus: int | None = None       # CPUs of the agent's machine: cpumap targets are CPU ids
        self._target_kind = "iface"        # what the targets list holds: "iface" names or "cpu" ids
        self._checked: dict[str, set[str]] = {"iface": set(), "cpu": set()}
        self.meta: dict | None = None      # the running session as the agent answered (None: detached)
        self.programs_catalog: dict[str, dict] = {}  # the agent's catalog: program name -> its entry
        self.state = "stopped"
        for w in [*inner.findChildren(QComboBox), *inner.findChildren(QSpinBox)]:
            w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # the wheel scrolls the panel, never a setting
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
        self.session_label = QLabel("not attached")
        self.session_label.setWordWrap(True)
        self.session_label.setToolTip("The session running now, as the agent answered the attach")
        lay.addWidget(self.session_label)
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
        form = self.program_form = QFormLayout(box)
        self.program = QComboBox()
        self.program.currentIndexChanged.connect(self._program_changed)
        form.addRow("program", self.program)
        self.program_desc = QLabel()
        self.program_desc.setWordWrap(True)
        form.addRow(self.program_desc)
        self.targets = QListWidget()
        self.targets.setMaximumHeight(90)
        self.targets.setToolTip("Redirect targets (check several): interfaces, or CPU ids for cpumap")
        self.targets.itemChanged.connect(self._target_toggled)
        form.addRow("targets", self.targets)
        self.policy = QComboBox()  # its choices: the agent's catalog (set_catalog)
        self.policy.setToolTip("rr: round robin; hash: by flow; cpu: by receiving CPU")
        form.addRow("policy", self.policy)
        mix = QHBoxLayout()
        self.mix: dict[str, QSpinBox] = {}
        for name, default in zip(VERDICTS, (0, 25, 50, 0, 25)):
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
        form.addRow("mode", self.mode)
        self.hz = self._spin()
        self.hz.setSuffix(" Hz")
        form.addRow("sample rate", self.hz)
        self.run_time = QCheckBox("run time per packet (BPF stats)")
        form.addRow(self.run_time)
        self.trace_redirects = QCheckBox("trace every redirect (slow)")
        self.trace_redirects.setToolTip("The per-packet xdp:xdp_redirect tracepoint: fan-out of programs that are "
                                        "not ours; costs ~30 % of redirect throughput")
        form.addRow(self.trace_redirects)
        self.all_devices = QCheckBox("all devices, every namespace (NAPI, devmap)")
        self.all_devices.setToolTip("NAPI polls and devmap flushes of every device of the machine, each named in its "
                                    "namespace (name@netns); off: the session's devices only")
        self.all_devices.setEnabled(False)  # offered once the agent's catalog has it
        form.addRow(self.all_devices)
        row = QHBoxLayout()
        self.attach_btn = QPushButton("Attach")
        self.attach_btn.setToolTip("Attach the program; while one runs: switch to this program in place "
                                   "(the timeline goes on, with a marker)")
        self.attach_btn.clicked.connect(self._attach)
        self.detach_btn = QPushButton("Detach")
        self.detach_btn.clicked.connect(self.sig_detach.emit)
        row.addWidget(self.attach_btn)
        row.addWidget(self.detach_btn)
        form.addRow(row)
        return box

    def _inject_box(self) -> QGroupBox:
        box = self.inject_box = QGroupBox("Inject")
        form = QFormLayout(box)
        self.inj_wire = QCheckBox("through the driver (from the ingress's peer)")
        self.inj_wire.setToolTip(WIRE_TIP)
        self.inj_wire.setChecked(True)  # the real path: NAPI poll -> driver receive -> program -> flush
        self.inj_wire.toggled.connect(self._wire_toggled)
        form.addRow(self.inj_wire)
        # ranges and defaults: the agent's catalog (set_catalog); until it answers they show nothing
        self.inj_count, self.inj_batch, self.inj_size, self.inj_flows, self.inj_rate, self.inj_cpu = \
            (self._spin() for _ in range(6))
        self.inj_rate.setSuffix(" pps")
        for label, w in (("frames", self.inj_count), ("rate", self.inj_rate), ("batch", self.inj_batch),
                         ("size", self.inj_size), ("flows", self.inj_flows), ("CPU", self.inj_cpu)):
            form.addRow(label, w)
        self.inj_rate_label = form.labelForField(self.inj_rate)
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
        self._wire_toggled(self.inj_wire.isChecked())
        return box

    def _wire_toggled(self, on: bool) -> None:
        """The rate paces the sender on the wire only (BPF_PROG_TEST_RUN runs as fast as it can)."""
        self.inj_rate.setVisible(on)
        if self.inj_rate_label is not None:
            self.inj_rate_label.setVisible(on)

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
    def _spin() -> QSpinBox:
        """A number the agent's catalog gives the range of: empty and disabled until it does."""
        sb = QSpinBox()
        sb.setRange(0, 0)
        sb.setSpecialValueText("–")
        sb.setGroupSeparatorShown(True)
        sb.setEnabled(False)
        return sb

    # -- the agent's catalog ---------------------------------------------------------------
    def spin_params(self) -> dict[str, tuple[str, QSpinBox]]:
        """Spin box per catalog parameter: name -> (catalog section, box)."""
        return {"hz": ("session", self.hz), "count": ("inject", self.inj_count), "batch": ("inject", self.inj_batch),
                "size": ("inject", self.inj_size), "flows": ("inject", self.inj_flows),
                "rate": ("inject", self.inj_rate), "cpu": ("inject", self.inj_cpu)}

    def set_catalog(self, cat: dict) -> None:
        """Limits, defaults and choices from the agent's catalog (docs/agent-protocol.md): never
        hard-coded, so the panel offers exactly what the agent accepts."""
        params = {(section, p.get("name")): p for section in ("session", "inject")
                  for p in cat.get(section) or [] if isinstance(p, dict)}
        for name, (section, box) in self.spin_params().items():
            p = params.get((section, name))
            if p is None or p.get("min") is None or p.get("max") is None:
                continue
            lo, hi = int(math.ceil(p["min"])), int(min(math.floor(p["max"]), 2**31 - 1))
            lo -= name in BELOW_MIN and p.get("default") is None
            current = box.value() if box.isEnabled() else None
            box.setSpecialValueText("")
            box.setRange(lo, hi)
            default = p.get("default")
            value = current if current is not None else default if isinstance(default, (int, float)) \
                else SUGGESTED.get(name, lo)
            box.setValue(int(min(max(value, lo), hi)))
            box.setToolTip(str(p.get("help", "")))
            box.setEnabled(True)
            if p.get("default") is None and name in OPTIONAL:  # no value sent: the agent's default
                box.setSpecialValueText(OPTIONAL[name])
                if current is None:
                    box.setValue(lo)
        wire = params.get(("inject", "wire"))
        if wire:
            self.inj_wire.setToolTip(f"{WIRE_TIP}\n{wire.get('help', '')}")
        alldev = params.get(("session", "all_devices"))
        self.all_devices.setEnabled(alldev is not None)
        if alldev is not None:
            self.all_devices.setToolTip(str(alldev.get("help", "")))
        mode = params.get(("session", "mode"))
        if mode and mode.get("choices"):
            self._set_items(self.mode, list(mode["choices"]), mode.get("default"))
        self.programs_catalog = {p["name"]: p for p in cat.get("programs") or [] if isinstance(p, dict) and "name" in p}
        policy = next((q for p in self.programs_catalog.values() for q in p.get("params") or []
                       if isinstance(q, dict) and q.get("name") == "policy"), None)
        if policy and policy.get("choices"):
            self._set_items(self.policy, list(policy["choices"]), policy.get("default"))
        self._program_changed()

    @staticmethod
    def _set_items(box: QComboBox, items: list[str], default: Any) -> None:
        current = box.currentText()
        box.blockSignals(True)
        box.clear()
        box.addItems(items)
        box.setCurrentIndex(max(box.findText(current or str(default)), 0))
        box.blockSignals(False)

    def target_kind(self, program: str) -> str:
        """What a program's targets are: "ifaces", "cpus" or "none" (the catalog's word)."""
        p = self.programs_catalog.get(program)
        if p is not None:
            return str(p.get("targets", "none"))
        return "cpus" if program == "cpumap" else "ifaces" if program in TARGET_PROGRAMS else "none"

    # -- answers from the agent ------------------------------------------------------------
    def set_agent_state(self, state: str, message: str) -> None:
        self.state = state
        word = AGENT_WORDS.get(state, state)
        self.agent_state.setText(f"<b style='color:{AGENT_COLORS.get(state, '#ccc')}'>● {word}</b>")
        self.agent_msg.setText(message)
        self.agent_btn.setText("Stop agent" if state in ("ready", "starting", "unprivileged") else "Start agent")
        live = state == "ready"  # "unprivileged": running, but nothing it could do would work
        for w in (self.attach_btn, self.inject_btn, self.lab_up_btn, self.lab_down_btn):
            w.setEnabled(live)
        if not live:
            self.detach_btn.setEnabled(False)
            if state != "starting":
                self.show_session(None)

    def set_interfaces(self, interfaces: list[dict]) -> None:
        """The agent's interfaces; 'XDP now' is the program the kernel has on each, as read back."""
        self.interfaces = [i for i in interfaces if isinstance(i, dict)]
        current = self.selected_iface() or (self.meta or {}).get("iface", "")
        self.iface_tree.clear()
        bold = QFont()
        bold.setBold(True)
        for itf in self.interfaces:
            name, driver = itf.get("name", "?"), itf.get("driver", "")
            now = xdp_now(itf.get("xdp"))
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
            if now:
                item.setToolTip(2, f"XDP program id {itf['xdp'].get('prog_id')} attached "
                                   f"({now.split()[0]}), as the agent read it")
            self.iface_tree.addTopLevelItem(item)
            if name == current:
                self.iface_tree.setCurrentItem(item)
        for c in range(5):
            self.iface_tree.resizeColumnToContents(c)
        self._fill_targets()

    def xdp_now(self) -> dict[str, str]:
        """Interface -> its 'XDP now' cell, as shown."""
        return {self.iface_tree.topLevelItem(i).text(0): self.iface_tree.topLevelItem(i).text(2)
                for i in range(self.iface_tree.topLevelItemCount())}

    def set_cpus(self, n: int | None) -> None:
        if n and n != self.cpus:
            self.cpus = int(n)
            self._fill_targets()

    def _fill_targets(self) -> None:
        """The targets list: interface names, or for cpumap the agent machine's CPU ids."""
        kind = "cpu" if self.target_kind(self.program.currentText()) == "cpus" else "iface"
        self._target_kind = kind
        if kind == "cpu":
            items = [(f"CPU {c}", str(c)) for c in range(self.cpus or 0)]
        else:
            # the agent refuses to redirect to the interface that carries the default route (the
            # uplink): it is not offered (backend/kernel/attach.py)
            items = [(i.get("name", "?"), i.get("name", "?")) for i in self.interfaces if not i.get("default_route")]
        self.targets.blockSignals(True)
        self.targets.clear()
        for text, value in items:
            t = QListWidgetItem(text)
            t.setData(Qt.ItemDataRole.UserRole, value)
            t.setFlags(t.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            t.setCheckState(Qt.CheckState.Checked if value in self._checked[kind] else Qt.CheckState.Unchecked)
            self.targets.addItem(t)
        self.targets.blockSignals(False)
        if kind == "cpu" and not self.cpus:
            self.targets.setToolTip("cpumap targets are CPU ids: the agent has not said how many CPUs it has yet")
        else:
            self.targets.setToolTip("Redirect targets (check several): interfaces, or CPU ids for cpumap")

    def _target_toggled(self, item: QListWidgetItem) -> None:
        value = item.data(Qt.ItemDataRole.UserRole)
        (self._checked[self._target_kind].add if item.checkState() == Qt.CheckState.Checked
         else self._checked[self._target_kind].discard)(value)

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
        extra = []
        if lab.get("nxtarget"):
            extra.append(f"{lab['nxtarget']} (its peer is down: frames to it fail at flush with ENXIO)")
        if lab.get("bigmtu"):
            extra.append(f"{lab['bigmtu']} (peer MTU 9000: native XDP is refused)")
        self.lab_label.setText(f"lab up: ingress <b>{lab.get('ingress')}</b>; targets "
                               f"{', '.join(lab.get('targets', []))}" + "".join(f"; {e}" for e in extra))
        if self.meta:  # a session runs: the panel shows it, not the lab's suggestion
            return
        # preselect the lab for attach: ingress as interface, its targets checked
        for i in range(self.iface_tree.topLevelItemCount()):
            if self.iface_tree.topLevelItem(i).text(0) == lab.get("ingress"):
                self.iface_tree.setCurrentItem(self.iface_tree.topLevelItem(i))
        self._checked["iface"] |= set(lab.get("targets", []))
        self._fill_targets()

    def set_attached(self, attached: bool, meta: dict | None = None) -> None:
        self.detach_btn.setEnabled(attached)
        self.attach_btn.setText("Switch program" if attached else "Attach")
        if self.state == "ready":
            self.attach_btn.setEnabled(True)
        self.show_session(meta if attached else None)

    def show_session(self, meta: dict | None) -> None:
        """The controls show the session the agent runs (its attach answer), not what was last
        clicked: interface, program, targets, policy, mode, rate, run time, redirect tracing."""
        self.meta = dict(meta) if meta else None
        self.session_label.setText(("running: " if meta else "") + session_line(meta))
        if not meta:
            return
        params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
        program = str(meta.get("program", ""))
        idx = self.program.findText(program if self.program.findText(program) >= 0
                                    else "user" if program.endswith(".c") else "watch" if program.startswith("watch") else program)
        if idx >= 0:
            self.program.setCurrentIndex(idx)
        for i in range(self.iface_tree.topLevelItemCount()):
            if self.iface_tree.topLevelItem(i).text(0) == meta.get("iface"):
                self.iface_tree.setCurrentItem(self.iface_tree.topLevelItem(i))
        targets = [str(t) for t in (params.get("targets") or meta.get("targets") or [])]
        kind = "cpu" if self.target_kind(program) == "cpus" else "iface"
        self._checked[kind] = set(targets)
        if params.get("policy") in ("rr", "hash", "cpu"):
            self.policy.setCurrentText(params["policy"])
        for name, sb in self.mix.items():
            if isinstance(params.get("mix"), dict):
                sb.setValue(int(params["mix"].get(name, 0)))
        mode = meta.get("requested_mode") or meta.get("mode")
        if mode in ("auto", "native", "generic"):
            self.mode.setCurrentText(mode)
        if isinstance(meta.get("hz"), (int, float)):
            self.hz.setValue(int(round(meta["hz"])))
        self.run_time.setChecked(bool(meta.get("run_time")))
        self.trace_redirects.setChecked("xdp:xdp_redirect" in (meta.get("probes_enabled") or []))
        probe = meta.get("probe_devices") if isinstance(meta.get("probe_devices"), dict) else {}
        self.all_devices.setChecked(probe.get("devices") == "all")
        self._fill_targets()

    # -- requests --------------------------------------------------------------------------
    def selected_iface(self) -> str:
        item = self.iface_tree.currentItem()
        return item.text(0) if item else ""

    def selected_targets(self) -> list[str]:
        """Checked targets: interface names, or CPU ids ("0", "1") for cpumap."""
        return [self.targets.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.targets.count())
                if self.targets.item(i).checkState() == Qt.CheckState.Checked]

    def attach_args(self) -> dict[str, Any]:
        prog = self.program.currentText()
        args: dict[str, Any] = {"iface": self.selected_iface(), "program": prog, "mode": self.mode.currentText(),
                                "hz": self.hz.value(), "run_time": self.run_time.isChecked(),
                                "trace_redirects": self.trace_redirects.isChecked()}
        if self.all_devices.isEnabled():  # the agent's catalog offers it (an older agent refuses the argument)
            args["all_devices"] = self.all_devices.isChecked()
        if self.target_kind(prog) != "none":
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
        """The inject request (docs/agent-protocol.md): through the driver (wire) or BPF_PROG_TEST_RUN;
        a rate or CPU at its "no value" end is left out (the agent's default)."""
        args: dict[str, Any] = {"iface": self.selected_iface(), "count": self.inj_count.value(),
                                "batch": self.inj_batch.value(), "size": self.inj_size.value(),
                                "flows": self.inj_flows.value(), "wire": self.inj_wire.isChecked()}
        if args["wire"] and self.inj_rate.isEnabled() and self.inj_rate.value() > self.inj_rate.minimum():
            args["rate"] = float(self.inj_rate.value())
        if self.inj_cpu.isEnabled() and self.inj_cpu.value() > self.inj_cpu.minimum():
            args["cpu"] = self.inj_cpu.value()
        return args

    def _inject(self) -> None:
        self.sig_inject.emit(self.inject_args(), self.inj_loop.isChecked())

    def _agent_clicked(self) -> None:
        (self.sig_stop_agent if self.agent_btn.text() == "Stop agent" else self.sig_start_agent).emit()

    def _program_changed(self, *_: Any) -> None:
        p = self.program.currentData() or {}
        name = self.program.currentText()
        self.program_desc.setText(p.get("description", ""))
        self.targets.setEnabled(self.target_kind(name) != "none")
        self.policy.setEnabled(self.target_kind(name) != "none" and self.policy.count() > 0)
        for row, on in ((self.mix_row, name == "mix"), (self.file_row, name == "user")):
            row.setVisible(on)
            label = self.program_form.labelForField(row)
            if label is not None:  # a hidden row's label goes too
                label.setVisible(on)
        if ("cpu" if self.target_kind(name) == "cpus" else "iface") != self._target_kind:
            self._fill_targets()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "XDP program (C)", "", "C files (*.c);;All files (*)")
        if path:
            self.user_file.setText(path)
