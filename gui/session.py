"""The session controller: the agent's commands for the Sources panel (start/stop the agent,
interfaces, catalog, attach, switch in place, detach, inject, lab) and the embedded demo. It feeds
the samples of the attached session to its LiveSource, which is only a source."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal

from backend.data.sample import Sample

from .agent_client import AgentClient, privilege_methods
from .sources.live import LiveSource

INJECT_PAUSE_MS = 20  # between background inject runs: leaves the agent time for samples
DEMO_PPS = 100_000     # the embedded demo's inject rate (frames/s, through the driver)
INTERFACES_MS = 4000  # the interfaces (and their XDP programs) are read back this often while ready
REPO = Path(__file__).resolve().parent.parent


def privilege_advice(attempts: list[tuple[str, str]]) -> str:
    """What the GUI tried to get a root agent, why each failed, and what the user can do."""
    lines = []
    if attempts:
        lines.append("Tried: " + "; ".join(f"{cmd} → {why.strip() or 'failed'}" for cmd, why in attempts) + ".")
    missing = [name for name, ok in privilege_methods() if not ok]
    if missing:
        lines.append("Not installed here: " + ", ".join(missing) + ".")
    agent = f"{REPO / 'xdpscope'} agent --stdio"
    user = os.environ.get("USER") or "YOUR_USER"
    lines.append("You can: replay a trace (File → Open); run the app as root (sudo ./xdpscope); or let the "
                 f"agent start without a password: echo '{user} ALL=(root) NOPASSWD: {agent}' "
                 "| sudo tee /etc/sudoers.d/xdpscope")
    return " ".join(lines)


def inject_marker_data(args: dict) -> dict:
    """What an inject marker keeps (reports read it): count, size, flows, and the batch of a
    BPF_PROG_TEST_RUN injection, whose devmap queues flush after each batch. Frames through the
    driver flush at the end of each NAPI poll: their sendmmsg batch explains no flush, and is left out."""
    keys = ("count", "size", "flows") if args.get("wire") else ("count", "batch", "size", "flows")
    data = {k: args[k] for k in keys if isinstance(args.get(k), int) and not isinstance(args.get(k), bool)}
    return data if args.get("wire") else data | {"batch": int(args.get("batch", 64))}


def describe_program(meta: dict) -> str:
    return f"{meta.get('program', '?')} on {meta.get('iface', '?')}"


class Session(QObject):
    """One agent (local or over ssh) and the session it runs; `source` holds its samples."""

    sig_status = Signal(str)
    sig_interfaces = Signal(list)
    sig_programs = Signal(list)
    sig_catalog = Signal(dict)      # the agent's program catalog: programs, session and inject options, limits
    sig_attached = Signal(dict)     # session metadata from the attach response
    sig_detached = Signal(str)
    sig_lab = Signal(object)        # lab description or None
    sig_error = Signal(str)         # a command failed: one line for the log/status bar
    sig_agent = Signal(str, str)    # agent state ("starting", "ready", "unprivileged", "dead", "stopped"), message
    sig_switched = Signal(dict)     # the program was switched in place: the new session's metadata

    def __init__(self, client: AgentClient | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client or AgentClient(parent=self)
        self.client.setParent(self)
        self.source = LiveSource(parent=self)
        self.meta: dict = {}
        self.inject_args: dict | None = None  # set while the background inject loop runs
        self.lab: dict | None = None
        self.state = "stopped"
        self.interfaces: list[dict] = []  # the agent's last answer
        self.catalog: dict | None = None  # the agent's last answer to "catalog"
        self.switching = False            # detach then attach of a program switch in progress
        self._iface_timer = QTimer(self)
        self._iface_timer.setInterval(INTERFACES_MS)
        self._iface_timer.timeout.connect(self.refresh_interfaces)
        self.client.sig_ready.connect(self._ready)
        self.client.sig_sample.connect(self._sample)
        self.client.sig_event.connect(self._event)
        self.client.sig_died.connect(self._died)

    @property
    def attached(self) -> bool:
        return self.source.attached

    @property
    def model(self):
        return self.source.model

    # -- agent -----------------------------------------------------------------------------
    def start(self) -> None:
        self._set_state("starting", " ".join(self.client.commands[0]) if self.client.commands else "")
        self.client.start()

    def stop(self) -> None:
        self.inject_args = None
        self.client.stop()

    def _set_state(self, state: str, message: str = "") -> None:
        self.state = self.source.agent_state = state
        self.sig_agent.emit(state, message)
        self.sig_status.emit(f"agent {state}" + (f": {message}" if message else ""))

    def _ready(self, info: dict) -> None:
        how = f"pid {info.get('pid', '?')}, protocol {info.get('protocol', '?')}, via {self.client.command[0]}"
        if info.get("root") is False:  # it runs, but cannot attach anything: say so now, not at Attach
            self._set_state("unprivileged", "the agent runs without root: it cannot attach or inject. "
                            + privilege_advice(self.client.attempts))
        else:
            self._set_state("ready", how)
        self.refresh()
        self._iface_timer.start()

    def refresh(self) -> None:
        self.refresh_interfaces()
        self.client.request("catalog", self._cb(self._catalog, "catalog"))
        self.client.request("programs", self._cb(self.sig_programs.emit, "programs"))
        self.client.request("lab", self._cb(self._lab_result, "lab status"), action="status")

    def _catalog(self, result: Any) -> None:
        if isinstance(result, dict):
            self.catalog = result
            self.sig_catalog.emit(result)

    def refresh_interfaces(self) -> None:
        """Ask the agent for the interfaces and the XDP program on each (never assumed)."""
        if self.client.ready:
            self.client.request("interfaces", self._cb(self._interfaces, "interfaces"))

    def _interfaces(self, result: Any) -> None:
        self.interfaces = [i for i in result if isinstance(i, dict)] if isinstance(result, list) else []
        self.sig_interfaces.emit(self.interfaces)

    def _died(self, message: str) -> None:
        self.source.end()
        self.switching = False
        self.inject_args = None
        self._iface_timer.stop()
        if message != "agent stopped" and os.geteuid() != 0 and not self.client.target:
            message = f"could not start the agent as root. {privilege_advice(self.client.attempts)}"
        self._set_state("stopped" if message == "agent stopped" else "dead", message)

    def _cb(self, on_ok: Callable[[Any], None], what: str) -> Callable[[bool, Any], None]:
        def done(ok: bool, payload: Any) -> None:
            if ok:
                on_ok(payload)
            else:
                self.sig_error.emit(f"{what}: {payload}")
        return done

    # -- session ---------------------------------------------------------------------------
    def attach(self, args: dict, then: Callable[[], None] | None = None) -> None:
        """A new session: the timeline starts at 0 (use switch() to keep it)."""
        def ok(meta: Any) -> None:
            self.meta = dict(meta or {})
            self.source.begin(self.meta, f"attach {describe_program(self.meta)}")
            self.sig_attached.emit(self.meta)
            self.refresh_interfaces()
            if then:
                then()
        self.client.request("attach", self._cb(ok, "attach"), **args)

    def switch(self, args: dict) -> None:
        """Replace the running program in place: detach, attach the new one, and go on on the same
        timeline (the new session's times are shifted to follow the old), with a marker there."""
        if not self.attached:
            self.attach(args)
            return
        self.switching = True
        self.inject_args = None
        old = describe_program(self.meta)

        def attached(ok: bool, meta: Any) -> None:
            self.switching = False
            if not ok:
                self.model.add_marker("error", f"switch failed: {str(meta)[:60]}")
                self.sig_error.emit(f"attach: {meta}")
                self.sig_detached.emit(f"switch from {old} failed")
                self.refresh_interfaces()
                return
            self.meta = dict(meta or {})
            self.source.go_on(self.meta, f"switch to {describe_program(self.meta)}")
            self.sig_switched.emit(self.meta)
            self.sig_attached.emit(self.meta)
            self.refresh_interfaces()

        def detached(ok: bool, payload: Any) -> None:
            if not ok:
                self.switching = False
                self.sig_error.emit(f"detach: {payload}")
                return
            self.client.request("attach", attached, **args)

        self.client.request("detach", detached)

    def detach(self) -> None:
        self.inject_args = None
        self.client.request("detach", self._cb(lambda _: self.refresh_interfaces(), "detach"))

    def _event(self, ev: dict) -> None:
        if ev.get("event") == "detached":
            was = self.attached
            self.source.end()
            self.inject_args = None
            if self.switching:  # the first half of a switch: the session goes on
                return
            if was:
                self.model.add_marker("detach", f"detach ({ev.get('reason', '')})")
            self.sig_detached.emit(str(ev.get("reason", "")))
        elif ev.get("event") == "log":
            if ev.get("level") == "error" and self.attached:
                self.model.add_marker("error", str(ev.get("message", ""))[:60])
            self.sig_status.emit(f"agent {ev.get('level', 'info')}: {ev.get('message', '')}")

    def _sample(self, sample: Sample) -> None:
        self.source.append(sample)

    # -- inject and lab --------------------------------------------------------------------
    def inject(self, args: dict, loop: bool = False) -> None:
        self.inject_args = dict(args) if loop else None
        if self.attached:
            what = f"{args.get('count', 0):,} frames" + (" through the driver" if args.get("wire") else
                                                        f", batch {args.get('batch', 64)}")
            self.model.add_marker("inject", f"inject {what}" + (", repeated" if loop else ""),
                                  data=inject_marker_data(args))
        self.client.request("inject", self._inject_done, **args)

    def stop_inject(self) -> None:
        if self.inject_args is not None and self.attached:
            self.model.add_marker("inject", "inject stopped")
        self.inject_args = None

    def _inject_done(self, ok: bool, payload: Any) -> None:
        if not ok:
            self.inject_args = None
            if self.attached:
                self.model.add_marker("error", f"inject failed: {str(payload)[:60]}")
            self.sig_error.emit(f"inject: {payload}")
            return
        if self.inject_args is not None and self.attached:
            args = self.inject_args
            QTimer.singleShot(INJECT_PAUSE_MS, lambda: self.inject_args is not None
                              and self.client.request("inject", self._inject_done, **args))

    def lab_action(self, action: str, then: Callable[[Any], None] | None = None, **args: Any) -> None:
        def ok(desc: Any) -> None:
            self._lab_result(desc)
            if then:
                then(desc)
        self.client.request("lab", self._cb(ok, f"lab {action}"), action=action, **args)

    def _lab_result(self, desc: Any) -> None:
        self.lab = desc if isinstance(desc, dict) else None
        self.sig_lab.emit(self.lab)
        self.refresh_interfaces()

    # -- the embedded demo -------------------------------------------------------------------
    def run_default(self, hz: int = 20) -> None:
        """The embedded demo: lab up, redirect from the lab ingress to its targets (and to the one
        that fails at flush), with run-time statistics on, inject forever through the driver's
        receive path (frames sent from the ingress's peer: NAPI poll -> driver receive -> program
        -> flush at the end of the poll), so the first thing shown is the real path."""
        def attached() -> None:
            # paced runs of a second back to back: a steady DEMO_PPS that leaves the machine usable
            # (a stop takes effect within a second, when the run in flight ends)
            self.inject({"iface": self.lab["ingress"], "count": DEMO_PPS, "flows": 64, "wire": True,
                         "rate": float(DEMO_PPS)}, loop=True)

        def lab_up(desc: Any) -> None:
            if not isinstance(desc, dict) or not desc.get("ingress"):
                self.sig_error.emit(f"lab up: unexpected answer {desc!r}")
                return
            targets = list(desc.get("targets", []))
            if desc.get("nxtarget"):  # the lab's target whose peer cannot receive: the errors view shows ENXIO
                targets.append(desc["nxtarget"])
            self.attach({"iface": desc["ingress"], "program": "redirect", "targets": targets,
                         "policy": "rr", "mode": "auto", "hz": hz, "run_time": True}, then=attached)

        def ready(_: dict) -> None:
            self.client.sig_ready.disconnect(ready)
            self.lab_action("up", lab_up)

        self.client.sig_ready.connect(ready)
        if not self.client.running:
            self.start()
        elif self.client.ready:
            ready({})

    def close(self) -> None:
        self.stop()
