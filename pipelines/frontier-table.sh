#!/bin/sh
# frontier-table.sh: the frontier's table from the points' recon-score records
# (frontier.mk, step 3), one TSV line a point, written atomically.
#   frontier-table.sh BIN OUT.tsv ARCH TARGET_L0 KNOB VALUE DIR [ARCH TARGET_L0 KNOB VALUE DIR]...
# DIR holds sae.tsz and recon.tsz. Columns: arch, l0_target, knob, value (the
# fit's sparsity setting), then recon-score's l0, fvu, kl, score (CE loss
# recovered against zero ablation), score_mean_abl, mse, dead_frac,
# dense_frac, clean_loss, recons_loss, zero_abl_loss, mean_abl_loss, tokens,
# and the fit's directory name.
set -e
[ $# -ge 7 ] && [ $(( ($# - 2) % 5 )) = 0 ] ||
	{ echo "usage: frontier-table.sh BIN OUT ARCH TARGET KNOB VALUE DIR [ARCH TARGET KNOB VALUE DIR]..." >&2; exit 2; }
bin=$1 out=$2
shift 2
keys="l0 fvu kl score score_mean_abl mse dead_frac dense_frac clean_loss recons_loss zero_abl_loss mean_abl_loss tokens"
tmp=$out.tmp.$$
trap 'rm -f "$tmp"' EXIT
printf 'arch\tl0_target\tknob\tvalue' >"$tmp"
for k in $keys; do printf '\t%s' "$k"; done >>"$tmp"
printf '\tfit\n' >>"$tmp"
while [ $# -gt 0 ]; do
	# one JSON object with exactly the keys above (recon-score(1) --json)
	json=$("${bin}recon-score" --merge --json -q "$5/recon.tsz")
	printf '%s\t%s\t%s\t%s' "$1" "$2" "$3" "$4"
	for k in $keys; do
		v=$(printf '%s\n' "$json" | sed -n "s/.*\"$k\": \\([^,}]*\\).*/\\1/p")
		[ -n "$v" ] || { echo "frontier-table.sh: $5/recon.tsz: no $k" >&2; exit 1; }
		printf '\t%s' "$v"
	done
	printf '\t%s\n' "${5##*/}"
	shift 5
done >>"$tmp"
mv "$tmp" "$out"
