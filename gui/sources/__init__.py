"""Sources of samples: base (Source, Capabilities), live (an agent session's samples), replay (a
trace file). Each owns a model the plots read."""
from __future__ import annotations

from .base import Capabilities, Source

__all__ = ["Capabilities", "Source"]
