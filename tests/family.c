/* family.c: the shared checks of the model-family tests (see family.h). */
#include "family.h"

#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *h5_read_as(hid_t f, const char *name, hid_t type, size_t elem, int64_t *n) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t sp = H5Dget_space(d);
    int64_t count = H5Sget_simple_extent_npoints(sp);
    void *x = malloc((size_t)(count ? count : 1) * elem);
    H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Sclose(sp);
    H5Dclose(d);
    if (n) *n = count;
    return x;
}

float *h5_read_floats(hid_t f, const char *name, int64_t *n) {
    return h5_read_as(f, name, H5T_NATIVE_FLOAT, sizeof(float), n);
}

bool family_file_present(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

void family_build(recipe_model *m, const char *config, const char *arch, const char *weights) {
    if (recipe_model_declare(m, config, arch) != AG_OK) fail_msg("%s", ag_error());
    assert_int_equal(recipe_model_alloc(m, 0), AG_OK);
    if (weights && ckpt_safetensors_load(weights, &m->ps, m->aliases, m->n_aliases) != AG_OK)
        fail_msg("%s", ag_error());
}

void family_load(recipe_model *m, recipe_batch *b, const char *dir, const char *config, const char *arch,
                 const char *weights) {
    char path[512], weights_path[512];
    snprintf(path, sizeof path, "%s/%s", dir, config);
    snprintf(weights_path, sizeof weights_path, "%s/%s", dir, weights);
    family_build(m, path, arch, weights_path);
    snprintf(path, sizeof path, "%s/inputs.json", dir);
    assert_int_equal(recipe_batch_load(b, path), AG_OK);
}

/* Every parameter's reference gradient grads/<name> in e, each as long as its
 * tensor, and in *all_max the largest |value| of them all (the model-wide
 * scale). A missing one fails the test ("<what>: no grads/<name>") unless
 * missing_ok: then its entry is NULL. The caller frees the entries and the
 * array. */
static float **read_reference_grads(const ag_params *ps, hid_t e, const char *what, bool missing_ok,
                                    double *all_max) {
    float **g = calloc((size_t)ps->n, sizeof *g);
    *all_max = 0;
    for (int64_t i = 0; i < ps->n; ++i) {
        char name[300];
        int64_t n = 0;
        snprintf(name, sizeof name, "grads/%s", ps->p[i]->name);
        if (!(g[i] = h5_read_floats(e, name, &n))) {
            if (missing_ok) continue;
            fail_msg("%s: no %s", what, name);
        }
        assert_int_equal(n, ps->p[i]->numel);
        for (int64_t j = 0; j < n; ++j) *all_max = fmax(*all_max, fabs(g[i][j]));
    }
    return g;
}

int family_compare_grads(const ag_params *ps, hid_t e, const char *what, double *worst) {
    double global;
    float **want = read_reference_grads(ps, e, what, false, &global);
    int bad = 0;
    *worst = 0;
    for (int64_t i = 0; i < ps->n; ++i) {
        const ag_tensor *t = ps->p[i];
        double tmax = 0;
        for (int64_t j = 0; j < t->numel; ++j) {
            tmax = fmax(tmax, fabs(want[i][j]));
            *worst = fmax(*worst, fabs(t->grad[j] - want[i][j]));
        }
        if (tmax < 1e-6 * global) {
            for (int64_t j = 0; j < t->numel; ++j)
                if (fabs(t->grad[j]) > 1e-6 * global) {
                    printf("  %s[%lld]: %.3g where the true gradient is 0\n", t->name, (long long)j, t->grad[j]);
                    bad++;
                    break;
                }
        } else {
            bad += !check_close(t->name, t->grad, want[i], t->numel, 1e-4, 1e-4);
        }
        free(want[i]);
    }
    free(want);
    return bad;
}

int family_compare_grads_plain(const ag_params *ps, hid_t e, double *worst) {
    double all_max;
    float **g = read_reference_grads(ps, e, "expected.h5", false, &all_max);
    int bad = 0;
    *worst = 0;
    for (int64_t i = 0; i < ps->n; ++i) {
        const ag_tensor *t = ps->p[i];
        for (int64_t j = 0; j < t->numel; ++j) *worst = fmax(*worst, fabs(t->grad[j] - g[i][j]));
        bad += !check_close(t->name, t->grad, g[i], t->numel, 1e-4, 1e-4);
        free(g[i]);
    }
    free(g);
    return bad;
}

int family_compare_grads_stats(const ag_params *ps, hid_t e, const char *what, bool frozen_ok,
                               family_grad_stats *st) {
    double all_max;
    float **g = read_reference_grads(ps, e, what, frozen_ok, &all_max); /* NULL: none, when frozen_ok */
    int bad = 0;
    *st = (family_grad_stats){0};
    for (int64_t i = 0; i < ps->n; ++i) {
        const ag_tensor *t = ps->p[i];
        if (!g[i]) { /* needs no gradient in the reference: ours must stay zero */
            st->frozen++;
            for (int64_t j = 0; j < t->numel; ++j) bad += t->grad[j] != 0.0f;
            continue;
        }
        double gmax = 0, dmax = 0;
        for (int64_t j = 0; j < t->numel; ++j) {
            gmax = fmax(gmax, fabs(g[i][j]));
            dmax = fmax(dmax, fabs((double)t->grad[j] - g[i][j]));
        }
        st->worst = fmax(st->worst, dmax);
        if (gmax <= 1e-12 * all_max) { /* zero in exact arithmetic: noise, held to 1e-6 of the largest */
            st->zero++;
            if (dmax > 1e-6 * all_max) {
                printf("  %s: the true gradient is 0 but tapegrad's reaches %.2e\n", t->name, dmax);
                bad++;
            }
            continue;
        }
        st->worst_rel = fmax(st->worst_rel, dmax / gmax);
        bad += !check_close(t->name, t->grad, g[i], t->numel, 1e-4, 1e-4);
    }
    for (int64_t i = 0; i < ps->n; ++i) free(g[i]);
    free(g);
    return bad;
}

void family_check_loss_and_grads(const char *dir, const char *config, const char *arch, const char *weights,
                                 int64_t want_tokens) {
    family_check_loss_and_grads_of(dir, config, arch, weights, want_tokens, NULL);
}

void family_check_loss_and_grads_of(const char *dir, const char *config, const char *arch, const char *weights,
                                    int64_t want_tokens, family_loss_fn loss_fn) {
    char path[512];
    snprintf(path, sizeof path, "%s/expected.h5", dir);
    hid_t e = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(e >= 0);
    float *want_loss = h5_read_floats(e, "loss", NULL);
    recipe_model m;
    recipe_batch b;
    family_load(&m, &b, dir, config, arch, weights);
    ag_ctx *ctx = ag_ctx_create(0);
    int64_t tokens;
    ag_tensor *loss = loss_fn ? loss_fn(ctx, &m, &b, e, &tokens) : recipe_model_loss(ctx, &m, &b, &tokens);
    if (!loss) fail_msg("%s", ag_error());
    if (want_tokens >= 0) assert_int_equal(tokens, want_tokens);
    assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
    double worst;
    int bad = family_compare_grads(&m.ps, e, path, &worst);
    printf("%-22s %-21s %-35s loss %.7f (reference %.7f), %lld parameters in %lld tensors, largest gradient "
           "difference %.2e\n", strrchr(dir, '/') + 1, weights, m.arch, loss->data[0], want_loss[0],
           (long long)m.ps.total, (long long)m.ps.n, worst);
    assert_true(fabs(loss->data[0] - want_loss[0]) <= 1e-5 * fabs(want_loss[0]));
    assert_int_equal(bad, 0);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
    free(want_loss);
    H5Fclose(e);
}

/* ---------------------------------------------------------------- training */

void family_check_adamw_trajectory(recipe_model *m, const recipe_batch *b, hid_t e, family_noise_fn is_noise,
                                   const char *noise_what) {
    optim_config oc = optim_adamw_defaults();
    oc.weight_decay = 0.01;
    oc.decay_rule = OPTIM_DECAY_ALL;
    optim *opt;
    assert_int_equal(optim_create(&opt, &m->ps, &oc), AG_OK);
    int64_t n_losses;
    float *losses = h5_read_floats(e, "train/losses", &n_losses);
    assert_int_equal(n_losses, 20);
    ag_ctx *ctx = ag_ctx_create(0);
    for (int s = 0; s < 20; ++s) {
        ag_ctx_reset(ctx);
        ag_tensor *loss = recipe_model_loss(ctx, m, b, NULL);
        assert_non_null(loss);
        if (fabs(loss->data[0] - losses[s]) > 1e-4 * fabs(losses[s]))
            fail_msg("step %d: loss %.7f, Hugging Face %.7f", s, loss->data[0], losses[s]);
        assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
        assert_int_equal(optim_step(opt, 1e-3), AG_OK);
        ag_params_zero_grad(&m->ps);
    }
    int bad = 0;
    for (int64_t i = 0; i < m->ps.n; ++i) {
        const ag_tensor *t = m->ps.p[i];
        char name[300];
        int64_t n = 0;
        snprintf(name, sizeof name, "train/final_params/%s", t->name);
        float *p = h5_read_floats(e, name, &n);
        assert_non_null(p);
        bool *noise = calloc((size_t)(n ? n : 1), sizeof *noise);
        is_noise(e, t, n, noise);
        float *want = malloc((size_t)n * sizeof(float));
        int n_noise = 0;
        for (int64_t j = 0; j < n; ++j) {
            want[j] = p[j];
            if (noise[j]) {
                n_noise++;
                bad += fabsf(t->data[j] - p[j]) > 2 * 20 * 1e-3;
                want[j] = t->data[j]; /* judged above */
            }
        }
        if (n_noise) printf("  %s: %d of %lld elements %s\n", t->name, n_noise, (long long)n, noise_what);
        bad += !check_close(t->name, t->data, want, n, 1e-4, 1e-4);
        free(want);
        free(noise);
        free(p);
    }
    assert_int_equal(bad, 0);
    printf("20 AdamW steps: every loss (%.6f -> %.6f) and the final parameters match\n", losses[0], losses[19]);
    free(losses);
    ag_ctx_free(ctx);
    optim_free(opt);
}

/* ---------------------------------------------------------------- configs */

const char *temp_config(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/tapegrad-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

void family_declare_text(recipe_model *m, const char *config_text, const char *arch) {
    const char *path = temp_config(config_text);
    ag_status st = recipe_model_declare(m, path, arch);
    remove(path);
    if (st != AG_OK) fail_msg("%s", ag_error());
}

int64_t count_params(const char *config_text, const char *arch) {
    recipe_model m;
    family_declare_text(&m, config_text, arch);
    int64_t total = m.ps.total;
    recipe_model_free(&m);
    return total;
}

void family_build_text(recipe_model *m, const char *config_text, uint64_t seed) {
    family_declare_text(m, config_text, NULL);
    assert_int_equal(recipe_model_alloc(m, seed), AG_OK);
}

void expect_config_error(const char *text, const char *needle) {
    recipe_model m;
    const char *path = temp_config(text);
    ag_status st = recipe_model_declare(&m, path, NULL);
    remove(path);
    recipe_model_free(&m);
    assert_int_not_equal(st, AG_OK);
    if (!strstr(ag_error(), needle)) fail_msg("wanted '%s' in: %s", needle, ag_error());
}

void family_check_init(const ag_params *ps, const char *name, double std, double mean, double std_rtol) {
    const ag_tensor *t = ag_params_find(ps, name);
    if (!t) fail_msg("no parameter %s", name);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < t->numel; ++i) s += t->data[i], s2 += (double)t->data[i] * t->data[i];
    const double sample_mean = s / t->numel, sample_std = sqrt(s2 / t->numel - sample_mean * sample_mean);
    assert_true(fabs(sample_mean - mean) < 0.002 + 0.1 * std);
    assert_true(fabs(sample_std - std) < std_rtol * std + 1e-6);
}
