"""Samples as columns: a Block holds n consecutive Samples as one int64 matrix, one column per leaf.

A leaf is one counter of a Sample, named by its path (a key): ("actions", cpu, verdict),
("targets", name, cpu), ("flush", name, size), ("devmap", name, "sent"), ("napi", dev, "polls"),
("driver", name) ... Integers in a key are list indices, strings are dict keys. Traces store
samples as leaves (docs/trace-format.md), and the GUI's history takes a whole window of them in a
few numpy operations instead of one Python call per counter per sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .sample import Sample

Key = tuple  # (field, str | int, ...)
# the Sample fields that hold counters, in the order leaves are listed
FIELDS = ("actions", "targets", "flush", "devmap", "redirect_errors", "exceptions", "cpumap", "napi",
          "driver", "run")


def _flatten(x: Any, path: Key, out: list) -> None:
    """Append (key, value) of every leaf under x to out (a plain loop: this runs per sample, live)."""
    items = x.items() if isinstance(x, dict) else enumerate(x)
    for k, v in items:
        if isinstance(v, (dict, list)):
            _flatten(v, path + (k,), out)
        else:
            out.append((path + (k,), v))


def leaves(s: Sample) -> list[tuple[Key, Any]]:
    """Every counter of the sample with its key, zeros included (a zero is data: it says "measured")."""
    out: list[tuple[Key, Any]] = []
    for name in FIELDS:
        x = getattr(s, name)
        if isinstance(x, (dict, list)):
            _flatten(x, (name,), out)
    return out


def _lists(x: Any) -> Any:
    """Nested dicts -> the Sample's shape: a dict whose keys are ints becomes a list (dense)."""
    if not isinstance(x, dict):
        return x
    if x and all(isinstance(k, int) for k in x):
        out: list = [0] * (max(x) + 1)
        for k, v in x.items():
            out[k] = _lists(v)
        return out
    return {k: _lists(v) for k, v in x.items()}


def nest(items: Iterable[tuple[Key, Any]]) -> dict[str, Any]:
    """(key, value) pairs -> {field: nested lists and dicts}, the inverse of leaves()."""
    root: dict = {}
    for key, value in items:
        node = root
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value
    return {k: _lists(v) for k, v in root.items()}


@dataclass
class Block:
    """n samples: times (n,), and values[i, j] = leaf keys[j] of sample i; present[i, j] says whether
    sample i had that leaf at all (an absent leaf reads 0 in values)."""

    t: np.ndarray        # (n,) float64
    dt: np.ndarray       # (n,) float64
    keys: list[Key]
    values: np.ndarray   # (n, len(keys)) int64
    present: np.ndarray  # (n, len(keys)) bool

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> "Block":
        index: dict[Key, int] = {}
        cols: list[int] = []
        vals: list[Any] = []
        counts = []
        for s in samples:
            pairs = leaves(s)
            counts.append(len(pairs))
            for k, v in pairs:
                c = index.get(k)
                if c is None:
                    c = index[k] = len(index)
                cols.append(c)
                vals.append(v)
        rows = np.repeat(np.arange(len(samples)), counts)
        values = np.zeros((len(samples), len(index)), np.int64)
        present = np.zeros(values.shape, bool)
        values[rows, cols] = vals
        present[rows, cols] = True
        return cls(np.array([s.t for s in samples], np.float64), np.array([s.dt for s in samples], np.float64),
                   list(index), values, present)

    def sample(self, i: int) -> Sample:
        cols = np.flatnonzero(self.present[i])
        vals = self.values[i, cols].tolist()
        return Sample(t=float(self.t[i]), dt=float(self.dt[i]),
                      **nest((self.keys[j], v) for j, v in zip(cols.tolist(), vals)))

    def samples(self) -> Iterator[Sample]:
        return (self.sample(i) for i in range(len(self)))

    def rows(self, sl: slice) -> "Block":
        return Block(self.t[sl], self.dt[sl], self.keys, self.values[sl], self.present[sl])

    def merged(self, k: int) -> "Block":
        """Every k consecutive samples as one (the last group may be shorter): deltas added, t of the
        group's last sample, dt the sum of its dts."""
        if k <= 1 or not len(self):
            return self
        starts = np.arange(0, len(self), k)
        last = np.minimum(starts + k, len(self)) - 1
        return Block(self.t[last], np.add.reduceat(self.dt, starts), self.keys,
                     np.add.reduceat(self.values, starts), np.logical_or.reduceat(self.present, starts))

    def totals(self) -> dict[Key, int]:
        """Sum over the samples of every leaf that any of them had."""
        used = self.present.any(axis=0)
        sums = self.values.sum(axis=0)
        return {k: int(v) for k, v, u in zip(self.keys, sums.tolist(), used.tolist()) if u}
