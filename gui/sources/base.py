"""A Source yields the Blocks a model holds, and declares what it can do; views ask the
capabilities, never the class (a live session and a trace look the same to them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PySide6.QtCore import QObject, Signal

from backend.data.block import Block

from ..model import AppModel
from ..transport import Transport


@dataclass(frozen=True)
class Capabilities:
    seekable: bool = False    # a timeline the transport moves on: seek, step, play, loop A-B (a trace)
    recordable: bool = False  # its samples can be recorded to a trace as they arrive (a live session)
    attachable: bool = False  # programs are attached, switched and detached through it (the agent)


class Source(QObject):
    """A source of samples with its own model. The base yields nothing and can do nothing."""

    caps = Capabilities()
    sig_status = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model = AppModel(parent=self)

    @property
    def transport(self) -> Transport:
        return self.model.transport

    @property
    def name(self) -> str:
        """What reports and captions call it: a trace's file name, or "live session"."""
        return "session"

    def describe(self) -> str:
        """The status bar's line for this source."""
        return "no source"

    def tick(self) -> None:
        """Called by the UI timer before drawing (a replay advances its playhead here)."""

    def set_window(self, seconds: float) -> None:
        """The visible window length changed."""

    def sample_times(self) -> np.ndarray:
        """The times of every sample it can yield (for reports), ascending."""
        return np.zeros(0)

    def blocks(self, t_from: float | None = None, t_to: float | None = None,
               size: int | None = None) -> Iterator[Block]:
        """Its samples with t_from <= t <= t_to as Blocks (of about `size` samples, a hint), in time
        order: what a report of it reads (gui/report.py)."""
        return iter(())

    def close(self) -> None:
        pass
