#!/usr/bin/env bash
# distill-demo.sh: DistilBERT's recipe end to end on the State of the Union
# addresses, from raw text:
#   1. a WordPiece tokenizer (4,000 ids) and token shards with 5% of the
#      addresses held out;
#   2. the teacher, a 4-layer BertForMaskedLM, trained by MLM alone
#      (`tapegrad distill` without --teacher: the student's own MLM loss);
#   3. the student, a 2-layer DistilBertForMaskedLM initialised from teacher
#      layers 0 and 3 (extract_distilbert.py's every-other-layer rule for
#      4 -> 2), trained with the triple loss 5*KL(T=2) + 2*MLM + 1*cos;
#   4. for comparison, the same student from a random init with MLM alone;
#   5. loss curves with `tapegrad plot`.
# Usage: bash scripts/distill-demo.sh [OUT] (default .cache/distill-demo).
# TEACHER_MINUTES and STUDENT_MINUTES set the time budgets (default 6 and 5: caps;
# the runs are sized by --steps, about 0.7 s a step on two loaded cores).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.cache/distill-demo}
TG=${TG:-build/tapegrad}
TM=${TEACHER_MINUTES:-6}
SM=${STUDENT_MINUTES:-5}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
CORPUS=$(bash scripts/corpus.sh)

if [ ! -f "$OUT/tok.json" ]; then
  "$TG" tokenizer train --type wordpiece --vocab-size 4000 --out "$OUT/tok.json" --input "$CORPUS"/*.txt
fi
if [ ! -f "$OUT/data/manifest.json" ]; then
  "$TG" prepare --tokenizer "$OUT/tok.json" --out "$OUT/data" --val 0.05 --quiet --input "$CORPUS"/*.txt
fi

cat > "$OUT/teacher.json" <<'JSON'
{"model_type": "bert", "architectures": ["BertForMaskedLM"], "vocab_size": 4000, "hidden_size": 128,
 "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 512, "max_position_embeddings": 128,
 "type_vocab_size": 2, "pad_token_id": 0, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
JSON
cat > "$OUT/student.json" <<'JSON'
{"model_type": "distilbert", "architectures": ["DistilBertForMaskedLM"], "vocab_size": 4000, "dim": 128,
 "n_layers": 2, "n_heads": 4, "hidden_dim": 512, "max_position_embeddings": 128, "pad_token_id": 0,
 "dropout": 0.1, "attention_dropout": 0.1, "activation": "gelu"}
JSON

COMMON=(--data "$OUT/data" --tokenizer "$OUT/tok.json" --batch 16 --seq 64 --threads "$THREADS"
        --log-every 10 --eval-every 50 --eval-batches 8)
# 2. the teacher: MLM alone (weight 1: its loss is the MLM cross entropy)
"$TG" distill --student "$OUT/teacher.json" --out "$OUT/teacher" "${COMMON[@]}" \
  --steps 400 --minutes "$TM" --lr 1e-3 --warmup 40 --alpha-mlm 1
# 3. the student: the triple loss, initialised from the teacher's layers
"$TG" distill --student "$OUT/student.json" --teacher "$OUT/teacher/ckpt.h5" --out "$OUT/student" "${COMMON[@]}" \
  --steps 300 --minutes "$SM" --lr 5e-4 --warmup 30
# 4. the same student from a random init, MLM alone (no teacher)
"$TG" distill --student "$OUT/student.json" --out "$OUT/student-alone" "${COMMON[@]}" \
  --steps 300 --minutes "$SM" --lr 1e-3 --warmup 30 --alpha-mlm 1
for r in teacher student student-alone; do "$TG" plot "$OUT/$r"; done
