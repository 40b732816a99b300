/* gpt_neo.h: GPT-Neo (Hugging Face's GPTNeoModel and GPTNeoForCausalLM).
 *
 * GPT-2's pre-LN block with three differences: q, k, v are separate
 * torch.nn.Linear projections without bias (out_proj has one), the layers
 * alternate global and local (sliding-window) causal attention as the config's
 * attention_types says, and the attention scores are NOT divided by
 * sqrt(head_dim). Learned positions, the LM head tied to the token embedding.
 * Parameter names are exactly GPTNeoForCausalLM.state_dict()'s
 * ("transformer.h.0.attn.attention.q_proj.weight"), or GPTNeoModel's without
 * the "transformer." prefix.
 */
#ifndef TAPEGRAD_NN_GPT_NEO_H
#define TAPEGRAD_NN_GPT_NEO_H

#include "kv_cache.h"
#include "nn.h"

typedef struct nn_gpt_neo_config {
    int vocab_size, max_position_embeddings, hidden_size, num_layers, num_heads, intermediate_size;
    int window_size;        /* how far back a local layer sees: keys j with i - j < window_size */
    bool *local;            /* [num_layers] true: local attention, false: global (malloc'd) */
    float layer_norm_epsilon, initializer_range;
    float embed_dropout, attention_dropout, resid_dropout;
    nn_act act;
    bool tie_word_embeddings;
} nn_gpt_neo_config;

typedef struct nn_gpt_neo_block {
    nn_norm ln_1, ln_2;
    nn_mha attn;             /* attn.attention.{q,k,v,out}_proj */
    nn_linear c_fc, c_proj;  /* mlp */
} nn_gpt_neo_block;

typedef struct nn_gpt_neo {
    nn_gpt_neo_config cfg;
    nn_embedding wte, wpe;
    nn_gpt_neo_block *h;  /* [num_layers] */
    nn_norm ln_f;
    bool lm_head;         /* GPTNeoForCausalLM (else GPTNeoModel) */
    ag_tensor *lm_head_w; /* [V,C]: wte's weight when tied, else lm_head.weight */
    char prefix[32];      /* "transformer." or "" */
} nn_gpt_neo;

/* Reads the GPT-Neo fields of config.json: vocab_size, max_position_embeddings,
 * hidden_size, num_layers, num_heads, intermediate_size, window_size,
 * attention_types (e.g. [[["global","local"],6]], expanded to one type per
 * layer; attention_layers, when present, must agree), activation_function,
 * layer_norm_epsilon, initializer_range, embed_dropout, attention_dropout,
 * resid_dropout, tie_word_embeddings. Returns AG_OK or AG_ERR_ARG naming the
 * file and the field. On success cfg->local is malloc'd: free it with
 * nn_gpt_neo_config_free (nn_gpt_neo_free does it for a declared model). */
ag_status nn_gpt_neo_config_read(const nn_config *c, nn_gpt_neo_config *cfg);
void nn_gpt_neo_config_free(nn_gpt_neo_config *cfg);

/* Declares every parameter in `ps` (call ag_params_finalize afterwards); the
 * model takes ownership of cfg->local. lm_head: GPTNeoForCausalLM's names and
 * head; else GPTNeoModel's. Returns AG_OK or the registry's error. */
ag_status nn_gpt_neo_declare(ag_params *ps, nn_gpt_neo *m, const nn_gpt_neo_config *cfg, bool lm_head);
void nn_gpt_neo_free(nn_gpt_neo *m);
/* Hugging Face's _init_weights: N(0, initializer_range) for every Linear and
 * Embedding weight, zero biases, unit LayerNorm weights. */
void nn_gpt_neo_init_weights(nn_gpt_neo *m, uint64_t seed);
/* The tied-weight aliases (lm_head.weight -> transformer.wte.weight). Returns
 * the number written (0 or 1). */
int nn_gpt_neo_aliases(const nn_gpt_neo *m, const char *alias[][2], int cap);

/* ids [B,T], attention_mask [B,T] (1 = token, 0 = padding) or NULL.
 * Returns the final hidden states [B,T,C] (after ln_f), or NULL. */
ag_tensor *nn_gpt_neo_forward(ag_ctx *ctx, const nn_gpt_neo *m, const ag_ints *ids, const ag_ints *attention_mask);
/* GPTNeoForCausalLM's loss (see nn_causal_lm_loss); NULL for GPTNeoModel. */
ag_tensor *nn_gpt_neo_lm_loss(ag_ctx *ctx, const nn_gpt_neo *m, const ag_ints *ids, const ag_ints *attention_mask,
                              const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens);

/* nn_gpt_neo_forward over ids [B,T] that follow the cache's len positions
 * (see nn_gpt2_forward_cached; local layers keep their window). Returns the
 * hidden states [B,T,C] of the new positions, or NULL. */
ag_tensor *nn_gpt_neo_forward_cached(ag_ctx *ctx, const nn_gpt_neo *m, const ag_ints *ids, nn_kv_cache *cache);

#endif
