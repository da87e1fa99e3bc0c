"""The engine as JSON lines on stdin/stdout (docs/agent-protocol.md): what the GUI drives."""
from __future__ import annotations

import json
import os
import platform
import socket
import sys
import threading
from typing import IO, Callable

from backend import injector, kernel, nic, programs
from backend.errors import XdpscopeError
from backend.session import VERSION, Session, SessionConfig, read_user_program

PROTOCOL = 1


class Agent:
    def __init__(self, out: IO[str], observer=None):
        self.out = out
        self.observer = observer  # sees attached(meta) and every sample(s), e.g. backend.metrics
        self.lock = threading.Lock()
        self.session: Session | None = None
        self.sampler: threading.Thread | None = None

    def send(self, msg: dict) -> None:
        line = json.dumps(msg, separators=(",", ":"))
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()

    def event(self, name: str, **fields) -> None:
        self.send({"event": name, **fields})

    # --- commands -------------------------------------------------------------------------
    def cmd_hello(self, req: dict):
        return {"protocol": PROTOCOL, "version": VERSION, "host": socket.gethostname(),
                "kernel": platform.release(), "root": kernel.is_root()}

    def cmd_doctor(self, req: dict):
        from backend import doctor
        return doctor.run()

    def cmd_interfaces(self, req: dict):
        from backend import doctor
        return [doctor.interface_report(i) for i in nic.interfaces()]

    def cmd_programs(self, req: dict):
        return [{"name": n, "description": d} for n, d in programs.BUILTINS.items()]

    def cmd_attach(self, req: dict):
        if self.session is not None:
            raise XdpscopeError("already attached: detach first")
        if req.get("program") == "watch":
            spec = None
        elif req.get("program") == "user":
            spec = programs.ProgramSpec(name="user", source=req.get("source", ""),
                                        source_name=req.get("source_name", "program.c"))
        elif str(req.get("program", "")).endswith(".c"):
            spec = read_user_program(req["program"])
        else:
            spec = programs.ProgramSpec(name=str(req.get("program", "")))
        if spec is not None:
            spec.targets = list(req.get("targets") or [])
            spec.policy = req.get("policy", "rr")
            spec.mix = {k.upper(): int(v) for k, v in (req.get("mix") or {}).items()}
        cfg = SessionConfig(str(req.get("iface", "")), spec, req.get("mode", "auto"),
                            float(req.get("hz", 10)), bool(req.get("run_time")),
                            bool(req.get("trace_redirects")), bool(req.get("force")),
                            bool(req.get("prepare_targets")))
        session = Session(cfg)
        try:
            meta = session.start()
        except BaseException:
            session.close()
            raise
        self.session = session
        if self.observer is not None:
            self.observer.attached(meta)
        self.sampler = threading.Thread(target=self._stream, args=(session,), daemon=True)
        self.sampler.start()
        return meta

    def _stream(self, session: Session) -> None:
        try:
            session.run(self._sample)
        except Exception as e:  # a failing collector must not kill the agent silently
            self.event("log", level="error", message=f"sampling stopped: {one_line(e)}")

    def _sample(self, s) -> None:
        if self.observer is not None:
            self.observer.sample(s)
        self.event("sample", sample=s.to_dict())

    def cmd_detach(self, req: dict):
        self.detach("detach requested")
        return {}

    def detach(self, reason: str) -> None:
        if self.session is None:
            return
        self.session.stop()
        self.sampler.join(timeout=5)
        self.session.close()
        self.session = self.sampler = None
        self.event("detached", reason=reason)

    def cmd_inject(self, req: dict):
        return injector.inject(str(req.get("iface", "")), int(req.get("count", 0)), int(req.get("batch", 64)),
                               int(req.get("size", 64)), int(req.get("flows", 1)), req.get("cpu")).to_dict()

    def cmd_lab(self, req: dict):
        from backend import lab
        kernel.require_root("lab")
        prefix, action = req.get("prefix", "xs"), req.get("action", "status")
        if action == "up":
            return lab.up(prefix, int(req.get("targets", 3))).to_dict()
        if action == "down":
            return {"removed": lab.down(prefix)}
        st = lab.status(prefix)
        return st.to_dict() if st else None

    # --- dispatch -------------------------------------------------------------------------
    SLOW = {"inject", "lab"}   # run in a thread: samples keep streaming meanwhile

    def handle(self, line: str) -> bool:
        """Handle one request line; False when the agent should exit."""
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as e:
            self.send({"id": None, "ok": False, "error": f"bad request: {one_line(e)}"})
            return True
        rid, cmd = req.get("id"), req.get("cmd")
        if cmd == "stop":
            self.detach("agent stopping")
            self.send({"id": rid, "ok": True, "result": {}})
            return False
        fn: Callable | None = getattr(self, f"cmd_{cmd}", None) if isinstance(cmd, str) else None
        if fn is None:
            self.send({"id": rid, "ok": False, "error": f"unknown command {cmd!r}"})
        elif cmd in self.SLOW:
            threading.Thread(target=self.reply, args=(rid, fn, req), daemon=True).start()
        else:
            self.reply(rid, fn, req)
        return True

    def reply(self, rid, fn: Callable, req: dict) -> None:
        try:
            self.send({"id": rid, "ok": True, "result": fn(req)})
        except XdpscopeError as e:
            self.send({"id": rid, "ok": False, "error": str(e)})
        except Exception as e:
            self.send({"id": rid, "ok": False, "error": f"{type(e).__name__}: {one_line(e)}"})


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def serve(inp: IO[str], out: IO[str], observer=None) -> int:
    agent = Agent(out, observer)
    agent.event("ready", protocol=PROTOCOL, version=VERSION, root=kernel.is_root(), pid=os.getpid())
    try:
        for line in inp:
            if line.strip() and not agent.handle(line):
                return 0
    finally:
        agent.detach("agent exiting")
    return 0
