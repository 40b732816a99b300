/* test_unigram.c: the Unigram (SentencePiece) tokenizer against spm_encode.
 *
 * Fixtures (tests/fixtures/unigram/, made by tests/tokenizers/make_unigram_fixtures.sh
 * with Debian's sentencepiece 0.1.97): two tiny models trained by spm_train on
 * 20 KB of the State of the Union corpus (tiny.model: nmt_nfkc; tiny_bytes.model:
 * identity normalisation with byte fallback), the test lines cases.txt (NFKC
 * ligatures and full-width letters, tabs and runs of spaces, CJK and emoji that
 * the models do not know, invalid UTF-8, empty and blank lines), spm_encode's
 * ids for every line, and a tokenizer.json equivalent to tiny_bytes.model.
 * The bigger comparison (4 MB of training text, 25k held-out lines, throughput)
 * is tests/tokenizers/compare_spm.sh.
 */
#include "harness.h"

#include "data/unigram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UG_DIR FIXTURE_DIR "/unigram"
#include "tokenizer.h"

/* Reads a whole file into a NUL-terminated buffer. */
static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long m = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)m + 1);
    *n = fread(b, 1, (size_t)m, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

/* Splits buf in place into lines (without their '\n'); returns how many. */
static int split_lines(char *buf, size_t n, char **lines, int max) {
    int k = 0;
    for (char *p = buf; p < buf + n && k < max;) {
        char *nl = memchr(p, '\n', (size_t)(buf + n - p));
        if (nl) *nl = 0;
        lines[k++] = p;
        p = nl ? nl + 1 : buf + n;
    }
    return k;
}

static data_unigram *load(const char *path) {
    data_unigram *u = NULL;
    if (data_unigram_load(&u, path) != AG_OK) fail_msg("%s", ag_error());
    return u;
}

/* Every line of cases.txt encodes to spm_encode's ids. */
static void check_against_spm(data_unigram *u, const char *ids_path) {
    size_t nc, ni;
    char *cases = slurp(UG_DIR "/cases.txt", &nc), *ids = slurp(ids_path, &ni);
    char *cl[64], *il[64];
    int n = split_lines(cases, nc, cl, 64), m = split_lines(ids, ni, il, 64);
    assert_int_equal(n, m);
    for (int i = 0; i < n; ++i) {
        int32_t *got;
        int64_t k;
        assert_int_equal(data_unigram_encode(u, cl[i], strlen(cl[i]), &got, &k), AG_OK);
        int64_t j = 0;
        char *p = il[i];
        for (;; ++j) {
            char *q;
            long want = strtol(p, &q, 10);
            if (q == p) break;
            p = q;
            if (j >= k || got[j] != want)
                fail_msg("%s line %d (\"%s\"): id %lld is %d, spm_encode gives %ld", ids_path, i + 1, cl[i],
                         (long long)j, j < k ? got[j] : -1, want);
        }
        if (j != k) fail_msg("%s line %d: %lld ids, spm_encode gives %lld", ids_path, i + 1, (long long)k, (long long)j);
        free(got);
    }
    free(cases);
    free(ids);
}

static void test_ids_match_spm_encode(void **state) {
    data_unigram *u = load(UG_DIR "/tiny.model");
    assert_int_equal(data_unigram_vocab_size(u), 300);
    assert_string_equal(data_unigram_piece(u, 0), "<unk>");
    assert_int_equal(data_unigram_piece_type(u, 1), DATA_UNIGRAM_CONTROL);
    check_against_spm(u, UG_DIR "/tiny.ids");
    data_unigram_free(u);
}

static void test_byte_fallback_matches_spm_encode(void **state) {
    data_unigram *u = load(UG_DIR "/tiny_bytes.model");
    assert_int_equal(data_unigram_piece_type(u, data_unigram_piece_to_id(u, "<0x41>")), DATA_UNIGRAM_BYTE);
    check_against_spm(u, UG_DIR "/tiny_bytes.ids");
    data_unigram_free(u);
}

/* The tokenizer.json of the same model gives the same ids. */
static void test_tokenizer_json_matches(void **state) {
    data_unigram *u = load(UG_DIR "/tiny_bytes.tokenizer.json");
    assert_int_equal(data_unigram_vocab_size(u), 400);
    check_against_spm(u, UG_DIR "/tiny_bytes.ids");
    data_unigram_free(u);
}

static void encode_str(data_unigram *u, const char *s, int32_t **ids, int64_t *n) {
    assert_int_equal(data_unigram_encode(u, s, strlen(s), ids, n), AG_OK);
}

static void test_whitespace(void **state) {
    data_unigram *u = load(UG_DIR "/tiny.model");
    /* Leading, trailing and repeated blanks (tabs included) all vanish into one "▁". */
    int32_t *a, *b;
    int64_t na, nb;
    encode_str(u, "the Union", &a, &na);
    encode_str(u, "  \tthe \t  Union\t ", &b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof *a);
    /* The dummy prefix: the first piece starts with "▁". */
    assert_memory_equal(data_unigram_piece(u, a[0]), "\xe2\x96\x81", 3);
    char *s;
    size_t n;
    assert_int_equal(data_unigram_normalize(u, "  a \t b  ", 9, &s, &n, NULL), AG_OK);
    assert_string_equal(s, "\xe2\x96\x81" "a" "\xe2\x96\x81" "b");
    free(s);
    /* NFKC: the ligature "ﬁ" is "fi", full-width "Ａ" is "A". */
    assert_int_equal(data_unigram_normalize(u, "\xef\xac\x81 \xef\xbc\xa1", 7, &s, &n, NULL), AG_OK);
    assert_string_equal(s, "\xe2\x96\x81" "fi" "\xe2\x96\x81" "A");
    free(s);
    free(a), free(b);
    data_unigram_free(u);
}

static void test_unknowns(void **state) {
    data_unigram *u = load(UG_DIR "/tiny.model");
    int unk = data_unigram_unk_id(u);
    int32_t *ids;
    int64_t n;
    /* Three unknown characters in a row are one <unk>, as in SentencePiece. */
    encode_str(u, "a\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" "b", &ids, &n);
    int n_unk = 0;
    for (int64_t i = 0; i < n; ++i) n_unk += ids[i] == unk;
    assert_int_equal(n_unk, 1);
    char *text;
    assert_int_equal(data_unigram_decode(u, ids, n, &text), AG_OK);
    assert_string_equal(text, "a \xe2\x81\x87 b"); /* "a ⁇ b", as spm_decode */
    free(text), free(ids);
    /* Invalid UTF-8 is replaced (U+FFFD, one per byte) and counted, not fatal. */
    char *s;
    size_t sn;
    int64_t bad = 0;
    assert_int_equal(data_unigram_normalize(u, "a\xff\xfe", 3, &s, &sn, &bad), AG_OK);
    assert_int_equal(bad, 2);
    assert_string_equal(s, "\xe2\x96\x81" "a\xef\xbf\xbd\xef\xbf\xbd");
    free(s);
    data_unigram_free(u);
    /* With byte fallback an unknown character is its UTF-8 bytes, and decodes back. */
    u = load(UG_DIR "/tiny_bytes.model");
    encode_str(u, "tax \xe6\x97\xa5", &ids, &n);
    assert_int_equal(ids[n - 1], data_unigram_piece_to_id(u, "<0xA5>"));
    assert_int_equal(data_unigram_decode(u, ids, n, &text), AG_OK);
    assert_string_equal(text, "tax \xe6\x97\xa5");
    free(text), free(ids);
    data_unigram_free(u);
}

static void test_decode_round_trip(void **state) {
    data_unigram *u = load(UG_DIR "/tiny.model");
    const char *s = "The Congress of the United States must act on these measures.";
    int32_t *ids;
    int64_t n;
    encode_str(u, s, &ids, &n);
    char *text;
    assert_int_equal(data_unigram_decode(u, ids, n, &text), AG_OK);
    assert_string_equal(text, s);
    free(text);
    /* An id outside the vocabulary is an error that gives its position. */
    ids[1] = 100000;
    assert_int_equal(data_unigram_decode(u, ids, n, &text), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "position 1"));
    free(ids);
    data_unigram_free(u);
}

static void test_empty_input(void **state) {
    data_unigram *u = load(UG_DIR "/tiny.model");
    int32_t *ids = (int32_t *)&ids;
    int64_t n = -1;
    encode_str(u, "", &ids, &n);
    assert_int_equal(n, 0);
    assert_null(ids);
    encode_str(u, " \t  ", &ids, &n);
    assert_int_equal(n, 0);
    char *text;
    assert_int_equal(data_unigram_decode(u, NULL, 0, &text), AG_OK);
    assert_string_equal(text, "");
    free(text);
    data_unigram_free(u);
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void expect_load_error(const char *path, ag_status want, const char *words) {
    data_unigram *u = (data_unigram *)&u;
    assert_int_equal(data_unigram_load(&u, path), want);
    assert_null(u);
    if (!strstr(ag_error(), path) || !strstr(ag_error(), words))
        fail_msg("error for %s does not say '%s' and name the file: %s", path, words, ag_error());
}

static void test_malformed_files(void **state) {
    char dir[] = "/tmp/test_unigram_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    /* A missing file. */
    snprintf(path, sizeof path, "%s/missing.model", dir);
    expect_load_error(path, AG_ERR_IO, "cannot open");
    /* A truncated .model: the protobuf ends inside a piece. */
    size_t n;
    char *model = slurp(UG_DIR "/tiny_bytes.model", &n);
    snprintf(path, sizeof path, "%s/truncated.model", dir);
    write_file(path, model, 1001);
    expect_load_error(path, AG_ERR_ARG, "SentencePiece");
    /* Not a protobuf at all. */
    snprintf(path, sizeof path, "%s/garbage.model", dir);
    write_file(path, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
    expect_load_error(path, AG_ERR_ARG, "not a SentencePiece");
    /* An empty file. */
    snprintf(path, sizeof path, "%s/empty.model", dir);
    write_file(path, "", 0);
    expect_load_error(path, AG_ERR_ARG, "empty");
    /* Malformed and non-Unigram tokenizer.json. */
    snprintf(path, sizeof path, "%s/bad.json", dir);
    write_file(path, "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", ", 45);
    expect_load_error(path, AG_ERR_ARG, "malformed JSON");
    snprintf(path, sizeof path, "%s/bpe.json", dir);
    const char *bpe = "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}";
    write_file(path, bpe, strlen(bpe));
    expect_load_error(path, AG_ERR_ARG, "not \"Unigram\"");
    snprintf(path, sizeof path, "%s/nounk.json", dir);
    const char *nounk = "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}}";
    write_file(path, nounk, strlen(nounk));
    expect_load_error(path, AG_ERR_ARG, "unk_id");
    free(model);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Training on the 20 KB corpus: deterministic, loads back after saving,
 * and segments held-out text so that it decodes to itself. */
static void test_train(void **state) {
    const char *inputs[] = {UG_DIR "/corpus.txt"};
    data_unigram_train_opts o = data_unigram_train_defaults(250);
    data_unigram *a, *b;
    if (data_unigram_train(&a, inputs, 1, &o) != AG_OK) fail_msg("%s", ag_error());
    assert_int_equal(data_unigram_train(&b, inputs, 1, &o), AG_OK);
    assert_int_equal(data_unigram_vocab_size(a), 250);
    for (int i = 0; i < 250; ++i) {
        assert_string_equal(data_unigram_piece(a, i), data_unigram_piece(b, i));
        assert_true(data_unigram_score(a, i) == data_unigram_score(b, i));
    }
    assert_string_equal(data_unigram_piece(a, 0), "<unk>");
    char path[] = "/tmp/test_unigram_train_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(data_unigram_save(a, path), AG_OK);
    data_unigram *c = load(path);
    unlink(path);
    const char *s = "The Congress must act to protect the freedom of every American.";
    int32_t *ia, *ic;
    int64_t na, nc;
    encode_str(a, s, &ia, &na);
    encode_str(c, s, &ic, &nc);
    assert_int_equal(na, nc);
    assert_memory_equal(ia, ic, (size_t)na * sizeof *ia);
    assert_true(na < (int64_t)strlen(s) / 2); /* real pieces, not characters */
    char *text;
    assert_int_equal(data_unigram_decode(c, ic, nc, &text), AG_OK);
    assert_string_equal(text, s);
    free(text), free(ia), free(ic);
    data_unigram_free(a), data_unigram_free(b), data_unigram_free(c);
    /* An empty corpus and a missing file are errors naming the file. */
    const char *empty[] = {"/dev/null"};
    assert_int_equal(data_unigram_train(&a, empty, 1, &o), AG_ERR_ARG);
    assert_non_null(strstr(ag_error(), "/dev/null"));
    const char *missing[] = {"/nonexistent/corpus.txt"};
    assert_int_equal(data_unigram_train(&a, missing, 1, &o), AG_ERR_IO);
    assert_non_null(strstr(ag_error(), "/nonexistent/corpus.txt"));
}

/* ---------------------------------------------------------------- behind tokenizer.h */

/* The common interface gives the Unigram model's own ids (so spm_encode's) on
 * every case, for a .model and a tokenizer.json alike. */
static void check_common_equals_direct(data_tokenizer *t, data_unigram *u) {
    size_t nc;
    char *cases = slurp(UG_DIR "/cases.txt", &nc);
    char *cl[64];
    int n = split_lines(cases, nc, cl, 64);
    int64_t invalid = 0;
    for (int i = 0; i < n; ++i) {
        int32_t *want;
        int64_t k;
        assert_int_equal(data_unigram_encode(u, cl[i], strlen(cl[i]), &want, &k), AG_OK);
        data_encoding e = {0};
        assert_int_equal(data_tokenizer_encode(t, cl[i], strlen(cl[i]), 0, &e), AG_OK);
        if (e.n != k || (k && memcmp(e.ids, want, (size_t)k * sizeof *want)))
            fail_msg("%s: case %d (\"%s\") differs from data_unigram_encode", t->source, i + 1, cl[i]);
        invalid += e.n_invalid;
        data_encoding_free(&e);
        free(want);
    }
    assert_true(invalid > 0); /* cases.txt holds invalid UTF-8, replaced and counted */
    free(cases);
}

static void test_common_interface(void **state) {
    (void)state;
    const char *paths[] = {UG_DIR "/tiny.model", UG_DIR "/tiny_bytes.model", UG_DIR "/tiny_bytes.tokenizer.json"};
    const char *models[] = {UG_DIR "/tiny.model", UG_DIR "/tiny_bytes.model", UG_DIR "/tiny_bytes.model"};
    for (int p = 0; p < 3; ++p) {
        data_tokenizer t;
        if (data_tokenizer_load(&t, paths[p]) != AG_OK) fail_msg("%s", ag_error());
        assert_int_equal(t.kind, DATA_TOK_UNIGRAM);
        data_unigram *u = load(models[p]);
        assert_int_equal(t.n_tokens, data_unigram_vocab_size(u));
        check_common_equals_direct(&t, u);
        /* decode through the interface */
        data_encoding e = {0};
        const char *s = "The Congress shall make no law.";
        assert_int_equal(data_tokenizer_encode(&t, s, strlen(s), 0, &e), AG_OK);
        char *text;
        assert_int_equal(data_tokenizer_decode(&t, e.ids, e.n, true, &text), AG_OK);
        assert_string_equal(text, s);
        free(text);
        /* pairs: truncation longest-first, then padding refused without a <pad> piece */
        data_encode_opts o = {.add_special = true, .max_len = 6};
        assert_int_equal(data_tokenizer_encode_pair(&t, s, "and the people", o, &e), AG_OK);
        assert_int_equal(e.n, 6);
        o.pad_to = 10;
        assert_int_equal(data_tokenizer_encode_pair(&t, s, NULL, o, &e), AG_ERR_ARG);
        assert_non_null(strstr(ag_error(), paths[p]));
        /* "</s>" written in the text: text for a .model (spm_encode), the id for a tokenizer.json */
        data_encoding_reset(&e);
        assert_int_equal(data_tokenizer_encode(&t, "a</s>", 5, 0, &e), AG_OK);
        bool has_eos = false;
        for (int64_t i = 0; i < e.n; ++i) has_eos |= e.ids[i] == data_tokenizer_id(&t, "</s>");
        assert_int_equal(has_eos, p == 2);
        data_encoding_free(&e);
        data_unigram_free(u);
        data_tokenizer_free(&t);
    }
}

/* A .model saved as a tokenizer.json (the precompiled rule table in base64)
 * reads back to the same ids. */
static void test_save_json_round_trip(void **state) {
    (void)state;
    data_tokenizer t, r;
    assert_int_equal(data_tokenizer_load(&t, UG_DIR "/tiny.model"), AG_OK);
    char path[] = "/tmp/tg_unigram_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    if (data_tokenizer_save(&t, path) != AG_OK) fail_msg("%s", ag_error());
    if (data_tokenizer_load(&r, path) != AG_OK) fail_msg("%s", ag_error());
    assert_int_equal(r.kind, DATA_TOK_UNIGRAM);
    check_common_equals_direct(&r, t.ext.impl);
    data_tokenizer_free(&t), data_tokenizer_free(&r);
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_match_spm_encode),
        cmocka_unit_test(test_byte_fallback_matches_spm_encode),
        cmocka_unit_test(test_tokenizer_json_matches),
        cmocka_unit_test(test_whitespace),
        cmocka_unit_test(test_unknowns),
        cmocka_unit_test(test_decode_round_trip),
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_train),
        cmocka_unit_test(test_common_interface),
        cmocka_unit_test(test_save_json_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
