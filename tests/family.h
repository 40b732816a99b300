/* family.h: what the model-family tests share: reading reference arrays from
 * an expected.h5, building a class from a fixture folder, and comparing every
 * parameter's gradient with the reference's. */
#ifndef TAPEGRAD_TESTS_FAMILY_H
#define TAPEGRAD_TESTS_FAMILY_H

#include <hdf5.h>

#include "harness.h"
#include "models.h"

/* A float dataset as a malloc'd array (NULL when absent); its element count
 * into *n when n is not NULL. */
float *h5_read_floats(hid_t f, const char *name, int64_t *n);

/* Builds dir/config's class (arch, or the config's architectures[0]), loads
 * dir/weights (safetensors, tied names through the family's aliases) and
 * dir/inputs.json into *b. Fails the test with the library's message. */
void family_load(recipe_model *m, recipe_batch *b, const char *dir, const char *config, const char *arch,
                 const char *weights);

/* Compares every parameter's gradient with grads/<name> in the open file e
 * (`what` names it in messages). A tensor whose true gradient is 0 (a key
 * bias: q.b_k is added to every score of a row and softmax cancels it) holds
 * float32 rounding noise, ~1e-8 of the model's largest gradient, on both
 * sides, so a tensor-relative tolerance would compare noise: such a tensor
 * (reference max below 1e-6 of the model's) must be zero within 1e-6 of the
 * model's scale; every other is held to 1e-4 (check_close). Returns the number
 * of tensors that fail; *worst receives the largest absolute difference. */
int family_compare_grads(const ag_params *ps, hid_t e, const char *what, double *worst);

/* The whole check for one fixture folder: the class's loss on the batch
 * within 1e-5 relative of expected.h5's "loss", the counted tokens (when
 * want_tokens >= 0), and every gradient as family_compare_grads. */
void family_check_loss_and_grads(const char *dir, const char *config, const char *arch, const char *weights,
                                 int64_t want_tokens);

#endif
