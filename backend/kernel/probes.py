"""Probes (bpf/probes.c): raw tracepoints compiled for the ones this kernel has, counting only the
session's devices (by netns and ifindex, see nic.session_devices), read as raw cumulative counters
keyed as backend/data/schema.py declares: (family, *parts) -> int, summed over CPUs (the cpumap
kthread's stats stay per CPU: the CPU is the one it serves). What is read from which map follows
the schema (Family.c_map, c_key, c_field, c_slot, tracepoints): a new family of a probe map needs
no code here."""
from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from backend.data import schema
from backend.errors import XdpscopeError
from backend.kernel import bpfsys, btf, build_cache, host, nic
from backend.kernel.compile import BPF_DIR, release

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
SOURCE = BPF_DIR / "probes.c"   # the probes' C (tests compile an edited copy: tests/test_add_counter.py)

Raw = dict[tuple, int]   # (family, *parts) -> cumulative count
DevId = nic.DevId
NO_DEVICE = nic.NO_DEVICE

U64, U32 = np.dtype("<u8"), np.dtype("<u4")
DEV = np.dtype([("ns", "<u4"), ("ifindex", "<u4")])
# what a probe map's key holds (schema Family.c_key): its layout, and how many of the family's
# positions it fills (the value's members fill the rest)
KEYS: dict[str, tuple[np.dtype, int]] = {
    "dev": (DEV, 1),                                          # struct xs_dev: a DevId
    "dev_errno": (np.dtype([("ns", "<u4"), ("ifindex", "<u4"), ("err", "<i4")]), 2),   # + an errno
    "index": (U32, 1),   # an array index: the first position (a target CPU, a verdict)
    "cpu": (U32, 1),     # a per-CPU array of one entry: the CPU each value was counted on
    "slots": (U32, 0),   # an array of u64 read as one value: slot i is word i
}


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
        self.ksize = key.itemsize
        vals = np.frombuffer(self.reader.values, dtype=np.uint64).reshape(n, -1)
        width = value.itemsize // 8
        self.values = vals.reshape(n, ncpu if per_cpu else 1, -1)[:, :, :width]  # a view, no copy

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, values[entry, cpu, u64 word]) of every element, as views of the buffers."""
        n = self.reader.read()
        return self.keys[:n], self.values[:n]

    def key_bytes(self, n: int) -> bytes:
        """The first n keys as bytes (the map's entries are the same ones in the same order as at
        another read iff these are equal)."""
        return self._kview[:n * self.ksize].tobytes()

    @cached_property
    def _kview(self) -> memoryview:
        return memoryview(self.reader.keys).cast("B")


Written = list[tuple[int, tuple]]   # (word of the value, raw key or the key's tail)
Leaves = tuple[str, Written, Written, list[int]]


@dataclass
class _Reader:
    """One probe map and what each of its families reads from an entry: (family name, always,
    bins, words): (word, key tail) written as they are, (word, key tail) left out at 0, and all of
    the family's words. The raw keys of an entry are made once (`entries`, by the key's parts)."""
    map: _Map
    kind: str                 # KEYS
    leaves: list[Leaves]
    entries: dict = field(default_factory=dict)   # key parts -> [(words or None, always, bins)]
    # the vector read (read_into): the keys it was laid out for, and where it writes
    vkeys: bytes | None = None
    vgen: int = -1              # the vector's generation vout is a view of
    vin: np.ndarray | None = None    # the map's values (entries, CPUs, words) read now
    vout: np.ndarray | None = None   # their region of the vector
    vaxis: int | tuple = 1
    vstart: int = 0
    vregion: tuple | None = None     # (first slot, size) of its region ...
    vvec: object = None              # ... in this vector
    hashed: bool = False        # a hash map: its keys may change (an array's do not)
    vshape: tuple = ()

    def view(self, vec) -> None:
        """vout: this map's region of the vector as it is now."""
        self.vout = vec.cur[self.vstart:self.vstart + int(np.prod(self.vshape))].reshape(self.vshape)
        self.vgen = vec.generation

    def entry(self, parts: tuple) -> list[tuple[list[int] | None, Written, Written]]:
        """The raw keys of one entry, per family; words: check them for an array's unused entry."""
        array = self.kind in ("index", "cpu")   # a hash entry exists once counted, an array's always
        return [(words if array else None, [(w, (name, *parts, *t)) for w, t in always],
                 [(w, (name, *parts, *t)) for w, t in bins]) for name, always, bins, words in self.leaves]


def _member(leaf, name: str | None, fam: schema.Family) -> tuple[int, bool]:
    """(first u64 word, is a C array) of a member of the map's value (bcc's ctypes type of the C)."""
    if name is None:
        return 0, False
    typ = dict(getattr(leaf, "_fields_", ())).get(name)
    if typ is None:
        raise XdpscopeError(f"schema: family {fam.name}: {fam.c_map}'s value has no member {name!r}")
    return getattr(leaf, name).offset // 8, issubclass(typ, ctypes.Array)


def _leaves(fam: schema.Family, leaf, nkey: int, width: int) -> Leaves:
    """Where a family's counters sit in its map's value: the positions after the key's are one
    Members (one struct member each, c_field), one Index (bins: a C array member, or slots from
    c_slot), or none (one word: c_field, c_slot)."""
    dims, slot = fam.positions[nkey:], fam.c_slot or 0
    names = fam.c_field.split(",") if fam.c_field else [None]
    always: Written = []
    bins: Written = []
    if not dims:
        w, array = _member(leaf, names[0], fam)
        (bins if array else always).append((w + slot, ()))
    elif len(dims) == 1 and isinstance(dims[0], schema.Members) and len(names) == len(dims[0].names):
        always = [(_member(leaf, n, fam)[0], (m,)) for n, m in zip(names, dims[0].names)]
    elif len(dims) == 1 and isinstance(dims[0], schema.Index):
        w = _member(leaf, names[0], fam)[0] + slot
        bins = [(w + i, (i,)) for i in range(dims[0].n)]
    else:
        raise XdpscopeError(f"schema: family {fam.name}: the probes read a key ({fam.c_key}) and then one "
                            "Members (a c_field member each), one Index or nothing from a map value")
    words = [w for w, _ in always + bins]
    if max(words) >= width:
        raise XdpscopeError(f"schema: family {fam.name} reads word {max(words)} of {fam.c_map}, "
                            f"whose value has {width}")
    return fam.name, always, bins, words


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
    _readers: list["_Reader"] = field(default_factory=list)
    _plan_of: tuple | None = None     # the schema.FAMILIES the readers were planned for
    _gen: "bpfsys.ArraySlot | None" = None   # xs_gen[0]

    def new_generation(self) -> None:
        """Make the probes check every cached device address again (a freed device's address may
        have come back as another device's; roles may have changed)."""
        if self._gen is None:   # (through libbpf with buffers made once: every GENERATION_S while sampling)
            table = self.bpf[b"xs_gen"]
            self._gen = bpfsys.ArraySlot(table.get_fd(), table[table.Key(0)].value)
        self._gen.write(self._gen.value + 1)
        self._gen_t = time.monotonic()

    def close(self) -> None:
        """Detach every probe and close its programs and maps; safe to call twice."""
        bpf, self.bpf = self.bpf, None
        self._maps, self._readers, self._plan_of, self._gen = {}, [], None, None
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

    def read(self, raw: Raw) -> None:
        """Add every probe counter to raw, as the schema's families say (Family.c_map, c_key,
        c_field, c_slot, tracepoints): one batch read per map whose probe is on, sums over CPUs in
        numpy. Bins (Index positions, C array members) still at 0 are left out, and so are array
        entries still all 0 (counters only grow, so a missing key's delta is 0: fewer keys for decode)."""
        if time.monotonic() - self._gen_t >= GENERATION_S:
            self.new_generation()
        if self._plan_of is not schema.FAMILIES:   # a family added at run time (schema.add)
            self._plan()
        for r in self._readers:
            keys, vals = r.map.read()
            kind = r.kind
            if kind == "cpu":     # kept per CPU: the CPU is the one the kthread serves, not a sum
                rows, parts = vals[0].tolist(), range(vals.shape[1])
            elif kind == "slots":
                rows, parts = [vals.sum(axis=(1, 2)).tolist()], [()]
            else:
                rows = vals.sum(axis=1).tolist()
                parts = self._key_parts(kind, keys)
            entries = r.entries
            for part, row in zip(parts, rows):
                entry = entries.get(part)
                if entry is None:
                    entry = entries[part] = r.entry(part if kind in ("dev_errno", "slots") else (part,))
                for words, always, bins in entry:
                    if words is not None and not any([row[w] for w in words]):
                        continue
                    for w, k in always:
                        raw[k] = row[w]
                    for w, k in bins:
                        if row[w]:
                            raw[k] = row[w]

    @staticmethod
    def vector_ok() -> bool:
        """read_into() gives decode what read() does: no probe family keeps zeros (sparse None),
        whose presence read() decides by leaving out zero bins and array entries."""
        for f in (*schema.FAMILIES, *schema.ALIAS_SOURCES):
            sparse = schema.RAW_ALIASES[f.name][1] if f.name in schema.RAW_ALIASES else f.sparse
            if f.c_key is not None and sparse is None:
                return False
        return True

    def read_into(self, vec) -> None:
        """read() into a RawVector (backend/data/rawvec.py): each map's counts summed over CPUs
        by one numpy operation straight into its region of the vector. A map's region is laid out
        again only when its keys differ from the last read's (a new device, an errno)."""
        if time.monotonic() - self._gen_t >= GENERATION_S:
            self.new_generation()
        if self._plan_of is not schema.FAMILIES:
            self._plan()
        for r in self._readers:
            m = r.map
            n = m.reader.read()
            if r.vvec is not vec:   # (read into another vector before)
                r.vvec, r.vkeys, r.vregion = vec, None, None
            if r.vkeys is None or r.hashed and m._kview[:n * m.ksize].tobytes() != r.vkeys:   # an array's keys stay
                self._layout(r, vec, n)
            elif r.vgen != vec.generation:   # the vector was made anew (it grew)
                r.view(vec)
            if r.kind == "cpu":   # kept per CPU: the CPU is the one the kthread serves, not a sum
                np.copyto(r.vout, r.vin[0])
            else:   # (the ufunc itself: np.sum is two Python frames around it)
                np.add.reduce(r.vin, axis=r.vaxis, out=r.vout)

    def _layout(self, r: "_Reader", vec, n: int) -> None:
        """The region of a map's counters for the keys it holds now (rows x words of its values
        summed over CPUs), and their order as read() gives them."""
        keys, vals = r.map.keys[:n], r.map.values[:n]
        kind = r.kind
        if kind == "cpu":
            parts, rows, width = list(range(vals.shape[1])), vals.shape[1], vals.shape[2]
        elif kind == "slots":
            parts, rows, width = [()], 1, n
        else:
            rows, width = n, vals.shape[2]
            parts = self._key_parts(kind, keys)
        at: list[tuple | None] = [None] * (rows * width)
        order = []
        for row, part in enumerate(parts):
            entry = r.entries.get(part)
            if entry is None:
                entry = r.entries[part] = r.entry(part if kind in ("dev_errno", "slots") else (part,))
            for _, always, bins in entry:
                for w, k in (*always, *bins):
                    at[row * width + w] = k
                    order.append(row * width + w)
        r.vregion = vec.region(at, r.vregion)
        r.vstart, r.vshape = r.vregion[0], (rows * width,) if kind == "slots" else (rows, width)
        vec.layout(f"probes:{r.map.reader.fd}", np.array(order, np.intp) + r.vstart)
        r.vin, r.vaxis, r.vkeys = vals, (1, 2) if kind == "slots" else 1, r.map.key_bytes(n)
        r.hashed = kind in ("dev", "dev_errno")
        r.view(vec)

    def _plan(self) -> None:
        """What to read from which map: the schema's families grouped by their probe map."""
        by_map: dict[str, list[schema.Family]] = {}
        for fam in (*schema.FAMILIES, *schema.ALIAS_SOURCES):
            if fam.c_key is not None:
                by_map.setdefault(fam.c_map, []).append(fam)
        readers = []
        for name, fams in by_map.items():
            kinds = {f.c_key for f in fams}
            if len(kinds) != 1 or fams[0].c_key not in KEYS:
                raise XdpscopeError(f"schema: the families of {name} give its key as {sorted(kinds)}, "
                                    f"not one of {sorted(KEYS)}")
            if not any(tp in self.enabled for f in fams for tp in f.tracepoints):
                continue   # a map whose probes are off is not read
            readers.append(self._reader(name, fams))
        self._readers, self._plan_of = readers, schema.FAMILIES

    def _reader(self, name: str, fams: list[schema.Family]) -> "_Reader":
        kind = fams[0].c_key
        key, nkey = KEYS[kind]
        try:
            table = self.bpf[name.encode()]
        except KeyError:
            raise XdpscopeError(f"schema: family {fams[0].name} reads map {name}, which bpf/probes.c "
                                "does not declare") from None
        leaf = getattr(table, "sLeaf", table.Leaf)   # a per-CPU table's Leaf is the CPUs' array of sLeaf
        if ctypes.sizeof(table.Key) != key.itemsize:
            raise XdpscopeError(f"probes: {name}'s key is {ctypes.sizeof(table.Key)} bytes, not a {kind!r} key")
        words = (ctypes.sizeof(leaf) + 7) // 8
        width = table.max_entries if kind == "slots" else words
        leaves = [_leaves(f, leaf, nkey, width) for f in fams]
        per_cpu = hasattr(table, "sLeaf")
        m = self._maps[name] = _Map(table, key, np.dtype((U64, words)), per_cpu, bpfsys.possible_cpus())
        return _Reader(m, kind, leaves)

    def _key_parts(self, kind: str, keys) -> list:
        """The raw key parts of a hash or array map's entries (kinds index, dev, dev_errno)."""
        if kind == "index":
            return keys.tolist()
        if kind == "dev":
            return self._devs(keys)
        return list(zip(self._devs(keys), keys["err"].tolist()))   # dev_errno

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
    text = "#include <uapi/linux/bpf.h>\n" + SOURCE.read_text()
    bpf = build_cache.compile_bpf(text, flags, "probes")  # its RAW_TRACEPOINT_PROBEs are attached by compile_bpf
    probes = Probes(bpf, available, wanted, all_devices=all_devices, note=note)
    try:
        probes.set_devices(nic.session_devices(ifindex, list(targets or [])))
        for map_id in cpumaps:
            probes.bpf[b"xs_cpumaps"][ctypes.c_uint32(map_id)] = ctypes.c_uint32(1)
    except Exception as e:
        probes.close()
        raise XdpscopeError(f"probes: cannot list the session's devices: {e}") from e
    return probes
