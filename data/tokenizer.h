/* tokenizer.h: text to token ids and back — WordPiece (BERT), byte-level BPE
 * (GPT-2, RoBERTa) and a hook for Unigram (T5, ALBERT; data/unigram.c).
 *
 * What it is: the tokenizers a user trains on a corpus or loads with a
 * checkpoint, giving exactly the ids of the reference implementations. What it
 * is not: a general Hugging Face `tokenizers` pipeline — only the normalizers,
 * pre-tokenizers and post-processors these three families use are read from a
 * tokenizer.json.
 *
 * One encode, step by step (each model kind supplies step 3):
 *
 *   1. the input bytes are made valid UTF-8: each invalid byte becomes U+FFFD
 *      and is counted (data_encoding.n_invalid), never an error;
 *   2. special tokens written in the text ("[CLS]", "<|endoftext|>") are cut
 *      out and mapped straight to their ids;
 *   3. each piece between them is split into words and the words into ids:
 *        WordPiece  clean, lower-case, strip accents, split CJK and punctuation
 *                   (BERT's BasicTokenizer), then greedy longest match with "##";
 *        BPE        GPT-2's regex, bytes to printable characters, merges by rank;
 *        Unigram    the model's own encode (the vtable in data_tokenizer.ext);
 *   4. data_tokenizer_encode_pair adds [CLS]/[SEP] (or <s>/</s>), token type
 *      ids, truncation and padding.
 *
 * Errors are values (ag_status, message in ag_error()): a missing vocabulary
 * file, a malformed tokenizer.json and an empty corpus name the file.
 * A tokenizer is not thread-safe while encoding (the BPE cache and the regex
 * match block are shared); give each thread its own copy, or lock.
 */
#ifndef TAPEGRAD_TOKENIZER_H
#define TAPEGRAD_TOKENIZER_H

#include "ag.h"
#include "unigram.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- a string -> int map */

/* Open addressing with linear probing; keys are byte strings (may hold NUL)
 * copied into the map. Used for the vocabulary (token -> id), the BPE cache
 * (pre-token -> offset of its ids) and the trainers' word counts. */
typedef struct data_strmap {
    char **keys;      /* [cap] owned copies, NULL for an empty slot */
    uint32_t *klens;  /* [cap] */
    int64_t *vals;    /* [cap] */
    int64_t cap, n;   /* cap is a power of two, kept at most half full */
} data_strmap;

/* Returns the slot's value, or -1 when `key` is absent. */
int64_t data_strmap_get(const data_strmap *m, const char *key, size_t len);
/* Sets key -> val. Returns AG_OK or AG_ERR_MEMORY. */
ag_status data_strmap_put(data_strmap *m, const char *key, size_t len, int64_t val);
/* Adds `inc` to key's value (inserting it at 0 first). AG_OK or AG_ERR_MEMORY. */
ag_status data_strmap_add(data_strmap *m, const char *key, size_t len, int64_t inc);
void data_strmap_clear(data_strmap *m);
void data_strmap_free(data_strmap *m);

/* ---------------------------------------------------------------- the tokenizer */

typedef enum data_tok_kind {
    DATA_TOK_WORDPIECE,
    DATA_TOK_BPE,
    DATA_TOK_UNIGRAM, /* implemented in data/unigram.c through data_tokenizer.ext */
} data_tok_kind;

/* How pairs are framed (the tokenizer.json post_processor). */
typedef enum data_tok_template {
    DATA_TPL_NONE,    /* A, or A B: GPT-2 */
    DATA_TPL_BERT,    /* [CLS] A [SEP] B [SEP], type ids 0..0 1..1 */
    DATA_TPL_ROBERTA, /* <s> A </s></s> B </s>, type ids all 0 */
} data_tok_template;

typedef struct data_tokenizer data_tokenizer;

/* The ids of one encode, appended to by the encoders. */
typedef struct data_encoding {
    int32_t *ids;       /* [n] */
    int32_t *type_ids;  /* [n] 0 for the first sequence, 1 for the second (BERT) */
    uint8_t *mask;      /* [n] attention mask: 1 for tokens, 0 for padding */
    int64_t n, cap;
    int64_t n_invalid;  /* invalid UTF-8 bytes replaced by U+FFFD in the inputs */
} data_encoding;

/* The hook a model kind outside this file plugs in (Unigram): encode one piece
 * of valid UTF-8 text with no special tokens in it, appending ids; free the
 * model. tokenizer.c calls these for DATA_TOK_UNIGRAM; the vocabulary
 * (data_tokenizer.tokens/vocab) is shared, so specials, decode and pairs work. */
typedef struct data_tok_ext {
    ag_status (*encode)(data_tokenizer *t, const char *text, size_t len, data_encoding *out);
    ag_status (*decode)(const data_tokenizer *t, const int32_t *ids, int64_t n, bool skip_special, char **out);
    ag_status (*save_json)(const data_tokenizer *t, void *cjson_root); /* adds "model" etc. to a cJSON object */
    void (*free)(void *impl);
    void *impl;
} data_tok_ext;

struct data_tokenizer {
    data_tok_kind kind;
    char source[512];     /* the file or folder it came from, for messages */

    /* vocabulary: id -> token, token -> id */
    char **tokens;        /* [n_tokens] NUL-terminated UTF-8 */
    int32_t n_tokens;
    data_strmap vocab;

    /* special tokens: cut out of the text before the model sees it */
    int32_t *specials;    /* [n_specials] ids, longest token first */
    int32_t n_specials;
    int32_t unk_id, cls_id, sep_id, pad_id; /* -1 when absent */
    data_tok_template tpl;

    /* WordPiece (BERT) */
    bool lowercase, strip_accents, chinese_chars, clean_text;
    int max_word_chars;   /* longer words become [UNK] (100) */
    char prefix[8];       /* the continuation prefix, "##" */

    /* byte-level BPE (GPT-2) */
    int32_t byte_id[256];       /* the id of each byte's one-character token */
    uint16_t byte_char[256];    /* byte -> its printable code point */
    uint8_t char_byte[512];     /* printable code point (< 512) -> byte */
    void *merges;               /* pair (a,b) -> rank and merged id (bpe.c) */
    int32_t n_merges;
    void *regex, *match;        /* pcre2_code *, pcre2_match_data * */
    data_strmap cache;          /* pre-token -> offset into cache_ids */
    int32_t *cache_ids;         /* [cache_n] for each cached word: its length, then its ids */
    int64_t cache_n, cache_cap;
    bool add_prefix_space;

    data_tok_ext ext;           /* Unigram and any later kind */
    bool literal_specials;      /* a SentencePiece .model: "</s>" in the text is text, as spm_encode reads it */
};

/* Loads a tokenizer from `path`: a tokenizer.json (model.type WordPiece, BPE
 * or Unigram), a SentencePiece .model file (Unigram; any file whose first
 * non-blank byte is not '{'), or a folder holding vocab.txt
 * (WordPiece; tokenizer_config.json's do_lower_case is honoured, default true)
 * or vocab.json + merges.txt (byte-level BPE). Returns AG_OK; AG_ERR_IO naming
 * the file when it is missing, or malformed (with the field). On error `t` is
 * left freed. */
ag_status data_tokenizer_load(data_tokenizer *t, const char *path);

/* Writes `t` as a Hugging Face tokenizer.json that data_tokenizer_load (and
 * Hugging Face) read back. AG_ERR_IO names the path when it cannot be written. */
ag_status data_tokenizer_save(const data_tokenizer *t, const char *path);

void data_tokenizer_free(data_tokenizer *t);

/* The id of `token`, or -1. */
int32_t data_tokenizer_id(const data_tokenizer *t, const char *token);

/* Encodes `len` bytes of text and appends the ids to `out` with type id
 * `type_id` and mask 1 — no [CLS]/[SEP]. Returns AG_OK or AG_ERR_MEMORY.
 * Invalid UTF-8 is replaced and counted in out->n_invalid. */
ag_status data_tokenizer_encode(data_tokenizer *t, const char *text, size_t len, int type_id, data_encoding *out);

/* What encode_pair does around the two sequences. */
typedef struct data_encode_opts {
    bool add_special;    /* [CLS] A [SEP] B [SEP] by the tokenizer's template */
    int64_t max_len;     /* truncate to this many ids including specials; 0 = no limit */
    int64_t pad_to;      /* pad with [PAD] (mask 0) up to this length; 0 = no padding */
} data_encode_opts;

/* Encodes `a` (and `b` unless NULL) into `out` (reset first). Truncation
 * removes ids from the end of the longer sequence, one at a time (Hugging
 * Face's "longest_first"). Returns AG_OK; AG_ERR_ARG when max_len cannot hold
 * the special tokens, or pad_to is asked of a tokenizer without a pad token. */
ag_status data_tokenizer_encode_pair(data_tokenizer *t, const char *a, const char *b, data_encode_opts opts,
                                     data_encoding *out);

void data_encoding_reset(data_encoding *e);
void data_encoding_free(data_encoding *e);

/* Decodes ids back to text into a malloc'd NUL-terminated string *out (the
 * caller frees it). BPE gives the original bytes back; WordPiece joins words
 * with spaces, glues "##" pieces and tidies spaces before punctuation, as
 * Hugging Face's WordPiece decoder does. Returns AG_OK; AG_ERR_ARG for an id
 * outside the vocabulary. */
ag_status data_tokenizer_decode(const data_tokenizer *t, const int32_t *ids, int64_t n, bool skip_special,
                                char **out);

/* ---------------------------------------------------------------- training */

typedef struct data_train_opts {
    data_tok_kind kind;
    int32_t vocab_size;      /* the final vocabulary, specials and alphabet included */
    int64_t min_frequency;   /* a pair seen fewer times is never merged (default 0) */
    bool lowercase;          /* WordPiece: BERT uncased (default when zero-initialised: false) */
    bool quiet;              /* no progress on stderr */
} data_train_opts;

/* Trains a tokenizer on the text files `inputs`: counts the words (BERT's
 * pre-tokenizer, or GPT-2's regex), then merges the most frequent pair of
 * adjacent symbols until the vocabulary is full; ties go to the pair whose
 * symbols have the smallest ids, so training is deterministic. BPE starts from
 * the 256 byte characters; WordPiece from the corpus's characters, with "##"
 * on those that continue a word. Returns AG_OK; AG_ERR_IO naming an unreadable
 * file or an empty corpus; AG_ERR_ARG for a vocab_size below the alphabet. */
ag_status data_tokenizer_train(data_tokenizer *t, const char *const *inputs, int n_inputs, data_train_opts opts);

/* ---------------------------------------------------------------- shared by the model files */

/* Copies `len` bytes into a malloc'd valid UTF-8 string (*out, NUL-terminated,
 * *out_len bytes), each byte that does not begin a valid sequence replaced by
 * U+FFFD; returns how many were replaced, or -1 when out of memory. */
int64_t data_utf8_sanitize(const char *text, size_t len, char **out, size_t *out_len);

/* Appends one id; AG_OK or AG_ERR_MEMORY. */
ag_status data_encoding_push(data_encoding *e, int32_t id, int32_t type_id, uint8_t mask);

/* Adds token `s` as id n_tokens; returns the id or -1 (AG_ERR_MEMORY set). */
int32_t data_tokenizer_add_token(data_tokenizer *t, const char *s, size_t len);
/* Marks `id` special (cut out of input text, skipped by decode on request). */
ag_status data_tokenizer_add_special(data_tokenizer *t, int32_t id);
bool data_tokenizer_is_special(const data_tokenizer *t, int32_t id);
/* Sets unk/cls/sep/pad ids from the tokens named [UNK] [CLS] [SEP] [PAD] (or
 * <unk> <s> </s> <pad>) and marks those, [MASK], <mask> and <|endoftext|> special. */
void data_tokenizer_find_specials(data_tokenizer *t);

/* wordpiece.c */
ag_status data_wordpiece_init(data_tokenizer *t); /* defaults: lowercase, "##", 100 chars */
ag_status data_wordpiece_encode(data_tokenizer *t, const char *text, size_t len, int type_id, data_encoding *out);
/* BERT's BasicTokenizer on valid UTF-8: calls word(ctx, w, n) for each word. */
ag_status data_bert_pretokenize(const data_tokenizer *t, const char *text, size_t len,
                                ag_status (*word)(void *ctx, const char *w, size_t n), void *ctx);
ag_status data_wordpiece_decode(const data_tokenizer *t, const int32_t *ids, int64_t n, bool skip_special,
                                char **out);

/* bpe.c */
ag_status data_bpe_init(data_tokenizer *t);  /* regex, byte map; call after the vocabulary is loaded */
/* Adds merge number n_merges: tokens a and b (by string) merge into a+b. */
ag_status data_bpe_add_merge(data_tokenizer *t, const char *a, const char *b, const char *where);
ag_status data_bpe_encode(data_tokenizer *t, const char *text, size_t len, int type_id, data_encoding *out);
ag_status data_bpe_decode(const data_tokenizer *t, const int32_t *ids, int64_t n, bool skip_special, char **out);
/* The merges in rank order as "a b" strings: fills a[n_merges], b[n_merges] (borrowed token strings). */
void data_bpe_merge_list(const data_tokenizer *t, const char **a, const char **b);
/* GPT-2's regex on valid UTF-8: calls word(ctx, w, n) for each pre-token. */
ag_status data_bpe_pretokenize(data_tokenizer *t, const char *text, size_t len,
                               ag_status (*word)(void *ctx, const char *w, size_t n), void *ctx);
void data_bpe_free(data_tokenizer *t);

/* tok_unigram.c: puts a loaded or trained Unigram model `u` behind this
 * interface — its pieces become the vocabulary, control pieces and <unk> the
 * special tokens; `t` owns `u` afterwards (also on error). `t` must be zeroed
 * (its source set). literal_specials: do not cut special tokens out of the text
 * (spm_encode's reading, used for .model files). AG_OK, AG_ERR_MEMORY, or
 * AG_ERR_IO for a piece that appears twice. */
ag_status data_tokenizer_attach_unigram(data_tokenizer *t, data_unigram *u, bool literal_specials);

#endif
