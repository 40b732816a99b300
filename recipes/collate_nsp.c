/* collate_nsp.c: BERT's next-sentence pairs, transcribed from
 * create_instances_from_document in google-research/bert's
 * create_pretraining_data.py (ALBERT's sentence-order variant shares it; see
 * collate_sop.c), then MLM over the pair (collate_mlm.c).
 *
 * One instance, from a random document and a random sentence i in it:
 *   max_num_tokens = T - 3 (room for [CLS] [SEP] [SEP]);
 *   target = max_num_tokens, or with short_seq_prob randint(2, max_num_tokens);
 *   chunk = sentences i, i+1, ... until their length reaches target or the
 *           document ends;
 *   a_end = randint(1, len(chunk) - 1) when the chunk has >= 2 sentences, else 1;
 *   A = chunk[:a_end];
 *   B, with next_sentence_prob or when the chunk is one sentence: from a
 *           random other document (10 tries), sentences from a random one on
 *           until B reaches target - len(A); is_random_next = 1;
 *      else: chunk[a_end:], is_random_next = 0;
 *   truncate_seq_pair: while len(A) + len(B) > max_num_tokens, cut the longer
 *           one (B on a tie) at the front or the back with probability 1/2.
 * Where this differs from the script: the script walks each document from its
 * first sentence, and after a random B puts back the unused sentences; here
 * every instance starts at a random sentence, so that an instance is a pure
 * function of (seed, index, b) and the stream needs no state. */
#include "collate_internal.h"

#include <stdlib.h>
#include <string.h>

/* A document other than d if one is found in 10 draws, as the script does
 * (and then the next non-empty one). */
static int64_t other_doc(const recipe_corpus *c, int64_t d, recipe_rng *r) {
    int64_t e = d;
    for (int k = 0; k < 10; ++k) {
        e = recipe_rng_int(r, 0, c->n_docs - 1);
        if (e != d) break;
    }
    for (int64_t k = 0; k < c->n_docs && c->doc_start[e + 1] == c->doc_start[e]; ++k) e = (e + 1) % c->n_docs;
    return e;
}

void collate_pair_instance(const recipe_corpus *c, const recipe_collate_config *cfg, int T, bool sop, recipe_rng *r,
                           const int32_t **a, int64_t *na, const int32_t **b, int64_t *nb, int *label,
                           int64_t *n_segments) {
    int64_t n_s;
    const int64_t *o = collate_sent_starts(c, &n_s);
    const int64_t max_num_tokens = T - 3;
    int64_t target = max_num_tokens;
    if (recipe_rng_uniform(r) < cfg->short_seq_prob) target = recipe_rng_int(r, 2, max_num_tokens);

    const int64_t d = collate_random_doc(c, r);
    int64_t s0, s1;
    collate_doc_sentences(c, d, &s0, &s1);
    const int64_t i = recipe_rng_int(r, s0, s1 - 1);
    int64_t j = i, len = 0; /* the chunk is sentences [i, j) */
    do len += o[j + 1] - o[j], ++j;
    while (j < s1 && len < target);
    const int64_t n_chunk = j - i;
    *n_segments = n_chunk;

    const int64_t a_end = n_chunk >= 2 ? recipe_rng_int(r, 1, n_chunk - 1) : 1;
    const int32_t *pa = c->tokens + o[i], *pb;
    int64_t la = o[i + a_end] - o[i], lb;
    /* nsp: random B with next_sentence_prob; sop: a random B only for a
     * one-sentence chunk (ALBERT's script keeps BERT's branch for it), else
     * swap with next_sentence_prob. The draw happens only for >= 2 sentences,
     * as Python's `or` short-circuits. */
    bool random_b = n_chunk == 1 || (!sop && recipe_rng_uniform(r) < cfg->next_sentence_prob);
    bool swap = false;
    if (random_b) {
        const int64_t target_b = target - la;
        const int64_t e = other_doc(c, d, r);
        int64_t t0, t1;
        collate_doc_sentences(c, e, &t0, &t1);
        const int64_t k0 = recipe_rng_int(r, t0, t1 - 1);
        int64_t k = k0;
        lb = 0;
        do lb += o[k + 1] - o[k], ++k;
        while (k < t1 && lb < target_b);
        pb = c->tokens + o[k0];
        *label = 1;
    } else {
        if (sop) swap = recipe_rng_uniform(r) < cfg->next_sentence_prob;
        pb = c->tokens + o[i + a_end];
        lb = o[j] - o[i + a_end];
        *label = swap ? 1 : 0;
    }
    if (swap) {
        const int32_t *tp = pa;
        int64_t tl = la;
        pa = pb, la = lb, pb = tp, lb = tl;
    }
    /* truncate_seq_pair */
    while (la + lb > max_num_tokens) {
        const bool cut_a = la > lb;
        if (recipe_rng_uniform(r) < 0.5) {
            if (cut_a) ++pa, --la;
            else ++pb, --lb;
        } else {
            if (cut_a) --la;
            else --lb;
        }
    }
    *a = pa, *na = la, *b = pb, *nb = lb;
}

ag_status collate_pairs(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                        uint64_t seed, uint64_t index, bool sop) {
    const char *who = sop ? "collate sop" : "collate nsp";
    memset(out, 0, sizeof *out);
    ag_status st;
    recipe_mlm_masking how; /* BERT's token-level masking for nsp, ALBERT's n-grams for sop */
    if ((st = collate_check_config(cfg, who, "pcsm")) ||
        (st = collate_masking(cfg, who, sop ? RECIPE_MASK_NGRAM : RECIPE_MASK_TOKENS, false, &how)) ||
        (st = recipe_corpus_check(c, cfg)))
        return st;
    if (B < 1 || T < 5) return ag_fail(AG_ERR_ARG, "%s: B = %d, T = %d; need B >= 1 and T >= 5", who, B, T);
    int32_t *ids = collate_field(out, "input_ids", B, T, cfg->pad_id);
    int32_t *att = ids ? collate_field(out, "attention_mask", B, T, 0) : NULL;
    int32_t *types = att ? collate_field(out, "token_type_ids", B, T, 0) : NULL;
    int32_t *labels = types ? collate_field(out, "labels", B, T, -100) : NULL;
    int32_t *pair = labels ? collate_field(out, sop ? "sentence_order_label" : "next_sentence_label", B, 1, 0) : NULL;
    int64_t *scratch = pair ? malloc(3 * (size_t)T * sizeof *scratch) : NULL;
    if (!scratch) {
        if (pair) ag_fail(AG_ERR_MEMORY, "%s: out of memory", who);
        recipe_batch_free(out);
        return ag_error_status();
    }
    for (int b = 0; b < B; ++b) {
        recipe_rng r = recipe_rng_example(seed, index, b);
        const int32_t *a, *bb;
        int64_t na, nb, n_seg;
        collate_pair_instance(c, cfg, T, sop, &r, &a, &na, &bb, &nb, &pair[b], &n_seg);
        /* [CLS] A [SEP] B [SEP]: segment 0 up to the first [SEP], 1 after */
        int32_t *row = ids + (int64_t)b * T, *ty = types + (int64_t)b * T;
        int64_t n = 0;
        row[n++] = cfg->cls_id;
        memcpy(row + n, a, (size_t)na * sizeof *row), n += na;
        row[n++] = cfg->sep_id;
        const int64_t b_from = n;
        memcpy(row + n, bb, (size_t)nb * sizeof *row), n += nb;
        row[n++] = cfg->sep_id;
        for (int64_t t = 0; t < n; ++t) att[(int64_t)b * T + t] = 1, ty[t] = t >= b_from;
        collate_mask_row(row, labels + (int64_t)b * T, n, cfg, how, &r, scratch);
    }
    free(scratch);
    return AG_OK;
}

ag_status recipe_collate_nsp(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                             uint64_t seed, uint64_t index) {
    return collate_pairs(out, c, cfg, B, T, seed, index, false);
}
