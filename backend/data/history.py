"""History of samples in preallocated numpy columns (no Qt): what the GUI's plots read.

Plots never receive samples: they read contiguous slices of these columns on the UI timer.
Storage is a "linear ring": arrays of 2 x capacity rows that are appended to in place; when the
end is reached the newest `capacity` rows are copied to the front (once per `capacity` appends),
so the live part is always one contiguous slice and no per-frame wrap-around copy is needed.

Where a leaf lands follows from its schema family (backend/data/schema.py), for every family
alike (a family added to the schema gets its columns with no code here):
  - total(f): rows x the family's fixed positions (dense bins, members), summed over its names
    and CPUs (a family of names only, such as driver counters, has no total: names do not add);
    a family without positions is one column, rows.
  - per_cpu(f): rows x CPUs x fixed positions, for a family with a CPU position and no names
    (verdicts per CPU).
  - keyed(f[, member]): a Keyed column group per name (the name parts joined by " ", summed over
    CPUs); one group per member when the family ends in Members (devmap sent/drops per target).
    A histogram with names and more than SPARSE_MIN_BINS bins keeps its nonzero cells in a
    Sparse store instead (per-target flush sizes: 17 dense columns a target would dominate memory).
The attributes the views read (verdicts, flush, targets, devmap_sent, napi_dev...) name these groups.
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable

import numpy as np

from backend.data import schema
from backend.data.block import Block
from backend.data.sample import Sample
from backend.data.schema import HISTOGRAM, Family, Index, Members, Name

DEFAULT_CAPACITY = 72_000  # 1 h at 20 Hz
NAPI_FIELDS = schema.NAPI.positions[-1].names
SPARSE_MIN_BINS = 16   # a histogram with names and more bins than this is stored sparse
_serials = itertools.count(1)
MAX_BIN_CACHES = 48  # Bins kept per history (series x bin width); each holds <= capacity / k bins
RowFn = Callable[["History", slice], np.ndarray]  # storage rows -> (rows, columns) of per-row values
Dest = tuple  # ("total", family) | ("cpu", family) | ("keyed", family, member or None)


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


class Shape:
    """How one family's leaves land in a History (see the module's docstring)."""

    def __init__(self, fam: Family) -> None:
        ps = fam.positions
        self.fam = fam
        self.fixed = [i for i, p in enumerate(ps) if isinstance(p, Members) or isinstance(p, Index) and p.dense]
        self.cpu = [i for i, p in enumerate(ps) if isinstance(p, Index) and not p.dense]
        self.names = [i for i, p in enumerate(ps) if isinstance(p, Name)]
        self.width = 1
        for i in self.fixed:
            self.width *= _size(ps[i])
        self.has_total = bool(self.fixed) or not ps
        self.has_cpu = bool(self.cpu) and not self.names
        self.members = bool(self.names) and isinstance(ps[-1], Members)   # a Keyed per member
        self.sparse = bool(self.names) and fam.agg == HISTOGRAM and self.width > SPARSE_MIN_BINS
        # the parts that name a Keyed column: names and fixed positions, not CPUs nor the member
        self.label = [i for i in range(len(ps)) if i not in self.cpu and not (self.members and i == len(ps) - 1)]

    def fixed_col(self, parts: tuple) -> int:
        col = 0
        for i in self.fixed:
            p = self.fam.positions[i]
            col = col * _size(p) + (p.names.index(parts[i]) if isinstance(p, Members) else parts[i])
        return col

    def name_of(self, parts: tuple) -> str:
        """The Keyed column (or Sparse name) of a leaf: its name parts joined (fixed parts too,
        except for Sparse, whose bins are its cells)."""
        idx = self.names if self.sparse else self.label
        return " ".join(str(parts[i]) for i in idx)


def _size(p: Index | Members) -> int:
    return p.n if isinstance(p, Index) else len(p.names)


_SHAPES: dict[str, Shape] = {}


def shape(fam: Family) -> Shape:
    got = _SHAPES.get(fam.name)
    if got is None or got.fam is not fam:
        got = _SHAPES[fam.name] = Shape(fam)
    return got


class History:
    """Columns of per-sample values (counts, not rates) for up to `capacity` samples."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = max(int(capacity), 2)
        self._rows = 2 * self.capacity
        self.start = 0  # first live row
        self.end = 0    # one past the last live row
        self.base = 0   # absolute row number (0 = first sample ever appended) of storage row 0
        self.serial = next(_serials)  # unique per History, unlike id(): views key on it
        self.bins: dict = {}  # (name, k, how, ...) -> Bins: reductions cached per bin of rows
        self._plans: dict = {}  # leaf keys -> how a block with them lands (see _plan)
        self.t = np.zeros(self._rows)
        self.dt = np.zeros(self._rows)
        # the column groups, made when first written or read (see the module's docstring)
        self._total: dict[str, np.ndarray] = {}
        self._cpu: dict[str, np.ndarray] = {}
        self._kgroups: dict[tuple[str, str | None], Keyed] = {}
        self._sparse: dict[str, Sparse] = {}
        self.families: set[str] = set()   # families some sample had a leaf of
        self.nonzero: set[str] = set()    # families some sample had a nonzero leaf of

    # -- the column groups --------------------------------------------------------------------

    def total(self, family: str) -> np.ndarray:
        """rows x fixed positions (a family without positions: rows) summed over names and CPUs."""
        a = self._total.get(family)
        if a is None:
            sh = shape(schema.BY_NAME[family])
            a = self._total[family] = np.zeros((self._rows, sh.width) if sh.fam.positions else self._rows)
        return a

    def per_cpu(self, family: str) -> np.ndarray:
        """rows x CPUs x fixed positions (grows with the CPU count)."""
        a = self._cpu.get(family)
        if a is None:
            a = self._cpu[family] = np.zeros((self._rows, 1, shape(schema.BY_NAME[family]).width))
        return a

    def keyed(self, family: str, member: str | None = None) -> "Keyed":
        k = self._kgroups.get((family, member))
        if k is None:
            fam = schema.BY_NAME[family]
            known = fam.positions[0].known if fam.positions and isinstance(fam.positions[0], Name) else ()
            k = self._kgroups[(family, member)] = Keyed(self._rows, known)
        return k

    def sparse(self, family: str) -> "Sparse":
        sp = self._sparse.get(family)
        if sp is None:
            sp = self._sparse[family] = Sparse(shape(schema.BY_NAME[family]).width)
        return sp

    def has(self, *families: str) -> bool:
        return any(f in self.families for f in families)

    # the groups the views read, by their names
    verdicts = property(lambda self: self.total("verdicts"))          # rows x verdicts, all CPUs
    cpu_verdicts = property(lambda self: self.per_cpu("verdicts"))    # rows x CPUs x verdicts
    flush = property(lambda self: self.total("flush"))                # rows x sizes, all targets
    flush_by_target = property(lambda self: self.sparse("flush"))
    cpumap = property(lambda self: self.total("cpumap_bulk"))         # rows x bulk sizes
    cpumap_drops = property(lambda self: self.total("cpumap_drops"))  # rows
    napi = property(lambda self: self.total("napi"))                  # rows x NAPI_FIELDS, all devices
    napi_dev = property(lambda self: {m: self.keyed("napi", m) for m in NAPI_FIELDS})  # field -> per device
    napi_hist = property(lambda self: self.keyed("napi_hist"))        # "device bin" columns
    run = property(lambda self: self.total("run"))                    # rows x (cnt, ns)
    targets = property(lambda self: self.keyed("targets"))
    devmap_sent = property(lambda self: self.keyed("devmap", "sent"))
    devmap_drops = property(lambda self: self.keyed("devmap", "drops"))
    redirect_errors = property(lambda self: self.keyed("redirect_errors"))  # "target errno" columns
    exceptions = property(lambda self: self.keyed("exceptions"))
    driver = property(lambda self: self.keyed("driver"))
    has_napi = property(lambda self: self.has("napi", "napi_hist"))
    has_run = property(lambda self: self.has("run"))
    has_cpumap = property(lambda self: self.has("cpumap_bulk", "cpumap_drops"))
    has_cpumap_drops = property(lambda self: "cpumap_drops" in self.nonzero)

    def __len__(self) -> int:
        return self.end - self.start

    def clear(self) -> None:
        """Empty, as if new, but in the same arrays: a replay seek refills the history, and memory
        the process touched before costs nothing, while fresh pages cost a fault each (measured:
        ~80 ms of page faults for a 300-sample window on this VM)."""
        self._drop_all(0)
        for (family, _), k in self._kgroups.items():
            k.clear()
            fam = schema.BY_NAME.get(family)
            for name in (fam.positions[0].known if fam and isinstance(fam.positions[0], Name) else ()):
                k.col(name)   # as keyed() names them
        for sp in self._sparse.values():
            sp.clear()
        self.base = 0
        self.serial = next(_serials)
        self.bins = {}
        self._plans = {}  # their Keyed columns are gone
        self.families, self.nonzero = set(), set()

    def _arrays(self) -> list[np.ndarray]:
        return [self.t, self.dt, *self._total.values(), *self._cpu.values()]

    def _keyed(self) -> list[Keyed]:
        return list(self._kgroups.values())

    def _make_room(self, m: int) -> None:
        """Room for m more rows (m <= capacity): when the storage is full, move the newest rows that
        stay live to the front and zero the rest (once per ~capacity appended rows)."""
        if self.end + m <= self.t.shape[0]:
            return
        keep = min(len(self), self.capacity - m)
        lo = self.end - keep
        for a in self._arrays() + [k.data for k in self._kgroups.values()]:
            a[:keep] = a[lo:self.end]
            a[keep:] = 0
        self.start, self.end = 0, keep
        self.base += lo

    def _drop_all(self, skip: int) -> None:
        """Drop every row held, and count `skip` more rows as appended and dropped: absolute row
        numbers (which bins are anchored to) go on counting every sample."""
        for a in self._arrays() + [k.data for k in self._kgroups.values()]:
            a[:self.end] = 0
        self.base += self.end + skip
        self.start = self.end = 0

    def _grow_cpus(self, family: str, ncpu: int) -> None:
        old = self.per_cpu(family)
        if ncpu > old.shape[1]:
            new = np.zeros((old.shape[0], ncpu, old.shape[2]))
            new[:, :old.shape[1]] = old
            self._cpu[family] = new

    def append(self, s: Sample) -> None:
        self.extend(Block.from_samples([s]))

    def extend(self, b: Block) -> None:
        """Append the block's samples: per column group, one matrix product adds up the leaf
        columns that feed it (per-CPU counts into totals, all targets into one histogram...)."""
        if not len(b):
            return
        # what the session has seen counts every sample, also those that do not fit
        nonzero = b.values.any(axis=0).astype(np.float64)
        present = b.present.any(axis=0).tolist()
        fams = self._families(tuple(b.keys))
        self.families.update(f for f, p in zip(fams, present) if p and f)
        self.nonzero.update(f for f, n in zip(fams, nonzero.tolist()) if n and f)
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
            target = self._dest(dest)
            flat = target.data if isinstance(target, Keyed) else target.reshape(target.shape[0], -1)
            flat[rows, cols] += values[:, src] @ matrix
            if isinstance(target, Keyed):
                for c, hit in zip(cols.tolist(), (nonzero[src] @ matrix).tolist()):
                    target.seen[c] = target.seen[c] or hit > 0
        self._add_sparse(b, self.base + rows.start)
        self.end += m
        if self.end - self.start > self.capacity:
            self.start = self.end - self.capacity
        for sp in self._sparse.values():
            sp.drop_before(self.base + self.start)

    def _dest(self, dest: Dest) -> "np.ndarray | Keyed":
        kind, family = dest[0], dest[1]
        if kind == "total":
            return self.total(family)
        if kind == "cpu":
            return self.per_cpu(family)
        return self.keyed(family, dest[2])

    def _families(self, keys: tuple) -> list[str | None]:
        """The family of each leaf key (None: not one this version knows)."""
        got = self._plans.get(("families", keys))
        if got is None:
            got = self._plans[("families", keys)] = [m[0].name if m else None for m in map(_match, keys)]
        return got

    def _add_sparse(self, b: Block, row0: int) -> None:
        """The block's nonzero cells of sparse-stored histograms, into their stores."""
        for family, src, cells in self._sparse_cells(tuple(b.keys)):
            r, c = np.nonzero(b.values[:, src])
            self.sparse(family).add(row0 + r, cells[c], b.values[r, src[c]])

    def _sparse_cells(self, keys: tuple) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Per sparse-stored family: the block columns of its bins and their Sparse cells (cached)."""
        got = self._plans.get(("sparse cells", keys))
        if got is None:
            by: dict[str, list[tuple[int, int]]] = {}
            for j, key in enumerate(keys):
                m = _match(key)
                if m is None or not shape(m[0]).sparse:
                    continue
                sh, parts = shape(m[0]), m[1]
                sp = self.sparse(m[0].name)
                by.setdefault(m[0].name, []).append((j, sp.col(sh.name_of(parts)) * sh.width + sh.fixed_col(parts)))
            got = [(f, np.array([j for j, _ in p], np.intp), np.array([c for _, c in p], np.int32))
                   for f, p in by.items()]
            self._plans[("sparse cells", keys)] = got
        return got

    def _plan(self, keys: tuple) -> list[tuple[Dest, np.ndarray, np.ndarray, np.ndarray]]:
        """How a block with these leaf keys lands: per destination, the block columns that feed it,
        the destination columns, and the 0/1 matrix from one to the other. Cached: live samples and
        a trace's windows mostly share their keys."""
        plan = self._plans.get(keys)
        if plan is not None:
            return plan
        routes: dict[Dest, list[tuple[int, int]]] = {}
        for j, key in enumerate(keys):
            for dest, col in self._routes(key):
                routes.setdefault(dest, []).append((j, col))
        plan = []
        for dest, pairs in routes.items():
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

    def _routes(self, key: tuple) -> list[tuple[Dest, int]]:
        """Where one leaf (a trace key, backend/data/schema.py) goes: (destination, column) pairs."""
        m = _match(key)
        if m is None:
            return []
        fam, parts = m
        sh = shape(fam)
        out: list[tuple[Dest, int]] = []
        fixed = sh.fixed_col(parts)
        if sh.has_total:
            out.append((("total", fam.name), fixed))
        if sh.has_cpu:
            cpu = parts[sh.cpu[0]]
            self._grow_cpus(fam.name, cpu + 1)
            out.append((("cpu", fam.name), cpu * sh.width + fixed))
        if sh.names and not sh.sparse:
            member = parts[-1] if sh.members else None
            k = self.keyed(fam.name, member)
            out.append((("keyed", fam.name, member), k.col(sh.name_of(parts))))
        return out

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




def _match(key: tuple) -> tuple[Family, tuple] | None:
    """The family of a leaf key, None for one this version does not know (or a malformed one:
    traces are checked when read, and a view shows what it knows)."""
    try:
        return schema.match(key)
    except ValueError:
        return None


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
