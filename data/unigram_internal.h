/* unigram_internal.h: what unigram.c and unigram_train.c share; not public.
 *
 * The model keeps its pieces in one NUL-separated blob (piece id at
 * blob + off[id], len[id] bytes), a hash map from piece to id, and a byte trie
 * over the pieces that can match text. */
#ifndef TAPEGRAD_DATA_UNIGRAM_INTERNAL_H
#define TAPEGRAD_DATA_UNIGRAM_INTERNAL_H

#include "unigram.h"

#include <stdbool.h>

typedef struct {
    char *data; /* NUL-terminated past n */
    size_t n, cap;
} ug_buf;

typedef struct {
    int32_t first_child, sibling, value; /* value: the piece id ending here, or -1 */
    uint8_t label;
} ug_trie_node;

struct data_unigram {
    /* pieces [n] */
    int n, cap;
    ug_buf pieces;
    const char *blob; /* = pieces.data */
    int32_t *off, *len;
    float *score;
    uint8_t *type; /* data_unigram_type */
    int unk_id;
    bool byte_fallback;
    int byte_id[256]; /* the id of "<0xHH>", or -1 */
    float min_score, max_score; /* over NORMAL pieces */
    /* the normaliser */
    char norm_name[32];
    bool add_dummy_prefix, remove_extra_ws, escape_ws, treat_ws_as_suffix;
    bool nfkc_by_utf8proc;     /* no rule table but an NFKC name: utf8proc, then nmt's whitespace rules */
    uint8_t *charsmap;         /* the precompiled_charsmap bytes, or NULL */
    size_t trie_units;         /* darts-clone units in it */
    const char *norm_strings;  /* the replacement strings in it */
    size_t norm_strings_n;
    /* lookups */
    int32_t *map; /* [map_cap] ids, -1 empty */
    size_t map_cap;
    ug_trie_node *nodes;
    int n_nodes, cap_nodes;
    int32_t root[256];
};

int ug_char_len(uint8_t c);
int ug_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
bool ug_buf_put(ug_buf *b, const void *p, size_t n);
uint64_t ug_hash(const char *s, size_t n);
data_unigram *ug_new(void);
bool ug_add_piece(data_unigram *u, const char *p, size_t n, float score, int type);
ag_status ug_finish(data_unigram *u, const char *name);
char *ug_nfkc(const char *text, size_t n, size_t *out_n, int64_t *n_invalid);

#endif
