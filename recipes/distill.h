/* distill.h: knowledge distillation (`tapegrad distill`), as Hugging Face's
 * examples/research_projects/distillation does it (distiller.py and
 * scripts/extract_distilbert.py).
 *
 * What it is:
 *   - the masked-LM triple loss that trained DistilBERT:
 *         loss = alpha_ce  * KL(softmax(t/T) || softmax(s/T)) * T^2   (soft targets)
 *              + alpha_mlm * CE(s, labels)                            (the student's own MLM loss)
 *              + alpha_cos * mean(1 - cos(h_s, h_t))                  (last hidden states)
 *     with T = 2, alpha_ce 5, alpha_mlm 2, alpha_cos 1. The teacher runs in a
 *     no-grad scope and in eval mode (no dropout), as distiller.py's
 *     torch.no_grad() and teacher.eval();
 *   - causal-LM distillation for decoders (GPT-2 teacher, smaller GPT-2
 *     student): the same KL on the next-token distributions plus alpha_clm
 *     times the student's shifted cross entropy, and the cosine term when
 *     the two widths agree (distiller.py with --alpha_clm instead of --mlm);
 *   - the student initialised from the teacher (extract_distilbert.py):
 *     embeddings copied, teacher layers map[0..S) copied into student layers
 *     0..S, renamed BERT -> DistilBERT.
 *   - distiller.py's masking (prepare_batch_mlm): exactly ceil(0.15 * the
 *     batch's tokens) positions per batch, drawn without replacement with
 *     weight max(count, 1)^-0.7 (count = the id's count in the training
 *     split, train.py's token_probs; 0 for special ids and padding), then
 *     80/10/10: recipe_collate_mlm with masking = RECIPE_MASK_SMOOTHED.
 *     uniform_masking gives recipe_collate_mlm's uniform 15 % instead.
 * What it is not: distiller.py's length-grouped batches (GroupedBatchSampler)
 * or its data filtering (LmSeqsDataset); the rows are recipe_collate_mlm's
 * [CLS] sentences [SEP] from a random place.
 *
 * Which positions each term counts (buffer shapes: B batch, T positions,
 * V vocabulary, C width):
 *   KL   rows of s_logits [B,T,V] where attention_mask is 1, or only where
 *        labels != -100 when restrict_ce_to_mask (distiller.py's
 *        --restrict_ce_to_mask; its default is every non-pad position);
 *        "batchmean": summed over V, averaged over the selected rows.
 *        Causal LM: every non-pad position's next-token distribution.
 *   MLM  rows where labels != -100, mean.
 *   CLM  positions [:, :-1] predicting ids[:, 1:], pad (-100) ignored, mean.
 *   cos  rows of the last hidden states [B,T,C] where attention_mask is 1,
 *        target +1, mean (torch's CosineEmbeddingLoss).
 */
#ifndef TAPEGRAD_RECIPES_DISTILL_H
#define TAPEGRAD_RECIPES_DISTILL_H

#include "models.h"

#include <stdbool.h>
#include <stdint.h>

/* distiller.py's loss weights and temperature. */
typedef struct recipe_distill_weights {
    float temperature;        /* 2.0 */
    float alpha_ce;           /* 5.0: KL to the teacher's softened distribution */
    float alpha_mlm;          /* 2.0: the student's masked-LM loss (encoders) */
    float alpha_clm;          /* 0.0: the student's causal-LM loss (decoders; 2.0 in the decoder defaults) */
    float alpha_cos;          /* 1.0: cosine between last hidden states */
    bool restrict_ce_to_mask; /* KL only at masked positions (distiller.py default: false) */
} recipe_distill_weights;

/* DistilBERT's published weights: T 2, ce 5, mlm 2, clm 0, cos 1, KL over
 * every non-pad position. */
recipe_distill_weights recipe_distill_mlm_defaults(void);
/* DistilGPT2-style weights: T 2, ce 5, mlm 0, clm 2, cos 1. */
recipe_distill_weights recipe_distill_clm_defaults(void);

/* Each term's value (before weighting) and how many rows it counted, for
 * logging and tests. A term that is off (weight 0 or no teacher) is 0. */
typedef struct recipe_distill_parts {
    double ce, mlm, clm, cos, total;
    int64_t n_ce_rows, n_lm_rows, n_cos_rows;
} recipe_distill_parts;

/* The weighted loss on one batch (fields input_ids, attention_mask and, for
 * the MLM term, labels). student: BertForMaskedLM, DistilBertForMaskedLM or
 * GPT2LMHeadModel; teacher: the same kinds, or NULL (then only the student's
 * own LM term, which must have a weight: plain MLM or CLM training, how the
 * teacher itself is trained). Encoders pair with encoders and decoders with
 * decoders; the vocabularies must agree; the cosine term needs equal widths
 * (for decoders it is skipped when they differ, for encoders it is an error).
 * The teacher's ops run in a no-grad scope and eval mode, so nothing flows
 * into its parameters. Returns a [1] tensor (ready for ag_backward), or NULL
 * with ag_error() set; *parts (may be NULL) receives the terms. */
ag_tensor *recipe_distill_loss(ag_ctx *ctx, const recipe_model *student, const recipe_model *teacher,
                               const recipe_batch *b, const recipe_distill_weights *w, recipe_distill_parts *parts);

/* extract_distilbert.py's layer choice, generalised from 12 -> 6
 * ([0, 2, 4, 7, 9, 11]) to L -> S: the first ceil(S/2) student layers take
 * teacher layers 0, 2, 4, ...; the rest take ..., L-5, L-3, L-1, so the
 * bottom and top of the teacher are both kept. map [S]. Errors: S < 1, or
 * 2S - 1 > L (not enough layers for every-other-layer). */
ag_status recipe_distill_layer_map(int L, int S, int *map);

/* Copies the teacher's weights into the student (both finalized), as
 * extract_distilbert.py (BERT -> DistilBERT) or its GPT-2 branch (GPT-2 ->
 * GPT-2) does:
 *   BERT -> DistilBERT:  embeddings.{word,position}_embeddings, embeddings.LayerNorm;
 *     for student layer j, teacher layer map[j]:
 *       attention.self.{query,key,value} -> attention.{q,k,v}_lin
 *       attention.output.dense           -> attention.out_lin
 *       attention.output.LayerNorm       -> sa_layer_norm
 *       intermediate.dense               -> ffn.lin1
 *       output.dense                     -> ffn.lin2
 *       output.LayerNorm                 -> output_layer_norm
 *     cls.predictions.bias -> vocab_projector.bias, cls.predictions.transform.
 *     {dense,LayerNorm} -> vocab_transform, vocab_layer_norm (token types dropped);
 *   GPT-2 -> GPT-2: wte, wpe, ln_f and transformer.h.map[j].* -> transformer.h.j.*.
 * map NULL takes recipe_distill_layer_map. *n_copied (may be NULL) receives
 * the number of tensors copied. Errors: another pair of families, a shape
 * that differs (naming both parameters), a map entry out of range. */
ag_status recipe_distill_init_student(recipe_model *student, const recipe_model *teacher, const int *map,
                                      int *n_copied);

/* ---------------------------------------------------------------- the trainer */

typedef struct recipe_distill_opts {
    const char *student_config;  /* config.json of the student (its architectures[0]) */
    const char *teacher;         /* the teacher's ckpt.h5 (config inside) or NULL: train the student alone */
    const char *data_dir;        /* `tapegrad prepare` output (shards with document and sentence starts) */
    const char *tokenizer;       /* the tokenizer the data was prepared with (encoders: its [CLS], [MASK], ...) */
    const char *out_dir;         /* ckpt.h5 and metrics.jsonl */
    bool init_from_teacher;      /* extract_distilbert's initialisation (else Hugging Face's random init) */
    bool uniform_masking;        /* encoders: each token with 0.15 (recipe_collate_mlm's default) instead of
                                  * distiller.py's smoothed masking */
    float mlm_smoothing;         /* smoothed masking's exponent: weight max(count, 1)^-mlm_smoothing (0.7) */
    recipe_distill_weights w;
    int steps, batch, seq, warmup, log_every, eval_every, eval_batches;
    double lr, weight_decay, clip, max_seconds;
    uint64_t seed;
} recipe_distill_opts;

/* Trains the student against the teacher (or alone) on the prepared corpus:
 * MLM batches from recipe_collate_mlm for encoders (smoothed masking with the
 * training split's token counts, for training and held-out batches alike,
 * unless uniform_masking), packed windows for
 * decoders; AdamW with linear warmup and decay (distiller.py's schedule);
 * logs to out_dir/metrics.jsonl (loss, each term, held-out loss on fixed
 * batches of the val split) for `tapegrad plot`; saves out_dir/ckpt.h5.
 * Errors: bad options, unreadable data or teacher, a non-finite loss. */
ag_status recipe_distill_train(const recipe_distill_opts *o);

#endif
