/* encoder_decoder.c: BERT2BERT, step for step as Hugging Face's
 * EncoderDecoderModel (modeling_encoder_decoder.py, 4.31) with a BertModel
 * encoder and a BertLMHeadModel decoder (modeling_bert.py).
 *
 *   e = encoder embeddings(ids)                                  [B,S,C]
 *   for each encoder layer:  e = BertLayer(e), padding never attended
 *   dec_in = labels shifted right: [start, labels[:, :-1]], -100 -> pad
 *   d = decoder embeddings(dec_in)                               [B,T,C]
 *   for each decoder layer (post-LN, like every BertLayer):
 *     d = attention.output.LayerNorm(d + self_attn(d))           causal
 *     d = crossattention.output.LayerNorm(d + cross_attn(d, e))  keys: the encoder's real tokens
 *     d = output.LayerNorm(d + output.dense(act(intermediate.dense(d))))
 *   logits = LayerNorm(act(transform.dense(d))) word^T + bias    [B,T,V]
 *   loss = CE(logits, labels), -100 ignored
 *
 * The loss is EncoderDecoderModel's own: the logits at position t are
 * scored against labels[t] directly, because the shift already happened on
 * the input side (BertLMHeadModel alone would shift its logits instead).
 */
#include "encoder_decoder.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

/* One side's BERT config: the object config.json holds under `field`. */
static ag_status read_side(const nn_config *c, const char *field, nn_bert_config *g, bool *is_decoder,
                           bool *cross) {
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(c->json, field);
    if (!cJSON_IsObject(obj))
        return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" must be an object holding a BERT config", c->path, field);
    nn_config sub = {.json = (cJSON *)obj};
    /* messages name the side: "config.json (encoder)" */
    const size_t room = sizeof sub.path - strlen(field) - 4;
    snprintf(sub.path, sizeof sub.path, "%.*s (%s)", (int)room, c->path, field);
    const char *type;
    ag_status st;
    if ((st = nn_config_str(&sub, "model_type", NULL, &type))) return st;
    if (!type || strcmp(type, "bert") != 0)
        return ag_fail(AG_ERR_ARG, "config %s: field \"%s.model_type\" is '%s'; tapegrad builds encoder-decoders "
                       "of two BERTs (\"bert\")", c->path, field, type ? type : "(missing)");
    if ((st = nn_bert_config_read(&sub, false, g)) || (st = nn_config_bool(&sub, "is_decoder", false, is_decoder)) ||
        (st = nn_config_bool(&sub, "add_cross_attention", false, cross)))
        return st;
    return AG_OK;
}

ag_status nn_bert2bert_config_read(const nn_config *c, nn_bert2bert_config *g) {
    memset(g, 0, sizeof *g);
    bool enc_dec, enc_cross, dec_dec, dec_cross, tie;
    ag_status st;
    if ((st = read_side(c, "encoder", &g->enc, &enc_dec, &enc_cross)) ||
        (st = read_side(c, "decoder", &g->dec, &dec_dec, &dec_cross)) ||
        (st = nn_config_int(c, "decoder_start_token_id", -1, -1, 1 << 24, &g->decoder_start_token_id)) ||
        (st = nn_config_int(c, "pad_token_id", -1, -1, 1 << 24, &g->pad_token_id)) ||
        (st = nn_config_bool(c, "tie_encoder_decoder", false, &tie)))
        return st;
    if (enc_dec || enc_cross)
        return ag_fail(AG_ERR_ARG, "config %s: field \"encoder.%s\" must be false: the encoder is a bidirectional "
                       "BertModel", c->path, enc_dec ? "is_decoder" : "add_cross_attention");
    if (!dec_dec)
        return ag_fail(AG_ERR_ARG, "config %s: field \"decoder.is_decoder\" must be true (causal self-attention)",
                       c->path);
    if (!dec_cross)
        return ag_fail(AG_ERR_ARG, "config %s: field \"decoder.add_cross_attention\" must be true (the decoder "
                       "attends to the encoder)", c->path);
    if (g->enc.hidden_size != g->dec.hidden_size)
        return ag_fail(AG_ERR_ARG, "config %s: field \"decoder.hidden_size\" %d differs from the encoder's %d; "
                       "tapegrad does not build Hugging Face's enc_to_dec_proj", c->path, g->dec.hidden_size,
                       g->enc.hidden_size);
    if (tie)
        return ag_fail(AG_ERR_ARG, "config %s: field \"tie_encoder_decoder\" is true; tapegrad builds untied "
                       "encoder and decoder weights only", c->path);
    /* EncoderDecoderModel raises without these two when it shifts labels */
    if (g->decoder_start_token_id < 0)
        return ag_fail(AG_ERR_ARG, "config %s: field \"decoder_start_token_id\" is missing (the first decoder "
                       "input; BERT2BERT usually uses [CLS])", c->path);
    if (g->pad_token_id < 0)
        return ag_fail(AG_ERR_ARG, "config %s: field \"pad_token_id\" is missing (it replaces -100 in the "
                       "shifted labels)", c->path);
    if (g->decoder_start_token_id >= g->dec.vocab_size || g->pad_token_id >= g->dec.vocab_size)
        return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" is outside the decoder's vocabulary (vocab_size %d)",
                       c->path, g->decoder_start_token_id >= g->dec.vocab_size ? "decoder_start_token_id"
                                                                               : "pad_token_id", g->dec.vocab_size);
    return AG_OK;
}

/* ---------------------------------------------------------------- parameters */

static const nn_block_names names_decoder_layer = {
    .ln1 = "attention.output.LayerNorm",
    .attn = {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"},
    .ln_cross = "crossattention.output.LayerNorm",
    .cross = {"crossattention.self.query", "crossattention.self.key", "crossattention.self.value",
              "crossattention.output.dense"},
    .ln2 = "output.LayerNorm",
    .ffn = {.wi = "intermediate.dense", .wo = "output.dense"},
};

/* BertLayer's shape: post-LN, biases everywhere, nn.Linear's layout. */
static nn_block_config layer_config(const nn_bert_config *g, bool cross) {
    return (nn_block_config){
        .d_model = g->hidden_size, .n_head = g->num_attention_heads,
        .d_head = g->hidden_size / g->num_attention_heads, .d_ff = g->intermediate_size,
        .pre_ln = false, .norm_eps = g->layer_norm_eps, .cross_attention = cross,
        .attn_bias = true, .ffn_bias = true, .layout = AG_LINEAR_OUT_IN, .act = g->act,
        .attn_dropout = g->attention_probs_dropout_prob, .resid_dropout = g->hidden_dropout_prob,
    };
}

/* BertEmbeddings under `p` ("encoder." or "decoder.bert."). */
static ag_status declare_embeddings(ag_params *ps, nn_bert2bert_embeddings *e, const char *p,
                                    const nn_bert_config *g) {
    char name[NN_NAME_MAX];
    const int C = g->hidden_size;
    ag_status st;
    if ((st = nn_embedding_init(ps, &e->word, nn_name(name, "%sembeddings.word_embeddings", p), g->vocab_size, C,
                                g->pad_token_id)) ||
        (st = nn_embedding_init(ps, &e->position, nn_name(name, "%sembeddings.position_embeddings", p),
                                g->max_position_embeddings, C, -1)) ||
        (st = nn_embedding_init(ps, &e->token_type, nn_name(name, "%sembeddings.token_type_embeddings", p),
                                g->type_vocab_size, C, -1)))
        return st;
    return nn_layernorm_init(ps, &e->ln, nn_name(name, "%sembeddings.LayerNorm", p), C, g->layer_norm_eps);
}

/* The layers of one side: `p` + "encoder.layer.N". */
static ag_status declare_layers(ag_params *ps, nn_block **layers, const char *p, const nn_bert_config *g, bool cross) {
    *layers = calloc((size_t)g->num_hidden_layers, sizeof **layers);
    if (!*layers) return ag_fail(AG_ERR_MEMORY, "bert2bert: out of memory");
    const nn_block_config bc = layer_config(g, cross);
    char name[NN_NAME_MAX];
    ag_status st;
    for (int l = 0; l < g->num_hidden_layers; ++l)
        if ((st = nn_block_init(ps, &(*layers)[l], nn_name(name, "%sencoder.layer.%d", p, l), &bc,
                                cross ? &names_decoder_layer : &nn_block_names_bert)))
            return st;
    return AG_OK;
}

ag_status nn_bert2bert_declare(ag_params *ps, nn_bert2bert *m, const nn_bert2bert_config *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const nn_bert_config *e = &cfg->enc, *d = &cfg->dec;
    const int C = d->hidden_size, V = d->vocab_size;
    ag_status st;
    /* the encoder: a BertModel with its pooler */
    if ((st = declare_embeddings(ps, &m->enc_emb, "encoder.", e)) ||
        (st = declare_layers(ps, &m->enc_layer, "encoder.", e, false)) ||
        (st = nn_linear_init(ps, &m->enc_pooler, "encoder.pooler.dense", C, C, true, AG_LINEAR_OUT_IN)))
        return st;
    /* the decoder: BertLMHeadModel = bert (no pooler) + cls.predictions, whose
     * own bias comes first in named_parameters() */
    if ((st = declare_embeddings(ps, &m->dec_emb, "decoder.bert.", d)) ||
        (st = declare_layers(ps, &m->dec_layer, "decoder.bert.", d, true)))
        return st;
    if (!(m->decoder_b = ag_params_add(ps, "decoder.cls.predictions.bias", 1, AG_SHAPE(V)))) return ag_error_status();
    if ((st = nn_linear_init(ps, &m->transform, "decoder.cls.predictions.transform.dense", C, C, true,
                             AG_LINEAR_OUT_IN)) ||
        (st = nn_layernorm_init(ps, &m->transform_ln, "decoder.cls.predictions.transform.LayerNorm", C,
                                d->layer_norm_eps)))
        return st;
    if (d->tie_word_embeddings) m->decoder_w = m->dec_emb.word.w;
    else if (!(m->decoder_w = ag_params_add(ps, "decoder.cls.predictions.decoder.weight", 2, AG_SHAPE(V, C))))
        return ag_error_status();
    return AG_OK;
}

void nn_bert2bert_free(nn_bert2bert *m) {
    free(m->enc_layer);
    free(m->dec_layer);
    m->enc_layer = m->dec_layer = NULL;
}

int nn_bert2bert_aliases(const nn_bert2bert *m, const char *alias[][2], int cap) {
    int n = 0;
    if (m->cfg.dec.tie_word_embeddings && n < cap)
        alias[n][0] = "decoder.cls.predictions.decoder.weight", alias[n++][1] = m->dec_emb.word.w->name;
    if (n < cap) alias[n][0] = "decoder.cls.predictions.decoder.bias", alias[n++][1] = m->decoder_b->name;
    return n;
}

static void init_side(nn_bert2bert_embeddings *e, nn_block *layers, int n, float std, nn_init_rng *r) {
    nn_bert_embeddings_init_weights(&e->word, &e->position, &e->token_type, &e->ln, std, r);
    for (int l = 0; l < n; ++l) nn_block_init_weights(&layers[l], std, r);
}

void nn_bert2bert_init_weights(nn_bert2bert *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    init_side(&m->enc_emb, m->enc_layer, m->cfg.enc.num_hidden_layers, m->cfg.enc.initializer_range, &r);
    nn_init_linear(&m->enc_pooler, m->cfg.enc.initializer_range, &r);
    const float std = m->cfg.dec.initializer_range;
    init_side(&m->dec_emb, m->dec_layer, m->cfg.dec.num_hidden_layers, std, &r);
    nn_bert_mlm_head_init_weights(m->decoder_b, &m->transform, &m->transform_ln, m->decoder_w, m->dec_emb.word.w, std,
                                  &r);
}

/* ---------------------------------------------------------------- forward */

static bool is_bt(const char *what, const ag_ints *x, int64_t B, int64_t T) {
    if (!x || (x->ndim == 2 && x->shape[0] == B && x->shape[1] == T)) return true;
    char s[64];
    ag_fail(AG_ERR_ARG, "bert2bert: %s %s must be [%lld,%lld]", what, ag_shape_str(s, x->ndim, x->shape),
            (long long)B, (long long)T);
    return false;
}

/* BertEmbeddings: (word[ids] + token_type[tt]) + position[0..T-1], then
 * LayerNorm and dropout. ids [B,T] -> [B,T,C]. */
static ag_tensor *embed(ag_ctx *ctx, const nn_bert2bert_embeddings *e, const nn_bert_config *g, const char *side,
                        const ag_ints *ids, const ag_ints *tt) {
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (T > g->max_position_embeddings) {
        ag_fail(AG_ERR_ARG, "bert2bert: the %s's %lld positions exceed its max_position_embeddings %d", side,
                (long long)T, g->max_position_embeddings);
        return NULL;
    }
    ag_ints *pos = ag_ints_from(ctx, NULL, 1, AG_SHAPE(T));
    if (!pos) return NULL;
    for (int64_t t = 0; t < T; ++t) pos->data[t] = (int32_t)t;
    if (!tt) { /* token_type_ids default to zeros */
        ag_ints *zeros = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T));
        if (!zeros) return NULL;
        memset(zeros->data, 0, (size_t)(B * T) * sizeof(int32_t));
        tt = zeros;
    }
    ag_tensor *h = ag_add(ctx, nn_embedding_forward(ctx, &e->word, ids), nn_embedding_forward(ctx, &e->token_type, tt));
    h = ag_add(ctx, h, nn_embedding_forward(ctx, &e->position, pos)); /* [B,T,C] + [T,C] */
    return ag_dropout(ctx, nn_norm_forward(ctx, &e->ln, h), g->hidden_dropout_prob);
}

ag_tensor *nn_bert2bert_encode(ag_ctx *ctx, const nn_bert2bert *m, const ag_ints *ids, const ag_ints *token_type_ids,
                               const ag_ints *attention_mask) {
    if (!ids) return NULL;
    char s[64];
    if (ids->ndim != 2) {
        ag_fail(AG_ERR_ARG, "bert2bert: input_ids must be [B,S], got %s", ag_shape_str(s, ids->ndim, ids->shape));
        return NULL;
    }
    const int64_t B = ids->shape[0], S = ids->shape[1];
    if (!is_bt("token_type_ids", token_type_ids, B, S) || !is_bt("attention_mask", attention_mask, B, S)) return NULL;
    ag_tensor *h = embed(ctx, &m->enc_emb, &m->cfg.enc, "encoder", ids, token_type_ids); /* [B,S,C] */
    const ag_attn_opts opts = {.key_mask = attention_mask};                               /* bidirectional */
    for (int l = 0; l < m->cfg.enc.num_hidden_layers; ++l) h = nn_block_forward(ctx, &m->enc_layer[l], h, NULL, &opts, NULL);
    return h;
}

ag_tensor *nn_bert2bert_decode(ag_ctx *ctx, const nn_bert2bert *m, const ag_ints *dec_ids, const ag_ints *dec_mask,
                               ag_tensor *enc, const ag_ints *enc_mask) {
    if (!dec_ids || !enc) return NULL;
    char s[64];
    if (dec_ids->ndim != 2) {
        ag_fail(AG_ERR_ARG, "bert2bert: decoder_input_ids must be [B,T], got %s",
                ag_shape_str(s, dec_ids->ndim, dec_ids->shape));
        return NULL;
    }
    const int64_t B = dec_ids->shape[0], T = dec_ids->shape[1];
    if (!is_bt("decoder_attention_mask", dec_mask, B, T) || !is_bt("attention_mask", enc_mask, B, enc->shape[1]))
        return NULL;
    ag_tensor *h = embed(ctx, &m->dec_emb, &m->cfg.dec, "decoder", dec_ids, NULL); /* [B,T,C] */
    /* the decoder's extended mask is causal * decoder_attention_mask; the
     * cross-attention's is the encoder's padding mask */
    const ag_attn_opts self_opts = {.causal = true, .key_mask = dec_mask};
    const ag_attn_opts cross_opts = {.key_mask = enc_mask};
    for (int l = 0; l < m->cfg.dec.num_hidden_layers; ++l)
        h = nn_block_forward(ctx, &m->dec_layer[l], h, enc, &self_opts, &cross_opts);
    return h;
}

ag_tensor *nn_bert2bert_logits(ag_ctx *ctx, const nn_bert2bert *m, ag_tensor *hidden) {
    /* BertLMPredictionHead: transform (dense, hidden_act, LayerNorm), then the
     * tied decoder */
    ag_tensor *x = nn_act_forward(ctx, m->cfg.dec.act, nn_linear_forward(ctx, &m->transform, hidden));
    x = nn_norm_forward(ctx, &m->transform_ln, x);
    return ag_linear(ctx, x, m->decoder_w, m->decoder_b, AG_LINEAR_OUT_IN); /* [...,V] */
}

ag_ints *nn_bert2bert_shift_right(ag_ctx *ctx, const nn_bert2bert *m, const ag_ints *labels) {
    if (!labels) return NULL;
    if (labels->ndim != 2) {
        char s[64];
        ag_fail(AG_ERR_ARG, "bert2bert: labels must be [B,T], got %s", ag_shape_str(s, labels->ndim, labels->shape));
        return NULL;
    }
    const int64_t B = labels->shape[0], T = labels->shape[1];
    ag_ints *out = ag_ints_from(ctx, NULL, 2, labels->shape);
    if (!out) return NULL;
    for (int64_t b = 0; b < B; ++b) {
        out->data[b * T] = m->cfg.decoder_start_token_id;
        for (int64_t t = 1; t < T; ++t) {
            const int32_t y = labels->data[b * T + t - 1];
            out->data[b * T + t] = y == AG_IGNORE_INDEX ? m->cfg.pad_token_id : y;
        }
    }
    return out;
}

ag_tensor *nn_bert2bert_loss(ag_ctx *ctx, const nn_bert2bert *m, const ag_ints *ids, const ag_ints *token_type_ids,
                             const ag_ints *attention_mask, const ag_ints *labels, const ag_ints *dec_ids,
                             const ag_ints *dec_mask, int64_t *n_tokens) {
    if (!labels) {
        ag_fail(AG_ERR_ARG, "bert2bert: the loss needs \"labels\"");
        return NULL;
    }
    const ag_ints *dec_in = dec_ids ? dec_ids : nn_bert2bert_shift_right(ctx, m, labels);
    if (!dec_in) return NULL;
    if (!is_bt("labels", labels, dec_in->shape[0], dec_in->shape[1])) return NULL;
    ag_tensor *enc = nn_bert2bert_encode(ctx, m, ids, token_type_ids, attention_mask); /* [B,S,C] */
    if (enc && enc->shape[0] != labels->shape[0]) {
        ag_fail(AG_ERR_ARG, "bert2bert: input_ids has %lld rows, labels %lld", (long long)enc->shape[0],
                (long long)labels->shape[0]);
        return NULL;
    }
    ag_tensor *logits = nn_bert2bert_logits(ctx, m, nn_bert2bert_decode(ctx, m, dec_in, dec_mask, enc, attention_mask));
    if (n_tokens) {
        int64_t count = 0;
        for (int64_t i = 0; i < labels->numel; ++i) count += labels->data[i] != AG_IGNORE_INDEX;
        *n_tokens = count;
    }
    return ag_cross_entropy(ctx, logits, labels, 0.0f, AG_REDUCE_MEAN); /* [1] */
}
