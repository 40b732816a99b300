/* runners_activation.c: fixture cases -> activation ops. */
#include "harness.h"

static ag_tensor *run_gelu(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) { return ag_gelu(ctx, in[0]); }
static ag_tensor *run_gelu_tanh(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) { return ag_gelu_tanh(ctx, in[0]); }
static ag_tensor *run_relu(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) { return ag_relu(ctx, in[0]); }
static ag_tensor *run_tanh(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) { return ag_tanh(ctx, in[0]); }
static ag_tensor *run_sigmoid(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) { return ag_sigmoid(ctx, in[0]); }
static ag_tensor *run_silu(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) { return ag_silu(ctx, in[0]); }

const op_runner runners_activation[] = {
    {AG_OP_GELU, run_gelu},       {AG_OP_GELU_TANH, run_gelu_tanh}, {AG_OP_RELU, run_relu},
    {AG_OP_TANH, run_tanh},       {AG_OP_SIGMOID, run_sigmoid},     {AG_OP_SILU, run_silu},
    {AG_OP_COUNT, NULL},
};
