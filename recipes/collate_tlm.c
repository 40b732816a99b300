/* collate_tlm.c: XLM's translation language modelling, transcribed from
 * facebookresearch/XLM (xlm/trainer.py: mlm_step with two languages,
 * concat_batches with reset_positions=True, mask_out).
 *
 * A pair (x, y) is laid out as XLM's batches hold sentences, each between
 * </s> markers, and concatenated: </s> x </s> </s> y </s>. langs holds
 * src_lang over the first part and tgt_lang over the second; position_ids
 * count 0, 1, ... over the first part and start again at 0 with the second,
 * so the model must align the two through attention, not position. Then MLM
 * over the whole row with XLM's word_pred = 0.15 and pred_probs 0.8 / 0.1 /
 * 0.1 (mask, keep, random; the same rule as collate_mlm.c, whose config
 * fields these are). XLM excludes only padding and the first position;
 * here no special id is ever predicted. XLM drops pairs longer than its
 * max_len; here the longer sentence is cut at its end until the pair fits
 * T, so every pair is used. */
#include "collate_internal.h"

#include <stdlib.h>
#include <string.h>

ag_status recipe_collate_tlm(recipe_batch *out, const recipe_parallel *p, const recipe_collate_config *cfg, int B, int T,
                             uint64_t seed, uint64_t index) {
    memset(out, 0, sizeof *out);
    ag_status st;
    recipe_mlm_masking how;
    if ((st = collate_check_config(cfg, "collate tlm", "pem")) ||
        (st = collate_masking(cfg, "collate tlm", RECIPE_MASK_TOKENS, false, &how)))
        return st;
    if (!p || !p->src || !p->tgt || !p->src_start || !p->tgt_start || p->n_pairs < 1)
        return ag_fail(AG_ERR_ARG, "collate tlm: the parallel corpus is empty or has a NULL array");
    if (B < 1 || T < 6) return ag_fail(AG_ERR_ARG, "collate tlm: B = %d, T = %d; need B >= 1 and T >= 6", B, T);
    if (p->src_start[0] != 0 || p->tgt_start[0] != 0)
        return ag_fail(AG_ERR_ARG, "collate tlm: src_start[0] and tgt_start[0] must be 0");
    for (int64_t i = 0; i < p->n_pairs; ++i) {
        if (p->src_start[i + 1] < p->src_start[i] || p->tgt_start[i + 1] < p->tgt_start[i])
            return ag_fail(AG_ERR_ARG, "collate tlm: pair %lld: src_start or tgt_start decreases", (long long)i);
    }
    for (int64_t i = 0; i < p->src_start[p->n_pairs]; ++i)
        if (p->src[i] < 0 || p->src[i] >= cfg->vocab_size)
            return ag_fail(AG_ERR_ARG, "collate tlm: src[%lld] = %d is outside [0, %d)", (long long)i, p->src[i], cfg->vocab_size);
    for (int64_t i = 0; i < p->tgt_start[p->n_pairs]; ++i)
        if (p->tgt[i] < 0 || p->tgt[i] >= cfg->vocab_size)
            return ag_fail(AG_ERR_ARG, "collate tlm: tgt[%lld] = %d is outside [0, %d)", (long long)i, p->tgt[i], cfg->vocab_size);
    int32_t *ids = collate_field(out, "input_ids", B, T, cfg->pad_id);
    int32_t *att = ids ? collate_field(out, "attention_mask", B, T, 0) : NULL;
    int32_t *labels = att ? collate_field(out, "labels", B, T, -100) : NULL;
    int32_t *langs = labels ? collate_field(out, "langs", B, T, p->tgt_lang) : NULL;
    int32_t *pos = langs ? collate_field(out, "position_ids", B, T, 0) : NULL;
    int64_t *scratch = pos ? malloc(3 * (size_t)T * sizeof *scratch) : NULL;
    if (!scratch) {
        if (pos) ag_fail(AG_ERR_MEMORY, "collate tlm: out of memory");
        recipe_batch_free(out);
        return ag_error_status();
    }
    for (int b = 0; b < B; ++b) {
        recipe_rng r = recipe_rng_example(seed, index, b);
        const int64_t i = recipe_rng_int(&r, 0, p->n_pairs - 1);
        const int32_t *x = p->src + p->src_start[i], *y = p->tgt + p->tgt_start[i];
        int64_t nx = p->src_start[i + 1] - p->src_start[i], ny = p->tgt_start[i + 1] - p->tgt_start[i];
        while (nx + ny + 4 > T) { /* cut the longer one (x on a tie) */
            if (nx >= ny) --nx;
            else --ny;
        }
        int32_t *row = ids + (int64_t)b * T, *lg = langs + (int64_t)b * T, *ps = pos + (int64_t)b * T;
        int64_t n = 0;
        row[n++] = cfg->eos_id;
        memcpy(row + n, x, (size_t)nx * sizeof *row), n += nx;
        row[n++] = cfg->eos_id;
        const int64_t second = n;
        row[n++] = cfg->eos_id;
        memcpy(row + n, y, (size_t)ny * sizeof *row), n += ny;
        row[n++] = cfg->eos_id;
        /* positions restart at the second sentence, and padding continues
         * its count as concat_batches leaves it */
        for (int64_t t = 0; t < T; ++t) {
            lg[t] = t < second ? p->src_lang : p->tgt_lang;
            ps[t] = (int32_t)(t < second ? t : t - second);
            att[(int64_t)b * T + t] = t < n;
        }
        collate_mask_row(row, labels + (int64_t)b * T, n, cfg, how, &r, scratch);
    }
    free(scratch);
    return AG_OK;
}
