/* op_reduce.c: NOT YET WRITTEN (placeholder so the op table links). */
#include "internal.h"

ag_status ag_sum_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "sum: backward not written"); }
ag_status ag_mean_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "mean: backward not written"); }
