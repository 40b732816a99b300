/* runners_dropout.c: fixture cases -> dropout. Params: "p"; "seed" is read by
 * tests/test_ops.c, which seeds the context (counter 0) in training mode. */
#include "harness.h"

static ag_tensor *run_dropout(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_dropout(ctx, in[0], (float)case_num(c, "p", 0));
}

const op_runner runners_dropout[] = {
    {AG_OP_DROPOUT, run_dropout},
    {AG_OP_COUNT, NULL},
};
