"""What the kernel must do, computed independently: the devmap bulk-queue flush rule.

bq_enqueue() flushes a target's per-CPU queue when it already holds DEV_MAP_BULK_SIZE (16)
frames before adding one; xdp_do_flush() at the end of every live-frame batch (and of every
NAPI poll) flushes whatever each queue holds. A flush of k frames is one xdp_devmap_xmit event."""
from __future__ import annotations

from collections import Counter
from typing import Hashable, Iterable

BULK = 16


def flushes(destinations: Iterable[Hashable | None], batch: int) -> dict[Hashable, Counter]:
    """Flush-size counts per destination for frames in order (None: not queued, e.g. DROP)."""
    out: dict[Hashable, Counter] = {}
    queue: dict[Hashable, int] = {}
    for i, dest in enumerate(destinations):
        if dest is not None:
            if queue.get(dest) == BULK:
                out.setdefault(dest, Counter())[BULK] += 1
                queue[dest] = 0
            queue[dest] = queue.get(dest, 0) + 1
        if (i + 1) % batch == 0:
            _flush_all(queue, out)
    _flush_all(queue, out)  # the last, partial batch
    return out


def _flush_all(queue: dict, out: dict) -> None:
    for dest, held in queue.items():
        if held:
            out.setdefault(dest, Counter())[held] += 1
    queue.clear()


def round_robin(frames: int, targets: list[str], start: int = 0) -> list[str]:
    return [targets[(start + i) % len(targets)] for i in range(frames)]


def mix_destinations(frames: int, pct: dict[str, int], ingress: str, targets: list[str]) -> list[str | None]:
    """The mix program's verdict order per 100 frames: DROP, PASS, TX, REDIRECT, ABORTED.
    TX frames in live-frame mode are redirected back to the ingress device's queue."""
    out, rr = [], 0
    for i in range(frames):
        r = i % 100
        for verdict in ("DROP", "PASS", "TX", "REDIRECT", "ABORTED"):
            if r < pct.get(verdict, 0):
                break
            r -= pct.get(verdict, 0)
        if verdict == "TX":
            out.append(ingress)
        elif verdict == "REDIRECT":
            out.append(targets[rr % len(targets)])
            rr += 1
        else:
            out.append(None)
    return out


def as_json(per_dest: dict[Hashable, Counter]) -> dict[str, dict[str, int]]:
    """In summary's form: {target: {size: count}}."""
    return {str(d): {str(k): v for k, v in sorted(c.items())} for d, c in per_dest.items()}


def total(per_dest: dict[Hashable, Counter]) -> dict[str, int]:
    """summary's flush_batches: all targets together."""
    c = Counter()
    for counts in per_dest.values():
        c.update(counts)
    return {str(k): v for k, v in sorted(c.items())}
