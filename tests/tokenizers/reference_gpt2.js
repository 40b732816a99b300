// reference_gpt2.js: OpenAI's GPT-2 encoder (npm gpt-3-encoder 1.1.4) on each
// line of a file, printing the ids of each line (without its newline) on one
// line, as `tapegrad tokenizer encode` does. Usage: node reference_gpt2.js PKG_DIR FILE
const fs = require('fs');
const { encode } = require(process.argv[2] + '/index.js');
const lines = fs.readFileSync(process.argv[3], 'utf-8').split('\n');
if (lines.length && lines[lines.length - 1] === '') lines.pop(); // the file's final newline
const out = [];
const t0 = Date.now();
for (const l of lines) out.push(encode(l).join(' '));
fs.writeSync(1, out.join('\n') + '\n');
process.stderr.write(`gpt-3-encoder: ${(Buffer.byteLength(lines.join('\n')) / 1e6 / ((Date.now() - t0) / 1e3)).toFixed(2)} MB/s\n`);
