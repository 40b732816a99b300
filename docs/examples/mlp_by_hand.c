/* mlp_by_hand.c: the program docs/backprop.md walks through.
 *
 * A two-layer MLP on a batch of N inputs:
 *
 *     z = x W1^T + b1        x [N,D], W1 [H,D], b1 [H]      -> z [N,H]
 *     h = tanh(z)                                           -> h [N,H]
 *     y = h W2^T + b2        W2 [O,H], b2 [O]               -> y [N,O]
 *     L = mean((y - t)^2)    over all N*O entries           -> L [1]
 *
 * It runs the forward pass on the tape, prints the tape, runs backward, then
 * computes every gradient again by hand with plain loops (the formulas derived
 * in docs/backprop.md) and prints both side by side. It exits 1 if any
 * gradient differs by more than 1e-5 relative, so the walkthrough stays true:
 * CTest runs it.
 */
#include "ag.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { N = 4, D = 3, H = 5, O = 2 };

static float rnd(uint64_t i) { return 2.0f * ag_rng_uniform(42, i) - 1.0f; }

/* The largest |a - b| relative to max |b|. */
static double rel_diff(const float *a, const float *b, int n) {
    double d = 0, s = 1e-30;
    for (int i = 0; i < n; ++i) { d = fmax(d, fabs(a[i] - b[i])); s = fmax(s, fabs(b[i])); }
    return d / s;
}

int main(void) {
    ag_params ps;
    ag_params_init(&ps);
    ag_tensor *W1 = ag_params_add(&ps, "W1", 2, AG_SHAPE(H, D));
    ag_tensor *b1 = ag_params_add(&ps, "b1", 1, AG_SHAPE(H));
    ag_tensor *W2 = ag_params_add(&ps, "W2", 2, AG_SHAPE(O, H));
    ag_tensor *b2 = ag_params_add(&ps, "b2", 1, AG_SHAPE(O));
    if (ag_params_finalize(&ps) != AG_OK) { fprintf(stderr, "%s\n", ag_error()); return 1; }
    for (int64_t i = 0; i < ps.total; ++i) ps.values[i] = 0.5f * rnd(i);

    float xv[N * D], tv[N * O];
    for (int i = 0; i < N * D; ++i) xv[i] = rnd(1000 + i);
    for (int i = 0; i < N * O; ++i) tv[i] = rnd(2000 + i);

    /* ---- forward on the tape */
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_from(ctx, xv, 2, AG_SHAPE(N, D), false);
    ag_tensor *t = ag_from(ctx, tv, 2, AG_SHAPE(N, O), false);
    ag_tensor *z = ag_linear(ctx, x, W1, b1, AG_LINEAR_OUT_IN);
    ag_tensor *h = ag_tanh(ctx, z);
    ag_tensor *y = ag_linear(ctx, h, W2, b2, AG_LINEAR_OUT_IN);
    ag_tensor *L = ag_mse(ctx, y, t);
    if (!L || ag_backward(ctx, L, NULL) != AG_OK) { fprintf(stderr, "%s\n", ag_error()); return 1; }
    ag_tape_print(stdout, ctx);
    printf("L = %.7f\n\n", L->data[0]);

    /* ---- the same gradients by hand, last node first */
    float dy[N * O], dh[N * H], dz[N * H];
    float dW1[H * D] = {0}, db1[H] = {0}, dW2[O * H] = {0}, db2[O] = {0};
    /* node 3, mse:     dL/dy = 2 (y - t) / (N*O) */
    for (int i = 0; i < N * O; ++i) dy[i] = 2.0f * (y->data[i] - tv[i]) / (N * O);
    /* node 2, linear:  dW2 = dy^T h,  db2 = sum over rows of dy,  dh = dy W2 */
    for (int n = 0; n < N; ++n)
        for (int o = 0; o < O; ++o) {
            db2[o] += dy[n * O + o];
            for (int k = 0; k < H; ++k) dW2[o * H + k] += dy[n * O + o] * h->data[n * H + k];
        }
    for (int n = 0; n < N; ++n)
        for (int k = 0; k < H; ++k) {
            float s = 0;
            for (int o = 0; o < O; ++o) s += dy[n * O + o] * W2->data[o * H + k];
            dh[n * H + k] = s;
        }
    /* node 1, tanh:    dz = dh * (1 - h^2) */
    for (int i = 0; i < N * H; ++i) dz[i] = dh[i] * (1.0f - h->data[i] * h->data[i]);
    /* node 0, linear:  dW1 = dz^T x,  db1 = sum over rows of dz  (x needs no gradient) */
    for (int n = 0; n < N; ++n)
        for (int k = 0; k < H; ++k) {
            db1[k] += dz[n * H + k];
            for (int d = 0; d < D; ++d) dW1[k * D + d] += dz[n * H + k] * xv[n * D + d];
        }

    struct { const char *name; const float *tape, *hand; int n; } g[] = {
        {"W1", W1->grad, dW1, H * D}, {"b1", b1->grad, db1, H},
        {"W2", W2->grad, dW2, O * H}, {"b2", b2->grad, db2, O},
    };
    int bad = 0;
    printf("%-4s %-14s %-14s %s\n", "", "tape [0]", "by hand [0]", "max rel diff");
    for (int i = 0; i < 4; ++i) {
        double r = rel_diff(g[i].tape, g[i].hand, g[i].n);
        printf("d%-3s %-14.7f %-14.7f %.2e\n", g[i].name, g[i].tape[0], g[i].hand[0], r);
        bad += r > 1e-5;
    }
    printf(bad ? "MISMATCH\n" : "the tape and the hand derivation agree\n");
    ag_ctx_free(ctx);
    ag_params_free(&ps);
    return bad ? 1 : 0;
}
