#!/usr/bin/env bash
# Fetches the real tokenizer files the tokenizer tests check against (not committed: Apache-2.0 npm packages) and
# makes their reference ids for tests/data/tokenizer-vectors/{hard-strings,chat-prompts}.inp with an oracle outside
# the engine: @lenml/tokenizers, a JavaScript port of Hugging Face tokenizers, run by node.
#   tests/.cache/tokenizers/<name>/models/{tokenizer.json,tokenizer_config.json}
#     llama3, qwen3 (Qwen 2 vocabulary), gemma3, llama2 (despite its name a Mistral-7B SentencePiece vocabulary:
#     byte fallback and a "▁" prefix, as Phi-3's), gpt4o (the pre-tokenizer and o200k vocabulary of Phi-4-mini)
#   tests/.cache/tokenizers/oracle/<name>.<inputs>.out                            one line of ids per input
# Needs npm and node (.ci/run installs them). Idempotent: what is already there is kept. EDGELLM_TOKENIZER_CACHE
# overrides the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${EDGELLM_TOKENIZER_CACHE:-$PWD/tests/.cache/tokenizers}"
version=3.7.2
mkdir -p "$cache/oracle"

unpack() {  # npm package -> folder
  local pkg=$1 dest=$2
  [ -f "$dest/package.json" ] && return
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
  rm -rf "$dest" && mkdir -p "$dest"
  tar -xzf "$tmp"/*.tgz -C "$dest" --strip-components=1
  rm -rf "$tmp"
}

unpack @lenml/tokenizers "$cache/lib"
for name in llama3 qwen3 gemma3 llama2 gpt4o; do
  unpack "@lenml/tokenizer-$name" "$cache/$name"
  for f in tokenizer.json tokenizer_config.json; do
    [ -s "$cache/$name/models/$f" ] || { echo "fetch-tokenizers: $cache/$name/models/$f is missing from the package" >&2; exit 1; }
  done
done

for inputs in hard-strings chat-prompts; do
  inp=tests/data/tokenizer-vectors/$inputs.inp
  for name in llama3 qwen3 gemma3 llama2 gpt4o; do
    out="$cache/oracle/$name.$inputs.out"
    if [ ! -s "$out" ] || [ "$inp" -nt "$out" ] || [ tools/tokenizer-oracle.cjs -nt "$out" ]; then
      node tools/tokenizer-oracle.cjs "$cache/lib" "$cache/$name/models" "$inp" "$out.partial"
      mv "$out.partial" "$out"
    fi
  done
done
echo "fetch-tokenizers: $cache ready (llama3, qwen3, gemma3, llama2, gpt4o and the oracle's ids)"
