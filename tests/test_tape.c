/* test_tape.c: the mechanics of the tape, the arena and the parameter registry,
 * independent of any one op's formula. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The worked example at the top of ag.h: f = a x^2 + b at x=3, a=2, b=1. */
static void test_worked_example(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_scalar(ctx, 3.0f, true), *a = ag_scalar(ctx, 2.0f, true), *b = ag_scalar(ctx, 1.0f, true);
    ag_tensor *f = ag_add(ctx, ag_mul(ctx, a, ag_mul(ctx, x, x)), b);
    assert_non_null(f);
    assert_int_equal(ctx->n_nodes, 3);
    assert_int_equal(ag_backward(ctx, f, NULL), AG_OK);
    assert_float_equal(f->data[0], 19.0f, 0);
    assert_float_equal(x->grad[0], 12.0f, 0); /* 2 a x: both uses of x add up */
    assert_float_equal(a->grad[0], 9.0f, 0);
    assert_float_equal(b->grad[0], 1.0f, 0);
    ag_ctx_free(ctx);
}

/* A tensor used twice, through different paths, gets both contributions. */
static void test_reused_tensor_accumulates(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    float xv[3] = {0.5f, -1.0f, 2.0f};
    ag_tensor *x = ag_from(ctx, xv, 1, AG_SHAPE(3), true);
    /* y = sum(tanh(x) + 3x) -> dy/dx = 1 - tanh^2 x + 3 */
    ag_tensor *y = ag_sum(ctx, ag_add(ctx, ag_tanh(ctx, x), ag_scale(ctx, x, 3.0f)), AG_ALL, false);
    assert_non_null(y);
    assert_int_equal(ag_backward(ctx, y, NULL), AG_OK);
    for (int i = 0; i < 3; ++i) {
        float t = tanhf(xv[i]);
        assert_float_equal(x->grad[i], 1 - t * t + 3, 1e-6);
    }
    ag_ctx_free(ctx);
}

/* A bias added to every row gets the sum of the rows' gradients. */
static void test_broadcast_sums_back(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    /* y = (x + b) * col, x [4,3], b [3] (a bias), col [4,1] (a column) */
    ag_tensor *x = ag_new(ctx, 2, AG_SHAPE(4, 3), true);
    ag_tensor *b = ag_new(ctx, 1, AG_SHAPE(3), true);
    ag_tensor *col = ag_new(ctx, 2, AG_SHAPE(4, 1), true);
    float seed[12];
    for (int i = 0; i < 12; ++i) { x->data[i] = (float)i; seed[i] = (float)(i + 1); }
    for (int r = 0; r < 4; ++r) col->data[r] = (float)(r + 1);
    ag_tensor *y = ag_mul(ctx, ag_add(ctx, x, b), col);
    assert_int_equal(ag_backward(ctx, y, seed), AG_OK);
    for (int c = 0; c < 3; ++c) {
        float want = 0;
        for (int r = 0; r < 4; ++r) want += seed[r * 3 + c] * (float)(r + 1);
        assert_float_equal(b->grad[c], want, 1e-5); /* summed over the 4 rows */
    }
    for (int r = 0; r < 4; ++r) {
        float want = 0;
        for (int c = 0; c < 3; ++c) want += seed[r * 3 + c] * x->data[r * 3 + c];
        assert_float_equal(col->grad[r], want, 1e-4); /* summed over the 3 columns */
    }
    ag_ctx_free(ctx);
}

/* An input that does not reach the loss ends with a zero gradient, and so does
 * a parameter that the forward pass never touched. */
static void test_unused_input_gets_zero(void **state) {
    ag_params ps;
    ag_params_init(&ps);
    ag_tensor *w = ag_params_add(&ps, "used.weight", 1, AG_SHAPE(2));
    ag_tensor *u = ag_params_add(&ps, "unused.weight", 1, AG_SHAPE(2));
    assert_non_null(w);
    assert_non_null(u);
    assert_int_equal(ag_params_finalize(&ps), AG_OK);
    w->data[0] = 1; w->data[1] = 2;
    u->grad[0] = 7; /* stale: zero_grad must clear it */
    ag_params_zero_grad(&ps);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *z = ag_new(ctx, 1, AG_SHAPE(2), true); /* a leaf that is never used */
    ag_tensor *side = ag_tanh(ctx, w);                /* a branch that is computed but not in the loss */
    ag_tensor *loss = ag_sum(ctx, ag_mul(ctx, w, w), AG_ALL, false);
    assert_non_null(side);
    assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
    assert_float_equal(w->grad[0], 2.0f, 0);
    assert_float_equal(w->grad[1], 4.0f, 0);
    assert_float_equal(u->grad[0], 0.0f, 0);
    assert_float_equal(u->grad[1], 0.0f, 0);
    assert_float_equal(z->grad[0], 0.0f, 0);
    assert_null(side->grad); /* nothing flowed into the side branch */
    ag_ctx_free(ctx);
    ag_params_free(&ps);
}

/* Inside a no-grad scope nothing is recorded and outputs need no gradient. */
static void test_no_grad_records_nothing(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 1, AG_SHAPE(5), true);
    ag_no_grad_begin(ctx);
    ag_no_grad_begin(ctx); /* scopes nest */
    ag_tensor *y = ag_tanh(ctx, ag_mul(ctx, x, x));
    ag_no_grad_end(ctx);
    ag_tensor *z = ag_add(ctx, y, x);
    ag_no_grad_end(ctx);
    assert_non_null(z);
    assert_int_equal(ctx->n_nodes, 0);
    assert_false(y->requires_grad);
    assert_false(z->requires_grad);
    assert_int_not_equal(ag_backward(ctx, ag_sum(ctx, z, AG_ALL, false), NULL), AG_OK);
    /* after the scope, recording resumes */
    ag_tensor *w = ag_mul(ctx, x, x);
    assert_true(w->requires_grad);
    assert_int_equal(ctx->n_nodes, 1);
    ag_ctx_free(ctx);
}

/* One training step of a tiny model on fixed inputs: forward, backward, SGD. */
static float tiny_step(ag_ctx *ctx, ag_params *ps) {
    ag_tensor *w = ag_params_find(ps, "w"), *b = ag_params_find(ps, "b");
    ag_tensor *x = ag_new(ctx, 2, AG_SHAPE(8, 4), false);
    for (int i = 0; i < 32; ++i) x->data[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
    ag_tensor *h = ag_tanh(ctx, ag_add(ctx, ag_mul(ctx, x, w), b));
    ag_tensor *loss = ag_mean(ctx, ag_mul(ctx, h, h), AG_ALL, false);
    if (!loss || ag_backward(ctx, loss, NULL) != AG_OK) return NAN;
    for (int64_t i = 0; i < ps->total; ++i) ps->values[i] -= 0.1f * ps->grads[i];
    ag_params_zero_grad(ps);
    float l = loss->data[0];
    ag_ctx_reset(ctx);
    return l;
}

/* After the first step the arena holds the whole step: no more allocations. */
static void test_arena_reused_without_allocation(void **state) {
    ag_params ps;
    ag_params_init(&ps);
    ag_params_add(&ps, "w", 1, AG_SHAPE(4));
    ag_params_add(&ps, "b", 1, AG_SHAPE(4));
    assert_int_equal(ag_params_finalize(&ps), AG_OK);
    for (int i = 0; i < 4; ++i) ps.values[i] = 1.0f;
    ag_ctx *ctx = ag_ctx_create(0);
    float first = tiny_step(ctx, &ps);
    int64_t allocs = ag_alloc_count();
    size_t cap = ag_ctx_arena_capacity(ctx);
    float last = first;
    for (int s = 0; s < 10; ++s) last = tiny_step(ctx, &ps);
    assert_int_equal(ag_alloc_count(), allocs);
    assert_int_equal(ag_ctx_arena_capacity(ctx), cap);
    assert_true(last < first); /* and it trained */
    ag_ctx_free(ctx);
    ag_params_free(&ps);
}

/* A step that outgrows a growable arena's first block still works, and the
 * next reset merges the chunks so the step after allocates nothing. */
static void test_arena_grows_once(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    for (int s = 0; s < 3; ++s) {
        int64_t before = ag_alloc_count();
        for (int k = 0; k < 6; ++k) assert_non_null(ag_new(ctx, 1, AG_SHAPE(200000), false)); /* 4.8 MB > 1 MB */
        if (s > 0) assert_int_equal(ag_alloc_count(), before);
        ag_ctx_reset(ctx);
    }
    ag_ctx_free(ctx);
}

/* A fixed arena that is too small fails with a message saying what it needed. */
static void test_arena_too_small_says_how_much(void **state) {
    ag_ctx *ctx = ag_ctx_create(4096);
    ag_error_clear();
    ag_tensor *t = ag_new(ctx, 2, AG_SHAPE(100, 100), false);
    assert_null(t);
    assert_int_equal(ag_error_status(), AG_ERR_MEMORY);
    assert_non_null(strstr(ag_error(), "needs at least"));
    /* ops given the NULL keep the first message */
    assert_null(ag_tanh(ctx, t));
    assert_non_null(strstr(ag_error(), "needs at least"));
    ag_ctx_free(ctx);
}

static void test_backward_errors(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 1, AG_SHAPE(3), true);
    ag_tensor *y = ag_tanh(ctx, x);
    ag_error_clear();
    assert_int_equal(ag_backward(ctx, y, NULL), AG_ERR_ARG); /* non-scalar without a seed */
    assert_non_null(strstr(ag_error(), "seed"));
    float seed[3] = {1, 1, 1};
    assert_int_equal(ag_backward(ctx, y, seed), AG_OK);
    assert_int_equal(ag_backward(ctx, y, seed), AG_ERR_STATE); /* twice on one tape */
    ag_tensor *c = ag_new(ctx, 1, AG_SHAPE(1), false);
    assert_int_not_equal(ag_backward(ctx, c, NULL), AG_OK); /* nothing to differentiate */
    assert_int_not_equal(ag_backward(ctx, NULL, NULL), AG_OK);
    /* mismatched shapes name the op and both shapes */
    ag_error_clear();
    assert_null(ag_add(ctx, ag_new(ctx, 2, AG_SHAPE(2, 3), false), ag_new(ctx, 1, AG_SHAPE(4), false)));
    assert_non_null(strstr(ag_error(), "add"));
    assert_non_null(strstr(ag_error(), "[2,3]"));
    assert_non_null(strstr(ag_error(), "[4]"));
    /* a bad shape */
    assert_null(ag_new(ctx, 5, AG_SHAPE(1, 1, 1, 1, 1), false));
    assert_null(ag_new(ctx, 1, AG_SHAPE(-2), false));
    ag_ctx_free(ctx);
}

static void test_params_registry(void **state) {
    ag_params ps;
    ag_params_init(&ps);
    assert_non_null(ag_params_add(&ps, "bert.embeddings.word_embeddings.weight", 2, AG_SHAPE(10, 4)));
    assert_non_null(ag_params_add(&ps, "bert.pooler.dense.bias", 1, AG_SHAPE(4)));
    ag_error_clear();
    assert_null(ag_params_add(&ps, "bert.pooler.dense.bias", 1, AG_SHAPE(4)));
    assert_non_null(strstr(ag_error(), "bert.pooler.dense.bias"));
    assert_int_equal(ag_params_finalize(&ps), AG_OK);
    assert_int_equal(ps.total, 44);
    ag_tensor *b = ag_params_find(&ps, "bert.pooler.dense.bias");
    assert_ptr_equal(b->data, ps.values + 40); /* a slice of the flat block */
    assert_ptr_equal(b->grad, ps.grads + 40);
    assert_null(ag_params_find(&ps, "nope"));
    assert_null(ag_params_add(&ps, "late", 1, AG_SHAPE(1)));
    ag_params_free(&ps);
}

static void test_tape_printer_and_dot(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_scalar(ctx, 3.0f, true), *a = ag_scalar(ctx, 2.0f, true);
    ag_tensor *f = ag_mul(ctx, a, ag_tanh(ctx, x));
    assert_int_equal(ag_backward(ctx, f, NULL), AG_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    ag_tape_print(m, ctx);
    fclose(m);
    assert_non_null(strstr(buf, "tanh"));
    assert_non_null(strstr(buf, "mul"));
    assert_non_null(strstr(buf, "|grad|"));
    free(buf);
    m = open_memstream(&buf, &len);
    ag_tape_dot(m, ctx);
    fclose(m);
    assert_non_null(strstr(buf, "digraph tape"));
    assert_non_null(strstr(buf, "t0 -> op1"));
    free(buf);
    assert_int_equal(ag_op_from_name("attention"), AG_OP_ATTENTION);
    assert_string_equal(ag_op_name(AG_OP_LAYERNORM), "layernorm");
    ag_ctx_free(ctx);
}

/* The OpenMP kernels give the same answer on 1 and 2 threads, and OpenBLAS is
 * the OpenMP build (one thread pool for both). */
static void test_threads(void **state) {
    assert_non_null(strstr(ag_blas_info(), "openmp"));
    ag_ctx *ctx = ag_ctx_create(0);
    const int64_t n = 300000; /* above AG_PAR_MIN */
    float *out1 = malloc(n * sizeof(float));
    for (int t = 1; t <= 2; ++t) {
        ag_set_threads(t);
        assert_int_equal(ag_get_threads(), t);
        ag_tensor *x = ag_new(ctx, 2, AG_SHAPE(1000, 300), true);
        ag_tensor *b = ag_new(ctx, 1, AG_SHAPE(300), true);
        for (int64_t i = 0; i < n; ++i) x->data[i] = sinf((float)i);
        for (int i = 0; i < 300; ++i) b->data[i] = cosf((float)i);
        ag_tensor *y = ag_gelu(ctx, ag_add(ctx, x, b));
        assert_int_equal(ag_backward(ctx, ag_sum(ctx, y, AG_ALL, false), NULL), AG_OK);
        if (t == 1) memcpy(out1, x->grad, n * sizeof(float));
        else assert_memory_equal(out1, x->grad, n * sizeof(float));
        ag_ctx_reset(ctx);
    }
    ag_set_threads(0);
    free(out1);
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worked_example),
        cmocka_unit_test(test_reused_tensor_accumulates),
        cmocka_unit_test(test_broadcast_sums_back),
        cmocka_unit_test(test_unused_input_gets_zero),
        cmocka_unit_test(test_no_grad_records_nothing),
        cmocka_unit_test(test_arena_reused_without_allocation),
        cmocka_unit_test(test_arena_grows_once),
        cmocka_unit_test(test_arena_too_small_says_how_much),
        cmocka_unit_test(test_backward_errors),
        cmocka_unit_test(test_params_registry),
        cmocka_unit_test(test_tape_printer_and_dot),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
