#!/usr/bin/env bash
# Trains WordPiece and byte-level BPE on the State of the Union corpus with
# `tapegrad tokenizer train`, reports the training speed, checks that a second
# run writes the same file, and hands each tokenizer.json to Hugging Face's JS
# tokenizers (@huggingface/tokenizers 0.2.0): its ids on the corpus must equal
# tapegrad's, so the files we write mean to Hugging Face what they mean to us.
# Also reports encoding throughput on the whole corpus. Usage: compare_trained.sh [VOCAB] (default 8000)
set -euo pipefail
cd "$(dirname "$0")/../.."
V=${1:-8000}
NPM=$(bash tests/tokenizers/fetch_npm.sh)
CORPUS=$(bash scripts/corpus.sh)
W=.cache/tok-compare/trained && mkdir -p "$W"
bash tests/tokenizers/sample_text.sh "$CORPUS" 100 > "$W/text.txt"
MB=$(echo "$(wc -c < "$W/text.txt") / 1000000" | bc -l | cut -c1-5)
echo "corpus: $MB MB"
now() { date +%s.%N; }
for type in wordpiece bpe; do
  s=$(now); ./build/tapegrad tokenizer train --type $type --vocab-size "$V" --out "$W/$type.json" --input "$W/text.txt" 2>/dev/null; e=$(now)
  echo "train $type ($V tokens): $(echo "$e - $s" | bc -l | cut -c1-5) s, $(echo "$MB / ($e - $s)" | bc -l | cut -c1-5) MB/s"
  ./build/tapegrad tokenizer train --type $type --vocab-size "$V" --out "$W/$type-again.json" --input "$W/text.txt" >/dev/null 2>&1
  cmp -s "$W/$type.json" "$W/$type-again.json" && echo "  deterministic: a second run gave the same file" || { echo "  NOT deterministic"; exit 1; }
  s=$(now); ./build/tapegrad tokenizer encode --tokenizer "$W/$type.json" --input "$W/text.txt" > "$W/$type.ours"; e=$(now)
  echo "  encode: $(echo "$MB / ($e - $s)" | bc -l | cut -c1-5) MB/s (including loading)"
  node --input-type=module -e "
    import fs from 'fs';
    const { Tokenizer } = await import('$PWD/$NPM/hft/package/dist/tokenizers.mjs');
    const tok = new Tokenizer(JSON.parse(fs.readFileSync('$W/$type.json', 'utf-8')), { model_max_length: 1e9 });
    const lines = fs.readFileSync('$W/text.txt', 'utf-8').split('\n'); lines.pop();
    fs.writeSync(1, lines.map((l) => tok.encode(l, { add_special_tokens: false }).ids.join(' ')).join('\n') + '\n');
  " > "$W/$type.ref"
  if cmp -s "$W/$type.ref" "$W/$type.ours"; then echo "  Hugging Face JS reads it the same: identical ids ($(wc -w < "$W/$type.ours") tokens)"
  else echo "  Hugging Face JS ids DIFFER:"; diff "$W/$type.ref" "$W/$type.ours" | head -c 1500; exit 1; fi
  ./build/tapegrad tokenizer decode --tokenizer "$W/$type.json" --input "$W/$type.ours" > "$W/$type.dec"
  [ $type = bpe ] && { cmp -s "$W/$type.dec" "$W/text.txt" && echo "  decode: the corpus back, byte for byte" || { echo "  decode differs"; exit 1; }; }
done
exit 0
