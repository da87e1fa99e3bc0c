"""The counter schema: every counter family xdpscope records, declared once.

A family names one kind of counter and says, in one place:
  - `key`: the shape of its leaf keys, as traces store them (docs/trace-format.md): literal strings
    and positions (Index: a list index; Name: any name; Members: one of a fixed set). The Sample
    field of the family nests its values by those positions, in order: ("flush", Name, Index(17))
    is `Sample.flush[target][size]`; a family with no positions is a plain int.
  - `agg`: how values of several samples combine: SUM (deltas add) or HISTOGRAM (deltas add, the
    bins of one distribution: the GUI's History keeps a wide one with names sparse).
  - `c_map` / `c_field` / `c_slot`: the BPF map (and struct member or array slot) it is read from,
    and `defines`: the -D constants the C is compiled with (sizes and bins: no literal in bpf/).
  - `sparse`: which zeros a sample leaves out (None: none; ENTRY: a whole entry of zeros;
    LEAF: every zero) - a zero that is written means "measured, nothing happened".

Every layer reads this table: decode (raw kernel reads -> Sample, backend/data/decode.py), the
Sample's fields (backend/data/sample.py builds them from it), Block columns and the trace's key
check (match), the GUI's History column groups (backend/data/history.py), summarize()'s
`counters`, and the C's constants (cflags()).

How to add a counter
--------------------
1. Declare a Family below (a name, its key shape, agg, sparse, its map and its -D constants) and
   append it to FAMILIES. The Sample gets a field of that name; decode, traces, Blocks, History
   and summarize() pick it up with no code. A family of a probe map (bpf/probes.c) also says
   how the probes read it: `c_key` (what the map's key holds), `c_field` / `c_slot` (the struct
   members or array slots its positions read) and `tracepoints` (the probes that fill the map);
   backend/kernel/probes.py reads it from that with no code.
2. Write its C: the map (sized by the -D constants, see `cflags()`), the line that fills it.
3. tests/test_schema.py round-trips every family (kernel-raw -> decode -> Sample -> trace ->
   Block -> History -> summary) from this table: a new family is tested with no change.
   docs/architecture.md "Worked example: adding a counter" is this for a per-CPU count of
   xdp_exception events, done on the real kernel by tests/test_add_counter.py.
A counter from elsewhere (the program's own maps, ethtool, BPF run stats: no c_key) is read by
the collector's read_raw (backend/kernel/collector.py) into raw keys (name, *parts) -> cumulative
count. Views that show a family by name (a plot, a report table, a metric) are written for it.

Devices: a raw key names a device by a DevId = (netns id, ifindex) (netns 0: the collector's own
namespace), never by ifindex alone; decode turns it into the name the trace stores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Iterator

VERDICTS = ("ABORTED", "DROP", "PASS", "TX", "REDIRECT")  # index == XDP action value
MAX_CPUS = 8192      # CONFIG_NR_CPUS tops out at 8192 (x86 MAXSMP)
MAX_NAME = 256       # characters of a name in a key (ifnames are 15; driver counter names are short)
MAX_TARGETS = 64     # redirect targets of one program (its devmap; backend/kernel/programs.py)
DEV_MAP_BULK_SIZE = 16   # kernel/bpf/devmap.c: a bulk queue flushes at 16 frames
CPU_MAP_BULK_SIZE = 8    # kernel/bpf/cpumap.c
NAPI_LOG2_BINS = 9       # napi work per poll: 0, 1, 2-3, 4-7, ... 64-127, >=128

SUM, HISTOGRAM = "sum", "histogram"
ENTRY, LEAF = "entry", "leaf"

DevId = tuple[int, int]  # (netns id, ifindex); netns 0 = the collector's own namespace


@dataclass(frozen=True)
class Index:
    """A list position 0..n-1. dense: the list always holds n entries (a histogram's bins);
    else as many as there are (CPUs)."""
    n: int
    what: str = "index"
    dense: bool = True


@dataclass(frozen=True)
class Name:
    """A dict position holding any non-empty name of at most MAX_NAME characters.
    raw: what a raw kernel key holds there - "name" (the name itself), "device" (a DevId),
    "target" (the program's target slot, or a DevId), "errno" (a negative errno), "verdict"
    (an XDP action value)."""
    what: str
    raw: str = "name"
    known: tuple[str, ...] = ()   # names a view lists from the start (at 0 until counted)
    none: str = "?"               # the name of DevId (0, 0), "no device" (raw "device"/"target")


@dataclass(frozen=True)
class Members:
    """A dict position holding one of a fixed set of names (an array dim fills it in order)."""
    names: tuple[str, ...]


Part = Any  # str (a literal) | Index | Name | Members


@dataclass(frozen=True)
class Family:
    name: str                        # the Sample field, and the name raw keys start with
    key: tuple                       # leaf key template: key[0] is the trace's field name
    doc: str
    agg: str = SUM
    sparse: str | None = LEAF
    c_map: str | None = None         # BPF map (None: not from our C: ethtool, prog info...)
    c_field: str | None = None       # struct member(s) of the map's value (one per Members name)
    c_slot: int | None = None        # first slot: in the c_field array, or of an array map read as one value
    defines: dict[str, int] = field(default_factory=dict)
    # how backend/kernel/probes.py reads c_map (a map of bpf/probes.c): what its key holds ("dev":
    # a DevId, "dev_errno": a DevId and an errno, "index": an array index, "cpu": the CPU of a
    # per-CPU array's one entry, "slots": an array read as one value; probes.KEYS), and the
    # tracepoints that fill it (the map is read while one of them is on)
    c_key: str | None = None
    tracepoints: tuple[str, ...] = ()

    @cached_property
    def positions(self) -> tuple:
        """The key's non-literal parts (computed once: decode asks for every raw key)."""
        return tuple(p for p in self.key[1:] if not isinstance(p, str))

    @property
    def width(self) -> int:
        """Array slots the family's dims take (its trailing Index/Members positions)."""
        n = 1
        for p in self.positions:
            n *= p.n if isinstance(p, Index) else len(p.names) if isinstance(p, Members) else 1
        return n

    def empty(self) -> Any:
        """The Sample field's value with nothing in it (None for a plain int: not measured)."""
        ps = self.positions
        return None if not ps else [] if isinstance(ps[0], Index) else {}

    def fill(self, parts: tuple) -> tuple:
        """The leaf key of the values at these positions."""
        it = iter(parts)
        return tuple(p if isinstance(p, str) else next(it) for p in self.key)


DEVICE = Name("target", raw="device")
DEVMAP_XMIT, NAPI_POLL, CPUMAP_ENQ = ("xdp:xdp_devmap_xmit",), ("napi:napi_poll",), ("xdp:xdp_cpumap_enqueue",)
DEVICE_NAME = Name("device", raw="device", none="(no device)")  # a napi without a net_device
# the trace key (and the JSON of samples and summaries) says "actions", as every earlier xdpscope
# wrote it: older traces and agents stay readable
VERDICTS_F = Family("verdicts", ("actions", Index(MAX_CPUS, "cpu", dense=False), Index(len(VERDICTS), "verdict")),
                    "verdicts the program returned, per CPU (program counters, or the driver's when watching)",
                    sparse=None, c_map="xs_counters", c_field="verdict",
                    # the mask keeps the verifier sure of the index: verdicts round up to a power of two
                    defines={"XS_VERDICTS": len(VERDICTS), "XS_VERDICT_MASK": (1 << (len(VERDICTS) - 1).bit_length()) - 1})
TARGETS = Family("targets", ("targets", Name("target", raw="target"), Index(MAX_CPUS, "cpu", dense=False)),
                 "frames the program redirected to each target, per CPU", sparse=None,
                 c_map="xs_counters", c_field="target", defines={"XS_MAX_TARGETS": MAX_TARGETS})
FLUSH = Family("flush", ("flush", DEVICE, Index(DEV_MAP_BULK_SIZE + 1, "size")),
               "devmap bulk-queue flushes by size (sent + drops of one xdp_devmap_xmit): bins 0..16 exact",
               agg=HISTOGRAM, sparse=ENTRY, c_map="xs_devtx", c_field="flush", c_key="dev",
               tracepoints=DEVMAP_XMIT,
               defines={"XS_DEV_MAP_BULK_SIZE": DEV_MAP_BULK_SIZE,
                        # one slot more for a flush larger than a bulk queue holds (impossible today,
                        # counted apart, never folded into bin 16); slots a power of two: the C masks
                        "XS_FLUSH_OVERSIZE": DEV_MAP_BULK_SIZE + 1, "XS_FLUSH_SLOTS": 1 << (DEV_MAP_BULK_SIZE + 1).bit_length()})
DEVMAP = Family("devmap", ("devmap", DEVICE, Members(("sent", "drops"))),
                "frames devmap flushes transmitted and dropped, per target", sparse=ENTRY,
                c_map="xs_devtx", c_field="sent,drops", c_key="dev", tracepoints=DEVMAP_XMIT)
OVERSIZE = Family("oversize_flushes", ("devmap", DEVICE, "oversize_flushes"),
                  "flushes of more than DEV_MAP_BULK_SIZE frames, per target", c_map="xs_devtx",
                  c_field="flush", c_slot=DEV_MAP_BULK_SIZE + 1, c_key="dev", tracepoints=DEVMAP_XMIT)
REDIRECT_ERRORS = Family("redirect_errors", ("redirect_errors", DEVICE, Name("errno", raw="errno")),
                         "frames whose redirect failed, per target and errno (enqueue and flush)",
                         c_map="xs_rerr", c_key="dev_errno", defines={"XS_RERR_ENTRIES": 1024},
                         # flushes that failed (xdp_devmap_xmit's err) count there too
                         tracepoints=("xdp:xdp_redirect_err", *DEVMAP_XMIT))
EXCEPTIONS = Family("exceptions", ("exceptions", Name("verdict", raw="verdict", known=VERDICTS)),
                    "xdp:xdp_exception events, per verdict (INVALID: outside 0..4)",
                    c_map="xs_exc", c_key="index", tracepoints=("xdp:xdp_exception",),
                    defines={"XS_EXC_SLOTS": len(VERDICTS) + 1, "XS_EXC_INVALID": len(VERDICTS)})
CPUMAP_BULK = Family("cpumap_bulk", ("cpumap", "bulk", Index(CPU_MAP_BULK_SIZE + 1, "bulk size")),
                     "cpumap enqueue bulks by size (processed, drops included): bins 0..8", agg=HISTOGRAM,
                     sparse=ENTRY, c_map="xs_cpumap", c_slot=0, c_key="slots", tracepoints=CPUMAP_ENQ,
                     defines={"XS_CPU_MAP_BULK_SIZE": CPU_MAP_BULK_SIZE, "XS_CPUMAP_DROPS": CPU_MAP_BULK_SIZE + 1,
                              "XS_CPUMAP_SLOTS": CPU_MAP_BULK_SIZE + 2})
CPUMAP_DROPS = Family("cpumap_drops", ("cpumap", "drops"), "frames cpumap enqueue dropped",
                      c_map="xs_cpumap", c_slot=CPU_MAP_BULK_SIZE + 1, c_key="slots", tracepoints=CPUMAP_ENQ)
NAPI = Family("napi", ("napi", DEVICE_NAME, Members(("polls", "work", "budget", "full"))),
              "NAPI polls per device: polls, frames processed (work), budget, polls using all of it",
              c_map="xs_napi", c_field="polls,work,budget,full", c_key="dev", tracepoints=NAPI_POLL,
              defines={"XS_NAPI_ENTRIES": 256})
NAPI_HIST = Family("napi_hist", ("napi", DEVICE_NAME, "hist", Index(NAPI_LOG2_BINS, "work bin")),
                   "NAPI work per poll, log2 bins 0, 1, 2-3, 4-7, ... 64-127, >=128", agg=HISTOGRAM,
                   sparse=ENTRY, c_map="xs_napi", c_field="hist", c_key="dev", tracepoints=NAPI_POLL,
                   defines={"XS_NAPI_BINS": NAPI_LOG2_BINS})
DRIVER = Family("driver", ("driver", Name("counter")), "the driver's counters (ethtool -S)")
RUN = Family("run", ("run", Members(("cnt", "ns"))), "kernel BPF run statistics: runs and run time (ns)")
# a user program's own numeric maps (backend/kernel/user_maps.py: read whole, per-CPU values summed);
# key = the map's key as a decimal string. Owner: FIDELITY.
USER_MAPS = Family("user_maps", ("user_maps", Name("map"), Name("key")),
                   "a user program's own array/hash maps of integers: the change of each entry's value")

# cpumap fan-out and kthreads (xdp:xdp_cpumap_enqueue / xdp_cpumap_kthread), per CPU. Owner: PROBES.
CPUMAP_ENQUEUE = Family("cpumap_enqueue", ("cpumap_enqueue", Index(MAX_CPUS, "cpu", dense=False),
                                           Members(("processed", "drops", "bulks"))),
                        "cpumap fan-out per target CPU: frames enqueued to its queue (drops included), "
                        "frames dropped (queue full), enqueue bulks", sparse=ENTRY, c_map="xs_cpu_enq",
                        c_field="processed,drops,bulks", c_key="index", tracepoints=CPUMAP_ENQ)
CPUMAP_KTHREAD = Family("cpumap_kthread", ("cpumap_kthread", Index(MAX_CPUS, "cpu", dense=False),
                                           Members(("processed", "drops", "sched"))),
                        "cpumap kthreads per CPU they run on: frames processed, dropped, rounds that "
                        "scheduled out (xdp-monitor's kthread line)", sparse=ENTRY, c_map="xs_kthread",
                        c_field="processed,drops,sched", c_key="cpu", tracepoints=("xdp:xdp_cpumap_kthread",))
FAMILIES: tuple[Family, ...] = (VERDICTS_F, TARGETS, FLUSH, DEVMAP, OVERSIZE, REDIRECT_ERRORS, EXCEPTIONS,
                                CPUMAP_BULK, CPUMAP_DROPS, NAPI, NAPI_HIST, DRIVER, RUN, USER_MAPS,
                                CPUMAP_ENQUEUE, CPUMAP_KTHREAD)
BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}
# raw keys another source names a family by: name -> (family, sparse). The per-packet
# xdp:xdp_redirect tracepoint counts redirects of programs that are not ours, summed over CPUs;
# the program's own counters of a target win over it.
RAW_ALIASES: dict[str, tuple[Family, str | None]] = {"redirect_tp": (TARGETS, ENTRY)}
# what the probes read under an alias's name (not a Sample field: decode maps it by RAW_ALIASES)
ALIAS_SOURCES: tuple[Family, ...] = (
    Family("redirect_tp", ("redirect_tp", DEVICE), "frames xdp:xdp_redirect saw redirected, per target",
           c_map="xs_redir", c_key="dev", tracepoints=("xdp:xdp_redirect",)),)
FIELDS = tuple(dict.fromkeys(f.key[0] for f in FAMILIES))  # the trace's field names, in order
MAX_DEPTH = max(len(f.key) for f in FAMILIES)
KEEP, IGNORE = "keep", "ignore"


def add(family: Family) -> None:
    """Register a family at run time (tests, extensions). A family in FAMILIES when the Sample
    class is built is a Sample field; one added later lives in Sample.extra under its name.
    Every layer reads the table when it runs, so both round-trip alike."""
    if family.name in BY_NAME:
        raise ValueError(f"schema: a family {family.name!r} exists")
    _set((*FAMILIES, family))


def remove(name: str) -> None:
    """Unregister a family added with add()."""
    _set(tuple(f for f in FAMILIES if f.name != name))


def _set(families: tuple[Family, ...]) -> None:
    global FAMILIES, FIELDS, MAX_DEPTH
    FAMILIES = families
    BY_NAME.clear()
    BY_NAME.update((f.name, f) for f in families)
    FIELDS = tuple(dict.fromkeys(f.key[0] for f in families))
    MAX_DEPTH = max(len(f.key) for f in families)
    _match_cached.cache_clear()


def cflags() -> list[str]:
    """-D flags with every family's constants, for the C (bpf/probes.c, bpf/xdpscope.h)."""
    out: dict[str, int] = {}
    for f in FAMILIES:
        for k, v in f.defines.items():
            if out.setdefault(k, v) != v:
                raise ValueError(f"schema: {k} defined twice with different values")
    return [f"-D{k}={v}" for k, v in out.items()]


def define(name: str) -> int:
    for f in FAMILIES:
        if name in f.defines:
            return f.defines[name]
    raise KeyError(name)


# -- matching a leaf key to its family ----------------------------------------------------------

def _why(part: Any, want: Any) -> str | None:
    """None if part fits the position, "newer" for a string a newer xdpscope may write there, else why not."""
    if isinstance(want, Name):
        if isinstance(part, str) and 0 < len(part) <= MAX_NAME:
            return None
        return f"{part!r} is not a name (1..{MAX_NAME} characters)"
    if isinstance(want, Index):
        if isinstance(part, int) and not isinstance(part, bool) and 0 <= part < want.n:
            return None
        return f"{part!r} is not an index 0..{want.n - 1}"
    names = (want,) if isinstance(want, str) else want.names
    if part in names and isinstance(part, str):
        return None
    return "newer" if isinstance(part, str) else f"{part!r} is not one of {sorted(names)}"


def _by_field() -> dict[str, list[Family]]:
    out: dict[str, list[Family]] = {}
    for f in FAMILIES:
        out.setdefault(f.key[0], []).append(f)
    return out


@lru_cache(maxsize=1 << 16)
def _match_cached(key: tuple) -> tuple[Family, tuple] | str:
    fams = _by_field().get(key[0])
    if fams is None:
        return IGNORE
    best: tuple[int, str] = (-1, "")
    for fam in fams:
        rest, shape = key[1:], fam.key[1:]
        for depth, (part, want) in enumerate(zip(rest, shape)):
            why = _why(part, want)
            if why is not None:
                break
        else:
            if len(rest) == len(shape):
                return fam, tuple(p for p, w in zip(rest, shape) if not isinstance(w, str))
            depth, why = min(len(rest), len(shape)), f"{len(key)} parts, not {len(shape) + 1}"
        best = max(best, (depth, why), key=lambda x: x[0])
    return IGNORE if best[1] == "newer" else f"{list(key)}: {best[1]}"


def match(key: tuple) -> tuple[Family, tuple] | None:
    """(family, the key's position values) for a leaf key of a known shape; None for one a newer
    xdpscope may write (an unknown field, or an unknown name where this one knows a fixed set:
    readers ignore what they do not know); ValueError saying what is wrong otherwise."""
    if not key or not isinstance(key[0], str):
        raise ValueError("not a path starting with a field name")
    try:
        got = _match_cached(key)
    except TypeError:  # an unhashable part (a list from JSON)
        raise ValueError(f"{list(key)!r} is not a path of names and indexes") from None
    if got == IGNORE:
        return None
    if isinstance(got, str):
        raise ValueError(got)
    return got


def check_key(key: tuple) -> str:
    """KEEP, IGNORE (see match) or ValueError."""
    return KEEP if match(key) is not None else IGNORE


# -- nested values <-> leaves --------------------------------------------------------------------

def walk(fam: Family, value: Any) -> Iterator[tuple[tuple, Any]]:
    """(positions, leaf value) of every leaf of a Sample field's value, zeros included; a value
    not nested as the family's positions say raises ValueError."""
    depth = len(fam.positions)
    if not depth:
        if value is not None:
            yield (), value
        return
    stack = [((), value)]
    while stack:
        parts, node = stack.pop()
        if not isinstance(node, (dict, list)):
            raise ValueError(f"{fam.name}: {[*parts]} holds {node!r}, not a list or dict of {depth - len(parts)} "
                             "more levels")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        if len(parts) + 1 == depth:
            for k, v in items:
                if isinstance(v, (dict, list)):
                    raise ValueError(f"{fam.name}: {[*parts, k]} holds a {type(v).__name__}, not a counter")
                yield parts + (k,), v
        else:
            stack.extend(reversed([(parts + (k,), v) for k, v in items]))


def put(fam: Family, root: Any, parts: tuple, value: Any) -> Any:
    """Set the leaf at parts in a field value (lists grow as needed, gaps None until finish());
    returns the (new) root: a family without positions is its value."""
    ps = fam.positions
    if not ps:
        return value
    node = root
    for i, (part, pos) in enumerate(zip(parts, ps)):
        last = i == len(ps) - 1
        if isinstance(pos, Index):
            if len(node) <= part:
                node.extend([0 if last else None] * (part + 1 - len(node)))
            if last:
                node[part] = value
            else:
                if node[part] is None:
                    node[part] = [] if isinstance(ps[i + 1], Index) else {}
                node = node[part]
        elif last:
            node[part] = value
        else:
            node = node.setdefault(part, [] if isinstance(ps[i + 1], Index) else {})
    return root


def finish(fam: Family, root: Any) -> Any:
    """After the puts: dense Index positions hold all their bins (a histogram is never shorter
    than its bins), list gaps become zeros / empty containers. Members stay as put (absent: not
    measured)."""
    ps = fam.positions

    def fix(node: Any, i: int) -> None:
        pos, last = ps[i], i == len(ps) - 1
        if isinstance(pos, Index):
            if pos.dense and len(node) < pos.n:
                node.extend([0 if last else None] * (pos.n - len(node)))
            children = enumerate(node)
        else:
            children = node.items()
        if not last:
            for k, v in list(children):
                if v is None:
                    node[k] = v = [] if isinstance(ps[i + 1], Index) else {}
                fix(v, i + 1)
    if ps:
        fix(root, 0)
    return root
