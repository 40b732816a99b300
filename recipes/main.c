/* main.c: the `tapegrad` command line, a thin face over the library.
 *
 * Only the command line decides to exit: every library call returns a status
 * and leaves its message in ag_error(), which is printed here.
 *
 *   tapegrad example xor [--steps N] [--lr X] [--hidden H] [--seed S] [--dot FILE] [--threads N]
 *   tapegrad ops                  every op the tape can differentiate, with its derivative
 *   tapegrad version              the version, the BLAS and the thread count
 */
#include "ag.h"
#include "ckpt.h"
#include "data.h"
#include "finetune.h"
#include "generate.h"
#include "models.h"
#include "pretrain.h"
#include "recipes.h"
#include "distill.h"
#include "tokenizer.h"
#include "train_s2s.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TAPEGRAD_VERSION "0.1.0"

/* ---------------------------------------------------------------- option parsing */

/* The value after flag `name` in argv, or NULL; argv[i] and argv[i+1] are
 * marked used (set to "") so that leftovers can be reported. */
static const char *opt(int argc, char **argv, const char *name) {
    for (int i = 0; i + 1 < argc; ++i)
        if (strcmp(argv[i], name) == 0) {
            const char *v = argv[i + 1];
            argv[i] = argv[i + 1] = "";
            return v;
        }
    return NULL;
}

static int opt_int(int argc, char **argv, const char *name, int dflt, int *ok) {
    const char *v = opt(argc, argv, name);
    if (!v) return dflt;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || end == v) {
        fprintf(stderr, "tapegrad: %s wants a whole number, got '%s'\n", name, v);
        *ok = 0;
    }
    return (int)x;
}

static double opt_num(int argc, char **argv, const char *name, double dflt, int *ok) {
    const char *v = opt(argc, argv, name);
    if (!v) return dflt;
    char *end;
    double x = strtod(v, &end);
    if (*end || end == v || !isfinite(x)) {
        fprintf(stderr, "tapegrad: %s wants a number, got '%s'\n", name, v);
        *ok = 0;
    }
    return x;
}

/* Fails on any argument nobody consumed. */
static int leftovers(int argc, char **argv, int from) {
    for (int i = from; i < argc; ++i)
        if (argv[i][0]) {
            fprintf(stderr, "tapegrad: unknown argument '%s' (see 'tapegrad help')\n", argv[i]);
            return 1;
        }
    return 0;
}

/* ---------------------------------------------------------------- example: XOR */

/* A two-layer MLP learns XOR: logits = W2 tanh(W1 x + b1) + b2, trained with
 * binary cross-entropy and plain SGD. The first step's tape is printed before
 * and after backward, so the reader sees the graph the loss was built from and
 * the gradient that reached every node. */
static int example_xor(int argc, char **argv) {
    int ok = 1;
    int steps = opt_int(argc, argv, "--steps", 300, &ok);
    int hidden = opt_int(argc, argv, "--hidden", 8, &ok);
    int seed = opt_int(argc, argv, "--seed", 1, &ok);
    int threads = opt_int(argc, argv, "--threads", 0, &ok);
    double lr = opt_num(argc, argv, "--lr", 0.5, &ok);
    const char *dot = opt(argc, argv, "--dot");
    if (!ok || leftovers(argc, argv, 3)) return 2;
    if (steps < 1 || hidden < 1 || hidden > 4096 || lr <= 0) {
        fprintf(stderr, "tapegrad example xor: --steps >= 1, 1 <= --hidden <= 4096 and --lr > 0\n");
        return 2;
    }
    ag_set_threads(threads);

    static const float X[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    static const float Y[4] = {0, 1, 1, 0};

    ag_params ps;
    ag_params_init(&ps);
    ag_tensor *w1 = ag_params_add(&ps, "fc1.weight", 2, AG_SHAPE(hidden, 2));
    ag_tensor *b1 = ag_params_add(&ps, "fc1.bias", 1, AG_SHAPE(hidden));
    ag_tensor *w2 = ag_params_add(&ps, "fc2.weight", 2, AG_SHAPE(1, hidden));
    ag_tensor *b2 = ag_params_add(&ps, "fc2.bias", 1, AG_SHAPE(1));
    ag_ctx *ctx = ag_ctx_create(0);
    if (!w1 || !b1 || !w2 || !b2 || !ctx || ag_params_finalize(&ps) != AG_OK) {
        fprintf(stderr, "tapegrad: %s\n", ag_error());
        return 1;
    }
    /* torch.nn.Linear's initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    for (int64_t i = 0; i < ps.n; ++i) {
        ag_tensor *p = ps.p[i];
        double bound = 1.0 / sqrt(p == w1 || p == b1 ? 2.0 : (double)hidden);
        for (int64_t j = 0; j < p->numel; ++j)
            p->data[j] = (float)((2.0 * ag_rng_uniform((uint64_t)seed, (uint64_t)(i << 32 | j)) - 1.0) * bound);
    }

    int status = 0;
    printf("tapegrad %s: a %d-%d-1 MLP learns XOR (%d steps of SGD, lr %g)\n\n", TAPEGRAD_VERSION, 2, hidden,
           steps, lr);
    for (int step = 0; step < steps; ++step) {
        ag_tensor *x = ag_from(ctx, &X[0][0], 2, AG_SHAPE(4, 2), false);
        ag_tensor *y = ag_from(ctx, Y, 2, AG_SHAPE(4, 1), false);
        ag_tensor *h = ag_tanh(ctx, ag_linear(ctx, x, w1, b1, AG_LINEAR_OUT_IN)); /* [4,H] */
        ag_tensor *logits = ag_linear(ctx, h, w2, b2, AG_LINEAR_OUT_IN);           /* [4,1] */
        ag_tensor *loss = ag_bce_logits(ctx, logits, y);                           /* [1]   */
        if (!loss) { fprintf(stderr, "tapegrad: %s\n", ag_error()); status = 1; break; }
        if (step == 0) {
            printf("The forward pass recorded this tape:\n");
            ag_tape_print(stdout, ctx);
        }
        if (ag_backward(ctx, loss, NULL) != AG_OK) { fprintf(stderr, "tapegrad: %s\n", ag_error()); status = 1; break; }
        if (step == 0) {
            printf("\nbackward walked it from the last node to the first:\n");
            ag_tape_print(stdout, ctx);
            if (dot) {
                FILE *f = fopen(dot, "w");
                if (!f) { fprintf(stderr, "tapegrad: cannot write %s\n", dot); status = 1; break; }
                ag_tape_dot(f, ctx);
                fclose(f);
                printf("(tape written to %s: render it with 'dot -Tsvg %s -o tape.svg')\n", dot, dot);
            }
            printf("\n");
        }
        if (step % (steps / 6 > 0 ? steps / 6 : 1) == 0 || step == steps - 1)
            printf("step %4d  loss %.6f\n", step, loss->data[0]);
        /* SGD over the flat blocks: one loop for every parameter */
        for (int64_t i = 0; i < ps.total; ++i) ps.values[i] -= (float)lr * ps.grads[i];
        ag_params_zero_grad(&ps);
        ag_ctx_reset(ctx);
    }
    if (status == 0) {
        ag_no_grad_begin(ctx);
        ag_tensor *x = ag_from(ctx, &X[0][0], 2, AG_SHAPE(4, 2), false);
        ag_tensor *p = ag_sigmoid(ctx, ag_linear(ctx, ag_tanh(ctx, ag_linear(ctx, x, w1, b1, AG_LINEAR_OUT_IN)), w2,
                                                b2, AG_LINEAR_OUT_IN));
        ag_no_grad_end(ctx);
        int right = 0;
        printf("\n  x1 x2  target  p(1)\n");
        for (int i = 0; p && i < 4; ++i) {
            printf("  %2.0f %2.0f  %6.0f  %.4f\n", X[i][0], X[i][1], Y[i], p->data[i]);
            right += (p->data[i] > 0.5f) == (Y[i] > 0.5f);
        }
        printf("%d of 4 right; arena peak %zu bytes, %lld heap allocations in all\n", right,
               ag_ctx_arena_peak(ctx), (long long)ag_alloc_count());
    }
    ag_ctx_free(ctx);
    ag_params_free(&ps);
    return status;
}

/* ---------------------------------------------------------------- bench */

static int cmd_bench(int argc, char **argv) {
    int ok = 1;
    recipe_bench_opts o = {
        .vocab = opt_int(argc, argv, "--vocab", 50257, &ok),
        .positions = opt_int(argc, argv, "--positions", 1024, &ok),
        .embd = opt_int(argc, argv, "--embd", 768, &ok),
        .layers = opt_int(argc, argv, "--layers", 12, &ok),
        .heads = opt_int(argc, argv, "--heads", 12, &ok),
        .batch = opt_int(argc, argv, "--batch", 4, &ok),
        .seq = opt_int(argc, argv, "--seq", 64, &ok),
        .steps = opt_int(argc, argv, "--steps", 5, &ok),
        .warmup = opt_int(argc, argv, "--warmup", 1, &ok),
    };
    int threads = opt_int(argc, argv, "--threads", 0, &ok);
    if (!ok || leftovers(argc, argv, 2)) return 2;
    if (o.vocab < 1 || o.positions < 1 || o.embd < 1 || o.layers < 1 || o.heads < 1 || o.batch < 1 || o.seq < 2 ||
        o.steps < 1 || o.warmup < 0) {
        fprintf(stderr, "tapegrad bench: sizes must be positive (--seq >= 2)\n");
        return 2;
    }
    ag_set_threads(threads);
    recipe_bench_result r;
    if (recipe_bench_gpt2(&o, &r) != AG_OK) { fprintf(stderr, "tapegrad bench: %s\n", ag_error()); return 1; }
    printf("{\"impl\": \"tapegrad\", \"ms_per_step\": %.2f, \"tokens_per_s\": %.1f, \"peak_rss_mb\": %.1f, "
           "\"arena_mb\": %.1f, \"loss\": %.6f, \"threads\": %d}\n",
           r.ms_per_step, r.tokens_per_s, r.peak_rss_mb, r.arena_mb, r.loss, ag_get_threads());
    return 0;
}

/* ---------------------------------------------------------------- loss, params, convert */

/* `tapegrad loss`: the class's loss on a batch, in eval mode, with the
 * gradients of every parameter (how a user checks an imported model). */
static int cmd_loss(int argc, char **argv) {
    const char *config = opt(argc, argv, "--config"), *weights = opt(argc, argv, "--weights"),
               *batch_path = opt(argc, argv, "--batch"), *arch = opt(argc, argv, "--arch"),
               *grads = opt(argc, argv, "--grads");
    bool json = false;
    for (int i = 2; i < argc; ++i)
        if (strcmp(argv[i], "--json") == 0) { json = true; argv[i] = ""; }
    if (leftovers(argc, argv, 2)) return 2;
    if (!config || !weights || !batch_path) {
        fprintf(stderr, "tapegrad loss: needs --config config.json --weights model.safetensors --batch batch.json\n");
        return 2;
    }
    recipe_model m;
    recipe_batch b = {0};
    ag_ctx *ctx = NULL;
    int rc = 1;
    int64_t tokens = 0;
    if (recipe_model_declare(&m, config, arch) || recipe_model_alloc(&m, 0) ||
        ckpt_safetensors_load(weights, &m.ps, m.aliases, m.n_aliases) || recipe_batch_load(&b, batch_path))
        goto done;
    if (!(ctx = ag_ctx_create(0))) { ag_fail(AG_ERR_MEMORY, "out of memory"); goto done; }
    ag_ctx_train(ctx, false); /* eval mode: no dropout */
    ag_tensor *loss = recipe_model_loss(ctx, &m, &b, &tokens);
    if (!loss || ag_backward(ctx, loss, NULL)) goto done;
    if (grads && ckpt_save_grads(grads, &m.ps)) goto done;
    if (json) printf("{\"loss\": %.9g, \"tokens\": %lld}\n", loss->data[0], (long long)tokens);
    else printf("%s loss %.7f over %lld tokens\n", m.arch, loss->data[0], (long long)tokens);
    rc = 0;
done:
    if (rc) fprintf(stderr, "tapegrad loss: %s\n", ag_error());
    ag_ctx_free(ctx);
    recipe_batch_free(&b);
    recipe_model_free(&m);
    return rc;
}

/* `tapegrad params`: every parameter's name and shape and the total, from the
 * config alone: nothing is allocated, so it answers at once for any size. */
static int cmd_params(int argc, char **argv) {
    const char *config = opt(argc, argv, "--config"), *arch = opt(argc, argv, "--arch");
    bool json = false;
    for (int i = 2; i < argc; ++i)
        if (strcmp(argv[i], "--json") == 0) { json = true; argv[i] = ""; }
    if (leftovers(argc, argv, 2)) return 2;
    if (!config) { fprintf(stderr, "tapegrad params: needs --config config.json\n"); return 2; }
    recipe_model m;
    if (recipe_model_declare(&m, config, arch)) {
        fprintf(stderr, "tapegrad params: %s\n", ag_error());
        recipe_model_free(&m);
        return 1;
    }
    char s[64];
    if (json) printf("{\"total\": %lld, \"params\": [", (long long)m.ps.total);
    for (int64_t i = 0; i < m.ps.n; ++i) {
        const ag_tensor *t = m.ps.p[i];
        if (json) {
            printf("%s{\"name\": \"%s\", \"shape\": [", i ? ", " : "", t->name);
            for (int d = 0; d < t->ndim; ++d) printf(d ? ", %lld" : "%lld", (long long)t->shape[d]);
            printf("]}");
        } else {
            printf("%-60s %s\n", t->name, ag_shape_str(s, t->ndim, t->shape));
        }
    }
    if (json) printf("]}\n");
    else printf("%s: %lld parameters in %lld tensors\n", m.arch, (long long)m.ps.total, (long long)m.ps.n);
    recipe_model_free(&m);
    return 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* `tapegrad convert IN OUT [--config config.json] [--arch CLASS]`: safetensors
 * <-> HDF5 checkpoint, by parameter name. With a config (given, or the one an
 * HDF5 checkpoint carries) the model's registry is built first, so names and
 * shapes are checked and tied weights are stored once and re-tied on load;
 * without one, safetensors -> HDF5 copies whatever tensors the file holds. */
static int cmd_convert(int argc, char **argv) {
    const char *config = opt(argc, argv, "--config"), *arch = opt(argc, argv, "--arch");
    const char *pos[2];
    int n = 0;
    for (int i = 2; i < argc; ++i)
        if (argv[i][0]) {
            if (n == 2) { n = 3; break; }
            pos[n++] = argv[i];
        }
    if (n != 2) {
        fprintf(stderr, "usage: tapegrad convert IN OUT [--config config.json] [--arch CLASS]\n"
                        "       (IN and OUT: one .safetensors, one .h5)\n");
        return 2;
    }
    const char *in = pos[0], *out = pos[1];
    bool to_h5 = ends_with(in, ".safetensors") && ends_with(out, ".h5");
    if (!to_h5 && !(ends_with(in, ".h5") && ends_with(out, ".safetensors"))) {
        fprintf(stderr, "tapegrad convert: converts .safetensors to .h5 or .h5 to .safetensors\n");
        return 2;
    }
    recipe_model m = {0};
    ag_params_init(&m.ps);
    ckpt_state st = {0};
    int rc = 1;
    bool model = false;
    if (config) {
        if (recipe_model_declare(&m, config, arch)) goto done;
        model = true;
    } else if (!to_h5) {
        if (ckpt_read_state(in, &st)) goto done;
        if (!st.config) {
            ag_fail(AG_ERR_ARG, "convert %s: the checkpoint holds no model config; give --config config.json", in);
            goto done;
        }
        if (recipe_model_declare_text(&m, st.config, in, arch)) goto done;
        model = true;
    } else if (ckpt_safetensors_declare(in, &m.ps)) {
        goto done;
    }
    if (ag_params_finalize(&m.ps)) goto done;
    if (to_h5) {
        ckpt_state save = {.config = model ? m.cfg.text : NULL};
        if (ckpt_safetensors_load(in, &m.ps, m.aliases, m.n_aliases) || ckpt_save(out, &m.ps, &save)) goto done;
    } else if (ckpt_load_params(in, &m.ps) || ckpt_safetensors_save(out, &m.ps, m.aliases, m.n_aliases, false)) {
        goto done;
    }
    printf("wrote %s: %lld tensors, %lld parameters\n", out, (long long)m.ps.n, (long long)m.ps.total);
    rc = 0;
done:
    if (rc) fprintf(stderr, "tapegrad convert: %s\n", ag_error());
    ckpt_state_free(&st);
    recipe_model_free(&m);
    return rc;
}

/* ---------------------------------------------------------------- prepare, pretrain, generate */

/* tapegrad prepare: corpus files to compressed token shards with document and
 * sentence boundaries, a held-out split and a manifest (data.h). */
static int cmd_prepare(int argc, char **argv) {
    int ok = 1;
    const char *out = opt(argc, argv, "--out");
    double val = opt_num(argc, argv, "--val", 0.05, &ok);
    double shard_tokens = opt_num(argc, argv, "--shard-tokens", 0, &ok);
    const char *tok = opt(argc, argv, "--tokenizer");
    bool blocks = false, quiet = false;
    for (int i = 2; i < argc; ++i) {
        if (strcmp(argv[i], "--docs-by-blank-lines") == 0) blocks = true, argv[i] = "";
        else if (strcmp(argv[i], "--quiet") == 0) quiet = true, argv[i] = "";
    }
    if (!ok) return 2;
    /* every remaining argument after --input is an input file */
    const char *inputs[4096];
    int n = 0;
    bool after_input = false;
    for (int i = 2; i < argc; ++i) {
        if (!argv[i][0]) continue;
        if (strcmp(argv[i], "--input") == 0) { after_input = true; continue; }
        if (!after_input || n == 4096) { fprintf(stderr, "tapegrad prepare: unexpected '%s'\n", argv[i]); return 2; }
        inputs[n++] = argv[i];
    }
    if (!out || n == 0) {
        fprintf(stderr, "usage: tapegrad prepare [--tokenizer PATH|bytes] --out DIR [--val 0.05] [--shard-tokens N] "
                        "[--docs-by-blank-lines] [--quiet] --input FILE...\n");
        return 2;
    }
    data_prepare_opts o = {.tokenizer = tok ? tok : "bytes", .inputs = inputs, .n_inputs = n, .out_dir = out,
                           .val_fraction = val, .shard_tokens = (int64_t)shard_tokens,
                           .docs = blocks ? DATA_DOCS_BLANK_LINE : DATA_DOCS_PER_FILE, .progress = !quiet};
    data_prepare_stats s;
    if (data_prepare(&o, &s)) {
        fprintf(stderr, "tapegrad %s\n", ag_error()); /* the message begins "prepare: " */
        return 1;
    }
    printf("prepared %d file%s (%.1f MB in %.1f s, %.1f MB/s) with %s: train %lld tokens, %lld documents, "
           "%lld sentences, %lld shards; val %lld tokens, %lld documents; %.1f MB on disk in %s/\n",
           n, n == 1 ? "" : "s", (double)s.bytes / 1e6, s.seconds, s.seconds > 0 ? (double)s.bytes / 1e6 / s.seconds : 0,
           o.tokenizer, (long long)s.tokens[0], (long long)s.docs[0], (long long)s.sents[0], (long long)s.shards[0],
           (long long)s.tokens[1], (long long)s.docs[1], (double)s.file_bytes / 1e6, out);
    if (s.invalid_utf8)
        fprintf(stderr, "tapegrad prepare: %lld invalid UTF-8 bytes were replaced by U+FFFD\n", (long long)s.invalid_utf8);
    if (val > 0 && s.docs[1] == 0)
        fprintf(stderr, "tapegrad prepare: warning: --val %g held out no document of %lld; give more documents "
                        "(or --docs-by-blank-lines)\n", val, (long long)s.docs[0]);
    return 0;
}

static int cmd_pretrain(int argc, char **argv) {
    int ok = 1;
    const char *recipe = opt(argc, argv, "--recipe");
    recipe_train_opts o = {
        .config_path = opt(argc, argv, "--config"),
        .data_dir = opt(argc, argv, "--data"),
        .out_dir = opt(argc, argv, "--out"),
        .steps = opt_int(argc, argv, "--steps", 1000, &ok),
        .batch = opt_int(argc, argv, "--batch", 16, &ok),
        .seq = opt_int(argc, argv, "--seq", 128, &ok),
        .grad_accum = opt_int(argc, argv, "--grad-accum", 1, &ok),
        .lr = opt_num(argc, argv, "--lr", 1e-3, &ok),
        .min_lr = opt_num(argc, argv, "--min-lr", 1e-4, &ok),
        .weight_decay = opt_num(argc, argv, "--weight-decay", 0.1, &ok),
        .clip = opt_num(argc, argv, "--clip", 1.0, &ok),
        .warmup = opt_int(argc, argv, "--warmup", 50, &ok),
        .schedule = opt(argc, argv, "--schedule"),
        .log_every = opt_int(argc, argv, "--log-every", 10, &ok),
        .eval_every = opt_int(argc, argv, "--eval-every", 100, &ok),
        .eval_batches = opt_int(argc, argv, "--eval-batches", 8, &ok),
        .save_every = opt_int(argc, argv, "--save-every", 500, &ok),
        .seed = (uint64_t)opt_int(argc, argv, "--seed", 1337, &ok),
        .max_seconds = opt_num(argc, argv, "--minutes", 0, &ok) * 60,
        .stop_at = opt_int(argc, argv, "--stop-at", 0, &ok),
    };
    int threads = opt_int(argc, argv, "--threads", 0, &ok);
    const char *gen_config = opt(argc, argv, "--generator-config"), *tgt_data = opt(argc, argv, "--tgt-data");
    const char *masking = opt(argc, argv, "--masking");
    const int max_ngram = opt_int(argc, argv, "--max-ngram", 0, &ok);
    for (int i = 2; i < argc; ++i)
        if (strcmp(argv[i], "--resume") == 0) { o.resume = true; argv[i] = ""; }
    if (!ok || leftovers(argc, argv, 2)) return 2;
    if (!o.schedule) o.schedule = "cosine";
    /* every recipe but clm: the collators' trainer (pretrain.h) */
    if (recipe && strcmp(recipe, "clm") != 0) {
        recipe_objective obj;
        if (recipe_objective_from_name(recipe, &obj)) { fprintf(stderr, "tapegrad %s\n", ag_error()); return 2; }
        if (!o.config_path || !o.data_dir || !o.out_dir || o.log_every < 1 ||
            o.eval_batches < 1) {
            fprintf(stderr, "usage: tapegrad pretrain --recipe %s --config model.json --data DIR --out RUN "
                            "[--generator-config gen.json (electra)] [--tgt-data DIR (tlm)] [options]\n", recipe);
            return 2;
        }
        ag_set_threads(threads);
        recipe_pretrain_opts po = {.train = o, .recipe = recipe, .generator_config = gen_config, .tgt_data_dir = tgt_data,
                                   .masking = masking, .max_ngram = max_ngram};
        if (recipe_pretrain(&po)) { fprintf(stderr, "tapegrad pretrain: %s\n", ag_error()); return 1; }
        return 0;
    }
    if (!recipe) {
        fprintf(stderr, "tapegrad pretrain: --recipe mlm|nsp|sop|electra|clm|span|denoise|tlm|ctrl is needed\n");
        return 2;
    }
    if (!o.config_path || !o.data_dir || !o.out_dir) {
        fprintf(stderr, "usage: tapegrad pretrain --recipe clm --config model.json --data DIR --out RUN [options]\n");
        return 2;
    }
    if (o.log_every < 1 || o.eval_batches < 1) {
        fprintf(stderr, "tapegrad pretrain: --log-every and --eval-batches must be >= 1\n");
        return 2;
    }
    ag_set_threads(threads);
    if (recipe_train_clm(&o)) { fprintf(stderr, "tapegrad pretrain: %s\n", ag_error()); return 1; }
    return 0;
}

/* `tapegrad distill`: DistilBERT's triple loss (or causal-LM distillation for
 * GPT-2) from a teacher checkpoint into a student config; without --teacher,
 * the student's own MLM/CLM loss alone (how the teacher is trained). */
static int cmd_distill(int argc, char **argv) {
    int ok = 1;
    recipe_distill_opts o = {
        .student_config = opt(argc, argv, "--student"),
        .teacher = opt(argc, argv, "--teacher"),
        .data_dir = opt(argc, argv, "--data"),
        .tokenizer = opt(argc, argv, "--tokenizer"),
        .out_dir = opt(argc, argv, "--out"),
        .init_from_teacher = true,
        .mlm_smoothing = (float)opt_num(argc, argv, "--mlm-smoothing", 0.7, &ok),
        .steps = opt_int(argc, argv, "--steps", 1000, &ok),
        .batch = opt_int(argc, argv, "--batch", 16, &ok),
        .seq = opt_int(argc, argv, "--seq", 128, &ok),
        .warmup = opt_int(argc, argv, "--warmup", 50, &ok),
        .log_every = opt_int(argc, argv, "--log-every", 10, &ok),
        .eval_every = opt_int(argc, argv, "--eval-every", 100, &ok),
        .eval_batches = opt_int(argc, argv, "--eval-batches", 8, &ok),
        .lr = opt_num(argc, argv, "--lr", 5e-4, &ok),
        .weight_decay = opt_num(argc, argv, "--weight-decay", 0.0, &ok),
        .clip = opt_num(argc, argv, "--clip", 5.0, &ok),
        .max_seconds = opt_num(argc, argv, "--minutes", 0, &ok) * 60,
        .seed = (uint64_t)opt_int(argc, argv, "--seed", 56, &ok),
    };
    const char *objective = opt(argc, argv, "--objective");
    bool clm = objective && strcmp(objective, "clm") == 0;
    if (objective && !clm && strcmp(objective, "mlm") != 0) {
        fprintf(stderr, "tapegrad distill: --objective is mlm or clm\n");
        return 2;
    }
    o.w = clm ? recipe_distill_clm_defaults() : recipe_distill_mlm_defaults();
    o.w.temperature = (float)opt_num(argc, argv, "--temperature", o.w.temperature, &ok);
    o.w.alpha_ce = (float)opt_num(argc, argv, "--alpha-ce", o.w.alpha_ce, &ok);
    o.w.alpha_mlm = (float)opt_num(argc, argv, "--alpha-mlm", o.w.alpha_mlm, &ok);
    o.w.alpha_clm = (float)opt_num(argc, argv, "--alpha-clm", o.w.alpha_clm, &ok);
    o.w.alpha_cos = (float)opt_num(argc, argv, "--alpha-cos", o.w.alpha_cos, &ok);
    int threads = opt_int(argc, argv, "--threads", 0, &ok);
    for (int i = 2; i < argc; ++i) {
        if (strcmp(argv[i], "--random-init") == 0) { o.init_from_teacher = false; argv[i] = ""; }
        else if (strcmp(argv[i], "--restrict-ce-to-mask") == 0) { o.w.restrict_ce_to_mask = true; argv[i] = ""; }
        else if (strcmp(argv[i], "--uniform-masking") == 0) { o.uniform_masking = true; argv[i] = ""; }
    }
    if (!ok || leftovers(argc, argv, 2)) return 2;
    if (!o.student_config || !o.data_dir || !o.out_dir) {
        fprintf(stderr, "usage: tapegrad distill --student config.json [--teacher RUN/ckpt.h5] --data DIR "
                        "--tokenizer tok.json --out RUN [options]\n");
        return 2;
    }
    ag_set_threads(threads);
    if (recipe_distill_train(&o)) { fprintf(stderr, "tapegrad distill: %s\n", ag_error()); return 1; }
    return 0;
}

/* `tapegrad generate`: decoding options as Hugging Face's generate() names
 * them; --bench times the same generation with and without the cache. */
static int cmd_generate(int argc, char **argv) {
    int ok = 1;
    recipe_generate_opts o = {
        .checkpoint = opt(argc, argv, "--checkpoint"),
        .config_path = opt(argc, argv, "--config"),
        .prompt = opt(argc, argv, "--prompt"),
        .gen = recipe_gen_defaults(),
    };
    recipe_gen_config *g = &o.gen;
    g->max_new_tokens = opt_int(argc, argv, "--max-new", 200, &ok);
    g->temperature = (float)opt_num(argc, argv, "--temperature", 0.8, &ok);
    g->top_k = opt_int(argc, argv, "--top-k", 0, &ok);
    g->top_p = (float)opt_num(argc, argv, "--top-p", 1.0, &ok);
    g->repetition_penalty = (float)opt_num(argc, argv, "--repetition-penalty", 1.0, &ok);
    g->seed = (uint64_t)opt_int(argc, argv, "--seed", 0, &ok);
    g->num_beams = opt_int(argc, argv, "--num-beams", 1, &ok);
    g->length_penalty = (float)opt_num(argc, argv, "--length-penalty", 1.0, &ok);
    g->eos_token_id = opt_int(argc, argv, "--eos", -2, &ok); /* -2: the config's; -1: none */
    g->forced_bos_token_id = opt_int(argc, argv, "--forced-bos", -1, &ok);
    const char *early = opt(argc, argv, "--early-stopping");
    int threads = opt_int(argc, argv, "--threads", 0, &ok);
    bool greedy = false;
    for (int i = 2; i < argc; ++i) {
        if (strcmp(argv[i], "--greedy") == 0) { greedy = true; argv[i] = ""; }
        else if (strcmp(argv[i], "--no-cache") == 0) { g->use_cache = false; argv[i] = ""; }
        else if (strcmp(argv[i], "--bench") == 0) { o.bench = true; argv[i] = ""; }
    }
    if (!ok || leftovers(argc, argv, 2)) return 2;
    if (!o.checkpoint && !o.config_path) {
        fprintf(stderr, "usage: tapegrad generate --checkpoint RUN [--prompt TEXT] [options]\n"
                        "       tapegrad generate --bench --config model.json [--max-new 256] [options]\n");
        return 2;
    }
    /* sampling unless --greedy or beam search, as before */
    g->do_sample = !greedy && g->num_beams == 1;
    if (early) {
        if (strcmp(early, "true") == 0) g->early_stopping = RECIPE_EARLY_STOP_TRUE;
        else if (strcmp(early, "false") == 0) g->early_stopping = RECIPE_EARLY_STOP_FALSE;
        else if (strcmp(early, "never") == 0) g->early_stopping = RECIPE_EARLY_STOP_NEVER;
        else { fprintf(stderr, "tapegrad generate: --early-stopping is true, false or never\n"); return 2; }
    }
    if (g->max_new_tokens < 0 || g->temperature <= 0 || g->top_k < 0 || g->top_p <= 0 || g->top_p > 1 ||
        g->num_beams < 1 || g->repetition_penalty <= 0) {
        fprintf(stderr, "tapegrad generate: --max-new >= 0, --temperature > 0, --top-k >= 0, 0 < --top-p <= 1, "
                        "--num-beams >= 1, --repetition-penalty > 0\n");
        return 2;
    }
    ag_set_threads(threads);
    if (recipe_generate(&o, stdout)) { fprintf(stderr, "tapegrad generate: %s\n", ag_error()); return 1; }
    return 0;
}

static int cmd_plot(int argc, char **argv) {
    const char *out = opt(argc, argv, "--out");
    const char *run = NULL;
    for (int i = 2; i < argc; ++i)
        if (argv[i][0]) {
            if (run) { fprintf(stderr, "tapegrad plot: one run folder, got '%s' too\n", argv[i]); return 2; }
            run = argv[i];
        }
    if (!run) { fprintf(stderr, "usage: tapegrad plot RUN [--out loss.svg]\n"); return 2; }
    char path[1024];
    if (!out) { snprintf(path, sizeof path, "%s/loss.svg", run); out = path; }
    if (recipe_plot(run, out)) { fprintf(stderr, "tapegrad plot: %s\n", ag_error()); return 1; }
    printf("wrote %s\n", out);
    return 0;
}

/* ---------------------------------------------------------------- finetune */

/* `tapegrad finetune --task classify`: a classifier on TSV files (finetune.h). */
static int cmd_finetune(int argc, char **argv) {
    int ok = 1;
    recipe_finetune_opts o = recipe_finetune_defaults();
    const char *task = opt(argc, argv, "--task"), *model = opt(argc, argv, "--model"),
               *metric = opt(argc, argv, "--metric");
    o.init = opt(argc, argv, "--init");
    o.train_path = opt(argc, argv, "--train");
    o.eval_path = opt(argc, argv, "--eval");
    o.test_path = opt(argc, argv, "--test");
    o.out_dir = opt(argc, argv, "--out");
    bool bow = model && strcmp(model, "bow") == 0;
    for (int i = 2; i < argc; ++i) {
        if (strcmp(argv[i], "--freeze-all-but-head") == 0) { o.freeze_all_but_head = true; argv[i] = ""; }
        else if (strcmp(argv[i], "--baseline") == 0) { bow = true; argv[i] = ""; }
        else if (strcmp(argv[i], "--quiet") == 0) { o.quiet = true; argv[i] = ""; }
        else if (strcmp(argv[i], "--pool-mean") == 0) { o.pool_mean = true; argv[i] = ""; }
    }
    o.bow = bow;
    o.epochs = opt_int(argc, argv, "--epochs", o.epochs, &ok);
    o.batch = opt_int(argc, argv, "--batch", o.batch, &ok);
    o.seq = opt_int(argc, argv, "--seq", o.seq, &ok);
    o.lr = opt_num(argc, argv, "--lr", bow ? 1e-2 : o.lr, &ok);
    o.weight_decay = opt_num(argc, argv, "--weight-decay", o.weight_decay, &ok);
    o.warmup = opt_num(argc, argv, "--warmup", o.warmup, &ok);
    o.dropout = opt_num(argc, argv, "--dropout", o.dropout, &ok);
    o.freeze = opt_int(argc, argv, "--freeze", 0, &ok);
    o.num_labels = opt_int(argc, argv, "--num-labels", 0, &ok);
    o.bow_max_features = opt_int(argc, argv, "--features", o.bow_max_features, &ok);
    o.seed = (uint64_t)opt_int(argc, argv, "--seed", (int)o.seed, &ok);
    o.max_train_steps = opt_int(argc, argv, "--max-steps", 0, &ok);
    int threads = opt_int(argc, argv, "--threads", 0, &ok);
    if (!ok || leftovers(argc, argv, 2)) return 2;
    if (!task || strcmp(task, "classify") != 0 || (model && !bow) || !o.train_path || !o.eval_path || !o.out_dir ||
        (!bow && !o.init)) {
        fprintf(stderr, "usage: tapegrad finetune --task classify --init RUN_OR_HF_DIR --train train.tsv --eval dev.tsv\n"
                        "         [--test test.tsv] --out RUN [--pool-mean] [--freeze N | --freeze-all-but-head] [--epochs --batch --lr --seq --warmup\n"
                        "         --weight-decay --dropout --metric accuracy|f1|mcc --num-labels --seed --threads]\n"
                        "       tapegrad finetune --task classify --model bow --train ... --eval ... --out RUN [--features N]\n");
        return 2;
    }
    if (metric && recipe_metric_from_name(metric, &o.metric)) { fprintf(stderr, "tapegrad finetune: %s\n", ag_error()); return 2; }
    ag_set_threads(threads);
    recipe_finetune_result r;
    if (recipe_finetune(&o, &r)) { fprintf(stderr, "tapegrad finetune: %s\n", ag_error()); return 1; }
    printf("best epoch %d: accuracy %.4f  F1 %.4f  MCC %.4f on %lld held-out examples; saved %s/ckpt.h5\n", r.best_epoch,
           r.best.accuracy, r.best.f1, r.best.mcc, (long long)r.best.n, o.out_dir);
    if (r.has_test)
        printf("test: accuracy %.4f  F1 %.4f  MCC %.4f on %lld examples (%s)\n", r.test.accuracy, r.test.f1, r.test.mcc,
               (long long)r.test.n, o.test_path);
    return 0;
}

/* ---------------------------------------------------------------- other commands */

static int cmd_ops(void) {
    printf("%d ops the tape can differentiate:\n", AG_OP_COUNT);
    for (int i = 0; i < AG_OP_COUNT; ++i)
        printf("  %-17s %d  %s\n", ag_op_name((ag_op)i), ag_op_arity((ag_op)i), ag_op_derivative((ag_op)i));
    return 0;
}

static int cmd_version(void) {
    ag_set_threads(0);
    printf("tapegrad %s\nBLAS: %s\nthreads: %d\n", TAPEGRAD_VERSION, ag_blas_info(), ag_get_threads());
    return 0;
}

/* ---------------------------------------------------------------- tokenizer */

/* tapegrad tokenizer train|encode|decode: see usage(). encode prints each
 * input line's ids (the line without its newline, no [CLS]/[SEP]) on one
 * output line; decode reads such lines back to text. */
static int cmd_tokenizer(int argc, char **argv) {
    const char *sub = argc >= 3 ? argv[2] : "";
    int ok = 1;
    if (strcmp(sub, "train") == 0) {
        argv[2] = "";
        const char *type = opt(argc, argv, "--type");
        const char *out = opt(argc, argv, "--out");
        int vocab = opt_int(argc, argv, "--vocab-size", 0, &ok);
        int min_freq = opt_int(argc, argv, "--min-frequency", 0, &ok);
        bool cased = false;
        for (int i = 3; i < argc; ++i)
            if (strcmp(argv[i], "--cased") == 0) { cased = true; argv[i] = ""; }
        /* every remaining argument after --input is an input file */
        const char *inputs[4096];
        int n = 0;
        bool after_input = false;
        for (int i = 3; i < argc && ok; ++i) {
            if (!argv[i][0]) continue;
            if (strcmp(argv[i], "--input") == 0) { after_input = true; continue; }
            if (!after_input || n == 4096) { fprintf(stderr, "tapegrad tokenizer train: unexpected '%s'\n", argv[i]); return 2; }
            inputs[n++] = argv[i];
        }
        if (!ok) return 2;
        if (!type || !out || vocab <= 0 || n == 0 ||
            (strcmp(type, "wordpiece") && strcmp(type, "bpe") && strcmp(type, "unigram"))) {
            fprintf(stderr, "usage: tapegrad tokenizer train --type wordpiece|bpe|unigram --vocab-size N "
                            "--out tok.json|spm.model [--cased] [--min-frequency F] --input FILE...\n");
            return 2;
        }
        if (strcmp(type, "unigram") == 0) { /* SentencePiece's recipe; a .model or a tokenizer.json out */
            data_unigram_train_opts uo = data_unigram_train_defaults(vocab);
            data_unigram *u = NULL;
            data_tokenizer t = {0};
            snprintf(t.source, sizeof t.source, "%s", out);
            ag_status st = data_unigram_train(&u, inputs, n, &uo);
            if (!st && ends_with(out, ".model")) st = data_unigram_save(u, out), data_unigram_free(u);
            else if (!st && !(st = data_tokenizer_attach_unigram(&t, u, false))) st = data_tokenizer_save(&t, out);
            if (st) { fprintf(stderr, "tapegrad tokenizer train: %s\n", ag_error()); data_tokenizer_free(&t); return 1; }
            printf("wrote %s: unigram, %d pieces\n", out, vocab);
            data_tokenizer_free(&t);
            return 0;
        }
        data_train_opts o = {.kind = strcmp(type, "bpe") == 0 ? DATA_TOK_BPE : DATA_TOK_WORDPIECE,
                             .vocab_size = vocab, .min_frequency = min_freq, .lowercase = !cased};
        data_tokenizer t;
        if (data_tokenizer_train(&t, inputs, n, o) || data_tokenizer_save(&t, out)) {
            fprintf(stderr, "tapegrad tokenizer train: %s\n", ag_error());
            return 1;
        }
        printf("wrote %s: %s, %d tokens\n", out, type, t.n_tokens);
        data_tokenizer_free(&t);
        return 0;
    }
    if (strcmp(sub, "encode") == 0 || strcmp(sub, "decode") == 0) {
        bool enc = sub[0] == 'e';
        argv[2] = "";
        const char *path = opt(argc, argv, "--tokenizer");
        const char *input = opt(argc, argv, "--input");
        if (leftovers(argc, argv, 3)) return 2;
        if (!path || !input) {
            fprintf(stderr, "usage: tapegrad tokenizer %s --tokenizer PATH --input FILE\n", sub);
            return 2;
        }
        data_tokenizer t;
        if (data_tokenizer_load(&t, path)) { fprintf(stderr, "tapegrad tokenizer: %s\n", ag_error()); return 1; }
        FILE *f = strcmp(input, "-") == 0 ? stdin : fopen(input, "rb");
        if (!f) {
            fprintf(stderr, "tapegrad tokenizer %s: cannot open %s\n", sub, input);
            data_tokenizer_free(&t);
            return 1;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t k;
        data_encoding e = {0};
        int32_t *ids = NULL;
        size_t ids_cap = 0;
        int64_t n_invalid = 0;
        int rc = 0;
        while (rc == 0 && (k = getline(&line, &cap, f)) >= 0) {
            if (k > 0 && line[k - 1] == '\n') line[--k] = 0;
            if (enc) {
                data_encoding_reset(&e);
                if (data_tokenizer_encode(&t, line, (size_t)k, 0, &e)) { rc = 1; break; }
                n_invalid += e.n_invalid;
                for (int64_t i = 0; i < e.n; ++i) printf(i ? " %d" : "%d", e.ids[i]);
                putchar('\n');
            } else {
                size_t n = 0;
                for (char *p = line, *end; *p; p = end) {
                    long v = strtol(p, &end, 10);
                    if (end == p) { if (*p == ' ' || *p == '\t' || *p == '\r') { end = p + 1; continue; } rc = 2; break; }
                    if (n == ids_cap) {
                        ids_cap = ids_cap ? 2 * ids_cap : 256;
                        int32_t *g = realloc(ids, ids_cap * sizeof *g);
                        if (!g) { rc = 1; break; }
                        ids = g;
                    }
                    ids[n++] = (int32_t)v;
                }
                if (rc == 2) { fprintf(stderr, "tapegrad tokenizer decode: %s: not a line of ids\n", input); break; }
                char *text;
                if (data_tokenizer_decode(&t, ids, (int64_t)n, false, &text)) { rc = 1; break; }
                puts(text);
                free(text);
            }
        }
        if (rc == 1) fprintf(stderr, "tapegrad tokenizer %s: %s\n", sub, ag_error());
        if (n_invalid) fprintf(stderr, "tapegrad tokenizer encode: %lld invalid UTF-8 bytes replaced by U+FFFD\n", (long long)n_invalid);
        free(line), free(ids);
        data_encoding_free(&e);
        if (f != stdin) fclose(f);
        data_tokenizer_free(&t);
        return rc;
    }
    fprintf(stderr, "usage: tapegrad tokenizer train|encode|decode ... (see 'tapegrad help')\n");
    return 2;
}

/* ---------------------------------------------------------------- seq2seq: train-s2s, translate */

static int cmd_train_s2s(int argc, char **argv) {
    int ok = 1;
    recipe_s2s_opts o = recipe_s2s_defaults();
    o.config_path = opt(argc, argv, "--config");
    o.data_path = opt(argc, argv, "--data");
    o.out_dir = opt(argc, argv, "--out");
    const char *schedule = opt(argc, argv, "--schedule");
    if (schedule) o.schedule = schedule;
    o.vocab_size = opt_int(argc, argv, "--vocab", o.vocab_size, &ok);
    o.max_src = opt_int(argc, argv, "--max-src", o.max_src, &ok);
    o.max_tgt = opt_int(argc, argv, "--max-tgt", o.max_tgt, &ok);
    o.val_fraction = opt_num(argc, argv, "--val-fraction", o.val_fraction, &ok);
    o.max_val = opt_int(argc, argv, "--max-val", o.max_val, &ok);
    o.steps = opt_int(argc, argv, "--steps", o.steps, &ok);
    o.batch = opt_int(argc, argv, "--batch", o.batch, &ok);
    o.lr = opt_num(argc, argv, "--lr", o.lr, &ok);
    o.min_lr = opt_num(argc, argv, "--min-lr", o.min_lr, &ok);
    o.weight_decay = opt_num(argc, argv, "--weight-decay", o.weight_decay, &ok);
    o.clip = opt_num(argc, argv, "--clip", o.clip, &ok);
    o.warmup = opt_int(argc, argv, "--warmup", o.warmup, &ok);
    o.log_every = opt_int(argc, argv, "--log-every", o.log_every, &ok);
    o.eval_every = opt_int(argc, argv, "--eval-every", o.eval_every, &ok);
    o.save_every = opt_int(argc, argv, "--save-every", o.save_every, &ok);
    o.show = opt_int(argc, argv, "--show", o.show, &ok);
    o.num_beams = opt_int(argc, argv, "--num-beams", o.num_beams, &ok);
    o.seed = (uint64_t)opt_int(argc, argv, "--seed", (int)o.seed, &ok);
    o.max_seconds = 60.0 * opt_num(argc, argv, "--minutes", 0, &ok);
    int threads = opt_int(argc, argv, "--threads", 0, &ok);
    if (!ok || leftovers(argc, argv, 2)) return 2;
    if (!o.config_path || !o.data_path || !o.out_dir || o.log_every < 1) {
        fprintf(stderr, "usage: tapegrad train-s2s --config model.json --data pairs.tsv --out RUN [options]\n");
        return 2;
    }
    ag_set_threads(threads);
    if (recipe_train_s2s(&o)) { fprintf(stderr, "tapegrad train-s2s: %s\n", ag_error()); return 1; }
    return 0;
}

static int cmd_translate(int argc, char **argv) {
    int ok = 1;
    const char *run = opt(argc, argv, "--checkpoint"), *text = opt(argc, argv, "--text");
    recipe_gen_config g = recipe_gen_defaults();
    g.max_new_tokens = opt_int(argc, argv, "--max-new", 64, &ok);
    g.num_beams = opt_int(argc, argv, "--num-beams", 1, &ok);
    g.length_penalty = (float)opt_num(argc, argv, "--length-penalty", 1.0, &ok);
    g.repetition_penalty = (float)opt_num(argc, argv, "--repetition-penalty", 1.0, &ok);
    g.forced_bos_token_id = opt_int(argc, argv, "--forced-bos", -1, &ok);
    g.eos_token_id = opt_int(argc, argv, "--eos", -2, &ok); /* -2: the config's; -1: none */
    int threads = opt_int(argc, argv, "--threads", 0, &ok);
    bool bench = false;
    for (int i = 2; i < argc; ++i) {
        if (strcmp(argv[i], "--no-cache") == 0) { g.use_cache = false; argv[i] = ""; }
        else if (strcmp(argv[i], "--greedy") == 0) { argv[i] = ""; } /* the default */
        else if (strcmp(argv[i], "--sample") == 0) { g.do_sample = true; argv[i] = ""; }
        else if (strcmp(argv[i], "--bench") == 0) { bench = true; argv[i] = ""; }
    }
    g.temperature = (float)opt_num(argc, argv, "--temperature", 1.0, &ok);
    g.top_k = opt_int(argc, argv, "--top-k", 0, &ok);
    g.top_p = (float)opt_num(argc, argv, "--top-p", 1.0, &ok);
    g.seed = (uint64_t)opt_int(argc, argv, "--seed", 0, &ok);
    if (!ok || leftovers(argc, argv, 2)) return 2;
    if (!run || !text) {
        fprintf(stderr, "usage: tapegrad translate --checkpoint RUN --text TEXT [--num-beams N --max-new N "
                        "--length-penalty L --repetition-penalty R --forced-bos ID --eos ID --sample --temperature T "
                        "--top-k K --top-p P --seed S --no-cache --bench]\n");
        return 2;
    }
    ag_set_threads(threads);
    if (recipe_translate(run, text, &g, bench, stdout)) { fprintf(stderr, "tapegrad translate: %s\n", ag_error()); return 1; }
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: tapegrad <command> [options]\n\n"
            "  example xor [--steps N] [--lr X] [--hidden H] [--seed S] [--dot FILE] [--threads N]\n"
            "                 train a small MLP on XOR and print its tape\n"
            "  bench [--vocab V --positions P --embd C --layers L --heads H --batch B --seq T --steps N --threads N]\n"
            "                 time GPT-2 training steps (forward, backward, AdamW); see bench/run.sh\n"
            "  prepare [--tokenizer PATH|bytes] --out DIR [--val F] [--shard-tokens N] [--docs-by-blank-lines] --input FILE...\n"
            "                 corpus -> compressed token shards with document/sentence boundaries + manifest.json\n"
            "  pretrain --recipe clm|mlm|nsp|sop|electra|span|denoise|tlm|ctrl --config model.json --data DIR --out RUN [--steps --batch --seq --lr\n"
            "           --warmup --schedule --min-lr --weight-decay --clip --grad-accum --eval-every\n"
            "           --save-every --minutes --stop-at --seed --threads --resume]\n"
            "           [--masking tokens|ngram --max-ngram 3]   MLM positions for mlm|nsp|sop|tlm: BERT's tokens,\n"
            "                 or ALBERT's n-grams of whole words (the default of sop)\n"
            "  distill --student config.json [--teacher RUN/ckpt.h5] --data DIR --tokenizer tok.json --out RUN\n"
            "          [--objective mlm|clm --temperature 2 --alpha-ce 5 --alpha-mlm 2 --alpha-clm 0 --alpha-cos 1\n"
            "          --restrict-ce-to-mask --random-init --mlm-smoothing 0.7 --uniform-masking --steps --batch --seq\n"
            "          --lr --warmup --minutes --threads]\n"
            "                 DistilBERT's triple loss, the student from every other teacher layer; no --teacher: MLM/CLM alone;\n"
            "                 MLM masking as distiller.py (rare ids favoured, count^-0.7), --uniform-masking: 15%% of every id\n"
            "  generate --checkpoint RUN [--prompt TEXT --max-new N --temperature T --top-k K --top-p P\n"
            "           --greedy --seed S --repetition-penalty R --num-beams N --length-penalty L\n"
            "           --early-stopping true|false|never --eos ID --forced-bos ID --no-cache]\n"
            "  finetune --task classify --init RUN_OR_HF_DIR --train train.tsv --eval dev.tsv [--test test.tsv] --out RUN\n"
            "           [--freeze N | --freeze-all-but-head] [--pool-mean] [--epochs --batch --lr --seq --warmup\n"
            "           --weight-decay --dropout --metric accuracy|f1|mcc --num-labels --seed --threads]\n"
            "  finetune --task classify --model bow --train ... --eval ... [--test ...] --out RUN   bag-of-words baseline\n"
            "  generate --bench --config model.json [--max-new 256 ...]   tokens/s with and without the kv cache\n"
            "  plot RUN [--out loss.svg]   the run's training and held-out loss curves\n"
            "  train-s2s --config model.json --data pairs.tsv --out RUN [--vocab --max-src --max-tgt --steps\n"
            "           --batch --lr --warmup --schedule --eval-every --save-every --minutes --num-beams --seed]\n"
            "                 a T5/BART/M2M-100 on source<TAB>target pairs, with a BPE tokenizer trained on them\n"
            "  translate --checkpoint RUN --text TEXT [--num-beams N --max-new N --length-penalty L\n"
            "           --repetition-penalty R --forced-bos ID --eos ID --sample --temperature T --top-k K\n"
            "           --top-p P --seed S --no-cache --bench]   with a train-s2s run's tokenizer and checkpoint;\n"
            "                 --bench: tokens/s with and without the cache (eos ignored)\n"
            "  loss --config config.json --weights model.safetensors --batch batch.json [--arch CLASS]\n"
            "       [--json] [--grads out.h5]      a Hugging Face class's loss and gradients\n"
            "  params --config config.json [--arch CLASS] [--json]   every parameter and the total\n"
            "  convert IN OUT [--config config.json] [--arch CLASS]   model.safetensors <-> checkpoint .h5\n"
            "  tokenizer train --type wordpiece|bpe|unigram --vocab-size N --out tok.json|spm.model [--cased] --input FILE...\n"
            "  tokenizer encode|decode --tokenizer PATH --input FILE   one line of ids per line of text\n"
            "                 PATH: tokenizer.json, a SentencePiece .model, or a folder with vocab.txt or vocab.json + merges.txt\n"
            "  ops            list every differentiable op and its derivative\n"
            "  version        version, BLAS and threads\n"
            "  help           this text\n");
}

/* libgomp's threads spin for a long while (GOMP_SPINCOUNT 300000) at every
 * barrier before they sleep. A step runs hundreds of short parallel regions,
 * and when another process holds a core, each region then waits a whole
 * scheduler slice for the spinning, descheduled thread: measured 3.4 s instead
 * of 1.2 s per step on a loaded machine. libgomp reads its settings once, as
 * it loads, so the only way to change them from here is to start again with
 * them set: unless the user chose a wait policy, re-execute with a short spin. */
static void shorten_openmp_spin(char **argv) {
    if (getenv("GOMP_SPINCOUNT") || getenv("OMP_WAIT_POLICY") || getenv("TAPEGRAD_NO_REEXEC")) return;
    setenv("GOMP_SPINCOUNT", "10000", 1);
    execv("/proc/self/exe", argv); /* returns only on failure: then carry on as we are */
}

int main(int argc, char **argv) {
    shorten_openmp_spin(argv);
    if (argc < 2) { usage(stderr); return 2; }
    const char *cmd = argv[1];
    if (strcmp(cmd, "example") == 0) {
        if (argc >= 3 && strcmp(argv[2], "xor") == 0) return example_xor(argc, argv);
        fprintf(stderr, "tapegrad example: the one example is 'xor'\n");
        return 2;
    }
    if (strcmp(cmd, "ops") == 0) return cmd_ops();
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc, argv);
    if (strcmp(cmd, "loss") == 0) return cmd_loss(argc, argv);
    if (strcmp(cmd, "params") == 0) return cmd_params(argc, argv);
    if (strcmp(cmd, "convert") == 0) return cmd_convert(argc, argv);
    if (strcmp(cmd, "prepare") == 0) return cmd_prepare(argc, argv);
    if (strcmp(cmd, "pretrain") == 0) return cmd_pretrain(argc, argv);
    if (strcmp(cmd, "distill") == 0) return cmd_distill(argc, argv);
    if (strcmp(cmd, "generate") == 0) return cmd_generate(argc, argv);
    if (strcmp(cmd, "finetune") == 0) return cmd_finetune(argc, argv);
    if (strcmp(cmd, "plot") == 0) return cmd_plot(argc, argv);
    if (strcmp(cmd, "train-s2s") == 0) return cmd_train_s2s(argc, argv);
    if (strcmp(cmd, "translate") == 0) return cmd_translate(argc, argv);
    if (strcmp(cmd, "tokenizer") == 0) return cmd_tokenizer(argc, argv);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) return cmd_version();
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) { usage(stdout); return 0; }
    fprintf(stderr, "tapegrad: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
