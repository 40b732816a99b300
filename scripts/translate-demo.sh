#!/bin/sh
# translate-demo.sh: English -> Spanish on aligned Bible verses, end to end.
#
#   1. fetch the King James Version and the Reina-Valera 1909 as SWORD modules
#      (Debian's sword-text-kjv, sword-text-sparv) and diatheke, which prints
#      verses from them (apt-get; skipped when diatheke already lists both);
#   2. dump both books verse by verse ("Book C:V: text") and align the
#      verses by reference into pairs.tsv (English <TAB> Spanish), keeping
#      short verses (at most MAX_CHARS characters on each side);
#   3. tapegrad train-s2s: a BPE tokenizer trained on the pairs, a small T5
#      (configs/t5-s2s-tiny.json), AdamW with warmup and linear decay, the
#      held-out loss every EVAL steps, a checkpoint at the end, and a few
#      held-out translations (greedy and beam search);
#   4. tapegrad translate on a sentence of our own.
#
# Usage: scripts/translate-demo.sh [RUN_DIR]   (default runs/translate)
# Environment: MINUTES (5), STEPS (3000), WARMUP (100), MAX_CHARS (80), THREADS (2), BUILD (build),
#              CONFIG (configs/t5-s2s-tiny.json)
set -eu
cd "$(dirname "$0")/.."
RUN=${1:-runs/translate}
MINUTES=${MINUTES:-5}
STEPS=${STEPS:-3000}
WARMUP=${WARMUP:-100}
MAX_CHARS=${MAX_CHARS:-80}
THREADS=${THREADS:-2}
BUILD=${BUILD:-build}
CONFIG=${CONFIG:-configs/t5-s2s-tiny.json}
DATA=$RUN/data
# OpenMP's idle workers spin by default; on a machine shared with other jobs
# that spinning costs more than the threads bring to a model this small
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$DATA"

# ---- 1-2. the modules, and verses aligned by reference (scripts/bible-pairs.sh)
MAX_CHARS=$MAX_CHARS bash scripts/bible-pairs.sh "$DATA" >/dev/null
echo "pairs: $(wc -l < "$DATA/pairs.tsv") verses of at most $MAX_CHARS characters a side, e.g."
head -n 2 "$DATA/pairs.tsv" | sed 's/^/  /'

# ---- 3. training
[ -x "$BUILD/tapegrad" ] || scripts/build.sh
"$BUILD/tapegrad" train-s2s --config "$CONFIG" --data "$DATA/pairs.tsv" --out "$RUN" \
    --vocab 1500 --max-src 40 --max-tgt 40 --steps "$STEPS" --batch 32 --lr 2e-3 --warmup "$WARMUP" \
    --schedule linear --eval-every 100 --minutes "$MINUTES" --threads "$THREADS" --show 6 --num-beams 4

# ---- 4. a sentence of our own
for s in "And God said unto Moses, Go." "The LORD is my shepherd."; do
    printf '%s\n  -> ' "$s"
    "$BUILD/tapegrad" translate --checkpoint "$RUN" --text "$s" --num-beams 4 --threads "$THREADS"
done
