/* op_elementwise.c: NOT YET WRITTEN (placeholder so the op table links). */
#include "internal.h"

ag_status ag_add_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "add: backward not written"); }
ag_status ag_sub_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "sub: backward not written"); }
ag_status ag_mul_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "mul: backward not written"); }
ag_status ag_div_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "div: backward not written"); }
ag_status ag_scale_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "scale: backward not written"); }
ag_status ag_add_scalar_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "add_scalar: backward not written"); }
