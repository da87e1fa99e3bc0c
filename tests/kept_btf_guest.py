"""Run inside the QEMU guest (tests/test_kept_btf.py, test marked vlab): a built-in program compiled
by bcc, then rebuilt from the kept output, each attached natively to a virtio_net NIC and watched by
fexit (backend/kernel/fexit.py, as the watch method does) while live frames run it. Prints JSON,
one entry per load: the module's class, the fexit counts, the program's own counters and the
kernel's run count."""
from __future__ import annotations

import json
import os
import sys
import tempfile

from backend.kernel import attach, bpfsys, build_cache, build_store, fexit, injector, nic, programs

VERDICTS = ("ABORTED", "DROP", "PASS", "TX", "REDIRECT")
MIX = {"DROP": 30, "PASS": 40, "TX": 30}


def one(iface: str, frames: int) -> dict:
    loaded = programs.load(programs.ProgramSpec(name="mix", mix=MIX), nic.ifindex_of)
    stats = bpfsys.enable_run_stats()
    link = attach.attach(loaded.fd, nic.interface(iface), "native")
    try:
        fx = fexit.attach(loaded.fd)
        try:
            injector.inject(iface, frames, cpu=0)
            per_cpu = fx.read()
        finally:
            fx.close()
        own = loaded.bpf[b"xs_counters"][0]            # the program's per-CPU counters (bpf/xdpscope.h)
        return {"module": type(loaded.bpf).__name__, "btf_id": bpfsys.prog_info(loaded.fd).btf_id,
                "fexit": {v: sum(c[i] for c in per_cpu) for i, v in enumerate(VERDICTS)},
                "own": {v: sum(c.verdict[i] for c in own) for i, v in enumerate(VERDICTS)},
                "runs": bpfsys.prog_info(loaded.fd).run_cnt}
    finally:
        link.close()
        os.close(stats)
        loaded.close()


def main(iface: str, frames: int, store: str) -> None:
    """store: "off" (the memory cache) or "disk" (a new store; the memory cache off)."""
    os.environ[build_store.ENV] = "off" if store == "off" else tempfile.mkdtemp(prefix="xs-btf-")
    build_cache.enable(store == "off")
    print(json.dumps([one(iface, frames) for _ in range(2)]))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
