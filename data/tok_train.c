/* tok_train.c: training WordPiece and byte-level BPE vocabularies on a corpus.
 *
 * Both are trained the same way (Hugging Face's WordPieceTrainer is its
 * BpeTrainer with a "##" prefix, and so is this):
 *
 *   1. count the words: each file is made valid UTF-8 and pre-tokenized
 *      (BERT's BasicTokenizer, or GPT-2's regex), giving word -> count;
 *   2. split each word into its first symbols: its bytes as printable
 *      characters (BPE), or its characters with "##" on all but the first
 *      (WordPiece); the vocabulary starts as the special tokens, then these
 *      symbols in byte order;
 *   3. count every adjacent pair of symbols, weighted by the word's count, and
 *      merge the most frequent pair into a new symbol; repeat until the
 *      vocabulary is full. Ties go to the pair with the smallest ids (first
 *      symbol, then second), so a run is a pure function of the corpus.
 *
 * The merge loop is incremental: a max-heap of (count, pair) entries, with
 * stale entries skipped when popped, and for each pair the list of words it
 * occurs in, so a merge revisits only those words.
 */
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- words and pairs */

typedef struct train_word {
    int32_t *syms; /* [n] symbol ids */
    int32_t n;
    int64_t count;
    int64_t stamp; /* the last merge that visited this word */
} train_word;

/* Pair (a,b) -> count and the words it occurs in (may list a word twice or
 * after the pair left it; the merge checks). */
typedef struct pair_table {
    uint64_t *keys; /* [cap], UINT64_MAX empty */
    int64_t *count; /* [cap] */
    int32_t **where; /* [cap] word indices */
    int32_t *where_n, *where_cap;
    int64_t cap, n;
} pair_table;

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static int64_t pair_slot(const pair_table *p, uint64_t key) {
    uint64_t h = key * 0x9E3779B97F4A7C15ULL;
    int64_t i = (int64_t)((h ^ (h >> 31)) & (uint64_t)(p->cap - 1));
    while (p->keys[i] != UINT64_MAX && p->keys[i] != key) i = (i + 1) & (p->cap - 1);
    return i;
}

static ag_status pair_grow(pair_table *p) {
    pair_table g = {.cap = p->cap ? 2 * p->cap : 1 << 16};
    g.keys = malloc((size_t)g.cap * sizeof *g.keys);
    g.count = calloc((size_t)g.cap, sizeof *g.count);
    g.where = calloc((size_t)g.cap, sizeof *g.where);
    g.where_n = calloc((size_t)g.cap, sizeof *g.where_n);
    g.where_cap = calloc((size_t)g.cap, sizeof *g.where_cap);
    if (!g.keys || !g.count || !g.where || !g.where_n || !g.where_cap) {
        free(g.keys), free(g.count), free(g.where), free(g.where_n), free(g.where_cap);
        return ag_fail(AG_ERR_MEMORY, "tokenizer training: out of memory (pair table)");
    }
    memset(g.keys, 0xff, (size_t)g.cap * sizeof *g.keys);
    for (int64_t i = 0; i < p->cap; ++i)
        if (p->keys[i] != UINT64_MAX) {
            int64_t j = pair_slot(&g, p->keys[i]);
            g.keys[j] = p->keys[i], g.count[j] = p->count[i], g.where[j] = p->where[i];
            g.where_n[j] = p->where_n[i], g.where_cap[j] = p->where_cap[i];
        }
    free(p->keys), free(p->count), free(p->where), free(p->where_n), free(p->where_cap);
    g.n = p->n;
    *p = g;
    return AG_OK;
}

/* The slot of pair (a,b), inserted with count 0 when new; -1 on no memory. */
static int64_t pair_get(pair_table *p, int32_t a, int32_t b) {
    if (2 * (p->n + 1) > p->cap && pair_grow(p)) return -1;
    uint64_t key = pair_key(a, b);
    int64_t i = pair_slot(p, key);
    if (p->keys[i] == UINT64_MAX) p->keys[i] = key, p->n++;
    return i;
}

static ag_status pair_note_word(pair_table *p, int64_t slot, int32_t w) {
    if (p->where_n[slot] && p->where[slot][p->where_n[slot] - 1] == w) return AG_OK; /* already last */
    if (p->where_n[slot] == p->where_cap[slot]) {
        int32_t cap = p->where_cap[slot] ? 2 * p->where_cap[slot] : 4;
        int32_t *g = realloc(p->where[slot], (size_t)cap * sizeof *g);
        if (!g) return ag_fail(AG_ERR_MEMORY, "tokenizer training: out of memory (pair lists)");
        p->where[slot] = g, p->where_cap[slot] = cap;
    }
    p->where[slot][p->where_n[slot]++] = w;
    return AG_OK;
}

static void pair_free(pair_table *p) {
    for (int64_t i = 0; i < p->cap; ++i) free(p->where[i]);
    free(p->keys), free(p->count), free(p->where), free(p->where_n), free(p->where_cap);
}

/* ---------------------------------------------------------------- the heap */

typedef struct heap_entry {
    int64_t count;
    int32_t a, b;
} heap_entry;

typedef struct heap {
    heap_entry *e;
    int64_t n, cap;
} heap;

/* x comes out before y: more frequent, then smaller ids. */
static bool heap_before(heap_entry x, heap_entry y) {
    if (x.count != y.count) return x.count > y.count;
    if (x.a != y.a) return x.a < y.a;
    return x.b < y.b;
}

static ag_status heap_push(heap *h, heap_entry x) {
    if (h->n == h->cap) {
        int64_t cap = h->cap ? 2 * h->cap : 1 << 16;
        heap_entry *g = realloc(h->e, (size_t)cap * sizeof *g);
        if (!g) return ag_fail(AG_ERR_MEMORY, "tokenizer training: out of memory (heap)");
        h->e = g, h->cap = cap;
    }
    int64_t i = h->n++;
    while (i > 0 && heap_before(x, h->e[(i - 1) / 2])) h->e[i] = h->e[(i - 1) / 2], i = (i - 1) / 2;
    h->e[i] = x;
    return AG_OK;
}

static heap_entry heap_pop(heap *h) {
    heap_entry top = h->e[0], x = h->e[--h->n];
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && heap_before(h->e[c + 1], h->e[c])) ++c;
        if (!heap_before(h->e[c], x)) break;
        h->e[i] = h->e[c], i = c;
    }
    if (h->n) h->e[i] = x;
    return top;
}

/* ---------------------------------------------------------------- counting words */

static ag_status count_word(void *ctx, const char *w, size_t n) { return data_strmap_add(ctx, w, n, 1); }

static ag_status count_file(data_tokenizer *t, const char *path, data_strmap *words, int64_t *bytes,
                            int64_t *bad) {
    FILE *f = fopen(path, "rb");
    if (!f) return ag_fail(AG_ERR_IO, "corpus %s: cannot open: %s", path, strerror(errno));
    /* line by line, so the corpus never has to fit in memory */
    char *line = NULL;
    size_t cap = 0;
    ssize_t k;
    ag_status st = AG_OK;
    while (!st && (k = getline(&line, &cap, f)) >= 0) {
        *bytes += k;
        char *s;
        size_t n;
        int64_t b = data_utf8_sanitize(line, (size_t)k, &s, &n);
        if (b < 0) { st = ag_fail(AG_ERR_MEMORY, "corpus %s: out of memory", path); break; }
        *bad += b;
        st = t->kind == DATA_TOK_BPE ? data_bpe_pretokenize(t, s, n, count_word, words)
                                     : data_bert_pretokenize(t, s, n, count_word, words);
        free(s);
    }
    free(line);
    fclose(f);
    return st;
}

static int cmp_str(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

/* Notes pair (a,b) as changed by this merge: touched [cap][2]. */
static ag_status touch(int32_t **touched, int64_t *cap, int64_t *n, int32_t a, int32_t b) {
    if (*n == *cap) {
        int32_t *g = realloc(*touched, (size_t)*cap * 4 * sizeof *g);
        if (!g) return ag_fail(AG_ERR_MEMORY, "tokenizer training: out of memory");
        *touched = g, *cap *= 2;
    }
    (*touched)[2 * *n] = a, (*touched)[2 * *n + 1] = b, ++*n;
    return AG_OK;
}

/* ---------------------------------------------------------------- training */

/* The first symbols of word w [n bytes]: appended to syms, returns the count. */
static int32_t split_word(const data_tokenizer *t, const char *w, size_t n, int32_t *syms, char *buf) {
    int32_t k = 0;
    if (t->kind == DATA_TOK_BPE) {
        for (size_t i = 0; i < n; ++i) syms[k++] = t->byte_id[(uint8_t)w[i]];
        return k;
    }
    size_t plen = strlen(t->prefix);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && ((uint8_t)w[j] & 0xC0) == 0x80) ++j;
        size_t off = i > 0 ? plen : 0;
        memcpy(buf, t->prefix, off), memcpy(buf + off, w + i, j - i);
        syms[k++] = (int32_t)data_strmap_get(&t->vocab, buf, off + j - i);
        i = j;
    }
    return k;
}

ag_status data_tokenizer_train(data_tokenizer *t, const char *const *inputs, int n_inputs, data_train_opts opts) {
    memset(t, 0, sizeof *t);
    t->unk_id = t->cls_id = t->sep_id = t->pad_id = -1;
    snprintf(t->source, sizeof t->source, "trained on %s%s", n_inputs ? inputs[0] : "(nothing)",
             n_inputs > 1 ? " and more" : "");
    data_strmap words = {0}, alphabet = {0};
    train_word *ws = NULL;
    int64_t n_ws = 0;
    pair_table pairs = {0};
    heap h = {0};
    char **sorted = NULL;
    int32_t *touched = NULL;
    ag_status st = AG_OK;
    clock_t t0 = clock();

    /* 1. the special tokens, and the pre-tokenizer */
    if (opts.kind == DATA_TOK_WORDPIECE) {
        static const char *const sp[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
        for (int i = 0; i < 5; ++i) data_tokenizer_add_token(t, sp[i], strlen(sp[i]));
        data_wordpiece_init(t);
        t->lowercase = t->strip_accents = opts.lowercase;
    } else if (opts.kind == DATA_TOK_BPE) {
        data_tokenizer_add_token(t, "<|endoftext|>", 13);
        if ((st = data_bpe_init(t))) goto done; /* the regex; byte ids come below */
    } else {
        st = ag_fail(AG_ERR_ARG, "tokenizer training: this trainer makes WordPiece and BPE; Unigram is in data/unigram.c");
        goto done;
    }
    if (t->n_tokens == 0) { st = AG_ERR_MEMORY; goto done; }

    /* 2. count the words */
    int64_t bytes = 0, bad = 0;
    for (int i = 0; i < n_inputs && !st; ++i) st = count_file(t, inputs[i], &words, &bytes, &bad);
    if (st) goto done;
    if (words.n == 0) {
        st = ag_fail(AG_ERR_IO, "corpus %s: empty (no words to train on)", n_inputs ? inputs[0] : "(no files given)");
        goto done;
    }
    double secs_count = (double)(clock() - t0) / CLOCKS_PER_SEC;

    /* 3. the alphabet, in byte order after the specials */
    size_t maxlen = 0;
    for (int64_t i = 0; i < words.cap; ++i)
        if (words.keys[i] && words.klens[i] > maxlen) maxlen = words.klens[i];
    char *buf = malloc(maxlen + 16);
    if (!buf) { st = ag_fail(AG_ERR_MEMORY, "tokenizer training: out of memory"); goto done; }
    if (opts.kind == DATA_TOK_BPE) {
        /* all 256 bytes, whether seen or not: every text can then be encoded */
        for (int b = 0; b < 256 && !st; ++b) {
            char s[4];
            unsigned cp = t->byte_char[b];
            int k = cp < 0x80 ? (s[0] = (char)cp, 1) : (s[0] = (char)(0xC0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3F)), 2);
            st = data_strmap_put(&alphabet, s, (size_t)k, 0);
        }
    } else {
        size_t plen = strlen(t->prefix);
        for (int64_t i = 0; i < words.cap && !st; ++i) {
            const char *w = words.keys[i];
            if (!w) continue;
            for (size_t a = 0; a < words.klens[i] && !st;) {
                size_t b = a + 1;
                while (b < words.klens[i] && ((uint8_t)w[b] & 0xC0) == 0x80) ++b;
                size_t off = a > 0 ? plen : 0;
                memcpy(buf, t->prefix, off), memcpy(buf + off, w + a, b - a);
                st = data_strmap_put(&alphabet, buf, off + b - a, 0);
                a = b;
            }
        }
    }
    if (st) { free(buf); goto done; }
    sorted = malloc((size_t)alphabet.n * sizeof *sorted);
    if (!sorted) { free(buf); st = ag_fail(AG_ERR_MEMORY, "tokenizer training: out of memory"); goto done; }
    int64_t na = 0;
    for (int64_t i = 0; i < alphabet.cap; ++i)
        if (alphabet.keys[i]) sorted[na++] = alphabet.keys[i];
    qsort(sorted, (size_t)na, sizeof *sorted, cmp_str);
    if (opts.vocab_size < t->n_tokens + na) {
        free(buf);
        st = ag_fail(AG_ERR_ARG, "tokenizer training: vocab_size %d is below the %lld special tokens and characters",
                     opts.vocab_size, (long long)(t->n_tokens + na));
        goto done;
    }
    for (int64_t i = 0; i < na && !st; ++i)
        if (data_tokenizer_add_token(t, sorted[i], strlen(sorted[i])) < 0) st = AG_ERR_MEMORY;
    if (!st && opts.kind == DATA_TOK_BPE) st = data_bpe_init(t); /* now the byte ids exist */
    if (st) { free(buf); goto done; }

    /* 4. the words as symbol sequences, and the pair counts */
    n_ws = words.n;
    ws = calloc((size_t)words.n, sizeof *ws);
    if (!ws) { free(buf); st = ag_fail(AG_ERR_MEMORY, "tokenizer training: out of memory"); goto done; }
    int32_t nw = 0;
    for (int64_t i = 0; i < words.cap && !st; ++i) {
        if (!words.keys[i]) continue;
        train_word *w = &ws[nw];
        w->syms = malloc((words.klens[i] + 1) * sizeof *w->syms);
        if (!w->syms) { st = ag_fail(AG_ERR_MEMORY, "tokenizer training: out of memory"); break; }
        w->n = split_word(t, words.keys[i], words.klens[i], w->syms, buf);
        w->count = words.vals[i];
        w->stamp = -1;
        for (int32_t j = 0; j + 1 < w->n && !st; ++j) {
            int64_t s = pair_get(&pairs, w->syms[j], w->syms[j + 1]);
            if (s < 0) { st = AG_ERR_MEMORY; break; }
            pairs.count[s] += w->count;
            st = pair_note_word(&pairs, s, nw);
        }
        ++nw;
    }
    free(buf);
    if (st) goto done;
    data_strmap_free(&words);
    for (int64_t i = 0; i < pairs.cap && !st; ++i)
        if (pairs.keys[i] != UINT64_MAX && pairs.count[i] > 0)
            st = heap_push(&h, (heap_entry){pairs.count[i], (int32_t)(pairs.keys[i] >> 32), (int32_t)pairs.keys[i]});
    if (st) goto done;

    /* 5. merge until the vocabulary is full */
    int64_t touched_cap = 1024, n_touched;
    touched = malloc((size_t)touched_cap * 2 * sizeof *touched);
    if (!touched) { st = ag_fail(AG_ERR_MEMORY, "tokenizer training: out of memory"); goto done; }
    size_t plen = opts.kind == DATA_TOK_WORDPIECE ? strlen(t->prefix) : 0;
    int64_t merge_no = 0, min_freq = opts.min_frequency > 0 ? opts.min_frequency : 1;
    while (t->n_tokens < opts.vocab_size && h.n > 0 && !st) {
        heap_entry top = heap_pop(&h);
        int64_t slot = pair_slot(&pairs, pair_key(top.a, top.b));
        if (pairs.count[slot] != top.count) continue; /* stale: the pair's count changed since */
        if (top.count < min_freq) break;
        /* the new symbol: a then b (b without its "##" when WordPiece) */
        const char *sa = t->tokens[top.a], *sb = t->tokens[top.b];
        if (plen && strncmp(sb, t->prefix, plen) == 0) sb += plen;
        size_t la = strlen(sa), lb = strlen(sb);
        char *ab = malloc(la + lb + 1);
        if (!ab) { st = ag_fail(AG_ERR_MEMORY, "tokenizer training: out of memory"); break; }
        memcpy(ab, sa, la), memcpy(ab + la, sb, lb + 1);
        int32_t id = data_tokenizer_id(t, ab);
        if (id < 0) id = data_tokenizer_add_token(t, ab, la + lb);
        free(ab);
        if (id < 0) { st = AG_ERR_MEMORY; break; }
        if (opts.kind == DATA_TOK_BPE && (st = data_bpe_add_merge(t, t->tokens[top.a], t->tokens[top.b], "training")))
            break;
        /* revisit the words holding the pair: take their pairs out, merge, put them back */
        n_touched = 0;
        int32_t nwhere = pairs.where_n[slot];
        for (int32_t k = 0; k < nwhere && !st; ++k) {
            int32_t wi = pairs.where[slot][k]; /* re-read: pair_get below may move the table */
            slot = pair_slot(&pairs, pair_key(top.a, top.b));
            wi = pairs.where[slot][k];
            train_word *w = &ws[wi];
            if (w->stamp == merge_no) continue;
            w->stamp = merge_no;
            bool has = false;
            for (int32_t j = 0; j + 1 < w->n; ++j) has |= w->syms[j] == top.a && w->syms[j + 1] == top.b;
            if (!has) continue;
            for (int32_t j = 0; j + 1 < w->n && !st; ++j) {
                pairs.count[pair_slot(&pairs, pair_key(w->syms[j], w->syms[j + 1]))] -= w->count;
                st = touch(&touched, &touched_cap, &n_touched, w->syms[j], w->syms[j + 1]);
            }
            int32_t o = 0;
            for (int32_t j = 0; j < w->n; ++j) {
                if (j + 1 < w->n && w->syms[j] == top.a && w->syms[j + 1] == top.b) w->syms[o++] = id, ++j;
                else w->syms[o++] = w->syms[j];
            }
            w->n = o;
            for (int32_t j = 0; j + 1 < w->n && !st; ++j) {
                int64_t s = pair_get(&pairs, w->syms[j], w->syms[j + 1]);
                if (s < 0) { st = AG_ERR_MEMORY; break; }
                pairs.count[s] += w->count;
                if ((w->syms[j] == id || w->syms[j + 1] == id) && (st = pair_note_word(&pairs, s, wi))) break;
                st = touch(&touched, &touched_cap, &n_touched, w->syms[j], w->syms[j + 1]);
            }
        }
        /* every pair whose count may have changed goes back in the heap with its count now */
        for (int64_t k = 0; k < n_touched && !st; ++k) {
            int64_t s = pair_slot(&pairs, pair_key(touched[2 * k], touched[2 * k + 1]));
            if (pairs.count[s] > 0) st = heap_push(&h, (heap_entry){pairs.count[s], touched[2 * k], touched[2 * k + 1]});
        }
        slot = pair_slot(&pairs, pair_key(top.a, top.b));
        pairs.count[slot] = 0;
        ++merge_no;
        if (!opts.quiet && merge_no % 2000 == 0)
            fprintf(stderr, "\rtraining: %d of %d tokens", t->n_tokens, opts.vocab_size);
    }
    if (st) goto done;
    data_tokenizer_find_specials(t);
    if (!opts.quiet)
        fprintf(stderr, "\rtrained %s: %d tokens from %lld words (%.1f MB%s) in %.2f s (counting %.2f s)\n",
                opts.kind == DATA_TOK_BPE ? "BPE" : "WordPiece", t->n_tokens, (long long)nw, bytes / 1e6,
                bad ? ", invalid UTF-8 replaced" : "", (double)(clock() - t0) / CLOCKS_PER_SEC, secs_count);

done:
    for (int64_t i = 0; ws && i < n_ws; ++i) free(ws[i].syms);
    free(ws), free(sorted), free(touched), free(h.e);
    pair_free(&pairs);
    data_strmap_free(&words), data_strmap_free(&alphabet);
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ag_error());
        data_tokenizer_free(t);
        ag_fail(st, "%s", msg);
    }
    return st;
}
