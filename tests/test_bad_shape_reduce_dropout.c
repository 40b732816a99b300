/* test_bad_shape_reduce_dropout.c: the shape, reduce and dropout ops refuse bad
 * calls with a message naming the op, and the behaviour the fixtures cannot
 * show: dropout's statistics, streams and eval mode; masked_fill with -inf;
 * reshape sharing data; the permute fast path against a plain loop; a sum of
 * a million values in double.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The call returned NULL, set a non-OK status, and named `op` in the message. */
#define assert_refused(call, op)                                                            \
    do {                                                                                    \
        ag_error_clear();                                                                   \
        void *r_ = (void *)(call);                                                          \
        if (r_ || ag_error_status() == AG_OK || !strstr(ag_error(), (op)))                  \
            fprintf(stderr, "%s:%d: %s: returned %p, status %d, message \"%s\"\n", __FILE__, \
                    __LINE__, #call, r_, (int)ag_error_status(), ag_error());               \
        assert_null(r_);                                                                    \
        assert_int_not_equal(ag_error_status(), AG_OK);                                     \
        assert_non_null(strstr(ag_error(), (op)));                                          \
    } while (0)

static ag_tensor *randt(ag_ctx *ctx, int ndim, const int64_t *shape, bool rg, unsigned seed) {
    ag_tensor *t = ag_new(ctx, ndim, shape, rg);
    srand(seed);
    for (int64_t i = 0; i < t->numel; ++i) t->data[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    return t;
}

/* ---------------------------------------------------------------- bad calls */

static void test_bad_reshape(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 3, AG_SHAPE(2, 3, 4), true);
    assert_refused(ag_reshape(ctx, x, 2, AG_SHAPE(5, 5)), "reshape");
    assert_non_null(strstr(ag_error(), "[2,3,4]")); /* names both shapes */
    assert_non_null(strstr(ag_error(), "[5,5]"));
    assert_refused(ag_reshape(ctx, x, 2, AG_SHAPE(-1, -1)), "reshape");
    assert_refused(ag_reshape(ctx, x, 2, AG_SHAPE(-1, 5)), "reshape");
    assert_refused(ag_reshape(ctx, x, 2, AG_SHAPE(-2, -12)), "reshape");
    assert_refused(ag_reshape(ctx, x, 0, AG_SHAPE(24)), "reshape");
    assert_refused(ag_reshape(ctx, x, 5, AG_SHAPE(1, 2, 3, 4, 1)), "reshape");
    ag_tensor *e = ag_new(ctx, 2, AG_SHAPE(0, 3), false);
    assert_refused(ag_reshape(ctx, e, 2, AG_SHAPE(0, -1)), "reshape"); /* -1 is ambiguous */
    ag_ctx_free(ctx);
}

static void test_bad_permute(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 3, AG_SHAPE(2, 3, 4), true);
    assert_refused(ag_permute(ctx, x, (const int[]){0, 0, 1}), "permute");
    assert_refused(ag_permute(ctx, x, (const int[]){0, 1, 3}), "permute");
    assert_refused(ag_permute(ctx, x, (const int[]){0, -4, 1}), "permute");
    assert_refused(ag_permute(ctx, x, (const int[]){2, -1, 0}), "permute"); /* -1 is 2 again */
    assert_refused(ag_permute(ctx, x, NULL), "permute");
    assert_refused(ag_transpose(ctx, x, 0, 3), "transpose");
    assert_refused(ag_transpose(ctx, x, -4, 1), "transpose");
    ag_ctx_free(ctx);
}

static void test_bad_concat(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *a = ag_new(ctx, 2, AG_SHAPE(2, 3), true);
    ag_tensor *b = ag_new(ctx, 2, AG_SHAPE(4, 3), true);
    ag_tensor *c = ag_new(ctx, 3, AG_SHAPE(2, 3, 1), true);
    ag_tensor *nine[9] = {a, a, a, a, a, a, a, a, a};
    assert_refused(ag_concat(ctx, (ag_tensor *[]){a, b}, 2, 1), "concat"); /* dim 0 differs */
    assert_non_null(strstr(ag_error(), "input 1"));
    assert_non_null(strstr(ag_error(), "[4,3]"));
    assert_refused(ag_concat(ctx, (ag_tensor *[]){a, c}, 2, 0), "concat"); /* ndim differs */
    assert_refused(ag_concat(ctx, (ag_tensor *[]){a, b}, 2, 2), "concat");
    assert_refused(ag_concat(ctx, (ag_tensor *[]){a, b}, 2, -3), "concat");
    assert_refused(ag_concat(ctx, nine, 0, 0), "concat");
    assert_refused(ag_concat(ctx, nine, 9, 0), "concat");
    assert_refused(ag_concat(ctx, NULL, 1, 0), "concat");
    assert_non_null(ag_concat(ctx, nine, 8, 0)); /* eight is the most, and fine */
    ag_ctx_free(ctx);
}

static void test_bad_slice_split(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 2, AG_SHAPE(4, 6), true);
    assert_refused(ag_slice(ctx, x, 1, 4, 3), "slice");
    assert_refused(ag_slice(ctx, x, 1, 7, 0), "slice");
    assert_refused(ag_slice(ctx, x, 1, 0, -1), "slice");
    assert_refused(ag_slice(ctx, x, 1, -7, 1), "slice");
    assert_refused(ag_slice(ctx, x, 0, 2, INT64_MAX), "slice"); /* no overflow in start + len */
    assert_refused(ag_slice(ctx, x, 2, 0, 1), "slice");
    assert_refused(ag_slice(ctx, x, -3, 0, 1), "slice");
    assert_non_null(ag_slice(ctx, x, 1, 6, 0)); /* an empty slice at the end is fine, as in torch */

    ag_tensor *outs[8];
    ag_error_clear();
    assert_int_not_equal(ag_split(ctx, x, 1, 4, outs), AG_OK); /* 6 into 4 */
    assert_non_null(strstr(ag_error(), "split"));
    assert_null(outs[0]);
    ag_error_clear();
    assert_int_not_equal(ag_split(ctx, x, 1, 0, outs), AG_OK);
    assert_non_null(strstr(ag_error(), "split"));
    ag_error_clear();
    assert_int_not_equal(ag_split(ctx, x, 2, 2, outs), AG_OK);
    assert_non_null(strstr(ag_error(), "split"));
    ag_error_clear();
    assert_int_not_equal(ag_split(ctx, NULL, 0, 2, outs), AG_OK);
    assert_int_equal(ag_split(ctx, x, -1, 3, outs), AG_OK);
    assert_int_equal(outs[2]->shape[1], 2);
    ag_ctx_free(ctx);
}

static void test_bad_masked_fill(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 3, AG_SHAPE(2, 3, 4), true);
    assert_refused(ag_masked_fill(ctx, x, ag_new(ctx, 1, AG_SHAPE(3), false), 0.0f), "masked_fill");
    assert_non_null(strstr(ag_error(), "[2,3,4]"));
    assert_refused(ag_masked_fill(ctx, x, ag_new(ctx, 2, AG_SHAPE(2, 4), false), 0.0f), "masked_fill");
    assert_refused(ag_masked_fill(ctx, x, ag_new(ctx, 4, AG_SHAPE(1, 2, 3, 4), false), 0.0f), "masked_fill");
    ag_ctx_free(ctx);
}

static void test_bad_reduce(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 3, AG_SHAPE(2, 3, 4), true);
    assert_refused(ag_sum(ctx, x, 3, false), "sum");
    assert_refused(ag_sum(ctx, x, -4, true), "sum");
    assert_refused(ag_mean(ctx, x, 3, false), "mean");
    assert_refused(ag_mean(ctx, x, AG_ALL + 1, false), "mean");
    ag_ctx_free(ctx);
}

static void test_bad_dropout(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_ctx_train(ctx, true);
    ag_tensor *x = ag_new(ctx, 2, AG_SHAPE(2, 3), true);
    assert_refused(ag_dropout(ctx, x, 1.0f), "dropout");
    assert_non_null(strstr(ag_error(), "p = 1"));
    assert_refused(ag_dropout(ctx, x, -0.1f), "dropout");
    assert_refused(ag_dropout(ctx, x, NAN), "dropout");
    ag_ctx_train(ctx, false); /* a bad p is refused in eval mode too */
    assert_refused(ag_dropout(ctx, x, 1.5f), "dropout");
    ag_ctx_free(ctx);
}

/* A NULL input (an earlier op failed) gives NULL and keeps the first message. */
static void test_null_inputs_keep_the_first_error(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 2, AG_SHAPE(2, 3), true);
    ag_error_clear();
    ag_tensor *bad = ag_reshape(ctx, x, 1, AG_SHAPE(7));
    assert_null(bad);
    char first[256];
    snprintf(first, sizeof first, "%s", ag_error());
    assert_null(ag_sum(ctx, ag_dropout(ctx, ag_masked_fill(ctx, ag_slice(ctx, ag_transpose(ctx, bad, 0, 1), 0, 0, 1),
                                                           x, 0.0f), 0.1f), AG_ALL, false));
    assert_null(ag_concat(ctx, (ag_tensor *[]){x, bad}, 2, 0));
    assert_null(ag_mean(ctx, bad, 0, false));
    assert_string_equal(ag_error(), first);
    ag_ctx_free(ctx);
}

/* ---------------------------------------------------------------- dropout's randomness */

static void test_dropout_large_keeps_90_percent(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_ctx_train(ctx, true);
    ag_ctx_seed(ctx, 2024);
    const int64_t N = 1000000;
    ag_tensor *x = ag_new(ctx, 1, AG_SHAPE(N), true);
    for (int64_t i = 0; i < N; ++i) x->data[i] = 1.0f;
    ag_tensor *y = ag_dropout(ctx, x, 0.1f);
    assert_non_null(y);
    int64_t kept = 0;
    const float scale = 1.0f / 0.9f;
    for (int64_t i = 0; i < N; ++i) {
        if (y->data[i] != 0.0f) {
            kept++;
            assert_true(y->data[i] == scale); /* kept values scaled by 1/(1-p) */
        }
    }
    double frac = (double)kept / N;
    printf("dropout p=0.1 over 1e6: kept %.4f\n", frac);
    assert_true(fabs(frac - 0.9) < 0.002);
    assert_int_equal(ctx->rng_counter, N);
    /* backward sends dy through the same mask with the same scale */
    float *seed = malloc(N * sizeof(float));
    for (int64_t i = 0; i < N; ++i) seed[i] = 1.0f;
    assert_int_equal(ag_backward(ctx, y, seed), AG_OK);
    for (int64_t i = 0; i < N; ++i) assert_true(x->grad[i] == y->data[i]);
    free(seed);
    ag_ctx_free(ctx);
}

static void test_dropout_streams(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_ctx_train(ctx, true);
    const int64_t N = 4096;
    ag_tensor *x = ag_new(ctx, 2, AG_SHAPE(64, 64), false);
    for (int64_t i = 0; i < N; ++i) x->data[i] = 1.0f;

    ag_ctx_seed(ctx, 7);
    ag_tensor *a = ag_dropout(ctx, x, 0.5f);
    ag_tensor *b = ag_dropout(ctx, x, 0.5f);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(ctx->rng_counter, 2 * N);
    int64_t differ = 0;
    for (int64_t i = 0; i < N; ++i) differ += (a->data[i] != 0) != (b->data[i] != 0);
    assert_true(differ > N / 4); /* two calls in a row draw different masks (half differ on average) */

    ag_ctx_seed(ctx, 7); /* re-seeding reproduces the first mask exactly */
    ag_tensor *c = ag_dropout(ctx, x, 0.5f);
    assert_memory_equal(a->data, c->data, N * sizeof(float));
    ag_ctx_seed(ctx, 8); /* another seed, another mask */
    ag_tensor *d = ag_dropout(ctx, x, 0.5f);
    assert_memory_not_equal(a->data, d->data, N * sizeof(float));
    /* element i of a call is kept iff uniform(seed, counter + i) >= p */
    for (int64_t i = 0; i < N; ++i) assert_true((d->data[i] != 0) == (ag_rng_uniform(8, (uint64_t)i) >= 0.5f));
    ag_ctx_free(ctx);
}

static void test_dropout_eval_and_p0_are_identity(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 2, AG_SHAPE(3, 4), true);
    ag_ctx_train(ctx, false);
    int64_t nodes = ctx->n_nodes;
    assert_ptr_equal(ag_dropout(ctx, x, 0.5f), x);
    assert_int_equal(ctx->n_nodes, nodes);
    assert_int_equal(ctx->rng_counter, 0);
    ag_ctx_train(ctx, true);
    assert_ptr_equal(ag_dropout(ctx, x, 0.0f), x);
    assert_int_equal(ctx->n_nodes, nodes);
    assert_int_equal(ctx->rng_counter, 0);
    assert_ptr_not_equal(ag_dropout(ctx, x, 0.5f), x);
    assert_int_equal(ctx->n_nodes, nodes + 1);
    ag_ctx_free(ctx);
}

/* ---------------------------------------------------------------- other behaviour */

static void test_masked_fill_minus_infinity(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = randt(ctx, 2, AG_SHAPE(3, 3), true, 1);
    ag_tensor *causal = ag_new(ctx, 2, AG_SHAPE(3, 3), false);
    for (int i = 0; i < 3; ++i)
        for (int j = i + 1; j < 3; ++j) causal->data[i * 3 + j] = 1.0f;
    ag_tensor *y = ag_masked_fill(ctx, x, causal, -INFINITY);
    assert_non_null(y);
    for (int i = 0; i < 9; ++i) {
        if (causal->data[i] != 0) assert_true(isinf(y->data[i]) && y->data[i] < 0);
        else assert_true(y->data[i] == x->data[i]);
    }
    float seed[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    assert_int_equal(ag_backward(ctx, y, seed), AG_OK);
    for (int i = 0; i < 9; ++i) assert_true(x->grad[i] == (causal->data[i] != 0 ? 0.0f : seed[i])); /* no NaN */
    ag_ctx_free(ctx);
}

static void test_reshape_shares_data(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = randt(ctx, 3, AG_SHAPE(2, 3, 40), true, 2);
    size_t used = ag_ctx_arena_used(ctx);
    ag_tensor *y = ag_reshape(ctx, x, 2, AG_SHAPE(-1, 40));
    assert_non_null(y);
    assert_ptr_equal(y->data, x->data);
    assert_true(ag_ctx_arena_used(ctx) - used <= 128); /* a header, not 240 floats */
    assert_int_equal(y->shape[0], 6);
    /* y used twice downstream: both gradients add up in y's own buffer, then
     * reach x through reshape's backward. loss = sum(y) + sum(y). */
    ag_tensor *s1 = ag_sum(ctx, y, AG_ALL, false), *s2 = ag_sum(ctx, y, AG_ALL, false);
    ag_tensor *loss = ag_sum(ctx, ag_concat(ctx, (ag_tensor *[]){s1, s2}, 2, 0), AG_ALL, false);
    assert_non_null(loss);
    assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
    assert_ptr_not_equal(y->grad, x->grad);
    for (int i = 0; i < 240; ++i) assert_float_equal(x->grad[i], 2.0f, 0);
    ag_ctx_free(ctx);
}

/* The permute kernel against the definition out[i] = x[j], j[perm[d]] = i[d],
 * on a tensor big enough to run in parallel, for every permutation of 4 dims. */
static void test_permute_against_plain_loop(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    const int64_t shape[4] = {3, 37, 5, 64}; /* 35520 values: above AG_PAR_MIN */
    ag_tensor *x = randt(ctx, 4, shape, true, 3);
    const int64_t xs[4] = {37 * 5 * 64, 5 * 64, 64, 1}; /* x's row-major strides */
    int perm[4], checked = 0;
    for (perm[0] = 0; perm[0] < 4; ++perm[0])
        for (perm[1] = 0; perm[1] < 4; ++perm[1])
            for (perm[2] = 0; perm[2] < 4; ++perm[2]) {
                perm[3] = 6 - perm[0] - perm[1] - perm[2];
                if (perm[0] == perm[1] || perm[0] == perm[2] || perm[1] == perm[2]) continue;
                ag_tensor *y = ag_permute(ctx, x, perm);
                assert_non_null(y);
                int64_t i = 0;
                for (int64_t a = 0; a < y->shape[0]; ++a)
                    for (int64_t b = 0; b < y->shape[1]; ++b)
                        for (int64_t c = 0; c < y->shape[2]; ++c)
                            for (int64_t d = 0; d < y->shape[3]; ++d, ++i) {
                                int64_t j = a * xs[perm[0]] + b * xs[perm[1]] + c * xs[perm[2]] + d * xs[perm[3]];
                                if (y->data[i] != x->data[j]) fail_msg("perm %d%d%d%d at %lld", perm[0], perm[1], perm[2], perm[3], (long long)i);
                            }
                checked++;
            }
    assert_int_equal(checked, 24);
    ag_ctx_free(ctx);
}

/* A million values of 0.1: a float32 running sum drifts by percents; ours must not. */
static void test_sum_all_in_double(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    const int64_t N = 1000000;
    ag_tensor *x = ag_new(ctx, 2, AG_SHAPE(1000, 1000), false);
    for (int64_t i = 0; i < N; ++i) x->data[i] = 0.1f;
    ag_tensor *s = ag_sum(ctx, x, AG_ALL, false);
    ag_tensor *m = ag_mean(ctx, x, AG_ALL, true);
    assert_non_null(s);
    assert_int_equal(s->ndim, 1);
    assert_int_equal(s->shape[0], 1);
    assert_float_equal(s->data[0], N * (double)0.1f, 1e-2);
    assert_float_equal(m->data[0], 0.1f, 1e-8);
    ag_tensor *rows = ag_sum(ctx, x, 1, false);
    assert_int_equal(rows->ndim, 1);
    assert_float_equal(rows->data[999], 1000 * (double)0.1f, 1e-4);
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_reshape),
        cmocka_unit_test(test_bad_permute),
        cmocka_unit_test(test_bad_concat),
        cmocka_unit_test(test_bad_slice_split),
        cmocka_unit_test(test_bad_masked_fill),
        cmocka_unit_test(test_bad_reduce),
        cmocka_unit_test(test_bad_dropout),
        cmocka_unit_test(test_null_inputs_keep_the_first_error),
        cmocka_unit_test(test_dropout_large_keeps_90_percent),
        cmocka_unit_test(test_dropout_streams),
        cmocka_unit_test(test_dropout_eval_and_p0_are_identity),
        cmocka_unit_test(test_masked_fill_minus_infinity),
        cmocka_unit_test(test_reshape_shares_data),
        cmocka_unit_test(test_permute_against_plain_loop),
        cmocka_unit_test(test_sum_all_in_double),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
