/* test_bad_attention_rope.c: ag_attention, ag_attention_composed and ag_rope
 * refuse bad calls. Each bad call must return NULL, leave a non-OK status, name
 * the op in ag_error(), and put nothing on the tape. */
#include "harness.h"

#include <math.h>
#include <string.h>

/* Asserts that `out` is a refusal whose message names `op`. */
static void expect_refused(ag_ctx *ctx, ag_tensor *out, const char *op, const char *what) {
    if (out || ag_error_status() == AG_OK || !strstr(ag_error(), op))
        fprintf(stderr, "%s: expected a refusal naming '%s'; got %s, status %d, message \"%s\"\n", what, op,
                out ? "a tensor" : "NULL", (int)ag_error_status(), ag_error());
    assert_null(out);
    assert_int_not_equal(ag_error_status(), AG_OK);
    assert_non_null(strstr(ag_error(), op));
    assert_int_equal(ctx->n_nodes, 0);
    ag_error_clear();
}

typedef ag_tensor *(*attn_fn)(ag_ctx *, ag_tensor *, ag_tensor *, ag_tensor *, const ag_attn_opts *);

/* The same bad calls for the fused op and the composed reference: both check
 * their arguments before computing anything. */
static void bad_attention_calls(attn_fn attn, const char *op) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_ctx_train(ctx, true);
    /* B=2, NH=3, T=4, S=5, D=8 */
    ag_tensor *q = ag_new(ctx, 4, AG_SHAPE(2, 3, 4, 8), true);
    ag_tensor *k = ag_new(ctx, 4, AG_SHAPE(2, 3, 5, 8), true);
    ag_tensor *v = ag_new(ctx, 4, AG_SHAPE(2, 3, 5, 8), true);
    ag_attn_opts o = {0};

    /* a good call first, in a no-grad scope so that the tape stays empty */
    ag_no_grad_begin(ctx);
    assert_non_null(ag_attention(ctx, q, k, v, &o));
    ag_no_grad_end(ctx);

    ag_tensor *q3 = ag_new(ctx, 3, AG_SHAPE(2, 4, 8), true);
    expect_refused(ctx, attn(ctx, q3, k, v, &o), op, "q 3-D");
    ag_tensor *v_short = ag_new(ctx, 4, AG_SHAPE(2, 3, 4, 8), true);
    expect_refused(ctx, attn(ctx, q, k, v_short, &o), op, "k and v differ in S");
    ag_tensor *q_d = ag_new(ctx, 4, AG_SHAPE(2, 3, 4, 6), true);
    expect_refused(ctx, attn(ctx, q_d, k, v, &o), op, "q's D differs from k's");
    ag_tensor *q_b = ag_new(ctx, 4, AG_SHAPE(1, 3, 4, 8), true);
    expect_refused(ctx, attn(ctx, q_b, k, v, &o), op, "q's B differs from k's");
    ag_tensor *q_h = ag_new(ctx, 4, AG_SHAPE(2, 2, 4, 8), true);
    expect_refused(ctx, attn(ctx, q_h, k, v, &o), op, "q's NH differs from k's");
    ag_tensor *q_empty = ag_new(ctx, 4, AG_SHAPE(2, 3, 0, 8), true);
    expect_refused(ctx, attn(ctx, q_empty, k, v, &o), op, "T = 0");

    /* masks */
    int32_t km_data[2 * 6] = {0};
    ag_ints km_wide = ag_ints_wrap(km_data, 2, AG_SHAPE(2, 6));
    o = (ag_attn_opts){.key_mask = &km_wide};
    expect_refused(ctx, attn(ctx, q, k, v, &o), op, "key_mask [B,S+1]");
    ag_ints km_1d = ag_ints_wrap(km_data, 1, AG_SHAPE(10));
    o = (ag_attn_opts){.key_mask = &km_1d};
    expect_refused(ctx, attn(ctx, q, k, v, &o), op, "key_mask 1-D");
    ag_ints km_batch = ag_ints_wrap(km_data, 2, AG_SHAPE(1, 5));
    o = (ag_attn_opts){.key_mask = &km_batch};
    expect_refused(ctx, attn(ctx, q, k, v, &o), op, "key_mask [1,S]");
    o = (ag_attn_opts){.causal = true, .window = -1};
    expect_refused(ctx, attn(ctx, q, k, v, &o), op, "window < 0");

    /* bias that does not broadcast to [B,NH,T,S] = [2,3,4,5] */
    ag_tensor *bias_s = ag_new(ctx, 3, AG_SHAPE(3, 4, 6), true);
    o = (ag_attn_opts){.bias = bias_s};
    expect_refused(ctx, attn(ctx, q, k, v, &o), op, "bias [NH,T,S+1]");
    ag_tensor *bias_t = ag_new(ctx, 2, AG_SHAPE(5, 4), true);
    o = (ag_attn_opts){.bias = bias_t};
    expect_refused(ctx, attn(ctx, q, k, v, &o), op, "bias [S,T]");
    ag_tensor *bias_b = ag_new(ctx, 4, AG_SHAPE(3, 3, 4, 5), true);
    o = (ag_attn_opts){.bias = bias_b};
    expect_refused(ctx, attn(ctx, q, k, v, &o), op, "bias [B+1,NH,T,S]");

    /* out-of-range scalars */
    o = (ag_attn_opts){.dropout = 1.0f};
    expect_refused(ctx, attn(ctx, q, k, v, &o), op, "dropout 1");
    o = (ag_attn_opts){.dropout = -0.1f};
    expect_refused(ctx, attn(ctx, q, k, v, &o), op, "dropout < 0");
    o = (ag_attn_opts){.dropout = NAN};
    expect_refused(ctx, attn(ctx, q, k, v, &o), op, "dropout NaN");
    o = (ag_attn_opts){.scale = INFINITY};
    expect_refused(ctx, attn(ctx, q, k, v, &o), op, "scale inf");

    /* a NULL input: NULL back, with a message */
    o = (ag_attn_opts){0};
    expect_refused(ctx, attn(ctx, NULL, k, v, &o), op, "q NULL");
    ag_ctx_free(ctx);
}

static void test_attention_bad_calls(void **state) { bad_attention_calls(ag_attention, "attention"); }
static void test_attention_composed_bad_calls(void **state) {
    bad_attention_calls(ag_attention_composed, "attention_composed");
}

static void test_rope_bad_calls(void **state) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_new(ctx, 4, AG_SHAPE(2, 3, 4, 8), true);
    ag_no_grad_begin(ctx);
    assert_non_null(ag_rope(ctx, x, 8, 0, 10000.0f, false));
    ag_no_grad_end(ctx);

    ag_tensor *x3 = ag_new(ctx, 3, AG_SHAPE(2, 4, 8), true);
    expect_refused(ctx, ag_rope(ctx, x3, 8, 0, 10000.0f, false), "rope", "x 3-D");
    expect_refused(ctx, ag_rope(ctx, x, 5, 0, 10000.0f, true), "rope", "rotary_dim odd");
    expect_refused(ctx, ag_rope(ctx, x, 0, 0, 10000.0f, false), "rope", "rotary_dim 0");
    expect_refused(ctx, ag_rope(ctx, x, -2, 0, 10000.0f, false), "rope", "rotary_dim < 0");
    expect_refused(ctx, ag_rope(ctx, x, 10, 0, 10000.0f, false), "rope", "rotary_dim > D");
    expect_refused(ctx, ag_rope(ctx, x, 8, -1, 10000.0f, false), "rope", "pos_offset < 0");
    expect_refused(ctx, ag_rope(ctx, x, 8, 0, 0.0f, false), "rope", "base 0");
    expect_refused(ctx, ag_rope(ctx, x, 8, 0, -10000.0f, false), "rope", "base < 0");
    expect_refused(ctx, ag_rope(ctx, x, 8, 0, NAN, false), "rope", "base NaN");
    expect_refused(ctx, ag_rope(ctx, NULL, 8, 0, 10000.0f, false), "rope", "x NULL");
    ag_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_bad_calls),
        cmocka_unit_test(test_attention_composed_bad_calls),
        cmocka_unit_test(test_rope_bad_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
