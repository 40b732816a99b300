#!/usr/bin/env bash
# The side-by-side benchmark: the same GPT-2 training step (forward, loss,
# backward, AdamW) in tapegrad (`tapegrad bench`) and in PyTorch
# (bench/torch_gpt2.py, Debian's python3-torch), same config, batch, sequence
# length and threads, runs alternating so both see the same machine. Prints
# each run and, per config, the median ms/step and peak memory of each and the
# ratio pytorch/tapegrad (> 1: tapegrad is faster or smaller).
#
#   bash bench/run.sh [ROUNDS]     (default 3 rounds of each config)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
THREADS=${THREADS:-2}
[ -x build/tapegrad ] || bash scripts/build.sh
python3=/usr/bin/python3
$python3 -c "import torch" 2>/dev/null || { echo "bench: needs Debian's python3-torch (apt-get install python3-torch)" >&2; exit 1; }

# name | model flags shared by both sides
CONFIGS=(
  "gpt2-small B=4 T=64|--vocab 50257 --positions 1024 --embd 768 --layers 12 --heads 12 --batch 4 --seq 64 --steps 3"
  "gpt2-tiny B=8 T=128|--vocab 8192 --positions 128 --embd 256 --layers 4 --heads 4 --batch 8 --seq 128 --steps 10"
)
# torch_gpt2.py names --embd etc. the same; --vocab/--positions too.
out=$(mktemp)
for cfg in "${CONFIGS[@]}"; do
  name=${cfg%%|*}; flags=${cfg#*|}
  for r in $(seq "$ROUNDS"); do
    t=$(./build/tapegrad bench $flags --threads "$THREADS")
    p=$($python3 bench/torch_gpt2.py $flags --threads "$THREADS")
    echo "$name round $r: $t"
    echo "$name round $r: $p"
    echo "$name|$t" >> "$out"; echo "$name|$p" >> "$out"
  done
done
$python3 - "$out" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, js = line.rstrip("\n").split("|", 1)
    d = json.loads(js)
    rows.setdefault(name, {}).setdefault(d["impl"], []).append(d)
print()
print("%-22s %12s %12s %8s   %12s %12s %8s" % ("config", "tapegrad ms", "pytorch ms", "ratio", "tapegrad MB", "pytorch MB", "ratio"))
for name, impls in rows.items():
    t = statistics.median(d["ms_per_step"] for d in impls["tapegrad"])
    p = statistics.median(d["ms_per_step"] for d in impls["pytorch"])
    tm = statistics.median(d["peak_rss_mb"] for d in impls["tapegrad"])
    pm = statistics.median(d["peak_rss_mb"] for d in impls["pytorch"])
    print("%-22s %12.1f %12.1f %7.2fx   %12.1f %12.1f %7.2fx" % (name, t, p, p / t, tm, pm, pm / tm))
print("ratio = pytorch / tapegrad: above 1 means tapegrad is faster (ms) or smaller (MB)")
PY
rm -f "$out"
