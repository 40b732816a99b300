/* tape.c: recording ops, walking them backwards, and showing the tape.
 *
 * The tape is an array of nodes in the order the ops ran. Because an op can only
 * use tensors that already exist, every node comes after the nodes that made its
 * inputs: the tape is already a topological order, and backward is one loop
 * from the last node to the first. A node whose output received no gradient
 * (it does not lead to the loss) is skipped.
 */
#include "internal.h"

#include <omp.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- the op table */

typedef struct {
    const char *name;
    int arity;
    const char *derivative;
    ag_status (*backward)(ag_ctx *ctx, const ag_node *n);
} op_info;

static const op_info op_table[] = {
#define AG_OP(id, name, arity, deriv) {#name, arity, deriv, ag_##name##_backward},
#include "ops.def"
#undef AG_OP
};
_Static_assert(sizeof op_table / sizeof op_table[0] == AG_OP_COUNT, "op table out of step with ops.def");

const char *ag_op_name(ag_op op) { return op < AG_OP_COUNT ? op_table[op].name : "?"; }
const char *ag_op_derivative(ag_op op) { return op < AG_OP_COUNT ? op_table[op].derivative : "?"; }
int ag_op_arity(ag_op op) { return op < AG_OP_COUNT ? op_table[op].arity : 0; }

ag_op ag_op_from_name(const char *name) {
    for (int i = 0; i < AG_OP_COUNT; ++i)
        if (strcmp(op_table[i].name, name) == 0) return (ag_op)i;
    return AG_OP_COUNT;
}

/* ---------------------------------------------------------------- recording */

bool ag__wants_grad(const ag_ctx *ctx, int n_in, ag_tensor *const *in) {
    if (ctx->no_grad) return false;
    for (int i = 0; i < n_in; ++i)
        if (in[i] && in[i]->requires_grad) return true;
    return false;
}

ag_node *ag__record(ag_ctx *ctx, ag_op op, ag_tensor *out, int n_in, ag_tensor *const *in) {
    static _Thread_local ag_node scratch; /* filled and ignored when nothing is recorded */
    out->requires_grad = ag__wants_grad(ctx, n_in, in);
    ag_node *n = &scratch;
    if (out->requires_grad) {
        if (ctx->n_nodes == ctx->cap_nodes) {
            int64_t cap = ctx->cap_nodes * 2;
            ag_node *nodes = ag_realloc(ctx->nodes, (size_t)cap * sizeof *nodes);
            if (!nodes) {
                ag_fail(AG_ERR_MEMORY, "tape: out of memory growing to %lld nodes", (long long)cap);
                return NULL;
            }
            ctx->nodes = nodes;
            ctx->cap_nodes = cap;
        }
        n = &ctx->nodes[ctx->n_nodes++];
    }
    memset(n, 0, sizeof *n);
    n->op = op;
    n->out = out;
    n->n_in = n_in;
    for (int i = 0; i < n_in; ++i) n->in[i] = in[i];
    return n;
}

/* ---------------------------------------------------------------- backward */

static bool ensure_grad(ag_ctx *ctx, ag_tensor *t) {
    if (t->grad) return true;
    t->grad = ag_arena_alloc(ctx, (size_t)t->numel * sizeof(float));
    if (!t->grad) return false;
    memset(t->grad, 0, (size_t)t->numel * sizeof(float));
    return true;
}

ag_status ag_backward(ag_ctx *ctx, ag_tensor *loss, const float *seed) {
    char s[64];
    if (!loss) return ag_error_status() != AG_OK ? ag_error_status() : ag_fail(AG_ERR_ARG, "backward: the loss is NULL");
    if (!loss->requires_grad)
        return ag_fail(AG_ERR_STATE, "backward: the loss %s does not require a gradient "
                       "(no input needs one, or it was computed in a no-grad scope)",
                       ag_shape_str(s, loss->ndim, loss->shape));
    if (!seed && loss->numel != 1)
        return ag_fail(AG_ERR_ARG, "backward: the loss has shape %s; a non-scalar needs a seed gradient",
                       ag_shape_str(s, loss->ndim, loss->shape));
    if (ctx->backward_done)
        return ag_fail(AG_ERR_STATE, "backward: already run on this tape; call ag_ctx_reset() and run the forward again");
    if (!ensure_grad(ctx, loss)) return ag_error_status();
    if (seed) {
        for (int64_t i = 0; i < loss->numel; ++i) loss->grad[i] += seed[i];
    } else {
        loss->grad[0] += 1.0f;
    }
    for (int64_t k = ctx->n_nodes - 1; k >= 0; --k) {
        ag_node *n = &ctx->nodes[k];
        if (!n->out->grad) continue; /* nothing downstream of this node reached the loss */
        for (int i = 0; i < n->n_in; ++i)
            if (n->in[i] && n->in[i]->requires_grad && !ensure_grad(ctx, n->in[i])) return ag_error_status();
        ag_status st = op_table[n->op].backward(ctx, n);
        if (st != AG_OK) return st;
    }
    ctx->backward_done = true;
    return AG_OK;
}

/* ---------------------------------------------------------------- showing the tape */

static double norm(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += (double)x[i] * x[i];
    return sqrt(s);
}

/* A short label for a tensor: its parameter name; "t<k>" for the output of
 * node k; "in<j>" for the j-th distinct leaf the tape reads that is not a
 * parameter (numbered in order of first use, so the printout is the same on
 * every run). */
static void label(char *buf, size_t cap, const ag_ctx *ctx, const ag_tensor *t) {
    if (!t) { snprintf(buf, cap, "-"); return; }
    if (t->name) { snprintf(buf, cap, "%s", t->name); return; }
    int leaves = 0;
    for (int64_t k = 0; k < ctx->n_nodes; ++k) {
        const ag_node *n = &ctx->nodes[k];
        if (n->out == t) { snprintf(buf, cap, "t%lld", (long long)k); return; }
        for (int i = 0; i < n->n_in; ++i) {
            const ag_tensor *u = n->in[i];
            if (!u || u->name) continue;
            bool made_or_seen = false; /* an op output, or a leaf met earlier */
            for (int64_t j = 0; j < k && !made_or_seen; ++j) {
                made_or_seen = ctx->nodes[j].out == u;
                for (int q = 0; q < ctx->nodes[j].n_in && !made_or_seen; ++q) made_or_seen = ctx->nodes[j].in[q] == u;
            }
            for (int q = 0; q < i && !made_or_seen; ++q) made_or_seen = n->in[q] == u;
            if (made_or_seen) continue;
            if (u == t) { snprintf(buf, cap, "in%d", leaves); return; }
            leaves++;
        }
    }
    snprintf(buf, cap, "in?");
}

void ag_tape_print(FILE *f, const ag_ctx *ctx) {
    char s[64], l[160];
    fprintf(f, "tape: %lld nodes%s\n", (long long)ctx->n_nodes, ctx->backward_done ? " (after backward)" : "");
    for (int64_t k = 0; k < ctx->n_nodes; ++k) {
        const ag_node *n = &ctx->nodes[k];
        fprintf(f, "  t%-3lld = %-16s(", (long long)k, ag_op_name(n->op));
        for (int i = 0; i < n->n_in; ++i) {
            if (!n->in[i]) continue;
            label(l, sizeof l, ctx, n->in[i]);
            fprintf(f, "%s%s %s", i ? ", " : "", l, ag_shape_str(s, n->in[i]->ndim, n->in[i]->shape));
        }
        fprintf(f, ") -> %s", ag_shape_str(s, n->out->ndim, n->out->shape));
        if (ctx->backward_done && n->out->grad) fprintf(f, "   |grad| = %.6g", norm(n->out->grad, n->out->numel));
        fprintf(f, "\n");
    }
}

void ag_tape_dot(FILE *f, const ag_ctx *ctx) {
    char s[64], l[160];
    fprintf(f, "digraph tape {\n  rankdir=LR;\n  node [fontname=\"monospace\", fontsize=10];\n");
    for (int64_t k = 0; k < ctx->n_nodes; ++k) {
        const ag_node *n = &ctx->nodes[k];
        fprintf(f, "  op%lld [shape=ellipse, label=\"%s\"];\n", (long long)k, ag_op_name(n->op));
        for (int i = 0; i < n->n_in; ++i) {
            const ag_tensor *t = n->in[i];
            if (!t) continue;
            bool made_here = false;
            for (int64_t j = 0; j < k; ++j)
                if (ctx->nodes[j].out == t) { made_here = true; fprintf(f, "  t%lld -> op%lld;\n", (long long)j, (long long)k); break; }
            if (!made_here) {
                label(l, sizeof l, ctx, t);
                fprintf(f, "  \"%s\" [shape=box, style=filled, fillcolor=lightyellow, label=\"%s\\n%s\"];\n  \"%s\" -> op%lld;\n",
                        l, l, ag_shape_str(s, t->ndim, t->shape), l, (long long)k);
            }
        }
        fprintf(f, "  t%lld [shape=box, label=\"t%lld %s", (long long)k, (long long)k, ag_shape_str(s, n->out->ndim, n->out->shape));
        if (ctx->backward_done && n->out->grad) fprintf(f, "\\n|grad| %.4g", norm(n->out->grad, n->out->numel));
        fprintf(f, "\"];\n  op%lld -> t%lld;\n", (long long)k, (long long)k);
    }
    fprintf(f, "}\n");
}

/* ---------------------------------------------------------------- threads */

/* Debian's OpenMP build of OpenBLAS (libopenblas0-openmp) runs its GEMMs on the
 * same OpenMP pool as our kernels; CMake links that build. These two calls are
 * OpenBLAS's own, declared here so no particular cblas.h is needed. */
extern void openblas_set_num_threads(int n);
extern char *openblas_get_config(void);
extern int openblas_get_parallel(void);

static int n_threads = 0;

void ag_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    n_threads = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int ag_get_threads(void) { return n_threads > 0 ? n_threads : omp_get_max_threads(); }

const char *ag_blas_info(void) {
    static char buf[256];
    int par = openblas_get_parallel(); /* 0 sequential, 1 pthreads, 2 OpenMP */
    snprintf(buf, sizeof buf, "%s (threading: %s)", openblas_get_config(),
             par == 2 ? "openmp" : par == 1 ? "pthreads" : "sequential");
    return buf;
}
