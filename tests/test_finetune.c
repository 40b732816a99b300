/* test_finetune.c: classifier fine-tuning (recipes/finetune.c) and the
 * GPT2ForSequenceClassification head (nn/gpt2.c).
 *
 *   - the metrics against values computed by hand (binary and three classes);
 *   - the TSV reader refuses malformed lines, naming the file and the line;
 *   - GPT2ForSequenceClassification's pooled logits, loss and every gradient
 *     equal a PyTorch transcription of Hugging Face's class
 *     (tests/fixtures/finetune/, made by gen_gpt2_cls.py);
 *   - freezing: parameters frozen by --freeze N or --freeze-all-but-head are
 *     bitwise unchanged after training, the others move;
 *   - the kept checkpoint is the best epoch's (bag-of-words model: fast), and
 *     --test scores those kept weights;
 *   - an imported Hugging Face BERT on pairs, and own DistilBERT, ALBERT,
 *     ELECTRA and DeBERTa v2 runs (WordPiece, prepare, pretrain mlm) read
 *     through their own tokenizer and classified by each family's head.
 * No network, a few seconds.
 */
#include "harness.h"

#include "ckpt.h"
#include "finetune.h"
#include "gpt2.h"
#include "models.h"
#include "pretrain.h"
#include "tokenizer.h"
#include "data.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FT_DIR FIXTURE_DIR "/finetune"

/* ---------------------------------------------------------------- helpers */

static char tmp_root[256];

static const char *tmp_path(char *buf, size_t n, const char *name) {
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "/tmp/tapegrad-test-finetune-%d", (int)getpid());
        ag_make_dirs(tmp_root);
    }
    snprintf(buf, n, "%s/%s", tmp_root, name);
    return buf;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static float *read_h5(hid_t f, const char *name, int64_t *n) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t sp = H5Dget_space(d);
    int64_t count = H5Sget_simple_extent_npoints(sp);
    float *x = malloc((size_t)(count ? count : 1) * sizeof(float));
    H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Sclose(sp);
    H5Dclose(d);
    if (n) *n = count;
    return x;
}

/* ---------------------------------------------------------------- metrics */

static void test_metrics_by_hand(void **state) {
    (void)state;
    recipe_cls_metrics m;
    /* tp 3 (0, 2, 6), fn 1 (1), fp 1 (4), tn 3 (3, 5, 7):
     * accuracy 6/8; F1 = 2*3 / (2*3 + 1 + 1) = 0.75;
     * MCC = (3*3 - 1*1) / sqrt(4*4*4*4) = 8/16 = 0.5 */
    const int32_t g2[] = {1, 1, 1, 0, 0, 0, 1, 0}, p2[] = {1, 0, 1, 0, 1, 0, 1, 0};
    assert_int_equal(recipe_cls_metrics_compute(g2, p2, 8, 2, &m), AG_OK);
    assert_true(fabs(m.accuracy - 0.75) < 1e-12);
    assert_true(fabs(m.f1 - 0.75) < 1e-12);
    assert_true(fabs(m.mcc - 0.5) < 1e-12);

    /* three classes; the confusion matrix (rows truth, columns prediction)
     *   [1 1 0; 0 2 0; 1 0 1]
     * accuracy 4/6; F1 per class 2tp/(p+t): 2/4, 4/5, 2/3, macro 0.655556;
     * MCC = (4*6 - (2*2 + 3*2 + 1*2)) / sqrt((36 - 14)(36 - 12)) = 12/sqrt(528) */
    const int32_t g3[] = {0, 0, 1, 1, 2, 2}, p3[] = {0, 1, 1, 1, 2, 0};
    assert_int_equal(recipe_cls_metrics_compute(g3, p3, 6, 3, &m), AG_OK);
    assert_true(fabs(m.accuracy - 4.0 / 6) < 1e-12);
    assert_true(fabs(m.f1 - (0.5 + 0.8 + 2.0 / 3) / 3) < 1e-12);
    assert_true(fabs(m.mcc - 12 / sqrt(528.0)) < 1e-12);

    /* a constant prediction: MCC's denominator is 0, MCC 0; F1 of class 1 is 0 */
    const int32_t pc[] = {0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(recipe_cls_metrics_compute(g2, pc, 8, 2, &m), AG_OK);
    assert_true(m.mcc == 0 && m.f1 == 0 && fabs(m.accuracy - 0.5) < 1e-12);

    /* a label outside the range is refused */
    const int32_t bad[] = {0, 2};
    assert_int_equal(recipe_cls_metrics_compute(bad, bad, 2, 2, &m), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "example 1"));
}

/* ---------------------------------------------------------------- the TSV reader */

static void test_tsv_reader(void **state) {
    (void)state;
    char path[512];
    recipe_tsv d;
    tmp_path(path, sizeof path, "ok.tsv");
    write_text(path, "1\ta fine film .\n0\tdull .\r\n\n2\tthird\n");
    assert_int_equal(recipe_tsv_read(&d, path), AG_OK);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.n_texts, 1);
    assert_int_equal(d.max_label, 2);
    assert_string_equal(d.ex[1].a, "dull ."); /* CRLF stripped */
    assert_null(d.ex[0].b);
    recipe_tsv_free(&d);

    tmp_path(path, sizeof path, "pairs.tsv");
    write_text(path, "0\tA man sleeps.\tA man is awake.\n1\tx\ty\n");
    assert_int_equal(recipe_tsv_read(&d, path), AG_OK);
    assert_int_equal(d.n_texts, 2);
    assert_string_equal(d.ex[0].b, "A man is awake.");
    recipe_tsv_free(&d);

    static const struct { const char *text, *want; } bad[] = {
        {"1\tgood\n0\tbad\n1 no tab here\n", ":3: 1 tab-separated columns"},
        {"1\tgood\n0\ta\tb\n", ":2: 3 columns, but the first example has 2"},
        {"1\tgood\npositive\tbad\n", ":2: label 'positive' is not a whole number"},
        {"1\tgood\n-1\tbad\n", ":2: label '-1'"},
        {"1\tgood\n0\t\n", ":2: column 2 (text) is empty"},
        {"1\ta\tb\tc\n", ":1: 4 tab-separated columns"},
        {"\n\n", "no examples"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        tmp_path(path, sizeof path, "bad.tsv");
        write_text(path, bad[i].text);
        assert_int_equal(recipe_tsv_read(&d, path), AG_ERR_ARG);
        if (!strstr(ag_error(), path) || !strstr(ag_error(), bad[i].want))
            fail_msg("case %zu: message '%s' should name %s and say '%s'", i, ag_error(), path, bad[i].want);
    }
    assert_int_equal(recipe_tsv_read(&d, "/nonexistent/x.tsv"), AG_ERR_IO);
}

/* ---------------------------------------------------------------- GPT2ForSequenceClassification */

static void test_gpt2_cls_matches_pytorch(void **state) {
    (void)state;
    nn_config cfg;
    assert_int_equal(nn_config_load(&cfg, FT_DIR "/config.json"), AG_OK);
    nn_gpt2_config gc;
    assert_int_equal(nn_gpt2_config_read(&cfg, &gc), AG_OK);
    int pad, num_labels;
    assert_int_equal(nn_config_int(&cfg, "pad_token_id", -1, -1, 1 << 24, &pad), AG_OK);
    assert_int_equal(nn_config_int(&cfg, "num_labels", 2, 1, 1000, &num_labels), AG_OK);
    ag_params ps;
    ag_params_init(&ps);
    nn_gpt2 m;
    nn_linear score;
    assert_int_equal(nn_gpt2_declare(&ps, &m, &gc, true), AG_OK); /* transformer.* names, tied head unused */
    assert_int_equal(nn_gpt2_cls_declare(&ps, &score, &gc, num_labels), AG_OK);
    assert_int_equal(ag_params_finalize(&ps), AG_OK);
    if (ckpt_safetensors_load(FT_DIR "/model.safetensors", &ps, NULL, 0)) fail_msg("%s", ag_error());

    recipe_batch b;
    assert_int_equal(recipe_batch_load(&b, FT_DIR "/inputs.json"), AG_OK);
    const ag_ints *ids = recipe_batch_get(&b, "input_ids"), *mask = recipe_batch_get(&b, "attention_mask"),
                  *labels = recipe_batch_get(&b, "labels");
    assert_non_null(ids), assert_non_null(mask), assert_non_null(labels);
    ag_ints y = ag_ints_wrap(labels->data, 1, AG_SHAPE(labels->shape[0])); /* [[y]] -> [B] */

    ag_ctx *ctx = ag_ctx_create(0);
    ag_ctx_train(ctx, false);
    ag_tensor *logits = nn_gpt2_cls_logits(ctx, &m, &score, ids, mask, pad);
    ag_tensor *loss = ag_cross_entropy(ctx, logits, &y, 0.0f, AG_REDUCE_MEAN);
    if (!loss) fail_msg("%s", ag_error());
    hid_t e = H5Fopen(FT_DIR "/expected.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(e >= 0);
    float *want_loss = read_h5(e, "loss", NULL);
    int64_t n = 0;
    float *want_logits = read_h5(e, "pooled_logits", &n);
    assert_int_equal(n, logits->numel);
    printf("GPT2ForSequenceClassification: loss %.8f, PyTorch %.8f\n", loss->data[0], want_loss[0]);
    assert_true(fabs(loss->data[0] - want_loss[0]) <= 1e-5 * fabs(want_loss[0]));
    assert_true(check_close("pooled_logits", logits->data, want_logits, n, 1e-5, 1e-5));
    assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
    int bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < ps.n; ++i) {
        char name[300];
        snprintf(name, sizeof name, "grads/%s", ps.p[i]->name);
        float *g = read_h5(e, name, &n);
        if (!g) fail_msg("expected.h5 has no %s", name);
        assert_int_equal(n, ps.p[i]->numel);
        for (int64_t j = 0; j < n; ++j) worst = fmax(worst, fabs((double)ps.p[i]->grad[j] - g[j]));
        bad += !check_close(ps.p[i]->name, ps.p[i]->grad, g, n, 1e-4, 1e-4);
        free(g);
    }
    printf("GPT2ForSequenceClassification: %lld gradients, largest difference %.3g\n", (long long)ps.n, worst);
    assert_int_equal(bad, 0);
    free(want_loss), free(want_logits);
    H5Fclose(e);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    nn_gpt2_free(&m);
    ag_params_free(&ps);
    nn_config_free(&cfg);
}

/* ---------------------------------------------------------------- a tiny run to fine-tune */

/* A byte-level GPT-2 "run" (ckpt.h5 with its config) and a small two-label
 * set where the label is whether the sentence says "good". */
static const char *TINY_CONFIG =
    "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"vocab_size\": 257, \"n_positions\": 64,"
    " \"n_embd\": 16, \"n_layer\": 2, \"n_head\": 2, \"embd_pdrop\": 0.0, \"attn_pdrop\": 0.0, \"resid_pdrop\": 0.0,"
    " \"bos_token_id\": 256, \"eos_token_id\": 256}";

static void make_tiny_run(const char *run_dir, const char *train, const char *dev) {
    recipe_model m;
    assert_int_equal(recipe_model_declare_text(&m, TINY_CONFIG, "tiny", NULL), AG_OK);
    assert_int_equal(recipe_model_alloc(&m, 3), AG_OK);
    assert_int_equal(ag_make_dirs(run_dir), AG_OK);
    char path[600];
    snprintf(path, sizeof path, "%s/ckpt.h5", run_dir);
    ckpt_state st = {.config = m.cfg.text};
    assert_int_equal(ckpt_save(path, &m.ps, &st), AG_OK);
    recipe_model_free(&m);
    static const char *const words[] = {"a", "good", "film", "bad", "plot", "the", "very", "not"};
    for (int k = 0; k < 2; ++k) {
        FILE *f = fopen(k ? dev : train, "w");
        assert_non_null(f);
        for (int i = 0; i < (k ? 24 : 48); ++i) {
            uint64_t r = ag_rng_u64(11 + (uint64_t)k, (uint64_t)i);
            bool pos = (r >> 7) & 1;
            fprintf(f, "%d\t%s %s %s %s\n", pos, words[r % 8 == 1 ? 0 : r % 8], pos ? "good" : "bad",
                    words[(r >> 10) % 8 == 1 ? 2 : (r >> 10) % 8], words[(r >> 20) % 8 == 1 ? 5 : (r >> 20) % 8]);
        }
        fclose(f);
    }
}

/* Loads out/ckpt.h5 (a classifier) and run/ckpt.h5 (the backbone), and for
 * each backbone parameter reports whether it is bitwise unchanged. */
static void check_frozen(const char *run_dir, const char *out_dir, const recipe_finetune_opts *o) {
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/ckpt.h5", run_dir);
    snprintf(b, sizeof b, "%s/ckpt.h5", out_dir);
    recipe_model before, after;
    ckpt_state st;
    assert_int_equal(recipe_model_declare_text(&before, TINY_CONFIG, "tiny", NULL), AG_OK);
    assert_int_equal(ag_params_finalize(&before.ps), AG_OK);
    assert_int_equal(ckpt_load_params(a, &before.ps), AG_OK);
    assert_int_equal(ckpt_read_state(b, &st), AG_OK);
    assert_int_equal(recipe_model_declare_text(&after, st.config, b, "GPT2LMHeadModel"), AG_OK);
    nn_linear score;
    nn_gpt2_config gc;
    assert_int_equal(nn_gpt2_config_read(&after.cfg, &gc), AG_OK);
    assert_int_equal(nn_gpt2_cls_declare(&after.ps, &score, &gc, 2), AG_OK);
    assert_int_equal(ag_params_finalize(&after.ps), AG_OK);
    if (ckpt_load_params(b, &after.ps)) fail_msg("%s", ag_error());
    int n_frozen = 0, n_moved = 0;
    for (int64_t i = 0; i < before.ps.n; ++i) {
        const ag_tensor *p = before.ps.p[i], *q = ag_params_find(&after.ps, p->name);
        assert_non_null(q);
        bool same = memcmp(p->data, q->data, (size_t)p->numel * sizeof(float)) == 0;
        const char *name = p->name;
        int layer = strstr(name, ".h.") ? atoi(strstr(name, ".h.") + 3) : -1;
        bool frozen = o->freeze_all_but_head ||
                      (strstr(name, "wte") || strstr(name, "wpe") || (layer >= 0 && layer < o->freeze));
        if (frozen && !same) fail_msg("%s is frozen but moved", name);
        if (!frozen && same && !strstr(name, "attn.c_attn.bias")) /* (the key bias has no gradient) */
            fail_msg("%s is trained but did not move", name);
        n_frozen += frozen, n_moved += !same;
    }
    printf("freeze %s: %d tensors frozen and bitwise unchanged, %d moved\n",
           o->freeze_all_but_head ? "all but head" : "1", n_frozen, n_moved);
    assert_true(n_frozen > 0);
    assert_true(o->freeze_all_but_head ? n_moved == 0 : n_moved > 0);
    ckpt_state_free(&st);
    recipe_model_free(&before);
    recipe_model_free(&after);
}

static void test_freezing_leaves_frozen_parameters_unchanged(void **state) {
    (void)state;
    char run[512], train[512], dev[512], out[512];
    make_tiny_run(tmp_path(run, sizeof run, "tiny-run"), tmp_path(train, sizeof train, "tiny-train.tsv"),
                  tmp_path(dev, sizeof dev, "tiny-dev.tsv"));
    for (int k = 0; k < 2; ++k) {
        recipe_finetune_opts o = recipe_finetune_defaults();
        o.init = run, o.train_path = train, o.eval_path = dev;
        o.out_dir = tmp_path(out, sizeof out, k ? "tiny-out-head" : "tiny-out-freeze1");
        o.epochs = 1, o.batch = 8, o.seq = 32, o.lr = 1e-2, o.warmup = 0, o.quiet = true;
        o.weight_decay = 0.1; /* decay must not touch frozen weights either */
        if (k) o.freeze_all_but_head = true;
        else o.freeze = 1;
        recipe_finetune_result r;
        if (recipe_finetune(&o, &r)) fail_msg("%s", ag_error());
        assert_int_equal(r.best_epoch, 1);
        assert_true(r.n_trainable > 0 && r.n_trainable < r.n_params);
        if (k) assert_int_equal(r.n_trainable, 2 * 16); /* score.weight [2,16] only */
        check_frozen(run, out, &o);
    }
}

/* ---------------------------------------------------------------- the best checkpoint */

static void test_best_checkpoint_is_the_best_epochs(void **state) {
    (void)state;
    char run[512], train[512], dev[512], out[512], path[600];
    make_tiny_run(tmp_path(run, sizeof run, "tiny-run"), tmp_path(train, sizeof train, "tiny-train.tsv"),
                  tmp_path(dev, sizeof dev, "tiny-dev.tsv"));
    recipe_finetune_opts o = recipe_finetune_defaults();
    o.bow = true, o.train_path = train, o.eval_path = dev, o.out_dir = tmp_path(out, sizeof out, "bow-out");
    o.epochs = 6, o.batch = 8, o.lr = 0.3, o.warmup = 0, o.quiet = true, o.metric = RECIPE_METRIC_MCC;
    o.test_path = dev; /* scored with the kept weights: on the same file it must give the best epoch's metrics */
    recipe_finetune_result r;
    if (recipe_finetune(&o, &r)) fail_msg("%s", ag_error());
    assert_true(r.has_test && r.test.n == r.best.n);
    assert_true(r.test.accuracy == r.best.accuracy && r.test.mcc == r.best.mcc && r.test.f1 == r.best.f1);
    /* the best epoch by metrics.jsonl (the first of equal values) */
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    int best_epoch = 0, n_lines = 0;
    long long best_step = -1;
    double best = -2;
    while (fgets(line, sizeof line, f)) {
        int epoch;
        long long step;
        double mcc;
        const char *pm = strstr(line, "\"mcc\": ");
        assert_non_null(pm);
        assert_int_equal(sscanf(line, "{\"epoch\": %d, \"step\": %lld", &epoch, &step), 2);
        mcc = atof(pm + 7);
        if (mcc > best) best = mcc, best_epoch = epoch, best_step = step;
        ++n_lines;
    }
    fclose(f);
    assert_int_equal(n_lines, 6);
    assert_int_equal(r.best_epoch, best_epoch);
    assert_true(fabs(r.best.mcc - best) < 1e-6);
    /* the checkpoint holds that epoch's step and the weights evaluate to its metrics */
    ckpt_state st;
    snprintf(path, sizeof path, "%s/ckpt.h5", out);
    assert_int_equal(ckpt_read_state(path, &st), AG_OK);
    assert_int_equal(st.global_step, best_step);
    assert_string_equal(st.recipe, "classify");
    ckpt_state_free(&st);
    snprintf(path, sizeof path, "%s/best.json", out);
    f = fopen(path, "r");
    assert_non_null(f);
    int e = 0;
    assert_int_equal(fscanf(f, "{\"epoch\": %d", &e), 1);
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "\"test\": {\"accuracy\": "));
    fclose(f);
    assert_int_equal(e, best_epoch);
    printf("bag of words: best epoch %d of 6 (MCC %.4f), accuracy %.4f\n", best_epoch, best, r.best.accuracy);
}

/* ---------------------------------------------------------------- an imported Hugging Face model */

#ifndef HF_FIXTURE_DIR
#define HF_FIXTURE_DIR "../shared/fixtures/hf"
#endif

static void copy_file(const char *from, const char *to) {
    size_t len;
    char *text = ag_read_file("fixture", from, (size_t)1 << 26, &len);
    assert_non_null(text);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
    free(text);
}

/* The Hugging Face BERT fixture (BertForMaskedLM, vocab 128) with a WordPiece
 * vocab.txt becomes BertForSequenceClassification on sentence pairs: the
 * encoder comes from the file, the pooler and classifier are new, and a short
 * run trains and evaluates through the model's tokenizer ([CLS] a [SEP] b [SEP]). */
static void test_hugging_face_bert_pairs(void **state) {
    (void)state;
    FILE *probe = fopen(HF_FIXTURE_DIR "/bert/model.safetensors", "rb");
    if (!probe) skip();
    fclose(probe);
    char dir[512], path[600], train[512], out[512];
    tmp_path(dir, sizeof dir, "hf-bert");
    assert_int_equal(ag_make_dirs(dir), AG_OK);
    snprintf(path, sizeof path, "%s/config.json", dir);
    copy_file(HF_FIXTURE_DIR "/bert/config.json", path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    copy_file(HF_FIXTURE_DIR "/bert/model.safetensors", path);
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", f);
    static const char *const words[] = {"a", "man", "woman", "sleeps", "is", "awake", "runs", "sits", "."};
    for (int i = 0; i < 9; ++i) fprintf(f, "%s\n", words[i]);
    for (int i = 14; i < 128; ++i) fprintf(f, "w%d\n", i);
    fclose(f);
    tmp_path(train, sizeof train, "pairs-train.tsv");
    f = fopen(train, "w");
    assert_non_null(f);
    for (int i = 0; i < 32; ++i) /* entailment-like: 1 when b repeats a's verb */
        fprintf(f, "%d\ta %s %s .\ta %s %s .\n", i % 2, words[1 + i % 2], words[3 + (i / 2) % 4], words[1 + i % 2],
                words[i % 2 ? 3 + (i / 2) % 4 : 3 + (i / 2 + 1) % 4]);
    fclose(f);
    recipe_finetune_opts o = recipe_finetune_defaults();
    o.init = dir, o.train_path = train, o.eval_path = train, o.out_dir = tmp_path(out, sizeof out, "hf-bert-out");
    o.epochs = 2, o.batch = 8, o.seq = 32, o.lr = 1e-3, o.quiet = true;
    recipe_finetune_result r;
    if (recipe_finetune(&o, &r)) fail_msg("%s", ag_error());
    assert_true(r.best.n == 32 && r.n_trainable == r.n_params);
    /* the saved classifier is a BertForSequenceClassification with 2 labels */
    ckpt_state st;
    snprintf(path, sizeof path, "%s/ckpt.h5", out);
    assert_int_equal(ckpt_read_state(path, &st), AG_OK);
    assert_non_null(strstr(st.config, "BertForSequenceClassification"));
    recipe_model m;
    assert_int_equal(recipe_model_declare_text(&m, st.config, path, NULL), AG_OK);
    assert_int_equal(ag_params_finalize(&m.ps), AG_OK);
    if (ckpt_load_params(path, &m.ps)) fail_msg("%s", ag_error());
    assert_int_equal(m.bert.cfg.num_labels, 2);
    printf("BERT pairs: %lld parameters, accuracy %.3f after 2 epochs\n", (long long)r.n_params, r.best.accuracy);
    recipe_model_free(&m);
    ckpt_state_free(&st);
}

/* ---------------------------------------------------------------- own runs with their tokenizer */

/* The whole path a user takes, on a small generated text: a WordPiece
 * tokenizer trained on it, `prepare` (which puts tokenizer.json beside the
 * shards), `pretrain --recipe mlm` (which puts it into the run folder), then
 * `finetune --init RUN`, which reads that tokenizer and turns the run into
 * the family's ...ForSequenceClassification: the encoder comes from the run,
 * the head (and a pooler the MLM run never had) is new, and the keyword task
 * is learned. For DistilBERT, ALBERT, ELECTRA and DeBERTa v2; with
 * --freeze-all-but-head the new pooler trains with the head. */
#define OWN_COMMON "\"max_position_embeddings\": 32, \"pad_token_id\": 0, \"vocab_size\": %d"
static const char *const own_configs[][2] = {
    {"distilbert", "{\"model_type\": \"distilbert\", \"architectures\": [\"DistilBertForMaskedLM\"], \"dim\": 32, "
                   "\"n_layers\": 2, \"n_heads\": 2, \"hidden_dim\": 64, \"dropout\": 0.0, \"attention_dropout\": 0.0, "
                   OWN_COMMON "}"},
    {"albert", "{\"model_type\": \"albert\", \"architectures\": [\"AlbertForMaskedLM\"], \"embedding_size\": 16, "
               "\"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"intermediate_size\": 64, "
               "\"hidden_dropout_prob\": 0.0, \"attention_probs_dropout_prob\": 0.0, \"classifier_dropout_prob\": 0.0, "
               OWN_COMMON "}"},
    {"electra", "{\"model_type\": \"electra\", \"architectures\": [\"ElectraForMaskedLM\"], \"embedding_size\": 32, "
                "\"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"intermediate_size\": 64, "
                "\"hidden_dropout_prob\": 0.0, \"attention_probs_dropout_prob\": 0.0, " OWN_COMMON "}"},
    {"deberta-v2", "{\"model_type\": \"deberta-v2\", \"architectures\": [\"DebertaV2ForMaskedLM\"], "
                   "\"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"intermediate_size\": 64, "
                   "\"hidden_dropout_prob\": 0.0, \"attention_probs_dropout_prob\": 0.0, \"relative_attention\": true, "
                   "\"pos_att_type\": \"c2p|p2c\", \"position_biased_input\": false, " OWN_COMMON "}"},
};

static void test_own_runs_with_their_tokenizer(void **state) {
    (void)state;
    char text[512], tokp[512], data[512], cfg[512], run[512], train[512], dev[512], out[512], path[600];
    static const char *const words[] = {"a", "good", "film", "bad", "plot", "the", "very", "not", "and", "story"};
    FILE *f = fopen(tmp_path(text, sizeof text, "corpus.txt"), "w");
    assert_non_null(f);
    for (int i = 0; i < 400; ++i) {
        uint64_t r = ag_rng_u64(5, (uint64_t)i);
        fprintf(f, "%s %s %s %s .%s", words[r % 10], words[(r >> 8) % 10], words[(r >> 16) % 10],
                words[(r >> 24) % 10], i % 8 == 7 ? "\n\n" : "\n");
    }
    fclose(f);
    data_tokenizer tok;
    const char *inputs[1] = {text};
    data_train_opts to = {.kind = DATA_TOK_WORDPIECE, .vocab_size = 64, .lowercase = true, .quiet = true};
    assert_int_equal(data_tokenizer_train(&tok, inputs, 1, to), AG_OK);
    assert_int_equal(data_tokenizer_save(&tok, tmp_path(tokp, sizeof tokp, "wp.json")), AG_OK);
    const int V = tok.n_tokens;
    data_tokenizer_free(&tok);
    data_prepare_opts po = {.tokenizer = tokp, .inputs = inputs, .n_inputs = 1, .val_fraction = 0.1,
                            .out_dir = tmp_path(data, sizeof data, "wp-data"), .docs = DATA_DOCS_BLANK_LINE};
    if (data_prepare(&po, NULL)) fail_msg("%s", ag_error());
    snprintf(path, sizeof path, "%s/tokenizer.json", data);
    assert_int_equal(access(path, R_OK), 0);
    /* the keyword task: 1 when the sentence says "good" */
    for (int k = 0; k < 2; ++k) {
        f = fopen(k ? tmp_path(dev, sizeof dev, "kw-dev.tsv") : tmp_path(train, sizeof train, "kw-train.tsv"), "w");
        assert_non_null(f);
        for (int i = 0; i < (k ? 32 : 96); ++i) {
            uint64_t r = ag_rng_u64(21 + (uint64_t)k, (uint64_t)i);
            bool pos = (r >> 40) & 1;
            fprintf(f, "%d\tthe %s %s was %s .\n", pos, words[2 + 7 * ((r >> 3) & 1)], words[(r >> 8) % 2 ? 6 : 5],
                    pos ? "good" : "bad");
        }
        fclose(f);
    }

    for (size_t m = 0; m < sizeof own_configs / sizeof own_configs[0]; ++m) {
        const char *family = own_configs[m][0];
        char name[64];
        snprintf(name, sizeof name, "%s.json", family);
        f = fopen(tmp_path(cfg, sizeof cfg, name), "w");
        assert_non_null(f);
        fprintf(f, own_configs[m][1], V);
        fclose(f);
        snprintf(name, sizeof name, "%s-run", family);
        recipe_pretrain_opts pr = {
            .train = {.config_path = cfg, .data_dir = data, .out_dir = tmp_path(run, sizeof run, name), .steps = 10,
                      .batch = 8, .seq = 16, .grad_accum = 1, .lr = 1e-3, .min_lr = 1e-4, .weight_decay = 0.01,
                      .clip = 1.0, .warmup = 2, .schedule = "cosine", .log_every = 1000, .eval_every = 1000,
                      .eval_batches = 1, .save_every = 0, .seed = 7},
            .recipe = "mlm",
            .quiet = true,
        };
        if (recipe_pretrain(&pr)) fail_msg("%s: %s", family, ag_error());
        snprintf(path, sizeof path, "%s/tokenizer.json", run);
        assert_int_equal(access(path, R_OK), 0);

        recipe_finetune_opts o = recipe_finetune_defaults();
        snprintf(name, sizeof name, "%s-cls", family);
        o.init = run, o.train_path = train, o.eval_path = dev, o.out_dir = tmp_path(out, sizeof out, name);
        o.epochs = 6, o.batch = 8, o.seq = 32, o.lr = 3e-3, o.warmup = 0, o.quiet = true;
        recipe_finetune_result res; /* (ALBERT's tanh pooler sits at chance for two epochs, then learns) */
        if (recipe_finetune(&o, &res)) fail_msg("%s: %s", family, ag_error());
        ckpt_state st;
        snprintf(path, sizeof path, "%s/ckpt.h5", out);
        assert_int_equal(ckpt_read_state(path, &st), AG_OK);
        printf("own %s run: %lld parameters, accuracy %.3f\n", family, (long long)res.n_params, res.best.accuracy);
        assert_true(res.best.accuracy >= 0.9);
        assert_non_null(strstr(st.config, "ForSequenceClassification"));
        ckpt_state_free(&st);

        /* only the new parts train: the head, and the pooler ALBERT and DeBERTa add */
        o.freeze_all_but_head = true, o.epochs = 1;
        snprintf(name, sizeof name, "%s-head", family);
        o.out_dir = tmp_path(out, sizeof out, name);
        if (recipe_finetune(&o, &res)) fail_msg("%s: %s", family, ag_error());
        recipe_model cls;
        assert_int_equal(ckpt_read_state(path, &st), AG_OK);
        assert_int_equal(recipe_model_declare_text(&cls, st.config, path, NULL), AG_OK);
        int64_t fresh = 0;
        for (int64_t i = 0; i < cls.ps.n; ++i) {
            const char *pn = cls.ps.p[i]->name;
            if (strstr(pn, "classifier") || strstr(pn, "pooler")) fresh += cls.ps.p[i]->numel;
        }
        assert_int_equal(res.n_trainable, fresh);
        recipe_model_free(&cls);
        ckpt_state_free(&st);
    }
    /* a tokenizer the run folder has but cannot read is an error, not bytes */
    snprintf(path, sizeof path, "%s/tokenizer.json", run);
    write_text(path, "{ not json");
    recipe_finetune_opts o = recipe_finetune_defaults();
    o.init = run, o.train_path = train, o.eval_path = dev, o.out_dir = tmp_path(out, sizeof out, "wp-cls-bad");
    o.quiet = true;
    recipe_finetune_result res;
    assert_int_not_equal(recipe_finetune(&o, &res), AG_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_by_hand),
        cmocka_unit_test(test_tsv_reader),
        cmocka_unit_test(test_gpt2_cls_matches_pytorch),
        cmocka_unit_test(test_freezing_leaves_frozen_parameters_unchanged),
        cmocka_unit_test(test_best_checkpoint_is_the_best_epochs),
        cmocka_unit_test(test_hugging_face_bert_pairs),
        cmocka_unit_test(test_own_runs_with_their_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
