"""The uplink (the interface that carries the default route) is never offered as a redirect target:
the agent refuses it (backend/kernel/attach.py), so the panel does not tempt the user."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytestmark = pytest.mark.unit


def test_the_uplink_is_not_a_target(qtbot):
    from backend.agent import catalog
    from gui.sources_panel import SourcesPanel
    sp = SourcesPanel()
    qtbot.addWidget(sp)
    sp.set_catalog(catalog.answer())
    sp.set_interfaces([{"name": "eth0", "driver": "virtio_net", "default_route": True},
                       {"name": "xs-t0", "driver": "veth", "default_route": False},
                       {"name": "xs-t1", "driver": "veth"}])
    sp.program.setCurrentText("redirect")
    offered = [sp.targets.item(i).text() for i in range(sp.targets.count())]
    assert offered == ["xs-t0", "xs-t1"]
    shown = [sp.iface_tree.topLevelItem(i).text(0) for i in range(sp.iface_tree.topLevelItemCount())]
    assert "eth0" in shown   # still listed: PASS may be attached to it
