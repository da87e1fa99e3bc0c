"""The engine as JSON lines on stdin/stdout (docs/agent-protocol.md): what the GUI drives.

The client is not trusted beyond "may watch and attach XDP programs to interfaces other than the
uplink" (docs/security.md): every request line is bounded in size and depth, every argument is
type-checked (never coerced), and the agent answers every bad request and stays alive."""
from __future__ import annotations

import json
import math
import os
import platform
import queue
import re
import select
import signal
import socket
import sys
import threading
import time
from typing import IO, Any, Callable

from backend.agent import catalog
from backend.agent import session as session_mod
from backend.agent.catalog import BadRequest
from backend.agent.session import VERSION, Session, session_config
from backend.errors import XdpscopeError
from backend.kernel import host, nic

PROTOCOL = 1
MAX_LINE = 1 << 20          # bytes of one request line, its newline included
MAX_DEPTH = 16              # nesting of arrays and objects in a request
MAX_ID = 2**53              # |id| of a numeric id (exact in every JSON implementation)
MAX_ID_LEN = 128            # characters of a string id
JOIN_S = 5.0                # s to wait for a sampler or an injection to notice a detach

_EOF, _DEAD, _TOO_LONG = object(), object(), object()


# --- request parsing ---------------------------------------------------------------------------
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def json_depth(text: str) -> int:
    """Nesting depth of arrays and objects, counted without recursion (strings skipped)."""
    depth = deepest = 0
    for m in re.finditer(r"[\[\]{}]", _STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text[:20]} is out of range")
    return v


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise ValueError(f"integer {text[:20]}... is out of range")
    return int(text)


def parse_line(raw: bytes) -> dict:
    """One request line -> a JSON object; BadRequest for anything else."""
    try:
        text = raw.rstrip(b"\r\n").decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"bad request: not UTF-8 (byte {e.start})") from None
    if json_depth(text) > MAX_DEPTH:
        raise BadRequest(f"bad request: nested deeper than {MAX_DEPTH}")
    try:
        req = json.loads(text, parse_constant=_no_constant, parse_float=_finite, parse_int=_int)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"bad request: {one_line(e)}") from None
    if not isinstance(req, dict):
        raise BadRequest("bad request: a request is a JSON object")
    return req


def request_id(req: dict) -> str | int | None:
    """The id to echo: a string of at most MAX_ID_LEN characters or an integer within ±2**53."""
    rid = req.get("id")
    if rid is None:
        return None
    if isinstance(rid, str) and len(rid) <= MAX_ID_LEN:
        return rid
    if isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) <= MAX_ID:
        return rid
    raise BadRequest(f"bad request: id must be a string of at most {MAX_ID_LEN} characters "
                     f"or an integer within ±2**53")


# --- argument checks (a wrong type is an error, never coerced): the catalog's ---------------------
def _iface(value: Any, label: str) -> str:
    return session_mod._text("iface", value, label)


def _bool(value: Any, label: str) -> bool:
    return catalog.Param(label, "bool").check(value, label)


SCHEMAS: dict[str, Callable[[dict], dict]] = {
    **dict.fromkeys(("hello", "doctor", "interfaces", "programs", "catalog", "detach", "stop"),
                    lambda req: catalog.checked((), req)),
    "programs_running": lambda req: catalog.checked((), req, extra={"stats": _bool}),
    "attach": lambda req: {"config": session_config(req)},
    "inject": lambda req: catalog.inject_args(req, iface_check=_iface),
    "lab": lambda req: catalog.checked(catalog.LAB, req),
}


def check_args(cmd: str, req: dict) -> dict:
    try:
        return SCHEMAS[cmd](req)
    except BadRequest as e:
        raise BadRequest(f"{cmd}: {e}") from None


def _unsendable(o: Any) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _encoder() -> Callable[[Any], str]:
    """json.dumps(msg, separators=(",", ":"), allow_nan=False), the same text, straight through
    the json module's C encoder (json.dumps runs a JSONEncoder's Python first, for every message:
    a sample every 10 ms). A new one per message: its circular-reference markers are its own."""
    from json.encoder import c_make_encoder, encode_basestring_ascii
    if c_make_encoder is None:   # an interpreter without the C accelerator
        return lambda msg: json.dumps(msg, separators=(",", ":"), allow_nan=False)
    return lambda msg: "".join(c_make_encoder({}, _unsendable, encode_basestring_ascii, None, ":", ",",
                                              False, False, False)(msg, 0))


_dumps = _encoder()


# --- the agent ---------------------------------------------------------------------------------
class Agent:
    def __init__(self, out: IO[str], observer=None):
        self.out = out
        self.observer = observer  # sees attached(meta) and every sample(s), e.g. backend.metrics
        self.lock = threading.Lock()
        self.inbox: queue.Queue = queue.Queue(maxsize=64)
        self.dead = threading.Event()           # the client's end of stdout is gone
        self.session: Session | None = None
        self.sampler: threading.Thread | None = None
        self._injects: dict[threading.Thread, threading.Event] = {}

    def send(self, msg: dict) -> bool:
        """Write one line; False (and the agent is ending) when the client's pipe is gone."""
        try:
            line = _dumps(msg)
        except (ValueError, TypeError) as e:  # never invalid JSON on the wire
            line = json.dumps({"event": "log", "level": "error", "message": f"unsendable message: {one_line(e)}"})
        return self.send_line(line)

    def send_line(self, line: str) -> bool:
        """send() of a message already in JSON (one line)."""
        with self.lock:
            if self.dead.is_set():
                return False
            try:
                self.out.write(line + "\n")
                self.out.flush()
                return True
            except (OSError, ValueError):   # EPIPE, or the stream was closed
                self._client_gone()
                return False

    def _client_gone(self) -> None:
        if not self.dead.is_set():
            self.dead.set()
            if self.session is not None:
                self.session.stop()
            self.post(_DEAD)

    def post(self, item: object) -> None:
        """Hand the main loop something to do; never blocks a sampler or a watcher."""
        try:
            self.inbox.put_nowait(item)
        except queue.Full:
            threading.Thread(target=self.inbox.put, args=(item,), daemon=True).start()

    def event(self, name: str, **fields) -> None:
        self.send({"event": name, **fields})

    def log(self, level: str, message: str) -> None:
        print(f"xdpscope agent: {level}: {message}", file=sys.stderr, flush=True)
        self.event("log", level=level, message=message)

    # --- commands -------------------------------------------------------------------------
    def cmd_hello(self, args: dict):
        return {"protocol": PROTOCOL, "version": VERSION, "host": socket.gethostname(),
                "kernel": platform.release(), "root": host.is_root()}

    def cmd_doctor(self, args: dict):
        from backend.agent import doctor
        return doctor.run()

    def cmd_interfaces(self, args: dict):
        from backend.agent import doctor
        return [doctor.interface_report(i) for i in nic.interfaces()]

    def cmd_programs(self, args: dict):
        """The built-in programs (the catalog's "programs" has them all, with their parameters)."""
        return [{"name": p.name, "description": p.help, "params": [x.to_dict() for x in p.params]}
                for p in catalog.PROGRAMS if p.name != "user"]

    def cmd_catalog(self, args: dict):
        return catalog.answer()

    def cmd_programs_running(self, args: dict):
        """The XDP programs loaded on this machine with the kernel's run counters (bpftop's numbers:
        the client takes deltas). stats true keeps BPF run-time statistics on until stats false or
        the agent's exit, as bpftop does while it runs."""
        from backend.kernel import bpfsys
        host.require_root("listing BPF programs")
        fd = getattr(self, "_stats_fd", -1)
        if args.get("stats") and fd < 0:
            self._stats_fd = bpfsys.enable_run_stats()
        elif args.get("stats") is False and fd >= 0:
            os.close(fd)
            self._stats_fd = -1
        on_iface: dict[int, list[dict]] = {}
        for i in nic.interfaces():
            if i.xdp.get("prog_id"):
                on_iface.setdefault(i.xdp["prog_id"], []).append({"name": i.name, "mode": i.xdp.get("mode", "")})
        progs = []
        for pid in bpfsys.prog_ids():
            try:
                pfd = bpfsys.prog_fd_by_id(pid)
            except OSError:
                continue  # unloaded meanwhile
            try:
                info = bpfsys.prog_info(pfd)
            finally:
                os.close(pfd)
            if info.type == bpfsys.BPF_PROG_TYPE_XDP:
                progs.append({"id": pid, "name": info.name.decode(errors="replace"), "run_cnt": info.run_cnt,
                              "run_time_ns": info.run_time_ns, "ifaces": on_iface.get(pid, [])})
        stats_on = getattr(self, "_stats_fd", -1) >= 0 or (self.session is not None and self.session.cfg.run_time)
        try:  # the sysctl shows only its own switch, not the fds that enable the statistics
            stats_on = stats_on or open("/proc/sys/kernel/bpf_stats_enabled").read().strip() == "1"
        except OSError:
            pass
        return {"t": time.monotonic(), "cpus": os.cpu_count(), "host": socket.gethostname(),
                "stats_on": stats_on, "programs": progs}

    def cmd_attach(self, args: dict):
        if self.session is not None:
            raise XdpscopeError("already attached: detach first")
        cfg = args["config"]   # checked by session_config (SCHEMAS)
        session = Session(cfg)
        meta = session.start()   # closes all it made when it fails
        session.on_fault = self._fault
        self.session = session
        if self.observer is not None:
            self.observer.attached(meta)
        self.sampler = threading.Thread(target=self._stream, args=(session,), daemon=True)
        self.sampler.start()
        return meta

    def _stream(self, session: Session) -> None:
        try:
            session.run(lambda s: self._sample(s, session))
        except Exception as e:  # a failing collector must not kill the agent silently
            self.log("error", f"sampling stopped: {one_line(e)}")
        if session.end_reason:
            self.post(("ended", session))

    def _sample(self, s, session: Session) -> None:
        if self.observer is not None:
            self.observer.sample(s)
        # event("sample", sample=s.to_dict()), the same text, from the collector's JSON of the
        # sample it just made
        self.send_line('{"event":"sample","sample":' + session.collector.to_json(s) + "}")

    def _fault(self, fault) -> None:
        self.event("fault", **fault.to_dict())
        self.log("warning", fault.message)

    def cmd_detach(self, args: dict):
        self.detach("detach requested")
        return {}

    def detach(self, reason: str) -> None:
        """Stop injections into the session's program, stop sampling, close every kernel object."""
        self._cancel_injects()
        if self.session is None:
            return
        session, self.session = self.session, None
        session.stop()
        if self.sampler is not None and self.sampler is not threading.current_thread():
            self.sampler.join(timeout=JOIN_S)
        session.close()
        self.sampler = None
        self.event("detached", reason=reason)

    def _cancel_injects(self) -> None:
        for t, cancel in list(self._injects.items()):
            cancel.set()
        for t in list(self._injects):
            t.join(timeout=JOIN_S)

    def cmd_inject(self, args: dict):
        from backend.agent.inject import run
        return run(args, self._injects.get(threading.current_thread())).to_dict()

    def cmd_lab(self, args: dict):
        from backend.labs import veth
        return veth.command(args.get("action", "status"), args.get("prefix", "xs"), args.get("targets", 3))

    # --- dispatch -------------------------------------------------------------------------
    SLOW = {"inject", "lab"}   # run in a thread: samples keep streaming meanwhile

    def handle(self, raw: bytes) -> bool:
        """Handle one request line; False when the agent should exit."""
        rid = None
        try:
            req = parse_line(raw)
            rid = request_id(req)
            cmd = req.get("cmd")
            if not isinstance(cmd, str):
                raise BadRequest(f"bad request: cmd must be a string, not {catalog._kind(cmd)}")
            if cmd not in SCHEMAS:
                raise BadRequest(f"unknown command {cmd[:32]!r}")
            args = check_args(cmd, req)
        except XdpscopeError as e:
            self.send({"id": rid, "ok": False, "error": str(e)})
            return True
        if cmd == "stop":
            self.detach("agent stopping")
            self.send({"id": rid, "ok": True, "result": {}})
            return False
        fn: Callable = getattr(self, f"cmd_{cmd}")
        if cmd in self.SLOW:
            t = threading.Thread(target=self._slow, args=(rid, fn, args), daemon=True)
            if cmd == "inject":
                self._injects[t] = threading.Event()
            t.start()
        else:
            self.reply(rid, fn, args)
        return True

    def _slow(self, rid, fn: Callable, args: dict) -> None:
        try:
            self.reply(rid, fn, args)
        finally:
            self._injects.pop(threading.current_thread(), None)

    def reply(self, rid, fn: Callable, args: dict) -> None:
        try:
            self.send({"id": rid, "ok": True, "result": fn(args)})
        except XdpscopeError as e:
            self.send({"id": rid, "ok": False, "error": str(e)})
        except Exception as e:
            self.send({"id": rid, "ok": False, "error": f"{type(e).__name__}: {one_line(e)}"})

    def shutdown(self, reason: str) -> None:
        self.detach(reason)
        self._cancel_injects()


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# --- the streams -------------------------------------------------------------------------------
def _raw_lines(fd: int):
    """Lines from a file descriptor read with os.read: no buffered object whose lock a daemon
    reader would hold at interpreter exit. A line longer than MAX_LINE yields _TOO_LONG; its
    bytes are dropped as they come, never held whole."""
    buf, skipping = b"", False
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            if buf and not skipping:
                yield buf
            return
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_LINE:
                    if not skipping:
                        yield _TOO_LONG
                    buf, skipping = b"", True
                break
            line, buf = buf[:nl + 1], buf[nl + 1:]
            if skipping:
                skipping = False
            elif len(line) > MAX_LINE:
                yield _TOO_LONG
            else:
                yield line


def _read_requests(inp, agent: Agent) -> None:
    """Request lines into the agent's inbox, then _EOF."""
    try:
        try:
            lines = _raw_lines(inp.fileno())
        except (AttributeError, OSError, ValueError):
            lines = iter(lambda: inp.readline() or None, None)    # not a file (tests): its readline
        for line in lines:
            if isinstance(line, str):
                line = line.encode()
            if line is _TOO_LONG or line.strip():
                agent.inbox.put(line)
    except (OSError, ValueError):
        pass
    agent.inbox.put(_EOF)


def _watch_output(fd: int, agent: Agent) -> None:
    """Notice at once when the client closes its end of our stdout (POLLERR on a pipe, POLLHUP on
    a socket), not only at the next write."""
    p = select.poll()
    p.register(fd, 0)   # POLLERR and POLLHUP are always reported
    try:
        while not agent.dead.is_set():
            for _, ev in p.poll(1000):
                if ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    with agent.lock:
                        agent._client_gone()
                    return
    except OSError:
        pass


def serve(inp: IO, out: IO[str], observer=None) -> int:
    """Serve one client: 0 after stop or the end of stdin, 1 when the client's stdout pipe died."""
    from backend.kernel import build_cache, programs
    build_cache.enable()   # many sessions in this process: a program or probes compiled once are rebuilt in ms
    programs.prewarm()     # forked children compile the built-in programs and their probes meanwhile
    agent = Agent(out, observer)
    threading.Thread(target=_read_requests, args=(inp, agent), daemon=True, name="requests").start()
    try:
        threading.Thread(target=_watch_output, args=(out.fileno(), agent), daemon=True, name="stdout-watch").start()
    except (AttributeError, OSError, ValueError):
        pass  # not a file (tests): the next failing write notices
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: agent.post(_EOF))
    agent.event("ready", protocol=PROTOCOL, version=VERSION, root=host.is_root(), pid=os.getpid())
    reason = "agent exiting"
    try:
        while True:
            item = agent.inbox.get()
            if item is _EOF:
                return 0
            if item is _DEAD:
                reason = "the client closed the agent's output"
                print(f"xdpscope agent: {reason}: detaching and exiting", file=sys.stderr, flush=True)
                return 1
            if item is _TOO_LONG:
                agent.send({"id": None, "ok": False, "error": f"bad request: a line is longer than {MAX_LINE} bytes"})
            elif isinstance(item, tuple) and item[0] == "ended":
                if agent.session is item[1]:
                    agent.detach(item[1].end_reason)
            elif not agent.handle(item):
                return 0
    finally:
        agent.shutdown(reason)
