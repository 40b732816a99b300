/* runners_shape.c: fixture cases -> shape ops.
 *
 * Params: reshape "shape" (may hold one -1); permute "perm", or "transpose"
 * [d0, d1] to go through ag_transpose; concat "dim" over every float input in
 * order; slice "dim", "start", "len", or "split" n with "part" k to take the
 * k-th output of ag_split; masked_fill "value" (in[0] = x, in[1] = mask). */
#include "harness.h"

static ag_tensor *run_reshape(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    int s[AG_MAX_DIMS];
    int nd = case_ints(c, "shape", s, AG_MAX_DIMS);
    if (nd < 1 || nd > AG_MAX_DIMS) return NULL;
    int64_t shape[AG_MAX_DIMS];
    for (int d = 0; d < nd; ++d) shape[d] = s[d];
    return ag_reshape(ctx, in[0], nd, shape);
}

static ag_tensor *run_permute(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    int t[2];
    if (case_ints(c, "transpose", t, 2) == 2) return ag_transpose(ctx, in[0], t[0], t[1]);
    int perm[AG_MAX_DIMS];
    if (case_ints(c, "perm", perm, AG_MAX_DIMS) != in[0]->ndim) return NULL;
    return ag_permute(ctx, in[0], perm);
}

static ag_tensor *run_concat(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_concat(ctx, in, c->n_in, (int)case_num(c, "dim", 0));
}

static ag_tensor *run_slice(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    int dim = (int)case_num(c, "dim", 0);
    int n = (int)case_num(c, "split", 0);
    if (n > 0) {
        ag_tensor *outs[64];
        if (n > 64 || ag_split(ctx, in[0], dim, n, outs) != AG_OK) return NULL;
        return outs[(int)case_num(c, "part", 0)];
    }
    return ag_slice(ctx, in[0], dim, (int64_t)case_num(c, "start", 0), (int64_t)case_num(c, "len", 0));
}

static ag_tensor *run_masked_fill(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_masked_fill(ctx, in[0], in[1], (float)case_num(c, "value", 0));
}

const op_runner runners_shape[] = {
    {AG_OP_RESHAPE, run_reshape}, {AG_OP_PERMUTE, run_permute}, {AG_OP_CONCAT, run_concat},
    {AG_OP_SLICE, run_slice},     {AG_OP_MASKED_FILL, run_masked_fill},
    {AG_OP_COUNT, NULL},
};
