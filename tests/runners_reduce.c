/* runners_reduce.c: fixture cases -> reduce ops. Params: "dim" (absent or
 * "all": AG_ALL) and "keepdim". */
#include "harness.h"

static int reduce_dim(const op_case *c) { return case_bool(c, "all", false) ? AG_ALL : (int)case_num(c, "dim", AG_ALL); }

static ag_tensor *run_sum(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_sum(ctx, in[0], reduce_dim(c), case_bool(c, "keepdim", false));
}
static ag_tensor *run_mean(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_mean(ctx, in[0], reduce_dim(c), case_bool(c, "keepdim", false));
}

const op_runner runners_reduce[] = {
    {AG_OP_SUM, run_sum},
    {AG_OP_MEAN, run_mean},
    {AG_OP_COUNT, NULL},
};
