/* deberta.h: DeBERTa v1 and v2 (Hugging Face's DebertaModel, DebertaForMaskedLM,
 * DebertaForSequenceClassification and the DebertaV2* classes of the same
 * names; model_type "deberta" and "deberta-v2", the latter also DeBERTa-v3).
 *
 * A post-LN encoder like BERT's whose attention adds, to the content-content
 * score q_i . k_j, two terms that look at the relative position r = i - j
 * through a learned table of relative embeddings (encoder.rel_embeddings):
 *   c2p  content-to-position  q_i . pk[r]    pk = a projection of the table
 *   p2c  position-to-content  k_j . pq[r]    pq = another projection of it
 * each scaled with the content term by 1/sqrt(D * (1 + number of terms)).
 * v1 projects q, k, v with one fused in_proj (no bias) plus q_bias and v_bias;
 * v2 has query_proj/key_proj/value_proj, log-bucketed relative positions,
 * optionally shares the content projections with the position ones
 * (share_att_key), LayerNorms the table (norm_rel_ebd) and runs a convolution
 * beside the first layer (conv_kernel_size). Parameter names are exactly each
 * class's state_dict()'s ("deberta.encoder.layer.0.attention.self.in_proj.weight"),
 * or DebertaModel's without the "deberta." prefix.
 */
#ifndef TAPEGRAD_NN_DEBERTA_H
#define TAPEGRAD_NN_DEBERTA_H

#include "bert.h"
#include "nn.h"

/* Which class. */
typedef enum {
    NN_DEBERTA_MODEL,     /* DebertaModel / DebertaV2Model: the encoder alone */
    NN_DEBERTA_MASKED_LM, /* ...ForMaskedLM: encoder and the MLM head (cls.predictions, tied decoder) */
    NN_DEBERTA_SEQ_CLS,   /* ...ForSequenceClassification: ContextPooler and classifier */
} nn_deberta_head;

typedef struct nn_deberta_config {
    bool v2;                  /* model_type "deberta-v2" */
    int vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size;
    int max_position_embeddings, type_vocab_size, pad_token_id, embedding_size;
    float layer_norm_eps, initializer_range;
    float hidden_dropout_prob, attention_probs_dropout_prob, pooler_dropout, cls_dropout;
    nn_act act;               /* hidden_act */
    nn_act pooler_act;        /* pooler_hidden_act */
    bool relative_attention;
    bool c2p, p2c;            /* pos_att_type ("c2p|p2c" or a list) */
    int n_pos_att;            /* its length: scale_factor = 1 + n_pos_att */
    int max_relative_positions; /* as used: < 1 in the file means max_position_embeddings */
    int position_buckets;     /* v2: > 0 for log buckets; else -1 */
    bool position_biased_input; /* absolute position embeddings added to the input */
    bool share_att_key;       /* v2 */
    bool norm_rel_ebd;        /* v2: "layer_norm" in norm_rel_ebd */
    int conv_kernel_size;     /* v2: 0 = no conv layer */
    nn_act conv_act;          /* v2 */
    int num_labels;
    bool problem_type_given;
    nn_bert_problem problem;
} nn_deberta_config;

/* One encoder layer (DebertaLayer / DebertaV2Layer). */
typedef struct nn_deberta_layer {
    nn_linear in_proj;          /* v1: attention.self.in_proj [3C,C], no bias; per head rows q,k,v */
    ag_tensor *q_bias, *v_bias; /* v1: [C] */
    nn_linear pos_proj;         /* v1 c2p: attention.self.pos_proj [C,C], no bias */
    nn_linear pos_q_proj;       /* v1 p2c: attention.self.pos_q_proj [C,C] */
    nn_linear query, key, value; /* v2: attention.self.query_proj, key_proj, value_proj */
    nn_linear pos_key, pos_query; /* v2 without share_att_key: pos_key_proj, pos_query_proj */
    nn_linear attn_out;         /* attention.output.dense */
    nn_norm attn_ln;            /* attention.output.LayerNorm */
    nn_linear intermediate;     /* intermediate.dense [I,C] */
    nn_linear output;           /* output.dense [C,I] */
    nn_norm output_ln;          /* output.LayerNorm */
} nn_deberta_layer;

typedef struct nn_deberta {
    nn_deberta_config cfg;
    nn_deberta_head head;
    nn_embedding word, position, token_type; /* position: position_biased_input; token_type: type_vocab_size > 0 */
    nn_linear embed_proj;       /* embedding_size != hidden_size */
    nn_norm emb_ln;
    nn_deberta_layer *layer;    /* [num_hidden_layers] */
    nn_embedding rel;           /* encoder.rel_embeddings [2*span, C] */
    nn_norm rel_ln;             /* v2: encoder.LayerNorm */
    ag_tensor *conv_w, *conv_b; /* v2: encoder.conv.conv [C,C,K], [C] */
    nn_norm conv_ln;            /* v2: encoder.conv.LayerNorm */
    /* the MLM head (cls.predictions.*) */
    nn_linear transform;        /* transform.dense [E,C] */
    nn_norm transform_ln;       /* transform.LayerNorm */
    ag_tensor *decoder_b;       /* cls.predictions.bias [V] */
    /* the classifier */
    nn_linear pooler;           /* pooler.dense */
    nn_linear classifier;       /* classifier [L,C] */
    char prefix[16];            /* "deberta." or "" */
} nn_deberta;

/* Reads config.json: the BERT fields (vocab_size, hidden_size,
 * num_hidden_layers, num_attention_heads, intermediate_size,
 * max_position_embeddings, type_vocab_size, pad_token_id, layer_norm_eps,
 * hidden_act, the dropouts, initializer_range, id2label/num_labels,
 * problem_type) and DeBERTa's: relative_attention, pos_att_type,
 * max_relative_positions, position_biased_input, embedding_size,
 * pooler_hidden_size, pooler_hidden_act, pooler_dropout, cls_dropout, and for
 * v2 position_buckets, share_att_key, norm_rel_ebd, conv_kernel_size,
 * conv_act, conv_groups, attention_head_size. Returns AG_OK, or AG_ERR_ARG
 * naming the file and the field (a wrong type, a value out of range, an
 * unknown pos_att_type entry or activation, talking_head, conv_groups other
 * than 1, hidden size not divisible by the heads). */
ag_status nn_deberta_config_read(const nn_config *c, bool v2, nn_deberta_config *cfg);

/* Declares every parameter of the class in `ps` in Hugging Face's
 * named_parameters() order (call ag_params_finalize afterwards). Returns
 * AG_OK, AG_ERR_ARG when the MLM head cannot be tied (v1 with embedding_size
 * != hidden_size), or the registry's error. */
ag_status nn_deberta_declare(ag_params *ps, nn_deberta *m, const nn_deberta_config *cfg, nn_deberta_head head);
void nn_deberta_free(nn_deberta *m);
/* _init_weights: N(0, initializer_range) for every Linear and Embedding weight
 * (the padding row zero), zero biases (q_bias, v_bias and the MLM bias too),
 * LayerNorms 1 and 0; the conv layer, which _init_weights skips, keeps
 * PyTorch's Conv1d default U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
void nn_deberta_init_weights(nn_deberta *m, uint64_t seed);
/* The tied-weight aliases of ...ForMaskedLM (cls.predictions.decoder.weight is
 * the word embedding, cls.predictions.decoder.bias is cls.predictions.bias).
 * Returns the number written (0 or 2, at most cap). */
int nn_deberta_aliases(const nn_deberta *m, const char *alias[][2], int cap);

/* v2's make_log_bucket_position for one relative position r, as Hugging Face
 * computes it in float32: r itself inside (-bucket_size/2, bucket_size/2), else
 * sign(r) * (mid + ceil(log(|r|/mid) / log((max_position-1)/mid) * (mid-1))). */
int nn_deberta_log_bucket(int r, int bucket_size, int max_position);

/* The encoder: ids [B,T]; token_type_ids [B,T] or NULL (all 0);
 * attention_mask [B,T] (1 = token, 0 = padding) or NULL. A padded position
 * neither attends nor is attended to (XSoftmax), and its states are zeroed
 * where Hugging Face zeroes them. Returns the last hidden states [B,T,C], or
 * NULL with ag_error() set (shapes that differ, an id outside the vocabulary,
 * more positions than max_position_embeddings). */
ag_tensor *nn_deberta_forward(ag_ctx *ctx, const nn_deberta *m, const ag_ints *ids, const ag_ints *token_type_ids,
                              const ag_ints *attention_mask);
/* The MLM head: hidden [...,C] -> logits [...,V]. Errors: no MLM head. */
ag_tensor *nn_deberta_mlm_logits(ag_ctx *ctx, const nn_deberta *m, ag_tensor *hidden);
/* ContextPooler and classifier: hidden [B,T,C] -> logits [B,num_labels]. */
ag_tensor *nn_deberta_cls_logits(ag_ctx *ctx, const nn_deberta *m, ag_tensor *hidden);
/* The class's own loss, as its forward(labels=...) computes it:
 *   MASKED_LM: cross entropy over every position, labels [B,T], -100 ignored;
 *   SEQ_CLS:   without problem_type, MSE for one label, else cross entropy over
 *              the rows whose label is >= 0 (labels [B]) or, for labels
 *              [B,num_labels], -mean(sum(log_softmax(logits) * labels));
 *              with problem_type, as BERT's classifier.
 * *n_tokens (may be NULL) receives the number of counted targets. Returns a
 * [1] tensor, or NULL: MODEL has no loss; a missing or mis-shaped label. */
ag_tensor *nn_deberta_loss(ag_ctx *ctx, const nn_deberta *m, const ag_ints *ids, const ag_ints *token_type_ids,
                           const ag_ints *attention_mask, const ag_ints *labels, int64_t *n_tokens);

#endif
