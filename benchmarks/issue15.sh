#!/bin/sh
# Issue 15's figures in one go (as root, from the repository): each benchmark compares this tree
# with the baseline commit (or the peer method) in one run; JSON results land in $OUT.
set -e
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/xdpscope-issue15}
mkdir -p "$OUT"
# niceness -10 for both trees alike: other work on the machine disturbs the figures less
PY="nice -n -10 .venv/bin/python"
$PY benchmarks/startup.py --rounds 5 --json "$OUT/startup.json"
$PY benchmarks/collector_cost.py --rounds 2 --seconds 15 --json "$OUT/collector_cost.json"
$PY benchmarks/collector_profile.py --samples 300 > "$OUT/collector_profile.json"
$PY benchmarks/trace_size.py --seconds 40 --json "$OUT/trace_size.json"
$PY benchmarks/overhead.py --rounds 21 --per-probe > "$OUT/overhead.json"
$PY benchmarks/gui_ab.py --live-seconds 15 --json "$OUT/gui_ab.json"
