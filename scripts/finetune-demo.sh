#!/usr/bin/env bash
# Classifier fine-tuning end to end, on real data fetched at run time:
#   1. installs what is missing (python3-pattern carries the data) and builds;
#   2. turns Pang & Lee's 4,000 movie-review polarity sentences into a seeded
#      train/dev split (3,200 / 800) and the other Pang & Lee set's 1,500 full
#      reviews (plus the training sentences, never the dev ones) into
#      byte-level pretraining shards (scripts/polarity-data.py);
#   3. pretrains a small byte-level GPT-2 on that text (tapegrad pretrain);
#   4. trains the bag-of-words logistic regression baseline on the split;
#   5. fine-tunes the pretrained GPT-2 as GPT2ForSequenceClassification.
# Both classifiers report accuracy, F1 and MCC on the 800 held-out sentences
# each epoch (runs/polarity-*/metrics.jsonl) and keep their best epoch.
# The data are "meant for personal use" (pattern's corpora README): they are
# read from the Debian package and never committed.
# PRETRAIN_STEPS, PRETRAIN_MINUTES, EPOCHS, THREADS override the run's length.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh python3-pattern
bash scripts/build.sh
T=${THREADS:-0}
/usr/bin/python3 scripts/polarity-data.py /usr/share/doc/python3-pattern/test/corpora runs/polarity
./build/tapegrad prepare --out runs/polarity-data --val 0.05 \
  --input runs/polarity/lm/train-sentences.txt runs/polarity/lm/reviews-*.txt
./build/tapegrad pretrain --recipe clm --config configs/gpt2-bytes-reviews.json --data runs/polarity-data \
  --out runs/polarity-lm --steps "${PRETRAIN_STEPS:-1500}" --batch 16 --seq 256 --lr 3e-3 --min-lr 1e-4 \
  --warmup 20 --eval-every 100 --log-every 25 --eval-batches 4 --minutes "${PRETRAIN_MINUTES:-30}" --threads "$T"
./build/tapegrad finetune --task classify --model bow --train runs/polarity/train.tsv --eval runs/polarity/dev.tsv \
  --out runs/polarity-bow --epochs 5 --lr 1e-2 --batch 32 --threads "$T"
./build/tapegrad finetune --task classify --init runs/polarity-lm --train runs/polarity/train.tsv \
  --eval runs/polarity/dev.tsv --out runs/polarity-gpt2 --epochs "${EPOCHS:-3}" --batch 32 --seq 192 --lr 1e-3 \
  --warmup 0.05 --threads "$T"
echo
echo "bag of words:  $(cat runs/polarity-bow/best.json)"
echo "GPT-2 (bytes): $(cat runs/polarity-gpt2/best.json)"
