#!/bin/sh
# bench/tok.sh: gpt2-tok's single-thread throughput (MB/s, tokens/s) beside
# the npm GPT-2 tokenizers under node (gpt-tokenizer on the same text,
# gpt-3-encoder on a 200 kB slice of it), measured in the same run, and the
# ratio to the fastest. The text: SIZE_MB (default 20) of /usr/share/doc
# text and Python sources. gpt2-tok's time is the whole process (vocabulary
# load, reading, writing the compressed stream); node's is encode() alone.
# The npm packages are installed into $TOKREF_DIR (default
# /tmp/saepipe-tokref) when missing; without node or npm the bench skips.
set -e
cd "$(dirname "$0")/.."
GPT2=${SAEPIPE_GPT2_DIR:-../shared/gpt2}
test -f "$GPT2/vocab.json" || { echo "bench/tok.sh: skipped: no GPT-2 tokenizer files (SAEPIPE_GPT2_DIR)"; exit 0; }
command -v node >/dev/null || { echo "bench/tok.sh: skipped: needs node"; exit 0; }
ref=${TOKREF_DIR:-/tmp/saepipe-tokref}
if ! test -d "$ref/node_modules/gpt-tokenizer" || ! test -d "$ref/node_modules/gpt-3-encoder"; then
	command -v npm >/dev/null || { echo "bench/tok.sh: skipped: needs npm for the reference tokenizers"; exit 0; }
	mkdir -p "$ref"
	(cd "$ref" && npm init -y >/dev/null && npm install --no-audit --no-fund gpt-tokenizer gpt-3-encoder >/dev/null 2>&1) ||
		{ echo "bench/tok.sh: skipped: npm install gpt-tokenizer gpt-3-encoder failed"; exit 0; }
fi
SIZE_MB=${SIZE_MB:-20}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bytes=$((SIZE_MB * 1000000))
{
	find /usr/share/doc -type f \( -name '*.txt' -o -name 'README*' -o -name 'copyright' -o -name '*.md' \) ! -name '*.gz' | sort | xargs cat
	find /usr/lib/python3* -name '*.py' 2>/dev/null | sort | xargs cat
} 2>/dev/null | head -c "$bytes" >"$tmp/text" || true
bytes=$(wc -c <"$tmp/text")
head -c 200000 "$tmp/text" >"$tmp/slice"   # gpt-3-encoder is far slower
cat >"$tmp/bench.js" <<'EOF'
const fs = require('fs');
const [which, file] = process.argv.slice(2);
const text = fs.readFileSync(file, 'utf8');
const enc = which === 'gpt-3-encoder' ? require('gpt-3-encoder').encode : require('gpt-tokenizer/cjs/model/gpt2').encode;
enc('warm up the caches and the JIT with a little text first');
const t0 = process.hrtime.bigint();
const n = enc(text).length;
console.log(`${n} ${Number(process.hrtime.bigint() - t0) / 1e9}`);
EOF
now() { date +%s.%N; }
s=$(now)
OPENBLAS_NUM_THREADS=1 bin/gpt2-tok -m "$GPT2" --ctx 0 "$tmp/text" -o "$tmp/t.tsz"
e=$(now)
ours_s=$(awk "BEGIN{print $e - $s}")
ours_n=$(bin/tsz info "$tmp/t.tsz" | awk '$1 == "tokens" { gsub(/[(*,)]/, " ", $3); print $3 - 1 }')
set -- $(NODE_PATH="$ref/node_modules" node "$tmp/bench.js" gpt-tokenizer "$tmp/text")
gt_n=$1 gt_s=$2
set -- $(NODE_PATH="$ref/node_modules" node "$tmp/bench.js" gpt-3-encoder "$tmp/slice")
g3_n=$1 g3_s=$2
slice=$(wc -c <"$tmp/slice")
row() { printf '%-40s %10.2f %12.0f %10d\n' "$1" "$(awk "BEGIN{print $2/1e6/$4}")" "$(awk "BEGIN{print $3/$4}")" "$3"; }
printf '%-40s %10s %12s %10s\n' "GPT-2 tokenizer, 1 thread ($bytes bytes)" "MB/s" "tokens/s" "tokens"
row "gpt2-tok (whole process)" "$bytes" "$ours_n" "$ours_s"
row "node gpt-tokenizer (encode only)" "$bytes" "$gt_n" "$gt_s"
row "node gpt-3-encoder (200 kB slice)" "$slice" "$g3_n" "$g3_s"
best=$(awk "BEGIN{a=$bytes/$gt_s; b=$slice/$g3_s; print (a > b ? a : b)}")
echo "ratio of gpt2-tok to the fastest reference: $(awk "BEGIN{printf \"%.1f\", ($bytes/$ours_s)/$best}")x (target >= 3x)"
test "$ours_n" = "$gt_n" || echo "note: token counts differ by $((ours_n - gt_n)): JS \\s counts U+FEFF as space, GPT-2's White_Space does not (see gpt2-tok(1))"
