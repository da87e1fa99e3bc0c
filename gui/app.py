"""`xdpscope gui`: argument handling, the embedded default, and screenshots for the docs."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

REPO = Path(__file__).resolve().parent.parent
SAMPLE_TRACE = REPO / "resources" / "sample.xst"


def parse_args(argv: list[str]) -> argparse.Namespace:
    return parser().parse_args(argv)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xdpscope gui", description="Visualize how Linux runs XDP programs.")
    p.add_argument("trace", nargs="?", help="trace file to replay (same as --replay; default: go live as root, "
                   "else the bundled sample trace)")
    p.add_argument("--replay", metavar="FILE", help="replay a trace file instead of going live")
    p.add_argument("--live", action="store_true",
                   help="start the agent and the lab demo even when not root (sudo -n / pkexec)")
    p.add_argument("--agent", metavar="CMD", help="agent command line (default: <repo>/xdpscope agent --stdio)")
    p.add_argument("--remote", metavar="[USER@]HOST",
                   help="run the agent on HOST over ssh (sudo -n xdpscope agent --stdio; $XDPSCOPE_SSH replaces ssh)")
    p.add_argument("--remote-xdpscope", metavar="PATH", help="xdpscope on the remote (default: found on its PATH)")
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="the agent serves Prometheus metrics of its sessions there (docs/metrics.md)")
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window and exit")
    p.add_argument("--show", metavar="DOCK,...", default="",
                   help="bring these docks to the front of their tab groups, e.g. Verdicts,NAPI (default: the layout's)")
    p.add_argument("--after", metavar="SECONDS", type=float, default=3.0,
                   help="delay before --screenshot (default: 3)")
    p.add_argument("--size", metavar="WxH", default="",
                   help="window size, e.g. 1600x1000 (default: the last size, or 1600x1000 on a screen that fits it)")
    return p


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM"))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not has_display():
        if not args.screenshot:  # Qt would abort with a page of plugin errors
            print("xdpscope: no display (DISPLAY is not set): run it in a desktop session or under "
                  "xvfb-run; on a server use record / summary / report", file=sys.stderr)
            return 1
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # screenshots need no screen
    from .main_window import MainWindow, freeze_startup_objects  # after argparse: --help works without a display

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("xdpscope")
    app.setOrganizationName("xdpscope")
    settings = QSettings("xdpscope", "xdpscope")
    if args.screenshot:  # docs screenshots: a fixed layout, not the user's
        settings = QSettings(str(Path(tempfile.mkdtemp(prefix="xdpscope-gui-")) / "settings.ini"),
                             QSettings.Format.IniFormat)
    commands = [shlex.split(args.agent)] if args.agent else None
    metrics_args = ["--metrics", args.metrics] if args.metrics else []
    if metrics_args and commands is None and not args.remote:
        from .agent_client import default_commands
        commands = [c + metrics_args for c in default_commands()]
    win = MainWindow(settings=settings, agent_commands=commands)
    if args.size:
        w, h = (int(v) for v in args.size.lower().split("x"))
        win.resize(w, h)

    replay = args.replay or args.trace
    if args.remote:  # the agent on that host, over ssh
        if not win.connect_remote(args.remote, args.remote_xdpscope, metrics_args):
            print(f"xdpscope gui: {win.last_error}", file=sys.stderr)
            return 1
    elif replay:
        if not win.open_trace(replay):
            print(f"xdpscope gui: {win.last_error}", file=sys.stderr)
            return 1
    elif os.geteuid() == 0 or args.live:
        win.run_default_live()
    elif SAMPLE_TRACE.exists():
        win.open_trace(SAMPLE_TRACE)
        win.log_line("not root: showing the bundled sample trace (Agent → Start agent, or run as root, to go live)")
    else:
        win.statusBar().showMessage("not root and no bundled trace: open a trace (File → Open) or start the agent")

    win.show()
    freeze_startup_objects()
    if args.screenshot:
        def shoot() -> None:
            for name in filter(None, args.show.split(",")):
                if name in win.docks:
                    win.docks[name].raise_()
            app.processEvents()
            win.frame(force=True)
            app.processEvents()
            pix = win.grab()
            pix.setDevicePixelRatio(1.0)  # HiDPI: save at the pixel size, not doubled
            ok = pix.save(args.screenshot)
            print(f"xdpscope gui: screenshot {'saved to' if ok else 'FAILED:'} {args.screenshot}", file=sys.stderr)
            win.close()
            app.exit(0 if ok else 1)
        QTimer.singleShot(int(args.after * 1000), shoot)
    app.aboutToQuit.connect(lambda: _stop_agent(win))
    return app.exec()


def _stop_agent(win) -> None:
    """On quit: ask the agent to detach and exit, and wait briefly so it is not killed mid-detach."""
    if win.session is not None and win.session.client.running:
        win.session.client.stop()
        win.session.client.proc.waitForFinished(3000)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
