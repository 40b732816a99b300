/* test_train.c: the trainer end to end on a small generated corpus.
 *
 *   - a run of 2N steps and a run of N steps + resume + N steps give bitwise
 *     identical losses and parameters (dropout on, so its streams are tested
 *     too);
 *   - the held-out loss falls;
 *   - an empty corpus, a truncated checkpoint and a bad shard are refused with
 *     messages naming the file.
 */
#include "harness.h"

#include "ckpt.h"
#include "data.h"
#include "models.h"
#include "recipes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static const char *CONFIG =
    "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"vocab_size\": 257,"
    " \"n_positions\": 32, \"n_embd\": 32, \"n_layer\": 2, \"n_head\": 2, \"embd_pdrop\": 0.1,"
    " \"attn_pdrop\": 0.1, \"resid_pdrop\": 0.1}";

static void path_in(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A corpus with structure to learn: sentences from a small grammar. */
static int setup(void **state) {
    snprintf(dir, sizeof dir, "/tmp/tapegrad-train-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    static const char *subj[] = {"The committee", "Congress", "The nation", "Our people", "The treasury"};
    static const char *verb[] = {"has approved", "will consider", "rejected", "must protect", "reported"};
    static const char *obj[] = {"the new budget.", "the public credit.", "our commerce.", "the common defense.",
                                "a treaty of peace."};
    char path[128];
    for (int d = 0; d < 6; ++d) {
        snprintf(path, sizeof path, "%s/doc%d.txt", dir, d);
        FILE *f = fopen(path, "w");
        for (int i = 0; i < 400; ++i) {
            uint64_t r = ag_rng_u64(99, (uint64_t)(d * 1000 + i));
            fprintf(f, "%s %s %s ", subj[r % 5], verb[(r >> 8) % 5], obj[(r >> 16) % 5]);
        }
        fclose(f);
    }
    const char *inputs[6];
    static char names[6][128];
    for (int d = 0; d < 6; ++d) {
        snprintf(names[d], sizeof names[d], "%s/doc%d.txt", dir, d);
        inputs[d] = names[d];
    }
    path_in(path, sizeof path, "data");
    if (data_prepare_bytes(inputs, 6, path, 0.2, NULL, NULL) != AG_OK) return -1;
    path_in(path, sizeof path, "config.json");
    write_file(path, CONFIG);
    return 0;
}

static int teardown(void **state) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static recipe_train_opts opts(const char *out) {
    static char config[128], data[128], outp[128];
    path_in(config, sizeof config, "config.json");
    path_in(data, sizeof data, "data");
    path_in(outp, sizeof outp, out);
    return (recipe_train_opts){
        .config_path = config, .data_dir = data, .out_dir = outp, .steps = 40, .batch = 4, .seq = 32,
        .grad_accum = 2, .lr = 3e-3, .min_lr = 3e-4, .weight_decay = 0.1, .clip = 1.0, .warmup = 5,
        .schedule = "cosine", .log_every = 1, .eval_every = 20, .eval_batches = 4, .save_every = 0, .seed = 5,
    };
}

/* The "loss" values of metrics.jsonl lines with step > from, as text. */
static char *losses_after(const char *out, int from) {
    char path[160], line[512];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", dir, out);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *acc = calloc(1, 65536);
    while (fgets(line, sizeof line, f)) {
        int step;
        char *l = strstr(line, "\"loss\": ");
        if (sscanf(line, "{\"step\": %d", &step) == 1 && step > from && l) strncat(acc, l, 24);
    }
    fclose(f);
    return acc;
}

static void load_final(const char *out, recipe_model *m) {
    char config[160], ckpt[160];
    path_in(config, sizeof config, "config.json");
    snprintf(ckpt, sizeof ckpt, "%s/%s/ckpt.h5", dir, out);
    assert_int_equal(recipe_model_declare(m, config, NULL), AG_OK);
    assert_int_equal(recipe_model_alloc(m, 0), AG_OK);
    if (ckpt_load_params(ckpt, &m->ps) != AG_OK) fail_msg("%s", ag_error());
}

static void test_resume_is_bitwise(void **state) {
    recipe_train_opts a = opts("unbroken");
    assert_int_equal(recipe_train_clm(&a), AG_OK);
    recipe_train_opts b = opts("resumed");
    b.stop_at = 20;
    assert_int_equal(recipe_train_clm(&b), AG_OK);
    b.stop_at = 0;
    b.resume = true;
    if (recipe_train_clm(&b) != AG_OK) fail_msg("%s", ag_error());

    char *la = losses_after("unbroken", 20), *lb = losses_after("resumed", 20);
    assert_true(strlen(la) > 100);
    assert_string_equal(la, lb); /* the same 20 losses, printed to 6 places */
    free(la);
    free(lb);
    recipe_model ma, mb;
    load_final("unbroken", &ma);
    load_final("resumed", &mb);
    assert_int_equal(ma.ps.total, mb.ps.total);
    assert_memory_equal(ma.ps.values, mb.ps.values, (size_t)ma.ps.total * sizeof(float));
    recipe_model_free(&ma);
    recipe_model_free(&mb);
}

/* Reads the first and last val_loss of a run's metrics. */
static void val_losses(const char *out, double *first, double *last) {
    char path[160], line[512];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", dir, out);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    *first = *last = -1;
    while (fgets(line, sizeof line, f)) {
        char *v = strstr(line, "\"val_loss\": ");
        if (!v) continue;
        double x = atof(v + 12);
        if (*first < 0) *first = x;
        *last = x;
    }
    fclose(f);
}

static void test_loss_falls(void **state) {
    double first, last;
    val_losses("unbroken", &first, &last);
    printf("held-out loss %.4f -> %.4f\n", first, last);
    assert_true(first > 5.0);      /* about ln 257 at the start */
    assert_true(last < first - 2); /* the grammar is learnt */
}

static void test_plot(void **state) {
    char run[160], svg[160];
    snprintf(run, sizeof run, "%s/unbroken", dir);
    snprintf(svg, sizeof svg, "%s/loss.svg", dir);
    assert_int_equal(recipe_plot(run, svg), AG_OK);
    char *text = ag_read_file("svg", svg, 1 << 20, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "<svg"));
    assert_non_null(strstr(text, "held-out loss"));
    assert_non_null(strstr(text, "<polyline"));
    ag_free(text);
    assert_int_not_equal(recipe_plot("/nonexistent/run", svg), AG_OK);
    assert_non_null(strstr(ag_error(), "/nonexistent/run/metrics.jsonl"));
}

static void test_bad_inputs(void **state) {
    char path[160], out[160];
    /* an empty corpus */
    path_in(path, sizeof path, "empty.txt");
    write_file(path, "");
    const char *inputs[] = {path};
    path_in(out, sizeof out, "empty-data");
    assert_int_not_equal(data_prepare_bytes(inputs, 1, out, 0.1, NULL, NULL), AG_OK);
    assert_non_null(strstr(ag_error(), "empty"));
    /* a missing input */
    const char *missing[] = {"/nonexistent/corpus.txt"};
    assert_int_not_equal(data_prepare_bytes(missing, 1, out, 0.1, NULL, NULL), AG_OK);
    assert_non_null(strstr(ag_error(), "/nonexistent/corpus.txt"));
    /* a truncated checkpoint refuses to resume, naming the file */
    char ckpt[160];
    snprintf(ckpt, sizeof ckpt, "%s/unbroken/ckpt.h5", dir);
    assert_int_equal(truncate(ckpt, 2000), 0);
    recipe_train_opts o = opts("unbroken");
    o.resume = true;
    assert_int_not_equal(recipe_train_clm(&o), AG_OK);
    assert_non_null(strstr(ag_error(), "ckpt.h5"));
    /* a damaged shard */
    path_in(path, sizeof path, "data/val.bin");
    assert_int_equal(truncate(path, 40), 0);
    data_shard s;
    assert_int_not_equal(data_shard_read(&s, path), AG_OK);
    assert_non_null(strstr(ag_error(), "val.bin"));
    assert_non_null(strstr(ag_error(), "truncated"));
}

/* The loader is a pure function of (seed, batch index): restoring the index
 * restores the batch. */
static void test_loader_position(void **state) {
    char path[160];
    path_in(path, sizeof path, "data/train.bin");
    data_shard s;
    assert_int_equal(data_shard_read(&s, path), AG_OK);
    data_loader a, b;
    assert_int_equal(data_loader_init(&a, &s, 3, 16, 7), AG_OK);
    assert_int_equal(data_loader_init(&b, &s, 3, 16, 7), AG_OK);
    int32_t ia[48], ta[48], ib[48], tb[48];
    for (int i = 0; i < 5; ++i) data_loader_next(&a, ia, ta);
    b.batch = 4; /* "restarted" at batch 4 */
    data_loader_next(&b, ib, tb);
    assert_memory_equal(ia, ib, sizeof ia);
    assert_memory_equal(ta, tb, sizeof ta);
    for (int i = 0; i < 47; ++i) assert_int_equal(ia[i + 1] == ta[i] || i % 16 == 15, 1); /* targets = next token */
    data_shard_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_is_bitwise),
        cmocka_unit_test(test_loss_falls),
        cmocka_unit_test(test_loader_position),
        cmocka_unit_test(test_plot),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
