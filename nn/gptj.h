/* gptj.h: GPT-J (Hugging Face's GPTJModel and GPTJForCausalLM).
 *
 * No position embedding: rotary embeddings turn q and k on their first
 * rotary_dim dims, in GPT-J's interleaved pairs. Each block runs attention
 * and the MLP in parallel from one LayerNorm, x + attn(ln_1(x)) + mlp(ln_1(x)).
 * q/k/v/out projections are torch.nn.Linear without bias, fc_in/fc_out with
 * bias, and the LM head is its own Linear with a bias (not tied). Parameter
 * names are exactly GPTJForCausalLM.state_dict()'s
 * ("transformer.h.0.attn.q_proj.weight", "lm_head.bias"), or GPTJModel's
 * without the "transformer." prefix.
 */
#ifndef TAPEGRAD_NN_GPTJ_H
#define TAPEGRAD_NN_GPTJ_H

#include "kv_cache.h"
#include "nn.h"

typedef struct nn_gptj_config {
    int vocab_size, n_positions, n_embd, n_layer, n_head, n_inner;
    int rotary_dim; /* even, <= head dim; config null means the whole head */
    float layer_norm_epsilon, initializer_range;
    float embd_pdrop, attn_pdrop, resid_pdrop;
    nn_act act;
    bool tie_word_embeddings;
} nn_gptj_config;

typedef struct nn_gptj_block {
    nn_norm ln_1;
    nn_mha attn;            /* attn.{q,k,v,out}_proj, no bias */
    nn_linear fc_in, fc_out; /* mlp */
} nn_gptj_block;

typedef struct nn_gptj {
    nn_gptj_config cfg;
    nn_embedding wte;
    nn_gptj_block *h; /* [n_layer] */
    nn_norm ln_f;
    bool lm_head;         /* GPTJForCausalLM (else GPTJModel) */
    ag_tensor *lm_head_w; /* [V,C]: lm_head.weight (wte's weight if tie_word_embeddings) */
    ag_tensor *lm_head_b; /* [V]: lm_head.bias */
    char prefix[32];      /* "transformer." or "" */
} nn_gptj;

/* Reads the GPT-J fields of config.json: vocab_size, n_positions, n_embd,
 * n_layer, n_head, n_inner, rotary_dim, activation_function,
 * layer_norm_epsilon, initializer_range, embd_pdrop, attn_pdrop, resid_pdrop,
 * tie_word_embeddings (default false). Returns AG_OK or AG_ERR_ARG naming the
 * file and the field. */
ag_status nn_gptj_config_read(const nn_config *c, nn_gptj_config *cfg);

/* Declares every parameter in `ps` (call ag_params_finalize afterwards).
 * Nothing is allocated but the block table, so GPT-J 6B is declared at once.
 * Returns AG_OK or the registry's error. */
ag_status nn_gptj_declare(ag_params *ps, nn_gptj *m, const nn_gptj_config *cfg, bool lm_head);
void nn_gptj_free(nn_gptj *m);
/* Hugging Face's _init_weights: N(0, initializer_range) for every Linear and
 * Embedding weight, zero biases, unit LayerNorm weights. */
void nn_gptj_init_weights(nn_gptj *m, uint64_t seed);
/* Tied-weight aliases (only with tie_word_embeddings). Returns the number written. */
int nn_gptj_aliases(const nn_gptj *m, const char *alias[][2], int cap);

/* ids [B,T], attention_mask [B,T] (1 = token, 0 = padding) or NULL; positions
 * start at pos_offset. Returns the final hidden states [B,T,C], or NULL. */
ag_tensor *nn_gptj_forward(ag_ctx *ctx, const nn_gptj *m, const ag_ints *ids, const ag_ints *attention_mask,
                           int pos_offset);
/* GPTJForCausalLM's loss (see nn_causal_lm_loss); NULL for GPTJModel. */
ag_tensor *nn_gptj_lm_loss(ag_ctx *ctx, const nn_gptj *m, const ag_ints *ids, const ag_ints *attention_mask,
                           const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens);

/* nn_gptj_forward over ids [B,T] that follow the cache's len positions: the
 * rotary angles of q and k start at len, and the cache holds the rotated keys
 * (see nn_gpt2_forward_cached). Returns [B,T,C] of the new positions, or NULL. */
ag_tensor *nn_gptj_forward_cached(ag_ctx *ctx, const nn_gptj *m, const ag_ints *ids, nn_kv_cache *cache);

#endif
