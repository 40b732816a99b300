/* openai.h: the original GPT (Hugging Face's OpenAIGPTModel and
 * OpenAIGPTLMHeadModel, model_type "openai-gpt").
 *
 * GPT-2's ancestor and its differences: the blocks are post-LN,
 * n = ln_1(x + attn(x)), h = ln_2(n + mlp(n)), with no final LayerNorm; the
 * embeddings are tokens_embed and positions_embed. Conv1D weights stored
 * [in,out], the LM head tied to tokens_embed without bias. Parameter names
 * are exactly OpenAIGPTLMHeadModel.state_dict()'s
 * ("transformer.h.0.attn.c_attn.weight"), or OpenAIGPTModel's without the
 * "transformer." prefix.
 */
#ifndef TAPEGRAD_NN_OPENAI_H
#define TAPEGRAD_NN_OPENAI_H

#include "kv_cache.h"
#include "nn.h"

typedef struct nn_openai_config {
    int vocab_size, n_positions, n_embd, n_layer, n_head;
    float layer_norm_epsilon, initializer_range;
    float embd_pdrop, attn_pdrop, resid_pdrop;
    nn_act act; /* "afn"; note that OpenAI GPT's "gelu" is the tanh form (gelu_new) */
} nn_openai_config;

typedef struct nn_openai_block {
    nn_mha attn;            /* c_attn (fused qkv) and c_proj */
    nn_norm ln_1;
    nn_linear c_fc, c_proj; /* mlp */
    nn_norm ln_2;
} nn_openai_block;

typedef struct nn_openai {
    nn_openai_config cfg;
    nn_embedding tokens_embed, positions_embed;
    nn_openai_block *h; /* [n_layer] */
    bool lm_head;       /* OpenAIGPTLMHeadModel (else OpenAIGPTModel) */
    char prefix[32];    /* "transformer." or "" */
} nn_openai;

/* Reads the fields of config.json: vocab_size, n_positions, n_embd, n_layer,
 * n_head, afn ("gelu" = gelu_new, "relu", "silu", "swish"), layer_norm_epsilon,
 * initializer_range, embd_pdrop, attn_pdrop, resid_pdrop. Returns AG_OK or
 * AG_ERR_ARG naming the file and the field. */
ag_status nn_openai_config_read(const nn_config *c, nn_openai_config *cfg);
/* Declares every parameter in `ps` (call ag_params_finalize afterwards).
 * Returns AG_OK or the registry's error. */
ag_status nn_openai_declare(ag_params *ps, nn_openai *m, const nn_openai_config *cfg, bool lm_head);
void nn_openai_free(nn_openai *m);
/* Hugging Face's _init_weights: N(0, initializer_range) for Conv1D, Linear and
 * Embedding weights, zero biases, unit LayerNorm weights. */
void nn_openai_init_weights(nn_openai *m, uint64_t seed);
/* The tied-weight aliases (lm_head.weight -> transformer.tokens_embed.weight). */
int nn_openai_aliases(const nn_openai *m, const char *alias[][2], int cap);

/* ids [B,T], attention_mask [B,T] or NULL. Returns the last block's output
 * [B,T,C] (there is no final norm), or NULL. */
ag_tensor *nn_openai_forward(ag_ctx *ctx, const nn_openai *m, const ag_ints *ids, const ag_ints *attention_mask);
/* OpenAIGPTLMHeadModel's loss (see nn_causal_lm_loss); NULL for OpenAIGPTModel. */
ag_tensor *nn_openai_lm_loss(ag_ctx *ctx, const nn_openai *m, const ag_ints *ids, const ag_ints *attention_mask,
                             const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens);

/* nn_openai_forward over ids [B,T] that follow the cache's len positions
 * (see nn_gpt2_forward_cached). Returns [B,T,C] of the new positions, or NULL. */
ag_tensor *nn_openai_forward_cached(ag_ctx *ctx, const nn_openai *m, const ag_ints *ids, nn_kv_cache *cache);

#endif
