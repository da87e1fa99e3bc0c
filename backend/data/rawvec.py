"""Raw counters as one numpy vector: a slot per raw key, so a collector sample is a few numpy
operations (the delta, which slots to decode) and decode() of only what a Sample shows, run
again only when that set of slots changes (sample(): a template of decode's output is filled).

The kernel layer writes each source's cumulative counts into `cur` at the slots of its keys (made
once per key: `slots()`, or `region()`: contiguous, so a map's counts go there in one numpy
operation); a source whose keys changed (a new device in a hash map, a key that
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

import json
from operator import itemgetter
from typing import Any, Callable, Hashable, Iterable, Mapping

import numpy as np

from backend.data.decode import Parsed, decode_parsed, parse
from backend.data.sample import Sample
from backend.data.schema import BY_NAME, ENTRY, Index

Names = Mapping[Hashable, str]


class RawVector:
    """One collector's counters: the slots, this read and the last, what decode needs of them."""

    def __init__(self, names: Names, size: int = 256):
        self.names = names
        self.keys: list[tuple | None] = []     # slot -> raw key (None: a word of a region nothing reads)
        self.parsed: list[Parsed | None] = []  # slot -> decode.parse(key)
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
        self._stale = True                     # the layout changed: order, presence... made again
        self._dict_keys: dict[str, tuple] = {}   # a dict source's keys at its last layout
        self.generation = 0                    # +1 when cur is made anew (views of it are stale)
        self._tkey: bytes | None = None        # the slots the template below was decoded for
        self._tpl: dict[str, Callable] = {}    # family -> its value from the deltas (decode's, compiled)
        self._wire: Callable = dict            # the template's to_dict(), compiled alike
        self._made: tuple | None = None        # the last Sample sample() made, and its values
        self._json: tuple[str, Callable] = ("{}", lambda v: ())   # its JSON: a %-format, its leaves

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

    def region(self, keys: list[tuple | None], reuse: tuple[int, int] | None = None) -> tuple[int, int]:
        """Contiguous slots for these keys, in this order (a source then writes them with one
        numpy operation: a map's values summed over CPUs, rows x words); None: a word nothing
        reads. A key that had a slot moves here with its counts. Returns (first slot, size): a
        source whose keys change passes it back as `reuse`, and its region is used again when
        they fit (else a new one, twice as big: the vector stays in proportion to the keys)."""
        saved: dict[tuple, tuple] = {}
        if reuse is not None and len(keys) <= reuse[1]:
            start, size = reuse
            for i in range(start, start + size):     # the counts of its keys, then it is emptied
                k = self.keys[i]
                if k is not None:
                    saved[k] = (self.cur[i], self.last[i], self.parsed[i])
                    if self.index.get(k) == i:
                        del self.index[k]
                    self._set(i, None, None)
        else:
            size = max(len(keys), 2 * reuse[1]) if reuse is not None else len(keys)
            start = len(self.keys)
            if start + size > len(self.cur):
                self._grow(2 * (start + size))
            self.keys += [None] * size
            self.parsed += [None] * size
        for j, k in enumerate(keys):
            if k is None:
                continue
            i, old = start + j, self.index.get(k)
            if k in saved:
                c, l, p = saved[k]
            elif old is not None:   # (another source's slot until now)
                c, l, p = self.cur[old], self.last[old], self.parsed[old]
            else:
                c, l, p = 0, 0, parse(k, self.names)   # ValueError for a key the schema does not know
            self._set(i, k, p)
            self.cur[i], self.last[i] = c, l
        self._tkey = None   # (slots now hold other keys: the template is decode's for the old ones)
        return start, size

    def _new(self, key: tuple) -> int:
        i = len(self.keys)
        if i == len(self.cur):
            self._grow(2 * i)
        self.keys.append(None)
        self.parsed.append(None)
        self._set(i, key, parse(key, self.names))   # ValueError for a key the schema does not know
        return i

    def _set(self, i: int, key: tuple | None, p: Parsed | None) -> None:
        """Slot i holds this key now (None: nothing)."""
        self.keys[i], self.parsed[i] = key, p
        self.always[i], self.group[i], self.whole[i] = False, 0, False
        if key is None:
            return
        self.index[key] = i
        self.always[i] = p.sparse is None
        if p.sparse == ENTRY:
            self.group[i] = self._groups.setdefault(p.group, len(self._groups) + 1)
            # a zero bin of a histogram is left out (decode's finish() writes it: a list, no order);
            # a member is not (its place in the entry's dict is the read's order)
            fam = BY_NAME[p.name]
            last = fam.positions[len(p.parts) - 1] if p.parts else None
            self.whole[i] = not (isinstance(last, Index) and last.dense and len(p.parts) == len(fam.positions))

    def _grow(self, n: int) -> None:
        for name in ("cur", "last", "_d", "_hit", "always", "group", "whole", "present"):
            a = getattr(self, name)
            b = np.zeros(n, a.dtype)
            b[:len(a)] = a
            setattr(self, name, b)
        self.generation += 1

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
        self._sparse = ~self.always
        self._always_idx = self.order[self.always[self.order]]
        self._tkey = None
        self._stale = False

    # -- every read ------------------------------------------------------------------------------
    def put(self, source: str, raw: Mapping[tuple, int]) -> None:
        """A source read as a dict of cumulative counts (u64)."""
        keys = tuple(raw)
        if keys != self._dict_keys.get(source):
            self._dict_keys[source] = keys
            self.layout(source, self.slots(keys))
        self.cur[self.sources[source]] = np.fromiter(raw.values(), np.uint64, len(keys))

    def delta(self) -> tuple[np.ndarray, np.ndarray]:
        """The slots decode needs of cur - last (see the module's docstring), in the read's order,
        and their deltas; then this read becomes the last."""
        if self._stale:
            self._relayout()
        d = np.subtract(self.cur, self.last, out=self._d).view(np.int64)
        if d.any():
            hit = np.not_equal(d, 0, out=self._hit)
            ghit = self._ghit
            ghit[:] = False
            ghit[self.group[hit]] = True
            ghit[0] = False
            keep = self.always | (hit | (ghit[self.group] & self.whole)) & self._sparse
            order = self.order
            idx = order[keep[order]]
        else:
            idx = self._always_idx
        vals = d[idx]
        np.copyto(self.last, self.cur)
        return idx, vals

    def commit(self) -> None:
        """Take this read as the last without a delta (a baseline)."""
        if self._stale:
            self._relayout()
        np.copyto(self.last, self.cur)

    def sample(self, t: float, dt: float, extra: Iterable[tuple[Parsed, int]] = ()) -> Sample:
        """decode() of the deltas since the last read (and extra items: another source's).

        Which slots decode gets decides the Sample's shape, not their values: each is a LEAF
        counter that is not 0, a member of an ENTRY that counted, or of a family decode keeps
        whole. So the Sample of the same slots as the last one's is decode's output for them with
        the new values: decode runs when the slots change (a template whose leaves say which
        slot they are), and otherwise the template is filled."""
        idx, vals = self.delta()
        extra = list(extra)
        if extra:   # (a user program's maps: decoded as they come)
            self._made = None
            parsed = self.parsed
            items = [(parsed[i], n) for i, n in zip(idx.tolist(), vals.tolist())]
            return decode_parsed(items + extra, t, dt)
        key = idx.tobytes()
        if key != self._tkey:
            parsed = [self.parsed[i] for i in idx.tolist()]
            tpl = decode_parsed([(p, k + 1) for k, p in enumerate(parsed)], 0.0, 0.0)
            self._tkey = key
            self._tpl = {name: _compile(tpl.get(name)) for name in dict.fromkeys(p.name for p in parsed)}
            wire = tpl.to_dict()   # its shape does not depend on the values either
            del wire["t"], wire["dt"]
            self._wire = _compile(wire)
            self._json = _json_format(wire)
        s = Sample(t=round(t, 6), dt=round(dt, 6))
        v = [0, *vals.tolist()]
        for name, fill in self._tpl.items():
            s.set(name, fill(v))
        self._made = (s, v)
        return s

    def forget(self) -> None:
        """The last Sample was changed: to_dict() takes it as it is."""
        self._made = None

    def to_dict(self, s: Sample) -> dict:
        """s.to_dict() of the Sample sample() made last (the template's, filled), else s.to_dict().
        For a caller that has not changed the Sample since."""
        made = self._made
        if made is None or made[0] is not s:
            return s.to_dict()
        return {"t": s.t, "dt": s.dt, **self._wire(made[1])}

    def to_json(self, s: Sample) -> str | None:
        """json.dumps(self.to_dict(s), separators=(",", ":")) of the Sample sample() made last
        (unchanged since): the template's JSON with the values put in by one %-format; None for
        another Sample."""
        made = self._made
        if made is None or made[0] is not s:
            return None
        fmt, leaves = self._json
        return fmt % (s.t, s.dt, *leaves(made[1]))


def _json_format(wire: dict) -> tuple[str, Callable[[list[int]], tuple]]:
    """A sample's JSON (to_dict's form, json.dumps with separators (",", ":")) as a %-format:
    t and dt (%r: a float's repr is its JSON), then each leaf (%d, in the text's order); and the
    function that gives the leaves' values from the deltas (vals[leaf])."""
    order: list[int] = []

    def text(node: Any) -> str:
        if type(node) is dict:
            return "{" + ",".join(json.dumps(k).replace("%", "%%") + ":" + text(v) for k, v in node.items()) + "}"
        if type(node) is list:
            return "[" + ",".join(text(x) for x in node) + "]"
        order.append(node)
        return "%d"

    body = text(wire)
    fmt = '{"t":%r,"dt":%r' + ("," + body[1:] if body != "{}" else "}")
    if not order:
        return fmt, lambda v: ()
    get = itemgetter(*order)
    return fmt, (get if len(order) > 1 else lambda v: (get(v),))


def _compile(node: Any) -> Callable[[list[int]], Any]:
    """A function that makes a template's value with its leaves (1 + their place among the slots;
    0: a zero decode's finish() or an entry's missing member wrote) replaced by those slots'
    deltas (vals[leaf]; vals[0] is 0): new lists and dicts, leaves of a level in one C call."""
    if type(node) is list or type(node) is dict:
        keys = list(node) if type(node) is dict else None
        subs = list(node.values()) if keys is not None else node
        if all(type(x) is int for x in subs):
            if not subs:
                return (lambda v: {}) if keys is not None else (lambda v: [])
            get = itemgetter(*subs)
            if len(subs) == 1:
                return (lambda v: {keys[0]: get(v)}) if keys is not None else (lambda v: [get(v)])
            return (lambda v: dict(zip(keys, get(v)))) if keys is not None else (lambda v: list(get(v)))
        fills = [_compile(x) for x in subs]
        if keys is not None:
            pairs = list(zip(keys, fills))
            return lambda v: {k: f(v) for k, f in pairs}
        return lambda v: [f(v) for f in fills]
    return itemgetter(node)
