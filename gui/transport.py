"""The transport: one playhead per model that every plot, the replay bar and the pause button
follow (time, playing, speed, the A-B loop). A source moves it; views only read it.

Live: position None follows the newest sample; pausing freezes the view at a time while data
keeps arriving. Replay: the position is the playhead over the trace, `bounds` its first and last
sample time, and the A-B range (shaded, looped, reported) lies within them."""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal

SPEED_MIN, SPEED_MAX = 0.1, 100.0
SPEEDS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0)  # the speed presets


class Transport(QObject):
    sig_position = Signal(float)   # the playhead moved (seconds since session start)
    sig_playing = Signal(bool)
    sig_loop = Signal()            # the A-B range or its looping changed

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.position: float | None = None   # view end; None: the newest sample (live edge)
        self.playing = True                  # live: not paused; replay: the playhead advances
        self.speed = 1.0
        self.loop_enabled = False
        self.loop: tuple[float, float] | None = None     # A, B (seconds since session start)
        self.bounds: tuple[float, float] | None = None   # a seekable source's first and last time

    def move(self, t: float | None) -> None:
        self.position = t
        if t is not None:
            self.sig_position.emit(t)

    def set_playing(self, playing: bool) -> bool:
        """True if it changed."""
        if playing == self.playing:
            return False
        self.playing = playing
        self.sig_playing.emit(playing)
        return True

    def set_speed(self, speed: float) -> None:
        self.speed = min(max(float(speed), SPEED_MIN), SPEED_MAX)

    def set_loop(self, enabled: bool, a: float | None = None, b: float | None = None) -> None:
        self.loop_enabled = enabled
        if a is not None and b is not None:
            self.loop = (min(a, b), max(a, b))
        self.sig_loop.emit()

    def looping(self) -> bool:
        return self.loop_enabled and self.loop is not None and self.loop[1] > self.loop[0]

    def region(self) -> tuple[float, float] | None:
        """The A-B range to shade: when it loops, or when it is not the whole of the bounds."""
        if self.loop is None or self.bounds is None:
            return None
        a, b = self.loop
        whole = a <= self.bounds[0] + 1e-9 and b >= self.bounds[1] - 1e-9
        return (a, b) if b > a and (self.loop_enabled or not whole) else None
