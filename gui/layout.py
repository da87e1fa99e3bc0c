"""Dock layouts that fit the window: a wide one (every plot side by side) and a compact one for
small windows (plots in tabs), chosen by the window's size and switched as it is resized.

Each size class keeps its own saved layout, so a layout squeezed at 1024x700 never becomes the
layout of a 1600x1000 window; a restored layout that leaves a plot under MIN_PLOT_PX (and not in a
hidden tab) is replaced by the default; View → Reset layout brings the default back."""
from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication, QDockWidget, QMainWindow

from .plots import MIN_PLOT_PX, Panel

SIDE = ("Sources", "Session", "Log", "Driver", "Programs")
PLOTS = ("Verdicts", "Fan-out", "Flushes", "Errors", "NAPI", "RX queues", "Program maps")
KEY = "layout-v4"          # older saved states (another set of docks) are never restored
WIDE_MIN = (1280, 820)     # below either: the compact layout
SETTLE_MS = 150            # resizes are settled this long after the last one
SNAPSHOT_MS = 2000         # the layout of the current size class is remembered this often

Area = Qt.DockWidgetArea
H, V = Qt.Orientation.Horizontal, Qt.Orientation.Vertical


def size_kind(width: int, height: int) -> str:
    return "wide" if width >= WIDE_MIN[0] and height >= WIDE_MIN[1] else "compact"


class DockLayout:
    def __init__(self, win: QMainWindow, docks: dict[str, QDockWidget], settings: QSettings) -> None:
        self.win, self.docks, self.settings = win, docks, settings
        self.kind: str | None = None
        self.timer = QTimer(win)
        self.timer.setSingleShot(True)
        self.timer.setInterval(SETTLE_MS)
        self.timer.timeout.connect(self.settle)
        # the layout as it was while the window was of its size class: a resize reflows the docks
        # before it can be saved, and a compact layout stretched to 1600 px is no wide layout
        self.snapshot: QByteArray | None = None
        self.snap_timer = QTimer(win)
        self.snap_timer.setInterval(SNAPSHOT_MS)
        self.snap_timer.timeout.connect(self.take_snapshot)
        self.snap_timer.start()
        win.setCorner(Qt.Corner.BottomLeftCorner, Area.LeftDockWidgetArea)   # the controls run full height
        win.setCorner(Qt.Corner.TopLeftCorner, Area.LeftDockWidgetArea)

    # -- the two defaults ------------------------------------------------------------------------
    def _place_side(self) -> None:
        d = self.docks
        self.win.addDockWidget(Area.LeftDockWidgetArea, d["Sources"])
        for name in SIDE[1:]:
            self.win.tabifyDockWidget(d["Sources"], d[name])

    def apply_default(self, kind: str) -> None:
        win, d = self.win, self.docks
        for dock in d.values():
            dock.setFloating(False)  # first: a floating dock removed and re-added stays floating
            win.removeDockWidget(dock)
        self._place_side()
        win.addDockWidget(Area.RightDockWidgetArea, d["Verdicts"])
        w, h = max(win.width(), 400), max(win.height(), 300)
        if kind == "wide":
            win.splitDockWidget(d["Verdicts"], d["Fan-out"], H)
            win.splitDockWidget(d["Fan-out"], d["Flushes"], V)
            win.addDockWidget(Area.BottomDockWidgetArea, d["Errors"])
            win.splitDockWidget(d["Errors"], d["NAPI"], H)
            win.tabifyDockWidget(d["NAPI"], d["RX queues"])
            win.tabifyDockWidget(d["RX queues"], d["Program maps"])
        else:  # two rows of tabs beside the controls
            win.tabifyDockWidget(d["Verdicts"], d["Fan-out"])
            win.tabifyDockWidget(d["Fan-out"], d["Flushes"])
            win.addDockWidget(Area.BottomDockWidgetArea, d["Errors"])
            win.tabifyDockWidget(d["Errors"], d["NAPI"])
            win.tabifyDockWidget(d["NAPI"], d["RX queues"])
            win.tabifyDockWidget(d["RX queues"], d["Program maps"])
        if "Path" in d:  # the kernel path (gui/path_view.py): a tab over the verdicts, shown first
            win.tabifyDockWidget(d["Verdicts"], d["Path"])
            QTimer.singleShot(0, d["Path"].raise_)  # once the tab bar exists
        for dock in d.values():
            dock.show()
        for name in ("Sources", "Verdicts", "Path", "NAPI" if kind == "wide" else "Errors"):
            if name not in d:
                continue
            d[name].raise_()
        side = 360 if kind == "wide" else min(300, w // 3)
        if kind == "wide":
            plots = w - side
            v = 12 if "Path" in d else 9  # the Path tab (a diagram) wants the wider column
            win.resizeDocks([d["Sources"], d["Verdicts"], d["Fan-out"]], [side, plots * v // 20, plots * (20 - v) // 20], H)
            win.resizeDocks([d["Errors"], d["Fan-out"], d["Flushes"]], [h * 3 // 10, h * 28 // 100, h * 42 // 100], V)
            win.resizeDocks([d["Errors"], d["NAPI"]], [plots // 2, plots - plots // 2], H)
        else:
            win.resizeDocks([d["Sources"], d["Verdicts"]], [side, w - side], H)
            win.resizeDocks([d["Verdicts"], d["Errors"]], [h // 2, h // 2], V)
        self.kind = kind

    # -- saved layouts per size class ------------------------------------------------------------
    def _key(self, kind: str) -> str:
        return f"{KEY}/{kind}"

    def take_snapshot(self) -> None:
        """Remember the current layout, if the window is (still) of the layout's size class."""
        if self.kind is not None and not self.timer.isActive() \
                and size_kind(self.win.width(), self.win.height()) == self.kind:
            self.snapshot = self.win.saveState()

    def save(self) -> None:
        """Keep the layout of the current size class, as it was while the window had that size."""
        self.take_snapshot()
        if self.kind is not None and self.snapshot is not None:
            self.settings.setValue(self._key(self.kind), self.snapshot)

    def apply(self, kind: str) -> None:
        """The saved layout of this size class if there is one and it works, else the default."""
        state = self.settings.value(self._key(kind))
        self.apply_default(kind)
        if isinstance(state, QByteArray) and self.win.restoreState(state):
            self.kind = kind
            QTimer.singleShot(0, self.win, self._check)
        self.snapshot = None
        QTimer.singleShot(SETTLE_MS, self.win, self.take_snapshot)

    def _check(self) -> None:
        """A restored layout that leaves a plot too small is replaced by the default (measured once
        the window is on screen: before, the docks have no final sizes)."""
        if not self.win.isVisible():
            QTimer.singleShot(SETTLE_MS, self.win, self._check)
            return
        if self.problems():
            self.apply_default(self.kind or size_kind(self.win.width(), self.win.height()))

    def reset(self) -> None:
        """View → Reset layout: the default of the current size class, and it is what is saved."""
        kind = size_kind(self.win.width(), self.win.height())
        self.settings.remove(self._key(kind))
        self.apply_default(kind)
        self.snapshot = None
        QTimer.singleShot(SETTLE_MS, self.win, self.save)  # once the docks have their default sizes

    def resized(self) -> None:
        if not self.timer.isActive():
            self.take_snapshot()  # usually no-op here: the docks already reflowed; the periodic one counts
        self.timer.start()

    def settle(self) -> None:
        """After a resize: the layout of the new size class (the old class's layout is kept)."""
        self.timer.stop()
        kind = size_kind(self.win.width(), self.win.height())
        if kind != self.kind:
            self.save()
            self.apply(kind)

    # -- what a user sees ----------------------------------------------------------------------
    def plot_sizes(self) -> list[tuple[str, int, bool]]:
        """(dock title, plot height in px, shown on screen) of every plot in a dock that is open;
        a plot in a tab that is not the current one is not shown."""
        QApplication.processEvents()
        out = []
        for name in PLOTS:
            dock = self.docks[name]
            panel = dock.widget()
            if not isinstance(panel, Panel) or dock.isHidden():
                continue
            on_screen = panel.isVisible() and not panel.visibleRegion().isEmpty()
            for plot in panel.plots():
                out.append((name, int(round(plot.sceneBoundingRect().height())), on_screen))
        return out

    def problems(self) -> list[str]:
        """Plots shown on screen at less than MIN_PLOT_PX high."""
        return [f"{name}: {h} px" for name, h, shown in self.plot_sizes() if shown and h < MIN_PLOT_PX]
