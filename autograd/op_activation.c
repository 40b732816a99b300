/* op_activation.c: pointwise nonlinearities, y = f(x) elementwise.
 *
 * Each has the same backward shape, dx += dy * f'(x), so each op is a pair of
 * one-line kernels (f and f') and the rest is shared:
 *
 *   gelu       y = x Phi(x) = x/2 (1 + erf(x/sqrt 2))      f' = Phi(x) + x phi(x)
 *   gelu_tanh  y = x/2 (1 + tanh u), u = c (x + a x^3)      f' = s + x s (1 - s) 2c (1 + 3a x^2)
 *              c = sqrt(2/pi), a = 0.044715 (GPT-2's "gelu_new"),
 *              computed as y = x s with s = (1 + tanh u)/2 = sigmoid(2u):
 *              the same number without the cancellation in 1 + tanh u for
 *              negative x, and one vectorised exp instead of a tanhf call
 *   relu       y = max(x, 0)                                f' = [x > 0]   (0 at x = 0, as PyTorch)
 *   tanh       y = tanh x                                   f' = 1 - y^2
 *   sigmoid    y = 1 / (1 + e^-x)                           f' = y (1 - y)
 *   silu       y = x sigmoid(x)                             f' = s (1 + x (1 - s)), s = sigmoid(x)
 *
 * sigmoid, silu and gelu_tanh use ag__exp_vec (internal.h), which gcc turns
 * into SIMD code; glibc's expf, tanhf and erff are one call per element, and
 * in a GPT-2 step those calls cost more than the attention. tanh keeps tanhf,
 * whose relative accuracy near 0 the 1 - 2/(e^2u + 1) form would lose.
 *
 * Backward recomputes f'(x) from the saved input x (tanh and sigmoid use y):
 * the input is kept alive by the arena for the whole step anyway, so saving
 * nothing extra costs nothing.
 */
#include "internal.h"

#define GELU_A 0.044715f
#define SQRT_2_OVER_PI 0.7978845608028654f
#define INV_SQRT_2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

static inline float sigmoidf(float x) { return 1.0f / (1.0f + ag__exp_vec(-x)); }

/* ---------------------------------------------------------------- f and f' */

static inline float gelu_f(float x) { return 0.5f * x * (1.0f + erff(x * INV_SQRT_2)); }
static inline float gelu_df(float x, float y) {
    (void)y;
    float cdf = 0.5f * (1.0f + erff(x * INV_SQRT_2));
    float pdf = INV_SQRT_2PI * expf(-0.5f * x * x);
    return cdf + x * pdf;
}

static inline float gelu_tanh_f(float x) {
    float u = SQRT_2_OVER_PI * (x + GELU_A * x * x * x);
    return x * sigmoidf(2.0f * u); /* x (1 + tanh u)/2 */
}
static inline float gelu_tanh_df(float x, float y) {
    (void)y;
    float u = SQRT_2_OVER_PI * (x + GELU_A * x * x * x);
    float s = sigmoidf(2.0f * u);
    return s + x * s * (1.0f - s) * 2.0f * SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_A * x * x);
}

static inline float relu_f(float x) { return x > 0.0f ? x : 0.0f; }
static inline float relu_df(float x, float y) { (void)y; return x > 0.0f ? 1.0f : 0.0f; }

static inline float tanh_f(float x) { return tanhf(x); }
static inline float tanh_df(float x, float y) { (void)x; return 1.0f - y * y; }

static inline float sigmoid_f(float x) { return sigmoidf(x); }
static inline float sigmoid_df(float x, float y) { (void)x; return y * (1.0f - y); }

static inline float silu_f(float x) { return x * sigmoidf(x); }
static inline float silu_df(float x, float y) {
    (void)y;
    float s = sigmoidf(x);
    return s * (1.0f + x * (1.0f - s));
}

/* ---------------------------------------------------------------- kernels, tape functions, backward */

/* For each activation NAME this writes:
 *   NAME_forward(y, x, n):          y[i] = f(x[i])
 *   NAME_backward(dx, dy, x, y, n): dx[i] += dy[i] * f'(x[i], y[i])
 *   ag_NAME(ctx, x):                the tape function
 *   ag_NAME_backward(ctx, node):    unpacks the node for the kernel          */
#define ACTIVATION(NAME, OP)                                                             \
    static void NAME##_forward(float *y, const float *x, int64_t n) {                    \
        _Pragma("omp parallel for simd if (n > AG_PAR_MIN)")                             \
        for (int64_t i = 0; i < n; ++i) y[i] = NAME##_f(x[i]);                           \
    }                                                                                    \
    static void NAME##_backward(float *dx, const float *dy, const float *x, const float *y, \
                                int64_t n) {                                             \
        _Pragma("omp parallel for simd if (n > AG_PAR_MIN)")                             \
        for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * NAME##_df(x[i], y[i]);          \
    }                                                                                    \
    ag_tensor *ag_##NAME(ag_ctx *ctx, ag_tensor *x) {                                    \
        AG_NEED(x);                                                                      \
        ag_tensor *y = ag__empty_like(ctx, x);                                           \
        if (!y) return NULL;                                                             \
        NAME##_forward(y->data, x->data, x->numel);                                      \
        return ag__record(ctx, OP, y, 1, &x) ? y : NULL;                                 \
    }                                                                                    \
    ag_status ag_##NAME##_backward(ag_ctx *ctx, const ag_node *n) {                      \
        if (n->in[0]->grad)                                                              \
            NAME##_backward(n->in[0]->grad, n->out->grad, n->in[0]->data, n->out->data,  \
                            n->out->numel);                                              \
        return AG_OK;                                                                    \
    }

ACTIVATION(gelu, AG_OP_GELU)
ACTIVATION(gelu_tanh, AG_OP_GELU_TANH)
ACTIVATION(relu, AG_OP_RELU)
ACTIVATION(tanh, AG_OP_TANH)
ACTIVATION(sigmoid, AG_OP_SIGMOID)
ACTIVATION(silu, AG_OP_SILU)
