/* unigram.c: SentencePiece's Unigram tokenizer: load, normalise, encode, decode.
 *
 * Read top to bottom: the model struct; a string -> id hash map and a byte
 * trie over the pieces; the normaliser (SentencePiece's precompiled rule table,
 * a darts-clone double array, or NFKC by utf8proc); Viterbi segmentation;
 * decoding; the .model (protobuf) reader and writer; the tokenizer.json reader.
 * Training is in unigram_train.c.
 *
 * Every rule here is transcribed from SentencePiece 0.1.97 (normalizer.cc,
 * unigram_model.cc EncodeOptimized, sentencepiece_processor.cc Encode/Decode),
 * down to float arithmetic in the path scores: ties between segmentations are
 * decided the same way, so ids match spm_encode's.
 */
#include "unigram_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static const char SPACE_SYMBOL[] = "\xe2\x96\x81"; /* U+2581 "▁", 3 bytes */
static const char REPLACEMENT[] = "\xef\xbf\xbd"; /* U+FFFD, for a bad UTF-8 byte */
static const char UNK_SURFACE[] = " \xe2\x81\x87 "; /* " ⁇ ", how decode shows <unk> */
static const float UNK_PENALTY = 10.0f;             /* <unk> scores min_score - 10 */

/* ---------------------------------------------------------------- small helpers */

/* The length of the UTF-8 character that starts with byte c, as SentencePiece's
 * OneCharLen: continuation bytes count as 1 so a scan always advances. */
int ug_char_len(uint8_t c) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

/* Decodes one valid UTF-8 character of s [n]: returns its length (1..4) and the
 * code point, or 0 when the bytes are not valid UTF-8 (overlong, surrogate,
 * beyond U+10FFFF, truncated). */
int ug_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (len == 0 || c > 0xF4 || (size_t)len > n) return 0;
    uint32_t v = c & (0x7F >> len);
    for (int i = 1; i < len; ++i) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min_of_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_of_len[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

/* A growable byte buffer. */
bool ug_buf_put(ug_buf *b, const void *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return false;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->n, p, n);
    b->n += n;
    b->data[b->n] = 0;
    return true;
}

/* ---------------------------------------------------------------- piece -> id hash map */

uint64_t ug_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; ++i) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* Open addressing over a power-of-two table of ids (-1 empty); the key of an
 * id is its piece. */
static bool map_build(data_unigram *u) {
    size_t cap = 16;
    while (cap < (size_t)u->n * 2) cap *= 2;
    u->map = malloc(cap * sizeof *u->map);
    if (!u->map) return false;
    u->map_cap = cap;
    for (size_t i = 0; i < cap; ++i) u->map[i] = -1;
    for (int id = 0; id < u->n; ++id) {
        const char *p = u->blob + u->off[id];
        size_t h = ug_hash(p, (size_t)u->len[id]) & (cap - 1);
        bool dup = false;
        while (u->map[h] >= 0) {
            int o = u->map[h];
            if (u->len[o] == u->len[id] && memcmp(u->blob + u->off[o], p, (size_t)u->len[id]) == 0) { dup = true; break; }
            h = (h + 1) & (cap - 1);
        }
        if (!dup) u->map[h] = id; /* a duplicate piece keeps its first id, as SentencePiece rejects it */
    }
    return true;
}

static int map_find(const data_unigram *u, const char *p, size_t n) {
    size_t h = ug_hash(p, n) & (u->map_cap - 1);
    while (u->map[h] >= 0) {
        int o = u->map[h];
        if ((size_t)u->len[o] == n && memcmp(u->blob + u->off[o], p, n) == 0) return o;
        h = (h + 1) & (u->map_cap - 1);
    }
    return -1;
}

/* ---------------------------------------------------------------- the byte trie of matchable pieces
 *
 * Node 0 is the root; its children are found through root[256] directly, the
 * children of other nodes through a first-child / next-sibling list (pieces
 * are short, so the lists are too). value[node] is the id of the piece that
 * ends at the node, or -1. */

static int trie_new_node(data_unigram *u, uint8_t label) {
    if (u->n_nodes == u->cap_nodes) {
        int cap = u->cap_nodes ? 2 * u->cap_nodes : 1024;
        ug_trie_node *t = realloc(u->nodes, (size_t)cap * sizeof *t);
        if (!t) return -1;
        u->nodes = t;
        u->cap_nodes = cap;
    }
    ug_trie_node *nd = &u->nodes[u->n_nodes];
    nd->first_child = nd->sibling = nd->value = -1;
    nd->label = label;
    return u->n_nodes++;
}

static inline int trie_child(const data_unigram *u, int node, uint8_t c) {
    if (node == 0) return u->root[c];
    for (int k = u->nodes[node].first_child; k >= 0; k = u->nodes[k].sibling)
        if (u->nodes[k].label == c) return k;
    return -1;
}

static bool trie_build(data_unigram *u) {
    if (trie_new_node(u, 0) != 0) return false;
    for (int c = 0; c < 256; ++c) u->root[c] = -1;
    for (int id = 0; id < u->n; ++id) {
        int t = u->type[id];
        if (t != DATA_UNIGRAM_NORMAL && t != DATA_UNIGRAM_USER_DEFINED && t != DATA_UNIGRAM_UNUSED) continue;
        const uint8_t *p = (const uint8_t *)u->blob + u->off[id];
        int node = 0;
        for (int i = 0; i < u->len[id]; ++i) {
            int next = trie_child(u, node, p[i]);
            if (next < 0) {
                next = trie_new_node(u, p[i]);
                if (next < 0) return false;
                if (node == 0) {
                    u->root[p[i]] = next;
                } else {
                    u->nodes[next].sibling = u->nodes[node].first_child;
                    u->nodes[node].first_child = next;
                }
            }
            node = next;
        }
        if (node > 0 && u->nodes[node].value < 0) u->nodes[node].value = id;
    }
    return true;
}

/* ---------------------------------------------------------------- building a model from pieces */

ag_status ug_finish(data_unigram *u, const char *name) {
    u->unk_id = -1;
    u->min_score = FLT_MAX;
    u->max_score = FLT_MIN; /* sic: SentencePiece starts from FLT_MIN, the smallest positive float */
    for (int c = 0; c < 256; ++c) u->byte_id[c] = -1;
    for (int id = 0; id < u->n; ++id) {
        if (u->type[id] == DATA_UNIGRAM_UNKNOWN && u->unk_id < 0) u->unk_id = id;
        if (u->type[id] == DATA_UNIGRAM_NORMAL) {
            if (u->score[id] < u->min_score) u->min_score = u->score[id];
            if (u->score[id] > u->max_score) u->max_score = u->score[id];
        }
        unsigned b;
        if (u->type[id] == DATA_UNIGRAM_BYTE && u->len[id] == 6 && sscanf(u->blob + u->off[id], "<0x%2X>", &b) == 1)
            u->byte_id[b] = id;
    }
    if (u->unk_id < 0) return ag_fail(AG_ERR_ARG, "tokenizer %s: no unknown piece (<unk>) in the vocabulary", name);
    for (int c = 0; c < 256; ++c)
        if (u->byte_id[c] >= 0) u->byte_fallback = true;
    if (!map_build(u) || !trie_build(u)) return ag_fail(AG_ERR_MEMORY, "tokenizer %s: out of memory", name);
    return AG_OK;
}

/* Appends one piece to a model being built; false when out of memory. */
bool ug_add_piece(data_unigram *u, const char *p, size_t n, float score, int type) {
    if (u->n == u->cap) {
        int cap = u->cap ? 2 * u->cap : 256;
        int32_t *off = realloc(u->off, (size_t)cap * sizeof *off);
        if (off) u->off = off;
        int32_t *len = realloc(u->len, (size_t)cap * sizeof *len);
        if (len) u->len = len;
        float *sc = realloc(u->score, (size_t)cap * sizeof *sc);
        if (sc) u->score = sc;
        uint8_t *ty = realloc(u->type, (size_t)cap);
        if (ty) u->type = ty;
        if (!off || !len || !sc || !ty) return false;
        u->cap = cap;
    }
    u->off[u->n] = (int32_t)u->pieces.n;
    u->len[u->n] = (int32_t)n;
    u->score[u->n] = score;
    u->type[u->n] = (uint8_t)type;
    char zero = 0;
    if (!ug_buf_put(&u->pieces, p, n) || !ug_buf_put(&u->pieces, &zero, 1)) return false;
    u->blob = u->pieces.data;
    u->n++;
    return true;
}

data_unigram *ug_new(void) {
    data_unigram *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->add_dummy_prefix = u->remove_extra_ws = u->escape_ws = true;
    snprintf(u->norm_name, sizeof u->norm_name, "identity");
    return u;
}

void data_unigram_free(data_unigram *u) {
    if (!u) return;
    free(u->pieces.data);
    free(u->off);
    free(u->len);
    free(u->score);
    free(u->type);
    free(u->map);
    free(u->nodes);
    free(u->charsmap);
    free(u);
}

int data_unigram_vocab_size(const data_unigram *u) { return u->n; }
const char *data_unigram_piece(const data_unigram *u, int id) { return id >= 0 && id < u->n ? u->blob + u->off[id] : NULL; }
float data_unigram_score(const data_unigram *u, int id) { return id >= 0 && id < u->n ? u->score[id] : 0.0f; }
data_unigram_type data_unigram_piece_type(const data_unigram *u, int id) {
    return id >= 0 && id < u->n ? (data_unigram_type)u->type[id] : (data_unigram_type)0;
}
int data_unigram_piece_to_id(const data_unigram *u, const char *piece) { return map_find(u, piece, strlen(piece)); }
int data_unigram_unk_id(const data_unigram *u) { return u->unk_id; }

/* ---------------------------------------------------------------- normalisation
 *
 * SentencePiece's precompiled charsmap (the normalizer_spec's bytes) is
 *   u32 trie_size (little-endian) | trie: trie_size/4 darts-clone units | normalised strings, NUL-separated
 * A unit packs, for the double array: has_leaf (bit 8), a label (bits 0-7 and
 * bit 31), an offset to the children (bits 10-31, shifted left by 8 when bit 9
 * is set), and for a leaf unit its value (bits 0-30): here the position of the
 * replacement string. The rule for a position is the longest key that matches
 * there. */

ag_status ug_set_charsmap(data_unigram *u, const uint8_t *b, size_t n, const char *name) {
    if (n == 0) return AG_OK;
    if (n < 4) return ag_fail(AG_ERR_ARG, "tokenizer %s: precompiled_charsmap is truncated", name);
    uint32_t trie_size = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    if (trie_size % 4 != 0 || trie_size == 0 || (size_t)trie_size > n - 4)
        return ag_fail(AG_ERR_ARG, "tokenizer %s: precompiled_charsmap has a bad trie size %u", name, trie_size);
    u->charsmap = malloc(n + 1);
    if (!u->charsmap) return ag_fail(AG_ERR_MEMORY, "tokenizer %s: out of memory", name);
    memcpy(u->charsmap, b, n);
    u->charsmap[n] = 0; /* so the last replacement string is terminated */
    u->trie_units = trie_size / 4;
    u->norm_strings = (const char *)u->charsmap + 4 + trie_size;
    u->norm_strings_n = n - 4 - trie_size;
    return AG_OK;
}

static inline uint32_t unit_at(const data_unigram *u, size_t i) {
    const uint8_t *p = u->charsmap + 4 + 4 * i;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint32_t unit_offset(uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); }
static inline uint32_t unit_label(uint32_t unit) { return unit & ((1u << 31) | 0xFF); }
static inline bool unit_has_leaf(uint32_t unit) { return (unit >> 8) & 1; }
static inline uint32_t unit_value(uint32_t unit) { return unit & ((1u << 31) - 1); }

/* darts-clone's commonPrefixSearch, keeping only the longest match: returns
 * its length in bytes (0 when no rule matches) and its value. */
static size_t charsmap_longest(const data_unigram *u, const uint8_t *s, size_t n, uint32_t *value) {
    size_t best = 0;
    uint32_t pos = unit_offset(unit_at(u, 0));
    for (size_t i = 0; i < n; ++i) {
        pos ^= s[i];
        if (pos >= u->trie_units) break;
        uint32_t unit = unit_at(u, pos);
        if (unit_label(unit) != s[i]) break;
        pos ^= unit_offset(unit);
        if (pos >= u->trie_units) break;
        if (unit_has_leaf(unit)) {
            best = i + 1;
            *value = unit_value(unit_at(u, pos));
        }
    }
    return best;
}

/* The normalised form of the character at the front of s [n]: sets *out to its
 * replacement (*out_n bytes) and returns how many input bytes it consumed
 * (>= 1). This is SentencePiece's Normalizer::NormalizePrefix. */
static size_t normalize_prefix(const data_unigram *u, const uint8_t *s, size_t n, const char **out, size_t *out_n,
                               int64_t *n_invalid) {
    if (u->charsmap) {
        uint32_t v = 0;
        size_t len = charsmap_longest(u, s, n, &v);
        if (len > 0 && v < u->norm_strings_n) {
            *out = u->norm_strings + v;
            *out_n = strlen(*out);
            return len;
        }
    }
    uint32_t cp;
    int len = ug_utf8_decode(s, n, &cp);
    if (len == 0) {
        (*n_invalid)++;
        *out = REPLACEMENT;
        *out_n = 3;
        return 1;
    }
    *out = (const char *)s;
    *out_n = (size_t)len;
    if (u->nfkc_by_utf8proc) {
        /* The whitespace half of nmt_nfkc: control characters vanish, tabs and
         * line breaks become spaces (NFKC itself was applied beforehand). */
        if (cp == '\t' || cp == '\n' || cp == '\r') *out = " ";
        else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) *out_n = 0;
    }
    return (size_t)len;
}

/* NFKC of a whole text by utf8proc, for models that name an NFKC normaliser
 * but carry no rule table (those made by data_unigram_train). Invalid bytes
 * become U+FFFD first. Returns a malloc'd string, or NULL when out of memory. */
char *ug_nfkc(const char *text, size_t n, size_t *out_n, int64_t *n_invalid) {
    ug_buf clean = {0};
    if (!ug_buf_put(&clean, "", 0)) return NULL;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = ug_utf8_decode((const uint8_t *)text + i, n - i, &cp);
        bool ok = len > 0 ? ug_buf_put(&clean, text + i, (size_t)len) : ug_buf_put(&clean, REPLACEMENT, 3);
        if (!ok) { free(clean.data); return NULL; }
        if (len == 0) { (*n_invalid)++; len = 1; }
        i += (size_t)len;
    }
    utf8proc_uint8_t *res = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)clean.data, (utf8proc_ssize_t)clean.n, &res,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    free(clean.data);
    if (m < 0) return NULL;
    *out_n = (size_t)m;
    return (char *)res;
}

ag_status data_unigram_normalize(const data_unigram *u, const char *text, size_t n, char **out, size_t *out_n,
                                 int64_t *n_invalid) {
    int64_t bad = 0;
    char *nfkc = NULL;
    if (u->nfkc_by_utf8proc) {
        nfkc = ug_nfkc(text, n, &n, &bad);
        if (!nfkc) return ag_fail(AG_ERR_MEMORY, "unigram normalize: out of memory");
        text = nfkc;
    }
    const uint8_t *s = (const uint8_t *)text;
    ug_buf b = {0};
    bool ok = ug_buf_put(&b, "", 0);
    const char *sp;
    size_t sp_n;
    /* Leading whitespace goes. */
    if (u->remove_extra_ws) {
        while (n > 0) {
            size_t used = normalize_prefix(u, s, n, &sp, &sp_n, &bad);
            if (!(sp_n == 1 && sp[0] == ' ')) break;
            s += used;
            n -= used;
        }
    }
    if (n > 0) {
        const char *ws = u->escape_ws ? SPACE_SYMBOL : " ";
        size_t ws_n = strlen(ws);
        if (!u->treat_ws_as_suffix && u->add_dummy_prefix) ok = ok && ug_buf_put(&b, ws, ws_n);
        bool prev_space = u->remove_extra_ws;
        while (n > 0) {
            size_t used = normalize_prefix(u, s, n, &sp, &sp_n, &bad);
            /* A space right after a space goes (the rule may itself yield several). */
            while (prev_space && sp_n > 0 && sp[0] == ' ') { sp++; sp_n--; }
            if (sp_n > 0) {
                for (size_t i = 0; i < sp_n; ++i)
                    ok = ok && (u->escape_ws && sp[i] == ' ' ? ug_buf_put(&b, ws, ws_n) : ug_buf_put(&b, sp + i, 1));
                prev_space = sp[sp_n - 1] == ' ';
            }
            s += used;
            n -= used;
            if (!u->remove_extra_ws) prev_space = false;
        }
        /* Trailing whitespace goes. */
        if (u->remove_extra_ws)
            while (b.n >= ws_n && memcmp(b.data + b.n - ws_n, ws, ws_n) == 0) b.data[b.n -= ws_n] = 0;
        if (u->treat_ws_as_suffix && u->add_dummy_prefix) ok = ok && ug_buf_put(&b, ws, ws_n);
    }
    free(nfkc);
    if (!ok) {
        free(b.data);
        return ag_fail(AG_ERR_MEMORY, "unigram normalize: out of memory");
    }
    *out = b.data;
    *out_n = b.n;
    if (n_invalid) *n_invalid = bad;
    return AG_OK;
}

/* ---------------------------------------------------------------- Viterbi
 *
 * best[e] is the best path over the normalised bytes [0, e): its score, the
 * start of its last piece, and that piece's id. Positions advance by whole
 * characters; at each start every piece in the trie that matches there
 * extends a path; a character that no single-character piece covers is an
 * <unk> of score min_score - 10. Path scores are stored in float, a later
 * candidate must be strictly better to win, exactly as EncodeOptimized. */

typedef struct {
    float score;
    int start; /* -1: no path ends here yet */
    int id;
} ug_best;

/* Segments s [n] and appends (start, id) of each piece to *segs [2 * *n_segs]. */
static bool viterbi(const data_unigram *u, const char *str, int n, ug_best *best, int32_t *segs, int *n_segs) {
    const uint8_t *s = (const uint8_t *)str;
    const float unk_score = u->min_score - UNK_PENALTY;
    for (int i = 0; i <= n; ++i) best[i] = (ug_best){0.0f, -1, -1};
    for (int start = 0; start < n;) {
        const float here = best[start].score;
        int mblen = ug_char_len(s[start]);
        if (mblen > n - start) mblen = n - start;
        bool has_single = false;
        int node = 0;
        for (int k = start; k < n; ++k) {
            node = trie_child(u, node, s[k]);
            if (node < 0) break;
            int id = u->nodes[node].value;
            if (id < 0 || u->type[id] == DATA_UNIGRAM_UNUSED) continue;
            int len = k + 1 - start;
            /* In SentencePiece the piece's score is a double (the type of
             * `cond ? len * max_score - 0.1 : score`), so the candidate is
             * summed and compared in double and only stored as float. The
             * rounding decides ties such as "99 9" against "9 99". */
            double cand;
            if (u->type[id] == DATA_UNIGRAM_USER_DEFINED) /* a bonus so that it is always chosen */
                cand = (double)((float)len * u->max_score) - 0.1 + here;
            else
                cand = (double)u->score[id] + here;
            ug_best *t = &best[k + 1];
            if (t->start == -1 || cand > t->score) *t = (ug_best){(float)cand, start, id};
            if (len == mblen) has_single = true;
        }
        if (!has_single) {
            ug_best *t = &best[start + mblen];
            float cand = unk_score + here;
            if (t->start == -1 || cand > t->score) *t = (ug_best){cand, start, u->unk_id};
        }
        start += mblen;
    }
    /* Backtrack from the end, then reverse. */
    int m = 0;
    for (int e = n; e > 0; e = best[e].start) {
        if (best[e].start < 0) return false; /* cannot happen: every character has a node */
        segs[2 * m] = best[e].start;
        segs[2 * m + 1] = best[e].id;
        m++;
    }
    for (int i = 0, j = m - 1; i < j; ++i, --j) {
        int32_t a = segs[2 * i], b = segs[2 * i + 1];
        segs[2 * i] = segs[2 * j], segs[2 * i + 1] = segs[2 * j + 1];
        segs[2 * j] = a, segs[2 * j + 1] = b;
    }
    *n_segs = m;
    return true;
}

ag_status data_unigram_encode(const data_unigram *u, const char *text, size_t n, int32_t **ids, int64_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    char *norm = NULL;
    size_t nn = 0;
    ag_status st = data_unigram_normalize(u, text, n, &norm, &nn, NULL);
    if (st != AG_OK) return st;
    if (nn > (size_t)INT32_MAX / 4) {
        free(norm);
        return ag_fail(AG_ERR_ARG, "unigram encode: a text of %zu bytes is too long for one call", nn);
    }
    ug_best *best = malloc((nn + 1) * sizeof *best);
    int32_t *segs = malloc((2 * nn + 2) * sizeof *segs);
    int32_t *out = malloc((nn + 1) * sizeof *out); /* at most one id per byte */
    int m = 0;
    if (!best || !segs || !out || !viterbi(u, norm, (int)nn, best, segs, &m)) {
        free(norm), free(best), free(segs), free(out);
        return ag_fail(AG_ERR_MEMORY, "unigram encode: out of memory for a text of %zu bytes", nn);
    }
    /* Unknown characters: spelled as bytes when the model has byte pieces,
     * otherwise a run of them becomes one <unk> (so that decoding can at
     * least mark the gap once). */
    int64_t k = 0;
    bool prev_unk = false;
    for (int i = 0; i < m; ++i) {
        int start = segs[2 * i], id = segs[2 * i + 1];
        int end = i + 1 < m ? segs[2 * i + 2] : (int)nn;
        bool unk = id == u->unk_id;
        if (unk && u->byte_fallback) {
            for (int b = start; b < end; ++b) {
                int bid = u->byte_id[(uint8_t)norm[b]];
                out[k++] = bid >= 0 ? bid : u->unk_id;
            }
        } else if (!(unk && prev_unk)) {
            out[k++] = id;
        }
        prev_unk = unk;
    }
    free(norm), free(best), free(segs);
    if (k == 0) {
        free(out);
        out = NULL;
    }
    *ids = out;
    *n_ids = k;
    return AG_OK;
}

/* ---------------------------------------------------------------- decoding */

ag_status data_unigram_decode(const data_unigram *u, const int32_t *ids, int64_t n, char **text) {
    *text = NULL;
    ug_buf b = {0};
    bool ok = ug_buf_put(&b, "", 0);
    bool at_start = true; /* the first piece's leading "▁" is the dummy prefix */
    for (int64_t i = 0; i < n && ok; ++i) {
        int id = ids[i];
        if (id < 0 || id >= u->n) {
            free(b.data);
            return ag_fail(AG_ERR_ARG, "unigram decode: id %d at position %lld is outside the vocabulary [0, %d)", id,
                           (long long)i, u->n);
        }
        int t = u->type[id];
        if (t == DATA_UNIGRAM_CONTROL) continue;
        if (t == DATA_UNIGRAM_UNKNOWN) {
            ok = ug_buf_put(&b, UNK_SURFACE, strlen(UNK_SURFACE));
            at_start = false;
            continue;
        }
        if (t == DATA_UNIGRAM_BYTE) {
            /* A run of byte pieces is one UTF-8 string; each byte that is not
             * part of a valid character becomes U+FFFD. */
            uint8_t bytes[64];
            int nb = 0;
            for (; i < n && nb < 64 && ids[i] >= 0 && ids[i] < u->n && u->type[ids[i]] == DATA_UNIGRAM_BYTE; ++i) {
                unsigned v = 0;
                sscanf(u->blob + u->off[ids[i]], "<0x%2X>", &v);
                bytes[nb++] = (uint8_t)v;
            }
            --i;
            for (int j = 0; j < nb && ok;) {
                uint32_t cp;
                int len = ug_utf8_decode(bytes + j, (size_t)(nb - j), &cp);
                if (len == 0) { ok = ug_buf_put(&b, REPLACEMENT, 3); len = 1; }
                else ok = ug_buf_put(&b, bytes + j, (size_t)len);
                j += len;
            }
            at_start = false;
            continue;
        }
        const char *p = u->blob + u->off[id];
        size_t len = (size_t)u->len[id];
        if (at_start && (u->add_dummy_prefix || u->remove_extra_ws) && len >= 3 && memcmp(p, SPACE_SYMBOL, 3) == 0) {
            p += 3;
            len -= 3;
        }
        for (size_t j = 0; j < len && ok;) {
            if (j + 3 <= len && memcmp(p + j, SPACE_SYMBOL, 3) == 0) { ok = ug_buf_put(&b, " ", 1); j += 3; }
            else { ok = ug_buf_put(&b, p + j, 1); j++; }
        }
        at_start = false;
    }
    if (!ok) {
        free(b.data);
        return ag_fail(AG_ERR_MEMORY, "unigram decode: out of memory");
    }
    *text = b.data;
    return AG_OK;
}

/* ---------------------------------------------------------------- the .model file (protobuf)
 *
 * Only what is needed, from sentencepiece_model.proto:
 *   ModelProto      1: repeated SentencePiece pieces   2: TrainerSpec   3: NormalizerSpec
 *   SentencePiece   1: string piece   2: float score   3: enum type
 *   TrainerSpec     3: enum model_type (1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR)   24: bool treat_whitespace_as_suffix
 *   NormalizerSpec  1: string name   2: bytes precompiled_charsmap   3: bool add_dummy_prefix
 *                   4: bool remove_extra_whitespaces   5: bool escape_whitespaces
 * A protobuf message is a sequence of (key = field << 3 | wire type, value);
 * wire type 0 is a varint, 1 eight bytes, 2 a length-prefixed string or
 * message, 5 four bytes. Unknown fields are skipped. */

typedef struct {
    const uint8_t *p, *end;
    bool bad;
} pb_reader;

static uint64_t pb_varint(pb_reader *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) { r->bad = true; return 0; }
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) return v;
    }
    r->bad = true;
    return 0;
}

/* Reads the next field: its number and wire type; for wire type 2 the
 * payload in *sub, for 5 the four bytes in *fixed32, for 0 the value in *v. */
static bool pb_next(pb_reader *r, uint32_t *field, int *wt, pb_reader *sub, uint32_t *fixed32, uint64_t *v) {
    if (r->p >= r->end || r->bad) return false;
    uint64_t key = pb_varint(r);
    *field = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    switch (*wt) {
    case 0: *v = pb_varint(r); break;
    case 1:
        if (r->end - r->p < 8) r->bad = true;
        else r->p += 8;
        break;
    case 2: {
        uint64_t len = pb_varint(r);
        if (r->bad || len > (uint64_t)(r->end - r->p)) { r->bad = true; break; }
        *sub = (pb_reader){r->p, r->p + len, false};
        r->p += len;
        break;
    }
    case 5:
        if (r->end - r->p < 4) { r->bad = true; break; }
        *fixed32 = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
        r->p += 4;
        break;
    default: r->bad = true;
    }
    return !r->bad && *field != 0;
}

ag_status data_unigram_load_model_bytes(data_unigram **out, const uint8_t *buf, size_t n, const char *name) {
    *out = NULL;
    data_unigram *u = ug_new();
    if (!u) return ag_fail(AG_ERR_MEMORY, "tokenizer %s: out of memory", name);
    pb_reader r = {buf, buf + n, false}, sub = {0}, f = {0};
    uint32_t field, fx = 0;
    int wt;
    uint64_t v = 0;
    int model_type = 1;
    const uint8_t *charsmap = NULL;
    size_t charsmap_n = 0;
    ag_status st = AG_OK;
    while (pb_next(&r, &field, &wt, &sub, &fx, &v)) {
        if (field == 1 && wt == 2) { /* one SentencePiece */
            const char *piece = NULL;
            size_t piece_n = 0;
            float score = 0.0f;
            int type = DATA_UNIGRAM_NORMAL;
            while (pb_next(&sub, &field, &wt, &f, &fx, &v)) {
                if (field == 1 && wt == 2) piece = (const char *)f.p, piece_n = (size_t)(f.end - f.p);
                else if (field == 2 && wt == 5) memcpy(&score, &fx, 4);
                else if (field == 3 && wt == 0) type = (int)v;
            }
            if (sub.bad || !piece || type < 1 || type > 6) {
                st = ag_fail(AG_ERR_ARG, "tokenizer %s: piece %d is malformed (not a SentencePiece .model file?)", name,
                             u->n);
                goto fail;
            }
            if (!ug_add_piece(u, piece, piece_n, score, type)) goto oom;
        } else if (field == 2 && wt == 2) { /* TrainerSpec */
            while (pb_next(&sub, &field, &wt, &f, &fx, &v)) {
                if (field == 3 && wt == 0) model_type = (int)v;
                else if (field == 24 && wt == 0) u->treat_ws_as_suffix = v != 0;
            }
        } else if (field == 3 && wt == 2) { /* NormalizerSpec */
            while (pb_next(&sub, &field, &wt, &f, &fx, &v)) {
                if (field == 1 && wt == 2) {
                    size_t k = (size_t)(f.end - f.p) < sizeof u->norm_name - 1 ? (size_t)(f.end - f.p) : sizeof u->norm_name - 1;
                    memcpy(u->norm_name, f.p, k);
                    u->norm_name[k] = 0;
                } else if (field == 2 && wt == 2) charsmap = f.p, charsmap_n = (size_t)(f.end - f.p);
                else if (field == 3 && wt == 0) u->add_dummy_prefix = v != 0;
                else if (field == 4 && wt == 0) u->remove_extra_ws = v != 0;
                else if (field == 5 && wt == 0) u->escape_ws = v != 0;
            }
        }
        if (sub.bad) break;
    }
    if (r.bad || sub.bad || u->n == 0) {
        st = ag_fail(AG_ERR_ARG, "tokenizer %s: not a SentencePiece .model file (bad protobuf%s)", name,
                     u->n == 0 ? ", no pieces" : "");
        goto fail;
    }
    if (model_type != 1) {
        static const char *types[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
        st = ag_fail(AG_ERR_ARG, "tokenizer %s: a %s model, not a Unigram one", name,
                     model_type >= 1 && model_type <= 4 ? types[model_type] : "unknown");
        goto fail;
    }
    if ((st = ug_set_charsmap(u, charsmap, charsmap_n, name)) != AG_OK) goto fail;
    /* A model without a rule table but naming NFKC is one of ours: NFKC by utf8proc. */
    u->nfkc_by_utf8proc = !u->charsmap && (strcmp(u->norm_name, "nmt_nfkc") == 0 || strcmp(u->norm_name, "nfkc") == 0);
    if ((st = ug_finish(u, name)) != AG_OK) goto fail;
    *out = u;
    return AG_OK;
oom:
    st = ag_fail(AG_ERR_MEMORY, "tokenizer %s: out of memory", name);
fail:
    data_unigram_free(u);
    return st;
}

/* Protobuf writing: a key, a varint, a length-prefixed payload. */
static bool pb_put_varint(ug_buf *b, uint64_t v) {
    uint8_t tmp[10];
    int k = 0;
    do {
        tmp[k] = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v) tmp[k] |= 0x80;
        k++;
    } while (v);
    return ug_buf_put(b, tmp, (size_t)k);
}
static bool pb_put_bytes(ug_buf *b, uint32_t field, const void *p, size_t n) {
    return pb_put_varint(b, (uint64_t)field << 3 | 2) && pb_put_varint(b, n) && ug_buf_put(b, p, n);
}
static bool pb_put_uint(ug_buf *b, uint32_t field, uint64_t v) {
    return pb_put_varint(b, (uint64_t)field << 3 | 0) && pb_put_varint(b, v);
}

ag_status data_unigram_save(const data_unigram *u, const char *path) {
    ug_buf b = {0}, m = {0};
    bool ok = ug_buf_put(&b, "", 0);
    for (int id = 0; id < u->n && ok; ++id) {
        m.n = 0;
        uint8_t sc[4];
        memcpy(sc, &u->score[id], 4);
        ok = pb_put_bytes(&m, 1, u->blob + u->off[id], (size_t)u->len[id]) && pb_put_varint(&m, 2 << 3 | 5) &&
             ug_buf_put(&m, sc, 4) && pb_put_uint(&m, 3, u->type[id]) && pb_put_bytes(&b, 1, m.data, m.n);
    }
    m.n = 0;
    ok = ok && pb_put_uint(&m, 3, 1) && pb_put_uint(&m, 4, (uint64_t)u->n) && pb_put_bytes(&b, 2, m.data, m.n);
    m.n = 0;
    ok = ok && pb_put_bytes(&m, 1, u->norm_name, strlen(u->norm_name));
    if (u->charsmap) {
        size_t cm = 4 + 4 * u->trie_units + u->norm_strings_n;
        ok = ok && pb_put_bytes(&m, 2, u->charsmap, cm);
    }
    ok = ok && pb_put_uint(&m, 3, u->add_dummy_prefix) && pb_put_uint(&m, 4, u->remove_extra_ws) &&
         pb_put_uint(&m, 5, u->escape_ws) && pb_put_bytes(&b, 3, m.data, m.n);
    free(m.data);
    if (!ok) {
        free(b.data);
        return ag_fail(AG_ERR_MEMORY, "tokenizer %s: out of memory", path);
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(b.data);
        return ag_fail(AG_ERR_IO, "tokenizer %s: cannot write: %s", path, strerror(errno));
    }
    ok = fwrite(b.data, 1, b.n, f) == b.n;
    ok = fclose(f) == 0 && ok;
    free(b.data);
    return ok ? AG_OK : ag_fail(AG_ERR_IO, "tokenizer %s: write failed: %s", path, strerror(errno));
}

/* ---------------------------------------------------------------- tokenizer.json (Hugging Face)
 *
 * {"normalizer": {"type": "Precompiled", "precompiled_charsmap": base64} (maybe
 *  inside {"type": "Sequence", "normalizers": [...]}, beside a Replace of " {2,}"
 *  by " ", which is remove_extra_whitespaces),
 *  "pre_tokenizer": {"type": "Metaspace", "add_prefix_space": true} (or
 *  "prepend_scheme": "always"/"first"/"never"),
 *  "added_tokens": [{"id": 1, "content": "<s>", "special": true}, ...],
 *  "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ...], "byte_fallback": false}} */

static size_t base64_decode(const char *s, uint8_t *out) {
    static int8_t val[256];
    static bool ready = false;
    if (!ready) {
        memset(val, -1, sizeof val);
        const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; ++i) val[(uint8_t)alpha[i]] = (int8_t)i;
        ready = true;
    }
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; *s; ++s) {
        int v = val[(uint8_t)*s];
        if (v < 0) continue; /* '=' padding, line breaks */
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return n;
}

/* Walks the normaliser (and a Sequence of them) for the charsmap and the
 * collapsing of spaces. */
static ag_status json_normalizer(data_unigram *u, const cJSON *nz, const char *name) {
    if (!cJSON_IsObject(nz)) return AG_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(nz, "type");
    if (!cJSON_IsString(type)) return AG_OK;
    if (strcmp(type->valuestring, "Sequence") == 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(nz, "normalizers")) {
            ag_status st = json_normalizer(u, e, name);
            if (st != AG_OK) return st;
        }
    } else if (strcmp(type->valuestring, "Precompiled") == 0) {
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(nz, "precompiled_charsmap");
        if (cJSON_IsString(cm) && cm->valuestring[0]) {
            uint8_t *bytes = malloc(strlen(cm->valuestring) * 3 / 4 + 4);
            if (!bytes) return ag_fail(AG_ERR_MEMORY, "tokenizer %s: out of memory", name);
            size_t n = base64_decode(cm->valuestring, bytes);
            ag_status st = ug_set_charsmap(u, bytes, n, name);
            free(bytes);
            if (st != AG_OK) return st;
            snprintf(u->norm_name, sizeof u->norm_name, "precompiled");
        }
    } else if (strcmp(type->valuestring, "Replace") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(nz, "pattern"), "String");
        if (cJSON_IsString(pat) && strcmp(pat->valuestring, " {2,}") == 0) u->remove_extra_ws = true;
    } else if (strcmp(type->valuestring, "NFKC") == 0) {
        u->nfkc_by_utf8proc = true;
        snprintf(u->norm_name, sizeof u->norm_name, "nfkc");
    }
    return AG_OK;
}

ag_status data_unigram_load_json_text(data_unigram **out, const char *text, const char *name) {
    *out = NULL;
    cJSON *root = cJSON_Parse(text);
    if (!root) return ag_fail(AG_ERR_ARG, "tokenizer %s: malformed JSON near byte %ld", name,
                              cJSON_GetErrorPtr() ? (long)(cJSON_GetErrorPtr() - text) : -1L);
    ag_status st = AG_OK;
    data_unigram *u = ug_new();
    if (!u) { cJSON_Delete(root); return ag_fail(AG_ERR_MEMORY, "tokenizer %s: out of memory", name); }
    u->remove_extra_ws = false; /* only a Replace(" {2,}", " ") turns it on */
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_id");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "Unigram") != 0) {
        st = ag_fail(AG_ERR_ARG, "tokenizer %s: model.type is %s, not \"Unigram\"", name,
                     cJSON_IsString(type) ? type->valuestring : "missing");
        goto done;
    }
    if (!cJSON_IsArray(vocab) || cJSON_GetArraySize(vocab) == 0) {
        st = ag_fail(AG_ERR_ARG, "tokenizer %s: model.vocab is missing or empty", name);
        goto done;
    }
    int unk_id = cJSON_IsNumber(unk) ? unk->valueint : -1;
    bool byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        const cJSON *p = cJSON_GetArrayItem(e, 0), *s = cJSON_GetArrayItem(e, 1);
        if (!cJSON_IsString(p) || !cJSON_IsNumber(s)) {
            st = ag_fail(AG_ERR_ARG, "tokenizer %s: model.vocab[%d] is not a [piece, score] pair", name, u->n);
            goto done;
        }
        int t = u->n == unk_id ? DATA_UNIGRAM_UNKNOWN : DATA_UNIGRAM_NORMAL;
        unsigned b;
        char tail;
        if (byte_fallback && strlen(p->valuestring) == 6 && sscanf(p->valuestring, "<0x%2X%c", &b, &tail) == 2 &&
            tail == '>')
            t = DATA_UNIGRAM_BYTE;
        if (!ug_add_piece(u, p->valuestring, strlen(p->valuestring), (float)s->valuedouble, t)) {
            st = ag_fail(AG_ERR_MEMORY, "tokenizer %s: out of memory", name);
            goto done;
        }
    }
    if (unk_id < 0 || unk_id >= u->n) {
        st = ag_fail(AG_ERR_ARG, "tokenizer %s: model.unk_id is missing or outside the vocabulary", name);
        goto done;
    }
    /* Special added tokens (<s>, </s>, <pad>) are SentencePiece's control pieces. */
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (cJSON_IsNumber(id) && id->valueint >= 0 && id->valueint < u->n && id->valueint != unk_id &&
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")))
            u->type[id->valueint] = DATA_UNIGRAM_CONTROL;
    }
    if ((st = json_normalizer(u, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), name)) != AG_OK) goto done;
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(pre, "type");
    if (cJSON_IsString(pt) && strcmp(pt->valuestring, "Sequence") == 0) {
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers")) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "type");
            if (cJSON_IsString(t) && strcmp(t->valuestring, "Metaspace") == 0) pre = e;
        }
    }
    const cJSON *aps = cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space");
    const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(pre, "prepend_scheme");
    if (cJSON_IsBool(aps)) u->add_dummy_prefix = cJSON_IsTrue(aps);
    if (cJSON_IsString(scheme)) u->add_dummy_prefix = strcmp(scheme->valuestring, "never") != 0;
    st = ug_finish(u, name);
done:
    cJSON_Delete(root);
    if (st != AG_OK) data_unigram_free(u);
    else *out = u;
    return st;
}

/* ---------------------------------------------------------------- loading a file */

ag_status data_unigram_load(data_unigram **out, const char *path) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ag_fail(AG_ERR_IO, "tokenizer %s: cannot open: %s", path, strerror(errno));
    ug_buf b = {0};
    char chunk[65536];
    size_t k;
    bool ok = ug_buf_put(&b, "", 0);
    while (ok && (k = fread(chunk, 1, sizeof chunk, f)) > 0) ok = ug_buf_put(&b, chunk, k);
    bool err = ferror(f);
    fclose(f);
    if (!ok || err) {
        free(b.data);
        return ok ? ag_fail(AG_ERR_IO, "tokenizer %s: read failed", path)
                  : ag_fail(AG_ERR_MEMORY, "tokenizer %s: out of memory", path);
    }
    if (b.n == 0) {
        free(b.data);
        return ag_fail(AG_ERR_ARG, "tokenizer %s: the file is empty", path);
    }
    size_t i = 0;
    while (i < b.n && (b.data[i] == ' ' || b.data[i] == '\n' || b.data[i] == '\t' || b.data[i] == '\r')) i++;
    ag_status st = i < b.n && b.data[i] == '{' ? data_unigram_load_json_text(out, b.data, path)
                                               : data_unigram_load_model_bytes(out, (const uint8_t *)b.data, b.n, path);
    free(b.data);
    return st;
}
