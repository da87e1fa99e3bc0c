"""XDP attach modes, spelled one way: native | generic (| offload). Older spellings (iproute2's
`xdp`/`xdpgeneric`, traces and requests written before) are read as these."""
from __future__ import annotations

from typing import Any

ALIASES = {"xdp": "native", "xdpdrv": "native", "drv": "native",
           "xdpgeneric": "generic", "xdpskb": "generic", "skb": "generic",
           "xdpoffload": "offload", "hw": "offload"}
META_KEYS = ("mode", "requested_mode")   # trace meta keys that hold a mode


def mode_name(mode: Any) -> Any:
    """native | generic | offload (| auto) for any spelling of an XDP mode; anything else as it is."""
    return ALIASES.get(mode, mode) if isinstance(mode, str) else mode


def normalize_meta(meta: dict) -> dict:
    """A trace's meta with its modes in today's spelling (a reader's view; the file is not changed)."""
    return {**meta, **{k: mode_name(meta[k]) for k in META_KEYS if k in meta}}
