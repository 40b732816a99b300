/* deberta.c: DeBERTa v1 and v2, step for step as Hugging Face's
 * modeling_deberta.py and modeling_deberta_v2.py (4.31).
 *
 *   h = LayerNorm(embed_proj?(word[ids] + position[pos]? + token_type[tt]?)) * mask   [B,T,C]
 *   for each layer (post-LN, as BERT):
 *     a = attention.output.LayerNorm(h + dense(disentangled_attention(h)))
 *     h = output.LayerNorm(a + output.dense(act(intermediate.dense(a))))
 *     after layer 0, v2 with conv_kernel_size > 0:
 *       h = LayerNorm(h + conv_act(conv1d(h0) with padded rows 0)) * mask
 *
 * Disentangled attention, for one head (D = head width, s = 1/sqrt(D * (1 + number of pos_att types))):
 *   score_ij = s q_i.k_j  +  s q_i.pk[c2p(i,j)]  +  s k_j.pq[p2c(j,i)]
 *                             content->position     position->content
 * with pk, pq [2*span, D] the relative-embedding table through two
 * projections, and the table rows picked by the relative position
 * rel(i,j) = i - j (v2 with position_buckets: its log bucket):
 *   c2p(i,j) = clamp(rel(i,j) + span, 0, 2 span - 1)
 *   p2c(j,i) = clamp(-rel(j,i) + span, 0, 2 span - 1)   (= the c2p row when rel is odd in i - j)
 * v1: span = min(T, max_relative_positions) and the table is the middle 2 span
 * rows of rel_embeddings; v2: span = position_buckets (or
 * max_relative_positions) and the table is all of it.
 *
 * How it is computed here, with ops the engine has: a position term is a
 * matrix product of every query (or key) with every table row, then a gather
 * of the one row each (i, j) needs:
 *   Q [B,NH,T,D] -> [NH,B*T,D] times pk [NH,2S,D]^T -> [NH,B*T,2S] -> [B,NH,T,2S]
 *   gather along the last dim with c2p [B,NH,T,T]                -> [B,NH,T,T]
 * The two terms (and the padding mask, 0 or -inf) are one additive bias of the
 * fused attention op, which gives them their gradient.
 *
 * Padding (XSoftmax): attention_mask m [B,T] makes the pair mask m_i m_j, so a
 * padded query attends to nothing (its probabilities are all 0) and no query
 * attends to a padded key.
 */
#include "deberta.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- config */

/* pos_att_type: "c2p|p2c" (the string DebertaConfig splits on '|'), a list of
 * strings, or null. */
static ag_status read_pos_att_type(const nn_config *c, nn_deberta_config *g) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->json, "pos_att_type");
    char buf[128] = "";
    if (!v || cJSON_IsNull(v)) return AG_OK;
    if (cJSON_IsString(v)) {
        snprintf(buf, sizeof buf, "%s", v->valuestring);
    } else if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsString(e))
                return ag_fail(AG_ERR_ARG, "config %s: field \"pos_att_type\" must be a string or a list of strings",
                               c->path);
            size_t n = strlen(buf);
            snprintf(buf + n, sizeof buf - n, "%s%s", n ? "|" : "", e->valuestring);
        }
    } else {
        return ag_fail(AG_ERR_ARG, "config %s: field \"pos_att_type\" must be a string or a list of strings", c->path);
    }
    for (char *tok = strtok(buf, "|"); tok; tok = strtok(NULL, "|")) {
        while (*tok == ' ') tok++;
        for (char *e = tok + strlen(tok); e > tok && e[-1] == ' ';) *--e = 0;
        bool *flag = strcasecmp(tok, "c2p") == 0 ? &g->c2p : strcasecmp(tok, "p2c") == 0 ? &g->p2c : NULL;
        if (!flag)
            return ag_fail(AG_ERR_ARG, "config %s: field \"pos_att_type\": unknown type '%s' (c2p, p2c)", c->path, tok);
        if (*flag)
            return ag_fail(AG_ERR_ARG, "config %s: field \"pos_att_type\" names '%s' twice", c->path, tok);
        *flag = true;
        g->n_pos_att++;
    }
    return AG_OK;
}

static ag_status read_act(const nn_config *c, const char *field, nn_act *act) {
    const char *name;
    ag_status st = nn_config_str(c, field, field[0] == 'c' ? "tanh" : "gelu", &name);
    if (st) return st;
    if (!nn_act_from_name(name, act))
        return ag_fail(AG_ERR_ARG, "config %s: field \"%s\": unknown activation '%s'", c->path, field, name);
    return AG_OK;
}

ag_status nn_deberta_config_read(const nn_config *c, bool v2, nn_deberta_config *g) {
    memset(g, 0, sizeof *g);
    g->v2 = v2;
    double range, pc;
    int pooler_size, head_size, groups;
    bool talking_head;
    const char *norm_rel;
    ag_status st;
    if ((st = nn_config_int(c, "vocab_size", v2 ? 128100 : 50265, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "hidden_size", 768, 1, 1 << 16, &g->hidden_size)) ||
        (st = nn_config_int(c, "num_hidden_layers", 12, 1, 4096, &g->num_hidden_layers)) ||
        (st = nn_config_int(c, "num_attention_heads", 12, 1, 4096, &g->num_attention_heads)) ||
        (st = nn_config_int(c, "intermediate_size", 3072, 1, 1 << 20, &g->intermediate_size)) ||
        (st = nn_config_int(c, "max_position_embeddings", 512, 1, 1 << 20, &g->max_position_embeddings)) ||
        (st = nn_config_int(c, "type_vocab_size", 0, 0, 1 << 16, &g->type_vocab_size)) ||
        (st = nn_config_int(c, "pad_token_id", 0, 0, 1 << 24, &g->pad_token_id)) ||
        (st = nn_config_int(c, "embedding_size", 0, 0, 1 << 16, &g->embedding_size)) ||
        (st = nn_config_positive(c, "layer_norm_eps", 1e-7, &g->layer_norm_eps)) ||
        (st = nn_config_num(c, "initializer_range", 0.02, &range)) ||
        (st = nn_config_prob(c, "hidden_dropout_prob", 0.1, &g->hidden_dropout_prob)) ||
        (st = nn_config_prob(c, "attention_probs_dropout_prob", 0.1, &g->attention_probs_dropout_prob)) ||
        (st = nn_config_prob(c, "pooler_dropout", 0.0, &g->pooler_dropout)) ||
        (st = nn_config_num(c, "cls_dropout", -1.0, &pc)) || /* null: hidden_dropout_prob */
        (st = read_act(c, "hidden_act", &g->act)) || (st = read_act(c, "pooler_hidden_act", &g->pooler_act)) ||
        (st = nn_config_int(c, "pooler_hidden_size", 0, 0, 1 << 16, &pooler_size)) ||
        (st = nn_config_bool(c, "relative_attention", false, &g->relative_attention)) ||
        (st = nn_config_int(c, "max_relative_positions", -1, INT_MIN, 1 << 20, &g->max_relative_positions)) ||
        (st = nn_config_bool(c, "position_biased_input", true, &g->position_biased_input)) ||
        (st = nn_config_bool(c, "talking_head", false, &talking_head)) ||
        (st = nn_bert_read_labels(c, &g->num_labels, &g->problem, &g->problem_type_given)) ||
        (st = read_pos_att_type(c, g)))
        return st;
    if (v2 && ((st = nn_config_int(c, "position_buckets", -1, INT_MIN, 1 << 20, &g->position_buckets)) ||
               (st = nn_config_bool(c, "share_att_key", false, &g->share_att_key)) ||
               (st = nn_config_str(c, "norm_rel_ebd", "none", &norm_rel)) ||
               (st = nn_config_int(c, "conv_kernel_size", 0, 0, 1 << 10, &g->conv_kernel_size)) ||
               (st = read_act(c, "conv_act", &g->conv_act)) ||
               (st = nn_config_int(c, "conv_groups", 1, INT_MIN, INT_MAX, &groups)) ||
               (st = nn_config_int(c, "attention_head_size", 0, 0, 1 << 16, &head_size))))
        return st;
    const int C = g->hidden_size, NH = g->num_attention_heads;
    if (C % NH)
        return ag_fail(AG_ERR_ARG, "config %s: hidden_size %d is not divisible by num_attention_heads %d", c->path, C,
                       NH);
    if (talking_head)
        return ag_fail(AG_ERR_ARG, "config %s: field \"talking_head\" is true; tapegrad builds DeBERTa without it",
                       c->path);
    if (g->embedding_size == 0) g->embedding_size = C;
    if (pooler_size != 0 && pooler_size != C)
        return ag_fail(AG_ERR_ARG, "config %s: field \"pooler_hidden_size\" %d differs from hidden_size %d (the "
                       "classifier reads hidden_size features)", c->path, pooler_size, C);
    if (g->pad_token_id >= g->vocab_size)
        return ag_fail(AG_ERR_ARG, "config %s: field \"pad_token_id\" %d is outside the vocabulary (vocab_size %d)",
                       c->path, g->pad_token_id, g->vocab_size);
    if (pc >= 1) return ag_fail(AG_ERR_ARG, "config %s: field \"cls_dropout\" must be in [0, 1)", c->path);
    if (g->max_relative_positions < 1) g->max_relative_positions = g->max_position_embeddings;
    if (v2) {
        if (head_size != 0 && head_size * NH != C)
            return ag_fail(AG_ERR_ARG, "config %s: field \"attention_head_size\" %d times %d heads is not hidden_size "
                           "%d (the attention's output projection is [hidden_size, hidden_size])", c->path, head_size,
                           NH, C);
        if (groups != 1)
            return ag_fail(AG_ERR_ARG, "config %s: field \"conv_groups\" is %d; tapegrad builds only 1", c->path,
                           groups);
        if (g->conv_kernel_size > 0 && g->conv_kernel_size % 2 == 0)
            return ag_fail(AG_ERR_ARG, "config %s: field \"conv_kernel_size\" %d is even: padding (k-1)/2 would not "
                           "keep the length", c->path, g->conv_kernel_size);
        if (g->position_buckets < 1) g->position_buckets = -1;
        if (g->position_buckets > 0 && g->position_buckets < 4)
            return ag_fail(AG_ERR_ARG, "config %s: field \"position_buckets\" %d is too small (at least 4)", c->path,
                           g->position_buckets);
        if (g->position_buckets > 0 && g->max_relative_positions <= g->position_buckets / 2 + 1)
            return ag_fail(AG_ERR_ARG, "config %s: field \"max_relative_positions\" %d leaves no room for log buckets "
                           "beyond position_buckets/2 = %d", c->path, g->max_relative_positions,
                           g->position_buckets / 2);
        /* norm_rel_ebd: "none", "layer_norm", or several joined by '|' */
        char buf[64];
        snprintf(buf, sizeof buf, "%s", norm_rel);
        for (char *tok = strtok(buf, "|"); tok; tok = strtok(NULL, "|")) {
            while (*tok == ' ') tok++;
            for (char *e = tok + strlen(tok); e > tok && e[-1] == ' ';) *--e = 0;
            if (strcasecmp(tok, "layer_norm") == 0) g->norm_rel_ebd = true;
            else if (strcasecmp(tok, "none") != 0)
                return ag_fail(AG_ERR_ARG, "config %s: field \"norm_rel_ebd\": unknown '%s' (none, layer_norm)",
                               c->path, tok);
        }
    }
    g->initializer_range = (float)range;
    g->cls_dropout = pc < 0 ? g->hidden_dropout_prob : (float)pc;
    return AG_OK;
}

/* ---------------------------------------------------------------- parameters */

/* The rows of rel_embeddings: 2 * (position_buckets, or max_relative_positions). */
static int rel_table_rows(const nn_deberta_config *g) {
    return 2 * (g->v2 && g->position_buckets > 0 ? g->position_buckets : g->max_relative_positions);
}

static ag_status declare_layer(ag_params *ps, nn_deberta_layer *L, const char *p, int l, const nn_deberta_config *g) {
    char name[NN_NAME_MAX], a[NN_NAME_MAX];
    const int C = g->hidden_size, I = g->intermediate_size;
    const bool rel = g->relative_attention;
    nn_name(a, "%sencoder.layer.%d.attention", p, l);
    ag_status st;
    if (!g->v2) {
        /* named_parameters(): the module's own q_bias, v_bias before its submodules */
        if (!(L->q_bias = ag_params_add(ps, nn_name(name, "%s.self.q_bias", a), 1, AG_SHAPE(C))) ||
            !(L->v_bias = ag_params_add(ps, nn_name(name, "%s.self.v_bias", a), 1, AG_SHAPE(C))))
            return ag_error_status();
        if ((st = nn_linear_init(ps, &L->in_proj, nn_name(name, "%s.self.in_proj", a), C, 3 * C, false,
                                 AG_LINEAR_OUT_IN)) ||
            (rel && g->c2p &&
             (st = nn_linear_init(ps, &L->pos_proj, nn_name(name, "%s.self.pos_proj", a), C, C, false,
                                  AG_LINEAR_OUT_IN))) ||
            (rel && g->p2c &&
             (st = nn_linear_init(ps, &L->pos_q_proj, nn_name(name, "%s.self.pos_q_proj", a), C, C, true,
                                  AG_LINEAR_OUT_IN))))
            return st;
    } else {
        const bool own = rel && !g->share_att_key;
        if ((st = nn_linear_init(ps, &L->query, nn_name(name, "%s.self.query_proj", a), C, C, true,
                                 AG_LINEAR_OUT_IN)) ||
            (st = nn_linear_init(ps, &L->key, nn_name(name, "%s.self.key_proj", a), C, C, true, AG_LINEAR_OUT_IN)) ||
            (st = nn_linear_init(ps, &L->value, nn_name(name, "%s.self.value_proj", a), C, C, true,
                                 AG_LINEAR_OUT_IN)) ||
            (own && g->c2p &&
             (st = nn_linear_init(ps, &L->pos_key, nn_name(name, "%s.self.pos_key_proj", a), C, C, true,
                                  AG_LINEAR_OUT_IN))) ||
            (own && g->p2c &&
             (st = nn_linear_init(ps, &L->pos_query, nn_name(name, "%s.self.pos_query_proj", a), C, C, true,
                                  AG_LINEAR_OUT_IN))))
            return st;
    }
    if ((st = nn_linear_init(ps, &L->attn_out, nn_name(name, "%s.output.dense", a), C, C, true, AG_LINEAR_OUT_IN)) ||
        (st = nn_layernorm_init(ps, &L->attn_ln, nn_name(name, "%s.output.LayerNorm", a), C, g->layer_norm_eps)) ||
        (st = nn_linear_init(ps, &L->intermediate, nn_name(name, "%sencoder.layer.%d.intermediate.dense", p, l), C, I,
                             true, AG_LINEAR_OUT_IN)) ||
        (st = nn_linear_init(ps, &L->output, nn_name(name, "%sencoder.layer.%d.output.dense", p, l), I, C, true,
                             AG_LINEAR_OUT_IN)) ||
        (st = nn_layernorm_init(ps, &L->output_ln, nn_name(name, "%sencoder.layer.%d.output.LayerNorm", p, l), C,
                                g->layer_norm_eps)))
        return st;
    return AG_OK;
}

ag_status nn_deberta_declare(ag_params *ps, nn_deberta *m, const nn_deberta_config *cfg, nn_deberta_head head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->head = head;
    m->word.padding_idx = m->position.padding_idx = m->token_type.padding_idx = m->rel.padding_idx = -1;
    snprintf(m->prefix, sizeof m->prefix, "%s", head == NN_DEBERTA_MODEL ? "" : "deberta.");
    const char *p = m->prefix;
    const int C = cfg->hidden_size, E = cfg->embedding_size, V = cfg->vocab_size;
    if (head == NN_DEBERTA_MASKED_LM && !cfg->v2 && E != C)
        return ag_fail(AG_ERR_ARG, "deberta: DebertaForMaskedLM ties its decoder [V,hidden_size] to the word "
                       "embedding [V,embedding_size]; embedding_size %d must equal hidden_size %d", E, C);
    char name[NN_NAME_MAX];
    ag_status st;
    if ((st = nn_embedding_init(ps, &m->word, nn_name(name, "%sembeddings.word_embeddings", p), V, E,
                                cfg->pad_token_id)) ||
        (cfg->position_biased_input &&
         (st = nn_embedding_init(ps, &m->position, nn_name(name, "%sembeddings.position_embeddings", p),
                                 cfg->max_position_embeddings, E, -1))) ||
        (cfg->type_vocab_size > 0 &&
         (st = nn_embedding_init(ps, &m->token_type, nn_name(name, "%sembeddings.token_type_embeddings", p),
                                 cfg->type_vocab_size, E, -1))) ||
        (E != C && (st = nn_linear_init(ps, &m->embed_proj, nn_name(name, "%sembeddings.embed_proj", p), E, C, false,
                                        AG_LINEAR_OUT_IN))) ||
        (st = nn_layernorm_init(ps, &m->emb_ln, nn_name(name, "%sembeddings.LayerNorm", p), C, cfg->layer_norm_eps)))
        return st;
    m->layer = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layer);
    if (!m->layer) return ag_fail(AG_ERR_MEMORY, "deberta: out of memory");
    for (int l = 0; l < cfg->num_hidden_layers; ++l)
        if ((st = declare_layer(ps, &m->layer[l], p, l, cfg))) return st;
    if ((cfg->relative_attention && (st = nn_embedding_init(ps, &m->rel, nn_name(name, "%sencoder.rel_embeddings", p),
                                                            rel_table_rows(cfg), C, -1))) ||
        (cfg->v2 && cfg->norm_rel_ebd &&
         (st = nn_layernorm_init(ps, &m->rel_ln, nn_name(name, "%sencoder.LayerNorm", p), C, cfg->layer_norm_eps))))
        return st;
    if (cfg->v2 && cfg->conv_kernel_size > 0) {
        const int K = cfg->conv_kernel_size;
        if (!(m->conv_w = ag_params_add(ps, nn_name(name, "%sencoder.conv.conv.weight", p), 3, AG_SHAPE(C, C, K))) ||
            !(m->conv_b = ag_params_add(ps, nn_name(name, "%sencoder.conv.conv.bias", p), 1, AG_SHAPE(C))))
            return ag_error_status();
        if ((st = nn_layernorm_init(ps, &m->conv_ln, nn_name(name, "%sencoder.conv.LayerNorm", p), C,
                                    cfg->layer_norm_eps)))
            return st;
    }
    switch (head) {
    case NN_DEBERTA_MODEL: break;
    case NN_DEBERTA_MASKED_LM:
        /* the head's own bias first, then transform.dense [E,C], transform.LayerNorm [E] */
        if (!(m->decoder_b = ag_params_add(ps, "cls.predictions.bias", 1, AG_SHAPE(V)))) return ag_error_status();
        if ((st = nn_linear_init(ps, &m->transform, "cls.predictions.transform.dense", C, E, true, AG_LINEAR_OUT_IN)) ||
            (st = nn_layernorm_init(ps, &m->transform_ln, "cls.predictions.transform.LayerNorm", E,
                                    cfg->layer_norm_eps)))
            return st;
        break;
    case NN_DEBERTA_SEQ_CLS:
        if ((st = nn_linear_init(ps, &m->pooler, "pooler.dense", C, C, true, AG_LINEAR_OUT_IN)) ||
            (st = nn_linear_init(ps, &m->classifier, "classifier", C, cfg->num_labels, true, AG_LINEAR_OUT_IN)))
            return st;
        break;
    }
    return AG_OK;
}

void nn_deberta_free(nn_deberta *m) {
    free(m->layer);
    m->layer = NULL;
}

int nn_deberta_aliases(const nn_deberta *m, const char *alias[][2], int cap) {
    if (m->head != NN_DEBERTA_MASKED_LM || cap < 2) return 0;
    alias[0][0] = "cls.predictions.decoder.weight", alias[0][1] = m->word.w->name;
    alias[1][0] = "cls.predictions.decoder.bias", alias[1][1] = m->decoder_b->name;
    return 2;
}

void nn_deberta_init_weights(nn_deberta *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const float std = m->cfg.initializer_range;
    nn_init_embedding(&m->word, std, &r);
    nn_init_embedding(&m->position, std, &r);
    nn_init_embedding(&m->token_type, std, &r);
    nn_init_linear(&m->embed_proj, std, &r);
    nn_init_norm(&m->emb_ln);
    for (int l = 0; l < m->cfg.num_hidden_layers; ++l) {
        nn_deberta_layer *L = &m->layer[l];
        if (L->q_bias) nn_init_const(L->q_bias, 0), nn_init_const(L->v_bias, 0);
        nn_linear *lin[] = {&L->in_proj, &L->pos_proj, &L->pos_q_proj, &L->query, &L->key, &L->value,
                            &L->pos_key, &L->pos_query, &L->attn_out, &L->intermediate, &L->output};
        for (size_t i = 0; i < sizeof lin / sizeof *lin; ++i) nn_init_linear(lin[i], std, &r);
        nn_init_norm(&L->attn_ln), nn_init_norm(&L->output_ln);
    }
    nn_init_embedding(&m->rel, std, &r);
    nn_init_norm(&m->rel_ln);
    if (m->conv_w) { /* nn.Conv1d's reset_parameters: U(-b, b), b = 1/sqrt(fan_in), fan_in = C * K */
        const float b = 1.0f / sqrtf((float)(m->conv_w->shape[1] * m->conv_w->shape[2]));
        for (int64_t i = 0; i < m->conv_w->numel; ++i)
            m->conv_w->data[i] = b * (2.0f * ag_rng_uniform(seed ^ 0xc0417ULL, (uint64_t)i) - 1.0f);
        for (int64_t i = 0; i < m->conv_b->numel; ++i)
            m->conv_b->data[i] = b * (2.0f * ag_rng_uniform(seed ^ 0xc0418ULL, (uint64_t)i) - 1.0f);
        nn_init_norm(&m->conv_ln);
    }
    if (m->decoder_b) nn_init_const(m->decoder_b, 0);
    nn_init_linear(&m->transform, std, &r);
    nn_init_norm(&m->transform_ln);
    nn_init_linear(&m->pooler, std, &r);
    nn_init_linear(&m->classifier, std, &r);
}

/* ---------------------------------------------------------------- relative positions */

int nn_deberta_log_bucket(int r, int bucket_size, int max_position) {
    const int mid = bucket_size / 2;
    const int sign = (r > 0) - (r < 0);
    const int abs_pos = (r < mid && r > -mid) ? mid - 1 : abs(r);
    if (abs_pos <= mid) return r;
    /* float32 throughout, as torch computes it with the default dtype */
    const float log_pos = ceilf(logf((float)abs_pos / (float)mid) / logf((float)((double)(max_position - 1) / mid)) *
                                (float)(mid - 1)) + (float)mid;
    return (int)log_pos * sign;
}

/* The rows each (i, j) picks, for every batch row and head (gather wants the
 * index in x's full shape): c2p [B,NH,T,T] holds clamp(rel(i,j) + span) and
 * p2c [B,NH,T,T] holds, at (r, c), clamp(-rel(r,c) + span). */
static bool relative_indices(ag_ctx *ctx, const nn_deberta *m, int64_t B, int64_t T, int span, ag_ints **c2p,
                             ag_ints **p2c) {
    const nn_deberta_config *g = &m->cfg;
    const int64_t NH = g->num_attention_heads;
    *c2p = ag_ints_from(ctx, NULL, 4, AG_SHAPE(B, NH, T, T));
    *p2c = ag_ints_from(ctx, NULL, 4, AG_SHAPE(B, NH, T, T));
    if (!*c2p || !*p2c) return false;
    for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < T; ++j) {
            int rel = (int)(i - j);
            if (g->v2 && g->position_buckets > 0)
                rel = nn_deberta_log_bucket(rel, g->position_buckets, g->max_relative_positions);
            int a = rel + span, b = -rel + span;
            a = a < 0 ? 0 : a > 2 * span - 1 ? 2 * span - 1 : a;
            b = b < 0 ? 0 : b > 2 * span - 1 ? 2 * span - 1 : b;
            for (int64_t bh = 0; bh < B * NH; ++bh) {
                (*c2p)->data[(bh * T + i) * T + j] = a;
                (*p2c)->data[(bh * T + i) * T + j] = b;
            }
        }
    return true;
}

/* ---------------------------------------------------------------- attention */

/* x [B,NH,T,D] against every row of a head-split table tab [NH,2S,D]:
 * [B,NH,T,2S], as one batched product over the heads. */
static ag_tensor *against_table(ag_ctx *ctx, ag_tensor *x, ag_tensor *tab) {
    if (!x || !tab) return NULL;
    const int64_t B = x->shape[0], NH = x->shape[1], T = x->shape[2], D = x->shape[3], S2 = tab->shape[1];
    ag_tensor *xr = ag_reshape(ctx, ag_permute(ctx, x, (const int[]){1, 0, 2, 3}), 3, AG_SHAPE(NH, B * T, D));
    ag_tensor *s = ag_reshape(ctx, ag_matmul(ctx, xr, tab, false, true), 4, AG_SHAPE(NH, B, T, S2));
    return ag_permute(ctx, s, (const int[]){1, 0, 2, 3});
}

/* A projection of the table [2S,C] split into heads: [NH,2S,D]. */
static ag_tensor *table_heads(ag_ctx *ctx, const nn_linear *proj, ag_tensor *table, int NH) {
    ag_tensor *t = nn_linear_forward(ctx, proj, table);
    if (!t) return NULL;
    const int64_t S2 = t->shape[0], A = t->shape[1];
    return ag_permute(ctx, ag_reshape(ctx, t, 3, AG_SHAPE(S2, NH, A / NH)), (const int[]){1, 0, 2});
}

/* What every layer shares: the table, the row indices, the padding bias. */
typedef struct {
    ag_tensor *table;      /* [2*span, C]: the rows the position terms read (v2: LayerNorm'd) */
    ag_ints *c2p, *p2c;    /* [B,NH,T,T] */
    ag_tensor *mask_bias;  /* [B,1,T,T] of 0 / -inf, or NULL without padding */
} rel_context;

/* DisentangledSelfAttention on h [B,T,C] -> context [B,T,C]. */
static ag_tensor *disentangled_attention(ag_ctx *ctx, const nn_deberta *m, const nn_deberta_layer *L, ag_tensor *h,
                                         const rel_context *rc) {
    const nn_deberta_config *g = &m->cfg;
    const int NH = g->num_attention_heads, C = g->hidden_size, D = C / NH;
    ag_tensor *q, *k, *v;
    int sf; /* scale_factor */
    if (!g->v2) {
        /* in_proj [B,T,3C] viewed per head as [q | k | v] of D each */
        ag_tensor *qkv = nn_split_heads(ctx, nn_linear_forward(ctx, &L->in_proj, h), NH); /* [B,NH,T,3D] */
        ag_tensor *parts[3];
        if (!qkv || ag_split(ctx, qkv, 3, 3, parts)) return NULL;
        q = ag_add(ctx, parts[0], ag_reshape(ctx, L->q_bias, 3, AG_SHAPE(NH, 1, D)));
        k = parts[1];
        v = ag_add(ctx, parts[2], ag_reshape(ctx, L->v_bias, 3, AG_SHAPE(NH, 1, D)));
        sf = 1 + g->n_pos_att;
    } else {
        q = nn_split_heads(ctx, nn_linear_forward(ctx, &L->query, h), NH); /* [B,NH,T,D] */
        k = nn_split_heads(ctx, nn_linear_forward(ctx, &L->key, h), NH);
        v = nn_split_heads(ctx, nn_linear_forward(ctx, &L->value, h), NH);
        sf = 1 + g->c2p + g->p2c;
    }
    const float s = 1.0f / sqrtf((float)D * (float)sf);
    ag_tensor *qs = ag_scale(ctx, q, s); /* every term of the score carries s once */

    ag_tensor *bias = NULL; /* [B,NH,T,T] */
    if (g->relative_attention) {
        ag_tensor *table = ag_dropout(ctx, rc->table, g->hidden_dropout_prob); /* pos_dropout */
        if (g->c2p) {
            const nn_linear *pk = !g->v2 ? &L->pos_proj : g->share_att_key ? &L->key : &L->pos_key;
            bias = ag_gather(ctx, against_table(ctx, qs, table_heads(ctx, pk, table, NH)), rc->c2p);
        }
        if (g->p2c) {
            const nn_linear *pq = !g->v2 ? &L->pos_q_proj : g->share_att_key ? &L->query : &L->pos_query;
            ag_tensor *pqs = ag_scale(ctx, table_heads(ctx, pq, table, NH), s);
            /* [B,NH,T(key),T(query)] picked by p2c, then turned to [query, key] */
            ag_tensor *p2c = ag_transpose(ctx, ag_gather(ctx, against_table(ctx, k, pqs), rc->p2c), 2, 3);
            bias = bias ? ag_add(ctx, bias, p2c) : p2c;
        }
    }
    if (rc->mask_bias) bias = bias ? ag_add(ctx, bias, rc->mask_bias) : rc->mask_bias;
    const ag_attn_opts opts = {.no_scale = true, .bias = bias, .dropout = g->attention_probs_dropout_prob};
    return nn_merge_heads(ctx, ag_attention(ctx, qs, k, v, &opts));
}

/* v2's ConvLayer: LayerNorm(residual + act(dropout(conv1d(x) with padded rows
 * 0))) * keep, x and residual [B,T,C]. The convolution is K shifted copies of
 * the zero-padded x, each through its own [C,C] slice of the kernel:
 *   out[t] = b + sum_k W[:,:,k] x[t + k - (K-1)/2]. */
static ag_tensor *conv_layer(ag_ctx *ctx, const nn_deberta *m, ag_tensor *x, ag_tensor *residual, ag_tensor *keep,
                             ag_tensor *pad) {
    if (!x) return NULL;
    const int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    const int K = m->cfg.conv_kernel_size, P = (K - 1) / 2;
    ag_tensor *xp = x;
    if (P > 0) {
        ag_tensor *z = ag_new(ctx, 3, AG_SHAPE(B, P, C), false);
        xp = ag_concat(ctx, (ag_tensor *[]){z, x, z}, 3, 1); /* [B,T+2P,C] */
    }
    ag_tensor *out = NULL;
    for (int k = 0; k < K; ++k) {
        ag_tensor *wk = ag_reshape(ctx, ag_slice(ctx, m->conv_w, 2, k, 1), 2, AG_SHAPE(C, C)); /* [out,in] */
        ag_tensor *yk = ag_linear(ctx, ag_slice(ctx, xp, 1, k, T), wk, k == 0 ? m->conv_b : NULL, AG_LINEAR_OUT_IN);
        out = out ? ag_add(ctx, out, yk) : yk;
    }
    if (pad) out = ag_masked_fill(ctx, out, pad, 0.0f);
    out = nn_act_forward(ctx, m->cfg.conv_act, ag_dropout(ctx, out, m->cfg.hidden_dropout_prob));
    ag_tensor *y = nn_norm_forward(ctx, &m->conv_ln, ag_add(ctx, residual, out));
    return keep ? ag_mul(ctx, y, keep) : y;
}

/* ---------------------------------------------------------------- forward */

ag_tensor *nn_deberta_forward(ag_ctx *ctx, const nn_deberta *m, const ag_ints *ids, const ag_ints *token_type_ids,
                              const ag_ints *attention_mask) {
    if (!ids) return NULL;
    const nn_deberta_config *g = &m->cfg;
    char s[64];
    if (ids->ndim != 2) {
        ag_fail(AG_ERR_ARG, "deberta: input_ids must be [B,T], got %s", ag_shape_str(s, ids->ndim, ids->shape));
        return NULL;
    }
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (!nn_same_bt("deberta", "token_type_ids", token_type_ids, B, T) ||
        !nn_same_bt("deberta", "attention_mask", attention_mask, B, T))
        return NULL;
    if (m->position.w && T > g->max_position_embeddings) {
        ag_fail(AG_ERR_ARG, "deberta: %lld positions exceed max_position_embeddings %d", (long long)T,
                g->max_position_embeddings);
        return NULL;
    }

    /* masks from attention_mask: keep [B,T,1] (1 = token), pad [B,T,1] (1 =
     * padding), and the pair bias [B,1,T,T]: 0 where m_i m_j = 1, else -inf */
    ag_tensor *keep = NULL, *pad = NULL, *mask_bias = NULL;
    if (attention_mask) {
        keep = ag_new(ctx, 3, AG_SHAPE(B, T, 1), false);
        pad = ag_new(ctx, 3, AG_SHAPE(B, T, 1), false);
        mask_bias = ag_new(ctx, 4, AG_SHAPE(B, 1, T, T), false);
        if (!keep || !pad || !mask_bias) return NULL;
        const int32_t *am = attention_mask->data;
        for (int64_t i = 0; i < B * T; ++i) keep->data[i] = am[i] != 0, pad->data[i] = am[i] == 0;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t i = 0; i < T; ++i)
                for (int64_t j = 0; j < T; ++j)
                    mask_bias->data[(b * T + i) * T + j] = am[b * T + i] && am[b * T + j] ? 0.0f : -INFINITY;
    }

    /* DebertaEmbeddings: word (+ position) (+ token_type), embed_proj, LayerNorm, * mask */
    ag_tensor *x = nn_embedding_forward(ctx, &m->word, ids); /* [B,T,E] */
    if (m->position.w) {
        ag_ints *pos = ag_ints_from(ctx, NULL, 1, AG_SHAPE(T));
        if (!pos) return NULL;
        for (int64_t t = 0; t < T; ++t) pos->data[t] = (int32_t)t;
        x = ag_add(ctx, x, nn_embedding_forward(ctx, &m->position, pos)); /* + [T,E] */
    }
    if (m->token_type.w) {
        const ag_ints *tt = token_type_ids;
        if (!tt) { /* zeros */
            ag_ints *z = ag_ints_from(ctx, NULL, 2, AG_SHAPE(B, T));
            if (!z) return NULL;
            tt = z;
        }
        x = ag_add(ctx, x, nn_embedding_forward(ctx, &m->token_type, tt));
    }
    if (m->embed_proj.w) x = nn_linear_forward(ctx, &m->embed_proj, x); /* [B,T,C] */
    x = nn_norm_forward(ctx, &m->emb_ln, x);
    if (keep) x = ag_mul(ctx, x, keep);
    ag_tensor *h = ag_dropout(ctx, x, g->hidden_dropout_prob);

    rel_context rc = {.mask_bias = mask_bias};
    if (g->relative_attention) {
        int span; /* v1: min(T, max_relative_positions), the middle rows; v2: the whole table */
        if (g->v2) {
            span = g->position_buckets > 0 ? g->position_buckets : g->max_relative_positions;
            rc.table = m->rel.w;
            if (g->norm_rel_ebd) rc.table = nn_norm_forward(ctx, &m->rel_ln, rc.table);
        } else {
            span = T < g->max_relative_positions ? (int)T : g->max_relative_positions;
            rc.table = ag_slice(ctx, m->rel.w, 0, g->max_relative_positions - span, 2 * span);
        }
        if (!relative_indices(ctx, m, B, T, span, &rc.c2p, &rc.p2c)) return NULL;
    }

    const float p = g->hidden_dropout_prob;
    ag_tensor *h0 = h;
    for (int l = 0; l < g->num_hidden_layers; ++l) {
        const nn_deberta_layer *L = &m->layer[l];
        ag_tensor *a = nn_linear_forward(ctx, &L->attn_out, disentangled_attention(ctx, m, L, h, &rc));
        a = nn_norm_forward(ctx, &L->attn_ln, ag_add(ctx, ag_dropout(ctx, a, p), h));
        ag_tensor *f = nn_act_forward(ctx, g->act, nn_linear_forward(ctx, &L->intermediate, a)); /* [B,T,I] */
        f = nn_linear_forward(ctx, &L->output, f);
        h = nn_norm_forward(ctx, &L->output_ln, ag_add(ctx, ag_dropout(ctx, f, p), a));
        if (l == 0 && m->conv_w) h = conv_layer(ctx, m, h0, h, keep, pad);
    }
    return h;
}

ag_tensor *nn_deberta_mlm_logits(ag_ctx *ctx, const nn_deberta *m, ag_tensor *hidden) {
    if (!m->decoder_b) {
        ag_fail(AG_ERR_STATE, "deberta: this class has no MLM head (use ...ForMaskedLM)");
        return NULL;
    }
    ag_tensor *x = nn_act_forward(ctx, m->cfg.act, nn_linear_forward(ctx, &m->transform, hidden));
    x = nn_norm_forward(ctx, &m->transform_ln, x);
    return ag_linear(ctx, x, m->word.w, m->decoder_b, AG_LINEAR_OUT_IN); /* [...,V] */
}

ag_tensor *nn_deberta_cls_logits(ag_ctx *ctx, const nn_deberta *m, ag_tensor *hidden) {
    if (!m->classifier.w) {
        ag_fail(AG_ERR_STATE, "deberta: this class has no classifier (use ...ForSequenceClassification)");
        return NULL;
    }
    if (!hidden) return NULL;
    const int64_t B = hidden->shape[0], C = hidden->shape[2];
    /* ContextPooler: act(dense(dropout(hidden[:,0]))), then dropout and the classifier */
    ag_tensor *x = ag_reshape(ctx, ag_slice(ctx, hidden, 1, 0, 1), 2, AG_SHAPE(B, C));
    x = nn_linear_forward(ctx, &m->pooler, ag_dropout(ctx, x, m->cfg.pooler_dropout));
    x = ag_dropout(ctx, nn_act_forward(ctx, m->cfg.pooler_act, x), m->cfg.cls_dropout);
    return nn_linear_forward(ctx, &m->classifier, x); /* [B,L] */
}

/* ...ForSequenceClassification without problem_type (see the header). */
static ag_tensor *classifier_loss(ag_ctx *ctx, const nn_deberta *m, ag_tensor *logits, const ag_ints *labels,
                                  int64_t *n_tokens) {
    const nn_deberta_config *g = &m->cfg;
    if (g->problem_type_given || g->num_labels == 1)
        return nn_bert_classifier_loss(ctx, logits, labels, g->problem, g->problem_type_given, n_tokens);
    if (!logits) return NULL;
    const int64_t B = logits->shape[0], L = logits->shape[1];
    char s[64];
    if (labels->ndim == 2 && labels->shape[0] == B && labels->shape[1] == L && L > 1) {
        /* soft labels: -mean_b sum_l log_softmax(logits)_bl * labels_bl */
        ag_tensor *y = ag_new(ctx, 2, AG_SHAPE(B, L), false);
        if (!y) return NULL;
        for (int64_t i = 0; i < B * L; ++i) y->data[i] = (float)labels->data[i];
        if (n_tokens) *n_tokens = B;
        ag_tensor *ll = ag_sum(ctx, ag_mul(ctx, ag_log_softmax(ctx, logits, NULL), y), 1, false); /* [B] */
        return ag_scale(ctx, ag_mean(ctx, ll, AG_ALL, false), -1.0f);
    }
    if (labels->numel != B || (labels->ndim == 2 && labels->shape[1] != 1)) {
        ag_fail(AG_ERR_ARG, "deberta: labels must be [B] = [%lld] or [B,num_labels], got %s", (long long)B,
                ag_shape_str(s, labels->ndim, labels->shape));
        return NULL;
    }
    /* only the rows with a label >= 0 count */
    ag_ints *y = ag_ints_from(ctx, labels->data, 1, AG_SHAPE(B));
    if (!y) return NULL;
    int64_t n = 0;
    for (int64_t b = 0; b < B; ++b) {
        if (y->data[b] < 0) y->data[b] = AG_IGNORE_INDEX;
        else n++;
    }
    if (n == 0) {
        ag_fail(AG_ERR_ARG, "deberta: no row of labels is >= 0, so there is nothing to learn from");
        return NULL;
    }
    if (n_tokens) *n_tokens = n;
    return ag_cross_entropy(ctx, logits, y, 0.0f, AG_REDUCE_MEAN);
}

ag_tensor *nn_deberta_loss(ag_ctx *ctx, const nn_deberta *m, const ag_ints *ids, const ag_ints *token_type_ids,
                           const ag_ints *attention_mask, const ag_ints *labels, int64_t *n_tokens) {
    if (m->head == NN_DEBERTA_MODEL) {
        ag_fail(AG_ERR_STATE, "deberta: the bare model has no loss (use ...ForMaskedLM or "
                "...ForSequenceClassification)");
        return NULL;
    }
    if (!labels) {
        ag_fail(AG_ERR_ARG, "deberta: the loss needs \"labels\"");
        return NULL;
    }
    ag_tensor *h = nn_deberta_forward(ctx, m, ids, token_type_ids, attention_mask); /* [B,T,C] */
    if (!h) return NULL;
    if (m->head == NN_DEBERTA_SEQ_CLS) return classifier_loss(ctx, m, nn_deberta_cls_logits(ctx, m, h), labels, n_tokens);
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (!nn_same_bt("deberta", "labels", labels, B, T)) return NULL;
    int64_t count = 0;
    for (int64_t i = 0; i < labels->numel; ++i) count += labels->data[i] != AG_IGNORE_INDEX;
    if (n_tokens) *n_tokens = count;
    return ag_cross_entropy(ctx, nn_deberta_mlm_logits(ctx, m, h), labels, 0.0f, AG_REDUCE_MEAN);
}
