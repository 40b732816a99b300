/* train_s2s.h: sequence-to-sequence training on a parallel corpus
 * (`tapegrad train-s2s`) and translation with the trained model
 * (`tapegrad translate`).
 *
 * The corpus is a TSV file, one pair per line: source text, a tab, target
 * text. The run trains a byte-level BPE tokenizer on the corpus, holds out a
 * deterministic fraction of the pairs, and trains an encoder-decoder (T5 or
 * BART / M2M-100, the config's architectures[0] ...ForConditionalGeneration)
 * with AdamW, warmup and decay, writing into out_dir:
 *
 *   tokenizer.json   the tokenizer (Hugging Face's format)
 *   config.json      the model config with the tokenizer's vocabulary and ids
 *   metrics.jsonl    training loss every log step, held-out loss every eval
 *   ckpt.h5          parameters and optimizer state, every save_every and at the end
 *
 * and prints held-out translations (greedy and beam search) at the end.
 * What it is not: a data pipeline for corpora larger than memory, or a
 * resumable run (a checkpoint holds the state; resuming is not wired here).
 */
#ifndef TAPEGRAD_RECIPES_TRAIN_S2S_H
#define TAPEGRAD_RECIPES_TRAIN_S2S_H

#include "ag.h"

#include <stdbool.h>

#include <stdio.h>

typedef struct recipe_s2s_opts {
    const char *config_path;  /* a config.json of t5, bart or m2m_100 (sizes; vocabulary and ids are overwritten) */
    const char *data_path;    /* the TSV of pairs */
    const char *out_dir;
    int vocab_size;           /* the BPE vocabulary, <|endoftext|> (eos) and <pad> included */
    int max_src, max_tgt;     /* tokens kept per side, eos included (longer texts are truncated) */
    double val_fraction;      /* pairs held out (chosen by a hash of their index) */
    int max_val;              /* at most this many held-out pairs (0: all) */
    int steps, batch;
    double lr, min_lr, weight_decay, clip;
    int warmup;
    const char *schedule;     /* as pretrain's: linear, cosine, ... */
    int log_every, eval_every, save_every;
    int show;                 /* held-out pairs translated at the end */
    int num_beams;            /* for the translations at the end (greedy is shown too) */
    uint64_t seed;
    double max_seconds;       /* > 0: stop (evaluate, save) after this long */
} recipe_s2s_opts;

/* Default options: vocabulary 4000, 48 tokens a side, 2% held out (at most
 * 500), 2000 steps of 32 pairs, lr 1e-3 linear with 100 warmup steps,
 * weight decay 0.01, clip 1, log every 20, eval every 100, 5 translations
 * with 4 beams, seed 1234. */
recipe_s2s_opts recipe_s2s_defaults(void);

/* `tapegrad train-s2s`. Returns AG_OK, or an error naming what failed: an
 * unreadable corpus or a line without a tab (file:line), a config that is not
 * an encoder-decoder with an LM head, a non-finite loss (with a hint), a
 * failed save. */
ag_status recipe_train_s2s(const recipe_s2s_opts *o);

/* `tapegrad translate`: loads run_dir's tokenizer.json and ckpt.h5,
 * translates `text` with `g` (recipe_gen_config from generate.h; eos from the
 * config when g->eos_token_id < -1; forced_bos/eos_token_id from the config
 * when g's are < 0) and writes the translation to out. With
 * bench: generates max_new_tokens tokens (eos ignored) with and without the
 * cache, checks they agree and writes one JSON line of tokens/s and the
 * speed-up instead. Errors: a missing run file (named), generation's errors,
 * (bench) cached and uncached tokens that differ. */
struct recipe_gen_config;
ag_status recipe_translate(const char *run_dir, const char *text, const struct recipe_gen_config *g, bool bench,
                           FILE *out);

#endif
