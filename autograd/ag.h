/* ag.h: tapegrad's autograd engine, the one header a user of the engine includes.
 *
 * What it is: float32 tensors, a step arena they live in, a tape that records
 * every op as it runs, and reverse-mode differentiation that walks the tape
 * backwards. What it is not: a lazy graph compiler, a GPU runtime, or a general
 * strided-view library (tensors are contiguous and row-major; a reshape shares
 * data, every other op writes a new tensor).
 *
 * A worked example: f(x) = a*x^2 + b at x = 3, a = 2, b = 1.
 *
 *     ag_ctx *ctx = ag_ctx_create(0);                 // arena grows on the first step
 *     ag_tensor *x = ag_scalar(ctx, 3.0f, true);      // leaf, wants a gradient
 *     ag_tensor *a = ag_scalar(ctx, 2.0f, true);
 *     ag_tensor *b = ag_scalar(ctx, 1.0f, true);
 *     ag_tensor *x2 = ag_mul(ctx, x, x);              // tape: [0] mul(x, x)
 *     ag_tensor *ax2 = ag_mul(ctx, a, x2);            // tape: [1] mul(a, x2)
 *     ag_tensor *f = ag_add(ctx, ax2, b);             // tape: [2] add(ax2, b)
 *     if (!f) { fprintf(stderr, "%s\n", ag_error()); ... }
 *     ag_backward(ctx, f, NULL);                      // seeds df = 1, walks 2, 1, 0
 *     // f->data[0] = 19; x->grad[0] = 2*a*x = 12; a->grad[0] = x^2 = 9; b->grad[0] = 1
 *
 * Walking the tape backwards: node [2] adds df into dax2 and db; node [1] adds
 * dax2*x2 into da and dax2*a into dx2; node [0] adds dx2*x into dx twice, once
 * for each use of x, because gradients always accumulate.
 *
 * Errors. Every op returns the new tensor, or NULL when something is wrong (bad
 * shapes, an arena that is too small, a NaN loss). The message is kept per
 * thread and read with ag_error(); it names the op and the shapes. An op given
 * a NULL input returns NULL at once and keeps the first message, so a whole
 * forward pass can be written without checks and tested once at the end.
 * Nothing in the engine calls exit() or abort() on bad input.
 *
 * Memory has two lifetimes and no reference counts:
 *   - model lifetime: parameters live in an ag_params registry, one flat block
 *     for all values and one for all gradients, each parameter a named slice;
 *   - step lifetime: every activation, its gradient and the tape's saved
 *     buffers come from the context's arena, which ag_ctx_reset() empties
 *     after each optimizer step. After the first step a step allocates nothing.
 */
#ifndef TAPEGRAD_AG_H
#define TAPEGRAD_AG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

typedef enum {
    AG_OK = 0,
    AG_ERR_ARG,     /* a bad argument: shape, dimension, range */
    AG_ERR_MEMORY,  /* the arena is too small, or the system is out of memory */
    AG_ERR_NUMERIC, /* a NaN or infinity where it must not be */
    AG_ERR_STATE,   /* a call in the wrong order (backward twice, no seed) */
    AG_ERR_IO,      /* a file could not be read or written */
} ag_status;

/* The last error message of this thread ("" when none). */
const char *ag_error(void);
/* The status of the last error of this thread (AG_OK when none). */
ag_status ag_error_status(void);
/* Sets the message (printf-style) and returns `status`, so that library code can
 * write `return ag_fail(AG_ERR_ARG, "...")`. */
ag_status ag_fail(ag_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Clears the message. */
void ag_error_clear(void);

/* ---------------------------------------------------------------- tensors */

#define AG_MAX_DIMS 4
#define AG_MAX_INPUTS 8

/* A contiguous float32 tensor of up to four dimensions, row-major.
 * `grad` has the same shape; it is NULL until someone needs it. */
typedef struct ag_tensor {
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    int64_t numel;
    float *data;
    float *grad;
    bool requires_grad;
    const char *name; /* a parameter's Hugging Face name, or NULL */
} ag_tensor;

/* Integer tensors: token ids, class labels, gather indices. No gradient. */
typedef struct ag_ints {
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    int64_t numel;
    int32_t *data;
} ag_ints;

/* Writes "[2,3,4]" into buf (at least 64 bytes) and returns buf. */
char *ag_shape_str(char *buf, int ndim, const int64_t *shape);
/* Sets an ag_ints over caller-owned memory. */
ag_ints ag_ints_wrap(int32_t *data, int ndim, const int64_t *shape);

/* ---------------------------------------------------------------- memory */

/* Counts every heap allocation the engine makes (malloc, calloc, realloc), so
 * that a test can show that a step after the first allocates nothing. */
int64_t ag_alloc_count(void);
void *ag_malloc(size_t bytes);
void *ag_calloc(size_t n, size_t size);
void *ag_realloc(void *p, size_t bytes);
void ag_free(void *p);

/* Reads a whole file into a malloc'd, NUL-terminated buffer (free() it), at
 * most max_bytes; *len receives its length when len is not NULL. Returns NULL
 * with AG_ERR_IO and a message "<what> <path>: ..." when the file cannot be
 * opened or read, or is larger than max_bytes. */
char *ag_read_file(const char *what, const char *path, size_t max_bytes, size_t *len);
/* Creates a folder and its missing parents (mkdir -p). Returns AG_OK, or
 * AG_ERR_IO naming the path that could not be made. */
ag_status ag_make_dirs(const char *path);

/* ---------------------------------------------------------------- parameters */

/* The model-lifetime registry: every parameter a named slice of one value block
 * and one gradient block. Declare all parameters, then finalize once. */
typedef struct ag_params {
    ag_tensor **p;     /* the parameters in the order they were declared */
    int64_t n, cap;
    float *values;     /* [total] every parameter's data, in order */
    float *grads;      /* [total] every parameter's gradient, in order */
    int64_t total;     /* total number of floats */
    bool finalized;
} ag_params;

void ag_params_init(ag_params *ps);
void ag_params_free(ag_params *ps);
/* Declares a parameter; returns it (data NULL until finalize), or NULL when the
 * name is taken or the shape is bad. */
ag_tensor *ag_params_add(ag_params *ps, const char *name, int ndim, const int64_t *shape);
/* Allocates the two blocks (values zeroed) and points each parameter at its slice. */
ag_status ag_params_finalize(ag_params *ps);
/* The parameter called `name`, or NULL. */
ag_tensor *ag_params_find(const ag_params *ps, const char *name);
/* Sets every gradient to zero: one memset over the gradient block. */
void ag_params_zero_grad(ag_params *ps);

/* ---------------------------------------------------------------- the context */

typedef enum {
#define AG_OP(id, name, arity, deriv) AG_OP_##id,
#include "ops.def"
#undef AG_OP
    AG_OP_COUNT
} ag_op;

/* One tape entry: the op, its inputs and output, and what backward needs. */
typedef struct ag_node {
    ag_op op;
    int n_in;
    ag_tensor *in[AG_MAX_INPUTS]; /* float inputs; NULL for an absent optional one */
    ag_tensor *out;
    const ag_ints *idx;           /* integer input (ids, labels), copied into the arena */
    int64_t i[8];                 /* saved integers (dims, flags, sizes) */
    float f[4];                   /* saved scalars (eps, scale, p) */
    uint64_t seed;                /* for ops that draw random numbers */
    void *saved;                  /* a saved buffer in the arena (mask, mean/rstd, P) */
    void *saved2;
} ag_node;

typedef struct ag_arena ag_arena;

typedef struct ag_ctx {
    ag_arena *arena;
    ag_node *nodes; /* the tape, in execution order */
    int64_t n_nodes, cap_nodes;
    int no_grad;    /* > 0 inside a no-grad scope: nothing is recorded */
    bool training;  /* dropout is active only in training mode */
    uint64_t seed;  /* dropout streams are drawn from (seed, counter) */
    uint64_t rng_counter;
    bool backward_done;
} ag_ctx;

/* Creates a context whose arena holds `arena_bytes`. With 0 the arena grows as
 * the first step needs and is then fixed at that size (reset() merges what it
 * grew into one block); with a size the arena never grows and an allocation
 * past it fails with AG_ERR_MEMORY and a message saying how much was needed.
 * Returns NULL when out of memory. */
ag_ctx *ag_ctx_create(size_t arena_bytes);
void ag_ctx_free(ag_ctx *ctx);
/* Empties the tape and the arena: every tensor of the step is gone. */
void ag_ctx_reset(ag_ctx *ctx);
/* Bytes in use now, the most ever in use, and the arena's capacity. */
size_t ag_ctx_arena_used(const ag_ctx *ctx);
size_t ag_ctx_arena_peak(const ag_ctx *ctx);
size_t ag_ctx_arena_capacity(const ag_ctx *ctx);
/* Allocates `bytes` from the arena (64-byte aligned), or NULL with an error. */
void *ag_arena_alloc(ag_ctx *ctx, size_t bytes);

/* No-grad scope: ops run but nothing is recorded, and outputs need no gradient.
 * Scopes nest. */
void ag_no_grad_begin(ag_ctx *ctx);
void ag_no_grad_end(ag_ctx *ctx);

/* ---------------------------------------------------------------- tensors in the arena */

/* A new zeroed tensor. A leaf with requires_grad gets a zeroed gradient too. */
ag_tensor *ag_new(ag_ctx *ctx, int ndim, const int64_t *shape, bool requires_grad);
/* A new tensor holding a copy of `data` (numel floats). */
ag_tensor *ag_from(ag_ctx *ctx, const float *data, int ndim, const int64_t *shape, bool requires_grad);
/* A [1] tensor holding v. */
ag_tensor *ag_scalar(ag_ctx *ctx, float v, bool requires_grad);
/* An integer tensor in the arena holding a copy of `data`. */
ag_ints *ag_ints_from(ag_ctx *ctx, const int32_t *data, int ndim, const int64_t *shape);

/* Shape helpers: AG_SHAPE(2, 3) builds an int64_t array literal. */
#define AG_SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define AG_NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

/* ---------------------------------------------------------------- backward and the tape */

/* Reverse-mode differentiation. `seed` is d(loss) (numel floats) or NULL for a
 * one-element loss, for which d(loss) = 1. Gradients are added (+=) into every
 * tensor that requires one; parameters' gradients must be zeroed by the caller.
 * Errors: a non-scalar loss without a seed, a loss that needs no gradient. */
ag_status ag_backward(ag_ctx *ctx, ag_tensor *loss, const float *seed);

/* The op's name ("matmul") and its one-line derivative. */
const char *ag_op_name(ag_op op);
const char *ag_op_derivative(ag_op op);
int ag_op_arity(ag_op op);
/* The op called `name`, or AG_OP_COUNT. */
ag_op ag_op_from_name(const char *name);

/* Prints one line per node: index, op, input shapes -> output shape, and, once
 * backward has run, the norm of the output's gradient. */
void ag_tape_print(FILE *f, const ag_ctx *ctx);
/* Writes the tape as a Graphviz digraph: tensors are boxes, ops are ellipses. */
void ag_tape_dot(FILE *f, const ag_ctx *ctx);

/* ---------------------------------------------------------------- threads */

/* Sets the thread count of the OpenMP kernels and of OpenBLAS together
 * (n <= 0: all cores). Both run on one OpenMP pool, so they never fight. */
void ag_set_threads(int n);
int ag_get_threads(void);
/* Describes the BLAS in use ("OpenBLAS 0.3.21 ... openmp"). */
const char *ag_blas_info(void);

/* ---------------------------------------------------------------- random numbers */

/* A counter-based generator: the i-th number of stream `seed` is a pure function
 * of (seed, i), so a dropout mask can be re-drawn instead of stored, and a run
 * that resumes from (seed, counter) draws the same numbers. */
uint64_t ag_rng_u64(uint64_t seed, uint64_t i);
/* Uniform in [0, 1) with 24 random bits. */
float ag_rng_uniform(uint64_t seed, uint64_t i);
void ag_ctx_seed(ag_ctx *ctx, uint64_t seed);
void ag_ctx_train(ag_ctx *ctx, bool training);

/* ================================================================ ops
 * Each returns the output tensor, or NULL with ag_error() set. Shapes are
 * written [B,T,C]; "..." means any leading dimensions. */

/* Elementwise with broadcasting (numpy rules, dims aligned from the right):
 * a is the full shape; b may have size 1 or be absent in any dim (a bias [C],
 * a row [1,C], a column [N,1], ...). out has a's shape. */
ag_tensor *ag_add(ag_ctx *ctx, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_sub(ag_ctx *ctx, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_mul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_div(ag_ctx *ctx, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_scale(ag_ctx *ctx, ag_tensor *x, float s);
ag_tensor *ag_add_scalar(ag_ctx *ctx, ag_tensor *x, float s);

/* C = op(A) op(B), op = transpose when the flag is set, over the last two dims.
 * A [...,M,K] and B [...,K,N] with the same leading dims, or B 2-D and shared
 * by every batch. out [...,M,N]. */
ag_tensor *ag_matmul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b, bool trans_a, bool trans_b);

typedef enum {
    AG_LINEAR_OUT_IN = 0, /* W [out,in], y = x W^T + b (torch.nn.Linear) */
    AG_LINEAR_IN_OUT = 1, /* W [in,out], y = x W + b (GPT-2's Conv1D) */
} ag_linear_layout;
/* x [...,in] -> [...,out]; b [out] or NULL. */
ag_tensor *ag_linear(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *b, ag_linear_layout layout);

/* W [V,C], ids [...] -> [...,C]. Rows whose id is padding_idx get no gradient
 * (padding_idx < 0: none). Errors: an id outside [0, V). */
ag_tensor *ag_embedding(ag_ctx *ctx, ag_tensor *w, const ag_ints *ids, int padding_idx);
/* x.index_select(dim, idx) with idx 1-D. */
ag_tensor *ag_index_select(ag_ctx *ctx, ag_tensor *x, int dim, const ag_ints *idx);
/* torch.gather(x, -1, idx): idx has x's leading dims and any last dim. */
ag_tensor *ag_gather(ag_ctx *ctx, ag_tensor *x, const ag_ints *idx);

/* Over the last dim. w, b [C] or NULL. */
ag_tensor *ag_layernorm(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *b, float eps);
/* T5's RMS norm: x / sqrt(mean(x^2) + eps) * w, no mean subtraction, no bias. */
ag_tensor *ag_rmsnorm(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, float eps);

/* softmax(x + mask) over the last dim. mask is additive, broadcast like ag_add's
 * b, or NULL. A row whose every entry is -inf gives zeros. */
ag_tensor *ag_softmax(ag_ctx *ctx, ag_tensor *x, ag_tensor *mask);
ag_tensor *ag_log_softmax(ag_ctx *ctx, ag_tensor *x, ag_tensor *mask);

/* Losses. Each returns a [1] tensor. */
typedef enum { AG_REDUCE_MEAN = 0, AG_REDUCE_SUM = 1 } ag_reduction;
#define AG_IGNORE_INDEX (-100)
/* logits [...,V], targets [...] (AG_IGNORE_INDEX rows count for nothing).
 * Mean over counted rows, or sum. label_smoothing in [0, 1) as PyTorch defines it.
 * Errors: a target outside [0, V) that is not ignored; a non-finite loss. */
ag_tensor *ag_cross_entropy(ag_ctx *ctx, ag_tensor *logits, const ag_ints *targets,
                            float label_smoothing, ag_reduction reduction);
/* mean(max(x,0) - x*y + log(1+exp(-|x|))), y in [0,1], same shape as x. */
ag_tensor *ag_bce_logits(ag_ctx *ctx, ag_tensor *x, ag_tensor *y);
/* DistilBERT's distillation loss: KL(softmax(t/T) || softmax(s/T)) * T^2,
 * summed over the last dim and averaged over rows ("batchmean"). */
ag_tensor *ag_kl_div(ag_ctx *ctx, ag_tensor *student, ag_tensor *teacher, float temperature);
/* x1, x2 [N,D]; y [N] of +1/-1. PyTorch's cosine_embedding_loss, mean. */
ag_tensor *ag_cosine_embedding(ag_ctx *ctx, ag_tensor *x1, ag_tensor *x2, const ag_ints *y, float margin);
/* mean((a-b)^2), same shapes. */
ag_tensor *ag_mse(ag_ctx *ctx, ag_tensor *a, ag_tensor *b);

/* Activations. */
ag_tensor *ag_gelu(ag_ctx *ctx, ag_tensor *x);
ag_tensor *ag_gelu_tanh(ag_ctx *ctx, ag_tensor *x);
ag_tensor *ag_relu(ag_ctx *ctx, ag_tensor *x);
ag_tensor *ag_tanh(ag_ctx *ctx, ag_tensor *x);
ag_tensor *ag_sigmoid(ag_ctx *ctx, ag_tensor *x);
ag_tensor *ag_silu(ag_ctx *ctx, ag_tensor *x);

/* Inverted dropout with probability p, active only in training mode (else it
 * returns x itself and records nothing). The mask is kept for backward. */
ag_tensor *ag_dropout(ag_ctx *ctx, ag_tensor *x, float p);

/* Shape ops. A reshape shares x's data; one dim may be -1. */
ag_tensor *ag_reshape(ag_ctx *ctx, ag_tensor *x, int ndim, const int64_t *shape);
/* out.shape[i] = x.shape[perm[i]]. */
ag_tensor *ag_permute(ag_ctx *ctx, ag_tensor *x, const int *perm);
/* Swaps two dims (a permute). */
ag_tensor *ag_transpose(ag_ctx *ctx, ag_tensor *x, int d0, int d1);
/* Concatenates n (1..8) tensors along dim; all other dims equal. */
ag_tensor *ag_concat(ag_ctx *ctx, ag_tensor *const *xs, int n, int dim);
/* x[..., start:start+len, ...] along dim. */
ag_tensor *ag_slice(ag_ctx *ctx, ag_tensor *x, int dim, int64_t start, int64_t len);
/* Splits x along dim into n equal parts (n slices), written into outs. */
ag_status ag_split(ag_ctx *ctx, ag_tensor *x, int dim, int n, ag_tensor **outs);
/* out = mask != 0 ? value : x; mask broadcast like ag_add's b, no gradient. */
ag_tensor *ag_masked_fill(ag_ctx *ctx, ag_tensor *x, ag_tensor *mask, float value);

/* Reductions over one dim (removed from the shape unless keepdim) or, with
 * dim = AG_ALL, over everything (out [1]). Negative dims count from the end. */
#define AG_ALL 100
ag_tensor *ag_sum(ag_ctx *ctx, ag_tensor *x, int dim, bool keepdim);
ag_tensor *ag_mean(ag_ctx *ctx, ag_tensor *x, int dim, bool keepdim);

/* Scaled dot-product attention, fused: one op on the tape, P kept for backward.
 * q [B,NH,T,D], k and v [B,NH,S,D]; out [B,NH,T,D]. */
typedef struct ag_attn_opts {
    bool causal;          /* query i sees keys j <= i + (S - T) */
    int window;           /* > 0: query i sees only keys with i + (S-T) - j < window (GPT-Neo local) */
    bool no_scale;        /* true: no 1/sqrt(D) (T5) */
    float scale;          /* used when non-zero and no_scale is false; else 1/sqrt(D) */
    ag_tensor *bias;      /* additive, broadcast to [B,NH,T,S] ([NH,T,S], [1,NH,T,S], ...); may need a gradient (T5) */
    const ag_ints *key_mask; /* [B,S]: 0 = padding, never attended */
    float dropout;        /* dropout on P, training mode only */
} ag_attn_opts;
ag_tensor *ag_attention(ag_ctx *ctx, ag_tensor *q, ag_tensor *k, ag_tensor *v, const ag_attn_opts *opts);
/* The same function composed of matmul, scale, add, softmax and dropout ops:
 * the reference the fused op is tested against (ag_attention_composed's mask
 * becomes an additive -inf bias). */
ag_tensor *ag_attention_composed(ag_ctx *ctx, ag_tensor *q, ag_tensor *k, ag_tensor *v, const ag_attn_opts *opts);

/* Rotary position embedding on x [B,NH,T,D], over the first rotary_dim dims
 * (even, <= D), positions pos_offset .. pos_offset+T-1, frequencies
 * base^(-2i/rotary_dim). interleaved: GPT-J's pairs (x0,x1),(x2,x3)...; else
 * GPT-NeoX/LLaMA's halves (x_i, x_{i+rotary_dim/2}). */
ag_tensor *ag_rope(ag_ctx *ctx, ag_tensor *x, int rotary_dim, int64_t pos_offset, float base, bool interleaved);

#ifdef __cplusplus
}
#endif
#endif
