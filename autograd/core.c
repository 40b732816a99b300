/* core.c: errors, counted allocation, the step arena, tensors and the parameter
 * registry. The tape and backward are in tape.c; the ops in op_*.c.
 *
 * The arena is a bump allocator. Each step takes its activations, gradients and
 * saved buffers from it and ag_ctx_reset() gives them all back at once. When it
 * may grow (created with size 0) and a request does not fit, it opens an extra
 * chunk; the next reset frees the extra chunks and replaces the first one by a
 * single block as large as the whole step needed, so from the second step on a
 * step allocates nothing. A fixed arena instead fails with the size it needed.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- errors */

static _Thread_local char err_msg[1024];
static _Thread_local ag_status err_status;

const char *ag_error(void) { return err_msg; }
ag_status ag_error_status(void) { return err_status; }
void ag_error_clear(void) { err_msg[0] = 0; err_status = AG_OK; }

ag_status ag_fail(ag_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    err_status = status;
    return status;
}

/* ---------------------------------------------------------------- counted allocation */

static int64_t n_allocs; /* relaxed counter; tests read it between steps */

int64_t ag_alloc_count(void) { return __atomic_load_n(&n_allocs, __ATOMIC_RELAXED); }
static void count_alloc(void) { __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED); }

void *ag_malloc(size_t bytes) { count_alloc(); return malloc(bytes ? bytes : 1); }
void *ag_calloc(size_t n, size_t size) { count_alloc(); return calloc(n ? n : 1, size ? size : 1); }
void *ag_realloc(void *p, size_t bytes) { count_alloc(); return realloc(p, bytes ? bytes : 1); }
void ag_free(void *p) { free(p); }

static void *aligned_block(size_t bytes) {
    count_alloc();
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

/* ---------------------------------------------------------------- files */

char *ag_read_file(const char *what, const char *path, size_t max_bytes, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { ag_fail(AG_ERR_IO, "%s %s: cannot open: %s", what, path, strerror(errno)); return NULL; }
    /* read in growing chunks rather than trusting a size: pipes and /dev/stdin have none */
    size_t n = 0, cap = 0;
    char *text = NULL;
    for (;;) {
        if (cap - n < 4096) {
            size_t want = cap ? cap * 2 : 65536;
            char *t = ag_realloc(text, want + 1);
            if (!t) { ag_fail(AG_ERR_MEMORY, "%s %s: out of memory", what, path); goto fail; }
            text = t, cap = want;
        }
        size_t got = fread(text + n, 1, cap - n, f);
        n += got;
        if (n > max_bytes) { ag_fail(AG_ERR_IO, "%s %s: larger than %zu bytes", what, path, max_bytes); goto fail; }
        if (got == 0) break;
    }
    if (ferror(f)) { ag_fail(AG_ERR_IO, "%s %s: read failed: %s", what, path, strerror(errno)); goto fail; }
    fclose(f);
    text[n] = 0;
    if (len) *len = n;
    return text;
fail:
    fclose(f);
    ag_free(text);
    return NULL;
}

ag_status ag_make_dirs(const char *path) {
    char buf[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return ag_fail(AG_ERR_IO, "cannot make folder '%s': bad path", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; ++i) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        struct stat sb;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return ag_fail(AG_ERR_IO, "cannot make folder %s: %s", buf, strerror(errno));
        if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return ag_fail(AG_ERR_IO, "cannot make folder %s: a file is in the way", buf);
        buf[i] = c;
    }
    return AG_OK;
}

/* ---------------------------------------------------------------- the arena */

#define ARENA_ALIGN 64
#define ARENA_MAX_CHUNKS 64

struct ag_arena {
    char *chunk[ARENA_MAX_CHUNKS]; /* chunk[0] is the main block */
    size_t size[ARENA_MAX_CHUNKS];
    int n_chunks;
    size_t off;      /* bump offset in the last chunk */
    size_t used;     /* bytes handed out this step, over all chunks */
    size_t peak;     /* the most `used` has ever been */
    bool growable;
};

static size_t align_up(size_t n) { return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1); }

void *ag_arena_alloc(ag_ctx *ctx, size_t bytes) {
    ag_arena *a = ctx->arena;
    bytes = align_up(bytes ? bytes : 1);
    int last = a->n_chunks - 1;
    if (a->off + bytes > a->size[last]) {
        if (!a->growable) {
            ag_fail(AG_ERR_MEMORY,
                    "arena: out of memory: a request of %zu bytes does not fit "
                    "(%zu of %zu in use); this step needs at least %zu bytes "
                    "(hint: create the context with a larger arena, or 0 to let it size itself)",
                    bytes, a->used, a->size[0], a->used + bytes);
            return NULL;
        }
        if (a->n_chunks == ARENA_MAX_CHUNKS) {
            ag_fail(AG_ERR_MEMORY, "arena: more than %d chunks in one step", ARENA_MAX_CHUNKS);
            return NULL;
        }
        /* grow geometrically so one step opens few chunks */
        size_t want = a->size[last] * 2;
        if (want < bytes) want = bytes;
        char *c = aligned_block(want);
        if (!c) {
            ag_fail(AG_ERR_MEMORY, "arena: the system refused %zu more bytes (%zu in use)", want, a->used);
            return NULL;
        }
        a->chunk[a->n_chunks] = c;
        a->size[a->n_chunks] = want;
        a->n_chunks++;
        a->off = 0;
        last++;
    }
    void *p = a->chunk[last] + a->off;
    a->off += bytes;
    a->used += bytes;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

static ag_arena *arena_create(size_t bytes) {
    ag_arena *a = ag_calloc(1, sizeof *a);
    if (!a) return NULL;
    a->growable = bytes == 0;
    a->size[0] = bytes ? align_up(bytes) : (size_t)1 << 20;
    a->chunk[0] = aligned_block(a->size[0]);
    if (!a->chunk[0]) { ag_free(a); return NULL; }
    a->n_chunks = 1;
    return a;
}

static void arena_reset(ag_arena *a) {
    if (a->n_chunks > 1) {
        /* The step outgrew the main block: replace everything by one block that
         * holds the whole peak, so the next step fits without allocating. */
        for (int i = 0; i < a->n_chunks; ++i) free(a->chunk[i]);
        size_t want = align_up(a->peak);
        a->chunk[0] = aligned_block(want);
        a->size[0] = a->chunk[0] ? want : 0;
        a->n_chunks = 1;
    }
    a->off = 0;
    a->used = 0;
}

static void arena_free(ag_arena *a) {
    if (!a) return;
    for (int i = 0; i < a->n_chunks; ++i) free(a->chunk[i]);
    ag_free(a);
}

/* ---------------------------------------------------------------- the context */

ag_ctx *ag_ctx_create(size_t arena_bytes) {
    ag_ctx *ctx = ag_calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->arena = arena_create(arena_bytes);
    ctx->cap_nodes = 256;
    ctx->nodes = ag_malloc((size_t)ctx->cap_nodes * sizeof *ctx->nodes);
    if (!ctx->arena || !ctx->nodes) { ag_ctx_free(ctx); return NULL; }
    ctx->seed = 0x5eed;
    return ctx;
}

void ag_ctx_free(ag_ctx *ctx) {
    if (!ctx) return;
    arena_free(ctx->arena);
    ag_free(ctx->nodes);
    ag_free(ctx);
}

void ag_ctx_reset(ag_ctx *ctx) {
    arena_reset(ctx->arena);
    ctx->n_nodes = 0;
    ctx->backward_done = false;
}

size_t ag_ctx_arena_used(const ag_ctx *ctx) { return ctx->arena->used; }
size_t ag_ctx_arena_peak(const ag_ctx *ctx) { return ctx->arena->peak; }
size_t ag_ctx_arena_capacity(const ag_ctx *ctx) {
    size_t s = 0;
    for (int i = 0; i < ctx->arena->n_chunks; ++i) s += ctx->arena->size[i];
    return s;
}

void ag_no_grad_begin(ag_ctx *ctx) { ctx->no_grad++; }
void ag_no_grad_end(ag_ctx *ctx) { if (ctx->no_grad > 0) ctx->no_grad--; }
void ag_ctx_seed(ag_ctx *ctx, uint64_t seed) { ctx->seed = seed; ctx->rng_counter = 0; }
void ag_ctx_train(ag_ctx *ctx, bool training) { ctx->training = training; }

/* ---------------------------------------------------------------- random numbers */

/* SplitMix64's finaliser over (seed, i): a strong 64-bit mix, so the i-th draw of
 * a stream needs no state but the counter. tests/gen_fixtures.py has its twin. */
uint64_t ag_rng_u64(uint64_t seed, uint64_t i) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float ag_rng_uniform(uint64_t seed, uint64_t i) {
    return (float)(ag_rng_u64(seed, i) >> 40) * (1.0f / 16777216.0f);
}

/* ---------------------------------------------------------------- shapes */

char *ag_shape_str(char *buf, int ndim, const int64_t *shape) {
    int k = sprintf(buf, "[");
    for (int i = 0; i < ndim && i < AG_MAX_DIMS; ++i)
        k += sprintf(buf + k, i ? ",%lld" : "%lld", (long long)shape[i]);
    sprintf(buf + k, "]");
    return buf;
}

static bool shape_ok(int ndim, const int64_t *shape, int64_t *numel) {
    if (ndim < 1 || ndim > AG_MAX_DIMS) return false;
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) {
        if (shape[i] < 0 || shape[i] > ((int64_t)1 << 40)) return false;
        n *= shape[i];
    }
    *numel = n;
    return true;
}

void ag__strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; --d) { strides[d] = s; s *= shape[d]; }
}

bool ag__same_shape(const ag_tensor *a, const ag_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; ++i)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

int ag__dim(int dim, int ndim) {
    if (dim < 0) dim += ndim;
    return dim >= 0 && dim < ndim ? dim : -1;
}

bool ag__broadcast_strides(const ag_tensor *a, int b_ndim, const int64_t *b_shape, int64_t bstride[AG_MAX_DIMS]) {
    if (b_ndim > a->ndim) return false;
    int64_t s = 1;
    for (int d = a->ndim - 1; d >= 0; --d) {
        int bd = d - (a->ndim - b_ndim);
        if (bd < 0) { bstride[d] = 0; continue; }
        if (b_shape[bd] == a->shape[d]) {
            bstride[d] = a->shape[d] == 1 ? 0 : s;
        } else if (b_shape[bd] == 1) {
            bstride[d] = 0;
        } else {
            return false;
        }
        s *= b_shape[bd];
    }
    return true;
}

/* ---------------------------------------------------------------- tensors in the arena */

ag_tensor *ag__empty(ag_ctx *ctx, int ndim, const int64_t *shape) {
    int64_t numel;
    if (!shape_ok(ndim, shape, &numel)) {
        char s[64];
        ag_fail(AG_ERR_ARG, "tensor: bad shape %s (1 to %d dims, sizes >= 0)",
                ag_shape_str(s, ndim < 0 ? 0 : ndim, shape), AG_MAX_DIMS);
        return NULL;
    }
    ag_tensor *t = ag_arena_alloc(ctx, sizeof *t);
    float *data = ag_arena_alloc(ctx, (size_t)numel * sizeof(float));
    if (!t || !data) return NULL;
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = numel;
    t->data = data;
    return t;
}

ag_tensor *ag__empty_like(ag_ctx *ctx, const ag_tensor *x) { return ag__empty(ctx, x->ndim, x->shape); }

ag_tensor *ag_new(ag_ctx *ctx, int ndim, const int64_t *shape, bool requires_grad) {
    ag_tensor *t = ag__empty(ctx, ndim, shape);
    if (!t) return NULL;
    memset(t->data, 0, (size_t)t->numel * sizeof(float));
    if (requires_grad) {
        t->requires_grad = true;
        t->grad = ag_arena_alloc(ctx, (size_t)t->numel * sizeof(float));
        if (!t->grad) return NULL;
        memset(t->grad, 0, (size_t)t->numel * sizeof(float));
    }
    return t;
}

ag_tensor *ag_from(ag_ctx *ctx, const float *data, int ndim, const int64_t *shape, bool requires_grad) {
    ag_tensor *t = ag_new(ctx, ndim, shape, requires_grad);
    if (t && data) memcpy(t->data, data, (size_t)t->numel * sizeof(float));
    return t;
}

ag_tensor *ag_scalar(ag_ctx *ctx, float v, bool requires_grad) {
    return ag_from(ctx, &v, 1, AG_SHAPE(1), requires_grad);
}

ag_ints ag_ints_wrap(int32_t *data, int ndim, const int64_t *shape) {
    ag_ints x = {0};
    x.ndim = ndim;
    x.numel = 1;
    for (int i = 0; i < ndim && i < AG_MAX_DIMS; ++i) { x.shape[i] = shape[i]; x.numel *= shape[i]; }
    x.data = data;
    return x;
}

ag_ints *ag_ints_from(ag_ctx *ctx, const int32_t *data, int ndim, const int64_t *shape) {
    int64_t numel;
    if (!shape_ok(ndim, shape, &numel)) {
        char s[64];
        ag_fail(AG_ERR_ARG, "ints: bad shape %s", ag_shape_str(s, ndim < 0 ? 0 : ndim, shape));
        return NULL;
    }
    ag_ints *x = ag_arena_alloc(ctx, sizeof *x);
    int32_t *d = ag_arena_alloc(ctx, (size_t)numel * sizeof(int32_t));
    if (!x || !d) return NULL;
    *x = ag_ints_wrap(d, ndim, shape);
    if (data) memcpy(d, data, (size_t)numel * sizeof(int32_t));
    else memset(d, 0, (size_t)numel * sizeof(int32_t));
    return x;
}

ag_ints *ag__ints_copy(ag_ctx *ctx, const ag_ints *x) {
    return ag_ints_from(ctx, x->data, x->ndim, x->shape);
}

/* ---------------------------------------------------------------- parameters */

void ag_params_init(ag_params *ps) { memset(ps, 0, sizeof *ps); }

void ag_params_free(ag_params *ps) {
    for (int64_t i = 0; i < ps->n; ++i) {
        ag_free((void *)ps->p[i]->name);
        ag_free(ps->p[i]);
    }
    ag_free(ps->p);
    free(ps->values);
    free(ps->grads);
    memset(ps, 0, sizeof *ps);
}

ag_tensor *ag_params_find(const ag_params *ps, const char *name) {
    for (int64_t i = 0; i < ps->n; ++i)
        if (strcmp(ps->p[i]->name, name) == 0) return ps->p[i];
    return NULL;
}

ag_tensor *ag_params_add(ag_params *ps, const char *name, int ndim, const int64_t *shape) {
    int64_t numel;
    char s[64];
    if (ps->finalized) { ag_fail(AG_ERR_STATE, "params: '%s' declared after finalize", name); return NULL; }
    if (!shape_ok(ndim, shape, &numel)) {
        ag_fail(AG_ERR_ARG, "params: '%s' has a bad shape %s", name, ag_shape_str(s, ndim < 0 ? 0 : ndim, shape));
        return NULL;
    }
    if (ag_params_find(ps, name)) { ag_fail(AG_ERR_ARG, "params: '%s' is declared twice", name); return NULL; }
    if (ps->n == ps->cap) {
        int64_t cap = ps->cap ? ps->cap * 2 : 64;
        ag_tensor **p = ag_realloc(ps->p, (size_t)cap * sizeof *p);
        if (!p) { ag_fail(AG_ERR_MEMORY, "params: out of memory"); return NULL; }
        ps->p = p;
        ps->cap = cap;
    }
    ag_tensor *t = ag_calloc(1, sizeof *t);
    char *nm = ag_malloc(strlen(name) + 1);
    if (!t || !nm) { ag_free(t); ag_free(nm); ag_fail(AG_ERR_MEMORY, "params: out of memory"); return NULL; }
    strcpy(nm, name);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = numel;
    t->requires_grad = true;
    t->name = nm;
    ps->p[ps->n++] = t;
    ps->total += numel;
    return t;
}

ag_status ag_params_finalize(ag_params *ps) {
    if (ps->finalized) return ag_fail(AG_ERR_STATE, "params: finalized twice");
    size_t bytes = (size_t)(ps->total ? ps->total : 1) * sizeof(float);
    ps->values = aligned_block(bytes);
    ps->grads = aligned_block(bytes);
    if (!ps->values || !ps->grads)
        return ag_fail(AG_ERR_MEMORY, "params: cannot allocate 2 x %zu bytes for %lld parameters",
                       bytes, (long long)ps->total);
    memset(ps->values, 0, bytes);
    memset(ps->grads, 0, bytes);
    int64_t off = 0;
    for (int64_t i = 0; i < ps->n; ++i) {
        ps->p[i]->data = ps->values + off;
        ps->p[i]->grad = ps->grads + off;
        off += ps->p[i]->numel;
    }
    ps->finalized = true;
    return AG_OK;
}

void ag_params_zero_grad(ag_params *ps) {
    if (ps->grads) memset(ps->grads, 0, (size_t)ps->total * sizeof(float));
}
