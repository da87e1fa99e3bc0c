"""Derived series of a History window: rates, moving averages, ratios, per-verdict and per-target
counts, mean flush size, NAPI work per poll, ns per run. numpy only (no Qt, no bcc).

A row function is fn(history, storage slice) -> values with one row per sample. Rates are count
deltas over each sample's measured interval (dt), and a smoothed rate over n samples is their
frames over their seconds, never a mean of rounded rates. `history` is a
backend.data.history.History (anything with its columns: t, dt, verdicts, cpu_verdicts, flush,
flush_by_target, napi, napi_dev, run, targets, driver, start, base).
"""
from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from .sample import FLUSH_BINS

RowFn = Callable[[Any, slice], np.ndarray]
# the driver's per RX queue XDP counters (virtio_net: rx_queue_N_xdp_packets ...; ethtool -S names)
QUEUE_COUNTER = re.compile(r"rx_queue_(\d+)_xdp_(\w+)$")
QUEUE_KINDS = {"packets": "packets", "drops": "drops", "tx": "tx", "redirects": "redirects", "redirect": "redirects"}


def rate(h: Any, sl: slice, counts: np.ndarray) -> np.ndarray:
    """counts (rows of sl, any trailing shape) / dt of each row; NaN where dt is not positive."""
    dt = h.dt[sl]
    dt = np.where(dt > 0, dt, np.nan)
    return counts / (dt if counts.ndim == 1 else dt.reshape((-1,) + (1,) * (counts.ndim - 1)))


def rolling(a: np.ndarray, n: int) -> np.ndarray:
    """Sums over the trailing n rows of a (fewer at the start), along axis 0."""
    cs = np.cumsum(a, axis=0)
    if n < len(a):
        cs[n:] = cs[n:] - cs[:-n].copy()
    return cs


def ratio(num: RowFn, den: RowFn, n: int = 1) -> RowFn:
    """A row function: num(h, sl) / den(h, sl) per row, or with n > 1 the sums of both over the
    trailing n rows (a moving average that weighs each sample by its interval, so a rate over n
    samples is their frames over their seconds). Zero denominators give NaN."""
    def fn(h: Any, sl: slice) -> np.ndarray:
        if n > 1:
            lo = max(h.start, sl.start - n + 1)
            wide = slice(lo, sl.stop)
            a, b = rolling(num(h, wide), n)[sl.start - lo:], rolling(den(h, wide), n)[sl.start - lo:]
        else:
            a, b = num(h, sl), den(h, sl)
        b = np.where(b > 0, b, np.nan)
        if a.ndim > b.ndim:
            b = b.reshape(b.shape + (1,) * (a.ndim - b.ndim))
        with np.errstate(invalid="ignore", divide="ignore"):
            return a / b
    return fn


def dts(h: Any, sl: slice) -> np.ndarray:
    return h.dt[sl]


def per_second(counts: RowFn, n: int = 1) -> RowFn:
    """A row function: counts per second of each row, or over the trailing n rows."""
    return ratio(counts, dts, n)


# -- verdicts, CPUs, targets ----------------------------------------------------------------------

def verdict_counts(h: Any, sl: slice) -> np.ndarray:
    """Rows x 6: frames per verdict (sample.VERDICTS order), then their total."""
    counts = h.verdicts[sl]
    return np.concatenate([counts, counts.sum(axis=1, keepdims=True)], axis=1)


def verdict_rates(h: Any, sl: slice) -> np.ndarray:
    """Rows x 6: packets/s per verdict (sample.VERDICTS order), then their total."""
    return rate(h, sl, verdict_counts(h, sl))


def cpu_counts(h: Any, sl: slice, verdict: int) -> np.ndarray:
    """Rows x CPUs: frames of one verdict (index into VERDICTS), or of all (-1), per CPU."""
    per_cpu = h.cpu_verdicts[sl]  # rows x cpu x verdict
    return per_cpu.sum(axis=2) if verdict < 0 else per_cpu[:, :, verdict]


def cpu_rates(h: Any, sl: slice, verdict: int) -> np.ndarray:
    """Rows x CPUs: packets/s of one verdict, or of all (-1), per CPU."""
    return rate(h, sl, cpu_counts(h, sl, verdict))


def target_counts(h: Any, sl: slice) -> np.ndarray:
    """Rows x targets: frames redirected to each target (the program's per-target counters)."""
    return h.targets.data[sl, :len(h.targets.names)]


def target_rates(h: Any, sl: slice) -> np.ndarray:
    return rate(h, sl, target_counts(h, sl))


# -- devmap flushes -------------------------------------------------------------------------------

def flush_counts(h: Any, sl: slice, target: str | None = None) -> np.ndarray:
    """Rows x FLUSH_BINS: devmap flushes of each size, of all targets (None) or of one."""
    if target is None:
        return h.flush[sl]
    return h.flush_by_target.table(h.base + sl.start, h.base + sl.stop, target)


def flush_mean(h: Any, sl: slice, target: str | None = None) -> np.ndarray:
    """Mean frames per flush of each row; NaN for rows without flushes."""
    flush = flush_counts(h, sl, target)
    nflush = flush.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(nflush > 0, (flush @ np.arange(FLUSH_BINS)) / nflush, np.nan)


# -- NAPI and run time ----------------------------------------------------------------------------

def napi_counts(h: Any, sl: slice, dev: str | list[str] | None = None) -> np.ndarray:
    """Rows x NAPI fields (polls, work, budget, full): of all devices together (None), of a list
    of devices, or of one device (zeros if never seen)."""
    if dev is None:
        return h.napi[sl]
    fields = list(h.napi_dev)
    out = np.zeros((sl.stop - sl.start, len(fields)))
    for d in ([dev] if isinstance(dev, str) else dev):
        for j, f in enumerate(fields):
            k = h.napi_dev[f]
            if d in k.index:
                out[:, j] += k.data[sl, k.index[d]]
    return out


def napi_device_counts(h: Any, sl: slice, names: list[str]) -> np.ndarray:
    """Rows x 2 x devices: polls, then work, per device (in `names` order)."""
    return np.stack([napi_counts(h, sl, n)[:, :2] for n in names], axis=2)


def napi_per_poll(h: Any, sl: slice, dev: str | list[str] | None = None) -> np.ndarray:
    """Rows x 2: work per poll and budget per poll (NaN without polls), of all devices or some."""
    napi = napi_counts(h, sl, dev)
    polls = np.where(napi[:, 0] > 0, napi[:, 0], np.nan)
    return napi[:, 1:3] / polls[:, None]


def run_ns(h: Any, sl: slice) -> np.ndarray:
    """Program run time per run, ns (NaN without runs): the kernel's BPF stats."""
    run = h.run[sl]
    return run[:, 1] / np.where(run[:, 0] > 0, run[:, 0], np.nan)


# -- driver counters ------------------------------------------------------------------------------

def queue_columns(h: Any) -> dict[str, dict[int, int]]:
    """kind (packets, drops, tx, redirects) -> RX queue -> driver column index."""
    out: dict[str, dict[int, int]] = {}
    for i, name in enumerate(h.driver.names):
        m = QUEUE_COUNTER.match(name)
        if m and m.group(2) in QUEUE_KINDS:
            out.setdefault(QUEUE_KINDS[m.group(2)], {})[int(m.group(1))] = i
    return out


def session_devices(meta: dict, names: list[str]) -> list[str]:
    """The devices of the session among NAPI device names: its interface, its redirect targets and
    their veth peers (the lab names a peer <end>-p), or the list the session metadata names; a
    device in another namespace is named name@netns. napi:napi_poll traces every device of the
    machine (unless the probes filter them): other users' devices are not the session's."""
    listed = meta.get("napi_devices") or meta.get("devices")
    if isinstance(listed, list):
        mine = {str(d) for d in listed}
    else:
        ends = {str(meta.get("iface") or "")} | {str(t) for t in (meta.get("targets") or [])}
        ends.discard("")
        mine = ends | {f"{e}-p" for e in ends}
    return [n for n in names if n in mine or n.split("@")[0] in mine]
