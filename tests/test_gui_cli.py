"""Every command-line option says what it does, and its default when it has one: the main CLI and
each subcommand, `xdpscope gui`, `xdpscope vlab` (issue 12: `record --iface --policy --mode --hz`,
`inject --count --batch --size --flows`, `summary --from --to`, `lab --targets --prefix`,
`doctor --json` had none)."""
import argparse

import pytest

import main
from backend.labs import vlab
from gui import app
from tests.conftest import run_cli


def parsers(p: argparse.ArgumentParser, path: str = ""):
    """p and every subcommand parser under it, with the command path."""
    yield path or p.prog, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from parsers(sub, f"{path or p.prog} {name}")


ALL = [*parsers(main.parser()), *parsers(app.parser()), *parsers(vlab.parser())]


@pytest.mark.parametrize("path,p", ALL, ids=[path for path, _ in ALL])
def test_every_option_has_help_and_its_default(path, p):
    for a in p._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = "/".join(a.option_strings) or a.dest
        assert a.help and a.help is not argparse.SUPPRESS and len(a.help) > 8, f"{path} {name}: no help"
        has_default = a.default not in (None, False, [], "", argparse.SUPPRESS)
        if has_default and a.option_strings:
            text = p.formatter_class(prog=p.prog)._get_help_string(a) % {"default": a.default, "prog": p.prog}
            assert "default" in text, f"{path} {name}: default {a.default!r} not said"


def help_of(*cmd: str) -> str:
    return " ".join(run_cli(*cmd, "--help").stdout.split())  # argparse wraps lines


def test_help_text_is_what_users_get():
    out = help_of("record")
    assert "--policy {rr,hash,cpu}" in out and "(default: rr)" in out and "(default: 10.0)" in out
    out = help_of("inject")
    assert "(default: 64)" in out and "flushed after each batch" in out
    assert "(default: 3)" in help_of("lab")
    assert "(default: the first sample)" in help_of("summary")
    assert "as JSON" in help_of("doctor")
