/* stream.c: the loader over prepared shards — seeded shuffling, packing or
 * padding, epochs, and a position that can be told and restored exactly.
 * The contract is in data.h ("the stream loader"). Everything random is a
 * pure function of the seed and the position's numbers, so restoring the
 * position restores the future. */
#include "data.h"

#include <stdlib.h>
#include <string.h>

/* A permutation of 0..n-1 drawn from (seed, stream): Fisher-Yates over the
 * counter-based generator. */
static void permute(int64_t *order, int64_t n, uint64_t seed, uint64_t stream) {
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    uint64_t key = seed ^ (0x9E3779B97F4A7C15ULL * (stream + 1));
    for (int64_t i = n - 1; i > 0; --i) {
        int64_t j = (int64_t)(ag_rng_u64(key, (uint64_t)i) % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j], order[j] = t;
    }
}

/* The units of the loaded shard: documents (pack, pad_docs) or sentences. */
static int64_t unit_count(const data_stream *s) {
    return s->mode == DATA_STREAM_PAD_SENTS ? s->cur.n_sents : s->cur.n_docs;
}

/* Unit u's tokens [*begin, *end): a document runs to the next document (its
 * separator included), a sentence to the next sentence or document start. */
static void unit_span(const data_stream *s, int64_t u, int64_t *begin, int64_t *end) {
    const data_doc_shard *d = &s->cur;
    if (s->mode == DATA_STREAM_PAD_SENTS) {
        *begin = d->sent_start[u];
        *end = u + 1 < d->n_sents ? d->sent_start[u + 1] : d->n;
        /* the first document start after the sentence begins also ends it */
        int64_t lo = 0, hi = d->n_docs; /* the first doc_start > begin, by bisection */
        while (lo < hi) {
            int64_t mid = (lo + hi) / 2;
            if (d->doc_start[mid] <= *begin) lo = mid + 1;
            else hi = mid;
        }
        if (lo < d->n_docs && d->doc_start[lo] < *end) *end = d->doc_start[lo];
    } else {
        *begin = u == 0 && d->continues ? 0 : d->doc_start[u];
        *end = u + 1 < d->n_docs ? d->doc_start[u + 1] : d->n;
    }
}

/* Loads the shard and unit order for s->pos.epoch and s->pos.shard. */
static ag_status load_position(data_stream *s) {
    if (s->loaded_epoch != (int64_t)s->pos.epoch) {
        int64_t *o = malloc((size_t)s->n_files * sizeof *o);
        if (!o) return ag_fail(AG_ERR_MEMORY, "loader: out of memory");
        permute(o, s->n_files, s->seed, 2 * s->pos.epoch);
        for (int i = 0; i < s->n_files; ++i) s->shard_order[i] = (int)o[i];
        free(o);
        s->loaded_epoch = (int64_t)s->pos.epoch;
        s->loaded_shard = -1;
    }
    if (s->loaded_shard == (int64_t)s->pos.shard) return AG_OK;
    data_doc_shard_free(&s->cur);
    free(s->unit_order), s->unit_order = NULL;
    s->loaded_shard = -1;
    int file = s->shard_order[s->pos.shard];
    ag_status st = data_doc_shard_read(&s->cur, s->files[file]);
    if (st) return st;
    s->n_units = unit_count(s);
    s->unit_order = malloc((size_t)(s->n_units ? s->n_units : 1) * sizeof *s->unit_order);
    if (!s->unit_order) return ag_fail(AG_ERR_MEMORY, "loader: out of memory");
    /* in a shard that continues a document, the fragment (unit 0 when packing) shuffles like the rest */
    permute(s->unit_order, s->n_units, s->seed, 2 * (s->pos.epoch * (uint64_t)s->n_files + (uint64_t)file) + 1);
    s->loaded_shard = (int64_t)s->pos.shard;
    return AG_OK;
}

/* Moves past the last unit of a shard: the next shard, or the next epoch. */
static ag_status next_unit(data_stream *s) {
    s->pos.offset = 0;
    if (++s->pos.unit < (uint64_t)s->n_units) return AG_OK;
    s->pos.unit = 0;
    if (++s->pos.shard == (uint64_t)s->n_files) {
        s->pos.shard = 0;
        if (++s->pos.epoch == (uint64_t)s->n_epochs && s->n_epochs > 0) {
            s->done = true;
            return AG_OK;
        }
    }
    return load_position(s);
}

ag_status data_stream_open(data_stream *s, const char *dir, const char *split, data_stream_mode mode, int B, int T,
                           uint64_t seed, int n_epochs) {
    memset(s, 0, sizeof *s);
    if (B < 1 || T < 1) return ag_fail(AG_ERR_ARG, "loader: batch %d and sequence length %d must be >= 1", B, T);
    if (n_epochs < 0) return ag_fail(AG_ERR_ARG, "loader: epochs must be >= 0 (0: for ever), got %d", n_epochs);
    ag_status st = data_manifest_split(dir, split, &s->files, &s->n_files, NULL, NULL, &s->pad_id);
    if (st) return st;
    s->mode = mode, s->B = B, s->T = T, s->seed = seed, s->n_epochs = n_epochs;
    s->loaded_epoch = s->loaded_shard = -1;
    s->shard_order = malloc((size_t)s->n_files * sizeof *s->shard_order);
    if (!s->shard_order) st = ag_fail(AG_ERR_MEMORY, "loader: out of memory");
    if (!st) st = load_position(s);
    /* a shard with no unit of this kind (a sentence-less shard) is passed over */
    while (!st && !s->done && s->n_units == 0) st = next_unit(s);
    if (st) data_stream_close(s);
    return st;
}

ag_status data_stream_next(data_stream *s, int32_t *ids, uint8_t *mask, int *rows) {
    const int64_t T = s->T;
    *rows = 0;
    for (int64_t i = 0; i < (int64_t)s->B * T; ++i) ids[i] = s->pad_id, mask[i] = 0;
    ag_status st = AG_OK;
    for (int b = 0; b < s->B && !s->done && !st; ++b) {
        int32_t *row = ids + b * T;
        uint8_t *m = mask + b * T;
        int64_t filled = 0;
        while (filled < T && !s->done && !st) {
            if (s->n_units == 0) { st = next_unit(s); continue; }
            int64_t begin, end;
            unit_span(s, s->unit_order[s->pos.unit], &begin, &end);
            begin += (int64_t)s->pos.offset;
            int64_t k = end - begin < T - filled ? end - begin : T - filled;
            memcpy(row + filled, s->cur.tokens + begin, (size_t)k * sizeof *row);
            memset(m + filled, 1, (size_t)k);
            filled += k;
            if (s->mode == DATA_STREAM_PACK && begin + k < end) {
                s->pos.offset += (uint64_t)k; /* the row is full; the unit goes on in the next */
            } else {
                st = next_unit(s); /* padded rows drop what does not fit (truncation) */
                if (s->mode != DATA_STREAM_PACK) break;
            }
        }
        if (filled > 0) (*rows)++;
    }
    s->pos.batch++;
    return st;
}

data_stream_pos data_stream_tell(const data_stream *s) { return s->pos; }

ag_status data_stream_seek(data_stream *s, data_stream_pos p) {
    if (s->n_epochs > 0 && p.epoch > (uint64_t)s->n_epochs)
        return ag_fail(AG_ERR_ARG, "loader: position epoch %llu is past the %d epochs", (unsigned long long)p.epoch,
                       s->n_epochs);
    if (p.shard >= (uint64_t)s->n_files)
        return ag_fail(AG_ERR_ARG, "loader: position shard %llu, but the split has %d shards",
                       (unsigned long long)p.shard, s->n_files);
    if (s->n_epochs > 0 && p.epoch == (uint64_t)s->n_epochs) { /* the end */
        s->pos = p, s->done = true;
        return AG_OK;
    }
    data_stream_pos old = s->pos;
    s->pos = p, s->done = false;
    ag_status st = load_position(s);
    if (!st && p.unit >= (uint64_t)s->n_units && !(s->n_units == 0 && p.unit == 0))
        st = ag_fail(AG_ERR_ARG, "loader: position unit %llu, but shard %s has %lld units",
                     (unsigned long long)p.unit, s->cur.path, (long long)s->n_units);
    if (!st && s->n_units) {
        int64_t begin, end;
        unit_span(s, s->unit_order[p.unit], &begin, &end);
        if ((int64_t)p.offset >= end - begin)
            st = ag_fail(AG_ERR_ARG, "loader: position offset %llu is past its unit of %lld tokens in %s",
                         (unsigned long long)p.offset, (long long)(end - begin), s->cur.path);
    }
    if (st) {
        s->pos = old;
        s->loaded_shard = -1;
        ag_status st2 = load_position(s);
        (void)st2;
    }
    return st;
}

void data_stream_close(data_stream *s) {
    for (int i = 0; i < s->n_files; ++i) free(s->files[i]);
    free(s->files), free(s->shard_order), free(s->unit_order);
    data_doc_shard_free(&s->cur);
    memset(s, 0, sizeof *s);
}
