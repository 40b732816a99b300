/* gemm_threads.c: does a GEMM right after an OpenMP loop still run at full
 * speed? (DESIGN.md: a spinning OpenMP pool beside OpenBLAS's own pthread pool
 * leaves each GEMM one core.) tapegrad links Debian's OpenMP build of
 * OpenBLAS so that both share one pool; this measures it.
 *
 *   ./build/bench_gemm [N] [threads]     prints GFLOP/s for: a GEMM alone, and
 *                                        a GEMM directly after an OpenMP loop */
#include "ag.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1024;
    ag_set_threads(argc > 2 ? atoi(argv[2]) : 0);
    float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float)),
          *c = malloc((size_t)n * n * sizeof(float)), *x = malloc((size_t)n * n * sizeof(float));
    for (long i = 0; i < (long)n * n; ++i) { a[i] = (float)(i % 7) - 3; b[i] = (float)(i % 5) - 2; x[i] = 1; }
    double flop = 2.0 * n * n * n, best_alone = 0, best_after = 0;
    for (int rep = 0; rep < 5; ++rep) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        double alone = flop / (now_s() - t0) / 1e9;
#pragma omp parallel for
        for (long i = 0; i < (long)n * n; ++i) x[i] = x[i] * 0.999f + 0.001f;
        t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        double after = flop / (now_s() - t0) / 1e9;
        if (alone > best_alone) best_alone = alone;
        if (after > best_after) best_after = after;
    }
    printf("%s\nthreads %d, sgemm %dx%dx%d: alone %.1f GFLOP/s, right after an OpenMP loop %.1f GFLOP/s (ratio %.2f)\n",
           ag_blas_info(), ag_get_threads(), n, n, n, best_alone, best_after, best_after / best_alone);
    free(a), free(b), free(c), free(x);
    return 0;
}
