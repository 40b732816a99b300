/* wordpiece.c: BERT's tokenizer — the BasicTokenizer, then WordPiece.
 *
 * The BasicTokenizer, one code point at a time (Unicode from utf8proc):
 *   - clean: drop NUL, U+FFFD and control characters (categories Cc, Cf, Co;
 *     tab, newline and return are whitespace, not control); whitespace becomes
 *     a word break;
 *   - CJK ideographs (the CJK Unified Ideographs blocks and their extensions
 *     and compatibility blocks) each become a word of their own;
 *   - lower-case (when do_lower_case) and strip accents: decompose to NFD and
 *     drop the nonspacing marks (category Mn), so "Héllo" becomes "hello";
 *   - punctuation is a word of its own: Unicode categories P*, and the ASCII
 *     symbols $ + < = > ^ ` | ~ too, as BERT's _is_punctuation says.
 *
 * WordPiece then splits each word greedily, longest match first: the longest
 * prefix in the vocabulary, then the longest "##"-prefixed piece of the rest,
 * and so on. A word with no split, or longer than max_input_chars_per_word
 * (100) characters, becomes one [UNK].
 */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

ag_status data_wordpiece_init(data_tokenizer *t) {
    t->kind = DATA_TOK_WORDPIECE;
    t->lowercase = t->strip_accents = t->chinese_chars = t->clean_text = true;
    t->max_word_chars = 100;
    snprintf(t->prefix, sizeof t->prefix, "##");
    t->tpl = DATA_TPL_BERT;
    return AG_OK;
}

/* ---------------------------------------------------------------- character classes */

static bool is_whitespace(int32_t cp) {
    if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') return true;
    return utf8proc_category(cp) == UTF8PROC_CATEGORY_ZS;
}

static bool is_control(int32_t cp) {
    if (cp == '\t' || cp == '\n' || cp == '\r') return false;
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF || c == UTF8PROC_CATEGORY_CO;
}

static bool is_punctuation(int32_t cp) {
    /* all non-letter, non-number ASCII symbols count, though Unicode calls $ + < = > ^ ` | ~ symbols */
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
        return true;
    utf8proc_category_t c = utf8proc_category(cp);
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

static bool is_cjk(int32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
           (cp >= 0x2B820 && cp <= 0x2CEAF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* ---------------------------------------------------------------- the BasicTokenizer */

/* The word being built: UTF-8 bytes [n]. */
typedef struct word_buf {
    char *s;
    size_t n, cap;
} word_buf;

static ag_status word_put(word_buf *w, int32_t cp) {
    if (w->n + 4 > w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        char *s = realloc(w->s, cap);
        if (!s) return ag_fail(AG_ERR_MEMORY, "WordPiece: out of memory");
        w->s = s, w->cap = cap;
    }
    w->n += (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)w->s + w->n);
    return AG_OK;
}

/* Ends the current word (if any): hands it to `word` and empties the buffer. */
static ag_status word_flush(word_buf *w, ag_status (*word)(void *, const char *, size_t), void *ctx) {
    if (w->n == 0) return AG_OK;
    ag_status st = word(ctx, w->s, w->n);
    w->n = 0;
    return st;
}

ag_status data_bert_pretokenize(const data_tokenizer *t, const char *text, size_t len,
                                ag_status (*word)(void *ctx, const char *w, size_t n), void *ctx) {
    word_buf w = {0};
    ag_status st = AG_OK;
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)text;
    size_t at = 0;
    while (at < len && !st) {
        int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p + at, (utf8proc_ssize_t)(len - at), &cp);
        if (k <= 0) { cp = 0xFFFD; k = 1; } /* callers sanitize first; this is only a guard */
        at += (size_t)k;
        if (t->clean_text && (cp == 0 || cp == 0xFFFD || is_control(cp))) continue;
        if (is_whitespace(cp)) { st = word_flush(&w, word, ctx); continue; }
        if (t->chinese_chars && is_cjk(cp)) {
            if (!(st = word_flush(&w, word, ctx)) && !(st = word_put(&w, cp))) st = word_flush(&w, word, ctx);
            continue;
        }
        /* lower-case, then NFD and drop nonspacing marks: at most a few code points */
        int32_t parts[16];
        int np = 1;
        parts[0] = cp;
        if (t->lowercase) parts[0] = utf8proc_tolower(cp);
        if (t->strip_accents) {
            int last = 0;
            utf8proc_ssize_t d = utf8proc_decompose_char(parts[0], parts, 16, UTF8PROC_DECOMPOSE, &last);
            np = d > 0 && d <= 16 ? (int)d : 1;
        }
        for (int i = 0; i < np && !st; ++i) {
            if (t->strip_accents && utf8proc_category(parts[i]) == UTF8PROC_CATEGORY_MN) continue;
            if (is_punctuation(parts[i])) {
                if (!(st = word_flush(&w, word, ctx)) && !(st = word_put(&w, parts[i]))) st = word_flush(&w, word, ctx);
            } else {
                st = word_put(&w, parts[i]);
            }
        }
    }
    if (!st) st = word_flush(&w, word, ctx);
    free(w.s);
    return st;
}

/* ---------------------------------------------------------------- WordPiece */

typedef struct wp_ctx {
    data_tokenizer *t;
    data_encoding *out;
    int type_id;
    char *buf; /* [cap] the candidate piece: prefix + a slice of the word */
    size_t cap;
} wp_ctx;

static ag_status wp_word(void *vctx, const char *w, size_t n) {
    wp_ctx *c = vctx;
    data_tokenizer *t = c->t;
    size_t plen = strlen(t->prefix);
    if (n + plen + 1 > c->cap) {
        size_t cap = 2 * (n + plen + 1);
        char *b = realloc(c->buf, cap);
        if (!b) return ag_fail(AG_ERR_MEMORY, "WordPiece: out of memory");
        c->buf = b, c->cap = cap;
    }
    /* characters, not bytes, are what max_input_chars_per_word counts */
    int64_t nchars = 0;
    for (size_t i = 0; i < n; ++i) nchars += ((uint8_t)w[i] & 0xC0) != 0x80;
    int64_t first = c->out->n;
    if (nchars <= t->max_word_chars) {
        size_t start = 0;
        while (start < n) {
            size_t end = n;
            int32_t id = -1;
            while (end > start) {
                size_t off = start > 0 ? plen : 0;
                memcpy(c->buf, t->prefix, off);
                memcpy(c->buf + off, w + start, end - start);
                id = (int32_t)data_strmap_get(&t->vocab, c->buf, off + end - start);
                if (id >= 0) break;
                do --end; while (end > start && ((uint8_t)w[end] & 0xC0) == 0x80); /* back one character */
            }
            if (id < 0) goto unknown;
            if (data_encoding_push(c->out, id, c->type_id, 1)) return AG_ERR_MEMORY;
            start = end;
        }
        return AG_OK;
    }
unknown:
    c->out->n = first; /* the pieces found so far are dropped: the whole word is [UNK] */
    if (t->unk_id < 0) return ag_fail(AG_ERR_ARG, "WordPiece: a word has no split and the vocabulary has no [UNK]");
    return data_encoding_push(c->out, t->unk_id, c->type_id, 1);
}

ag_status data_wordpiece_encode(data_tokenizer *t, const char *text, size_t len, int type_id, data_encoding *out) {
    wp_ctx c = {t, out, type_id, NULL, 0};
    ag_status st = data_bert_pretokenize(t, text, len, wp_word, &c);
    free(c.buf);
    return st;
}

/* ---------------------------------------------------------------- decode */

/* Replaces every `from` by `to` (not longer) in s, in place. */
static void replace_all(char *s, const char *from, const char *to) {
    size_t lf = strlen(from), lt = strlen(to);
    char *r = s, *w = s;
    while (*r) {
        if (strncmp(r, from, lf) == 0) {
            memmove(w, to, lt), w += lt, r += lf;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
}

ag_status data_wordpiece_decode(const data_tokenizer *t, const int32_t *ids, int64_t n, bool skip_special,
                                char **out) {
    size_t cap = 1, plen = strlen(t->prefix);
    for (int64_t i = 0; i < n; ++i) {
        if (ids[i] < 0 || ids[i] >= t->n_tokens)
            return ag_fail(AG_ERR_ARG, "decode: id %d at position %lld is outside the vocabulary [0, %d)", ids[i],
                           (long long)i, t->n_tokens);
        cap += strlen(t->tokens[ids[i]]) + 1;
    }
    char *s = malloc(cap);
    if (!s) return ag_fail(AG_ERR_MEMORY, "decode: out of memory");
    size_t len = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (skip_special && data_tokenizer_is_special(t, ids[i])) continue;
        const char *tok = t->tokens[ids[i]];
        if (plen && strncmp(tok, t->prefix, plen) == 0) tok += plen; /* a continuation glues on */
        else if (len > 0) s[len++] = ' ';
        size_t k = strlen(tok);
        memcpy(s + len, tok, k), len += k;
    }
    s[len] = 0;
    /* Hugging Face's cleanup of tokenization spaces */
    static const char *const fix[][2] = {{" .", "."},     {" ?", "?"},     {" !", "!"},    {" ,", ","},
                                         {" ' ", "'"},    {" n't", "n't"}, {" 'm", "'m"},  {" 's", "'s"},
                                         {" 've", "'ve"}, {" 're", "'re"}};
    for (size_t i = 0; i < sizeof fix / sizeof fix[0]; ++i) replace_all(s, fix[i][0], fix[i][1]);
    *out = s;
    return AG_OK;
}
