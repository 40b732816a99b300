/* models.h: a model family chosen by a config.json and a Hugging Face class
 * name, behind one interface for the commands that do not care which family
 * it is (loss, params, convert, generate). Each family registers here: its
 * classes, config reader, parameter declaration, init, aliases and loss. */
#ifndef TAPEGRAD_RECIPES_MODELS_H
#define TAPEGRAD_RECIPES_MODELS_H

#include "batch.h"
#include "ckpt.h"
#include "bert.h"
#include "distilbert.h"
#include "gpt2.h"
#include "gpt_neo.h"
#include "gptj.h"
#include "openai.h"
#include "ctrl.h"
#include "t5.h"
#include "bart.h"
#include "m2m100.h"
#include "albert.h"
#include "electra.h"
#include "deberta.h"
#include "xlm.h"
#include "gpt3.h"
#include "encoder_decoder.h"
#include "bigbird.h"
#include "nn.h"

typedef enum {
    RECIPE_FAMILY_GPT2,
    RECIPE_FAMILY_BERT, /* bert, roberta, xlm-roberta */
    RECIPE_FAMILY_DISTILBERT,
    RECIPE_FAMILY_GPT_NEO,
    RECIPE_FAMILY_GPTJ,
    RECIPE_FAMILY_OPENAI,
    RECIPE_FAMILY_CTRL,
    RECIPE_FAMILY_T5,
    RECIPE_FAMILY_BART, /* bart, m2m_100 */
    RECIPE_FAMILY_ALBERT,
    RECIPE_FAMILY_ELECTRA,
    RECIPE_FAMILY_DEBERTA, /* deberta, deberta-v2 */
    RECIPE_FAMILY_XLM,
    RECIPE_FAMILY_GPT3,
    RECIPE_FAMILY_BERT2BERT, /* encoder-decoder of two BERTs */
    RECIPE_FAMILY_BIGBIRD,
} recipe_family;

/* Every model_type tapegrad builds, for messages. */
#define RECIPE_MODEL_TYPES \
    "gpt2, gpt3, gpt_neo, gptj, openai-gpt, ctrl, bert, roberta, xlm-roberta, xlm, distilbert, albert, electra, " \
    "deberta, deberta-v2, big_bird, t5, bart, m2m_100, encoder-decoder"

typedef struct recipe_model {
    char arch[64];      /* the Hugging Face class, e.g. "GPT2LMHeadModel" */
    recipe_family family;
    nn_config cfg;
    ag_params ps;
    nn_gpt2 gpt2;
    nn_bert bert;       /* bert, roberta, xlm-roberta */
    nn_distilbert distilbert;
    nn_gpt_neo gpt_neo;
    nn_gptj gptj;
    nn_openai openai;
    nn_ctrl ctrl;
    nn_t5 t5;
    nn_bart bart;       /* bart, m2m_100 */
    nn_albert albert;
    nn_electra electra;
    nn_deberta deberta; /* deberta, deberta-v2 */
    nn_xlm xlm;
    nn_gpt3 gpt3;
    nn_bert2bert bert2bert;
    nn_bigbird bigbird;
    ckpt_alias aliases[8];
    int n_aliases;
} recipe_model;

/* Reads the config and declares the class's parameters (names and shapes) in
 * m->ps, not yet finalized: `tapegrad params` stops there, without allocating
 * weights. arch NULL or "" takes the config's architectures[0]. Errors: an
 * unknown model_type or class, a bad config field (named). */
ag_status recipe_model_declare(recipe_model *m, const char *config_path, const char *arch);
/* The same from config.json text (a checkpoint's /config); `name` is what
 * messages call it. */
ag_status recipe_model_declare_text(recipe_model *m, const char *config_text, const char *name, const char *arch);
/* Finalizes the registry and initialises the weights as Hugging Face does. */
ag_status recipe_model_alloc(recipe_model *m, uint64_t seed);
void recipe_model_free(recipe_model *m);

/* The class's own loss on a batch (the fields it needs: input_ids,
 * attention_mask, labels, ...), as its forward(labels=...) computes it.
 * *tokens receives the number of counted target tokens. */
ag_tensor *recipe_model_loss(ag_ctx *ctx, recipe_model *m, const recipe_batch *b, int64_t *tokens);

/* A ...ForSequenceClassification encoder's logits [B,num_labels] from ids,
 * token_type_ids (NULL: zeros; DistilBERT has none) and attention_mask [B,T]:
 * BERT, RoBERTa, XLM-R, DistilBERT, ALBERT, ELECTRA, DeBERTa (v1 and v2),
 * each through its own head (pooler or [CLS] head, as Hugging Face). NULL with
 * an error for another family or another class of these. */
ag_tensor *recipe_model_cls_logits(ag_ctx *ctx, const recipe_model *m, const ag_ints *ids, const ag_ints *types,
                                   const ag_ints *mask);

#endif
