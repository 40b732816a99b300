/* distilbert.h: DistilBERT (Hugging Face's DistilBertModel,
 * DistilBertForMaskedLM, DistilBertForSequenceClassification).
 *
 * BERT's post-LN encoder without token types or pooler: word + learned
 * position embeddings, layers of q_lin/k_lin/v_lin/out_lin attention,
 * sa_layer_norm, ffn.lin1/lin2, output_layer_norm (every LayerNorm eps 1e-12).
 * The MLM head is vocab_transform, the activation, vocab_layer_norm and
 * vocab_projector (tied to the word embedding, own bias); the classifier is
 * classifier(dropout(relu(pre_classifier(h[:,0])))). Parameter names are
 * exactly each class's state_dict()'s ("distilbert.transformer.layer.0.
 * attention.q_lin.weight"), or DistilBertModel's without "distilbert.".
 */
#ifndef TAPEGRAD_NN_DISTILBERT_H
#define TAPEGRAD_NN_DISTILBERT_H

#include "bert.h"

typedef struct nn_distilbert_config {
    int vocab_size, dim, n_layers, n_heads, hidden_dim, max_position_embeddings, pad_token_id;
    float initializer_range, dropout, attention_dropout, seq_classif_dropout;
    nn_act act;                 /* activation */
    bool tie_word_embeddings;
    int num_labels;             /* len(id2label), or num_labels, or 2 */
    bool problem_type_given;
    nn_bert_problem problem;
} nn_distilbert_config;

typedef struct nn_distilbert_layer {
    nn_mha attention;           /* attention.q_lin/k_lin/v_lin/out_lin */
    nn_norm sa_layer_norm;
    nn_linear lin1, lin2;       /* ffn.lin1 [H,C], ffn.lin2 [C,H] */
    nn_norm output_layer_norm;
} nn_distilbert_layer;

typedef struct nn_distilbert {
    nn_distilbert_config cfg;
    nn_bert_head head;          /* MODEL, MASKED_LM or SEQ_CLS */
    nn_embedding word, position;
    nn_norm emb_ln;
    nn_distilbert_layer *layer; /* [n_layers] */
    nn_linear vocab_transform;
    nn_norm vocab_layer_norm;
    ag_tensor *projector_w;     /* [V,C]: the word embedding when tied */
    ag_tensor *projector_b;     /* [V] vocab_projector.bias */
    nn_linear pre_classifier, classifier;
    char prefix[16];            /* "distilbert." or "" */
} nn_distilbert;

/* Reads config.json (dim, n_layers, n_heads, hidden_dim, vocab_size,
 * max_position_embeddings, pad_token_id, activation, dropout,
 * attention_dropout, seq_classif_dropout, initializer_range,
 * tie_word_embeddings, id2label/num_labels, problem_type;
 * sinusoidal_pos_embds must be false). Errors name the file and the field. */
ag_status nn_distilbert_config_read(const nn_config *c, nn_distilbert_config *cfg);
/* Declares every parameter (head: NN_BERT_MODEL, _MASKED_LM or _SEQ_CLS).
 * Returns AG_OK, AG_ERR_ARG for another head, or the registry's error. */
ag_status nn_distilbert_declare(ag_params *ps, nn_distilbert *m, const nn_distilbert_config *cfg, nn_bert_head head);
void nn_distilbert_free(nn_distilbert *m);
/* _init_weights: N(0, initializer_range) weights, padding row 0, zero biases, LayerNorms 1/0. */
void nn_distilbert_init_weights(nn_distilbert *m, uint64_t seed);
/* vocab_projector.weight -> the word embedding (when tied). Returns 0 or 1. */
int nn_distilbert_aliases(const nn_distilbert *m, const char *alias[][2], int cap);
/* ids [B,T], attention_mask [B,T] or NULL -> last hidden states [B,T,C]. */
ag_tensor *nn_distilbert_forward(ag_ctx *ctx, const nn_distilbert *m, const ag_ints *ids,
                                 const ag_ints *attention_mask);
/* DistilBertForSequenceClassification's logits [B,num_labels] from the last
 * hidden states [B,T,C]: classifier(dropout(relu(pre_classifier(h[:,0])))).
 * NULL with an error for the other classes (or a NULL hidden). */
ag_tensor *nn_distilbert_cls_logits(ag_ctx *ctx, const nn_distilbert *m, ag_tensor *hidden);
/* The class's loss: MLM cross entropy (labels [B,T], -100 ignored) or the
 * classifier's (labels [B] or [B,num_labels], as BERT's). *n_tokens receives
 * the number of counted targets. NULL with an error for DistilBertModel or
 * mis-shaped labels. */
ag_tensor *nn_distilbert_loss(ag_ctx *ctx, const nn_distilbert *m, const ag_ints *ids, const ag_ints *attention_mask,
                              const ag_ints *labels, int64_t *n_tokens);

#endif
