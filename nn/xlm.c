/* xlm.c: XLM, step for step as Hugging Face's modeling_xlm.py (4.31).
 *
 *   h = E[ids] + P[pos] (+ L[langs]) (+ E[token_type_ids])      [B,T,C]
 *   h = dropout(layer_norm_emb(h)) * mask                        mask [B,T,1]
 *   for each layer i (post-LN, nn_block with pre_ln = false):
 *     h = layer_norm1.i(h + dropout(attentions.i(h)))
 *     h = layer_norm2.i(h + dropout(ffns.i(h)))
 *     h = h * mask
 *   XLMWithLMHeadModel:            logits = h E^T + b            [B,T,V], CE against labels, unshifted
 *   XLMForSequenceClassification:  logits = summary(h[:,0])      [B,num_labels]
 *
 * The attention mask is the padding mask (keys that are padding are never
 * seen), or with causal: true the lower triangle alone.
 */
#include "xlm.h"

#include "causal_lm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

static ag_status read_summary(const nn_config *c, nn_xlm_config *g) {
    const char *type, *act;
    bool use_proj, to_labels;
    ag_status st;
    if ((st = nn_bert_read_labels(c, &g->num_labels, &g->problem, &g->problem_type_given)) ||
        (st = nn_config_str(c, "summary_type", "first", &type)) ||
        (st = nn_config_bool(c, "summary_use_proj", true, &use_proj)) ||
        (st = nn_config_bool(c, "summary_proj_to_labels", true, &to_labels)) ||
        (st = nn_config_str(c, "summary_activation", NULL, &act)) ||
        (st = nn_config_prob(c, "summary_first_dropout", 0.1, &g->summary_first_dropout)) ||
        (st = nn_config_prob(c, "summary_last_dropout", 0.0, &g->summary_last_dropout)))
        return st;
    if (strcmp(type, "first") == 0) g->summary_last = false;
    else if (strcmp(type, "last") == 0) g->summary_last = true;
    else return ag_fail(AG_ERR_ARG, "config %s: field \"summary_type\" is '%s'; tapegrad builds \"first\" and "
                        "\"last\"", c->path, type);
    if (!use_proj || !to_labels)
        return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" is false; tapegrad's XLM classifier needs the "
                       "summary's projection to num_labels", c->path, use_proj ? "summary_proj_to_labels" :
                       "summary_use_proj");
    g->has_summary_act = act && act[0];
    if (g->has_summary_act && !nn_act_from_name(act, &g->summary_act))
        return ag_fail(AG_ERR_ARG, "config %s: field \"summary_activation\": unknown activation '%s'", c->path, act);
    return AG_OK;
}

ag_status nn_xlm_config_read(const nn_config *c, nn_xlm_config *g) {
    memset(g, 0, sizeof *g);
    double estd, istd;
    bool is_encoder, asm_;
    ag_status st;
    /* configuration_xlm.py's attribute_map: n_words is vocab_size */
    const bool old_name = !cJSON_GetObjectItemCaseSensitive(c->json, "vocab_size") &&
                          cJSON_GetObjectItemCaseSensitive(c->json, "n_words");
    if ((st = nn_config_int(c, old_name ? "n_words" : "vocab_size", 30145, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "emb_dim", 2048, 1, 1 << 16, &g->emb_dim)) ||
        (st = nn_config_int(c, "n_layers", 12, 1, 4096, &g->n_layers)) ||
        (st = nn_config_int(c, "n_heads", 16, 1, 4096, &g->n_heads)) ||
        (st = nn_config_int(c, "max_position_embeddings", 512, 1, 1 << 20, &g->max_position_embeddings)) ||
        (st = nn_config_int(c, "n_langs", 1, 1, 1 << 16, &g->n_langs)) ||
        (st = nn_config_int(c, "pad_index", 2, 0, 1 << 24, &g->pad_index)) ||
        (st = nn_config_bool(c, "use_lang_emb", true, &g->use_lang_emb)) ||
        (st = nn_config_bool(c, "sinusoidal_embeddings", false, &g->sinusoidal_embeddings)) ||
        (st = nn_config_bool(c, "causal", false, &g->causal)) ||
        (st = nn_config_bool(c, "gelu_activation", true, &g->gelu_activation)) ||
        (st = nn_config_bool(c, "is_encoder", true, &is_encoder)) ||
        (st = nn_config_bool(c, "asm", false, &asm_)) ||
        (st = nn_config_prob(c, "dropout", 0.1, &g->dropout)) ||
        (st = nn_config_prob(c, "attention_dropout", 0.1, &g->attention_dropout)) ||
        (st = nn_config_positive(c, "layer_norm_eps", 1e-12, &g->layer_norm_eps)) ||
        (st = nn_config_num(c, "embed_init_std", 1.0 / sqrt(2048.0), &estd)) ||
        (st = nn_config_num(c, "init_std", 0.02, &istd)))
        return st;
    if (g->emb_dim % g->n_heads)
        return ag_fail(AG_ERR_ARG, "config %s: emb_dim %d is not divisible by n_heads %d (field \"n_heads\")", c->path,
                       g->emb_dim, g->n_heads);
    if (!is_encoder)
        return ag_fail(AG_ERR_ARG, "config %s: field \"is_encoder\" is false; XLM is built only as an encoder "
                       "(Hugging Face refuses it too)", c->path);
    if (asm_)
        return ag_fail(AG_ERR_ARG, "config %s: field \"asm\" is true; tapegrad has no adaptive softmax", c->path);
    if (g->pad_index >= g->vocab_size)
        return ag_fail(AG_ERR_ARG, "config %s: field \"pad_index\" %d is outside the vocabulary (vocab_size %d)",
                       c->path, g->pad_index, g->vocab_size);
    g->embed_init_std = (float)estd;
    g->init_std = (float)istd;
    return read_summary(c, g);
}

/* ---------------------------------------------------------------- parameters */

/* Hugging Face's names of layer l, relative to the model's prefix. */
typedef struct {
    char ln1[NN_NAME_MAX], q[NN_NAME_MAX], k[NN_NAME_MAX], v[NN_NAME_MAX], o[NN_NAME_MAX];
    char ln2[NN_NAME_MAX], lin1[NN_NAME_MAX], lin2[NN_NAME_MAX];
} layer_names;

static nn_block_names xlm_block_names(layer_names *n, const char *p, int l) {
    nn_block_names names = {
        .ln1 = nn_name(n->ln1, "%slayer_norm1.%d", p, l),
        .attn = {nn_name(n->q, "%sattentions.%d.q_lin", p, l), nn_name(n->k, "%sattentions.%d.k_lin", p, l),
                 nn_name(n->v, "%sattentions.%d.v_lin", p, l), nn_name(n->o, "%sattentions.%d.out_lin", p, l)},
        .ln2 = nn_name(n->ln2, "%slayer_norm2.%d", p, l),
        .ffn = {.wi = nn_name(n->lin1, "%sffns.%d.lin1", p, l), .wo = nn_name(n->lin2, "%sffns.%d.lin2", p, l)},
    };
    return names;
}

ag_status nn_xlm_declare(ag_params *ps, nn_xlm *m, const nn_xlm_config *cfg, nn_xlm_head head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->head = head;
    snprintf(m->prefix, sizeof m->prefix, "%s", head == NN_XLM_MODEL ? "" : "transformer.");
    const char *p = m->prefix;
    const int C = cfg->emb_dim;
    char name[NN_NAME_MAX];
    ag_status st;
    /* in XLMModel.__init__'s order: positions, languages, tokens, norm */
    if ((st = nn_embedding_init(ps, &m->position_embeddings, nn_name(name, "%sposition_embeddings", p),
                                cfg->max_position_embeddings, C, -1)))
        return st;
    if (cfg->sinusoidal_embeddings) m->position_embeddings.w->requires_grad = false; /* fixed, never trained */
    if (cfg->n_langs > 1 && cfg->use_lang_emb &&
        (st = nn_embedding_init(ps, &m->lang_embeddings, nn_name(name, "%slang_embeddings", p), cfg->n_langs, C, -1)))
        return st;
    if ((st = nn_embedding_init(ps, &m->embeddings, nn_name(name, "%sembeddings", p), cfg->vocab_size, C,
                                cfg->pad_index)) ||
        (st = nn_layernorm_init(ps, &m->layer_norm_emb, nn_name(name, "%slayer_norm_emb", p), C, cfg->layer_norm_eps)))
        return st;

    const nn_block_config bc = {
        .d_model = C, .n_head = cfg->n_heads, .d_head = C / cfg->n_heads, .d_ff = 4 * C, /* hidden_dim = dim * 4 */
        .pre_ln = false, .norm_eps = cfg->layer_norm_eps, .attn_bias = true, .ffn_bias = true,
        .layout = AG_LINEAR_OUT_IN, .act = cfg->gelu_activation ? NN_ACT_GELU : NN_ACT_RELU,
        .attn_dropout = cfg->attention_dropout, .resid_dropout = cfg->dropout,
    };
    if (!(m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers)))
        return ag_fail(AG_ERR_MEMORY, "xlm: out of memory");
    for (int l = 0; l < cfg->n_layers; ++l) {
        layer_names n;
        const nn_block_names names = xlm_block_names(&n, p, l);
        if ((st = nn_block_init(ps, &m->layers[l], "", &bc, &names))) return st;
        /* the names carry no common prefix, so name the layer for messages here */
        nn_name(m->layers[l].name, "%slayer %d", p, l);
    }
    if (head == NN_XLM_LM_HEAD) {
        /* pred_layer.proj: the weight is the token embedding (tied), the bias its own */
        if (!(m->pred_bias = ag_params_add(ps, "pred_layer.proj.bias", 1, AG_SHAPE(cfg->vocab_size))))
            return ag_error_status();
    } else if (head == NN_XLM_SEQ_CLS) {
        if ((st = nn_linear_init(ps, &m->summary, "sequence_summary.summary", C, cfg->num_labels, true,
                                 AG_LINEAR_OUT_IN)))
            return st;
    }
    return AG_OK;
}

void nn_xlm_free(nn_xlm *m) {
    free(m->layers);
    m->layers = NULL;
}

int nn_xlm_aliases(const nn_xlm *m, const char *alias[][2], int cap) {
    if (m->head != NN_XLM_LM_HEAD || cap < 1) return 0;
    alias[0][0] = "pred_layer.proj.weight";
    alias[0][1] = m->embeddings.w->name;
    return 1;
}

/* create_sinusoidal_embeddings: angle(pos, j) = pos / 10000^(2 (j/2) / dim),
 * sine in the even columns, cosine in the odd ones (interleaved). */
static void sinusoidal_table(ag_tensor *w) {
    const int64_t n = w->shape[0], dim = w->shape[1];
    for (int64_t pos = 0; pos < n; ++pos)
        for (int64_t j = 0; j < dim; ++j) {
            double a = (double)pos / pow(10000.0, 2.0 * (double)(j / 2) / (double)dim);
            w->data[pos * dim + j] = (float)(j % 2 == 0 ? sin(a) : cos(a));
        }
}

void nn_xlm_init_weights(nn_xlm *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const nn_xlm_config *c = &m->cfg;
    if (c->sinusoidal_embeddings) sinusoidal_table(m->position_embeddings.w);
    else nn_init_normal(m->position_embeddings.w, c->embed_init_std, &r);
    if (m->lang_embeddings.w) nn_init_normal(m->lang_embeddings.w, c->embed_init_std, &r);
    nn_init_normal(m->embeddings.w, c->embed_init_std, &r);
    memset(m->embeddings.w->data + (int64_t)c->pad_index * c->emb_dim, 0, (size_t)c->emb_dim * sizeof(float));
    nn_init_norm(&m->layer_norm_emb);
    for (int l = 0; l < c->n_layers; ++l) {
        nn_block *b = &m->layers[l];
        const nn_linear *lin[6] = {&b->attn.q, &b->attn.k, &b->attn.v, &b->attn.o, &b->ffn.wi, &b->ffn.wo};
        for (int i = 0; i < 6; ++i) nn_init_linear(lin[i], c->init_std, &r);
        nn_init_norm(&b->ln1);
        nn_init_norm(&b->ln2);
    }
    if (m->pred_bias) nn_init_const(m->pred_bias, 0);
    if (m->summary.w) nn_init_linear(&m->summary, c->init_std, &r);
}

/* ---------------------------------------------------------------- forward */

/* Checks that a batch field is [B,T] like ids. */
static bool same_shape(const char *what, const ag_ints *x, const ag_ints *ids) {
    return nn_same_bt("xlm", what, x, ids->shape[0], ids->shape[1]);
}

/* get_masks' `mask` as floats [B,T,1]: the attention mask, or, without one,
 * t < (the number of tokens of row b that are not pad_index). */
static ag_tensor *hidden_mask(ag_ctx *ctx, const nn_xlm *m, const ag_ints *ids, const ag_ints *attention_mask) {
    const int64_t B = ids->shape[0], T = ids->shape[1];
    ag_tensor *mask = ag_new(ctx, 3, AG_SHAPE(B, T, 1), false);
    if (!mask) return NULL;
    for (int64_t b = 0; b < B; ++b) {
        int64_t len = 0;
        for (int64_t t = 0; t < T; ++t) len += ids->data[b * T + t] != m->cfg.pad_index;
        for (int64_t t = 0; t < T; ++t)
            mask->data[b * T + t] = attention_mask ? (attention_mask->data[b * T + t] != 0) : (float)(t < len);
    }
    return mask;
}

ag_tensor *nn_xlm_forward(ag_ctx *ctx, const nn_xlm *m, const ag_ints *ids, const ag_ints *langs,
                          const ag_ints *token_type_ids, const ag_ints *attention_mask, const ag_ints *position_ids) {
    const nn_xlm_config *c = &m->cfg;
    if (nn_causal_lm_check("xlm", ids, attention_mask, 0, c->max_position_embeddings)) return NULL;
    if (!same_shape("langs", langs, ids) || !same_shape("token_type_ids", token_type_ids, ids) ||
        !same_shape("position_ids", position_ids, ids))
        return NULL;
    const int64_t B = ids->shape[0], T = ids->shape[1];
    for (int64_t i = 0; position_ids && i < B * T; ++i)
        if (position_ids->data[i] < 0 || position_ids->data[i] >= c->max_position_embeddings) {
            ag_fail(AG_ERR_ARG, "xlm: position_ids[%lld][%lld] = %d is outside [0, max_position_embeddings = %d)",
                    (long long)(i / T), (long long)(i % T), position_ids->data[i], c->max_position_embeddings);
            return NULL;
        }
    const bool use_langs = langs && m->lang_embeddings.w;
    if (use_langs)
        for (int64_t i = 0; i < B * T; ++i)
            if (langs->data[i] < 0 || langs->data[i] >= c->n_langs) {
                ag_fail(AG_ERR_ARG, "xlm: langs[%lld][%lld] = %d is outside [0, n_langs = %d)", (long long)(i / T),
                        (long long)(i % T), langs->data[i], c->n_langs);
                return NULL;
            }

    /* the mask of real tokens [B,T,1], and, as ints [B,T], the keys attention may see */
    ag_tensor *mask = hidden_mask(ctx, m, ids, attention_mask);
    ag_ints *key_mask = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T));
    if (!mask || !key_mask) return NULL;
    for (int64_t i = 0; i < B * T; ++i) key_mask->data[i] = mask->data[i] != 0;

    /* positions 0..T-1 for every row ([T,C], broadcast), or the batch's own
     * ([B,T,C]: TLM restarts them at the second sentence of a pair) */
    ag_tensor *h = ag_add(ctx, nn_embedding_forward(ctx, &m->embeddings, ids), /* [B,T,C] */
                          nn_embedding_forward(ctx, &m->position_embeddings,
                                               position_ids ? position_ids : nn_causal_lm_positions(ctx, T, 0)));
    if (use_langs) h = ag_add(ctx, h, nn_embedding_forward(ctx, &m->lang_embeddings, langs));
    if (token_type_ids) h = ag_add(ctx, h, nn_embedding_forward(ctx, &m->embeddings, token_type_ids));
    h = ag_dropout(ctx, nn_norm_forward(ctx, &m->layer_norm_emb, h), c->dropout);
    h = ag_mul(ctx, h, mask);
    /* get_masks: causal layers see the triangle only; others every real key */
    const ag_attn_opts opts = c->causal ? (ag_attn_opts){.causal = true} : (ag_attn_opts){.key_mask = key_mask};
    for (int l = 0; l < c->n_layers; ++l)
        h = ag_mul(ctx, nn_block_forward(ctx, &m->layers[l], h, NULL, &opts, NULL), mask);
    return h;
}

/* SequenceSummary: the first or last token, dropout, the projection to the
 * labels, the activation, dropout. hidden [B,T,C] -> [B,num_labels]. */
static ag_tensor *summary_logits(ag_ctx *ctx, const nn_xlm *m, ag_tensor *hidden) {
    if (!hidden) return NULL;
    const int64_t B = hidden->shape[0], T = hidden->shape[1], C = hidden->shape[2];
    ag_tensor *x = ag_reshape(ctx, ag_slice(ctx, hidden, 1, m->cfg.summary_last ? T - 1 : 0, 1), 2, AG_SHAPE(B, C));
    x = nn_linear_forward(ctx, &m->summary, ag_dropout(ctx, x, m->cfg.summary_first_dropout));
    if (m->cfg.has_summary_act) x = nn_act_forward(ctx, m->cfg.summary_act, x);
    return ag_dropout(ctx, x, m->cfg.summary_last_dropout);
}

ag_tensor *nn_xlm_loss(ag_ctx *ctx, const nn_xlm *m, const ag_ints *ids, const ag_ints *langs,
                       const ag_ints *token_type_ids, const ag_ints *attention_mask, const ag_ints *position_ids,
                       const ag_ints *labels, int64_t *n_tokens) {
    if (m->head == NN_XLM_MODEL) {
        ag_fail(AG_ERR_STATE, "xlm: XLMModel has no loss (use XLMWithLMHeadModel or XLMForSequenceClassification)");
        return NULL;
    }
    if (!labels) {
        ag_fail(AG_ERR_ARG, "xlm: the loss needs \"labels\"");
        return NULL;
    }
    ag_tensor *h = nn_xlm_forward(ctx, m, ids, langs, token_type_ids, attention_mask, position_ids); /* [B,T,C] */
    if (!h) return NULL;
    if (m->head == NN_XLM_SEQ_CLS)
        return nn_bert_classifier_loss(ctx, summary_logits(ctx, m, h), labels, m->cfg.problem,
                                       m->cfg.problem_type_given, n_tokens);
    /* XLMPredLayer: every position, not shifted, -100 ignored */
    if (!same_shape("labels", labels, ids)) return NULL;
    int64_t count = 0;
    for (int64_t i = 0; i < labels->numel; ++i) count += labels->data[i] != AG_IGNORE_INDEX;
    if (n_tokens) *n_tokens = count;
    ag_tensor *logits = ag_linear(ctx, h, m->embeddings.w, m->pred_bias, AG_LINEAR_OUT_IN); /* [B,T,V] */
    return ag_cross_entropy(ctx, logits, labels, 0.0f, AG_REDUCE_MEAN);
}
