/* sample.c: next-token selection (see sample.h), each step as Hugging Face's
 * logits_process.py writes it:
 *
 *   repetition   s = gather(scores, ids); s = s < 0 ? s * penalty : s / penalty;
 *                scores.scatter_(ids, s)
 *   temperature  scores / T
 *   top-k        scores < topk(scores, k).values[-1]  ->  -inf
 *   top-p        sorted ascending; cum = softmax(sorted).cumsum();
 *                cum <= 1 - p  ->  -inf, the last (largest) always kept
 *   draw         u ~ U[0,1) from (seed, counter); the first token whose
 *                cumulative probability exceeds u
 */
#include "sample.h"

#include "ag.h"

#include <math.h>
#include <stdlib.h>

void recipe_repetition_penalty(float *logits, int V, const int32_t *ids, int n, float penalty) {
    if (penalty == 1.0f) return;
    /* gather every score first, then scatter: a token that occurs twice is
     * penalised once, from its original score */
    for (int i = 0; i < n; ++i) {
        int id = ids[i];
        if (id < 0 || id >= V) continue;
        bool seen = false;
        for (int j = 0; j < i && !seen; ++j) seen = ids[j] == id;
        if (seen) continue;
        float s = logits[id];
        logits[id] = s < 0 ? s * penalty : s / penalty;
    }
}

void recipe_force_token(float *logits, int V, int token) {
    for (int i = 0; i < V; ++i) logits[i] = i == token ? 0.0f : -INFINITY;
}

void recipe_temperature(float *logits, int V, float temperature) {
    for (int i = 0; i < V; ++i) logits[i] /= temperature;
}

int recipe_argmax(const float *logits, int V) {
    int best = 0;
    for (int i = 1; i < V; ++i)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* indices sorted by logit, largest first; ties by the smaller index, so that
 * runs repeat (qsort is not stable) */
static const float *cmp_logits;
static int by_logit_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    float x = cmp_logits[i], y = cmp_logits[j];
    if (x != y) return (x < y) - (x > y);
    return (i > j) - (i < j);
}
static void sort_desc(const float *logits, int V, int *idx) {
    for (int i = 0; i < V; ++i) idx[i] = i;
    cmp_logits = logits;
    qsort(idx, (size_t)V, sizeof *idx, by_logit_desc);
}

void recipe_top_k(float *logits, int V, int k, int *idx) {
    if (k <= 0 || k >= V) return;
    sort_desc(logits, V, idx);
    const float kth = logits[idx[k - 1]];
    for (int i = 0; i < V; ++i)
        if (logits[i] < kth) logits[i] = -INFINITY;
}

/* indices sorted by logit, smallest first, ties by the smaller index (the
 * order torch.sort gives Hugging Face's top-p, which decides which of tied
 * tokens at the boundary goes) */
static int by_logit_asc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    float x = cmp_logits[i], y = cmp_logits[j];
    if (x != y) return (x > y) - (x < y);
    return (i > j) - (i < j);
}

void recipe_top_p(float *logits, int V, float p, int *idx) {
    if (p >= 1.0f) return;
    for (int i = 0; i < V; ++i) idx[i] = i;
    cmp_logits = logits;
    qsort(idx, (size_t)V, sizeof *idx, by_logit_asc);
    /* softmax over the (possibly already filtered) logits */
    const double max = logits[idx[V - 1]];
    double z = 0;
    for (int i = 0; i < V; ++i) z += exp((double)logits[i] - max);
    /* from the least probable up; idx[V-1], the most probable, always stays */
    double cum = 0;
    for (int r = 0; r < V - 1; ++r) {
        cum += exp((double)logits[idx[r]] - max) / z;
        if (cum > 1.0 - (double)p) break; /* cum only grows from here */
        logits[idx[r]] = -INFINITY;
    }
}

int recipe_sample(recipe_sampling *s, float *logits, int V, int *idx) {
    if (s->greedy) return recipe_argmax(logits, V);
    recipe_temperature(logits, V, s->temperature);
    recipe_top_k(logits, V, s->top_k, idx);
    recipe_top_p(logits, V, s->top_p, idx);
    /* softmax and one draw, in token order (torch.multinomial's order) */
    const double max = logits[recipe_argmax(logits, V)];
    double z = 0;
    for (int i = 0; i < V; ++i) z += exp((double)logits[i] - max);
    double u = ag_rng_uniform(s->seed, s->counter++) * z, cum = 0;
    int last = 0;
    for (int i = 0; i < V; ++i) {
        if (logits[i] == -INFINITY) continue;
        cum += exp((double)logits[i] - max);
        last = i;
        if (u < cum) return i;
    }
    return last;
}
