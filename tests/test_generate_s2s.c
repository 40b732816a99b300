/* test_generate_s2s.c: generation from the encoder-decoders (T5, BART,
 * M2M-100) in recipes/generate.c, with the decoder's self-attention cache and
 * the cross-attention keys and values computed once (nn/s2s_cache.c).
 *
 *   - the cached decoder's logits, the first 3 target positions at once and
 *     then one at a time, equal the full decoder's within 1e-5 (tiny random
 *     models of each family, and the Hugging Face T5 fixture's weights);
 *   - with the cache, greedy search, seeded sampling (temperature, top-k,
 *     top-p, repetition penalty) and beam search (length penalty, early
 *     stopping) choose exactly the tokens they choose without it;
 *   - beam search with one beam equals greedy search;
 *   - every target starts with decoder_start_token_id, and a forced first
 *     token (BART's forced_bos_token_id, M2M-100's target language id)
 *     follows it; a forced eos ends a target that reaches max_length;
 *   - a decoder-only model and a class without a head are refused by name;
 *   - train-s2s on a made-up corpus lowers the held-out loss by a third, and
 *     translate reads its run back.
 */
#include "harness.h"

#include "generate.h"
#include "models.h"
#include "train_s2s.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef HF_FIXTURE_DIR
#define HF_FIXTURE_DIR "../shared/fixtures/hf"
#endif
#define HF_T5_DIR HF_FIXTURE_DIR "/t5"

/* Tiny models of every encoder-decoder: T5 (tied, ReLU), T5 v1.1 (untied,
 * gated GELU), BART (post-LN, learned positions) and M2M-100 (pre-LN,
 * sinusoids). Large initialisations make the random logits far from uniform,
 * so that greedy choices are not near-ties. */
static const char *FAMILIES[] = {
    "{\"model_type\": \"t5\", \"architectures\": [\"T5ForConditionalGeneration\"], \"vocab_size\": 48, \"d_model\": 32,"
    " \"d_kv\": 8, \"d_ff\": 64, \"num_layers\": 2, \"num_heads\": 4, \"relative_attention_num_buckets\": 8,"
    " \"relative_attention_max_distance\": 16, \"decoder_start_token_id\": 0, \"eos_token_id\": 1,"
    " \"initializer_factor\": 2.0}",
    "{\"model_type\": \"t5\", \"architectures\": [\"T5ForConditionalGeneration\"], \"vocab_size\": 48, \"d_model\": 32,"
    " \"d_kv\": 8, \"d_ff\": 48, \"num_layers\": 1, \"num_decoder_layers\": 3, \"num_heads\": 4,"
    " \"relative_attention_num_buckets\": 8, \"relative_attention_max_distance\": 16, \"decoder_start_token_id\": 0,"
    " \"feed_forward_proj\": \"gated-gelu\", \"tie_word_embeddings\": false}",
    "{\"model_type\": \"bart\", \"architectures\": [\"BartForConditionalGeneration\"], \"vocab_size\": 48,"
    " \"d_model\": 32, \"encoder_layers\": 2, \"decoder_layers\": 2, \"encoder_attention_heads\": 4,"
    " \"decoder_attention_heads\": 4, \"encoder_ffn_dim\": 64, \"decoder_ffn_dim\": 64,"
    " \"max_position_embeddings\": 64, \"init_std\": 0.3, \"forced_bos_token_id\": 0, \"forced_eos_token_id\": 2}",
    "{\"model_type\": \"m2m_100\", \"architectures\": [\"M2M100ForConditionalGeneration\"], \"vocab_size\": 48,"
    " \"d_model\": 32, \"encoder_layers\": 2, \"decoder_layers\": 2, \"encoder_attention_heads\": 4,"
    " \"decoder_attention_heads\": 4, \"encoder_ffn_dim\": 64, \"decoder_ffn_dim\": 64,"
    " \"max_position_embeddings\": 64, \"init_std\": 0.6}",
};

static void make_model(recipe_model *m, const char *config, uint64_t seed) {
    if (recipe_model_declare_text(m, config, "test config", NULL) != AG_OK) fail_msg("%s", ag_error());
    assert_int_equal(recipe_model_alloc(m, seed), AG_OK);
}

static void load_hf_t5(recipe_model *m) {
    assert_int_equal(recipe_model_declare(m, HF_T5_DIR "/config.json", NULL), AG_OK);
    assert_int_equal(recipe_model_alloc(m, 0), AG_OK);
    if (ckpt_safetensors_load(HF_T5_DIR "/model_hf.safetensors", &m->ps, m->aliases, m->n_aliases) != AG_OK)
        fail_msg("%s", ag_error());
}

static const int32_t SRC[] = {5, 17, 3, 22, 9, 30, 11};
#define N_SRC 7

/* The decoder's logits for target tgt[T] over the source SRC: with the
 * caches (3 positions, then one at a time) and without, equal within 1e-5. */
static void check_cached_logits(ag_ctx *ctx, const recipe_model *m, const int32_t *tgt, int T) {
    recipe_s2s_info d;
    assert_int_equal(recipe_s2s_info_get(m, &d), AG_OK);
    const bool t5 = m->family == RECIPE_FAMILY_T5;
    const int V = d.vocab_size;
    float *full = malloc((size_t)T * V * sizeof(float)), *step = malloc((size_t)T * V * sizeof(float));
    nn_kv_cache self;
    nn_cross_cache cross;
    assert_int_equal(nn_kv_cache_init(&self, d.n_layer, 1, d.n_head, d.d_head, T), AG_OK);
    assert_int_equal(nn_cross_cache_init(&cross, d.n_layer, d.n_head, d.d_head, N_SRC), AG_OK);
    ag_ctx_reset(ctx);
    ag_no_grad_begin(ctx);
    ag_ctx_train(ctx, false);
    ag_ints src = ag_ints_wrap((int32_t *)SRC, 2, AG_SHAPE(1, N_SRC));
    ag_ints dec = ag_ints_wrap((int32_t *)tgt, 2, AG_SHAPE(1, T));
    ag_tensor *enc = t5 ? nn_t5_encode(ctx, &m->t5, &src, NULL) : nn_bart_encode(ctx, &m->bart, &src, NULL);
    ag_tensor *h = t5 ? nn_t5_decode(ctx, &m->t5, &dec, NULL, enc, NULL)
                      : nn_bart_decode(ctx, &m->bart, &dec, NULL, enc, NULL);
    ag_tensor *lg = t5 ? nn_t5_logits(ctx, &m->t5, h) : nn_bart_logits(ctx, &m->bart, h); /* [1,T,V] */
    if (!lg) fail_msg("%s", ag_error());
    memcpy(full, lg->data, (size_t)T * V * sizeof(float));
    ag_status st = t5 ? nn_t5_cross_cache_fill(ctx, &m->t5, enc, &cross)
                      : nn_bart_cross_cache_fill(ctx, &m->bart, enc, &cross);
    assert_int_equal(st, AG_OK);
    for (int t = 0; t < T;) {
        const int n = t == 0 ? 3 : 1;
        ag_ctx_reset(ctx);
        ag_ints part = ag_ints_wrap((int32_t *)tgt + t, 2, AG_SHAPE(1, n));
        h = t5 ? nn_t5_decode_cached(ctx, &m->t5, &part, &self, &cross)
               : nn_bart_decode_cached(ctx, &m->bart, &part, &self, &cross);
        lg = t5 ? nn_t5_logits(ctx, &m->t5, h) : nn_bart_logits(ctx, &m->bart, h);
        if (!lg) fail_msg("%s", ag_error());
        memcpy(step + (size_t)t * V, lg->data, (size_t)n * V * sizeof(float));
        t += n;
    }
    assert_int_equal(self.len, T);
    /* a full cache is refused with a message */
    ag_ctx_reset(ctx);
    ag_ints one = ag_ints_wrap((int32_t *)tgt, 2, AG_SHAPE(1, 1));
    assert_null(t5 ? nn_t5_decode_cached(ctx, &m->t5, &one, &self, &cross)
                   : nn_bart_decode_cached(ctx, &m->bart, &one, &self, &cross));
    assert_non_null(strstr(ag_error(), "kv cache"));
    ag_no_grad_end(ctx);
    ag_ctx_reset(ctx);
    assert_close(m->arch, step, full, (int64_t)T * V, 1e-5, 1e-5);
    free(full);
    free(step);
    nn_kv_cache_free(&self);
    nn_cross_cache_free(&cross);
}

/* Runs g with and without the cache; the targets must be equal. Returns the
 * target's length; the tokens go to out (may be NULL). */
static int cached_equals_uncached(ag_ctx *ctx, const recipe_model *m, recipe_gen_config g, const char *what,
                                  int32_t *out) {
    int32_t a[80], b[80];
    int na = 0, nb = 0;
    double sa, sb;
    g.use_cache = true;
    if (recipe_generate_s2s(ctx, m, &g, SRC, N_SRC, a, &na, &sa, NULL, NULL) != AG_OK) fail_msg("%s", ag_error());
    g.use_cache = false;
    if (recipe_generate_s2s(ctx, m, &g, SRC, N_SRC, b, &nb, &sb, NULL, NULL) != AG_OK) fail_msg("%s", ag_error());
    if (na != nb || memcmp(a, b, (size_t)na * sizeof(int32_t)) != 0) {
        for (int i = 0; i < (na > nb ? na : nb); ++i)
            printf("  %2d: cached %d, uncached %d\n", i, i < na ? a[i] : -1, i < nb ? b[i] : -1);
        fail_msg("%s: %s: the cache changed the tokens", m->arch, what);
    }
    if (fabs(sa - sb) > 1e-3 * (1 + fabs(sb))) fail_msg("%s: %s: scores %g and %g", m->arch, what, sa, sb);
    recipe_s2s_info d;
    assert_int_equal(recipe_s2s_info_get(m, &d), AG_OK);
    assert_int_equal(a[0], d.decoder_start_token_id);
    int distinct = 0;
    for (int i = 1; i < na; ++i) distinct += a[i] != a[1];
    printf("  %-31s %-9s %2d tokens (%2d differ from the first), score %.4f\n", m->arch, what, na - 1, distinct, sa);
    if (out) memcpy(out, a, (size_t)na * sizeof(int32_t));
    return na;
}

/* Greedy search and beam search with one beam (BeamSearchScorer, early
 * stopping) give the same target. */
static void one_beam_is_greedy(ag_ctx *ctx, const recipe_model *m, int eos) {
    recipe_gen_config g = recipe_gen_defaults();
    g.max_new_tokens = 16, g.eos_token_id = eos;
    int32_t a[32], b[32];
    int na, nb;
    assert_int_equal(recipe_generate_s2s(ctx, m, &g, SRC, N_SRC, a, &na, NULL, NULL, NULL), AG_OK);
    g.num_beams = 1, g.force_beam_search = true, g.early_stopping = RECIPE_EARLY_STOP_TRUE;
    assert_int_equal(recipe_generate_s2s(ctx, m, &g, SRC, N_SRC, b, &nb, NULL, NULL, NULL), AG_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof(int32_t));
}

/* Every strategy, cached and not, on model m. */
static void every_strategy(ag_ctx *ctx, const recipe_model *m, int V) {
    int32_t tgt[24];
    for (int i = 0; i < 24; ++i) tgt[i] = 2 + (int32_t)(ag_rng_u64(11, (uint64_t)i) % (uint64_t)(V - 2));
    check_cached_logits(ctx, m, tgt, 24);
    recipe_gen_config g = recipe_gen_defaults();
    g.max_new_tokens = 24;
    cached_equals_uncached(ctx, m, g, "greedy", NULL);
    g.repetition_penalty = 4.0f; /* random models repeat one token; this makes them move */
    cached_equals_uncached(ctx, m, g, "rep 4", NULL);
    g.do_sample = true, g.seed = 42, g.top_k = 20, g.top_p = 0.95f, g.temperature = 0.9f, g.repetition_penalty = 1;
    cached_equals_uncached(ctx, m, g, "sampling", NULL);
    g = recipe_gen_defaults();
    g.max_new_tokens = 14, g.num_beams = 4, g.eos_token_id = V - 1, g.repetition_penalty = 4.0f;
    g.length_penalty = 0.7f;
    cached_equals_uncached(ctx, m, g, "beams", NULL);
    g.early_stopping = RECIPE_EARLY_STOP_TRUE, g.length_penalty = 1.5f;
    cached_equals_uncached(ctx, m, g, "beams/es", NULL);
    for (int eos = -1; eos < V; eos += 7) one_beam_is_greedy(ctx, m, eos);
}

static void test_tiny_families(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_create(0);
    for (size_t f = 0; f < sizeof FAMILIES / sizeof *FAMILIES; ++f) {
        recipe_model m;
        make_model(&m, FAMILIES[f], 300 + f);
        every_strategy(ctx, &m, 48);
        recipe_model_free(&m);
    }
    ag_ctx_free(ctx);
}

static void test_hf_t5(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_create(0);
    recipe_model m;
    load_hf_t5(&m);
    every_strategy(ctx, &m, 128);
    recipe_model_free(&m);
    ag_ctx_free(ctx);
}

/* The forced tokens: BART's forced_bos_token_id from its config (and its
 * forced_eos_token_id at max_length), M2M-100's target language as
 * forced_bos_token_id in the generation config, in every strategy. */
static void test_forced_tokens(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_create(0);
    recipe_model m;
    make_model(&m, FAMILIES[2], 7); /* BART: forced_bos 0, forced_eos 2, decoder start 2 */
    recipe_s2s_info d;
    assert_int_equal(recipe_s2s_info_get(&m, &d), AG_OK);
    assert_int_equal(d.forced_bos_token_id, 0);
    assert_int_equal(d.forced_eos_token_id, 2);
    int32_t out[80];
    for (int strategy = 0; strategy < 3; ++strategy) {
        recipe_gen_config g = recipe_gen_defaults();
        g.max_new_tokens = 9, g.eos_token_id = -1; /* run to max_length */
        g.forced_bos_token_id = d.forced_bos_token_id, g.forced_eos_token_id = d.forced_eos_token_id;
        if (strategy == 1) g.do_sample = true, g.seed = 3;
        if (strategy == 2) g.num_beams = 3;
        const int n = cached_equals_uncached(ctx, &m, g, strategy == 0 ? "forced" : strategy == 1 ? "f-sample" : "f-beams",
                                             out);
        assert_int_equal(n, 10);
        assert_int_equal(out[0], 2); /* decoder_start_token_id */
        assert_int_equal(out[1], 0); /* forced bos */
        assert_int_equal(out[9], 2); /* forced eos at max_length - 1 */
    }
    recipe_model_free(&m);
    /* M2M-100: the target language id "__es__" (here token 40) right after the start */
    make_model(&m, FAMILIES[3], 8);
    for (int lang = 40; lang < 43; ++lang) {
        recipe_gen_config g = recipe_gen_defaults();
        g.max_new_tokens = 8, g.forced_bos_token_id = lang, g.eos_token_id = 2;
        cached_equals_uncached(ctx, &m, g, "lang id", out);
        assert_int_equal(out[0], 2);
        assert_int_equal(out[1], lang);
        g.num_beams = 2;
        cached_equals_uncached(ctx, &m, g, "lang/beam", out);
        assert_int_equal(out[1], lang);
    }
    recipe_model_free(&m);
    ag_ctx_free(ctx);
}

static void test_refused(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_create(0);
    recipe_model m;
    int32_t out[40];
    int n;
    recipe_gen_config g = recipe_gen_defaults();
    make_model(&m, "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"vocab_size\": 40,"
                   " \"n_positions\": 16, \"n_embd\": 16, \"n_layer\": 1, \"n_head\": 2}", 1);
    assert_int_not_equal(recipe_generate_s2s(ctx, &m, &g, SRC, N_SRC, out, &n, NULL, NULL, NULL), AG_OK);
    assert_non_null(strstr(ag_error(), "not an encoder-decoder"));
    recipe_model_free(&m);
    make_model(&m, "{\"model_type\": \"t5\", \"architectures\": [\"T5Model\"], \"vocab_size\": 48, \"d_model\": 16,"
                   " \"d_kv\": 4, \"d_ff\": 16, \"num_layers\": 1, \"num_heads\": 4, \"decoder_start_token_id\": 0}", 1);
    assert_int_not_equal(recipe_generate_s2s(ctx, &m, &g, SRC, N_SRC, out, &n, NULL, NULL, NULL), AG_OK);
    assert_non_null(strstr(ag_error(), "T5Model"));
    recipe_model_free(&m);
    make_model(&m, FAMILIES[0], 1);
    const int32_t oov = 48;
    assert_int_not_equal(recipe_generate_s2s(ctx, &m, &g, &oov, 1, out, &n, NULL, NULL, NULL), AG_OK);
    assert_non_null(strstr(ag_error(), "source token"));
    g.forced_eos_token_id = 99;
    assert_int_not_equal(recipe_generate_s2s(ctx, &m, &g, SRC, N_SRC, out, &n, NULL, NULL, NULL), AG_OK);
    assert_non_null(strstr(ag_error(), "forced_eos_token_id"));
    recipe_model_free(&m);
    ag_ctx_free(ctx);
}

/* train-s2s end to end on a made-up parallel corpus (English number words to
 * Spanish ones, word for word): the tokenizer, the split, the steps, the
 * held-out loss (which must fall by a third), the checkpoint and `translate`
 * reading it back. */
static void test_train_s2s(void **state) {
    (void)state;
    /* one thread: on a loaded machine OpenMP's spinning workers cost more than
     * they bring to a model this small */
    ag_set_threads(1);
    char dir[] = "/tmp/tapegrad_s2s_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char data[256], config[256], run[256];
    snprintf(data, sizeof data, "%s/pairs.tsv", dir);
    snprintf(config, sizeof config, "%s/config.json", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    static const char *en[] = {"one", "two", "three", "four", "five", "six", "seven", "eight"};
    static const char *es[] = {"uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho"};
    FILE *f = fopen(data, "w");
    assert_non_null(f);
    for (int i = 0; i < 400; ++i) {
        const int n = 2 + (int)(ag_rng_u64(5, (uint64_t)i) % 3);
        int w[4];
        for (int k = 0; k < n; ++k) w[k] = (int)(ag_rng_u64(6, (uint64_t)(i * 4 + k)) % 8);
        for (int k = 0; k < n; ++k) fprintf(f, "%s%s", k ? " " : "", en[w[k]]);
        fputc('\t', f);
        for (int k = 0; k < n; ++k) fprintf(f, "%s%s", k ? " " : "", es[w[k]]);
        fputc('\n', f);
    }
    fclose(f);
    f = fopen(config, "w");
    assert_non_null(f);
    fputs("{\"model_type\": \"t5\", \"architectures\": [\"T5ForConditionalGeneration\"], \"d_model\": 32,"
          " \"d_kv\": 8, \"num_heads\": 4, \"d_ff\": 64, \"num_layers\": 1, \"num_decoder_layers\": 1,"
          " \"relative_attention_num_buckets\": 8, \"relative_attention_max_distance\": 16, \"dropout_rate\": 0}", f);
    fclose(f);
    recipe_s2s_opts o = recipe_s2s_defaults();
    o.config_path = config, o.data_path = data, o.out_dir = run;
    o.vocab_size = 300, o.max_src = o.max_tgt = 16, o.val_fraction = 0.1, o.steps = 60, o.batch = 16;
    o.lr = 1e-2, o.warmup = 5, o.eval_every = 30, o.log_every = 30, o.show = 1, o.num_beams = 2;
    if (recipe_train_s2s(&o) != AG_OK) fail_msg("%s", ag_error());
    /* the held-out losses in metrics.jsonl: the first and the last */
    char path[300], line[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    f = fopen(path, "r");
    assert_non_null(f);
    double first = -1, last = -1;
    while (fgets(line, sizeof line, f)) {
        const char *v = strstr(line, "\"val_loss\": ");
        if (!v) continue;
        last = atof(v + 12);
        if (first < 0) first = last;
    }
    fclose(f);
    printf("  train-s2s held-out loss %.4f -> %.4f\n", first, last);
    assert_true(first > 0 && last < first * 2.0 / 3.0);
    /* translate reads the run back */
    char buf[256] = {0};
    FILE *mem = fmemopen(buf, sizeof buf - 1, "w");
    recipe_gen_config g = recipe_gen_defaults();
    g.max_new_tokens = 12, g.eos_token_id = -2;
    if (recipe_translate(run, "one two three", &g, false, mem) != AG_OK) fail_msg("%s", ag_error());
    fclose(mem);
    printf("  translate 'one two three' -> %s", buf);
    assert_true(strlen(buf) > 1);
    /* a corpus line without a tab is named */
    f = fopen(data, "w");
    fputs("one\tuno\nno tab here\n", f);
    fclose(f);
    assert_int_not_equal(recipe_train_s2s(&o), AG_OK);
    assert_non_null(strstr(ag_error(), "pairs.tsv:2"));
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    ag_set_threads(0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_families),
        cmocka_unit_test(test_hf_t5),
        cmocka_unit_test(test_forced_tokens),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_train_s2s),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
