/* electra.c: ELECTRA, step for step as Hugging Face's modeling_electra.py
 * (4.31), and the factorised embeddings ALBERT shares.
 *
 *   e = word[ids] + token_type[tt] + position[0..T-1]          [B,T,E]
 *   e = dropout(LayerNorm(e))
 *   h = embeddings_project(e)          when E != H              [B,T,H]
 *   for each layer: BERT's post-LN layer (nn_block, BERT's names)
 *
 *   discriminator  logits = dense_prediction(act(dense(h)))     [B,T]
 *                  loss = BCE(logits[mask == 1], labels[mask == 1])
 *   generator      g = LayerNorm(gelu(dense(h)))                [B,T,E]
 *                  logits = g word^T + generator_lm_head.bias   [B,T,V]
 *   classifier     logits = out_proj(dropout(gelu(dense(dropout(h[:,0])))))
 *
 * The generator and the classifier use gelu whatever hidden_act says
 * (get_activation("gelu") in both); the discriminator head uses hidden_act.
 * In ELECTRA's pretraining the generator is a smaller model whose embeddings
 * the discriminator shares; in Hugging Face each is its own class with its
 * own copy, and so here.
 */
#include "electra.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- shared: embeddings and labels */

ag_status nn_electra_embeddings_init(ag_params *ps, nn_electra_embeddings *e, const char *p, int vocab_size,
                                     int max_positions, int type_vocab_size, int E, int pad, float eps,
                                     float dropout) {
    char name[NN_NAME_MAX];
    ag_status st;
    e->dropout = dropout;
    if ((st = nn_embedding_init(ps, &e->word, nn_name(name, "%sembeddings.word_embeddings", p), vocab_size, E, pad)) ||
        (st = nn_embedding_init(ps, &e->position, nn_name(name, "%sembeddings.position_embeddings", p), max_positions,
                                E, -1)) ||
        (st = nn_embedding_init(ps, &e->token_type, nn_name(name, "%sembeddings.token_type_embeddings", p),
                                type_vocab_size, E, -1)))
        return st;
    return nn_layernorm_init(ps, &e->ln, nn_name(name, "%sembeddings.LayerNorm", p), E, eps);
}

void nn_electra_embeddings_init_weights(nn_electra_embeddings *e, float std, nn_init_rng *r) {
    nn_bert_embeddings_init_weights(&e->word, &e->position, &e->token_type, &e->ln, std, r);
}

ag_tensor *nn_electra_embeddings_forward(ag_ctx *ctx, const nn_electra_embeddings *e, const char *who,
                                         const ag_ints *ids, const ag_ints *token_type_ids) {
    if (!ids) return NULL;
    char s[64];
    if (ids->ndim != 2) {
        ag_fail(AG_ERR_ARG, "%s: input_ids must be [B,T], got %s", who, ag_shape_str(s, ids->ndim, ids->shape));
        return NULL;
    }
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (!nn_same_bt(who, "token_type_ids", token_type_ids, B, T)) return NULL;
    if (T > e->position.num) {
        ag_fail(AG_ERR_ARG, "%s: %lld positions exceed max_position_embeddings %d", who, (long long)T,
                e->position.num);
        return NULL;
    }
    ag_ints *pos = ag_ints_from(ctx, NULL, 1, AG_SHAPE(T)); /* [T]: 0..T-1, broadcast over the batch */
    if (!pos) return NULL;
    for (int64_t t = 0; t < T; ++t) pos->data[t] = (int32_t)t;
    const ag_ints *tt = token_type_ids;
    if (!tt) { /* the registered buffer of zeros */
        ag_ints *zeros = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T));
        if (!zeros) return NULL;
        memset(zeros->data, 0, (size_t)(B * T) * sizeof(int32_t));
        tt = zeros;
    }
    /* (word + token_type) + position, in Hugging Face's order */
    ag_tensor *x = ag_add(ctx, nn_embedding_forward(ctx, &e->word, ids),   /* [B,T,E] */
                          nn_embedding_forward(ctx, &e->token_type, tt));  /* [B,T,E] */
    x = ag_add(ctx, x, nn_embedding_forward(ctx, &e->position, pos));      /* + [T,E] */
    return ag_dropout(ctx, nn_norm_forward(ctx, &e->ln, x), e->dropout);
}

/* ---------------------------------------------------------------- config */

ag_status nn_electra_config_read(const nn_config *c, nn_electra_config *g) {
    memset(g, 0, sizeof *g);
    double range, pc;
    const char *pos_type;
    ag_status st;
    /* ElectraConfig's defaults are electra-small's */
    if ((st = nn_config_int(c, "vocab_size", 30522, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "embedding_size", 128, 1, 1 << 16, &g->embedding_size)) ||
        (st = nn_config_int(c, "hidden_size", 256, 1, 1 << 16, &g->hidden_size)) ||
        (st = nn_config_int(c, "num_hidden_layers", 12, 1, 4096, &g->num_hidden_layers)) ||
        (st = nn_config_int(c, "num_attention_heads", 4, 1, 4096, &g->num_attention_heads)) ||
        (st = nn_config_int(c, "intermediate_size", 1024, 1, 1 << 20, &g->intermediate_size)) ||
        (st = nn_config_int(c, "max_position_embeddings", 512, 1, 1 << 20, &g->max_position_embeddings)) ||
        (st = nn_config_int(c, "type_vocab_size", 2, 1, 1 << 16, &g->type_vocab_size)) ||
        (st = nn_config_int(c, "pad_token_id", 0, 0, 1 << 24, &g->pad_token_id)) ||
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
    if (pc >= 1) return ag_fail(AG_ERR_ARG, "config %s: field \"classifier_dropout\" must be in [0, 1)", c->path);
    g->initializer_range = (float)range;
    g->classifier_dropout = pc < 0 ? g->hidden_dropout_prob : (float)pc;
    return AG_OK;
}

/* ---------------------------------------------------------------- parameters */

ag_status nn_electra_declare(ag_params *ps, nn_electra *m, const nn_electra_config *cfg, nn_electra_head head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->head = head;
    snprintf(m->prefix, sizeof m->prefix, "%s", head == NN_ELECTRA_MODEL ? "" : "electra.");
    const char *p = m->prefix;
    const int E = cfg->embedding_size, H = cfg->hidden_size, V = cfg->vocab_size;
    char name[NN_NAME_MAX];
    ag_status st;
    if ((st = nn_electra_embeddings_init(ps, &m->emb, p, V, cfg->max_position_embeddings, cfg->type_vocab_size, E,
                                         cfg->pad_token_id, cfg->layer_norm_eps, cfg->hidden_dropout_prob)))
        return st;
    m->has_project = E != H;
    if (m->has_project &&
        (st = nn_linear_init(ps, &m->project, nn_name(name, "%sembeddings_project", p), E, H, true, AG_LINEAR_OUT_IN)))
        return st;
    /* BertLayer: post-LN, biases everywhere, dropout on the attention
     * probabilities and on each sub-layer's output */
    const nn_block_config bc = {
        .d_model = H, .n_head = cfg->num_attention_heads, .d_head = H / cfg->num_attention_heads,
        .d_ff = cfg->intermediate_size, .pre_ln = false, .norm_eps = cfg->layer_norm_eps, .attn_bias = true,
        .ffn_bias = true, .layout = AG_LINEAR_OUT_IN, .act = cfg->act,
        .attn_dropout = cfg->attention_probs_dropout_prob, .resid_dropout = cfg->hidden_dropout_prob,
    };
    m->layer = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layer);
    if (!m->layer) return ag_fail(AG_ERR_MEMORY, "electra: out of memory");
    for (int l = 0; l < cfg->num_hidden_layers; ++l)
        if ((st = nn_block_init(ps, &m->layer[l], nn_name(name, "%sencoder.layer.%d", p, l), &bc,
                                &nn_block_names_bert)))
            return st;
    switch (head) {
    case NN_ELECTRA_MODEL: break;
    case NN_ELECTRA_PRETRAINING:
        if ((st = nn_linear_init(ps, &m->disc_dense, "discriminator_predictions.dense", H, H, true, AG_LINEAR_OUT_IN)))
            return st;
        return nn_linear_init(ps, &m->disc_prediction, "discriminator_predictions.dense_prediction", H, 1, true,
                              AG_LINEAR_OUT_IN);
    case NN_ELECTRA_MASKED_LM:
        /* ElectraGeneratorPredictions declares its LayerNorm before dense */
        if ((st = nn_layernorm_init(ps, &m->gen_ln, "generator_predictions.LayerNorm", E, cfg->layer_norm_eps)) ||
            (st = nn_linear_init(ps, &m->gen_dense, "generator_predictions.dense", H, E, true, AG_LINEAR_OUT_IN)))
            return st;
        if (cfg->tie_word_embeddings) m->lm_w = m->emb.word.w;
        else if (!(m->lm_w = ag_params_add(ps, "generator_lm_head.weight", 2, AG_SHAPE(V, E)))) return ag_error_status();
        if (!(m->lm_b = ag_params_add(ps, "generator_lm_head.bias", 1, AG_SHAPE(V)))) return ag_error_status();
        break;
    case NN_ELECTRA_SEQ_CLS:
        if ((st = nn_linear_init(ps, &m->cls_dense, "classifier.dense", H, H, true, AG_LINEAR_OUT_IN))) return st;
        return nn_linear_init(ps, &m->cls_out, "classifier.out_proj", H, cfg->num_labels, true, AG_LINEAR_OUT_IN);
    }
    return AG_OK;
}

void nn_electra_free(nn_electra *m) {
    free(m->layer);
    m->layer = NULL;
}

int nn_electra_aliases(const nn_electra *m, const char *alias[][2], int cap) {
    if (m->head != NN_ELECTRA_MASKED_LM || !m->cfg.tie_word_embeddings || cap < 1) return 0;
    alias[0][0] = "generator_lm_head.weight";
    alias[0][1] = m->emb.word.w->name;
    return 1;
}

void nn_electra_init_weights(nn_electra *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const float std = m->cfg.initializer_range;
    nn_electra_embeddings_init_weights(&m->emb, std, &r);
    nn_init_linear(&m->project, std, &r);
    for (int l = 0; l < m->cfg.num_hidden_layers; ++l) nn_block_init_weights(&m->layer[l], std, &r);
    nn_init_linear(&m->disc_dense, std, &r), nn_init_linear(&m->disc_prediction, std, &r);
    nn_init_norm(&m->gen_ln);
    nn_init_linear(&m->gen_dense, std, &r);
    if (m->lm_w && m->lm_w != m->emb.word.w) nn_init_normal(m->lm_w, std, &r);
    if (m->lm_b) nn_init_const(m->lm_b, 0);
    nn_init_linear(&m->cls_dense, std, &r), nn_init_linear(&m->cls_out, std, &r);
}

/* ---------------------------------------------------------------- forward */

ag_tensor *nn_electra_forward(ag_ctx *ctx, const nn_electra *m, const ag_ints *ids, const ag_ints *token_type_ids,
                              const ag_ints *attention_mask) {
    ag_tensor *h = nn_electra_embeddings_forward(ctx, &m->emb, "electra", ids, token_type_ids); /* [B,T,E] */
    if (!h) return NULL;
    if (!nn_same_bt("electra", "attention_mask", attention_mask, ids->shape[0], ids->shape[1])) return NULL;
    if (m->has_project) h = nn_linear_forward(ctx, &m->project, h);                             /* [B,T,H] */
    const ag_attn_opts opts = {.key_mask = attention_mask}; /* bidirectional; padding never attended */
    for (int l = 0; l < m->cfg.num_hidden_layers; ++l) h = nn_block_forward(ctx, &m->layer[l], h, NULL, &opts, NULL);
    return h;
}

static bool has_head(const nn_electra *m, nn_electra_head head, const char *what) {
    if (m->head == head) return true;
    ag_fail(AG_ERR_STATE, "electra: this class has no %s", what);
    return false;
}

ag_tensor *nn_electra_discriminator_logits(ag_ctx *ctx, const nn_electra *m, ag_tensor *hidden) {
    if (!hidden || !has_head(m, NN_ELECTRA_PRETRAINING, "discriminator head (use ElectraForPreTraining)")) return NULL;
    const int64_t B = hidden->shape[0], T = hidden->shape[1];
    ag_tensor *x = nn_act_forward(ctx, m->cfg.act, nn_linear_forward(ctx, &m->disc_dense, hidden)); /* [B,T,H] */
    x = nn_linear_forward(ctx, &m->disc_prediction, x);                                              /* [B,T,1] */
    return ag_reshape(ctx, x, 2, AG_SHAPE(B, T));                                                    /* squeeze(-1) */
}

ag_tensor *nn_electra_generator_logits(ag_ctx *ctx, const nn_electra *m, ag_tensor *hidden) {
    if (!hidden || !has_head(m, NN_ELECTRA_MASKED_LM, "generator head (use ElectraForMaskedLM)")) return NULL;
    ag_tensor *x = nn_act_forward(ctx, NN_ACT_GELU, nn_linear_forward(ctx, &m->gen_dense, hidden)); /* [B,T,E] */
    x = nn_norm_forward(ctx, &m->gen_ln, x);
    return ag_linear(ctx, x, m->lm_w, m->lm_b, AG_LINEAR_OUT_IN); /* [B,T,V] */
}

ag_tensor *nn_electra_cls_logits(ag_ctx *ctx, const nn_electra *m, ag_tensor *hidden) {
    if (!hidden || !has_head(m, NN_ELECTRA_SEQ_CLS, "classifier (use ElectraForSequenceClassification)")) return NULL;
    const int64_t B = hidden->shape[0], H = hidden->shape[2];
    const float p = m->cfg.classifier_dropout;
    ag_tensor *x = ag_reshape(ctx, ag_slice(ctx, hidden, 1, 0, 1), 2, AG_SHAPE(B, H)); /* h[:,0] [B,H] */
    x = nn_linear_forward(ctx, &m->cls_dense, ag_dropout(ctx, x, p));
    x = ag_dropout(ctx, nn_act_forward(ctx, NN_ACT_GELU, x), p); /* gelu where BERT has tanh */
    return nn_linear_forward(ctx, &m->cls_out, x);              /* [B,L] */
}

/* BCE over the tokens the mask keeps: logits and labels [B,T] -> the kept
 * entries gathered into [N], as logits.view(-1,T)[active] does. */
static ag_tensor *discriminator_loss(ag_ctx *ctx, ag_tensor *logits, const ag_ints *labels, const ag_ints *mask,
                                     int64_t *n_tokens) {
    if (!logits) return NULL;
    const int64_t BT = labels->numel;
    int64_t n = 0;
    for (int64_t i = 0; i < BT; ++i) {
        if (labels->data[i] != 0 && labels->data[i] != 1) {
            ag_fail(AG_ERR_ARG, "electra: discriminator labels must be 0 (original) or 1 (replaced); "
                    "labels[%lld] is %d", (long long)i, labels->data[i]);
            return NULL;
        }
        n += !mask || mask->data[i] == 1;
    }
    if (n == 0) {
        ag_fail(AG_ERR_ARG, "electra: attention_mask keeps no token, so the discriminator loss is empty");
        return NULL;
    }
    ag_ints *keep = ag_ints_from(ctx, NULL, 1, AG_SHAPE(n)); /* [N] flat indices of the kept tokens */
    ag_tensor *y = ag_new(ctx, 1, AG_SHAPE(n), false);        /* [N] their labels as floats */
    if (!keep || !y) return NULL;
    for (int64_t i = 0, k = 0; i < BT; ++i)
        if (!mask || mask->data[i] == 1) keep->data[k] = (int32_t)i, y->data[k++] = (float)labels->data[i];
    if (n_tokens) *n_tokens = n;
    ag_tensor *flat = ag_reshape(ctx, logits, 1, AG_SHAPE(BT));          /* [B*T] */
    return ag_bce_logits(ctx, ag_index_select(ctx, flat, 0, keep), y); /* mean over N */
}

ag_tensor *nn_electra_loss(ag_ctx *ctx, const nn_electra *m, const ag_ints *ids, const ag_ints *token_type_ids,
                           const ag_ints *attention_mask, const ag_ints *labels, int64_t *n_tokens) {
    if (m->head == NN_ELECTRA_MODEL) {
        ag_fail(AG_ERR_STATE, "electra: ElectraModel has no loss (use ElectraForPreTraining, ElectraForMaskedLM or "
                "ElectraForSequenceClassification)");
        return NULL;
    }
    if (!labels) {
        ag_fail(AG_ERR_ARG, "electra: the loss needs \"labels\"");
        return NULL;
    }
    ag_tensor *h = nn_electra_forward(ctx, m, ids, token_type_ids, attention_mask); /* [B,T,H] */
    if (!h) return NULL;
    if (m->head == NN_ELECTRA_SEQ_CLS)
        return nn_bert_classifier_loss(ctx, nn_electra_cls_logits(ctx, m, h), labels, m->cfg.problem,
                                       m->cfg.problem_type_given, n_tokens);
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (!nn_same_bt("electra", "labels", labels, B, T)) return NULL;
    if (m->head == NN_ELECTRA_PRETRAINING)
        return discriminator_loss(ctx, nn_electra_discriminator_logits(ctx, m, h), labels, attention_mask, n_tokens);
    /* the generator: masked LM over every position, -100 ignored */
    if (n_tokens) {
        *n_tokens = 0;
        for (int64_t i = 0; i < labels->numel; ++i) *n_tokens += labels->data[i] != AG_IGNORE_INDEX;
    }
    return ag_cross_entropy(ctx, nn_electra_generator_logits(ctx, m, h), labels, 0.0f, AG_REDUCE_MEAN);
}
