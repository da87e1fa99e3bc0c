"""File → Connect to host…: the GUI drives an agent over a real ssh connection (tests/sshd.py, on
127.0.0.1), attaches on the lab and sees its samples; a killed ssh connection shows as
"connection lost", the remote interface loses its program, Reconnect connects again."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import platform
import signal
import socket
import subprocess

import pytest
from PySide6.QtCore import QSettings

from backend.agent import remote
from gui.connect_dialog import ConnectDialog, describe, recent_hosts, remember
from gui.main_window import MainWindow
from gui.testing import fake_agent_command
from tests import sshd as sshd_mod
from tests.conftest import ROOT

REMOTE_XDPSCOPE = str(ROOT / "xdpscope")


def settings(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)


# -- no root: the dialog and the words ------------------------------------------------------
def test_connect_dialog_recent_hosts(qtbot, tmp_path):
    s = settings(tmp_path)
    remember(s, remote.Target.parse("alice@vm1", "/opt/xdpscope/xdpscope"))
    remember(s, remote.Target.parse("vm2"))
    remember(s, remote.Target.parse("alice@vm1", "/srv/xdpscope/xdpscope"))  # again: moves to the top
    assert recent_hosts(s) == [{"host": "alice@vm1", "xdpscope": "/srv/xdpscope/xdpscope"},
                               {"host": "vm2", "xdpscope": ""}]
    dlg = ConnectDialog(s)
    qtbot.addWidget(dlg)
    assert [dlg.host.itemText(i) for i in range(dlg.host.count())] == ["alice@vm1", "vm2"]
    assert dlg.path.text() == "/srv/xdpscope/xdpscope"
    assert dlg.command.text().endswith("alice@vm1 -- sudo -n /srv/xdpscope/xdpscope agent --stdio")
    dlg.host.setCurrentIndex(1)
    assert dlg.path.text() == "" and dlg.target() == remote.Target("vm2", "xdpscope")
    dlg.host.setEditText("-oProxyCommand=evil")
    dlg.accept()
    assert dlg.result() != ConnectDialog.DialogCode.Accepted and "expected [user@]host" in dlg.error.text()
    dlg.host.setEditText("bob@vm3")
    dlg.accept()
    assert dlg.result() == ConnectDialog.DialogCode.Accepted and dlg.target().host == "bob@vm3"
    s.setValue("remote/recent", "{not json")
    assert recent_hosts(s) == []


def test_describe_host():
    info = {"host": "vm1", "kernel": "6.1.0-31-amd64", "driver": "virtio_net", "iface": "ens4"}
    assert describe(info, "root@vm1", False) == (
        "xdpscope — root@vm1 (vm1 · Linux 6.1.0-31-amd64 · virtio_net ens4)",
        "root@vm1 (vm1 · Linux 6.1.0-31-amd64 · virtio_net ens4)")
    assert describe(info, "root@vm1", True) == ("xdpscope — root@vm1: connection lost", "root@vm1: connection lost")
    assert describe({"host": "here", "kernel": "6.18"}, None, False) == ("xdpscope — here · Linux 6.18",
                                                                         "this machine: here · Linux 6.18")


def test_back_to_this_machine(qtbot, tmp_path, monkeypatch):
    """A remote that cannot be reached, then File → Use this machine: the local agent again."""
    monkeypatch.setenv("XDPSCOPE_SSH", "/nonexistent/ssh")
    local = [fake_agent_command(tmp_path)]
    w = MainWindow(settings=settings(tmp_path), agent_commands=local)
    qtbot.addWidget(w)
    assert w.connect_remote("vm1")
    qtbot.waitUntil(lambda: w.session.state == "dead", timeout=10_000)
    assert w.sources_panel.agent_msg.text().startswith("cannot run '/nonexistent/ssh': install the OpenSSH client")
    w.connect_local()
    qtbot.waitUntil(lambda: w.session.state == "ready", timeout=15_000)
    assert w.remote is None and w.session.client.command == local[0] and w.session.client.target is None
    w.session.stop()
    qtbot.waitUntil(lambda: w.session.state == "stopped", timeout=10_000)


# -- over a real sshd -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the sshd tests need root (sshd, login as root)")
    with sshd_mod.sshd(tmp_path_factory.mktemp("sshd")) as s:
        yield s


def xdp_prog(iface: str) -> int:
    link = json.loads(subprocess.run(["ip", "-j", "-d", "link", "show", "dev", iface], check=True,
                                     capture_output=True, text=True).stdout)[0]
    return int(link.get("xdp", {}).get("prog", {}).get("id", 0))


@pytest.fixture
def window(qtbot, tmp_path, server, monkeypatch):
    monkeypatch.setenv("XDPSCOPE_SSH", server.ssh_env())
    w = MainWindow(settings=settings(tmp_path))
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.session is not None and w.session.client.running:
        w.session.client.proc.kill()
        w.session.client.proc.waitForFinished(1000)


@pytest.mark.kernel
def test_connect_attach_lose_reconnect(qtbot, window, lab):
    w = window
    assert w.connect_remote("root@127.0.0.1", REMOTE_XDPSCOPE)
    qtbot.waitUntil(lambda: w.session.state == "ready", timeout=60_000)
    assert w.session.client.command[0] == "ssh" and "root@127.0.0.1" in w.session.client.command
    qtbot.waitUntil(lambda: "Linux" in w.windowTitle(), timeout=10_000)  # the hello answer
    here = f"root@127.0.0.1 ({socket.gethostname()} · Linux {platform.release()}"
    assert w.windowTitle().startswith(f"xdpscope — {here}") and w.host_label.text().startswith(here)
    assert recent_hosts(w.settings)[0] == {"host": "root@127.0.0.1", "xdpscope": REMOTE_XDPSCOPE}

    samples = []
    w.live.sig_sample.connect(samples.append)
    w.session.attach({"iface": lab.ingress, "program": "redirect", "targets": lab.targets[:2], "hz": 20})
    qtbot.waitUntil(lambda: w.session.attached, timeout=60_000)
    assert w.windowTitle().endswith(f"veth {lab.ingress})") and w.source is w.live
    prog = xdp_prog(lab.ingress)
    assert prog != 0
    done = []
    w.session.client.request("inject", lambda ok, r: done.append((ok, r)), iface=lab.ingress, count=6400, batch=64)
    qtbot.waitUntil(lambda: bool(done), timeout=60_000)
    assert done[0][0] and done[0][1]["frames"] == 6400
    redirected = lambda: sum(s.verdict_totals()[4] for s in samples)  # noqa: E731
    qtbot.waitUntil(lambda: redirected() >= 6400, timeout=10_000)
    assert redirected() == 6400
    assert {t: sum(s.target_totals().get(t, 0) for s in samples) for t in lab.targets[:2]} == \
        {lab.targets[0]: 3200, lab.targets[1]: 3200}
    assert len(w.live.model.history) > 0

    os.kill(w.session.client.proc.processId(), signal.SIGKILL)  # the ssh client dies: the link is gone
    qtbot.waitUntil(lambda: "connection lost" in w.host_label.text(), timeout=30_000)
    assert w.windowTitle() == "xdpscope — root@127.0.0.1: connection lost"
    assert w.session.state == "dead" and "connection lost" in w.sources_panel.agent_msg.text()
    assert w.reconnect_action.isEnabled() and not w.reconnect_button.isHidden()
    assert not w.session.attached
    qtbot.waitUntil(lambda: xdp_prog(lab.ingress) == 0, timeout=30_000)  # its bpf_link closed with the agent

    w.reconnect_action.trigger()
    qtbot.waitUntil(lambda: w.session.state == "ready", timeout=60_000)
    qtbot.waitUntil(lambda: "Linux" in w.windowTitle(), timeout=10_000)
    assert "connection lost" not in w.windowTitle() and not w.reconnect_action.isEnabled()
    w.session.stop()
    qtbot.waitUntil(lambda: w.session.state == "stopped", timeout=10_000)
    assert "connection lost" not in w.host_label.text()


@pytest.mark.kernel
def test_remote_without_xdpscope_is_explained(qtbot, window):
    w = window
    assert w.connect_remote("root@127.0.0.1", "/nonexistent/xdpscope")
    qtbot.waitUntil(lambda: w.session.state == "dead", timeout=30_000)
    assert w.sources_panel.agent_msg.text() == ("root@127.0.0.1: no xdpscope at /nonexistent/xdpscope: install it "
                                                "there (clone it and run `make setup`) or pass the right "
                                                "--remote-xdpscope PATH")
    assert not w.reconnect_action.isEnabled()  # never connected: nothing was lost
