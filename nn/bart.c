/* bart.c: BART and M2M-100, step for step as Hugging Face's modeling_bart.py
 * and modeling_m2m_100.py (4.31). See bart.h for what differs between the two.
 *
 * The encoder, over input_ids [B,S]:
 *   h = shared[ids] * embed_scale + positions                      [B,S,C]
 *   h = layernorm_embedding(h)                  (BART)
 *   h = dropout(h)
 *   for each layer: h = block(h), attending to every non-pad key   (nn_block)
 *   h = layer_norm(h)                           (M2M-100)
 *
 * The decoder, over decoder_input_ids [B,T], the same with causal
 * self-attention and, in every layer, cross-attention over the encoder's
 * states [B,S,C] (padding keys never attended). The heads:
 *   ForConditionalGeneration  logits = h shared^T (+ final_logits_bias)   [B,T,V]
 *   ForSequenceClassification out_proj(tanh(dense(h[b, last <eos> of row b])))   [B,L]
 *
 * The layers are nn_block (blocks.c) with Hugging Face's BART names: post-LN
 * for BART, pre-LN for M2M-100 (mBART's order). Dropout sits where HF puts
 * it: after each sub-layer (dropout), on the attention probabilities
 * (attention_dropout), after fc1's activation (activation_dropout).
 */
#include "bart.h"

#include "m2m100.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

static ag_status check_p(const nn_config *c, const char *field, double p) {
    if (p >= 0 && p < 1) return AG_OK;
    return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" is %g, must be in [0, 1)", c->path, field, p);
}

static ag_status check_heads(const nn_config *c, const char *field, int d_model, int heads) {
    if (d_model % heads == 0) return AG_OK;
    return ag_fail(AG_ERR_ARG, "config %s: d_model %d is not divisible by field \"%s\" %d", c->path, d_model, field,
                   heads);
}

static ag_status check_token(const nn_config *c, const char *field, int id, int V) {
    if (id >= 0 && id < V) return AG_OK;
    return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" is %d, outside the vocabulary [0, %d)", c->path, field, id, V);
}

ag_status nn_bart_config_read_flavour(const nn_config *c, bool m2m, nn_bart_config *g) {
    memset(g, 0, sizeof *g);
    g->m2m100 = m2m;
    double drop, attn, act_drop, cls_drop, std, enc_ld, dec_ld;
    const char *problem;
    ag_status st;
    /* BartConfig's and M2M100Config's defaults (bart-large, m2m100_418M) */
    if ((st = nn_config_int(c, "vocab_size", m2m ? 128112 : 50265, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "max_position_embeddings", 1024, 1, 1 << 20, &g->max_position_embeddings)) ||
        (st = nn_config_int(c, "d_model", 1024, 1, 1 << 16, &g->d_model)) ||
        (st = nn_config_int(c, "encoder_layers", 12, 1, 4096, &g->encoder_layers)) ||
        (st = nn_config_int(c, "decoder_layers", 12, 1, 4096, &g->decoder_layers)) ||
        (st = nn_config_int(c, "encoder_attention_heads", 16, 1, 4096, &g->encoder_attention_heads)) ||
        (st = nn_config_int(c, "decoder_attention_heads", 16, 1, 4096, &g->decoder_attention_heads)) ||
        (st = nn_config_int(c, "encoder_ffn_dim", 4096, 1, 1 << 20, &g->encoder_ffn_dim)) ||
        (st = nn_config_int(c, "decoder_ffn_dim", 4096, 1, 1 << 20, &g->decoder_ffn_dim)) ||
        (st = nn_config_act(c, "activation_function", m2m ? "relu" : "gelu", &g->act)) ||
        (st = nn_config_num(c, "dropout", 0.1, &drop)) ||
        (st = nn_config_num(c, "attention_dropout", m2m ? 0.1 : 0.0, &attn)) ||
        (st = nn_config_num(c, "activation_dropout", 0.0, &act_drop)) ||
        (st = nn_config_num(c, "classifier_dropout", 0.0, &cls_drop)) ||
        (st = nn_config_num(c, "init_std", 0.02, &std)) ||
        (st = nn_config_num(c, "encoder_layerdrop", m2m ? 0.05 : 0.0, &enc_ld)) ||
        (st = nn_config_num(c, "decoder_layerdrop", m2m ? 0.05 : 0.0, &dec_ld)) ||
        (st = nn_config_bool(c, "scale_embedding", m2m, &g->scale_embedding)) ||
        (st = nn_config_bool(c, "tie_word_embeddings", true, &g->tie_word_embeddings)) ||
        (st = nn_config_int(c, "pad_token_id", 1, -(1 << 24), 1 << 24, &g->pad_token_id)) ||
        (st = nn_config_int(c, "bos_token_id", 0, -(1 << 24), 1 << 24, &g->bos_token_id)) ||
        (st = nn_config_int(c, "eos_token_id", 2, -(1 << 24), 1 << 24, &g->eos_token_id)) ||
        (st = nn_config_int(c, "decoder_start_token_id", 2, -(1 << 24), 1 << 24, &g->decoder_start_token_id)) ||
        (st = nn_config_str(c, "problem_type", NULL, &problem)) ||
        (st = nn_config_int(c, "num_labels", 3, 1, 1 << 20, &g->num_labels)))
        return st;
    /* PretrainedConfig: num_labels is len(id2label) when the config has one */
    const cJSON *id2label = cJSON_GetObjectItemCaseSensitive(c->json, "id2label");
    if (id2label && !cJSON_IsNull(id2label)) {
        if (!cJSON_IsObject(id2label) || cJSON_GetArraySize(id2label) < 1)
            return ag_fail(AG_ERR_ARG, "config %s: field \"id2label\" must be a non-empty object", c->path);
        g->num_labels = cJSON_GetArraySize(id2label);
    }
    if ((st = check_heads(c, "encoder_attention_heads", g->d_model, g->encoder_attention_heads)) ||
        (st = check_heads(c, "decoder_attention_heads", g->d_model, g->decoder_attention_heads)) ||
        (st = check_p(c, "dropout", drop)) || (st = check_p(c, "attention_dropout", attn)) ||
        (st = check_p(c, "activation_dropout", act_drop)) || (st = check_p(c, "classifier_dropout", cls_drop)) ||
        (st = check_p(c, "encoder_layerdrop", enc_ld)) || (st = check_p(c, "decoder_layerdrop", dec_ld)) ||
        (st = check_token(c, "pad_token_id", g->pad_token_id, g->vocab_size)) ||
        (st = check_token(c, "eos_token_id", g->eos_token_id, g->vocab_size)) ||
        (st = check_token(c, "decoder_start_token_id", g->decoder_start_token_id, g->vocab_size)))
        return st;
    if (m2m && g->d_model < 4) /* the sinusoid divides by d_model/2 - 1 */
        return ag_fail(AG_ERR_ARG, "config %s: field \"d_model\" is %d; M2M-100's sinusoidal positions need >= 4",
                       c->path, g->d_model);
    if (!(std >= 0)) return ag_fail(AG_ERR_ARG, "config %s: field \"init_std\" must be >= 0", c->path);
    g->problem = g->num_labels == 1 ? NN_BERT_REGRESSION : NN_BERT_SINGLE_LABEL;
    if (problem) {
        g->problem_type_given = true;
        if (strcmp(problem, "regression") == 0) g->problem = NN_BERT_REGRESSION;
        else if (strcmp(problem, "single_label_classification") == 0) g->problem = NN_BERT_SINGLE_LABEL;
        else if (strcmp(problem, "multi_label_classification") == 0) g->problem = NN_BERT_MULTI_LABEL;
        else
            return ag_fail(AG_ERR_ARG, "config %s: field \"problem_type\" is '%s' (regression, "
                           "single_label_classification or multi_label_classification)", c->path, problem);
    }
    g->dropout = (float)drop;
    g->attention_dropout = (float)attn;
    g->activation_dropout = (float)act_drop;
    g->classifier_dropout = (float)cls_drop;
    g->init_std = (float)std;
    g->encoder_layerdrop = (float)enc_ld;
    g->decoder_layerdrop = (float)dec_ld;
    return AG_OK;
}

ag_status nn_bart_config_read(const nn_config *c, nn_bart_config *cfg) {
    return nn_bart_config_read_flavour(c, false, cfg);
}

/* ---------------------------------------------------------------- parameters */

/* BartEncoder / BartDecoder (and M2M-100's): embed_positions, layers, then
 * layernorm_embedding (BART) or layer_norm (M2M-100). embed_tokens is shared. */
static ag_status declare_stack(ag_params *ps, nn_bart *m, nn_bart_stack *s, bool decoder) {
    const nn_bart_config *g = &m->cfg;
    const int C = g->d_model;
    char base[NN_NAME_MAX], name[NN_NAME_MAX];
    nn_name(base, "%s%s", m->prefix, decoder ? "decoder" : "encoder");
    ag_status st;
    if (!g->m2m100 && (st = nn_embedding_init(ps, &s->positions, nn_name(name, "%s.embed_positions", base),
                                              g->max_position_embeddings + 2, C, -1))) /* offset 2 */
        return st;
    const int heads = decoder ? g->decoder_attention_heads : g->encoder_attention_heads;
    const nn_block_config bc = {
        .d_model = C, .n_head = heads, .d_head = C / heads,
        .d_ff = decoder ? g->decoder_ffn_dim : g->encoder_ffn_dim,
        .pre_ln = g->m2m100, .norm_eps = 1e-5f, /* nn.LayerNorm's default */
        .cross_attention = decoder, .attn_bias = true, .ffn_bias = true, .layout = AG_LINEAR_OUT_IN,
        .act = g->act, .attn_dropout = g->attention_dropout, .resid_dropout = g->dropout,
        .act_dropout = g->activation_dropout,
    };
    s->n_layers = decoder ? g->decoder_layers : g->encoder_layers;
    s->layers = calloc((size_t)s->n_layers, sizeof *s->layers);
    if (!s->layers) return ag_fail(AG_ERR_MEMORY, "bart: out of memory");
    for (int l = 0; l < s->n_layers; ++l)
        if ((st = nn_block_init(ps, &s->layers[l], nn_name(name, "%s.layers.%d", base, l), &bc,
                                decoder ? &nn_block_names_bart_decoder : &nn_block_names_bart_encoder)))
            return st;
    if (g->m2m100) return nn_layernorm_init(ps, &s->layer_norm, nn_name(name, "%s.layer_norm", base), C, 1e-5f);
    return nn_layernorm_init(ps, &s->layernorm_embedding, nn_name(name, "%s.layernorm_embedding", base), C, 1e-5f);
}

ag_status nn_bart_declare(ag_params *ps, nn_bart *m, const nn_bart_config *cfg, nn_bart_head head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->head = head;
    if (cfg->m2m100 && head == NN_BART_SEQ_CLS)
        return ag_fail(AG_ERR_ARG, "m2m_100: Hugging Face has no M2M100ForSequenceClassification");
    snprintf(m->prefix, sizeof m->prefix, "%s", head == NN_BART_MODEL ? "" : "model.");
    const int C = cfg->d_model, V = cfg->vocab_size;
    char name[NN_NAME_MAX];
    ag_status st;
    if ((st = nn_embedding_init(ps, &m->shared, nn_name(name, "%sshared", m->prefix), V, C, cfg->pad_token_id)) ||
        (st = declare_stack(ps, m, &m->encoder, false)) || (st = declare_stack(ps, m, &m->decoder, true)))
        return st;
    /* the names that are shared.weight in a file */
    nn_name(m->alias[m->n_alias++], "%sencoder.embed_tokens.weight", m->prefix);
    nn_name(m->alias[m->n_alias++], "%sdecoder.embed_tokens.weight", m->prefix);
    if (head == NN_BART_COND_GEN) {
        if (!cfg->m2m100 && !(m->final_logits_bias = ag_params_add(ps, "final_logits_bias", 2, AG_SHAPE(1, V))))
            return ag_error_status();
        if (cfg->tie_word_embeddings) {
            m->lm_head_w = m->shared.w;
            nn_name(m->alias[m->n_alias++], "lm_head.weight");
        } else if (!(m->lm_head_w = ag_params_add(ps, "lm_head.weight", 2, AG_SHAPE(V, C)))) {
            return ag_error_status();
        }
    } else if (head == NN_BART_SEQ_CLS) {
        if ((st = nn_linear_init(ps, &m->cls_dense, "classification_head.dense", C, C, true, AG_LINEAR_OUT_IN)) ||
            (st = nn_linear_init(ps, &m->cls_out, "classification_head.out_proj", C, cfg->num_labels, true,
                                 AG_LINEAR_OUT_IN)))
            return st;
    }
    return AG_OK;
}

void nn_bart_free(nn_bart *m) {
    free(m->encoder.layers);
    free(m->decoder.layers);
    m->encoder.layers = m->decoder.layers = NULL;
}

int nn_bart_aliases(const nn_bart *m, const char *alias[][2], int cap) {
    int n = 0;
    for (int i = 0; i < m->n_alias && n < cap; ++i, ++n) {
        alias[n][0] = m->alias[i];
        alias[n][1] = m->shared.w->name;
    }
    return n;
}

static void init_stack(nn_bart_stack *s, float std, nn_init_rng *r) {
    if (s->positions.w) nn_init_normal(s->positions.w, std, r);
    for (int l = 0; l < s->n_layers; ++l) {
        nn_block *b = &s->layers[l];
        nn_mha *att[2] = {&b->attn, b->cfg.cross_attention ? &b->cross : NULL};
        for (int k = 0; k < 2 && att[k]; ++k) {
            nn_init_linear(&att[k]->q, std, r), nn_init_linear(&att[k]->k, std, r);
            nn_init_linear(&att[k]->v, std, r), nn_init_linear(&att[k]->o, std, r);
        }
        nn_init_linear(&b->ffn.wi, std, r), nn_init_linear(&b->ffn.wo, std, r);
        nn_init_norm(&b->ln1), nn_init_norm(&b->ln2);
        if (b->cfg.cross_attention) nn_init_norm(&b->ln_cross);
    }
    nn_init_norm(&s->layernorm_embedding);
    nn_init_norm(&s->layer_norm);
}

void nn_bart_init_weights(nn_bart *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const float std = m->cfg.init_std;
    nn_init_embedding(&m->shared, std, &r);
    init_stack(&m->encoder, std, &r);
    init_stack(&m->decoder, std, &r);
    if (m->lm_head_w && m->lm_head_w != m->shared.w) nn_init_normal(m->lm_head_w, std, &r);
    if (m->final_logits_bias) {
        nn_init_const(m->final_logits_bias, 0);
        m->final_logits_bias->requires_grad = false; /* a buffer: never trained */
    }
    nn_init_linear(&m->cls_dense, std, &r);
    nn_init_linear(&m->cls_out, std, &r);
}

/* ---------------------------------------------------------------- forward */

static const char *family(const nn_bart *m) { return m->cfg.m2m100 ? "m2m_100" : "bart"; }

/* x is [B,T] (any T when T < 0). */
static bool check_bt(const nn_bart *m, const char *what, const ag_ints *x, int64_t B, int64_t T) {
    if (!x || (x->ndim == 2 && (B < 0 || x->shape[0] == B) && (T < 0 || x->shape[1] == T))) return true;
    char s[64];
    ag_fail(AG_ERR_ARG, "%s: %s is %s, want [%lld,%lld]", family(m), what, ag_shape_str(s, x->ndim, x->shape),
            (long long)B, (long long)T);
    return false;
}

ag_ints *nn_bart_shift_right(ag_ctx *ctx, const nn_bart_config *cfg, const ag_ints *ids) {
    if (!ids) return NULL;
    const int64_t B = ids->shape[0], T = ids->shape[1];
    ag_ints *out = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T));
    if (!out) return NULL;
    for (int64_t b = 0; b < B; ++b) {
        out->data[b * T] = cfg->decoder_start_token_id;
        for (int64_t t = 1; t < T; ++t) {
            const int32_t y = ids->data[b * T + t - 1];
            out->data[b * T + t] = y == AG_IGNORE_INDEX ? cfg->pad_token_id : y;
        }
    }
    return out;
}

/* The embeddings of one stack: shared[ids] * scale + positions, then (BART)
 * layernorm_embedding, then dropout. ids [B,T] -> [B,T,C]. */
static ag_tensor *embed(ag_ctx *ctx, const nn_bart *m, const nn_bart_stack *s, const ag_ints *ids) {
    const nn_bart_config *g = &m->cfg;
    const int64_t T = ids->shape[1];
    ag_tensor *h = nn_embedding_forward(ctx, &m->shared, ids); /* [B,T,C] */
    if (g->scale_embedding) h = ag_scale(ctx, h, sqrtf((float)g->d_model));
    ag_tensor *pos;
    if (g->m2m100) {
        pos = nn_m2m100_positions(ctx, ids, g->pad_token_id, g->d_model); /* [B,T,C], constant */
    } else {
        /* BartLearnedPositionalEmbedding: rows 2 .. T+1 of embed_positions */
        if (T > g->max_position_embeddings) {
            ag_fail(AG_ERR_ARG, "bart: %lld positions exceed max_position_embeddings %d", (long long)T,
                    g->max_position_embeddings);
            return NULL;
        }
        ag_ints *p = ag_ints_from(ctx, NULL, 1, AG_SHAPE(T));
        if (!p) return NULL;
        for (int64_t t = 0; t < T; ++t) p->data[t] = (int32_t)(t + 2);
        pos = nn_embedding_forward(ctx, &s->positions, p); /* [T,C], broadcast over B */
    }
    h = ag_add(ctx, h, pos);
    if (!g->m2m100) h = nn_norm_forward(ctx, &s->layernorm_embedding, h);
    return ag_dropout(ctx, h, g->dropout);
}

ag_tensor *nn_bart_encode(ag_ctx *ctx, const nn_bart *m, const ag_ints *ids, const ag_ints *attention_mask) {
    if (!ids) return NULL;
    if (!check_bt(m, "input_ids", ids, -1, -1) ||
        !check_bt(m, "attention_mask", attention_mask, ids->shape[0], ids->shape[1]))
        return NULL;
    ag_tensor *h = embed(ctx, m, &m->encoder, ids); /* [B,S,C] */
    const ag_attn_opts opts = {.key_mask = attention_mask}; /* bidirectional; padding never attended */
    for (int l = 0; l < m->encoder.n_layers; ++l) h = nn_block_forward(ctx, &m->encoder.layers[l], h, NULL, &opts, NULL);
    return m->cfg.m2m100 ? nn_norm_forward(ctx, &m->encoder.layer_norm, h) : h;
}

ag_tensor *nn_bart_decode(ag_ctx *ctx, const nn_bart *m, const ag_ints *dec_ids, const ag_ints *dec_mask,
                          ag_tensor *enc, const ag_ints *attention_mask) {
    if (!dec_ids || !enc) return NULL;
    if (!check_bt(m, "decoder_input_ids", dec_ids, enc->shape[0], -1) ||
        !check_bt(m, "decoder_attention_mask", dec_mask, dec_ids->shape[0], dec_ids->shape[1]) ||
        !check_bt(m, "attention_mask", attention_mask, enc->shape[0], enc->shape[1]))
        return NULL;
    ag_tensor *h = embed(ctx, m, &m->decoder, dec_ids); /* [B,T,C] */
    const ag_attn_opts self = {.causal = true, .key_mask = dec_mask};
    const ag_attn_opts cross = {.key_mask = attention_mask}; /* queries [B,T], keys the encoder's [B,S] */
    for (int l = 0; l < m->decoder.n_layers; ++l)
        h = nn_block_forward(ctx, &m->decoder.layers[l], h, enc, &self, &cross);
    return m->cfg.m2m100 ? nn_norm_forward(ctx, &m->decoder.layer_norm, h) : h;
}

ag_tensor *nn_bart_forward(ag_ctx *ctx, const nn_bart *m, const ag_ints *ids, const ag_ints *attention_mask,
                           const ag_ints *dec_ids, const ag_ints *dec_mask) {
    if (!ids) return NULL;
    if (!dec_ids && m->cfg.m2m100) {
        ag_fail(AG_ERR_ARG, "m2m_100: M2M100Model needs decoder_input_ids (it does not shift input_ids as BART does)");
        return NULL;
    }
    if (!check_bt(m, "input_ids", ids, -1, -1)) return NULL;
    /* BartModel: no decoder inputs -> shift_tokens_right(input_ids) */
    const ag_ints *dec = dec_ids ? dec_ids : nn_bart_shift_right(ctx, &m->cfg, ids);
    ag_tensor *enc = nn_bart_encode(ctx, m, ids, attention_mask); /* [B,S,C] */
    return nn_bart_decode(ctx, m, dec, dec_mask, enc, attention_mask);
}

ag_tensor *nn_bart_logits(ag_ctx *ctx, const nn_bart *m, ag_tensor *hidden) {
    if (!hidden) return NULL;
    if (!m->lm_head_w) {
        ag_fail(AG_ERR_STATE, "%s: this class has no LM head (use ...ForConditionalGeneration)", family(m));
        return NULL;
    }
    ag_tensor *logits = ag_linear(ctx, hidden, m->lm_head_w, NULL, AG_LINEAR_OUT_IN); /* [...,V] */
    if (!m->final_logits_bias) return logits;
    /* a buffer, so a constant on the tape: backward never reaches the registry's copy */
    const ag_tensor *fb = m->final_logits_bias;
    return ag_add(ctx, logits, ag_from(ctx, fb->data, fb->ndim, fb->shape, false)); /* + [1,V] */
}

/* hidden [B,T,C] -> [B,C]: each row's state at its last <eos> in ids [B,T].
 * HF: hidden[eos_mask].view(B, -1, C)[:, -1], which needs the same number of
 * <eos> in every row. */
static ag_tensor *eos_states(ag_ctx *ctx, const nn_bart *m, ag_tensor *hidden, const ag_ints *ids) {
    if (!hidden) return NULL;
    const int64_t B = ids->shape[0], T = ids->shape[1], C = hidden->shape[2];
    ag_ints *rows = ag_ints_from(ctx, NULL, 1, AG_SHAPE(B));
    if (!rows) return NULL;
    int64_t first_count = -1;
    for (int64_t b = 0; b < B; ++b) {
        int64_t count = 0, last = -1;
        for (int64_t t = 0; t < T; ++t)
            if (ids->data[b * T + t] == m->cfg.eos_token_id) count++, last = t;
        if (count == 0 || (first_count >= 0 && count != first_count)) {
            ag_fail(AG_ERR_ARG, "bart: all examples must have the same number of <eos> tokens (eos_token_id %d), "
                    "at least one: row %lld has %lld%s", m->cfg.eos_token_id, (long long)b, (long long)count,
                    first_count >= 0 ? ", row 0 a different number" : "");
            return NULL;
        }
        first_count = count;
        rows->data[b] = (int32_t)(b * T + last);
    }
    ag_tensor *flat = ag_reshape(ctx, hidden, 2, AG_SHAPE(B * T, C)); /* [B*T,C] */
    return ag_index_select(ctx, flat, 0, rows);                      /* [B,C] */
}

ag_tensor *nn_bart_loss(ag_ctx *ctx, const nn_bart *m, const ag_ints *ids, const ag_ints *attention_mask,
                        const ag_ints *dec_ids, const ag_ints *dec_mask, const ag_ints *labels, int64_t *n_tokens) {
    if (m->head == NN_BART_MODEL) {
        ag_fail(AG_ERR_STATE, "%s: the bare model has no loss (use ...ForConditionalGeneration%s)", family(m),
                m->cfg.m2m100 ? "" : " or BartForSequenceClassification");
        return NULL;
    }
    if (!ids) return NULL;
    if (!labels) {
        ag_fail(AG_ERR_ARG, "%s: the loss needs \"labels\"", family(m));
        return NULL;
    }
    if (!check_bt(m, "input_ids", ids, -1, -1)) return NULL;
    const int64_t B = ids->shape[0];
    if (m->head == NN_BART_COND_GEN) {
        if (!check_bt(m, "labels", labels, B, -1) ||
            !check_bt(m, "decoder_input_ids", dec_ids, B, labels->shape[1]))
            return NULL;
        /* labels -> decoder_input_ids by shift_tokens_right, unless given */
        const ag_ints *dec = dec_ids ? dec_ids : nn_bart_shift_right(ctx, &m->cfg, labels);
        ag_tensor *h = nn_bart_forward(ctx, m, ids, attention_mask, dec, dec_mask); /* [B,T,C] */
        int64_t count = 0;
        for (int64_t i = 0; i < labels->numel; ++i) count += labels->data[i] != AG_IGNORE_INDEX;
        if (n_tokens) *n_tokens = count;
        return ag_cross_entropy(ctx, nn_bart_logits(ctx, m, h), labels, 0.0f, AG_REDUCE_MEAN);
    }
    /* sequence classification: the decoder reads shift_tokens_right(input_ids) */
    if (!check_bt(m, "decoder_input_ids", dec_ids, B, ids->shape[1])) return NULL;
    ag_tensor *h = nn_bart_forward(ctx, m, ids, attention_mask, dec_ids, dec_mask); /* [B,T,C] */
    const float p = m->cfg.classifier_dropout;
    /* BartClassificationHead: dropout, dense, tanh, dropout, out_proj */
    ag_tensor *x = ag_dropout(ctx, eos_states(ctx, m, h, ids), p);
    x = ag_dropout(ctx, ag_tanh(ctx, nn_linear_forward(ctx, &m->cls_dense, x)), p);
    ag_tensor *logits = nn_linear_forward(ctx, &m->cls_out, x); /* [B,L] */
    return nn_bert_classifier_loss(ctx, logits, labels, m->cfg.problem, m->cfg.problem_type_given, n_tokens);
}

/* ---------------------------------------------------------------- generation: cached decoder steps */

ag_status nn_bart_cross_cache_fill(ag_ctx *ctx, const nn_bart *m, ag_tensor *enc, nn_cross_cache *cross) {
    ag_status st;
    for (int l = 0; l < m->decoder.n_layers; ++l)
        if ((st = nn_cross_cache_fill(ctx, cross, l, &m->decoder.layers[l], enc))) return st;
    return AG_OK;
}

/* embed() for tokens that start at position `past` of the target:
 * BART's learned rows past+2 .., M2M-100's create_position_ids_from_input_ids
 * with past_key_values_length = past. ids [B,T] -> [B,T,C]. */
static ag_tensor *embed_from(ag_ctx *ctx, const nn_bart *m, const nn_bart_stack *s, const ag_ints *ids,
                             int64_t past) {
    const nn_bart_config *g = &m->cfg;
    const int64_t B = ids->shape[0], T = ids->shape[1], C = g->d_model;
    ag_tensor *h = nn_embedding_forward(ctx, &m->shared, ids); /* [B,T,C] */
    if (g->scale_embedding) h = ag_scale(ctx, h, sqrtf((float)g->d_model));
    ag_tensor *pos;
    if (g->m2m100) {
        pos = ag_new(ctx, 3, AG_SHAPE(B, T, C), false); /* [B,T,C], zero rows for padding */
        if (!pos) return NULL;
        for (int64_t b = 0; b < B; ++b) {
            int64_t count = 0;
            for (int64_t t = 0; t < T; ++t) {
                if (ids->data[b * T + t] == g->pad_token_id) continue;
                count++;
                nn_m2m100_sinusoid(pos->data + (b * T + t) * C, g->pad_token_id + past + count, (int)C);
            }
        }
    } else {
        if (past + T > g->max_position_embeddings) {
            ag_fail(AG_ERR_ARG, "bart: %lld positions exceed max_position_embeddings %d", (long long)(past + T),
                    g->max_position_embeddings);
            return NULL;
        }
        ag_ints *p = ag_ints_from(ctx, NULL, 1, AG_SHAPE(T));
        if (!p) return NULL;
        for (int64_t t = 0; t < T; ++t) p->data[t] = (int32_t)(past + t + 2);
        pos = nn_embedding_forward(ctx, &s->positions, p); /* [T,C] */
    }
    h = ag_add(ctx, h, pos);
    if (!g->m2m100) h = nn_norm_forward(ctx, &s->layernorm_embedding, h);
    return ag_dropout(ctx, h, g->dropout);
}

ag_tensor *nn_bart_decode_cached(ag_ctx *ctx, const nn_bart *m, const ag_ints *dec_ids, nn_kv_cache *self,
                                 const nn_cross_cache *cross) {
    if (!dec_ids) return NULL;
    if (!check_bt(m, "decoder_input_ids", dec_ids, -1, -1)) return NULL;
    const nn_bart_config *g = &m->cfg;
    if (nn_kv_cache_check(self, family(m), dec_ids, m->decoder.n_layers, g->decoder_attention_heads,
                          g->d_model / g->decoder_attention_heads))
        return NULL;
    ag_tensor *h = embed_from(ctx, m, &m->decoder, dec_ids, self->len); /* [B,T,C] */
    const ag_attn_opts opts = {.causal = true};
    for (int l = 0; l < m->decoder.n_layers; ++l)
        h = nn_block_forward_cached(ctx, &m->decoder.layers[l], h, self, cross, l, &opts, NULL);
    if (!h) return NULL;
    nn_kv_cache_advance(self, dec_ids->shape[1]);
    return m->cfg.m2m100 ? nn_norm_forward(ctx, &m->decoder.layer_norm, h) : h;
}
