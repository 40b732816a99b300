/* collate_denoise.c: BART's noising, transcribed from fairseq's
 * fairseq/data/denoising_dataset.py (DenoisingDataset: permute_sentences,
 * add_whole_word_mask, add_insertion_noise, add_rolling_noise), with BART's
 * pretraining options as defaults: --mask 0.3 --mask-random 0.1
 * --mask-length span-poisson --poisson-lambda 3 --replace-length 1
 * --permute-sentences 1 --rotate 0 --insert 0 (the paper's lambda = 3).
 *
 * One document, <bos> w_1 ... w_n <eos>, in this order (fairseq's, with token
 * deletion added second):
 *   sentence permutation: ceil(num_sentences * p) sentences, drawn at random,
 *     exchange places by a random permutation among themselves;
 *   token deletion (the paper's; fairseq's --mask-length subword
 *     --replace-length 0): ceil(n * p) random tokens removed;
 *   text infilling: a budget num_to_mask = ceil(n * mask_ratio) tokens;
 *     span lengths drawn from Poisson(lambda) until they sum past the budget,
 *     the last cut to fit; zero-length spans become inserted masks; each
 *     other span starts at a distinct random token, its first token becomes
 *     <mask> (a random id in [1, V) with random_ratio) and the rest of the
 *     span is deleted; a span stops before <eos>; spans may overlap;
 *   insertion: ceil(m * p) <mask>s (ceil(k * random_ratio) of them random
 *     ids) at random places between <bos> and <eos>;
 *   rotation: with rotate_ratio, w_offset .. w_n w_1 .. w_offset-1 for a
 *     random offset.
 * The counts are computed as fairseq computes them, in float32 where it
 * multiplies a tensor (the infilling and deletion budgets) and in double
 * where it uses Python numbers (the others); cfg's floats are turned back
 * into the Python doubles they were written as (0.1f -> 0.1). */
#include "collate_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* torch.randperm(n)[:k] into out [k]; perm [n] is scratch. */
static void randperm_prefix(int64_t *out, int64_t k, int64_t n, int64_t *perm, recipe_rng *r) {
    for (int64_t i = 0; i < n; ++i) perm[i] = i;
    /* a partial Fisher-Yates draws the first k of a uniform permutation */
    for (int64_t i = 0; i < k; ++i) {
        int64_t j = recipe_rng_int(r, i, n - 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
        out[i] = perm[i];
    }
}

/* Poisson(lambda) by inversion of fairseq's table: P(k) = e^-l l^k / k! for
 * k = 0, 1, ... up to the first P(k) < 1e-7 (at most 128 entries), which
 * torch.distributions.Categorical then normalises. */
static int64_t poisson(double lambda, recipe_rng *r) {
    double ps[128], total = 0, pk = exp(-lambda);
    int n = 0;
    while (n < 128) {
        ps[n++] = pk, total += pk;
        if (pk < 0.0000001) break;
        pk *= lambda / n;
    }
    double u = recipe_rng_uniform(r) * total, cdf = 0;
    for (int k = 0; k < n; ++k) {
        cdf += ps[k];
        if (u < cdf) return k;
    }
    return n - 1;
}

int64_t recipe_denoise_span_lengths(int64_t *lengths, int64_t cap, int64_t num_to_mask, float lambda, recipe_rng *r) {
    /* fairseq samples num_to_mask at a time until the sum reaches the budget,
     * then keeps the prefix that reaches it; drawing one at a time gives the
     * same prefix distribution */
    int64_t n = 0, sum = 0;
    while (sum < num_to_mask && n < cap) {
        lengths[n] = poisson(collate_py_double(lambda), r);
        sum += lengths[n++];
    }
    if (n > 0 && sum > num_to_mask) lengths[n - 1] -= sum - num_to_mask; /* trim to the budget */
    if (n > 0 && sum < num_to_mask) lengths[n - 1] += num_to_mask - sum; /* cap reached: never in practice */
    return n;
}

/* The working row: ids and, for each, the source position it came from (-1
 * for an inserted one). */
typedef struct {
    int32_t *id;
    int64_t *from;
    int64_t n;
} row_buf;

/* add_insertion_noise(tokens, p) with p a Python double. */
static void insert_noise(row_buf *w, row_buf *tmp, double p, const recipe_collate_config *cfg, recipe_rng *r,
                         int64_t *scratch) {
    const int64_t m = w->n, k = (int64_t)ceil((double)m * p);
    if (k <= 0 || m < 2) return;
    int64_t *where = scratch, *perm = scratch + k;
    randperm_prefix(where, k, m + k - 2, perm, r);
    uint8_t *noise = (uint8_t *)(perm + m + k); /* [m + k] */
    memset(noise, 0, (size_t)(m + k));
    const int64_t num_random = (int64_t)ceil((double)k * collate_py_double(cfg->random_ratio));
    for (int64_t i = 0; i < k; ++i) {
        const int64_t at = where[i] + 1;
        noise[at] = 1;
        tmp->id[at] = i < num_random ? (int32_t)recipe_rng_int(r, 1, cfg->vocab_size - 1) : cfg->mask_id;
        tmp->from[at] = -1;
    }
    for (int64_t i = 0, j = 0; i < m + k; ++i)
        if (!noise[i]) tmp->id[i] = w->id[j], tmp->from[i] = w->from[j], ++j;
    tmp->n = m + k;
    row_buf t = *w;
    *w = *tmp, *tmp = t;
}

/* Keeps the positions with keep[i] (compaction in place). */
static void compact(row_buf *w, const uint8_t *keep) {
    int64_t j = 0;
    for (int64_t i = 0; i < w->n; ++i)
        if (keep[i]) w->id[j] = w->id[i], w->from[j] = w->from[i], ++j;
    w->n = j;
}

int64_t recipe_denoise_row(int32_t *dst, const int32_t *src, int64_t n, const int64_t *sent, int64_t n_sent,
                           const recipe_collate_config *cfg, recipe_rng *r, uint8_t *covered) {
    const int64_t cap = 4 * n + 8;
    row_buf w = {malloc((size_t)cap * sizeof(int32_t)), malloc((size_t)cap * sizeof(int64_t)), n};
    row_buf tmp = {malloc((size_t)cap * sizeof(int32_t)), malloc((size_t)cap * sizeof(int64_t)), 0};
    int64_t *scratch = malloc((size_t)(4 * cap) * sizeof(int64_t));
    uint8_t *keep = malloc((size_t)cap);
    if (!w.id || !w.from || !tmp.id || !tmp.from || !scratch || !keep) {
        free(w.id), free(w.from), free(tmp.id), free(tmp.from), free(scratch), free(keep);
        ag_fail(AG_ERR_MEMORY, "denoise: out of memory for a row of %lld ids", (long long)n);
        return -1;
    }
    for (int64_t i = 0; i < n; ++i) w.id[i] = src[i], w.from[i] = i;
    if (covered) memset(covered, 0, (size_t)n);

    /* sentence permutation: sentence k is [sent[k], sent[k+1]), the last ends before <eos> */
    if (cfg->permute_sentence_ratio > 0 && n_sent > 1) {
        const int64_t m = (int64_t)ceil((double)n_sent * 2 * collate_py_double(cfg->permute_sentence_ratio) / 2.0);
        int64_t *subst = scratch, *perm = scratch + n_sent, *order = scratch + 2 * n_sent, *shuf = scratch + 3 * n_sent;
        randperm_prefix(subst, m, n_sent, perm, r);
        for (int64_t k = 0; k < n_sent; ++k) order[k] = k;
        randperm_prefix(shuf, m, m, perm, r);
        for (int64_t k = 0; k < m; ++k) order[subst[k]] = subst[shuf[k]];
        int64_t at = 1;
        for (int64_t k = 0; k < n_sent; ++k) {
            const int64_t s = order[k], from = sent[s], to = s + 1 < n_sent ? sent[s + 1] : n - 1;
            for (int64_t i = from; i < to; ++i) tmp.id[at] = src[i], tmp.from[at] = i, ++at;
        }
        for (int64_t i = 1; i < at; ++i) w.id[i] = tmp.id[i], w.from[i] = tmp.from[i];
    }

    /* token deletion: ceil(float32(n_inner) * p) of the inner tokens */
    if (cfg->delete_ratio > 0 && w.n > 2) {
        const int64_t inner = w.n - 2, k = (int64_t)ceilf((float)inner * cfg->delete_ratio);
        randperm_prefix(scratch, k, inner, scratch + k, r);
        memset(keep, 1, (size_t)w.n);
        for (int64_t i = 0; i < k; ++i) {
            keep[scratch[i] + 1] = 0;
            if (covered && w.from[scratch[i] + 1] >= 0) covered[w.from[scratch[i] + 1]] = 1;
        }
        compact(&w, keep);
    }

    /* text infilling (add_whole_word_mask with span-poisson, replace_length 1) */
    if (cfg->mask_ratio > 0 && w.n > 2) {
        const int64_t inner = w.n - 2;
        int64_t num_to_mask = (int64_t)ceilf((float)inner * cfg->mask_ratio);
        if (num_to_mask > 0) {
            int64_t *len = scratch, *starts = scratch + cap, *perm = scratch + 2 * cap;
            /* at most n + 4 spans (zero-length ones are inserts and must fit the row) */
            const int64_t n_spans = recipe_denoise_span_lengths(len, n + 4, num_to_mask, cfg->poisson_lambda, r);
            /* zero-length spans are inserts, done after */
            int64_t n_nz = 0;
            for (int64_t k = 0; k < n_spans; ++k)
                if (len[k] > 0) len[n_nz++] = len[k];
            const int64_t num_inserts = n_spans - n_nz;
            if (n_nz > 0) {
                randperm_prefix(starts, n_nz, inner, perm, r);
                memset(keep, 1, (size_t)w.n);
                /* mask_random for every span first, as fairseq draws the vector */
                uint8_t *rnd = (uint8_t *)(perm + inner);
                const double rr = collate_py_double(cfg->random_ratio);
                for (int64_t k = 0; k < n_nz; ++k) rnd[k] = recipe_rng_uniform(r) < rr;
                for (int64_t k = 0; k < n_nz; ++k) {
                    int64_t at = starts[k] + 1;
                    w.id[at] = rnd[k] ? (int32_t)recipe_rng_int(r, 1, cfg->vocab_size - 1) : cfg->mask_id;
                    if (covered && w.from[at] >= 0) covered[w.from[at]] = 1;
                    /* the span goes on for len - 1 more tokens, never onto <eos> */
                    for (int64_t rem = len[k] - 1; rem > 0 && at + 1 < w.n - 1; --rem) {
                        ++at;
                        keep[at] = 0;
                        if (covered && w.from[at] >= 0) covered[w.from[at]] = 1;
                    }
                }
                compact(&w, keep);
            }
            if (num_inserts > 0) insert_noise(&w, &tmp, (double)num_inserts / (double)w.n, cfg, r, scratch);
        }
    }

    if (cfg->insert_ratio > 0) insert_noise(&w, &tmp, collate_py_double(cfg->insert_ratio), cfg, r, scratch);

    /* document rotation: offset = randint(1, max(1, m - 1)) inclusive */
    if (cfg->rotate_ratio > 0 && recipe_rng_uniform(r) < collate_py_double(cfg->rotate_ratio)) {
        const int64_t m = w.n, off = recipe_rng_int(r, 1, m - 1 > 1 ? m - 1 : 1);
        int64_t at = 0;
        tmp.id[at++] = w.id[0];
        for (int64_t i = off; i < m - 1; ++i) tmp.id[at++] = w.id[i];
        for (int64_t i = 1; i < off && i < m - 1; ++i) tmp.id[at++] = w.id[i];
        tmp.id[at++] = w.id[m - 1];
        memcpy(w.id, tmp.id, (size_t)m * sizeof *w.id);
    }

    const int64_t out_n = w.n;
    memcpy(dst, w.id, (size_t)out_n * sizeof *dst);
    free(w.id), free(w.from), free(tmp.id), free(tmp.from), free(scratch), free(keep);
    return out_n;
}

ag_status recipe_collate_denoise(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B,
                                 int T, uint64_t seed, uint64_t index) {
    memset(out, 0, sizeof *out);
    ag_status st;
    if ((st = collate_check_config(cfg, "collate denoise", "pbem")) || (st = recipe_corpus_check(c, cfg))) return st;
    if (B < 1 || T < 3) return ag_fail(AG_ERR_ARG, "collate denoise: B = %d, T = %d; need B >= 1 and T >= 3", B, T);
    if (!(cfg->poisson_lambda > 0))
        return ag_fail(AG_ERR_ARG, "collate denoise: config poisson_lambda = %g must be > 0", cfg->poisson_lambda);
    int32_t *ids = collate_field(out, "input_ids", B, T, cfg->pad_id);
    int32_t *att = ids ? collate_field(out, "attention_mask", B, T, 0) : NULL;
    int32_t *labels = att ? collate_field(out, "labels", B, T, -100) : NULL;
    int32_t *clean = labels ? malloc((size_t)T * sizeof *clean) : NULL;
    int32_t *noisy = clean ? malloc((size_t)(4 * T + 8) * sizeof *noisy) : NULL;
    int64_t *sent = noisy ? malloc((size_t)T * sizeof *sent) : NULL;
    if (!sent) {
        if (labels) ag_fail(AG_ERR_MEMORY, "collate denoise: out of memory");
        free(clean), free(noisy);
        recipe_batch_free(out);
        return ag_error_status();
    }
    int64_t n_s;
    const int64_t *o = collate_sent_starts(c, &n_s);
    for (int b = 0; b < B; ++b) {
        recipe_rng r = recipe_rng_example(seed, index, b);
        const int64_t d = collate_random_doc(c, &r);
        int64_t s0, s1;
        collate_doc_sentences(c, d, &s0, &s1);
        const int64_t s = recipe_rng_int(&r, s0, s1 - 1);
        /* <bos> whole sentences <eos> (fairseq's complete_doc blocks) */
        int64_t n = collate_pack_sentences(c, d, s, T - 2, clean + 1);
        /* the packed sentences' starts, as offsets into clean */
        int64_t n_sent = 0;
        for (int64_t k = s, at = 1; k < s1 && at < n + 1; ++k) {
            if (o[k + 1] == o[k]) continue;
            sent[n_sent++] = at;
            at += o[k + 1] - o[k];
        }
        clean[0] = cfg->bos_id;
        clean[n + 1] = cfg->eos_id;
        n += 2;
        int64_t m = recipe_denoise_row(noisy, clean, n, sent, n_sent, cfg, &r, NULL);
        if (m < 0) {
            free(clean), free(noisy), free(sent);
            recipe_batch_free(out);
            return ag_error_status();
        }
        if (m > T) noisy[T - 1] = cfg->eos_id, m = T; /* insertions can outgrow the row: cut, <eos> last */
        memcpy(ids + (int64_t)b * T, noisy, (size_t)m * sizeof *ids);
        for (int64_t t = 0; t < m; ++t) att[(int64_t)b * T + t] = 1;
        memcpy(labels + (int64_t)b * T, clean, (size_t)n * sizeof *labels);
    }
    free(clean), free(noisy), free(sent);
    return AG_OK;
}
