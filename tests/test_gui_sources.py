"""The Sources panel shows what runs, read back from the real agent, on the real kernel: after
attach, a program switched in place, and detach, its 'XDP now' column, targets, options and the
status bar equal what iproute2 (not xdpscope) says the kernel has; the programs table counts the
runs of the frames injected."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import subprocess

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from gui.main_window import MainWindow
from gui.sources_panel import BELOW_MIN
from tests.conftest import ROOT

pytestmark = pytest.mark.kernel


def kernel_xdp(ifname: str) -> int | None:
    """The XDP program id on an interface, as iproute2 reads it from the kernel (None: none)."""
    link = json.loads(subprocess.run(["ip", "-j", "link", "show", "dev", ifname], capture_output=True,
                                     text=True, check=True).stdout)[0]
    xdp = link.get("xdp") or {}
    prog = xdp.get("prog") or next((a.get("prog") for a in xdp.get("attached", []) if a.get("prog")), None)
    return prog["id"] if prog else None


@pytest.fixture
def win(qtbot, tmp_path):
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                   agent_commands=[[str(ROOT / "xdpscope"), "agent", "--stdio"]])
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.session is not None and w.session.client.running:
        w.session.client.stop()
        w.session.client.proc.waitForFinished(15_000)


def shown_prog_id(sp, ifname: str) -> int | None:
    cell = sp.xdp_now().get(ifname, "")
    return int(cell.split("#")[1]) if "#" in cell else None


def test_sources_panel_equals_the_kernel_after_attach_switch_detach(win, qtbot, lab):
    w, sp = win, win.sources_panel
    w.start_agent()
    qtbot.waitUntil(lambda: w.session.state == "ready", timeout=30_000)
    qtbot.waitUntil(lambda: lab.ingress in sp.xdp_now(), timeout=10_000)
    assert shown_prog_id(sp, lab.ingress) is None and kernel_xdp(lab.ingress) is None
    # the panel's number ranges are the real agent's catalog (asked again here, not the GUI's copy)
    with qtbot.waitCallback(timeout=10_000) as got:
        w.session.client.request("catalog", got)
    ok, cat = got.args
    params = {(sec, p["name"]): p for sec in ("session", "inject") for p in cat[sec]}
    assert ok and all((box.minimum(), box.maximum()) ==
                      (params[(sec, n)]["min"] - (n in BELOW_MIN and params[(sec, n)]["default"] is None),
                       min(params[(sec, n)]["max"], 2**31 - 1)) for n, (sec, box) in sp.spin_params().items())
    w.set_source(w.live)
    targets = [*lab.targets, lab.nxtarget]

    # attach from the panel's signal, as the Attach button does
    sp.sig_attach.emit({"iface": lab.ingress, "program": "redirect", "targets": targets, "policy": "rr",
                        "mode": "auto", "hz": 20, "run_time": True})
    qtbot.waitUntil(lambda: w.session.attached, timeout=120_000)
    first = kernel_xdp(lab.ingress)
    assert first is not None
    qtbot.waitUntil(lambda: shown_prog_id(sp, lab.ingress) == first, timeout=15_000)
    assert sp.xdp_now()[lab.ingress].startswith("native #")  # veth: native, as iproute2 says (mode 1)
    assert all(shown_prog_id(sp, t) is None and kernel_xdp(t) is None for t in targets)
    assert sp.selected_targets() == targets  # every target in use is ticked (the issue: none was)
    assert sp.run_time.isChecked() and sp.program.currentText() == "redirect"
    assert sp.selected_iface() == lab.ingress and sp.attach_btn.text() == "Switch program"
    line = " ".join(sp.session_label.text().replace("<b>", "").replace("</b>", "").split())
    assert f"redirect (native) on {lab.ingress} → {', '.join(targets)}" in line and "run time on" in line
    assert w.source_label.text() == f"live: redirect on {lab.ingress} → {', '.join(targets)}"

    # the programs table: the runs of the injected frames, from the kernel's BPF statistics
    w.docks["Programs"].raise_()
    w.programs.show()

    def reading() -> dict:
        w.programs.poll()
        qtbot.waitUntil(lambda: not w.programs._pending, timeout=10_000)
        return {p.id: p for p in w.programs.prev.values()}
    w.programs.timer.stop()   # the table's own polls would split the injection's interval in two
    before = reading()
    assert first in before and before[first].ifaces == (f"{lab.ingress} (native)",)
    count = 25_600
    with qtbot.waitSignal(w.session.client.sig_response, timeout=60_000,
                          check_params_cb=lambda rid, ok, res: isinstance(res, dict) and "frames" in res):
        w.session.inject({"iface": lab.ingress, "count": count, "batch": 64})
    after = reading()
    assert after[first].run_cnt - before[first].run_cnt == count  # every frame sent ran the program once
    row = next(r for r in w.programs.rows if r.id == first)
    assert row.runs_per_s > 0 and row.ns_per_run > 0 and 0 < row.cpu_percent <= 100
    w.programs.timer.start()

    # switch in place: another program, the same timeline
    h = w.live.model.history
    qtbot.waitUntil(lambda: len(h) >= 10, timeout=10_000)
    t_before = float(h.t[h.end - 1])
    sp.sig_attach.emit({"iface": lab.ingress, "program": "drop", "mode": "auto", "hz": 20})
    qtbot.waitUntil(lambda: w.session.attached and w.session.meta.get("program") == "drop", timeout=120_000)
    second = kernel_xdp(lab.ingress)
    assert second is not None and second != first
    qtbot.waitUntil(lambda: shown_prog_id(sp, lab.ingress) == second, timeout=15_000)
    assert sp.program.currentText() == "drop" and not sp.run_time.isChecked()
    assert w.source_label.text() == f"live: drop on {lab.ingress}"
    qtbot.waitUntil(lambda: len(h) and h.t[h.end - 1] > t_before + 0.5, timeout=10_000)
    t = h.t[h.start:h.end]
    assert t[0] < t_before and np.all(np.diff(t) > 0)  # one timeline: not reset, not restarted at 0
    switch = next(m for m in w.live.model.markers if m.kind == "switch")
    assert switch.label == f"switch to drop on {lab.ingress}" and switch.t >= t_before

    # detach: nothing runs, and nothing says it does
    with qtbot.waitSignal(w.session.sig_detached, timeout=30_000):
        sp.detach_btn.click()
    assert kernel_xdp(lab.ingress) is None
    qtbot.waitUntil(lambda: shown_prog_id(sp, lab.ingress) is None, timeout=15_000)
    assert sp.session_label.text() == "not attached" and sp.attach_btn.text() == "Attach"
    assert "redirect" not in w.source_label.text() and "not attached" in w.source_label.text()
