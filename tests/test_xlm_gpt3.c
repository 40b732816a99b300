/* test_xlm_gpt3.c: XLM and the GPT-3-style banded model against PyTorch.
 *
 * tests/fixtures/xlm_gpt3/ holds, per case, a tiny config, random weights
 * named as the class's state_dict(), a padded batch, and the loss and every
 * gradient of the class's forward in float64, computed by gen_xlm_gpt3.py (a
 * transcription of modeling_xlm.py, transformers 4.31; for the GPT-3-style
 * model, GPT-2's math with a banded causal mask on the sparse layers).
 * tapegrad builds the class through the family registry (as `tapegrad loss`
 * does), loads the safetensors by name, and must give the loss within 1e-5
 * relative and every gradient within 1e-4. Also: with a band wider than the
 * sequence the GPT-3 model is GPT-2 bit for bit; parameter totals of the
 * released sizes; the initialisation; bad configs refused by field name.
 */
#include "family.h"
#include "harness.h"

#include "models.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR FIXTURE_DIR "/xlm_gpt3"


/* Builds <name>/config.json's class, loads its weights and batch. */
static void load_case(const char *name, recipe_model *m, recipe_batch *b) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", DIR, name);
    family_load(m, b, dir, "config.json", NULL, "model.safetensors");
}

/* The class's loss and backward against <name>/expected.h5. A parameter the
 * fixture has no gradient for (XLM's fixed sinusoidal table) must keep a zero
 * gradient. */
static void check_case(const char *name, int64_t want_params, int64_t want_tokens) {
    recipe_model m;
    recipe_batch b;
    load_case(name, &m, &b);
    assert_int_equal(m.ps.total, want_params);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_ctx_train(ctx, false);
    int64_t tokens = 0;
    ag_tensor *loss = recipe_model_loss(ctx, &m, &b, &tokens);
    if (!loss) fail_msg("%s", ag_error());
    assert_int_equal(tokens, want_tokens);
    assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);

    char path[512];
    snprintf(path, sizeof path, "%s/%s/expected.h5", DIR, name);
    hid_t e = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(e >= 0);
    float *want = h5_read_floats(e, "loss", NULL);
    assert_non_null(want);
    const double rel = fabs(loss->data[0] - want[0]) / fabs(want[0]);
    family_grad_stats gs;
    const int bad = family_compare_grads_stats(&m.ps, e, path, true, &gs);
    printf("%s (%s): loss %.8f, PyTorch %.8f (rel %.1e); %lld parameters, %lld tensors, largest gradient "
           "difference %.2e (%.1e of its tensor's largest)%s%s\n",
           name, m.arch, loss->data[0], want[0], rel, (long long)m.ps.total, (long long)m.ps.n, gs.worst,
           gs.worst_rel, gs.zero ? "; key biases are 0 in exact arithmetic, judged as noise" : "",
           gs.frozen ? "; the fixed sinusoidal table's gradient stays 0" : "");
    assert_true(rel <= 1e-5);
    assert_int_equal(bad, 0);
    free(want);
    H5Fclose(e);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

/* 96 tokens, 32 wide, 2 layers (the tied head counted once); 4 + 3 MLM labels */
static void test_xlm_mlm_matches_pytorch(void **state) { check_case("xlm_mlm", 29760, 7); }
/* 11 + 8 unshifted CLM labels; no attention_mask: the mask comes from pad_index */
static void test_xlm_clm_sinusoidal_matches_pytorch(void **state) { check_case("xlm_clm", 29664, 19); }
static void test_xlm_seqcls_matches_pytorch(void **state) { check_case("xlm_seqcls", 29731, 2); }
static void test_gpt3_banded_matches_pytorch(void **state) { check_case("gpt3", 56000, 19); }

/* With the band wider than the sequence, the GPT-3 model is GPT-2: the same
 * weights through nn_gpt2_lm_loss (the GPT-2 inside) and nn_gpt3_lm_loss give
 * the same loss and the same gradients, bit for bit. With the fixture's band
 * of 3 the loss differs. */
/* TLM's position_ids: the batch's own positions replace 0..T-1. Explicit
 * 0..T-1 gives the same loss bit for bit; positions restarted at the middle
 * (a pair's second sentence) give another; a position past the table is an
 * error naming position_ids. */
static void test_xlm_position_ids(void **state) {
    recipe_model m;
    recipe_batch b;
    load_case("xlm_mlm", &m, &b);
    const ag_ints *ids = recipe_batch_get(&b, "input_ids");
    const int64_t B = ids->shape[0], T = ids->shape[1];
    int32_t *pos = malloc((size_t)(B * T) * sizeof(int32_t));
    float loss[3];
    for (int k = 0; k < 3; ++k) {
        for (int64_t i = 0; i < B * T; ++i) pos[i] = (int32_t)(k == 1 ? (i % T) % (T / 2) : i % T);
        assert_true(b.n < RECIPE_BATCH_MAX);
        if (k > 0) {
            snprintf(b.name[b.n], sizeof b.name[b.n], "position_ids");
            b.field[b.n++] = ag_ints_wrap(pos, 2, AG_SHAPE(B, T));
        }
        ag_ctx *ctx = ag_ctx_create(0);
        ag_tensor *l = recipe_model_loss(ctx, &m, &b, NULL);
        if (!l) fail_msg("%s", ag_error());
        loss[k] = l->data[0];
        ag_ctx_free(ctx);
        if (k > 0) b.n--; /* pos is ours, not the batch's */
    }
    assert_memory_equal(&loss[0], &loss[2], sizeof(float)); /* explicit 0..T-1 */
    assert_true(loss[0] != loss[1]);
    pos[0] = 100000;
    snprintf(b.name[b.n], sizeof b.name[b.n], "position_ids");
    b.field[b.n++] = ag_ints_wrap(pos, 2, AG_SHAPE(B, T));
    ag_ctx *ctx = ag_ctx_create(0);
    assert_null(recipe_model_loss(ctx, &m, &b, NULL));
    assert_non_null(strstr(ag_error(), "position_ids"));
    b.n--;
    ag_ctx_free(ctx);
    free(pos);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

static void test_gpt3_wide_band_is_gpt2_bit_for_bit(void **state) {
    recipe_model m;
    recipe_batch b;
    load_case("gpt3", &m, &b);
    const ag_ints *ids = recipe_batch_get(&b, "input_ids"), *mask = recipe_batch_get(&b, "attention_mask"),
                  *labels = recipe_batch_get(&b, "labels");
    ag_ctx *ctx = ag_ctx_create(0);
    float *g2 = malloc((size_t)m.ps.total * sizeof(float));
    float loss2, loss3[2];
    ag_tensor *l = nn_gpt2_lm_loss(ctx, &m.gpt3.gpt2, ids, mask, labels, AG_REDUCE_MEAN, NULL);
    assert_non_null(l);
    loss2 = l->data[0];
    assert_int_equal(ag_backward(ctx, l, NULL), AG_OK);
    memcpy(g2, m.ps.grads, (size_t)m.ps.total * sizeof(float));
    const int windows[2] = {12, 3}; /* T = 12: a band of 12 is no band */
    for (int k = 0; k < 2; ++k) {
        ag_ctx_reset(ctx);
        ag_params_zero_grad(&m.ps);
        m.gpt3.local_window = windows[k];
        l = nn_gpt3_lm_loss(ctx, &m.gpt3, ids, mask, labels, AG_REDUCE_MEAN, NULL);
        assert_non_null(l);
        loss3[k] = l->data[0];
        assert_int_equal(ag_backward(ctx, l, NULL), AG_OK);
        if (k == 0) {
            assert_memory_equal(&loss3[0], &loss2, sizeof(float));
            assert_memory_equal(m.ps.grads, g2, (size_t)m.ps.total * sizeof(float));
        }
    }
    printf("gpt3: loss %.8f with a band of 12 (GPT-2: %.8f, every gradient identical), %.8f with a band of 3\n",
           loss3[0], loss2, loss3[1]);
    assert_true(fabsf(loss3[1] - loss2) > 1e-3f);
    free(g2);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

/* xlm-mlm-en-2048's config (the fields that size it: 30145 words, 2048 wide,
 * 12 layers, 16 heads, 512 positions, one language) and xlm-mlm-enfr-1024's
 * (64139 words, 1024 wide, 6 layers, 8 heads, two languages). The totals are
 * counted from the modules the Hugging Face classes build (gen_xlm_gpt3.py
 * prints them), the tied head once. GPT-3 Small (12 x 768, 12 heads, context
 * 2048, vocab 50257) must be GPT-2's count for the same sizes. */
static void test_parameter_counts(void **state) {
    const char *en2048 = "{\"model_type\": \"xlm\", \"architectures\": [\"XLMWithLMHeadModel\"], \"vocab_size\": 30145, "
                         "\"emb_dim\": 2048, \"n_layers\": 12, \"n_heads\": 16, \"max_position_embeddings\": 512, "
                         "\"n_langs\": 1, \"use_lang_emb\": true}";
    assert_int_equal(count_params(en2048, NULL), 667119041);
    assert_int_equal(count_params(en2048, "XLMModel"), 667088896);
    assert_int_equal(count_params(en2048, "XLMForSequenceClassification"), 667088896 + 2 * 2048 + 2);
    const char *enfr = "{\"model_type\": \"xlm\", \"architectures\": [\"XLMWithLMHeadModel\"], \"n_words\": 64139, "
                       "\"emb_dim\": 1024, \"n_layers\": 6, \"n_heads\": 8, \"n_langs\": 2}";
    assert_int_equal(count_params(enfr, NULL), 141848203);
    const char *small = "{\"model_type\": \"gpt3\", \"architectures\": [\"GPT3LMHeadModel\"], \"n_positions\": 2048, "
                        "\"local_window\": 256}";
    const char *gpt2 = "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"n_positions\": 2048}";
    assert_int_equal(count_params(small, NULL), 125226240); /* 124,439,808 + 1024 more positions x 768 */
    assert_int_equal(count_params(small, NULL), count_params(gpt2, NULL));
    assert_int_equal(count_params(small, "GPT3Model"), 125226240);
    /* GPT-3 XL: 24 layers, 2048 wide, 16 heads (the paper's 1.3B) */
    const char *xl = "{\"model_type\": \"gpt3\", \"architectures\": [\"GPT3LMHeadModel\"], \"n_positions\": 2048, "
                     "\"n_embd\": 2048, \"n_layer\": 24, \"n_head\": 16}";
    const char *xl2 = "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"n_positions\": 2048, "
                      "\"n_embd\": 2048, \"n_layer\": 24, \"n_head\": 16}";
    assert_int_equal(count_params(xl, NULL), count_params(xl2, NULL));
    printf("xlm-mlm-en-2048: %d; GPT-3 Small: %d; GPT-3 XL: %lld\n", 667119041, 125226240,
           (long long)count_params(xl, NULL));
}

/* Hugging Face's init: embeddings N(0, embed_init_std) with the padding row
 * zero, Linear N(0, init_std), zero biases, unit norms; the sinusoidal table. */
static void test_xlm_init(void **state) {
    recipe_model m;
    family_build_text(&m, "{\"model_type\": \"xlm\", \"architectures\": [\"XLMWithLMHeadModel\"], "
                          "\"vocab_size\": 1000, \"emb_dim\": 128, \"n_layers\": 2, \"n_heads\": 4, "
                          "\"n_langs\": 3, \"sinusoidal_embeddings\": true}", 7);
    const double estd = 1.0 / sqrt(2048.0);
    struct { const char *name; double std, mean; } want[] = {
        {"transformer.embeddings.weight", estd, 0},
        {"transformer.lang_embeddings.weight", estd, 0},
        {"transformer.attentions.1.k_lin.weight", 0.02, 0},
        {"transformer.ffns.1.lin2.weight", 0.02, 0},
        {"transformer.ffns.1.lin1.bias", 0, 0},
        {"transformer.layer_norm2.1.weight", 0, 1},
        {"pred_layer.proj.bias", 0, 0},
    };
    for (size_t k = 0; k < sizeof want / sizeof *want; ++k)
        family_check_init(&m.ps, want[k].name, want[k].std, want[k].mean, 0.05);
    const ag_tensor *e = ag_params_find(&m.ps, "transformer.embeddings.weight");
    for (int j = 0; j < 128; ++j) assert_true(e->data[2 * 128 + j] == 0.0f); /* pad_index 2 */
    const ag_tensor *p = ag_params_find(&m.ps, "transformer.position_embeddings.weight");
    assert_false(p->requires_grad);
    /* position 5, columns 6 and 7: sin and cos of 5 / 10000^(6/128) */
    const double a = 5.0 / pow(10000.0, 6.0 / 128.0);
    assert_true(fabs(p->data[5 * 128 + 6] - sin(a)) < 1e-6 && fabs(p->data[5 * 128 + 7] - cos(a)) < 1e-6);
    recipe_model_free(&m);
}

#define XLM "{\"model_type\": \"xlm\", \"architectures\": [\"XLMWithLMHeadModel\"], "
#define XLMC "{\"model_type\": \"xlm\", \"architectures\": [\"XLMForSequenceClassification\"], "
#define GPT3 "{\"model_type\": \"gpt3\", \"architectures\": [\"GPT3LMHeadModel\"], \"n_layer\": 4, "

static void test_bad_configs(void **state) {
    expect_config_error(XLM "\"emb_dim\": 30, \"n_heads\": 4}", "\"n_heads\"");
    expect_config_error(XLM "\"emb_dim\": \"wide\"}", "\"emb_dim\"");
    expect_config_error(XLM "\"is_encoder\": false}", "\"is_encoder\"");
    expect_config_error(XLM "\"asm\": true}", "\"asm\"");
    expect_config_error(XLM "\"vocab_size\": 100, \"pad_index\": 100}", "\"pad_index\"");
    expect_config_error(XLM "\"n_langs\": 0}", "\"n_langs\"");
    expect_config_error(XLM "\"dropout\": 1.5}", "\"dropout\"");
    expect_config_error(XLMC "\"summary_type\": \"cls_index\"}", "\"summary_type\"");
    expect_config_error(XLMC "\"summary_use_proj\": false}", "\"summary_use_proj\"");
    expect_config_error(XLMC "\"summary_activation\": \"cubic\"}", "\"summary_activation\"");
    expect_config_error(XLMC "\"problem_type\": \"ranking\"}", "\"problem_type\"");
    expect_config_error("{\"model_type\": \"xlm\", \"architectures\": [\"XLMForQuestionAnswering\"]}",
                        "XLMForQuestionAnswering");
    expect_config_error(GPT3 "\"local_window\": 0}", "\"local_window\"");
    expect_config_error(GPT3 "\"local_window\": 2.5}", "\"local_window\"");
    expect_config_error(GPT3 "\"sparse_attention_layers\": \"strided\"}", "\"sparse_attention_layers\"");
    expect_config_error(GPT3 "\"sparse_attention_layers\": [\"dense\", \"sparse\"]}", "n_layer = 4");
    expect_config_error(GPT3 "\"sparse_attention_layers\": [\"dense\", \"sparse\", \"dense\", \"local\"]}",
                        "\"sparse_attention_layers\"[3]");
    expect_config_error(GPT3 "\"n_embd\": 30, \"n_head\": 4}", "divisible");
    expect_config_error("{\"model_type\": \"gpt3\", \"architectures\": [\"GPTNeoForCausalLM\"]}", "GPTNeoForCausalLM");
}

/* The layer types: "alternate" is dense, sparse, dense, ...; a list is taken as given. */
static void test_gpt3_layer_types(void **state) {
    recipe_model m;
    const char *path = temp_config(GPT3 "\"sparse_attention_layers\": [\"sparse\", \"sparse\", \"dense\", \"sparse\"]}");
    assert_int_equal(recipe_model_declare(&m, path, NULL), AG_OK);
    remove(path);
    assert_true(m.gpt3.sparse[0] && m.gpt3.sparse[1] && !m.gpt3.sparse[2] && m.gpt3.sparse[3]);
    assert_int_equal(m.gpt3.local_window, 256);
    assert_non_null(ag_params_find(&m.ps, "transformer.h.3.attn.c_attn.weight")); /* GPT-2's names */
    recipe_model_free(&m);
    path = temp_config(GPT3 "\"local_window\": 8}");
    assert_int_equal(recipe_model_declare(&m, path, NULL), AG_OK);
    remove(path);
    assert_true(!m.gpt3.sparse[0] && m.gpt3.sparse[1] && !m.gpt3.sparse[2] && m.gpt3.sparse[3]);
    assert_int_equal(m.gpt3.local_window, 8);
    recipe_model_free(&m);
}

int main(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xlm_mlm_matches_pytorch),
        cmocka_unit_test(test_xlm_clm_sinusoidal_matches_pytorch),
        cmocka_unit_test(test_xlm_seqcls_matches_pytorch),
        cmocka_unit_test(test_gpt3_banded_matches_pytorch),
        cmocka_unit_test(test_xlm_position_ids),
        cmocka_unit_test(test_gpt3_wide_band_is_gpt2_bit_for_bit),
        cmocka_unit_test(test_parameter_counts),
        cmocka_unit_test(test_xlm_init),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_gpt3_layer_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
