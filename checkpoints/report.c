/* report.c: what the HDF5 and safetensors code share: a growing string, the
 * report of names and shapes that differ between a file and a registry, and
 * the atomic replacement of a file.
 *
 * The report follows PyTorch's load_state_dict: it does not stop at the first
 * difference, it lists them all in one message (mis-shaped entries with both
 * shapes, then missing names, then unexpected ones), because a user fixing a
 * config wants to see every difference at once.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- a growing string */

void ckpt__sb_printf(ckpt__sb *b, const char *fmt, ...) {
    if (b->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) { b->failed = true; return; }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *s = ag_realloc(b->s, cap);
        if (!s) { b->failed = true; return; }
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void ckpt__sb_free(ckpt__sb *b) {
    ag_free(b->s);
    memset(b, 0, sizeof *b);
}

const char *ckpt__sb_str(const ckpt__sb *b) { return b->s ? b->s : ""; }

char *ckpt__shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; ++i)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* ---------------------------------------------------------------- the load report */

/* How many entries of each kind the message spells out; the rest are counted.
 * Three mis-shaped entries and four names of each list fit the 1 KB message
 * with Hugging Face's longest names. */
#define REPORT_SHAPES_SHOWN 3
#define REPORT_NAMES_SHOWN 4

void ckpt__report_shape(ckpt__report *r, const char *what, int file_ndim, const int64_t *file_shape,
                        int model_ndim, const int64_t *model_shape) {
    if (r->n_shapes++ >= REPORT_SHAPES_SHOWN) return;
    char fs[128], ms[128];
    ckpt__sb_printf(&r->shapes, "%s%s has shape %s, model wants %s", r->n_shapes > 1 ? "; " : "", what,
                    ckpt__shape_str(fs, sizeof fs, file_ndim, file_shape),
                    ckpt__shape_str(ms, sizeof ms, model_ndim, model_shape));
}

static void add_name(ckpt__sb *b, int *count, const char *name) {
    if ((*count)++ >= REPORT_NAMES_SHOWN) return;
    ckpt__sb_printf(b, "%s%s", *count > 1 ? ", " : "", name);
}

void ckpt__report_missing(ckpt__report *r, const char *name) { add_name(&r->missing, &r->n_missing, name); }
void ckpt__report_unexpected(ckpt__report *r, const char *name) { add_name(&r->unexpected, &r->n_unexpected, name); }

ag_status ckpt__report_finish(ckpt__report *r, const char *prefix, int64_t n_model) {
    ag_status status = AG_OK;
    if (r->n_shapes || r->n_missing || r->n_unexpected) {
        ckpt__sb m = {0};
        const char *sep = "";
        ckpt__sb_printf(&m, "%s: ", prefix);
        if (r->n_shapes) {
            ckpt__sb_printf(&m, "%s", ckpt__sb_str(&r->shapes));
            if (r->n_shapes > REPORT_SHAPES_SHOWN)
                ckpt__sb_printf(&m, " (and %d more mis-shaped)", r->n_shapes - REPORT_SHAPES_SHOWN);
            sep = "; ";
        }
        if (r->n_missing) {
            ckpt__sb_printf(&m, "%smissing (%d): %s", sep, r->n_missing, ckpt__sb_str(&r->missing));
            if (r->n_missing > REPORT_NAMES_SHOWN)
                ckpt__sb_printf(&m, " and %d more", r->n_missing - REPORT_NAMES_SHOWN);
            sep = "; ";
        }
        if (r->n_unexpected) {
            ckpt__sb_printf(&m, "%sunexpected (%d): %s", sep, r->n_unexpected, ckpt__sb_str(&r->unexpected));
            if (r->n_unexpected > REPORT_NAMES_SHOWN)
                ckpt__sb_printf(&m, " and %d more", r->n_unexpected - REPORT_NAMES_SHOWN);
        }
        if (n_model > 0 && r->n_missing == n_model)
            ckpt__sb_printf(&m, " (hint: no parameter of the model is in the file: is it another model's?)");
        status = ag_fail(AG_ERR_ARG, "%s", m.failed ? prefix : ckpt__sb_str(&m));
        ckpt__sb_free(&m);
    }
    ckpt__sb_free(&r->shapes);
    ckpt__sb_free(&r->missing);
    ckpt__sb_free(&r->unexpected);
    r->n_shapes = r->n_missing = r->n_unexpected = 0;
    return status;
}

/* ---------------------------------------------------------------- atomic replacement */

char *ckpt__tmp_path(const char *path) {
    size_t n = strlen(path);
    char *tmp = ag_malloc(n + 5);
    if (tmp) { memcpy(tmp, path, n); memcpy(tmp + n, ".tmp", 5); }
    return tmp;
}

/* The folder holding `path`, so that the rename itself can be made durable. */
static int open_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return open(".", O_RDONLY | O_DIRECTORY);
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *dir = ag_malloc(n + 1);
    if (!dir) return -1;
    memcpy(dir, path, n);
    dir[n] = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    ag_free(dir);
    return fd;
}

ag_status ckpt__commit(const char *tmp, const char *path, const char *what) {
    /* 1. The data reaches the disk before the name points at it: otherwise a
     *    crash right after the rename could leave NAME holding zeros. */
    int fd = open(tmp, O_RDONLY);
    if (fd < 0) return ag_fail(AG_ERR_IO, "%s: cannot reopen %s to sync it: %s", what, tmp, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return ag_fail(AG_ERR_IO, "%s: fsync of %s failed: %s", what, tmp, strerror(e));
    }
    close(fd);
    /* 2. rename() replaces NAME in one step: a reader sees the old file or the new. */
    if (rename(tmp, path) != 0)
        return ag_fail(AG_ERR_IO, "%s: cannot rename %s over %s: %s", what, tmp, path, strerror(errno));
    /* 3. The folder's entry is itself data: sync it so the rename survives a
     *    crash. The new file is in place by now, so a failure here is not
     *    reported as a failed save. */
    int dfd = open_parent_dir(path);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
    return AG_OK;
}
