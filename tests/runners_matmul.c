/* runners_matmul.c: fixture cases -> matmul ops.
 *
 * matmul: inputs a, b; params trans_a, trans_b (default false).
 * linear: inputs x, w and optionally b; param in_out (true: W [in,out], GPT-2's
 * Conv1D; default false: W [out,in], torch.nn.Linear). */
#include "harness.h"

static ag_tensor *run_matmul(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_matmul(ctx, in[0], in[1], case_bool(c, "trans_a", false), case_bool(c, "trans_b", false));
}

static ag_tensor *run_linear(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    ag_linear_layout layout = case_bool(c, "in_out", false) ? AG_LINEAR_IN_OUT : AG_LINEAR_OUT_IN;
    return ag_linear(ctx, in[0], in[1], c->n_in > 2 ? in[2] : NULL, layout);
}

const op_runner runners_matmul[] = {
    {AG_OP_MATMUL, run_matmul},
    {AG_OP_LINEAR, run_linear},
    {AG_OP_COUNT, NULL},
};
