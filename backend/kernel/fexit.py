"""Exact verdicts of a program we did not load: a BPF program on fexit of it (as xdpdump and pwru
do) counts each return value, per CPU, in a per-CPU array. Needs BPF trampolines and the watched
program's BTF (its main function's type); where the kernel refuses (this host: EPERM) the session
falls back to the driver's counters (backend/data/verdicts.py).

The counting program is fourteen instructions, loaded without a compiler:
    r2 = ctx[1]                      the return value (one argument: struct xdp_md *)
    if r2 > 4: r2 = 5                an action outside 0..4 (the kernel treats it as ABORTED)
    key = (u32)r2; v = lookup(map, &key); if v: *v += 1
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from backend.kernel import bpfsys

BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_FEXIT = 25               # enum bpf_attach_type
BPF_MAP_TYPE_PERCPU_ARRAY = 6
SLOTS = 6                          # verdicts 0..4, 5 = outside 0..4
_LD_IMM64, _PSEUDO_MAP_FD = 0x18, 1


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> int:
    return code | (dst << 8) | (src << 12) | ((off & 0xFFFF) << 16) | ((imm & 0xFFFFFFFF) << 32)


def program(map_fd: int) -> list[int]:
    return [
        _insn(0x79, 2, 1, 8),                         # r2 = *(u64 *)(r1 + 8)
        _insn(0xA5, 2, 0, 1, 5),                      # if r2 < 5 goto +1
        _insn(0xB7, 2, 0, 0, 5),                      # r2 = 5
        _insn(0x63, 10, 2, -4),                       # *(u32 *)(r10 - 4) = r2
        _insn(0xBF, 2, 10),                           # r2 = r10
        _insn(0x07, 2, 0, 0, -4),                     # r2 += -4
        _insn(_LD_IMM64, 1, _PSEUDO_MAP_FD, 0, map_fd), 0,   # r1 = map
        _insn(0x85, 0, 0, 0, 1),                      # call bpf_map_lookup_elem
        _insn(0x15, 0, 0, 3, 0),                      # if r0 == 0 goto +3
        _insn(0x79, 1, 0, 0),                         # r1 = *(u64 *)(r0 + 0)
        _insn(0x07, 1, 0, 0, 1),                      # r1 += 1
        _insn(0x7B, 0, 1, 0),                         # *(u64 *)(r0 + 0) = r1
        _insn(0xB7, 0, 0, 0, 0),                      # r0 = 0
        _insn(0x95),                                  # exit
    ]


def main_func_btf_id(prog_fd: int) -> int:
    """The BTF type id of the program's main function (func_info at instruction 0); 0 when the
    program carries no BTF (loaded without -g): fexit cannot name it then."""
    info = bpfsys.prog_info(prog_fd)
    if not info.btf_id or not info.nr_func_info:
        return 0
    recs = (ctypes.c_uint32 * (2 * info.nr_func_info))()
    info2 = bpfsys.ProgInfo(nr_func_info=info.nr_func_info, func_info_rec_size=8,
                            func_info=ctypes.addressof(recs))
    size = ctypes.c_uint32(ctypes.sizeof(info2))
    if bpfsys.lib().bpf_obj_get_info_by_fd(prog_fd, ctypes.byref(info2), ctypes.byref(size)) != 0:
        return 0
    return next((recs[2 * i + 1] for i in range(info.nr_func_info) if recs[2 * i] == 0), 0)


@dataclass
class Fexit:
    """A counting program on fexit of a watched program; close() detaches it."""
    map_fd: int
    prog_fd: int
    link_fd: int
    ncpus: int

    def read(self) -> list[list[int]]:
        """Per CPU, per verdict (VERDICTS order): the returns counted so far; an action outside
        0..4 is counted as ABORTED, as the kernel treats it."""
        lib = bpfsys.lib()
        per_slot = []
        for k in range(SLOTS):
            key, vals = ctypes.c_uint32(k), (ctypes.c_uint64 * self.ncpus)()
            if lib.bpf_map_lookup_elem(self.map_fd, ctypes.byref(key), vals) != 0:
                raise OSError(ctypes.get_errno(), "fexit counters: lookup failed")
            per_slot.append(list(vals))
        return [[per_slot[0][c] + per_slot[5][c], *(per_slot[a][c] for a in range(1, 5))] for c in range(self.ncpus)]

    def close(self) -> None:
        for name in ("link_fd", "prog_fd", "map_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)


def possible_cpus() -> int:
    """Per-CPU map values come for every possible CPU."""
    with open("/sys/devices/system/cpu/possible") as f:
        return int(f.read().strip().split(",")[-1].split("-")[-1]) + 1


def attach(watched_fd: int) -> Fexit:
    """Count the returns of the watched program. OSError (with the kernel's errno) when the kernel
    or the program does not allow it: EPERM/ENOTSUPP without trampolines, ENOENT without BTF."""
    lib = bpfsys.lib()
    lib.bpf_map_create.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32,
                                   ctypes.c_uint32, ctypes.c_void_p]
    lib.bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.bpf_raw_tracepoint_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
    btf_id = main_func_btf_id(watched_fd)
    if not btf_id:
        raise OSError(2, "the watched program has no BTF function info")
    map_fd = bpfsys._check(lib.bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, b"xs_fexit", 4, 8, SLOTS, None))
    fx = Fexit(map_fd, -1, -1, possible_cpus())
    try:
        insns = program(map_fd)
        code = (ctypes.c_uint64 * len(insns))(*insns)
        opts = bpfsys.ProgLoadOpts(sz=ctypes.sizeof(bpfsys.ProgLoadOpts), expected_attach_type=BPF_TRACE_FEXIT,
                         attach_btf_id=btf_id, attach_prog_fd=watched_fd)
        lib.bpf_prog_load.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                                      ctypes.c_size_t, ctypes.c_void_p]
        fx.prog_fd = bpfsys._check(lib.bpf_prog_load(BPF_PROG_TYPE_TRACING, b"xs_fexit", b"GPL", code,
                                                     len(insns), ctypes.byref(opts)))
        fx.link_fd = bpfsys._check(lib.bpf_raw_tracepoint_open(None, fx.prog_fd))
    except BaseException:
        fx.close()
        raise
    return fx
