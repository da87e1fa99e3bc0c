"""Soak: the agent at 100 Hz for a long time with continuous traffic. Watches what a leak or a
slow collector would show: the agent's RSS, open fds and CPU over time, the kernel's count of
BPF programs, and the samples that came late or never came. At the end, frames in = frames
counted (REDIRECT verdicts summed from the streamed samples = frames injected).

    sudo .venv/bin/python benchmarks/soak.py [--minutes 30] [--hz 100] [--every 30]

Prints one JSON object; `timeline` has one row per --every seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.kernel import bpfsys, host, injector
from backend.labs import veth as lab  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_stats(pid: int) -> dict:
    """RSS (MB), open fds and CPU seconds (user + system) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime, stime
    rss_mb = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
    return {"rss_mb": round(rss_mb, 1), "fds": len(os.listdir(f"/proc/{pid}/fd")), "cpu_s": cpu_s}


def kernel_programs() -> int:
    """BPF programs loaded in the kernel (libbpf's bpf_prog_get_next_id walk)."""
    import ctypes
    get_next = bpfsys.lib().bpf_prog_get_next_id
    cur, nxt, n = ctypes.c_uint32(0), ctypes.c_uint32(0), 0
    while get_next(cur, ctypes.byref(nxt)) == 0:
        cur, n = ctypes.c_uint32(nxt.value), n + 1
    return n


class Agent:
    """`xdpscope agent --stdio` as a child; a reader thread counts the sample events."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "agent", "--stdio"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.replies: dict[int, dict] = {}
        self.cond = threading.Condition()
        self.samples = 0
        self.late = 0            # intervals longer than 1.5 periods
        self.longest_dt = 0.0
        self.redirected = 0
        self.period = 0.0
        self.last_t = 0.0        # the newest sample's t: seconds since the session started
        self._next = 1
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            msg = json.loads(line)
            if msg.get("event") == "sample":
                s = msg["sample"]
                self.samples += 1
                self.last_t = s["t"]
                self.longest_dt = max(self.longest_dt, s["dt"])
                self.late += s["dt"] > 1.5 * self.period
                self.redirected += sum(cpu[4] for cpu in s.get("actions", []))
            elif "id" in msg:
                with self.cond:
                    self.replies[msg["id"]] = msg
                    self.cond.notify_all()

    def call(self, cmd: str, **args) -> dict:
        rid, self._next = self._next, self._next + 1
        self.proc.stdin.write(json.dumps({"id": rid, "cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        with self.cond:
            self.cond.wait_for(lambda: rid in self.replies, timeout=120)
        reply = self.replies.pop(rid)
        if not reply["ok"]:
            raise SystemExit(f"soak: {cmd}: {reply['error']}")
        return reply["result"]


def traffic(iface: str, stop: threading.Event, duty: float, sent: list[int]) -> None:
    """Live frames in bursts, `duty` of the time, on the last CPU (the agent may use the other)."""
    cpu = max(os.sched_getaffinity(0))
    burst = 200_000
    while not stop.is_set():
        r = injector.inject(iface, burst, batch=64, flows=4, cpu=cpu)
        sent[0] += r.frames
        stop.wait(r.seconds * (1 - duty) / duty)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--hz", type=float, default=100)
    ap.add_argument("--every", type=float, default=30, help="seconds between timeline rows")
    ap.add_argument("--duty", type=float, default=0.5, help="share of the time traffic runs")
    a = ap.parse_args()
    host.require_root("the soak")
    topo = lab.up("soak", 3)
    agent = Agent()
    stop = threading.Event()
    try:
        programs_before = kernel_programs()
        agent.period = 1 / a.hz
        agent.call("attach", iface=topo.ingress, program="redirect", targets=topo.targets,
                   hz=a.hz, run_time=True)
        sent = [0]
        feeder = threading.Thread(target=traffic, args=(topo.ingress, stop, a.duty, sent), daemon=True)
        t0 = time.monotonic()
        first = proc_stats(agent.proc.pid)
        feeder.start()
        timeline, last_cpu, last_t = [], first["cpu_s"], t0
        while (now := time.monotonic()) - t0 < a.minutes * 60:
            time.sleep(min(a.every, a.minutes * 60 - (now - t0)))
            st, now = proc_stats(agent.proc.pid), time.monotonic()
            timeline.append({"t_s": round(now - t0), "rss_mb": st["rss_mb"], "fds": st["fds"],
                             "cpu_pct": round(100 * (st["cpu_s"] - last_cpu) / (now - last_t), 1),
                             "samples": agent.samples, "late": agent.late,
                             "kernel_programs": kernel_programs(), "frames_sent": sent[0]})
            last_cpu, last_t = st["cpu_s"], now
            print(json.dumps(timeline[-1]), file=sys.stderr, flush=True)
        stop.set()
        feeder.join()
        elapsed = time.monotonic() - t0
        time.sleep(0.5)                       # the frames of the last burst reach a sample
        agent.call("detach")
        time.sleep(0.2)
        end = proc_stats(agent.proc.pid)
        expected = round(agent.last_t * a.hz)   # what the session's own clock says it owed
        result = {
            "minutes": a.minutes, "hz": a.hz, "duty": a.duty, "load_avg_end": os.getloadavg()[0],
            "samples": agent.samples, "expected_samples": expected,
            "missed_samples": max(0, expected - agent.samples),
            "late_samples": agent.late, "late_pct": round(100 * agent.late / max(1, agent.samples), 3),
            "longest_dt_ms": round(1000 * agent.longest_dt, 1),
            "frames_injected": sent[0], "frames_counted_redirect": agent.redirected,
            "exact": sent[0] == agent.redirected,
            "rss_mb_first_last": [first["rss_mb"], timeline[-1]["rss_mb"] if timeline else end["rss_mb"]],
            "fds_first_last_after_detach": [first["fds"], timeline[-1]["fds"] if timeline else None, end["fds"]],
            "cpu_pct_mean": round(100 * (end["cpu_s"] - first["cpu_s"]) / elapsed, 1),
            "kernel_programs_before_after_detach": [programs_before, kernel_programs()],
            "timeline": timeline,
        }
        print(json.dumps(result, indent=2))
        return 0 if result["exact"] else 1
    finally:
        stop.set()
        if agent.proc.poll() is None:
            agent.proc.stdin.close()
            agent.proc.wait(timeout=30)
        lab.down("soak")


if __name__ == "__main__":
    sys.exit(main())
