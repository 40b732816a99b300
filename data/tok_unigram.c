/* tok_unigram.c: the Unigram model (unigram.c) behind the common tokenizer
 * interface of tokenizer.h.
 *
 * What it is: the bridge that lets a SentencePiece .model or a Unigram
 * tokenizer.json load through data_tokenizer_load like WordPiece and BPE do.
 * The pieces become the shared vocabulary (data_tokenizer.tokens), so special
 * tokens, pairs, truncation, padding and the shard writer work unchanged; the
 * segmentation itself (normalise, Viterbi) stays in unigram.c and is reached
 * through the data_tok_ext hooks below.
 *
 * One difference between the two file kinds, on purpose: a tokenizer.json is
 * read as Hugging Face reads it (special tokens written in the text, "</s>",
 * are cut out and mapped to their ids), while a .model file is read as
 * spm_encode reads it (the text "</s>" is just text), so `tapegrad tokenizer
 * encode --tokenizer x.model` prints exactly spm_encode's ids. */
#include "tokenizer.h"
#include "unigram_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the hooks */

static ag_status ug_encode_hook(data_tokenizer *t, const char *text, size_t len, data_encoding *out) {
    int32_t *ids = NULL;
    int64_t n = 0;
    ag_status st = data_unigram_encode(t->ext.impl, text, len, &ids, &n);
    for (int64_t i = 0; !st && i < n; ++i) st = data_encoding_push(out, ids[i], 0, 1);
    free(ids);
    return st;
}

static ag_status ug_decode_hook(const data_tokenizer *t, const int32_t *ids, int64_t n, bool skip_special,
                                char **out) {
    int32_t *keep = malloc((size_t)(n ? n : 1) * sizeof *keep);
    if (!keep) return ag_fail(AG_ERR_MEMORY, "decode %s: out of memory", t->source);
    int64_t k = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (ids[i] < 0 || ids[i] >= t->n_tokens) {
            free(keep);
            return ag_fail(AG_ERR_ARG, "decode %s: id %d at position %lld is outside the vocabulary of %d",
                           t->source, ids[i], (long long)i, t->n_tokens);
        }
        if (!(skip_special && data_tokenizer_is_special(t, ids[i]))) keep[k++] = ids[i];
    }
    ag_status st = data_unigram_decode(t->ext.impl, keep, k, out);
    free(keep);
    return st;
}

static char *base64_encode(const uint8_t *b, size_t n) {
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *s = malloc(4 * ((n + 2) / 3) + 1), *p = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        *p++ = alpha[v >> 18 & 63], *p++ = alpha[v >> 12 & 63];
        *p++ = i + 1 < n ? alpha[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? alpha[v & 63] : '=';
    }
    *p = 0;
    return s;
}

/* Hugging Face's layout for a SentencePiece Unigram model:
 *   "normalizer": Sequence[Precompiled(charsmap) or NFKC, Replace(" {2,}" -> " ")],
 *   "pre_tokenizer": Metaspace("▁", add_prefix_space), "decoder": Metaspace,
 *   "model": {"type": "Unigram", "unk_id", "vocab": [[piece, score], ...], "byte_fallback"}. */
static ag_status ug_save_json_hook(const data_tokenizer *t, void *cjson_root) {
    const data_unigram *u = t->ext.impl;
    cJSON *root = cjson_root;
    cJSON *seq = cJSON_AddObjectToObject(root, "normalizer");
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON *list = cJSON_AddArrayToObject(seq, "normalizers");
    if (u->charsmap) {
        char *b64 = base64_encode(u->charsmap, 4 + 4 * u->trie_units + u->norm_strings_n);
        if (!b64) return ag_fail(AG_ERR_MEMORY, "tokenizer %s: out of memory", t->source);
        cJSON *pc = cJSON_CreateObject();
        cJSON_AddStringToObject(pc, "type", "Precompiled");
        cJSON_AddStringToObject(pc, "precompiled_charsmap", b64);
        cJSON_AddItemToArray(list, pc);
        free(b64);
    } else if (u->nfkc_by_utf8proc) {
        cJSON *nf = cJSON_CreateObject();
        cJSON_AddStringToObject(nf, "type", "NFKC");
        cJSON_AddItemToArray(list, nf);
    }
    if (u->remove_extra_ws) {
        cJSON *rp = cJSON_CreateObject();
        cJSON_AddStringToObject(rp, "type", "Replace");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(rp, "pattern"), "String", " {2,}");
        cJSON_AddStringToObject(rp, "content", " ");
        cJSON_AddItemToArray(list, rp);
    }
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "Metaspace");
    cJSON_AddStringToObject(pre, "replacement", "\xE2\x96\x81");
    cJSON_AddBoolToObject(pre, "add_prefix_space", u->add_dummy_prefix);
    if (t->tpl == DATA_TPL_BERT) { /* ALBERT: [CLS] A [SEP] B [SEP] */
        cJSON *p = cJSON_AddObjectToObject(root, "post_processor");
        cJSON_AddStringToObject(p, "type", "BertProcessing");
    }
    cJSON *d = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(d, "type", "Metaspace");
    cJSON_AddStringToObject(d, "replacement", "\xE2\x96\x81");
    cJSON_AddBoolToObject(d, "add_prefix_space", u->add_dummy_prefix);
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "Unigram");
    cJSON_AddNumberToObject(model, "unk_id", u->unk_id);
    cJSON *vocab = cJSON_AddArrayToObject(model, "vocab");
    for (int i = 0; i < u->n; ++i) {
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(data_unigram_piece(u, i)));
        cJSON_AddItemToArray(pair, cJSON_CreateNumber(u->score[i]));
        cJSON_AddItemToArray(vocab, pair);
    }
    cJSON_AddBoolToObject(model, "byte_fallback", u->byte_fallback);
    return AG_OK;
}

static void ug_free_hook(void *impl) { data_unigram_free(impl); }

/* ---------------------------------------------------------------- attaching */

ag_status data_tokenizer_attach_unigram(data_tokenizer *t, data_unigram *u, bool literal_specials) {
    t->kind = DATA_TOK_UNIGRAM;
    t->ext = (data_tok_ext){.encode = ug_encode_hook, .decode = ug_decode_hook, .save_json = ug_save_json_hook,
                            .free = ug_free_hook, .impl = u};
    t->literal_specials = literal_specials;
    int n = data_unigram_vocab_size(u);
    for (int i = 0; i < n; ++i) {
        const char *p = data_unigram_piece(u, i);
        if (data_strmap_get(&t->vocab, p, strlen(p)) >= 0) /* cannot happen in a valid model; keep ids aligned */
            return ag_fail(AG_ERR_IO, "tokenizer %s: piece \"%s\" appears twice", t->source, p);
        if (data_tokenizer_add_token(t, p, strlen(p)) < 0) return AG_ERR_MEMORY;
    }
    /* control pieces (<s>, </s>, <pad>, [CLS]...) and <unk> are the special tokens */
    for (int i = 0; i < n; ++i) {
        data_unigram_type ty = data_unigram_piece_type(u, i);
        if (ty == DATA_UNIGRAM_CONTROL || ty == DATA_UNIGRAM_UNKNOWN) {
            ag_status st = data_tokenizer_add_special(t, i);
            if (st) return st;
        }
    }
    data_tokenizer_find_specials(t);
    t->unk_id = data_unigram_unk_id(u);
    /* ALBERT frames pairs as BERT does; T5 and XLM-R models loaded from .model
     * get no template (a tokenizer.json's post_processor overrides this) */
    t->tpl = data_tokenizer_id(t, "[CLS]") >= 0 && data_tokenizer_id(t, "[SEP]") >= 0 ? DATA_TPL_BERT
                                                                                     : DATA_TPL_NONE;
    return AG_OK;
}
