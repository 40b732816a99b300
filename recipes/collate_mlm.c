/* collate_mlm.c: masked language modelling, as BERT, Hugging Face, ALBERT and
 * DistilBERT do it.
 *
 * Which tokens are predicted (config masking):
 *   token-level (RECIPE_MASK_TOKENS; DataCollatorForLanguageModeling.
 *     torch_mask_tokens): every non-special, non-padding position
 *     independently with mlm_probability (0.15), so the count per row is
 *     Binomial, not fixed;
 *   whole-word (TOKENS with whole_word_mask; DataCollatorForWholeWordMask.
 *     _whole_word_mask): a word is a piece and the "##" pieces after it; the
 *     words are shuffled and taken in turn while the total stays <=
 *     num_to_predict = min(max_predictions, max(1, round(n * mlm_probability))),
 *     n the row's length with [CLS]/[SEP]; a word that would pass the budget
 *     is skipped;
 *   n-gram (RECIPE_MASK_NGRAM; ALBERT's create_masked_lm_predictions with
 *     --ngram 3 --favor_shorter_ngram --do_whole_word_mask): the same budget;
 *     the units (whole words, or pieces without whole_word_mask) are shuffled
 *     as n-gram starts; for each start an n in 1..max_ngram is drawn with
 *     P(n) = (1/n) / (1 + 1/2 + 1/3) = 6/11, 3/11, 2/11; the n-gram is that
 *     unit and the next n-1 in the candidate list (fewer at the row's end);
 *     while it would pass the budget the next shorter one is tried; it is
 *     skipped if it still passes the budget or touches a position already
 *     taken; the loop stops when the budget is reached;
 *   smoothed (RECIPE_MASK_SMOOTHED; DistilBERT's distiller.py
 *     prepare_batch_mlm, over a whole batch): exactly n_tgt =
 *     ceil(mlm_probability * the batch's tokens) positions, drawn without
 *     replacement with weight max(count, 1)^-mlm_smoothing (0 for specials
 *     and padding), count = the id's count in the training corpus, so rare
 *     ids are predicted more often than their share.
 * What a predicted token becomes (all): mask_id with 0.8, else a uniform
 * random id in [0, vocab_size) with 0.1 / (1 - 0.8) = 0.5, else itself.
 * labels hold the original id at predicted positions and -100 elsewhere.
 *
 * The mlm collator's examples: a random document and sentence, whole
 * sentences from there up to T-2 ids (RoBERTa's DOC-SENTENCES packing), then
 * [CLS] ... [SEP] and padding. */
#include "collate_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void collate_corrupt(int32_t *id, const recipe_collate_config *cfg, recipe_rng *r) {
    if (recipe_rng_uniform(r) < cfg->mask_replace_prob) {
        *id = cfg->mask_id;
        return;
    }
    /* HF: bernoulli(0.5) among the not-[MASK]ed ones; in general random / (1 - mask) */
    const double rest = 1.0 - cfg->mask_replace_prob;
    if (rest > 0 && recipe_rng_uniform(r) < cfg->random_replace_prob / rest)
        *id = (int32_t)recipe_rng_int(r, 0, cfg->vocab_size - 1);
}

/* num_to_predict = min(max_predictions, max(1, round(n * p))), in Python
 * doubles with round half to even, as both BERT's and ALBERT's scripts and
 * Hugging Face's whole-word collator compute it. */
static int64_t num_to_predict(int64_t n, const recipe_collate_config *cfg) {
    int64_t k = (int64_t)collate_round_half_even((double)n * collate_py_double(cfg->mlm_probability));
    if (k < 1) k = 1;
    if (k > cfg->max_predictions) k = cfg->max_predictions;
    return k;
}

/* ALBERT's n-gram length: np.random.choice(ngrams, p=pvals), pvals 1/n
 * normalised (reversed without favor_shorter_ngram). numpy takes the first n
 * whose normalised cumulative probability exceeds the uniform draw. */
static int64_t draw_ngram(const recipe_collate_config *cfg, recipe_rng *r) {
    const int N = cfg->max_ngram;
    double total = 0, acc = 0;
    for (int k = 1; k <= N; ++k) total += 1.0 / (cfg->favor_shorter_ngram ? k : N + 1 - k);
    const double u = recipe_rng_uniform(r);
    for (int k = 1; k <= N; ++k) {
        acc += 1.0 / (cfg->favor_shorter_ngram ? k : N + 1 - k);
        if (u < acc / total) return k;
    }
    return N;
}

void collate_ngram_row(int32_t *ids, int32_t *labels, int64_t n, const recipe_collate_config *cfg, recipe_rng *r,
                       int64_t *scratch, int64_t *grams) {
    for (int64_t i = 0; i < n; ++i) labels[i] = -100;
    /* ALBERT's cand_indexes: the units in order. unit_pos [n] lists the
     * candidate positions unit by unit, unit k starting at unit_pos[unit_at[k]];
     * a "##" piece joins the unit before it with whole_word_mask (the script's
     * do_whole_word_mask), else every piece is a unit. order [n_units] is the
     * shuffled list of n-gram starts (the script's ngram_indexes). */
    int64_t *unit_pos = scratch, *unit_at = scratch + n, *order = scratch + 2 * n, n_pos = 0, n_units = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (collate_is_special(cfg, ids[i])) continue;
        const bool cont = cfg->whole_word_mask && cfg->is_continuation[ids[i]] != 0;
        if (!(cont && n_units >= 1)) unit_at[n_units++] = n_pos;
        unit_pos[n_pos++] = i;
    }
    if (n_units == 0) return;
#define UNIT_END(k) ((k) < n_units ? unit_at[k] : n_pos) /* where unit k-1's positions end */
    const int64_t budget = num_to_predict(n, cfg);
    for (int64_t k = 0; k < n_units; ++k) order[k] = k;
    collate_shuffle(order, n_units, r);
    int64_t taken = 0;
    for (int64_t j = 0; j < n_units && taken < budget; ++j) {
        const int64_t k = order[j];
        int64_t g = draw_ngram(cfg, r);
        if (grams && k + cfg->max_ngram <= n_units) grams[g]++;
        /* the n-gram: units k .. last-1 (Python's slice stops at the end) */
        int64_t last = k + g < n_units ? k + g : n_units, len = UNIT_END(last) - unit_at[k];
        while (taken + len > budget && g > 1) { /* "trying shorter ngrams" */
            --g;
            last = k + g < n_units ? k + g : n_units;
            len = UNIT_END(last) - unit_at[k];
        }
        if (taken + len > budget) continue;
        bool covered = false;
        for (int64_t p = unit_at[k]; p < UNIT_END(last) && !covered; ++p) covered = labels[unit_pos[p]] != -100;
        if (covered) continue;
        for (int64_t p = unit_at[k]; p < UNIT_END(last); ++p) {
            const int64_t i = unit_pos[p];
            labels[i] = ids[i];
            collate_corrupt(&ids[i], cfg, r);
        }
        if (grams) grams[cfg->max_ngram + 1 + (last - k)]++;
        taken += len;
    }
#undef UNIT_END
}

void collate_mask_row(int32_t *ids, int32_t *labels, int64_t n, const recipe_collate_config *cfg,
                      recipe_mlm_masking how, recipe_rng *r, int64_t *scratch) {
    if (how == RECIPE_MASK_NGRAM) {
        collate_ngram_row(ids, labels, n, cfg, r, scratch, NULL);
        return;
    }
    for (int64_t i = 0; i < n; ++i) labels[i] = -100;
    if (!cfg->whole_word_mask) {
        for (int64_t i = 0; i < n; ++i) {
            if (collate_is_special(cfg, ids[i])) continue;
            if (recipe_rng_uniform(r) < cfg->mlm_probability) {
                labels[i] = ids[i];
                collate_corrupt(&ids[i], cfg, r);
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
    const int64_t budget = num_to_predict(n, cfg);
    int64_t taken = 0;
    for (int64_t k = 0; k < n_words && taken < budget; ++k) {
        const int64_t start = word_at[k] >> 20, len = word_at[k] & ((1 << 20) - 1);
        if (taken + len > budget) continue; /* HF skips a word that would overflow, and tries the next */
        for (int64_t j = start; j < start + len; ++j) labels[word_pos[j]] = ids[word_pos[j]];
        taken += len;
    }
    for (int64_t i = 0; i < n; ++i)
        if (labels[i] != -100) collate_corrupt(&ids[i], cfg, r);
}

/* ---------------------------------------------------------------- DistilBERT's smoothed masking */

typedef struct keyed {
    double key;
    int64_t e; /* position b*T + t */
} keyed;

/* Larger keys first; equal keys by position, so the order is total. */
static int by_key_desc(const void *pa, const void *pb) {
    const keyed *a = pa, *b = pb;
    if (a->key != b->key) return a->key < b->key ? 1 : -1;
    return (a->e > b->e) - (a->e < b->e);
}

/* distiller.py's prepare_batch_mlm on rows already built (ids [B][T],
 * attention att, labels all -100):
 *     x_prob = token_probs[token_ids]          max(count, 1)^-0.7, 0 for specials
 *     n_tgt  = ceil(mlm_mask_prop * lengths.sum())
 *     tgt_ids = multinomial(x_prob / x_prob.sum(), n_tgt, replacement=False)
 * torch draws without replacement as the top n_tgt of x_prob / E, E ~ Exp(1)
 * (Efraimidis and Spirakis's keys), which is what this does: each row draws
 * its positions' E from its own stream rng[b], and the n_tgt largest keys of
 * the batch are predicted; then 80/10/10 (pred_probs) from the same streams.
 * n_tgt is in Python doubles: ceil(0.15 * 100) = 16, as 0.15 * 100 is
 * 15.000000000000002. When the batch has fewer candidates than n_tgt (torch
 * raises), all of them are predicted. */
static ag_status smoothed_mask_batch(int32_t *ids, int32_t *labels, const int32_t *att, int B, int T,
                                     const recipe_collate_config *cfg, recipe_rng *rng) {
    keyed *cand = malloc((size_t)B * T * sizeof *cand);
    if (!cand) return ag_fail(AG_ERR_MEMORY, "collate mlm: out of memory");
    int64_t n_tokens = 0, n_cand = 0;
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) {
            const int64_t e = (int64_t)b * T + t;
            if (!att[e]) continue;
            ++n_tokens;
            if (collate_is_special(cfg, ids[e])) continue; /* token_probs 0: never drawn */
            const int64_t count = cfg->token_counts[ids[e]];
            const double w = pow((double)(count > 1 ? count : 1), -(double)cfg->mlm_smoothing);
            const double E = -log1p(-recipe_rng_uniform(&rng[b])); /* Exp(1); 0 only for u = 0 */
            cand[n_cand++] = (keyed){E > 0 ? w / E : INFINITY, e};
        }
    int64_t n_tgt = (int64_t)ceil(collate_py_double(cfg->mlm_probability) * (double)n_tokens);
    if (n_tgt > n_cand) n_tgt = n_cand;
    qsort(cand, (size_t)n_cand, sizeof *cand, by_key_desc);
    for (int64_t k = 0; k < n_tgt; ++k) labels[cand[k].e] = ids[cand[k].e];
    free(cand);
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) {
            const int64_t e = (int64_t)b * T + t;
            if (labels[e] != -100) collate_corrupt(&ids[e], cfg, &rng[b]);
        }
    return AG_OK;
}

ag_status recipe_collate_mlm(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                             uint64_t seed, uint64_t index) {
    memset(out, 0, sizeof *out);
    ag_status st;
    recipe_mlm_masking how;
    if ((st = collate_check_config(cfg, "collate mlm", "pcsm")) ||
        (st = collate_masking(cfg, "collate mlm", RECIPE_MASK_TOKENS, true, &how)) || (st = recipe_corpus_check(c, cfg)))
        return st;
    if (B < 1 || T < 3) return ag_fail(AG_ERR_ARG, "collate mlm: B = %d, T = %d; need B >= 1 and T >= 3", B, T);
    const bool smoothed = how == RECIPE_MASK_SMOOTHED;
    int32_t *ids = collate_field(out, "input_ids", B, T, cfg->pad_id);
    int32_t *att = ids ? collate_field(out, "attention_mask", B, T, 0) : NULL;
    int32_t *types = att ? collate_field(out, "token_type_ids", B, T, 0) : NULL;
    int32_t *labels = types ? collate_field(out, "labels", B, T, -100) : NULL;
    int64_t *scratch = labels ? malloc(3 * (size_t)T * sizeof *scratch) : NULL;
    recipe_rng *rng = scratch && smoothed ? malloc((size_t)B * sizeof *rng) : NULL; /* [B] each row's stream */
    if (!scratch || (smoothed && !rng)) {
        if (labels) ag_fail(AG_ERR_MEMORY, "collate mlm: out of memory");
        free(scratch);
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
        if (smoothed) rng[b] = r; /* masked below, over the whole batch */
        else collate_mask_row(row, labels + (int64_t)b * T, n, cfg, how, &r, scratch);
    }
    st = smoothed ? smoothed_mask_batch(ids, labels, att, B, T, cfg, rng) : AG_OK;
    free(scratch);
    free(rng);
    if (st) recipe_batch_free(out);
    return st;
}
