/* bigbird.c: BigBird's encoder, step for step as Hugging Face's
 * modeling_big_bird.py (4.31). Block-sparse attention runs in Hugging Face's
 * gather form (block_sparse_attention), or, as the reference it is tested
 * against, as full attention under a dense additive mask (see bigbird.h).
 *
 *   (block-sparse only) pad ids to a multiple of block_size with pad_token_id
 *   h = word[ids] (* sqrt(C) when rescale_embeddings) + token_type[tt] + position[0..T-1]
 *   h = LayerNorm(dropout(h))                      note: dropout first, unlike BERT
 *   for each layer (post-LN, BERT's BigBirdLayer):
 *     a = attention(query(h), key(h), value(h))    full: padding never attended
 *                                                  sparse: the block pattern, a *= from_mask
 *     h = attention.output.LayerNorm(h + dropout(attention.output.dense(a)))
 *     h = output.LayerNorm(h + dropout(output.dense(act(intermediate.dense(h)))))
 *   (block-sparse only) cut the padding off h
 *   pooled = tanh(pooler(h[:,0]))                  [B,C]
 *   MLM logits = LayerNorm(act(transform.dense(h))) word^T + bias   [B,T,V]
 *
 * Hugging Face's block-sparse attention has no dropout on its probabilities,
 * and multiplies the context of padded query rows by 0 (from_mask); both are
 * followed here.
 */
#include "bigbird.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

ag_status nn_bigbird_config_read(const nn_config *c, nn_bigbird_config *g) {
    memset(g, 0, sizeof *g);
    double range;
    const char *type, *pos_type;
    bool is_decoder, cross;
    ag_status st;
    /* BigBirdConfig's defaults (google/bigbird-roberta-base's sizes) */
    if ((st = nn_config_int(c, "vocab_size", 50358, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "hidden_size", 768, 1, 1 << 16, &g->hidden_size)) ||
        (st = nn_config_int(c, "num_hidden_layers", 12, 1, 4096, &g->num_hidden_layers)) ||
        (st = nn_config_int(c, "num_attention_heads", 12, 1, 4096, &g->num_attention_heads)) ||
        (st = nn_config_int(c, "intermediate_size", 3072, 1, 1 << 20, &g->intermediate_size)) ||
        (st = nn_config_int(c, "max_position_embeddings", 4096, 1, 1 << 20, &g->max_position_embeddings)) ||
        (st = nn_config_int(c, "type_vocab_size", 2, 1, 1 << 16, &g->type_vocab_size)) ||
        (st = nn_config_int(c, "pad_token_id", 0, 0, 1 << 24, &g->pad_token_id)) ||
        (st = nn_config_int(c, "block_size", 64, 1, 1 << 16, &g->block_size)) ||
        (st = nn_config_int(c, "num_random_blocks", 3, 0, 1 << 10, &g->num_random_blocks)) ||
        (st = nn_config_positive(c, "layer_norm_eps", 1e-12, &g->layer_norm_eps)) ||
        (st = nn_config_num(c, "initializer_range", 0.02, &range)) ||
        (st = nn_config_prob(c, "hidden_dropout_prob", 0.1, &g->hidden_dropout_prob)) ||
        (st = nn_config_prob(c, "attention_probs_dropout_prob", 0.1, &g->attention_probs_dropout_prob)) ||
        (st = nn_config_act(c, "hidden_act", "gelu_new", &g->act)) ||
        (st = nn_config_str(c, "attention_type", "block_sparse", &type)) ||
        (st = nn_config_str(c, "position_embedding_type", "absolute", &pos_type)) ||
        (st = nn_config_bool(c, "use_bias", true, &g->use_bias)) ||
        (st = nn_config_bool(c, "rescale_embeddings", false, &g->rescale_embeddings)) ||
        (st = nn_config_bool(c, "tie_word_embeddings", true, &g->tie_word_embeddings)) ||
        (st = nn_config_bool(c, "is_decoder", false, &is_decoder)) ||
        (st = nn_config_bool(c, "add_cross_attention", false, &cross)))
        return st;
    if (g->hidden_size % g->num_attention_heads)
        return ag_fail(AG_ERR_ARG, "config %s: hidden_size %d is not divisible by num_attention_heads %d", c->path,
                       g->hidden_size, g->num_attention_heads);
    if (strcmp(type, "block_sparse") == 0) g->block_sparse = true;
    else if (strcmp(type, "original_full") != 0)
        return ag_fail(AG_ERR_ARG, "config %s: field \"attention_type\" is '%s'; it must be \"block_sparse\" or "
                       "\"original_full\"", c->path, type);
    if (strcmp(pos_type, "absolute") != 0)
        return ag_fail(AG_ERR_ARG, "config %s: field \"position_embedding_type\" is '%s'; tapegrad builds only "
                       "\"absolute\"", c->path, pos_type);
    if (is_decoder || cross)
        return ag_fail(AG_ERR_ARG, "config %s: field \"%s\" is true; tapegrad builds BigBird's encoder classes "
                       "(BigBirdModel, BigBirdForMaskedLM) only", c->path, is_decoder ? "is_decoder" : "add_cross_attention");
    if (g->pad_token_id >= g->vocab_size)
        return ag_fail(AG_ERR_ARG, "config %s: field \"pad_token_id\" %d is outside the vocabulary (vocab_size %d)",
                       c->path, g->pad_token_id, g->vocab_size);
    g->initializer_range = (float)range;
    return AG_OK;
}

/* ---------------------------------------------------------------- parameters */

ag_status nn_bigbird_declare(ag_params *ps, nn_bigbird *m, const nn_bigbird_config *cfg, nn_bigbird_head head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->head = head;
    snprintf(m->prefix, sizeof m->prefix, "%s", head == NN_BIGBIRD_MODEL ? "" : "bert.");
    const char *p = m->prefix;
    const int C = cfg->hidden_size, V = cfg->vocab_size;
    char name[NN_NAME_MAX];
    ag_status st;
    if ((st = nn_embedding_init(ps, &m->word, nn_name(name, "%sembeddings.word_embeddings", p), V, C,
                                cfg->pad_token_id)) ||
        (st = nn_embedding_init(ps, &m->position, nn_name(name, "%sembeddings.position_embeddings", p),
                                cfg->max_position_embeddings, C, -1)) ||
        (st = nn_embedding_init(ps, &m->token_type, nn_name(name, "%sembeddings.token_type_embeddings", p),
                                cfg->type_vocab_size, C, -1)) ||
        (st = nn_layernorm_init(ps, &m->emb_ln, nn_name(name, "%sembeddings.LayerNorm", p), C, cfg->layer_norm_eps)))
        return st;
    m->layer = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layer);
    if (!m->layer) return ag_fail(AG_ERR_MEMORY, "bigbird: out of memory");
    for (int l = 0; l < cfg->num_hidden_layers; ++l)
        if ((st = nn_bert_layer_declare(ps, &m->layer[l], p, l, C, cfg->intermediate_size, cfg->num_attention_heads,
                                        cfg->layer_norm_eps, cfg->attention_probs_dropout_prob, cfg->use_bias)))
            return st;
    /* both classes build BigBirdModel with its pooler */
    if ((st = nn_linear_init(ps, &m->pooler, nn_name(name, "%spooler", p), C, C, true, AG_LINEAR_OUT_IN))) return st;
    if (head == NN_BIGBIRD_MODEL) return AG_OK;
    /* BigBirdOnlyMLMHead: the head's own bias first in named_parameters() */
    if (!(m->decoder_b = ag_params_add(ps, "cls.predictions.bias", 1, AG_SHAPE(V)))) return ag_error_status();
    if ((st = nn_linear_init(ps, &m->transform, "cls.predictions.transform.dense", C, C, true, AG_LINEAR_OUT_IN)) ||
        (st = nn_layernorm_init(ps, &m->transform_ln, "cls.predictions.transform.LayerNorm", C, cfg->layer_norm_eps)))
        return st;
    if (cfg->tie_word_embeddings) m->decoder_w = m->word.w;
    else if (!(m->decoder_w = ag_params_add(ps, "cls.predictions.decoder.weight", 2, AG_SHAPE(V, C))))
        return ag_error_status();
    return AG_OK;
}

void nn_bigbird_free(nn_bigbird *m) {
    free(m->layer);
    m->layer = NULL;
}

int nn_bigbird_aliases(const nn_bigbird *m, const char *alias[][2], int cap) {
    if (m->head != NN_BIGBIRD_MASKED_LM) return 0;
    int n = 0;
    if (m->cfg.tie_word_embeddings && n < cap)
        alias[n][0] = "cls.predictions.decoder.weight", alias[n++][1] = m->word.w->name;
    if (n < cap) alias[n][0] = "cls.predictions.decoder.bias", alias[n++][1] = m->decoder_b->name;
    return n;
}

void nn_bigbird_init_weights(nn_bigbird *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const float std = m->cfg.initializer_range;
    nn_bert_embeddings_init_weights(&m->word, &m->position, &m->token_type, &m->emb_ln, std, &r);
    for (int l = 0; l < m->cfg.num_hidden_layers; ++l) nn_bert_layer_init_weights(&m->layer[l], std, &r);
    nn_init_linear(&m->pooler, std, &r);
    if (m->decoder_b)
        nn_bert_mlm_head_init_weights(m->decoder_b, &m->transform, &m->transform_ln, m->decoder_w, m->word.w, std, &r);
}

/* ---------------------------------------------------------------- the block-sparse pattern */

bool nn_bigbird_uses_block_sparse(const nn_bigbird *m, int64_t seq_len) {
    const int64_t most = (int64_t)(5 + 2 * m->cfg.num_random_blocks) * m->cfg.block_size;
    return m->cfg.block_sparse && seq_len > most;
}

/* How many times key block kb appears in query block qb's key list, for nb
 * blocks and r random blocks chosen as Hugging Face chooses them in eval mode
 * (every random block is block 0):
 *   qb = 0 or nb-1 (global rows):  every key block once
 *   1 <= qb <= nb-2:  once if kb is global (0, nb-1) or in the window
 *                     |kb - qb| <= 1 (Hugging Face lists a block that is both,
 *                     such as block 0 for qb = 1, once), plus once per random
 *                     block equal to kb: r times for kb = 0. */
static int key_block_count(int64_t qb, int64_t kb, int64_t nb, int r) {
    if (qb == 0 || qb == nb - 1) return 1;
    const int64_t rand_block = 0; /* _bigbird_block_rand_mask*: zeros when not training */
    int n = (kb == 0 || kb == nb - 1 || llabs(kb - qb) <= 1) ? 1 : 0;
    if (kb == rand_block) n += r;
    return n;
}

ag_tensor *nn_bigbird_sparse_mask(ag_ctx *ctx, const nn_bigbird *m, const ag_ints *mask, int64_t T) {
    const int64_t bs = m->cfg.block_size, nb = T / bs, B = mask->shape[0];
    if (T % bs || nb < 5 || mask->ndim != 2 || mask->shape[1] != T) {
        ag_fail(AG_ERR_ARG, "bigbird: the block-sparse mask needs a length that is a multiple of block_size %lld, "
                "of at least 5 blocks, and a mask [B,%lld]; got length %lld", (long long)bs, (long long)T,
                (long long)T);
        return NULL;
    }
    ag_tensor *out = ag_new(ctx, 4, AG_SHAPE(B, 1, T, T), false); /* [B,1,T,T] */
    if (!out) return NULL;
    /* the block pattern: log(count) or -inf, [nb,nb] */
    float *block = malloc((size_t)(nb * nb) * sizeof(float));
    if (!block) {
        ag_fail(AG_ERR_MEMORY, "bigbird: out of memory");
        return NULL;
    }
    for (int64_t qb = 0; qb < nb; ++qb)
        for (int64_t kb = 0; kb < nb; ++kb) {
            const int n = key_block_count(qb, kb, nb, m->cfg.num_random_blocks);
            block[qb * nb + kb] = n > 0 ? logf((float)n) : -INFINITY;
        }
    /* + Hugging Face's attn_mask_penalty on padded keys: (1 - to_mask) * -10000 */
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < T; ++i) {
            float *row = out->data + (b * T + i) * T;
            const float *brow = block + (i / bs) * nb;
            for (int64_t j = 0; j < T; ++j) row[j] = brow[j / bs] + (mask->data[b * T + j] ? 0.0f : -10000.0f);
        }
    free(block);
    return out;
}

/* ---------------------------------------------------------------- forward */

/* x [B,T] copied into [B,Tp] (Tp >= T) with `fill` after column T; x NULL
 * reads as all `dflt`. */
static ag_ints *pad_ints(ag_ctx *ctx, const ag_ints *x, int64_t B, int64_t T, int64_t Tp, int32_t dflt, int32_t fill) {
    ag_ints *out = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, Tp));
    if (!out) return NULL;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < Tp; ++t) out->data[b * Tp + t] = t >= T ? fill : x ? x->data[b * T + t] : dflt;
    return out;
}

/* The rows of the block-sparse attention, in Hugging Face's gather form.
 * q, k, v [B,NH,T,D] with T = nb*bs; pmask [B,T] (1 = token). Returns the
 * context [B,NH,T,D] before from_mask.
 *
 *   global rows (query blocks 0 and nb-1): every key          [B,NH,2bs,T] scores
 *   rows 1..nb-2: each gathers its own list of 5 + r key blocks
 *       [0, qb-1, qb, qb+1, rand_1 .. rand_r, nb-1]
 *     (block 0 r more times over in eval mode), laid out as a batch of
 *     B*NH "sequences" of nb-2 "heads":                       [B*NH,nb-2,bs,(5+r)bs] scores
 *     Hugging Face lists block 0 once for qb = 1 and block nb-1 once for
 *     qb = nb-2, where the window meets the global blocks; the second copy is
 *     masked with -inf here instead.
 * Padded keys get Hugging Face's -10000 on their scores. Memory: the scores,
 * probabilities and this mask are O(T (5+r) bs) per head, not O(T^2). */
static ag_tensor *block_sparse_attention(ag_ctx *ctx, const nn_bigbird *m, ag_tensor *q, ag_tensor *k, ag_tensor *v,
                                         const ag_ints *pmask) {
    if (!q || !k || !v) return NULL;
    const int64_t B = q->shape[0], NH = q->shape[1], T = q->shape[2], D = q->shape[3];
    const int64_t bs = m->cfg.block_size, nb = T / bs, M = nb - 2, r = m->cfg.num_random_blocks;
    const int64_t E = 5 + r, L = E * bs; /* key blocks per middle row, and their keys */
    const int64_t BH = B * NH;

    /* global rows: q[0] and q[-1] against every key, padded keys -10000 */
    ag_tensor *qb4 = ag_reshape(ctx, q, 4, AG_SHAPE(BH, nb, bs, D)); /* [BH,nb,bs,D] */
    ag_tensor *ends[2] = {ag_slice(ctx, qb4, 1, 0, 1), ag_slice(ctx, qb4, 1, nb - 1, 1)};
    ag_tensor *qg = ag_reshape(ctx, ag_concat(ctx, ends, 2, 1), 4, AG_SHAPE(B, NH, 2 * bs, D));
    ag_tensor *to_pen = ag_new(ctx, 4, AG_SHAPE(B, 1, 1, T), false); /* [B,1,1,T] */
    if (!to_pen) return NULL;
    for (int64_t i = 0; i < B * T; ++i) to_pen->data[i] = pmask->data[i] ? 0.0f : -10000.0f;
    const ag_attn_opts og = {.bias = to_pen};
    ag_tensor *cg = ag_reshape(ctx, ag_attention(ctx, qg, k, v, &og), 4, AG_SHAPE(BH, 2, bs, D)); /* [BH,2,bs,D] */

    /* rows 1..nb-2: the list of key blocks, one index list for all rows */
    ag_ints *idx = ag_ints_from(ctx, NULL, 1, AG_SHAPE(M * E));
    ag_tensor *pen = ag_new(ctx, 4, AG_SHAPE(BH, M, bs, L), false); /* [BH,M,bs,L] */
    if (!idx || !pen) return NULL;
    for (int64_t qb = 1; qb <= nb - 2; ++qb) {
        int32_t *list = idx->data + (qb - 1) * E;
        list[0] = 0;                              /* global first */
        list[1] = (int32_t)(qb - 1);              /* the window */
        list[2] = (int32_t)qb;
        list[3] = (int32_t)(qb + 1);
        for (int64_t i = 0; i < r; ++i) list[4 + i] = 0; /* random blocks: block 0 in eval mode */
        list[4 + r] = (int32_t)(nb - 1);          /* global last */
    }
    for (int64_t bh = 0; bh < BH; ++bh) {
        const int32_t *mrow = pmask->data + (bh / NH) * T;
        for (int64_t qb = 1; qb <= nb - 2; ++qb) {
            const int32_t *list = idx->data + (qb - 1) * E;
            float *p = pen->data + ((bh * M + qb - 1) * bs) * L; /* [bs,L] */
            for (int64_t e = 0; e < E; ++e) {
                /* the window's copy of a global block at the two ends is not in Hugging Face's list */
                const bool dup = (qb == 1 && e == 1) || (qb == nb - 2 && e == 3);
                for (int64_t j = 0; j < bs; ++j) {
                    const float val = dup ? -INFINITY : mrow[list[e] * bs + j] ? 0.0f : -10000.0f;
                    for (int64_t i = 0; i < bs; ++i) p[i * L + e * bs + j] = val;
                }
            }
        }
    }
    ag_tensor *kb4 = ag_reshape(ctx, k, 4, AG_SHAPE(BH, nb, bs, D));
    ag_tensor *vb4 = ag_reshape(ctx, v, 4, AG_SHAPE(BH, nb, bs, D));
    ag_tensor *km = ag_reshape(ctx, ag_index_select(ctx, kb4, 1, idx), 4, AG_SHAPE(BH, M, L, D)); /* [BH,M,L,D] */
    ag_tensor *vm = ag_reshape(ctx, ag_index_select(ctx, vb4, 1, idx), 4, AG_SHAPE(BH, M, L, D));
    const ag_attn_opts om = {.bias = pen};
    ag_tensor *cm = ag_attention(ctx, ag_slice(ctx, qb4, 1, 1, M), km, vm, &om); /* [BH,M,bs,D] */

    /* the rows back in order: q[0], q[1..nb-2], q[-1] */
    ag_tensor *parts[3] = {ag_slice(ctx, cg, 1, 0, 1), cm, ag_slice(ctx, cg, 1, 1, 1)};
    return ag_reshape(ctx, ag_concat(ctx, parts, 3, 1), 4, AG_SHAPE(B, NH, T, D)); /* [B,NH,T,D] */
}

/* One BigBirdLayer. h [B,T,C]; full attention masks keys with key_mask; the
 * block-sparse form (pmask [B,T] of the padded sequence) runs the gather form
 * above, or, with use_dense_mask, full attention plus the additive mask
 * `dense` [B,1,T,T]; both zero padded query rows with from_mask [B,1,T,1]. */
static ag_tensor *layer_forward(ag_ctx *ctx, const nn_bigbird *m, const nn_bert_layer *L, ag_tensor *h,
                                const ag_ints *key_mask, const ag_ints *pmask, ag_tensor *dense, ag_tensor *from_mask) {
    const nn_mha *a = &L->attn;
    const int NH = a->n_head;
    ag_tensor *q = nn_split_heads(ctx, nn_linear_forward(ctx, &a->q, h), NH); /* [B,NH,T,D] */
    ag_tensor *k = nn_split_heads(ctx, nn_linear_forward(ctx, &a->k, h), NH);
    ag_tensor *v = nn_split_heads(ctx, nn_linear_forward(ctx, &a->v, h), NH);
    ag_tensor *ctx_heads;
    if (from_mask) {
        /* bigbird_block_sparse_attention: no dropout on the probabilities */
        const ag_attn_opts o = {.bias = dense};
        ag_tensor *c = dense ? ag_attention(ctx, q, k, v, &o) : block_sparse_attention(ctx, m, q, k, v, pmask);
        ctx_heads = ag_mul(ctx, c, from_mask); /* [B,NH,T,D] * [B,1,T,1] */
    } else {
        const ag_attn_opts o = {.key_mask = key_mask, .dropout = a->attn_dropout};
        ctx_heads = ag_attention(ctx, q, k, v, &o);
    }
    const float p = m->cfg.hidden_dropout_prob;
    ag_tensor *x = nn_linear_forward(ctx, &a->o, nn_merge_heads(ctx, ctx_heads)); /* [B,T,C] */
    h = nn_norm_forward(ctx, &L->attn_ln, ag_add(ctx, ag_dropout(ctx, x, p), h));
    ag_tensor *f = nn_act_forward(ctx, m->cfg.act, nn_linear_forward(ctx, &L->intermediate, h)); /* [B,T,I] */
    f = nn_linear_forward(ctx, &L->output, f);                                                     /* [B,T,C] */
    return nn_norm_forward(ctx, &L->output_ln, ag_add(ctx, ag_dropout(ctx, f, p), h));
}

ag_tensor *nn_bigbird_forward(ag_ctx *ctx, const nn_bigbird *m, const ag_ints *ids, const ag_ints *token_type_ids,
                              const ag_ints *attention_mask) {
    if (!ids) return NULL;
    char s[64];
    if (ids->ndim != 2) {
        ag_fail(AG_ERR_ARG, "bigbird: input_ids must be [B,T], got %s", ag_shape_str(s, ids->ndim, ids->shape));
        return NULL;
    }
    const int64_t B = ids->shape[0], T = ids->shape[1], bs = m->cfg.block_size;
    if (!nn_same_bt("bigbird", "token_type_ids", token_type_ids, B, T) ||
        !nn_same_bt("bigbird", "attention_mask", attention_mask, B, T))
        return NULL;
    const bool sparse = nn_bigbird_uses_block_sparse(m, T);
    if (m->cfg.block_sparse && !sparse) {
        static _Thread_local bool warned;
        if (!warned)
            fprintf(stderr, "bigbird: warning: attention_type 'block_sparse' needs more than (5 + 2*num_random_blocks)"
                    "*block_size = %lld tokens; %lld tokens use full attention ('original_full'), as Hugging Face "
                    "does\n", (long long)(5 + 2 * m->cfg.num_random_blocks) * bs, (long long)T);
        warned = true;
    }
    /* _pad_to_block_size: ids with pad_token_id, the mask with 0, token types with 0 */
    const int64_t Tp = sparse ? (T + bs - 1) / bs * bs : T;
    if (Tp > m->cfg.max_position_embeddings) {
        ag_fail(AG_ERR_ARG, "bigbird: %lld positions%s exceed max_position_embeddings %d", (long long)Tp,
                Tp > T ? " (padded to a multiple of block_size)" : "", m->cfg.max_position_embeddings);
        return NULL;
    }
    const ag_ints *pids = ids, *ptt = token_type_ids, *pmask = attention_mask;
    if (sparse) {
        pids = pad_ints(ctx, ids, B, T, Tp, 0, m->cfg.pad_token_id);
        ptt = pad_ints(ctx, token_type_ids, B, T, Tp, 0, 0);
        pmask = pad_ints(ctx, attention_mask, B, T, Tp, 1, 0);
    } else if (!ptt) {
        ptt = pad_ints(ctx, NULL, B, T, T, 0, 0);
    }
    ag_ints *pos = ag_ints_from(ctx, NULL, 1, AG_SHAPE(Tp));
    if (!pids || !ptt || (sparse && !pmask) || !pos) return NULL;
    for (int64_t t = 0; t < Tp; ++t) pos->data[t] = (int32_t)t;

    /* BigBirdEmbeddings: (word + token_type) + position, dropout, then LayerNorm */
    ag_tensor *w = nn_embedding_forward(ctx, &m->word, pids); /* [B,Tp,C] */
    if (m->cfg.rescale_embeddings) w = ag_scale(ctx, w, sqrtf((float)m->cfg.hidden_size));
    ag_tensor *h = ag_add(ctx, w, nn_embedding_forward(ctx, &m->token_type, ptt));
    h = ag_add(ctx, h, nn_embedding_forward(ctx, &m->position, pos)); /* + [Tp,C] */
    h = nn_norm_forward(ctx, &m->emb_ln, ag_dropout(ctx, h, m->cfg.hidden_dropout_prob));

    ag_tensor *dense = NULL, *from_mask = NULL;
    if (sparse) {
        if (m->use_dense_mask && !(dense = nn_bigbird_sparse_mask(ctx, m, pmask, Tp))) return NULL; /* [B,1,Tp,Tp] */
        from_mask = ag_new(ctx, 4, AG_SHAPE(B, 1, Tp, 1), false);
        if (!from_mask) return NULL;
        for (int64_t i = 0; i < B * Tp; ++i) from_mask->data[i] = (float)pmask->data[i];
    }
    for (int l = 0; l < m->cfg.num_hidden_layers; ++l)
        h = layer_forward(ctx, m, &m->layer[l], h, attention_mask, pmask, dense, from_mask);
    /* undo the padding */
    return Tp > T ? ag_slice(ctx, h, 1, 0, T) : h;
}

ag_tensor *nn_bigbird_pool(ag_ctx *ctx, const nn_bigbird *m, ag_tensor *hidden) {
    if (!hidden) return NULL;
    const int64_t B = hidden->shape[0], C = hidden->shape[2];
    ag_tensor *first = ag_reshape(ctx, ag_slice(ctx, hidden, 1, 0, 1), 2, AG_SHAPE(B, C)); /* [B,C] */
    return ag_tanh(ctx, nn_linear_forward(ctx, &m->pooler, first));
}

ag_tensor *nn_bigbird_mlm_logits(ag_ctx *ctx, const nn_bigbird *m, ag_tensor *hidden) {
    if (!m->decoder_b) {
        ag_fail(AG_ERR_STATE, "bigbird: BigBirdModel has no MLM head (use BigBirdForMaskedLM)");
        return NULL;
    }
    ag_tensor *x = nn_act_forward(ctx, m->cfg.act, nn_linear_forward(ctx, &m->transform, hidden));
    x = nn_norm_forward(ctx, &m->transform_ln, x);
    return ag_linear(ctx, x, m->decoder_w, m->decoder_b, AG_LINEAR_OUT_IN); /* [...,V] */
}

ag_tensor *nn_bigbird_loss(ag_ctx *ctx, const nn_bigbird *m, const ag_ints *ids, const ag_ints *token_type_ids,
                           const ag_ints *attention_mask, const ag_ints *labels, int64_t *n_tokens) {
    if (m->head == NN_BIGBIRD_MODEL) {
        ag_fail(AG_ERR_STATE, "bigbird: BigBirdModel has no loss (use BigBirdForMaskedLM)");
        return NULL;
    }
    if (!labels) {
        ag_fail(AG_ERR_ARG, "bigbird: the loss needs \"labels\"");
        return NULL;
    }
    if (!ids) return NULL;
    if (ids->ndim != 2 || !nn_same_bt("bigbird", "labels", labels, ids->shape[0], ids->shape[1])) {
        if (ids->ndim != 2) ag_fail(AG_ERR_ARG, "bigbird: input_ids must be [B,T]");
        return NULL;
    }
    ag_tensor *h = nn_bigbird_forward(ctx, m, ids, token_type_ids, attention_mask); /* [B,T,C] */
    if (n_tokens) {
        int64_t count = 0;
        for (int64_t i = 0; i < labels->numel; ++i) count += labels->data[i] != AG_IGNORE_INDEX;
        *n_tokens = count;
    }
    return ag_cross_entropy(ctx, nn_bigbird_mlm_logits(ctx, m, h), labels, 0.0f, AG_REDUCE_MEAN);
}
