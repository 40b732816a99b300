/* test_bad_norm_softmax_loss.c: the norm, softmax and loss ops given bad input,
 * and the edges the PyTorch fixtures cannot express.
 *
 *   - every bad call returns NULL, sets a non-OK status and a message that
 *     names the op (and, for a bad target or label, the row);
 *   - a NaN or infinity reaching a loss fails with AG_ERR_NUMERIC;
 *   - softmax/log_softmax on a row that is all -inf give zeros and no gradient
 *     (PyTorch gives NaN), and log_softmax's -inf entries get dx = dy;
 *   - cross_entropy with every row ignored is 0 with zero gradients (PyTorch:
 *     NaN for the mean);
 *   - the OpenMP paths (taken only above AG_PAR_MIN elements, which no fixture
 *     reaches) agree with one thread.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ag.h"

static ag_ctx *ctx;

static int setup(void **state) {
    ctx = ag_ctx_create(0);
    return ctx ? 0 : -1;
}

static int teardown(void **state) {
    ag_ctx_free(ctx);
    return 0;
}

/* A fresh step: empty arena, no error. */
static void fresh(void) {
    ag_ctx_reset(ctx);
    ag_error_clear();
}

/* A call that must fail: NULL, the given status, and a message naming `op`
 * (and containing `also` when non-NULL). */
static void expect_fail_(ag_tensor *out, ag_status status, const char *op, const char *also, const char *call,
                         int line) {
    if (out || ag_error_status() != status || !strstr(ag_error(), op) || (also && !strstr(ag_error(), also))) {
        fprintf(stderr, "line %d: %s: got %s, status %d (want %d), message \"%s\" (want \"%s\"%s%s)\n", line, call,
                out ? "a tensor" : "NULL", (int)ag_error_status(), (int)status, ag_error(), op,
                also ? " and " : "", also ? also : "");
        fail();
    }
    ag_error_clear();
}
#define expect_fail(call, status, op, also) expect_fail_((call), (status), (op), (also), #call, __LINE__)
#define expect_arg(call, op) expect_fail(call, AG_ERR_ARG, op, NULL)

static ag_tensor *randn(int ndim, const int64_t *shape, bool rg, uint64_t seed) {
    ag_tensor *t = ag_new(ctx, ndim, shape, rg);
    for (int64_t i = 0; i < t->numel; ++i) /* a sum of uniforms: roughly N(0,1) */
        t->data[i] = ag_rng_uniform(seed, 2 * i) + ag_rng_uniform(seed, 2 * i + 1) +
                     ag_rng_uniform(seed, 2 * i + 2) - 1.5f;
    return t;
}
#define RANDN(rg, seed, ...) randn(AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__), (rg), (seed))

/* ---------------------------------------------------------------- bad calls */

static void test_norm_bad(void **state) {
    fresh();
    ag_tensor *x = RANDN(true, 1, 3, 4);
    expect_arg(ag_layernorm(ctx, x, RANDN(true, 2, 5), NULL, 1e-5f), "layernorm");
    expect_arg(ag_layernorm(ctx, x, NULL, RANDN(true, 3, 1, 4), 1e-5f), "layernorm");
    expect_arg(ag_layernorm(ctx, x, NULL, NULL, -1.0f), "layernorm");
    expect_arg(ag_layernorm(ctx, x, NULL, NULL, NAN), "layernorm");
    expect_arg(ag_layernorm(ctx, NULL, NULL, NULL, 1e-5f), "layernorm");
    expect_arg(ag_rmsnorm(ctx, x, RANDN(true, 4, 3), 1e-6f), "rmsnorm");
    expect_arg(ag_rmsnorm(ctx, x, NULL, INFINITY), "rmsnorm");
    expect_arg(ag_rmsnorm(ctx, NULL, NULL, 1e-6f), "rmsnorm");
    /* the error message names the shapes */
    expect_fail(ag_layernorm(ctx, x, RANDN(true, 2, 5), NULL, 1e-5f), AG_ERR_ARG, "layernorm", "[5]");
}

static void test_softmax_bad(void **state) {
    fresh();
    ag_tensor *x = RANDN(true, 1, 2, 3, 4);
    expect_arg(ag_softmax(ctx, x, RANDN(false, 2, 3)), "softmax");        /* last dims differ */
    expect_arg(ag_softmax(ctx, x, RANDN(false, 3, 2, 1, 4, 1)), "softmax"); /* more dims than x, and 4 vs 3 */
    expect_arg(ag_softmax(ctx, x, RANDN(false, 4, 3, 3, 4)), "softmax");  /* 3 vs 2 in the first dim */
    expect_arg(ag_log_softmax(ctx, x, RANDN(false, 5, 4, 4)), "log_softmax");
    expect_arg(ag_softmax(ctx, NULL, NULL), "softmax");
    expect_arg(ag_log_softmax(ctx, NULL, NULL), "log_softmax");
    expect_fail(ag_softmax(ctx, x, RANDN(false, 2, 3)), AG_ERR_ARG, "softmax", "[2,3,4]");
}

static void test_cross_entropy_bad(void **state) {
    fresh();
    ag_tensor *logits = RANDN(true, 1, 3, 5);
    int32_t t_ok[3] = {0, 4, AG_IGNORE_INDEX}, t_hi[3] = {0, 5, 1}, t_neg[3] = {-1, 0, 1};
    ag_ints ok = ag_ints_wrap(t_ok, 1, AG_SHAPE(3)), hi = ag_ints_wrap(t_hi, 1, AG_SHAPE(3)),
            neg = ag_ints_wrap(t_neg, 1, AG_SHAPE(3)), short_ = ag_ints_wrap(t_ok, 1, AG_SHAPE(2)),
            flat2d = ag_ints_wrap(t_ok, 2, AG_SHAPE(3, 1));
    expect_fail(ag_cross_entropy(ctx, logits, &hi, 0, AG_REDUCE_MEAN), AG_ERR_ARG, "cross_entropy", "row 1");
    expect_fail(ag_cross_entropy(ctx, logits, &hi, 0, AG_REDUCE_MEAN), AG_ERR_ARG, "cross_entropy", "[0, 5)");
    expect_fail(ag_cross_entropy(ctx, logits, &neg, 0, AG_REDUCE_SUM), AG_ERR_ARG, "cross_entropy", "row 0");
    expect_arg(ag_cross_entropy(ctx, logits, &short_, 0, AG_REDUCE_MEAN), "cross_entropy");
    expect_arg(ag_cross_entropy(ctx, logits, &flat2d, 0, AG_REDUCE_MEAN), "cross_entropy");
    expect_arg(ag_cross_entropy(ctx, RANDN(true, 2, 5), &ok, 0, AG_REDUCE_MEAN), "cross_entropy"); /* 1-D */
    expect_arg(ag_cross_entropy(ctx, logits, &ok, 1.0f, AG_REDUCE_MEAN), "cross_entropy");
    expect_arg(ag_cross_entropy(ctx, logits, &ok, -0.1f, AG_REDUCE_MEAN), "cross_entropy");
    expect_arg(ag_cross_entropy(ctx, logits, &ok, 0, (ag_reduction)7), "cross_entropy");
    expect_arg(ag_cross_entropy(ctx, logits, NULL, 0, AG_REDUCE_MEAN), "cross_entropy");
    /* a NaN logit in a counted row */
    logits->data[6] = NAN;
    expect_fail(ag_cross_entropy(ctx, logits, &ok, 0, AG_REDUCE_MEAN), AG_ERR_NUMERIC, "cross_entropy", NULL);
    /* ... and an infinite one */
    logits->data[6] = INFINITY;
    expect_fail(ag_cross_entropy(ctx, logits, &ok, 0.1f, AG_REDUCE_SUM), AG_ERR_NUMERIC, "cross_entropy", NULL);
}

static void test_other_losses_bad(void **state) {
    fresh();
    ag_tensor *a = RANDN(true, 1, 4, 3), *b = RANDN(true, 2, 3, 4), *c = RANDN(true, 3, 4, 3);
    expect_arg(ag_bce_logits(ctx, a, b), "bce_logits");
    expect_arg(ag_bce_logits(ctx, a, RANDN(false, 4, 12)), "bce_logits");
    expect_arg(ag_kl_div(ctx, a, b, 1.0f), "kl_div");
    expect_arg(ag_kl_div(ctx, a, c, 0.0f), "kl_div");
    expect_arg(ag_kl_div(ctx, a, c, -2.0f), "kl_div");
    expect_arg(ag_mse(ctx, a, b), "mse");
    expect_arg(ag_mse(ctx, NULL, b), "mse");

    int32_t y_ok[4] = {1, -1, 1, -1}, y_bad[4] = {1, -1, 0, 1};
    ag_ints yok = ag_ints_wrap(y_ok, 1, AG_SHAPE(4)), ybad = ag_ints_wrap(y_bad, 1, AG_SHAPE(4)),
            y3 = ag_ints_wrap(y_ok, 1, AG_SHAPE(3));
    expect_fail(ag_cosine_embedding(ctx, a, c, &ybad, 0), AG_ERR_ARG, "cosine_embedding", "row 2");
    expect_arg(ag_cosine_embedding(ctx, a, b, &yok, 0), "cosine_embedding");
    expect_arg(ag_cosine_embedding(ctx, a, c, &y3, 0), "cosine_embedding");
    expect_arg(ag_cosine_embedding(ctx, RANDN(true, 5, 12), RANDN(true, 6, 12), &yok, 0), "cosine_embedding");
    expect_arg(ag_cosine_embedding(ctx, a, c, &yok, NAN), "cosine_embedding");

    /* non-finite losses */
    c->data[5] = NAN;
    expect_fail(ag_bce_logits(ctx, a, c), AG_ERR_NUMERIC, "bce_logits", NULL);
    expect_fail(ag_mse(ctx, a, c), AG_ERR_NUMERIC, "mse", NULL);
    expect_fail(ag_kl_div(ctx, c, a, 2.0f), AG_ERR_NUMERIC, "kl_div", NULL);
    expect_fail(ag_cosine_embedding(ctx, a, c, &yok, 0), AG_ERR_NUMERIC, "cosine_embedding", NULL);
    c->data[5] = INFINITY;
    expect_fail(ag_mse(ctx, a, c), AG_ERR_NUMERIC, "mse", NULL);
}

/* ---------------------------------------------------------------- edges */

/* Row 0 of z = x + mask is all -inf, row 1 has one -inf entry. */
static void test_all_inf_row(void **state) {
    for (int log_out = 0; log_out < 2; ++log_out) {
        fresh();
        ag_tensor *x = RANDN(true, 7, 2, 4);
        ag_tensor *mask = ag_new(ctx, 2, AG_SHAPE(2, 4), true);
        for (int j = 0; j < 4; ++j) mask->data[j] = -INFINITY;
        mask->data[4 + 2] = -INFINITY;
        ag_tensor *y = log_out ? ag_log_softmax(ctx, x, mask) : ag_softmax(ctx, x, mask);
        assert_non_null(y);
        for (int j = 0; j < 4; ++j) assert_true(y->data[j] == 0.0f); /* zeros, not NaN */
        double s = 0;
        for (int j = 0; j < 4; ++j) s += log_out ? exp(y->data[4 + j]) : y->data[4 + j];
        assert_true(fabs(s - 1.0) < 1e-6);
        assert_true(log_out ? y->data[6] == -INFINITY : y->data[6] == 0.0f);

        float dy[8] = {0.5f, -1.0f, 2.0f, 0.25f, 1.0f, -0.5f, 0.75f, 0.3f};
        assert_int_equal(ag_backward(ctx, y, dy), AG_OK);
        for (int j = 0; j < 4; ++j) { /* no gradient for the dead row */
            assert_true(x->grad[j] == 0.0f);
            assert_true(mask->grad[j] == 0.0f);
        }
        for (int j = 4; j < 8; ++j) assert_true(isfinite(x->grad[j]) && x->grad[j] == mask->grad[j]);
        /* the -inf entry: p = 0, so softmax gives it 0 and log_softmax gives dy
         * (y_j = z_j - logsumexp z moves one for one with z_j), as PyTorch */
        assert_true(x->grad[6] == (log_out ? dy[6] : 0.0f));
    }
}

static void test_cross_entropy_all_ignored(void **state) {
    fresh();
    ag_tensor *logits = RANDN(true, 9, 2, 3, 4);
    int32_t t[6] = {AG_IGNORE_INDEX, AG_IGNORE_INDEX, AG_IGNORE_INDEX,
                    AG_IGNORE_INDEX, AG_IGNORE_INDEX, AG_IGNORE_INDEX};
    ag_ints targets = ag_ints_wrap(t, 2, AG_SHAPE(2, 3));
    for (int red = 0; red < 2; ++red) {
        fresh();
        logits = RANDN(true, 9, 2, 3, 4);
        ag_tensor *loss = ag_cross_entropy(ctx, logits, &targets, red ? 0.1f : 0.0f, (ag_reduction)red);
        assert_non_null(loss);
        assert_true(loss->data[0] == 0.0f); /* PyTorch: NaN for the mean */
        assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
        for (int64_t i = 0; i < logits->numel; ++i) assert_true(logits->grad[i] == 0.0f);
    }
}

/* ---------------------------------------------------------------- threads */

/* Runs op k on inputs big enough for the OpenMP paths, returns out and every
 * input gradient concatenated in a malloc'd buffer of *n floats. */
static float *run_big(int k, int64_t *n) {
    fresh();
    int32_t *lab = malloc(64 * sizeof *lab);
    for (int i = 0; i < 64; ++i) lab[i] = k == 2 ? (i % 7 == 0 ? AG_IGNORE_INDEX : (i * 37) % 1024) : (i % 3 ? 1 : -1);
    ag_ints ints = ag_ints_wrap(lab, 1, AG_SHAPE(64));
    ag_tensor *a = RANDN(true, 11, 64, 1024), *b = RANDN(true, 12, 64, 1024), *w = RANDN(true, 13, 1024);
    ag_tensor *bias = RANDN(true, 16, 1024);
    ag_tensor *x4 = RANDN(true, 14, 2, 4, 32, 64), *m4 = RANDN(true, 15, 1, 4, 32, 64);
    ag_tensor *in[3] = {0};
    ag_tensor *y = NULL;
    switch (k) {
    case 0: y = ag_layernorm(ctx, a, w, bias, 1e-5f); in[0] = a; in[1] = w; in[2] = bias; break;
    case 1: y = ag_softmax(ctx, x4, m4); in[0] = x4; in[1] = m4; break;
    case 2: y = ag_cross_entropy(ctx, a, &ints, 0.1f, AG_REDUCE_MEAN); in[0] = a; break;
    case 3: y = ag_kl_div(ctx, a, b, 2.0f); in[0] = a; in[1] = b; break;
    case 4: y = ag_cosine_embedding(ctx, a, b, &ints, 0.2f); in[0] = a; in[1] = b; break;
    case 5: y = ag_log_softmax(ctx, x4, m4); in[0] = x4; in[1] = m4; break;
    case 6: y = ag_rmsnorm(ctx, a, w, 1e-6f); in[0] = a; in[1] = w; break;
    case 7: y = ag_bce_logits(ctx, a, b); in[0] = a; in[1] = b; break;
    case 8: y = ag_mse(ctx, a, b); in[0] = a; in[1] = b; break;
    }
    assert_non_null(y);
    float *seed = malloc((size_t)y->numel * sizeof *seed);
    for (int64_t i = 0; i < y->numel; ++i) seed[i] = ag_rng_uniform(99, i) - 0.5f;
    assert_int_equal(ag_backward(ctx, y, seed), AG_OK);
    *n = y->numel;
    for (int i = 0; i < 3 && in[i]; ++i) *n += in[i]->numel;
    float *all = malloc((size_t)*n * sizeof *all), *p = all;
    memcpy(p, y->data, (size_t)y->numel * sizeof *p);
    p += y->numel;
    for (int i = 0; i < 3 && in[i]; ++i) {
        memcpy(p, in[i]->grad, (size_t)in[i]->numel * sizeof *p);
        p += in[i]->numel;
    }
    free(seed);
    free(lab);
    return all;
}

static void test_threads_agree(void **state) {
    for (int k = 0; k < 9; ++k) {
        int64_t n1, n2;
        ag_set_threads(1);
        float *one = run_big(k, &n1);
        ag_set_threads(2);
        float *two = run_big(k, &n2);
        assert_int_equal(n1, n2);
        double scale = 0, worst = 0;
        for (int64_t i = 0; i < n1; ++i) scale = fmax(scale, fabs(one[i]));
        for (int64_t i = 0; i < n1; ++i) worst = fmax(worst, fabs(one[i] - two[i]));
        if (!(worst <= 1e-6 * scale)) {
            fprintf(stderr, "op %d: 1 and 2 threads differ by %g (scale %g)\n", k, worst, scale);
            fail();
        }
        free(one);
        free(two);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norm_bad),
        cmocka_unit_test(test_softmax_bad),
        cmocka_unit_test(test_cross_entropy_bad),
        cmocka_unit_test(test_other_losses_bad),
        cmocka_unit_test(test_all_inf_row),
        cmocka_unit_test(test_cross_entropy_all_ignored),
        cmocka_unit_test(test_threads_agree),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
