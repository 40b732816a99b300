/* plot.c: `tapegrad plot RUN`: the loss curves of a run as an SVG.
 *
 * Reads RUN/metrics.jsonl (one JSON object per logged step: "loss" for the
 * training loss, "val_loss" for the held-out loss) and draws both against the
 * step, with axes and tick labels, into one self-contained SVG file. No
 * plotting library: an SVG is text, and the axes are a few lines. */
#include "recipes.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { double *x, *y; int n, cap; } series;

static bool push(series *s, double x, double y) {
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 256;
        double *nx = realloc(s->x, (size_t)cap * sizeof *nx), *ny = realloc(s->y, (size_t)cap * sizeof *ny);
        if (!nx || !ny) { free(nx == s->x ? NULL : nx); return false; }
        s->x = nx, s->y = ny, s->cap = cap;
    }
    s->x[s->n] = x, s->y[s->n] = y, s->n++;
    return true;
}

/* A "nice" tick step (1, 2 or 5 times a power of ten) for a span. */
static double tick_step(double span, int want) {
    double raw = span / want, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

ag_status recipe_plot(const char *run_dir, const char *out_path) {
    char path[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *f = fopen(path, "r");
    if (!f) return ag_fail(AG_ERR_IO, "plot: cannot open %s (is %s a run folder?)", path, run_dir);
    series train = {0}, val = {0};
    char line[4096];
    int lineno = 0;
    ag_status st = AG_OK;
    while (st == AG_OK && fgets(line, sizeof line, f)) {
        lineno++;
        cJSON *j = cJSON_Parse(line);
        if (!j) { st = ag_fail(AG_ERR_ARG, "plot: %s line %d is not JSON", path, lineno); break; }
        const cJSON *step = cJSON_GetObjectItem(j, "step"), *l = cJSON_GetObjectItem(j, "loss"),
                    *v = cJSON_GetObjectItem(j, "val_loss");
        if (cJSON_IsNumber(step) && cJSON_IsNumber(l) && isfinite(l->valuedouble) &&
            !push(&train, step->valuedouble, l->valuedouble))
            st = ag_fail(AG_ERR_MEMORY, "plot: out of memory");
        if (cJSON_IsNumber(step) && cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
            !push(&val, step->valuedouble, v->valuedouble))
            st = ag_fail(AG_ERR_MEMORY, "plot: out of memory");
        cJSON_Delete(j);
    }
    fclose(f);
    if (st == AG_OK && train.n + val.n == 0) st = ag_fail(AG_ERR_ARG, "plot: %s holds no losses", path);
    FILE *o = NULL;
    if (st == AG_OK && !(o = fopen(out_path, "w"))) st = ag_fail(AG_ERR_IO, "plot: cannot write %s", out_path);
    if (st == AG_OK) {
        double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
        series *all[2] = {&train, &val};
        for (int k = 0; k < 2; ++k)
            for (int i = 0; i < all[k]->n; ++i) {
                x0 = fmin(x0, all[k]->x[i]), x1 = fmax(x1, all[k]->x[i]);
                y0 = fmin(y0, all[k]->y[i]), y1 = fmax(y1, all[k]->y[i]);
            }
        if (x1 <= x0) x1 = x0 + 1;
        if (y1 <= y0) y1 = y0 + 1;
        double ys = tick_step(y1 - y0, 6), xs = tick_step(x1 - x0, 8);
        y0 = floor(y0 / ys) * ys, y1 = ceil(y1 / ys) * ys;
        const double W = 720, H = 420, L = 60, R = 20, T = 30, B = 45; /* canvas and margins */
#define PX(x) (L + ((x) - x0) / (x1 - x0) * (W - L - R))
#define PY(y) (H - B - ((y) - y0) / (y1 - y0) * (H - T - B))
        fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                   "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                W, H);
        fprintf(o, "<text x=\"%.0f\" y=\"18\" font-size=\"14\">%s</text>\n", L, run_dir);
        for (double y = y0; y <= y1 + ys / 2; y += ys)
            fprintf(o, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                    L, W - R, PY(y), PY(y), L - 6, PY(y) + 4, y);
        for (double x = ceil(x0 / xs) * xs; x <= x1; x += xs)
            fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", PX(x), H - B + 16, x);
        fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>\n", (L + W - R) / 2, H - 8);
        fprintf(o, "<text x=\"14\" y=\"%.1f\" transform=\"rotate(-90 14 %.1f)\" text-anchor=\"middle\">loss (nats)</text>\n",
                (T + H - B) / 2, (T + H - B) / 2);
        const char *colour[2] = {"#1f77b4", "#d62728"}, *label[2] = {"training loss", "held-out loss"};
        for (int k = 0; k < 2; ++k) {
            if (!all[k]->n) continue;
            fprintf(o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colour[k]);
            for (int i = 0; i < all[k]->n; ++i) fprintf(o, "%.1f,%.1f ", PX(all[k]->x[i]), PY(all[k]->y[i]));
            fprintf(o, "\"/>\n");
            if (k == 1)
                for (int i = 0; i < all[k]->n; ++i)
                    fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(all[k]->x[i]),
                            PY(all[k]->y[i]), colour[k]);
            fprintf(o, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"2\"/>"
                       "<text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
                    W - 200, W - 180, T + 8 + 18.0 * k, T + 8 + 18.0 * k, colour[k], W - 174, T + 12 + 18.0 * k, label[k]);
        }
        fprintf(o, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"black\"/>\n</svg>\n",
                L, T, W - L - R, H - T - B);
#undef PX
#undef PY
        if (fclose(o) != 0) st = ag_fail(AG_ERR_IO, "plot: cannot write %s", out_path);
    }
    free(train.x), free(train.y), free(val.x), free(val.y);
    return st;
}
