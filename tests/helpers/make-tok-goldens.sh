#!/bin/sh
# make-tok-goldens.sh: regenerate tests/data/tok/*.ids from tests/data/tok/*.txt
# with an independent reference (tests/helpers/tok-ref.js: the npm packages
# gpt-tokenizer and gpt-3-encoder, and a transcription of GPT-2's encoder.py).
#
#   sh tests/helpers/make-tok-goldens.sh [GPT2_DIR]   (from the repo root)
#
# GPT2_DIR defaults to ../shared/gpt2. The npm packages are installed into a
# scratch directory outside the repository ($TOKREF_DIR, default
# /tmp/saepipe-tokref) when missing. The goldens are committed, so make check
# needs neither node nor npm.
set -e
dir=${1:-../shared/gpt2}
ref=${TOKREF_DIR:-/tmp/saepipe-tokref}
command -v node >/dev/null || { echo "make-tok-goldens: node is needed" >&2; exit 1; }
if ! test -d "$ref/node_modules/gpt-tokenizer" || ! test -d "$ref/node_modules/gpt-3-encoder"; then
	mkdir -p "$ref"
	(cd "$ref" && npm init -y >/dev/null && npm install --no-audit --no-fund gpt-tokenizer gpt-3-encoder >&2)
fi
NODE_PATH="$ref/node_modules" node tests/helpers/tok-ref.js "$dir" tests/data/tok/*.txt
