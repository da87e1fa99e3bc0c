"""Kernel struct member offsets from the running kernel's BTF (libbpf), so raw tracepoints can
read their arguments correctly whatever headers bcc compiled against."""
from __future__ import annotations

import ctypes
from functools import lru_cache

from backend.kernel import bpfsys

BTF_KIND_STRUCT, BTF_KIND_UNION = 4, 5


class _Type(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size_or_type", ctypes.c_uint32)]


class _Member(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32), ("offset", ctypes.c_uint32)]


@lru_cache(maxsize=1)
def _vmlinux():
    lib = bpfsys.lib()
    lib.btf__load_vmlinux_btf.restype = ctypes.c_void_p
    lib.btf__find_by_name_kind.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32]
    lib.btf__type_by_id.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.btf__type_by_id.restype = ctypes.POINTER(_Type)
    lib.btf__name_by_offset.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.btf__name_by_offset.restype = ctypes.c_char_p
    btf = lib.btf__load_vmlinux_btf()
    if not btf:
        raise OSError("no vmlinux BTF")
    return lib, btf


def _find(lib, btf, type_id: int, member: bytes) -> int | None:
    """Byte offset of member in the struct/union type_id, looking into anonymous members."""
    t = lib.btf__type_by_id(btf, type_id)
    kind, vlen, kflag = (t.contents.info >> 24) & 0x1F, t.contents.info & 0xFFFF, t.contents.info >> 31
    if kind not in (BTF_KIND_STRUCT, BTF_KIND_UNION):
        return None
    members = ctypes.cast(ctypes.addressof(t.contents) + ctypes.sizeof(_Type), ctypes.POINTER(_Member * vlen))
    for m in members.contents:
        bits = m.offset & 0xFFFFFF if kflag else m.offset
        name = lib.btf__name_by_offset(btf, m.name_off) or b""
        if name == member:
            return bits // 8
        if not name:  # anonymous struct/union: its members belong to the parent
            inner = _find(lib, btf, _resolve(lib, btf, m.type), member)
            if inner is not None:
                return bits // 8 + inner
    return None


def _resolve(lib, btf, type_id: int) -> int:
    """Skip typedef/const/volatile to the underlying type."""
    while True:
        t = lib.btf__type_by_id(btf, type_id)
        if ((t.contents.info >> 24) & 0x1F) not in (8, 9, 10, 11):  # typedef volatile const restrict
            return type_id
        type_id = t.contents.size_or_type


@lru_cache(maxsize=None)
def offset_of(struct: str, member: str) -> int | None:
    """offsetof(struct <struct>, <member>) in the running kernel, or None if unknown."""
    try:
        lib, btf = _vmlinux()
    except (OSError, AttributeError):
        return None
    tid = lib.btf__find_by_name_kind(btf, struct.encode(), BTF_KIND_STRUCT)
    return _find(lib, btf, tid, member.encode()) if tid > 0 else None


BTF_KIND_PTR, BTF_KIND_TYPEDEF, BTF_KIND_FUNC_PROTO = 2, 8, 13


@lru_cache(maxsize=None)
def raw_tracepoint_arity(name: str) -> int | None:
    """Arguments a raw tracepoint passes (its TP_PROTO, from the btf_trace_<name> typedef), or None."""
    try:
        lib, btf = _vmlinux()
    except (OSError, AttributeError):
        return None
    tid = lib.btf__find_by_name_kind(btf, f"btf_trace_{name}".encode(), BTF_KIND_TYPEDEF)
    if tid <= 0:
        return None
    t = lib.btf__type_by_id(btf, lib.btf__type_by_id(btf, tid).contents.size_or_type)  # the pointer
    if (t.contents.info >> 24) & 0x1F != BTF_KIND_PTR:
        return None
    proto = lib.btf__type_by_id(btf, t.contents.size_or_type)
    if (proto.contents.info >> 24) & 0x1F != BTF_KIND_FUNC_PROTO:
        return None
    return (proto.contents.info & 0xFFFF) - 1   # the first parameter is the probe's own data pointer
