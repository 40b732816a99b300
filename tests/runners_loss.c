/* runners_loss.c: fixture cases -> loss ops. Float inputs and integer inputs
 * in the order the case file lists them; params as named below. */
#include "harness.h"

/* in: logits; ints: targets; params: label_smoothing, reduction ("sum": 1). */
static ag_tensor *run_cross_entropy(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    ag_reduction red = case_bool(c, "sum", false) ? AG_REDUCE_SUM : AG_REDUCE_MEAN;
    return ag_cross_entropy(ctx, in[0], ints[0], (float)case_num(c, "label_smoothing", 0), red);
}

/* in: x, y. */
static ag_tensor *run_bce_logits(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_bce_logits(ctx, in[0], in[1]);
}

/* in: student, teacher; params: T. */
static ag_tensor *run_kl_div(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_kl_div(ctx, in[0], in[1], (float)case_num(c, "T", 1));
}

/* in: x1, x2; ints: y; params: margin. */
static ag_tensor *run_cosine_embedding(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_cosine_embedding(ctx, in[0], in[1], ints[0], (float)case_num(c, "margin", 0));
}

/* in: a, b. */
static ag_tensor *run_mse(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_mse(ctx, in[0], in[1]);
}

const op_runner runners_loss[] = {
    {AG_OP_CROSS_ENTROPY, run_cross_entropy},
    {AG_OP_BCE_LOGITS, run_bce_logits},
    {AG_OP_KL_DIV, run_kl_div},
    {AG_OP_COSINE_EMBEDDING, run_cosine_embedding},
    {AG_OP_MSE, run_mse},
    {AG_OP_COUNT, NULL},
};
