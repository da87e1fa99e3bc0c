"""Guard against a reference-count bug of PySide6-Essentials 6.12.0 on CPython < 3.12.

Measured here: every call of a void QPainter method (setPen, drawPath, save, restore...) drops one
reference to None, and pyqtgraph's painting drops references to True as well. None starts with a
few thousand references, so a plot window dies within seconds ("Fatal Python error: none_dealloc").
6.11.3 does not have the bug. None, True and False are static singletons that are never freed, so
giving them a huge extra count is harmless and keeps the bogus decrefs from ever reaching zero.
(CPython >= 3.12 makes them immortal, so nothing is needed there.)
"""
from __future__ import annotations

import ctypes
import sys

import PySide6

_BAD = {"6.12.0"}
_EXTRA = 1 << 40  # ~1e12 references: centuries of frames


def install() -> bool:
    """Apply the guard when the running PySide6 has the bug; True when applied."""
    if sys.version_info >= (3, 12) or PySide6.__version__ not in _BAD or getattr(install, "done", False):
        return False
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _EXTRA  # ob_refcnt is the first field
    install.done = True  # type: ignore[attr-defined]
    return True
