/* models.c: choosing the family and class (see models.h). */
#include "models.h"

#include <string.h>

/* Keeps a family's tied-weight aliases ({alias, primary} pairs, e.g.
 * {"lm_head.weight", "transformer.wte.weight"}) for the safetensors loader. */
static void keep_aliases(recipe_model *m, const char *al[][2], int n) {
    m->n_aliases = n;
    for (int i = 0; i < n; ++i) m->aliases[i] = (ckpt_alias){al[i][0], al[i][1]};
}

/* BERT and its RoBERTa/XLM-R relatives: the class name is the family's
 * prefix ("Bert", "Roberta", "XLMRoberta") and the head's suffix. */
static ag_status declare_bert(recipe_model *m, const char *type, const char *a) {
    const bool roberta = strcmp(type, "bert") != 0;
    const char *family = strcmp(type, "bert") == 0 ? "Bert" : strcmp(type, "roberta") == 0 ? "Roberta" : "XLMRoberta";
    static const struct { const char *suffix; nn_bert_head head; bool bert_only; } classes[] = {
        {"Model", NN_BERT_MODEL, false},
        {"ForMaskedLM", NN_BERT_MASKED_LM, false},
        {"ForPreTraining", NN_BERT_PRETRAINING, true},
        {"ForSequenceClassification", NN_BERT_SEQ_CLS, false},
    };
    const size_t n = strlen(family);
    int k = -1;
    for (int i = 0; i < 4; ++i)
        if (strncmp(a, family, n) == 0 && strcmp(a + n, classes[i].suffix) == 0 && !(roberta && classes[i].bert_only))
            k = i;
    if (k < 0)
        return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not a %s class tapegrad builds (%sModel, %sForMaskedLM, "
                       "%s%sForSequenceClassification)", m->cfg.path, a, type, family, family,
                       roberta ? "" : "BertForPreTraining, ", family);
    m->family = RECIPE_FAMILY_BERT;
    nn_bert_config bc;
    ag_status st;
    if ((st = nn_bert_config_read(&m->cfg, roberta, &bc)) || (st = nn_bert_declare(&m->ps, &m->bert, &bc, classes[k].head)))
        return st;
    const char *al[4][2];
    keep_aliases(m, al, nn_bert_aliases(&m->bert, al, 4));
    return AG_OK;
}

static ag_status declare_distilbert(recipe_model *m, const char *a) {
    nn_bert_head head;
    if (strcmp(a, "DistilBertModel") == 0) head = NN_BERT_MODEL;
    else if (strcmp(a, "DistilBertForMaskedLM") == 0) head = NN_BERT_MASKED_LM;
    else if (strcmp(a, "DistilBertForSequenceClassification") == 0) head = NN_BERT_SEQ_CLS;
    else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not a DistilBERT class tapegrad builds (DistilBertModel, "
                        "DistilBertForMaskedLM, DistilBertForSequenceClassification)", m->cfg.path, a);
    m->family = RECIPE_FAMILY_DISTILBERT;
    nn_distilbert_config dc;
    ag_status st;
    if ((st = nn_distilbert_config_read(&m->cfg, &dc)) || (st = nn_distilbert_declare(&m->ps, &m->distilbert, &dc, head)))
        return st;
    const char *al[2][2];
    keep_aliases(m, al, nn_distilbert_aliases(&m->distilbert, al, 2));
    return AG_OK;
}

/* T5: T5Model, T5ForConditionalGeneration, T5EncoderModel. */
static ag_status declare_t5(recipe_model *m, const char *a) {
    nn_t5_head head;
    if (strcmp(a, "T5ForConditionalGeneration") == 0) head = NN_T5_CONDITIONAL_GENERATION;
    else if (strcmp(a, "T5Model") == 0) head = NN_T5_MODEL;
    else if (strcmp(a, "T5EncoderModel") == 0) head = NN_T5_ENCODER_MODEL;
    else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not a T5 class tapegrad builds (T5ForConditionalGeneration, "
                        "T5Model, T5EncoderModel)", m->cfg.path, a);
    m->family = RECIPE_FAMILY_T5;
    nn_t5_config tc;
    ag_status st;
    if ((st = nn_t5_config_read(&m->cfg, &tc)) || (st = nn_t5_declare(&m->ps, &m->t5, &tc, head))) return st;
    const char *al[4][2];
    keep_aliases(m, al, nn_t5_aliases(&m->t5, al, 4));
    return AG_OK;
}

/* BART and M2M-100: one network in two flavours (nn/bart.h). */
static ag_status declare_bart(recipe_model *m, const char *type, const char *a) {
    const bool m2m = strcmp(type, "m2m_100") == 0;
    const char *family = m2m ? "M2M100" : "Bart";
    static const struct { const char *suffix; nn_bart_head head; } classes[] = {
        {"Model", NN_BART_MODEL},
        {"ForConditionalGeneration", NN_BART_COND_GEN},
        {"ForSequenceClassification", NN_BART_SEQ_CLS},
    };
    const size_t n = strlen(family);
    int k = -1;
    for (int i = 0; i < (m2m ? 2 : 3); ++i)
        if (strncmp(a, family, n) == 0 && strcmp(a + n, classes[i].suffix) == 0) k = i;
    if (k < 0)
        return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not a %s class tapegrad builds (%sModel, "
                       "%sForConditionalGeneration%s)", m->cfg.path, a, type, family, family,
                       m2m ? "" : ", BartForSequenceClassification");
    m->family = RECIPE_FAMILY_BART;
    nn_bart_config bc;
    ag_status st;
    if ((st = m2m ? nn_m2m100_config_read(&m->cfg, &bc) : nn_bart_config_read(&m->cfg, &bc)) ||
        (st = nn_bart_declare(&m->ps, &m->bart, &bc, classes[k].head)))
        return st;
    const char *al[8][2];
    keep_aliases(m, al, nn_bart_aliases(&m->bart, al, 8));
    return AG_OK;
}

/* BERT2BERT: EncoderDecoderModel over two BERT configs. */
static ag_status declare_bert2bert(recipe_model *m, const char *a) {
    if (strcmp(a, "EncoderDecoderModel") != 0)
        return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not an encoder-decoder class tapegrad builds "
                       "(EncoderDecoderModel)", m->cfg.path, a);
    m->family = RECIPE_FAMILY_BERT2BERT;
    nn_bert2bert_config bc;
    ag_status st;
    if ((st = nn_bert2bert_config_read(&m->cfg, &bc)) || (st = nn_bert2bert_declare(&m->ps, &m->bert2bert, &bc)))
        return st;
    const char *al[4][2];
    keep_aliases(m, al, nn_bert2bert_aliases(&m->bert2bert, al, 4));
    return AG_OK;
}

/* ALBERT and ELECTRA: the class name picks the head. */
static ag_status declare_albert(recipe_model *m, const char *a) {
    nn_albert_head head;
    if (strcmp(a, "AlbertModel") == 0) head = NN_ALBERT_MODEL;
    else if (strcmp(a, "AlbertForMaskedLM") == 0) head = NN_ALBERT_MASKED_LM;
    else if (strcmp(a, "AlbertForPreTraining") == 0) head = NN_ALBERT_PRETRAINING;
    else if (strcmp(a, "AlbertForSequenceClassification") == 0) head = NN_ALBERT_SEQ_CLS;
    else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not an ALBERT class tapegrad builds (AlbertModel, "
                        "AlbertForMaskedLM, AlbertForPreTraining, AlbertForSequenceClassification)", m->cfg.path, a);
    m->family = RECIPE_FAMILY_ALBERT;
    nn_albert_config ac;
    ag_status st;
    if ((st = nn_albert_config_read(&m->cfg, &ac)) || (st = nn_albert_declare(&m->ps, &m->albert, &ac, head)))
        return st;
    const char *al[2][2];
    keep_aliases(m, al, nn_albert_aliases(&m->albert, al, 2));
    return AG_OK;
}

/* XLM: XLMModel, XLMWithLMHeadModel, XLMForSequenceClassification. */
static ag_status declare_xlm(recipe_model *m, const char *a) {
    nn_xlm_head head;
    if (strcmp(a, "XLMWithLMHeadModel") == 0) head = NN_XLM_LM_HEAD;
    else if (strcmp(a, "XLMModel") == 0) head = NN_XLM_MODEL;
    else if (strcmp(a, "XLMForSequenceClassification") == 0) head = NN_XLM_SEQ_CLS;
    else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not an XLM class tapegrad builds (XLMWithLMHeadModel, "
                        "XLMModel, XLMForSequenceClassification)", m->cfg.path, a);
    m->family = RECIPE_FAMILY_XLM;
    nn_xlm_config xc;
    ag_status st;
    if ((st = nn_xlm_config_read(&m->cfg, &xc)) || (st = nn_xlm_declare(&m->ps, &m->xlm, &xc, head))) return st;
    const char *al[2][2];
    keep_aliases(m, al, nn_xlm_aliases(&m->xlm, al, 2));
    return AG_OK;
}

static ag_status declare_electra(recipe_model *m, const char *a) {
    nn_electra_head head;
    if (strcmp(a, "ElectraModel") == 0) head = NN_ELECTRA_MODEL;
    else if (strcmp(a, "ElectraForPreTraining") == 0) head = NN_ELECTRA_PRETRAINING;
    else if (strcmp(a, "ElectraForMaskedLM") == 0) head = NN_ELECTRA_MASKED_LM;
    else if (strcmp(a, "ElectraForSequenceClassification") == 0) head = NN_ELECTRA_SEQ_CLS;
    else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not an ELECTRA class tapegrad builds (ElectraModel, "
                        "ElectraForPreTraining, ElectraForMaskedLM, ElectraForSequenceClassification)", m->cfg.path, a);
    m->family = RECIPE_FAMILY_ELECTRA;
    nn_electra_config ec;
    ag_status st;
    if ((st = nn_electra_config_read(&m->cfg, &ec)) || (st = nn_electra_declare(&m->ps, &m->electra, &ec, head)))
        return st;
    const char *al[1][2];
    keep_aliases(m, al, nn_electra_aliases(&m->electra, al, 1));
    return AG_OK;
}

/* DeBERTa v1 and v2: DebertaModel, DebertaForMaskedLM,
 * DebertaForSequenceClassification and the DebertaV2* classes. */
static ag_status declare_deberta(recipe_model *m, const char *type, const char *a) {
    const bool v2 = strcmp(type, "deberta-v2") == 0;
    const char *family = v2 ? "DebertaV2" : "Deberta";
    const size_t n = strlen(family);
    nn_deberta_head head;
    if (strncmp(a, family, n) == 0 && strcmp(a + n, "Model") == 0) head = NN_DEBERTA_MODEL;
    else if (strncmp(a, family, n) == 0 && strcmp(a + n, "ForMaskedLM") == 0) head = NN_DEBERTA_MASKED_LM;
    else if (strncmp(a, family, n) == 0 && strcmp(a + n, "ForSequenceClassification") == 0) head = NN_DEBERTA_SEQ_CLS;
    else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not a %s class tapegrad builds (%sModel, %sForMaskedLM, "
                        "%sForSequenceClassification)", m->cfg.path, a, type, family, family, family);
    m->family = RECIPE_FAMILY_DEBERTA;
    nn_deberta_config dc;
    ag_status st;
    if ((st = nn_deberta_config_read(&m->cfg, v2, &dc)) || (st = nn_deberta_declare(&m->ps, &m->deberta, &dc, head)))
        return st;
    const char *al[2][2];
    keep_aliases(m, al, nn_deberta_aliases(&m->deberta, al, 2));
    return AG_OK;
}

/* The GPT-3-style model (nn/gpt3.h): GPT-2's classes and names, banded layers. */
static ag_status declare_gpt3(recipe_model *m, const char *a) {
    bool head;
    if (strcmp(a, "GPT3LMHeadModel") == 0 || strcmp(a, "GPT2LMHeadModel") == 0) head = true;
    else if (strcmp(a, "GPT3Model") == 0 || strcmp(a, "GPT2Model") == 0) head = false;
    else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not a GPT-3 class tapegrad builds (GPT3LMHeadModel, "
                        "GPT3Model, or GPT-2's names)", m->cfg.path, a);
    m->family = RECIPE_FAMILY_GPT3;
    nn_gpt3_config gc;
    ag_status st;
    if ((st = nn_gpt3_config_read(&m->cfg, &gc)) || (st = nn_gpt3_declare(&m->ps, &m->gpt3, &gc, head))) return st;
    const char *al[2][2];
    keep_aliases(m, al, nn_gpt3_aliases(&m->gpt3, al, 2));
    return AG_OK;
}

/* BigBird: BigBirdModel, BigBirdForMaskedLM. */
static ag_status declare_bigbird(recipe_model *m, const char *a) {
    nn_bigbird_head head;
    if (strcmp(a, "BigBirdModel") == 0) head = NN_BIGBIRD_MODEL;
    else if (strcmp(a, "BigBirdForMaskedLM") == 0) head = NN_BIGBIRD_MASKED_LM;
    else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not a BigBird class tapegrad builds (BigBirdModel, "
                        "BigBirdForMaskedLM)", m->cfg.path, a);
    m->family = RECIPE_FAMILY_BIGBIRD;
    nn_bigbird_config bc;
    ag_status st;
    if ((st = nn_bigbird_config_read(&m->cfg, &bc)) || (st = nn_bigbird_declare(&m->ps, &m->bigbird, &bc, head)))
        return st;
    const char *al[4][2];
    keep_aliases(m, al, nn_bigbird_aliases(&m->bigbird, al, 4));
    return AG_OK;
}

/* Declares the class named by arch (or the config's architectures[0]) from
 * the parsed config in m->cfg. */
static ag_status declare_from_config(recipe_model *m, const char *arch) {
    const char *config_path = m->cfg.path;
    ag_status st;
    const char *type, *a = arch && arch[0] ? arch : NULL;
    if ((st = nn_config_str(&m->cfg, "model_type", NULL, &type))) return st;
    if (!type) return ag_fail(AG_ERR_ARG, "config %s: no \"model_type\" field", config_path);
    if (!a) {
        const cJSON *archs = cJSON_GetObjectItemCaseSensitive(m->cfg.json, "architectures");
        const cJSON *first = cJSON_GetArrayItem(archs, 0);
        if (!cJSON_IsString(first))
            return ag_fail(AG_ERR_ARG, "config %s: no \"architectures\" list to choose a class from (give --arch)",
                           config_path);
        a = first->valuestring;
    }
    snprintf(m->arch, sizeof m->arch, "%s", a);
    if (strcmp(type, "gpt2") == 0) {
        m->family = RECIPE_FAMILY_GPT2;
        bool head;
        if (strcmp(a, "GPT2LMHeadModel") == 0) head = true;
        else if (strcmp(a, "GPT2Model") == 0) head = false;
        else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not a GPT-2 class tapegrad builds "
                            "(GPT2LMHeadModel, GPT2Model)", config_path, a);
        nn_gpt2_config gc;
        if ((st = nn_gpt2_config_read(&m->cfg, &gc)) || (st = nn_gpt2_declare(&m->ps, &m->gpt2, &gc, head))) return st;
        const char *al[4][2];
        keep_aliases(m, al, nn_gpt2_aliases(&m->gpt2, al, 4));
        return AG_OK;
    }
    if (strcmp(type, "gpt_neo") == 0) {
        m->family = RECIPE_FAMILY_GPT_NEO;
        bool head;
        if (strcmp(a, "GPTNeoForCausalLM") == 0) head = true;
        else if (strcmp(a, "GPTNeoModel") == 0) head = false;
        else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not a GPT-Neo class tapegrad builds "
                            "(GPTNeoForCausalLM, GPTNeoModel)", config_path, a);
        nn_gpt_neo_config gc;
        if ((st = nn_gpt_neo_config_read(&m->cfg, &gc)) || (st = nn_gpt_neo_declare(&m->ps, &m->gpt_neo, &gc, head)))
            return st;
        const char *al[4][2];
        keep_aliases(m, al, nn_gpt_neo_aliases(&m->gpt_neo, al, 4));
        return AG_OK;
    }
    if (strcmp(type, "gptj") == 0) {
        m->family = RECIPE_FAMILY_GPTJ;
        bool head;
        if (strcmp(a, "GPTJForCausalLM") == 0) head = true;
        else if (strcmp(a, "GPTJModel") == 0) head = false;
        else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not a GPT-J class tapegrad builds "
                            "(GPTJForCausalLM, GPTJModel)", config_path, a);
        nn_gptj_config gc;
        if ((st = nn_gptj_config_read(&m->cfg, &gc)) || (st = nn_gptj_declare(&m->ps, &m->gptj, &gc, head))) return st;
        const char *al[4][2];
        keep_aliases(m, al, nn_gptj_aliases(&m->gptj, al, 4));
        return AG_OK;
    }
    if (strcmp(type, "openai-gpt") == 0) {
        m->family = RECIPE_FAMILY_OPENAI;
        bool head;
        if (strcmp(a, "OpenAIGPTLMHeadModel") == 0) head = true;
        else if (strcmp(a, "OpenAIGPTModel") == 0) head = false;
        else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not an OpenAI GPT class tapegrad builds "
                            "(OpenAIGPTLMHeadModel, OpenAIGPTModel)", config_path, a);
        nn_openai_config gc;
        if ((st = nn_openai_config_read(&m->cfg, &gc)) || (st = nn_openai_declare(&m->ps, &m->openai, &gc, head)))
            return st;
        const char *al[4][2];
        keep_aliases(m, al, nn_openai_aliases(&m->openai, al, 4));
        return AG_OK;
    }
    if (strcmp(type, "ctrl") == 0) {
        m->family = RECIPE_FAMILY_CTRL;
        bool head;
        if (strcmp(a, "CTRLLMHeadModel") == 0) head = true;
        else if (strcmp(a, "CTRLModel") == 0) head = false;
        else return ag_fail(AG_ERR_ARG, "config %s: class '%s' is not a CTRL class tapegrad builds "
                            "(CTRLLMHeadModel, CTRLModel)", config_path, a);
        nn_ctrl_config gc;
        if ((st = nn_ctrl_config_read(&m->cfg, &gc)) || (st = nn_ctrl_declare(&m->ps, &m->ctrl, &gc, head))) return st;
        const char *al[4][2];
        keep_aliases(m, al, nn_ctrl_aliases(&m->ctrl, al, 4));
        return AG_OK;
    }
    if (strcmp(type, "bert") == 0 || strcmp(type, "roberta") == 0 || strcmp(type, "xlm-roberta") == 0)
        return declare_bert(m, type, a);
    if (strcmp(type, "distilbert") == 0) return declare_distilbert(m, a);
    if (strcmp(type, "t5") == 0) return declare_t5(m, a);
    if (strcmp(type, "bart") == 0 || strcmp(type, "m2m_100") == 0) return declare_bart(m, type, a);
    if (strcmp(type, "albert") == 0) return declare_albert(m, a);
    if (strcmp(type, "electra") == 0) return declare_electra(m, a);
    if (strcmp(type, "deberta") == 0 || strcmp(type, "deberta-v2") == 0) return declare_deberta(m, type, a);
    if (strcmp(type, "xlm") == 0) return declare_xlm(m, a);
    if (strcmp(type, "gpt3") == 0) return declare_gpt3(m, a);
    if (strcmp(type, "encoder-decoder") == 0) return declare_bert2bert(m, a);
    if (strcmp(type, "big_bird") == 0) return declare_bigbird(m, a);
    return ag_fail(AG_ERR_ARG, "config %s: model_type '%s' is not built by tapegrad yet (%s are)", config_path, type,
                   RECIPE_MODEL_TYPES);
}

ag_status recipe_model_declare(recipe_model *m, const char *config_path, const char *arch) {
    memset(m, 0, sizeof *m);
    ag_params_init(&m->ps);
    ag_status st = nn_config_load(&m->cfg, config_path);
    return st ? st : declare_from_config(m, arch);
}

ag_status recipe_model_declare_text(recipe_model *m, const char *config_text, const char *name, const char *arch) {
    memset(m, 0, sizeof *m);
    ag_params_init(&m->ps);
    ag_status st = nn_config_parse(&m->cfg, config_text, name);
    return st ? st : declare_from_config(m, arch);
}

ag_status recipe_model_alloc(recipe_model *m, uint64_t seed) {
    ag_status st = ag_params_finalize(&m->ps);
    if (st) return st;
    switch (m->family) {
    case RECIPE_FAMILY_GPT2: nn_gpt2_init_weights(&m->gpt2, seed); break;
    case RECIPE_FAMILY_BERT: nn_bert_init_weights(&m->bert, seed); break;
    case RECIPE_FAMILY_DISTILBERT: nn_distilbert_init_weights(&m->distilbert, seed); break;
    case RECIPE_FAMILY_GPT_NEO: nn_gpt_neo_init_weights(&m->gpt_neo, seed); break;
    case RECIPE_FAMILY_GPTJ: nn_gptj_init_weights(&m->gptj, seed); break;
    case RECIPE_FAMILY_OPENAI: nn_openai_init_weights(&m->openai, seed); break;
    case RECIPE_FAMILY_CTRL: nn_ctrl_init_weights(&m->ctrl, seed); break;
    case RECIPE_FAMILY_T5: nn_t5_init_weights(&m->t5, seed); break;
    case RECIPE_FAMILY_BART: nn_bart_init_weights(&m->bart, seed); break;
    case RECIPE_FAMILY_ALBERT: nn_albert_init_weights(&m->albert, seed); break;
    case RECIPE_FAMILY_ELECTRA: nn_electra_init_weights(&m->electra, seed); break;
    case RECIPE_FAMILY_DEBERTA: nn_deberta_init_weights(&m->deberta, seed); break;
    case RECIPE_FAMILY_XLM: nn_xlm_init_weights(&m->xlm, seed); break;
    case RECIPE_FAMILY_GPT3: nn_gpt3_init_weights(&m->gpt3, seed); break;
    case RECIPE_FAMILY_BERT2BERT: nn_bert2bert_init_weights(&m->bert2bert, seed); break;
    case RECIPE_FAMILY_BIGBIRD: nn_bigbird_init_weights(&m->bigbird, seed); break;
    }
    return AG_OK;
}

void recipe_model_free(recipe_model *m) {
    switch (m->family) {
    case RECIPE_FAMILY_GPT2: nn_gpt2_free(&m->gpt2); break;
    case RECIPE_FAMILY_BERT: nn_bert_free(&m->bert); break;
    case RECIPE_FAMILY_DISTILBERT: nn_distilbert_free(&m->distilbert); break;
    case RECIPE_FAMILY_GPT_NEO: nn_gpt_neo_free(&m->gpt_neo); break;
    case RECIPE_FAMILY_GPTJ: nn_gptj_free(&m->gptj); break;
    case RECIPE_FAMILY_OPENAI: nn_openai_free(&m->openai); break;
    case RECIPE_FAMILY_CTRL: nn_ctrl_free(&m->ctrl); break;
    case RECIPE_FAMILY_T5: nn_t5_free(&m->t5); break;
    case RECIPE_FAMILY_BART: nn_bart_free(&m->bart); break;
    case RECIPE_FAMILY_ALBERT: nn_albert_free(&m->albert); break;
    case RECIPE_FAMILY_ELECTRA: nn_electra_free(&m->electra); break;
    case RECIPE_FAMILY_DEBERTA: nn_deberta_free(&m->deberta); break;
    case RECIPE_FAMILY_XLM: nn_xlm_free(&m->xlm); break;
    case RECIPE_FAMILY_GPT3: nn_gpt3_free(&m->gpt3); break;
    case RECIPE_FAMILY_BERT2BERT: nn_bert2bert_free(&m->bert2bert); break;
    case RECIPE_FAMILY_BIGBIRD: nn_bigbird_free(&m->bigbird); break;
    }
    ag_params_free(&m->ps);
    nn_config_free(&m->cfg);
}

ag_tensor *recipe_model_cls_logits(ag_ctx *ctx, const recipe_model *m, const ag_ints *ids, const ag_ints *types,
                                   const ag_ints *mask) {
    switch (m->family) {
    case RECIPE_FAMILY_BERT: return nn_bert_cls_logits(ctx, &m->bert, nn_bert_forward(ctx, &m->bert, ids, types, mask));
    case RECIPE_FAMILY_DISTILBERT:
        return nn_distilbert_cls_logits(ctx, &m->distilbert, nn_distilbert_forward(ctx, &m->distilbert, ids, mask));
    case RECIPE_FAMILY_ALBERT:
        return nn_albert_cls_logits(ctx, &m->albert, nn_albert_forward(ctx, &m->albert, ids, types, mask));
    case RECIPE_FAMILY_ELECTRA:
        return nn_electra_cls_logits(ctx, &m->electra, nn_electra_forward(ctx, &m->electra, ids, types, mask));
    case RECIPE_FAMILY_DEBERTA:
        return nn_deberta_cls_logits(ctx, &m->deberta, nn_deberta_forward(ctx, &m->deberta, ids, types, mask));
    default:
        ag_fail(AG_ERR_ARG, "%s has no sequence classifier here", m->arch);
        return NULL;
    }
}

ag_tensor *recipe_model_loss(ag_ctx *ctx, recipe_model *m, const recipe_batch *b, int64_t *tokens) {
    const ag_ints *ids = recipe_batch_get(b, "input_ids"), *mask = recipe_batch_get(b, "attention_mask"),
                  *labels = recipe_batch_get(b, "labels");
    if (!ids || !labels) {
        ag_fail(AG_ERR_ARG, "loss: %s needs \"input_ids\" and \"labels\" in the batch", m->arch);
        return NULL;
    }
    switch (m->family) {
    case RECIPE_FAMILY_GPT2:
        if (!m->gpt2.lm_head) {
            ag_fail(AG_ERR_ARG, "loss: %s has no loss; use GPT2LMHeadModel", m->arch);
            return NULL;
        }
        return nn_gpt2_lm_loss(ctx, &m->gpt2, ids, mask, labels, AG_REDUCE_MEAN, tokens);
    case RECIPE_FAMILY_BERT:
        return nn_bert_loss(ctx, &m->bert, ids, recipe_batch_get(b, "token_type_ids"), mask, labels,
                            recipe_batch_get(b, "next_sentence_label"), tokens);
    case RECIPE_FAMILY_DISTILBERT: return nn_distilbert_loss(ctx, &m->distilbert, ids, mask, labels, tokens);
    case RECIPE_FAMILY_GPT_NEO:
        if (!m->gpt_neo.lm_head) {
            ag_fail(AG_ERR_ARG, "loss: %s has no loss; use GPTNeoForCausalLM", m->arch);
            return NULL;
        }
        return nn_gpt_neo_lm_loss(ctx, &m->gpt_neo, ids, mask, labels, AG_REDUCE_MEAN, tokens);
    case RECIPE_FAMILY_GPTJ:
        if (!m->gptj.lm_head) {
            ag_fail(AG_ERR_ARG, "loss: %s has no loss; use GPTJForCausalLM", m->arch);
            return NULL;
        }
        return nn_gptj_lm_loss(ctx, &m->gptj, ids, mask, labels, AG_REDUCE_MEAN, tokens);
    case RECIPE_FAMILY_OPENAI:
        if (!m->openai.lm_head) {
            ag_fail(AG_ERR_ARG, "loss: %s has no loss; use OpenAIGPTLMHeadModel", m->arch);
            return NULL;
        }
        return nn_openai_lm_loss(ctx, &m->openai, ids, mask, labels, AG_REDUCE_MEAN, tokens);
    case RECIPE_FAMILY_CTRL:
        if (!m->ctrl.lm_head) {
            ag_fail(AG_ERR_ARG, "loss: %s has no loss; use CTRLLMHeadModel", m->arch);
            return NULL;
        }
        return nn_ctrl_lm_loss(ctx, &m->ctrl, ids, mask, labels, AG_REDUCE_MEAN, tokens);
    case RECIPE_FAMILY_T5:
        /* T5ForConditionalGeneration derives decoder_input_ids from labels
         * unless the batch gives them */
        return nn_t5_loss(ctx, &m->t5, ids, mask, labels, recipe_batch_get(b, "decoder_input_ids"),
                          recipe_batch_get(b, "decoder_attention_mask"), AG_REDUCE_MEAN, tokens);
    case RECIPE_FAMILY_BART:
        return nn_bart_loss(ctx, &m->bart, ids, mask, recipe_batch_get(b, "decoder_input_ids"),
                            recipe_batch_get(b, "decoder_attention_mask"), labels, tokens);
    case RECIPE_FAMILY_ALBERT:
        return nn_albert_loss(ctx, &m->albert, ids, recipe_batch_get(b, "token_type_ids"), mask, labels,
                              recipe_batch_get(b, "sentence_order_label"), tokens);
    case RECIPE_FAMILY_ELECTRA:
        return nn_electra_loss(ctx, &m->electra, ids, recipe_batch_get(b, "token_type_ids"), mask, labels, tokens);
    case RECIPE_FAMILY_DEBERTA:
        return nn_deberta_loss(ctx, &m->deberta, ids, recipe_batch_get(b, "token_type_ids"), mask, labels, tokens);
    case RECIPE_FAMILY_XLM:
        return nn_xlm_loss(ctx, &m->xlm, ids, recipe_batch_get(b, "langs"), recipe_batch_get(b, "token_type_ids"),
                           mask, recipe_batch_get(b, "position_ids"), labels, tokens);
    case RECIPE_FAMILY_GPT3:
        if (!m->gpt3.gpt2.lm_head) {
            ag_fail(AG_ERR_ARG, "loss: %s has no loss; use GPT3LMHeadModel", m->arch);
            return NULL;
        }
        return nn_gpt3_lm_loss(ctx, &m->gpt3, ids, mask, labels, AG_REDUCE_MEAN, tokens);
    case RECIPE_FAMILY_BERT2BERT:
        /* EncoderDecoderModel derives decoder_input_ids from labels unless given */
        return nn_bert2bert_loss(ctx, &m->bert2bert, ids, recipe_batch_get(b, "token_type_ids"), mask, labels,
                                 recipe_batch_get(b, "decoder_input_ids"), recipe_batch_get(b, "decoder_attention_mask"),
                                 tokens);
    case RECIPE_FAMILY_BIGBIRD:
        return nn_bigbird_loss(ctx, &m->bigbird, ids, recipe_batch_get(b, "token_type_ids"), mask, labels, tokens);
    }
    return NULL;
}
