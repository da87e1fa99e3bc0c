"""The few libbpf calls bcc does not offer, through ctypes on Debian's libbpf.so.1.

bpf_link attach for XDP (the program leaves the interface when the last fd closes, even on
SIGKILL), BPF_PROG_TEST_RUN with live frames, program lookup by id, and BPF run statistics.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

BPF_XDP = 37                      # enum bpf_attach_type
BPF_PROG_TYPE_XDP = 6
BPF_STATS_RUN_TIME = 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
XDP_FLAGS_SKB_MODE = 1 << 1       # generic
XDP_FLAGS_DRV_MODE = 1 << 2       # native


class LinkCreateOpts(ctypes.Structure):
    # Leading members of struct bpf_link_create_opts; libbpf accepts a shorter sz (older callers).
    _fields_ = [("sz", ctypes.c_size_t), ("flags", ctypes.c_uint32)]


class TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p), ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32), ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32), ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32),
    ]


class XdpMd(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in
                ("data", "data_end", "data_meta", "ingress_ifindex", "rx_queue_index", "egress_ifindex")]


class ProgInfo(ctypes.Structure):
    """struct bpf_prog_info up to verified_insns (pointer members stay 0: nothing is copied out)."""
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16), ("ifindex", ctypes.c_uint32), ("gpl_compatible", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64), ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32), ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64), ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32), ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64), ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32), ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64), ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32), ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32), ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64), ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64), ("verified_insns", ctypes.c_uint32),
    ]


_lib: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        _lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
        _lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(LinkCreateOpts)]
        _lib.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(TestRunOpts)]
        _lib.bpf_prog_get_fd_by_id.argtypes = [ctypes.c_uint32]
        _lib.bpf_enable_stats.argtypes = [ctypes.c_int]
        _lib.bpf_prog_load.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                                        ctypes.c_size_t, ctypes.c_void_p]
        _lib.bpf_obj_get_info_by_fd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
    return _lib


def _check(ret: int) -> int:
    """libbpf returns -errno on failure; raise OSError with the errno."""
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret))
    return ret


def xdp_link_create(prog_fd: int, ifindex: int, flags: int) -> int:
    """Attach an XDP program through a bpf_link; returns the link fd."""
    opts = LinkCreateOpts(sz=ctypes.sizeof(LinkCreateOpts), flags=flags)
    return _check(lib().bpf_link_create(prog_fd, ifindex, BPF_XDP, ctypes.byref(opts)))


def load_xdp_pass(name: bytes = b"xs_pass") -> int:
    """A two-instruction XDP program, `r0 = XDP_PASS; exit`, loaded without a compiler; returns its fd."""
    insns = (ctypes.c_uint64 * 2)(0xB7 | (2 << 32), 0x95)  # BPF_ALU64|BPF_MOV|BPF_K r0 = 2; BPF_JMP|BPF_EXIT
    return _check(lib().bpf_prog_load(BPF_PROG_TYPE_XDP, name, b"GPL", insns, 2, None))


def prog_fd_by_id(prog_id: int) -> int:
    return _check(lib().bpf_prog_get_fd_by_id(prog_id))


def enable_run_stats() -> int:
    """Turn on kernel BPF run-time statistics while the returned fd stays open."""
    return _check(lib().bpf_enable_stats(BPF_STATS_RUN_TIME))


def prog_info(prog_fd: int, info: ProgInfo | None = None) -> ProgInfo:
    """The program's info; into `info` when given (a collector reads run stats at 100 Hz)."""
    if info is None:
        info = ProgInfo()
    else:
        ctypes.memset(ctypes.addressof(info), 0, ctypes.sizeof(info))   # the kernel wants pointers 0
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(lib().bpf_obj_get_info_by_fd(prog_fd, ctypes.byref(info), ctypes.byref(size)))
    return info


def prog_ids():
    """Ids of every BPF program loaded on the machine (BPF_PROG_GET_NEXT_ID), ascending."""
    nxt = ctypes.c_uint32(0)
    while lib().bpf_prog_get_next_id(nxt.value, ctypes.byref(nxt)) == 0:
        yield nxt.value


def map_id(map_fd: int) -> int:
    """Kernel id of a map (the second member of struct bpf_map_info)."""
    info = (ctypes.c_uint32 * 32)()  # bpf_map_info is smaller than 128 bytes in every kernel
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(lib().bpf_obj_get_info_by_fd(map_fd, ctypes.byref(info), ctypes.byref(size)))
    return info[1]


def xdp_live_run(prog_fd: int, frame: bytes, repeat: int, batch: int, ingress_ifindex: int) -> None:
    """Run the program on `repeat` copies of frame as live frames: verdicts are carried out
    for real (redirects enqueue to devmaps; each batch ends with xdp_do_flush)."""
    buf = ctypes.create_string_buffer(frame, len(frame))
    ctx = XdpMd(data=0, data_end=len(frame), ingress_ifindex=ingress_ifindex)
    opts = TestRunOpts(
        sz=ctypes.sizeof(TestRunOpts), data_in=ctypes.cast(buf, ctypes.c_void_p).value,
        data_size_in=len(frame), ctx_in=ctypes.addressof(ctx), ctx_size_in=ctypes.sizeof(ctx),
        repeat=repeat, flags=BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=batch)
    _check(lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)))


ENOTSUPP = 524   # the kernel's own "operation not supported" (not in Python's errno)


class MapBatchOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


def possible_cpus() -> int:
    """CPUs a per-CPU map holds a value for (the kernel's num_possible_cpus)."""
    n = lib().libbpf_num_possible_cpus()
    return _check(n)


class BatchReader:
    """Reads a whole map with BPF_MAP_LOOKUP_BATCH (one syscall per `max_entries` elements) into
    buffers allocated once: keys and values stay in `keys` / `values` (raw bytes) after read().
    Per-CPU maps hold one value per possible CPU, each rounded up to 8 bytes."""

    def __init__(self, fd: int, key_size: int, value_size: int, max_entries: int, per_cpu: bool):
        self.fd = fd
        self.key_size = key_size
        self.stride = ((value_size + 7) // 8 * 8) * (possible_cpus() if per_cpu else 1)
        self.max = max_entries
        self.keys = ctypes.create_string_buffer(key_size * max_entries)
        self.values = ctypes.create_string_buffer(self.stride * max_entries)
        self._token = (ctypes.c_uint8 * max(8, key_size) * 2)()   # in/out batch positions
        self._count = ctypes.c_uint32()
        self._opts = MapBatchOpts(sz=ctypes.sizeof(MapBatchOpts))
        self._count_p, self._opts_p = ctypes.addressof(self._count), ctypes.addressof(self._opts)
        f = lib()["bpf_map_lookup_batch"]   # its own function object: addresses as plain ints
        f.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 6
        self._f = f
        self._batch = True
        self._tok_out = ctypes.addressof(self._token[1])
        self._base_k, self._base_v = ctypes.addressof(self.keys), ctypes.addressof(self.values)
        lib().bpf_map_get_next_key.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib().bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]

    def read(self) -> int:
        """Read every element; returns how many (their keys and values fill the buffers' fronts)."""
        if self._batch:   # most often the whole map in one call: the end (ENOENT), or every slot
            self._count.value = self.max
            ret = self._f(self.fd, None, self._tok_out, self._base_k, self._base_v, self._count_p, self._opts_p)
            if ret == -errno.ENOENT or ret == 0 and self._count.value == self.max:
                return self._count.value
            try:
                return self._read_batch()
            except OSError as e:
                if e.errno not in (errno.EINVAL, ENOTSUPP, errno.EOPNOTSUPP):
                    raise
                self._batch = False   # a kernel before 5.6: one lookup per key, same buffers
        return self._read_each()

    def _read_each(self) -> int:
        l, prev = lib(), ctypes.addressof(self._token[0])
        got, first = 0, True
        while got < self.max:
            k = ctypes.addressof(self.keys) + got * self.key_size
            if l.bpf_map_get_next_key(self.fd, None if first else prev, k) != 0:
                break
            ctypes.memmove(prev, k, self.key_size)
            first = False
            if l.bpf_map_lookup_elem(self.fd, k, ctypes.addressof(self.values) + got * self.stride) == 0:
                got += 1   # else it left the map meanwhile: its slot is reused
        return got

    def _read_batch(self) -> int:
        got, first = 0, True
        tok_in, tok_out = ctypes.addressof(self._token[0]), ctypes.addressof(self._token[1])
        base_k, base_v = ctypes.addressof(self.keys), ctypes.addressof(self.values)
        while got < self.max:
            self._count.value = self.max - got
            ret = self._f(self.fd, None if first else tok_in, tok_out, base_k + got * self.key_size,
                          base_v + got * self.stride, self._count_p, self._opts_p)
            got += self._count.value
            if ret == -errno.ENOENT:   # the end of the map
                break
            _check(ret)
            ctypes.memmove(tok_in, tok_out, ctypes.sizeof(self._token[0]))
            first = False
        return got


class ArraySlot:
    """Element 0 of an array map of u32, written through libbpf with buffers made once."""

    def __init__(self, fd: int, value: int):
        self.fd = fd
        self._key, self._value = ctypes.c_uint32(0), ctypes.c_uint32(value)
        self._args = (ctypes.addressof(self._key), ctypes.addressof(self._value))
        self._f = lib()["bpf_map_update_elem"]   # its own function object: addresses as plain ints
        self._f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]

    @property
    def value(self) -> int:
        return self._value.value

    def write(self, value: int) -> None:
        self._value.value = value & 0xFFFFFFFF
        _check(self._f(self.fd, *self._args, 0))


_MEMBARRIER = {"x86_64": 324, "aarch64": 283}
MEMBARRIER_CMD_GLOBAL = 1


def synchronize_rcu() -> bool:
    """Wait for an RCU grace period (membarrier(MEMBARRIER_CMD_GLOBAL) is synchronize_rcu()):
    every NAPI poll, XDP run and tracepoint under way when called has finished on return.
    False if the kernel refuses (nohz_full, unknown architecture)."""
    nr = _MEMBARRIER.get(os.uname().machine)
    if nr is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(nr, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0


BPF_MAP_TYPE_CPUMAP = 16


def prog_map_ids(prog_fd: int) -> list[int]:
    """Ids of the maps a program uses."""
    n = prog_info(prog_fd).nr_map_ids
    ids = (ctypes.c_uint32 * max(n, 1))()
    info = ProgInfo(nr_map_ids=n, map_ids=ctypes.addressof(ids))
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(lib().bpf_obj_get_info_by_fd(prog_fd, ctypes.byref(info), ctypes.byref(size)))
    return list(ids[:min(n, info.nr_map_ids)])


def map_type_by_id(map_id: int) -> int | None:
    """A map's type (enum bpf_map_type) by id; None if it is gone."""
    lib().bpf_map_get_fd_by_id.argtypes = [ctypes.c_uint32]
    fd = lib().bpf_map_get_fd_by_id(map_id)
    if fd < 0:
        return None
    try:
        info = (ctypes.c_uint32 * 32)()   # struct bpf_map_info starts with type, id
        size = ctypes.c_uint32(ctypes.sizeof(info))
        _check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)))
        return info[0]
    finally:
        os.close(fd)


def cpumaps_of(prog_fd: int) -> list[int]:
    """Ids of the cpumaps a program redirects through."""
    return [i for i in prog_map_ids(prog_fd) if map_type_by_id(i) == BPF_MAP_TYPE_CPUMAP]


# --- BTF of a program: what bcc gives the programs it loads, kept with compiler output -------------
FUNC_INFO_REC_SIZE = 8            # struct bpf_func_info {insn_off, type_id}
LINE_INFO_REC_SIZE = 16           # struct bpf_line_info {insn_off, file_name_off, line_off, line_col}


class ProgLoadOpts(ctypes.Structure):
    """libbpf 1.x struct bpf_prog_load_opts, up to log_buf (bpf/bpf.h)."""
    _fields_ = [("sz", ctypes.c_size_t), ("attempts", ctypes.c_int), ("expected_attach_type", ctypes.c_uint32),
                ("prog_btf_fd", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32), ("prog_ifindex", ctypes.c_uint32),
                ("kern_version", ctypes.c_uint32), ("attach_btf_id", ctypes.c_uint32),
                ("attach_prog_fd", ctypes.c_uint32), ("attach_btf_obj_fd", ctypes.c_uint32),
                ("fd_array", ctypes.c_void_p), ("func_info", ctypes.c_void_p), ("func_info_cnt", ctypes.c_uint32),
                ("func_info_rec_size", ctypes.c_uint32), ("line_info", ctypes.c_void_p),
                ("line_info_cnt", ctypes.c_uint32), ("line_info_rec_size", ctypes.c_uint32),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32), ("log_buf", ctypes.c_char_p)]


class BtfInfo(ctypes.Structure):
    """struct bpf_btf_info (linux/bpf.h)."""
    _fields_ = [("btf", ctypes.c_uint64), ("btf_size", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("name", ctypes.c_uint64), ("name_len", ctypes.c_uint32), ("kernel_btf", ctypes.c_uint32)]


def prog_load_btf(prog_type: int, name: bytes, license: bytes, insns: bytes, btf_fd: int,
                  func_info: bytes, line_info: bytes) -> int:
    """BPF_PROG_LOAD with the program's BTF (prog_btf_fd), func_info and line_info records, as bcc
    loads what it compiled; returns the program fd. Records are the uapi structs, packed."""
    opts = ProgLoadOpts(sz=ctypes.sizeof(ProgLoadOpts), prog_btf_fd=btf_fd,
                        func_info_cnt=len(func_info) // FUNC_INFO_REC_SIZE, func_info_rec_size=FUNC_INFO_REC_SIZE,
                        line_info_cnt=len(line_info) // LINE_INFO_REC_SIZE, line_info_rec_size=LINE_INFO_REC_SIZE)
    fi, li = ctypes.create_string_buffer(func_info, max(1, len(func_info))), \
        ctypes.create_string_buffer(line_info, max(1, len(line_info)))
    opts.func_info = ctypes.addressof(fi) if func_info else None
    opts.line_info = ctypes.addressof(li) if line_info else None
    return _check(lib().bpf_prog_load(prog_type, name, license, insns, len(insns) // 8, ctypes.byref(opts)))


def btf_load(blob: bytes) -> int:
    """BPF_BTF_LOAD: a BTF object from its raw form (the kernel checks it); returns its fd."""
    f = lib().bpf_btf_load
    f.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    return _check(f(blob, len(blob), None))


def btf_blob(btf_id: int) -> bytes:
    """The raw form of a loaded BTF object (BPF_BTF_GET_FD_BY_ID, then its info's btf buffer)."""
    lib().bpf_btf_get_fd_by_id.argtypes = [ctypes.c_uint32]
    fd = _check(lib().bpf_btf_get_fd_by_id(btf_id))
    try:
        info = BtfInfo()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        _check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)))
        buf = ctypes.create_string_buffer(info.btf_size)
        info = BtfInfo(btf=ctypes.addressof(buf), btf_size=info.btf_size)
        _check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)))
        return buf.raw[:info.btf_size]
    finally:
        os.close(fd)


def prog_btf_records(prog_fd: int) -> tuple[ProgInfo, bytes, bytes]:
    """The program's info and its func_info and line_info records as the kernel holds them (their
    insn_off count instructions of the verified, rewritten program). Records of another size than
    the uapi structs above come back empty."""
    info = prog_info(prog_fd)
    nf, nl = info.nr_func_info, info.nr_line_info
    if info.func_info_rec_size != FUNC_INFO_REC_SIZE or info.line_info_rec_size != LINE_INFO_REC_SIZE:
        return info, b"", b""
    fbuf = ctypes.create_string_buffer(max(1, nf * FUNC_INFO_REC_SIZE))
    lbuf = ctypes.create_string_buffer(max(1, nl * LINE_INFO_REC_SIZE))
    got = ProgInfo(nr_func_info=nf, func_info_rec_size=FUNC_INFO_REC_SIZE, func_info=ctypes.addressof(fbuf),
                   nr_line_info=nl, line_info_rec_size=LINE_INFO_REC_SIZE, line_info=ctypes.addressof(lbuf))
    size = ctypes.c_uint32(ctypes.sizeof(got))
    _check(lib().bpf_obj_get_info_by_fd(prog_fd, ctypes.byref(got), ctypes.byref(size)))
    return info, fbuf.raw[:min(nf, got.nr_func_info) * FUNC_INFO_REC_SIZE], \
        lbuf.raw[:min(nl, got.nr_line_info) * LINE_INFO_REC_SIZE]
