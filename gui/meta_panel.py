"""Session metadata (attach response or trace meta) as a key/value tree."""
from __future__ import annotations

import datetime
import json
from typing import Any

from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem, QWidget

from backend.data import verdicts

TIME_KEYS = ("created", "ended", "started", "wall_start")
METHOD = "verdict_method"   # shown first: how the verdicts were counted (inexact: a warning colour)
WARN = "#E69F00"


class MetaPanel(QTreeWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(["key", "value"])
        self.setColumnCount(2)
        self.meta: dict = {}

    def set_meta(self, meta: dict) -> None:
        """The metadata, the verdict method first (a trace from before it existed: as derived)."""
        self.meta = dict(meta)
        self.clear()
        if meta:
            method = verdicts.legacy(meta)
            item = self._item(METHOD, method)
            bold = QFont()
            bold.setBold(True)
            item.setFont(0, bold)
            item.setFont(1, bold)
            if not verdicts.is_exact(method):
                item.setForeground(1, QBrush(QColor(WARN)))
            self.addTopLevelItem(item)
        for key in sorted(k for k in meta if k != METHOD):
            self.addTopLevelItem(self._item(key, meta[key]))
        self.resizeColumnToContents(0)

    def _item(self, key: str, value: Any) -> QTreeWidgetItem:
        if isinstance(value, dict):
            item = QTreeWidgetItem([str(key), ""])
            for k in value:
                item.addChild(self._item(k, value[k]))
            return item
        if isinstance(value, (int, float)) and key in TIME_KEYS and value > 1e9:
            text = f"{datetime.datetime.fromtimestamp(value):%Y-%m-%d %H:%M:%S}"
        elif isinstance(value, list):
            text = ", ".join(map(str, value)) if all(not isinstance(v, (dict, list)) for v in value) \
                else json.dumps(value)
        else:
            text = str(value)
        item = QTreeWidgetItem([str(key), text])
        item.setToolTip(1, text)
        return item

    def value(self, key: str) -> str | None:
        for i in range(self.topLevelItemCount()):
            it = self.topLevelItem(i)
            if it.text(0) == key:
                return it.text(1)
        return None
