"""--metrics: the exporter's counters equal `summary` of the same samples; a real Prometheus
(Debian's /usr/bin/prometheus, own config and storage, scraping every second) scraping
`record --metrics` on the lab answers the bundled Grafana dashboard's queries with the session's
numbers."""
from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend.agent import metrics
from backend.errors import XdpscopeError
from backend.data.sample import FLUSH_BINS, VERDICTS
from backend.data.summary import summarize
from gui.testing import synthetic, write_trace
from tests.conftest import ROOT, XDPSCOPE, Recorder, run_cli
from tests.sshd import free_port

DASHBOARD = ROOT / "resources" / "grafana-dashboard.json"
PROMETHEUS = "/usr/bin/prometheus"


# -- what a summary says the metrics must be -----------------------------------------------
def expected_series(s: dict) -> list[tuple[str, dict, float]]:
    """Every series the exporter must serve for a session whose trace summarizes to s."""
    m = s["meta"]
    base = {k: str(m.get(k) or "") for k in metrics.SESSION_LABELS}
    out = [("xdpscope_verdicts_total", {**base, "verdict": a}, n) for a, n in s["actions"].items()]
    out += [("xdpscope_redirect_frames_total", {**base, "target": t}, n) for t, n in s["redirect_targets"].items()]
    for t, bins in s["flush_batches_by_target"].items():
        hist = [bins.get(str(i), 0) for i in range(FLUSH_BINS)]
        for le in range(1, FLUSH_BINS):
            out.append(("xdpscope_devmap_flush_size_bucket", {**base, "target": t, "le": str(le)}, sum(hist[:le + 1])))
        out.append(("xdpscope_devmap_flush_size_bucket", {**base, "target": t, "le": "+Inf"}, sum(hist)))
        out.append(("xdpscope_devmap_flush_size_count", {**base, "target": t}, sum(hist)))
        out.append(("xdpscope_devmap_flush_size_sum", {**base, "target": t}, sum(i * n for i, n in enumerate(hist))))
    for t, d in s["devmap"].items():
        out.append(("xdpscope_devmap_sent_total", {**base, "target": t}, d.get("sent", 0)))
        out.append(("xdpscope_devmap_dropped_total", {**base, "target": t}, d.get("drops", 0)))
    for t, errs in s["redirect_errors"].items():
        out += [("xdpscope_redirect_errors_total", {**base, "target": t, "errno": e}, n) for e, n in errs.items()]
    out += [("xdpscope_exceptions_total", {**base, "verdict": v}, n) for v, n in s["exceptions"].items()]
    for dev, d in s["napi"].items():
        out += [(f"xdpscope_napi_{k}_total", {**base, "device": dev}, d.get(k, 0)) for k in ("polls", "work", "full")]
    out += [("xdpscope_driver_counter_total", {**base, "counter": c}, n) for c, n in s["driver_counters"].items()]
    return out


def nonzero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


def scraped(text: str) -> dict[tuple, float]:
    """/metrics text -> {(sample name, sorted labels): value} (the library's own parser)."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name.endswith("_created"):
                continue
            out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return out


def as_keys(series: list[tuple[str, dict, float]]) -> dict[tuple, float]:
    return {(n, tuple(sorted(lab.items()))): float(v) for n, lab, v in series}


# -- the exporter alone (no root) ----------------------------------------------------------
def test_exporter_equals_summary_of_the_same_samples(tmp_path):
    meta = {"program": "redirect", "iface": "xs-in", "targets": ["xs-t0", "xs-t1"], "hz": 10, "host": "h1",
            "driver": "veth", "mode": "native"}
    samples = write_trace(tmp_path / "t.xst", 300, meta=meta)
    exp = metrics.Exporter(metrics.parse_address("127.0.0.1:0"))
    try:
        exp.attached(meta)
        before = scraped(get(exp))
        assert before[("xdpscope_verdicts_total", tuple(sorted({**meta_labels(meta), "verdict": "REDIRECT"}.items())))] == 0
        for s in samples[:150]:
            exp.sample(s)
        middle = scraped(get(exp))
        for s in samples[150:]:
            exp.sample(s)
        after = scraped(get(exp))
    finally:
        exp.close()
    want = as_keys(expected_series(summarize(tmp_path / "t.xst")))
    assert nonzero(after) == nonzero(want)
    assert all(after[k] >= v for k, v in middle.items())  # counters: never down
    assert all(after.get(k, 0) >= v for k, v in before.items())


def meta_labels(meta: dict) -> dict:
    return {k: str(meta.get(k) or "") for k in metrics.SESSION_LABELS}


def test_flush_histogram_is_exact_from_the_bins():
    hist = [0] * FLUSH_BINS
    hist[0], hist[3], hist[16] = 2, 5, 7
    buckets, count, total = metrics.buckets(hist)
    assert [le for le, _ in buckets] == [*map(str, range(1, 17)), "+Inf"]
    assert dict(buckets)["1"] == 2 and dict(buckets)["2"] == 2 and dict(buckets)["3"] == 7
    assert dict(buckets)["15"] == 7 and dict(buckets)["16"] == 14 == dict(buckets)["+Inf"] == count
    assert total == 3 * 5 + 16 * 7


def test_address_parsing_and_local_default():
    assert metrics.parse_address("9435") == metrics.Address("127.0.0.1", 9435)
    assert metrics.parse_address(":9435") == metrics.Address("127.0.0.1", 9435)
    assert metrics.parse_address("0.0.0.0:1") == metrics.Address("0.0.0.0", 1)
    assert metrics.parse_address("[::1]:9435") == metrics.Address("::1", 9435)
    for bad in ("host:port", "1.2.3.4:70000", "", "x:"):
        with pytest.raises(XdpscopeError, match="expected HOST:PORT"):
            metrics.parse_address(bad)
    assert metrics.is_local("127.0.0.1") and metrics.is_local("localhost")
    assert not metrics.is_local("0.0.0.0")
    exp = metrics.serve(f"{free_port()}")  # no host given: loopback only
    try:
        assert exp._server.socket.getsockname()[0] == "127.0.0.1"
    finally:
        exp.close()


def test_busy_port_is_one_line(tmp_path):
    exp = metrics.Exporter(metrics.parse_address("127.0.0.1:0"))
    try:
        with pytest.raises(XdpscopeError, match=r"cannot listen: Address already in use"):
            metrics.Exporter(metrics.parse_address(f"127.0.0.1:{exp.address.port}"))
    finally:
        exp.close()


def test_dashboard_uses_only_exported_metrics():
    names = set()
    for q in dashboard_queries():
        names |= set(re.findall(r"\b(xdpscope_\w+)\{", q))
    exported = {"xdpscope_verdicts_total", "xdpscope_redirect_frames_total", "xdpscope_devmap_flush_size_bucket",
                "xdpscope_devmap_flush_size_sum", "xdpscope_devmap_flush_size_count", "xdpscope_devmap_sent_total",
                "xdpscope_devmap_dropped_total", "xdpscope_redirect_errors_total", "xdpscope_exceptions_total",
                "xdpscope_napi_polls_total", "xdpscope_napi_work_total", "xdpscope_driver_counter_total"}
    assert names <= exported
    assert {"xdpscope_verdicts_total", "xdpscope_redirect_frames_total", "xdpscope_devmap_flush_size_bucket",
            "xdpscope_redirect_errors_total"} <= names  # verdicts, fan-out, flush heatmap, errors
    heatmaps = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] == "heatmap"]
    assert heatmaps and "xdpscope_devmap_flush_size_bucket" in heatmaps[0]["targets"][0]["expr"]
    doc = (ROOT / "docs" / "metrics.md").read_text()
    for name in exported:  # docs/metrics.md lists every metric
        assert re.sub(r"_(bucket|sum|count)$", "", name) in doc, name


def get(exp: metrics.Exporter) -> str:
    with urllib.request.urlopen(f"http://{exp.address}/metrics", timeout=10) as r:
        return r.read().decode()


# -- the dashboard's queries, evaluated on totals ------------------------------------------
def dashboard_queries() -> list[str]:
    d = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in d["panels"] for t in p.get("targets", [])]


AGG = re.compile(r"sum(?: by \((?P<by>[\w, ]+)\))? ?\((?P<name>\w+)\{(?P<sel>[^}]*)\}\)")
MATCHER = re.compile(r'(\w+)(=~|=)"([^"]*)"')


def totals_query(expr: str) -> str:
    """The dashboard's expression over the whole session: rate(X[$__rate_interval]) -> X (the
    counter itself), every host and interface."""
    expr = re.sub(r"rate\((\w+\{[^}]*\})\[\$__rate_interval\]\)", r"\1", expr)
    return expr.replace("$host", ".*").replace("$iface", ".*")


def evaluate(expr: str, series: list[tuple[str, dict, float]]) -> tuple[list[str], dict[tuple, float]]:
    """The little PromQL the dashboard uses (sum [by (...)] of a selector, optionally one divided
    by another) over known series: the expected answer."""
    parts = expr.split(" / ")
    assert 1 <= len(parts) <= 2, expr
    results = []
    for part in parts:
        m = AGG.fullmatch(part.strip())
        assert m, f"dashboard query outside the checked shape: {part!r}"
        by = [b.strip() for b in (m["by"] or "").split(",") if b.strip()]
        matchers = MATCHER.findall(m["sel"])
        out: dict[tuple, float] = {}
        for name, labels, value in series:
            if name != m["name"]:
                continue
            if all(re.fullmatch(v, labels.get(k, "")) if op == "=~" else labels.get(k, "") == v
                   for k, op, v in matchers):
                key = tuple(labels.get(b, "") for b in by)
                out[key] = out.get(key, 0.0) + value
        results.append((by, out))
    if len(results) == 1:
        return results[0]
    (by, a), (_, b) = results
    return by, {k: a[k] / b[k] for k in a if b.get(k)}


def prom_query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_evaluator_on_known_series():
    series = [("m_total", {"a": "x", "b": "1"}, 2.0), ("m_total", {"a": "x", "b": "2"}, 3.0),
              ("m_total", {"a": "y", "b": "1"}, 5.0), ("n_total", {"a": "x"}, 10.0)]
    assert evaluate('sum by (a) (m_total{b=~".*"})', series) == (["a"], {("x",): 5.0, ("y",): 5.0})
    assert evaluate('sum(m_total{b="1"})', series) == ([], {(): 7.0})
    assert evaluate('sum by (a) (n_total{}) / sum by (a) (m_total{})', series) == (["a"], {("x",): 2.0})
    assert totals_query('sum(rate(m_total{host=~"$host"}[$__rate_interval]))') == 'sum(m_total{host=~".*"})'


# -- a real Prometheus scraping record --metrics on the lab --------------------------------
class Prometheus:
    def __init__(self, tmp: Path, target: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cfg = tmp / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                       "scrape_configs:\n  - job_name: xdpscope\n    static_configs:\n"
                       f"      - targets: ['{target}']\n")
        self.log = open(tmp / "prometheus.log", "w")
        self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.ready, 60, "prometheus did not become ready")

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"prometheus exited: {self.logs()}"
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def logs(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-2000:]

    def last_scrape(self) -> float:
        """Time of the last successful scrape of our target (0 if none)."""
        up = prom_query(self.base, 'up{job="xdpscope"}')
        if not up or up[0]["value"][1] != "1":
            return 0.0
        return float(prom_query(self.base, 'timestamp(up{job="xdpscope"})')[0]["value"][1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_for(cond, timeout: float = 30, what: str = "condition not reached") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def trace_rows(path: Path) -> int:
    """Samples committed to a trace being written (its WAL read, never written)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:  # closed at once: an open reader would keep the writer from folding its WAL at the end
        return db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    finally:
        db.close()


@pytest.mark.kernel
def test_prometheus_answers_the_dashboard_with_the_summary(lab, tmp_path):
    mport = free_port()
    count = 64 * 100
    targets = [*lab.targets, lab.nxtarget]  # the last one fails at flush: errors and devmap drops
    rec = Recorder(tmp_path / "m.xst", "--iface", lab.ingress, "--program", "redirect", "--targets", ",".join(targets),
                   "--hz", "10", "--metrics", f"127.0.0.1:{mport}")
    prom = None
    try:
        prom = Prometheus(tmp_path, f"127.0.0.1:{mport}")
        wait_for(lambda: prom.last_scrape() > 0, 60, f"no scrape: {prom.logs()}")  # the seeded zeros first
        inj = json.loads(run_cli("inject", "--iface", lab.ingress, "--count", str(count), "--batch", "64").stdout)
        assert inj["frames"] == count
        # caught up: two samples read after the injection are in the trace (metrics see each sample
        # before the trace does), then a scrape that started later
        rows = trace_rows(rec.out)
        wait_for(lambda: trace_rows(rec.out) >= rows + 2)
        seen = time.time()
        wait_for(lambda: prom.last_scrape() > seen, 60, "no scrape after the injection")
        first = prom.last_scrape()  # and one more: a series born with the injection (an errno) then has two points
        wait_for(lambda: prom.last_scrape() > first, 60, "no second scrape after the injection")
        answers = {q: prom_query(prom.base, totals_query(q)) for q in dashboard_queries()}
        rate_answers = {q: prom_query(prom.base, q.replace("$host", ".*").replace("$iface", ".*")
                                      .replace("$__rate_interval", "1m")) for q in dashboard_queries()}
        rec.proc.send_signal(signal.SIGINT)
        assert rec.proc.wait(timeout=30) == 0, rec.proc.stderr.read()
    finally:
        if prom is not None:
            prom.stop()
        if rec.proc.poll() is None:
            rec.proc.kill()
            rec.proc.wait()
    s = rec.summary()
    assert s["actions"]["REDIRECT"] == count == sum(s["redirect_targets"].values())
    assert s["redirect_targets"] == {t: count // len(targets) for t in targets}
    assert s["redirect_errors_by_errno"].get("ENXIO", 0) > 0 and s["flush_batches"]
    series = expected_series(s)
    lab_dev = lambda key, by: "device" not in by or key[by.index("device")].startswith(lab.prefix)  # noqa: E731
    for q, result in answers.items():
        by, want = evaluate(totals_query(q), series)
        got = {tuple(r["metric"].get(b, "") for b in by): float(r["value"][1]) for r in result}
        # NAPI counts every device's polls: only the lab's are quiet between the scrape and the trace's end
        want = {k: v for k, v in want.items() if v and lab_dev(k, by)}
        got = {k: v for k, v in got.items() if v and lab_dev(k, by)}
        assert got == pytest.approx(want), q
        # the time-series form (rate over 1m) is valid PromQL and has every series the totals have
        assert {tuple(r["metric"].get(b, "") for b in by) for r in rate_answers[q]} >= set(want), q
    total_redirect = evaluate('sum(xdpscope_verdicts_total{verdict="REDIRECT"})', series)[1][()]
    assert total_redirect == count


@pytest.mark.kernel
def test_agent_metrics_equal_its_sample_events(lab):
    mport = free_port()
    p = subprocess.Popen([*XDPSCOPE, "agent", "--stdio", "--metrics", f"127.0.0.1:{mport}"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []

    def call(rid: int, cmd: str, **args) -> dict:
        p.stdin.write(json.dumps({"id": rid, "cmd": cmd, **args}) + "\n")
        p.stdin.flush()
        while True:
            msg = json.loads(p.stdout.readline())
            if msg.get("event") == "sample":
                samples.append(msg["sample"])
            elif msg.get("id") == rid:
                return msg
    try:
        assert json.loads(p.stdout.readline())["event"] == "ready"
        meta = call(1, "attach", iface=lab.ingress, program="redirect", targets=lab.targets[:2], hz=20)["result"]
        assert call(2, "inject", iface=lab.ingress, count=3200, batch=64)["result"]["frames"] == 3200
        assert call(3, "detach")["ok"]  # answered after the last sample event
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
            got = scraped(r.read().decode())
        assert call(4, "stop")["ok"]
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    base = tuple(sorted(meta_labels(meta).items()))
    verdict = lambda v: got[("xdpscope_verdicts_total", tuple(sorted((*base, ("verdict", v)))))]  # noqa: E731
    for i, a in enumerate(VERDICTS):
        assert verdict(a) == sum(cpu[i] for s in samples for cpu in s["actions"])
    assert verdict("REDIRECT") == 3200
    for t in lab.targets[:2]:
        key = ("xdpscope_redirect_frames_total", tuple(sorted((*base, ("target", t)))))
        assert got[key] == sum(sum(s.get("targets", {}).get(t, [0])) for s in samples) == 1600
        flushes = ("xdpscope_devmap_flush_size_count", tuple(sorted((*base, ("target", t)))))
        assert got[flushes] == sum(sum(s.get("flush", {}).get(t, [0])) for s in samples) == 100
