"""Collector: reads every counter at a chosen rate (read_raw: the kernel's cumulative counts,
keyed as backend/data/schema.py says) and turns the deltas of two reads into a Sample with the
pure backend/data/decode.py. dt is measured with the monotonic clock at each read (never assumed)."""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

from backend.data import driver, verdicts
from backend.data.decode import decode
from backend.data.sample import VERDICTS, Sample
from backend.kernel import bpfsys, driver_stats, probes, user_maps
from backend.kernel.probes import Probes, Raw
from backend.kernel.programs import LoadedProgram

MIN_HZ, MAX_HZ = 1, 100
WATCH_PERIOD = 0.5   # s between checks that the session's interfaces still exist and are up
SETTLE_ROUNDS = 8    # grace periods the last read waits at most for the counters to hold still
SETTLE_FALLBACK_S = 0.02   # without membarrier: a pause instead of a grace period
SETTLE_MAX_S = 1.0   # and at most this long for frames queued to cpumap kthreads


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
        self._last: Raw = {}
        # what raw keys name: DevId -> device name (probes.names resolves them in their
        # namespace), target slot -> target name
        self.names: dict = self.probes.names.names if self.probes is not None else {}
        if program is not None:
            self.names.update({slot: self.target_name(slot) for slot in range(len(program.spec.targets))})

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

    def baseline(self) -> None:
        """First read: everything before it belongs to nobody's interval."""
        self._last = self.read_raw()
        self._last_t = time.monotonic()
        self.start = self._last_t

    def sample(self) -> Sample:
        raw = self.read_raw()
        now = time.monotonic()
        last = self._last
        delta = {k: v - last.get(k, 0) for k, v in raw.items()}
        dt = now - self._last_t
        self._last, self._last_t = raw, now
        return self.to_sample(delta, now - self.start, dt)

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
        if self.program is None and self.fexit is None:
            s.verdicts = verdicts.from_driver(self.verdict_method, self.driver_name, s.driver, s.exceptions)
        return s

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
        deadline = time.monotonic() + period
        next_watch = time.monotonic() + WATCH_PERIOD
        while not stop.wait(max(0.0, deadline - time.monotonic())):
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
