"""Recording of the live samples into a trace file (TraceWriter), toggled from the toolbar."""
from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from backend.sample import Sample
from backend.trace import TraceWriter


def default_name(directory: str | os.PathLike) -> Path:
    return Path(directory) / time.strftime("xdpscope-%Y%m%d-%H%M%S.xst")


class Recorder(QObject):
    sig_started = Signal(str)
    sig_stopped = Signal(str, int)  # path, samples written

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.writer: TraceWriter | None = None
        self.path: Path | None = None
        self.count = 0
        self._t0 = 0.0

    @property
    def active(self) -> bool:
        return self.writer is not None

    def start(self, path: str | os.PathLike, meta: dict) -> None:
        self.stop()
        self.path = Path(path)
        self.writer = TraceWriter(self.path, {**meta, "recorded_by": "xdpscope gui"})
        self.count = 0
        self._t0 = time.monotonic()
        self.sig_started.emit(str(self.path))

    def write(self, sample: Sample) -> None:
        if self.writer is not None:
            self.writer.write(sample)
            self.count += 1

    def stop(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.writer = None
        self.sig_stopped.emit(str(self.path), self.count)

    def elapsed(self) -> float:
        return time.monotonic() - self._t0 if self.active else 0.0

    def size(self) -> int:
        """Bytes on disk, including the WAL the writer appends to while recording."""
        if self.path is None:
            return 0
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
