"""Totals of a trace (or of a time window of it): the numbers `xdpscope summary` and reports print.

Totals are sums of the integer deltas stored in the samples, never sums of rates.
"""
from __future__ import annotations

import math
import operator
import os
from typing import Any, Iterable

import numpy as np

from backend.data import driver as _driver
from backend.data import verdicts as _verdicts
from backend.data import schema
from backend.data.block import INT64_MAX, INT64_MIN, Block, Key, nest
from backend.errors import XdpscopeError
from backend.data.sample import VERDICTS
from backend.data.trace import TraceReader


def _add(acc: Any, delta: Any) -> Any:
    """Merge counter deltas into acc in place: ints add, lists add element-wise, dicts per key."""
    if isinstance(delta, dict):
        acc = acc if isinstance(acc, dict) else {}
        for k, v in delta.items():
            acc[k] = _add(acc.get(k), v) if isinstance(v, (dict, list)) else acc.get(k, 0) + v
        return acc
    if isinstance(delta, list):
        acc = acc if isinstance(acc, list) else []
        acc += [0] * (len(delta) - len(acc))
        if delta and not isinstance(delta[0], (dict, list)):  # flat histogram: the hot path, add in C
            acc[:len(delta)] = map(operator.add, acc, delta)
        else:
            for i, v in enumerate(delta):
                acc[i] = _add(acc[i], v)
        return acc
    return (acc or 0) + delta


def _bins(hist: list[int]) -> dict[str, int]:
    """Histogram list -> {"size": count} with only the nonzero bins."""
    return {str(i): n for i, n in enumerate(hist) if n}


def _sorted(x: Any) -> Any:
    """Stable output: dict keys sorted, numeric keys ("2" before "10") numerically."""
    if isinstance(x, dict):
        key = lambda k: (0, int(k), "") if str(k).isdigit() else (1, 0, str(k))  # noqa: E731
        return {k: _sorted(x[k]) for k in sorted(x, key=key)}
    if isinstance(x, list):
        return [_sorted(v) for v in x]
    return x


def _median(hist: list[int]) -> float | None:
    """Median of the values a histogram counts (bin i = how many times value i occurred): the middle
    value, or the mean of the two middle values when the count is even; None for an empty histogram."""
    n = sum(hist)
    if not n:
        return None

    def nth(k: int) -> int:  # k-th smallest value, 0-based
        seen = 0
        for value, count in enumerate(hist):
            seen += count
            if seen > k:
                return value
        raise AssertionError("unreachable")
    return float(nth(n // 2)) if n % 2 else (nth(n // 2 - 1) + nth(n // 2)) / 2


def summarize(path: str | os.PathLike, t_from: float | None = None, t_to: float | None = None) -> dict:
    """Totals and rates over the samples with t_from <= t <= t_to (the whole trace by default)."""
    with TraceReader(path) as reader:
        return summarize_blocks(reader.blocks(t_from, t_to), reader.meta, t_from, t_to, where=str(path))


def summarize_blocks(blocks: Iterable[Block], meta: dict, t_from: float | None = None,
                     t_to: float | None = None, where: str = "samples") -> dict:
    """summarize() of any Blocks (a trace's window, a live session's history) with their meta."""
    path = where
    count, dts = 0, []
    totals: dict[Key, int] = {}  # leaf key -> sum over the window (keys any sample had)
    peak = dict.fromkeys(VERDICTS, 0.0)
    span: list[float] | None = None
    for b in blocks:  # columns, a chunk at a time: no per-sample Python
        if not len(b):
            continue
        count += len(b)
        dts.append(b.dt)
        span = [float(b.t[0] - b.dt[0]) if span is None else span[0], float(b.t[-1])]
        for k, v in b.totals().items():
            totals[k] = totals.get(k, 0) + v
        rate = b.dt > 0
        if rate.any():
            for verdict, cols in _verdict_columns(b.keys).items():  # no copy of the whole block
                per_sample = b.values[:, cols].sum(axis=1, dtype=np.float64)[rate] / b.dt[rate]
                a = VERDICTS[verdict]
                peak[a] = max(peak[a], float(per_sample.max()))
    _check_int64(path, totals)
    sums = nest(totals.items())  # the whole window as one sample's fields
    per_cpu: list[list[int]] = sums.get(schema.VERDICTS_F.key[0], [])

    duration = math.fsum(np.concatenate(dts)) if dts else 0.0  # 0.1 s added 864,000 times drifts with a plain sum
    per_cpu = [cpu + [0] * (len(VERDICTS) - len(cpu)) for cpu in per_cpu]
    verdicts = {a: sum(cpu[i] for cpu in per_cpu) for i, a in enumerate(VERDICTS)}
    targets = {name: sum(v) for name, v in sums.get("targets", {}).items()}
    for name in meta.get("targets") or []:  # a configured target that got nothing still shows, as 0
        targets.setdefault(name, 0)
    flush_by_target = {name: _bins(h) for name, h in sums.get("flush", {}).items()}
    flush_all: list[int] = []  # all targets together
    for h in sums.get("flush", {}).values():
        flush_all = _add(flush_all, h)
    flushes = sum(flush_all)
    frames = sum(i * n for i, n in enumerate(flush_all))
    redirected = sum(targets.values())
    by_errno: dict[str, int] = {}
    for errs in sums.get("redirect_errors", {}).values():
        by_errno = _add(by_errno, errs)
    run = {"cnt": 0, "ns": 0, **sums.get("run", {})}
    run["ns_per_run"] = run["ns"] / run["cnt"] if run["cnt"] else None
    drv, counters = meta.get("driver") or "", sums.get("driver", {})
    derived = _driver.verdicts(drv, counters)
    if derived is not None and not any(_driver._matches(counters, p) for pats in
                                       _driver.VERDICT_COUNTERS[drv].values() for p in pats):
        derived = None  # counters, but none the verdicts come from (e.g. only tx_queue_N_xdp_xmit)
    driver_verdicts = dict(zip(VERDICTS, derived)) if derived is not None else None
    out = {
        "format_version": meta.get("format_version"),
        "iface": meta.get("iface"),
        "program": meta.get("program"),
        "mode": meta.get("mode"),
        "driver": meta.get("driver"),
        "hz": meta.get("hz"),
        "window": [t_from, t_to],
        "duration_s": duration,
        "samples": count,
        "actions": verdicts,   # the verdicts, under the name summaries have always given them
        # how the verdicts were counted (backend/data/verdicts.py), and the frames the program ran on:
        # its verdicts, or the kernel's run count where the method cannot tell the verdicts
        "verdict_method": _verdicts.legacy(meta),
        "verdict_total": _verdicts.total(_verdicts.legacy(meta), verdicts, run["cnt"]),
        "per_cpu_actions": [dict(zip(VERDICTS, cpu)) for cpu in per_cpu],
        "redirect_targets": targets,
        "redirect_errors": sums.get("redirect_errors", {}),
        "devmap": sums.get("devmap", {}),
        "flush_batches": _bins(flush_all),
        "flush_batches_by_target": flush_by_target,
        "flush_mean": frames / flushes if flushes else None,
        # added for reports (existing keys above keep their meaning)
        "flush_count": flushes,
        "flush_frames": frames,
        "flush_median": _median(flush_all),
        "flush_mean_by_target": {name: (sum(i * n for i, n in enumerate(h)) / sum(h) if sum(h) else None)
                                 for name, h in sums.get("flush", {}).items()},
        "redirect_shares": {name: (100.0 * n / redirected if redirected else None) for name, n in targets.items()},
        "redirect_errors_by_errno": by_errno,
        "span": span,
        "meta": {k: v for k, v in meta.items()},
        "exceptions": sums.get("exceptions", {}),
        "cpumap": {k: _bins(v) if isinstance(v, list) else v for k, v in sums.get("cpumap", {}).items()},
        "napi": sums.get("napi", {}),
        "driver_counters": sums.get("driver", {}),
        "user_maps": sums.get("user_maps", {}),   # a user program's own maps: map -> key -> total
        # verdicts as the driver's counters tell them (backend.data.driver.verdicts; None when the driver or
        # its counters are unknown), and driver minus program (BPF) count per verdict
        "driver_verdicts": driver_verdicts,
        "driver_difference": ({a: n - verdicts[a] for a, n in driver_verdicts.items()}
                              if driver_verdicts is not None else None),
        "run": run,
        # every family's totals by trace key (backend/data/schema.py): a family added to the schema
        # is summed here with no code
        "counters": {f: sums[f] for f in schema.FIELDS if f in sums},
        "rates": {"peak_pps": peak,
                  "mean_pps": {a: n / duration if duration > 0 else 0.0 for a, n in verdicts.items()}},
    }
    _check_int64(path, {k: v for k, v in out.items() if k != "meta"})  # sums of totals too (all CPUs ...)
    return _sorted(out)


def _verdict_columns(keys: list[Key]) -> dict[int, list[int]]:
    """Block columns of each verdict (any CPU) of the schema's verdict family."""
    out: dict[int, list[int]] = {}
    for j, k in enumerate(keys):
        got = schema.match(k)
        if got is not None and got[0] is schema.VERDICTS_F:
            out.setdefault(got[1][1], []).append(j)
    return out


def _check_int64(path: str | os.PathLike, x: Any, where: str = "") -> None:
    """Every count is an int64, as the trace stores it: a total beyond that is an error, not a wrap."""
    if isinstance(x, dict):
        for k, v in x.items():
            _check_int64(path, v, f"{where}{list(k) if isinstance(k, tuple) else [k]}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            _check_int64(path, v, f"{where}[{i}]")
    elif isinstance(x, int) and not INT64_MIN <= x <= INT64_MAX:
        raise XdpscopeError(f"{path}: the total {where} is {x}, beyond int64: not a trace of real counters")


def format_text(s: dict) -> str:
    """A short human-readable form of summarize()'s result."""
    lines = [f"{s['iface']}  {s['program']}  {s.get('mode', '')}  {s['duration_s']:.1f} s, {s['samples']} samples"]
    lines.append("verdicts: " + ", ".join(f"{k} {v}" for k, v in s["actions"].items()))
    lines.append(f"verdict method: {s['verdict_method']} ({s['verdict_total']} frames)")
    for name, keys in s.get("user_maps", {}).items():
        lines.append(f"map {name}: " + ", ".join(f"[{k}] {v}" for k, v in keys.items()))
    if s["redirect_targets"]:
        lines.append("redirects: " + ", ".join(f"{k} {v}" for k, v in s["redirect_targets"].items()))
    if s["flush_batches"]:
        lines.append("flushes (size: count): " + ", ".join(f"{k}: {v}" for k, v in s["flush_batches"].items()))
    for target, errs in s["redirect_errors"].items():
        lines.append(f"redirect errors to {target}: " + ", ".join(f"{k} {v}" for k, v in errs.items()))
    if s["exceptions"]:
        lines.append("exceptions: " + ", ".join(f"{k} {v}" for k, v in s["exceptions"].items()))
    return "\n".join(lines)
