/* test_recipes.c: every pretraining objective through the trainer
 * (recipes/pretrain.c) on a small generated corpus, no network:
 *   - each objective trains a tiny model for a few dozen steps from a fresh
 *     start and its held-out loss falls;
 *   - an interrupted and resumed run ends with the unbroken run's parameters,
 *     bit for bit (mlm and span);
 *   - ELECTRA's generator and discriminator embeddings are one tensor: a
 *     gradient step through the generator alone moves the discriminator's.
 *
 * The corpus: 48 documents over ids 5..39 (0 pad, 1 unk, 2 cls, 3 sep,
 * 4 mask), each a chain x[i+1] = f(x[i]) from a random start, so every
 * objective has something to learn; sentences of 5 to 9 ids. For ctrl the
 * first id of a document is its control code (5 or 6) and f depends on it.
 * It is written as one shard per split plus a manifest, as `tapegrad
 * prepare` writes them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ckpt.h"
#include "data.h"
#include "optim.h"
#include "pretrain.h"
#include "tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define V 40
static char dir[64];

static void write_file(const char *name, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* tlm's second language: every content id shifted by this, so a pair's two
 * sentences are a word-for-word "translation" of each other */
static int translate_shift;

/* One split's shard in folder sub: n_docs documents of the chain. */
static void write_split(const char *sub, const char *split, int n_docs, uint64_t seed, bool control) {
    int32_t tokens[8192];
    int64_t doc[256], sent[2048], n = 0, nd = 0, ns = 0;
    uint64_t r = seed;
    for (int d = 0; d < n_docs; ++d) {
        doc[nd++] = n;
        int code = 5 + (d & 1);
        if (control) tokens[n++] = code;
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int x = 7 + (int)((r >> 33) % 33);
        for (int s = 0; s < 4; ++s) {
            sent[ns++] = n;
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            int len = 5 + (int)((r >> 33) % 5);
            for (int i = 0; i < len; ++i) {
                tokens[n++] = 7 + (x - 7 + translate_shift) % 33;
                x = 7 + ((x - 7) * (control && code == 6 ? 5 : 7) + 3) % 33;
            }
        }
        tokens[n++] = 3; /* the separator */
    }
    data_doc_shard s = {.tokens = tokens, .n = n, .doc_start = doc, .n_docs = nd, .sent_start = sent, .n_sents = ns,
                        .vocab_size = V, .sep_id = 3};
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s-00000.tgs", dir, sub, split);
    assert_int_equal(data_doc_shard_write(path, &s, NULL), AG_OK);
}

static void write_data(const char *sub, bool control) {
    char path[512], m[1024];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    assert_int_equal(ag_make_dirs(path), AG_OK);
    write_split(sub, "train", 48, 1, control);
    write_split(sub, "val", 8, 2, control);
    snprintf(m, sizeof m, "{\"vocab_size\": %d, \"separator_id\": 3, \"special_ids\": {\"pad\": 0, \"unk\": 1, "
             "\"cls\": 2, \"sep\": 3, \"mask\": 4, \"end_of_text\": 3}, \"splits\": {\"train\": {\"shards\": "
             "[{\"file\": \"train-00000.tgs\"}]}, \"val\": {\"shards\": [{\"file\": \"val-00000.tgs\"}]}}}\n", V);
    snprintf(path, sizeof path, "%s/manifest.json", sub);
    write_file(path, m);
}

#define ENC "\"vocab_size\": 40, \"hidden_size\": 32, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, " \
            "\"intermediate_size\": 64, \"max_position_embeddings\": 32, \"type_vocab_size\": 2, \"pad_token_id\": 0, " \
            "\"hidden_dropout_prob\": 0.0, \"attention_probs_dropout_prob\": 0.0, \"hidden_act\": \"gelu\""

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/tapegrad-recipes-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    ag_set_threads(1);
    write_data("data", false);
    write_data("ctrl-data", true);
    translate_shift = 11; /* the same documents, "translated" */
    write_data("tgt-data", false);
    translate_shift = 0;
    write_file("mlm.json", "{\"model_type\": \"bert\", \"architectures\": [\"BertForMaskedLM\"], " ENC "}");
    write_file("nsp.json", "{\"model_type\": \"bert\", \"architectures\": [\"BertForPreTraining\"], " ENC "}");
    write_file("sop.json", "{\"model_type\": \"albert\", \"architectures\": [\"AlbertForPreTraining\"], "
                           "\"embedding_size\": 16, " ENC "}");
    write_file("disc.json", "{\"model_type\": \"electra\", \"architectures\": [\"ElectraForPreTraining\"], "
                            "\"embedding_size\": 16, " ENC "}");
    write_file("gen.json", "{\"model_type\": \"electra\", \"architectures\": [\"ElectraForMaskedLM\"], "
                           "\"vocab_size\": 40, \"embedding_size\": 16, \"hidden_size\": 16, \"num_hidden_layers\": 1, "
                           "\"num_attention_heads\": 1, \"intermediate_size\": 32, \"max_position_embeddings\": 32, "
                           "\"type_vocab_size\": 2, \"pad_token_id\": 0, \"hidden_dropout_prob\": 0.0, "
                           "\"attention_probs_dropout_prob\": 0.0}");
    write_file("span.json", "{\"model_type\": \"t5\", \"architectures\": [\"T5ForConditionalGeneration\"], "
                            "\"vocab_size\": 50, \"d_model\": 32, \"d_kv\": 16, \"d_ff\": 64, \"num_heads\": 2, "
                            "\"num_layers\": 1, \"num_decoder_layers\": 1, \"dropout_rate\": 0.0, "
                            "\"feed_forward_proj\": \"relu\", \"pad_token_id\": 0, \"eos_token_id\": 3, "
                            "\"decoder_start_token_id\": 0}");
    write_file("denoise.json", "{\"model_type\": \"bart\", \"architectures\": [\"BartForConditionalGeneration\"], "
                               "\"vocab_size\": 40, \"d_model\": 32, \"encoder_layers\": 1, \"decoder_layers\": 1, "
                               "\"encoder_attention_heads\": 2, \"decoder_attention_heads\": 2, \"encoder_ffn_dim\": 64, "
                               "\"decoder_ffn_dim\": 64, \"max_position_embeddings\": 32, \"dropout\": 0.0, "
                               "\"attention_dropout\": 0.0, \"activation_dropout\": 0.0, \"pad_token_id\": 0, "
                               "\"bos_token_id\": 2, \"eos_token_id\": 3, \"decoder_start_token_id\": 3}");
    write_file("tlm.json", "{\"model_type\": \"xlm\", \"architectures\": [\"XLMWithLMHeadModel\"], \"vocab_size\": 40, "
                           "\"emb_dim\": 32, \"n_layers\": 1, \"n_heads\": 2, \"max_position_embeddings\": 48, "
                           "\"dropout\": 0.0, \"attention_dropout\": 0.0, \"pad_index\": 0, \"n_langs\": 2, "
                           "\"use_lang_emb\": true, \"mask_index\": 4}");
    write_file("ctrl.json", "{\"model_type\": \"ctrl\", \"architectures\": [\"CTRLLMHeadModel\"], \"vocab_size\": 40, "
                            "\"n_positions\": 32, \"n_embd\": 32, \"dff\": 64, \"n_layer\": 1, \"n_head\": 2, "
                            "\"resid_pdrop\": 0.0, \"embd_pdrop\": 0.0}");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static recipe_pretrain_opts opts(const char *recipe, const char *config, const char *data, const char *out, int steps,
                                 int T) {
    static char cfg[128], dat[128], o[128], gen[128];
    snprintf(cfg, sizeof cfg, "%s/%s", dir, config);
    snprintf(dat, sizeof dat, "%s/%s", dir, data);
    snprintf(o, sizeof o, "%s/%s", dir, out);
    snprintf(gen, sizeof gen, "%s/gen.json", dir);
    recipe_pretrain_opts po = {
        .train = {.config_path = cfg, .data_dir = dat, .out_dir = o, .steps = steps, .batch = 8, .seq = T,
                  .grad_accum = 2, .lr = 3e-3, .min_lr = 3e-4, .weight_decay = 0.01, .clip = 1.0, .warmup = 2,
                  .schedule = "cosine", .log_every = 1000, .eval_every = 1000, .eval_batches = 2, .save_every = 0,
                  .seed = 7},
        .recipe = recipe,
        .generator_config = gen,
        .quiet = true,
    };
    return po;
}

/* Each objective: the held-out loss after 40 steps is at least 0.1 below the start's. */
static void learns(const char *recipe, const char *config, const char *data, int T) {
    double first = NAN, last = NAN;
    recipe_pretrain_opts po = opts(recipe, config, data, recipe, 40, T);
    po.first_val = &first, po.last_val = &last;
    ag_status st = recipe_pretrain(&po);
    if (st) fail_msg("%s: %s", recipe, ag_error());
    print_message("%-8s held-out loss %.4f -> %.4f\n", recipe, first, last);
    assert_true(isfinite(first) && isfinite(last));
    assert_true(last < first - 0.1); /* the held-out batches are fixed: a fall is no noise */
}

static void test_mlm_learns(void **state) { (void)state; learns("mlm", "mlm.json", "data", 24); }
static void test_nsp_learns(void **state) { (void)state; learns("nsp", "nsp.json", "data", 24); }
static void test_sop_learns(void **state) { (void)state; learns("sop", "sop.json", "data", 24); }
static void test_electra_learns(void **state) { (void)state; learns("electra", "disc.json", "data", 24); }
static void test_span_learns(void **state) { (void)state; learns("span", "span.json", "data", 24); }
static void test_denoise_learns(void **state) { (void)state; learns("denoise", "denoise.json", "data", 24); }
/* tlm: pairs of aligned documents from data/ and tgt-data/, languages 0 and 1,
 * positions restarted at the second sentence (XLM reads position_ids). */
static void test_tlm_learns(void **state) {
    (void)state;
    double first = NAN, last = NAN;
    static char tgt[128];
    snprintf(tgt, sizeof tgt, "%s/tgt-data", dir);
    recipe_pretrain_opts po = opts("tlm", "tlm.json", "data", "tlm", 40, 48);
    po.tgt_data_dir = tgt;
    po.first_val = &first, po.last_val = &last;
    if (recipe_pretrain(&po)) fail_msg("tlm: %s", ag_error());
    print_message("%-8s held-out loss %.4f -> %.4f\n", "tlm", first, last);
    assert_true(isfinite(first) && isfinite(last));
    assert_true(last < first - 0.1);
}

static void test_ctrl_learns(void **state) { (void)state; learns("ctrl", "ctrl.json", "ctrl-data", 24); }

/* mlm with ALBERT's n-gram masking (--masking ngram) learns too */
static void test_mlm_ngram_learns(void **state) {
    (void)state;
    double first = NAN, last = NAN;
    recipe_pretrain_opts po = opts("mlm", "mlm.json", "data", "mlm-ngram", 40, 24);
    po.masking = "ngram";
    po.first_val = &first, po.last_val = &last;
    if (recipe_pretrain(&po)) fail_msg("mlm ngram: %s", ag_error());
    print_message("%-8s held-out loss %.4f -> %.4f\n", "mlm ngram", first, last);
    assert_true(isfinite(first) && isfinite(last));
    assert_true(last < first - 0.1);
}

/* ALBERT's word starts (is_start_piece) for n-gram masking: WordPiece's "##"
 * pieces continue a word; in a SentencePiece vocabulary a piece continues
 * unless it starts with U+2581 or '<', is one punctuation mark, or holds a
 * character other than an ASCII letter or punctuation. */
static void test_word_continuations(void **state) {
    (void)state;
    data_tokenizer t;
    uint8_t cont[4096];
    assert_int_equal(data_tokenizer_load(&t, FIXTURE_DIR "/tokenizers/wordpiece"), AG_OK);
    assert_true(recipe_word_continuations(&t, t.n_tokens, cont));
    int n_cont = 0;
    for (int32_t id = 0; id < t.n_tokens; ++id) {
        assert_int_equal(cont[id], strncmp(t.tokens[id], "##", 2) == 0);
        n_cont += cont[id];
    }
    print_message("wordpiece: %d of %d ids are \"##\" pieces\n", n_cont, t.n_tokens);
    assert_true(n_cont > 0);
    data_tokenizer_free(&t);
    assert_int_equal(data_tokenizer_load(&t, FIXTURE_DIR "/unigram/tiny.model"), AG_OK);
    assert_true(t.n_tokens <= 4096);
    assert_true(recipe_word_continuations(&t, t.n_tokens, cont));
    int starts = 0, conts = 0;
    for (int32_t id = 0; id < t.n_tokens; ++id) {
        const char *p = t.tokens[id];
        if (strncmp(p, "\xe2\x96\x81", 3) == 0 || p[0] == '<') assert_int_equal(cont[id], 0);
        bool digit = false;
        for (const char *c = p; *c; ++c) digit |= *c >= '0' && *c <= '9';
        if (digit) assert_int_equal(cont[id], 0);
        starts += !cont[id], conts += cont[id];
    }
    print_message("sentencepiece: %d word starts, %d continuations\n", starts, conts);
    assert_true(starts > 0 && conts > 0);
    data_tokenizer_free(&t);
}

/* The parameters saved in run/ckpt.h5, in a fresh registry of the config. */
static float *saved_params(const char *config, const char *run, int64_t *n) {
    char cfg[128], path[512];
    snprintf(cfg, sizeof cfg, "%s/%s", dir, config);
    snprintf(path, sizeof path, "%s/%s/ckpt.h5", dir, run);
    recipe_model m;
    assert_int_equal(recipe_model_declare(&m, cfg, NULL), AG_OK);
    assert_int_equal(ag_params_finalize(&m.ps), AG_OK);
    if (ckpt_load_params(path, &m.ps)) fail_msg("%s", ag_error());
    *n = m.ps.total;
    float *v = malloc((size_t)m.ps.total * sizeof *v);
    memcpy(v, m.ps.values, (size_t)m.ps.total * sizeof *v);
    recipe_model_free(&m);
    return v;
}

/* 8 steps unbroken == 3 steps, stop, resume to 8: every parameter bitwise. */
static void resumes(const char *recipe, const char *config) {
    char a[64], b[64];
    snprintf(a, sizeof a, "%s-whole", recipe);
    snprintf(b, sizeof b, "%s-resumed", recipe);
    recipe_pretrain_opts po = opts(recipe, config, "data", a, 8, 24);
    if (recipe_pretrain(&po)) fail_msg("%s", ag_error());
    po = opts(recipe, config, "data", b, 8, 24);
    po.train.stop_at = 3;
    if (recipe_pretrain(&po)) fail_msg("%s", ag_error());
    po = opts(recipe, config, "data", b, 8, 24);
    po.train.resume = true;
    if (recipe_pretrain(&po)) fail_msg("%s", ag_error());
    int64_t na, nb;
    float *va = saved_params(config, a, &na), *vb = saved_params(config, b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(va, vb, (size_t)na * sizeof *va);
    free(va);
    free(vb);
}

static void test_resume_mlm(void **state) { (void)state; resumes("mlm", "mlm.json"); }
static void test_resume_span(void **state) { (void)state; resumes("span", "span.json"); }

/* ELECTRA: one embedding tensor. The generator's embedding tensors point at the
 * discriminator's slices, and one AdamW step on the generator's loss alone
 * moves the discriminator's word embeddings. */
static void test_electra_shares_embeddings(void **state) {
    (void)state;
    char disc[128], gen[128], data[128];
    snprintf(disc, sizeof disc, "%s/disc.json", dir);
    snprintf(gen, sizeof gen, "%s/gen.json", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    recipe_objective_state s;
    recipe_owned_corpus c;
    assert_int_equal(recipe_corpus_load(&c, data, "train", false), AG_OK);
    if (recipe_objective_init(&s, RECIPE_OBJ_ELECTRA, disc, gen, &c, 4, 16, 1) || recipe_objective_alloc(&s, 1))
        fail_msg("%s", ag_error());
    ag_tensor *w = ag_params_find(&s.model.ps, "electra.embeddings.word_embeddings.weight");
    assert_non_null(w);
    assert_ptr_equal(s.gen.emb.word.w->data, w->data);
    assert_ptr_equal(s.gen.emb.word.w->grad, w->grad);
    /* the generator's own layers live in the registry under "generator." */
    assert_non_null(ag_params_find(&s.model.ps, "generator.electra.encoder.layer.0.attention.self.query.weight"));
    assert_null(ag_params_find(&s.model.ps, "generator.electra.embeddings.word_embeddings.weight"));

    recipe_collate_config cfg;
    int32_t unk;
    recipe_collate_defaults(&cfg, V);
    assert_int_equal(recipe_manifest_specials(data, &cfg, &unk), AG_OK);
    recipe_batch b;
    assert_int_equal(recipe_collate_electra(&b, &c.c, &cfg, 4, 16, 1, 0), AG_OK);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *h = nn_electra_forward(ctx, &s.gen, recipe_batch_get(&b, "input_ids"), NULL,
                                      recipe_batch_get(&b, "attention_mask"));
    ag_tensor *loss = ag_cross_entropy(ctx, nn_electra_generator_logits(ctx, &s.gen, h),
                                       recipe_batch_get(&b, "labels"), 0.0f, AG_REDUCE_MEAN);
    assert_non_null(loss);
    assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
    double g = 0;
    for (int64_t i = 0; i < w->numel; ++i) g += fabs(w->grad[i]);
    assert_true(g > 0); /* the generator's gradient landed in the discriminator's embeddings */
    float *before = malloc((size_t)w->numel * sizeof *before);
    memcpy(before, w->data, (size_t)w->numel * sizeof *before);
    optim *opt;
    optim_config oc = optim_adamw_defaults();
    assert_int_equal(optim_create(&opt, &s.model.ps, &oc), AG_OK);
    assert_int_equal(optim_step(opt, 1e-2), AG_OK);
    assert_true(memcmp(before, w->data, (size_t)w->numel * sizeof *before) != 0);
    optim_free(opt);
    free(before);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_objective_free(&s);
    recipe_owned_corpus_free(&c);
}

/* Errors are values that name the parameter. */
static void test_errors(void **state) {
    (void)state;
    recipe_pretrain_opts po = opts("mlmx", "mlm.json", "data", "bad", 2, 24);
    assert_int_equal(recipe_pretrain(&po), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "--recipe"));
    po = opts("electra", "disc.json", "data", "bad", 2, 24);
    po.generator_config = NULL;
    assert_int_equal(recipe_pretrain(&po), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "--generator-config"));
    po = opts("tlm", "mlm.json", "data", "bad", 2, 24);
    assert_int_equal(recipe_pretrain(&po), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "--tgt-data"));
    po = opts("sop", "sop.json", "data", "bad", 2, 24);
    po.masking = "spans";
    assert_int_equal(recipe_pretrain(&po), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "--masking 'spans'"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlm_learns),     cmocka_unit_test(test_nsp_learns),
        cmocka_unit_test(test_sop_learns),     cmocka_unit_test(test_electra_learns),
        cmocka_unit_test(test_span_learns),    cmocka_unit_test(test_denoise_learns),
        cmocka_unit_test(test_ctrl_learns),    cmocka_unit_test(test_tlm_learns),
        cmocka_unit_test(test_mlm_ngram_learns), cmocka_unit_test(test_word_continuations),
        cmocka_unit_test(test_resume_mlm),
        cmocka_unit_test(test_resume_span),    cmocka_unit_test(test_electra_shares_embeddings),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
