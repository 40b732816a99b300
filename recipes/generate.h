/* generate.h: text generation from any registered decoder family (GPT-2,
 * GPT-Neo, GPT-J, OpenAI GPT, CTRL) with an LM head, as Hugging Face's
 * generate() does it (transformers 4.31): greedy search, sampling
 * (temperature, top-k, top-p, seeded), beam search (BeamSearchScorer: length
 * penalty, early stopping), repetition penalty, a forced start token, a
 * maximum length, end-of-sequence; with or without a key/value cache.
 *
 * With the cache the prompt is run once, then each new token is one forward
 * over one position (nn_*_forward_cached); without it every token re-runs the
 * whole sequence. Both give the same tokens; the cache is the fast path and
 * the re-run the reference it is tested against.
 *
 * Encoder-decoders (T5, BART, M2M-100: recipe_generate_s2s) share the same
 * strategies and step loop: the encoder runs once, the decoder starts from
 * decoder_start_token_id, and its cross-attention keys and values are
 * computed once (s2s_cache.h). See docs/seq2seq.md.
 *
 * What it is not: batched generation of several prompts, or a tokenizer
 * (`tapegrad generate` reads the prompt as bytes, ids 0..255).
 */
#ifndef TAPEGRAD_RECIPES_GENERATE_H
#define TAPEGRAD_RECIPES_GENERATE_H

#include "kv_cache.h"
#include "s2s_cache.h"
#include "models.h"

#include <stdio.h>

/* ---------------------------------------------------------------- a decoder behind one interface */

/* The sizes generation needs from a decoder family. */
typedef struct recipe_decoder_info {
    int n_layer, n_head, d_head; /* the cache's geometry */
    int n_positions;             /* the longest sequence */
    int vocab_size;
    int eos_token_id;            /* the config's eos_token_id, or -1 */
} recipe_decoder_info;

/* Fills *d for a decoder class with an LM head. Returns AG_OK, or AG_ERR_ARG
 * naming the class when it is not a decoder or has no LM head. */
ag_status recipe_decoder_info_get(const recipe_model *m, recipe_decoder_info *d);

/* The LM's logits for ids [B,T]: with cache NULL, the family's full forward
 * from position 0; with a cache, the cached forward over T positions after
 * the cache's len (which advances by T). last_only: only the last position's
 * logits, [B,1,V], else [B,T,V]. Records ops on ctx's tape like any forward
 * (generation calls it inside a no-grad scope; the trainer, for the loss,
 * outside one). Returns NULL with the family's error. */
ag_tensor *recipe_decoder_logits(ag_ctx *ctx, const recipe_model *m, const ag_ints *ids, nn_kv_cache *cache,
                                 bool last_only);

/* ---------------------------------------------------------------- generation */

typedef enum {
    RECIPE_EARLY_STOP_FALSE = 0, /* HF early_stopping=False: stop when no live beam can beat the worst kept */
    RECIPE_EARLY_STOP_TRUE = 1,  /* True: stop as soon as num_beams hypotheses are finished */
    RECIPE_EARLY_STOP_NEVER = 2, /* "never": the exact bound, from max_length when length_penalty > 0 */
} recipe_early_stop;

/* HF's GenerationConfig fields that tapegrad reads. */
typedef struct recipe_gen_config {
    int max_new_tokens;        /* max_length = prompt length + max_new_tokens (capped at n_positions) */
    bool do_sample;            /* false: greedy search, or beam search with num_beams > 1 */
    float temperature;         /* > 0 */
    int top_k;                 /* 0: off */
    float top_p;               /* 1: off */
    float repetition_penalty;  /* 1: off */
    uint64_t seed;             /* sampling draws from (seed, 0), (seed, 1), ... */
    int eos_token_id;          /* < 0: none (run to max_length) */
    int forced_bos_token_id;   /* < 0: none; else forced when the sequence holds one token (HF's cur_len == 1) */
    int num_beams;             /* 1: no beam search */
    float length_penalty;      /* beam score = sum of log-probs / length^length_penalty */
    recipe_early_stop early_stopping;
    bool use_cache;
    bool force_beam_search;    /* run the beam scorer even with num_beams 1 (HF runs greedy search then;
                                * tests show the two agree) */
    int forced_eos_token_id;   /* < 0: none; else forced at the last position (HF's cur_len == max_length - 1) */
} recipe_gen_config;

/* HF's defaults: greedy, temperature 1, top_k 50 when sampling (0 here:
 * off), top_p 1, no penalty, one beam, length_penalty 1, early_stopping
 * False, the cache on; eos from the caller. */
recipe_gen_config recipe_gen_defaults(void);

/* Generates from prompt[n_prompt] (n_prompt >= 1) with the decoder m in ctx
 * (reset before every step; eval mode is set here). out receives the whole
 * sequence, prompt first, as Hugging Face returns it (ending with eos when
 * one was generated), *n_out its length; out needs room for
 * n_prompt + max_new_tokens + 1 ids. score (may be NULL) receives beam
 * search's sequence score (sum of log-probs / length^length_penalty), or the
 * sum of the chosen tokens' log-probs for greedy search and sampling. With
 * on_token (may be NULL) greedy and sampled tokens are reported as they come
 * (beam search's only at the end). Returns AG_OK, or an error: bad options
 * (named), a prompt longer than n_positions, a model that is not a decoder
 * with an LM head, or the forward's error. */
ag_status recipe_generate_ids(ag_ctx *ctx, const recipe_model *m, const recipe_gen_config *g, const int32_t *prompt,
                              int n_prompt, int32_t *out, int *n_out, double *score,
                              void (*on_token)(int32_t token, void *arg), void *arg);

/* ---------------------------------------------------------------- encoder-decoders */

/* The sizes and token ids generation needs from an encoder-decoder
 * (T5ForConditionalGeneration, BartForConditionalGeneration,
 * M2M100ForConditionalGeneration). */
typedef struct recipe_s2s_info {
    int n_layer, n_head, d_head;  /* the decoder's, for its self-attention cache */
    int d_model;
    int max_target;               /* the longest target (BART's learned positions), else 1 << 20 */
    int vocab_size;
    int eos_token_id;             /* the config's, or -1 */
    int decoder_start_token_id;   /* the first target token */
    int pad_token_id;
    int forced_bos_token_id;      /* the config's forced_bos_token_id, or -1 */
    int forced_eos_token_id;      /* the config's forced_eos_token_id, or -1 */
} recipe_s2s_info;

/* Fills *d for an encoder-decoder with an LM head. Returns AG_OK, or
 * AG_ERR_ARG naming the class when it is not one (or has no start token). */
ag_status recipe_s2s_info_get(const recipe_model *m, recipe_s2s_info *d);

/* Hugging Face's generate() for an encoder-decoder: the encoder runs once on
 * src[n_src] (one sentence, no padding); the decoder starts from
 * decoder_start_token_id and continues as recipe_generate_ids does (greedy,
 * sampling, beam search, repetition penalty over the target, the forced first
 * token: BART's forced_bos_token_id, M2M-100's target language id; the
 * forced last token forced_eos_token_id; eos; max_new_tokens). With
 * use_cache the decoder's self-attention keys and values are cached and the
 * cross-attention's computed once from the encoder's states; without it every
 * step re-runs the decoder over the whole target (the encoder still runs
 * once, as in Hugging Face). out receives the target, decoder_start first
 * (room for max_new_tokens + 2 ids), *n_out its length; score and on_token
 * as recipe_generate_ids. Returns AG_OK or an error: bad options (named), a
 * source token outside the vocabulary, a model that is not an
 * encoder-decoder with an LM head, the forward's error. */
ag_status recipe_generate_s2s(ag_ctx *ctx, const recipe_model *m, const recipe_gen_config *g, const int32_t *src,
                              int n_src, int32_t *out, int *n_out, double *score,
                              void (*on_token)(int32_t token, void *arg), void *arg);

/* ---------------------------------------------------------------- the command */

typedef struct recipe_generate_opts {
    const char *checkpoint;  /* a run folder holding ckpt.h5, or NULL with config_path */
    const char *config_path; /* a config.json: random weights (for --bench), when no checkpoint */
    const char *prompt;
    recipe_gen_config gen;   /* eos_token_id < -1: take the config's */
    bool bench;              /* time max_new_tokens tokens with and without the cache instead */
    int threads;
} recipe_generate_opts;

/* `tapegrad generate`: loads the checkpoint's model (any decoder family),
 * encodes the prompt as bytes (an empty prompt starts from the config's eos,
 * or 256), generates and writes prompt and continuation to `out` (bytes as
 * bytes, other ids as <id>). With bench: generates the same tokens with and
 * without the cache, checks they agree and prints tokens/s of each and the
 * speed-up. Errors: a missing or damaged checkpoint, a non-decoder model,
 * the generation's errors. */
ag_status recipe_generate(const recipe_generate_opts *o, FILE *out);

#endif
