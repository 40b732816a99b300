/* shards.c: byte-level corpus preparation, shard files, the loader. */
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char MAGIC[8] = {'T', 'G', 'S', 'H', 'A', 'R', 'D', '1'};

ag_status data_shard_write(const char *path, const int32_t *ids, int64_t n, int64_t n_docs, int vocab_size) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return ag_fail(AG_ERR_IO, "shard %s: cannot write: %s", tmp, strerror(errno));
    uint32_t hdr32[2] = {(uint32_t)vocab_size, vocab_size <= 65536 ? 2u : 4u};
    uint64_t hdr64[2] = {(uint64_t)n, (uint64_t)n_docs};
    bool ok = fwrite(MAGIC, 8, 1, f) == 1 && fwrite(hdr32, 4, 2, f) == 2 && fwrite(hdr64, 8, 2, f) == 2;
    if (hdr32[1] == 2) {
        uint16_t buf[4096];
        for (int64_t i = 0; ok && i < n; i += 4096) {
            int64_t k = n - i < 4096 ? n - i : 4096;
            for (int64_t j = 0; j < k; ++j) buf[j] = (uint16_t)ids[i + j];
            ok = fwrite(buf, 2, (size_t)k, f) == (size_t)k;
        }
    } else {
        ok = ok && fwrite(ids, 4, (size_t)n, f) == (size_t)n;
    }
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return ag_fail(AG_ERR_IO, "shard %s: write failed: %s", path, strerror(errno));
    }
    return AG_OK;
}

/* A compressed shard (data_doc_shard_read) as a plain token array. */
static ag_status read_doc_shard(data_shard *s, const char *path) {
    data_doc_shard d;
    ag_status st = data_doc_shard_read(&d, path);
    if (st) return st;
    s->tokens = d.tokens, s->n = d.n, s->n_docs = d.n_docs, s->vocab_size = d.vocab_size;
    d.tokens = NULL;
    data_doc_shard_free(&d);
    return AG_OK;
}

/* DIR/train.bin when prepare wrote DIR/manifest.json and train-NNNNN.tgs:
 * every shard of the split, concatenated. */
static ag_status read_split(data_shard *s, const char *path) {
    char dir[512], split[64];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    snprintf(split, sizeof split, "%s", slash ? slash + 1 : path);
    *strrchr(split, '.') = 0; /* "train.bin" -> "train" */
    char **files;
    int n;
    ag_status st = data_manifest_split(dir, split, &files, &n, NULL, NULL, NULL);
    if (st) return st;
    for (int i = 0; i < n && !st; ++i) {
        data_shard part = {0};
        st = read_doc_shard(&part, files[i]);
        int32_t *g = st ? NULL : realloc(s->tokens, (size_t)(s->n + part.n) * sizeof *g);
        if (!st && !g) st = ag_fail(AG_ERR_MEMORY, "shard %s: out of memory", files[i]);
        if (!st) {
            memcpy(g + s->n, part.tokens, (size_t)part.n * sizeof *g);
            s->tokens = g, s->n += part.n, s->n_docs += part.n_docs, s->vocab_size = part.vocab_size;
        }
        free(part.tokens);
    }
    for (int i = 0; i < n; ++i) free(files[i]);
    free(files);
    if (st) data_shard_free(s);
    return st;
}

ag_status data_shard_read(data_shard *s, const char *path) {
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    size_t plen = strlen(path);
    if (access(path, F_OK) != 0 && plen > 4 && strcmp(path + plen - 4, ".bin") == 0) {
        char manifest[1024];
        const char *slash = strrchr(path, '/');
        snprintf(manifest, sizeof manifest, "%.*s/manifest.json", slash ? (int)(slash - path) : 1, slash ? path : ".");
        if (access(manifest, F_OK) == 0) return read_split(s, path);
    }
    FILE *f = fopen(path, "rb");
    if (!f) return ag_fail(AG_ERR_IO, "shard %s: cannot open: %s (hint: run 'tapegrad prepare' first)", path,
                           strerror(errno));
    char magic[8] = {0};
    uint32_t hdr32[2];
    uint64_t hdr64[2];
    ag_status st = AG_OK;
    if (fread(magic, 8, 1, f) == 1 && memcmp(magic, "TGSHARD2", 8) == 0) {
        fclose(f);
        return read_doc_shard(s, path);
    }
    if (memcmp(magic, MAGIC, 8) != 0) {
        st = ag_fail(AG_ERR_IO, "shard %s: not a tapegrad shard (bad magic)", path);
        goto done;
    }
    if (fread(hdr32, 4, 2, f) != 2 || fread(hdr64, 8, 2, f) != 2 || (hdr32[1] != 2 && hdr32[1] != 4) ||
        hdr32[0] == 0 || hdr64[0] > ((uint64_t)1 << 40)) {
        st = ag_fail(AG_ERR_IO, "shard %s: bad header", path);
        goto done;
    }
    s->vocab_size = (int)hdr32[0];
    s->n = (int64_t)hdr64[0];
    s->n_docs = (int64_t)hdr64[1];
    s->tokens = malloc((size_t)(s->n ? s->n : 1) * sizeof(int32_t));
    if (!s->tokens) { st = ag_fail(AG_ERR_MEMORY, "shard %s: out of memory for %lld tokens", path, (long long)s->n); goto done; }
    if (hdr32[1] == 2) {
        uint16_t buf[4096];
        for (int64_t i = 0; i < s->n; i += 4096) {
            int64_t k = s->n - i < 4096 ? s->n - i : 4096;
            if (fread(buf, 2, (size_t)k, f) != (size_t)k) {
                st = ag_fail(AG_ERR_IO, "shard %s: truncated: %lld of %lld tokens", path, (long long)i, (long long)s->n);
                goto done;
            }
            for (int64_t j = 0; j < k; ++j) s->tokens[i + j] = buf[j];
        }
    } else if (fread(s->tokens, 4, (size_t)s->n, f) != (size_t)s->n) {
        st = ag_fail(AG_ERR_IO, "shard %s: truncated", path);
        goto done;
    }
    for (int64_t i = 0; i < s->n; ++i)
        if (s->tokens[i] < 0 || s->tokens[i] >= s->vocab_size) {
            st = ag_fail(AG_ERR_IO, "shard %s: token %lld is %d, outside the vocabulary of %d", path, (long long)i,
                         s->tokens[i], s->vocab_size);
            goto done;
        }
done:
    fclose(f);
    if (st != AG_OK) data_shard_free(s);
    return st;
}

void data_shard_free(data_shard *s) {
    free(s->tokens);
    s->tokens = NULL;
    s->n = 0;
}

/* ---------------------------------------------------------------- byte-level preparation */

typedef struct { int32_t *v; int64_t n, cap; } ivec;

static bool ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        int64_t cap = a->cap ? a->cap * 2 : 1 << 16;
        int32_t *v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

ag_status data_prepare_bytes(const char *const *inputs, int n_inputs, const char *out_dir, double val_fraction,
                             int64_t *n_train, int64_t *n_val) {
    if (val_fraction < 0 || val_fraction >= 1)
        return ag_fail(AG_ERR_ARG, "prepare: the held-out fraction must be in [0, 1), got %g", val_fraction);
    ivec toks = {0}, doc_start = {0};
    ag_status st = AG_OK;
    for (int i = 0; i < n_inputs && st == AG_OK; ++i) {
        FILE *f = fopen(inputs[i], "rb");
        if (!f) { st = ag_fail(AG_ERR_IO, "prepare: cannot open %s: %s", inputs[i], strerror(errno)); break; }
        /* each file is one document, followed by end-of-text */
        int c;
        int64_t start = toks.n;
        while ((c = fgetc(f)) != EOF && st == AG_OK)
            if (!ivec_push(&toks, c)) st = ag_fail(AG_ERR_MEMORY, "prepare: out of memory");
        if (toks.n > start && st == AG_OK) {
            ivec_push(&doc_start, (int32_t)start);
            if (!ivec_push(&toks, DATA_BYTE_EOT)) st = ag_fail(AG_ERR_MEMORY, "prepare: out of memory");
        }
        fclose(f);
    }
    if (st == AG_OK && doc_start.n == 0)
        st = ag_fail(AG_ERR_ARG, "prepare: the corpus is empty (%d input file%s, no text)", n_inputs,
                     n_inputs == 1 ? "" : "s");
    if (st == AG_OK) {
        /* hold out the last documents: a whole-document split, never a cut mid-text */
        int64_t n_docs = doc_start.n;
        int64_t n_val_docs = (int64_t)(val_fraction * (double)n_docs + 0.5);
        if (val_fraction > 0 && n_val_docs == 0 && n_docs > 1) n_val_docs = 1;
        int64_t cut = n_val_docs ? doc_start.v[n_docs - n_val_docs] : toks.n;
        char path[1024];
        st = ag_make_dirs(out_dir);
        snprintf(path, sizeof path, "%s/train.bin", out_dir);
        if (st == AG_OK) st = data_shard_write(path, toks.v, cut, n_docs - n_val_docs, DATA_BYTE_VOCAB);
        if (st == AG_OK) {
            snprintf(path, sizeof path, "%s/val.bin", out_dir);
            st = data_shard_write(path, toks.v + cut, toks.n - cut, n_val_docs, DATA_BYTE_VOCAB);
        }
        if (n_train) *n_train = cut;
        if (n_val) *n_val = toks.n - cut;
    }
    free(toks.v);
    free(doc_start.v);
    return st;
}

/* ---------------------------------------------------------------- loader */

ag_status data_loader_init(data_loader *l, const data_shard *s, int B, int T, uint64_t seed) {
    if (B < 1 || T < 1) return ag_fail(AG_ERR_ARG, "loader: batch %d and sequence length %d must be >= 1", B, T);
    if (s->n < (int64_t)T + 1)
        return ag_fail(AG_ERR_ARG, "loader: shard %s has %lld tokens, fewer than one window of %d", s->path,
                       (long long)s->n, T + 1);
    l->shard = s;
    l->B = B;
    l->T = T;
    l->seed = seed;
    l->batch = 0;
    return AG_OK;
}

void data_loader_next(data_loader *l, int32_t *inputs, int32_t *targets) {
    const int64_t span = l->shard->n - l->T; /* window starts in [0, span) */
    for (int b = 0; b < l->B; ++b) {
        uint64_t r = ag_rng_u64(l->seed, l->batch * (uint64_t)l->B + (uint64_t)b);
        int64_t start = (int64_t)(r % (uint64_t)span);
        memcpy(inputs + (int64_t)b * l->T, l->shard->tokens + start, (size_t)l->T * sizeof(int32_t));
        memcpy(targets + (int64_t)b * l->T, l->shard->tokens + start + 1, (size_t)l->T * sizeof(int32_t));
    }
    l->batch++;
}
