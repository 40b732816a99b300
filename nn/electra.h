/* electra.h: ELECTRA (Hugging Face's ElectraModel, ElectraForPreTraining,
 * ElectraForMaskedLM, ElectraForSequenceClassification).
 *
 * BERT's post-LN encoder behind factorised embeddings: the word, position and
 * token-type tables and their LayerNorm are embedding_size (E) wide, and when
 * E differs from hidden_size (H) a linear map `embeddings_project` [H,E]
 * lifts them into the encoder. There is no pooler. The heads:
 *   ForPreTraining (the discriminator): per-token logits
 *     dense_prediction(act(dense(h))) [B,T], BCE with logits against labels
 *     0 (original token) / 1 (replaced), over the tokens attention_mask keeps;
 *   ForMaskedLM (the generator): LayerNorm(gelu(dense(h))) [B,T,E] times the
 *     word embedding^T plus generator_lm_head.bias, cross entropy;
 *   ForSequenceClassification: out_proj(gelu(dense(h[:,0]))).
 * Parameter names are exactly each class's state_dict()'s
 * ("electra.encoder.layer.0.attention.self.query.weight"), or ElectraModel's
 * without "electra.". The encoder layers are nn_block with BERT's names
 * (blocks.c), so within a layer the registry lists the attention LayerNorm
 * before the projections; names and shapes are Hugging Face's.
 *
 * The factorised embeddings are shared with ALBERT (albert.c), as is the
 * reading of the classifier's label fields.
 */
#ifndef TAPEGRAD_NN_ELECTRA_H
#define TAPEGRAD_NN_ELECTRA_H

#include "bert.h"

/* ---------------------------------------------------------------- shared with ALBERT */

/* Word + token type + position embeddings of width E, then LayerNorm(E) and
 * dropout (BertEmbeddings at embedding_size). */
typedef struct nn_electra_embeddings {
    nn_embedding word;        /* word_embeddings [V,E], padding row pad_token_id */
    nn_embedding position;    /* position_embeddings [P,E] */
    nn_embedding token_type;  /* token_type_embeddings [TV,E] */
    nn_norm ln;               /* LayerNorm [E] */
    float dropout;            /* hidden_dropout_prob */
} nn_electra_embeddings;

/* Declares prefix + "embeddings.word_embeddings.weight", ... (prefix "" or
 * "electra." / "albert."). Returns AG_OK or the registry's error. */
ag_status nn_electra_embeddings_init(ag_params *ps, nn_electra_embeddings *e, const char *prefix, int vocab_size,
                                     int max_positions, int type_vocab_size, int E, int pad_token_id, float eps,
                                     float dropout);
/* N(0, std) tables with the padding row 0; LayerNorm 1 and 0. */
void nn_electra_embeddings_init_weights(nn_electra_embeddings *e, float std, nn_init_rng *r);
/* ids [B,T]; token_type_ids [B,T] or NULL (all 0). Returns [B,T,E], or NULL:
 * ids not [B,T], token_type_ids of another shape, more than max_positions
 * positions, an id outside its table. `who` names the family in messages. */
ag_tensor *nn_electra_embeddings_forward(ag_ctx *ctx, const nn_electra_embeddings *e, const char *who,
                                         const ag_ints *ids, const ag_ints *token_type_ids);



/* ---------------------------------------------------------------- ELECTRA */

typedef enum {
    NN_ELECTRA_MODEL,       /* ElectraModel: the encoder's last hidden states */
    NN_ELECTRA_PRETRAINING, /* ElectraForPreTraining: the discriminator */
    NN_ELECTRA_MASKED_LM,   /* ElectraForMaskedLM: the generator */
    NN_ELECTRA_SEQ_CLS,     /* ElectraForSequenceClassification */
} nn_electra_head;

typedef struct nn_electra_config {
    int vocab_size, embedding_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size;
    int max_position_embeddings, type_vocab_size, pad_token_id;
    float layer_norm_eps, initializer_range;
    float hidden_dropout_prob, attention_probs_dropout_prob, classifier_dropout;
    nn_act act;               /* hidden_act: the encoder and the discriminator head */
    bool tie_word_embeddings; /* the generator's lm head is the word embedding */
    int num_labels;
    bool problem_type_given;
    nn_bert_problem problem;
} nn_electra_config;

typedef struct nn_electra {
    nn_electra_config cfg;
    nn_electra_head head;
    nn_electra_embeddings emb;
    bool has_project;
    nn_linear project;          /* embeddings_project [H,E], when E != H */
    nn_block *layer;            /* [num_hidden_layers] encoder.layer.N (BertLayer) */
    nn_linear disc_dense;       /* discriminator_predictions.dense [H,H] */
    nn_linear disc_prediction;  /* discriminator_predictions.dense_prediction [1,H] */
    nn_norm gen_ln;             /* generator_predictions.LayerNorm [E] */
    nn_linear gen_dense;        /* generator_predictions.dense [E,H] */
    ag_tensor *lm_w;            /* [V,E] generator_lm_head.weight: the word embedding when tied */
    ag_tensor *lm_b;            /* [V] generator_lm_head.bias */
    nn_linear cls_dense;        /* classifier.dense [H,H] */
    nn_linear cls_out;          /* classifier.out_proj [L,H] */
    char prefix[16];            /* "electra." or "" */
} nn_electra;

/* Reads config.json (vocab_size, embedding_size, hidden_size,
 * num_hidden_layers, num_attention_heads, intermediate_size, hidden_act,
 * hidden_dropout_prob, attention_probs_dropout_prob, max_position_embeddings,
 * type_vocab_size, initializer_range, layer_norm_eps, pad_token_id,
 * classifier_dropout, tie_word_embeddings, id2label/num_labels,
 * problem_type; position_embedding_type must be "absolute"), with
 * ElectraConfig's defaults (electra-small). Errors name the file and field. */
ag_status nn_electra_config_read(const nn_config *c, nn_electra_config *cfg);
/* Declares every parameter of the class. Returns AG_OK or the registry's
 * error. */
ag_status nn_electra_declare(ag_params *ps, nn_electra *m, const nn_electra_config *cfg, nn_electra_head head);
void nn_electra_free(nn_electra *m);
/* _init_weights: N(0, initializer_range) for every Linear and Embedding
 * weight, padding row 0, zero biases (the lm head's too), LayerNorms 1/0. */
void nn_electra_init_weights(nn_electra *m, uint64_t seed);
/* generator_lm_head.weight -> the word embedding, when tied. Returns 0 or 1. */
int nn_electra_aliases(const nn_electra *m, const char *alias[][2], int cap);

/* The encoder: ids [B,T], token_type_ids and attention_mask [B,T] or NULL.
 * Returns the last hidden states [B,T,H], or NULL with ag_error() set. */
ag_tensor *nn_electra_forward(ag_ctx *ctx, const nn_electra *m, const ag_ints *ids, const ag_ints *token_type_ids,
                              const ag_ints *attention_mask);
/* The discriminator's logits: hidden [B,T,H] -> [B,T]. Errors: no such head. */
ag_tensor *nn_electra_discriminator_logits(ag_ctx *ctx, const nn_electra *m, ag_tensor *hidden);
/* The generator's logits: hidden [B,T,H] -> [B,T,V]. Errors: no such head. */
ag_tensor *nn_electra_generator_logits(ag_ctx *ctx, const nn_electra *m, ag_tensor *hidden);
/* The classifier's logits: hidden [B,T,H] -> [B,num_labels]. */
ag_tensor *nn_electra_cls_logits(ag_ctx *ctx, const nn_electra *m, ag_tensor *hidden);

/* The class's own loss, as its forward(labels=...) computes it:
 *   PRETRAINING: BCE with logits, labels [B,T] of 0/1, mean over the tokens
 *                whose attention_mask is 1 (all tokens without a mask);
 *   MASKED_LM:   cross entropy, labels [B,T], -100 ignored;
 *   SEQ_CLS:     as BERT's classifier (labels [B], or [B,num_labels]).
 * *n_tokens (may be NULL) receives the number of counted targets. Returns a
 * [1] tensor, or NULL: MODEL has no loss; missing or mis-shaped labels. */
ag_tensor *nn_electra_loss(ag_ctx *ctx, const nn_electra *m, const ag_ints *ids, const ag_ints *token_type_ids,
                           const ag_ints *attention_mask, const ag_ints *labels, int64_t *n_tokens);

#endif
