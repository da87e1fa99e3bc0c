"""The GUI on the fidelity issue's inputs (issue 11), with the real agent, kernel and lab: frames
injected through the driver's receive path from the Inject panel, the verdict method (an inexact
generic-mode watch of a program iproute2 attached, live and replayed), a user program's own maps
(bcc's xdp_drop_count as shipped), cpumap fan-out per CPU with its kthreads, and "all devices".
Oracles xdpscope did not compute: frames sent, veth's own counters (ethtool -S), the kernel's run
count, a third-party program's truth map; and summary of the same trace for the replayed views."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import re
import shlex
import subprocess
import time

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt

from backend.data.sample import VERDICTS
from backend.data.summary import summarize
from gui.main_window import MainWindow
from gui.plots.flush import ALL_TARGETS, SESSION_TARGETS
from gui.plots.napi import ALL_DEVICES, SESSION_DEVICES
from gui.plots.verdicts import RUNS
from tests import third_party, wire
from tests.conftest import run_cli
from tests.test_namespaces import foreign, send_foreign  # noqa: F401  (a fixture)
from tests.test_user_programs import _frame, _send, shipped
from tests.test_gui_live import win  # noqa: F401  (a fixture: the main window on the real agent)
from tests.test_watch_truth import _program, tp_lab  # noqa: F401  (a fixture)

HZ = 20


def replayed(qtbot, tmp_path, trace) -> MainWindow:
    """A main window replaying the whole trace, shown at its end."""
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.window_box.setValue(3600)
    w.show()
    assert w.open_trace(trace), w.last_error
    w.replay.to_end()
    w.frame(force=True)
    return w


def ethtool(ifname: str) -> dict[str, int]:
    """The driver's own counters, as ethtool -S prints them."""
    out = subprocess.run(["ethtool", "-S", ifname], capture_output=True, text=True, check=True).stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+([\w]+):\s+(\d+)$", out, re.M)}


def curve_total(plot, name: str, h) -> float:
    """Frames a rate curve holds: its rates times each sample's interval."""
    x, y = plot.curves[name].getOriginalDataset()
    dt = h.dt[h.start:h.end]
    assert len(y) == len(dt)
    return float(np.nansum(np.asarray(y) * dt))


def start(w, qtbot) -> None:
    w.start_agent()
    qtbot.waitUntil(lambda: w.session.state == "ready" and w.session.catalog is not None, timeout=30_000)
    w.set_source(w.live)


def select(sp, iface: str, program: str, targets: list[str] = ()) -> None:
    """The Sources panel's controls, as a user sets them."""
    sp.program.setCurrentText(program)
    items = [sp.iface_tree.topLevelItem(i) for i in range(sp.iface_tree.topLevelItemCount())]
    sp.iface_tree.setCurrentItem(next(i for i in items if i.text(0) == iface))
    for i in range(sp.targets.count()):
        it = sp.targets.item(i)
        it.setCheckState(Qt.CheckState.Checked if it.data(Qt.ItemDataRole.UserRole) in targets
                         else Qt.CheckState.Unchecked)


@pytest.mark.kernel
def test_inject_through_the_driver_from_the_inject_panel(win, qtbot, lab):
    """Inject panel, through the driver: N frames -> verdicts N, NAPI work N on the ingress, and veth's
    own counters (ethtool -S) equal what the Driver dock and the plots show."""
    w, sp, n = win, win.sources_panel, 3000
    start(w, qtbot)
    qtbot.waitUntil(lambda: lab.ingress in sp.xdp_now(), timeout=10_000)
    targets = lab.targets[:2]
    select(sp, lab.ingress, "redirect", targets)
    sp.hz.setValue(HZ)
    assert sp.attach_args()["targets"] == targets
    sp.attach_btn.click()
    qtbot.waitUntil(lambda: w.session.attached, timeout=120_000)
    before = ethtool(lab.ingress)
    samples = []
    w.live.sig_sample.connect(samples.append)
    sp.inj_count.setValue(n)
    assert sp.inj_wire.isChecked()  # the panel offers the real path first
    args = sp.inject_args()
    assert args["wire"] is True and args["iface"] == lab.ingress
    with qtbot.waitSignal(w.session.client.sig_response, timeout=60_000,
                          check_params_cb=lambda rid, ok, res: isinstance(res, dict) and "peer" in res) as r:
        sp.inject_btn.click()
    ok, res = r.args[1], r.args[2]
    assert ok and res["frames"] == n and res["peer_tx_packets"] == n and res["peer"] == lab.ingress_peer

    def settled() -> bool:
        redir = sum(s.verdict_totals()[VERDICTS.index("REDIRECT")] for s in samples)
        work = sum(s.napi.get(lab.ingress, {}).get("work", 0) for s in samples)
        return redir == n and work == n
    qtbot.waitUntil(settled, timeout=20_000)
    qtbot.wait(300)
    after = ethtool(lab.ingress)
    drv = {k: after[k] - before.get(k, 0) for k in after}
    assert sum(v for k, v in drv.items() if re.fullmatch(r"rx_queue_\d+_xdp_packets", k)) == n
    assert sum(v for k, v in drv.items() if re.fullmatch(r"rx_queue_\d+_xdp_redirect", k)) == n
    w.frame(force=True)
    h = w.live.model.history
    # verdicts: REDIRECT holds the N frames (and the verdicts are the program's own, exact)
    assert curve_total(w.verdicts.rates, "REDIRECT", h) == pytest.approx(n, abs=1e-6)
    assert "program counters" in w.verdicts.method_label.text() and "inexact" not in w.verdicts.method_label.text()
    # the Driver dock: the program's REDIRECT, veth's own, no difference; veth's counters in the
    # history over the window equal ethtool's
    assert w.driver_panel.values["REDIRECT"] == (n, n, 0)
    shown = {name: int(h.driver.data[h.start:h.end, i].sum()) for i, name in enumerate(h.driver.names)}
    for k in ("rx_queue_0_xdp_packets", "rx_queue_0_xdp_redirect"):
        assert shown[k] == drv[k] == n, k
    # NAPI: the ingress's poll ran the program on every frame
    w.napi.device.setCurrentText(lab.ingress)
    w.frame(force=True)
    polls = sum(s.napi.get(lab.ingress, {}).get("polls", 0) for s in samples)
    assert f"{lab.ingress} {polls:,} polls {n:,} packets" in w.napi.summary.text()
    assert polls >= -(-n // 64)  # at most the budget (64) per poll
    # the inject marker says it went through the driver, with no batch a report could blame
    m = [m for m in w.live.model.markers if m.kind == "inject"][-1]
    assert "through the driver" in m.label and "batch" not in (m.data or {})
    with qtbot.waitSignal(w.session.sig_detached, timeout=15_000):
        sp.detach_btn.click()


@pytest.mark.kernel
def test_generic_watch_is_labelled_inexact_live_and_replayed(win, qtbot, tp_lab, tmp_path):  # noqa: F811
    """A program iproute2 attached in generic mode, watched: the Verdicts panel, the Session dock and
    the Sources panel say inexact, and the total shown is the kernel's run count (= frames sent, = the
    program's own truth map), live and from the recording."""
    w, sp, lab, n = win, win.sources_panel, tp_lab, 2000
    prog_id = _program(lab, tmp_path, "xdpgeneric")
    try:
        start(w, qtbot)
        w.sources_panel.sig_attach.emit({"iface": lab.ingress, "program": "watch", "hz": HZ})
        qtbot.waitUntil(lambda: w.session.attached, timeout=120_000)
        assert w.session.meta["verdict_method"].startswith("inexact: generic XDP")
        w.settings.setValue("record_dir", str(tmp_path))
        w.choose_record_path = lambda default: str(default)
        w.record_action.setChecked(True)
        samples = []
        w.live.sig_sample.connect(samples.append)
        wire.send(lab, n)
        qtbot.waitUntil(lambda: sum((s.run or {}).get("cnt", 0) for s in samples) == n, timeout=20_000)
        qtbot.wait(300)
        truth = third_party.truth(prog_id)
        w.frame(force=True)
        check_inexact(w, n)
        line = sp.session_label.text()
        assert "inexact" in line and "generic XDP" in line
        w.record_action.setChecked(False)
        path = w.recorder.path
        with qtbot.waitSignal(w.session.sig_detached, timeout=15_000):
            sp.detach_btn.click()
    finally:
        third_party.detach(lab.ingress, "xdpgeneric")
    assert sum(truth.values()) == n
    s = summarize(path)
    assert s["verdict_method"].startswith("inexact: generic XDP") and s["verdict_total"] == n
    # the recording, replayed: the same label, and the run count from the trace
    assert w.open_trace(path), w.last_error
    w.replay.to_end()
    w.frame(force=True)
    check_inexact(w, n)


def check_inexact(w, n: int) -> None:
    v = w.verdicts
    assert v.method.startswith("inexact: generic XDP")
    label = v.method_label.text()
    assert "inexact" in label and "run count" in label and v.method_label.isVisibleTo(v)
    assert v.runs_text.text() == f"total: the program ran {n:,} times in the window (the kernel's run count)"
    h = w.source.model.history
    assert curve_total(v.rates, RUNS, h) == pytest.approx(n, abs=1e-6)
    assert not v.rates.curves.get("total") or not v.rates.curves["total"].isVisible()  # no total claimed from verdicts
    for a in VERDICTS:
        assert curve_total(v.rates, a, h) == 0  # unknown, not guessed
    top = w.meta_panel.topLevelItem(0)
    assert top.text(0) == "verdict_method" and top.text(1) == w.source.model.meta["verdict_method"]
    assert top.foreground(1).color().name().lower() == "#e69f00"


@pytest.mark.kernel
def test_user_maps_of_bccs_xdp_drop_count_replayed(qtbot, record, lab, tmp_path):
    """bcc's xdp_drop_count as shipped, recorded by the CLI; replayed, the Program maps panel shows
    one series per dropcnt entry whose window totals equal summary --json's user_maps (and what was sent)."""
    text, cflags = shipped("xdp_drop_count", ret="XDP_DROP", ctxtype="xdp_md", maptype="percpu_array")
    src = tmp_path / "xdp_drop_count.c"
    src.write_text(text)
    rec = record("--iface", lab.ingress, "--program", str(src), f"--cflags={shlex.join(cflags)}", "--hz", str(HZ))
    sent = {"17": 300, "6": 200, "1": 100, "58": 50, "0": 70}
    _send(lab, [(_frame(0x0800, 17), 300), (_frame(0x0800, 6), 200), (_frame(0x0800, 1), 100),
                (_frame(0x86DD, 58), 50), (_frame(0x0806, None), 70)])
    time.sleep(0.3)
    assert rec.stop() == 0
    s = json.loads(run_cli("summary", str(rec.out), "--json").stdout)
    assert s["user_maps"] == {"dropcnt": sent}
    w = replayed(qtbot, tmp_path, rec.out)
    p = w.user_maps
    assert p.window_totals == s["user_maps"]
    qtbot.waitUntil(lambda: w.user_maps.shown(), timeout=2_000)  # the maps' tab came to the front
    h = w.replay.model.history
    for key, total in sent.items():
        assert curve_total(p.rates, f"dropcnt[{key}]", h) == pytest.approx(total, abs=1e-6)
    assert [p.map.itemText(i) for i in range(p.map.count())] == ["all maps", "dropcnt"]
    assert "dropcnt: " in p.summary.text() and "[17] 300" in p.summary.text()
    # the verdicts of a wrapped user program are its own counters: exact
    assert w.verdicts.method == "program counters" and "(exact)" in w.verdicts.method_label.text()


@pytest.mark.kernel
def test_cpumap_fanout_per_cpu_and_kthreads_replayed(qtbot, record, lab, tmp_path):
    """The cpumap program: the Fan-out panel shows target CPUs (not interfaces) and the kthreads'
    processed, drops and sched, equal to summarize() of the same trace."""
    n = 4000
    rec = record("--iface", lab.ingress, "--program", "cpumap", "--targets", "0,1", "--hz", str(HZ))
    wire.send(lab, n)
    time.sleep(0.5)
    assert rec.stop() == 0
    s = summarize(rec.out)
    enq, kt = s["counters"]["cpumap_enqueue"], s["counters"]["cpumap_kthread"]
    w = replayed(qtbot, tmp_path, rec.out)
    f = w.fanout
    want = {c: d for c, d in enumerate(enq) if d and any(d.values())}
    assert f.cpu_totals == {c: {k: d.get(k, 0) for k in ("processed", "drops", "bulks")} for c, d in want.items()}
    assert sum(d["processed"] for d in f.cpu_totals.values()) == n  # every frame went to a CPU's queue
    assert set(f.cpu_totals) == {0, 1}  # the two target CPUs, each with its share
    kwant = {c: {k: d.get(k, 0) for k in ("processed", "drops", "sched")} for c, d in enumerate(kt) if d and any(d.values())}
    assert f.kthread_totals == kwant
    assert sum(d["processed"] + d["drops"] for d in f.kthread_totals.values()) == n
    assert f.share_labels[:2] == ["CPU 0", "CPU 1"]
    assert "Redirects per target CPU" in f.rates.plot.titleLabel.text and f.kthreads is not None
    h = w.replay.model.history
    for c in (0, 1):
        assert curve_total(f.rates, f"CPU {c}", h) == pytest.approx(f.cpu_totals[c]["processed"], abs=1e-6)
    assert "kthreads CPU" in f.summary.text()


@pytest.mark.kernel
def test_all_devices_is_a_choice_and_names_namespaces(win, qtbot, lab, foreign):  # noqa: F811
    """By default NAPI covers the session's devices; 'all devices' from the Sources panel goes to the
    agent as all_devices, is read back, and the NAPI view then lists every device, the foreign
    namespace's ones (same names and ifindexes as the session's) as name@netns, apart."""
    w, sp, n, m = win, win.sources_panel, 3200, 3000
    start(w, qtbot)
    qtbot.waitUntil(lambda: lab.ingress in sp.xdp_now(), timeout=10_000)
    t0, t1 = lab.targets[:2]
    select(sp, lab.ingress, "redirect", [t0, t1])
    assert sp.all_devices.isEnabled() and sp.attach_args()["all_devices"] is False  # the default: the session's
    sp.all_devices.setChecked(True)
    assert sp.attach_args()["all_devices"] is True
    sp.attach_btn.click()
    qtbot.waitUntil(lambda: w.session.attached, timeout=120_000)
    assert w.session.meta["probe_devices"]["devices"] == "all"
    assert sp.all_devices.isChecked() and "all devices of every namespace" in sp.session_label.text()
    samples = []
    w.live.sig_sample.connect(samples.append)
    send_foreign(foreign, lab.ingress_peer, m)
    wire.send(lab, n)
    key = f"{lab.ingress}@{foreign}"
    qtbot.waitUntil(lambda: sum(s.napi.get(lab.ingress, {}).get("work", 0) for s in samples) == n
                    and sum(s.napi.get(key, {}).get("work", 0) for s in samples) == m, timeout=20_000)
    w.frame(force=True)
    offered = [w.napi.device.itemText(i) for i in range(w.napi.device.count())]
    assert offered[:2] == [SESSION_DEVICES, ALL_DEVICES] and key in offered and lab.ingress in offered
    # the default: the session's devices only (named in their namespaces), not the foreign ones
    text = w.napi.summary.text()
    assert f"{lab.ingress} " in text and f"{n:,} packets" in text and f"@{foreign}" not in text
    mine = set(w.session.meta["probe_devices"]["session"])
    assert {lab.ingress, t0, t1} <= mine and not any(d.endswith(f"@{foreign}") for d in mine)
    w.napi.device.setCurrentText(ALL_DEVICES)
    w.frame(force=True)
    text = w.napi.summary.text()
    assert f"{key} " in text and f"{m:,} packets" in text
    w.napi.device.setCurrentText(key)
    w.frame(force=True)
    assert f"{key} " in w.napi.summary.text() and f"{m:,} packets" in w.napi.summary.text()
    # devmap flushes: the session's targets by default; all devices (the foreign ones too) on request
    qtbot.waitUntil(lambda: sum(sum(i * c for i, c in enumerate(hist)) for smp in samples
                                for t, hist in smp.flush.items() if t in (t0, t1)) == n, timeout=10_000)
    w.frame(force=True)
    fl = w.flush
    assert [fl.target.itemText(i) for i in range(2)] == [SESSION_TARGETS, ALL_TARGETS]
    assert fl.target.currentIndex() == 0 and f" flushes, {n:,} frames in window" in fl.summary.text()
    assert {f"{t0}@{foreign}", f"{t1}@{foreign}"} <= {fl.target.itemText(i) for i in range(fl.target.count())}
    fl.target.setCurrentText(ALL_TARGETS)
    w.frame(force=True)
    frames = int(fl.summary.text().split(" flushes, ")[1].split(" frames")[0].replace(",", ""))
    assert frames >= n + (m - m // 10)   # the foreign program's redirects too (and any other namespace's)
    with qtbot.waitSignal(w.session.sig_detached, timeout=15_000):
        sp.detach_btn.click()


@pytest.mark.unit
def test_long_traces_window_totals_equal_summary(qtbot, tmp_path):
    """5000 samples (the plots then draw min/max bins, and window totals come from cached sum bins):
    the Program maps totals, the cpumap totals and the run count of an inexact session equal
    summarize() of the same trace; a map entry and a CPU that appear late are counted too."""
    from backend.data.sample import Sample
    from backend.data.trace import TraceWriter
    path, n = tmp_path / "long.xst", 5000
    meta = {"program": "cpumap", "iface": "xs-in", "hz": 100, "host": "test", "source": "watch",
            "verdict_method": "inexact: generic XDP runs before the driver (test)"}
    with TraceWriter(path, meta) as tw:
        for i in range(1, n + 1):
            maps = {"dropcnt": {"17": i % 7, **({"6": 2} if i > 4000 else {})}}
            enq = [{"processed": i % 5, "drops": i % 2, "bulks": 1}] + ([{"processed": 3, "drops": 0, "bulks": 1}]
                                                                      if i > 2500 else [])
            kt = [{"processed": i % 5, "drops": 0, "sched": i % 3}]
            tw.write(Sample(t=i / 100, dt=0.01, run={"cnt": i % 11, "ns": 40 * (i % 11)}, user_maps=maps,
                            cpumap_enqueue=enq, cpumap_kthread=kt))
    s = summarize(path)
    w = replayed(qtbot, tmp_path, path)
    assert len(w.replay.model.history) == n
    assert w.user_maps.window_totals == s["user_maps"]
    f = w.fanout
    enq = {c: d for c, d in enumerate(s["counters"]["cpumap_enqueue"]) if d}
    assert f.cpu_totals == {c: {k: d.get(k, 0) for k in ("processed", "drops", "bulks")} for c, d in enq.items()}
    assert set(f.cpu_totals) == {0, 1}
    kt = s["counters"]["cpumap_kthread"]
    assert f.kthread_totals == {0: {k: kt[0].get(k, 0) for k in ("processed", "drops", "sched")}}
    assert w.verdicts.method.startswith("inexact: ") and s["verdict_total"] == s["run"]["cnt"] > 0
    assert w.verdicts.runs_text.text() == \
        f"total: the program ran {s['run']['cnt']:,} times in the window (the kernel's run count)"
    top = w.meta_panel.topLevelItem(0)
    assert (top.text(0), top.text(1)) == ("verdict_method", meta["verdict_method"])
    # the report of the same trace: the method, the maps and cpumap per CPU, every cell = summary --json
    from tests.test_report import check_tables, report, summary_json
    out = tmp_path / "r.html"
    report(path, out)
    s = summary_json(path)
    cells = check_tables(out, s)
    for h in ("Verdicts are inexact", "The program's own maps", "cpumap fan-out per target CPU",
              "cpumap kthreads per CPU"):
        assert h in cells.headings, h
    keys = {json.dumps(k) for k, _, _ in cells.cells}
    assert all(json.dumps(["user_maps", "dropcnt", k]) in keys for k in s["user_maps"]["dropcnt"])
    assert json.dumps(["counters", "cpumap_enqueue", 1, "processed"]) in keys
    assert json.dumps(["verdict_total"]) in keys


@pytest.mark.kernel
def test_embedded_default_shows_the_real_path(win, qtbot):
    """The lab demo (Agent → Run the lab demo) injects through the driver: every frame the agent sent
    from the ingress's peer was run by the program in the ingress's NAPI poll, and veth counted it."""
    from backend.labs import veth as labmod
    from gui.session import DEMO_PPS
    assert labmod.status("xs") is None, "the demo's lab (prefix xs) must not exist before this test"
    w = win
    sent = []
    try:
        w.run_default_live()
        qtbot.waitUntil(lambda: w.session.attached and w.session.inject_args is not None, timeout=120_000)
        assert w.session.inject_args["wire"] is True and w.session.inject_args["rate"] == DEMO_PPS
        w.session.client.sig_response.connect(lambda rid, ok, res: ok and isinstance(res, dict) and "peer" in res
                                              and sent.append(res["frames"]))
        qtbot.waitUntil(lambda: len(sent) >= 3, timeout=30_000)
        w.session.stop_inject()
        n = len(sent)
        qtbot.wait(1500)  # a run in flight when the loop stopped answers too; then NAPI settles
        assert len(sent) <= n + 1
        w.frame(force=True)
        h = w.live.model.history
        total = sum(sent)
        rows = slice(h.start, h.end)
        redirected = int(h.verdicts[rows, VERDICTS.index("REDIRECT")].sum())
        assert redirected == int(h.verdicts[rows].sum()) == total
        names = h.napi_dev["work"].names
        assert "xs-in" in names and int(h.napi_dev["work"].data[rows, names.index("xs-in")].sum()) == total
        drv = {name: int(h.driver.data[rows, i].sum()) for i, name in enumerate(h.driver.names)}
        assert drv["rx_queue_0_xdp_packets"] == total
        assert w.driver_panel.values["REDIRECT"][:2] == (total, total)
        assert any("through the driver" in m.label for m in w.live.model.markers if m.kind == "inject")
        with qtbot.waitSignal(w.session.sig_detached, timeout=15_000):
            w.sources_panel.detach_btn.click()
    finally:
        labmod.down("xs")
