"""Cost of one probes.read (the collector's probe maps, per sample), three ways in one run,
interleaved round after round, on maps populated by a redirect session to 3 targets with traffic:
  batch: today's read: BPF_MAP_LOOKUP_BATCH into buffers allocated once, sums in numpy;
  bcc:   the same maps through bcc's per-key iteration (a lookup syscall per key, per-CPU values
         summed in Python); it must give the same raw counters;
  old:   the previous probes (git commit OLD: bpf/probes.c and probes.py of then), loaded beside
         today's, read by their own read() (its NAPI map keyed per napi_struct of every device).

    sudo .venv/bin/python benchmarks/probes_read.py [--reads 3000] [--rounds 15]
    # an earlier commit's probes.py (same C) reading today's maps: before/after of one change
    sudo .venv/bin/python benchmarks/probes_read.py --old <commit> --same-maps
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.agent.session import Session, session_config  # noqa: E402
from backend.data import schema  # noqa: E402
from backend.kernel import probes  # noqa: E402
from backend.labs import veth as lab  # noqa: E402


OLD = "4661db0~1"   # the last commit before the batched, namespace-correct probes


def old_module(tmp: Path, old: str = OLD):
    """The previous probes module (and its C), from git."""
    for path in ("backend/kernel/probes.py", "bpf/probes.c"):
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{old}:{path}"], check=True,
                              capture_output=True, text=True).stdout
        (tmp / Path(path).name).write_text(text)
    spec = importlib.util.spec_from_file_location("old_probes", tmp / "probes.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_probes"] = mod   # dataclasses look their module up
    spec.loader.exec_module(mod)
    mod.BPF_DIR = tmp
    return mod


def load_old(ifindex: int, tmp: Path, old: str = OLD):
    """The previous probes, loaded for ifindex (their own C and maps)."""
    return old_module(tmp, old).load(ifindex)


def wrap_old(p: probes.Probes, tmp: Path, old: str):
    """The previous probes module's read over today's probes and maps (same keys, same work)."""
    mod = old_module(tmp, old)
    w = mod.Probes(p.bpf, p.available, list(p.enabled), devices=dict(p.devices), all_devices=p.all_devices,
                   names=p.names)
    w.close = lambda: None   # the session closes the maps
    return w


def read_bcc(p: probes.Probes, raw: dict) -> None:
    """The same raw counters through bcc's table iteration (the previous way)."""
    oversize = schema.define("XS_FLUSH_OVERSIZE")
    for key, per_cpu in p.bpf[b"xs_devtx"].items():
        dev = (key.ns, key.ifindex)
        raw[("devmap", dev, "sent")] = sum(v.sent for v in per_cpu)
        raw[("devmap", dev, "drops")] = sum(v.drops for v in per_cpu)
        for size in range(oversize + 1):   # bins still 0 are left out, as probes.read does
            n = sum(v.flush[size] for v in per_cpu)
            if n:
                raw[("flush", dev, size) if size < oversize else ("oversize_flushes", dev)] = n
    for key, per_cpu in p.bpf[b"xs_rerr"].items():
        raw[("redirect_errors", (key.to.ns, key.to.ifindex), key.err)] = sum(per_cpu)
    for key, per_cpu in p.bpf[b"xs_exc"].items():
        if sum(per_cpu):
            raw[("exceptions", key.value)] = sum(per_cpu)
    if "xdp:xdp_cpumap_enqueue" in p.enabled:
        slots = [sum(per_cpu) for _, per_cpu in p.bpf[b"xs_cpumap"].items()]
        drops = schema.define("XS_CPUMAP_DROPS")
        for size in range(drops):
            if slots[size]:
                raw[("cpumap_bulk", size)] = slots[size]
        raw[("cpumap_drops",)] = slots[drops]
    for key, per_cpu in p.bpf[b"xs_napi"].items():
        dev = (key.ns, key.ifindex)
        for f in schema.NAPI.positions[-1].names:
            raw[("napi", dev, f)] = sum(getattr(v, f) for v in per_cpu)
        for b in range(schema.define("XS_NAPI_BINS")):
            if sum(v.hist[b] for v in per_cpu):
                raw[("napi_hist", dev, b)] = sum(v.hist[b] for v in per_cpu)


def per_read_us(fn, reads: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reads):
        fn({})
    return (time.perf_counter() - t0) / reads * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=3000, help="reads per round and variant")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--old", default=OLD, help="the commit whose probes are the 'old' variant")
    ap.add_argument("--same-maps", action="store_true",
                    help="the old variant is the old module's read of today's maps (for a commit with today's C)")
    args = ap.parse_args()
    lb = lab.up("pbr", targets=3)
    session = Session(session_config({"iface": lb.ingress, "program": "redirect", "targets": lb.targets,
                                      "hz": 10}, cli=True))
    old = None
    try:
        session.start()
        if not args.same_maps:
            old = load_old(lb.ifindex[lb.ingress], Path(tempfile.mkdtemp()), args.old)
        subprocess.run([sys.executable, str(ROOT / "main.py"), "inject", "--iface", lb.ingress, "--wire",
                        "--count", "30000", "--batch", "64"], check=True, capture_output=True)
        p = session.collector.probes
        if args.same_maps:
            old = wrap_old(p, Path(tempfile.mkdtemp()), args.old)
        a, b = {}, {}
        p.read(a)
        read_bcc(p, b)
        # the cpumap families (no cpumap here) and per-packet redirects are not in the bcc variant
        a = {k: v for k, v in a.items() if k[0] not in ("cpumap_enqueue", "cpumap_kthread")}
        if a != b:
            print("batched and bcc reads differ:", set(a.items()) ^ set(b.items()), file=sys.stderr)
            return 1
        old_raw: dict = {}
        old.read(old_raw)
        if args.same_maps:   # then both reads must give the same raw counters, to the key
            new: dict = {}
            p.read(new)
            if new != old_raw:
                print("old and new reads differ:", set(new.items()) ^ set(old_raw.items()), file=sys.stderr)
                return 1
        times: dict[str, list[float]] = {"batch": [], "bcc": [], "old": []}
        fns = {"batch": p.read, "bcc": lambda raw: read_bcc(p, raw), "old": old.read}
        order = list(fns)
        for r in range(args.rounds):
            for name in order[r % 3:] + order[:r % 3]:   # rotated: A B C, B C A, C A B, ...
                times[name].append(per_read_us(fns[name], args.reads))
        med = {k: statistics.median(v) for k, v in times.items()}
        result = {"keys": len(a), "devmap_targets": sum(1 for k in a if k[0] == "devmap") // 2,
                  "napi_devices": sum(1 for k in a if k[0] == "napi") // 4,
                  "old_keys": len(old_raw), "old_napi_devices": sum(1 for k in old_raw if k[0] == "napi") // 4,
                  **{f"{k}_us_median": round(v, 1) for k, v in med.items()},
                  "batch/old": round(statistics.median(x / y for x, y in zip(times["batch"], times["old"])), 3),
                  "batch/bcc": round(statistics.median(x / y for x, y in zip(times["batch"], times["bcc"])), 3),
                  **{f"{k}_us": [round(x, 1) for x in v] for k, v in times.items()}}
        print(json.dumps(result, indent=1))
    finally:
        if old is not None:
            old.close()
        session.close()
        lab.down("pbr")
    return 0


if __name__ == "__main__":
    sys.exit(main())
