/* nn.h: modules built on the autograd engine, and the model families.
 *
 * A module is a plain struct of parameter pointers plus its sizes. It is made
 * in two steps, because every parameter lives in one registry (ag_params) whose
 * blocks are allocated once: `nn_*_init` declares the module's parameters under
 * their Hugging Face names (prefix + ".weight"), then, after
 * ag_params_finalize(), `nn_init_*` fills them as Hugging Face initialises that
 * family. `nn_*_forward` records ops on the step's tape.
 *
 * What it is not: a dynamic module tree with virtual calls. Each model family
 * is one file that calls these modules in the order its Hugging Face class does.
 */
#ifndef TAPEGRAD_NN_H
#define TAPEGRAD_NN_H

#include "ag.h"

#include <cjson/cJSON.h>

/* ---------------------------------------------------------------- naming and init */

/* printf into a name buffer: nn_name(buf, "%s.h.%d.attn", prefix, i). */
#define NN_NAME_MAX 256
char *nn_name(char buf[NN_NAME_MAX], const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A seeded stream of normal numbers for initialisation: the i-th draw is a pure
 * function of (seed, i) (Box-Muller over ag_rng_u64). */
typedef struct nn_init_rng {
    uint64_t seed, counter;
} nn_init_rng;
float nn_randn(nn_init_rng *r);
void nn_init_normal(ag_tensor *t, float std, nn_init_rng *r);
void nn_init_const(ag_tensor *t, float v);

/* ---------------------------------------------------------------- modules */

typedef struct nn_linear {
    ag_tensor *w, *b; /* b may be NULL */
    int in, out;
    ag_linear_layout layout;
} nn_linear;
/* Declares prefix.weight ([out,in] for OUT_IN, [in,out] for IN_OUT) and, with
 * bias, prefix.bias [out]. Returns AG_OK or the registry's error. */
ag_status nn_linear_init(ag_params *ps, nn_linear *l, const char *prefix, int in, int out, bool bias,
                         ag_linear_layout layout);
ag_tensor *nn_linear_forward(ag_ctx *ctx, const nn_linear *l, ag_tensor *x);

typedef struct nn_embedding {
    ag_tensor *w; /* [num, dim] */
    int num, dim, padding_idx;
} nn_embedding;
ag_status nn_embedding_init(ag_params *ps, nn_embedding *e, const char *prefix, int num, int dim, int padding_idx);
ag_tensor *nn_embedding_forward(ag_ctx *ctx, const nn_embedding *e, const ag_ints *ids);

typedef struct nn_norm {
    ag_tensor *w, *b; /* b NULL for RMS norm */
    int dim;
    float eps;
    bool rms;
} nn_norm;
ag_status nn_layernorm_init(ag_params *ps, nn_norm *n, const char *prefix, int dim, float eps);
ag_status nn_rmsnorm_init(ag_params *ps, nn_norm *n, const char *prefix, int dim, float eps);
ag_tensor *nn_norm_forward(ag_ctx *ctx, const nn_norm *n, ag_tensor *x);

/* Hugging Face's _init_weights for each module type, as the families apply
 * it. A module that was never declared (w NULL: a head the class does not
 * have) is skipped and draws nothing from r.
 *   nn.Linear     weight N(0, std), bias 0
 *   nn.LayerNorm  weight 1, bias 0
 *   nn.Embedding  N(0, std), then the padding row (if any) 0 */
void nn_init_linear(const nn_linear *l, float std, nn_init_rng *r);
void nn_init_norm(const nn_norm *n);
void nn_init_embedding(const nn_embedding *e, float std, nn_init_rng *r);

typedef enum { NN_ACT_GELU, NN_ACT_GELU_TANH, NN_ACT_RELU, NN_ACT_SILU, NN_ACT_TANH, NN_ACT_SIGMOID } nn_act;
/* Hugging Face's ACT2FN names: "gelu", "gelu_new", "gelu_pytorch_tanh", "relu",
 * "silu", "swish", "tanh", "sigmoid", "gelu_fast" (as gelu_new). Returns false
 * for a name it does not know. */
bool nn_act_from_name(const char *name, nn_act *act);
ag_tensor *nn_act_forward(ag_ctx *ctx, nn_act act, ag_tensor *x);

/* Multi-head attention over [B,T,C] inputs. Either one fused projection to
 * q,k,v (GPT-2's c_attn) or three; one output projection. */
typedef struct nn_mha {
    int d_model, n_head, d_head; /* inner width n_head*d_head */
    bool fused;
    nn_linear qkv;               /* fused: [C, 3*inner] */
    nn_linear q, k, v;           /* separate */
    nn_linear o;
    float attn_dropout;
    bool no_scale;
} nn_mha;
/* Fused: names[0] is the qkv projection, names[1] the output projection.
 * Separate: names[0..3] are q, k, v, o. */
ag_status nn_mha_init(ag_params *ps, nn_mha *m, const char *const *names, int d_model, int n_head, int d_head,
                      bool fused, bool bias, ag_linear_layout layout);
/* x [B,T,C]; kv [B,S,C] for cross-attention or NULL for self-attention.
 * opts: causal, window, key_mask, bias (dropout is taken from the module). */
ag_tensor *nn_mha_forward(ag_ctx *ctx, const nn_mha *m, ag_tensor *x, ag_tensor *kv, const ag_attn_opts *opts);

/* Checks that a batch input x is NULL or [B,T], as input_ids; else fails with
 * "<who>: <what> [shape] does not match input_ids [B,T]" and returns false. */
bool nn_same_bt(const char *who, const char *what, const ag_ints *x, int64_t B, int64_t T);

/* [B,T,NH*D] <-> [B,NH,T,D] */
ag_tensor *nn_split_heads(ag_ctx *ctx, ag_tensor *x, int n_head);
ag_tensor *nn_merge_heads(ag_ctx *ctx, ag_tensor *x);

/* ---------------------------------------------------------------- config.json */

/* A parsed config.json with the path kept for messages. */
typedef struct nn_config {
    cJSON *json;
    char path[512];
    char *text; /* the file as read, for checkpoints */
} nn_config;
/* Reads and parses `path`. Errors: unreadable file, invalid JSON (with the
 * position), not an object. */
ag_status nn_config_load(nn_config *c, const char *path);
ag_status nn_config_parse(nn_config *c, const char *text, const char *name);
void nn_config_free(nn_config *c);
/* Fields: an integer (must be integral, within [lo,hi]), a number, a string, a
 * bool. A missing field takes `dflt`; a field of the wrong type is an error
 * naming the file and the field. */
ag_status nn_config_int(const nn_config *c, const char *field, int dflt, int lo, int hi, int *out);
ag_status nn_config_num(const nn_config *c, const char *field, double dflt, double *out);
ag_status nn_config_str(const nn_config *c, const char *field, const char *dflt, const char **out);
ag_status nn_config_bool(const nn_config *c, const char *field, bool dflt, bool *out);
/* An activation named as Hugging Face's ACT2FN names it (nn_act_from_name);
 * a missing field takes `dflt`. Errors: not a string, or an unknown name,
 * each naming the file and the field. */
ag_status nn_config_act(const nn_config *c, const char *field, const char *dflt, nn_act *out);
/* A number that must be > 0 (an epsilon), and a probability that must be in
 * [0, 1) (a dropout), stored as float. Errors name the file and the field:
 * "config <path>: field \"<field>\" must be > 0" / "... must be in [0, 1)". */
ag_status nn_config_positive(const nn_config *c, const char *field, double dflt, float *out);
ag_status nn_config_prob(const nn_config *c, const char *field, double dflt, float *out);

/* ---------------------------------------------------------------- feed-forward and blocks (blocks.c) */

/* The names of a feed-forward's projections, relative to its prefix:
 *   wi    the projection that goes through the activation (BERT
 *         "intermediate.dense", GPT-2 "mlp.c_fc", T5 "DenseReluDense.wi" or,
 *         gated, "DenseReluDense.wi_0", LLaMA "mlp.gate_proj");
 *   wi_1  gated only: the linear branch the activation multiplies (T5
 *         "DenseReluDense.wi_1", LLaMA "mlp.up_proj"); NULL otherwise;
 *   wo    the out-projection (BERT "output.dense", GPT-2 "mlp.c_proj", T5
 *         "DenseReluDense.wo", LLaMA "mlp.down_proj"). */
typedef struct nn_ffn_names {
    const char *wi, *wi_1, *wo;
} nn_ffn_names;

/* A position-wise feed-forward network over x [...,C]:
 *   plain  y = dropout(wo(act_dropout(act(wi x))))
 *   gated  y = dropout(wo(act_dropout(act(wi x) * wi_1 x)))   (T5 v1.1, LLaMA)
 * with wi, wi_1 [C -> d_ff] and wo [d_ff -> C]. */
typedef struct nn_ffn {
    int d_model, d_ff;
    nn_act act;
    bool gated;
    nn_linear wi, wi_1, wo; /* wi_1 unused unless gated */
    float act_dropout;      /* after the activation (T5's DenseReluDense dropout, BART's activation_dropout) */
    float dropout;          /* after wo (a block applies its own residual dropout instead) */
    char name[NN_NAME_MAX]; /* the prefix, for messages */
} nn_ffn;

/* Declares the projections prefix + "." + names->wi (and wi_1, wo), or the
 * names as given when prefix is NULL or "". Both weight layouts; biases
 * optional. Returns AG_OK; AG_ERR_ARG naming the module when a width is not
 * positive or a needed name is missing; or the registry's error (a name
 * declared twice). */
ag_status nn_ffn_init(ag_params *ps, nn_ffn *f, const char *prefix, const nn_ffn_names *names, int d_model, int d_ff,
                      nn_act act, bool gated, bool bias, ag_linear_layout layout);
/* x [...,C] -> [...,C]. Returns NULL (keeping the first message) when x is
 * NULL, and AG_ERR_ARG naming the module when x's last dim is not d_model. */
ag_tensor *nn_ffn_forward(ag_ctx *ctx, const nn_ffn *f, ag_tensor *x);

/* A transformer block's shape. One struct covers the encoder and decoder
 * layers of the BERT, GPT-2, T5 and BART families. */
typedef struct nn_block_config {
    int d_model, n_head, d_head, d_ff; /* n_head*d_head may differ from d_model (T5's d_kv) */
    bool pre_ln;          /* true: x + f(norm(x)) (GPT-2, T5); false: norm(x + f(x)) (BERT, BART) */
    bool rms_norm;        /* RMSNorm (T5, LLaMA) instead of LayerNorm */
    float norm_eps;
    bool cross_attention; /* a decoder block: self-attention, cross-attention over encoder states, ffn */
    bool fused_qkv;       /* self-attention's q,k,v as one projection (GPT-2's c_attn) */
    bool attn_bias, ffn_bias;
    ag_linear_layout layout; /* of every projection (AG_LINEAR_IN_OUT for GPT-2's Conv1D) */
    nn_act act;
    bool gated;           /* the gated feed-forward (T5 v1.1 "gated-gelu", LLaMA) */
    bool no_scale;        /* no 1/sqrt(d_head) on the scores (T5) */
    float attn_dropout;   /* on the attention probabilities */
    float resid_dropout;  /* on each sub-layer's output before it joins the residual stream */
    float act_dropout;    /* inside the feed-forward, after the activation */
} nn_block_config;

/* The names of a block's parameters, relative to its prefix. */
typedef struct nn_block_names {
    const char *ln1;        /* the self-attention sub-layer's norm */
    const char *attn[4];    /* q, k, v, o; or, fused, qkv and o */
    const char *ln_cross;   /* decoder blocks: the cross-attention sub-layer's norm */
    const char *cross[4];   /* decoder blocks: q, k, v, o of the cross-attention */
    const char *ln2;        /* the feed-forward sub-layer's norm */
    nn_ffn_names ffn;
} nn_block_names;

/* Hugging Face's names: BertLayer, GPT2Block, BartEncoderLayer,
 * BartDecoderLayer, and T5Block (encoder or decoder; gated: wi_0/wi_1). */
extern const nn_block_names nn_block_names_bert, nn_block_names_gpt2, nn_block_names_bart_encoder,
    nn_block_names_bart_decoder;
nn_block_names nn_block_names_t5(bool decoder, bool gated);

/* A transformer block:
 *   pre-LN   h = x + drop(attn(ln1(x)))
 *            h = h + drop(cross(ln_cross(h), enc))      decoder blocks
 *            y = h + drop(ffn(ln2(h)))
 *   post-LN  h = ln1(x + drop(attn(x)))
 *            h = ln_cross(h + drop(cross(h, enc)))      decoder blocks
 *            y = ln2(h + drop(ffn(h)))
 * Pre-LN stacks end with a final norm; that belongs to the model, not here. */
typedef struct nn_block {
    nn_block_config cfg;
    nn_norm ln1, ln_cross, ln2;
    nn_mha attn, cross;     /* cross is used only with cfg.cross_attention */
    nn_ffn ffn;
    char name[NN_NAME_MAX]; /* the prefix, for messages ("bert.encoder.layer.3") */
} nn_block;

/* Declares every parameter as prefix + "." + names->... (e.g.
 * "bert.encoder.layer.0" + "." + "attention.self.query" + ".weight").
 * Returns AG_OK; AG_ERR_ARG naming the block when a width is not positive, a
 * dropout is outside [0, 1), eps is not positive, or a name the config needs is
 * NULL; or the registry's error. */
ag_status nn_block_init(ag_params *ps, nn_block *b, const char *prefix, const nn_block_config *cfg,
                        const nn_block_names *names);
/* x [B,T,C]; enc [B,S,C] the encoder's states for a decoder block, else NULL.
 * self_opts (causal, key_mask [B,T], bias [NH,T,T] or [B,NH,T,T], window) and
 * cross_opts (key_mask [B,S], bias) may be NULL; their dropout is the block's.
 * Returns y [B,T,C], or NULL: at once for a NULL x (keeping the first message),
 * AG_ERR_ARG naming the block when x or enc is not [B,*,d_model], when a
 * decoder block gets no enc or an encoder block gets one, or an op's error. */
/* _init_weights of a block as the BERT-style families built on nn_block apply
 * it (ELECTRA, BERT2BERT): each Linear N(0, std) with zero biases, each
 * LayerNorm 1 and 0, in declaration order: attention q, k, v, o, ln1; with
 * cross_attention the cross q, k, v, o, ln_cross; the FFN's wi, wo; ln2. */
void nn_block_init_weights(const nn_block *b, float std, nn_init_rng *r);

ag_tensor *nn_block_forward(ag_ctx *ctx, const nn_block *b, ag_tensor *x, ag_tensor *enc,
                            const ag_attn_opts *self_opts, const ag_attn_opts *cross_opts);

#endif
