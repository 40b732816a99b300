/* ckpt.h: checkpoints. HDF5 files that resume a run exactly, and safetensors
 * files to exchange weights with Hugging Face.
 *
 * What it is: readers and writers over an ag_params registry (one flat block
 * of values, every parameter a named slice carrying its Hugging Face name) and
 * a plain struct of the run's other state. What it is not: a model loader.
 * Checkpoints see parameters, never models: the caller builds the model from
 * its config first, which declares the registry, and then asks for the
 * parameters to be filled in. It does not depend on optim/ either: optimizer
 * moments are plain float blocks laid out exactly like ps->values.
 *
 * Resuming a run, in order:
 *
 *     ckpt_state st;
 *     ckpt_read_state("run/ckpt.h5", &st);        // config text, optimizer and run state
 *     ... build the model from st.config; this declares and finalizes ps ...
 *     ckpt_load_params("run/ckpt.h5", &ps);       // every name and shape checked
 *     ckpt_load_moment("run/ckpt.h5", &ps, "m", adam_m);   // [ps.total] each
 *     ckpt_load_moment("run/ckpt.h5", &ps, "v", adam_v);
 *     ... continue from st.global_step with RNG (st.rng_seed, st.rng_counter) ...
 *     ckpt_state_free(&st);
 *
 * Errors are values: every function returns AG_OK, or a status with a message
 * (read with ag_error()) that names the file and the parameter or field, e.g.
 *   "checkpoint run/ckpt.h5: params/h.0.attn.c_attn.weight has shape [64,32],
 *    model wants [32,32]; missing (2): a, b; unexpected (1): c".
 * Nothing here exits, aborts or prints: HDF5's own error printing is silenced
 * while these functions run and its innermost message is folded into ours.
 */
#ifndef TAPEGRAD_CKPT_H
#define TAPEGRAD_CKPT_H

#include "ag.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================ HDF5 checkpoints
 *
 * The layout (one file per checkpoint):
 *
 *   /                      attributes: format = "tapegrad-checkpoint", version = 1,
 *                          config = the model's config.json text
 *   /params/<hf name>      float32 dataset in the parameter's shape; names keep
 *                          their dots ("transformer.h.0.ln_1.weight" is one link)
 *   /optim                 attributes: kind ("adamw"), step (int64), moments
 *                          ("m,v"), schedule (JSON text), and one float64
 *                          attribute per hyper-parameter ("lr", "beta1", ...)
 *   /optim/<hf name>/<moment>   float32 dataset in the parameter's shape
 *   /state                 attributes: global_step, tokens_seen (int64),
 *                          rng_seed, rng_counter (uint64), recipe (string),
 *                          loader_position (uint8 array: opaque bytes)
 *
 * A save writes NAME.tmp, flushes and closes it, fsyncs it, and renames it over
 * NAME, so NAME is always either the old checkpoint or the new one, never half
 * of each. */

#define CKPT_MAX_MOMENTS 4
#define CKPT_MAX_HPARAMS 16

/* One optimizer hyper-parameter, stored as a float64 attribute of /optim. */
typedef struct ckpt_hparam {
    const char *name; /* "lr", "beta1", "beta2", "eps", "weight_decay", ... */
    double value;
} ckpt_hparam;

/* Everything a checkpoint holds besides the parameters. ckpt_save reads it;
 * ckpt_read_state fills it. Every field may be left zero (NULL, 0, "") for
 * "none". A state filled by ckpt_read_state owns its strings and bytes: free
 * them with ckpt_state_free. Its moment[] pointers are NULL: the moment blocks
 * are read with ckpt_load_moment into the optimizer's own memory. */
typedef struct ckpt_state {
    const char *config; /* the model's config.json text, or NULL */

    /* The optimizer. optim_kind NULL or "" means no optimizer state. */
    const char *optim_kind;                        /* "adamw", "adam", "sgd" */
    int64_t optim_step;                            /* steps taken (bias correction) */
    int n_moments;
    const char *moment_name[CKPT_MAX_MOMENTS];     /* "m", "v" or "momentum" */
    const float *moment[CKPT_MAX_MOMENTS];         /* each [ps->total], laid out like ps->values */
    int n_hparams;
    ckpt_hparam hparam[CKPT_MAX_HPARAMS];
    const char *schedule;                          /* the LR schedule's state as JSON text, or NULL */

    /* The run. */
    int64_t global_step;
    int64_t tokens_seen;
    uint64_t rng_seed, rng_counter;                /* ag_rng_u64(seed, counter) is the next draw */
    const void *loader_position;                   /* opaque bytes (e.g. a JSON string), or NULL */
    size_t loader_position_len;
    const char *recipe;                            /* "mlm", "clm", ... or NULL */

    void *owned_; /* what ckpt_read_state allocated; NULL otherwise */
} ckpt_state;

/* Writes a checkpoint of `ps` (finalized) and `st` (may be NULL: parameters
 * only) to `path`, atomically: NAME.tmp, flush, close, fsync, rename over NAME.
 * Returns AG_OK, or AG_ERR_IO naming the path (and the parameter or attribute
 * being written) when anything fails; then NAME.tmp is removed and a previous
 * file at `path` is left untouched. AG_ERR_ARG: a parameter name containing '/'
 * (HDF5 would read it as a group), more than CKPT_MAX_MOMENTS moments, a moment
 * without data, a reserved hyper-parameter name. */
ag_status ckpt_save(const char *path, const ag_params *ps, const ckpt_state *st);

/* Reads everything but the parameters and moment blocks into `st` (zeroed
 * first): config text, optimizer kind, step, moment names, hyper-parameters
 * and schedule, and the run state, bit for bit as saved. Needs no model, so a
 * run can build its model from st->config before loading the parameters.
 * Returns AG_OK, or AG_ERR_IO when the file is missing, is not HDF5, is
 * truncated, or is not a tapegrad checkpoint; `st` then holds nothing to free. */
ag_status ckpt_read_state(const char *path, ckpt_state *st);

/* Frees what ckpt_read_state allocated and zeroes `st`. Safe on a zeroed state. */
void ckpt_state_free(ckpt_state *st);

/* Fills every parameter of `ps` (finalized) from /params. Every name and shape
 * is checked first, and all the differences are reported in one message, as
 * PyTorch's load_state_dict does: mis-shaped parameters with both shapes,
 * then the missing, then the unexpected names. Returns AG_OK; AG_ERR_ARG when
 * the names or shapes differ (nothing is written then); AG_ERR_IO when the file
 * is missing, not HDF5, truncated or unreadable (parameters read before the
 * failure keep their new values: do not train on after an error). */
ag_status ckpt_load_params(const char *path, ag_params *ps);

/* Declares one parameter per dataset of /params (name and shape, in name
 * order) into `ps`, which must not be finalized yet: a registry shaped like
 * the checkpoint, to load whatever it holds without building its model (e.g.
 * fine-tuning from an ELECTRA run whose file also holds the generator).
 * Returns AG_OK; AG_ERR_IO for a missing, non-HDF5 or unreadable file or no
 * /params; AG_ERR_ARG for a dataset of more than AG_MAX_DIMS dims or a name
 * already declared. */
ag_status ckpt_declare(const char *path, ag_params *ps);

/* Reads the optimizer moment `moment` ("m", "v", "momentum") of every
 * parameter into `dst` [ps->total], laid out like ps->values. Checks names and
 * shapes like ckpt_load_params. Returns AG_OK; AG_ERR_ARG when the checkpoint
 * has no optimizer state, no such moment, or names/shapes differ; AG_ERR_IO as
 * for ckpt_load_params. */
ag_status ckpt_load_moment(const char *path, const ag_params *ps, const char *moment, float *dst);

/* ================================================================ safetensors
 *
 * The format (https://github.com/huggingface/safetensors):
 *
 *   [8 bytes]  N, the header's length, little-endian uint64
 *   [N bytes]  a JSON object: {"<name>": {"dtype": "F32", "shape": [V, C],
 *              "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v"}}
 *              (may be padded with spaces)
 *   [rest]     the tensors' bytes, little-endian, row-major; offsets count from
 *              the start of this part, and the tensors cover it with no gap
 *              and no overlap.
 *
 * Tied weights. A registry holds one tensor per tied group (GPT-2's LM head
 * is its token embedding), but files differ: state_dict() holds every name as
 * an identical copy, save_pretrained() drops the duplicates. An alias table
 * says which names are one parameter, e.g. {"lm_head.weight",
 * "transformer.wte.weight"}. */

typedef struct ckpt_alias {
    const char *alias;   /* a name that is not in the registry: "lm_head.weight" */
    const char *primary; /* the registry's parameter it shares: "transformer.wte.weight" */
} ckpt_alias;

/* Fills every parameter of `ps` (finalized) from a safetensors file, by name.
 * F32 is copied bit for bit; F16 and BF16 (common in downloaded checkpoints)
 * are converted to float32 exactly. With `aliases` (n_aliases entries, may be
 * NULL/0): a file holding only an alias fills its primary; a file holding both
 * must hold equal values, else an error names both. Mis-shaped, missing and
 * unexpected names are reported in one message, as for ckpt_load_params.
 * The whole file is validated before any parameter is written.
 * Returns AG_OK; AG_ERR_IO when the file cannot be read or its header is bad
 * (offsets past the end, a length that is not numel * dtype size, gaps or
 * overlaps, garbage JSON: the message names the file and the tensor or
 * field); AG_ERR_ARG for names, shapes, dtypes or tied copies that differ. */
ag_status ckpt_safetensors_load(const char *path, ag_params *ps, const ckpt_alias *aliases, int n_aliases);

/* Writes every parameter of `ps` as F32 under its Hugging Face name, with
 * __metadata__ {"format": "pt"} (and "tied_groups" when aliases are given).
 * Each tied parameter is written once under its primary name; with
 * `write_aliases` also under each alias, as a copy (as state_dict() holds it).
 * Atomic like ckpt_save (NAME.tmp, fsync, rename). Returns AG_OK, AG_ERR_IO
 * naming the path, or AG_ERR_ARG for an alias whose primary is not in `ps`. */
ag_status ckpt_safetensors_save(const char *path, const ag_params *ps, const ckpt_alias *aliases,
                                int n_aliases, bool write_aliases);

/* Declares one parameter per tensor of the file (name and shape, in the order
 * of their data) into `ps`, which must not be finalized yet: a registry shaped
 * like the file, for converting a file without building its model. Returns
 * AG_OK, AG_ERR_IO for a bad file, AG_ERR_ARG for a tensor of more than
 * AG_MAX_DIMS dims or a name already declared. */
ag_status ckpt_safetensors_declare(const char *path, ag_params *ps);

/* Writes every parameter's gradient as a float32 dataset named by its Hugging
 * Face name at the root of an HDF5 file (`tapegrad loss --grads`), atomically
 * like ckpt_save. Returns AG_OK, or AG_ERR_IO naming the path. */
ag_status ckpt_save_grads(const char *path, const ag_params *ps);

#ifdef __cplusplus
}
#endif
#endif
