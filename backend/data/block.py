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

from backend.errors import XdpscopeError
from backend.data.sample import ACTIONS, CPUMAP_BINS, FLUSH_BINS, NAPI_BINS, Sample

Key = tuple  # (field, str | int, ...)
# the Sample fields that hold counters, in the order leaves are listed
FIELDS = ("actions", "targets", "flush", "devmap", "redirect_errors", "exceptions", "cpumap", "napi",
          "driver", "run", "user_maps")

# -- the shapes a leaf key may have (what a trace may name; anything else is refused or ignored) ------
MAX_CPUS = 8192        # CONFIG_NR_CPUS tops out at 8192 (x86 MAXSMP)
MAX_NAME = 256         # characters of a name in a key (ifnames are 15; driver counter names are short)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NAME = "name"          # a position holding any non-empty string of at most MAX_NAME characters


@dataclass(frozen=True)
class Index:
    """A position holding a list index 0..n-1."""
    n: int


# per field, the shapes of its keys after the field name; a set is a position that holds one of
# those strings
SHAPES: dict[str, tuple[tuple, ...]] = {
    "actions": ((Index(MAX_CPUS), Index(len(ACTIONS))),),
    "targets": ((NAME, Index(MAX_CPUS)),),
    "flush": ((NAME, Index(FLUSH_BINS)),),  # an oversize flush is counted in devmap, never here
    "devmap": ((NAME, frozenset({"sent", "drops", "oversize_flushes"})),),
    "redirect_errors": ((NAME, NAME),),
    "exceptions": ((NAME,),),
    "cpumap": ((frozenset({"bulk"}), Index(CPUMAP_BINS)), (frozenset({"drops"}),)),
    "napi": ((NAME, frozenset({"polls", "work", "budget", "full"})),
             (NAME, frozenset({"hist"}), Index(NAPI_BINS))),
    "driver": ((NAME,),),
    "run": ((frozenset({"cnt", "ns"}),),),
    "user_maps": ((NAME, NAME),),
}
MAX_DEPTH = 1 + max(len(shape) for shapes in SHAPES.values() for shape in shapes)
KEEP, IGNORE = "keep", "ignore"


def _match(part: Any, want: Any) -> str | None:
    """None if part fits the position, "newer" for a string a newer xdpscope may write there, else why not."""
    if want == NAME:
        if isinstance(part, str) and 0 < len(part) <= MAX_NAME:
            return None
        return f"{part!r} is not a name (1..{MAX_NAME} characters)"
    if isinstance(want, Index):
        if isinstance(part, int) and not isinstance(part, bool) and 0 <= part < want.n:
            return None
        return f"{part!r} is not an index 0..{want.n - 1}"
    if part in want:
        return None
    return "newer" if isinstance(part, str) else f"{part!r} is not one of {sorted(want)}"


def check_key(key: Key) -> str:
    """KEEP for a leaf key of a known shape, IGNORE for one a newer xdpscope may write (an unknown
    field, or an unknown member name where this one knows a fixed set: readers ignore what they do
    not know), else raise ValueError saying what is wrong."""
    if not key or not isinstance(key[0], str):
        raise ValueError("not a path starting with a field name")
    shapes = SHAPES.get(key[0])
    if shapes is None:
        return IGNORE
    best: tuple[int, str] = (-1, "")
    for shape in shapes:
        rest = key[1:]
        for depth, (part, want) in enumerate(zip(rest, shape)):
            why = _match(part, want)
            if why is not None:
                break
        else:
            if len(rest) == len(shape):
                return KEEP
            depth, why = min(len(rest), len(shape)), f"{len(key)} parts, not {len(shape) + 1}"
        best = max(best, (depth, why), key=lambda x: x[0])
    if best[1] == "newer":
        return IGNORE
    raise ValueError(f"{list(key)}: {best[1]}")


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
