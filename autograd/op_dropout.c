/* op_dropout.c: NOT YET WRITTEN (placeholder so the op table links). */
#include "internal.h"

ag_status ag_dropout_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "dropout: backward not written"); }
