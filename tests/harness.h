/* harness.h: what the op tests share.
 *
 * An op case is one group of a fixture file tests/fixtures/ops_<family>.h5
 * (made by tests/fixtures/gen_op_fixtures.py with PyTorch in float64): the op's
 * name, its params as JSON, its float and integer inputs, d(out), and PyTorch's
 * out and input gradients. A runner (one per op, in tests/runners_<family>.c)
 * turns a case into one call of the op. The same cases feed two independent
 * checks in tests/test_ops.c: against PyTorch, and by central finite
 * differences.
 */
#ifndef TAPEGRAD_TESTS_HARNESS_H
#define TAPEGRAD_TESTS_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "ag.h"

#define CASE_MAX_IN 8

typedef struct {
    char name[64];
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    int64_t numel;
    float *data;        /* float inputs */
    int32_t *idata;     /* integer inputs */
    bool requires_grad;
    float *grad;        /* PyTorch's gradient, or NULL */
} case_array;

typedef struct {
    char name[96];
    char family[32];
    ag_op op;
    cJSON *params;
    int n_in;
    case_array in[CASE_MAX_IN];
    int n_ints;
    case_array ints[4];
    case_array out, dout;
} op_case;

/* Reads every case of every family file in dir into *cases (malloc'd array). */
int load_op_cases(const char *dir, op_case **cases);
void free_op_cases(op_case *cases, int n);

/* Param lookups with defaults. */
double case_num(const op_case *c, const char *key, double dflt);
bool case_bool(const op_case *c, const char *key, bool dflt);
/* An int list param into out (at most cap); returns the count, or -1 when absent. */
int case_ints(const op_case *c, const char *key, int *out, int cap);

/* A runner: builds the op from the case's inputs. `in` holds the float inputs
 * as leaf tensors (in the case's order; requires_grad as in the fixture), `ints`
 * the integer inputs. Returns the op's output. */
typedef ag_tensor *(*op_runner_fn)(ag_ctx *ctx, const op_case *c, ag_tensor **in, ag_ints **ints);
typedef struct {
    ag_op op;
    op_runner_fn run;
} op_runner;

/* Each family's runner table ends with {AG_OP_COUNT, NULL}. */
extern const op_runner runners_elementwise[], runners_matmul[], runners_index[], runners_norm[],
    runners_softmax[], runners_loss[], runners_activation[], runners_dropout[], runners_shape[],
    runners_reduce[], runners_attention[], runners_rope[];
op_runner_fn find_runner(ag_op op);

/* Compares n floats: |a - e| <= atol + rtol*|e|, with atol = atol_frac * max|e|
 * (a floor relative to the array's scale, so entries near zero are judged
 * against the size of the whole). On failure prints the first differing
 * values and the largest difference, and returns false. */
bool check_close(const char *what, const float *actual, const float *expected, int64_t n,
                 double rtol, double atol_frac);
#define assert_close(what, a, e, n, rtol, atol_frac) \
    assert_true(check_close((what), (a), (e), (n), (rtol), (atol_frac)))

/* Runs a case's op in ctx (reset first) on fresh leaves made from the case's
 * inputs (data may be overridden by `data[k]` when non-NULL). Returns the
 * output, and the leaves in `leaves`. */
ag_tensor *run_case(ag_ctx *ctx, const op_case *c, float *const *data, ag_tensor **leaves);

#endif
