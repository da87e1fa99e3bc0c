"""A program xdpscope did not make, handled with other people's tools: built by clang, attached by
iproute2, its own truth map read with libbpf (tests/third_party/verdicts.c)."""
from __future__ import annotations

import ctypes
import os
import platform
import subprocess
from pathlib import Path

from backend.kernel import bpfsys

HERE = Path(__file__).resolve().parent
VERDICTS = ("ABORTED", "DROP", "PASS", "TX", "REDIRECT")


def build(out: Path, source: str = "verdicts.c", **defines: int) -> Path:
    """clang -target bpf, as a libbpf user builds (asm/ headers from the multiarch include dir)."""
    cmd = ["clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{platform.machine()}-linux-gnu",
           *[f"-D{k}={v}" for k, v in defines.items()], "-c", str(HERE / source), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def attach(iface: str, obj: Path, mode: str = "xdpdrv") -> int:
    """`ip link set dev IFACE xdpdrv|xdpgeneric obj OBJ sec xdp`; returns the program id."""
    subprocess.run(["ip", "link", "set", "dev", iface, mode, "obj", str(obj), "sec", "xdp"],
                   check=True, capture_output=True, text=True)
    return prog_id(iface)


def prog_id(iface: str) -> int:
    """The id of the XDP program on iface, as iproute2 tells it."""
    import json
    out = subprocess.run(["ip", "-j", "link", "show", "dev", iface], check=True, capture_output=True, text=True)
    link = json.loads(out.stdout)[0]
    return link.get("xdp", {}).get("prog", {}).get("id", 0)


def detach(iface: str, mode: str = "xdpdrv") -> None:
    subprocess.run(["ip", "link", "set", "dev", iface, mode, "off"], capture_output=True)


def _map_fd(prog_id: int, name: str) -> int:
    """The fd of the program's map called name, found through the program's map ids."""
    lib = bpfsys.lib()
    lib.bpf_map_get_fd_by_id.argtypes = [ctypes.c_uint32]
    prog = bpfsys.prog_fd_by_id(prog_id)
    try:
        ids = (ctypes.c_uint32 * 64)()
        info = bpfsys.ProgInfo(nr_map_ids=64, map_ids=ctypes.addressof(ids))
        size = ctypes.c_uint32(ctypes.sizeof(info))
        assert lib.bpf_obj_get_info_by_fd(prog, ctypes.byref(info), ctypes.byref(size)) == 0
    finally:
        os.close(prog)
    for map_id in ids[:info.nr_map_ids]:
        fd = lib.bpf_map_get_fd_by_id(map_id)
        raw = (ctypes.c_char * 128)()
        size = ctypes.c_uint32(128)
        assert fd >= 0 and lib.bpf_obj_get_info_by_fd(fd, raw, ctypes.byref(size)) == 0
        if raw.raw[24:40].split(b"\0")[0].decode() == name:    # struct bpf_map_info: name at 24
            return fd
        os.close(fd)
    raise AssertionError(f"program {prog_id} has no map {name}")


def read_percpu(prog_id: int, name: str, keys: int) -> list[list[int]]:
    """A per-CPU array of u64 of the program: [key][cpu]."""
    lib = bpfsys.lib()
    lib.bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    ncpu = int(Path("/sys/devices/system/cpu/possible").read_text().strip().split("-")[-1]) + 1
    fd = _map_fd(prog_id, name)
    try:
        out = []
        for k in range(keys):
            key, vals = ctypes.c_uint32(k), (ctypes.c_uint64 * ncpu)()
            assert lib.bpf_map_lookup_elem(fd, ctypes.byref(key), vals) == 0
            out.append(list(vals))
        return out
    finally:
        os.close(fd)


def truth(prog_id: int) -> dict[str, int]:
    """What verdicts.c says it returned, summed over the CPUs."""
    return {a: sum(per_cpu) for a, per_cpu in zip(VERDICTS, read_percpu(prog_id, "truth", len(VERDICTS)))}
