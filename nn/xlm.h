/* xlm.h: XLM (Hugging Face's XLMModel, XLMWithLMHeadModel and
 * XLMForSequenceClassification, modeling_xlm.py).
 *
 * A post-LN transformer (BERT's block order: norm(x + attn(x)), then
 * norm(h + ffn(h))) with three embeddings summed and normalised:
 *   tokens     transformer.embeddings          [vocab_size, emb_dim], padding_idx = pad_index
 *   positions  transformer.position_embeddings [max_position_embeddings, emb_dim], learned, or
 *              with sinusoidal_embeddings a fixed sin/cos table that is never trained
 *   languages  transformer.lang_embeddings     [n_langs, emb_dim], only when n_langs > 1 and
 *              use_lang_emb; the batch field "langs" [B,T] picks a row per token
 * then layer_norm_emb. Layer i is attentions.i.{q,k,v,out}_lin, layer_norm1.i,
 * ffns.i.{lin1,lin2} (emb_dim -> 4 emb_dim -> emb_dim, exact GELU when
 * gelu_activation else ReLU), layer_norm2.i. After the embeddings and after
 * every layer the padded positions are zeroed (HF's `tensor *= mask`).
 * With causal: true every layer is causal and padding is not masked in the
 * attention (HF's get_masks), as XLM's CLM models were trained.
 *
 * Heads:
 *   XLMWithLMHeadModel  pred_layer.proj: logits = h E^T + b, E tied to
 *                       transformer.embeddings; the loss is the cross-entropy
 *                       of every position against labels [B,T], NOT shifted
 *                       (the MLM objective; -100 ignored)
 *   XLMForSequenceClassification  SequenceSummary: the first (or last) token,
 *                       dropout, sequence_summary.summary [num_labels, emb_dim],
 *                       an optional activation; cross-entropy, or MSE for
 *                       num_labels 1, or multi-label BCE (as BERT's head)
 *   XLMModel            the last hidden states; no loss
 *
 * Config fields: vocab_size (or n_words), emb_dim, n_layers, n_heads,
 * max_position_embeddings, n_langs, use_lang_emb, sinusoidal_embeddings,
 * causal, gelu_activation, dropout, attention_dropout, layer_norm_eps,
 * embed_init_std, init_std, pad_index, is_encoder (must be true), asm (must be
 * false), and for the classifier num_labels/id2label, problem_type,
 * summary_type ("first" or "last"), summary_use_proj and
 * summary_proj_to_labels (both must be true), summary_activation,
 * summary_first_dropout, summary_last_dropout.
 *
 * What it is not: XLM's adaptive softmax (asm), its decoder (is_encoder
 * false; Hugging Face does not build it either), the cache, or the question-
 * answering and token-classification heads. Parameters are declared layer by
 * layer (attentions.0, layer_norm1.0, ffns.0, layer_norm2.0, attentions.1,
 * ...), not in state_dict()'s module order; the names and shapes are the same.
 */
#ifndef TAPEGRAD_NN_XLM_H
#define TAPEGRAD_NN_XLM_H

#include "bert.h"
#include "nn.h"

typedef enum { NN_XLM_MODEL, NN_XLM_LM_HEAD, NN_XLM_SEQ_CLS } nn_xlm_head;

typedef struct nn_xlm_config {
    int vocab_size, emb_dim, n_layers, n_heads, max_position_embeddings, n_langs, pad_index;
    bool use_lang_emb, sinusoidal_embeddings, causal, gelu_activation;
    float dropout, attention_dropout, layer_norm_eps, embed_init_std, init_std;
    /* XLMForSequenceClassification's SequenceSummary */
    int num_labels;
    bool summary_last;        /* summary_type "last" (else "first") */
    bool has_summary_act;
    nn_act summary_act;
    float summary_first_dropout, summary_last_dropout;
    bool problem_type_given;
    nn_bert_problem problem;
} nn_xlm_config;

typedef struct nn_xlm {
    nn_xlm_config cfg;
    nn_xlm_head head;
    nn_embedding embeddings, position_embeddings, lang_embeddings; /* lang_embeddings.w NULL without languages */
    nn_norm layer_norm_emb;
    nn_block *layers;      /* [n_layers] */
    ag_tensor *pred_bias;  /* [vocab_size] pred_layer.proj.bias (the weight is embeddings.w) */
    nn_linear summary;     /* sequence_summary.summary */
    char prefix[32];       /* "transformer." or "" (XLMModel) */
} nn_xlm;

/* Reads the fields above. Returns AG_OK, or AG_ERR_ARG naming the file and
 * the field: a wrong type or range, emb_dim not divisible by n_heads, asm true,
 * is_encoder false, pad_index outside the vocabulary, an unknown
 * summary_type, summary_activation or problem_type, a summary without its
 * projection to the labels. */
ag_status nn_xlm_config_read(const nn_config *c, nn_xlm_config *cfg);
/* Declares every parameter of the class in `ps` (call ag_params_finalize
 * afterwards). A sinusoidal position table is declared (it is in
 * state_dict()) but needs no gradient: backward leaves its gradient zero.
 * Returns AG_OK or the registry's error. */
ag_status nn_xlm_declare(ag_params *ps, nn_xlm *m, const nn_xlm_config *cfg, nn_xlm_head head);
void nn_xlm_free(nn_xlm *m);
/* Hugging Face's _init_weights: embeddings N(0, embed_init_std) with the
 * padding row zero, Linear weights N(0, init_std) and zero biases, unit
 * LayerNorms, and the sinusoidal table when asked for. (transformers 4.31
 * initialises the sinusoidal table in XLMModel.__init__ and then overwrites it
 * with N(0, embed_init_std) in post_init; later versions fixed that, and
 * tapegrad writes the table.) */
void nn_xlm_init_weights(nn_xlm *m, uint64_t seed);
/* pred_layer.proj.weight -> transformer.embeddings.weight for the LM head
 * class. Returns the number written (0 or 1). */
int nn_xlm_aliases(const nn_xlm *m, const char *alias[][2], int cap);

/* ids [B,T]; langs [B,T] or NULL (ignored without language embeddings);
 * token_type_ids [B,T] or NULL (XLM adds embeddings[token_type_ids], as HF
 * does); attention_mask [B,T] or NULL (then a token is real when the row has
 * more than t tokens that are not pad_index, HF's `lengths`); position_ids
 * [B,T] or NULL (0..T-1 for every row; TLM restarts them at a pair's second
 * sentence). Returns the last hidden states [B,T,C], or NULL: a shape that
 * differs from ids, T or a position beyond max_position_embeddings, a language
 * id outside [0, n_langs), an op's error. */
ag_tensor *nn_xlm_forward(ag_ctx *ctx, const nn_xlm *m, const ag_ints *ids, const ag_ints *langs,
                          const ag_ints *token_type_ids, const ag_ints *attention_mask, const ag_ints *position_ids);
/* The class's loss: XLMWithLMHeadModel's unshifted cross-entropy over labels
 * [B,T], or XLMForSequenceClassification's over labels [B] (or [B,num_labels]
 * multi-label). *n_tokens receives the number of counted labels. Returns the
 * [1] loss, or NULL: XLMModel (no loss), labels of the wrong shape, the
 * forward's errors. */
ag_tensor *nn_xlm_loss(ag_ctx *ctx, const nn_xlm *m, const ag_ints *ids, const ag_ints *langs,
                       const ag_ints *token_type_ids, const ag_ints *attention_mask, const ag_ints *position_ids,
                       const ag_ints *labels, int64_t *n_tokens);

#endif
