#!/bin/sh
test_description='pipelines/frontier.mk: archs x L0 targets from one read of the store, the relu calibration, the table and sae-frontier'"'"'s plot'
. "$(dirname "$0")/test-lib.sh"

missing=
for s in gpt2-tok gpt2-fwd mlp-tap sae-fit recon-score sae-frontier tsz; do
	test -x "$SRC_DIR/bin/$s" || missing="$missing $s"
done
if test -z "$missing"; then test_set_prereq STAGES
else echo "# stages not built:$missing: frontier tests are skipped"; fi

# code_is N COMMAND...: COMMAND exits with status N
code_is () { want=$1; shift; "$@"; test $? = "$want"; }

# a tiny frontier on the shipped model: 2 archs x 2 L0 points, a few seconds
front () {
	timeout 1800 make -f "$SRC_DIR/pipelines/frontier.mk" MODEL="$TINY_MODEL_DIR" CORPUS=corp \
		FRONTIER_DIR=fr LAYER=3 CTX=64 SHARDS=2 SHUFFLE=2000 DICT=1x ARCHS="relu topk" L0S="4 16" \
		TOK_ROWS=8 TOKENS=2K FIT_BATCH=128 DEAD_TOKENS=1K COEFS_relu="0.5 8" "$@"
}
dir=fr/runs/tiny-gpt2-docs/corp-ctx64-s2/blocks.3.mlp.hook_post-bf16/frontier-1x-t2K

test_expect_success STAGES,TINY_MODEL 'the frontier runs and prints where its table and plot are' '
	DEMO_DATASET_URL= sh "$SRC_DIR/pipelines/demo-corpus.sh" corp 12000 4000 2>/dev/null &&
	front >out 2>err &&
	grep "^table: $PWD/$dir/frontier.tsv$" out &&
	grep "^plot:  $PWD/$dir/frontier.svg$" out &&
	grep "^  FIT     2 points of topk and 2 calibration pilots of relu  [0-9.]* s$" out &&
	grep "^  CALIB   relu 4 [0-9.e+-]*; relu 16 [0-9.e+-]*  [0-9.]* s$" out &&
	grep "^  FIT     sweep of [12] dictionaries" out
'

test_expect_success STAGES,TINY_MODEL 'calib.tsv: a coefficient per target, none larger for a larger target L0' '
	test_line_count = 2 $dir/calib.tsv &&
	cut -f 1,2 $dir/calib.tsv >got && printf "relu\t4\nrelu\t16\n" >want && test_cmp want got &&
	awk -F "\t" "NR == 1 {a = \$3} NR == 2 {b = \$3} END {exit !(a > 0 && b > 0 && a >= b)}" $dir/calib.tsv
'

test_expect_success STAGES,TINY_MODEL 'the table: one line a point, the columns named, the numbers sane' '
	head -n 1 $dir/frontier.tsv >hdr &&
	printf "arch\tl0_target\tknob\tvalue\tl0\tfvu\tkl\tscore\tscore_mean_abl\tmse\tdead_frac\tdense_frac\tclean_loss\trecons_loss\tzero_abl_loss\tmean_abl_loss\ttokens\tfit\n" >want &&
	test_cmp want hdr &&
	tail -n +2 $dir/frontier.tsv | cut -f 1-3 >pts &&
	printf "relu\t4\tl1\nrelu\t16\tl1\ntopk\t4\tk\ntopk\t16\tk\n" >want && test_cmp want pts &&
	# topk: L0 at most k; every point: 0 < FVU < 2, KL >= 0, score <= 1,
	# fractions in [0, 1], the losses positive, dirs that exist
	awk -F "\t" "NR > 1 {
		if (\$1 == \"topk\" && (\$5 > \$2 || \$4 != \$2)) exit 1
		if (!(\$5 > 0 && \$6 > 0 && \$6 < 2 && \$7 >= 0 && \$8 <= 1 && \$11 >= 0 && \$11 <= 1)) exit 2
		if (!(\$12 >= 0 && \$12 <= 1 && \$13 > 0 && \$14 > 0 && \$17 > 0)) exit 3
		n++ } END {exit n != 4}" $dir/frontier.tsv &&
	for f in $(tail -n +2 $dir/frontier.tsv | cut -f 18); do test -s $dir/fits/$f/sae.tsz || return 1; done &&
	# the relu points trained at the calibrated l1
	tail -n +2 $dir/frontier.tsv | awk -F "\t" "\$1 == \"relu\" {print \$1 \"\t\" \$2 \"\t\" \$4}" >a &&
	cut -f 1-3 $dir/calib.tsv >b && test_cmp b a
'

test_expect_success STAGES,TINY_MODEL 'the plot: FVU and KL panels, one curve an arch in each' '
	grep -c "<polyline" $dir/frontier.svg >n && test "$(cat n)" = 4 &&
	grep -c "<circle" $dir/frontier.svg >n && test "$(cat n)" = 8 &&
	grep "FVU (fraction of variance unexplained)" $dir/frontier.svg &&
	grep "KL(clean || spliced)" $dir/frontier.svg &&
	grep "font-size=\"12\">relu</text>" $dir/frontier.svg && grep "font-size=\"12\">topk</text>" $dir/frontier.svg &&
	tail -n 1 $dir/frontier.svg >last && echo "</svg>" >want && test_cmp want last
'

test_expect_success STAGES,TINY_MODEL 'a rerun redoes nothing' '
	touch marker &&
	front >out 2>err &&
	find fr -newer marker >redone && test_line_count = 0 redone &&
	grep "^table: " out
'

# ARCH_FLAGS_<arch> goes to that arch's fits alone (pilots and points), and
# changing it redoes the fits (it is part of the recipe's params)
test_expect_success STAGES,TINY_MODEL 'ARCH_FLAGS_topk reaches the topk fits only, and a change redoes them' '
	front ARCH_FLAGS_topk="--aux-k 7" >out 2>err &&
	grep "^  FIT     2 points of topk and 2 calibration pilots of relu" out &&
	test $(tail -n +2 $dir/frontier.tsv | wc -l) = 4 &&
	for p in $dir/pilots/relu-*; do
		tsz json --headers $p/sae.tsz | head -n 1 >h && grep "\"--lr\",\"4e-3\"" h && ! grep "aux-k" h || return 1
	done &&
	for f in $(tail -n +2 $dir/frontier.tsv | cut -f 18); do
		tsz json --headers $dir/fits/$f/sae.tsz | head -n 1 >h &&
		case $f in
		topk-*) grep "\"--lr\",\"4e-3\",.*\"--aux-k\",\"7\"" h ;;
		*) grep "\"--lr\",\"4e-3\"" h && ! grep "aux-k" h ;;
		esac || return 1
	done
'

test_expect_success STAGES 'sae-frontier: bad tables are refused with one line naming the input' '
	printf "arch\tl0\tfvu\n" >nokl.tsv &&
	code_is 1 sae-frontier nokl.tsv >o 2>e && grep "^sae-frontier: nokl.tsv: no column .kl. in the header line$" e &&
	printf "arch\tl0\tfvu\tkl\n" >norows.tsv &&
	code_is 1 sae-frontier norows.tsv >o 2>e && grep "^sae-frontier: norows.tsv: no rows after the header line$" e &&
	printf "arch\tl0\tfvu\tkl\ntopk\t8\tnull\t0.1\n" >null.tsv &&
	code_is 1 sae-frontier null.tsv >o 2>e && grep "^sae-frontier: null.tsv: line 2: fvu .null. is not a number >= 0$" e &&
	printf "arch\tl0\tfvu\tkl\ntopk\t0\t0.5\t0.1\n" >zero.tsv &&
	code_is 1 sae-frontier zero.tsv >o 2>e && grep "line 2: l0 must be > 0" e &&
	printf "arch\tl0\tfvu\tkl\ntopk\t8\n" >short.tsv &&
	code_is 1 sae-frontier short.tsv >o 2>e && grep "line 2: 2 fields, no .fvu." e &&
	: >empty.tsv && code_is 1 sae-frontier empty.tsv >o 2>e && grep "empty.tsv: empty" e &&
	code_is 1 sae-frontier missing.tsv 2>e && grep "^sae-frontier: missing.tsv: cannot open" e &&
	code_is 2 sae-frontier --bogus 2>e &&
	! test -e never.svg && code_is 1 sae-frontier -o never.svg null.tsv 2>e && ! test -e never.svg
'

test_expect_success STAGES 'sae-frontier: a table from stdin, its title escaped' '
	printf "arch\tl0\tfvu\tkl\tx\ntopk\t8\t0.4\t0.1\ty\ntopk\t32\t0.2\t0.05\ty\nrelu\t10\t0.5\t0.2\ty\n" |
		sae-frontier -t "a <b> & c" >p.svg &&
	grep "a &lt;b&gt; &amp; c</text>" p.svg &&
	grep -c "<polyline" p.svg >n && test "$(cat n)" = 4 &&
	sae-frontier --help >h && grep "^Usage: sae-frontier" h
'

test_done
