/* sample.c: next-token selection (see sample.h).
 *
 *   temperature  logits /= T               (HF TemperatureLogitsWarper)
 *   top-k        keep the k largest logits (HF TopKLogitsWarper)
 *   top-p        sort by probability, keep the smallest prefix whose mass
 *                reaches p, always at least one token (HF TopPLogitsWarper)
 *   draw         u ~ U[0,1) from (seed, counter); the first token whose
 *                cumulative probability exceeds u
 */
#include "sample.h"

#include "ag.h"

#include <math.h>
#include <stdlib.h>

static const float *cmp_logits;
static int by_logit_desc(const void *a, const void *b) {
    float x = cmp_logits[*(const int *)a], y = cmp_logits[*(const int *)b];
    return (x < y) - (x > y);
}

int recipe_sample(recipe_sampling *s, float *logits, int V, int *idx) {
    int best = 0;
    for (int i = 1; i < V; ++i)
        if (logits[i] > logits[best]) best = i;
    if (s->greedy) return best;
    for (int i = 0; i < V; ++i) { logits[i] /= s->temperature; idx[i] = i; }
    /* candidates sorted by logit, largest first (qsort is not stable: ties are
     * broken by the index so that runs repeat) */
    cmp_logits = logits;
    qsort(idx, (size_t)V, sizeof *idx, by_logit_desc);
    int keep = V;
    if (s->top_k > 0 && s->top_k < keep) keep = s->top_k;
    /* softmax over the kept candidates */
    double max = logits[idx[0]], z = 0;
    for (int i = 0; i < keep; ++i) z += exp(logits[idx[i]] - max);
    if (s->top_p < 1.0f) {
        double cum = 0;
        int n = 0;
        while (n < keep) {
            cum += exp(logits[idx[n]] - max) / z;
            n++;
            if (cum >= s->top_p) break;
        }
        keep = n;
        z = 0;
        for (int i = 0; i < keep; ++i) z += exp(logits[idx[i]] - max);
    }
    double u = ag_rng_uniform(s->seed, s->counter++) * z, cum = 0;
    for (int i = 0; i < keep; ++i) {
        cum += exp(logits[idx[i]] - max);
        if (u < cum) return idx[i];
    }
    return idx[keep - 1];
}
