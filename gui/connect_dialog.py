"""File → Connect to host…: the agent on another machine, through the system's ssh client
(backend/agent/remote.py), with the recent hosts kept in QSettings; and the words the window uses to
say which host it is on (title, status bar) and that a connection was lost."""
from __future__ import annotations

import json
import shlex

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit,
                               QVBoxLayout, QWidget)

from backend.agent import remote
from backend.errors import XdpscopeError

RECENT_KEY = "remote/recent"
MAX_RECENT = 10


def recent_hosts(settings: QSettings) -> list[dict]:
    """[{"host", "xdpscope"}], most recent first (a damaged entry is skipped, never fatal)."""
    try:
        items = json.loads(str(settings.value(RECENT_KEY, "[]")))
    except ValueError:
        return []
    return [{"host": str(i["host"]), "xdpscope": str(i.get("xdpscope") or "")}
            for i in items if isinstance(i, dict) and isinstance(i.get("host"), str)][:MAX_RECENT]


def remember(settings: QSettings, target: remote.Target) -> None:
    path = "" if target.xdpscope == "xdpscope" else target.xdpscope
    items = [i for i in recent_hosts(settings) if i["host"] != target.host]
    settings.setValue(RECENT_KEY, json.dumps([{"host": target.host, "xdpscope": path}, *items][:MAX_RECENT]))
    settings.sync()


class ConnectDialog(QDialog):
    """Host ([user@]host or an ~/.ssh/config alias) and, optionally, where xdpscope is there."""

    def __init__(self, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Connect to host")
        self.recent = recent_hosts(settings)
        self.host = QComboBox(editable=True)
        self.host.addItems([i["host"] for i in self.recent])
        self.host.lineEdit().setPlaceholderText("user@host")
        self.path = QLineEdit(placeholderText="xdpscope (on the remote's sudo PATH)")
        self.command = QLabel(wordWrap=True)
        self.error = QLabel(wordWrap=True)
        self.error.setStyleSheet("color: #b00020")
        form = QFormLayout()
        form.addRow("Host", self.host)
        form.addRow("xdpscope there", self.path)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Connect")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(QLabel("Runs, with your ssh config, keys and agent ($XDPSCOPE_SSH replaces ssh):"))
        lay.addWidget(self.command)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.host.currentIndexChanged.connect(self._recent_chosen)
        self.host.editTextChanged.connect(self._preview)
        self.path.textChanged.connect(self._preview)
        self._recent_chosen(self.host.currentIndex())

    def _recent_chosen(self, index: int) -> None:
        if 0 <= index < len(self.recent):
            self.path.setText(self.recent[index]["xdpscope"])
        self._preview()

    def target(self) -> remote.Target:
        return remote.Target.parse(self.host.currentText(), self.path.text().strip() or None)

    def _preview(self) -> None:
        try:
            self.command.setText(shlex.join(remote.agent_command(self.target())))
            self.error.setText("")
        except XdpscopeError as e:
            self.command.setText("")
            self.error.setText(str(e) if self.host.currentText().strip() else "")

    def accept(self) -> None:
        try:
            self.target()
        except XdpscopeError as e:
            self.error.setText(str(e))
            return
        super().accept()


def describe(info: dict, where: str | None, lost: bool) -> tuple[str, str]:
    """(window title, status bar text) for the agent's host: its name, kernel and the attached
    interface's driver; where = the remote as given (None: this machine)."""
    parts = [p for p in (info.get("host"), f"Linux {info['kernel']}" if info.get("kernel") else "",
                         " ".join(x for x in (info.get("driver"), info.get("iface")) if x)) if p]
    name = " · ".join(parts)
    if where:
        name = f"{where} ({name})" if name else where
    if lost:
        return f"xdpscope — {where}: connection lost", f"{where}: connection lost"
    if not name:
        return "xdpscope", ""
    return f"xdpscope — {name}", ("" if where else "this machine: ") + name
