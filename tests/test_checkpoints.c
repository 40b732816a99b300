/* test_checkpoints.c: HDF5 checkpoints and safetensors files.
 *
 * What it shows:
 *   - save -> load gives back parameters, optimizer moments and run state bit
 *     for bit, and leaves no temp file;
 *   - a truncated file, a non-HDF5 file, another model's checkpoint, a missing
 *     parameter, a wrong shape are each refused with a message naming them;
 *   - a save that fails leaves the previous checkpoint untouched, byte for byte;
 *   - the real Hugging Face files (gpt2, bert, t5) load by name, with tied
 *     weights re-tied, and the deduplicated file gives the same values as the
 *     full one; save -> load is bitwise; F16/BF16 convert exactly;
 *   - safetensors headers that lie (offsets past the end, wrong lengths, gaps,
 *     garbage JSON) are refused naming the tensor or field.
 */
#include "harness.h"

#include "checkpoints/ckpt.h"
#include "models.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HF_DIR "/work/shared/fixtures/hf"
#define CKPT_FIXTURES FIXTURE_DIR "/ckpt"

static char tmpdir[256];

static int setup_dir(void **state) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tapegrad_ckpt_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A path in this run's temp folder. */
static const char *tmp_path(char *buf, const char *name) {
    sprintf(buf, "%s/%s", tmpdir, name);
    return buf;
}

/* The whole file, malloc'd; its size in *n. */
static unsigned char *slurp(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)size + 1);
    *n = fread(b, 1, (size_t)size, f);
    fclose(f);
    return b;
}

static void spit(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

static bool exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Prints the message a refusal gave (so a reader of the test log sees them)
 * and checks that it contains each of the given fragments. */
static void expect_error(ag_status got, ag_status want, const char *const *frags, int n) {
    printf("    refused: %s\n", ag_error());
    assert_int_equal(got, want);
    for (int i = 0; i < n; ++i) {
        if (!strstr(ag_error(), frags[i])) fail_msg("message lacks \"%s\": %s", frags[i], ag_error());
    }
}
#define EXPECT_ERROR(got, want, ...)                                                   \
    expect_error((got), (want), (const char *const[]){__VA_ARGS__},                    \
                 (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))

/* ---------------------------------------------------------------- a small model */

/* Four parameters with dotted names and 1 to 4 dims; `extra` adds a fifth,
 * `other_shape` gives h.0.attn.c_attn.weight the shape [4,3] instead of [3,4]. */
static void small_model(ag_params *ps, bool extra, bool other_shape) {
    ag_params_init(ps);
    assert_non_null(ag_params_add(ps, "transformer.wte.weight", 2, AG_SHAPE(5, 3)));
    assert_non_null(other_shape ? ag_params_add(ps, "h.0.attn.c_attn.weight", 2, AG_SHAPE(4, 3))
                                : ag_params_add(ps, "h.0.attn.c_attn.weight", 2, AG_SHAPE(3, 4)));
    assert_non_null(ag_params_add(ps, "h.0.ln_1.bias", 1, AG_SHAPE(3)));
    assert_non_null(ag_params_add(ps, "h.0.conv.weight", 4, AG_SHAPE(2, 1, 2, 3)));
    if (extra) assert_non_null(ag_params_add(ps, "h.0.extra.weight", 1, AG_SHAPE(7)));
    assert_int_equal(ag_params_finalize(ps), AG_OK);
}

/* Random floats, with the awkward ones among them: signed zero, a subnormal,
 * the largest float, an infinity, a NaN with a payload. */
static void fill(float *x, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; ++i) x[i] = ag_rng_uniform(seed, (uint64_t)i) * 2.0f - 1.0f;
    const uint32_t odd[] = {0x80000000u, 0x00000001u, 0x7f7fffffu, 0xff800000u, 0x7fc12345u};
    for (int k = 0; k < 5 && k < n; ++k) memcpy(&x[k * 3 % n], &odd[k], 4);
}

/* ---------------------------------------------------------------- HDF5: exact resume */

static void test_save_load_bitwise(void **state) {
    char path[512], tmp[600];
    tmp_path(path, "bitwise.h5");
    ag_params ps;
    small_model(&ps, false, false);
    fill(ps.values, ps.total, 1);
    float *m = malloc((size_t)ps.total * 4), *v = malloc((size_t)ps.total * 4);
    fill(m, ps.total, 2);
    fill(v, ps.total, 3);
    /* a loader position of 100 KB of binary bytes: over HDF5's 64 KB compact
     * attribute limit, and with zeros inside */
    size_t lp_len = 100000;
    unsigned char *lp = malloc(lp_len);
    for (size_t i = 0; i < lp_len; ++i) lp[i] = (unsigned char)(ag_rng_u64(4, i) & 0xff);
    lp[0] = 0;

    ckpt_state st = {
        .config = "{\"model_type\": \"gpt2\", \"n_embd\": 3, \"note\": \"caf\xc3\xa9\"}",
        .optim_kind = "adamw",
        .optim_step = 123456789012345,
        .n_moments = 2,
        .moment_name = {"m", "v"},
        .moment = {m, v},
        .n_hparams = 5,
        .hparam = {{"lr", 3e-4}, {"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}, {"weight_decay", 0.1 / 3}},
        .schedule = "{\"kind\": \"cosine\", \"warmup\": 100, \"last_lr\": 0.000299}",
        .global_step = 1000,
        .tokens_seen = 9007199254740993, /* 2^53 + 1: not exact in a double */
        .rng_seed = 0xfedcba9876543210ull,
        .rng_counter = UINT64_MAX - 1,
        .loader_position = lp,
        .loader_position_len = lp_len,
        .recipe = "clm",
    };
    assert_int_equal(ckpt_save(path, &ps, &st), AG_OK);
    sprintf(tmp, "%s.tmp", path);
    assert_false(exists(tmp)); /* renamed into place */

    /* The run state, without a model. */
    ckpt_state got;
    assert_int_equal(ckpt_read_state(path, &got), AG_OK);
    assert_string_equal(got.config, st.config);
    assert_string_equal(got.optim_kind, "adamw");
    assert_true(got.optim_step == st.optim_step);
    assert_int_equal(got.n_moments, 2);
    assert_string_equal(got.moment_name[0], "m");
    assert_string_equal(got.moment_name[1], "v");
    assert_int_equal(got.n_hparams, 5);
    for (int k = 0; k < 5; ++k) {
        assert_string_equal(got.hparam[k].name, st.hparam[k].name); /* in the order given */
        assert_memory_equal(&got.hparam[k].value, &st.hparam[k].value, sizeof(double));
    }
    assert_string_equal(got.schedule, st.schedule);
    assert_true(got.global_step == st.global_step);
    assert_true(got.tokens_seen == st.tokens_seen);
    assert_true(got.rng_seed == st.rng_seed);
    assert_true(got.rng_counter == st.rng_counter);
    assert_int_equal(got.loader_position_len, lp_len);
    assert_memory_equal(got.loader_position, lp, lp_len);
    assert_string_equal(got.recipe, "clm");
    ckpt_state_free(&got);
    assert_null(got.config);

    /* The parameters and moments, into a fresh model and fresh blocks. */
    ag_params ps2;
    small_model(&ps2, false, false);
    float *m2 = calloc((size_t)ps.total, 4), *v2 = calloc((size_t)ps.total, 4);
    assert_int_equal(ckpt_load_params(path, &ps2), AG_OK);
    assert_int_equal(ckpt_load_moment(path, &ps2, "m", m2), AG_OK);
    assert_int_equal(ckpt_load_moment(path, &ps2, "v", v2), AG_OK);
    assert_memory_equal(ps2.values, ps.values, (size_t)ps.total * 4);
    assert_memory_equal(m2, m, (size_t)ps.total * 4);
    assert_memory_equal(v2, v, (size_t)ps.total * 4);

    /* A moment the optimizer did not save. */
    EXPECT_ERROR(ckpt_load_moment(path, &ps2, "momentum", m2), AG_ERR_ARG, path, "[m,v]", "'momentum'");

    /* Saving again over it replaces it (and the result still loads). */
    ps.values[0] = 42.0f;
    assert_int_equal(ckpt_save(path, &ps, &st), AG_OK);
    assert_int_equal(ckpt_load_params(path, &ps2), AG_OK);
    assert_true(ps2.values[0] == 42.0f);

    free(m); free(v); free(m2); free(v2); free(lp);
    ag_params_free(&ps);
    ag_params_free(&ps2);
}

/* Parameters only: no /optim, no /state, and a state that reads back empty. */
static void test_params_only(void **state) {
    char path[512];
    tmp_path(path, "params_only.h5");
    ag_params ps;
    small_model(&ps, false, false);
    fill(ps.values, ps.total, 7);
    assert_int_equal(ckpt_save(path, &ps, NULL), AG_OK);
    ckpt_state got;
    assert_int_equal(ckpt_read_state(path, &got), AG_OK);
    assert_null(got.config);
    assert_null(got.optim_kind);
    assert_int_equal(got.global_step, 0);
    assert_null(got.loader_position);
    ckpt_state_free(&got);
    float *m = calloc((size_t)ps.total, 4);
    EXPECT_ERROR(ckpt_load_moment(path, &ps, "m", m), AG_ERR_ARG, path, "no optimizer state");
    free(m);
    ag_params_free(&ps);
}

/* ckpt_declare: a registry shaped like the file, without the model; loading
 * into it gives the saved values bit for bit. */
static void test_declare_from_file(void **state) {
    char path[512], notes[512];
    tmp_path(path, "declare.h5");
    ag_params ps, got;
    small_model(&ps, true, false);
    fill(ps.values, ps.total, 9);
    assert_int_equal(ckpt_save(path, &ps, NULL), AG_OK);
    ag_params_init(&got);
    assert_int_equal(ckpt_declare(path, &got), AG_OK);
    assert_int_equal(got.n, ps.n);
    assert_int_equal(ag_params_finalize(&got), AG_OK);
    assert_int_equal(ckpt_load_params(path, &got), AG_OK);
    for (int64_t i = 0; i < ps.n; ++i) {
        const ag_tensor *a = ps.p[i], *b = ag_params_find(&got, a->name);
        assert_non_null(b);
        assert_int_equal(a->ndim, b->ndim);
        for (int d = 0; d < a->ndim; ++d) assert_int_equal(a->shape[d], b->shape[d]);
        assert_memory_equal(a->data, b->data, (size_t)a->numel * sizeof(float));
    }
    /* refusals: a finalized registry, a name already declared, a file that is not a checkpoint */
    EXPECT_ERROR(ckpt_declare(path, &got), AG_ERR_ARG, path, "not finalized");
    ag_params_free(&got);
    ag_params_init(&got);
    assert_non_null(ag_params_add(&got, "h.0.ln_1.bias", 1, AG_SHAPE(3)));
    EXPECT_ERROR(ckpt_declare(path, &got), AG_ERR_ARG, path, "'h.0.ln_1.bias' is declared twice");
    ag_params_free(&got);
    ag_params_init(&got);
    tmp_path(notes, "declare-notes.h5");
    spit(notes, "not hdf5\n", 9);
    EXPECT_ERROR(ckpt_declare(notes, &got), AG_ERR_IO, notes, "not an HDF5 file");
    EXPECT_ERROR(ckpt_declare(HF_DIR "/gpt2/expected.h5", &got), AG_ERR_IO, "expected.h5", "no /params group");
    ag_params_free(&got);
    ag_params_free(&ps);
}

/* ---------------------------------------------------------------- HDF5: refusals */

static void save_small(const char *path, uint64_t seed) {
    ag_params ps;
    small_model(&ps, false, false);
    fill(ps.values, ps.total, seed);
    ckpt_state st = {.config = "{}", .global_step = 5};
    assert_int_equal(ckpt_save(path, &ps, &st), AG_OK);
    ag_params_free(&ps);
}

static void test_truncated_refused(void **state) {
    char path[512], cut[512];
    tmp_path(path, "whole.h5");
    tmp_path(cut, "cut.h5");
    save_small(path, 11);
    size_t n;
    unsigned char *b = slurp(path, &n);
    spit(cut, b, n / 2);
    free(b);
    ag_params ps;
    small_model(&ps, false, false);
    EXPECT_ERROR(ckpt_load_params(cut, &ps), AG_ERR_IO, cut, "truncated");
    ckpt_state st;
    EXPECT_ERROR(ckpt_read_state(cut, &st), AG_ERR_IO, cut, "truncated");
    ag_params_free(&ps);
}

static void test_not_hdf5_refused(void **state) {
    char path[512];
    tmp_path(path, "notes.h5");
    const char text[] = "these are not the bytes you are looking for\n";
    spit(path, text, sizeof text - 1);
    ag_params ps;
    small_model(&ps, false, false);
    EXPECT_ERROR(ckpt_load_params(path, &ps), AG_ERR_IO, path, "not an HDF5 file");
    /* a safetensors file given by mistake gets a hint */
    EXPECT_ERROR(ckpt_load_params(HF_DIR "/gpt2/model.safetensors", &ps), AG_ERR_IO, "not an HDF5 file",
                 "ckpt_safetensors_load");
    /* an HDF5 file that is not a checkpoint (the Hugging Face reference arrays) */
    ckpt_state st;
    EXPECT_ERROR(ckpt_read_state(HF_DIR "/gpt2/expected.h5", &st), AG_ERR_IO, "expected.h5",
                 "not a tapegrad checkpoint");
    EXPECT_ERROR(ckpt_load_params(HF_DIR "/gpt2/expected.h5", &ps), AG_ERR_IO, "expected.h5", "no /params group");
    tmp_path(path, "no_such_file.h5");
    EXPECT_ERROR(ckpt_load_params(path, &ps), AG_ERR_IO, path, "No such file");
    ag_params_free(&ps);
}

static void test_other_model_refused(void **state) {
    char path[512];
    tmp_path(path, "other_model.h5");
    save_small(path, 12);
    ag_params ps;
    ag_params_init(&ps);
    assert_non_null(ag_params_add(&ps, "bert.embeddings.word_embeddings.weight", 2, AG_SHAPE(5, 3)));
    assert_non_null(ag_params_add(&ps, "bert.pooler.dense.weight", 2, AG_SHAPE(3, 3)));
    assert_int_equal(ag_params_finalize(&ps), AG_OK);
    EXPECT_ERROR(ckpt_load_params(path, &ps), AG_ERR_ARG, path,
                 "missing (2): bert.embeddings.word_embeddings.weight, bert.pooler.dense.weight",
                 "unexpected (4): params/", "params/transformer.wte.weight", "another model");
    /* nothing was written into the model */
    for (int64_t i = 0; i < ps.total; ++i) assert_true(ps.values[i] == 0.0f);
    ag_params_free(&ps);
}

static void test_missing_param_refused(void **state) {
    char path[512];
    tmp_path(path, "missing.h5");
    save_small(path, 13);
    ag_params ps;
    small_model(&ps, true, false); /* the model has one more parameter than the file */
    EXPECT_ERROR(ckpt_load_params(path, &ps), AG_ERR_ARG, path, "missing (1): h.0.extra.weight");
    assert_null(strstr(ag_error(), "unexpected"));
    ag_params_free(&ps);
}

static void test_wrong_shape_refused(void **state) {
    char path[512];
    tmp_path(path, "shape.h5");
    save_small(path, 14);
    ag_params ps;
    small_model(&ps, false, true);
    EXPECT_ERROR(ckpt_load_params(path, &ps), AG_ERR_ARG, path,
                 "params/h.0.attn.c_attn.weight has shape [3,4], model wants [4,3]");
    /* and every difference at once: a wrong shape and a missing name */
    ag_params_free(&ps);
    small_model(&ps, true, true);
    EXPECT_ERROR(ckpt_load_params(path, &ps), AG_ERR_ARG, "has shape [3,4], model wants [4,3]",
                 "; missing (1): h.0.extra.weight");
    ag_params_free(&ps);
}

/* ---------------------------------------------------------------- HDF5: failed saves */

static void test_failed_save_keeps_previous(void **state) {
    char path[512], tmp[600], file[512], under[600];
    tmp_path(path, "keep.h5");
    sprintf(tmp, "%s.tmp", path);
    save_small(path, 15);
    size_t n0, n1;
    unsigned char *before = slurp(path, &n0);

    ag_params ps;
    small_model(&ps, false, false);
    fill(ps.values, ps.total, 16); /* different values: a save that went through would show */

    /* 1. The folder cannot exist: its parent is a regular file. (Tests run as
     *    root, so a read-only folder would not stop us.) */
    tmp_path(file, "a_regular_file");
    spit(file, "x", 1);
    sprintf(under, "%s/ckpt.h5", file);
    EXPECT_ERROR(ckpt_save(under, &ps, NULL), AG_ERR_IO, under, "cannot create");

    /* 2. A failure in the middle of writing: a parameter whose name HDF5 cannot
     *    hold. The temp file had been created; it must be gone, and the
     *    previous checkpoint untouched. */
    ag_params bad;
    ag_params_init(&bad);
    assert_non_null(ag_params_add(&bad, "transformer.wte.weight", 2, AG_SHAPE(5, 3)));
    assert_non_null(ag_params_add(&bad, "h/0.weight", 1, AG_SHAPE(3)));
    assert_int_equal(ag_params_finalize(&bad), AG_OK);
    EXPECT_ERROR(ckpt_save(path, &bad, NULL), AG_ERR_ARG, path, "'h/0.weight'");
    assert_false(exists(tmp));
    unsigned char *after = slurp(path, &n1);
    assert_int_equal(n1, n0);
    assert_memory_equal(after, before, n0);
    free(after);
    ag_params_free(&bad);

    /* 3. The temp file cannot be created: NAME.tmp is a folder. */
    assert_int_equal(mkdir(tmp, 0755), 0);
    EXPECT_ERROR(ckpt_save(path, &ps, NULL), AG_ERR_IO, path, "cannot create", ".tmp");
    assert_true(exists(tmp)); /* not ours: left alone */
    rmdir(tmp);
    after = slurp(path, &n1);
    assert_int_equal(n1, n0);
    assert_memory_equal(after, before, n0);
    free(after);

    /* 4. The previous checkpoint still loads, with its own values. */
    ag_params ps2;
    small_model(&ps2, false, false);
    assert_int_equal(ckpt_load_params(path, &ps2), AG_OK);
    ag_params ref;
    small_model(&ref, false, false);
    fill(ref.values, ref.total, 15);
    assert_memory_equal(ps2.values, ref.values, (size_t)ref.total * 4);

    free(before);
    ag_params_free(&ps);
    ag_params_free(&ps2);
    ag_params_free(&ref);
}

/* ---------------------------------------------------------------- safetensors: Hugging Face files */

/* GPT-2's parameters, named and shaped from its config.json (vocab 128,
 * positions 32, n_embd 32, 2 layers): the registry a GPT-2 model declares,
 * with one tensor for the tied embedding / LM head. */
static void gpt2_model(ag_params *ps, int64_t n_positions) {
    const int64_t V = 128, P = n_positions, C = 32, L = 2;
    char nm[128];
    ag_params_init(ps);
    assert_non_null(ag_params_add(ps, "transformer.wte.weight", 2, AG_SHAPE(V, C)));
    assert_non_null(ag_params_add(ps, "transformer.wpe.weight", 2, AG_SHAPE(P, C)));
    for (int64_t l = 0; l < L; ++l) {
        struct { const char *name; int ndim; int64_t s0, s1; } w[] = {
            {"ln_1.weight", 1, C, 0},        {"ln_1.bias", 1, C, 0},
            {"attn.c_attn.weight", 2, C, 3 * C}, {"attn.c_attn.bias", 1, 3 * C, 0},
            {"attn.c_proj.weight", 2, C, C}, {"attn.c_proj.bias", 1, C, 0},
            {"ln_2.weight", 1, C, 0},        {"ln_2.bias", 1, C, 0},
            {"mlp.c_fc.weight", 2, C, 4 * C}, {"mlp.c_fc.bias", 1, 4 * C, 0},
            {"mlp.c_proj.weight", 2, 4 * C, C}, {"mlp.c_proj.bias", 1, C, 0},
        };
        for (size_t k = 0; k < sizeof w / sizeof *w; ++k) {
            sprintf(nm, "transformer.h.%lld.%s", (long long)l, w[k].name);
            assert_non_null(ag_params_add(ps, nm, w[k].ndim, AG_SHAPE(w[k].s0, w[k].s1)));
        }
    }
    assert_non_null(ag_params_add(ps, "transformer.ln_f.weight", 1, AG_SHAPE(C)));
    assert_non_null(ag_params_add(ps, "transformer.ln_f.bias", 1, AG_SHAPE(C)));
    assert_int_equal(ag_params_finalize(ps), AG_OK);
}

static const ckpt_alias gpt2_tied[] = {{"lm_head.weight", "transformer.wte.weight"}};

static void test_gpt2_safetensors(void **state) {
    ag_params full, dedup;
    gpt2_model(&full, 32);
    gpt2_model(&dedup, 32);
    assert_int_equal(full.n, 28);
    /* every state_dict key, lm_head.weight included as an identical copy */
    assert_int_equal(ckpt_safetensors_load(HF_DIR "/gpt2/model.safetensors", &full, gpt2_tied, 1), AG_OK);
    /* save_pretrained's file: lm_head.weight dropped, re-tied by the alias */
    assert_int_equal(ckpt_safetensors_load(HF_DIR "/gpt2/model_hf.safetensors", &dedup, gpt2_tied, 1), AG_OK);
    assert_memory_equal(full.values, dedup.values, (size_t)full.total * 4);
    double norm = 0;
    for (int64_t i = 0; i < full.total; ++i) norm += (double)full.values[i] * full.values[i];
    printf("    gpt2: %lld parameters in %lld tensors, |w| = %.6f\n", (long long)full.total, (long long)full.n,
           sqrt(norm));
    assert_true(norm > 1.0);

    /* Without the alias table, the copy is a name the model does not have. */
    EXPECT_ERROR(ckpt_safetensors_load(HF_DIR "/gpt2/model.safetensors", &dedup, NULL, 0), AG_ERR_ARG,
                 HF_DIR "/gpt2/model.safetensors", "unexpected (1): lm_head.weight");

    /* A model with other sizes: both shapes named. */
    ag_params small;
    gpt2_model(&small, 16);
    EXPECT_ERROR(ckpt_safetensors_load(HF_DIR "/gpt2/model_hf.safetensors", &small, gpt2_tied, 1), AG_ERR_ARG,
                 "transformer.wpe.weight has shape [32,32], model wants [16,32]");
    ag_params_free(&small);

    /* Round trips, bitwise: deduplicated, and with the alias written too. */
    char path[512], path2[512];
    tmp_path(path, "gpt2_dedup.safetensors");
    tmp_path(path2, "gpt2_full.safetensors");
    assert_int_equal(ckpt_safetensors_save(path, &full, gpt2_tied, 1, false), AG_OK);
    assert_int_equal(ckpt_safetensors_save(path2, &full, gpt2_tied, 1, true), AG_OK);
    ag_params back, back2, shaped;
    gpt2_model(&back, 32);
    gpt2_model(&back2, 32);
    assert_int_equal(ckpt_safetensors_load(path, &back, gpt2_tied, 1), AG_OK);
    assert_int_equal(ckpt_safetensors_load(path2, &back2, gpt2_tied, 1), AG_OK);
    assert_memory_equal(back.values, full.values, (size_t)full.total * 4);
    assert_memory_equal(back2.values, full.values, (size_t)full.total * 4);
    /* the files hold 28 and 29 tensors, as save_pretrained and state_dict do */
    ag_params_init(&shaped);
    assert_int_equal(ckpt_safetensors_declare(path2, &shaped), AG_OK);
    assert_int_equal(shaped.n, 29);
    assert_non_null(ag_params_find(&shaped, "lm_head.weight"));
    ag_params_free(&shaped);
    ag_params_init(&shaped);
    assert_int_equal(ckpt_safetensors_declare(path, &shaped), AG_OK);
    assert_int_equal(shaped.n, 28);
    ag_params_free(&shaped);

    /* A file whose tied copies differ is refused, naming both. */
    ag_params both;
    ag_params_init(&both);
    assert_int_equal(ckpt_safetensors_declare(HF_DIR "/gpt2/model.safetensors", &both), AG_OK);
    assert_int_equal(ag_params_finalize(&both), AG_OK);
    assert_int_equal(ckpt_safetensors_load(HF_DIR "/gpt2/model.safetensors", &both, NULL, 0), AG_OK);
    ag_tensor *head = ag_params_find(&both, "lm_head.weight");
    head->data[77] += 1.0f;
    tmp_path(path, "gpt2_untied.safetensors");
    assert_int_equal(ckpt_safetensors_save(path, &both, NULL, 0, false), AG_OK);
    EXPECT_ERROR(ckpt_safetensors_load(path, &back, gpt2_tied, 1), AG_ERR_ARG, path, "transformer.wte.weight",
                 "lm_head.weight", "differ", "element 77");
    ag_params_free(&both);

    /* HDF5 <-> safetensors: the same values through a checkpoint (convert). */
    tmp_path(path, "gpt2.h5");
    assert_int_equal(ckpt_save(path, &full, NULL), AG_OK);
    memset(back.values, 0, (size_t)back.total * 4);
    assert_int_equal(ckpt_load_params(path, &back), AG_OK);
    assert_memory_equal(back.values, full.values, (size_t)full.total * 4);

    ag_params_free(&full);
    ag_params_free(&dedup);
    ag_params_free(&back);
    ag_params_free(&back2);
}

/* The alias table a file's __metadata__.tied_groups describes: the first name
 * of each group is the parameter (named_parameters' name), the others alias it.
 * Returns the number of aliases; names are strdup'd into `names`. */
static int aliases_from_metadata(const char *path, ckpt_alias *out, int cap, char **names, int *n_names) {
    size_t n;
    unsigned char *b = slurp(path, &n);
    assert_non_null(b);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; --i) hl = hl << 8 | b[i];
    cJSON *h = cJSON_ParseWithLength((const char *)b + 8, (size_t)hl);
    cJSON *meta = cJSON_GetObjectItem(h, "__metadata__");
    cJSON *tg = cJSON_Parse(cJSON_GetObjectItem(meta, "tied_groups")->valuestring);
    assert_non_null(tg);
    int k = 0;
    for (cJSON *g = tg->child; g; g = g->next) {
        char *primary = names[(*n_names)++] = strdup(g->child->valuestring);
        for (cJSON *a = g->child->next; a; a = a->next) {
            assert_true(k < cap);
            out[k].primary = primary;
            out[k].alias = names[(*n_names)++] = strdup(a->valuestring);
            ++k;
        }
    }
    cJSON_Delete(tg);
    cJSON_Delete(h);
    free(b);
    return k;
}

/* bert and t5: the registry shaped like the deduplicated file; the full file,
 * re-tied by the aliases its metadata lists, gives the same values. */
static void check_family(const char *family, int want_aliases) {
    char full_path[256], hf_path[256], out[512], *names[32];
    int n_names = 0;
    sprintf(full_path, HF_DIR "/%s/model.safetensors", family);
    sprintf(hf_path, HF_DIR "/%s/model_hf.safetensors", family);
    ckpt_alias al[16];
    int na = aliases_from_metadata(full_path, al, 16, names, &n_names);
    assert_int_equal(na, want_aliases);

    ag_params a, b, c;
    ag_params_init(&a);
    ag_params_init(&b);
    ag_params_init(&c);
    assert_int_equal(ckpt_safetensors_declare(hf_path, &a), AG_OK);
    assert_int_equal(ckpt_safetensors_declare(hf_path, &b), AG_OK);
    assert_int_equal(ckpt_safetensors_declare(hf_path, &c), AG_OK);
    assert_int_equal(ag_params_finalize(&a), AG_OK);
    assert_int_equal(ag_params_finalize(&b), AG_OK);
    assert_int_equal(ag_params_finalize(&c), AG_OK);
    assert_int_equal(ckpt_safetensors_load(full_path, &a, al, na), AG_OK);
    assert_int_equal(ckpt_safetensors_load(hf_path, &b, al, na), AG_OK);
    assert_memory_equal(a.values, b.values, (size_t)a.total * 4);
    printf("    %s: %lld tensors (%d tied aliases), %lld parameters\n", family, (long long)a.n, na,
           (long long)a.total);

    sprintf(out, "%s/%s_roundtrip.safetensors", tmpdir, family);
    assert_int_equal(ckpt_safetensors_save(out, &a, al, na, true), AG_OK);
    assert_int_equal(ckpt_safetensors_load(out, &c, al, na), AG_OK);
    assert_memory_equal(c.values, a.values, (size_t)a.total * 4);
    /* the written file has every state_dict key, like model.safetensors */
    ag_params d;
    ag_params_init(&d);
    assert_int_equal(ckpt_safetensors_declare(out, &d), AG_OK);
    assert_int_equal(d.n, a.n + na);
    ag_params_free(&d);

    ag_params_free(&a);
    ag_params_free(&b);
    ag_params_free(&c);
    for (int i = 0; i < n_names; ++i) free(names[i]);
}

static void test_bert_safetensors(void **state) { check_family("bert", 2); }
static void test_t5_safetensors(void **state) { check_family("t5", 3); }

/* F16 and BF16 convert to float32 exactly as PyTorch's .float() does. */
static void test_half_precision(void **state) {
    ag_params half, ref;
    ag_params_init(&half);
    ag_params_init(&ref);
    assert_int_equal(ckpt_safetensors_declare(CKPT_FIXTURES "/halfs_f32.safetensors", &half), AG_OK);
    assert_int_equal(ckpt_safetensors_declare(CKPT_FIXTURES "/halfs_f32.safetensors", &ref), AG_OK);
    assert_int_equal(ag_params_finalize(&half), AG_OK);
    assert_int_equal(ag_params_finalize(&ref), AG_OK);
    assert_int_equal(ckpt_safetensors_load(CKPT_FIXTURES "/halfs.safetensors", &half, NULL, 0), AG_OK);
    assert_int_equal(ckpt_safetensors_load(CKPT_FIXTURES "/halfs_f32.safetensors", &ref, NULL, 0), AG_OK);
    assert_int_equal(half.total, 12 + 6 + 4);
    for (int64_t i = 0; i < ref.total; ++i)
        if (memcmp(&half.values[i], &ref.values[i], 4) != 0)
            fail_msg("element %lld: %.9g, PyTorch says %.9g", (long long)i, half.values[i], ref.values[i]);
    const ag_tensor *h = ag_params_find(&half, "h");
    assert_true(h->data[3] == ldexpf(1.0f, -24)); /* the smallest subnormal half */
    assert_true(h->data[5] == 65504.0f);          /* the largest half */
    assert_true(isinf(h->data[6]) && h->data[6] < 0);
    assert_true(signbit(h->data[1]) && h->data[1] == 0.0f);
    ag_params_free(&half);
    ag_params_free(&ref);
}

/* ---------------------------------------------------------------- safetensors: bad headers */

/* Writes a safetensors file from a header text and `data_len` bytes of data. */
static void write_st(const char *path, const char *header, size_t data_len) {
    size_t n = strlen(header);
    unsigned char *b = calloc(8 + n + data_len + 1, 1);
    for (int i = 0; i < 8; ++i) b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, n);
    spit(path, b, 8 + n + data_len);
    free(b);
}

static void test_bad_headers_refused(void **state) {
    char p[512];
    ag_params ps;
    ag_params_init(&ps);
    assert_non_null(ag_params_add(&ps, "w", 2, AG_SHAPE(2, 2)));
    assert_non_null(ag_params_add(&ps, "b", 1, AG_SHAPE(2)));
    assert_int_equal(ag_params_finalize(&ps), AG_OK);

    /* a good file first, so that each case below differs in one thing */
    tmp_path(p, "good.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 24);
    assert_int_equal(ckpt_safetensors_load(p, &ps, NULL, 0), AG_OK);

    tmp_path(p, "past_end.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,400]}}", 24);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_IO, p, "tensor b", "past the end");

    tmp_path(p, "wrong_len.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_IO, p, "tensor w", "hold 12 bytes", "needs 16");

    tmp_path(p, "garbage.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},,,}", 24);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_IO, p, "not valid JSON");

    tmp_path(p, "gap.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[20,28]}}", 28);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_IO, p, "tensor b", "gap");

    tmp_path(p, "overlap.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_IO, p, "overlap");

    tmp_path(p, "trailing.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 32);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_IO, p, "end at byte 24", "32 bytes");

    tmp_path(p, "dtype.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F31\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_IO, p, "tensor w", "unknown dtype \"F31\"");

    tmp_path(p, "int_dtype.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 24);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_ARG, p, "tensor w has dtype I32");

    tmp_path(p, "twice.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 24);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_IO, p, "tensor w appears twice");

    tmp_path(p, "bad_shape.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-2],\"data_offsets\":[0,16]}}", 16);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_IO, p, "tensor w", "shape[1]");

    tmp_path(p, "bad_meta.safetensors");
    write_st(p, "{\"__metadata__\":{\"format\":3},"
                "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_IO, p, "__metadata__.format");

    /* the header length itself lies */
    tmp_path(p, "huge_len.safetensors");
    unsigned char b[64] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, '{', '}'};
    spit(p, b, 10);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_IO, p, "header length 4294967295");
    tmp_path(p, "tiny.safetensors");
    spit(p, b, 5);
    EXPECT_ERROR(ckpt_safetensors_load(p, &ps, NULL, 0), AG_ERR_IO, p, "too short");

    /* a real file, cut short: the last tensor's range runs past the end */
    size_t n;
    unsigned char *whole = slurp(HF_DIR "/gpt2/model_hf.safetensors", &n);
    tmp_path(p, "gpt2_cut.safetensors");
    spit(p, whole, n - 100);
    free(whole);
    ag_params g;
    gpt2_model(&g, 32);
    EXPECT_ERROR(ckpt_safetensors_load(p, &g, gpt2_tied, 1), AG_ERR_IO, p, "tensor ", "past the end", "truncated");
    ag_params_free(&g);

    /* nothing above wrote into the model: it still holds the good file's zeros */
    for (int64_t i = 0; i < ps.total; ++i) assert_true(ps.values[i] == 0.0f);
    ag_params_free(&ps);
}

/* Old BERT checkpoints name LayerNorm parameters gamma and beta: the loader
 * takes them as weight and bias, as Hugging Face does, and the model computes
 * the same loss as from the modern file. */
static void test_legacy_layernorm_names(void **state) {
    const char *cfg = HF_FIXTURE_DIR "/bert/config.json", *st = HF_FIXTURE_DIR "/bert/model_hf.safetensors",
               *batch_path = HF_FIXTURE_DIR "/bert/inputs.json";
    char old[] = "/tmp/tapegrad-legacy-XXXXXX.safetensors";
    FILE *probe = fopen(st, "rb");
    if (!probe) skip();
    fclose(probe);
    /* the fixture's tensors under their historic names */
    ag_params file, legacy;
    ag_params_init(&file);
    ag_params_init(&legacy);
    assert_int_equal(ckpt_safetensors_declare(st, &file), AG_OK);
    assert_int_equal(ag_params_finalize(&file), AG_OK);
    assert_int_equal(ckpt_safetensors_load(st, &file, NULL, 0), AG_OK);
    int renamed = 0;
    for (int64_t i = 0; i < file.n; ++i) {
        char name[512];
        snprintf(name, sizeof name, "%s", file.p[i]->name);
        size_t n = strlen(name);
        if (strstr(name, "LayerNorm.weight") && n > 7) { strcpy(name + n - 7, ".gamma"); renamed++; }
        else if (strstr(name, "LayerNorm.bias") && n > 5) { strcpy(name + n - 5, ".beta"); renamed++; }
        assert_non_null(ag_params_add(&legacy, name, file.p[i]->ndim, file.p[i]->shape));
    }
    assert_true(renamed >= 4);
    assert_int_equal(ag_params_finalize(&legacy), AG_OK);
    memcpy(legacy.values, file.values, (size_t)file.total * sizeof(float));
    int fd = mkstemps(old, 12);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ckpt_safetensors_save(old, &legacy, NULL, 0, false), AG_OK);

    float loss[2];
    const char *paths[2] = {st, old};
    for (int k = 0; k < 2; ++k) {
        recipe_model m;
        recipe_batch b;
        assert_int_equal(recipe_model_declare(&m, cfg, NULL), AG_OK);
        assert_int_equal(recipe_model_alloc(&m, 0), AG_OK);
        if (ckpt_safetensors_load(paths[k], &m.ps, m.aliases, m.n_aliases) != AG_OK) fail_msg("%s", ag_error());
        assert_int_equal(recipe_batch_load(&b, batch_path), AG_OK);
        ag_ctx *ctx = ag_ctx_create(0);
        ag_tensor *l = recipe_model_loss(ctx, &m, &b, NULL);
        assert_non_null(l);
        loss[k] = l->data[0];
        ag_ctx_free(ctx);
        recipe_batch_free(&b);
        recipe_model_free(&m);
    }
    printf("%d LayerNorm tensors under gamma/beta names: loss %.7f, modern names %.7f\n", renamed, loss[1], loss[0]);
    assert_memory_equal(&loss[0], &loss[1], sizeof(float));
    remove(old);
    ag_params_free(&file);
    ag_params_free(&legacy);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_load_bitwise),
        cmocka_unit_test(test_params_only),
        cmocka_unit_test(test_declare_from_file),
        cmocka_unit_test(test_truncated_refused),
        cmocka_unit_test(test_not_hdf5_refused),
        cmocka_unit_test(test_other_model_refused),
        cmocka_unit_test(test_missing_param_refused),
        cmocka_unit_test(test_wrong_shape_refused),
        cmocka_unit_test(test_failed_save_keeps_previous),
        cmocka_unit_test(test_gpt2_safetensors),
        cmocka_unit_test(test_bert_safetensors),
        cmocka_unit_test(test_t5_safetensors),
        cmocka_unit_test(test_half_precision),
        cmocka_unit_test(test_bad_headers_refused),
        cmocka_unit_test(test_legacy_layernorm_names),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
