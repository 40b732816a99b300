/* runners_index.c: fixture cases -> index ops.
 *
 * embedding:    input w, ints ids; param padding_idx (default -1: none).
 * index_select: input x, ints idx; param dim (may be negative).
 * gather:       input x, ints idx (over the last dim). */
#include "harness.h"

static ag_tensor *run_embedding(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_embedding(ctx, in[0], ints[0], (int)case_num(c, "padding_idx", -1));
}

static ag_tensor *run_index_select(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_index_select(ctx, in[0], (int)case_num(c, "dim", 0), ints[0]);
}

static ag_tensor *run_gather(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_gather(ctx, in[0], ints[0]);
}

const op_runner runners_index[] = {
    {AG_OP_EMBEDDING, run_embedding},
    {AG_OP_INDEX_SELECT, run_index_select},
    {AG_OP_GATHER, run_gather},
    {AG_OP_COUNT, NULL},
};
