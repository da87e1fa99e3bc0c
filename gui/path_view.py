"""The Path dock's workings (its panel: gui/plots/path.py): the session's kernel path
(backend/data/pathmodel.py) drawn with Qt graphics, with the numbers of the window the other panels show.

The numbers come from window_summary(view): the same fields backend.data.summary.summarize() gives for
a trace, computed from the app's history for the visible window (live or replay, following the
playhead), or for the A-B range when one is set (a replay's A-B range is summarized from its trace
file, so it may reach outside the loaded window). pathmodel.build() turns either into the diagram,
so the dock and a report of the same window show the same numbers.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPainterPathStroker, QPen
from PySide6.QtWidgets import (QGraphicsPathItem, QGraphicsRectItem, QGraphicsScene, QGraphicsSimpleTextItem,
                               QGraphicsView, QSizePolicy, QWidget)

from backend.data import driver as _driver
from backend.data import pathmodel as pm
from backend.data.sample import FLUSH_BINS, NAPI_BINS, VERDICTS

from .model import NAPI_FIELDS, History
from .plots.view import View

C = pm.COLORS


# -- the window's summary, from the history -------------------------------------------------------

def _total(v: View, name: tuple, fn) -> np.ndarray:
    return np.rint(v.total(("path",) + name, fn)).astype(np.int64) if v.n else np.zeros(0, np.int64)


def _keyed_totals(v: View, name: str, keyed) -> dict[str, int]:
    names = list(keyed.names)
    if not names or not v.n:
        return {}
    n = len(names)
    sums = _total(v, (name, n), lambda h, sl: keyed.data[sl, :n])
    return {k: int(x) for k, x in zip(names, sums.tolist())}


def _bins(hist) -> dict[str, int]:
    return {str(i): int(n) for i, n in enumerate(hist) if n}


def _flush_range(sp, a: int, e: int) -> np.ndarray:
    lo, hi = np.searchsorted(sp.row[:sp.n], [a, e])
    n = len(sp.names) * sp.bins
    return np.bincount(sp.cell[lo:hi], weights=sp.value[lo:hi], minlength=n)[:n].reshape(len(sp.names), sp.bins)


def flush_totals(h: History, a: int, e: int) -> np.ndarray:
    """Per-target flush histograms (targets x bins) summed over absolute rows [a, e) of the
    history's sparse store. The last answer is kept: a window that moved on costs only the rows
    that entered and left it (integers in float64: exact)."""
    sp = h.flush_by_target
    got = getattr(h, "_path_flush", None)
    if got is not None:
        serial, a0, e0, names, sums = got
        if serial == h.serial and names == len(sp.names) and a0 <= a <= e0 <= e:
            sums = sums + _flush_range(sp, e0, e) - _flush_range(sp, a0, a)
            h._path_flush = (h.serial, a, e, names, sums)
            return sums
    sums = _flush_range(sp, a, e)
    h._path_flush = (h.serial, a, e, len(sp.names), sums)
    return sums


def window_summary(v: View) -> dict:
    """summarize()'s fields for the rows of the view (those backend.pathmodel reads), from the
    history's columns: counts are exact (float64 holds every integer below 2**53)."""
    h, meta = v.h, v.meta or {}
    dur = float(v.total(("path", "dt"), lambda h, sl: h.dt[sl])) if v.n else 0.0
    counts = _total(v, ("verdicts",), lambda h, sl: h.verdicts[sl]).tolist() if v.n else [0] * len(VERDICTS)
    verdicts = dict(zip(VERDICTS, (int(x) for x in counts)))
    targets = _keyed_totals(v, "targets", h.targets)
    for t in meta.get("targets") or []:
        targets.setdefault(t, 0)
    sent, drops = _keyed_totals(v, "sent", h.devmap_sent), _keyed_totals(v, "drops", h.devmap_drops)
    devmap = {t: {"sent": sent.get(t, 0), "drops": drops.get(t, 0)} for t in dict.fromkeys([*sent, *drops])}
    errors: dict[str, dict[str, int]] = {}
    for k, n in _keyed_totals(v, "rerr", h.redirect_errors).items():
        t, _, e = k.partition(" ")
        if n:
            errors.setdefault(t, {})[e] = n
    by_errno: dict[str, int] = {}
    for errs in errors.values():
        for e, n in errs.items():
            by_errno[e] = by_errno.get(e, 0) + n
    flush_all = _total(v, ("flush",), lambda h, sl: h.flush[sl]).tolist() if v.n else [0] * FLUSH_BINS
    sums = flush_totals(h, v.a, v.e)
    by_target = {t: [int(round(x)) for x in row] for t, row in zip(h.flush_by_target.names, sums.tolist())}
    flushes = int(sum(flush_all))
    frames = int(sum(i * n for i, n in enumerate(flush_all)))
    napi: dict[str, dict] = {}
    fields = {f: _keyed_totals(v, f"napi-{f}", h.napi_dev[f]) for f in NAPI_FIELDS}
    hist_cols = _keyed_totals(v, "napi-hist", h.napi_hist)
    for dev in h.napi_dev["polls"].names:
        d = {f: fields[f].get(dev, 0) for f in NAPI_FIELDS}
        d["hist"] = [hist_cols.get(f"{dev} {b}", 0) for b in range(NAPI_BINS)]
        napi[dev] = d
    counters = _keyed_totals(v, "driver", h.driver)
    drv = meta.get("driver") or ""
    derived = _driver.verdicts(drv, counters)
    if derived is not None and not any(_driver._matches(counters, p) for pats in
                                       _driver.VERDICT_COUNTERS[drv].values() for p in pats):
        derived = None
    dv = dict(zip(VERDICTS, derived)) if derived is not None else None
    run = _total(v, ("run",), lambda h, sl: h.run[sl]).tolist() if v.n else [0, 0]
    cnt, ns = int(run[0]), int(run[1])
    cpumap_bulk = _total(v, ("cpumap",), lambda h, sl: h.cpumap[sl]).tolist() if v.n and h.has_cpumap else []
    cpumap_drops = int(_total(v, ("cpumap_drops",), lambda h, sl: h.cpumap_drops[sl])) if v.n and h.has_cpumap_drops else 0
    cpumap = {**({"bulk": _bins(cpumap_bulk)} if any(cpumap_bulk) else {}), **({"drops": cpumap_drops} if cpumap_drops else {})}
    return {
        "iface": meta.get("iface"), "program": meta.get("program"), "mode": meta.get("mode"), "driver": meta.get("driver"),
        "meta": meta, "samples": v.n, "duration_s": dur, "actions": verdicts, "redirect_targets": targets,
        "redirect_errors": errors, "redirect_errors_by_errno": by_errno, "devmap": devmap,
        "flush_batches": _bins(flush_all), "flush_batches_by_target": {t: _bins(x) for t, x in by_target.items() if any(x)},
        "flush_count": flushes, "flush_frames": frames, "flush_mean": frames / flushes if flushes else None,
        "flush_mean_by_target": {t: (sum(i * n for i, n in enumerate(x)) / sum(x) if sum(x) else None)
                                 for t, x in by_target.items()},
        "exceptions": {k: n for k, n in _keyed_totals(v, "exc", h.exceptions).items() if n},
        "cpumap": cpumap, "napi": napi, "driver_counters": counters, "driver_verdicts": dv,
        "driver_difference": ({a: n - verdicts[a] for a, n in dv.items()} if dv is not None else None),
        "run": {"cnt": cnt, "ns": ns, "ns_per_run": ns / cnt if cnt else None},
    }


def region_view(v: View) -> View:
    """The view's rows with a <= t <= b for its A-B range (as summarize(a, b) counts them)."""
    a, b = v.region
    h = v.h
    t = h.t[h.start:h.end]
    i0, i1 = int(np.searchsorted(t, a, side="left")), int(np.searchsorted(t, b, side="right"))
    return View(h, slice(h.start + i0, h.start + max(i0, i1)), a, b, v.key + ("region",), meta=v.meta)


@lru_cache(maxsize=16)
def _file_summary(path: str, a: float, b: float, mtime: float) -> dict:
    from backend.data.summary import summarize
    return summarize(path, a, b)


def summary_for(v: View) -> tuple[dict, str]:
    """(summary, what it covers) for the path: the A-B range when one is set, else the window."""
    meta = v.meta or {}
    if v.region is not None:
        a, b = v.region
        path = meta.get("file")
        if path:  # a replay: the range from the trace, also where it reaches past the loaded window
            import os
            try:
                s = _file_summary(str(path), float(a), float(b), os.path.getmtime(path))
                return s, f"A–B range {a:.3f} … {b:.3f} s (from the trace)"
            except Exception:  # noqa: BLE001 - a damaged or vanished file: the loaded rows still tell
                pass
        return window_summary(region_view(v)), f"A–B range {a:.3f} … {b:.3f} s"
    return window_summary(v), f"window {v.t0:.1f} … {v.t1:.1f} s"


# -- drawing ---------------------------------------------------------------------------------------

def _font(px: float, bold: bool = False) -> QFont:
    f = QFont("DejaVu Sans Mono")
    f.setStyleHint(QFont.StyleHint.Monospace)
    f.setPixelSize(max(int(round(px)), 1))
    f.setBold(bold)
    return f


def curve(e: pm.Edge) -> QPainterPath:
    (x1, y1), (a1, b1), (a2, b2), (x2, y2) = e.points
    path = QPainterPath(QPointF(x1, y1))
    path.cubicTo(QPointF(a1, b1), QPointF(a2, b2), QPointF(x2, y2))
    return path


class EdgeItem(QGraphicsPathItem):
    """An edge: its width is the rate in the window; hovering shows the exact frames and rate."""

    def __init__(self, e: pm.Edge, panel: Any) -> None:
        super().__init__(curve(e))
        self.edge, self.panel = e, panel
        pen = QPen(QColor(C["loss"] if e.loss else C["edge"]), e.width)
        pen.setCapStyle(Qt.PenCapStyle.FlatCap)
        self.setPen(pen)
        self.setAcceptHoverEvents(True)
        self.setToolTip(e.hover())
        self.setZValue(1)

    def update_from(self, e: pm.Edge) -> None:
        self.edge = e
        pen = self.pen()
        if pen.widthF() != e.width:
            pen.setWidthF(e.width)
            self.setPen(pen)
        self.setToolTip(e.hover())

    def shape(self) -> QPainterPath:  # the stroke (at least 8 px), not the area under the curve
        s = QPainterPathStroker()
        s.setWidth(max(self.pen().widthF(), 8.0))
        return s.createStroke(self.path())

    def hoverEnterEvent(self, ev) -> None:
        self.panel.hovered(self.edge.hover())
        super().hoverEnterEvent(ev)

    def hoverLeaveEvent(self, ev) -> None:
        self.panel.hovered("")
        super().hoverLeaveEvent(ev)


class NodeItem(QGraphicsPathItem):
    """A node: a function of the path with its numbers; a click tells what measures it."""

    def __init__(self, n: pm.Node, panel: Any) -> None:
        path = QPainterPath()
        path.addRoundedRect(QRectF(n.x, n.y, n.w, n.h), 5, 5)
        super().__init__(path)
        self.node, self.panel = n, panel
        fill = {"loss": C["lossnode"], "idle": C["idle"], "queue": C["queue"], "target": C["target"]}.get(n.kind, C["node"])
        self.setBrush(QBrush(QColor(fill)))
        self.setPen(QPen(QColor(C["loss"] if n.kind == "loss" else C["border"]), 1))
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(f"{n.title}\n{n.text()}\n\nMeasured by: {n.measured_by}\n(click for the kernel source)")
        self.setZValue(2)
        self.texts: list[QGraphicsSimpleTextItem] = []
        self.bars: list[QGraphicsRectItem] = []
        self._texts(n)

    @staticmethod
    def _rows(n: pm.Node) -> list[str]:
        return ["".join(p.text if isinstance(p, pm.Num) else p for p in row) for row in n.rows]

    def _texts(self, n: pm.Node) -> None:
        y = n.y + pm.PAD
        for row in n.title_rows:
            self._text(row, n.x + pm.PAD, y, _font(10.5, True), C["title"])
            y += pm.TITLE_H
        if n.sub:
            self._text(pm.short(n.sub, n.w - 2 * pm.PAD), n.x + pm.PAD, y - 1, _font(9), C["sub"])
            y += pm.LINE_H
        self.first_row = len(self.texts)
        for row in self._rows(n):
            self._text(row, n.x + pm.PAD, y, _font(10), C["text"])
            y += pm.LINE_H
        self.hist_top = y
        if n.hist:
            for i, x, by, w, h in pm.hist_bars(n, y):
                bar = QGraphicsRectItem(QRectF(x, by, w, h), self)
                bar.setBrush(QColor(C["mark"] if i == pm.BULK else C["hist"]))
                bar.setPen(QPen(Qt.PenStyle.NoPen))
                bar.setToolTip(f"{i} frames per flush: {n.hist[i][1].text} flushes")
                self.bars.append(bar)
                if i % 4 == 0:
                    self._text(str(i), x, y + pm.HIST_H - 11, _font(7.5), C["mark"] if i == pm.BULK else C["sub"])

    def _text(self, text: str, x: float, y: float, font: QFont, color: str) -> None:
        t = QGraphicsSimpleTextItem(text, self)
        t.setFont(font)
        t.setBrush(QColor(color))
        t.setPos(x, y)
        self.texts.append(t)

    def update_from(self, n: pm.Node) -> None:
        """New numbers for the same node at the same place (same rows): texts and bars only."""
        self.node = n
        for item, row in zip(self.texts[self.first_row:], self._rows(n)):
            if item.text() != row:
                item.setText(row)
        if n.hist:
            for bar, (i, x, by, w, h) in zip(self.bars, pm.hist_bars(n, self.hist_top)):
                bar.setRect(QRectF(x, by, w, h))
                bar.setToolTip(f"{i} frames per flush: {n.hist[i][1].text} flushes")
        self.setToolTip(f"{n.title}\n{n.text()}\n\nMeasured by: {n.measured_by}\n(click for the kernel source)")

    def hoverEnterEvent(self, ev) -> None:
        self.panel.hovered(f"{self.node.title}: {self.node.text()}".replace("\n", " · "))
        super().hoverEnterEvent(ev)

    def hoverLeaveEvent(self, ev) -> None:
        self.panel.hovered("")
        super().hoverLeaveEvent(ev)

    def mousePressEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            self.panel.select(self.node.id)
            ev.accept()
            return
        super().mousePressEvent(ev)


class PathScene(QGraphicsView):
    """The diagram, always fitted to the dock (aspect kept)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        self.setBackgroundBrush(QColor(C["bg"]))
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def fit(self) -> None:
        r = self.scene().sceneRect()
        if r.width() > 0 and r.height() > 0:
            self.fitInView(r, Qt.AspectRatioMode.KeepAspectRatio)

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self.fit()


def svg_image(svg: str, width: int, background: str = C["bg"]):
    """The SVG drawn into a QImage `width` px wide (reports rendered by Qt: PDF, PNG)."""
    from PySide6.QtCore import QByteArray
    from PySide6.QtGui import QImage
    from PySide6.QtSvg import QSvgRenderer
    r = QSvgRenderer(QByteArray(svg.encode("utf-8")))
    size = r.defaultSize()
    h = max(int(math.ceil(size.height() * width / max(size.width(), 1))), 1)
    img = QImage(width, h, QImage.Format.Format_ARGB32)
    img.setDevicePixelRatio(1.0)
    img.fill(QColor(background))
    painter = QPainter(img)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        r.render(painter)
    finally:
        painter.end()
    return img


def path_image(s: dict, width: int):
    """The report's path section as a picture of `width` px (Qt documents draw no inline SVG)."""
    return svg_image(pm.to_svg(pm.build(s, expand=None), pm.COLORS_LIGHT), max(int(width), 50), "#ffffff")
