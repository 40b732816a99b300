/* batch.h: a batch of token arrays read from JSON, the format of the Hugging
 * Face fixtures' inputs.json: an object whose "passed_to_forward" member (or
 * the object itself) maps names (input_ids, attention_mask, token_type_ids,
 * labels, decoder_input_ids, ...) to rectangular [B][T] arrays of integers. */
#ifndef TAPEGRAD_RECIPES_BATCH_H
#define TAPEGRAD_RECIPES_BATCH_H

#include "ag.h"

#define RECIPE_BATCH_MAX 8

typedef struct recipe_batch {
    int n;
    char name[RECIPE_BATCH_MAX][64];
    ag_ints field[RECIPE_BATCH_MAX]; /* data malloc'd */
} recipe_batch;

/* Reads `path`. Errors name the file and the field: not JSON, a field that is
 * not a rectangular array of integers, a value outside int32. */
ag_status recipe_batch_load(recipe_batch *b, const char *path);
/* The field called `name`, or NULL. */
const ag_ints *recipe_batch_get(const recipe_batch *b, const char *name);
void recipe_batch_free(recipe_batch *b);

#endif
