/* runners_softmax.c: fixture cases -> softmax ops.
 * Inputs in order: x, then the additive mask when the case has one (param
 * "has_mask"). */
#include "harness.h"

static ag_tensor *run_softmax(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_softmax(ctx, in[0], case_bool(c, "has_mask", false) ? in[1] : NULL);
}

static ag_tensor *run_log_softmax(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_log_softmax(ctx, in[0], case_bool(c, "has_mask", false) ? in[1] : NULL);
}

const op_runner runners_softmax[] = {
    {AG_OP_SOFTMAX, run_softmax},
    {AG_OP_LOG_SOFTMAX, run_log_softmax},
    {AG_OP_COUNT, NULL},
};
