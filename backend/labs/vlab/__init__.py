"""The QEMU virtio_net lab (docs/vlab.md): a TCG guest with virtio-net-pci NICs fed from host-side
taps, so frames reach a real virtio_net driver's receive path.

    host.py          the lab namespace, taps, the guest booted with virtme-ng, its state; run() in the guest
    rpc.py           the spool between host and guest (both sides)
    guest.py         the guest agent (virtme-ng's --exec command)
    traffic.py       frames written into a tap, counted where they come out: send(), tap_stats()
    checks.py        a counting check program, attach tries, `xdpscope record` in the guest, NAPI log
    guest_checks.py  the check programs' guest side (bcc; the attach try through backend/kernel/bpfsys)
    cli.py           `xdpscope vlab ...`

From Python: `from backend.labs import vlab; vlab.up(vlab.Config()); vlab.run([...]); vlab.down()`.
"""
from backend.labs.vlab.checks import (GuestRecord, attach_check, guest_rx_packets, napi_trace_start, napi_trace_stop,
                                      pin_rx_irqs, record, wait_rx, xdp_check, xdpscope)
from backend.labs.vlab.cli import cli, parser
from backend.labs.vlab.host import (DEVICE_OPTS, GUEST_PYTHON, NETNS, ROOT, STATE_DIR, Config, Lab,
                                    check_prerequisites, down, guest_nic, netns_exists, qemu_opts, run, start,
                                    status, up, wait)
from backend.labs.vlab.traffic import send, tap_stats

__all__ = ["DEVICE_OPTS", "GUEST_PYTHON", "NETNS", "ROOT", "STATE_DIR", "Config", "GuestRecord", "Lab",
           "attach_check", "check_prerequisites", "cli", "down", "guest_nic", "guest_rx_packets",
           "napi_trace_start", "napi_trace_stop", "netns_exists", "parser", "pin_rx_irqs", "qemu_opts", "record",
           "run", "send", "start", "status", "tap_stats", "up", "wait", "wait_rx", "xdp_check", "xdpscope"]
