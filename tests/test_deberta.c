/* test_deberta.c: DeBERTa v1 and v2 against PyTorch.
 *
 * tests/fixtures/deberta/<case> holds a tiny model of each class with random
 * weights, a padded batch, and the loss and every gradient of a hand
 * transcription of Hugging Face's modeling_deberta.py and
 * modeling_deberta_v2.py (4.31) in plain PyTorch, float64
 * (gen_deberta_fixtures.py):
 *   deberta_mlm        v1 ForMaskedLM: c2p and p2c, relative positions
 *                      clipped at 4 of 12, absolute positions, token types
 *   deberta_seqcls     v1 ForSequenceClassification: c2p only, 3 labels
 *   deberta_v2_mlm     v2 ForMaskedLM as DeBERTa-v3: log buckets,
 *                      share_att_key, LayerNorm'd rel_embeddings, conv (gelu)
 *   deberta_v2_seqcls  v2 ForSequenceClassification: pos_key_proj and
 *                      pos_query_proj, clipped at 5, conv kernel 5 (tanh),
 *                      embed_proj, token types, regression
 * Also: v2's log buckets equal torch's float32 ones, the parameter totals of
 * microsoft/deberta-base and microsoft/deberta-v3-base, Hugging Face's init,
 * bad configs refused by field name.
 */
#include "family.h"
#include "harness.h"

#include "models.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OWN FIXTURE_DIR "/deberta"


/* The loss (within 1e-5 relative) and every parameter's gradient (within 1e-4,
 * check_close) of the folder's class on its batch. */
static void check_loss_and_grads(const char *dir, int64_t want_tokens) {
    family_check_loss_and_grads(dir, "config.json", NULL, "model.safetensors", want_tokens);
}

static void test_v1_matches_pytorch(void **state) {
    check_loss_and_grads(OWN "/deberta_mlm", 7);
    check_loss_and_grads(OWN "/deberta_seqcls", 2);
}

static void test_v2_matches_pytorch(void **state) {
    check_loss_and_grads(OWN "/deberta_v2_mlm", 7);
    check_loss_and_grads(OWN "/deberta_v2_seqcls", 2);
}

/* make_log_bucket_position over r in [-600, 600], against torch in float32. */
static void test_log_buckets(void **state) {
    hid_t f = H5Fopen(OWN "/buckets.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    int64_t n = 0;
    float *rel = h5_read_floats(f, "relative", &n), *b256 = h5_read_floats(f, "bucket_256_512", NULL),
          *b4 = h5_read_floats(f, "bucket_4_16", NULL);
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) {
        const int r = (int)rel[i];
        bad += nn_deberta_log_bucket(r, 256, 512) != (int)b256[i];
        bad += nn_deberta_log_bucket(r, 4, 16) != (int)b4[i];
    }
    printf("log buckets: %d of %lld differ (256 buckets over 512, 4 over 16)\n", bad, (long long)2 * n);
    assert_int_equal(bad, 0);
    free(rel), free(b256), free(b4);
    H5Fclose(f);
}

/* The published configs (config.json of microsoft/deberta-base and
 * microsoft/deberta-v3-base); the totals are the transcription's
 * sum(p.numel() for p in model.parameters()) for the same configs
 * (gen_deberta_fixtures.py prints them). deberta-v3-base's 183,831,552 is the
 * "86M backbone + 98M embedding" of its model card. */
static void test_parameter_counts(void **state) {
    const char *base = "{\"model_type\": \"deberta\", \"hidden_size\": 768, \"num_hidden_layers\": 12, "
                       "\"num_attention_heads\": 12, \"intermediate_size\": 3072, \"max_position_embeddings\": 512, "
                       "\"relative_attention\": true, \"pos_att_type\": \"c2p|p2c\", \"max_relative_positions\": -1, "
                       "\"position_biased_input\": false, \"type_vocab_size\": 0, \"vocab_size\": 50265, "
                       "\"layer_norm_eps\": 1e-7, \"hidden_act\": \"gelu\"}";
    assert_int_equal(count_params(base, "DebertaModel"), 138601728);
    assert_int_equal(count_params(base, "DebertaForMaskedLM"), 139244121);
    const char *v3 = "{\"model_type\": \"deberta-v2\", \"hidden_size\": 768, \"num_hidden_layers\": 12, "
                     "\"num_attention_heads\": 12, \"intermediate_size\": 3072, \"max_position_embeddings\": 512, "
                     "\"relative_attention\": true, \"position_buckets\": 256, \"norm_rel_ebd\": \"layer_norm\", "
                     "\"share_att_key\": true, \"pos_att_type\": \"p2c|c2p\", \"max_relative_positions\": -1, "
                     "\"position_biased_input\": false, \"type_vocab_size\": 0, \"vocab_size\": 128100, "
                     "\"layer_norm_eps\": 1e-7, \"hidden_act\": \"gelu\"}";
    assert_int_equal(count_params(v3, "DebertaV2Model"), 183831552);
    assert_int_equal(count_params(v3, "DebertaV2ForMaskedLM"), 184551780);
    printf("DebertaModel (deberta-base) 138,601,728; DebertaV2Model (deberta-v3-base) 183,831,552\n");
}

/* _init_weights: N(0, initializer_range), padding row zero, LayerNorm 1/0,
 * zero biases (q_bias, v_bias, the MLM bias); the conv kernel U(-b, b). */
static void test_init(void **state) {
    recipe_model m;
    family_build_text(&m, "{\"model_type\": \"deberta\", \"architectures\": [\"DebertaForMaskedLM\"], "
                          "\"hidden_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                          "\"intermediate_size\": 256, \"vocab_size\": 1000, \"pad_token_id\": 3, "
                          "\"relative_attention\": true, \"pos_att_type\": [\"c2p\", \"p2c\"], "
                          "\"initializer_range\": 0.05}", 7);
    struct { const char *name; double std, mean; } want[] = {
        {"deberta.embeddings.word_embeddings.weight", 0.05, 0},
        {"deberta.encoder.layer.1.attention.self.in_proj.weight", 0.05, 0},
        {"deberta.encoder.layer.1.attention.self.pos_proj.weight", 0.05, 0},
        {"deberta.encoder.rel_embeddings.weight", 0.05, 0},
        {"deberta.encoder.layer.1.attention.self.q_bias", 0, 0},
        {"deberta.encoder.layer.1.attention.self.pos_q_proj.bias", 0, 0},
        {"deberta.encoder.layer.1.output.LayerNorm.weight", 0, 1},
        {"cls.predictions.bias", 0, 0},
    };
    for (size_t k = 0; k < sizeof want / sizeof *want; ++k)
        family_check_init(&m.ps, want[k].name, want[k].std, want[k].mean, 0.05);
    const ag_tensor *w = ag_params_find(&m.ps, "deberta.embeddings.word_embeddings.weight");
    for (int c = 0; c < 128; ++c) assert_true(w->data[3 * 128 + c] == 0.0f);
    assert_int_equal(m.n_aliases, 2);
    recipe_model_free(&m);

    family_build_text(&m, "{\"model_type\": \"deberta-v2\", \"architectures\": [\"DebertaV2Model\"], "
                          "\"hidden_size\": 64, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
                          "\"intermediate_size\": 128, \"vocab_size\": 100, \"conv_kernel_size\": 3}", 7);
    const ag_tensor *cw = ag_params_find(&m.ps, "encoder.conv.conv.weight");
    assert_non_null(cw);
    const float bound = 1.0f / sqrtf(64 * 3);
    double s2 = 0;
    for (int64_t i = 0; i < cw->numel; ++i) {
        assert_true(fabsf(cw->data[i]) <= bound);
        s2 += (double)cw->data[i] * cw->data[i];
    }
    assert_true(fabs(sqrt(s2 / cw->numel) - bound / sqrt(3.0)) < 0.05 * bound); /* U(-b,b) has std b/sqrt(3) */
    recipe_model_free(&m);
}

static void test_bad_configs(void **state) {
#define V1 "{\"model_type\": \"deberta\", \"architectures\": [\"DebertaForMaskedLM\"], "
#define V2 "{\"model_type\": \"deberta-v2\", \"architectures\": [\"DebertaV2Model\"], "
    expect_config_error(V1 "\"num_attention_heads\": 5}", "divisible");
    expect_config_error(V1 "\"pos_att_type\": \"c2p|p2p\"}", "pos_att_type");
    expect_config_error(V1 "\"pos_att_type\": [\"c2p\", \"c2p\"]}", "pos_att_type");
    expect_config_error(V1 "\"pos_att_type\": 3}", "pos_att_type");
    expect_config_error(V1 "\"talking_head\": true}", "talking_head");
    expect_config_error(V1 "\"hidden_act\": \"cubic\"}", "hidden_act");
    expect_config_error(V1 "\"embedding_size\": 128}", "embedding_size");
    expect_config_error(V1 "\"pooler_hidden_size\": 100}", "pooler_hidden_size");
    expect_config_error(V1 "\"layer_norm_eps\": 0}", "layer_norm_eps");
    expect_config_error(V1 "\"cls_dropout\": 1.5}", "cls_dropout");
    expect_config_error(V1 "\"relative_attention\": \"yes\"}", "relative_attention");
    expect_config_error(V2 "\"conv_kernel_size\": 4}", "conv_kernel_size");
    expect_config_error(V2 "\"conv_groups\": 2}", "conv_groups");
    expect_config_error(V2 "\"conv_act\": \"cubic\"}", "conv_act");
    expect_config_error(V2 "\"norm_rel_ebd\": \"rms\"}", "norm_rel_ebd");
    expect_config_error(V2 "\"position_buckets\": 2}", "position_buckets");
    expect_config_error(V2 "\"position_buckets\": 256, \"max_relative_positions\": 100}", "max_relative_positions");
    expect_config_error(V2 "\"attention_head_size\": 32}", "attention_head_size");
    expect_config_error("{\"model_type\": \"deberta\", \"architectures\": [\"DebertaV2Model\"]}", "DebertaV2Model");
    expect_config_error("{\"model_type\": \"deberta-v2\", \"architectures\": [\"DebertaForPreTraining\"]}",
                        "DebertaForPreTraining");
#undef V1
#undef V2
}

/* Wrong batches are errors naming the field, never a crash. */
static void test_bad_batches(void **state) {
    recipe_model m;
    recipe_batch b;
    if (recipe_model_declare(&m, OWN "/deberta_mlm/config.json", NULL) != AG_OK) fail_msg("%s", ag_error());
    assert_int_equal(recipe_model_alloc(&m, 0), AG_OK);
    assert_int_equal(recipe_batch_load(&b, OWN "/deberta_mlm/inputs.json"), AG_OK);
    ag_ctx *ctx = ag_ctx_create(0);
    const ag_ints *ids = recipe_batch_get(&b, "input_ids"), *mask = recipe_batch_get(&b, "attention_mask");
    ag_ints short_mask = ag_ints_wrap(mask->data, 2, AG_SHAPE(2, 5));
    assert_null(nn_deberta_forward(ctx, &m.deberta, ids, NULL, &short_mask));
    assert_non_null(strstr(ag_error(), "attention_mask"));
    int32_t big[2 * 30] = {0};
    ag_ints too_long = ag_ints_wrap(big, 2, AG_SHAPE(2, 30)); /* max_position_embeddings 24 */
    assert_null(nn_deberta_forward(ctx, &m.deberta, &too_long, NULL, NULL));
    assert_non_null(strstr(ag_error(), "max_position_embeddings"));
    assert_null(nn_deberta_loss(ctx, &m.deberta, ids, NULL, mask, NULL, NULL));
    assert_non_null(strstr(ag_error(), "labels"));
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

int main(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_matches_pytorch),
        cmocka_unit_test(test_v2_matches_pytorch),
        cmocka_unit_test(test_log_buckets),
        cmocka_unit_test(test_parameter_counts),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_bad_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
