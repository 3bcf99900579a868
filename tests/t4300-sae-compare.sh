#!/bin/sh
test_description='sae-compare: matches and children of SAEs whose relations are built in; duplicate and broad features; the page; refusals'
. "$(dirname "$0")/test-lib.sh"

# tensor FILE RECORD NAME: the values of one tensor of record RECORD (1 = first), comma-separated
tensor () { tsz json --full "$1" | sed -n "$2p" | sed -n "s/.*\"$3\":{[^}]*\"data\":\[\([^]]*\)\].*/\1/p"; }
# jget FILE KEY: the first number of KEY in a JSON file
jget () { tr -d ' \n' <"$1" | grep -o "\"$2\":[^,}]*" | head -n 1 | cut -d: -f2; }

# exit_code N CMD...: CMD exits with N (not 0, not a signal)
exit_code () { want=$1 && shift && { "$@"; rc=$?; } && test "$rc" = "$want" || { echo "exit $rc, want $want"; return 1; }; }

# mk_sae DIR D F [HOOK]: a relu SAE file from DIR's npy files
mk_sae () {
	tsz from-npy --rows 1000000 --meta kind=sae --meta arch=relu --meta d=$2 --meta f=$3 --meta k=0 \
		--meta norm_scale=1 --meta hook=${4:-blocks.0.mlp.hook_post} \
		W_enc=$1/W_enc.npy b_enc=$1/b_enc.npy W_dec=$1/W_dec.npy b_dec=$1/b_dec.npy >$1.tsz
}

test_expect_success NUMPY 'setup: a small SAE S (4), a large one L (8) with split copies of its directions, rows' '
	"$PYTHON" "$TEST_DIRECTORY/helpers/cmp_saes.py" . && mk_sae S 16 4 && mk_sae L 16 8 &&
	tsz from-npy acts=acts.npy >acts.tsz
'

test_expect_success NUMPY 'decoder matches both ways, ties to the lower index' '
	sae-compare S.tsz L.tsz >c.tsz &&
	test "$(tensor c.tsz 1 dec_up_best)" = "0,2,5,7" &&
	test "$(tensor c.tsz 2 dec_down_best)" = "0,0,1,1,1,2,0,3" &&
	test "$(tensor c.tsz 1 dec_up_cos)" = "0.89442718,0.89442718,1.0,0.707106769" &&
	tensor c.tsz 2 dec_down_cos | grep "^0.89442718,0.89442718,0.89442718,0.89442718,0.89442718,1.0,0.0,0.707106769$"
'

test_expect_success NUMPY 'without activations the children are the decoder rule alone: L7 is a child of S3' '
	test "$(tensor c.tsz 2 parent)" = "0,0,1,1,1,2,-1,3" &&
	test "$(tensor c.tsz 1 n_children)" = "2,3,1,1" &&
	! tsz json c.tsz | grep act_
'

test_expect_success NUMPY 'with activations S3 does not cover L7 (silent where L7 fires): no parent' '
	sae-compare --acts acts.tsz --rows 400 -s sum.json L.tsz S.tsz >ca.tsz &&
	tsz json ca.tsz | head -n 1 | grep "\"label\":\"4\",\"f\":4" &&
	test "$(tensor ca.tsz 2 parent)" = "0,0,1,1,1,2,-1,-1" &&
	test "$(tensor ca.tsz 2 parent_cover)" = "1.0,1.0,1.0,1.0,1.0,1.0,0.0,0.0" &&
	test "$(tensor ca.tsz 1 n_children)" = "2,3,1,0" &&
	test "$(tensor ca.tsz 1 sample_fires)" = "100,150,50,0" &&
	test "$(tensor ca.tsz 2 sample_fires)" = "100,100,150,150,150,50,50,50"
'

test_expect_success NUMPY 'activation matches: S2 and its copy L5 correlate exactly; silent latents have none' '
	tensor ca.tsz 1 act_up_best | grep "^[01],[234],5,-1$" &&
	tensor ca.tsz 1 act_up_corr | grep "^0\.9[0-9]*,0\.9[0-9]*,1\.0,null$" &&
	tensor ca.tsz 2 act_down_best | grep "^0,0,1,1,1,2,-1,-1$"
'

test_expect_success NUMPY 'the summary: pair shares, MMCS, the largest tree first' '
	test "$(jget sum.json with_children)" = 0.75 && test "$(jget sum.json split)" = 0.5 &&
	test "$(jget sum.json children)" = 0.75 && test "$(jget sum.json max_children)" = 3 &&
	test "$(jget sum.json children_per_parent)" = 2.0 &&
	test "$(jget sum.json mmcs_small)" = 0.87399 &&
	# over the latents that fire on the sample only: S3 (silent) left out
	tensor ca.tsz 1 dec_up_cos >up.txt && tensor ca.tsz 1 sample_fires >fi.txt &&
	want=$("$PYTHON" -c "c = [float(x) for x in open(\"up.txt\").read().split(\",\")]
f = [int(x) for x in open(\"fi.txt\").read().split(\",\")]
v = [a for a, n in zip(c, f) if n > 0]
print(\"%.4f\" % (sum(v) / len(v)))") &&
	test "$(printf "%.4f" "$(jget sum.json mmcs_small_fired)")" = "$want" &&
	test "$want" != "$(printf "%.4f" "$(jget sum.json mmcs_small)")" &&
	tr -d " \n" <sum.json | grep "\"trees\":\[{\"dict\":\"4\",\"feature\":1,\"descendants\":3,\"n_children\":3,\"children\":\[{\"dict\":\"8\",\"feature\":2," &&
	tsz json ca.tsz | tail -n 1 | grep "^{\"kind\":\"compare_summary\",\"summary\":{\"hook\":\"blocks.0.mlp.hook_post\""
'

test_expect_success NUMPY 'the rules move the children: --cos-min 0.95 leaves the exact copy only; --cover-min 0 takes L7 back' '
	sae-compare --cos-min 0.95 S.tsz L.tsz >c95.tsz && test "$(tensor c95.tsz 1 n_children)" = "0,0,1,0" &&
	sae-compare --acts acts.tsz --rows 400 --cover-min 0 S.tsz L.tsz >c0.tsz &&
	test "$(tensor c0.tsz 1 n_children)" = "2,3,1,1"
'

# spread TOPK.tsz: per feature, the distinct tokens at the top examples' positions, counted in Python
spread () {
	tsz json --full "$1" | "$PYTHON" -c "import json, sys
out = []
for line in sys.stdin:
    r = json.loads(line)
    if r[\"kind\"] != \"feature\": continue
    t, s = r[\"tensors\"][\"top_tokens\"][\"data\"], r[\"tensors\"][\"top_src\"][\"data\"]
    out.append(str(len({t[k][s[k][2]] for k in range(len(t))})))
print(\",\".join(out))"
}

test_expect_success NUMPY 'explanations and top examples: exact and near duplicates, breadth by spread' '
	mk-topk --features 4 --vocab 14 >S.topk && mk-topk --features 8 --vocab 14 >L.topk &&
	explain-gpt4 --backend baseline S.topk >S.expl 2>/dev/null && explain-gpt4 --backend baseline L.topk >L.expl 2>/dev/null &&
	sae-compare -F S.topk -F L.topk -e S.expl -e L.expl -s d.json S.tsz L.tsz >d.tsz &&
	test "$(tensor d.tsz 1 dup_exact)" = "-1,-1,-1,-1" &&
	test "$(tensor d.tsz 2 dup_exact)" = "4,5,6,7,0,1,2,3" &&
	test "$(tensor d.tsz 2 dup_near)" = "4,5,6,7,0,1,2,3" &&
	test "$(tensor d.tsz 1 top_spread)" = "$(spread S.topk)" && test "$(tensor d.tsz 2 top_spread)" = "$(spread L.topk)" &&
	wide=$(spread L.topk | tr , "\n" | awk "\$1 > 10" | wc -l) &&
	tr -d " \n" <d.json | grep "\"equal_n\":4" &&
	tr -d " \n" <d.json | grep "\"label\":\"8\",[^}]*\"live\":8,\"broad\":$(awk "BEGIN { print $wide / 8 }"),\"broad_density\":0.0,[^}]*\"explained\":8,\"dup_exact\":1.0,\"dup_near\":1.0,\"dup_exact_equal_n\":0.0,\"dup_near_equal_n\":0.0"
'

test_expect_success NUMPY 'the thresholds move the shares: near duplicates at Jaccard 0.5, broad by density 0.005' '
	sae-compare -F S.topk -F L.topk -e S.expl -e L.expl --near-min 0.5 --broad-density 0.005 -s d5.json S.tsz L.tsz >d5.tsz &&
	test "$(tensor d5.tsz 1 dup_near | tr , "\n" | grep -c -- "-1")" = 0 &&
	tr -d " \n" <d5.json | grep "\"label\":\"4\",[^}]*\"live\":4,\"broad\":1.0,\"broad_density\":1.0," &&
	sae-compare -F S.topk -F L.topk --broad-spread 1 -s d1.json S.tsz L.tsz >/dev/null &&
	tr -d " \n" <d1.json | grep "\"label\":\"8\",[^}]*\"live\":8,\"broad\":0.0,"
'

test_expect_success NUMPY 'sae-report --compare draws the tables and trees; refuses other inputs with it' '
	sae-report --compare ca.tsz -t "S and L" -o page.html &&
	grep "<h1>S and L</h1>" page.html && grep "<b>4 #1</b>" page.html && grep "split (2+)" page.html &&
	test_must_fail sae-report --compare ca.tsz -s S.tsz 2>err &&
	grep "^sae-report: --compare makes one page of its own: give no other input, and -o, not --pages$" err &&
		test_must_fail sae-report --compare ca.tsz -D dir 2>err && grep "not --pages" err && ! test -e dir &&
	test_must_fail sae-report --compare S.tsz 2>err &&
	grep "^sae-report: S.tsz: record 1: kind .sae. is not .compare. or .compare_summary. (sae-compare output)$" err
'

test_expect_success NUMPY 'refusals: one SAE; -F not one per SAE; mismatched D; another hook' '
	exit_code 2 sae-compare S.tsz 2>err && grep "^sae-compare: give two or more SAE files (got 1)$" err &&
	exit_code 2 sae-compare -F S.topk S.tsz L.tsz 2>err &&
	grep "^sae-compare: 1 --features for 2 SAE files: give one per SAE, in their order$" err &&
	mkdir W && "$PYTHON" -c "import numpy as np
for n in [\"W_enc\", \"b_enc\", \"W_dec\", \"b_dec\"]:
    a = np.load(\"S/%s.npy\" % n)
    np.save(\"W/%s.npy\" % n, a[:8] if n == \"W_enc\" else a[:, :8] if n == \"W_dec\" else a if n == \"b_enc\" else a[:8])" &&
	mk_sae W 8 4 && test_must_fail sae-compare S.tsz W.tsz 2>err &&
	grep "^sae-compare: W.tsz: d=8, but S.tsz has d=16: dictionaries of one hook have one width$" err &&
	cp -r L H && mk_sae H 16 8 blocks.1.mlp.hook_post && test_must_fail sae-compare S.tsz H.tsz 2>err &&
	grep "^sae-compare: H.tsz: hook .blocks.1.mlp.hook_post., but S.tsz has hook .blocks.0.mlp.hook_post.$" err
'

test_expect_success NUMPY 'refusals: a missing file, a wrong kind, a truncated stream, too few rows' '
	test_must_fail sae-compare S.tsz nope.tsz 2>err && grep "^sae-compare: nope.tsz: " err &&
	test_must_fail sae-compare -F S.expl -F L.topk S.tsz L.tsz 2>err &&
	grep "^sae-compare: S.expl: record 1: kind .explanation. is not .feature. (topk-ctx output)$" err &&
	head -c 300 L.expl >cut.expl && test_must_fail sae-compare -e S.expl -e cut.expl S.tsz L.tsz 2>err &&
	grep "^sae-compare: cut.expl: " err &&
	test_must_fail sae-compare -a acts.tsz --rows 401 S.tsz L.tsz 2>err &&
	grep "^sae-compare: acts.tsz: 400 rows, fewer than the 401 asked for (--rows)$" err &&
	test_must_fail sae-compare -a S.tsz S.tsz L.tsz 2>err && grep "^sae-compare: S.tsz: " err &&
	test_must_fail sae-compare -e L.expl -e S.expl S.tsz L.tsz 2>err &&
	grep "^sae-compare: L.expl: record 5: feature 4 is outside \[0, 4) of S.tsz$" err
'

test_expect_success NUMPY 'a failed run leaves no output file' '
	test_must_fail sae-compare -a acts.tsz --rows 401 -o out.tsz S.tsz L.tsz &&
	test_path_is_missing out.tsz && ! ls | grep "^out"
'

test_expect_success TINY_MODEL 'pipelines/compare.mk: two sizes from one store, compared and drawn; a second run redoes nothing' '
	DEMO_DATASET_URL= sh "$SRC_DIR/pipelines/demo-corpus.sh" corp 16000 4000 2>/dev/null &&
	cmp_mk () {
		timeout 900 make -f "$SRC_DIR/pipelines/compare.mk" CORPUS=corp SIZES="1x 2x" CTX=64 SHARDS=2 TOKENS=3K \
			SHUFFLE=2000 TOK_ROWS=8 TOPK_RECORDS=1 COMPARE_ROWS=256 FIT_FLAGS="--batch 256 --warmup 2 --val-rows 256" "$@"
	} &&
	cmp_mk compare >out 2>err &&
	d=runs/tiny-gpt2-docs/corp-ctx64-s2/blocks.3.mlp.hook_post-bf16/sweep/compare-1x-2x-topk-t3K &&
	grep "^summary: $PWD/$d/summary.json$" out && grep "^  COMPARE 1x 2x: " out &&
	tr -d " \n" <$d/summary.json | grep "\"dictionaries\":\[{\"label\":\"1x\",\"f\":1024,[^]]*\"label\":\"2x\",\"f\":2048," &&
	tr -d " \n" <$d/summary.json | grep "\"sample_rows\":256," &&
	grep "<td>1x</td><td class=n>1024</td><td class=n>[0-9.]*%</td>" $d/report.html &&
	cmp_mk compare >out2 2>err2 && ! grep "^  [A-Z]" out2
'

test_done
