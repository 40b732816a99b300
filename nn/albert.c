/* albert.c: ALBERT, step for step as Hugging Face's modeling_albert.py (4.31).
 *
 *   e = dropout(LayerNorm(word[ids] + token_type[tt] + position[0..T-1]))  [B,T,E]
 *   h = embedding_hidden_mapping_in(e)                                    [B,T,H]
 *   for i in 0..num_hidden_layers-1:
 *     g = floor(i / (num_hidden_layers / num_hidden_groups))   (float division, as HF)
 *     for each of group g's inner_group_num layers (AlbertLayer):
 *       a = attention.LayerNorm(h + dropout(attention.dense(attn(h))))
 *       h = full_layer_layer_norm(a + ffn_output(act(ffn(a))))
 *   pooled = tanh(pooler(h[:,0]))                                         [B,H]
 *   MLM logits = LayerNorm(act(predictions.dense(h))) word^T + bias      [B,T,V]
 *   SOP logits = sop_classifier.classifier(dropout(pooled))               [B,2]
 *
 * Sharing needs nothing special from the tape: applying a layer twice records
 * two sets of nodes that read the same parameter tensors, and backward adds
 * (+=) each use's contribution into the one gradient buffer.
 *
 * Two details of Hugging Face's code kept here: the feed-forward has no
 * dropout (AlbertLayer builds one and ff_chunk does not use it), and the MLM
 * head's LayerNorm uses layer_norm_eps.
 */
#include "albert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

ag_status nn_albert_config_read(const nn_config *c, nn_albert_config *g) {
    memset(g, 0, sizeof *g);
    double range;
    const char *pos_type;
    ag_status st;
    /* AlbertConfig's defaults are albert-xxlarge's */
    if ((st = nn_config_int(c, "vocab_size", 30000, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "embedding_size", 128, 1, 1 << 16, &g->embedding_size)) ||
        (st = nn_config_int(c, "hidden_size", 4096, 1, 1 << 16, &g->hidden_size)) ||
        (st = nn_config_int(c, "num_hidden_layers", 12, 1, 4096, &g->num_hidden_layers)) ||
        (st = nn_config_int(c, "num_hidden_groups", 1, 1, 4096, &g->num_hidden_groups)) ||
        (st = nn_config_int(c, "inner_group_num", 1, 1, 4096, &g->inner_group_num)) ||
        (st = nn_config_int(c, "num_attention_heads", 64, 1, 4096, &g->num_attention_heads)) ||
        (st = nn_config_int(c, "intermediate_size", 16384, 1, 1 << 20, &g->intermediate_size)) ||
        (st = nn_config_int(c, "max_position_embeddings", 512, 1, 1 << 20, &g->max_position_embeddings)) ||
        (st = nn_config_int(c, "type_vocab_size", 2, 1, 1 << 16, &g->type_vocab_size)) ||
        (st = nn_config_int(c, "pad_token_id", 0, 0, 1 << 24, &g->pad_token_id)) ||
        (st = nn_config_positive(c, "layer_norm_eps", 1e-12, &g->layer_norm_eps)) ||
        (st = nn_config_num(c, "initializer_range", 0.02, &range)) ||
        (st = nn_config_prob(c, "hidden_dropout_prob", 0.0, &g->hidden_dropout_prob)) ||
        (st = nn_config_prob(c, "attention_probs_dropout_prob", 0.0, &g->attention_probs_dropout_prob)) ||
        (st = nn_config_prob(c, "classifier_dropout_prob", 0.1, &g->classifier_dropout_prob)) ||
        (st = nn_config_act(c, "hidden_act", "gelu_new", &g->act)) ||
        (st = nn_config_str(c, "position_embedding_type", "absolute", &pos_type)) ||
        (st = nn_config_bool(c, "tie_word_embeddings", true, &g->tie_word_embeddings)) ||
        (st = nn_bert_read_labels(c, &g->num_labels, &g->problem, &g->problem_type_given)))
        return st;
    /* HF's AlbertAttention skips this check (the config always has
     * embedding_size) and then fails at the first forward; refuse it here */
    if (g->hidden_size % g->num_attention_heads)
        return ag_fail(AG_ERR_ARG, "config %s: hidden_size %d is not divisible by num_attention_heads %d", c->path,
                       g->hidden_size, g->num_attention_heads);
    if (strcmp(pos_type, "absolute") != 0)
        return ag_fail(AG_ERR_ARG, "config %s: field \"position_embedding_type\" is '%s'; tapegrad builds only "
                       "\"absolute\"", c->path, pos_type);
    if (g->pad_token_id >= g->vocab_size)
        return ag_fail(AG_ERR_ARG, "config %s: field \"pad_token_id\" %d is outside the vocabulary (vocab_size %d)",
                       c->path, g->pad_token_id, g->vocab_size);
    g->initializer_range = (float)range;
    return AG_OK;
}

/* ---------------------------------------------------------------- parameters */

/* AlbertLayer, in its named_parameters() order: full_layer_layer_norm,
 * attention.query/key/value/dense, attention.LayerNorm, ffn, ffn_output. */
static ag_status declare_layer(ag_params *ps, nn_albert_layer *L, const char *p, int g, int j,
                               const nn_albert_config *cfg) {
    char base[NN_NAME_MAX], q[NN_NAME_MAX], k[NN_NAME_MAX], v[NN_NAME_MAX], o[NN_NAME_MAX], name[NN_NAME_MAX];
    const int H = cfg->hidden_size, NH = cfg->num_attention_heads;
    nn_name(base, "%sencoder.albert_layer_groups.%d.albert_layers.%d", p, g, j);
    const char *names[4] = {nn_name(q, "%s.attention.query", base), nn_name(k, "%s.attention.key", base),
                            nn_name(v, "%s.attention.value", base), nn_name(o, "%s.attention.dense", base)};
    static const nn_ffn_names ffn_names = {.wi = "ffn", .wo = "ffn_output"};
    ag_status st;
    if ((st = nn_layernorm_init(ps, &L->full_ln, nn_name(name, "%s.full_layer_layer_norm", base), H,
                                cfg->layer_norm_eps)) ||
        (st = nn_mha_init(ps, &L->attn, names, H, NH, H / NH, false, true, AG_LINEAR_OUT_IN)) ||
        (st = nn_layernorm_init(ps, &L->attn_ln, nn_name(name, "%s.attention.LayerNorm", base), H,
                                cfg->layer_norm_eps)) ||
        (st = nn_ffn_init(ps, &L->ffn, base, &ffn_names, H, cfg->intermediate_size, cfg->act, false, true,
                          AG_LINEAR_OUT_IN)))
        return st;
    L->attn.attn_dropout = cfg->attention_probs_dropout_prob;
    return AG_OK; /* L->ffn's dropouts stay 0: ff_chunk has none */
}

ag_status nn_albert_declare(ag_params *ps, nn_albert *m, const nn_albert_config *cfg, nn_albert_head head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->head = head;
    if (head == NN_ALBERT_PRETRAINING && cfg->num_labels != 2)
        return ag_fail(AG_ERR_ARG, "albert: AlbertForPreTraining's sentence-order head is 2-way (its loss views the "
                       "scores as [-1,2]), but the config's num_labels is %d", cfg->num_labels);
    snprintf(m->prefix, sizeof m->prefix, "%s", head == NN_ALBERT_MODEL ? "" : "albert.");
    m->has_pooler = head != NN_ALBERT_MASKED_LM; /* AlbertForMaskedLM: add_pooling_layer=False */
    const char *p = m->prefix;
    const int E = cfg->embedding_size, H = cfg->hidden_size, V = cfg->vocab_size;
    char name[NN_NAME_MAX];
    ag_status st;
    if ((st = nn_electra_embeddings_init(ps, &m->emb, p, V, cfg->max_position_embeddings, cfg->type_vocab_size, E,
                                         cfg->pad_token_id, cfg->layer_norm_eps, cfg->hidden_dropout_prob)) ||
        (st = nn_linear_init(ps, &m->mapping_in, nn_name(name, "%sencoder.embedding_hidden_mapping_in", p), E, H,
                             true, AG_LINEAR_OUT_IN)))
        return st;
    const int G = cfg->num_hidden_groups, inner = cfg->inner_group_num;
    m->layer = calloc((size_t)G * (size_t)inner, sizeof *m->layer);
    if (!m->layer) return ag_fail(AG_ERR_MEMORY, "albert: out of memory");
    for (int g = 0; g < G; ++g)
        for (int j = 0; j < inner; ++j)
            if ((st = declare_layer(ps, &m->layer[g * inner + j], p, g, j, cfg))) return st;
    if (m->has_pooler &&
        (st = nn_linear_init(ps, &m->pooler, nn_name(name, "%spooler", p), H, H, true, AG_LINEAR_OUT_IN)))
        return st;
    if (head == NN_ALBERT_MASKED_LM || head == NN_ALBERT_PRETRAINING) {
        /* AlbertMLMHead: its own bias first, then LayerNorm, dense, decoder */
        if (!(m->mlm_b = ag_params_add(ps, "predictions.bias", 1, AG_SHAPE(V)))) return ag_error_status();
        if ((st = nn_layernorm_init(ps, &m->mlm_ln, "predictions.LayerNorm", E, cfg->layer_norm_eps)) ||
            (st = nn_linear_init(ps, &m->mlm_dense, "predictions.dense", H, E, true, AG_LINEAR_OUT_IN)))
            return st;
        if (cfg->tie_word_embeddings) m->decoder_w = m->emb.word.w;
        else if (!(m->decoder_w = ag_params_add(ps, "predictions.decoder.weight", 2, AG_SHAPE(V, E))))
            return ag_error_status();
    }
    if (head == NN_ALBERT_PRETRAINING)
        return nn_linear_init(ps, &m->sop, "sop_classifier.classifier", H, cfg->num_labels, true, AG_LINEAR_OUT_IN);
    if (head == NN_ALBERT_SEQ_CLS)
        return nn_linear_init(ps, &m->classifier, "classifier", H, cfg->num_labels, true, AG_LINEAR_OUT_IN);
    return AG_OK;
}

void nn_albert_free(nn_albert *m) {
    free(m->layer);
    m->layer = NULL;
}

int nn_albert_aliases(const nn_albert *m, const char *alias[][2], int cap) {
    if (!m->mlm_b) return 0;
    int n = 0;
    if (m->cfg.tie_word_embeddings && n < cap)
        alias[n][0] = "predictions.decoder.weight", alias[n++][1] = m->emb.word.w->name;
    if (n < cap) alias[n][0] = "predictions.decoder.bias", alias[n++][1] = m->mlm_b->name;
    return n;
}

void nn_albert_init_weights(nn_albert *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const float std = m->cfg.initializer_range;
    nn_electra_embeddings_init_weights(&m->emb, std, &r);
    nn_init_linear(&m->mapping_in, std, &r);
    for (int i = 0; i < m->cfg.num_hidden_groups * m->cfg.inner_group_num; ++i) {
        nn_albert_layer *L = &m->layer[i];
        nn_init_norm(&L->full_ln);
        nn_init_linear(&L->attn.q, std, &r), nn_init_linear(&L->attn.k, std, &r);
        nn_init_linear(&L->attn.v, std, &r), nn_init_linear(&L->attn.o, std, &r);
        nn_init_norm(&L->attn_ln);
        nn_init_linear(&L->ffn.wi, std, &r), nn_init_linear(&L->ffn.wo, std, &r);
    }
    nn_init_linear(&m->pooler, std, &r);
    if (m->mlm_b) nn_init_const(m->mlm_b, 0);
    nn_init_norm(&m->mlm_ln);
    nn_init_linear(&m->mlm_dense, std, &r);
    if (m->decoder_w && m->decoder_w != m->emb.word.w) nn_init_normal(m->decoder_w, std, &r);
    nn_init_linear(&m->sop, std, &r);
    nn_init_linear(&m->classifier, std, &r);
}

/* ---------------------------------------------------------------- forward */

/* AlbertLayer: h [B,T,H] -> [B,T,H]. */
static ag_tensor *layer_forward(ag_ctx *ctx, const nn_albert *m, const nn_albert_layer *L, ag_tensor *h,
                                const ag_attn_opts *opts) {
    ag_tensor *a = nn_mha_forward(ctx, &L->attn, h, NULL, opts);                               /* [B,T,H] */
    a = nn_norm_forward(ctx, &L->attn_ln, ag_add(ctx, h, ag_dropout(ctx, a, m->cfg.hidden_dropout_prob)));
    ag_tensor *f = nn_ffn_forward(ctx, &L->ffn, a);                                            /* [B,T,H] */
    return nn_norm_forward(ctx, &L->full_ln, ag_add(ctx, f, a));
}

ag_tensor *nn_albert_forward(ag_ctx *ctx, const nn_albert *m, const ag_ints *ids, const ag_ints *token_type_ids,
                             const ag_ints *attention_mask) {
    ag_tensor *h = nn_electra_embeddings_forward(ctx, &m->emb, "albert", ids, token_type_ids); /* [B,T,E] */
    if (!h) return NULL;
    if (!nn_same_bt("albert", "attention_mask", attention_mask, ids->shape[0], ids->shape[1])) return NULL;
    h = nn_linear_forward(ctx, &m->mapping_in, h); /* [B,T,H] */
    const ag_attn_opts opts = {.key_mask = attention_mask};
    const int L = m->cfg.num_hidden_layers, G = m->cfg.num_hidden_groups, inner = m->cfg.inner_group_num;
    const double per_group = (double)L / G; /* num_hidden_layers / num_hidden_groups, as Python's float */
    for (int i = 0; i < L; ++i) {
        const int g = (int)(i / per_group);
        for (int j = 0; j < inner; ++j) h = layer_forward(ctx, m, &m->layer[g * inner + j], h, &opts);
    }
    return h;
}

ag_tensor *nn_albert_pool(ag_ctx *ctx, const nn_albert *m, ag_tensor *hidden) {
    if (!hidden) return NULL;
    if (!m->has_pooler) {
        ag_fail(AG_ERR_STATE, "albert: AlbertForMaskedLM has no pooler (add_pooling_layer=False)");
        return NULL;
    }
    const int64_t B = hidden->shape[0], H = hidden->shape[2];
    ag_tensor *first = ag_reshape(ctx, ag_slice(ctx, hidden, 1, 0, 1), 2, AG_SHAPE(B, H)); /* h[:,0] [B,H] */
    return ag_tanh(ctx, nn_linear_forward(ctx, &m->pooler, first));
}

ag_tensor *nn_albert_cls_logits(ag_ctx *ctx, const nn_albert *m, ag_tensor *hidden) {
    if (!hidden) return NULL;
    if (m->head != NN_ALBERT_SEQ_CLS) {
        ag_fail(AG_ERR_STATE, "albert: only AlbertForSequenceClassification has a classifier");
        return NULL;
    }
    ag_tensor *pooled = ag_dropout(ctx, nn_albert_pool(ctx, m, hidden), m->cfg.classifier_dropout_prob);
    return nn_linear_forward(ctx, &m->classifier, pooled);
}

ag_tensor *nn_albert_mlm_logits(ag_ctx *ctx, const nn_albert *m, ag_tensor *hidden) {
    if (!hidden) return NULL;
    if (!m->mlm_b) {
        ag_fail(AG_ERR_STATE, "albert: this class has no MLM head (use AlbertForMaskedLM or AlbertForPreTraining)");
        return NULL;
    }
    ag_tensor *x = nn_act_forward(ctx, m->cfg.act, nn_linear_forward(ctx, &m->mlm_dense, hidden)); /* [B,T,E] */
    x = nn_norm_forward(ctx, &m->mlm_ln, x);
    return ag_linear(ctx, x, m->decoder_w, m->mlm_b, AG_LINEAR_OUT_IN); /* [B,T,V] */
}

ag_tensor *nn_albert_loss(ag_ctx *ctx, const nn_albert *m, const ag_ints *ids, const ag_ints *token_type_ids,
                          const ag_ints *attention_mask, const ag_ints *labels, const ag_ints *sentence_order_label,
                          int64_t *n_tokens) {
    if (m->head == NN_ALBERT_MODEL) {
        ag_fail(AG_ERR_STATE, "albert: AlbertModel has no loss (use AlbertForMaskedLM, AlbertForPreTraining or "
                "AlbertForSequenceClassification)");
        return NULL;
    }
    if (!labels) {
        ag_fail(AG_ERR_ARG, "albert: the loss needs \"labels\"");
        return NULL;
    }
    if (m->head == NN_ALBERT_PRETRAINING && !sentence_order_label) {
        ag_fail(AG_ERR_ARG, "albert: AlbertForPreTraining's loss needs \"sentence_order_label\" as well as \"labels\"");
        return NULL;
    }
    ag_tensor *h = nn_albert_forward(ctx, m, ids, token_type_ids, attention_mask); /* [B,T,H] */
    if (!h) return NULL;
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (m->head == NN_ALBERT_SEQ_CLS)
        return nn_bert_classifier_loss(ctx, nn_albert_cls_logits(ctx, m, h), labels, m->cfg.problem,
                                       m->cfg.problem_type_given, n_tokens);
    /* masked LM: every position, -100 ignored, mean over the counted ones */
    if (!nn_same_bt("albert", "labels", labels, B, T)) return NULL;
    int64_t count = 0;
    for (int64_t i = 0; i < labels->numel; ++i) count += labels->data[i] != AG_IGNORE_INDEX;
    ag_tensor *loss = ag_cross_entropy(ctx, nn_albert_mlm_logits(ctx, m, h), labels, 0.0f, AG_REDUCE_MEAN);
    if (m->head == NN_ALBERT_PRETRAINING) {
        /* + sentence order: CE(sop_classifier(dropout(pooled)), sentence_order_label) */
        if (sentence_order_label->numel != B) {
            char s[64];
            ag_fail(AG_ERR_ARG, "albert: sentence_order_label must be [B] = [%lld], got %s", (long long)B,
                    ag_shape_str(s, sentence_order_label->ndim, sentence_order_label->shape));
            return NULL;
        }
        ag_ints y = ag_ints_wrap(sentence_order_label->data, 1, AG_SHAPE(B));
        ag_tensor *pooled = ag_dropout(ctx, nn_albert_pool(ctx, m, h), m->cfg.classifier_dropout_prob);
        ag_tensor *sop = nn_linear_forward(ctx, &m->sop, pooled); /* [B,2] */
        loss = ag_add(ctx, loss, ag_cross_entropy(ctx, sop, &y, 0.0f, AG_REDUCE_MEAN));
        count += B;
    }
    if (n_tokens) *n_tokens = count;
    return loss;
}
