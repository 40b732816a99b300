/* collate.c: what every collator shares (see collate.h): the defaults, the
 * per-example random stream, the corpus checks and lookups, batch fields.
 * The objectives themselves live in collate_<name>.c. */
#include "collate_internal.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void recipe_collate_defaults(recipe_collate_config *cfg, int32_t vocab_size) {
    memset(cfg, 0, sizeof *cfg);
    cfg->vocab_size = vocab_size;
    cfg->pad_id = cfg->cls_id = cfg->sep_id = cfg->mask_id = cfg->bos_id = cfg->eos_id = -1;
    cfg->mlm_probability = 0.15f;
    cfg->mask_replace_prob = 0.8f;
    cfg->random_replace_prob = 0.1f;
    cfg->max_predictions = 512;
    cfg->masking = RECIPE_MASK_DEFAULT;
    cfg->max_ngram = 3;
    cfg->favor_shorter_ngram = true;
    cfg->mlm_smoothing = 0.7f;
    cfg->short_seq_prob = 0.1f;
    cfg->next_sentence_prob = 0.5f;
    cfg->electra_mask_prob = 0.15f;
    cfg->electra_mask_replace = 0.85f;
    cfg->noise_density = 0.15f;
    cfg->mean_noise_span_length = 3.0f;
    cfg->sentinel_first = vocab_size - 1;
    cfg->permute_sentence_ratio = 1.0f;
    cfg->delete_ratio = 0.0f;
    cfg->mask_ratio = 0.3f;
    cfg->poisson_lambda = 3.0f;
    cfg->random_ratio = 0.1f;
    cfg->insert_ratio = 0.0f;
    cfg->rotate_ratio = 0.0f;
}

/* ---------------------------------------------------------------- random numbers */

recipe_rng recipe_rng_example(uint64_t seed, uint64_t index, int64_t b) {
    /* Two mixes, so that (index, b) never collides with (index', b') and the
     * example's stream does not depend on the batch size. */
    recipe_rng r = {ag_rng_u64(ag_rng_u64(seed, index), (uint64_t)b), 0};
    return r;
}

uint64_t recipe_rng_u64(recipe_rng *r) { return ag_rng_u64(r->seed, r->counter++); }

double recipe_rng_uniform(recipe_rng *r) { return (double)(recipe_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

int64_t recipe_rng_int(recipe_rng *r, int64_t lo, int64_t hi) {
    if (hi <= lo) return lo;
    /* Rejection keeps it exactly uniform: draws in the last partial block of
     * 2^64 mod n are thrown away. */
    const uint64_t n = (uint64_t)(hi - lo) + 1, limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t u;
    do u = recipe_rng_u64(r);
    while (u >= limit);
    return lo + (int64_t)(u % n);
}

double collate_py_double(float f) {
    /* %.7g gives back the shortest decimal that a float holds (0.15f -> "0.15") */
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)f);
    return strtod(buf, NULL);
}

double collate_round_half_even(double x) {
    double f = floor(x), d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return fmod(f, 2.0) == 0.0 ? f : f + 1;
}

void collate_shuffle(int64_t *v, int64_t n, recipe_rng *r) {
    for (int64_t i = n - 1; i > 0; --i) {
        int64_t j = recipe_rng_int(r, 0, i), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* ---------------------------------------------------------------- config and corpus */

bool collate_is_special(const recipe_collate_config *cfg, int32_t id) {
    if (id == cfg->pad_id || id == cfg->cls_id || id == cfg->sep_id || id == cfg->mask_id || id == cfg->bos_id ||
        id == cfg->eos_id)
        return true;
    for (int i = 0; i < cfg->n_special; ++i)
        if (cfg->special_ids[i] == id) return true;
    return false;
}

static ag_status check_prob(const char *who, const char *name, float p) {
    if (!(p >= 0.0f && p <= 1.0f)) return ag_fail(AG_ERR_ARG, "%s: config %s = %g is not a probability in [0, 1]", who, name, p);
    return AG_OK;
}

ag_status collate_check_config(const recipe_collate_config *cfg, const char *who, const char *needs) {
    if (!cfg) return ag_fail(AG_ERR_ARG, "%s: config is NULL", who);
    if (cfg->vocab_size < 2) return ag_fail(AG_ERR_ARG, "%s: config vocab_size = %d must be >= 2", who, cfg->vocab_size);
    static const struct { char key; const char *name; size_t off; } ids[] = {
        {'p', "pad_id", offsetof(recipe_collate_config, pad_id)},   {'c', "cls_id", offsetof(recipe_collate_config, cls_id)},
        {'s', "sep_id", offsetof(recipe_collate_config, sep_id)},   {'m', "mask_id", offsetof(recipe_collate_config, mask_id)},
        {'b', "bos_id", offsetof(recipe_collate_config, bos_id)},   {'e', "eos_id", offsetof(recipe_collate_config, eos_id)},
    };
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; ++k) {
        const int32_t v = *(const int32_t *)((const char *)cfg + ids[k].off);
        if (strchr(needs, ids[k].key) && (v < 0 || v >= cfg->vocab_size))
            return ag_fail(AG_ERR_ARG, "%s: config %s = %d must be an id in [0, %d)", who, ids[k].name, v, cfg->vocab_size);
    }
    ag_status st;
    if ((st = check_prob(who, "mlm_probability", cfg->mlm_probability)) ||
        (st = check_prob(who, "mask_replace_prob", cfg->mask_replace_prob)) ||
        (st = check_prob(who, "random_replace_prob", cfg->random_replace_prob)) ||
        (st = check_prob(who, "short_seq_prob", cfg->short_seq_prob)) ||
        (st = check_prob(who, "next_sentence_prob", cfg->next_sentence_prob)) ||
        (st = check_prob(who, "electra_mask_prob", cfg->electra_mask_prob)) ||
        (st = check_prob(who, "electra_mask_replace", cfg->electra_mask_replace)) ||
        (st = check_prob(who, "permute_sentence_ratio", cfg->permute_sentence_ratio)) ||
        (st = check_prob(who, "delete_ratio", cfg->delete_ratio)) || (st = check_prob(who, "mask_ratio", cfg->mask_ratio)) ||
        (st = check_prob(who, "random_ratio", cfg->random_ratio)) || (st = check_prob(who, "insert_ratio", cfg->insert_ratio)) ||
        (st = check_prob(who, "rotate_ratio", cfg->rotate_ratio)))
        return st;
    if (cfg->mask_replace_prob + cfg->random_replace_prob > 1.0f)
        return ag_fail(AG_ERR_ARG, "%s: config mask_replace_prob + random_replace_prob = %g is more than 1", who,
                       cfg->mask_replace_prob + cfg->random_replace_prob);
    if (cfg->whole_word_mask && !cfg->is_continuation)
        return ag_fail(AG_ERR_ARG, "%s: config whole_word_mask needs is_continuation (which ids are \"##\" pieces)", who);
    if (cfg->n_special > 0 && !cfg->special_ids)
        return ag_fail(AG_ERR_ARG, "%s: config n_special = %d but special_ids is NULL", who, cfg->n_special);
    return AG_OK;
}

ag_status collate_masking(const recipe_collate_config *cfg, const char *who, recipe_mlm_masking own_default,
                          bool batch_level, recipe_mlm_masking *how) {
    *how = cfg->masking == RECIPE_MASK_DEFAULT ? own_default : cfg->masking;
    switch (*how) {
    case RECIPE_MASK_TOKENS: return AG_OK;
    case RECIPE_MASK_NGRAM:
        if (cfg->max_ngram < 1)
            return ag_fail(AG_ERR_ARG, "%s: config max_ngram = %d must be >= 1 for n-gram masking (ALBERT's 3)", who,
                           cfg->max_ngram);
        return AG_OK;
    case RECIPE_MASK_SMOOTHED:
        if (!batch_level)
            return ag_fail(AG_ERR_ARG, "%s: config masking = smoothed chooses positions over a whole batch of "
                           "[CLS] ... [SEP] rows; only the mlm collator does it", who);
        if (!cfg->token_counts)
            return ag_fail(AG_ERR_ARG, "%s: config token_counts is NULL; smoothed masking needs each id's count in the "
                           "training corpus (hint: recipe_token_counts)", who);
        if (!(cfg->mlm_smoothing >= 0.0f && isfinite(cfg->mlm_smoothing)))
            return ag_fail(AG_ERR_ARG, "%s: config mlm_smoothing = %g must be a finite number >= 0 (DistilBERT's 0.7)",
                           who, cfg->mlm_smoothing);
        for (int32_t v = 0; v < cfg->vocab_size; ++v)
            if (cfg->token_counts[v] < 0)
                return ag_fail(AG_ERR_ARG, "%s: config token_counts[%d] = %lld is negative", who, v,
                               (long long)cfg->token_counts[v]);
        return AG_OK;
    default: break;
    }
    return ag_fail(AG_ERR_ARG, "%s: config masking = %d is not a recipe_mlm_masking", who, (int)cfg->masking);
}

ag_status recipe_token_counts(int64_t *counts, const recipe_corpus *c, int32_t vocab_size) {
    if (!counts || !c || !c->tokens) return ag_fail(AG_ERR_ARG, "token counts: counts, the corpus or its tokens is NULL");
    if (vocab_size < 1) return ag_fail(AG_ERR_ARG, "token counts: vocab_size = %d must be >= 1", vocab_size);
    memset(counts, 0, (size_t)vocab_size * sizeof *counts);
    for (int64_t i = 0; i < c->n_tokens; ++i) {
        if (c->tokens[i] < 0 || c->tokens[i] >= vocab_size) {
            return ag_fail(AG_ERR_ARG, "token counts: tokens[%lld] = %d is outside the vocabulary [0, %d)", (long long)i,
                           c->tokens[i], vocab_size);
        }
        counts[c->tokens[i]]++;
    }
    return AG_OK;
}

/* Offsets must run 0 = o[0] < ... <= o[n] = total (empty ranges allowed). */
static ag_status check_offsets(const char *name, const int64_t *o, int64_t n, int64_t total) {
    if (!o) return ag_fail(AG_ERR_ARG, "corpus: %s is NULL", name);
    if (n < 1) return ag_fail(AG_ERR_ARG, "corpus: %s has no ranges (count %lld)", name, (long long)n);
    if (o[0] != 0) return ag_fail(AG_ERR_ARG, "corpus: %s[0] = %lld, must be 0", name, (long long)o[0]);
    for (int64_t i = 1; i <= n; ++i)
        if (o[i] < o[i - 1])
            return ag_fail(AG_ERR_ARG, "corpus: %s[%lld] = %lld is less than %s[%lld] = %lld", name, (long long)i,
                           (long long)o[i], name, (long long)(i - 1), (long long)o[i - 1]);
    if (o[n] != total)
        return ag_fail(AG_ERR_ARG, "corpus: %s[%lld] = %lld, must be n_tokens = %lld", name, (long long)n, (long long)o[n],
                       (long long)total);
    return AG_OK;
}

ag_status recipe_corpus_check(const recipe_corpus *c, const recipe_collate_config *cfg) {
    if (!c || !c->tokens || c->n_tokens < 1) return ag_fail(AG_ERR_ARG, "corpus: no tokens");
    ag_status st = check_offsets("doc_start", c->doc_start, c->n_docs, c->n_tokens);
    if (st) return st;
    if (c->sent_start) {
        if ((st = check_offsets("sent_start", c->sent_start, c->n_sents, c->n_tokens))) return st;
        /* every document boundary must also be a sentence boundary */
        int64_t s = 0;
        for (int64_t d = 0; d <= c->n_docs; ++d) {
            while (s < c->n_sents && c->sent_start[s] < c->doc_start[d]) ++s;
            if (c->sent_start[s] != c->doc_start[d] && !(d == c->n_docs && s == c->n_sents))
                return ag_fail(AG_ERR_ARG, "corpus: doc_start[%lld] = %lld is not a sentence boundary (a sentence crosses it)",
                               (long long)d, (long long)c->doc_start[d]);
        }
    }
    for (int64_t i = 0; i < c->n_tokens; ++i)
        if (c->tokens[i] < 0 || c->tokens[i] >= cfg->vocab_size)
            return ag_fail(AG_ERR_ARG, "corpus: tokens[%lld] = %d is outside the vocabulary [0, %d)", (long long)i,
                           c->tokens[i], cfg->vocab_size);
    return AG_OK;
}

const int64_t *collate_sent_starts(const recipe_corpus *c, int64_t *n_sents) {
    *n_sents = c->sent_start ? c->n_sents : c->n_docs;
    return c->sent_start ? c->sent_start : c->doc_start;
}

/* The first sentence starting at or after token position pos. */
static int64_t lower_bound(const int64_t *o, int64_t n, int64_t pos) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (o[mid] < pos) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

void collate_doc_sentences(const recipe_corpus *c, int64_t d, int64_t *s0, int64_t *s1) {
    int64_t n;
    const int64_t *o = collate_sent_starts(c, &n);
    /* empty sentences at the document's start are skipped by the search; the
     * range is those whose start lies in [doc_start[d], doc_start[d+1]) */
    *s0 = lower_bound(o, n, c->doc_start[d]);
    *s1 = lower_bound(o, n, c->doc_start[d + 1]);
}

int64_t collate_random_doc(const recipe_corpus *c, recipe_rng *r) {
    int64_t d = recipe_rng_int(r, 0, c->n_docs - 1);
    for (int64_t k = 0; k < c->n_docs && c->doc_start[d + 1] == c->doc_start[d]; ++k) d = (d + 1) % c->n_docs;
    return d;
}

int64_t collate_pack_sentences(const recipe_corpus *c, int64_t d, int64_t s, int64_t max, int32_t *dst) {
    int64_t n_s, s0, s1, n = 0;
    const int64_t *o = collate_sent_starts(c, &n_s);
    collate_doc_sentences(c, d, &s0, &s1);
    for (; s < s1; ++s) {
        int64_t len = o[s + 1] - o[s];
        if (n + len > max) {
            if (n == 0) len = max; /* a first sentence longer than the window is cut */
            else break;
        }
        memcpy(dst + n, c->tokens + o[s], (size_t)len * sizeof *dst);
        n += len;
    }
    return n;
}

/* ---------------------------------------------------------------- batch fields */

int32_t *collate_field(recipe_batch *out, const char *name, int rows, int cols, int32_t fill) {
    if (out->n == RECIPE_BATCH_MAX) {
        ag_fail(AG_ERR_ARG, "collate: more than %d batch fields", RECIPE_BATCH_MAX);
        return NULL;
    }
    const int64_t n = (int64_t)rows * cols;
    int32_t *data = malloc((size_t)n * sizeof *data);
    if (!data) {
        ag_fail(AG_ERR_MEMORY, "collate: out of memory for field \"%s\" [%d][%d]", name, rows, cols);
        return NULL;
    }
    for (int64_t i = 0; i < n; ++i) data[i] = fill;
    snprintf(out->name[out->n], sizeof out->name[out->n], "%s", name);
    /* a [B] label (next_sentence_label) is 1-D, as the models want it */
    out->field[out->n] = cols == 1 && strstr(name, "_label") ? ag_ints_wrap(data, 1, AG_SHAPE(rows))
                                                            : ag_ints_wrap(data, 2, AG_SHAPE(rows, cols));
    out->n++;
    return data;
}
