"""NAPI and run time: packets per NAPI poll (and the budget) of the session's devices, of all, or
of one device; the program's run time per packet (kernel BPF stats)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtWidgets import QWidget

from backend.data.series import napi_counts, napi_device_counts, ratio, session_devices

from ..palette import DARK, Theme
from .base import Panel, SeriesPlot, Summary, set_choices
from .view import View

SESSION_DEVICES = "session devices"
ALL_DEVICES = "all devices"


@dataclass(frozen=True)
class NapiState:
    device: str = SESSION_DEVICES  # the session's devices, all devices, or one device's name


def session_device_names(meta: dict, names: list[str]) -> list[str]:
    """The session's devices among NAPI device names: as the probes listed them in the session's
    metadata (probe_devices: its devices, or with all devices counted, "session"), each named in its
    own namespace (name@netns); for older traces, by the session's interface, targets and peers."""
    probe = meta.get("probe_devices") if isinstance(meta.get("probe_devices"), dict) else {}
    listed = probe.get("session") if probe.get("devices") == "all" else probe.get("devices")
    if isinstance(listed, list):
        mine = {str(d) for d in listed}
        return [n for n in names if n in mine]
    return session_devices(meta, names)


def all_devices(meta: dict) -> bool:
    """The session counted every device of every namespace (session option all_devices)."""
    probe = meta.get("probe_devices") if isinstance(meta.get("probe_devices"), dict) else {}
    return probe.get("devices") == "all"


class NapiPanel(Panel):
    title = "NAPI and run time"
    State = NapiState

    def __init__(self, parent: QWidget | None = None, theme: Theme = DARK) -> None:
        super().__init__(parent, theme)
        self.work = SeriesPlot(self.add_plot(0, 0), "NAPI work per poll (packets)", " packets", theme)
        # side by side: the panel is usually a short strip at the bottom of the window
        self.runtime = SeriesPlot(self.add_plot(0, 1), "Program run time per packet (ns)", " ns", theme)
        self.runtime.plot.setXLink(self.work.plot)
        # napi_poll fires for every device's NAPI: in a lab the target peers poll too, in a VM eth0
        self.device = self.choice_box(SESSION_DEVICES, "NAPI instances of the session's devices (default), of all "
                                      "devices of the machine, or of one (napi:napi_poll traces every device)", "device")
        self.summary = Summary()
        self.controls.addWidget(self.summary, 1)

    def selection(self, h: Any, meta: dict) -> tuple[list[str] | str | None, list[str]]:
        """(devices to sum: a list, one name, or None for all; the session's devices); the box
        offers what the history holds now."""
        names = h.napi_dev["polls"].names
        mine = session_device_names(meta, names)
        i = set_choices(self.device, [SESSION_DEVICES, ALL_DEVICES], names, self.st.device)
        if i <= 0:
            return mine, mine
        if i == 1:
            return None, mine
        return names[i - 2], mine

    def draw(self, v: View) -> None:
        h = v.h
        names = h.napi_dev["polls"].names
        dev, mine = self.selection(h, v.meta)
        key = dev if not isinstance(dev, list) else tuple(dev)
        n = v.smooth
        pair = lambda h, sl: napi_counts(h, sl, dev)  # noqa: E731
        t, y = v.series(("napi", key, n), ratio(lambda h, sl: pair(h, sl)[:, 1:3], lambda h, sl: pair(h, sl)[:, 0], n))
        self.work.set("work/poll", t, y[:, 0], self.theme.verdicts["PASS"])
        self.work.set("budget", t, y[:, 1], self.theme.verdicts["DROP"])
        self.runtime.set("ns/packet", *v.series(("run", n), ratio(lambda h, sl: h.run[sl][:, 1],
                                                                  lambda h, sl: h.run[sl][:, 0], n)),
                         self.theme.color(0))
        self.work.finish(v)
        self.runtime.finish(v)
        notes = []
        shown = names if dev is None else ([dev] if isinstance(dev, str) else dev)
        if shown:
            polls, work = v.total(("napi_totals", tuple(shown)), lambda h, sl: napi_device_counts(h, sl, shown))
            notes.append("in window: " + ", ".join(f"{n} {int(p):,} polls {int(w):,} packets"
                                                   for n, p, w in zip(shown, polls, work)))
        others = len(names) - len(mine)
        if isinstance(dev, list) and others:
            notes.append(f"{others} other device{'s' * (others > 1)} not shown (choose '{ALL_DEVICES}')")
        if h.has_napi and not all_devices(v.meta):
            notes.append("only the session's devices are counted (attach with 'all devices' for every namespace's)")
        if not h.has_napi:
            notes.append("no NAPI data in this session (napi:napi_poll not traced)")
        elif isinstance(dev, list) and not mine:
            notes.append("no NAPI polls of the session's devices")
        if not h.has_run:
            notes.append("no run-time data (attach with run_time on)")
        self.summary.setText("; ".join(notes))
