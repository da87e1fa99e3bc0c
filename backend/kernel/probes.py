"""Probes (bpf/probes.c): raw tracepoints compiled for the ones this kernel has, counting only the
session's devices (by netns and ifindex, see nic.session_devices), read as raw cumulative counters
keyed as backend/data/schema.py declares: (family, *parts) -> int, summed over CPUs (the cpumap
kthread's stats stay per CPU: the CPU is the one it serves)."""
from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field

import numpy as np

from backend.data import schema
from backend.errors import XdpscopeError
from backend.kernel import bpfsys, btf, host, nic
from backend.kernel.compile import BPF_DIR, compile_bpf, release

# tracepoint -> (macro, on by default)
TRACEPOINTS = {
    "xdp:xdp_devmap_xmit": ("XS_TP_XDP_DEVMAP_XMIT", True),
    "xdp:xdp_redirect_err": ("XS_TP_XDP_REDIRECT_ERR", True),
    "xdp:xdp_exception": ("XS_TP_XDP_EXCEPTION", True),
    "xdp:xdp_cpumap_enqueue": ("XS_TP_XDP_CPUMAP_ENQUEUE", True),
    "xdp:xdp_cpumap_kthread": ("XS_TP_XDP_CPUMAP_KTHREAD", True),
    "napi:napi_poll": ("XS_TP_NAPI_POLL", True),
    "xdp:xdp_redirect": ("XS_TP_XDP_REDIRECT", False),  # per packet: only on request
}
# the raw tracepoints' argument counts the C reads them by (kernels 6.1 .. 6.18); a kernel whose
# prototype differs (xdp_redirect* took a map pointer before 5.16) leaves that probe out
ARITY = {"xdp:xdp_devmap_xmit": 5, "xdp:xdp_redirect_err": 7, "xdp:xdp_exception": 3,
         "xdp:xdp_cpumap_enqueue": 4, "xdp:xdp_cpumap_kthread": 5, "napi:napi_poll": 3, "xdp:xdp_redirect": 7}
CPUMAP_TPS = {"xdp:xdp_cpumap_enqueue", "xdp:xdp_cpumap_kthread"}
RAW_PROBES = frozenset(TRACEPOINTS)   # every probe is a raw tracepoint (attach names: raw_tracepoint__<name>)
# map sizes that are not counter shapes (the schema has those)
SIZES = {"XS_DEVS_ENTRIES": 256, "XS_DEVTX_ENTRIES": 1024, "XS_REDIR_ENTRIES": 1024, "XS_CPUMAPS_ENTRIES": 16,
         "XS_PTR_ENTRIES": 1024}
GENERATION_S = 0.5   # how long the probes trust a cached net_device / napi_struct address

Raw = dict[tuple, int]   # (family, *parts) -> cumulative count
DevId = nic.DevId
NO_DEVICE = nic.NO_DEVICE

DEV = np.dtype([("ns", "<u4"), ("ifindex", "<u4")])
NAPI_FIELDS = ("polls", "work", "budget", "full")
CPU_ENQ_FIELDS = ("processed", "drops", "bulks")
KTHREAD_FIELDS = ("processed", "drops", "sched")


def in_flight(raw: Raw) -> int:
    """Frames the counters show on their way: enqueued to a cpumap CPU (and not dropped) but not
    yet processed by its kthread."""
    n = 0
    for key, v in raw.items():
        if key[0] == "cpumap_enqueue" and key[2] == "processed":
            done = raw.get(("cpumap_kthread", key[1], "processed"), 0)
            n += max(0, v - raw.get(("cpumap_enqueue", key[1], "drops"), 0) - done)
    return n


def offsets() -> dict[str, int] | None:
    """Kernel struct offsets the probes read (from the running kernel's BTF), or None."""
    net_ns, inum = btf.offset_of("net", "ns"), btf.offset_of("ns_common", "inum")
    got = {"XS_OFF_NETDEV_IFINDEX": btf.offset_of("net_device", "ifindex"),
           "XS_OFF_NETDEV_NET": btf.offset_of("net_device", "nd_net"),   # possible_net_t: .net first
           "XS_OFF_NET_INUM": None if None in (net_ns, inum) else net_ns + inum,
           "XS_OFF_NAPI_DEV": btf.offset_of("napi_struct", "dev")}
    return None if None in got.values() else got


class _Map:
    """One BPF map read whole in a batch into buffers allocated once, seen as numpy arrays."""

    def __init__(self, table, key: np.dtype, value: np.dtype, per_cpu: bool, ncpu: int):
        self.reader = bpfsys.BatchReader(table.get_fd(), key.itemsize, value.itemsize,
                                         table.max_entries, per_cpu)
        n = table.max_entries
        self.keys = np.frombuffer(self.reader.keys, dtype=key, count=n)
        vals = np.frombuffer(self.reader.values, dtype=np.uint64).reshape(n, -1)
        width = value.itemsize // 8
        self.values = vals.reshape(n, ncpu if per_cpu else 1, -1)[:, :, :width]  # a view, no copy

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, values[entry, cpu, u64 word]) of every element, as views of the buffers."""
        n = self.reader.read()
        return self.keys[:n], self.values[:n]


@dataclass
class Probes:
    bpf: object
    available: dict[str, bool]          # tracepoint -> present in this kernel
    enabled: list[str] = field(default_factory=list)
    devices: dict[DevId, int] = field(default_factory=dict)   # the session's devices -> roles
    all_devices: bool = False           # NAPI polls and devmap flushes of every device
    note: str = ""                      # what is left out and why
    raw: bool = True                    # raw tracepoints (all of them: RAW_PROBES)
    names: nic.DeviceNames = field(default_factory=nic.DeviceNames)
    _maps: dict[str, _Map] = field(default_factory=dict)
    _gen_t: float = 0.0

    def new_generation(self) -> None:
        """Make the probes check every cached device address again (a freed device's address may
        have come back as another device's; roles may have changed)."""
        table = self.bpf[b"xs_gen"]
        key = table.Key(0)
        table[key] = table.Leaf(table[key].value + 1)
        self._gen_t = time.monotonic()

    def close(self) -> None:
        """Detach every probe and close its programs and maps; safe to call twice."""
        bpf, self.bpf = self.bpf, None
        self._maps = {}
        release(bpf)

    def set_devices(self, devices: dict[DevId, int]) -> None:
        """The devices whose events count, with their roles (nic.ROLE_*)."""
        table = self.bpf[b"xs_devs"]
        for (ns, ifindex), roles in devices.items():
            table[table.Key(ns, ifindex)] = ctypes.c_uint32(roles)
        self.devices.update(devices)
        self.new_generation()

    def describe(self) -> dict:
        """For the session's metadata: which devices the probes count, and what is left out."""
        return {"devices": "all" if self.all_devices else sorted(self.names(d) for d in self.devices),
                **({"session": sorted(self.names(d) for d in self.devices)} if self.all_devices else {}),
                "note": self.note}

    def _map(self, name: str, key: np.dtype, value: np.dtype, per_cpu: bool = True) -> _Map:
        m = self._maps.get(name)
        if m is None:
            m = self._maps[name] = _Map(self.bpf[name.encode()], key, value, per_cpu, bpfsys.possible_cpus())
        return m

    def read(self, raw: Raw) -> None:
        """Add every probe counter to raw: one batch read per map, sums over CPUs in numpy.
        Histogram bins and per-verdict counts still at 0 are left out (counters only grow, so a
        missing key's delta is 0: fewer keys for decode)."""
        if time.monotonic() - self._gen_t >= GENERATION_S:
            self.new_generation()
        u64, on = np.dtype("<u8"), self.enabled   # a map whose probe is off is not read
        redirect_err = "xdp:xdp_redirect_err" in on
        if "xdp:xdp_devmap_xmit" in on:
            keys, vals = self._map("xs_devtx", DEV, np.dtype((u64, 2 + schema.define("XS_FLUSH_SLOTS")))).read()
            sums = vals.sum(axis=1).tolist()
            oversize = schema.define("XS_FLUSH_OVERSIZE")
            for dev, v in zip(self._devs(keys), sums):
                raw[("devmap", dev, "sent")], raw[("devmap", dev, "drops")] = v[0], v[1]
                for size in range(oversize):
                    if v[2 + size]:   # a bin never hit is left out: cumulative, its delta is 0
                        raw[("flush", dev, size)] = v[2 + size]
                if v[2 + oversize]:
                    raw[("oversize_flushes", dev)] = v[2 + oversize]
            redirect_err = True   # flush errors are counted there too
        if redirect_err:
            err_key = np.dtype([("ns", "<u4"), ("ifindex", "<u4"), ("err", "<i4")])
            keys, vals = self._map("xs_rerr", err_key, u64).read()
            for dev, err, v in zip(self._devs(keys), keys["err"].tolist(), vals.sum(axis=(1, 2)).tolist()):
                raw[("redirect_errors", dev, err)] = v
        if "xdp:xdp_exception" in on:
            _, vals = self._map("xs_exc", np.dtype("<u4"), u64).read()
            for act, v in enumerate(vals.sum(axis=(1, 2)).tolist()):
                if v:
                    raw[("exceptions", act)] = v
        self._read_cpumap(raw)
        if "napi:napi_poll" in on:
            napi = np.dtype((u64, len(NAPI_FIELDS) + schema.define("XS_NAPI_BINS")))
            keys, vals = self._map("xs_napi", DEV, napi).read()
            for dev, v in zip(self._devs(keys), vals.sum(axis=1).tolist()):
                for i, f in enumerate(NAPI_FIELDS):
                    raw[("napi", dev, f)] = v[i]
                for b, n in enumerate(v[len(NAPI_FIELDS):]):
                    if n:
                        raw[("napi_hist", dev, b)] = n
        if "xdp:xdp_redirect" in on:
            keys, vals = self._map("xs_redir", DEV, u64).read()
            for dev, v in zip(self._devs(keys), vals.sum(axis=(1, 2)).tolist()):
                raw[("redirect_tp", dev)] = v

    def _read_cpumap(self, raw: Raw) -> None:
        if "xdp:xdp_cpumap_enqueue" not in self.enabled:
            return
        u64 = np.dtype("<u8")
        _, vals = self._map("xs_cpumap", np.dtype("<u4"), u64).read()
        slots = vals.sum(axis=(1, 2)).tolist()
        drops = schema.define("XS_CPUMAP_DROPS")
        for size in range(drops):
            if slots[size]:
                raw[("cpumap_bulk", size)] = slots[size]
        raw[("cpumap_drops",)] = slots[drops]
        _, vals = self._map("xs_cpu_enq", np.dtype("<u4"), np.dtype((u64, 3))).read()
        for cpu, v in enumerate(vals.sum(axis=1).tolist()):
            if any(v):
                for f, n in zip(CPU_ENQ_FIELDS, v):
                    raw[("cpumap_enqueue", cpu, f)] = n
        if "xdp:xdp_cpumap_kthread" in self.enabled:
            _, vals = self._map("xs_kthread", np.dtype("<u4"), np.dtype((u64, 3))).read()
            for cpu, v in enumerate(vals[0].tolist()):
                if any(v):
                    for f, n in zip(KTHREAD_FIELDS, v):
                        raw[("cpumap_kthread", cpu, f)] = n

    def _devs(self, keys: np.ndarray) -> list[DevId]:
        """DevIds of the keys; a target first seen (a program redirecting to a device it was not
        told of) brings its veth peer into the session, so its polls count from now on."""
        devs = list(zip(keys["ns"].tolist(), keys["ifindex"].tolist()))
        for d in devs:
            if d not in self.names.names:   # resolved once, in the device's namespace
                self.names(d)
        new = [d for d in devs if d not in self.devices and d != (0, 0)]
        if new and not self.all_devices:
            self.set_devices(self._with_peers(new))
        return devs

    def _with_peers(self, devs: list[DevId]) -> dict[DevId, int]:
        out = {d: nic.ROLE_POLLED for d in devs}
        own = [ifindex for ns, ifindex in devs if ns == 0]
        if own:
            for d, roles in nic.session_devices(own[0], own[1:]).items():
                out[d] = out.get(d, 0) | (roles & nic.ROLE_POLLED)
        return out


def load(ifindex: int, trace_redirects: bool = False, cpumap_id: int | None = None,
         targets: list[int] | None = None, all_devices: bool = False, prog_fd: int | None = None) -> Probes:
    """Compile and attach the probes this kernel supports, counting the session's devices: the
    ingress `ifindex`, the redirect `targets` (ifindexes) and their peers (all_devices: NAPI
    polls and devmap flushes of every device of every namespace, and every cpumap).
    cpumap events name no device: they count for the session's cpumaps, `cpumap_id` (0: none)
    or, watching a program that is not ours, the cpumaps of `prog_fd`; without any, the cpumap
    probes are left out."""
    cpumaps = [cpumap_id] if cpumap_id else bpfsys.cpumaps_of(prog_fd) if prog_fd is not None else []
    have = host.tracepoints()
    available = {tp: tp in have for tp in TRACEPOINTS}
    offs = offsets()
    odd = [tp for tp in TRACEPOINTS if btf.raw_tracepoint_arity(tp.split(":")[1]) not in (None, ARITY[tp])]
    wanted = [tp for tp, (_, default) in TRACEPOINTS.items()
              if available[tp] and (default or trace_redirects) and tp not in odd
              and not (tp in CPUMAP_TPS and not cpumaps and not all_devices)
              and (offs is not None or tp in CPUMAP_TPS)]
    notes = ["no kernel BTF: the device probes (flushes, NAPI, errors) are left out"] if offs is None else []
    notes += [f"{tp}: left out (this kernel's arguments differ)" for tp in odd]
    note = "; ".join(notes)
    flags = [*schema.cflags(), *(f"-D{k}={v}" for k, v in {**SIZES, **(offs or {})}.items()),
             f"-DXS_NR_CPUS={bpfsys.possible_cpus()}", f"-DXS_OWN_NETNS={nic.own_netns()}",
             *(f"-D{TRACEPOINTS[tp][0]}" for tp in wanted),
             *(["-DXS_ALL_DEVICES"] if all_devices else [])]
    if offs is None:   # the C still needs the macros to compile
        flags += [f"-D{k}=0" for k in ("XS_OFF_NETDEV_IFINDEX", "XS_OFF_NETDEV_NET", "XS_OFF_NET_INUM",
                                       "XS_OFF_NAPI_DEV")]
    text = "#include <uapi/linux/bpf.h>\n" + (BPF_DIR / "probes.c").read_text()
    bpf = compile_bpf(text, flags, "probes")  # its RAW_TRACEPOINT_PROBEs are attached by compile_bpf
    probes = Probes(bpf, available, wanted, all_devices=all_devices, note=note)
    try:
        probes.set_devices(nic.session_devices(ifindex, list(targets or [])))
        for map_id in cpumaps:
            probes.bpf[b"xs_cpumaps"][ctypes.c_uint32(map_id)] = ctypes.c_uint32(1)
    except Exception as e:
        probes.close()
        raise XdpscopeError(f"probes: cannot list the session's devices: {e}") from e
    return probes
