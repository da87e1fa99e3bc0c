"""The Path panel: the session's kernel path (backend/data/pathmodel.py) with the numbers of the
window the other panels show (gui/path_view.py: the window's summary and the diagram's items)."""
from __future__ import annotations

import html
from dataclasses import dataclass

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (QComboBox, QGraphicsRectItem, QGraphicsScene, QGraphicsSimpleTextItem, QLabel,
                               QSizePolicy, QWidget)

from backend.data import pathmodel as pm

from ..palette import DARK, Theme
from ..path_view import C, EdgeItem, NodeItem, PathScene, _font, summary_for
from .base import REDRAW_MAX_S, Panel, Summary
from .view import View


@dataclass(frozen=True)
class PathState:
    queues: str = "RX queues: auto"   # PathPanel.QUEUES
    detail: str = "detail: auto"      # PathPanel.DETAIL


class PathPanel(Panel):
    """The Path dock (a Panel: it redraws on the UI timer when its window changed, and is exported
    like the plots)."""

    title = "Path"
    State = PathState
    QUEUES = ("RX queues: auto", "RX queues: one row each", "RX queues: together")
    DETAIL = ("detail: auto", "detail: full", "detail: brief")
    BRIEF_BELOW = 0.8  # auto: the brief form when the full one would be drawn smaller than this

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent, theme)
        self.glw.hide()  # no plots: a graphics view of the diagram instead
        self.view = PathScene(self)
        self.layout().insertWidget(1, self.view, 1)
        self.queues = QComboBox()
        self.queues.addItems(list(self.QUEUES))
        self.queues.setToolTip("One row per RX queue (auto: when the queues' counts differ), from the driver's "
                               "per-queue XDP counters; the NAPI poll counts all queues together")
        self.queues.currentIndexChanged.connect(lambda _: self.update_state(queues=self.queues.currentText()))
        self.controls.addWidget(self.queues)
        self.detail = QComboBox()
        self.detail.addItems(list(self.DETAIL))
        self.detail.setToolTip("Every number on the nodes (full), or each node's main numbers (brief: hover and click "
                               "give the rest); auto: brief when the dock is too small for the full diagram")
        self.detail.currentIndexChanged.connect(lambda _: self.update_state(detail=self.detail.currentText()))
        self.controls.addWidget(self.detail)
        self.where = Summary()  # changes every redraw: repaints itself only
        self.controls.addWidget(self.where, 1)
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.info.setOpenExternalLinks(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.info.setContentsMargins(6, 2, 6, 4)
        self.info.setFixedHeight(3 * self.info.fontMetrics().height() + 8)  # hover text never moves the diagram
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.layout().addWidget(self.info)
        self.path: pm.Path | None = None
        self.summary: dict | None = None
        self.selected: str | None = None
        self._hover = ""
        self._sig: tuple | None = None   # the drawn diagram's layout (unchanged: items updated in place)
        self._nodes: list[NodeItem] = []
        self._edges: list[EdgeItem] = []
        self._labels: list = []
        self._full_size: tuple | None = None
        self._show_info()

    def min_interval(self, view: View) -> float:
        # a diagram, not a time axis: twice a second follows a live window, as the plots of a long
        # window do (its numbers cannot be read faster; each redraw builds the diagram anew)
        return REDRAW_MAX_S

    def show_state(self) -> None:
        for box, text in ((self.queues, self.st.queues), (self.detail, self.st.detail)):
            box.blockSignals(True)
            box.setCurrentIndex(max(box.findText(text), 0))
            box.blockSignals(False)

    def expand(self) -> bool | None:
        i = self.QUEUES.index(self.st.queues) if self.st.queues in self.QUEUES else 0
        return {0: None, 1: True, 2: False}[i]

    def draw(self, v: View) -> None:
        s, where = summary_for(v)
        self.summary = s
        p = self._build(s, v)
        self.path = p
        self.where.setText(f"{where} · {pm.fmt(s.get('duration_s'), 'mean')} s of samples · kernel {p.version}")
        if self.selected is not None and all(n.id != self.selected for n in p.nodes):
            self.selected = None
        sig = _signature(p)
        if sig == self._sig:  # the same diagram with new numbers: update the items in place
            for item, n in zip(self._nodes, p.nodes):
                item.update_from(n)
            for item, e in zip(self._edges, p.edges):
                item.update_from(e)
            for e, texts in zip([e for e in p.edges if e.show_label], self._labels):
                self._place_label(e, texts)
            self._show_info()
            return
        self._sig = sig
        scene = self.view.scene()
        scene.clear()
        scene.setSceneRect(QRectF(0, 0, p.width, p.height))
        self._edges, self._nodes, self._labels = [], [], []
        for e in p.edges:
            self._edges.append(EdgeItem(e, self))
            scene.addItem(self._edges[-1])
            if e.show_label:
                self._labels.append(self._label(scene, e))
        for n in p.nodes:
            self._nodes.append(NodeItem(n, self))
            scene.addItem(self._nodes[-1])
        y = p.height - 8 - 14 * len(p.notes)
        for note in p.notes:
            t = scene.addSimpleText(note, _font(9.5))
            t.setBrush(QColor(C["sub"]))
            t.setPos(pm.MARGIN, y)
            y += 14
        self.view.fit()
        self._show_info()

    def _label(self, scene: QGraphicsScene, e: pm.Edge) -> list:
        color = QColor(C["loss"] if e.loss else C["edge"])
        items = []
        for size in (10.0, 9.0):
            t = QGraphicsSimpleTextItem()
            t.setFont(_font(size))
            t.setBrush(color)
            t.setZValue(4)
            back = QGraphicsRectItem()
            back.setBrush(QColor(30, 31, 34, 200))
            back.setPen(QPen(Qt.PenStyle.NoPen))
            back.setZValue(3)
            scene.addItem(back)
            scene.addItem(t)
            items.append((back, t, size))
        self._place_label(e, items)
        return items

    @staticmethod
    def _place_label(e: pm.Edge, items: list) -> None:
        x, y, anchor = pm.label_anchor(e)
        for i, ((back, t, size), text) in enumerate(zip(items, (f"{e.label} {e.frames.text}", f"{e.rate.text}/s"))):
            if t.text() != text:
                t.setText(text)
            w = t.boundingRect().width()
            tx = x - w if anchor == "end" else x
            ty = y - size - 1 + 12 * i
            back.setRect(QRectF(tx - 2, ty, w + 4, size + 2))
            back.setToolTip(e.hover())
            t.setPos(tx, ty)

    def _build(self, s: dict, v: View) -> pm.Path:
        """The path, full or brief (auto: brief when the full diagram would be drawn too small; the
        full one's size is remembered per session and layout choice, so a frame builds one)."""
        i = self.DETAIL.index(self.st.detail) if self.st.detail in self.DETAIL else 0
        if i:
            return pm.build(s, self.expand(), brief=i == 2)
        key = (v.h.serial, self.expand(), tuple(sorted((s.get("redirect_targets") or {}))), self.view.size().toTuple())
        if self._full_size is None or self._full_size[0] != key:
            full = pm.build(s, self.expand())
            self._full_size = (key, full.width, full.height)
            if not self._too_small(full.width, full.height):
                return full
        _, w, h = self._full_size
        return pm.build(s, self.expand(), brief=self._too_small(w, h))

    def _too_small(self, w: float, h: float) -> bool:
        vw, vh = max(self.view.width(), 1), max(self.view.height(), 1)
        return min(vw / w, vh / h) < self.BRIEF_BELOW

    # -- hover and click ------------------------------------------------------------------------------
    def hovered(self, text: str) -> None:
        self._hover = text
        self._show_info()

    def select(self, node_id: str | None) -> None:
        self.selected = node_id
        self._show_info()

    def node_info(self, node_id: str) -> str:
        """What a click on a node says: its numbers, what measures them, its kernel source."""
        assert self.path is not None
        n = self.path.node(node_id)
        links = " · ".join(f'<a href="{html.escape(url, quote=True)}" style="color:#7cb8ff">{html.escape(f)}</a>'
                           + (f" ({pm.FILES[f]})" if f in pm.FILES else "") for f, url in n.links)
        return (f"<b>{html.escape(n.title)}</b> — {html.escape(n.sub)}<br>"
                f"{html.escape(n.text()).replace(chr(10), ' · ')}<br>"
                f"<i>Measured by:</i> {html.escape(n.measured_by)}"
                + (f"<br>Kernel source ({html.escape(self.path.version)}): {links}" if links else
                   "<br>No kernel function to link: xdpscope does not know this driver's code."))

    def _show_info(self) -> None:
        if self.selected is not None and self.path is not None:
            text = self.node_info(self.selected)
        elif self._hover:
            text = html.escape(self._hover)
        else:
            text = ("Hover an edge for its exact frames and rate, click a function for what measures it "
                    "and its kernel source. Edge width: rate in the window; red: frames lost.")
        if text != self.info.text():  # a QLabel's setText lays the dock out again
            self.info.setText(text)

    def new_session(self) -> None:
        self.selected = None
        super().new_session()


def _signature(p: pm.Path) -> tuple:
    return (tuple((n.id, n.x, n.y, n.w, n.h, tuple(n.title_rows), len(n.rows), n.sub, n.hist is not None)
                  for n in p.nodes),
            tuple((e.src, e.dst, e.show_label, tuple(e.points)) for e in p.edges), tuple(p.notes), p.width, p.height)
