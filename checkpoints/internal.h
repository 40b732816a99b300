/* internal.h: what hdf5.c and safetensors.c share, and users do not need.
 *
 *  - a growing string (ckpt__sb) for building messages and headers;
 *  - the name/shape report both loaders give, in load_state_dict's words;
 *  - atomic replacement of a file: NAME.tmp, fsync, rename over NAME.
 */
#ifndef TAPEGRAD_CKPT_INTERNAL_H
#define TAPEGRAD_CKPT_INTERNAL_H

#include "ckpt.h"

#include <stdarg.h>

/* ---------------------------------------------------------------- a growing string */

typedef struct ckpt__sb {
    char *s;     /* NUL-terminated, or NULL while empty */
    size_t len, cap;
    bool failed; /* an allocation failed: the text is incomplete */
} ckpt__sb;

void ckpt__sb_printf(ckpt__sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ckpt__sb_free(ckpt__sb *b);
/* The text, "" while empty. */
const char *ckpt__sb_str(const ckpt__sb *b);

/* Writes "[2,3,4]" (any number of dims) into buf of size n; returns buf. */
char *ckpt__shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

/* ---------------------------------------------------------------- the load report */

/* What a file and a registry disagree on. A few names of each kind are kept
 * for the message (the message buffer is 1 KB); all of them are counted. */
typedef struct ckpt__report {
    ckpt__sb shapes, missing, unexpected;
    int n_shapes, n_missing, n_unexpected;
} ckpt__report;

/* `what` names the entry as the file does ("params/x.weight", "x.weight"). */
void ckpt__report_shape(ckpt__report *r, const char *what, int file_ndim, const int64_t *file_shape,
                        int model_ndim, const int64_t *model_shape);
void ckpt__report_missing(ckpt__report *r, const char *name);
void ckpt__report_unexpected(ckpt__report *r, const char *name);
/* AG_OK when there is nothing to report; else sets the message
 * "<prefix>: <shapes>; missing (n): ...; unexpected (n): ..." and returns
 * AG_ERR_ARG. `n_model` is the registry's size, for the hint when nothing
 * matched at all. Frees the report either way. */
ag_status ckpt__report_finish(ckpt__report *r, const char *prefix, int64_t n_model);

/* ---------------------------------------------------------------- atomic replacement */

/* "path.tmp", malloc'd, or NULL. */
char *ckpt__tmp_path(const char *path);
/* fsyncs `tmp`, renames it over `path` and fsyncs the folder, so the rename
 * survives a crash. On failure sets an AG_ERR_IO message naming `what`
 * ("checkpoint run/ckpt.h5") and returns it; the caller removes `tmp`. */
ag_status ckpt__commit(const char *tmp, const char *path, const char *what);

#endif
