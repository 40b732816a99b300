/* test_tokenizers.c: WordPiece and byte-level BPE on small committed
 * vocabularies (tests/fixtures/tokenizers/, made by make_fixtures.py), without
 * network: accents, CJK, punctuation, long words, [UNK], special tokens in
 * text, pairs, truncation, padding, invalid UTF-8, GPT-2's regex, merges by
 * rank, both tokenizer.json merge forms, decoding, training (deterministic,
 * saved and loaded back), and the errors that must name their file.
 *
 * The comparisons against the reference tokenizers on real text (GPT-2's own
 * encoder, Hugging Face's BERT) need npm and run from the scripts in tests/tokenizers/.
 */
#include "harness.h"

#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOK_DIR FIXTURE_DIR "/tokenizers"

/* The ids of `text` (no specials) must be expected[n]. */
static void expect_ids(data_tokenizer *t, const char *text, const int32_t *expected, int64_t n) {
    data_encoding e = {0};
    assert_int_equal(data_tokenizer_encode(t, text, strlen(text), 0, &e), AG_OK);
    if (e.n != n || (n > 0 && memcmp(e.ids, expected, (size_t)n * sizeof *expected) != 0)) {
        fprintf(stderr, "text \"%s\": got", text);
        for (int64_t i = 0; i < e.n; ++i) fprintf(stderr, " %d", e.ids[i]);
        fprintf(stderr, ", want");
        for (int64_t i = 0; i < n; ++i) fprintf(stderr, " %d", expected[i]);
        fprintf(stderr, "\n");
        fail();
    }
    data_encoding_free(&e);
}

#define EXPECT(t, text, ...)                                                                                          \
    do {                                                                                                              \
        const int32_t want_[] = {__VA_ARGS__};                                                                        \
        expect_ids(t, text, want_, (int64_t)(sizeof want_ / sizeof want_[0]));                                        \
    } while (0)

/* ---------------------------------------------------------------- WordPiece */

/* ids in wordpiece/vocab.txt */
enum { PAD, UNK, CLS, SEP, MASK, THE, QUICK, BROWN, FOX, HELLO, WORLD, UN, AFF, ABLE, COMMA, DOT, BANG, QMARK,
       DOLLAR, APOS, CAFE, RESUME, NAIVE, TOKYO1, TOKYO2, A, HASH_A, HASH_B, HASH_C, X, HASH_Y, IT, HASH_S, JUMP,
       HASH_ED, HASH_ING, OVER, LAZY, DOG };

static void test_wordpiece_basic(void **state) {
    data_tokenizer t;
    assert_int_equal(data_tokenizer_load(&t, TOK_DIR "/wordpiece"), AG_OK);
    assert_int_equal(t.kind, DATA_TOK_WORDPIECE);
    assert_int_equal(t.n_tokens, 39);
    assert_int_equal(t.unk_id, UNK);
    EXPECT(&t, "the quick brown fox", THE, QUICK, BROWN, FOX);
    EXPECT(&t, "unaffable", UN, AFF, ABLE);                              /* greedy longest match with ## */
    EXPECT(&t, "jumped jumping", JUMP, HASH_ED, JUMP, HASH_ING);
    EXPECT(&t, "Héllo WÖRLD, Café Résumé naïve", HELLO, WORLD, COMMA, CAFE, RESUME, NAIVE); /* lower + NFD */
    EXPECT(&t, "東京", TOKYO1, TOKYO2);                                  /* CJK split without spaces */
    EXPECT(&t, "hello,world!?", HELLO, COMMA, WORLD, BANG, QMARK);       /* punctuation split */
    EXPECT(&t, "$it's", DOLLAR, IT, APOS, UNK);                         /* "s" alone is not a word start */
    EXPECT(&t, "xyyy abc", X, HASH_Y, HASH_Y, HASH_Y, A, HASH_B, HASH_C);
    EXPECT(&t, "zebra hello", UNK, HELLO);                               /* unmatchable word */
    EXPECT(&t, "aq", UNK);                                               /* a split that fails midway */
    EXPECT(&t, "hel\x01lo\t world\r\n", HELLO, WORLD);                   /* controls dropped, \t \r \n spaces */
    EXPECT(&t, "hello\xC2\xA0world", HELLO, WORLD);                      /* U+00A0 is whitespace (Zs) */
    EXPECT(&t, "[CLS] hello[SEP]", CLS, HELLO, SEP);                     /* specials in text */
    EXPECT(&t, "[SEP][SEP]the[SEP] [MASK]", SEP, SEP, THE, SEP, MASK);
    EXPECT(&t, "", );
    /* 100 characters is a word; 101 is [UNK] */
    char word[128];
    memset(word, 'a', 101), word[101] = 0;
    EXPECT(&t, word, UNK);
    word[100] = 0;
    data_encoding e = {0};
    assert_int_equal(data_tokenizer_encode(&t, word, 100, 0, &e), AG_OK);
    assert_int_equal(e.n, 100);
    assert_int_equal(e.ids[0], A);
    assert_int_equal(e.ids[99], HASH_A);
    data_encoding_free(&e);
    data_tokenizer_free(&t);
}

static void test_wordpiece_invalid_utf8(void **state) {
    data_tokenizer t;
    assert_int_equal(data_tokenizer_load(&t, TOK_DIR "/wordpiece"), AG_OK);
    data_encoding e = {0};
    const char *text = "hello\xFF wor\xC3ld \xE6\x9D"; /* a stray byte, a cut sequence, a truncated end */
    assert_int_equal(data_tokenizer_encode(&t, text, strlen(text), 0, &e), AG_OK);
    assert_int_equal(e.n_invalid, 4);
    /* U+FFFD is dropped by BERT's clean-up, so "wor?ld" is "world" */
    assert_int_equal(e.n, 2);
    assert_int_equal(e.ids[0], HELLO);
    assert_int_equal(e.ids[1], WORLD);
    data_encoding_free(&e);
    data_tokenizer_free(&t);
}

static void test_pairs_truncation_padding(void **state) {
    data_tokenizer t;
    assert_int_equal(data_tokenizer_load(&t, TOK_DIR "/wordpiece"), AG_OK);
    data_encoding e = {0};
    data_encode_opts o = {.add_special = true};
    assert_int_equal(data_tokenizer_encode_pair(&t, "hello", "the world", o, &e), AG_OK);
    const int32_t ids[] = {CLS, HELLO, SEP, THE, WORLD, SEP}, types[] = {0, 0, 0, 1, 1, 1};
    assert_int_equal(e.n, 6);
    assert_memory_equal(e.ids, ids, sizeof ids);
    assert_memory_equal(e.type_ids, types, sizeof types);
    /* longest first: 4 + 2 + 3 specials cut to 5 leaves 1 + 1 */
    o.max_len = 5;
    assert_int_equal(data_tokenizer_encode_pair(&t, "the quick brown fox", "hello world", o, &e), AG_OK);
    const int32_t cut[] = {CLS, THE, SEP, HELLO, SEP};
    assert_int_equal(e.n, 5);
    assert_memory_equal(e.ids, cut, sizeof cut);
    /* 6 + 2 + 3 cut to 9: the longer first loses 2 */
    o.max_len = 9;
    assert_int_equal(data_tokenizer_encode_pair(&t, "the quick brown fox jumped", "hello world", o, &e), AG_OK);
    const int32_t cut2[] = {CLS, THE, QUICK, BROWN, FOX, SEP, HELLO, WORLD, SEP};
    assert_int_equal(e.n, 9);
    assert_memory_equal(e.ids, cut2, sizeof cut2);
    /* one sequence, padded */
    o.max_len = 0, o.pad_to = 6;
    assert_int_equal(data_tokenizer_encode_pair(&t, "hello world", NULL, o, &e), AG_OK);
    const int32_t pad[] = {CLS, HELLO, WORLD, SEP, PAD, PAD};
    const uint8_t mask[] = {1, 1, 1, 1, 0, 0};
    assert_int_equal(e.n, 6);
    assert_memory_equal(e.ids, pad, sizeof pad);
    assert_memory_equal(e.mask, mask, sizeof mask);
    /* too small to hold the specials */
    o.max_len = 2, o.pad_to = 0;
    assert_int_equal(data_tokenizer_encode_pair(&t, "hello", "world", o, &e), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "max_len"));
    data_encoding_free(&e);
    data_tokenizer_free(&t);
}

static void test_wordpiece_decode_and_json(void **state) {
    data_tokenizer t, u;
    assert_int_equal(data_tokenizer_load(&t, TOK_DIR "/wordpiece"), AG_OK);
    const int32_t ids[] = {CLS, HELLO, COMMA, WORLD, BANG, UN, AFF, ABLE, IT, APOS, HASH_S, SEP};
    char *s;
    assert_int_equal(data_tokenizer_decode(&t, ids, 12, true, &s), AG_OK);
    assert_string_equal(s, "hello, world! unaffable it's");
    free(s);
    assert_int_equal(data_tokenizer_decode(&t, ids, 2, false, &s), AG_OK);
    assert_string_equal(s, "[CLS] hello");
    free(s);
    const int32_t bad[] = {HELLO, 39};
    assert_int_equal(data_tokenizer_decode(&t, bad, 2, false, &s), AG_ERR_ARG);
    /* saved as tokenizer.json and loaded back: the same ids */
    char path[64];
    snprintf(path, sizeof path, "/tmp/tapegrad-wp-%d.json", (int)getpid());
    assert_int_equal(data_tokenizer_save(&t, path), AG_OK);
    assert_int_equal(data_tokenizer_load(&u, path), AG_OK);
    assert_int_equal(u.n_tokens, t.n_tokens);
    assert_int_equal(u.tpl, DATA_TPL_BERT);
    EXPECT(&u, "Héllo, unaffable 東京 world!", HELLO, COMMA, UN, AFF, ABLE, TOKYO1, TOKYO2, WORLD, BANG);
    remove(path);
    data_tokenizer_free(&u);
    data_tokenizer_free(&t);
}

/* ---------------------------------------------------------------- byte-level BPE */

/* ids in bpe/vocab.json: the 256 byte characters by code point, then the merges */
enum { B_t = 83, B_h = 71, B_e = 68, B_i = 72, B_n = 77, B_SPACE = 220, B_Gt = 256, B_he, B_Gthe, B_in, B_Gin, B_ee,
       B_EOT };

static ag_status collect(void *ctx, const char *w, size_t n) {
    char *out = ctx;
    strcat(out, "[");
    strncat(out, w, n);
    strcat(out, "]");
    return AG_OK;
}

static void test_bpe(void **state) {
    const char *paths[] = {TOK_DIR "/bpe", TOK_DIR "/bpe_pairs.json", TOK_DIR "/bpe_strings.json"};
    for (int k = 0; k < 3; ++k) {
        data_tokenizer t;
        assert_int_equal(data_tokenizer_load(&t, paths[k]), AG_OK);
        assert_int_equal(t.kind, DATA_TOK_BPE);
        assert_int_equal(t.n_merges, 6);
        assert_int_equal(t.byte_id[' '], B_SPACE);
        EXPECT(&t, "the", B_t, B_he);
        EXPECT(&t, " the", B_Gthe);
        EXPECT(&t, " in", B_Gin);
        EXPECT(&t, " tin", B_Gt, B_in);
        EXPECT(&t, "eee", B_ee, B_e);
        EXPECT(&t, "<|endoftext|> the", B_EOT, B_Gthe);
        EXPECT(&t, "\xC3\xA9", 127, 102);
        /* invalid UTF-8 becomes U+FFFD (EF BF BD), counted, and decodes as such */
        data_encoding e = {0};
        assert_int_equal(data_tokenizer_encode(&t, "a\xFFz", 3, 0, &e), AG_OK);
        assert_int_equal(e.n_invalid, 1);
        assert_int_equal(e.n, 5);
        char *s;
        assert_int_equal(data_tokenizer_decode(&t, e.ids, e.n, false, &s), AG_OK);
        assert_string_equal(s, "a\xEF\xBF\xBDz");
        free(s);
        /* any valid text decodes to itself */
        const char *text = "Hello  world,\tit's 2024!\n  Ünïcödé — 東京 <|endoftext|>";
        data_encoding_reset(&e);
        assert_int_equal(data_tokenizer_encode(&t, text, strlen(text), 0, &e), AG_OK);
        assert_int_equal(data_tokenizer_decode(&t, e.ids, e.n, false, &s), AG_OK);
        assert_string_equal(s, text);
        free(s);
        data_encoding_free(&e);
        data_tokenizer_free(&t);
    }
}

static void test_gpt2_regex(void **state) {
    data_tokenizer t;
    assert_int_equal(data_tokenizer_load(&t, TOK_DIR "/bpe"), AG_OK);
    char out[512] = "";
    const char *text = "Hello world, it's  a test 123!!\n\nWe'll café\xC2\xA0x";
    assert_int_equal(data_bpe_pretokenize(&t, text, strlen(text), collect, out), AG_OK);
    /* \s+(?!\S) leaves the last space of a run to the next word, and a lone
     * newline before a word to \s+; no-break space is \s, but " ?" is ASCII */
    assert_string_equal(out, "[Hello][ world][,][ it]['s][ ][ a][ test][ 123][!!][\n][\n][We]['ll][ café][\xC2\xA0][x]");
    data_tokenizer_free(&t);
}

/* ---------------------------------------------------------------- training */

static char corpus[64];

static void write_corpus(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *TEXT = "the cat sat on the mat. the dog sat on the log!\n"
                          "The cats and the dogs; Höhe \xFF naïve. 東京 the the there then\n";

static void test_train(void **state) {
    snprintf(corpus, sizeof corpus, "/tmp/tapegrad-corpus-%d.txt", (int)getpid());
    write_corpus(corpus, TEXT);
    const char *in[] = {corpus};
    for (int kind = 0; kind < 2; ++kind) {
        data_train_opts o = {.kind = kind ? DATA_TOK_BPE : DATA_TOK_WORDPIECE, .vocab_size = kind ? 280 : 60,
                             .lowercase = true, .quiet = true};
        data_tokenizer a, b, c;
        assert_int_equal(data_tokenizer_train(&a, in, 1, o), AG_OK);
        assert_int_equal(data_tokenizer_train(&b, in, 1, o), AG_OK);
        assert_true(a.n_tokens <= o.vocab_size); /* fewer when every word is already one token */
        assert_true(a.n_tokens > (kind ? 257 : 40));
        for (int32_t i = 0; i < a.n_tokens; ++i) assert_string_equal(a.tokens[i], b.tokens[i]); /* deterministic */
        /* the most frequent word became one token */
        int32_t the = data_tokenizer_id(&a, kind ? "Ġthe" : "the");
        assert_true(the >= 0);
        EXPECT(&a, kind ? " the" : "the", the);
        /* saved, loaded back: the same ids; BPE decodes back to the text */
        char path[64];
        snprintf(path, sizeof path, "/tmp/tapegrad-trained-%d.json", (int)getpid());
        assert_int_equal(data_tokenizer_save(&a, path), AG_OK);
        assert_int_equal(data_tokenizer_load(&c, path), AG_OK);
        remove(path);
        data_encoding ea = {0}, ec = {0};
        const char *s = "the cats sat there. naïve";
        assert_int_equal(data_tokenizer_encode(&a, s, strlen(s), 0, &ea), AG_OK);
        assert_int_equal(data_tokenizer_encode(&c, s, strlen(s), 0, &ec), AG_OK);
        assert_int_equal(ea.n, ec.n);
        assert_memory_equal(ea.ids, ec.ids, (size_t)ea.n * sizeof *ea.ids);
        char *d;
        assert_int_equal(data_tokenizer_decode(&c, ec.ids, ec.n, false, &d), AG_OK);
        assert_string_equal(d, kind ? s : "the cats sat there. naive");
        free(d);
        data_encoding_free(&ea), data_encoding_free(&ec);
        data_tokenizer_free(&a), data_tokenizer_free(&b), data_tokenizer_free(&c);
    }
    remove(corpus);
}

/* ---------------------------------------------------------------- errors name the file */

static void test_errors(void **state) {
    data_tokenizer t;
    assert_int_equal(data_tokenizer_load(&t, "/nonexistent/tok.json"), AG_ERR_IO);
    assert_non_null(strstr(ag_error(), "/nonexistent/tok.json"));
    assert_int_equal(data_tokenizer_load(&t, TOK_DIR "/bad.json"), AG_ERR_IO);
    assert_non_null(strstr(ag_error(), "bad.json"));
    assert_non_null(strstr(ag_error(), "not valid JSON"));
    assert_int_equal(data_tokenizer_load(&t, TOK_DIR), AG_ERR_IO); /* a folder with no vocabulary */
    assert_non_null(strstr(ag_error(), "vocab.txt"));

    /* a folder with vocab.json but no merges.txt */
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/tapegrad-tokerr-%d", (int)getpid());
    assert_int_equal(ag_make_dirs(dir), AG_OK);
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    write_corpus(path, "{\"a\": 0, \"b\": 1}");
    assert_int_equal(data_tokenizer_load(&t, dir), AG_ERR_IO);
    assert_non_null(strstr(ag_error(), "merges.txt"));
    /* a merge of tokens the vocabulary lacks names the line */
    char merges[128];
    snprintf(merges, sizeof merges, "%s/merges.txt", dir);
    write_corpus(merges, "#version: 0.2\na b\n");
    assert_int_equal(data_tokenizer_load(&t, dir), AG_ERR_IO);
    assert_non_null(strstr(ag_error(), "merges.txt line 2"));
    remove(merges);
    /* malformed model fields */
    write_corpus(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}");
    assert_int_equal(data_tokenizer_load(&t, path), AG_ERR_IO);
    assert_non_null(strstr(ag_error(), "model.merges[0]"));
    write_corpus(path, "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 5}}}");
    assert_int_equal(data_tokenizer_load(&t, path), AG_ERR_IO);
    assert_non_null(strstr(ag_error(), "vocab.json"));
    remove(path);

    /* an empty corpus, and a missing one */
    snprintf(path, sizeof path, "%s/empty.txt", dir);
    write_corpus(path, "");
    const char *in[] = {path};
    data_train_opts o = {.kind = DATA_TOK_BPE, .vocab_size = 300, .quiet = true};
    assert_int_equal(data_tokenizer_train(&t, in, 1, o), AG_ERR_IO);
    assert_non_null(strstr(ag_error(), "empty.txt"));
    remove(path);
    assert_int_equal(data_tokenizer_train(&t, in, 1, o), AG_ERR_IO);
    assert_non_null(strstr(ag_error(), "empty.txt"));
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wordpiece_basic),          cmocka_unit_test(test_wordpiece_invalid_utf8),
        cmocka_unit_test(test_pairs_truncation_padding), cmocka_unit_test(test_wordpiece_decode_and_json),
        cmocka_unit_test(test_bpe),                      cmocka_unit_test(test_gpt2_regex),
        cmocka_unit_test(test_train),                    cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
