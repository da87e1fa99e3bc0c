"""The Sample: the one data type that flows from the collector to the recorder, the GUI and reports.

A sample holds *deltas* of raw kernel counters over one collector interval, never rates:
rates are delta / dt, totals are sums of deltas (never sums of rates).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

ACTIONS = ("ABORTED", "DROP", "PASS", "TX", "REDIRECT")  # index == XDP action value
FLUSH_BINS = 17      # devmap flush sizes 0..16 (DEV_MAP_BULK_SIZE == 16): exact bins
CPUMAP_BINS = 9      # cpumap bulk sizes 0..8 (CPU_MAP_BULK_SIZE == 8)
NAPI_BINS = 9        # napi work per poll, log2 bins: 0, 1, 2-3, 4-7, ... 64-127, >=128
MAX_TARGETS = 64     # redirect targets of one program (its devmap; backend/kernel/programs.py)


@dataclass
class Sample:
    """Counter deltas over one interval [t - dt, t]; t is seconds since the session start."""

    t: float
    dt: float
    # actions[cpu][action]: verdicts returned by the program, per CPU (index = ACTIONS)
    actions: list[list[int]] = field(default_factory=list)
    # redirect fan-out: target name -> per-CPU frames the program redirected to it
    targets: dict[str, list[int]] = field(default_factory=dict)
    # devmap flushes: target name -> histogram, bin i = number of flushes that sent+dropped i frames
    flush: dict[str, list[int]] = field(default_factory=dict)
    # devmap transmit outcome: target name -> {"sent": frames, "drops": frames}
    devmap: dict[str, dict[str, int]] = field(default_factory=dict)
    # redirect errors: target name -> errno name -> frames that failed with it
    redirect_errors: dict[str, dict[str, int]] = field(default_factory=dict)
    # xdp_exception events: verdict name -> count
    exceptions: dict[str, int] = field(default_factory=dict)
    # cpumap enqueue bulk sizes: bin i = number of bulks of i frames; plus dropped frames
    cpumap: dict[str, list[int] | int] = field(default_factory=dict)
    # napi polls: device name -> {"polls", "work", "budget", "full", "hist": [NAPI_BINS]}
    napi: dict[str, dict] = field(default_factory=dict)
    # driver counters (ethtool -S) deltas: name -> value
    driver: dict[str, int] = field(default_factory=dict)
    # kernel BPF run statistics deltas: {"cnt": runs, "ns": run time} when enabled
    run: dict[str, int] = field(default_factory=dict)
    # a user program's own maps (backend/kernel/user_maps.py): map -> key -> change of the value
    user_maps: dict[str, dict[str, int]] = field(default_factory=dict)

    def action_totals(self) -> list[int]:
        """Per-verdict totals over all CPUs."""
        return [sum(cpu[a] for cpu in self.actions) for a in range(len(ACTIONS))]

    def target_totals(self) -> dict[str, int]:
        return {name: sum(per_cpu) for name, per_cpu in self.targets.items()}

    def to_dict(self) -> dict:
        """Compact JSON-ready form: empty members are left out."""
        return {k: v for k, v in asdict(self).items() if v or k in ("t", "dt")}

    @classmethod
    def from_dict(cls, d: dict) -> "Sample":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})
