/* optim.c: SGD, Adam and AdamW as fused loops over the flat parameter,
 * gradient and state blocks; parameter groups; clipping and gradient scaling.
 *
 * The update formulas are PyTorch 1.13's (torch/optim/{sgd,adam,adamw}.py,
 * `_single_tensor_*`), line by line and in the same order, so that the same
 * float32 roundings happen in the same places. Scalars that PyTorch computes in
 * Python (double) are computed here in double too and rounded to float where
 * they meet the tensors. Learning-rate schedules are in schedule.c.
 *
 * Layout. The registry keeps every parameter's values in one block
 * values[total] and its gradient in grads[total], parameter i being the slice
 * starting at p[i]->data - values. The state blocks m[total] and v[total] use
 * the same offsets, so element j of values, grads, m and v all belong to the
 * same scalar weight, and a step never needs to know where one parameter ends
 * and the next begins, except to look up its group. Consecutive parameters of
 * the same group are merged into runs; a step is one loop per run.
 */
#include "optim/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many elements a loop runs on one thread: waking the OpenMP team
 * costs more than it saves. */
#define OPTIM_PARALLEL_MIN 32768

/* ================================================================ the kernels
 * Each takes one run: n consecutive elements of the flat blocks. Scalars
 * arrive already rounded to float, as PyTorch passes them to its kernels. */

/* SGD, from torch's _single_tensor_sgd:
 *
 *     d_p = grad + weight_decay * param                   (L2 decay in the gradient)
 *     buf = d_p                             on the first step
 *     buf = momentum * buf + (1 - dampening) * d_p        afterwards
 *     d_p = d_p + momentum * buf            (nesterov)    or  d_p = buf
 *     param = param - lr * d_p
 *
 * p, g, buf [n]; buf is NULL without momentum. */
static void sgd_kernel(float *p, const float *g, float *buf, int64_t n, float lr, float weight_decay,
                       float momentum, float one_minus_dampening, bool nesterov, bool first_step) {
#pragma omp parallel for simd schedule(static) if (n > OPTIM_PARALLEL_MIN)
    for (int64_t i = 0; i < n; ++i) {
        float d_p = g[i] + weight_decay * p[i];
        if (buf) {
            float b = first_step ? d_p : buf[i] * momentum + one_minus_dampening * d_p;
            buf[i] = b;
            d_p = nesterov ? d_p + momentum * b : b;
        }
        p[i] = p[i] - lr * d_p;
    }
}

/* Adam and AdamW, from torch's _single_tensor_adam and _single_tensor_adamw:
 *
 *     param = param * (1 - lr * weight_decay)             (AdamW only: decoupled decay, first)
 *     grad  = grad + weight_decay * param                 (Adam only: L2 decay in the gradient)
 *     m     = beta1 * m + (1 - beta1) * grad
 *     v     = beta2 * v + (1 - beta2) * grad^2
 *     denom = sqrt(v) / sqrt(1 - beta2^t) + eps           (eps outside the square root)
 *     param = param - lr / (1 - beta1^t) * m / denom
 *
 * Adam passes decay_factor = 1 and AdamW l2 = 0; multiplying by 1 and adding
 * 0 * param change nothing, so one kernel serves both.
 * p, g, m, v [n]. */
static void adam_kernel(float *p, const float *g, float *m, float *v, int64_t n, float step_size,
                        float bc2_sqrt, float eps, float beta1, float one_minus_beta1, float beta2,
                        float one_minus_beta2, float l2, float decay_factor) {
#pragma omp parallel for simd schedule(static) if (n > OPTIM_PARALLEL_MIN)
    for (int64_t i = 0; i < n; ++i) {
        float w = p[i] * decay_factor;
        float grad = g[i] + l2 * w;
        float mi = m[i] * beta1 + one_minus_beta1 * grad;
        float vi = v[i] * beta2 + one_minus_beta2 * grad * grad;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = w - step_size * (mi / denom);
    }
}

/* ================================================================ configuration */

optim_config optim_sgd_defaults(void) {
    optim_config c = {0};
    c.kind = OPTIM_SGD;
    return c;
}

optim_config optim_adam_defaults(void) {
    optim_config c = {0};
    c.kind = OPTIM_ADAM;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    return c;
}

optim_config optim_adamw_defaults(void) {
    optim_config c = optim_adam_defaults();
    c.kind = OPTIM_ADAMW;
    c.weight_decay = 0.01;
    return c;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

bool optim_default_no_decay(const char *name, void *user) {
    (void)user;
    if (ends_with(name, ".bias") || strcmp(name, "bias") == 0) return true;
    static const char *const norms[] = {"LayerNorm", "layernorm", "layer_norm", "ln_", "norm"};
    for (size_t i = 0; i < sizeof norms / sizeof *norms; ++i)
        if (strstr(name, norms[i])) return true;
    return false;
}

static bool matches_any(const char *name, void *user) {
    for (const char *const *pat = user; *pat; ++pat)
        if (strstr(name, *pat)) return true;
    return false;
}

static bool never(const char *name, void *user) {
    (void)name;
    (void)user;
    return false;
}

static const char *kind_name(optim_kind k) {
    return k == OPTIM_SGD ? "sgd" : k == OPTIM_ADAM ? "adam" : k == OPTIM_ADAMW ? "adamw" : "?";
}

/* Checks every field the kind uses; the message names the field and its value. */
static ag_status check_config(const optim_config *c) {
    const char *k = kind_name(c->kind);
    if (c->kind != OPTIM_SGD && c->kind != OPTIM_ADAM && c->kind != OPTIM_ADAMW)
        return ag_fail(AG_ERR_ARG, "optim: unknown optimizer kind %d (sgd, adam, adamw)", (int)c->kind);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return ag_fail(AG_ERR_ARG, "optim %s: weight_decay = %g, must be >= 0", k, c->weight_decay);
    if (c->kind == OPTIM_SGD) {
        if (!(c->momentum >= 0) || !isfinite(c->momentum))
            return ag_fail(AG_ERR_ARG, "optim sgd: momentum = %g, must be >= 0", c->momentum);
        if (!isfinite(c->dampening))
            return ag_fail(AG_ERR_ARG, "optim sgd: dampening = %g, must be finite", c->dampening);
        if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
            return ag_fail(AG_ERR_ARG,
                           "optim sgd: nesterov needs momentum > 0 and dampening = 0 (got momentum %g, dampening %g)",
                           c->momentum, c->dampening);
    } else {
        if (!(c->beta1 >= 0 && c->beta1 < 1))
            return ag_fail(AG_ERR_ARG, "optim %s: beta1 = %g, must be in [0, 1)", k, c->beta1);
        if (!(c->beta2 >= 0 && c->beta2 < 1))
            return ag_fail(AG_ERR_ARG, "optim %s: beta2 = %g, must be in [0, 1)", k, c->beta2);
        if (!(c->eps > 0) || !isfinite(c->eps))
            return ag_fail(AG_ERR_ARG, "optim %s: eps = %g, must be > 0", k, c->eps);
    }
    if (c->decay_rule == OPTIM_DECAY_PATTERNS && !c->no_decay_patterns)
        return ag_fail(AG_ERR_ARG, "optim %s: decay rule 'patterns' without no_decay_patterns", k);
    if (c->decay_rule == OPTIM_DECAY_PREDICATE && !c->no_decay_fn)
        return ag_fail(AG_ERR_ARG, "optim %s: decay rule 'predicate' without no_decay_fn", k);
    if (c->decay_rule < OPTIM_DECAY_DEFAULT || c->decay_rule > OPTIM_DECAY_PREDICATE)
        return ag_fail(AG_ERR_ARG, "optim %s: unknown decay rule %d", k, (int)c->decay_rule);
    return AG_OK;
}

/* ================================================================ groups and runs */

static int64_t offset_of(const optim *o, const ag_tensor *p) { return (int64_t)(p->data - o->ps->values); }

/* Merges consecutive parameters of one group into runs. There are at most
 * ps->n runs, so the array allocated at creation always suffices. */
static void rebuild_runs(optim *o) {
    o->n_runs = 0;
    for (int64_t i = 0; i < o->ps->n; ++i) {
        const ag_tensor *p = o->ps->p[i];
        if (p->numel == 0) continue;
        optim_run *last = o->n_runs ? &o->runs[o->n_runs - 1] : NULL;
        if (last && last->group == o->group_of[i] && last->offset + last->numel == offset_of(o, p)) {
            last->numel += p->numel;
        } else {
            o->runs[o->n_runs++] = (optim_run){offset_of(o, p), p->numel, o->group_of[i]};
        }
    }
}

static ag_status check_group_values(const optim *o, double weight_decay, double lr_scale) {
    if (!(weight_decay >= 0) || !isfinite(weight_decay))
        return ag_fail(AG_ERR_ARG, "optim %s: group weight_decay = %g, must be >= 0", kind_name(o->cfg.kind),
                       weight_decay);
    if (!(lr_scale >= 0) || !isfinite(lr_scale))
        return ag_fail(AG_ERR_ARG, "optim %s: group lr_scale = %g, must be >= 0", kind_name(o->cfg.kind), lr_scale);
    return AG_OK;
}

int optim_add_group(optim *o, double weight_decay, double lr_scale) {
    if (check_group_values(o, weight_decay, lr_scale) != AG_OK) return -1;
    if (o->n_groups == OPTIM_MAX_GROUPS) {
        ag_fail(AG_ERR_ARG, "optim: more than %d parameter groups", OPTIM_MAX_GROUPS);
        return -1;
    }
    o->groups[o->n_groups] = (optim_group){weight_decay, lr_scale};
    return o->n_groups++;
}

ag_status optim_set_group(optim *o, int g, double weight_decay, double lr_scale) {
    if (g < 0 || g >= o->n_groups)
        return ag_fail(AG_ERR_ARG, "optim: no parameter group %d (there are %d)", g, o->n_groups);
    ag_status st = check_group_values(o, weight_decay, lr_scale);
    if (st != AG_OK) return st;
    o->groups[g] = (optim_group){weight_decay, lr_scale};
    return AG_OK;
}

static int64_t index_of(const optim *o, const char *name) {
    for (int64_t i = 0; i < o->ps->n; ++i)
        if (strcmp(o->ps->p[i]->name, name) == 0) return i;
    return -1;
}

ag_status optim_assign(optim *o, const char *name, int g) {
    int64_t i = index_of(o, name);
    if (i < 0) return ag_fail(AG_ERR_ARG, "optim: no parameter called '%s'", name);
    if (g < 0 || g >= o->n_groups)
        return ag_fail(AG_ERR_ARG, "optim: cannot put '%s' in group %d (there are %d)", name, g, o->n_groups);
    o->group_of[i] = g;
    rebuild_runs(o);
    return AG_OK;
}

int optim_group_of(const optim *o, const char *name) {
    int64_t i = index_of(o, name);
    return i < 0 ? -1 : o->group_of[i];
}

/* ================================================================ creation */

/* A zeroed state block of n floats (one float for an empty registry, so that
 * NULL always means "out of memory"). */
static float *zeroed_block(int64_t n) { return ag_calloc((size_t)(n ? n : 1), sizeof(float)); }

ag_status optim_create(optim **out, ag_params *ps, const optim_config *cfg) {
    *out = NULL;
    if (!ps->finalized)
        return ag_fail(AG_ERR_STATE, "optim: the parameter registry is not finalized (call ag_params_finalize first)");
    ag_status st = check_config(cfg);
    if (st != AG_OK) return st;

    optim *o = ag_calloc(1, sizeof *o);
    if (!o) return ag_fail(AG_ERR_MEMORY, "optim: out of memory");
    o->cfg = *cfg;
    o->ps = ps;
    o->group_of = ag_calloc((size_t)(ps->n ? ps->n : 1), sizeof *o->group_of);
    o->runs = ag_calloc((size_t)(ps->n ? ps->n : 1), sizeof *o->runs);
    bool want_m = cfg->kind != OPTIM_SGD || cfg->momentum != 0;
    bool want_v = cfg->kind != OPTIM_SGD;
    if (want_m) o->m = zeroed_block(ps->total);
    if (want_v) o->v = zeroed_block(ps->total);
    if (!o->group_of || !o->runs || (want_m && !o->m) || (want_v && !o->v)) {
        optim_free(o);
        return ag_fail(AG_ERR_MEMORY, "optim %s: cannot allocate the state for %lld parameters",
                       kind_name(cfg->kind), (long long)ps->total);
    }

    /* group 0 decays, group 1 does not; the rule decides who goes where */
    o->n_groups = 2;
    o->groups[0] = (optim_group){cfg->weight_decay, 1.0};
    o->groups[1] = (optim_group){0.0, 1.0};
    optim_no_decay_fn no_decay = optim_default_no_decay;
    void *user = NULL;
    switch (cfg->decay_rule) {
    case OPTIM_DECAY_DEFAULT: break;
    case OPTIM_DECAY_ALL: no_decay = never; break;
    case OPTIM_DECAY_PATTERNS: no_decay = matches_any; user = (void *)cfg->no_decay_patterns; break;
    case OPTIM_DECAY_PREDICATE: no_decay = cfg->no_decay_fn; user = cfg->no_decay_user; break;
    }
    for (int64_t i = 0; i < ps->n; ++i) o->group_of[i] = no_decay(ps->p[i]->name, user) ? 1 : 0;
    rebuild_runs(o);
    *out = o;
    return AG_OK;
}

void optim_free(optim *o) {
    if (!o) return;
    ag_free(o->group_of);
    ag_free(o->runs);
    ag_free(o->m);
    ag_free(o->v);
    ag_free(o);
}

/* ================================================================ the step */

ag_status optim_step(optim *o, double lr) {
    if (!(lr >= 0) || !isfinite(lr))
        return ag_fail(AG_ERR_ARG, "optim %s step %lld: lr = %g, must be finite and >= 0", kind_name(o->cfg.kind),
                       (long long)o->step + 1, lr);
    const optim_config *c = &o->cfg;
    float *values = o->ps->values, *grads = o->ps->grads;
    /* torch increments the step before using it: the first update has t = 1 */
    double t = (double)(o->step + 1);
    for (int64_t r = 0; r < o->n_runs; ++r) {
        const optim_run *run = &o->runs[r];
        const optim_group *grp = &o->groups[run->group];
        double lr_g = lr * grp->lr_scale;
        float *p = values + run->offset;
        const float *g = grads + run->offset;
        float *m = o->m ? o->m + run->offset : NULL;
        if (c->kind == OPTIM_SGD) {
            /* torch creates the momentum buffer on a parameter's first step */
            sgd_kernel(p, g, m, run->numel, (float)lr_g, (float)grp->weight_decay, (float)c->momentum,
                       (float)(1.0 - c->dampening), c->nesterov, o->step == 0);
        } else {
            double bias_correction1 = 1.0 - pow(c->beta1, t);
            double bias_correction2 = 1.0 - pow(c->beta2, t);
            double step_size = lr_g / bias_correction1;
            double bc2_sqrt = sqrt(bias_correction2);
            bool decoupled = c->kind == OPTIM_ADAMW;
            float l2 = decoupled ? 0.0f : (float)grp->weight_decay;
            float decay_factor = decoupled ? (float)(1.0 - lr_g * grp->weight_decay) : 1.0f;
            adam_kernel(p, g, m, o->v + run->offset, run->numel, (float)step_size, (float)bc2_sqrt, (float)c->eps,
                        (float)c->beta1, (float)(1.0 - c->beta1), (float)c->beta2, (float)(1.0 - c->beta2), l2,
                        decay_factor);
        }
    }
    o->step += 1;
    return AG_OK;
}

/* ================================================================ state */

int optim_state_count(const optim *o) { return (o->m ? 1 : 0) + (o->v ? 1 : 0); }

const char *optim_state_name(const optim *o, int k) {
    if (k < 0 || k >= optim_state_count(o)) return NULL;
    if (o->cfg.kind == OPTIM_SGD) return "momentum";
    return k == 0 ? "m" : "v";
}

float *optim_state_block(optim *o, int k) {
    if (k < 0 || k >= optim_state_count(o)) return NULL;
    return k == 0 ? o->m : o->v;
}

float *optim_state_slice(optim *o, int k, const ag_tensor *p) {
    float *block = optim_state_block(o, k);
    if (!block || !p || !p->data) return NULL;
    int64_t off = offset_of(o, p);
    if (off < 0 || off + p->numel > o->ps->total) return NULL;
    return block + off;
}

int64_t optim_step_count(const optim *o) { return o->step; }

ag_status optim_set_step_count(optim *o, int64_t step) {
    if (step < 0) return ag_fail(AG_ERR_ARG, "optim: step count %lld, must be >= 0", (long long)step);
    o->step = step;
    return AG_OK;
}

/* ================================================================ gradients */

double optim_grad_norm(const ag_params *ps) {
    const float *g = ps->grads;
    int64_t n = ps->total;
    double sum = 0.0;
#pragma omp parallel for simd reduction(+ : sum) schedule(static) if (n > OPTIM_PARALLEL_MIN)
    for (int64_t i = 0; i < n; ++i) sum += (double)g[i] * (double)g[i];
    return sqrt(sum);
}

/* Only on the error path: the first parameter whose gradient is not finite. */
static ag_status fail_non_finite(const ag_params *ps, double norm) {
    for (int64_t i = 0; i < ps->n; ++i) {
        const ag_tensor *p = ps->p[i];
        for (int64_t j = 0; j < p->numel; ++j)
            if (!isfinite(p->grad[j]))
                return ag_fail(AG_ERR_NUMERIC,
                               "clip_grad_norm: the total gradient norm is %g; first non-finite gradient: "
                               "%s[%lld] = %g (hint: the loss was probably NaN or infinite; the weights "
                               "were not updated)",
                               norm, p->name, (long long)j, (double)p->grad[j]);
    }
    /* every element finite but their squares overflowed a double: impossible for floats */
    return ag_fail(AG_ERR_NUMERIC, "clip_grad_norm: the total gradient norm is %g", norm);
}

ag_status optim_clip_grad_norm(ag_params *ps, double max_norm, double *total_norm) {
    if (total_norm) *total_norm = 0;
    if (!(max_norm > 0) || !isfinite(max_norm))
        return ag_fail(AG_ERR_ARG, "clip_grad_norm: max_norm = %g, must be finite and > 0", max_norm);
    double norm = optim_grad_norm(ps);
    if (total_norm) *total_norm = norm;
    if (!isfinite(norm)) return fail_non_finite(ps, norm);
    /* torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to at most 1 */
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) optim_scale_grads(ps, (float)coef);
    return AG_OK;
}

ag_status optim_scale_grads(ag_params *ps, float factor) {
    if (!isfinite(factor)) return ag_fail(AG_ERR_ARG, "scale_grads: factor = %g, must be finite", (double)factor);
    float *g = ps->grads;
    int64_t n = ps->total;
#pragma omp parallel for simd schedule(static) if (n > OPTIM_PARALLEL_MIN)
    for (int64_t i = 0; i < n; ++i) g[i] *= factor;
    return AG_OK;
}
