/* finetune.h: classifier fine-tuning (`tapegrad finetune --task classify`).
 *
 * What it is: sequence classification of single sentences or pairs read from
 * a TSV file, by a pretrained transformer with a classification head (GPT-2's
 * GPT2ForSequenceClassification, BERT's and RoBERTa's ...ForSequenceClassification)
 * or by a bag-of-words logistic regression, the baseline. Training is AdamW
 * with linear warmup and decay; layers can be frozen (kept out of the
 * optimizer's reach: their group's learning rate is zero, so they never
 * move); every epoch is evaluated on a held-out split (accuracy, F1, Matthews
 * correlation), logged to out/metrics.jsonl, and the best epoch's weights are
 * kept in out/ckpt.h5.
 *
 * What it is not: a general data pipeline. The TSV format is fixed:
 *   label<TAB>text            single sentences
 *   label<TAB>text_a<TAB>text_b   pairs
 * with labels 0 .. num_labels-1; every line of a file has the same number of
 * columns; empty lines are skipped.
 */
#ifndef TAPEGRAD_RECIPES_FINETUNE_H
#define TAPEGRAD_RECIPES_FINETUNE_H

#include "ag.h"

#include <stdbool.h>
#include <stdint.h>

/* ---------------------------------------------------------------- the TSV reader */

typedef struct recipe_example {
    int32_t label;
    char *a, *b; /* b NULL for single sentences; both point into the set's text */
} recipe_example;

typedef struct recipe_tsv {
    recipe_example *ex; /* [n] */
    int64_t n;
    int n_texts;        /* 1 (sentences) or 2 (pairs) */
    int max_label;      /* the largest label seen */
    char *text;         /* the file's bytes, tabs and newlines turned into NULs */
} recipe_tsv;

/* Reads `path`. Returns AG_OK; AG_ERR_IO when the file cannot be read;
 * AG_ERR_ARG naming the file and line ("dev.tsv:17: ...") for a line with
 * other than 2 or 3 columns, a column count that differs from the first
 * line's, a label that is not a whole number in [0, 1000), an empty text, or
 * a file with no examples. */
ag_status recipe_tsv_read(recipe_tsv *d, const char *path);
void recipe_tsv_free(recipe_tsv *d);

/* ---------------------------------------------------------------- metrics */

typedef struct recipe_cls_metrics {
    double accuracy; /* correct / n */
    double f1;       /* binary: F1 of class 1; more classes: the mean of each class's F1 (macro) */
    double mcc;      /* Matthews correlation; for more classes Gorodkin's R_K (sklearn's matthews_corrcoef) */
    int64_t n;
} recipe_cls_metrics;

/* Computes the metrics of predictions `pred` against `gold` (n each, labels in
 * [0, num_labels)). A class never predicted and never true has F1 0 and is
 * left out of the macro mean (sklearn counts it as 0 with a warning; we report
 * only classes that occur); F1 with no positive prediction or truth is 0; MCC
 * with a zero denominator is 0, as sklearn gives. Errors: n < 1, num_labels < 2,
 * a label outside the range (AG_ERR_ARG, naming the index). */
ag_status recipe_cls_metrics_compute(const int32_t *gold, const int32_t *pred, int64_t n, int num_labels,
                                     recipe_cls_metrics *out);

/* ---------------------------------------------------------------- fine-tuning */

typedef enum {
    RECIPE_METRIC_ACCURACY = 0,
    RECIPE_METRIC_F1 = 1,
    RECIPE_METRIC_MCC = 2,
} recipe_metric;

typedef struct recipe_finetune_opts {
    const char *init;        /* a tapegrad run folder (ckpt.h5), or a Hugging Face folder (config.json,
                                model.safetensors, tokenizer files); NULL for the bag-of-words model */
    bool bow;                /* the bag-of-words logistic regression baseline instead of a transformer */
    const char *train_path, *eval_path, *out_dir;
    const char *test_path;   /* NULL, or a test split: the best epoch (chosen on eval_path) is scored on it once */
    int epochs, batch, seq;  /* seq: the longest input in tokens; longer ones are cut */
    double lr, weight_decay, warmup; /* warmup: a fraction of all steps */
    double dropout;          /* < 0: the config's; else every dropout of the backbone */
    int freeze;              /* freeze the embeddings and the first `freeze` layers (0: none) */
    bool freeze_all_but_head;
    recipe_metric metric;    /* which metric picks the best epoch */
    int num_labels;          /* 0: 1 + the largest label in the training file */
    int bow_max_features;    /* the bag-of-words vocabulary's size (most frequent words) */
    uint64_t seed;
    bool quiet;              /* no progress lines */
    bool pool_mean;          /* GPT-2 only, not Hugging Face's class: score the mean of the final
                                hidden states over the tokens instead of the last token's */
    int max_train_steps;     /* > 0: stop each epoch after this many steps (tests) */
} recipe_finetune_opts;

/* The defaults the command line starts from: 3 epochs, batch 32, seq 256, lr
 * 5e-5 (bag of words: 1e-2 is set by the command line), weight decay 0.01,
 * warmup 0.1, config dropout, accuracy, 20000 features, seed 42. */
recipe_finetune_opts recipe_finetune_defaults(void);

typedef struct recipe_finetune_result {
    int best_epoch;             /* 1-based */
    recipe_cls_metrics best;    /* the metrics of the best epoch */
    recipe_cls_metrics last;    /* the metrics of the last epoch */
    int64_t n_params, n_trainable;
    double train_loss;          /* the last epoch's mean training loss */
    bool has_test;              /* test_path was given: */
    recipe_cls_metrics test;    /* the best epoch's metrics on it */
} recipe_finetune_result;

/* Fine-tunes and evaluates; writes out_dir/metrics.jsonl (one line per epoch:
 * epoch, step, train_loss, eval_loss, accuracy, f1, mcc, lr) and, at each new
 * best epoch, out_dir/ckpt.h5 (the classifier's parameters and its config:
 * architectures [the class], num_labels, pad_token_id) and out_dir/best.json.
 * With test_path, the best epoch's weights are scored on the test split after
 * the last epoch (it never picks an epoch) and best.json gains "test": {...}.
 * res may be NULL. Errors: bad options, unreadable or malformed files (named),
 * a model family without a classification head here, a label beyond
 * num_labels, a non-finite loss, a failed save. */
ag_status recipe_finetune(const recipe_finetune_opts *o, recipe_finetune_result *res);

/* "accuracy", "f1", "mcc" -> the metric. Errors: AG_ERR_ARG listing the names. */
ag_status recipe_metric_from_name(const char *name, recipe_metric *out);

#endif
