#!/usr/bin/env bash
# One pretraining recipe end to end from raw text:
#   scripts/recipes.sh mlm|nsp|sop|electra|span|denoise|ctrl
# fetches the State of the Union addresses (scripts/corpus.sh), trains a
# WordPiece tokenizer of 8000 ids on them, prepares shards (5% of the
# addresses held out), pretrains the recipe's small model (configs/recipes/)
# for MINUTES (default 2.5) on a fresh start, and plots the loss curve to
# docs/figures/<recipe>-loss.svg. Runs go under runs/ (git-ignored).
# ctrl: each address gets its party (from the corpus's .json metadata) as its
# first word, which the trainer takes as the document's control code.
set -euo pipefail
cd "$(dirname "$0")/.."
r=${1:?usage: scripts/recipes.sh mlm|nsp|sop|electra|span|denoise|ctrl|tlm}
minutes=${MINUTES:-2.5}
[ -x build/tapegrad ] || bash scripts/build.sh
corpus=$(bash scripts/corpus.sh)
mkdir -p runs docs/figures
[ -f runs/sotu-wp.json ] || ./build/tapegrad tokenizer train --type wordpiece --vocab-size 8000 --out runs/sotu-wp.json \
  --input "$corpus"/*.txt
data=runs/sotu-wp
if [ "$r" = ctrl ]; then
  data=runs/sotu-wp-ctrl
  mkdir -p runs/sotu-ctrl-text
  /usr/bin/python3 - "$corpus" runs/sotu-ctrl-text <<'PY'
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
for f in sorted(os.listdir(src)):
    if f.endswith(".json"):
        d = json.load(open(os.path.join(src, f)))
        party = d["party"].split()[0].split("-")[0].capitalize() if d["party"] != "none" else "None"
        open(os.path.join(dst, f[:-5] + ".txt"), "w").write(party + "\n" + d["text"])
PY
  [ -f $data/manifest.json ] || ./build/tapegrad prepare --tokenizer runs/sotu-wp.json --out $data --val 0.05 --quiet \
    --input runs/sotu-ctrl-text/*.txt
else
  [ -f $data/manifest.json ] || ./build/tapegrad prepare --tokenizer runs/sotu-wp.json --out $data --val 0.05 --quiet \
    --input "$corpus"/*.txt
fi
if [ "$r" = tlm ]; then
  # tlm: English/Spanish Bible verses (Debian's SWORD modules, fetched at run
  # time), one verse per document in two aligned folders; one WordPiece
  # vocabulary for both languages; the held-out split is by document index,
  # so the two folders hold out the same verses
  pairs=$(bash scripts/bible-pairs.sh runs/bible)
  mkdir -p runs/tlm-text
  cut -f1 "$pairs" | sed 's/$/\n/' > runs/tlm-text/en.txt
  cut -f2 "$pairs" | sed 's/$/\n/' > runs/tlm-text/es.txt
  [ -f runs/tlm-wp.json ] || ./build/tapegrad tokenizer train --type wordpiece --vocab-size 8000 --out runs/tlm-wp.json \
    --input runs/tlm-text/en.txt runs/tlm-text/es.txt
  for l in en es; do
    [ -f runs/tlm-$l/manifest.json ] || ./build/tapegrad prepare --tokenizer runs/tlm-wp.json --out runs/tlm-$l \
      --val 0.05 --quiet --docs-by-blank-lines --input runs/tlm-text/$l.txt
  done
  rm -rf runs/recipe-tlm
  ./build/tapegrad pretrain --recipe tlm --config configs/recipes/xlm-tlm.json --data runs/tlm-en --tgt-data runs/tlm-es \
    --out runs/recipe-tlm --steps "${STEPS:-400}" --batch 16 --seq 128 --lr 1e-3 --min-lr 1e-4 --warmup 20 \
    --weight-decay 0.01 --log-every 10 --eval-every 25 --eval-batches 8 --save-every 0 --minutes "$minutes" --threads 2
  ./build/tapegrad plot runs/recipe-tlm --out docs/figures/tlm-loss.svg
  exit 0
fi
case $r in
  mlm) cfg=bert-mlm ;; nsp) cfg=bert-nsp ;; sop) cfg=albert-sop ;; electra) cfg=electra-discriminator ;;
  span) cfg=t5-span ;; denoise) cfg=bart-denoise ;; ctrl) cfg=ctrl ;;
  *) echo "unknown recipe $r" >&2; exit 2 ;;
esac
rm -rf runs/recipe-$r
./build/tapegrad pretrain --recipe "$r" --config configs/recipes/$cfg.json \
  --generator-config configs/recipes/electra-generator.json --data $data --out runs/recipe-$r \
  --steps "${STEPS:-400}" --batch 16 --seq 128 --lr 1e-3 --min-lr 1e-4 --warmup 20 --weight-decay 0.01 \
  --log-every 10 --eval-every 25 --eval-batches 8 --save-every 0 --minutes "$minutes" --threads 2
./build/tapegrad plot runs/recipe-$r --out docs/figures/$r-loss.svg
