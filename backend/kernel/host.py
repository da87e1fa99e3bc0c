"""Kernel-side setup the engine needs: root, tracefs, kernel headers for bcc, available tracepoints."""
from __future__ import annotations

import ctypes
import os
import platform
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from backend.errors import XdpscopeError

TRACEFS = Path("/sys/kernel/tracing")
HEADERS_CACHE = Path("/var/cache/xdpscope/kheaders")


def is_root() -> bool:
    return os.geteuid() == 0


def require_root(what: str) -> None:
    if not is_root():
        raise XdpscopeError(f"{what} needs root (BPF and netlink): run it with sudo")


def _mount(source: str, target: Path, fstype: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), str(target).encode(), fstype.encode(), 0, None) != 0:
        err = ctypes.get_errno()
        raise XdpscopeError(f"cannot mount {fstype} at {target}: {os.strerror(err)}")


def ensure_tracefs() -> None:
    """Tracepoint probes and the tracepoint list need tracefs; mount it when it is missing."""
    if not (TRACEFS / "events").is_dir():
        _mount("tracefs", TRACEFS, "tracefs")


def tracepoints() -> set[str]:
    """Tracepoints this kernel offers, as 'category:name' (of the categories we use)."""
    ensure_tracefs()
    found = set()
    for cat in ("xdp", "napi"):
        d = TRACEFS / "events" / cat
        if d.is_dir():
            found |= {f"{cat}:{p.name}" for p in d.iterdir() if (p / "format").exists()}
    return found


@dataclass
class Headers:
    path: str          # directory bcc uses as the kernel build tree
    exact: bool        # headers of the running kernel
    note: str          # what was chosen and why, for doctor


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(abs(x - y) for x, y in zip(a, b))


def find_headers() -> Headers | None:
    """The running kernel's headers, else the nearest installed Debian headers (merged tree)."""
    release = platform.release()
    build = Path("/lib/modules") / release / "build"
    if build.is_dir():
        return Headers(str(build), True, f"kernel headers for {release} at {build}")
    candidates = [p for p in Path("/usr/src").glob("linux-headers-*")
                  if not p.name.endswith("-common") and (p / "Makefile").exists()]
    if not candidates:
        return None
    want = _version_key(release)
    best = min(candidates, key=lambda p: _distance(_version_key(p.name[len("linux-headers-"):]), want))
    merged = _merged_tree(best)
    return Headers(str(merged), False,
                   f"no headers for running kernel {release}; bcc uses the nearest installed: "
                   f"{best.name} (merged with its -common part at {merged})")


def _merged_tree(arch_dir: Path) -> Path:
    """Debian splits headers into <ver>-<flavour> and <ver>-common; bcc wants one tree.
    Build a tree of symlinks once (common first, then the flavour's generated files over it)."""
    common = Path(re.sub(r"-[a-z0-9]+$", "-common", str(arch_dir)))
    out = HEADERS_CACHE / arch_dir.name
    stamp = out / ".xdpscope-complete"
    if stamp.exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    for src in (common, arch_dir):
        if src.is_dir():
            _link_tree(src, out)
    stamp.write_text(str(arch_dir))
    return out


def _link_tree(src: Path, dst: Path) -> None:
    """Mirror src into dst as absolute symlinks; later trees override earlier ones."""
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        leaves = files + [d for d in dirs if (Path(root) / d).is_symlink()]
        for name in leaves:
            target = dst / rel / name
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(Path(root) / name)


def use_headers() -> Headers:
    """Point bcc at usable kernel headers (BCC_KERNEL_SOURCE) before anything is compiled."""
    headers = find_headers()
    if headers is None:
        raise XdpscopeError("no kernel headers installed: apt-get install linux-headers-amd64 "
                            "(or run `make setup`)")
    if not headers.exact:
        os.environ["BCC_KERNEL_SOURCE"] = headers.path
    return headers


def import_bcc():
    """Import bcc with a clear message when it is missing."""
    try:
        import bcc  # noqa: PLC0415 - optional at import time of the module
    except ImportError as e:
        raise XdpscopeError(f"bcc is not importable ({e}): apt-get install python3-bpfcc, "
                            "then `make setup`") from None
    return bcc


def bcc_lib():
    """libbcc with the prototypes of its table functions (bcc's Python leaves their sizes as int:
    a module pointer or a size_t above 2**31 would be cut), set once for every caller."""
    lib = import_bcc().libbcc.lib
    if getattr(lib, "_xs_typed", False):
        return lib
    size = ctypes.c_size_t
    for name, res, args in (("bpf_num_tables", size, [ctypes.c_void_p]),
                            ("bpf_table_name", ctypes.c_char_p, [ctypes.c_void_p, size]),
                            ("bpf_table_fd_id", ctypes.c_int, [ctypes.c_void_p, size]),
                            ("bpf_table_key_size_id", size, [ctypes.c_void_p, size]),
                            ("bpf_table_leaf_size_id", size, [ctypes.c_void_p, size])):
        getattr(lib, name).restype, getattr(lib, name).argtypes = res, args
    lib._xs_typed = True
    return lib
