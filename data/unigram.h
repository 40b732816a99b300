/* unigram.h: the Unigram tokenizer of SentencePiece (T5, ALBERT, XLM-R).
 *
 * What it is: a vocabulary of pieces, each with a log-probability score, and
 * the segmentation of a text into the pieces whose scores sum highest
 * (Viterbi over the lattice of every piece that matches at every position).
 * Before segmenting, the text is normalised the way SentencePiece does it:
 * every character through the model's own precompiled rule table (NFKC plus
 * SentencePiece's whitespace rules for the default "nmt_nfkc"), runs of spaces
 * collapsed, leading and trailing spaces dropped, a "dummy prefix" space put in
 * front, and every space written as U+2581 "▁". So "Hello  world" becomes
 * "▁Hello▁world", and "world" alone is the same piece "▁world" in both.
 *
 * What it reads: a SentencePiece .model file (a protobuf, read here by a small
 * hand-written reader of just the fields needed) or the equivalent Hugging Face
 * tokenizer.json ("model": {"type": "Unigram", "vocab": [[piece, score], ...],
 * "unk_id": ...}). Ids are exactly those of spm_encode on the same .model.
 *
 * What it trains: a new vocabulary from raw text by SentencePiece's recipe
 * (seed pieces from frequent substrings, EM re-estimation of the scores, pruning
 * the pieces whose removal costs the least likelihood), deterministically. It
 * need not give spm_train's vocabulary; it gives one that segments sensibly.
 *
 * What it is not: BPE or WordPiece (see tokenizer.h), special-token templates,
 * padding or truncation; those wrap this.
 *
 * Example:
 *     data_unigram *u;
 *     if (data_unigram_load(&u, "spm.model") != AG_OK) { fprintf(stderr, "%s\n", ag_error()); ... }
 *     int32_t *ids; int64_t n;
 *     data_unigram_encode(u, "Hello world", 11, &ids, &n);   // e.g. [ 1247, 97 ]
 *     char *text; data_unigram_decode(u, ids, n, &text);    // "Hello world"
 *     free(ids); free(text); data_unigram_free(u);
 */
#ifndef TAPEGRAD_DATA_UNIGRAM_H
#define TAPEGRAD_DATA_UNIGRAM_H

#include "ag.h"

#include <stddef.h>
#include <stdint.h>

/* The piece types of SentencePiece's ModelProto (the same numbers). Only
 * NORMAL, USER_DEFINED and UNUSED pieces are matched against text; UNKNOWN,
 * CONTROL (<s>, </s>) and BYTE ("<0x41>") pieces are reached only by id. */
typedef enum {
    DATA_UNIGRAM_NORMAL = 1,
    DATA_UNIGRAM_UNKNOWN = 2,
    DATA_UNIGRAM_CONTROL = 3,
    DATA_UNIGRAM_USER_DEFINED = 4,
    DATA_UNIGRAM_UNUSED = 5,
    DATA_UNIGRAM_BYTE = 6,
} data_unigram_type;

typedef struct data_unigram data_unigram; /* opaque; see unigram.c */

/* Loads a tokenizer from `path`: a SentencePiece .model file, or a Hugging Face
 * tokenizer.json (told apart by the first non-blank byte being '{').
 * Returns AG_OK and *out, or an error naming the file: AG_ERR_IO when it cannot
 * be read, AG_ERR_ARG when it is malformed, not a Unigram model (a BPE .model,
 * a WordPiece tokenizer.json), or has no unknown piece. */
ag_status data_unigram_load(data_unigram **out, const char *path);
/* The same from bytes already in memory; `name` is used in messages. */
ag_status data_unigram_load_model_bytes(data_unigram **out, const uint8_t *buf, size_t n, const char *name);
ag_status data_unigram_load_json_text(data_unigram **out, const char *text, const char *name);

/* Frees everything; NULL is allowed. */
void data_unigram_free(data_unigram *u);

/* The number of pieces (ids are 0 .. size-1). */
int data_unigram_vocab_size(const data_unigram *u);
/* The piece of `id` (as stored, with "▁"), or NULL when id is out of range. */
const char *data_unigram_piece(const data_unigram *u, int id);
/* The score and type of `id`; 0 when id is out of range. */
float data_unigram_score(const data_unigram *u, int id);
data_unigram_type data_unigram_piece_type(const data_unigram *u, int id);
/* The id of a piece given as a string, or -1 when it is not in the vocabulary. */
int data_unigram_piece_to_id(const data_unigram *u, const char *piece);
/* The id of the unknown piece ("<unk>"). */
int data_unigram_unk_id(const data_unigram *u);

/* Normalises `text` [n bytes] as the model says (see the top of this file).
 * Returns AG_OK and a NUL-terminated malloc'd *out of *out_n bytes (the caller
 * frees it). Invalid UTF-8 becomes U+FFFD, one per bad byte, and is not fatal;
 * `*n_invalid` (when not NULL) receives how many bytes were replaced.
 * Errors: AG_ERR_MEMORY. */
ag_status data_unigram_normalize(const data_unigram *u, const char *text, size_t n, char **out, size_t *out_n,
                                 int64_t *n_invalid);

/* Encodes `text` [n bytes] to ids, as spm_encode --output_format=id does:
 * normalise, Viterbi, then merge each run of unknown characters into one
 * <unk> id, or, when the model has byte pieces, spell each unknown character
 * as its UTF-8 bytes. Returns AG_OK and a malloc'd *ids [*n_ids] (the caller
 * frees it; an empty or all-blank text gives *n_ids = 0 and *ids may be NULL).
 * Errors: AG_ERR_MEMORY. */
ag_status data_unigram_encode(const data_unigram *u, const char *text, size_t n, int32_t **ids, int64_t *n_ids);

/* Decodes ids [n] back to text, as SentencePiece does: "▁" becomes a space
 * (the dummy prefix's space of the first piece is dropped), control pieces
 * vanish, unknown pieces read " ⁇ ", runs of byte pieces are reassembled into
 * UTF-8. Returns AG_OK and a malloc'd NUL-terminated *text (the caller frees).
 * Errors: AG_ERR_ARG for an id out of range (the message gives its position). */
ag_status data_unigram_decode(const data_unigram *u, const int32_t *ids, int64_t n, char **text);

/* ---------------------------------------------------------------- training */

typedef struct data_unigram_train_opts {
    int vocab_size;          /* the final number of pieces, <unk> <s> </s> included (e.g. 8000) */
    int max_piece_chars;     /* the longest piece in characters (16, as SentencePiece) */
    int seed_size;           /* how many frequent substrings seed the vocabulary (e.g. 100000) */
    int em_sub_iters;        /* EM iterations between two prunings (2, as SentencePiece) */
    double shrinking_factor; /* each pruning keeps this fraction of the pieces (0.75) */
    double char_coverage;    /* the fraction of characters kept as pieces; the rarest go to <unk> (0.9995) */
    int64_t max_bytes;       /* read at most this many bytes of input (0: all) */
    int verbose;             /* print one line per EM round to stderr */
} data_unigram_train_opts;

/* The defaults above. */
data_unigram_train_opts data_unigram_train_defaults(int vocab_size);

/* Trains a Unigram model on the text files `inputs` [n_inputs], each line a
 * sentence. Deterministic: the same files and options give the same model.
 * The model normalises by NFKC (utf8proc) with SentencePiece's whitespace rules
 * and numbers its pieces <unk>=0, <s>=1, </s>=2, then by falling score.
 * Returns AG_OK and *out. Errors name the file or the option: AG_ERR_IO for an
 * unreadable input, AG_ERR_ARG for an empty corpus or a vocab_size that is
 * too small (fewer than the characters kept + 3) or too large for the corpus. */
ag_status data_unigram_train(data_unigram **out, const char *const *inputs, int n_inputs,
                             const data_unigram_train_opts *opts);

/* Writes `u` as a SentencePiece .model file (pieces, model type, normaliser
 * flags) that data_unigram_load reads back. Errors: AG_ERR_IO naming the path. */
ag_status data_unigram_save(const data_unigram *u, const char *path);

#endif
