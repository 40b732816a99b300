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

# ---- 1. the modules
KJV=engKJV2006eb
RV=spaRV1909eb
if ! diatheke -b system -k modulelist 2>/dev/null | grep -q "$RV"; then
    echo "fetching sword-text-kjv, sword-text-sparv and diatheke (apt-get)"
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y sword-text-kjv sword-text-sparv diatheke >/dev/null
fi

# ---- 2. verses, aligned by reference
if [ ! -s "$DATA/pairs.tsv" ]; then
    for m in $KJV $RV; do
        # -f plain: one verse a line, "Book C:V: text"; headings and blank lines are dropped below
        diatheke -b $m -f plain -k "Genesis 1:1-Revelation 22:21" > "$DATA/$m.txt"
    done
    # ref <TAB> text, for lines that start with a reference; the Reina-Valera's
    # Strong's numbers (" <G4314>") are markup, not text
    for m in $KJV $RV; do
        sed -n 's/^[[:space:]]*\([1-3]\{0,1\} \{0,1\}[A-Z][A-Za-z ]* [0-9]*:[0-9]*\): \(.*\)$/\1\t\2/p' \
            "$DATA/$m.txt" | sed 's/ *<[GH][0-9]*>//g' | tr -s ' ' | sed 's/[[:space:]]*$//' > "$DATA/$m.tsv"
    done
    # join on the reference; keep both sides short and non-empty
    awk -F '\t' -v max="$MAX_CHARS" '
        NR == FNR { en[$1] = $2; next }
        ($1 in en) && length(en[$1]) > 0 && length($2) > 0 && length(en[$1]) <= max && length($2) <= max {
            print en[$1] "\t" $2 }' "$DATA/$KJV.tsv" "$DATA/$RV.tsv" > "$DATA/pairs.tsv"
fi
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
