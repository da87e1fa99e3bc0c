"""History of samples in preallocated numpy columns, plus the view state the plots read.

Plots never receive samples: they read contiguous slices of these columns on the UI timer.
Storage is a "linear ring": arrays of 2 x capacity rows that are appended to in place; when the
end is reached the newest `capacity` rows are copied to the front (once per `capacity` appends),
so the live part is always one contiguous slice and no per-frame wrap-around copy is needed.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
from PySide6.QtCore import QObject, Signal

from backend.data.block import Block
from backend.data.sample import ACTIONS, CPUMAP_BINS, FLUSH_BINS, NAPI_BINS, Sample

DEFAULT_CAPACITY = 72_000  # 1 h at 20 Hz
NAPI_FIELDS = ("polls", "work", "budget", "full")
_serials = itertools.count(1)
MAX_BIN_CACHES = 48  # Bins kept per history (series x bin width); each holds <= capacity / k bins
RowFn = Callable[["History", slice], np.ndarray]  # storage rows -> (rows, columns) of per-row values


class Keyed:
    """A group of columns named by keys that appear at run time (targets, errno names...)."""

    def __init__(self, rows: int, names: Iterable[str] = (), width: int = 8) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.data = np.zeros((rows, max(width, 1)), dtype=np.float64)
        self.seen: list[bool] = []  # column ever non-zero: lets plots skip all-zero series cheaply
        for n in names:
            self.col(n)

    def col(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            i = len(self.names)
            if i == self.data.shape[1]:  # rare: double the columns
                self.data = np.concatenate([self.data, np.zeros_like(self.data)], axis=1)
            self.names.append(name)
            self.index[name] = i
            self.seen.append(False)
        return i

    def clear(self) -> None:
        """Forget the names (the rows are zeroed by History), keeping the memory (see History.clear)."""
        self.names, self.index, self.seen = [], {}, []

    def put(self, row: int, name: str, value: float) -> None:
        i = self.col(name)
        self.data[row, i] = value
        if value:
            self.seen[i] = True


class Sparse:
    """Nonzero cells of a rows x (name, bin) table, kept as entries sorted by absolute row: per
    target flush histograms (17 bins a target) would take 17 dense columns per target for every
    row held; a sample has a few nonzero bins per target."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.row = np.zeros(0, np.int64)     # absolute row number, ascending
        self.cell = np.zeros(0, np.int32)    # name index * bins + bin
        self.value = np.zeros(0, np.float64)
        self.n = 0

    def col(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            i = self.index[name] = len(self.names)
            self.names.append(name)
        return i

    def add(self, rows: np.ndarray, cells: np.ndarray, values: np.ndarray) -> None:
        """Append entries (rows ascending, after every row held)."""
        end = self.n + len(rows)
        if end > len(self.row):
            size = max(2 * len(self.row), end, 1024)
            for name in ("row", "cell", "value"):
                old = getattr(self, name)
                new = np.zeros(size, old.dtype)
                new[:self.n] = old[:self.n]
                setattr(self, name, new)
        self.row[self.n:end], self.cell[self.n:end], self.value[self.n:end] = rows, cells, values
        self.n = end

    def drop_before(self, row: int) -> None:
        """Forget entries of rows < row, once they are half of what is held (amortised)."""
        k = int(np.searchsorted(self.row[:self.n], row))
        if k and 2 * k >= self.n:
            for a in (self.row, self.cell, self.value):
                a[:self.n - k] = a[k:self.n]
            self.n -= k

    def clear(self) -> None:
        self.names, self.index, self.n = [], {}, 0

    def table(self, a: int, e: int, name: str) -> np.ndarray:
        """Rows [a, e) (absolute) x bins of one name: dense, zeros where nothing was stored."""
        out = np.zeros((max(e - a, 0), self.bins))
        i = self.index.get(name)
        if i is None or e <= a:
            return out
        lo, hi = np.searchsorted(self.row[:self.n], [a, e])
        cell = self.cell[lo:hi]
        mine = (cell // self.bins) == i
        np.add.at(out, (self.row[lo:hi][mine] - a, cell[mine] % self.bins), self.value[lo:hi][mine])
        return out


class History:
    """Columns of per-sample values (counts, not rates) for up to `capacity` samples."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = max(int(capacity), 2)
        rows = 2 * self.capacity
        self.start = 0  # first live row
        self.end = 0    # one past the last live row
        self.base = 0   # absolute row number (0 = first sample ever appended) of storage row 0
        self.serial = next(_serials)  # unique per History, unlike id(): views key on it
        self.bins: dict = {}  # (name, k, how, ...) -> Bins: reductions cached per bin of rows
        self._plans: dict = {}  # leaf keys -> how a block with them lands (see _plan)
        z = lambda *shape: np.zeros((rows, *shape), dtype=np.float64)  # noqa: E731
        self.t = z()
        self.dt = z()
        self.actions = z(len(ACTIONS))
        self.cpu_actions = z(1, len(ACTIONS))  # grows with the CPU count
        self.flush = z(FLUSH_BINS)
        self.cpumap = z(CPUMAP_BINS)
        self.cpumap_drops = z()
        self.napi = z(len(NAPI_FIELDS))
        self.run = z(2)  # cnt, ns
        self.targets = Keyed(rows)
        self.devmap_sent = Keyed(rows)
        self.devmap_drops = Keyed(rows)
        self.redirect_errors = Keyed(rows)  # key "target errno"
        self.exceptions = Keyed(rows, ACTIONS)
        self.driver = Keyed(rows, width=16)
        self.napi_dev = {f: Keyed(rows, width=4) for f in NAPI_FIELDS}  # per device: field -> device columns
        self.napi_hist = Keyed(rows, width=16)  # per device work-per-poll bins, "device bin" (the path view's polls with frames)
        self.flush_by_target = Sparse(FLUSH_BINS)  # per target flush histograms (flush: all targets)
        self.has_napi = False
        self.has_run = False
        self.has_cpumap = False
        self.has_cpumap_drops = False

    def __len__(self) -> int:
        return self.end - self.start

    def clear(self) -> None:
        """Empty, as if new, but in the same arrays: a replay seek refills the history, and memory
        the process touched before costs nothing, while fresh pages cost a fault each (measured:
        ~80 ms of page faults for a 300-sample window on this VM)."""
        self._drop_all(0)
        for k in self._keyed():
            k.clear()
        for name in ACTIONS:  # as __init__ names them
            self.exceptions.col(name)
        self.flush_by_target.clear()
        self.base = 0
        self.serial = next(_serials)
        self.bins = {}
        self._plans = {}  # their Keyed columns are gone
        self.has_napi = self.has_run = self.has_cpumap = self.has_cpumap_drops = False

    def _arrays(self) -> list[np.ndarray]:
        return [self.t, self.dt, self.actions, self.cpu_actions, self.flush, self.cpumap,
                self.cpumap_drops, self.napi, self.run]

    def _keyed(self) -> list[Keyed]:
        return [self.targets, self.devmap_sent, self.devmap_drops, self.redirect_errors,
                self.exceptions, self.driver, *self.napi_dev.values(), self.napi_hist]

    def _make_room(self, m: int) -> None:
        """Room for m more rows (m <= capacity): when the storage is full, move the newest rows that
        stay live to the front and zero the rest (once per ~capacity appended rows)."""
        if self.end + m <= self.t.shape[0]:
            return
        keep = min(len(self), self.capacity - m)
        lo = self.end - keep
        arrays = self._arrays() + [k.data for k in self._keyed()]
        for a in arrays:
            a[:keep] = a[lo:self.end]
            a[keep:] = 0
        self.start, self.end = 0, keep
        self.base += lo

    def _drop_all(self, skip: int) -> None:
        """Drop every row held, and count `skip` more rows as appended and dropped: absolute row
        numbers (which bins are anchored to) go on counting every sample."""
        for a in self._arrays() + [k.data for k in self._keyed()]:
            a[:self.end] = 0
        self.base += self.end + skip
        self.start = self.end = 0

    def _grow_cpus(self, ncpu: int) -> None:
        old = self.cpu_actions
        new = np.zeros((old.shape[0], ncpu, len(ACTIONS)))
        new[:, :old.shape[1]] = old
        self.cpu_actions = new

    def append(self, s: Sample) -> None:
        self.extend(Block.from_samples([s]))

    def extend(self, b: Block) -> None:
        """Append the block's samples: per history column group, one matrix product adds up the
        leaf columns that feed it (per-CPU counts into totals, all targets into one histogram...)."""
        if not len(b):
            return
        # what the session has seen counts every sample, also those that do not fit
        nonzero = b.values.any(axis=0).astype(np.float64)
        fields = {k[0] for k, p in zip(b.keys, b.present.any(axis=0).tolist()) if p}
        if len(b) > self.capacity:  # only the newest capacity samples stay: the rest scroll out unseen
            skip = len(b) - self.capacity
            self._drop_all(skip)
            b = b.rows(slice(skip, None))
        m = len(b)
        self._make_room(m)
        rows = slice(self.end, self.end + m)
        self.t[rows] = b.t
        self.dt[rows] = b.dt
        values = b.values.astype(np.float64)
        for dest, src, cols, matrix in self._plan(tuple(b.keys)):
            target = dest.data if isinstance(dest, Keyed) else self._flat(dest)
            target[rows, cols] += values[:, src] @ matrix
            if isinstance(dest, Keyed):
                for c, hit in zip(cols.tolist(), (nonzero[src] @ matrix).tolist()):
                    dest.seen[c] = dest.seen[c] or hit > 0
            elif dest == "cpumap_drops":
                self.has_cpumap_drops |= bool(nonzero[src].any())
        self._add_flush_by_target(b, self.base + rows.start)
        self.has_napi |= "napi" in fields
        self.has_run |= "run" in fields
        self.has_cpumap |= "cpumap" in fields
        self.end += m
        if self.end - self.start > self.capacity:
            self.start = self.end - self.capacity
        self.flush_by_target.drop_before(self.base + self.start)

    def _add_flush_by_target(self, b: Block, row0: int) -> None:
        """The block's nonzero per-target flush bins, into the sparse store."""
        src, cells = self._flush_cells(tuple(b.keys))
        if len(src):
            r, c = np.nonzero(b.values[:, src])
            self.flush_by_target.add(row0 + r, cells[c], b.values[r, src[c]])

    def _flush_cells(self, keys: tuple) -> tuple[np.ndarray, np.ndarray]:
        """Block columns of per-target flush bins and their Sparse cells (cached like _plan)."""
        got = self._plans.get(("flush cells", keys))
        if got is None:
            sp = self.flush_by_target
            pairs = [(j, sp.col(k[1]) * FLUSH_BINS + k[2]) for j, k in enumerate(keys)
                     if k[0] == "flush" and len(k) == 3 and isinstance(k[1], str) and _index(k[2], FLUSH_BINS)]
            got = (np.array([j for j, _ in pairs], np.intp), np.array([c for _, c in pairs], np.int32))
            self._plans[("flush cells", keys)] = got
        return got

    def _flat(self, name: str) -> np.ndarray:
        """A history array as rows x columns (a view): cpu_actions column = cpu * 5 + verdict."""
        a = getattr(self, name)
        return a.reshape(a.shape[0], -1)

    def _plan(self, keys: tuple) -> list[tuple[Keyed | str, np.ndarray, np.ndarray, np.ndarray]]:
        """How a block with these leaf keys lands: per destination (a Keyed, or a history array by
        name), the block columns that feed it, the destination columns, and the 0/1 matrix from
        one to the other. Cached: live samples and a trace's windows mostly share their keys."""
        plan = self._plans.get(keys)
        if plan is not None:
            return plan
        routes: dict[int, tuple[Keyed | str, list[tuple[int, int]]]] = {}
        for j, key in enumerate(keys):
            for dest, col in self._routes(key):
                routes.setdefault(id(dest), (dest, []))[1].append((j, col))
        plan = []
        for dest, pairs in routes.values():
            src = sorted({j for j, _ in pairs})
            cols = sorted({c for _, c in pairs})
            matrix = np.zeros((len(src), len(cols)))
            for j, c in pairs:
                matrix[src.index(j), cols.index(c)] = 1.0
            plan.append((dest, np.array(src), np.array(cols), matrix))
        if len(self._plans) >= 64:
            self._plans.clear()
        self._plans[keys] = plan
        return plan

    def _routes(self, key: tuple) -> list[tuple[Keyed | str, int]]:
        """Where one leaf (key as in backend/data/block.py) goes: (destination, column) pairs."""
        field, rest = key[0], key[1:]
        if field == "actions" and len(rest) == 2 and _index(rest[0], 4096) and _index(rest[1], len(ACTIONS)):
            cpu, verdict = rest
            if cpu >= self.cpu_actions.shape[1]:
                self._grow_cpus(cpu + 1)
            return [("cpu_actions", cpu * len(ACTIONS) + verdict), ("actions", verdict)]
        if field == "targets" and len(rest) == 2:  # per CPU: summed
            return [(self.targets, self.targets.col(rest[0]))]
        if field == "flush" and len(rest) == 2 and _index(rest[1], FLUSH_BINS):  # all targets together
            return [("flush", rest[1])]
        if field == "devmap" and len(rest) == 2 and rest[1] in ("sent", "drops"):
            k = self.devmap_sent if rest[1] == "sent" else self.devmap_drops
            return [(k, k.col(rest[0]))]
        if field == "redirect_errors" and len(rest) == 2:
            return [(self.redirect_errors, self.redirect_errors.col(f"{rest[0]} {rest[1]}"))]
        if field == "exceptions" and len(rest) == 1:
            return [(self.exceptions, self.exceptions.col(rest[0]))]
        if field == "cpumap" and len(rest) == 2 and _index(rest[1], CPUMAP_BINS):  # bulk size histogram
            return [("cpumap", rest[1])]
        if field == "cpumap" and len(rest) == 1:  # dropped frames
            return [("cpumap_drops", 0)]
        if field == "napi" and len(rest) == 2 and rest[1] in NAPI_FIELDS:  # all devices, and per device
            k = self.napi_dev[rest[1]]
            return [("napi", NAPI_FIELDS.index(rest[1])), (k, k.col(rest[0]))]
        if field == "napi" and len(rest) == 3 and rest[1] == "hist" and _index(rest[2], NAPI_BINS):
            return [(self.napi_hist, self.napi_hist.col(f"{rest[0]} {rest[2]}"))]
        if field == "run" and len(rest) == 1 and rest[0] in ("cnt", "ns"):
            return [("run", 0 if rest[0] == "cnt" else 1)]
        if field == "driver" and len(rest) == 1:
            return [(self.driver, self.driver.col(rest[0]))]
        return []

    def rows(self, a: int, e: int) -> slice:
        """Storage slice of the absolute rows [a, e) (clipped to the rows held)."""
        lo, hi = self.base + self.start, self.base + self.end
        a, e = min(max(a, lo), hi), min(max(e, lo), hi)
        return slice(a - self.base, max(a, e) - self.base)

    def reduce(self, name: tuple, fn: RowFn, how: str, k: int, b_lo: int, b_hi: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """Per-bin reductions of fn over the bins [b_lo, b_hi) of k absolute rows (bin b = rows
        b*k .. b*k+k-1). Complete bins are computed once and cached; see Bins.get."""
        key = (name, k, how)
        b = self.bins.pop(key, None)
        if b is None:
            b = Bins(fn, k, how)
            while len(self.bins) >= MAX_BIN_CACHES:  # least recently used first: a dict keeps order
                self.bins.pop(next(iter(self.bins)))
        self.bins[key] = b  # (re)inserted last: most recently used
        return b.get(self, b_lo, b_hi)

    def window(self, t_end: float, length: float) -> slice:
        """Rows with t_end - length < t <= t_end (absolute row indices)."""
        t = self.t[self.start:self.end]
        i0 = int(np.searchsorted(t, t_end - length, side="right"))
        i1 = int(np.searchsorted(t, t_end, side="right"))
        return slice(self.start + i0, self.start + i1)


def _index(x: object, n: int) -> bool:
    """x is a list index below n (keys of a trace written by another version may hold anything)."""
    return isinstance(x, int) and 0 <= x < n


def _2d(y: np.ndarray) -> np.ndarray:
    return y.reshape(y.shape[0], int(np.prod(y.shape[1:], dtype=int)))


class Bins:
    """Reductions of fn(history rows) over fixed bins of k consecutive rows, anchored to absolute
    row numbers so they do not shift as the window scrolls. A bin is computed once, the first time
    it is asked for after it is complete; a live frame then costs one new bin now and then instead
    of a pass over the whole window. Bins that are not complete (the newest, still filling, or one
    reaching before the oldest row held) are computed from the rows there are, and not cached.

    how = "minmax": values (bins, 2, cols) = fmin, fmax per bin (NaN rows are skipped), x (bins, 2)
                    = t of the bin's first and last row (peak decimation of a curve);
    how = "sum":    values (bins, cols) = sums per bin, x (bins, 2) = start of the first row's
                    interval (t - dt) and t of the last row (NaN for a bin without rows)."""

    def __init__(self, fn: RowFn, k: int, how: str) -> None:
        self.fn, self.k, self.how = fn, int(k), how
        self.b0 = self.b1 = 0          # cached bins [b0, b1)
        self.x: np.ndarray | None = None
        self.v: np.ndarray | None = None

    def _reduce(self, t: np.ndarray, dt0: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """t (bins, k), dt0 (bins,) = dt of each bin's first row, y (bins, k, cols)."""
        if self.how == "sum":
            return np.stack([t[:, 0] - dt0, t[:, -1]], axis=1), y.sum(axis=1)
        return (np.stack([t[:, 0], t[:, -1]], axis=1),
                np.stack([np.fmin.reduce(y, axis=1), np.fmax.reduce(y, axis=1)], axis=1))

    def _compute(self, h: History, b_lo: int, b_hi: int) -> tuple[np.ndarray, np.ndarray]:
        k, nb = self.k, b_hi - b_lo
        sl = h.rows(b_lo * k, b_hi * k)
        if sl.stop - sl.start == nb * k:  # every row held: one vectorised pass
            y = _2d(self.fn(h, sl)).reshape(nb, k, -1)
            return self._reduce(h.t[sl].reshape(nb, k), h.dt[sl][::k], y)
        xs, vs = [], []
        for b in range(b_lo, b_hi):   # bins reaching outside the rows held: from what there is
            sl = h.rows(b * k, (b + 1) * k)
            y = _2d(self.fn(h, sl))
            if len(y):
                x, v = self._reduce(h.t[sl][None, :], h.dt[sl][:1], y[None])
            else:
                x = np.full((1, 2), np.nan)
                v = np.zeros((1, y.shape[1])) if self.how == "sum" else np.full((1, 2, y.shape[1]), np.nan)
            xs.append(x)
            vs.append(v)
        return np.concatenate(xs), np.concatenate(vs)

    def get(self, h: History, b_lo: int, b_hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, values) of the bins [b_lo, b_hi)."""
        k = self.k
        b_hi = max(b_hi, b_lo)
        held_lo, held_hi = h.base + h.start, h.base + h.end
        c_lo = min(max(b_lo, -(-held_lo // k)), b_hi)   # complete bins: [c_lo, c_hi)
        c_hi = min(max(b_lo, held_hi // k, c_lo), b_hi)
        parts = []
        if b_lo < c_lo:
            parts.append(self._compute(h, b_lo, c_lo))
        if c_lo < c_hi:
            if self.v is None or c_hi < self.b0 or c_lo > self.b1:  # nothing reusable: start over
                self.x, self.v = self._compute(h, c_lo, c_hi)
                self.b0, self.b1 = c_lo, c_hi
            else:
                if c_lo < self.b0:
                    x, v = self._compute(h, c_lo, self.b0)
                    if v.shape[1:] != self.v.shape[1:]:  # columns appeared (a new target...)
                        return self._restart(h, b_lo, b_hi)
                    self.x, self.v, self.b0 = np.concatenate([x, self.x]), np.concatenate([v, self.v]), c_lo
                if c_hi > self.b1:
                    x, v = self._compute(h, self.b1, c_hi)
                    if v.shape[1:] != self.v.shape[1:]:
                        return self._restart(h, b_lo, b_hi)
                    self.x, self.v, self.b1 = np.concatenate([self.x, x]), np.concatenate([self.v, v]), c_hi
                drop = min(max(0, -(-held_lo // k) - self.b0), c_lo - self.b0)  # no window reaches these again
                if drop > 0:
                    self.x, self.v, self.b0 = self.x[drop:], self.v[drop:], self.b0 + drop
            parts.append((self.x[c_lo - self.b0:c_hi - self.b0], self.v[c_lo - self.b0:c_hi - self.b0]))
        if c_hi < b_hi:
            parts.append(self._compute(h, c_hi, b_hi))
        if not parts:
            cols = _2d(self.fn(h, slice(0, 0))).shape[1]
            return np.zeros((0, 2)), np.zeros((0, cols) if self.how == "sum" else (0, 2, cols))
        if len({v.shape[1:] for _, v in parts}) > 1:  # columns appeared (a new target...)
            return self._restart(h, b_lo, b_hi)
        return np.concatenate([x for x, _ in parts]), np.concatenate([v for _, v in parts])

    def _restart(self, h: History, b_lo: int, b_hi: int) -> tuple[np.ndarray, np.ndarray]:
        """The row function's columns changed: drop the cache and compute it again (rare)."""
        self.x, self.v, self.b0, self.b1 = None, None, 0, 0
        return self.get(h, b_lo, b_hi)


@dataclass(frozen=True)
class Marker:
    """A moment of the session on the timeline: attach, switch, detach, inject, record, error."""
    t: float    # seconds since the session start, like sample.t
    kind: str   # attach | switch | detach | inject | record | error | note
    label: str
    data: dict | None = None  # e.g. an injection's count, batch, flows (reports read the batch)

    def to_dict(self) -> dict:
        d = {"t": round(self.t, 6), "kind": self.kind, "label": self.label}
        return {**d, "data": dict(self.data)} if self.data else d

    @staticmethod
    def from_dict(d: object) -> "Marker | None":
        """A marker from a trace's meta; None for anything malformed (a trace is untrusted input)."""
        if not isinstance(d, dict):
            return None
        t, kind, label = d.get("t"), d.get("kind"), d.get("label")
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not np.isfinite(t):
            return None
        if not isinstance(kind, str) or not isinstance(label, str):
            return None
        data = d.get("data")
        data = {str(k)[:16]: v for k, v in list(data.items())[:8] if isinstance(v, int) and not isinstance(v, bool)} \
            if isinstance(data, dict) else None
        return Marker(float(t), kind[:16], label[:120], data or None)


class AppModel(QObject):
    """One source's history and view state; `version` changes whenever the data does."""

    sig_reset = Signal()          # history cleared (new session, seek)
    sig_meta = Signal(dict)       # session metadata changed
    sig_paused = Signal(bool)
    sig_marker = Signal(object)   # a Marker was added

    def __init__(self, capacity: int = DEFAULT_CAPACITY, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.capacity = capacity
        self.history = History(capacity)
        self.meta: dict = {}
        self.version = 0
        self.paused = False
        self.frozen_end: float | None = None  # view end while paused (live)
        self.cursor: float | None = None      # view end set by a replay (playhead)
        self.markers: list[Marker] = []
        self.t_offset = 0.0  # added to incoming sample times: a program switched in place continues the timeline

    def reset(self, meta: dict | None = None) -> None:
        """Empty the history. With meta: a new session (its markers and time offset go too); without
        (a replay's seek): the same session, its markers stay."""
        self.history.clear()
        if meta is not None:
            self.markers = []
            self.t_offset = 0.0
            self.meta = dict(meta)
            self.sig_meta.emit(self.meta)
        self.version += 1
        self.sig_reset.emit()

    def set_meta(self, meta: dict) -> None:
        self.meta = dict(meta)
        self.sig_meta.emit(self.meta)

    def add_marker(self, kind: str, label: str, t: float | None = None, data: dict | None = None) -> Marker:
        """A marker at t (default: the newest sample's time, where the view's live edge is)."""
        m = Marker(self.latest_t() if t is None else float(t), kind, label, data)
        self.markers.append(m)
        self.version += 1
        self.sig_marker.emit(m)
        return m

    def extend(self, samples: Block | Iterable[Sample]) -> int:
        """Append a Block (a replay window), or samples."""
        b = samples if isinstance(samples, Block) else Block.from_samples(list(samples))
        self.history.extend(b)
        if len(b):
            self.version += 1
        return len(b)

    def append(self, sample: Sample) -> None:
        self.history.append(sample)
        self.version += 1

    def latest_t(self) -> float:
        h = self.history
        return float(h.t[h.end - 1]) if len(h) else 0.0

    def view_end(self) -> float:
        """Right edge of the visible window: the playhead, the pause instant, or the newest sample."""
        if self.cursor is not None:
            return self.cursor
        if self.paused and self.frozen_end is not None:
            return self.frozen_end
        return self.latest_t()

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        self.frozen_end = self.latest_t() if paused else None
        self.version += 1
        self.sig_paused.emit(paused)
