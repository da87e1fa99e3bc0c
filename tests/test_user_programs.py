"""User programs as people write them: bcc's own shipped XDP examples, run as `--program FILE.c`
with their own cflags and no edit to their C text; their maps sampled as counters; compile errors
on the user's own file, line and column. Frames come through the ingress's peer (tests/wire.py)."""
from __future__ import annotations

import ast
import os
import shlex
import socket
import struct
import time
from pathlib import Path

import pytest

from backend.errors import XdpscopeError
from backend.kernel import compile as compile_mod
from backend.kernel import programs
from backend.labs import veth as labmod
from tests.conftest import run_cli
from tests.test_engine import by_verdict

EXAMPLES = Path("/usr/share/doc/bpfcc-tools/examples/networking/xdp")   # Debian's bpfcc-tools


def shipped(name: str, **script_vars: str) -> tuple[str, list[str]]:
    """The C text and the cflags of bcc's example NAME.py as the script passes them to BPF(...):
    the text verbatim, the cflags evaluated with the script's own XDP-mode variables."""
    path = EXAMPLES / f"{name}.py"
    assert path.exists(), f"{path}: install Debian's bpfcc-tools (scripts/setup.sh does)"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "BPF":
            kw = {k.arg: k.value for k in node.keywords}
            text = kw["text"].value
            cflags = eval(compile(ast.Expression(kw["cflags"]), str(path), "eval"), {}, script_vars)
            return text, cflags
    raise AssertionError(f"{path}: no BPF(text=...) call")


# -- no root: finding the XDP function, the cflags ------------------------------------------------

def test_functions_as_bcc_examples_declare_them():
    text, cflags = shipped("xdp_drop_count", ret="XDP_DROP", ctxtype="xdp_md", maptype="percpu_array")
    assert programs.xdp_functions(text, cflags) == ["xdp_prog1"]          # struct CTXTYPE, from -D
    assert programs.xdp_functions(text) == []                             # without its cflags: unknown
    text, cflags = shipped("xdp_redirect_map")
    assert programs.xdp_functions(text, cflags) == ["xdp_redirect_map", "xdp_dummy"]
    spec = programs.ProgramSpec("user", source=text, source_name="redirect_map.c", cflags=cflags)
    with pytest.raises(XdpscopeError, match=r"2 XDP functions \(xdp_redirect_map, xdp_dummy\): choose one "
                                            r"with --function NAME"):
        programs.user_function(spec)
    spec.function = "xdp_dummy"
    assert programs.user_function(spec) == "xdp_dummy"
    spec.function = "swap_src_dst_mac"                                    # static inline: not a program
    with pytest.raises(XdpscopeError, match="no XDP function swap_src_dst_mac"):
        programs.user_function(spec)


def test_cflags_split_like_a_shell_and_checked():
    assert programs.split_cflags("""-w -DRETURNCODE=XDP_DROP -DMAPTYPE='"percpu_array"'""") == \
        ["-w", "-DRETURNCODE=XDP_DROP", '-DMAPTYPE="percpu_array"']
    assert compile_mod.check_cflags(["-D", "A=1", "-Wno-unused", "-UB"], "p.c") == ["-DA=1", "-Wno-unused", "-UB"]
    for bad, why in ((["-include", "/etc/shadow"], "not allowed"), (["-I/etc"], "beneath the header directories"),
                     (["-DXS_POLICY=3"], "belongs to xdpscope"), (["-DX=a\nb"], "control characters"),
                     (['-DP=_Pragma("x")'], "_Pragma"), (["-Xclang", "-load"], "not allowed"),
                     (["-I/usr/include/../../etc"], "beneath the header directories")):
        with pytest.raises(XdpscopeError, match=why):
            compile_mod.check_cflags(bad, "p.c")
    with pytest.raises(XdpscopeError, match="--cflags: No closing quotation"):
        programs.split_cflags("-DA='x")


# -- the kernel -----------------------------------------------------------------------------------

def _frame(ethertype: int, proto: int | None) -> bytes:
    """A 64-byte frame; proto: the IPv4 protocol / IPv6 next header, None for a non-IP frame."""
    eth = bytes.fromhex("020000000002") + bytes.fromhex("020000000001") + struct.pack("!H", ethertype)
    if ethertype == 0x0800:
        l3 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 46, 0, 0, 64, proto, 0, b"\x0a\0\0\x01", b"\x0a\0\0\x02")
    elif ethertype == 0x86DD:
        l3 = struct.pack("!IHBB16s16s", 6 << 28, 6, proto, 64, b"\0" * 15 + b"\x01", b"\0" * 15 + b"\x02")
    else:
        l3 = b""
    return (eth + l3).ljust(64, b"\0")


def _send(lab, frames: list[tuple[bytes, int]]) -> None:
    """Write each frame count times into the ingress's peer (veth's NAPI runs the program)."""
    with labmod.inside(lab.netns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with s:
        s.bind((lab.ingress_peer, 0))
        for frame, count in frames:
            for _ in range(count):
                s.send(frame)


@pytest.mark.kernel
def test_bccs_xdp_drop_count_as_shipped(record, lab, tmp_path):
    text, cflags = shipped("xdp_drop_count", ret="XDP_DROP", ctxtype="xdp_md", maptype="percpu_array")
    src = tmp_path / "xdp_drop_count.c"
    src.write_text(text)
    rec = record("--iface", lab.ingress, "--program", str(src), f"--cflags={shlex.join(cflags)}", "--hz", "20")
    sent = {"17": 300, "6": 200, "1": 100, "58": 50, "0": 70}   # UDP, TCP, ICMP over IPv4; ICMPv6; ARP
    _send(lab, [(_frame(0x0800, 17), 300), (_frame(0x0800, 6), 200), (_frame(0x0800, 1), 100),
                (_frame(0x86DD, 58), 50), (_frame(0x0806, None), 70)])
    time.sleep(0.3)
    assert rec.stop() == 0
    s = rec.summary()
    assert s["actions"] == by_verdict(DROP=sum(sent.values()))
    assert s["verdict_method"] == "program counters"
    assert s["user_maps"] == {"dropcnt": sent}                 # its own map, per IP protocol, exactly
    assert s["meta"]["params"]["cflags"] == cflags


@pytest.mark.kernel
def test_bccs_xdp_redirect_map_with_its_devmap(record, lab, tmp_path):
    text, cflags = shipped("xdp_redirect_map")
    src = tmp_path / "xdp_redirect_map.c"
    src.write_text(text)
    target = lab.targets[0]
    rec = record("--iface", lab.ingress, "--program", str(src), f"--cflags={shlex.join(cflags)}",
                 "--function", "xdp_redirect_map", "--devmap", "tx_port", "--targets", target, "--hz", "20")
    _send(lab, [(_frame(0x0800, 17), 500)])
    time.sleep(0.3)
    assert rec.stop() == 0
    s = rec.summary()
    assert s["actions"] == by_verdict(REDIRECT=500)
    assert s["user_maps"] == {"rxcnt": {"0": 500}}
    assert s["devmap"][target] == {"sent": 500, "drops": 0}
    assert s["redirect_targets"] == {target: 500}               # from the xdp_redirect probe
    assert s["meta"]["user_maps"] == {"sampled": ["rxcnt"], "not_sampled": {"tx_port": "map type 14 is not an array or hash"}}


@pytest.mark.kernel
def test_bccs_other_xdp_examples_run_unedited(record, lab, tmp_path):
    """xdp_macswap_count sends every frame back (TX) and counts it per protocol; xdp_redirect_cpu,
    whose cpumap only its own script fills, returns ABORTED for every frame (bpf_redirect_map's
    default on an empty slot), as it would under bcc."""
    runs = [("xdp_macswap_count", dict(ret="XDP_TX", ctxtype="xdp_md"), "TX", "dropcnt", "17"),
            ("xdp_redirect_cpu", dict(max_cpu=os.cpu_count()), "ABORTED", "rxcnt", "0")]
    for name, script_vars, verdict, counts, key in runs:
        text, cflags = shipped(name, **script_vars)
        src = tmp_path / f"{name}.c"
        src.write_text(text)
        rec = record("--iface", lab.ingress, "--program", str(src), f"--cflags={shlex.join(cflags)}", "--hz", "20",
                     name=f"{name}.xst")
        _send(lab, [(_frame(0x0800, 17), 400)])
        time.sleep(0.3)
        assert rec.stop() == 0
        s = rec.summary()
        assert s["actions"] == by_verdict(**{verdict: 400}), name
        assert s["user_maps"][counts] == {key: 400}, name


def _compile_error(tmp_path, text: str, *extra: str) -> str:
    src = tmp_path / "mine.c"
    src.write_text(text)
    p = run_cli("record", "--iface", "lo", "--program", str(src), *extra, "-o", str(tmp_path / "t.xst"),
                check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    return p.stderr


@pytest.mark.kernel
def test_compile_errors_point_at_the_users_own_file_line_and_column(tmp_path):
    text = ("#include <uapi/linux/bpf.h>\n"
            "\n"
            "int prog(struct CTX *ctx)\n"
            "{\n"
            "\tint n = RETURNCODE;\n"
            "\treturn n + undeclared_thing;\n"
            "}\n")
    err = _compile_error(tmp_path, text, "--cflags=-DCTX=xdp_md -DRETURNCODE=XDP_PASS")
    assert "mine.c:6:13: error: use of undeclared identifier 'undeclared_thing'" in err
    assert "    6 | \treturn n + undeclared_thing;\n      | \t           ^" in err
    assert "xdpscope-user.c" not in err and "xdpscope-wrapper" not in err


@pytest.mark.kernel
def test_cflags_refused_by_the_cli_before_any_compile(tmp_path):
    err = _compile_error(tmp_path, "int p(struct xdp_md *c) { return 2; }\n", "--cflags=-include /etc/passwd")
    assert "--cflags: -include is not allowed" in err
