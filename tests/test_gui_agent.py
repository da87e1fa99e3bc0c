"""The GUI's agent side: a dead agent is shown with its message, replay keeps working; a
protocol-speaking fake agent feeds the live view and the recorder."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from backend.data.trace import TraceReader
from gui.agent_client import AgentClient
from gui.main_window import MainWindow
from gui.sources_panel import BELOW_MIN, OPTIONAL
from gui.testing import fake_agent_command, failing_agent_command, write_trace


def make_window(qtbot, tmp_path, commands):
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), agent_commands=commands)
    qtbot.addWidget(w)
    w.show()
    return w


def test_dead_agent_is_shown_and_replay_still_works(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path, [failing_agent_command("xdpscope agent: bpf() not permitted: EPERM")])
    w.start_agent()
    qtbot.waitUntil(lambda: w.session.state == "dead", timeout=10_000)
    msg = w.sources_panel.agent_msg.text()
    assert "exited with status 1" in msg and "bpf() not permitted: EPERM" in msg
    assert "dead" in w.sources_panel.agent_state.text()
    assert not w.sources_panel.attach_btn.isEnabled()
    assert "bpf() not permitted" in w.log.toPlainText()
    # the GUI stays usable: a replay opens and draws
    samples = write_trace(tmp_path / "r.xst", 100)
    assert w.open_trace(tmp_path / "r.xst")
    w.frame(force=True)
    x, y = w.verdicts.rates.curves["PASS"].getOriginalDataset()
    end = w.replay.position
    sel = [s for s in samples if end - w.window_box.value() < s.t <= end]
    np.testing.assert_allclose(y, [s.verdict_totals()[2] / s.dt for s in sel])


def test_agent_that_cannot_start(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path, [[str(tmp_path / "no-such-agent"), "agent", "--stdio"]])
    w.start_agent()
    qtbot.waitUntil(lambda: w.session.state == "dead", timeout=10_000)
    assert "cannot start" in w.sources_panel.agent_msg.text()


def test_client_falls_back_to_next_command(qtbot, tmp_path):
    """sudo -n failing (password needed) before ready: the next way up is tried."""
    c = AgentClient([failing_agent_command("sudo: a password is required"), fake_agent_command(tmp_path)])
    with qtbot.waitSignal(c.sig_ready, timeout=15_000):
        c.start()
    assert c.command[-1].endswith("fake_agent.py")
    with qtbot.waitSignal(c.sig_response, timeout=5_000) as blocker:
        c.request("hello-unknown")
    assert blocker.args[1] is False and "unknown command" in blocker.args[2]
    with qtbot.waitSignal(c.sig_died, timeout=5_000) as died:
        c.stop()
    assert died.args == ["agent stopped"]


def test_live_default_and_recording(qtbot, tmp_path):
    """Lab up -> attach redirect to the lab -> inject loop, all without input; then record."""
    w = make_window(qtbot, tmp_path, [fake_agent_command(tmp_path, hz=50)])
    w.settings.setValue("record_dir", str(tmp_path))
    asked = []  # the Save dialog: offered a name in the chosen directory, answered with it
    w.choose_record_path = lambda default: asked.append(default) or str(default)
    w.run_default_live()
    qtbot.waitUntil(lambda: w.session is not None and w.session.attached, timeout=15_000)
    assert w.source is w.live
    assert w.meta_panel.value("iface") == "xs-in"
    assert w.meta_panel.value("targets") == "xs-t0, xs-t1"
    qtbot.waitUntil(lambda: w.session.inject_args is not None, timeout=5_000)
    qtbot.waitUntil(lambda: len(w.live.model.history) >= 10, timeout=10_000)
    names = [w.sources_panel.iface_tree.topLevelItem(i).text(1) for i in
             range(w.sources_panel.iface_tree.topLevelItemCount())]
    assert "virtio_net ★" in names
    w.frame(force=True)
    x, y = w.verdicts.rates.curves["REDIRECT"].getOriginalDataset()
    assert len(x) >= 10 and np.all(y > 0)
    # recording: the toolbar toggle writes what arrives, with the attach response's meta
    w.record_action.setChecked(True)
    assert w.recorder.active
    start = len(w.live.model.history)
    qtbot.waitUntil(lambda: w.recorder.count >= 20, timeout=10_000)
    w._update_record_label()
    assert "REC" in w.record_label.text()
    assert asked and asked[0].parent == tmp_path  # the dialog starts where the user last recorded
    w.record_action.setChecked(False)
    path = w.recorder.path
    assert f"to {path}" in w.statusBar().currentMessage() and "samples (" in w.statusBar().currentMessage()
    assert str(path.resolve()) in w.recent()  # File → Open recent
    with TraceReader(path) as r:
        assert r.meta["iface"] == "xs-in" and r.meta["program"] == "redirect"
        assert len(r) == w.recorder.count
        first = next(r.samples())
    assert first.t == pytest.approx(float(w.live.model.history.t[w.live.model.history.start + start]), abs=0.2)
    # detach from the panel
    with qtbot.waitSignal(w.session.sig_detached, timeout=5_000):
        w.sources_panel.detach_btn.click()
    assert not w.session.attached
    w.session.stop()
    qtbot.waitUntil(lambda: w.session.state == "stopped", timeout=5_000)


def test_sources_panel_limits_are_the_agents_catalog(qtbot, tmp_path):
    """Every number box of the Sources panel has the range the agent's catalog gives (the fake
    agent answers with the real backend/agent/catalog.py), and nothing before the agent answers."""
    from backend.agent import catalog
    w = make_window(qtbot, tmp_path, [fake_agent_command(tmp_path)])
    sp = w.sources_panel
    assert all(not box.isEnabled() for _, box in sp.spin_params().values())  # no limit known: nothing offered
    w.start_agent()
    qtbot.waitUntil(lambda: w.session.catalog is not None, timeout=15_000)
    cat = catalog.answer()
    params = {(sec, p["name"]): p for sec in ("session", "inject") for p in cat[sec]}
    for name, (sec, box) in sp.spin_params().items():
        p = params[(sec, name)]
        # an optional number without a default (the CPU) has one step below the catalog's minimum: "any"
        below = name in BELOW_MIN and p["default"] is None
        assert (box.minimum(), box.maximum()) == (p["min"] - below, min(p["max"], 2**31 - 1)), name
        assert box.isEnabled()
        if isinstance(p["default"], (int, float)):
            assert box.value() == p["default"], name
        elif name in OPTIONAL:  # not sent: the agent's default
            assert box.value() == box.minimum() and box.text() == OPTIONAL[name], name
    args = sp.inject_args()
    assert args["wire"] is True and "rate" not in args and "cpu" not in args  # through the driver by default
    assert catalog.inject_args(args, iface_check=lambda v, label: v)["wire"] is True  # the agent takes it
    sp.inj_rate.setValue(5000)
    sp.inj_cpu.setValue(0)
    assert sp.inject_args()["rate"] == 5000.0 and sp.inject_args()["cpu"] == 0
    sp.inj_wire.setChecked(False)  # BPF_PROG_TEST_RUN takes no rate (the agent refuses one)
    assert "rate" not in sp.inject_args() and not sp.inj_rate.isVisibleTo(sp)
    catalog.inject_args(sp.inject_args(), iface_check=lambda v, label: v)
    assert [sp.mode.itemText(i) for i in range(sp.mode.count())] == params[("session", "mode")]["choices"]
    policy = next(q for prog in cat["programs"] for q in prog["params"] if q["name"] == "policy")
    assert [sp.policy.itemText(i) for i in range(sp.policy.count())] == policy["choices"]
    assert sp.inj_size.maximum() == catalog.MAX_FRAME  # issue 10: the GUI said 9000 while the engine takes 3000
    for prog in cat["programs"]:
        assert sp.target_kind(prog["name"]) == prog["targets"]
    w.session.stop()
    qtbot.waitUntil(lambda: w.session.state == "stopped", timeout=5_000)


def test_report_of_a_live_session_before_it_is_recorded(qtbot, tmp_path):
    """A live session is reported from its samples in memory (no recording), through the same path
    as a trace: its numbers equal `summary` of a trace written from the samples the session showed,
    for the whole session and for an A-B range."""
    from backend.data.summary import summarize
    from backend.data.trace import TraceWriter
    from gui.export import report_source
    from gui.report import build, write_report
    w = make_window(qtbot, tmp_path, [fake_agent_command(tmp_path, hz=50)])
    seen = []
    w.ensure_session().source.sig_sample.connect(seen.append)  # every sample the session shows
    w.run_default_live()
    qtbot.waitUntil(lambda: w.session.attached and len(seen) >= 300, timeout=20_000)  # > one kept Block of 256
    w.session.detach()
    qtbot.waitUntil(lambda: not w.session.attached, timeout=5_000)
    assert not w.recorder.active and report_source(w) is w.live
    path = tmp_path / "oracle.xst"
    with TraceWriter(path, {**w.live.model.meta}) as tw:
        for smp in seen:
            tw.write(smp)
    rep = build(w.live)
    s = summarize(path)
    for key in ("samples", "actions", "redirect_targets", "flush_batches", "redirect_errors", "napi", "duration_s"):
        assert rep.summary[key] == s[key], key
    a, b = seen[50].t, seen[250].t
    part = build(w.live, a, b, with_plots=False)
    assert part.summary["actions"] == summarize(path, a, b)["actions"] and part.summary["samples"] == 201
    out = tmp_path / "live.html"
    write_report(w.live, out, a, b, (400, 200))
    assert "live session" in out.read_text()
    w.session.stop()
    qtbot.waitUntil(lambda: w.session.state == "stopped", timeout=5_000)
