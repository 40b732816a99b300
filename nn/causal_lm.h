/* causal_lm.h: what every decoder-only family shares around its blocks.
 *
 * The *ForCausalLM loss of Hugging Face (GPT-2, GPT-Neo, GPT-J, OpenAI GPT,
 * CTRL all compute it the same way): position t predicts token t+1, so the
 * last hidden state and the first label are dropped, labels of -100 count for
 * nothing, and the cross-entropy is averaged over the counted tokens. Also the
 * checks of a batch's shapes that every family's forward makes first.
 *
 * What it is not: a model. Each family's file builds its own blocks and calls
 * these helpers at its two ends.
 */
#ifndef TAPEGRAD_NN_CAUSAL_LM_H
#define TAPEGRAD_NN_CAUSAL_LM_H

#include "nn.h"

/* Checks that ids is [B,T] with 1 <= T and pos_offset + T <= n_positions
 * (n_positions <= 0: no limit), and that attention_mask (may be NULL) is
 * [B,T] too. `family` names the model in the message. Returns AG_OK, or
 * AG_ERR_ARG with a message naming the input and both shapes. */
ag_status nn_causal_lm_check(const char *family, const ag_ints *ids, const ag_ints *attention_mask,
                             int64_t pos_offset, int64_t n_positions);

/* Reads the config.json fields GPT-2, OpenAI GPT, GPT-J and CTRL share under
 * the same names: layer_norm_epsilon (> 0; default eps_dflt),
 * initializer_range (0.02), and the dropouts embd_pdrop, attn_pdrop and
 * resid_pdrop (default pdrop_dflt; attn_pdrop NULL for a family without one,
 * as CTRL). These families judge the dropouts together: one outside [0, 1) is
 * "config <path>: the dropout probabilities must be in [0, 1)". Returns AG_OK
 * or AG_ERR_ARG naming the file (and the field, for the epsilon or a value of
 * the wrong type). */
ag_status nn_causal_lm_config_common(const nn_config *c, double eps_dflt, double pdrop_dflt,
                                     float *layer_norm_epsilon, float *initializer_range, float *embd_pdrop,
                                     float *attn_pdrop, float *resid_pdrop);

/* The checkpoint alias of an LM head tied to the token embedding `word`:
 * "lm_head.weight" -> word's name, written to alias[0] when tied (the class
 * has the head and ties it) and cap >= 1. Returns the number written, 0 or 1. */
int nn_causal_lm_tied_head_alias(const char *alias[][2], int cap, bool tied, const ag_tensor *word);

/* The positions pos_offset .. pos_offset+T-1 as an [T] integer tensor in the
 * step arena (every row of the batch shares them), or NULL. */
ag_ints *nn_causal_lm_positions(ag_ctx *ctx, int64_t T, int64_t pos_offset);

/* The shifted causal LM loss: hidden [B,T,C] (after the final norm), the head
 * W [V,C] (torch.nn.Linear layout, or a tied embedding) and bias [V] or NULL,
 * labels [B,T]. Computes logits only for positions 0..T-2, never the last,
 * and targets labels[:,1:]. Mean over counted tokens, or their sum with
 * AG_REDUCE_SUM (for gradient accumulation); *n_tokens (may be NULL) receives
 * the count. Returns the [1] loss, or NULL: labels not [B,T], T < 2, a label
 * outside [0,V) that is not -100. */
ag_tensor *nn_causal_lm_loss(ag_ctx *ctx, const char *family, ag_tensor *hidden, ag_tensor *head_w,
                             ag_tensor *head_b, const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens);

#endif
