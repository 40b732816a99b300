/* optim.h: optimizers, parameter groups, learning-rate schedules and gradient
 * clipping over the flat blocks of an ag_params registry.
 *
 * What it is: SGD (momentum, dampening, Nesterov, L2 weight decay), Adam (L2
 * weight decay added to the gradient) and AdamW (decoupled weight decay), each
 * with the exact update order of PyTorch 1.13's `_single_tensor_*` functions,
 * so a run here follows a torch.optim run to float32 rounding. The optimizer's
 * state (SGD's momentum buffer, Adam's m and v) lives in flat blocks laid out
 * exactly like `ps->values`: parameter i's state is the slice at the same
 * offset as its values. A step is therefore a loop over flat memory.
 *
 * What it is not: a model-aware trainer. The optimizer sees parameters by
 * their Hugging Face names, never the model; it does not compute gradients,
 * decide when to step, or save files (the checkpoint module reads the state
 * through the optim_state_* accessors below).
 *
 * A training step, as the trainer writes it:
 *
 *     optim_config cfg = optim_adamw_defaults();      // betas (0.9, 0.999), eps 1e-8
 *     cfg.weight_decay = 0.1;                         // biases and norms get none
 *     optim *opt;
 *     optim_schedule sch = {OPTIM_SCHED_COSINE, 6e-4, 6e-5, 100, 5000};
 *     if (optim_create(&opt, &ps, &cfg) != AG_OK) { fprintf(stderr, "%s\n", ag_error()); ... }
 *     for (...) {
 *         ag_params_zero_grad(&ps);
 *         ... forward, ag_backward ...                // gradients in ps.grads
 *         optim_scale_grads(&ps, 1.0f / n_tokens);    // after accumulating micro-batches
 *         double norm;
 *         if (optim_clip_grad_norm(&ps, 1.0, &norm) != AG_OK) ...  // a NaN stops here
 *         optim_step(opt, optim_schedule_lr(&sch, optim_step_count(opt)));
 *     }
 *     optim_free(opt);
 *
 * Errors are values: every function that can fail returns an ag_status and
 * sets ag_error() to a message naming the parameter, field or value.
 */
#ifndef TAPEGRAD_OPTIM_H
#define TAPEGRAD_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "ag.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- configuration */

typedef enum { OPTIM_SGD = 0, OPTIM_ADAM = 1, OPTIM_ADAMW = 2 } optim_kind;

/* How the parameters are split into a decay group (group 0) and a no-decay
 * group (group 1) when the optimizer is created. */
typedef enum {
    OPTIM_DECAY_DEFAULT = 0,  /* optim_default_no_decay: biases and norm weights get no decay */
    OPTIM_DECAY_ALL = 1,      /* every parameter decays (torch.optim's default) */
    OPTIM_DECAY_PATTERNS = 2, /* no decay for a name containing any of `no_decay_patterns` */
    OPTIM_DECAY_PREDICATE = 3 /* no decay where `no_decay_fn(name, user)` is true */
} optim_decay_rule;

/* Decides whether the parameter called `name` is excluded from weight decay. */
typedef bool (*optim_no_decay_fn)(const char *name, void *user);

/* Hyper-parameters. They are doubles, as in Python, because PyTorch computes
 * its scalars (1 - beta^t, lr / bias correction, 1 - lr*wd) in double and
 * rounds each to float only where it meets a tensor; we do the same. */
typedef struct optim_config {
    optim_kind kind;
    /* SGD */
    double momentum;     /* 0: plain SGD */
    double dampening;    /* the new gradient enters the buffer with weight 1 - dampening */
    bool nesterov;       /* needs momentum > 0 and dampening = 0, as in torch */
    /* Adam, AdamW */
    double beta1, beta2; /* each in [0, 1) */
    double eps;          /* > 0, added outside the square root */
    /* all: the decay group's weight decay (>= 0); the no-decay group has 0 */
    double weight_decay;
    optim_decay_rule decay_rule;
    const char *const *no_decay_patterns; /* NULL-terminated substrings (OPTIM_DECAY_PATTERNS) */
    optim_no_decay_fn no_decay_fn;         /* OPTIM_DECAY_PREDICATE */
    void *no_decay_user;
} optim_config;

/* torch.optim's defaults for each kind: SGD without momentum; Adam and AdamW
 * with betas (0.9, 0.999) and eps 1e-8; AdamW's weight decay 0.01 (torch's),
 * the others 0. decay_rule is OPTIM_DECAY_DEFAULT. */
optim_config optim_sgd_defaults(void);
optim_config optim_adam_defaults(void);
optim_config optim_adamw_defaults(void);

/* The default no-decay rule, by Hugging Face name: true for names ending in
 * ".bias" and names containing "LayerNorm", "layernorm", "layer_norm", "ln_"
 * or "norm" (GPT-2's transformer.h.0.ln_1.weight and transformer.ln_f.weight,
 * BERT's ...attention.output.LayerNorm.weight, T5's ...layer.0.layer_norm.weight,
 * LLaMA's model.norm.weight). `user` is ignored. */
bool optim_default_no_decay(const char *name, void *user);

/* ---------------------------------------------------------------- the optimizer */

#define OPTIM_MAX_GROUPS 16

/* A parameter group: its own weight decay and a factor on the step's lr
 * (torch's per-group lr is base lr * lr_scale). */
typedef struct optim_group {
    double weight_decay;
    double lr_scale;
} optim_group;

/* A run: consecutive registry parameters in the same group, i.e. one
 * contiguous slice [offset, offset + numel) of the flat blocks. A step is one
 * fused loop per run. */
typedef struct optim_run {
    int64_t offset, numel;
    int group;
} optim_run;

/* Read the fields; change them only through the functions below. */
typedef struct optim {
    optim_config cfg;
    ag_params *ps;           /* not owned; its layout fixes the state's layout */
    int64_t step;            /* updates done so far (torch's state['step']) */
    int n_groups;
    optim_group groups[OPTIM_MAX_GROUPS];
    int *group_of;           /* [ps->n] each parameter's group */
    optim_run *runs;         /* [n_runs], rebuilt when a parameter changes group */
    int64_t n_runs;
    float *m;                /* [ps->total] SGD's momentum buffer, or Adam's exp_avg; NULL when unused */
    float *v;                /* [ps->total] Adam's exp_avg_sq; NULL for SGD */
} optim;

/* Creates an optimizer over a finalized registry (which must outlive it),
 * with group 0 = decay (cfg->weight_decay), group 1 = no decay, each
 * parameter placed by cfg->decay_rule, step count 0 and zeroed state.
 * Returns AG_OK and sets *out, or: AG_ERR_STATE when the registry is not
 * finalized; AG_ERR_ARG for a bad hyper-parameter (named in the message);
 * AG_ERR_MEMORY. */
ag_status optim_create(optim **out, ag_params *ps, const optim_config *cfg);
void optim_free(optim *o);

/* One update of every parameter with learning rate `lr` (times each group's
 * lr_scale), from the gradients in ps->grads; then the step count goes up by
 * one. Adam's bias corrections use t = step count + 1. SGD's momentum buffer
 * is set to the first step's gradient when the step count is 0 (torch's
 * "buffer is None"). Every parameter is updated, as in torch when every
 * gradient exists (zero_grad without set_to_none).
 * Returns AG_OK, or AG_ERR_ARG for a negative or non-finite lr (nothing changes). */
ag_status optim_step(optim *o, double lr);

/* Adds a group; returns its index (>= 0), or -1 with AG_ERR_ARG (negative
 * weight decay or lr scale, more than OPTIM_MAX_GROUPS groups). */
int optim_add_group(optim *o, double weight_decay, double lr_scale);
/* Changes group g's settings. Errors: AG_ERR_ARG (no such group, negative values). */
ag_status optim_set_group(optim *o, int g, double weight_decay, double lr_scale);
/* Moves the parameter called `name` into group g. Errors: AG_ERR_ARG (no such
 * parameter or group). */
ag_status optim_assign(optim *o, const char *name, int g);
/* The group of the parameter called `name`, or -1 when there is none. */
int optim_group_of(const optim *o, const char *name);

/* ---------------------------------------------------------------- state, for checkpoints */

/* The state is 0, 1 or 2 flat blocks, each [ps->total] floats laid out like
 * ps->values: SGD with momentum has "momentum"; Adam and AdamW have "m"
 * (exp_avg) and "v" (exp_avg_sq); SGD without momentum has none. A checkpoint
 * saves parameter p's slice of block k, optim_state_slice(o, k, p), under
 * /optim/<p->name>/<optim_state_name(o, k)>, and the step count beside it. */
int optim_state_count(const optim *o);
/* The name of block k ("m", "v", "momentum"), or NULL when k is out of range. */
const char *optim_state_name(const optim *o, int k);
/* Block k ([ps->total] floats), or NULL when k is out of range. */
float *optim_state_block(optim *o, int k);
/* Parameter p's slice of block k ([p->numel] floats), or NULL when k is out of
 * range or p is not a parameter of this registry. */
float *optim_state_slice(optim *o, int k, const ag_tensor *p);
/* Updates done so far. A loaded checkpoint restores it with set_step, so that
 * Adam's bias correction and SGD's first-step rule continue where they were. */
int64_t optim_step_count(const optim *o);
/* Errors: AG_ERR_ARG for a negative count. */
ag_status optim_set_step_count(optim *o, int64_t step);

/* ---------------------------------------------------------------- gradients */

/* torch.nn.utils.clip_grad_norm_ over every gradient of the registry: the
 * total L2 norm (accumulated in double) is written to *total_norm; when
 * max_norm / (norm + 1e-6) < 1 every gradient is multiplied by it.
 * Returns AG_OK; AG_ERR_ARG for max_norm <= 0 or non-finite;
 * AG_ERR_NUMERIC when the norm is NaN or infinite: the gradients are left
 * untouched, *total_norm holds the bad norm, and the message names the first
 * parameter holding a non-finite gradient, so a NaN loss never reaches the
 * weights. total_norm may be NULL. */
ag_status optim_clip_grad_norm(ag_params *ps, double max_norm, double *total_norm);
/* The total L2 norm of every gradient, accumulated in double (no clipping). */
double optim_grad_norm(const ag_params *ps);
/* Multiplies every gradient by `factor` (e.g. 1 / the target tokens of all
 * micro-batches of a step). Errors: AG_ERR_ARG for a non-finite factor. */
ag_status optim_scale_grads(ag_params *ps, float factor);

/* ---------------------------------------------------------------- learning-rate schedules */

typedef enum {
    OPTIM_SCHED_CONSTANT = 0,     /* warmup, then lr */
    OPTIM_SCHED_LINEAR = 1,       /* warmup, then straight down to min_lr at total_steps */
    OPTIM_SCHED_COSINE = 2,       /* warmup, then half a cosine down to min_lr at total_steps */
    OPTIM_SCHED_INVERSE_SQRT = 3, /* warmup, then lr * sqrt(warmup / step) */
    OPTIM_SCHED_COUNT
} optim_schedule_kind;

/* A schedule is a pure function of the step, so resuming needs only the step.
 * `step` counts the updates already made: the first update uses step 0 (as
 * Hugging Face's LambdaLR schedules do). With W = warmup_steps,
 * N = total_steps, lr_max = lr, lr_min = min_lr:
 *
 *   step < W             lr_max * step / W            (every kind; lr is 0 at step 0)
 *   constant             lr_max
 *   linear               lr_min + (lr_max - lr_min) * max(0, (N - step) / (N - W))
 *   cosine               lr_min + (lr_max - lr_min) * 0.5 * (1 + cos(pi * min(1, (step - W) / (N - W))))
 *   inverse_sqrt         lr_max * sqrt(T) / sqrt(step - W + T),  T = W, or 10000 when W = 0
 *
 * With lr_min = 0 these are Hugging Face's get_constant_schedule_with_warmup,
 * get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup
 * (num_cycles 0.5) and get_inverse_sqrt_schedule; with lr_min > 0, cosine is
 * get_cosine_with_min_lr_schedule_with_warmup(min_lr = lr_min). One
 * difference: past N our cosine stays at lr_min, where Hugging Face's climbs
 * back up the cosine. (N - W) is read as max(1, N - W), as HF does. */
typedef struct optim_schedule {
    optim_schedule_kind kind;
    double lr;             /* the peak learning rate, >= 0 */
    double min_lr;         /* the floor of linear and cosine decay, in [0, lr] */
    int64_t warmup_steps;  /* >= 0 */
    int64_t total_steps;   /* linear and cosine: where the decay reaches min_lr (>= warmup_steps, > 0) */
} optim_schedule;

/* The learning rate for the update made after `step` updates (step < 0 counts
 * as 0). Never fails; a schedule that optim_schedule_check rejects gives
 * unspecified values. */
double optim_schedule_lr(const optim_schedule *s, int64_t step);
/* Returns AG_OK, or AG_ERR_ARG naming the bad field. */
ag_status optim_schedule_check(const optim_schedule *s);
/* "constant", "linear", "cosine", "inverse_sqrt". */
const char *optim_schedule_name(optim_schedule_kind kind);
/* Parses a name above (also "constant_with_warmup", Hugging Face's name for
 * a constant schedule with warmup). Errors: AG_ERR_ARG for an unknown name,
 * listing the known ones. */
ag_status optim_schedule_kind_from_name(const char *name, optim_schedule_kind *out);

#ifdef __cplusplus
}
#endif
#endif
