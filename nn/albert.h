/* albert.h: ALBERT (Hugging Face's AlbertModel, AlbertForMaskedLM,
 * AlbertForPreTraining, AlbertForSequenceClassification).
 *
 * Two ideas make ALBERT small. Factorised embeddings: the tables are
 * embedding_size (E) wide and encoder.embedding_hidden_mapping_in [H,E] lifts
 * them to hidden_size H. Shared layers: there are only num_hidden_groups
 * groups of inner_group_num layers (albert-base-v2: one group of one layer),
 * and the encoder applies group floor(i / (num_hidden_layers /
 * num_hidden_groups)) at step i = 0..num_hidden_layers-1, so the same
 * parameters run many times and their gradients add up over the uses (the
 * tape does that by itself: every use is its own node and backward adds).
 *
 * The layer (AlbertLayer) is BERT's post-LN layer under other names:
 *   a = attention.LayerNorm(h + dropout(attention.dense(attn(query, key, value))))
 *   h = full_layer_layer_norm(a + ffn_output(act(ffn(a))))       (no dropout here)
 * Heads: pooler (a Linear, then tanh, on h[:,0]); predictions (dense [E,H],
 * act, LayerNorm(E), decoder tied to the word embedding, bias); the
 * sentence-order head sop_classifier.classifier on the pooled state; the
 * sequence classifier `classifier` on the pooled state. Parameter names are
 * exactly each class's state_dict()'s ("albert.encoder.albert_layer_groups.0.
 * albert_layers.0.attention.query.weight"), or AlbertModel's without "albert.".
 */
#ifndef TAPEGRAD_NN_ALBERT_H
#define TAPEGRAD_NN_ALBERT_H

#include "electra.h"

typedef enum {
    NN_ALBERT_MODEL,        /* AlbertModel: encoder and pooler */
    NN_ALBERT_MASKED_LM,    /* AlbertForMaskedLM: encoder (no pooler) and predictions */
    NN_ALBERT_PRETRAINING,  /* AlbertForPreTraining: encoder, pooler, predictions, sop_classifier */
    NN_ALBERT_SEQ_CLS,      /* AlbertForSequenceClassification: encoder, pooler, classifier */
} nn_albert_head;

typedef struct nn_albert_config {
    int vocab_size, embedding_size, hidden_size, num_hidden_layers, num_hidden_groups, inner_group_num;
    int num_attention_heads, intermediate_size, max_position_embeddings, type_vocab_size, pad_token_id;
    float layer_norm_eps, initializer_range;
    float hidden_dropout_prob, attention_probs_dropout_prob, classifier_dropout_prob;
    nn_act act;               /* hidden_act (default gelu_new) */
    bool tie_word_embeddings;
    int num_labels;
    bool problem_type_given;
    nn_bert_problem problem;
} nn_albert_config;

/* One shared layer (AlbertLayer). */
typedef struct nn_albert_layer {
    nn_norm full_ln;          /* full_layer_layer_norm [H] */
    nn_mha attn;              /* attention.query/key/value/dense */
    nn_norm attn_ln;          /* attention.LayerNorm [H] */
    nn_ffn ffn;               /* ffn [I,H], ffn_output [H,I] */
} nn_albert_layer;

typedef struct nn_albert {
    nn_albert_config cfg;
    nn_albert_head head;
    nn_electra_embeddings emb;
    nn_linear mapping_in;     /* encoder.embedding_hidden_mapping_in [H,E] */
    nn_albert_layer *layer;   /* [num_hidden_groups * inner_group_num], group-major */
    bool has_pooler;
    nn_linear pooler;         /* pooler [H,H] */
    /* predictions (AlbertMLMHead) */
    ag_tensor *mlm_b;         /* [V] predictions.bias (= predictions.decoder.bias) */
    nn_norm mlm_ln;           /* predictions.LayerNorm [E] */
    nn_linear mlm_dense;      /* predictions.dense [E,H] */
    ag_tensor *decoder_w;     /* [V,E]: the word embedding when tied */
    nn_linear sop;            /* sop_classifier.classifier [num_labels,H] */
    nn_linear classifier;     /* classifier [num_labels,H] */
    char prefix[16];          /* "albert." or "" */
} nn_albert;

/* Reads config.json (vocab_size, embedding_size, hidden_size,
 * num_hidden_layers, num_hidden_groups, inner_group_num, num_attention_heads,
 * intermediate_size, hidden_act, hidden_dropout_prob,
 * attention_probs_dropout_prob, max_position_embeddings, type_vocab_size,
 * initializer_range, layer_norm_eps, classifier_dropout_prob, pad_token_id,
 * tie_word_embeddings, id2label/num_labels, problem_type;
 * position_embedding_type must be "absolute") with AlbertConfig's defaults
 * (albert-xxlarge). Errors name the file and the field. */
ag_status nn_albert_config_read(const nn_config *c, nn_albert_config *cfg);
/* Declares every parameter of the class in Hugging Face's named_parameters()
 * order. Returns AG_OK; AG_ERR_ARG naming num_labels when
 * AlbertForPreTraining's sentence-order head is not 2-way (its loss views the
 * scores as [-1,2]); or the registry's error. */
ag_status nn_albert_declare(ag_params *ps, nn_albert *m, const nn_albert_config *cfg, nn_albert_head head);
void nn_albert_free(nn_albert *m);
/* _init_weights: N(0, initializer_range) for every Linear and Embedding
 * weight, padding row 0, zero biases (predictions.bias too), LayerNorms 1/0. */
void nn_albert_init_weights(nn_albert *m, uint64_t seed);
/* predictions.decoder.weight -> the word embedding (when tied) and
 * predictions.decoder.bias -> predictions.bias. Returns the number written. */
int nn_albert_aliases(const nn_albert *m, const char *alias[][2], int cap);

/* The encoder: ids [B,T], token_type_ids and attention_mask [B,T] or NULL.
 * Returns the last hidden states [B,T,H], or NULL with ag_error() set. */
ag_tensor *nn_albert_forward(ag_ctx *ctx, const nn_albert *m, const ag_ints *ids, const ag_ints *token_type_ids,
                             const ag_ints *attention_mask);
/* tanh(pooler(hidden[:,0])): [B,T,H] -> [B,H]. Errors: no pooler. */
ag_tensor *nn_albert_pool(ag_ctx *ctx, const nn_albert *m, ag_tensor *hidden);
/* AlbertForSequenceClassification's logits [B,num_labels]:
 * classifier(dropout(pool(hidden))). Errors: another class. */
ag_tensor *nn_albert_cls_logits(ag_ctx *ctx, const nn_albert *m, ag_tensor *hidden);
/* The MLM head: [B,T,H] -> [B,T,V]. Errors: no MLM head. */
ag_tensor *nn_albert_mlm_logits(ag_ctx *ctx, const nn_albert *m, ag_tensor *hidden);

/* The class's own loss, as its forward(labels=...) computes it:
 *   MASKED_LM:   cross entropy, labels [B,T], -100 ignored;
 *   PRETRAINING: that plus the sentence-order cross entropy,
 *                sentence_order_label [B] (0 = in order, 1 = swapped);
 *   SEQ_CLS:     as BERT's classifier (labels [B], or [B,num_labels]).
 * *n_tokens (may be NULL) receives the number of counted targets. Returns a
 * [1] tensor, or NULL: MODEL has no loss; missing or mis-shaped labels. */
ag_tensor *nn_albert_loss(ag_ctx *ctx, const nn_albert *m, const ag_ints *ids, const ag_ints *token_type_ids,
                          const ag_ints *attention_mask, const ag_ints *labels, const ag_ints *sentence_order_label,
                          int64_t *n_tokens);

#endif
