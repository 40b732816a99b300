/* test_gpt2.c: GPT-2 against the real Hugging Face implementation.
 *
 * ../shared/fixtures/hf/gpt2 holds a tiny GPT2LMHeadModel run through
 * transformers 4.31 on PyTorch 1.13: its weights, a padded batch, the loss,
 * every gradient, and 20 steps of AdamW from those weights. tapegrad loads the
 * same safetensors by Hugging Face name and must give the same numbers: the
 * loss within 1e-5 relative, every gradient within 1e-4, and the trajectory's
 * losses and final parameters within 1e-4. Also: parameter counts of the
 * standard configs, the GPT-2 init, and bad configs refused by field name.
 */
#include "family.h"
#include "harness.h"

#include "models.h"
#include "optim.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HF_FIXTURE_DIR
#define HF_FIXTURE_DIR "../shared/fixtures/hf"
#endif
#define GPT2_DIR HF_FIXTURE_DIR "/gpt2"


static bool fixture_present(void) { return family_file_present(GPT2_DIR "/model_hf.safetensors"); }

/* Builds GPT2LMHeadModel from the fixture and loads `weights`. */
static void load_model(recipe_model *m, recipe_batch *b, const char *weights) {
    family_build(m, GPT2_DIR "/config.json", NULL, weights);
    assert_int_equal(recipe_batch_load(b, GPT2_DIR "/inputs.json"), AG_OK);
}

static void test_loss_and_gradients_match_hugging_face(void **state) {
    if (!fixture_present()) skip();
    /* both the full state_dict file and save_pretrained's (tied copy dropped) */
    const char *files[] = {GPT2_DIR "/model_hf.safetensors", GPT2_DIR "/model.safetensors"};
    hid_t e = H5Fopen(GPT2_DIR "/expected.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(e >= 0);
    float *want_loss = h5_read_floats(e, "loss", NULL);
    for (int k = 0; k < 2; ++k) {
        recipe_model m;
        recipe_batch b;
        load_model(&m, &b, files[k]);
        ag_ctx *ctx = ag_ctx_create(0);
        int64_t tokens;
        ag_tensor *loss = recipe_model_loss(ctx, &m, &b, &tokens);
        assert_non_null(loss);
        assert_int_equal(tokens, 19); /* 11 + 8 shifted targets, padding ignored */
        printf("%s: loss %.8f, Hugging Face %.8f\n", files[k], loss->data[0], want_loss[0]);
        assert_true(fabs(loss->data[0] - want_loss[0]) <= 1e-5 * fabs(want_loss[0]));
        assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
        double worst;
        assert_int_equal(family_compare_grads_plain(&m.ps, e, &worst), 0);
        ag_ctx_free(ctx);
        recipe_batch_free(&b);
        recipe_model_free(&m);
    }
    free(want_loss);
    H5Fclose(e);
}

/* The rule for an element whose true gradient is 0 (the key bias: q.b_k is
 * added to every score of a row and softmax cancels it; a unit no token
 * reaches): it holds only rounding noise, ~1e-8, on both sides. Such elements
 * are those whose first gradient is below 1e-5 of the tensor's mean. */
static void zero_gradient_elements(hid_t e, const ag_tensor *t, int64_t n, bool *noise) {
    char name[300];
    snprintf(name, sizeof name, "grads/%s", t->name);
    float *g0 = h5_read_floats(e, name, NULL);
    assert_non_null(g0);
    double mean_g = 0;
    for (int64_t j = 0; j < n; ++j) mean_g += fabs(g0[j]) / (double)n;
    for (int64_t j = 0; j < n; ++j) noise[j] = fabs(g0[j]) < 1e-5 * mean_g;
    free(g0);
}

/* The fixture's train_trajectory: AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8,
 * weight decay 0.01 on every parameter), 20 steps on the same batch; the
 * zero-gradient elements held to what 20 steps of noise can do. */
static void test_adamw_trajectory_matches_hugging_face(void **state) {
    if (!fixture_present()) skip();
    recipe_model m;
    recipe_batch b;
    load_model(&m, &b, GPT2_DIR "/model_hf.safetensors");
    hid_t e = H5Fopen(GPT2_DIR "/expected.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    family_check_adamw_trajectory(&m, &b, e, zero_gradient_elements, "have a zero gradient");
    H5Fclose(e);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

/* Gradient accumulation: the two rows of the fixture batch (11 and 8 counted
 * tokens) as two micro-batches, each loss a SUM, the total scaled by 1/19,
 * give the full batch's mean-loss gradients. (Averaging two micro-batch means
 * would weight the 8-token row's tokens more: the count must be the total.) */
static void test_gradient_accumulation_counts_tokens(void **state) {
    if (!fixture_present()) skip();
    recipe_model m;
    recipe_batch b;
    load_model(&m, &b, GPT2_DIR "/model_hf.safetensors");
    ag_ctx *ctx = ag_ctx_create(0);
    int64_t tokens;
    ag_tensor *loss = recipe_model_loss(ctx, &m, &b, &tokens);
    assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
    float *full = malloc((size_t)m.ps.total * sizeof(float));
    memcpy(full, m.ps.grads, (size_t)m.ps.total * sizeof(float));
    ag_params_zero_grad(&m.ps);
    const ag_ints *ids = recipe_batch_get(&b, "input_ids"), *mask = recipe_batch_get(&b, "attention_mask"),
                  *labels = recipe_batch_get(&b, "labels");
    const int64_t T = ids->shape[1];
    int64_t total = 0;
    for (int row = 0; row < 2; ++row) {
        ag_ctx_reset(ctx);
        ag_ints i1 = ag_ints_wrap(ids->data + row * T, 2, AG_SHAPE(1, T));
        ag_ints m1 = ag_ints_wrap(mask->data + row * T, 2, AG_SHAPE(1, T));
        ag_ints l1 = ag_ints_wrap(labels->data + row * T, 2, AG_SHAPE(1, T));
        int64_t n;
        ag_tensor *l = nn_gpt2_lm_loss(ctx, &m.gpt2, &i1, &m1, &l1, AG_REDUCE_SUM, &n);
        assert_non_null(l);
        assert_int_equal(ag_backward(ctx, l, NULL), AG_OK);
        total += n;
    }
    assert_int_equal(total, tokens);
    assert_int_equal(optim_scale_grads(&m.ps, 1.0f / (float)total), AG_OK);
    assert_close("accumulated gradients", m.ps.grads, full, m.ps.total, 1e-4, 1e-5);
    free(full);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

/* Totals Hugging Face reports (model.num_parameters()) for the standard sizes. */
static void test_parameter_counts(void **state) {
    const char *small = "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"]}";
    assert_int_equal(count_params(small, NULL), 124439808);
    assert_int_equal(count_params(small, "GPT2Model"), 124439808);
    assert_int_equal(count_params("{\"model_type\": \"gpt2\", \"n_embd\": 1024, \"n_layer\": 24, \"n_head\": 16}",
                                  "GPT2LMHeadModel"),
                     354823168); /* gpt2-medium */
    assert_int_equal(count_params("{\"model_type\": \"gpt2\", \"n_embd\": 1280, \"n_layer\": 36, \"n_head\": 20}",
                                  "GPT2LMHeadModel"),
                     774030080); /* gpt2-large */
    assert_int_equal(count_params("{\"model_type\": \"gpt2\", \"n_embd\": 1600, \"n_layer\": 48, \"n_head\": 25}",
                                  "GPT2LMHeadModel"),
                     1557611200); /* gpt2-xl */
}

/* Hugging Face's init: N(0, 0.02), c_proj N(0, 0.02/sqrt(2 n_layer)), unit norms, zero biases. */
static void test_init(void **state) {
    recipe_model m;
    family_build_text(&m, "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], "
                          "\"n_embd\": 256, \"n_layer\": 8, \"n_head\": 4, \"vocab_size\": 1000}", 7);
    struct { const char *name; double std, mean; } want[] = {
        {"transformer.wte.weight", 0.02, 0},
        {"transformer.h.3.attn.c_attn.weight", 0.02, 0},
        {"transformer.h.3.mlp.c_proj.weight", 0.02 / 4.0, 0}, /* sqrt(2*8) = 4 */
        {"transformer.h.3.attn.c_proj.weight", 0.02 / 4.0, 0},
        {"transformer.h.3.ln_1.weight", 0, 1},
        {"transformer.h.3.mlp.c_fc.bias", 0, 0},
    };
    for (size_t k = 0; k < sizeof want / sizeof *want; ++k)
        family_check_init(&m.ps, want[k].name, want[k].std, want[k].mean, 0.03);
    recipe_model_free(&m);
}

static void test_bad_configs(void **state) {
    expect_config_error("{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"n_embd\": \"big\"}",
                        "\"n_embd\"");
    expect_config_error("{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"n_head\": 5}",
                        "divisible");
    expect_config_error("{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], "
                        "\"activation_function\": \"cubic\"}",
                        "activation_function");
    expect_config_error("{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"n_layer\": -1}",
                        "\"n_layer\"");
    expect_config_error("{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2ForTokenClassification\"]}",
                        "GPT2ForTokenClassification");
    expect_config_error("{\"model_type\": \"gpt2\"", "invalid JSON");
    expect_config_error("{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"]}", "llama");
    recipe_model m;
    assert_int_not_equal(recipe_model_declare(&m, "/nonexistent/config.json", NULL), AG_OK);
    assert_non_null(strstr(ag_error(), "/nonexistent/config.json"));
    recipe_model_free(&m);
}

int main(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_and_gradients_match_hugging_face),
        cmocka_unit_test(test_adamw_trajectory_matches_hugging_face),
        cmocka_unit_test(test_gradient_accumulation_counts_tokens),
        cmocka_unit_test(test_parameter_counts),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
