/* op_shape.c: NOT YET WRITTEN (placeholder so the op table links). */
#include "internal.h"

ag_status ag_reshape_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "reshape: backward not written"); }
ag_status ag_permute_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "permute: backward not written"); }
ag_status ag_concat_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "concat: backward not written"); }
ag_status ag_slice_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "slice: backward not written"); }
ag_status ag_masked_fill_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "masked_fill: backward not written"); }
