/* pretrain.h: the pretraining objectives behind `tapegrad pretrain --recipe
 * mlm|nsp|sop|electra|span|denoise|tlm|ctrl` (clm is recipe_train_clm in
 * recipes.h). The trainer reads the prepared shards into a recipe_corpus and
 * draws batch (step*grad_accum + micro) from the objective's collator
 * (collate.h); the pieces are public so the tests can drive one step. */
#ifndef TAPEGRAD_RECIPES_PRETRAIN_H
#define TAPEGRAD_RECIPES_PRETRAIN_H

#include "collate.h"
#include "models.h"
#include "recipes.h"

typedef enum {
    RECIPE_OBJ_MLM,     /* BertForMaskedLM, RobertaForMaskedLM (any class with an MLM loss) */
    RECIPE_OBJ_NSP,     /* BertForPreTraining: MLM + next sentence */
    RECIPE_OBJ_SOP,     /* AlbertForPreTraining: MLM + sentence order */
    RECIPE_OBJ_ELECTRA, /* ElectraForMaskedLM generator + ElectraForPreTraining discriminator */
    RECIPE_OBJ_SPAN,    /* T5ForConditionalGeneration: span corruption */
    RECIPE_OBJ_DENOISE, /* BartForConditionalGeneration: text infilling and friends */
    RECIPE_OBJ_TLM,     /* XLMWithLMHeadModel: translation LM on pairs */
    RECIPE_OBJ_CTRL,    /* CTRLLMHeadModel (or GPT-2): causal LM after a control code */
} recipe_objective;

/* "mlm", ... -> the objective. Errors: AG_ERR_ARG naming the recipes. */
ag_status recipe_objective_from_name(const char *name, recipe_objective *obj);

/* A corpus that owns its arrays (recipe_corpus points into them). */
typedef struct recipe_owned_corpus {
    recipe_corpus c;
    int32_t *tokens;
    int64_t *doc_start, *sent_start; /* [n_docs + 1], [n_sents + 1] */
    int32_t *control;                /* [n_docs] with control_first, else NULL */
    int64_t n_tokens, n_docs, n_sents;
    int32_t vocab_size;              /* the manifest's */
} recipe_owned_corpus;

/* Reads every shard of `split` of the prepared folder `dir` (manifest.json)
 * into one corpus: the end-of-text separators dropped, documents cut across
 * shards joined again, empty documents skipped. control_first: each
 * document's first id is its control code (ctrl), taken out of the text into
 * control[]. Errors: the manifest's or a shard's (named), an empty split. */
ag_status recipe_corpus_load(recipe_owned_corpus *oc, const char *dir, const char *split, bool control_first);
void recipe_owned_corpus_free(recipe_owned_corpus *oc);

/* The collators' special ids from dir/manifest.json: pad, cls, sep, mask,
 * bos = cls and eos = sep (the end-of-text id where absent); *unk the unknown
 * token or -1. Errors: no manifest, no special_ids. */
ag_status recipe_manifest_specials(const char *dir, recipe_collate_config *cfg, int32_t unk[1]);

/* ALBERT's word boundaries for whole-word n-gram masking: is_cont [V]
 * receives 1 for each id that continues the word before it and 0 for a word
 * start. The rule is the script's is_start_piece: a WordPiece tokenizer's
 * "##" pieces continue (_is_start_piece_bert); for a SentencePiece
 * (Unigram) vocabulary a piece continues unless it starts with U+2581 or
 * "<", is one punctuation character, or holds a character other than an
 * ASCII letter or that punctuation (_is_start_piece_sp). Returns false (and
 * is_cont all 0: every piece its own unit, do_whole_word_mask off) for a
 * tokenizer with no such rule (byte-level BPE). Ids past the vocabulary and
 * the special tokens are starts. */
struct data_tokenizer;
bool recipe_word_continuations(const struct data_tokenizer *t, int32_t V, uint8_t *is_cont);

/* Puts the data's tokenizer into the run folder as out_dir/tokenizer.json, as
 * a Hugging Face model folder carries its own, so that finetune, generate and
 * convert read the run's ids as text. It is data_dir/tokenizer.json (prepare
 * writes it) or else the manifest's "tokenizer" path; byte-level data (and an
 * older folder whose tokenizer has moved) have none and nothing is written.
 * Errors: a tokenizer that is there but unreadable, an unwritable run folder. */
ag_status recipe_run_tokenizer(const char *data_dir, const char *out_dir);

/* One objective's model(s). For electra, model is the discriminator and gen
 * the generator whose non-embedding parameters live in model.ps as
 * "generator.<name>" and whose embeddings ARE the discriminator's (pretrain.c
 * explains how). */
typedef struct recipe_objective_state {
    recipe_objective obj;
    recipe_model model;
    bool has_gen;
    nn_config gen_cfg;
    ag_params gen_ps;   /* the generator's declarations only: their data points into model.ps */
    nn_electra gen;
} recipe_objective_state;

/* Declares the recipe's class from config_path (electra: ElectraForPreTraining,
 * plus the generator from generator_config). Errors: the config's, a
 * generator whose embeddings cannot be shared. train, B, T are unused. */
ag_status recipe_objective_init(recipe_objective_state *s, recipe_objective obj, const char *config_path,
                                const char *generator_config, const recipe_owned_corpus *train, int B, int T,
                                uint64_t seed);
/* Allocates and initialises (Hugging Face's init per family), then aliases
 * the generator. Errors: out of memory. */
ag_status recipe_objective_alloc(recipe_objective_state *s, uint64_t seed);
void recipe_objective_free(recipe_objective_state *s);

/* Batch `index` of the objective's collator (p: the pairs, tlm only). */
ag_status recipe_objective_collate(recipe_batch *out, const recipe_objective_state *s, const recipe_corpus *c,
                                   const recipe_parallel *p, const recipe_collate_config *cfg, int B, int T,
                                   uint64_t seed, uint64_t index);
/* The objective's loss on a collated batch: the model's own (mean) loss, for
 * electra generator MLM + 50 x discriminator. *tokens receives the predicted
 * tokens (labels not -100), the trainer's weight; parts[0], parts[1] the
 * generator's and discriminator's losses (electra) or the loss and NaN.
 * Returns NULL with ag_error() set on failure. */
ag_tensor *recipe_objective_loss(ag_ctx *ctx, recipe_objective_state *s, const recipe_batch *b, uint64_t seed,
                                 uint64_t index, int64_t *tokens, double parts[2]);

typedef struct recipe_pretrain_opts {
    recipe_train_opts train;       /* everything the clm trainer takes */
    const char *recipe;            /* mlm, nsp, sop, electra, span, denoise, tlm, ctrl */
    const char *generator_config;  /* electra: the ElectraForMaskedLM config */
    const char *tgt_data_dir;      /* tlm: the second language, prepared alongside data_dir */
    const char *masking;           /* mlm, nsp, sop, tlm: "tokens" (BERT / Hugging Face) or "ngram" (ALBERT);
                                    * NULL: the recipe's own (ngram for sop, tokens for the rest) */
    int max_ngram;                 /* n-gram masking's longest n-gram (0: ALBERT's 3) */
    bool quiet;                    /* no progress lines (tests) */
    double *first_val, *last_val;  /* when not NULL: the held-out loss at the start and the last evaluation */
} recipe_pretrain_opts;

/* Trains as recipe_train_clm does (see pretrain.c for the loop), printing
 * progress, appending metrics.jsonl, evaluating on eval_batches held-out
 * batches, saving out_dir/ckpt.h5 every save_every steps, at the end and on
 * Ctrl-C; resume continues bit for bit. Errors: an unknown recipe, bad
 * options, unreadable config or data, a vocabulary too small for the data,
 * a non-finite loss, a failed save. */
ag_status recipe_pretrain(const recipe_pretrain_opts *o);

#endif
