/* encoder_decoder.h: BERT2BERT, Hugging Face's EncoderDecoderModel built from
 * two BERT configs (transformers 4.31, modeling_encoder_decoder.py).
 *
 * The encoder is a BertModel (with its pooler, which EncoderDecoderModel
 * builds and never uses); the decoder is a BertLMHeadModel: a BertModel
 * without pooler whose layers have causal self-attention and a
 * cross-attention over the encoder's states, and the MLM-style head tied to
 * the decoder's word embedding. Parameter names are the state_dict()'s:
 *
 *   encoder.embeddings.word_embeddings.weight
 *   encoder.encoder.layer.N.attention.self.query.weight ...
 *   encoder.pooler.dense.weight
 *   decoder.bert.embeddings...
 *   decoder.bert.encoder.layer.N.attention.self.query.weight ...
 *   decoder.bert.encoder.layer.N.crossattention.self.query/key/value.weight
 *   decoder.bert.encoder.layer.N.crossattention.output.dense/LayerNorm
 *   decoder.cls.predictions.bias, .transform.dense, .transform.LayerNorm
 *   (decoder.cls.predictions.decoder.weight/bias: aliases of the decoder's
 *    word embedding and of cls.predictions.bias)
 *
 * Every layer, encoder or decoder, is an nn_block in post-LN order with
 * BertLayer's names; the sub-configs are read by nn_bert_config_read.
 *
 * What it is not: encoder-decoder pairs of other families, encoders whose
 * width differs from the decoder's (Hugging Face's enc_to_dec_proj), or
 * tie_encoder_decoder; the config reader refuses those by name.
 */
#ifndef TAPEGRAD_NN_ENCODER_DECODER_H
#define TAPEGRAD_NN_ENCODER_DECODER_H

#include "bert.h"

typedef struct nn_bert2bert_config {
    nn_bert_config enc, dec;    /* config.json's "encoder" and "decoder" objects */
    int decoder_start_token_id; /* the first decoder input (top-level field, required) */
    int pad_token_id;           /* replaces -100 in the shifted labels (top-level field, required) */
} nn_bert2bert_config;

/* BertEmbeddings: word + token_type + position, LayerNorm, dropout. */
typedef struct nn_bert2bert_embeddings {
    nn_embedding word, position, token_type;
    nn_norm ln;
} nn_bert2bert_embeddings;

typedef struct nn_bert2bert {
    nn_bert2bert_config cfg;
    nn_bert2bert_embeddings enc_emb, dec_emb;
    nn_block *enc_layer;        /* [enc.num_hidden_layers] encoder.encoder.layer.N */
    nn_block *dec_layer;        /* [dec.num_hidden_layers] decoder.bert.encoder.layer.N, with cross-attention */
    nn_linear enc_pooler;       /* encoder.pooler.dense (unused by the loss, as in Hugging Face) */
    nn_linear transform;        /* decoder.cls.predictions.transform.dense [C,C] */
    nn_norm transform_ln;       /* decoder.cls.predictions.transform.LayerNorm */
    ag_tensor *decoder_w;       /* [V,C]: the decoder's word embedding when tied */
    ag_tensor *decoder_b;       /* [V]: decoder.cls.predictions.bias */
} nn_bert2bert;

/* Reads an EncoderDecoderModel config.json: "model_type" "encoder-decoder",
 * "encoder" and "decoder" objects of model_type "bert" (their fields as
 * nn_bert_config_read reads them), the decoder with "is_decoder" and
 * "add_cross_attention" true, the same hidden_size on both sides, top-level
 * "decoder_start_token_id" and "pad_token_id", "tie_encoder_decoder" false.
 * Returns AG_OK or AG_ERR_ARG naming the file and the field
 * ("decoder.add_cross_attention"). */
ag_status nn_bert2bert_config_read(const nn_config *c, nn_bert2bert_config *cfg);

/* Declares every parameter in Hugging Face's order of modules (encoder, then
 * decoder) under the names above. Returns AG_OK or the registry's error. */
ag_status nn_bert2bert_declare(ag_params *ps, nn_bert2bert *m, const nn_bert2bert_config *cfg);
void nn_bert2bert_free(nn_bert2bert *m);
/* Each side's BertPreTrainedModel._init_weights: N(0, initializer_range) for
 * Linear and Embedding weights (padding rows zero), zero biases, LayerNorm
 * 1 and 0, the head's bias zero. */
void nn_bert2bert_init_weights(nn_bert2bert *m, uint64_t seed);
/* The tied-weight aliases (decoder.cls.predictions.decoder.weight -> the
 * decoder's word embedding when tied, decoder.cls.predictions.decoder.bias ->
 * decoder.cls.predictions.bias). Returns the number written (at most cap). */
int nn_bert2bert_aliases(const nn_bert2bert *m, const char *alias[][2], int cap);

/* shift_tokens_right: labels [B,T] -> decoder_input_ids [B,T] in the arena,
 * out[:,0] = decoder_start_token_id, out[:,t] = labels[:,t-1], -100 -> pad.
 * Returns NULL for NULL labels or labels that are not [B,T]. */
ag_ints *nn_bert2bert_shift_right(ag_ctx *ctx, const nn_bert2bert *m, const ag_ints *labels);

/* The encoder (a BertModel): ids [B,S], token_type_ids [B,S] or NULL,
 * attention_mask [B,S] or NULL. Returns the last hidden states [B,S,C], or
 * NULL (shapes, ids outside the vocabulary, too many positions). */
ag_tensor *nn_bert2bert_encode(ag_ctx *ctx, const nn_bert2bert *m, const ag_ints *ids, const ag_ints *token_type_ids,
                               const ag_ints *attention_mask);
/* The decoder's states: dec_ids [B,T], dec_mask [B,T] or NULL (causal
 * self-attention, padding never attended), enc [B,S,C], enc_mask [B,S] or
 * NULL (the encoder's padding, never attended by the cross-attention).
 * Returns [B,T,C], or NULL. */
ag_tensor *nn_bert2bert_decode(ag_ctx *ctx, const nn_bert2bert *m, const ag_ints *dec_ids, const ag_ints *dec_mask,
                               ag_tensor *enc, const ag_ints *enc_mask);
/* The decoder's head: hidden [...,C] -> logits [...,V]. */
ag_tensor *nn_bert2bert_logits(ag_ctx *ctx, const nn_bert2bert *m, ag_tensor *hidden);

/* EncoderDecoderModel's loss: decoder_input_ids = dec_ids, or labels shifted
 * right when dec_ids is NULL; cross entropy of the decoder's logits against
 * labels (no shift of the logits), -100 ignored, mean over counted targets.
 * *n_tokens (may be NULL) receives that count. Returns a [1] tensor, or NULL:
 * missing labels, shapes that differ, an op's error. */
ag_tensor *nn_bert2bert_loss(ag_ctx *ctx, const nn_bert2bert *m, const ag_ints *ids, const ag_ints *token_type_ids,
                             const ag_ints *attention_mask, const ag_ints *labels, const ag_ints *dec_ids,
                             const ag_ints *dec_mask, int64_t *n_tokens);

#endif
