"""Recording of the live samples into a trace file (TraceWriter), toggled from the toolbar.

The file is the one the user chose (a Save dialog in the main window); its size is the size the
trace has (SQLite pages in use), not the file plus the write-ahead log it is appended through;
the session's timeline markers inside the recording are kept in the trace's meta."""
from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from backend.errors import XdpscopeError
from backend.data.sample import Sample
from backend.data.trace import TraceWriter

from .model import Marker


def default_name(directory: str | os.PathLike) -> Path:
    return Path(directory) / time.strftime("xdpscope-%Y%m%d-%H%M%S.xst")


class Recorder(QObject):
    sig_started = Signal(str)
    sig_stopped = Signal(str, int)  # path, samples written
    sig_failed = Signal(str)        # a write failed (disk full...): recording stopped, what was written stays

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.writer: TraceWriter | None = None
        self.path: Path | None = None
        self.count = 0
        self.t_first: float | None = None   # session time of the first and last recorded samples
        self.t_last: float | None = None
        self.markers: list[Marker] = []     # the session's markers while recording
        self._t0 = 0.0

    @property
    def active(self) -> bool:
        return self.writer is not None

    def start(self, path: str | os.PathLike, meta: dict) -> None:
        self.stop()
        self.path = Path(path)
        self.writer = TraceWriter(self.path, {**meta, "recorded_by": "xdpscope gui"})
        self.count = 0
        self.t_first = self.t_last = None
        self.markers = []
        self._t0 = time.monotonic()
        self.sig_started.emit(str(self.path))

    def write(self, sample: Sample) -> None:
        if self.writer is None:
            return
        try:
            self.writer.write(sample)
        except XdpscopeError as e:  # said once; the trace keeps every sample committed before
            self.stop()
            self.sig_failed.emit(str(e))
            return
        self.count += 1
        if self.t_first is None:
            self.t_first = sample.t
        self.t_last = sample.t

    def mark(self, marker: Marker) -> None:
        """A marker of the live session while recording: it goes into the trace's meta at stop."""
        if self.writer is not None:
            self.markers.append(marker)

    def stop(self) -> None:
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        try:
            if self.markers and writer.failed is None:
                writer.set_meta("markers", [m.to_dict() for m in self.markers])
        except XdpscopeError:
            pass  # the samples matter more than the markers: close keeps them
        writer.close()
        self.sig_stopped.emit(str(self.path), self.count)

    def elapsed(self) -> float:
        return time.monotonic() - self._t0 if self.active else 0.0

    def size(self) -> int:
        """Bytes of the trace: the pages SQLite holds for it (while recording, the file plus its
        write-ahead log on disk is several times more: the WAL keeps every page version until it
        is folded back at stop); the file's size once closed."""
        if self.path is None:
            return 0
        if not self.active:
            return self.path.stat().st_size if self.path.exists() else 0
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=0.2)
            try:
                (pages,), (page,) = db.execute("PRAGMA page_count").fetchone(), db.execute("PRAGMA page_size").fetchone()
            finally:
                db.close()
            return int(pages) * int(page)
        except sqlite3.Error:
            return self.path.stat().st_size if self.path.exists() else 0
