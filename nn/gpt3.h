/* gpt3.h: a GPT-3-style model: GPT-2's blocks, with the layers alternating
 * between dense causal attention and locally banded sparse attention.
 *
 * The GPT-3 paper (Brown et al. 2020, section 2.1) describes its models as
 * GPT-2 "with the exception that we use alternating dense and locally banded
 * sparse attention patterns in the layers of the transformer, similar to the
 * Sparse Transformer". Hugging Face has no such class, so tapegrad defines the
 * config as GPT-2's config.json plus three fields, and keeps GPT-2's parameter
 * names and shapes exactly ("transformer.h.0.attn.c_attn.weight", ...): a
 * GPT-2 checkpoint loads as it is, and a band wider than the sequence gives
 * GPT-2's function bit for bit. The band costs no parameters, so the counts
 * are GPT-2's for the same sizes (GPT-3 Small: 12 layers, 768 wide, 12 heads,
 * context 2048, vocab 50257 -> 125,226,240).
 *
 * config.json: every GPT-2 field (n_embd, n_layer, n_head, n_positions,
 * vocab_size, n_inner, activation_function, layer_norm_epsilon, the dropouts,
 * initializer_range, tie_word_embeddings, scale_attn_*), and
 *   "model_type": "gpt3"
 *   "sparse_attention_layers": which layers are banded (default "alternate"):
 *        "alternate"  layers 0, 2, 4, ... dense, layers 1, 3, 5, ... sparse
 *                     (GPT-Neo's [["global","local"], n] order);
 *        "all" / "none";
 *        or a list of n_layer strings, each "dense" or "sparse".
 *   "local_window": the band width W (default 256): in a sparse layer query i
 *        sees keys j with j <= i and i - j < W (itself and the W-1 before it),
 *        which is ag_attn_opts {causal, window = W}. Must be >= 1.
 * Classes ("architectures"): GPT3LMHeadModel and GPT3Model, or GPT-2's class
 * names GPT2LMHeadModel and GPT2Model (a GPT-2 config given the new fields).
 *
 * What it is not: the Sparse Transformer's strided pattern or its block-sparse
 * kernels. The band is computed as a masked dense attention (ag_attention
 * skips nothing), so it changes the function, not the cost.
 */
#ifndef TAPEGRAD_NN_GPT3_H
#define TAPEGRAD_NN_GPT3_H

#include "gpt2.h"

typedef struct nn_gpt3_config {
    nn_gpt2_config gpt2; /* every GPT-2 field */
    int local_window;    /* the band width W of the sparse layers */
    bool *sparse;        /* [n_layer] true: banded, false: dense (malloc'd) */
} nn_gpt3_config;

typedef struct nn_gpt3 {
    nn_gpt2 gpt2;     /* the parameters, the init and the LM head are GPT-2's */
    int local_window;
    bool *sparse;     /* [n_layer], owned */
} nn_gpt3;

/* Reads GPT-2's fields (nn_gpt2_config_read) and sparse_attention_layers and
 * local_window. Returns AG_OK, or AG_ERR_ARG naming the file and the field: a
 * GPT-2 field's error, a sparse_attention_layers that is neither "alternate",
 * "all", "none" nor a list of n_layer "dense"/"sparse" strings, a local_window
 * below 1. On success cfg->sparse is malloc'd: free it with
 * nn_gpt3_config_free, or hand it to nn_gpt3_declare. */
ag_status nn_gpt3_config_read(const nn_config *c, nn_gpt3_config *cfg);
void nn_gpt3_config_free(nn_gpt3_config *cfg);

/* Declares GPT-2's parameters in `ps` (GPT2LMHeadModel's names with lm_head,
 * GPT2Model's without) and takes ownership of cfg->sparse, also on failure.
 * Returns AG_OK or the registry's error. */
ag_status nn_gpt3_declare(ag_params *ps, nn_gpt3 *m, nn_gpt3_config *cfg, bool lm_head);
void nn_gpt3_free(nn_gpt3 *m);
/* GPT-2's initialisation (nn_gpt2_init_weights). */
void nn_gpt3_init_weights(nn_gpt3 *m, uint64_t seed);
/* GPT-2's tied-weight alias (lm_head.weight -> transformer.wte.weight). */
int nn_gpt3_aliases(const nn_gpt3 *m, const char *alias[][2], int cap);

/* ids [B,T], attention_mask [B,T] (1 = token, 0 = padding) or NULL. Returns
 * the final hidden states [B,T,C] (after ln_f), or NULL: ids not [B,T], T
 * beyond n_positions, a mask of another shape, an op's error. */
ag_tensor *nn_gpt3_forward(ag_ctx *ctx, const nn_gpt3 *m, const ag_ints *ids, const ag_ints *attention_mask);
/* The shifted causal LM loss (nn_causal_lm_loss) of the LM head class; NULL
 * with AG_ERR_STATE for the bare model. */
ag_tensor *nn_gpt3_lm_loss(ag_ctx *ctx, const nn_gpt3 *m, const ag_ints *ids, const ag_ints *attention_mask,
                           const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens);

#endif
