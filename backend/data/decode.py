"""decode: raw kernel counter deltas -> a Sample. Pure: no root, no bcc, no clock.

The kernel layer (backend/kernel/collector.py: read_raw) reads every counter as a CUMULATIVE
count keyed `(family, *parts)`, parts in the order of the family's key positions
(backend/data/schema.py); the collector subtracts two reads and calls decode(). What a raw part
holds at a Name position is the position's `raw` kind:
    "device"  a DevId (netns id, ifindex)  -> names[dev] (unknown: "ifN" / "ifN@netns"; (0, 0):
              the position's `none`, the kernel named no device)
    "target"  a target slot (int) or a DevId -> names[slot] / names[dev]
    "errno"   a negative errno               -> its symbolic name ("ENXIO")
    "verdict" an XDP action value            -> "PASS", ... ("INVALID" outside 0..4)
    "name"    the name itself (a str)
Index and Members positions hold their values as they are. RAW_ALIASES name a family from
another source (the per-packet xdp_redirect tracepoint: "redirect_tp").

Sparseness (schema Family.sparse) decides which zeros are kept: None all, ENTRY an entry (the
values under the first position; of a one-position family, all of it) only if one of them is not
0, and then all of it (bins and members the raw read left out are 0), LEAF only leaves that are
not 0. The kernel layer may leave out counters still at 0: their delta is 0 either way.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping

from backend.data import schema
from backend.data.sample import Sample
from backend.data.schema import ENTRY, LEAF, VERDICTS, Index, Members, Name

RawDelta = Mapping[tuple, int]   # (family, *parts) -> count over the interval
Names = Mapping[Hashable, str]   # DevId -> device name, target slot -> target name


def decode(raw_delta: RawDelta, names: Names, t: float, dt: float) -> Sample:
    """The Sample of these deltas over [t - dt, t] (t rounded to microseconds, as traces keep it)."""
    return decode_parsed(((parse(key, names), n) for key, n in raw_delta.items()), t, dt)


@dataclass(frozen=True)
class Parsed:
    """What decode makes of one raw key: its family, the parts as the Sample holds them, and the
    entry its leaf belongs to (ENTRY sparseness keeps or leaves out an entry whole)."""
    name: str              # the family
    sparse: str | None     # the family's sparseness (an alias's own)
    aliased: bool          # named by RAW_ALIASES (another source of the family's counters)
    parts: tuple
    group: tuple           # (aliased, family, sparse, entry): the leaves decode keeps or drops together


def parse(key: tuple, names: Names) -> Parsed:
    """One raw key as decode reads it (names resolved now); ValueError for a key the schema does
    not know. A collector may keep these per key: decode_parsed() takes them."""
    fam, sparse = _family(key)
    aliased = key[0] != fam.name   # an alias may leave out trailing positions (a CPU)
    if not (len(key) - 1 == len(fam.positions) or aliased and 0 < len(key) - 1 < len(fam.positions)):
        raise ValueError(f"raw key {key!r}: {len(fam.positions)} parts expected ({fam.name})")
    parts = tuple(_part(p, pos, names, key) for p, pos in zip(key[1:], fam.positions))
    entry = parts[:1] if sparse == ENTRY and len(fam.positions) > 1 else ()
    return Parsed(fam.name, sparse, aliased, parts, (aliased, fam.name, sparse, entry))


def decode_parsed(items: Iterable[tuple[Parsed, int]], t: float, dt: float) -> Sample:
    """decode() of keys already parsed, in the raw read's order."""
    s = Sample(t=round(t, 6), dt=round(dt, 6))
    values: dict[str, Any] = {}
    entries: dict[tuple, list[tuple[tuple, int]]] = {}   # (aliased, family, sparse, entry) -> leaves
    for p, n in items:
        if not n and p.sparse == LEAF:
            continue
        leaves = entries.get(p.group)
        if leaves is None:
            leaves = entries[p.group] = []
        leaves.append((p.parts, n))
    touched: dict[str, schema.Family] = {}
    for (aliased, name, sparse, _), leaves in sorted(entries.items(), key=_aliased):
        if sparse == ENTRY and not any([n for _, n in leaves]):
            continue
        fam = touched.get(name)
        if fam is None:   # aliases last: the family's own counters of an entry win
            fam = touched[name] = schema.BY_NAME[name]
            if name not in values:
                values[name] = s.get(name)
        value, put = values[name], _putter(fam)
        for parts, n in leaves:
            if aliased:
                if parts[0] in value:
                    continue
                if len(parts) < len(fam.positions):   # the alias has no CPU: one, summed
                    parts = parts + (0,) * (len(fam.positions) - len(parts))
            value = put(fam, value, parts, n)
        values[name] = value
    for name, value in values.items():
        s.set(name, value)
    for name, fam in touched.items():
        index, members = _shape(fam)
        if index:     # (finish() leaves a value without an Index position as it is)
            schema.finish(fam, values[name])
        if members and fam.sparse == ENTRY:
            _members(fam, values[name], 0)
    return s


def _aliased(entry: tuple) -> bool:
    return entry[0][0]


def _put_i(fam: Any, root: list, parts: tuple, v: int) -> list:
    (a,) = parts
    if len(root) <= a:
        root.extend([0] * (a + 1 - len(root)))
    root[a] = v
    return root


def _put_n(fam: Any, root: dict, parts: tuple, v: int) -> dict:
    root[parts[0]] = v
    return root


def _put2(outer_index: bool, inner_index: bool):
    """schema.put unrolled for two positions; an Index position is a list (gaps 0), a Name one a dict."""
    def put(fam: Any, root: Any, parts: tuple, v: int) -> Any:
        a, b = parts
        if outer_index:
            if len(root) <= a:
                root.extend([None] * (a + 1 - len(root)))
            node = root[a]
        else:
            node = root.get(a)
        if node is None:
            node = root[a] = [] if inner_index else {}
        if inner_index and len(node) <= b:
            node.extend([0] * (b + 1 - len(node)))
        node[b] = v
        return root
    return put


_shapes: dict[str, tuple[schema.Family, tuple[bool, bool]]] = {}


def _shape(fam: schema.Family) -> tuple[bool, bool]:
    """(has an Index position, its last position is Members)."""
    got = _shapes.get(fam.name)
    if got is None or got[0] is not fam:
        ps = fam.positions
        got = _shapes[fam.name] = (fam, (any(isinstance(p, Index) for p in ps),
                                         bool(ps) and isinstance(ps[-1], Members)))
    return got[1]


_PUTS = {"I": _put_i, "N": _put_n, "II": _put2(True, True), "IN": _put2(True, False),
         "NI": _put2(False, True), "NN": _put2(False, False)}
_putters: dict[str, tuple[schema.Family, Any]] = {}


def _putter(fam: schema.Family):
    """schema.put for this family, unrolled for its one or two positions (Index: a list, else a
    dict); deeper or position-less families take schema.put itself."""
    got = _putters.get(fam.name)
    if got is None or got[0] is not fam:
        kinds = "".join("I" if isinstance(p, Index) else "N" for p in fam.positions)
        got = _putters[fam.name] = (fam, _PUTS.get(kinds, schema.put))
    return got[1]


def _members(fam: schema.Family, node: Any, i: int) -> None:
    """A written entry holds every member, 0 for one the kernel read left out (a counter still at
    0 since the start: its delta is 0)."""
    ps = fam.positions
    if i == len(ps) - 1:
        if isinstance(ps[i], Members) and node:
            for m in ps[i].names:
                node.setdefault(m, 0)
        return
    for child in (node.values() if isinstance(node, dict) else node):
        if child:
            _members(fam, child, i + 1)


def _family(key: tuple) -> tuple[schema.Family, str | None]:
    if not key or not isinstance(key[0], str):
        raise ValueError(f"raw key {key!r}: not (family, *parts)")
    fam = schema.BY_NAME.get(key[0])
    if fam is not None:
        return fam, fam.sparse
    alias = schema.RAW_ALIASES.get(key[0])
    if alias is None:
        raise ValueError(f"raw key {key!r}: no family {key[0]!r} in backend/data/schema.py")
    return alias


def _part(p: Any, pos: Any, names: Names, key: tuple) -> Any:
    """A raw part as the Sample holds it at this position."""
    if isinstance(pos, Name):
        if isinstance(p, tuple):                                    # a DevId
            return pos.none if p == (0, 0) else names.get(p) or device_name(p)
        if pos.raw == "errno" and isinstance(p, int):
            return errno.errorcode.get(-p, str(p))
        if pos.raw == "verdict" and isinstance(p, int):
            return VERDICTS[p] if 0 <= p < len(VERDICTS) else "INVALID"
        if pos.raw == "target" and isinstance(p, int):
            return names.get(p) or str(p)
        if isinstance(p, str) and p:
            return p
    elif isinstance(pos, Index):
        if isinstance(p, int) and 0 <= p < pos.n:
            return p
    elif isinstance(pos, Members):
        if p in pos.names:
            return p
    raise ValueError(f"raw key {key!r}: {p!r} does not fit {pos}")


def device_name(dev: tuple) -> str:
    """The name of a device nobody named: its ifindex (and netns id if not the collector's)."""
    ns, ifindex = dev
    return f"if{ifindex}" if not ns else f"if{ifindex}@{ns}"
