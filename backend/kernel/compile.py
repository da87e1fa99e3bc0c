"""Compile BPF C with bcc, turning clang and verifier output into a readable error.

Two paths (docs/security.md):
- our own C (bpf/): compiled as root; its tracepoint probes are attached explicitly after the
  compile, so a failure releases everything;
- a client's C (`build_user`): refused before the compile when it reaches outside the header
  directories or declares a tracing function, then compiled and loaded in a sandboxed thread
  (Landlock: reads only beneath the header directories; fsuid nobody; no CAP_SYS_ADMIN), with
  bcc's auto-attach off; its bytecode may use only its own maps and no kernel-memory helper or
  kfunc (check_bytecode). Its diagnostics show only lines of the client's own text.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import json
import re
import resource
import struct
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from backend.kernel import host
from backend.errors import XdpscopeError

ROOT = Path(__file__).resolve().parents[2]
BPF_DIR = ROOT / "bpf"
USER_FILE = "xdpscope-user.c"        # the fixed #line name of a client's text; mapped back to its display name
MAX_SOURCE = 512 * 1024              # bytes of a client's C text
TRIAL_TIMEOUT_S = 120                # the trial compile in a child process (see _trial_compile)
TRIAL_MEMORY = 4 << 30               # its address-space limit (macro bombs)
# bcc attaches functions with these prefixes by itself (BPF._trace_autoload, bcc 0.26) or its macros
# define programs for other hooks (BPF_PROG, KMOD_RET, BPF_ITER): never in a client's XDP program.
AUTOLOAD_PREFIXES = ("kprobe__", "kretprobe__", "tracepoint__", "raw_tracepoint__", "kfunc__",
                     "kretfunc__", "lsm__", "kmod_ret__", "bpf_iter__", "uprobe__", "uretprobe__")
TRACING_MACROS = ("RAW_TRACEPOINT_PROBE", "TRACEPOINT_PROBE", "KFUNC_PROBE", "KRETFUNC_PROBE",
                  "KMOD_RET", "LSM_PROBE", "BPF_PROG", "BPF_ITER", "BPF_KPROBE", "BPF_KRETPROBE")
# identifiers that reach outside the program: pinned maps (bpffs paths), file lookups, pragmas
REFUSED_IDENTIFIERS = ("_Pragma", "__has_include", "__has_include_next", "__has_embed", "__pragma",
                       "BPF_TABLE_PINNED", "BPF_TABLE_PINNED6", "BPF_TABLE_PINNED7", "BPF_QUEUESTACK_PINNED",
                       "BPF_HASH_PINNED", "BPF_ARRAY_PINNED")
ALLOWED_PRAGMAS = ("unroll", "nounroll", "once", "pack", "clang loop", "GCC unroll", "clang unroll",
                   "clang nounroll", "GCC diagnostic", "clang diagnostic")
_SAFE_INCLUDE = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+/-]*")


# --- bcc modules ----------------------------------------------------------------------------------
_module_cls = None


def _module_class():
    """bcc.BPF without the auto-attach at construction: our probes attach explicitly after the
    compile (so a failure can release them), a client's functions never."""
    global _module_cls
    if _module_cls is None:
        bcc = host.import_bcc()

        class Module(bcc.BPF):
            def _trace_autoload(self) -> None:
                pass

            def attach_probes(self) -> None:
                bcc.BPF._trace_autoload(self)

            def function_names(self) -> list[str]:
                lib = bcc.libbcc.lib
                return [lib.bpf_function_name(self.module, i).decode(errors="replace")
                        for i in range(lib.bpf_num_functions(self.module))]
        _module_cls = Module
    return _module_cls


def release(bpf) -> None:
    """Close everything a bcc module holds (programs, maps, perf and raw-tracepoint fds) now:
    bcc frees them only at exit (its atexit hook keeps every module alive until then)."""
    if bpf is None:
        return
    try:
        bpf.cleanup()
    finally:
        atexit.unregister(bpf.cleanup)


@contextmanager
def _captured_stderr(tmp=None):
    """bcc's clang and libbpf write diagnostics straight to fd 2; collect them instead.
    tmp: a file opened beforehand (a sandboxed thread cannot open one)."""
    own = tmp is None
    tmp = tempfile.TemporaryFile(mode="w+b") if own else tmp
    tmp.seek(0)
    tmp.truncate()
    saved = os.dup(2)
    os.dup2(tmp.fileno(), 2)
    box: list[str] = []
    try:
        yield box
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        box.append(tmp.read(256 * 1024).decode(errors="replace"))
        if own:
            tmp.close()


def _diagnostics(text: str) -> str:
    """Keep the compiler's own lines (file:line:col: error ...), drop bcc's boilerplate."""
    lines = [ln for ln in text.splitlines()
             if ln.strip() and not ln.startswith(("Unable to find kernel headers", "sh: 1: modprobe"))]
    errors = [ln for ln in lines if re.search(r":\d+:\d+: (error|fatal error)", ln)]
    return "\n".join(lines if errors else lines[-25:])


def compile_bpf(text: str, cflags: list[str], what: str):
    """Compile our own source with bcc and attach its tracepoint probes; raise XdpscopeError
    carrying the compiler's messages. Nothing stays open on failure."""
    module = _module_class()
    host.use_headers()
    bpf = None
    with _captured_stderr() as err:
        try:
            bpf = module(text=text.encode(), cflags=[f"-I{BPF_DIR}", *cflags])
        except Exception:
            pass  # bcc's exception says only "Failed to compile"; clang's lines are in err
    if bpf is None:
        raise XdpscopeError(f"{what}: compile error\n{_diagnostics(err[0])}")
    try:
        bpf.attach_probes()
    except Exception as e:
        release(bpf)
        raise XdpscopeError(f"{what}: cannot attach its probes: {e}") from None
    return bpf


def load_xdp(bpf, func: str, what: str) -> int:
    """Load (verify) an XDP function of our own; the verifier's log tail explains a refusal."""
    bcc = host.import_bcc()
    with _captured_stderr() as err:
        try:
            fn = bpf.load_func(func.encode(), bcc.BPF.XDP)
        except Exception as e:
            fn, exc = None, e
    if fn is None:
        raise XdpscopeError(f"{what}: the verifier refused the program ({exc})\n{_diagnostics(err[0])}")
    return fn.fd


# --- a client's source: checks before the compile -------------------------------------------------
_TRIGRAPHS = {"=": "#", "/": "\\", "'": "^", "(": "[", ")": "]", "!": "|", "<": "{", ">": "}", "-": "~"}


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """The text as the preprocessor sees its lines: trigraphs replaced (as if enabled: stricter),
    backslash-newlines spliced (also with blanks between, as clang accepts), comments replaced by a
    space, string and character literals kept. Returns (first physical line, logical line)."""
    text = re.sub(r"\?\?([=/'()!<>-])", lambda m: _TRIGRAPHS[m.group(1)], text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    line, start, i, n = 1, 1, 0, len(text)
    quote = ""
    while i < n:
        c = text[i]
        if c == "\\":
            m = re.compile(r"\\[ \t\f\v]*\n").match(text, i)
            if m:                                   # splice: the logical line goes on
                line += 1
                i = m.end()
                continue
            buf.append(text[i:i + 2] if quote else c)
            i += 2 if quote else 1
            continue
        if quote:
            buf.append(c)
            if c == quote:
                quote = ""
            elif c == "\n":                         # unterminated literal ends at the line end
                quote = ""
                out.append((start, "".join(buf[:-1])))
                buf, line, start = [], line + 1, line + 1
            i += 1
            continue
        if c in "\"'":
            quote = c
            buf.append(c)
            i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            line += text.count("\n", i, end)         # a block comment joins its lines into one
            buf.append(" ")
            i = end
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":        # spliced continuations stay in the comment
                m = re.compile(r"\\[ \t\f\v]*\n").match(text, i)
                if m:
                    line += 1
                    i = m.end()
                else:
                    i += 1
            buf.append(" ")
        elif c == "\n":
            out.append((start, "".join(buf)))
            buf, line, start = [], line + 1, line + 1
            i += 1
        else:
            buf.append(c)
            i += 1
    out.append((start, "".join(buf)))
    return out


def _refuse(display: str, line: int, why: str) -> XdpscopeError:
    """line 0: not a line of a file (a -D of --cflags)."""
    return XdpscopeError(f"{display}{f':{line}' if line else ''}: {why} (see docs/security.md)")


def _check_include(display: str, line: int, directive: str, operand: str) -> None:
    m = re.fullmatch(r'\s*(?:"([^"]*)"|<([^>]*)>)\s*', operand)
    if not m:
        raise _refuse(display, line, f"#{directive} needs a literal \"file.h\" or <dir/file.h> "
                                     "(a computed file name is not allowed)")
    path = m.group(1) if m.group(1) is not None else m.group(2)
    parts = path.split("/")
    if not _SAFE_INCLUDE.fullmatch(path) or ".." in parts or "" in parts or "." in parts:
        raise _refuse(display, line, f"#{directive} {operand.strip()}: only relative paths inside the "
                                     "system and kernel header directories (no absolute path, no '..')")


def _check_directive(display: str, line: int, body: str) -> None:
    m = re.match(r"\s*([A-Za-z_]\w*|\d+)?(.*)$", body, re.S)
    name, rest = m.group(1) or "", m.group(2)
    if name in ("include",):
        _check_include(display, line, name, rest)
    elif name in ("include_next", "import", "embed", "line", "assert", "unassert") or name.isdigit():
        raise _refuse(display, line, f"#{name} is not allowed in a program sent to the agent")
    elif name == "pragma":
        text = " ".join(rest.split())
        if not any(text == p or text.startswith(p + " ") or text.startswith(p + "(") for p in ALLOWED_PRAGMAS):
            raise _refuse(display, line, f"#pragma {text[:40]} is not allowed "
                                         f"(allowed: {', '.join(ALLOWED_PRAGMAS)})")


def check_user_source(text: str, display: str) -> None:
    """Refuse, with the line, what would let a client's C reach outside its own text or load more
    than one XDP function. The sandbox (build_user) enforces the same in the kernel; this check
    gives the clear message."""
    if not isinstance(text, str) or not text.strip():
        raise XdpscopeError(f"{display}: the program text is empty")
    if len(text.encode("utf-8", errors="replace")) > MAX_SOURCE:
        raise XdpscopeError(f"{display}: the program text is larger than {MAX_SOURCE // 1024} KiB")
    if "\0" in text:
        raise XdpscopeError(f"{display}: the program text contains NUL bytes (not C text)")
    _check_lines(text, display)


def _check_lines(text: str, display: str, numbered: bool = True) -> None:
    for line, logical in _logical_lines(text):
        line = line if numbered else 0
        stripped = logical.lstrip(" \t\f\v")
        if stripped.startswith("#") or stripped.startswith("%:"):
            _check_directive(display, line, stripped[1 if stripped[0] == "#" else 2:])
        code = re.sub(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'', '""', logical)
        for ident in re.findall(r"[A-Za-z_]\w*", code):
            if ident.startswith(AUTOLOAD_PREFIXES) or ident in TRACING_MACROS:
                raise _refuse(display, line, f"`{ident}` declares a tracing program that bcc would load and "
                                             "attach: only the one XDP function is loaded")
            if ident in REFUSED_IDENTIFIERS or ident.endswith("_PINNED"):
                raise _refuse(display, line, f"`{ident}` is not allowed in a program sent to the agent")
        if re.search(r"\.(incbin|include)\b", logical):
            raise _refuse(display, line, "assembler file directives (.incbin, .include) are not allowed")


# --- a client's compiler flags (--cflags) ---------------------------------------------------------
MAX_CFLAGS = 64                      # flags of one program
MAX_CFLAG = 1024                     # characters of one flag
_MACRO = re.compile(r"[A-Za-z_]\w*(?:\([\w\s,.]*\))?")   # NAME or NAME(args), as clang's -D takes it
_WARNING = re.compile(r"-Wno-[a-z][a-z0-9-]*")           # warnings off: never a -Wp,/-Wl, pass-through
_OWN_MACROS = ("XS_", "xs_", "xdp_main", "xdpscope")      # xdpscope's wrapper: a client may not redefine it


def check_cflags(cflags: list[str], display: str) -> list[str]:
    """The flags bcc's users give (-D, -U, -I, -w, -Wno-...), checked and normalized to one
    token each (`-DNAME=VALUE`, `-I/real/dir`). A -D is checked as the `#define` clang makes of it
    (the text checks above); an -I must be a directory beneath the header directories (so it
    reads nothing the sandbox would not). Anything else (-include, -isystem, -Xclang, -Wp,...)
    is refused: those open files or reach the compiler's internals."""
    if not isinstance(cflags, list) or not all(isinstance(f, str) for f in cflags):
        raise XdpscopeError(f"{display}: cflags must be a list of strings")
    if len(cflags) > MAX_CFLAGS:
        raise XdpscopeError(f"{display}: at most {MAX_CFLAGS} cflags")
    out: list[str] = []
    i = 0
    while i < len(cflags):
        flag = cflags[i]
        if flag in ("-D", "-U", "-I"):                     # the value as the next word, as clang takes it
            if i + 1 >= len(cflags):
                raise XdpscopeError(f"--cflags: {flag} needs a value")
            flag, i = flag + cflags[i + 1], i + 1
        i += 1
        if len(flag) > MAX_CFLAG or re.search(r"[\x00-\x1f\x7f]", flag):
            raise XdpscopeError(f"--cflags: {flag[:40]!r}: too long or has control characters (a newline "
                                "would add a line to the compiler's predefines)")
        out.append(_check_cflag(flag, display))
    return out


def _check_cflag(flag: str, display: str) -> str:
    if flag == "-w" or _WARNING.fullmatch(flag):
        return flag
    if flag.startswith(("-D", "-U")):
        name, eq, value = flag[2:].partition("=")
        if flag.startswith("-U") and (eq or not re.fullmatch(r"[A-Za-z_]\w*", name)):
            raise XdpscopeError(f"--cflags {flag[:40]}: -U takes a macro NAME")
        if not _MACRO.fullmatch(name):
            raise XdpscopeError(f"--cflags {flag[:40]}: -D takes NAME, NAME=VALUE or NAME(args)=VALUE")
        if name.startswith(_OWN_MACROS):
            raise XdpscopeError(f"--cflags {flag[:40]}: {name.split('(')[0]} belongs to xdpscope's wrapper")
        if value.endswith("\\"):                          # would splice the next predefine line
            raise XdpscopeError(f"--cflags {flag[:40]}: a value may not end with a backslash")
        if flag.startswith("-D"):                          # what clang's predefines hold for it
            _check_lines(f"#define {name} {value if eq else '1'}\n", f"--cflags {flag[:40]}", numbered=False)
        return flag
    if flag.startswith("-I"):
        return "-I" + _include_dir(flag[2:])
    raise XdpscopeError(f"--cflags: {flag[:40]} is not allowed (only -D, -U, -I, -w and -Wno-...; "
                        "see docs/security.md)")


def _include_dir(path: str) -> str:
    """An -I directory: absolute, beneath a header directory once its links are resolved (the
    resolved path is what clang gets)."""
    if not path.startswith("/"):
        raise XdpscopeError(f"--cflags -I{path[:60]}: give an absolute directory")
    real = os.path.realpath(path)
    dirs = [os.path.realpath(d) for d in header_dirs()]
    if not any(real == d or real.startswith(d.rstrip("/") + "/") for d in dirs):
        raise XdpscopeError(f"--cflags -I{path[:60]}: only directories beneath the header directories "
                            f"({', '.join(header_dirs())}) may be searched (see docs/security.md)")
    if not os.path.isdir(real):
        raise XdpscopeError(f"--cflags -I{path[:60]}: no such directory")
    return real


def _check_include_dirs_readable(cflags: list[str], display: str) -> None:
    """Each -I directory as the sandboxed compiler sees it (Landlock, fsuid nobody): a directory it
    cannot read would fail every include there with a confusing error; say so instead."""
    dirs = [f[2:] for f in cflags if f.startswith("-I") and f[2:] != str(BPF_DIR)]
    if not dirs:
        return

    def probe() -> str:
        for d in dirs:
            try:
                os.listdir(d)
            except OSError as e:
                return f"{d}: {e.strerror}"
        return ""
    try:
        why = _in_sandbox(probe)
    except OSError as e:
        raise XdpscopeError(f"{display}: cannot sandbox the compiler ({e}); refusing to compile") from None
    if why:
        raise XdpscopeError(f"--cflags -I{why.split(':')[0]}: the sandboxed compiler (user nobody) cannot "
                            f"read it ({why.split(': ', 1)[1]})")


# --- a client's source: the sandboxed compile and load -------------------------------------------
_LANDLOCK_CREATE, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT = 444, 445, 446   # same on every arch
_LL_READ_FILE, _LL_READ_DIR = 1 << 2, 1 << 3
_SETGROUPS = {"x86_64": 116, "aarch64": 159}
# NET_ADMIN, IPC_LOCK, SYS_RESOURCE, PERFMON, BPF: create maps, load XDP with ordinary packet
# pointer arithmetic (without CAP_PERFMON the verifier refuses `(void *)ip + ip->ihl * 4`); what
# CAP_PERFMON would also allow (kernel-memory helpers, kfuncs, ksyms) is refused in check_bytecode.
_CAP_KEEP = (12, 14, 24, 38, 39)
NOBODY = 65534


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def header_dirs() -> list[str]:
    """Where a client's #include may resolve: the kernel build tree bcc uses (and where its links
    point), the system headers and the project's bpf/."""
    dirs = {"/usr/include", "/usr/src", str(BPF_DIR), str(host.HEADERS_CACHE), "/sys/kernel/btf"}
    headers = host.find_headers()
    if headers is not None:
        dirs |= {headers.path, os.path.realpath(headers.path)}
    modules = Path("/lib/modules") / os.uname().release
    dirs |= {str(modules), os.path.realpath(modules)}
    return sorted(d for d in dirs if os.path.isdir(d))


def _landlock(dirs: list[str]) -> bool:
    """Restrict this thread's file reads to beneath dirs; False when the kernel has no Landlock."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = _RulesetAttr(_LL_READ_FILE | _LL_READ_DIR)
    fd = libc.syscall(_LANDLOCK_CREATE, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if fd < 0:
        return False
    try:
        for d in dirs:
            dfd = os.open(d, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(_LL_READ_FILE | _LL_READ_DIR, dfd)
                if libc.syscall(_LANDLOCK_ADD_RULE, fd, 1, ctypes.byref(rule), 0) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock rule for {d}")
            finally:
                os.close(dfd)
        if libc.prctl(38, 1, 0, 0, 0) != 0:                      # PR_SET_NO_NEW_PRIVS (this thread)
            raise OSError(ctypes.get_errno(), "no_new_privs")
        if libc.syscall(_LANDLOCK_RESTRICT, fd, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(fd)
    return True


def _sandbox_thread(dirs: list[str]) -> str:
    """Make the calling thread (only it: these are per-thread credentials) a loader that reads
    files only as nobody and only beneath dirs, and holds only the capabilities in _CAP_KEEP (no
    CAP_SYS_ADMIN, no CAP_DAC_*). Returns a note of what is in force."""
    libc = ctypes.CDLL(None, use_errno=True)
    # A working directory of its own (CLONE_FS is per thread), inside what it may read: the
    # process's cwd (over ssh a 0700 home) would be unreadable as nobody and fail the compile.
    if libc.unshare(0x200) != 0:                                      # CLONE_FS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_FS)")
    os.chdir(dirs[0])
    groups = _SETGROUPS.get(os.uname().machine)
    if groups is not None and libc.syscall(groups, 0, None) != 0:   # raw syscall: this thread only
        raise OSError(ctypes.get_errno(), "setgroups")
    libc.setfsgid(NOBODY)
    libc.setfsuid(NOBODY)
    if libc.setfsuid(NOBODY) != NOBODY or libc.setfsgid(NOBODY) != NOBODY:  # returns the current value
        raise OSError(0, "setfsuid")
    landlock = _landlock(dirs)
    keep = [0, 0]
    for cap in _CAP_KEEP:
        keep[cap // 32] |= 1 << (cap % 32)
    header = _CapHeader(0x20080522, 0)                                # _LINUX_CAPABILITY_VERSION_3
    have = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), have) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    keep = [k & h.permitted for k, h in zip(keep, have)]               # never ask for more than we hold
    data = (_CapData * 2)(*[_CapData(k, k, 0) for k in keep])
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    return "landlock" if landlock else "fsuid"


def _in_sandbox(fn: Callable[[], object]) -> object:
    """Run fn in a new thread that is sandboxed first and ends with it (its credentials go)."""
    dirs = header_dirs()
    box: dict = {}

    def run() -> None:
        try:
            box["how"] = _sandbox_thread(dirs)
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = e
    t = threading.Thread(target=run, name="xdpscope-sandboxed-compile")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


# Helpers a client's program may not call, though the verifier would let a CAP_PERFMON loader use
# them in XDP: kernel and user memory reads, current task, kernel pointers by BTF (uapi/linux/bpf.h).
DENIED_HELPERS = {4: "probe_read", 35: "get_current_task", 36: "probe_write_user", 45: "probe_read_str",
                  112: "probe_read_user", 113: "probe_read_kernel", 114: "probe_read_user_str",
                  115: "probe_read_kernel_str", 117: "send_signal_thread", 109: "send_signal",
                  147: "d_path", 148: "copy_from_user", 149: "snprintf_btf", 153: "per_cpu_ptr",
                  154: "this_cpu_ptr", 158: "get_current_task_btf", 166: "sys_bpf",
                  167: "btf_find_by_name_kind", 175: "task_pt_regs", 179: "kallsyms_lookup_name",
                  180: "find_vma", 191: "copy_from_user_task", 194: "kptr_xchg"}
_LD_IMM64, _CALL = 0x18, 0x85
_PSEUDO_MAP_FD, _PSEUDO_MAP_VALUE, _PSEUDO_FUNC = 1, 2, 4
_PSEUDO_CALL, _PSEUDO_KFUNC_CALL = 1, 2


def check_bytecode(insns: bytes, map_fds: set[int], display: str) -> None:
    """The compiled program may reach only its own maps and the helpers an XDP program needs:
    no kfuncs, no kernel variables (ksyms), no map of another module (an fd number), no
    kernel-memory helpers, no call outside its own code."""
    n = len(insns) // 8
    i = 0
    while i < n:
        code, regs, _off, imm = struct.unpack_from("<BBhi", insns, i * 8)
        src = regs >> 4
        if code == _LD_IMM64:
            if src in (_PSEUDO_MAP_FD, _PSEUDO_MAP_VALUE) and imm not in map_fds:
                raise XdpscopeError(f"{display}: the program refers to a map that is not its own")
            if src not in (0, _PSEUDO_MAP_FD, _PSEUDO_MAP_VALUE, _PSEUDO_FUNC):
                raise XdpscopeError(f"{display}: the program refers to kernel objects (ksym or map index "
                                    "loads are not allowed; see docs/security.md)")
            i += 2
            continue
        if code == _CALL:
            if src == _PSEUDO_KFUNC_CALL:
                raise XdpscopeError(f"{display}: kernel function (kfunc) calls are not allowed "
                                    "(see docs/security.md)")
            if src == _PSEUDO_CALL and not 0 <= i + 1 + imm < n:
                raise XdpscopeError(f"{display}: calls to functions outside the XDP function are not allowed: "
                                    "make helpers `static __always_inline`")
            if src == 0 and imm in DENIED_HELPERS:
                raise XdpscopeError(f"{display}: the helper bpf_{DENIED_HELPERS[imm]} is not allowed in a "
                                    "program sent to the agent (see docs/security.md)")
        i += 1


def _module_code(bpf, func: str) -> tuple[bytes, set[int]]:
    """The bytes bcc will load for func, and the fds of the module's own maps."""
    lib = host.bcc_lib()
    start = lib.bpf_function_start(bpf.module, func.encode())
    size = lib.bpf_function_size(bpf.module, func.encode())
    if not start or not size:
        raise XdpscopeError(f"no function {func} in the compiled program")
    fds = {lib.bpf_table_fd_id(bpf.module, i) for i in range(lib.bpf_num_tables(bpf.module))}
    return ctypes.string_at(start, size), fds


def _quote(line: str, row: int, col: int) -> list[str]:
    """A line of the client's own text and a caret under clang's column (1-based, in bytes; tabs
    kept so the caret lines up)."""
    line = line.rstrip()[:200]
    before = line.encode()[:max(0, col - 1)].decode(errors="ignore")
    caret = re.sub(r"[^\t]", " ", before) + "^"
    return [f"{row:5} | {line}", f"      | {caret}"] if col <= len(line.encode()) + 1 else [f"{row:5} | {line}"]


def _user_diagnostics(text: str, source: str, display: str) -> str:
    """Only what refers to the client's own lines: `display:L:C: error: ...` and that line of its
    own text; nothing from included files, nothing of bcc's."""
    own = source.splitlines()
    out: list[str] = []
    included_from = None
    pat = re.compile(rf"^{re.escape(USER_FILE)}:(\d+):(\d+): ((?:fatal )?error|warning|note): (.*)$")
    for ln in text.splitlines():
        m = pat.match(ln)
        if m:
            row, col, kind, msg = int(m.group(1)), m.group(2), m.group(3), m.group(4)
            out.append(f"{display}:{row}:{col}: {kind}: {msg}")
            if 1 <= row <= len(own):
                out += _quote(own[row - 1], row, int(col))
            continue
        m = re.match(rf"^In file included from {re.escape(USER_FILE)}:(\d+):", ln)
        if m and included_from is None:
            included_from = int(m.group(1))
    if not any(": error: " in ln or ": fatal error: " in ln for ln in out):
        where = f"{display}:{included_from}" if included_from else display
        out.append(f"{where}: error in an included header or in xdpscope's wrapper "
                   "(only lines of your own text are shown)")
    return "\n".join(out[-40:])


def _user_verifier_log(text: str, source: str) -> str:
    """The verifier's log without source annotations other than the client's own lines."""
    own = {ln.strip() for ln in source.splitlines() if ln.strip()}
    kept = []
    for ln in text.splitlines():
        if not ln.strip() or ln.startswith(("Unable to find kernel headers", "sh: 1: modprobe")):
            continue
        if ln.lstrip().startswith(";"):           # a source line from BTF line info: which file is unknown
            code = re.sub(r"\s*//\s*Line\s+\d+\s*$", "", ln.lstrip()[1:]).strip()
            if code not in own:
                continue
        kept.append(ln[:300])
    return "\n".join(kept[-30:])


def build_user(text: str, cflags: list[str], display: str, source: str, func: str = "xdp_main"):
    """Compile a client's program (text: the full C with its source wrapped) and load its one XDP
    function, sandboxed. Returns (bcc module, program fd); nothing stays open on failure."""
    check_user_source(source, display)
    module = _module_class()
    host.use_headers()
    bcc = host.import_bcc()
    _check_include_dirs_readable(cflags, display)
    _trial_compile(text, cflags, display, source)
    tmp = tempfile.TemporaryFile(mode="w+b")

    def work():
        bpf = None
        with _captured_stderr(tmp) as err:
            try:
                bpf = module(text=text.encode(), cflags=[f"-I{BPF_DIR}", *cflags])
            except Exception:
                pass
        if bpf is None:
            raise XdpscopeError(f"{display}: compile error\n{_user_diagnostics(err[0], source, display)}")
        try:
            extra = [f for f in bpf.function_names() if f.startswith(AUTOLOAD_PREFIXES)]
            if extra:
                raise XdpscopeError(f"{display}: `{extra[0]}` is a tracing program that bcc would attach: "
                                    "only the one XDP function is loaded (see docs/security.md)")
            check_bytecode(*_module_code(bpf, func), display)
            with _captured_stderr(tmp) as err:
                try:
                    fn = bpf.load_func(func.encode(), bcc.BPF.XDP)
                except Exception as e:
                    fn, exc = None, e
            if fn is None:
                raise XdpscopeError(f"{display}: the verifier refused the program ({exc})\n"
                                    f"{_user_verifier_log(err[0], source)}")
            return bpf, fn.fd
        except BaseException:
            release(bpf)
            raise
    try:
        return _in_sandbox(work)
    except OSError as e:
        raise XdpscopeError(f"{display}: cannot sandbox the compiler ({e}); refusing to compile") from None
    finally:
        tmp.close()


# --- the trial compile: LLVM may end the process it runs in ------------------------------------
def _trial_compile(text: str, cflags: list[str], display: str, source: str) -> None:
    """Compile a client's text first in a sandboxed child process: LLVM ends the process on a
    fatal error in the BPF backend (report_fatal_error: e.g. an assembler directive or a dynamic
    stack allocation), and a macro bomb may take minutes or gigabytes. Only a text that compiled
    there is compiled in the agent (the compile is deterministic)."""
    job = json.dumps({"text": text, "cflags": cflags}).encode()
    try:
        p = subprocess.run([sys.executable, "-m", "backend.kernel.compile"], input=job, capture_output=True,
                           cwd=ROOT, timeout=TRIAL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise XdpscopeError(f"{display}: the compile took longer than {TRIAL_TIMEOUT_S} s: refused") from None
    err = p.stderr.decode(errors="replace")
    if p.returncode == 0:
        return
    if p.returncode == 3:   # clang's errors
        raise XdpscopeError(f"{display}: compile error\n{_user_diagnostics(err, source, display)}")
    if p.returncode == 4:
        raise XdpscopeError(f"{display}: cannot sandbox the compiler ({err.strip()[-200:]}); refusing to compile")
    fatal = [ln for ln in err.splitlines() if ln.startswith(("LLVM ERROR:", "error: <inline asm>"))]
    why = f": {fatal[0][:200]}" if fatal else f" (status {p.returncode})"
    raise XdpscopeError(f"{display}: the compiler failed on this program{why}")


def _trial_main() -> int:
    """The child of _trial_compile: 0 compiled, 3 compile error (clang's lines on stderr),
    4 no sandbox; an LLVM fatal error ends it with its own status."""
    resource.setrlimit(resource.RLIMIT_AS, (TRIAL_MEMORY, TRIAL_MEMORY))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    job = json.loads(sys.stdin.buffer.read())
    module = _module_class()
    host.use_headers()
    try:
        _sandbox_thread(header_dirs())   # the only thread of this process
    except OSError as e:
        print(e, file=sys.stderr)
        return 4
    try:
        bpf = module(text=job["text"].encode(), cflags=[f"-I{BPF_DIR}", *job["cflags"]])
    except Exception:
        return 3
    bpf.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(_trial_main())
