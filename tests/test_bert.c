/* test_bert.c: BERT and RoBERTa/XLM-R against PyTorch.
 *
 * Two references. ../shared/fixtures/hf/bert is a tiny BertForMaskedLM run
 * through the real Hugging Face implementation (transformers 4.31): tapegrad
 * must give its loss within 1e-5 relative, every gradient within 1e-4, and
 * its 20-step AdamW trajectory. tests/fixtures/bert/<case> holds the other
 * classes (BertForPreTraining, BertForSequenceClassification with three
 * labels and with one, RobertaForMaskedLM, RobertaForSequenceClassification
 * multi-label, DistilBertForMaskedLM and ...ForSequenceClassification), made
 * by gen_bert_fixtures.py: a hand transcription of modeling_bert.py,
 * modeling_roberta.py and modeling_distilbert.py in plain PyTorch, float64, which first
 * reproduces the Hugging Face fixture to 1e-15. Also: parameter counts of the
 * published sizes, Hugging Face's init, bad configs refused by field name.
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
#define HF_BERT HF_FIXTURE_DIR "/bert"
#define OWN FIXTURE_DIR "/bert"
/* The largest |gradient| of the Hugging Face fixture (expected.h5 grads_f64). */
#define MAX_HF_GRAD 0.5738


static bool hf_fixture_present(void) { return family_file_present(HF_BERT "/model_hf.safetensors"); }

static void test_masked_lm_matches_hugging_face(void **state) {
    if (!hf_fixture_present()) skip();
    /* save_pretrained's file (decoder weight and bias dropped, re-tied by the
     * aliases) and the full state_dict (tied copies present, checked equal) */
    family_check_loss_and_grads(HF_BERT, "config.json", NULL, "model_hf.safetensors", 8);
    family_check_loss_and_grads(HF_BERT, "config.json", NULL, "model.safetensors", 8);
}

/* The rule for an element whose true gradient is 0. As for GPT-2, its float32
 * gradient is rounding noise (~1e-9 here). Here that is every element of the
 * key biases (q.b_k is added to every score of a row; softmax cancels it), so
 * the GPT-2 rule (below 1e-5 of the tensor's mean) cannot find them; the
 * float64 run can: its gradient there is ~1e-18. Such elements: those with a
 * float64 gradient below 1e-9 of the model's largest, when their float32
 * gradient is not exactly 0 or the whole tensor is such (the key biases,
 * where the float32 noise happens to be 0 at step 0 in a few elements and not
 * later). All others, among them the exact zeros of unused embedding rows
 * that only weight decay moves, are held to 1e-4. */
static void float64_zero_elements(hid_t e, const ag_tensor *t, int64_t n, bool *noise) {
    char name[300];
    snprintf(name, sizeof name, "grads/%s", t->name);
    float *g0 = h5_read_floats(e, name, NULL);
    snprintf(name, sizeof name, "grads_f64/%s", t->name);
    float *g64 = h5_read_floats(e, name, NULL);
    assert_non_null(g0);
    assert_non_null(g64);
    double max64 = 0;
    for (int64_t j = 0; j < n; ++j) max64 = fmax(max64, fabs(g64[j]));
    const bool all_noise = max64 < 1e-9 * MAX_HF_GRAD;
    for (int64_t j = 0; j < n; ++j) noise[j] = fabs(g64[j]) < 1e-9 * MAX_HF_GRAD && (g0[j] != 0 || all_noise);
    free(g0);
    free(g64);
}

/* The fixture's train_trajectory: AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8,
 * weight decay 0.01 on every parameter), 20 steps on the same batch. */
static void test_adamw_trajectory_matches_hugging_face(void **state) {
    if (!hf_fixture_present()) skip();
    recipe_model m;
    recipe_batch b;
    family_load(&m, &b, HF_BERT, "config.json", NULL, "model_hf.safetensors");
    hid_t e = H5Fopen(HF_BERT "/expected.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    family_check_adamw_trajectory(&m, &b, e, float64_zero_elements, "have a true gradient of 0 (float32 noise)");
    H5Fclose(e);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

/* The other classes against the hand-written PyTorch transcription. */
static void test_other_classes_match_pytorch(void **state) {
    family_check_loss_and_grads(OWN "/bert_pretraining", "config.json", NULL, "model.safetensors", 4 + 2); /* MLM + NSP */
    family_check_loss_and_grads(OWN "/bert_seqcls", "config.json", NULL, "model.safetensors", 2);
    family_check_loss_and_grads(OWN "/bert_regression", "config.json", NULL, "model.safetensors", 2);
    family_check_loss_and_grads(OWN "/roberta_mlm", "config.json", NULL, "model.safetensors", 4);
    family_check_loss_and_grads(OWN "/roberta_seqcls", "config.json", NULL, "model.safetensors", 6); /* 2 rows x 3 labels */
    family_check_loss_and_grads(OWN "/distilbert_mlm", "config.json", NULL, "model.safetensors", 4);
    family_check_loss_and_grads(OWN "/distilbert_seqcls", "config.json", NULL, "model.safetensors", 2);
}

/* XLM-R is RoBERTa's code: the roberta_mlm case read as model_type
 * "xlm-roberta" and class XLMRobertaForMaskedLM gives the same loss. */
static void test_xlm_roberta_is_roberta(void **state) {
    char *text = ag_read_file("config", OWN "/roberta_mlm/config.json", 1 << 20, NULL);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    cJSON_ReplaceItemInObject(j, "model_type", cJSON_CreateString("xlm-roberta"));
    cJSON_ReplaceItemInObject(j, "architectures", cJSON_CreateStringArray((const char *[]){"XLMRobertaForMaskedLM"}, 1));
    char *xlmr = cJSON_Print(j);
    const char *path = temp_config(xlmr);
    recipe_model m;
    recipe_batch b;
    if (recipe_model_declare(&m, path, NULL) != AG_OK) fail_msg("%s", ag_error());
    remove(path);
    assert_string_equal(m.arch, "XLMRobertaForMaskedLM");
    assert_int_equal(recipe_model_alloc(&m, 0), AG_OK);
    if (ckpt_safetensors_load(OWN "/roberta_mlm/model.safetensors", &m.ps, m.aliases, m.n_aliases))
        fail_msg("%s", ag_error());
    assert_int_equal(recipe_batch_load(&b, OWN "/roberta_mlm/inputs.json"), AG_OK);
    hid_t e = H5Fopen(OWN "/roberta_mlm/expected.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    float *want = h5_read_floats(e, "loss", NULL);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *loss = recipe_model_loss(ctx, &m, &b, NULL);
    assert_non_null(loss);
    assert_true(fabs(loss->data[0] - want[0]) <= 1e-5 * fabs(want[0]));
    ag_ctx_free(ctx);
    free(want);
    H5Fclose(e);
    recipe_batch_free(&b);
    recipe_model_free(&m);
    free(xlmr);
    cJSON_Delete(j);
    free(text);
}

/* Totals Hugging Face reports (model.num_parameters()) for the published sizes. */
static void test_parameter_counts(void **state) {
    const char *base = "{\"model_type\": \"bert\"}"; /* bert-base-uncased: the defaults */
    assert_int_equal(count_params(base, "BertModel"), 109482240);
    assert_int_equal(count_params(base, "BertForMaskedLM"), 109514298);
    assert_int_equal(count_params(base, "BertForPreTraining"), 110106428);
    assert_int_equal(count_params(base, "BertForSequenceClassification"), 109483778);
    const char *large = "{\"model_type\": \"bert\", \"hidden_size\": 1024, \"num_hidden_layers\": 24, "
                        "\"num_attention_heads\": 16, \"intermediate_size\": 4096}";
    assert_int_equal(count_params(large, "BertModel"), 335141888);
    assert_int_equal(count_params(large, "BertForMaskedLM"), 335174458);
    const char *roberta = "{\"model_type\": \"roberta\", \"vocab_size\": 50265, \"max_position_embeddings\": 514, "
                          "\"type_vocab_size\": 1, \"layer_norm_eps\": 1e-5}";
    assert_int_equal(count_params(roberta, "RobertaModel"), 124645632);
    assert_int_equal(count_params(roberta, "RobertaForMaskedLM"), 124697433);
    assert_int_equal(count_params(roberta, "RobertaForSequenceClassification"), 124647170);
    const char *xlmr = "{\"model_type\": \"xlm-roberta\", \"vocab_size\": 250002, \"max_position_embeddings\": 514, "
                       "\"type_vocab_size\": 1, \"layer_norm_eps\": 1e-5}";
    assert_int_equal(count_params(xlmr, "XLMRobertaModel"), 278043648);
    const char *distil = "{\"model_type\": \"distilbert\"}"; /* distilbert-base-uncased: the defaults */
    assert_int_equal(count_params(distil, "DistilBertModel"), 66362880);
    assert_int_equal(count_params(distil, "DistilBertForMaskedLM"), 66985530);
    assert_int_equal(count_params(distil, "DistilBertForSequenceClassification"), 66955010);
}

/* _init_weights: N(0, initializer_range), padding rows zero, LayerNorm 1/0,
 * zero biases including the MLM head's. */
static void test_init(void **state) {
    recipe_model m;
    family_build_text(&m, "{\"model_type\": \"bert\", \"architectures\": [\"BertForMaskedLM\"], "
                          "\"hidden_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                          "\"intermediate_size\": 256, \"vocab_size\": 1000, \"pad_token_id\": 3, "
                          "\"initializer_range\": 0.05}", 7);
    struct { const char *name; double std, mean; } want[] = {
        {"bert.embeddings.word_embeddings.weight", 0.05, 0},
        {"bert.embeddings.position_embeddings.weight", 0.05, 0},
        {"bert.encoder.layer.1.attention.self.key.weight", 0.05, 0},
        {"bert.encoder.layer.1.intermediate.dense.weight", 0.05, 0},
        {"cls.predictions.transform.dense.weight", 0.05, 0},
        {"bert.encoder.layer.1.output.LayerNorm.weight", 0, 1},
        {"bert.encoder.layer.1.output.LayerNorm.bias", 0, 0},
        {"bert.encoder.layer.0.attention.output.dense.bias", 0, 0},
        {"cls.predictions.bias", 0, 0},
    };
    for (size_t k = 0; k < sizeof want / sizeof *want; ++k)
        family_check_init(&m.ps, want[k].name, want[k].std, want[k].mean, 0.05);
    const ag_tensor *w = ag_params_find(&m.ps, "bert.embeddings.word_embeddings.weight");
    for (int c = 0; c < 128; ++c) assert_true(w->data[3 * 128 + c] == 0.0f); /* the padding row */
    assert_null(ag_params_find(&m.ps, "bert.pooler.dense.weight"));           /* no pooler in ForMaskedLM */
    assert_int_equal(m.n_aliases, 2);
    recipe_model_free(&m);
}

static void test_bad_configs(void **state) {
#define BERT "{\"model_type\": \"bert\", \"architectures\": [\"BertForMaskedLM\"], "
    expect_config_error(BERT "\"hidden_size\": \"big\"}", "\"hidden_size\"");
    expect_config_error(BERT "\"num_attention_heads\": 5}", "divisible");
    expect_config_error(BERT "\"hidden_act\": \"cubic\"}", "hidden_act");
    expect_config_error(BERT "\"num_hidden_layers\": 0}", "\"num_hidden_layers\"");
    expect_config_error(BERT "\"layer_norm_eps\": 0}", "\"layer_norm_eps\"");
    expect_config_error(BERT "\"hidden_dropout_prob\": 1.5}", "\"hidden_dropout_prob\"");
    expect_config_error(BERT "\"position_embedding_type\": \"relative_key\"}", "position_embedding_type");
    expect_config_error(BERT "\"pad_token_id\": 40000}", "\"pad_token_id\"");
    expect_config_error(BERT "\"problem_type\": \"ranking\"}", "problem_type");
    expect_config_error(BERT "\"id2label\": []}", "id2label");
    expect_config_error("{\"model_type\": \"bert\", \"architectures\": [\"BertForTokenClassification\"]}",
                        "BertForTokenClassification");
    expect_config_error("{\"model_type\": \"roberta\", \"architectures\": [\"RobertaForPreTraining\"]}",
                        "RobertaForPreTraining");
    expect_config_error("{\"model_type\": \"roberta\", \"architectures\": [\"BertModel\"]}", "BertModel");
    expect_config_error("{\"model_type\": \"roberta\", \"architectures\": [\"RobertaModel\"], "
                        "\"max_position_embeddings\": 2}", "max_position_embeddings");
#undef BERT
    expect_config_error("{\"model_type\": \"distilbert\", \"architectures\": [\"DistilBertModel\"], "
                        "\"sinusoidal_pos_embds\": true}", "sinusoidal_pos_embds");
    expect_config_error("{\"model_type\": \"distilbert\", \"architectures\": [\"DistilBertModel\"], "
                        "\"n_heads\": 5}", "divisible");
}

/* Wrong batches are errors naming the field, never a crash. */
static void test_bad_batches(void **state) {
    recipe_model m;
    recipe_batch b;
    family_load(&m, &b, OWN "/bert_pretraining", "config.json", NULL, "model.safetensors");
    ag_ctx *ctx = ag_ctx_create(0);
    const ag_ints *ids = recipe_batch_get(&b, "input_ids"), *labels = recipe_batch_get(&b, "labels"),
                  *mask = recipe_batch_get(&b, "attention_mask");
    assert_null(nn_bert_loss(ctx, &m.bert, ids, NULL, mask, labels, NULL, NULL));
    assert_non_null(strstr(ag_error(), "next_sentence_label"));
    ag_ints short_mask = ag_ints_wrap(mask->data, 2, AG_SHAPE(2, 5));
    assert_null(nn_bert_forward(ctx, &m.bert, ids, NULL, &short_mask));
    assert_non_null(strstr(ag_error(), "attention_mask"));
    int32_t big[2 * 30] = {0};
    ag_ints too_long = ag_ints_wrap(big, 2, AG_SHAPE(2, 30)); /* max_position_embeddings 24 */
    assert_null(nn_bert_forward(ctx, &m.bert, &too_long, NULL, NULL));
    assert_non_null(strstr(ag_error(), "max_position_embeddings"));
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

int main(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_masked_lm_matches_hugging_face),
        cmocka_unit_test(test_adamw_trajectory_matches_hugging_face),
        cmocka_unit_test(test_other_classes_match_pytorch),
        cmocka_unit_test(test_xlm_roberta_is_roberta),
        cmocka_unit_test(test_parameter_counts),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_bad_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
