"""Numbers as people read them: SI prefixes (651 k, 2.2 M), thousands separators, byte sizes.

One place for the formats the axes, hover readouts, summaries and reports share, so "2e+06" and
"500000" never meet on one axis again."""
from __future__ import annotations

import math

PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
SMALL = ((1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))


def _trim(text: str) -> str:
    """'1.50' -> '1.5', '2.0' -> '2' (the decimals of a tick carry nothing then)."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def si(v: float | None, unit: str = "", digits: int = 3, small: bool = False) -> str:
    """v with an SI prefix and `digits` significant digits: 651234 -> '651 k', 2.2e6 -> '2.2 M';
    with a unit: '651 kpps'. Values below 1000 stay as they are ('12.5', '0'); `small` also
    prefixes values below 1 (m, µ, n). NaN/None -> '–'."""
    if v is None or not math.isfinite(v):
        return "–"
    a = abs(v)
    edge = 1 - 0.5 * 10 ** -digits  # 999,950 reads '1 M', not '1000 k'
    for scale, p in PREFIXES:
        if a >= scale * edge:
            return f"{_sig(v / scale, digits)} {p}{unit}"
    if small and 0 < a < edge:
        for scale, p in SMALL:
            if a >= scale * edge:
                return f"{_sig(v / scale, digits)} {p}{unit}"
    return f"{_sig(v, digits)}{(' ' + unit) if unit else ''}"


def _sig(x: float, digits: int) -> str:
    """x rounded to `digits` significant digits, no exponent, no trailing zeros."""
    if x == 0:
        return "0"
    places = max(0, digits - 1 - int(math.floor(math.log10(abs(x)))))
    return _trim(f"{x:.{places}f}")


def tick(v: float, spacing: float) -> str:
    """An axis tick: SI-prefixed with as many decimals as the tick spacing needs, so neighbouring
    ticks read alike (0, 500 k, 1 M, 1.5 M) and never in scientific notation."""
    if v == 0:
        return "0"
    a = max(abs(v), abs(spacing))
    for scale, p in PREFIXES:
        if a >= scale:
            return _tick_digits(v / scale, spacing / scale) + " " + p
    return _tick_digits(v, spacing)


def _tick_digits(x: float, spacing: float) -> str:
    """x with the decimals the spacing needs (2.5 k steps: one decimal)."""
    places = 0
    while places < 6 and abs(round(spacing, places) - spacing) > 1e-9 * max(abs(spacing), 1e-12):
        places += 1
    return _trim(f"{x:.{places}f}")


def thousands(v: float | None) -> str:
    """An exact count or a rate: '651,234'; a value below 100 keeps up to 3 significant digits."""
    if v is None or not math.isfinite(v):
        return "–"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:,.3g}"


def byte_size(n: int | float) -> str:
    """Bytes in decimal units, as file managers show them: 151.2 kB, 4.2 MB (1 kB = 1000 B)."""
    if n < 1000:
        return f"{int(n)} B"
    for scale, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.1f} {p}B"
    return f"{int(n)} B"
