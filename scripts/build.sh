#!/usr/bin/env bash
# Configures and builds starmoe in build/ (extra arguments go to ./configure).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x configure ] || autoreconf -fi >/dev/null
mkdir -p build
cd build
[ -f Makefile ] || ../configure --quiet "$@"
make -s -j"$(nproc)"
