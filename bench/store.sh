#!/bin/sh
# bench/store.sh: the activation store of pipelines/experiment.mk, measured:
# one shard through pipelines/tap-shard.sh (gpt2-fwd tapped twice into bf16,
# shuffled, zstd rows and context windows) on the shipped model; prints
# tokens/s and the store's bytes per token beside float32 .npy of the same
# rows (`tsz to-npy` in the same run), and their ratio.
# TOKENS_K=... windows*128 tokens in thousands (default 64).
set -e
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
M=examples/models/tiny-gpt2-docs
[ -f $M/model.safetensors ] || { echo "bench/store.sh: skipped: no $M"; exit 0; }
for s in gpt2-fwd mlp-tap tsz; do
	[ -x bin/$s ] || { echo "bench/store.sh: skipped: bin/$s not built"; exit 0; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rows=$(( ${TOKENS_K:-64} * 1000 / 128 ))
if [ -x bin/gpt2-tok ]; then   # real text: the documentation on this machine
	DEMO_DATASET_URL= sh pipelines/demo-corpus.sh "$tmp/corpus" $((rows * 600)) 2>/dev/null
	bin/gpt2-tok --model $M --ctx 128 "$tmp"/corpus/* >"$tmp/all.tsz"
	bin/tsz head -n 1000000 "$tmp/all.tsz" >"$tmp/tok.tsz"
elif "$PY" -c 'import numpy' 2>/dev/null; then
	"$PY" -c "
import numpy as np
t = np.random.default_rng(0).integers(0, 50257, size=($rows, 128)).astype(np.int32); t[:, 0] = 50256
np.save('$tmp/tok.npy', t)"
	bin/tsz from-npy tokens="$tmp/tok.npy" >"$tmp/tok.tsz"
	echo "bench/store.sh: (gpt2-tok not built: random token ids)"
else
	echo "bench/store.sh: skipped: needs gpt2-tok or python3-numpy"; exit 0
fi
s=$(date +%s.%N)
sh pipelines/tap-shard.sh "$PWD/bin/" $M blocks.3.mlp.hook_post bf16 8 65536 0 "$tmp/tok.tsz" \
	"$tmp/rows.tsz" "$tmp/ctx.tsz"
e=$(date +%s.%N)
bin/tsz to-npy --name acts "$tmp/rows.npy" "$tmp/rows.tsz"   # f32 .npy of the same rows
"$PY" - "$tmp" "$s" "$e" <<'PY' 2>/dev/null || awk -v t="$tmp" 'BEGIN{print "bench/store.sh: numpy needed for the summary"}'
import os, sys, numpy as np
d, s, e = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
n, D = np.load(d + "/rows.npy", mmap_mode="r").shape
zr, zc, npy = (os.path.getsize(d + f) for f in ("/rows.tsz", "/ctx.tsz", "/rows.npy"))
print(f"store: {n} tokens, D={D}: forward+tap {n / (e - s):.0f} tokens/s")
print(f"rows (bf16, shuffled, zstd): {zr / n:.0f} bytes/token; float32 .npy: {npy / n:.0f} bytes/token;"
      f" ratio {npy / zr:.2f}x smaller")
print(f"context windows (bf16, zstd): {zc / n:.0f} bytes/token")
PY
