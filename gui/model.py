"""The app model: one source's History (backend/data/history.py: the Qt-free columns the plots
read), its metadata, markers and transport."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from PySide6.QtCore import QObject, Signal

from backend.data.block import Block
from backend.data.history import DEFAULT_CAPACITY, NAPI_FIELDS, Bins, History, Keyed, Sparse  # noqa: F401
from backend.data.sample import Sample

from .transport import Transport


@dataclass(frozen=True)
class Marker:
    """A moment of the session on the timeline: attach, switch, detach, inject, record, error."""
    t: float    # seconds since the session start, like sample.t
    kind: str   # attach | switch | detach | inject | record | error | note
    label: str
    data: dict | None = None  # e.g. an injection's count, batch, flows (reports read the batch)

    def to_dict(self) -> dict:
        d = {"t": round(self.t, 6), "kind": self.kind, "label": self.label}
        return {**d, "data": dict(self.data)} if self.data else d

    @staticmethod
    def from_dict(d: object) -> "Marker | None":
        """A marker from a trace's meta; None for anything malformed (a trace is untrusted input)."""
        if not isinstance(d, dict):
            return None
        t, kind, label = d.get("t"), d.get("kind"), d.get("label")
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not np.isfinite(t):
            return None
        if not isinstance(kind, str) or not isinstance(label, str):
            return None
        data = d.get("data")
        data = {str(k)[:16]: v for k, v in list(data.items())[:8] if isinstance(v, int) and not isinstance(v, bool)} \
            if isinstance(data, dict) else None
        return Marker(float(t), kind[:16], label[:120], data or None)


class AppModel(QObject):
    """One source's history, metadata, markers and transport (the playhead every view follows);
    `version` changes whenever the data does."""

    sig_meta = Signal(dict)       # session metadata changed
    sig_marker = Signal(object)   # a Marker was added

    def __init__(self, capacity: int = DEFAULT_CAPACITY, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.capacity = capacity
        self.history = History(capacity)
        self.meta: dict = {}
        self.version = 0
        self.transport = Transport(self)
        self.markers: list[Marker] = []
        self.t_offset = 0.0  # added to incoming sample times: a program switched in place continues the timeline

    def reset(self, meta: dict | None = None) -> None:
        """Empty the history. With meta: a new session (its markers and time offset go too); without
        (a replay's seek): the same session, its markers stay."""
        self.history.clear()
        if meta is not None:
            self.markers = []
            self.t_offset = 0.0
            self.meta = dict(meta)
            self.sig_meta.emit(self.meta)
        self.version += 1

    def set_meta(self, meta: dict) -> None:
        self.meta = dict(meta)
        self.sig_meta.emit(self.meta)

    def add_marker(self, kind: str, label: str, t: float | None = None, data: dict | None = None) -> Marker:
        """A marker at t (default: the newest sample's time, where the view's live edge is)."""
        m = Marker(self.latest_t() if t is None else float(t), kind, label, data)
        self.markers.append(m)
        self.version += 1
        self.sig_marker.emit(m)
        return m

    def extend(self, samples: Block | Iterable[Sample]) -> int:
        """Append a Block (a replay window), or samples."""
        b = samples if isinstance(samples, Block) else Block.from_samples(list(samples))
        self.history.extend(b)
        if len(b):
            self.version += 1
        return len(b)

    def append(self, sample: Sample) -> None:
        self.history.append(sample)
        self.version += 1

    def latest_t(self) -> float:
        h = self.history
        return float(h.t[h.end - 1]) if len(h) else 0.0

    def view_end(self) -> float:
        """Right edge of the visible window: the transport's position, or the newest sample."""
        p = self.transport.position
        return self.latest_t() if p is None else p

    def set_paused(self, paused: bool) -> None:
        """Live pause: the view stays at the newest sample's time while data keeps arriving."""
        if self.transport.set_playing(not paused):
            self.transport.move(self.latest_t() if paused else None)
            self.version += 1
