"""XDP_TX through veth's driver path when the ingress's peer has GRO but no XDP program: veth puts
the frames in the peer's receive ring and does not schedule the peer's NAPI (veth_xdp_flush), so the
ring fills (256 frames) and the rest fail as xdp_tx_errors. xdpscope's verdicts, driver counters and
findings say so; the oracles are the program's frames sent and `ethtool -S` of both ends, read here."""
from __future__ import annotations

import subprocess
import time

import pytest

from backend.data.findings import findings
from tests.test_engine import by_verdict
from tests.test_user_programs import _frame, _send

pytestmark = pytest.mark.kernel
RING = 256   # veth's VETH_RING_SIZE


def ethtool(dev: str, netns: str | None = None) -> dict[str, int]:
    cmd = ["ethtool", "-S", dev] if netns is None else ["ip", "netns", "exec", netns, "ethtool", "-S", dev]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    pairs = (line.split(":", 1) for line in out.splitlines()[1:] if ":" in line)
    return {k.strip(): int(v) for k, v in pairs if v.strip().isdigit()}


def test_tx_to_a_gro_only_peer_fills_its_ring_and_the_finding_says_why(record, lab):
    before, peer_before = ethtool(lab.ingress), ethtool(lab.ingress_peer, lab.netns)
    rec = record("--iface", lab.ingress, "--program", "tx", "--hz", "20")
    _send(lab, [(_frame(0x0800, 17), 400)])
    time.sleep(0.3)
    assert rec.stop() == 0
    s = rec.summary()
    after, peer_after = ethtool(lab.ingress), ethtool(lab.ingress_peer, lab.netns)
    sent = after["rx_queue_0_xdp_tx"] - before["rx_queue_0_xdp_tx"]
    failed = after["rx_queue_0_xdp_tx_errors"] - before["rx_queue_0_xdp_tx_errors"]
    assert s["actions"] == by_verdict(TX=400)
    assert (sent, failed) == (RING, 400 - RING)                  # the ring took 256, nobody emptied it
    assert s["driver_counters"]["rx_queue_0_xdp_tx"] == sent
    assert s["driver_counters"]["rx_queue_0_xdp_tx_errors"] == failed
    received = peer_after.get("rx_queue_0_xdp_packets", 0) - peer_before.get("rx_queue_0_xdp_packets", 0)
    assert received == 0                                         # the peer's NAPI never ran
    text = [f for f in findings(s) if f.startswith("TX failures")]
    assert text == [f"TX failures: veth could not send {failed} of the 400 XDP_TX frames of {lab.ingress} "
                    "(its xdp_tx_errors). veth hands XDP_TX frames to its peer's receive ring (256 frames) and "
                    "drops what does not fit; it schedules the peer's NAPI after an XDP_TX only if the peer has an "
                    "XDP program of its own, so with GRO alone the ring is not emptied until something else polls "
                    "the peer."]
