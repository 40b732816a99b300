#!/usr/bin/env bash
# Installs what tapegrad needs from Debian 12, skipping what is already there.
# Run as root (or with sudo). Extra package names may be given as arguments
# (the quick start adds npm, to fetch its corpus). Python (python3-torch) is
# needed only to regenerate test fixtures and to run the benchmark, never to
# build or test.
set -euo pipefail
PKGS="build-essential cmake pkg-config libopenblas-dev libopenblas0-openmp libhdf5-dev zlib1g-dev libcmocka-dev libcjson-dev libutf8proc-dev libpcre2-dev $*"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends $missing
fi
