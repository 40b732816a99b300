/* runners_elementwise.c: fixture cases -> elementwise ops. */
#include "harness.h"

static ag_tensor *run_add(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) { return ag_add(ctx, in[0], in[1]); }
static ag_tensor *run_sub(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) { return ag_sub(ctx, in[0], in[1]); }
static ag_tensor *run_mul(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) { return ag_mul(ctx, in[0], in[1]); }
static ag_tensor *run_div(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) { return ag_div(ctx, in[0], in[1]); }
static ag_tensor *run_scale(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_scale(ctx, in[0], (float)case_num(c, "s", 1));
}
static ag_tensor *run_add_scalar(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_add_scalar(ctx, in[0], (float)case_num(c, "s", 0));
}

const op_runner runners_elementwise[] = {
    {AG_OP_ADD, run_add},     {AG_OP_SUB, run_sub},     {AG_OP_MUL, run_mul},
    {AG_OP_DIV, run_div},     {AG_OP_SCALE, run_scale}, {AG_OP_ADD_SCALAR, run_add_scalar},
    {AG_OP_COUNT, NULL},
};
