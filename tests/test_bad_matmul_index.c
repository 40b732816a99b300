/* test_bad_matmul_index.c: bad calls of matmul, linear, embedding, index_select
 * and gather return NULL with an error that names the op, and record nothing.
 *
 * Also here: the one behaviour of these ops that the fixtures cannot check.
 * Embedding's padding row gets no gradient by convention, not because its
 * derivative is zero, so the fixture cases zero d(out) at padding positions to
 * keep the finite-difference check honest; test_embedding_padding_row below
 * checks the convention with a nonzero d(out). And the fixtures are too small
 * to reach the threaded loops (AG_PAR_MIN), so test_index_ops_threaded runs
 * the index ops at sizes that do, with many repeated indices, against a
 * plain serial scatter-add written here.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The call must fail: NULL, an error status, a message naming the op ("op:")
 * and containing `also` when it is not NULL, and no node on the tape. */
static void expect_fail(const ag_ctx *ctx, const ag_tensor *r, int64_t nodes_before, const char *op,
                        const char *also, const char *call, int line) {
    char tag[64];
    snprintf(tag, sizeof tag, "%s:", op);
    bool named = strstr(ag_error(), tag) && (!also || strstr(ag_error(), also));
    if (r || !named)
        fprintf(stderr, "line %d: %s -> %s, \"%s\"\n", line, call, r ? "a tensor" : "NULL", ag_error());
    assert_null(r);
    assert_int_not_equal(ag_error_status(), AG_OK);
    assert_true(named);
    assert_int_equal(ctx->n_nodes, nodes_before);
}
#define EXPECT_FAIL(ctx, call, op, also)                                   \
    do {                                                                   \
        ag_error_clear();                                                  \
        int64_t nodes_ = (ctx)->n_nodes;                                   \
        ag_tensor *r_ = (call);                                            \
        expect_fail((ctx), r_, nodes_, (op), (also), #call, __LINE__);     \
    } while (0)

static const char *const none = NULL;

static void test_bad_matmul(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *v = ag_new(ctx, 1, AG_SHAPE(5), true);
    ag_tensor *a23 = ag_new(ctx, 2, AG_SHAPE(2, 3), true);
    ag_tensor *b34 = ag_new(ctx, 2, AG_SHAPE(3, 4), true);
    ag_tensor *b44 = ag_new(ctx, 2, AG_SHAPE(4, 4), true);
    ag_tensor *a223 = ag_new(ctx, 3, AG_SHAPE(2, 2, 3), true);
    ag_tensor *b334 = ag_new(ctx, 3, AG_SHAPE(3, 3, 4), true);
    ag_tensor *b234 = ag_new(ctx, 3, AG_SHAPE(2, 3, 4), true);
    ag_tensor *a2223 = ag_new(ctx, 4, AG_SHAPE(2, 2, 2, 3), true);

    /* the good calls work, so the failures below are the checks' doing */
    assert_non_null(ag_matmul(ctx, a23, b34, false, false));
    assert_non_null(ag_matmul(ctx, a223, b234, false, false));
    assert_non_null(ag_matmul(ctx, a223, b34, false, false));

    EXPECT_FAIL(ctx, ag_matmul(ctx, v, b34, false, false), "matmul", "[5]");     /* A 1-D */
    EXPECT_FAIL(ctx, ag_matmul(ctx, a23, v, false, false), "matmul", "[5]");     /* B 1-D */
    EXPECT_FAIL(ctx, ag_matmul(ctx, a23, b44, false, false), "matmul", "[4,4]"); /* K 3 vs 4 */
    EXPECT_FAIL(ctx, ag_matmul(ctx, a23, b34, true, false), "matmul", "inner");  /* op(A) 3x2 */
    EXPECT_FAIL(ctx, ag_matmul(ctx, a23, b34, false, true), "matmul", "inner");  /* op(B) 4x3 */
    EXPECT_FAIL(ctx, ag_matmul(ctx, a223, b334, false, false), "matmul", "[3,3,4]"); /* batch 2 vs 3 */
    EXPECT_FAIL(ctx, ag_matmul(ctx, a2223, b234, false, false), "matmul", "[2,3,4]"); /* 4-D with 3-D */
    EXPECT_FAIL(ctx, ag_matmul(ctx, a23, a223, false, false), "matmul", none);   /* 2-D with 3-D */
    EXPECT_FAIL(ctx, ag_matmul(ctx, NULL, b34, false, false), "matmul", none);
    EXPECT_FAIL(ctx, ag_matmul(ctx, a23, NULL, false, false), "matmul", none);
    ag_ctx_free(ctx);
}

static void test_bad_linear(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 3, AG_SHAPE(2, 3, 5), true);
    ag_tensor *w_oi = ag_new(ctx, 2, AG_SHAPE(4, 5), true); /* [out,in] */
    ag_tensor *w_io = ag_new(ctx, 2, AG_SHAPE(5, 4), true); /* [in,out] */
    ag_tensor *w3 = ag_new(ctx, 3, AG_SHAPE(1, 4, 5), true);
    ag_tensor *b4 = ag_new(ctx, 1, AG_SHAPE(4), true);
    ag_tensor *b5 = ag_new(ctx, 1, AG_SHAPE(5), true);
    ag_tensor *b14 = ag_new(ctx, 2, AG_SHAPE(1, 4), true);

    assert_non_null(ag_linear(ctx, x, w_oi, b4, AG_LINEAR_OUT_IN));
    assert_non_null(ag_linear(ctx, x, w_io, b4, AG_LINEAR_IN_OUT));

    EXPECT_FAIL(ctx, ag_linear(ctx, x, w_oi, b4, AG_LINEAR_IN_OUT), "linear", "[4,5]"); /* wrong layout */
    EXPECT_FAIL(ctx, ag_linear(ctx, x, w_io, NULL, AG_LINEAR_OUT_IN), "linear", "[2,3,5]");
    EXPECT_FAIL(ctx, ag_linear(ctx, x, w3, NULL, AG_LINEAR_OUT_IN), "linear", "2-D");
    EXPECT_FAIL(ctx, ag_linear(ctx, x, w_oi, b5, AG_LINEAR_OUT_IN), "linear", "[5]");   /* bias [in] */
    EXPECT_FAIL(ctx, ag_linear(ctx, x, w_oi, b14, AG_LINEAR_OUT_IN), "linear", "[1,4]"); /* bias 2-D */
    EXPECT_FAIL(ctx, ag_linear(ctx, x, w_oi, b4, (ag_linear_layout)7), "linear", "layout");
    EXPECT_FAIL(ctx, ag_linear(ctx, NULL, w_oi, b4, AG_LINEAR_OUT_IN), "linear", none);
    EXPECT_FAIL(ctx, ag_linear(ctx, x, NULL, b4, AG_LINEAR_OUT_IN), "linear", none);
    ag_ctx_free(ctx);
}

static void test_bad_embedding(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *w = ag_new(ctx, 2, AG_SHAPE(9, 4), true);
    ag_tensor *w1 = ag_new(ctx, 1, AG_SHAPE(9), true);
    ag_ints *ids = ag_ints_from(ctx, (int32_t[]){1, 8, 0}, 1, AG_SHAPE(3));
    ag_ints *high = ag_ints_from(ctx, (int32_t[]){1, 9, 0}, 1, AG_SHAPE(3));
    ag_ints *neg = ag_ints_from(ctx, (int32_t[]){1, 2, -1, 3}, 2, AG_SHAPE(2, 2));
    ag_ints *ids4 = ag_ints_from(ctx, NULL, 4, AG_SHAPE(1, 1, 1, 2));

    assert_non_null(ag_embedding(ctx, w, ids, -1));
    assert_non_null(ag_embedding(ctx, w, ids, 8));

    EXPECT_FAIL(ctx, ag_embedding(ctx, w, high, -1), "embedding", "id 9 ");  /* id = V */
    EXPECT_FAIL(ctx, ag_embedding(ctx, w, high, -1), "embedding", "[0, 9)"); /* names V */
    EXPECT_FAIL(ctx, ag_embedding(ctx, w, neg, -1), "embedding", "id -1 ");
    EXPECT_FAIL(ctx, ag_embedding(ctx, w, ids, 9), "embedding", "padding_idx 9");
    EXPECT_FAIL(ctx, ag_embedding(ctx, w1, ids, -1), "embedding", "[9]");
    EXPECT_FAIL(ctx, ag_embedding(ctx, w, ids4, -1), "embedding", "[1,1,1,2]");
    EXPECT_FAIL(ctx, ag_embedding(ctx, NULL, ids, -1), "embedding", none);
    EXPECT_FAIL(ctx, ag_embedding(ctx, w, NULL, -1), "embedding", none);
    ag_ctx_free(ctx);
}

static void test_bad_index_select(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 2, AG_SHAPE(3, 5), true);
    ag_ints *idx = ag_ints_from(ctx, (int32_t[]){0, 2, 2}, 1, AG_SHAPE(3));
    ag_ints *idx2 = ag_ints_from(ctx, (int32_t[]){0, 1, 2, 0}, 2, AG_SHAPE(2, 2));
    ag_ints *high = ag_ints_from(ctx, (int32_t[]){0, 4}, 1, AG_SHAPE(2));
    ag_ints *neg = ag_ints_from(ctx, (int32_t[]){-1}, 1, AG_SHAPE(1));

    assert_non_null(ag_index_select(ctx, x, 0, idx));
    assert_non_null(ag_index_select(ctx, x, -1, high)); /* 4 < 5 along dim 1 */

    EXPECT_FAIL(ctx, ag_index_select(ctx, x, 2, idx), "index_select", "dim 2");
    EXPECT_FAIL(ctx, ag_index_select(ctx, x, -3, idx), "index_select", "dim -3");
    EXPECT_FAIL(ctx, ag_index_select(ctx, x, 0, idx2), "index_select", "[2,2]");
    EXPECT_FAIL(ctx, ag_index_select(ctx, x, 0, high), "index_select", "index 4 ");
    EXPECT_FAIL(ctx, ag_index_select(ctx, x, 1, neg), "index_select", "index -1 ");
    EXPECT_FAIL(ctx, ag_index_select(ctx, NULL, 0, idx), "index_select", none);
    EXPECT_FAIL(ctx, ag_index_select(ctx, x, 0, NULL), "index_select", none);
    ag_ctx_free(ctx);
}

static void test_bad_gather(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 3, AG_SHAPE(2, 3, 4), true);
    ag_ints *ok = ag_ints_from(ctx, NULL, 3, AG_SHAPE(2, 3, 6));
    ag_ints *flat = ag_ints_from(ctx, NULL, 2, AG_SHAPE(6, 1));
    ag_ints *lead = ag_ints_from(ctx, NULL, 3, AG_SHAPE(2, 2, 1));
    ag_ints *high = ag_ints_from(ctx, NULL, 3, AG_SHAPE(2, 3, 1));
    ag_ints *neg = ag_ints_from(ctx, NULL, 3, AG_SHAPE(2, 3, 1));
    high->data[5] = 4;
    neg->data[2] = -2;

    assert_non_null(ag_gather(ctx, x, ok));

    EXPECT_FAIL(ctx, ag_gather(ctx, x, flat), "gather", "[6,1]");
    EXPECT_FAIL(ctx, ag_gather(ctx, x, lead), "gather", "dim 1");
    EXPECT_FAIL(ctx, ag_gather(ctx, x, high), "gather", "index 4 ");
    EXPECT_FAIL(ctx, ag_gather(ctx, x, neg), "gather", "index -2 ");
    EXPECT_FAIL(ctx, ag_gather(ctx, NULL, ok), "gather", none);
    EXPECT_FAIL(ctx, ag_gather(ctx, x, NULL), "gather", none);
    ag_ctx_free(ctx);
}

/* With d(out) nonzero everywhere, the padding row's gradient stays zero while
 * the other rows add up every use. */
static void test_embedding_padding_row(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *w = ag_new(ctx, 2, AG_SHAPE(4, 3), true);
    ag_ints *ids = ag_ints_from(ctx, (int32_t[]){2, 0, 2, 2, 1}, 1, AG_SHAPE(5));
    ag_tensor *out = ag_embedding(ctx, w, ids, 2);
    assert_non_null(out);
    float dout[15];
    for (int i = 0; i < 15; ++i) dout[i] = (float)(i + 1);
    assert_int_equal(ag_backward(ctx, out, dout), AG_OK);
    float want[12] = {
        4, 5, 6,      /* row 0: position 1 */
        13, 14, 15,   /* row 1: position 4 */
        0, 0, 0,      /* row 2: padding, used three times */
        0, 0, 0,      /* row 3: never used */
    };
    assert_close("dW", w->grad, want, 12, 0, 0);
    ag_ctx_free(ctx);
}

static float value(uint64_t stream, int64_t i) { return 2.0f * ag_rng_uniform(stream, (uint64_t)i) - 1.0f; }

/* A leaf tensor of values from `stream`, and an integer tensor of indices in [0, range). */
static ag_tensor *leaf(ag_ctx *ctx, int ndim, const int64_t *shape, uint64_t stream) {
    ag_tensor *t = ag_new(ctx, ndim, shape, true);
    for (int64_t i = 0; i < t->numel; ++i) t->data[i] = value(stream, i);
    return t;
}
static ag_ints *indices(ag_ctx *ctx, int ndim, const int64_t *shape, int64_t range, uint64_t stream) {
    ag_ints *t = ag_ints_from(ctx, NULL, ndim, shape);
    for (int64_t i = 0; i < t->numel; ++i) t->data[i] = (int32_t)(ag_rng_u64(stream, (uint64_t)i) % range);
    return t;
}
/* Runs backward from `out` with d(out) = value(99, i) and returns that seed. */
static float *backward_seeded(ag_ctx *ctx, ag_tensor *out) {
    assert_non_null(out);
    float *seed = malloc((size_t)out->numel * sizeof(float));
    for (int64_t i = 0; i < out->numel; ++i) seed[i] = value(99, i);
    assert_int_equal(ag_backward(ctx, out, seed), AG_OK);
    return seed;
}

static void test_index_ops_threaded(void **state) {
    ag_set_threads(2);
    ag_ctx *ctx = ag_ctx_create(0);

    /* embedding: W [37,200], ids [100,10], every id used ~27 times, padding 5 */
    enum { V = 37, C = 200 };
    ag_tensor *w = leaf(ctx, 2, AG_SHAPE(V, C), 1);
    ag_ints *ids = indices(ctx, 2, AG_SHAPE(100, 10), V, 2);
    ag_tensor *e = ag_embedding(ctx, w, ids, 5);
    float *de = backward_seeded(ctx, e);
    float *want = calloc(V * C, sizeof(float));
    for (int64_t i = 0; i < ids->numel; ++i) {
        assert_memory_equal(e->data + i * C, w->data + ids->data[i] * C, C * sizeof(float));
        if (ids->data[i] != 5)
            for (int64_t c = 0; c < C; ++c) want[ids->data[i] * C + c] += de[i * C + c];
    }
    assert_close("embedding dW", w->grad, want, V * C, 1e-5, 1e-6);
    free(de);
    free(want);

    /* index_select along dim 1 of x [3,41,150] and along dim 0 of x [41,300]:
     * 300 and 200 picks of 41 */
    for (int dim = 1; dim >= 0; --dim) {
        ag_ctx_reset(ctx);
        int64_t outer = dim ? 3 : 1, D = 41, inner = dim ? 150 : 300, n = dim ? 300 : 200;
        ag_tensor *x = dim ? leaf(ctx, 3, AG_SHAPE(3, 41, 150), 3) : leaf(ctx, 2, AG_SHAPE(41, 300), 3);
        ag_ints *sel = indices(ctx, 1, &n, D, 4);
        ag_tensor *s = ag_index_select(ctx, x, dim, sel);
        float *ds = backward_seeded(ctx, s);
        want = calloc((size_t)x->numel, sizeof(float));
        for (int64_t o = 0; o < outer; ++o)
            for (int64_t j = 0; j < n; ++j)
                for (int64_t r = 0; r < inner; ++r) {
                    int64_t from = (o * D + sel->data[j]) * inner + r, to = (o * n + j) * inner + r;
                    assert_true(s->data[to] == x->data[from]);
                    want[from] += ds[to];
                }
        assert_close(dim ? "index_select dim 1 dx" : "index_select dim 0 dx", x->grad, want, x->numel, 1e-5, 1e-6);
        free(ds);
        free(want);
    }

    /* gather: x [400,41], 120 picks per row */
    ag_ctx_reset(ctx);
    enum { R = 400, D = 41, J = 120 };
    ag_tensor *g = leaf(ctx, 2, AG_SHAPE(R, D), 5);
    ag_ints *pick = indices(ctx, 2, AG_SHAPE(R, J), D, 6);
    ag_tensor *ga = ag_gather(ctx, g, pick);
    float *dg = backward_seeded(ctx, ga);
    want = calloc(R * D, sizeof(float));
    for (int64_t r = 0; r < R; ++r)
        for (int64_t j = 0; j < J; ++j) {
            assert_true(ga->data[r * J + j] == g->data[r * D + pick->data[r * J + j]]);
            want[r * D + pick->data[r * J + j]] += dg[r * J + j];
        }
    assert_close("gather dx", g->grad, want, R * D, 1e-5, 1e-6);
    free(dg);
    free(want);
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_matmul),        cmocka_unit_test(test_bad_linear),
        cmocka_unit_test(test_bad_embedding),     cmocka_unit_test(test_bad_index_select),
        cmocka_unit_test(test_bad_gather),        cmocka_unit_test(test_embedding_padding_row),
        cmocka_unit_test(test_index_ops_threaded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
