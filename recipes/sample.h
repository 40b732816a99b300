/* sample.h: choosing the next token from logits, as Hugging Face's generate()
 * does: temperature, then top-k, then top-p (nucleus), then a seeded draw;
 * greedy when sampling is off. */
#ifndef TAPEGRAD_RECIPES_SAMPLE_H
#define TAPEGRAD_RECIPES_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct recipe_sampling {
    bool greedy;       /* argmax; the rest is ignored */
    float temperature; /* > 0 */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
    uint64_t seed;     /* draws come from (seed, counter) */
    uint64_t counter;
} recipe_sampling;

/* Picks a token from logits [V] (modified in place: scaled and filtered).
 * `scratch_idx` has room for V ints. Returns the token id. */
int recipe_sample(recipe_sampling *s, float *logits, int V, int *scratch_idx);

#endif
