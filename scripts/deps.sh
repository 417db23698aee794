#!/usr/bin/env bash
# Installs the Debian 12 packages starmoe builds and tests with (run as root); chromium and
# pajeng let the trace tests load the HTML report in a browser and read Paje traces back; GNU
# time gives bench/scaling.sh each rank's peak memory.
set -euo pipefail
pkgs="build-essential autoconf automake libtool pkg-config libstarpu-dev libopenmpi-dev
      openmpi-bin libhwloc-dev libopenblas-dev libjansson-dev graphviz fortunes fortunes-zh
      chromium pajeng time"
missing=$(for p in $pkgs; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $missing >/dev/null
fi
