/* distilbert.c: DistilBERT, step for step as Hugging Face's
 * modeling_distilbert.py (4.31).
 *
 *   h = LayerNorm(word[ids] + position[0..T-1]) -> dropout        [B,T,C]
 *   for each layer (post-LN, as BERT):
 *     h = sa_layer_norm(h + out_lin(attention(q_lin(h), k_lin(h), v_lin(h))))
 *     h = output_layer_norm(h + dropout(lin2(act(lin1(h)))))
 *   MLM logits = vocab_layer_norm(act(vocab_transform(h))) word^T + bias
 *   class logits = classifier(dropout(relu(pre_classifier(h[:,0]))))
 *
 * Hugging Face scales q by 1/sqrt(d) before q k^T; the fused attention scales
 * the product: the same function, different float32 rounding (~1e-7).
 * No token types; the attention mask works as BERT's (padding never attended).
 */
#include "distilbert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DISTILBERT_LN_EPS 1e-12f /* every LayerNorm: eps=1e-12, not a config field */

ag_status nn_distilbert_config_read(const nn_config *c, nn_distilbert_config *g) {
    memset(g, 0, sizeof *g);
    double range;
    const char *problem;
    bool sinusoidal;
    ag_status st;
    if ((st = nn_config_int(c, "vocab_size", 30522, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "dim", 768, 1, 1 << 16, &g->dim)) ||
        (st = nn_config_int(c, "n_layers", 6, 1, 4096, &g->n_layers)) ||
        (st = nn_config_int(c, "n_heads", 12, 1, 4096, &g->n_heads)) ||
        (st = nn_config_int(c, "hidden_dim", 4 * 768, 1, 1 << 20, &g->hidden_dim)) ||
        (st = nn_config_int(c, "max_position_embeddings", 512, 1, 1 << 20, &g->max_position_embeddings)) ||
        (st = nn_config_int(c, "pad_token_id", 0, 0, 1 << 24, &g->pad_token_id)) ||
        (st = nn_config_num(c, "initializer_range", 0.02, &range)) ||
        (st = nn_config_prob(c, "dropout", 0.1, &g->dropout)) ||
        (st = nn_config_prob(c, "attention_dropout", 0.1, &g->attention_dropout)) ||
        (st = nn_config_prob(c, "seq_classif_dropout", 0.2, &g->seq_classif_dropout)) ||
        (st = nn_config_act(c, "activation", "gelu", &g->act)) ||
        (st = nn_config_str(c, "problem_type", NULL, &problem)) ||
        (st = nn_config_bool(c, "sinusoidal_pos_embds", false, &sinusoidal)) ||
        (st = nn_config_bool(c, "tie_word_embeddings", true, &g->tie_word_embeddings)) ||
        (st = nn_config_int(c, "num_labels", 2, 1, 1 << 20, &g->num_labels)))
        return st;
    const cJSON *id2label = cJSON_GetObjectItemCaseSensitive(c->json, "id2label");
    if (id2label && !cJSON_IsNull(id2label)) {
        if (!cJSON_IsObject(id2label) || cJSON_GetArraySize(id2label) < 1)
            return ag_fail(AG_ERR_ARG, "config %s: field \"id2label\" must be a non-empty object", c->path);
        g->num_labels = cJSON_GetArraySize(id2label);
    }
    if (g->dim % g->n_heads)
        return ag_fail(AG_ERR_ARG, "config %s: dim %d is not divisible by n_heads %d", c->path, g->dim, g->n_heads);
    if (sinusoidal)
        return ag_fail(AG_ERR_ARG, "config %s: field \"sinusoidal_pos_embds\" is true; tapegrad builds only learned "
                       "positions", c->path);
    if (g->pad_token_id >= g->vocab_size)
        return ag_fail(AG_ERR_ARG, "config %s: field \"pad_token_id\" %d is outside the vocabulary (vocab_size %d)",
                       c->path, g->pad_token_id, g->vocab_size);
    g->initializer_range = (float)range;
    g->problem = g->num_labels == 1 ? NN_BERT_REGRESSION : NN_BERT_SINGLE_LABEL;
    if (problem) {
        g->problem_type_given = true;
        if (strcmp(problem, "regression") == 0) g->problem = NN_BERT_REGRESSION;
        else if (strcmp(problem, "single_label_classification") == 0) g->problem = NN_BERT_SINGLE_LABEL;
        else if (strcmp(problem, "multi_label_classification") == 0) g->problem = NN_BERT_MULTI_LABEL;
        else return ag_fail(AG_ERR_ARG, "config %s: field \"problem_type\": unknown '%s'", c->path, problem);
    }
    return AG_OK;
}

ag_status nn_distilbert_declare(ag_params *ps, nn_distilbert *m, const nn_distilbert_config *cfg, nn_bert_head head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->head = head;
    if (head != NN_BERT_MODEL && head != NN_BERT_MASKED_LM && head != NN_BERT_SEQ_CLS)
        return ag_fail(AG_ERR_ARG, "distilbert: no such head (DistilBertModel, DistilBertForMaskedLM, "
                       "DistilBertForSequenceClassification)");
    snprintf(m->prefix, sizeof m->prefix, "%s", head == NN_BERT_MODEL ? "" : "distilbert.");
    const char *p = m->prefix;
    const int C = cfg->dim, H = cfg->hidden_dim;
    char name[NN_NAME_MAX], q[NN_NAME_MAX], k[NN_NAME_MAX], v[NN_NAME_MAX], o[NN_NAME_MAX];
    ag_status st;
    if ((st = nn_embedding_init(ps, &m->word, nn_name(name, "%sembeddings.word_embeddings", p), cfg->vocab_size, C,
                                cfg->pad_token_id)) ||
        (st = nn_embedding_init(ps, &m->position, nn_name(name, "%sembeddings.position_embeddings", p),
                                cfg->max_position_embeddings, C, -1)) ||
        (st = nn_layernorm_init(ps, &m->emb_ln, nn_name(name, "%sembeddings.LayerNorm", p), C, DISTILBERT_LN_EPS)))
        return st;
    m->layer = calloc((size_t)cfg->n_layers, sizeof *m->layer);
    if (!m->layer) return ag_fail(AG_ERR_MEMORY, "distilbert: out of memory");
    for (int l = 0; l < cfg->n_layers; ++l) {
        nn_distilbert_layer *L = &m->layer[l];
        const char *names[4] = {nn_name(q, "%stransformer.layer.%d.attention.q_lin", p, l),
                                nn_name(k, "%stransformer.layer.%d.attention.k_lin", p, l),
                                nn_name(v, "%stransformer.layer.%d.attention.v_lin", p, l),
                                nn_name(o, "%stransformer.layer.%d.attention.out_lin", p, l)};
        if ((st = nn_mha_init(ps, &L->attention, names, C, cfg->n_heads, C / cfg->n_heads, false, true,
                              AG_LINEAR_OUT_IN)) ||
            (st = nn_layernorm_init(ps, &L->sa_layer_norm, nn_name(name, "%stransformer.layer.%d.sa_layer_norm", p, l),
                                    C, DISTILBERT_LN_EPS)) ||
            (st = nn_linear_init(ps, &L->lin1, nn_name(name, "%stransformer.layer.%d.ffn.lin1", p, l), C, H, true,
                                 AG_LINEAR_OUT_IN)) ||
            (st = nn_linear_init(ps, &L->lin2, nn_name(name, "%stransformer.layer.%d.ffn.lin2", p, l), H, C, true,
                                 AG_LINEAR_OUT_IN)) ||
            (st = nn_layernorm_init(ps, &L->output_layer_norm,
                                    nn_name(name, "%stransformer.layer.%d.output_layer_norm", p, l), C,
                                    DISTILBERT_LN_EPS)))
            return st;
        L->attention.attn_dropout = cfg->attention_dropout;
    }
    if (head == NN_BERT_MASKED_LM) {
        if ((st = nn_linear_init(ps, &m->vocab_transform, "vocab_transform", C, C, true, AG_LINEAR_OUT_IN)) ||
            (st = nn_layernorm_init(ps, &m->vocab_layer_norm, "vocab_layer_norm", C, DISTILBERT_LN_EPS)))
            return st;
        if (cfg->tie_word_embeddings) m->projector_w = m->word.w;
        else if (!(m->projector_w = ag_params_add(ps, "vocab_projector.weight", 2, AG_SHAPE(cfg->vocab_size, C))))
            return ag_error_status();
        if (!(m->projector_b = ag_params_add(ps, "vocab_projector.bias", 1, AG_SHAPE(cfg->vocab_size))))
            return ag_error_status();
    } else if (head == NN_BERT_SEQ_CLS) {
        if ((st = nn_linear_init(ps, &m->pre_classifier, "pre_classifier", C, C, true, AG_LINEAR_OUT_IN)) ||
            (st = nn_linear_init(ps, &m->classifier, "classifier", C, cfg->num_labels, true, AG_LINEAR_OUT_IN)))
            return st;
    }
    return AG_OK;
}

void nn_distilbert_free(nn_distilbert *m) {
    free(m->layer);
    m->layer = NULL;
}

int nn_distilbert_aliases(const nn_distilbert *m, const char *alias[][2], int cap) {
    if (m->head != NN_BERT_MASKED_LM || !m->cfg.tie_word_embeddings || cap < 1) return 0;
    alias[0][0] = "vocab_projector.weight";
    alias[0][1] = m->word.w->name;
    return 1;
}

void nn_distilbert_init_weights(nn_distilbert *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const float std = m->cfg.initializer_range;
    nn_init_embedding(&m->word, std, &r);     /* the padding row pad_token_id 0 */
    nn_init_embedding(&m->position, std, &r);
    nn_init_norm(&m->emb_ln);
    for (int l = 0; l < m->cfg.n_layers; ++l) {
        nn_distilbert_layer *L = &m->layer[l];
        nn_init_linear(&L->attention.q, std, &r), nn_init_linear(&L->attention.k, std, &r);
        nn_init_linear(&L->attention.v, std, &r), nn_init_linear(&L->attention.o, std, &r);
        nn_init_norm(&L->sa_layer_norm);
        nn_init_linear(&L->lin1, std, &r), nn_init_linear(&L->lin2, std, &r);
        nn_init_norm(&L->output_layer_norm);
    }
    nn_init_linear(&m->vocab_transform, std, &r);
    nn_init_norm(&m->vocab_layer_norm);
    if (m->projector_w && m->projector_w != m->word.w) nn_init_normal(m->projector_w, std, &r);
    if (m->projector_b) nn_init_const(m->projector_b, 0);
    nn_init_linear(&m->pre_classifier, std, &r);
    nn_init_linear(&m->classifier, std, &r);
}

ag_tensor *nn_distilbert_forward(ag_ctx *ctx, const nn_distilbert *m, const ag_ints *ids,
                                 const ag_ints *attention_mask) {
    if (!ids) return NULL;
    char s[64];
    if (ids->ndim != 2) {
        ag_fail(AG_ERR_ARG, "distilbert: input_ids must be [B,T], got %s", ag_shape_str(s, ids->ndim, ids->shape));
        return NULL;
    }
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (attention_mask && (attention_mask->ndim != 2 || attention_mask->shape[0] != B || attention_mask->shape[1] != T)) {
        ag_fail(AG_ERR_ARG, "distilbert: attention_mask %s does not match input_ids [%lld,%lld]",
                ag_shape_str(s, attention_mask->ndim, attention_mask->shape), (long long)B, (long long)T);
        return NULL;
    }
    if (T > m->cfg.max_position_embeddings) {
        ag_fail(AG_ERR_ARG, "distilbert: %lld positions exceed max_position_embeddings %d", (long long)T,
                m->cfg.max_position_embeddings);
        return NULL;
    }
    ag_ints *pos = ag_ints_from(ctx, NULL, 1, AG_SHAPE(T));
    if (!pos) return NULL;
    for (int64_t t = 0; t < T; ++t) pos->data[t] = (int32_t)t;
    ag_tensor *h = ag_add(ctx, nn_embedding_forward(ctx, &m->word, ids),     /* [B,T,C] */
                          nn_embedding_forward(ctx, &m->position, pos));    /* [T,C] */
    h = ag_dropout(ctx, nn_norm_forward(ctx, &m->emb_ln, h), m->cfg.dropout);
    const ag_attn_opts opts = {.key_mask = attention_mask};
    for (int l = 0; l < m->cfg.n_layers; ++l) {
        const nn_distilbert_layer *L = &m->layer[l];
        ag_tensor *a = nn_mha_forward(ctx, &L->attention, h, NULL, &opts);   /* [B,T,C] */
        h = nn_norm_forward(ctx, &L->sa_layer_norm, ag_add(ctx, a, h));
        ag_tensor *f = nn_act_forward(ctx, m->cfg.act, nn_linear_forward(ctx, &L->lin1, h)); /* [B,T,H] */
        f = ag_dropout(ctx, nn_linear_forward(ctx, &L->lin2, f), m->cfg.dropout);          /* [B,T,C] */
        h = nn_norm_forward(ctx, &L->output_layer_norm, ag_add(ctx, f, h));
    }
    return h;
}

ag_tensor *nn_distilbert_cls_logits(ag_ctx *ctx, const nn_distilbert *m, ag_tensor *hidden) {
    if (!hidden) return NULL;
    if (m->head != NN_BERT_SEQ_CLS) {
        ag_fail(AG_ERR_STATE, "distilbert: only DistilBertForSequenceClassification has a classifier");
        return NULL;
    }
    const int64_t B = hidden->shape[0], C = m->cfg.dim;
    ag_tensor *x = ag_reshape(ctx, ag_slice(ctx, hidden, 1, 0, 1), 2, AG_SHAPE(B, C)); /* h[:,0] */
    x = ag_relu(ctx, nn_linear_forward(ctx, &m->pre_classifier, x));
    return nn_linear_forward(ctx, &m->classifier, ag_dropout(ctx, x, m->cfg.seq_classif_dropout)); /* [B,L] */
}

ag_tensor *nn_distilbert_loss(ag_ctx *ctx, const nn_distilbert *m, const ag_ints *ids, const ag_ints *attention_mask,
                              const ag_ints *labels, int64_t *n_tokens) {
    if (m->head == NN_BERT_MODEL) {
        ag_fail(AG_ERR_STATE, "distilbert: DistilBertModel has no loss (use DistilBertForMaskedLM or "
                "DistilBertForSequenceClassification)");
        return NULL;
    }
    if (!labels) {
        ag_fail(AG_ERR_ARG, "distilbert: the loss needs \"labels\"");
        return NULL;
    }
    ag_tensor *h = nn_distilbert_forward(ctx, m, ids, attention_mask); /* [B,T,C] */
    if (!h) return NULL;
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (m->head == NN_BERT_SEQ_CLS)
        return nn_bert_classifier_loss(ctx, nn_distilbert_cls_logits(ctx, m, h), labels, m->cfg.problem,
                                       m->cfg.problem_type_given, n_tokens);
    if (labels->ndim != 2 || labels->shape[0] != B || labels->shape[1] != T) {
        char s[64];
        ag_fail(AG_ERR_ARG, "distilbert: labels %s do not match input_ids [%lld,%lld]",
                ag_shape_str(s, labels->ndim, labels->shape), (long long)B, (long long)T);
        return NULL;
    }
    int64_t count = 0;
    for (int64_t i = 0; i < labels->numel; ++i) count += labels->data[i] != AG_IGNORE_INDEX;
    if (n_tokens) *n_tokens = count;
    ag_tensor *x = nn_act_forward(ctx, m->cfg.act, nn_linear_forward(ctx, &m->vocab_transform, h));
    x = nn_norm_forward(ctx, &m->vocab_layer_norm, x);
    ag_tensor *logits = ag_linear(ctx, x, m->projector_w, m->projector_b, AG_LINEAR_OUT_IN); /* [B,T,V] */
    return ag_cross_entropy(ctx, logits, labels, 0.0f, AG_REDUCE_MEAN);
}
