/* batch.c: reading a JSON batch (see batch.h). */
#include "batch.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a [B][T] (or [T]) array of integers into f. */
static ag_status read_field(const char *path, const cJSON *v, ag_ints *f) {
    int64_t shape[2] = {0, 0};
    int ndim = 0;
    if (!cJSON_IsArray(v)) return ag_fail(AG_ERR_ARG, "batch %s: field \"%s\" is not an array", path, v->string);
    const cJSON *first = cJSON_GetArrayItem(v, 0);
    ndim = first && cJSON_IsArray(first) ? 2 : 1;
    shape[0] = cJSON_GetArraySize(v);
    shape[1] = ndim == 2 ? cJSON_GetArraySize(first) : 1;
    if (shape[0] == 0 || shape[1] == 0) return ag_fail(AG_ERR_ARG, "batch %s: field \"%s\" is empty", path, v->string);
    int32_t *data = malloc((size_t)(shape[0] * shape[1]) * sizeof(int32_t));
    if (!data) return ag_fail(AG_ERR_MEMORY, "batch %s: out of memory", path);
    int64_t k = 0, r = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, v) {
        const cJSON *cell;
        int64_t c = 0;
        const cJSON *items = ndim == 2 ? row : NULL;
        if (ndim == 2 && (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != shape[1])) {
            free(data);
            return ag_fail(AG_ERR_ARG, "batch %s: field \"%s\": row %lld has a different length (not rectangular)", path,
                           v->string, (long long)r);
        }
        if (ndim == 1) {
            cell = row;
            if (!cJSON_IsNumber(cell) || cell->valuedouble != floor(cell->valuedouble) || fabs(cell->valuedouble) > 2147483647.0) {
                free(data);
                return ag_fail(AG_ERR_ARG, "batch %s: field \"%s\"[%lld] is not an integer", path, v->string, (long long)r);
            }
            data[k++] = (int32_t)cell->valuedouble;
        } else {
            cJSON_ArrayForEach(cell, items) {
                if (!cJSON_IsNumber(cell) || cell->valuedouble != floor(cell->valuedouble) ||
                    fabs(cell->valuedouble) > 2147483647.0) {
                    free(data);
                    return ag_fail(AG_ERR_ARG, "batch %s: field \"%s\"[%lld][%lld] is not an integer", path, v->string,
                                   (long long)r, (long long)c);
                }
                data[k++] = (int32_t)cell->valuedouble;
                c++;
            }
        }
        r++;
    }
    *f = ag_ints_wrap(data, ndim, shape);
    return AG_OK;
}

ag_status recipe_batch_load(recipe_batch *b, const char *path) {
    memset(b, 0, sizeof *b);
    char *text = ag_read_file("batch", path, 256u << 20, NULL);
    if (!text) return ag_error_status();
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ag_fail(AG_ERR_ARG, "batch %s: not a JSON object", path);
    }
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(root, "passed_to_forward");
    if (!cJSON_IsObject(src)) src = root;
    ag_status st = AG_OK;
    const cJSON *v;
    cJSON_ArrayForEach(v, src) {
        if (!cJSON_IsArray(v)) continue; /* metadata fields */
        if (b->n == RECIPE_BATCH_MAX) { st = ag_fail(AG_ERR_ARG, "batch %s: more than %d fields", path, RECIPE_BATCH_MAX); break; }
        snprintf(b->name[b->n], sizeof b->name[b->n], "%s", v->string);
        if ((st = read_field(path, v, &b->field[b->n])) != AG_OK) break;
        b->n++;
    }
    cJSON_Delete(root);
    if (st == AG_OK && b->n == 0) st = ag_fail(AG_ERR_ARG, "batch %s: no arrays of token ids", path);
    if (st != AG_OK) recipe_batch_free(b);
    return st;
}

const ag_ints *recipe_batch_get(const recipe_batch *b, const char *name) {
    for (int i = 0; i < b->n; ++i)
        if (strcmp(b->name[i], name) == 0) return &b->field[i];
    return NULL;
}

void recipe_batch_free(recipe_batch *b) {
    for (int i = 0; i < b->n; ++i) free(b->field[i].data);
    b->n = 0;
}
