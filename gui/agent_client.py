"""Client of the privileged agent (`xdpscope agent --stdio`, docs/agent-protocol.md).

The agent runs in a QProcess, so nothing here blocks the UI thread: output arrives through
readyRead signals and is turned into Qt signals. The command is configurable (constructor, or
the XDPSCOPE_AGENT environment variable) so tests can run a fake or a failing agent.
"""
from __future__ import annotations

import collections
import json
import os
import shlex
import shutil
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QProcess, QTimer, Signal

from backend.agent import remote
from backend.data.sample import Sample

REPO = Path(__file__).resolve().parent.parent
STDERR_TAIL = 20
Callback = Callable[[bool, Any], None]


def default_commands(repo: Path = REPO) -> list[list[str]]:
    """Candidate agent commands, tried in order until one reaches `ready`:
    directly when root, else through non-interactive sudo, then pkexec (a desktop password prompt)."""
    env = os.environ.get("XDPSCOPE_AGENT")
    if env:
        return [shlex.split(env)]
    agent = [str(repo / "xdpscope"), "agent", "--stdio"]
    if os.geteuid() == 0:
        return [agent]
    cmds = []
    if shutil.which("sudo"):
        cmds.append(["sudo", "-n", *agent])
    if shutil.which("pkexec"):
        cmds.append(["pkexec", *agent])
    return cmds or [agent]


def privilege_methods() -> list[tuple[str, bool]]:
    """The ways up to root the GUI tries when not root, and whether each is installed here."""
    return [("sudo -n", bool(shutil.which("sudo"))), ("pkexec", bool(shutil.which("pkexec")))]


class AgentClient(QObject):
    sig_ready = Signal(dict)                    # the agent's ready event
    sig_sample = Signal(object)                 # Sample
    sig_response = Signal(object, bool, object)  # id, ok, result or error message
    sig_event = Signal(dict)                    # other events: log, detached, ...
    sig_stderr = Signal(str)                    # one line of the agent's log
    sig_died = Signal(str)                      # the agent is gone: why (exit status, stderr tail)

    def __init__(self, commands: list[list[str]] | None = None, parent: QObject | None = None,
                 target: remote.Target | None = None) -> None:
        super().__init__(parent)
        self.commands = commands if commands is not None else default_commands()
        self.target = target  # an agent over ssh: its failures explained (backend.remote), its loss named
        self.lost = False     # a ready remote agent's connection ended unasked
        self.exit_code: int | None = None
        self._exited = False
        self.proc: QProcess | None = None
        self.ready = False
        self.ready_info: dict = {}
        self.command: list[str] = []
        self._next_id = 1
        self._callbacks: dict[Any, Callback | None] = {}
        self._out = b""
        self._err = b""
        self._tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self._candidates: list[list[str]] = []
        self._stopping = False
        self._failures: list[str] = []
        self.attempts: list[tuple[str, str]] = []  # (command, why it failed) of this start, in order

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.state() != QProcess.ProcessState.NotRunning

    def start(self) -> None:
        if self.running:
            return
        self._candidates = [list(c) for c in self.commands]
        self._failures = []
        self.attempts = []
        self._stopping = False
        self._launch_next()

    def _launch_next(self) -> None:
        self.command = self._candidates.pop(0)
        self.ready = self.lost = self._exited = False
        self.exit_code = None
        self._out = self._err = b""
        self._tail.clear()
        p = QProcess(self)
        p.setProgram(self.command[0])
        p.setArguments(self.command[1:])
        p.readyReadStandardOutput.connect(self._read_out)
        p.readyReadStandardError.connect(self._read_err)
        p.finished.connect(self._finished)
        p.errorOccurred.connect(self._error)
        self.proc = p
        p.start()

    def stop(self, timeout_ms: int = 3000) -> None:
        """Ask the agent to stop (it detaches and exits); kill it if it does not within timeout."""
        if not self.running:
            return
        self._stopping = True
        p = self.proc
        if self.ready:
            self.request("stop")
        p.closeWriteChannel()  # end of stdin acts as stop too
        # context p: the timer dies with the process object, never touching a deleted QProcess
        QTimer.singleShot(timeout_ms, p, lambda: p.state() != QProcess.ProcessState.NotRunning and p.kill())

    # -- requests --------------------------------------------------------------------------
    def request(self, cmd: str, callback: Callback | None = None, **args: Any) -> int | None:
        """Send a command; callback(ok, result_or_error) runs when its response arrives."""
        if not self.running:
            if callback:
                callback(False, "agent not running")
            return None
        rid = self._next_id
        self._next_id += 1
        self._callbacks[rid] = callback
        line = json.dumps({"id": rid, "cmd": cmd, **args}, separators=(",", ":")) + "\n"
        self.proc.write(line.encode())
        return rid

    # -- process output --------------------------------------------------------------------
    def _read_out(self) -> None:
        self._out += bytes(self.proc.readAllStandardOutput().data())
        *lines, self._out = self._out.split(b"\n")
        for raw in lines:
            if raw.strip():
                self._handle(raw)

    def _handle(self, raw: bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            self._log(f"agent: unreadable line: {raw[:200]!r}")
            return
        if not isinstance(msg, dict):
            return
        if "id" in msg and "event" not in msg:
            ok = bool(msg.get("ok"))
            payload = msg.get("result") if ok else msg.get("error", "unknown error")
            cb = self._callbacks.pop(msg["id"], None)
            self.sig_response.emit(msg["id"], ok, payload)
            if cb:
                cb(ok, payload)
            return
        ev = msg.get("event")
        if ev == "sample":
            try:
                self.sig_sample.emit(Sample.from_dict(msg["sample"]))
            except (KeyError, TypeError) as e:
                self._log(f"agent: bad sample event: {e}")
        elif ev == "ready":
            self.ready = True
            self.ready_info = msg
            self.sig_ready.emit(msg)
        else:
            self.sig_event.emit(msg)

    def _read_err(self) -> None:
        self._err += bytes(self.proc.readAllStandardError().data())
        *lines, self._err = self._err.split(b"\n")
        for raw in lines:
            self._log(raw.decode(errors="replace").rstrip())

    def _log(self, line: str) -> None:
        if line:
            self._tail.append(line)
            self.sig_stderr.emit(line)

    def stderr_tail(self) -> str:
        return "\n".join(self._tail)

    def _error(self, err: QProcess.ProcessError) -> None:
        if err == QProcess.ProcessError.FailedToStart:
            self._gone(f"cannot start {shlex.join(self.command)}: {self.proc.errorString()}")

    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read_out()
        if self._err:
            self._log(self._err.decode(errors="replace").rstrip())
            self._err = b""
        how = "crashed" if status == QProcess.ExitStatus.CrashExit else f"exited with status {code}"
        self.exit_code = None if status == QProcess.ExitStatus.CrashExit else code
        self._exited = True
        self._gone(f"agent {how}")

    def _gone(self, why: str) -> None:
        was_ready, tail = self.ready, self.stderr_tail()
        self.ready = False
        for rid, cb in list(self._callbacks.items()):
            if cb:
                cb(False, "agent died")
        self._callbacks.clear()
        if self._stopping:
            self.sig_died.emit("agent stopped")
            return
        msg = f"{why}: {tail}" if tail else why
        if self.target is not None:  # ssh ran (or could not): say what ssh and sudo said, in one line
            self.lost = was_ready
            msg = remote.lost(self.target, self.exit_code, tail) if was_ready else \
                remote.explain(self.target, self.exit_code, tail) if self._exited else remote.missing_ssh(self.command)
        self.attempts.append((shlex.join(self.command), msg))
        if not was_ready and self._candidates:  # e.g. sudo -n wants a password: try the next way up
            self._failures.append(f"{shlex.join(self.command)}: {msg}")
            self._launch_next()
            return
        self._failures.append(msg)
        self.sig_died.emit(" | ".join(self._failures[-3:]))
