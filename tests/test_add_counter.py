"""The worked example of docs/architecture.md ("Adding a counter"), done for real: the doc's C edit
applied to a copy of bpf/probes.c, the doc's Family registered with schema.add, and nothing else
(probes.SOURCE points the probes at the copy). A real session on the veth lab counts ABORTED frames
sent through veth's receive path from chosen CPUs; the new counter's totals in summarize() and
`summary --json` must be exactly the frames sent from each CPU."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

import main
from backend.agent.session import Session, session_config
from backend.data import schema
from backend.data.schema import MAX_CPUS, Family, Index
from backend.data.summary import summarize
from backend.data.trace import TraceWriter
from backend.kernel import probes
from tests import wire
from tests.conftest import ROOT

# -- the doc's two edits, verbatim ---------------------------------------------------------------
EXCEPTIONS_CPU = Family("exceptions_cpu", ("exceptions_cpu", Index(MAX_CPUS, "cpu", dense=False)),
                        "xdp:xdp_exception events of the session's ingress, per CPU",
                        c_map="xs_exc_cpu", c_key="cpu", tracepoints=("xdp:xdp_exception",),
                        defines={"XS_EXC_CPU_SLOTS": 1})
C_MAP = "BPF_PERCPU_ARRAY(xs_exc_cpu, u64, XS_EXC_CPU_SLOTS);   /* per CPU: the CPU is the one counting */\n"
C_LINE = "    u32 z = 0; u64 *n = xs_exc_cpu.lookup(&z); if (n) (*n)++;\n"
# where they go: after the xs_exc map, and in the xdp_exception probe once the device is the ingress
MAP_AFTER = "BPF_PERCPU_ARRAY(xs_exc, u64, XS_EXC_SLOTS);"
LINE_AFTER = ("RAW_TRACEPOINT_PROBE(xdp_exception)\n{\n"
              "    if (!xs_is_ingress((void *)ctx->args[0], xs_gen_now()))\n        return 0;\n")

FRAMES = {0: 300, 1: 700}   # ABORTED frames sent from each CPU: the oracle


def edited(c: str) -> str:
    """bpf/probes.c with the doc's map and line (each anchor must be there exactly once)."""
    for anchor in (MAP_AFTER, LINE_AFTER):
        assert c.count(anchor) == 1, f"bpf/probes.c changed: {anchor!r} is not there once"
    line_end = c.index("\n", c.index(MAP_AFTER)) + 1
    c = c[:line_end] + C_MAP + c[line_end:]
    at = c.index(LINE_AFTER) + len(LINE_AFTER)
    return c[:at] + C_LINE + c[at:]


@pytest.fixture
def new_counter(tmp_path, monkeypatch):
    copy = tmp_path / "probes.c"
    copy.write_text(edited(probes.SOURCE.read_text()))
    monkeypatch.setattr(probes, "SOURCE", copy)
    schema.add(EXCEPTIONS_CPU)
    try:
        yield
    finally:
        schema.remove(EXCEPTIONS_CPU.name)


def record(lab, path, traffic) -> None:
    """A real session of the mix program (every frame ABORTED) on the lab ingress, recorded to path
    as `xdpscope record` does, while traffic() runs in a thread; stopped once it returns."""
    session = Session(session_config({"iface": lab.ingress, "program": "mix", "mix": "ABORTED=100", "hz": 20},
                                     cli=True))
    failed: list[BaseException] = []

    def drive() -> None:
        try:
            traffic()
            time.sleep(0.3)   # NAPI runs after the last send returns
        except BaseException as e:   # said by the test, after the session stopped
            failed.append(e)
        finally:
            session.stop()

    try:
        meta = session.start()
        with TraceWriter(str(path), meta) as writer:
            thread = threading.Thread(target=drive)
            thread.start()
            session.run(writer.write)   # the main thread: the writer's SQLite connection is its own
            thread.join()
    finally:
        session.close()
    if failed:
        raise failed[0]


@pytest.mark.kernel
def test_worked_example_counts_exceptions_per_cpu(lab, tmp_path, new_counter, capsys):
    assert {0, 1} <= os.sched_getaffinity(0), "the oracle needs CPUs 0 and 1"
    path = tmp_path / "trace.xst"
    record(lab, path, lambda: [wire.send(lab, n, cpu=cpu) for cpu, n in FRAMES.items()])
    want = [FRAMES[0], FRAMES[1]]
    s = summarize(str(path))
    assert s["counters"]["exceptions_cpu"] == want
    assert s["exceptions"] == {"ABORTED": sum(FRAMES.values())}   # the schema's old per-verdict count agrees
    capsys.readouterr()
    assert main.main(["summary", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counters"]["exceptions_cpu"] == want


@pytest.mark.unit
def test_the_edit_is_only_the_doc_s():
    """The copy differs from bpf/probes.c by the two C lines alone, and the doc shows these two
    lines and this Family (blanks aside)."""
    c = probes.SOURCE.read_text()
    new = edited(c).splitlines(keepends=True)
    for line in (C_MAP, C_LINE):
        new.remove(line)
    assert "".join(new) == c
    doc, me = (" ".join(p.read_text().split()) for p in (ROOT / "docs/architecture.md", Path(__file__)))
    family = me[me.index("EXCEPTIONS_CPU = Family("):me.index('"XS_EXC_CPU_SLOTS": 1})') + 23]
    for text in (family, C_MAP, C_LINE):
        assert " ".join(text.split()) in doc[doc.index("## Worked example: adding a counter"):]
