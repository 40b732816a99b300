/* test_t5.c: T5 against the real Hugging Face implementation and a transcription of it.
 *
 * ../shared/fixtures/hf/t5 holds a tiny T5ForConditionalGeneration (the
 * original T5: ReLU feed-forward, head tied to `shared` with the d_model^-0.5
 * rescale) run through transformers 4.31: weights, a padded batch, the loss,
 * the logits and every gradient. tapegrad loads the same safetensors (both the
 * full state_dict and save_pretrained's file, whose embed_tokens and lm_head
 * copies must be re-tied) and must give the loss within 1e-5 relative and
 * every gradient within 1e-4.
 *
 * tests/fixtures/t5/v1_1 (gen_t5.py) covers T5 v1.1: gated-GELU, an untied
 * lm_head, d_model != num_heads * d_kv, more decoder than encoder layers;
 * its reference is a PyTorch transcription of modeling_t5.py that first
 * reproduces the Hugging Face fixture. Also: the relative-position buckets
 * against Hugging Face's own function, T5EncoderModel, parameter totals of
 * t5-small, t5-base and google/t5-v1_1-small, the init, bad configs.
 */
#include "family.h"
#include "harness.h"

#include "models.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HF_FIXTURE_DIR
#define HF_FIXTURE_DIR "../shared/fixtures/hf"
#endif
#define HF_T5_DIR HF_FIXTURE_DIR "/t5"
#define T5_FIXTURE_DIR FIXTURE_DIR "/t5"
#define V11_DIR T5_FIXTURE_DIR "/v1_1"

/* ---------------------------------------------------------------- Hugging Face's fixture */

static void test_loss_and_gradients_match_hugging_face(void **state) {
    (void)state;
    if (!family_file_present(HF_T5_DIR "/model_hf.safetensors")) skip();
    const char *files[] = {HF_T5_DIR "/model_hf.safetensors", HF_T5_DIR "/model.safetensors"};
    hid_t e = H5Fopen(HF_T5_DIR "/expected.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(e >= 0);
    float *want_loss = h5_read_floats(e, "loss", NULL);
    int64_t n_logits = 0;
    float *want_logits = h5_read_floats(e, "logits", &n_logits);
    for (int k = 0; k < 2; ++k) {
        recipe_model m;
        recipe_batch b;
        family_build(&m, HF_T5_DIR "/config.json", NULL, files[k]);
        assert_int_equal(m.ps.total, 45504); /* expected.json's num_params_unique */
        assert_int_equal(m.n_aliases, 3);    /* encoder/decoder embed_tokens, lm_head -> shared */
        assert_int_equal(recipe_batch_load(&b, HF_T5_DIR "/inputs.json"), AG_OK);
        ag_ctx *ctx = ag_ctx_create(0);
        int64_t tokens;
        ag_tensor *loss = recipe_model_loss(ctx, &m, &b, &tokens);
        if (!loss) fail_msg("%s", ag_error());
        assert_int_equal(tokens, 14); /* 8 + 6 labels, two -100 */
        printf("%s: loss %.8f, Hugging Face %.8f\n", files[k], loss->data[0], want_loss[0]);
        assert_true(fabs(loss->data[0] - want_loss[0]) <= 1e-5 * fabs(want_loss[0]));
        assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
        double worst = 0;
        assert_int_equal(family_compare_grads_plain(&m.ps, e, &worst), 0);
        printf("  every gradient (47 tensors) within 1e-4; largest difference %.3g\n", worst);

        /* the logits themselves, through the public functions */
        ag_ctx_reset(ctx);
        const ag_ints *ids = recipe_batch_get(&b, "input_ids"), *mask = recipe_batch_get(&b, "attention_mask");
        ag_ints *dec_ids = nn_t5_shift_right(ctx, &m.t5, recipe_batch_get(&b, "labels"));
        ag_tensor *enc = nn_t5_encode(ctx, &m.t5, ids, mask);
        ag_tensor *logits = nn_t5_logits(ctx, &m.t5, nn_t5_decode(ctx, &m.t5, dec_ids, NULL, enc, mask));
        if (!logits) fail_msg("%s", ag_error());
        assert_int_equal(logits->numel, n_logits); /* [2,8,128] */
        assert_close("logits", logits->data, want_logits, n_logits, 1e-5, 1e-5);
        ag_ctx_free(ctx);
        recipe_batch_free(&b);
        recipe_model_free(&m);
    }
    free(want_logits);
    free(want_loss);
    H5Fclose(e);
}

/* labels shifted right with decoder_start_token_id, -100 -> pad: the
 * decoder_input_ids Hugging Face derived (inputs.json, for information). */
static void test_shift_right_matches_hugging_face(void **state) {
    (void)state;
    if (!family_file_present(HF_T5_DIR "/inputs.json")) skip();
    recipe_model m;
    family_build(&m, HF_T5_DIR "/config.json", NULL, NULL);
    char *text = ag_read_file("inputs", HF_T5_DIR "/inputs.json", 1 << 20, NULL);
    cJSON *root = cJSON_Parse(text);
    const cJSON *want = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "derived_internally_not_passed"),
                                            "decoder_input_ids");
    recipe_batch b;
    assert_int_equal(recipe_batch_load(&b, HF_T5_DIR "/inputs.json"), AG_OK);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_ints *got = nn_t5_shift_right(ctx, &m.t5, recipe_batch_get(&b, "labels"));
    assert_non_null(got);
    const int64_t T = got->shape[1];
    for (int64_t r = 0; r < got->shape[0]; ++r)
        for (int64_t t = 0; t < T; ++t)
            assert_int_equal(got->data[r * T + t], cJSON_GetArrayItem(cJSON_GetArrayItem(want, (int)r), (int)t)->valueint);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    cJSON_Delete(root);
    free(text);
    recipe_model_free(&m);
}

/* ---------------------------------------------------------------- v1.1 (the transcription) */

static void test_v1_1_matches_transcription(void **state) {
    (void)state;
    recipe_model m;
    recipe_batch b;
    family_build(&m, V11_DIR "/config.json", NULL, V11_DIR "/model.safetensors");
    assert_true(m.t5.cfg.gated);
    assert_int_equal(m.t5.cfg.act, NN_ACT_GELU_TANH); /* "gated-gelu" is gelu_new */
    assert_ptr_not_equal(m.t5.lm_head_w, m.t5.shared.w);
    assert_int_equal(m.n_aliases, 2); /* only the embed_tokens copies */
    assert_int_equal(recipe_batch_load(&b, T5_FIXTURE_DIR "/inputs.json"), AG_OK);
    hid_t e = H5Fopen(V11_DIR "/expected.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(e >= 0);
    float *want_loss = h5_read_floats(e, "loss", NULL);
    ag_ctx *ctx = ag_ctx_create(0);
    int64_t tokens;
    ag_tensor *loss = recipe_model_loss(ctx, &m, &b, &tokens);
    if (!loss) fail_msg("%s", ag_error());
    assert_int_equal(tokens, 10);
    printf("v1.1: loss %.8f, transcription %.8f\n", loss->data[0], want_loss[0]);
    assert_true(fabs(loss->data[0] - want_loss[0]) <= 1e-5 * fabs(want_loss[0]));
    assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
    double worst = 0;
    assert_int_equal(family_compare_grads_plain(&m.ps, e, &worst), 0);
    printf("  every gradient (%lld tensors) within 1e-4; largest difference %.3g\n", (long long)m.ps.n, worst);

    /* T5EncoderModel from the same config, its parameters copied by name:
     * the encoder's last hidden state */
    recipe_model enc_m;
    family_build(&enc_m, V11_DIR "/config.json", "T5EncoderModel", NULL);
    assert_int_equal(enc_m.n_aliases, 1);
    for (int64_t i = 0; i < enc_m.ps.n; ++i) {
        const ag_tensor *src = ag_params_find(&m.ps, enc_m.ps.p[i]->name);
        assert_non_null(src);
        memcpy(enc_m.ps.p[i]->data, src->data, (size_t)src->numel * sizeof(float));
    }
    ag_ctx_reset(ctx);
    ag_tensor *h = nn_t5_encode(ctx, &enc_m.t5, recipe_batch_get(&b, "input_ids"),
                                recipe_batch_get(&b, "attention_mask"));
    int64_t n_h = 0;
    float *want_h = h5_read_floats(e, "encoder_last_hidden_state", &n_h);
    if (!h) fail_msg("%s", ag_error());
    assert_int_equal(h->numel, n_h); /* [2,10,24] */
    assert_close("encoder_last_hidden_state", h->data, want_h, n_h, 1e-5, 1e-5);
    /* and it has neither a decoder nor a loss */
    assert_null(nn_t5_decode(ctx, &enc_m.t5, recipe_batch_get(&b, "input_ids"), NULL, h, NULL));
    assert_non_null(strstr(ag_error(), "T5EncoderModel has no decoder"));
    assert_null(recipe_model_loss(ctx, &enc_m, &b, NULL));
    assert_non_null(strstr(ag_error(), "no loss"));
    free(want_h);
    recipe_model_free(&enc_m);
    free(want_loss);
    H5Fclose(e);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

/* ---------------------------------------------------------------- buckets */

static void test_buckets_match_hugging_face(void **state) {
    (void)state;
    hid_t e = H5Fopen(V11_DIR "/expected.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(e >= 0);
    const struct { const char *name; bool bidirectional; int nb, md; } cases[] = {
        {"buckets/bidirectional_32_128", true, 32, 128}, {"buckets/causal_32_128", false, 32, 128},
        {"buckets/bidirectional_16_20", true, 16, 20},   {"buckets/causal_16_20", false, 16, 20},
    };
    for (int c = 0; c < 4; ++c) {
        int64_t n;
        int32_t *want = h5_read_as(e, cases[c].name, H5T_NATIVE_INT32, sizeof(int32_t), &n);
        assert_non_null(want);
        assert_int_equal(n, 81); /* rel = -40 .. 40 */
        for (int i = 0; i < 81; ++i) {
            int got = nn_t5_relative_bucket(i - 40, cases[c].bidirectional, cases[c].nb, cases[c].md);
            if (got != want[i]) fail_msg("%s: rel %d gives bucket %d, Hugging Face %d", cases[c].name, i - 40, got, want[i]);
        }
        free(want);
    }
    /* t5-small's encoder: distances 0..7 exact; the keys after the query use buckets 16..31 */
    assert_int_equal(nn_t5_relative_bucket(0, true, 32, 128), 0);
    assert_int_equal(nn_t5_relative_bucket(-7, true, 32, 128), 7);
    assert_int_equal(nn_t5_relative_bucket(3, true, 32, 128), 19);
    assert_int_equal(nn_t5_relative_bucket(-1000, true, 32, 128), 15);
    assert_int_equal(nn_t5_relative_bucket(5, false, 32, 128), 0); /* the future, unseen by a causal decoder */
    H5Fclose(e);
}

/* ---------------------------------------------------------------- sizes, init, bad configs */

/* t5-small, t5-base and google/t5-v1_1-small's config.json (the fields that
 * size the model) and the totals Hugging Face reports (num_parameters()). */
static const char *t5_small =
    "{\"model_type\": \"t5\", \"architectures\": [\"T5ForConditionalGeneration\"], \"d_model\": 512, "
    "\"d_ff\": 2048, \"d_kv\": 64, \"num_layers\": 6, \"num_heads\": 8, \"vocab_size\": 32128, "
    "\"relative_attention_num_buckets\": 32, \"decoder_start_token_id\": 0}";
static const char *t5_base =
    "{\"model_type\": \"t5\", \"architectures\": [\"T5ForConditionalGeneration\"], \"d_model\": 768, "
    "\"d_ff\": 3072, \"d_kv\": 64, \"num_layers\": 12, \"num_heads\": 12, \"vocab_size\": 32128, "
    "\"relative_attention_num_buckets\": 32, \"decoder_start_token_id\": 0}";
static const char *t5_v1_1_small =
    "{\"model_type\": \"t5\", \"architectures\": [\"T5ForConditionalGeneration\"], \"d_model\": 512, "
    "\"d_ff\": 1024, \"d_kv\": 64, \"num_layers\": 8, \"num_decoder_layers\": 8, \"num_heads\": 6, "
    "\"vocab_size\": 32128, \"feed_forward_proj\": \"gated-gelu\", \"tie_word_embeddings\": false, "
    "\"relative_attention_num_buckets\": 32, \"decoder_start_token_id\": 0}";

static void test_parameter_counts(void **state) {
    (void)state;
    assert_int_equal(count_params(t5_small, NULL), 60506624);
    assert_int_equal(count_params(t5_small, "T5Model"), 60506624);       /* the head is tied */
    assert_int_equal(count_params(t5_small, "T5EncoderModel"), 35330816); /* shared + encoder */
    assert_int_equal(count_params(t5_base, NULL), 222903552);
    assert_int_equal(count_params(t5_v1_1_small, NULL), 76961152);
    /* T5Model of v1.1: no lm_head [32128,512] */
    assert_int_equal(count_params(t5_v1_1_small, "T5Model"), 76961152 - 32128 * 512);
    printf("t5-small 60,506,624; t5-base 222,903,552; t5-v1_1-small 76,961,152\n");
}

/* _init_weights: the spread of each kind of weight, measured on a model big
 * enough for the sample standard deviation to be within a few percent. */
static double sample_std(const ag_tensor *t) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < t->numel; ++i) s += t->data[i], s2 += (double)t->data[i] * t->data[i];
    const double mean = s / (double)t->numel;
    return sqrt(s2 / (double)t->numel - mean * mean);
}

static void test_init_follows_hugging_face(void **state) {
    (void)state;
    const char *cfg = "{\"model_type\": \"t5\", \"architectures\": [\"T5ForConditionalGeneration\"], "
                      "\"d_model\": 64, \"d_ff\": 256, \"d_kv\": 32, \"num_heads\": 8, \"num_layers\": 1, "
                      "\"vocab_size\": 512, \"relative_attention_num_buckets\": 128, \"feed_forward_proj\": "
                      "\"gated-gelu\", \"tie_word_embeddings\": false, \"initializer_factor\": 2.0}";
    recipe_model m;
    family_build_text(&m, cfg, 7);
    const double f = 2.0;
    const struct { const char *name; double std; } want[] = {
        {"shared.weight", f},
        {"lm_head.weight", f},
        {"encoder.block.0.layer.0.SelfAttention.q.weight", f / sqrt(64.0 * 32)},
        {"encoder.block.0.layer.0.SelfAttention.k.weight", f / sqrt(64.0)},
        {"decoder.block.0.layer.1.EncDecAttention.v.weight", f / sqrt(64.0)},
        {"decoder.block.0.layer.1.EncDecAttention.o.weight", f / sqrt(8.0 * 32)},
        {"encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", f / sqrt(64.0)},
        {"encoder.block.0.layer.1.DenseReluDense.wi_0.weight", f / sqrt(64.0)},
        {"decoder.block.0.layer.2.DenseReluDense.wi_1.weight", f / sqrt(64.0)},
        {"decoder.block.0.layer.2.DenseReluDense.wo.weight", f / sqrt(256.0)},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; ++i) {
        const ag_tensor *t = ag_params_find(&m.ps, want[i].name);
        assert_non_null(t);
        const double s = sample_std(t);
        if (fabs(s - want[i].std) > 0.06 * want[i].std)
            fail_msg("%s: std %.5f, want %.5f", want[i].name, s, want[i].std);
    }
    const char *norms[] = {"encoder.block.0.layer.0.layer_norm.weight", "decoder.block.0.layer.1.layer_norm.weight",
                           "decoder.final_layer_norm.weight"};
    for (int i = 0; i < 3; ++i) {
        const ag_tensor *t = ag_params_find(&m.ps, norms[i]);
        for (int64_t j = 0; j < t->numel; ++j) assert_true(t->data[j] == (float)f);
    }
    recipe_model_free(&m);
}

/* Each bad config is refused with a message naming the field. */
static void test_bad_configs_are_refused(void **state) {
    (void)state;
    const struct { const char *fields, *arch, *names; } bad[] = {
        {"\"feed_forward_proj\": \"gated-gelu-fast\"", NULL, "feed_forward_proj"},
        {"\"feed_forward_proj\": \"double-relu\"", NULL, "feed_forward_proj"},
        {"\"feed_forward_proj\": \"swishy\"", NULL, "feed_forward_proj"},
        {"\"layer_norm_epsilon\": 0", NULL, "layer_norm_epsilon"},
        {"\"dropout_rate\": 1.5", NULL, "dropout_rate"},
        {"\"initializer_factor\": -1", NULL, "initializer_factor"},
        {"\"relative_attention_num_buckets\": 2", NULL, "relative_attention_num_buckets"},
        {"\"relative_attention_max_distance\": 8", NULL, "relative_attention_max_distance"},
        {"\"d_model\": 0", NULL, "d_model"},
        {"\"num_heads\": \"eight\"", NULL, "num_heads"},
        {"\"d_kv\": 6.5", NULL, "d_kv"},
        {"\"tie_word_embeddings\": 3", NULL, "tie_word_embeddings"},
        {"\"d_ff\": 64", "T5ForQuestionAnswering", "T5ForQuestionAnswering"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        char text[512];
        snprintf(text, sizeof text,
                 "{%s, \"model_type\": \"t5\", \"architectures\": [\"T5ForConditionalGeneration\"], "
                 "\"vocab_size\": 64, \"d_model\": 16, \"num_layers\": 1, \"num_heads\": 2, \"d_kv\": 8}",
                 bad[i].fields); /* the bad field first: cJSON reads the first of a repeated name */
        recipe_model m;
        const char *path = temp_config(text);
        ag_status st = recipe_model_declare(&m, path, bad[i].arch);
        remove(path);
        recipe_model_free(&m);
        if (st == AG_OK) fail_msg("config with %s was accepted", bad[i].fields);
        if (!strstr(ag_error(), bad[i].names))
            fail_msg("config with %s: message '%s' does not name %s", bad[i].fields, ag_error(), bad[i].names);
    }
}

/* Errors at run time: a class without a loss, labels that cannot be shifted,
 * mismatched shapes. */
static void test_run_time_errors(void **state) {
    (void)state;
    recipe_model m;
    recipe_batch b;
    family_build(&m, V11_DIR "/config.json", "T5Model", NULL);
    assert_int_equal(recipe_batch_load(&b, T5_FIXTURE_DIR "/inputs.json"), AG_OK);
    ag_ctx *ctx = ag_ctx_create(0);
    assert_null(recipe_model_loss(ctx, &m, &b, NULL));
    assert_non_null(strstr(ag_error(), "T5Model has no loss"));
    /* T5Model still encodes and decodes */
    const ag_ints *ids = recipe_batch_get(&b, "input_ids"), *mask = recipe_batch_get(&b, "attention_mask");
    m.t5.cfg.decoder_start_token_id = -1;
    assert_null(nn_t5_shift_right(ctx, &m.t5, recipe_batch_get(&b, "labels")));
    assert_non_null(strstr(ag_error(), "decoder_start_token_id"));
    ag_tensor *enc = nn_t5_encode(ctx, &m.t5, ids, mask);
    assert_non_null(enc);
    ag_tensor *dec = nn_t5_decode(ctx, &m.t5, ids, mask, enc, mask);
    assert_non_null(dec);
    assert_int_equal(dec->shape[2], 24);
    assert_null(nn_t5_logits(ctx, &m.t5, dec));
    /* a mask of the wrong shape names it */
    ag_ints bad_mask = ag_ints_wrap(mask->data, 2, AG_SHAPE(1, 10));
    assert_null(nn_t5_encode(ctx, &m.t5, ids, &bad_mask));
    assert_non_null(strstr(ag_error(), "attention_mask"));
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_and_gradients_match_hugging_face),
        cmocka_unit_test(test_shift_right_matches_hugging_face),
        cmocka_unit_test(test_v1_1_matches_transcription),
        cmocka_unit_test(test_buckets_match_hugging_face),
        cmocka_unit_test(test_parameter_counts),
        cmocka_unit_test(test_init_follows_hugging_face),
        cmocka_unit_test(test_bad_configs_are_refused),
        cmocka_unit_test(test_run_time_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
