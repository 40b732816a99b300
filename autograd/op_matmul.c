/* op_matmul.c: NOT YET WRITTEN (placeholder so the op table links). */
#include "internal.h"

ag_status ag_matmul_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "matmul: backward not written"); }
ag_status ag_linear_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "linear: backward not written"); }
