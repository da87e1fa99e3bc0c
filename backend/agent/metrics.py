"""Prometheus metrics (docs/metrics.md): the session's counters as monotonic Prometheus counters,
served with prometheus_client at /metrics (`record --metrics HOST:PORT`, `agent --stdio --metrics`).

Samples carry deltas; the exporter keeps their running sums per session (labels host, iface,
driver, program, mode), so every value equals what `summary` totals from the trace of the same
samples. A custom Collector builds the families at scrape time from those sums: the devmap flush
histogram comes straight from the exact per-size bins (one add per bin and sample, not one
observe() per flush, which at 125k flushes/s would cost more than the sampling itself).
"""
from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import Iterable

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from backend.errors import XdpscopeError
from backend.data.sample import FLUSH_BINS, VERDICTS, Sample

SESSION_LABELS = ("host", "iface", "driver", "program", "mode")
FLUSH_BUCKETS = tuple(range(1, FLUSH_BINS))  # le=1..16; a flush of 0 frames falls in le="1"
DEFAULT_HOST = "127.0.0.1"
NAPI_FIELDS = {"polls": "NAPI polls", "work": "frames processed by NAPI polls (the poll's work)",
               "full": "NAPI polls that used their whole budget"}


@dataclass
class Totals:
    """Running sums of one session's sample deltas (the fields of Sample, summed)."""
    verdicts: list[int] = field(default_factory=lambda: [0] * len(VERDICTS))
    targets: dict[str, int] = field(default_factory=dict)
    flush: dict[str, list[int]] = field(default_factory=dict)
    devmap: dict[str, dict[str, int]] = field(default_factory=dict)
    redirect_errors: dict[tuple[str, str], int] = field(default_factory=dict)
    exceptions: dict[str, int] = field(default_factory=dict)
    napi: dict[str, dict[str, int]] = field(default_factory=dict)
    driver: dict[str, int] = field(default_factory=dict)

    def seed(self, meta: dict) -> None:
        """Series that exist from the attach on, at 0: rate() and increase() then count the
        first frames too (a series that appears already at N loses those N in PromQL)."""
        if meta.get("program") == "cpumap":
            names: list[str] = []  # its targets are CPUs: no devmap, no flushes
        else:
            names = [t for t in meta.get("targets") or [] if isinstance(t, str)]
        for t in meta.get("targets") or []:
            self.targets.setdefault(str(t), 0)
        for t in names:
            self.flush.setdefault(t, [0] * FLUSH_BINS)
            self.devmap.setdefault(t, {"sent": 0, "drops": 0})

    def add(self, s: Sample) -> None:
        for a, n in enumerate(s.verdict_totals()):
            self.verdicts[a] += n
        for t, n in s.target_totals().items():
            self.targets[t] = self.targets.get(t, 0) + n
        for t, hist in s.flush.items():
            acc = self.flush.setdefault(t, [0] * FLUSH_BINS)
            for i, n in enumerate(hist[:FLUSH_BINS]):
                acc[i] += n
        for t, d in s.devmap.items():
            acc = self.devmap.setdefault(t, {"sent": 0, "drops": 0})
            for k, n in d.items():
                acc[k] = acc.get(k, 0) + n
        for t, n in s.oversize_flushes.items():   # its own schema family since the schema redesign
            acc = self.devmap.setdefault(t, {"sent": 0, "drops": 0})
            acc["oversize_flushes"] = acc.get("oversize_flushes", 0) + n
        for t, errs in s.redirect_errors.items():
            for err, n in errs.items():
                self.redirect_errors[(t, err)] = self.redirect_errors.get((t, err), 0) + n
        for v, n in s.exceptions.items():
            self.exceptions[v] = self.exceptions.get(v, 0) + n
        for dev, d in s.napi.items():
            acc = self.napi.setdefault(dev, {})
            for k in NAPI_FIELDS:
                acc[k] = acc.get(k, 0) + int(d.get(k, 0))
        for name, n in s.driver.items():
            self.driver[name] = self.driver.get(name, 0) + n


def session_labels(meta: dict) -> tuple[str, ...]:
    return tuple(str(meta.get(k) or "") for k in SESSION_LABELS)


def buckets(hist: list[int]) -> tuple[list[tuple[str, float]], int, int]:
    """Cumulative Prometheus buckets (le=1..16, +Inf), count and sum of an exact 0..16 histogram."""
    out, running = [], 0
    for i, n in enumerate(hist):
        running += n
        if i >= 1:
            out.append((str(i), running))
    count = sum(hist)
    if not out:
        out = [(str(le), 0) for le in FLUSH_BUCKETS]
    out.append(("+Inf", count))
    return out, count, sum(i * n for i, n in enumerate(hist))


class XdpCollector(Collector):
    """The prometheus_client collector: sessions' Totals, read under a lock at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, ...], Totals] = {}
        self._current: Totals | None = None

    # the agent's observer interface (backend.agent): attached(meta), then sample(s) per sample
    def attached(self, meta: dict) -> None:
        with self._lock:
            totals = self._sessions.setdefault(session_labels(meta), Totals())
            totals.seed(meta)
            self._current = totals

    def sample(self, s: Sample) -> None:
        with self._lock:
            if self._current is not None:
                self._current.add(s)

    def collect(self) -> Iterable[Metric]:
        with self._lock:  # built whole under the lock: a scrape sees whole samples only
            return list(self._families())

    def _families(self) -> Iterable[Metric]:
        L = list(SESSION_LABELS)

        def counter(name: str, doc: str, extra: list[str]) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=L + extra)

        verdicts = counter("xdpscope_verdicts", "XDP verdicts returned by the program", ["verdict"])
        targets = counter("xdpscope_redirect_frames", "frames the program redirected, per target", ["target"])
        sent = counter("xdpscope_devmap_sent", "frames a devmap flush transmitted, per target", ["target"])
        dropped = counter("xdpscope_devmap_dropped", "frames a devmap flush dropped, per target", ["target"])
        oversize = counter("xdpscope_devmap_oversize_flushes",
                           "flushes of more than 16 frames (impossible today; never folded into le=16)", ["target"])
        flush = HistogramMetricFamily("xdpscope_devmap_flush_size",
                                      "devmap bulk-queue flushes by size (sent + dropped frames)", labels=L + ["target"])
        errors = counter("xdpscope_redirect_errors", "redirects that failed, per target and errno",
                         ["target", "errno"])
        exceptions = counter("xdpscope_exceptions", "xdp:xdp_exception events, per verdict", ["verdict"])
        napi = {k: counter(f"xdpscope_napi_{k}", doc, ["device"]) for k, doc in NAPI_FIELDS.items()}
        drv = counter("xdpscope_driver_counter", "the driver's own XDP counters (ethtool -S), summed deltas",
                      ["counter"])
        for labels, t in self._sessions.items():
            lv = list(labels)
            for a, n in zip(VERDICTS, t.verdicts):
                verdicts.add_metric(lv + [a], n)
            for name, n in t.targets.items():
                targets.add_metric(lv + [name], n)
            for name, d in t.devmap.items():
                sent.add_metric(lv + [name], d.get("sent", 0))
                dropped.add_metric(lv + [name], d.get("drops", 0))
                if d.get("oversize_flushes"):
                    oversize.add_metric(lv + [name], d["oversize_flushes"])
            for name, hist in t.flush.items():
                b, _, total = buckets(hist)
                flush.add_metric(lv + [name], b, total)
            for (name, err), n in t.redirect_errors.items():
                errors.add_metric(lv + [name, err], n)
            for v, n in t.exceptions.items():
                exceptions.add_metric(lv + [v], n)
            for dev, d in t.napi.items():
                for k, fam in napi.items():
                    fam.add_metric(lv + [dev], d.get(k, 0))
            for name, n in t.driver.items():
                drv.add_metric(lv + [name], n)
        yield from (verdicts, targets, flush, sent, dropped, oversize, errors, exceptions, *napi.values(), drv)


@dataclass
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """HOST:PORT, [V6]:PORT, or PORT / :PORT for localhost (the default: binding anywhere else
    exposes the counters to the network, so only a host the user names does)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise XdpscopeError(f"--metrics {text!r}: expected HOST:PORT (e.g. 127.0.0.1:9435)")
    return Address(host, int(port))


def is_local(host: str) -> bool:
    """True when every address the name resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


class Exporter:
    """The collector and its HTTP server; close() stops serving."""

    def __init__(self, address: Address) -> None:
        from prometheus_client import start_http_server
        self.collector = XdpCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        try:
            self._server, self._thread = start_http_server(address.port, address.host, self.registry)
        except OSError as e:
            raise XdpscopeError(f"--metrics {address}: cannot listen: {e.strerror or e}") from None
        self.address = Address(address.host, self._server.server_address[1])

    def attached(self, meta: dict) -> None:
        self.collector.attached(meta)

    def sample(self, s: Sample) -> None:
        self.collector.sample(s)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve(text: str) -> Exporter:
    """Start serving /metrics at the --metrics address; says where on stderr (and warns when
    the address is reachable from other machines, which the user asked for by naming it)."""
    address = parse_address(text)
    exporter = Exporter(address)
    where = f"http://{exporter.address}/metrics"
    if is_local(address.host):
        print(f"xdpscope: metrics at {where}", file=sys.stderr)
    else:
        print(f"xdpscope: metrics at {where} (reachable from other machines)", file=sys.stderr)
    return exporter
