/* finetune.c: classifier fine-tuning (see finetune.h).
 *
 * The path of one run:
 *   train.tsv, dev.tsv --recipe_tsv_read--> examples (label, text_a, text_b)
 *   --tokenize--> ids per example (bytes for byte-level checkpoints, else the
 *                 model's own tokenizer with its [CLS]/[SEP] template)
 *   init --load--> a backbone filled by parameter name from the checkpoint,
 *                  the classification head initialised as Hugging Face does
 *   each epoch: shuffle, batches padded to their longest row, cross entropy of
 *               the pooled logits, AdamW with linear warmup and decay;
 *               evaluate; keep the best epoch's weights
 *
 * The bag-of-words baseline takes the same path with another model: binary
 * word-presence features x [B,F] and one linear layer, logits = x W^T + b,
 * i.e. multinomial logistic regression trained by the same loop.
 */
#include "finetune.h"

#include "ckpt.h"
#include "data.h"
#include "models.h"
#include "optim.h"
#include "tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ================================================================ the TSV reader */

ag_status recipe_tsv_read(recipe_tsv *d, const char *path) {
    memset(d, 0, sizeof *d);
    size_t len;
    char *text = ag_read_file("tsv", path, (size_t)1 << 31, &len);
    if (!text) return ag_error_status();
    d->text = text;
    int64_t cap = 0, line_no = 0;
    char *p = text, *end = text + len;
    ag_status st = AG_OK;
    while (p < end && st == AG_OK) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *line_end = nl ? nl : end;
        ++line_no;
        if (line_end > p && line_end[-1] == '\r') line_end[-1] = 0; /* CRLF files */
        *line_end = 0;
        char *next = line_end + 1;
        if (!*p) { p = next; continue; } /* empty line */
        /* split at tabs: label, text_a[, text_b] */
        char *col[4];
        int n_col = 0;
        for (char *q = p;; ) {
            if (n_col < 4) col[n_col] = q;
            ++n_col;
            char *tab = strchr(q, '\t');
            if (!tab) break;
            *tab = 0;
            q = tab + 1;
        }
        if (n_col != 2 && n_col != 3) {
            st = ag_fail(AG_ERR_ARG, "%s:%lld: %d tab-separated columns; want label<TAB>text or "
                         "label<TAB>text_a<TAB>text_b", path, (long long)line_no, n_col);
            break;
        }
        if (d->n_texts == 0) d->n_texts = n_col - 1;
        if (n_col - 1 != d->n_texts) {
            st = ag_fail(AG_ERR_ARG, "%s:%lld: %d columns, but the first example has %d", path, (long long)line_no,
                         n_col, d->n_texts + 1);
            break;
        }
        char *e;
        errno = 0;
        long y = strtol(col[0], &e, 10);
        if (e == col[0] || *e || errno || y < 0 || y >= 1000) {
            st = ag_fail(AG_ERR_ARG, "%s:%lld: label '%.20s' is not a whole number in [0, 1000)", path,
                         (long long)line_no, col[0]);
            break;
        }
        for (int k = 1; k < n_col; ++k)
            if (!col[k][0]) {
                st = ag_fail(AG_ERR_ARG, "%s:%lld: column %d (text) is empty", path, (long long)line_no, k + 1);
                break;
            }
        if (st) break;
        if (d->n == cap) {
            cap = cap ? 2 * cap : 1024;
            recipe_example *g = realloc(d->ex, (size_t)cap * sizeof *g);
            if (!g) { st = ag_fail(AG_ERR_MEMORY, "tsv %s: out of memory", path); break; }
            d->ex = g;
        }
        d->ex[d->n++] = (recipe_example){(int32_t)y, col[1], n_col == 3 ? col[2] : NULL};
        if (y > d->max_label) d->max_label = (int)y;
        p = next;
    }
    if (st == AG_OK && d->n == 0) st = ag_fail(AG_ERR_ARG, "%s: no examples", path);
    if (st) recipe_tsv_free(d);
    return st;
}

void recipe_tsv_free(recipe_tsv *d) {
    free(d->ex);
    free(d->text);
    memset(d, 0, sizeof *d);
}

/* ================================================================ metrics */

ag_status recipe_cls_metrics_compute(const int32_t *gold, const int32_t *pred, int64_t n, int num_labels,
                                     recipe_cls_metrics *out) {
    if (n < 1 || num_labels < 2 || num_labels > 1000)
        return ag_fail(AG_ERR_ARG, "metrics: need n >= 1 and 2 <= num_labels <= 1000 (got %lld, %d)", (long long)n,
                       num_labels);
    const int L = num_labels;
    /* the confusion matrix: cm[t*L + p] counts truth t predicted as p */
    int64_t *cm = calloc((size_t)L * L, sizeof *cm);
    if (!cm) return ag_fail(AG_ERR_MEMORY, "metrics: out of memory");
    for (int64_t i = 0; i < n; ++i) {
        if (gold[i] < 0 || gold[i] >= L || pred[i] < 0 || pred[i] >= L) {
            free(cm);
            return ag_fail(AG_ERR_ARG, "metrics: example %lld has label %d / prediction %d outside [0, %d)",
                           (long long)i, gold[i], pred[i], L);
        }
        cm[gold[i] * L + pred[i]]++;
    }
    /* per class k: tp = cm[k,k], t_k = row sum (true k), p_k = column sum (predicted k) */
    double correct = 0, sum_pt = 0, sum_p2 = 0, sum_t2 = 0, f1_sum = 0;
    int f1_count = 0;
    double f1_binary = 0;
    for (int k = 0; k < L; ++k) {
        double tp = (double)cm[k * L + k], t = 0, p = 0;
        for (int j = 0; j < L; ++j) t += (double)cm[k * L + j], p += (double)cm[j * L + k];
        correct += tp;
        sum_pt += p * t, sum_p2 += p * p, sum_t2 += t * t;
        /* F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (p + t) */
        double f1 = p + t > 0 ? 2 * tp / (p + t) : 0;
        if (k == 1) f1_binary = f1;
        if (p + t > 0) f1_sum += f1, f1_count++;
    }
    const double N = (double)n;
    /* MCC (Gorodkin's R_K; for two classes the usual (tp tn - fp fn)/sqrt(...)):
     *   (c N - sum_k p_k t_k) / sqrt((N^2 - sum_k p_k^2)(N^2 - sum_k t_k^2)) */
    double den = sqrt((N * N - sum_p2) * (N * N - sum_t2));
    out->n = n;
    out->accuracy = correct / N;
    out->f1 = L == 2 ? f1_binary : (f1_count ? f1_sum / f1_count : 0);
    out->mcc = den > 0 ? (correct * N - sum_pt) / den : 0;
    free(cm);
    return AG_OK;
}

ag_status recipe_metric_from_name(const char *name, recipe_metric *out) {
    if (strcmp(name, "accuracy") == 0) *out = RECIPE_METRIC_ACCURACY;
    else if (strcmp(name, "f1") == 0) *out = RECIPE_METRIC_F1;
    else if (strcmp(name, "mcc") == 0) *out = RECIPE_METRIC_MCC;
    else return ag_fail(AG_ERR_ARG, "--metric '%s': the metrics are accuracy, f1, mcc", name);
    return AG_OK;
}

static double metric_value(const recipe_cls_metrics *m, recipe_metric k) {
    return k == RECIPE_METRIC_F1 ? m->f1 : k == RECIPE_METRIC_MCC ? m->mcc : m->accuracy;
}

recipe_finetune_opts recipe_finetune_defaults(void) {
    return (recipe_finetune_opts){.epochs = 3, .batch = 32, .seq = 256, .lr = 5e-5, .weight_decay = 0.01,
                                  .warmup = 0.1, .dropout = -1, .metric = RECIPE_METRIC_ACCURACY,
                                  .bow_max_features = 20000, .seed = 42};
}

/* ================================================================ the classifier */

typedef enum { CLS_GPT2, CLS_ENCODER, CLS_BOW } cls_kind; /* CLS_ENCODER: recipe_model_cls_logits */

typedef struct classifier {
    cls_kind kind;
    int num_labels, n_texts;
    recipe_model rm;      /* the transformer (GPT2LMHeadModel names for GPT-2, the head unused) */
    nn_linear score;      /* GPT-2's score, or the bag of words' linear layer */
    ag_params bow_ps;     /* the bag of words' registry */
    ag_params *ps;        /* the registry the optimizer sees */
    int pad_id;           /* the id batches are padded with */
    bool bytes;           /* byte-level: one id per byte */
    bool pool_mean;       /* GPT-2: score the mean hidden state instead of the last token's */
    data_tokenizer tok;
    bool have_tok;
    data_strmap words;    /* bag of words: word -> feature index */
    int n_features;       /* per text */
    char *config_text;    /* what the saved checkpoint carries */
    bool *fresh;          /* [ps->n]: not in the checkpoint, so newly initialised (never frozen) */
} classifier;

static void classifier_free(classifier *c) {
    if (c->kind == CLS_BOW) ag_params_free(&c->bow_ps);
    else recipe_model_free(&c->rm);
    if (c->have_tok) data_tokenizer_free(&c->tok);
    data_strmap_free(&c->words);
    free(c->config_text);
    free(c->fresh);
}

static bool file_exists(const char *path) {
    struct stat s;
    return stat(path, &s) == 0 && S_ISREG(s.st_mode);
}

/* A backbone parameter's name in a checkpoint that holds the bare base model:
 * "transformer.h.0.ln_1.weight" -> "h.0.ln_1.weight" (HF's base_model_prefix). */
static const char *strip_base_prefix(const char *name) {
    static const char *const prefixes[] = {"transformer.", "bert.", "roberta.", NULL};
    for (int i = 0; prefixes[i]; ++i) {
        size_t k = strlen(prefixes[i]);
        if (strncmp(name, prefixes[i], k) == 0) return name + k;
    }
    return NULL;
}

/* Copies every parameter of `dst` that `src` holds (by name, or by the name
 * without the base model's prefix), checking shapes; the others keep their
 * fresh initialisation and are listed, as Hugging Face warns "Some weights
 * ... were not initialized from the model checkpoint". */
static ag_status copy_by_name(ag_params *dst, const ag_params *src, const char *from, bool quiet, bool *fresh_out) {
    int64_t loaded = 0;
    char fresh[1024] = "";
    char s1[64], s2[64];
    for (int64_t i = 0; i < dst->n; ++i) {
        ag_tensor *p = dst->p[i];
        const ag_tensor *q = ag_params_find(src, p->name);
        const char *bare = strip_base_prefix(p->name);
        if (!q && bare) q = ag_params_find(src, bare);
        fresh_out[i] = !q;
        if (!q) {
            size_t k = strlen(fresh);
            snprintf(fresh + k, sizeof fresh - k, "%s%s", k ? ", " : "", p->name);
            continue;
        }
        bool same = q->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; ++d) same = q->shape[d] == p->shape[d];
        if (!same)
            return ag_fail(AG_ERR_ARG, "finetune: %s in %s has shape %s, the classifier wants %s", q->name, from,
                           ag_shape_str(s1, q->ndim, q->shape), ag_shape_str(s2, p->ndim, p->shape));
        memcpy(p->data, q->data, (size_t)p->numel * sizeof(float));
        ++loaded;
    }
    if (loaded == 0) return ag_fail(AG_ERR_ARG, "finetune: %s holds none of the model's parameters", from);
    if (!quiet)
        printf("initialised %lld of %lld tensors from %s; newly initialised: %s\n", (long long)loaded,
               (long long)dst->n, from, fresh[0] ? fresh : "none");
    return AG_OK;
}

/* Sets `key` of a JSON object to a number (replacing it). */
static void json_set_num(cJSON *o, const char *key, double v) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    cJSON_AddNumberToObject(o, key, v);
}

/* Builds a transformer classifier from a run folder (ckpt.h5) or a Hugging
 * Face folder (config.json + model.safetensors). */
static ag_status build_transformer(classifier *c, const recipe_finetune_opts *o) {
    char ckpt[1024], cfg_path[1024], weights[1024], path[1024];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", o->init);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", o->init);
    snprintf(weights, sizeof weights, "%s/model.safetensors", o->init);
    const bool own = file_exists(ckpt);
    ckpt_state cs = {0};
    char *src_config = NULL;
    cJSON *j = NULL;
    ag_params src = {0}; /* the checkpoint's tensors, declared from the file */
    ag_params_init(&src);
    ag_status st = AG_OK;
    if (own) {
        if ((st = ckpt_read_state(ckpt, &cs))) goto done;
        if (!cs.config) { st = ag_fail(AG_ERR_ARG, "finetune: %s holds no model config", ckpt); goto done; }
        src_config = strdup(cs.config);
    } else if (file_exists(cfg_path) && file_exists(weights)) {
        if (!(src_config = ag_read_file("config", cfg_path, 1 << 24, NULL))) { st = ag_error_status(); goto done; }
    } else {
        st = ag_fail(AG_ERR_IO, "finetune: --init %s holds neither ckpt.h5 (a tapegrad run) nor config.json and "
                     "model.safetensors (a Hugging Face model)", o->init);
        goto done;
    }
    /* the classifier's config: the backbone's, with the head's fields */
    if (!(j = cJSON_Parse(src_config)) || !cJSON_IsObject(j)) {
        st = ag_fail(AG_ERR_ARG, "finetune: the config of %s is not a JSON object", o->init);
        goto done;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    const char *type = cJSON_IsString(mt) ? mt->valuestring : "";
    const char *cls, *declare_as;
    /* model_type -> the Hugging Face class (GPT-2's score head is declared here, beside GPT2LMHeadModel) */
    static const char *const classes[][2] = {
        {"bert", "BertForSequenceClassification"},           {"roberta", "RobertaForSequenceClassification"},
        {"xlm-roberta", "XLMRobertaForSequenceClassification"}, {"distilbert", "DistilBertForSequenceClassification"},
        {"albert", "AlbertForSequenceClassification"},       {"electra", "ElectraForSequenceClassification"},
        {"deberta", "DebertaForSequenceClassification"},     {"deberta-v2", "DebertaV2ForSequenceClassification"},
    };
    cls = declare_as = NULL;
    if (strcmp(type, "gpt2") == 0) c->kind = CLS_GPT2, cls = "GPT2ForSequenceClassification", declare_as = "GPT2LMHeadModel";
    for (size_t k = 0; k < sizeof classes / sizeof classes[0] && !cls; ++k)
        if (strcmp(type, classes[k][0]) == 0) c->kind = CLS_ENCODER, cls = declare_as = classes[k][1];
    if (!cls) {
        st = ag_fail(AG_ERR_ARG, "finetune: model_type '%s' of %s has no sequence classifier here (gpt2, bert, "
                     "roberta, xlm-roberta, distilbert, albert, electra, deberta, deberta-v2)", type, o->init);
        goto done;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(j, "architectures");
    cJSON *archs = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(archs, cJSON_CreateString(cls));
    cJSON_DeleteItemFromObjectCaseSensitive(j, "id2label"); /* num_labels decides */
    cJSON_DeleteItemFromObjectCaseSensitive(j, "label2id");
    json_set_num(j, "num_labels", c->num_labels);
    if (c->kind == CLS_GPT2) {
        /* GPT-2 has no pad token: pad with end-of-text, as is usual */
        const cJSON *pad = cJSON_GetObjectItemCaseSensitive(j, "pad_token_id");
        const cJSON *eos = cJSON_GetObjectItemCaseSensitive(j, "eos_token_id");
        c->pad_id = cJSON_IsNumber(pad) ? pad->valueint : cJSON_IsNumber(eos) ? eos->valueint : 50256;
        json_set_num(j, "pad_token_id", c->pad_id);
        if (o->dropout >= 0)
            json_set_num(j, "embd_pdrop", o->dropout), json_set_num(j, "attn_pdrop", o->dropout),
                json_set_num(j, "resid_pdrop", o->dropout);
    } else if (strcmp(type, "distilbert") == 0 && o->dropout >= 0) {
        json_set_num(j, "dropout", o->dropout), json_set_num(j, "attention_dropout", o->dropout);
        json_set_num(j, "seq_classif_dropout", o->dropout);
    } else if (o->dropout >= 0) {
        json_set_num(j, "hidden_dropout_prob", o->dropout), json_set_num(j, "attention_probs_dropout_prob", o->dropout);
    }
    if (!(c->config_text = cJSON_Print(j))) { st = ag_fail(AG_ERR_MEMORY, "finetune: out of memory"); goto done; }
    if ((st = recipe_model_declare_text(&c->rm, c->config_text, o->init, declare_as))) goto done;
    nn_gpt2_config gc = {0};
    if (c->kind == CLS_GPT2 && ((st = nn_gpt2_config_read(&c->rm.cfg, &gc)) ||
                                (st = nn_gpt2_cls_declare(&c->rm.ps, &c->score, &gc, c->num_labels))))
        goto done;
    if ((st = recipe_model_alloc(&c->rm, o->seed))) goto done; /* HF's init of backbone and head */
    if (c->kind == CLS_GPT2) nn_gpt2_cls_init(&c->score, &gc, o->seed);
    c->ps = &c->rm.ps;
    if (!(c->fresh = calloc((size_t)c->ps->n, sizeof *c->fresh))) {
        st = ag_fail(AG_ERR_MEMORY, "finetune: out of memory");
        goto done;
    }

    /* the pretrained weights, by name */
    if (own) {
        /* whatever the run holds, by name (an ELECTRA run also holds its generator, unused here) */
        if ((st = ckpt_declare(ckpt, &src)) || (st = ag_params_finalize(&src)) ||
            (st = ckpt_load_params(ckpt, &src)))
            goto done;
        st = copy_by_name(&c->rm.ps, &src, ckpt, o->quiet, c->fresh);
    } else {
        if ((st = ckpt_safetensors_declare(weights, &src)) || (st = ag_params_finalize(&src)) ||
            (st = ckpt_safetensors_load(weights, &src, NULL, 0)))
            goto done;
        st = copy_by_name(&c->rm.ps, &src, weights, o->quiet, c->fresh);
    }
    if (st) goto done;

    /* the tokenizer: the model's own when the folder has one, else bytes */
    snprintf(path, sizeof path, "%s/tokenizer.json", o->init);
    char vocab_txt[1024], vocab_json[1024];
    snprintf(vocab_txt, sizeof vocab_txt, "%s/vocab.txt", o->init);
    snprintf(vocab_json, sizeof vocab_json, "%s/vocab.json", o->init);
    if (file_exists(path) || file_exists(vocab_txt) || file_exists(vocab_json)) {
        if ((st = data_tokenizer_load(&c->tok, file_exists(path) ? path : o->init))) goto done;
        c->have_tok = true;
        if (c->kind == CLS_ENCODER) {
            const cJSON *pad = cJSON_GetObjectItemCaseSensitive(j, "pad_token_id");
            c->pad_id = c->tok.pad_id >= 0 ? c->tok.pad_id : cJSON_IsNumber(pad) ? pad->valueint : 0;
        }
    } else if (c->kind == CLS_GPT2 && gc.vocab_size == DATA_BYTE_VOCAB) {
        c->bytes = true;
    } else {
        st = ag_fail(AG_ERR_ARG, "finetune: %s has no tokenizer (tokenizer.json, vocab.txt or vocab.json) and is "
                     "not byte-level (vocab_size %d)", o->init, DATA_BYTE_VOCAB);
    }
done:
    if (own) ckpt_state_free(&cs);
    free(src_config);
    cJSON_Delete(j);
    ag_params_free(&src);
    return st;
}

/* ---------------------------------------------------------------- the bag of words */

/* Words are the text's whitespace-separated pieces, lower-cased (the polarity
 * sentences come tokenised: "it's a bad film ."). */
typedef struct word_iter { const char *p; char buf[256]; } word_iter;
static const char *next_word(word_iter *w, size_t *len) {
    while (*w->p == ' ' || *w->p == '\t' || *w->p == '\r' || *w->p == '\n') ++w->p;
    if (!*w->p) return NULL;
    size_t n = 0;
    while (*w->p && *w->p != ' ' && *w->p != '\t' && *w->p != '\r' && *w->p != '\n') {
        char ch = *w->p++;
        if (n < sizeof w->buf) w->buf[n++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    *len = n;
    return w->buf;
}

typedef struct word_count { const char *w; size_t len; int64_t count, first; } word_count;
static int by_count(const void *a, const void *b) {
    const word_count *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first; /* ties: first seen first */
}

/* The vocabulary: the bow_max_features words of the training texts that occur
 * in the most examples. */
static ag_status build_bow(classifier *c, const recipe_tsv *train, const recipe_finetune_opts *o) {
    data_strmap df = {0}, first = {0};
    ag_status st = AG_OK;
    for (int64_t i = 0; i < train->n && !st; ++i) {
        data_strmap seen = {0};
        for (int k = 0; k < train->n_texts && !st; ++k) {
            word_iter w = {.p = k ? train->ex[i].b : train->ex[i].a};
            size_t len;
            for (const char *s; (s = next_word(&w, &len)) && !st;)
                if (data_strmap_get(&seen, s, len) < 0) {
                    st = data_strmap_put(&seen, s, len, 1);
                    if (!st) st = data_strmap_add(&df, s, len, 1);
                    if (!st && data_strmap_get(&first, s, len) < 0) st = data_strmap_put(&first, s, len, i);
                }
        }
        data_strmap_free(&seen);
    }
    word_count *wc = st ? NULL : malloc((size_t)(df.n ? df.n : 1) * sizeof *wc);
    if (!st && !wc) st = ag_fail(AG_ERR_MEMORY, "finetune: out of memory");
    int64_t n = 0;
    for (int64_t s = 0; !st && s < df.cap; ++s)
        if (df.keys[s])
            wc[n++] = (word_count){df.keys[s], df.klens[s], df.vals[s], data_strmap_get(&first, df.keys[s], df.klens[s])};
    if (!st) {
        qsort(wc, (size_t)n, sizeof *wc, by_count);
        c->n_features = (int)(n < o->bow_max_features ? n : o->bow_max_features);
        for (int f = 0; f < c->n_features && !st; ++f) st = data_strmap_put(&c->words, wc[f].w, wc[f].len, f);
    }
    /* the model: logits = x W^T + b, x [B, n_texts*F] of 0/1 */
    ag_params_init(&c->bow_ps);
    if (!st) st = nn_linear_init(&c->bow_ps, &c->score, "bow", c->n_features * c->n_texts, c->num_labels, true,
                                 AG_LINEAR_OUT_IN);
    if (!st) st = ag_params_finalize(&c->bow_ps); /* zeros: logistic regression's usual start */
    c->ps = &c->bow_ps;
    if (!st) {
        char buf[256];
        snprintf(buf, sizeof buf, "{\"model_type\": \"bow\", \"num_labels\": %d, \"features\": %d, \"n_texts\": %d}",
                 c->num_labels, c->n_features, c->n_texts);
        if (!(c->config_text = strdup(buf))) st = ag_fail(AG_ERR_MEMORY, "finetune: out of memory");
    }
    /* the vocabulary, so that the features can be rebuilt: one word a line, feature order */
    if (!st && o->out_dir) {
        char path[1024];
        snprintf(path, sizeof path, "%s/bow-vocab.txt", o->out_dir);
        FILE *f = fopen(path, "w");
        if (!f) st = ag_fail(AG_ERR_IO, "finetune: cannot write %s: %s", path, strerror(errno));
        for (int i = 0; f && i < c->n_features; ++i) fprintf(f, "%.*s\n", (int)wc[i].len, wc[i].w);
        if (f) fclose(f);
    }
    free(wc);
    data_strmap_free(&df);
    data_strmap_free(&first);
    return st;
}

/* ================================================================ encoded examples */

/* Every example's input, encoded once: ids (tokens, or bag-of-words feature
 * indices) and token type ids, example i at [off[i], off[i+1]). */
typedef struct encoded {
    int32_t *ids, *types;
    int64_t *off; /* [n+1] */
    int32_t *labels;
    int64_t n, cap;
} encoded;

static void encoded_free(encoded *e) {
    free(e->ids), free(e->types), free(e->off), free(e->labels);
    memset(e, 0, sizeof *e);
}

static ag_status push_id(encoded *e, int32_t id, int32_t type) {
    if (e->off[e->n] + 1 > e->cap) {
        e->cap = e->cap ? 2 * e->cap : 1 << 16;
        int32_t *a = realloc(e->ids, (size_t)e->cap * sizeof *a), *b = a ? realloc(e->types, (size_t)e->cap * sizeof *b) : NULL;
        if (a) e->ids = a;
        if (b) e->types = b;
        if (!a || !b) return ag_fail(AG_ERR_MEMORY, "finetune: out of memory");
    }
    e->ids[e->off[e->n]] = id;
    e->types[e->off[e->n]++] = type;   /* off[n] is the end of example n-1 */
    return AG_OK;
}

static ag_status encode_set(classifier *c, const recipe_tsv *d, const char *path, int seq, encoded *e) {
    memset(e, 0, sizeof *e);
    e->off = calloc((size_t)d->n + 1, sizeof *e->off);
    e->labels = malloc((size_t)d->n * sizeof *e->labels);
    if (!e->off || !e->labels) return ag_fail(AG_ERR_MEMORY, "finetune: out of memory");
    if (d->n_texts != c->n_texts)
        return ag_fail(AG_ERR_ARG, "%s: %s, but the training file has %s", path,
                       d->n_texts == 2 ? "pairs" : "single texts", c->n_texts == 2 ? "pairs" : "single texts");
    data_encoding enc = {0};
    ag_status st = AG_OK;
    for (int64_t i = 0; i < d->n && !st; ++i) {
        const recipe_example *x = &d->ex[i];
        if (x->label >= c->num_labels) {
            st = ag_fail(AG_ERR_ARG, "%s: example %lld has label %d, but the classifier has %d labels", path,
                         (long long)i + 1, x->label, c->num_labels);
            break;
        }
        e->labels[i] = x->label;
        e->off[i + 1] = e->off[i];
        e->n = i + 1; /* push_id appends to example e->n - 1 */
        if (c->kind == CLS_BOW) {
            /* binary features: each word once; text_b's words in the second half */
            data_strmap seen = {0};
            for (int k = 0; k < d->n_texts && !st; ++k) {
                word_iter w = {.p = k ? x->b : x->a};
                size_t len;
                for (const char *s; (s = next_word(&w, &len)) && !st;) {
                    int64_t f = data_strmap_get(&c->words, s, len);
                    if (f < 0) continue;
                    f += (int64_t)k * c->n_features;
                    char key[16];
                    int kl = snprintf(key, sizeof key, "%lld", (long long)f);
                    if (data_strmap_get(&seen, key, (size_t)kl) >= 0) continue;
                    st = data_strmap_put(&seen, key, (size_t)kl, 1);
                    if (!st) st = push_id(e, (int32_t)f, 0);
                }
            }
            data_strmap_free(&seen);
        } else if (c->bytes) {
            /* one id per byte; a pair is text_a, a newline, text_b; cut at seq */
            const char *parts[2] = {x->a, x->b};
            int64_t n = 0;
            for (int k = 0; k < d->n_texts && !st; ++k) {
                if (k && n < seq) st = push_id(e, '\n', 0), ++n;
                for (const unsigned char *s = (const unsigned char *)parts[k]; *s && n < seq && !st; ++s, ++n)
                    st = push_id(e, *s, k);
            }
        } else {
            data_encode_opts eo = {.add_special = true, .max_len = seq};
            st = data_tokenizer_encode_pair(&c->tok, x->a, x->b, eo, &enc);
            for (int64_t t = 0; t < enc.n && !st; ++t) st = push_id(e, enc.ids[t], enc.type_ids[t]);
        }
        if (!st && e->off[i + 1] == e->off[i] && c->kind != CLS_BOW)
            st = ag_fail(AG_ERR_ARG, "%s: example %lld encodes to no tokens", path, (long long)i + 1);
    }
    e->n = d->n;
    data_encoding_free(&enc);
    return st;
}

/* ================================================================ forward */

/* The logits [B,L] of examples idx[0..B) of `e`. */
static ag_tensor *forward(ag_ctx *ctx, const classifier *c, const encoded *e, const int64_t *idx, int B) {
    if (c->kind == CLS_BOW) {
        const int F = c->n_features * c->n_texts;
        ag_tensor *x = ag_new(ctx, 2, AG_SHAPE(B, F), false); /* [B,F] zeros */
        if (!x) return NULL;
        for (int b = 0; b < B; ++b)
            for (int64_t j = e->off[idx[b]]; j < e->off[idx[b] + 1]; ++j) x->data[(int64_t)b * F + e->ids[j]] = 1.0f;
        return nn_linear_forward(ctx, &c->score, x);
    }
    int64_t T = 1;
    for (int b = 0; b < B; ++b) {
        int64_t len = e->off[idx[b] + 1] - e->off[idx[b]];
        if (len > T) T = len;
    }
    /* ids, types and mask [B,T]: each row its tokens, then padding */
    ag_ints *ids = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T)), *types = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T)),
            *mask = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T));
    if (!ids || !types || !mask) return NULL;
    for (int b = 0; b < B; ++b) {
        int64_t o = e->off[idx[b]], len = e->off[idx[b] + 1] - o;
        for (int64_t t = 0; t < T; ++t) {
            bool tok = t < len;
            ids->data[b * T + t] = tok ? e->ids[o + t] : c->pad_id;
            types->data[b * T + t] = tok ? e->types[o + t] : 0;
            mask->data[b * T + t] = tok;
        }
    }
    if (c->kind == CLS_GPT2 && c->pool_mean) {
        /* the mean of the final hidden states over each row's tokens, then
         * score: h [B,T,C] * mask [B,T,1], summed over T [B,C], / length [B,1] */
        ag_tensor *h = nn_gpt2_forward(ctx, &c->rm.gpt2, ids, mask, 0);
        ag_tensor *m = ag_new(ctx, 3, AG_SHAPE(B, T, 1), false), *inv = ag_new(ctx, 2, AG_SHAPE(B, 1), false);
        if (!h || !m || !inv) return NULL;
        for (int b = 0; b < B; ++b) {
            int64_t len = e->off[idx[b] + 1] - e->off[idx[b]];
            for (int64_t t = 0; t < len; ++t) m->data[b * T + t] = 1.0f;
            inv->data[b] = 1.0f / (float)len;
        }
        return nn_linear_forward(ctx, &c->score, ag_mul(ctx, ag_sum(ctx, ag_mul(ctx, h, m), 1, false), inv));
    }
    if (c->kind == CLS_GPT2) return nn_gpt2_cls_logits(ctx, &c->rm.gpt2, &c->score, ids, mask, c->pad_id);
    return recipe_model_cls_logits(ctx, &c->rm, ids, types, mask);
}

/* Mean loss and metrics over all of `e`, in eval mode without a tape. */
static ag_status evaluate(ag_ctx *ctx, const classifier *c, const encoded *e, int B, double *loss,
                          recipe_cls_metrics *m) {
    int64_t *idx = malloc((size_t)B * sizeof *idx);
    int32_t *pred = malloc((size_t)e->n * sizeof *pred);
    ag_status st = idx && pred ? AG_OK : ag_fail(AG_ERR_MEMORY, "finetune: out of memory");
    bool was_training = ctx->training;
    ag_ctx_train(ctx, false);
    double sum = 0;
    for (int64_t s = 0; s < e->n && !st; s += B) {
        int nb = (int)(e->n - s < B ? e->n - s : B);
        for (int b = 0; b < nb; ++b) idx[b] = s + b;
        ag_ctx_reset(ctx);
        ag_no_grad_begin(ctx);
        ag_tensor *logits = forward(ctx, c, e, idx, nb);
        ag_ints y = ag_ints_wrap(e->labels + s, 1, AG_SHAPE(nb));
        ag_tensor *l = ag_cross_entropy(ctx, logits, &y, 0.0f, AG_REDUCE_SUM);
        ag_no_grad_end(ctx);
        if (!l) { st = ag_error_status(); break; }
        sum += l->data[0];
        for (int b = 0; b < nb; ++b) { /* argmax; ties go to the lower label */
            const float *z = logits->data + (int64_t)b * c->num_labels;
            int best = 0;
            for (int k = 1; k < c->num_labels; ++k)
                if (z[k] > z[best]) best = k;
            pred[s + b] = best;
        }
    }
    ag_ctx_reset(ctx);
    ag_ctx_train(ctx, was_training);
    if (!st) st = recipe_cls_metrics_compute(e->labels, pred, e->n, c->num_labels, m);
    *loss = sum / (double)e->n;
    free(idx), free(pred);
    return st;
}

/* ================================================================ freezing */

static bool is_head(const char *name) {
    return strncmp(name, "score.", 6) == 0 || strncmp(name, "classifier.", 11) == 0 ||
           strncmp(name, "pre_classifier.", 15) == 0 || strncmp(name, "bow.", 4) == 0;
}

/* The layer a parameter belongs to ("transformer.h.3.attn..." -> 3,
 * "bert.encoder.layer.3...." -> 3), or -1 for none. */
static int layer_of(const char *name) {
    const char *keys[] = {".h.", ".layer.", NULL};
    for (int i = 0; keys[i]; ++i) {
        const char *p = strstr(name, keys[i]);
        if (p) return atoi(p + strlen(keys[i]));
    }
    return -1;
}

static bool is_embedding(const char *name) {
    return strstr(name, "wte.") || strstr(name, "wpe.") || strstr(name, "embeddings.");
}

/* Whether `name` is frozen under the options: --freeze-all-but-head freezes
 * everything but the classification head; --freeze N the embeddings and
 * layers 0 .. N-1. What the checkpoint did not hold (fresh: the head, and
 * a pooler an MLM run never trained) is random and always trained. */
static bool is_frozen(const char *name, bool fresh, const recipe_finetune_opts *o) {
    if (fresh) return false;
    if (o->freeze_all_but_head) return !is_head(name);
    if (o->freeze <= 0) return false;
    int l = layer_of(name);
    return is_embedding(name) || (l >= 0 && l < o->freeze);
}

/* ================================================================ the run */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* best.json: the best epoch's metrics (and, when given, its test metrics). */
static ag_status write_best_json(const char *out_dir, int epoch, int64_t step, const recipe_cls_metrics *m,
                                 const recipe_cls_metrics *test) {
    char path[1024];
    snprintf(path, sizeof path, "%s/best.json", out_dir);
    FILE *f = fopen(path, "w");
    if (!f) return ag_fail(AG_ERR_IO, "finetune: cannot write %s: %s", path, strerror(errno));
    fprintf(f, "{\"epoch\": %d, \"step\": %lld, \"accuracy\": %.6f, \"f1\": %.6f, \"mcc\": %.6f, \"n\": %lld", epoch,
            (long long)step, m->accuracy, m->f1, m->mcc, (long long)m->n);
    if (test)
        fprintf(f, ", \"test\": {\"accuracy\": %.6f, \"f1\": %.6f, \"mcc\": %.6f, \"n\": %lld}", test->accuracy,
                test->f1, test->mcc, (long long)test->n);
    fprintf(f, "}\n");
    if (fclose(f) != 0) return ag_fail(AG_ERR_IO, "finetune: cannot write %s: %s", path, strerror(errno));
    return AG_OK;
}

static ag_status save_best(const char *out_dir, const classifier *c, int epoch, int64_t step,
                           const recipe_cls_metrics *m) {
    char path[1024];
    snprintf(path, sizeof path, "%s/ckpt.h5", out_dir);
    ckpt_state st = {.config = c->config_text, .global_step = step, .recipe = "classify"};
    ag_status s = ckpt_save(path, c->ps, &st);
    return s ? s : write_best_json(out_dir, epoch, step, m, NULL);
}

ag_status recipe_finetune(const recipe_finetune_opts *o, recipe_finetune_result *res) {
    if (o->epochs < 1 || o->batch < 1 || o->seq < 2 || !(o->lr > 0) || o->weight_decay < 0 || o->warmup < 0 ||
        o->warmup > 1 || o->freeze < 0 || o->dropout >= 1)
        return ag_fail(AG_ERR_ARG, "finetune: --epochs, --batch >= 1, --seq >= 2, --lr > 0, --weight-decay >= 0, "
                       "0 <= --warmup <= 1, --freeze >= 0, --dropout < 1");
    if (!o->train_path || !o->eval_path || !o->out_dir || (!o->bow && !o->init))
        return ag_fail(AG_ERR_ARG, "finetune: needs --train, --eval, --out and --init (or the bag-of-words model)");
    recipe_tsv train = {0}, dev = {0}, test = {0};
    encoded etr = {0}, edv = {0}, ete = {0};
    int64_t best_step = 0;
    classifier c = {0};
    c.kind = o->bow ? CLS_BOW : CLS_GPT2;
    optim *opt = NULL;
    ag_ctx *ctx = NULL;
    FILE *metrics = NULL;
    int64_t *perm = NULL;
    ag_status st;
    if ((st = recipe_tsv_read(&train, o->train_path)) || (st = recipe_tsv_read(&dev, o->eval_path)) ||
        (o->test_path && (st = recipe_tsv_read(&test, o->test_path))) || (st = ag_make_dirs(o->out_dir)))
        goto done;
    c.num_labels = o->num_labels > 0 ? o->num_labels : train.max_label + 1;
    if (c.num_labels < 2) c.num_labels = 2;
    c.n_texts = train.n_texts;
    c.pool_mean = o->pool_mean;
    if ((st = o->bow ? build_bow(&c, &train, o) : build_transformer(&c, o))) goto done;
    if ((st = encode_set(&c, &train, o->train_path, o->seq, &etr)) ||
        (st = encode_set(&c, &dev, o->eval_path, o->seq, &edv)) ||
        (o->test_path && (st = encode_set(&c, &test, o->test_path, o->seq, &ete))))
        goto done;

    /* the optimizer: AdamW, biases and norms without decay; frozen parameters
     * in a group whose learning rate is zero, so no step ever moves them */
    optim_config oc = optim_adamw_defaults();
    oc.weight_decay = o->weight_decay;
    if ((st = optim_create(&opt, c.ps, &oc))) goto done;
    int frozen_group = optim_add_group(opt, 0.0, 0.0);
    if (frozen_group < 0) { st = ag_error_status(); goto done; }
    int64_t n_trainable = 0;
    for (int64_t i = 0; i < c.ps->n; ++i) {
        if (is_frozen(c.ps->p[i]->name, c.fresh && c.fresh[i], o)) {
            if ((st = optim_assign(opt, c.ps->p[i]->name, frozen_group))) goto done;
        } else {
            n_trainable += c.ps->p[i]->numel;
        }
    }
    const int64_t steps_per_epoch = (train.n + o->batch - 1) / o->batch;
    const int64_t epoch_steps =
        o->max_train_steps > 0 && o->max_train_steps < steps_per_epoch ? o->max_train_steps : steps_per_epoch;
    optim_schedule sched = {.kind = OPTIM_SCHED_LINEAR, .lr = o->lr, .min_lr = 0,
                            .warmup_steps = (int64_t)llround(o->warmup * (double)(epoch_steps * o->epochs)),
                            .total_steps = epoch_steps * o->epochs};
    if ((st = optim_schedule_check(&sched))) goto done;

    char path[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out_dir);
    if (!(metrics = fopen(path, "w"))) { st = ag_fail(AG_ERR_IO, "finetune: cannot write %s: %s", path, strerror(errno)); goto done; }
    ctx = ag_ctx_create(0);
    perm = malloc((size_t)train.n * sizeof *perm);
    if (!ctx || !perm) { st = ag_fail(AG_ERR_MEMORY, "finetune: out of memory"); goto done; }
    if (!o->quiet) {
        const char *what = c.kind == CLS_BOW ? "bag-of-words logistic regression"
                           : c.kind == CLS_GPT2 ? "GPT2ForSequenceClassification" : c.rm.arch;
        printf("finetune classify: %s, %d labels, %lld parameters (%lld trainable)%s\n", what, c.num_labels,
               (long long)c.ps->total, (long long)n_trainable,
               c.kind == CLS_BOW ? "" : c.bytes ? ", byte-level input" : ", the model's tokenizer");
        printf("data: %lld training examples, %lld held out", (long long)train.n, (long long)dev.n);
        if (o->test_path) printf(" (and %lld for the test)", (long long)test.n);
        printf("; %d epochs of %lld steps, batch %d\n", o->epochs, (long long)epoch_steps, o->batch);
        fflush(stdout);
    }

    recipe_finetune_result r = {.best_epoch = 0, .n_params = c.ps->total, .n_trainable = n_trainable};
    double best = -INFINITY;
    int64_t step = 0;
    ag_ctx_train(ctx, true);
    for (int epoch = 1; epoch <= o->epochs; ++epoch) {
        /* a fresh shuffle each epoch, a pure function of (seed, epoch) */
        for (int64_t i = 0; i < train.n; ++i) perm[i] = i;
        for (int64_t i = train.n - 1; i > 0; --i) {
            int64_t j = (int64_t)(ag_rng_u64(o->seed ^ (0x51ed27ull * (uint64_t)epoch), (uint64_t)i) % (uint64_t)(i + 1));
            int64_t t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        double loss_sum = 0, t0 = now_s();
        int64_t seen = 0;
        for (int64_t s = 0; s < epoch_steps; ++s, ++step) {
            int64_t from = s * o->batch;
            int nb = (int)(train.n - from < o->batch ? train.n - from : o->batch);
            ag_ctx_reset(ctx);
            ag_ctx_seed(ctx, o->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(step + 1)));
            ag_tensor *logits = forward(ctx, &c, &etr, perm + from, nb);
            int32_t *y = ag_arena_alloc(ctx, (size_t)nb * sizeof *y);
            if (!y) { st = ag_error_status(); goto done; }
            for (int b = 0; b < nb; ++b) y[b] = etr.labels[perm[from + b]];
            ag_ints yy = ag_ints_wrap(y, 1, AG_SHAPE(nb));
            ag_tensor *loss = ag_cross_entropy(ctx, logits, &yy, 0.0f, AG_REDUCE_MEAN);
            if (!loss || (st = ag_backward(ctx, loss, NULL))) { st = ag_error_status(); goto done; }
            if (!isfinite(loss->data[0])) {
                st = ag_fail(AG_ERR_NUMERIC, "finetune: the loss is %g at step %lld (hint: lower --lr)", loss->data[0],
                             (long long)step);
                goto done;
            }
            loss_sum += loss->data[0] * nb, seen += nb;
            double lr = optim_schedule_lr(&sched, step);
            if ((st = optim_clip_grad_norm(c.ps, 1.0, NULL)) || (st = optim_step(opt, lr))) goto done;
            ag_params_zero_grad(c.ps);
            int every = (int)(epoch_steps / 5 > 0 ? epoch_steps / 5 : 1);
            if (!o->quiet && ((s + 1) % every == 0 || s + 1 == epoch_steps)) {
                printf("epoch %d  step %5lld/%lld  loss %.4f  lr %.2e  %6.1f examples/s\n", epoch, (long long)s + 1,
                       (long long)epoch_steps, loss_sum / (double)seen, lr, (double)seen / (now_s() - t0));
                fflush(stdout);
            }
        }
        ag_ctx_reset(ctx);
        double eval_loss;
        recipe_cls_metrics m;
        if ((st = evaluate(ctx, &c, &edv, o->batch, &eval_loss, &m))) goto done;
        r.train_loss = loss_sum / (double)seen;
        r.last = m;
        fprintf(metrics, "{\"epoch\": %d, \"step\": %lld, \"train_loss\": %.6f, \"eval_loss\": %.6f, \"accuracy\": %.6f, "
                         "\"f1\": %.6f, \"mcc\": %.6f, \"lr\": %.6g}\n",
                epoch, (long long)step, r.train_loss, eval_loss, m.accuracy, m.f1, m.mcc, optim_schedule_lr(&sched, step));
        fflush(metrics);
        double v = metric_value(&m, o->metric);
        bool improved = v > best;
        if (!o->quiet)
            printf("epoch %d  held-out: loss %.4f  accuracy %.4f  F1 %.4f  MCC %.4f%s\n", epoch, eval_loss, m.accuracy,
                   m.f1, m.mcc, improved ? "  (best so far: saved)" : "");
        if (improved) {
            best = v;
            r.best_epoch = epoch;
            r.best = m;
            if ((st = save_best(o->out_dir, &c, epoch, step, &m))) goto done;
            best_step = step;
        }
    }
    if (o->test_path) { /* the kept checkpoint, read back and scored once on data that chose nothing */
        double test_loss;
        snprintf(path, sizeof path, "%s/ckpt.h5", o->out_dir);
        if ((st = ckpt_load_params(path, c.ps)) || (st = evaluate(ctx, &c, &ete, o->batch, &test_loss, &r.test)) ||
            (st = write_best_json(o->out_dir, r.best_epoch, best_step, &r.best, &r.test)))
            goto done;
        r.has_test = true;
        if (!o->quiet)
            printf("test (epoch %d's weights): loss %.4f  accuracy %.4f  F1 %.4f  MCC %.4f on %lld examples\n",
                   r.best_epoch, test_loss, r.test.accuracy, r.test.f1, r.test.mcc, (long long)r.test.n);
    }
    if (res) *res = r;
done:
    if (metrics) fclose(metrics);
    free(perm);
    ag_ctx_free(ctx);
    optim_free(opt);
    encoded_free(&etr), encoded_free(&edv), encoded_free(&ete);
    classifier_free(&c);
    recipe_tsv_free(&train), recipe_tsv_free(&dev), recipe_tsv_free(&test);
    return st;
}
