#!/bin/sh
# bench/frontier.sh: the frontier's topk and relu points trained again by a
# PyTorch implementation of sae-fit's recipe (bench/frontier-torch.py) on
# the same activation rows in the same order, with the same knob value
# (relu: the calibrated l1 of the frontier's table), budget, batch and AuxK
# dead threshold; each exported in the SAELens layout, read back by
# sae-convert from-saelens and scored by the same recon-score on the same
# held-out windows. Prints, per point, saepipe's L0, CE score (vs zero
# ablation), FVU and KL beside PyTorch's and the gaps; and the training
# throughput of one point (BENCH_TIMED, default topk/32; empty: none), sae-fit alone
# beside PyTorch, both timed now on the same rows.
#   sh bench/frontier.sh [VAR=value...]     (frontier.mk's variables)
# Runs the frontier first when it is not there yet (make -f
# pipelines/frontier.mk, a no-op otherwise). BENCH_POINTS="topk/32 relu/32"
# narrows the points; BENCH_THREADS sets the threads of PyTorch and of the
# timed sae-fit [2]. BENCH_SAME_INIT=1: PyTorch starts from sae-fit's own
# initial SAE for the point (a --lr 0 fit of one batch, exported by
# sae-convert to-saelens), not from a draw of its own, so the two differ in
# their arithmetic only (results under torch-init/, apart from the others).
set -e
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
BIN=$TOP/bin/
$PY -c "import torch" 2>/dev/null || { echo "frontier.sh: python3-torch missing (make deps-bench)"; exit 1; }
mk () { nice make --no-print-directory -f "$TOP/pipelines/frontier.mk" "$@"; }
mk "$@"
eval "$(mk "$@" frontier-env)"
num () { echo "$1" | sed 's/K$/000/; s/M$/000000/; s/G$/000000000/'; }
tokens=$(num "$TOKENS") dead=$(num "$DEAD_TOKENS")
dict=$(echo "$DICT" | sed 's/x$//')
out=$FRONT/torch${BENCH_SAME_INIT:+-init}
mkdir -p "$out" "$FRONT/torch"
rows=$FRONT/torch/rows.npy
if ! test -s "$rows" || test -n "$(find $TRAIN_ROWS -newer "$rows")"; then
	# shellcheck disable=SC2086
	cat $TRAIN_ROWS | "${BIN}tsz" to-npy "$rows.tmp" - && mv "$rows.tmp" "$rows"
fi
d=$($PY -c "import numpy as np; print(np.load('$rows', mmap_mode='r').shape[1])")
feat=$((dict * d))
torch_fit () { # arch knob-value dir
	if test "$1" = topk; then kflag="--k $2"; else kflag="--l1 $2"; fi
	init=
	if test -n "$BENCH_SAME_INIT"; then
		# sae-fit's start: the point's fit, one batch at lr 0 (Adam moves nothing)
		mkdir -p "$3"
		# shellcheck disable=SC2086
		cat $TRAIN_ROWS | "${BIN}sae-fit" --arch "$1" --dict "$DICT" $kflag $FIT_FLAGS --tokens "$FIT_BATCH" --lr 0 \
			-o "$3/init.tsz" 2>/dev/null
		rm -rf "$3/init" && "${BIN}sae-convert" to-saelens "$3/init.tsz" -o "$3/init"
		init="--init $3/init"
	fi
	# shellcheck disable=SC2086
	nice $PY "$HERE/frontier-torch.py" --rows "$rows" --rows-n "$tokens" --arch "$1" $kflag --dict "$feat" \
		--batch "$FIT_BATCH" --lr "$FIT_LR" --dead-rows "$dead" --hook "$HOOK" --model "$MODEL_ARG" $init -o "$3/saelens"
}
args=
for p in ${BENCH_POINTS:-$(awk -F '\t' 'NR > 1 && ($1 == "topk" || $1 == "relu") {print $1 "/" $2}' "$TABLE")}; do
	line=$(awk -F '\t' -v a="${p%/*}" -v t="${p#*/}" '$1 == a && $2 == t' "$TABLE")
	test -n "$line" || { echo "frontier.sh: $p is no point of $TABLE" >&2; exit 1; }
	value=$(echo "$line" | cut -f 4) knob=$(echo "$line" | cut -f 3) fit=$(echo "$line" | cut -f 18)
	dir=$out/$fit
	if ! test -s "$dir/recon.tsz"; then
		echo "  TORCH   $p ($knob $value): $(torch_fit "${p%/*}" "$value" "$dir")"
		"${BIN}sae-convert" from-saelens "$dir/saelens" -o "$dir/sae.tsz"
		"${BIN}tsz" head -n "$RECON_RECORDS" "$EVAL_TOK" |
			nice "${BIN}recon-score" -q --model "$MODEL_ARG" --sae "$dir/sae.tsz" - -o "$dir/recon.tsz"
	fi
	args="$args ${p%/*} ${p#*/} $knob $value $dir"
done
# shellcheck disable=SC2086
sh "$TOP/pipelines/frontier-table.sh" "$BIN" "$out/torch.tsv" $args
echo "frontier: saepipe (sae-fit) against PyTorch, same recipe, rows and scoring ($TABLE)"
awk -F '\t' 'NR == FNR { if (FNR > 1) s[$1 "/" $2] = $5 " " $8 " " $6 " " $7; next }
	FNR == 1 { printf "%-14s %28s   %28s   %s\n", "point", "saepipe: L0 score FVU KL", "pytorch: L0 score FVU KL", "score, FVU: saepipe - pytorch"; next }
	{ split(s[$1 "/" $2], o, " ")
	  printf "%-14s %6.1f %7.4f %6.4f %7.4f   %6.1f %7.4f %6.4f %7.4f   %+.4f %+.4f\n", $1 "/" $2,
		o[1], o[2], o[3], o[4], $5, $8, $6, $7, o[2] - $8, o[3] - $6 }' "$TABLE" "$out/torch.tsv"
# throughput of one point, each alone
tp=${BENCH_TIMED-topk/32}
tl=$(awk -F '\t' -v a="${tp%/*}" -v t="${tp#*/}" '$1 == a && $2 == t {print $3, $4}' "$TABLE")
if test -n "$tl"; then
	set -- $tl
	s0=$(date +%s.%N)
	# shellcheck disable=SC2086
	cat $TRAIN_ROWS | OPENBLAS_NUM_THREADS=${BENCH_THREADS:-2} "${BIN}sae-fit" --arch "${tp%/*}" --dict "$DICT" --"$1" "$2" --tokens "$TOKENS" \
		$FIT_FLAGS -o "$out/timed.tsz" 2>/dev/null
	s1=$(date +%s.%N)
	torch_fit "${tp%/*}" "$2" "$out/timed" >/dev/null
	s2=$(date +%s.%N)
	awk -v a="$s0" -v b="$s1" -v c="$s2" -v n="$tokens" -v p="$tp" 'BEGIN {
		printf "%s training: saepipe %.0f rows/s, pytorch %.0f rows/s: %.2fx PyTorch\n", p, n / (b - a), n / (c - b), (c - b) / (b - a) }'
fi
