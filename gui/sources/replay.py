"""Replay of a trace file: the model's transport is a playhead over the trace's sample times.

Nothing is loaded up front but the times (one numpy array from the reader): a seek loads only
the samples of the visible window (one Block: a few numpy operations for the whole window),
playback appends the samples the playhead passes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
from PySide6.QtCore import QElapsedTimer, QObject

from backend.data.block import Block
from backend.data.trace import TraceReader
from backend.errors import XdpscopeError

from ..model import Marker
from .base import Capabilities, Source


class ReplaySource(Source):
    caps = Capabilities(seekable=True)

    def __init__(self, path: str | os.PathLike, window: float = 30.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.reader = TraceReader(self.path)  # raises XdpscopeError with a one-line message
        self.times = self.reader.times()
        self.window = float(window)
        self._next = 0  # index of the first trace sample not yet in the model
        self._clock = QElapsedTimer()
        self.transport.playing = False
        self.transport.position = 0.0
        try:
            self._open()
        except XdpscopeError:
            self.reader.close()  # the open failed: nothing stays open behind the error
            raise

    def _open(self) -> None:
        """Meta, duration, markers and the first window; XdpscopeError (one line) if the trace is unreadable."""
        meta = dict(self.reader.meta)
        meta.update({"file": str(self.path), "samples": len(self.times),
                     "duration_s": round(self.reader.duration(), 3)})  # reads a row: may fail on a damaged file
        self.model.set_meta(meta)
        stored = meta.get("markers")  # the recording's timeline markers (gui/recorder.py)
        self.model.markers = [m for m in map(Marker.from_dict, stored if isinstance(stored, list) else []) if m]
        self.transport.bounds = (self.t_first, self.t_last)
        self.transport.loop = (self.t_first, self.t_last)
        self._opening = True  # an unreadable first window fails the open (XdpscopeError)
        try:
            if len(self.times):
                self.seek(min(self.t_first + self.window, self.t_last))
        finally:
            self._opening = False

    # -- what it is ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    def describe(self) -> str:
        return f"replay: {self.path}  ({len(self.times):,} samples, {self.t_last - self.t_first:.1f} s)"

    def sample_times(self) -> np.ndarray:
        return self.times

    def blocks(self, t_from: float | None = None, t_to: float | None = None,
               size: int | None = None) -> Iterator[Block]:
        return self.reader.blocks(t_from, t_to, size=size)

    # -- the transport, as this source's playhead -------------------------------------------------
    @property
    def position(self) -> float:
        return float(self.transport.position or 0.0)

    @property
    def playing(self) -> bool:
        return self.transport.playing

    @property
    def speed(self) -> float:
        return self.transport.speed

    # -- trace geometry --------------------------------------------------------------------
    @property
    def t_first(self) -> float:
        return float(self.times[0]) if len(self.times) else 0.0

    @property
    def t_last(self) -> float:
        return float(self.times[-1]) if len(self.times) else 0.0

    def index(self) -> int:
        """Index of the last sample at or before the playhead (-1 before the first)."""
        return int(np.searchsorted(self.times, self.position, side="right")) - 1

    # -- moving the playhead ---------------------------------------------------------------
    def _load(self, i0: int, i1: int) -> Block | None:
        """Samples [i0, i1) of the trace; None (said on sig_status, playback paused) if a row there
        is unreadable: the trace was damaged after it was opened, or in a part not read before."""
        try:
            return self.reader.block(i0, i1)
        except XdpscopeError as e:
            if self._opening:
                raise
            self.set_playing(False)
            self.sig_status.emit(str(e))
            return None

    def seek(self, t: float) -> None:
        """Jump: reload exactly the window that ends at t (on an unreadable row: stay)."""
        t = float(np.clip(t, self.t_first, self.t_last))
        i0 = int(np.searchsorted(self.times, t - self.window, side="right"))
        i1 = int(np.searchsorted(self.times, t, side="right"))
        block = self._load(i0, i1)
        if block is None:
            return
        self.model.reset()
        self.model.extend(block)
        self._next = i1
        self.transport.move(t)

    def advance(self, t: float) -> None:
        """Move forward by appending the samples passed; a jump back or past a window reloads."""
        t = float(np.clip(t, self.t_first, self.t_last))
        if t < self.position or t - self.position > self.window:
            self.seek(t)
            return
        j = int(np.searchsorted(self.times, t, side="right"))
        if j > self._next:
            block = self._load(self._next, j)
            if block is None:
                return
            self.model.extend(block)
            self._next = j
        self.transport.move(t)

    def step(self, n: int) -> None:
        """Step n samples forward (n < 0: back); pauses playback."""
        self.set_playing(False)
        if not len(self.times):
            return
        j = int(np.clip(self.index() + n, 0, len(self.times) - 1))
        self.advance(float(self.times[j]))

    def to_start(self) -> None:
        self.seek(self.t_first)

    def to_end(self) -> None:
        self.seek(self.t_last)

    def set_window(self, seconds: float) -> None:
        self.window = float(seconds)
        if len(self.times):
            self.seek(self.position)

    # -- playback --------------------------------------------------------------------------
    def set_speed(self, speed: float) -> None:
        self.transport.set_speed(speed)

    def set_loop(self, enabled: bool, a: float | None = None, b: float | None = None) -> None:
        self.transport.set_loop(enabled, a, b)

    def set_playing(self, playing: bool) -> None:
        tr = self.transport
        if playing and self.position >= self.t_last and not tr.looping():
            self.seek(self.t_first)  # play at the end restarts
        if tr.set_playing(playing):
            self._clock.start()

    def toggle(self) -> None:
        self.set_playing(not self.playing)

    def tick(self) -> None:
        if not self.playing:
            return
        elapsed = self._clock.restart() / 1000.0
        self.play_for(elapsed)

    def play_for(self, seconds: float) -> None:
        """Advance the playhead by `seconds` of wall time at the current speed (the timer's step)."""
        tr = self.transport
        t = self.position + seconds * tr.speed
        if tr.looping():
            a, b = tr.loop
            if self.position < a or self.position > b:
                self.seek(a)
                return
            if t > b:
                self.seek(a + (t - b) % (b - a))
                return
        if t >= self.t_last:
            self.advance(self.t_last)
            self.set_playing(False)
            return
        self.advance(t)

    def close(self) -> None:
        self.transport.playing = False
        self.reader.close()
