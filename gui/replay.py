"""Replay of a trace file: a playhead over the trace's sample times, and the bar that drives it.

Nothing is loaded up front but the times (one numpy array from the reader): a seek loads only
the samples of the visible window (one Block: a few numpy operations for the whole window),
playback appends the samples the playhead passes.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QElapsedTimer, QObject, Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QSlider, QStyle, QToolButton,
                               QWidget)

from backend.data.block import Block
from backend.errors import XdpscopeError
from backend.data.trace import TraceReader

from .sources import Source

SPEED_MIN, SPEED_MAX = 0.1, 100.0
SPEEDS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0)  # the speed presets
_SP = QStyle.StandardPixmap
ICONS = {"⏮": _SP.SP_MediaSkipBackward, "◀|": _SP.SP_MediaSeekBackward, "▶": _SP.SP_MediaPlay,
         "⏸": _SP.SP_MediaPause, "|▶": _SP.SP_MediaSeekForward, "⏭": _SP.SP_MediaSkipForward}


class ReplaySource(Source):
    kind = "replay"
    sig_position = Signal(float)   # playhead moved (seconds since session start)
    sig_playing = Signal(bool)

    def __init__(self, path: str | os.PathLike, window: float = 30.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.reader = TraceReader(self.path)  # raises XdpscopeError with a one-line message
        self.times = self.reader.times()
        self.window = float(window)
        self.speed = 1.0
        self.playing = False
        self.loop_enabled = False
        self.loop_range: tuple[float, float] | None = None
        self.position = 0.0
        self._next = 0  # index of the first trace sample not yet in the model
        self._clock = QElapsedTimer()
        try:
            self._open()
        except XdpscopeError:
            self.reader.close()  # the open failed: nothing stays open behind the error
            raise

    def _open(self) -> None:
        """Meta, duration and the first window; XdpscopeError (one line) if the trace is unreadable."""
        meta = dict(self.reader.meta)
        meta.update({"file": str(self.path), "samples": len(self.times),
                     "duration_s": round(self.reader.duration(), 3)})  # reads a row: may fail on a damaged file
        self.model.set_meta(meta)
        self._opening = True  # an unreadable first window fails the open (XdpscopeError)
        try:
            if len(self.times):
                self.seek(min(self.t_first + self.window, self.t_last))
        finally:
            self._opening = False

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
        self._move(t)

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
        self._move(t)

    def _move(self, t: float) -> None:
        self.position = t
        self.model.cursor = t
        self.sig_position.emit(t)

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
        self.speed = float(np.clip(speed, SPEED_MIN, SPEED_MAX))

    def set_loop(self, enabled: bool, a: float | None = None, b: float | None = None) -> None:
        self.loop_enabled = enabled
        if a is not None and b is not None:
            self.loop_range = (min(a, b), max(a, b))

    def set_playing(self, playing: bool) -> None:
        if playing and self.position >= self.t_last and not self._looping():
            self.seek(self.t_first)  # play at the end restarts
        if playing == self.playing:
            return
        self.playing = playing
        self._clock.start()
        self.model.paused = not playing
        self.sig_playing.emit(playing)

    def toggle(self) -> None:
        self.set_playing(not self.playing)

    def _looping(self) -> bool:
        return self.loop_enabled and self.loop_range is not None and self.loop_range[1] > self.loop_range[0]

    def tick(self) -> None:
        if not self.playing:
            return
        elapsed = self._clock.restart() / 1000.0
        self.play_for(elapsed)

    def play_for(self, seconds: float) -> None:
        """Advance the playhead by `seconds` of wall time at the current speed (the timer's step)."""
        t = self.position + seconds * self.speed
        if self._looping():
            a, b = self.loop_range
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
        self.playing = False
        self.reader.close()


class SpeedBox(QComboBox):
    """Playback speed as presets (0.1x ... 100x): nothing to type into, nothing a stray key wipes."""

    valueChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        for v in SPEEDS:
            self.addItem(f"{v:g}×", v)
        self.setCurrentIndex(SPEEDS.index(1.0))
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.currentIndexChanged.connect(lambda _: self.valueChanged.emit(self.value()))

    def value(self) -> float:
        return float(self.currentData())

    def setValue(self, v: float) -> None:
        """Select the preset v; another value is added as an entry of its own (in order)."""
        v = float(np.clip(v, SPEED_MIN, SPEED_MAX))
        i = self.findData(v)
        if i < 0:
            i = int(np.searchsorted([self.itemData(k) for k in range(self.count())], v))
            self.insertItem(i, f"{v:g}×", v)
        self.setCurrentIndex(i)


class ReplayBar(QWidget):
    """Timeline slider, play/pause, step, speed, jumps and a loop range for a ReplaySource."""

    sig_report = Signal(float, float)  # "report this range": the A-B range, seconds since session start

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source: ReplaySource | None = None
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)

        def button(text: str, tip: str, slot) -> QToolButton:
            b = QToolButton()
            b.setText(text)
            if text in ICONS:
                b.setIcon(self.style().standardIcon(ICONS[text]))
            b.setToolTip(tip)
            b.clicked.connect(slot)
            lay.addWidget(b)
            return b

        self.start_btn = button("⏮", "Jump to start (Home)", lambda: self.source and self.source.to_start())
        self.back_btn = button("◀|", "Step one sample back (Left)", lambda: self.source and self.source.step(-1))
        self.play_btn = button("▶", "Play / pause (Space)", lambda: self.source and self.source.toggle())
        self.fwd_btn = button("|▶", "Step one sample forward (Right)", lambda: self.source and self.source.step(1))
        self.end_btn = button("⏭", "Jump to end (End)", lambda: self.source and self.source.to_end())
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Timeline: drag to seek")
        self.slider.valueChanged.connect(self._slid)
        lay.addWidget(self.slider, 1)
        self.time_label = QLabel("-")
        self.time_label.setMinimumWidth(150)
        lay.addWidget(self.time_label)
        lay.addWidget(QLabel("speed"))
        self.speed = SpeedBox()
        self.speed.setToolTip("Playback speed")
        self.speed.valueChanged.connect(lambda v: self.source and self.source.set_speed(v))
        lay.addWidget(self.speed)
        self.loop = QCheckBox("loop")
        self.loop.setToolTip("Loop playback between A and B")
        self.loop.toggled.connect(self._loop_changed)
        lay.addWidget(self.loop)
        self.loop_a = self._time_box("A: loop start (s)")
        lay.addWidget(self.loop_a)
        button("A", "Set loop start to the playhead", lambda: self.source and self.loop_a.setValue(self.source.position))
        self.loop_b = self._time_box("B: loop end (s)")
        lay.addWidget(self.loop_b)
        button("B", "Set loop end to the playhead", lambda: self.source and self.loop_b.setValue(self.source.position))
        self.report_btn = button("Report A–B…", "A report (HTML, PDF, PNG) of the A–B range",
                                 lambda: self.sig_report.emit(*sorted((self.loop_a.value(), self.loop_b.value()))))
        self.setEnabled(False)

    def _time_box(self, tip: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setDecimals(2)
        box.setSuffix(" s")
        box.setToolTip(tip)
        box.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        box.valueChanged.connect(self._loop_changed)
        return box

    def set_source(self, source: ReplaySource | None) -> None:
        if self.source is not None:
            for sig, slot in ((self.source.sig_position, self._position), (self.source.sig_playing, self._playing)):
                sig.disconnect(slot)
        self.source = source
        self.setEnabled(source is not None and len(source.times) > 0)
        if source is None:
            return
        source.sig_position.connect(self._position)
        source.sig_playing.connect(self._playing)
        n = len(source.times)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(n - 1, 0))
        self.slider.blockSignals(False)
        for box, v in ((self.loop_a, source.t_first), (self.loop_b, source.t_last)):
            box.blockSignals(True)
            box.setRange(source.t_first, source.t_last)
            box.setValue(v)
            box.blockSignals(False)
        source.set_speed(self.speed.value())
        self._loop_changed()
        self._position(source.position)
        self._playing(source.playing)

    def _slid(self, value: int) -> None:
        if self.source is not None and len(self.source.times):
            self.source.set_playing(False)
            self.source.seek(float(self.source.times[value]))

    def _position(self, t: float) -> None:
        s = self.source
        self.slider.blockSignals(True)
        self.slider.setValue(max(s.index(), 0))
        self.slider.blockSignals(False)
        self.time_label.setText(f"{t:.2f} / {s.t_last:.2f} s")

    def _playing(self, playing: bool) -> None:
        self.play_btn.setText("⏸" if playing else "▶")
        self.play_btn.setIcon(self.style().standardIcon(ICONS[self.play_btn.text()]))

    def _loop_changed(self, *_) -> None:
        if self.source is not None:
            self.source.set_loop(self.loop.isChecked(), self.loop_a.value(), self.loop_b.value())
