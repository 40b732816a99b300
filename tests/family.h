/* family.h: what the model-family tests share: reading reference arrays from
 * an expected.h5, building a class from a fixture folder, comparing every
 * parameter's gradient with the reference's, the 20-step AdamW trajectory of
 * the Hugging Face fixtures, and the config checks (parameter totals, init
 * spreads, bad configs refused by name). */
#ifndef TAPEGRAD_TESTS_FAMILY_H
#define TAPEGRAD_TESTS_FAMILY_H

#include <hdf5.h>

#include "harness.h"
#include "models.h"

/* A dataset read as `type` (elements of `elem` bytes) into a malloc'd array
 * (NULL when absent); its element count into *n when n is not NULL. */
void *h5_read_as(hid_t f, const char *name, hid_t type, size_t elem, int64_t *n);
/* h5_read_as for floats. */
float *h5_read_floats(hid_t f, const char *name, int64_t *n);

/* Whether the file exists (the Hugging Face fixtures under ../shared may be absent). */
bool family_file_present(const char *path);

/* Builds config's class (arch, or the config's architectures[0]) and, unless
 * weights is NULL, loads that safetensors file (tied names through the
 * family's aliases). Fails the test with the library's message. */
void family_build(recipe_model *m, const char *config, const char *arch, const char *weights);

/* Builds dir/config's class (arch, or the config's architectures[0]), loads
 * dir/weights (safetensors, tied names through the family's aliases) and
 * dir/inputs.json into *b. Fails the test with the library's message. */
void family_load(recipe_model *m, recipe_batch *b, const char *dir, const char *config, const char *arch,
                 const char *weights);

/* Compares every parameter's gradient with grads/<name> in the open file e
 * (`what` names it in messages). A tensor whose true gradient is 0 (a key
 * bias: q.b_k is added to every score of a row and softmax cancels it; the
 * unused pooler of a BERT2BERT encoder) holds float32 rounding noise, ~1e-8
 * of the model's largest gradient, on both sides, so a tensor-relative
 * tolerance would compare noise: such a tensor (reference max below 1e-6 of
 * the model's) must be zero within 1e-6 of the model's scale; every other is
 * held to 1e-4 (check_close). Returns the number of tensors that fail; *worst
 * receives the largest absolute difference. */
int family_compare_grads(const ag_params *ps, hid_t e, const char *what, double *worst);

/* Compares every parameter's gradient with grads/<name> in e, each tensor
 * within 1e-4 (check_close), with no rule for zero gradients (the Hugging Face
 * fixtures of GPT-2 and T5 need none). A missing one fails the test. Returns
 * the number of tensors that fail; *worst receives the largest absolute
 * difference. */
int family_compare_grads_plain(const ag_params *ps, hid_t e, double *worst);

/* What family_compare_grads_stats saw. */
typedef struct {
    double worst;     /* the largest |ours - reference| over the compared tensors */
    double worst_rel; /* the largest such difference over its tensor's largest |reference| (nonzero ones) */
    int zero;         /* tensors whose true gradient is 0 */
    int frozen;       /* tensors the reference has no gradient for (frozen_ok) */
} family_grad_stats;

/* Compares every parameter's gradient with grads/<name> in e as test_decoders.c
 * and test_xlm_gpt3.c judge their float64 references. A tensor whose reference
 * is at most 1e-12 of the model's largest is 0 in exact arithmetic (a key bias
 * adds q.b_k to every score of a row and softmax cancels it: CTRL's Wk.bias,
 * XLM's k_lin.bias, c_attn's key third); float64 leaves ~1e-17 of it, float32
 * ~1e-9, so ours must stay within 1e-6 of the model's largest gradient. Every
 * other tensor within 1e-4 (check_close). A parameter missing from e fails the
 * test ("<what>: no grads/<name>") unless frozen_ok: then it needs no gradient
 * (a fixed table) and ours must be exactly 0. Returns the number of failures;
 * *st receives the figures. */
int family_compare_grads_stats(const ag_params *ps, hid_t e, const char *what, bool frozen_ok,
                               family_grad_stats *st);

/* The whole check for one fixture folder: the class's loss on the batch
 * within 1e-5 relative of expected.h5's "loss", the counted tokens (when
 * want_tokens >= 0), and every gradient as family_compare_grads. Prints one
 * line: the folder, the weights file, the class, both losses, the parameter
 * and tensor counts and the largest gradient difference. */
void family_check_loss_and_grads(const char *dir, const char *config, const char *arch, const char *weights,
                                 int64_t want_tokens);

/* A loss to check in place of recipe_model_loss (a bare model has none of its
 * own); e is the fixture's open expected.h5, tokens as recipe_model_loss's. */
typedef ag_tensor *(*family_loss_fn)(ag_ctx *ctx, recipe_model *m, const recipe_batch *b, hid_t e,
                                     int64_t *tokens);

/* family_check_loss_and_grads with the loss loss_fn computes. */
void family_check_loss_and_grads_of(const char *dir, const char *config, const char *arch, const char *weights,
                                    int64_t want_tokens, family_loss_fn loss_fn);

/* Marks, in noise[0..n), the elements of parameter t whose true gradient is 0
 * by the fixture's own rule (e is its open expected.h5). */
typedef void (*family_noise_fn)(hid_t e, const ag_tensor *t, int64_t n, bool *noise);

/* The Hugging Face fixtures' train_trajectory: AdamW (lr 1e-3, betas (0.9,
 * 0.999), eps 1e-8, weight decay 0.01 on every parameter), 20 steps on batch
 * b from m's loaded weights. Each step's loss must be within 1e-4 relative of
 * train/losses in e, and every final parameter within 1e-4 (check_close) of
 * train/final_params/<name>, except the elements is_noise marks: where the
 * true gradient is 0, float32 rounding noise is all either side has, and
 * AdamW's m/sqrt(v) turns it into steps of up to lr in either direction,
 * independently on both sides; those are held to what 20 such steps can do
 * (2 * 20 * lr). A parameter with such elements prints "  <name>: <k> of <n>
 * elements <noise_what>"; the end prints the first and last loss. */
void family_check_adamw_trajectory(recipe_model *m, const recipe_batch *b, hid_t e, family_noise_fn is_noise,
                                   const char *noise_what);

/* Configs given as text. temp_config, count_params and expect_config_error
 * keep the names the family tests have always called them by. */

/* Writes text to a new temporary file and returns its path (a static buffer,
 * valid until the next call; the caller removes the file). */
const char *temp_config(const char *text);

/* Declares config text's class (arch, or architectures[0]) from a temporary
 * file, without allocating it. Fails the test with the library's message if
 * the config is refused. */
void family_declare_text(recipe_model *m, const char *config_text, const char *arch);

/* The parameter total of config_text's class (arch, or architectures[0]),
 * declared only, never allocated. Fails the test if the config is refused. */
int64_t count_params(const char *config_text, const char *arch);

/* family_declare_text (architectures[0]), then allocates the class with
 * Hugging Face's init drawn from seed. */
void family_build_text(recipe_model *m, const char *config_text, uint64_t seed);

/* Declares config text's class (architectures[0]); it must be refused with a
 * message containing needle (typically the field's quoted name). */
void expect_config_error(const char *text, const char *needle);

/* Checks the spread of one initialised parameter of ps: the sample mean within
 * 0.002 + 0.1 std of `mean`, the sample standard deviation within
 * std_rtol * std + 1e-6 of `std` (std 0: a constant, such as a zero bias or a
 * unit LayerNorm weight). Fails the test when ps has no such parameter. */
void family_check_init(const ag_params *ps, const char *name, double std, double mean, double std_rtol);

#endif
