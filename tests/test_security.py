"""The root agent against a hostile or unlucky client (docs/security.md), on real agent processes
(`main.py agent --stdio`) and the real kernel. The oracles are the kernel's own (program, map and
link ids through libbpf, /proc/PID/fdinfo, netlink), never xdpscope's answers about itself."""
from __future__ import annotations

import ctypes
import errno
import json
import os
import queue
import secrets
import signal
import sqlite3
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from tests.conftest import ROOT, XDPSCOPE, run_cli

XDP = "int f(struct xdp_md *ctx) { return XDP_PASS; }\n"
USER_OK = """
int my_filter(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end) return XDP_PASS;
    struct udphdr *udp = (void *)ip + ip->ihl * 4;   /* variable offset: needs a privileged verifier */
    if ((void *)(udp + 1) > end) return XDP_PASS;
    return (ntohs(udp->source) & 1) ? XDP_PASS : XDP_DROP;
}
"""
REPLY_TIMEOUT = 180.0


# --- kernel oracles ----------------------------------------------------------------------------
_bpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
_bpf.btf__load_from_kernel_by_id.restype = ctypes.c_void_p
_bpf.btf__type_by_id.restype = ctypes.c_void_p
_bpf.btf__type_by_id.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
_bpf.btf__name_by_offset.restype = ctypes.c_char_p
_bpf.btf__name_by_offset.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
_bpf.btf__free.argtypes = [ctypes.c_void_p]


def _alive(getter, obj_id: int) -> bool:
    fd = getter(obj_id)
    if fd >= 0:
        os.close(fd)
        return True
    assert ctypes.get_errno() == errno.ENOENT, os.strerror(ctypes.get_errno())
    return False


def prog_alive(prog_id: int) -> bool:
    return _alive(_bpf.bpf_prog_get_fd_by_id, prog_id)


def map_alive(map_id: int) -> bool:
    return _alive(_bpf.bpf_map_get_fd_by_id, map_id)


def link_alive(link_id: int) -> bool:
    return _alive(_bpf.bpf_link_get_fd_by_id, link_id)


def prog_ids() -> list[int]:
    ids, cur = [], ctypes.c_uint32(0)
    while _bpf.bpf_prog_get_next_id(cur, ctypes.byref(cur)) == 0:
        ids.append(cur.value)
    return ids


class _ProgInfo(ctypes.Structure):  # struct bpf_prog_info up to nr_func_info (uapi/linux/bpf.h)
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
                ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
                ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
                ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
                ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16),
                ("ifindex", ctypes.c_uint32), ("gpl_compatible", ctypes.c_uint32),
                ("netns_dev", ctypes.c_uint64), ("netns_ino", ctypes.c_uint64),
                ("nr_jited_ksyms", ctypes.c_uint32), ("nr_jited_func_lens", ctypes.c_uint32),
                ("jited_ksyms", ctypes.c_uint64), ("jited_func_lens", ctypes.c_uint64),
                ("btf_id", ctypes.c_uint32), ("func_info_rec_size", ctypes.c_uint32),
                ("func_info", ctypes.c_uint64), ("nr_func_info", ctypes.c_uint32)]


def prog_func_name(prog_id: int) -> str | None:
    """The program's full function name from its BTF (the 16-byte prog name is truncated)."""
    fd = _bpf.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        return None
    try:
        rec = (ctypes.c_uint32 * 2)()
        info = _ProgInfo(func_info_rec_size=8, nr_func_info=1, func_info=ctypes.addressof(rec))
        size = ctypes.c_uint32(ctypes.sizeof(info))
        if _bpf.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)) != 0 or not info.btf_id:
            return info.name.decode(errors="replace")
        btf = _bpf.btf__load_from_kernel_by_id(info.btf_id)
        if not btf:
            return info.name.decode(errors="replace")
        try:
            t = _bpf.btf__type_by_id(btf, rec[1])
            name = _bpf.btf__name_by_offset(btf, ctypes.c_uint32.from_address(t).value) if t else None
            return name.decode(errors="replace") if name else None
        finally:
            _bpf.btf__free(btf)
    finally:
        os.close(fd)


def held(pid: int) -> dict:
    """What a process holds: its fd count and the BPF programs, maps and links among its fds."""
    out = {"fds": 0, "progs": set(), "maps": set(), "links": set()}
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue  # closed meanwhile
        out["fds"] += 1
        fields = dict(ln.split(":\t", 1) for ln in text.splitlines() if ":\t" in ln)
        if "link_id" in fields:
            out["links"].add(int(fields["link_id"]))
        elif "prog_id" in fields:
            out["progs"].add(int(fields["prog_id"]))
        elif "map_id" in fields:
            out["maps"].add(int(fields["map_id"]))
    return out


def no_children(pid: int, timeout: float = REPLY_TIMEOUT) -> None:
    """Wait until the process has no child processes (reaped: not even zombies)."""
    def children() -> bool:
        try:
            return any(Path(f"/proc/{pid}/task/{t}/children").read_text().strip()
                       for t in os.listdir(f"/proc/{pid}/task"))
        except FileNotFoundError:   # a thread ended while we looked
            return True
    deadline = time.monotonic() + timeout
    while children():
        assert time.monotonic() < deadline, f"agent {pid} still has children"
        time.sleep(0.05)


def xdp_prog_on(ifname: str) -> int:
    """The XDP program id on an interface, from netlink (0: none)."""
    with IPRoute() as ip:
        link = ip.link("get", ifname=ifname)[0]
    xdp = link.get_attr("IFLA_XDP")
    return (xdp.get_attr("IFLA_XDP_PROG_ID") or 0) if xdp else 0


def uplink() -> str:
    with IPRoute() as ip:
        for r in ip.get_routes(family=2, table=254):
            if r["dst_len"] == 0 and r.get_attr("RTA_OIF"):
                return ip.link("get", index=r.get_attr("RTA_OIF"))[0].get_attr("IFLA_IFNAME")
    pytest.skip("this machine has no default route: the uplink rule has nothing to guard")


# --- a strict client ---------------------------------------------------------------------------
def _strict(line: bytes) -> dict:
    def no_constant(name):
        raise AssertionError(f"the agent wrote {name}: not JSON")
    msg = json.loads(line, parse_constant=no_constant)
    assert isinstance(msg, dict)
    return msg


class Agent:
    """An agent process spoken to in raw bytes; every line it writes must be strict JSON."""

    def __init__(self, threaded: bool = True):
        """threaded=False: stdout is read in the caller's thread (a test that closes it must not
        have a reader blocked in it, or the pipe keeps a reader)."""
        self.p = subprocess.Popen([*XDPSCOPE, "agent", "--stdio"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.threaded = threaded
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[dict] = []        # every message, for "appears nowhere" checks
        self.taken: set[int] = set()      # indexes in seen of responses handed out
        self.stderr: list[bytes] = []
        self.next_id = 0
        if threaded:
            threading.Thread(target=self._pump, args=(self.p.stdout, self.lines.put, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.p.stderr, self.stderr.append, False), daemon=True).start()
        self.ready = self.read()
        assert self.ready["event"] == "ready"
        no_children(self.p.pid)   # its prewarm (build_cache.prewarm) is over: fds are compared from now on

    @staticmethod
    def _pump(stream, put, mark_end: bool) -> None:
        try:
            for line in stream:
                put(line)
        except ValueError:  # closed by the test
            pass
        if mark_end:
            put(None)

    def read(self, timeout: float = REPLY_TIMEOUT) -> dict:
        line = self.lines.get(timeout=timeout) if self.threaded else (self.p.stdout.readline() or None)
        assert line is not None, f"agent died: {b''.join(self.stderr).decode(errors='replace')[-2000:]}"
        msg = _strict(line)
        self.seen.append(msg)
        return msg

    def send(self, data: bytes) -> None:
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def request(self, cmd: str, **args) -> int:
        self.next_id += 1
        self.send(json.dumps({"id": self.next_id, "cmd": cmd, **args}).encode() + b"\n")
        return self.next_id

    def wait(self, rid) -> dict:
        """The response to request rid (read earlier while waiting for another, or now)."""
        while True:
            for i, msg in enumerate(self.seen):
                if "event" not in msg and msg.get("id") == rid and i not in self.taken:
                    self.taken.add(i)
                    return msg
            self.read()

    def call(self, cmd: str, **args) -> dict:
        return self.wait(self.request(cmd, **args))

    def answer(self, data: bytes) -> dict:
        """Send raw bytes; the next response (a bad request is answered with id null)."""
        self.send(data)
        while True:
            msg = self.read()
            if "event" not in msg:
                self.taken.add(len(self.seen) - 1)
                return msg

    def events(self, name: str) -> list[dict]:
        return [m for m in self.seen if m.get("event") == name]

    def alive(self) -> bool:
        return self.p.poll() is None and self.call("hello")["ok"]

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


@pytest.fixture
def agent():
    a = Agent()
    yield a
    a.kill()


def text_of(agent: Agent) -> str:
    time.sleep(0.2)  # the stderr pump has caught up with what was written
    return json.dumps(agent.seen) + b"".join(agent.stderr).decode(errors="replace")


# --- C text that tries to read a root-only file -------------------------------------------------
@pytest.fixture
def secret(tmp_path):
    """A root-only file (mode 600) with a random secret, outside and inside the include path."""
    token = f"XS_SECRET_{secrets.token_hex(12)}"
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    path = d / "secret.h"
    path.write_text(f"int {token} = 1;\n{token} {token}\n")
    path.chmod(0o600)
    c_file = d / "secret.c"
    c_file.write_text(f"int f(struct xdp_md *ctx) {{ return XDP_PASS; }}\n// {token}\n")
    c_file.chmod(0o600)
    in_bpf = ROOT / "bpf" / f".xs-secret-{secrets.token_hex(4)}.h"   # where #include "x.h" does resolve
    in_bpf.write_text(path.read_text())
    in_bpf.chmod(0o600)
    try:
        yield {"token": token, "path": str(path), "dir": str(d), "c": str(c_file), "in_bpf": in_bpf.name}
    finally:
        in_bpf.unlink()


def leak_attempts(s: dict) -> dict[str, dict]:
    """(name -> attach arguments) of C text and names that try to get the secret echoed."""
    p, up = s["path"], "../" * 16 + s["path"].lstrip("/")
    srcs = {
        "absolute": f'#include "{p}"\n',
        "angle": f"#include <{p}>\n",
        "dotdot": f'#include "{up}"\n',
        "dotdot-angle": f"#include <linux/{up}>\n",
        "macro": f'#define F "{p}"\n#include F\n',
        "stringize": f"#define S(x) #x\n#define X(x) S(x)\n#include X({p})\n",
        "__FILE__": "#include __FILE__\n",
        "splice": f'#inc\\\nlude "{p}"\n',
        "splice-blank": f'#include \\ \n"{p}"\n',
        "comment": f'#/**/include/**/"{p}"\n',
        "comment-lines": f'/* one\ntwo */ #include "{p}"\n',
        "digraph": f'%:include "{p}"\n',
        "trigraph": f'??=include "{p}"\n',
        "include_next": f'#include_next "{p}"\n',
        "import": f'#import "{p}"\n',
        "embed": f'static const char e[] = {{\n#embed "{p}"\n}};\n',
        "line": f'#line 1 "{p}"\nint g(void) {{ return 1 }}\n',
        "linemarker": f'# 1 "{p}"\nint g(void) {{ return 1 }}\n',
        "pragma": f'#pragma GCC dependency "{p}"\n',
        "_Pragma": f'_Pragma("GCC dependency \\"{p}\\"")\n',
        "pasted-_Pragma": f'#define CAT(a, b) a##b\nCAT(_Pra, gma)("GCC dependency \\"{p}\\"")\n',
        "has_include": f'#if __has_include("{p}")\n#error found\n#endif\n',
        # passes every textual check: only the kernel (Landlock, fsuid nobody) stops the read
        "trace-include": "#define CREATE_TRACE_POINTS\n#define TRACE_INCLUDE_PATH " + s["dir"] +
                         "\n#define TRACE_INCLUDE_FILE secret\n#include <trace/define_trace.h>\n",
        "incbin": f'asm(".incbin \\"{p}\\"");\n',
        "incbin-split": f'asm(".inc" "bin \\"{p}\\"");\n',
        "in-include-path": f'#include "{s["in_bpf"]}"\n',   # resolves; fsuid nobody may not read it
    }
    attempts = {k: {"source": v + XDP, "source_name": "prog.c"} for k, v in srcs.items()}
    broken = "int f(struct xdp_md *ctx) { return XDP_PASS }\n"     # an error: the name is echoed
    for k, name in {"name-newline": f'x.c"\n#include "{p}"\n//', "name-path": p,
                    "name-line": f'"\n#line 1 "{p}', "name-quote": f'{p}" 1 "{p}'}.items():
        attempts[k] = {"source": broken, "source_name": name}
    return attempts


@pytest.mark.kernel
def test_no_byte_of_a_root_only_file_reaches_the_client(agent, lab, secret):
    # the harness sees what the agent echoes: a user's own erroneous line comes back
    mark = f"XS_MARK_{secrets.token_hex(6)}"
    r = agent.call("attach", iface=lab.ingress, program="user", source=f"int f(struct xdp_md *ctx) {{ {mark} }}\n")
    assert not r["ok"] and mark in r["error"], r
    for name, args in leak_attempts(secret).items():
        r = agent.call("attach", iface=lab.ingress, program="user", **args)
        if r["ok"]:  # compiled without reading anything: fine, but nothing may stay attached after
            assert agent.call("detach")["ok"]
        assert secret["token"] not in json.dumps(r), (name, r)
    for program in (secret["c"], secret["path"]):   # a path: the agent opens no file a client names
        r = agent.call("attach", iface=lab.ingress, program=program)
        assert r == {"id": agent.next_id, "ok": False, "error": "attach: the agent opens no file a client names: "
                     "send program \"user\" with source (the C text) and source_name"}
    assert agent.alive()
    agent.send(b'{"id": "end", "cmd": "stop"}\n')
    assert agent.p.wait(timeout=60) == 0
    everything = text_of(agent)
    assert secret["token"] not in everything
    assert secret["token"].encode().hex() not in everything


# --- only the one XDP function is loaded ------------------------------------------------------
TRACING = {
    "raw_tracepoint__sched_switch": "RAW_TRACEPOINT_PROBE(sched_switch) { return 0; }\n",
    "tracepoint__sched__sched_switch": "TRACEPOINT_PROBE(sched, sched_switch) { return 0; }\n",
    "kprobe__xs_attack": "int kprobe__xs_attack(void *ctx) { return 0; }\n",
    "kretprobe__xs_attack": "int kretprobe__xs_attack(void *ctx) { return 0; }\n",
    "kfunc__xs_attack": "KFUNC_PROBE(xs_attack) { return 0; }\n",
    "lsm__bpf": "LSM_PROBE(bpf, int cmd) { return 0; }\n",
    # the name is pasted together: only the check of the compiled module sees it
    "raw_tracepoint__sys_enter": "#define CAT(a, b) a##b\n"
                                 "int CAT(raw_trace, point__sys_enter)(struct bpf_raw_tracepoint_args *ctx) "
                                 "{ return 0; }\n",
}


@pytest.mark.kernel
def test_tracing_programs_are_refused_and_nothing_is_loaded(agent, lab):
    assert agent.call("hello")["ok"]
    base, first_new = held(agent.p.pid), max(prog_ids(), default=0) + 1
    for func, src in TRACING.items():
        r = agent.call("attach", iface=lab.ingress, program="user", source=src + XDP, source_name="t.c")
        assert not r["ok"] and "only the one XDP function is loaded" in r["error"], (func, r)
        assert held(agent.p.pid) == base, func
    assert xdp_prog_on(lab.ingress) == 0
    names = {prog_func_name(i) for i in prog_ids() if i >= first_new}
    assert not names & set(TRACING), names & set(TRACING)
    assert agent.alive()


# --- a session owns and closes everything -----------------------------------------------------
def sessions(lab) -> list[dict]:
    t = lab.targets
    return [{"program": "redirect", "targets": t[:2], "hz": 50, "run_time": True},
            {"program": "drop", "trace_redirects": True, "mode": "generic"},
            {"program": "mix", "mix": {"PASS": 50, "REDIRECT": 50}, "targets": [t[2]], "prepare_targets": True},
            {"program": "user", "source": USER_OK, "source_name": "ok.c"},
            {"program": "cpumap", "targets": ["0"]}]


def failed_attaches(lab) -> list[dict]:
    """Requests that fail at every stage: before the compile, in it, in the verifier, filling
    the maps, preparing targets and attaching (probes are loaded by then)."""
    return [{"program": "redirect", "targets": ["nosuch9"]},
            {"program": "user", "source": "int f(struct xdp_md *ctx) { return XDP_PASS }\n"},
            {"program": "user", "source": "int f(struct xdp_md *ctx) { return *(char *)(long)ctx->data; }\n"},
            {"program": "cpumap", "targets": ["1"]},
            {"program": "redirect", "targets": [lab.bigmtu], "prepare_targets": True},
            {"program": "drop", "mode": "native", "iface": lab.bigmtu}]


@pytest.mark.kernel
def test_attach_detach_cycles_leave_nothing_behind(agent, lab):
    assert agent.call("hello")["ok"]
    base = held(agent.p.pid)
    seen = {"progs": set(), "maps": set(), "links": set()}
    variants = sessions(lab)
    for i in range(25):
        r = agent.call("attach", **{"iface": lab.ingress, **variants[i % len(variants)]})
        assert r["ok"], r
        now = held(agent.p.pid)
        for k in seen:
            seen[k] |= now[k]
        assert xdp_prog_on(lab.ingress) in now["progs"]
        if i % 5 == 0:
            assert agent.call("inject", iface=lab.ingress, count=640)["ok"]
        assert agent.call("inject", iface=lab.ingress, count=64, cpu=4095)["error"].startswith("--cpu 4095: no such CPU")
        assert agent.call("detach")["ok"]
        assert xdp_prog_on(lab.ingress) == 0
        assert held(agent.p.pid) == base, i
    for args in failed_attaches(lab):
        r = agent.call("attach", **{"iface": lab.ingress, **args})
        assert not r["ok"], (args, r)
        assert held(agent.p.pid) == base, (args, r["error"])
        assert xdp_prog_on(lab.ingress) == 0 and xdp_prog_on(lab.bigmtu) == 0
    assert agent.call("inject", iface=lab.ingress, count=64)["error"].endswith("no XDP program attached "
                                                                               "(start `xdpscope record` first)")
    assert held(agent.p.pid) == base
    assert len(seen["progs"]) >= 25 * 3 and len(seen["maps"]) >= 25
    assert not [i for i in seen["progs"] if prog_alive(i)]
    assert not [i for i in seen["maps"] if map_alive(i)]
    assert not [i for i in seen["links"] if link_alive(i)]
    assert all(xdp_prog_on(t) == 0 for t in lab.targets)


@pytest.mark.kernel
def test_an_injection_stops_when_its_session_detaches(agent, lab):
    assert agent.call("hello")["ok"]
    base = held(agent.p.pid)
    assert agent.call("attach", iface=lab.ingress, program="drop", hz=20)["ok"]
    prog = xdp_prog_on(lab.ingress)
    rid = agent.request("inject", iface=lab.ingress, count=2**31 - 1, batch=64)  # minutes of frames
    while not any(sum(c[1] for c in s["sample"]["actions"]) for s in agent.events("sample")):
        agent.read()   # until frames are being dropped
    assert agent.call("detach")["ok"]
    r = agent.wait(rid)
    assert not r["ok"] and "injection stopped after" in r["error"] and r["error"].endswith("the session was detached")
    assert not prog_alive(prog)
    assert held(agent.p.pid) == base
    assert agent.alive()


# --- bounded, typed input ----------------------------------------------------------------------
def peak_rss_kb(pid: int) -> int:
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith("VmHWM:"):
            return int(ln.split()[1])
    raise AssertionError("no VmHWM")


BAD_LINES = {
    b"[" * 5000 + b"]" * 5000: "bad request: nested deeper than 16",
    b'{"a":' * 5000 + b"1" + b"}" * 5000: "bad request: nested deeper than 16",
    b'{"id": NaN, "cmd": "hello"}': "bad request: NaN is not a number JSON allows",
    b'{"id": 1, "cmd": "attach", "iface": "x", "program": "drop", "hz": Infinity}':
        "bad request: Infinity is not a number JSON allows",
    b'{"id": 1, "cmd": "attach", "iface": "x", "program": "drop", "hz": -Infinity}':
        "bad request: -Infinity is not a number JSON allows",
    b'{"id": 1, "cmd": "attach", "iface": "x", "program": "drop", "hz": 1e999}':
        "bad request: number 1e999 is out of range",
    b'{"id": 1' + b"0" * 5000 + b', "cmd": "hello"}': "bad request: integer 10000000000000000000... is out of range",
    b'\xff\xfe{"cmd": "hello"}': "bad request: not UTF-8 (byte 0)",
    b"[1, 2]": "bad request: a request is a JSON object",
    b'"hello"': "bad request: a request is a JSON object",
    b"{": "bad request: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    b'{"id": 1e300, "cmd": "hello"}': "bad request: id must be a string of at most 128 characters or an integer within ±2**53",
    b'{"id": 9007199254740993, "cmd": "hello"}':
        "bad request: id must be a string of at most 128 characters or an integer within ±2**53",
    b'{"id": [1], "cmd": "hello"}': "bad request: id must be a string of at most 128 characters or an integer within ±2**53",
    b'{"id": true, "cmd": "hello"}': "bad request: id must be a string of at most 128 characters or an integer within ±2**53",
    b'{"id": "' + b"i" * 129 + b'", "cmd": "hello"}':
        "bad request: id must be a string of at most 128 characters or an integer within ±2**53",
    b'{"cmd": 7}': "bad request: cmd must be a string, not an integer",
}

WRONG_TYPES = [
    ({"cmd": "attach", "iface": "x", "program": "drop", "hz": "10"}, "attach: hz must be a number, not a string"),
    ({"cmd": "attach", "iface": "x", "program": "drop", "hz": True}, "attach: hz must be a number, not a boolean"),
    ({"cmd": "attach", "iface": "x", "program": "drop", "hz": 1000}, "attach: hz must be between 1 and 100"),
    ({"cmd": "attach", "iface": "x", "program": "drop", "hz": 0.5}, "attach: hz must be between 1 and 100"),
    ({"cmd": "attach", "iface": 5, "program": "drop"}, "attach: iface must be a string, not an integer"),
    ({"cmd": "attach", "iface": None, "program": "drop"}, "attach: iface must be a string, not null"),
    ({"cmd": "attach", "iface": "a/b", "program": "drop"}, "attach: iface 'a/b' is not a valid value"),
    ({"cmd": "attach", "iface": "x" * 16, "program": "drop"}, "attach: iface is longer than 15 characters"),
    ({"cmd": "attach", "iface": "x", "program": ["drop"]}, "attach: program must be a string, not a list"),
    ({"cmd": "attach", "iface": "x", "program": "redirect", "targets": "xs-t0"},
     "attach: targets must be a list, not a string"),
    ({"cmd": "attach", "iface": "x", "program": "redirect", "targets": [1]},
     "attach: targets[0] must be a string, not an integer"),
    ({"cmd": "attach", "iface": "x", "program": "redirect", "targets": ["t"] * 65}, "attach: targets: at most 64 items"),
    ({"cmd": "attach", "iface": "x", "program": "mix", "mix": [50, 50]},
     "attach: mix must be an object of verdict: percent, not a list"),
    ({"cmd": "attach", "iface": "x", "program": "mix", "mix": {"PASS": "100"}},
     "attach: mix[PASS] must be an integer, not a string"),
    ({"cmd": "attach", "iface": "x", "program": "mix", "mix": {"PASS": 99.5}},
     "attach: mix[PASS] must be an integer, not a number"),
    ({"cmd": "attach", "iface": "x", "program": "drop", "run_time": "yes"},
     "attach: run_time must be true or false, not a string"),
    ({"cmd": "attach", "iface": "x", "program": "drop", "run_time": 1},
     "attach: run_time must be true or false, not an integer"),
    ({"cmd": "attach", "iface": "x", "program": "drop", "mode": "turbo"},
     "attach: mode must be one of auto, native, generic"),
    ({"cmd": "attach", "iface": "x", "program": "drop", "bogus": 1}, "attach: unknown argument 'bogus'"),
    ({"cmd": "attach", "iface": "x"}, "attach: missing program"),
    ({"cmd": "attach", "iface": "x", "program": "user"}, "attach: program \"user\" needs source (the C text)"),
    ({"cmd": "attach", "iface": "x", "program": "drop", "source": "int x;"},
     "attach: source and source_name go with program \"user\""),
    ({"cmd": "attach", "iface": "x", "program": "user", "source": "x" * (512 * 1024 + 1)},
     "attach: source is longer than 524288 characters"),
    ({"cmd": "inject", "iface": "x", "count": "5"}, "inject: count must be an integer, not a string"),
    ({"cmd": "inject", "iface": "x", "count": 1.5}, "inject: count must be an integer, not a number"),
    ({"cmd": "inject", "iface": "x", "count": 2**40}, "inject: count must be between 1 and 2147483647"),
    ({"cmd": "inject", "iface": "x", "count": -1}, "inject: count must be between 1 and 2147483647"),
    ({"cmd": "inject", "iface": "x", "count": True}, "inject: count must be an integer, not a boolean"),
    ({"cmd": "inject", "iface": "x", "count": 1, "cpu": "0"}, "inject: cpu must be an integer, not a string"),
    ({"cmd": "inject", "iface": "x"}, "inject: missing count"),
    ({"cmd": "lab", "action": "up", "targets": True}, "lab: targets must be an integer, not a boolean"),
    ({"cmd": "lab", "action": "explode"}, "lab: action must be one of up, down, status"),
    ({"cmd": "hello", "x": 1}, "hello: unknown argument 'x'"),
    ({"cmd": "no-such"}, "unknown command 'no-such'"),
]


def test_hostile_lines_get_errors_and_the_agent_lives(agent):
    for line, error in BAD_LINES.items():
        assert agent.answer(line + b"\n") == {"id": None, "ok": False, "error": error}, line[:60]
        assert agent.call("hello")["ok"]
    for req, error in WRONG_TYPES:
        agent.next_id += 1
        r = agent.answer(json.dumps({"id": agent.next_id, **req}).encode() + b"\n")
        assert r == {"id": agent.next_id, "ok": False, "error": error}, req
    assert agent.alive()


def test_a_huge_line_is_refused_without_holding_it(agent):
    assert agent.call("hello")["ok"]
    before = peak_rss_kb(agent.p.pid)
    huge = b'{"id": 1, "cmd": "hello", "pad": "' + b"a" * (32 << 20) + b'"}\n'
    assert agent.answer(huge) == {"id": None, "ok": False, "error": "bad request: a line is longer than 1048576 bytes"}
    # the line is dropped as it arrives: the agent never held a 32 MB string
    assert peak_rss_kb(agent.p.pid) - before < 16 * 1024
    # a line that ends at the end of input, and one just under the limit, are still read
    ok = json.dumps({"id": "big", "cmd": "hello", "x": "y"})
    assert agent.answer(ok.encode() + b" " * (1048575 - len(ok)) + b"\n") == \
        {"id": "big", "ok": False, "error": "hello: unknown argument 'x'"}
    assert agent.alive()


# --- a dead client -----------------------------------------------------------------------------
@pytest.fixture
def unthreaded():
    a = Agent(threaded=False)
    yield a
    a.kill()


@pytest.mark.kernel
@pytest.mark.parametrize("end", ["stdout", "stdin"])
def test_a_closed_pipe_detaches_and_exits(unthreaded, lab, end):
    agent = unthreaded
    assert agent.call("attach", iface=lab.ingress, program="drop", hz=10)["ok"]
    prog = xdp_prog_on(lab.ingress)
    assert prog
    (agent.p.stdout if end == "stdout" else agent.p.stdin).close()
    assert agent.p.wait(timeout=30) == (1 if end == "stdout" else 0)
    assert xdp_prog_on(lab.ingress) == 0
    assert not prog_alive(prog)


def test_an_idle_agent_notices_a_closed_stdout(unthreaded):
    agent = unthreaded
    assert agent.call("hello")["ok"]
    agent.p.stdout.close()
    assert agent.p.wait(timeout=30) == 1


# --- the uplink rule ---------------------------------------------------------------------------
@pytest.mark.kernel
def test_redirects_and_prepared_targets_obey_the_uplink_rule(agent, lab):
    up = uplink()
    before = xdp_prog_on(up)
    want = f"{up} carries the default route: it cannot be a redirect target (use --force if you really mean it)"
    for args in ({"program": "redirect", "targets": [up]},
                 {"program": "redirect", "targets": [lab.targets[0], up], "prepare_targets": True},
                 {"program": "mix", "mix": {"REDIRECT": 100}, "targets": [up]}):
        assert agent.call("attach", iface=lab.ingress, **args)["error"] == want
    r = agent.call("attach", iface=lab.ingress, program="drop", force=True)
    assert not r["ok"] and r["error"].startswith("force is not accepted by the agent")
    r = agent.call("inject", iface=up, count=1)
    assert r["error"] == f"{up} carries the default route: frames are not injected into it"
    assert xdp_prog_on(lab.ingress) == 0 and xdp_prog_on(up) == before


# --- interfaces that vanish ------------------------------------------------------------------
@pytest.fixture
def veths():
    """Two veth pairs of this test's own: an ingress and a redirect target."""
    base = f"xsv{os.getpid() % 100000}"
    names = [f"{base}i", f"{base}t"]
    with IPRoute() as ip:
        for n in names:
            ip.link("add", ifname=n, kind="veth", peer=f"{n}p")
            for end in (n, f"{n}p"):
                ip.link("set", index=ip.link_lookup(ifname=end)[0], state="up")
    try:
        yield names
    finally:
        with IPRoute() as ip:
            for n in names:
                idx = ip.link_lookup(ifname=n)
                if idx:
                    ip.link("del", index=idx[0])


def delete_link(name: str) -> None:
    with IPRoute() as ip:
        ip.link("del", index=ip.link_lookup(ifname=name)[0])


@pytest.mark.kernel
def test_record_ends_with_one_line_when_its_ingress_vanishes(record, veths, tmp_path):
    ingress = veths[0]
    rec = record("--iface", ingress, "--program", "drop", "--hz", "20")
    time.sleep(0.5)
    delete_link(ingress)
    rc = rec.proc.wait(timeout=30)
    err = rec.proc.stderr.read().strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith(f"xdpscope: {ingress}: the interface vanished during the session"), err
    with sqlite3.connect(rec.out) as db:
        faults = json.loads(db.execute("SELECT value FROM meta WHERE key = 'faults'").fetchone()[0])
    assert [(f["device"], f["role"], f["what"]) for f in faults] == [(ingress, "ingress", "vanished")]
    s = json.loads(run_cli("summary", str(rec.out), "--json").stdout)
    assert s["samples"] >= 5


@pytest.mark.kernel
def test_the_agent_reports_targets_going_down_and_detaches_when_the_ingress_vanishes(agent, veths):
    ingress, target = veths
    assert agent.call("hello")["ok"]
    base = held(agent.p.pid)
    assert agent.call("attach", iface=ingress, program="redirect", targets=[target], hz=20)["ok"]
    with IPRoute() as ip:
        ip.link("set", index=ip.link_lookup(ifname=target)[0], state="down")
    while not agent.events("fault"):
        agent.read()
    assert [(f["device"], f["role"], f["what"]) for f in agent.events("fault")] == [(target, "target", "down")]
    delete_link(ingress)
    while not agent.events("detached"):
        agent.read()
    faults = [(f["device"], f["role"], f["what"]) for f in agent.events("fault")]
    assert faults == [(target, "target", "down"), (ingress, "ingress", "vanished")]
    assert agent.events("detached")[0]["reason"].startswith(f"{ingress}: the interface vanished during the session")
    assert any(e["level"] == "warning" and e["message"].startswith(f"{ingress} (ingress) vanished")
               for e in agent.events("log"))
    assert held(agent.p.pid) == base
    assert agent.alive()


# --- pure logic: the checks in front of the compiler ---------------------------------------------
def _insn(code: int, src: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, src << 4, 0, imm)


def test_bytecode_reaches_only_its_own_maps_and_allowed_helpers():
    from backend.kernel.compile import check_bytecode
    from backend.errors import XdpscopeError
    exit_ = _insn(0x95)
    ok = _insn(0x18, 1, 7) + _insn(0, 0, 0) + _insn(0x85, 0, 1) + _insn(0x85, 0, 6) + exit_
    check_bytecode(ok, {7}, "p.c")   # its own map, map_lookup_elem, trace_printk
    bad = {"a map that is not its own": _insn(0x18, 1, 3) + _insn(0, 0, 0) + exit_,
           "kernel objects": _insn(0x18, 3, 1234) + _insn(0, 0, 0) + exit_,
           "kfunc": _insn(0x85, 2, 77) + exit_,
           "bpf_probe_read_kernel is not allowed": _insn(0x85, 0, 113) + exit_,
           "bpf_get_current_task is not allowed": _insn(0x85, 0, 35) + exit_,
           "outside the XDP function": _insn(0x85, 1, 50) + exit_}
    for why, code in bad.items():
        with pytest.raises(XdpscopeError, match=why):
            check_bytecode(code, {7}, "p.c")


def test_source_names_are_display_names_only():
    from backend.kernel.programs import display_name
    assert display_name('x.c"\n#include "/etc/shadow"\n//') == "program.c"
    assert display_name('x.c"\n#include "/etc/shadow') == "shadow"
    assert display_name("/root/private/secret.c") == "secret.c"
    assert display_name("..") == "program.c" and display_name("") == "program.c"
    assert display_name("a" * 300) == "a" * 64
