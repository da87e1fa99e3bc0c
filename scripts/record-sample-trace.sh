#!/usr/bin/env bash
# Record the bundled trace resources/sample.xst from a real lab session (root): the mix program
# over three good targets and one that cannot receive (ENXIO at flush), fed with live frames in
# changing batch sizes and flow counts so every view has something to show.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-resources/sample.xst}
./xdpscope lab up --prefix xs >/dev/null
./xdpscope record --iface xs-in --program mix --mix PASS=20,DROP=20,TX=10,REDIRECT=45,ABORTED=5 \
  --targets xs-t0,xs-t1,xs-t2,xs-nx --hz 20 --run-time --duration 40 --overwrite -o "$out" > /tmp/xs-rec.out &
rec=$!
until grep -q ready /tmp/xs-rec.out 2>/dev/null; do sleep 0.2; done
for round in 1 2; do
  for batch in 64 16 256 4; do
    for _ in $(seq 8); do
      ./xdpscope inject --iface xs-in --count 200000 --batch "$batch" --flows 4 >/dev/null
      sleep 0.25
    done
  done
done
wait "$rec"
./xdpscope summary "$out"
