/* test_prepare.c: `tapegrad prepare` (data_prepare) and the stream loader.
 *
 * Corpus: the 20 KB of State of the Union text in fixtures/unigram/corpus.txt,
 * cut into small files here, plus hand-written files whose sentences and
 * documents are known. For each tokenizer kind (bytes; WordPiece and BPE
 * trained here on the corpus; Unigram from fixtures/unigram/tiny.model):
 *   - every document's ids in the shards are its direct encoding plus the
 *     separator, in corpus order across the train and val splits;
 *   - sentence and document boundaries fall where the rule in data.h says;
 *   - the compressed shards are smaller than the raw ids.
 * Then the loader: it resumes at the exact batch after a restart (packed and
 * padded modes, at positions inside an epoch and across the epoch boundary),
 * each epoch reads every token once; and the errors: empty corpus, missing
 * file, malformed tokenizer.json, truncated and corrupt shards, all naming the
 * file; invalid UTF-8 counted. */
#include "harness.h"

#include "data/data.h"
#include "data/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CORPUS FIXTURE_DIR "/unigram/corpus.txt"

static char g_dir[64];                    /* a fresh temporary folder for the whole run */
static char g_files[6][128];              /* the corpus files */
static const char *g_inputs[6];
static char g_wp[160], g_bpe[160];        /* trained tokenizers */
static const char *UNIGRAM = FIXTURE_DIR "/unigram/tiny.model";

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

static void write_file(const char *path, const char *text, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
}

/* Five files from the corpus (4 KB each, cut at line ends) and one with
 * invalid UTF-8; trains a WordPiece and a BPE tokenizer on the corpus. */
static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/tg_prepare_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    size_t n;
    char *text = slurp(CORPUS, &n);
    size_t at = 0;
    for (int i = 0; i < 5; ++i) {
        size_t end = at + 4000 < n ? at + 4000 : n;
        while (end < n && text[end - 1] != '\n') ++end;
        snprintf(g_files[i], sizeof g_files[i], "%s/doc%d.txt", g_dir, i);
        write_file(g_files[i], text + at, end - at);
        g_inputs[i] = g_files[i];
        at = end;
    }
    free(text);
    snprintf(g_files[5], sizeof g_files[5], "%s/bad_utf8.txt", g_dir);
    const char bad[] = "Caf\xc3\xa9 \xff\xfe is open. Bytes \xc3( end.\n";
    write_file(g_files[5], bad, sizeof bad - 1);
    g_inputs[5] = g_files[5];
    const char *corpus[] = {CORPUS};
    data_tokenizer t;
    data_train_opts o = {.kind = DATA_TOK_WORDPIECE, .vocab_size = 400, .lowercase = true, .quiet = true};
    snprintf(g_wp, sizeof g_wp, "%s/wp.json", g_dir);
    if (data_tokenizer_train(&t, corpus, 1, o) || data_tokenizer_save(&t, g_wp)) return -1;
    data_tokenizer_free(&t);
    o.kind = DATA_TOK_BPE;
    snprintf(g_bpe, sizeof g_bpe, "%s/bpe.json", g_dir);
    if (data_tokenizer_train(&t, corpus, 1, o) || data_tokenizer_save(&t, g_bpe)) return -1;
    data_tokenizer_free(&t);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The direct encoding of a whole text, as prepare must reproduce it. */
static void encode_direct(const char *tok, data_tokenizer *t, const char *text, size_t n, data_encoding *e) {
    data_encoding_reset(e);
    if (strcmp(tok, "bytes") == 0) {
        for (size_t i = 0; i < n; ++i) data_encoding_push(e, (uint8_t)text[i], 0, 1);
        return;
    }
    assert_int_equal(data_tokenizer_encode(t, text, n, 0, e), AG_OK);
}

/* Reads every shard of a split, concatenated, with its document starts. */
typedef struct { int32_t *ids; int64_t n; int64_t *docs; int64_t n_docs; int64_t n_sents; int64_t file_bytes; } split_t;

static void read_split(const char *dir, const char *name, split_t *s) {
    memset(s, 0, sizeof *s);
    char **files;
    int n;
    if (data_manifest_split(dir, name, &files, &n, NULL, NULL, NULL) != AG_OK) return; /* an empty split */
    for (int i = 0; i < n; ++i) {
        data_doc_shard d;
        if (data_doc_shard_read(&d, files[i]) != AG_OK) fail_msg("%s", ag_error());
        s->ids = realloc(s->ids, (size_t)(s->n + d.n) * sizeof *s->ids);
        memcpy(s->ids + s->n, d.tokens, (size_t)d.n * sizeof *s->ids);
        s->docs = realloc(s->docs, (size_t)(s->n_docs + d.n_docs) * sizeof *s->docs);
        for (int64_t k = d.continues ? 1 : 0; k < d.n_docs; ++k) s->docs[s->n_docs++] = s->n + d.doc_start[k];
        s->n += d.n, s->n_sents += d.n_sents;
        s->file_bytes += (int64_t)(sizeof(uint16_t) * 0); /* counted by the caller from the stats */
        data_doc_shard_free(&d);
        free(files[i]);
    }
    free(files);
}

static void split_free(split_t *s) { free(s->ids), free(s->docs); }

/* Prepares the six files with `tok` and checks every document against its
 * direct encoding, in corpus order over the two splits. */
static void check_round_trip(const char *tok) {
    char out[160];
    snprintf(out, sizeof out, "%s/out_%s", g_dir, strrchr(tok, '/') ? strrchr(tok, '/') + 1 : tok);
    data_prepare_opts o = {.tokenizer = tok, .inputs = g_inputs, .n_inputs = 6, .out_dir = out,
                           .val_fraction = 0.34, .shard_tokens = 1500, .chunk_bytes = 512};
    data_prepare_stats st;
    if (data_prepare(&o, &st) != AG_OK) fail_msg("%s", ag_error());
    assert_int_equal(st.docs[0] + st.docs[1], 6);
    assert_int_equal(st.docs[1], 2); /* floor((d+1) .34) > floor(d .34): documents 2 and 5 */
    assert_true(st.shards[0] > 1);   /* small shards: documents run across them */
    data_tokenizer t = {0};
    bool bytes = strcmp(tok, "bytes") == 0;
    if (!bytes) assert_int_equal(data_tokenizer_load(&t, tok), AG_OK);
    split_t sp[2];
    read_split(out, "train", &sp[0]), read_split(out, "val", &sp[1]);
    assert_int_equal(sp[0].n, st.tokens[0]);
    assert_int_equal(sp[0].n_docs, st.docs[0]);
    data_encoding e = {0};
    int64_t next[2] = {0, 0}, invalid = 0;
    for (int d = 0; d < 6; ++d) {
        int v = d == 2 || d == 5;
        size_t n;
        char *text = slurp(g_inputs[d], &n);
        encode_direct(tok, &t, text, n, &e);
        invalid += e.n_invalid;
        split_t *s = &sp[v];
        int64_t at = s->docs[next[v]++];
        assert_true(at + e.n < s->n);
        if (memcmp(s->ids + at, e.ids, (size_t)e.n * sizeof *e.ids) != 0 || s->ids[at + e.n] != st.sep_id)
            fail_msg("%s: document %d (%s) differs from its direct encoding", tok, d, g_inputs[d]);
        free(text);
    }
    assert_int_equal(st.invalid_utf8, invalid);
    if (!bytes) assert_int_equal(st.invalid_utf8, 3); /* \xff \xfe and the \xc3 before '(' */
    /* compressed: smaller than the ids at 2 bytes each */
    assert_true(st.file_bytes < 2 * (st.tokens[0] + st.tokens[1]));
    /* the old reader sees the split as one token array */
    data_shard old;
    char path[200];
    snprintf(path, sizeof path, "%s/train.bin", out);
    if (data_shard_read(&old, path) != AG_OK) fail_msg("%s", ag_error());
    assert_int_equal(old.n, sp[0].n);
    assert_memory_equal(old.tokens, sp[0].ids, (size_t)old.n * sizeof *old.tokens);
    data_shard_free(&old);
    printf("  %-10s %lld tokens, %lld sentences, %lld shards, %lld bytes on disk (%.2f bytes/token)\n",
           bytes ? "bytes" : t.kind == DATA_TOK_WORDPIECE ? "wordpiece" : t.kind == DATA_TOK_BPE ? "bpe" : "unigram",
           (long long)(st.tokens[0] + st.tokens[1]), (long long)(st.sents[0] + st.sents[1]),
           (long long)(st.shards[0] + st.shards[1]), (long long)st.file_bytes,
           (double)st.file_bytes / (double)(st.tokens[0] + st.tokens[1]));
    data_encoding_free(&e);
    split_free(&sp[0]), split_free(&sp[1]);
    if (!bytes) data_tokenizer_free(&t);
}

static void test_round_trip_bytes(void **state) { (void)state; check_round_trip("bytes"); }
static void test_round_trip_wordpiece(void **state) { (void)state; check_round_trip(g_wp); }
static void test_round_trip_bpe(void **state) { (void)state; check_round_trip(g_bpe); }
static void test_round_trip_unigram(void **state) { (void)state; check_round_trip(UNIGRAM); }

/* Sentences and blank-line documents land where data.h says, for each kind:
 * each recorded span is the direct encoding of the expected text. */
static void test_boundaries(void **state) {
    (void)state;
    char in[160], out[160];
    snprintf(in, sizeof in, "%s/blocks.txt", g_dir);
    const char text[] = "One fish. Two fish! Red fish? \"Blue fish.\" No end\n\n"
                        "Second block here.\n  \n\n(Third) block. Ends.\n";
    write_file(in, text, sizeof text - 1);
    /* the documents: blocks without their final newline; the sentences: the
     * whitespace before a sentence belongs to it */
    const char *docs[] = {"One fish. Two fish! Red fish? \"Blue fish.\" No end", "Second block here.",
                          "(Third) block. Ends."};
    const char *sents[] = {"One fish.", " Two fish!", " Red fish?", " \"Blue fish.\"", " No end",
                           "Second block here.", "(Third) block.", " Ends."};
    const char *toks[] = {"bytes", g_wp, g_bpe, UNIGRAM};
    for (int k = 0; k < 4; ++k) {
        snprintf(out, sizeof out, "%s/blocks%d", g_dir, k);
        const char *inputs[] = {in};
        data_prepare_opts o = {.tokenizer = toks[k], .inputs = inputs, .n_inputs = 1, .out_dir = out,
                               .docs = DATA_DOCS_BLANK_LINE, .chunk_bytes = 7};
        data_prepare_stats st;
        if (data_prepare(&o, &st) != AG_OK) fail_msg("%s", ag_error());
        char path[200];
        snprintf(path, sizeof path, "%s/train-00000.tgs", out);
        data_doc_shard d;
        if (data_doc_shard_read(&d, path) != AG_OK) fail_msg("%s", ag_error());
        assert_int_equal(d.n_docs, 3);
        assert_int_equal(d.n_sents, 8);
        data_tokenizer t = {0};
        if (k) assert_int_equal(data_tokenizer_load(&t, toks[k]), AG_OK);
        data_encoding e = {0};
        for (int i = 0; i < 3; ++i) {
            encode_direct(toks[k], &t, docs[i], strlen(docs[i]), &e);
            int64_t end = i + 1 < 3 ? d.doc_start[i + 1] : d.n;
            assert_int_equal(end - d.doc_start[i], e.n + 1);
            assert_memory_equal(d.tokens + d.doc_start[i], e.ids, (size_t)e.n * sizeof *e.ids);
        }
        for (int i = 0; i < 8; ++i) {
            encode_direct(toks[k], &t, sents[i], strlen(sents[i]), &e);
            int64_t end = i + 1 < 8 ? d.sent_start[i + 1] : d.n;
            for (int j = 0; j < 3; ++j) /* a document's last sentence stops at its separator */
                if (d.doc_start[j] > d.sent_start[i] && d.doc_start[j] <= end) end = d.doc_start[j];
            if (i == 7 || end == d.doc_start[1] || end == d.doc_start[2]) end--;
            if (end - d.sent_start[i] != e.n || memcmp(d.tokens + d.sent_start[i], e.ids, (size_t)e.n * 4))
                fail_msg("%s: sentence %d (\"%s\") is not where it should be", toks[k], i, sents[i]);
        }
        data_encoding_free(&e);
        data_doc_shard_free(&d);
        if (k) data_tokenizer_free(&t);
    }
}

/* ---------------------------------------------------------------- the loader */

enum { B = 3, T = 40, MAX_BATCHES = 400 };

/* Every batch of a full run: ids, masks, rows, and the position before each. */
typedef struct {
    int32_t ids[MAX_BATCHES][B * T];
    uint8_t mask[MAX_BATCHES][B * T];
    data_stream_pos pos[MAX_BATCHES + 1];
    int n;
} run_t;

static void full_run(const char *dir, data_stream_mode mode, uint64_t seed, int epochs, run_t *r) {
    data_stream s;
    if (data_stream_open(&s, dir, "train", mode, B, T, seed, epochs) != AG_OK) fail_msg("%s", ag_error());
    r->n = 0;
    for (;;) {
        assert_true(r->n < MAX_BATCHES);
        r->pos[r->n] = data_stream_tell(&s);
        int rows;
        assert_int_equal(data_stream_next(&s, r->ids[r->n], r->mask[r->n], &rows), AG_OK);
        if (rows == 0) break;
        r->n++;
    }
    data_stream_close(&s);
}

static void check_resume(const char *dir, data_stream_mode mode, const char *what) {
    static run_t r;
    full_run(dir, mode, 11, 2, &r);
    assert_true(r.n > 4);
    /* where the second epoch begins */
    int boundary = 0;
    while (boundary < r.n && r.pos[boundary].epoch == 0) ++boundary;
    assert_true(boundary > 1 && boundary < r.n);
    int at[] = {1, r.n / 3, boundary - 1, boundary, boundary + 1, r.n - 1};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; ++k) {
        data_stream s;
        assert_int_equal(data_stream_open(&s, dir, "train", mode, B, T, 11, 2), AG_OK);
        assert_int_equal(data_stream_seek(&s, r.pos[at[k]]), AG_OK);
        int32_t ids[B * T];
        uint8_t mask[B * T];
        for (int i = at[k]; i < r.n; ++i) {
            int rows;
            assert_int_equal(data_stream_next(&s, ids, mask, &rows), AG_OK);
            if (memcmp(ids, r.ids[i], sizeof ids) || memcmp(mask, r.mask[i], sizeof mask))
                fail_msg("%s: resumed at batch %d, batch %d differs from the unbroken run", what, at[k], i);
        }
        data_stream_close(&s);
    }
    printf("  %-10s %d batches over 2 epochs (epoch 2 from batch %d); resumed exactly at 6 positions\n", what, r.n,
           boundary);
}

/* The corpus with a blank line after every third line: many short
 * documents, in shards of about 800 BPE tokens. */
static void prepare_many_docs(char *out, size_t cap) {
    snprintf(out, cap, "%s/out_many", g_dir);
    if (access(out, F_OK) == 0) return;
    char in[160];
    snprintf(in, sizeof in, "%s/many.txt", g_dir);
    size_t n;
    char *text = slurp(CORPUS, &n), *blocks = malloc(2 * n + 1);
    size_t k = 0;
    int lines = 0;
    for (size_t i = 0; i < n; ++i) {
        blocks[k++] = text[i];
        if (text[i] == '\n' && ++lines % 3 == 0) blocks[k++] = '\n';
    }
    write_file(in, blocks, k);
    free(text), free(blocks);
    const char *inputs[] = {in};
    data_prepare_opts o = {.tokenizer = g_bpe, .inputs = inputs, .n_inputs = 1, .out_dir = out,
                           .val_fraction = 0.1, .shard_tokens = 800, .docs = DATA_DOCS_BLANK_LINE};
    if (data_prepare(&o, NULL) != AG_OK) fail_msg("%s", ag_error());
}

static void test_loader_resumes(void **state) {
    (void)state;
    char out[160];
    prepare_many_docs(out, sizeof out);
    check_resume(out, DATA_STREAM_PACK, "packed");
    check_resume(out, DATA_STREAM_PAD_DOCS, "docs");
    check_resume(out, DATA_STREAM_PAD_SENTS, "sentences");
}

/* Packing reads every token once per epoch, in an order that depends on the
 * seed; padded rows hold one sentence each, with a mask. */
static void test_loader_epochs(void **state) {
    (void)state;
    char out[160];
    prepare_many_docs(out, sizeof out);
    split_t sp;
    read_split(out, "train", &sp);
    static run_t r, r2;
    full_run(out, DATA_STREAM_PACK, 5, 2, &r);
    full_run(out, DATA_STREAM_PACK, 6, 2, &r2);
    assert_memory_not_equal(r.ids[0], r2.ids[0], sizeof r.ids[0]);
    /* token histograms: twice the split's */
    int64_t *hist = calloc(1024, sizeof *hist);
    int64_t total = 0;
    for (int64_t i = 0; i < sp.n; ++i) hist[sp.ids[i]] += 2;
    for (int b = 0; b < r.n; ++b)
        for (int i = 0; i < B * T; ++i)
            if (r.mask[b][i]) hist[r.ids[b][i]]--, total++;
    assert_int_equal(total, 2 * sp.n);
    for (int i = 0; i < 1024; ++i) assert_int_equal(hist[i], 0);
    free(hist);
    /* padded sentences: a row is a prefix of the mask, then padding */
    full_run(out, DATA_STREAM_PAD_SENTS, 5, 1, &r);
    assert_true(r.n * B >= sp.n_sents && (r.n - 1) * B < sp.n_sents);
    for (int i = 0; i < T - 1; ++i) assert_true(r.mask[0][i] >= r.mask[0][i + 1]);
    split_free(&sp);
}

/* ---------------------------------------------------------------- errors */

static void expect_fail(const data_prepare_opts *o, const char *needle) {
    assert_int_not_equal(data_prepare(o, NULL), AG_OK);
    if (!strstr(ag_error(), needle)) fail_msg("message \"%s\" does not name \"%s\"", ag_error(), needle);
}

static void test_bad_inputs(void **state) {
    (void)state;
    char empty[160], blank[160], out[160], bad_json[160];
    snprintf(empty, sizeof empty, "%s/empty.txt", g_dir);
    snprintf(blank, sizeof blank, "%s/blank.txt", g_dir);
    snprintf(out, sizeof out, "%s/out_bad", g_dir);
    snprintf(bad_json, sizeof bad_json, "%s/broken.json", g_dir);
    write_file(empty, "", 0);
    write_file(blank, "\n \n\t\n", 5);
    write_file(bad_json, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,", 44);
    const char *in1[] = {empty}, *in2[] = {blank, empty}, *in3[] = {g_files[0], "/nonexistent/corpus.txt"};
    data_prepare_opts o = {.tokenizer = g_bpe, .inputs = in1, .n_inputs = 1, .out_dir = out};
    expect_fail(&o, empty);
    o.tokenizer = "bytes", o.inputs = in2, o.n_inputs = 2, o.docs = DATA_DOCS_BLANK_LINE;
    expect_fail(&o, blank);
    o.inputs = in3;
    expect_fail(&o, "/nonexistent/corpus.txt");
    o.inputs = g_inputs, o.n_inputs = 1, o.tokenizer = bad_json;
    expect_fail(&o, bad_json);
    o.tokenizer = "/nonexistent/tokenizer.json";
    expect_fail(&o, "/nonexistent/tokenizer.json");
    o.tokenizer = "bytes", o.val_fraction = 1.5;
    expect_fail(&o, "--val");
}

static void test_bad_shards(void **state) {
    (void)state;
    char out[160], path[200], copy[220];
    snprintf(out, sizeof out, "%s/out_shardbad", g_dir);
    data_prepare_opts o = {.tokenizer = "bytes", .inputs = g_inputs, .n_inputs = 2, .out_dir = out};
    assert_int_equal(data_prepare(&o, NULL), AG_OK);
    snprintf(path, sizeof path, "%s/train-00000.tgs", out);
    size_t n;
    char *bytes = slurp(path, &n);
    data_doc_shard d;
    /* truncated */
    snprintf(copy, sizeof copy, "%s/cut.tgs", out);
    write_file(copy, bytes, n - 10);
    assert_int_equal(data_doc_shard_read(&d, copy), AG_ERR_IO);
    assert_non_null(strstr(ag_error(), copy));
    assert_non_null(strstr(ag_error(), "truncated"));
    /* one byte of the compressed body flipped */
    bytes[n / 2] ^= 0x55;
    write_file(copy, bytes, n);
    assert_int_equal(data_doc_shard_read(&d, copy), AG_ERR_IO);
    assert_non_null(strstr(ag_error(), copy));
    assert_non_null(strstr(ag_error(), "corrupt"));
    /* a header that lies about the counts */
    bytes[n / 2] ^= 0x55;
    bytes[24] ^= 1;
    write_file(copy, bytes, n);
    assert_int_equal(data_doc_shard_read(&d, copy), AG_ERR_IO);
    assert_non_null(strstr(ag_error(), copy));
    /* the loader names the shard it could not read */
    write_file(path, bytes, 20);
    data_stream s;
    assert_int_not_equal(data_stream_open(&s, out, "train", DATA_STREAM_PACK, 2, 8, 1, 1), AG_OK);
    assert_non_null(strstr(ag_error(), path));
    free(bytes);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_bytes),   cmocka_unit_test(test_round_trip_wordpiece),
        cmocka_unit_test(test_round_trip_bpe),     cmocka_unit_test(test_round_trip_unigram),
        cmocka_unit_test(test_boundaries),         cmocka_unit_test(test_loader_resumes),
        cmocka_unit_test(test_loader_epochs),      cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_bad_shards),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
