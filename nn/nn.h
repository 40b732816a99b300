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

#endif
