"""xdpscope command line: gui (default), doctor, lab, vlab, record, inject, summary, agent."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from backend.errors import XdpscopeError


def cmd_doctor(a) -> int:
    if a.remote:  # the remote agent's report (backend/agent/client.py)
        from backend.agent import client
        return client.doctor(a)
    from backend.agent import doctor
    report = doctor.run()
    print(json.dumps(report, indent=2) if a.json else doctor.format_text(report))
    return 0 if report["ok"] else 1


def cmd_lab(a) -> int:
    from backend.labs import veth
    print(json.dumps(veth.command(a.action, a.prefix, a.targets), indent=2))
    return 0


def record_request(a) -> dict:
    """record's options as the agent's attach request (docs/agent-protocol.md): the one form both
    the local session (session_config) and a remote agent take. A .c file is read here and sent
    as text: an agent never opens a path its client names."""
    from backend.agent import catalog
    if a.watch and a.program:
        raise XdpscopeError("--watch observes the attached program: leave out --program")
    if not a.watch and not a.program:
        raise XdpscopeError("record needs --program (or --watch to observe an attached program)")
    req: dict = {"iface": a.iface, "program": "watch" if a.watch else a.program}
    if a.program and a.program.endswith(".c"):
        req.update(program="user", source=read_program(a.program), source_name=os.path.basename(a.program))
    if a.targets:
        req["targets"] = [t for t in a.targets.split(",") if t]
    options = [*catalog.SESSION, *catalog.program_params().values()]
    req.update({p.name: getattr(a, p.name) for p in options if getattr(a, p.name) not in (None, p.default)})
    return req


def read_program(path: str) -> str:
    """The text of the user's C file (bounded: a .c path may name a device or a huge file)."""
    try:
        with open(path, "rb") as f:
            data = f.read(64 * 1024 * 1024 + 1)
        return data.decode("utf-8")
    except OSError as e:
        raise XdpscopeError(f"{path}: cannot read program: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise XdpscopeError(f"{path}: not a C source file (byte {e.start} is not UTF-8 text)") from None


def cmd_record(a) -> int:
    from backend.data.trace import TraceWriter, check_output
    if os.path.exists(a.output) and not a.overwrite:
        raise XdpscopeError(f"{a.output} exists: choose another name or pass --overwrite")
    if a.remote and a.force:
        raise XdpscopeError("--force does not go with --remote: an agent never attaches to or redirects to its "
                            "host's uplink (run `xdpscope record --force` as root on that machine)", code=2)
    if not a.remote:  # the first thing to say, before the output (Session.start checks it again)
        from backend.kernel import host
        host.require_root("watching XDP" if a.watch else "attaching XDP programs")
    check_output(a.output)  # a directory, a read-only mount...: said before anything is attached
    request = record_request(a)
    if a.remote:  # the agent there runs session_config on it; the trace is written here (backend/agent/client.py)
        from backend.agent import client
        return client.record(a, request)
    from backend.agent.session import Session, session_config
    cfg = session_config(request, cli=True)   # what the agent runs on its attach request
    session = Session(cfg)
    exporter = None
    if a.metrics:  # /metrics from the same samples as the trace (backend/agent/metrics.py)
        from backend.agent import metrics
        exporter = metrics.serve(a.metrics)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: session.stop())
    timer = None
    try:
        meta = session.start()
        if meta["mode_note"]:
            print(f"xdpscope: {meta['iface']}: {meta['mode_note']}", file=sys.stderr)
        if exporter is not None:
            exporter.attached(meta)
        with TraceWriter(a.output, meta) as writer:
            print("ready", flush=True)
            if a.duration:
                timer = threading.Timer(a.duration, session.stop)
                timer.daemon = True  # a recording that ends early (disk full) exits now, not at --duration
                timer.start()
            emit = writer.write if exporter is None else _tee(exporter.sample, writer.write)
            session.on_fault = lambda f: _record_fault(session, writer, f)
            session.run(emit)
    finally:
        if timer is not None:
            timer.cancel()
        session.close()
        if exporter is not None:
            exporter.close()
    if session.end_reason:  # the ingress vanished: the trace is complete up to then
        raise XdpscopeError(f"{session.end_reason}; {a.output} holds the samples until then")
    return 0


def _record_fault(session, writer, fault) -> None:
    """An interface of the session vanished or changed state: in the trace's meta, and said on
    stderr unless it ends the recording (that is the one final line)."""
    writer.set_meta("faults", session.meta.get("faults", []))
    if not session.end_reason:
        print(f"xdpscope: {fault.message}", file=sys.stderr, flush=True)


def _tee(*sinks):
    def emit(sample) -> None:
        for sink in sinks:
            sink(sample)
    return emit


def cmd_inject(a) -> int:
    from backend.agent import catalog
    from backend.agent.inject import run
    if not a.wire and (a.rate is not None or a.burst is not None):
        raise XdpscopeError("--rate and --burst pace frames sent --wire; BPF_PROG_TEST_RUN runs as fast as it can",
                            code=2)
    request = {p.name: getattr(a, p.name) for p in catalog.INJECT if getattr(a, p.name) is not None}
    args = catalog.inject_args(request, cli=True)
    print(json.dumps(run({**args, "iface": a.iface}).to_dict()))
    return 0


def cmd_summary(a) -> int:
    from backend.data.summary import summarize
    if a.t_from is not None and a.t_to is not None and a.t_from > a.t_to:
        raise XdpscopeError(f"empty window: --from {a.t_from:g} is after --to {a.t_to:g}", code=2)
    s = summarize(a.file, a.t_from, a.t_to)
    if a.json:
        print(json.dumps(s, indent=2, sort_keys=True))
    else:
        from backend.data.summary import format_text
        print(format_text(s))
    return 0


MAX_DURATION = 30 * 86400  # --duration: 30 days (a month of samples at 100 Hz is ~50 GB of trace)


def number(lo: float, hi: float, what: str):
    """An argparse type: a finite number in [lo, hi], else one line."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not lo <= v <= hi:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"{text} {what}: must be between {lo:.15g} and {hi:.15g}")
        return v
    return parse


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that states every option's default: "(default: X)" unless the help already says it,
    or there is nothing to say (a flag that is off, an option that is unset)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if "default" in text or d is None or d is False or d in ([], "") or d is argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: {d})"


class Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error (exit 2, as argparse does)."""

    def __init__(self, *args, **kw) -> None:
        kw.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kw)

    def error(self, message: str):
        self.exit(2, f"xdpscope: {message} (see {self.prog} --help)\n")


def _seconds(option: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise XdpscopeError(f"{option} {text!r}: expected seconds since the session start") from None


def cmd_report(a) -> int:
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # headless: no display needed, none used
    from gui.render import parse_size
    from gui.report import check_window, output_kind
    t_from, t_to = _seconds("--from", a.t_from), _seconds("--to", a.t_to)
    check_window(t_from, t_to)
    output_kind(a.output)
    size = parse_size(a.size) if a.size else None
    from PySide6.QtCore import qInstallMessageHandler
    from PySide6.QtWidgets import QApplication

    def qt_message(mode, context, message):  # the offscreen platform's window-manager notes are noise here
        if "propagateSizeHints" not in message:
            print(f"xdpscope: qt: {message}", file=sys.stderr)
    qInstallMessageHandler(qt_message)
    app = QApplication.instance() or QApplication(["xdpscope"])  # noqa: F841  (kept alive while rendering)
    from gui.report import write_report
    rep = write_report(a.file, a.output, t_from, t_to, size)
    print(f"{a.output}: report of {rep.summary['samples']} samples ({rep.summary['duration_s']:.3f} s), "
          f"{len(rep.plots)} plots, {len(rep.findings)} findings")
    return 0


def cmd_agent(a) -> int:
    import os
    from backend.agent import server
    # The protocol owns the real stdout; anything else printing (bcc, libraries) goes to stderr.
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if a.metrics:  # /metrics of the sessions this agent runs (the GUI's), backend/agent/metrics.py
        from backend.agent import metrics
        exporter = metrics.serve(a.metrics)
        try:
            return server.serve(sys.stdin, proto, observer=exporter)
        finally:
            exporter.close()
    return server.serve(sys.stdin, proto)


def cmd_gui(a, rest: list[str]) -> int:
    from gui.app import main as gui_main
    return gui_main(rest)


def parser() -> argparse.ArgumentParser:
    from backend.agent import catalog
    p = Parser(prog="xdpscope", description="See what XDP does on a NIC.")
    sub = p.add_subparsers(dest="cmd")
    d = sub.add_parser("doctor", help="check kernel, bcc, headers, tracepoints, interfaces")
    d.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    remote_args(d)
    lab = sub.add_parser("lab", help="veth + namespace topology for exact counting")
    catalog_options(lab, catalog.LAB, positional="action")
    r = sub.add_parser("record", help="attach a program, sample its counters into a trace")
    r.add_argument("--iface", required=True, help="interface to attach to (or to watch)")
    r.add_argument("--program", help=f"{'|'.join(catalog.builtin_names())} or a .c file")
    r.add_argument("--watch", action="store_true",
                   help="observe the XDP program someone else attached (nothing is replaced)")
    r.add_argument("--targets", help="comma-separated redirect target interfaces (CPU ids for cpumap)")
    catalog_options(r, tuple(catalog.program_params().values()))
    catalog_options(r, catalog.SESSION)
    r.add_argument("--duration", type=number(0.001, MAX_DURATION, "seconds"),
                   help=f"seconds, at most {MAX_DURATION} (30 days) (default: until SIGINT/SIGTERM)")
    r.add_argument("-o", "--output", required=True, help="trace file to write (SQLite)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing trace file")
    remote_args(r)
    metrics_arg(r)
    i = sub.add_parser("inject", help="live frames into the program attached to an interface")
    i.add_argument("--iface", required=True, help="interface whose attached XDP program gets the frames")
    catalog_options(i, catalog.INJECT)
    s = sub.add_parser("summary", help="totals of a trace file")
    s.add_argument("file", help="trace file (.xst)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.add_argument("--from", dest="t_from", metavar="S", type=number(0, 1e12, "seconds since the session start"),
                   help="window start, seconds since the session start (default: the first sample)")
    s.add_argument("--to", dest="t_to", metavar="S", type=number(0, 1e12, "seconds since the session start"),
                   help="window end, seconds since the session start (default: the last sample)")
    rp = sub.add_parser("report", help="HTML, PDF or PNG report of a trace (headless)")
    rp.add_argument("file", help="trace file")
    rp.add_argument("-o", "--output", required=True, help="OUT.html, OUT.pdf or OUT.png (one tall image)")
    rp.add_argument("--from", dest="t_from", metavar="S",
                    help="window start, s since session start (default: the first sample)")
    rp.add_argument("--to", dest="t_to", metavar="S", help="window end, s since session start (default: the last sample)")
    rp.add_argument("--size", metavar="WxH", help="pixels of each plot image (default 1200x460; PDF 960x400)")
    ag = sub.add_parser("agent", help="the engine as JSON lines on stdin/stdout")
    ag.add_argument("--stdio", action="store_true", required=True,
                    help="speak the protocol on stdin/stdout (docs/agent-protocol.md); the only transport")
    metrics_arg(ag)
    sub.add_parser("vlab", help="QEMU guest with 3 virtio_net NICs: up|run|down|status|check (see docs/vlab.md)",
                   add_help=False)
    sub.add_parser("gui", help="the desktop app (default)", add_help=False)
    return p


def catalog_options(p: argparse.ArgumentParser, params: tuple, positional: str = "") -> None:
    """Options from the catalog (backend/agent/catalog.py): its help, default and choices. Values
    are only converted here; their limits are checked with the request (session_config,
    inject_args), by the code the agent runs too."""
    from backend.agent import catalog
    for param in params:
        if not param.cli:
            continue
        help = param.help + (f" ({catalog.number_text(param.min)} to {catalog.number_text(param.max)})" if param.type in ("int", "float")
                             and param.min is not None and "between" not in param.help else "")
        if param.name == positional:
            p.add_argument(param.name, choices=param.choices, help=param.help)
        elif param.type == "bool":
            p.add_argument(param.flag, action="store_true", help=help)
        else:
            p.add_argument(param.flag, type=_converter(param), default=param.default, choices=param.choices,
                           required=param.required, help=help or param.name)


def _converter(param):
    def convert(text: str):
        try:
            return param.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = param.type
    return convert


def remote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--remote", metavar="[USER@]HOST",
                   help="run the agent on HOST over ssh (sudo -n xdpscope agent --stdio; $XDPSCOPE_SSH replaces ssh)")
    p.add_argument("--remote-xdpscope", metavar="PATH", help="xdpscope on the remote (default: found on its PATH)")


def metrics_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (HOST defaults to 127.0.0.1; "
                        "any other address is reachable from other machines)")


COMMANDS = {"doctor": cmd_doctor, "lab": cmd_lab, "record": cmd_record, "inject": cmd_inject,
            "summary": cmd_summary, "report": cmd_report,
            "agent": cmd_agent}


def main(argv: list[str]) -> int:
    if not argv or argv[0] == "gui" or argv[0].startswith("--replay"):
        rest = argv[1:] if argv and argv[0] == "gui" else argv
        return run_guarded(lambda: cmd_gui(None, rest))
    if argv[0] == "vlab":  # its own argument parser (backend/labs/vlab.py)
        from backend.labs import vlab
        return run_guarded(lambda: vlab.cli(argv[1:]))
    args = parser().parse_args(argv)
    if args.cmd is None:
        parser().print_help()
        return 2
    return run_guarded(lambda: COMMANDS[args.cmd](args))


def run_guarded(fn) -> int:
    """Users get one clear message and a non-zero exit, never a traceback."""
    try:
        return fn()
    except XdpscopeError as e:
        print(f"xdpscope: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
