/* internal.h: what the op files share and users of the engine do not need.
 *
 * Every op file follows one pattern (see op_activation.c for the shortest):
 *
 *   1. a comment with the math: forward, then each input's gradient;
 *   2. the forward kernel over plain pointers and sizes;
 *   3. the backward kernel, adding (+=) into gradients, any of which may be NULL
 *      when nobody needs it;
 *   4. the tape function: check the inputs (naming the op and the shapes on
 *      error), allocate the output from the arena, run the forward kernel,
 *      record the node with what backward needs;
 *   5. ag_<name>_backward(ctx, node): unpack the node and call the kernel.
 */
#ifndef TAPEGRAD_AG_INTERNAL_H
#define TAPEGRAD_AG_INTERNAL_H

#include "ag.h"

#include <math.h>
#include <string.h>

/* The backward of every op, declared from the op list. */
#define AG_OP(id, name, arity, deriv) ag_status ag_##name##_backward(ag_ctx *ctx, const ag_node *n);
#include "ops.def"
#undef AG_OP

/* Returns NULL from the calling op when any listed input is NULL: the error that
 * made it NULL is already set, and is kept. */
#define AG_NEED(...)                                                            \
    do {                                                                        \
        const void *ag_need_[] = {__VA_ARGS__};                                 \
        for (size_t ag_i_ = 0; ag_i_ < sizeof ag_need_ / sizeof *ag_need_; ++ag_i_) \
            if (!ag_need_[ag_i_]) {                                             \
                if (ag_error_status() == AG_OK)                                 \
                    ag_fail(AG_ERR_ARG, "%s: an input is NULL", __func__);      \
                return NULL;                                                    \
            }                                                                   \
    } while (0)

/* Sets an error naming the op and returns NULL. */
#define AG_FAIL_NULL(...) do { ag_fail(AG_ERR_ARG, __VA_ARGS__); return NULL; } while (0)

/* A new output tensor from the arena, not zeroed (the forward kernel writes
 * every element). */
ag_tensor *ag__empty(ag_ctx *ctx, int ndim, const int64_t *shape);
/* Same shape as x. */
ag_tensor *ag__empty_like(ag_ctx *ctx, const ag_tensor *x);

/* Records a node for `out` computed from `in` (entries may be NULL). The output
 * needs a gradient when some input does and no no-grad scope is open; then the
 * node goes on the tape. Otherwise a scratch node off the tape is returned, so
 * the caller may fill saved fields either way; it should skip saving buffers
 * when !out->requires_grad. Returns NULL only on error (out of memory). */
ag_node *ag__record(ag_ctx *ctx, ag_op op, ag_tensor *out, int n_in, ag_tensor *const *in);
/* Whether an op on these inputs would be recorded. */
bool ag__wants_grad(const ag_ctx *ctx, int n_in, ag_tensor *const *in);

/* A copy of an integer tensor in the arena (nodes keep their indices). */
ag_ints *ag__ints_copy(ag_ctx *ctx, const ag_ints *x);

/* Shape checks. */
bool ag__same_shape(const ag_tensor *a, const ag_tensor *b);
/* Normalises a possibly negative dim for a tensor of ndim dims, or -1. */
int ag__dim(int dim, int ndim);

/* Broadcasting of b against a (a's shape is the output's): fills bstride with
 * b's element strides aligned to a's dims, 0 where b broadcasts. Returns false
 * when b does not broadcast to a. */
bool ag__broadcast_strides(const ag_tensor *a, int b_ndim, const int64_t *b_shape, int64_t bstride[AG_MAX_DIMS]);
/* The offset into b of a's flat element i, given bstride from above. */
static inline int64_t ag__bcast_offset(const ag_tensor *a, const int64_t *bstride, int64_t i) {
    int64_t off = 0;
    for (int d = a->ndim - 1; d >= 0; --d) {
        int64_t c = i % a->shape[d];
        i /= a->shape[d];
        off += c * bstride[d];
    }
    return off;
}

/* Row-major strides of a shape. */
void ag__strides(int ndim, const int64_t *shape, int64_t *strides);

/* e^x that gcc can vectorise (glibc's expf is a call per element): x = n ln2 + r
 * with |r| <= ln2/2, e^r by its Taylor series to r^7 (truncation below 2e-8
 * relative), 2^n put straight into the exponent bits. Relative error about
 * 1e-7 (2 ulp) over the whole range; x is clamped to [-87, 88], so the result
 * is never 0 or inf: callers that need exact 0 at -inf (masked softmax) must
 * not use it there. */
static inline float ag__exp_vec(float x) {
    /* plain comparisons, not fminf/fmaxf, which gcc keeps as calls for their
     * NaN rules; a NaN x still comes out NaN through the arithmetic below */
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* round to nearest by the 1.5*2^23 trick (rintf may stay a call) */
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = fmaf(n, -0.693145751953125f, x);   /* ln2 split in two so n*ln2_hi is exact */
    r = fmaf(n, -1.428606765330187e-06f, r);
    float p = 1.0f / 5040.0f;
    p = fmaf(p, r, 1.0f / 720.0f);
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    union { int32_t i; float f; } scale = {.i = ((int32_t)n + 127) << 23};
    return p * scale.f;
}

/* Thread helpers: a loop worth parallelising has at least this much work. */
#define AG_PAR_MIN 32768

#endif
