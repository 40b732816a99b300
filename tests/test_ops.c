/* test_ops.c: every op in autograd/ops.def, checked two independent ways.
 *
 *   1. Against PyTorch: the fixture cases (tests/fixtures/ops_*.h5, made in
 *      float64 by tests/fixtures/gen_op_fixtures.py) give out and every input
 *      gradient for d(out) = dout; ours must agree to float32 precision.
 *   2. By central finite differences: loss = sum(out * dout) accumulated in
 *      double, each input nudged by +-h at a capped number of coordinates; a
 *      coordinate where the two one-sided slopes disagree sits on a kink (relu
 *      at 0, a max that changes hands) and is skipped.
 *
 * A third test walks the op list and fails if any op lacks a runner or a
 * fixture case, so adding an op to ops.def without its checks fails here.
 * Tolerances: relative 1e-4 for outputs and gradients (plus a floor of 1e-5 of
 * the array's largest value); a case may ask for more with params "rtol" or
 * "grad_rtol", and says why in its case file.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FIXTURE_DIR
#define FIXTURE_DIR "tests/fixtures"
#endif

static op_case *cases;
static int n_cases;

static int setup(void **state) {
    n_cases = load_op_cases(FIXTURE_DIR, &cases);
    return n_cases > 0 ? 0 : -1;
}

static int teardown(void **state) {
    free_op_cases(cases, n_cases);
    return 0;
}

static void test_every_op_is_checked(void **state) {
    int missing = 0;
    for (int op = 0; op < AG_OP_COUNT; ++op) {
        int n = 0;
        for (int i = 0; i < n_cases; ++i) n += cases[i].op == (ag_op)op;
        bool runner = find_runner((ag_op)op) != NULL;
        if (!runner || n == 0) {
            fprintf(stderr, "op %s: %s%s\n", ag_op_name((ag_op)op), runner ? "" : "no runner in tests/runners_*.c; ",
                    n ? "" : "no fixture case (tests/fixtures/cases/*.py)");
            missing++;
        }
    }
    for (int i = 0; i < n_cases; ++i)
        if (cases[i].op == AG_OP_COUNT) {
            fprintf(stderr, "case %s names an op that ops.def does not list\n", cases[i].name);
            missing++;
        }
    printf("%d ops, %d fixture cases\n", AG_OP_COUNT, n_cases);
    assert_int_equal(missing, 0);
}

/* Out and input gradients against PyTorch. */
static void test_against_pytorch(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_ctx_train(ctx, true);
    int failed = 0;
    for (int i = 0; i < n_cases; ++i) {
        const op_case *c = &cases[i];
        if (!find_runner(c->op)) continue;
        ag_ctx_seed(ctx, (uint64_t)case_num(c, "seed", 0));
        ag_tensor *leaves[CASE_MAX_IN] = {0};
        ag_tensor *out = run_case(ctx, c, NULL, leaves);
        bool ok = out != NULL;
        char what[256];
        if (!out) {
            fprintf(stderr, "case %s: the op failed: %s\n", c->name, ag_error());
        } else if (out->numel != c->out.numel) {
            fprintf(stderr, "case %s: out has %lld values, PyTorch %lld\n", c->name, (long long)out->numel,
                    (long long)c->out.numel);
            ok = false;
        } else {
            double rtol = case_num(c, "rtol", 1e-4);
            snprintf(what, sizeof what, "%s: out", c->name);
            ok = check_close(what, out->data, c->out.data, out->numel, rtol, rtol / 10);
            if (out->requires_grad) {
                if (ag_backward(ctx, out, c->dout.data) != AG_OK) {
                    fprintf(stderr, "case %s: backward failed: %s\n", c->name, ag_error());
                    ok = false;
                }
                double grtol = case_num(c, "grad_rtol", 1e-4);
                for (int k = 0; ok && k < c->n_in; ++k) {
                    if (!c->in[k].requires_grad || !c->in[k].grad) continue;
                    snprintf(what, sizeof what, "%s: d%s", c->name, c->in[k].name);
                    ok = check_close(what, leaves[k]->grad, c->in[k].grad, c->in[k].numel, grtol, grtol / 10) && ok;
                }
            }
        }
        if (!ok) failed++;
    }
    printf("%d cases against PyTorch, %d failed\n", n_cases, failed);
    ag_ctx_free(ctx);
    assert_int_equal(failed, 0);
}

/* sum(out * dout) in double, for the case with the inputs in `data`. */
static double probe_loss(ag_ctx *ctx, const op_case *c, float *const *data, bool *ok) {
    ag_ctx_seed(ctx, (uint64_t)case_num(c, "seed", 0));
    ag_no_grad_begin(ctx);
    ag_tensor *out = run_case(ctx, c, data, NULL);
    ag_no_grad_end(ctx);
    if (!out) { *ok = false; return 0; }
    double s = 0;
    for (int64_t i = 0; i < out->numel; ++i) s += (double)out->data[i] * c->dout.data[i];
    return s;
}

static void test_finite_differences(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_ctx_train(ctx, true);
    int failed = 0, checked = 0, kinks = 0;
    for (int i = 0; i < n_cases; ++i) {
        const op_case *c = &cases[i];
        if (!find_runner(c->op)) continue;
        /* our analytic gradients */
        ag_ctx_seed(ctx, (uint64_t)case_num(c, "seed", 0));
        ag_tensor *leaves[CASE_MAX_IN] = {0};
        ag_tensor *out = run_case(ctx, c, NULL, leaves);
        if (!out || !out->requires_grad) continue;
        if (ag_backward(ctx, out, c->dout.data) != AG_OK) { failed++; continue; }
        float *grads[CASE_MAX_IN] = {0};
        float *data[CASE_MAX_IN] = {0};
        for (int k = 0; k < c->n_in; ++k) {
            data[k] = malloc((size_t)c->in[k].numel * sizeof(float));
            memcpy(data[k], c->in[k].data, (size_t)c->in[k].numel * sizeof(float));
            if (c->in[k].requires_grad) {
                grads[k] = malloc((size_t)c->in[k].numel * sizeof(float));
                memcpy(grads[k], leaves[k]->grad, (size_t)c->in[k].numel * sizeof(float));
            }
        }
        double h_rel = case_num(c, "fd_h", 1e-2);
        for (int k = 0; k < c->n_in; ++k) {
            if (!grads[k]) continue;
            int64_t n = c->in[k].numel;
            double gscale = 0;
            for (int64_t j = 0; j < n; ++j) gscale = fmax(gscale, fabs(grads[k][j]));
            int64_t stride = n > 24 ? n / 24 : 1;
            for (int64_t j = 0; j < n; j += stride) {
                float x0 = c->in[k].data[j];
                double h = h_rel * fmax(1.0, fabs(x0));
                bool ok = true;
                data[k][j] = (float)(x0 + h);
                double hp = (double)data[k][j] - x0; /* the step float32 actually took */
                double lp = probe_loss(ctx, c, data, &ok);
                data[k][j] = (float)(x0 - h);
                double hm = x0 - (double)data[k][j];
                double lm = probe_loss(ctx, c, data, &ok);
                data[k][j] = x0;
                double l0 = probe_loss(ctx, c, data, &ok);
                if (!ok) { fprintf(stderr, "case %s: forward failed: %s\n", c->name, ag_error()); failed++; break; }
                double fwd = (lp - l0) / hp, bwd = (l0 - lm) / hm, fd = (lp - lm) / (hp + hm);
                double tol = 5e-3 * fabs(grads[k][j]) + 1e-3 * gscale + 1e-4;
                if (fabs(fwd - bwd) > 0.1 * fmax(fabs(fwd), fabs(bwd)) + 4 * tol) { kinks++; continue; }
                checked++;
                if (!(fabs(fd - grads[k][j]) <= tol)) {
                    fprintf(stderr, "case %s: d%s[%lld]: backward %.6g, finite difference %.6g\n", c->name,
                            c->in[k].name, (long long)j, grads[k][j], fd);
                    failed++;
                }
            }
        }
        for (int k = 0; k < c->n_in; ++k) { free(data[k]); free(grads[k]); }
    }
    printf("finite differences: %d coordinates checked, %d kinks skipped, %d failed\n", checked, kinks, failed);
    ag_ctx_free(ctx);
    assert_int_equal(failed, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_op_is_checked),
        cmocka_unit_test(test_against_pytorch),
        cmocka_unit_test(test_finite_differences),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
