"""XDP programs: the built-in ones in bpf/ and a user's own C file, all with the same verdict
instrumentation (bpf/xdpscope.h), compiled with bcc and loaded, ready to attach."""
from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field
from pathlib import Path

from backend.kernel import bpfsys
from backend.kernel.compile import BPF_DIR, USER_FILE, build_user, check_user_source, compile_bpf, load_xdp, release
from backend.errors import XdpscopeError
from backend.data.sample import ACTIONS

BUILTINS = {
    "pass": "every frame XDP_PASS",
    "drop": "every frame XDP_DROP",
    "tx": "swap MACs and XDP_TX back out of the interface",
    "redirect": "XDP_REDIRECT through a devmap to targets (policy rr | hash | cpu)",
    "cpumap": "XDP_REDIRECT through a cpumap to CPUs (targets are CPU ids)",
    "mix": "verdicts in chosen percentages (exact per 100 frames); redirects round-robin",
}
POLICIES = {"rr": 0, "hash": 1, "cpu": 2}
MAX_TARGETS = 64
CPUMAP_QSIZE = 2048
_LOCAL_INCLUDE = re.compile(r'^#include "([\w.]+)"$', re.M)
_USER_FN = re.compile(r"^(?P<pre>[ \t]*)int[ \t]+(?P<name>\w+)[ \t]*\([ \t]*struct[ \t]+xdp_md[ \t]*\*", re.M)


@dataclass
class ProgramSpec:
    name: str                                   # a BUILTINS key, or "user"
    targets: list[str] = field(default_factory=list)   # ifnames; CPU ids for cpumap
    policy: str = "rr"
    mix: dict[str, int] = field(default_factory=dict)  # verdict name -> percent (mix)
    source: str = ""                            # user program text
    source_name: str = ""                       # user program file name, for messages
    count: bool = True                          # False: no instrumentation (benchmark baseline)

    def params(self) -> dict:
        """What the trace and the summary record about the program."""
        p = {"targets": self.targets, "policy": self.policy}
        if self.name == "mix":
            p["mix"] = self.mix
        if self.name == "user":
            p["source_name"] = self.source_name
        return p


@dataclass
class LoadedProgram:
    spec: ProgramSpec
    bpf: object          # bcc.BPF, kept alive: it owns the maps and the program fd
    fd: int
    target_ifindex: dict[str, int]

    def cpumap_id(self) -> int:
        """Kernel id of the program's cpumap, 0 if it has none."""
        return bpfsys.map_id(self.bpf[b"xs_cpumap"].get_fd()) if self.spec.name == "cpumap" else 0

    def counters(self):
        return self.bpf[b"xs_counters"] if self.spec.count else None

    def close(self) -> None:
        """Release the program, its maps and every fd bcc holds for them; safe to call twice."""
        bpf, self.bpf, self.fd = self.bpf, None, -1
        release(bpf)


def display_name(name: object) -> str:
    """A client's file name for messages and the trace: a short base name of safe characters.
    It is never pasted into the C text (the compiler sees a fixed name, see compile.USER_FILE)."""
    base = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9._+-]", "_", base).lstrip(".")[:64]
    return base or "program.c"


def validate(spec: ProgramSpec) -> None:
    if spec.name not in BUILTINS and spec.name != "user":
        raise XdpscopeError(f"unknown program '{spec.name}' (choose {', '.join(BUILTINS)} or a .c file)")
    if spec.policy not in POLICIES:
        raise XdpscopeError(f"unknown policy '{spec.policy}' (choose rr, hash or cpu)")
    needs_targets = spec.name in ("redirect", "cpumap") or (spec.name == "mix" and spec.mix.get("REDIRECT"))
    if needs_targets and not spec.targets:
        raise XdpscopeError(f"program '{spec.name}' needs --targets")
    if len(spec.targets) > MAX_TARGETS:
        raise XdpscopeError(f"at most {MAX_TARGETS} targets")
    if spec.name == "mix":
        bad = set(spec.mix) - set(ACTIONS)
        if bad or any(v < 0 for v in spec.mix.values()) or sum(spec.mix.values()) != 100:
            raise XdpscopeError("--mix takes VERDICT=PERCENT pairs of ABORTED, DROP, PASS, TX, REDIRECT "
                                "summing to 100, e.g. PASS=40,DROP=30,TX=10,REDIRECT=20")


def _inline(name: str) -> str:
    """A bpf/ file with our own #include "x.h" lines replaced by the files: bcc makes maps and
    programs only of what stands in the main text, not in included headers."""
    text = (BPF_DIR / name).read_text()
    return _LOCAL_INCLUDE.sub(lambda m: _inline(m.group(1)), text)


def source_of(spec: ProgramSpec) -> str:
    """Full C text: instrumentation header, the program, the counting entry point."""
    if spec.name == "user":
        body = _wrap_user(spec.source, spec.source_name)
    else:
        body = _inline(f"{spec.name}.c")
    return "\n".join([_inline("xdpscope.h"), body, _inline("entry.h"), ""])


def _wrap_user(text: str, name: str) -> str:
    """Make the user's one XDP function an inline callee of ours, on the same line so the
    compiler's line numbers still match the user's file. The file is named USER_FILE to the
    compiler (name is for messages only: compile maps it back)."""
    found = _USER_FN.findall(text)
    if len(found) != 1:
        raise XdpscopeError(f"{name}: expected exactly one XDP function `int f(struct xdp_md *ctx)`, "
                            f"found {len(found)}")
    text = _USER_FN.sub(r"\g<pre>static __always_inline int xs_user_fn(struct xdp_md *", text, count=1)
    return (f'#line 1 "{USER_FILE}"\n{text}\n#line 1 "xdpscope-wrapper"\n'
            "static __always_inline int xs_prog(struct xdp_md *ctx, u32 *slot)\n"
            "{ return xs_user_fn(ctx); }")


def cflags_of(spec: ProgramSpec) -> list[str]:
    flags = [f"-DXS_MAX_TARGETS={MAX_TARGETS}", f"-DXS_NTARGETS={max(1, len(spec.targets))}",
             f"-DXS_POLICY={POLICIES[spec.policy]}"]
    if spec.name == "mix":
        flags += [f"-DXS_MIX_{a}={spec.mix.get(a, 0)}" for a in ACTIONS]
    if not spec.count:
        flags.append("-DXS_NO_COUNT")
    return flags


def load(spec: ProgramSpec, ifindex_of) -> LoadedProgram:
    """Compile, verify and fill the redirect maps. ifindex_of(name) resolves target names."""
    validate(spec)
    if spec.name == "user":
        spec.source_name = display_name(spec.source_name)
        check_user_source(spec.source, spec.source_name)
        bpf, fd = build_user(source_of(spec), cflags_of(spec), spec.source_name, spec.source)
    else:
        what = f"program '{spec.name}'"
        bpf = compile_bpf(source_of(spec), cflags_of(spec), what)
        fd = -1
    loaded = LoadedProgram(spec, bpf, fd, {})
    try:
        if fd < 0:
            loaded.fd = load_xdp(bpf, "xdp_main", what)
        loaded.target_ifindex = _fill_maps(bpf, spec, ifindex_of)
    except BaseException:
        loaded.close()
        raise
    return loaded


def _fill_maps(bpf, spec: ProgramSpec, ifindex_of) -> dict[str, int]:
    u32 = ctypes.c_uint32
    if spec.name == "cpumap":
        # The program's slot is the CPU id, so targets must be CPUs 0..n-1.
        if spec.targets != [str(i) for i in range(len(spec.targets))]:
            raise XdpscopeError("cpumap --targets are CPU ids 0..n-1, e.g. 0,1")
        table = bpf[b"xs_cpumap"]
        for cpu in range(len(spec.targets)):
            try:
                table[u32(cpu)] = u32(CPUMAP_QSIZE)  # value = the CPU's queue size
            except Exception as e:
                raise XdpscopeError(f"cpumap: cannot use CPU {cpu}: {e}") from None
        return {}
    if spec.name in ("redirect", "mix") and spec.targets:
        table = bpf[b"xs_devmap"]
        resolved = {name: ifindex_of(name) for name in spec.targets}
        for slot, name in enumerate(spec.targets):
            try:
                table[u32(slot)] = u32(resolved[name])
            except Exception as e:
                raise XdpscopeError(f"devmap: {name} cannot be a redirect target: {e}") from None
        return resolved
    return {}
