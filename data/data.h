/* data.h: token shards and the deterministic loader that streams them.
 *
 * What it is: the bottom of the data path. A corpus becomes token ids (here by
 * the byte-level tokenizer: one id per byte, plus end-of-text; the WordPiece,
 * BPE and Unigram tokenizers come with the tokenizer issue), the ids are
 * written to a shard file per split, and the loader cuts training windows out
 * of a shard. It knows nothing of tensors beyond integer token arrays.
 *
 * Shard file (little-endian):
 *   bytes 0..7    magic "TGSHARD1"
 *   u32           vocabulary size
 *   u32           bytes per token (2 or 4)
 *   u64           number of tokens
 *   u64           number of documents
 *   then the tokens. Documents are separated by the end-of-text id.
 *
 * The loader is a pure function of (seed, batch index): batch i's windows start
 * at offsets drawn from the counter-based generator, so the loader's whole
 * position is one integer, and a resumed run reads exactly the batches an
 * unbroken run would have read.
 */
#ifndef TAPEGRAD_DATA_H
#define TAPEGRAD_DATA_H

#include "ag.h"

#include <stdbool.h>
#include <stdint.h>

/* ---------------------------------------------------------------- byte-level tokenizer */

#define DATA_BYTE_VOCAB 257 /* 256 bytes + end-of-text */
#define DATA_BYTE_EOT 256

/* ---------------------------------------------------------------- shards */

typedef struct data_shard {
    int32_t *tokens; /* [n] */
    int64_t n, n_docs;
    int vocab_size;
    char path[512];
} data_shard;

/* Writes ids [n] to `path` (via path.tmp and a rename). Errors name the path. */
ag_status data_shard_write(const char *path, const int32_t *ids, int64_t n, int64_t n_docs, int vocab_size);
/* Reads a shard: a TGSHARD1 file, a TGSHARD2 file (data_doc_shard_read; the
 * separators are in its tokens), or, when `path` is DIR/train.bin or
 * DIR/val.bin and is missing but DIR/manifest.json exists, every shard of that
 * split concatenated (what `tapegrad prepare` now writes). Errors: missing
 * file, bad magic, truncated, an id >= vocab. */
ag_status data_shard_read(data_shard *s, const char *path);
void data_shard_free(data_shard *s);

/* Byte-level preparation: reads every file in `inputs` (each file one
 * document, ended by end-of-text), tokenises it by bytes, and writes
 * out_dir/train.bin and out_dir/val.bin, the last `val_fraction` of the
 * documents held out. Errors: an unreadable input, an empty corpus. */
ag_status data_prepare_bytes(const char *const *inputs, int n_inputs, const char *out_dir, double val_fraction,
                             int64_t *n_train, int64_t *n_val);

/* ---------------------------------------------------------------- loader */

typedef struct data_loader {
    const data_shard *shard;
    int B, T;
    uint64_t seed;
    uint64_t batch; /* the index of the next batch: the loader's whole position */
} data_loader;

/* Errors: a shard shorter than T+1 tokens. */
ag_status data_loader_init(data_loader *l, const data_shard *s, int B, int T, uint64_t seed);
/* Fills inputs [B,T] and targets [B,T] (targets = inputs shifted by one) with
 * batch number l->batch, then advances. */
void data_loader_next(data_loader *l, int32_t *inputs, int32_t *targets);

/* ================================================================ tapegrad prepare: compressed shards with boundaries
 *
 * `tapegrad prepare` turns corpus files into token shards with any tokenizer
 * (tokenizer.h: WordPiece, BPE, Unigram) or the byte-level one. It streams:
 * files are read in chunks, cut into sentences, each sentence tokenised and
 * appended to the current shard of its split, and a shard is compressed and
 * written once it holds --shard-tokens tokens, so memory is one shard, never
 * the corpus.
 *
 * Documents: one per input file, or (DATA_DOCS_BLANK_LINE) one per block of
 * lines separated by blank lines (the block without the newline that ends its
 * last line). Each document's ids are followed by the separator id
 * (<|endoftext|>, else [SEP] or </s>; 256 for bytes).
 *
 * Sentences, by a deliberately simple rule: a sentence ends after '.', '!' or
 * '?' (and any closing quotes or brackets "')] right after it) when whitespace
 * follows; the whitespace goes to the next sentence. Because every cut falls
 * between a non-space and a space, the BPE regex, BERT's pre-tokenizer and
 * SentencePiece's whitespace handling all split there anyway, so a document's
 * ids are exactly those of encoding it whole. ("Mr. Smith" is two sentences;
 * abbreviations are not special-cased.) A sentence of more than 4 chunks
 * without such an end is cut at its last space (not recorded as a sentence
 * start); text without any space at all is cut at a character boundary, the
 * one place where ids can differ from a whole-document encode.
 *
 * Held-out split by documents, streaming: document d (counting from 0 over
 * all files) goes to "val" when floor((d+1) f) > floor(d f), which spreads
 * exactly round(n f) documents evenly over the corpus.
 *
 * Shard file out_dir/<split>-NNNNN.tgs (little-endian):
 *   bytes 0..7  magic "TGSHARD2"
 *   u32 flags (bit 0: the first document began in the previous shard)
 *   u32 vocab size, i32 separator id, u32 bytes per token (2 or 4)
 *   u64 tokens, u64 documents, u64 sentences
 *   u64 body bytes, u64 compressed bytes, u32 CRC-32 of the body
 *   then the body, compressed by zlib:
 *     tokens [tokens] (u16 or u32), document starts [documents] (u64 token
 *     offsets), sentence starts [sentences] (u64 token offsets)
 * out_dir/manifest.json names the tokenizer, its kind, vocabulary size,
 * special ids and the shards of each split with their counts. */

typedef struct data_doc_shard {
    int32_t *tokens;     /* [n] documents back to back, each ended by sep_id */
    int64_t n;
    int64_t *doc_start;  /* [n_docs] the offset of each document's first token, increasing */
    int64_t n_docs;
    int64_t *sent_start; /* [n_sents] the offset of each sentence's first token, increasing */
    int64_t n_sents;
    int vocab_size;
    int32_t sep_id;
    bool continues;      /* document 0 is the rest of the previous shard's last document (a
                          * fragment: counted in n_docs, not in the manifest's split totals) */
    char path[512];
} data_doc_shard;

/* Writes `s` to `path` (via path.tmp and a rename), compressed by zlib;
 * *file_bytes (when not NULL) receives the file's size. Errors name the path. */
ag_status data_doc_shard_write(const char *path, const data_doc_shard *s, int64_t *file_bytes);
/* Reads a shard written by data_doc_shard_write. Errors (AG_ERR_IO, naming the
 * path): a missing file, bad magic, an inconsistent header, a truncated or
 * corrupt body (zlib or CRC-32), an id outside the vocabulary, boundaries out
 * of order. AG_ERR_MEMORY when it does not fit. */
ag_status data_doc_shard_read(data_doc_shard *s, const char *path);
void data_doc_shard_free(data_doc_shard *s);

typedef enum data_doc_mode {
    DATA_DOCS_PER_FILE,   /* each input file is one document */
    DATA_DOCS_BLANK_LINE, /* blank lines separate documents */
} data_doc_mode;

typedef struct data_prepare_opts {
    const char *tokenizer;         /* a path for data_tokenizer_load, or "bytes" */
    const char *const *inputs;     /* [n_inputs] text files */
    int n_inputs;
    const char *out_dir;
    double val_fraction;           /* in [0, 1): the fraction of documents held out */
    int64_t shard_tokens;          /* tokens per shard (0: 16M) */
    data_doc_mode docs;
    bool progress;                 /* a progress bar on stderr (a line every 5 s when it is not a terminal) */
    size_t chunk_bytes;            /* bytes read at a time (0: 1 MB) */
} data_prepare_opts;

typedef struct data_prepare_stats {
    int64_t bytes;                 /* read from the inputs */
    int64_t tokens[2], docs[2], sents[2], shards[2]; /* [0] train, [1] val */
    int64_t file_bytes;            /* the shards' compressed size on disk */
    int64_t invalid_utf8;          /* bytes replaced by U+FFFD (0 for bytes: they stay bytes) */
    int32_t vocab_size, sep_id;
    double seconds;
} data_prepare_stats;

/* Prepares the corpus as described above, writing the shards and
 * manifest.json into o->out_dir (made if missing). Returns AG_OK and fills
 * *stats (may be NULL). Errors: AG_ERR_IO naming an input that cannot be
 * read, or the tokenizer file; AG_ERR_ARG for an empty corpus (naming the
 * inputs), a bad option, a tokenizer without a separator token. */
ag_status data_prepare(const data_prepare_opts *o, data_prepare_stats *stats);

/* The shard files of `split` ("train", "val") listed in dir/manifest.json:
 * *files [*n] malloc'd paths (free each, then the array), and the manifest's
 * vocabulary size, separator and pad ids (the separator when there is no pad)
 * when the pointers are not NULL. Errors name the manifest. */
ag_status data_manifest_split(const char *dir, const char *split, char ***files, int *n, int32_t *vocab_size,
                              int32_t *sep_id, int32_t *pad_id);

/* ---------------------------------------------------------------- the stream loader
 *
 * Reads the shards of a split in a seeded order, one shard in memory at a
 * time, for as many epochs as asked, and fills batches of rows [B,T] with a
 * mask [B,T] (1 token, 0 padding). Each epoch e visits the shards in a
 * permutation drawn from (seed, e), and the units of a shard in a permutation
 * drawn from (seed, e, shard):
 *   DATA_STREAM_PACK        units are documents, concatenated with their
 *                           separators and cut into rows of T: a row runs on
 *                           across documents, shards and epochs; mask all 1
 *   DATA_STREAM_PAD_DOCS    one document per row (its first T tokens,
 *                           separator included when it fits), padded with pad_id
 *   DATA_STREAM_PAD_SENTS   the same, one sentence per row (NSP, SOP, spans)
 * For a causal LM on packed rows the targets are the row shifted by one.
 *
 * The position is (epoch, shard, unit, offset): the offset'th token of the
 * unit'th unit of the shard'th shard of the epoch's order, plus the batch
 * count. data_stream_tell gives it, a checkpoint stores the five numbers, and
 * data_stream_seek on a freshly opened stream (same split, mode, B, T, seed)
 * makes the next batch the one an unbroken run would read next. */

typedef enum data_stream_mode { DATA_STREAM_PACK, DATA_STREAM_PAD_DOCS, DATA_STREAM_PAD_SENTS } data_stream_mode;

typedef struct data_stream_pos {
    uint64_t epoch, shard, unit, offset, batch;
} data_stream_pos;

typedef struct data_stream {
    char **files;          /* [n_files] the split's shards, manifest order */
    int n_files;
    data_stream_mode mode;
    int B, T;
    uint64_t seed;
    int n_epochs;          /* 0: for ever */
    int32_t pad_id;
    data_stream_pos pos;
    /* the shard in memory: files[shard_order[pos.shard]] of epoch loaded_epoch */
    int *shard_order;      /* [n_files] this epoch's order */
    int64_t loaded_epoch, loaded_shard; /* -1: none */
    data_doc_shard cur;
    int64_t *unit_order;   /* [n_units] */
    int64_t n_units;
    bool done;
} data_stream;

/* Opens split `split` of prepared directory `dir`. Errors: a missing or bad
 * manifest, a split without shards, B or T below 1, n_epochs below 0. */
ag_status data_stream_open(data_stream *s, const char *dir, const char *split, data_stream_mode mode, int B, int T,
                           uint64_t seed, int n_epochs);
/* Fills ids [B,T] and mask [B,T]; *rows receives the rows that hold tokens
 * (B, fewer in the last batch of the last epoch, 0 when everything has been
 * read; the other rows are padding). Errors: a shard that cannot be read. */
ag_status data_stream_next(data_stream *s, int32_t *ids, uint8_t *mask, int *rows);
data_stream_pos data_stream_tell(const data_stream *s);
/* Moves to `p` (from data_stream_tell). Errors: AG_ERR_ARG when p lies outside
 * this split (another corpus, or other options), naming the field. */
ag_status data_stream_seek(data_stream *s, data_stream_pos p);
void data_stream_close(data_stream *s);

#endif
