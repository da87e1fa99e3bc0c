"""File → Export: the dialogs that export what the app shows (PNG/SVG of the whole window or of
one plot panel at an exact pixel size, the clipboard) and make reports (gui/report.py). The
images themselves are made by gui/render.py: a panel exported alone is a fresh offscreen copy drawn
from the same View the window draws, with the panel's state (its options) and a caption.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QImage
from PySide6.QtWidgets import (QApplication, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QMenu, QMessageBox, QRadioButton, QSpinBox,
                               QVBoxLayout, QWidget)

from backend.errors import XdpscopeError

from .plots import Panel, View
from .render import (MAX_SIZE, MIN_SIZE, check_size, panel_image, panel_svg, render_widget, save_image, widget_svg,
                     write_bytes)

if TYPE_CHECKING:
    from .main_window import MainWindow
    from .sources import Source



def _size_boxes(w: int | None = None, h: int | None = None) -> tuple[QSpinBox, QSpinBox, QHBoxLayout]:
    """Width × height spin boxes in pixels, in one row."""
    boxes = QSpinBox(), QSpinBox()
    row = QHBoxLayout()
    for box, value in zip(boxes, (w, h)):
        box.setRange(MIN_SIZE, MAX_SIZE)
        box.setSuffix(" px")
        if value is not None:
            box.setValue(value)
    row.addWidget(boxes[0])
    row.addWidget(QLabel("×"))
    row.addWidget(boxes[1])
    return boxes[0], boxes[1], row


def plot_context(win: "MainWindow", view: View) -> str:
    """The caption of a plot exported alone: what, where, from which trace, over which time."""
    m = view.meta or {}
    parts = [f"{m.get('program', '?')} on {m.get('iface', '?')}" + (f" ({m['driver']})" if m.get("driver") else "")]
    if m.get("host"):
        parts.append(f"host {m['host']}")
    src = win.source
    if src is not None and src.caps.seekable:
        parts.append(f"trace {src.name}")
    elif getattr(win.recorder, "active", False) and win.recorder.path is not None:
        parts.append(f"live, recording to {win.recorder.path.name}")
    else:
        parts.append("live")
    parts.append(f"t = {view.t0:.2f} … {view.t1:.2f} s since session start")
    if view.smooth > 1:
        parts.append(f"moving average over {view.smooth} samples")
    return "xdpscope · " + " · ".join(parts)


# -- the GUI side: File → Export ---------------------------------------------------------------

WHOLE_WINDOW = "Whole window"


class ExportDialog(QDialog):
    """What to export (window or one panel), at which pixel size, and where: PNG, SVG, clipboard."""

    def __init__(self, win: "MainWindow", fmt: str = "png") -> None:
        super().__init__(win)
        self.win = win
        self.setWindowTitle("Export image")
        form = QFormLayout(self)
        self.target = QComboBox()
        self.target.addItem(WHOLE_WINDOW)
        for title, _ in panel_targets(win):
            self.target.addItem(title)
        self.target.currentIndexChanged.connect(self._target_changed)
        form.addRow("what", self.target)
        self.width_box, self.height_box, size = _size_boxes()
        form.addRow("size", size)
        self.fmt = QComboBox()
        self.fmt.addItems(["PNG", "SVG", "Clipboard (PNG)"])
        self.fmt.setCurrentIndex({"png": 0, "svg": 1, "clipboard": 2}.get(fmt, 0))
        form.addRow("as", self.fmt)
        form.addRow(QLabel("Images have exactly these pixels (device pixel ratio 1).\n"
                           "Time axes are seconds since the session start."))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._go)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._target_changed()

    def _target_changed(self, *_) -> None:
        w = self._widget()
        self.width_box.setValue(max(w.width(), MIN_SIZE))
        self.height_box.setValue(max(w.height(), MIN_SIZE))

    def _widget(self) -> QWidget:
        name = self.target.currentText()
        return dict(panel_targets(self.win)).get(name, self.win)

    def _go(self) -> None:
        name, w, h = self.target.currentText(), self.width_box.value(), self.height_box.value()
        fmt = ("png", "svg", "clipboard")[self.fmt.currentIndex()]
        path = ""
        if fmt != "clipboard":
            stem = "xdpscope-" + ("window" if name == WHOLE_WINDOW else name.lower().replace(" ", "-"))
            path, _ = QFileDialog.getSaveFileName(self, "Export", str(Path(self.win.last_dir()) / f"{stem}.{fmt}"),
                                                  f"{fmt.upper()} (*.{fmt})")
            if not path:
                return
        try:
            export(self.win, name, fmt, w, h, path)
        except XdpscopeError as e:
            QMessageBox.warning(self, "Export", str(e))
            return
        self.win.log_line(f"exported {name} {w}x{h} " + (f"to {path}" if path else "to the clipboard"))
        self.accept()


def panel_targets(win: "MainWindow") -> list[tuple[str, Panel]]:
    """(title, panel) of the window's plot panels, in the window's order."""
    return [(p.title, p) for p in win.panels]


def current_view(win: "MainWindow") -> View:
    from .plots import make_view
    if win.source is None:
        raise XdpscopeError("nothing to export: open a trace or start a live session")
    return make_view(win.source.model, float(win.window_box.value()),
                     smooth=getattr(win, "smoothing", lambda: 1)(), region=getattr(win, "region", lambda: None)())


def export(win: "MainWindow", target: str, fmt: str, w: int, h: int, path: str | os.PathLike = "") -> QImage | None:
    """Export `target` (WHOLE_WINDOW or a panel title) as fmt 'png' | 'svg' | 'clipboard'."""
    w, h = check_size(w, h)
    panel = dict(panel_targets(win)).get(target)
    if target != WHOLE_WINDOW and panel is None:
        raise XdpscopeError(f"unknown plot {target!r}")
    if fmt == "svg":
        view = current_view(win) if panel is not None else None
        data = (widget_svg(win, w, h) if panel is None
                else panel_svg(type(panel), view, w, h, panel.state(), context=plot_context(win, view)))
        write_bytes(path, data)
        return None
    if panel is None:
        img = render_widget(win, w, h)
    else:
        view = current_view(win)
        img = panel_image(type(panel), view, w, h, panel.state(), context=plot_context(win, view))
    if fmt == "clipboard":
        QApplication.clipboard().setImage(img)
    else:
        save_image(img, path)
    return img


class ReportDialog(QDialog):
    """A report (HTML, PDF or PNG) of the session shown: whole, the visible window, or a range."""

    def __init__(self, win: "MainWindow", src: "Source | str | os.PathLike",
                 window: tuple[float, float] | None = None) -> None:
        super().__init__(win)
        self.win, self.src = win, src
        self.setWindowTitle("Report")
        from .report import samples_of
        with samples_of(src) as smp:
            t, self.name = smp.times, Path(smp.name).name
            first, last = (float(t[0]), float(t[-1])) if len(t) else (0.0, 0.0)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(f"Report of {self.name} ({first:.2f} … {last:.2f} s)"))
        self.whole = QRadioButton("whole session")
        self.visible = QRadioButton("visible window")
        self.custom = QRadioButton("from … to (s since session start)")
        self.whole.setChecked(True)
        view = current_view(win) if win.source is not None else None
        self.visible.setEnabled(view is not None)
        self._visible = (view.t0, view.t1) if view is not None else (first, last)
        for b in (self.whole, self.visible, self.custom):
            lay.addWidget(b)
        rng = QHBoxLayout()
        self.t_from, self.t_to = QDoubleSpinBox(), QDoubleSpinBox()
        for box, v in ((self.t_from, first), (self.t_to, last)):
            box.setDecimals(3)
            box.setRange(0.0, max(last, 0.001) + 1e6)
            box.setValue(v)
            box.setSuffix(" s")
            box.valueChanged.connect(lambda *_: self.custom.setChecked(True))
            rng.addWidget(box)
        lay.addLayout(rng)
        if window is not None:  # "report this range" (the replay's A-B range)
            self.t_from.setValue(window[0])
            self.t_to.setValue(window[1])
        form = QFormLayout()
        self.width_box, self.height_box, size = _size_boxes(1200, 460)
        form.addRow("plot size", size)
        lay.addLayout(form)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._go)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

    def window(self) -> tuple[float | None, float | None]:
        if self.visible.isChecked():
            return self._visible
        if self.custom.isChecked():
            return self.t_from.value(), self.t_to.value()
        return None, None

    def _go(self) -> None:
        from .report import write_report
        path, _ = QFileDialog.getSaveFileName(
            self, "Save report", str(Path(self.win.last_dir()) / f"{Path(self.name).stem.replace(' ', '-')}-report.html"),
            "HTML (*.html);;PDF (*.pdf);;PNG, one tall image (*.png)")
        if not path:
            return
        t_from, t_to = self.window()
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            write_report(self.src, path, t_from, t_to, (self.width_box.value(), self.height_box.value()))
        except XdpscopeError as e:
            QMessageBox.warning(self, "Report", str(e))
            return
        finally:
            QApplication.restoreOverrideCursor()
        self.win.log_line(f"report written to {path}")
        self.accept()


def report_source(win: "MainWindow") -> "Source":
    """The source shown, if it has samples to report: a trace, or a live session (recorded or not)."""
    src = win.source
    if src is None or not len(src.sample_times()):
        raise XdpscopeError("nothing to report yet: open a trace (File → Open), or attach a program and let "
                            "it run for a moment")
    return src


def open_report_dialog(win: "MainWindow", window: tuple[float, float] | None = None) -> None:
    try:
        ReportDialog(win, report_source(win), window).exec()
    except XdpscopeError as e:
        QMessageBox.information(win, "Report", str(e))


def add_menu(win: "MainWindow", parent: QMenu) -> QMenu:
    """File → Export: the hook main_window.py calls while building its File menu."""
    m = parent.addMenu("&Export")
    m.addAction(QAction("Image as &PNG…", win, shortcut="Ctrl+E", triggered=lambda: ExportDialog(win, "png").exec()))
    m.addAction(QAction("Image as &SVG…", win, triggered=lambda: ExportDialog(win, "svg").exec()))
    m.addAction(QAction("&Copy window to clipboard", win, shortcut="Ctrl+Shift+C",
                        triggered=lambda: _copy_window(win)))
    m.addSeparator()
    m.addAction(QAction("&Report (HTML, PDF, PNG)…", win, triggered=lambda: open_report_dialog(win)))
    return m


def _copy_window(win: "MainWindow") -> None:
    export(win, WHOLE_WINDOW, "clipboard", win.width(), win.height())
    win.statusBar().showMessage(f"window copied to the clipboard ({win.width()}x{win.height()} px)", 5000)

