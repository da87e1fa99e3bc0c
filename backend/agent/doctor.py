"""doctor: what this machine offers xdpscope, and what to fix."""
from __future__ import annotations

import ctypes.util
import platform
from pathlib import Path

from backend.kernel import diagnose, host, nic
from backend.kernel.probes import TRACEPOINTS


def interface_report(i: nic.Interface) -> dict:
    native = diagnose.native_support(i.name, i.ifindex, i.driver, i.mtu)
    generic_ok = i.name != "lo"
    return {**i.to_dict(), "native": native,
            "modes": {"native": {"possible": native["possible"], "why": native["why"]},
                      "generic": {"possible": generic_ok, "why": "" if generic_ok else "loopback"}}}


def run() -> dict:
    checks: list[dict] = []

    def check(name: str, ok: bool, detail: str, fix: str = "") -> None:
        checks.append({"check": name, "ok": ok, "detail": detail, "fix": fix})

    check("root", host.is_root(), "running as root" if host.is_root() else "not root",
          "run as root (sudo) to attach programs")
    check("kernel", True, platform.release())
    btf = Path("/sys/kernel/btf/vmlinux").exists()
    check("btf", btf, "kernel BTF present" if btf else "no /sys/kernel/btf/vmlinux")
    try:
        bcc = host.import_bcc()
        check("bcc", True, f"bcc {getattr(bcc, '__version__', '?')} importable")
    except Exception as e:
        check("bcc", False, str(e), "apt-get install python3-bpfcc; make setup")
    try:
        h = host.find_headers() if host.is_root() else None
        check("headers", h is not None, h.note if h else "no kernel headers found",
              "" if h else "apt-get install linux-headers-amd64")
    except Exception as e:
        check("headers", False, str(e), "apt-get install linux-headers-amd64")
    libbpf = ctypes.util.find_library("bpf")
    check("libbpf", bool(libbpf), libbpf or "libbpf.so not found", "apt-get install libbpf1")
    tps: set[str] = set()
    try:
        tps = host.tracepoints()
        missing = [t for t in TRACEPOINTS if t not in tps]
        check("tracepoints", not missing, "all present" if not missing else f"missing: {', '.join(missing)} "
              "(those views are off)")
    except Exception as e:
        check("tracepoints", False, str(e), "mount -t tracefs tracefs /sys/kernel/tracing")
    try:
        ifaces = [interface_report(i) for i in nic.interfaces()]
    except Exception as e:
        ifaces = []
        check("netlink", False, str(e))
    essential = {"root", "bcc", "headers", "libbpf"}
    return {"ok": all(c["ok"] for c in checks if c["check"] in essential), "checks": checks,
            "tracepoints": sorted(tps), "interfaces": ifaces}


def format_text(report: dict) -> str:
    lines = []
    for c in report["checks"]:
        mark = "ok  " if c["ok"] else "FAIL"
        lines.append(f"{mark} {c['check']:<12} {c['detail']}" + (f"\n     fix: {c['fix']}" if not c["ok"] and c["fix"] else ""))
    lines.append("")
    lines.append("interfaces:")
    for i in report["interfaces"]:
        n = i["native"]
        state = {True: "native ok", False: "native NO", None: "native ?"}[n["possible"]]
        xdp = f" [xdp {i['xdp']['mode']} prog {i['xdp']['prog_id']}]" if i["xdp"]["attached"] else ""
        route = " (default route)" if i["default_route"] else ""
        lines.append(f"  {i['name']:<12} {i['driver'] or '-':<11} {state}{xdp}{route}")
        if n["why"]:
            lines.append(f"      why: {n['why']}")
        if n.get("fix"):
            lines.append(f"      fix: {n['fix']}")
        for note in n.get("notes", []):
            lines.append(f"      note: {note}")
    return "\n".join(lines)
