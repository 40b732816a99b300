/* t5.c: T5, step for step as Hugging Face's modeling_t5.py (4.31) computes it.
 *
 *   encoder (T5Stack, bidirectional):
 *     h    = dropout(shared[ids])                                  [B,S,C]
 *     bias = rel_bias[bucket(j - i)] -> [NH,S,S]   (block 0 owns the table;
 *            every block adds the same bias to its scores)
 *     for each block:
 *       h = h + dropout(o(attn(q, k, v of rms(h); + bias, key mask, no 1/sqrt(d))))
 *       h = h + dropout(wo(dropout(act(wi(rms(h))))))     (gated: act(wi_0 x) * wi_1 x)
 *     enc = dropout(final_layer_norm(h))
 *   decoder (T5Stack, causal, one-sided buckets): the same with, between the
 *   two sub-layers, cross-attention over enc (no position bias, the encoder's
 *   key mask):
 *       h = h + dropout(o(attn(q of rms(h), k, v of enc)))
 *   head (T5ForConditionalGeneration):
 *     logits = lm_head(dec * d_model^-0.5)    when tied (lm_head = shared)
 *     logits = lm_head(dec)                   v1.1, untied
 *     loss   = mean cross-entropy over labels != -100
 *   decoder_input_ids = [decoder_start_token_id, labels[:, :-1]], -100 -> pad.
 *
 * The blocks are nn_block (blocks.c) with nn_block_names_t5; what is T5's own
 * lives here: the bucketed position bias, the stacks' ends, the tied head.
 * Hugging Face adds the padding mask to the position bias as a large negative
 * number; ag_attention's key_mask leaves those keys out, which is the same
 * softmax (exp(-huge) is 0 in float32).
 */
#include "t5.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

ag_status nn_t5_config_read(const nn_config *c, nn_t5_config *t) {
    memset(t, 0, sizeof *t);
    double eps, drop, factor;
    const char *proj;
    ag_status st;
    if ((st = nn_config_int(c, "vocab_size", 32128, 1, 1 << 24, &t->vocab_size)) ||
        (st = nn_config_int(c, "d_model", 512, 1, 1 << 16, &t->d_model)) ||
        (st = nn_config_int(c, "d_kv", 64, 1, 1 << 16, &t->d_kv)) ||
        (st = nn_config_int(c, "d_ff", 2048, 1, 1 << 20, &t->d_ff)) ||
        (st = nn_config_int(c, "num_layers", 6, 1, 4096, &t->num_layers)) ||
        (st = nn_config_int(c, "num_decoder_layers", t->num_layers, 1, 4096, &t->num_decoder_layers)) ||
        (st = nn_config_int(c, "num_heads", 8, 1, 4096, &t->num_heads)) ||
        (st = nn_config_int(c, "relative_attention_num_buckets", 32, 1, 1 << 16, &t->relative_attention_num_buckets)) ||
        (st = nn_config_int(c, "relative_attention_max_distance", 128, 1, 1 << 24,
                            &t->relative_attention_max_distance)) ||
        (st = nn_config_num(c, "dropout_rate", 0.1, &drop)) ||
        (st = nn_config_num(c, "layer_norm_epsilon", 1e-6, &eps)) ||
        (st = nn_config_num(c, "initializer_factor", 1.0, &factor)) ||
        (st = nn_config_str(c, "feed_forward_proj", "relu", &proj)) ||
        (st = nn_config_bool(c, "tie_word_embeddings", true, &t->tie_word_embeddings)) ||
        (st = nn_config_int(c, "pad_token_id", 0, 0, 1 << 24, &t->pad_token_id)) ||
        (st = nn_config_int(c, "eos_token_id", 1, -1, 1 << 24, &t->eos_token_id)) ||
        (st = nn_config_int(c, "decoder_start_token_id", -1, -1, 1 << 24, &t->decoder_start_token_id)))
        return st;
    /* T5Config: feed_forward_proj is "<act>" or "gated-<act>", and
     * "gated-gelu" means the tanh GELU (gelu_new) for backward compatibility */
    const char *dash = strchr(proj, '-');
    const char *act = proj;
    if (dash) {
        if ((size_t)(dash - proj) != 5 || strncmp(proj, "gated", 5) != 0 || strchr(dash + 1, '-'))
            return ag_fail(AG_ERR_ARG, "config %s: field \"feed_forward_proj\": '%s' is not '<act>' or 'gated-<act>' "
                           "(e.g. 'relu', 'gated-gelu')", c->path, proj);
        t->gated = true;
        act = strcmp(dash + 1, "gelu") == 0 ? "gelu_new" : dash + 1;
    }
    if (!nn_act_from_name(act, &t->act))
        return ag_fail(AG_ERR_ARG, "config %s: field \"feed_forward_proj\": unknown activation '%s'", c->path, act);
    if (!(eps > 0)) return ag_fail(AG_ERR_ARG, "config %s: field \"layer_norm_epsilon\" must be > 0", c->path);
    if (!(drop >= 0 && drop < 1))
        return ag_fail(AG_ERR_ARG, "config %s: field \"dropout_rate\" %g must be in [0, 1)", c->path, drop);
    if (!(factor > 0)) return ag_fail(AG_ERR_ARG, "config %s: field \"initializer_factor\" must be > 0", c->path);
    /* the encoder halves the buckets and each half keeps half of its buckets
     * exact, so at least 4 are needed; the logarithmic range needs
     * max_distance beyond the decoder's exact buckets (num_buckets / 2) */
    if (t->relative_attention_num_buckets < 4)
        return ag_fail(AG_ERR_ARG, "config %s: field \"relative_attention_num_buckets\" %d must be >= 4", c->path,
                       t->relative_attention_num_buckets);
    if (t->relative_attention_max_distance <= t->relative_attention_num_buckets / 2)
        return ag_fail(AG_ERR_ARG, "config %s: field \"relative_attention_max_distance\" %d must exceed "
                       "relative_attention_num_buckets / 2 = %d", c->path, t->relative_attention_max_distance,
                       t->relative_attention_num_buckets / 2);
    t->dropout_rate = (float)drop;
    t->layer_norm_epsilon = (float)eps;
    t->initializer_factor = (float)factor;
    return AG_OK;
}

/* ---------------------------------------------------------------- parameters */

static nn_block_config block_config(const nn_t5_config *t, bool decoder) {
    return (nn_block_config){
        .d_model = t->d_model, .n_head = t->num_heads, .d_head = t->d_kv, .d_ff = t->d_ff,
        .pre_ln = true, .rms_norm = true, .norm_eps = t->layer_norm_epsilon,
        .cross_attention = decoder, .attn_bias = false, .ffn_bias = false,
        .layout = AG_LINEAR_OUT_IN, .act = t->act, .gated = t->gated, .no_scale = true,
        .attn_dropout = t->dropout_rate, .resid_dropout = t->dropout_rate, .act_dropout = t->dropout_rate,
    };
}

/* One T5Stack: "encoder" or "decoder" + ".block.<i>", block 0's bias table,
 * the final norm. */
static ag_status stack_declare(ag_params *ps, nn_t5_stack *s, const nn_t5_config *t, const char *prefix,
                               bool decoder) {
    s->decoder = decoder;
    s->n_layer = decoder ? t->num_decoder_layers : t->num_layers;
    s->block = calloc((size_t)s->n_layer, sizeof *s->block);
    if (!s->block) return ag_fail(AG_ERR_MEMORY, "t5: out of memory");
    const nn_block_config bc = block_config(t, decoder);
    const nn_block_names names = nn_block_names_t5(decoder, t->gated);
    char name[NN_NAME_MAX];
    ag_status st;
    for (int l = 0; l < s->n_layer; ++l) {
        /* the bias table belongs to block 0's self-attention; only the
         * first block of a stack has one (has_relative_attention_bias) */
        if ((st = nn_block_init(ps, &s->block[l], nn_name(name, "%s.block.%d", prefix, l), &bc, &names))) return st;
        if (l == 0) {
            nn_name(name, "%s.block.0.layer.0.SelfAttention.relative_attention_bias.weight", prefix);
            s->rel_bias = ag_params_add(ps, name, 2, AG_SHAPE(t->relative_attention_num_buckets, t->num_heads));
            if (!s->rel_bias) return ag_error_status();
        }
    }
    return nn_rmsnorm_init(ps, &s->final_layer_norm, nn_name(name, "%s.final_layer_norm", prefix), t->d_model,
                           t->layer_norm_epsilon);
}

ag_status nn_t5_declare(ag_params *ps, nn_t5 *m, const nn_t5_config *cfg, nn_t5_head head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->head = head;
    ag_status st;
    if ((st = nn_embedding_init(ps, &m->shared, "shared", cfg->vocab_size, cfg->d_model, -1)) ||
        (st = stack_declare(ps, &m->encoder, cfg, "encoder", false)))
        return st;
    if (head == NN_T5_ENCODER_MODEL) return AG_OK;
    if ((st = stack_declare(ps, &m->decoder, cfg, "decoder", true))) return st;
    if (head == NN_T5_CONDITIONAL_GENERATION) {
        if (cfg->tie_word_embeddings) m->lm_head_w = m->shared.w;
        else if (!(m->lm_head_w = ag_params_add(ps, "lm_head.weight", 2, AG_SHAPE(cfg->vocab_size, cfg->d_model))))
            return ag_error_status();
    }
    return AG_OK;
}

void nn_t5_free(nn_t5 *m) {
    free(m->encoder.block);
    free(m->decoder.block);
    m->encoder.block = m->decoder.block = NULL;
}

int nn_t5_aliases(const nn_t5 *m, const char *alias[][2], int cap) {
    static const char *const names[3] = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
                                         "lm_head.weight"};
    const int n = m->head == NN_T5_ENCODER_MODEL ? 1 : m->lm_head_w == m->shared.w ? 3 : 2;
    int k = 0;
    for (; k < n && k < cap; ++k) {
        alias[k][0] = names[k];
        alias[k][1] = m->shared.w->name;
    }
    return k;
}

static void stack_init(nn_t5_stack *s, const nn_t5_config *t, nn_init_rng *r) {
    const float f = t->initializer_factor;
    const float std_model = f / sqrtf((float)t->d_model), std_ff = f / sqrtf((float)t->d_ff);
    for (int l = 0; l < s->n_layer; ++l) {
        nn_block *b = &s->block[l];
        nn_mha *attn[2] = {&b->attn, &b->cross};
        for (int a = 0; a < (s->decoder ? 2 : 1); ++a) {
            nn_init_normal(attn[a]->q.w, f / sqrtf((float)t->d_model * (float)t->d_kv), r);
            nn_init_normal(attn[a]->k.w, std_model, r);
            nn_init_normal(attn[a]->v.w, std_model, r);
            nn_init_normal(attn[a]->o.w, f / sqrtf((float)t->num_heads * (float)t->d_kv), r);
        }
        nn_init_const(b->ln1.w, f);
        if (s->decoder) nn_init_const(b->ln_cross.w, f);
        nn_init_const(b->ln2.w, f);
        nn_init_normal(b->ffn.wi.w, std_model, r);
        if (b->ffn.gated) nn_init_normal(b->ffn.wi_1.w, std_model, r);
        nn_init_normal(b->ffn.wo.w, std_ff, r);
    }
    nn_init_normal(s->rel_bias, std_model, r);
    nn_init_const(s->final_layer_norm.w, f);
}

void nn_t5_init_weights(nn_t5 *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    nn_init_normal(m->shared.w, m->cfg.initializer_factor, &r);
    stack_init(&m->encoder, &m->cfg, &r);
    if (m->head != NN_T5_ENCODER_MODEL) stack_init(&m->decoder, &m->cfg, &r);
    if (m->lm_head_w && m->lm_head_w != m->shared.w) nn_init_normal(m->lm_head_w, m->cfg.initializer_factor, &r);
}

/* ---------------------------------------------------------------- relative position buckets */

int nn_t5_relative_bucket(int rel, bool bidirectional, int num_buckets, int max_distance) {
    int bucket = 0, n = num_buckets;
    if (bidirectional) {
        n /= 2;                  /* half for keys after the query, half for the rest */
        if (rel > 0) bucket += n;
        rel = abs(rel);
    } else {
        rel = rel < 0 ? -rel : 0; /* a causal decoder never sees rel > 0 */
    }
    const int max_exact = n / 2;
    if (rel < max_exact) return bucket + rel;
    /* log-spaced from max_exact to max_distance over the remaining n - max_exact
     * buckets, in float32 as PyTorch computes it, truncated toward zero */
    float large = logf((float)rel / (float)max_exact) / (float)log((double)max_distance / max_exact) *
                  (float)(n - max_exact);
    int v = max_exact + (int)large;
    return bucket + (v < n - 1 ? v : n - 1);
}

ag_tensor *nn_t5_position_bias(ag_ctx *ctx, const nn_t5 *m, const nn_t5_stack *s, int64_t T, int64_t S) {
    ag_ints *buckets = ag_ints_from(ctx, NULL, 2, AG_SHAPE(T, S)); /* [T,S] */
    if (!buckets) return NULL;
    for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < S; ++j)
            buckets->data[i * S + j] = nn_t5_relative_bucket((int)(j - i), !s->decoder,
                                                             m->cfg.relative_attention_num_buckets,
                                                             m->cfg.relative_attention_max_distance);
    ag_tensor *b = ag_embedding(ctx, s->rel_bias, buckets, -1); /* [T,S,NH] */
    return ag_permute(ctx, b, (const int[]){2, 0, 1});           /* [NH,T,S] */
}

/* ---------------------------------------------------------------- forward */

static bool check_ids(const char *what, const ag_ints *ids, const ag_ints *mask, const char *mask_name) {
    char s[64], s2[64];
    if (ids->ndim != 2) {
        ag_fail(AG_ERR_ARG, "t5: %s must be [B,T], got %s", what, ag_shape_str(s, ids->ndim, ids->shape));
        return false;
    }
    if (mask && (mask->ndim != 2 || mask->shape[0] != ids->shape[0] || mask->shape[1] != ids->shape[1])) {
        ag_fail(AG_ERR_ARG, "t5: %s %s does not match %s %s", mask_name, ag_shape_str(s, mask->ndim, mask->shape),
                what, ag_shape_str(s2, ids->ndim, ids->shape));
        return false;
    }
    return true;
}

/* T5Stack.forward: embed, the blocks with the first block's bias shared by
 * all, the final norm. enc/enc_mask only for the decoder. */
static ag_tensor *stack_forward(ag_ctx *ctx, const nn_t5 *m, const nn_t5_stack *s, const ag_ints *ids,
                                const ag_ints *mask, ag_tensor *enc, const ag_ints *enc_mask) {
    const int64_t T = ids->shape[1];
    ag_tensor *h = ag_dropout(ctx, nn_embedding_forward(ctx, &m->shared, ids), m->cfg.dropout_rate); /* [B,T,C] */
    ag_attn_opts self = {.causal = s->decoder, .key_mask = mask, .bias = nn_t5_position_bias(ctx, m, s, T, T)};
    ag_attn_opts cross = {.key_mask = enc_mask};
    if (!self.bias) return NULL;
    for (int l = 0; l < s->n_layer; ++l)
        h = nn_block_forward(ctx, &s->block[l], h, s->decoder ? enc : NULL, &self, s->decoder ? &cross : NULL);
    return ag_dropout(ctx, nn_norm_forward(ctx, &s->final_layer_norm, h), m->cfg.dropout_rate);
}

ag_tensor *nn_t5_encode(ag_ctx *ctx, const nn_t5 *m, const ag_ints *ids, const ag_ints *attention_mask) {
    if (!ids) return NULL;
    if (!check_ids("input_ids", ids, attention_mask, "attention_mask")) return NULL;
    return stack_forward(ctx, m, &m->encoder, ids, attention_mask, NULL, NULL);
}

ag_tensor *nn_t5_decode(ag_ctx *ctx, const nn_t5 *m, const ag_ints *decoder_ids, const ag_ints *decoder_mask,
                        ag_tensor *enc, const ag_ints *enc_mask) {
    if (!decoder_ids || !enc) return NULL;
    if (m->head == NN_T5_ENCODER_MODEL) {
        ag_fail(AG_ERR_STATE, "t5: T5EncoderModel has no decoder (use T5Model or T5ForConditionalGeneration)");
        return NULL;
    }
    if (!check_ids("decoder_input_ids", decoder_ids, decoder_mask, "decoder_attention_mask")) return NULL;
    char s[64], s2[64];
    const bool mask_ok = !enc_mask || (enc_mask->ndim == 2 && enc_mask->shape[0] == enc->shape[0] &&
                                       enc_mask->shape[1] == enc->shape[1]);
    if (enc->ndim != 3 || enc->shape[0] != decoder_ids->shape[0] || !mask_ok) {
        ag_fail(AG_ERR_ARG, "t5: encoder states %s (and attention_mask) do not match decoder_input_ids %s",
                ag_shape_str(s, enc->ndim, enc->shape), ag_shape_str(s2, decoder_ids->ndim, decoder_ids->shape));
        return NULL;
    }
    return stack_forward(ctx, m, &m->decoder, decoder_ids, decoder_mask, enc, enc_mask);
}

ag_tensor *nn_t5_logits(ag_ctx *ctx, const nn_t5 *m, ag_tensor *hidden) {
    if (!hidden) return NULL;
    if (!m->lm_head_w) {
        ag_fail(AG_ERR_STATE, "t5: %s has no LM head (use T5ForConditionalGeneration)",
                m->head == NN_T5_MODEL ? "T5Model" : "T5EncoderModel");
        return NULL;
    }
    /* the tied head reuses the embedding, whose rows are O(1), not O(d^-1/2):
     * Mesh TensorFlow rescales the decoder output instead */
    if (m->lm_head_w == m->shared.w) hidden = ag_scale(ctx, hidden, 1.0f / sqrtf((float)m->cfg.d_model));
    return ag_linear(ctx, hidden, m->lm_head_w, NULL, AG_LINEAR_OUT_IN); /* [...,V] */
}

ag_ints *nn_t5_shift_right(ag_ctx *ctx, const nn_t5 *m, const ag_ints *labels) {
    if (!labels) return NULL;
    char s[64];
    if (labels->ndim != 2) {
        ag_fail(AG_ERR_ARG, "t5: labels must be [B,T], got %s", ag_shape_str(s, labels->ndim, labels->shape));
        return NULL;
    }
    if (m->cfg.decoder_start_token_id < 0) {
        ag_fail(AG_ERR_ARG, "t5: the config has no \"decoder_start_token_id\" to shift the labels right with (T5 "
                "uses the pad id, 0)");
        return NULL;
    }
    const int64_t B = labels->shape[0], T = labels->shape[1];
    ag_ints *out = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T)); /* [B,T] */
    if (!out) return NULL;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t) {
            int32_t y = t == 0 ? m->cfg.decoder_start_token_id : labels->data[b * T + t - 1];
            out->data[b * T + t] = y == AG_IGNORE_INDEX ? m->cfg.pad_token_id : y;
        }
    return out;
}

ag_tensor *nn_t5_loss(ag_ctx *ctx, const nn_t5 *m, const ag_ints *ids, const ag_ints *attention_mask,
                      const ag_ints *labels, const ag_ints *decoder_ids, const ag_ints *decoder_mask,
                      ag_reduction reduction, int64_t *n_tokens) {
    if (!ids || !labels) return NULL;
    if (!m->lm_head_w) {
        ag_fail(AG_ERR_STATE, "t5: %s has no loss (use T5ForConditionalGeneration)",
                m->head == NN_T5_MODEL ? "T5Model" : "T5EncoderModel");
        return NULL;
    }
    if (!decoder_ids && !(decoder_ids = nn_t5_shift_right(ctx, m, labels))) return NULL;
    char s[64], s2[64];
    if (labels->ndim != 2 || decoder_ids->ndim != 2 || labels->shape[0] != decoder_ids->shape[0] ||
        labels->shape[1] != decoder_ids->shape[1]) {
        ag_fail(AG_ERR_ARG, "t5: labels %s do not match decoder_input_ids %s",
                ag_shape_str(s, labels->ndim, labels->shape), ag_shape_str(s2, decoder_ids->ndim, decoder_ids->shape));
        return NULL;
    }
    ag_tensor *enc = nn_t5_encode(ctx, m, ids, attention_mask);                                /* [B,S,C] */
    ag_tensor *dec = nn_t5_decode(ctx, m, decoder_ids, decoder_mask, enc, attention_mask);     /* [B,T,C] */
    ag_tensor *logits = nn_t5_logits(ctx, m, dec);                                             /* [B,T,V] */
    if (!logits) return NULL;
    if (n_tokens) {
        int64_t count = 0;
        for (int64_t i = 0; i < labels->numel; ++i) count += labels->data[i] != AG_IGNORE_INDEX;
        *n_tokens = count;
    }
    return ag_cross_entropy(ctx, logits, labels, 0.0f, reduction);
}

/* ---------------------------------------------------------------- generation: cached decoder steps */

ag_status nn_t5_cross_cache_fill(ag_ctx *ctx, const nn_t5 *m, ag_tensor *enc, nn_cross_cache *cross) {
    if (m->head == NN_T5_ENCODER_MODEL)
        return ag_fail(AG_ERR_STATE, "t5: T5EncoderModel has no decoder to cache cross-attention for");
    ag_status st;
    for (int l = 0; l < m->decoder.n_layer; ++l)
        if ((st = nn_cross_cache_fill(ctx, cross, l, &m->decoder.block[l], enc))) return st;
    return AG_OK;
}

/* The decoder's position bias for T queries at positions q0 .. q0+T-1 and
 * the S = q0+T keys before and at them: [NH,T,S]. nn_t5_position_bias is
 * this with q0 = 0. */
static ag_tensor *position_bias_from(ag_ctx *ctx, const nn_t5 *m, const nn_t5_stack *s, int64_t q0, int64_t T) {
    const int64_t S = q0 + T;
    ag_ints *buckets = ag_ints_from(ctx, NULL, 2, AG_SHAPE(T, S)); /* [T,S] */
    if (!buckets) return NULL;
    for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < S; ++j)
            buckets->data[i * S + j] = nn_t5_relative_bucket((int)(j - (q0 + i)), !s->decoder,
                                                             m->cfg.relative_attention_num_buckets,
                                                             m->cfg.relative_attention_max_distance);
    ag_tensor *b = ag_embedding(ctx, s->rel_bias, buckets, -1); /* [T,S,NH] */
    return ag_permute(ctx, b, (const int[]){2, 0, 1});           /* [NH,T,S] */
}

ag_tensor *nn_t5_decode_cached(ag_ctx *ctx, const nn_t5 *m, const ag_ints *dec_ids, nn_kv_cache *self,
                               const nn_cross_cache *cross) {
    if (!dec_ids) return NULL;
    if (m->head == NN_T5_ENCODER_MODEL) {
        ag_fail(AG_ERR_STATE, "t5: T5EncoderModel has no decoder");
        return NULL;
    }
    if (!check_ids("decoder_input_ids", dec_ids, NULL, NULL)) return NULL;
    const nn_t5_stack *s = &m->decoder;
    if (nn_kv_cache_check(self, "t5", dec_ids, s->n_layer, m->cfg.num_heads, m->cfg.d_kv)) return NULL;
    const int64_t T = dec_ids->shape[1];
    /* as stack_forward, for the new positions only */
    ag_tensor *h = ag_dropout(ctx, nn_embedding_forward(ctx, &m->shared, dec_ids), m->cfg.dropout_rate); /* [B,T,C] */
    ag_attn_opts opts = {.causal = true, .bias = position_bias_from(ctx, m, s, self->len, T)};
    if (!opts.bias) return NULL;
    for (int l = 0; l < s->n_layer; ++l) h = nn_block_forward_cached(ctx, &s->block[l], h, self, cross, l, &opts, NULL);
    if (!h) return NULL;
    nn_kv_cache_advance(self, T);
    return ag_dropout(ctx, nn_norm_forward(ctx, &s->final_layer_norm, h), m->cfg.dropout_rate);
}
