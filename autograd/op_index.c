/* op_index.c: NOT YET WRITTEN (placeholder so the op table links). */
#include "internal.h"

ag_status ag_embedding_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "embedding: backward not written"); }
ag_status ag_index_select_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "index_select: backward not written"); }
ag_status ag_gather_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "gather: backward not written"); }
