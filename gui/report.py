"""Reports of a session or of a time window of it (a trace file, a replay, a live session before it
is recorded, an A-B range): HTML, PDF or one tall PNG, rendered headless. One code path for every
source: its Blocks are read once, into the summary and into the model the plots draw.

The plots are the app's own panels (gui/plots/) drawn offscreen through the app's model
(gui/model.py), so they look like the app. Every number in the tables is a value of
backend.data.summary.summarize_blocks() of the window — for a trace, the numbers
`xdpscope summary --json` prints —
and each numeric cell names the summary value it shows in a `data-key` attribute (a JSON path),
so a test can compare the visible text with the summary.
"""
from __future__ import annotations

import base64
import contextlib
import datetime
import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from backend.data import schema
from backend.data.driver import EXPLAIN as DRIVER_EXPLAIN
from backend.errors import XdpscopeError
from backend.data.sample import VERDICTS
from backend.data.block import Block
from backend.data.series import queue_columns
from backend.data.summary import summarize_blocks
from backend.data.trace import TraceReader

from backend.data.findings import findings, rate_text

DEFAULT_SIZE = (1200, 460)   # pixels of each plot image (HTML, PNG)
DEFAULT_SIZE_PDF = (960, 400)  # a PDF page is ~700 CSS px wide: smaller plots keep their text legible
MAX_PLOT_ROWS = 20_000       # longer windows are plotted from merged consecutive samples
PNG_MARGIN = 24              # PNG report: page = plot width + 2 margins, plots at exactly their pixels
FORMATS = (".html", ".htm", ".pdf", ".png")


@dataclass
class Plot:
    title: str
    image: Any          # QImage, exactly the requested pixels
    note: str = ""


@dataclass
class Report:
    name: str           # the trace's file name, or "live session"
    window: tuple[float | None, float | None]
    summary: dict
    findings: list[str]
    plots: list[Plot] = field(default_factory=list)
    size: tuple[int, int] = DEFAULT_SIZE
    merged: int = 1     # samples per plotted point-row (1: every sample)


# -- numbers ------------------------------------------------------------------------------------

def check_window(t_from: float | None, t_to: float | None) -> None:
    for name, v in (("--from", t_from), ("--to", t_to)):
        if v is not None and (not math.isfinite(v) or v < 0):
            raise XdpscopeError(f"{name} {v}: must be a number of seconds since the session start, >= 0")
    if t_from is not None and t_to is not None and t_from > t_to:
        raise XdpscopeError(f"empty window: --from {t_from:g} is after --to {t_to:g}")


# -- the samples of a report: any Source, or a trace file -------------------------------------------

@dataclass
class Samples:
    """What a report reads, from any source: a name, the session's meta (with its timeline
    markers), the sample times, and the Blocks of a time range (size: rows per Block, a hint)."""
    name: str
    meta: dict
    times: np.ndarray
    blocks: Callable[[float | None, float | None, int | None], Iterator[Block]]

    @staticmethod
    def of_blocks(name: str, meta: dict, blocks: list[Block]) -> "Samples":
        """Blocks in memory (in time order) as what a report reads."""
        def window(a: float | None, b: float | None, size: int | None = None) -> Iterator[Block]:
            for blk in blocks:
                lo = 0 if a is None else int(np.searchsorted(blk.t, a, side="left"))
                hi = len(blk) if b is None else int(np.searchsorted(blk.t, b, side="right"))
                if hi > lo:
                    yield blk if (lo, hi) == (0, len(blk)) else blk.rows(slice(lo, hi))
        times = np.concatenate([blk.t for blk in blocks]) if blocks else np.zeros(0)
        return Samples(name, dict(meta), times, window)


@contextlib.contextmanager
def samples_of(src: Any) -> Iterator[Samples]:
    """A Source (gui/sources: a live session before it is recorded, a replay), a trace path, or
    Samples (e.g. Samples.of_blocks), as Samples; a path is opened here, once."""
    if isinstance(src, Samples):
        yield src
        return
    if isinstance(src, (str, os.PathLike)):
        with TraceReader(src) as reader:
            yield Samples(str(src), dict(reader.meta), reader.times(),
                          lambda a, b, size: reader.blocks(a, b, size=size))
        return
    meta = dict(src.model.meta)
    if src.model.markers:  # the findings read the injections' batch from them
        meta["markers"] = [m.to_dict() for m in src.model.markers]
    yield Samples(src.name, meta, src.sample_times(), src.blocks)


def _groups(blocks: Iterable[Block], k: int) -> Iterator[Block]:
    """The blocks again, cut so that every block but the last holds a multiple of k samples (so
    merging k at a time groups the same samples whatever the source's block sizes)."""
    carry: list = []  # Samples left over from the last block (fewer than k)
    for b in blocks:
        if carry:
            take = min(k - len(carry), len(b))
            carry += list(b.rows(slice(0, take)).samples())
            b = b.rows(slice(take, None))
            if len(carry) < k:
                continue
            yield Block.from_samples(carry)
            carry = []
        whole = len(b) // k * k
        if whole:
            yield b if whole == len(b) else b.rows(slice(0, whole))
        carry = list(b.rows(slice(whole, None)).samples())
    if carry:
        yield Block.from_samples(carry)


def load(src: Any, t_from: float | None, t_to: float | None, max_rows: int = MAX_PLOT_ROWS,
         plots: bool = True) -> tuple[dict, Any, Any, int]:
    """The summary of the samples with t_from <= t <= t_to, and (plots) the app's model holding
    exactly them (merged k at a time when there are more than max_rows) with the View the panels
    draw, x from t_from (or 0) to t_to (or the end). The samples are read once, for both."""
    from .model import AppModel
    from .plots import make_view
    with samples_of(src) as smp:
        t = smp.times
        lo = 0 if t_from is None else int(np.searchsorted(t, t_from, side="left"))
        hi = len(t) if t_to is None else int(np.searchsorted(t, t_to, side="right"))
        n = max(hi - lo, 0)
        if not n:
            covers = f"it covers t = {t[0]:g} … {t[-1]:g} s" if len(t) else "it has no samples"
            raise XdpscopeError(f"{smp.name}: no samples in the window {_window_text((t_from, t_to))} ({covers})")
        k = max(1, -(-n // max_rows))
        model = None
        blocks = smp.blocks(t_from, t_to, k * max(1, 4096 // k))
        if plots:
            model = AppModel(capacity=max(-(-n // k), 2))
            model.set_meta(smp.meta)
            blocks = _fed(model, _groups(blocks, k) if k > 1 else blocks, k)
        s = summarize_blocks(blocks, smp.meta, t_from, t_to, where=smp.name)
    if model is None:
        return s, None, None, k
    x0 = t_from if t_from is not None else 0.0
    x1 = max(t_to if t_to is not None else float(t[hi - 1]), x0 + 1e-3)
    model.transport.move(x1)  # the view ends here, like a replay's playhead
    # the app's window is t_end - length < t <= t_end; a hair longer includes a sample at exactly t_from,
    # which summarize() counts (t_from <= t)
    view = make_view(model, (x1 - x0) * (1 + 1e-12) + 1e-9)
    assert view.sl.stop - view.sl.start == len(model.history), "the plotted window must hold every sample summarized"
    return s, model, view, k


def _fed(model: Any, blocks: Iterable[Block], k: int) -> Iterator[Block]:
    """The blocks, each also appended to the model (merged k samples at a time)."""
    for b in blocks:
        model.extend(b.merged(k))
        yield b


def load_model(src: Any, t_from: float | None, t_to: float | None, max_rows: int = MAX_PLOT_ROWS):
    """(model, view, k) of load()."""
    _, model, view, k = load(src, t_from, t_to, max_rows)
    return model, view, k


# -- plots --------------------------------------------------------------------------------------

def plot_images(model: Any, view: Any, size: tuple[int, int] = DEFAULT_SIZE) -> list[Plot]:
    """The app's panels over the view, each as an image of exactly `size` pixels; panels with
    nothing to show (no redirects, no flushes...) are left out."""
    from .render import panel_image
    from .palette import LIGHT
    from .plots import ErrorsPanel, FanoutPanel, FlushPanel, NapiPanel, QueuesPanel, VerdictPanel
    h = model.history
    sl = view.sl
    wanted = [(VerdictPanel, True),
              (FanoutPanel, bool(h.targets.names) and bool(h.targets.data[sl].any())),
              (FlushPanel, bool(h.flush[sl].any())),
              (ErrorsPanel, any(h.exceptions.seen) or any(h.redirect_errors.seen) or any(h.devmap_drops.seen)
               or h.has_cpumap_drops),
              (NapiPanel, h.has_napi or h.has_run),
              (QueuesPanel, bool(queue_columns(h)) and bool(h.driver.data[sl].any()))]
    w, hh = size
    # light and printable: dark plots on white pages print as black blocks
    return [Plot(cls.title, panel_image(cls, view, w, hh, theme=LIGHT)) for cls, show in wanted if show]


def build(src: Any, t_from: float | None = None, t_to: float | None = None,
          size: tuple[int, int] = DEFAULT_SIZE, with_plots: bool = True) -> Report:
    """The report of a Source (a live session, a replay) or of a trace path, over [t_from, t_to]:
    one code path for all of them. XdpscopeError (one line) for a missing or corrupt trace or an
    empty window."""
    check_window(t_from, t_to)
    s, model, view, k = load(src, t_from, t_to, plots=with_plots)
    rep = Report(Path(src).name if isinstance(src, (str, os.PathLike)) else src.name, (t_from, t_to), s,
                 findings(s), size=size)
    if with_plots:
        rep.plots, rep.merged = plot_images(model, view, size), k
    return rep


# -- HTML ---------------------------------------------------------------------------------------

def _window_text(window: tuple[float | None, float | None]) -> str:
    a, b = window
    if a is None and b is None:
        return "whole session"
    return f"t = {'start' if a is None else f'{a:g} s'} … {'end' if b is None else f'{b:g} s'}"


def words(v: Any) -> str:
    """A metadata value in words, not JSON: {"possible": null, "why": "..."} -> "possible: unknown;
    why: ...", lists as "a, b", booleans yes/no; empty members are left out."""
    if v is None:
        return "unknown"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict):
        parts = [f"{str(k).replace('_', ' ')}: {words(x)}" for k, x in v.items() if x not in ("", [], {})]
        return "; ".join(parts) if parts else "none"
    if isinstance(v, list):
        return ", ".join(words(x) if isinstance(x, (dict, list)) else str(x) for x in v) if v else "none"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def fmt_value(v: Any, kind: str) -> str:
    """Visible text of a summary value. kind: int, rate (integer from 100, else 1 decimal), mean (2),
    pct (2), s (3), text, words (a structure in words), epoch."""
    if kind == "words":
        return words(v)
    if v is None:
        return "–"
    if kind == "epoch":
        return datetime.datetime.fromtimestamp(float(v), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if kind == "text":
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, (dict, list)):
            return json.dumps(v, sort_keys=True)
        return str(v)
    if kind == "int":
        return f"{int(v):,}"
    if kind == "rate":
        return rate_text(v)
    decimals = {"mean": 2, "pct": 2, "s": 3}[kind]
    return f"{float(v):,.{decimals}f}"


def _get(s: Any, key: list) -> Any:
    """The summary value at a JSON path (None when absent)."""
    for k in key:
        if isinstance(s, dict):
            s = s.get(k)
        elif isinstance(s, list) and isinstance(k, int) and 0 <= k < len(s):
            s = s[k]
        else:
            return None
    return s


class _Html:
    """Builds the document; every value cell carries data-key (JSON path into the summary) and
    data-kind (how it is formatted), so its text can be checked against the summary."""

    def __init__(self, s: dict) -> None:
        self.s = s
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def cell(self, key: list, kind: str) -> str:
        v = _get(self.s, key)
        attr = html.escape(json.dumps(key), quote=True)
        align = "left" if kind in ("text", "words", "epoch") else "right"
        return f'<td class="v" align="{align}" data-key="{attr}" data-kind="{kind}">{html.escape(fmt_value(v, kind))}</td>'

    def cell_if(self, key: list, kind: str) -> str:
        """A value cell, or a dash (naming nothing) when the summary has no value at key."""
        parent = _get(self.s, key[:-1])
        present = isinstance(parent, dict) and key[-1] in parent
        return self.cell(key, kind) if present else '<td align="right">–</td>'

    def table(self, title: str, head: list[str], rows: list[list[str]], note: str = "") -> None:
        """rows: lists of ready <td> strings (label cells made with label())."""
        if not rows:
            return
        self.add(f"<h2>{html.escape(title)}</h2>")
        if note:
            self.add(f'<p class="note">{html.escape(note)}</p>')
        self.add('<table class="t" border="1" cellspacing="0" cellpadding="4">')
        self.add("<thead><tr>" + "".join(f'<th bgcolor="#e8e8ec">{html.escape(h)}</th>' for h in head)
                 + "</tr></thead><tbody>")
        for r in rows:
            self.add("<tr>" + "".join(r) + "</tr>")
        self.add("</tbody></table>")


def label(text: str) -> str:
    return f'<td class="k">{html.escape(str(text))}</td>'


CSS = """
body { font-family: "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; font-size: 10pt; color: #1a1a1a;
       margin: 24px auto; max-width: 1280px; padding: 0 24px; }
h1 { font-size: 17pt; margin: 0 0 4px 0; }
h2 { font-size: 13pt; margin: 20px 0 6px 0; border-bottom: 1px solid #ccc; }
p.sub, p.note { color: #555; margin: 2px 0; }
table.t { border-collapse: collapse; margin: 4px 0 8px 0; }
table.t th { background: #e8e8ec; text-align: left; padding: 3px 8px; border: 1px solid #bbb; }
table.t td { padding: 3px 8px; border: 1px solid #ccc; }
td.v { font-family: "DejaVu Sans Mono", monospace; text-align: right; }
td.v[data-kind=text], td.v[data-kind=words], td.v[data-kind=epoch] { text-align: left; font-family: inherit; }
ul.findings li { margin: 3px 0; }
div.fig { margin: 12px 0; }
div.fig img { max-width: 100%; height: auto; }
p.cap { color: #444; margin: 2px 0 14px 0; }
"""
QT_CSS = """
h1 { font-size: 16pt; } h2 { font-size: 12pt; margin-top: 16px; margin-bottom: 4px; }
p.sub, p.note, p.cap { color: #555555; }
td.v { font-family: "DejaVu Sans Mono"; }
"""


def render_html(rep: Report, img_src: Callable[[int], str], img_width: int | None = None, qt: bool = False) -> str:
    """The report as HTML; img_src(i) gives the src of plot i (a data: URI, or a resource name for
    QTextDocument); img_width scales the images to that width (PDF page), else they keep their pixels."""
    s, meta = rep.summary, rep.summary.get("meta", {})
    d = _Html(s)
    title = f"xdpscope report: {s.get('program') or '?'} on {s.get('iface') or '?'}"
    d.add(f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
          f"<style>{QT_CSS if qt else CSS}</style></head><body>")
    d.add(f"<h1>{html.escape(title)}</h1>")
    span = s.get("span")
    d.add(f'<p class="sub">{html.escape(rep.name)} · {_window_text(rep.window)}'
          + (f" (samples from t = {span[0]:.3f} to {span[1]:.3f} s)" if span else "")
          + " · times are seconds since the session start</p>")

    d.add("<h2>Findings</h2><ul class=\"findings\">")
    for f in rep.findings:
        d.add(f"<li>{html.escape(f)}</li>")
    d.add("</ul>")
    from backend.data.pathmodel import html_section  # the kernel path with this window's numbers (id="path")
    d.add(html_section(s, "path.png" if qt else None, img_width or rep.size[0]))

    # session metadata: what the trace recorded (old traces may lack keys: shown as absent)
    rows = []

    def m(name: str, key: str, kind: str = "text") -> None:
        if meta.get(key) not in (None, "", [], {}):
            if kind == "text" and isinstance(meta[key], (dict, list)):
                kind = "words"
            rows.append([label(name), d.cell(["meta", key], kind)])

    m("host", "host")
    m("kernel", "kernel")
    m("interface", "iface")
    m("ifindex", "ifindex", "int")
    m("driver", "driver")
    for key in ("xdp_features", "features", "native", "nic"):  # driver XDP features, when the trace has them
        m(f"driver {key.replace('_', ' ')}", key)
    if not any(k in meta for k in ("xdp_features", "features", "native")):
        rows.append([label("driver XDP features"), '<td class="k">not recorded in this trace</td>'])
    m("XDP mode", "mode")
    m("requested mode", "requested_mode")
    m("mode note", "mode_note")
    m("program", "program")
    m("parameters", "params")
    m("redirect targets", "targets")
    m("verdicts counted by", "verdicts_from")
    rows.append([label("verdict method"), d.cell(["verdict_method"], "text")])   # backend/data/verdicts.py
    m("probes enabled", "probes_enabled")
    m("BPF run-time stats", "run_time")
    m("collector rate (Hz)", "hz", "mean")
    m("CPUs", "cpus", "int")
    m("recording started", "created", "epoch")
    m("recording ended", "ended", "epoch")
    m("xdpscope version", "version")
    rows.append([label("samples in window"), d.cell(["samples"], "int")])
    rows.append([label("duration in window (s)"), d.cell(["duration_s"], "s")])
    d.table("Session", ["", "value"], rows)

    if rep.plots:
        d.add('<h2 style="page-break-before: always">Plots</h2>' if qt and img_width else "<h2>Plots</h2>")
        if rep.merged > 1:
            d.add(f'<p class="note">The window has more samples than the plots draw: every {rep.merged} '
                  "consecutive samples are merged (counts added, intervals added) before plotting.</p>")
        w, h = rep.size
        sw, sh = (w, h) if img_width is None else (img_width, round(h * img_width / w))
        for i, p in enumerate(rep.plots):
            d.add(f'<div class="fig"><img src="{img_src(i)}" width="{sw}" height="{sh}" '
                  f'alt="{html.escape(p.title)}"></div>'
                  f'<p class="cap">{html.escape(p.title)}: x = seconds since the session start'
                  + (f"; {html.escape(p.note)}" if p.note else "") + "</p>")

    d.table("Verdicts", ["verdict", "frames", "mean rate (pps)", "peak rate (pps)"],
            [[label(a), d.cell(["actions", a], "int"), d.cell(["rates", "mean_pps", a], "rate"),
              d.cell(["rates", "peak_pps", a], "rate")] for a in VERDICTS],
            "Totals are sums of the counter deltas; mean = total / duration; peak = the largest "
            "delta / interval of one sample.")
    if str(s.get("verdict_method", "")).startswith("inexact: "):   # backend/data/verdicts.py
        d.table("Verdicts are inexact", ["", "value"],
                [[label("why"), d.cell(["verdict_method"], "text")],
                 [label("frames the program ran (the kernel's run count)"), d.cell(["verdict_total"], "int")]],
                "The verdicts above are not known exactly for this session; the total is the kernel's run count.")
    if s.get("user_maps"):
        d.table("The program's own maps", ["map", "key", "total change"],
                [[label(name), label(key), d.cell(["user_maps", name, key], "int")]
                 for name, keys in s["user_maps"].items() for key in keys],
                "The user program's array and hash maps of integers, sampled as counters: the change of "
                "each entry's value over the window.")
    if len(s["per_cpu_actions"]) > 1:
        d.table("Verdicts per CPU (frames)", ["CPU", *VERDICTS],
                [[label(f"cpu{i}")] + [d.cell(["per_cpu_actions", i, a], "int") for a in VERDICTS]
                 for i in range(len(s["per_cpu_actions"]))])
    if s["redirect_targets"]:
        d.table("Redirect fan-out", ["target", "frames", "share (%)", "mean flush size (frames)"],
                [[label(t), d.cell(["redirect_targets", t], "int"), d.cell(["redirect_shares", t], "pct"),
                  d.cell(["flush_mean_by_target", t], "mean")] for t in s["redirect_targets"]])
    if s["devmap"]:
        d.table("Devmap transmit (per flush target)", ["target", "sent", "dropped"],
                [[label(t), d.cell(["devmap", t, "sent"], "int"), d.cell(["devmap", t, "drops"], "int")]
                 for t in s["devmap"]])
    if s["flush_batches"]:
        targets = list(s["flush_batches_by_target"])
        rows = []
        for size in s["flush_batches"]:
            rows.append([label(size), d.cell(["flush_batches", size], "int")]
                        + [d.cell_if(["flush_batches_by_target", t, size], "int") for t in targets])
        d.table("Flush sizes (flushes of each size)", ["frames per flush", "all targets", *targets], rows,
                "One flush = one xdp_devmap_xmit event (sent + dropped frames); bins 0..16 are exact.")
        d.table("Flush size statistics", ["", "value"],
                [[label("flushes"), d.cell(["flush_count"], "int")],
                 [label("frames flushed"), d.cell(["flush_frames"], "int")],
                 [label("mean frames per flush"), d.cell(["flush_mean"], "mean")],
                 [label("median frames per flush"), d.cell(["flush_median"], "mean")]])
    if s["redirect_errors"]:
        d.table("Redirect errors by errno", ["target", "errno", "frames"],
                [[label(t), label(e), d.cell(["redirect_errors", t, e], "int")]
                 for t, errs in s["redirect_errors"].items() for e in errs]
                + [[label("all targets"), label(e), d.cell(["redirect_errors_by_errno", e], "int")]
                   for e in s["redirect_errors_by_errno"]])
    if s["exceptions"]:
        d.table("Exceptions (xdp_exception events)", ["verdict", "events"],
                [[label(v), d.cell(["exceptions", v], "int")] for v in s["exceptions"]])
    if s["cpumap"]:
        rows = []
        for key, v in s["cpumap"].items():
            if isinstance(v, dict):
                rows += [[label(f"{key}: bulks of {size}"), d.cell(["cpumap", key, size], "int")] for size in v]
            else:
                rows.append([label(key), d.cell(["cpumap", key], "int")])
        d.table("cpumap enqueue", ["", "count"], rows)
    counters = s.get("counters") or {}
    for fam, title, members in (("cpumap_enqueue", "cpumap fan-out per target CPU", ("processed", "drops", "bulks")),
                                ("cpumap_kthread", "cpumap kthreads per CPU", ("processed", "drops", "sched"))):
        per_cpu = counters.get(fam) or []
        d.table(title, ["CPU", *members],
                [[label(f"CPU {c}")] + [d.cell_if(["counters", fam, c, k], "int") for k in members]
                 for c, v in enumerate(per_cpu) if isinstance(v, dict) and any(v.values())])
    if s["napi"]:
        heads = {"polls": "polls", "work": "work (packets)", "budget": "budget", "full": "full polls"}
        fields = [f for f in heads if any(f in dev for dev in s["napi"].values())]
        d.table("NAPI polls", ["device", *(heads[f] for f in fields)],
                [[label(dev)] + [d.cell_if(["napi", dev, f], "int") for f in fields] for dev in s["napi"]])
    if s["run"]["cnt"]:
        d.table("Program run time (kernel BPF stats)", ["", "value"],
                [[label("runs"), d.cell(["run", "cnt"], "int")], [label("run time (ns)"), d.cell(["run", "ns"], "int")],
                 [label("ns per run"), d.cell(["run", "ns_per_run"], "mean")]])
    if s["driver_counters"]:
        d.table("Driver counters (ethtool -S deltas)", ["counter", "value"],
                [[label(k), d.cell(["driver_counters", k], "int")] for k in s["driver_counters"]])
    if s.get("driver_verdicts") is not None:
        d.table("BPF vs driver (frames)", ["verdict", "program (BPF)", "driver", "difference"],
                [[label(a), d.cell(["actions", a], "int"), d.cell(["driver_verdicts", a], "int"),
                  d.cell(["driver_difference", a], "int")] for a in VERDICTS],
                "difference = driver - program; the driver column is derived from the "
                f"{s.get('driver') or '?'} counters above.")
        d.add(f'<p class="note">Why they differ: {html.escape(DRIVER_EXPLAIN)}.</p>')
    _schema_tables(d, s)
    d.add(f'<p class="note">Made by xdpscope from {html.escape(str(rep.name))}; every number in '
          "these tables is a value of <code>xdpscope summary --json</code> for the same window.</p>")
    d.add("</body></html>")
    return "\n".join(d.parts)


MAX_COUNTER_ROWS = 64   # rows of one family in the appendix; summary --json has them all


def _leaves(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path, value


def _position_name(p: Any) -> str:
    return getattr(p, "what", None) or "member"


def _schema_tables(d: "_Html", s: dict) -> None:
    """The appendix: every counter family of the schema with what it counted in the window, from
    summary's generic "counters" section, so a family added to the schema is reported with no code."""
    rows: dict[str, list[list[str]]] = {}
    more: dict[str, int] = {}
    for field_name, value in (s.get("counters") or {}).items():
        for path, v in _leaves(value):
            got = schema.match((field_name, *path)) if v else None
            if got is None:
                continue
            fam, parts = got
            fam_rows = rows.setdefault(fam.name, [])
            if len(fam_rows) >= MAX_COUNTER_ROWS:
                more[fam.name] = more.get(fam.name, 0) + 1
                continue
            fam_rows.append([label(x) for x in parts] + [d.cell(["counters", field_name, *path], "int")])
    if rows:
        d.add("<h2>Every counter (the schema's families)</h2>")
        d.add('<p class="note">Each counter family xdpscope records (backend/data/schema.py) with its '
              "nonzero totals in the window.</p>")
    for fam in schema.FAMILIES:
        if fam.name in rows:
            extra = f" ({more[fam.name]} more rows in summary --json)" if fam.name in more else ""
            d.table(f"{fam.name}", [*(_position_name(p) for p in fam.positions), "total"], rows[fam.name],
                    fam.doc + extra)


# -- output -------------------------------------------------------------------------------------

def _qt_document(rep: Report, text_width: int, img_width: int | None):
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QFont, QTextDocument
    doc = QTextDocument()
    doc.setDefaultFont(QFont("DejaVu Sans", 9))
    for i, p in enumerate(rep.plots):
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(f"plot{i}.png"), p.image)
    from .path_view import path_image  # QTextDocument draws no inline SVG: the path section as a picture
    doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl("path.png"),
                    path_image(rep.summary, 2 * (img_width or text_width - 2 * 24)))  # 2x: sharp when printed
    doc.setHtml(render_html(rep, lambda i: f"plot{i}.png", img_width, qt=True))
    doc.setTextWidth(text_width)
    return doc


def write_html(rep: Report, out: Path) -> None:
    from .render import png_bytes, write_bytes
    srcs = ["data:image/png;base64," + base64.b64encode(png_bytes(p.image)).decode("ascii") for p in rep.plots]
    write_bytes(out, render_html(rep, lambda i: srcs[i]).encode("utf-8"))


def write_pdf(rep: Report, out: Path) -> None:
    """The PDF is rendered into memory, checked to be a whole PDF, then written through write_bytes
    (a temporary file renamed over `out`): QPdfWriter itself reports no write errors."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMarginsF, QSizeF
    from PySide6.QtGui import QPageLayout, QPageSize, QPdfWriter
    from .render import write_bytes
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buf)
    writer.setResolution(96)  # layout in CSS pixels; images keep all their pixels in the PDF
    writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                     QMarginsF(12, 12, 12, 12), QPageLayout.Unit.Millimeter))
    writer.setTitle(f"xdpscope report: {rep.name}")
    writer.setCreator("xdpscope")
    page = writer.pageLayout().paintRectPixels(96)
    doc = _qt_document(rep, page.width(), page.width() - 2 * 4 - 2)
    doc.setDocumentMargin(4)
    doc.setPageSize(QSizeF(page.width(), page.height()))
    doc.print_(writer)  # ends the painter: the PDF is complete in `data`
    del writer
    buf.close()
    pdf = bytes(data)
    if not pdf.startswith(b"%PDF-") or b"%%EOF" not in pdf[-1024:]:
        raise XdpscopeError(f"{out}: Qt did not render a complete PDF ({len(pdf)} bytes)")
    write_bytes(out, pdf)


def write_png(rep: Report, out: Path) -> None:
    from PySide6.QtGui import QColor, QImage, QPainter
    from .render import save_image
    w = rep.size[0] + 2 * PNG_MARGIN
    doc = _qt_document(rep, w, None)
    doc.setDocumentMargin(PNG_MARGIN)
    doc.setTextWidth(w)
    h = math.ceil(doc.size().height())
    if h > 32767:
        raise XdpscopeError(f"{out}: the report is {h} pixels tall, more than a PNG can hold here; "
                            "use a smaller --size or HTML/PDF")
    img = QImage(w, h, QImage.Format.Format_ARGB32)
    img.setDevicePixelRatio(1.0)
    img.fill(QColor("white"))
    painter = QPainter(img)
    try:
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        doc.drawContents(painter)
    finally:
        painter.end()
    save_image(img, out)


def output_kind(out: str | os.PathLike) -> str:
    ext = Path(out).suffix.lower()
    if ext not in FORMATS:
        raise XdpscopeError(f"{out}: unknown report format {ext or '(no extension)'!r}: use .html, .pdf or .png")
    return {".htm": "html"}.get(ext, ext[1:])


def write_report(src: Any, out: str | os.PathLike, t_from: float | None = None,
                 t_to: float | None = None, size: tuple[int, int] | None = None) -> Report:
    """Render the report of `src` (a trace path, or a Source: a live session, a replay) over
    [t_from, t_to] to `out` (.html, .pdf or .png); `size` is
    the pixel size of each plot image (default: DEFAULT_SIZE, DEFAULT_SIZE_PDF for a PDF). The file
    is written whole or not at all (render.write_file): a failure leaves an old `out` as it was."""
    from .render import check_size
    kind = output_kind(out)
    size = check_size(*(size or (DEFAULT_SIZE_PDF if kind == "pdf" else DEFAULT_SIZE)))
    out = Path(out)
    try:
        if not out.parent.is_dir():
            raise XdpscopeError(f"{out}: no such directory {str(out.parent)!r}")
        if out.is_dir():
            raise XdpscopeError(f"{out}: is a directory")
    except OSError as e:
        raise XdpscopeError(f"{out}: cannot write: {e.strerror or e}") from None
    rep = build(src, t_from, t_to, size)  # everything is rendered before the file is touched
    {"html": write_html, "pdf": write_pdf, "png": write_png}[kind](rep, out)
    return rep
