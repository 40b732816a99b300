/* runners_rope.c: fixture cases -> ag_rope. Float input 0 is x [B,NH,T,D];
 * params rotary_dim, pos_offset, base, interleaved. */
#include "harness.h"

static ag_tensor *run_rope(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints) {
    return ag_rope(ctx, in[0], (int)case_num(c, "rotary_dim", (double)in[0]->shape[3]),
                   (int64_t)case_num(c, "pos_offset", 0), (float)case_num(c, "base", 10000.0),
                   case_bool(c, "interleaved", false));
}

const op_runner runners_rope[] = {
    {AG_OP_ROPE, run_rope},
    {AG_OP_COUNT, NULL},
};
