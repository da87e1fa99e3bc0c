"""The main window: plots in docks, the sources panel, session metadata, replay bar, recording.

One QTimer draws at ~30 FPS; each frame computes the visible window of the current source's model
once and lets every visible panel redraw only if that window or its data changed.
"""
from __future__ import annotations

import collections
import gc
import os
import time
from pathlib import Path

from typing import Callable

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (QComboBox, QDockWidget, QFileDialog, QLabel, QMainWindow, QPlainTextEdit, QSpinBox,
                               QToolBar, QToolButton, QWidget)

from backend.agent import remote
from backend.errors import XdpscopeError

from .agent_client import AgentClient
from .connect_dialog import ConnectDialog, describe, remember
from .driver_panel import DriverPanel
from .input_guard import InputGuard
from .layout import DockLayout
from .meta_panel import MetaPanel
from .plots.path import PathPanel
from .plots import (ErrorsPanel, FanoutPanel, FlushPanel, NapiPanel, Panel, QueuesPanel, UserMapsPanel, VerdictPanel,
                    make_view)
from .programs_table import ProgramsTable
from .recorder import Recorder, default_name
from .si import byte_size
from .replay import ReplayBar
from .session import Session
from .sources import Source
from .sources.live import LiveSource
from .sources.replay import ReplaySource
from .sources_panel import SourcesPanel

FRAME_MS = 33           # ~30 FPS; a frame with nothing new costs one comparison per panel
DEFAULT_WINDOW_S = 30
TRACE_FILTER = "xdpscope traces (*.xst);;All files (*)"
SMOOTHING = (("off", 1), ("avg 3", 3), ("avg 5", 5), ("avg 10", 10), ("avg 20", 20), ("avg 50", 50))
RECENT_MAX = 8


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None, agent_commands: list[list[str]] | None = None) -> None:
        super().__init__()
        self.setWindowTitle("xdpscope")
        self.setObjectName("xdpscope-main")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.settings = settings or QSettings("xdpscope", "xdpscope")
        self.agent_commands = agent_commands
        self.local_commands = agent_commands
        self.remote: remote.Target | None = None   # File → Connect to host… (connect_remote)
        self.remote_agent_args: list[str] = []     # e.g. --metrics for the remote agent
        self.host_info: dict = {}                   # host, kernel (hello), driver, iface (attach)
        self.session: Session | None = None  # the agent and its session (gui/session.py); its source: self.live
        self.replay: ReplaySource | None = None  # the last trace opened
        self.source: Source | None = None
        self.recorder = Recorder(self)
        self.last_error = ""
        self.frame_times: collections.deque[float] = collections.deque(maxlen=2000)  # seconds per drawing frame

        # every plot is a dock (no central widget): a small window can put them in tabs (gui/layout.py)
        self.verdicts = VerdictPanel()
        self.fanout, self.flush, self.errors, self.napi = FanoutPanel(), FlushPanel(), ErrorsPanel(), NapiPanel()
        self.queues = QueuesPanel()  # per RX queue, from the driver's rx_queue_N_xdp_* counters
        self.path_panel = PathPanel()  # the kernel path with the window's numbers on it (gui/path_view.py)
        self.user_maps = UserMapsPanel()  # a user program's own maps (schema family user_maps)
        self.panels: list[Panel] = [self.verdicts, self.fanout, self.flush, self.errors, self.napi, self.queues,
                                    self.user_maps, self.path_panel]
        self.programs = ProgramsTable()  # bpftop: the XDP programs on the agent's machine
        self.choose_record_path: Callable[[Path], str | None] = self._ask_record_path  # tests replace it
        self.sources_panel = SourcesPanel()
        self.meta_panel = MetaPanel()
        self.driver_panel = DriverPanel()  # BPF vs driver counters over the window
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.docks: dict[str, QDockWidget] = {}
        for title, widget in (("Sources", self.sources_panel), ("Session", self.meta_panel), ("Log", self.log),
                              ("Driver", self.driver_panel), ("Programs", self.programs),
                              ("Verdicts", self.verdicts), ("Fan-out", self.fanout), ("Flushes", self.flush),
                              ("Errors", self.errors), ("NAPI", self.napi), ("RX queues", self.queues),
                              ("Program maps", self.user_maps), ("Path", self.path_panel)):
            self._dock(title, widget, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.layout_manager = DockLayout(self, self.docks, self.settings)
        self.input_guard = InputGuard(self, self.toggle_play)  # wheel and Space rules (gui/input_guard.py)
        self.input_guard.install()

        self._build_actions()
        self.replay_bar = ReplayBar()
        self.replay_bar.sig_report.connect(self.report_range)
        bar = QToolBar("Replay")
        bar.setObjectName("replay-toolbar")
        bar.addWidget(self.replay_bar)
        self.addToolBar(Qt.ToolBarArea.BottomToolBarArea, bar)
        self.replay_toolbar = bar

        self.source_label = QLabel("no source")
        self.record_label = QLabel("")
        self.host_label = QLabel("")
        self.reconnect_button = QToolButton()
        self.reconnect_button.setDefaultAction(self.reconnect_action)
        self.reconnect_button.setVisible(False)
        self.statusBar().addWidget(self.source_label, 1)
        self.statusBar().addPermanentWidget(self.host_label)
        self.statusBar().addPermanentWidget(self.reconnect_button)
        self.statusBar().addPermanentWidget(self.record_label)

        sp = self.sources_panel
        sp.sig_start_agent.connect(self.start_agent)
        sp.sig_stop_agent.connect(lambda: self.session and self.session.stop())
        sp.sig_attach.connect(self._attach_clicked)
        sp.sig_detach.connect(lambda: self.session and self.session.detach())
        sp.sig_inject.connect(lambda args, loop: self.session and self.session.inject(args, loop))
        sp.sig_stop_inject.connect(lambda: self.session and self.session.stop_inject())
        sp.sig_lab.connect(lambda action: self.session and self.session.lab_action(action))
        self.recorder.sig_started.connect(lambda p: self.log_line(f"recording to {p}"))
        self.recorder.sig_stopped.connect(self._recorded)
        self.recorder.sig_failed.connect(self._record_failed)
        if os.geteuid() != 0 and agent_commands is None:  # say it before anything fails at Attach
            sp.set_agent_state("stopped", "Not root: a live session needs the agent as root. Start agent tries "
                               "sudo -n, then pkexec (a password prompt); without them, replay a trace (File → Open).")

        self._restore()
        self.timer = QTimer(self)
        self.timer.setInterval(FRAME_MS)
        self.timer.timeout.connect(self.frame)
        self.timer.start()
        self.status_timer = QTimer(self)
        self.status_timer.setInterval(500)
        self.status_timer.timeout.connect(self._update_record_label)
        self.status_timer.start()

    # -- construction ----------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        d = QDockWidget(title, self)
        d.setObjectName(f"dock-{title}")
        d.setWidget(widget)
        self.addDockWidget(area, d)
        self.docks[title] = d
        return d

    def _build_actions(self) -> None:
        fm = self.menuBar().addMenu("&File")
        self.open_action = QAction("&Open trace…", self, shortcut=QKeySequence.StandardKey.Open,
                                   triggered=self.open_dialog)
        fm.addAction(self.open_action)
        self.recent_menu = fm.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        fm.addAction(QAction("&Connect to host…", self, shortcut="Ctrl+Shift+O", triggered=self.connect_dialog,
                             toolTip="Run the agent on another machine over ssh"))
        self.reconnect_action = QAction("Re&connect", self, enabled=False, triggered=self.reconnect,
                                        toolTip="Connect again to the host whose connection was lost")
        fm.addAction(self.reconnect_action)
        fm.addAction(QAction("Use &this machine", self, triggered=self.connect_local,
                             toolTip="Leave the remote host: the agent runs here again"))
        self.record_action = QAction("● &Record", self, checkable=True, shortcut="Ctrl+R",
                                     toolTip="Record the live samples to a trace file you choose")
        self.record_action.toggled.connect(self.set_recording)
        fm.addAction(self.record_action)
        from .export import add_menu as add_export_menu  # File → Export: images, clipboard, reports
        self.export_menu = add_export_menu(self, fm)
        fm.addSeparator()
        fm.addAction(QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit, triggered=self.close))
        vm = self.menuBar().addMenu("&View")
        for d in self.docks.values():
            vm.addAction(d.toggleViewAction())
        vm.addSeparator()
        vm.addAction(QAction("&Reset layout", self, triggered=self.reset_layout,
                             toolTip="The default arrangement of the docks for this window size"))
        am = self.menuBar().addMenu("&Agent")
        am.addAction(QAction("&Start agent", self, triggered=self.start_agent))
        am.addAction(QAction("S&top agent", self, triggered=lambda: self.session and self.session.stop()))
        am.addAction(QAction("Run the &lab demo", self, triggered=self.run_default_live))

        tb = QToolBar("Main")
        tb.setObjectName("main-toolbar")
        self.addToolBar(tb)
        tb.addAction(self.open_action)
        tb.addAction(self.record_action)
        self.live_action = QAction("Live view", self, triggered=self.show_live, enabled=False,
                                   toolTip="Back to the live session")
        tb.addAction(self.live_action)
        tb.addSeparator()
        self.pause_action = QAction("Pause", self, checkable=True, toolTip="Freeze the view (Space); data keeps arriving")
        self.pause_action.toggled.connect(self._pause_toggled)
        tb.addAction(self.pause_action)
        tb.addWidget(QLabel(" window "))
        self.window_box = QSpinBox()
        self.window_box.setRange(1, 3600)
        self.window_box.setSuffix(" s")
        self.window_box.setValue(DEFAULT_WINDOW_S)
        self.window_box.setToolTip("Length of the visible time window")
        self.window_box.valueChanged.connect(self._window_changed)
        tb.addWidget(self.window_box)
        tb.addWidget(QLabel(" smooth "))
        self.smooth_box = QComboBox()
        for text, n in SMOOTHING:
            self.smooth_box.addItem(text, n)
        self.smooth_box.setToolTip("Moving average over N samples (frames over seconds of the last N samples). "
                                   "Changes only the view: recordings and reports keep every sample")
        self.smooth_box.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.smooth_box.currentIndexChanged.connect(lambda *_: self.frame(force=True))
        tb.addWidget(self.smooth_box)
        # Space: play/pause from any focus but a text field (gui/input_guard.py), not a shortcut that a
        # spin box or a button would take first
        for key, move in ((Qt.Key.Key_Right, lambda s: s.step(1)), (Qt.Key.Key_Left, lambda s: s.step(-1)),
                          (Qt.Key.Key_Home, lambda s: s.to_start()), (Qt.Key.Key_End, lambda s: s.to_end())):
            QShortcut(QKeySequence(key), self, activated=lambda move=move: self.seekable() and move(self.seekable()))

    # -- settings --------------------------------------------------------------------------
    def _restore(self) -> None:
        s = self.settings
        geo = s.value("geometry")
        if isinstance(geo, QByteArray):
            self.restoreGeometry(geo)
        else:  # first run: 1600x1000, or what the screen has room for
            screen = self.screen().availableGeometry() if self.screen() else None
            self.resize(min(1600, screen.width()) if screen else 1600, min(1000, screen.height()) if screen else 1000)
        from .layout import size_kind
        self.layout_manager.apply(size_kind(self.width(), self.height()))
        try:
            self.window_box.setValue(int(s.value("window_s", DEFAULT_WINDOW_S)))
            self.smooth_box.setCurrentIndex(max(self.smooth_box.findData(int(s.value("smooth", 1))), 0))
        except (TypeError, ValueError):
            pass

    def report_range(self, a: float, b: float) -> None:
        """The replay bar's "report this range": the report dialog with A-B filled in."""
        from .export import open_report_dialog
        open_report_dialog(self, (a, b))

    def reset_layout(self) -> None:
        self.layout_manager.reset()
        self.statusBar().showMessage("layout reset to the default for this window size", 5000)

    def resizeEvent(self, e) -> None:
        super().resizeEvent(e)
        self.layout_manager.resized()

    def smoothing(self) -> int:
        return int(self.smooth_box.currentData() or 1)

    def region(self) -> tuple[float, float] | None:
        """The transport's A-B range, shaded on the time plots when it is not the whole trace (or loops)."""
        return self.source.transport.region() if self.source is not None else None

    def seekable(self) -> Source | None:
        """The shown source if it has a timeline to move on (a trace), else None."""
        return self.source if self.source is not None and self.source.caps.seekable else None

    @property
    def live(self) -> LiveSource | None:
        """The live session's source (None before the agent was started)."""
        return self.session.source if self.session is not None else None

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("geometry", self.saveGeometry())
        self.layout_manager.save()
        s.setValue("window_s", self.window_box.value())
        s.setValue("smooth", self.smoothing())
        s.sync()

    def last_dir(self) -> str:
        return str(self.settings.value("last_dir", home_dir()))

    # -- open recent -------------------------------------------------------------------------
    def recent(self) -> list[str]:
        v = self.settings.value("recent", [])
        items = [v] if isinstance(v, str) else list(v or [])
        return [p for p in items if isinstance(p, str)]

    def add_recent(self, path: str | os.PathLike) -> None:
        p = str(Path(path).resolve())
        self.settings.setValue("recent", [p, *[r for r in self.recent() if r != p]][:RECENT_MAX])

    def _fill_recent(self) -> None:
        m = self.recent_menu
        m.clear()
        for p in self.recent():
            a = m.addAction(p, lambda p=p: self.open_trace(p))
            a.setEnabled(Path(p).exists())
        if not self.recent():
            m.addAction("(none yet)").setEnabled(False)

    # -- sources ---------------------------------------------------------------------------
    def set_source(self, src: Source) -> None:
        if self.source is not None:
            for sig, slot in ((self.source.model.sig_meta, self.meta_panel.set_meta),
                              (self.source.transport.sig_playing, self._transport_playing)):
                try:
                    sig.disconnect(slot)
                except (RuntimeError, TypeError):
                    pass
        self.source = src
        src.model.sig_meta.connect(self.meta_panel.set_meta)
        src.transport.sig_playing.connect(self._transport_playing)
        self.meta_panel.set_meta(src.model.meta)
        self.replay_bar.set_source(src)  # enabled for a seekable source
        self.pause_action.setEnabled(not src.caps.seekable)
        self._transport_playing(src.transport.playing)
        self.live_action.setEnabled(self.live is not None and src is not self.live)
        for p in self.panels:
            p.new_session()  # no readout or line style of the last session stays
        self.driver_panel.invalidate()
        self._show_user_maps(src.model.meta)
        self._show_source()
        self.frame(force=True)

    def _show_user_maps(self, meta: dict) -> None:
        """A user program's own maps are what its author wants to see: their tab comes to the front."""
        info = meta.get("user_maps") if isinstance(meta.get("user_maps"), dict) else {}
        if info.get("sampled"):
            self.docks["Program maps"].raise_()

    def _show_source(self) -> None:
        """The status bar's source line, from the source's state (the agent's answers for live)."""
        self.source_label.setText(self.source.describe() if self.source is not None else "no source")

    def open_trace(self, path: str | os.PathLike) -> bool:
        """Replay a trace; on a bad file say why (status bar and log), keep the current source."""
        try:
            src = ReplaySource(path, window=self.window_box.value(), parent=self)
        except (XdpscopeError, OSError) as e:
            self.last_error = str(e)
            self.log_line(f"cannot open trace: {e}")
            self.statusBar().showMessage(str(e), 10_000)
            return False
        if self.replay is not None:
            self.replay.close()
            self.replay.deleteLater()
        self.replay = src
        src.sig_status.connect(self._replay_error)
        self.settings.setValue("last_dir", str(Path(path).resolve().parent))
        self.add_recent(path)
        self.set_source(src)
        self.log_line(f"replaying {path}")
        return True

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open trace", self.last_dir(), TRACE_FILTER)
        if path:
            self.open_trace(path)

    def ensure_session(self) -> Session:
        if self.session is None:
            client = AgentClient(self.agent_commands, target=self.remote) if self.agent_commands is not None \
                else AgentClient()
            session = Session(client, parent=self)
            client.sig_ready.connect(lambda _: self._hello())
            sp = self.sources_panel
            session.sig_agent.connect(self._agent_state)
            session.sig_interfaces.connect(sp.set_interfaces)
            session.sig_programs.connect(sp.set_programs)
            session.sig_catalog.connect(sp.set_catalog)
            session.sig_lab.connect(sp.set_lab)
            session.sig_attached.connect(self._attached)
            session.sig_switched.connect(self._switched)
            session.sig_detached.connect(self._detached)
            session.model.sig_marker.connect(self.recorder.mark)
            session.sig_error.connect(self._live_error)
            session.sig_status.connect(lambda m: self.statusBar().showMessage(m, 8000))
            session.source.sig_sample.connect(self.recorder.write)
            session.client.sig_stderr.connect(lambda line: self.log_line(f"agent: {line}"))
            self.session = session
        return self.session

    # -- the agent's host: here or over ssh ---------------------------------------------------
    def connect_dialog(self) -> None:
        dlg = ConnectDialog(self.settings, self)
        if dlg.exec() == ConnectDialog.DialogCode.Accepted:
            t = dlg.target()
            self.connect_remote(t.host, t.xdpscope)

    def connect_remote(self, host: str, xdpscope: str | None = None, agent_args: list[str] | None = None) -> bool:
        """Replace the live source by one whose agent runs on host (ssh; backend/agent/remote.py)."""
        try:
            target = remote.Target.parse(host, xdpscope)
            command = remote.agent_command(target, interactive=False, agent_args=agent_args or self.remote_agent_args)
        except XdpscopeError as e:
            self.last_error = str(e)
            self._live_error(str(e))
            return False
        self.remote_agent_args = list(agent_args or self.remote_agent_args)
        self._drop_live()
        self.remote, self.agent_commands = target, [command]
        remember(self.settings, target)
        session = self.ensure_session()
        self.set_source(session.source)
        session.start()
        self.log_line(f"connecting to {target.host}")
        return True

    def reconnect(self) -> None:
        if self.remote is not None:
            self.connect_remote(self.remote.host, self.remote.xdpscope)

    def connect_local(self) -> None:
        if self.remote is None:
            return
        self._drop_live()
        self.remote, self.agent_commands = None, self.local_commands
        self._show_host()
        self.start_agent()

    def _drop_live(self) -> None:
        """Forget the current session and its source; its agent is asked to stop (or is already gone)."""
        old, self.session = self.session, None
        self.host_info = {}
        if old is None:
            return
        self.record_action.setChecked(False)
        old.blockSignals(True)  # its last words (stopped, died) are not the new source's
        old.source.blockSignals(True)
        old.client.blockSignals(True)
        proc = old.client.proc if old.client.running else None
        old.stop()
        if proc is not None:
            proc.finished.connect(old.deleteLater)
        else:
            old.deleteLater()
        if self.source is old.source:
            self.source = None
        self.live_action.setEnabled(False)

    def _hello(self) -> None:
        def got(ok: bool, info) -> None:
            if ok and isinstance(info, dict):
                self.host_info.update(host=info.get("host", ""), kernel=info.get("kernel", ""))
                self._show_host()
        if self.session is not None:
            self.session.client.request("hello", got)

    def _show_host(self) -> None:
        lost = self.session is not None and self.session.client.lost
        title, status = describe(self.host_info, self.remote.host if self.remote else None, lost)
        self.setWindowTitle(title)
        self.host_label.setText(status)
        self.reconnect_action.setEnabled(lost)
        self.reconnect_button.setVisible(lost)

    def start_agent(self) -> None:
        session = self.ensure_session()
        if not session.client.running:
            session.start()

    def run_default_live(self) -> None:
        """Lab up, redirect attached, inject loop: live plots with no further input."""
        session = self.ensure_session()
        self.set_source(session.source)
        session.run_default()

    def show_live(self) -> None:
        if self.live is not None:
            self.set_source(self.live)

    def _agent_state(self, state: str, message: str) -> None:
        if state in ("dead", "stopped"):
            self._show_host()
        self.sources_panel.set_agent_state(state, message)
        self.log_line(f"agent {state}" + (f": {message}" if message else ""))
        ready = state in ("ready", "unprivileged") and self.session is not None
        self.programs.set_request(self.session.client.request if ready else None)
        if ready:  # the agent machine's CPUs (cpumap targets are CPU ids); an older agent may not say
            self.session.client.request("programs_running", lambda ok, r: ok and isinstance(r, dict)
                                     and self.sources_panel.set_cpus(r.get("cpus")), stats=False)
        if state in ("dead", "stopped"):
            self.sources_panel.set_attached(False)
            self.record_action.setChecked(False)
            if self.source is not None and self.source is self.live:
                self.source_label.setText(f"live: agent {state}" + (f" — {message}" if message else ""))

    def _attach_clicked(self, args: dict) -> None:
        """Attach, or while a program runs switch to the new one in place (the timeline goes on)."""
        if self.session is None:
            return
        if self.session.attached:
            self.log_line(f"switching to {args.get('program', '?')} on {args.get('iface', '?')}")
            self.session.switch(args)
        else:
            self.session.attach(args)

    def _switched(self, meta: dict) -> None:
        if self.recorder.active:  # a trace holds one program: its recording ends here
            self.record_action.setChecked(False)
            self.statusBar().showMessage("recording stopped: the program was switched (a trace holds one "
                                         "program); record again to go on", 10_000)

    def _attached(self, meta: dict) -> None:
        self.host_info.update(driver=meta.get("driver", ""), iface=meta.get("iface", ""),
                              host=meta.get("host") or self.host_info.get("host", ""),
                              kernel=meta.get("kernel") or self.host_info.get("kernel", ""))
        self._show_host()
        self.sources_panel.set_attached(True, meta)
        self.sources_panel.set_cpus(meta.get("cpus") if isinstance(meta.get("cpus"), int) else None)
        self.log_line(f"attached: {meta.get('program', '?')} on {meta.get('iface', '?')}")
        if self.source is None or self.source.caps.attachable:  # showing a live session (not a trace): this one
            self.set_source(self.live)
            self._show_user_maps(meta)

    def _detached(self, reason: str) -> None:
        self.sources_panel.set_attached(False)
        self.record_action.setChecked(False)
        self.log_line(f"detached: {reason}")
        if self.source is not None and self.source is self.live:
            self._show_source()

    def _replay_error(self, message: str) -> None:
        self.last_error = message
        self.log_line(message)
        self.statusBar().showMessage(message, 10_000)

    def _live_error(self, message: str) -> None:
        self.log_line(message)
        self.statusBar().showMessage(message, 10_000)
        self.sources_panel.agent_msg.setText(message)

    # -- recording -------------------------------------------------------------------------
    def set_recording(self, on: bool) -> None:
        if not on:
            self.recorder.stop()
            return
        if self.recorder.active:
            return
        if self.live is None or not self.live.attached:
            self.statusBar().showMessage("recording needs a live session: attach a program first", 8000)
            self.record_action.setChecked(False)
            return
        directory = str(self.settings.value("record_dir", self.last_dir()))
        path = self.choose_record_path(default_name(directory))
        if not path:  # cancelled: nothing is written anywhere
            self.record_action.setChecked(False)
            return
        try:
            self.recorder.start(path, self.session.meta)
        except XdpscopeError as e:
            self.log_line(f"cannot record: {e}")
            self.statusBar().showMessage(f"cannot record: {e}", 10_000)
            self.record_action.setChecked(False)
            return
        self.settings.setValue("record_dir", str(Path(path).resolve().parent))
        self.live.model.add_marker("record", "record start")

    def _ask_record_path(self, default: Path) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self, "Record to", str(default), TRACE_FILTER)
        if path and not Path(path).suffix:
            path += ".xst"
        return path or None

    def _recorded(self, path: str, n: int) -> None:
        size = Path(path).stat().st_size if Path(path).exists() else 0
        text = f"recorded {n:,} samples ({byte_size(size)}) to {path}"
        self.log_line(text)
        self.statusBar().showMessage(text, 30_000)
        self.add_recent(path)
        if self.live is not None and self.live.attached:
            self.live.model.add_marker("record", "record stop")

    def _record_failed(self, message: str) -> None:
        self.record_action.setChecked(False)
        self.log_line(message)
        self.statusBar().showMessage(message, 30_000)
        if self.live is not None:
            self.live.model.add_marker("error", "recording failed")

    def _update_record_label(self) -> None:
        r = self.recorder
        if not r.active:
            self.record_label.setText("")
            return
        secs = int(r.elapsed())
        self.record_label.setText(f"● REC {secs // 60:02d}:{secs % 60:02d}  {byte_size(r.size())}  {r.path}")

    # -- view ------------------------------------------------------------------------------
    def toggle_play(self) -> None:
        if self.seekable():
            self.seekable().toggle()
        elif self.source is not None:
            self.pause_action.toggle()

    def _transport_playing(self, playing: bool) -> None:
        """The Pause button shows the live transport's state (a new session plays again)."""
        if self.source is not None and not self.source.caps.seekable and self.pause_action.isChecked() == playing:
            self.pause_action.blockSignals(True)
            self.pause_action.setChecked(not playing)
            self.pause_action.blockSignals(False)

    def _pause_toggled(self, on: bool) -> None:
        if self.source is not None and not self.source.caps.seekable:
            self.source.model.set_paused(on)

    def _window_changed(self, seconds: int) -> None:
        if self.source is not None:
            self.source.set_window(float(seconds))

    def frame(self, force: bool = False) -> None:
        """One drawing frame: advance a replay, then let visible panels redraw if their view changed."""
        if self.source is None:
            return
        t0 = time.perf_counter()
        self.source.tick()
        # a timer frame may defer some panels' redraws to spread the work (plots.Panel.refresh)
        view = make_view(self.source.model, float(self.window_box.value()), throttle=not force,
                         smooth=self.smoothing(), region=self.region())
        for p in self.panels:
            if force or p.shown():
                p.refresh(view)
        if force or self.driver_panel.isVisible():  # a table: cheap, and only when the window changed
            self.driver_panel.refresh(view, self.source.model.meta)
        self.frame_times.append(time.perf_counter() - t0)

    def log_line(self, text: str) -> None:
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    # -- drag and drop, close --------------------------------------------------------------
    def dragEnterEvent(self, e: QDragEnterEvent) -> None:
        if e.mimeData().hasUrls() and any(u.isLocalFile() for u in e.mimeData().urls()):
            e.acceptProposedAction()

    def dropEvent(self, e: QDropEvent) -> None:
        for u in e.mimeData().urls():
            if u.isLocalFile():
                self.open_trace(u.toLocalFile())
                e.acceptProposedAction()
                return

    def closeEvent(self, e: QCloseEvent) -> None:
        self.input_guard.remove()
        self.save_settings()
        self.recorder.stop()
        if self.session is not None:
            self.session.stop()
        if self.replay is not None:
            self.replay.close()
        super().closeEvent(e)


_frozen = False


def freeze_startup_objects() -> None:
    """Once per process, when the app has built its window (gui/app.py, before the event loop):
    move what startup made (modules, Qt wrappers, the window's items) out of the garbage
    collector's view (gc.freeze). A full collection otherwise walks all of it, a 30-50 ms pause
    that lands in a frame; after the freeze it walks only what was made since. Those objects live
    as long as the app, so nothing that could be freed is kept. Not at a frame: the collection
    before the freeze is itself such a pause (239 ms in a test process full of other tests')."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def home_dir() -> str:
    """Where dialogs start when the user has chosen nothing yet: their documents, never the
    working directory (a git checkout, say)."""
    return QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation) \
        or QStandardPaths.writableLocation(QStandardPaths.StandardLocation.HomeLocation) or os.path.expanduser("~")
