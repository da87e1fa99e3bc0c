"""Images of widgets and panels at an exact pixel size (PNG/QImage, SVG), and files written whole
or not at all. No dialogs, no main window: the export dialogs (gui/export.py) and the reports
(gui/report.py) both use this module, and it imports neither.

Exact size, no HiDPI surprises: images are QImages of exactly the requested pixels with
devicePixelRatio 1, and a widget is rendered into them at that logical size. One panel is rendered
by drawing a fresh, offscreen copy of it at the requested size from a View, with a panel's state
(its options), so its axes and fonts are laid out for that size, not scaled.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPoint, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QApplication, QCheckBox, QComboBox, QLabel, QMainWindow, QWidget

from backend.errors import XdpscopeError

from .plots import Panel, View

BACKGROUND, FOREGROUND = "#1e1f22", "#c8c8c8"  # the plots' colors (palette.DARK)
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

    def __init__(self, cls: type[Panel], view: View, w: int, h: int, state: Any = None,
                 theme=None, context: str = "") -> None:
        from .palette import DARK
        theme = theme or DARK
        self.w, self.h = check_size(w, h)
        self.panel = cls(theme=theme)
        p = self.panel
        p.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
        p.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        if state is not None:  # the options of the panel on screen (its state dataclass)
            p.set_state(state)
        # a figure, not a UI: the toggles are left out, the panel's summary line stays, in the plot colors
        for i in range(p.controls.count()):  # its option widgets; the summary line stays
            wd = p.controls.itemAt(i).widget()
            if isinstance(wd, (QCheckBox, QComboBox)):
                wd.hide()
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


def panel_image(cls: type[Panel], view: View, w: int, h: int, state: Any = None,
                theme=None, context: str = "") -> QImage:
    with OffscreenPanel(cls, view, w, h, state, theme, context) as op:
        return op.image()


def panel_svg(cls: type[Panel], view: View, w: int, h: int, state: Any = None,
              theme=None, context: str = "") -> bytes:
    with OffscreenPanel(cls, view, w, h, state, theme, context) as op:
        return op.svg()


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
