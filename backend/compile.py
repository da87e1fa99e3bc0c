"""Compile BPF C with bcc, turning clang and verifier output into a readable error."""
from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

from backend import kernel
from backend.errors import XdpscopeError

BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"


@contextmanager
def _captured_stderr():
    """bcc's clang and libbpf write diagnostics straight to fd 2; collect them instead."""
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        box: list[str] = []
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.append(tmp.read().decode(errors="replace"))


def _diagnostics(text: str) -> str:
    """Keep the compiler's own lines (file:line:col: error ...), drop bcc's boilerplate."""
    lines = [ln for ln in text.splitlines()
             if ln.strip() and not ln.startswith(("Unable to find kernel headers", "sh: 1: modprobe"))]
    errors = [ln for ln in lines if re.search(r":\d+:\d+: (error|fatal error)", ln)]
    return "\n".join(lines if errors else lines[-25:])


def compile_bpf(text: str, cflags: list[str], what: str):
    """Compile source with bcc; raise XdpscopeError carrying the compiler's messages."""
    bcc = kernel.import_bcc()
    kernel.use_headers()
    with _captured_stderr() as err:
        try:
            return bcc.BPF(text=text.encode(), cflags=[f"-I{BPF_DIR}", *cflags])
        except Exception:
            pass  # bcc's exception says only "Failed to compile"; clang's lines are in err
    raise XdpscopeError(f"{what}: compile error\n{_diagnostics(err[0])}")


def load_xdp(bpf, func: str, what: str) -> int:
    """Load (verify) an XDP function; the verifier's log tail explains a refusal."""
    bcc = kernel.import_bcc()
    with _captured_stderr() as err:
        try:
            fn = bpf.load_func(func.encode(), bcc.BPF.XDP)
        except Exception as e:
            fn, exc = None, e
    if fn is None:
        raise XdpscopeError(f"{what}: the verifier refused the program ({exc})\n{_diagnostics(err[0])}")
    return fn.fd
