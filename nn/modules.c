/* modules.c: Linear, Embedding, LayerNorm/RMSNorm, activations, multi-head
 * attention, and initialisation. Each forward is a few ops on the tape; the
 * math lives in the ops (autograd/op_*.c). */
#include "nn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

char *nn_name(char buf[NN_NAME_MAX], const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, NN_NAME_MAX, fmt, ap);
    va_end(ap);
    return buf;
}

/* ---------------------------------------------------------------- initialisation */

/* Box-Muller: two uniforms u1 in (0,1], u2 in [0,1) give one N(0,1) draw. */
float nn_randn(nn_init_rng *r) {
    double u1 = ((double)(ag_rng_u64(r->seed, r->counter++) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(ag_rng_u64(r->seed, r->counter++) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void nn_init_normal(ag_tensor *t, float std, nn_init_rng *r) {
    for (int64_t i = 0; i < t->numel; ++i) t->data[i] = std * nn_randn(r);
}

void nn_init_const(ag_tensor *t, float v) {
    for (int64_t i = 0; i < t->numel; ++i) t->data[i] = v;
}

/* ---------------------------------------------------------------- linear */

ag_status nn_linear_init(ag_params *ps, nn_linear *l, const char *prefix, int in, int out, bool bias,
                         ag_linear_layout layout) {
    char name[NN_NAME_MAX];
    memset(l, 0, sizeof *l);
    l->in = in;
    l->out = out;
    l->layout = layout;
    l->w = ag_params_add(ps, nn_name(name, "%s.weight", prefix), 2,
                         layout == AG_LINEAR_OUT_IN ? AG_SHAPE(out, in) : AG_SHAPE(in, out));
    if (!l->w) return ag_error_status();
    if (bias && !(l->b = ag_params_add(ps, nn_name(name, "%s.bias", prefix), 1, AG_SHAPE(out))))
        return ag_error_status();
    return AG_OK;
}

ag_tensor *nn_linear_forward(ag_ctx *ctx, const nn_linear *l, ag_tensor *x) {
    return ag_linear(ctx, x, l->w, l->b, l->layout);
}

/* ---------------------------------------------------------------- embedding */

ag_status nn_embedding_init(ag_params *ps, nn_embedding *e, const char *prefix, int num, int dim, int padding_idx) {
    char name[NN_NAME_MAX];
    e->num = num;
    e->dim = dim;
    e->padding_idx = padding_idx;
    e->w = ag_params_add(ps, nn_name(name, "%s.weight", prefix), 2, AG_SHAPE(num, dim));
    return e->w ? AG_OK : ag_error_status();
}

ag_tensor *nn_embedding_forward(ag_ctx *ctx, const nn_embedding *e, const ag_ints *ids) {
    return ag_embedding(ctx, e->w, ids, e->padding_idx);
}

/* ---------------------------------------------------------------- norms */

static ag_status norm_init(ag_params *ps, nn_norm *n, const char *prefix, int dim, float eps, bool rms) {
    char name[NN_NAME_MAX];
    memset(n, 0, sizeof *n);
    n->dim = dim;
    n->eps = eps;
    n->rms = rms;
    if (!(n->w = ag_params_add(ps, nn_name(name, "%s.weight", prefix), 1, AG_SHAPE(dim)))) return ag_error_status();
    if (!rms && !(n->b = ag_params_add(ps, nn_name(name, "%s.bias", prefix), 1, AG_SHAPE(dim))))
        return ag_error_status();
    return AG_OK;
}

ag_status nn_layernorm_init(ag_params *ps, nn_norm *n, const char *prefix, int dim, float eps) {
    return norm_init(ps, n, prefix, dim, eps, false);
}

ag_status nn_rmsnorm_init(ag_params *ps, nn_norm *n, const char *prefix, int dim, float eps) {
    return norm_init(ps, n, prefix, dim, eps, true);
}

ag_tensor *nn_norm_forward(ag_ctx *ctx, const nn_norm *n, ag_tensor *x) {
    return n->rms ? ag_rmsnorm(ctx, x, n->w, n->eps) : ag_layernorm(ctx, x, n->w, n->b, n->eps);
}

/* ---------------------------------------------------------------- module init */

void nn_init_linear(const nn_linear *l, float std, nn_init_rng *r) {
    if (!l->w) return;
    nn_init_normal(l->w, std, r);
    if (l->b) nn_init_const(l->b, 0);
}

void nn_init_norm(const nn_norm *n) {
    if (!n->w) return;
    nn_init_const(n->w, 1);
    if (n->b) nn_init_const(n->b, 0);
}

void nn_init_embedding(const nn_embedding *e, float std, nn_init_rng *r) {
    if (!e->w) return;
    nn_init_normal(e->w, std, r);
    if (e->padding_idx >= 0) memset(e->w->data + (int64_t)e->padding_idx * e->dim, 0, (size_t)e->dim * sizeof(float));
}

/* ---------------------------------------------------------------- activations */

bool nn_act_from_name(const char *name, nn_act *act) {
    static const struct { const char *name; nn_act act; } table[] = {
        {"gelu", NN_ACT_GELU},           {"gelu_new", NN_ACT_GELU_TANH}, {"gelu_pytorch_tanh", NN_ACT_GELU_TANH},
        {"gelu_fast", NN_ACT_GELU_TANH}, {"relu", NN_ACT_RELU},          {"silu", NN_ACT_SILU},
        {"swish", NN_ACT_SILU},          {"tanh", NN_ACT_TANH},          {"sigmoid", NN_ACT_SIGMOID},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; ++i)
        if (strcmp(name, table[i].name) == 0) { *act = table[i].act; return true; }
    return false;
}

ag_tensor *nn_act_forward(ag_ctx *ctx, nn_act act, ag_tensor *x) {
    switch (act) {
    case NN_ACT_GELU: return ag_gelu(ctx, x);
    case NN_ACT_GELU_TANH: return ag_gelu_tanh(ctx, x);
    case NN_ACT_RELU: return ag_relu(ctx, x);
    case NN_ACT_SILU: return ag_silu(ctx, x);
    case NN_ACT_TANH: return ag_tanh(ctx, x);
    default: return ag_sigmoid(ctx, x);
    }
}

/* ---------------------------------------------------------------- attention */

bool nn_same_bt(const char *who, const char *what, const ag_ints *x, int64_t B, int64_t T) {
    if (!x || (x->ndim == 2 && x->shape[0] == B && x->shape[1] == T)) return true;
    char s[64];
    ag_fail(AG_ERR_ARG, "%s: %s %s does not match input_ids [%lld,%lld]", who, what,
            ag_shape_str(s, x->ndim, x->shape), (long long)B, (long long)T);
    return false;
}

/* [B,T,NH*D] -> [B,T,NH,D] -> [B,NH,T,D] */
ag_tensor *nn_split_heads(ag_ctx *ctx, ag_tensor *x, int n_head) {
    if (!x) return NULL;
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    ag_tensor *r = ag_reshape(ctx, x, 4, AG_SHAPE(B, T, n_head, C / n_head));
    return ag_permute(ctx, r, (const int[]){0, 2, 1, 3});
}

/* [B,NH,T,D] -> [B,T,NH,D] -> [B,T,NH*D] */
ag_tensor *nn_merge_heads(ag_ctx *ctx, ag_tensor *x) {
    if (!x) return NULL;
    int64_t B = x->shape[0], NH = x->shape[1], T = x->shape[2], D = x->shape[3];
    ag_tensor *p = ag_permute(ctx, x, (const int[]){0, 2, 1, 3});
    return ag_reshape(ctx, p, 3, AG_SHAPE(B, T, NH * D));
}

ag_status nn_mha_init(ag_params *ps, nn_mha *m, const char *const *names, int d_model, int n_head, int d_head,
                      bool fused, bool bias, ag_linear_layout layout) {
    memset(m, 0, sizeof *m);
    m->d_model = d_model;
    m->n_head = n_head;
    m->d_head = d_head;
    m->fused = fused;
    int inner = n_head * d_head;
    ag_status st;
    if (fused) {
        if ((st = nn_linear_init(ps, &m->qkv, names[0], d_model, 3 * inner, bias, layout))) return st;
        return nn_linear_init(ps, &m->o, names[1], inner, d_model, bias, layout);
    }
    if ((st = nn_linear_init(ps, &m->q, names[0], d_model, inner, bias, layout))) return st;
    if ((st = nn_linear_init(ps, &m->k, names[1], d_model, inner, bias, layout))) return st;
    if ((st = nn_linear_init(ps, &m->v, names[2], d_model, inner, bias, layout))) return st;
    return nn_linear_init(ps, &m->o, names[3], inner, d_model, bias, layout);
}

ag_tensor *nn_mha_forward(ag_ctx *ctx, const nn_mha *m, ag_tensor *x, ag_tensor *kv, const ag_attn_opts *opts) {
    ag_tensor *q, *k, *v;
    int inner = m->n_head * m->d_head;
    if (m->fused) {
        ag_tensor *qkv = nn_linear_forward(ctx, &m->qkv, x); /* [B,T,3*inner] */
        q = ag_slice(ctx, qkv, 2, 0, inner);
        k = ag_slice(ctx, qkv, 2, inner, inner);
        v = ag_slice(ctx, qkv, 2, 2 * inner, inner);
    } else {
        ag_tensor *src = kv ? kv : x;
        q = nn_linear_forward(ctx, &m->q, x);
        k = nn_linear_forward(ctx, &m->k, src);
        v = nn_linear_forward(ctx, &m->v, src);
    }
    ag_attn_opts o = opts ? *opts : (ag_attn_opts){0};
    o.dropout = m->attn_dropout;
    o.no_scale = o.no_scale || m->no_scale;
    ag_tensor *a = ag_attention(ctx, nn_split_heads(ctx, q, m->n_head), nn_split_heads(ctx, k, m->n_head),
                                nn_split_heads(ctx, v, m->n_head), &o); /* [B,NH,T,D] */
    return nn_linear_forward(ctx, &m->o, nn_merge_heads(ctx, a));
}

/* ---------------------------------------------------------------- config.json */

#include <stdlib.h>

ag_status nn_config_parse(nn_config *c, const char *text, const char *name) {
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", name);
    c->text = strdup(text);
    c->json = cJSON_ParseWithOpts(text, NULL, 0);
    if (!c->json) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= text ? (long)(at - text) : -1;
        ag_status st = ag_fail(AG_ERR_ARG, "config %s: invalid JSON near byte %ld", name, off);
        nn_config_free(c);
        return st;
    }
    if (!cJSON_IsObject(c->json)) {
        nn_config_free(c);
        return ag_fail(AG_ERR_ARG, "config %s: not a JSON object", name);
    }
    return AG_OK;
}

ag_status nn_config_load(nn_config *c, const char *path) {
    memset(c, 0, sizeof *c);
    char *text = ag_read_file("config", path, 64u << 20, NULL);
    if (!text) return ag_error_status();
    ag_status st = nn_config_parse(c, text, path);
    free(text);
    return st;
}

void nn_config_free(nn_config *c) {
    cJSON_Delete(c->json);
    free(c->text);
    c->json = NULL;
    c->text = NULL;
}

static const cJSON *field(const nn_config *c, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->json, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

ag_status nn_config_int(const nn_config *c, const char *name, int dflt, int lo, int hi, int *out) {
    const cJSON *v = field(c, name);
    if (!v) { *out = dflt; return AG_OK; }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" must be a whole number", c->path, name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" is %g, outside [%d, %d]", c->path, name, v->valuedouble,
                       lo, hi);
    *out = (int)v->valuedouble;
    return AG_OK;
}

ag_status nn_config_num(const nn_config *c, const char *name, double dflt, double *out) {
    const cJSON *v = field(c, name);
    if (!v) { *out = dflt; return AG_OK; }
    if (!cJSON_IsNumber(v)) return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" must be a number", c->path, name);
    *out = v->valuedouble;
    return AG_OK;
}

ag_status nn_config_str(const nn_config *c, const char *name, const char *dflt, const char **out) {
    const cJSON *v = field(c, name);
    if (!v) { *out = dflt; return AG_OK; }
    if (!cJSON_IsString(v)) return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" must be a string", c->path, name);
    *out = v->valuestring;
    return AG_OK;
}

ag_status nn_config_bool(const nn_config *c, const char *name, bool dflt, bool *out) {
    const cJSON *v = field(c, name);
    if (!v) { *out = dflt; return AG_OK; }
    if (!cJSON_IsBool(v)) return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" must be true or false", c->path, name);
    *out = cJSON_IsTrue(v);
    return AG_OK;
}

ag_status nn_config_act(const nn_config *c, const char *name, const char *dflt, nn_act *out) {
    const char *act = NULL;
    ag_status st = nn_config_str(c, name, dflt, &act);
    if (st) return st;
    if (!nn_act_from_name(act, out))
        return ag_fail(AG_ERR_ARG, "config %s: field \"%s\": unknown activation '%s'", c->path, name, act);
    return AG_OK;
}

ag_status nn_config_positive(const nn_config *c, const char *name, double dflt, float *out) {
    double v = 0;
    ag_status st = nn_config_num(c, name, dflt, &v);
    if (st) return st;
    if (v <= 0) return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" must be > 0", c->path, name);
    *out = (float)v;
    return AG_OK;
}

ag_status nn_config_prob(const nn_config *c, const char *name, double dflt, float *out) {
    double p = 0;
    ag_status st = nn_config_num(c, name, dflt, &p);
    if (st) return st;
    if (p < 0 || p >= 1) return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" must be in [0, 1)", c->path, name);
    *out = (float)p;
    return AG_OK;
}
