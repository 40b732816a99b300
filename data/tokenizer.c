/* tokenizer.c: the parts every tokenizer kind shares — the string map, UTF-8
 * repair, special tokens, pairs with truncation and padding, loading from a
 * tokenizer.json or a folder, and saving. The models are in wordpiece.c and
 * bpe.c (and unigram.c, through data_tokenizer.ext). JSON is cJSON. */
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

/* ---------------------------------------------------------------- string map */

static uint64_t hash_bytes(const char *s, size_t n) { /* FNV-1a, then a final mix */
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; ++i) h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static int64_t strmap_slot(const data_strmap *m, const char *key, size_t len) {
    int64_t i = (int64_t)(hash_bytes(key, len) & (uint64_t)(m->cap - 1));
    while (m->keys[i] && !(m->klens[i] == len && memcmp(m->keys[i], key, len) == 0)) i = (i + 1) & (m->cap - 1);
    return i;
}

int64_t data_strmap_get(const data_strmap *m, const char *key, size_t len) {
    if (m->n == 0) return -1;
    int64_t i = strmap_slot(m, key, len);
    return m->keys[i] ? m->vals[i] : -1;
}

static ag_status strmap_grow(data_strmap *m) {
    data_strmap g = {.cap = m->cap ? 2 * m->cap : 1024};
    g.keys = calloc((size_t)g.cap, sizeof *g.keys);
    g.klens = malloc((size_t)g.cap * sizeof *g.klens);
    g.vals = malloc((size_t)g.cap * sizeof *g.vals);
    if (!g.keys || !g.klens || !g.vals) {
        free(g.keys), free(g.klens), free(g.vals);
        return ag_fail(AG_ERR_MEMORY, "string map: out of memory");
    }
    for (int64_t i = 0; i < m->cap; ++i)
        if (m->keys[i]) {
            int64_t j = strmap_slot(&g, m->keys[i], m->klens[i]);
            g.keys[j] = m->keys[i], g.klens[j] = m->klens[i], g.vals[j] = m->vals[i];
        }
    free(m->keys), free(m->klens), free(m->vals);
    g.n = m->n;
    *m = g;
    return AG_OK;
}

/* The slot of `key`, inserting it with value 0 when absent; -1 on no memory. */
static int64_t strmap_insert(data_strmap *m, const char *key, size_t len) {
    if (2 * (m->n + 1) > m->cap && strmap_grow(m)) return -1;
    int64_t i = strmap_slot(m, key, len);
    if (!m->keys[i]) {
        char *k = malloc(len + 1);
        if (!k) { ag_fail(AG_ERR_MEMORY, "string map: out of memory"); return -1; }
        memcpy(k, key, len), k[len] = 0;
        m->keys[i] = k, m->klens[i] = (uint32_t)len, m->vals[i] = 0, m->n++;
    }
    return i;
}

ag_status data_strmap_put(data_strmap *m, const char *key, size_t len, int64_t val) {
    int64_t i = strmap_insert(m, key, len);
    if (i < 0) return AG_ERR_MEMORY;
    m->vals[i] = val;
    return AG_OK;
}

ag_status data_strmap_add(data_strmap *m, const char *key, size_t len, int64_t inc) {
    int64_t i = strmap_insert(m, key, len);
    if (i < 0) return AG_ERR_MEMORY;
    m->vals[i] += inc;
    return AG_OK;
}

void data_strmap_clear(data_strmap *m) {
    for (int64_t i = 0; i < m->cap; ++i) free(m->keys[i]), m->keys[i] = NULL;
    m->n = 0;
}

void data_strmap_free(data_strmap *m) {
    if (m->keys) data_strmap_clear(m);
    free(m->keys), free(m->klens), free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- UTF-8 and encodings */

int64_t data_utf8_sanitize(const char *text, size_t len, char **out, size_t *out_len) {
    char *s = malloc(3 * len + 1); /* each bad byte grows to the 3 bytes of U+FFFD */
    if (!s) return -1;
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)text;
    size_t at = 0, n = 0;
    int64_t bad = 0;
    while (at < len) {
        if (p[at] < 0x80) { s[n++] = (char)p[at++]; continue; } /* ASCII fast path */
        int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p + at, (utf8proc_ssize_t)(len - at), &cp);
        if (k > 0) {
            memcpy(s + n, p + at, (size_t)k), n += (size_t)k, at += (size_t)k;
        } else {
            memcpy(s + n, "\xEF\xBF\xBD", 3), n += 3, at += 1, bad++;
        }
    }
    s[n] = 0;
    *out = s, *out_len = n;
    return bad;
}

ag_status data_encoding_push(data_encoding *e, int32_t id, int32_t type_id, uint8_t mask) {
    if (e->n == e->cap) {
        int64_t cap = e->cap ? 2 * e->cap : 256;
        int32_t *a = realloc(e->ids, (size_t)cap * sizeof *a);
        if (a) e->ids = a;
        int32_t *b = realloc(e->type_ids, (size_t)cap * sizeof *b);
        if (b) e->type_ids = b;
        uint8_t *c = realloc(e->mask, (size_t)cap);
        if (c) e->mask = c;
        if (!a || !b || !c) return ag_fail(AG_ERR_MEMORY, "encoding: out of memory");
        e->cap = cap;
    }
    e->ids[e->n] = id, e->type_ids[e->n] = type_id, e->mask[e->n] = mask, e->n++;
    return AG_OK;
}

void data_encoding_reset(data_encoding *e) { e->n = 0, e->n_invalid = 0; }

void data_encoding_free(data_encoding *e) {
    free(e->ids), free(e->type_ids), free(e->mask);
    memset(e, 0, sizeof *e);
}

/* ---------------------------------------------------------------- vocabulary */

int32_t data_tokenizer_id(const data_tokenizer *t, const char *token) {
    return (int32_t)data_strmap_get(&t->vocab, token, strlen(token));
}

int32_t data_tokenizer_add_token(data_tokenizer *t, const char *s, size_t len) {
    if ((t->n_tokens & (t->n_tokens - 1)) == 0) { /* grow at powers of two */
        char **tk = realloc(t->tokens, (size_t)(t->n_tokens ? 2 * t->n_tokens : 1) * sizeof *tk);
        if (!tk) { ag_fail(AG_ERR_MEMORY, "vocabulary: out of memory"); return -1; }
        t->tokens = tk;
    }
    char *c = malloc(len + 1);
    if (!c) { ag_fail(AG_ERR_MEMORY, "vocabulary: out of memory"); return -1; }
    memcpy(c, s, len), c[len] = 0;
    t->tokens[t->n_tokens] = c;
    if (data_strmap_put(&t->vocab, s, len, t->n_tokens)) return -1;
    return t->n_tokens++;
}

bool data_tokenizer_is_special(const data_tokenizer *t, int32_t id) {
    for (int32_t i = 0; i < t->n_specials; ++i)
        if (t->specials[i] == id) return true;
    return false;
}

ag_status data_tokenizer_add_special(data_tokenizer *t, int32_t id) {
    if (id < 0 || data_tokenizer_is_special(t, id)) return AG_OK;
    int32_t *s = realloc(t->specials, (size_t)(t->n_specials + 1) * sizeof *s);
    if (!s) return ag_fail(AG_ERR_MEMORY, "special tokens: out of memory");
    t->specials = s;
    /* keep the longest first, so "<|endoftext|>" wins over a shorter token it begins with */
    int32_t i = t->n_specials++;
    size_t len = strlen(t->tokens[id]);
    while (i > 0 && strlen(t->tokens[s[i - 1]]) < len) s[i] = s[i - 1], --i;
    s[i] = id;
    return AG_OK;
}

/* The ids of [CLS], [SEP], [PAD], [UNK] (or <s>, </s>, <pad>, <unk>) by name. */
void data_tokenizer_find_specials(data_tokenizer *t) {
    static const char *const unk[] = {"[UNK]", "<unk>"}, *const cls[] = {"[CLS]", "<s>"},
                             *const sep[] = {"[SEP]", "</s>"}, *const pad[] = {"[PAD]", "<pad>"};
    t->unk_id = t->cls_id = t->sep_id = t->pad_id = -1;
    for (int i = 0; i < 2; ++i) {
        if (t->unk_id < 0) t->unk_id = data_tokenizer_id(t, unk[i]);
        if (t->cls_id < 0) t->cls_id = data_tokenizer_id(t, cls[i]);
        if (t->sep_id < 0) t->sep_id = data_tokenizer_id(t, sep[i]);
        if (t->pad_id < 0) t->pad_id = data_tokenizer_id(t, pad[i]);
    }
    int32_t ids[] = {t->unk_id, t->cls_id, t->sep_id, t->pad_id, data_tokenizer_id(t, "[MASK]"),
                     data_tokenizer_id(t, "<mask>"), data_tokenizer_id(t, "<|endoftext|>")};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; ++i) data_tokenizer_add_special(t, ids[i]);
}

void data_tokenizer_free(data_tokenizer *t) {
    if (t->ext.free) t->ext.free(t->ext.impl);
    data_bpe_free(t);
    for (int32_t i = 0; i < t->n_tokens; ++i) free(t->tokens[i]);
    free(t->tokens), free(t->specials);
    data_strmap_free(&t->vocab);
    memset(t, 0, sizeof *t);
}

/* ---------------------------------------------------------------- encode */

/* One piece of text with no special token in it, by the model's kind. */
static ag_status encode_piece(data_tokenizer *t, const char *s, size_t n, int type_id, data_encoding *out) {
    if (n == 0) return AG_OK;
    switch (t->kind) {
    case DATA_TOK_WORDPIECE: return data_wordpiece_encode(t, s, n, type_id, out);
    case DATA_TOK_BPE: return data_bpe_encode(t, s, n, type_id, out);
    case DATA_TOK_UNIGRAM:
        if (t->ext.encode) return t->ext.encode(t, s, n, out);
        return ag_fail(AG_ERR_STATE, "tokenizer %s: Unigram is not linked in (data/unigram.c)", t->source);
    }
    return ag_fail(AG_ERR_STATE, "tokenizer: unknown kind %d", (int)t->kind);
}

ag_status data_tokenizer_encode(data_tokenizer *t, const char *text, size_t len, int type_id, data_encoding *out) {
    char *s;
    size_t n;
    int64_t bad = data_utf8_sanitize(text, len, &s, &n);
    if (bad < 0) return ag_fail(AG_ERR_MEMORY, "encode: out of memory");
    out->n_invalid += bad;
    if (t->kind == DATA_TOK_UNIGRAM && bad > 0) {
        /* SentencePiece replaces invalid bytes itself, after its normaliser has
         * run (so U+FFFD in the text and an invalid byte segment differently):
         * give it the raw bytes, counted above */
        free(s);
        if (!(s = malloc(len + 1))) return ag_fail(AG_ERR_MEMORY, "encode: out of memory");
        memcpy(s, text, len), s[len] = 0, n = len;
    }
    ag_status st = AG_OK;
    /* next[i]: where special token i next occurs at or after `at` (NULL: nowhere),
     * searched again only once `at` has passed it, so many specials stay linear */
    const char *next_small[16], **next = t->n_specials <= 16 ? next_small : malloc((size_t)t->n_specials * sizeof *next);
    if (!next) { free(s); return ag_fail(AG_ERR_MEMORY, "encode: out of memory"); }
    int32_t n_specials = t->literal_specials ? 0 : t->n_specials;
    for (int32_t i = 0; i < n_specials; ++i) next[i] = strstr(s, t->tokens[t->specials[i]]);
    size_t at = 0;
    while (at < n && !st) {
        /* the earliest special token from here (longest first at equal positions) */
        const char *best = NULL;
        int32_t best_id = -1;
        for (int32_t i = 0; i < n_specials; ++i) {
            if (next[i] && next[i] < s + at) next[i] = strstr(s + at, t->tokens[t->specials[i]]);
            if (next[i] && (!best || next[i] < best)) best = next[i], best_id = t->specials[i];
        }
        size_t end = best ? (size_t)(best - s) : n;
        st = encode_piece(t, s + at, end - at, type_id, out);
        if (!st && best) {
            st = data_encoding_push(out, best_id, type_id, 1);
            end += strlen(t->tokens[best_id]);
        }
        at = end;
    }
    if (next != next_small) free(next);
    free(s);
    return st;
}

ag_status data_tokenizer_encode_pair(data_tokenizer *t, const char *a, const char *b, data_encode_opts opts,
                                     data_encoding *out) {
    data_encoding_reset(out);
    data_encoding ea = {0}, eb = {0};
    ag_status st = data_tokenizer_encode(t, a, strlen(a), 0, &ea);
    if (!st && b) st = data_tokenizer_encode(t, b, strlen(b), 1, &eb);
    out->n_invalid = ea.n_invalid + eb.n_invalid;
    if (st) goto done;
    data_tok_template tpl = opts.add_special ? t->tpl : DATA_TPL_NONE;
    if (tpl != DATA_TPL_NONE && (t->cls_id < 0 || t->sep_id < 0)) {
        st = ag_fail(AG_ERR_ARG, "encode %s: special tokens asked for, but the vocabulary has no [CLS]/[SEP]",
                     t->source);
        goto done;
    }
    int64_t n_special = tpl == DATA_TPL_NONE ? 0 : tpl == DATA_TPL_BERT ? (b ? 3 : 2) : (b ? 4 : 2);
    if (opts.max_len > 0) {
        if (opts.max_len < n_special + (b ? 2 : 1)) {
            st = ag_fail(AG_ERR_ARG, "encode: max_len %lld cannot hold %lld special tokens and the text",
                         (long long)opts.max_len, (long long)n_special);
            goto done;
        }
        /* longest first: drop one id from the end of the longer sequence at a time */
        while (ea.n + eb.n + n_special > opts.max_len) {
            if (ea.n >= eb.n) ea.n--;
            else eb.n--;
        }
    }
    int type_b = tpl == DATA_TPL_BERT ? 1 : 0;
    if (tpl != DATA_TPL_NONE) st = data_encoding_push(out, t->cls_id, 0, 1);
    for (int64_t i = 0; !st && i < ea.n; ++i) st = data_encoding_push(out, ea.ids[i], 0, 1);
    if (!st && tpl != DATA_TPL_NONE) st = data_encoding_push(out, t->sep_id, 0, 1);
    if (b) {
        if (!st && tpl == DATA_TPL_ROBERTA) st = data_encoding_push(out, t->sep_id, 0, 1);
        for (int64_t i = 0; !st && i < eb.n; ++i) st = data_encoding_push(out, eb.ids[i], type_b, 1);
        if (!st && tpl != DATA_TPL_NONE) st = data_encoding_push(out, t->sep_id, type_b, 1);
    }
    if (!st && opts.pad_to > out->n) {
        if (t->pad_id < 0) {
            st = ag_fail(AG_ERR_ARG, "encode %s: padding asked for, but the vocabulary has no [PAD]", t->source);
            goto done;
        }
        while (!st && out->n < opts.pad_to) st = data_encoding_push(out, t->pad_id, 0, 0);
    }
done:
    data_encoding_free(&ea), data_encoding_free(&eb);
    return st;
}

ag_status data_tokenizer_decode(const data_tokenizer *t, const int32_t *ids, int64_t n, bool skip_special,
                                char **out) {
    switch (t->kind) {
    case DATA_TOK_WORDPIECE: return data_wordpiece_decode(t, ids, n, skip_special, out);
    case DATA_TOK_BPE: return data_bpe_decode(t, ids, n, skip_special, out);
    case DATA_TOK_UNIGRAM:
        if (t->ext.decode) return t->ext.decode(t, ids, n, skip_special, out);
        break;
    }
    return ag_fail(AG_ERR_STATE, "tokenizer %s: this kind cannot decode", t->source);
}

/* ---------------------------------------------------------------- loading */

/* The whole file as a NUL-terminated string (*len bytes). */
static char *read_file(const char *path, size_t *len, const char *what) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        ag_fail(AG_ERR_IO, "%s %s: cannot open: %s", what, path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    for (;;) {
        if (!s) break;
        n += fread(s + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *g = realloc(s, cap *= 2);
        if (!g) free(s);
        s = g;
    }
    bool err = ferror(f);
    fclose(f);
    if (!s || err) {
        free(s);
        ag_fail(s ? AG_ERR_IO : AG_ERR_MEMORY, "%s %s: read failed", what, path);
        return NULL;
    }
    s[n] = 0;
    if (len) *len = n;
    return s;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Whether the file's first non-blank byte is '{' (a tokenizer.json). */
static bool looks_like_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return true; /* load_json reports the error */
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t') {}
    fclose(f);
    return c == '{' || c == EOF;
}

/* vocab.txt: one token per line, the line number is the id. */
static ag_status load_vocab_txt(data_tokenizer *t, const char *path) {
    size_t n;
    char *s = read_file(path, &n, "WordPiece vocabulary");
    if (!s) return AG_ERR_IO;
    ag_status st = AG_OK;
    for (char *p = s; *p && !st;) {
        char *e = strchr(p, '\n');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        size_t kk = k;
        if (kk && p[kk - 1] == '\r') --kk;
        if (data_strmap_get(&t->vocab, p, kk) < 0) {
            if (data_tokenizer_add_token(t, p, kk) < 0) st = AG_ERR_MEMORY;
        } else { /* a repeated line keeps its first id but still takes a number */
            char dup[32];
            snprintf(dup, sizeof dup, "[duplicate %d]", t->n_tokens);
            if (data_tokenizer_add_token(t, dup, strlen(dup)) < 0) st = AG_ERR_MEMORY;
        }
        p += k + (e ? 1 : 0);
        if (!e) break;
    }
    free(s);
    if (!st && t->n_tokens == 0) st = ag_fail(AG_ERR_IO, "WordPiece vocabulary %s: empty", path);
    return st;
}

/* {"token": id, ...} into the id order; every id in [0, n) must appear once. */
static ag_status load_vocab_object(data_tokenizer *t, const cJSON *vocab, const char *where) {
    int n = cJSON_GetArraySize(vocab);
    char **by_id = calloc((size_t)n + 1, sizeof *by_id);
    if (!by_id) return ag_fail(AG_ERR_MEMORY, "%s: out of memory", where);
    ag_status st = AG_OK;
    for (const cJSON *e = vocab->child; e && !st; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= n || by_id[e->valueint])
            st = ag_fail(AG_ERR_IO, "%s: vocab entry \"%s\" has id %g; ids must be 0..%d, each once", where,
                         e->string, cJSON_IsNumber(e) ? e->valuedouble : -1.0, n - 1);
        else by_id[e->valueint] = e->string;
    }
    for (int i = 0; i < n && !st; ++i)
        if (data_tokenizer_add_token(t, by_id[i], strlen(by_id[i])) < 0) st = AG_ERR_MEMORY;
    free(by_id);
    if (!st && n == 0) st = ag_fail(AG_ERR_IO, "%s: the vocabulary is empty", where);
    return st;
}

/* merges.txt: an optional "#version" line, then "a b" per line. */
static ag_status load_merges_txt(data_tokenizer *t, const char *path) {
    char *s = read_file(path, NULL, "BPE merges");
    if (!s) return AG_ERR_IO;
    ag_status st = AG_OK;
    int line = 0;
    for (char *p = s; *p && !st;) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        ++line;
        size_t k = strlen(p);
        if (k && p[k - 1] == '\r') p[--k] = 0;
        if (k && !(line == 1 && strncmp(p, "#version", 8) == 0)) {
            char *sp = strchr(p, ' ');
            if (!sp) {
                st = ag_fail(AG_ERR_IO, "BPE merges %s: line %d is not \"a b\"", path, line);
                break;
            }
            *sp = 0;
            char where[1200];
            snprintf(where, sizeof where, "BPE merges %s line %d", path, line);
            st = data_bpe_add_merge(t, p, sp + 1, where);
        }
        if (!e) break;
        p = e + 1;
    }
    free(s);
    return st;
}

static bool json_bool(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static ag_status load_json(data_tokenizer *t, const char *path) {
    char *text = read_file(path, NULL, "tokenizer");
    if (!text) return AG_ERR_IO;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, false);
    long where_bad = end ? (long)(end - text) : -1;
    free(text);
    ag_status st = AG_OK;
    if (!root) {
        st = ag_fail(AG_ERR_IO, "tokenizer %s: not valid JSON (at byte %ld)", path, where_bad);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        st = ag_fail(AG_ERR_IO, "tokenizer %s: not valid JSON for a tokenizer (not an object)", path);
        goto done;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(model) || !cJSON_IsString(type)) {
        st = ag_fail(AG_ERR_IO, "tokenizer %s: no \"model\" object with a \"type\"", path);
        goto done;
    }
    bool unigram = strcmp(type->valuestring, "Unigram") == 0;
    if (unigram) { /* the model (and its normaliser) by unigram.c, then the added tokens below */
        data_unigram *u;
        if ((st = data_unigram_load(&u, path))) goto done;
        if ((st = data_tokenizer_attach_unigram(t, u, false))) goto done;
    }
    bool wordpiece = strcmp(type->valuestring, "WordPiece") == 0, bpe = strcmp(type->valuestring, "BPE") == 0;
    if (unigram) {
        /* read below: added_tokens and post_processor */
    } else if (!wordpiece && !bpe) {
        st = ag_fail(AG_ERR_IO, "tokenizer %s: model.type \"%s\" is not WordPiece, BPE or Unigram", path,
                     type->valuestring);
        goto done;
    }
    if (!unigram && !cJSON_IsObject(vocab)) {
        st = ag_fail(AG_ERR_IO, "tokenizer %s: model.vocab is missing or not an object", path);
        goto done;
    }
    char where[1200];
    snprintf(where, sizeof where, "tokenizer %s", path);
    if (!unigram && (st = load_vocab_object(t, vocab, where))) goto done;
    if (unigram) {
        /* the model is complete: unigram.c read its vocabulary, normaliser and pre-tokenizer */
    } else if (wordpiece) {
        data_wordpiece_init(t);
        const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
        if (!cJSON_IsObject(norm)) { /* no normalizer: the text is split as it is */
            t->lowercase = t->strip_accents = t->chinese_chars = t->clean_text = false;
        } else {
            t->lowercase = json_bool(norm, "lowercase", true);
            t->strip_accents = json_bool(norm, "strip_accents", t->lowercase); /* null follows lowercase */
            t->chinese_chars = json_bool(norm, "handle_chinese_chars", true);
            t->clean_text = json_bool(norm, "clean_text", true);
        }
        const cJSON *pre = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
        if (cJSON_IsString(pre)) snprintf(t->prefix, sizeof t->prefix, "%s", pre->valuestring);
        const cJSON *mx = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
        if (cJSON_IsNumber(mx)) t->max_word_chars = mx->valueint;
    } else {
        if ((st = data_bpe_init(t))) goto done;
        t->tpl = DATA_TPL_NONE;
        const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
        t->add_prefix_space = json_bool(pre, "add_prefix_space", false);
        const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
        if (!cJSON_IsArray(merges)) {
            st = ag_fail(AG_ERR_IO, "tokenizer %s: model.merges is missing or not an array", path);
            goto done;
        }
        int i = 0;
        for (const cJSON *m = merges->child; m && !st; m = m->next, ++i) {
            char a[1024], where_m[1400];
            const char *b = NULL;
            if (cJSON_IsString(m)) { /* "a b" */
                snprintf(a, sizeof a, "%s", m->valuestring);
                char *sp = strchr(a, ' ');
                if (sp) *sp = 0, b = sp + 1;
            } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                       cJSON_IsString(m->child->next)) { /* ["a", "b"] */
                snprintf(a, sizeof a, "%s", m->child->valuestring);
                b = m->child->next->valuestring;
            }
            if (!b) {
                st = ag_fail(AG_ERR_IO, "tokenizer %s: model.merges[%d] is neither \"a b\" nor [\"a\", \"b\"]", path,
                             i);
                break;
            }
            snprintf(where_m, sizeof where_m, "tokenizer %s model.merges[%d]", path, i);
            st = data_bpe_add_merge(t, a, b, where_m);
        }
        if (st) goto done;
    }
    /* added tokens: appended when beyond the vocabulary, special ones cut out of the text */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a && !st; a = a->next) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        if (!cJSON_IsString(content) || !cJSON_IsNumber(id)) {
            st = ag_fail(AG_ERR_IO, "tokenizer %s: an added_tokens entry lacks \"content\" or \"id\"", path);
            break;
        }
        int32_t have = data_tokenizer_id(t, content->valuestring);
        if (have < 0) {
            if (id->valueint != t->n_tokens) {
                st = ag_fail(AG_ERR_IO, "tokenizer %s: added token \"%s\" has id %d, expected %d", path,
                             content->valuestring, id->valueint, t->n_tokens);
                break;
            }
            have = data_tokenizer_add_token(t, content->valuestring, strlen(content->valuestring));
            if (have < 0) { st = AG_ERR_MEMORY; break; }
        }
        st = data_tokenizer_add_special(t, have);
    }
    if (st) goto done;
    data_tokenizer_find_specials(t);
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const cJSON *ptype = cJSON_GetObjectItemCaseSensitive(post, "type");
    if (cJSON_IsString(ptype)) {
        if (strcmp(ptype->valuestring, "BertProcessing") == 0) t->tpl = DATA_TPL_BERT;
        else if (strcmp(ptype->valuestring, "RobertaProcessing") == 0) t->tpl = DATA_TPL_ROBERTA;
        else if (strcmp(ptype->valuestring, "TemplateProcessing") == 0) /* read as BERT's template when it has [CLS]/[SEP] */
            t->tpl = t->cls_id >= 0 && t->sep_id >= 0 ? DATA_TPL_BERT : DATA_TPL_NONE;
        else t->tpl = DATA_TPL_NONE;
    } else if (bpe) {
        t->tpl = DATA_TPL_NONE;
    }
done:
    cJSON_Delete(root);
    return st;
}

ag_status data_tokenizer_load(data_tokenizer *t, const char *path) {
    memset(t, 0, sizeof *t);
    t->unk_id = t->cls_id = t->sep_id = t->pad_id = -1;
    snprintf(t->source, sizeof t->source, "%s", path);
    ag_status st;
    if (!is_dir(path)) {
        if (!file_exists(path)) return ag_fail(AG_ERR_IO, "tokenizer %s: no such file or folder", path);
        if (looks_like_json(path)) {
            st = load_json(t, path);
        } else { /* a SentencePiece .model (a protobuf): Unigram, read as spm_encode reads it */
            data_unigram *u;
            st = data_unigram_load(&u, path);
            if (!st) st = data_tokenizer_attach_unigram(t, u, true);
        }
    } else {
        char f1[1024], f2[1024];
        snprintf(f1, sizeof f1, "%s/vocab.txt", path);
        if (file_exists(f1)) {
            st = load_vocab_txt(t, f1);
            if (!st) {
                data_wordpiece_init(t);
                snprintf(f2, sizeof f2, "%s/tokenizer_config.json", path);
                char *cfg = file_exists(f2) ? read_file(f2, NULL, "tokenizer config") : NULL;
                cJSON *c = cfg ? cJSON_Parse(cfg) : NULL;
                if (c) t->lowercase = t->strip_accents = json_bool(c, "do_lower_case", true);
                cJSON_Delete(c), free(cfg);
                data_tokenizer_find_specials(t);
            }
        } else {
            snprintf(f1, sizeof f1, "%s/vocab.json", path);
            snprintf(f2, sizeof f2, "%s/merges.txt", path);
            if (!file_exists(f1) && !file_exists(f2)) {
                st = ag_fail(AG_ERR_IO, "tokenizer folder %s: no vocab.txt (WordPiece), nor vocab.json + merges.txt "
                                        "(BPE), nor tokenizer.json",
                             path);
            } else {
                char *text = read_file(f1, NULL, "BPE vocabulary");
                cJSON *v = text ? cJSON_Parse(text) : NULL;
                free(text);
                if (!text) st = AG_ERR_IO;
                else if (!cJSON_IsObject(v)) st = ag_fail(AG_ERR_IO, "BPE vocabulary %s: not a JSON object", f1);
                else {
                    char where[1200];
                    snprintf(where, sizeof where, "BPE vocabulary %s", f1);
                    st = load_vocab_object(t, v, where);
                }
                cJSON_Delete(v);
                if (!st) st = data_bpe_init(t);
                if (!st) st = load_merges_txt(t, f2);
                if (!st) {
                    data_tokenizer_find_specials(t);
                    t->tpl = data_tokenizer_id(t, "<s>") >= 0 ? DATA_TPL_ROBERTA : DATA_TPL_NONE;
                }
            }
        }
    }
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ag_error());
        data_tokenizer_free(t);
        ag_fail(st, "%s", msg); /* the message outlives the cleanup */
    }
    return st;
}

/* ---------------------------------------------------------------- saving */

ag_status data_tokenizer_save(const data_tokenizer *t, const char *path) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int32_t i = 0; i < t->n_specials; ++i) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", t->specials[i]);
        cJSON_AddStringToObject(a, "content", t->tokens[t->specials[i]]);
        cJSON_AddBoolToObject(a, "single_word", false);
        cJSON_AddBoolToObject(a, "lstrip", false);
        cJSON_AddBoolToObject(a, "rstrip", false);
        cJSON_AddBoolToObject(a, "normalized", false);
        cJSON_AddBoolToObject(a, "special", true);
        cJSON_AddItemToArray(added, a);
    }
    cJSON *model = cJSON_CreateObject();
    if (t->kind == DATA_TOK_WORDPIECE) {
        cJSON *n = cJSON_AddObjectToObject(root, "normalizer");
        cJSON_AddStringToObject(n, "type", "BertNormalizer");
        cJSON_AddBoolToObject(n, "clean_text", t->clean_text);
        cJSON_AddBoolToObject(n, "handle_chinese_chars", t->chinese_chars);
        cJSON_AddBoolToObject(n, "strip_accents", t->strip_accents);
        cJSON_AddBoolToObject(n, "lowercase", t->lowercase);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "pre_tokenizer"), "type", "BertPreTokenizer");
        cJSON *p = cJSON_AddObjectToObject(root, "post_processor");
        cJSON_AddStringToObject(p, "type", "BertProcessing");
        if (t->sep_id >= 0 && t->cls_id >= 0) {
            cJSON *sep = cJSON_AddArrayToObject(p, "sep"), *cls = cJSON_AddArrayToObject(p, "cls");
            cJSON_AddItemToArray(sep, cJSON_CreateString(t->tokens[t->sep_id]));
            cJSON_AddItemToArray(sep, cJSON_CreateNumber(t->sep_id));
            cJSON_AddItemToArray(cls, cJSON_CreateString(t->tokens[t->cls_id]));
            cJSON_AddItemToArray(cls, cJSON_CreateNumber(t->cls_id));
        }
        cJSON *d = cJSON_AddObjectToObject(root, "decoder");
        cJSON_AddStringToObject(d, "type", "WordPiece");
        cJSON_AddStringToObject(d, "prefix", t->prefix);
        cJSON_AddBoolToObject(d, "cleanup", true);
        cJSON_AddStringToObject(model, "type", "WordPiece");
        cJSON_AddStringToObject(model, "unk_token", t->unk_id >= 0 ? t->tokens[t->unk_id] : "[UNK]");
        cJSON_AddStringToObject(model, "continuing_subword_prefix", t->prefix);
        cJSON_AddNumberToObject(model, "max_input_chars_per_word", t->max_word_chars);
    } else if (t->kind == DATA_TOK_BPE) {
        cJSON_AddNullToObject(root, "normalizer");
        cJSON *p = cJSON_AddObjectToObject(root, "pre_tokenizer");
        cJSON_AddStringToObject(p, "type", "ByteLevel");
        cJSON_AddBoolToObject(p, "add_prefix_space", t->add_prefix_space);
        cJSON_AddBoolToObject(p, "trim_offsets", true);
        cJSON_AddBoolToObject(p, "use_regex", true);
        cJSON *pp = cJSON_AddObjectToObject(root, "post_processor");
        cJSON_AddStringToObject(pp, "type", t->tpl == DATA_TPL_ROBERTA ? "RobertaProcessing" : "ByteLevel");
        cJSON *d = cJSON_AddObjectToObject(root, "decoder");
        cJSON_AddStringToObject(d, "type", "ByteLevel");
        cJSON_AddStringToObject(model, "type", "BPE");
        cJSON_AddNullToObject(model, "dropout");
        cJSON_AddNullToObject(model, "unk_token");
        cJSON_AddBoolToObject(model, "fuse_unk", false);
        cJSON_AddBoolToObject(model, "byte_fallback", false);
    } else if (t->ext.save_json) {
        ag_status st = t->ext.save_json(t, root);
        if (st) { cJSON_Delete(root), cJSON_Delete(model); return st; }
    }
    if (t->kind != DATA_TOK_UNIGRAM) {
        cJSON *v = cJSON_AddObjectToObject(model, "vocab");
        for (int32_t i = 0; i < t->n_tokens; ++i)
            cJSON_AddNumberToObject(v, t->tokens[i], i); /* specials too, as Hugging Face writes them */
        if (t->kind == DATA_TOK_BPE) {
            const char **a = malloc((size_t)(t->n_merges + 1) * sizeof *a), **b = malloc((size_t)(t->n_merges + 1) * sizeof *b);
            cJSON *m = cJSON_AddArrayToObject(model, "merges");
            if (a && b) {
                data_bpe_merge_list(t, a, b);
                for (int32_t i = 0; i < t->n_merges; ++i) {
                    char *ab = malloc(strlen(a[i]) + strlen(b[i]) + 2);
                    if (!ab) break;
                    sprintf(ab, "%s %s", a[i], b[i]);
                    cJSON_AddItemToArray(m, cJSON_CreateString(ab));
                    free(ab);
                }
            }
            free(a), free(b);
        }
        cJSON_AddItemToObject(root, "model", model);
    } else {
        cJSON_Delete(model);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return ag_fail(AG_ERR_MEMORY, "tokenizer %s: out of memory writing JSON", path);
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fputs(text, f) >= 0;
    ok = f && fclose(f) == 0 && ok;
    free(text);
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return ag_fail(AG_ERR_IO, "tokenizer %s: cannot write: %s", path, strerror(errno));
    }
    return AG_OK;
}
