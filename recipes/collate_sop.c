/* collate_sop.c: ALBERT's sentence-order prediction, transcribed from
 * create_instances_from_document in google-research/albert's
 * create_pretraining_data.py with random_next_sentence = False: A and B are
 * two consecutive segments of one document (the chunk split at a random
 * sentence, as BERT's), and with next_sentence_prob = 0.5 they are swapped;
 * sentence_order_label = 1 for swapped, 0 for the document's order, as
 * AlbertForPreTraining reads it. A chunk of a single sentence still takes B
 * from another document with label 1, as the script does. The pair builder
 * is BERT's and is in collate_nsp.c. The MLM is the script's own
 * create_masked_lm_predictions: n-grams of up to max_ngram = 3 units (whole
 * words with whole_word_mask, ALBERT's do_whole_word_mask), P(n) = 6/11,
 * 3/11, 2/11, within num_to_predict = min(max_predictions, max(1,
 * round(0.15 n))) (collate_ngram_row in collate_mlm.c); masking =
 * RECIPE_MASK_TOKENS gives BERT's token-level masking instead. */
#include "collate_internal.h"

ag_status recipe_collate_sop(recipe_batch *out, const recipe_corpus *c, const recipe_collate_config *cfg, int B, int T,
                             uint64_t seed, uint64_t index) {
    return collate_pairs(out, c, cfg, B, T, seed, index, true);
}
