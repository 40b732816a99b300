#!/usr/bin/env bash
# Configures and builds into build/ (Release). Extra arguments go to cmake.
# With CI=true warnings are errors.
set -euo pipefail
cd "$(dirname "$0")/.."
WERROR=OFF; [ "${CI:-}" = "true" ] && WERROR=ON
cmake -S . -B "${BUILD_DIR:-build}" -DTAPEGRAD_WERROR=$WERROR "$@" >/dev/null
cmake --build "${BUILD_DIR:-build}" -j"$(nproc)"
