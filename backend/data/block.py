"""Samples as columns: a Block holds n consecutive Samples as one int64 matrix, one column per leaf.

A leaf is one counter of a Sample, named by its trace key (backend/data/schema.py, Family.key):
("actions", cpu, verdict), ("targets", name, cpu), ("flush", name, size), ("devmap", name, "sent"),
("napi", dev, "polls"), ("driver", name) ... Integers in a key are list indices, strings are dict
keys. Traces store samples as leaves (docs/trace-format.md), and the GUI's history takes a whole
window of them in a few numpy operations instead of one Python call per counter per sample.
Which keys exist, and which Sample field each belongs to, is the schema's: nothing here names a
family.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Iterator

import numpy as np

from backend.data import schema
from backend.data.sample import Sample, nest  # noqa: F401  (nest: re-exported)
from backend.errors import XdpscopeError

Key = tuple  # (field, str | int, ...)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
KEEP, IGNORE = schema.KEEP, schema.IGNORE
check_key = schema.check_key


def check_value(value: Any) -> int:
    """A counter value: an integer within int64 (no floats, no booleans, no strings)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise ValueError(f"is not an integer: {value!r}")
    if not INT64_MIN <= int(value) <= INT64_MAX:
        raise ValueError(f"is outside int64: {value}")
    return int(value)


def checked_sums(values: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
    """Column sums of an int64 matrix (or sums of the row groups beginning at `starts`), exact:
    a sum that does not fit in int64 raises OverflowError instead of wrapping negative."""
    n = len(values) if starts is None else int(np.diff(np.append(starts, len(values))).max(initial=0))
    sums = values.sum(axis=0) if starts is None else np.add.reduceat(values, starts)
    if not values.size:
        return sums
    # n * the largest magnitude < 2**62 (in float: a bound, not an exact value) cannot wrap
    big = np.maximum(values.max(axis=0).astype(np.float64), -values.min(axis=0).astype(np.float64))
    for j in np.flatnonzero(big * n >= 2.0**62).tolist():  # rare: exact Python integers for these
        col = values[:, j].tolist()
        bounds = [0, len(col)] if starts is None else [*starts.tolist(), len(col)]
        for a, b in zip(bounds, bounds[1:]):
            exact = sum(col[a:b])
            if not INT64_MIN <= exact <= INT64_MAX:
                raise OverflowError(f"a sum of {b - a} values is {exact}, outside int64")
    return sums


def leaves(s: Sample) -> list[tuple[Key, Any]]:
    """Every counter of the sample with its trace key, zeros included (a zero is data: it says "measured")."""
    return s.leaves()


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
        return cls.from_leaves([s.t for s in samples], [s.dt for s in samples], [leaves(s) for s in samples])

    @classmethod
    def from_leaves(cls, t: Sequence[float], dt: Sequence[float],
                    rows: Sequence[Sequence[tuple[Key, Any]]]) -> "Block":
        """A Block of len(rows) samples, row i holding the (key, value) leaves of sample i."""
        index: dict[Key, int] = {}
        cols: list[int] = []
        vals: list[Any] = []
        counts = []
        for pairs in rows:
            counts.append(len(pairs))
            for k, v in pairs:
                c = index.get(k)
                if c is None:
                    c = index[k] = len(index)
                cols.append(c)
                vals.append(v)
        at = np.repeat(np.arange(len(rows)), counts)
        values = np.zeros((len(rows), len(index)), np.int64)
        present = np.zeros(values.shape, bool)
        values[at, cols] = vals
        present[at, cols] = True
        return cls(np.array(t, np.float64), np.array(dt, np.float64), list(index), values, present)

    def sample(self, i: int) -> Sample:
        cols = np.flatnonzero(self.present[i])
        vals = self.values[i, cols].tolist()
        return Sample.from_leaves(float(self.t[i]), float(self.dt[i]),
                                  [(self.keys[j], v) for j, v in zip(cols.tolist(), vals)])

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
        try:
            values = checked_sums(self.values, starts)
        except OverflowError as e:
            raise XdpscopeError(f"counters of {k} merged samples: {e}") from None
        return Block(self.t[last], np.add.reduceat(self.dt, starts), self.keys,
                     values, np.logical_or.reduceat(self.present, starts))

    def totals(self) -> dict[Key, int]:
        """Sum over the samples of every leaf that any of them had: exact Python integers (a sum
        outside int64 is returned as it is, never wrapped; the caller decides)."""
        used = self.present.any(axis=0)
        try:
            sums = checked_sums(self.values).tolist()
        except OverflowError:  # rare: the exact sums, column by column
            sums = [sum(col) for col in self.values.T.tolist()]
        return {k: int(v) for k, v, u in zip(self.keys, sums, used.tolist()) if u}
