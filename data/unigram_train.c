/* unigram_train.c: training a Unigram vocabulary by EM with pruning.
 *
 * SentencePiece's recipe (unigram_model_trainer.cc), in five steps:
 *   1. Normalise every line (NFKC, whitespace rules, "▁") and count its words
 *      (a word is "▁" plus what follows up to the next "▁"); pieces never
 *      cross a word boundary, so training works on the unique words.
 *   2. Seed: every character kept by the coverage rule, plus the substrings
 *      of the words ranked by frequency x length, the top seed_size of them.
 *      Score = log(frequency) normalised.
 *   3. EM: for each word, the lattice of every piece matching in it;
 *      forward-backward gives each piece's expected count (E); the new scores
 *      are digamma(count) - digamma(total), which, unlike plain log(count/total),
 *      pushes rare pieces further down (Bayesian, as SentencePiece) (M). Pieces
 *      expected fewer than 0.5 times are dropped.
 *   4. Prune: the loss of a piece is how much the likelihood falls when it is
 *      removed and its occurrences are re-segmented into its second-best
 *      segmentation; keep the shrinking_factor (0.75) fraction with the largest
 *      losses. Single characters are never pruned, so every word still segments.
 *   5. Repeat 3-4 until 1.1 x the target size, then keep the best-scoring
 *      pieces, characters always, and number them <unk> <s> </s> then by score.
 * It follows the recipe, not every line of it (no suffix array, no
 * per-script rules beyond letters / digits / other), so the vocabulary is
 * close to, not equal to, spm_train's. Deterministic: no randomness, and
 * every sort breaks ties by the piece's bytes.
 */
#include "unigram_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define MIN_EXPECTED 0.5 /* SentencePiece's kExpectedFrequencyThreshold */

data_unigram_train_opts data_unigram_train_defaults(int vocab_size) {
    return (data_unigram_train_opts){.vocab_size = vocab_size,
                                     .max_piece_chars = 16,
                                     .seed_size = 100000,
                                     .em_sub_iters = 2,
                                     .shrinking_factor = 0.75,
                                     .char_coverage = 0.9995,
                                     .max_bytes = 0,
                                     .verbose = 0};
}

/* ---------------------------------------------------------------- a string -> index map */

typedef struct {
    ug_buf keys;     /* the strings, NUL-separated */
    int32_t *off, *len;
    double *val;     /* a count or a score per string */
    int n, cap;
    int32_t *slots;  /* [n_slots] indices, -1 empty */
    size_t n_slots;
} strmap;

static void strmap_free(strmap *m) {
    free(m->keys.data), free(m->off), free(m->len), free(m->val), free(m->slots);
    memset(m, 0, sizeof *m);
}

static bool strmap_grow_slots(strmap *m) {
    size_t n = m->n_slots ? 2 * m->n_slots : 1024;
    int32_t *s = malloc(n * sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < n; ++i) s[i] = -1;
    for (int i = 0; i < m->n; ++i) {
        size_t h = ug_hash(m->keys.data + m->off[i], (size_t)m->len[i]) & (n - 1);
        while (s[h] >= 0) h = (h + 1) & (n - 1);
        s[h] = i;
    }
    free(m->slots);
    m->slots = s;
    m->n_slots = n;
    return true;
}

static int strmap_find(const strmap *m, const char *k, size_t n) {
    if (!m->n_slots) return -1;
    size_t h = ug_hash(k, n) & (m->n_slots - 1);
    for (int i; (i = m->slots[h]) >= 0; h = (h + 1) & (m->n_slots - 1))
        if ((size_t)m->len[i] == n && memcmp(m->keys.data + m->off[i], k, n) == 0) return i;
    return -1;
}

/* Adds `v` to the value of k (inserting it at 0 first); returns its index or -1 when out of memory. */
static int strmap_add(strmap *m, const char *k, size_t n, double v) {
    int i = strmap_find(m, k, n);
    if (i >= 0) {
        m->val[i] += v;
        return i;
    }
    if ((size_t)(m->n + 1) * 2 > m->n_slots && !strmap_grow_slots(m)) return -1;
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 1024;
        int32_t *off = realloc(m->off, (size_t)cap * sizeof *off);
        if (off) m->off = off;
        int32_t *len = realloc(m->len, (size_t)cap * sizeof *len);
        if (len) m->len = len;
        double *val = realloc(m->val, (size_t)cap * sizeof *val);
        if (val) m->val = val;
        if (!off || !len || !val) return -1;
        m->cap = cap;
    }
    if (m->keys.n > INT32_MAX - n - 2) return -1;
    i = m->n++;
    m->off[i] = (int32_t)m->keys.n;
    m->len[i] = (int32_t)n;
    m->val[i] = v;
    char zero = 0;
    if (!ug_buf_put(&m->keys, k, n) || !ug_buf_put(&m->keys, &zero, 1)) return -1;
    size_t h = ug_hash(k, n) & (m->n_slots - 1);
    while (m->slots[h] >= 0) h = (h + 1) & (m->n_slots - 1);
    m->slots[h] = i;
    return i;
}

/* ---------------------------------------------------------------- characters */

/* The class of a character for the "one class per piece" rule: SentencePiece
 * keeps letters, digits and punctuation in separate pieces ("n." is never a
 * piece), which keeps the vocabulary for words. 0 letter/mark, 1 digit, 2 other. */
static int char_class(uint32_t cp) {
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    if (c == UTF8PROC_CATEGORY_ND) return 1;
    if (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_ME) return 0;
    return 2;
}

/* ---------------------------------------------------------------- the training state */

typedef struct {
    /* unique words [n_words]: bytes in words.keys, counts in words.val; the
     * byte offset of each character, [n_chars + 1] per word, in char_off
     * from word_char[w]; and each character's class in cls (same indexing) */
    strmap words;
    int32_t *word_char; /* [n_words + 1] */
    int32_t *char_off;  /* [total chars + n_words] */
    uint8_t *cls;
    double total_words;
    /* pieces [n]: strings in pieces.keys, scores in pieces.val; is_char[i] */
    strmap pieces;
    uint8_t *is_char;
    int max_len;
} trainer;

static const char *word_bytes(const trainer *t, int w) { return t->words.keys.data + t->words.off[w]; }
static int word_chars(const trainer *t, int w) { return t->word_char[w + 1] - t->word_char[w] - 1; }

/* The lattice of word w: every (start, end, piece) with start < end in
 * characters. Writes up to L * max_len edges to e [3 * cap]; returns how many. */
static int word_edges(const trainer *t, int w, int32_t *e) {
    const char *s = word_bytes(t, w);
    const int32_t *co = t->char_off + t->word_char[w];
    int L = word_chars(t, w), m = 0;
    for (int i = 0; i < L; ++i)
        for (int j = i + 1; j <= L && j - i <= t->max_len; ++j) {
            int p = strmap_find(&t->pieces, s + co[i], (size_t)(co[j] - co[i]));
            if (p >= 0) e[m * 3] = i, e[m * 3 + 1] = j, e[m * 3 + 2] = p, m++;
        }
    return m;
}

static double logaddexp(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b));
}

/* SentencePiece's digamma: the recurrence up to 7, then the asymptotic series. */
static double digamma(double x) {
    double r = 0.0;
    for (; x < 7; ++x) r -= 1 / x;
    x -= 0.5;
    double xx = 1.0 / x, xx2 = xx * xx, xx4 = xx2 * xx2;
    return r + log(x) + (1.0 / 24.0) * xx2 - (7.0 / 960.0) * xx4 + (31.0 / 8064.0) * xx4 * xx2 -
           (127.0 / 30720.0) * xx4 * xx4;
}

/* A value and an index, sorted by falling value, then rising index. */
typedef struct {
    double key;
    int idx;
} ranked;

static int ranked_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Keeps the pieces i with keep[i], in order, with the scores new_score[i]. */
static bool pieces_filter(trainer *t, const uint8_t *keep, const double *new_score) {
    strmap next = {0};
    uint8_t *is_char = malloc((size_t)t->pieces.n + 1);
    if (!is_char) return false;
    for (int i = 0; i < t->pieces.n; ++i) {
        if (!keep[i]) continue;
        int k = strmap_add(&next, t->pieces.keys.data + t->pieces.off[i], (size_t)t->pieces.len[i], new_score[i]);
        if (k < 0) { strmap_free(&next); free(is_char); return false; }
        is_char[k] = t->is_char[i];
    }
    strmap_free(&t->pieces);
    free(t->is_char);
    t->pieces = next;
    t->is_char = is_char;
    return true;
}

/* One EM iteration. Returns false when out of memory; *loglik receives the
 * mean log-likelihood per word. */
static bool em_step(trainer *t, double *loglik) {
    int P = t->pieces.n, maxL = 0;
    for (int w = 0; w < t->words.n; ++w) maxL = word_chars(t, w) > maxL ? word_chars(t, w) : maxL;
    double *expected = calloc((size_t)P, sizeof *expected);
    double *alpha = malloc((size_t)(maxL + 1) * sizeof *alpha), *beta = malloc((size_t)(maxL + 1) * sizeof *beta);
    int32_t *e = malloc((size_t)(maxL * t->max_len + 1) * 3 * sizeof *e);
    uint8_t *keep = malloc((size_t)P);
    double *score = malloc((size_t)P * sizeof *score);
    bool ok = expected && alpha && beta && e && keep && score;
    const double *s = t->pieces.val;
    double ll = 0;
    for (int w = 0; ok && w < t->words.n; ++w) {
        int L = word_chars(t, w), m = word_edges(t, w, e);
        double f = t->words.val[w];
        /* Edges come ordered by start, then end: forward in that order, backward in reverse. */
        for (int i = 0; i <= L; ++i) alpha[i] = beta[i] = -INFINITY;
        alpha[0] = 0.0;
        beta[L] = 0.0;
        for (int k = 0; k < m; ++k) alpha[e[3 * k + 1]] = logaddexp(alpha[e[3 * k + 1]], alpha[e[3 * k]] + s[e[3 * k + 2]]);
        for (int k = m - 1; k >= 0; --k) beta[e[3 * k]] = logaddexp(beta[e[3 * k]], beta[e[3 * k + 1]] + s[e[3 * k + 2]]);
        double Z = alpha[L];
        if (Z == -INFINITY) continue; /* a word with a character not kept: no segmentation, skipped */
        ll += f * Z;
        for (int k = 0; k < m; ++k)
            expected[e[3 * k + 2]] += f * exp(alpha[e[3 * k]] + s[e[3 * k + 2]] + beta[e[3 * k + 1]] - Z);
    }
    if (ok) {
        /* M: drop the rarely used, then digamma-normalise. Characters stay. */
        double sum = 0;
        for (int i = 0; i < P; ++i) {
            keep[i] = t->is_char[i] || expected[i] >= MIN_EXPECTED;
            if (keep[i]) sum += expected[i] > MIN_EXPECTED ? expected[i] : MIN_EXPECTED;
        }
        double logsum = digamma(sum);
        for (int i = 0; i < P; ++i) score[i] = digamma(expected[i] > MIN_EXPECTED ? expected[i] : MIN_EXPECTED) - logsum;
        ok = pieces_filter(t, keep, score);
        *loglik = ll / t->total_words;
    }
    free(expected), free(alpha), free(beta), free(e), free(keep), free(score);
    return ok;
}

/* The best segmentation of chars [0, L) given edges e [m]; skips piece `skip`.
 * Writes the pieces to path and returns how many (0: none exists). */
static int viterbi_edges(const int32_t *e, int m, int L, const double *s, int skip, double *best, int32_t *back,
                         int32_t *path) {
    for (int i = 0; i <= L; ++i) best[i] = -INFINITY, back[i] = -1;
    best[0] = 0;
    for (int k = 0; k < m; ++k) {
        if (e[3 * k + 2] == skip || best[e[3 * k]] == -INFINITY) continue;
        double v = best[e[3 * k]] + s[e[3 * k + 2]];
        if (v > best[e[3 * k + 1]]) best[e[3 * k + 1]] = v, back[e[3 * k + 1]] = k;
    }
    if (back[L] < 0) return 0;
    int n = 0;
    for (int j = L; j > 0; j = e[3 * back[j]]) path[n++] = e[3 * back[j] + 2];
    return n;
}

/* Pruning (SentencePiece's PruneSentencePieces): keeps `target` pieces. */
static bool prune(trainer *t, int target) {
    int P = t->pieces.n, maxL = 0;
    for (int w = 0; w < t->words.n; ++w) maxL = word_chars(t, w) > maxL ? word_chars(t, w) : maxL;
    if (t->max_len > maxL) maxL = t->max_len;
    const double *s = t->pieces.val;
    double *freq = calloc((size_t)P, sizeof *freq), *F = calloc((size_t)P, sizeof *F);
    double *best = malloc((size_t)(maxL + 1) * sizeof *best), *loss = malloc((size_t)P * sizeof *loss);
    int32_t *back = malloc((size_t)(maxL + 1) * sizeof *back), *path = malloc((size_t)(maxL + 1) * sizeof *path);
    int32_t *e = malloc((size_t)(maxL * t->max_len + 1) * 3 * sizeof *e);
    int32_t *alt_off = malloc((size_t)(P + 1) * sizeof *alt_off), *alt = NULL, *order = malloc((size_t)P * sizeof *order);
    uint8_t *keep = calloc((size_t)P, 1);
    bool ok = freq && F && best && loss && back && path && e && alt_off && order && keep;
    /* The Viterbi counts of every piece over the corpus, and for each piece
     * the count of words (with multiplicity) whose best path uses it. */
    for (int w = 0; ok && w < t->words.n; ++w) {
        int m = word_edges(t, w, e), n = viterbi_edges(e, m, word_chars(t, w), s, -1, best, back, path);
        for (int k = 0; k < n; ++k) freq[path[k]] += t->words.val[w], F[path[k]] += t->words.val[w];
    }
    /* Each piece's second-best segmentation: the best one without itself. */
    size_t alt_n = 0, alt_cap = (size_t)P * 4;
    if (ok) ok = (alt = malloc(alt_cap * sizeof *alt)) != NULL;
    for (int i = 0; ok && i < P; ++i) {
        alt_off[i] = (int32_t)alt_n;
        if (t->is_char[i]) continue;
        /* The piece as a pseudo-word: its character boundaries. */
        const char *ps = t->pieces.keys.data + t->pieces.off[i];
        int plen = t->pieces.len[i], L = 0, co[64];
        for (int b = 0; b < plen && L < 63; b += ug_char_len((uint8_t)ps[b])) co[L++] = b;
        co[L] = plen;
        int m = 0;
        for (int a = 0; a < L; ++a)
            for (int z = a + 1; z <= L; ++z) {
                int p = strmap_find(&t->pieces, ps + co[a], (size_t)(co[z] - co[a]));
                if (p >= 0) e[m * 3] = a, e[m * 3 + 1] = z, e[m * 3 + 2] = p, m++;
            }
        int n = viterbi_edges(e, m, L, s, i, best, back, path);
        if (alt_n + (size_t)n > alt_cap) {
            alt_cap = 2 * (alt_n + (size_t)n);
            int32_t *a2 = realloc(alt, alt_cap * sizeof *a2);
            if (!a2) { ok = false; break; }
            alt = a2;
        }
        memcpy(alt + alt_n, path, (size_t)n * sizeof *path);
        alt_n += (size_t)n;
    }
    if (ok) {
        alt_off[P] = (int32_t)alt_n;
        double sum = 0;
        for (int i = 0; i < P; ++i) sum += freq[i];
        double logsum = log(sum);
        int n_cand = 0, n_keep = 0;
        for (int i = 0; i < P; ++i) {
            int na = alt_off[i + 1] - alt_off[i];
            if (t->is_char[i] || (freq[i] > 0 && na == 0)) { keep[i] = 1; n_keep++; continue; } /* no alternative */
            if (freq[i] == 0) continue;                                                          /* unused: goes */
            /* Removing i moves its freq[i] uses onto its alternatives. */
            double logprob_sp = log(freq[i]) - logsum;
            double logsum_alt = log(sum + freq[i] * (na - 1));
            double logprob_alt = 0;
            for (int k = alt_off[i]; k < alt_off[i + 1]; ++k) logprob_alt += log(freq[alt[k]] + freq[i]) - logsum_alt;
            loss[i] = F[i] / t->total_words * (logprob_sp - logprob_alt);
            order[n_cand++] = i;
        }
        /* Largest loss first; ties by index, which is deterministic. */
        ranked *r = malloc((size_t)(n_cand + 1) * sizeof *r);
        if (!r) ok = false;
        for (int k = 0; ok && k < n_cand; ++k) r[k] = (ranked){loss[order[k]], order[k]};
        if (ok) qsort(r, (size_t)n_cand, sizeof *r, ranked_desc);
        for (int k = 0; ok && k < n_cand && n_keep < target; ++k) keep[r[k].idx] = 1, n_keep++;
        free(r);
        ok = ok && pieces_filter(t, keep, t->pieces.val);
    }
    free(freq), free(F), free(best), free(loss), free(back), free(path), free(e), free(alt_off), free(alt);
    free(order), free(keep);
    return ok;
}

/* ---------------------------------------------------------------- reading the corpus */

/* Counts the words of one normalised line. */
static bool count_words(trainer *t, const char *s, size_t n) {
    static const char WS[] = "\xe2\x96\x81";
    size_t a = 0;
    while (a < n) {
        size_t b = a + 3;
        while (b < n && !(b + 3 <= n && memcmp(s + b, WS, 3) == 0)) b++;
        if (b > n) b = n;
        if (strmap_add(&t->words, s + a, b - a, 1.0) < 0) return false;
        t->total_words += 1.0;
        a = b;
    }
    return true;
}

static ag_status read_corpus(trainer *t, const data_unigram *norm, const char *const *inputs, int n_inputs,
                             int64_t max_bytes, int64_t *n_bytes, int64_t *n_invalid) {
    char *line = NULL;
    size_t cap = 0;
    *n_bytes = 0;
    for (int i = 0; i < n_inputs; ++i) {
        FILE *f = fopen(inputs[i], "rb");
        if (!f) {
            free(line);
            return ag_fail(AG_ERR_IO, "unigram train: cannot open %s: %s", inputs[i], strerror(errno));
        }
        ssize_t len;
        while ((max_bytes <= 0 || *n_bytes < max_bytes) && (len = getline(&line, &cap, f)) > 0) {
            *n_bytes += len;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
            char *nz;
            size_t nn;
            int64_t bad = 0;
            if (data_unigram_normalize(norm, line, (size_t)len, &nz, &nn, &bad) != AG_OK) {
                fclose(f);
                free(line);
                return ag_error_status();
            }
            *n_invalid += bad;
            bool ok = count_words(t, nz, nn);
            free(nz);
            if (!ok) {
                fclose(f);
                free(line);
                return ag_fail(AG_ERR_MEMORY, "unigram train: out of memory counting the words of %s", inputs[i]);
            }
        }
        bool err = ferror(f);
        fclose(f);
        if (err) {
            free(line);
            return ag_fail(AG_ERR_IO, "unigram train: read error in %s", inputs[i]);
        }
    }
    free(line);
    return AG_OK;
}

/* Character offsets and classes of every unique word. */
static bool index_words(trainer *t) {
    size_t total = 0;
    for (int w = 0; w < t->words.n; ++w) total += (size_t)t->words.len[w] + 1;
    t->word_char = malloc((size_t)(t->words.n + 1) * sizeof *t->word_char);
    t->char_off = malloc(total * sizeof *t->char_off);
    t->cls = malloc(total);
    if (!t->word_char || !t->char_off || !t->cls) return false;
    int32_t k = 0;
    for (int w = 0; w < t->words.n; ++w) {
        const uint8_t *s = (const uint8_t *)word_bytes(t, w);
        int n = t->words.len[w];
        t->word_char[w] = k;
        for (int b = 0; b < n;) {
            uint32_t cp = 0xFFFD;
            int l = ug_utf8_decode(s + b, (size_t)(n - b), &cp);
            if (l == 0) l = 1;
            t->cls[k] = (uint8_t)char_class(cp);
            t->char_off[k++] = b;
            b += l;
        }
        t->cls[k] = 0;
        t->char_off[k++] = n;
    }
    t->word_char[t->words.n] = k;
    return true;
}

/* ---------------------------------------------------------------- training */

static void trainer_free(trainer *t) {
    strmap_free(&t->words);
    strmap_free(&t->pieces);
    free(t->word_char), free(t->char_off), free(t->cls), free(t->is_char);
}

ag_status data_unigram_train(data_unigram **out, const char *const *inputs, int n_inputs,
                             const data_unigram_train_opts *opts) {
    *out = NULL;
    const int desired = opts->vocab_size - 3; /* <unk>, <s>, </s> come first */
    if (opts->vocab_size < 4 || opts->max_piece_chars < 1 || opts->max_piece_chars > 63 || opts->em_sub_iters < 1 ||
        !(opts->shrinking_factor > 0 && opts->shrinking_factor < 1) || !(opts->char_coverage > 0 && opts->char_coverage <= 1))
        return ag_fail(AG_ERR_ARG, "unigram train: bad options (vocab_size %d >= 4, max_piece_chars %d in 1..63, "
                                   "em_sub_iters %d >= 1, shrinking_factor %g in (0,1), char_coverage %g in (0,1])",
                       opts->vocab_size, opts->max_piece_chars, opts->em_sub_iters, opts->shrinking_factor,
                       opts->char_coverage);
    trainer t = {0};
    t.max_len = opts->max_piece_chars;
    data_unigram *norm = ug_new(), *u = NULL;
    strmap chars = {0}, subs = {0};
    ranked *r = NULL;
    uint8_t *keep = NULL;
    ag_status st = AG_OK;
    if (!norm) return ag_fail(AG_ERR_MEMORY, "unigram train: out of memory");
    norm->nfkc_by_utf8proc = true;

    /* 1. Words. */
    int64_t n_bytes = 0, n_invalid = 0;
    if ((st = read_corpus(&t, norm, inputs, n_inputs, opts->max_bytes, &n_bytes, &n_invalid)) != AG_OK) goto done;
    if (t.words.n == 0) {
        st = ag_fail(AG_ERR_ARG, "unigram train: the corpus (%d file%s, first %s) is empty", n_inputs,
                     n_inputs == 1 ? "" : "s", n_inputs > 0 ? inputs[0] : "none");
        goto done;
    }
    if (!index_words(&t)) goto oom;
    if (opts->verbose)
        fprintf(stderr, "unigram train: %.2f MB, %.0f words, %d unique, %lld invalid UTF-8 bytes replaced\n",
                n_bytes / 1e6, t.total_words, t.words.n, (long long)n_invalid);

    /* 2a. Characters, the rarest beyond the coverage left to <unk>. */
    double total_chars = 0;
    for (int w = 0; w < t.words.n; ++w) {
        const char *s = word_bytes(&t, w);
        const int32_t *co = t.char_off + t.word_char[w];
        for (int i = 0; i < word_chars(&t, w); ++i)
            if (strmap_add(&chars, s + co[i], (size_t)(co[i + 1] - co[i]), t.words.val[w]) < 0) goto oom;
        total_chars += t.words.val[w] * word_chars(&t, w);
    }
    if (!(r = malloc((size_t)chars.n * sizeof *r))) goto oom;
    for (int i = 0; i < chars.n; ++i) r[i] = (ranked){chars.val[i], i};
    qsort(r, (size_t)chars.n, sizeof *r, ranked_desc);
    double covered = 0;
    int n_chars = 0;
    for (; n_chars < chars.n && (n_chars == 0 || covered / total_chars < opts->char_coverage); ++n_chars)
        covered += r[n_chars].key;
    if (n_chars > desired) {
        st = ag_fail(AG_ERR_ARG, "unigram train: vocab_size %d is too small: the corpus needs %d characters + 3", opts->vocab_size,
                     n_chars);
        goto done;
    }
    for (int k = 0; k < n_chars; ++k) {
        int i = r[k].idx;
        if (strmap_add(&t.pieces, chars.keys.data + chars.off[i], (size_t)chars.len[i], r[k].key) < 0) goto oom;
    }
    free(r), r = NULL;

    /* 2b. Seed substrings: 2..max_len characters, all kept characters of one class. */
    for (int w = 0; w < t.words.n; ++w) {
        const char *s = word_bytes(&t, w);
        const int32_t *co = t.char_off + t.word_char[w];
        const uint8_t *cl = t.cls + t.word_char[w];
        int L = word_chars(&t, w);
        for (int i = 0; i < L; ++i) {
            int c0 = -1; /* the class of the first character that is not "▁" */
            for (int j = i; j < L && j - i < t.max_len; ++j) {
                if (strmap_find(&t.pieces, s + co[j], (size_t)(co[j + 1] - co[j])) < 0) break; /* not kept */
                bool ws = co[j + 1] - co[j] == 3 && memcmp(s + co[j], "\xe2\x96\x81", 3) == 0;
                if (!ws) {
                    if (c0 < 0) c0 = cl[j];
                    else if (cl[j] != c0) break;
                }
                if (j > i && strmap_add(&subs, s + co[i], (size_t)(co[j + 1] - co[i]), t.words.val[w]) < 0) goto oom;
            }
        }
    }
    if (!(r = malloc((size_t)(subs.n + 1) * sizeof *r))) goto oom;
    int n_sub = 0;
    for (int i = 0; i < subs.n; ++i) {
        if (subs.val[i] < 2) continue;
        int nc = 0;
        for (int b = 0; b < subs.len[i]; b += ug_char_len((uint8_t)subs.keys.data[subs.off[i] + b])) nc++;
        r[n_sub++] = (ranked){subs.val[i] * nc, i};
    }
    qsort(r, (size_t)n_sub, sizeof *r, ranked_desc);
    if (n_sub > opts->seed_size) n_sub = opts->seed_size;
    for (int k = 0; k < n_sub; ++k) {
        int i = r[k].idx;
        if (strmap_add(&t.pieces, subs.keys.data + subs.off[i], (size_t)subs.len[i], r[k].key) < 0) goto oom;
    }
    free(r), r = NULL;
    strmap_free(&subs);
    if (!(t.is_char = calloc((size_t)t.pieces.n, 1))) goto oom;
    for (int i = 0; i < n_chars; ++i) t.is_char[i] = 1;
    double sum = 0;
    for (int i = 0; i < t.pieces.n; ++i) sum += t.pieces.val[i];
    for (int i = 0; i < t.pieces.n; ++i) t.pieces.val[i] = log(t.pieces.val[i]) - log(sum);
    if (opts->verbose) fprintf(stderr, "unigram train: %d characters, %d seed pieces\n", n_chars, t.pieces.n);

    /* 3-4. EM, prune, until 1.1 x the target. */
    const int stop = (int)(desired * 1.1);
    for (int round = 0;; ++round) {
        double ll = 0;
        for (int it = 0; it < opts->em_sub_iters; ++it)
            if (!em_step(&t, &ll)) goto oom;
        if (opts->verbose) fprintf(stderr, "unigram train: round %d: %d pieces, log-likelihood per word %.4f\n", round, t.pieces.n, ll);
        if (t.pieces.n <= stop) break;
        int target = (int)(opts->shrinking_factor * t.pieces.n);
        if (target < stop) target = stop;
        if (!prune(&t, target)) goto oom;
    }
    if (t.pieces.n < desired) {
        st = ag_fail(AG_ERR_ARG, "unigram train: vocab_size %d is too large for this corpus (at most %d pieces + 3)",
                     opts->vocab_size, t.pieces.n);
        goto done;
    }

    /* 5. Characters always, then the best-scoring pieces; ids by falling score. */
    if (!(r = malloc((size_t)t.pieces.n * sizeof *r)) || !(keep = calloc((size_t)t.pieces.n, 1))) goto oom;
    int n_keep = 0, n_r = 0;
    for (int i = 0; i < t.pieces.n; ++i) {
        if (t.is_char[i]) keep[i] = 1, n_keep++;
        else r[n_r++] = (ranked){t.pieces.val[i], i};
    }
    qsort(r, (size_t)n_r, sizeof *r, ranked_desc);
    for (int k = 0; k < n_r && n_keep < desired; ++k) keep[r[k].idx] = 1, n_keep++;
    n_r = 0;
    for (int i = 0; i < t.pieces.n; ++i)
        if (keep[i]) r[n_r++] = (ranked){t.pieces.val[i], i};
    qsort(r, (size_t)n_r, sizeof *r, ranked_desc);
    if (!(u = ug_new())) goto oom;
    u->nfkc_by_utf8proc = true;
    snprintf(u->norm_name, sizeof u->norm_name, "nmt_nfkc");
    if (!ug_add_piece(u, "<unk>", 5, 0.0f, DATA_UNIGRAM_UNKNOWN) || !ug_add_piece(u, "<s>", 3, 0.0f, DATA_UNIGRAM_CONTROL) ||
        !ug_add_piece(u, "</s>", 4, 0.0f, DATA_UNIGRAM_CONTROL))
        goto oom;
    for (int k = 0; k < n_r; ++k) {
        int i = r[k].idx;
        if (!ug_add_piece(u, t.pieces.keys.data + t.pieces.off[i], (size_t)t.pieces.len[i], (float)t.pieces.val[i],
                          DATA_UNIGRAM_NORMAL))
            goto oom;
    }
    if ((st = ug_finish(u, "(trained)")) != AG_OK) goto done;
    *out = u;
    u = NULL;
    goto done;
oom:
    st = ag_fail(AG_ERR_MEMORY, "unigram train: out of memory");
done:
    free(r), free(keep);
    strmap_free(&chars);
    strmap_free(&subs);
    trainer_free(&t);
    data_unigram_free(norm);
    data_unigram_free(u);
    return st;
}
