/* bert.h: BERT and RoBERTa (Hugging Face's BertModel, BertForMaskedLM,
 * BertForPreTraining, BertForSequenceClassification, and the Roberta* and
 * XLMRoberta* classes of the same names).
 *
 * Post-LN encoder layers, learned absolute positions, token types, the MLM
 * head tied to the word embedding. RoBERTa is the same network with three
 * differences, all handled here behind `roberta`: positions count only real
 * tokens and start at pad_token_id + 1, the MLM head is called lm_head and
 * always uses gelu, and the classification head is two layers on the <s>
 * state instead of the pooler. XLM-R is RoBERTa's code with another
 * vocabulary. Parameter names are exactly each class's state_dict()'s
 * ("bert.encoder.layer.0.attention.self.query.weight"), or BertModel's
 * without the "bert." prefix.
 */
#ifndef TAPEGRAD_NN_BERT_H
#define TAPEGRAD_NN_BERT_H

#include "nn.h"

/* Which class: the encoder alone, or the encoder and a head. */
typedef enum {
    NN_BERT_MODEL,          /* BertModel / RobertaModel: encoder and pooler */
    NN_BERT_MASKED_LM,      /* ...ForMaskedLM: encoder (no pooler) and MLM head */
    NN_BERT_PRETRAINING,    /* BertForPreTraining: encoder, pooler, MLM and next-sentence heads */
    NN_BERT_SEQ_CLS,        /* ...ForSequenceClassification */
} nn_bert_head;

typedef enum {
    NN_BERT_SINGLE_LABEL, /* cross entropy over num_labels classes, labels [B] */
    NN_BERT_REGRESSION,   /* MSE, num_labels 1, labels [B] */
    NN_BERT_MULTI_LABEL,  /* BCE with logits, labels [B,num_labels] of 0/1 */
} nn_bert_problem;

typedef struct nn_bert_config {
    int vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size;
    int max_position_embeddings, type_vocab_size, pad_token_id;
    float layer_norm_eps, initializer_range;
    float hidden_dropout_prob, attention_probs_dropout_prob, classifier_dropout;
    nn_act act;               /* hidden_act */
    bool tie_word_embeddings;
    int num_labels;           /* len(id2label), or num_labels, or 2 */
    bool problem_type_given;  /* the config names problem_type; else it follows the labels */
    nn_bert_problem problem;
    bool roberta;             /* model_type roberta or xlm-roberta */
} nn_bert_config;

/* One post-LN encoder layer (BertLayer). */
typedef struct nn_bert_layer {
    nn_mha attn;                /* attention.self.query/key/value, attention.output.dense */
    nn_norm attn_ln;            /* attention.output.LayerNorm */
    nn_linear intermediate;     /* intermediate.dense [I,C] */
    nn_linear output;           /* output.dense [C,I] */
    nn_norm output_ln;          /* output.LayerNorm */
} nn_bert_layer;

typedef struct nn_bert {
    nn_bert_config cfg;
    nn_bert_head head;
    nn_embedding word, position, token_type;
    nn_norm emb_ln;
    nn_bert_layer *layer;       /* [num_hidden_layers] */
    bool has_pooler;
    nn_linear pooler;           /* pooler.dense */
    /* the MLM head (BERT: cls.predictions.*, RoBERTa: lm_head.*) */
    nn_linear transform;        /* transform.dense / lm_head.dense */
    nn_norm transform_ln;       /* transform.LayerNorm / lm_head.layer_norm */
    ag_tensor *decoder_w;       /* [V,C]: the word embedding when tied */
    ag_tensor *decoder_b;       /* [V]: cls.predictions.bias / lm_head.bias */
    nn_linear seq_relationship; /* cls.seq_relationship [2,C] */
    nn_linear cls_dense;        /* RoBERTa's classifier.dense [C,C] */
    nn_linear classifier;       /* classifier [L,C] (RoBERTa: classifier.out_proj) */
    char prefix[16];            /* "bert.", "roberta." or "" */
    char decoder_w_alias[64], decoder_b_alias[64];
} nn_bert;

/* Reads the fields of config.json (hidden_size, num_hidden_layers,
 * num_attention_heads, intermediate_size, vocab_size, max_position_embeddings,
 * type_vocab_size, pad_token_id, layer_norm_eps, hidden_act, the dropouts,
 * initializer_range, tie_word_embeddings, id2label/num_labels, problem_type,
 * position_embedding_type, which must be "absolute"). roberta: RoBERTa's
 * defaults and positions. Errors name the file and the field. */
ag_status nn_bert_config_read(const nn_config *c, bool roberta, nn_bert_config *cfg);

/* The classifier's label fields of a config, as PretrainedConfig reads them
 * (BERT, ALBERT, ELECTRA, DeBERTa, XLM): num_labels (default 2) or
 * len(id2label) when present, and problem_type (NULL: regression for one
 * label, else single-label; *given false). Errors name the file and the
 * field. */
ag_status nn_bert_read_labels(const nn_config *c, int *num_labels, nn_bert_problem *problem, bool *given);

/* Declares every parameter of the class in `ps`, in Hugging Face's
 * named_parameters() order (call ag_params_finalize afterwards). Returns AG_OK,
 * or the registry's error (a repeated name, out of memory). */
ag_status nn_bert_declare(ag_params *ps, nn_bert *m, const nn_bert_config *cfg, nn_bert_head head);
void nn_bert_free(nn_bert *m);
/* Declares one BertLayer (BigBird's layer too) in its named_parameters()
 * order: <p>encoder.layer.<l>.attention.self.{query,key,value},
 * .attention.output.{dense,LayerNorm}, .intermediate.dense and
 * .output.{dense,LayerNorm}; C wide, I inner, NH heads, LayerNorm eps,
 * attn_dropout on the attention probabilities. qkv_bias: query, key and value
 * carry biases (always in BERT; BigBird's use_bias); the output dense always
 * does. Returns AG_OK or the registry's error. */
ag_status nn_bert_layer_declare(ag_params *ps, nn_bert_layer *L, const char *p, int l, int C, int I, int NH,
                                float eps, float attn_dropout, bool qkv_bias);
/* BertEmbeddings' _init_weights (BERT, BigBird, ELECTRA and ALBERT,
 * BERT2BERT): the word, position and token type tables N(0, std) with their
 * padding rows 0, then the LayerNorm 1 and 0. */
void nn_bert_embeddings_init_weights(const nn_embedding *word, const nn_embedding *position,
                                     const nn_embedding *token_type, const nn_norm *ln, float std, nn_init_rng *r);
/* The MLM head's _init_weights (BERT, BigBird, BERT2BERT's decoder): its bias
 * 0, transform.dense N(0, std) with a zero bias, transform.LayerNorm 1 and 0,
 * and the decoder weight N(0, std) unless it is the word embedding word_w. */
void nn_bert_mlm_head_init_weights(ag_tensor *bias, const nn_linear *transform, const nn_norm *transform_ln,
                                   ag_tensor *decoder_w, const ag_tensor *word_w, float std, nn_init_rng *r);
/* The layer's _init_weights: Linear weights N(0, std), zero biases, LayerNorms 1 and 0. */
void nn_bert_layer_init_weights(const nn_bert_layer *L, float std, nn_init_rng *r);

/* Hugging Face's _init_weights: N(0, initializer_range) for every Linear and
 * Embedding weight, the padding rows of embeddings that have one set to zero,
 * zero biases (the MLM bias too), LayerNorms 1 and 0. */
void nn_bert_init_weights(nn_bert *m, uint64_t seed);
/* The tied-weight aliases a loader must know: the decoder's weight is the word
 * embedding, the decoder's bias is the head's bias. Returns the number written
 * (0 to 2, at most cap). */
int nn_bert_aliases(const nn_bert *m, const char *alias[][2], int cap);

/* The encoder: ids [B,T]; token_type_ids [B,T] or NULL (all 0);
 * attention_mask [B,T] (1 = token, 0 = padding, never attended) or NULL.
 * Returns the last hidden states [B,T,C], or NULL with ag_error() set (shapes
 * that differ, an id outside the vocabulary, more positions than
 * max_position_embeddings). */
ag_tensor *nn_bert_forward(ag_ctx *ctx, const nn_bert *m, const ag_ints *ids, const ag_ints *token_type_ids,
                           const ag_ints *attention_mask);
/* The pooler: tanh(dense(hidden[:,0])), [B,T,C] -> [B,C]. Errors: no pooler. */
ag_tensor *nn_bert_pool(ag_ctx *ctx, const nn_bert *m, ag_tensor *hidden);
/* The MLM head: hidden [...,C] -> logits [...,V]. Errors: no MLM head. */
ag_tensor *nn_bert_mlm_logits(ag_ctx *ctx, const nn_bert *m, ag_tensor *hidden);
/* The classification head: hidden [B,T,C] -> logits [B,num_labels]. */
ag_tensor *nn_bert_cls_logits(ag_ctx *ctx, const nn_bert *m, ag_tensor *hidden);

/* A sequence classifier's loss as Hugging Face's ...ForSequenceClassification
 * computes it from logits [B,L]: problem (or, when the config names none,
 * multi-label for labels [B,L] with L > 1) picks cross entropy (labels [B]),
 * MSE (L = 1, labels [B] as floats) or BCE with logits (labels [B,L] of 0/1).
 * *n_tokens (may be NULL) receives the number of targets. Returns a [1]
 * tensor, or NULL for NULL inputs or labels of the wrong shape. Shared by the
 * families that copy BERT's head (RoBERTa, DistilBERT). */
ag_tensor *nn_bert_classifier_loss(ag_ctx *ctx, ag_tensor *logits, const ag_ints *labels, nn_bert_problem problem,
                                   bool problem_type_given, int64_t *n_tokens);

/* The class's own loss, as its forward(labels=...) computes it:
 *   MASKED_LM:   cross entropy over every position, labels [B,T], -100 ignored;
 *   PRETRAINING: that plus next-sentence cross entropy, next_sentence_label [B];
 *   SEQ_CLS:     labels [B] (cross entropy, or MSE when num_labels is 1) or
 *                [B,num_labels] (multi-label BCE).
 * *n_tokens (may be NULL) receives the number of counted targets. Returns a
 * [1] tensor, or NULL: MODEL has no loss; a missing or mis-shaped label. */
ag_tensor *nn_bert_loss(ag_ctx *ctx, const nn_bert *m, const ag_ints *ids, const ag_ints *token_type_ids,
                        const ag_ints *attention_mask, const ag_ints *labels, const ag_ints *next_sentence_label,
                        int64_t *n_tokens);

#endif
