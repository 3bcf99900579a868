#!/bin/sh
# bench/topk.sh: tokens/s through `sae-encode | topk-ctx` (default options:
# k 20, window 64, 20 random, 4x2 band examples) for a topk SAE (k 64) on
# D=768 random activations, F=16384 and F=65536, context windows of 128
# tokens (BOS dropped); beside
#   (a) sae-encode alone (the encoder GEMM plus CSR), and topk-ctx alone, split
#       into its fixed cost (writing F feature records of examples, measured on
#       the first input record only) and its per-token rate on the rest;
#   (b) the sgemm FLOP/s OpenBLAS reaches here at the encoder's shape
#       (tests/helpers/sgemm-peak), as the fraction of it the pipeline's
#       2*D*F FLOPs per token use: the encode is a GEMM, so this is the
#       ceiling the pipeline is measured against.
# THREADS (default: all cores), WINDOWS16 (windows for F=16384, default 64),
# WINDOWS64 (for F=65536, default 24). Small token counts keep the run short;
# the fixed output cost then weighs on the pipeline's tokens/s, which is why
# topk-ctx's per-token rate is shown on its own.
set -e
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
"$PY" -c 'import numpy' 2>/dev/null || { echo "bench/topk.sh: skipped: needs python3-numpy"; exit 0; }
THREADS=${THREADS:-$(nproc)}
export OPENBLAS_NUM_THREADS=$THREADS
D=768 T=128
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# best of 2 wall-clock seconds of a shell command
best_of () {
	best=1e30
	for i in 1 2; do
		s=$(date +%s.%N)
		sh -c "$1"
		e=$(date +%s.%N)
		best=$(awk "BEGIN{t = $e - $s; print (t < $best) ? t : $best}")
	done
	echo "$best"
}

run () {
	F=$1 B=$2
	"$PY" - "$tmp" "$D" "$F" "$B" "$T" <<'EOF'
import sys, numpy as np
d, D, F, B, T = sys.argv[1], *map(int, sys.argv[2:])
rng = np.random.default_rng(0)
np.save(f"{d}/W_enc.npy", (rng.standard_normal((D, F), np.float32) / np.sqrt(D)).astype(np.float32))
np.save(f"{d}/W_dec.npy", (rng.standard_normal((F, D), np.float32) / np.sqrt(D)).astype(np.float32))
np.save(f"{d}/b_enc.npy", np.zeros(F, np.float32)); np.save(f"{d}/b_dec.npy", np.zeros(D, np.float32))
np.save(f"{d}/acts.npy", rng.standard_normal((B, T - 1, D), np.float32))
np.save(f"{d}/tok.npy", rng.integers(0, 50257, (B, T)).astype(np.int32))
np.save(f"{d}/doc.npy", np.arange(B, dtype=np.int64)); np.save(f"{d}/off.npy", np.zeros(B, np.int64))
EOF
	TSZ_LEVEL=1 bin/tsz from-npy --rows 1000000 --meta kind=sae --meta arch=topk --meta k=64 --meta d=$D --meta f=$F \
		W_enc="$tmp/W_enc.npy" b_enc="$tmp/b_enc.npy" W_dec="$tmp/W_dec.npy" b_dec="$tmp/b_dec.npy" >"$tmp/sae.tsz"
	bin/tsz from-npy --rows 16 --meta pos0=1 acts="$tmp/acts.npy" tokens="$tmp/tok.npy" doc="$tmp/doc.npy" \
		offset="$tmp/off.npy" >"$tmp/ctx.tsz"
	rm -f "$tmp"/*.npy
	tokens=$((B * (T - 1)))
	t_enc=$(best_of "bin/sae-encode --sae $tmp/sae.tsz $tmp/ctx.tsz >$tmp/feat.tsz")
	t_all=$(best_of "bin/sae-encode --sae $tmp/sae.tsz $tmp/ctx.tsz | bin/topk-ctx >/dev/null")
	t_topk=$(best_of "bin/topk-ctx $tmp/feat.tsz >/dev/null")
	bin/tsz head -n 1 "$tmp/feat.tsz" >"$tmp/one.tsz"
	t_one=$(best_of "bin/topk-ctx $tmp/one.tsz >/dev/null")
	n_one=$((16 * (T - 1)))
	batch=$(( (1 << 24) / F )); [ $batch -lt 16 ] && batch=16
	peak=$(tests/helpers/sgemm-peak $batch $F $D 2 | sed 's/.*: \([0-9.]*\) GFLOP.*/\1/')
	awk -v F=$F -v D=$D -v n=$tokens -v a=$t_all -v e=$t_enc -v k=$t_topk -v p=$peak -v th=$THREADS \
		-v k1=$t_one -v n1=$n_one 'BEGIN{
		ideal = p * 1e9 / (2 * D * F)
		printf "F=%d D=%d tokens=%d threads=%d\n", F, D, n, th
		printf "  sae-encode | topk-ctx: %.0f tokens/s (%.2f s)\n", n / a, a
		printf "  sae-encode alone:      %.0f tokens/s; topk-ctx alone on its output: %.0f tokens/s\n", n / e, n / k
		printf "  topk-ctx: fixed %.2f s (F records), then %.0f tokens/s\n", k1, (k - k1 > 0) ? (n - n1) / (k - k1) : 0
		printf "  sgemm peak at (%d x %d x %d): %.1f GFLOP/s = %.0f tokens/s of encoder GEMM\n", '"$batch"', F, D, p, ideal
		printf "  ratio pipeline / sgemm-peak ceiling: %.2f\n", (n / a) / ideal
	}'
}

run 16384 "${WINDOWS16:-64}"
run 65536 "${WINDOWS64:-24}"
