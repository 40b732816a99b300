/* test_bigbird_bert2bert.c: BERT2BERT (EncoderDecoderModel over two BERT
 * configs) and BigBird (BigBirdModel, BigBirdForMaskedLM) against PyTorch
 * transcriptions of Hugging Face's forward.
 *
 * tests/fixtures/bigbird/gen_bigbird_bert2bert.py transcribes
 * modeling_encoder_decoder.py + modeling_bert.py and modeling_big_bird.py
 * (4.31) into plain PyTorch in float64, draws tiny random weights to
 * safetensors, runs a padded batch and records the loss and every gradient.
 * tapegrad loads the same safetensors and must give the loss within 1e-5
 * relative and every gradient within 1e-4. The block-sparse reference is the
 * gather form Hugging Face computes; tapegrad's dense masked form must agree
 * with it. Also: parameter totals of bert-base-uncased -> bert-base-uncased
 * BERT2BERT and of google/bigbird-roberta-base, bad configs refused by name.
 */
#include "family.h"
#include "harness.h"

#include "models.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BB_DIR FIXTURE_DIR "/bigbird"


/* Loads fixture dir/{config.json, model.safetensors, inputs.json,
 * expected.h5}, runs the class's loss and backward, and checks the loss and
 * every gradient. Returns the model (the caller frees it) for further checks. */
static void check_fixture(const char *dir, int64_t want_params, int64_t want_tokens, recipe_model *m) {
    char config[512], weights[512], inputs[512], expected[512];
    snprintf(config, sizeof config, "%s/config.json", dir);
    snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
    snprintf(inputs, sizeof inputs, "%s/inputs.json", dir);
    snprintf(expected, sizeof expected, "%s/expected.h5", dir);
    family_build(m, config, NULL, weights);
    assert_int_equal(m->ps.total, want_params);
    recipe_batch b;
    assert_int_equal(recipe_batch_load(&b, inputs), AG_OK);
    hid_t e = H5Fopen(expected, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(e >= 0);
    float *want_loss = h5_read_floats(e, "loss", NULL);
    ag_ctx *ctx = ag_ctx_create(0);
    int64_t tokens = 0;
    ag_tensor *loss = recipe_model_loss(ctx, m, &b, &tokens);
    if (!loss) fail_msg("%s", ag_error());
    assert_int_equal(tokens, want_tokens);
    printf("%s: loss %.8f, transcription %.8f\n", dir, loss->data[0], want_loss[0]);
    assert_true(fabs(loss->data[0] - want_loss[0]) <= 1e-5 * fabs(want_loss[0]));
    ag_params_zero_grad(&m->ps);
    assert_int_equal(ag_backward(ctx, loss, NULL), AG_OK);
    double worst = 0;
    assert_int_equal(family_compare_grads(&m->ps, e, expected, &worst), 0);
    printf("  every gradient (%lld tensors) within 1e-4; largest difference %.3g\n", (long long)m->ps.n, worst);
    ag_ctx_free(ctx);
    free(want_loss);
    H5Fclose(e);
    recipe_batch_free(&b);
}

/* Declares a config that must be refused; checks the message names `field`. */
static void expect_refused(const char *text, const char *arch, const char *field) {
    recipe_model m;
    const char *path = temp_config(text);
    ag_status st = recipe_model_declare(&m, path, arch);
    remove(path);
    recipe_model_free(&m);
    if (st == AG_OK) fail_msg("config was accepted: %s", text);
    if (!strstr(ag_error(), field)) fail_msg("message '%s' does not name %s (config %s)", ag_error(), field, text);
}

/* ---------------------------------------------------------------- BERT2BERT */

/* Reads a float dataset from dir/expected.h5. */
static float *read_expected(const char *dir, const char *name, int64_t *n) {
    char path[512];
    snprintf(path, sizeof path, "%s/expected.h5", dir);
    hid_t e = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(e >= 0);
    float *x = h5_read_floats(e, name, n);
    H5Fclose(e);
    assert_non_null(x);
    return x;
}


static void test_bert2bert_matches_transcription(void **state) {
    (void)state;
    recipe_model m;
    /* 15800 parameters: both sides' embeddings and layers, the encoder's
     * pooler, the decoder's head (its decoder weight tied); 7 + 4 labels */
    check_fixture(BB_DIR "/bert2bert", 15800, 11, &m);
    assert_int_equal(m.n_aliases, 2);
    assert_ptr_equal(m.bert2bert.decoder_w, m.bert2bert.dec_emb.word.w);
    assert_non_null(ag_params_find(&m.ps, "decoder.bert.encoder.layer.2.crossattention.self.value.weight"));
    assert_non_null(ag_params_find(&m.ps, "decoder.bert.encoder.layer.0.crossattention.output.LayerNorm.bias"));
    assert_non_null(ag_params_find(&m.ps, "encoder.encoder.layer.1.output.dense.weight"));
    assert_non_null(ag_params_find(&m.ps, "encoder.pooler.dense.weight"));
    assert_null(ag_params_find(&m.ps, "decoder.bert.pooler.dense.weight"));

    /* the shift: [start, labels[:, :-1]] with -100 -> pad */
    recipe_batch b;
    assert_int_equal(recipe_batch_load(&b, BB_DIR "/bert2bert/inputs.json"), AG_OK);
    ag_ctx *ctx = ag_ctx_create(0);
    const ag_ints *labels = recipe_batch_get(&b, "labels");
    ag_ints *dec = nn_bert2bert_shift_right(ctx, &m.bert2bert, labels);
    assert_non_null(dec);
    const int32_t want[2][7] = {{2, 11, 52, 7, 33, 19, 3}, {2, 25, 58, 14, 3, 0, 0}};
    for (int r = 0; r < 2; ++r)
        for (int t = 0; t < 7; ++t) assert_int_equal(dec->data[r * 7 + t], want[r][t]);

    /* decoder_input_ids given explicitly: the same loss */
    ag_tensor *l1 = nn_bert2bert_loss(ctx, &m.bert2bert, recipe_batch_get(&b, "input_ids"),
                                      recipe_batch_get(&b, "token_type_ids"), recipe_batch_get(&b, "attention_mask"),
                                      labels, NULL, NULL, NULL);
    ag_tensor *l2 = nn_bert2bert_loss(ctx, &m.bert2bert, recipe_batch_get(&b, "input_ids"),
                                      recipe_batch_get(&b, "token_type_ids"), recipe_batch_get(&b, "attention_mask"),
                                      labels, dec, NULL, NULL);
    assert_non_null(l1);
    assert_non_null(l2);
    assert_true(l1->data[0] == l2->data[0]);
    /* with a decoder_attention_mask: causal and the decoder's padding */
    recipe_batch bm;
    assert_int_equal(recipe_batch_load(&bm, BB_DIR "/bert2bert/inputs_dec_mask.json"), AG_OK);
    ag_tensor *l3 = recipe_model_loss(ctx, &m, &bm, NULL);
    if (!l3) fail_msg("%s", ag_error());
    float *want3 = read_expected(BB_DIR "/bert2bert", "dec_mask_loss", NULL);
    printf("with decoder_attention_mask: loss %.8f, transcription %.8f\n", l3->data[0], want3[0]);
    assert_true(fabs(l3->data[0] - want3[0]) <= 1e-5 * fabs(want3[0]));
    assert_true(l3->data[0] != l1->data[0]);
    free(want3);
    recipe_batch_free(&bm);
    /* a decoder mask of the wrong shape is named */
    ag_ints bad = ag_ints_wrap(dec->data, 2, AG_SHAPE(1, 7));
    assert_null(nn_bert2bert_loss(ctx, &m.bert2bert, recipe_batch_get(&b, "input_ids"), NULL,
                                  recipe_batch_get(&b, "attention_mask"), labels, NULL, &bad, NULL));
    assert_non_null(strstr(ag_error(), "decoder_attention_mask"));
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

/* bert-base-uncased's config.json (the fields that size it), as each side. */
#define BERT_BASE                                                                                                    \
    "\"model_type\": \"bert\", \"vocab_size\": 30522, \"hidden_size\": 768, \"num_hidden_layers\": 12, "           \
    "\"num_attention_heads\": 12, \"intermediate_size\": 3072, \"max_position_embeddings\": 512, "                   \
    "\"type_vocab_size\": 2, \"pad_token_id\": 0"

/* A BERT2BERT config with extra fields first at the top, in the encoder and
 * in the decoder (cJSON reads the first of a repeated name). */
static void bert2bert_config(char *out, size_t cap, const char *top, const char *enc, const char *dec) {
    snprintf(out, cap,
             "{%s \"model_type\": \"encoder-decoder\", \"architectures\": [\"EncoderDecoderModel\"], "
             "\"decoder_start_token_id\": 101, \"pad_token_id\": 0, "
             "\"encoder\": {%s " BERT_BASE "}, "
             "\"decoder\": {%s " BERT_BASE ", \"is_decoder\": true, \"add_cross_attention\": true}}",
             top, enc, dec);
}

static void test_bert2bert_parameter_total(void **state) {
    (void)state;
    char text[2048];
    bert2bert_config(text, sizeof text, "", "", "");
    /* BertModel (bert-base-uncased, with pooler)             109,482,240
     * + BertLMHeadModel with cross-attention:
     *     BertModel without pooler  109,482,240 - 590,592  = 108,891,648
     *     12 cross-attentions x (4 x 768 x 769 + 2 x 768)  =  28,366,848
     *     cls.predictions: transform 590,592 + LN 1,536 + bias 30,522 = 622,650
     * = 247,363,386, the total EncoderDecoderModel.from_encoder_decoder_pretrained(
     * "bert-base-uncased", "bert-base-uncased").num_parameters() reports */
    assert_int_equal(count_params(text, NULL), 247363386);
    printf("bert-base-uncased -> bert-base-uncased BERT2BERT: 247,363,386 parameters\n");
}

static void test_bert2bert_bad_configs_are_refused(void **state) {
    (void)state;
    const struct { const char *top, *enc, *dec, *arch, *names; } bad[] = {
        {"", "", "\"add_cross_attention\": false,", NULL, "decoder.add_cross_attention"},
        {"", "", "\"is_decoder\": false,", NULL, "decoder.is_decoder"},
        {"", "\"is_decoder\": true,", "", NULL, "encoder.is_decoder"},
        {"\"decoder_start_token_id\": null,", "", "", NULL, "decoder_start_token_id"},
        {"\"pad_token_id\": null,", "", "", NULL, "pad_token_id"},
        {"\"decoder_start_token_id\": 40000,", "", "", NULL, "decoder_start_token_id"},
        {"", "", "\"hidden_size\": 384,", NULL, "decoder.hidden_size"},
        {"", "\"model_type\": \"roberta\",", "", NULL, "encoder.model_type"},
        {"\"tie_encoder_decoder\": true,", "", "", NULL, "tie_encoder_decoder"},
        {"", "", "\"hidden_act\": \"gelu_2\",", NULL, "hidden_act"},
        {"", "\"layer_norm_eps\": 0,", "", NULL, "layer_norm_eps"},
        {"", "", "", "BertGenerationEncoder", "BertGenerationEncoder"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        char text[2048];
        bert2bert_config(text, sizeof text, bad[i].top, bad[i].enc, bad[i].dec);
        expect_refused(text, bad[i].arch, bad[i].names);
    }
    /* an encoder or decoder that is not an object */
    expect_refused("{\"model_type\": \"encoder-decoder\", \"architectures\": [\"EncoderDecoderModel\"], "
                   "\"encoder\": 3, \"decoder\": {}}", NULL, "\"encoder\"");
}

/* ---------------------------------------------------------------- BigBird */

static void test_bigbird_full_matches_transcription(void **state) {
    (void)state;
    recipe_model m;
    /* original_full with rescale_embeddings; 9 labels */
    check_fixture(BB_DIR "/full", 6264, 9, &m);
    assert_false(m.bigbird.cfg.block_sparse);
    assert_true(m.bigbird.cfg.rescale_embeddings);
    assert_int_equal(m.n_aliases, 2);
    assert_non_null(ag_params_find(&m.ps, "bert.pooler.weight")); /* BigBirdForMaskedLM keeps the pooler */
    recipe_model_free(&m);
}

static void test_bigbird_block_sparse_matches_transcription(void **state) {
    (void)state;
    recipe_model m;
    /* block_size 4, 2 random blocks, 38 tokens (padded to 40 = 10 blocks, the
     * second row padded from 29), no query/key/value biases; 26 labels */
    check_fixture(BB_DIR "/sparse", 6168, 26, &m);
    const nn_bigbird *bb = &m.bigbird;
    assert_true(bb->cfg.block_sparse);
    assert_false(bb->cfg.use_bias);
    assert_null(ag_params_find(&m.ps, "bert.encoder.layer.0.attention.self.key.bias"));
    assert_true(nn_bigbird_uses_block_sparse(bb, 38));
    assert_false(nn_bigbird_uses_block_sparse(bb, 36)); /* (5 + 2*2) * 4 */

    /* the last hidden state, padding to the block size removed: [2,38,16] */
    recipe_batch b;
    assert_int_equal(recipe_batch_load(&b, BB_DIR "/sparse/inputs.json"), AG_OK);
    ag_ctx *ctx = ag_ctx_create(0);
    const ag_ints *mask = recipe_batch_get(&b, "attention_mask");
    ag_tensor *h = nn_bigbird_forward(ctx, bb, recipe_batch_get(&b, "input_ids"), recipe_batch_get(&b, "token_type_ids"),
                                      mask);
    if (!h) fail_msg("%s", ag_error());
    int64_t n = 0;
    float *want = read_expected(BB_DIR "/sparse", "last_hidden_state", &n);
    assert_int_equal(h->numel, n);
    assert_int_equal(h->shape[1], 38);
    /* padded rows are not compared: Hugging Face zeroes their attention
     * context, which both sides do, but they carry no information */
    for (int64_t r = 0; r < 2; ++r)
        for (int64_t t = 0; t < 38; ++t)
            if (mask->data[r * 38 + t])
                assert_true(check_close("last_hidden_state", h->data + (r * 38 + t) * 16, want + (r * 38 + t) * 16, 16,
                                        1e-4, 1e-4));
    free(want);

    /* the pattern on 10 blocks, row 1 of the batch (padded from 29 of 40):
     * query block 0 sees every key; block 4 sees blocks 3,4,5, the last block
     * and block 0 three times over (global + 2 random blocks, which eval mode
     * makes block 0); padded keys carry -10000 */
    ag_ints *pmask = ag_ints_from(ctx, NULL, 2, AG_SHAPE(2, 40));
    for (int64_t i = 0; i < 80; ++i) pmask->data[i] = i < 40 ? 1 : (i - 40) < 29;
    ag_tensor *sm = nn_bigbird_sparse_mask(ctx, bb, pmask, 40);
    assert_non_null(sm);
    const float *row0 = sm->data + 0 * 40, *row17 = sm->data + 17 * 40, *row1b = sm->data + (40 + 17) * 40;
    for (int j = 0; j < 40; ++j) assert_true(row0[j] == 0.0f);
    for (int j = 0; j < 40; ++j) {
        const int kb = j / 4;
        const float want_v = kb == 0 ? logf(3.0f) : (kb >= 3 && kb <= 5) || kb == 9 ? 0.0f : -INFINITY;
        assert_true(row17[j] == want_v);
        /* row 1: keys 29.. are padding */
        const float pad = j >= 29 ? -10000.0f : 0.0f;
        assert_true(row1b[j] == want_v + pad);
    }
    /* query block 1: blocks 0 (x3), 1, 2 and 9; block 8: 0 (x3), 7, 8, 9 */
    const float *q1 = sm->data + 5 * 40, *q8 = sm->data + 33 * 40;
    for (int j = 0; j < 40; ++j) {
        const int kb = j / 4;
        assert_true(q1[j] == (kb == 0 ? logf(3.0f) : kb == 1 || kb == 2 || kb == 9 ? 0.0f : -INFINITY));
        assert_true(q8[j] == (kb == 0 ? logf(3.0f) : kb >= 7 ? 0.0f : -INFINITY));
    }
    ag_ctx_free(ctx);
    recipe_batch_free(&b);

    /* 20 tokens <= 36: block_sparse falls back to full attention, as Hugging Face does */
    assert_int_equal(recipe_batch_load(&b, BB_DIR "/sparse/inputs_short.json"), AG_OK);
    ctx = ag_ctx_create(0);
    ag_tensor *loss = recipe_model_loss(ctx, &m, &b, NULL);
    if (!loss) fail_msg("%s", ag_error());
    float *want_short = read_expected(BB_DIR "/sparse", "short_loss", NULL);
    printf("short batch (full attention): loss %.8f, transcription %.8f\n", loss->data[0], want_short[0]);
    assert_true(fabs(loss->data[0] - want_short[0]) <= 1e-5 * fabs(want_short[0]));
    free(want_short);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

/* The gather form (the default) against the dense-mask reference: the same
 * loss and gradients on the fixture, and the memory each needs on a long
 * sequence. */
static void test_bigbird_gather_form_equals_dense_reference(void **state) {
    (void)state;
    recipe_model m;
    recipe_batch b;
    family_build(&m, BB_DIR "/sparse/config.json", NULL, BB_DIR "/sparse/model.safetensors");
    assert_int_equal(recipe_batch_load(&b, BB_DIR "/sparse/inputs.json"), AG_OK);
    float loss[2], *grads[2];
    for (int dense = 0; dense < 2; ++dense) {
        m.bigbird.use_dense_mask = dense;
        ag_ctx *ctx = ag_ctx_create(0);
        ag_params_zero_grad(&m.ps);
        ag_tensor *l = recipe_model_loss(ctx, &m, &b, NULL);
        if (!l) fail_msg("%s", ag_error());
        assert_int_equal(ag_backward(ctx, l, NULL), AG_OK);
        loss[dense] = l->data[0];
        grads[dense] = malloc((size_t)m.ps.total * sizeof(float));
        memcpy(grads[dense], m.ps.grads, (size_t)m.ps.total * sizeof(float));
        ag_ctx_free(ctx);
    }
    printf("gather form %.8f, dense reference %.8f\n", loss[0], loss[1]);
    assert_true(fabs(loss[0] - loss[1]) <= 1e-6 * fabs(loss[1]));
    assert_close("gradients, gather vs dense", grads[0], grads[1], m.ps.total, 1e-4, 1e-5);
    free(grads[0]);
    free(grads[1]);
    recipe_batch_free(&b);
    recipe_model_free(&m);

    /* one sequence of 1024 tokens, block 16, 3 random blocks (64 blocks):
     * the arena each form needs for forward and backward */
    const char *cfg = "{\"model_type\": \"big_bird\", \"architectures\": [\"BigBirdModel\"], \"vocab_size\": 50, "
                      "\"hidden_size\": 16, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
                      "\"intermediate_size\": 16, \"max_position_embeddings\": 1024, \"block_size\": 16, "
                      "\"num_random_blocks\": 3}";
    const char *path = temp_config(cfg);
    assert_int_equal(recipe_model_declare(&m, path, NULL), AG_OK);
    remove(path);
    assert_int_equal(recipe_model_alloc(&m, 3), AG_OK);
    int32_t *ids = malloc(1024 * sizeof(int32_t));
    for (int i = 0; i < 1024; ++i) ids[i] = 1 + i % 49;
    ag_ints x = ag_ints_wrap(ids, 2, AG_SHAPE(1, 1024));
    size_t peak[2];
    float first[2];
    for (int dense = 0; dense < 2; ++dense) {
        m.bigbird.use_dense_mask = dense;
        ag_ctx *ctx = ag_ctx_create(0);
        ag_tensor *h = nn_bigbird_forward(ctx, &m.bigbird, &x, NULL, NULL);
        assert_non_null(h);
        assert_int_equal(ag_backward(ctx, ag_sum(ctx, h, AG_ALL, false), NULL), AG_OK);
        peak[dense] = ag_ctx_arena_peak(ctx);
        first[dense] = h->data[5000];
        ag_ctx_free(ctx);
    }
    printf("1024 tokens: arena peak %.1f MB gather form, %.1f MB dense reference\n", peak[0] / 1e6, peak[1] / 1e6);
    assert_true(fabsf(first[0] - first[1]) <= 1e-5f);
    assert_true(peak[0] * 2 < peak[1]);
    free(ids);
    recipe_model_free(&m);
}

/* Training: with dropout on, both families run and give another loss; then
 * ten plain gradient steps on the fixture's batch lower the loss (eval mode,
 * so the steps are deterministic). */
static void train_steps(const char *dir, const char *label) {
    char config[512], weights[512], inputs[512];
    snprintf(config, sizeof config, "%s/config.json", dir);
    snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
    snprintf(inputs, sizeof inputs, "%s/inputs.json", dir);
    recipe_model m;
    recipe_batch b;
    family_build(&m, config, NULL, weights);
    assert_int_equal(recipe_batch_load(&b, inputs), AG_OK);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_ctx_seed(ctx, 5);
    ag_ctx_train(ctx, true);
    ag_tensor *l = recipe_model_loss(ctx, &m, &b, NULL);
    if (!l) fail_msg("%s", ag_error());
    const float train_loss = l->data[0];
    assert_true(isfinite(train_loss));
    assert_int_equal(ag_backward(ctx, l, NULL), AG_OK);
    ag_ctx_train(ctx, false);
    float first = 0, last = 0;
    for (int step = 0; step < 10; ++step) {
        ag_ctx_reset(ctx);
        ag_params_zero_grad(&m.ps);
        l = recipe_model_loss(ctx, &m, &b, NULL);
        if (!l) fail_msg("%s", ag_error());
        assert_int_equal(ag_backward(ctx, l, NULL), AG_OK);
        if (step == 0) first = l->data[0];
        last = l->data[0];
        for (int64_t i = 0; i < m.ps.total; ++i) m.ps.values[i] -= 0.5f * m.ps.grads[i];
    }
    printf("%s: loss with dropout %.4f; ten steps of SGD: %.4f -> %.4f\n", label, train_loss, first, last);
    assert_true(train_loss != first);
    assert_true(last < 0.8f * first);
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

static void test_training_steps_lower_the_loss(void **state) {
    (void)state;
    train_steps(BB_DIR "/bert2bert", "BERT2BERT");
    train_steps(BB_DIR "/sparse", "BigBird block_sparse");
    train_steps(BB_DIR "/full", "BigBird original_full");
}

/* google/bigbird-roberta-base's config.json (the fields that size it). */
static const char *bigbird_roberta_base =
    "{\"model_type\": \"big_bird\", \"architectures\": [\"BigBirdForPreTraining\"], \"vocab_size\": 50358, "
    "\"hidden_size\": 768, \"num_hidden_layers\": 12, \"num_attention_heads\": 12, \"intermediate_size\": 3072, "
    "\"max_position_embeddings\": 4096, \"type_vocab_size\": 2, \"attention_type\": \"block_sparse\", "
    "\"block_size\": 64, \"num_random_blocks\": 3, \"use_bias\": true, \"pad_token_id\": 0, "
    "\"hidden_act\": \"gelu_new\", \"rescale_embeddings\": false}";

static void test_bigbird_parameter_totals(void **state) {
    (void)state;
    /* BigBirdModel: embeddings 50358*768 + 4096*768 + 2*768 + 2*768 = 41,823,744
     * + 12 layers x 7,087,872 = 85,054,464 + pooler 590,592 = 127,468,800 */
    assert_int_equal(count_params(bigbird_roberta_base, "BigBirdModel"), 127468800);
    /* BigBirdForMaskedLM: + transform 590,592 + LayerNorm 1,536 + bias 50,358 (decoder tied) */
    assert_int_equal(count_params(bigbird_roberta_base, "BigBirdForMaskedLM"), 127468800 + 590592 + 1536 + 50358);
    printf("google/bigbird-roberta-base BigBirdModel: 127,468,800 parameters; BigBirdForMaskedLM 128,111,286\n");
}

static void test_bigbird_bad_configs_are_refused(void **state) {
    (void)state;
    const struct { const char *fields, *arch, *names; } bad[] = {
        {"\"attention_type\": \"sparse\"", NULL, "attention_type"},
        {"\"block_size\": 0", NULL, "block_size"},
        {"\"num_random_blocks\": -1", NULL, "num_random_blocks"},
        {"\"use_bias\": 1", NULL, "use_bias"},
        {"\"rescale_embeddings\": \"yes\"", NULL, "rescale_embeddings"},
        {"\"is_decoder\": true", NULL, "is_decoder"},
        {"\"add_cross_attention\": true", NULL, "add_cross_attention"},
        {"\"hidden_act\": \"gelu_3\"", NULL, "hidden_act"},
        {"\"hidden_size\": 30", NULL, "num_attention_heads"},
        {"\"layer_norm_eps\": -1", NULL, "layer_norm_eps"},
        {"\"hidden_dropout_prob\": 1", NULL, "hidden_dropout_prob"},
        {"\"pad_token_id\": 64", NULL, "pad_token_id"},
        {"\"position_embedding_type\": \"relative_key\"", NULL, "position_embedding_type"},
        {"\"block_size\": 4", "BigBirdForQuestionAnswering", "BigBirdForQuestionAnswering"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        char text[1024];
        snprintf(text, sizeof text,
                 "{%s, \"model_type\": \"big_bird\", \"architectures\": [\"BigBirdForMaskedLM\"], "
                 "\"vocab_size\": 64, \"hidden_size\": 16, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
                 "\"intermediate_size\": 32, \"max_position_embeddings\": 64}",
                 bad[i].fields);
        expect_refused(text, bad[i].arch, bad[i].names);
    }
}

/* Errors at run time: BigBirdModel has no loss; too many positions after
 * padding to the block size; labels of the wrong shape. */
static void test_bigbird_run_time_errors(void **state) {
    (void)state;
    recipe_model m;
    recipe_batch b;
    family_build(&m, BB_DIR "/sparse/config.json", "BigBirdModel", NULL);
    assert_int_equal(m.n_aliases, 0);
    assert_non_null(ag_params_find(&m.ps, "pooler.weight"));
    assert_int_equal(recipe_batch_load(&b, BB_DIR "/sparse/inputs.json"), AG_OK);
    ag_ctx *ctx = ag_ctx_create(0);
    assert_null(recipe_model_loss(ctx, &m, &b, NULL));
    assert_non_null(strstr(ag_error(), "BigBirdModel has no loss"));
    const ag_ints *ids = recipe_batch_get(&b, "input_ids"), *mask = recipe_batch_get(&b, "attention_mask");
    ag_tensor *h = nn_bigbird_forward(ctx, &m.bigbird, ids, NULL, mask);
    assert_non_null(h);
    ag_tensor *pooled = nn_bigbird_pool(ctx, &m.bigbird, h);
    assert_non_null(pooled);
    assert_int_equal(pooled->shape[1], 16);
    assert_null(nn_bigbird_mlm_logits(ctx, &m.bigbird, h));
    /* 62 tokens pad to 64 = max_position_embeddings: fine; 65 are not */
    int32_t many[65] = {0};
    for (int i = 0; i < 65; ++i) many[i] = 5;
    ag_ints x = ag_ints_wrap(many, 2, AG_SHAPE(1, 65));
    assert_null(nn_bigbird_forward(ctx, &m.bigbird, &x, NULL, NULL));
    assert_non_null(strstr(ag_error(), "max_position_embeddings"));
    x = ag_ints_wrap(many, 2, AG_SHAPE(1, 62));
    assert_non_null(nn_bigbird_forward(ctx, &m.bigbird, &x, NULL, NULL));
    ag_ints bad_mask = ag_ints_wrap(mask->data, 2, AG_SHAPE(1, 38));
    assert_null(nn_bigbird_forward(ctx, &m.bigbird, ids, NULL, &bad_mask));
    assert_non_null(strstr(ag_error(), "attention_mask"));
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bert2bert_matches_transcription),
        cmocka_unit_test(test_bert2bert_parameter_total),
        cmocka_unit_test(test_bert2bert_bad_configs_are_refused),
        cmocka_unit_test(test_bigbird_full_matches_transcription),
        cmocka_unit_test(test_bigbird_block_sparse_matches_transcription),
        cmocka_unit_test(test_bigbird_gather_form_equals_dense_reference),
        cmocka_unit_test(test_bigbird_parameter_totals),
        cmocka_unit_test(test_training_steps_lower_the_loss),
        cmocka_unit_test(test_bigbird_bad_configs_are_refused),
        cmocka_unit_test(test_bigbird_run_time_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
