/* ctrl.h: CTRL (Hugging Face's CTRLModel and CTRLLMHeadModel, model_type "ctrl").
 *
 * A pre-LN decoder with fixed sinusoidal positions (no learned position
 * table), token embeddings multiplied by sqrt(n_embd) before the positions are
 * added, separate Wq/Wk/Wv/dense projections with bias, a ReLU feed-forward
 * ffn.0/ffn.2, and a final layernorm. The LM head is tied to the embedding
 * `transformer.w` but has its own bias. Parameter names are exactly
 * CTRLLMHeadModel.state_dict()'s ("transformer.h.0.multi_head_attention.Wq.weight",
 * "lm_head.bias"), or CTRLModel's without the "transformer." prefix.
 */
#ifndef TAPEGRAD_NN_CTRL_H
#define TAPEGRAD_NN_CTRL_H

#include "kv_cache.h"
#include "nn.h"

typedef struct nn_ctrl_config {
    int vocab_size, n_positions, n_embd, dff, n_layer, n_head;
    float layer_norm_epsilon, initializer_range; /* epsilon of the final layernorm only: the blocks' is 1e-6 */
    float embd_pdrop, resid_pdrop;
} nn_ctrl_config;

typedef struct nn_ctrl_block {
    nn_norm layernorm1, layernorm2;
    nn_mha mha;             /* multi_head_attention.{Wq,Wk,Wv,dense} */
    nn_linear ffn0, ffn2;   /* ffn.0, ffn.2 (ffn.1 is the ReLU) */
} nn_ctrl_block;

typedef struct nn_ctrl {
    nn_ctrl_config cfg;
    nn_embedding w;        /* the token embedding, "transformer.w" */
    nn_ctrl_block *h;      /* [n_layer] */
    nn_norm layernorm;
    bool lm_head;          /* CTRLLMHeadModel (else CTRLModel) */
    ag_tensor *lm_head_b;  /* [V]: lm_head.bias (the weight is w's) */
    char prefix[32];       /* "transformer." or "" */
} nn_ctrl;

/* Reads the fields of config.json: vocab_size, n_positions, n_embd, dff,
 * n_layer, n_head, layer_norm_epsilon, initializer_range, embd_pdrop,
 * resid_pdrop. Returns AG_OK or AG_ERR_ARG naming the file and the field. */
ag_status nn_ctrl_config_read(const nn_config *c, nn_ctrl_config *cfg);
/* Declares every parameter in `ps` (call ag_params_finalize afterwards).
 * Returns AG_OK or the registry's error. */
ag_status nn_ctrl_declare(ag_params *ps, nn_ctrl *m, const nn_ctrl_config *cfg, bool lm_head);
void nn_ctrl_free(nn_ctrl *m);
/* Hugging Face's _init_weights: N(0, initializer_range) for Linear and
 * Embedding weights, zero biases, unit LayerNorm weights. */
void nn_ctrl_init_weights(nn_ctrl *m, uint64_t seed);
/* The tied-weight aliases (lm_head.weight -> transformer.w.weight). */
int nn_ctrl_aliases(const nn_ctrl *m, const char *alias[][2], int cap);

/* CTRL's position table row `pos` into out[d] (no gradient):
 * angle_i = pos / 10000^(2 floor(i/2) / d); out = [sin(angle_0), sin(angle_2),
 * ..., cos(angle_1), cos(angle_3), ...] (the sines of the even columns, then
 * the cosines of the odd ones). Computed in double, rounded once. */
void nn_ctrl_position_row(float *out, int64_t pos, int d);

/* ids [B,T], attention_mask [B,T] or NULL; positions start at pos_offset.
 * Returns the final hidden states [B,T,C] (after layernorm), or NULL. */
ag_tensor *nn_ctrl_forward(ag_ctx *ctx, const nn_ctrl *m, const ag_ints *ids, const ag_ints *attention_mask,
                           int pos_offset);
/* CTRLLMHeadModel's loss (see nn_causal_lm_loss); NULL for CTRLModel. */
ag_tensor *nn_ctrl_lm_loss(ag_ctx *ctx, const nn_ctrl *m, const ag_ints *ids, const ag_ints *attention_mask,
                           const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens);

/* nn_ctrl_forward over ids [B,T] that follow the cache's len positions
 * (see nn_gpt2_forward_cached). Returns [B,T,C] of the new positions, or NULL. */
ag_tensor *nn_ctrl_forward_cached(ag_ctx *ctx, const nn_ctrl *m, const ag_ints *ids, nn_kv_cache *cache);

#endif
