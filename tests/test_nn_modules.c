/* test_nn_modules.c: the feed-forward network and the transformer block
 * (nn/blocks.c) against PyTorch.
 *
 * tests/fixtures/nn/blocks.h5 (made by tests/fixtures/nn/gen_block_fixtures.py
 * with PyTorch in float64) holds five layers written out by hand as their
 * Hugging Face classes compute them, with random weights under Hugging Face's
 * names: BertLayer (post-LN, padding mask, GELU erf, LayerNorm eps 1e-12),
 * GPT2Block (pre-LN, causal, Conv1D), a T5 v1.1 encoder block (pre-RMSNorm,
 * gated-gelu, no scaling, a position bias [NH,T,T] that needs a gradient),
 * BartDecoderLayer (post-LN with cross-attention, T != S, padded encoder keys)
 * and a T5 decoder block (pre-RMSNorm with cross-attention). For each, the
 * block is declared from a config and a naming struct, every parameter is
 * loaded by name (the registry and the fixture must hold the same names and
 * shapes), and the output and the gradients of sum(out * dout) with respect to
 * every parameter, the input, the encoder states and the bias must match
 * PyTorch's within 1e-4 relative. Then: nn_block with GPT-2's names gives
 * nn/gpt2.c's inline block bit for bit; bad configs and bad calls are refused
 * with a message naming the module; dropout acts only in training mode.
 */
#include "harness.h"

#include "gpt2.h"
#include "nn.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCKS_H5 FIXTURE_DIR "/nn/blocks.h5"

/* The fixture's sizes (gen_block_fixtures.py). */
enum { B = 2, T = 5, S = 7, C = 16, NH = 4, D = 4, FF = 32, T5_DKV = 6 };

/* Reads dataset `name` of group `grp` into a malloc'd buffer of `type`
 * (H5T_NATIVE_FLOAT or H5T_NATIVE_INT32); its shape into shape/ndim. Returns
 * NULL when absent. */
static void *read_h5(hid_t f, const char *grp, const char *name, hid_t type, int *ndim, int64_t *shape) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", grp, name);
    if (H5Lexists(f, path, H5P_DEFAULT) <= 0) return NULL;
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[AG_MAX_DIMS] = {0};
    int nd = H5Sget_simple_extent_ndims(sp);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    int64_t n = H5Sget_simple_extent_npoints(sp);
    void *x = malloc((size_t)(n ? n : 1) * 4);
    H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Sclose(sp);
    H5Dclose(d);
    if (ndim) *ndim = nd;
    for (int i = 0; shape && i < nd; ++i) shape[i] = (int64_t)dims[i];
    return x;
}

/* A float input of the case as a leaf that needs a gradient, or NULL. */
static ag_tensor *leaf(ag_ctx *ctx, hid_t f, const char *grp, const char *name) {
    int nd;
    int64_t shape[AG_MAX_DIMS];
    float *x = read_h5(f, grp, name, H5T_NATIVE_FLOAT, &nd, shape);
    if (!x) return NULL;
    ag_tensor *t = ag_from(ctx, x, nd, shape, true);
    free(x);
    return t;
}

/* An integer input (a padding mask) of the case, or NULL. */
static ag_ints *ints(ag_ctx *ctx, hid_t f, const char *grp, const char *name) {
    int nd;
    int64_t shape[AG_MAX_DIMS];
    int32_t *x = read_h5(f, grp, name, H5T_NATIVE_INT32, &nd, shape);
    if (!x) return NULL;
    ag_ints *t = ag_ints_from(ctx, x, nd, shape);
    free(x);
    return t;
}

/* The max |a-e| / max|e| of one array, for the report. */
static double rel_err(const float *a, const float *e, int64_t n) {
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < n; ++i) {
        double d = a[i] - (double)e[i];
        if (d < 0) d = -d;
        if (d > worst) worst = d;
        double m = e[i] < 0 ? -e[i] : e[i];
        if (m > scale) scale = m;
    }
    return scale > 0 ? worst / scale : worst;
}

/* Compares a gradient with the fixture's grads/<name>; returns true when close.
 * A gradient that is zero in exact arithmetic (the key projection's bias: it
 * adds q.b_k to every score of a query's row, and softmax cancels a constant
 * added to a row) is, in float32, rounding noise of the size of the other
 * gradients times 1e-7, and PyTorch's float64 noise is 1e-16: such a tensor
 * (all of PyTorch's values below 1e-10 of `scale`, the largest gradient of the
 * layer) must stay below 1e-5 of `scale` instead. *worst becomes the
 * larger of itself and this tensor's max |diff| / max |PyTorch's value|. */
static bool grad_close(hid_t f, const char *grp, const char *name, const ag_tensor *t, double scale,
                       double *worst) {
    char path[300];
    snprintf(path, sizeof path, "grads/%s", name);
    int64_t shape[AG_MAX_DIMS];
    int nd;
    float *want = read_h5(f, grp, path, H5T_NATIVE_FLOAT, &nd, shape);
    if (!want) {
        printf("%s: no %s in the fixture\n", grp, path);
        return false;
    }
    char what[400];
    snprintf(what, sizeof what, "%s: d %s", grp, name);
    double want_max = 0, got_max = 0;
    for (int64_t i = 0; i < t->numel; ++i) {
        want_max = fmax(want_max, fabs(want[i]));
        got_max = t->grad ? fmax(got_max, fabs(t->grad[i])) : 0;
    }
    bool ok;
    if (want_max < 1e-10 * scale) {
        ok = t->grad && got_max <= 1e-5 * scale;
        printf("  %s: zero in exact arithmetic; largest |value| %.2e (layer's gradient scale %.2e)%s\n", what,
               got_max, scale, ok ? "" : " TOO LARGE");
    } else {
        ok = t->grad && check_close(what, t->grad, want, t->numel, 1e-4, 1e-4);
        if (t->grad) *worst = fmax(*worst, rel_err(t->grad, want, t->numel));
    }
    free(want);
    return ok;
}

/* Runs one fixture case: declares the block, loads its parameters by name,
 * runs forward and backward (seed dout), and compares everything. */
static void run_block_case(const char *grp, const nn_block_config *cfg, const nn_block_names *names,
                           bool self_causal) {
    hid_t f = H5Fopen(BLOCKS_H5, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    ag_params ps;
    ag_params_init(&ps);
    nn_block blk;
    if (nn_block_init(&ps, &blk, "", cfg, names) != AG_OK) fail_msg("%s: %s", grp, ag_error());
    assert_int_equal(ag_params_finalize(&ps), AG_OK);

    /* Every declared parameter is in the fixture with the same shape, and the
     * fixture holds no others: the names are Hugging Face's. */
    char path[300];
    for (int64_t i = 0; i < ps.n; ++i) {
        ag_tensor *p = ps.p[i];
        int nd;
        int64_t shape[AG_MAX_DIMS];
        snprintf(path, sizeof path, "params/%s", p->name);
        float *v = read_h5(f, grp, path, H5T_NATIVE_FLOAT, &nd, shape);
        if (!v) fail_msg("%s: parameter %s is not in the fixture", grp, p->name);
        assert_int_equal(nd, p->ndim);
        for (int d = 0; d < nd; ++d) assert_int_equal(shape[d], p->shape[d]);
        memcpy(p->data, v, (size_t)p->numel * sizeof(float));
        free(v);
    }
    snprintf(path, sizeof path, "%s/params", grp);
    H5G_info_t info;
    assert_true(H5Gget_info_by_name(f, path, &info, H5P_DEFAULT) >= 0);
    assert_int_equal((int64_t)info.nlinks, ps.n);

    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = leaf(ctx, f, grp, "x"), *enc = leaf(ctx, f, grp, "enc"), *bias = leaf(ctx, f, grp, "bias");
    ag_attn_opts self = {.causal = self_causal, .key_mask = ints(ctx, f, grp, "key_mask"), .bias = bias};
    ag_attn_opts cross = {.key_mask = ints(ctx, f, grp, "enc_mask")};
    ag_tensor *out = nn_block_forward(ctx, &blk, x, enc, &self, &cross);
    if (!out) fail_msg("%s: %s", grp, ag_error());

    float *want = read_h5(f, grp, "out", H5T_NATIVE_FLOAT, NULL, NULL);
    float *dout = read_h5(f, grp, "dout", H5T_NATIVE_FLOAT, NULL, NULL);
    assert_non_null(want);
    assert_non_null(dout);
    int bad = !check_close(grp, out->data, want, out->numel, 1e-4, 1e-4);
    double worst_grad = 0;
    printf("%s: %lld parameters (%lld floats), out max rel diff %.2e\n", grp, (long long)ps.n, (long long)ps.total,
           rel_err(out->data, want, out->numel));
    assert_int_equal(ag_backward(ctx, out, dout), AG_OK);
    double scale = 0; /* the largest of PyTorch's parameter gradients */
    for (int64_t i = 0; i < ps.n; ++i) {
        snprintf(path, sizeof path, "grads/%s", ps.p[i]->name);
        float *g = read_h5(f, grp, path, H5T_NATIVE_FLOAT, NULL, NULL);
        for (int64_t j = 0; g && j < ps.p[i]->numel; ++j) scale = fmax(scale, fabs(g[j]));
        free(g);
    }
    for (int64_t i = 0; i < ps.n; ++i) bad += !grad_close(f, grp, ps.p[i]->name, ps.p[i], scale, &worst_grad);
    ag_tensor *inputs[3] = {x, enc, bias};
    const char *input_names[3] = {"x", "enc", "bias"};
    for (int k = 0; k < 3; ++k)
        if (inputs[k]) bad += !grad_close(f, grp, input_names[k], inputs[k], scale, &worst_grad);
    printf("%s: gradients max rel diff %.2e\n", grp, worst_grad);
    assert_int_equal(bad, 0);
    free(want);
    free(dout);
    ag_ctx_free(ctx);
    ag_params_free(&ps);
    H5Fclose(f);
}

/* ---------------------------------------------------------------- the five layers */

static void test_bert_layer_post_ln(void **state) {
    nn_block_config c = {.d_model = C, .n_head = NH, .d_head = D, .d_ff = FF, .pre_ln = false, .norm_eps = 1e-12f,
                         .attn_bias = true, .ffn_bias = true, .act = NN_ACT_GELU};
    run_block_case("bert", &c, &nn_block_names_bert, false);
}

static void test_gpt2_block_pre_ln(void **state) {
    nn_block_config c = {.d_model = C, .n_head = NH, .d_head = D, .d_ff = FF, .pre_ln = true, .norm_eps = 1e-5f,
                         .fused_qkv = true, .attn_bias = true, .ffn_bias = true, .layout = AG_LINEAR_IN_OUT,
                         .act = NN_ACT_GELU_TANH};
    run_block_case("gpt2", &c, &nn_block_names_gpt2, true);
}

static void test_t5_block_rms_gated_with_bias(void **state) {
    nn_block_config c = {.d_model = C, .n_head = NH, .d_head = T5_DKV, .d_ff = FF, .pre_ln = true, .rms_norm = true,
                         .norm_eps = 1e-6f, .act = NN_ACT_GELU_TANH, .gated = true, .no_scale = true};
    nn_block_names n = nn_block_names_t5(false, true);
    run_block_case("t5", &c, &n, false);
}

static void test_bart_decoder_layer_cross_attention(void **state) {
    nn_block_config c = {.d_model = C, .n_head = NH, .d_head = D, .d_ff = FF, .pre_ln = false, .norm_eps = 1e-5f,
                         .cross_attention = true, .attn_bias = true, .ffn_bias = true, .act = NN_ACT_GELU};
    run_block_case("bart", &c, &nn_block_names_bart_decoder, true);
}

static void test_t5_decoder_block_cross_attention(void **state) {
    nn_block_config c = {.d_model = C, .n_head = NH, .d_head = T5_DKV, .d_ff = FF, .pre_ln = true, .rms_norm = true,
                         .norm_eps = 1e-6f, .cross_attention = true, .act = NN_ACT_RELU, .no_scale = true};
    nn_block_names n = nn_block_names_t5(true, false);
    run_block_case("t5dec", &c, &n, true);
}

/* nn/gpt2.c writes its block out inline; nn_block with nn_block_names_gpt2
 * must compute the same function under the same names: a one-layer GPT2Model's
 * hidden states equal ln_f(block(wte[ids] + wpe[pos])), bit for bit, and so do
 * the gradients. */
static void test_block_equals_gpt2_inline_block(void **state) {
    nn_gpt2_config g = {.vocab_size = 11, .n_positions = 8, .n_embd = C, .n_layer = 1, .n_head = NH, .n_inner = FF,
                        .layer_norm_epsilon = 1e-5f, .act = NN_ACT_GELU_TANH, .scale_attn_weights = true};
    ag_params ps_gpt2, ps_blk;
    ag_params_init(&ps_gpt2);
    ag_params_init(&ps_blk);
    nn_gpt2 m;
    nn_block blk;
    nn_norm ln_f;
    assert_int_equal(nn_gpt2_declare(&ps_gpt2, &m, &g, false), AG_OK);
    nn_block_config c = {.d_model = C, .n_head = NH, .d_head = D, .d_ff = FF, .pre_ln = true, .norm_eps = 1e-5f,
                         .fused_qkv = true, .attn_bias = true, .ffn_bias = true, .layout = AG_LINEAR_IN_OUT,
                         .act = NN_ACT_GELU_TANH};
    assert_int_equal(nn_block_init(&ps_blk, &blk, "h.0", &c, &nn_block_names_gpt2), AG_OK);
    assert_int_equal(nn_layernorm_init(&ps_blk, &ln_f, "ln_f", C, 1e-5f), AG_OK);
    assert_int_equal(ag_params_finalize(&ps_gpt2), AG_OK);
    assert_int_equal(ag_params_finalize(&ps_blk), AG_OK);
    nn_init_rng r = {3, 0};
    for (int64_t i = 0; i < ps_gpt2.total; ++i) ps_gpt2.values[i] = 0.3f * nn_randn(&r);
    /* every block parameter is a GPT-2 parameter of the same name and shape */
    for (int64_t i = 0; i < ps_blk.n; ++i) {
        ag_tensor *p = ps_blk.p[i], *q = ag_params_find(&ps_gpt2, p->name);
        if (!q) fail_msg("%s is not a GPT2Model parameter", p->name);
        assert_int_equal(p->numel, q->numel);
        memcpy(p->data, q->data, (size_t)p->numel * sizeof(float));
    }
    assert_int_equal(ps_blk.n + 2, ps_gpt2.n); /* all but wte and wpe */

    int32_t ids[B * T] = {1, 4, 2, 9, 3, 0, 7, 7, 5, 10};
    int32_t pos[T] = {0, 1, 2, 3, 4};
    ag_ints id = ag_ints_wrap(ids, 2, AG_SHAPE(B, T)), ps = ag_ints_wrap(pos, 1, AG_SHAPE(T));
    float dout[B * T * C];
    for (int i = 0; i < B * T * C; ++i) dout[i] = nn_randn(&r);

    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *want = nn_gpt2_forward(ctx, &m, &id, NULL, 0);
    assert_non_null(want);
    assert_int_equal(ag_backward(ctx, want, dout), AG_OK);
    ag_ctx *ctx2 = ag_ctx_create(0); /* a tape is walked backwards once */
    ag_tensor *x = ag_add(ctx2, ag_embedding(ctx2, m.wte.w, &id, -1), ag_embedding(ctx2, m.wpe.w, &ps, -1));
    ag_tensor *got = nn_norm_forward(ctx2, &ln_f, nn_block_forward(ctx2, &blk, x, NULL,
                                                                  &(ag_attn_opts){.causal = true}, NULL));
    assert_non_null(got);
    assert_memory_equal(got->data, want->data, sizeof dout);
    assert_int_equal(ag_backward(ctx2, got, dout), AG_OK);
    for (int64_t i = 0; i < ps_blk.n; ++i) {
        ag_tensor *p = ps_blk.p[i], *q = ag_params_find(&ps_gpt2, p->name);
        assert_memory_equal(p->grad, q->grad, (size_t)p->numel * sizeof(float));
    }
    ag_ctx_free(ctx);
    ag_ctx_free(ctx2);
    nn_gpt2_free(&m);
    ag_params_free(&ps_gpt2);
    ag_params_free(&ps_blk);
}

/* ---------------------------------------------------------------- refusals */

/* Asserts that the last error mentions `what`. */
static void assert_error_names(const char *what) {
    if (!strstr(ag_error(), what)) fail_msg("error \"%s\" does not name \"%s\"", ag_error(), what);
}

static void test_bad_configs_name_the_module(void **state) {
    ag_params ps;
    ag_params_init(&ps);
    nn_block blk;
    nn_block_config c = {.d_model = C, .n_head = NH, .d_head = D, .d_ff = FF, .norm_eps = 1e-5f, .act = NN_ACT_GELU};

    nn_block_config bad = c;
    bad.d_ff = 0;
    assert_int_equal(nn_block_init(&ps, &blk, "encoder.layer.3", &bad, &nn_block_names_bert), AG_ERR_ARG);
    assert_error_names("block encoder.layer.3");
    assert_error_names("d_ff 0");

    bad = c;
    bad.resid_dropout = 1.0f;
    assert_int_equal(nn_block_init(&ps, &blk, "encoder.layer.3", &bad, &nn_block_names_bert), AG_ERR_ARG);
    assert_error_names("dropouts");

    bad = c;
    bad.norm_eps = 0;
    assert_int_equal(nn_block_init(&ps, &blk, "encoder.layer.3", &bad, &nn_block_names_bert), AG_ERR_ARG);
    assert_error_names("norm_eps");

    /* a decoder config with encoder names: no cross-attention names */
    bad = c;
    bad.cross_attention = true;
    assert_int_equal(nn_block_init(&ps, &blk, "decoder.layers.0", &bad, &nn_block_names_bart_encoder), AG_ERR_ARG);
    assert_error_names("block decoder.layers.0");
    assert_error_names("ln_cross");

    /* a gated ffn without wi_1 */
    nn_ffn ffn;
    nn_ffn_names plain = {.wi = "DenseReluDense.wi", .wo = "DenseReluDense.wo"};
    assert_int_equal(nn_ffn_init(&ps, &ffn, "layer.1", &plain, C, FF, NN_ACT_GELU, true, false, AG_LINEAR_OUT_IN),
                     AG_ERR_ARG);
    assert_error_names("ffn layer.1");
    assert_error_names("wi_1");
    assert_int_equal(nn_ffn_init(&ps, &ffn, "layer.1", &plain, C, -4, NN_ACT_GELU, false, false, AG_LINEAR_OUT_IN),
                     AG_ERR_ARG);
    assert_error_names("d_ff -4");

    /* the same names twice: the registry's error names the parameter */
    assert_int_equal(nn_block_init(&ps, &blk, "encoder.layer.0", &c, &nn_block_names_bert), AG_OK);
    assert_int_not_equal(nn_block_init(&ps, &blk, "encoder.layer.0", &c, &nn_block_names_bert), AG_OK);
    assert_error_names("encoder.layer.0.attention.output.LayerNorm.weight"); /* the first one declared */
    ag_params_free(&ps);
}

static void test_bad_calls_name_the_module(void **state) {
    ag_params ps;
    ag_params_init(&ps);
    nn_block enc_blk, dec_blk;
    nn_ffn ffn;
    nn_block_config c = {.d_model = C, .n_head = NH, .d_head = D, .d_ff = FF, .norm_eps = 1e-5f,
                         .attn_bias = true, .ffn_bias = true, .act = NN_ACT_GELU};
    assert_int_equal(nn_block_init(&ps, &enc_blk, "bert.encoder.layer.0", &c, &nn_block_names_bert), AG_OK);
    c.cross_attention = true;
    assert_int_equal(nn_block_init(&ps, &dec_blk, "model.decoder.layers.0", &c, &nn_block_names_bart_decoder), AG_OK);
    nn_ffn_names names = {.wi = "fc1", .wo = "fc2"};
    assert_int_equal(nn_ffn_init(&ps, &ffn, "mlp", &names, C, FF, NN_ACT_RELU, false, true, AG_LINEAR_OUT_IN), AG_OK);
    assert_int_equal(ag_params_finalize(&ps), AG_OK);

    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 3, AG_SHAPE(B, T, C), true);
    ag_tensor *narrow = ag_new(ctx, 3, AG_SHAPE(B, T, C / 2), true);
    ag_tensor *flat = ag_new(ctx, 2, AG_SHAPE(B * T, C), true);
    ag_tensor *enc = ag_new(ctx, 3, AG_SHAPE(B, S, C), true);
    ag_tensor *enc_b = ag_new(ctx, 3, AG_SHAPE(B + 1, S, C), true);

    /* mismatched widths */
    assert_null(nn_block_forward(ctx, &enc_blk, narrow, NULL, NULL, NULL));
    assert_error_names("block bert.encoder.layer.0");
    assert_error_names("[2,5,8]");
    assert_null(nn_block_forward(ctx, &enc_blk, flat, NULL, NULL, NULL));
    assert_error_names("block bert.encoder.layer.0");
    assert_null(nn_ffn_forward(ctx, &ffn, narrow));
    assert_error_names("ffn mlp");
    assert_error_names("d_model 16");

    /* cross-attention without encoder states, and encoder states without it */
    assert_null(nn_block_forward(ctx, &dec_blk, x, NULL, NULL, NULL));
    assert_error_names("block model.decoder.layers.0");
    assert_error_names("encoder states");
    assert_null(nn_block_forward(ctx, &enc_blk, x, enc, NULL, NULL));
    assert_error_names("block bert.encoder.layer.0");
    assert_error_names("no cross-attention");
    /* encoder states of another batch or width */
    assert_null(nn_block_forward(ctx, &dec_blk, x, enc_b, NULL, NULL));
    assert_error_names("block model.decoder.layers.0: enc is [3,7,16], want [2,S,16]");
    /* an op's error inside the block (a key mask of the wrong shape) passes through */
    ag_ints *mask = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T + 1));
    ag_attn_opts o = {.key_mask = mask};
    assert_null(nn_block_forward(ctx, &dec_blk, x, enc, NULL, &o));
    assert_error_names("key_mask");
    /* a NULL input keeps the first message */
    ag_fail(AG_ERR_ARG, "the first error");
    assert_null(nn_block_forward(ctx, &enc_blk, NULL, NULL, NULL, NULL));
    assert_null(nn_ffn_forward(ctx, &ffn, NULL));
    assert_string_equal(ag_error(), "the first error");

    /* and the good calls work: shapes through */
    ag_error_clear();
    ag_tensor *y = nn_block_forward(ctx, &dec_blk, x, enc, &(ag_attn_opts){.causal = true}, NULL);
    assert_non_null(y);
    assert_int_equal(y->ndim, 3);
    assert_int_equal(y->shape[1], T);
    ag_tensor *z = nn_ffn_forward(ctx, &ffn, flat);
    assert_non_null(z);
    assert_int_equal(z->shape[1], C);
    ag_ctx_free(ctx);
    ag_params_free(&ps);
}

/* In training mode the block's dropouts act (the output changes) and in
 * evaluation mode they do not (the output equals a dropout-free block's). */
static void test_dropout_only_in_training(void **state) {
    ag_params ps;
    ag_params_init(&ps);
    nn_block blk;
    nn_block_config c = {.d_model = C, .n_head = NH, .d_head = D, .d_ff = FF, .pre_ln = true, .norm_eps = 1e-5f,
                         .attn_bias = true, .ffn_bias = true, .act = NN_ACT_GELU, .gated = true,
                         .attn_dropout = 0.1f, .resid_dropout = 0.1f, .act_dropout = 0.1f};
    nn_block_names n = nn_block_names_t5(false, true);
    assert_int_equal(nn_block_init(&ps, &blk, "block", &c, &n), AG_OK);
    assert_int_equal(ag_params_finalize(&ps), AG_OK);
    nn_init_rng r = {7, 0};
    for (int64_t i = 0; i < ps.total; ++i) ps.values[i] = 0.3f * nn_randn(&r);
    float xs[B * T * C];
    for (int i = 0; i < B * T * C; ++i) xs[i] = nn_randn(&r);

    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_from(ctx, xs, 3, AG_SHAPE(B, T, C), false);
    ag_tensor *eval = nn_block_forward(ctx, &blk, x, NULL, NULL, NULL);
    assert_non_null(eval);
    int64_t eval_nodes = ctx->n_nodes;
    nn_block plain = blk;
    plain.cfg.resid_dropout = 0, plain.ffn.act_dropout = 0, plain.attn.attn_dropout = 0;
    ag_tensor *ref = nn_block_forward(ctx, &plain, x, NULL, NULL, NULL);
    assert_memory_equal(eval->data, ref->data, sizeof xs);
    assert_int_equal(ctx->n_nodes, 2 * eval_nodes); /* no dropout nodes recorded in evaluation */

    ag_ctx_train(ctx, true);
    ag_ctx_seed(ctx, 1);
    ag_tensor *train = nn_block_forward(ctx, &blk, x, NULL, NULL, NULL);
    assert_non_null(train);
    /* two residual dropouts and the one after the activation; the attention's
     * dropout is inside the fused attention op */
    assert_int_equal(ctx->n_nodes - 2 * eval_nodes, eval_nodes + 3);
    assert_false(memcmp(train->data, eval->data, sizeof xs) == 0);
    ag_ctx_free(ctx);
    ag_params_free(&ps);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bert_layer_post_ln),
        cmocka_unit_test(test_gpt2_block_pre_ln),
        cmocka_unit_test(test_t5_block_rms_gated_with_bias),
        cmocka_unit_test(test_bart_decoder_layer_cross_attention),
        cmocka_unit_test(test_t5_decoder_block_cross_attention),
        cmocka_unit_test(test_block_equals_gpt2_inline_block),
        cmocka_unit_test(test_bad_configs_name_the_module),
        cmocka_unit_test(test_bad_calls_name_the_module),
        cmocka_unit_test(test_dropout_only_in_training),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
