/* collate_ctrl.c: CTRL's control codes (Keskar et al. 2019, section 3: "every
 * sequence ... begins with a control code"; salesforce/ctrl's training data
 * is prepared by prepending the domain's code, e.g. "Wikipedia", "Books",
 * "Reviews", to each chunk of the document).
 *
 * An example is a random document's control token (c->doc_control[d], chosen
 * by the caller from the document's source or label) followed by a random
 * chunk of T-1 consecutive ids of that document (the document cut into
 * chunks from its start, the last one shorter), padded. labels = input_ids
 * with -100 on padding: the causal LM shifts them, so the control token is
 * never a target but conditions every prediction. */
#include "collate_internal.h"

#include <string.h>

ag_status recipe_collate_ctrl(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                              uint64_t seed, uint64_t index) {
    memset(out, 0, sizeof *out);
    ag_status st;
    if ((st = collate_check_config(cfg, "collate ctrl", "p")) || (st = recipe_corpus_check(c, cfg))) return st;
    if (!c->doc_control) return ag_fail(AG_ERR_ARG, "collate ctrl: corpus doc_control is NULL (a control token per document)");
    for (int64_t d = 0; d < c->n_docs; ++d)
        if (c->doc_control[d] < 0 || c->doc_control[d] >= cfg->vocab_size)
            return ag_fail(AG_ERR_ARG, "collate ctrl: doc_control[%lld] = %d is outside [0, %d)", (long long)d,
                           c->doc_control[d], cfg->vocab_size);
    if (B < 1 || T < 2) return ag_fail(AG_ERR_ARG, "collate ctrl: B = %d, T = %d; need B >= 1 and T >= 2", B, T);
    int32_t *ids = collate_field(out, "input_ids", B, T, cfg->pad_id);
    int32_t *att = ids ? collate_field(out, "attention_mask", B, T, 0) : NULL;
    int32_t *labels = att ? collate_field(out, "labels", B, T, -100) : NULL;
    if (!labels) {
        recipe_batch_free(out);
        return ag_error_status();
    }
    for (int b = 0; b < B; ++b) {
        recipe_rng r = recipe_rng_example(seed, index, b);
        const int64_t d = collate_random_doc(c, &r);
        const int64_t len = c->doc_start[d + 1] - c->doc_start[d], n_chunks = (len + T - 2) / (T - 1);
        const int64_t from = recipe_rng_int(&r, 0, n_chunks - 1) * (T - 1);
        const int64_t n = len - from < T - 1 ? len - from : T - 1;
        int32_t *row = ids + (int64_t)b * T, *lab = labels + (int64_t)b * T;
        row[0] = c->doc_control[d];
        memcpy(row + 1, c->tokens + c->doc_start[d] + from, (size_t)n * sizeof *row);
        for (int64_t t = 0; t <= n; ++t) att[(int64_t)b * T + t] = 1, lab[t] = row[t];
    }
    return AG_OK;
}
