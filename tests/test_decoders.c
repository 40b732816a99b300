/* test_decoders.c: the decoder families beyond GPT-2 against PyTorch.
 *
 * tests/fixtures/decoders/ holds, per family, a tiny config, random weights
 * named as the Hugging Face class's state_dict(), and the loss and every
 * gradient of that class's forward on a padded batch, computed in float64 by
 * gen_decoders.py (a transcription of modeling_<family>.py, transformers
 * 4.31). tapegrad builds the class through the family registry
 * (recipe_model_declare, as `tapegrad loss` does), loads the same
 * safetensors by name, and must give the loss within 1e-5 relative and every
 * gradient within 1e-4. Also: the parameter counts Hugging Face reports for
 * the released sizes (declared only, never allocated), the initialisation,
 * and bad configs refused by field name.
 */
#include "family.h"
#include "harness.h"

#include "models.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEC_DIR FIXTURE_DIR "/decoders"


/* Loads <family>/config.json through the registry and <family>/model.safetensors
 * into it, runs the class's loss on inputs.json and backward, and compares
 * with <family>/expected.h5. */
static void check_family(const char *family, int64_t want_params) {
    char path[512], weights[512];
    recipe_model m;
    recipe_batch b;
    snprintf(path, sizeof path, "%s/%s/config.json", DEC_DIR, family);
    snprintf(weights, sizeof weights, "%s/%s/model.safetensors", DEC_DIR, family);
    family_build(&m, path, NULL, weights);
    assert_int_equal(m.ps.total, want_params);
    assert_int_equal(recipe_batch_load(&b, DEC_DIR "/inputs.json"), AG_OK);

    ag_ctx *ctx = ag_ctx_create(0);
    ag_ctx_train(ctx, false);
    int64_t tokens = 0;
    ag_tensor *loss = recipe_model_loss(ctx, &m, &b, &tokens);
    if (!loss) fail_msg("%s", ag_error());
    assert_int_equal(tokens, 19); /* 11 + 8 shifted targets, padding ignored */

    snprintf(path, sizeof path, "%s/%s/expected.h5", DEC_DIR, family);
    hid_t e = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(e >= 0);
    float *want = h5_read_floats(e, "loss", NULL);
    assert_non_null(want);
    double rel = fabs(loss->data[0] - want[0]) / fabs(want[0]);
    assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
    family_grad_stats gs;
    const int bad = family_compare_grads_stats(&m.ps, e, path, false, &gs);
    printf("%s (%s): loss %.8f, PyTorch %.8f (rel %.1e); %lld gradients, largest difference %.2e "
           "(%.1e of its tensor's largest)%s\n",
           family, m.arch, loss->data[0], want[0], rel, (long long)m.ps.n, gs.worst, gs.worst_rel,
           gs.zero ? "; some are zero in exact arithmetic (key biases), judged as noise" : "");
    assert_true(rel <= 1e-5);
    assert_int_equal(bad, 0);
    free(want);
    H5Fclose(e);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

static void test_gpt_neo_matches_pytorch(void **state) { check_family("gpt_neo", 30400); }
static void test_gptj_matches_pytorch(void **state) { check_family("gptj", 33408); }
static void test_openai_matches_pytorch(void **state) { check_family("openai", 30528); }
static void test_ctrl_matches_pytorch(void **state) { check_family("ctrl", 21376); }

/* EleutherAI/gpt-neo-125M's and gpt-j-6B's config.json (the fields that size
 * the model) and the totals Hugging Face reports (model.num_parameters()). */
static const char *neo_125m =
    "{\"model_type\": \"gpt_neo\", \"architectures\": [\"GPTNeoForCausalLM\"], \"hidden_size\": 768, "
    "\"num_layers\": 12, \"num_heads\": 12, \"vocab_size\": 50257, \"max_position_embeddings\": 2048, "
    "\"window_size\": 256, \"intermediate_size\": null, \"attention_types\": [[[\"global\", \"local\"], 6]], "
    "\"attention_layers\": [\"global\", \"local\", \"global\", \"local\", \"global\", \"local\", \"global\", "
    "\"local\", \"global\", \"local\", \"global\", \"local\"]}";
static const char *gptj_6b =
    "{\"model_type\": \"gptj\", \"architectures\": [\"GPTJForCausalLM\"], \"n_embd\": 4096, \"n_layer\": 28, "
    "\"n_head\": 16, \"rotary_dim\": 64, \"vocab_size\": 50400, \"n_positions\": 2048, \"n_inner\": null, "
    "\"tie_word_embeddings\": false}";

static void test_parameter_counts(void **state) {
    assert_int_equal(count_params(neo_125m, NULL), 125198592);
    assert_int_equal(count_params(neo_125m, "GPTNeoModel"), 125198592); /* the head is tied */
    clock_t t0 = clock();
    assert_int_equal(count_params(gptj_6b, NULL), 6050882784LL);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("GPT-J 6B declared in %.4f s\n", secs);
    assert_true(secs < 0.5); /* declared, not allocated */
    /* GPTJModel: no lm_head (weight [50400,4096] and bias [50400]) */
    assert_int_equal(count_params(gptj_6b, "GPTJModel"), 6050882784LL - 50400LL * 4096 - 50400);
    /* openai-gpt (the defaults are its config): OpenAIGPTModel 116,534,784; the head is tied */
    const char *gpt1 = "{\"model_type\": \"openai-gpt\", \"architectures\": [\"OpenAIGPTLMHeadModel\"], "
                       "\"afn\": \"gelu\", \"n_ctx\": 512, \"n_embd\": 768, \"n_head\": 12, \"n_layer\": 12, "
                       "\"n_positions\": 512, \"vocab_size\": 40478}";
    assert_int_equal(count_params(gpt1, "OpenAIGPTModel"), 116534784);
    assert_int_equal(count_params(gpt1, NULL), 116534784);
    /* Salesforce/ctrl (vocab 246534, 48 layers of 1280, dff 8192): counted from
     * the modules CTRLLMHeadModel builds, the head's bias [246534] its only
     * parameter beyond CTRLModel's */
    const char *ctrl = "{\"model_type\": \"ctrl\", \"architectures\": [\"CTRLLMHeadModel\"], \"vocab_size\": 246534, "
                       "\"n_embd\": 1280, \"dff\": 8192, \"n_layer\": 48, \"n_head\": 16, \"n_positions\": 256}";
    assert_int_equal(count_params(ctrl, NULL), 1637964550LL);
    assert_int_equal(count_params(ctrl, "CTRLModel"), 1637964550LL - 246534);
}

/* The fixture sees GPT-Neo's window: the same weights with every layer
 * allowed to look back 100 positions give another loss. */
static void test_gpt_neo_window_matters(void **state) {
    recipe_model m;
    recipe_batch b;
    family_build(&m, DEC_DIR "/gpt_neo/config.json", NULL, DEC_DIR "/gpt_neo/model.safetensors");
    assert_int_equal(recipe_batch_load(&b, DEC_DIR "/inputs.json"), AG_OK);
    ag_ctx *ctx = ag_ctx_create(0);
    float loss[2];
    for (int k = 0; k < 2; ++k) {
        m.gpt_neo.cfg.window_size = k ? 100 : 4;
        ag_ctx_reset(ctx);
        ag_tensor *l = recipe_model_loss(ctx, &m, &b, NULL);
        assert_non_null(l);
        loss[k] = l->data[0];
    }
    printf("gpt_neo: loss %.6f with window 4, %.6f with window 100\n", loss[0], loss[1]);
    assert_true(fabsf(loss[0] - loss[1]) > 1e-3f);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

/* Hugging Face's init: N(0, initializer_range) for weights, unit norms, zero biases. */
static void test_init(void **state) {
    const char *configs[] = {
        "{\"model_type\": \"gpt_neo\", \"architectures\": [\"GPTNeoForCausalLM\"], \"hidden_size\": 128, "
        "\"num_layers\": 2, \"num_heads\": 4, \"vocab_size\": 1000, \"attention_types\": [[[\"global\", \"local\"], 1]]}",
        "{\"model_type\": \"gptj\", \"architectures\": [\"GPTJForCausalLM\"], \"n_embd\": 128, \"n_layer\": 2, "
        "\"n_head\": 4, \"rotary_dim\": 16, \"vocab_size\": 1000}",
        "{\"model_type\": \"openai-gpt\", \"architectures\": [\"OpenAIGPTLMHeadModel\"], \"n_embd\": 128, "
        "\"n_layer\": 2, \"n_head\": 4, \"vocab_size\": 1000}",
        "{\"model_type\": \"ctrl\", \"architectures\": [\"CTRLLMHeadModel\"], \"n_embd\": 128, \"dff\": 256, "
        "\"n_layer\": 2, \"n_head\": 4, \"vocab_size\": 1000}",
    };
    struct { int cfg; const char *name; double std, mean; } want[] = {
        {0, "transformer.wte.weight", 0.02, 0},
        {0, "transformer.h.1.attn.attention.q_proj.weight", 0.02, 0},
        {0, "transformer.h.1.attn.attention.out_proj.weight", 0.02, 0},
        {0, "transformer.h.1.attn.attention.out_proj.bias", 0, 0},
        {0, "transformer.h.1.mlp.c_proj.weight", 0.02, 0},
        {0, "transformer.h.1.ln_2.weight", 0, 1},
        {1, "transformer.h.1.attn.v_proj.weight", 0.02, 0},
        {1, "transformer.h.1.mlp.fc_in.weight", 0.02, 0},
        {1, "transformer.h.1.mlp.fc_in.bias", 0, 0},
        {1, "lm_head.weight", 0.02, 0},
        {1, "lm_head.bias", 0, 0},
        {1, "transformer.ln_f.weight", 0, 1},
        {2, "transformer.tokens_embed.weight", 0.02, 0},
        {2, "transformer.positions_embed.weight", 0.02, 0},
        {2, "transformer.h.1.attn.c_attn.weight", 0.02, 0},
        {2, "transformer.h.1.mlp.c_proj.weight", 0.02, 0}, /* no GPT-2-style 1/sqrt(2L) */
        {2, "transformer.h.1.ln_2.bias", 0, 0},
        {3, "transformer.w.weight", 0.02, 0},
        {3, "transformer.h.1.multi_head_attention.Wk.weight", 0.02, 0},
        {3, "transformer.h.1.multi_head_attention.dense.bias", 0, 0},
        {3, "transformer.h.1.ffn.2.weight", 0.02, 0},
        {3, "transformer.h.1.layernorm1.weight", 0, 1},
        {3, "lm_head.bias", 0, 0},
    };
    for (int c = 0; c < 4; ++c) {
        recipe_model m;
        family_build_text(&m, configs[c], 7);
        for (size_t k = 0; k < sizeof want / sizeof *want; ++k) {
            if (want[k].cfg != c) continue;
            family_check_init(&m.ps, want[k].name, want[k].std, want[k].mean, 0.05);
        }
        recipe_model_free(&m);
    }
}

#define NEO "{\"model_type\": \"gpt_neo\", \"architectures\": [\"GPTNeoForCausalLM\"], \"num_layers\": 2, "
#define GPTJ "{\"model_type\": \"gptj\", \"architectures\": [\"GPTJForCausalLM\"], "

static void test_bad_configs(void **state) {
    expect_config_error(NEO "\"attention_types\": [[[\"global\", \"local\"], 2]]}", "describes 4 layers");
    expect_config_error(NEO "\"attention_types\": [[[\"global\", \"sparse\"], 1]]}", "sparse");
    expect_config_error(NEO "\"attention_types\": \"global\"}", "\"attention_types\"");
    expect_config_error(NEO "\"attention_types\": [[[\"global\", \"local\"], 1]], "
                            "\"attention_layers\": [\"local\", \"local\"]}", "\"attention_layers\"");
    expect_config_error(NEO "\"attention_types\": [[[\"global\", \"local\"], 1]], \"window_size\": 0}",
                        "\"window_size\"");
    expect_config_error(NEO "\"attention_types\": [[[\"global\", \"local\"], 1]], \"hidden_size\": 30, "
                            "\"num_heads\": 4}", "divisible");
    expect_config_error("{\"model_type\": \"gpt_neo\", \"architectures\": [\"GPTNeoForMaskedLM\"]}", "GPTNeoForMaskedLM");
    expect_config_error(GPTJ "\"n_embd\": 64, \"n_head\": 4, \"rotary_dim\": 20}", "\"rotary_dim\"");
    expect_config_error(GPTJ "\"n_embd\": 64, \"n_head\": 4, \"rotary_dim\": 7}", "\"rotary_dim\"");
    expect_config_error(GPTJ "\"activation_function\": \"cubic\"}", "activation_function");
    expect_config_error(GPTJ "\"n_layer\": \"many\"}", "\"n_layer\"");
    expect_config_error("{\"model_type\": \"openai-gpt\", \"architectures\": [\"OpenAIGPTLMHeadModel\"], "
                        "\"afn\": \"gelu_new\"}", "\"afn\"");
    expect_config_error("{\"model_type\": \"openai-gpt\", \"architectures\": [\"OpenAIGPTLMHeadModel\"], "
                        "\"tie_word_embeddings\": false}", "\"tie_word_embeddings\"");
    expect_config_error("{\"model_type\": \"ctrl\", \"architectures\": [\"CTRLLMHeadModel\"], \"n_embd\": 33, "
                        "\"n_head\": 3}", "\"n_embd\"");
    expect_config_error("{\"model_type\": \"ctrl\", \"architectures\": [\"CTRLLMHeadModel\"], \"dff\": 0}", "\"dff\"");
    expect_config_error("{\"model_type\": \"ctrl\", \"architectures\": [\"CTRLForSequenceClassification\"]}",
                        "CTRLForSequenceClassification");
}

/* A batch that does not fit is refused with the input named, not crashed on. */
static void test_bad_batches(void **state) {
    recipe_model m;
    family_build_text(&m, GPTJ "\"n_embd\": 16, \"n_layer\": 1, \"n_head\": 2, \"rotary_dim\": 4, "
                          "\"vocab_size\": 50, \"n_positions\": 8}", 1);
    ag_ctx *ctx = ag_ctx_create(0);
    int32_t ids[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, mask[10] = {0};
    ag_ints long_ids = ag_ints_wrap(ids, 2, AG_SHAPE(1, 10)), short_ids = ag_ints_wrap(ids, 2, AG_SHAPE(2, 4));
    ag_ints bad_mask = ag_ints_wrap(mask, 2, AG_SHAPE(2, 5));
    assert_null(nn_gptj_lm_loss(ctx, &m.gptj, &long_ids, NULL, &long_ids, AG_REDUCE_MEAN, NULL));
    assert_non_null(strstr(ag_error(), "positions"));
    assert_null(nn_gptj_lm_loss(ctx, &m.gptj, &short_ids, &bad_mask, &short_ids, AG_REDUCE_MEAN, NULL));
    assert_non_null(strstr(ag_error(), "attention_mask"));
    ids[3] = 50; /* outside the vocabulary */
    assert_null(nn_gptj_lm_loss(ctx, &m.gptj, &short_ids, NULL, &short_ids, AG_REDUCE_MEAN, NULL));
    ag_ctx_free(ctx);
    recipe_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt_neo_matches_pytorch),
        cmocka_unit_test(test_gptj_matches_pytorch),
        cmocka_unit_test(test_openai_matches_pytorch),
        cmocka_unit_test(test_ctrl_matches_pytorch),
        cmocka_unit_test(test_parameter_counts),
        cmocka_unit_test(test_gpt_neo_window_matters),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_bad_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
