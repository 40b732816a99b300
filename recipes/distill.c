/* distill.c: knowledge distillation (see distill.h): the triple loss, the
 * student's initialisation from the teacher, and the trainer behind
 * `tapegrad distill`.
 *
 * The loss, as distiller.py's step() writes it (s = student, t = teacher):
 *
 *     s_logits, s_hidden = student(input_ids, attention_mask)
 *     with torch.no_grad(): t_logits, t_hidden = teacher(input_ids, attention_mask)
 *     mask = attention_mask (or labels > -1 with --restrict_ce_to_mask)
 *     loss_ce  = KLDivLoss("batchmean")(log_softmax(s_sel / T), softmax(t_sel / T)) * T^2
 *     loss_mlm = CrossEntropyLoss(ignore_index=-100)(s_logits, labels)
 *     loss_clm = CrossEntropyLoss(s_logits[:, :-1], input_ids[:, 1:])
 *     loss_cos = CosineEmbeddingLoss(s_hidden[-1][mask], t_hidden[-1][mask], +1)
 *     loss = alpha_ce*loss_ce + alpha_mlm*loss_mlm + alpha_clm*loss_clm + alpha_cos*loss_cos
 *
 * Selecting rows (masked_select(...).view(-1, V)) is an index_select of the
 * flattened [B*T, V] logits with the list of selected rows, so the gradient
 * of the KL flows back into exactly those rows.
 */
#include "distill.h"

#include "ckpt.h"
#include "collate.h"
#include "data.h"
#include "optim.h"
#include "tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

recipe_distill_weights recipe_distill_mlm_defaults(void) {
    return (recipe_distill_weights){.temperature = 2.0f, .alpha_ce = 5.0f, .alpha_mlm = 2.0f, .alpha_clm = 0.0f,
                                    .alpha_cos = 1.0f, .restrict_ce_to_mask = false};
}

recipe_distill_weights recipe_distill_clm_defaults(void) {
    return (recipe_distill_weights){.temperature = 2.0f, .alpha_ce = 5.0f, .alpha_mlm = 0.0f, .alpha_clm = 2.0f,
                                    .alpha_cos = 1.0f, .restrict_ce_to_mask = false};
}

/* ---------------------------------------------------------------- one interface over the three classes */

typedef enum { KIND_NONE, KIND_BERT, KIND_DISTILBERT, KIND_GPT2 } model_kind;

static model_kind kind_of(const recipe_model *m) {
    if (m->family == RECIPE_FAMILY_BERT && !m->bert.cfg.roberta &&
        (m->bert.head == NN_BERT_MASKED_LM || m->bert.head == NN_BERT_PRETRAINING))
        return KIND_BERT;
    if (m->family == RECIPE_FAMILY_DISTILBERT && m->distilbert.head == NN_BERT_MASKED_LM) return KIND_DISTILBERT;
    if (m->family == RECIPE_FAMILY_GPT2 && m->gpt2.lm_head) return KIND_GPT2;
    return KIND_NONE;
}

static int width_of(const recipe_model *m) {
    switch (kind_of(m)) {
    case KIND_BERT: return m->bert.cfg.hidden_size;
    case KIND_DISTILBERT: return m->distilbert.cfg.dim;
    case KIND_GPT2: return m->gpt2.cfg.n_embd;
    default: return 0;
    }
}

static int vocab_of(const recipe_model *m) {
    switch (kind_of(m)) {
    case KIND_BERT: return m->bert.cfg.vocab_size;
    case KIND_DISTILBERT: return m->distilbert.cfg.vocab_size;
    case KIND_GPT2: return m->gpt2.cfg.vocab_size;
    default: return 0;
    }
}

/* The last hidden states [B,T,C] (BERT: the encoder's output, before the MLM
 * head; GPT-2: after ln_f), what distiller.py takes as hidden_states[-1]. */
static ag_tensor *hidden_of(ag_ctx *ctx, const recipe_model *m, const ag_ints *ids, const ag_ints *mask) {
    switch (kind_of(m)) {
    case KIND_BERT: return nn_bert_forward(ctx, &m->bert, ids, NULL, mask);
    case KIND_DISTILBERT: return nn_distilbert_forward(ctx, &m->distilbert, ids, mask);
    case KIND_GPT2: return nn_gpt2_forward(ctx, &m->gpt2, ids, mask, 0);
    default: ag_fail(AG_ERR_ARG, "distill: %s is not a class distillation takes", m->arch); return NULL;
    }
}

/* The LM head: hidden [B,T,C] -> logits [B,T,V]. DistilBERT's head is
 * vocab_projector(vocab_layer_norm(act(vocab_transform(h)))), as
 * DistilBertForMaskedLM.forward writes it. */
static ag_tensor *logits_of(ag_ctx *ctx, const recipe_model *m, ag_tensor *h) {
    switch (kind_of(m)) {
    case KIND_BERT: return nn_bert_mlm_logits(ctx, &m->bert, h);
    case KIND_DISTILBERT: {
        const nn_distilbert *d = &m->distilbert;
        ag_tensor *x = nn_act_forward(ctx, d->cfg.act, nn_linear_forward(ctx, &d->vocab_transform, h));
        x = nn_norm_forward(ctx, &d->vocab_layer_norm, x);
        return ag_linear(ctx, x, d->projector_w, d->projector_b, AG_LINEAR_OUT_IN);
    }
    case KIND_GPT2: return nn_gpt2_logits(ctx, &m->gpt2, h);
    default: return NULL;
    }
}

/* x [B,T,D] -> x.view(B*T, D)[rows], rows [N] of flat positions b*T + t. */
static ag_tensor *select_rows(ag_ctx *ctx, ag_tensor *x, const ag_ints *rows) {
    if (!x) return NULL;
    const int64_t D = x->shape[x->ndim - 1];
    return ag_index_select(ctx, ag_reshape(ctx, x, 2, AG_SHAPE(x->numel / D, D)), 0, rows);
}

/* The flat positions where keep(b,t) holds, in an arena ag_ints [N]. */
static ag_ints *rows_where(ag_ctx *ctx, const ag_ints *mask, const ag_ints *labels, int64_t BT, int64_t *n) {
    int64_t count = 0;
    for (int64_t i = 0; i < BT; ++i)
        count += labels ? labels->data[i] != AG_IGNORE_INDEX : (!mask || mask->data[i] != 0);
    *n = count;
    if (count == 0) return NULL;
    ag_ints *r = ag_ints_from(ctx, NULL, 1, AG_SHAPE(count));
    if (!r) return NULL;
    int64_t k = 0;
    for (int64_t i = 0; i < BT; ++i)
        if (labels ? labels->data[i] != AG_IGNORE_INDEX : (!mask || mask->data[i] != 0)) r->data[k++] = (int32_t)i;
    return r;
}

/* loss = loss + w * term (loss may be NULL: the first term). */
static ag_tensor *add_term(ag_ctx *ctx, ag_tensor *loss, ag_tensor *term, float w) {
    ag_tensor *t = ag_scale(ctx, term, w);
    return loss ? ag_add(ctx, loss, t) : t;
}

ag_tensor *recipe_distill_loss(ag_ctx *ctx, const recipe_model *student, const recipe_model *teacher,
                               const recipe_batch *b, const recipe_distill_weights *w, recipe_distill_parts *parts) {
    recipe_distill_parts p = {0};
    if (parts) *parts = p;
    const model_kind sk = kind_of(student), tk = teacher ? kind_of(teacher) : KIND_NONE;
    if (sk == KIND_NONE) {
        ag_fail(AG_ERR_ARG, "distill: the student %s is not BertForMaskedLM, DistilBertForMaskedLM or GPT2LMHeadModel",
                student->arch);
        return NULL;
    }
    const bool decoder = sk == KIND_GPT2;
    if (teacher && (tk == KIND_NONE || (tk == KIND_GPT2) != decoder)) {
        ag_fail(AG_ERR_ARG, "distill: teacher %s and student %s are not both masked LMs (BERT, DistilBERT) or both "
                "GPT-2 LMs", teacher->arch, student->arch);
        return NULL;
    }
    if (teacher && vocab_of(teacher) != vocab_of(student)) {
        ag_fail(AG_ERR_ARG, "distill: the teacher's vocab_size %d differs from the student's %d", vocab_of(teacher),
                vocab_of(student));
        return NULL;
    }
    const bool same_width = teacher && width_of(teacher) == width_of(student);
    const bool use_ce = teacher && w->alpha_ce > 0;
    const bool use_cos = teacher && w->alpha_cos > 0 && (same_width || decoder);
    const bool use_mlm = !decoder && w->alpha_mlm > 0, use_clm = decoder && w->alpha_clm > 0;
    if (teacher && w->alpha_cos > 0 && !same_width && !decoder) {
        ag_fail(AG_ERR_ARG, "distill: alpha_cos needs equal widths, teacher %d and student %d (set alpha_cos 0)",
                width_of(teacher), width_of(student));
        return NULL;
    }
    if (!use_ce && !use_mlm && !use_clm) {
        ag_fail(AG_ERR_ARG, "distill: no loss term is on (alpha_ce needs a teacher; alpha_%s is 0)",
                decoder ? "clm" : "mlm");
        return NULL;
    }
    if (w->temperature <= 0) {
        ag_fail(AG_ERR_ARG, "distill: temperature must be > 0, got %g", (double)w->temperature);
        return NULL;
    }
    const ag_ints *ids = recipe_batch_get(b, "input_ids"), *mask = recipe_batch_get(b, "attention_mask");
    const ag_ints *labels = recipe_batch_get(b, "labels");
    if (!ids || ids->ndim != 2) {
        ag_fail(AG_ERR_ARG, "distill: the batch needs input_ids [B,T]");
        return NULL;
    }
    const int64_t B = ids->shape[0], T = ids->shape[1], BT = B * T;
    if (mask && mask->numel != BT) {
        ag_fail(AG_ERR_ARG, "distill: attention_mask does not match input_ids");
        return NULL;
    }
    if ((use_mlm || (use_ce && w->restrict_ce_to_mask)) && (!labels || labels->numel != BT)) {
        ag_fail(AG_ERR_ARG, "distill: the MLM term needs labels [B,T] like input_ids");
        return NULL;
    }

    /* the student: hidden [B,T,C], logits [B,T,V], on the tape */
    ag_tensor *s_hidden = hidden_of(ctx, student, ids, mask);
    ag_tensor *s_logits = logits_of(ctx, student, s_hidden);
    if (!s_logits) return NULL;

    /* the teacher: same inputs, eval mode, nothing recorded */
    ag_tensor *t_hidden = NULL, *t_logits = NULL;
    if (teacher && (use_ce || use_cos)) {
        const bool was_training = ctx->training;
        ag_ctx_train(ctx, false);
        ag_no_grad_begin(ctx);
        t_hidden = hidden_of(ctx, teacher, ids, mask);
        t_logits = logits_of(ctx, teacher, t_hidden);
        ag_no_grad_end(ctx);
        ag_ctx_train(ctx, was_training);
        if (!t_logits) return NULL;
    }

    ag_tensor *loss = NULL;
    if (use_ce) { /* soft targets over the selected rows */
        const ag_ints *by_label = w->restrict_ce_to_mask && !decoder ? labels : NULL;
        ag_ints *rows = rows_where(ctx, mask, by_label, BT, &p.n_ce_rows);
        if (rows) {
            ag_tensor *ce = ag_kl_div(ctx, select_rows(ctx, s_logits, rows), select_rows(ctx, t_logits, rows),
                                      w->temperature);
            if (!ce) return NULL;
            p.ce = ce->data[0];
            loss = add_term(ctx, loss, ce, w->alpha_ce);
        }
    }
    if (use_mlm) { /* the student's own MLM loss, mean over the masked positions */
        rows_where(ctx, NULL, labels, BT, &p.n_lm_rows); /* the count only (the rows are unused) */
        if (p.n_lm_rows > 0) {
            ag_tensor *mlm = ag_cross_entropy(ctx, s_logits, labels, 0.0f, AG_REDUCE_MEAN);
            if (!mlm) return NULL;
            p.mlm = mlm->data[0];
            loss = add_term(ctx, loss, mlm, w->alpha_mlm);
        }
    }
    if (use_clm && T > 1) { /* next-token cross entropy: logits[:, :-1] against ids[:, 1:], padding ignored */
        ag_ints *tgt = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T - 1));
        if (!tgt) return NULL;
        for (int64_t bi = 0; bi < B; ++bi)
            for (int64_t t = 0; t + 1 < T; ++t) {
                const int64_t i = bi * T + t + 1;
                const bool real = !mask || mask->data[i] != 0;
                tgt->data[bi * (T - 1) + t] = real ? ids->data[i] : AG_IGNORE_INDEX;
                p.n_lm_rows += real;
            }
        if (p.n_lm_rows > 0) {
            ag_tensor *clm = ag_cross_entropy(ctx, ag_slice(ctx, s_logits, 1, 0, T - 1), tgt, 0.0f, AG_REDUCE_MEAN);
            if (!clm) return NULL;
            p.clm = clm->data[0];
            loss = add_term(ctx, loss, clm, w->alpha_clm);
        }
    }
    if (use_cos && same_width) { /* last hidden states of the non-pad positions, target +1 */
        ag_ints *rows = rows_where(ctx, mask, NULL, BT, &p.n_cos_rows);
        if (rows) {
            ag_ints *y = ag_ints_from(ctx, NULL, 1, AG_SHAPE(p.n_cos_rows));
            if (!y) return NULL;
            for (int64_t i = 0; i < p.n_cos_rows; ++i) y->data[i] = 1;
            ag_tensor *cos = ag_cosine_embedding(ctx, select_rows(ctx, s_hidden, rows),
                                                 select_rows(ctx, t_hidden, rows), y, 0.0f);
            if (!cos) return NULL;
            p.cos = cos->data[0];
            loss = add_term(ctx, loss, cos, w->alpha_cos);
        }
    }
    if (!loss) {
        ag_fail(AG_ERR_ARG, "distill: the batch has no position any term counts (no labels, all padding)");
        return NULL;
    }
    p.total = loss->data[0];
    if (parts) *parts = p;
    return loss;
}

/* ---------------------------------------------------------------- the student from the teacher */

ag_status recipe_distill_layer_map(int L, int S, int *map) {
    if (S < 1 || 2 * S - 1 > L)
        return ag_fail(AG_ERR_ARG, "distill: cannot take %d student layers from %d teacher layers every other layer "
                       "(needs 1 <= student layers <= (teacher layers + 1) / 2)", S, L);
    const int low = (S + 1) / 2; /* 12 -> 6: 0, 2, 4 from the bottom, then 7, 9, 11 from the top */
    for (int j = 0; j < S; ++j) map[j] = j < low ? 2 * j : L - 1 - 2 * (S - 1 - j);
    return AG_OK;
}

/* student[sname] = teacher[tname], bitwise, with both shapes checked. */
static ag_status copy_param(recipe_model *s, const char *sname, const recipe_model *t, const char *tname, int *n) {
    ag_tensor *dst = ag_params_find(&s->ps, sname);
    const ag_tensor *src = ag_params_find(&t->ps, tname);
    if (!dst) return ag_fail(AG_ERR_ARG, "distill: the student %s has no parameter %s", s->arch, sname);
    if (!src) return ag_fail(AG_ERR_ARG, "distill: the teacher %s has no parameter %s", t->arch, tname);
    char a[64], b[64];
    if (dst->numel != src->numel || dst->ndim != src->ndim || memcmp(dst->shape, src->shape, sizeof(int64_t) * dst->ndim))
        return ag_fail(AG_ERR_ARG, "distill: teacher %s %s does not fit student %s %s", tname,
                       ag_shape_str(a, src->ndim, src->shape), sname, ag_shape_str(b, dst->ndim, dst->shape));
    memcpy(dst->data, src->data, sizeof(float) * (size_t)dst->numel);
    ++*n;
    return AG_OK;
}

/* Copies "<tp><tw>.weight" and ".bias" into "<sp><sw>.weight"/".bias". */
static ag_status copy_wb(recipe_model *s, const char *sw, const recipe_model *t, const char *tw, int *n) {
    static const char *suffix[2] = {"weight", "bias"};
    char sn[320], tn[320]; /* room for a 256-byte module name and the suffix */
    ag_status st = AG_OK;
    for (int k = 0; k < 2 && st == AG_OK; ++k) {
        snprintf(sn, sizeof sn, "%s.%s", sw, suffix[k]);
        snprintf(tn, sizeof tn, "%s.%s", tw, suffix[k]);
        st = copy_param(s, sn, t, tn, n);
    }
    return st;
}

/* extract_distilbert.py, BERT -> DistilBERT. */
static ag_status init_distilbert(recipe_model *s, const recipe_model *t, const int *map, int *n) {
    const char *sp = s->distilbert.prefix, *tp = t->bert.prefix; /* "distilbert.", "bert." */
    char sn[256], tn[256];
    ag_status st;
    static const char *emb[2] = {"word_embeddings", "position_embeddings"};
    for (int k = 0; k < 2; ++k) {
        snprintf(sn, sizeof sn, "%sembeddings.%s.weight", sp, emb[k]);
        snprintf(tn, sizeof tn, "%sembeddings.%s.weight", tp, emb[k]);
        if ((st = copy_param(s, sn, t, tn, n))) return st;
    }
    snprintf(sn, sizeof sn, "%sembeddings.LayerNorm", sp);
    snprintf(tn, sizeof tn, "%sembeddings.LayerNorm", tp);
    if ((st = copy_wb(s, sn, t, tn, n))) return st;
    /* student layer j <- teacher layer map[j], module by module */
    static const char *rename[8][2] = {
        {"attention.q_lin", "attention.self.query"},      {"attention.k_lin", "attention.self.key"},
        {"attention.v_lin", "attention.self.value"},      {"attention.out_lin", "attention.output.dense"},
        {"sa_layer_norm", "attention.output.LayerNorm"},  {"ffn.lin1", "intermediate.dense"},
        {"ffn.lin2", "output.dense"},                     {"output_layer_norm", "output.LayerNorm"},
    };
    for (int j = 0; j < s->distilbert.cfg.n_layers; ++j)
        for (int k = 0; k < 8; ++k) {
            snprintf(sn, sizeof sn, "%stransformer.layer.%d.%s", sp, j, rename[k][0]);
            snprintf(tn, sizeof tn, "%sencoder.layer.%d.%s", tp, map[j], rename[k][1]);
            if ((st = copy_wb(s, sn, t, tn, n))) return st;
        }
    /* the MLM head: projector weight tied to the word embedding (copied above) */
    if ((st = copy_param(s, "vocab_projector.bias", t, "cls.predictions.bias", n)) ||
        (st = copy_wb(s, "vocab_transform", t, "cls.predictions.transform.dense", n)) ||
        (st = copy_wb(s, "vocab_layer_norm", t, "cls.predictions.transform.LayerNorm", n)))
        return st;
    if (!s->distilbert.cfg.tie_word_embeddings || !t->bert.cfg.tie_word_embeddings)
        return copy_param(s, "vocab_projector.weight", t, "cls.predictions.decoder.weight", n);
    return AG_OK;
}

/* extract_distilbert.py's GPT-2 branch: every parameter by the same name,
 * layers renumbered through map. */
static ag_status init_gpt2(recipe_model *s, const recipe_model *t, const int *map, int *n) {
    const char *p = "transformer.h.";
    const size_t np = strlen(p);
    for (int64_t i = 0; i < s->ps.n; ++i) {
        const char *sn = s->ps.p[i]->name;
        char tn[256];
        if (strncmp(sn, p, np) == 0) {
            char *rest;
            long j = strtol(sn + np, &rest, 10);
            snprintf(tn, sizeof tn, "%s%d%s", p, map[j], rest);
        } else {
            snprintf(tn, sizeof tn, "%s", sn);
        }
        ag_status st = copy_param(s, sn, t, tn, n);
        if (st) return st;
    }
    return AG_OK;
}

ag_status recipe_distill_init_student(recipe_model *student, const recipe_model *teacher, const int *map,
                                      int *n_copied) {
    const model_kind sk = kind_of(student), tk = kind_of(teacher);
    int L, S, n = 0;
    if (tk == KIND_BERT && sk == KIND_DISTILBERT) L = teacher->bert.cfg.num_hidden_layers, S = student->distilbert.cfg.n_layers;
    else if (tk == KIND_GPT2 && sk == KIND_GPT2) L = teacher->gpt2.cfg.n_layer, S = student->gpt2.cfg.n_layer;
    else return ag_fail(AG_ERR_ARG, "distill: initialising %s from %s: only BertForMaskedLM -> DistilBertForMaskedLM "
                        "and GPT2LMHeadModel -> GPT2LMHeadModel are known", student->arch, teacher->arch);
    int def[256];
    if (!map) {
        if (S > 256) return ag_fail(AG_ERR_ARG, "distill: %d student layers, at most 256", S);
        ag_status st = recipe_distill_layer_map(L, S, def);
        if (st) return st;
        map = def;
    }
    for (int j = 0; j < S; ++j)
        if (map[j] < 0 || map[j] >= L)
            return ag_fail(AG_ERR_ARG, "distill: layer map[%d] = %d is outside the teacher's %d layers", j, map[j], L);
    ag_status st = sk == KIND_DISTILBERT ? init_distilbert(student, teacher, map, &n) : init_gpt2(student, teacher, map, &n);
    if (n_copied) *n_copied = n;
    return st;
}
