"""Trace rows decoded by hand, by the documented layout (docs/trace-format.md), with sqlite3 and plain
Python alone: an oracle for xdpscope's own reader."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np


def varint(data: bytes, at: int) -> tuple[int, int]:
    """One zigzag varint at `at`: (value, the offset after it)."""
    value = shift = 0
    while True:
        b = data[at]
        value |= (b & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if b < 0x80:
            return (value >> 1) ^ -(value & 1), at


def row_values(data: bytes, ncols: int) -> tuple[list[int], int]:
    """A version 3 row's values, one per column of its colset (zeros included), and the bytes read:
    a two-level bitmap (a byte of bits per 8 bitmap bytes, then the bitmap bytes that have bits) of
    the nonzero values, then their varints in column order."""
    nbytes = (ncols + 7) // 8
    level, at = data[:(nbytes + 7) // 8], (nbytes + 7) // 8
    bitmap = []
    for i in range(nbytes):
        if level[i // 8] >> (i % 8) & 1:
            bitmap.append(data[at])
            at += 1
        else:
            bitmap.append(0)
    values = []
    for i in range(ncols):
        if bitmap[i // 8] >> (i % 8) & 1:
            v, at = varint(data, at)
            values.append(v)
        else:
            values.append(0)
    return values, at


def totals(path: Path) -> tuple[int, dict[tuple, int]]:
    """(samples, {leaf key: total}) of a version 3 trace; a trace left with its -wal file is read with it."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        keys = {i: tuple(json.loads(k)) for i, k in db.execute("SELECT id, key FROM columns")}
        colsets = {i: np.frombuffer(c, "<u4").tolist() for i, c in db.execute("SELECT id, cols FROM colsets")}
        out: dict[tuple, int] = {}
        n = 0
        for colset, data in db.execute("SELECT colset, data FROM samples"):
            n += 1
            cols = colsets[colset]
            values, at = row_values(data, len(cols))
            assert at == len(data), "a row longer than its values"
            for c, v in zip(cols, values):
                out[keys[c]] = out.get(keys[c], 0) + v
    finally:
        db.close()
    return n, out
