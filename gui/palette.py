"""Colours and line styles: a colour-blind-safe palette (Okabe & Ito, "Color Universal Design")
and the two themes, dark for the app and light for printed reports.

Series that are equal over the window (four targets of a round robin, REDIRECT = total) get
distinct dash patterns, so the one drawn last does not hide the others (plots.SeriesPlot)."""
from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import Qt

# Okabe-Ito: orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
# on white, the yellow and the sky blue are too faint: darker versions of the same hues
OKABE_ITO_LIGHT = ("#C98A00", "#2F8FC8", "#00805C", "#9A8C00", "#0072B2", "#C04F00", "#B25A8C")

# dash patterns (in pen widths) for the 2nd, 3rd ... of a group of equal series
DASHES: tuple[list[float] | None, ...] = (None, [6, 4], [1.5, 3], [8, 3, 1.5, 3], [3, 3])


@dataclass(frozen=True)
class Theme:
    name: str
    background: str
    foreground: str
    muted: str           # secondary text, grid, baselines
    hover_fill: tuple    # RGBA of the hover readout box
    hover_text: str
    series: tuple        # palette of per-target / per-CPU / per-kind series
    verdicts: dict = field(default_factory=dict)
    marker: dict = field(default_factory=dict)   # timeline marker kind -> colour
    heatmap: str | tuple = "viridis"            # a pyqtgraph colormap name, or colours from 0 up
    region: tuple = (86, 180, 233, 40)           # A-B range shading, RGBA

    def color(self, i: int) -> str:
        return self.series[i % len(self.series)]


def _verdicts(p: tuple, total: str) -> dict:
    # ABORTED and DROP far apart (purple vs vermillion), PASS green, TX sky blue, REDIRECT orange
    return {"ABORTED": p[6], "DROP": p[5], "PASS": p[2], "TX": p[1], "REDIRECT": p[0], "total": total}


def _markers(p: tuple, fg: str) -> dict:
    return {"attach": p[2], "switch": p[1], "detach": fg, "inject": p[4] if p is OKABE_ITO_LIGHT else p[1],
            "record": p[5], "error": p[5], "note": fg}


DARK = Theme("dark", "#1e1f22", "#c8c8c8", "#6a6d73", (20, 20, 22, 225), "#ffffff", OKABE_ITO,
             _verdicts(OKABE_ITO, "#e8e8e8"), _markers(OKABE_ITO, "#b0b0b0"))
LIGHT = Theme("light", "#ffffff", "#202020", "#9a9a9a", (255, 255, 255, 235), "#111111", OKABE_ITO_LIGHT,
              _verdicts(OKABE_ITO_LIGHT, "#222222"), _markers(OKABE_ITO_LIGHT, "#555555"),
              heatmap=("#ffffff", "#9ecae1", "#3182bd", "#08306b"),  # empty is white paper, many is dark blue
              region=(0, 114, 178, 35))


def dash_style(rank: int) -> dict:
    """Keyword arguments for pg.mkPen: solid for rank 0, then distinct dash patterns."""
    pattern = DASHES[rank % len(DASHES)]
    if pattern is None:
        return {}
    return {"style": Qt.PenStyle.CustomDashLine, "dash": pattern}


def dash_glyph(rank: int) -> str:
    """How a legend draws the line style of rank: ━━ solid, ╍╍ dashed, ┈┈ dotted ..."""
    return ("━━", "╍╍", "┈┈", "━┈", "┅┅")[rank % len(DASHES)]
