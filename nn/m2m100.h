/* m2m100.h: M2M-100 (Hugging Face's M2M100Model and
 * M2M100ForConditionalGeneration), the many-to-many translation model.
 *
 * The network is BART's (bart.h) in its M2M-100 flavour: pre-LN layers with a
 * final layer_norm in the encoder and the decoder, no layernorm_embedding, no
 * final_logits_bias, embeddings scaled by sqrt(d_model), the LM head tied to
 * model.shared, and fixed sinusoidal positions that skip padding. Language-id
 * tokens ("__en__", "__es__") are ordinary tokens of the vocabulary: forcing
 * one at the start of the decoder is generation's job, not the model's.
 * This file holds what is M2M-100's own: its config defaults and its
 * positions. The model is an nn_bart with cfg.m2m100 set.
 */
#ifndef TAPEGRAD_NN_M2M100_H
#define TAPEGRAD_NN_M2M100_H

#include "bart.h"

/* Reads M2M100Config's fields (the same names as BartConfig's; defaults of
 * facebook/m2m100_418M: d_model 1024, 12+12 layers, 16 heads, ffn 4096,
 * vocab 128112, relu, scale_embedding true, pad 1, decoder start 2) with
 * cfg->m2m100 set. Errors name the file and the field. */
ag_status nn_m2m100_config_read(const nn_config *c, nn_bart_config *cfg);

/* M2M100SinusoidalPositionalEmbedding.get_embedding, one row: position p ->
 * out [C]: out[i] = sin(p * f_i), out[half + i] = cos(p * f_i) with
 * half = C/2, f_i = exp(-i * ln(10000) / (half - 1)), an odd C's last entry 0,
 * computed in float32 as Hugging Face does. The padding row (p = pad) is all
 * zeros; that is the caller's to apply (see nn_m2m100_positions). */
void nn_m2m100_sinusoid(float *out, int64_t p, int C);

/* The position embeddings of ids [B,T]: create_position_ids_from_input_ids
 * (cumsum(ids != pad) * (ids != pad) + pad, so real tokens count from pad + 1
 * and padding stays at pad, whose row is zero), looked up in the sinusoid
 * table. Returns a constant [B,T,C] tensor in the arena (no gradient: the
 * table is a buffer), or NULL with an error. */
ag_tensor *nn_m2m100_positions(ag_ctx *ctx, const ag_ints *ids, int pad, int C);

#endif
