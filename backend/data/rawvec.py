"""Raw counters as one numpy vector: a slot per raw key, so a collector sample is a few numpy
operations (the delta, which slots to decode) and decode() of only what a Sample shows.

The kernel layer writes each source's cumulative counts into `cur` at the slots of its keys (made
once per key: `slots()`); a source whose keys changed (a new device in a hash map, a key that
left) calls `layout()` with its keys now. `delta()` then gives decode exactly what it would
get from the deltas of two dict reads (`{k: v - last.get(k, 0) for k, v in raw.items()}`):
    - keys absent from this read are left out (present: in a source's current layout);
    - zeros are left out where decode drops them anyway: a LEAF family's zero, an ENTRY whose
      leaves are all 0 (the leaves of an entry that counted are kept whole, zeros too, in the
      read's order, so dicts keep today's order);
    - families decode keeps zeros of (sparse None: verdicts, targets) are given whole.
Keys are parsed once (decode.parse: names resolved when the key is first seen; they do not change).
Counts are u64 (the kernel's); a delta is taken modulo 2**64, as an int64."""
from __future__ import annotations

from typing import Hashable, Iterable, Mapping

import numpy as np

from backend.data.decode import Parsed, decode_parsed, parse
from backend.data.sample import Sample
from backend.data.schema import BY_NAME, ENTRY, Index

Names = Mapping[Hashable, str]


class RawVector:
    def __init__(self, names: Names, size: int = 256):
        self.names = names
        self.keys: list[tuple] = []            # slot -> raw key
        self.parsed: list[Parsed] = []         # slot -> decode.parse(key)
        self.index: dict[tuple, int] = {}      # raw key -> slot
        self.cur = np.zeros(size, np.uint64)   # this read (sources write here)
        self.last = np.zeros(size, np.uint64)  # the read before
        self._d = np.zeros(size, np.uint64)
        self._hit = np.zeros(size, bool)
        self.always = np.zeros(size, bool)     # decode keeps its zeros (a family with sparse None)
        self.group = np.zeros(size, np.intp)   # ENTRY group + 1 (0: none)
        self.whole = np.zeros(size, bool)      # of an ENTRY group: given at 0 too when the group counted
        self._groups: dict[tuple, int] = {}
        self._ghit = np.zeros(1, bool)
        self.sources: dict[str, np.ndarray] = {}   # source -> its slots now, in the read's order
        self.order = np.zeros(0, np.intp)      # every present slot, sources in order
        self.present = np.zeros(size, bool)
        self._stale = False
        self._dict_keys: dict[str, tuple] = {}   # a dict source's keys at its last layout

    # -- layout (when keys change: rare) ------------------------------------------------------
    def slots(self, keys: Iterable[tuple]) -> np.ndarray:
        """The slots of these keys (new keys get new slots)."""
        out = []
        for k in keys:
            i = self.index.get(k)
            if i is None:
                i = self._new(k)
            out.append(i)
        return np.array(out, np.intp)

    def _new(self, key: tuple) -> int:
        p = parse(key, self.names)       # ValueError for a key the schema does not know
        i = len(self.keys)
        if i == len(self.cur):
            self._grow(2 * i)
        self.keys.append(key)
        self.parsed.append(p)
        self.index[key] = i
        self.always[i] = p.sparse is None
        if p.sparse == ENTRY:
            self.group[i] = self._groups.setdefault(p.group, len(self._groups) + 1)
            # a zero bin of a histogram is left out (decode's finish() writes it: a list, no order);
            # a member is not (its place in the entry's dict is the read's order)
            fam = BY_NAME[p.name]
            last = fam.positions[len(p.parts) - 1] if p.parts else None
            self.whole[i] = not (isinstance(last, Index) and last.dense and len(p.parts) == len(fam.positions))
        return i

    def _grow(self, n: int) -> None:
        for name in ("cur", "last", "_d", "_hit", "always", "group", "whole", "present"):
            a = getattr(self, name)
            b = np.zeros(n, a.dtype)
            b[:len(a)] = a
            setattr(self, name, b)

    def layout(self, source: str, slots: np.ndarray) -> None:
        """A source's slots now, in its read's order (keys not in it are absent from now on)."""
        self.sources[source] = slots
        self._stale = True

    def _relayout(self) -> None:
        srcs = list(self.sources.values())
        self.order = np.concatenate(srcs) if srcs else np.zeros(0, np.intp)
        self.present[:] = False
        self.present[self.order] = True
        self.cur[~self.present] = 0      # a key back after it left counts from 0, as a dict read's
        self.last[~self.present] = 0
        self._ghit = np.zeros(len(self._groups) + 1, bool)
        self._stale = False

    # -- every read ------------------------------------------------------------------------------
    def put(self, source: str, raw: Mapping[tuple, int]) -> None:
        """A source read as a dict of cumulative counts (u64)."""
        keys = tuple(raw)
        if keys != self._dict_keys.get(source):
            self._dict_keys[source] = keys
            self.layout(source, self.slots(keys))
        self.cur[self.sources[source]] = np.fromiter(raw.values(), np.uint64, len(keys))

    def delta(self) -> list[tuple[Parsed, int]]:
        """What decode needs of cur - last (see the module's docstring), in the read's order; then
        this read becomes the last."""
        if self._stale:
            self._relayout()
        d = np.subtract(self.cur, self.last, out=self._d).view(np.int64)
        hit = np.not_equal(d, 0, out=self._hit)
        ghit = self._ghit
        ghit[:] = False
        ghit[self.group[hit]] = True
        ghit[0] = False
        keep = hit | self.always | (ghit[self.group] & self.whole)
        order = self.order
        idx = order[keep[order]]
        self.cur, self.last = self.last, self.cur
        parsed = self.parsed
        return [(parsed[i], n) for i, n in zip(idx.tolist(), d[idx].tolist())]

    def commit(self) -> None:
        """Take this read as the last without a delta (a baseline)."""
        if self._stale:
            self._relayout()
        self.cur, self.last = self.last, self.cur

    def sample(self, t: float, dt: float, extra: Iterable[tuple[Parsed, int]] = ()) -> Sample:
        items = self.delta()
        items.extend(extra)
        return decode_parsed(items, t, dt)
