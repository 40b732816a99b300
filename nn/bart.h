/* bart.h: BART and M2M-100, the encoder-decoders of Hugging Face's
 * modeling_bart.py (BartModel, BartForConditionalGeneration,
 * BartForSequenceClassification) and modeling_m2m_100.py (M2M100Model,
 * M2M100ForConditionalGeneration; see m2m100.h).
 *
 * One network, two flavours, because HF's M2M-100 is BART's code ("Copied
 * from ... Bart") with mBART's layers:
 *
 *                      BART                          M2M-100
 *   layers             post-LN  norm(x + f(x))       pre-LN  x + f(norm(x))
 *   final norm         none                          encoder/decoder.layer_norm
 *   positions          learned, rows 2..T+1          sinusoidal, padding-aware (no parameters)
 *   after embedding    layernorm_embedding           nothing
 *   logits             lm_head(h) + final_logits_bias lm_head(h)
 *
 * Both: model.shared [V,C] is the token embedding of the encoder and the
 * decoder (model.encoder.embed_tokens.weight and model.decoder.embed_tokens.
 * weight are aliases of it) and, with tie_word_embeddings, the LM head;
 * embeddings are multiplied by sqrt(d_model) when scale_embedding is true.
 * Parameter names are exactly each class's state_dict()'s
 * ("model.encoder.layers.0.self_attn.q_proj.weight"), or BartModel's /
 * M2M100Model's without "model.".
 *
 * final_logits_bias [1,V] is a buffer in Hugging Face, not a parameter: it is
 * in state_dict() (so files hold it) but gets no gradient. Here it is declared
 * in the registry, so that it is loaded and saved by name (and counted in
 * ps.total: bart-base's BartForConditionalGeneration holds 139,420,416 + 50,265
 * floats where num_parameters() says 139,420,416), marked requires_grad =
 * false, and enters the forward as a constant copy, so that backward leaves
 * its gradient at zero and AdamW's update of it is zero.
 * Layerdrop (encoder_layerdrop, decoder_layerdrop) is read but not applied:
 * every layer always runs.
 */
#ifndef TAPEGRAD_NN_BART_H
#define TAPEGRAD_NN_BART_H

#include "bert.h" /* nn_bert_problem and the classifier loss BART shares */
#include "nn.h"
#include "s2s_cache.h"

typedef enum {
    NN_BART_MODEL,       /* BartModel / M2M100Model: decoder hidden states, no loss */
    NN_BART_COND_GEN,    /* ...ForConditionalGeneration: LM head and loss over labels */
    NN_BART_SEQ_CLS,     /* BartForSequenceClassification: the decoder state at the last <eos> */
} nn_bart_head;

typedef struct nn_bart_config {
    bool m2m100;                 /* the M2M-100 flavour (see above) */
    int vocab_size, d_model, max_position_embeddings;
    int encoder_layers, decoder_layers, encoder_attention_heads, decoder_attention_heads;
    int encoder_ffn_dim, decoder_ffn_dim;
    int pad_token_id, bos_token_id, eos_token_id, decoder_start_token_id;
    float dropout, attention_dropout, activation_dropout, classifier_dropout, init_std;
    float encoder_layerdrop, decoder_layerdrop; /* read, not applied */
    nn_act act;                  /* activation_function */
    bool scale_embedding, tie_word_embeddings;
    int num_labels;              /* len(id2label), or num_labels, or 3 (BartConfig's default) */
    bool problem_type_given;
    nn_bert_problem problem;
} nn_bart_config;

/* The encoder or the decoder: embeddings, layers, final norm (M2M-100). */
typedef struct nn_bart_stack {
    nn_embedding positions;      /* BART: embed_positions [max_position_embeddings + 2, C] */
    nn_norm layernorm_embedding; /* BART */
    nn_block *layers;            /* [n_layers] */
    int n_layers;
    nn_norm layer_norm;          /* M2M-100: the stack's final norm */
} nn_bart_stack;

typedef struct nn_bart {
    nn_bart_config cfg;
    nn_bart_head head;
    nn_embedding shared;          /* [V,C], padding_idx = pad_token_id */
    nn_bart_stack encoder, decoder;
    ag_tensor *lm_head_w;         /* [V,C]: shared when tied, else lm_head.weight */
    ag_tensor *final_logits_bias; /* BART's ForConditionalGeneration: [1,V], no gradient */
    nn_linear cls_dense, cls_out; /* classification_head.dense [C,C], .out_proj [L,C] */
    char prefix[8];               /* "model." or "" */
    char alias[3][NN_NAME_MAX];   /* the tied names, for nn_bart_aliases */
    int n_alias;
} nn_bart;

/* Reads BartConfig's fields of config.json (d_model, encoder_layers,
 * decoder_layers, encoder/decoder_attention_heads, encoder/decoder_ffn_dim,
 * vocab_size, max_position_embeddings, activation_function, dropout,
 * attention_dropout, activation_dropout, classifier_dropout, init_std,
 * scale_embedding, tie_word_embeddings, pad/bos/eos/decoder_start_token_id,
 * encoder/decoder_layerdrop, id2label/num_labels, problem_type), with
 * BartConfig's defaults. Returns AG_OK or AG_ERR_ARG naming the file and the
 * field (a width not divisible by its heads, an unknown activation, a dropout
 * outside [0, 1), a token id outside the vocabulary, ...). */
ag_status nn_bart_config_read(const nn_config *c, nn_bart_config *cfg);
/* The same reader with either flavour's defaults (m2m100.h's
 * nn_m2m100_config_read is this with m2m100 = true). */
ag_status nn_bart_config_read_flavour(const nn_config *c, bool m2m100, nn_bart_config *cfg);

/* Declares every parameter of the class in `ps` (finalize afterwards).
 * Returns AG_OK; AG_ERR_ARG for a head the flavour has not (M2M-100 has no
 * sequence classifier); or the registry's error. */
ag_status nn_bart_declare(ag_params *ps, nn_bart *m, const nn_bart_config *cfg, nn_bart_head head);
void nn_bart_free(nn_bart *m);
/* _init_weights: N(0, init_std) for Linear and Embedding weights (the padding
 * row of shared zero), zero biases, LayerNorms 1/0, final_logits_bias zero and
 * marked requires_grad = false. Call after ag_params_finalize. */
void nn_bart_init_weights(nn_bart *m, uint64_t seed);
/* The tied names: encoder.embed_tokens.weight and decoder.embed_tokens.weight
 * (always) and lm_head.weight (when tied) -> shared.weight. Returns the
 * number written (at most cap). */
int nn_bart_aliases(const nn_bart *m, const char *alias[][2], int cap);

/* shift_tokens_right: out[:,0] = decoder_start_token_id, out[:,t] = ids[:,t-1],
 * -100 replaced by pad_token_id. ids [B,T] -> a new [B,T] in the arena. */
ag_ints *nn_bart_shift_right(ag_ctx *ctx, const nn_bart_config *cfg, const ag_ints *ids);

/* The encoder: input_ids [B,S], attention_mask [B,S] (1 = token) or NULL ->
 * last_hidden_state [B,S,C]. */
ag_tensor *nn_bart_encode(ag_ctx *ctx, const nn_bart *m, const ag_ints *ids, const ag_ints *attention_mask);
/* The decoder: decoder_input_ids [B,T], decoder_attention_mask [B,T] or NULL,
 * the encoder's states enc [B,S,C] and its attention_mask [B,S] or NULL ->
 * last_hidden_state [B,T,C]. Causal self-attention, cross-attention over enc. */
ag_tensor *nn_bart_decode(ag_ctx *ctx, const nn_bart *m, const ag_ints *dec_ids, const ag_ints *dec_mask,
                          ag_tensor *enc, const ag_ints *attention_mask);
/* The whole model (BartModel.forward): encode, then decode dec_ids (NULL:
 * shift_tokens_right(input_ids), as BartModel does; M2M100Model requires
 * them). Returns the decoder's last_hidden_state [B,T,C]. */
ag_tensor *nn_bart_forward(ag_ctx *ctx, const nn_bart *m, const ag_ints *ids, const ag_ints *attention_mask,
                           const ag_ints *dec_ids, const ag_ints *dec_mask);
/* The LM head: hidden [...,C] -> logits [...,V] (+ final_logits_bias for BART). */
ag_tensor *nn_bart_logits(ag_ctx *ctx, const nn_bart *m, ag_tensor *hidden);

/* The class's loss, as its forward(labels=...) computes it:
 *   COND_GEN  labels [B,T] (-100 ignored); decoder_input_ids = dec_ids, or
 *             shift_tokens_right(labels); mean cross entropy over the counted
 *             tokens.
 *   SEQ_CLS   labels [B] or [B,num_labels]; the decoder runs on dec_ids or
 *             shift_tokens_right(input_ids); the sentence is the decoder state
 *             at the last eos_token_id of each row; then classification_head
 *             (dense, tanh, out_proj) and BERT's loss choice (problem_type).
 * *n_tokens receives the number of counted targets. Returns NULL with an
 * error for the bare model, missing or mis-shaped labels, and rows with
 * different numbers of <eos> (or none), as Hugging Face refuses them. */
ag_tensor *nn_bart_loss(ag_ctx *ctx, const nn_bart *m, const ag_ints *ids, const ag_ints *attention_mask,
                        const ag_ints *dec_ids, const ag_ints *dec_mask, const ag_ints *labels, int64_t *n_tokens);

/* ---------------------------------------------------------------- generation (s2s_cache.h) */

/* After nn_bart_encode of one source (enc [1,S,C]): every decoder layer's
 * cross-attention keys and values into `cross` (made for decoder_layers,
 * decoder_attention_heads, d_model / heads, S). Returns AG_OK or the error. */
ag_status nn_bart_cross_cache_fill(ag_ctx *ctx, const nn_bart *m, ag_tensor *enc, nn_cross_cache *cross);
/* The decoder for the T newest target tokens dec_ids [B,T] at positions
 * self->len .. self->len+T-1 (advanced by T here), the earlier ones' keys and
 * values in `self`, the source's in `cross`: the last T rows of
 * nn_bart_decode over the whole target [B,T,C]. Positions as Hugging Face's
 * cached decoder computes them: BART's learned rows len+2 ..; M2M-100's
 * pad + len + (non-pad count among the new tokens), a pad token at pad
 * (equal to the full forward's as long as the target holds no pad token).
 * Returns NULL with the error. */
ag_tensor *nn_bart_decode_cached(ag_ctx *ctx, const nn_bart *m, const ag_ints *dec_ids, nn_kv_cache *self,
                                 const nn_cross_cache *cross);

#endif
