/* collate.h: the pretraining collators, one per objective. Each turns plain
 * token ids (a corpus with document and sentence boundaries) into the model's
 * inputs and labels, a recipe_batch ready for recipe_model_loss.
 *
 * What this is: the published recipes, transcribed (see docs/recipes.md for
 * the exact reference behind every rule):
 *   mlm      BERT / Hugging Face DataCollatorForLanguageModeling, and
 *            DataCollatorForWholeWordMask
 *   nsp      BERT's create_pretraining_data.py: next-sentence pairs + MLM
 *   sop      ALBERT's create_pretraining_data.py: sentence order + n-gram MLM
 *   electra  ELECTRA's generator masking, then the discriminator's inputs
 *            sampled from the generator's logits
 *   span     T5's span corruption (random_spans_noise_mask,
 *            compute_input_and_target_lengths)
 *   denoise  BART: fairseq's denoising_dataset.py (text infilling, sentence
 *            permutation, token deletion, insertion, document rotation)
 *   tlm      XLM's translation language modelling on parallel pairs
 *   ctrl     CTRL: a control token per document, then causal LM
 * What it is not: a data loader. It reads no files and knows nothing of the
 * shard format; the caller hands it arrays.
 *
 * Every collator is a pure function of (corpus, config, B, T, seed, index):
 * example b of batch `index` draws its random numbers from its own counter
 * stream, ag_rng_u64(ag_rng_u64(seed, index), b) (see recipe_rng), so a batch
 * can be rebuilt, and a run resumed, from (seed, index) alone, and example b
 * does not depend on B.
 *
 * Worked example (BERT MLM, batch 7 of a run with seed 1234):
 *
 *     recipe_corpus c = {tokens, n_tokens, doc_start, n_docs, sent_start, n_sents};
 *     recipe_collate_config cfg;
 *     recipe_collate_defaults(&cfg, 30522);
 *     cfg.pad_id = 0; cfg.cls_id = 101; cfg.sep_id = 102; cfg.mask_id = 103;
 *     recipe_batch b;
 *     if (recipe_collate_mlm(&b, &c, &cfg, 8, 128, 1234, 7) != AG_OK) puts(ag_error());
 *     // b: input_ids, attention_mask, token_type_ids, labels, each [8][128]
 *     loss = recipe_model_loss(ctx, &model, &b, &ntok);
 *     recipe_batch_free(&b);
 *
 * Errors (every function returns AG_OK or a status with ag_error() set, and
 * then leaves *out empty): a corpus whose offsets are not increasing or do not
 * cover the tokens, a token id outside [0, vocab_size), a special id the
 * objective needs left at -1, a probability outside [0, 1], B or T too small
 * for the objective, max_ngram < 1 for n-gram masking, token_counts missing
 * (or a count < 0) for smoothed masking, out of memory. Each message names
 * the parameter. */
#ifndef TAPEGRAD_RECIPES_COLLATE_H
#define TAPEGRAD_RECIPES_COLLATE_H

#include <stdbool.h>
#include <stdint.h>

#include "ag.h"
#include "batch.h"

/* ---------------------------------------------------------------- inputs */

/* A tokenized corpus. Documents and sentences are ranges of one token array;
 * sentences never cross a document boundary. */
typedef struct recipe_corpus {
    const int32_t *tokens;      /* [n_tokens] every document's ids, one after another */
    int64_t n_tokens;
    const int64_t *doc_start;   /* [n_docs + 1]: document d is tokens[doc_start[d] .. doc_start[d+1]) */
    int64_t n_docs;
    const int64_t *sent_start;  /* [n_sents + 1], or NULL: each document is one sentence */
    int64_t n_sents;
    const int32_t *doc_control; /* [n_docs]: ctrl's control-code token per document, or NULL */
} recipe_corpus;

/* A parallel corpus for tlm: pair i is src[src_start[i]..src_start[i+1]) and
 * tgt[tgt_start[i]..tgt_start[i+1]). */
typedef struct recipe_parallel {
    const int32_t *src, *tgt;
    const int64_t *src_start, *tgt_start; /* [n_pairs + 1] each */
    int64_t n_pairs;
    int32_t src_lang, tgt_lang;           /* the language ids written to `langs` */
} recipe_parallel;

/* Which positions the MLM part of mlm, nsp, sop and tlm predicts. */
typedef enum recipe_mlm_masking {
    RECIPE_MASK_DEFAULT = 0, /* the objective's published one: NGRAM for sop (ALBERT), TOKENS for the rest */
    RECIPE_MASK_TOKENS,      /* Hugging Face: each candidate with mlm_probability (whole_word_mask: its whole words) */
    RECIPE_MASK_NGRAM,       /* ALBERT's create_masked_lm_predictions: n-grams of 1..max_ngram words */
    RECIPE_MASK_SMOOTHED,    /* DistilBERT's prepare_batch_mlm: ceil(p * tokens) per batch, weighted
                              * max(count, 1)^-mlm_smoothing (recipe_collate_mlm only) */
} recipe_mlm_masking;

/* Special ids (-1: the vocabulary has none) and each objective's knobs.
 * recipe_collate_defaults sets the published values. */
typedef struct recipe_collate_config {
    int32_t vocab_size;
    int32_t pad_id, cls_id, sep_id, mask_id, bos_id, eos_id;
    const int32_t *special_ids;     /* [n_special] further ids never masked (unk, langs, ...) */
    int n_special;

    /* mlm, and the MLM part of nsp, sop, tlm (Hugging Face's defaults) */
    float mlm_probability;          /* 0.15 of the non-special tokens are predicted */
    float mask_replace_prob;        /* 0.8 of those become mask_id */
    float random_replace_prob;      /* 0.1 a uniform random id in [0, vocab_size); the rest stay */
    bool whole_word_mask;           /* DataCollatorForWholeWordMask */
    const uint8_t *is_continuation; /* [vocab_size] 1 for a WordPiece "##" piece (whole_word_mask) */
    int max_predictions;            /* whole-word, n-gram and electra cap per sequence (512 as HF's) */
    recipe_mlm_masking masking;     /* RECIPE_MASK_DEFAULT: the objective's own */

    /* n-gram masking (ALBERT's create_pretraining_data.py flags). The unit is
     * a whole word with whole_word_mask (ALBERT's do_whole_word_mask, its
     * default), else a piece. */
    int max_ngram;                  /* 3 (--ngram): n-grams of 1..max_ngram units */
    bool favor_shorter_ngram;       /* true: P(n) = (1/n) / sum_k 1/k; false: the same list reversed */

    /* smoothed masking (DistilBERT's distiller.py and train.py) */
    const int64_t *token_counts;    /* [vocab_size] each id's count in the training corpus (recipe_token_counts) */
    float mlm_smoothing;            /* 0.7: a candidate's weight is max(count, 1)^-mlm_smoothing */

    /* nsp, sop (BERT's and ALBERT's create_pretraining_data.py) */
    float short_seq_prob;           /* 0.1: a shorter target length, uniform in [2, T-3] */
    float next_sentence_prob;       /* 0.5: B from another document (nsp) / A and B swapped (sop) */

    /* electra (ELECTRA's pretrain_helpers.mask) */
    float electra_mask_prob;        /* 0.15 of the tokens (attention 1) */
    float electra_mask_replace;     /* 0.85 become mask_id, the rest keep their id */

    /* span (T5) */
    float noise_density;            /* 0.15 */
    float mean_noise_span_length;   /* 3.0 */
    int32_t sentinel_first;         /* <extra_id_0>; <extra_id_k> = sentinel_first - k. Default vocab_size-1 */

    /* denoise (fairseq's BART options; 0 switches a noise off) */
    float permute_sentence_ratio;   /* 1.0: that fraction of sentences shuffled among themselves */
    float delete_ratio;             /* 0.0: token deletion, that fraction of the tokens removed */
    float mask_ratio;               /* 0.3: text infilling budget, fraction of the tokens */
    float poisson_lambda;           /* 3.0: infilling span lengths ~ Poisson(lambda) */
    float random_ratio;             /* 0.1: a masked span starts with a random id instead of mask_id */
    float insert_ratio;             /* 0.0: fraction of mask tokens inserted */
    float rotate_ratio;             /* 0.0: probability of rotating the document */
} recipe_collate_config;

/* Sets the published defaults above for a vocabulary of vocab_size ids; every
 * special id -1, sentinel_first = vocab_size - 1. */
void recipe_collate_defaults(recipe_collate_config *cfg, int32_t vocab_size);

/* counts [vocab_size] = how many times each id occurs in the corpus (the
 * token_counts smoothed masking wants; DistilBERT's token_counts.py over its
 * training data). Returns AG_OK, or AG_ERR_ARG for a NULL argument or an id
 * outside [0, vocab_size) (naming the position). */
ag_status recipe_token_counts(int64_t *counts, const recipe_corpus *c, int32_t vocab_size);

/* Checks the corpus against the config: offsets start at 0, increase, end at
 * n_tokens, sentences nest in documents, every id in [0, vocab_size).
 * Returns AG_OK or AG_ERR_ARG naming the first bad offset or id. Every
 * collator calls it; call it once yourself to check a corpus early. */
ag_status recipe_corpus_check(const recipe_corpus *c, const recipe_collate_config *cfg);

/* ---------------------------------------------------------------- random numbers */

/* One example's stream: draw k is ag_rng_u64(seed, k). */
typedef struct recipe_rng {
    uint64_t seed, counter;
} recipe_rng;

/* The stream of example b of batch `index` of a run seeded `seed`. */
recipe_rng recipe_rng_example(uint64_t seed, uint64_t index, int64_t b);
uint64_t recipe_rng_u64(recipe_rng *r);
/* Uniform in [0, 1) with 53 bits. */
double recipe_rng_uniform(recipe_rng *r);
/* Uniform integer in [lo, hi] (inclusive, like Python's random.randint). */
int64_t recipe_rng_int(recipe_rng *r, int64_t lo, int64_t hi);

/* ---------------------------------------------------------------- collators
 * Each fills *out (fields malloc'd; recipe_batch_free releases them) with
 * [B][T] arrays; labels are -100 wherever nothing is predicted, padding is
 * pad_id with attention_mask 0. */

/* mlm: [CLS] sentences [SEP] from a random document and sentence, then masked.
 * Fields input_ids, attention_mask, token_type_ids (0), labels. Needs pad, cls,
 * sep, mask; T >= 3. masking: TOKENS by default, NGRAM, or SMOOTHED
 * (DistilBERT: exactly ceil(mlm_probability * the batch's tokens) positions,
 * chosen over the whole batch without replacement, so that row b then
 * depends on the other rows and on B; needs token_counts). */
ag_status recipe_collate_mlm(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                             uint64_t seed, uint64_t index);

/* nsp: [CLS] A [SEP] B [SEP], B the actual continuation or (next_sentence_prob)
 * taken from another document; MLM over it. Fields input_ids, attention_mask,
 * token_type_ids, labels, next_sentence_label [B] (1 = B is random, as
 * BertForPreTraining). Needs T >= 5 (with one document, B comes from it,
 * as the script's 10 tries end). */
ag_status recipe_collate_nsp(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                             uint64_t seed, uint64_t index);

/* sop: [CLS] A [SEP] B [SEP], two consecutive segments swapped with
 * next_sentence_prob; MLM over it, n-gram masking by default (ALBERT's;
 * masking = RECIPE_MASK_TOKENS for BERT's). Fields as nsp but
 * sentence_order_label [B] (1 = swapped, as AlbertForPreTraining). */
ag_status recipe_collate_sop(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                             uint64_t seed, uint64_t index);

/* electra, step 1: the generator's batch, [CLS] sentences [SEP] masked as
 * ELECTRA does. Fields input_ids, attention_mask, token_type_ids, labels
 * (the original id where masked, else -100). */
ag_status recipe_collate_electra(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B,
                                 int T, uint64_t seed, uint64_t index);
/* electra, step 2: the discriminator's batch. logits [B,T,V] are the
 * generator's (only rows where gen's labels != -100 are read); each masked
 * position takes argmax(logits / temperature + Gumbel noise), a sample from
 * softmax(logits / temperature). Fields input_ids (sampled ids in place),
 * attention_mask, token_type_ids, labels [B][T]: 1 where the id differs from
 * the original, 0 elsewhere (the loss counts attention_mask 1). Errors:
 * gen lacks a field, V < 1, temperature <= 0. */
ag_status recipe_electra_discriminator(recipe_batch *out, const recipe_batch *gen, const float *logits, int64_t V,
                                       float temperature, uint64_t seed, uint64_t index);

/* T5's compute_input_and_target_lengths: the raw window length *tokens_length
 * whose corrupted input is inputs_length long, and the targets' length.
 * Errors: inputs_length < 2, a density outside (0, 1), a span length < 1. */
ag_status recipe_t5_lengths(int inputs_length, float noise_density, float mean_noise_span_length, int *tokens_length,
                            int *targets_length);
/* T5's random_spans_noise_mask: is_noise [length] (1 = noise), starting with
 * a non-noise span. Needs length >= 2. */
void recipe_t5_noise_mask(uint8_t *is_noise, int length, float noise_density, float mean_noise_span_length,
                          recipe_rng *r);
/* span: windows of tokens_length consecutive ids of the corpus (chunks, as
 * Hugging Face's group_texts makes them), corrupted: input_ids [B][T]
 * (T = the inputs length asked for), labels [B][targets_length], both ending
 * in eos; attention_mask [B][T] all 1. Needs eos, T >= 2. */
ag_status recipe_collate_span(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                              uint64_t seed, uint64_t index);

/* denoise, one document: src [n] = <bos> tokens <eos> (its sentences start at
 * sent[0..n_sent), offsets into src, sent[0] = 1) noised in fairseq's order:
 * sentence permutation, token deletion, text infilling, insertion, rotation.
 * dst has room for 4n + 8 ids; returns its length, or -1 when out of
 * memory (ag_error set). covered [n] (or NULL) receives 1 for each source
 * token inside a masked or deleted span, 0 for the others. */
int64_t recipe_denoise_row(int32_t *dst, const int32_t *src, int64_t n, const int64_t *sent, int64_t n_sent,
                           const recipe_collate_config *cfg, recipe_rng *r, uint8_t *covered);
/* The infilling span lengths fairseq draws for a budget of num_to_mask
 * tokens: Poisson(lambda) samples, the last cut so they sum to the budget;
 * zero-length spans included. Writes at most cap; returns the count. */
int64_t recipe_denoise_span_lengths(int64_t *lengths, int64_t cap, int64_t num_to_mask, float lambda, recipe_rng *r);
/* denoise: <bos> sentences <eos> from a random document (at most T ids),
 * noised. Fields input_ids [B][T] (cut to T, <eos> kept last), attention_mask,
 * labels [B][T] (the clean text, -100 past its end). Needs pad, bos, eos, mask. */
ag_status recipe_collate_denoise(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B,
                                 int T, uint64_t seed, uint64_t index);

/* tlm: a random pair as XLM concatenates it, </s> x </s> </s> y </s>, masked
 * over both. Fields input_ids, attention_mask, labels, langs (src_lang on the
 * first sentence, tgt_lang on the second), position_ids (0 again at the
 * second sentence). The longer sentence is cut so the pair fits T. Needs
 * pad, eos, mask; T >= 6. */
ag_status recipe_collate_tlm(recipe_batch *out, const recipe_parallel *p, const recipe_collate_config *cfg, int B, int T,
                             uint64_t seed, uint64_t index);

/* ctrl: the control token of a random document, then a random chunk of it
 * (T-1 ids). Fields input_ids, attention_mask, labels (= input_ids, -100 on
 * padding; the model shifts them). Needs c->doc_control and pad. */
ag_status recipe_collate_ctrl(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                              uint64_t seed, uint64_t index);

#endif
