/* t5.h: T5 (Hugging Face's T5Model, T5ForConditionalGeneration and
 * T5EncoderModel), the original and v1.1.
 *
 * An encoder-decoder of pre-LN blocks with RMS norms and no biases anywhere,
 * no 1/sqrt(d) on the attention scores, and no position embeddings: each
 * stack's first layer owns a table of learned biases, one per (relative
 * distance bucket, head), added to every layer's self-attention scores. The
 * token embedding `shared.weight` is used by both stacks and, in the original
 * T5, by the LM head too (after rescaling the decoder output by d_model^-0.5);
 * v1.1 has its own `lm_head.weight` and a gated-GELU feed-forward.
 *
 * Parameter names are exactly the class's state_dict() names
 * ("encoder.block.0.layer.0.SelfAttention.q.weight"). The aliases
 * encoder.embed_tokens.weight, decoder.embed_tokens.weight and (tied)
 * lm_head.weight all name `shared.weight`.
 */
#ifndef TAPEGRAD_NN_T5_H
#define TAPEGRAD_NN_T5_H

#include "nn.h"
#include "s2s_cache.h"

typedef struct nn_t5_config {
    int vocab_size, d_model, d_kv, d_ff, num_heads;
    int num_layers, num_decoder_layers; /* encoder and decoder depths */
    int relative_attention_num_buckets, relative_attention_max_distance;
    float dropout_rate, layer_norm_epsilon, initializer_factor;
    nn_act act;                /* dense_act_fn: the last word of feed_forward_proj */
    bool gated;                /* feed_forward_proj "gated-<act>" (v1.1: "gated-gelu") */
    bool tie_word_embeddings;  /* true: lm_head is shared.weight and the decoder output is scaled */
    int pad_token_id, eos_token_id;
    int decoder_start_token_id; /* -1 when the config has none (then labels cannot be shifted) */
} nn_t5_config;

typedef enum {
    NN_T5_MODEL,                  /* T5Model: encoder and decoder, no head */
    NN_T5_CONDITIONAL_GENERATION, /* T5ForConditionalGeneration: + LM head and loss */
    NN_T5_ENCODER_MODEL,          /* T5EncoderModel: the encoder alone */
} nn_t5_head;

/* One stack (T5Stack): its blocks, the relative-bias table its first block
 * owns, and the final RMS norm. */
typedef struct nn_t5_stack {
    int n_layer;
    bool decoder;           /* causal self-attention, cross-attention, one-sided buckets */
    nn_block *block;        /* [n_layer] */
    ag_tensor *rel_bias;    /* [num_buckets, NH]: block.0.layer.0.SelfAttention.relative_attention_bias.weight */
    nn_norm final_layer_norm;
} nn_t5_stack;

typedef struct nn_t5 {
    nn_t5_config cfg;
    nn_t5_head head;
    nn_embedding shared;  /* [V,C] */
    nn_t5_stack encoder, decoder; /* decoder unused by T5EncoderModel */
    ag_tensor *lm_head_w; /* [V,C]: shared's weight when tied, else lm_head.weight; NULL without a head */
} nn_t5;

/* Reads T5Config's fields of config.json (vocab_size, d_model, d_kv, d_ff,
 * num_layers, num_decoder_layers, num_heads, relative_attention_num_buckets,
 * relative_attention_max_distance, dropout_rate, layer_norm_epsilon,
 * initializer_factor, feed_forward_proj, tie_word_embeddings, pad_token_id,
 * eos_token_id, decoder_start_token_id), missing ones taking T5Config's
 * defaults (t5-small's shape). Returns AG_OK, or AG_ERR_ARG naming the file
 * and the field: a non-positive size, a bad feed_forward_proj ("relu",
 * "gated-gelu", ...), eps <= 0, a dropout outside [0, 1). */
ag_status nn_t5_config_read(const nn_config *c, nn_t5_config *cfg);

/* Declares every parameter of the class in `ps`, stack by stack and block by
 * block as the class holds them (call ag_params_finalize afterwards). Returns AG_OK, AG_ERR_MEMORY, or the
 * registry's error. */
ag_status nn_t5_declare(ag_params *ps, nn_t5 *m, const nn_t5_config *cfg, nn_t5_head head);
void nn_t5_free(nn_t5 *m);
/* Hugging Face's _init_weights with f = initializer_factor: shared (and an
 * untied lm_head) N(0, f); q N(0, f (d_model d_kv)^-1/2); k, v N(0, f
 * d_model^-1/2); o N(0, f (NH d_kv)^-1/2); relative_attention_bias N(0, f
 * d_model^-1/2); wi (wi_0, wi_1) N(0, f d_model^-1/2); wo N(0, f d_ff^-1/2);
 * every norm weight f. */
void nn_t5_init_weights(nn_t5 *m, uint64_t seed);
/* The tied names a loader must know: encoder.embed_tokens.weight,
 * decoder.embed_tokens.weight (not for T5EncoderModel) and, when tied,
 * lm_head.weight, each -> shared.weight. Returns the number written (<= cap). */
int nn_t5_aliases(const nn_t5 *m, const char *alias[][2], int cap);

/* T5Attention._relative_position_bucket: the bucket of the distance
 * rel = key position - query position. Bidirectional (encoder): half the
 * buckets for rel > 0; else (decoder) only rel <= 0 is told apart. The first
 * half of a side's buckets are exact distances, the rest grow
 * logarithmically up to max_distance, beyond which all share the last one. */
int nn_t5_relative_bucket(int rel, bool bidirectional, int num_buckets, int max_distance);

/* The position bias of a stack for T queries and S keys: table [num_buckets,
 * NH] looked up at each (query, key)'s bucket, as [NH,T,S], recorded on the
 * tape so that the table gets its gradient. Returns NULL on error. */
ag_tensor *nn_t5_position_bias(ag_ctx *ctx, const nn_t5 *m, const nn_t5_stack *s, int64_t T, int64_t S);

/* The encoder: ids [B,S], attention_mask [B,S] (1 = token, 0 = padding) or
 * NULL. Returns its final states [B,S,C] (after final_layer_norm and
 * dropout), or NULL with AG_ERR_ARG for a bad shape or an id outside the
 * vocabulary. */
ag_tensor *nn_t5_encode(ag_ctx *ctx, const nn_t5 *m, const ag_ints *ids, const ag_ints *attention_mask);
/* The decoder: decoder_ids [B,T], decoder_mask [B,T] or NULL, enc [B,S,C]
 * from nn_t5_encode, enc_mask [B,S] or NULL. Returns [B,T,C] (after
 * final_layer_norm and dropout), or NULL; AG_ERR_STATE for T5EncoderModel. */
ag_tensor *nn_t5_decode(ag_ctx *ctx, const nn_t5 *m, const ag_ints *decoder_ids, const ag_ints *decoder_mask,
                        ag_tensor *enc, const ag_ints *enc_mask);
/* The LM head: decoder states [...,C] -> logits [...,V], scaled by
 * d_model^-0.5 first when tied. AG_ERR_STATE when the class has no head. */
ag_tensor *nn_t5_logits(ag_ctx *ctx, const nn_t5 *m, ag_tensor *hidden);
/* T5's _shift_right: [decoder_start, labels[:, :-1]] with -100 replaced by
 * pad_token_id. Returns [B,T] in the arena, or NULL; AG_ERR_ARG when the
 * config has no decoder_start_token_id or labels are not [B,T]. */
ag_ints *nn_t5_shift_right(ag_ctx *ctx, const nn_t5 *m, const ag_ints *labels);
/* T5ForConditionalGeneration(input_ids, attention_mask, labels,
 * decoder_input_ids, decoder_attention_mask).loss: cross-entropy over labels
 * != -100, mean (or sum with AG_REDUCE_SUM). decoder_ids NULL: labels shifted
 * right. *n_tokens (may be NULL) receives the counted labels. Returns the [1]
 * loss or NULL; AG_ERR_STATE for a class without a head. */
ag_tensor *nn_t5_loss(ag_ctx *ctx, const nn_t5 *m, const ag_ints *ids, const ag_ints *attention_mask,
                      const ag_ints *labels, const ag_ints *decoder_ids, const ag_ints *decoder_mask,
                      ag_reduction reduction, int64_t *n_tokens);

/* ---------------------------------------------------------------- generation (s2s_cache.h) */

/* After nn_t5_encode of one source (enc [1,S,C]): every decoder layer's
 * cross-attention keys and values into `cross` (made for num_decoder_layers,
 * num_heads, d_kv, S). Returns AG_OK or the error (AG_ERR_STATE for
 * T5EncoderModel). */
ag_status nn_t5_cross_cache_fill(ag_ctx *ctx, const nn_t5 *m, ag_tensor *enc, nn_cross_cache *cross);
/* The decoder for the T newest target tokens dec_ids [B,T], at positions
 * self->len .. self->len+T-1, the earlier ones' keys and values in `self`
 * (advanced by T here) and the source's in `cross`: the same [B,T,C] as the
 * last T rows of nn_t5_decode over the whole target (no padding). The
 * position bias is that of those queries against every key so far. Returns
 * NULL with the error (a cache that does not fit names its sizes). */
ag_tensor *nn_t5_decode_cached(ag_ctx *ctx, const nn_t5 *m, const ag_ints *dec_ids, nn_kv_cache *self,
                               const nn_cross_cache *cross);

#endif
