"""Findings: what a summary's numbers show, in words. Each statement quotes values of the summary
(backend.data.summary.summarize), so a report's findings can be checked against `summary --json`.
Pure Python: no Qt, no bcc."""
from __future__ import annotations

import math

from backend.data import driver

HIGH_RATE_PPS = 50_000       # "high rate" for the flush-size finding: mean REDIRECT + TX pps
LOW_FLUSH_MEAN = 8.0         # "far below 16": less than half a bulk queue per flush


def rate_text(v: float | None) -> str:
    """A rate in a table: an integer above 100 (71,923), one decimal below (12.5)."""
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"


ERRNO_HINTS = {
    "ENXIO": "the target cannot take XDP frames (a veth target needs an XDP program or GRO on its peer)",
    "ENETDOWN": "the target interface is down",
    "EOPNOTSUPP": "the target's driver cannot transmit XDP frames (no ndo_xdp_xmit)",
}


def findings(s: dict) -> list[str]:
    """What the numbers show, in words; each statement quotes values of the summary `s`."""
    out: list[str] = []
    meta, verdicts = s.get("meta", {}), s["actions"]
    if s.get("mode") == "generic":
        out.append("Generic (SKB) mode is in use: the program runs after the kernel has allocated an skb, "
                   "which costs far more per packet than native mode, and redirected frames leave one skb at a "
                   "time instead of through the devmap bulk queues.")
    if meta.get("mode_note"):
        out.append(f"Attach note: {meta['mode_note']}")
    for target, errs in s["redirect_errors"].items():
        for errno, n in errs.items():
            hint = ERRNO_HINTS.get(errno)
            out.append(f"Redirect errors: {n:,} frames redirected to {target} failed with {errno}"
                       + (f" — {hint}." if hint else "."))
    for target, d in s["devmap"].items():
        drops, sent = d.get("drops", 0), d.get("sent", 0)
        if drops:
            out.append(f"Drops at a target: {target} dropped {drops:,} of the {drops + sent:,} frames flushed "
                       "to it (xdp_devmap_xmit drops: the driver did not take them).")
    high = verdicts["REDIRECT"] + verdicts["TX"]
    rate = s["rates"]["mean_pps"]["REDIRECT"] + s["rates"]["mean_pps"]["TX"]
    if s["flush_mean"] is not None and s["flush_mean"] < LOW_FLUSH_MEAN and rate >= HIGH_RATE_PPS and high:
        out.append(small_flushes(s))
    if verdicts["ABORTED"]:
        total = sum(verdicts.values())
        exc = s["exceptions"].get("ABORTED", 0)
        out.append(f"ABORTED verdicts: the program returned XDP_ABORTED for {verdicts['ABORTED']:,} of {total:,} "
                   f"frames; the kernel drops them"
                   + (f" ({exc:,} xdp_exception events recorded)." if exc else
                      " (no xdp_exception events were recorded for them)."))
    for verdict, n in s["exceptions"].items():
        if verdict != "ABORTED" and n:
            out.append(f"Exceptions: {n:,} xdp_exception events for {verdict}: the kernel could not carry out "
                       "the verdict and dropped the frames.")
    tx_failed = tx_failures(s)
    if tx_failed:
        out.append(tx_failed)
    cpumap_drops = s["cpumap"].get("drops") if isinstance(s["cpumap"].get("drops"), int) else 0
    if cpumap_drops:
        out.append(f"cpumap drops: {cpumap_drops:,} frames could not be queued to the target CPUs.")
    missing = [name for name, ok in (meta.get("probes") or {}).items() if ok is False]
    if missing:
        out.append("Not traced on this kernel (their numbers are absent, not zero): " + ", ".join(missing) + ".")
    if not out:
        out.append("No redirect errors, target drops, exceptions or ABORTED verdicts in this window.")
    return out


def tx_failures(s: dict) -> str | None:
    """XDP_TX frames the driver counted as not sent (veth: its xdp_tx_errors)."""
    roles = driver.roles(s.get("driver") or "", s.get("driver_counters") or {})
    if not roles or not roles["tx_errors"]:
        return None
    failed, total = roles["tx_errors"], roles["tx"] + roles["tx_errors"]
    iface = (s.get("meta") or {}).get("iface") or s.get("iface") or "the interface"
    text = (f"TX failures: {s['driver']} could not send {failed:,} of the {total:,} XDP_TX frames of {iface} "
            "(its xdp_tx_errors).")
    if s["driver"] == "veth":
        text += (" veth hands XDP_TX frames to its peer's receive ring (256 frames) and drops what does not fit; "
                 "it schedules the peer's NAPI after an XDP_TX only if the peer has an XDP program of its own, so "
                 "with GRO alone the ring is not emptied until something else polls the peer.")
    return text


def inject_batches(meta: dict) -> list[int]:
    """Batch sizes of the injections the GUI recorded in the trace's markers (gui/recorder.py)."""
    out = set()
    markers = meta.get("markers")
    for m in markers if isinstance(markers, list) else []:
        data = m.get("data") if isinstance(m, dict) else None
        if isinstance(data, dict) and m.get("kind") == "inject":
            b = data.get("batch")
            if isinstance(b, int) and not isinstance(b, bool) and 0 < b <= 1 << 16:
                out.add(b)
    return sorted(out)


def small_flushes(s: dict) -> str:
    """Why the devmap flushes are small, naming the cause the numbers support: the injector's
    batch (BPF_PROG_TEST_RUN flushes after every batch), or the NAPI polls of the ingress."""
    meta, verdicts = s.get("meta", {}), s["actions"]
    mean = s["flush_mean"]
    head = (f"Small flushes at a high rate: the mean devmap flush sent {mean:.2f} frames "
            f"(median {s['flush_median']:g}), far below the bulk size of 16, while REDIRECT and TX averaged "
            f"{rate_text(s['rates']['mean_pps']['REDIRECT'])} and {rate_text(s['rates']['mean_pps']['TX'])} pps.")
    frames = sum(verdicts.values())
    targets = [t for t, n in s["redirect_targets"].items() if n] or list(meta.get("targets") or [])
    n_t = max(len(targets), 1)
    share = verdicts["REDIRECT"] / frames if frames else 0.0
    iface = meta.get("iface") or s.get("iface") or "the interface"
    napi = (s.get("napi") or {}).get(iface, {})
    polled = napi.get("work", 0)
    batches = inject_batches(meta)
    if batches:
        b = batches[-1]
        return (head + f" The injector's batch explains it: BPF_PROG_TEST_RUN flushes the bulk queues after every "
                f"batch of {', '.join(map(str, batches))} frames; {share:.0%} of the frames were redirected, over "
                f"{n_t} target{'s' * (n_t > 1)}: about {b * share / n_t:.1f} frames per target per batch. A larger "
                "batch (up to 256) fills the queues; NAPI is not involved.")
    if frames and polled < frames / 2:
        return (head + f" The frames did not come through NAPI polls of {iface} ({polled:,} of {frames:,} frames "
                "were polled): they were injected (BPF_PROG_TEST_RUN live frames), which flushes the bulk queues "
                "at the end of every injector batch. The injector's batch size, spread over the "
                f"{n_t} target{'s' * (n_t > 1)} ({share:.0%} of the frames redirected), sets the flush size, not "
                "NAPI: a larger batch (up to 256) fills the queues.")
    per_poll = napi.get("work", 0) / napi["polls"] if napi.get("polls") else None
    return (head + f" Each NAPI poll of {iface}"
            + (f" handled {per_poll:.1f} packets on average and" if per_poll is not None else "")
            + " ends with a flush with few frames per target, so the per-flush cost is paid often.")
