/* gpt2.h: GPT-2 (Hugging Face's GPT2Model and GPT2LMHeadModel).
 *
 * Pre-LN decoder blocks, learned positions, Conv1D weights stored [in,out],
 * the LM head tied to the token embedding. Parameter names are exactly
 * GPT2LMHeadModel.state_dict()'s ("transformer.h.0.attn.c_attn.weight"), or
 * GPT2Model's without the "transformer." prefix.
 */
#ifndef TAPEGRAD_NN_GPT2_H
#define TAPEGRAD_NN_GPT2_H

#include "kv_cache.h"
#include "nn.h"

typedef struct nn_gpt2_config {
    int vocab_size, n_positions, n_embd, n_layer, n_head, n_inner;
    float layer_norm_epsilon, initializer_range;
    float embd_pdrop, attn_pdrop, resid_pdrop;
    nn_act act;
    bool tie_word_embeddings, scale_attn_weights, scale_attn_by_inverse_layer_idx;
    int bos_token_id, eos_token_id;
} nn_gpt2_config;

typedef struct nn_gpt2_block {
    nn_norm ln_1, ln_2;
    nn_mha attn;           /* c_attn (fused qkv) and c_proj */
    nn_linear c_fc, c_proj; /* the MLP */
} nn_gpt2_block;

typedef struct nn_gpt2 {
    nn_gpt2_config cfg;
    nn_embedding wte, wpe;
    nn_gpt2_block *h; /* [n_layer] */
    nn_norm ln_f;
    bool lm_head;         /* GPT2LMHeadModel (else GPT2Model) */
    ag_tensor *lm_head_w; /* [V,C]: wte's weight when tied, else lm_head.weight */
    char prefix[32];      /* "transformer." or "" */
} nn_gpt2;

/* Reads the GPT-2 fields of config.json (n_embd, n_layer, n_head, n_positions,
 * vocab_size, n_inner, layer_norm_epsilon, activation_function,
 * tie_word_embeddings, the dropouts, initializer_range, scale_attn_*). Errors
 * name the file and the field. */
ag_status nn_gpt2_config_read(const nn_config *c, nn_gpt2_config *cfg);

/* Declares every parameter in `ps` (call ag_params_finalize afterwards).
 * lm_head: GPT2LMHeadModel names and head; else GPT2Model. */
ag_status nn_gpt2_declare(ag_params *ps, nn_gpt2 *m, const nn_gpt2_config *cfg, bool lm_head);
void nn_gpt2_free(nn_gpt2 *m);
/* Hugging Face's initialisation: N(0, initializer_range) for weights and
 * embeddings, zero biases, unit norms, and N(0, range/sqrt(2 n_layer)) for every
 * c_proj.weight. */
void nn_gpt2_init_weights(nn_gpt2 *m, uint64_t seed);
/* The tied-weight aliases a loader must know: lm_head.weight -> wte. Returns
 * the number written (0 or 1). */
int nn_gpt2_aliases(const nn_gpt2 *m, const char *alias[][2], int cap);

/* ids [B,T], attention_mask [B,T] (1 = token, 0 = padding) or NULL; positions
 * start at pos_offset. Returns the final hidden states [B,T,C] (after ln_f). */
ag_tensor *nn_gpt2_forward(ag_ctx *ctx, const nn_gpt2 *m, const ag_ints *ids, const ag_ints *attention_mask,
                           int pos_offset);
/* The LM head: hidden [...,C] -> logits [...,V]. */
ag_tensor *nn_gpt2_logits(ag_ctx *ctx, const nn_gpt2 *m, ag_tensor *hidden);
/* GPT2LMHeadModel's loss: predicts labels[:,1:] from positions [:, :-1]
 * (-100 ignored), mean over counted tokens (or their sum with
 * AG_REDUCE_SUM, for gradient accumulation). *n_tokens receives the count. */
ag_tensor *nn_gpt2_lm_loss(ag_ctx *ctx, const nn_gpt2 *m, const ag_ints *ids, const ag_ints *attention_mask,
                           const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens);

/* The forward over ids [B,T] that follow the cache's len positions (no
 * padding mask): keys and values of every layer are appended to `cache`, its
 * len advances by T, positions are len .. len+T-1. Run it under a no-grad
 * scope. Returns the final hidden states [B,T,C] of the new positions: what
 * nn_gpt2_forward gives for the last T positions of the whole sequence.
 * Errors: a cache made for another model, a full cache, positions beyond
 * n_positions. */
ag_tensor *nn_gpt2_forward_cached(ag_ctx *ctx, const nn_gpt2 *m, const ag_ints *ids, nn_kv_cache *cache);

/* ---------------------------------------------------------------- GPT2ForSequenceClassification
 *
 * Hugging Face's class (4.31) puts one Linear without bias, `score.weight`
 * [num_labels, C], on the final hidden states and keeps, per row, the logits
 * of the last token that is not padding:
 *
 *   logits = score(h)                                      [B,T,L]
 *   last_b = (first index of pad_token_id in ids[b]) - 1   (-1 when there is none: T-1)
 *   pooled[b] = logits[b, last_b]                          [B,L]
 *   loss = cross_entropy(pooled, labels)
 *
 * We pick the rows first and apply score to [B,C] only: the same numbers. The
 * backbone is declared as GPT2LMHeadModel with tied embeddings (its names are
 * "transformer.*", as in the classification model) and its LM head is never
 * used. */

/* Declares score.weight [num_labels, n_embd] in `ps` (after nn_gpt2_declare).
 * Errors: num_labels < 1, or the registry's error. */
ag_status nn_gpt2_cls_declare(ag_params *ps, nn_linear *score, const nn_gpt2_config *cfg, int num_labels);
/* _init_weights for the head: N(0, initializer_range), from its own stream. */
void nn_gpt2_cls_init(nn_linear *score, const nn_gpt2_config *cfg, uint64_t seed);
/* The pooled logits [B,num_labels] for ids [B,T] (attention_mask [B,T] or
 * NULL). pad_token_id < 0 means none (every row ends at T-1). Returns NULL
 * with an error for bad shapes or a NULL input. */
ag_tensor *nn_gpt2_cls_logits(ag_ctx *ctx, const nn_gpt2 *m, const nn_linear *score, const ag_ints *ids,
                              const ag_ints *attention_mask, int pad_token_id);

#endif
