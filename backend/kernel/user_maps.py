"""A user program's own maps, sampled as counters (`dropcnt` per IP protocol in bcc's examples).

Which maps qualify: arrays, per-CPU arrays and hashes (plain, per-CPU, LRU) whose key and value
are integers of 1, 2, 4 or 8 bytes (bcc's type description says which, and whether signed), with
at most MAX_KEYS entries; at most MAX_MAPS of them. Every other map is listed with the reason it
is not sampled. A map is read whole with one BPF_MAP_LOOKUP_BATCH per sample (not one syscall
per key); per-CPU values are summed over the CPUs. The collector takes deltas as of every other
counter, so a total is the change of the value over the session (a counter's count).
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
from dataclasses import dataclass

from backend.kernel import bpfsys, host

MAX_KEYS = 256       # entries of one sampled map
MAX_MAPS = 16        # sampled maps of one program
# enum bpf_map_type -> (name, per-CPU values)
TYPES = {1: ("hash", False), 2: ("array", False), 5: ("percpu_hash", True), 6: ("percpu_array", True),
         9: ("lru_hash", False), 10: ("lru_percpu_hash", True)}
OWN_PREFIX = "xs_"   # xdpscope's own maps in the program (bpf/xdpscope.h)
_INTS = {"char": True, "signed char": True, "unsigned char": False, "short": True, "unsigned short": False,
         "int": True, "unsigned int": False, "long": True, "unsigned long": False, "long long": True,
         "unsigned long long": False, "_Bool": False, "bool": False}
for _bits in (8, 16, 32, 64):
    _INTS.update({f"int{_bits}_t": True, f"uint{_bits}_t": False, f"__s{_bits}": True, f"__u{_bits}": False,
                  f"s{_bits}": True, f"u{_bits}": False})


@dataclass
class MapDesc:
    """What bcc knows of one map of the module."""
    name: str
    type_id: int
    key_size: int
    value_size: int
    max_entries: int
    key_desc: str        # bcc's JSON type description, e.g. '"unsigned int"'
    value_desc: str
    fd: int


@dataclass
class UserMap:
    """A map that is sampled: read() -> {key: value summed over CPUs}."""
    name: str
    kind: str            # TYPES name
    fd: int
    key_size: int
    value_size: int
    max_entries: int
    key_signed: bool
    value_signed: bool
    percpu: bool
    ncpus: int = 1

    def read(self) -> dict[int, int]:
        keys, values, count = _lookup_batch(self.fd, self.key_size, self._stride() * self._copies(),
                                            self.max_entries)
        return decode(keys, values, count, self.key_size, self.value_size, self._copies(),
                      self.key_signed, self.value_signed)

    def _copies(self) -> int:
        return self.ncpus if self.percpu else 1

    def _stride(self) -> int:
        """Bytes of one CPU's value in a batch: per-CPU values are padded to 8 bytes each."""
        return (self.value_size + 7) // 8 * 8 if self.percpu else self.value_size

    def to_dict(self) -> dict:
        return {"type": self.kind, "key_size": self.key_size, "value_size": self.value_size,
                "max_entries": self.max_entries}


def decode(keys: bytes, values: bytes, count: int, key_size: int, value_size: int, copies: int,
           key_signed: bool, value_signed: bool) -> dict[int, int]:
    """A batch's keys and values -> {key: value}; `copies` per-CPU values per key (each padded to
    8 bytes when copies > 1, as the kernel copies them), summed."""
    stride = (value_size + 7) // 8 * 8 if copies > 1 else value_size
    out: dict[int, int] = {}
    for i in range(count):
        key = int.from_bytes(keys[i * key_size:(i + 1) * key_size], "little", signed=key_signed)
        base = i * stride * copies
        out[key] = sum(int.from_bytes(values[base + c * stride:base + c * stride + value_size], "little",
                                      signed=value_signed) for c in range(copies))
    return out


def _lookup_batch(fd: int, key_size: int, value_bytes: int, max_entries: int) -> tuple[bytes, bytes, int]:
    """Every entry of the map with BPF_MAP_LOOKUP_BATCH (arrays and hashes, kernel 5.6+)."""
    lib = bpfsys.lib()
    fn = lib.bpf_map_lookup_batch
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                   ctypes.POINTER(ctypes.c_uint32), ctypes.c_void_p]
    keys = ctypes.create_string_buffer(key_size * max_entries)
    values = ctypes.create_string_buffer(value_bytes * max_entries)
    token_in, token_out = ctypes.c_uint64(0), ctypes.c_uint64(0)   # the kernel's batch position (u32 here)
    total, first = 0, True
    while total < max_entries:
        count = ctypes.c_uint32(max_entries - total)
        ret = fn(fd, None if first else ctypes.byref(token_in), ctypes.byref(token_out),
                 ctypes.addressof(keys) + total * key_size, ctypes.addressof(values) + total * value_bytes,
                 ctypes.byref(count), None)
        total += count.value
        if ret < 0 and -ret == errno.ENOENT:      # the end of the map
            break
        if ret < 0:
            raise OSError(-ret, os.strerror(-ret))
        token_in.value, first = token_out.value, False
    return keys.raw, values.raw, total


def _int_type(desc: str) -> bool | None:
    """Signedness of bcc's description of an integer type; None if it is not one."""
    try:
        t = json.loads(desc)
    except ValueError:
        return None
    return _INTS.get(" ".join(t.split())) if isinstance(t, str) else None


def describe(bpf) -> list[MapDesc]:
    """Every map of a bcc module, from bcc's own table list."""
    lib = host.bcc_lib()
    out = []
    for i in range(lib.bpf_num_tables(bpf.module)):
        raw = lib.bpf_table_name(bpf.module, i)
        out.append(MapDesc(raw.decode(errors="replace"), lib.bpf_table_type_id(bpf.module, i),
                           lib.bpf_table_key_size_id(bpf.module, i), lib.bpf_table_leaf_size_id(bpf.module, i),
                           lib.bpf_table_max_entries_id(bpf.module, i),
                           (lib.bpf_table_key_desc(bpf.module, raw) or b"").decode(errors="replace"),
                           (lib.bpf_table_leaf_desc(bpf.module, raw) or b"").decode(errors="replace"),
                           lib.bpf_table_fd_id(bpf.module, i)))
    return out


def select(maps: list[MapDesc], ncpus: int) -> tuple[list[UserMap], dict[str, str]]:
    """The maps sampled as counters, and why each other map of the user's is not."""
    sampled: list[UserMap] = []
    skipped: dict[str, str] = {}
    for m in maps:
        if m.name.startswith(OWN_PREFIX):
            continue
        why = _why_not(m)
        if why is None and len(sampled) >= MAX_MAPS:
            why = f"more than {MAX_MAPS} maps qualify: the first {MAX_MAPS} are sampled"
        if why is not None:
            skipped[m.name] = why
            continue
        kind, percpu = TYPES[m.type_id]
        sampled.append(UserMap(m.name, kind, m.fd, m.key_size, m.value_size, m.max_entries,
                               bool(_int_type(m.key_desc)), bool(_int_type(m.value_desc)), percpu,
                               ncpus if percpu else 1))
    return sampled, skipped


def _why_not(m: MapDesc) -> str | None:
    if m.type_id not in TYPES:
        return f"map type {m.type_id} is not an array or hash"
    if m.key_size not in (1, 2, 4, 8) or _int_type(m.key_desc) is None:
        return f"its key is not an integer ({m.key_desc or m.key_size})"
    if m.value_size not in (1, 2, 4, 8) or _int_type(m.value_desc) is None:
        return f"its value is not an integer ({m.value_desc or m.value_size})"
    if m.max_entries > MAX_KEYS:
        return f"{m.max_entries} entries: at most {MAX_KEYS} are sampled"
    return None


def possible_cpus() -> int:
    """Per-CPU map values come for every possible CPU (not only the online ones)."""
    return len(host.import_bcc().utils.get_possible_cpus())


def read_all(maps: list[UserMap]) -> dict[tuple, int]:
    """Raw cumulative counters of the sampled maps: ("user_maps", map, key as decimal) -> value.
    A key that left a hash map is absent: its delta is not taken (the collector keeps the last)."""
    return {("user_maps", m.name, str(k)): v for m in maps for k, v in m.read().items()}
