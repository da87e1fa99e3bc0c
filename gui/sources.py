"""Sources of samples: each owns a model the plots read. Live (agent) and replay (trace) differ
only in how samples reach the model and in their metadata."""
from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal

from backend.sample import Sample

from .agent_client import AgentClient
from .model import AppModel

INJECT_PAUSE_MS = 20  # between background inject runs: leaves the agent time for samples


class Source(QObject):
    kind = "none"
    sig_status = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model = AppModel(parent=self)

    def tick(self) -> None:
        """Called by the UI timer before drawing (replay advances its playhead here)."""

    def set_window(self, seconds: float) -> None:
        """The visible window length changed."""

    def close(self) -> None:
        pass


class LiveSource(Source):
    """Samples streamed by the agent; also drives the agent's commands for the sources panel."""

    kind = "live"
    sig_interfaces = Signal(list)
    sig_programs = Signal(list)
    sig_attached = Signal(dict)     # session metadata from the attach response
    sig_detached = Signal(str)
    sig_lab = Signal(object)        # lab description or None
    sig_error = Signal(str)         # a command failed: one line for the log/status bar
    sig_sample = Signal(object)     # every sample of the attached session (the recorder listens)
    sig_agent = Signal(str, str)    # agent state ("starting", "ready", "dead", "stopped"), message

    def __init__(self, client: AgentClient | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client or AgentClient(parent=self)
        self.client.setParent(self)
        self.attached = False
        self.meta: dict = {}
        self.inject_args: dict | None = None  # set while the background inject loop runs
        self.lab: dict | None = None
        self.state = "stopped"
        self.client.sig_ready.connect(self._ready)
        self.client.sig_sample.connect(self._sample)
        self.client.sig_event.connect(self._event)
        self.client.sig_died.connect(self._died)

    # -- agent -----------------------------------------------------------------------------
    def start(self) -> None:
        self._set_state("starting", " ".join(self.client.commands[0]) if self.client.commands else "")
        self.client.start()

    def stop(self) -> None:
        self.inject_args = None
        self.client.stop()

    def _set_state(self, state: str, message: str = "") -> None:
        self.state = state
        self.sig_agent.emit(state, message)
        self.sig_status.emit(f"agent {state}" + (f": {message}" if message else ""))

    def _ready(self, info: dict) -> None:
        self._set_state("ready", f"pid {info.get('pid', '?')}, protocol {info.get('protocol', '?')}")
        self.refresh()

    def refresh(self) -> None:
        self.client.request("interfaces", self._cb(self.sig_interfaces.emit, "interfaces"))
        self.client.request("programs", self._cb(self.sig_programs.emit, "programs"))
        self.client.request("lab", self._cb(self._lab_result, "lab status"), action="status")

    def _died(self, message: str) -> None:
        self.attached = False
        self.inject_args = None
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
        def ok(meta: Any) -> None:
            self.meta = dict(meta or {})
            self.attached = True
            self.model.reset(self.meta)
            self.model.set_paused(False)
            self.sig_attached.emit(self.meta)
            if then:
                then()
        self.client.request("attach", self._cb(ok, "attach"), **args)

    def detach(self) -> None:
        self.inject_args = None
        self.client.request("detach", self._cb(lambda _: None, "detach"))

    def _event(self, ev: dict) -> None:
        if ev.get("event") == "detached":
            self.attached = False
            self.inject_args = None
            self.sig_detached.emit(str(ev.get("reason", "")))
        elif ev.get("event") == "log":
            self.sig_status.emit(f"agent {ev.get('level', 'info')}: {ev.get('message', '')}")

    def _sample(self, sample: Sample) -> None:
        if self.attached:
            self.model.append(sample)
            self.sig_sample.emit(sample)

    # -- inject and lab --------------------------------------------------------------------
    def inject(self, args: dict, loop: bool = False) -> None:
        self.inject_args = dict(args) if loop else None
        self.client.request("inject", self._inject_done, **args)

    def stop_inject(self) -> None:
        self.inject_args = None

    def _inject_done(self, ok: bool, payload: Any) -> None:
        if not ok:
            self.inject_args = None
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
        self.client.request("interfaces", self._cb(self.sig_interfaces.emit, "interfaces"))

    def run_default(self, hz: int = 20) -> None:
        """The embedded demo: lab up, redirect from the lab ingress to its targets (and to the one
        that fails at flush), with run-time statistics on, inject forever."""
        def attached() -> None:
            # short runs back to back: a steady few hundred kpps that leaves the machine usable
            self.inject({"iface": self.lab["ingress"], "count": 20_000, "batch": 64, "flows": 64}, loop=True)

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
