/* schedule.c: learning-rate schedules as pure functions of the step.
 *
 * A schedule keeps no state: the lr of an update depends only on how many
 * updates came before it, so a resumed run needs nothing but the optimizer's
 * step count. The formulas (defined in optim.h) are Hugging Face's
 * transformers/optimization.py lambdas times the peak lr, plus a floor min_lr;
 * tests/test_optim.c checks them against a hand-computed table and against
 * those lambdas transcribed into C.
 */
#include "optim/optim.h"

#include <math.h>
#include <string.h>

static const char *const schedule_names[OPTIM_SCHED_COUNT] = {
    [OPTIM_SCHED_CONSTANT] = "constant",
    [OPTIM_SCHED_LINEAR] = "linear",
    [OPTIM_SCHED_COSINE] = "cosine",
    [OPTIM_SCHED_INVERSE_SQRT] = "inverse_sqrt",
};

const char *optim_schedule_name(optim_schedule_kind kind) {
    return kind >= 0 && kind < OPTIM_SCHED_COUNT ? schedule_names[kind] : "?";
}

ag_status optim_schedule_kind_from_name(const char *name, optim_schedule_kind *out) {
    for (int k = 0; k < OPTIM_SCHED_COUNT; ++k)
        if (strcmp(name, schedule_names[k]) == 0) {
            *out = (optim_schedule_kind)k;
            return AG_OK;
        }
    if (strcmp(name, "constant_with_warmup") == 0) {
        *out = OPTIM_SCHED_CONSTANT;
        return AG_OK;
    }
    return ag_fail(AG_ERR_ARG,
                   "lr schedule: unknown name '%s' (known: constant, constant_with_warmup, linear, cosine, "
                   "inverse_sqrt)",
                   name);
}

ag_status optim_schedule_check(const optim_schedule *s) {
    const char *k = optim_schedule_name(s->kind);
    if (s->kind < 0 || s->kind >= OPTIM_SCHED_COUNT)
        return ag_fail(AG_ERR_ARG, "lr schedule: unknown kind %d", (int)s->kind);
    if (!(s->lr >= 0) || !isfinite(s->lr))
        return ag_fail(AG_ERR_ARG, "lr schedule %s: lr = %g, must be finite and >= 0", k, s->lr);
    if (s->warmup_steps < 0)
        return ag_fail(AG_ERR_ARG, "lr schedule %s: warmup_steps = %lld, must be >= 0", k,
                       (long long)s->warmup_steps);
    if (s->kind == OPTIM_SCHED_LINEAR || s->kind == OPTIM_SCHED_COSINE) {
        if (!(s->min_lr >= 0 && s->min_lr <= s->lr))
            return ag_fail(AG_ERR_ARG, "lr schedule %s: min_lr = %g, must be in [0, lr = %g]", k, s->min_lr, s->lr);
        if (s->total_steps <= 0 || s->total_steps < s->warmup_steps)
            return ag_fail(AG_ERR_ARG, "lr schedule %s: total_steps = %lld, must be > 0 and >= warmup_steps = %lld",
                           k, (long long)s->total_steps, (long long)s->warmup_steps);
    }
    return AG_OK;
}

double optim_schedule_lr(const optim_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    int64_t W = s->warmup_steps, N = s->total_steps;
    /* warmup: a straight line from 0 at step 0 to lr at step W */
    if (step < W) return s->lr * (double)step / (double)W;

    /* the decay phases go from lr at step W to min_lr at step N */
    double span = (double)(N - W > 1 ? N - W : 1);
    switch (s->kind) {
    case OPTIM_SCHED_CONSTANT:
        return s->lr;
    case OPTIM_SCHED_LINEAR: {
        double remaining = fmax(0.0, (double)(N - step) / span); /* 1 at W, 0 at N and after */
        return s->min_lr + (s->lr - s->min_lr) * remaining;
    }
    case OPTIM_SCHED_COSINE: {
        double progress = fmin(1.0, (double)(step - W) / span); /* 0 at W, 1 at N and after */
        return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * progress));
    }
    case OPTIM_SCHED_INVERSE_SQRT: {
        /* Hugging Face's timescale: W, or 10000 when there is no warmup */
        double T = W > 0 ? (double)W : 10000.0;
        return s->lr / sqrt(((double)(step - W) + T) / T);
    }
    default:
        return 0.0;
    }
}
