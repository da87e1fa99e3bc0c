"""backend/data/findings.py: what a window's numbers say in words, from summarize_blocks() of
samples with counts chosen here (no Qt, no root)."""
from __future__ import annotations

import pytest

from backend.data.block import Block
from backend.data.findings import findings, inject_batches, rate_text, small_flushes
from backend.data.sample import FLUSH_BINS, Sample
from backend.data.summary import summarize_blocks

pytestmark = pytest.mark.unit


def summary(n: int = 100, errors: int = 0, aborted: int = 0, flush_size: int = 4, meta: dict | None = None) -> dict:
    """n samples of 0.01 s: 1000 REDIRECT frames each over two targets, flushes of flush_size."""
    samples = []
    for i in range(1, n + 1):
        flushes = 1000 // flush_size
        samples.append(Sample(
            t=i * 0.01, dt=0.01, verdicts=[[aborted, 0, 0, 0, 1000]],
            targets={"t0": [500], "t1": [500]},
            flush={"t0": [flushes // 2 if b == flush_size else 0 for b in range(FLUSH_BINS)],
                   "t1": [flushes - flushes // 2 if b == flush_size else 0 for b in range(FLUSH_BINS)]},
            redirect_errors={"nx": {"ENXIO": errors}} if errors else {},
            exceptions={"ABORTED": aborted} if aborted else {},
            napi={"in": {"polls": 1, "work": 2, "budget": 64, "full": 0}},
        ))
    meta = {"program": "redirect", "iface": "in", "targets": ["t0", "t1"], **(meta or {})}
    return summarize_blocks([Block.from_samples(samples)], meta)


def test_clean_window():
    s = summary(flush_size=16)
    assert findings(s) == ["No redirect errors, target drops, exceptions or ABORTED verdicts in this window."]


def test_redirect_errors_and_aborted_quote_the_counts():
    s = summary(errors=3, aborted=2)
    text = findings(s)
    assert any(f.startswith("Redirect errors: 300 frames redirected to nx failed with ENXIO — the target cannot")
               for f in text)
    assert any("XDP_ABORTED for 200 of 100,200 frames" in f and "(200 xdp_exception events recorded)" in f
               for f in text)


def test_small_flushes_blame_the_batch_when_injected():
    """100,000 pps of redirects flushed 4 at a time: with the GUI's inject markers the finding
    names the injector's batch; without them and with few NAPI-polled frames, injection too."""
    marker = {"t": 0.0, "kind": "inject", "label": "inject", "data": {"count": 1000, "batch": 8}}
    s = summary(meta={"markers": [marker]})
    assert inject_batches(s["meta"]) == [8]
    text = small_flushes(s)
    assert "mean devmap flush sent 4.00 frames" in text and "averaged 100,000 and 0.0 pps" in text
    assert "batch of 8 frames; 100% of the frames were redirected, over 2 targets: about 4.0 frames" in text
    assert small_flushes(s) in findings(s)
    plain = small_flushes(summary())
    assert "did not come through NAPI polls of in (200 of 100,000 frames were polled)" in plain


def test_inject_batches_ignore_malformed_markers():
    meta = {"markers": [{"kind": "inject", "data": {"batch": True}}, {"kind": "inject", "data": {"batch": 0}},
                        {"kind": "note", "data": {"batch": 32}}, "junk", {"kind": "inject", "data": {"batch": 64}}]}
    assert inject_batches(meta) == [64]


def test_rate_text():
    assert rate_text(71923.3) == "71,923" and rate_text(12.54) == "12.5" and rate_text(float("nan")) == "–"


def test_tx_failures_quote_the_drivers_counters():
    s = summary()
    s["driver"], s["driver_counters"] = "veth", {"rx_queue_0_xdp_tx": 256, "rx_queue_0_xdp_tx_errors": 144}
    text = [f for f in findings(s) if f.startswith("TX failures")]
    assert len(text) == 1 and text[0].startswith("TX failures: veth could not send 144 of the 400 XDP_TX frames of in")
    s["driver"] = "virtio_net"                          # no tx_errors role: nothing to say
    assert not [f for f in findings(s) if f.startswith("TX failures")]
