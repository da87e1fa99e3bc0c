"""Attach an XDP program to an interface through a bpf_link (gone when the process dies)."""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from backend.kernel import bpfsys, nic
from backend.kernel.compile import compile_bpf, release
from backend.errors import XdpscopeError

MODES = {"native": bpfsys.XDP_FLAGS_DRV_MODE, "generic": bpfsys.XDP_FLAGS_SKB_MODE}

_EXTACK_PROBE = r"""
#include <uapi/linux/bpf.h>
struct msg { char text[200]; };
BPF_ARRAY(xs_extack, struct msg, 1);
TRACEPOINT_PROBE(xdp, bpf_xdp_link_attach_failed)
{
    int k = 0;
    struct msg *m = xs_extack.lookup(&k);
    if (m)
        bpf_probe_read_kernel_str(m->text, sizeof(m->text), (char *)args + (args->data_loc_msg & 0xFFFF));
    return 0;
}
"""


@dataclass
class Attachment:
    link_fd: int
    iface: str
    ifindex: int
    mode: str          # native | generic: what is in force
    note: str          # why auto fell back, else ""

    def close(self) -> None:
        if self.link_fd >= 0:
            os.close(self.link_fd)
            self.link_fd = -1


def check_allowed(iface: nic.Interface, program: str, force: bool) -> None:
    """Only PASS may go on the interface that carries the default route, unless forced."""
    if iface.default_route and program != "pass" and not force:
        raise XdpscopeError(f"{iface.name} carries the default route: only 'pass' may be attached "
                            "to it (use --force if you really mean it)")


def check_target(iface: nic.Interface, force: bool) -> None:
    """The same rule for redirect targets (and --prepare-targets, which attaches to them): nothing
    is redirected to the interface that carries the default route, unless forced."""
    if iface.default_route and not force:
        raise XdpscopeError(f"{iface.name} carries the default route: it cannot be a redirect target "
                            "(use --force if you really mean it)")


def _driver_reason(prog_fd: int, ifindex: int, flags: int) -> str:
    """Repeat the refused attach with the link-attach-failure tracepoint on, to read the
    driver's own extack message (bpf_link attach does not return it to user space)."""
    bpf = None
    try:
        bpf = compile_bpf(_EXTACK_PROBE, [], "extack probe")
        try:
            fd = bpfsys.xdp_link_create(prog_fd, ifindex, flags)
            os.close(fd)  # unexpectedly succeeded this time
            return ""
        except OSError:
            pass
        return bpf[b"xs_extack"][0].text.decode(errors="replace")
    except Exception:  # the reason is a courtesy; never let it hide the real error
        return ""
    finally:
        release(bpf)


def _try(prog_fd: int, iface: nic.Interface, mode: str) -> tuple[int, str]:
    """(link fd, "") or (-1, reason)."""
    try:
        return bpfsys.xdp_link_create(prog_fd, iface.ifindex, MODES[mode]), ""
    except OSError as e:
        reason = f"{errno.errorcode.get(e.errno, e.errno)}: {e.strerror}"
        if e.errno == errno.EBUSY:
            reason += " (another XDP program is attached; xdpscope watch observes it without replacing it)"
        msg = _driver_reason(prog_fd, iface.ifindex, MODES[mode])
        return -1, f"{reason}; driver says: {msg}" if msg else reason


def attach(prog_fd: int, iface: nic.Interface, mode: str) -> Attachment:
    """mode: native | generic | auto (native, else generic, saying why)."""
    if mode not in ("auto", *MODES):
        raise XdpscopeError(f"unknown mode '{mode}' (choose auto, native or generic)")
    first = "native" if mode == "auto" else mode
    fd, why = _try(prog_fd, iface, first)
    if fd >= 0:
        return Attachment(fd, iface.name, iface.ifindex, first, "")
    if mode != "auto":
        raise XdpscopeError(f"{iface.name} ({iface.driver}): {mode} XDP attach refused: {why}")
    fd, why2 = _try(prog_fd, iface, "generic")
    if fd < 0:
        raise XdpscopeError(f"{iface.name} ({iface.driver}): XDP attach refused: native: {why}; generic: {why2}")
    return Attachment(fd, iface.name, iface.ifindex, "generic", f"native refused ({why}); using generic")
