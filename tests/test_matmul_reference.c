/* test_matmul_reference.c: the sgemm path of autograd/op_matmul.c against the
 * plain triple loop kept beside it.
 *
 * Every product in op_matmul.c goes through one helper that calls either
 * cblas_sgemm or the triple loop; ag__matmul_use_reference() picks which. Each
 * problem below runs the whole op, forward and backward, both ways on the same
 * inputs and d(out), and the outputs and every gradient must agree. The
 * problems cross every transpose combination with every form (2-D, batched 3-D
 * and 4-D, B shared by the batch) and include the sizes that take each
 * threading path: many attention-sized products split over threads, one big
 * product on sgemm's own threads, a few big products one after another.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* op_matmul.c's switch between sgemm and the triple loop. Declared here, not in
 * a header: only this test needs it. */
void ag__matmul_use_reference(bool on);

typedef enum { MATMUL, MATMUL_SELF, LINEAR } kind;

typedef struct {
    const char *name;
    kind kind;
    int nda, ndb;
    int64_t sa[AG_MAX_DIMS], sb[AG_MAX_DIMS];
    bool ta, tb;           /* matmul's flags; for linear tb means W [out,in] */
    bool bias;             /* linear only */
} problem;

typedef struct {
    float *out, *da, *db, *dbias;
    int64_t n_out, n_a, n_b, n_bias;
} result;

static void fill(float *x, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; ++i) x[i] = 2.0f * ag_rng_uniform(seed, (uint64_t)i) - 1.0f;
}

static float *copy(const float *x, int64_t n) {
    float *y = malloc((size_t)(n ? n : 1) * sizeof(float));
    memcpy(y, x, (size_t)n * sizeof(float));
    return y;
}

/* Runs the problem's op forward and backward (on sgemm, or on the triple loop
 * when `reference`) and returns copies of out and the gradients. */
static result run(ag_ctx *ctx, const problem *p, bool reference) {
    ag__matmul_use_reference(reference);
    ag_ctx_reset(ctx);
    ag_error_clear();
    ag_tensor *a = ag_new(ctx, p->nda, p->sa, true);
    ag_tensor *b = p->kind == MATMUL_SELF ? a : ag_new(ctx, p->ndb, p->sb, true);
    assert_non_null(a);
    assert_non_null(b);
    fill(a->data, a->numel, 1);
    if (b != a) fill(b->data, b->numel, 2);
    ag_tensor *bias = NULL, *out;
    if (p->kind == LINEAR) {
        int64_t n_out = p->tb ? p->sb[0] : p->sb[1];
        if (p->bias) {
            bias = ag_new(ctx, 1, &n_out, true);
            fill(bias->data, n_out, 3);
        }
        out = ag_linear(ctx, a, b, bias, p->tb ? AG_LINEAR_OUT_IN : AG_LINEAR_IN_OUT);
    } else {
        out = ag_matmul(ctx, a, b, p->ta, p->tb);
    }
    if (!out) fprintf(stderr, "%s: %s\n", p->name, ag_error());
    assert_non_null(out);
    float *seed = malloc((size_t)out->numel * sizeof(float));
    fill(seed, out->numel, 4);
    assert_int_equal(ag_backward(ctx, out, seed), AG_OK);
    free(seed);
    result r = {0};
    r.out = copy(out->data, r.n_out = out->numel);
    r.da = copy(a->grad, r.n_a = a->numel);
    r.db = copy(b->grad, r.n_b = b->numel);
    if (bias) r.dbias = copy(bias->grad, r.n_bias = bias->numel);
    ag__matmul_use_reference(false);
    return r;
}

static void free_result(result *r) {
    free(r->out);
    free(r->da);
    free(r->db);
    free(r->dbias);
}

/* sgemm sums in float in its own order, the reference in double: they agree to
 * float32 rounding of sums of up to a few hundred terms. */
#define RTOL 1e-4
#define ATOL_FRAC 1e-5

static bool agree(ag_ctx *ctx, const problem *p) {
    result blas = run(ctx, p, false), ref = run(ctx, p, true);
    char what[128];
    bool ok = true;
    snprintf(what, sizeof what, "%s: out", p->name);
    ok = check_close(what, blas.out, ref.out, ref.n_out, RTOL, ATOL_FRAC) && ok;
    snprintf(what, sizeof what, "%s: dA", p->name);
    ok = check_close(what, blas.da, ref.da, ref.n_a, RTOL, ATOL_FRAC) && ok;
    snprintf(what, sizeof what, "%s: dB", p->name);
    ok = check_close(what, blas.db, ref.db, ref.n_b, RTOL, ATOL_FRAC) && ok;
    if (ref.dbias) {
        snprintf(what, sizeof what, "%s: dbias", p->name);
        ok = check_close(what, blas.dbias, ref.dbias, ref.n_bias, RTOL, ATOL_FRAC) && ok;
    }
    free_result(&blas);
    free_result(&ref);
    return ok;
}

/* A matmul problem: A [*lead, M, K] and B [*lead_b, K, N], each stored
 * transposed when its flag is set; B is 2-D (shared) when shared. */
static problem matmul_problem(const char *name, int nlead, const int64_t *lead, bool shared, int64_t M, int64_t K,
                              int64_t N, bool ta, bool tb) {
    problem p = {.name = name, .kind = MATMUL, .ta = ta, .tb = tb};
    p.nda = nlead + 2;
    p.ndb = shared ? 2 : nlead + 2;
    for (int d = 0; d < nlead; ++d) p.sa[d] = p.sb[d] = lead[d];
    p.sa[nlead] = ta ? K : M;
    p.sa[nlead + 1] = ta ? M : K;
    p.sb[p.ndb - 2] = tb ? N : K;
    p.sb[p.ndb - 1] = tb ? K : N;
    return p;
}

static void test_every_transpose_and_form(void **state) {
    ag_set_threads(2);
    ag_ctx *ctx = ag_ctx_create(0);
    struct {
        const char *form;
        int nlead;
        int64_t lead[2];
        bool shared;
        int64_t M, K, N;
    } forms[] = {
        {"2d", 0, {0}, false, 7, 9, 5},
        {"3d", 1, {3}, false, 7, 9, 5},
        {"4d", 2, {2, 3}, false, 6, 5, 7},
        {"shared_3d", 1, {4}, true, 7, 9, 5},
        {"shared_4d", 2, {2, 3}, true, 5, 7, 6},
        {"shared_batch1", 1, {1}, true, 3, 4, 5},
        /* attention-sized: 8 products of 64x64x64, split over threads */
        {"attention_64", 2, {2, 4}, false, 64, 64, 64},
        {"attention_shared_64", 2, {2, 4}, true, 64, 64, 64},
        /* one big product on sgemm's own threads */
        {"big_2d", 0, {0}, false, 160, 192, 144},
        /* a few big products one after another */
        {"big_batch2", 1, {2}, false, 130, 140, 150},
        {"big_shared", 1, {3}, true, 130, 140, 150},
    };
    int failed = 0, n = 0;
    for (size_t f = 0; f < sizeof forms / sizeof *forms; ++f)
        for (int t = 0; t < 4; ++t) {
            bool ta = t & 1, tb = t & 2;
            char name[96];
            snprintf(name, sizeof name, "matmul_%s_%c%c", forms[f].form, ta ? 't' : 'n', tb ? 't' : 'n');
            problem p = matmul_problem(name, forms[f].nlead, forms[f].lead, forms[f].shared, forms[f].M, forms[f].K,
                                       forms[f].N, ta, tb);
            failed += !agree(ctx, &p);
            n++;
        }
    printf("%d matmul problems, %d disagree\n", n, failed);
    ag_ctx_free(ctx);
    assert_int_equal(failed, 0);
}

/* A tensor used as both A and B (A A^T, A^T A): both gradients add into one buffer. */
static void test_same_tensor_twice(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    problem p1 = {.name = "matmul_self_aat", .kind = MATMUL_SELF, .nda = 3, .sa = {2, 5, 7}, .tb = true};
    problem p2 = {.name = "matmul_self_ata", .kind = MATMUL_SELF, .nda = 2, .sa = {5, 7}, .ta = true};
    assert_true(agree(ctx, &p1));
    assert_true(agree(ctx, &p2));
    ag_ctx_free(ctx);
}

static void test_linear_both_layouts(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    problem ps[] = {
        {.name = "linear_out_in", .kind = LINEAR, .nda = 3, .sa = {2, 5, 9}, .ndb = 2, .sb = {7, 9}, .tb = true, .bias = true},
        {.name = "linear_in_out", .kind = LINEAR, .nda = 3, .sa = {2, 5, 9}, .ndb = 2, .sb = {9, 7}, .bias = true},
        {.name = "linear_out_in_nobias", .kind = LINEAR, .nda = 4, .sa = {2, 2, 3, 9}, .ndb = 2, .sb = {7, 9}, .tb = true},
        {.name = "linear_big", .kind = LINEAR, .nda = 2, .sa = {128, 192}, .ndb = 2, .sb = {192, 160}, .bias = true},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof ps / sizeof *ps; ++i) failed += !agree(ctx, &ps[i]);
    ag_ctx_free(ctx);
    assert_int_equal(failed, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_transpose_and_form),
        cmocka_unit_test(test_same_tensor_twice),
        cmocka_unit_test(test_linear_both_layouts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
