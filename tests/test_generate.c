/* test_generate.c: generation (recipes/generate.c) and the key/value cache
 * (nn/kv_cache.c) of every decoder family.
 *
 *   - with the cache, greedy search, seeded sampling and beam search choose
 *     exactly the tokens they choose without it, for GPT-2, GPT-Neo (with a
 *     local window shorter than the sequence), GPT-J, OpenAI GPT and CTRL on
 *     tiny random models, and for the Hugging Face GPT-2 fixture's weights;
 *     the cached logits of every step equal the re-run's within 1e-4;
 *   - beam search with one beam equals greedy search;
 *   - beam search with enough beams returns the best sequence under Hugging
 *     Face's score (sum of log-probs / length^length_penalty, eos ending a
 *     hypothesis) found by exhaustive search over a 4-token vocabulary;
 *   - the repetition penalty, top-k, top-p and temperature equal Hugging
 *     Face's processors on hand-made logits (fixtures/generate/warpers.h);
 *   - bad options are refused with a message naming them.
 */
#include "harness.h"

#include "generate.h"
#include "models.h"
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures/generate/warpers.h"

#define GPT2_DIR HF_FIXTURE_DIR "/gpt2"

/* Tiny models of every decoder family; initializer_range 0.3 so that random
 * logits are far from uniform and greedy choices are not near-ties. */
static const char *FAMILIES[] = {
    "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"vocab_size\": 40, \"n_positions\": 48,"
    " \"n_embd\": 32, \"n_layer\": 2, \"n_head\": 4, \"initializer_range\": 0.3}",
    "{\"model_type\": \"gpt_neo\", \"architectures\": [\"GPTNeoForCausalLM\"], \"hidden_size\": 32, \"num_layers\": 2,"
    " \"num_heads\": 4, \"vocab_size\": 40, \"max_position_embeddings\": 48, \"window_size\": 5,"
    " \"attention_types\": [[[\"global\", \"local\"], 1]], \"initializer_range\": 0.3}",
    "{\"model_type\": \"gptj\", \"architectures\": [\"GPTJForCausalLM\"], \"n_embd\": 32, \"n_layer\": 2, \"n_head\": 4,"
    " \"rotary_dim\": 4, \"vocab_size\": 40, \"n_positions\": 48, \"initializer_range\": 0.3}",
    "{\"model_type\": \"openai-gpt\", \"architectures\": [\"OpenAIGPTLMHeadModel\"], \"n_embd\": 32, \"n_layer\": 2,"
    " \"n_head\": 4, \"vocab_size\": 40, \"n_positions\": 48, \"initializer_range\": 0.3}",
    "{\"model_type\": \"ctrl\", \"architectures\": [\"CTRLLMHeadModel\"], \"n_embd\": 32, \"dff\": 64, \"n_layer\": 2,"
    " \"n_head\": 4, \"vocab_size\": 40, \"n_positions\": 48, \"initializer_range\": 0.05}",
};

static void make_model(recipe_model *m, const char *config, uint64_t seed) {
    if (recipe_model_declare_text(m, config, "test config", NULL) != AG_OK) fail_msg("%s", ag_error());
    assert_int_equal(recipe_model_alloc(m, seed), AG_OK);
}

static void load_hf_gpt2(recipe_model *m) {
    assert_int_equal(recipe_model_declare(m, GPT2_DIR "/config.json", NULL), AG_OK);
    assert_int_equal(recipe_model_alloc(m, 0), AG_OK);
    if (ckpt_safetensors_load(GPT2_DIR "/model_hf.safetensors", &m->ps, m->aliases, m->n_aliases) != AG_OK)
        fail_msg("%s", ag_error());
}

/* Runs g twice, with and without the cache, and checks the tokens agree.
 * Returns the length generated. */
static int cached_equals_uncached(ag_ctx *ctx, const recipe_model *m, recipe_gen_config g, const int32_t *prompt,
                                  int n_prompt, const char *what) {
    int32_t a[128], b[128];
    int na = 0, nb = 0;
    double sa, sb;
    g.use_cache = true;
    if (recipe_generate_ids(ctx, m, &g, prompt, n_prompt, a, &na, &sa, NULL, NULL) != AG_OK) fail_msg("%s", ag_error());
    g.use_cache = false;
    if (recipe_generate_ids(ctx, m, &g, prompt, n_prompt, b, &nb, &sb, NULL, NULL) != AG_OK) fail_msg("%s", ag_error());
    if (na != nb || memcmp(a, b, (size_t)na * sizeof(int32_t)) != 0) {
        for (int i = 0; i < (na > nb ? na : nb); ++i) printf("  %2d: cached %d, uncached %d\n", i, i < na ? a[i] : -1,
                                                          i < nb ? b[i] : -1);
        fail_msg("%s: %s: the cache changed the tokens", m->arch, what);
    }
    if (fabs(sa - sb) > 1e-3 * (1 + fabs(sb))) fail_msg("%s: %s: scores %g and %g", m->arch, what, sa, sb);
    /* a sequence that is not one token repeated: the test means something */
    int distinct = 0;
    for (int i = n_prompt; i < na; ++i) distinct += a[i] != a[n_prompt];
    printf("  %-22s %-9s %d tokens (%d differ from the first), score %.4f\n", m->arch, what, na - n_prompt, distinct,
           sa);
    return na;
}

/* The cached forward's logits, one token at a time, equal the full forward's. */
static void check_cached_logits(ag_ctx *ctx, const recipe_model *m, const int32_t *ids, int T) {
    recipe_decoder_info d;
    assert_int_equal(recipe_decoder_info_get(m, &d), AG_OK);
    nn_kv_cache c;
    assert_int_equal(nn_kv_cache_init(&c, d.n_layer, 1, d.n_head, d.d_head, T), AG_OK);
    float *full = malloc((size_t)T * d.vocab_size * sizeof(float)), *step = malloc((size_t)T * d.vocab_size * sizeof(float));
    ag_ctx_reset(ctx);
    ag_no_grad_begin(ctx);
    ag_ints ii = ag_ints_wrap((int32_t *)ids, 2, AG_SHAPE(1, T));
    ag_tensor *lg = recipe_decoder_logits(ctx, m, &ii, NULL, false); /* [1,T,V] */
    assert_non_null(lg);
    memcpy(full, lg->data, (size_t)T * d.vocab_size * sizeof(float));
    /* the first 3 positions at once, then one at a time */
    for (int t = 0; t < T;) {
        int n = t == 0 ? 3 : 1;
        ag_ctx_reset(ctx);
        ag_ints one = ag_ints_wrap((int32_t *)ids + t, 2, AG_SHAPE(1, n));
        lg = recipe_decoder_logits(ctx, m, &one, &c, false);
        if (!lg) fail_msg("%s", ag_error());
        memcpy(step + (size_t)t * d.vocab_size, lg->data, (size_t)n * d.vocab_size * sizeof(float));
        t += n;
    }
    ag_no_grad_end(ctx);
    assert_int_equal(c.len, T);
    assert_close(m->arch, step, full, (int64_t)T * d.vocab_size, 1e-4, 1e-5);
    /* a full cache is refused with a message */
    ag_ints one = ag_ints_wrap((int32_t *)ids, 2, AG_SHAPE(1, 1));
    assert_null(recipe_decoder_logits(ctx, m, &one, &c, true));
    assert_non_null(strstr(ag_error(), "kv cache"));
    free(full);
    free(step);
    nn_kv_cache_free(&c);
}

static void test_cache_every_family(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_create(0);
    const int32_t prompt[] = {5, 17, 3};
    for (size_t f = 0; f < sizeof FAMILIES / sizeof *FAMILIES; ++f) {
        recipe_model m;
        make_model(&m, FAMILIES[f], 1000 + f);
        int32_t seq[40];
        for (int i = 0; i < 40; ++i) seq[i] = (int32_t)(ag_rng_u64(7, (uint64_t)i) % 40);
        check_cached_logits(ctx, &m, seq, 40);
        recipe_gen_config g = recipe_gen_defaults();
        g.max_new_tokens = 30; /* past GPT-Neo's window of 5 */
        cached_equals_uncached(ctx, &m, g, prompt, 3, "greedy");
        g.do_sample = true, g.seed = 42, g.top_k = 20, g.top_p = 0.95f, g.temperature = 0.9f;
        cached_equals_uncached(ctx, &m, g, prompt, 3, "sampling");
        g = recipe_gen_defaults();
        g.max_new_tokens = 12, g.num_beams = 4, g.eos_token_id = 39, g.repetition_penalty = 1.2f;
        cached_equals_uncached(ctx, &m, g, prompt, 3, "beams");
        recipe_model_free(&m);
    }
    ag_ctx_free(ctx);
}

static void test_hf_gpt2(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_create(0);
    recipe_model m;
    load_hf_gpt2(&m);
    int32_t seq[32];
    for (int i = 0; i < 32; ++i) seq[i] = (int32_t)(ag_rng_u64(3, (uint64_t)i) % 128);
    check_cached_logits(ctx, &m, seq, 32);
    const int32_t prompt[] = {10, 20, 30, 40};
    recipe_gen_config g = recipe_gen_defaults();
    g.max_new_tokens = 28;
    int32_t greedy[64], beam[64];
    int ng, nb;
    cached_equals_uncached(ctx, &m, g, prompt, 4, "greedy");
    g.repetition_penalty = 1.5f;
    cached_equals_uncached(ctx, &m, g, prompt, 4, "rep 1.5");
    g.repetition_penalty = 1.0f;
    assert_int_equal(recipe_generate_ids(ctx, &m, &g, prompt, 4, greedy, &ng, NULL, NULL, NULL), AG_OK);
    /* one beam is greedy search (no eos here: the scorer never finishes early) */
    recipe_gen_config b = g;
    b.num_beams = 1, b.force_beam_search = true;
    assert_int_equal(recipe_generate_ids(ctx, &m, &b, prompt, 4, beam, &nb, NULL, NULL, NULL), AG_OK);
    assert_int_equal(ng, nb);
    assert_memory_equal(greedy, beam, (size_t)ng * sizeof(int32_t));
    g.do_sample = true, g.seed = 7, g.temperature = 1.3f;
    cached_equals_uncached(ctx, &m, g, prompt, 4, "sampling");
    g = recipe_gen_defaults();
    g.max_new_tokens = 20, g.num_beams = 3, g.eos_token_id = 127;
    cached_equals_uncached(ctx, &m, g, prompt, 4, "beams");
    recipe_model_free(&m);
    ag_ctx_free(ctx);
}

/* Beam search with num_beams = 1 runs BeamSearchScorer with one beam: the
 * same tokens as greedy search, on every family, with an eos and
 * early_stopping=True (a finished hypothesis ends the search, as greedy stops
 * at eos). */
static void test_one_beam_is_greedy(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_create(0);
    const int32_t prompt[] = {1, 2};
    for (size_t f = 0; f < sizeof FAMILIES / sizeof *FAMILIES; ++f) {
        recipe_model m;
        make_model(&m, FAMILIES[f], 2000 + f);
        for (int eos = -1; eos < 40; eos += 8) {
            recipe_gen_config g = recipe_gen_defaults();
            g.max_new_tokens = 16, g.eos_token_id = eos;
            int32_t a[32], b[32];
            int na, nb;
            assert_int_equal(recipe_generate_ids(ctx, &m, &g, prompt, 2, a, &na, NULL, NULL, NULL), AG_OK);
            g.num_beams = 1, g.force_beam_search = true;
            g.early_stopping = RECIPE_EARLY_STOP_TRUE;
            assert_int_equal(recipe_generate_ids(ctx, &m, &g, prompt, 2, b, &nb, NULL, NULL, NULL), AG_OK);
            assert_int_equal(na, nb);
            assert_memory_equal(a, b, (size_t)na * sizeof(int32_t));
        }
        recipe_model_free(&m);
    }
    ag_ctx_free(ctx);
}

/* ---------------------------------------------------------------- beam search against exhaustive search */

#define EX_V 4
#define EX_EOS 3
#define EX_L 3

static const char *EX_CONFIG =
    "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"vocab_size\": 4, \"n_positions\": 16,"
    " \"n_embd\": 16, \"n_layer\": 2, \"n_head\": 2, \"initializer_range\": 0.8}";

/* Every continuation of prompt up to EX_L tokens, scored as Hugging Face's
 * BeamHypotheses scores it: ended by eos (the hypothesis is the sequence
 * before the eos, its log-prob counted) or at max_length. */
static void exhaust(ag_ctx *ctx, const recipe_model *m, int32_t *seq, int len, int n_prompt, double sum, double lp,
                    int eos, double *best, int32_t *best_seq, int *best_len) {
    const int max_length = n_prompt + EX_L;
    if (len == max_length) {
        double s = sum / pow(len, lp);
        if (s > *best) *best = s, *best_len = len, memcpy(best_seq, seq, (size_t)len * sizeof(int32_t));
        return;
    }
    ag_ctx_reset(ctx);
    ag_no_grad_begin(ctx);
    ag_ints ii = ag_ints_wrap(seq, 2, AG_SHAPE(1, len));
    ag_tensor *lg = recipe_decoder_logits(ctx, m, &ii, NULL, true);
    ag_no_grad_end(ctx);
    assert_non_null(lg);
    double l[EX_V], mx = lg->data[0], z = 0;
    for (int v = 1; v < EX_V; ++v) mx = fmax(mx, lg->data[v]);
    for (int v = 0; v < EX_V; ++v) z += exp(lg->data[v] - mx);
    for (int v = 0; v < EX_V; ++v) l[v] = lg->data[v] - mx - log(z);
    for (int v = 0; v < EX_V; ++v) {
        if (v == eos) {
            double s = (sum + l[v]) / pow(len, lp); /* the hypothesis is seq[0..len), eos not counted in length */
            if (s > *best) {
                *best = s, *best_len = len + 1;
                memcpy(best_seq, seq, (size_t)len * sizeof(int32_t));
                best_seq[len] = eos;
            }
            continue;
        }
        seq[len] = v;
        exhaust(ctx, m, seq, len + 1, n_prompt, sum + l[v], lp, eos, best, best_seq, best_len);
    }
}

static void test_beam_is_exhaustive(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_create(0);
    for (int seed = 0; seed < 3; ++seed) {
        recipe_model m;
        make_model(&m, EX_CONFIG, 77 + seed);
        const int32_t prompt[] = {(int32_t)seed % 3, 1};
        const struct { int eos; double lp; } cases[] = {{-1, 1.0}, {EX_EOS, 1.0}, {EX_EOS, 0.0}, {EX_EOS, 2.0},
                                                        {EX_EOS, -1.0}};
        for (size_t c = 0; c < sizeof cases / sizeof *cases; ++c) {
            int32_t seq[16], best_seq[16], out[16];
            double best = -INFINITY, score;
            int best_len = 0, n;
            memcpy(seq, prompt, sizeof prompt);
            exhaust(ctx, &m, seq, 2, 2, 0.0, cases[c].lp, cases[c].eos, &best, best_seq, &best_len);
            recipe_gen_config g = recipe_gen_defaults();
            g.max_new_tokens = EX_L, g.eos_token_id = cases[c].eos, g.length_penalty = (float)cases[c].lp;
            /* V^L beams keep every prefix alive; "never" waits for the exact bound */
            g.num_beams = 64, g.early_stopping = RECIPE_EARLY_STOP_NEVER;
            for (int cache = 0; cache < 2; ++cache) {
                g.use_cache = cache;
                if (recipe_generate_ids(ctx, &m, &g, prompt, 2, out, &n, &score, NULL, NULL)) fail_msg("%s", ag_error());
                if (n != best_len || memcmp(out, best_seq, (size_t)n * sizeof(int32_t)) || fabs(score - best) > 1e-4) {
                    printf("seed %d eos %d lp %g: beam", seed, cases[c].eos, cases[c].lp);
                    for (int i = 0; i < n; ++i) printf(" %d", out[i]);
                    printf(" (%g), exhaustive", score);
                    for (int i = 0; i < best_len; ++i) printf(" %d", best_seq[i]);
                    printf(" (%g)\n", best);
                    fail();
                }
            }
            /* fewer beams never beat the optimum, and report their own sequence's score */
            g.num_beams = 2, g.early_stopping = RECIPE_EARLY_STOP_FALSE;
            assert_int_equal(recipe_generate_ids(ctx, &m, &g, prompt, 2, out, &n, &score, NULL, NULL), AG_OK);
            assert_true(score <= best + 1e-6);
        }
        recipe_model_free(&m);
    }
    ag_ctx_free(ctx);
}

/* ---------------------------------------------------------------- processors and warpers */

static void test_warpers_match_hf(void **state) {
    (void)state;
    int scratch[WARP_V];
    for (size_t c = 0; c < sizeof warp_cases / sizeof *warp_cases; ++c) {
        const char *name = warp_cases[c].name;
        for (int r = 0; r < WARP_ROWS; ++r) {
            float x[WARP_V];
            memcpy(x, warp_logits[r], sizeof x);
            if (strcmp(name, "repetition_1_3") == 0) recipe_repetition_penalty(x, WARP_V, warp_ids[r], WARP_NIDS, 1.3f);
            else if (strcmp(name, "repetition_0_7") == 0)
                recipe_repetition_penalty(x, WARP_V, warp_ids[r], WARP_NIDS, 0.7f);
            else if (strcmp(name, "top_k_3") == 0) recipe_top_k(x, WARP_V, 3, scratch);
            else if (strcmp(name, "top_k_1") == 0) recipe_top_k(x, WARP_V, 1, scratch);
            else if (strcmp(name, "top_p_0_5") == 0) recipe_top_p(x, WARP_V, 0.5f, scratch);
            else if (strcmp(name, "top_p_0_9") == 0) recipe_top_p(x, WARP_V, 0.9f, scratch);
            else if (strcmp(name, "chain_t0_7_k4_p0_8") == 0) {
                recipe_temperature(x, WARP_V, 0.7f);
                recipe_top_k(x, WARP_V, 4, scratch);
                recipe_top_p(x, WARP_V, 0.8f, scratch);
            } else fail_msg("unknown case %s", name);
            for (int v = 0; v < WARP_V; ++v) {
                float e = warp_cases[c].expected[r][v];
                bool same = isinf(e) ? x[v] == e : fabsf(x[v] - e) <= 1e-6f * (1 + fabsf(e));
                if (!same) fail_msg("%s row %d token %d: %g, Hugging Face %g", name, r, v, x[v], e);
            }
        }
    }
    /* sampling only ever draws kept tokens; greedy is the first argmax */
    recipe_sampling s = {.temperature = 1.0f, .top_k = 2, .top_p = 1.0f, .seed = 3};
    for (int i = 0; i < 200; ++i) {
        float x[WARP_V];
        memcpy(x, warp_logits[0], sizeof x);
        int t = recipe_sample(&s, x, WARP_V, scratch);
        assert_true(t == 0 || t == 3);
    }
    assert_int_equal(recipe_argmax(warp_logits[1], WARP_V), 0);
    float x[WARP_V];
    memcpy(x, warp_logits[0], sizeof x);
    recipe_force_token(x, WARP_V, 5);
    assert_int_equal(recipe_argmax(x, WARP_V), 5);
    assert_true(isinf(x[0]) && x[5] == 0.0f);
}

/* A forced start token, and options refused with their names. */
static void test_options(void **state) {
    (void)state;
    ag_ctx *ctx = ag_ctx_create(0);
    recipe_model m;
    make_model(&m, FAMILIES[0], 5);
    int32_t out[64], one = 9;
    int n;
    recipe_gen_config g = recipe_gen_defaults();
    g.max_new_tokens = 5, g.forced_bos_token_id = 33;
    assert_int_equal(recipe_generate_ids(ctx, &m, &g, &one, 1, out, &n, NULL, NULL, NULL), AG_OK);
    assert_int_equal(n, 6);
    assert_int_equal(out[1], 33);
    g.num_beams = 3;
    assert_int_equal(recipe_generate_ids(ctx, &m, &g, &one, 1, out, &n, NULL, NULL, NULL), AG_OK);
    assert_int_equal(out[1], 33);
    /* max_length is capped at n_positions (48) */
    g = recipe_gen_defaults();
    g.max_new_tokens = 100;
    int32_t big[128];
    assert_int_equal(recipe_generate_ids(ctx, &m, &g, &one, 1, big, &n, NULL, NULL, NULL), AG_OK);
    assert_int_equal(n, 48);
    struct { recipe_gen_config g; const char *word; } bad[] = {
        {recipe_gen_defaults(), "temperature"}, {recipe_gen_defaults(), "top_p"}, {recipe_gen_defaults(), "num_beams"},
        {recipe_gen_defaults(), "eos_token_id"}, {recipe_gen_defaults(), "repetition_penalty"},
    };
    bad[0].g.temperature = 0, bad[1].g.top_p = 1.5f, bad[2].g.num_beams = 0, bad[3].g.eos_token_id = 40;
    bad[4].g.repetition_penalty = -1;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        assert_int_not_equal(recipe_generate_ids(ctx, &m, &bad[i].g, &one, 1, out, &n, NULL, NULL, NULL), AG_OK);
        if (!strstr(ag_error(), bad[i].word)) fail_msg("'%s' does not name %s", ag_error(), bad[i].word);
    }
    int32_t oov = 40;
    g = recipe_gen_defaults();
    assert_int_not_equal(recipe_generate_ids(ctx, &m, &g, &oov, 1, out, &n, NULL, NULL, NULL), AG_OK);
    assert_non_null(strstr(ag_error(), "prompt token"));
    recipe_model_free(&m);
    /* an encoder is refused */
    make_model(&m, "{\"model_type\": \"bert\", \"architectures\": [\"BertForMaskedLM\"], \"vocab_size\": 30,"
                   " \"hidden_size\": 16, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
                   "\"intermediate_size\": 32}", 1);
    assert_int_not_equal(recipe_generate_ids(ctx, &m, &g, &one, 1, out, &n, NULL, NULL, NULL), AG_OK);
    assert_non_null(strstr(ag_error(), "not a decoder"));
    recipe_model_free(&m);
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warpers_match_hf),  cmocka_unit_test(test_cache_every_family),
        cmocka_unit_test(test_hf_gpt2),           cmocka_unit_test(test_one_beam_is_greedy),
        cmocka_unit_test(test_beam_is_exhaustive), cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
