"""Export what the app shows: PNG/SVG of the whole window or of one plot panel at an exact pixel
size, the clipboard, and reports (gui/report.py) from the File → Export menu.

Exact size, no HiDPI surprises: images are QImages of exactly the requested pixels with
devicePixelRatio 1, and a widget is rendered into them at that logical size. One panel is exported
by drawing a fresh, offscreen copy of it at the requested size from the same View the window
draws (so its axes and fonts are laid out for that size, not scaled), with the same options.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPoint, QRectF, QSize, Qt
from PySide6.QtGui import QAction, QColor, QImage, QPainter
from PySide6.QtWidgets import (QApplication, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                               QFileDialog, QFormLayout, QHBoxLayout, QLabel, QMainWindow, QMenu, QMessageBox,
                               QRadioButton, QSpinBox, QVBoxLayout, QWidget)

from backend.errors import XdpscopeError

from .plots import Panel, View

if TYPE_CHECKING:
    from .main_window import MainWindow

BACKGROUND, FOREGROUND = "#1e1f22", "#c8c8c8"  # the plots' colors (plots.py pg.setConfigOptions)
MIN_SIZE, MAX_SIZE = 50, 10000


def check_size(w: int, h: int) -> tuple[int, int]:
    if not (MIN_SIZE <= w <= MAX_SIZE and MIN_SIZE <= h <= MAX_SIZE):
        raise XdpscopeError(f"image size {w}x{h}: each side must be {MIN_SIZE}..{MAX_SIZE} pixels")
    return int(w), int(h)


def parse_size(text: str) -> tuple[int, int]:
    """'1200x500' -> (1200, 500); XdpscopeError with one line otherwise."""
    w, sep, h = text.lower().strip().partition("x")
    if not sep or not w.strip().isdigit() or not h.strip().isdigit():
        raise XdpscopeError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1200x500")
    return check_size(int(w), int(h))


def _settle() -> None:
    """Let Qt and pyqtgraph run the pending layout/resize work before a widget is rendered."""
    app = QApplication.instance()
    for _ in range(3):
        app.processEvents()


def new_image(w: int, h: int, fill: str | QColor = BACKGROUND) -> QImage:
    img = QImage(w, h, QImage.Format.Format_ARGB32)
    img.setDevicePixelRatio(1.0)
    img.fill(QColor(fill))
    return img



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


def _paint(device, widget, w: int, h: int, text_antialias: bool = False) -> None:
    """Render widget onto device at w x h pixels, scaled when the widget has another size."""
    painter = QPainter(device)
    try:
        if text_antialias:
            painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        cur = widget.size()
        if cur != QSize(w, h):
            painter.scale(w / max(cur.width(), 1), h / max(cur.height(), 1))
        widget.render(painter, QPoint(0, 0))
    finally:
        painter.end()

class _LaidOutAt:
    """Temporarily lay a widget out at w x h (a main window gets its dock layout back after)."""

    def __init__(self, widget: QWidget, w: int, h: int) -> None:
        self.widget, self.size = widget, QSize(w, h)

    def __enter__(self) -> None:
        wd = self.widget
        self.old = wd.size()
        self.state = wd.saveState() if isinstance(wd, QMainWindow) else None
        if self.old != self.size:
            wd.resize(self.size)
            _settle()

    def __exit__(self, *exc: object) -> None:
        if self.old != self.size:
            self.widget.resize(self.old)
            if self.state is not None:
                self.widget.restoreState(self.state)
            _settle()


def render_widget(widget: QWidget, w: int, h: int) -> QImage:
    """The widget drawn into an image of exactly w x h pixels.

    The widget is laid out at w x h logical pixels for the rendering (then given its size back);
    if the window system refuses the size (a maximized window), it is drawn at its own size and
    scaled to fit, so the result still has exactly the requested pixels."""
    w, h = check_size(w, h)
    img = new_image(w, h, widget.palette().window().color())
    with _LaidOutAt(widget, w, h):
        _paint(img, widget, w, h, text_antialias=True)
    return img


class OffscreenPanel:
    """A panel of class `cls` drawn from `view` at exactly w x h pixels, never shown on screen.

    Use as a context manager: the widget is deleted on exit."""

    def __init__(self, cls: type[Panel], view: View, w: int, h: int, like: Panel | None = None,
                 theme=None, context: str = "") -> None:
        from .palette import DARK
        theme = theme or DARK
        self.w, self.h = check_size(w, h)
        self.panel = cls(theme=theme)
        p = self.panel
        p.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
        p.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        if like is not None:  # the same options as the panel on screen (its state dataclass)
            p.set_state(like.state())
        # a figure, not a UI: the toggles are left out, the panel's summary line stays, in the plot colors
        for box in p.findChildren(QCheckBox) + p.findChildren(QComboBox):
            box.hide()
        if context:  # a plot exported alone says what it shows: interface, program, trace, time range
            caption = QLabel(context)
            caption.setWordWrap(True)
            caption.setContentsMargins(4, 2, 4, 2)
            p.layout().insertWidget(0, caption)
        p.setAutoFillBackground(True)
        p.setStyleSheet(f"background-color: {theme.background}; color: {theme.foreground};")
        p.resize(self.w, self.h)
        p.show()
        _settle()
        p.invalidate()
        p.refresh(view)
        _settle()

    def image(self) -> QImage:
        img = new_image(self.w, self.h, self.panel.palette().window().color())
        painter = QPainter(img)
        try:
            painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
            self.panel.render(painter, QPoint(0, 0))
        finally:
            painter.end()
        return img

    def svg(self) -> bytes:
        """The panel as SVG of w x h through QSvgGenerator: curves are written in their item
        coordinates (x = seconds since session start) under a transform to the page.
        (pyqtgraph 0.14's SVGExporter fails on the closed paths this Qt writes: pyqtgraph#3495.)"""
        return _svg(self.panel, self.w, self.h)

    def close(self) -> None:
        self.panel.close()
        self.panel.deleteLater()

    def __enter__(self) -> "OffscreenPanel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def panel_image(cls: type[Panel], view: View, w: int, h: int, like: Panel | None = None,
                theme=None, context: str = "") -> QImage:
    with OffscreenPanel(cls, view, w, h, like, theme, context) as op:
        return op.image()


def panel_svg(cls: type[Panel], view: View, w: int, h: int, like: Panel | None = None,
              theme=None, context: str = "") -> bytes:
    with OffscreenPanel(cls, view, w, h, like, theme, context) as op:
        return op.svg()


def plot_context(win: "MainWindow", view: View) -> str:
    """The caption of a plot exported alone: what, where, from which trace, over which time."""
    from .replay import ReplaySource
    m = view.meta or {}
    parts = [f"{m.get('program', '?')} on {m.get('iface', '?')}" + (f" ({m['driver']})" if m.get("driver") else "")]
    if m.get("host"):
        parts.append(f"host {m['host']}")
    src = win.source
    if isinstance(src, ReplaySource):
        parts.append(f"trace {src.path.name}")
    elif getattr(win.recorder, "active", False) and win.recorder.path is not None:
        parts.append(f"live, recording to {win.recorder.path.name}")
    else:
        parts.append("live")
    parts.append(f"t = {view.t0:.2f} … {view.t1:.2f} s since session start")
    if view.smooth > 1:
        parts.append(f"moving average over {view.smooth} samples")
    return "xdpscope · " + " · ".join(parts)


def _svg(widget: QWidget, w: int, h: int, title: str = "xdpscope") -> bytes:
    from PySide6.QtSvg import QSvgGenerator
    buf = QBuffer()
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    gen = QSvgGenerator()
    gen.setOutputDevice(buf)
    gen.setSize(QSize(w, h))
    gen.setViewBox(QRectF(0, 0, w, h))
    gen.setResolution(96)
    gen.setTitle(title)
    _paint(gen, widget, w, h)
    buf.close()
    # Qt states the size in mm (from the resolution); say the pixels that were asked for
    return re.sub(rb'<svg width="[^"]*" height="[^"]*"', f'<svg width="{w}px" height="{h}px"'.encode(),
                  bytes(buf.data()), count=1)


def widget_svg(widget: QWidget, w: int, h: int, title: str = "xdpscope") -> bytes:
    """The whole widget (e.g. the main window) as SVG of w x h, laid out at that size for it."""
    w, h = check_size(w, h)
    with _LaidOutAt(widget, w, h):
        return _svg(widget, w, h, title)


def png_bytes(img: QImage) -> bytes:
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if not img.save(buf, "PNG"):
        raise XdpscopeError("cannot encode PNG")
    buf.close()
    return bytes(data)


def _new_file_mode(path: Path) -> int:
    """The mode a plain open() would give a new file (or the one the file being replaced has)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_file(path: str | os.PathLike, write: Callable[[int], None]) -> None:
    """Write a file that is either complete or not there: write(fd) fills a temporary file in the
    same directory, which is checked (not empty), synced to disk and renamed over `path`. On any
    failure (disk full, read-only directory...) the temporary file is removed, an old file at `path`
    is left as it was, and XdpscopeError says why in one line."""
    out = Path(path)
    tmp = None
    try:
        if out.is_dir():
            raise XdpscopeError(f"{out}: is a directory")
        if not out.parent.is_dir():
            raise XdpscopeError(f"{out}: no such directory {str(out.parent)!r}")
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
        try:
            write(fd)
            if os.fstat(fd).st_size == 0:
                raise XdpscopeError(f"{out}: nothing was written (0 bytes)")
            os.fsync(fd)
            os.fchmod(fd, _new_file_mode(out))
        finally:
            os.close(fd)
        os.replace(tmp, out)
        tmp = None
        dfd = os.open(out.parent, os.O_RDONLY | os.O_DIRECTORY)  # the rename itself, on disk
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        raise XdpscopeError(f"{out}: cannot write: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """`data` as the whole file at `path`, through write_file (complete or not at all)."""
    def write(fd: int) -> None:
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view):]
    write_file(path, write)


def save_image(img: QImage, path: str | os.PathLike) -> None:
    write_bytes(path, png_bytes(img))


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
                else panel_svg(type(panel), view, w, h, like=panel, context=plot_context(win, view)))
        write_bytes(path, data)
        return None
    if panel is None:
        img = render_widget(win, w, h)
    else:
        view = current_view(win)
        img = panel_image(type(panel), view, w, h, panel, context=plot_context(win, view))
    if fmt == "clipboard":
        QApplication.clipboard().setImage(img)
    else:
        save_image(img, path)
    return img


class ReportDialog(QDialog):
    """A report (HTML, PDF or PNG) of the session shown: whole, the visible window, or a range."""

    def __init__(self, win: "MainWindow", trace: Path, window: tuple[float, float] | None = None) -> None:
        super().__init__(win)
        self.win, self.trace = win, trace
        self.setWindowTitle("Report")
        from backend.data.trace import TraceReader
        with TraceReader(trace) as r:
            t = r.times()
            first, last = (float(t[0]), float(t[-1])) if len(t) else (0.0, 0.0)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(f"Report of {trace.name} ({first:.2f} … {last:.2f} s)"))
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
            self, "Save report", str(Path(self.win.last_dir()) / f"{self.trace.stem}-report.html"),
            "HTML (*.html);;PDF (*.pdf);;PNG, one tall image (*.png)")
        if not path:
            return
        t_from, t_to = self.window()
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            write_report(self.trace, path, t_from, t_to, (self.width_box.value(), self.height_box.value()))
        except XdpscopeError as e:
            QMessageBox.warning(self, "Report", str(e))
            return
        finally:
            QApplication.restoreOverrideCursor()
        self.win.log_line(f"report written to {path}")
        self.accept()


def session_trace(win: "MainWindow") -> Path:
    """The trace file behind the shown session: the replayed file, or the live recording."""
    from .replay import ReplaySource
    if isinstance(win.source, ReplaySource):
        return win.source.path
    if win.recorder.path is not None and win.recorder.path.exists():
        return win.recorder.path
    raise XdpscopeError("a report is made from a trace: record the live session first (File → Record), "
                        "or open a trace")


def open_report_dialog(win: "MainWindow", window: tuple[float, float] | None = None) -> None:
    try:
        ReportDialog(win, session_trace(win), window).exec()
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

