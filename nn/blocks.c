/* blocks.c: the feed-forward network and the transformer block, built from
 * the modules of modules.c (linear, norms, activations, attention).
 *
 * What it is: the two layers every transformer family repeats, with
 * parameters named as the family's Hugging Face class names them, so that a
 * new family is a config reader, an embedding, a loop over nn_block_forward
 * and a head. What it is not: a model. Embeddings, position biases (T5's
 * relative buckets are computed by the family and passed in as an additive
 * bias), the final norm of a pre-LN stack and the heads belong to the family
 * file. GPT-2 (gpt2.c) still writes its block out inline; it computes the same
 * function as nn_block with nn_block_names_gpt2.
 *
 * The two orders of a sub-layer f (attention or feed-forward):
 *
 *   pre-LN  (GPT-2, T5, LLaMA)   x = x + dropout(f(norm(x)))
 *   post-LN (BERT, BART)         x = norm(x + dropout(f(x)))
 *
 * Pre-LN keeps an un-normalised residual path from the input to the output,
 * which is why deep pre-LN stacks train without warm-up tricks and need a
 * final norm; post-LN normalises after every sub-layer.
 */
#include "nn.h"

#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- names */

/* prefix + "." + rel, or rel alone when the prefix is empty. */
static const char *join(char buf[NN_NAME_MAX], const char *prefix, const char *rel) {
    if (!prefix || !*prefix) return nn_name(buf, "%s", rel);
    return nn_name(buf, "%s.%s", prefix, rel);
}

const nn_block_names nn_block_names_bert = {
    .ln1 = "attention.output.LayerNorm",
    .attn = {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"},
    .ln2 = "output.LayerNorm",
    .ffn = {.wi = "intermediate.dense", .wo = "output.dense"},
};

const nn_block_names nn_block_names_gpt2 = {
    .ln1 = "ln_1",
    .attn = {"attn.c_attn", "attn.c_proj"},
    .ln2 = "ln_2",
    .ffn = {.wi = "mlp.c_fc", .wo = "mlp.c_proj"},
};

const nn_block_names nn_block_names_bart_encoder = {
    .ln1 = "self_attn_layer_norm",
    .attn = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"},
    .ln2 = "final_layer_norm",
    .ffn = {.wi = "fc1", .wo = "fc2"},
};

const nn_block_names nn_block_names_bart_decoder = {
    .ln1 = "self_attn_layer_norm",
    .attn = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"},
    .ln_cross = "encoder_attn_layer_norm",
    .cross = {"encoder_attn.q_proj", "encoder_attn.k_proj", "encoder_attn.v_proj", "encoder_attn.out_proj"},
    .ln2 = "final_layer_norm",
    .ffn = {.wi = "fc1", .wo = "fc2"},
};

/* T5Block: layer.0 is self-attention, then (decoder) layer.1 cross-attention,
 * then the feed-forward as the last layer.N. */
nn_block_names nn_block_names_t5(bool decoder, bool gated) {
    nn_block_names n = {
        .ln1 = "layer.0.layer_norm",
        .attn = {"layer.0.SelfAttention.q", "layer.0.SelfAttention.k", "layer.0.SelfAttention.v",
                 "layer.0.SelfAttention.o"},
    };
    if (decoder) {
        n.ln_cross = "layer.1.layer_norm";
        n.cross[0] = "layer.1.EncDecAttention.q";
        n.cross[1] = "layer.1.EncDecAttention.k";
        n.cross[2] = "layer.1.EncDecAttention.v";
        n.cross[3] = "layer.1.EncDecAttention.o";
    }
    static const nn_ffn_names ffn[2][2] = {
        {{"layer.1.DenseReluDense.wi", NULL, "layer.1.DenseReluDense.wo"},
         {"layer.1.DenseReluDense.wi_0", "layer.1.DenseReluDense.wi_1", "layer.1.DenseReluDense.wo"}},
        {{"layer.2.DenseReluDense.wi", NULL, "layer.2.DenseReluDense.wo"},
         {"layer.2.DenseReluDense.wi_0", "layer.2.DenseReluDense.wi_1", "layer.2.DenseReluDense.wo"}},
    };
    n.ln2 = decoder ? "layer.2.layer_norm" : "layer.1.layer_norm";
    n.ffn = ffn[decoder][gated];
    return n;
}

/* ---------------------------------------------------------------- feed-forward */

ag_status nn_ffn_init(ag_params *ps, nn_ffn *f, const char *prefix, const nn_ffn_names *names, int d_model, int d_ff,
                      nn_act act, bool gated, bool bias, ag_linear_layout layout) {
    memset(f, 0, sizeof *f);
    nn_name(f->name, "%s", prefix && *prefix ? prefix : (names && names->wo ? names->wo : "(unnamed)"));
    if (d_model <= 0 || d_ff <= 0)
        return ag_fail(AG_ERR_ARG, "ffn %s: d_model %d and d_ff %d must be positive", f->name, d_model, d_ff);
    if (!names || !names->wi || !names->wo || (gated && !names->wi_1))
        return ag_fail(AG_ERR_ARG, "ffn %s: names wi, wo%s are required", f->name, gated ? " and (gated) wi_1" : "");
    f->d_model = d_model;
    f->d_ff = d_ff;
    f->act = act;
    f->gated = gated;
    char name[NN_NAME_MAX];
    ag_status st;
    if ((st = nn_linear_init(ps, &f->wi, join(name, prefix, names->wi), d_model, d_ff, bias, layout))) return st;
    if (gated && (st = nn_linear_init(ps, &f->wi_1, join(name, prefix, names->wi_1), d_model, d_ff, bias, layout)))
        return st;
    return nn_linear_init(ps, &f->wo, join(name, prefix, names->wo), d_ff, d_model, bias, layout);
}

ag_tensor *nn_ffn_forward(ag_ctx *ctx, const nn_ffn *f, ag_tensor *x) {
    if (!x) return NULL;
    if (x->shape[x->ndim - 1] != f->d_model) {
        char s[64];
        ag_fail(AG_ERR_ARG, "ffn %s: input %s has width %lld, want d_model %d", f->name,
                ag_shape_str(s, x->ndim, x->shape), (long long)x->shape[x->ndim - 1], f->d_model);
        return NULL;
    }
    ag_tensor *h = nn_act_forward(ctx, f->act, nn_linear_forward(ctx, &f->wi, x)); /* [...,d_ff] */
    if (f->gated) h = ag_mul(ctx, h, nn_linear_forward(ctx, &f->wi_1, x));          /* act(wi x) * wi_1 x */
    h = ag_dropout(ctx, h, f->act_dropout);
    return ag_dropout(ctx, nn_linear_forward(ctx, &f->wo, h), f->dropout); /* [...,C] */
}

/* ---------------------------------------------------------------- the block */

static ag_status norm_init(ag_params *ps, nn_norm *n, const char *prefix, const char *rel,
                           const nn_block_config *c) {
    char name[NN_NAME_MAX];
    join(name, prefix, rel);
    return c->rms_norm ? nn_rmsnorm_init(ps, n, name, c->d_model, c->norm_eps)
                       : nn_layernorm_init(ps, n, name, c->d_model, c->norm_eps);
}

/* One attention sub-layer: fused (qkv, o) or separate (q, k, v, o). */
static ag_status mha_init(ag_params *ps, nn_mha *m, const char *prefix, const char *const rel[4], bool fused,
                          const nn_block_config *c) {
    char full[4][NN_NAME_MAX];
    const char *names[4];
    for (int i = 0; i < (fused ? 2 : 4); ++i) names[i] = join(full[i], prefix, rel[i]);
    ag_status st = nn_mha_init(ps, m, names, c->d_model, c->n_head, c->d_head, fused, c->attn_bias, c->layout);
    m->attn_dropout = c->attn_dropout;
    m->no_scale = c->no_scale;
    return st;
}

static bool bad_p(float p) { return !(p >= 0.0f && p < 1.0f); }

ag_status nn_block_init(ag_params *ps, nn_block *b, const char *prefix, const nn_block_config *cfg,
                        const nn_block_names *names) {
    memset(b, 0, sizeof *b);
    nn_name(b->name, "%s", prefix && *prefix ? prefix : "(unnamed)");
    const nn_block_config *c = cfg;
    /* the config: widths, eps, dropouts */
    if (c->d_model <= 0 || c->n_head <= 0 || c->d_head <= 0 || c->d_ff <= 0)
        return ag_fail(AG_ERR_ARG, "block %s: d_model %d, n_head %d, d_head %d and d_ff %d must be positive", b->name,
                       c->d_model, c->n_head, c->d_head, c->d_ff);
    if (!(c->norm_eps > 0.0f))
        return ag_fail(AG_ERR_ARG, "block %s: norm_eps %g must be > 0", b->name, (double)c->norm_eps);
    if (bad_p(c->attn_dropout) || bad_p(c->resid_dropout) || bad_p(c->act_dropout))
        return ag_fail(AG_ERR_ARG, "block %s: dropouts (attn %g, resid %g, act %g) must be in [0, 1)", b->name,
                       (double)c->attn_dropout, (double)c->resid_dropout, (double)c->act_dropout);
    /* every name this config needs */
    int n_attn = c->fused_qkv ? 2 : 4;
    bool named = names && names->ln1 && names->ln2 && names->ffn.wi && names->ffn.wo && (!c->gated || names->ffn.wi_1);
    for (int i = 0; named && i < n_attn; ++i) named = names->attn[i] != NULL;
    if (named && c->cross_attention) {
        named = names->ln_cross != NULL;
        for (int i = 0; named && i < 4; ++i) named = names->cross[i] != NULL;
    }
    if (!named)
        return ag_fail(AG_ERR_ARG,
                       "block %s: a name this config needs is missing (ln1, attn[0..%d], ln2, ffn.wi, ffn.wo%s%s)",
                       b->name, n_attn - 1, c->gated ? ", ffn.wi_1" : "",
                       c->cross_attention ? ", ln_cross, cross[0..3]" : "");
    b->cfg = *c;
    ag_status st;
    if ((st = norm_init(ps, &b->ln1, prefix, names->ln1, c)) ||
        (st = mha_init(ps, &b->attn, prefix, names->attn, c->fused_qkv, c)))
        return st;
    if (c->cross_attention && ((st = norm_init(ps, &b->ln_cross, prefix, names->ln_cross, c)) ||
                               (st = mha_init(ps, &b->cross, prefix, names->cross, false, c))))
        return st;
    if ((st = norm_init(ps, &b->ln2, prefix, names->ln2, c)) ||
        (st = nn_ffn_init(ps, &b->ffn, prefix, &names->ffn, c->d_model, c->d_ff, c->act, c->gated, c->ffn_bias,
                          c->layout)))
        return st;
    nn_name(b->ffn.name, "%s", b->name);
    b->ffn.act_dropout = c->act_dropout; /* the residual dropout is the block's, so ffn.dropout stays 0 */
    return AG_OK;
}

/* Checks that x is [B,T,C] (want_B < 0) or that enc is [B,S,C] with x's B. */
static bool check_states(const nn_block *b, const char *what, const ag_tensor *t, int64_t want_B) {
    if (t->ndim == 3 && t->shape[2] == b->cfg.d_model && (want_B < 0 || t->shape[0] == want_B)) return true;
    char s[64], B[32];
    if (want_B < 0) snprintf(B, sizeof B, "B");
    else snprintf(B, sizeof B, "%lld", (long long)want_B);
    ag_fail(AG_ERR_ARG, "block %s: %s is %s, want [%s,%s,%d] (d_model %d)", b->name, what,
            ag_shape_str(s, t->ndim, t->shape), B, want_B < 0 ? "T" : "S", b->cfg.d_model, b->cfg.d_model);
    return false;
}

/* One sub-layer around f's output: pre-LN adds it to the stream, post-LN adds
 * and then normalises. `fx` is f(norm(x)) for pre-LN and f(x) for post-LN. */
static ag_tensor *residual(ag_ctx *ctx, const nn_block *b, const nn_norm *norm, ag_tensor *x, ag_tensor *fx) {
    ag_tensor *h = ag_add(ctx, x, ag_dropout(ctx, fx, b->cfg.resid_dropout));
    return b->cfg.pre_ln ? h : nn_norm_forward(ctx, norm, h);
}

void nn_block_init_weights(const nn_block *b, float std, nn_init_rng *r) {
    nn_init_linear(&b->attn.q, std, r), nn_init_linear(&b->attn.k, std, r);
    nn_init_linear(&b->attn.v, std, r), nn_init_linear(&b->attn.o, std, r);
    nn_init_norm(&b->ln1);
    if (b->cfg.cross_attention) {
        nn_init_linear(&b->cross.q, std, r), nn_init_linear(&b->cross.k, std, r);
        nn_init_linear(&b->cross.v, std, r), nn_init_linear(&b->cross.o, std, r);
        nn_init_norm(&b->ln_cross);
    }
    nn_init_linear(&b->ffn.wi, std, r), nn_init_linear(&b->ffn.wo, std, r);
    nn_init_norm(&b->ln2);
}

ag_tensor *nn_block_forward(ag_ctx *ctx, const nn_block *b, ag_tensor *x, ag_tensor *enc,
                            const ag_attn_opts *self_opts, const ag_attn_opts *cross_opts) {
    if (!x) return NULL;
    if (!check_states(b, "x", x, -1)) return NULL;
    if (b->cfg.cross_attention && !enc) {
        ag_fail(AG_ERR_ARG, "block %s: a decoder block with cross-attention needs the encoder states enc [B,S,C]",
                b->name);
        return NULL;
    }
    if (!b->cfg.cross_attention && enc) {
        ag_fail(AG_ERR_ARG, "block %s: encoder states were given, but the block has no cross-attention", b->name);
        return NULL;
    }
    if (enc && !check_states(b, "enc", enc, x->shape[0])) return NULL;
    const bool pre = b->cfg.pre_ln;

    /* self-attention: [B,T,C] -> [B,T,C] */
    ag_tensor *in = pre ? nn_norm_forward(ctx, &b->ln1, x) : x;
    ag_tensor *h = residual(ctx, b, &b->ln1, x, nn_mha_forward(ctx, &b->attn, in, NULL, self_opts));

    /* cross-attention: queries from the stream [B,T,C], keys and values from enc [B,S,C] */
    if (b->cfg.cross_attention) {
        in = pre ? nn_norm_forward(ctx, &b->ln_cross, h) : h;
        h = residual(ctx, b, &b->ln_cross, h, nn_mha_forward(ctx, &b->cross, in, enc, cross_opts));
    }

    /* feed-forward: [B,T,C] -> [B,T,d_ff] -> [B,T,C] */
    in = pre ? nn_norm_forward(ctx, &b->ln2, h) : h;
    return residual(ctx, b, &b->ln2, h, nn_ffn_forward(ctx, &b->ffn, in));
}
