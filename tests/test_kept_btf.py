"""Programs rebuilt from kept compiler output (memory and disk) carry their BTF, func_info and
line_info like the ones bcc compiles and loads: fexit tools (xdpdump, pwru, the watch method) need
the program's BTF function. Oracles: the kernel's own view of each program (BPF_OBJ_GET_INFO_BY_FD:
btf_id, its func_info and line_info records, the raw BTF it holds) against bcc's fresh
compile-and-load, the kernel's run count and the program's fexit counts (in the QEMU guest: this
host has no BPF trampolines), and the kernel's BTF ids (gone after the sessions)."""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path

import pytest

from backend.kernel import bpfsys, build_cache, build_store, compile as bcompile, fexit, programs, probes
from tests.test_prewarm import kept  # noqa: F401  (a fixture: the in-memory cache only)

pytestmark = pytest.mark.kernel
MIX = programs.ProgramSpec(name="mix", mix={"DROP": 30, "PASS": 40, "TX": 30})


@pytest.fixture
def store(monkeypatch):
    d = Path(tempfile.mkdtemp(prefix="xs-btf-"))
    monkeypatch.setenv(build_store.ENV, str(d))
    try:
        yield d
    finally:
        shutil.rmtree(d)


def btf_func_name(blob: bytes, type_id: int) -> str:
    """The name of BTF type `type_id` (a FUNC) in a raw BTF blob (linux/btf.h's layout)."""
    magic, _, _, hdr_len, type_off, type_len, str_off, _ = struct.unpack_from("<HBBIIIII", blob)
    assert magic == 0xEB9F
    types, strs = hdr_len + type_off, hdr_len + str_off
    extra = {1: lambda v: 4, 3: lambda v: 12, 4: lambda v: 12 * v, 5: lambda v: 12 * v, 6: lambda v: 8 * v,
             13: lambda v: 8 * v, 14: lambda v: 4, 15: lambda v: 12 * v, 17: lambda v: 4, 19: lambda v: 12 * v}
    off, tid = types, 1
    while off < types + type_len:
        name_off, info = struct.unpack_from("<II", blob, off)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        if tid == type_id:
            assert kind == 12, kind                              # BTF_KIND_FUNC
            return blob[strs + name_off:blob.index(b"\0", strs + name_off)].decode()
        off, tid = off + 12 + extra.get(kind, lambda v: 0)(vlen), tid + 1
    raise AssertionError(f"no type {type_id}")


def kernel_view(fd: int) -> dict:
    """What the kernel holds for a loaded program: its name, BTF (raw), the BTF function's name
    and its func_info and line_info records."""
    info, finfo, linfo = bpfsys.prog_btf_records(fd)
    assert info.btf_id != 0
    blob = bpfsys.btf_blob(info.btf_id)
    ((_, type_id),) = struct.iter_unpack("<II", finfo)
    return {"name": info.name, "btf_id": info.btf_id, "btf": blob, "func": btf_func_name(blob, type_id),
            "func_info": finfo, "line_info": linfo, "xlated": info.xlated_prog_len}


def load(spec: programs.ProgramSpec):
    """Compile (or rebuild) and verify spec's program through the cache, as a session does."""
    bpf = build_cache.compile_bpf(programs.source_of(spec), programs.cflags_of(spec), "program")
    return bpf, bcompile.load_xdp(bpf, "xdp_main", "program")


def same_as_fresh(fresh: dict, rebuilt: dict) -> None:
    assert rebuilt["name"] == fresh["name"] == b"xdp_main"
    assert rebuilt["func"] == fresh["func"] == "xdp_main"
    for k in ("btf", "func_info", "line_info", "xlated"):
        assert rebuilt[k] == fresh[k], k
    assert len(fresh["line_info"]) // 16 >= 5                   # bcc gives source lines: so does the rebuild


def fresh_then_rebuilt(spec: programs.ProgramSpec) -> None:
    """Load spec twice: bcc's compile and load, then a rebuild from kept output; the kernel's view
    of both is the same."""
    views = []
    for _ in range(2):
        bpf, fd = load(spec)
        try:
            views.append((type(bpf).__name__, kernel_view(fd)))
        finally:
            build_cache.release(bpf)
    assert [m for m, _ in views] == ["Module", "Rebuilt"]
    same_as_fresh(views[0][1], views[1][1])


@pytest.mark.parametrize("name", ["pass", "redirect", "mix", "cpumap"])
def test_kept_in_memory_program_has_bcc_btf_and_lines(kept, name):
    fresh_then_rebuilt(programs.ProgramSpec(name=name))


def test_stored_program_has_bcc_btf_and_lines(store):
    """A fresh process's rebuild from the disk store (memory cache off) is like bcc's load."""
    fresh_then_rebuilt(MIX)


def test_rebuilt_probes_have_btf(kept):
    """The probes' module too: every raw tracepoint program gets the module's one BTF object."""
    ifindex = int(Path("/sys/class/net/lo/ifindex").read_text())
    got = []
    for _ in range(2):
        p = probes.load(ifindex)
        try:
            bpf = p.bpf
            got.append((type(bpf).__name__, {n: bpfsys.prog_btf_records(f.fd)[2] for n, f in bpf.funcs.items()},
                        {bpfsys.prog_info(f.fd).btf_id for f in bpf.funcs.values()}))
        finally:
            p.close()
    (m0, lines0, ids0), (m1, lines1, ids1) = got
    assert (m0, m1) == ("Module", "Rebuilt")
    assert lines1 == lines0 and all(lines0.values())
    assert len(ids1) == 1 and 0 not in ids1


@pytest.mark.parametrize("damage", ["magic", "type section", "func_info", "line_info order"])
def test_a_damaged_btf_in_a_stored_entry_is_recompiled(store, damage, capfd):
    bpf, _ = load(MIX)
    build_cache.release(bpf)
    (e,) = store.glob("*.json")
    good = e.read_bytes()
    doc = json.loads(good)
    body = doc["body"]
    btf = bytearray.fromhex(body["btf"])
    if damage == "magic":
        btf[0:2] = b"\0\0"
    elif damage == "type section":
        hdr_len, type_off = struct.unpack_from("<II", btf, 4)[0], struct.unpack_from("<I", btf, 8)[0]
        struct.pack_into("<I", btf, hdr_len + type_off + 4, 0x7F000000)   # first type: kind 31 (none)
    elif damage == "func_info":
        body["func_btf"][0][1] = body["func_btf"][0][1][:8]
    else:
        li = bytearray.fromhex(body["func_btf"][0][2])
        li[16:20] = li[32:36]                                   # two records on one instruction
        body["func_btf"][0][2] = li.hex()
    body["btf"] = btf.hex()
    doc["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    e.write_bytes(json.dumps(doc).encode())
    bpf, fd = load(MIX)                                         # compiled again, not a traceback
    try:
        assert type(bpf).__name__ == "Module" and bpfsys.prog_info(fd).btf_id != 0
    finally:
        build_cache.release(bpf)
    # and the entry written anew (its bytecode names this compile's map fds, so not byte-equal):
    # same key and BTF as the good one, and the next load is a rebuild from it, with its BTF
    again, first = json.loads(e.read_bytes()), json.loads(good)
    assert again["key"] == first["key"] and again["body"]["btf"] == first["body"]["btf"]
    bpf, fd = load(MIX)
    try:
        assert type(bpf).__name__ == "Rebuilt" and bpfsys.prog_info(fd).btf_id != 0
    finally:
        build_cache.release(bpf)
    assert "Traceback" not in capfd.readouterr().err


def test_a_format_1_entry_is_recompiled(store):
    """Entries written before programs kept their BTF are not used (they would load without)."""
    bpf, _ = load(MIX)
    build_cache.release(bpf)
    (e,) = store.glob("*.json")
    doc = json.loads(e.read_bytes())
    doc["format"] = 1
    e.write_bytes(json.dumps(doc).encode())
    bpf, _ = load(MIX)
    try:
        assert type(bpf).__name__ == "Module"
    finally:
        build_cache.release(bpf)
    assert json.loads(e.read_bytes())["format"] == build_store.FORMAT == 2


def btf_alive(btf_id: int) -> bool:
    bpfsys.lib().bpf_btf_get_fd_by_id.argtypes = [ctypes.c_uint32]
    fd = bpfsys.lib().bpf_btf_get_fd_by_id(btf_id)
    if fd >= 0:
        os.close(fd)
    return fd >= 0


def test_rebuilt_sessions_leave_no_fd_and_no_btf_object(kept):
    """25 rebuilds: each holds one BTF object while it lives; after release the process's fds are
    as before and the kernel has none of their BTF objects (programs free theirs after an RCU
    grace period: waited for, bounded)."""
    bpf, _ = load(MIX)                                          # the compile: kept from here on
    build_cache.release(bpf)
    fds = len(os.listdir("/proc/self/fd"))
    ids = set()
    for _ in range(25):
        bpf, fd = load(MIX)
        try:
            assert type(bpf).__name__ == "Rebuilt"
            ids.add(bpfsys.prog_info(fd).btf_id)
        finally:
            build_cache.release(bpf)
    assert len(ids) == 25 and 0 not in ids
    assert len(os.listdir("/proc/self/fd")) == fds
    deadline = time.monotonic() + 10
    while any(map(btf_alive, ids)) and time.monotonic() < deadline:
        bpfsys.synchronize_rcu()
        time.sleep(0.05)
    assert not any(map(btf_alive, ids))


def test_fexit_finds_the_rebuilt_programs_btf_function(kept):
    """fexit names the program's BTF function (fexit.main_func_btf_id): a rebuilt program gives the
    one bcc's gives, and the kernel answers an attach to both alike (EPERM on this host, which has
    no trampolines: the attach and its counts are checked in the QEMU guest below)."""
    got = []
    for _ in range(2):
        bpf, fd = load(MIX)
        try:
            type_id = fexit.main_func_btf_id(fd)
            try:
                fexit.attach(fd).close()
                err = 0
            except OSError as e:
                err = e.errno
            got.append((type(bpf).__name__, type_id, err))
        finally:
            build_cache.release(bpf)
    (m0, t0, e0), (m1, t1, e1) = got
    assert (m0, m1) == ("Module", "Rebuilt")
    assert t0 == t1 != 0
    assert e1 == e0 != errno.ENOENT


@pytest.mark.vlab
@pytest.mark.parametrize("store", ["off", "disk"])
def test_fexit_counts_a_rebuilt_program_in_the_guest(guest, store):
    """In the QEMU guest (Debian's kernel has BPF trampolines): fexit attaches to mix rebuilt from
    kept output (memory, then disk) as to bcc's own load, and counts exactly the verdicts of N live
    frames: mix's documented order (30 DROP, 40 PASS, 30 TX of every 100 on a CPU), the program's
    own counters and the kernel's run count."""
    from backend.labs import vlab
    n = 1000
    python = str(vlab.ROOT / ".venv" / "bin" / "python")      # as the launcher: the guest sees the host's tree
    cp = vlab.run([python, "-m", "tests.kept_btf_guest", "vnic1", str(n), store], cwd=str(vlab.ROOT),
                  timeout=600, check=True)
    loads = json.loads(cp.stdout.strip().splitlines()[-1])
    want = {"ABORTED": 0, "DROP": 300, "PASS": 400, "TX": 300, "REDIRECT": 0}
    assert [ld["module"] for ld in loads] == ["Module", "Rebuilt"]
    for ld in loads:
        assert ld["btf_id"] != 0
        assert ld["fexit"] == ld["own"] == want, ld
        assert ld["runs"] == n


@pytest.fixture(scope="module")
def guest():
    from backend.labs import vlab
    if vlab.status():
        pytest.fail("a vlab is already up (not this test's): ./xdpscope vlab down")
    probs = vlab.check_prerequisites()
    if probs:
        pytest.fail("vlab prerequisites missing: " + "; ".join(probs))
    try:
        yield vlab.up(vlab.Config(nics=1))
    finally:
        vlab.down()
