// Reference token ids from an implementation independent of EdgeLlm: @lenml/tokenizers (a JavaScript port of
// Hugging Face tokenizers) loads tokenizer.json + tokenizer_config.json and encodes every input of a file in
// llama.cpp's .inp format (texts separated by lines "__ggml_vocab_test__") without special tokens, writing one
// line of space-separated ids per input (llama.cpp's .out format).
// usage: node tools/tokenizer-oracle.cjs LIB_DIR TOKENIZER_DIR INPUT.inp OUTPUT.out
'use strict';
const fs = require('fs');
const path = require('path');

const [libDir, tokDir, inputPath, outputPath] = process.argv.slice(2);
if (!outputPath) {
  console.error('usage: node tools/tokenizer-oracle.cjs LIB_DIR TOKENIZER_DIR INPUT.inp OUTPUT.out');
  process.exit(2);
}
const { TokenizerLoader } = require(path.resolve(libDir, 'dist/main.js'));
const read = (f) => JSON.parse(fs.readFileSync(path.join(tokDir, f), 'utf8'));
const tokenizer = TokenizerLoader.fromPreTrained({ tokenizerJSON: read('tokenizer.json'), tokenizerConfig: read('tokenizer_config.json') });

const raw = fs.readFileSync(inputPath, 'utf8');
const sep = '\n__ggml_vocab_test__\n';
const inputs = raw.split(sep);
if (raw.endsWith(sep)) inputs.pop(); // every input is followed by the separator
const lines = inputs.map((text) => {
  // The engine follows llama.cpp, which does not NFC-normalize: inputs must already be NFC so that the oracle
  // (which normalizes for Qwen) and llama.cpp see the same characters.
  if (text.normalize('NFC') !== text) throw new Error(`input is not NFC: ${JSON.stringify(text)}`);
  return tokenizer.encode(text, { add_special_tokens: false }).join(' ');
});
fs.writeFileSync(outputPath, lines.join('\n') + '\n');
console.error(`tokenizer-oracle: ${path.basename(path.dirname(tokDir))}: ${lines.length} inputs -> ${outputPath}`);
