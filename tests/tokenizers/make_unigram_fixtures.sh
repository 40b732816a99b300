#!/usr/bin/env bash
# Makes tests/fixtures/unigram/: two tiny SentencePiece models trained by
# Debian's spm_train on 20 KB of the State of the Union corpus, the ids
# spm_encode gives for the test lines in cases.txt, and a Hugging Face
# tokenizer.json equivalent to the byte-fallback model (written by
# spm_to_tokenizer_json.py, as transformers' SpmConverter would).
#   tiny.model        nmt_nfkc (its 240 KB are the NFKC rule table), vocab 300
#   tiny_bytes.model  identity normalisation, byte fallback, vocab 400
# Needs: apt-get install sentencepiece; scripts/corpus.sh (npm).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=tests/fixtures/unigram
mkdir -p "$OUT"
command -v spm_train >/dev/null || { echo "apt-get install sentencepiece" >&2; exit 1; }
CORPUS=$(bash scripts/corpus.sh)
# 1946-1950 addresses, one sentence per line, the first 20 KB.
cat "$CORPUS"/194[6-9]_*.txt "$CORPUS"/1950_*.txt | sed 's/\([.!?]\) \+/\1\n/g' > "$OUT/corpus.full"
head -c 20000 "$OUT/corpus.full" > "$OUT/corpus.txt" && rm "$OUT/corpus.full"
spm_train --input="$OUT/corpus.txt" --model_prefix="$OUT/tiny" --vocab_size=300 --character_coverage=0.995 \
  --num_threads=1 >/dev/null 2>&1
spm_train --input="$OUT/corpus.txt" --model_prefix="$OUT/tiny_bytes" --vocab_size=400 --byte_fallback=true \
  --character_coverage=0.98 --normalization_rule_name=identity --num_threads=1 >/dev/null 2>&1
rm -f "$OUT"/*.vocab
for m in tiny tiny_bytes; do
  spm_encode --model="$OUT/$m.model" --output_format=id < "$OUT/cases.txt" > "$OUT/$m.ids"
done
/usr/bin/python3 tests/tokenizers/spm_to_tokenizer_json.py "$OUT/tiny_bytes.model" > "$OUT/tiny_bytes.tokenizer.json"
ls -la "$OUT"
