/* test_bart.c: BART and M2M-100 against PyTorch.
 *
 * tests/fixtures/bart/<case> holds BartForConditionalGeneration,
 * BartForSequenceClassification and M2M100ForConditionalGeneration on tiny
 * configs (different encoder and decoder widths and heads, scaled and
 * unscaled embeddings, gelu, gelu_new, relu) with random float32 weights and a
 * padded batch (M2M-100's row left-padded, so its positions must skip the
 * padding; bart_cond_gen_dec gives decoder_input_ids, a padded
 * decoder_attention_mask and an untied lm_head), made by gen_bart_fixtures.py: a hand transcription of
 * modeling_bart.py and modeling_m2m_100.py (transformers 4.31) in plain
 * PyTorch, float64. tapegrad must give each loss within 1e-5 relative and
 * every gradient within 1e-4. Also: parameter counts of bart-base,
 * bart-large and m2m100_418M, init, the sinusoid table, bad configs and bad
 * batches refused by name.
 */
#include "family.h"
#include "harness.h"

#include "models.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OWN FIXTURE_DIR "/bart"





/* Each class against the hand-written PyTorch transcription. */
static void test_classes_match_pytorch(void **state) {
    family_check_loss_and_grads(OWN "/bart_cond_gen", "config.json", NULL, "model.safetensors", 10);
    family_check_loss_and_grads(OWN "/bart_cond_gen_dec", "config.json", NULL, "model.safetensors", 10);
    family_check_loss_and_grads(OWN "/bart_seqcls", "config.json", NULL, "model.safetensors", 2);
    family_check_loss_and_grads(OWN "/m2m100_cond_gen", "config.json", NULL, "model.safetensors", 10);
}

/* A full state_dict (model.encoder.embed_tokens.weight, model.decoder.
 * embed_tokens.weight and lm_head.weight written as copies of model.shared)
 * loads through the aliases and gives the same loss. */
static void test_tied_copies_load(void **state) {
    recipe_model m, m2;
    recipe_batch b;
    family_load(&m, &b, OWN "/bart_cond_gen", "config.json", NULL, "model.safetensors");
    assert_int_equal(m.n_aliases, 3);
    char path[] = "/tmp/tapegrad-bart-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    assert_int_equal(ckpt_safetensors_save(path, &m.ps, m.aliases, m.n_aliases, true), AG_OK);
    assert_int_equal(recipe_model_declare(&m2, OWN "/bart_cond_gen/config.json", NULL), AG_OK);
    assert_int_equal(recipe_model_alloc(&m2, 1), AG_OK);
    if (ckpt_safetensors_load(path, &m2.ps, m2.aliases, m2.n_aliases)) fail_msg("%s", ag_error());
    remove(path);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *l1 = recipe_model_loss(ctx, &m, &b, NULL), *l2 = recipe_model_loss(ctx, &m2, &b, NULL);
    assert_non_null(l1);
    assert_non_null(l2);
    assert_true(l1->data[0] == l2->data[0]);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
    recipe_model_free(&m2);
}

/* The registry's total, and (in *buffers) the floats of final_logits_bias,
 * which state_dict() holds but num_parameters() does not count. */
static int64_t count_with_buffers(const char *config_text, const char *arch, int64_t *buffers) {
    recipe_model m;
    family_declare_text(&m, config_text, arch);
    int64_t total = m.ps.total;
    const ag_tensor *flb = ag_params_find(&m.ps, "final_logits_bias");
    if (buffers) *buffers = flb ? flb->numel : 0;
    recipe_model_free(&m);
    return total;
}

/* Hugging Face's totals (model.num_parameters()) for the published configs. */
static void test_parameter_counts(void **state) {
    const char *base = "{\"model_type\": \"bart\", \"d_model\": 768, \"encoder_layers\": 6, \"decoder_layers\": 6, "
                       "\"encoder_attention_heads\": 12, \"decoder_attention_heads\": 12, "
                       "\"encoder_ffn_dim\": 3072, \"decoder_ffn_dim\": 3072}"; /* facebook/bart-base */
    int64_t buf;
    assert_int_equal(count_with_buffers(base, "BartModel", NULL), 139420416);
    /* lm_head tied: the total less final_logits_bias */
    assert_int_equal(count_with_buffers(base, "BartForConditionalGeneration", &buf) - buf, 139420416);
    assert_int_equal(buf, 50265);
    /* + classification_head: 768*768 + 768 + 3*768 + 3 */
    assert_int_equal(count_with_buffers(base, "BartForSequenceClassification", NULL), 139420416 + 590592 + 2307);
    const char *large = "{\"model_type\": \"bart\"}"; /* facebook/bart-large: BartConfig's defaults */
    assert_int_equal(count_with_buffers(large, "BartModel", NULL), 406291456);
    const char *m2m = "{\"model_type\": \"m2m_100\"}"; /* facebook/m2m100_418M: M2M100Config's defaults */
    assert_int_equal(count_with_buffers(m2m, "M2M100Model", NULL), 483905536);
    assert_int_equal(count_with_buffers(m2m, "M2M100ForConditionalGeneration", &buf), 483905536);
    assert_int_equal(buf, 0);
    printf("bart-base 139,420,416; bart-large 406,291,456; m2m100_418M 483,905,536\n");
}

/* _init_weights: N(0, init_std), the padding row zero, LayerNorms 1/0, zero
 * biases; final_logits_bias zero and never given a gradient. */
static void test_init(void **state) {
    recipe_model m;
    family_build_text(&m, "{\"model_type\": \"bart\", \"architectures\": [\"BartForConditionalGeneration\"], "
                          "\"d_model\": 128, \"encoder_layers\": 1, \"decoder_layers\": 1, "
                          "\"encoder_attention_heads\": 4, \"decoder_attention_heads\": 4, "
                          "\"encoder_ffn_dim\": 256, \"decoder_ffn_dim\": 256, \"vocab_size\": 1000, "
                          "\"max_position_embeddings\": 64, \"init_std\": 0.05}", 7);
    struct { const char *name; double std, mean; } want[] = {
        {"model.shared.weight", 0.05, 0},
        {"model.encoder.embed_positions.weight", 0.05, 0},
        {"model.decoder.layers.0.encoder_attn.k_proj.weight", 0.05, 0},
        {"model.encoder.layers.0.fc1.weight", 0.05, 0},
        {"model.decoder.layernorm_embedding.weight", 0, 1},
        {"model.decoder.layers.0.encoder_attn_layer_norm.bias", 0, 0},
        {"model.encoder.layers.0.fc2.bias", 0, 0},
        {"final_logits_bias", 0, 0},
    };
    for (size_t k = 0; k < sizeof want / sizeof *want; ++k)
        family_check_init(&m.ps, want[k].name, want[k].std, want[k].mean, 0.05);
    const ag_tensor *w = ag_params_find(&m.ps, "model.shared.weight");
    for (int c = 0; c < 128; ++c) assert_true(w->data[1 * 128 + c] == 0.0f); /* pad_token_id 1 */
    assert_false(ag_params_find(&m.ps, "final_logits_bias")->requires_grad);
    assert_null(ag_params_find(&m.ps, "lm_head.weight")); /* tied: an alias */
    recipe_model_free(&m);
}

/* The sinusoid: sin in the first half, cos in the second, frequencies
 * exp(-i ln(10000)/(C/2 - 1)); positions skip padding, whose row is zero. */
static void test_m2m100_positions(void **state) {
    float row[9];
    nn_m2m100_sinusoid(row, 3, 9); /* C 9: half 4, the last entry 0 */
    const double f[4] = {1.0, exp(-log(10000.0) / 3), exp(-2 * log(10000.0) / 3), 1e-4};
    for (int i = 0; i < 4; ++i) {
        assert_true(fabs(row[i] - sin(3 * f[i])) < 1e-6);
        assert_true(fabs(row[4 + i] - cos(3 * f[i])) < 1e-6);
    }
    assert_true(row[8] == 0.0f);
    ag_ctx *ctx = ag_ctx_create(0);
    int32_t ids[6] = {5, 6, 1, 1, 5, 6}; /* pad 1: right-padded, then left-padded */
    ag_ints x = ag_ints_wrap(ids, 2, AG_SHAPE(2, 3));
    ag_tensor *p = nn_m2m100_positions(ctx, &x, 1, 8); /* [2,3,8] */
    assert_non_null(p);
    for (int c = 0; c < 8; ++c) {
        assert_true(p->data[0 * 8 + c] == p->data[4 * 8 + c]); /* token 5: position 2 in both rows */
        assert_true(p->data[1 * 8 + c] == p->data[5 * 8 + c]); /* token 6: position 3 */
        assert_true(p->data[2 * 8 + c] == 0.0f && p->data[3 * 8 + c] == 0.0f); /* padding */
    }
    nn_m2m100_sinusoid(row, 2, 8);
    for (int c = 0; c < 8; ++c) assert_true(p->data[c] == row[c]);
    ag_ctx_free(ctx);
}

static void test_bad_configs(void **state) {
#define BART "{\"model_type\": \"bart\", \"architectures\": [\"BartForConditionalGeneration\"], "
#define M2M "{\"model_type\": \"m2m_100\", \"architectures\": [\"M2M100Model\"], "
    expect_config_error(BART "\"d_model\": \"big\"}", "\"d_model\"");
    expect_config_error(BART "\"d_model\": 30}", "\"encoder_attention_heads\"");
    expect_config_error(BART "\"d_model\": 32, \"decoder_attention_heads\": 5}", "\"decoder_attention_heads\"");
    expect_config_error(BART "\"encoder_layers\": 0}", "\"encoder_layers\"");
    expect_config_error(BART "\"activation_function\": \"cubic\"}", "activation_function");
    expect_config_error(BART "\"dropout\": 1.5}", "\"dropout\"");
    expect_config_error(BART "\"attention_dropout\": -0.1}", "\"attention_dropout\"");
    expect_config_error(BART "\"pad_token_id\": 60000}", "\"pad_token_id\"");
    expect_config_error(BART "\"decoder_start_token_id\": -1}", "\"decoder_start_token_id\"");
    expect_config_error(BART "\"scale_embedding\": 1}", "\"scale_embedding\"");
    expect_config_error(BART "\"problem_type\": \"ranking\"}", "problem_type");
    expect_config_error(BART "\"id2label\": []}", "id2label");
    expect_config_error("{\"model_type\": \"bart\", \"architectures\": [\"BartForQuestionAnswering\"]}",
                        "BartForQuestionAnswering");
    expect_config_error("{\"model_type\": \"m2m_100\", \"architectures\": [\"M2M100ForSequenceClassification\"]}",
                        "M2M100ForSequenceClassification");
    expect_config_error("{\"model_type\": \"m2m_100\", \"architectures\": [\"BartModel\"]}", "BartModel");
    expect_config_error(M2M "\"d_model\": 2, \"encoder_attention_heads\": 1, \"decoder_attention_heads\": 1}",
                        "\"d_model\"");
    expect_config_error(M2M "\"encoder_layerdrop\": 1}", "\"encoder_layerdrop\"");
#undef BART
#undef M2M
}

/* Wrong batches are errors naming the field, never a crash. */
static void test_bad_batches(void **state) {
    recipe_model m;
    recipe_batch b;
    family_load(&m, &b, OWN "/bart_seqcls", "config.json", NULL, "model.safetensors");
    ag_ctx *ctx = ag_ctx_create(0);
    const ag_ints *ids = recipe_batch_get(&b, "input_ids"), *labels = recipe_batch_get(&b, "labels"),
                  *mask = recipe_batch_get(&b, "attention_mask");
    /* row 1 loses its <eos>: Hugging Face refuses rows with different counts */
    int32_t no_eos[20];
    memcpy(no_eos, ids->data, sizeof no_eos);
    no_eos[15] = 4;
    ag_ints x = ag_ints_wrap(no_eos, 2, AG_SHAPE(2, 10));
    assert_null(nn_bart_loss(ctx, &m.bart, &x, mask, NULL, NULL, labels, NULL));
    assert_non_null(strstr(ag_error(), "<eos>"));
    ag_ints short_mask = ag_ints_wrap(mask->data, 2, AG_SHAPE(2, 5));
    assert_null(nn_bart_forward(ctx, &m.bart, ids, &short_mask, NULL, NULL));
    assert_non_null(strstr(ag_error(), "attention_mask"));
    assert_null(nn_bart_loss(ctx, &m.bart, ids, mask, NULL, NULL, NULL, NULL));
    assert_non_null(strstr(ag_error(), "labels"));
    int32_t big[2 * 30] = {0};
    ag_ints too_long = ag_ints_wrap(big, 2, AG_SHAPE(2, 30)); /* max_position_embeddings 20 */
    assert_null(nn_bart_encode(ctx, &m.bart, &too_long, NULL));
    assert_non_null(strstr(ag_error(), "max_position_embeddings"));
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);

    /* M2M100Model does not shift input_ids: decoder_input_ids are required */
    if (recipe_model_declare(&m, OWN "/m2m100_cond_gen/config.json", "M2M100Model")) fail_msg("%s", ag_error());
    assert_int_equal(recipe_model_alloc(&m, 0), AG_OK);
    assert_int_equal(recipe_batch_load(&b, OWN "/m2m100_cond_gen/inputs.json"), AG_OK);
    ctx = ag_ctx_create(0);
    ids = recipe_batch_get(&b, "input_ids");
    assert_null(nn_bart_forward(ctx, &m.bart, ids, NULL, NULL, NULL));
    assert_non_null(strstr(ag_error(), "decoder_input_ids"));
    assert_null(recipe_model_loss(ctx, &m, &b, NULL));
    assert_non_null(strstr(ag_error(), "no loss"));
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

int main(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes_match_pytorch),
        cmocka_unit_test(test_tied_copies_load),
        cmocka_unit_test(test_parameter_counts),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_m2m100_positions),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_bad_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
