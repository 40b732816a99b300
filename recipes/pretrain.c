/* pretrain.c: every pretraining objective behind one trainer
 * (`tapegrad pretrain --recipe mlm|nsp|sop|electra|span|denoise|tlm|ctrl`;
 * clm keeps its own loop in train.c).
 *
 * What it is: the loop of train.c (AdamW, the lr schedule, clipping, gradient
 * accumulation normalised by target tokens, held-out evaluation, metrics.jsonl,
 * checkpoints, Ctrl-C, --resume) around a different batch source. The shards
 * of `tapegrad prepare` are read whole into a recipe_corpus (tokens with their
 * document and sentence offsets, the separators dropped: every collator adds
 * its own [CLS]/[SEP]/</s>), and batch number (step*grad_accum + micro) is
 * the objective's collator called with that index (collate.h). A collator is
 * a pure function of (corpus, config, seed, index), so the batch stream has
 * one integer of state and a resumed run takes exactly the unbroken run's
 * steps.
 * What it is not: a streaming loader. A corpus the size of the State of the
 * Union addresses (3 M tokens) is 12 MB in memory; far larger corpora want the
 * collators fed from data_stream, which this file does not do.
 *
 * One optimizer step:
 *   for each of grad_accum micro-batches:
 *     batch = collate(corpus, cfg, B, T, seed, step*grad_accum + micro)
 *     loss_i = the model's own mean loss on it (recipe_model_loss), over n_i
 *              counted tokens (masked tokens, target tokens, ...)
 *     backward(n_i * loss_i): the loss summed over the micro-batch's tokens
 *   scale the gradients by 1 / sum_i n_i: the mean over every counted token
 *   clip, schedule, AdamW, zero the gradients.
 * For the combined losses (MLM + NSP, MLM + SOP, generator + 50 x
 * discriminator) n_i is the MLM part's count, so the weighting across
 * micro-batches follows the masked tokens, as a single big batch would.
 *
 * ELECTRA's two models in one registry. The discriminator is the recipe's
 * model (ElectraForPreTraining from --config); the generator
 * (ElectraForMaskedLM from --generator-config, same embedding_size) is
 * declared into a second registry that is never finalized. Its parameters
 * other than the embeddings are declared again in the main registry as
 * "generator." + name, and after the main registry is allocated each
 * generator tensor is pointed at a slice of the main blocks: its own
 * "generator.*" slice, or, for "electra.embeddings.*", the discriminator's
 * slice of the same name. So the generator's forward reads and its backward
 * accumulates into the very floats the discriminator uses: the embeddings
 * are one tensor with one gradient, and the optimizer, the clipping norm and
 * the checkpoint see every parameter exactly once, by walking one registry.
 */
#include "pretrain.h"

#include "ckpt.h"
#include "collate.h"
#include "data.h"
#include "models.h"
#include "optim.h"
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;
static void on_sigint(int sig) { (void)sig; stop_requested = 1; }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---------------------------------------------------------------- the recipes */

static const struct {
    const char *name;
    recipe_objective obj;
    const char *arch; /* the class the recipe trains; NULL: the config's own */
} recipes[] = {
    {"mlm", RECIPE_OBJ_MLM, NULL},          /* BertForMaskedLM, RobertaForMaskedLM, ... */
    {"nsp", RECIPE_OBJ_NSP, NULL},          /* BertForPreTraining */
    {"sop", RECIPE_OBJ_SOP, NULL},          /* AlbertForPreTraining */
    {"electra", RECIPE_OBJ_ELECTRA, "ElectraForPreTraining"},
    {"span", RECIPE_OBJ_SPAN, NULL},        /* T5ForConditionalGeneration */
    {"denoise", RECIPE_OBJ_DENOISE, NULL},  /* BartForConditionalGeneration */
    {"tlm", RECIPE_OBJ_TLM, NULL},          /* XLMWithLMHeadModel */
    {"ctrl", RECIPE_OBJ_CTRL, NULL},        /* CTRLLMHeadModel, GPT2LMHeadModel */
};

ag_status recipe_objective_from_name(const char *name, recipe_objective *obj) {
    for (size_t i = 0; i < sizeof recipes / sizeof *recipes; ++i)
        if (name && strcmp(name, recipes[i].name) == 0) { *obj = recipes[i].obj; return AG_OK; }
    return ag_fail(AG_ERR_ARG, "pretrain: --recipe '%s' is not one of mlm, nsp, sop, electra, clm, span, denoise, tlm, "
                   "ctrl", name ? name : "(none)");
}

static const char *objective_name(recipe_objective obj) {
    for (size_t i = 0; i < sizeof recipes / sizeof *recipes; ++i)
        if (recipes[i].obj == obj) return recipes[i].name;
    return "?";
}

/* ---------------------------------------------------------------- corpus from shards */

void recipe_owned_corpus_free(recipe_owned_corpus *oc) {
    free(oc->tokens);
    free(oc->doc_start);
    free(oc->sent_start);
    free(oc->control);
    memset(oc, 0, sizeof *oc);
}

/* Appends a document boundary / sentence boundary, growing the arrays. */
static bool push64(int64_t **a, int64_t *n, int64_t *cap, int64_t v) {
    if (*n == *cap) {
        int64_t c = *cap ? 2 * *cap : 1024;
        int64_t *p = realloc(*a, (size_t)c * sizeof *p);
        if (!p) return false;
        *a = p, *cap = c;
    }
    (*a)[(*n)++] = v;
    return true;
}

ag_status recipe_corpus_load(recipe_owned_corpus *oc, const char *dir, const char *split, bool control_first) {
    memset(oc, 0, sizeof *oc);
    char **files = NULL;
    int n_files = 0;
    int32_t vocab = 0, sep = -1;
    ag_status st = data_manifest_split(dir, split, &files, &n_files, &vocab, &sep, NULL);
    if (st) return st;
    int64_t tok_cap = 0, doc_cap = 0, sent_cap = 0, ctl_cap = 0, n_ctl = 0;
    int64_t *ctl = NULL; /* [n_docs] control ids while loading (int64 to share push64) */
    data_doc_shard s = {0};
    bool open_doc = false; /* the last document read may continue in the next shard */
    for (int f = 0; f < n_files && st == AG_OK; ++f) {
        if ((st = data_doc_shard_read(&s, files[f]))) break;
        /* a shard's total tokens is at most its size: grow once per shard */
        if (oc->n_tokens + s.n > tok_cap) {
            tok_cap = 2 * (oc->n_tokens + s.n);
            int32_t *p = realloc(oc->tokens, (size_t)tok_cap * sizeof *p);
            if (!p) { st = ag_fail(AG_ERR_MEMORY, "pretrain: out of memory reading %s", files[f]); break; }
            oc->tokens = p;
        }
        int64_t si = 0;
        for (int64_t d = 0; d < s.n_docs && st == AG_OK; ++d) {
            int64_t a = s.doc_start[d], b = d + 1 < s.n_docs ? s.doc_start[d + 1] : s.n;
            bool ends = b > a && s.tokens[b - 1] == sep; /* the document ends in this shard */
            bool continues = d == 0 && s.continues && open_doc;
            bool fresh = !continues;
            int64_t end = ends ? b - 1 : b;
            if (fresh) {
                int32_t control = control_first && a < end ? s.tokens[a++] : -1; /* its first id is its code */
                /* an empty document (or only a control code) leaves no trace */
                if (end <= a) {
                    open_doc = false;
                    while (si < s.n_sents && s.sent_start[si] < b) ++si;
                    continue;
                }
                if (control_first && !push64(&ctl, &n_ctl, &ctl_cap, control)) goto oom;
                if (!push64(&oc->doc_start, &oc->n_docs, &doc_cap, oc->n_tokens)) goto oom;
                if (!push64(&oc->sent_start, &oc->n_sents, &sent_cap, oc->n_tokens)) goto oom;
            }
            /* the sentence starts inside (a, end): a's own start is the document's */
            while (si < s.n_sents && s.sent_start[si] <= a) ++si;
            for (int64_t i = a; i < end; ++i) {
                if (si < s.n_sents && s.sent_start[si] == i) {
                    if (i > a && !push64(&oc->sent_start, &oc->n_sents, &sent_cap, oc->n_tokens)) goto oom;
                    ++si;
                }
                oc->tokens[oc->n_tokens++] = s.tokens[i];
            }
            while (si < s.n_sents && s.sent_start[si] < b) ++si;
            open_doc = !ends;
        }
        data_doc_shard_free(&s);
    }
    if (st == AG_OK && oc->n_docs == 0)
        st = ag_fail(AG_ERR_ARG, "pretrain: split \"%s\" of %s has no tokens", split, dir);
    if (st == AG_OK) {
        /* the closing offsets: [n_docs + 1] and [n_sents + 1] */
        if (!push64(&oc->doc_start, &oc->n_docs, &doc_cap, oc->n_tokens) ||
            !push64(&oc->sent_start, &oc->n_sents, &sent_cap, oc->n_tokens))
            goto oom;
        oc->n_docs--, oc->n_sents--;
        if (control_first) {
            oc->control = malloc((size_t)(n_ctl ? n_ctl : 1) * sizeof *oc->control);
            if (!oc->control) goto oom;
            for (int64_t d = 0; d < n_ctl; ++d) oc->control[d] = (int32_t)ctl[d];
        }
    }
    goto done;
oom:
    data_doc_shard_free(&s);
    st = ag_fail(AG_ERR_MEMORY, "pretrain: out of memory reading split \"%s\" of %s", split, dir);
done:
    free(ctl);
    for (int f = 0; f < n_files; ++f) free(files[f]);
    free(files);
    oc->vocab_size = vocab;
    oc->c = (recipe_corpus){oc->tokens, oc->n_tokens, oc->doc_start, oc->n_docs, oc->sent_start, oc->n_sents,
                            oc->control};
    if (st) recipe_owned_corpus_free(oc);
    return st;
}

/* dir/manifest.json parsed (cJSON_Delete it; NULL for text that is not
 * JSON), into *root; *path receives the file's path. Errors: AG_ERR_IO when
 * the file cannot be read, with a hint to run prepare. */
static ag_status read_manifest(const char *dir, char *path, size_t n, cJSON **root) {
    snprintf(path, n, "%s/manifest.json", dir);
    char *text = ag_read_file("pretrain: manifest", path, (size_t)1 << 26, NULL);
    if (!text) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ag_error());
        return ag_fail(AG_ERR_IO, "%s (hint: run 'tapegrad prepare')", msg);
    }
    *root = cJSON_Parse(text);
    free(text);
    return AG_OK;
}

/* The special ids of the manifest's tokenizer into the collators' config: pad,
 * cls, sep, mask, unk; bos and eos are cls and sep ([CLS] ... [SEP] plays
 * <s> ... </s>), or the end-of-text separator when the tokenizer has none. */
ag_status recipe_manifest_specials(const char *dir, recipe_collate_config *cfg, int32_t unk[1]) {
    char path[1024];
    cJSON *root = NULL;
    ag_status st = read_manifest(dir, path, sizeof path, &root);
    if (st) return st;
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(root, "special_ids");
    if (!cJSON_IsObject(sp)) {
        cJSON_Delete(root);
        return ag_fail(AG_ERR_IO, "pretrain: %s has no special_ids object", path);
    }
    int32_t v[6] = {-1, -1, -1, -1, -1, -1};
    const char *names[6] = {"pad", "cls", "sep", "mask", "unk", "end_of_text"};
    for (int i = 0; i < 6; ++i) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(sp, names[i]);
        if (cJSON_IsNumber(x)) v[i] = (int32_t)x->valuedouble;
    }
    cJSON_Delete(root);
    cfg->pad_id = v[0] >= 0 ? v[0] : v[5];
    cfg->cls_id = v[1];
    cfg->sep_id = v[2] >= 0 ? v[2] : v[5];
    cfg->mask_id = v[3];
    cfg->bos_id = v[1] >= 0 ? v[1] : v[5];
    cfg->eos_id = cfg->sep_id;
    *unk = v[4];
    return AG_OK;
}

bool recipe_word_continuations(const data_tokenizer *t, int32_t V, uint8_t *is_cont) {
    memset(is_cont, 0, (size_t)V);
    if (t->kind != DATA_TOK_WORDPIECE && t->kind != DATA_TOK_UNIGRAM) return false;
    static const char punct[] = "!\"#$%&()*+,-./:;?@[\\]^_`{|}~"; /* the script's special_pieces */
    for (int32_t id = 0; id < V && id < t->n_tokens; ++id) {
        const char *p = t->tokens[id];
        if (!p || !p[0] || data_tokenizer_is_special(t, id)) continue;
        if (t->kind == DATA_TOK_WORDPIECE) {
            is_cont[id] = strncmp(p, t->prefix, strlen(t->prefix)) == 0 && t->prefix[0];
            continue;
        }
        /* SentencePiece: "\xe2\x96\x81" is U+2581, the word-start mark */
        if (strncmp(p, "\xe2\x96\x81", 3) == 0 || p[0] == '<' || (p[1] == 0 && strchr(punct, p[0]))) continue;
        bool letters = true;
        for (const char *c = p; *c && letters; ++c)
            letters = ((*c | 32) >= 'a' && (*c | 32) <= 'z') || strchr(punct, *c) != NULL;
        is_cont[id] = letters;
    }
    return true;
}

ag_status recipe_run_tokenizer(const char *data_dir, const char *out_dir) {
    char src[1024], dst[1024];
    snprintf(src, sizeof src, "%s/tokenizer.json", data_dir);
    if (access(src, R_OK) != 0) {
        snprintf(dst, sizeof dst, "%s/manifest.json", data_dir);
        if (access(dst, R_OK) != 0) return AG_OK; /* train.bin/val.bin data: bytes */
        cJSON *root = NULL;
        ag_status st = read_manifest(data_dir, dst, sizeof dst, &root);
        if (st) return st;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tokenizer");
        bool have = cJSON_IsString(t) && strcmp(t->valuestring, "bytes") != 0 && access(t->valuestring, R_OK) == 0;
        if (have) snprintf(src, sizeof src, "%s", t->valuestring);
        cJSON_Delete(root);
        if (!have) return AG_OK;
    }
    data_tokenizer tok;
    ag_status st = data_tokenizer_load(&tok, src);
    if (st) return st;
    snprintf(dst, sizeof dst, "%s/tokenizer.json", out_dir);
    st = data_tokenizer_save(&tok, dst);
    data_tokenizer_free(&tok);
    return st;
}

/* ---------------------------------------------------------------- one objective */

ag_status recipe_objective_init(recipe_objective_state *s, recipe_objective obj, const char *config_path,
                                const char *generator_config, const recipe_owned_corpus *train, int B, int T,
                                uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->obj = obj;
    ag_status st;
    const char *arch = NULL;
    for (size_t i = 0; i < sizeof recipes / sizeof *recipes; ++i)
        if (recipes[i].obj == obj) arch = recipes[i].arch;
    if ((st = recipe_model_declare(&s->model, config_path, arch))) return st;
    (void)train, (void)B, (void)T;
    if (obj == RECIPE_OBJ_ELECTRA) {
        /* the generator: its own registry, never allocated (see the top of the file) */
        if (!generator_config)
            return ag_fail(AG_ERR_ARG, "pretrain electra: --generator-config is needed (an ElectraForMaskedLM "
                           "config.json with the discriminator's embedding_size)");
        if ((st = nn_config_load(&s->gen_cfg, generator_config))) return st;
        nn_electra_config gc;
        ag_params_init(&s->gen_ps);
        s->has_gen = true;
        if ((st = nn_electra_config_read(&s->gen_cfg, &gc)) ||
            (st = nn_electra_declare(&s->gen_ps, &s->gen, &gc, NN_ELECTRA_MASKED_LM)))
            return st;
        const nn_electra_config *dc = &s->model.electra.cfg;
        if (gc.embedding_size != dc->embedding_size || gc.vocab_size != dc->vocab_size ||
            gc.max_position_embeddings != dc->max_position_embeddings || gc.type_vocab_size != dc->type_vocab_size)
            return ag_fail(AG_ERR_ARG, "pretrain electra: %s must match %s in embedding_size, vocab_size, "
                           "max_position_embeddings and type_vocab_size to share the embeddings", generator_config,
                           config_path);
        for (int64_t i = 0; i < s->gen_ps.n; ++i) {
            const ag_tensor *t = s->gen_ps.p[i];
            if (strncmp(t->name, "electra.embeddings.", 19) == 0) continue; /* shared: the discriminator's */
            char name[256];
            snprintf(name, sizeof name, "generator.%s", t->name);
            if (!ag_params_add(&s->model.ps, name, t->ndim, t->shape)) return ag_error_status();
        }
    }
    return AG_OK;
}

ag_status recipe_objective_alloc(recipe_objective_state *s, uint64_t seed) {
    ag_status st = recipe_model_alloc(&s->model, seed);
    if (st || !s->has_gen) return st;
    /* point every generator tensor at its slice of the main blocks */
    for (int64_t i = 0; i < s->gen_ps.n; ++i) {
        ag_tensor *t = s->gen_ps.p[i];
        char name[256];
        bool shared = strncmp(t->name, "electra.embeddings.", 19) == 0;
        snprintf(name, sizeof name, "%s%s", shared ? "" : "generator.", t->name);
        const ag_tensor *home = ag_params_find(&s->model.ps, name);
        if (!home) return ag_fail(AG_ERR_STATE, "pretrain electra: %s is not in the registry", name);
        t->data = home->data;
        t->grad = home->grad;
    }
    /* the generator's own init (N(0, initializer_range)) into its slices; the
     * shared embeddings keep the discriminator's values, written after */
    const int64_t nd = s->model.ps.n;
    float *keep = NULL;
    int64_t emb = 0;
    for (int64_t i = 0; i < nd; ++i)
        if (strncmp(s->model.ps.p[i]->name, "electra.embeddings.", 19) == 0) emb += s->model.ps.p[i]->numel;
    if (!(keep = malloc((size_t)emb * sizeof *keep))) return ag_fail(AG_ERR_MEMORY, "pretrain electra: out of memory");
    int64_t o = 0;
    for (int64_t i = 0; i < nd; ++i) {
        const ag_tensor *t = s->model.ps.p[i];
        if (strncmp(t->name, "electra.embeddings.", 19) == 0) memcpy(keep + o, t->data, t->numel * sizeof *keep), o += t->numel;
    }
    nn_electra_init_weights(&s->gen, seed ^ 0x6e6e6e6eull);
    o = 0;
    for (int64_t i = 0; i < nd; ++i) {
        ag_tensor *t = s->model.ps.p[i];
        if (strncmp(t->name, "electra.embeddings.", 19) == 0) memcpy(t->data, keep + o, t->numel * sizeof *keep), o += t->numel;
    }
    free(keep);
    return AG_OK;
}

void recipe_objective_free(recipe_objective_state *s) {
    if (s->has_gen) {
        /* the tensors point into the main registry's blocks: unhook them first */
        for (int64_t i = 0; i < s->gen_ps.n; ++i) s->gen_ps.p[i]->data = s->gen_ps.p[i]->grad = NULL;
        nn_electra_free(&s->gen);
        ag_params_free(&s->gen_ps);
        nn_config_free(&s->gen_cfg);
    }
    recipe_model_free(&s->model);
    memset(s, 0, sizeof *s);
}

ag_status recipe_objective_collate(recipe_batch *out, const recipe_objective_state *s, const recipe_corpus *c,
                                   const recipe_parallel *p, const recipe_collate_config *cfg, int B, int T,
                                   uint64_t seed, uint64_t index) {
    switch (s->obj) {
    case RECIPE_OBJ_MLM: return recipe_collate_mlm(out, c, cfg, B, T, seed, index);
    case RECIPE_OBJ_NSP: return recipe_collate_nsp(out, c, cfg, B, T, seed, index);
    case RECIPE_OBJ_SOP: return recipe_collate_sop(out, c, cfg, B, T, seed, index);
    case RECIPE_OBJ_ELECTRA: return recipe_collate_electra(out, c, cfg, B, T, seed, index);
    case RECIPE_OBJ_SPAN: return recipe_collate_span(out, c, cfg, B, T, seed, index);
    case RECIPE_OBJ_DENOISE: return recipe_collate_denoise(out, c, cfg, B, T, seed, index);
    case RECIPE_OBJ_TLM:
        if (!p) return ag_fail(AG_ERR_ARG, "pretrain tlm: no parallel corpus (hint: --tgt-data DIR)");
        return recipe_collate_tlm(out, p, cfg, B, T, seed, index);
    case RECIPE_OBJ_CTRL: return recipe_collate_ctrl(out, c, cfg, B, T, seed, index);
    }
    return ag_fail(AG_ERR_ARG, "pretrain: unknown objective");
}

/* The number of labels that count: not -100 (and, for a [B] label, each). */
static int64_t counted(const ag_ints *labels) {
    int64_t n = 0;
    for (int64_t i = 0; i < labels->numel; ++i) n += labels->data[i] != AG_IGNORE_INDEX;
    return n;
}

ag_tensor *recipe_objective_loss(ag_ctx *ctx, recipe_objective_state *s, const recipe_batch *b, uint64_t seed,
                                 uint64_t index, int64_t *tokens, double parts[2]) {
    parts[0] = parts[1] = NAN;
    if (s->obj != RECIPE_OBJ_ELECTRA) {
        ag_tensor *loss = recipe_model_loss(ctx, &s->model, b, tokens);
        /* the models count differently (some not at all for a combined loss):
         * the trainer's weight is the predicted tokens of the batch */
        const ag_ints *labels = recipe_batch_get(b, "labels");
        *tokens = counted(labels);
        if (loss) parts[0] = loss->data[0];
        return loss;
    }
    /* ELECTRA: the generator's MLM loss on the masked batch ... */
    const ag_ints *ids = recipe_batch_get(b, "input_ids"), *tt = recipe_batch_get(b, "token_type_ids"),
                  *mask = recipe_batch_get(b, "attention_mask"), *labels = recipe_batch_get(b, "labels");
    ag_tensor *h = nn_electra_forward(ctx, &s->gen, ids, tt, mask);
    ag_tensor *logits = h ? nn_electra_generator_logits(ctx, &s->gen, h) : NULL;
    ag_tensor *gen_loss = logits ? ag_cross_entropy(ctx, logits, labels, 0.0f, AG_REDUCE_MEAN) : NULL;
    if (!gen_loss) return NULL;
    /* ... then the discriminator on tokens sampled from the generator (the
     * sample is data, not differentiated through: ELECTRA's stop-gradient) */
    recipe_batch d = {0};
    ag_status st = recipe_electra_discriminator(&d, b, logits->data, logits->shape[2], 1.0f, seed, index);
    if (st) return NULL;
    int64_t nd = 0;
    ag_tensor *disc_loss = recipe_model_loss(ctx, &s->model, &d, &nd);
    recipe_batch_free(&d);
    if (!disc_loss) return NULL;
    parts[0] = gen_loss->data[0];
    parts[1] = disc_loss->data[0];
    *tokens = counted(labels);
    /* ELECTRA's loss: mlm_loss + disc_weight * disc_loss, disc_weight = 50 */
    return ag_add(ctx, gen_loss, ag_scale(ctx, disc_loss, 50.0f));
}

/* ---------------------------------------------------------------- evaluation, checkpoints */

/* Mean loss over n_batches fixed held-out batches (indices 0..n-1 of a seed of
 * their own), in eval mode and no-grad; parts receive the mean of each part. */
static ag_status evaluate(ag_ctx *ctx, recipe_objective_state *s, const recipe_corpus *val,
                          const recipe_parallel *pval, const recipe_collate_config *cfg, int B, int T, int n_batches,
                          uint64_t seed, double *mean_loss, double parts[2]) {
    ag_status st = AG_OK;
    bool was_training = ctx->training;
    ag_ctx_train(ctx, false);
    double sum = 0, p0 = 0, p1 = 0;
    uint64_t eseed = seed ^ 0xe7a1ull;
    for (int i = 0; i < n_batches && st == AG_OK; ++i) {
        recipe_batch b;
        if ((st = recipe_objective_collate(&b, s, val, pval, cfg, B, T, eseed, (uint64_t)i))) break;
        ag_ctx_reset(ctx);
        ag_no_grad_begin(ctx);
        int64_t ntok;
        double pp[2];
        ag_tensor *loss = recipe_objective_loss(ctx, s, &b, eseed, (uint64_t)i, &ntok, pp);
        ag_no_grad_end(ctx);
        recipe_batch_free(&b);
        if (!loss) st = ag_error_status();
        else sum += loss->data[0], p0 += pp[0], p1 += pp[1];
    }
    ag_ctx_reset(ctx);
    ag_ctx_train(ctx, was_training);
    *mean_loss = sum / n_batches;
    parts[0] = p0 / n_batches, parts[1] = p1 / n_batches;
    return st;
}

static ag_status save(const char *path, const ag_params *ps, optim *opt, const nn_config *cfg, int64_t step,
                      int64_t tokens, const recipe_train_opts *o, const char *recipe) {
    char loader_pos[128], sched[256];
    snprintf(loader_pos, sizeof loader_pos, "{\"batch\": %lld}", (long long)(step * o->grad_accum));
    snprintf(sched, sizeof sched, "{\"kind\": \"%s\", \"lr\": %.9g, \"min_lr\": %.9g, \"warmup\": %d, \"total\": %d}",
             o->schedule, o->lr, o->min_lr, o->warmup, o->steps);
    ckpt_state st = {
        .config = cfg->text,
        .optim_kind = "adamw",
        .optim_step = optim_step_count(opt),
        .n_hparams = 4,
        .hparam = {{"lr", o->lr}, {"weight_decay", o->weight_decay}, {"beta1", 0.9}, {"beta2", 0.999}},
        .schedule = sched,
        .global_step = step,
        .tokens_seen = tokens,
        .rng_seed = o->seed,
        .rng_counter = 0,
        .loader_position = loader_pos,
        .loader_position_len = strlen(loader_pos),
        .recipe = recipe,
    };
    st.n_moments = optim_state_count(opt);
    for (int k = 0; k < st.n_moments && k < CKPT_MAX_MOMENTS; ++k) {
        st.moment_name[k] = optim_state_name(opt, k);
        st.moment[k] = optim_state_block(opt, k);
    }
    return ckpt_save(path, ps, &st);
}

/* ---------------------------------------------------------------- the trainer */

/* A pair corpus from two prepared folders whose documents are aligned (one
 * pair per document, the same count in each split). */
static ag_status make_parallel(recipe_parallel *p, const recipe_owned_corpus *src, const recipe_owned_corpus *tgt,
                               const char *split) {
    if (src->n_docs != tgt->n_docs)
        return ag_fail(AG_ERR_ARG, "pretrain tlm: split \"%s\" has %lld source documents but %lld target documents; "
                       "prepare both sides with --docs-by-blank-lines, one pair per document", split,
                       (long long)src->n_docs, (long long)tgt->n_docs);
    *p = (recipe_parallel){src->tokens, tgt->tokens, src->doc_start, tgt->doc_start, src->n_docs, 0, 1};
    return AG_OK;
}

ag_status recipe_pretrain(const recipe_pretrain_opts *po) {
    const recipe_train_opts *o = &po->train;
    ag_status st;
    recipe_objective obj = RECIPE_OBJ_MLM;
    if ((st = recipe_objective_from_name(po->recipe, &obj))) return st;
    const char *rname = objective_name(obj);
    recipe_objective_state s = {0};
    recipe_owned_corpus train = {0}, val = {0}, ttrain = {0}, tval = {0};
    recipe_parallel ptrain = {0}, pval = {0}, *pt = NULL, *pv = NULL;
    optim *opt = NULL;
    ag_ctx *ctx = NULL;
    FILE *metrics = NULL;
    char path[1024], ckpt_path[1024];
    int64_t start_step = 0, tokens = 0;
    recipe_collate_config cfg;
    int32_t unk = -1;
    uint8_t *is_cont = NULL; /* [vocab] ALBERT's word boundaries for n-gram masking, from the run's tokenizer */

    if (o->steps < 1 || o->batch < 1 || o->seq < 2 || o->grad_accum < 1)
        return ag_fail(AG_ERR_ARG, "pretrain: --steps, --batch and --grad-accum must be >= 1 and --seq >= 2");
    const bool ctrl = obj == RECIPE_OBJ_CTRL;
    if ((st = recipe_corpus_load(&train, o->data_dir, "train", ctrl)) ||
        (st = recipe_corpus_load(&val, o->data_dir, "val", ctrl)))
        goto done;
    if (obj == RECIPE_OBJ_TLM) {
        if (!po->tgt_data_dir) { st = ag_fail(AG_ERR_ARG, "pretrain tlm: --tgt-data DIR (the second language) is needed"); goto done; }
        if ((st = recipe_corpus_load(&ttrain, po->tgt_data_dir, "train", false)) ||
            (st = recipe_corpus_load(&tval, po->tgt_data_dir, "val", false)) ||
            (st = make_parallel(&ptrain, &train, &ttrain, "train")) || (st = make_parallel(&pval, &val, &tval, "val")))
            goto done;
        pt = &ptrain, pv = &pval;
    }
    if ((st = recipe_objective_init(&s, obj, o->config_path, po->generator_config, &train, o->batch, o->seq, o->seed)))
        goto done;
    /* the model's vocabulary: T5's adds the sentinels above the tokenizer's */
    int32_t model_vocab = 0;
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s.model.cfg.json, "vocab_size");
        if (cJSON_IsNumber(v)) model_vocab = (int32_t)v->valuedouble;
    }
    if (model_vocab < train.vocab_size) {
        st = ag_fail(AG_ERR_ARG, "pretrain: vocab_size %d in %s is smaller than the data's vocabulary (%d)", model_vocab,
                     o->config_path, train.vocab_size);
        goto done;
    }
    recipe_collate_defaults(&cfg, model_vocab);
    if ((st = recipe_manifest_specials(o->data_dir, &cfg, &unk))) goto done;
    if (obj == RECIPE_OBJ_SPAN && model_vocab - train.vocab_size < 1) {
        st = ag_fail(AG_ERR_ARG, "pretrain span: vocab_size %d in %s leaves no room for sentinels above the data's %d "
                     "ids (hint: add 100, as T5's 32100 = 32000 + 100)", model_vocab, o->config_path, train.vocab_size);
        goto done;
    }
    /* random replacements draw from the tokenizer's ids, not the sentinels */
    if (obj != RECIPE_OBJ_SPAN) cfg.vocab_size = train.vocab_size;
    int32_t special[2] = {unk, -1};
    cfg.special_ids = special;
    cfg.n_special = unk >= 0 ? 1 : 0;
    if (po->masking) {
        if (strcmp(po->masking, "tokens") == 0) cfg.masking = RECIPE_MASK_TOKENS;
        else if (strcmp(po->masking, "ngram") == 0) cfg.masking = RECIPE_MASK_NGRAM;
        else { st = ag_fail(AG_ERR_ARG, "pretrain: --masking '%s' is not tokens or ngram", po->masking); goto done; }
    }
    if (po->max_ngram) cfg.max_ngram = po->max_ngram;
    if ((st = recipe_corpus_check(&train.c, &cfg)) || (st = recipe_corpus_check(&val.c, &cfg))) goto done;
    if ((st = recipe_objective_alloc(&s, o->seed))) goto done;

    optim_config oc = optim_adamw_defaults();
    oc.weight_decay = o->weight_decay;
    if ((st = optim_create(&opt, &s.model.ps, &oc))) goto done;
    optim_schedule sched = {.lr = o->lr, .min_lr = o->min_lr, .warmup_steps = o->warmup, .total_steps = o->steps};
    if ((st = optim_schedule_kind_from_name(o->schedule, &sched.kind)) || (st = optim_schedule_check(&sched))) goto done;

    if ((st = ag_make_dirs(o->out_dir)) || (st = recipe_run_tokenizer(o->data_dir, o->out_dir))) goto done;
    const bool ngram = cfg.masking == RECIPE_MASK_NGRAM || (cfg.masking == RECIPE_MASK_DEFAULT && obj == RECIPE_OBJ_SOP);
    if (ngram && (obj == RECIPE_OBJ_MLM || obj == RECIPE_OBJ_NSP || obj == RECIPE_OBJ_SOP || obj == RECIPE_OBJ_TLM)) {
        /* ALBERT masks n-grams of whole words (do_whole_word_mask): the words
         * come from the tokenizer the run carries; without one, pieces */
        snprintf(path, sizeof path, "%s/tokenizer.json", o->out_dir);
        data_tokenizer tok;
        if (access(path, R_OK) == 0 && data_tokenizer_load(&tok, path) == AG_OK) {
            if (!(is_cont = malloc((size_t)cfg.vocab_size))) {
                data_tokenizer_free(&tok);
                st = ag_fail(AG_ERR_MEMORY, "pretrain: out of memory");
                goto done;
            }
            cfg.whole_word_mask = recipe_word_continuations(&tok, cfg.vocab_size, is_cont);
            cfg.is_continuation = is_cont;
            data_tokenizer_free(&tok);
        }
        if (!po->quiet)
            printf("masking: ALBERT's n-grams of up to %d %s\n", cfg.max_ngram,
                   cfg.whole_word_mask ? "whole words" : "pieces (no word rule for this tokenizer)");
    }
    snprintf(ckpt_path, sizeof ckpt_path, "%s/ckpt.h5", o->out_dir);
    if (o->resume) {
        ckpt_state cs = {0};
        if ((st = ckpt_load_params(ckpt_path, &s.model.ps)) || (st = ckpt_read_state(ckpt_path, &cs))) goto done;
        start_step = cs.global_step;
        tokens = cs.tokens_seen;
        for (int k = 0; k < optim_state_count(opt) && st == AG_OK; ++k)
            st = ckpt_load_moment(ckpt_path, &s.model.ps, optim_state_name(opt, k), optim_state_block(opt, k));
        if (st == AG_OK) st = optim_set_step_count(opt, cs.optim_step);
        ckpt_state_free(&cs);
        if (st) goto done;
        if (!po->quiet) printf("resumed from %s at step %lld\n", ckpt_path, (long long)start_step);
    }

    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out_dir);
    metrics = fopen(path, o->resume ? "a" : "w");
    ctx = ag_ctx_create(0);
    if (!metrics) { st = ag_fail(AG_ERR_IO, "pretrain: cannot write %s: %s", path, strerror(errno)); goto done; }
    if (!ctx) { st = ag_fail(AG_ERR_MEMORY, "pretrain: out of memory"); goto done; }
    ag_ctx_train(ctx, true);

    if (!po->quiet) {
        printf("pretrain %s: %s, %lld parameters%s\n", rname, s.model.arch, (long long)s.model.ps.total,
               s.has_gen ? " (discriminator + generator, embeddings shared)" : "");
        printf("data: %lld training tokens in %lld documents, %lld held out; batch %d x %d x %d accumulated; "
               "%d steps\n", (long long)train.n_tokens, (long long)train.n_docs, (long long)val.n_tokens, o->batch,
               o->seq, o->grad_accum, o->steps);
    }
    double parts[2];
    if (!o->resume) {
        double l0;
        if ((st = evaluate(ctx, &s, &val.c, pv, &cfg, o->batch, o->seq, o->eval_batches, o->seed, &l0, parts)))
            goto done;
        if (!po->quiet) printf("step %5d  held-out loss %.4f\n", 0, l0);
        fprintf(metrics, "{\"step\": 0, \"val_loss\": %.6f}\n", l0);
        if (po->first_val) *po->first_val = l0;
    }

    stop_requested = 0;
    void (*old_handler)(int) = signal(SIGINT, on_sigint);
    const double t_start = now_s();
    double t_last = t_start, last_val = NAN;
    int64_t tokens_last = tokens;
    int64_t step = start_step;
    for (; step < o->steps; ++step) {
        double loss_sum = 0;
        int64_t n_tok = 0;
        for (int micro = 0; micro < o->grad_accum; ++micro) {
            uint64_t index = (uint64_t)(step * o->grad_accum + micro);
            recipe_batch b;
            if ((st = recipe_objective_collate(&b, &s, &train.c, pt, &cfg, o->batch, o->seq, o->seed, index)))
                goto stop;
            ag_ctx_reset(ctx);
            ag_ctx_seed(ctx, o->seed ^ (0x9e3779b97f4a7c15ull * (index + 1)));
            int64_t nt = 0;
            ag_tensor *loss = recipe_objective_loss(ctx, &s, &b, o->seed, index, &nt, parts);
            recipe_batch_free(&b);
            if (!loss) { st = ag_error_status(); goto stop; }
            /* backward of the loss summed over this micro-batch's tokens */
            if (nt > 0 && (st = ag_backward(ctx, ag_scale(ctx, loss, (float)nt), NULL))) goto stop;
            loss_sum += loss->data[0] * (double)nt;
            n_tok += nt;
        }
        ag_ctx_reset(ctx);
        double loss_mean = n_tok ? loss_sum / (double)n_tok : 0, gnorm = 0;
        if (!isfinite(loss_mean)) {
            st = ag_fail(AG_ERR_NUMERIC, "pretrain: the loss is %g at step %lld (hint: lower --lr)", loss_mean,
                         (long long)step);
            goto stop;
        }
        if (n_tok) optim_scale_grads(&s.model.ps, 1.0f / (float)n_tok);
        if (o->clip > 0 && (st = optim_clip_grad_norm(&s.model.ps, o->clip, &gnorm))) goto stop;
        double lr = optim_schedule_lr(&sched, step);
        if ((st = optim_step(opt, lr))) goto stop;
        ag_params_zero_grad(&s.model.ps);
        tokens += n_tok;

        bool out_of_time = o->max_seconds > 0 && now_s() - t_start > o->max_seconds;
        bool stop_here = o->stop_at > 0 && step + 1 == o->stop_at;
        bool last = step + 1 == o->steps || stop_requested || out_of_time || stop_here;
        if ((step + 1) % o->log_every == 0 || last) {
            double t = now_s();
            double tps = (double)(tokens - tokens_last) / (t - t_last);
            if (!po->quiet) {
                printf("step %5lld  loss %.4f  lr %.2e  |g| %.3f  %6.0f predicted tok/s  %5.0fs", (long long)(step + 1),
                       loss_mean, lr, gnorm, tps, t - t_start);
                if (s.has_gen) printf("  (generator %.3f, discriminator %.4f)", parts[0], parts[1]);
                printf("\n");
            }
            fprintf(metrics, "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6f, \"tokens\": %lld, "
                             "\"seconds\": %.1f}\n",
                    (long long)(step + 1), loss_mean, lr, gnorm, (long long)tokens, t - t_start);
            fflush(stdout);
            t_last = t;
            tokens_last = tokens;
        }
        if (o->eval_every > 0 && ((step + 1) % o->eval_every == 0 || last)) {
            double vl;
            if ((st = evaluate(ctx, &s, &val.c, pv, &cfg, o->batch, o->seq, o->eval_batches, o->seed, &vl, parts)))
                goto stop;
            last_val = vl;
            if (!po->quiet) printf("step %5lld  held-out loss %.4f\n", (long long)(step + 1), vl);
            fprintf(metrics, "{\"step\": %lld, \"val_loss\": %.6f}\n", (long long)(step + 1), vl);
        }
        fflush(metrics);
        if (o->save_every > 0 && (step + 1) % o->save_every == 0 && !last &&
            (st = save(ckpt_path, &s.model.ps, opt, &s.model.cfg, step + 1, tokens, o, rname)))
            goto stop;
        if (last && step + 1 < o->steps) {
            if (!po->quiet) printf("stopping: saving step %lld\n", (long long)(step + 1));
            step++;
            break;
        }
    }
    if (po->last_val) *po->last_val = last_val;
    st = save(ckpt_path, &s.model.ps, opt, &s.model.cfg, step, tokens, o, rname);
    if (st == AG_OK && !po->quiet) printf("saved %s (step %lld)\n", ckpt_path, (long long)step);
stop:
    signal(SIGINT, old_handler);
done:
    free(is_cont);
    if (metrics) fclose(metrics);
    ag_ctx_free(ctx);
    optim_free(opt);
    recipe_objective_free(&s);
    recipe_owned_corpus_free(&train);
    recipe_owned_corpus_free(&val);
    recipe_owned_corpus_free(&ttrain);
    recipe_owned_corpus_free(&tval);
    return st;
}
