"""Keyboard and wheel rules of the app, as one application event filter:

- the mouse wheel over a spin box or combo box that does not have the focus scrolls the panel it
  is in (never changes the setting: batch 64 -> 58 while scrolling the Sources panel);
- Space plays / pauses from any focus but a text field (a spin box, a button, the slider, a plot),
  so it never types into the speed box nor presses the last button clicked.
"""
from __future__ import annotations

import weakref
from typing import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (QAbstractScrollArea, QAbstractSpinBox, QApplication, QComboBox, QLineEdit,
                               QPlainTextEdit, QTextEdit, QWidget)

SETTINGS = (QAbstractSpinBox, QComboBox)


def setting_under(obj: QObject) -> QWidget | None:
    """The spin box or combo box obj is (or is part of: a spin box's line edit), or None."""
    w = obj if isinstance(obj, QWidget) else None
    for _ in range(3):
        if w is None:
            return None
        if isinstance(w, SETTINGS):
            return w
        w = w.parentWidget()
    return None


def is_text_field(w: QWidget | None) -> bool:
    """Where Space is a character: an editable line (not a spin box's), combo or text edit."""
    if w is None:
        return False
    if isinstance(w, QComboBox):
        return w.isEditable()
    if isinstance(w, QLineEdit):
        return not w.isReadOnly() and not isinstance(w.parentWidget(), SETTINGS)
    if isinstance(w, (QPlainTextEdit, QTextEdit)):
        return not w.isReadOnly()
    return False


class InputGuard(QObject):
    def __init__(self, window: QWidget, play: Callable[[], None]) -> None:
        super().__init__(window)
        self.window = weakref.ref(window)
        self.play = play

    def install(self) -> None:
        QApplication.instance().installEventFilter(self)

    def remove(self) -> None:
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        t = ev.type()
        if t == QEvent.Type.Wheel:
            return self._wheel(obj, ev)
        if t in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) and ev.key() == Qt.Key.Key_Space:
            return self._space(obj, ev)
        return False

    def _wheel(self, obj: QObject, ev) -> bool:
        box = setting_under(obj)
        if box is None or box.hasFocus():
            return False
        w = box.parentWidget()  # the wheel goes to the scroll area around the box, if any
        while w is not None and not isinstance(w, QAbstractScrollArea):
            w = w.parentWidget()
        if w is not None:
            QApplication.sendEvent(w.viewport(), ev.clone())
        return True

    def _space(self, obj: QObject, ev) -> bool:
        win = self.window()
        if win is None or ev.modifiers() not in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier):
            return False
        if not isinstance(obj, QWidget) or obj.window() is not win:
            return False  # another window (a dialog): its own keys
        focus = QApplication.focusWidget()
        if is_text_field(focus):
            return False
        if ev.type() == QEvent.Type.KeyPress and not ev.isAutoRepeat():
            self.play()
        return True
