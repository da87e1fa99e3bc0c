"""The program catalog: every built-in program, its parameters, the session and inject options,
each with its type, default and limits. One declaration serves three readers: the agent checks
requests against it (and answers {"cmd": "catalog"} with it), the CLI builds its options from it,
and the GUI builds its controls from the agent's answer (docs/agent-protocol.md, "catalog").

The limits are the engine's (backend/kernel); tests/test_agent.py checks they agree. Declared
here without importing the kernel layer, so the command line stays quick to start."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from backend.data import modes
from backend.data.modes import mode_name
from backend.data.schema import VERDICTS
from backend.errors import XdpscopeError

MODES = ("auto", "native", "generic")
MODE_ALIASES = modes.ALIASES   # older spellings (iproute2's xdp/xdpgeneric, traces and requests written before)
MAX_TARGETS = 64            # backend/kernel/programs.py
MIN_FRAME, MAX_FRAME = 60, 3000   # backend/kernel/injector.py: a live frame fits one page with headroom
MAX_FLOWS = 65535 - 1024    # injector.MAX_FLOWS: flows differ in the UDP source port, from 1024
MAX_BATCH = 256             # injector.MAX_BATCH: the kernel's limit for live-frame batches
MAX_WIRE_BATCH = 1024       # wire.MAX_BATCH: frames per sendmmsg (UIO_MAXIOV)
MAX_RATE = 1e8              # wire.MAX_RATE, frames/s
MAX_COUNT = 2**31 - 1
MAX_CPU = 4095
MAX_SOURCE = 512 * 1024     # compile.MAX_SOURCE: bytes of a user program's C text


class BadRequest(XdpscopeError):
    """A request (or command line) the catalog refuses: a wrong type, a value out of range."""


def _kind(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(v), type(v).__name__)


@dataclass(frozen=True)
class Param:
    """One option. type: int | float | bool | choice | str. min/max bound numbers (and a str's
    length); choices the values of a choice. cli/agent: where it is offered."""
    name: str
    type: str
    default: Any = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    required: bool = False
    cli: bool = True
    agent: bool = True
    unit: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "default": self.default, "min": self.min, "max": self.max,
                "choices": list(self.choices) if self.choices else None, "help": self.help,
                "required": self.required}

    def check(self, value: Any, label: str) -> Any:
        """The value if it has this parameter's type and is within its limits (never coerced:
        "5" is not an int); BadRequest naming `label` otherwise. null is not recorded (the default)."""
        t = self.type
        if t == "bool":
            if not isinstance(value, bool):
                raise BadRequest(f"{label} must be true or false, not {_kind(value)}")
            return value
        if t in ("str", "choice"):
            if not isinstance(value, str):
                raise BadRequest(f"{label} must be a string, not {_kind(value)}")
            if t == "choice":
                value = mode_name(value) if self.name == "mode" else value
                if value not in self.choices:
                    raise BadRequest(f"{label} must be one of {', '.join(self.choices)}")
            elif self.max is not None and len(value) > self.max:
                raise BadRequest(f"{label} is longer than {self.max:.0f} characters")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (t == "int" and not isinstance(value, int)):
            raise BadRequest(f"{label} must be {'an integer' if t == 'int' else 'a number'}, not {_kind(value)}")
        if not (self.min is None or self.min <= value) or not (self.max is None or value <= self.max):
            raise BadRequest(f"{label} must be between {number_text(self.min)} and {number_text(self.max)}"
                             + (f" {self.unit}" if self.unit else ""))  # NaN fails the comparisons too
        return float(value) if t == "float" else value

    def parse(self, text: str) -> Any:
        """The command line's text as this parameter's type (limits: check, as for the agent)."""
        if self.type == "int":
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{text!r} is not an integer") from None
        if self.type == "float":
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a number") from None
        return mode_name(text) if self.name == "mode" else text


def number_text(v: float | None) -> str:
    if v is None:
        return "any"
    return f"{v:.15g}" if isinstance(v, float) and not v.is_integer() else f"{int(v)}" if math.isfinite(v) else str(v)


@dataclass(frozen=True)
class Program:
    name: str
    help: str
    targets: str = "none"       # none | ifaces | cpus: what --targets names
    params: tuple[Param, ...] = ()
    needs_targets: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "help": self.help, "targets": self.targets,
                "params": [p.to_dict() for p in self.params], "needs_targets": self.needs_targets}


POLICY = Param("policy", "choice", "rr", "how redirect spreads frames over the targets: round robin, "
               "flow hash, or by CPU", choices=("rr", "hash", "cpu"))
MIX = Param("mix", "str", "", "verdict percentages summing to 100, VERDICT=PERCENT pairs of "
            + ", ".join(VERDICTS) + ", e.g. PASS=40,DROP=30,TX=10,REDIRECT=20 (the agent also takes an "
            "object {\"PASS\": 40, ...})", max=200)
USER = (
    Param("cflags", "str", "", "compiler flags for your program, one string split like a shell: -D/-U/-I/-w, "
          "as bcc takes them, e.g. '-w -DRETURNCODE=XDP_DROP'", max=4096),
    Param("function", "str", "", "the XDP function to load when your file has several", max=64),
    Param("devmap", "str", "", "a devmap your program declares, filled with --targets", max=64),
)

PROGRAMS: tuple[Program, ...] = (
    Program("pass", "every frame XDP_PASS"),
    Program("drop", "every frame XDP_DROP"),
    Program("tx", "swap MACs and XDP_TX back out of the interface"),
    Program("redirect", "XDP_REDIRECT through a devmap to targets (policy rr | hash | cpu)", "ifaces",
            (POLICY,), needs_targets=True),
    Program("cpumap", "XDP_REDIRECT through a cpumap to CPUs (targets are CPU ids 0..n-1)", "cpus",
            needs_targets=True),
    Program("mix", "verdicts in chosen percentages (exact per 100 frames); redirects round-robin", "ifaces",
            (MIX,)),
    Program("user", "your own XDP program: its C text (the command line reads a .c file); its verdicts are "
            "counted, its maps sampled", "ifaces", USER),
)

SESSION: tuple[Param, ...] = (
    Param("hz", "float", 10.0, "samples per second", 1, 100, unit=""),
    Param("mode", "choice", "auto", "XDP attach mode; auto: native (in the driver) when possible, else generic",
          choices=MODES),
    Param("run_time", "bool", False, "kernel BPF run-time statistics (ns per run)"),
    Param("trace_redirects", "bool", False, "per-packet xdp_redirect probe (costly)"),
    Param("all_devices", "bool", False, "NAPI polls and devmap flushes of every device in every namespace "
          "(default: the session's devices: ingress, targets and their peers)"),
    Param("prepare_targets", "bool", False, "attach an XDP_PASS program natively to each redirect target for the "
          "session (virtio_net accepts redirected frames only then)"),
    Param("force", "bool", False, "allow non-pass programs on the default-route NIC (command line as root only: "
          "the agent refuses it)", agent=False),
)

INJECT: tuple[Param, ...] = (
    Param("count", "int", None, "frames to inject", 1, MAX_COUNT, required=True),
    Param("batch", "int", 64, "frames per BPF_PROG_TEST_RUN batch; the devmap queues are flushed after each "
          f"batch (--wire: frames per sendmmsg, up to {MAX_WIRE_BATCH})", 1, MAX_BATCH),
    Param("size", "int", 64, "frame size in bytes", MIN_FRAME, MAX_FRAME, unit="bytes"),
    Param("flows", "int", 1, "distinct UDP flows (source ports) the frames cycle through", 1, MAX_FLOWS),
    Param("first_flow", "int", 0, "first flow id (UDP source port 1024+id)", 0, MAX_FLOWS - 1, agent=False),
    Param("cpu", "int", None, "CPU to inject on (default: the first allowed)", 0, MAX_CPU),
    Param("wire", "bool", False, "send the frames from the ingress's veth peer (AF_PACKET), so the driver's NAPI "
          "poll runs the program, instead of BPF_PROG_TEST_RUN"),
    Param("rate", "float", None, "--wire: frames per second (default: as fast as possible)", 0, MAX_RATE,
          unit="frames/s"),
    Param("burst", "int", None, "--wire: send this many frames at once, the bursts paced to --rate", 0,
          MAX_WIRE_BATCH),
)

LAB: tuple[Param, ...] = (
    Param("action", "choice", "status", "up: make the lab (idempotent); down: remove it; status: print it as JSON",
          choices=("up", "down", "status")),
    Param("targets", "int", 3, "number of redirect targets <prefix>-t0..", 1, 32),
    Param("prefix", "str", "xs", "name prefix of the lab's interfaces and namespace (1-6 of [a-z0-9])", max=6),
)


def program(name: str) -> Program | None:
    return next((p for p in PROGRAMS if p.name == name), None)


def builtin_names() -> list[str]:
    return [p.name for p in PROGRAMS if p.name != "user"]


def param(params: tuple[Param, ...], name: str) -> Param:
    return next(p for p in params if p.name == name)


def program_params() -> dict[str, Param]:
    """Every program parameter by name (a name means the same in every program that has it)."""
    return {p.name: p for prog in PROGRAMS for p in prog.params}


def answer() -> dict:
    """The agent's answer to {"cmd": "catalog"}: only what a client may send it."""
    return {"programs": [prog.to_dict() for prog in PROGRAMS],
            "session": [p.to_dict() for p in SESSION if p.agent],
            "inject": [p.to_dict() for p in INJECT if p.agent],
            "modes": {"choices": list(MODES), "aliases": MODE_ALIASES},
            "max_targets": MAX_TARGETS, "verdicts": list(VERDICTS), "max_source": MAX_SOURCE}


def parse_mix(text: str, label: str = "--mix") -> dict[str, int]:
    """PASS=40,DROP=30,... -> {"PASS": 40, "DROP": 30}."""
    mix = {}
    for part in (text or "").split(","):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit():
            raise BadRequest(f"{label}: '{part}' is not VERDICT=PERCENT")
        mix[name.strip().upper()] = int(value)
    return mix


def checked(params: tuple[Param, ...], request: dict, cli: bool = False, extra: dict | None = None) -> dict:
    """request's values checked against params (only those offered to the agent, unless cli);
    extra: other checks by name, fn(value, label) -> value. Unknown names are refused; required
    ones must be there. The result holds what the request gave, defaults left to the caller."""
    offered = {p.name: p for p in params if cli or p.agent}
    out = {}
    for key, value in request.items():
        if key in ("id", "cmd"):
            continue
        label = "--" + str(key).replace("_", "-") if cli else key
        if extra and key in extra:
            out[key] = extra[key](value, label)
        elif key in offered:
            out[key] = offered[key].check(value, label)
        else:
            raise BadRequest(f"unknown argument {str(key)[:32]!r}")
    missing = [p.name for p in offered.values() if p.required and p.name not in out]
    if missing:
        raise BadRequest(f"missing {', '.join(missing)}")
    return out


def inject_args(request: dict, cli: bool = False, iface_check=None) -> dict:
    """An inject request checked (the agent's and the command line's): every option with its
    value or default. --wire takes larger batches (sendmmsg) than BPF_PROG_TEST_RUN."""
    params = INJECT
    if request.get("wire") is True:
        params = tuple(Param(p.name, p.type, p.default, p.help, p.min, MAX_WIRE_BATCH, p.choices, p.required,
                             p.cli, p.agent) if p.name == "batch" else p for p in INJECT)
    args = checked(params, request, cli, {"iface": iface_check} if iface_check else None)
    if iface_check and "iface" not in args:
        raise BadRequest("missing iface")
    return {**{p.name: p.default for p in params}, **args}
