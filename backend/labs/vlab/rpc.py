"""The vlab's spool RPC between host and guest: files in the shared directory (9p), each JSON,
written to a temporary name and renamed, so a reader never sees half a file:

  ready.json          guest -> host, once the NICs are renamed and up: kernel, NICs, boot time
  req/<id>.json       host -> guest: {"argv": [...], "timeout": s|null, "cwd": str|null,
                                      "input": str|null}  or  {"op": "shutdown", "grace": s}
  resp/<id>.json      guest -> host: {"rc": int, "stdout": str, "stderr": str, "elapsed": s}

Each request runs in its own thread in the guest, so a long command (a recorder) and short ones
(ethtool -S) run side by side. Stdlib only: the guest side runs under the guest's system python.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path


def make_spool(sd: Path) -> None:
    (sd / "req").mkdir(parents=True)
    (sd / "resp").mkdir()


def ready_path(sd: Path) -> Path:
    return sd / "ready.json"


def response_path(sd: Path, rid: str) -> Path:
    return sd / "resp" / (rid + ".json")


def write_json(path: str | Path, obj: object) -> None:
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def submit(sd: Path, req: dict) -> str:
    """Host side: hand the guest a request; returns its id (its answer: response_path)."""
    rid = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
    write_json(sd / "req" / (rid + ".json"), req)
    return rid


# -- guest side ---------------------------------------------------------------------------------
def _handle(sd: Path, rid: str, req: dict) -> None:
    t0 = time.monotonic()
    try:
        p = subprocess.run(req["argv"], capture_output=True, text=True, errors="replace",
                           timeout=req.get("timeout"), cwd=req.get("cwd"), input=req.get("input"))
        resp = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        resp = {"rc": 124, "stdout": out, "stderr": f"vlab guest: timed out after {req.get('timeout')} s"}
    except Exception as e:  # noqa: BLE001 - report anything to the host, never die
        resp = {"rc": 127, "stdout": "", "stderr": f"vlab guest: {type(e).__name__}: {e}"}
    resp["elapsed"] = time.monotonic() - t0
    write_json(response_path(sd, rid), resp)


def serve(sd: Path, poll: float = 0.05) -> int:
    """Guest side: run the requests that appear in req/ until a shutdown request."""
    reqdir = sd / "req"
    seen: set[str] = set()
    threads: list[threading.Thread] = []
    while True:
        try:
            names = sorted(n for n in os.listdir(reqdir) if n.endswith(".json"))
        except OSError:
            names = []
        for n in names:
            if n in seen:
                continue
            seen.add(n)
            try:
                req = json.loads((reqdir / n).read_text())
                (reqdir / n).unlink()
            except (OSError, ValueError):
                seen.discard(n)
                continue
            rid = n[:-5]
            if req.get("op") == "shutdown":
                for t in threads:
                    t.join(timeout=req.get("grace", 5))
                write_json(response_path(sd, rid), {"rc": 0, "stdout": "", "stderr": "", "elapsed": 0})
                return 0
            t = threading.Thread(target=_handle, args=(sd, rid, req), daemon=True)
            t.start()
            threads.append(t)
        threads = [t for t in threads if t.is_alive()]
        time.sleep(poll)
