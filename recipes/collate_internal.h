/* collate_internal.h: what the collators (recipes/collate_*.c) share and the
 * public header does not promise: batch fields, corpus lookups, the MLM
 * masker, BERT's pair builder. Not part of the library's interface. */
#ifndef TAPEGRAD_RECIPES_COLLATE_INTERNAL_H
#define TAPEGRAD_RECIPES_COLLATE_INTERNAL_H

#include "collate.h"

/* An id no objective may mask: pad, cls, sep, mask, bos, eos, special_ids. */
bool collate_is_special(const recipe_collate_config *cfg, int32_t id);
/* Adds a field `name` of [rows][cols] ids, each `fill`; NULL with an error. */
int32_t *collate_field(recipe_batch *out, const char *name, int rows, int cols, int32_t fill);
/* Checks that the special ids named in `needs` (a string of letters: p pad,
 * c cls, s sep, m mask, b bos, e eos) are set, and the shared knobs. */
ag_status collate_check_config(const recipe_collate_config *cfg, const char *who, const char *needs);

/* The sentence-start array and count in effect (documents when sent_start is NULL). */
const int64_t *collate_sent_starts(const recipe_corpus *c, int64_t *n_sents);
/* Sentences [*s0, *s1) of document d. */
void collate_doc_sentences(const recipe_corpus *c, int64_t d, int64_t *s0, int64_t *s1);
/* A uniformly random non-empty document (the next non-empty one after an empty draw). */
int64_t collate_random_doc(const recipe_corpus *c, recipe_rng *r);
/* Copies whole sentences of document d from sentence s on into dst until the
 * next one would pass max ids (the first is cut to max if alone too long).
 * Returns the count of ids written. */
int64_t collate_pack_sentences(const recipe_corpus *c, int64_t d, int64_t s, int64_t max, int32_t *dst);

/* The masking a collator uses: cfg->masking, or for RECIPE_MASK_DEFAULT the
 * objective's own (own_default). Checks what that masking needs: max_ngram
 * >= 1 for NGRAM; for SMOOTHED, allowed only when batch_level (the mlm
 * collator), token_counts set and every count >= 0, mlm_smoothing >= 0.
 * Returns AG_OK with *how set, or AG_ERR_ARG naming the parameter. */
ag_status collate_masking(const recipe_collate_config *cfg, const char *who, recipe_mlm_masking own_default,
                          bool batch_level, recipe_mlm_masking *how);

/* The MLM masker on one row of n ids (the row's unpadded length), for how =
 * RECIPE_MASK_TOKENS: Hugging Face's torch_mask_tokens (each candidate
 * predicted with mlm_probability), or, with whole_word_mask,
 * DataCollatorForWholeWordMask's word selection; RECIPE_MASK_NGRAM: ALBERT's
 * n-grams (collate_ngram_row); then 80/10/10. labels [n] receives the
 * original id where predicted, -100 elsewhere. Candidates are the positions
 * whose id is not special. scratch has room for 3n int64s. */
void collate_mask_row(int32_t *ids, int32_t *labels, int64_t n, const recipe_collate_config *cfg,
                      recipe_mlm_masking how, recipe_rng *r, int64_t *scratch);
/* ALBERT's create_masked_lm_predictions on one row (see collate_mlm.c).
 * grams (or NULL) [2 * (max_ngram + 1)] is added to, for the tests:
 * grams[n] counts the draws of an n-gram whose first unit has at least
 * max_ngram - 1 units after it (so that every length was possible),
 * grams[max_ngram + 1 + n] the n-grams of n units actually masked. */
void collate_ngram_row(int32_t *ids, int32_t *labels, int64_t n, const recipe_collate_config *cfg, recipe_rng *r,
                       int64_t *scratch, int64_t *grams);
/* 80/10/10 on one predicted position: mask_id with mask_replace_prob, else a
 * uniform id in [0, vocab_size) with random_replace_prob / (1 -
 * mask_replace_prob), else unchanged. */
void collate_corrupt(int32_t *id, const recipe_collate_config *cfg, recipe_rng *r);

/* BERT's (ALBERT's with sop) create_instances_from_document for one instance,
 * from a random document and sentence. A and B are contiguous ranges of the
 * corpus: *a, *na and *b, *nb, already truncated by truncate_seq_pair to
 * T - 3 ids together. *label = is_random_next (nsp) or swapped (sop);
 * *n_segments = the sentences in the chunk (1 forces a random B in both
 * scripts). */
void collate_pair_instance(const recipe_corpus *c, const recipe_collate_config *cfg, int T, bool sop, recipe_rng *r,
                           const int32_t **a, int64_t *na, const int32_t **b, int64_t *nb, int *label,
                           int64_t *n_segments);
/* The nsp and sop collators: one batch of pairs, the label field next_sentence_label or, with sop,
 * sentence_order_label. */
ag_status collate_pairs(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                        uint64_t seed, uint64_t index, bool sop);

/* The double a Python option holds when the config's float says f (0.15f ->
 * 0.15): the references compute their counts in Python doubles, and
 * round(10 * 0.15f) = 2 where round(10 * 0.15) = 1. */
double collate_py_double(float f);
/* Python's round(): to nearest, ties to even (numpy's np.round as well). */
double collate_round_half_even(double x);
/* Fisher-Yates shuffle of n int64s, as random.shuffle (not its stream). */
void collate_shuffle(int64_t *v, int64_t n, recipe_rng *r);

#endif
