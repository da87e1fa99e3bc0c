"""The kernel path of a session as a diagram: a table of functions (nodes) and hand-overs (edges) per
driver, with the numbers of one time window on them, and a computed layout.

Every number is an expression over the result of backend.data.summary.summarize() for the window (a JSON
path into it, or a sum / difference / quotient of such paths), so the GUI's live view, a replay, an
A-B range and a report show the same numbers by construction: they differ only in the summary they
are given. Numbers that are a summary value are *measured*; the others are *derived*, and say so.

No Qt here: the GUI (gui/path_view.py) draws the nodes and edges this module places, and to_svg()
writes the same diagram for reports, each number in a <tspan> carrying its data-key (or data-expr).
"""
from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from backend.data.sample import VERDICTS

BULK = 16   # DEV_MAP_BULK_SIZE (kernel/bpf/devmap.c): a devmap bulk queue sends at 16 frames
ELIXIR = "https://elixir.bootlin.com/linux/{version}/A/ident/{func}"

# Where each function lives (shown in the click text; the link is an identifier search, which
# finds the definition in that kernel version whatever its line number).
FILES = {
    "virtnet_poll": "drivers/net/virtio_net.c", "virtnet_receive": "drivers/net/virtio_net.c",
    "receive_buf": "drivers/net/virtio_net.c", "receive_mergeable": "drivers/net/virtio_net.c",
    "receive_small": "drivers/net/virtio_net.c", "virtnet_xdp_handler": "drivers/net/virtio_net.c",
    "page_to_skb": "drivers/net/virtio_net.c", "virtnet_xdp_xmit": "drivers/net/virtio_net.c",
    "skb_recv_done": "drivers/net/virtio_net.c",
    "veth_poll": "drivers/net/veth.c", "veth_xdp_rcv": "drivers/net/veth.c",
    "veth_xdp_rcv_skb": "drivers/net/veth.c", "veth_xdp_rcv_one": "drivers/net/veth.c",
    "veth_xdp_tx": "drivers/net/veth.c", "veth_xdp_flush_bq": "drivers/net/veth.c",
    "veth_xmit": "drivers/net/veth.c", "veth_ndo_xdp_xmit": "drivers/net/veth.c",
    "bpf_prog_run_xdp": "include/linux/filter.h", "xdp_do_redirect": "net/core/filter.c",
    "xdp_do_flush": "net/core/filter.c", "dev_map_enqueue": "kernel/bpf/devmap.c",
    "bq_enqueue": "kernel/bpf/devmap.c", "__dev_flush": "kernel/bpf/devmap.c",
    "bq_xmit_all": "kernel/bpf/devmap.c", "cpu_map_enqueue": "kernel/bpf/cpumap.c",
    "__cpu_map_flush": "kernel/bpf/cpumap.c", "do_xdp_generic": "net/core/dev.c",
    "netif_receive_generic_xdp": "net/core/dev.c", "bpf_prog_run_generic_xdp": "net/core/dev.c",
    "generic_xdp_tx": "net/core/dev.c", "xdp_do_generic_redirect": "net/core/filter.c",
    "napi_gro_receive": "net/core/gro.c", "trace_xdp_exception": "include/trace/events/xdp.h",
    "kfree_skb": "net/core/skbuff.c", "__napi_poll": "net/core/dev.c",
}


# -- numbers ----------------------------------------------------------------------------------------

def key(*path: Any) -> list:
    return ["key", list(path)]


def evaluate(expr: list, s: dict) -> float | int | None:
    """The value of an expression over a summary: ["key", path] (absent = 0), ["add", a, ...],
    ["sub", a, b], ["div", a, b] (None when b is 0), ["const", v]."""
    op = expr[0]
    if op == "key":
        v: Any = s
        for k in expr[1]:
            v = v.get(k) if isinstance(v, dict) else (v[k] if isinstance(v, list) and isinstance(k, int)
                                                      and 0 <= k < len(v) else None)
            if v is None:
                return 0
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    if op == "const":
        return expr[1]
    args = [evaluate(a, s) for a in expr[1:]]
    if any(a is None for a in args):
        return None
    if op == "add":
        return sum(args)
    if op == "sub":
        return args[0] - args[1]
    if op == "div":
        return args[0] / args[1] if args[1] else None
    raise ValueError(f"unknown operator {op!r}")


def fmt(v: float | int | None, kind: str) -> str:
    """Visible text, as the report's tables write it (gui/report.py fmt_value)."""
    if v is None:
        return "–"
    if kind == "int":
        return f"{int(round(v)):,}"
    if kind == "rate":  # as gui/si.py rate_text: an integer from 100, else one decimal
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"
    return f"{float(v):,.{ {'mean': 2, 'pct': 2}[kind] }f}"


@dataclass
class Num:
    """One number on the diagram: an expression over the window's summary, evaluated."""
    expr: list
    kind: str = "int"
    value: float | int | None = None
    text: str = ""

    @property
    def measured(self) -> bool:
        return self.expr[0] == "key"

    def eval(self, s: dict) -> "Num":
        self.value = evaluate(self.expr, s)
        self.text = fmt(self.value, self.kind)
        return self


Part = str | Num


@dataclass
class Node:
    id: str
    title: str                       # the kernel function(s), as in the code
    sub: str = ""                    # what it is, in words
    lines: list[list[Part]] = field(default_factory=list)
    measured_by: str = ""            # which counter or probe measures it, in the project's words
    funcs: list[str] = field(default_factory=list)   # linked to the kernel source
    kind: str = "func"               # func | queue | loss | sink | target | idle
    hist: list[tuple[int, Num]] | None = None        # flush sizes 0..16 (16 marked)
    brief_lines: int = 2             # lines kept in the brief form
    links: list[tuple[str, str]] = field(default_factory=list)
    # layout (px); rows: the lines wrapped to the node's width, title_rows: the title's
    rows: list[list[Part]] = field(default_factory=list)
    title_rows: list[str] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0

    def nums(self) -> list[Num]:
        out = [p for line in self.lines for p in line if isinstance(p, Num)]
        return out + [n for _, n in (self.hist or [])]

    def text(self) -> str:
        """Its lines as plain text (hover, tests)."""
        return "\n".join("".join(p.text if isinstance(p, Num) else p for p in line) for line in self.lines)


@dataclass
class Edge:
    src: str
    dst: str
    label: str                       # e.g. "REDIRECT", "sent"
    frames: Num
    rate: Num
    loss: bool = False
    show_label: bool = True          # False where the same count is written on the edge before it
    derived_note: str = ""           # how a derived count is obtained
    also: list[tuple[str, Num]] = field(default_factory=list)  # other counts of the same frames (driver)
    way: str = "right"               # right: src right side -> dst left side; down: bottom -> top
    width: float = 1.0
    points: list[tuple[float, float]] = field(default_factory=list)  # start, control 1, control 2, end

    def nums(self) -> list[Num]:
        return [self.frames, self.rate] + [n for _, n in self.also]

    def hover(self) -> str:
        how = "measured" if self.frames.measured else f"derived: {self.derived_note}"
        out = f"{self.label}: {self.frames.text} frames, {self.rate.text} frames/s in the window ({how})"
        for name, n in self.also:
            out += f"; {name}: {n.text}"
        return out


@dataclass
class Path:
    title: str
    driver: str
    mode: str
    kernel: str
    version: str
    nodes: list[Node]
    edges: list[Edge]
    notes: list[str]
    queues: list[int]                # RX queues with XDP counts in the window
    expanded: bool                   # one row per RX queue
    brief: bool = False              # the small form (build)
    width: float = 0.0
    height: float = 0.0

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def edge(self, src: str, dst: str) -> Edge:
        return next(e for e in self.edges if e.src == src and e.dst == dst)

    def nums(self) -> list[Num]:
        return [n for x in [*self.nodes, *self.edges] for n in x.nums()]


# -- what the summary holds ---------------------------------------------------------------------------

def kernel_version(kernel: str | None) -> str:
    """Elixir's tag for a kernel release: 6.1.0-56-amd64 -> v6.1; unknown -> latest."""
    m = re.match(r"(\d+)\.(\d+)", kernel or "")
    return f"v{m.group(1)}.{m.group(2)}" if m else "latest"


def _version_tuple(kernel: str | None) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", kernel or "")
    return (int(m.group(1)), int(m.group(2))) if m else (99, 0)


def link(func: str, version: str) -> str:
    return ELIXIR.format(version=version, func=func)


QUEUE_RE = re.compile(r"rx(?:_queue_)?(\d+)_xdp_(packets|drops|tx|redirects|redirect|tx_errors)$")


def _nonzero(d: Any) -> dict:
    return {k: v for k, v in d.items() if v} if isinstance(d, dict) else {}


def _counters(s: dict, patterns: Iterable[str]) -> list[str]:
    """Names of the driver counters (nonzero in the window) of the first pattern that has any:
    * = a queue number (names changed across kernels: rx_queue_0_xdp_tx, rx0_xdp_tx, rx_xdp_tx)."""
    have = _nonzero(s.get("driver_counters"))
    for p in patterns:
        rx = re.compile("^" + re.escape(p).replace(r"\*", r"\d+") + "$")
        names = sorted(n for n in have if rx.match(n))
        if names:
            return names
    return []


def _sum_expr(names: list[str]) -> list:
    return key("driver_counters", names[0]) if len(names) == 1 else ["add", *(key("driver_counters", n) for n in names)]


def queues(s: dict) -> dict[int, dict[str, str]]:
    """RX queue -> counter kind -> driver counter name, for queues with XDP counts in the window."""
    out: dict[int, dict[str, str]] = {}
    for name in _nonzero(s.get("driver_counters")):
        m = QUEUE_RE.match(name)
        if m:
            kind = {"redirect": "redirects"}.get(m.group(2), m.group(2))
            out.setdefault(int(m.group(1)), {})[kind] = name
    return {q: out[q] for q in sorted(out) if "packets" in out[q]}


def queues_differ(s: dict, qs: dict[int, dict[str, str]]) -> bool:
    dc = s.get("driver_counters") or {}
    rows = {tuple(dc.get(qs[q].get(k), 0) for k in ("packets", "drops", "tx", "redirects")) for q in qs}
    return len(rows) > 1


def active_polls(s: dict, dev: str) -> list:
    """Polls of dev that received frames: polls minus the polls with work 0 (napi hist bin 0)."""
    return ["sub", key("napi", dev, "polls"), key("napi", dev, "hist", 0)]


def predicted_flushes(frames: int, polls: int) -> dict[int, int]:
    """Flush sizes if `frames` to one target were spread as evenly as they can be over `polls`
    polls (each poll carrying frames // polls or one more, as round-robin does with polls alike):
    a poll with m frames for a target flushes 16 at a time while filling, then the rest at its end."""
    out: dict[int, int] = {}
    if polls <= 0 or frames <= 0:
        return out
    base, extra = divmod(frames, polls)
    for m, n in ((base + 1, extra), (base, polls - extra)):
        if m <= 0 or n <= 0:
            continue
        full, last = (m - 1) // BULK, m - BULK * ((m - 1) // BULK)
        if full:
            out[BULK] = out.get(BULK, 0) + n * full
        out[last] = out.get(last, 0) + n
    return out


# -- the diagram ------------------------------------------------------------------------------------

@dataclass
class _Ctx:
    s: dict
    version: str
    dur: list = field(default_factory=lambda: key("duration_s"))

    def num(self, expr: list, kind: str = "int") -> Num:
        return Num(expr, kind).eval(self.s)

    def rate(self, expr: list) -> Num:
        return self.num(["div", expr, self.dur], "rate")

    def has(self, expr: list) -> bool:
        v = evaluate(expr, self.s)
        return bool(v)


def _driver_family(s: dict) -> str:
    mode, drv = s.get("mode") or (s.get("meta") or {}).get("mode"), s.get("driver") or ""
    if mode == "generic":
        return "generic"
    return drv if drv in ("virtio_net", "veth") else "other"


def _mergeable(meta: dict) -> bool | None:
    """virtio_net's receive path: receive_mergeable with mergeable rx buffers (VIRTIO_NET_F_MRG_RXBUF
    negotiated, recorded by the session as meta["native"]["features"]), else receive_small."""
    feats = (meta.get("native") or {}).get("features") if isinstance(meta.get("native"), dict) else None
    if not isinstance(feats, list):
        return None
    return "MRG_RXBUF" in feats


def build(s: dict, expand: bool | None = None, brief: bool = False) -> Path:
    """The path of the window summarized in s (backend.data.summary.summarize() output, or the GUI's
    equivalent for its history). expand: one row per RX queue (None: when the queues differ).
    brief: a smaller diagram for a small dock: each node keeps its first lines (its main numbers;
    hover and click give them all), no subtitles, and edge labels only where they fit."""
    meta = s.get("meta") or {}
    c = _Ctx(s, kernel_version(meta.get("kernel")))
    fam = _driver_family(s)
    iface = s.get("iface") or meta.get("iface") or "?"
    qs = queues(s)
    if expand is None:
        expand = len(qs) > 1 and queues_differ(s, qs)
    nodes: list[Node] = []
    edges: list[Edge] = []
    notes: list[str] = []
    b = _Builder(c, nodes, edges, notes, iface, fam, meta)
    b.receive_side(qs, expand)
    b.verdicts()
    p = Path(f"{iface}: the kernel path of {s.get('program') or 'the XDP program'}", s.get("driver") or "",
             s.get("mode") or "", meta.get("kernel") or "", c.version, nodes, edges, notes, sorted(qs),
             bool(expand and len(qs) > 1))
    for n in nodes:
        n.links = [(f, link(f, c.version)) for f in n.funcs]
    p.brief = brief
    layout(p)
    return p


class _Builder:
    """Adds the nodes and edges of one session's path (receive side, then the verdicts' branches)."""

    def __init__(self, c: _Ctx, nodes: list[Node], edges: list[Edge], notes: list[str], iface: str,
                 fam: str, meta: dict) -> None:
        self.c, self.nodes, self.edges, self.notes = c, nodes, edges, notes
        self.iface, self.fam, self.meta = iface, fam, meta
        self.s = c.s
        self.kv = _version_tuple(meta.get("kernel"))
        self.napi = isinstance((self.s.get("napi") or {}).get(iface), dict) and \
            bool((self.s.get("napi") or {}).get(iface, {}).get("polls"))
        self.rows: dict[str, str] = {}    # node id -> row (layout)
        self.place: dict[str, tuple] = {}  # node id -> ("strip", i) | ("left", i) | ("col", col, row)

    # -- helpers --------------------------------------------------------------------------------
    def node(self, n: Node, place: tuple) -> Node:
        self.nodes.append(n)
        self.place[n.id] = place
        n._place = place  # type: ignore[attr-defined]
        return n

    def edge(self, src: str, dst: str, label: str, frames: list, loss: bool = False, note: str = "",
             also: list[tuple[str, list]] | None = None, way: str = "right") -> Edge:
        c = self.c
        e = Edge(src, dst, label, c.num(frames), c.rate(frames), loss=loss, derived_note=note,
                 also=[(name, c.num(x)) for name, x in (also or [])], way=way)
        self.edges.append(e)
        return e

    def driver_sum(self, patterns: list[str]) -> list | None:
        names = _counters(self.s, patterns)
        return _sum_expr(names) if names else None

    # -- receive side: NIC queues, NAPI poll, driver receive, the program -------------------------
    def receive_side(self, qs: dict[int, dict[str, str]], expand: bool) -> None:
        c, s, iface, fam = self.c, self.s, self.iface, self.fam
        work = key("napi", iface, "work")
        runs = ["add", *(key("actions", a) for a in VERDICTS)]
        # the NIC's RX queues
        if expand and len(qs) > 1:
            for i, q in enumerate(qs):
                k = qs[q]
                lines = [[c.num(key("driver_counters", k["packets"])), " XDP frames"]]
                lines += [[c.num(key("driver_counters", k[x])), f" {x}"] for x in ("drops", "tx", "redirects") if x in k]
                self.node(Node(f"rxq{q}", f"rx queue {q}", "receive_queue (own NAPI, own program pointer)", lines,
                               f"The driver's per-queue counters ({', '.join(k.values())}), from ethtool -S.",
                               [], "queue"), ("strip", i))
                self.edge(f"rxq{q}", "poll", f"rx{q}", key("driver_counters", k["packets"]), way="down",
                          note="the driver's per-queue XDP packet counter")
        else:
            lines: list[list[Part]] = []
            if qs:
                lines.append([f"{len(qs)} queue{'s' * (len(qs) > 1)} with XDP frames: "
                              + ", ".join(f"rx{q}" for q in qs)])
                if len(qs) > 1:
                    lines.append(["alike" if not queues_differ(s, qs) else "they differ: expand to see each"])
            rx = {"virtio_net": ("virtqueue rx", "skb_recv_done → napi_schedule"),
                  "veth": ("peer's veth_xmit", "ptr_ring of the receiving queue → napi_schedule")}.get(
                      fam if fam != "generic" else "", ("NIC RX", "the device's receive queue(s)"))
            self.node(Node("rxq", rx[0], rx[1], lines,
                           "Frames arrive here; they are counted at the NAPI poll (napi:napi_poll work) and, per queue, "
                           "by the driver's rx_queue_N_xdp_packets counters where it has them.",
                           ["skb_recv_done"] if fam == "virtio_net" else (["veth_xmit"] if fam == "veth" else []),
                           "queue"), ("strip", 0))
            self.edge("rxq", "poll", "frames in", work, way="down",
                      note="napi:napi_poll work of the ingress device")
        # NAPI poll
        poll_title = {"virtio_net": "virtnet_poll", "veth": "veth_poll",
                      "generic": "napi poll / netif_rx backlog"}.get(fam, f"{self.s.get('driver') or 'driver'} NAPI poll")
        polls = key("napi", iface, "polls")
        lines = []
        if self.napi:
            lines = [[c.num(polls), " polls · ", c.rate(polls), "/s"],
                     [c.num(["div", work, polls], "mean"), " frames/poll, budget ",
                      c.num(["div", key("napi", iface, "budget"), polls], "mean")],
                     [c.num(key("napi", iface, "full")), " full polls (work = budget)"],
                     [c.num(active_polls(s, iface)), " polls with frames"]]
        else:
            lines = [[f"no NAPI polls of {iface} recorded"]]
            self.notes.append(f"No napi:napi_poll events of {iface} in this window: the frames did not come through "
                              "its driver's receive path (xdpscope inject without --wire runs the program through "
                              "BPF_PROG_TEST_RUN, which flushes after each batch and turns XDP_TX into a redirect "
                              "back to the ingress).")
        self.node(Node("poll", poll_title, "NAPI poll of the ingress (all its RX queues)" if fam != "generic"
                       else "the driver's poll, or the netif_rx backlog, before the stack",
                       lines, f"napi:napi_poll for {iface}: per poll the work (frames received) and the budget; "
                       "a poll whose work equals its budget is full and is polled again. Frames per poll is derived "
                       "(work / polls).", ["virtnet_poll"] if fam == "virtio_net" else
                       (["veth_poll"] if fam == "veth" else ["__napi_poll"]),
                       "func" if self.napi else "idle"), ("left", 0))
        # driver receive
        if fam == "virtio_net":
            merg = _mergeable(self.meta)
            rb = {True: "receive_mergeable", False: "receive_small"}.get(merg, "receive_mergeable / receive_small")
            funcs = ["virtnet_receive", "receive_buf"] + ([rb] if merg is not None else ["receive_mergeable", "receive_small"])
            title = f"virtnet_receive → receive_buf → {rb}"
            if self.kv >= (6, 3):
                title += " → virtnet_xdp_handler"
                funcs.append("virtnet_xdp_handler")
            sub = {True: "mergeable rx buffers (VIRTIO_NET_F_MRG_RXBUF)", False: "small buffers (no MRG_RXBUF)",
                   None: "mergeable or small buffers: the trace does not record the virtio features"}[merg]
        elif fam == "veth":
            title, funcs = "veth_xdp_rcv → veth_xdp_rcv_skb / veth_xdp_rcv_one", ["veth_xdp_rcv", "veth_xdp_rcv_skb",
                                                                                   "veth_xdp_rcv_one"]
            sub = "skbs from the peer's xmit, or xdp_frames redirected to the peer"
        elif fam == "generic":
            title, funcs = "do_xdp_generic → netif_receive_generic_xdp", ["do_xdp_generic", "netif_receive_generic_xdp"]
            sub = "generic (SKB) mode: after the skb is built, in __netif_receive_skb"
        else:
            drv = self.s.get("driver") or "the driver"
            title, funcs = f"{drv} receive (driver code)", []
            sub = "a driver xdpscope has no table for: its own receive functions are not named here"
        pk = self.driver_sum(["rx_xdp_packets", "rx_queue_*_xdp_packets", "rx*_xdp_packets"])
        lines = [[c.num(runs), " to the program"]]
        if pk is not None:
            lines.append([c.num(pk), " driver xdp_packets"])
        self.node(Node("recv", title, sub, lines,
                       "No probe of its own: frames in are the poll's work; frames that ran the program are the "
                       "program's verdict counts and the driver's xdp_packets counter.", funcs), ("left", 1))
        self.edge("poll", "recv", "received", work, way="down", note="napi:napi_poll work")
        # the program
        prog = self.s.get("program") or "XDP program"
        lines = [[c.num(runs), " runs · ", c.rate(runs), "/s"]]
        if c.has(key("run", "cnt")):
            lines.append([c.num(key("run", "ns_per_run"), "mean"), " ns/run (BPF stats, ",
                          c.num(key("run", "cnt")), " runs)"])
        by = self.meta.get("verdicts_from") or "program counters"
        self.node(Node("prog", "bpf_prog_run_xdp" if fam != "generic" else "bpf_prog_run_generic_xdp",
                       f"{prog} → switch (act)", lines,
                       f"Verdicts: {by} (per CPU, summed). Run count and run time: the kernel's BPF statistics "
                       "(kernel.bpf_stats_enabled), when the session turned them on.",
                       ["bpf_prog_run_xdp"] if fam != "generic" else ["bpf_prog_run_generic_xdp", "bpf_prog_run_xdp"]),
                  ("left", 2))
        also = [("driver xdp_packets", pk)] if pk is not None else []
        self.edge("recv", "prog", "runs", runs, way="down", note="sum of the program's verdict counts", also=also)

    # -- the verdicts --------------------------------------------------------------------------------
    def verdict_edge(self, v: str, dst: str, loss: bool = False) -> None:
        s = self.s
        also = []
        if s.get("driver_verdicts") is not None and (s.get("driver_difference") or {}).get(v):
            also = [("driver counters", key("driver_verdicts", v))]
        self.edge("prog", dst, v, key("actions", v), loss=loss, also=also)

    def verdicts(self) -> None:
        c, fam, s = self.c, self.fam, self.s
        row = 0
        # PASS
        title = {"virtio_net": "page_to_skb" if _mergeable(self.meta) is not False else "build_skb",
                 "veth": "napi_gro_receive", "generic": "__netif_receive_skb_core"}.get(fam, "skb to the stack")
        funcs = {"virtio_net": ["page_to_skb", "napi_gro_receive"], "veth": ["napi_gro_receive"]}.get(fam, [])
        self.node(Node("pass", title, "PASS: an skb for the network stack",
                       [[c.num(key("actions", "PASS")), " frames"]],
                       "The program's PASS count. The driver has no PASS counter (its PASS is derived: xdp_packets "
                       "minus drops, TX and redirects).", funcs), ("col", 1, row))
        self.verdict_edge("PASS", "pass")
        row += 1
        row = self.tx(row)
        row = self.redirect(row)
        # DROP and ABORTED
        dk = self.driver_sum(["rx_xdp_drops", "rx_queue_*_xdp_drops", "rx*_xdp_drops"])
        lines = [[c.num(key("actions", "DROP")), " frames"]]
        if dk is not None:
            lines.append([c.num(dk), " driver xdp_drops"])
        self.node(Node("drop", "freed" if fam != "generic" else "kfree_skb", "DROP: the buffer goes back",
                       lines, "The program's DROP count; the driver's xdp_drops counts DROP and ABORTED together "
                       "(on virtio_net also frames whose TX or redirect failed).",
                       ["kfree_skb"] if fam == "generic" else [], "sink"), ("col", 1, row))
        self.verdict_edge("DROP", "drop")
        row += 1
        self.node(Node("aborted", "trace_xdp_exception → freed", "ABORTED: an exception, then dropped",
                       [[c.num(key("actions", "ABORTED")), " frames"],
                        [c.num(key("exceptions", "ABORTED")), " xdp_exception"]],
                       "The program's ABORTED count, and the xdp:xdp_exception tracepoint for this ingress "
                       "(the kernel's count of the same frames).", ["trace_xdp_exception"], "loss"),
                  ("col", 1, row))
        self.verdict_edge("ABORTED", "aborted", loss=True)
        row += 1
        others = [v for v in _nonzero(s.get("exceptions")) if v not in ("ABORTED", "TX")]
        for v in others:  # an exception of another verdict: the kernel could not carry it out
            self.node(Node(f"exc-{v}", f"xdp_exception ({v})", f"{v} failed in the driver",
                           [[c.num(key("exceptions", v)), " frames"]], "xdp:xdp_exception events for this verdict.",
                           ["trace_xdp_exception"], "loss"), ("col", 2, row))
            src = {"REDIRECT": "redir", "PASS": "pass", "DROP": "drop"}.get(v, "prog")
            self.edge(src, f"exc-{v}", f"{v} exception", key("exceptions", v), loss=True)
            row += 1

    def tx(self, row: int) -> int:
        c, fam = self.c, self.fam
        tx_att = self.driver_sum(["tx_xdp_tx", "tx_queue_*_xdp_tx", "tx*_xdp_tx"])
        tx_drop = self.driver_sum(["tx_xdp_tx_drops", "tx_queue_*_xdp_tx_drops", "tx*_xdp_tx_drops"])
        rx_tx = self.driver_sum(["rx_xdp_tx", "rx_queue_*_xdp_tx", "rx*_xdp_tx"])
        rx_txerr = self.driver_sum(["rx_queue_*_xdp_tx_errors", "rx*_xdp_tx_errors"])
        lines = [[c.num(key("actions", "TX")), " frames"]]
        if fam == "virtio_net":
            title, sub, funcs = "virtnet_xdp_xmit", "TX: back out of the ingress's send queue, kick", ["virtnet_xdp_xmit"]
            if tx_att is not None:
                lines.append([c.num(tx_att), " driver xdp_tx (send queue)"])
            if tx_drop is not None:
                lines.append([c.num(tx_drop), " driver xdp_tx_drops"])
            by = ("The program's TX count; the driver's tx_queue_N_xdp_tx / _drops count what virtnet_xdp_xmit "
                  "put on a send queue or dropped (they also count frames redirected to this NIC); failures raise "
                  "xdp:xdp_exception.")
        elif fam == "veth":
            title, sub = "veth_xdp_tx → bulk queue (16) → veth_xdp_flush_bq", "TX: veth's own bulk queue, to the peer"
            funcs = ["veth_xdp_tx", "veth_xdp_flush_bq", "veth_ndo_xdp_xmit"]
            if rx_tx is not None:
                lines.append([c.num(rx_tx), " driver xdp_tx (sent at flush)"])
            by = ("The program's TX count; veth queues XDP_TX frames 16 at a time and sends them to the peer at the "
                  "end of veth_poll: xdp_tx counts frames sent there, xdp_tx_errors those that failed.")
        elif fam == "generic":
            title, sub, funcs = "generic_xdp_tx", "TX: the skb out of the same device", ["generic_xdp_tx"]
            by = "The program's TX count (generic mode has no driver counters)."
        else:
            title, sub, funcs = "driver XDP_TX", "TX: the driver's own XDP send ring", []
            by = "The program's TX count."
        self.node(Node("tx", title, sub, lines, by, funcs), ("col", 1, row))
        self.verdict_edge("TX", "tx")
        losses = []
        if self.c.has(key("exceptions", "TX")):
            losses.append(("xdp_exception", key("exceptions", "TX"), "xdp:xdp_exception events for TX"))
        if fam == "veth" and rx_txerr is not None:
            losses.append(("driver xdp_tx_errors", rx_txerr, "the driver's rx_queue_N_xdp_tx_errors"))
        if losses:
            lines = [[c.num(x), f" {name}"] for name, x, _ in losses]
            self.node(Node("tx-err", "TX failed", "frames the TX path could not send", lines,
                           "; ".join(w for _, _, w in losses) + ".", [], "loss"), ("col", 2, row))
            total = losses[0][1] if len(losses) == 1 else ["add", *(x for _, x, _ in losses)]
            self.edge("tx", "tx-err", "TX errors", total, loss=True)
        return row + 1

    def redirect(self, row: int) -> int:
        """REDIRECT: xdp_do_redirect, then per target the bulk queue, the flush at the end of the poll
        and the target's ndo_xdp_xmit (native mode); generic mode sends one skb at a time."""
        c, s, fam, iface = self.c, self.s, self.fam, self.iface
        cfg = [t for t in (self.meta.get("targets") or []) if isinstance(t, str)]
        fan = s.get("redirect_targets") or {}
        devmap = s.get("devmap") or {}
        targets = list(dict.fromkeys([*cfg, *_nonzero(fan), *(t for t, d in devmap.items() if _nonzero(d))]))
        # XDP_TX of BPF_PROG_TEST_RUN goes through the devmap back to the ingress
        tx_via_devmap = iface in targets and iface not in cfg and iface not in _nonzero(fan)
        targets = [t for t in targets if not (tx_via_devmap and t == iface)]
        prog_is_cpumap = s.get("program") == "cpumap" or bool(_nonzero(s.get("cpumap")))
        funcs = ["xdp_do_redirect"] + (["dev_map_enqueue"] if fam != "generic" else ["xdp_do_generic_redirect"])
        title = "xdp_do_redirect → dev_map_enqueue" if fam != "generic" else "xdp_do_generic_redirect"
        lines = [[c.num(key("actions", "REDIRECT")), " frames"]]
        if targets:
            lines.append([f"{len(targets)} target{'s' * (len(targets) > 1)}: " + ", ".join(targets)])
        for e in sorted(_nonzero(s.get("redirect_errors_by_errno"))):
            lines.append([c.num(key("redirect_errors_by_errno", e)), f" {e} (all targets)"])
        first = row
        self.node(Node("redir", title, "REDIRECT: to the target the program chose", lines,
                       "The program's REDIRECT count. Errors by errno: xdp:xdp_redirect_err (xdp_do_redirect failed) "
                       "plus the err of xdp:xdp_devmap_xmit (frames dropped at flush with an errno).", funcs),
                  ("col", 1, row))
        self.verdict_edge("REDIRECT", "redir")
        if prog_is_cpumap:
            self.cpumap(row)
            return row + 1
        flush_rows = []
        sources = [("redir", t) for t in targets] + ([("tx", iface)] if tx_via_devmap else [])
        for src, t in sources:
            row = self.target(src, t, row, fam)
            flush_rows.append(row)
        if tx_via_devmap:
            self.notes.append(f"TX frames went through the devmap to {iface}: BPF_PROG_TEST_RUN turns XDP_TX "
                              "into a redirect back to the ingress.")
        if fam != "generic" and sources:
            self.flush(sources, first)
        return max(row, first + 1)

    def target(self, src: str, t: str, row: int, fam: str) -> int:
        """One target's lane: its bulk queue, the frames sent by its ndo_xdp_xmit, the losses."""
        c, s = self.c, self.s
        sent, drops = key("devmap", t, "sent"), key("devmap", t, "drops")
        queued = ["add", sent, drops]
        fanned = key("redirect_targets", t) if src == "redir" else key("actions", "TX")
        have_fan = src == "tx" or t in (s.get("redirect_targets") or {})
        errs = _nonzero((s.get("redirect_errors") or {}).get(t))
        if fam == "generic":  # no bulk queue: xdp_do_generic_redirect sends the skb at once
            self.node(Node(f"xmit:{t}", f"{t}: dev_queue_xmit", "generic redirect: one skb at a time",
                           [[c.num(fanned), " frames (program's fan-out)"]],
                           "The program's per-target fan-out count; generic mode has no bulk queue and no flush "
                           "event, so what the target did with the skb is not measured here.",
                           ["xdp_do_generic_redirect"], "target"), ("col", 2, row))
            self.edge(src, f"xmit:{t}", t, fanned)
            row += 1
            if errs:
                self.error_node(t, f"rerr:{t}", "xdp_do_generic_redirect failed", src, row, 2,
                                ["add", *(key("redirect_errors", t, e) for e in errs)], errs)
                row += 1
            return row
        lines = [[c.num(queued), " queued and flushed"]]
        if have_fan:
            lines.append([c.num(fanned), " from the program" if src == "redir" else " TX frames"])
        lines.append([c.num(key("flush_mean_by_target", t), "mean"), " frames per flush"])
        self.node(Node(f"bq:{t}", f"bq_enqueue → {t}", "per-CPU bulk queue, sends at 16", lines,
                       "Frames that reached the bulk queue of this target: sent + dropped of its xdp:xdp_devmap_xmit "
                       "flush events (bq_enqueue has no probe of its own). The program's fan-out count is beside it.",
                       ["bq_enqueue"]), ("col", 2, row))
        self.edge(src, f"bq:{t}", t, queued, note="sent + dropped at its flushes")
        self.node(Node(f"xmit:{t}", f"{t}: ndo_xdp_xmit", "the target driver takes the frames",
                       [[c.num(sent), " sent"]],
                       "xdp:xdp_devmap_xmit sent: frames the target's ndo_xdp_xmit accepted.", [], "target"),
                  ("col", 4, row))
        self.edge("flush", f"xmit:{t}", "sent", sent)
        row += 1
        enq_loss = ["sub", fanned, queued]
        enq = have_fan and (evaluate(enq_loss, s) or 0) > 0
        drp = c.has(drops)
        if enq or drp:
            if enq:
                self.error_node(t, f"rerr:{t}", "redirect failed before the queue", src, row, 2, enq_loss,
                                errs if not drp else {}, derived=True)
            if drp:
                self.error_node(t, f"drop:{t}", "dropped at flush", "flush", row, 4, drops, errs if not enq else {})
            if enq and drp and errs:
                self.notes.append(f"Errors to {t} by errno (both stages together): "
                                  + ", ".join(f"{e} {fmt(n, 'int')}" for e, n in sorted(errs.items())) + ".")
            row += 1
        elif errs:  # errors without a count of the frames (watch mode without the fan-out probe)
            self.error_node(t, f"rerr:{t}", "redirect errors", src, row, 2,
                            ["add", *(key("redirect_errors", t, e) for e in errs)], errs)
            row += 1
        return row

    def error_node(self, t: str, nid: str, what: str, src: str, row: int, col: int, frames: list,
                   errs: dict, derived: bool = False) -> None:
        c = self.c
        lines = [[c.num(frames), " frames"]]
        lines += [[c.num(key("redirect_errors", t, e)), f" {e}"] for e in sorted(errs)]
        by = ("Derived: the program's fan-out to this target minus the frames its flushes carried (xdp_do_redirect "
              "refused them: xdp:xdp_redirect_err)." if derived else
              "xdp:xdp_devmap_xmit drops: frames the target's ndo_xdp_xmit did not take at the flush; the errno "
              "comes with the event." if nid.startswith("drop:") else
              "xdp:xdp_redirect_err events to this target, by errno.")
        self.node(Node(nid, f"{t}: {what}", "lost", lines, by, ["xdp_do_redirect"] if not nid.startswith("drop:")
                       else ["bq_xmit_all"], "loss"), ("col", col, row))
        self.edge(src, nid, "lost" if not errs else "lost: " + ", ".join(sorted(errs)), frames, loss=True,
                  note="fan-out minus frames flushed" if derived else "")

    def flush(self, sources: list[tuple[str, str]], first: int) -> None:
        """The flush at the end of the poll: all targets' bulk queues sent by bq_xmit_all."""
        c, s, iface = self.c, self.s, self.iface
        fc = key("flush_count")
        lines: list[list[Part]] = [[c.num(fc), " flushes · ", c.rate(fc), "/s"],
                                   [c.num(key("flush_mean"), "mean"), " frames per flush (mean)"]]
        polls = active_polls(s, iface)
        if self.napi:
            lines.append([c.num(["div", fc, polls], "mean"), " flushes per poll with frames (derived)"])
        hist = [(i, c.num(key("flush_batches", str(i)))) for i in range(BULK + 1)]
        pred_lines = []
        for _, t in sources:
            queued = ["add", key("devmap", t, "sent"), key("devmap", t, "drops")]
            if not self.napi:
                continue
            per_poll = c.num(["div", queued, polls], "mean")
            q, p = evaluate(queued, s) or 0, evaluate(polls, s) or 0
            want = predicted_flushes(int(q), int(p))
            got = {int(k): v for k, v in ((s.get("flush_batches_by_target") or {}).get(t) or {}).items() if v}
            same = want == got
            pred_lines.append([f"{t}: ", per_poll, " frames/poll → predicted "
                               + (", ".join(f"{n:,}×{k}" for k, n in sorted(want.items())) or "none")
                               + (" = measured" if same else " ≠ measured (polls not alike)")])
        lines += pred_lines
        sizes = [i for i in range(BULK + 1) if (evaluate(key("flush_batches", str(i)), s) or 0) > 0]
        if sizes:
            lines.append(["flush sizes (size × flushes):"])
        for k in range(0, len(sizes), 3):
            line: list[Part] = []
            for i in sizes[k:k + 3]:
                line += [("  " if line else "") + f"{i}×", c.num(key("flush_batches", str(i)))]
            lines.append(line)
        self.node(Node("flush", "xdp_do_flush → __dev_flush → bq_xmit_all",
                       "end of the poll: every bulk queue is sent", lines,
                       "xdp:xdp_devmap_xmit (one event per bq_xmit_all): flush size = sent + dropped, bins 0..16 "
                       "exact. Frames per poll per target are derived (frames queued / polls with frames); the "
                       "prediction spreads them evenly over those polls (a poll's queue sends at 16, then the rest "
                       "at the end of the poll) and is compared with the measured sizes.",
                       ["xdp_do_flush", "__dev_flush", "bq_xmit_all"]), ("span", 3, first))
        self.nodes[-1].hist = hist
        for _, t in sources:
            e = self.edge(f"bq:{t}", "flush", "flushed", ["add", key("devmap", t, "sent"), key("devmap", t, "drops")],
                          note="sent + dropped at its flushes")
            e.show_label = False  # the same count as on the edge into the queue

    def cpumap(self, row: int) -> None:
        c = self.c
        lines = [[c.num(key("cpumap", "drops")), " frames dropped at enqueue"]]
        sizes = [i for i in range(9) if (evaluate(key("cpumap", "bulk", str(i)), self.s) or 0) > 0]
        if sizes:
            line: list[Part] = ["bulks (size × count): "]
            for i in sizes:
                line += [f" {i}×", c.num(key("cpumap", "bulk", str(i)))]
            lines.append(line)
        self.node(Node("cpumap", "cpu_map_enqueue → bq (8) → __cpu_map_flush", "to the cpumap kthread of the target CPU",
                       lines, "xdp:xdp_cpumap_enqueue: per bulk the frames processed and dropped (bulk of 8).",
                       ["cpu_map_enqueue", "__cpu_map_flush"]), ("col", 2, row))
        self.edge("redir", "cpumap", "to CPUs", key("actions", "REDIRECT"))


# -- layout -----------------------------------------------------------------------------------------

MARGIN = 16
TITLE_H, LINE_H, PAD = 15.0, 13.0, 6.0
HIST_H = 44.0
CHAR_W = 6.1          # px per character at the diagram's 10 px monospace text (DejaVu Sans Mono)
TITLE_CHAR_W = 6.6    # the same at the 10.5 px bold titles
LEFT_W = 236.0        # the receive side (a top-down call chain)
COLS = (236.0, 206.0, 196.0, 252.0, 168.0)   # left chain, verdict handlers, bulk queues, flush, targets
GAPS = (112.0, 104.0, 44.0, 92.0)
COLS_BRIEF = (164.0, 146.0, 128.0, 160.0, 112.0)
GAPS_BRIEF = (62.0, 56.0, 26.0, 50.0)
QUEUE_W_BRIEF = 112.0
ROW_GAP, STACK_GAP = 12.0, 34.0
QUEUE_W = 170.0


def _part_text(p: Part) -> str:
    return p.text if isinstance(p, Num) else p


def wrap_parts(line: list[Part], width: float) -> list[list[Part]]:
    """A line of text and numbers broken into rows of at most width px (numbers are never split)."""
    per = max(int(width / CHAR_W), 8)
    tokens: list[Part] = []
    for p in line:
        tokens += re.findall(r"\S+\s*|\s+", p) if isinstance(p, str) else [p]
    rows: list[list[Part]] = [[]]
    used = 0
    for tok in tokens:
        n = len(_part_text(tok))
        if used and used + len(_part_text(tok).rstrip()) > per:
            rows.append([])
            used = 0
            if isinstance(tok, str):
                tok = tok.lstrip()
                n = len(tok)
                if not tok:
                    continue
        rows[-1].append(tok)
        used += n
    return [r for r in rows if r]


def _wrap(text: str, width: float) -> list[str]:
    return ["".join(_part_text(x) for x in row).rstrip() for row in wrap_parts([text], width)]


def _height(n: Node, brief: bool = False) -> float:
    inner = n.w - 2 * PAD
    n.title_rows = _wrap(n.title, inner * CHAR_W / TITLE_CHAR_W)
    lines = n.lines[:1 if n.kind == "queue" or n.id == "recv" else n.brief_lines] if brief else n.lines
    n.rows = [row for line in lines for row in wrap_parts(line, inner)]
    if brief:
        n.sub = ""
    h = PAD + TITLE_H * len(n.title_rows) + (LINE_H if n.sub else 0) + LINE_H * len(n.rows) + PAD
    return h + (HIST_H if n.hist else 0)


def layout(p: Path) -> None:
    """Places nodes: the NIC queues in a strip on top, the receive side as a top-down chain on the
    left, and the verdicts' branches in rows to the right (one row per verdict and per target), the
    flush spanning the targets' rows; then routes every edge as a cubic curve."""
    cols, gaps, qw = (COLS_BRIEF, GAPS_BRIEF, QUEUE_W_BRIEF) if p.brief else (COLS, GAPS, QUEUE_W)
    xs = [MARGIN]
    for w, g in zip(cols, gaps):
        xs.append(xs[-1] + w + g)
    places = {n.id: n._place for n in p.nodes}  # type: ignore[attr-defined]
    for n in p.nodes:
        pl = places[n.id]
        n.w = qw if pl[0] == "strip" else cols[0] if pl[0] == "left" else cols[pl[1]]
        n.h = _height(n, p.brief)
    strip = [n for n in p.nodes if places[n.id][0] == "strip"]
    strip_h = max((n.h for n in strip), default=0.0)
    for n in strip:
        n.x, n.y = MARGIN + places[n.id][1] * (qw + 12), MARGIN
    stack_gap, row_gap = (24.0, 8.0) if p.brief else (STACK_GAP, ROW_GAP)
    top = MARGIN + strip_h + stack_gap
    y = top
    for n in sorted((n for n in p.nodes if places[n.id][0] == "left"), key=lambda n: places[n.id][1]):
        n.x, n.y = xs[0], y
        y += n.h + stack_gap
    left_bottom = y - stack_gap
    # rows of the right side
    rows: dict[int, float] = {}
    for n in p.nodes:
        pl = places[n.id]
        if pl[0] == "col":
            rows[pl[2]] = max(rows.get(pl[2], 0.0), n.h)
    spans = [n for n in p.nodes if places[n.id][0] == "span"]
    nrows = max(rows, default=-1) + 1
    heights = [rows.get(r, 0.0) for r in range(nrows)]
    redir = next((n for n in p.nodes if n.id == "redir"), None)
    first_t = places[redir.id][2] if redir is not None else 0
    t_rows = [places[n.id][2] for n in p.nodes if places[n.id][0] == "col" and places[n.id][1] >= 2
              and places[n.id][2] >= first_t]
    last_t = max(t_rows, default=first_t)
    for sp in spans:  # a span taller than its rows makes the last of them taller
        have = sum(heights[first_t:last_t + 1]) + row_gap * (last_t - first_t)
        if sp.h > have and nrows:
            heights[last_t] += sp.h - have
    ys, y = [], top
    for h in heights:
        ys.append(y)
        y += h + row_gap
    for n in p.nodes:
        pl = places[n.id]
        if pl[0] == "col":
            n.x, n.y = xs[pl[1]], ys[pl[2]]
    for sp in spans:
        sp.x, sp.y = xs[places[sp.id][1]], ys[first_t]
        sp.h = max(sp.h, ys[last_t] + heights[last_t] - ys[first_t])
    if redir is not None and last_t > first_t:  # xdp_do_redirect spans its targets' rows too
        redir.h = max(redir.h, ys[last_t] + heights[last_t] - ys[first_t])
    p.width = max(max((n.x + n.w for n in p.nodes), default=0.0) + MARGIN, 400.0)
    p.height = max(max((n.y + n.h for n in p.nodes), default=0.0), left_bottom) + MARGIN + 14 * len(p.notes) + 8
    route(p)


def route(p: Path) -> None:
    by = {n.id: n for n in p.nodes}
    top = max((e.rate.value or 0.0) for e in p.edges) if p.edges else 0.0
    for e in p.edges:
        a, b = by[e.src], by[e.dst]
        r = e.rate.value or 0.0
        e.width = 1.0 + 7.0 * math.sqrt(r / top) if top > 0 and r > 0 else 1.0
        if e.way == "down":
            x1, y1 = (a.x + a.w / 2, a.y + a.h)
            x2, y2 = (b.x + b.w / 2 if a.x >= b.x + b.w or a.x + a.w <= b.x else min(max(x1, b.x + 12), b.x + b.w - 12), b.y)
            if abs(x2 - x1) < 1:
                x2 = x1
            dy = (y2 - y1) / 2
            e.points = [(x1, y1), (x1, y1 + dy), (x2, y2 - dy), (x2, y2)]
            if max(x1, x2) + 8 + len(f"{e.label} {e.frames.text}") * CHAR_W > max(a.x + a.w, b.x + b.w):
                e.show_label = False  # it would reach into the verdicts' labels: the number is on hover
            continue
        bc, ac = b.y + b.h / 2, a.y + a.h / 2
        y1 = min(max(bc, a.y + 10), a.y + a.h - 10)
        y2 = min(max(ac if b.h > a.h * 1.5 else bc, b.y + 10), b.y + b.h - 10)
        x1, x2 = a.x + a.w, b.x
        dx = max((x2 - x1) / 2, 12.0)
        e.points = [(x1, y1), (x1 + dx, y1), (x2 - dx, y2), (x2, y2)]
        if len(f"{e.label} {e.frames.text}") * CHAR_W > x2 - x1 - 8:
            e.show_label = False  # it would cover the node it comes from: the number is on hover


def short(text: str, width: float, char_w: float = 5.45) -> str:
    """text cut to width px at the 9 px subtitle font, with an ellipsis when cut."""
    per = max(int(width / char_w), 4)
    return text if len(text) <= per else text[:per - 1].rstrip() + "…"


def label_anchor(e: Edge) -> tuple[float, float, str]:
    """Where an edge's label goes: (x, y, anchor). Right-going edges: just left of the target end,
    above the line (fan-outs converge there less than at their source); down edges: beside the middle."""
    (x1, y1), _, _, (x2, y2) = e.points
    if e.way == "down":
        return (max(x1, x2) + 8, (y1 + y2) / 2 - 2, "start")
    return (x2 - 6, y2 - 4, "end")


# -- SVG (reports) ------------------------------------------------------------------------------------

COLORS = {"bg": "#1e1f22", "node": "#2b2d31", "border": "#6b7280", "text": "#d4d4d4", "title": "#f0f0f0",
          "sub": "#9aa0a6", "edge": "#5aa9e6", "loss": "#e5484d", "idle": "#4b5058", "sink": "#7a7f87",
          "queue": "#3a3f47", "target": "#2f3b2f", "hist": "#8fbc5a", "mark": "#f2c14e", "lossnode": "#3a2224",
          "label_bg": "#1e1f22"}
# printed reports are light (gui/palette.py LIGHT: the Okabe-Ito hues darkened for white paper)
COLORS_LIGHT = {"bg": "#ffffff", "node": "#f3f4f6", "border": "#9a9a9a", "text": "#202020", "title": "#111111",
                "sub": "#555555", "edge": "#2F8FC8", "loss": "#C04F00", "idle": "#e6e6e6", "sink": "#8a8a8a",
                "queue": "#e9edf3", "target": "#e7f1e9", "hist": "#00805C", "mark": "#9A8C00", "lossnode": "#fbeae3",
                "label_bg": "#ffffff"}


def _tspan(p: Part) -> str:
    if not isinstance(p, Num):
        return html.escape(p)
    attr = (f' data-key="{html.escape(json.dumps(p.expr[1]), quote=True)}"' if p.measured else
            f' data-expr="{html.escape(json.dumps(p.expr), quote=True)}"')
    return f'<tspan class="n"{attr} data-kind="{p.kind}">{html.escape(p.text)}</tspan>'


def to_svg(p: Path, colors: dict | None = None) -> str:
    """The diagram as an inline SVG: every number in a <tspan> with data-key (a JSON path into the
    summary) or data-expr (the expression over it that derives the number), and data-kind."""
    c = colors or COLORS
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{p.width:.0f}" height="{p.height:.0f}" '
           f'viewBox="0 0 {p.width:.0f} {p.height:.0f}" font-family="DejaVu Sans Mono" font-size="10">',
           f'<rect x="0" y="0" width="{p.width:.0f}" height="{p.height:.0f}" fill="{c["bg"]}"/>']
    for e in p.edges:
        (x1, y1), (a1, b1), (a2, b2), (x2, y2) = e.points
        col = c["loss"] if e.loss else c["edge"]
        out.append(f'<path d="M{x1:.1f},{y1:.1f} C{a1:.1f},{b1:.1f} {a2:.1f},{b2:.1f} {x2:.1f},{y2:.1f}" fill="none" '
                   f'stroke="{col}" stroke-width="{e.width:.2f}" opacity="0.85"><title>{html.escape(e.hover())}</title></path>')
    for e in p.edges:  # labels over every edge, on a backing that keeps them legible where curves cross
        if not e.show_label:
            continue
        col = c["loss"] if e.loss else c["edge"]
        lx, ly, anchor = label_anchor(e)
        for dy, text, cw in ((0, f"{e.label} {e.frames.text}", CHAR_W), (12, f"{e.rate.text}/s", 5.45)):
            w = len(text) * cw + 4
            bx = lx - w + 2 if anchor == "end" else lx - 2
            out.append(f'<rect x="{bx:.1f}" y="{ly + dy - 9:.1f}" width="{w:.1f}" height="11" fill="{c["label_bg"]}" '
                       'opacity="0.8"/>')
        out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" fill="{col}" class="edge" '
                   f'data-src="{html.escape(e.src)}" data-dst="{html.escape(e.dst)}">{html.escape(e.label)} '
                   f'{_tspan(e.frames)}</text>')
        out.append(f'<text x="{lx:.1f}" y="{ly + 12:.1f}" text-anchor="{anchor}" fill="{col}" font-size="9">'
                   f'{_tspan(e.rate)}/s</text>')
    for n in p.nodes:
        fill = {"loss": c["lossnode"], "idle": c["idle"], "queue": c["queue"], "target": c["target"]}.get(n.kind, c["node"])
        stroke = c["loss"] if n.kind == "loss" else c["border"]
        link = n.links[0][1] if n.links else ""
        out.append(f'<g class="node" id="node-{html.escape(n.id)}">')
        out.append(f'<title>{html.escape(n.measured_by)}</title>')
        rect = (f'<rect x="{n.x:.1f}" y="{n.y:.1f}" width="{n.w:.1f}" height="{n.h:.1f}" rx="5" fill="{fill}" '
                f'stroke="{stroke}"/>')
        out.append(f'<a href="{html.escape(link, quote=True)}">{rect}</a>' if link else rect)
        y = n.y + PAD + 11
        for tl in n.title_rows:
            out.append(f'<text x="{n.x + PAD:.1f}" y="{y:.1f}" fill="{c["title"]}" font-weight="bold" '
                       f'font-size="10.5">{html.escape(tl)}</text>')
            y += TITLE_H
        if n.sub:
            out.append(f'<text x="{n.x + PAD:.1f}" y="{y - 2:.1f}" fill="{c["sub"]}" font-size="9">'
                       f'{html.escape(short(n.sub, n.w - 2 * PAD))}</text>')
            y += LINE_H
        for row in n.rows:
            out.append(f'<text x="{n.x + PAD:.1f}" y="{y:.1f}" fill="{c["text"]}" xml:space="preserve">'
                       f'{"".join(_tspan(x) for x in row)}</text>')
            y += LINE_H
        if n.hist:
            out.append(_svg_hist(n, y, c))
        out.append("</g>")
    y = p.height - 8 - 14 * (len(p.notes) - 1)
    for note in p.notes:
        out.append(f'<text x="{MARGIN}" y="{y:.1f}" fill="{c["sub"]}" font-size="9.5">{html.escape(note)}</text>')
        y += 14
    out.append("</svg>")
    return "\n".join(out)


def hist_bars(n: Node, top: float) -> list[tuple[int, float, float, float, float]]:
    """(size, x, y, w, h) of the flush histogram's bars inside node n, from y = top (log-scaled
    heights: a bin of 1 flush stays visible next to one of 100,000)."""
    assert n.hist is not None
    vals = [max(float(v.value or 0), 0.0) for _, v in n.hist]
    big = max(vals) if vals else 0.0
    bw = (n.w - 2 * PAD) / len(vals)
    out = []
    for (i, _), v in zip(n.hist, vals):
        h = 0.0 if not v or not big else 2 + (HIST_H - 16) * math.log1p(v) / math.log1p(big)
        out.append((i, n.x + PAD + i * bw, top + HIST_H - 12 - h, bw - 1.5, h))
    return out


def _svg_hist(n: Node, top: float, c: dict) -> str:
    parts = []
    for (i, x, y, w, h), (_, num) in zip(hist_bars(n, top), n.hist or []):
        col = c["mark"] if i == BULK else c["hist"]
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{col}">'
                     f'<title>{i} frames: {html.escape(num.text)} flushes</title></rect>')
        if i % 4 == 0:  # sizes 0, 4, 8, 12, 16 under their bars; 16 (the bulk size) marked
            parts.append(f'<text x="{x + w / 2:.1f}" y="{top + HIST_H - 2:.1f}" text-anchor="middle" font-size="7.5" '
                         f'fill="{c["mark"] if i == BULK else c["sub"]}">{i}</text>')
    return "".join(parts)


# -- reports ------------------------------------------------------------------------------------------

def html_section(s: dict, img_src: str | None = None, img_width: int | None = None) -> str:
    """The report's path section for the summary s: the diagram as inline SVG in <div id="path">
    (every number in a tspan with data-key or data-expr), or, for renderers without SVG (Qt's
    QTextDocument: PDF and PNG reports), the image img_src of the same SVG (path_view.path_image)."""
    p = build(s, expand=None)
    note = ("Each function of the session's path is a box, each hand-over an edge whose width is its rate in "
            "the window; red: frames lost. Numbers are those of the tables below for the same window: measured "
            "ones carry data-key (their summary value), derived ones data-expr (how they are computed from it). "
            f"Function names link to the kernel source ({p.version}).")
    if img_src is not None:
        w = img_width or int(p.width)
        h = round(p.height * w / p.width)
        body = f'<img src="{html.escape(img_src, quote=True)}" width="{w}" height="{h}" alt="kernel path">'
    else:
        body = to_svg(p, COLORS_LIGHT).replace("<svg ", '<svg style="max-width:100%;height:auto" ', 1)
    return (f'<h2>Kernel path</h2><p class="note">{html.escape(note)}</p>'
            f'<div id="path" class="fig">{body}</div>')
