/* causal_lm.c: the shifted causal LM loss and the batch checks (causal_lm.h). */
#include "causal_lm.h"

ag_status nn_causal_lm_check(const char *family, const ag_ints *ids, const ag_ints *attention_mask,
                             int64_t pos_offset, int64_t n_positions) {
    char s[64];
    if (!ids) return ag_error_status() ? ag_error_status() : ag_fail(AG_ERR_ARG, "%s: no input_ids", family);
    if (ids->ndim != 2 || ids->shape[1] < 1)
        return ag_fail(AG_ERR_ARG, "%s: input_ids must be [B,T], got %s", family, ag_shape_str(s, ids->ndim, ids->shape));
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (pos_offset < 0 || (n_positions > 0 && pos_offset + T > n_positions))
        return ag_fail(AG_ERR_ARG, "%s: positions %lld..%lld exceed the model's %lld positions", family,
                       (long long)pos_offset, (long long)(pos_offset + T - 1), (long long)n_positions);
    if (attention_mask && (attention_mask->ndim != 2 || attention_mask->shape[0] != B || attention_mask->shape[1] != T))
        return ag_fail(AG_ERR_ARG, "%s: attention_mask %s does not match input_ids [%lld,%lld]", family,
                       ag_shape_str(s, attention_mask->ndim, attention_mask->shape), (long long)B, (long long)T);
    return AG_OK;
}

ag_status nn_causal_lm_config_common(const nn_config *c, double eps_dflt, double pdrop_dflt,
                                     float *layer_norm_epsilon, float *initializer_range, float *embd_pdrop,
                                     float *attn_pdrop, float *resid_pdrop) {
    double range = 0, pe = 0, pa = 0, pr = 0;
    ag_status st;
    if ((st = nn_config_positive(c, "layer_norm_epsilon", eps_dflt, layer_norm_epsilon)) ||
        (st = nn_config_num(c, "initializer_range", 0.02, &range)) ||
        (st = nn_config_num(c, "embd_pdrop", pdrop_dflt, &pe)) ||
        (attn_pdrop && (st = nn_config_num(c, "attn_pdrop", pdrop_dflt, &pa))) ||
        (st = nn_config_num(c, "resid_pdrop", pdrop_dflt, &pr)))
        return st;
    if (pe < 0 || pe >= 1 || pa < 0 || pa >= 1 || pr < 0 || pr >= 1)
        return ag_fail(AG_ERR_ARG, "config %s: the dropout probabilities must be in [0, 1)", c->path);
    *initializer_range = (float)range;
    *embd_pdrop = (float)pe;
    if (attn_pdrop) *attn_pdrop = (float)pa;
    *resid_pdrop = (float)pr;
    return AG_OK;
}

int nn_causal_lm_tied_head_alias(const char *alias[][2], int cap, bool tied, const ag_tensor *word) {
    if (!tied || cap < 1) return 0;
    alias[0][0] = "lm_head.weight";
    alias[0][1] = word->name;
    return 1;
}

ag_ints *nn_causal_lm_positions(ag_ctx *ctx, int64_t T, int64_t pos_offset) {
    ag_ints *pos = ag_ints_from(ctx, NULL, 1, AG_SHAPE(T));
    if (!pos) return NULL;
    for (int64_t t = 0; t < T; ++t) pos->data[t] = (int32_t)(pos_offset + t);
    return pos;
}

ag_tensor *nn_causal_lm_loss(ag_ctx *ctx, const char *family, ag_tensor *hidden, ag_tensor *head_w,
                             ag_tensor *head_b, const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens) {
    if (!hidden || !labels) return NULL;
    char s[64];
    const int64_t B = hidden->shape[0], T = hidden->shape[1];
    if (labels->ndim != 2 || labels->shape[0] != B || labels->shape[1] != T) {
        ag_fail(AG_ERR_ARG, "%s: labels %s do not match input_ids [%lld,%lld]", family,
                ag_shape_str(s, labels->ndim, labels->shape), (long long)B, (long long)T);
        return NULL;
    }
    if (T < 2) {
        ag_fail(AG_ERR_ARG, "%s: a causal LM loss needs at least 2 positions, got %lld", family, (long long)T);
        return NULL;
    }
    /* position t predicts label t+1: drop the last hidden state before the
     * head (so the B*T*V logits are never all made) and the first label */
    ag_tensor *logits = ag_linear(ctx, ag_slice(ctx, hidden, 1, 0, T - 1), head_w, head_b,
                                  AG_LINEAR_OUT_IN);                        /* [B,T-1,V] */
    ag_ints *shifted = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T - 1));      /* [B,T-1] */
    if (!logits || !shifted) return NULL;
    int64_t count = 0;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T - 1; ++t) {
            int32_t y = labels->data[b * T + t + 1];
            shifted->data[b * (T - 1) + t] = y;
            count += y != AG_IGNORE_INDEX;
        }
    if (n_tokens) *n_tokens = count;
    return ag_cross_entropy(ctx, logits, shifted, 0.0f, reduction);
}
