/* m2m100.c: M2M-100's sinusoidal positions and config (see m2m100.h); the
 * network itself is bart.c's, in its M2M-100 flavour.
 *
 * The positions are fairseq's, as modeling_m2m_100.py (4.31) computes them:
 *
 *   pos[b,t] = pad + (number of non-pad tokens in ids[b, 0..t])   if ids[b,t] != pad
 *            = pad                                               otherwise
 *   emb[p]   = [sin(p f_0) .. sin(p f_{h-1}), cos(p f_0) .. cos(p f_{h-1})],
 *              f_i = exp(-i ln(10000) / (h - 1)), h = C/2;  emb[pad] = 0
 *
 * So a left- or right-padded row gives its real tokens the same positions, and
 * padding adds nothing. Hugging Face grows its table when a sequence is longer
 * than max_position_embeddings; a function needs no table, so no limit here.
 */
#include "m2m100.h"

#include <math.h>
#include <string.h>

void nn_m2m100_sinusoid(float *out, int64_t p, int C) {
    const int half = C / 2;
    /* HF: emb = log(10000) / (half_dim - 1) in double, then float32 tensors:
     * exp(arange(half) * -emb), then arange(n)[:,None] * that, then sin/cos */
    const float step = (float)(-(log(10000.0) / (double)(half - 1)));
    for (int i = 0; i < half; ++i) {
        const float f = expf((float)i * step);
        const float a = (float)p * f;
        out[i] = sinf(a);
        out[half + i] = cosf(a);
    }
    if (C % 2) out[C - 1] = 0.0f;
}

ag_tensor *nn_m2m100_positions(ag_ctx *ctx, const ag_ints *ids, int pad, int C) {
    if (!ids) return NULL;
    const int64_t B = ids->shape[0], T = ids->shape[1];
    ag_tensor *out = ag_new(ctx, 3, AG_SHAPE(B, T, C), false); /* [B,T,C], zeroed */
    if (!out) return NULL;
    for (int64_t b = 0; b < B; ++b) {
        int64_t count = 0; /* cumsum of the non-pad mask along the row */
        for (int64_t t = 0; t < T; ++t) {
            if (ids->data[b * T + t] == pad) continue; /* position pad: the zero row */
            count++;
            nn_m2m100_sinusoid(out->data + (b * T + t) * C, pad + count, C);
        }
    }
    return out;
}

ag_status nn_m2m100_config_read(const nn_config *c, nn_bart_config *cfg) {
    return nn_bart_config_read_flavour(c, true, cfg);
}
