"""A session: one program attached to one interface, its probes, and the collector over them.
`record` and the agent both run the engine through this class."""
from __future__ import annotations

import os
import platform
import re
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from backend.agent import catalog
from backend.agent.catalog import BadRequest
from backend.kernel import attach, bpfsys, build_cache, diagnose, driver_stats, fexit, host, nic, probes, programs
from backend.kernel.collector import MAX_HZ, MIN_HZ, Collector, DeviceWatch, Fault
from backend.data import verdicts
from backend.errors import XdpscopeError
from backend.data.sample import Sample

VERSION = "0.1.0"


@dataclass
class SessionConfig:
    iface: str
    program: programs.ProgramSpec | None   # None: watch the program already attached
    mode: str = "auto"
    hz: float = 10.0
    run_time: bool = False
    trace_redirects: bool = False
    force: bool = False
    prepare_targets: bool = False   # XDP_PASS natively on each redirect target (virtio_net needs it)
    all_devices: bool = False       # probes count every device's polls and flushes, not the session's


IFNAME = re.compile(r"[^\s/:\x00]{1,15}")   # what the kernel takes as an interface name (IFNAMSIZ - 1)
FORCE_REFUSED = ("force is not accepted by the agent: its clients may not attach to or redirect to the uplink "
                 "(run `xdpscope record --force` as root on that machine)")


def session_config(request: dict, cli: bool = False) -> SessionConfig:
    """The one way from a request to a SessionConfig, for the agent's `attach` and the command
    line's `record` alike (main.py turns its options into the same dict). Every value is checked
    against the catalog, never coerced; BadRequest names the argument (`--hz` when cli). The C
    text of a user program arrives as text: nothing here opens a path."""
    label = (lambda n: "--" + n.replace("_", "-")) if cli else (lambda n: n)
    options = {p.name: p for p in catalog.SESSION} | catalog.program_params()   # force: false only, below
    args: dict = {}
    for key, value in request.items():
        if key in ("id", "cmd"):
            continue
        if key in ("iface", "program", "source", "source_name"):
            args[key] = _text(key, value, label(key))
        elif key == "targets":
            args[key] = _targets(value, label(key))
        elif key == "mix":
            args[key] = _mix(value, label(key))
        elif key == "cflags":
            args[key] = _cflags(value, label(key))
        elif key in options:
            args[key] = options[key].check(value, label(key))
        else:
            raise BadRequest(f"unknown argument {str(key)[:32]!r}")
    missing = [k for k in ("iface", "program") if k not in args]
    if missing:
        raise BadRequest(f"missing {', '.join(missing)}")
    if args.get("force") and not cli:
        raise XdpscopeError(FORCE_REFUSED)
    spec = _program_spec(args)
    s = {p.name: args.get(p.name, p.default) for p in catalog.SESSION}
    return SessionConfig(args["iface"], spec, s["mode"], s["hz"], s["run_time"], s["trace_redirects"], s["force"],
                         s["prepare_targets"], s["all_devices"])


def _program_spec(args: dict) -> programs.ProgramSpec | None:
    program = args["program"]
    if program != "user" and ("source" in args or "source_name" in args):
        raise BadRequest("source and source_name go with program \"user\"")
    if program == "watch":
        return None
    if program == "user":
        if "source" not in args:
            raise BadRequest("program \"user\" needs source (the C text)")
        spec = programs.ProgramSpec(name="user", source=args["source"],
                                    source_name=programs.display_name(args.get("source_name") or "program.c"))
    elif program.endswith(".c") or "/" in program:
        raise BadRequest("the agent opens no file a client names: send program \"user\" "
                         "with source (the C text) and source_name")
    else:
        spec = programs.ProgramSpec(name=program)
    spec.targets = args.get("targets", [])
    spec.policy = args.get("policy", catalog.POLICY.default)
    spec.mix = args.get("mix", {})
    for name in ("cflags", "function", "devmap"):   # a user program's own options
        if args.get(name):
            setattr(spec, name, args[name])
    programs.validate(spec)
    return spec


_LIMITS = {"program": 4096, "source": catalog.MAX_SOURCE, "source_name": 255}


def _text(key: str, value, label: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{label} must be a string, not {catalog._kind(value)}")
    most = _LIMITS.get(key, 15)
    if len(value) > most:
        raise BadRequest(f"{label} is longer than {most} characters")
    if key == "iface" and not IFNAME.fullmatch(value):
        raise BadRequest(f"{label} {value[:32]!r} is not a valid value")
    return value


def _targets(value, label: str) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest(f"{label} must be a list, not {catalog._kind(value)}")
    if len(value) > catalog.MAX_TARGETS:
        raise BadRequest(f"{label}: at most {catalog.MAX_TARGETS} items")
    return [_text("iface", v, f"{label}[{i}]") for i, v in enumerate(value)]


def _mix(value, label: str) -> dict[str, int]:
    """{"PASS": 40, ...}, or the command line's PASS=40,... text."""
    if isinstance(value, str):
        return catalog.parse_mix(value, label)
    if not isinstance(value, dict):
        raise BadRequest(f"{label} must be an object of verdict: percent, not {catalog._kind(value)}")
    if len(value) > len(catalog.VERDICTS):
        raise BadRequest(f"{label}: at most {len(catalog.VERDICTS)} verdicts")
    pct = catalog.Param("pct", "int", min=0, max=100)
    return {k[:16].upper(): pct.check(v, f"{label}[{k[:16]}]") for k, v in value.items()}


def _cflags(value, label: str) -> list[str]:
    """One string split like a shell (as --cflags takes it), or a list of strings."""
    if isinstance(value, str):
        catalog.param(catalog.USER, "cflags").check(value, label)
        try:
            return shlex.split(value)
        except ValueError as e:
            raise BadRequest(f"{label}: {e}") from None
    if not isinstance(value, list) or len(value) > 256 or not all(isinstance(f, str) and len(f) <= 4096 for f in value):
        raise BadRequest(f"{label} must be a string (or a list of at most 256 strings)")
    return value


class Session:
    """Owns every kernel object it creates (bcc modules with their programs, maps and probe fds,
    links, stats and program fds) and closes all of them in close(): after a detach, a failed
    start at any stage, or the end of the process."""

    def __init__(self, cfg: SessionConfig):
        if isinstance(cfg.hz, bool) or not isinstance(cfg.hz, (int, float)) or not MIN_HZ <= cfg.hz <= MAX_HZ:
            raise XdpscopeError(f"--hz must be between {MIN_HZ} and {MAX_HZ}")
        self.cfg = cfg
        self.meta: dict = {}
        self._loaded: programs.LoadedProgram | None = None
        self._probes: probes.Probes | None = None
        self._attachment: attach.Attachment | None = None
        self._target_links: list[attach.Attachment] = []
        self._target_prog_fd = -1
        self._stats_fd = -1
        self._watched_fd = -1
        self._fexit: fexit.Fexit | None = None   # watching: counts the watched program's returns
        self._stop = threading.Event()
        self._devices: DeviceWatch | None = None
        self.collector: Collector | None = None
        self.faults: list[Fault] = []          # interfaces that vanished, went down or came back
        self.end_reason = ""                   # why run() ended by itself (the ingress vanished)
        self.on_fault: Callable[[Fault], None] | None = None   # called in run()'s thread

    def start(self) -> dict:
        """Compile, attach (or find the watched program) and take the baseline read;
        returns the session metadata. On failure everything created so far is closed."""
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> dict:
        host.require_root("attaching XDP programs" if self.cfg.program else "watching XDP")
        cfg = self.cfg
        iface = nic.interface(cfg.iface)
        targets: list[nic.Interface] = []
        if cfg.program is not None:
            attach.check_allowed(iface, cfg.program.name, cfg.force)
            programs.validate(cfg.program)
            if cfg.program.name != "cpumap":   # cpumap targets are CPU ids
                targets = [nic.interface(t) for t in cfg.program.targets]
                for t in targets:
                    attach.check_target(t, cfg.force)
        headers = host.use_headers()
        if cfg.run_time:
            self._stats_fd = bpfsys.enable_run_stats()
        if cfg.program is None:
            meta = self._watch(iface)
        else:
            meta = self._attach(iface, targets)
        self._devices = DeviceWatch([(iface.name, iface.ifindex, "ingress"),
                                     *[(t.name, t.ifindex, "target") for t in targets]])
        self.collector.baseline()
        self.meta = {
            "host": socket.gethostname(), "kernel": platform.release(), "version": VERSION,
            "iface": iface.name, "ifindex": iface.ifindex, "driver": iface.driver, **meta,
            # the NIC's XDP facts (virtio feature bits, queues, native support and why), for reports
            "native": diagnose.native_support(iface.name, iface.ifindex, iface.driver, iface.mtu),
            "requested_mode": cfg.mode, "hz": cfg.hz, "cpus": os.cpu_count(),
            "probes": self.collector.probes.available, "probes_enabled": self.collector.probes.enabled,
            "probe_devices": self.collector.probes.describe(),
            "verdicts_from": self.collector.verdicts_from, "verdict_method": self.collector.verdict_method,
            "headers": headers.note,
            "run_time": cfg.run_time, "started": time.time(),
        }
        return self.meta

    def _attach(self, iface: nic.Interface, targets: list[nic.Interface]) -> dict:
        cfg = self.cfg
        where = dict(targets=[t.ifindex for t in targets], all_devices=cfg.all_devices)
        if cfg.program.name not in ("user", "cpumap"):   # probes independent of the program's build:
            with build_cache.prefetch(programs.source_of(cfg.program), programs.cflags_of(cfg.program),
                                      f"program '{cfg.program.name}'"):   # it compiles in a child meanwhile
                self._probes = probes.load(iface.ifindex, cfg.trace_redirects, cpumap_id=0, **where)
                self._loaded = programs.load(cfg.program, nic.ifindex_of)
        else:
            self._loaded = programs.load(cfg.program, nic.ifindex_of)
            # a user program's fan-out only the per-packet xdp_redirect probe can tell (it names no slot)
            fanout_tp = cfg.trace_redirects or self._loaded.counted_slots() < len(cfg.program.targets)
            self._probes = probes.load(iface.ifindex, fanout_tp, cpumap_id=self._loaded.cpumap_id(), **where)
        loaded, prb = self._loaded, self._probes
        prepared = self._prepare_targets(targets) if cfg.prepare_targets else []
        self._attachment = attach.attach(loaded.fd, iface, cfg.mode)
        self.collector = Collector(loaded, prb, cfg.run_time, iface.name, iface.driver)
        return {"program": cfg.program.name if cfg.program.name != "user" else cfg.program.source_name,
                "params": cfg.program.params(), "mode": self._attachment.mode,
                "mode_note": self._attachment.note, "source": "live", "prepared_targets": prepared,
                "targets": [self.collector.target_name(i) for i in range(len(cfg.program.targets))],
                **({"user_maps": {"sampled": [m.name for m in loaded.maps], "not_sampled": loaded.maps_skipped}}
                   if cfg.program.name == "user" else {})}

    def _prepare_targets(self, targets: list[nic.Interface]) -> list[str]:
        """Some drivers (virtio_net) accept XDP frames through ndo_xdp_xmit only while an XDP
        program is attached to them: attach an XDP_PASS program natively (bpf_link, for this
        session) to each redirect target that has no XDP program yet. Returns the interfaces prepared."""
        done = []
        for target in targets:
            target = nic.interface(target.name)   # its XDP state now
            if target.xdp["attached"]:
                continue  # it already has a program, so it already accepts frames
            if self._target_prog_fd < 0:
                self._target_prog_fd = bpfsys.load_xdp_pass()  # no compile: 2 instructions
            try:
                self._target_links.append(attach.attach(self._target_prog_fd, target, "native"))
            except XdpscopeError as e:
                raise XdpscopeError(f"--prepare-targets: {e}") from None
            done.append(target.name)
        return done

    def _watch(self, iface: nic.Interface) -> dict:
        """Observe the program someone else attached: nothing is replaced. Fan-out comes from
        the per-packet xdp_redirect probe, verdicts from the driver's counters."""
        prog_id = iface.xdp["prog_id"]
        if not prog_id:
            raise XdpscopeError(f"{iface.name}: no XDP program attached to watch")
        try:
            self._watched_fd = bpfsys.prog_fd_by_id(prog_id)
        except OSError as e:
            raise XdpscopeError(f"{iface.name}: its XDP program (id {prog_id}) is gone: {e.strerror}") from None
        info = bpfsys.prog_info(self._watched_fd)
        self._probes = prb = probes.load(iface.ifindex, trace_redirects=True, all_devices=self.cfg.all_devices,
                                         prog_fd=self._watched_fd)
        try:   # exact where the kernel lets BPF trace the program (backend/kernel/fexit.py)
            self._fexit = fexit.attach(self._watched_fd)
        except OSError:
            self._fexit = None   # no trampolines (EPERM) or no BTF: the driver's counters
        method = verdicts.method(True, iface.xdp["mode"], iface.driver, platform.release(), self._fexit is not None)
        if not verdicts.is_exact(method) and self._stats_fd < 0:   # the run count gives the total
            self._stats_fd = bpfsys.enable_run_stats()
        self.collector = Collector(None, prb, self._stats_fd >= 0, iface.name, iface.driver, self._watched_fd)
        self.collector.verdict_method, self.collector.fexit = method, self._fexit
        return {"program": f"watch: {info.name.decode(errors='replace') or '?'} (id {prog_id})",
                "params": {"prog_id": prog_id, "prog_name": info.name.decode(errors="replace")},
                "mode": iface.xdp["mode"], "mode_note": "", "source": "watch", "targets": []}

    def run(self, emit: Callable[[Sample], None]) -> None:
        """Stream samples until stop(), or until the ingress vanishes (end_reason says so);
        blocks the calling thread."""
        self.collector.run(self.cfg.hz, emit, self._stop, watch=self._check_devices, before_last=self.detach)

    def _check_devices(self, t: float) -> bool:
        """Report interfaces that vanished or changed state; True when the session cannot go on."""
        for fault in self._devices.check(t):
            self.faults.append(fault)
            self.meta["faults"] = [f.to_dict() for f in self.faults]
            if fault.role == "ingress" and fault.what == "vanished":
                self.end_reason = f"{fault.device}: the interface vanished during the session " \
                                  f"(at t={fault.t:.3f} s)"
            if self.on_fault is not None:
                self.on_fault(fault)
        return bool(self.end_reason)

    def stop(self) -> None:
        self._stop.set()

    def detach(self) -> None:
        """Take our programs off the interfaces (closing the links); the probes stay, for the
        last read. Safe to call twice."""
        if self._attachment is not None:
            self._attachment.close()
            self._attachment = None
        for link in self._target_links:
            link.close()
        self._target_links = []

    def close(self) -> None:
        """Detach and release everything; safe to call twice."""
        self.detach()
        for obj in ("_probes", "_loaded", "_fexit"):
            if getattr(self, obj) is not None:
                getattr(self, obj).close()
                setattr(self, obj, None)
        for name in ("_stats_fd", "_watched_fd", "_target_prog_fd"):
            if getattr(self, name) >= 0:
                os.close(getattr(self, name))
                setattr(self, name, -1)
        driver_stats.forget_all()   # the ethtool sockets the collector's reads keep open
