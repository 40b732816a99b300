/* test_attention_composed.c: the fused ag_attention against ag_attention_composed,
 * its reference built from public ops (matmul, scale, add, softmax, dropout).
 *
 * For each set of options both run on the same inputs in two contexts seeded
 * alike, in training mode; then backward with the same d(out). Out and every
 * input gradient must agree within 1e-5 relative (plus a floor of 1e-6 of each
 * array's largest value). With dropout both draw element e of P from
 * ag_rng_uniform(seed, counter + e), so they must drop the same entries and
 * move the counter by the same B*NH*T*S. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define RTOL 1e-5
#define ATOL_FRAC 1e-6

typedef struct {
    const char *name;
    int64_t B, NH, T, S, D;
    bool causal;
    int window;
    bool no_scale;
    float scale;
    int bias_ndim;          /* 0: no bias */
    int64_t bias_shape[4];
    bool bias_grad;
    bool key_mask;          /* batch 0 pads its last two keys; the last batch pads every key */
    float dropout;
    bool q_grad, k_grad, v_grad;
} option_set;

/* Fills x with N(0,1)-ish values from the counter-based generator (sum of 4 uniforms). */
static void fill(float *x, int64_t n, uint64_t stream) {
    for (int64_t i = 0; i < n; ++i) {
        float s = 0;
        for (int r = 0; r < 4; ++r) s += ag_rng_uniform(stream, (uint64_t)(4 * i + r));
        x[i] = (s - 2.0f) * 1.7f;
    }
}

typedef struct {
    ag_tensor *q, *k, *v, *bias, *out;
    ag_ints *key_mask;
    uint64_t counter_after;
} run_result;

/* Runs fused or composed attention in ctx on the inputs of `o`, then backward. */
static run_result run(ag_ctx *ctx, const option_set *o, bool composed, const float *dout) {
    run_result r = {0};
    ag_ctx_reset(ctx);
    ag_ctx_seed(ctx, 1234);
    ag_ctx_train(ctx, true);
    r.q = ag_new(ctx, 4, AG_SHAPE(o->B, o->NH, o->T, o->D), o->q_grad);
    r.k = ag_new(ctx, 4, AG_SHAPE(o->B, o->NH, o->S, o->D), o->k_grad);
    r.v = ag_new(ctx, 4, AG_SHAPE(o->B, o->NH, o->S, o->D), o->v_grad);
    assert_non_null(r.q);
    assert_non_null(r.k);
    assert_non_null(r.v);
    fill(r.q->data, r.q->numel, 1);
    fill(r.k->data, r.k->numel, 2);
    fill(r.v->data, r.v->numel, 3);
    if (o->bias_ndim) {
        r.bias = ag_new(ctx, o->bias_ndim, o->bias_shape, o->bias_grad);
        assert_non_null(r.bias);
        fill(r.bias->data, r.bias->numel, 4);
    }
    if (o->key_mask) {
        r.key_mask = ag_ints_from(ctx, NULL, 2, AG_SHAPE(o->B, o->S));
        assert_non_null(r.key_mask);
        for (int64_t b = 0; b < o->B; ++b)
            for (int64_t j = 0; j < o->S; ++j)
                r.key_mask->data[b * o->S + j] = b == o->B - 1 ? 0 : (b == 0 && j >= o->S - 2) ? 0 : 1;
    }
    ag_attn_opts opts = {.causal = o->causal, .window = o->window, .no_scale = o->no_scale, .scale = o->scale,
                         .bias = r.bias, .key_mask = r.key_mask, .dropout = o->dropout};
    r.out = composed ? ag_attention_composed(ctx, r.q, r.k, r.v, &opts) : ag_attention(ctx, r.q, r.k, r.v, &opts);
    if (!r.out) fprintf(stderr, "%s (%s): %s\n", o->name, composed ? "composed" : "fused", ag_error());
    assert_non_null(r.out);
    r.counter_after = ctx->rng_counter;
    if (r.out->requires_grad) assert_int_equal(ag_backward(ctx, r.out, dout), AG_OK);
    return r;
}

static bool same(const char *set, const char *what, const ag_tensor *fused, const ag_tensor *comp, bool grad) {
    char label[160];
    snprintf(label, sizeof label, "%s: %s", set, what);
    if (!grad) return check_close(label, fused->data, comp->data, fused->numel, RTOL, ATOL_FRAC);
    if (!fused->requires_grad) return true;
    if (!fused->grad || !comp->grad) {
        fprintf(stderr, "%s: a gradient is missing (fused %p, composed %p)\n", label, (void *)fused->grad,
                (void *)comp->grad);
        return false;
    }
    return check_close(label, fused->grad, comp->grad, fused->numel, RTOL, ATOL_FRAC);
}

static void test_fused_equals_composed(void **state) {
    const option_set sets[] = {
        {"plain", 2, 3, 5, 5, 8, .q_grad = 1, .k_grad = 1, .v_grad = 1},
        {"causal", 2, 3, 6, 6, 8, .causal = 1, .q_grad = 1, .k_grad = 1, .v_grad = 1},
        {"causal_cache", 2, 2, 3, 7, 8, .causal = 1, .q_grad = 1, .k_grad = 1, .v_grad = 1},
        {"padding", 3, 2, 4, 5, 8, .key_mask = 1, .q_grad = 1, .k_grad = 1, .v_grad = 1},
        {"t5_bias", 2, 3, 4, 4, 8, .no_scale = 1, .bias_ndim = 3, .bias_shape = {3, 4, 4}, .bias_grad = 1,
         .q_grad = 1, .k_grad = 1, .v_grad = 1},
        {"bias_B1TS_causal_padding", 2, 2, 5, 5, 4, .causal = 1, .key_mask = 1, .bias_ndim = 4,
         .bias_shape = {2, 1, 5, 5}, .bias_grad = 1, .q_grad = 1, .k_grad = 1, .v_grad = 1},
        {"scale", 2, 2, 4, 4, 8, .scale = 0.3f, .bias_ndim = 2, .bias_shape = {4, 4}, .q_grad = 1, .k_grad = 1,
         .v_grad = 1},
        {"window", 1, 2, 7, 7, 8, .causal = 1, .window = 3, .q_grad = 1, .k_grad = 1, .v_grad = 1},
        {"dropout", 2, 3, 5, 5, 8, .dropout = 0.1f, .q_grad = 1, .k_grad = 1, .v_grad = 1},
        {"dropout_everything", 3, 2, 4, 6, 8, .causal = 1, .key_mask = 1, .dropout = 0.25f, .bias_ndim = 3,
         .bias_shape = {2, 4, 6}, .bias_grad = 1, .q_grad = 1, .k_grad = 1, .v_grad = 1},
        {"cross", 2, 2, 3, 6, 5, .q_grad = 1, .k_grad = 1, .v_grad = 1},
        {"no_q_grad", 2, 2, 4, 4, 8, .causal = 1, .k_grad = 1, .v_grad = 1},
        {"only_v_grad", 2, 2, 4, 4, 8, .v_grad = 1},
        /* large enough (B*NH*T*S*D > AG_PAR_MIN) for the fused op's OpenMP loop over heads */
        {"threads", 2, 4, 32, 32, 16, .causal = 1, .key_mask = 1, .dropout = 0.1f, .bias_ndim = 3,
         .bias_shape = {4, 32, 32}, .bias_grad = 1, .q_grad = 1, .k_grad = 1, .v_grad = 1},
    };
    ag_ctx *fctx = ag_ctx_create(0), *cctx = ag_ctx_create(0);
    int failed = 0;
    for (size_t s = 0; s < sizeof sets / sizeof *sets; ++s) {
        const option_set *o = &sets[s];
        float dout[4096];
        int64_t n_out = o->B * o->NH * o->T * o->D;
        assert_true(n_out <= 4096);
        fill(dout, n_out, 5);
        run_result f = run(fctx, o, false, dout);
        run_result c = run(cctx, o, true, dout);
        bool ok = same(o->name, "out", f.out, c.out, false);
        ok = same(o->name, "dq", f.q, c.q, true) && ok;
        ok = same(o->name, "dk", f.k, c.k, true) && ok;
        ok = same(o->name, "dv", f.v, c.v, true) && ok;
        if (f.bias) ok = same(o->name, "dbias", f.bias, c.bias, true) && ok;
        if (f.counter_after != c.counter_after) {
            fprintf(stderr, "%s: rng counter after: fused %llu, composed %llu\n", o->name,
                    (unsigned long long)f.counter_after, (unsigned long long)c.counter_after);
            ok = false;
        }
        if (!ok) failed++;
    }
    printf("%zu option sets, %d differ\n", sizeof sets / sizeof *sets, failed);
    ag_ctx_free(fctx);
    ag_ctx_free(cctx);
    assert_int_equal(failed, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_equals_composed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
