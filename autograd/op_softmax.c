/* op_softmax.c: NOT YET WRITTEN (placeholder so the op table links). */
#include "internal.h"

ag_status ag_softmax_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "softmax: backward not written"); }
ag_status ag_log_softmax_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "log_softmax: backward not written"); }
