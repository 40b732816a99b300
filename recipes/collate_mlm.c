/* collate_mlm.c: masked language modelling, as BERT and Hugging Face do it.
 *
 * Which tokens are predicted:
 *   token-level (DataCollatorForLanguageModeling.torch_mask_tokens): every
 *     non-special, non-padding position independently with mlm_probability
 *     (0.15), so the count per row is Binomial, not fixed;
 *   whole-word (DataCollatorForWholeWordMask._whole_word_mask): a word is a
 *     piece and the "##" pieces after it; the words are shuffled and taken in
 *     turn while the total stays <= num_to_predict =
 *     min(max_predictions, max(1, round(n * mlm_probability))), n the row's
 *     length with [CLS]/[SEP]; a word that would pass the budget is skipped.
 * What a predicted token becomes (both): mask_id with 0.8, else a uniform
 * random id in [0, vocab_size) with 0.1 / (1 - 0.8) = 0.5, else itself.
 * labels hold the original id at predicted positions and -100 elsewhere.
 *
 * The mlm collator's examples: a random document and sentence, whole
 * sentences from there up to T-2 ids (RoBERTa's DOC-SENTENCES packing), then
 * [CLS] ... [SEP] and padding. */
#include "collate_internal.h"

#include <stdlib.h>
#include <string.h>

/* 80/10/10 on one predicted position. */
static void corrupt(int32_t *id, const recipe_collate_config *cfg, recipe_rng *r) {
    if (recipe_rng_uniform(r) < cfg->mask_replace_prob) {
        *id = cfg->mask_id;
        return;
    }
    /* HF: bernoulli(0.5) among the not-[MASK]ed ones; in general random / (1 - mask) */
    const double rest = 1.0 - cfg->mask_replace_prob;
    if (rest > 0 && recipe_rng_uniform(r) < cfg->random_replace_prob / rest)
        *id = (int32_t)recipe_rng_int(r, 0, cfg->vocab_size - 1);
}

void collate_mask_row(int32_t *ids, int32_t *labels, int64_t n, const recipe_collate_config *cfg, recipe_rng *r,
                      int64_t *scratch) {
    for (int64_t i = 0; i < n; ++i) labels[i] = -100;
    if (!cfg->whole_word_mask) {
        for (int64_t i = 0; i < n; ++i) {
            if (collate_is_special(cfg, ids[i])) continue;
            if (recipe_rng_uniform(r) < cfg->mlm_probability) {
                labels[i] = ids[i];
                corrupt(&ids[i], cfg, r);
            }
        }
        return;
    }
    /* Whole words. word_pos [n] lists the candidate positions word by word;
     * word_at [n_words] is where each word starts in word_pos (the words are
     * then shuffled as index sets, and word k spans word_pos[word_at[k] ..
     * the next word's start), so keep the starts in a second array). */
    int64_t *word_pos = scratch, *word_at = scratch + n, n_pos = 0, n_words = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (collate_is_special(cfg, ids[i])) continue;
        const bool cont = cfg->is_continuation[ids[i]] != 0;
        if (!(cont && n_words >= 1)) word_at[n_words++] = n_pos;
        word_pos[n_pos++] = i;
    }
    if (n_words == 0) return;
    /* word k: word_pos[start .. end); pack (start, length) into one int64 so
     * the shuffle moves both */
    for (int64_t k = 0; k < n_words; ++k) {
        int64_t end = k + 1 < n_words ? word_at[k + 1] : n_pos;
        word_at[k] = word_at[k] << 20 | (end - word_at[k]);
    }
    collate_shuffle(word_at, n_words, r);
    int64_t budget = (int64_t)collate_round_half_even((double)n * collate_py_double(cfg->mlm_probability));
    if (budget < 1) budget = 1;
    if (budget > cfg->max_predictions) budget = cfg->max_predictions;
    int64_t taken = 0;
    for (int64_t k = 0; k < n_words && taken < budget; ++k) {
        const int64_t start = word_at[k] >> 20, len = word_at[k] & ((1 << 20) - 1);
        if (taken + len > budget) continue; /* HF skips a word that would overflow, and tries the next */
        for (int64_t j = start; j < start + len; ++j) labels[word_pos[j]] = ids[word_pos[j]];
        taken += len;
    }
    for (int64_t i = 0; i < n; ++i)
        if (labels[i] != -100) corrupt(&ids[i], cfg, r);
}

ag_status recipe_collate_mlm(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                             uint64_t seed, uint64_t index) {
    memset(out, 0, sizeof *out);
    ag_status st;
    if ((st = collate_check_config(cfg, "collate mlm", "pcsm")) || (st = recipe_corpus_check(c, cfg))) return st;
    if (B < 1 || T < 3) return ag_fail(AG_ERR_ARG, "collate mlm: B = %d, T = %d; need B >= 1 and T >= 3", B, T);
    int32_t *ids = collate_field(out, "input_ids", B, T, cfg->pad_id);
    int32_t *att = ids ? collate_field(out, "attention_mask", B, T, 0) : NULL;
    int32_t *types = att ? collate_field(out, "token_type_ids", B, T, 0) : NULL;
    int32_t *labels = types ? collate_field(out, "labels", B, T, -100) : NULL;
    int64_t *scratch = labels ? malloc(2 * (size_t)T * sizeof *scratch) : NULL;
    if (!scratch) {
        if (labels) ag_fail(AG_ERR_MEMORY, "collate mlm: out of memory");
        recipe_batch_free(out);
        return ag_error_status();
    }
    for (int b = 0; b < B; ++b) {
        recipe_rng r = recipe_rng_example(seed, index, b);
        int32_t *row = ids + (int64_t)b * T;
        const int64_t d = collate_random_doc(c, &r);
        int64_t s0, s1;
        collate_doc_sentences(c, d, &s0, &s1);
        const int64_t s = recipe_rng_int(&r, s0, s1 - 1);
        /* row: [CLS] sentences [SEP] pad... */
        int64_t n = collate_pack_sentences(c, d, s, T - 2, row + 1);
        row[0] = cfg->cls_id;
        row[n + 1] = cfg->sep_id;
        n += 2;
        for (int64_t t = 0; t < n; ++t) att[(int64_t)b * T + t] = 1;
        collate_mask_row(row, labels + (int64_t)b * T, n, cfg, &r, scratch);
    }
    free(scratch);
    return AG_OK;
}
