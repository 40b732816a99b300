/* sample.h: choosing the next token from logits, as Hugging Face's generate()
 * does (transformers 4.31, generation/logits_process.py).
 *
 * The logits of one row [V] pass through processors (repetition penalty,
 * forced start token), then, when sampling, through warpers (temperature,
 * top-k, top-p) that set the logits they drop to -inf; the next token is the
 * argmax (greedy) or a seeded draw from the softmax of what is left. Each
 * processor and warper is its own function so that it can be tested on
 * hand-made logits against Hugging Face's.
 */
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

/* RepetitionPenaltyLogitsProcessor: for every token id that occurs in ids[n]
 * (the sequence so far, prompt included, as Hugging Face's input_ids), a
 * positive logit is divided by `penalty` and a negative one multiplied by it
 * (each token once, however often it occurs). penalty 1: nothing changes. */
void recipe_repetition_penalty(float *logits, int V, const int32_t *ids, int n, float penalty);
/* ForcedBOSTokenLogitsProcessor: every logit -inf but token's, which becomes 0. */
void recipe_force_token(float *logits, int V, int token);
/* TemperatureLogitsWarper: logits /= temperature. */
void recipe_temperature(float *logits, int V, float temperature);
/* TopKLogitsWarper: logits below the k-th largest become -inf (a logit equal
 * to the k-th largest stays, as torch's `scores < topk[..., -1]` keeps ties).
 * k <= 0 or k >= V: nothing changes. `scratch` has room for V ints. */
void recipe_top_k(float *logits, int V, int k, int *scratch);
/* TopPLogitsWarper: sorts ascending, and drops the tokens whose cumulative
 * probability (softmax of the logits, smallest first) is <= 1 - p, keeping
 * at least the most probable token. p >= 1: nothing changes. `scratch` has
 * room for V ints. */
void recipe_top_p(float *logits, int V, float p, int *scratch);
/* The first index of the largest logit (torch.argmax). */
int recipe_argmax(const float *logits, int V);

/* Picks a token from logits [V] (modified in place: scaled and filtered):
 * greedy, or temperature, top-k, top-p and a draw u ~ U[0,1) from (seed,
 * counter++) inverted through the cumulative softmax in token order.
 * `scratch_idx` has room for V ints. Returns the token id. */
int recipe_sample(recipe_sampling *s, float *logits, int V, int *scratch_idx);

#endif
