/* test_optim.c: the optimizers against torch.optim, the schedules against a
 * hand-computed table and Hugging Face's formulas, clipping, groups, errors.
 *
 * The trajectories come from tests/fixtures/optim.h5, made by
 * tests/fixtures/gen_optim_fixtures.py with torch.optim in float32: five
 * parameters with GPT-2 names, the loss sum(c sin p) + 0.5 sum(d p^2) whose
 * gradient c cos p + d p both sides evaluate in float32, 50 steps per case.
 * After every step every parameter must equal PyTorch's to a relative 1e-5.
 */
#include "harness.h"
#include "optim/optim.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FIXTURE FIXTURE_DIR "/optim.h5"
#define N_PARAMS 5
#define STEPS 50

/* ================================================================ reading the fixture */

/* Reads a float dataset into a new buffer; its element count into *n and, if
 * dims is given, its shape (ndim returned through *ndim). NULL when absent. */
static float *read_floats(hid_t f, const char *path, int64_t *n, int *ndim, int64_t *dims) {
    if (H5Lexists(f, path, H5P_DEFAULT) <= 0) return NULL;
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t hd[8];
    int nd = H5Sget_simple_extent_dims(sp, hd, NULL);
    int64_t count = 1;
    for (int i = 0; i < nd; ++i) {
        count *= (int64_t)hd[i];
        if (dims) dims[i] = (int64_t)hd[i];
    }
    if (ndim) *ndim = nd;
    float *buf = malloc((size_t)count * sizeof *buf);
    H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Sclose(sp);
    H5Dclose(d);
    *n = count;
    return buf;
}

static double *read_doubles(hid_t f, const char *path, int64_t *n) {
    if (H5Lexists(f, path, H5P_DEFAULT) <= 0) return NULL;
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    *n = H5Sget_simple_extent_npoints(sp);
    double *buf = malloc((size_t)*n * sizeof *buf);
    H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Sclose(sp);
    H5Dclose(d);
    return buf;
}

static double attr_num(hid_t g, const char *name) {
    double v = 0;
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    return v;
}

/* A fixed-length string attribute into out (cap bytes). */
static void attr_str(hid_t g, const char *name, char *out, size_t cap) {
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    size_t size = H5Tget_size(t);
    char *buf = calloc(size + 1, 1);
    H5Aread(a, t, buf);
    snprintf(out, cap, "%s", buf);
    free(buf);
    H5Tclose(t);
    H5Aclose(a);
}

/* The problem shared by every case: the registry at the starting point, and
 * the loss's constants laid out like ps.values. */
typedef struct {
    ag_params ps;
    float *c, *d; /* [ps.total] */
    char names[N_PARAMS][64];
} problem;

static void problem_load(problem *pb, hid_t f) {
    /* the names, in registry order */
    hid_t ds = H5Dopen2(f, "names", H5P_DEFAULT);
    hid_t t = H5Dget_type(ds);
    size_t len = H5Tget_size(t);
    char *raw = calloc(N_PARAMS, len);
    H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
    for (int i = 0; i < N_PARAMS; ++i) snprintf(pb->names[i], 64, "%.*s", (int)len, raw + i * len);
    free(raw);
    H5Tclose(t);
    H5Dclose(ds);

    ag_params_init(&pb->ps);
    float *init[N_PARAMS];
    for (int i = 0; i < N_PARAMS; ++i) {
        char path[160];
        int64_t n = 0, dims[8] = {0};
        int nd = 0;
        snprintf(path, sizeof path, "init/%s", pb->names[i]);
        init[i] = read_floats(f, path, &n, &nd, dims);
        assert_non_null(init[i]);
        assert_non_null(ag_params_add(&pb->ps, pb->names[i], nd, dims));
    }
    assert_int_equal(ag_params_finalize(&pb->ps), AG_OK);
    pb->c = malloc((size_t)pb->ps.total * sizeof(float));
    pb->d = malloc((size_t)pb->ps.total * sizeof(float));
    for (int i = 0; i < N_PARAMS; ++i) {
        ag_tensor *p = pb->ps.p[i];
        int64_t off = p->data - pb->ps.values, n;
        char path[160];
        memcpy(p->data, init[i], (size_t)p->numel * sizeof(float));
        free(init[i]);
        snprintf(path, sizeof path, "c/%s", pb->names[i]);
        float *c = read_floats(f, path, &n, NULL, NULL);
        snprintf(path, sizeof path, "d/%s", pb->names[i]);
        float *d = read_floats(f, path, &n, NULL, NULL);
        memcpy(pb->c + off, c, (size_t)n * sizeof(float));
        memcpy(pb->d + off, d, (size_t)n * sizeof(float));
        free(c);
        free(d);
    }
}

static void problem_free(problem *pb) {
    ag_params_free(&pb->ps);
    free(pb->c);
    free(pb->d);
}

/* grad = c cos(p) + d p, in float32 as the generator computes it. */
static void compute_grads(problem *pb) {
    const float *p = pb->ps.values;
    float *g = pb->ps.grads;
    for (int64_t i = 0; i < pb->ps.total; ++i) {
        float a = pb->c[i] * cosf(p[i]);
        float b = pb->d[i] * p[i];
        g[i] = a + b;
    }
}

/* ================================================================ a case */

typedef struct {
    optim_config cfg;
    const char *patterns[8];
    char pattern_buf[128];
    char groups[16];
    double lr, no_decay_lr_scale, max_norm;
    optim_schedule sched;
} case_spec;

static void read_spec(hid_t g, case_spec *s) {
    char kind[16], sched[32];
    attr_str(g, "kind", kind, sizeof kind);
    s->cfg = strcmp(kind, "sgd") == 0 ? optim_sgd_defaults()
             : strcmp(kind, "adam") == 0 ? optim_adam_defaults()
                                          : optim_adamw_defaults();
    s->cfg.momentum = attr_num(g, "momentum");
    s->cfg.dampening = attr_num(g, "dampening");
    s->cfg.nesterov = attr_num(g, "nesterov") != 0;
    s->cfg.beta1 = attr_num(g, "beta1");
    s->cfg.beta2 = attr_num(g, "beta2");
    s->cfg.eps = attr_num(g, "eps");
    s->cfg.weight_decay = attr_num(g, "weight_decay");
    attr_str(g, "groups", s->groups, sizeof s->groups);
    if (strcmp(s->groups, "all") == 0) s->cfg.decay_rule = OPTIM_DECAY_ALL;
    else if (strcmp(s->groups, "default") == 0) s->cfg.decay_rule = OPTIM_DECAY_DEFAULT;
    else {
        /* "ln_;.bias" -> {"ln_", ".bias", NULL} */
        attr_str(g, "patterns", s->pattern_buf, sizeof s->pattern_buf);
        int n = 0;
        for (char *tok = strtok(s->pattern_buf, ";"); tok && n < 7; tok = strtok(NULL, ";")) s->patterns[n++] = tok;
        s->patterns[n] = NULL;
        s->cfg.decay_rule = OPTIM_DECAY_PATTERNS;
        s->cfg.no_decay_patterns = s->patterns;
    }
    s->lr = attr_num(g, "lr");
    s->no_decay_lr_scale = attr_num(g, "no_decay_lr_scale");
    s->max_norm = attr_num(g, "max_norm");
    attr_str(g, "schedule", sched, sizeof sched);
    assert_int_equal(optim_schedule_kind_from_name(sched, &s->sched.kind), AG_OK);
    s->sched.lr = s->lr;
    s->sched.min_lr = attr_num(g, "min_lr");
    s->sched.warmup_steps = (int64_t)attr_num(g, "warmup");
    s->sched.total_steps = (int64_t)attr_num(g, "total");
}

/* The largest relative difference of two arrays, judged against the array's
 * scale: max |a - e| / max |e|. An element near zero is thus not held to a
 * relative bound its own size cannot carry. */
static double rel_diff(const float *a, const float *e, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; ++i) {
        num = fmax(num, fabs((double)a[i] - (double)e[i]));
        den = fmax(den, fabs((double)e[i]));
    }
    return den > 0 ? num / den : num;
}

/* The largest elementwise relative difference |a - e| / |e| (entries with
 * e = 0 judged absolutely). Reported, not asserted. */
static double rel_diff_elementwise(const float *a, const float *e, int64_t n) {
    double r = 0;
    for (int64_t i = 0; i < n; ++i) {
        double d = fabs((double)a[i] - (double)e[i]), s = fabs((double)e[i]);
        r = fmax(r, s > 0 ? d / s : d);
    }
    return r;
}

#define TOL 1e-5

static void run_trajectory(void **state) {
    const char *name = *state;
    hid_t f = H5Fopen(FIXTURE, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    problem pb;
    problem_load(&pb, f);
    char gpath[128];
    snprintf(gpath, sizeof gpath, "cases/%s", name);
    hid_t g = H5Gopen2(f, gpath, H5P_DEFAULT);
    assert_true(g >= 0);
    case_spec spec;
    memset(&spec, 0, sizeof spec);
    read_spec(g, &spec);
    assert_int_equal(optim_schedule_check(&spec.sched), AG_OK);

    optim *opt = NULL;
    assert_int_equal(optim_create(&opt, &pb.ps, &spec.cfg), AG_OK);
    if (strcmp(spec.groups, "all") != 0)
        assert_int_equal(optim_set_group(opt, 1, 0.0, spec.no_decay_lr_scale), AG_OK);

    /* the expected trajectory of each parameter, [STEPS, numel] */
    float *traj[N_PARAMS];
    for (int i = 0; i < N_PARAMS; ++i) {
        char path[320];
        int64_t n;
        snprintf(path, sizeof path, "%s/traj/%s", gpath, pb.names[i]);
        traj[i] = read_floats(f, path, &n, NULL, NULL);
        assert_non_null(traj[i]);
        assert_int_equal(n, STEPS * pb.ps.p[i]->numel);
    }
    int64_t n_lr, n_norm = 0;
    char path[320];
    snprintf(path, sizeof path, "%s/lr", gpath);
    double *lrs = read_doubles(f, path, &n_lr);
    snprintf(path, sizeof path, "%s/norm", gpath);
    float *norms = read_floats(f, path, &n_norm, NULL, NULL);
    assert_int_equal(n_lr, STEPS);

    double worst = 0, worst_elem = 0, worst_norm = 0;
    int worst_step = 0;
    for (int s = 0; s < STEPS; ++s) {
        compute_grads(&pb);
        if (spec.max_norm > 0) {
            double norm;
            assert_int_equal(optim_clip_grad_norm(&pb.ps, spec.max_norm, &norm), AG_OK);
            worst_norm = fmax(worst_norm, fabs(norm - norms[s]) / norms[s]);
        }
        double lr = optim_schedule_lr(&spec.sched, optim_step_count(opt));
        assert_true(fabs(lr - lrs[s]) <= 1e-12 * spec.lr);
        assert_int_equal(optim_step(opt, lr), AG_OK);
        for (int i = 0; i < N_PARAMS; ++i) {
            const ag_tensor *p = pb.ps.p[i];
            const float *want = traj[i] + (int64_t)s * p->numel;
            double r = rel_diff(p->data, want, p->numel);
            worst_elem = fmax(worst_elem, rel_diff_elementwise(p->data, want, p->numel));
            if (r > worst) { worst = r; worst_step = s + 1; }
            /* the bound: relative 1e-5 to the tensor's scale; and elementwise,
             * |a - e| <= 1e-5 |e| + 1e-6 max|e| (a weight crossing zero passes
             * through values like 3e-8 that carry no relative precision) */
            char what[160];
            snprintf(what, sizeof what, "%s step %d %s", name, s + 1, p->name);
            if (r > TOL || !check_close(what, p->data, want, p->numel, TOL, 0.1 * TOL))
                fail_msg("%s: step %d, %s differs from torch by %.3g (relative to its largest value)", name,
                         s + 1, p->name, r);
        }
    }
    assert_int_equal(optim_step_count(opt), STEPS);
    if (spec.max_norm > 0) assert_true(worst_norm < 1e-5);

    /* the final state equals torch's exp_avg/exp_avg_sq/momentum_buffer, parameter by parameter */
    double worst_state = 0;
    for (int k = 0; k < optim_state_count(opt); ++k) {
        for (int i = 0; i < N_PARAMS; ++i) {
            int64_t n;
            snprintf(path, sizeof path, "%s/state/%s/%s", gpath, pb.names[i], optim_state_name(opt, k));
            float *want = read_floats(f, path, &n, NULL, NULL);
            assert_non_null(want);
            const float *have = optim_state_slice(opt, k, pb.ps.p[i]);
            assert_non_null(have);
            assert_int_equal(n, pb.ps.p[i]->numel);
            double r = rel_diff(have, want, n);
            worst_state = fmax(worst_state, r);
            assert_true(r < 1e-4);
            free(want);
        }
    }
    printf("  %-24s %s, %d steps: max rel diff %.2e (step %d); elementwise %.2e; final state %.2e%s\n", name,
           spec.cfg.kind == OPTIM_SGD ? "sgd" : spec.cfg.kind == OPTIM_ADAM ? "adam" : "adamw", STEPS, worst,
           worst_step, worst_elem, worst_state, spec.max_norm > 0 ? "; clip norm matches" : "");

    for (int i = 0; i < N_PARAMS; ++i) free(traj[i]);
    free(lrs);
    free(norms);
    optim_free(opt);
    H5Gclose(g);
    H5Fclose(f);
    problem_free(&pb);
}

/* ================================================================ resume */

/* Stopping after 20 steps, copying the state and step count into a fresh
 * optimizer (as a checkpoint would) and going on gives exactly the unbroken
 * run: nothing but the step count and the flat state blocks carries over. */
static void resume_matches(const char *case_name) {
    hid_t f = H5Fopen(FIXTURE, H5F_ACC_RDONLY, H5P_DEFAULT);
    char gpath[128];
    snprintf(gpath, sizeof gpath, "cases/%s", case_name);
    hid_t g = H5Gopen2(f, gpath, H5P_DEFAULT);
    case_spec spec;
    memset(&spec, 0, sizeof spec);
    read_spec(g, &spec);

    problem a, b;
    problem_load(&a, f);
    problem_load(&b, f);
    optim *oa, *ob;
    assert_int_equal(optim_create(&oa, &a.ps, &spec.cfg), AG_OK);
    assert_int_equal(optim_create(&ob, &b.ps, &spec.cfg), AG_OK);
    for (int s = 0; s < STEPS; ++s) {
        compute_grads(&a);
        if (spec.max_norm > 0) optim_clip_grad_norm(&a.ps, spec.max_norm, NULL);
        optim_step(oa, optim_schedule_lr(&spec.sched, optim_step_count(oa)));
        if (s < 20) {
            compute_grads(&b);
            if (spec.max_norm > 0) optim_clip_grad_norm(&b.ps, spec.max_norm, NULL);
            optim_step(ob, optim_schedule_lr(&spec.sched, optim_step_count(ob)));
        }
    }
    /* "checkpoint" b after 20 steps: values, state blocks and step into a fresh registry */
    problem c;
    problem_load(&c, f);
    optim *oc;
    assert_int_equal(optim_create(&oc, &c.ps, &spec.cfg), AG_OK);
    memcpy(c.ps.values, b.ps.values, (size_t)b.ps.total * sizeof(float));
    for (int k = 0; k < optim_state_count(ob); ++k)
        for (int i = 0; i < N_PARAMS; ++i) {
            const ag_tensor *p = b.ps.p[i];
            memcpy(optim_state_slice(oc, k, ag_params_find(&c.ps, p->name)), optim_state_slice(ob, k, p),
                   (size_t)p->numel * sizeof(float));
        }
    assert_int_equal(optim_set_step_count(oc, optim_step_count(ob)), AG_OK);
    while (optim_step_count(oc) < STEPS) {
        compute_grads(&c);
        if (spec.max_norm > 0) optim_clip_grad_norm(&c.ps, spec.max_norm, NULL);
        optim_step(oc, optim_schedule_lr(&spec.sched, optim_step_count(oc)));
    }
    assert_memory_equal(c.ps.values, a.ps.values, (size_t)a.ps.total * sizeof(float));
    optim_free(oa);
    optim_free(ob);
    optim_free(oc);
    problem_free(&a);
    problem_free(&b);
    problem_free(&c);
    H5Gclose(g);
    H5Fclose(f);
}

static void test_resume_is_exact(void **state) {
    resume_matches("adamw_clip_cosine");
    resume_matches("sgd_momentum"); /* the first-step momentum rule must not fire again */
    resume_matches("adam_wd");
}

/* ================================================================ groups */

static void test_default_no_decay_rule(void **state) {
    static const char *no_decay[] = {
        "transformer.h.0.ln_1.weight",  "transformer.h.0.ln_1.bias", "transformer.ln_f.weight",
        "transformer.h.0.attn.c_attn.bias", "bert.encoder.layer.0.attention.output.LayerNorm.weight",
        "bert.embeddings.LayerNorm.bias", "encoder.block.0.layer.0.layer_norm.weight",
        "encoder.final_layer_norm.weight", "gpt_neox.layers.0.input_layernorm.weight", "model.norm.weight",
        "bias",
    };
    static const char *decay[] = {
        "transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", "bert.pooler.dense.weight",
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "lm_head.weight",
        "cls.predictions.biased.weight",
    };
    for (size_t i = 0; i < sizeof no_decay / sizeof *no_decay; ++i) {
        if (!optim_default_no_decay(no_decay[i], NULL)) fail_msg("%s should get no weight decay", no_decay[i]);
    }
    for (size_t i = 0; i < sizeof decay / sizeof *decay; ++i) {
        if (optim_default_no_decay(decay[i], NULL)) fail_msg("%s should get weight decay", decay[i]);
    }
}

static bool only_embeddings(const char *name, void *user) {
    (void)user;
    return strstr(name, "wte") != NULL; /* a caller's own rule */
}

static void test_group_rules_and_runs(void **state) {
    ag_params ps;
    ag_params_init(&ps);
    const char *names[] = {"h.0.ln_1.weight", "h.0.ln_1.bias", "h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias",
                           "h.0.mlp.c_fc.weight", "wte.weight"};
    for (int i = 0; i < 6; ++i) assert_non_null(ag_params_add(&ps, names[i], 1, AG_SHAPE(4)));
    assert_int_equal(ag_params_finalize(&ps), AG_OK);

    optim_config cfg = optim_adamw_defaults();
    optim *o;
    assert_int_equal(optim_create(&o, &ps, &cfg), AG_OK);
    int want_default[] = {1, 1, 0, 1, 0, 0};
    for (int i = 0; i < 6; ++i) assert_int_equal(optim_group_of(o, names[i]), want_default[i]);
    /* runs: [ln_1.weight ln_1.bias] [c_attn.weight] [c_attn.bias] [c_fc.weight wte.weight] */
    assert_int_equal(o->n_runs, 4);
    assert_int_equal(o->runs[0].numel, 8);
    assert_int_equal(o->runs[3].offset, 16);
    assert_int_equal(o->runs[3].numel, 8);
    /* a new group with its own lr (layer-wise lr, say) for one parameter */
    int g = optim_add_group(o, 0.05, 0.1);
    assert_int_equal(g, 2);
    assert_int_equal(optim_assign(o, "wte.weight", g), AG_OK);
    assert_int_equal(o->n_runs, 5);
    assert_int_equal(optim_assign(o, "nope.weight", 0), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "nope.weight"));
    assert_int_equal(optim_assign(o, "wte.weight", 7), AG_ERR_ARG);
    assert_int_equal(optim_group_of(o, "nope"), -1);
    optim_free(o);

    cfg.decay_rule = OPTIM_DECAY_ALL;
    assert_int_equal(optim_create(&o, &ps, &cfg), AG_OK);
    for (int i = 0; i < 6; ++i) assert_int_equal(optim_group_of(o, names[i]), 0);
    assert_int_equal(o->n_runs, 1); /* one loop over everything */
    optim_free(o);

    static const char *const pats[] = {".bias", NULL};
    cfg.decay_rule = OPTIM_DECAY_PATTERNS;
    cfg.no_decay_patterns = pats;
    assert_int_equal(optim_create(&o, &ps, &cfg), AG_OK);
    int want_pat[] = {0, 1, 0, 1, 0, 0};
    for (int i = 0; i < 6; ++i) assert_int_equal(optim_group_of(o, names[i]), want_pat[i]);
    optim_free(o);

    cfg.decay_rule = OPTIM_DECAY_PREDICATE;
    cfg.no_decay_fn = only_embeddings;
    assert_int_equal(optim_create(&o, &ps, &cfg), AG_OK);
    int want_fn[] = {0, 0, 0, 0, 0, 1};
    for (int i = 0; i < 6; ++i) assert_int_equal(optim_group_of(o, names[i]), want_fn[i]);
    optim_free(o);
    ag_params_free(&ps);
}

/* ================================================================ schedules */

/* Hand-computed: lr 1, warmup 4, total 12, floor 0.1 (and 0). */
static void test_schedule_table(void **state) {
    optim_schedule lin = {OPTIM_SCHED_LINEAR, 1.0, 0.1, 4, 12};
    optim_schedule cosn = {OPTIM_SCHED_COSINE, 1.0, 0.0, 4, 12};
    optim_schedule cosf_ = {OPTIM_SCHED_COSINE, 1.0, 0.1, 4, 12};
    optim_schedule isq = {OPTIM_SCHED_INVERSE_SQRT, 1.0, 0.0, 4, 0};
    optim_schedule cst = {OPTIM_SCHED_CONSTANT, 1.0, 0.0, 4, 0};
    optim_schedule cst0 = {OPTIM_SCHED_CONSTANT, 0.5, 0.0, 0, 0};
    struct { const optim_schedule *s; int64_t step; double want; } table[] = {
        /* warmup: step/4 for every kind */
        {&lin, 0, 0.0}, {&lin, 1, 0.25}, {&lin, 3, 0.75}, {&cosn, 2, 0.5}, {&isq, 1, 0.25}, {&cst, 3, 0.75},
        /* linear: 0.1 + 0.9 (12 - s) / 8 */
        {&lin, 4, 1.0}, {&lin, 6, 0.775}, {&lin, 8, 0.55}, {&lin, 12, 0.1}, {&lin, 100, 0.1},
        /* cosine: 0.5 (1 + cos(pi (s - 4) / 8)) */
        {&cosn, 4, 1.0}, {&cosn, 6, 0.5 * (1 + 0.70710678118654752)}, {&cosn, 8, 0.5},
        {&cosn, 10, 0.5 * (1 - 0.70710678118654752)}, {&cosn, 12, 0.0}, {&cosn, 20, 0.0},
        /* with a floor: 0.1 + 0.9 * the above */
        {&cosf_, 8, 0.55}, {&cosf_, 12, 0.1}, {&cosf_, 40, 0.1},
        /* inverse sqrt: sqrt(4 / s) */
        {&isq, 4, 1.0}, {&isq, 16, 0.5}, {&isq, 100, 0.2},
        /* constant */
        {&cst, 4, 1.0}, {&cst, 1000, 1.0}, {&cst0, 0, 0.5}, {&cst0, 7, 0.5},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; ++i) {
        double got = optim_schedule_lr(table[i].s, table[i].step);
        if (fabs(got - table[i].want) > 1e-12)
            fail_msg("%s at step %lld: %.15g, want %.15g", optim_schedule_name(table[i].s->kind),
                     (long long)table[i].step, got, table[i].want);
    }
}

/* Hugging Face's lambdas, transcribed from transformers/optimization.py
 * (_get_linear_schedule_with_warmup_lr_lambda, _get_cosine_schedule_with_warmup_lr_lambda
 * with min_lr_rate, _get_inverse_sqrt_schedule_lr_lambda,
 * _get_constant_schedule_with_warmup_lr_lambda); LambdaLR multiplies by lr. */
static double hf_linear(int64_t s, int64_t W, int64_t N) {
    if (s < W) return (double)s / (double)(W > 1 ? W : 1);
    return fmax(0.0, (double)(N - s) / (double)(N - W > 1 ? N - W : 1));
}
static double hf_cosine(int64_t s, int64_t W, int64_t N, double min_lr_rate) {
    if (s < W) return (double)s / (double)(W > 1 ? W : 1);
    double progress = (double)(s - W) / (double)(N - W > 1 ? N - W : 1);
    double factor = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
    factor = factor * (1 - min_lr_rate) + min_lr_rate;
    return fmax(0, factor);
}
static double hf_inverse_sqrt(int64_t s, int64_t W) {
    double timescale = W ? (double)W : 10000.0;
    if (s < W) return (double)s / (double)(W > 1 ? W : 1);
    double shift = timescale - (double)W;
    return 1.0 / sqrt(((double)s + shift) / timescale);
}
static double hf_constant_with_warmup(int64_t s, int64_t W) {
    if (s < W) return (double)s / fmax(1.0, (double)W);
    return 1.0;
}

static void test_schedule_matches_hugging_face(void **state) {
    const double lr = 3e-4;
    const int64_t warmups[] = {0, 1, 7, 100};
    const int64_t totals[] = {1, 10, 1000};
    int checked = 0;
    for (size_t w = 0; w < 4; ++w)
        for (size_t t = 0; t < 3; ++t) {
            int64_t W = warmups[w], N = totals[t];
            if (N < W) continue;
            optim_schedule lin = {OPTIM_SCHED_LINEAR, lr, 0.0, W, N};
            optim_schedule cs = {OPTIM_SCHED_COSINE, lr, 0.0, W, N};
            optim_schedule csm = {OPTIM_SCHED_COSINE, lr, 0.1 * lr, W, N};
            optim_schedule isq = {OPTIM_SCHED_INVERSE_SQRT, lr, 0.0, W, 0};
            optim_schedule cst = {OPTIM_SCHED_CONSTANT, lr, 0.0, W, 0};
            /* up to N: past N our cosine stays at its floor, HF's rises again */
            for (int64_t s = 0; s <= N; ++s) {
                assert_true(fabs(optim_schedule_lr(&lin, s) - lr * hf_linear(s, W, N)) <= 1e-15);
                assert_true(fabs(optim_schedule_lr(&cs, s) - lr * hf_cosine(s, W, N, 0.0)) <= 1e-15);
                assert_true(fabs(optim_schedule_lr(&csm, s) - lr * hf_cosine(s, W, N, 0.1)) <= 1e-15);
                assert_true(fabs(optim_schedule_lr(&isq, s) - lr * hf_inverse_sqrt(s, W)) <= 1e-15);
                assert_true(fabs(optim_schedule_lr(&cst, s) - lr * hf_constant_with_warmup(s, W)) <= 1e-15);
                checked += 5;
            }
            assert_true(fabs(optim_schedule_lr(&lin, N + 5) - lr * hf_linear(N + 5, W, N)) <= 1e-15);
        }
    printf("  %d schedule values equal Hugging Face's formulas\n", checked);
}

static void test_schedule_errors(void **state) {
    optim_schedule_kind k;
    assert_int_equal(optim_schedule_kind_from_name("cosine", &k), AG_OK);
    assert_int_equal(k, OPTIM_SCHED_COSINE);
    assert_int_equal(optim_schedule_kind_from_name("constant_with_warmup", &k), AG_OK);
    assert_int_equal(k, OPTIM_SCHED_CONSTANT);
    assert_int_equal(optim_schedule_kind_from_name("cosine_with_restarts", &k), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "cosine_with_restarts"));
    assert_non_null(strstr(ag_error(), "inverse_sqrt")); /* lists the known names */
    for (int i = 0; i < OPTIM_SCHED_COUNT; ++i) {
        assert_int_equal(optim_schedule_kind_from_name(optim_schedule_name((optim_schedule_kind)i), &k), AG_OK);
        assert_int_equal(k, i);
    }

    optim_schedule s = {OPTIM_SCHED_COSINE, -1e-3, 0.0, 10, 100};
    assert_int_equal(optim_schedule_check(&s), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "lr = -0.001"));
    s.lr = 1e-3;
    assert_int_equal(optim_schedule_check(&s), AG_OK);
    s.total_steps = 5;
    assert_int_equal(optim_schedule_check(&s), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "total_steps"));
    s.total_steps = 100;
    s.min_lr = 2e-3;
    assert_int_equal(optim_schedule_check(&s), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "min_lr"));
    s.min_lr = 0;
    s.warmup_steps = -1;
    assert_int_equal(optim_schedule_check(&s), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "warmup_steps"));
}

/* ================================================================ bad input */

static void test_config_errors(void **state) {
    ag_params ps;
    ag_params_init(&ps);
    assert_non_null(ag_params_add(&ps, "w.weight", 1, AG_SHAPE(3)));
    optim *o = (optim *)1;
    optim_config cfg = optim_adamw_defaults();
    assert_int_equal(optim_create(&o, &ps, &cfg), AG_ERR_STATE); /* not finalized */
    assert_null(o);
    assert_non_null(strstr(ag_error(), "finalize"));
    assert_int_equal(ag_params_finalize(&ps), AG_OK);

    struct { optim_config cfg; const char *says; } bad[8];
    int n = 0;
    bad[n].cfg = optim_adamw_defaults(); bad[n].cfg.beta1 = 1.0; bad[n++].says = "beta1 = 1";
    bad[n].cfg = optim_adam_defaults(); bad[n].cfg.beta2 = -0.5; bad[n++].says = "beta2 = -0.5";
    bad[n].cfg = optim_adam_defaults(); bad[n].cfg.eps = 0; bad[n++].says = "eps = 0";
    bad[n].cfg = optim_adamw_defaults(); bad[n].cfg.weight_decay = -0.1; bad[n++].says = "weight_decay = -0.1";
    bad[n].cfg = optim_sgd_defaults(); bad[n].cfg.momentum = -0.9; bad[n++].says = "momentum = -0.9";
    bad[n].cfg = optim_sgd_defaults(); bad[n].cfg.nesterov = true; bad[n++].says = "nesterov";
    bad[n].cfg = optim_adamw_defaults(); bad[n].cfg.decay_rule = OPTIM_DECAY_PATTERNS; bad[n++].says = "no_decay_patterns";
    for (int i = 0; i < n; ++i) {
        assert_int_equal(optim_create(&o, &ps, &bad[i].cfg), AG_ERR_ARG);
        if (!strstr(ag_error(), bad[i].says)) fail_msg("message '%s' does not say '%s'", ag_error(), bad[i].says);
    }

    assert_int_equal(optim_create(&o, &ps, &cfg), AG_OK);
    assert_int_equal(optim_step(o, -1e-3), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "lr = -0.001"));
    assert_int_equal(optim_step(o, NAN), AG_ERR_ARG);
    assert_int_equal(optim_step_count(o), 0); /* a refused step counts for nothing */
    assert_int_equal(optim_set_group(o, 5, 0, 1), AG_ERR_ARG);
    assert_int_equal(optim_set_group(o, 0, 0, -1), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "lr_scale"));
    assert_int_equal(optim_set_step_count(o, -3), AG_ERR_ARG);
    optim_free(o);
    ag_params_free(&ps);
}

/* ================================================================ state accessors */

static void test_state_accessors(void **state) {
    ag_params ps;
    ag_params_init(&ps);
    ag_tensor *a = ag_params_add(&ps, "a.weight", 2, AG_SHAPE(2, 3));
    ag_tensor *b = ag_params_add(&ps, "a.bias", 1, AG_SHAPE(3));
    assert_int_equal(ag_params_finalize(&ps), AG_OK);
    optim *o;
    optim_config cfg = optim_adam_defaults();
    assert_int_equal(optim_create(&o, &ps, &cfg), AG_OK);
    assert_int_equal(optim_state_count(o), 2);
    assert_string_equal(optim_state_name(o, 0), "m");
    assert_string_equal(optim_state_name(o, 1), "v");
    assert_null(optim_state_name(o, 2));
    assert_ptr_equal(optim_state_slice(o, 0, a), optim_state_block(o, 0));
    assert_ptr_equal(optim_state_slice(o, 1, b), optim_state_block(o, 1) + 6); /* same offset as in values */
    assert_null(optim_state_slice(o, 2, a)); /* there is no third block */
    /* one Adam step from zero state: m = 0.1 g, v = 0.001 g^2, p -= lr * sign(g) (up to eps) */
    for (int i = 0; i < 9; ++i) ps.grads[i] = (float)(i - 4);
    assert_int_equal(optim_step(o, 0.5), AG_OK);
    assert_int_equal(optim_step_count(o), 1);
    for (int i = 0; i < 9; ++i) {
        assert_float_equal(o->m[i], 0.1f * (float)(i - 4), 1e-7);
        assert_float_equal(o->v[i], 0.001f * (float)((i - 4) * (i - 4)), 1e-8);
        float want = i == 4 ? 0.0f : (i < 4 ? 0.5f : -0.5f);
        assert_float_equal(ps.values[i], want, 1e-6);
    }
    optim_free(o);

    cfg = optim_sgd_defaults();
    assert_int_equal(optim_create(&o, &ps, &cfg), AG_OK);
    assert_int_equal(optim_state_count(o), 0); /* plain SGD keeps nothing */
    assert_null(optim_state_block(o, 0));
    optim_free(o);
    cfg.momentum = 0.9;
    assert_int_equal(optim_create(&o, &ps, &cfg), AG_OK);
    assert_int_equal(optim_state_count(o), 1);
    assert_string_equal(optim_state_name(o, 0), "momentum");
    optim_free(o);
    ag_params_free(&ps);
}

/* ================================================================ clipping and scaling */

static void test_clip_grad_norm(void **state) {
    ag_params ps;
    ag_params_init(&ps);
    assert_non_null(ag_params_add(&ps, "h.0.attn.c_attn.weight", 1, AG_SHAPE(1)));
    assert_non_null(ag_params_add(&ps, "h.0.attn.c_attn.bias", 1, AG_SHAPE(1)));
    assert_int_equal(ag_params_finalize(&ps), AG_OK);
    double norm;

    /* |(3, 4)| = 5: below max_norm 10 nothing changes */
    ps.grads[0] = 3;
    ps.grads[1] = 4;
    assert_int_equal(optim_clip_grad_norm(&ps, 10.0, &norm), AG_OK);
    assert_true(norm == 5.0);
    assert_true(ps.grads[0] == 3.0f && ps.grads[1] == 4.0f);
    /* max_norm 1: scaled by 1 / (5 + 1e-6) */
    assert_int_equal(optim_clip_grad_norm(&ps, 1.0, &norm), AG_OK);
    assert_true(norm == 5.0);
    assert_float_equal(ps.grads[0], (float)(3.0 / (5.0 + 1e-6)), 0);
    assert_float_equal(ps.grads[1], (float)(4.0 / (5.0 + 1e-6)), 0);
    assert_float_equal(optim_grad_norm(&ps), 1.0, 1e-6);

    /* a NaN gradient: an error naming the parameter, and nothing touched */
    ps.grads[0] = 3;
    ps.grads[1] = NAN;
    assert_int_equal(optim_clip_grad_norm(&ps, 1.0, &norm), AG_ERR_NUMERIC);
    assert_true(isnan(norm));
    assert_non_null(strstr(ag_error(), "h.0.attn.c_attn.bias[0]"));
    assert_true(ps.grads[0] == 3.0f);
    ps.grads[1] = INFINITY;
    assert_int_equal(optim_clip_grad_norm(&ps, 1.0, NULL), AG_ERR_NUMERIC);
    assert_non_null(strstr(ag_error(), "inf"));
    ps.grads[1] = 4;
    assert_int_equal(optim_clip_grad_norm(&ps, 0.0, NULL), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "max_norm"));

    /* gradient accumulation: 4 micro-batches summed, then 1/4 */
    assert_int_equal(optim_scale_grads(&ps, 0.25f), AG_OK);
    assert_true(ps.grads[0] == 0.75f && ps.grads[1] == 1.0f);
    assert_int_equal(optim_scale_grads(&ps, INFINITY), AG_ERR_ARG);
    ag_params_free(&ps);
}

/* The clipping norm over a large block (many threads, double accumulation)
 * equals a plain double sum; and the norm is far more accurate than a float sum. */
static void test_clip_large_block(void **state) {
    ag_params ps;
    ag_params_init(&ps);
    const int64_t n = 1 << 20;
    assert_non_null(ag_params_add(&ps, "big.weight", 1, AG_SHAPE(n)));
    assert_int_equal(ag_params_finalize(&ps), AG_OK);
    double want = 0;
    for (int64_t i = 0; i < n; ++i) {
        ps.grads[i] = ag_rng_uniform(7, (uint64_t)i) - 0.5f;
        want += (double)ps.grads[i] * ps.grads[i];
    }
    want = sqrt(want);
    double norm;
    assert_int_equal(optim_clip_grad_norm(&ps, 1.0, &norm), AG_OK);
    assert_true(fabs(norm - want) <= 1e-12 * want);
    assert_float_equal(optim_grad_norm(&ps), 1.0, 1e-5);
    ag_params_free(&ps);
}

/* ================================================================ speed (reported, not asserted) */

static void test_adamw_speed(void **state) {
    ag_params ps;
    ag_params_init(&ps);
    const int64_t n = 16 * 1000 * 1000; /* 16M parameters: 4 blocks of 64 MB */
    assert_non_null(ag_params_add(&ps, "big.weight", 1, AG_SHAPE(n)));
    assert_int_equal(ag_params_finalize(&ps), AG_OK);
    for (int64_t i = 0; i < n; ++i) ps.grads[i] = 1e-3f * (float)((i % 17) - 8);
    optim *o;
    optim_config cfg = optim_adamw_defaults();
    cfg.decay_rule = OPTIM_DECAY_ALL;
    assert_int_equal(optim_create(&o, &ps, &cfg), AG_OK);
    optim_step(o, 1e-3); /* touch every page once */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const int reps = 5;
    for (int r = 0; r < reps; ++r) optim_step(o, 1e-3);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6) / reps;
    printf("  AdamW step over %lld parameters: %.1f ms on %d threads (%.1f ms per 124M)\n", (long long)n, ms,
           ag_get_threads(), ms * 124e6 / (double)n);
    for (int64_t i = 0; i < n; ++i)
        if (!isfinite(ps.values[i])) fail_msg("non-finite value at %lld", (long long)i);
    optim_free(o);
    ag_params_free(&ps);
}

/* ================================================================ the list */

/* one test per fixture case, named after it */
#define TRAJ(name) {"trajectory " name, run_trajectory, NULL, NULL, (void *)(name)}

int main(void) {
    const struct CMUnitTest tests[] = {
        TRAJ("sgd_plain"),
        TRAJ("sgd_momentum"),
        TRAJ("sgd_nesterov_wd"),
        TRAJ("adam"),
        TRAJ("adam_wd"),
        TRAJ("adamw_nowd"),
        TRAJ("adamw_wd"),
        TRAJ("adamw_groups"),
        TRAJ("adamw_patterns_lr_scale"),
        TRAJ("sgd_clip_cosine"),
        TRAJ("adam_clip_cosine"),
        TRAJ("adamw_clip_cosine"),
        TRAJ("adamw_clip_linear"),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_default_no_decay_rule),
        cmocka_unit_test(test_group_rules_and_runs),
        cmocka_unit_test(test_schedule_table),
        cmocka_unit_test(test_schedule_matches_hugging_face),
        cmocka_unit_test(test_schedule_errors),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_state_accessors),
        cmocka_unit_test(test_clip_grad_norm),
        cmocka_unit_test(test_clip_large_block),
        cmocka_unit_test(test_adamw_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
