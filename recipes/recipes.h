/* recipes.h: what the command line calls: the trainer, generation, the
 * benchmark. Each returns a status and leaves its message in ag_error(); only
 * main.c exits. */
#ifndef TAPEGRAD_RECIPES_H
#define TAPEGRAD_RECIPES_H

#include "ag.h"

#include <stdio.h>

/* ---------------------------------------------------------------- pretraining */

typedef struct recipe_train_opts {
    const char *config_path; /* a Hugging Face config.json of any decoder family with an LM head */
    const char *data_dir;    /* train.bin and val.bin from `tapegrad prepare` */
    const char *out_dir;     /* ckpt.h5 and metrics.jsonl go here */
    int steps, batch, seq, grad_accum;
    double lr, min_lr, weight_decay, clip;
    int warmup;
    const char *schedule;    /* constant | constant_with_warmup | linear | cosine | inverse_sqrt */
    int log_every, eval_every, eval_batches, save_every;
    uint64_t seed;
    bool resume;             /* continue from out_dir/ckpt.h5 */
    double max_seconds;      /* > 0: stop (and save) after this long */
    int stop_at;             /* > 0: stop (and save) after this step, as if interrupted */
} recipe_train_opts;

/* Causal-LM pretraining of a decoder (GPT-2, GPT-Neo, GPT-J, OpenAI GPT, CTRL:
 * the config's architectures[0]) on byte-level shards. Prints one progress line
 * per log step, appends every logged step to out_dir/metrics.jsonl, evaluates
 * on the held-out split, checkpoints every save_every steps and at the end,
 * and on Ctrl-C saves and returns. Errors: bad options, unreadable config or
 * data, a non-finite loss, a failed save. */
ag_status recipe_train_clm(const recipe_train_opts *o);

/* ---------------------------------------------------------------- generation
 * recipe_generate and its options live in generate.h. */

/* ---------------------------------------------------------------- plot */

/* Draws run_dir/metrics.jsonl's training and held-out losses against the step
 * into an SVG at out_path. Errors: no metrics file, a line that is not JSON,
 * no losses in it, an unwritable output. */
ag_status recipe_plot(const char *run_dir, const char *out_path);

/* ---------------------------------------------------------------- bench */

typedef struct recipe_bench_opts {
    int vocab, positions, embd, layers, heads;
    int batch, seq, steps, warmup;
} recipe_bench_opts;

typedef struct recipe_bench_result {
    double ms_per_step, tokens_per_s, peak_rss_mb, arena_mb;
    float loss;
} recipe_bench_result;

/* Times o->steps GPT-2 training steps (after o->warmup untimed ones) and
 * reports the median. Errors: bad sizes, out of memory. */
ag_status recipe_bench_gpt2(const recipe_bench_opts *o, recipe_bench_result *res);

#endif
