"""Tracepoint probes (bpf/probes.c): compiled for the tracepoints this kernel has, read as raw
cumulative per-CPU counters keyed by tuples (the collector turns them into deltas)."""
from __future__ import annotations

from dataclasses import dataclass, field

from backend.kernel import btf, host
from backend.kernel.compile import BPF_DIR, compile_bpf, release

# tracepoint -> (macro, on by default)
TRACEPOINTS = {
    "xdp:xdp_devmap_xmit": ("XS_TP_XDP_DEVMAP_XMIT", True),
    "xdp:xdp_redirect_err": ("XS_TP_XDP_REDIRECT_ERR", True),
    "xdp:xdp_exception": ("XS_TP_XDP_EXCEPTION", True),
    "xdp:xdp_cpumap_enqueue": ("XS_TP_XDP_CPUMAP_ENQUEUE", True),
    "napi:napi_poll": ("XS_TP_NAPI_POLL", True),
    "xdp:xdp_redirect": ("XS_TP_XDP_REDIRECT", False),  # per packet: only on request
}

RAW_PROBES = {"xdp:xdp_devmap_xmit", "napi:napi_poll"}

Raw = dict[tuple, list[int]]   # counter key -> per-CPU cumulative values
NO_DEVICE = "(no device)"      # the NAPI view's name for polls of a napi_struct with no net_device


@dataclass
class Probes:
    bpf: object
    available: dict[str, bool]          # tracepoint -> present in this kernel
    enabled: list[str] = field(default_factory=list)
    raw: bool = False                   # flush and NAPI probes are raw tracepoints (RAW_PROBES)

    def close(self) -> None:
        """Detach every probe and close its programs and maps; safe to call twice."""
        bpf, self.bpf = self.bpf, None
        release(bpf)

    def read(self, raw: Raw) -> None:
        """Add every probe counter to raw (keys: see collector.to_sample)."""
        # keyed by kernel pointer; the ifindex / name sits in the CPU copy that first saw the key
        for per_cpu in self.bpf[b"xs_devtx"].values():
            ifindex = max(v.ifindex for v in per_cpu)
            _add(raw, ("devtx", ifindex, "sent"), [v.sent for v in per_cpu])
            _add(raw, ("devtx", ifindex, "drops"), [v.drops for v in per_cpu])
            for size in range(18):
                _add(raw, ("flush", ifindex, size), [v.flush[size] for v in per_cpu])
        for key, per_cpu in self.bpf[b"xs_rerr"].items():
            raw[("rerr", key.ifindex, key.err)] = list(per_cpu)
        _read_array(self.bpf[b"xs_exc"], "exc", raw)
        _read_array(self.bpf[b"xs_cpumap_bulk"], "cpumap", raw)
        for per_cpu in self.bpf[b"xs_napi"].values():
            # a napi without a net_device (the per-CPU backlog that loopback and RPS traffic use)
            # has no name: give it one, a trace column needs it
            dev = max((v.dev for v in per_cpu), key=len).decode(errors="replace") or NO_DEVICE
            for f in ("polls", "work", "budget", "full"):
                _add(raw, ("napi", dev, f), [getattr(v, f) for v in per_cpu])
            for b in range(9):
                _add(raw, ("napi_hist", dev, b), [v.hist[b] for v in per_cpu])
        for key, per_cpu in self.bpf[b"xs_redir"].items():
            raw[("redir", key.value)] = list(per_cpu)


def _add(raw: Raw, key: tuple, per_cpu: list[int]) -> None:
    """Two kernel objects may name one device (a napi per queue): their counts add up."""
    old = raw.get(key)
    raw[key] = per_cpu if old is None else [a + b for a, b in zip(old, per_cpu)]


def _read_array(table, name: str, raw: Raw) -> None:
    for key, per_cpu in table.items():
        raw[(name, key.value)] = list(per_cpu)


def raw_flags() -> list[str]:
    """Flush and NAPI probes run as raw tracepoints (no trace record is built: a fraction of
    the cost) when the kernel's BTF gives the struct offsets they read; else as tracepoints."""
    offsets = {"XS_OFF_NETDEV_IFINDEX": btf.offset_of("net_device", "ifindex"),
               "XS_OFF_NETDEV_NAME": btf.offset_of("net_device", "name"),
               "XS_OFF_NAPI_DEV": btf.offset_of("napi_struct", "dev")}
    if None in offsets.values():
        return []
    return ["-DXS_RAW", *(f"-D{k}={v}" for k, v in offsets.items())]


def load(ifindex: int, trace_redirects: bool = False, cpumap_id: int | None = None) -> Probes:
    """Compile and attach the probes this kernel supports, filtered to one interface.
    cpumap_id: count only that cpumap's enqueues (the event names no interface); 0 = none of ours,
    so the probe is left out; None = all (watching a program that is not ours)."""
    have = host.tracepoints()
    available = {tp: tp in have for tp in TRACEPOINTS}
    wanted = [tp for tp, (_, default) in TRACEPOINTS.items()
              if available[tp] and (default or trace_redirects)
              and not (tp == "xdp:xdp_cpumap_enqueue" and cpumap_id == 0)]
    raw = raw_flags() + ([f"-DXS_CPUMAP_ID={cpumap_id}"] if cpumap_id else [])
    flags = [f"-DXS_IFINDEX={ifindex}", *(f"-D{TRACEPOINTS[tp][0]}" for tp in wanted), *raw]
    text = "#include <uapi/linux/bpf.h>\n" + (BPF_DIR / "probes.c").read_text()
    bpf = compile_bpf(text, flags, "probes")  # its TRACEPOINT_PROBEs are attached by compile_bpf
    return Probes(bpf, available, wanted, raw=bool(raw))
