#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, and runs the worked
# example (an MLP learning XOR, with its tape printed before and after backward).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
mkdir -p runs
./build/tapegrad example xor --dot runs/xor_tape.dot
