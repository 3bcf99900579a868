#!/bin/sh
# bench/synth.sh: sae-fit's architectures on a scaled-down SynthSAEBench-16k
# (sae-synth --preset synthsaebench), scored against the truth by sae-synth score:
# F 4096 true features in D 192 (F/D 21.3, as 16384/768), 32 trees (128 x 4096/16384),
# SAE width 1024 (F/4, as their 4096 of 16384), k 14 (the true L0 of the 1024 most
# frequent features, as their k 25 of 4096). Prints seconds and the JSON scores;
# mcc_dec is the figure SynthSAEBench publishes as MCC (BatchTopK 0.757 at full
# scale, 200M fresh rows). ROWS_K=... distinct training rows in thousands (default
# 300), EPOCHS=... passes over them (default 20): the run README "Ground truth" reports,
# about 50 s of CPU to draw the rows and 1.5-2 min for each fit (topk, batchtopk;
# jumprelu and gated run dense, longer). ARCHS="..." the archs to fit (default
# topk batchtopk matryoshka jumprelu gated); FLAGS_<arch>="..." more sae-fit flags.
set -e
cd "$(dirname "$0")/.."
for s in sae-synth sae-fit; do
	[ -x bin/$s ] || { echo "bench/synth.sh: skipped: bin/$s not built"; exit 0; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
S="--preset synthsaebench --features 4096 --dim 192 --roots 32"
rows=$(( ${ROWS_K:-300} * 1000 )) epochs=${EPOCHS:-20}
s=$(date +%s.%N)
bin/sae-synth $S -n 8192 --data-seed 99 --truth "$tmp/truth.tsz" -o "$tmp/eval.tsz"
bin/sae-synth $S -n $rows --data-seed 1 -o "$tmp/train.tsz"
e=$(date +%s.%N)
echo "sae-synth: $rows rows in $(echo "$e - $s" | bc) s"
for arch in ${ARCHS:-topk batchtopk matryoshka jumprelu gated}; do
	s=$(date +%s.%N)
	eval "flags=\${FLAGS_$arch:-}"
	bin/sae-fit --arch $arch --dict 1024 --k 14 --batch 1024 --lr 0.001 --epochs $epochs $flags --input "$tmp/train.tsz" \
		>"$tmp/sae.tsz" 2>/dev/null
	e=$(date +%s.%N)
	echo "sae-fit --arch $arch: $epochs x $rows rows in $(echo "$e - $s" | bc) s"
	bin/sae-synth score --truth "$tmp/truth.tsz" --sae "$tmp/sae.tsz" --json "$tmp/eval.tsz"
done
