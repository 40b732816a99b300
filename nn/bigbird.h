/* bigbird.h: BigBird (Hugging Face's BigBirdModel and BigBirdForMaskedLM,
 * modeling_big_bird.py, transformers 4.31), the encoder only.
 *
 * BigBird is BERT's post-LN encoder with one change: attention may be
 * block-sparse. The sequence is cut into blocks of block_size tokens; the
 * first and last query blocks attend to everything (global), every other
 * query block attends to
 *   - the first and the last key block (global),
 *   - a sliding window of 3 blocks (itself and its two neighbours),
 *   - num_random_blocks "random" key blocks.
 * Hugging Face draws the random blocks with np.random in training mode only;
 * in eval mode (_bigbird_block_rand_mask and _bigbird_block_rand_mask_with_head
 * return their zero-initialised adjacency lists when not self.training) every
 * random block is block 0. tapegrad always makes the eval-mode choice, so a
 * forward pass is deterministic and equals Hugging Face's model.eval(). Block 0
 * then appears 1 + num_random_blocks times in a middle row's key list, and
 * softmax over repeated keys weighs block 0 that many times over; the gather
 * form below repeats the keys as Hugging Face does, the dense reference adds
 * log(count) to those scores, which gives exactly the same probabilities.
 *
 * A sequence with seq_length <= (5 + 2*num_random_blocks)*block_size falls
 * back to full attention (with a warning on stderr, once per thread), as
 * Hugging Face does; unlike Hugging Face, the fallback holds for that call
 * only (Hugging Face switches the model to "original_full" for good). A
 * block-sparse sequence is padded to a multiple of block_size with
 * pad_token_id (attention_mask 0, token type 0) and the padding cut off the
 * output again. attention_type "original_full" is BERT's attention.
 *
 * Two forms of block-sparse attention compute the same function:
 *   - the gather form (the default), as Hugging Face computes it: the global
 *     query blocks against every key, and every other query block against its
 *     own gathered list of 5 + num_random_blocks key blocks (duplicates
 *     included), so scores and probabilities take O(T * (5+r) * block_size)
 *     memory per head instead of O(T^2);
 *   - the reference (use_dense_mask): full attention with an additive mask
 *     [B,1,T,T] (-inf outside the pattern, log(count) inside, Hugging Face's
 *     -10000 on padded keys), O(T^2) memory and time like full attention.
 *
 * Parameter names are the state_dict()'s: BigBirdModel's
 * "embeddings.word_embeddings.weight", "encoder.layer.N.attention.self.query.weight",
 * ..., "pooler.weight" (an nn.Linear itself, not pooler.dense), and
 * BigBirdForMaskedLM's the same under "bert." (it keeps the pooler) plus
 * "cls.predictions.*" with the decoder tied to the word embedding.
 */
#ifndef TAPEGRAD_NN_BIGBIRD_H
#define TAPEGRAD_NN_BIGBIRD_H

#include "bert.h"

typedef enum {
    NN_BIGBIRD_MODEL,     /* BigBirdModel: encoder and pooler */
    NN_BIGBIRD_MASKED_LM, /* BigBirdForMaskedLM: encoder, pooler (unused by the loss) and MLM head */
} nn_bigbird_head;

typedef struct nn_bigbird_config {
    int vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size;
    int max_position_embeddings, type_vocab_size, pad_token_id;
    float layer_norm_eps, initializer_range, hidden_dropout_prob, attention_probs_dropout_prob;
    nn_act act;              /* hidden_act (default gelu_new) */
    bool block_sparse;       /* attention_type "block_sparse" (default) or "original_full" */
    int block_size;          /* default 64 */
    int num_random_blocks;   /* default 3 */
    bool use_bias;           /* biases of query, key, value */
    bool rescale_embeddings; /* word embeddings * sqrt(hidden_size) (Pegasus-style checkpoints) */
    bool tie_word_embeddings;
} nn_bigbird_config;

typedef struct nn_bigbird {
    nn_bigbird_config cfg;
    nn_bigbird_head head;
    nn_embedding word, position, token_type;
    nn_norm emb_ln;
    nn_bert_layer *layer;    /* [num_hidden_layers]: BERT's layer, the same modules and names */
    nn_linear pooler;        /* pooler [C,C] */
    nn_linear transform;     /* cls.predictions.transform.dense */
    nn_norm transform_ln;    /* cls.predictions.transform.LayerNorm */
    ag_tensor *decoder_w;    /* [V,C]: the word embedding when tied */
    ag_tensor *decoder_b;    /* [V]: cls.predictions.bias */
    char prefix[8];          /* "" or "bert." */
    bool use_dense_mask;     /* block-sparse as full attention under the dense mask (the O(T^2) reference) */
} nn_bigbird;

/* Reads config.json's fields with BigBirdConfig's defaults: the BERT fields,
 * attention_type, block_size, num_random_blocks, use_bias,
 * rescale_embeddings; is_decoder and add_cross_attention must be false (the
 * encoder classes). Returns AG_OK or AG_ERR_ARG naming the file and field. */
ag_status nn_bigbird_config_read(const nn_config *c, nn_bigbird_config *cfg);

/* Declares every parameter in named_parameters() order. Returns AG_OK or the
 * registry's error. */
ag_status nn_bigbird_declare(ag_params *ps, nn_bigbird *m, const nn_bigbird_config *cfg, nn_bigbird_head head);
void nn_bigbird_free(nn_bigbird *m);
/* BigBirdPreTrainedModel._init_weights: N(0, initializer_range) for Linear
 * and Embedding weights (the padding row zero), zero biases, LayerNorm 1/0. */
void nn_bigbird_init_weights(nn_bigbird *m, uint64_t seed);
/* The MLM head's tied aliases (cls.predictions.decoder.weight -> the word
 * embedding, cls.predictions.decoder.bias -> cls.predictions.bias). Returns
 * the number written (0 for BigBirdModel). */
int nn_bigbird_aliases(const nn_bigbird *m, const char *alias[][2], int cap);

/* Whether a sequence of seq_len tokens runs block-sparse: attention_type
 * "block_sparse" and seq_len > (5 + 2*num_random_blocks)*block_size. */
bool nn_bigbird_uses_block_sparse(const nn_bigbird *m, int64_t seq_len);

/* The block-sparse pattern as an additive mask for attention over a padded
 * length T (a multiple of block_size, at least 5 blocks): mask [B,T] (1 =
 * token, 0 = padding) -> [B,1,T,T] in the arena, -inf where query i never
 * sees key j, log(number of times key j is in i's key list) where it does,
 * minus 10000 where key j is padding. Returns NULL for a T that is not such. */
ag_tensor *nn_bigbird_sparse_mask(ag_ctx *ctx, const nn_bigbird *m, const ag_ints *mask, int64_t T);

/* The encoder: ids [B,T]; token_type_ids [B,T] or NULL; attention_mask [B,T]
 * or NULL. Returns the last hidden states [B,T,C] (padding to the block size
 * removed), or NULL with ag_error() set (shapes, ids outside the vocabulary,
 * more positions than max_position_embeddings after padding). */
ag_tensor *nn_bigbird_forward(ag_ctx *ctx, const nn_bigbird *m, const ag_ints *ids, const ag_ints *token_type_ids,
                              const ag_ints *attention_mask);
/* The pooler: tanh(pooler(hidden[:,0])), [B,T,C] -> [B,C]. */
ag_tensor *nn_bigbird_pool(ag_ctx *ctx, const nn_bigbird *m, ag_tensor *hidden);
/* The MLM head: hidden [...,C] -> logits [...,V]. Errors: BigBirdModel has none. */
ag_tensor *nn_bigbird_mlm_logits(ag_ctx *ctx, const nn_bigbird *m, ag_tensor *hidden);
/* BigBirdForMaskedLM's loss: cross entropy over every position, labels [B,T],
 * -100 ignored, mean over counted ones (*n_tokens, may be NULL). Returns a
 * [1] tensor, or NULL: BigBirdModel has no loss; labels missing or mis-shaped. */
ag_tensor *nn_bigbird_loss(ag_ctx *ctx, const nn_bigbird *m, const ag_ints *ids, const ag_ints *token_type_ids,
                           const ag_ints *attention_mask, const ag_ints *labels, int64_t *n_tokens);

#endif
