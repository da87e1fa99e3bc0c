"""XDP programs: the built-in ones in bpf/ and a user's own C file, all with the same verdict
instrumentation (bpf/xdpscope.h), compiled with bcc and loaded, ready to attach."""
from __future__ import annotations

import ctypes
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from backend.kernel import bpfsys, build_cache, user_maps
from backend.kernel.compile import (BPF_DIR, USER_FILE, _logical_lines, build_user, check_cflags, check_user_source,
                                    load_xdp, release)
from backend.data import schema
from backend.errors import XdpscopeError
from backend.data.sample import VERDICTS

BUILTINS = {
    "pass": "every frame XDP_PASS",
    "drop": "every frame XDP_DROP",
    "tx": "swap MACs and XDP_TX back out of the interface",
    "redirect": "XDP_REDIRECT through a devmap to targets (policy rr | hash | cpu)",
    "cpumap": "XDP_REDIRECT through a cpumap to CPUs (targets are CPU ids)",
    "mix": "verdicts in chosen percentages (exact per 100 frames); redirects round-robin",
}
POLICIES = {"rr": 0, "hash": 1, "cpu": 2}
MAX_TARGETS = schema.MAX_TARGETS
CPUMAP_QSIZE = 2048
_LOCAL_INCLUDE = re.compile(r'^#include "([\w.]+)"$', re.M)
# a function definition: NAME(PARAMS) {  (its specifiers and return type stand before it)
_FN_DEF = re.compile(r"\b([A-Za-z_]\w*)\s*\(([^(){};]*)\)\s*\{")
_CTX_PARAM = re.compile(r"\s*(?:const\s+)?struct\s+([A-Za-z_]\w*)\s*\*\s*(?:const\s+)?(?:[A-Za-z_]\w*)?\s*")
_WRAPPER_NAMES = ("xdp_main", "xs_prog")   # the entry point and its callee (bpf/entry.h, _wrap_user)
DEVMAP_TYPES = {14: "devmap", 25: "devmap_hash"}   # enum bpf_map_type
FANOUT = ("redirect", "cpumap", "mix")              # the programs with bpf/fanout.h's xs_conf


@dataclass
class ProgramSpec:
    name: str                                   # a BUILTINS key, or "user"
    targets: list[str] = field(default_factory=list)   # ifnames; CPU ids for cpumap
    policy: str = "rr"
    mix: dict[str, int] = field(default_factory=dict)  # verdict name -> percent (mix)
    source: str = ""                            # user program text
    source_name: str = ""                       # user program file name, for messages
    count: bool = True                          # False: no instrumentation (benchmark baseline)
    cflags: list[str] = field(default_factory=list)    # user program: -D/-U/-I/-w, as bcc takes them
    function: str = ""                          # user program: its XDP function, when it has several
    devmap: str = ""                            # user program: its devmap, filled with targets

    def params(self) -> dict:
        """What the trace and the summary record about the program."""
        p = {"targets": self.targets, "policy": self.policy}
        if self.name == "mix":
            p["mix"] = self.mix
        if self.name == "user":
            p["source_name"] = self.source_name
            p.update({k: v for k, v in (("cflags", self.cflags), ("function", self.function),
                                        ("devmap", self.devmap)) if v})
        return p


@dataclass
class LoadedProgram:
    spec: ProgramSpec
    bpf: object          # bcc.BPF, kept alive: it owns the maps and the program fd
    fd: int
    target_ifindex: dict[str, int]
    maps: list = field(default_factory=list)      # user program: its maps sampled as counters (user_maps.UserMap)
    maps_skipped: dict[str, str] = field(default_factory=dict)   # map name -> why it is not sampled

    def cpumap_id(self) -> int:
        """Kernel id of the program's cpumap, 0 if it has none."""
        return bpfsys.map_id(self.bpf[b"xs_cpumap"].get_fd()) if self.spec.name == "cpumap" else 0

    def counters(self):
        return self.bpf[b"xs_counters"] if self.spec.count else None

    def counted_slots(self) -> int:
        """Redirect targets the program counters count per slot: a user program never names the
        slot it redirects to (its fan-out comes from the xdp_redirect probe)."""
        return 0 if self.spec.name == "user" else len(self.spec.targets)

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
        bad = set(spec.mix) - set(VERDICTS)
        if bad or any(v < 0 for v in spec.mix.values()) or sum(spec.mix.values()) != 100:
            raise XdpscopeError("--mix takes VERDICT=PERCENT pairs of ABORTED, DROP, PASS, TX, REDIRECT "
                                "summing to 100, e.g. PASS=40,DROP=30,TX=10,REDIRECT=20")
    if spec.name != "user" and (spec.cflags or spec.function or spec.devmap):
        raise XdpscopeError("--cflags, --function and --devmap go with a program of your own (a .c file)")
    if spec.name == "user":
        spec.cflags = check_cflags(spec.cflags, spec.source_name or "program.c")
        for what, value in (("--function", spec.function), ("--devmap", spec.devmap)):
            if value and not re.fullmatch(r"[A-Za-z_]\w{0,63}", value):
                raise XdpscopeError(f"{what} {value[:40]!r}: not a C identifier")
        if spec.devmap and not spec.targets:
            raise XdpscopeError(f"--devmap {spec.devmap} needs --targets (the interfaces to put in it)")


def split_cflags(text: str) -> list[str]:
    """--cflags '...': one string split like a shell (quotes, backslashes), as bcc users write
    `cflags=[...]`: e.g. `-w -DRETURNCODE=XDP_DROP -DMAPTYPE='"percpu_array"'`."""
    try:
        return shlex.split(text or "")
    except ValueError as e:
        raise XdpscopeError(f"--cflags: {e}") from None


def xdp_functions(text: str, cflags: list[str] = ()) -> list[str]:
    """The functions bcc could load as XDP programs: defined at file level, not static, with one
    parameter `struct xdp_md *` (the struct tag may be a macro of -D or #define, as bcc's
    examples' `struct CTXTYPE`). In the order they stand in the text."""
    macros = {m.group(1): m.group(2) for m in (re.fullmatch(r"-D([A-Za-z_]\w*)=([A-Za-z_]\w*)", f) for f in cflags) if m}
    code_lines = []
    for _, logical in _logical_lines(text):
        m = re.match(r"\s*#\s*define\s+([A-Za-z_]\w*)\s+([A-Za-z_]\w*)\s*$", logical)
        if m:
            macros.setdefault(m.group(1), m.group(2))
        if not logical.lstrip().startswith(("#", "%:")):
            code_lines.append(re.sub(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'', '""', logical))
    code = "\n".join(code_lines)
    found = []
    for m in _FN_DEF.finditer(code):
        if _depth(code, m.start()) != 0:
            continue
        param = _CTX_PARAM.fullmatch(m.group(2))
        tag = param and param.group(1)
        for _ in range(8):                       # a macro naming a macro
            tag = macros.get(tag, tag)
        if tag != "xdp_md":
            continue
        head = _head(code, m.start())
        if not re.search(r"\bstatic\b", head):
            found.append(m.group(1))
    return found


def _depth(code: str, pos: int) -> int:
    """Brace nesting at pos (literals already blanked)."""
    return code.count("{", 0, pos) - code.count("}", 0, pos)


def _head(code: str, pos: int) -> str:
    """The declaration's specifiers before pos: back to the last `;` or `}` at file level."""
    start = max(code.rfind(";", 0, pos), code.rfind("}", 0, pos)) + 1
    return code[start:pos]


def user_function(spec: ProgramSpec) -> str:
    """The XDP function of a user program: --function, or the only candidate."""
    name = spec.source_name or "program.c"
    found = xdp_functions(spec.source, spec.cflags)
    if spec.function:
        if spec.function not in found:
            listed = f"its XDP functions: {', '.join(found)}" if found else "it has no XDP function"
            raise XdpscopeError(f"{name}: no XDP function {spec.function} "
                                f"(`int {spec.function}(struct xdp_md *ctx)`, not static); {listed}")
        return spec.function
    if not found:
        raise XdpscopeError(f"{name}: no XDP function: expected `int NAME(struct xdp_md *ctx)` (not static)")
    if len(found) > 1:
        raise XdpscopeError(f"{name}: {len(found)} XDP functions ({', '.join(found)}): choose one with --function NAME")
    return found[0]


def _inline(name: str) -> str:
    """A bpf/ file with our own #include "x.h" lines replaced by the files: bcc makes maps and
    programs only of what stands in the main text, not in included headers."""
    text = (BPF_DIR / name).read_text()
    return _LOCAL_INCLUDE.sub(lambda m: _inline(m.group(1)), text)


# Before a built-in program: the uapi in.h and tcp.h that bpf/xdpscope.h includes want
# <linux/socket.h>, and with bcc's include path that is the kernel-internal one (uio.h, mm, ...):
# half of each compile (0.49 -> 0.21 s here) for nothing our programs use. The uapi part is what
# they need of it; the same bytecode comes out. A user's program keeps the full header (AF_INET &co.).
_BUILTIN_PRELUDE = "#include <uapi/linux/socket.h>\n#define _LINUX_SOCKET_H\n"


def source_of(spec: ProgramSpec) -> str:
    """Full C text: instrumentation header, the program, the counting entry point."""
    if spec.name == "user":
        return "\n".join([_inline("xdpscope.h"), _wrap_user(spec.source, user_function(spec)),
                          _inline("entry.h"), ""])
    return "\n".join([_BUILTIN_PRELUDE + _inline("xdpscope.h"), _inline(f"{spec.name}.c"), _inline("entry.h"), ""])


def _wrap_user(text: str, func: str) -> str:
    """Make the user's XDP function an inline callee of ours without changing a byte of its text
    (so clang's lines and columns are the user's): a static always-inline declaration before it
    gives its definition internal linkage, so bcc neither loads it as a program of its own nor
    keeps it out of line. The file is named USER_FILE to the compiler (compile maps it back)."""
    if func in _WRAPPER_NAMES:
        raise XdpscopeError(f"the XDP function may not be named {func} (xdpscope's entry point): rename it")
    return (f"static __always_inline int {func}(struct xdp_md *ctx);\n"
            f'#line 1 "{USER_FILE}"\n{text}\n#line 1 "xdpscope-wrapper"\n'
            "static __always_inline int xs_prog(struct xdp_md *ctx, u32 *slot)\n"
            f"{{ return {func}(ctx); }}")


def cflags_of(spec: ProgramSpec) -> list[str]:
    """The -D flags: sizes from the schema only. The session's own choices (target count, policy,
    mix) are run-time values in the program's xs_conf map (_fill_conf), so one build of each
    built-in program serves every session."""
    return [*schema.cflags(), *([] if spec.count else ["-DXS_NO_COUNT"])]


def load(spec: ProgramSpec, ifindex_of) -> LoadedProgram:
    """Compile, verify and fill the redirect maps. ifindex_of(name) resolves target names."""
    validate(spec)
    if spec.name == "user":
        spec.source_name = display_name(spec.source_name)
        check_user_source(spec.source, spec.source_name)
        bpf, fd = build_user(source_of(spec), [*cflags_of(spec), *spec.cflags], spec.source_name, spec.source)
    else:
        what = f"program '{spec.name}'"
        bpf = build_cache.compile_bpf(source_of(spec), cflags_of(spec), what)
        fd = -1
    loaded = LoadedProgram(spec, bpf, fd, {})
    try:
        if fd < 0:
            loaded.fd = load_xdp(bpf, "xdp_main", what)
        loaded.target_ifindex = _fill_maps(bpf, spec, ifindex_of)
        if spec.name == "user":
            loaded.maps, loaded.maps_skipped = user_maps.select(user_maps.describe(bpf), user_maps.possible_cpus())
    except BaseException:
        loaded.close()
        raise
    return loaded


def _fill_maps(bpf, spec: ProgramSpec, ifindex_of) -> dict[str, int]:
    u32 = ctypes.c_uint32
    if spec.name in FANOUT:
        _fill_conf(bpf[b"xs_conf"], spec)
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
    if spec.name == "user":
        return _fill_user_devmap(bpf, spec, ifindex_of) if spec.devmap else {}
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


def _fill_conf(table, spec: ProgramSpec) -> None:
    """bpf/fanout.h's struct xs_conf: what -D flags once said, now read by the program per frame."""
    conf = table.Leaf()
    conf.ntargets = max(1, len(spec.targets))      # the program never divides by zero
    conf.policy = POLICIES[spec.policy]
    for i, verdict in enumerate(VERDICTS):         # index = the XDP verdict's value
        conf.mix[i] = spec.mix.get(verdict, 0) if spec.name == "mix" else 0
    table[table.Key(0)] = conf


def _fill_user_devmap(bpf, spec: ProgramSpec, ifindex_of) -> dict[str, int]:
    """--devmap NAME: the user's devmap gets the targets in its slots 0..n-1 (a devmap_hash: keyed
    by ifindex), as the program's own loader would have filled it."""
    found = {m.name: m for m in user_maps.describe(bpf)}
    m = found.get(spec.devmap)
    if m is None:
        raise XdpscopeError(f"--devmap {spec.devmap}: {spec.source_name} has no map of that name "
                            f"(its maps: {', '.join(sorted(found)) or 'none'})")
    if m.type_id not in DEVMAP_TYPES:
        raise XdpscopeError(f"--devmap {spec.devmap}: not a devmap (map type {m.type_id})")
    if m.type_id == 14 and len(spec.targets) > m.max_entries:
        raise XdpscopeError(f"--devmap {spec.devmap}: {len(spec.targets)} targets, it holds {m.max_entries}")
    resolved = {name: ifindex_of(name) for name in spec.targets}
    table = bpf[spec.devmap.encode()]
    for slot, name in enumerate(spec.targets):
        key = resolved[name] if m.type_id == 25 else slot
        try:
            table[table.Key(key)] = table.Leaf(resolved[name])
        except Exception as e:
            raise XdpscopeError(f"--devmap {spec.devmap}: {name} cannot be a redirect target: {e}") from None
    return resolved


def prewarm() -> list[int]:
    """Compile every built-in program and the probes their sessions load into the build cache, in
    children, once at agent start (build_cache.prewarm): the first Attach of any of them, with any
    targets, policy or mix, then builds from kept output. The most used first."""
    from backend.kernel import probes   # the agent's import, not every command's

    def program(name: str):
        spec = ProgramSpec(name=name)
        return lambda: build_cache.compile_bpf(source_of(spec), cflags_of(spec), f"program '{name}'")
    # the probes of a session without and with a cpumap (its id never matters: the child stops at the compile)
    jobs = [program("redirect"), lambda: probes.load(1, cpumap_id=0), program("mix"), program("cpumap"),
            lambda: probes.load(1, cpumap_id=1), program("tx"), program("drop"), program("pass")]
    return build_cache.prewarm(jobs)
