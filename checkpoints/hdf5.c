/* hdf5.c: HDF5 checkpoints that resume a run exactly.
 *
 * The layout is in ckpt.h. Everything is stored in the type it lives in, so a
 * load gives back the same bits: parameters and moments as float32 datasets,
 * steps and token counts as int64, the RNG state as uint64, hyper-parameters
 * as float64, strings as strings and the loader position as raw bytes.
 *
 * What it is not: a general HDF5 reader. It reads the files it writes (and
 * files laid out the same way by h5py), checks every name and shape against
 * the registry, and refuses anything else with a message naming the file.
 *
 * HDF5 prints its error stack to stderr by default. Each public function turns
 * that off while it runs (and restores the caller's setting), and when a call
 * fails it reads the innermost HDF5 message ("truncated file: eof = 1234, ...")
 * into ours instead.
 */
#include "internal.h"

#include <errno.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_FORMAT "tapegrad-checkpoint"
#define CKPT_VERSION 1

/* ---------------------------------------------------------------- HDF5's error stack */

typedef struct {
    H5E_auto2_t func;
    void *data;
} h5_quiet;

static void quiet_begin(h5_quiet *q) {
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void quiet_end(const h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

/* The walk goes from the innermost frame (n = 0, where HDF5 found the problem,
 * which says the most: "truncated file", "No space left on device") outwards. */
static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
    char *buf = data;
    if (n == 0 && e->desc) snprintf(buf, 256, "%s", e->desc);
    return 0;
}

/* The innermost message of HDF5's current error stack, or "" when none. Must be
 * called right after the failing call: the next API call clears the stack. */
static const char *h5_why(char buf[256]) {
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, buf);
    return buf;
}

/* Fails with "checkpoint <path>: <what>: <HDF5's reason>". */
static ag_status io_fail(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ag_status io_fail(const char *path, const char *fmt, ...) {
    char why[256], what[512];
    h5_why(why);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ag_fail(AG_ERR_IO, "checkpoint %s: %s%s%s", path, what, why[0] ? ": " : "", why);
}

/* ---------------------------------------------------------------- writing attributes and datasets */

/* A string attribute: variable-length UTF-8, which h5py reads back as a str
 * and which has no size limit of its own (a long config.json fits). */
static bool write_str_attr(hid_t obj, const char *name, const char *s) {
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR), a = -1;
    bool ok = type >= 0 && space >= 0 && H5Tset_size(type, H5T_VARIABLE) >= 0 &&
              H5Tset_cset(type, H5T_CSET_UTF8) >= 0;
    if (ok) ok = (a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0;
    if (ok) ok = H5Awrite(a, type, &s) >= 0;
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return ok;
}

/* A scalar attribute stored as `file_type` from memory of `mem_type`. */
static bool write_scalar_attr(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, const void *v) {
    hid_t space = H5Screate(H5S_SCALAR), a = -1;
    bool ok = space >= 0 && (a = H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Awrite(a, mem_type, v) >= 0;
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return ok;
}

/* A uint8 array attribute [n] holding opaque bytes (n >= 1). */
static bool write_bytes_attr(hid_t obj, const char *name, const void *bytes, size_t n) {
    hsize_t dims[1] = {n};
    hid_t space = H5Screate_simple(1, dims, NULL), a = -1;
    bool ok = space >= 0 && (a = H5Acreate2(obj, name, H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Awrite(a, H5T_NATIVE_UINT8, bytes) >= 0;
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return ok;
}

/* A float32 dataset `name` in `loc` with t's shape, holding data [t->numel]. */
static bool write_f32(hid_t loc, const char *name, const ag_tensor *t, const float *data) {
    hsize_t dims[AG_MAX_DIMS];
    for (int i = 0; i < t->ndim; ++i) dims[i] = (hsize_t)t->shape[i];
    hid_t space = H5Screate_simple(t->ndim, dims, NULL), d = -1;
    bool ok = space >= 0 &&
              (d = H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    if (d >= 0) H5Dclose(d);
    if (space >= 0) H5Sclose(space);
    return ok;
}

/* ---------------------------------------------------------------- save */

static const char *const reserved_optim_attrs[] = {"kind", "step", "moments", "schedule"};

static bool is_reserved(const char *name) {
    for (size_t i = 0; i < sizeof reserved_optim_attrs / sizeof *reserved_optim_attrs; ++i)
        if (strcmp(name, reserved_optim_attrs[i]) == 0) return true;
    return false;
}

/* The checks that need no file, so a bad call never creates one. */
static ag_status check_save_args(const char *path, const ag_params *ps, const ckpt_state *st) {
    if (!ps || !ps->finalized)
        return ag_fail(AG_ERR_ARG, "checkpoint %s: the parameter registry is not finalized", path);
    if (!st || !st->optim_kind || !st->optim_kind[0]) return AG_OK;
    if (st->n_moments < 0 || st->n_moments > CKPT_MAX_MOMENTS)
        return ag_fail(AG_ERR_ARG, "checkpoint %s: %d optimizer moments (at most %d)", path, st->n_moments,
                       CKPT_MAX_MOMENTS);
    for (int k = 0; k < st->n_moments; ++k) {
        const char *m = st->moment_name[k];
        if (!m || !m[0] || strchr(m, '/') || strchr(m, ','))
            return ag_fail(AG_ERR_ARG, "checkpoint %s: optimizer moment %d has a bad name '%s'", path, k,
                           m ? m : "(null)");
        if (!st->moment[k])
            return ag_fail(AG_ERR_ARG, "checkpoint %s: optimizer moment '%s' has no data", path, m);
    }
    if (st->n_hparams < 0 || st->n_hparams > CKPT_MAX_HPARAMS)
        return ag_fail(AG_ERR_ARG, "checkpoint %s: %d hyper-parameters (at most %d)", path, st->n_hparams,
                       CKPT_MAX_HPARAMS);
    for (int k = 0; k < st->n_hparams; ++k) {
        const char *h = st->hparam[k].name;
        if (!h || !h[0] || is_reserved(h))
            return ag_fail(AG_ERR_ARG, "checkpoint %s: hyper-parameter %d has a bad or reserved name '%s'", path,
                           k, h ? h : "(null)");
    }
    return AG_OK;
}

/* Writes /optim: the attributes, then one group per parameter holding its
 * slice of each moment block. Returns AG_OK or the error (message set). */
static ag_status write_optim(hid_t file, const char *path, const ag_params *ps, const ckpt_state *st) {
    ag_status status = AG_OK;
    hid_t gcpl = -1, g = -1, pg = -1;
    /* Track the attributes' creation order so the hyper-parameters read back
     * in the order they were given. */
    gcpl = H5Pcreate(H5P_GROUP_CREATE);
    if (gcpl < 0 || H5Pset_attr_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
        (g = H5Gcreate2(file, "optim", H5P_DEFAULT, gcpl, H5P_DEFAULT)) < 0) {
        status = io_fail(path, "cannot create /optim");
        goto cleanup;
    }
    ckpt__sb names = {0};
    for (int k = 0; k < st->n_moments; ++k) ckpt__sb_printf(&names, "%s%s", k ? "," : "", st->moment_name[k]);
    bool ok = !names.failed && write_str_attr(g, "kind", st->optim_kind) &&
              write_scalar_attr(g, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &st->optim_step) &&
              write_str_attr(g, "moments", ckpt__sb_str(&names)) &&
              (!st->schedule || write_str_attr(g, "schedule", st->schedule));
    ckpt__sb_free(&names);
    for (int k = 0; ok && k < st->n_hparams; ++k)
        ok = write_scalar_attr(g, st->hparam[k].name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &st->hparam[k].value);
    if (!ok) {
        status = io_fail(path, "cannot write the attributes of /optim");
        goto cleanup;
    }
    /* The moments are laid out like ps->values: parameter i's slice starts
     * where its values start in that block. */
    for (int64_t i = 0; i < ps->n; ++i) {
        const ag_tensor *t = ps->p[i];
        int64_t off = t->data - ps->values;
        if ((pg = H5Gcreate2(g, t->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
            status = io_fail(path, "cannot create /optim/%s", t->name);
            goto cleanup;
        }
        for (int k = 0; k < st->n_moments; ++k)
            if (!write_f32(pg, st->moment_name[k], t, st->moment[k] + off)) {
                status = io_fail(path, "cannot write /optim/%s/%s", t->name, st->moment_name[k]);
                goto cleanup;
            }
        H5Gclose(pg);
        pg = -1;
    }
cleanup:
    if (pg >= 0) H5Gclose(pg);
    if (g >= 0) H5Gclose(g);
    if (gcpl >= 0) H5Pclose(gcpl);
    return status;
}

/* Writes /state's attributes. */
static ag_status write_run_state(hid_t file, const char *path, const ckpt_state *st) {
    hid_t g = H5Gcreate2(file, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bool ok = g >= 0 &&
              write_scalar_attr(g, "global_step", H5T_STD_I64LE, H5T_NATIVE_INT64, &st->global_step) &&
              write_scalar_attr(g, "tokens_seen", H5T_STD_I64LE, H5T_NATIVE_INT64, &st->tokens_seen) &&
              write_scalar_attr(g, "rng_seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &st->rng_seed) &&
              write_scalar_attr(g, "rng_counter", H5T_STD_U64LE, H5T_NATIVE_UINT64, &st->rng_counter) &&
              (!st->recipe || write_str_attr(g, "recipe", st->recipe)) &&
              (!st->loader_position || !st->loader_position_len ||
               write_bytes_attr(g, "loader_position", st->loader_position, st->loader_position_len));
    ag_status status = ok ? AG_OK : io_fail(path, "cannot write the attributes of /state");
    if (g >= 0) H5Gclose(g);
    return status;
}

ag_status ckpt_save(const char *path, const ag_params *ps, const ckpt_state *st) {
    ag_status status = check_save_args(path, ps, st);
    if (status != AG_OK) return status;
    char *tmp = ckpt__tmp_path(path);
    if (!tmp) return ag_fail(AG_ERR_MEMORY, "checkpoint %s: out of memory", path);

    h5_quiet q;
    quiet_begin(&q);
    hid_t fapl = -1, file = -1, g = -1;
    bool created = false;

    /* Attributes over 64 KB (a long config, a loader position) need the dense
     * attribute storage of the 1.8 file format. A strong close degree makes
     * H5Fclose close everything still open when we bail out. */
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        status = io_fail(path, "cannot set up HDF5 file access");
        goto cleanup;
    }
    errno = 0;
    file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (file < 0) {
        int e = errno;
        char why[256];
        h5_why(why);
        status = ag_fail(AG_ERR_IO, "checkpoint %s: cannot create %s: %s", path, tmp,
                         e ? strerror(e) : why);
        goto cleanup;
    }
    created = true;

    /* / : what this file is, and the model's config */
    int32_t version = CKPT_VERSION;
    if (!write_str_attr(file, "format", CKPT_FORMAT) ||
        !write_scalar_attr(file, "version", H5T_STD_I32LE, H5T_NATIVE_INT32, &version) ||
        (st && st->config && !write_str_attr(file, "config", st->config))) {
        status = io_fail(path, "cannot write the attributes of /");
        goto cleanup;
    }

    /* /params/<hf name> */
    if ((g = H5Gcreate2(file, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        status = io_fail(path, "cannot create /params");
        goto cleanup;
    }
    for (int64_t i = 0; i < ps->n; ++i) {
        const ag_tensor *t = ps->p[i];
        if (strchr(t->name, '/')) {
            status = ag_fail(AG_ERR_ARG,
                             "checkpoint %s: parameter '%s' has a '/' in its name, which HDF5 would read as a "
                             "group (Hugging Face names use dots)",
                             path, t->name);
            goto cleanup;
        }
        if (!write_f32(g, t->name, t, t->data)) {
            status = io_fail(path, "cannot write params/%s", t->name);
            goto cleanup;
        }
    }
    H5Gclose(g);
    g = -1;

    if (st && st->optim_kind && st->optim_kind[0] && (status = write_optim(file, path, ps, st)) != AG_OK)
        goto cleanup;
    if (st && (status = write_run_state(file, path, st)) != AG_OK) goto cleanup;

    /* Everything is written: flush HDF5's caches and close, then make it
     * durable and move it into place. */
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
        status = io_fail(path, "cannot flush %s", tmp);
        goto cleanup;
    }
    herr_t closed = H5Fclose(file);
    file = -1;
    if (closed < 0) {
        status = io_fail(path, "cannot close %s", tmp);
        goto cleanup;
    }
    char what[600];
    snprintf(what, sizeof what, "checkpoint %s", path);
    status = ckpt__commit(tmp, path, what);

cleanup:
    if (g >= 0) H5Gclose(g);
    if (file >= 0) H5Fclose(file);
    if (fapl >= 0) H5Pclose(fapl);
    /* A failed save leaves no temp file behind and never touched `path`.
     * unlink, not remove: should NAME.tmp be a folder, it is not ours. */
    if (status != AG_OK && created) unlink(tmp);
    quiet_end(&q);
    ag_free(tmp);
    return status;
}

/* ---------------------------------------------------------------- opening a checkpoint */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Opens `path` read-only, saying precisely why not: no such file, not HDF5,
 * truncated or damaged. Returns the file, or -1 with the message set. */
static hid_t open_checkpoint(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        ag_fail(AG_ERR_IO, "checkpoint %s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        ag_fail(AG_ERR_IO, "checkpoint %s: not a regular file", path);
        return -1;
    }
    if (H5Fis_hdf5(path) <= 0) {
        ag_fail(AG_ERR_IO, "checkpoint %s: not an HDF5 file (%lld bytes, no HDF5 signature)%s", path,
                (long long)sb.st_size,
                ends_with(path, ".safetensors") ? " (hint: read .safetensors with ckpt_safetensors_load)" : "");
        return -1;
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        char why[256];
        h5_why(why);
        ag_fail(AG_ERR_IO, "checkpoint %s: cannot open the HDF5 file (%lld bytes): %s%s", path,
                (long long)sb.st_size, why[0] ? why : "unknown error",
                strstr(why, "truncated") ? " (the file is truncated: was the save interrupted?)" : "");
        return -1;
    }
    return file;
}

/* ---------------------------------------------------------------- reading attributes */

/* A string attribute (fixed or variable length), malloc'd; NULL when absent.
 * Sets *err on a read error. */
static char *read_str_attr(hid_t obj, const char *name, bool *err) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    char *out = NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), t = a >= 0 ? H5Aget_type(a) : -1, mt = -1;
    if (t < 0 || H5Tget_class(t) != H5T_STRING) goto done;
    if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        mt = H5Tcopy(H5T_C_S1);
        if (mt >= 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0 && H5Tset_cset(mt, H5Tget_cset(t)) >= 0 &&
            H5Aread(a, mt, &s) >= 0 && s) {
            out = ag_malloc(strlen(s) + 1);
            if (out) strcpy(out, s);
            H5free_memory(s);
        }
    } else {
        size_t n = H5Tget_size(t);
        out = ag_calloc(n + 1, 1);
        if (out && H5Aread(a, t, out) < 0) { ag_free(out); out = NULL; }
    }
done:
    if (!out) *err = true;
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return out;
}

/* A scalar attribute read as `mem_type` into v; false when absent or unreadable. */
static bool read_scalar_attr(hid_t obj, const char *name, hid_t mem_type, void *v) {
    if (H5Aexists(obj, name) <= 0) return false;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    bool ok = a >= 0 && H5Aread(a, mem_type, v) >= 0;
    if (a >= 0) H5Aclose(a);
    return ok;
}

/* A uint8 array attribute, malloc'd, its length in *n; NULL when absent. */
static void *read_bytes_attr(hid_t obj, const char *name, size_t *n, bool *err) {
    *n = 0;
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), sp = a >= 0 ? H5Aget_space(a) : -1;
    hssize_t count = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    void *out = count > 0 ? ag_malloc((size_t)count) : NULL;
    if (out && H5Aread(a, H5T_NATIVE_UINT8, out) >= 0) {
        *n = (size_t)count;
    } else {
        ag_free(out);
        out = NULL;
        *err = true;
    }
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    return out;
}

/* ---------------------------------------------------------------- read_state */

/* What a state read from a file owns: every string and byte block it points at. */
typedef struct {
    void *p[8 + CKPT_MAX_MOMENTS + CKPT_MAX_HPARAMS];
    int n;
} owned_list;

static void *keep(owned_list *o, void *p) {
    if (p) o->p[o->n++] = p;
    return p;
}

void ckpt_state_free(ckpt_state *st) {
    owned_list *o = st->owned_;
    if (o) {
        for (int i = 0; i < o->n; ++i) ag_free(o->p[i]);
        ag_free(o);
    }
    memset(st, 0, sizeof *st);
}

typedef struct {
    ckpt_state *st;
    owned_list *own;
    bool err;
} hparam_walk;

/* Every float attribute of /optim that is not one of ours is a hyper-parameter. */
static herr_t hparam_cb(hid_t g, const char *name, const H5A_info_t *info, void *data) {
    hparam_walk *w = data;
    if (is_reserved(name)) return 0;
    hid_t a = H5Aopen(g, name, H5P_DEFAULT), t = a >= 0 ? H5Aget_type(a) : -1;
    if (t >= 0 && H5Tget_class(t) == H5T_FLOAT && w->st->n_hparams < CKPT_MAX_HPARAMS) {
        ckpt_hparam *h = &w->st->hparam[w->st->n_hparams];
        char *nm = keep(w->own, ag_malloc(strlen(name) + 1));
        if (nm && H5Aread(a, H5T_NATIVE_DOUBLE, &h->value) >= 0) {
            strcpy(nm, name);
            h->name = nm;
            w->st->n_hparams++;
        } else {
            w->err = true;
        }
    }
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return 0;
}

/* Splits "m,v" into the state's moment names (the string is kept, and cut). */
static void split_moments(ckpt_state *st, char *names) {
    st->n_moments = 0;
    for (char *s = names; s && *s && st->n_moments < CKPT_MAX_MOMENTS;) {
        char *comma = strchr(s, ',');
        if (comma) *comma = 0;
        st->moment_name[st->n_moments++] = s;
        s = comma ? comma + 1 : NULL;
    }
}

ag_status ckpt_read_state(const char *path, ckpt_state *st) {
    memset(st, 0, sizeof *st);
    owned_list *own = ag_calloc(1, sizeof *own);
    if (!own) return ag_fail(AG_ERR_MEMORY, "checkpoint %s: out of memory", path);
    st->owned_ = own;

    h5_quiet q;
    quiet_begin(&q);
    ag_status status = AG_OK;
    hid_t file = open_checkpoint(path), g = -1;
    bool err = false;
    if (file < 0) { status = ag_error_status(); goto cleanup; }

    char *format = keep(own, read_str_attr(file, "format", &err));
    if (!format || strcmp(format, CKPT_FORMAT) != 0) {
        status = ag_fail(AG_ERR_IO, "checkpoint %s: not a tapegrad checkpoint (attribute /format is %s%s%s)", path,
                         format ? "'" : "absent", format ? format : "", format ? "'" : "");
        goto cleanup;
    }
    st->config = keep(own, read_str_attr(file, "config", &err));

    if (H5Lexists(file, "optim", H5P_DEFAULT) > 0) {
        if ((g = H5Gopen2(file, "optim", H5P_DEFAULT)) < 0) {
            status = io_fail(path, "cannot open /optim");
            goto cleanup;
        }
        st->optim_kind = keep(own, read_str_attr(g, "kind", &err));
        if (!read_scalar_attr(g, "step", H5T_NATIVE_INT64, &st->optim_step)) err = true;
        split_moments(st, keep(own, read_str_attr(g, "moments", &err)));
        st->schedule = keep(own, read_str_attr(g, "schedule", &err));
        /* In the order they were given when the file tracks it, else by name. */
        hparam_walk w = {st, own, false};
        hsize_t idx = 0;
        if (H5Aiterate2(g, H5_INDEX_CRT_ORDER, H5_ITER_INC, &idx, hparam_cb, &w) < 0) {
            st->n_hparams = 0;
            idx = 0;
            H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, &idx, hparam_cb, &w);
        }
        err |= w.err;
        H5Gclose(g);
        g = -1;
    }

    if (H5Lexists(file, "state", H5P_DEFAULT) > 0) {
        if ((g = H5Gopen2(file, "state", H5P_DEFAULT)) < 0) {
            status = io_fail(path, "cannot open /state");
            goto cleanup;
        }
        /* Absent numbers stay 0; present ones must read. */
        const char *ints[] = {"global_step", "tokens_seen"};
        int64_t *iv[] = {&st->global_step, &st->tokens_seen};
        const char *uints[] = {"rng_seed", "rng_counter"};
        uint64_t *uv[] = {&st->rng_seed, &st->rng_counter};
        for (int k = 0; k < 2; ++k) {
            if (H5Aexists(g, ints[k]) > 0 && !read_scalar_attr(g, ints[k], H5T_NATIVE_INT64, iv[k])) err = true;
            if (H5Aexists(g, uints[k]) > 0 && !read_scalar_attr(g, uints[k], H5T_NATIVE_UINT64, uv[k])) err = true;
        }
        st->recipe = keep(own, read_str_attr(g, "recipe", &err));
        st->loader_position = keep(own, read_bytes_attr(g, "loader_position", &st->loader_position_len, &err));
    }
    if (err) status = ag_fail(AG_ERR_IO, "checkpoint %s: an attribute of /, /optim or /state cannot be read", path);

cleanup:
    if (g >= 0) H5Gclose(g);
    if (file >= 0) H5Fclose(file);
    quiet_end(&q);
    if (status != AG_OK) ckpt_state_free(st);
    return status;
}

/* ---------------------------------------------------------------- loading float blocks */

/* The dataset path of parameter `name`: "params/<name>", or
 * "optim/<name>/<moment>" for an optimizer moment. */
static void block_path(char *buf, size_t n, const char *name, const char *moment) {
    if (moment) snprintf(buf, n, "optim/%s/%s", name, moment);
    else snprintf(buf, n, "params/%s", name);
}

/* Exists as a link, without HDF5 failing on a name whose parent is missing. */
static bool link_exists(hid_t file, const char *group, const char *name) {
    hid_t g = H5Gopen2(file, group, H5P_DEFAULT);
    if (g < 0) return false;
    bool yes = !strchr(name, '/') && H5Lexists(g, name, H5P_DEFAULT) > 0;
    H5Gclose(g);
    return yes;
}

typedef struct {
    const ag_params *ps;
    ckpt__report *r;
    const char *prefix; /* "params/" or "optim/" */
} unexpected_walk;

static herr_t unexpected_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    unexpected_walk *w = data;
    if (!ag_params_find(w->ps, name)) {
        char what[512];
        snprintf(what, sizeof what, "%s%s", w->prefix, name);
        ckpt__report_unexpected(w->r, what);
    }
    return 0;
}

/* Checks every parameter's dataset in `file` (names, shapes, float type), then
 * reads each into dst at the parameter's offset in ps->values. dst is
 * [ps->total]. `moment` NULL: /params; else /optim/<name>/<moment>. */
static ag_status load_blocks(hid_t file, const char *path, const ag_params *ps, const char *moment, float *dst) {
    char dpath[768], prefix[600];
    snprintf(prefix, sizeof prefix, "checkpoint %s", path);
    const char *group = moment ? "optim" : "params";

    /* 1. Compare: every difference goes into the report; nothing is read yet. */
    ckpt__report r = {0};
    for (int64_t i = 0; i < ps->n; ++i) {
        const ag_tensor *t = ps->p[i];
        block_path(dpath, sizeof dpath, t->name, moment);
        if (!link_exists(file, group, t->name) || (moment && H5Lexists(file, dpath, H5P_DEFAULT) <= 0)) {
            ckpt__report_missing(&r, moment ? dpath : t->name);
            continue;
        }
        hid_t d = H5Dopen2(file, dpath, H5P_DEFAULT);
        hid_t sp = d >= 0 ? H5Dget_space(d) : -1, ty = d >= 0 ? H5Dget_type(d) : -1;
        int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        hsize_t dims[32] = {0};
        bool readable = d >= 0 && sp >= 0 && ty >= 0 && nd >= 0 && nd <= 32 &&
                        H5Sget_simple_extent_dims(sp, dims, NULL) >= 0;
        bool is_float = readable && H5Tget_class(ty) == H5T_FLOAT;
        if (ty >= 0) H5Tclose(ty);
        if (sp >= 0) H5Sclose(sp);
        if (d >= 0) H5Dclose(d);
        if (!readable) {
            ckpt__report_finish(&r, prefix, 0);
            return io_fail(path, "cannot open %s", dpath);
        }
        if (!is_float) {
            ckpt__report_finish(&r, prefix, 0);
            return ag_fail(AG_ERR_ARG, "checkpoint %s: %s is not a float dataset", path, dpath);
        }
        int64_t shape[32];
        bool same = nd == t->ndim;
        for (int k = 0; k < nd; ++k) {
            shape[k] = (int64_t)dims[k];
            if (same && shape[k] != t->shape[k]) same = false;
        }
        if (!same) ckpt__report_shape(&r, dpath, nd, shape, t->ndim, t->shape);
    }
    hid_t g = H5Gopen2(file, group, H5P_DEFAULT);
    if (g >= 0) {
        char pfx[16];
        snprintf(pfx, sizeof pfx, "%s/", group);
        unexpected_walk w = {ps, &r, pfx};
        hsize_t idx = 0;
        H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, unexpected_cb, &w);
        H5Gclose(g);
    }
    ag_status status = ckpt__report_finish(&r, prefix, ps->n);
    if (status != AG_OK) return status;

    /* 2. Read. HDF5 converts from the file's float type; float32 is copied. */
    for (int64_t i = 0; i < ps->n; ++i) {
        const ag_tensor *t = ps->p[i];
        block_path(dpath, sizeof dpath, t->name, moment);
        hid_t d = H5Dopen2(file, dpath, H5P_DEFAULT);
        bool ok = d >= 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                    dst + (t->data - ps->values)) >= 0;
        if (!ok) status = io_fail(path, "cannot read %s", dpath);
        if (d >= 0) H5Dclose(d);
        if (!ok) return status;
    }
    return AG_OK;
}

ag_status ckpt_load_params(const char *path, ag_params *ps) {
    if (!ps || !ps->finalized)
        return ag_fail(AG_ERR_ARG, "checkpoint %s: the parameter registry is not finalized", path);
    h5_quiet q;
    quiet_begin(&q);
    ag_status status;
    hid_t file = open_checkpoint(path);
    if (file < 0) {
        status = ag_error_status();
    } else if (H5Lexists(file, "params", H5P_DEFAULT) <= 0) {
        status = ag_fail(AG_ERR_IO, "checkpoint %s: no /params group: not a tapegrad checkpoint", path);
    } else {
        status = load_blocks(file, path, ps, NULL, ps->values);
    }
    if (file >= 0) H5Fclose(file);
    quiet_end(&q);
    return status;
}

typedef struct {
    ag_params *ps;
    const char *path;
    ag_status status;
} declare_walk;

static herr_t declare_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    declare_walk *w = data;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t dims[AG_MAX_DIMS] = {0};
    bool ok = nd >= 0 && nd <= AG_MAX_DIMS && H5Sget_simple_extent_dims(sp, dims, NULL) >= 0;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (!ok) {
        w->status = nd > AG_MAX_DIMS ? ag_fail(AG_ERR_ARG, "checkpoint %s: params/%s has %d dims (at most %d)",
                                               w->path, name, nd, AG_MAX_DIMS)
                                     : io_fail(w->path, "cannot read the shape of params/%s", name);
        return 1; /* stop */
    }
    int64_t shape[AG_MAX_DIMS];
    for (int k = 0; k < nd; ++k) shape[k] = (int64_t)dims[k];
    if (!ag_params_add(w->ps, name, nd ? nd : 1, nd ? shape : AG_SHAPE(1))) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ag_error()); /* ag_fail formats into the buffer ag_error reads */
        w->status = ag_fail(AG_ERR_ARG, "checkpoint %s: %s", w->path, msg);
        return 1;
    }
    return 0;
}

ag_status ckpt_declare(const char *path, ag_params *ps) {
    if (!ps || ps->finalized)
        return ag_fail(AG_ERR_ARG, "checkpoint %s: ckpt_declare needs a registry that is not finalized", path);
    h5_quiet q;
    quiet_begin(&q);
    declare_walk w = {ps, path, AG_OK};
    hid_t file = open_checkpoint(path), g = -1;
    if (file < 0) w.status = ag_error_status();
    else if (H5Lexists(file, "params", H5P_DEFAULT) <= 0 || (g = H5Gopen2(file, "params", H5P_DEFAULT)) < 0)
        w.status = ag_fail(AG_ERR_IO, "checkpoint %s: no /params group: not a tapegrad checkpoint", path);
    else {
        hsize_t idx = 0;
        if (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, declare_cb, &w) < 0 && w.status == AG_OK)
            w.status = io_fail(path, "cannot list /params");
    }
    if (g >= 0) H5Gclose(g);
    if (file >= 0) H5Fclose(file);
    quiet_end(&q);
    return w.status;
}

ag_status ckpt_load_moment(const char *path, const ag_params *ps, const char *moment, float *dst) {
    if (!ps || !ps->finalized)
        return ag_fail(AG_ERR_ARG, "checkpoint %s: the parameter registry is not finalized", path);
    if (!moment || !moment[0] || strchr(moment, '/') || !dst)
        return ag_fail(AG_ERR_ARG, "checkpoint %s: ckpt_load_moment needs a moment name and a block", path);
    h5_quiet q;
    quiet_begin(&q);
    ag_status status = AG_OK;
    hid_t file = open_checkpoint(path), g = -1;
    bool err = false;
    char *names = NULL;
    if (file < 0) { status = ag_error_status(); goto cleanup; }
    if (H5Lexists(file, "optim", H5P_DEFAULT) <= 0 || (g = H5Gopen2(file, "optim", H5P_DEFAULT)) < 0) {
        status = ag_fail(AG_ERR_ARG, "checkpoint %s: no optimizer state (/optim); cannot restore moment '%s'",
                         path, moment);
        goto cleanup;
    }
    /* The moment must be one the optimizer saved. */
    names = read_str_attr(g, "moments", &err);
    ckpt_state tmp = {0};
    char *copy = names ? ag_malloc(strlen(names) + 1) : NULL;
    bool listed = false;
    if (copy) {
        strcpy(copy, names);
        split_moments(&tmp, copy);
        for (int k = 0; k < tmp.n_moments; ++k) listed |= strcmp(tmp.moment_name[k], moment) == 0;
        ag_free(copy);
    }
    if (!listed) {
        status = ag_fail(AG_ERR_ARG, "checkpoint %s: the optimizer state holds moments [%s], not '%s'", path,
                         names ? names : "", moment);
        goto cleanup;
    }
    status = load_blocks(file, path, ps, moment, dst);
cleanup:
    ag_free(names);
    if (g >= 0) H5Gclose(g);
    if (file >= 0) H5Fclose(file);
    quiet_end(&q);
    return status;
}

/* ---------------------------------------------------------------- gradients */

ag_status ckpt_save_grads(const char *path, const ag_params *ps) {
    if (!ps->finalized) return ag_fail(AG_ERR_STATE, "gradients %s: the registry is not finalized", path);
    char *tmp = ckpt__tmp_path(path);
    if (!tmp) return ag_fail(AG_ERR_MEMORY, "gradients %s: out of memory", path);
    h5_quiet q;
    quiet_begin(&q);
    ag_status status = AG_OK;
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        status = ag_fail(AG_ERR_IO, "gradients %s: cannot create %s", path, tmp);
    } else {
        for (int64_t i = 0; i < ps->n && status == AG_OK; ++i)
            if (!write_f32(file, ps->p[i]->name, ps->p[i], ps->p[i]->grad))
                status = io_fail(path, "cannot write %s", ps->p[i]->name);
        if (H5Fclose(file) < 0 && status == AG_OK) status = io_fail(path, "cannot close %s", tmp);
        char what[600];
        snprintf(what, sizeof what, "gradients %s", path);
        if (status == AG_OK) status = ckpt__commit(tmp, path, what);
        if (status != AG_OK) unlink(tmp);
    }
    quiet_end(&q);
    ag_free(tmp);
    return status;
}
