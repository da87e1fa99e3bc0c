#!/usr/bin/env bash
# Idempotent setup: Debian packages, a virtualenv with pinned dependencies, bcc linked into it.
# Safe to run on every `make run` / `make test`: it does nothing when everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(python3-bpfcc python3-venv linux-headers-amd64 iproute2 libbpf1 ethtool
          xvfb xauth fonts-dejavu-core libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0
          libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-image0
          libxcb-render-util0 libxcb-xinerama0 libfontconfig1 libdbus-1-3 poppler-utils
          qemu-system-x86 linux-image-amd64 busybox-static)  # the last three: the vlab (QEMU guest)
APT_PKGS+=(xdotool)  # GUI tests: real mouse wheel, hover and keys in an Xvfb window
APT_PKGS+=(bpfcc-tools)  # bcc's shipped XDP examples (/usr/share/doc/bpfcc-tools/examples): tests/test_user_programs.py
# a third-party libbpf program built as people build them (clang -target bpf, bpf/bpf_helpers.h,
# asm/ headers) and attached by iproute2: tests/test_watch_truth.py
APT_PKGS+=(clang libbpf-dev linux-libc-dev)
APT_PKGS+=(openssh-server sudo prometheus)  # --remote runs `sudo -n xdpscope agent`; tests run their own sshd and Prometheus

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $EUID -ne 0 ]]; then
    echo "xdpscope setup: missing Debian packages (${missing[*]}); run this once as root" >&2
    exit 1
  fi
  echo "xdpscope setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

VENV=.venv
stamp="$VENV/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python ]]; then
  /usr/bin/python3 -m venv "$VENV" >&2
fi
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt >&2
  echo "$want" > "$stamp"
fi
# bcc (python3-bpfcc) lives in Debian's dist-packages; link just that package into the venv.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[[ -e $site/bcc ]] || ln -s /usr/lib/python3/dist-packages/bcc "$site/bcc"
