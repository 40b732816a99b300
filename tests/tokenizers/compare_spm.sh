#!/usr/bin/env bash
# Compares tapegrad's Unigram tokenizer with Debian's sentencepiece on real text.
#   1. spm_train (unigram, 8000 pieces) on the 1900-1989 State of the Union
#      addresses, one sentence per line (about 4 MB);
#   2. spm_encode --output_format=id and tapegrad both encode the held-out
#      addresses (1790-1899 and 2000-2021, about 6 MB) and some odd lines
#      (NFKC, CJK, emoji, blanks, invalid UTF-8); every id of every line is
#      compared; the same for a byte-fallback model; spm_decode and tapegrad
#      decode the ids back and must agree;
#   3. throughput of both encoders in MB/s (wall clock, model loading included
#      for both, on the same input), and the training time of tapegrad's own
#      trainer on the same 4 MB, whose model then encodes the held-out text.
# Installs sentencepiece when missing (apt-get). Writes only under .cache/spm-compare.
# Usage: bash tests/tokenizers/compare_spm.sh   (after building: cmake --build build)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
command -v spm_encode >/dev/null || bash scripts/deps.sh sentencepiece
[ -f build/libtapegrad.a ] || { echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 1; }
W=.cache/spm-compare
mkdir -p "$W"
TOOL=$W/unigram_tool
cc -O2 -march=native -Idata -Iautograd tests/tokenizers/unigram_tool.c build/libtapegrad.a \
  $(pkg-config --libs libcjson libutf8proc) -fopenmp -lm -o "$TOOL"
CORPUS=$(bash scripts/corpus.sh)
sentences() { sed 's/\([.!?]\) \+/\1\n/g'; }
year_files() { ls "$CORPUS"/*.txt | awk -F/ -v lo="$1" -v hi="$2" '{split($NF,a,"_"); if (a[1]>=lo && a[1]<hi) print}'; }
cat $(year_files 1900 1990) | sentences > $W/train.txt
{ cat $(year_files 1790 1900) $(year_files 2000 2100) | sentences; cat tests/fixtures/unigram/cases.txt; } > $W/test.txt
echo "train: $(wc -c < $W/train.txt) bytes, $(wc -l < $W/train.txt) lines; held out: $(wc -c < $W/test.txt) bytes, $(wc -l < $W/test.txt) lines"

compare() { # model name
  local m=$1
  spm_encode --model=$W/$m.model --output_format=id < $W/test.txt > $W/$m.spm.ids
  "$TOOL" encode $W/$m.model $W/test.txt > $W/$m.tg.ids 2>/dev/null
  local bad; bad=$(diff $W/$m.spm.ids $W/$m.tg.ids | grep -c '^<' || true)
  local n; n=$(wc -w < $W/$m.spm.ids)
  echo "$m: $n ids on $(wc -l < $W/test.txt) lines, lines that differ: $bad"
  spm_decode --model=$W/$m.model --input_format=id < $W/$m.spm.ids > $W/$m.spm.txt
  "$TOOL" decode $W/$m.model $W/$m.spm.ids > $W/$m.tg.txt
  if cmp -s $W/$m.spm.txt $W/$m.tg.txt; then echo "$m: decoding identical to spm_decode"; else echo "$m: DECODING DIFFERS"; bad=1; fi
  [ "$bad" = 0 ]
}
status=0
spm_train --input=$W/train.txt --model_prefix=$W/spm8k --vocab_size=8000 --model_type=unigram --num_threads=2 \
  > $W/spm_train.log 2>&1
compare spm8k || status=1
spm_train --input=$W/train.txt --model_prefix=$W/spm8k_bytes --vocab_size=8000 --byte_fallback=true \
  --character_coverage=0.999 --num_threads=2 > $W/spm_train_bytes.log 2>&1
compare spm8k_bytes || status=1

# Throughput: three runs each, the best.
MB=$(awk -v b=$(wc -c < $W/test.txt) 'BEGIN{print b/1e6}')
best() { local t best=999; for i in 1 2 3; do s=$(date +%s.%N); "$@" > /dev/null 2>&1; e=$(date +%s.%N)
  t=$(awk -v s=$s -v e=$e 'BEGIN{print e-s}'); best=$(awk -v a=$t -v b=$best 'BEGIN{print (a<b)?a:b}'); done; echo $best; }
t_spm=$(best sh -c "spm_encode --model=$W/spm8k.model --output_format=id < $W/test.txt")
t_tg=$(best "$TOOL" encode $W/spm8k.model $W/test.txt)
awk -v mb=$MB -v a=$t_spm -v b=$t_tg 'BEGIN{printf "throughput on %.2f MB: spm_encode %.2f MB/s (%.3f s), tapegrad %.2f MB/s (%.3f s)\n", mb, mb/a, a, mb/b, b}'

# tapegrad's own trainer on the same text.
s=$(date +%s.%N)
"$TOOL" train $W/tg8k.model 8000 0 $W/train.txt 2> $W/tg_train.log
e=$(date +%s.%N)
"$TOOL" train $W/tg8k_again.model 8000 0 $W/train.txt 2> /dev/null
cmp -s $W/tg8k.model $W/tg8k_again.model && det=yes || { det=NO; status=1; }
"$TOOL" encode $W/tg8k.model $W/test.txt > $W/tg8k.ids 2>/dev/null
awk -v mb=$(awk -v b=$(wc -c < $W/train.txt) 'BEGIN{print b/1e6}') -v s=$s -v e=$e -v det=$det \
  'BEGIN{printf "tapegrad trainer: %.2f MB in %.2f s (%.2f MB/s), deterministic: %s\n", mb, e-s, mb/(e-s), det}'
echo "held-out ids: spm_train's model $(wc -w < $W/spm8k.spm.ids), tapegrad's model $(wc -w < $W/tg8k.ids)"
s=$(date +%s.%N)
spm_train --input=$W/train.txt --model_prefix=$W/spm8k_timed --vocab_size=8000 --num_threads=2 > /dev/null 2>&1
e=$(date +%s.%N)
awk -v s=$s -v e=$e 'BEGIN{printf "spm_train (2 threads) on the same text: %.2f s\n", e-s}'
exit $status
