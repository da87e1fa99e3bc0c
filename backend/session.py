"""A session: one program attached to one interface, its probes, and the collector over them.
`record` and the agent both run the engine through this class."""
from __future__ import annotations

import os
import platform
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from backend import attach, bpfsys, kernel, nic, probes, programs
from backend.collector import MAX_HZ, MIN_HZ, Collector
from backend.errors import XdpscopeError
from backend.sample import Sample

VERSION = "0.1.0"


@dataclass
class SessionConfig:
    iface: str
    program: programs.ProgramSpec
    mode: str = "auto"
    hz: float = 10.0
    run_time: bool = False
    trace_redirects: bool = False
    force: bool = False


class Session:
    def __init__(self, cfg: SessionConfig):
        if not MIN_HZ <= cfg.hz <= MAX_HZ:
            raise XdpscopeError(f"--hz must be between {MIN_HZ} and {MAX_HZ}")
        self.cfg = cfg
        self.meta: dict = {}
        self._attachment: attach.Attachment | None = None
        self._stats_fd = -1
        self._stop = threading.Event()
        self.collector: Collector | None = None

    def start(self) -> dict:
        """Compile, attach and take the baseline read; returns the session metadata."""
        kernel.require_root("attaching XDP programs")
        cfg = self.cfg
        iface = nic.interface(cfg.iface)
        attach.check_allowed(iface, cfg.program.name, cfg.force)
        programs.validate(cfg.program)
        headers = kernel.use_headers()
        loaded = programs.load(cfg.program, nic.ifindex_of)
        prb = probes.load(iface.ifindex, cfg.trace_redirects)
        if cfg.run_time:
            self._stats_fd = bpfsys.enable_run_stats()
        self._attachment = attach.attach(loaded.fd, iface, cfg.mode)
        self.collector = Collector(loaded, prb, run_stats=cfg.run_time)
        self.collector.baseline()
        self.meta = {
            "host": socket.gethostname(), "kernel": platform.release(), "version": VERSION,
            "iface": iface.name, "ifindex": iface.ifindex, "driver": iface.driver,
            "program": cfg.program.name if cfg.program.name != "user" else cfg.program.source_name,
            "params": cfg.program.params(), "mode": self._attachment.mode,
            "mode_note": self._attachment.note, "requested_mode": cfg.mode, "hz": cfg.hz,
            "cpus": os.cpu_count(), "targets": [self.collector.target_name(i)
                                                for i in range(len(cfg.program.targets))],
            "probes": prb.available, "probes_enabled": prb.enabled, "headers": headers.note,
            "run_time": cfg.run_time, "source": "live", "started": time.time(),
        }
        return self.meta

    def run(self, emit: Callable[[Sample], None]) -> None:
        """Stream samples until stop(); blocks the calling thread."""
        self.collector.run(self.cfg.hz, emit, self._stop)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Detach (closing the link) and release everything; safe to call twice."""
        if self._attachment is not None:
            self._attachment.close()
            self._attachment = None
        if self._stats_fd >= 0:
            os.close(self._stats_fd)
            self._stats_fd = -1


def read_user_program(path: str) -> programs.ProgramSpec:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise XdpscopeError(f"{path}: cannot read program: {e.strerror}") from None
    return programs.ProgramSpec(name="user", source=text, source_name=p.name)
