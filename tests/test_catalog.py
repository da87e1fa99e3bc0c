"""The program catalog (backend/agent/catalog.py): one declaration of the programs, options and
limits, the same as the engine's, behind the agent's `catalog` answer, the command line's options
and the one request -> SessionConfig path. No root needed."""
from __future__ import annotations

import argparse
import json
import subprocess

import pytest

import main
from backend.agent import catalog
from backend.agent.catalog import BadRequest
from backend.agent.session import SessionConfig, session_config
from tests.conftest import XDPSCOPE

pytestmark = pytest.mark.unit


def test_limits_are_the_engines():
    from backend.kernel import attach, compile, injector, programs, wire
    from backend.kernel.collector import MAX_HZ, MIN_HZ
    inject = {p.name: p for p in catalog.INJECT}
    assert (inject["size"].min, inject["size"].max) == (injector.MIN_FRAME, injector.MAX_FRAME) == (60, 3000)
    assert inject["batch"].max == injector.MAX_BATCH and catalog.MAX_WIRE_BATCH == wire.MAX_BATCH
    assert inject["flows"].max == injector.MAX_FLOWS and inject["rate"].max == wire.MAX_RATE
    hz = catalog.param(catalog.SESSION, "hz")
    assert (hz.min, hz.max) == (MIN_HZ, MAX_HZ)
    assert catalog.builtin_names() == list(programs.BUILTINS)
    assert {p.name: p.help for p in catalog.PROGRAMS if p.name != "user"}.keys() == programs.BUILTINS.keys()
    assert catalog.POLICY.choices == tuple(programs.POLICIES)
    assert catalog.MAX_TARGETS == programs.MAX_TARGETS and catalog.MAX_SOURCE == compile.MAX_SOURCE
    assert catalog.param(catalog.SESSION, "mode").choices == ("auto", *attach.MODES)


def test_the_answer_has_the_contracts_shape():
    ans = json.loads(json.dumps(catalog.answer()))
    assert [p["name"] for p in ans["programs"]] == ["pass", "drop", "tx", "redirect", "cpumap", "mix", "user"]
    assert {p["name"]: p["targets"] for p in ans["programs"]}["cpumap"] == "cpus"
    keys = {"name", "type", "default", "min", "max", "choices", "help", "required"}
    for param in [*ans["session"], *ans["inject"], *(x for p in ans["programs"] for x in p["params"])]:
        assert set(param) == keys and param["type"] in ("int", "float", "bool", "choice", "str"), param
        assert len(param["help"]) > 8, param
    assert "force" not in [p["name"] for p in ans["session"]]   # the agent refuses it: not offered
    size = next(p for p in ans["inject"] if p["name"] == "size")
    assert (size["min"], size["max"], size["default"]) == (60, 3000, 64)
    assert next(p for p in ans["session"] if p["name"] == "mode")["choices"] == ["auto", "native", "generic"]


def test_the_agent_answers_the_catalog():
    p = subprocess.run([*XDPSCOPE, "agent", "--stdio"], input='{"id": 1, "cmd": "catalog"}\n',
                       capture_output=True, text=True, timeout=60)
    lines = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert lines[0]["event"] == "ready"
    assert lines[1] == {"id": 1, "ok": True, "result": json.loads(json.dumps(catalog.answer()))}


def _action(p: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in p._actions if flag in a.option_strings or a.dest == flag)


def _sub(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in main.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("cmd,params", [("record", catalog.SESSION), ("record", (catalog.POLICY, catalog.MIX)),
                                        ("inject", catalog.INJECT), ("lab", catalog.LAB)])
def test_cli_options_come_from_the_catalog(cmd, params):
    p = _sub(cmd)
    for param in params:
        a = _action(p, param.name if param.name == "action" else param.flag)
        assert a.help.startswith(param.help), param.name
        if param.type != "bool" and param.name != "action":
            assert a.default == param.default and a.required == param.required, param.name
        assert tuple(a.choices or ()) == tuple(param.choices or ()), param.name


def _cli(*args: str) -> SessionConfig:
    a = main.parser().parse_args(["record", "-o", "/nonexistent/t.xst", *args])
    return session_config(main.record_request(a), cli=True)


def test_one_path_from_request_to_session_config():
    """record's options and the agent's attach request give the same SessionConfig."""
    cli = _cli("--iface", "xs-in", "--program", "mix", "--mix", "PASS=40,DROP=30,TX=10,REDIRECT=20",
               "--targets", "a,b", "--hz", "20", "--mode", "generic", "--run-time")
    agent = session_config({"cmd": "attach", "id": 3, "iface": "xs-in", "program": "mix", "targets": ["a", "b"],
                            "mix": {"PASS": 40, "DROP": 30, "TX": 10, "REDIRECT": 20}, "hz": 20, "mode": "generic",
                            "run_time": True})
    assert cli == agent
    assert agent.program.mix == {"PASS": 40, "DROP": 30, "TX": 10, "REDIRECT": 20} and agent.hz == 20.0
    assert _cli("--iface", "x", "--watch") == session_config({"iface": "x", "program": "watch"})
    assert _cli("--iface", "x", "--watch").program is None


@pytest.mark.parametrize("old,new", [("xdp", "native"), ("xdpdrv", "native"), ("xdpgeneric", "generic"),
                                     ("xdpskb", "generic"), ("native", "native"), ("auto", "auto")])
def test_old_mode_spellings_are_read_as_native_generic(old, new):
    assert session_config({"iface": "x", "program": "drop", "mode": old}).mode == new
    assert _cli("--iface", "x", "--program", "drop", "--mode", old).mode == new


@pytest.mark.parametrize("req,cli,message", [
    ({"hz": 0}, True, "--hz must be between 1 and 100"),
    ({"hz": float("nan")}, False, "hz must be between 1 and 100"),
    ({"mode": "turbo"}, False, "mode must be one of auto, native, generic"),
    ({"run_time": 1}, False, "run_time must be true or false, not an integer"),
    ({"policy": "best"}, True, "--policy must be one of rr, hash, cpu"),
    ({"mix": "PASS"}, True, "--mix: 'PASS' is not VERDICT=PERCENT"),
    ({"cflags": "-D'x"}, True, "--cflags: No closing quotation"),
    ({"first_flow": 1}, False, "unknown argument 'first_flow'"),
])
def test_bad_values_name_the_option(req, cli, message):
    with pytest.raises(BadRequest, match="^" + message.replace("(", r"\(")):
        session_config({"iface": "x", "program": "drop", **req}, cli=cli)


def test_inject_limits_depend_on_wire():
    assert catalog.inject_args({"count": 5, "batch": 1024, "wire": True})["batch"] == 1024
    with pytest.raises(BadRequest, match="^--batch must be between 1 and 256$"):
        catalog.inject_args({"count": 5, "batch": 1024}, cli=True)
    with pytest.raises(BadRequest, match="^size must be between 60 and 3000 bytes$"):
        catalog.inject_args({"count": 5, "size": 9000})
    assert catalog.inject_args({"count": 5}) == {"count": 5, "batch": 64, "size": 64, "flows": 1, "first_flow": 0,
                                                 "cpu": None, "wire": False, "rate": None, "burst": None}


def test_old_traces_read_their_mode_as_native_generic(tmp_path):
    from backend.data.sample import Sample
    from backend.data.trace import TraceReader, TraceWriter
    from tests.conftest import run_cli
    path = tmp_path / "old.xst"
    with TraceWriter(path, {"iface": "xs-in", "mode": "xdpgeneric", "requested_mode": "xdp"}) as w:
        w.write(Sample(t=0.1, dt=0.1, verdicts=[[0, 0, 5, 0, 0]]))
    with TraceReader(path) as r:
        assert (r.meta["mode"], r.meta["requested_mode"]) == ("generic", "native")
    s = json.loads(run_cli("summary", str(path), "--json").stdout)
    assert s["mode"] == "generic" and s["meta"]["mode"] == "generic"


def _imported(*args: str) -> set[str]:
    """Top-level packages a command imports (python -X importtime)."""
    import os
    from tests.conftest import ROOT
    env = {**os.environ, "XDPSCOPE_SSH": "/nonexistent/ssh"}
    p = subprocess.run([*XDPSCOPE[:1], "-X", "importtime", *XDPSCOPE[1:], *args], capture_output=True, text=True,
                       timeout=60, env=env, cwd=ROOT)
    return {ln.split("|")[-1].strip().split(".")[0] for ln in p.stderr.splitlines() if ln.startswith("import time:")}


def test_commands_import_only_what_they_need(tmp_path):
    heavy = {"bcc", "PySide6", "pyqtgraph", "pyroute2"}
    assert not _imported("summary", "resources/sample.xst", "--json") & heavy
    assert not _imported("--help") & (heavy | {"numpy"})
    assert not _imported("record", "--iface", "x", "--program", "drop", "-o", str(tmp_path / "t.xst"),
                         "--remote", "vm1") & heavy   # the agent there does the kernel work
