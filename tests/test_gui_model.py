"""The plots' cached reductions (gui/model.py Bins, gui/plots.py View) against direct numpy over
the window: long windows are drawn from min/max bins computed once per bin, window totals and
the heatmap from sum bins. They must agree with the plain computation, as the window scrolls,
the ring buffer wraps and targets appear mid-session."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np

from gui.model import AppModel
from backend.data.series import flush_counts, target_counts, verdict_rates
from gui.plots import MAX_POINTS, make_view, nice_ceiling
from gui.testing import synthetic


def test_cached_bins_equal_direct_computation():
    m = AppModel(capacity=5000)
    rng = np.random.default_rng(1)
    i = 0
    for _ in range(60):
        for _ in range(int(rng.integers(1, 500))):
            i += 1  # targets appear at 3000 and 9000 samples: columns are added mid-session
            m.append(synthetic(i, 0.05, targets=1 + (i > 3000) + (i > 9000)))
        for length in (30, 150, 240, 1000):
            v = make_view(m, length)
            h = v.h
            direct = verdict_rates(h, v.sl)
            x, y = v.series(("verdicts",), verdict_rates)
            assert np.all(np.diff(x) >= 0) and x[0] == v.t[0] and x[-1] == v.t[-1]
            if v.n <= 2 * MAX_POINTS:  # short windows: the samples themselves
                np.testing.assert_array_equal(x, v.t)
                np.testing.assert_array_equal(y, direct)
            else:  # peak decimation: same extremes per column, at most ~2 points per bin
                assert len(x) <= 2 * MAX_POINTS + 2 * (v.n // MAX_POINTS + 1) * 2
                np.testing.assert_array_equal(np.nanmax(y, axis=0), np.nanmax(direct, axis=0))
                np.testing.assert_array_equal(np.nanmin(y, axis=0), np.nanmin(direct, axis=0))
            # window totals: exact
            np.testing.assert_array_equal(v.total(("targets",), target_counts), target_counts(h, v.sl).sum(axis=0))
            np.testing.assert_array_equal(v.total(("flush",), flush_counts), flush_counts(h, v.sl).sum(axis=0))
            img, x0, width = v.columns(("flush",), flush_counts, 600)
            if v.n <= 600:  # one column per sample
                np.testing.assert_array_equal(img, flush_counts(h, v.sl))
            else:  # fixed columns covering the window; the edge columns may reach outside it
                assert len(img) <= 602
                assert img.sum() >= flush_counts(h, v.sl).sum()
                assert x0 <= v.t[0] - h.dt[v.sl][0] + 1e-9 and x0 + width >= v.t[-1] - 1e-6
    assert len(m.history) == 5000 and m.history.base > 0  # the ring wrapped


def test_nice_ceiling_is_stable_and_round():
    got = [nice_ceiling(v) for v in (0.3, 1, 1.01, 7.9, 8.1, 99, 101, 2.2e6)]
    np.testing.assert_allclose(got, [0.3, 1, 1.2, 8, 10, 100, 120, 2.5e6])
    assert nice_ceiling(5, 8) == 8          # kept while the data stays within (8/2.5, 8]
    assert nice_ceiling(3, 8) == 3          # much lower: a new ceiling
    assert nice_ceiling(9, 8) == 10         # higher: a new ceiling
    assert nice_ceiling(float("nan"), 4) == 4 and nice_ceiling(0) == 1


def _state(h) -> dict:
    """Everything a History holds for its live rows, comparable across histories."""
    sl = slice(h.start, h.end)
    out = {name: getattr(h, name)[sl].copy() for name in
           ("t", "dt", "verdicts", "flush", "cpumap", "cpumap_drops", "napi", "run")}
    out["cpu_verdicts"] = h.cpu_verdicts[sl]
    for name in ("targets", "devmap_sent", "devmap_drops", "redirect_errors", "exceptions", "driver"):
        k = getattr(h, name)
        out[name] = (list(k.names), list(k.seen), k.data[sl, :len(k.names)].copy())
    out["flags"] = (h.has_napi, h.has_run, h.has_cpumap, h.has_cpumap_drops, h.base + h.start, len(h))
    return out


def _assert_same(a, b) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], tuple) and len(sa[k]) == 3 and isinstance(sa[k][2], np.ndarray):
            assert sa[k][:2] == sb[k][:2], k
            np.testing.assert_array_equal(sa[k][2], sb[k][2], err_msg=k)
        elif isinstance(sa[k], np.ndarray):
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
        else:
            assert sa[k] == sb[k], k


def _mixed(i: int):
    """Synthetic samples with members that come and go: cpumap, driver counters, a third target."""
    s = synthetic(i, 0.1, targets=2 + (i > 700))
    if i % 7 == 0:
        s.cpumap_bulk, s.cpumap_drops = [0, i % 5, 0, 0, 0, 0, 0, 0, 1], i % 3
    if i > 300:
        s.driver = {"rx_xdp_drops": i, "tx_xdp_xmit": 2 * i}
    return s


def test_block_extend_equals_sample_appends():
    """A replay window goes in as one Block; live samples one at a time: the history is the same,
    also when blocks straddle the ring's compaction."""
    from backend.data.block import Block
    from gui.model import History
    samples = [_mixed(i) for i in range(1, 2501)]
    one, blocks = History(capacity=900), History(capacity=900)
    rng = np.random.default_rng(3)
    i = 0
    while i < len(samples):
        n = int(rng.integers(1, 400))
        for s in samples[i:i + n]:
            one.append(s)
        blocks.extend(Block.from_samples(samples[i:i + n]))
        i += n
        _assert_same(one, blocks)
    assert one.base > 0 and one.has_cpumap and one.has_cpumap_drops and one.has_napi and one.has_run
    big = History(capacity=900)
    big.extend(Block.from_samples(samples))  # more than capacity at once: the newest 900 stay
    _assert_same(one, big)


def test_clear_is_a_new_history():
    from backend.data.block import Block
    from gui.model import History
    samples = [_mixed(i) for i in range(1, 2001)]
    h = History(capacity=600)
    h.extend(Block.from_samples(samples))
    serial = h.serial
    h.clear()
    assert len(h) == 0 and h.serial != serial and h.bins == {} and not h.has_napi
    fresh = History(capacity=600)
    for part in (samples[:10], samples[10:20]):  # without driver, cpumap or the third target
        h.extend(Block.from_samples(part))
        fresh.extend(Block.from_samples(part))
    _assert_same(h, fresh)
    assert h.driver.names == [] and h.targets.names == ["xs-t0", "xs-t1"]


def test_history_columns_are_the_sample_counters():
    """Each history column, recomputed from the Sample fields directly (not through Block)."""
    from backend.data.block import Block
    from backend.data.sample import VERDICTS
    from gui.model import History
    samples = [_mixed(i) for i in range(1, 1201)]
    for s in samples[::5]:
        s.napi["xs-t0p"] = {"polls": 1, "work": s.t > 50 and 3 or 0, "budget": 64, "full": 0}
    h = History(capacity=1000)
    h.extend(Block.from_samples(samples[:500]))
    for s in samples[500:]:
        h.append(s)
    held = samples[-1000:]
    sl = slice(h.start, h.end)
    np.testing.assert_array_equal(h.t[sl], [s.t for s in held])
    np.testing.assert_array_equal(h.verdicts[sl], [s.verdict_totals() for s in held])
    np.testing.assert_array_equal(h.cpu_verdicts[sl], [s.verdicts for s in held])
    np.testing.assert_array_equal(h.flush[sl], [np.sum(list(s.flush.values()), axis=0) for s in held])
    np.testing.assert_array_equal(h.cpumap[sl], [s.cpumap_bulk or [0] * 9 for s in held])
    np.testing.assert_array_equal(h.cpumap_drops[sl], [s.cpumap_drops or 0 for s in held])
    np.testing.assert_array_equal(h.run[sl], [[s.run["cnt"], s.run["ns"]] for s in held])
    for j, f in enumerate(("polls", "work", "budget", "full")):
        np.testing.assert_array_equal(h.napi[sl, j], [sum(d[f] for d in s.napi.values()) for s in held])
        k = h.napi_dev[f]
        for dev in ("eth0", "xs-t0p"):
            np.testing.assert_array_equal(k.data[sl, k.index[dev]], [s.napi.get(dev, {}).get(f, 0) for s in held])
    columns = {
        h.targets: lambda s: {n: sum(v) for n, v in s.targets.items()},
        h.devmap_sent: lambda s: {n: d["sent"] for n, d in s.devmap.items()},
        h.devmap_drops: lambda s: {n: d["drops"] for n, d in s.devmap.items()},
        h.redirect_errors: lambda s: {f"{n} {e}": c for n, errs in s.redirect_errors.items() for e, c in errs.items()},
        h.exceptions: lambda s: s.exceptions,
        h.driver: lambda s: s.driver,
    }
    for k, of in columns.items():
        names = sorted({n for s in samples for n in of(s)} | (set(VERDICTS) if k is h.exceptions else set()))
        assert sorted(k.names) == names
        for n in names:
            np.testing.assert_array_equal(k.data[sl, k.index[n]], [of(s).get(n, 0) for s in held], err_msg=n)
            assert k.seen[k.index[n]] == any(of(s).get(n, 0) for s in samples), n
    assert h.has_cpumap and h.has_cpumap_drops and h.has_napi and h.has_run
    # per target flush histograms (sparse): each target's bins, sample for sample
    a, e = h.base + h.start, h.base + h.end
    for name in ("xs-t0", "xs-t1"):
        np.testing.assert_array_equal(h.flush_by_target.table(a, e, name),
                                      [s.flush.get(name, [0] * 17) for s in held], err_msg=name)
    assert h.flush_by_target.table(a, e, "nope").sum() == 0


def test_sparse_flush_store_stays_bounded():
    """The per-target flush store forgets what scrolled out of the history."""
    from gui.model import History
    h = History(capacity=200)
    for i in range(1, 5001):
        h.append(synthetic(i, 0.05, targets=4))
    live = sum(int(np.count_nonzero(s)) for i in range(4801, 5001) for s in synthetic(i, 0.05, targets=4).flush.values())
    assert live <= h.flush_by_target.n <= 2 * live + 64
    assert h.flush_by_target.row[:h.flush_by_target.n].min() >= h.base + h.start - live
