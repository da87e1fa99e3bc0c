"""What the GUI benchmarks share: a main window with its own timers stopped (the script plays
the timer), settings in a throwaway file so the user's layout is neither used nor changed."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication


def bench_window(width: int = 1600, height: int = 1000):
    """(app, tmpdir, window): keep tmpdir referenced, it is removed when collected."""
    from gui.main_window import MainWindow, freeze_startup_objects
    app = QApplication.instance() or QApplication([sys.argv[0]])
    tmpdir = tempfile.TemporaryDirectory(prefix="xdpscope-bench-")
    w = MainWindow(settings=QSettings(str(Path(tmpdir.name) / "s.ini"), QSettings.Format.IniFormat))
    w.timer.stop()
    w.status_timer.stop()
    w.resize(width, height)
    freeze_startup_objects()   # as gui/app.py does once the window is built
    return app, tmpdir, w
