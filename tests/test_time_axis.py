"""gui/plots/axes.TimeAxis draws what pyqtgraph's own bottom axis draws: the same ticks, labels and
label placement (compared spec by spec and pixel by pixel) over ranges a live window scrolls through."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtGui import QImage, QPainter, QPicture

from gui.plots.axes import TimeAxis
from gui.palette import DARK
from gui.plots.base import style_plot

pytestmark = pytest.mark.unit


def pair(qtbot, width: int):
    """Two plots of the same size and style: pyqtgraph's axis and TimeAxis."""
    glw = pg.GraphicsLayoutWidget()
    qtbot.addWidget(glw)
    glw.resize(width, 220)
    ours = pg.PlotItem(axisItems={"bottom": TimeAxis()})
    theirs = pg.PlotItem()
    for i, plot in enumerate((theirs, ours)):
        style_plot(plot, "t", DARK)
        plot.setLabel("bottom", "time since session start (s)")
        glw.addItem(plot, i, 0)
    glw.show()
    qtbot.waitExposed(glw)
    return glw, theirs.getAxis("bottom"), ours.getAxis("bottom")


def specs(axis):
    pic = QPicture()
    p = QPainter(pic)
    try:
        axis_spec, ticks, texts = axis.generateDrawSpecs(p)
    finally:
        p.end()
    return ([(pen.color().rgba(), pen.widthF(), a.x(), a.y(), b.x(), b.y()) for pen, a, b in ticks],
            [(r.getRect(), int(f), s) for r, f, s in texts],
            (axis_spec[1].x(), axis_spec[1].y(), axis_spec[2].x(), axis_spec[2].y()))


def image(glw, axis) -> QImage:
    img = QImage(int(axis.width()) + 40, int(axis.height()), QImage.Format.Format_ARGB32)
    img.fill(0)
    p = QPainter(img)
    try:
        axis.picture = None
        axis.paint(p, None, None)
    finally:
        p.end()
    return img


@pytest.mark.parametrize("width", [420, 1500])
def test_time_axis_matches_pyqtgraph(qtbot, width):
    glw, theirs, ours = pair(qtbot, width)
    rng = np.random.default_rng(7)
    windows = [1, 2.5, 30, 61, 300, 3600]
    ends = [0.0, 0.7, 29.99, 3599.95, 93_600.05, 1e6 / 3]
    for length in windows:
        for end in [*ends, *rng.uniform(0, 2e5, 6)]:
            t0, t1 = (end - length, end) if end >= length else (0.0, float(length))
            for plot_axis in (theirs, ours):
                plot_axis.linkedView().setXRange(t0, t1, padding=0)
            for px in (100.0, 555.5, 1450.0):
                assert pg.AxisItem.tickValues(ours, t0, t1, px) == ours.tickValues(t0, t1, px)
            a, b = specs(theirs), specs(ours)
            assert a[0] == b[0], (length, end)     # ticks: pen, ends
            assert a[1] == b[1], (length, end)     # labels: place, flags, text
            assert a[2] == b[2]                    # the axis line
            assert a[1], "some label is drawn"
            assert image(glw, theirs) == image(glw, ours), (length, end)
