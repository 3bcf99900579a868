#!/bin/sh
# bench/gemm.sh: the price of sp_gemm's promise (lib/gemm.h: a row's bytes
# do not depend on the thread count, the batch or the shard) against one
# threaded OpenBLAS sgemm of the same shape, in the same run, on the shapes
# the stages spend their time in. Each line prints both in GFLOP per CPU
# second (waiting for a core on a busy machine counts against neither) and
# their ratio; the last line, the geometric mean of the ratios.
# THREADS (default: all cores), SECONDS per shape (default 3).
set -e
cd "$(dirname "$0")/.."
THREADS=${THREADS:-$(nproc)}
SECS=${SECONDS_PER_SHAPE:-3}
export OPENBLAS_NUM_THREADS=$THREADS
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# M N K op: what it is
while read -r m n k op what; do
	printf '%-44s ' "$what" >&2
	tests/helpers/gemm-bench "$m" "$n" "$k" "$op" "$SECS" | tee -a "$out"
done <<'SHAPES'
1024 2304 768 nn/w128  gpt2-fwd qkv (distilgpt2, 8 windows of 128)
1024 3072 768 nn/w128  gpt2-fwd MLP c_fc
1024 768 3072 nn/w128  gpt2-fwd MLP c_proj
1024 50257 768 nt/w128 gpt2-fwd/recon-score unembedding
4096 16384 2048 nt sae-fit encoder (D=2048, F=16384, B=4096)
4096 2048 16384 nn sae-fit relu decoder
16384 2048 4096 tn sae-fit relu weight gradient
1000 24576 768 nn sae-encode 32x of a 768 MLP, 1000 rows
SHAPES
awk '{ for (i = 1; i <= NF; i++) if ($i == "(ratio") { s += log($(i + 1)); n++ } }
     END { if (n) printf "sp_gemm / sgemm, geometric mean over %d shapes: %.2f\n", n, exp(s / n) }' "$out"
