#!/usr/bin/env python3
"""Try a native XDP attach on guest NICs and report what the kernel said (runs in the vlab guest).

  guest_attach.py vnic1 vnic4 [--mode native|generic] [--hold S]

No compiler involved (bcc under TCG takes tens of seconds): the program is two instructions,
`r0 = XDP_PASS; exit`, loaded with libbpf's bpf_prog_load and attached through a bpf_link
(BPF_LINK_CREATE), the way xdpscope attaches. Each NIC's link is closed again right away, or
after --hold seconds. Prints one JSON object: {nic: {"ok": bool, "errno": "EOPNOTSUPP", "error": str}}.
Stdlib + ctypes only.
"""
import argparse
import ctypes
import ctypes.util
import errno
import json
import os
import sys
import time

BPF_PROG_TYPE_XDP = 6
BPF_XDP = 37
XDP_FLAGS = {"generic": 1 << 1, "native": 1 << 2}
XDP_PASS = 2


class LinkCreateOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("flags", ctypes.c_uint32)]


def load_pass(lib):
    # struct bpf_insn {u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm}
    insns = (ctypes.c_uint64 * 2)(
        0xB7 | (XDP_PASS << 32),   # BPF_ALU64 | BPF_MOV | BPF_K: r0 = XDP_PASS
        0x95)                      # BPF_JMP | BPF_EXIT
    lib.bpf_prog_load.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                                  ctypes.c_size_t, ctypes.c_void_p]
    fd = lib.bpf_prog_load(BPF_PROG_TYPE_XDP, b"xs_vlab_pass", b"GPL", insns, 2, None)
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd))
    return fd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("nics", nargs="+")
    ap.add_argument("--mode", choices=list(XDP_FLAGS), default="native")
    ap.add_argument("--hold", type=float, default=0.0)
    a = ap.parse_args()
    lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
    lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(LinkCreateOpts)]
    prog = load_pass(lib)
    out, links = {}, []
    for nic in a.nics:
        with open(f"/sys/class/net/{nic}/ifindex") as f:
            ifindex = int(f.read())
        opts = LinkCreateOpts(sz=ctypes.sizeof(LinkCreateOpts), flags=XDP_FLAGS[a.mode])
        fd = lib.bpf_link_create(prog, ifindex, BPF_XDP, ctypes.byref(opts))
        if fd >= 0:
            out[nic] = {"ok": True, "errno": "", "error": ""}
            links.append(fd)
        else:
            # 95 is both ENOTSUP and EOPNOTSUPP on Linux; the kernel says EOPNOTSUPP
            name = "EOPNOTSUPP" if -fd == errno.EOPNOTSUPP else errno.errorcode.get(-fd, str(-fd))
            out[nic] = {"ok": False, "errno": name, "error": os.strerror(-fd)}
        if not a.hold:
            for fd in links:
                os.close(fd)
            links = []
    if links:
        time.sleep(a.hold)
        for fd in links:
            os.close(fd)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
