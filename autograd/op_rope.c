/* op_rope.c: rotary position embedding (RoPE), y = R(pos) x.
 *
 * What it is: the position encoding of GPT-J, GPT-NeoX and LLaMA. Instead of
 * adding a position vector, it rotates pairs of coordinates of each query and
 * key by an angle proportional to the token's position, so that the dot product
 * q_m . k_n depends on m - n only. What it is not: the sin/cos table of the
 * original Transformer (that one is added, not rotated) nor ALiBi.
 *
 * x [B,NH,T,D]; only the first R = rotary_dim coordinates (R even, R <= D)
 * rotate, the other D - R pass through unchanged. Pair i (0 <= i < R/2) turns by
 *
 *     inv_freq[i] = base^(-2i/R)                 (base = 10000 in every model above)
 *     theta(t, i) = (pos_offset + t) * inv_freq[i]
 *
 * and which two coordinates (a, b) form pair i depends on the model:
 *
 *     interleaved (GPT-J's rotate_every_two):  a = 2i,  b = 2i + 1
 *     halves (GPT-NeoX/LLaMA's rotate_half):   a = i,   b = i + R/2
 *
 * Forward, a 2-D rotation of each pair by theta:
 *     y_a = x_a cos(theta) - x_b sin(theta)
 *     y_b = x_a sin(theta) + x_b cos(theta)
 *     y_j = x_j                                  for j >= R
 *
 * Backward: y = R x with R orthogonal, so dx = R^T dy, the rotation by -theta:
 *     dx_a += dy_a cos(theta) + dy_b sin(theta)
 *     dx_b += -dy_a sin(theta) + dy_b cos(theta)
 *     dx_j += dy_j                               for j >= R
 *
 * The angles are computed in double: at position 4000 with inv_freq[0] = 1 the
 * angle is 4000 radians, and a float32 angle there is only good to ~2e-4, which
 * would show in sin and cos. cos and sin are tabulated once per call, [T, R/2]
 * each, shared by every (b, h), and kept for backward.
 */
#include "internal.h"

/* ---------------------------------------------------------------- the angle table */

/* cos_t, sin_t [T, R/2]: cos and sin of (pos_offset + t) * base^(-2i/R). */
static void rope_table(float *cos_t, float *sin_t, int64_t T, int64_t R, int64_t pos_offset, double base) {
    int64_t half = R / 2;
    for (int64_t i = 0; i < half; ++i) {
        double inv_freq = pow(base, -2.0 * (double)i / (double)R);
        for (int64_t t = 0; t < T; ++t) {
            double theta = (double)(pos_offset + t) * inv_freq;
            cos_t[t * half + i] = (float)cos(theta);
            sin_t[t * half + i] = (float)sin(theta);
        }
    }
}

/* The offsets of pair i's two coordinates within a row of D. */
static inline void rope_pair(int64_t i, int64_t R, bool interleaved, int64_t *a, int64_t *b) {
    if (interleaved) { *a = 2 * i; *b = 2 * i + 1; }
    else { *a = i; *b = i + R / 2; }
}

/* ---------------------------------------------------------------- kernels */

/* y, x [rows = B*NH*T, D]; row r is at position t = r mod T. */
static void rope_forward(float *y, const float *x, const float *cos_t, const float *sin_t,
                         int64_t rows, int64_t T, int64_t D, int64_t R, bool interleaved) {
    int64_t half = R / 2;
#pragma omp parallel for if (rows * D > AG_PAR_MIN)
    for (int64_t r = 0; r < rows; ++r) {
        const float *xr = x + r * D;
        float *yr = y + r * D;
        const float *c = cos_t + (r % T) * half, *s = sin_t + (r % T) * half;
        for (int64_t i = 0; i < half; ++i) {
            int64_t a, b;
            rope_pair(i, R, interleaved, &a, &b);
            float xa = xr[a], xb = xr[b];
            yr[a] = xa * c[i] - xb * s[i];
            yr[b] = xa * s[i] + xb * c[i];
        }
        for (int64_t j = R; j < D; ++j) yr[j] = xr[j]; /* the pass-through part */
    }
}

/* dx, dy [rows, D]: dx += R^T dy, the rotation by -theta. */
static void rope_backward(float *dx, const float *dy, const float *cos_t, const float *sin_t,
                          int64_t rows, int64_t T, int64_t D, int64_t R, bool interleaved) {
    int64_t half = R / 2;
#pragma omp parallel for if (rows * D > AG_PAR_MIN)
    for (int64_t r = 0; r < rows; ++r) {
        const float *dyr = dy + r * D;
        float *dxr = dx + r * D;
        const float *c = cos_t + (r % T) * half, *s = sin_t + (r % T) * half;
        for (int64_t i = 0; i < half; ++i) {
            int64_t a, b;
            rope_pair(i, R, interleaved, &a, &b);
            float ga = dyr[a], gb = dyr[b];
            dxr[a] += ga * c[i] + gb * s[i];
            dxr[b] += -ga * s[i] + gb * c[i];
        }
        for (int64_t j = R; j < D; ++j) dxr[j] += dyr[j];
    }
}

/* ---------------------------------------------------------------- the tape function */

ag_tensor *ag_rope(ag_ctx *ctx, ag_tensor *x, int rotary_dim, int64_t pos_offset, float base, bool interleaved) {
    AG_NEED(x);
    char s[64];
    if (x->ndim != 4)
        AG_FAIL_NULL("rope: x must be [B,NH,T,D], got %s", ag_shape_str(s, x->ndim, x->shape));
    int64_t T = x->shape[2], D = x->shape[3];
    if (rotary_dim < 2 || rotary_dim % 2 != 0 || rotary_dim > D)
        AG_FAIL_NULL("rope: rotary_dim %d must be even and in [2, D = %lld] for x %s", rotary_dim,
                     (long long)D, ag_shape_str(s, x->ndim, x->shape));
    if (pos_offset < 0)
        AG_FAIL_NULL("rope: pos_offset %lld is negative (x %s)", (long long)pos_offset,
                     ag_shape_str(s, x->ndim, x->shape));
    if (!(base > 1.0f) || !isfinite(base))
        AG_FAIL_NULL("rope: base %g must be a finite number > 1 (x %s)", (double)base,
                     ag_shape_str(s, x->ndim, x->shape));

    ag_tensor *y = ag__empty_like(ctx, x);
    if (!y) return NULL;
    /* cos_t, sin_t [T, R/2] in one block; forward needs them, backward keeps them */
    int64_t half = rotary_dim / 2;
    float *table = ag_arena_alloc(ctx, (size_t)(2 * T * half) * sizeof(float));
    if (!table) return NULL;
    float *cos_t = table, *sin_t = table + T * half;
    rope_table(cos_t, sin_t, T, rotary_dim, pos_offset, (double)base);
    int64_t rows = x->numel / D; /* D >= rotary_dim >= 2 */
    rope_forward(y->data, x->data, cos_t, sin_t, rows, T, D, rotary_dim, interleaved);

    ag_node *n = ag__record(ctx, AG_OP_ROPE, y, 1, &x);
    if (!n) return NULL;
    n->i[0] = rotary_dim;
    n->i[1] = interleaved;
    n->i[2] = pos_offset;
    n->f[0] = base;
    n->saved = table; /* the arena keeps it for the step whether recorded or not */
    return y;
}

ag_status ag_rope_backward(ag_ctx *ctx, const ag_node *n) {
    ag_tensor *x = n->in[0];
    if (!x->grad) return AG_OK;
    int64_t T = x->shape[2], D = x->shape[3], R = n->i[0], half = R / 2;
    const float *cos_t = n->saved, *sin_t = (const float *)n->saved + T * half;
    rope_backward(x->grad, n->out->grad, cos_t, sin_t, x->numel / D, T, D, R, n->i[1] != 0);
    return AG_OK;
}
