"""A blocking client of the agent (docs/agent-protocol.md) for the command line: the agent runs as
a child process, here (`xdpscope agent --stdio`) or on another machine over ssh (backend/agent/remote.py),
and `record` / `doctor` talk to it in JSON lines. The trace is written here, from the agent's
sample events, with the same TraceWriter as the in-process `record`.
"""
from __future__ import annotations

import collections
import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from backend.agent import remote
from backend.errors import XdpscopeError
from backend.data.sample import Sample

REPO = Path(__file__).resolve().parents[2]
STDERR_TAIL = 40
READY_TIMEOUT_S = 120.0   # a first run of a remote launcher may still be setting up its venv


def local_command() -> list[str]:
    """The agent on this machine (what `record` could run through this client too)."""
    return [sys.executable, str(REPO / "main.py"), "agent", "--stdio"]


def _ignore_sigint() -> None:
    # Ctrl-C is ours to handle: it must not reach ssh or the agent before we detached cleanly
    # (ssh and Python keep SIGINT ignored when it was ignored at exec)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class AgentConnection:
    """One agent process. Events (sample, detached, log) go to on_event in the reader thread;
    call() blocks until its response. Any death of the process ends every pending call with the
    one-line reason (for a remote: what to install or grant, or "connection lost")."""

    def __init__(self, command: list[str], target: remote.Target | None = None,
                 on_event: Callable[[dict], None] | None = None, log: Callable[[str], None] | None = None):
        self.command = command
        self.target = target
        self.on_event = on_event or (lambda msg: None)
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.ready: dict | None = None
        self.closing = False
        self._next_id = 0
        self._responses: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._eof = False
        self._tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = READY_TIMEOUT_S) -> dict:
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, preexec_fn=_ignore_sigint)
        except OSError as e:
            if self.target is not None:
                raise XdpscopeError(remote.missing_ssh(self.command)) from None
            raise XdpscopeError(f"cannot start the agent ({self.command[0]}): {e.strerror}") from None
        for fn in (self._read_out, self._read_err):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self._threads.append(t)
        with self._cond:
            self._cond.wait_for(lambda: self.ready is not None or self._eof, timeout)
            if self.ready is not None:
                return self.ready
        if not self._eof:
            self.kill()
            raise XdpscopeError(f"{self.where()}: no answer from the agent within {timeout:.0f} s")
        raise XdpscopeError(self.failure())

    def where(self) -> str:
        return str(self.target) if self.target is not None else "agent"

    @property
    def alive(self) -> bool:
        return not self._eof

    def failure(self) -> str:
        """Why the process is gone, in one line."""
        code = self.proc.wait() if self.proc is not None else None
        for t in self._threads:  # the stderr tail is complete once its reader saw EOF
            t.join(timeout=5)
        err = "\n".join(self._tail)
        if self.target is not None:
            status = None if code is not None and code < 0 else code  # < 0: ended by a signal
            return remote.lost(self.target, status, err) if self.ready is not None else \
                remote.explain(self.target, status, err)
        last = next((ln for ln in reversed(self._tail) if ln.strip()), "")
        return f"agent exited with status {code}" + (f": {last}" if last else "")

    def close(self, timeout: float = 30) -> int | None:
        """Ask the agent to stop (it detaches and exits); kill it if it does not."""
        if self.proc is None:
            return None
        self.closing = True
        if self.alive and self.ready is not None:
            try:
                self.call("stop", timeout=timeout)
            except XdpscopeError:
                pass
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait() if self.proc is not None else None

    # -- requests --------------------------------------------------------------------------
    def call(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        """Send a command and wait for its response; an error response or the agent's death
        raises XdpscopeError with the agent's one-line message."""
        with self._cond:
            self._next_id += 1
            rid = self._next_id
        line = json.dumps({"id": rid, "cmd": cmd, **args}, separators=(",", ":")) + "\n"
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass  # the reader sees the end too: the failure below says why
        with self._cond:
            self._cond.wait_for(lambda: rid in self._responses or self._eof, timeout)
            msg = self._responses.pop(rid, None)
        if msg is None:
            if self._eof:
                raise XdpscopeError(self.failure())
            raise XdpscopeError(f"{self.where()}: no answer to {cmd} within {timeout:.0f} s")
        if not msg.get("ok"):
            raise XdpscopeError(f"{self.where()}: {cmd}: {msg.get('error', 'failed')}")
        return msg.get("result")

    # -- reader threads --------------------------------------------------------------------
    def _read_out(self) -> None:
        try:
            for raw in self.proc.stdout:
                if raw.strip():
                    self._handle(raw)
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _handle(self, raw: bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            self._log(f"unreadable line from the agent: {raw[:200]!r}")
            return
        if not isinstance(msg, dict):
            return
        if "event" not in msg and "id" in msg:
            with self._cond:
                self._responses[msg["id"]] = msg
                self._cond.notify_all()
        elif msg.get("event") == "ready":
            with self._cond:
                self.ready = msg
                self._cond.notify_all()
        else:
            self.on_event(msg)

    def _read_err(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self._tail.append(line)
            if self.ready is not None:  # before ready it is kept for the explanation, not echoed
                self._log(line)

    def _log(self, line: str) -> None:
        if line and self.log is not None:
            self.log(f"{self.where()}: {line}")


def connect(host: str | None, xdpscope: str | None, on_event: Callable[[dict], None] | None = None,
            agent_args: list[str] | None = None) -> AgentConnection:
    """A started agent: on host over ssh, else here."""
    if host:
        target = remote.Target.parse(host, xdpscope)
        command = remote.agent_command(target, interactive=sys.stdin.isatty(), agent_args=agent_args)
    else:
        target, command = None, [*local_command(), *(agent_args or [])]
    conn = AgentConnection(command, target, on_event, log=lambda line: print(line, file=sys.stderr))
    conn.start()
    return conn


# -- commands through an agent -------------------------------------------------------------
class _Sink:
    """Where events go while recording: samples to the metrics (if any), then the trace; faults
    into the trace's meta and stderr, as the local `record` does; `detached` ends the recording
    (the agent detached by itself: the ingress vanished)."""

    def __init__(self, writer, exporter) -> None:
        self.writer, self.exporter, self.count = writer, exporter, 0
        self.faults: list[dict] = []
        self.detached: str | None = None   # the agent's reason, once it detached

    def take(self, msg: dict) -> None:
        ev = msg.get("event")
        if ev == "sample":
            s = Sample.from_dict(msg["sample"])
            if self.exporter is not None:
                self.exporter.sample(s)
            self.writer.write(s)
            self.count += 1
        elif ev == "fault":
            self.faults.append({k: v for k, v in msg.items() if k != "event"})
            self.writer.set_meta("faults", self.faults)
            if not (msg.get("role") == "ingress" and msg.get("what") == "vanished"):  # that one ends it: said last
                print(f"xdpscope: {msg.get('message', '')}", file=sys.stderr, flush=True)
        elif ev == "detached":
            self.detached = str(msg.get("reason", "detached"))
        elif ev == "log" and msg.get("message") not in {f.get("message") for f in self.faults}:
            print(f"xdpscope: agent {msg.get('level', 'info')}: {msg.get('message', '')}", file=sys.stderr)

    def drain(self, events: queue.Queue) -> None:
        while True:
            try:
                self.take(events.get_nowait())
            except queue.Empty:
                return


def record(a, request: dict) -> int:
    """`record` through an agent (here or --remote): attach the request (main.record_request),
    write every sample event to the trace until --duration, SIGINT/SIGTERM or the agent's own
    detach (the ingress vanished), detach (its response follows the last sample), stop."""
    from backend.data.trace import TraceWriter
    events: queue.Queue[dict] = queue.Queue()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    exporter = _metrics(a)
    try:
        conn = connect(a.remote, a.remote_xdpscope, on_event=events.put)
    except BaseException:
        if exporter is not None:
            exporter.close()
        raise
    try:
        meta = conn.call("attach", **request)
        if a.remote:
            meta["remote"] = a.remote
        if meta.get("mode_note"):
            print(f"xdpscope: {meta['iface']}: {meta['mode_note']}", file=sys.stderr)
        if exporter is not None:
            exporter.attached(meta)
        with TraceWriter(a.output, meta) as writer:
            sink = _Sink(writer, exporter)
            print("ready", flush=True)
            if a.duration:
                timer = threading.Timer(a.duration, stop.set)
                timer.daemon = True
                timer.start()
            while not stop.is_set() and conn.alive and sink.detached is None:
                try:
                    sink.take(events.get(timeout=0.2))
                except queue.Empty:
                    pass
            sink.drain(events)
            if sink.detached is not None:   # the session ended there: its samples are all in
                raise XdpscopeError(f"{sink.detached}; {a.output} holds the samples until then")
            if not conn.alive:
                raise XdpscopeError(f"{conn.failure()}: {sink.count} samples kept in {a.output}")
            conn.call("detach")  # answered after the session's last sample event
            sink.drain(events)
    finally:
        conn.close()
        if exporter is not None:
            exporter.close()
    return 0


def _metrics(a):
    if not getattr(a, "metrics", None):
        return None
    from backend.agent import metrics
    return metrics.serve(a.metrics)


def doctor(a) -> int:
    """`doctor --remote`: the remote agent's doctor report, printed as the local one is."""
    from backend.agent import doctor as doc
    conn = connect(a.remote, a.remote_xdpscope)
    try:
        report = conn.call("doctor")
    finally:
        conn.close()
    print(json.dumps(report, indent=2) if a.json else doc.format_text(report))
    return 0 if report.get("ok") else 1
