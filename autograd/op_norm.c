/* op_norm.c: NOT YET WRITTEN (placeholder so the op table links). */
#include "internal.h"

ag_status ag_layernorm_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "layernorm: backward not written"); }
ag_status ag_rmsnorm_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "rmsnorm: backward not written"); }
