"""Compiler output kept for the process's lifetime (the agent's), keyed by (source text, cflags,
kernel release), and a program compiled while the probes compile.

bcc compiles C with clang on every session: ~0.5-1.3 s for a program, ~0.3-0.5 s for the probes on
this machine. What is kept is the compiler's output only: each function's bytecode and each map's
definition (sizes, flags, bcc's key and value type descriptions), and the module's BTF with each
function's func_info and line_info, so a rebuilt program carries its BTF function and source lines
as bcc's load gives them (fexit tools need them). Never a kernel object: a session
built from it creates its maps and loads (verifies) its programs anew, and closes them all like a
fresh compile, so the agent holds nothing between sessions (tests/test_security.py checks that).
bcc wrote the map fds of the compile into the bytecode (ld_imm64 with BPF_PSEUDO_MAP_FD); they are
rewritten to the new maps' fds before each load.

bcc is not thread-safe: two modules compiled at once in one process get each other's map fds
(measured: a program's counter map bound to the probes' device map). So compiles in this process
take turns (_compile_lock), and `prefetch` compiles in a forked child, which sends the output back.

Only our own C goes through here (compile.compile_bpf); a client's program (compile.build_user) is
compiled in its sandbox every time. Output is kept once `enable()` was called (the agent does); a
prefetch is used once either way (`record` compiles its program in a child while its probes compile).
At its start the agent `prewarm`s: forked children compile every built-in program and the probes
they load, so its first Attach of any of them finds the output. Every process also stores the
output on disk (backend/kernel/build_store.py, root's 0700 directory) and looks there before
compiling: a fresh `record` or agent pays clang only after a change of source, kernel or bcc.
"""
from __future__ import annotations

import atexit
import contextlib
import copy
import ctypes
import functools
import hashlib
import json
import os
import pickle
import platform
import select
import signal
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator

from backend.errors import XdpscopeError
from backend.kernel import bpfsys, build_store, compile as bcompile, host

Key = tuple[str, tuple[str, ...], str]       # (sha256 of the text, cflags, kernel release)

# map types whose Python table is plain state (no perf buffers, rings or inner maps): bcc class names
MAP_CLASSES = {1: "HashTable", 2: "Array", 5: "PerCpuHash", 6: "PerCpuArray", 9: "LruHash",
               10: "LruPerCpuHash", 14: "DevMap", 16: "CpuMap"}
ATTACHED = (b"raw_tracepoint__", b"tracepoint__")   # the auto-attach prefixes our probes use
LD_IMM64, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE = 0x18, 1, 2
CHILD_TIMEOUT_S = bcompile.TRIAL_TIMEOUT_S


@dataclass
class MapDef:
    name: bytes
    ttype: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    old_fd: int          # the fd the compile's bytecode refers to
    key_desc: str        # bcc's type descriptions (JSON), for the Python table's Key and Leaf
    leaf_desc: str


@dataclass
class Build:
    license: bytes
    funcs: dict[bytes, bytes]          # function name -> bytecode, in the module's order
    maps: list[MapDef]
    btf: bytes = b""                   # the module's BTF (raw), as bcc loaded it; b"": none
    func_btf: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)   # name -> (func_info,
    #                                    line_info): uapi records, insn_off in the bytecode above
    uses: int = 0                      # sessions built from it (tests check the cache is used)
    tables: dict = field(default_factory=dict, repr=False)   # name -> bcc table template (not pickled)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "tables": {}}


class _Child:
    """A compile in a forked child: its output (a Build) or its error comes back through a pipe."""

    def __init__(self, text: str, cflags: list[str], what: str):
        r, w = os.pipe()
        with _compile_lock:            # no compile of ours is inside bcc while we fork
            pid = os.fork()
        if pid == 0:                   # the child: compile, send, leave without atexit handlers
            code = 0
            try:
                os.close(r)
                try:
                    msg = ("ok", _capture(bcompile.compile_bpf(text, cflags, what)))
                except XdpscopeError as e:
                    msg = ("error", str(e))
                except BaseException as e:   # noqa: BLE001 - anything, said in the parent
                    msg = ("error", f"{what}: {type(e).__name__}: {e}")
                with os.fdopen(w, "wb") as f:
                    f.write(pickle.dumps(msg))
            except BaseException:      # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        self.pid, self.fd, self.what = pid, r, what

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)

    def result(self) -> Build | None:
        """The child's Build; raises its XdpscopeError; None if it gave nothing (compile here then)."""
        chunks, deadline = [], time.monotonic() + CHILD_TIMEOUT_S
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    os.kill(self.pid, signal.SIGKILL)
                    return None
                data = os.read(self.fd, 1 << 20)
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(self.fd)
            os.waitpid(self.pid, 0)
        try:
            kind, value = pickle.loads(b"".join(chunks))
        except Exception:              # noqa: BLE001 - it died: no output
            return None
        if kind == "error":
            raise XdpscopeError(value)
        return value


MAX_BUILDS = 32     # kept outputs, least recently used dropped
WAIT_S = 30         # longest wait for a prewarming child's output before compiling here
_builds: OrderedDict[Key, Build] = OrderedDict()
_prefetched: dict[Key, _Child] = {}
_pending: set[Key] = set()             # keys a prewarming child is making
_lock = threading.Lock()               # the dicts and _pending
_cond = threading.Condition(_lock)     # a prewarming child's output arrived
_compile_lock = threading.Lock()       # bcc compiles in this process, one at a time
_enabled = False
_sink: Callable[[tuple], None] | None = None   # set in a prewarming child: where its outputs go


class _Captured(Exception):
    """A prewarming child's compile_bpf stops here: its output went to the parent, nothing is loaded."""


def enable(on: bool = True) -> None:
    """Keep compiler output from now on (the agent: many sessions in one process)."""
    global _enabled
    _enabled = on
    if not on:
        with _lock:
            _builds.clear()


def key_of(text: str, cflags: list[str]) -> Key:
    return hashlib.sha256(text.encode()).hexdigest(), tuple(cflags), platform.release()


def uses(text: str, cflags: list[str]) -> int:
    """How many sessions were built from the kept output of this source (-1: none kept)."""
    b = _builds.get(key_of(text, cflags))
    return -1 if b is None else b.uses


@contextlib.contextmanager
def prefetch(text: str, cflags: list[str], what: str) -> Iterator[None]:
    """Compile this source in a child process while the block runs; a compile_bpf of the same
    source inside the block takes the child's output (a session prefetches its program, then
    compiles its probes here). A child whose output nobody took is stopped at the end of the block.
    Nothing is forked when the output is kept, on its way from a prewarm, or on disk."""
    key = key_of(text, cflags)
    with _lock:
        start = key not in _builds and key not in _prefetched and key not in _pending
    child = _Child(text, cflags, what) if start and _disk_get(key) is None else None
    if child is not None:
        with _lock:
            _prefetched[key] = child
    try:
        yield
    finally:
        if child is not None:
            with _lock:
                unused = _prefetched.pop(key, None)
            if unused is not None:
                unused.stop()


def compile_bpf(text: str, cflags: list[str], what: str):
    """compile.compile_bpf, from kept, prewarmed, prefetched or stored (disk) output when there is some."""
    key = key_of(text, cflags)
    if _sink is not None:
        _warm_one(key, text, cflags, what)
    build = _find(key)
    if build is not None:
        return _instantiate(build)
    with _compile_lock:
        bpf = bcompile.compile_bpf(text, cflags, what)
    try:
        build = _capture(bpf)
    except BaseException:
        bcompile.release(bpf)
        raise
    if build is not None:
        _store(key, build)
    return bpf


def _find(key: Key) -> Build | None:
    """Output for key: kept; else a prewarming child's (waited for); a prefetching child's; on disk."""
    with _cond:
        deadline = time.monotonic() + WAIT_S
        while key in _pending and key not in _builds and deadline > time.monotonic():
            _cond.wait(deadline - time.monotonic())
        build = _builds.get(key)
        if build is not None:
            _builds.move_to_end(key)
            return build
        child = _prefetched.pop(key, None)
    if child is not None:
        build = child.result()         # raises the child's compile error
        if build is not None:
            _store(key, build)
            return build
    build = _disk_get(key)
    if build is not None and _enabled:
        _keep(key, build)
    return build


def _keep(key: Key, build: Build) -> None:
    with _lock:
        _keep_locked(key, build)


def _keep_locked(key: Key, build: Build) -> None:
    _builds[key] = build
    while len(_builds) > MAX_BUILDS:
        _builds.popitem(last=False)


def _store(key: Key, build: Build) -> None:
    """Fresh compiler output: kept in memory (the agent) and on disk (every process, when safe)."""
    if _enabled:
        _keep(key, build)
    build_store.put(_disk_key(key), _to_json(build))


# --- prewarm: compile in children at agent start ---------------------------------------------------
def prewarm(jobs: list[Callable[[], object]], workers: int = 2) -> list[int]:
    """Run the jobs (each compiles our own C through compile_bpf: a program, probes.load) in
    `workers` forked children, not here: bcc is not thread-safe, and requests must not wait. Each
    output is kept here as it arrives; a compile_bpf of a key a child is compiling now waits for it
    (not for one still queued: compiling it here is sooner). A child stops at the compile: it
    attaches nothing to an interface, loads a function only to read its BTF records (_capture_btf)
    and closes it, and dies with the agent (PDEATHSIG). Returns the children's pids."""
    if not _enabled or not jobs or os.geteuid() != 0:
        return []
    pids, parent = [], os.getpid()
    for group in (jobs[i::workers] for i in range(min(workers, len(jobs)))):
        r, w = os.pipe()
        with _compile_lock:            # no compile of ours is inside bcc while we fork
            pid = os.fork()
        if pid == 0:
            _warm_child(r, w, group, parent)
        os.close(w)
        threading.Thread(target=_warm_reader, args=(pid, r), name="prewarm", daemon=True).start()
        pids.append(pid)
    return pids


def _warm_child(r: int, w: int, jobs: list[Callable[[], object]], parent: int) -> None:
    global _sink, _lock, _cond, _compile_lock
    _lock, _compile_lock = threading.Lock(), threading.Lock()   # as forked, another thread may hold them
    _cond = threading.Condition(_lock)
    code = 0
    try:
        os.close(r)
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)     # PR_SET_PDEATHSIG: gone with the agent
        if os.getppid() != parent:     # it was gone before that
            return
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):              # not the agent's protocol pipes: their ends close with the agent
            os.dup2(null, fd)
        os.close(null)
        out = os.fdopen(w, "wb")

        def send(msg: tuple) -> None:
            data = pickle.dumps(msg)
            out.write(struct.pack("<I", len(data)) + data)
            out.flush()
        _sink = send
        for job in jobs:
            try:
                job()
            except _Captured:
                pass
            except BaseException:      # noqa: BLE001 - a session that needs it will say why
                pass
        out.close()
    except BaseException:              # noqa: BLE001
        code = 1
    finally:
        os._exit(code)


def _warm_one(key: Key, text: str, cflags: list[str], what: str) -> None:
    """In a prewarming child: announce key (compile_bpf of it waits now), make its output (disk or
    clang), send it, stop."""
    _sink(("key", key))
    build = None
    try:
        build = _disk_get(key)
        if build is None:
            with _compile_lock:
                bpf = bcompile.compile_bpf(text, cflags, what)
            try:
                build = _capture(bpf)
            finally:
                bcompile.release(bpf)
            if build is not None:
                build_store.put(_disk_key(key), _to_json(build))
    finally:
        _sink(("build", key, build))   # None: the parent stops waiting and compiles itself
    raise _Captured


def _warm_reader(pid: int, fd: int) -> None:
    """Here: a prewarming child's outputs into the kept ones, as they arrive."""
    keys: set[Key] = set()
    try:
        with os.fdopen(fd, "rb") as f:
            while len(head := f.read(4)) == 4:
                kind, key, *rest = pickle.loads(f.read(struct.unpack("<I", head)[0]))
                build = _with_tables(rest[0]) if kind == "build" and rest[0] is not None else None
                with _cond:
                    if kind == "key":
                        keys.add(key)
                        _pending.add(key)
                        continue
                    if build is not None and _enabled and key not in _builds:
                        _keep_locked(key, build)
                    _pending.discard(key)
                    _cond.notify_all()
    except Exception:                  # noqa: BLE001 - a dead child: its keys are compiled on demand
        pass
    finally:
        with _cond:
            _pending.difference_update(keys)
            _cond.notify_all()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _with_tables(build: Build) -> Build:
    """The Python table templates made now, not in the first session (they import bcc: ~60 ms)."""
    try:
        build.tables = {d.name: _template(d) for d in build.maps}
    except Exception:                  # noqa: BLE001 - the session makes them (and says what fails)
        build.tables = {}
    return build


# --- on disk (backend/kernel/build_store.py) -----------------------------------------------------
@functools.lru_cache(maxsize=1)
def _toolchain() -> tuple[str, str]:
    """What else decides the compiler's output: bcc's version and the kernel headers it uses."""
    bcc = host.import_bcc()
    headers = host.find_headers()
    return getattr(bcc, "__version__", "?"), headers.path if headers else ""


def _disk_key(key: Key) -> list:
    return [key[0], list(key[1]), key[2], *_toolchain()]


def _disk_get(key: Key) -> Build | None:
    """Stored output for key, None when there is none or it is not sound (then it is compiled)."""
    try:
        body = build_store.get(_disk_key(key))
        return None if body is None else _from_json(body)
    except Exception:                  # noqa: BLE001 - anything odd about an entry: compile instead
        return None


def _to_json(build: Build) -> dict:
    return {"license": build.license.hex(),
            "funcs": [[name.decode(), code.hex()] for name, code in build.funcs.items()],
            "maps": [{**d.__dict__, "name": d.name.decode()} for d in build.maps],
            "btf": build.btf.hex(),
            "func_btf": [[name.decode(), fi.hex(), li.hex()] for name, (fi, li) in build.func_btf.items()]}


def _from_json(body: dict) -> Build:
    """A Build from its stored form, checked as _capture checks a compile's: plain-state maps only,
    only functions we load, every map reference to one of its own maps. Raises on anything else."""
    funcs = {}
    for name, code in body["funcs"]:
        name, code = name.encode(), bytes.fromhex(code)
        if not name.isascii() or not name.replace(b"_", b"a").isalnum() or len(code) % 8 or not code:
            raise ValueError("function")
        if name.decode().startswith(bcompile.AUTOLOAD_PREFIXES) and not name.startswith(ATTACHED):
            raise ValueError("function")
        funcs[name] = code
    maps = []
    for d in body["maps"]:
        m = MapDef(d["name"].encode(), *(int(d[f]) for f in ("ttype", "key_size", "value_size", "max_entries",
                                                               "flags", "old_fd")), str(d["key_desc"]),
                   str(d["leaf_desc"]))
        if m.ttype not in MAP_CLASSES or not m.name:
            raise ValueError("map")
        maps.append(m)
    if any(fd not in {m.old_fd for m in maps} for code in funcs.values() for _, fd in _map_refs(code)):
        raise ValueError("map reference")
    build = Build(bytes.fromhex(body["license"]), funcs, maps)
    build.btf, build.func_btf = _btf_from_json(body, funcs)
    build.tables = {m.name: _template(m) for m in maps}   # bad type descriptions fail here, not in a session
    return build


def _btf_from_json(body: dict, funcs: dict[bytes, bytes]) -> tuple[bytes, dict[bytes, tuple[bytes, bytes]]]:
    """The stored BTF and records, checked as the kernel will check them: a BTF blob of bounded
    size that the kernel accepts (loaded once and closed), one func_info at instruction 0 per
    function, line records in order on instructions of its bytecode. Raises on anything else."""
    btf = bytes.fromhex(body["btf"])
    func_btf = {}
    for name, fi, li in body["func_btf"]:
        name, fi, li = name.encode(), bytes.fromhex(fi), bytes.fromhex(li)
        code = funcs[name]
        if len(fi) != _FI or struct.unpack_from("<I", fi)[0] != 0 or len(li) % _LI:
            raise ValueError("func_info")
        offs = [r[0] for r in struct.iter_unpack("<IIII", li)]
        if offs and (offs[0] != 0 or any(a >= b for a, b in zip(offs, offs[1:]))
                     or not set(offs) <= set(_insn_starts(code))):
            raise ValueError("line_info")
        func_btf[name] = (fi, li)
    if func_btf:
        if not 24 <= len(btf) <= MAX_BTF or struct.unpack_from("<H", btf)[0] != BTF_MAGIC:
            raise ValueError("btf")
        os.close(bpfsys.btf_load(btf))     # the kernel's own checks: a damaged blob fails here
    return (btf, func_btf) if func_btf else (b"", {})


release = bcompile.release


# --- capture: the compiler's output of a bcc module ---------------------------------------------
def _map_refs(insns: bytes):
    """(offset of imm, fd) of every ld_imm64 that loads a map by fd."""
    for off in range(0, len(insns) - 15, 8):
        if insns[off] == LD_IMM64 and insns[off + 1] >> 4 in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE):
            yield off + 4, struct.unpack_from("<i", insns, off + 4)[0]


def _capture(bpf) -> Build | None:
    """The module's bytecode and map definitions; None when it has something a rebuild cannot
    reproduce (a map type with more than plain state, a function we do not load by prefix)."""
    lib, m = host.bcc_lib(), bpf.module
    funcs = {}
    for i in range(lib.bpf_num_functions(m)):
        name = lib.bpf_function_name(m, i)
        funcs[name] = ctypes.string_at(lib.bpf_function_start(m, name), lib.bpf_function_size(m, name))
        if name.decode().startswith(bcompile.AUTOLOAD_PREFIXES) and not name.startswith(ATTACHED):
            return None
    maps = []
    for i in range(lib.bpf_num_tables(m)):
        name, ttype = lib.bpf_table_name(m, i), lib.bpf_table_type_id(m, i)
        if ttype not in MAP_CLASSES:
            return None
        maps.append(MapDef(name, ttype, lib.bpf_table_key_size_id(m, i), lib.bpf_table_leaf_size_id(m, i),
                           lib.bpf_table_max_entries_id(m, i), lib.bpf_table_flags_id(m, i),
                           lib.bpf_table_fd_id(m, i), lib.bpf_table_key_desc(m, name).decode(),
                           lib.bpf_table_leaf_desc(m, name).decode()))
    fds = {d.old_fd for d in maps}
    if any(fd not in fds for code in funcs.values() for _, fd in _map_refs(code)):
        return None
    build = Build(lib.bpf_module_license(m), funcs, maps)
    try:
        build.btf, build.func_btf = _capture_btf(bpf, build)
    except (OSError, ValueError, struct.error):   # rebuilt without BTF then (fexit cannot watch it)
        build.btf, build.func_btf = b"", {}
    return build


# --- BTF: what makes a rebuilt program, to the kernel, like one bcc compiled and loaded -----------
BTF_MAGIC = 0xEB9F
MAX_BTF = 2 << 20                      # bytes of a module's BTF (ours: ~10-100 kB)
_FI, _LI = bpfsys.FUNC_INFO_REC_SIZE, bpfsys.LINE_INFO_REC_SIZE


def _capture_btf(bpf, build: Build) -> tuple[bytes, dict[bytes, tuple[bytes, bytes]]]:
    """The module's BTF and each function's func_info and line_info, from the kernel: bcc loads a
    function with them (XDP functions are loaded here, the probes were by attach_probes; bcc keeps
    the fd, so a session does not verify it again). The kernel gives the records back with insn_off
    counted in the rewritten program (the verifier inlines helpers: xlated != bytecode); they are
    mapped back to the bytecode's instructions by _line_image. A function with bpf-to-bpf calls
    (more than one func_info; bcc makes none) is kept without BTF."""
    bcc = host.import_bcc()
    btf_id, out, blob, btf_fd = 0, {}, b"", -1
    try:
        for name, code in build.funcs.items():
            fn = bpf.funcs.get(name)
            if fn is None and not name.startswith(ATTACHED):
                try:
                    fn = bpf.load_func(name, bcc.BPF.XDP)
                except Exception:          # noqa: BLE001 - refused: the session says why when it loads it
                    continue
            if fn is None:
                continue
            info, finfo, linfo = bpfsys.prog_btf_records(fn.fd)
            if not info.btf_id or len(finfo) != _FI or struct.unpack_from("<I", finfo)[0] != 0:
                continue
            if btf_fd < 0:
                btf_id, blob = info.btf_id, bpfsys.btf_blob(info.btf_id)
                btf_fd = bpfsys.btf_load(blob)
            elif info.btf_id != btf_id:
                continue
            out[name] = (finfo, _original_line_info(info.type, build.license, code, btf_fd, finfo, linfo))
    finally:
        if btf_fd >= 0:
            os.close(btf_fd)
    return (blob, out) if out else (b"", {})


def _insn_starts(code: bytes) -> list[int]:
    """Indexes of the instructions a record may name (not the second half of an ld_imm64)."""
    starts, i, n = [], 0, len(code) // 8
    while i < n:
        starts.append(i)
        i += 2 if code[8 * i] == LD_IMM64 else 1
    return starts


def _line_image(prog_type: int, license: bytes, code: bytes, btf_fd: int, finfo: bytes,
                first: bytes) -> dict[int, int]:
    """Where the kernel puts each instruction of the bytecode (rewritten-program index -> bytecode
    index), asked of the kernel itself: the bytecode is loaded once with a line record on every
    instruction, each naming its index in line_col, and the kernel's records come back moved as
    the verifier moved the instructions."""
    _, file_off, line_off, _ = struct.unpack_from("<IIII", first)
    recs = b"".join(struct.pack("<IIII", i, file_off, line_off, (i + 1) << 10) for i in _insn_starts(code))
    fd = bpfsys.prog_load_btf(prog_type, b"xs_linfo", license, code, btf_fd, finfo, recs)
    try:
        _, _, got = bpfsys.prog_btf_records(fd)
    finally:
        os.close(fd)
    return {x: (col >> 10) - 1 for x, _, _, col in struct.iter_unpack("<IIII", got)}


def _original_line_info(prog_type: int, license: bytes, code: bytes, btf_fd: int, finfo: bytes,
                        linfo: bytes) -> bytes:
    """bcc's line records with insn_off in the bytecode's instructions; b"" when one of them names
    an instruction the kernel put nowhere (then the function is kept with func_info only)."""
    if not linfo:
        return b""
    try:
        image = _line_image(prog_type, license, code, btf_fd, finfo, linfo[:_LI])
    except OSError:                    # the kernel refused the probe load: func_info is what fexit needs
        return b""
    out = []
    for x, f, ln, col in struct.iter_unpack("<IIII", linfo):
        if x not in image:
            return b""
        out.append(struct.pack("<IIII", image[x], f, ln, col))
    return b"".join(out)


# --- rebuild: new maps, the bytecode pointed at them, a bcc-like module over both -------------------
class MapCreateOpts(ctypes.Structure):
    # leading members of libbpf's struct bpf_map_create_opts (a shorter sz is accepted)
    _fields_ = [("sz", ctypes.c_size_t), ("btf_fd", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
                ("btf_value_type_id", ctypes.c_uint32), ("btf_vmlinux_value_type_id", ctypes.c_uint32),
                ("inner_map_fd", ctypes.c_uint32), ("map_flags", ctypes.c_uint32)]


def _create_map(d: MapDef) -> int:
    lib = bpfsys.lib()
    lib.bpf_map_create.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32,
                                   ctypes.c_uint32, ctypes.POINTER(MapCreateOpts)]
    opts = MapCreateOpts(sz=ctypes.sizeof(MapCreateOpts), map_flags=d.flags)
    fd = lib.bpf_map_create(d.ttype, d.name[:15], d.key_size, d.value_size, d.max_entries, ctypes.byref(opts))
    if fd < 0:
        raise OSError(-fd, f"cannot create map {d.name.decode()}: {os.strerror(-fd)}")
    return fd


class _NoModule:
    module = None      # bcc's table constructors ask the module for type and sizes; we set them after


def _template(d: MapDef):
    """bcc's Python table for a map definition, as BPF.get_table makes it, without a module."""
    bcc = host.import_bcc()
    from bcc import table as bcc_table
    key = bcc.BPF._decode_table_type(json.loads(d.key_desc))
    leaf = bcc.BPF._decode_table_type(json.loads(d.leaf_desc))
    t = getattr(bcc_table, MAP_CLASSES[d.ttype])(_NoModule(), 0, -1, key, leaf)
    t.ttype, t.flags, t.max_entries, t._name, t.bpf = d.ttype, d.flags, d.max_entries, d.name, None
    return t


def _instantiate(build: Build):
    if not build.tables:
        build.tables = {d.name: _template(d) for d in build.maps}
    fds: list[int] = []
    try:
        for d in build.maps:
            fds.append(_create_map(d))
        module = _rebuilt_class()(build, fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    try:
        module.attach_probes()
    except Exception as e:
        bcompile.release(module)
        raise XdpscopeError(f"cannot attach probes: {e}") from None
    build.uses += 1
    return module


_rebuilt = None


def _rebuilt_class():
    """bcc.BPF made from kept output instead of clang (bcc is imported lazily, so the class too)."""
    global _rebuilt
    if _rebuilt is not None:
        return _rebuilt
    bcc = host.import_bcc()

    class Rebuilt(bcc.BPF):
        def __init__(self, build: Build, fds: list[int]):   # what bcc.BPF.__init__ sets, without clang
            self.kprobe_fds, self.uprobe_fds, self.tracepoint_fds, self.raw_tracepoint_fds = {}, {}, {}, {}
            self.kfunc_entry_fds, self.kfunc_exit_fds, self.lsm_fds = {}, {}, {}
            self.perf_buffers, self.open_perf_events = {}, {}
            self._ringbuf_manager, self.tracefile = None, None
            self.debug, self.funcs, self.tables, self.module = 0, {}, {}, None
            self.build, self.btf_fd = build, -1
            self.map_fds = {d.name: fd for d, fd in zip(build.maps, fds)}
            relocate = {d.old_fd: fd for d, fd in zip(build.maps, fds)}
            self.code = {}
            for name, code in build.funcs.items():
                buf = bytearray(code)
                for off, old in _map_refs(code):
                    struct.pack_into("<i", buf, off, relocate[old])
                self.code[name] = bytes(buf)
            atexit.register(self.cleanup)

        def function_names(self) -> list[str]:
            return [n.decode(errors="replace") for n in self.code]

        def load_func(self, func_name, prog_type, device=None, attach_type=-1):
            func_name = func_name.encode() if isinstance(func_name, str) else func_name
            if func_name in self.funcs:
                return self.funcs[func_name]
            code = self.code.get(func_name)
            if code is None:
                raise Exception(f"Unknown program {func_name!r}")
            try:
                fd = self._load(func_name, prog_type, code)
            except OSError as e:
                raise Exception(f"Failed to load BPF program {func_name.decode()}: {e.strerror}") from None
            fn = self.funcs[func_name] = bcc.BPF.Function(self, func_name, fd)
            return fn

        def _load(self, name: bytes, prog_type: int, code: bytes) -> int:
            """BPF_PROG_LOAD with the kept BTF, func_info and line_info when there are (loaded
            once per module, as bcc does, closed with it), else the bytecode alone."""
            records = self.build.func_btf.get(name)
            if records is None:
                return bpfsys._check(bpfsys.lib().bpf_prog_load(prog_type, name[:15], self.build.license, code,
                                                                 len(code) // 8, None))
            if self.btf_fd < 0:
                self.btf_fd = bpfsys.btf_load(self.build.btf)
            return bpfsys.prog_load_btf(prog_type, name[:15], self.build.license, code, self.btf_fd, *records)

        def get_table(self, name, keytype=None, leaftype=None, reducer=None):
            name = name.encode() if isinstance(name, str) else name
            template = self.build.tables.get(name)
            if template is None:
                raise KeyError(name)
            t = copy.copy(template)
            t.bpf, t.map_fd, t._cbs = self, self.map_fds[name], {}
            return t

        def attach_probes(self) -> None:
            """What bcc's auto-attach does for the prefixes our probes use (_capture kept no other)."""
            for name in self.code:
                if name.startswith(b"raw_tracepoint__"):
                    self.attach_raw_tracepoint(tp=name[len(b"raw_tracepoint__"):], fn_name=name)
                elif name.startswith(b"tracepoint__"):
                    self.attach_tracepoint(tp=name[len(b"tracepoint__"):].replace(b"__", b":"), fn_name=name)

        def close(self) -> None:
            for name, fn in list(self.funcs.items()):
                os.close(fn.fd)
                del self.funcs[name]
            for name, fd in list(self.map_fds.items()):
                os.close(fd)
                del self.map_fds[name]
            if self.btf_fd >= 0:
                os.close(self.btf_fd)
                self.btf_fd = -1

    _rebuilt = Rebuilt
    return Rebuilt
