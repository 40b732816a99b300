/* runners_norm.c: fixture cases -> norm ops.
 * Inputs in order: x, then w and b when the case has them (params "has_w",
 * "has_b"; absent ones are NULL). Params: eps. */
#include "harness.h"

static ag_tensor *run_layernorm(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    int k = 1;
    ag_tensor *w = case_bool(c, "has_w", true) ? in[k++] : NULL;
    ag_tensor *b = case_bool(c, "has_b", true) ? in[k++] : NULL;
    return ag_layernorm(ctx, in[0], w, b, (float)case_num(c, "eps", 1e-5));
}

static ag_tensor *run_rmsnorm(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    ag_tensor *w = case_bool(c, "has_w", true) ? in[1] : NULL;
    return ag_rmsnorm(ctx, in[0], w, (float)case_num(c, "eps", 1e-6));
}

const op_runner runners_norm[] = {
    {AG_OP_LAYERNORM, run_layernorm},
    {AG_OP_RMSNORM, run_rmsnorm},
    {AG_OP_COUNT, NULL},
};
