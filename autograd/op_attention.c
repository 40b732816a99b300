/* op_attention.c: scaled dot-product attention, fused into one op, and the
 * same function composed of public ops as its reference.
 *
 * What it is: the core of every transformer layer, for one (batch, head) pair
 * at a time, with every mask the model families need (causal, a key/value
 * cache, GPT-Neo's local window, padding) and T5's learned additive bias.
 * What it is not: the projections to q, k, v and back (those are ag_linear),
 * nor a memory-saving "flash" kernel: P [B,NH,T,S] is kept for backward.
 *
 * Shapes: q [B,NH,T,D] (T queries), k and v [B,NH,S,D] (S keys), out [B,NH,T,D].
 * For one (b, h), with Q [T,D], K [S,D], V [S,D]:
 *
 *     S_ij = s q_i . k_j + bias_ij      s = 1/sqrt(D), 1 (no_scale, T5) or opts->scale
 *     S_ij = -inf where key j is masked for query i
 *     P    = softmax(S) over j          a row with every key masked gives P_i = 0
 *     Pd   = P * keep / (1 - p)         dropout, training mode only (keep = 1 else)
 *     O    = Pd V
 *
 * Masks. Query i sits at position i + (S - T) among the keys (with a cache of
 * S - T earlier keys, the T new queries are the last T positions):
 *     causal:      key j is visible iff j <= i + (S - T)
 *     window > 0:  key j is visible iff i + (S - T) - j < window   (GPT-Neo local)
 *     key_mask:    key j of batch b is visible iff key_mask[b, j] != 0 (padding)
 *
 * Dropout draws no mask to store: element e (the flat index of (b,h,i,j) in
 * [B,NH,T,S]) is kept iff ag_rng_uniform(seed, counter + e) >= p, exactly as
 * ag_dropout does on a tensor of that shape, and backward draws it again from
 * the (seed, counter) saved in the node. The context's counter then moves on
 * by B*NH*T*S.
 *
 * Backward, from dO [T,D], term by term:
 *     O = Pd V                   ->  dV += Pd^T dO             dPd = dO V^T
 *     Pd = P * keep/(1-p)        ->  dP  = dPd * keep/(1-p)
 *     P = softmax(S)             ->  dS  = P * (dP - rowsum(dP * P))
 *     S = s Q K^T + bias         ->  dQ += s dS K;  dK += s dS^T Q;
 *                                    dbias += dS summed over bias's broadcast dims
 * Masked entries have P = 0, so dS = 0 there: no gradient flows to them.
 *
 * Threads: the B*NH heads are independent, so one OpenMP loop runs over them
 * and each head's matrix products are single-threaded cblas_sgemm calls (the
 * OpenMP build of OpenBLAS does not start threads inside a parallel region).
 * Measured on 2 cores at GPT-2 small's shapes (B=4, NH=12, D=64, causal),
 * forward + backward: T=S=64 takes 1.9 ms with sgemm per head against 52 ms
 * with the plain loops of attn_gemm_ref below; T=S=256, 23 ms against 527 ms.
 * One thread instead of two: 3.0 and 44 ms. The loops stay as the reference
 * for what each BLAS call computes.
 */
#include "internal.h"

#include <cblas.h>
#include <omp.h>

/* ---------------------------------------------------------------- the matrix product */

/* C [M,N] = alpha op(A) op(B) + beta C, row-major, op = transpose when the flag
 * is set: op(A) is [M,K], op(B) is [K,N]. The plain loops say what the BLAS call
 * computes; define TAPEGRAD_ATTN_LOOPS to run them instead. */
static void attn_gemm_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                          int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            float acc = 0.0f;
            for (int64_t k = 0; k < K; ++k)
                acc += (ta ? A[k * lda + m] : A[m * lda + k]) * (tb ? B[n * ldb + k] : B[k * ldb + n]);
            C[m * ldc + n] = alpha * acc + (beta == 0.0f ? 0.0f : beta * C[m * ldc + n]);
        }
}

static void attn_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
#ifdef TAPEGRAD_ATTN_LOOPS
    attn_gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    (void)attn_gemm_ref;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
#endif
}

/* ---------------------------------------------------------------- what one call needs */

/* The sizes, masks and dropout stream of one call, shared by the kernels. */
typedef struct {
    int64_t B, NH, T, S, D;
    float scale;
    bool causal;
    int64_t window;          /* 0: no window */
    const int32_t *key_mask; /* [B,S] or NULL */
    const float *bias;       /* broadcast to [B,NH,T,S] by bstride, or NULL */
    int64_t bstride[4];      /* bias offset of (b,h,i,j) = b*bstride[0] + h*bstride[1] + i*bstride[2] + j*bstride[3] */
    float p;                 /* dropout probability; 0 when dropout is off */
    uint64_t seed, counter;  /* the dropout stream: element e draws ag_rng_uniform(seed, counter + e) */
} attn_dims;

/* Whether query i of batch b may attend to key j. */
static inline bool attn_visible(const attn_dims *g, int64_t b, int64_t i, int64_t j) {
    int64_t pos = i + (g->S - g->T); /* the query's position among the keys */
    if (g->causal && j > pos) return false;
    if (g->window > 0 && pos - j >= g->window) return false;
    if (g->key_mask && g->key_mask[b * g->S + j] == 0) return false;
    return true;
}

/* Dropout's factor for flat element e of [B,NH,T,S]: 1/(1-p) if kept, else 0. */
static inline float attn_keep(const attn_dims *g, int64_t e) {
    return ag_rng_uniform(g->seed, g->counter + (uint64_t)e) >= g->p ? 1.0f / (1.0f - g->p) : 0.0f;
}

/* ---------------------------------------------------------------- forward */

/* One head (b, h). q [T,D], k v [S,D]; writes P [T,S] (the softmax, before
 * dropout) and o [T,D]. pd [T,S] is scratch for the dropped-out P (dropout only). */
static void attention_forward_head(float *o, float *P, float *pd, const float *q, const float *k, const float *v,
                                   const attn_dims *g, int64_t b, int64_t h) {
    int64_t T = g->T, S = g->S, D = g->D;
    /* scores [T,S] = s Q K^T, written straight into P */
    attn_gemm(false, true, T, S, D, g->scale, q, D, k, D, 0.0f, P, S);
    const float *bias = g->bias ? g->bias + b * g->bstride[0] + h * g->bstride[1] : NULL;
    for (int64_t i = 0; i < T; ++i) {
        float *row = P + i * S;
        /* + bias, -inf where masked, and the row's max for a stable softmax */
        float mx = -INFINITY;
        for (int64_t j = 0; j < S; ++j) {
            if (!attn_visible(g, b, i, j)) { row[j] = -INFINITY; continue; }
            if (bias) row[j] += bias[i * g->bstride[2] + j * g->bstride[3]];
            mx = fmaxf(mx, row[j]);
        }
        if (mx == -INFINITY) { /* every key masked: zeros out, and dS = P(...) = 0 gives no gradient */
            memset(row, 0, (size_t)S * sizeof(float));
            continue;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < S; ++j) { row[j] = expf(row[j] - mx); sum += row[j]; } /* exp(-inf) = 0 */
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < S; ++j) row[j] *= inv;
    }
    const float *pv = P; /* what multiplies V: P, or Pd with dropout */
    if (g->p > 0.0f) {
        int64_t e0 = (b * g->NH + h) * T * S;
        for (int64_t e = 0; e < T * S; ++e) pd[e] = P[e] * attn_keep(g, e0 + e);
        pv = pd;
    }
    /* O [T,D] = Pd [T,S] V [S,D] */
    attn_gemm(false, false, T, D, S, 1.0f, pv, S, v, D, 0.0f, o, D);
}

/* Every head. out, q [B,NH,T,D]; k, v [B,NH,S,D]; P [B,NH,T,S]; scratch
 * [threads, T, S] when dropout is on, else NULL. */
static void attention_forward(float *out, float *P, float *scratch, const float *q, const float *k, const float *v,
                              const attn_dims *g) {
    int64_t T = g->T, S = g->S, D = g->D, BH = g->B * g->NH;
#pragma omp parallel for schedule(static) if (BH > 1 && BH * T * S * D > AG_PAR_MIN)
    for (int64_t bh = 0; bh < BH; ++bh) {
        float *pd = scratch ? scratch + (int64_t)omp_get_thread_num() * T * S : NULL;
        attention_forward_head(out + bh * T * D, P + bh * T * S, pd, q + bh * T * D, k + bh * S * D,
                               v + bh * S * D, g, bh / g->NH, bh % g->NH);
    }
}

/* ---------------------------------------------------------------- backward */

/* One head (b, h). dout, q [T,D]; k, v [S,D]; P [T,S] saved by forward. Adds
 * into dq [T,D], dk dv [S,D] (each may be NULL) and leaves dS [T,S] in ds (the
 * scratch it works in) when want_ds; ds is also the dropped-out P for dV. */
static void attention_backward_head(float *dq, float *dk, float *dv, float *ds, const float *dout, const float *q,
                                    const float *k, const float *v, const float *P, const attn_dims *g, int64_t b,
                                    int64_t h, bool want_ds) {
    int64_t T = g->T, S = g->S, D = g->D;
    int64_t e0 = (b * g->NH + h) * T * S; /* this head's first element in [B,NH,T,S] */
    if (dv) {
        /* O = Pd V  ->  dV [S,D] += Pd^T [S,T] dO [T,D]; Pd is re-drawn into ds */
        const float *pv = P;
        if (g->p > 0.0f) {
            for (int64_t e = 0; e < T * S; ++e) ds[e] = P[e] * attn_keep(g, e0 + e);
            pv = ds;
        }
        attn_gemm(true, false, S, D, T, 1.0f, pv, S, dout, D, 1.0f, dv, D);
    }
    if (!dq && !dk && !want_ds) return;
    /* dPd [T,S] = dO [T,D] V^T [D,S] */
    attn_gemm(false, true, T, S, D, 1.0f, dout, D, v, D, 0.0f, ds, S);
    for (int64_t i = 0; i < T; ++i) {
        float *row = ds + i * S;
        const float *prow = P + i * S;
        /* Pd = P keep/(1-p)  ->  dP = dPd keep/(1-p) */
        if (g->p > 0.0f)
            for (int64_t j = 0; j < S; ++j) row[j] *= attn_keep(g, e0 + i * S + j);
        /* P = softmax(S)  ->  dS = P (dP - sum_j dP_j P_j) */
        float dot = 0.0f;
        for (int64_t j = 0; j < S; ++j) dot += row[j] * prow[j];
        for (int64_t j = 0; j < S; ++j) row[j] = prow[j] * (row[j] - dot);
    }
    /* S = s Q K^T  ->  dQ [T,D] += s dS [T,S] K [S,D];  dK [S,D] += s dS^T [S,T] Q [T,D] */
    if (dq) attn_gemm(false, false, T, D, S, g->scale, ds, S, k, D, 1.0f, dq, D);
    if (dk) attn_gemm(true, false, S, D, T, g->scale, ds, S, q, D, 1.0f, dk, D);
}

/* Every head; then dbias [bias's shape] += dS summed over its broadcast dims.
 * ds is [B,NH,T,S] when dbias is wanted (each head keeps its dS for the sum),
 * else [threads,T,S] scratch. */
static void attention_backward(float *dq, float *dk, float *dv, float *dbias, float *ds, const float *dout,
                               const float *q, const float *k, const float *v, const float *P, const attn_dims *g) {
    int64_t T = g->T, S = g->S, D = g->D, BH = g->B * g->NH;
#pragma omp parallel for schedule(static) if (BH > 1 && BH * T * S * D > AG_PAR_MIN)
    for (int64_t bh = 0; bh < BH; ++bh) {
        float *dsh = ds + (dbias ? bh : (int64_t)omp_get_thread_num()) * T * S;
        int64_t qo = bh * T * D, ko = bh * S * D;
        attention_backward_head(dq ? dq + qo : NULL, dk ? dk + ko : NULL, dv ? dv + ko : NULL, dsh, dout + qo,
                                q + qo, k + ko, v + ko, P + bh * T * S, g, bh / g->NH, bh % g->NH, dbias != NULL);
    }
    if (!dbias) return;
    /* Serial: heads that share a bias entry (a bias without B or NH) would race.
     * It is one pass over [B,NH,T,S], small next to the products above. */
    for (int64_t bh = 0; bh < BH; ++bh) {
        int64_t b = bh / g->NH, h = bh % g->NH;
        float *db = dbias + b * g->bstride[0] + h * g->bstride[1];
        const float *dsh = ds + bh * T * S;
        for (int64_t i = 0; i < T; ++i)
            for (int64_t j = 0; j < S; ++j) db[i * g->bstride[2] + j * g->bstride[3]] += dsh[i * S + j];
    }
}

/* ---------------------------------------------------------------- checking a call */

/* Checks q, k, v and opts for `op` ("attention" or "attention_composed") and
 * fills the sizes, scale, masks and bias strides of g (dropout is left off).
 * Returns false with the error set. */
static bool attn_check(const char *op, const ag_tensor *q, const ag_tensor *k, const ag_tensor *v,
                       const ag_attn_opts *o, attn_dims *g) {
    char sq[64], sk[64], sv[64], sb[64];
    ag_shape_str(sq, q->ndim, q->shape);
    ag_shape_str(sk, k->ndim, k->shape);
    ag_shape_str(sv, v->ndim, v->shape);
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4) {
        ag_fail(AG_ERR_ARG, "%s: q, k, v must be 4-D [B,NH,T,D], [B,NH,S,D], [B,NH,S,D]; got q %s, k %s, v %s",
                op, sq, sk, sv);
        return false;
    }
    if (!ag__same_shape(k, v) || q->shape[0] != k->shape[0] || q->shape[1] != k->shape[1] ||
        q->shape[3] != k->shape[3]) {
        ag_fail(AG_ERR_ARG, "%s: want q [B,NH,T,D], k and v [B,NH,S,D]; got q %s, k %s, v %s", op, sq, sk, sv);
        return false;
    }
    memset(g, 0, sizeof *g);
    g->B = q->shape[0]; g->NH = q->shape[1]; g->T = q->shape[2]; g->S = k->shape[2]; g->D = q->shape[3];
    if (g->B < 1 || g->NH < 1 || g->T < 1 || g->S < 1 || g->D < 1) {
        ag_fail(AG_ERR_ARG, "%s: empty input: q %s, k %s", op, sq, sk);
        return false;
    }
    if (o->window < 0) {
        ag_fail(AG_ERR_ARG, "%s: window %d is negative (q %s)", op, o->window, sq);
        return false;
    }
    if (!(o->dropout >= 0.0f && o->dropout < 1.0f)) {
        ag_fail(AG_ERR_ARG, "%s: dropout %g is outside [0, 1) (q %s)", op, (double)o->dropout, sq);
        return false;
    }
    if (!isfinite(o->scale)) {
        ag_fail(AG_ERR_ARG, "%s: scale %g is not finite (q %s)", op, (double)o->scale, sq);
        return false;
    }
    g->scale = o->no_scale ? 1.0f : o->scale != 0.0f ? o->scale : 1.0f / sqrtf((float)g->D);
    g->causal = o->causal;
    g->window = o->window;
    if (o->key_mask) {
        const ag_ints *m = o->key_mask;
        if (m->ndim != 2 || m->shape[0] != g->B || m->shape[1] != g->S) {
            ag_fail(AG_ERR_ARG, "%s: key_mask must be [B,S] = [%lld,%lld]; got %s (q %s, k %s)", op,
                    (long long)g->B, (long long)g->S, ag_shape_str(sb, m->ndim, m->shape), sq, sk);
            return false;
        }
        g->key_mask = m->data;
    }
    if (o->bias) {
        /* a stand-in tensor of the scores' shape to broadcast the bias against */
        ag_tensor scores = {.ndim = 4, .shape = {g->B, g->NH, g->T, g->S}};
        if (!ag__broadcast_strides(&scores, o->bias->ndim, o->bias->shape, g->bstride)) {
            ag_fail(AG_ERR_ARG, "%s: bias %s does not broadcast to the scores [B,NH,T,S] = [%lld,%lld,%lld,%lld]",
                    op, ag_shape_str(sb, o->bias->ndim, o->bias->shape), (long long)g->B, (long long)g->NH,
                    (long long)g->T, (long long)g->S);
            return false;
        }
        g->bias = o->bias->data;
    }
    return true;
}

/* ---------------------------------------------------------------- the fused op */

ag_tensor *ag_attention(ag_ctx *ctx, ag_tensor *q, ag_tensor *k, ag_tensor *v, const ag_attn_opts *opts) {
    AG_NEED(q, k, v);
    static const ag_attn_opts defaults = {0};
    if (!opts) opts = &defaults;
    attn_dims g;
    if (!attn_check("attention", q, k, v, opts, &g)) return NULL;
    int64_t n_scores = g.B * g.NH * g.T * g.S;
    if (ctx->training && opts->dropout > 0.0f) {
        g.p = opts->dropout;
        g.seed = ctx->seed;
        g.counter = ctx->rng_counter;
    }

    ag_tensor *out = ag__empty_like(ctx, q);
    /* P [B,NH,T,S]: saved for backward, and forward's working space either way */
    float *P = ag_arena_alloc(ctx, (size_t)n_scores * sizeof(float));
    /* [threads,T,S] for the dropped-out P of each head in flight */
    float *scratch = NULL;
    if (g.p > 0.0f) scratch = ag_arena_alloc(ctx, (size_t)(omp_get_max_threads() * g.T * g.S) * sizeof(float));
    if (!out || !P || (g.p > 0.0f && !scratch)) return NULL;
    attention_forward(out->data, P, scratch, q->data, k->data, v->data, &g);
    if (g.p > 0.0f) ctx->rng_counter += (uint64_t)n_scores;

    ag_tensor *in[4] = {q, k, v, opts->bias};
    ag_node *n = ag__record(ctx, AG_OP_ATTENTION, out, 4, in);
    if (!n) return NULL;
    if (out->requires_grad) {
        n->i[0] = g.B; n->i[1] = g.NH; n->i[2] = g.T; n->i[3] = g.S; n->i[4] = g.D;
        n->i[5] = g.causal;
        n->i[6] = g.window;
        n->i[7] = (int64_t)g.counter; /* where this call's dropout stream starts */
        n->f[0] = g.scale;
        n->f[1] = g.p;
        n->seed = g.seed;
        n->saved = P;
        if (opts->key_mask && !(n->idx = ag__ints_copy(ctx, opts->key_mask))) return NULL;
    }
    return out;
}

ag_status ag_attention_backward(ag_ctx *ctx, const ag_node *n) {
    ag_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *bias = n->in[3];
    attn_dims g = {.B = n->i[0], .NH = n->i[1], .T = n->i[2], .S = n->i[3], .D = n->i[4],
                   .scale = n->f[0], .causal = n->i[5] != 0, .window = n->i[6],
                   .key_mask = n->idx ? n->idx->data : NULL,
                   .p = n->f[1], .seed = n->seed, .counter = (uint64_t)n->i[7]};
    float *dbias = bias ? bias->grad : NULL;
    if (bias) {
        ag_tensor scores = {.ndim = 4, .shape = {g.B, g.NH, g.T, g.S}};
        ag__broadcast_strides(&scores, bias->ndim, bias->shape, g.bstride); /* checked in forward */
        g.bias = bias->data;
    }
    /* dS: all of [B,NH,T,S] when dbias needs the sum over heads, else [threads,T,S] */
    int64_t rows = dbias ? g.B * g.NH : omp_get_max_threads();
    float *ds = ag_arena_alloc(ctx, (size_t)(rows * g.T * g.S) * sizeof(float));
    if (!ds) return ag_error_status();
    attention_backward(q->grad, k->grad, v->grad, dbias, ds, n->out->grad, q->data, k->data, v->data, n->saved, &g);
    return AG_OK;
}

/* ---------------------------------------------------------------- the composed reference */

/* The same function out of public ops, one node each on the tape:
 *
 *     scores = matmul(q, k^T) * s (+ bias)          [B,NH,T,S]
 *     P      = softmax(scores + mask)               mask: 0 or -inf, [T,S] or [B,1,T,S]
 *     P      = dropout(P, p)                        training mode only
 *     out    = matmul(P, v)                         [B,NH,T,D]
 *
 * ag_dropout draws element e of P from ag_rng_uniform(seed, counter + e) and
 * moves the counter by P's size, as the fused op does, so both see one mask.
 * Errors of any step pass through: each op returns NULL on a NULL input. */
ag_tensor *ag_attention_composed(ag_ctx *ctx, ag_tensor *q, ag_tensor *k, ag_tensor *v, const ag_attn_opts *opts) {
    AG_NEED(q, k, v);
    static const ag_attn_opts defaults = {0};
    if (!opts) opts = &defaults;
    attn_dims g;
    if (!attn_check("attention_composed", q, k, v, opts, &g)) return NULL;

    ag_tensor *scores = ag_scale(ctx, ag_matmul(ctx, q, k, false, true), g.scale);
    if (opts->bias) scores = ag_add(ctx, scores, opts->bias);

    /* The masks as one additive tensor: [B,1,T,S] when padding differs per batch, else [T,S]. */
    ag_tensor *mask = NULL;
    if (g.causal || g.window > 0 || g.key_mask) {
        mask = g.key_mask ? ag_new(ctx, 4, AG_SHAPE(g.B, 1, g.T, g.S), false)
                          : ag_new(ctx, 2, AG_SHAPE(g.T, g.S), false);
        if (!mask) return NULL;
        int64_t nb = g.key_mask ? g.B : 1;
        for (int64_t b = 0; b < nb; ++b)
            for (int64_t i = 0; i < g.T; ++i)
                for (int64_t j = 0; j < g.S; ++j)
                    mask->data[(b * g.T + i) * g.S + j] = attn_visible(&g, b, i, j) ? 0.0f : -INFINITY;
    }
    ag_tensor *P = ag_softmax(ctx, scores, mask);
    if (opts->dropout > 0.0f) P = ag_dropout(ctx, P, opts->dropout); /* returns P itself outside training */
    return ag_matmul(ctx, P, v, false, false);
}
