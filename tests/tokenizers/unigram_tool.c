/* unigram_tool.c: the Unigram tokenizer from the shell, for compare_spm.sh.
 *
 *   unigram_tool encode MODEL FILE      one line of ids per input line (as spm_encode --output_format=id);
 *                                       the throughput in MB/s goes to stderr
 *   unigram_tool decode MODEL FILE      one line of text per line of ids
 *   unigram_tool train OUT.model VOCAB MAX_BYTES FILE...   trains, saves, prints the time
 *
 * Built by compare_spm.sh against the library; not part of the test suite. */
#include "unigram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long m = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)m + 1);
    *n = fread(b, 1, (size_t)m, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "train") == 0) {
        data_unigram_train_opts o = data_unigram_train_defaults(atoi(argv[3]));
        o.max_bytes = argc > 4 ? atoll(argv[4]) : 0;
        o.verbose = 1;
        double t0 = now();
        data_unigram *u;
        if (data_unigram_train(&u, (const char *const *)argv + 5, argc - 5, &o) != AG_OK ||
            data_unigram_save(u, argv[2]) != AG_OK) {
            fprintf(stderr, "%s\n", ag_error());
            return 1;
        }
        fprintf(stderr, "trained %d pieces in %.2f s\n", data_unigram_vocab_size(u), now() - t0);
        data_unigram_free(u);
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: unigram_tool encode|decode MODEL FILE | train OUT VOCAB MAX_BYTES FILE...\n");
        return 2;
    }
    data_unigram *u;
    if (data_unigram_load(&u, argv[2]) != AG_OK) {
        fprintf(stderr, "%s\n", ag_error());
        return 1;
    }
    size_t n;
    char *text = slurp(argv[3], &n);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", argv[3]);
        return 1;
    }
    size_t cap = 1 << 20, used = 0;
    char *out = malloc(cap);
    double t0 = now(), t_enc = 0;
    for (char *line = text; line < text + n;) {
        char *nl = memchr(line, '\n', (size_t)(text + n - line));
        size_t len = nl ? (size_t)(nl - line) : (size_t)(text + n - line);
        char *piece_text = NULL;
        int32_t *ids = NULL;
        int64_t m = 0;
        if (strcmp(argv[1], "encode") == 0) {
            double t1 = now();
            if (data_unigram_encode(u, line, len, &ids, &m) != AG_OK) { fprintf(stderr, "%s\n", ag_error()); return 1; }
            t_enc += now() - t1;
        } else {
            ids = malloc((len + 1) * sizeof *ids);
            char *p = line, *end = line + len;
            while (p < end) {
                char *q;
                long v = strtol(p, &q, 10);
                if (q == p) break;
                ids[m++] = (int32_t)v;
                p = q;
            }
            if (data_unigram_decode(u, ids, m, &piece_text) != AG_OK) { fprintf(stderr, "%s\n", ag_error()); return 1; }
        }
        size_t need = used + (size_t)m * 12 + (piece_text ? strlen(piece_text) : 0) + 2;
        if (need > cap) { while (need > cap) cap *= 2; out = realloc(out, cap); }
        if (piece_text) used += (size_t)sprintf(out + used, "%s", piece_text);
        else for (int64_t i = 0; i < m; ++i) used += (size_t)sprintf(out + used, i ? " %d" : "%d", ids[i]);
        out[used++] = '\n';
        free(ids);
        free(piece_text);
        line = nl ? nl + 1 : text + n;
    }
    fwrite(out, 1, used, stdout);
    if (strcmp(argv[1], "encode") == 0)
        fprintf(stderr, "encoded %.2f MB in %.3f s (%.3f s in encode calls): %.2f MB/s\n", n / 1e6, now() - t0, t_enc,
                n / 1e6 / t_enc);
    free(out);
    free(text);
    data_unigram_free(u);
    return 0;
}
