/* bert.c: BERT and RoBERTa, step for step as Hugging Face's modeling_bert.py
 * and modeling_roberta.py (4.31).
 *
 *   h = word[ids] + token_type[tt] + position[pos]            [B,T,C]
 *   h = dropout(LayerNorm(h))
 *   for each layer (post-LN: the norm comes after each residual sum):
 *     a = attention.output.dense(attention(query(h), key(h), value(h)))
 *     h = attention.output.LayerNorm(h + dropout(a))
 *     f = output.dense(act(intermediate.dense(h)))
 *     h = output.LayerNorm(h + dropout(f))
 *   pooled = tanh(pooler.dense(h[:,0]))                        [B,C]
 *   MLM logits = LayerNorm(act(transform.dense(h))) word^T + bias   [B,T,V]
 *
 * Padding: attention_mask 0 marks a key no query may attend to (Hugging Face
 * adds the dtype's minimum to its score; softmax then gives it exactly 0).
 * Padded query rows are computed like any other and ignored by the loss.
 *
 * RoBERTa: pos = pad + cumsum(ids != pad) at real tokens and pad at padding
 * (create_position_ids_from_input_ids), so positions start at pad + 1; the
 * MLM head is gelu whatever hidden_act says; the classifier is
 * out_proj(dropout(tanh(dense(dropout(h[:,0]))))) and there is no pooler.
 */
#include "bert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

ag_status nn_bert_read_labels(const nn_config *c, int *num_labels, nn_bert_problem *problem, bool *given) {
    const char *type;
    ag_status st;
    if ((st = nn_config_int(c, "num_labels", 2, 1, 1 << 20, num_labels)) ||
        (st = nn_config_str(c, "problem_type", NULL, &type)))
        return st;
    /* PretrainedConfig: num_labels is len(id2label) when the config has one,
     * which is how save_pretrained writes it */
    const cJSON *id2label = cJSON_GetObjectItemCaseSensitive(c->json, "id2label");
    if (id2label && !cJSON_IsNull(id2label)) {
        if (!cJSON_IsObject(id2label) || cJSON_GetArraySize(id2label) < 1)
            return ag_fail(AG_ERR_ARG, "config %s: field \"id2label\" must be a non-empty object", c->path);
        *num_labels = cJSON_GetArraySize(id2label);
    }
    *given = type != NULL;
    *problem = *num_labels == 1 ? NN_BERT_REGRESSION : NN_BERT_SINGLE_LABEL;
    if (!type) return AG_OK;
    if (strcmp(type, "regression") == 0) *problem = NN_BERT_REGRESSION;
    else if (strcmp(type, "single_label_classification") == 0) *problem = NN_BERT_SINGLE_LABEL;
    else if (strcmp(type, "multi_label_classification") == 0) *problem = NN_BERT_MULTI_LABEL;
    else return ag_fail(AG_ERR_ARG, "config %s: field \"problem_type\": unknown '%s' (regression, "
                        "single_label_classification, multi_label_classification)", c->path, type);
    return AG_OK;
}

ag_status nn_bert_config_read(const nn_config *c, bool roberta, nn_bert_config *g) {
    memset(g, 0, sizeof *g);
    g->roberta = roberta;
    double range, pc;
    const char *pos_type;
    ag_status st;
    if ((st = nn_config_int(c, "vocab_size", 30522, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "hidden_size", 768, 1, 1 << 16, &g->hidden_size)) ||
        (st = nn_config_int(c, "num_hidden_layers", 12, 1, 4096, &g->num_hidden_layers)) ||
        (st = nn_config_int(c, "num_attention_heads", 12, 1, 4096, &g->num_attention_heads)) ||
        (st = nn_config_int(c, "intermediate_size", 3072, 1, 1 << 20, &g->intermediate_size)) ||
        (st = nn_config_int(c, "max_position_embeddings", 512, 1, 1 << 20, &g->max_position_embeddings)) ||
        (st = nn_config_int(c, "type_vocab_size", 2, 1, 1 << 16, &g->type_vocab_size)) ||
        (st = nn_config_int(c, "pad_token_id", roberta ? 1 : 0, 0, 1 << 24, &g->pad_token_id)) ||
        (st = nn_config_positive(c, "layer_norm_eps", 1e-12, &g->layer_norm_eps)) ||
        (st = nn_config_num(c, "initializer_range", 0.02, &range)) ||
        (st = nn_config_prob(c, "hidden_dropout_prob", 0.1, &g->hidden_dropout_prob)) ||
        (st = nn_config_prob(c, "attention_probs_dropout_prob", 0.1, &g->attention_probs_dropout_prob)) ||
        (st = nn_config_num(c, "classifier_dropout", -1.0, &pc)) || /* null: hidden_dropout_prob */
        (st = nn_config_act(c, "hidden_act", "gelu", &g->act)) ||
        (st = nn_config_str(c, "position_embedding_type", "absolute", &pos_type)) ||
        (st = nn_config_bool(c, "tie_word_embeddings", true, &g->tie_word_embeddings)) ||
        (st = nn_bert_read_labels(c, &g->num_labels, &g->problem, &g->problem_type_given)))
        return st;
    if (g->hidden_size % g->num_attention_heads)
        return ag_fail(AG_ERR_ARG, "config %s: hidden_size %d is not divisible by num_attention_heads %d", c->path,
                       g->hidden_size, g->num_attention_heads);
    if (strcmp(pos_type, "absolute") != 0)
        return ag_fail(AG_ERR_ARG, "config %s: field \"position_embedding_type\" is '%s'; tapegrad builds only "
                       "\"absolute\"", c->path, pos_type);
    if (g->pad_token_id >= g->vocab_size)
        return ag_fail(AG_ERR_ARG, "config %s: field \"pad_token_id\" %d is outside the vocabulary (vocab_size %d)",
                       c->path, g->pad_token_id, g->vocab_size);
    if (roberta && g->max_position_embeddings <= g->pad_token_id + 1)
        return ag_fail(AG_ERR_ARG, "config %s: field \"max_position_embeddings\" %d leaves no position after "
                       "pad_token_id %d (RoBERTa's positions start at pad_token_id + 1)", c->path,
                       g->max_position_embeddings, g->pad_token_id);
    if (pc >= 1) return ag_fail(AG_ERR_ARG, "config %s: field \"classifier_dropout\" must be in [0, 1)", c->path);
    g->initializer_range = (float)range;
    g->classifier_dropout = pc < 0 ? g->hidden_dropout_prob : (float)pc;
    return AG_OK;
}

/* ---------------------------------------------------------------- parameters */

ag_status nn_bert_layer_declare(ag_params *ps, nn_bert_layer *L, const char *p, int l, int C, int I, int NH,
                                float eps, float attn_dropout, bool qkv_bias) {
    char name[NN_NAME_MAX];
    memset(L, 0, sizeof *L);
    nn_mha *a = &L->attn; /* nn_mha_init's separate q, k, v, o, with the biases chosen one by one */
    a->d_model = C, a->n_head = NH, a->d_head = C / NH;
    a->attn_dropout = attn_dropout;
    ag_status st;
    if ((st = nn_linear_init(ps, &a->q, nn_name(name, "%sencoder.layer.%d.attention.self.query", p, l), C, C,
                             qkv_bias, AG_LINEAR_OUT_IN)) ||
        (st = nn_linear_init(ps, &a->k, nn_name(name, "%sencoder.layer.%d.attention.self.key", p, l), C, C,
                             qkv_bias, AG_LINEAR_OUT_IN)) ||
        (st = nn_linear_init(ps, &a->v, nn_name(name, "%sencoder.layer.%d.attention.self.value", p, l), C, C,
                             qkv_bias, AG_LINEAR_OUT_IN)) ||
        (st = nn_linear_init(ps, &a->o, nn_name(name, "%sencoder.layer.%d.attention.output.dense", p, l), C, C, true,
                             AG_LINEAR_OUT_IN)) ||
        (st = nn_layernorm_init(ps, &L->attn_ln, nn_name(name, "%sencoder.layer.%d.attention.output.LayerNorm", p, l),
                                C, eps)) ||
        (st = nn_linear_init(ps, &L->intermediate, nn_name(name, "%sencoder.layer.%d.intermediate.dense", p, l), C, I,
                             true, AG_LINEAR_OUT_IN)) ||
        (st = nn_linear_init(ps, &L->output, nn_name(name, "%sencoder.layer.%d.output.dense", p, l), I, C, true,
                             AG_LINEAR_OUT_IN)) ||
        (st = nn_layernorm_init(ps, &L->output_ln, nn_name(name, "%sencoder.layer.%d.output.LayerNorm", p, l), C,
                                eps)))
        return st;
    return AG_OK;
}

void nn_bert_embeddings_init_weights(const nn_embedding *word, const nn_embedding *position,
                                     const nn_embedding *token_type, const nn_norm *ln, float std, nn_init_rng *r) {
    nn_init_embedding(word, std, r);
    nn_init_embedding(position, std, r);
    nn_init_embedding(token_type, std, r);
    nn_init_norm(ln);
}

void nn_bert_mlm_head_init_weights(ag_tensor *bias, const nn_linear *transform, const nn_norm *transform_ln,
                                   ag_tensor *decoder_w, const ag_tensor *word_w, float std, nn_init_rng *r) {
    nn_init_const(bias, 0);
    nn_init_linear(transform, std, r);
    nn_init_norm(transform_ln);
    if (decoder_w != word_w) nn_init_normal(decoder_w, std, r);
}

void nn_bert_layer_init_weights(const nn_bert_layer *L, float std, nn_init_rng *r) {
    nn_init_linear(&L->attn.q, std, r), nn_init_linear(&L->attn.k, std, r);
    nn_init_linear(&L->attn.v, std, r), nn_init_linear(&L->attn.o, std, r);
    nn_init_norm(&L->attn_ln);
    nn_init_linear(&L->intermediate, std, r), nn_init_linear(&L->output, std, r);
    nn_init_norm(&L->output_ln);
}

/* The MLM head. named_parameters() yields the head's own bias first (it is a
 * parameter of the head module itself), then its submodules. */
static ag_status declare_mlm_head(ag_params *ps, nn_bert *m) {
    const nn_bert_config *cfg = &m->cfg;
    const int C = cfg->hidden_size, V = cfg->vocab_size;
    const char *h = cfg->roberta ? "lm_head" : "cls.predictions";
    char name[NN_NAME_MAX];
    ag_status st;
    if (!(m->decoder_b = ag_params_add(ps, nn_name(name, "%s.bias", h), 1, AG_SHAPE(V)))) return ag_error_status();
    if ((st = nn_linear_init(ps, &m->transform, nn_name(name, cfg->roberta ? "%s.dense" : "%s.transform.dense", h), C,
                             C, true, AG_LINEAR_OUT_IN)) ||
        (st = nn_layernorm_init(ps, &m->transform_ln,
                                nn_name(name, cfg->roberta ? "%s.layer_norm" : "%s.transform.LayerNorm", h), C,
                                cfg->layer_norm_eps)))
        return st;
    snprintf(m->decoder_w_alias, sizeof m->decoder_w_alias, "%s.decoder.weight", h);
    snprintf(m->decoder_b_alias, sizeof m->decoder_b_alias, "%s.decoder.bias", h);
    if (cfg->tie_word_embeddings) m->decoder_w = m->word.w;
    else if (!(m->decoder_w = ag_params_add(ps, m->decoder_w_alias, 2, AG_SHAPE(V, C)))) return ag_error_status();
    return AG_OK;
}

ag_status nn_bert_declare(ag_params *ps, nn_bert *m, const nn_bert_config *cfg, nn_bert_head head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->head = head;
    /* every class but the bare model keeps the encoder under "bert." */
    snprintf(m->prefix, sizeof m->prefix, "%s", head == NN_BERT_MODEL ? "" : cfg->roberta ? "roberta." : "bert.");
    /* HF builds the pooler except for MLM, and for RoBERTa's classifier */
    m->has_pooler = head == NN_BERT_MODEL || head == NN_BERT_PRETRAINING || (head == NN_BERT_SEQ_CLS && !cfg->roberta);
    const char *p = m->prefix;
    const int C = cfg->hidden_size, pad = cfg->pad_token_id;
    char name[NN_NAME_MAX];
    ag_status st;
    /* BERT's position embedding has no padding row; RoBERTa's has (at pad) */
    if ((st = nn_embedding_init(ps, &m->word, nn_name(name, "%sembeddings.word_embeddings", p), cfg->vocab_size, C,
                                pad)) ||
        (st = nn_embedding_init(ps, &m->position, nn_name(name, "%sembeddings.position_embeddings", p),
                                cfg->max_position_embeddings, C, cfg->roberta ? pad : -1)) ||
        (st = nn_embedding_init(ps, &m->token_type, nn_name(name, "%sembeddings.token_type_embeddings", p),
                                cfg->type_vocab_size, C, -1)) ||
        (st = nn_layernorm_init(ps, &m->emb_ln, nn_name(name, "%sembeddings.LayerNorm", p), C, cfg->layer_norm_eps)))
        return st;
    m->layer = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layer);
    if (!m->layer) return ag_fail(AG_ERR_MEMORY, "bert: out of memory");
    for (int l = 0; l < cfg->num_hidden_layers; ++l)
        if ((st = nn_bert_layer_declare(ps, &m->layer[l], p, l, C, cfg->intermediate_size, cfg->num_attention_heads,
                                        cfg->layer_norm_eps, cfg->attention_probs_dropout_prob, true)))
            return st;
    if (m->has_pooler &&
        (st = nn_linear_init(ps, &m->pooler, nn_name(name, "%spooler.dense", p), C, C, true, AG_LINEAR_OUT_IN)))
        return st;
    switch (head) {
    case NN_BERT_MODEL: break;
    case NN_BERT_MASKED_LM: return declare_mlm_head(ps, m);
    case NN_BERT_PRETRAINING:
        if ((st = declare_mlm_head(ps, m))) return st;
        return nn_linear_init(ps, &m->seq_relationship, "cls.seq_relationship", C, 2, true, AG_LINEAR_OUT_IN);
    case NN_BERT_SEQ_CLS:
        if (!cfg->roberta)
            return nn_linear_init(ps, &m->classifier, "classifier", C, cfg->num_labels, true, AG_LINEAR_OUT_IN);
        if ((st = nn_linear_init(ps, &m->cls_dense, "classifier.dense", C, C, true, AG_LINEAR_OUT_IN))) return st;
        return nn_linear_init(ps, &m->classifier, "classifier.out_proj", C, cfg->num_labels, true, AG_LINEAR_OUT_IN);
    }
    return AG_OK;
}

void nn_bert_free(nn_bert *m) {
    free(m->layer);
    m->layer = NULL;
}

int nn_bert_aliases(const nn_bert *m, const char *alias[][2], int cap) {
    if (m->head != NN_BERT_MASKED_LM && m->head != NN_BERT_PRETRAINING) return 0;
    int n = 0;
    if (m->cfg.tie_word_embeddings && n < cap) alias[n][0] = m->decoder_w_alias, alias[n++][1] = m->word.w->name;
    if (n < cap) alias[n][0] = m->decoder_b_alias, alias[n++][1] = m->decoder_b->name;
    return n;
}

void nn_bert_init_weights(nn_bert *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const float std = m->cfg.initializer_range;
    nn_bert_embeddings_init_weights(&m->word, &m->position, &m->token_type, &m->emb_ln, std, &r);
    for (int l = 0; l < m->cfg.num_hidden_layers; ++l) nn_bert_layer_init_weights(&m->layer[l], std, &r);
    nn_init_linear(&m->pooler, std, &r);
    if (m->decoder_b)
        nn_bert_mlm_head_init_weights(m->decoder_b, &m->transform, &m->transform_ln, m->decoder_w, m->word.w, std, &r);
    nn_init_linear(&m->seq_relationship, std, &r);
    nn_init_linear(&m->cls_dense, std, &r);
    nn_init_linear(&m->classifier, std, &r);
}

/* ---------------------------------------------------------------- forward */

/* Position ids [B,T] (RoBERTa) or [T] (BERT), in the arena. */
static ag_ints *position_ids(ag_ctx *ctx, const nn_bert *m, const ag_ints *ids) {
    const int64_t B = ids->shape[0], T = ids->shape[1];
    const int pad = m->cfg.pad_token_id, P = m->cfg.max_position_embeddings;
    ag_ints *pos = m->cfg.roberta ? ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T)) : ag_ints_from(ctx, NULL, 1, AG_SHAPE(T));
    if (!pos) return NULL;
    if (!m->cfg.roberta) {
        if (T > P) {
            ag_fail(AG_ERR_ARG, "bert: %lld positions exceed max_position_embeddings %d", (long long)T, P);
            return NULL;
        }
        for (int64_t t = 0; t < T; ++t) pos->data[t] = (int32_t)t;
        return pos;
    }
    /* create_position_ids_from_input_ids: cumsum(ids != pad) * (ids != pad) + pad */
    for (int64_t b = 0; b < B; ++b) {
        int32_t count = 0;
        for (int64_t t = 0; t < T; ++t) {
            const bool real = ids->data[b * T + t] != pad;
            count += real;
            const int32_t p = real ? pad + count : pad;
            if (p >= P) {
                ag_fail(AG_ERR_ARG, "roberta: row %lld needs position %d, past max_position_embeddings %d "
                        "(positions start at pad_token_id + 1 = %d)", (long long)b, p, P, pad + 1);
                return NULL;
            }
            pos->data[b * T + t] = p;
        }
    }
    return pos;
}

ag_tensor *nn_bert_forward(ag_ctx *ctx, const nn_bert *m, const ag_ints *ids, const ag_ints *token_type_ids,
                           const ag_ints *attention_mask) {
    if (!ids) return NULL;
    char s[64];
    if (ids->ndim != 2) {
        ag_fail(AG_ERR_ARG, "bert: input_ids must be [B,T], got %s", ag_shape_str(s, ids->ndim, ids->shape));
        return NULL;
    }
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (!nn_same_bt("bert", "token_type_ids", token_type_ids, B, T) ||
        !nn_same_bt("bert", "attention_mask", attention_mask, B, T))
        return NULL;
    ag_ints *pos = position_ids(ctx, m, ids);
    const ag_ints *tt = token_type_ids;
    if (!tt) { /* the registered buffer of zeros */
        ag_ints *zeros = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T));
        if (!zeros) return NULL;
        memset(zeros->data, 0, (size_t)(B * T) * sizeof(int32_t));
        tt = zeros;
    }
    if (!pos) return NULL;

    /* BertEmbeddings: (word + token_type) + position, in that order */
    ag_tensor *h = ag_add(ctx, nn_embedding_forward(ctx, &m->word, ids),     /* [B,T,C] */
                          nn_embedding_forward(ctx, &m->token_type, tt));    /* [B,T,C] */
    h = ag_add(ctx, h, nn_embedding_forward(ctx, &m->position, pos));        /* [T,C] or [B,T,C] */
    h = ag_dropout(ctx, nn_norm_forward(ctx, &m->emb_ln, h), m->cfg.hidden_dropout_prob);

    const ag_attn_opts opts = {.key_mask = attention_mask}; /* bidirectional; padding never attended */
    const float p = m->cfg.hidden_dropout_prob;
    for (int l = 0; l < m->cfg.num_hidden_layers; ++l) {
        const nn_bert_layer *L = &m->layer[l];
        ag_tensor *a = nn_mha_forward(ctx, &L->attn, h, NULL, &opts);         /* [B,T,C] */
        h = nn_norm_forward(ctx, &L->attn_ln, ag_add(ctx, ag_dropout(ctx, a, p), h));
        ag_tensor *f = nn_act_forward(ctx, m->cfg.act, nn_linear_forward(ctx, &L->intermediate, h)); /* [B,T,I] */
        f = nn_linear_forward(ctx, &L->output, f);                             /* [B,T,C] */
        h = nn_norm_forward(ctx, &L->output_ln, ag_add(ctx, ag_dropout(ctx, f, p), h));
    }
    return h;
}

/* hidden [B,T,C] -> hidden[:,0] [B,C]: the [CLS] (RoBERTa: <s>) state. */
static ag_tensor *first_token(ag_ctx *ctx, ag_tensor *hidden) {
    if (!hidden) return NULL;
    const int64_t B = hidden->shape[0], C = hidden->shape[2];
    return ag_reshape(ctx, ag_slice(ctx, hidden, 1, 0, 1), 2, AG_SHAPE(B, C));
}

ag_tensor *nn_bert_pool(ag_ctx *ctx, const nn_bert *m, ag_tensor *hidden) {
    if (!m->has_pooler) {
        ag_fail(AG_ERR_STATE, "bert: this class has no pooler (Hugging Face builds it with add_pooling_layer=False)");
        return NULL;
    }
    return ag_tanh(ctx, nn_linear_forward(ctx, &m->pooler, first_token(ctx, hidden)));
}

ag_tensor *nn_bert_mlm_logits(ag_ctx *ctx, const nn_bert *m, ag_tensor *hidden) {
    if (!m->decoder_b) {
        ag_fail(AG_ERR_STATE, "bert: this class has no MLM head (use ...ForMaskedLM or BertForPreTraining)");
        return NULL;
    }
    /* BertPredictionHeadTransform uses hidden_act; RobertaLMHead always gelu */
    ag_tensor *x = nn_linear_forward(ctx, &m->transform, hidden);
    x = nn_act_forward(ctx, m->cfg.roberta ? NN_ACT_GELU : m->cfg.act, x);
    x = nn_norm_forward(ctx, &m->transform_ln, x);
    return ag_linear(ctx, x, m->decoder_w, m->decoder_b, AG_LINEAR_OUT_IN); /* [...,V] */
}

ag_tensor *nn_bert_cls_logits(ag_ctx *ctx, const nn_bert *m, ag_tensor *hidden) {
    if (!m->classifier.w) {
        ag_fail(AG_ERR_STATE, "bert: this class has no classifier (use ...ForSequenceClassification)");
        return NULL;
    }
    const float p = m->cfg.classifier_dropout;
    if (!m->cfg.roberta) /* classifier(dropout(pooler)) */
        return nn_linear_forward(ctx, &m->classifier, ag_dropout(ctx, nn_bert_pool(ctx, m, hidden), p));
    /* RobertaClassificationHead */
    ag_tensor *x = ag_dropout(ctx, first_token(ctx, hidden), p);
    x = ag_dropout(ctx, ag_tanh(ctx, nn_linear_forward(ctx, &m->cls_dense, x)), p);
    return nn_linear_forward(ctx, &m->classifier, x); /* [B,L] */
}

/* Labels as floats (MSE and BCE targets) in the arena. */
static ag_tensor *float_labels(ag_ctx *ctx, const ag_ints *labels, int ndim, const int64_t *shape) {
    ag_tensor *y = ag_new(ctx, ndim, shape, false);
    if (!y) return NULL;
    for (int64_t i = 0; i < y->numel; ++i) y->data[i] = (float)labels->data[i];
    return y;
}

ag_tensor *nn_bert_classifier_loss(ag_ctx *ctx, ag_tensor *logits, const ag_ints *labels, nn_bert_problem problem,
                                   bool problem_type_given, int64_t *n_tokens) {
    if (!logits || !labels) return NULL;
    const int64_t B = logits->shape[0], L = logits->shape[1];
    char s[64];
    /* without problem_type, HF takes integer labels of [B] as single-label and
     * anything else (here: [B,L]) as multi-label */
    if (!problem_type_given && L > 1 && labels->ndim == 2) problem = NN_BERT_MULTI_LABEL;
    if (problem == NN_BERT_MULTI_LABEL) {
        if (labels->ndim != 2 || labels->shape[0] != B || labels->shape[1] != L) {
            ag_fail(AG_ERR_ARG, "bert: multi-label labels must be [B,num_labels] = [%lld,%lld], got %s", (long long)B,
                    (long long)L, ag_shape_str(s, labels->ndim, labels->shape));
            return NULL;
        }
        if (n_tokens) *n_tokens = B * L;
        return ag_bce_logits(ctx, logits, float_labels(ctx, labels, 2, AG_SHAPE(B, L)));
    }
    if (labels->numel != B || (labels->ndim == 2 && labels->shape[1] != 1)) {
        ag_fail(AG_ERR_ARG, "bert: labels must be [B] = [%lld], got %s", (long long)B,
                ag_shape_str(s, labels->ndim, labels->shape));
        return NULL;
    }
    if (n_tokens) *n_tokens = B;
    if (problem == NN_BERT_REGRESSION) {
        if (L != 1) {
            ag_fail(AG_ERR_ARG, "bert: regression with %lld labels needs labels [B,%lld]", (long long)L, (long long)L);
            return NULL;
        }
        /* MSELoss(logits.squeeze(), labels.squeeze()) */
        return ag_mse(ctx, ag_reshape(ctx, logits, 1, AG_SHAPE(B)), float_labels(ctx, labels, 1, AG_SHAPE(B)));
    }
    ag_ints y = ag_ints_wrap(labels->data, 1, AG_SHAPE(B));
    return ag_cross_entropy(ctx, logits, &y, 0.0f, AG_REDUCE_MEAN);
}

ag_tensor *nn_bert_loss(ag_ctx *ctx, const nn_bert *m, const ag_ints *ids, const ag_ints *token_type_ids,
                        const ag_ints *attention_mask, const ag_ints *labels, const ag_ints *next_sentence_label,
                        int64_t *n_tokens) {
    if (m->head == NN_BERT_MODEL) {
        ag_fail(AG_ERR_STATE, "bert: the bare model has no loss (use ...ForMaskedLM, BertForPreTraining or "
                "...ForSequenceClassification)");
        return NULL;
    }
    if (!labels) {
        ag_fail(AG_ERR_ARG, "bert: the loss needs \"labels\"");
        return NULL;
    }
    if (m->head == NN_BERT_PRETRAINING && !next_sentence_label) {
        ag_fail(AG_ERR_ARG, "bert: BertForPreTraining's loss needs \"next_sentence_label\" as well as \"labels\"");
        return NULL;
    }
    ag_tensor *h = nn_bert_forward(ctx, m, ids, token_type_ids, attention_mask); /* [B,T,C] */
    if (!h) return NULL;
    if (m->head == NN_BERT_SEQ_CLS)
        return nn_bert_classifier_loss(ctx, nn_bert_cls_logits(ctx, m, h), labels, m->cfg.problem,
                                       m->cfg.problem_type_given, n_tokens);

    /* masked LM: every position, -100 ignored, mean over the counted ones */
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (!nn_same_bt("bert", "labels", labels, B, T)) return NULL;
    int64_t count = 0;
    for (int64_t i = 0; i < labels->numel; ++i) count += labels->data[i] != AG_IGNORE_INDEX;
    ag_tensor *loss = ag_cross_entropy(ctx, nn_bert_mlm_logits(ctx, m, h), labels, 0.0f, AG_REDUCE_MEAN);
    if (m->head == NN_BERT_PRETRAINING) {
        /* + next sentence: CE(seq_relationship(pooled), next_sentence_label) */
        if (next_sentence_label->numel != B) {
            char s[64];
            ag_fail(AG_ERR_ARG, "bert: next_sentence_label must be [B] = [%lld], got %s", (long long)B,
                    ag_shape_str(s, next_sentence_label->ndim, next_sentence_label->shape));
            return NULL;
        }
        ag_ints y = ag_ints_wrap(next_sentence_label->data, 1, AG_SHAPE(B));
        ag_tensor *nsp = nn_linear_forward(ctx, &m->seq_relationship, nn_bert_pool(ctx, m, h)); /* [B,2] */
        loss = ag_add(ctx, loss, ag_cross_entropy(ctx, nsp, &y, 0.0f, AG_REDUCE_MEAN));
        count += B;
    }
    if (n_tokens) *n_tokens = count;
    return loss;
}
