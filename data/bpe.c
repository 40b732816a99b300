/* bpe.c: byte-level BPE, as GPT-2 (and RoBERTa, BART) tokenize.
 *
 * Encoding one line of text:
 *
 *   1. GPT-2's regex cuts the text into pre-tokens (PCRE2, UTF and Unicode
 *      properties on):
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      so " world" keeps its leading space and a run of spaces before a word
 *      leaves its last space to the word;
 *   2. each pre-token's bytes become printable characters (bytes_to_unicode:
 *      the 188 printable Latin-1 bytes stand for themselves, the other 68 are
 *      shifted to U+0100..U+0143), so every byte is a token of the vocabulary;
 *   3. the pre-token starts as one symbol per byte; repeatedly the adjacent pair
 *      with the lowest merge rank is merged (all its occurrences, left to
 *      right) until no pair of the word is in the merge table. Results are
 *      cached per pre-token: English text repeats its words.
 *
 * What it is not: BPE dropout, or BPE over characters with an <unk> (that is
 * not byte-level).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *GPT2_PATTERN =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---------------------------------------------------------------- the merge table */

/* Pair (a, b) of ids -> (rank, merged id), open addressing on the 64-bit key
 * a<<32 | b. */
typedef struct merge_map {
    uint64_t *keys;  /* [cap], UINT64_MAX for empty */
    int32_t *rank;   /* [cap] */
    int32_t *merged; /* [cap] */
    int32_t *order_a, *order_b; /* [n] the merges by rank, for saving */
    int64_t cap, n, order_cap;
} merge_map;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static int64_t merge_slot(const merge_map *m, uint64_t key) {
    int64_t i = (int64_t)(mix64(key) & (uint64_t)(m->cap - 1));
    while (m->keys[i] != UINT64_MAX && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    return i;
}

/* Rank of pair (a,b), or -1; *merged gets the id it merges into. */
static int32_t merge_rank(const merge_map *m, int32_t a, int32_t b, int32_t *merged) {
    if (!m || m->n == 0) return -1;
    int64_t i = merge_slot(m, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
    if (m->keys[i] == UINT64_MAX) return -1;
    *merged = m->merged[i];
    return m->rank[i];
}

static ag_status merge_grow(merge_map *m) {
    int64_t cap = m->cap ? m->cap * 2 : 1024;
    merge_map g = {.cap = cap};
    g.keys = malloc((size_t)cap * sizeof *g.keys);
    g.rank = malloc((size_t)cap * sizeof *g.rank);
    g.merged = malloc((size_t)cap * sizeof *g.merged);
    if (!g.keys || !g.rank || !g.merged) {
        free(g.keys), free(g.rank), free(g.merged);
        return ag_fail(AG_ERR_MEMORY, "BPE merges: out of memory");
    }
    memset(g.keys, 0xff, (size_t)cap * sizeof *g.keys);
    for (int64_t i = 0; i < m->cap; ++i)
        if (m->keys[i] != UINT64_MAX) {
            int64_t j = merge_slot(&g, m->keys[i]);
            g.keys[j] = m->keys[i], g.rank[j] = m->rank[i], g.merged[j] = m->merged[i];
        }
    free(m->keys), free(m->rank), free(m->merged);
    m->keys = g.keys, m->rank = g.rank, m->merged = g.merged, m->cap = cap;
    return AG_OK;
}

ag_status data_bpe_add_merge(data_tokenizer *t, const char *a, const char *b, const char *where) {
    merge_map *m = t->merges;
    int32_t ia = data_tokenizer_id(t, a), ib = data_tokenizer_id(t, b);
    size_t la = strlen(a), lb = strlen(b);
    char *ab = malloc(la + lb + 1);
    if (!ab) return ag_fail(AG_ERR_MEMORY, "BPE merges: out of memory");
    memcpy(ab, a, la), memcpy(ab + la, b, lb + 1);
    int32_t iab = data_tokenizer_id(t, ab);
    free(ab);
    if (ia < 0 || ib < 0 || iab < 0)
        return ag_fail(AG_ERR_IO, "%s: merge %d \"%s %s\": %s is not in the vocabulary", where, (int)t->n_merges, a,
                       b, ia < 0 ? "the first token" : ib < 0 ? "the second token" : "the merged token");
    if (2 * (m->n + 1) > m->cap && merge_grow(m)) return AG_ERR_MEMORY;
    if (m->n == m->order_cap) {
        int64_t c = m->order_cap ? 2 * m->order_cap : 1024;
        int32_t *oa = realloc(m->order_a, (size_t)c * sizeof *oa);
        if (oa) m->order_a = oa;
        int32_t *ob = realloc(m->order_b, (size_t)c * sizeof *ob);
        if (ob) m->order_b = ob;
        if (!oa || !ob) return ag_fail(AG_ERR_MEMORY, "BPE merges: out of memory");
        m->order_cap = c;
    }
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    int64_t i = merge_slot(m, key);
    if (m->keys[i] == UINT64_MAX) { /* a repeated merge keeps its first (lowest) rank */
        m->keys[i] = key, m->rank[i] = t->n_merges, m->merged[i] = iab;
    }
    m->order_a[m->n] = ia, m->order_b[m->n] = ib, m->n++;
    t->n_merges++;
    return AG_OK;
}

void data_bpe_merge_list(const data_tokenizer *t, const char **a, const char **b) {
    const merge_map *m = t->merges;
    for (int64_t i = 0; i < m->n; ++i) a[i] = t->tokens[m->order_a[i]], b[i] = t->tokens[m->order_b[i]];
}

/* ---------------------------------------------------------------- setup */

/* GPT-2's bytes_to_unicode: printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ')
 * map to themselves; the rest, in byte order, to 256, 257, ... */
static void bytes_to_unicode(uint16_t byte_char[256]) {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_char[b] = (uint16_t)(printable ? b : 256 + n++);
    }
}

/* Writes code point cp (< 0x800) as UTF-8 into s; returns the byte count. */
static int utf8_put(char *s, unsigned cp) {
    if (cp < 0x80) { s[0] = (char)cp; return 1; }
    s[0] = (char)(0xC0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

ag_status data_bpe_init(data_tokenizer *t) {
    t->kind = DATA_TOK_BPE;
    bytes_to_unicode(t->byte_char);
    memset(t->char_byte, 0, sizeof t->char_byte);
    for (int b = 0; b < 256; ++b) {
        t->char_byte[t->byte_char[b]] = (uint8_t)b;
        char s[4];
        int k = utf8_put(s, t->byte_char[b]);
        s[k] = 0;
        t->byte_id[b] = data_tokenizer_id(t, s); /* -1 if the vocabulary lacks it */
    }
    if (!t->merges) {
        t->merges = calloc(1, sizeof(merge_map));
        if (!t->merges) return ag_fail(AG_ERR_MEMORY, "BPE: out of memory");
    }
    if (!t->regex) {
        int err;
        PCRE2_SIZE at;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err,
                                       &at, NULL);
        if (!re) return ag_fail(AG_ERR_STATE, "BPE: the GPT-2 regex does not compile (PCRE2 error %d)", err);
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* best effort: the interpreter gives the same matches */
        t->regex = re;
        t->match = pcre2_match_data_create_from_pattern(re, NULL);
        if (!t->match) return ag_fail(AG_ERR_MEMORY, "BPE: out of memory");
    }
    return AG_OK;
}

void data_bpe_free(data_tokenizer *t) {
    merge_map *m = t->merges;
    if (m) free(m->keys), free(m->rank), free(m->merged), free(m->order_a), free(m->order_b), free(m);
    if (t->match) pcre2_match_data_free(t->match);
    if (t->regex) pcre2_code_free(t->regex);
    data_strmap_free(&t->cache);
    free(t->cache_ids);
    t->merges = t->regex = t->match = NULL;
    t->cache_ids = NULL;
}

/* ---------------------------------------------------------------- encode */

ag_status data_bpe_pretokenize(data_tokenizer *t, const char *text, size_t len,
                               ag_status (*word)(void *ctx, const char *w, size_t n), void *ctx) {
    size_t at = 0;
    while (at < len) {
        int rc = pcre2_match(t->regex, (PCRE2_SPTR)text, len, at, PCRE2_NO_UTF_CHECK, t->match, NULL);
        if (rc < 0) {
            if (rc == PCRE2_ERROR_NOMATCH) break; /* cannot happen: \s+ and [^\s\p{L}\p{N}]+ cover all */
            return ag_fail(AG_ERR_STATE, "BPE: regex match failed (PCRE2 error %d)", rc);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->match);
        if (ov[1] == ov[0]) { ++at; continue; } /* an empty match: the pattern has none */
        ag_status st = word(ctx, text + ov[0], ov[1] - ov[0]);
        if (st) return st;
        at = ov[1];
    }
    return AG_OK;
}

/* BPE of one pre-token `w` [n bytes]: syms [n] on entry holds one id per byte,
 * on return the first *k hold the merged ids. */
static void bpe_word(const data_tokenizer *t, int32_t *syms, int64_t *k) {
    int64_t n = *k;
    for (;;) {
        /* the pair with the lowest rank */
        int32_t best = INT32_MAX, best_a = 0, best_b = 0, merged = -1, m;
        for (int64_t i = 0; i + 1 < n; ++i) {
            int32_t r = merge_rank(t->merges, syms[i], syms[i + 1], &m);
            if (r >= 0 && r < best) best = r, best_a = syms[i], best_b = syms[i + 1], merged = m;
        }
        if (merged < 0) break;
        /* merge every occurrence of (best_a, best_b), left to right */
        int64_t j = 0;
        for (int64_t i = 0; i < n; ++i) {
            if (i + 1 < n && syms[i] == best_a && syms[i + 1] == best_b) {
                syms[j++] = merged;
                ++i;
            } else {
                syms[j++] = syms[i];
            }
        }
        n = j;
        if (n == 1) break;
    }
    *k = n;
}

typedef struct bpe_ctx {
    data_tokenizer *t;
    data_encoding *out;
    int type_id;
} bpe_ctx;

#define BPE_CACHE_MAX (1 << 20) /* cached pre-tokens before the cache is cleared */

static ag_status bpe_one(void *vctx, const char *w, size_t n) {
    bpe_ctx *c = vctx;
    data_tokenizer *t = c->t;
    int64_t off = data_strmap_get(&t->cache, w, n);
    if (off < 0) {
        if (t->cache.n >= BPE_CACHE_MAX) data_strmap_clear(&t->cache), t->cache_n = 0;
        if (t->cache_n + (int64_t)n + 1 > t->cache_cap) {
            int64_t cap = t->cache_cap ? t->cache_cap : 1 << 16;
            while (cap < t->cache_n + (int64_t)n + 1) cap *= 2;
            int32_t *p = realloc(t->cache_ids, (size_t)cap * sizeof *p);
            if (!p) return ag_fail(AG_ERR_MEMORY, "BPE cache: out of memory");
            t->cache_ids = p, t->cache_cap = cap;
        }
        off = t->cache_n;
        int32_t *syms = t->cache_ids + off + 1;
        int64_t k = (int64_t)n;
        for (size_t i = 0; i < n; ++i) {
            int32_t id = t->byte_id[(uint8_t)w[i]];
            syms[i] = id >= 0 ? id : t->unk_id; /* only a vocabulary without all 256 bytes has no id */
        }
        bpe_word(t, syms, &k);
        t->cache_ids[off] = (int32_t)k;
        t->cache_n += k + 1;
        if (data_strmap_put(&t->cache, w, n, off)) return AG_ERR_MEMORY;
    }
    const int32_t *ids = t->cache_ids + off;
    for (int32_t i = 0; i < ids[0]; ++i) {
        if (ids[1 + i] < 0) continue; /* a byte with no token and no <unk>: dropped, as HF does */
        if (data_encoding_push(c->out, ids[1 + i], c->type_id, 1)) return AG_ERR_MEMORY;
    }
    return AG_OK;
}

ag_status data_bpe_encode(data_tokenizer *t, const char *text, size_t len, int type_id, data_encoding *out) {
    bpe_ctx c = {t, out, type_id};
    if (t->add_prefix_space && len > 0 && text[0] != ' ') {
        /* RoBERTa-style: the first word is encoded as if a space preceded it */
        char *s = malloc(len + 2);
        if (!s) return ag_fail(AG_ERR_MEMORY, "BPE: out of memory");
        s[0] = ' ', memcpy(s + 1, text, len), s[len + 1] = 0;
        ag_status st = data_bpe_pretokenize(t, s, len + 1, bpe_one, &c);
        free(s);
        return st;
    }
    return data_bpe_pretokenize(t, text, len, bpe_one, &c);
}

/* ---------------------------------------------------------------- decode */

ag_status data_bpe_decode(const data_tokenizer *t, const int32_t *ids, int64_t n, bool skip_special, char **out) {
    size_t cap = 64, len = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (ids[i] < 0 || ids[i] >= t->n_tokens)
            return ag_fail(AG_ERR_ARG, "decode: id %d at position %lld is outside the vocabulary [0, %d)", ids[i],
                           (long long)i, t->n_tokens);
        cap += strlen(t->tokens[ids[i]]);
    }
    char *s = malloc(cap + 1);
    if (!s) return ag_fail(AG_ERR_MEMORY, "decode: out of memory");
    for (int64_t i = 0; i < n; ++i) {
        const char *tok = t->tokens[ids[i]];
        bool special = data_tokenizer_is_special(t, ids[i]);
        if (special && skip_special) continue;
        if (special) { /* added tokens are plain text, not byte characters */
            size_t k = strlen(tok);
            memcpy(s + len, tok, k), len += k;
            continue;
        }
        /* each character stands for one byte: U+0000..U+007F in one byte, up to U+01FF in two */
        for (const uint8_t *p = (const uint8_t *)tok; *p;) {
            unsigned cp;
            if (*p < 0x80) cp = *p++;
            else if ((*p & 0xE0) == 0xC0 && p[1]) cp = (unsigned)(p[0] & 0x1F) << 6 | (p[1] & 0x3F), p += 2;
            else { cp = 0xFFFF; ++p; }
            s[len++] = cp < 512 ? (char)t->char_byte[cp] : '?';
        }
    }
    s[len] = 0;
    *out = s;
    return AG_OK;
}
