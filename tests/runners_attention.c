/* runners_attention.c: fixture cases -> ag_attention.
 *
 * Float inputs in order: q, k, v, then an optional additive bias. Integer
 * input 0, when present, is the key_mask [B,S]. Params: causal, window,
 * no_scale, scale, dropout (all optional; the harness seeds the context with
 * the case's "seed" and turns training mode on). */
#include "harness.h"

static ag_tensor *run_attention(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    ag_attn_opts o = {
        .causal = case_bool(c, "causal", false),
        .window = (int)case_num(c, "window", 0),
        .no_scale = case_bool(c, "no_scale", false),
        .scale = (float)case_num(c, "scale", 0),
        .bias = c->n_in > 3 ? in[3] : NULL,
        .key_mask = c->n_ints > 0 ? ints[0] : NULL,
        .dropout = (float)case_num(c, "dropout", 0),
    };
    return ag_attention(ctx, in[0], in[1], in[2], &o);
}

const op_runner runners_attention[] = {
    {AG_OP_ATTENTION, run_attention},
    {AG_OP_COUNT, NULL},
};
