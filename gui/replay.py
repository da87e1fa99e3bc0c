"""The replay bar: timeline slider, play/pause, step, speed presets, jumps and the A-B range of a
seekable source (gui/sources/replay.py). It follows the source's transport (gui/transport.py),
as the plots do, and moves it only through the source."""
from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QSlider, QStyle, QToolButton,
                               QWidget)

from .transport import SPEED_MAX, SPEED_MIN, SPEEDS
_SP = QStyle.StandardPixmap
ICONS = {"⏮": _SP.SP_MediaSkipBackward, "◀|": _SP.SP_MediaSeekBackward, "▶": _SP.SP_MediaPlay,
         "⏸": _SP.SP_MediaPause, "|▶": _SP.SP_MediaSeekForward, "⏭": _SP.SP_MediaSkipForward}


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
    """Timeline slider, play/pause, step, speed, jumps and a loop range for a seekable source."""

    sig_report = Signal(float, float)  # "report this range": the A-B range, seconds since session start

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source: Any = None  # a source whose caps.seekable (gui/sources/replay.py)
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

    def set_source(self, source: Any) -> None:
        """Drive this source (None, or one that is not seekable: the bar is disabled)."""
        if self.source is not None:
            tr = self.source.transport
            for sig, slot in ((tr.sig_position, self._position), (tr.sig_playing, self._playing),
                              (tr.sig_loop, self._loop_shown)):
                sig.disconnect(slot)
        source = source if source is not None and source.caps.seekable else None
        self.source = source
        self.setEnabled(source is not None and len(source.times) > 0)
        if source is None:
            return
        tr = source.transport
        tr.sig_position.connect(self._position)
        tr.sig_playing.connect(self._playing)
        tr.sig_loop.connect(self._loop_shown)
        n = len(source.times)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(n - 1, 0))
        self.slider.blockSignals(False)
        a, b = tr.loop or (source.t_first, source.t_last)
        for box, v in ((self.loop_a, a), (self.loop_b, b)):
            box.blockSignals(True)
            box.setRange(source.t_first, source.t_last)
            box.setValue(v)
            box.blockSignals(False)
        source.set_speed(self.speed.value())  # the bar's speed and loop choice carry over to a new trace
        self._loop_changed()
        self._position(source.position)
        self._playing(tr.playing)

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

    def _loop_shown(self) -> None:
        """The transport's A-B range, whoever set it (the boxes only echo it)."""
        tr = self.source.transport
        for box, v in zip((self.loop_a, self.loop_b), tr.loop or ()):
            if box.value() != v:
                box.blockSignals(True)
                box.setValue(v)
                box.blockSignals(False)
        if self.loop.isChecked() != tr.loop_enabled:
            self.loop.blockSignals(True)
            self.loop.setChecked(tr.loop_enabled)
            self.loop.blockSignals(False)

    def _loop_changed(self, *_) -> None:
        if self.source is not None:
            self.source.set_loop(self.loop.isChecked(), *(self._exact(box) for box in (self.loop_a, self.loop_b)))

    def _exact(self, box: QDoubleSpinBox) -> float:
        """A box's time; at an end of its range, the trace's exact first or last time (the box
        rounds to 2 decimals: 0.055 shows as 0.06, which would cut the first sample off the range)."""
        s = self.source
        if box.value() <= box.minimum():
            return s.t_first
        if box.value() >= box.maximum():
            return s.t_last
        return box.value()
