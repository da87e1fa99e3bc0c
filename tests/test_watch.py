"""Watch mode: a program someone else attached (here: bcc through netlink, as `ip link ... xdp`
would) is observed, not replaced; verdicts from the driver's counters, fan-out from xdp_redirect."""
from __future__ import annotations

import ctypes
import platform
import time

import pytest

from backend.data import verdicts
from backend.kernel import host, nic
from tests import wire
from tests.test_engine import by_verdict

pytestmark = pytest.mark.kernel

FOREIGN = """
BPF_DEVMAP(tx, 4);
BPF_ARRAY(seq, u32, 1);
int foreign(struct xdp_md *ctx) {
    int k = 0;
    u32 *n = seq.lookup(&k);
    if (!n) return XDP_ABORTED;
    u32 i = (*n)++;
    if (i % 4 == 0) return XDP_DROP;
    if (i % 4 == 1) return XDP_PASS;
    return tx.redirect_map(i % 2, 0);   /* i%4 == 2 -> slot 0, i%4 == 3 -> slot 1 */
}
"""


@pytest.fixture
def foreign(lab):
    bcc = host.import_bcc()
    host.use_headers()
    b = bcc.BPF(text=FOREIGN.encode())
    fn = b.load_func(b"foreign", bcc.BPF.XDP)
    for slot, t in enumerate(lab.targets[:2]):
        b[b"tx"][ctypes.c_int(slot)] = ctypes.c_int(lab.ifindex[t])
    b.attach_xdp(lab.ingress.encode(), fn, bcc.BPF.XDP_FLAGS_DRV_MODE)
    try:
        yield nic.interface(lab.ingress).xdp["prog_id"]
    finally:
        b.remove_xdp(lab.ingress.encode(), bcc.BPF.XDP_FLAGS_DRV_MODE)
        b.cleanup()


def test_watch_observes_without_replacing(record, lab, foreign):
    rec = record("--iface", lab.ingress, "--watch", "--hz", "20")
    assert nic.interface(lab.ingress).xdp["prog_id"] == foreign  # not replaced
    wire.send(lab, 800)  # through veth's receive path: the driver counts XDP
    time.sleep(0.3)
    assert rec.stop() == 0
    assert nic.interface(lab.ingress).xdp["prog_id"] == foreign  # still there after we left
    s = rec.summary()
    assert s["actions"] == by_verdict(DROP=200, PASS=200, REDIRECT=400)
    assert s["redirect_targets"] == {lab.targets[0]: 200, lab.targets[1]: 200}
    assert sum(s["devmap"][t]["sent"] for t in lab.targets[:2]) == 400
    assert s["program"].startswith("watch: foreign")
    release = verdicts.release_of(platform.release())
    assert s["verdict_method"] == s["meta"]["verdict_method"] == f"driver counters (veth, {release})"


def test_watch_needs_an_attached_program(lab, tmp_path):
    from tests.test_cli_errors import fails
    assert "no XDP program attached to watch" in fails("record", "--iface", lab.targets[2], "--watch",
                                                        "-o", str(tmp_path / "w.xst"))
