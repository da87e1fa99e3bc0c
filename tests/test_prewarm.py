"""One build per built-in program serves every session (issue 15): target count, policy and mix are
run-time values (bpf/fanout.h's xs_conf), so the agent can compile them all at start (prewarm) and
keep them on disk. Oracles: frames sent, the target veths' own `tx_queue_0_xdp_xmit` (ethtool -S),
the kernel's run count, /proc fdinfo of the agent. No test here measures or asserts a time."""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from backend.kernel import attach, bpfsys, build_cache, build_store, injector, nic, programs
from backend.labs import veth as labmod
from tests import expect
from tests.conftest import XDPSCOPE
from tests.test_security import Agent, held, no_children

pytestmark = pytest.mark.kernel
VERDICTS = ("ABORTED", "DROP", "PASS", "TX", "REDIRECT")
M32 = 0xFFFFFFFF


@pytest.fixture(scope="module")
def lab8():
    prefix = f"w{os.getpid() % 100000}"
    try:
        yield labmod.up(prefix, targets=8)
    finally:
        labmod.down(prefix)


@pytest.fixture
def kept(monkeypatch):
    """The in-memory cache only: every session below comes from the one output kept here."""
    monkeypatch.setenv(build_store.ENV, "off")
    build_cache.enable()
    try:
        yield
    finally:
        build_cache.enable(False)


def xmit(ifname: str) -> int:
    """Frames the kernel handed to this veth through ndo_xdp_xmit (its own counter)."""
    out = subprocess.run(["ethtool", "-S", ifname], capture_output=True, text=True, check=True).stdout
    return sum(int(v) for k, v in (ln.split(":") for ln in out.splitlines()[1:] if ":" in ln)
               if k.strip().endswith("_xdp_xmit"))


def flow_hash(flow: int) -> int:
    """bpf/fanout.h's xs_flow_hash of injector.frame(_, flow), in Python (little-endian loads)."""
    frame = injector.frame(64, flow)
    le = lambda b: int.from_bytes(b, "little")  # noqa: E731
    h = le(frame[26:30]) ^ (le(frame[30:34]) * 31 & M32)
    h ^= le(frame[34:38]) * 0x9E3779B1 & M32
    h ^= 17
    h ^= h >> 16
    h = h * 0x85EBCA6B & M32
    return h ^ (h >> 13)


def run(lab, spec: programs.ProgramSpec, frames: int, flows: int = 1, cpu: int = 0) -> dict:
    """Load spec, inject frames on one CPU, return what the kernel and the program counted."""
    loaded = programs.load(spec, nic.ifindex_of)
    stats = bpfsys.enable_run_stats()
    link = attach.attach(loaded.fd, nic.interface(lab.ingress), "native")
    before = [xmit(t) for t in spec.targets]
    try:
        injector.inject(lab.ingress, frames, flows=flows, cpu=cpu)
        cpus = loaded.bpf[b"xs_counters"][0]        # the program's own per-CPU map (bpf/xdpscope.h)
        return {"module": type(loaded.bpf).__name__, "runs": bpfsys.prog_info(loaded.fd).run_cnt,
                "verdicts": {v: sum(c.verdict[i] for c in cpus) for i, v in enumerate(VERDICTS)},
                "counted": [sum(c.target[s] for c in cpus) for s in range(len(spec.targets))],
                "sent": [xmit(t) - b for t, b in zip(spec.targets, before)]}
    finally:
        link.close()
        os.close(stats)
        loaded.close()


def test_one_build_serves_every_target_count_and_policy(lab8, kept):
    frames, flows = 1200, 12
    results = []
    for n in (1, 3, 8):
        targets = lab8.targets[:n]
        for policy in ("rr", "hash", "cpu"):
            spec = programs.ProgramSpec(name="redirect", targets=targets, policy=policy)
            cpu = 1 if policy == "cpu" and os.cpu_count() > 1 else 0
            r = run(lab8, spec, frames, flows=flows if policy == "hash" else 1, cpu=cpu)
            if policy == "rr":
                want = [frames // n + (i < frames % n) for i in range(n)]
            elif policy == "hash":
                want = [0] * n
                for f, count in enumerate(injector.split(frames, flows)):
                    want[flow_hash(f) % n] += count
            else:
                want = [frames if s == cpu % n else 0 for s in range(n)]
            assert r["runs"] == frames, (n, policy)
            assert r["verdicts"] == {**dict.fromkeys(VERDICTS, 0), "REDIRECT": frames}, (n, policy)
            assert r["sent"] == want and r["counted"] == want, (n, policy, r)
            results.append(r)
    assert results[0]["module"] == "Module"                    # compiled once, for the first session
    assert {r["module"] for r in results[1:]} == {"Rebuilt"}   # every other one from that output
    spec = programs.ProgramSpec(name="redirect")
    assert build_cache.uses(programs.source_of(spec), programs.cflags_of(spec)) == len(results) - 1


def mix_verdicts(frames: int, pct: dict[str, int]) -> list[str]:
    """mix's order over each 100 frames of a CPU: DROP, PASS, TX, REDIRECT, the rest ABORTED."""
    out = []
    for i in range(frames):
        r = i % 100
        for v in ("DROP", "PASS", "TX", "REDIRECT", "ABORTED"):
            if v == "ABORTED" or r < pct.get(v, 0):
                break
            r -= pct.get(v, 0)
        out.append(v)
    return out


@pytest.mark.parametrize("frames", [1000, 250])
def test_mix_percentages_exact_from_one_build(lab8, kept, frames):
    mixes = [({"DROP": 30, "PASS": 40, "TX": 10, "REDIRECT": 20}, 2),
             ({"ABORTED": 7, "DROP": 13, "REDIRECT": 80}, 3),
             ({"PASS": 1, "TX": 98, "REDIRECT": 1}, 1)]
    modules = []
    for pct, n in mixes:
        targets = lab8.targets[:n]
        r = run(lab8, programs.ProgramSpec(name="mix", targets=targets, mix=pct), frames)
        order = mix_verdicts(frames, pct)
        assert r["runs"] == frames
        assert r["verdicts"] == {v: order.count(v) for v in VERDICTS}, pct
        redirects = order.count("REDIRECT")
        want = [redirects // n + (i < redirects % n) for i in range(n)]   # round-robin
        assert r["sent"] == want and r["counted"] == want, (pct, r)
        modules.append(r["module"])
    assert modules[1:] == ["Rebuilt", "Rebuilt"]


# --- the prewarm in a real agent ------------------------------------------------------------------
def btf_id(prog_id: int) -> int:
    """The kernel's BTF id of a program (0: loaded without BTF)."""
    from tests.test_security import _ProgInfo, _bpf
    fd = _bpf.bpf_prog_get_fd_by_id(prog_id)
    assert fd >= 0
    try:
        info = _ProgInfo()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        assert _bpf.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)) == 0
        return info.btf_id
    finally:
        os.close(fd)


def map_btf_ids(prog_id: int) -> list[int]:
    """The BTF ids of a program's maps (struct bpf_map_info's btf_id, its 17th u32)."""
    fd = bpfsys.prog_fd_by_id(prog_id)
    try:
        ids = bpfsys.prog_map_ids(fd)
    finally:
        os.close(fd)
    out = []
    for mid in ids:
        mfd = bpfsys.lib().bpf_map_get_fd_by_id(mid)
        assert mfd >= 0
        try:
            info, size = (ctypes.c_uint32 * 32)(), ctypes.c_uint32(128)
            assert bpfsys.lib().bpf_obj_get_info_by_fd(mfd, ctypes.byref(info), ctypes.byref(size)) == 0
            out.append(info[16])
        finally:
            os.close(mfd)
    return out


def test_prewarm_leaves_nothing_and_the_first_attach_finds_it(lab8, monkeypatch, tmp_path):
    """A fresh agent (disk store off: its children compile) holds no BPF object once they are done;
    its first cpumap session loads the prewarmed output (a cpumap session compiles in the agent
    itself otherwise: bcc creates the maps it compiled with BTF types, a rebuild creates them
    without, while giving the program its BTF like bcc); its first mix session, a shape it never
    saw, counts exactly; detaches leave it as before."""
    from tests.test_security import xdp_prog_on
    monkeypatch.setenv(build_store.ENV, "off")
    a = Agent()
    try:
        base = held(a.p.pid)                       # Agent() waited for the prewarm's children
        assert base["progs"] == base["maps"] == base["links"] == set()
        r = a.call("attach", iface=lab8.ingress, program="cpumap", targets=["0"], hz=20)
        assert r["ok"], r
        prog = xdp_prog_on(lab8.ingress)
        assert btf_id(prog) != 0 and map_btf_ids(prog) == [0, 0, 0, 0]   # rebuilt from kept output
        assert a.call("detach")["ok"]
        r = a.call("attach", iface=lab8.ingress, program="mix", targets=lab8.targets[:3], hz=20,
                   mix={"DROP": 50, "REDIRECT": 50})
        assert r["ok"], r
        before = [xmit(t) for t in lab8.targets[:3]]
        injector.inject(lab8.ingress, 600, cpu=0)
        assert [xmit(t) - b for t, b in zip(lab8.targets[:3], before)] == [100, 100, 100]
        assert a.call("detach")["ok"]
        assert held(a.p.pid) == base
    finally:
        a.kill()


# --- the store on disk ----------------------------------------------------------------------------
@pytest.fixture
def store(monkeypatch):
    d = Path(tempfile.mkdtemp(prefix="xs-store-"))     # root's, 0700
    monkeypatch.setenv(build_store.ENV, str(d))
    try:
        yield d
    finally:
        shutil.rmtree(d)


PASS = programs.ProgramSpec(name="pass")


def entry(store: Path) -> Path:
    (e,) = [p for p in store.iterdir() if p.suffix == ".json"]
    return e


def compiled(spec: programs.ProgramSpec) -> str:
    """Build spec's program through the cache; the class of the module made (Module: clang ran)."""
    bpf = build_cache.compile_bpf(programs.source_of(spec), programs.cflags_of(spec), "program 'pass'")
    try:
        return type(bpf).__name__
    finally:
        build_cache.release(bpf)


def _resigned(doc: dict) -> bytes:
    """A hostile entry: its body changed and its checksum made to match."""
    import hashlib
    doc["sha256"] = hashlib.sha256(json.dumps(doc["body"], sort_keys=True).encode()).hexdigest()
    return json.dumps(doc).encode()


def hostile(kind: str, good: bytes) -> bytes:
    doc = json.loads(good)
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "garbage":
        return os.urandom(300)
    if kind == "checksum":
        doc["body"]["license"] = b"Proprietary\0".hex()
        return json.dumps(doc).encode()
    if kind == "map type":
        doc["body"]["maps"][0]["ttype"] = 27                  # a ring buffer: not plain state
        return _resigned(doc)
    if kind == "foreign map":
        code = bytearray.fromhex(doc["body"]["funcs"][0][1])
        code[0:16] = bytes([0x18, 0x11, 0, 0]) + (999).to_bytes(4, "little") + bytes(8)  # ld_imm64 fd 999
        doc["body"]["funcs"][0][1] = code.hex()
        return _resigned(doc)
    if kind == "tracing function":
        doc["body"]["funcs"][0][0] = "kprobe__do_sys_open"
        return _resigned(doc)
    if kind == "type description":
        doc["body"]["maps"][0]["leaf_desc"] = "[\"x\", {\"y\": 1}]"
        return _resigned(doc)
    if kind == "other key":
        doc["key"][2] = "0.0.0"
        return _resigned(doc)
    raise AssertionError(kind)


def test_stored_output_is_used_by_a_fresh_process(store):
    assert compiled(PASS) == "Module" and entry(store).stat().st_mode & 0o777 == 0o600
    assert compiled(PASS) == "Rebuilt"


@pytest.mark.parametrize("kind", ["truncated", "garbage", "checksum", "map type", "foreign map",
                                  "tracing function", "type description", "other key"])
def test_a_damaged_or_hostile_entry_is_ignored_and_replaced(store, kind, capfd):
    assert compiled(PASS) == "Module"
    e = entry(store)
    good = e.read_bytes()
    e.write_bytes(hostile(kind, good))
    assert compiled(PASS) == "Module"                  # compiled again: the entry was not trusted
    assert json.loads(entry(store).read_bytes()) == json.loads(good)   # and written anew
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("how", ["group-writable file", "file of another user", "symlink",
                                 "directory mode 0755", "directory of another user"])
def test_an_entry_not_only_roots_is_not_trusted(store, how):
    assert compiled(PASS) == "Module"
    e = entry(store)
    if how == "group-writable file":
        e.chmod(0o620)
    elif how == "file of another user":
        os.chown(e, 65534, 65534)
    elif how == "symlink":
        real = store.parent / f"{store.name}-elsewhere.json"
        e.rename(real)
        e.symlink_to(real)
    elif how == "directory mode 0755":
        store.chmod(0o755)
    else:
        os.chown(store, 65534, 65534)
    try:
        assert compiled(PASS) == "Module"
    finally:
        if how == "symlink":
            real.unlink()


def test_record_with_a_damaged_entry_runs_without_a_traceback(store, lab8):
    """The CLI end to end: a fresh `record` whose stored program is garbage compiles and records."""
    env = {**os.environ, build_store.ENV: str(store)}
    subprocess.run([*XDPSCOPE, "record", "--iface", lab8.ingress, "--program", "pass", "--duration", "1",
                    "-o", str(store / "t.db")], env=env, check=True, capture_output=True, timeout=120)
    for e in store.glob("*.json"):
        e.write_bytes(b"{\"format\": 1, \"key\": [")
    p = subprocess.run([*XDPSCOPE, "record", "--iface", lab8.ingress, "--program", "pass", "--duration", "1",
                        "-o", str(store / "t.db"), "--overwrite"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert all(json.loads(e.read_bytes())["format"] == build_store.FORMAT for e in store.glob("*.json"))


def children_of(pid: int) -> set[int]:
    out: set[int] = set()
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            out |= {int(c) for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()}
        except FileNotFoundError:
            pass
    return out


def test_an_agent_killed_while_prewarming_leaves_no_child_and_no_bpf_object(monkeypatch):
    """SIGKILL during the prewarm: its children end too and every map and program they held is gone
    from the kernel."""
    from tests.test_security import map_alive, prog_alive
    monkeypatch.setenv(build_store.ENV, "off")            # the children compile: they hold maps meanwhile
    p = subprocess.Popen([*XDPSCOPE, "agent", "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        assert json.loads(p.stdout.readline())["event"] == "ready"
        kids, objects = children_of(p.pid), {"maps": set(), "progs": set()}
        deadline = time.monotonic() + 30
        while not objects["maps"] and time.monotonic() < deadline:
            for c in kids:
                try:
                    h = held(c)
                except FileNotFoundError:
                    continue
                objects["maps"] |= h["maps"]
                objects["progs"] |= h["progs"]
            time.sleep(0.005)
        assert kids and objects["maps"], "no prewarm child seen holding a map"
    finally:
        p.kill()
        p.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{c}").exists() for c in kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{c}").exists() for c in kids)
    assert not any(map_alive(m) for m in objects["maps"]) and not any(prog_alive(i) for i in objects["progs"])
