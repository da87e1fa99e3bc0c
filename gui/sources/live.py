"""The samples of a live agent session. The session controller (gui/session.py) talks to the
agent and tells this source when a session begins, goes on after a switch, or ends; the source
holds the model and keeps the session's samples as Blocks, so a live session can be reported
before (or without) being recorded."""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np
from PySide6.QtCore import QObject, Signal

from backend.data.block import Block
from backend.data.sample import Sample

from .base import Capabilities, Source

CHUNK = 256  # samples per kept Block: columns, not a Python object per sample


class LiveSource(Source):
    caps = Capabilities(recordable=True, attachable=True)
    sig_sample = Signal(object)  # every sample of the attached session, on the session's timeline (the recorder)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.attached = False
        self.agent_state = "stopped"
        self._chunks: list[Block] = []
        self._pending: list[Sample] = []
        self._kept = 0  # samples in _chunks

    # -- what the session controller tells it ----------------------------------------------------
    def begin(self, meta: dict, label: str) -> None:
        """A new session: the timeline starts at 0, the kept samples and markers go."""
        self.attached = True
        self._chunks, self._pending, self._kept = [], [], 0
        self.model.reset(meta)
        self.model.set_paused(False)
        self.model.add_marker("attach", label, 0.0)

    def go_on(self, meta: dict, label: str) -> None:
        """A program switched in place: the same timeline goes on after the newest sample."""
        offset = self.model.latest_t()
        self.attached = True
        self.model.t_offset = offset
        self.model.set_meta(meta)
        self.model.add_marker("switch", label, offset)

    def end(self) -> None:
        self.attached = False

    def append(self, sample: Sample) -> None:
        """A sample of the attached session (ignored otherwise)."""
        if not self.attached:
            return
        if self.model.t_offset:  # after a switch: the timeline goes on from where it was
            sample = dataclasses.replace(sample, t=sample.t + self.model.t_offset)
        self.model.append(sample)
        self._keep(sample)
        self.sig_sample.emit(sample)

    def _keep(self, sample: Sample) -> None:
        """Keep the samples the model holds (its capacity) as Blocks of CHUNK samples."""
        self._pending.append(sample)
        if len(self._pending) >= CHUNK:
            self._flush()
        while self._chunks and self._kept - len(self._chunks[0]) >= self.model.capacity:
            self._kept -= len(self._chunks.pop(0))

    def _flush(self) -> None:
        if self._pending:
            self._chunks.append(Block.from_samples(self._pending))
            self._kept += len(self._pending)
            self._pending = []

    # -- a Source --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "live session"

    def describe(self) -> str:
        if not self.attached:
            return f"live: not attached (agent {self.agent_state})"
        m = self.model.meta
        return (f"live: {m.get('program', '')} on {m.get('iface', '')}"
                + (f" → {', '.join(map(str, m['targets']))}" if m.get("targets") else ""))

    def sample_times(self) -> np.ndarray:
        self._flush()
        return np.concatenate([b.t for b in self._chunks]) if self._chunks else np.zeros(0)

    def blocks(self, t_from: float | None = None, t_to: float | None = None,
               size: int | None = None) -> Iterator[Block]:
        self._flush()
        for b in list(self._chunks):
            lo = 0 if t_from is None else int(np.searchsorted(b.t, t_from, side="left"))
            hi = len(b) if t_to is None else int(np.searchsorted(b.t, t_to, side="right"))
            if hi > lo:
                yield b if (lo, hi) == (0, len(b)) else b.rows(slice(lo, hi))
