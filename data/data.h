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
/* Reads a shard. Errors: missing file, bad magic, truncated, an id >= vocab. */
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

#endif
