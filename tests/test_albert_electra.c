/* test_albert_electra.c: ALBERT and ELECTRA against PyTorch.
 *
 * tests/fixtures/albert_electra/<case> holds, for each class, a tiny config,
 * random float32 weights (model.safetensors, tied copies dropped), a padded
 * batch with token_type_ids, and the loss and every gradient of a float64
 * hand transcription of Hugging Face 4.31's modeling_albert.py and
 * modeling_electra.py (gen_albert_electra_fixtures.py; its BERT layer is the
 * one that reproduces the real Hugging Face BERT fixture). tapegrad must give
 * the loss within 1e-5 relative and every gradient within 1e-4. The ALBERT
 * pretraining case runs three layer steps over two groups of two layers
 * (group 0 twice), so its shared gradients are sums over uses. The bare
 * models have no loss; they are checked through loss = sum(hidden * dout)
 * (+ sum(pooled * dout_pooled)). Also: parameter totals of the published
 * sizes, Hugging Face's init, bad configs and batches refused by name.
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

#define OWN FIXTURE_DIR "/albert_electra"


static void load_model(recipe_model *m, recipe_batch *b, const char *dir) {
    family_load(m, b, dir, "config.json", NULL, "model.safetensors");
}

/* sum(x * dout) with dout read from the fixture: a bare model's stand-in loss. */
static ag_tensor *dot_with(ag_ctx *ctx, hid_t e, const char *name, ag_tensor *x) {
    if (!x) return NULL;
    int64_t n = 0;
    float *d = h5_read_floats(e, name, &n);
    assert_non_null(d);
    assert_int_equal(n, x->numel);
    ag_tensor *dout = ag_from(ctx, d, x->ndim, x->shape, false);
    free(d);
    return ag_sum(ctx, ag_mul(ctx, x, dout), AG_ALL, false);
}

/* The case's loss: the class's own, or for a bare model (no loss; no tokens
 * counted) its stand-in on the batch. */
static ag_tensor *case_loss(ag_ctx *ctx, recipe_model *m, const recipe_batch *b, hid_t e, int64_t *tokens) {
    const bool bare = strcmp(m->arch + strlen(m->arch) - 5, "Model") == 0;
    if (!bare) return recipe_model_loss(ctx, m, b, tokens);
    *tokens = 0;
    const ag_ints *ids = recipe_batch_get(b, "input_ids"), *tt = recipe_batch_get(b, "token_type_ids"),
                  *mask = recipe_batch_get(b, "attention_mask");
    if (m->family == RECIPE_FAMILY_ELECTRA)
        return dot_with(ctx, e, "dout_hidden", nn_electra_forward(ctx, &m->electra, ids, tt, mask));
    ag_tensor *h = nn_albert_forward(ctx, &m->albert, ids, tt, mask); /* [B,T,H] */
    return ag_add(ctx, dot_with(ctx, e, "dout_hidden", h),
                  dot_with(ctx, e, "dout_pooled", nn_albert_pool(ctx, &m->albert, h)));
}

/* The loss (within 1e-5 relative) and every parameter's gradient (within
 * 1e-4 of grads/<name>) of the case's class on its batch. */
static void check_case(const char *name, int64_t want_tokens) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", OWN, name);
    family_check_loss_and_grads_of(dir, "config.json", NULL, "model.safetensors", want_tokens, case_loss);
}

static void test_albert_matches_pytorch(void **state) {
    check_case("albert_pretraining", 4 + 2); /* 4 masked tokens + 2 sentence-order labels */
    check_case("albert_mlm", 4);
    check_case("albert_seqcls", 2);
    check_case("albert_model", 0);
}

static void test_electra_matches_pytorch(void **state) {
    check_case("electra_discriminator", 16); /* the 10 + 6 tokens attention_mask keeps */
    check_case("electra_generator", 4);
    check_case("electra_seqcls", 6);         /* 2 rows x 3 labels, multi-label */
    check_case("electra_model", 0);
}

/* The pretraining heads train: 30 AdamW steps (lr 1e-3) on a fixture batch
 * take each pretraining loss below 0.7 of where it started, through shared
 * ALBERT layers and ELECTRA's embedding projection alike. */
static void test_pretraining_heads_train(void **state) {
    const char *cases[] = {"albert_pretraining", "electra_discriminator", "electra_generator"};
    for (int c = 0; c < 3; ++c) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", OWN, cases[c]);
        recipe_model m;
        recipe_batch b;
        load_model(&m, &b, dir);
        optim_config oc = optim_adamw_defaults();
        optim *opt;
        assert_int_equal(optim_create(&opt, &m.ps, &oc), AG_OK);
        ag_ctx *ctx = ag_ctx_create(0);
        float first = 0, last = 0;
        for (int s = 0; s < 30; ++s) {
            ag_ctx_reset(ctx);
            ag_tensor *loss = recipe_model_loss(ctx, &m, &b, NULL);
            if (!loss) fail_msg("%s", ag_error());
            if (s == 0) first = loss->data[0];
            last = loss->data[0];
            assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
            assert_int_equal(optim_step(opt, 1e-3), AG_OK);
            ag_params_zero_grad(&m.ps);
        }
        printf("%-22s %-22s 30 AdamW steps: loss %.4f -> %.4f\n", cases[c], m.arch, first, last);
        assert_true(last < 0.7f * first);
        ag_ctx_free(ctx);
        optim_free(opt);
        recipe_batch_free(&b);
        recipe_model_free(&m);
    }
}

/* The published configs (their config.json fields; unlisted ones are the
 * defaults) and the totals: model.num_parameters() as the issue states it for
 * albert-base-v2's AlbertModel; the others counted by the PyTorch
 * transcription (gen_albert_electra_fixtures.py prints them) and by hand. */
static void test_parameter_counts(void **state) {
#define ALBERT(E, H, L, NH, I) "{\"model_type\": \"albert\", \"vocab_size\": 30000, \"embedding_size\": " #E \
    ", \"hidden_size\": " #H ", \"num_hidden_layers\": " #L ", \"num_attention_heads\": " #NH \
    ", \"intermediate_size\": " #I "}"
    const char *albert_base = ALBERT(128, 768, 12, 12, 3072);
    assert_int_equal(count_params(albert_base, "AlbertModel"), 11683584);
    assert_int_equal(count_params(albert_base, "AlbertForMaskedLM"), 11221680);
    assert_int_equal(count_params(albert_base, "AlbertForPreTraining"), 11813810);
    /* large (1024, 24 layers, 16 heads), xlarge (2048, 24, 16), xxlarge (4096, 12, 64): one shared layer each */
    assert_int_equal(count_params(ALBERT(128, 1024, 24, 16, 4096), "AlbertModel"), 17683968);
    assert_int_equal(count_params(ALBERT(128, 2048, 24, 16, 8192), "AlbertModel"), 58724864);
    assert_int_equal(count_params(ALBERT(128, 4096, 12, 64, 16384), "AlbertModel"), 222595584);
#undef ALBERT
#define ELECTRA(E, H, L, NH, I) "{\"model_type\": \"electra\", \"embedding_size\": " #E ", \"hidden_size\": " #H \
    ", \"num_hidden_layers\": " #L ", \"num_attention_heads\": " #NH ", \"intermediate_size\": " #I "}"
    const char *small = ELECTRA(128, 256, 12, 4, 1024), *base = ELECTRA(768, 768, 12, 12, 3072);
    assert_int_equal(count_params(small, "ElectraModel"), 13483008);
    assert_int_equal(count_params(small, "ElectraForPreTraining"), 13549057);
    assert_int_equal(count_params(base, "ElectraModel"), 108891648);
    assert_int_equal(count_params(base, "ElectraForPreTraining"), 109483009);
    /* electra-large-discriminator: BERT-large's encoder without the pooler */
    assert_int_equal(count_params(ELECTRA(1024, 1024, 24, 16, 4096), "ElectraModel"), 334092288);
    /* ElectraConfig's defaults are electra-small's */
    assert_int_equal(count_params("{\"model_type\": \"electra\"}", "ElectraModel"), 13483008);
#undef ELECTRA
}

/* _init_weights: N(0, initializer_range), padding rows zero, LayerNorm 1/0,
 * zero biases including the MLM head's; the tied weights are aliases. */
static void test_init(void **state) {
    struct { const char *config; const char *names[6]; double std[6], mean[6]; int aliases; } cases[] = {
        {"{\"model_type\": \"albert\", \"architectures\": [\"AlbertForPreTraining\"], \"embedding_size\": 64, "
         "\"hidden_size\": 128, \"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"intermediate_size\": 256, "
         "\"vocab_size\": 1000, \"pad_token_id\": 3, \"initializer_range\": 0.05}",
         {"albert.embeddings.word_embeddings.weight", "albert.encoder.embedding_hidden_mapping_in.weight",
          "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight",
          "albert.encoder.albert_layer_groups.0.albert_layers.0.full_layer_layer_norm.weight", "predictions.bias",
          "sop_classifier.classifier.weight"},
         {0.05, 0.05, 0.05, 0, 0, 0.05}, {0, 0, 0, 1, 0, 0}, 2},
        {"{\"model_type\": \"electra\", \"architectures\": [\"ElectraForMaskedLM\"], \"embedding_size\": 64, "
         "\"hidden_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 256, "
         "\"vocab_size\": 1000, \"pad_token_id\": 3, \"initializer_range\": 0.05}",
         {"electra.embeddings.word_embeddings.weight", "electra.embeddings_project.weight",
          "electra.encoder.layer.1.intermediate.dense.weight", "electra.encoder.layer.1.output.LayerNorm.weight",
          "generator_lm_head.bias", "generator_predictions.dense.weight"},
         {0.05, 0.05, 0.05, 0, 0, 0.05}, {0, 0, 0, 1, 0, 0}, 1},
    };
    for (size_t c = 0; c < 2; ++c) {
        recipe_model m;
        family_build_text(&m, cases[c].config, 7);
        for (int k = 0; k < 6; ++k)
            family_check_init(&m.ps, cases[c].names[k], cases[c].std[k], cases[c].mean[k], 0.05);
        const ag_tensor *w = m.ps.p[0]; /* the word embedding: its padding row is zero */
        for (int i = 0; i < 64; ++i) assert_true(w->data[3 * 64 + i] == 0.0f);
        assert_int_equal(m.n_aliases, cases[c].aliases);
        recipe_model_free(&m);
    }
}

static void test_bad_configs(void **state) {
#define ALBERT "{\"model_type\": \"albert\", \"architectures\": [\"AlbertForMaskedLM\"], "
    expect_config_error(ALBERT "\"embedding_size\": \"wide\"}", "\"embedding_size\"");
    expect_config_error(ALBERT "\"hidden_size\": 768, \"num_attention_heads\": 5}", "divisible");
    expect_config_error(ALBERT "\"num_hidden_groups\": 0}", "\"num_hidden_groups\"");
    expect_config_error(ALBERT "\"inner_group_num\": 0}", "\"inner_group_num\"");
    expect_config_error(ALBERT "\"hidden_act\": \"cubic\"}", "hidden_act");
    expect_config_error(ALBERT "\"classifier_dropout_prob\": 1}", "\"classifier_dropout_prob\"");
    expect_config_error(ALBERT "\"position_embedding_type\": \"relative_key\"}", "position_embedding_type");
    expect_config_error(ALBERT "\"pad_token_id\": 40000}", "\"pad_token_id\"");
#undef ALBERT
    expect_config_error("{\"model_type\": \"albert\", \"architectures\": [\"AlbertForPreTraining\"], "
                        "\"num_labels\": 3}", "num_labels");
    expect_config_error("{\"model_type\": \"albert\", \"architectures\": [\"AlbertForQuestionAnswering\"]}",
                        "AlbertForQuestionAnswering");
#define ELECTRA "{\"model_type\": \"electra\", \"architectures\": [\"ElectraForPreTraining\"], "
    expect_config_error(ELECTRA "\"hidden_size\": 256, \"num_attention_heads\": 3}", "divisible");
    expect_config_error(ELECTRA "\"num_hidden_layers\": 0}", "\"num_hidden_layers\"");
    expect_config_error(ELECTRA "\"layer_norm_eps\": 0}", "\"layer_norm_eps\"");
    expect_config_error(ELECTRA "\"attention_probs_dropout_prob\": 1.5}", "\"attention_probs_dropout_prob\"");
    expect_config_error(ELECTRA "\"problem_type\": \"ranking\"}", "problem_type");
    expect_config_error(ELECTRA "\"id2label\": []}", "id2label");
    expect_config_error(ELECTRA "\"embedding_size\": -1}", "\"embedding_size\"");
#undef ELECTRA
    expect_config_error("{\"model_type\": \"electra\", \"architectures\": [\"ElectraForCausalLM\"]}",
                        "ElectraForCausalLM");
}

/* Wrong batches are errors naming the field, never a crash. */
static void test_bad_batches(void **state) {
    recipe_model m;
    recipe_batch b;
    load_model(&m, &b, OWN "/albert_pretraining");
    ag_ctx *ctx = ag_ctx_create(0);
    const ag_ints *ids = recipe_batch_get(&b, "input_ids"), *labels = recipe_batch_get(&b, "labels"),
                  *mask = recipe_batch_get(&b, "attention_mask");
    assert_null(nn_albert_loss(ctx, &m.albert, ids, NULL, mask, labels, NULL, NULL));
    assert_non_null(strstr(ag_error(), "sentence_order_label"));
    ag_ints short_mask = ag_ints_wrap(mask->data, 2, AG_SHAPE(2, 5));
    assert_null(nn_albert_forward(ctx, &m.albert, ids, NULL, &short_mask));
    assert_non_null(strstr(ag_error(), "attention_mask"));
    int32_t big[2 * 30] = {0};
    ag_ints too_long = ag_ints_wrap(big, 2, AG_SHAPE(2, 30)); /* max_position_embeddings 24 */
    assert_null(nn_albert_forward(ctx, &m.albert, &too_long, NULL, NULL));
    assert_non_null(strstr(ag_error(), "max_position_embeddings"));
    recipe_batch_free(&b);
    recipe_model_free(&m);

    load_model(&m, &b, OWN "/electra_discriminator");
    ids = recipe_batch_get(&b, "input_ids"), mask = recipe_batch_get(&b, "attention_mask");
    int32_t three[20];
    for (int i = 0; i < 20; ++i) three[i] = i == 7 ? 3 : 0;
    ag_ints bad_labels = ag_ints_wrap(three, 2, AG_SHAPE(2, 10));
    assert_null(nn_electra_loss(ctx, &m.electra, ids, NULL, mask, &bad_labels, NULL));
    assert_non_null(strstr(ag_error(), "labels[7]"));
    ag_ints short_tt = ag_ints_wrap(three, 2, AG_SHAPE(4, 5));
    assert_null(nn_electra_forward(ctx, &m.electra, ids, &short_tt, mask));
    assert_non_null(strstr(ag_error(), "token_type_ids"));
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

int main(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_albert_matches_pytorch),
        cmocka_unit_test(test_electra_matches_pytorch),
        cmocka_unit_test(test_pretraining_heads_train),
        cmocka_unit_test(test_parameter_counts),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_bad_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
