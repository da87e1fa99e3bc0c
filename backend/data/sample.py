"""The Sample: the one data type that flows from the collector to the recorder, the GUI and reports.

A sample holds *deltas* of raw kernel counters over one collector interval, never rates:
rates are delta / dt, totals are sums of deltas (never sums of rates).

Its counter fields are the families of backend/data/schema.py, one field per family, named as
the family, nested by the family's key positions (built here from the schema: adding a family
adds its field):
    verdicts[cpu][verdict]           targets[target][cpu]          flush[target][size 0..16]
    devmap[target]["sent"|"drops"]   oversize_flushes[target]      redirect_errors[target][errno]
    exceptions[verdict]              cpumap_bulk[size 0..8]        cpumap_drops (int; None: not measured)
    napi[device]["polls"|...]        napi_hist[device][bin 0..8]   driver[counter]
    run["cnt"|"ns"]                  user_maps[map][key]
A family registered after import (schema.add) lives in `extra[name]`.

Its JSON form (to_dict, the agent's wire and format_version 1 traces) nests the same leaves by
their trace keys (schema Family.key), as every earlier xdpscope wrote it: the verdicts family
nests under "actions", the name traces and the agent's samples have always given it.
"""
from __future__ import annotations

from dataclasses import field, make_dataclass
from typing import Any, Iterable

from backend.data import schema
from backend.data.schema import MAX_TARGETS, VERDICTS  # noqa: F401  (re-exported)

FLUSH_BINS = schema.FLUSH.positions[-1].n            # devmap flush sizes 0..16: exact bins
CPUMAP_BINS = schema.CPUMAP_BULK.positions[-1].n     # cpumap bulk sizes 0..8
NAPI_BINS = schema.NAPI_HIST.positions[-1].n         # napi work per poll, log2 bins
Leaf = tuple[tuple, int]  # (trace key, value)


def _get(self: Any, name: str) -> Any:
    """The value of a family's field (a family added at run time: its value in extra, or an empty
    one, not stored: set() stores)."""
    if name in self.__dataclass_fields__:
        return getattr(self, name)
    got = self.extra.get(name)
    return schema.BY_NAME[name].empty() if got is None else got


def _set(self: Any, name: str, value: Any) -> None:
    if name in self.__dataclass_fields__:
        setattr(self, name, value)
    else:
        self.extra[name] = value


def _verdict_totals(self: Any) -> list[int]:
    """Per-verdict totals over all CPUs."""
    return [sum(cpu[a] for cpu in self.verdicts) for a in range(len(VERDICTS))]


def _target_totals(self: Any) -> dict[str, int]:
    return {name: sum(per_cpu) for name, per_cpu in self.targets.items()}


def _leaves(self: Any) -> list[Leaf]:
    """Every counter of the sample with its trace key, zeros included (a zero is data: it says
    "measured"), in schema order."""
    out: list[Leaf] = []
    for fam in schema.FAMILIES:
        value = self.get(fam.name)
        if not fam.positions:
            if value is not None:   # None: not measured
                out.append((fam.key, value))
            continue
        out.extend((fam.fill(parts), v) for parts, v in schema.walk(fam, value))
    return out


def _to_dict(self: Any) -> dict:
    """Compact JSON-ready form: t, dt and the leaves nested by trace key (empty fields left out):
    nest(self.leaves()), built a node at a time rather than a leaf at a time (the agent does it
    for every sample); a value not nested as its family says takes the leaf path (which says why)."""
    root: dict = {}
    fields = self.__dict__
    try:
        for fam in schema.FAMILIES:
            value = fields[fam.name] if fam.name in fields else self.get(fam.name)
            if not value and value != 0:     # None (not measured), or an empty list or dict
                continue
            tree = _tree(fam.key, value)
            if tree is not _NOTHING:
                _merge(root, tree)
    except _Irregular:
        return {"t": self.t, "dt": self.dt, **nest(self.leaves())}
    return {"t": self.t, "dt": self.dt, **root}


class _Irregular(Exception):
    """A value _tree does not build as nest() would: nest() it."""


_NOTHING = object()   # a subtree without a leaf (nest() leaves it out)


def _tree(tpl: tuple, node: Any) -> Any:
    """The value at a key template's positions as nest() nests its leaves: literals become dict
    levels, Index positions lists (gaps 0), subtrees without a leaf left out."""
    if not tpl:
        if isinstance(node, (dict, list)):
            raise _Irregular
        return node
    head, rest = tpl[0], tpl[1:]
    if isinstance(head, str):
        sub = _tree(rest, node)
        return _NOTHING if sub is _NOTHING else {head: sub}
    if isinstance(node, list):
        if not rest:
            if node and all(type(x) is int for x in node):
                return list(node)
            raise _Irregular
        subs = [(i, _tree(rest, v)) for i, v in enumerate(node)]
        subs = [(i, v) for i, v in subs if v is not _NOTHING]
        if not subs:
            return _NOTHING
        out: list = [0] * (subs[-1][0] + 1)
        for i, v in subs:
            out[i] = v
        return out
    if not isinstance(node, dict) or any(type(k) is not str for k in node):
        raise _Irregular       # (int keys: nest() would make a list of them)
    out = {}
    for k, v in node.items():
        sub = _tree(rest, v)
        if sub is not _NOTHING:
            out[k] = sub
    return out or _NOTHING


def _merge(dst: dict, src: dict) -> None:
    """src's leaves into dst, as nest() puts leaves of several families under one trace field."""
    for k, v in src.items():
        have = dst.get(k)
        if have is None and k not in dst:
            dst[k] = v
        elif isinstance(have, dict) and isinstance(v, dict):
            _merge(have, v)
        else:
            raise _Irregular   # two families at one list, or a leaf where another has a level


def _from_leaves(cls: type, t: float, dt: float, pairs: Iterable[Leaf]) -> Any:
    """The Sample whose leaves these are; keys of a newer xdpscope are left out, a malformed key
    raises ValueError (schema.match)."""
    s = cls(t=t, dt=dt)
    touched: dict[str, schema.Family] = {}
    for key, value in pairs:
        got = schema.match(key)
        if got is None:
            continue
        fam, parts = got
        s.set(fam.name, schema.put(fam, s.get(fam.name), parts, value))
        touched[fam.name] = fam
    for name, fam in touched.items():
        schema.finish(fam, s.get(name))
    return s


def _from_dict(cls: type, d: dict) -> Any:
    """The inverse of to_dict (also reads an older xdpscope's sample dicts: the same nesting)."""
    return cls.from_leaves(d.get("t", 0.0), d.get("dt", 0.0), json_leaves(d))


def json_leaves(d: Any) -> list[Leaf]:
    """The leaves of a sample nested by trace key (to_dict's form, format_version 1 rows); fields
    of a newer xdpscope are left out. ValueError names a malformed path."""
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    out: list[Leaf] = []

    def walk(path: tuple, node: Any) -> None:  # at most MAX_DEPTH deep
        for k, v in (node.items() if isinstance(node, dict) else enumerate(node)):
            key = path + (k,)
            if isinstance(v, (dict, list)):
                if len(key) >= schema.MAX_DEPTH:
                    raise ValueError(f"{list(key)}: nested deeper than any counter")
                walk(key, v)
            else:
                out.append((key, v))

    for name in schema.FIELDS:
        x = d.get(name)
        if x is None:
            continue
        if isinstance(x, (dict, list)):
            walk((name,), x)
        else:
            out.append(((name,), x))
    return out


def nest(items: Iterable[Leaf]) -> dict[str, Any]:
    """(key, value) pairs -> {field: nested lists and dicts} (dicts whose keys are all ints become
    lists, dense): the inverse of flattening by trace key."""
    root: dict = {}
    for key, value in items:
        node = root
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value
    return {k: _lists(v) for k, v in root.items()}


def _lists(x: Any) -> Any:
    if not isinstance(x, dict):
        return x
    if x and all(isinstance(k, int) for k in x):
        out: list = [0] * (max(x) + 1)
        for k, v in x.items():
            out[k] = _lists(v)
        return out
    return {k: _lists(v) for k, v in x.items()}


def _make_sample() -> type:
    fields: list[tuple] = [("t", float), ("dt", float)]
    for fam in schema.FAMILIES:
        empty = fam.empty()   # a builtin factory: a Sample is made for every collector read
        fields.append((fam.name, Any, field(default=None) if empty is None else field(default_factory=type(empty))))
    fields.append(("extra", dict, field(default_factory=dict)))   # families added after import
    ns = {"get": _get, "set": _set, "verdict_totals": _verdict_totals, "target_totals": _target_totals,
          "leaves": _leaves, "to_dict": _to_dict, "from_leaves": classmethod(_from_leaves),
          "from_dict": classmethod(_from_dict),
          "__doc__": "Counter deltas over one interval [t - dt, t]; t is seconds since the session start. "
                     "One field per schema family (see the module's docstring)."}
    return make_dataclass("Sample", fields, namespace=ns)


Sample = _make_sample()
Sample.__module__ = __name__
