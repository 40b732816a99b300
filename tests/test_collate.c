/* test_collate.c: the pretraining collators (recipes/collate_*.c) on a
 * generated corpus: each one's statistics on a large sample against its
 * recipe (within 1%), the structure of what it writes (special tokens never
 * predicted, labels -100 exactly where nothing is predicted, rows never
 * longer than asked, the clean text recoverable), determinism from
 * (seed, index), and the errors that name their parameter. The measured
 * figures are printed. */
#include "harness.h"

#include "collate.h"
#include "collate_internal.h"
#include "models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the corpus */

enum { PAD = 0, UNK = 1, CLS = 2, SEP = 3, MASK = 4, BOS = 5, EOS = 6, FIRST_WORD = 10, V = 1000 };
/* ids in [CONT, V) are WordPiece "##" continuation pieces */
enum { CONT = 700 };

typedef struct {
    int32_t *tokens;
    int64_t *doc, *sent;
    int32_t *control;
    recipe_corpus c;
    uint8_t is_cont[V];
} corpus;

/* D documents of 1..14 sentences of 2..30 ids. A word is a start piece and
 * 0..2 "##" pieces, so whole-word masking has words to keep whole. */
static void make_corpus(corpus *k, int D, uint64_t seed) {
    int64_t cap = (int64_t)D * 14 * 30, n = 0, ns = 0;
    k->tokens = malloc((size_t)cap * sizeof *k->tokens);
    k->doc = malloc((size_t)(D + 1) * sizeof *k->doc);
    k->sent = malloc((size_t)(D * 14 + 1) * sizeof *k->sent);
    k->control = malloc((size_t)D * sizeof *k->control);
    uint64_t ctr = 0;
    for (int d = 0; d < D; ++d) {
        k->doc[d] = n;
        k->control[d] = 100 + d % 7;
        int S = 1 + (int)(ag_rng_u64(seed, ctr++) % 14);
        for (int s = 0; s < S; ++s) {
            k->sent[ns++] = n;
            int L = 2 + (int)(ag_rng_u64(seed, ctr++) % 29);
            for (int i = 0; i < L; ++i) {
                uint64_t u = ag_rng_u64(seed, ctr++);
                bool cont = i > 0 && u % 3 == 0;
                k->tokens[n++] = cont ? CONT + (int32_t)((u >> 8) % (V - CONT))
                                      : FIRST_WORD + (int32_t)((u >> 8) % (CONT - FIRST_WORD));
            }
        }
    }
    k->doc[D] = n;
    k->sent[ns] = n;
    for (int v = 0; v < V; ++v) k->is_cont[v] = v >= CONT;
    k->c = (recipe_corpus){k->tokens, n, k->doc, D, k->sent, ns, k->control};
}

static void free_corpus(corpus *k) { free(k->tokens), free(k->doc), free(k->sent), free(k->control); }

static recipe_collate_config config(void) {
    recipe_collate_config cfg;
    recipe_collate_defaults(&cfg, V);
    cfg.pad_id = PAD, cfg.cls_id = CLS, cfg.sep_id = SEP, cfg.mask_id = MASK, cfg.bos_id = BOS, cfg.eos_id = EOS;
    static const int32_t extra[] = {UNK};
    cfg.special_ids = extra, cfg.n_special = 1;
    return cfg;
}

static corpus K;

static int setup(void **state) {
    make_corpus(&K, 3000, 42);
    return 0;
}
static int teardown(void **state) {
    free_corpus(&K);
    return 0;
}

/* measured within rel of expected; prints the figure either way */
static void expect_rate(const char *what, double measured, double expected, double rel) {
    printf("  %-52s %.5f   (recipe %.5f, %+.2f%%)\n", what, measured, expected, 100 * (measured - expected) / expected);
    if (!(fabs(measured - expected) <= rel * expected)) fail_msg("%s: %.5f is not within %.0f%% of %.5f", what, measured, 100 * rel, expected);
}

static const ag_ints *field(const recipe_batch *b, const char *name) {
    const ag_ints *f = recipe_batch_get(b, name);
    if (!f) fail_msg("batch has no field %s", name);
    return f;
}

static bool batches_equal(const recipe_batch *a, const recipe_batch *b) {
    if (a->n != b->n) return false;
    for (int i = 0; i < a->n; ++i) {
        if (strcmp(a->name[i], b->name[i]) || a->field[i].numel != b->field[i].numel) return false;
        if (memcmp(a->field[i].data, b->field[i].data, (size_t)a->field[i].numel * sizeof(int32_t))) return false;
    }
    return true;
}

typedef ag_status (*collate_fn)(recipe_batch *, const recipe_corpus *, const recipe_collate_config *, int, int,
                                uint64_t, uint64_t);

/* Same (seed, index): the same batch; another index: another batch; rows do
 * not depend on B. */
static void check_determinism(const char *name, collate_fn f, const recipe_collate_config *cfg, int T) {
    recipe_batch a, b, c, small;
    assert_int_equal(f(&a, &K.c, cfg, 8, T, 7, 3), AG_OK);
    assert_int_equal(f(&b, &K.c, cfg, 8, T, 7, 3), AG_OK);
    assert_int_equal(f(&c, &K.c, cfg, 8, T, 7, 4), AG_OK);
    assert_int_equal(f(&small, &K.c, cfg, 3, T, 7, 3), AG_OK);
    assert_true(batches_equal(&a, &b));
    assert_false(batches_equal(&a, &c));
    for (int i = 0; i < small.n; ++i) {
        const ag_ints *big = field(&a, small.name[i]);
        const int64_t row = big->ndim == 2 ? big->shape[1] : 1;
        assert_memory_equal(small.field[i].data, big->data, (size_t)(3 * row) * sizeof(int32_t));
    }
    printf("  %-52s same (seed, index) -> same batch; rows independent of B\n", name);
    recipe_batch_free(&a), recipe_batch_free(&b), recipe_batch_free(&c), recipe_batch_free(&small);
}

/* ---------------------------------------------------------------- MLM statistics */

typedef struct {
    int64_t candidates, predicted, to_mask, to_random, kept;
} mlm_stats;

/* Over one batch: where labels != -100 the position was predicted, and the
 * label is the original id; specials and padding are never predicted; a
 * [MASK] in the input is always a predicted position. */
static void count_mlm(mlm_stats *s, const recipe_batch *b, const recipe_collate_config *cfg) {
    const ag_ints *ids = field(b, "input_ids"), *lab = field(b, "labels"), *att = field(b, "attention_mask");
    for (int64_t e = 0; e < ids->numel; ++e) {
        const int32_t x = ids->data[e], y = lab->data[e];
        if (!att->data[e]) {
            assert_int_equal(y, -100);
            assert_int_equal(x, cfg->pad_id);
            continue;
        }
        if (y == -100) {
            assert_int_not_equal(x, cfg->mask_id); /* nothing is masked without a label */
            if (!collate_is_special(cfg, x)) s->candidates++;
            continue;
        }
        assert_false(collate_is_special(cfg, y)); /* a special token is never a target */
        s->candidates++, s->predicted++;
        if (x == cfg->mask_id) s->to_mask++;
        else if (x == y) s->kept++;
        else s->to_random++;
    }
}

static void expect_80_10_10(const mlm_stats *s) {
    /* a random id equals the original with 1/V: that share counts as kept */
    expect_rate("  -> [MASK]", (double)s->to_mask / s->predicted, 0.8, 0.01);
    expect_rate("  -> random id (other than the original)", (double)s->to_random / s->predicted, 0.1 * (1 - 1.0 / V), 0.01);
    expect_rate("  -> unchanged", (double)s->kept / s->predicted, 0.1 + 0.1 / V, 0.01);
}

static void test_mlm(void **state) {
    recipe_collate_config cfg = config();
    mlm_stats s = {0};
    const int B = 64, T = 128;
    for (int it = 0; it < 600; ++it) {
        recipe_batch b;
        assert_int_equal(recipe_collate_mlm(&b, &K.c, &cfg, B, T, 1, (uint64_t)it), AG_OK);
        const ag_ints *ids = field(&b, "input_ids");
        assert_int_equal(ids->shape[0], B), assert_int_equal(ids->shape[1], T);
        for (int r = 0; r < B; ++r) assert_int_equal(ids->data[(int64_t)r * T], CLS);
        count_mlm(&s, &b, &cfg);
        recipe_batch_free(&b);
    }
    printf("mlm: %lld candidate tokens, %lld predicted\n", (long long)s.candidates, (long long)s.predicted);
    expect_rate("mask rate (predicted / non-special)", (double)s.predicted / s.candidates, 0.15, 0.01);
    expect_80_10_10(&s);

    /* the clean text (labels put back) is whole sentences of one document */
    recipe_batch b;
    assert_int_equal(recipe_collate_mlm(&b, &K.c, &cfg, 16, T, 1, 0), AG_OK);
    const ag_ints *ids = field(&b, "input_ids"), *lab = field(&b, "labels"), *att = field(&b, "attention_mask");
    for (int r = 0; r < 16; ++r) {
        int32_t clean[128];
        int n = 0;
        for (int t = 0; t < T && att->data[r * T + t]; ++t) {
            const int64_t e = (int64_t)r * T + t;
            clean[n++] = lab->data[e] != -100 ? lab->data[e] : ids->data[e];
        }
        assert_int_equal(clean[n - 1], SEP);
        bool found = false;
        for (int64_t s2 = 0; s2 < K.c.n_sents && !found; ++s2)
            found = memcmp(K.tokens + K.sent[s2], clean + 1, (size_t)(n - 2) * sizeof(int32_t)) == 0;
        assert_true(found);
    }
    recipe_batch_free(&b);
    check_determinism("mlm", recipe_collate_mlm, &cfg, 64);
}

static void test_whole_word_mask(void **state) {
    recipe_collate_config cfg = config();
    cfg.whole_word_mask = true;
    cfg.is_continuation = K.is_cont;
    mlm_stats s = {0};
    const int B = 64, T = 128;
    int64_t budget_sum = 0, words_split = 0, words = 0;
    for (int it = 0; it < 400; ++it) {
        recipe_batch b;
        assert_int_equal(recipe_collate_mlm(&b, &K.c, &cfg, B, T, 2, (uint64_t)it), AG_OK);
        count_mlm(&s, &b, &cfg);
        const ag_ints *ids = field(&b, "input_ids"), *lab = field(&b, "labels"), *att = field(&b, "attention_mask");
        for (int r = 0; r < B; ++r) {
            const int32_t *x = ids->data + (int64_t)r * T, *y = lab->data + (int64_t)r * T;
            int n = 0, predicted = 0;
            while (n < T && att->data[(int64_t)r * T + n]) ++n;
            /* the original id: the label where predicted */
            for (int t = 1; t < n - 1; ++t) {
                const int32_t orig = y[t] != -100 ? y[t] : x[t];
                predicted += y[t] != -100;
                if (!K.is_cont[orig]) { /* a word starts: its pieces share its fate */
                    words++;
                    for (int u = t + 1; u < n - 1; ++u) {
                        const int32_t o2 = y[u] != -100 ? y[u] : x[u];
                        if (!K.is_cont[o2]) break;
                        if ((y[u] != -100) != (y[t] != -100)) { words_split++; break; }
                    }
                }
            }
            int64_t budget = (int64_t)collate_round_half_even(n * 0.15);
            if (budget < 1) budget = 1;
            assert_true(predicted <= budget);
            budget_sum += budget;
        }
        recipe_batch_free(&b);
    }
    printf("whole-word mlm: %lld words, %lld split; %lld predicted of a budget of %lld\n", (long long)words,
           (long long)words_split, (long long)s.predicted, (long long)budget_sum);
    assert_int_equal(words_split, 0);
    /* HF's budget round(n * 0.15) counts [CLS]/[SEP]; whole words fill it
     * almost exactly (a word that would overflow is skipped) */
    expect_rate("predicted / budget round(0.15 n)", (double)s.predicted / budget_sum, 1.0, 0.01);
    expect_80_10_10(&s);
}

/* ---------------------------------------------------------------- pairs */

static void test_nsp_sop(void **state) {
    recipe_collate_config cfg = config();
    for (int sop = 0; sop <= 1; ++sop) {
        const int T = 128, N = 200000;
        int64_t multi = 0, multi_pos = 0, all_pos = 0, short_rows = 0, order_ok = 0, order_n = 0;
        for (int i = 0; i < N; ++i) {
            recipe_rng r = recipe_rng_example(5, (uint64_t)i, 0);
            const int32_t *a, *b;
            int64_t na, nb, nseg;
            int label;
            collate_pair_instance(&K.c, &cfg, T, sop, &r, &a, &na, &b, &nb, &label, &nseg);
            assert_true(na >= 1 && nb >= 1 && na + nb <= T - 3);
            all_pos += label;
            short_rows += na + nb < (T - 3) / 2;
            if (nseg >= 2) {
                multi++, multi_pos += label;
                if (sop) { /* swapped: B comes before A in the document */
                    order_n++;
                    order_ok += label ? b < a : a < b;
                }
            }
        }
        printf("%s: %d pairs, %lld of them chunks of >= 2 sentences\n", sop ? "sop" : "nsp", N, (long long)multi);
        expect_rate(sop ? "swap rate (chunks of >= 2 sentences)" : "random-next rate (chunks of >= 2 sentences)",
                    (double)multi_pos / multi, 0.5, 0.01);
        /* a one-sentence chunk always takes a random B, in both scripts */
        expect_rate(sop ? "label-1 rate overall (script: 0.5 + 0.5 P(1 sentence))" : "random-next rate overall (same rule)",
                    (double)all_pos / N, 0.5 + 0.5 * (double)(N - multi) / N, 0.01);
        printf("  %-52s %.4f\n", "rows shorter than half the target", (double)short_rows / N);
        if (sop) assert_int_equal(order_ok, order_n);
    }
    /* the batch: [CLS] A [SEP] B [SEP], token types, the label field */
    recipe_batch b;
    assert_int_equal(recipe_collate_nsp(&b, &K.c, &cfg, 32, 64, 9, 1), AG_OK);
    const ag_ints *ids = field(&b, "input_ids"), *ty = field(&b, "token_type_ids"), *att = field(&b, "attention_mask");
    const ag_ints *nsl = field(&b, "next_sentence_label");
    assert_int_equal(nsl->ndim, 1), assert_int_equal(nsl->shape[0], 32);
    for (int r = 0; r < 32; ++r) {
        const int32_t *x = ids->data + r * 64, *t = ty->data + r * 64;
        int n = 0, seps = 0;
        while (n < 64 && att->data[r * 64 + n]) ++n;
        assert_int_equal(x[0], CLS), assert_int_equal(x[n - 1], SEP);
        const int32_t *y = field(&b, "labels")->data + r * 64;
        for (int i = 0; i < n; ++i) { /* segment 0 through the first [SEP], 1 after */
            const int32_t orig = y[i] != -100 ? y[i] : x[i];
            assert_int_equal(t[i], seps >= 1);
            seps += orig == SEP;
        }
        assert_int_equal(seps, 2);
    }
    recipe_batch_free(&b);
    check_determinism("nsp", recipe_collate_nsp, &cfg, 64);
    check_determinism("sop", recipe_collate_sop, &cfg, 64);
    /* MLM over the pairs keeps the recipe (sop's own n-gram masking is
     * test_ngram_mask's; here BERT's token-level masking over the pairs) */
    mlm_stats s = {0};
    recipe_collate_config tok = cfg;
    tok.masking = RECIPE_MASK_TOKENS;
    for (int it = 0; it < 200; ++it) {
        assert_int_equal(recipe_collate_sop(&b, &K.c, &tok, 64, 128, 3, (uint64_t)it), AG_OK);
        assert_non_null(recipe_batch_get(&b, "sentence_order_label"));
        count_mlm(&s, &b, &tok);
        recipe_batch_free(&b);
    }
    expect_rate("sop with masking = tokens: mask rate", (double)s.predicted / s.candidates, 0.15, 0.01);
}

/* ---------------------------------------------------------------- ALBERT's n-grams */

/* Over batches of f (sop or mlm with n-gram masking, whole words): every row
 * predicts at most num_to_predict = min(max_predictions, max(1, round(0.15
 * n))) tokens and fills it almost exactly; no word is split; 80/10/10. */
static void ngram_batches(const char *name, collate_fn f, const recipe_collate_config *cfg, int batches) {
    const int B = 64, T = 128;
    mlm_stats s = {0};
    int64_t budget_sum = 0, words = 0, words_split = 0, words_masked = 0, rows_over = 0;
    for (int it = 0; it < batches; ++it) {
        recipe_batch b;
        assert_int_equal(f(&b, &K.c, cfg, B, T, 21, (uint64_t)it), AG_OK);
        count_mlm(&s, &b, cfg);
        const ag_ints *ids = field(&b, "input_ids"), *lab = field(&b, "labels"), *att = field(&b, "attention_mask");
        for (int r = 0; r < B; ++r) {
            const int32_t *x = ids->data + (int64_t)r * T, *y = lab->data + (int64_t)r * T;
            int n = 0, predicted = 0;
            while (n < T && att->data[(int64_t)r * T + n]) ++n;
            for (int t = 0; t < n; ++t) {
                const int32_t orig = y[t] != -100 ? y[t] : x[t];
                predicted += y[t] != -100;
                if (collate_is_special(cfg, orig) || K.is_cont[orig]) continue;
                /* a word starts at t: its "##" pieces right after it share its fate */
                words++, words_masked += y[t] != -100;
                for (int u = t + 1; u < n; ++u) {
                    const int32_t o2 = y[u] != -100 ? y[u] : x[u];
                    if (!K.is_cont[o2]) break;
                    if ((y[u] != -100) != (y[t] != -100)) { words_split++; break; }
                }
            }
            int64_t budget = (int64_t)collate_round_half_even(n * 0.15);
            if (budget < 1) budget = 1;
            if (budget > cfg->max_predictions) budget = cfg->max_predictions;
            rows_over += predicted > budget;
            budget_sum += budget;
        }
        recipe_batch_free(&b);
    }
    printf("%s: %lld words, %lld masked, %lld split; %lld predicted of a budget of %lld; %lld rows over budget\n", name,
           (long long)words, (long long)words_masked, (long long)words_split, (long long)s.predicted,
           (long long)budget_sum, (long long)rows_over);
    assert_int_equal(words_split, 0);
    assert_int_equal(rows_over, 0);
    expect_rate("predicted / num_to_predict = round(0.15 n)", (double)s.predicted / budget_sum, 1.0, 0.01);
    expect_80_10_10(&s);
}

static void test_ngram_mask(void **state) {
    recipe_collate_config cfg = config();
    cfg.whole_word_mask = true, cfg.is_continuation = K.is_cont; /* ALBERT's do_whole_word_mask */
    assert_int_equal(cfg.masking, RECIPE_MASK_DEFAULT);
    assert_int_equal(cfg.max_ngram, 3);
    ngram_batches("sop (n-gram masking by default)", recipe_collate_sop, &cfg, 300);
    recipe_collate_config mlm = cfg;
    mlm.masking = RECIPE_MASK_NGRAM;
    ngram_batches("mlm with masking = ngram", recipe_collate_mlm, &mlm, 300);
    check_determinism("sop (n-grams)", recipe_collate_sop, &cfg, 64);
    check_determinism("mlm (n-grams)", recipe_collate_mlm, &mlm, 64);

    /* The n-gram lengths, counted inside the masker (collate_ngram_row's
     * grams): drawn where the start has room for every length, P(n) = 1/n
     * normalised; and the n-grams actually masked, which the budget (a long
     * one that would pass it is shortened) and the overlap rule (a long one
     * touches a taken position more often) make shorter. Rows: whole
     * sentences of T - 2 ids between [CLS] and [SEP], as the collators pack. */
    for (int unit = 0; unit <= 1; ++unit) {
        recipe_collate_config c = cfg;
        c.whole_word_mask = unit == 1;
        int64_t grams[8] = {0}, scratch[3 * 128];
        int32_t row[128], labels[128];
        for (int it = 0; it < 200000; ++it) {
            recipe_rng r = recipe_rng_example(22, (uint64_t)it, unit);
            const int64_t d = collate_random_doc(&K.c, &r);
            int64_t s0, s1;
            collate_doc_sentences(&K.c, d, &s0, &s1);
            int64_t n = collate_pack_sentences(&K.c, d, recipe_rng_int(&r, s0, s1 - 1), 126, row + 1);
            row[0] = CLS, row[n + 1] = SEP, n += 2;
            collate_ngram_row(row, labels, n, &c, &r, scratch, grams);
        }
        const double drawn = (double)(grams[1] + grams[2] + grams[3]), kept = (double)(grams[5] + grams[6] + grams[7]);
        printf("n-grams of %s: %.0f drawn with room, %.0f masked\n", unit ? "whole words" : "pieces", drawn, kept);
        expect_rate("  drawn n = 1 (6/11)", grams[1] / drawn, 6.0 / 11, 0.01);
        expect_rate("  drawn n = 2 (3/11)", grams[2] / drawn, 3.0 / 11, 0.01);
        expect_rate("  drawn n = 3 (2/11)", grams[3] / drawn, 2.0 / 11, 0.01);
        printf("  %-52s %.4f %.4f %.4f\n", "masked n-grams of 1, 2, 3 units", grams[5] / kept, grams[6] / kept,
               grams[7] / kept);
        assert_true(grams[5] > grams[6] && grams[6] > grams[7] && grams[7] > 0);
    }
}

/* ---------------------------------------------------------------- ELECTRA */

static void test_electra(void **state) {
    recipe_collate_config cfg = config();
    const int B = 32, T = 128;
    double expected = 0;
    int64_t predicted = 0, masked = 0, cand_total = 0;
    for (int it = 0; it < 300; ++it) {
        recipe_batch b;
        assert_int_equal(recipe_collate_electra(&b, &K.c, &cfg, B, T, 4, (uint64_t)it), AG_OK);
        const ag_ints *ids = field(&b, "input_ids"), *lab = field(&b, "labels"), *att = field(&b, "attention_mask");
        for (int r = 0; r < B; ++r) {
            int n = 0, cand = 0;
            for (int t = 0; t < T; ++t) {
                const int64_t e = (int64_t)r * T + t;
                if (!att->data[e]) { assert_int_equal(lab->data[e], -100); continue; }
                ++n;
                const int32_t orig = lab->data[e] != -100 ? lab->data[e] : ids->data[e];
                if (collate_is_special(&cfg, orig)) { assert_int_equal(lab->data[e], -100); continue; }
                ++cand;
                if (lab->data[e] != -100) {
                    predicted++;
                    if (ids->data[e] == MASK) masked++;
                    else assert_int_equal(ids->data[e], lab->data[e]); /* no random replacement in ELECTRA */
                }
            }
            /* k draws with replacement among cand: E[distinct] = cand (1 - (1 - 1/cand)^k) */
            double k = collate_round_half_even(n * 0.15);
            if (k < 1) k = 1;
            expected += cand * (1 - pow(1 - 1.0 / cand, k));
            cand_total += cand;
        }
        recipe_batch_free(&b);
    }
    printf("electra generator: %lld candidates, %lld predicted\n", (long long)cand_total, (long long)predicted);
    expect_rate("predicted positions (vs k draws with replacement)", (double)predicted / expected, 1.0, 0.01);
    expect_rate("predicted / candidates", (double)predicted / cand_total, expected / cand_total, 0.01);
    expect_rate("-> [MASK] (ELECTRA: 85%, the rest unchanged)", (double)masked / predicted, 0.85, 0.01);

    /* The discriminator: logits over 16 ids favour id 3 (p = 1/2), the others
     * 1/30 each. Sampled ids follow softmax(logits); labels = 1 exactly where
     * the sampled id differs from the original. */
    const int64_t Vs = 16;
    float *logits = malloc((size_t)(B * T * Vs) * sizeof(float));
    for (int64_t e = 0; e < B * T; ++e)
        for (int64_t v = 0; v < Vs; ++v) logits[e * Vs + v] = v == 3 ? logf(0.5f) : logf(1.0f / 30.0f);
    int64_t n_sampled = 0, n_three = 0;
    for (int it = 0; it < 200; ++it) {
        recipe_batch g, d;
        assert_int_equal(recipe_collate_electra(&g, &K.c, &cfg, B, T, 4, (uint64_t)it), AG_OK);
        assert_int_equal(recipe_electra_discriminator(&d, &g, logits, Vs, 1.0f, 4, (uint64_t)it), AG_OK);
        const ag_ints *gl = field(&g, "labels"), *gi = field(&g, "input_ids"), *di = field(&d, "input_ids"),
                      *dl = field(&d, "labels");
        for (int64_t e = 0; e < B * T; ++e) {
            if (gl->data[e] == -100) {
                assert_int_equal(di->data[e], gi->data[e]);
                assert_int_equal(dl->data[e], 0);
                continue;
            }
            n_sampled++, n_three += di->data[e] == 3;
            assert_int_equal(dl->data[e], di->data[e] != gl->data[e]);
        }
        recipe_batch_free(&g), recipe_batch_free(&d);
    }
    printf("electra discriminator: %lld sampled positions\n", (long long)n_sampled);
    expect_rate("Gumbel-max sample = the id of p 1/2", (double)n_three / n_sampled, 0.5, 0.01);
    free(logits);
    check_determinism("electra", recipe_collate_electra, &cfg, 64);
}

/* ---------------------------------------------------------------- T5 */

static void test_span(void **state) {
    int L, TT;
    assert_int_equal(recipe_t5_lengths(512, 0.15f, 3.0f, &L, &TT), AG_OK);
    printf("t5 lengths for inputs 512: tokens %d, targets %d (Hugging Face's run_t5_mlm_flax: 568, 114)\n", L, TT);
    assert_int_equal(L, 568), assert_int_equal(TT, 114);
    /* compute_input_and_target_lengths run in Python (tests/fixtures/collate/t5_lengths.py) */
    static const int want[][5] = {{8, 8, 2, 10, 8},          {16, 17, 5, 20, 16},     {32, 34, 8, 42, 32},
                                  {64, 70, 14, 84, 64},      {100, 110, 22, 132, 100}, {128, 141, 29, 170, 128},
                                  {256, 284, 58, 340, 256},  {384, 426, 86, 510, 384}, {512, 568, 114, 682, 512},
                                  {1024, 1137, 229, 1364, 1024}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; ++i) {
        assert_int_equal(recipe_t5_lengths(want[i][0], 0.15f, 3.0f, &L, &TT), AG_OK);
        assert_int_equal(L, want[i][1]), assert_int_equal(TT, want[i][2]);
        assert_int_equal(recipe_t5_lengths(want[i][0], 0.5f, 2.0f, &L, &TT), AG_OK); /* density 0.5's correction */
        assert_int_equal(L, want[i][3]), assert_int_equal(TT, want[i][4]);
    }
    printf("t5 lengths equal the Python reference's for 10 input lengths at (0.15, 3) and (0.5, 2)\n");

    /* sentinels above the corpus's ids, as T5's <extra_id_k> are above its pieces */
    recipe_collate_config cfg = config();
    cfg.vocab_size = V + 100;
    cfg.sentinel_first = V + 99;
    for (int T = 64; T <= 512; T *= 2) {
        assert_int_equal(recipe_t5_lengths(T, 0.15f, 3.0f, &L, &TT), AG_OK);
        const int B = 16;
        int64_t noise = 0, spans = 0;
        /* T5's counts for this window: round() is numpy's, half to even */
        const int want_noise = (int)collate_round_half_even(L * 0.15);
        const int want_spans = (int)collate_round_half_even(want_noise / 3.0);
        for (int it = 0; it < 30; ++it) {
            recipe_batch b;
            assert_int_equal(recipe_collate_span(&b, &K.c, &cfg, B, T, 6, (uint64_t)it), AG_OK);
            const ag_ints *ids = field(&b, "input_ids"), *lab = field(&b, "labels"), *att = field(&b, "attention_mask");
            assert_int_equal(ids->shape[1], T), assert_int_equal(lab->shape[1], TT);
            for (int r = 0; r < B; ++r) {
                const int32_t *x = ids->data + (int64_t)r * T, *y = lab->data + (int64_t)r * TT;
                /* T5's lengths are exact: every input is T long, every target TT */
                for (int t = 0; t < T; ++t) assert_int_equal(att->data[(int64_t)r * T + t], 1);
                assert_int_equal(x[T - 1], EOS), assert_int_equal(y[TT - 1], EOS);
                assert_true(x[0] < V); /* starts with a non-noise span */
                /* rebuild the window: each sentinel in x is replaced by its span from y */
                int32_t w[1024];
                int n = 0, j = 0, k = 0, row_noise = 0;
                for (int t = 0; t < T - 1; ++t) {
                    if (x[t] > V - 1) {
                        assert_int_equal(x[t], cfg.sentinel_first - k); /* descending sentinels */
                        assert_int_equal(y[j], x[t]);
                        ++j, ++k;
                        while (y[j] <= V - 1 && y[j] != EOS) w[n++] = y[j++], ++row_noise;
                    } else {
                        w[n++] = x[t];
                    }
                }
                assert_int_equal(n, L);
                assert_int_equal(row_noise, want_noise), assert_int_equal(k, want_spans);
                noise += row_noise, spans += k;
                /* it is a chunk of the corpus, as group_texts cuts it */
                bool found = false;
                for (int64_t c0 = 0; c0 + L <= K.c.n_tokens && !found; c0 += L)
                    found = memcmp(K.tokens + c0, w, (size_t)L * sizeof *w) == 0;
                assert_true(found);
            }
            recipe_batch_free(&b);
        }
        printf("  inputs %3d: window %3d, targets %3d, noise density %.4f, mean span %.3f (T5's rounding)\n", T, L, TT,
               (double)noise / ((double)L * 30 * B), (double)noise / spans);
    }
    /* The segmentation itself, on windows of 1000 (150 noise tokens in 50
     * spans): the mean span is 3, and a random composition of N into k
     * non-empty parts has a part of length 1 with probability (k-1)/(N-1). */
    uint8_t mask[1000];
    int64_t n_spans = 0, ones = 0, noise_tokens = 0, hist[8] = {0};
    for (int it = 0; it < 2000; ++it) {
        recipe_rng q = recipe_rng_example(16, (uint64_t)it, 0);
        recipe_t5_noise_mask(mask, 1000, 0.15f, 3.0f, &q);
        assert_int_equal(mask[0], 0);
        for (int t = 0; t < 1000;) {
            int run = 0;
            const uint8_t v = mask[t];
            while (t < 1000 && mask[t] == v) ++t, ++run;
            if (v) n_spans++, noise_tokens += run, ones += run == 1, hist[run < 7 ? run : 7]++;
        }
    }
    printf("t5 random_spans_noise_mask on 2000 windows of 1000: %lld spans; lengths 1..7+:", (long long)n_spans);
    for (int l = 1; l <= 7; ++l) printf(" %lld", (long long)hist[l]);
    printf("\n");
    assert_int_equal(n_spans, 2000 * 50);
    expect_rate("noise density", noise_tokens / 2.0e6, 0.15, 0.01);
    expect_rate("mean noise span length", (double)noise_tokens / n_spans, 3.0, 0.01);
    expect_rate("P(span of length 1) = (k-1)/(N-1)", (double)ones / n_spans, 49.0 / 149.0, 0.01);
    check_determinism("span", recipe_collate_span, &cfg, 64);
}

/* ---------------------------------------------------------------- BART */

static void test_denoise(void **state) {
    recipe_collate_config cfg = config();
    /* Poisson(3) span lengths: the mean over many spans (the last, cut to
     * the budget, left out) */
    recipe_rng pr = recipe_rng_example(8, 0, 0);
    const int64_t budget = 1000000;
    int64_t *len = malloc((size_t)budget * sizeof *len);
    const int64_t n_spans = recipe_denoise_span_lengths(len, budget, budget, 3.0f, &pr);
    int64_t sum = 0, zeros = 0;
    for (int64_t i = 0; i < n_spans - 1; ++i) sum += len[i], zeros += len[i] == 0;
    printf("denoise: %lld Poisson spans\n", (long long)n_spans);
    expect_rate("span length mean (Poisson lambda 3)", (double)sum / (n_spans - 1), 3.0, 0.01);
    expect_rate("zero-length spans (inserts), P(0) = e^-3", (double)zeros / (n_spans - 1), exp(-3.0), 0.02);
    sum = 0;
    for (int64_t i = 0; i < n_spans; ++i) sum += len[i];
    assert_int_equal(sum, budget);
    free(len);

    /* Infilling alone on rows of 200..999 inner tokens between <bos> and
     * <eos>: the 30% budget, and what the overlapping spans actually cover */
    recipe_collate_config inf = cfg;
    inf.permute_sentence_ratio = 0, inf.random_ratio = 0;
    enum { ROW = 1001 };
    int32_t *src = malloc(ROW * sizeof *src), *dst = malloc((4 * ROW + 8) * sizeof *dst);
    uint8_t *covered = malloc(ROW);
    int64_t cov = 0, inner = 0, masks = 0, out_len = 0, budget_sum = 0;
    const int ROWS = 3000;
    for (int it = 0; it < ROWS; ++it) {
        recipe_rng q = recipe_rng_example(9, (uint64_t)it, 0);
        const int n = 202 + it % 800;
        src[0] = BOS, src[n - 1] = EOS;
        for (int i = 1; i < n - 1; ++i) src[i] = FIRST_WORD + (it * 7 + i) % 500;
        int64_t sent0 = 1;
        const int64_t m = recipe_denoise_row(dst, src, n, &sent0, 1, &inf, &q, covered);
        assert_int_equal(dst[0], BOS), assert_int_equal(dst[m - 1], EOS);
        /* the kept tokens are the source's, in order; what was skipped was covered */
        int j = 1;
        for (int64_t t = 1; t < m - 1; ++t) {
            if (dst[t] == MASK) { masks++; continue; }
            while (j < n - 1 && src[j] != dst[t]) assert_true(covered[j++]);
            assert_true(j < n - 1);
            assert_false(covered[j]);
            ++j;
        }
        for (int i = 1; i < n - 1; ++i) cov += covered[i];
        assert_false(covered[0] || covered[n - 1]);
        inner += n - 2, out_len += m;
        budget_sum += (int64_t)ceilf((float)(n - 2) * 0.3f);
    }
    printf("denoise infilling, %d rows of 200..999 tokens:\n", ROWS);
    expect_rate("infilling budget ceil(0.3 n) / n", (double)budget_sum / inner, 0.3, 0.01);
    printf("  %-52s %.4f (spans overlap and stop at <eos>)\n", "tokens covered by a span", (double)cov / inner);
    printf("  %-52s %.3f\n", "noised length / clean length", (double)out_len / (inner + 2 * ROWS));
    printf("  %-52s %.2f\n", "[MASK]s per 100 tokens", 100.0 * masks / inner);
    printf("  %-52s %lld (fairseq computes it in float32)\n", "budget for 100 tokens: ceil(100 * 0.3f)",
           (long long)ceilf(100 * 0.3f));

    /* Token deletion alone: exactly ceil(0.1 n) of the inner tokens go */
    recipe_collate_config del = cfg;
    del.permute_sentence_ratio = 0, del.mask_ratio = 0, del.delete_ratio = 0.1f;
    int64_t deleted = 0, seen = 0;
    for (int it = 0; it < 2000; ++it) {
        recipe_rng q = recipe_rng_example(10, (uint64_t)it, 0);
        const int n = 502 + it % 499;
        src[0] = BOS, src[n - 1] = EOS;
        for (int i = 1; i < n - 1; ++i) src[i] = FIRST_WORD + i;
        int64_t sent0 = 1;
        const int64_t m = recipe_denoise_row(dst, src, n, &sent0, 1, &del, &q, covered);
        for (int64_t t = 2; t < m - 1; ++t) assert_true(dst[t] > dst[t - 1]); /* order kept */
        deleted += n - m, seen += n - 2;
        assert_int_equal(n - m, (int64_t)ceilf((float)(n - 2) * 0.1f));
    }
    expect_rate("deletion rate", (double)deleted / seen, 0.1, 0.01);

    /* Sentence permutation alone keeps every sentence whole; rotation alone is a rotation */
    recipe_collate_config per = cfg;
    per.mask_ratio = 0;
    int64_t moved = 0;
    for (int it = 0; it < 500; ++it) {
        recipe_rng q = recipe_rng_example(11, (uint64_t)it, 0);
        /* 5 sentences of 4: ids 10+4s .. */
        src[0] = BOS, src[21] = EOS;
        int64_t sents[5];
        for (int s = 0; s < 5; ++s) {
            sents[s] = 1 + 4 * s;
            for (int i = 0; i < 4; ++i) src[1 + 4 * s + i] = FIRST_WORD + 4 * s + i;
        }
        const int64_t m = recipe_denoise_row(dst, src, 22, sents, 5, &per, &q, NULL);
        assert_int_equal(m, 22);
        for (int s = 0; s < 5; ++s) {
            const int32_t first = dst[1 + 4 * s];
            assert_int_equal((first - FIRST_WORD) % 4, 0);
            for (int i = 1; i < 4; ++i) assert_int_equal(dst[1 + 4 * s + i], first + i);
            moved += first != src[1 + 4 * s];
        }
    }
    printf("  %-52s %.3f (a random permutation of 5 leaves 1 in place on average)\n", "sentences moved by permutation",
           (double)moved / 2500);
    recipe_collate_config rot = cfg;
    rot.mask_ratio = 0, rot.permute_sentence_ratio = 0, rot.rotate_ratio = 1;
    for (int it = 0; it < 100; ++it) {
        recipe_rng q = recipe_rng_example(12, (uint64_t)it, 0);
        for (int i = 1; i < 21; ++i) src[i] = FIRST_WORD + i;
        int64_t sent0 = 1;
        const int64_t m = recipe_denoise_row(dst, src, 22, &sent0, 1, &rot, &q, NULL);
        assert_int_equal(m, 22);
        assert_int_equal(dst[0], BOS), assert_int_equal(dst[21], EOS);
        for (int i = 2; i < 21; ++i) assert_true(dst[i] == dst[i - 1] + 1 || (dst[i - 1] == FIRST_WORD + 20 && dst[i] == FIRST_WORD + 1));
    }

    /* Every noise at its most (lambda 0.5: most spans are zero-length inserts)
     * stays inside the promised 4n + 8 and keeps <bos> ... <eos> */
    recipe_collate_config most = cfg;
    most.mask_ratio = 1, most.insert_ratio = 1, most.delete_ratio = 0.5f, most.rotate_ratio = 1, most.poisson_lambda = 0.5f;
    for (int it = 0; it < 3000; ++it) {
        recipe_rng q = recipe_rng_example(17, (uint64_t)it, 0);
        const int n = 2 + it % 60;
        src[0] = BOS, src[n - 1] = EOS;
        for (int i = 1; i < n - 1; ++i) src[i] = FIRST_WORD + i;
        int64_t sents[3] = {1, 1 + (n - 2) / 3, 1 + 2 * (n - 2) / 3};
        const int64_t m = recipe_denoise_row(dst, src, n, sents, n >= 5 ? 3 : 1, &most, &q, covered);
        assert_true(m >= 2 && m <= 4 * n + 8);
        assert_int_equal(dst[0], BOS), assert_int_equal(dst[m - 1], EOS);
    }

    /* The batch: labels the clean <bos> ... <eos>, inputs never longer than T */
    recipe_collate_config all = cfg;
    all.delete_ratio = 0.1f, all.insert_ratio = 0.1f, all.rotate_ratio = 0.5f;
    for (int it = 0; it < 50; ++it) {
        recipe_batch b;
        assert_int_equal(recipe_collate_denoise(&b, &K.c, &all, 16, 64, 13, (uint64_t)it), AG_OK);
        const ag_ints *ids = field(&b, "input_ids"), *lab = field(&b, "labels"), *att = field(&b, "attention_mask");
        assert_int_equal(ids->shape[1], 64), assert_int_equal(lab->shape[1], 64);
        for (int row = 0; row < 16; ++row) {
            const int r = row;
            int n = 0, nl = 0;
            while (n < 64 && att->data[r * 64 + n]) ++n;
            while (nl < 64 && lab->data[r * 64 + nl] != -100) ++nl;
            assert_int_equal(ids->data[r * 64], BOS), assert_int_equal(ids->data[r * 64 + n - 1], EOS);
            assert_int_equal(lab->data[r * 64], BOS), assert_int_equal(lab->data[r * 64 + nl - 1], EOS);
            for (int t = n; t < 64; ++t) assert_int_equal(ids->data[r * 64 + t], PAD);
        }
        recipe_batch_free(&b);
    }
    check_determinism("denoise", recipe_collate_denoise, &all, 64);
    free(src), free(dst), free(covered);
}

/* ---------------------------------------------------------------- XLM, CTRL */

static void test_tlm(void **state) {
    recipe_collate_config cfg = config();
    /* parallel pairs: the target is the source shifted into another id range */
    enum { P = 2000 };
    int64_t ss[P + 1], ts[P + 1];
    int32_t *src = malloc(P * 40 * sizeof *src), *tgt = malloc(P * 40 * sizeof *tgt);
    ss[0] = ts[0] = 0;
    for (int i = 0; i < P; ++i) {
        const int n = 3 + i % 37, m = 2 + (i * 7) % 38;
        for (int k = 0; k < n; ++k) src[ss[i] + k] = FIRST_WORD + (i + k) % 300;
        for (int k = 0; k < m; ++k) tgt[ts[i] + k] = 400 + (i + k) % 300;
        ss[i + 1] = ss[i] + n, ts[i + 1] = ts[i] + m;
    }
    recipe_parallel p = {src, tgt, ss, ts, P, 1, 2};
    mlm_stats s = {0};
    const int B = 32, T = 64;
    for (int it = 0; it < 1000; ++it) {
        recipe_batch b;
        assert_int_equal(recipe_collate_tlm(&b, &p, &cfg, B, T, 14, (uint64_t)it), AG_OK);
        count_mlm(&s, &b, &cfg);
        const ag_ints *ids = field(&b, "input_ids"), *lab = field(&b, "labels"), *lg = field(&b, "langs"),
                      *pos = field(&b, "position_ids"), *att = field(&b, "attention_mask");
        for (int r = 0; r < B; ++r) {
            const int32_t *x = ids->data + r * T;
            int n = 0, eos_at[4] = {-1, -1, -1, -1}, ne = 0;
            while (n < T && att->data[r * T + n]) ++n;
            for (int t = 0; t < n; ++t) {
                const int32_t orig = lab->data[r * T + t] != -100 ? lab->data[r * T + t] : x[t];
                if (orig == EOS) { assert_true(ne < 4); eos_at[ne++] = t; }
            }
            assert_int_equal(ne, 4);
            assert_int_equal(eos_at[0], 0), assert_int_equal(eos_at[2], eos_at[1] + 1), assert_int_equal(eos_at[3], n - 1);
            for (int t = 0; t < n; ++t) {
                const bool second = t > eos_at[1];
                assert_int_equal(lg->data[r * T + t], second ? 2 : 1);
                assert_int_equal(pos->data[r * T + t], second ? t - eos_at[2] : t);
                /* the clean token is from its own language's range */
                const int32_t orig = lab->data[r * T + t] != -100 ? lab->data[r * T + t] : x[t];
                if (orig != EOS) assert_true(second ? orig >= 400 : orig < 400);
            }
        }
        recipe_batch_free(&b);
    }
    printf("tlm: %lld candidates, %lld predicted\n", (long long)s.candidates, (long long)s.predicted);
    expect_rate("mask rate over both sentences", (double)s.predicted / s.candidates, 0.15, 0.01);
    expect_80_10_10(&s);
    recipe_batch a, c;
    assert_int_equal(recipe_collate_tlm(&a, &p, &cfg, 8, T, 3, 5), AG_OK);
    assert_int_equal(recipe_collate_tlm(&c, &p, &cfg, 8, T, 3, 5), AG_OK);
    assert_true(batches_equal(&a, &c));
    recipe_batch_free(&a), recipe_batch_free(&c);
    free(src), free(tgt);
}

static void test_ctrl(void **state) {
    recipe_collate_config cfg = config();
    recipe_batch b;
    const int B = 64, T = 48;
    assert_int_equal(recipe_collate_ctrl(&b, &K.c, &cfg, B, T, 15, 0), AG_OK);
    const ag_ints *ids = field(&b, "input_ids"), *lab = field(&b, "labels"), *att = field(&b, "attention_mask");
    for (int r = 0; r < B; ++r) {
        const int32_t *x = ids->data + r * T;
        assert_true(x[0] >= 100 && x[0] < 107);
        /* the rest is a chunk of a document whose control code is x[0] */
        int n = 0;
        while (n < T && att->data[r * T + n]) ++n;
        bool found = false;
        for (int64_t d = 0; d < K.c.n_docs && !found; ++d) {
            if (K.control[d] != x[0]) continue;
            for (int64_t from = K.doc[d]; from + n - 1 <= K.doc[d + 1] && !found; from += T - 1)
                found = memcmp(K.tokens + from, x + 1, (size_t)(n - 1) * sizeof *x) == 0;
        }
        assert_true(found);
        for (int t = 0; t < T; ++t) assert_int_equal(lab->data[r * T + t], t < n ? x[t] : -100);
    }
    recipe_batch_free(&b);
    check_determinism("ctrl", recipe_collate_ctrl, &cfg, 48);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void **state) {
    recipe_collate_config cfg = config();
    recipe_batch b;
    cfg.mask_id = -1;
    assert_int_equal(recipe_collate_mlm(&b, &K.c, &cfg, 2, 16, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "mask_id"));
    assert_int_equal(b.n, 0);
    cfg = config();
    cfg.whole_word_mask = true;
    assert_int_equal(recipe_collate_mlm(&b, &K.c, &cfg, 2, 16, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "is_continuation"));
    cfg = config();
    cfg.mlm_probability = 1.5f;
    assert_int_equal(recipe_collate_nsp(&b, &K.c, &cfg, 2, 16, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "mlm_probability"));
    cfg = config();
    cfg.max_ngram = 0; /* sop's default n-gram masking needs n-grams of at least 1 */
    assert_int_equal(recipe_collate_sop(&b, &K.c, &cfg, 2, 16, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "max_ngram = 0"));
    cfg.masking = RECIPE_MASK_TOKENS; /* BERT's masking does not read it */
    assert_int_equal(recipe_collate_sop(&b, &K.c, &cfg, 2, 16, 0, 0), AG_OK);
    recipe_batch_free(&b);
    cfg = config();
    cfg.masking = RECIPE_MASK_SMOOTHED;
    assert_int_equal(recipe_collate_mlm(&b, &K.c, &cfg, 2, 16, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "token_counts is NULL"));
    assert_int_equal(recipe_collate_nsp(&b, &K.c, &cfg, 2, 16, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "only the mlm collator"));
    cfg = config();
    recipe_corpus bad = K.c;
    int64_t docs[3] = {0, 50, 40};
    bad.doc_start = docs, bad.n_docs = 2;
    assert_int_equal(recipe_collate_sop(&b, &bad, &cfg, 2, 16, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "doc_start[2]"));
    int32_t toks[4] = {10, 11, 5000, 12}, fine[4] = {10, 11, 12, 13};
    int64_t d1[2] = {0, 4};
    recipe_corpus oov = {toks, 4, d1, 1, NULL, 0, NULL}, tiny = {fine, 4, d1, 1, NULL, 0, NULL};
    assert_int_equal(recipe_collate_denoise(&b, &oov, &cfg, 2, 16, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "tokens[2]"));
    assert_int_equal(recipe_collate_ctrl(&b, &K.c, &cfg, 2, 1, 0, 0), AG_ERR_ARG);
    recipe_corpus noctl = K.c;
    noctl.doc_control = NULL;
    assert_int_equal(recipe_collate_ctrl(&b, &noctl, &cfg, 2, 16, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "doc_control"));
    assert_int_equal(recipe_collate_span(&b, &tiny, &cfg, 2, 512, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "corpus has 4 tokens"));
    int L, TT;
    /* T = 8: the window of 8 has round(1.2) = 1 noise token in round(1/3) = 0
     * spans by the length formula, but the mask makes one span: 9 inputs */
    assert_int_equal(recipe_collate_span(&b, &K.c, &cfg, 2, 8, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "corrupts to 9 inputs"));
    assert_int_equal(recipe_t5_lengths(512, 0.0f, 3.0f, &L, &TT), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "noise_density"));
}


/* ---------------------------------------------------------------- into the models */

/* Each batch goes into the model family that trains on it (the tiny configs
 * of the model tests, freshly initialised) and gives a finite loss near
 * ln V, the loss of a model that knows nothing (BertForPreTraining: ln V +
 * ln 2 for the two heads). */
static double model_loss(const char *dir, const recipe_batch *b) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/config.json", FIXTURE_DIR, dir);
    recipe_model m;
    if (recipe_model_declare(&m, path, NULL) != AG_OK) fail_msg("%s", ag_error());
    assert_int_equal(recipe_model_alloc(&m, 1), AG_OK);
    ag_ctx *ctx = ag_ctx_create(0);
    int64_t tokens = 0;
    ag_tensor *loss = recipe_model_loss(ctx, &m, b, &tokens);
    if (!loss) fail_msg("%s: %s", dir, ag_error());
    const double v = loss->data[0];
    ag_ctx_free(ctx);
    recipe_model_free(&m);
    return v;
}

static void test_models_take_batches(void **state) {
    /* 60 documents of 1..6 sentences of ids in [5, 40) */
    enum { D = 60 };
    int32_t toks[D * 6 * 12];
    int64_t docs[D + 1], sents[D * 6 + 1], n = 0, ns = 0;
    for (int d = 0; d < D; ++d) {
        docs[d] = n;
        for (int s = 0; s < 1 + d % 6; ++s) {
            sents[ns++] = n;
            for (int i = 0; i < 2 + (d + s) % 10; ++i) toks[n] = 5 + (int32_t)(ag_rng_u64(3, (uint64_t)n) % 35), ++n;
        }
    }
    docs[D] = n, sents[ns] = n;
    const recipe_corpus c = {toks, n, docs, D, sents, ns, NULL};
    recipe_collate_config cfg;
    recipe_batch b;
    const int B = 4, T = 16;
    double l;

    recipe_collate_defaults(&cfg, 40); /* BERT's ids: [PAD] 0, [CLS] 2, [SEP] 3, [MASK] 4 */
    cfg.pad_id = 0, cfg.cls_id = 2, cfg.sep_id = 3, cfg.mask_id = 4;
    assert_int_equal(recipe_collate_nsp(&b, &c, &cfg, B, T, 1, 0), AG_OK);
    printf("  %-52s %.4f (ln 40 = %.4f)\n", "BertForPreTraining on nsp (MLM + NSP)", l = model_loss("bert/bert_pretraining", &b), log(40.0));
    assert_true(isfinite(l) && l > 0.5 * log(40.0) && l < 2.5 * log(40.0));
    recipe_batch_free(&b);
    assert_int_equal(recipe_collate_sop(&b, &c, &cfg, B, T, 1, 0), AG_OK);
    printf("  %-52s %.4f\n", "AlbertForPreTraining on sop (MLM + SOP)", l = model_loss("albert_electra/albert_pretraining", &b));
    assert_true(isfinite(l) && l > 0.5 * log(40.0) && l < 2.5 * log(40.0));
    recipe_batch_free(&b);

    recipe_batch g;
    assert_int_equal(recipe_collate_electra(&g, &c, &cfg, B, T, 1, 0), AG_OK);
    float logits[4 * 16 * 40];
    for (int i = 0; i < B * T * 40; ++i) logits[i] = 2.0f * ag_rng_uniform(5, (uint64_t)i);
    assert_int_equal(recipe_electra_discriminator(&b, &g, logits, 40, 1.0f, 1, 0), AG_OK);
    printf("  %-52s %.4f (ln 2 = %.4f)\n", "ElectraForPreTraining on electra's discriminator batch",
           l = model_loss("albert_electra/electra_discriminator", &b), log(2.0));
    assert_true(isfinite(l) && l > 0.3 && l < 1.5);
    recipe_batch_free(&b), recipe_batch_free(&g);

    cfg.pad_id = 1, cfg.cls_id = 0, cfg.sep_id = 2, cfg.mask_id = 3; /* RoBERTa's <s> <pad> </s> <mask> */
    assert_int_equal(recipe_collate_mlm(&b, &c, &cfg, B, T, 1, 0), AG_OK);
    printf("  %-52s %.4f\n", "RobertaForMaskedLM on mlm", l = model_loss("bert/roberta_mlm", &b));
    assert_true(isfinite(l) && l > 0.5 * log(40.0) && l < 2.5 * log(40.0));
    recipe_batch_free(&b);

    recipe_collate_defaults(&cfg, 40); /* BART's <s> 0, <pad> 1, </s> 2, <mask> 3 */
    cfg.bos_id = 0, cfg.pad_id = 1, cfg.eos_id = 2, cfg.mask_id = 3;
    assert_int_equal(recipe_collate_denoise(&b, &c, &cfg, B, T, 1, 0), AG_OK);
    printf("  %-52s %.4f\n", "BartForConditionalGeneration on denoise", l = model_loss("bart/bart_cond_gen", &b));
    assert_true(isfinite(l) && l > 0.5 * log(40.0) && l < 2.5 * log(40.0));
    recipe_batch_free(&b);

    recipe_collate_defaults(&cfg, 100); /* T5: <pad> 0, </s> 1, <extra_id_0> = 99 */
    cfg.pad_id = 0, cfg.eos_id = 1;
    assert_int_equal(recipe_collate_span(&b, &c, &cfg, B, T, 1, 0), AG_OK);
    /* T5 v1.1 initialises its untied lm_head with std 1 (HF's _init_weights),
     * so a fresh model's loss is far above ln 100 */
    printf("  %-52s %.4f\n", "T5ForConditionalGeneration on span (untied head, std 1)", l = model_loss("t5/v1_1", &b));
    assert_true(isfinite(l) && l > 0);
    recipe_batch_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlm),    cmocka_unit_test(test_whole_word_mask), cmocka_unit_test(test_nsp_sop),
        cmocka_unit_test(test_ngram_mask),
        cmocka_unit_test(test_electra), cmocka_unit_test(test_span),           cmocka_unit_test(test_denoise),
        cmocka_unit_test(test_tlm),    cmocka_unit_test(test_ctrl),            cmocka_unit_test(test_errors),
        cmocka_unit_test(test_models_take_batches),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
