"""The plot panels, one per file; they read model columns on the UI timer (never per sample) and
skip the work when the visible window, the data and their options have not changed since their
last draw. view.py: the window they share; base.py: what they share; series maths:
backend/data/series.py."""
from __future__ import annotations

from .base import MIN_PLOT_PX, Panel, SeriesPlot, nice_ceiling
from .errors import ErrorsPanel
from .fanout import FanoutPanel
from .flush import FlushPanel
from .napi import NapiPanel
from .path import PathPanel
from .queues import QueuesPanel
from .user_maps import UserMapsPanel
from .verdicts import VerdictPanel
from .view import MAX_POINTS, View, make_view

PANELS = (VerdictPanel, FanoutPanel, FlushPanel, ErrorsPanel, NapiPanel, QueuesPanel, UserMapsPanel)

__all__ = ["MAX_POINTS", "MIN_PLOT_PX", "PANELS", "ErrorsPanel", "FanoutPanel", "FlushPanel", "NapiPanel", "Panel",
           "PathPanel", "QueuesPanel", "SeriesPlot", "UserMapsPanel", "VerdictPanel", "View", "make_view", "nice_ceiling"]
