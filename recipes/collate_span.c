/* collate_span.c: T5's span corruption, transcribed from Hugging Face's
 * examples/flax/language-modeling/run_t5_mlm_flax.py (itself a transcription
 * of t5.data.preprocessors: random_spans_noise_mask, noise_span_to_unique_
 * sentinel, nonnoise_span_to_unique_sentinel, and
 * compute_input_and_target_lengths).
 *
 * A window of tokens_length ids (tokens_length from the inputs length asked
 * for) gets a noise mask: num_noise = round(L * density) (clamped to
 * [1, L-1]), num_spans = max(1, round(num_noise / mean_span)); the noise
 * tokens and the non-noise tokens are each cut into num_spans non-empty
 * segments at random (_random_segmentation: a shuffled 0/1 row of
 * num_spans - 1 cut points), and the spans interleave, non-noise first.
 * input  = the non-noise tokens, each noise span replaced by one sentinel;
 * target = the noise tokens, each preceded by its sentinel;
 * sentinels count down from <extra_id_0> = sentinel_first (T5's
 * len(tokenizer) - 1), and both end with eos. round() is numpy's (half to
 * even). */
#include "collate_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The lengths of an example of tokens_length raw ids after corruption. */
static void corrupted_lengths(int tokens_length, double density, double mean, int *inputs, int *targets) {
    const int num_noise = (int)collate_round_half_even(tokens_length * density);
    const int num_nonnoise = tokens_length - num_noise;
    const int num_spans = (int)collate_round_half_even(num_noise / mean);
    *inputs = num_nonnoise + num_spans + 1;
    *targets = num_noise + num_spans + 1;
}

ag_status recipe_t5_lengths(int inputs_length, float noise_density, float mean_noise_span_length, int *tokens_length,
                            int *targets_length) {
    if (inputs_length < 2) return ag_fail(AG_ERR_ARG, "t5 lengths: inputs_length = %d must be >= 2", inputs_length);
    if (!(noise_density > 0 && noise_density < 1))
        return ag_fail(AG_ERR_ARG, "t5 lengths: noise_density = %g must be in (0, 1)", noise_density);
    if (!(mean_noise_span_length >= 1))
        return ag_fail(AG_ERR_ARG, "t5 lengths: mean_noise_span_length = %g must be >= 1", mean_noise_span_length);
    const double density = collate_py_double(noise_density), mean = collate_py_double(mean_noise_span_length);
    /* the longest raw window whose corrupted input still fits */
    int L = inputs_length, in, tg;
    for (;;) {
        corrupted_lengths(L + 1, density, mean, &in, &tg);
        if (in > inputs_length) break;
        ++L;
    }
    corrupted_lengths(L, density, mean, &in, &tg);
    /* T5: at density 0.5 the targets could outgrow the inputs; one shorter */
    if (density == 0.5 && tg > in) --L, --tg;
    *tokens_length = L;
    *targets_length = tg;
    return AG_OK;
}

/* _random_segmentation: num_items split into num_segments non-empty runs;
 * lengths [num_segments]. cut [num_items] is scratch. */
static void random_segmentation(int *lengths, int num_items, int num_segments, uint8_t *cut, recipe_rng *r) {
    /* mask_indices = arange(num_items - 1) < num_segments - 1, shuffled */
    const int n = num_items - 1;
    for (int i = 0; i < n; ++i) cut[i] = i < num_segments - 1;
    for (int i = n - 1; i > 0; --i) {
        int j = (int)recipe_rng_int(r, 0, i);
        uint8_t t = cut[i];
        cut[i] = cut[j], cut[j] = t;
    }
    /* first_in_segment = pad(mask_indices, [1, 0]); segment lengths = run counts */
    int seg = 0;
    lengths[0] = 1;
    for (int i = 0; i < n; ++i) {
        if (cut[i]) lengths[++seg] = 0;
        lengths[seg]++;
    }
}

void recipe_t5_noise_mask(uint8_t *is_noise, int length, float noise_density, float mean_noise_span_length,
                          recipe_rng *r) {
    const double density = collate_py_double(noise_density), mean = collate_py_double(mean_noise_span_length);
    int num_noise = (int)collate_round_half_even((double)length * density);
    if (num_noise < 1) num_noise = 1;
    if (num_noise > length - 1) num_noise = length - 1;
    int num_spans = (int)collate_round_half_even(num_noise / mean);
    if (num_spans < 1) num_spans = 1;
    const int num_nonnoise = length - num_noise;
    int *noise_len = malloc(2 * (size_t)num_spans * sizeof *noise_len);
    uint8_t *cut = malloc((size_t)length);
    if (!noise_len || !cut) { /* cannot happen for sane lengths; leave no noise rather than crash */
        memset(is_noise, 0, (size_t)length);
        free(noise_len), free(cut);
        return;
    }
    int *nonnoise_len = noise_len + num_spans;
    random_segmentation(noise_len, num_noise, num_spans, cut, r);
    random_segmentation(nonnoise_len, num_nonnoise, num_spans, cut, r);
    /* interleave: non-noise span k, then noise span k */
    int t = 0;
    for (int k = 0; k < num_spans; ++k) {
        for (int i = 0; i < nonnoise_len[k]; ++i) is_noise[t++] = 0;
        for (int i = 0; i < noise_len[k]; ++i) is_noise[t++] = 1;
    }
    free(noise_len), free(cut);
}

ag_status recipe_collate_span(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                              uint64_t seed, uint64_t index) {
    memset(out, 0, sizeof *out);
    ag_status st;
    int L, TT;
    if ((st = collate_check_config(cfg, "collate span", "e")) || (st = recipe_corpus_check(c, cfg)) ||
        (st = recipe_t5_lengths(T, cfg->noise_density, cfg->mean_noise_span_length, &L, &TT)))
        return st;
    if (B < 1) return ag_fail(AG_ERR_ARG, "collate span: B = %d must be >= 1", B);
    /* What random_spans_noise_mask will make of a window of L (it clamps to
     * at least one noise token and one span, which the length formula does
     * not): Hugging Face raises when that is not T and TT; so do we. */
    int n_noise = (int)collate_round_half_even(L * collate_py_double(cfg->noise_density));
    n_noise = n_noise < 1 ? 1 : n_noise > L - 1 ? L - 1 : n_noise;
    int spans = (int)collate_round_half_even(n_noise / collate_py_double(cfg->mean_noise_span_length));
    spans = spans < 1 ? 1 : spans;
    if (L - n_noise + spans + 1 != T || n_noise + spans + 1 != TT)
        return ag_fail(AG_ERR_ARG,
                       "collate span: T = %d: a window of %d corrupts to %d inputs and %d targets, not %d and %d "
                       "(T5's rounding); choose another T",
                       T, L, L - n_noise + spans + 1, n_noise + spans + 1, T, TT);
    const int max_spans = spans;
    if (cfg->sentinel_first >= cfg->vocab_size || cfg->sentinel_first - max_spans + 1 < 0)
        return ag_fail(AG_ERR_ARG, "collate span: config sentinel_first = %d cannot count down %d sentinels inside [0, %d)",
                       cfg->sentinel_first, max_spans, cfg->vocab_size);
    if (c->n_tokens < L)
        return ag_fail(AG_ERR_ARG, "collate span: the corpus has %lld tokens, fewer than one window of %d (inputs %d)",
                       (long long)c->n_tokens, L, T);
    int32_t *ids = collate_field(out, "input_ids", B, T, cfg->pad_id >= 0 ? cfg->pad_id : 0);
    int32_t *att = ids ? collate_field(out, "attention_mask", B, T, 0) : NULL;
    int32_t *labels = att ? collate_field(out, "labels", B, TT, -100) : NULL;
    uint8_t *noise = labels ? malloc((size_t)L) : NULL;
    if (!noise) {
        if (labels) ag_fail(AG_ERR_MEMORY, "collate span: out of memory");
        recipe_batch_free(out);
        return ag_error_status();
    }
    const int64_t n_chunks = c->n_tokens / L; /* group_texts drops the remainder */
    for (int b = 0; b < B; ++b) {
        recipe_rng r = recipe_rng_example(seed, index, b);
        const int32_t *w = c->tokens + recipe_rng_int(&r, 0, n_chunks - 1) * L;
        recipe_t5_noise_mask(noise, L, cfg->noise_density, cfg->mean_noise_span_length, &r);
        int32_t *in = ids + (int64_t)b * T, *tg = labels + (int64_t)b * TT;
        /* The spans alternate non-noise, noise, ..., noise. Noise span k (from
         * 0) becomes <extra_id_k> in the input; in the target <extra_id_k>
         * comes before its tokens (T5 puts it at the start of the non-noise
         * span before, which is the same place). */
        int ni = 0, nt = 0, k = 0;
        for (int t = 0; t < L; ++t) {
            if (!noise[t]) {
                in[ni++] = w[t];
                continue;
            }
            if (t == 0 || !noise[t - 1]) {
                in[ni++] = cfg->sentinel_first - k;
                tg[nt++] = cfg->sentinel_first - k;
                ++k;
            }
            tg[nt++] = w[t];
        }
        in[ni++] = cfg->eos_id;
        tg[nt++] = cfg->eos_id;
        for (int t = 0; t < ni; ++t) att[(int64_t)b * T + t] = 1;
    }
    free(noise);
    return AG_OK;
}
