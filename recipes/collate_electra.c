/* collate_electra.c: ELECTRA's two batches, transcribed from
 * google-research/electra (pretrain/pretrain_helpers.py: mask,
 * sample_from_softmax; run_pretraining.py: _get_fake_data).
 *
 * Generator (mask): candidates are the tokens other than [CLS], [SEP], pad
 * and the other specials; num_to_predict = max(1, min(max_predictions,
 * round(n * electra_mask_prob))) with n the tokens of the row (attention 1,
 * [CLS]/[SEP] included); that many positions are drawn uniformly among the
 * candidates *with replacement* (tf.random.categorical), so a position drawn
 * twice is masked once; each becomes [MASK] with electra_mask_replace = 0.85
 * and keeps its id otherwise (ELECTRA has no random replacement).
 * Discriminator (_get_fake_data): at every masked position a token is drawn
 * from softmax(logits / temperature) by the Gumbel-max trick,
 * argmax(logits / temperature - log(-log(u + 1e-9) + 1e-9)), u ~ U[0,1);
 * labels are 1 where the drawn token differs from the original, 0 elsewhere,
 * and the loss runs over every token with attention_mask 1.
 * Examples are built as mlm's: [CLS] sentences [SEP] from a random place. */
#include "collate_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ag_status recipe_collate_electra(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B,
                                 int T, uint64_t seed, uint64_t index) {
    memset(out, 0, sizeof *out);
    ag_status st;
    if ((st = collate_check_config(cfg, "collate electra", "pcsm")) || (st = recipe_corpus_check(c, cfg))) return st;
    if (B < 1 || T < 3) return ag_fail(AG_ERR_ARG, "collate electra: B = %d, T = %d; need B >= 1 and T >= 3", B, T);
    int32_t *ids = collate_field(out, "input_ids", B, T, cfg->pad_id);
    int32_t *att = ids ? collate_field(out, "attention_mask", B, T, 0) : NULL;
    int32_t *types = att ? collate_field(out, "token_type_ids", B, T, 0) : NULL;
    int32_t *labels = types ? collate_field(out, "labels", B, T, -100) : NULL;
    int64_t *cand = labels ? malloc((size_t)T * sizeof *cand) : NULL;
    if (!cand) {
        if (labels) ag_fail(AG_ERR_MEMORY, "collate electra: out of memory");
        recipe_batch_free(out);
        return ag_error_status();
    }
    for (int b = 0; b < B; ++b) {
        recipe_rng r = recipe_rng_example(seed, index, b);
        int32_t *row = ids + (int64_t)b * T, *lab = labels + (int64_t)b * T;
        const int64_t d = collate_random_doc(c, &r);
        int64_t s0, s1;
        collate_doc_sentences(c, d, &s0, &s1);
        int64_t n = collate_pack_sentences(c, d, recipe_rng_int(&r, s0, s1 - 1), T - 2, row + 1);
        row[0] = cfg->cls_id;
        row[n + 1] = cfg->sep_id;
        n += 2;
        for (int64_t t = 0; t < n; ++t) att[(int64_t)b * T + t] = 1;
        /* the candidates [n_cand] */
        int64_t n_cand = 0;
        for (int64_t t = 0; t < n; ++t)
            if (!collate_is_special(cfg, row[t])) cand[n_cand++] = t;
        if (n_cand == 0) continue;
        int64_t k = (int64_t)collate_round_half_even((double)n * collate_py_double(cfg->electra_mask_prob));
        if (k > cfg->max_predictions) k = cfg->max_predictions;
        if (k < 1) k = 1;
        /* draw all positions first, then mask: a repeated position is one
         * [MASK] (the first draw's 85/15 decides it) */
        for (int64_t j = 0; j < k; ++j) {
            const int64_t t = cand[recipe_rng_int(&r, 0, n_cand - 1)];
            const bool to_mask = recipe_rng_uniform(&r) < cfg->electra_mask_replace;
            if (lab[t] != -100) continue;
            lab[t] = row[t];
            if (to_mask) row[t] = cfg->mask_id;
        }
    }
    free(cand);
    return AG_OK;
}

ag_status recipe_electra_discriminator(recipe_batch *out, const recipe_batch *gen, const float *logits, int64_t V,
                                       float temperature, uint64_t seed, uint64_t index) {
    memset(out, 0, sizeof *out);
    const ag_ints *gids = recipe_batch_get(gen, "input_ids"), *gatt = recipe_batch_get(gen, "attention_mask"),
                  *gtyp = recipe_batch_get(gen, "token_type_ids"), *glab = recipe_batch_get(gen, "labels");
    if (!gids || !gatt || !glab)
        return ag_fail(AG_ERR_ARG, "electra discriminator: the generator batch needs input_ids, attention_mask and labels");
    if (gids->ndim != 2 || glab->numel != gids->numel || gatt->numel != gids->numel)
        return ag_fail(AG_ERR_ARG, "electra discriminator: the generator batch's fields are not all [B][T]");
    if (!logits || V < 1) return ag_fail(AG_ERR_ARG, "electra discriminator: logits NULL or V = %lld < 1", (long long)V);
    if (!(temperature > 0)) return ag_fail(AG_ERR_ARG, "electra discriminator: temperature = %g must be > 0", temperature);
    const int B = (int)gids->shape[0], T = (int)gids->shape[1];
    int32_t *ids = collate_field(out, "input_ids", B, T, 0);
    int32_t *att = ids ? collate_field(out, "attention_mask", B, T, 0) : NULL;
    int32_t *types = att ? collate_field(out, "token_type_ids", B, T, 0) : NULL;
    int32_t *labels = types ? collate_field(out, "labels", B, T, 0) : NULL;
    if (!labels) {
        recipe_batch_free(out);
        return ag_error_status();
    }
    memcpy(ids, gids->data, (size_t)gids->numel * sizeof *ids);
    memcpy(att, gatt->data, (size_t)gids->numel * sizeof *att);
    if (gtyp && gtyp->numel == gids->numel) memcpy(types, gtyp->data, (size_t)gids->numel * sizeof *types);
    for (int b = 0; b < B; ++b) {
        /* a stream apart from the generator's: the example's stream of a
         * derived seed */
        recipe_rng r = recipe_rng_example(ag_rng_u64(seed, 0x454C45435452414Full), index, b); /* "ELECTRA" */
        for (int t = 0; t < T; ++t) {
            const int64_t e = (int64_t)b * T + t;
            const int32_t orig = glab->data[e];
            if (orig == -100) continue;
            /* Gumbel-max over logits[b,t,:] / temperature */
            const float *l = logits + e * V;
            double best = -INFINITY;
            int32_t pick = 0;
            for (int64_t v = 0; v < V; ++v) {
                const double u = recipe_rng_uniform(&r);
                const double g = (double)l[v] / temperature - log(-log(u + 1e-9) + 1e-9);
                if (g > best) best = g, pick = (int32_t)v;
            }
            ids[e] = pick;
            labels[e] = pick != orig;
        }
    }
    return AG_OK;
}
