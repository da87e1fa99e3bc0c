#!/usr/bin/env bash
# Record the bundled trace resources/virtio-sample.xst from a real virtio_net session (root):
# the QEMU lab (xdpscope vlab) boots, `xdpscope record` runs inside the guest on vnic1 (native
# XDP, the mix program, redirects round-robin to vnic2/vnic3 prepared with `pass`), while the host
# writes frames into vlabtap1 in changing patterns: paced, bursts, faster paced. The trace is
# written in the guest and read here, on the host, from the lab's shared directory.
# Takes 2-5 minutes (TCG guest; bcc compiles inside it).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-resources/virtio-sample.xst}
./xdpscope vlab status >/dev/null 2>&1 && { echo "a vlab is already up: ./xdpscope vlab down first" >&2; exit 1; }
trap './xdpscope vlab down >/dev/null 2>&1 || true' EXIT
./xdpscope vlab up
.venv/bin/python - "$out" <<'EOF'
import shutil, sys, time
from backend.labs import vlab

out = vlab.STATE_DIR / "virtio-sample.xst"
duration = 32
rec = vlab.record(["--iface", "vnic1", "--mode", "native", "--program", "mix",
                   "--mix", "PASS=20,DROP=30,TX=15,REDIRECT=30,ABORTED=5", "--targets", "vnic2,vnic3",
                   "--prepare-targets", "--hz", "10", "--run-time", "--duration", str(duration)], out)
print(f"recording in the guest (ready after {rec.ready_s:.0f} s)", file=sys.stderr)
t0 = time.monotonic()
vlab.send(1, 4000, pps=500, settle=0)                  # ~8 s paced at 500 frames/s
for _ in range(4):                                     # bursts: the rx ring fills, NAPI polls full
    vlab.send(1, 3000, settle=0)
    time.sleep(1.5)
vlab.send(1, 8000, pps=1500, settle=0)                 # ~5 s paced faster
left = duration - (time.monotonic() - t0)
if left > 2:
    vlab.send(1, int(400 * (left - 1.5)), pps=400, settle=0)
cp = rec.stop(timeout=600)
if cp.returncode != 0:
    sys.exit(f"guest record failed: {cp.stderr}")
shutil.copyfile(out, sys.argv[1])
out.unlink()
EOF
./xdpscope summary "$out"
ls -l "$out"
