/* harness.c: reading op fixtures, running a case, comparing arrays. */
#include "harness.h"

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- comparing */

bool check_close(const char *what, const float *actual, const float *expected, int64_t n,
                 double rtol, double atol_frac) {
    double scale = 0;
    for (int64_t i = 0; i < n; ++i) scale = fmax(scale, fabs(expected[i]));
    double atol = atol_frac * scale;
    int64_t bad = 0, worst = -1;
    double worst_excess = 0, max_diff = 0;
    for (int64_t i = 0; i < n; ++i) {
        double d = fabs((double)actual[i] - expected[i]);
        double lim = atol + rtol * fabs(expected[i]);
        if (d > max_diff || isnan(d)) max_diff = isnan(d) ? INFINITY : d;
        if (!(d <= lim)) {
            if (bad < 5)
                fprintf(stderr, "  %s[%lld]: got %.9g, want %.9g (diff %.3g, allowed %.3g)\n", what,
                        (long long)i, actual[i], expected[i], d, lim);
            double excess = isnan(d) ? INFINITY : d / (lim > 0 ? lim : 1e-30);
            if (excess > worst_excess || worst < 0) { worst_excess = excess; worst = i; }
            bad++;
        }
    }
    if (bad) {
        fprintf(stderr, "  %s: %lld of %lld values differ; largest difference %.3g (scale %.3g, rtol %.1g)\n",
                what, (long long)bad, (long long)n, max_diff, scale, rtol);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- params */

double case_num(const op_case *c, const char *key, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->params, key);
    if (cJSON_IsNumber(v)) return v->valuedouble;
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v) ? 1 : 0;
    return dflt;
}

bool case_bool(const op_case *c, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->params, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    return dflt;
}

int case_ints(const op_case *c, const char *key, int *out, int cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->params, key);
    if (!cJSON_IsArray(v)) return -1;
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (k < cap) out[k] = (int)e->valuedouble;
        k++;
    }
    return k;
}

/* ---------------------------------------------------------------- runners */

static const op_runner *const tables[] = {
    runners_elementwise, runners_matmul, runners_index, runners_norm, runners_softmax, runners_loss,
    runners_activation, runners_dropout, runners_shape, runners_reduce, runners_attention, runners_rope,
};

op_runner_fn find_runner(ag_op op) {
    for (size_t t = 0; t < sizeof tables / sizeof *tables; ++t)
        for (const op_runner *r = tables[t]; r->run; ++r)
            if (r->op == op) return r->run;
    return NULL;
}

ag_tensor *run_case(ag_ctx *ctx, const op_case *c, float *const *data, ag_tensor **leaves) {
    ag_ctx_reset(ctx);
    ag_error_clear();
    ag_tensor *in[CASE_MAX_IN] = {0};
    ag_ints *ints[4] = {0};
    for (int k = 0; k < c->n_in; ++k) {
        const case_array *a = &c->in[k];
        in[k] = ag_from(ctx, data && data[k] ? data[k] : a->data, a->ndim, a->shape, a->requires_grad);
        if (leaves) leaves[k] = in[k];
    }
    for (int k = 0; k < c->n_ints; ++k)
        ints[k] = ag_ints_from(ctx, c->ints[k].idata, c->ints[k].ndim, c->ints[k].shape);
    op_runner_fn run = find_runner(c->op);
    return run ? run(ctx, c, in, ints) : NULL;
}

/* ---------------------------------------------------------------- reading fixtures */

static char *read_str_attr(hid_t obj, const char *name) {
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t t = H5Aget_type(a);
    char *out = NULL;
    if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (H5Aread(a, mt, &s) >= 0 && s) {
            out = strdup(s);
            H5free_memory(s);
        }
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(t);
        out = calloc(n + 1, 1);
        H5Aread(a, t, out);
    }
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

static bool read_array(hid_t g, const char *name, bool ints, case_array *a) {
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return false;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[8] = {0};
    int nd = H5Sget_simple_extent_ndims(sp);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    a->ndim = nd == 0 ? 1 : nd;
    a->numel = 1;
    for (int i = 0; i < a->ndim; ++i) {
        a->shape[i] = nd == 0 ? 1 : (int64_t)dims[i];
        a->numel *= a->shape[i];
    }
    herr_t st;
    if (ints) {
        a->idata = malloc((size_t)(a->numel ? a->numel : 1) * sizeof(int32_t));
        st = H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->idata);
    } else {
        a->data = malloc((size_t)(a->numel ? a->numel : 1) * sizeof(float));
        st = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->data);
    }
    H5Sclose(sp);
    H5Dclose(d);
    return st >= 0;
}

typedef struct {
    op_case *cases;
    int n, cap;
    const char *family;
} load_state;

static herr_t visit_group(hid_t file, const char *name, const H5L_info_t *info, void *arg) {
    load_state *s = arg;
    hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
    if (g < 0) return 0;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->cases = realloc(s->cases, (size_t)s->cap * sizeof *s->cases);
    }
    op_case *c = &s->cases[s->n++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->family, sizeof c->family, "%s", s->family);
    char *op = read_str_attr(g, "op");
    char *params = read_str_attr(g, "params");
    char *inputs = read_str_attr(g, "inputs");
    char *rgs = read_str_attr(g, "requires_grad");
    char *ints = read_str_attr(g, "ints");
    c->op = op ? ag_op_from_name(op) : AG_OP_COUNT;
    c->params = cJSON_Parse(params ? params : "{}");
    cJSON *jin = cJSON_Parse(inputs ? inputs : "[]"), *jrg = cJSON_Parse(rgs ? rgs : "[]");
    cJSON *jints = cJSON_Parse(ints ? ints : "[]");
    const cJSON *e;
    int k = 0;
    cJSON_ArrayForEach(e, jin) {
        if (k >= CASE_MAX_IN) break;
        read_array(g, e->valuestring, false, &c->in[k]);
        c->in[k].requires_grad = cJSON_IsTrue(cJSON_GetArrayItem(jrg, k));
        if (c->in[k].requires_grad) {
            char gname[80];
            case_array ga;
            snprintf(gname, sizeof gname, "grad_%s", e->valuestring);
            if (read_array(g, gname, false, &ga)) c->in[k].grad = ga.data;
        }
        k++;
    }
    c->n_in = k;
    k = 0;
    cJSON_ArrayForEach(e, jints) {
        if (k >= 4) break;
        read_array(g, e->valuestring, true, &c->ints[k++]);
    }
    c->n_ints = k;
    read_array(g, "out", false, &c->out);
    read_array(g, "dout", false, &c->dout);
    cJSON_Delete(jin);
    cJSON_Delete(jrg);
    cJSON_Delete(jints);
    free(op); free(params); free(inputs); free(rgs); free(ints);
    H5Gclose(g);
    return 0;
}

int load_op_cases(const char *dir, op_case **cases) {
    static const char *families[] = {"elementwise", "matmul", "index", "norm", "softmax", "loss",
                                     "activation", "dropout", "shape", "reduce", "attention", "rope"};
    load_state s = {0};
    for (size_t f = 0; f < sizeof families / sizeof *families; ++f) {
        char path[1024];
        snprintf(path, sizeof path, "%s/ops_%s.h5", dir, families[f]);
        FILE *probe = fopen(path, "rb");
        if (!probe) continue;
        fclose(probe);
        hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (file < 0) continue;
        s.family = families[f];
        H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, NULL, visit_group, &s);
        H5Fclose(file);
    }
    *cases = s.cases;
    return s.n;
}

static void free_array(case_array *a) {
    free(a->data);
    free(a->idata);
    free(a->grad);
}

void free_op_cases(op_case *cases, int n) {
    for (int i = 0; i < n; ++i) {
        for (int k = 0; k < cases[i].n_in; ++k) free_array(&cases[i].in[k]);
        for (int k = 0; k < cases[i].n_ints; ++k) free_array(&cases[i].ints[k]);
        free_array(&cases[i].out);
        free_array(&cases[i].dout);
        cJSON_Delete(cases[i].params);
    }
    free(cases);
}
