/* prepare.c: corpus files to compressed token shards with document and
 * sentence boundaries (`tapegrad prepare`), streaming. The file layout, the
 * sentence rule and the held-out split are described in data.h. */
#include "data.h"
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static const char MAGIC2[8] = {'T', 'G', 'S', 'H', 'A', 'R', 'D', '2'};
enum { HEADER_BYTES = 8 + 4 * 4 + 8 * 3 + 8 * 2 + 4 };

/* ---------------------------------------------------------------- little-endian fields */

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; ++i) p[i] = (uint8_t)(v >> 8 * i); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; ++i) p[i] = (uint8_t)(v >> 8 * i); }
static uint32_t get32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; --i) v = v << 8 | p[i]; return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; --i) v = v << 8 | p[i]; return v; }

/* ---------------------------------------------------------------- shard files */

ag_status data_doc_shard_write(const char *path, const data_doc_shard *s, int64_t *file_bytes) {
    const int bpt = s->vocab_size <= 65536 ? 2 : 4;
    /* the body: tokens [n], document starts [n_docs], sentence starts [n_sents] */
    uint64_t raw_n = (uint64_t)s->n * (uint64_t)bpt + 8 * (uint64_t)(s->n_docs + s->n_sents);
    uint8_t *raw = malloc(raw_n ? raw_n : 1);
    uLongf z_n = compressBound((uLong)raw_n);
    uint8_t *z = malloc(HEADER_BYTES + z_n);
    if (!raw || !z) { free(raw), free(z); return ag_fail(AG_ERR_MEMORY, "shard %s: out of memory", path); }
    uint8_t *p = raw;
    for (int64_t i = 0; i < s->n; ++i, p += bpt) {
        if (bpt == 2) p[0] = (uint8_t)s->tokens[i], p[1] = (uint8_t)(s->tokens[i] >> 8);
        else put32(p, (uint32_t)s->tokens[i]);
    }
    for (int64_t i = 0; i < s->n_docs; ++i, p += 8) put64(p, (uint64_t)s->doc_start[i]);
    for (int64_t i = 0; i < s->n_sents; ++i, p += 8) put64(p, (uint64_t)s->sent_start[i]);
    ag_status st = AG_OK;
    if (compress2(z + HEADER_BYTES, &z_n, raw, (uLong)raw_n, 6) != Z_OK) {
        st = ag_fail(AG_ERR_MEMORY, "shard %s: zlib could not compress", path);
        goto done;
    }
    uint8_t *h = z;
    memcpy(h, MAGIC2, 8);
    put32(h + 8, s->continues ? 1u : 0u), put32(h + 12, (uint32_t)s->vocab_size);
    put32(h + 16, (uint32_t)s->sep_id), put32(h + 20, (uint32_t)bpt);
    put64(h + 24, (uint64_t)s->n), put64(h + 32, (uint64_t)s->n_docs), put64(h + 40, (uint64_t)s->n_sents);
    put64(h + 48, raw_n), put64(h + 56, (uint64_t)z_n);
    put32(h + 64, (uint32_t)crc32(0L, raw, (uInt)raw_n));
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) { st = ag_fail(AG_ERR_IO, "shard %s: cannot write: %s", tmp, strerror(errno)); goto done; }
    bool ok = fwrite(z, 1, HEADER_BYTES + z_n, f) == HEADER_BYTES + z_n;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        st = ag_fail(AG_ERR_IO, "shard %s: write failed: %s", path, strerror(errno));
        goto done;
    }
    if (file_bytes) *file_bytes = (int64_t)(HEADER_BYTES + z_n);
done:
    free(raw), free(z);
    return st;
}

ag_status data_doc_shard_read(data_doc_shard *s, const char *path) {
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) return ag_fail(AG_ERR_IO, "shard %s: cannot open: %s (hint: run 'tapegrad prepare' first)", path,
                           strerror(errno));
    uint8_t h[HEADER_BYTES], *z = NULL, *raw = NULL;
    ag_status st = AG_OK;
    if (fread(h, 1, HEADER_BYTES, f) != HEADER_BYTES || memcmp(h, MAGIC2, 8) != 0) {
        st = ag_fail(AG_ERR_IO, "shard %s: not a compressed tapegrad shard (bad magic or too short)", path);
        goto done;
    }
    uint32_t bpt = get32(h + 20);
    uint64_t n = get64(h + 24), n_docs = get64(h + 32), n_sents = get64(h + 40);
    uint64_t raw_n = get64(h + 48), z_n = get64(h + 56);
    s->continues = get32(h + 8) & 1;
    s->vocab_size = (int)get32(h + 12);
    s->sep_id = (int32_t)get32(h + 16);
    const uint64_t big = (uint64_t)1 << 40;
    if ((bpt != 2 && bpt != 4) || s->vocab_size <= 0 || n > big || n_docs > n || n_sents > n ||
        raw_n != n * bpt + 8 * (n_docs + n_sents) || z_n > 2 * raw_n + 1024) {
        st = ag_fail(AG_ERR_IO, "shard %s: bad header (corrupt file?)", path);
        goto done;
    }
    z = malloc(z_n ? z_n : 1), raw = malloc(raw_n ? raw_n : 1);
    s->tokens = malloc((n ? n : 1) * sizeof *s->tokens);
    s->doc_start = malloc((n_docs ? n_docs : 1) * sizeof *s->doc_start);
    s->sent_start = malloc((n_sents ? n_sents : 1) * sizeof *s->sent_start);
    if (!z || !raw || !s->tokens || !s->doc_start || !s->sent_start) {
        st = ag_fail(AG_ERR_MEMORY, "shard %s: out of memory for %llu tokens", path, (unsigned long long)n);
        goto done;
    }
    size_t got = fread(z, 1, z_n, f);
    if (got != z_n) {
        st = ag_fail(AG_ERR_IO, "shard %s: truncated: %zu of %llu compressed bytes", path, got,
                     (unsigned long long)z_n);
        goto done;
    }
    uLongf out_n = (uLongf)raw_n;
    if (uncompress(raw, &out_n, z, (uLong)z_n) != Z_OK || out_n != raw_n ||
        crc32(0L, raw, (uInt)raw_n) != get32(h + 64)) {
        st = ag_fail(AG_ERR_IO, "shard %s: corrupt: the compressed body does not check out (zlib or CRC-32)", path);
        goto done;
    }
    s->n = (int64_t)n, s->n_docs = (int64_t)n_docs, s->n_sents = (int64_t)n_sents;
    const uint8_t *p = raw;
    for (int64_t i = 0; i < s->n; ++i, p += bpt) {
        s->tokens[i] = bpt == 2 ? (int32_t)(p[0] | p[1] << 8) : (int32_t)get32(p);
        if (s->tokens[i] < 0 || s->tokens[i] >= s->vocab_size) {
            st = ag_fail(AG_ERR_IO, "shard %s: token %lld is %d, outside the vocabulary of %d", path, (long long)i,
                         s->tokens[i], s->vocab_size);
            goto done;
        }
    }
    for (int64_t i = 0; i < s->n_docs; ++i, p += 8) s->doc_start[i] = (int64_t)get64(p);
    for (int64_t i = 0; i < s->n_sents; ++i, p += 8) s->sent_start[i] = (int64_t)get64(p);
    for (int64_t i = 0; i < s->n_docs; ++i)
        if (s->doc_start[i] >= s->n || (i && s->doc_start[i] <= s->doc_start[i - 1])) {
            st = ag_fail(AG_ERR_IO, "shard %s: document start %lld is out of order", path, (long long)i);
            goto done;
        }
    for (int64_t i = 0; i < s->n_sents; ++i)
        if (s->sent_start[i] >= s->n || (i && s->sent_start[i] <= s->sent_start[i - 1])) {
            st = ag_fail(AG_ERR_IO, "shard %s: sentence start %lld is out of order", path, (long long)i);
            goto done;
        }
done:
    fclose(f);
    free(z), free(raw);
    if (st) data_doc_shard_free(s);
    return st;
}

void data_doc_shard_free(data_doc_shard *s) {
    free(s->tokens), free(s->doc_start), free(s->sent_start);
    s->tokens = NULL, s->doc_start = s->sent_start = NULL;
    s->n = s->n_docs = s->n_sents = 0;
}

/* ---------------------------------------------------------------- growable arrays */

typedef struct { int64_t *v; int64_t n, cap; } i64vec;

static bool push64(i64vec *a, int64_t x) {
    if (a->n == a->cap) {
        int64_t cap = a->cap ? 2 * a->cap : 1024;
        int64_t *v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

/* ---------------------------------------------------------------- one split's shard writer */

typedef struct {
    const char *name;          /* "train", "val" */
    data_encoding toks;        /* the shard being filled: ids [toks.n] */
    i64vec docs, sents;        /* its boundaries */
    bool continues;            /* its first document began in the previous shard */
    int n_shards;
    cJSON *list;               /* the manifest's "shards" array */
    int64_t tokens, n_docs, n_sents;
} split_writer;

typedef struct {
    const data_prepare_opts *o;
    data_prepare_stats *stats;
    data_tokenizer tok;        /* unused for bytes */
    bool bytes;
    int32_t sep_id, vocab_size;
    int64_t shard_tokens;
    split_writer split[2];
    int64_t doc_index;         /* documents begun so far, over all files */
    split_writer *doc;         /* the split of the open document, NULL between documents */
    /* progress */
    int64_t total_bytes;
    double t0, last_report;
    bool tty;
} prep;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ag_status flush_shard(prep *p, split_writer *w) {
    if (w->toks.n == 0) return AG_OK;
    char path[1024], name[64];
    snprintf(name, sizeof name, "%s-%05d.tgs", w->name, w->n_shards);
    snprintf(path, sizeof path, "%s/%s", p->o->out_dir, name);
    data_doc_shard s = {.tokens = w->toks.ids, .n = w->toks.n, .doc_start = w->docs.v, .n_docs = w->docs.n,
                        .sent_start = w->sents.v, .n_sents = w->sents.n, .vocab_size = p->vocab_size,
                        .sep_id = p->sep_id, .continues = w->continues};
    int64_t bytes;
    ag_status st = data_doc_shard_write(path, &s, &bytes);
    if (st) return st;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "file", name);
    cJSON_AddNumberToObject(e, "tokens", (double)s.n);
    cJSON_AddNumberToObject(e, "documents", (double)s.n_docs);
    cJSON_AddNumberToObject(e, "sentences", (double)s.n_sents);
    cJSON_AddBoolToObject(e, "continues", s.continues);
    cJSON_AddNumberToObject(e, "file_bytes", (double)bytes);
    cJSON_AddItemToArray(w->list, e);
    p->stats->file_bytes += bytes;
    w->n_shards++;
    /* a document still open goes on in the next shard */
    w->continues = p->doc == w;
    w->toks.n = 0, w->docs.n = 0, w->sents.n = 0;
    /* the rest of an open document is this shard's first unit (a fragment, not a new document) */
    if (w->continues && !push64(&w->docs, 0)) return ag_fail(AG_ERR_MEMORY, "prepare: out of memory");
    return AG_OK;
}

/* Appends the ids of `len` bytes of text (a sentence, or trailing whitespace
 * when !new_sentence) to the open document, opening one first if needed. */
static ag_status add_text(prep *p, const char *text, size_t len, bool new_sentence) {
    if (!p->doc) {
        if (!new_sentence) return AG_OK; /* whitespace before any text: no document yet */
        double f = p->o->val_fraction;
        int64_t d = p->doc_index++;
        bool val = (int64_t)((double)(d + 1) * f) > (int64_t)((double)d * f);
        p->doc = &p->split[val];
        if (!push64(&p->doc->docs, p->doc->toks.n)) return ag_fail(AG_ERR_MEMORY, "prepare: out of memory");
        p->doc->n_docs++;
    }
    split_writer *w = p->doc;
    int64_t at = w->toks.n;
    ag_status st = AG_OK;
    if (p->bytes) {
        for (size_t i = 0; i < len && !st; ++i) st = data_encoding_push(&w->toks, (uint8_t)text[i], 0, 1);
    } else {
        int64_t before = w->toks.n_invalid;
        st = data_tokenizer_encode(&p->tok, text, len, 0, &w->toks);
        p->stats->invalid_utf8 += w->toks.n_invalid - before;
    }
    if (st) return st;
    if (new_sentence && w->toks.n > at) {
        if (!push64(&w->sents, at)) return ag_fail(AG_ERR_MEMORY, "prepare: out of memory");
        w->n_sents++;
    }
    w->tokens += w->toks.n - at;
    /* a document longer than two shards is cut mid-document (at a sentence) */
    if (w->toks.n >= 2 * p->shard_tokens) return flush_shard(p, w);
    return AG_OK;
}

static ag_status end_document(prep *p) {
    split_writer *w = p->doc;
    if (!w) return AG_OK;
    ag_status st = data_encoding_push(&w->toks, p->sep_id, 0, 1);
    w->tokens++;
    p->doc = NULL;
    if (!st && w->toks.n >= p->shard_tokens) st = flush_shard(p, w);
    return st;
}

static bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_closer(char c) { return c == '"' || c == '\'' || c == ')' || c == ']'; }

static bool all_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (!is_space(s[i])) return false;
    return true;
}

static void progress(prep *p, bool final) {
    if (!p->o->progress) return;
    double t = now_seconds(), dt = t - p->t0;
    if (!final && t - p->last_report < (p->tty ? 0.2 : 5.0)) return;
    p->last_report = t;
    double mb = (double)p->stats->bytes / 1e6, total = (double)p->total_bytes / 1e6;
    double rate = dt > 0 ? mb / dt : 0, eta = rate > 0 ? (total - mb) / rate : 0;
    int width = 30, filled = total > 0 ? (int)(width * mb / total) : width;
    char bar[64];
    for (int i = 0; i < width; ++i) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "%sprepare [%s] %.1f/%.1f MB  %.1f MB/s  ETA %.0fs%s", p->tty ? "\r" : "", bar, mb, total, rate,
            final ? 0.0 : eta, p->tty && !final ? "" : "\n");
    fflush(stderr);
}

/* Cuts buf [0, n) into sentences and documents, tokenising each complete
 * piece; returns through *used how many bytes were consumed (the rest waits
 * for more text, or for eof). */
static ag_status process(prep *p, const char *buf, size_t n, bool eof, size_t *used) {
    const bool blocks = p->o->docs == DATA_DOCS_BLANK_LINE;
    size_t start = 0; /* the first byte not yet tokenised */
    ag_status st = AG_OK;
    size_t i = 0;
    while (i < n && !st) {
        char c = buf[i];
        if (blocks && c == '\n') {
            /* a blank line (only spaces and tabs) ends the document */
            size_t j = i + 1;
            while (j < n && (buf[j] == ' ' || buf[j] == '\t' || buf[j] == '\r')) ++j;
            if (j == n && !eof) break; /* cannot tell yet */
            if (j < n && buf[j] == '\n') {
                if (!all_space(buf + start, i - start)) st = add_text(p, buf + start, i - start, true);
                else if (i > start) st = add_text(p, buf + start, i - start, false);
                if (!st) st = end_document(p);
                /* skip the blank lines: the next document starts at a line with text */
                size_t k = j + 1, line = j + 1;
                for (; k < n && is_space(buf[k]); ++k)
                    if (buf[k] == '\n') line = k + 1;
                if (k == n && !eof) { start = i = line; break; }
                start = i = k == n ? n : line;
                continue;
            }
        }
        if (c == '.' || c == '!' || c == '?') {
            size_t j = i + 1;
            while (j < n && is_closer(buf[j])) ++j;
            if (j == n && !eof) break;
            if (j < n && is_space(buf[j])) {
                st = add_text(p, buf + start, j - start, !all_space(buf + start, j - start));
                start = i = j;
                continue;
            }
            i = j;
            continue;
        }
        ++i;
    }
    if (!st && eof) { /* the rest of the file: the last sentence, then the document ends */
        size_t end = n;
        if (blocks) /* a block ends before the newline of its last line */
            while (end > start && is_space(buf[end - 1])) --end;
        if (end > start) st = add_text(p, buf + start, end - start, !all_space(buf + start, end - start));
        if (!st) st = end_document(p);
        start = n;
    } else if (!st && n - start > 4 * (p->o->chunk_bytes ? p->o->chunk_bytes : (1 << 20))) {
        /* a run-on "sentence": cut before its last space (no sentence start);
         * without a space, at a character boundary */
        size_t cut = n;
        while (cut > start + 1 && !(is_space(buf[cut - 1]) && !is_space(buf[cut - 2]))) --cut;
        if (cut <= start + 1) {
            cut = n - 4;
            while (cut > start && ((uint8_t)buf[cut] & 0xC0) == 0x80) --cut;
        } else {
            cut -= 1;
        }
        if (cut > start) st = add_text(p, buf + start, cut - start, p->doc == NULL);
        start = cut;
    }
    *used = start;
    return st;
}

static ag_status prepare_file(prep *p, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return ag_fail(AG_ERR_IO, "prepare: cannot open %s: %s", path, strerror(errno));
    size_t chunk = p->o->chunk_bytes ? p->o->chunk_bytes : (size_t)1 << 20;
    size_t cap = 2 * chunk + 1, n = 0;
    char *buf = malloc(cap);
    ag_status st = buf ? AG_OK : ag_fail(AG_ERR_MEMORY, "prepare: out of memory");
    bool eof = false;
    while (!st && !eof) {
        if (n + chunk > cap) {
            char *g = realloc(buf, cap = 2 * cap + chunk);
            if (!g) { st = ag_fail(AG_ERR_MEMORY, "prepare: out of memory"); break; }
            buf = g;
        }
        size_t k = fread(buf + n, 1, chunk, f);
        if (k < chunk) {
            if (ferror(f)) { st = ag_fail(AG_ERR_IO, "prepare: read error in %s: %s", path, strerror(errno)); break; }
            eof = true;
        }
        n += k;
        p->stats->bytes += (int64_t)k;
        size_t used;
        st = process(p, buf, n, eof, &used);
        memmove(buf, buf + used, n - used);
        n -= used;
        progress(p, false);
    }
    free(buf);
    fclose(f);
    return st;
}

/* ---------------------------------------------------------------- the manifest */

static ag_status write_manifest(prep *p) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "tapegrad shards 2");
    cJSON_AddStringToObject(root, "tokenizer", p->o->tokenizer);
    const char *kind = p->bytes ? "bytes" : p->tok.kind == DATA_TOK_WORDPIECE ? "wordpiece"
                                        : p->tok.kind == DATA_TOK_BPE        ? "bpe"
                                                                             : "unigram";
    cJSON_AddStringToObject(root, "tokenizer_kind", kind);
    cJSON_AddNumberToObject(root, "vocab_size", p->vocab_size);
    cJSON_AddNumberToObject(root, "separator_id", p->sep_id);
    cJSON *sp = cJSON_AddObjectToObject(root, "special_ids");
    if (!p->bytes) {
        const char *names[] = {"unk", "cls", "sep", "pad"};
        int32_t ids[] = {p->tok.unk_id, p->tok.cls_id, p->tok.sep_id, p->tok.pad_id};
        for (int i = 0; i < 4; ++i)
            if (ids[i] >= 0) cJSON_AddNumberToObject(sp, names[i], ids[i]);
        int32_t mask = data_tokenizer_id(&p->tok, "[MASK]");
        if (mask < 0) mask = data_tokenizer_id(&p->tok, "<mask>");
        if (mask >= 0) cJSON_AddNumberToObject(sp, "mask", mask);
    }
    cJSON_AddNumberToObject(sp, "end_of_text", p->sep_id);
    cJSON_AddStringToObject(root, "documents", p->o->docs == DATA_DOCS_BLANK_LINE ? "blank-line" : "file");
    cJSON_AddNumberToObject(root, "val_fraction", p->o->val_fraction);
    cJSON_AddNumberToObject(root, "bytes_read", (double)p->stats->bytes);
    cJSON_AddNumberToObject(root, "invalid_utf8", (double)p->stats->invalid_utf8);
    cJSON *splits = cJSON_AddObjectToObject(root, "splits");
    for (int i = 0; i < 2; ++i) {
        split_writer *w = &p->split[i];
        cJSON *s = cJSON_AddObjectToObject(splits, w->name);
        cJSON_AddNumberToObject(s, "tokens", (double)w->tokens);
        cJSON_AddNumberToObject(s, "documents", (double)w->n_docs);
        cJSON_AddNumberToObject(s, "sentences", (double)w->n_sents);
        cJSON_AddItemToObject(s, "shards", w->list);
        w->list = NULL;
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    char path[1024];
    snprintf(path, sizeof path, "%s/manifest.json", p->o->out_dir);
    FILE *f = text ? fopen(path, "wb") : NULL;
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok = fclose(f) == 0 && ok;
    free(text);
    return ok ? AG_OK : ag_fail(AG_ERR_IO, "prepare: cannot write %s: %s", path, strerror(errno));
}

ag_status data_manifest_split(const char *dir, const char *split, char ***files, int *n, int32_t *vocab_size,
                              int32_t *sep_id, int32_t *pad_id) {
    *files = NULL, *n = 0;
    char path[1024];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return ag_fail(AG_ERR_IO, "manifest %s: cannot open: %s (hint: run 'tapegrad prepare')", path,
                           strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0, k;
    char chunk[65536];
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + k + 1 > cap) {
            char *g = realloc(text, cap = 2 * (len + k + 1));
            if (!g) break;
            text = g;
        }
        memcpy(text + len, chunk, k), len += k;
    }
    fclose(f);
    if (text) text[len] = 0;
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    ag_status st = AG_OK;
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "splits"), split);
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(sp, "shards");
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(root, "vocab_size");
    const cJSON *sep = cJSON_GetObjectItemCaseSensitive(root, "separator_id");
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "special_ids"), "pad");
    if (!root) { st = ag_fail(AG_ERR_IO, "manifest %s: not valid JSON", path); goto done; }
    if (!cJSON_IsArray(shards) || !cJSON_IsNumber(vs) || !cJSON_IsNumber(sep)) {
        st = ag_fail(AG_ERR_IO, "manifest %s: no splits.%s.shards array, vocab_size or separator_id", path, split);
        goto done;
    }
    int m = cJSON_GetArraySize(shards);
    if (m == 0) { st = ag_fail(AG_ERR_ARG, "manifest %s: split \"%s\" has no shards", path, split); goto done; }
    *files = calloc((size_t)m, sizeof **files);
    if (!*files) { st = ag_fail(AG_ERR_MEMORY, "manifest %s: out of memory", path); goto done; }
    const cJSON *e;
    cJSON_ArrayForEach(e, shards) {
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(e, "file");
        if (!cJSON_IsString(file) || strchr(file->valuestring, '/')) {
            st = ag_fail(AG_ERR_IO, "manifest %s: splits.%s.shards[%d].file is not a file name", path, split, *n);
            goto done;
        }
        size_t l = strlen(dir) + strlen(file->valuestring) + 2;
        if (!((*files)[*n] = malloc(l))) { st = ag_fail(AG_ERR_MEMORY, "manifest %s: out of memory", path); goto done; }
        snprintf((*files)[(*n)++], l, "%s/%s", dir, file->valuestring);
    }
    if (vocab_size) *vocab_size = vs->valueint;
    if (sep_id) *sep_id = sep->valueint;
    if (pad_id) *pad_id = cJSON_IsNumber(pad) ? pad->valueint : sep->valueint;
done:
    if (st && *files) {
        for (int i = 0; i < *n; ++i) free((*files)[i]);
        free(*files), *files = NULL, *n = 0;
    }
    cJSON_Delete(root);
    return st;
}

/* ---------------------------------------------------------------- prepare */

ag_status data_prepare(const data_prepare_opts *o, data_prepare_stats *stats) {
    data_prepare_stats dummy;
    if (!stats) stats = &dummy;
    memset(stats, 0, sizeof *stats);
    if (!o->tokenizer || !o->out_dir || o->n_inputs < 1)
        return ag_fail(AG_ERR_ARG, "prepare: a tokenizer, an output folder and at least one input are needed");
    if (!(o->val_fraction >= 0 && o->val_fraction < 1))
        return ag_fail(AG_ERR_ARG, "prepare: --val must be in [0, 1), got %g", o->val_fraction);
    if (o->shard_tokens < 0) return ag_fail(AG_ERR_ARG, "prepare: --shard-tokens must be positive");
    prep p = {.o = o, .stats = stats, .shard_tokens = o->shard_tokens ? o->shard_tokens : (int64_t)1 << 24};
    p.split[0].name = "train", p.split[1].name = "val";
    p.split[0].list = cJSON_CreateArray(), p.split[1].list = cJSON_CreateArray();
    ag_status st = AG_OK;
    /* every input must exist before any work: a missing file is named at once */
    for (int i = 0; i < o->n_inputs; ++i) {
        struct stat sb;
        if (stat(o->inputs[i], &sb) != 0) {
            st = ag_fail(AG_ERR_IO, "prepare: cannot open input %s: %s", o->inputs[i], strerror(errno));
            goto done;
        }
        if (!S_ISREG(sb.st_mode)) {
            st = ag_fail(AG_ERR_IO, "prepare: input %s is not a regular file", o->inputs[i]);
            goto done;
        }
        p.total_bytes += sb.st_size;
    }
    p.bytes = strcmp(o->tokenizer, "bytes") == 0;
    if (p.bytes) {
        p.vocab_size = DATA_BYTE_VOCAB, p.sep_id = DATA_BYTE_EOT;
    } else {
        if ((st = data_tokenizer_load(&p.tok, o->tokenizer))) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", ag_error());
            st = ag_fail(st, "prepare: %s", msg);
            goto done;
        }
        p.vocab_size = p.tok.n_tokens;
        p.sep_id = data_tokenizer_id(&p.tok, "<|endoftext|>");
        if (p.sep_id < 0) p.sep_id = p.tok.sep_id;
        if (p.sep_id < 0) {
            st = ag_fail(AG_ERR_ARG, "prepare: tokenizer %s has no <|endoftext|>, [SEP] or </s> to end documents",
                         o->tokenizer);
            goto done;
        }
    }
    stats->vocab_size = p.vocab_size, stats->sep_id = p.sep_id;
    if ((st = ag_make_dirs(o->out_dir))) goto done;
    p.tty = isatty(fileno(stderr));
    p.t0 = p.last_report = now_seconds();
    for (int i = 0; i < o->n_inputs && !st; ++i) {
        st = prepare_file(&p, o->inputs[i]);
        if (!st && o->docs == DATA_DOCS_PER_FILE) st = end_document(&p);
    }
    if (!st) st = end_document(&p);
    if (!st && p.doc_index == 0) {
        st = ag_fail(AG_ERR_ARG, "prepare: the corpus is empty: no text in %s%s", o->inputs[0],
                     o->n_inputs > 1 ? " and the other inputs" : "");
        goto done;
    }
    for (int i = 0; i < 2 && !st; ++i) st = flush_shard(&p, &p.split[i]);
    for (int i = 0; i < 2; ++i) {
        stats->tokens[i] = p.split[i].tokens, stats->docs[i] = p.split[i].n_docs;
        stats->sents[i] = p.split[i].n_sents, stats->shards[i] = p.split[i].n_shards;
    }
    stats->seconds = now_seconds() - p.t0;
    progress(&p, true);
    if (!st) st = write_manifest(&p);
    /* the tokenizer beside the shards, so that the folder (and every run
     * trained from it) carries what its ids mean */
    if (!st && !p.bytes) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tokenizer.json", o->out_dir);
        st = data_tokenizer_save(&p.tok, path);
    }
done:
    for (int i = 0; i < 2; ++i) {
        data_encoding_free(&p.split[i].toks);
        free(p.split[i].docs.v), free(p.split[i].sents.v);
        cJSON_Delete(p.split[i].list);
    }
    if (!p.bytes) data_tokenizer_free(&p.tok);
    return st;
}
