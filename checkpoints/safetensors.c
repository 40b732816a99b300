/* safetensors.c: reading and writing Hugging Face's safetensors files.
 *
 * The format is in ckpt.h: an 8-byte little-endian header length N, N bytes of
 * JSON naming each tensor's dtype, shape and byte range, then the bytes. It has
 * no checksums, so the header is all there is to check, and we check all of
 * it before trusting a byte: the length is sane, the JSON parses, every entry
 * has a known dtype, a shape of non-negative integers and two offsets; each
 * range holds exactly numel * dtype-size bytes; and the ranges, sorted, tile
 * the data from 0 to its end with no gap and no overlap. A file that fails is
 * refused with a message naming the file and the tensor or field.
 *
 * The file is mapped (mmap) rather than read: a 500 MB checkpoint then costs
 * no second copy, and each tensor is converted straight into its parameter.
 *
 * What it is not: a writer of half precision (we write F32 only), nor a reader
 * of integer tensors into float parameters.
 */
#include "internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c copies little-endian tensor bytes as they are: port the copies for a big-endian host"
#endif

/* The reference implementation refuses headers over 100 MB; so do we. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)
/* A file's tensors may have more dims than ours; they are checked, and
 * refused only when one is to be loaded into a parameter. */
#define ST_MAX_DIMS 8

/* ---------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    int size; /* bytes per element */
} st_dtypes[] = {
    {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
    {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};
enum { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2 }; /* the ones we convert to float32 */
#define ST_N_DTYPES ((int)(sizeof st_dtypes / sizeof *st_dtypes))

/* IEEE half -> float, exactly: sign, 5 exponent bits (bias 15), 10 mantissa bits. */
static float f16_to_f32(uint16_t h) {
    int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float v;
    if (exp == 0) v = ldexpf((float)mant, -24);                /* zero, subnormal: mant * 2^-24 */
    else if (exp == 31) v = mant ? NAN : INFINITY;             /* inf, NaN */
    else v = ldexpf((float)(mant + 1024), exp - 25);           /* (1 + mant/1024) * 2^(exp-15) */
    return (h & 0x8000) ? -v : v;
}

/* bfloat16 is the upper half of a float32: put the bits back in place. */
static float bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* ---------------------------------------------------------------- the file, mapped and checked */

typedef struct {
    const char *name; /* points into the parsed header */
    int dtype;        /* index into st_dtypes */
    int ndim;         /* as in the file; a 0-d tensor is matched as shape [1] */
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end; /* byte range within the data part */
} st_entry;

typedef struct {
    const char *path;
    unsigned char *map; /* the whole file */
    size_t size;
    const unsigned char *data; /* the data part: map + 8 + N */
    uint64_t data_len;
    cJSON *json;
    st_entry *e; /* sorted by begin: the order of the bytes */
    int n;
} st_file;

static void st_close(st_file *f) {
    if (f->map) munmap(f->map, f->size);
    cJSON_Delete(f->json);
    ag_free(f->e);
    memset(f, 0, sizeof *f);
}

/* A JSON number that is a non-negative integer below 2^53 (exact in a double). */
static bool json_uint(const cJSON *x, uint64_t *v) {
    if (!cJSON_IsNumber(x)) return false;
    double d = x->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return false;
    *v = (uint64_t)d;
    return true;
}

static int cmp_begin(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

/* Checks one tensor's entry of the header and fills *e. */
static ag_status parse_entry(const st_file *f, const cJSON *item, st_entry *e) {
    const char *nm = item->string;
    e->name = nm;
    if (!cJSON_IsObject(item))
        return ag_fail(AG_ERR_IO, "safetensors %s: tensor %s: entry is not a JSON object", f->path, nm);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!cJSON_IsString(dt))
        return ag_fail(AG_ERR_IO, "safetensors %s: tensor %s: no \"dtype\" string", f->path, nm);
    e->dtype = -1;
    for (int k = 0; k < ST_N_DTYPES; ++k)
        if (strcmp(dt->valuestring, st_dtypes[k].name) == 0) e->dtype = k;
    if (e->dtype < 0)
        return ag_fail(AG_ERR_IO, "safetensors %s: tensor %s: unknown dtype \"%s\"", f->path, nm, dt->valuestring);

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    if (!cJSON_IsArray(sh))
        return ag_fail(AG_ERR_IO, "safetensors %s: tensor %s: no \"shape\" array", f->path, nm);
    e->ndim = cJSON_GetArraySize(sh);
    if (e->ndim > ST_MAX_DIMS)
        return ag_fail(AG_ERR_IO, "safetensors %s: tensor %s: %d dims (at most %d)", f->path, nm, e->ndim,
                       ST_MAX_DIMS);
    e->numel = 1;
    int k = 0;
    for (const cJSON *d = sh->child; d; d = d->next, ++k) {
        uint64_t v;
        if (!json_uint(d, &v) || v > ((uint64_t)1 << 40))
            return ag_fail(AG_ERR_IO, "safetensors %s: tensor %s: shape[%d] is not a size", f->path, nm, k);
        e->shape[k] = (int64_t)v;
        if (e->numel > 0 && (int64_t)v > (INT64_MAX / 8) / e->numel)
            return ag_fail(AG_ERR_IO, "safetensors %s: tensor %s: the shape's size overflows", f->path, nm);
        e->numel *= (int64_t)v;
    }

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &e->begin) ||
        !json_uint(off->child->next, &e->end))
        return ag_fail(AG_ERR_IO, "safetensors %s: tensor %s: \"data_offsets\" is not two byte offsets", f->path,
                       nm);
    if (e->begin > e->end)
        return ag_fail(AG_ERR_IO, "safetensors %s: tensor %s: data_offsets [%llu, %llu] end before they begin",
                       f->path, nm, (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > f->data_len)
        return ag_fail(AG_ERR_IO,
                       "safetensors %s: tensor %s: data_offsets [%llu, %llu] run past the end of the data "
                       "(%llu bytes; is the file truncated?)",
                       f->path, nm, (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)f->data_len);
    uint64_t want = (uint64_t)e->numel * (uint64_t)st_dtypes[e->dtype].size;
    if (e->end - e->begin != want) {
        char s[160];
        return ag_fail(AG_ERR_IO,
                       "safetensors %s: tensor %s: data_offsets [%llu, %llu] hold %llu bytes, but shape %s of %s "
                       "needs %llu",
                       f->path, nm, (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)(e->end - e->begin), ckpt__shape_str(s, sizeof s, e->ndim, e->shape),
                       st_dtypes[e->dtype].name, (unsigned long long)want);
    }
    return AG_OK;
}

/* Maps `path` and checks its header; see the top of the file for what is
 * checked. On success f->e holds the tensors in the order of their bytes. */
static ag_status st_open(const char *path, st_file *f) {
    memset(f, 0, sizeof *f);
    f->path = path;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ag_fail(AG_ERR_IO, "safetensors %s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ag_fail(AG_ERR_IO, "safetensors %s: not a regular file", path);
    }
    f->size = (size_t)sb.st_size;
    if (f->size < 8) {
        close(fd);
        return ag_fail(AG_ERR_IO, "safetensors %s: %zu bytes: too short to hold the 8-byte header length", path,
                       f->size);
    }
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); /* the mapping keeps the file */
    if (m == MAP_FAILED) return ag_fail(AG_ERR_IO, "safetensors %s: cannot map: %s", path, strerror(errno));
    f->map = m;

    /* [8 bytes] N, little-endian */
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | f->map[i];
    if (n < 2 || n > f->size - 8) {
        ag_fail(AG_ERR_IO, "safetensors %s: header length %llu does not fit the file (%zu bytes): not a safetensors file?",
                path, (unsigned long long)n, f->size);
        goto fail;
    }
    if (n > ST_MAX_HEADER) {
        ag_fail(AG_ERR_IO, "safetensors %s: header length %llu is over the 100 MB limit", path, (unsigned long long)n);
        goto fail;
    }
    f->data = f->map + 8 + n;
    f->data_len = f->size - 8 - n;

    /* [N bytes] JSON */
    const char *text = (const char *)f->map + 8;
    if (text[0] != '{') {
        ag_fail(AG_ERR_IO, "safetensors %s: the header does not start with '{': not a safetensors file?", path);
        goto fail;
    }
    f->json = cJSON_ParseWithLength(text, (size_t)n);
    if (!f->json || !cJSON_IsObject(f->json)) {
        const char *at = cJSON_GetErrorPtr();
        long pos = at && at >= text && at <= text + n ? (long)(at - text) : -1;
        ag_fail(AG_ERR_IO, "safetensors %s: the header is not valid JSON (error near byte %ld of %llu)", path, pos,
                (unsigned long long)n);
        goto fail;
    }

    int count = cJSON_GetArraySize(f->json);
    f->e = ag_calloc((size_t)(count ? count : 1), sizeof *f->e);
    if (!f->e) { ag_fail(AG_ERR_MEMORY, "safetensors %s: out of memory", path); goto fail; }
    for (const cJSON *it = f->json->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) {
            /* Strings to strings, by the format's definition. */
            if (!cJSON_IsObject(it)) {
                ag_fail(AG_ERR_IO, "safetensors %s: __metadata__ is not an object", path);
                goto fail;
            }
            for (const cJSON *kv = it->child; kv; kv = kv->next)
                if (!cJSON_IsString(kv)) {
                    ag_fail(AG_ERR_IO, "safetensors %s: __metadata__.%s is not a string", path, kv->string);
                    goto fail;
                }
            continue;
        }
        if (parse_entry(f, it, &f->e[f->n]) != AG_OK) goto fail;
        f->n++;
    }

    /* No name twice (JSON allows it; the format does not). */
    qsort(f->e, (size_t)f->n, sizeof *f->e, cmp_name);
    for (int i = 1; i < f->n; ++i)
        if (strcmp(f->e[i].name, f->e[i - 1].name) == 0) {
            ag_fail(AG_ERR_IO, "safetensors %s: tensor %s appears twice in the header", path, f->e[i].name);
            goto fail;
        }

    /* The ranges tile the data: sorted, each starts where the previous ends. */
    qsort(f->e, (size_t)f->n, sizeof *f->e, cmp_begin);
    uint64_t at = 0;
    for (int i = 0; i < f->n; ++i) {
        if (f->e[i].begin != at) {
            if (i == 0)
                ag_fail(AG_ERR_IO, "safetensors %s: tensor %s: the first tensor starts at byte %llu, not 0", path,
                        f->e[i].name, (unsigned long long)f->e[i].begin);
            else
                ag_fail(AG_ERR_IO, "safetensors %s: tensor %s: starts at byte %llu but %s ends at %llu (%s)", path,
                        f->e[i].name, (unsigned long long)f->e[i].begin, f->e[i - 1].name,
                        (unsigned long long)at, f->e[i].begin < at ? "overlap" : "gap");
            goto fail;
        }
        at = f->e[i].end;
    }
    if (at != f->data_len) {
        ag_fail(AG_ERR_IO, "safetensors %s: the tensors end at byte %llu but the data holds %llu bytes", path,
                (unsigned long long)at, (unsigned long long)f->data_len);
        goto fail;
    }
    return AG_OK;
fail:
    st_close(f);
    return ag_error_status();
}

/* The entry's shape as the registry sees it: a 0-d tensor is [1]. */
static bool same_shape(const st_entry *e, const ag_tensor *t) {
    if (e->ndim == 0) return t->ndim == 1 && t->shape[0] == 1;
    if (e->ndim != t->ndim) return false;
    for (int k = 0; k < e->ndim; ++k)
        if (e->shape[k] != t->shape[k]) return false;
    return true;
}

/* Element i of a float entry, as float32. */
static float entry_value(const st_file *f, const st_entry *e, int64_t i) {
    const unsigned char *p = f->data + e->begin;
    if (e->dtype == ST_F32) {
        float v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return e->dtype == ST_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

/* Converts a whole float entry into dst [e->numel]. F32 is copied bit for bit
 * (memcpy: the bytes need not be aligned). */
static void entry_read(const st_file *f, const st_entry *e, float *dst) {
    if (e->dtype == ST_F32) {
        memcpy(dst, f->data + e->begin, (size_t)e->numel * 4);
        return;
    }
    for (int64_t i = 0; i < e->numel; ++i) dst[i] = entry_value(f, e, i);
}

/* ---------------------------------------------------------------- load */

static const ckpt_alias *find_alias(const ckpt_alias *aliases, int n, const char *name) {
    for (int i = 0; i < n; ++i)
        if (strcmp(aliases[i].alias, name) == 0) return &aliases[i];
    return NULL;
}

/* The position of t in the registry (t is one of its parameters). */
static int64_t param_index(const ag_params *ps, const ag_tensor *t) {
    int64_t p = 0;
    while (p < ps->n && ps->p[p] != t) ++p;
    return p;
}

/* An alias table must name a parameter as primary and a non-parameter as alias. */
static ag_status check_aliases(const char *path, const ag_params *ps, const ckpt_alias *aliases, int n) {
    for (int i = 0; i < n; ++i) {
        if (!aliases[i].alias || !aliases[i].primary)
            return ag_fail(AG_ERR_ARG, "safetensors %s: alias %d has a NULL name", path, i);
        if (ag_params_find(ps, aliases[i].alias))
            return ag_fail(AG_ERR_ARG, "safetensors %s: alias %s is itself a parameter of the model", path,
                           aliases[i].alias);
    }
    return AG_OK;
}

/* Checkpoints saved by old versions of BERT-family code name LayerNorm
 * parameters "gamma" and "beta"; Hugging Face renames them on load
 * (`_fix_key`: gamma -> weight, beta -> bias), and so does this loader. The
 * renamed name is written into buf; returns false when `name` has neither. */
static bool legacy_name(const char *name, char *buf, size_t cap) {
    static const char *const from[2] = {".gamma", ".beta"}, *const to[2] = {".weight", ".bias"};
    size_t n = strlen(name);
    for (int k = 0; k < 2; ++k) {
        size_t m = strlen(from[k]);
        if (n > m && strcmp(name + n - m, from[k]) == 0 && n - m + strlen(to[k]) < cap) {
            snprintf(buf, cap, "%.*s%s", (int)(n - m), name, to[k]);
            return true;
        }
    }
    return false;
}

/* The parameter a file entry fills: by its own name, an alias, or its
 * renamed historic name; NULL when none. */
static const ag_tensor *resolve_name(const ag_params *ps, const ckpt_alias *aliases, int n_aliases, const char *name) {
    const ag_tensor *t = ag_params_find(ps, name);
    if (t) return t;
    const ckpt_alias *a = find_alias(aliases, n_aliases, name);
    if (a) return ag_params_find(ps, a->primary);
    char renamed[512];
    return legacy_name(name, renamed, sizeof renamed) ? resolve_name(ps, aliases, n_aliases, renamed) : NULL;
}

ag_status ckpt_safetensors_load(const char *path, ag_params *ps, const ckpt_alias *aliases, int n_aliases) {
    if (!ps || !ps->finalized)
        return ag_fail(AG_ERR_ARG, "safetensors %s: the parameter registry is not finalized", path);
    ag_status status = check_aliases(path, ps, aliases, n_aliases);
    if (status != AG_OK) return status;
    st_file f;
    if ((status = st_open(path, &f)) != AG_OK) return status;

    /* For each entry, the parameter it fills (NULL: unexpected); for each
     * parameter, the entry it is read from (-1: missing). */
    const ag_tensor **target = ag_calloc((size_t)(f.n ? f.n : 1), sizeof *target);
    int *source = ag_malloc((size_t)(ps->n ? ps->n : 1) * sizeof *source);
    if (!target || !source) { status = ag_fail(AG_ERR_MEMORY, "safetensors %s: out of memory", path); goto done; }
    for (int64_t i = 0; i < ps->n; ++i) source[i] = -1;

    /* 1. Match names: directly, through the alias table, or by the historic
     *    names of old checkpoints (see legacy_name). A parameter that some
     *    entry names, even with the wrong shape, is not missing. */
    bool *named = ag_calloc((size_t)(ps->n ? ps->n : 1), sizeof *named);
    if (!named) { status = ag_fail(AG_ERR_MEMORY, "safetensors %s: out of memory", path); goto done; }
    ckpt__report r = {0};
    for (int i = 0; i < f.n; ++i) {
        const st_entry *e = &f.e[i];
        const ag_tensor *t = resolve_name(ps, aliases, n_aliases, e->name);
        if (!t) { ckpt__report_unexpected(&r, e->name); continue; }
        named[param_index(ps, t)] = true;
        if (!same_shape(e, t)) {
            int64_t one = 1;
            ckpt__report_shape(&r, e->name, e->ndim ? e->ndim : 1, e->ndim ? e->shape : &one, t->ndim, t->shape);
            continue;
        }
        target[i] = t;
    }
    for (int64_t p = 0; p < ps->n; ++p)
        if (!named[p]) ckpt__report_missing(&r, ps->p[p]->name);
    ag_free(named);
    char prefix[600];
    snprintf(prefix, sizeof prefix, "safetensors %s", path);
    if ((status = ckpt__report_finish(&r, prefix, ps->n)) != AG_OK) goto done;

    /* 2. Dtypes we can convert, and one source per parameter: the entry under
     * its own name when the file has it, else the first alias. */
    for (int i = 0; i < f.n; ++i) {
        const st_entry *e = &f.e[i];
        if (e->dtype != ST_F32 && e->dtype != ST_F16 && e->dtype != ST_BF16) {
            status = ag_fail(AG_ERR_ARG, "safetensors %s: tensor %s has dtype %s; only F32, F16 and BF16 load into "
                             "float32 parameters", path, e->name, st_dtypes[e->dtype].name);
            goto done;
        }
        int64_t p = param_index(ps, target[i]);
        bool own_name = strcmp(e->name, target[i]->name) == 0;
        if (source[p] < 0 || own_name) source[p] = i;
    }

    /* 3. Tied copies must agree with the source, value for value (compared
     *    as float32 bits, so -0 and 0 differ and a NaN equals itself). */
    for (int i = 0; i < f.n; ++i) {
        const st_entry *src = &f.e[source[param_index(ps, target[i])]], *e = &f.e[i];
        if (src == e) continue;
        for (int64_t k = 0; k < e->numel; ++k) {
            float a = entry_value(&f, src, k), b = entry_value(&f, e, k);
            if (memcmp(&a, &b, sizeof a) != 0) {
                status = ag_fail(AG_ERR_ARG,
                                 "safetensors %s: %s and %s are tied (one parameter) but differ, first at element "
                                 "%lld: %.9g vs %.9g",
                                 path, src->name, e->name, (long long)k, a, b);
                goto done;
            }
        }
    }

    /* 4. Everything checks: fill the parameters. */
    for (int64_t p = 0; p < ps->n; ++p) entry_read(&f, &f.e[source[p]], ps->p[p]->data);

done:
    ag_free(target);
    ag_free(source);
    st_close(&f);
    return status;
}

/* ---------------------------------------------------------------- declare */

ag_status ckpt_safetensors_declare(const char *path, ag_params *ps) {
    st_file f;
    ag_status status = st_open(path, &f);
    if (status != AG_OK) return status;
    for (int i = 0; i < f.n && status == AG_OK; ++i) {
        const st_entry *e = &f.e[i];
        if (e->ndim > AG_MAX_DIMS) {
            status = ag_fail(AG_ERR_ARG, "safetensors %s: tensor %s has %d dims; parameters have at most %d", path,
                             e->name, e->ndim, AG_MAX_DIMS);
        } else if (!ag_params_add(ps, e->name, e->ndim ? e->ndim : 1, e->ndim ? e->shape : AG_SHAPE(1))) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", ag_error());
            status = ag_fail(AG_ERR_ARG, "safetensors %s: %s", path, msg);
        }
    }
    st_close(&f);
    return status;
}

/* ---------------------------------------------------------------- save */

/* {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]} */
static cJSON *f32_entry(const ag_tensor *t, uint64_t begin) {
    cJSON *o = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *off = cJSON_CreateArray();
    if (!o || !shape || !off) { cJSON_Delete(o); cJSON_Delete(shape); cJSON_Delete(off); return NULL; }
    cJSON_AddItemToObject(o, "dtype", cJSON_CreateString("F32"));
    for (int k = 0; k < t->ndim; ++k) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[k]));
    cJSON_AddItemToObject(o, "shape", shape);
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)begin));
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(begin + (uint64_t)t->numel * 4)));
    cJSON_AddItemToObject(o, "data_offsets", off);
    return o;
}

/* The header: __metadata__ first, then every parameter in the registry's order
 * (the data follows in the same order), then the alias copies. Returns the
 * JSON text (malloc'd by cJSON) or NULL. */
static char *build_header(const ag_params *ps, const ckpt_alias *aliases, int n_aliases, bool write_aliases) {
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    char *text = NULL;
    if (!root || !meta) { cJSON_Delete(root); cJSON_Delete(meta); return NULL; }
    cJSON_AddItemToObject(root, "__metadata__", meta);
    cJSON_AddItemToObject(meta, "format", cJSON_CreateString("pt"));
    if (n_aliases > 0) {
        /* [["primary", "alias", ...], ...], as the fixtures' tied_groups */
        cJSON *groups = cJSON_CreateArray();
        for (int64_t p = 0; groups && p < ps->n; ++p) {
            cJSON *g = NULL;
            for (int i = 0; i < n_aliases; ++i) {
                if (strcmp(aliases[i].primary, ps->p[p]->name) != 0) continue;
                if (!g) {
                    g = cJSON_CreateArray();
                    cJSON_AddItemToArray(g, cJSON_CreateString(ps->p[p]->name));
                    cJSON_AddItemToArray(groups, g);
                }
                cJSON_AddItemToArray(g, cJSON_CreateString(aliases[i].alias));
            }
        }
        char *g = groups ? cJSON_PrintUnformatted(groups) : NULL;
        cJSON_Delete(groups);
        if (!g) goto done;
        cJSON_AddItemToObject(meta, "tied_groups", cJSON_CreateString(g));
        cJSON_free(g);
    }
    uint64_t at = 0;
    for (int64_t p = 0; p < ps->n; ++p) {
        cJSON *e = f32_entry(ps->p[p], at);
        if (!e) goto done;
        cJSON_AddItemToObject(root, ps->p[p]->name, e);
        at += (uint64_t)ps->p[p]->numel * 4;
    }
    for (int i = 0; write_aliases && i < n_aliases; ++i) {
        const ag_tensor *t = ag_params_find(ps, aliases[i].primary);
        cJSON *e = f32_entry(t, at);
        if (!e) goto done;
        cJSON_AddItemToObject(root, aliases[i].alias, e);
        at += (uint64_t)t->numel * 4;
    }
    text = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(root);
    return text;
}

ag_status ckpt_safetensors_save(const char *path, const ag_params *ps, const ckpt_alias *aliases,
                                int n_aliases, bool write_aliases) {
    if (!ps || !ps->finalized)
        return ag_fail(AG_ERR_ARG, "safetensors %s: the parameter registry is not finalized", path);
    ag_status status = check_aliases(path, ps, aliases, n_aliases);
    if (status != AG_OK) return status;
    for (int i = 0; i < n_aliases; ++i)
        if (!ag_params_find(ps, aliases[i].primary))
            return ag_fail(AG_ERR_ARG, "safetensors %s: alias %s names %s, which is not a parameter of the model",
                           path, aliases[i].alias, aliases[i].primary);

    char *header = build_header(ps, aliases, n_aliases, write_aliases);
    char *tmp = ckpt__tmp_path(path);
    FILE *fp = NULL;
    if (!header || !tmp) { status = ag_fail(AG_ERR_MEMORY, "safetensors %s: out of memory", path); goto done; }

    /* Pad the header with spaces to a multiple of 8, so that every tensor's
     * bytes start 8-aligned in the file (the reference writer does the same). */
    size_t n = strlen(header), padded = (n + 7) & ~(size_t)7;
    unsigned char len8[8];
    for (int i = 0; i < 8; ++i) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));

    if (!(fp = fopen(tmp, "wb"))) {
        status = ag_fail(AG_ERR_IO, "safetensors %s: cannot create %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    bool ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(header, 1, n, fp) == n;
    for (size_t i = n; ok && i < padded; ++i) ok = fputc(' ', fp) != EOF;
    for (int64_t p = 0; ok && p < ps->n; ++p)
        ok = fwrite(ps->p[p]->data, 4, (size_t)ps->p[p]->numel, fp) == (size_t)ps->p[p]->numel;
    for (int i = 0; ok && write_aliases && i < n_aliases; ++i) {
        const ag_tensor *t = ag_params_find(ps, aliases[i].primary);
        ok = fwrite(t->data, 4, (size_t)t->numel, fp) == (size_t)t->numel;
    }
    int e = errno;
    if (fclose(fp) != 0 && ok) { ok = false; e = errno; }
    fp = NULL;
    if (!ok) {
        status = ag_fail(AG_ERR_IO, "safetensors %s: cannot write %s: %s", path, tmp, strerror(e));
        goto done;
    }
    char what[600];
    snprintf(what, sizeof what, "safetensors %s", path);
    status = ckpt__commit(tmp, path, what);

done:
    if (status != AG_OK && tmp) unlink(tmp);
    cJSON_free(header);
    ag_free(tmp);
    return status;
}
