/* op_loss.c: NOT YET WRITTEN (placeholder so the op table links). */
#include "internal.h"

ag_status ag_cross_entropy_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "cross_entropy: backward not written"); }
ag_status ag_bce_logits_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "bce_logits: backward not written"); }
ag_status ag_kl_div_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "kl_div: backward not written"); }
ag_status ag_cosine_embedding_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "cosine_embedding: backward not written"); }
ag_status ag_mse_backward(ag_ctx *ctx, const ag_node *n) { return ag_fail(AG_ERR_STATE, "mse: backward not written"); }
