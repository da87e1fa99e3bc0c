"""Collector: reads every counter at a chosen rate (read_raw: the kernel's cumulative counts,
keyed as backend/data/schema.py says) and turns the deltas of two reads into a Sample with the
pure backend/data/decode.py. dt is measured with the monotonic clock at each read (never assumed).

Sampling reads the same counters into one numpy vector instead (backend/data/rawvec.py: a slot
per raw key, buffers made once, a map's counts written with one numpy operation), so a sample at
100 Hz runs little Python; its Sample is the one decode() gives for the two dicts
(tests/test_collector_vector.py). read_raw stays for settle() and as the reference."""
from __future__ import annotations

import ctypes
import gc
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from backend.data import driver, schema, verdicts
from backend.data.decode import Parsed, decode, parse
from backend.data.rawvec import RawVector
from backend.data.sample import VERDICTS, Sample
from backend.kernel import bpfsys, driver_stats, probes, user_maps
from backend.kernel.probes import Probes, Raw
from backend.kernel.programs import LoadedProgram

MIN_HZ, MAX_HZ = 1, 100
WATCH_PERIOD = 0.5   # s between checks that the session's interfaces still exist and are up
SETTLE_ROUNDS = 8    # grace periods the last read waits at most for the counters to hold still
SETTLE_FALLBACK_S = 0.02   # without membarrier: a pause instead of a grace period
SETTLE_MAX_S = 1.0   # and at most this long for frames queued to cpumap kthreads
STOP_POLL_S = 0.05   # a stop is noticed within this long between samples
RT_PRIORITY = 10     # SCHED_FIFO priority of the sampling thread (when the kernel lets us)


@dataclass
class Fault:
    """An interface of the session vanished, went down, came back up or was renamed."""
    t: float          # s since the session start
    device: str
    ifindex: int
    role: str         # ingress | target
    what: str         # vanished | down | up | renamed

    @property
    def message(self) -> str:
        return f"{self.device} ({self.role}) {self.what} at t={self.t:.3f} s"

    def to_dict(self) -> dict:
        return {**asdict(self), "message": self.message}


class DeviceWatch:
    """Notices, cheaply (an ioctl and a sysfs read per device), when an interface of the session
    vanishes (its ifindex is gone: deleted, or moved to another netns), goes down or is renamed."""

    def __init__(self, devices: list[tuple[str, int, str]]):   # (name, ifindex, role)
        self.devices = [[name, ifindex, role] for name, ifindex, role in devices]
        self.state = {ifindex: self._state(name, ifindex) for name, ifindex, _ in devices}

    @staticmethod
    def _state(name: str, ifindex: int) -> str:
        try:
            now = socket.if_indextoname(ifindex)
        except OSError:
            return "vanished"
        if now != name:
            return "renamed"
        try:
            with open(f"/sys/class/net/{name}/flags") as f:
                return "up" if int(f.read(), 16) & 1 else "down"
        except (OSError, ValueError):
            return "vanished"

    def check(self, t: float) -> list[Fault]:
        faults = []
        for dev in self.devices:
            name, ifindex, role = dev
            if self.state[ifindex] == "vanished":
                continue                                   # reported once
            new = self._state(name, ifindex)
            if new == "renamed":                           # still there: follow the new name
                try:
                    dev[0] = socket.if_indextoname(ifindex)
                except OSError:
                    new = "vanished"
                else:
                    faults.append(Fault(t, f"{name} -> {dev[0]}", ifindex, role, "renamed"))
                    new = self._state(dev[0], ifindex)
                    name = dev[0]
            if new != self.state[ifindex]:
                self.state[ifindex] = new
                faults.append(Fault(t, name, ifindex, role, new))
        return faults


class _Names:
    """decode's names, resolved when first asked: target slots from the program, DevIds by the
    probes (in the device's own namespace)."""

    def __init__(self, c: "Collector") -> None:
        self.c = c

    def get(self, key: object, default: str | None = None) -> str | None:
        name = self.c.names.get(key)
        if name is None and isinstance(key, tuple) and self.c.probes is not None:
            name = self.c.probes.names(key)
        return name if name is not None else default


class Collector:
    """program: ours (its counters give verdicts and fan-out), or None when watching a program
    someone else attached (prog_fd): verdicts then come from the driver's counters."""

    def __init__(self, program: LoadedProgram | None, probes: Probes | None, run_stats: bool = False,
                 iface: str = "", driver_name: str = "", prog_fd: int | None = None):
        self.program = program
        self.probes = probes
        self.run_stats = run_stats
        self.iface = iface
        self.driver_name = driver_name
        self.prog_fd = program.fd if program is not None else prog_fd
        self.start = time.monotonic()
        self._last_t = self.start
        # what raw keys name: DevId -> device name (probes.names resolves them in their
        # namespace), target slot -> target name
        self.names: dict = self.probes.names.names if self.probes is not None else {}
        if program is not None:
            self.names.update({slot: self.target_name(slot) for slot in range(len(program.spec.targets))})
        # the sampling path: every counter in one vector (backend/data/rawvec.py), buffers made once
        self._vec = RawVector(_Names(self))
        self._counters = self._counters_reader() if program is not None and program.spec.count else None
        self._info = bpfsys.ProgInfo()
        self._run_slots = None
        if run_stats and self.prog_fd is not None:
            start, _ = self._vec.region([("run", "cnt"), ("run", "ns")])
            self._run_slots = slice(start, start + 2)
            self._vec.layout("run", np.arange(start, start + 2))
        self._driver_names: tuple | None = None
        self._driver_slots = slice(0, 0)
        self._driver_region: tuple[int, int] | None = None
        self._user_last: dict[tuple, int] = {}       # a user program's maps: Python ints (signed, any size)
        self._user_parsed: dict[tuple, Parsed] = {}
        self._probes_vec = probes is not None and probes.vector_ok()

    def _counters_reader(self) -> tuple:
        """The program's per-CPU counters (struct xs_counters) read in one syscall into a buffer,
        and which u64 of it each raw key is, in read_raw's order."""
        table = self.program.counters()
        leaf = getattr(table, "sLeaf", table.Leaf)
        reader = bpfsys.BatchReader(table.get_fd(), ctypes.sizeof(table.Key), ctypes.sizeof(leaf), 1, True)
        ncpu = bpfsys.possible_cpus()
        words = reader.stride // ncpu // 8
        v0 = getattr(leaf, schema.VERDICTS_F.c_field).offset // 8
        t0 = getattr(leaf, schema.TARGETS.c_field).offset // 8
        at: list[tuple | None] = [None] * (ncpu * words)   # the buffer's words: a region of the vector
        order = []
        for cpu in range(ncpu):
            for a in range(len(VERDICTS)):
                at[cpu * words + v0 + a] = ("verdicts", cpu, a)
                order.append(cpu * words + v0 + a)
            for slot in range(self.program.counted_slots()):
                at[cpu * words + t0 + slot] = ("targets", slot, cpu)
                order.append(cpu * words + t0 + slot)
        start, _ = self._vec.region(at)
        self._vec.layout("counters", np.array(order, np.intp) + start)
        return reader, np.frombuffer(reader.values, np.uint64), start

    def read_raw(self) -> Raw:
        """Every counter, cumulative, keyed as backend/data/schema.py says: (family, *parts) -> int."""
        raw: Raw = {}
        if self.program is not None and self.program.spec.count:
            per_cpu = self.program.counters()[0]
            for cpu, c in enumerate(per_cpu):
                for a in range(len(VERDICTS)):
                    raw[("verdicts", cpu, a)] = c.verdict[a]
                for slot in range(self.program.counted_slots()):   # a user program's: from the probe
                    raw[("targets", slot, cpu)] = c.target[slot]
        if self.fexit is not None:
            for cpu, row in enumerate(self.fexit.read()):
                raw.update({("verdicts", cpu, a): n for a, n in enumerate(row)})
        if self.probes is not None:
            self.probes.read(raw)
        if self.run_stats and self.prog_fd is not None:
            info = bpfsys.prog_info(self.prog_fd)
            raw[("run", "cnt")] = info.run_cnt
            raw[("run", "ns")] = info.run_time_ns
        if self.program is not None:
            raw.update(user_maps.read_all(self.program.maps))
        if self.iface:
            for name, value in driver_stats.read_stats(self.iface).items():
                raw[("driver", name)] = value
        return raw

    def _read_vector(self) -> list[tuple[Parsed, int]]:
        """read_raw() into the vector (cur); returns the user maps' deltas (Python ints, parsed)."""
        vec = self._vec
        if self._counters is not None:
            reader, buf, start = self._counters
            reader.read()
            vec.cur[start:start + len(buf)] = buf
        if self.fexit is not None:
            vec.put("fexit", {("verdicts", cpu, a): n for cpu, row in enumerate(self.fexit.read())
                              for a, n in enumerate(row)})
        if self.probes is not None:
            if self._probes_vec:
                self.probes.read_into(vec)
            else:   # a probe family that keeps zeros: read() decides which are there
                raw: Raw = {}
                self.probes.read(raw)
                vec.put("probes", raw)
        if self._run_slots is not None:
            info = bpfsys.prog_info(self.prog_fd, self._info)
            vec.cur[self._run_slots] = (info.run_cnt, info.run_time_ns)
        if self.iface:
            names, values = driver_stats.read_vector(self.iface)
            if names is not self._driver_names:
                self._driver_names = names
                self._driver_region = vec.region([("driver", n) for n in names], self._driver_region)
                start = self._driver_region[0]
                self._driver_slots = slice(start, start + len(names))
                vec.layout("driver", np.arange(start, start + len(names)))
            vec.cur[self._driver_slots] = values
        if self.program is None or not self.program.maps:
            return []
        raw = user_maps.read_all(self.program.maps)
        last, parsed = self._user_last, self._user_parsed
        out = []
        for k, v in raw.items():
            p = parsed.get(k)
            if p is None:
                p = parsed[k] = parse(k, _Names(self))
            out.append((p, v - last.get(k, 0)))
        self._user_last = raw
        return out

    def baseline(self) -> None:
        """First read: everything before it belongs to nobody's interval."""
        self._read_vector()
        self._vec.commit()
        self._last_t = time.monotonic()
        self.start = self._last_t

    def sample(self) -> Sample:
        """The deltas since the last read: the vector's non-zero counters (and those decode keeps
        at 0) decoded, as decode() of the deltas of two read_raw() dicts gives them."""
        return self._decoded(self._read_vector())

    def _decoded(self, user: list[tuple[Parsed, int]]) -> Sample:
        """The Sample of the read just made (the vector's delta, and the user maps')."""
        now = time.monotonic()
        dt = now - self._last_t
        self._last_t = now
        s = self._vec.sample(now - self.start, dt, user)
        if self._from_driver(s):
            self._vec.forget()   # (the vector's JSON form of it is not this one)
        return s

    def to_dict(self, s: Sample) -> dict:
        """s.to_dict(), quicker for the Sample this collector made last (unchanged since)."""
        return self._vec.to_dict(s)

    def to_json(self, s: Sample) -> str:
        """json.dumps(s.to_dict(), separators=(",", ":"), allow_nan=False), quicker for the Sample
        this collector made last (unchanged since)."""
        text = self._vec.to_json(s)
        return text if text is not None else json.dumps(s.to_dict(), separators=(",", ":"), allow_nan=False)

    verdict_method = verdicts.PROGRAM_COUNTERS   # the session sets it when watching (backend/data/verdicts.py)
    fexit = None    # watching with fexit (backend/kernel/fexit.py): the watched program's returns per CPU

    @property
    def verdicts_from(self) -> str:
        if self.program is not None:
            return "program counters"
        if self.fexit is not None:
            return "fexit on the watched program: its return values, per CPU"
        sem = driver.SEMANTICS.get(self.driver_name)
        return f"{self.verdict_method}: {sem.explain}" if sem else self.verdict_method

    def target_name(self, slot: int) -> str:
        spec = self.program.spec
        return f"cpu{spec.targets[slot]}" if spec.name == "cpumap" else spec.targets[slot]

    def to_sample(self, delta: Raw, t: float, dt: float) -> Sample:
        """The pure decode (backend/data/decode.py) of the deltas; watching, the verdicts as the
        driver counts them (one row, not per CPU)."""
        s = decode(delta, _Names(self), t, dt)
        self._from_driver(s)
        return s

    def _from_driver(self, s: Sample) -> bool:
        """Watching without fexit: s's verdicts as the driver counts them (one row, not per CPU)."""
        if self.program is not None or self.fexit is not None:
            return False
        s.verdicts = verdicts.from_driver(self.verdict_method, self.driver_name, s.driver, s.exceptions)
        return True

    def settle(self) -> None:
        """Wait until the frames under way are in the counters: after an RCU grace period, every
        NAPI poll (program run, flush, tracepoints) that had begun has finished, and the polls it
        scheduled (a redirect target's peer, a cpumap kthread) may have begun: repeat until a read
        is unchanged across a grace period (bounded: under steady traffic it never is), and no frame
        the counters know of waits in a cpumap queue (its kthread may wait for a busy CPU)."""
        prev, rounds, deadline = None, 0, time.monotonic() + SETTLE_MAX_S
        while time.monotonic() < deadline:
            if not bpfsys.synchronize_rcu():
                time.sleep(SETTLE_FALLBACK_S)
            raw = self.read_raw()
            queued = probes.in_flight(raw)
            rounds += 1
            if raw == prev and not queued or rounds >= SETTLE_ROUNDS and not queued:
                return
            prev = raw

    def run(self, hz: float, emit: Callable[[Sample], None], stop: threading.Event,
            watch: Callable[[float], bool] | None = None, before_last: Callable[[], None] | None = None) -> None:
        """Sample at hz until stop is set (or watch(t), called every WATCH_PERIOD, says the session
        cannot go on); deadlines on the monotonic clock so rates don't drift. The last sample is
        read after before_last() (the session detaches its program there) and settle()."""
        period = 1.0 / hz
        with _on_time():
            deadline = time.monotonic() + period
            next_watch = time.monotonic() + WATCH_PERIOD
            while not _wait(stop, deadline):
                emit(self.sample())
                now = time.monotonic()
                if watch is not None and now >= next_watch:
                    next_watch = now + WATCH_PERIOD
                    if watch(now - self.start):
                        return  # the last sample above already closed the interval
                deadline += period
                if deadline < time.monotonic():  # fell behind (suspend, load): don't burst to catch up
                    deadline = time.monotonic() + period
        if before_last is not None:
            before_last()
        self.settle()
        emit(self.sample())  # the last partial interval, so totals are complete


def _wait(stop: threading.Event, until: float) -> bool:
    """Sleep until `until` (monotonic), noticing stop within STOP_POLL_S; True when stop is set.
    A plain sleep: Event.wait's Python (a lock made, a condition) ran for every sample."""
    while not stop.is_set():
        left = until - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, STOP_POLL_S))
    return True


class _on_time:
    """While sampling: this thread at a real-time priority (SCHED_FIFO: a busy machine does not
    make samples late; refused without CAP_SYS_NICE: then as before), and the objects made so far
    frozen out of the garbage collector (a full collection of bcc's and numpy's objects took tens
    of ms in the middle of an interval). Both undone at the end."""

    def __enter__(self) -> "_on_time":
        self.tid = threading.get_native_id()
        try:
            self.policy = os.sched_getscheduler(self.tid), os.sched_getparam(self.tid)
            os.sched_setscheduler(self.tid, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
        except (OSError, AttributeError):
            self.policy = None
        gc.freeze()
        return self

    def __exit__(self, *exc) -> None:
        gc.unfreeze()
        if self.policy is not None:
            try:
                os.sched_setscheduler(self.tid, self.policy[0], self.policy[1])
            except OSError:
                pass
