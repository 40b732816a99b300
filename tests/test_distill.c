/* test_distill.c: distillation (recipes/distill.c) on tiny random models,
 * no network, no fixtures.
 *
 *   - the triple loss equals the weighted sum computed here by hand, in
 *     double, from the two models' logits and hidden states: KL at T = 2
 *     times T^2 ("batchmean" over non-pad rows, or over the masked rows with
 *     restrict_ce_to_mask), the MLM cross entropy, 1 - cos over non-pad rows;
 *   - the same for causal-LM distillation of GPT-2 (KL + shifted CE + cos),
 *     and without the cosine term when the widths differ;
 *   - the layer map is extract_distilbert.py's [0, 2, 4, 7, 9, 11] for 12 -> 6;
 *   - initialising the student copies exactly the mapped tensors, bitwise,
 *     and nothing of the unmapped teacher layers;
 *   - over training steps the teacher's parameters never move (no gradient
 *     reaches them) while the student's loss falls;
 *   - bad pairs and options are refused with a message naming them;
 *   - distiller.py's smoothed masking (recipe_collate_mlm with masking =
 *     smoothed) on a corpus where one id is 8 times as frequent as another:
 *     exactly ceil(0.15 * tokens) predicted per batch, never a special id or
 *     padding, each class picked as often as sampling without replacement
 *     with weights count^-0.7 predicts, the rare/frequent rate ratio equal
 *     to (count_rare / count_freq)^-0.7 at a low rate, 80/10/10.
 */
#include "harness.h"

#include "collate.h"
#include "distill.h"
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define V 30

static const char *BERT_TEACHER =
    "{\"model_type\": \"bert\", \"architectures\": [\"BertForMaskedLM\"], \"vocab_size\": 30, \"hidden_size\": 16,"
    " \"num_hidden_layers\": 4, \"num_attention_heads\": 2, \"intermediate_size\": 32, \"max_position_embeddings\": 16,"
    " \"initializer_range\": 0.2}";
static const char *DISTIL_STUDENT =
    "{\"model_type\": \"distilbert\", \"architectures\": [\"DistilBertForMaskedLM\"], \"vocab_size\": 30, \"dim\": 16,"
    " \"n_layers\": 2, \"n_heads\": 2, \"hidden_dim\": 32, \"max_position_embeddings\": 16, \"initializer_range\": 0.2}";
static const char *GPT2_TEACHER =
    "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"vocab_size\": 30, \"n_positions\": 16,"
    " \"n_embd\": 16, \"n_layer\": 4, \"n_head\": 2, \"initializer_range\": 0.2}";
static const char *GPT2_STUDENT =
    "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"vocab_size\": 30, \"n_positions\": 16,"
    " \"n_embd\": 16, \"n_layer\": 2, \"n_head\": 2, \"initializer_range\": 0.2}";
static const char *GPT2_NARROW =
    "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"vocab_size\": 30, \"n_positions\": 16,"
    " \"n_embd\": 8, \"n_layer\": 2, \"n_head\": 2, \"initializer_range\": 0.2}";

static void make_model(recipe_model *m, const char *config, uint64_t seed) {
    if (recipe_model_declare_text(m, config, "test config", NULL) != AG_OK) fail_msg("%s", ag_error());
    assert_int_equal(recipe_model_alloc(m, seed), AG_OK);
}

/* A fixed batch [2,6]: row 1 has two padding positions; labels at 3 places. */
enum { B = 2, T = 6 };
static int32_t IDS[B * T] = {2, 7, 11, 5, 19, 3, 2, 23, 4, 3, 0, 0};
static int32_t MASK[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
static int32_t LABELS[B * T] = {-100, 9, -100, -100, 14, -100, -100, -100, 6, -100, -100, -100};

static void make_batch(recipe_batch *b, bool labels) {
    memset(b, 0, sizeof *b);
    const char *names[3] = {"input_ids", "attention_mask", "labels"};
    int32_t *src[3] = {IDS, MASK, LABELS};
    b->n = labels ? 3 : 2;
    for (int k = 0; k < b->n; ++k) {
        snprintf(b->name[k], sizeof b->name[k], "%s", names[k]);
        int32_t *d = malloc(sizeof IDS);
        memcpy(d, src[k], sizeof IDS);
        b->field[k] = ag_ints_wrap(d, 2, AG_SHAPE(B, T));
    }
}

/* The logits [B,T,V] and hidden states [B,T,C] of a model, copied out (no grad). */
static void outputs(const recipe_model *m, float *logits, float *hidden, int C) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_no_grad_begin(ctx);
    ag_ints ids = ag_ints_wrap(IDS, 2, AG_SHAPE(B, T)), mask = ag_ints_wrap(MASK, 2, AG_SHAPE(B, T));
    ag_tensor *h = NULL, *l = NULL;
    if (m->family == RECIPE_FAMILY_BERT) {
        h = nn_bert_forward(ctx, &m->bert, &ids, NULL, &mask);
        l = nn_bert_mlm_logits(ctx, &m->bert, h);
    } else if (m->family == RECIPE_FAMILY_DISTILBERT) { /* DistilBertForMaskedLM.forward's head, written out */
        const nn_distilbert *d = &m->distilbert;
        h = nn_distilbert_forward(ctx, d, &ids, &mask);
        ag_tensor *x = ag_gelu(ctx, ag_linear(ctx, h, d->vocab_transform.w, d->vocab_transform.b, AG_LINEAR_OUT_IN));
        x = ag_layernorm(ctx, x, d->vocab_layer_norm.w, d->vocab_layer_norm.b, 1e-12f);
        l = ag_linear(ctx, x, d->word.w, d->projector_b, AG_LINEAR_OUT_IN);
    } else {
        h = nn_gpt2_forward(ctx, &m->gpt2, &ids, &mask, 0);
        l = nn_gpt2_logits(ctx, &m->gpt2, h);
    }
    if (!l) fail_msg("%s", ag_error());
    assert_int_equal(h->numel, B * T * C);
    memcpy(logits, l->data, sizeof(float) * B * T * V);
    memcpy(hidden, h->data, sizeof(float) * B * T * C);
    ag_ctx_free(ctx);
}

/* log softmax(x / temp) of one row, in double. */
static void log_softmax_d(double *out, const float *x, double temp) {
    double mx = -INFINITY, s = 0;
    for (int v = 0; v < V; ++v) mx = fmax(mx, x[v] / temp);
    for (int v = 0; v < V; ++v) s += exp(x[v] / temp - mx);
    for (int v = 0; v < V; ++v) out[v] = x[v] / temp - mx - log(s);
}

/* KL(softmax(t/T) || softmax(s/T)) * T^2 of one row. */
static double kl_row(const float *s, const float *t, double temp) {
    double ls[V], lt[V], k = 0;
    log_softmax_d(ls, s, temp);
    log_softmax_d(lt, t, temp);
    for (int v = 0; v < V; ++v) k += exp(lt[v]) * (lt[v] - ls[v]);
    return k * temp * temp;
}

static double cos_row(const float *a, const float *b, int C) {
    double ab = 0, aa = 0, bb = 0;
    for (int c = 0; c < C; ++c) ab += (double)a[c] * b[c], aa += (double)a[c] * a[c], bb += (double)b[c] * b[c];
    return ab / sqrt(aa * bb);
}

/* The triple loss by hand. restrict: KL over labelled rows only. */
static double triple_by_hand(const float *sl, const float *tl, const float *sh, const float *th, int C, bool restrict_,
                             double *ce_out) {
    double ce = 0, mlm = 0, cos = 0;
    int n_ce = 0, n_mlm = 0, n_cos = 0;
    for (int i = 0; i < B * T; ++i) {
        if (restrict_ ? LABELS[i] != -100 : MASK[i] != 0) ce += kl_row(sl + i * V, tl + i * V, 2.0), ++n_ce;
        if (LABELS[i] != -100) {
            double ls[V];
            log_softmax_d(ls, sl + i * V, 1.0);
            mlm -= ls[LABELS[i]], ++n_mlm;
        }
        if (MASK[i]) cos += 1 - cos_row(sh + i * C, th + i * C, C), ++n_cos;
    }
    *ce_out = ce / n_ce;
    return 5.0 * ce / n_ce + 2.0 * mlm / n_mlm + 1.0 * cos / n_cos;
}

static void test_triple_loss_by_hand(void **state) {
    (void)state;
    recipe_model t, s;
    make_model(&t, BERT_TEACHER, 1);
    make_model(&s, DISTIL_STUDENT, 2);
    float tl[B * T * V], sl[B * T * V], th[B * T * 16], sh[B * T * 16];
    outputs(&t, tl, th, 16);
    outputs(&s, sl, sh, 16);
    recipe_batch b;
    make_batch(&b, true);
    ag_ctx *ctx = ag_ctx_create(0);
    for (int restrict_ = 0; restrict_ < 2; ++restrict_) {
        recipe_distill_weights w = recipe_distill_mlm_defaults();
        w.restrict_ce_to_mask = restrict_;
        ag_ctx_reset(ctx);
        recipe_distill_parts p;
        ag_tensor *loss = recipe_distill_loss(ctx, &s, &t, &b, &w, &p);
        if (!loss) fail_msg("%s", ag_error());
        double ce;
        double want = triple_by_hand(sl, tl, sh, th, 16, restrict_, &ce);
        printf("  triple loss (%s): %.6f, by hand %.6f (ce %.5f mlm %.5f cos %.5f; rows %lld/%lld/%lld)\n",
               restrict_ ? "KL at masked rows" : "KL at non-pad rows", p.total, want, p.ce, p.mlm, p.cos,
               (long long)p.n_ce_rows, (long long)p.n_lm_rows, (long long)p.n_cos_rows);
        assert_true(fabs(p.total - want) <= 1e-5 * fabs(want));
        assert_true(fabs(p.ce - ce) <= 1e-5 * fabs(ce) + 1e-7);
        assert_int_equal(p.n_ce_rows, restrict_ ? 3 : 10);
        assert_int_equal(p.n_lm_rows, 3);
        assert_int_equal(p.n_cos_rows, 10);
        assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
    }
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&t);
    recipe_model_free(&s);
}

/* GPT-2 -> GPT-2: KL over non-pad rows + shifted CE + cos; and a narrower
 * student, where the cosine term is left out. */
static void test_causal_lm_by_hand(void **state) {
    (void)state;
    recipe_model t;
    make_model(&t, GPT2_TEACHER, 3);
    float tl[B * T * V], th[B * T * 16];
    outputs(&t, tl, th, 16);
    recipe_batch b;
    make_batch(&b, false);
    ag_ctx *ctx = ag_ctx_create(0);
    for (int narrow = 0; narrow < 2; ++narrow) {
        const int C = narrow ? 8 : 16;
        recipe_model s;
        make_model(&s, narrow ? GPT2_NARROW : GPT2_STUDENT, 4);
        float sl[B * T * V], sh[B * T * 16];
        outputs(&s, sl, sh, C);
        double ce = 0, clm = 0, cos = 0;
        int n_ce = 0, n_clm = 0;
        for (int i = 0; i < B * T; ++i) {
            if (!MASK[i]) continue;
            ce += kl_row(sl + i * V, tl + i * V, 2.0), ++n_ce;
            if (!narrow) cos += 1 - cos_row(sh + i * C, th + i * C, C);
            if (i % T != T - 1 && MASK[i + 1]) { /* predicts ids[i + 1] */
                double ls[V];
                log_softmax_d(ls, sl + i * V, 1.0);
                clm -= ls[IDS[i + 1]], ++n_clm;
            }
        }
        const double want = 5.0 * ce / n_ce + 2.0 * clm / n_clm + (narrow ? 0 : cos / n_ce);
        recipe_distill_weights w = recipe_distill_clm_defaults();
        ag_ctx_reset(ctx);
        recipe_distill_parts p;
        ag_tensor *loss = recipe_distill_loss(ctx, &s, &t, &b, &w, &p);
        if (!loss) fail_msg("%s", ag_error());
        printf("  causal-LM distillation (student width %d): %.6f, by hand %.6f (ce %.5f clm %.5f cos %.5f)\n", C,
               p.total, want, p.ce, p.clm, p.cos);
        assert_true(fabs(p.total - want) <= 1e-5 * fabs(want));
        assert_int_equal(p.n_lm_rows, n_clm);
        assert_int_equal(p.n_cos_rows, narrow ? 0 : 10);
        recipe_model_free(&s);
    }
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&t);
}

static void expect_same(const recipe_model *s, const char *sn, const recipe_model *t, const char *tn) {
    const ag_tensor *a = ag_params_find(&s->ps, sn), *b = ag_params_find(&t->ps, tn);
    if (!a) fail_msg("student has no %s", sn);
    if (!b) fail_msg("teacher has no %s", tn);
    assert_int_equal(a->numel, b->numel);
    if (memcmp(a->data, b->data, sizeof(float) * (size_t)a->numel) != 0) fail_msg("%s != %s", sn, tn);
}

static void test_layer_map_and_init(void **state) {
    (void)state;
    int map[6];
    assert_int_equal(recipe_distill_layer_map(12, 6, map), AG_OK);
    const int want[6] = {0, 2, 4, 7, 9, 11};
    assert_memory_equal(map, want, sizeof want);
    assert_int_equal(recipe_distill_layer_map(4, 2, map), AG_OK);
    assert_int_equal(map[0], 0);
    assert_int_equal(map[1], 3);
    assert_int_not_equal(recipe_distill_layer_map(4, 3, map), AG_OK);
    assert_non_null(strstr(ag_error(), "student layers"));

    recipe_model t, s;
    make_model(&t, BERT_TEACHER, 5);
    make_model(&s, DISTIL_STUDENT, 6);
    int n = 0;
    assert_int_equal(recipe_distill_init_student(&s, &t, NULL, &n), AG_OK);
    /* 2 embeddings + LN (2) + 2 layers x 8 modules x 2 + projector bias + transform (2) + its LN (2) */
    printf("  BERT(4 layers) -> DistilBERT(2): %d tensors copied, teacher layers 0, 3\n", n);
    assert_int_equal(n, 2 + 2 + 2 * 16 + 1 + 2 + 2);
    expect_same(&s, "distilbert.embeddings.word_embeddings.weight", &t, "bert.embeddings.word_embeddings.weight");
    expect_same(&s, "distilbert.embeddings.position_embeddings.weight", &t, "bert.embeddings.position_embeddings.weight");
    expect_same(&s, "distilbert.embeddings.LayerNorm.weight", &t, "bert.embeddings.LayerNorm.weight");
    const char *pairs[8][2] = {
        {"attention.q_lin", "attention.self.query"},     {"attention.k_lin", "attention.self.key"},
        {"attention.v_lin", "attention.self.value"},     {"attention.out_lin", "attention.output.dense"},
        {"sa_layer_norm", "attention.output.LayerNorm"}, {"ffn.lin1", "intermediate.dense"},
        {"ffn.lin2", "output.dense"},                    {"output_layer_norm", "output.LayerNorm"},
    };
    const int tl[2] = {0, 3};
    for (int j = 0; j < 2; ++j)
        for (int k = 0; k < 8; ++k)
            for (int wb = 0; wb < 2; ++wb) {
                char sn[128], tn[128];
                snprintf(sn, sizeof sn, "distilbert.transformer.layer.%d.%s.%s", j, pairs[k][0], wb ? "bias" : "weight");
                snprintf(tn, sizeof tn, "bert.encoder.layer.%d.%s.%s", tl[j], pairs[k][1], wb ? "bias" : "weight");
                expect_same(&s, sn, &t, tn);
            }
    expect_same(&s, "vocab_projector.bias", &t, "cls.predictions.bias");
    expect_same(&s, "vocab_transform.weight", &t, "cls.predictions.transform.dense.weight");
    expect_same(&s, "vocab_layer_norm.bias", &t, "cls.predictions.transform.LayerNorm.bias");
    /* an unmapped teacher layer (1) is not what student layer 1 holds */
    const ag_tensor *q1 = ag_params_find(&s.ps, "distilbert.transformer.layer.1.attention.q_lin.weight");
    const ag_tensor *t1 = ag_params_find(&t.ps, "bert.encoder.layer.1.attention.self.query.weight");
    assert_true(memcmp(q1->data, t1->data, sizeof(float) * (size_t)q1->numel) != 0);
    recipe_model_free(&s);
    recipe_model_free(&t);

    /* GPT-2 -> GPT-2 (4 -> 2 layers: 0, 3), every parameter by name */
    make_model(&t, GPT2_TEACHER, 7);
    make_model(&s, GPT2_STUDENT, 8);
    assert_int_equal(recipe_distill_init_student(&s, &t, NULL, &n), AG_OK);
    assert_int_equal(n, (int)s.ps.n);
    printf("  GPT-2(4 layers) -> GPT-2(2): %d tensors copied\n", n);
    expect_same(&s, "transformer.wte.weight", &t, "transformer.wte.weight");
    expect_same(&s, "transformer.h.1.attn.c_attn.weight", &t, "transformer.h.3.attn.c_attn.weight");
    expect_same(&s, "transformer.h.0.mlp.c_proj.bias", &t, "transformer.h.0.mlp.c_proj.bias");
    expect_same(&s, "transformer.ln_f.weight", &t, "transformer.ln_f.weight");
    /* a bad map entry and a narrower student are refused, naming the problem */
    int bad[2] = {0, 4};
    assert_int_not_equal(recipe_distill_init_student(&s, &t, bad, &n), AG_OK);
    assert_non_null(strstr(ag_error(), "map[1]"));
    recipe_model_free(&s);
    make_model(&s, GPT2_NARROW, 8);
    assert_int_not_equal(recipe_distill_init_student(&s, &t, NULL, &n), AG_OK);
    assert_non_null(strstr(ag_error(), "transformer.wte.weight"));
    recipe_model_free(&s);
    recipe_model_free(&t);
}

/* 30 AdamW steps on the fixed batch: the teacher is bitwise unchanged and got
 * no gradient; the student's loss falls. */
static void test_teacher_frozen_loss_falls(void **state) {
    (void)state;
    recipe_model t, s;
    make_model(&t, BERT_TEACHER, 9);
    make_model(&s, DISTIL_STUDENT, 10);
    assert_int_equal(recipe_distill_init_student(&s, &t, NULL, NULL), AG_OK);
    float *snapshot = malloc(sizeof(float) * (size_t)t.ps.total);
    memcpy(snapshot, t.ps.values, sizeof(float) * (size_t)t.ps.total);
    recipe_batch b;
    make_batch(&b, true);
    optim *opt = NULL;
    optim_config oc = optim_adamw_defaults();
    assert_int_equal(optim_create(&opt, &s.ps, &oc), AG_OK);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_ctx_train(ctx, true);
    recipe_distill_weights w = recipe_distill_mlm_defaults();
    double first = 0, last = 0;
    for (int step = 0; step < 30; ++step) {
        ag_ctx_reset(ctx);
        ag_ctx_seed(ctx, (uint64_t)step + 1);
        recipe_distill_parts p;
        ag_tensor *loss = recipe_distill_loss(ctx, &s, &t, &b, &w, &p);
        if (!loss) fail_msg("%s", ag_error());
        assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
        assert_int_equal(optim_step(opt, 3e-3), AG_OK);
        ag_params_zero_grad(&s.ps);
        if (step == 0) first = p.total;
        last = p.total;
    }
    printf("  30 steps: loss %.4f -> %.4f\n", first, last);
    assert_true(last < 0.5 * first);
    assert_memory_equal(t.ps.values, snapshot, sizeof(float) * (size_t)t.ps.total);
    for (int64_t i = 0; i < t.ps.total; ++i)
        if (t.ps.grads[i] != 0) fail_msg("teacher gradient %lld is %g", (long long)i, (double)t.ps.grads[i]);
    ag_ctx_free(ctx);
    optim_free(opt);
    free(snapshot);
    recipe_batch_free(&b);
    recipe_model_free(&s);
    recipe_model_free(&t);
}

static void test_refusals(void **state) {
    (void)state;
    recipe_model t, s, g;
    make_model(&t, BERT_TEACHER, 1);
    make_model(&s, DISTIL_STUDENT, 2);
    make_model(&g, GPT2_STUDENT, 3);
    recipe_batch b, nolabels;
    make_batch(&b, true);
    make_batch(&nolabels, false);
    ag_ctx *ctx = ag_ctx_create(0);
    recipe_distill_weights w = recipe_distill_mlm_defaults();
    assert_null(recipe_distill_loss(ctx, &s, &g, &b, &w, NULL)); /* encoder student, decoder teacher */
    assert_non_null(strstr(ag_error(), "GPT2LMHeadModel"));
    assert_null(recipe_distill_loss(ctx, &s, &t, &nolabels, &w, NULL));
    assert_non_null(strstr(ag_error(), "labels"));
    w.temperature = 0;
    assert_null(recipe_distill_loss(ctx, &s, &t, &b, &w, NULL));
    assert_non_null(strstr(ag_error(), "temperature"));
    w = recipe_distill_mlm_defaults();
    w.alpha_mlm = 0;
    assert_null(recipe_distill_loss(ctx, &s, NULL, &b, &w, NULL)); /* no teacher and no own term */
    assert_non_null(strstr(ag_error(), "alpha_mlm"));
    assert_int_not_equal(recipe_distill_init_student(&t, &s, NULL, NULL), AG_OK);
    assert_non_null(strstr(ag_error(), "only BertForMaskedLM"));
    /* no teacher: the student's own MLM loss alone (how the teacher is trained) */
    w = recipe_distill_mlm_defaults();
    recipe_distill_parts p;
    ag_ctx_reset(ctx);
    assert_non_null(recipe_distill_loss(ctx, &t, NULL, &b, &w, &p));
    assert_true(fabs(p.total - 2.0 * p.mlm) < 1e-6 && p.ce == 0 && p.cos == 0);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_batch_free(&nolabels);
    recipe_model_free(&t);
    recipe_model_free(&s);
    recipe_model_free(&g);
}

/* ---------------------------------------------------------------- distiller.py's smoothed masking */

/* A corpus where one id is 8 times as frequent as another: FREQ 30 % of the
 * tokens, RARE 3.75 %, [UNK] 1 %, the rest spread over 100 filler ids. */
enum { SV = 200, S_PAD = 0, S_UNK = 1, S_CLS = 2, S_SEP = 3, S_MASK = 4, FREQ = 10, RARE = 11, FILL = 20, N_FILL = 100 };

typedef struct {
    int32_t *tokens;
    int64_t *doc, *sent, counts[SV];
    recipe_corpus c;
} skewed_corpus;

static void make_skewed(skewed_corpus *k) {
    enum { D = 3000 };
    k->tokens = malloc(sizeof(int32_t) * D * 8 * 30);
    k->doc = malloc(sizeof(int64_t) * (D + 1));
    k->sent = malloc(sizeof(int64_t) * (D * 8 + 1));
    int64_t n = 0, ns = 0;
    uint64_t ctr = 0;
    for (int d = 0; d < D; ++d) {
        k->doc[d] = n;
        for (int s = 0, S = 1 + (int)(ag_rng_u64(77, ctr++) % 8); s < S; ++s) {
            k->sent[ns++] = n;
            for (int i = 0, L = 2 + (int)(ag_rng_u64(77, ctr++) % 29); i < L; ++i) {
                const double u = ag_rng_uniform(77, ctr++);
                k->tokens[n++] = u < 0.3 ? FREQ : u < 0.3375 ? RARE : u < 0.3475 ? S_UNK
                                                                    : FILL + (int32_t)(ag_rng_u64(78, ctr++) % N_FILL);
            }
        }
    }
    k->doc[D] = n, k->sent[ns] = n;
    k->c = (recipe_corpus){k->tokens, n, k->doc, D, k->sent, ns, NULL};
    assert_int_equal(recipe_token_counts(k->counts, &k->c, SV), AG_OK);
}

static recipe_collate_config smoothed_config(const skewed_corpus *k, float p) {
    static const int32_t unk[1] = {S_UNK};
    recipe_collate_config cfg;
    recipe_collate_defaults(&cfg, SV);
    cfg.pad_id = S_PAD, cfg.cls_id = S_CLS, cfg.sep_id = S_SEP, cfg.mask_id = S_MASK;
    cfg.special_ids = unk, cfg.n_special = 1;
    cfg.masking = RECIPE_MASK_SMOOTHED, cfg.token_counts = k->counts, cfg.mlm_probability = p;
    return cfg;
}

static int id_class(int32_t id) { return id == FREQ ? 0 : id == RARE ? 1 : 2; }

typedef struct {
    int64_t seen[3], picked[3], batches, predicted, to_mask, to_random, kept;
    double expected[3]; /* sum over positions of the without-replacement inclusion probability */
} smooth_stats;

/* The expected number picked at threshold tau: sum over ids of count * (1 - exp(-tau w)). */
static double filled(const int64_t *per_id, const double *w, double tau) {
    double f = 0;
    for (int v = 0; v < SV; ++v)
        if (per_id[v]) f += (double)per_id[v] * -expm1(-tau * w[v]);
    return f;
}

/* One batch: exactly ceil(p * tokens) positions predicted (p in Python's
 * double), never a special id or padding; counts per class. The expected
 * inclusion of a candidate with weight w among n_tgt drawn without
 * replacement is, to O(1/N), 1 - exp(-tau w) with tau solving
 * sum_i (1 - exp(-tau w_i)) = n_tgt (each key w/E passes a common
 * threshold), so small weights are picked in proportion to w and large ones
 * saturate. */
static void count_smoothed(smooth_stats *st, const recipe_batch *b, const recipe_collate_config *cfg, double p) {
    const ag_ints *ids = recipe_batch_get(b, "input_ids"), *lab = recipe_batch_get(b, "labels"),
                  *att = recipe_batch_get(b, "attention_mask");
    int64_t n_tok = 0, n_pred = 0, per_id[SV] = {0};
    for (int64_t e = 0; e < ids->numel; ++e) {
        const int32_t x = ids->data[e], y = lab->data[e];
        if (!att->data[e]) { assert_int_equal(y, -100); assert_int_equal(x, S_PAD); continue; }
        ++n_tok;
        const int32_t orig = y != -100 ? y : x;
        if (orig == S_PAD || orig == S_UNK || orig == S_CLS || orig == S_SEP || orig == S_MASK) {
            assert_int_equal(y, -100); /* token_probs 0: never predicted */
            continue;
        }
        per_id[orig]++;
        st->seen[id_class(orig)]++;
        if (y == -100) { assert_int_equal(x, orig); continue; }
        ++n_pred;
        st->picked[id_class(orig)]++;
        if (x == S_MASK) st->to_mask++;
        else if (x == y) st->kept++;
        else st->to_random++;
    }
    const int64_t n_tgt = (int64_t)ceil(p * (double)n_tok);
    if (n_pred != n_tgt) fail_msg("batch with %lld tokens: %lld predicted, n_tgt = ceil(%g * %lld) = %lld", (long long)n_tok,
                                  (long long)n_pred, p, (long long)n_tok, (long long)n_tgt);
    st->predicted += n_pred, st->batches++;
    double w[SV], lo = 0, hi = 1;
    for (int v = 0; v < SV; ++v) w[v] = pow((double)(cfg->token_counts[v] > 1 ? cfg->token_counts[v] : 1), -0.7);
    while (filled(per_id, w, hi) < (double)n_tgt) hi *= 2;
    for (int it = 0; it < 60; ++it) {
        const double mid = 0.5 * (lo + hi);
        if (filled(per_id, w, mid) < (double)n_tgt) lo = mid;
        else hi = mid;
    }
    for (int v = 0; v < SV; ++v)
        if (per_id[v]) st->expected[id_class(v)] += per_id[v] * -expm1(-0.5 * (lo + hi) * w[v]);
}

/* Batches 0 .. n-1 of 32 x 64 (seed `seed`) through count_smoothed. */
static smooth_stats collect_smoothed(const skewed_corpus *k, const recipe_collate_config *cfg, int n, uint64_t seed,
                                     double rate) {
    smooth_stats st = {0};
    for (int it = 0; it < n; ++it) {
        recipe_batch b;
        if (recipe_collate_mlm(&b, &k->c, cfg, 32, 64, seed, (uint64_t)it) != AG_OK) fail_msg("%s", ag_error());
        count_smoothed(&st, &b, cfg, rate);
        recipe_batch_free(&b);
    }
    return st;
}

/* measured within k standard deviations (sqrt of the expected count) of expected */
static void expect_count(const char *what, double measured, double expected, double k) {
    const double sd = sqrt(expected);
    printf("  %-58s %9.0f (expected %9.1f, %+.2f%%, %+.1f sd)\n", what, measured, expected,
           100 * (measured - expected) / expected, (measured - expected) / sd);
    if (!(fabs(measured - expected) <= k * sd)) fail_msg("%s: %.0f is not within %.0f sd of %.1f", what, measured, k, expected);
}

static void test_smoothed_masking(void **state) {
    (void)state;
    skewed_corpus k;
    make_skewed(&k);
    const double ratio_w = pow((double)k.counts[RARE] / (double)k.counts[FREQ], -0.7);
    printf("smoothed masking: counts FREQ %lld, RARE %lld (x%.3f); (count_RARE / count_FREQ)^-0.7 = %.4f\n",
           (long long)k.counts[FREQ], (long long)k.counts[RARE], (double)k.counts[FREQ] / (double)k.counts[RARE], ratio_w);

    /* DistilBERT's rate 0.15: exact counts, specials, 80/10/10, and each
     * class against the without-replacement expectation */
    recipe_collate_config cfg = smoothed_config(&k, 0.15f);
    smooth_stats st = collect_smoothed(&k, &cfg, 3000, 5, 0.15);
    printf(" p = 0.15, %lld batches of 32 x 64: every batch predicts exactly ceil(0.15 * tokens) (%lld in all); "
           "no special or pad\n", (long long)st.batches, (long long)st.predicted);
    const double r15 = ((double)st.picked[1] / st.seen[1]) / ((double)st.picked[0] / st.seen[0]);
    const double r15x = (st.expected[1] / st.seen[1]) / (st.expected[0] / st.seen[0]);
    printf("  %-58s %.4f (count^-0.7: %.4f; without replacement: %.4f)\n", "rate(RARE) / rate(FREQ)", r15, ratio_w, r15x);
    expect_count("FREQ picked", (double)st.picked[0], st.expected[0], 4);
    expect_count("RARE picked", (double)st.picked[1], st.expected[1], 4);
    expect_count("filler picked", (double)st.picked[2], st.expected[2], 4);
    const double mask = (double)st.to_mask / st.predicted, rnd = (double)st.to_random / st.predicted,
                 keep = (double)st.kept / st.predicted;
    /* pred_probs 0.8 / 0.1 / 0.1; a random id is the original or [MASK] with 1/SV each */
    const double e_mask = 0.8 + 0.1 / SV, e_rnd = 0.1 * (1 - 2.0 / SV), e_keep = 0.1 + 0.1 / SV;
    printf("  %-58s %.5f %.5f %.5f (%.5f %.5f %.5f)\n", "-> [MASK], random other id, unchanged", mask, rnd, keep, e_mask,
           e_rnd, e_keep);
    assert_true(fabs(mask - e_mask) < 0.01 * e_mask && fabs(rnd - e_rnd) < 0.01 * e_rnd && fabs(keep - e_keep) < 0.01 * e_keep);

    /* At a low rate (0.03) little saturates and the ratio is the weights'
     * ratio, (count_RARE / count_FREQ)^-0.7, within its statistical error */
    recipe_collate_config low = smoothed_config(&k, 0.03f);
    smooth_stats sl = collect_smoothed(&k, &low, 6000, 4, 0.03);
    const double r1 = ((double)sl.picked[1] / sl.seen[1]) / ((double)sl.picked[0] / sl.seen[0]);
    const double sd = r1 * sqrt(1.0 / sl.picked[0] + 1.0 / sl.picked[1]);
    printf(" p = 0.03, %lld batches: FREQ picked %lld, RARE %lld\n", (long long)sl.batches, (long long)sl.picked[0],
           (long long)sl.picked[1]);
    printf("  %-58s %.4f (count^-0.7: %.4f, %+.2f%%, %+.1f sd; without replacement: %.4f)\n", "rate(RARE) / rate(FREQ)",
           r1, ratio_w, 100 * (r1 - ratio_w) / ratio_w, (r1 - ratio_w) / sd,
           (sl.expected[1] / sl.seen[1]) / (sl.expected[0] / sl.seen[0]));
    assert_true(fabs(r1 - ratio_w) <= 4 * sd);

    /* a batch is a pure function of (seed, index) */
    recipe_batch a, a2, c2;
    assert_int_equal(recipe_collate_mlm(&a, &k.c, &cfg, 16, 64, 9, 5), AG_OK);
    assert_int_equal(recipe_collate_mlm(&a2, &k.c, &cfg, 16, 64, 9, 5), AG_OK);
    assert_int_equal(recipe_collate_mlm(&c2, &k.c, &cfg, 16, 64, 9, 6), AG_OK);
    for (int i = 0; i < a.n; ++i)
        assert_memory_equal(a.field[i].data, a2.field[i].data, sizeof(int32_t) * (size_t)a.field[i].numel);
    assert_true(memcmp(a.field[0].data, c2.field[0].data, sizeof(int32_t) * (size_t)a.field[0].numel) != 0);
    printf("  same (seed, index) -> same batch\n");
    recipe_batch_free(&a), recipe_batch_free(&a2), recipe_batch_free(&c2);

    /* refusals, by name */
    recipe_collate_config bad = cfg;
    bad.token_counts = NULL;
    assert_int_equal(recipe_collate_mlm(&a, &k.c, &bad, 2, 16, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "token_counts"));
    bad = cfg, bad.mlm_smoothing = -1;
    assert_int_equal(recipe_collate_mlm(&a, &k.c, &bad, 2, 16, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "mlm_smoothing"));
    int64_t neg[SV];
    memcpy(neg, k.counts, sizeof neg);
    neg[7] = -3;
    bad = cfg, bad.token_counts = neg;
    assert_int_equal(recipe_collate_mlm(&a, &k.c, &bad, 2, 16, 0, 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "token_counts[7]"));
    assert_int_equal(recipe_token_counts(neg, &k.c, 5), AG_ERR_ARG); /* ids up to 119 */
    assert_non_null(strstr(ag_error(), "outside the vocabulary"));
    free(k.tokens), free(k.doc), free(k.sent);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_triple_loss_by_hand),      cmocka_unit_test(test_causal_lm_by_hand),
        cmocka_unit_test(test_layer_map_and_init),       cmocka_unit_test(test_teacher_frozen_loss_falls),
        cmocka_unit_test(test_refusals),                 cmocka_unit_test(test_smoothed_masking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
