#!/bin/sh
test_description='recon-score: loss recovered, ablations, KL, MSE, FVU, L0 against a numpy reference; exact merge; refusals'
. "$(dirname "$0")/test-lib.sh"

GREF="$TEST_DIRECTORY/helpers/gpt2_ref.py"
RREF="$TEST_DIRECTORY/helpers/recon_ref.py"

# mksae DIR HOOK ARCH K SCALE: the SAE file DIR.tsz from DIR/*.npy
mksae () {
	extra= &&
	for n in b_enc b_gate threshold r_mag b_mag; do
		if test -f "$1/$n.npy"; then extra="$extra $n=$1/$n.npy"; fi
	done &&
	d=$("$PYTHON" -c "import numpy as np; print(np.load('$1/W_enc.npy').shape[0])") &&
	f=$("$PYTHON" -c "import numpy as np; print(np.load('$1/W_enc.npy').shape[1])") &&
	tsz from-npy --rows 100000000 --meta kind=sae --meta arch=$3 --meta k=$4 --meta d=$d --meta f=$f \
		--meta "hook=$2" --meta norm_scale=$5 --meta model=test \
		W_enc="$1/W_enc.npy" b_dec="$1/b_dec.npy" W_dec="$1/W_dec.npy" $extra >"$1.tsz"
}

# windows B T V SEED OUT.npy: random windows, BOS-led like gpt2-tok (BOS = V-1 here)
windows () {
	"$PYTHON" -c "
import numpy as np
t = np.random.default_rng($4).integers(0, $3 - 1, ($1, $2)).astype(np.int32)
t[:, 0] = $3 - 1
np.save('$5', t)"
}

test_expect_success 'help and version' '
	recon-score --help >out && grep "^Usage: recon-score --model DIR --sae FILE" out &&
	grep -- "--merge" out && grep -- "--include-bos" out &&
	recon-score --version >out && grep "^recon-score (saepipe)" out
'

test_expect_success NUMPY 'tiny random checkpoints, SAEs and windows' '
	"$PYTHON" "$GREF" make m1 --layers 2 --embd 48 --heads 3 --vocab 97 --positions 16 --seed 1 &&
	"$PYTHON" "$GREF" make m2 --layers 3 --embd 32 --heads 2 --vocab 61 --positions 12 --seed 2 \
		--dtype f16 --prefix --lm-head own &&
	windows 7 16 97 10 w1.npy && tsz from-npy --rows 3 tokens=w1.npy >w1.tsz &&
	windows 5 12 61 11 w2.npy && tsz from-npy tokens=w2.npy >w2.tsz &&
	"$PYTHON" "$RREF" sae relu48 --d 48 --f 96 --seed 3 --scale 2 &&
	mksae relu48 blocks.1.hook_resid_mid relu 0 1.0 &&
	"$PYTHON" "$RREF" sae topk192 --d 192 --f 256 --seed 4 &&
	mksae topk192 blocks.0.mlp.hook_post topk 12 2.5 &&
	"$PYTHON" "$RREF" sae btk32 --d 32 --f 80 --seed 5 --arch batchtopk &&
	mksae btk32 blocks.2.hook_resid_post batchtopk 10 0.5 &&
	"$PYTHON" "$RREF" sae jr48 --d 48 --f 96 --seed 7 --scale 2 --arch jumprelu &&
	mksae jr48 blocks.1.hook_resid_mid jumprelu 0 1.5 &&
	"$PYTHON" "$RREF" sae gt48 --d 48 --f 96 --seed 8 --scale 2 --arch gated &&
	mksae gt48 blocks.1.hook_resid_mid gated 0 0.8 &&
	"$PYTHON" "$RREF" sae pre32 --d 32 --f 64 --seed 6 &&
	mksae pre32 blocks.0.hook_resid_pre relu 0 1.0
'

# model tokens sae hook arch k scale [flags]
for case in \
	"m1 w1 relu48 blocks.1.hook_resid_mid relu 0 1.0" \
	"m1 w1 relu48 blocks.1.hook_resid_mid relu 0 1.0 --include-bos" \
	"m1 w1 topk192 blocks.0.mlp.hook_post topk 12 2.5" \
	"m2 w2 btk32 blocks.2.hook_resid_post batchtopk 10 0.5" \
	"m1 w1 jr48 blocks.1.hook_resid_mid jumprelu 0 1.5" \
	"m1 w1 gt48 blocks.1.hook_resid_mid gated 0 0.8" \
	"m2 w2 pre32 blocks.0.hook_resid_pre relu 0 1.0 --include-bos"
do
	set -- $case
	test_expect_success NUMPY "numbers match numpy: $4 $5 $8" "
		recon-score -m $1 --sae $3.tsz -b 3 $8 --json $2.tsz >got.json 2>table &&
		grep '^  score (vs zero)' table &&
		\"\$PYTHON\" \"\$RREF\" eval $1 $2.npy $3 $4 --arch $5 --k $6 --norm-scale $7 $8 >ref.json &&
		\"\$PYTHON\" \"\$RREF\" check got.json ref.json >check.out &&
		cat check.out >&3 && test_line_count = 13 check.out
	"
done

test_expect_success NUMPY 'the reference check can fail: another hook is caught' '
	recon-score -m m1 --sae relu48.tsz --json w1.tsz >got.json 2>/dev/null &&
	"$PYTHON" "$RREF" eval m1 w1.npy relu48 blocks.1.hook_resid_pre >ref.json &&
	test_must_fail "$PYTHON" "$RREF" check got.json ref.json >check.out &&
	grep "^ok clean_loss" check.out && grep "^FAIL recons_loss" check.out && grep "^FAIL mse" check.out
'

test_expect_success NUMPY 'dead and dense features are counted' '
	"$PYTHON" -c "
import numpy as np
b = np.load(\"relu48/b_enc.npy\"); b[:24] = -1e4; b[24:40] = 1e4
np.save(\"relu48/b_enc.npy\", b)" &&
	mksae relu48 blocks.1.hook_resid_mid relu 0 1.0 &&
	recon-score -m m1 --sae relu48.tsz --json w1.tsz >got.json 2>/dev/null &&
	"$PYTHON" "$RREF" eval m1 w1.npy relu48 blocks.1.hook_resid_mid >ref.json &&
	"$PYTHON" "$RREF" check got.json ref.json >check.out &&
	grep "^ok dead_frac: got 0.25 " check.out && grep "^ok dense_frac: got 0.7187" check.out
'

test_expect_success NUMPY 'the record: kind recon, metrics, sums, fires; table on stderr' '
	recon-score -m m1 --sae relu48.tsz w1.tsz >r.tsz 2>table &&
	tsz json r.tsz >json && test_line_count = 1 json &&
	grep "\"kind\":\"recon\"" json && grep "\"hook\":\"blocks.1.hook_resid_mid\"" json &&
	grep "\"pos0\":1" json && grep "\"tokens\":112" json && grep "\"n_pred\":105" json &&
	grep "\"n_rows\":105" json && grep "\"fires\":{\"dtype\":\"i64\",\"shape\":\[96\]}" json &&
	grep "^recon-score: blocks.1.hook_resid_mid, 112 tokens in 7 windows" table &&
	tsz to-npy --name fires fires.npy r.tsz
'

test_expect_success NUMPY 'stdin, -o atomically, --progress, -q; a failed run writes nothing' '
	recon-score -m m1 --sae relu48.tsz --progress -o out.tsz <w1.tsz >stdout 2>progress &&
	test ! -s stdout && tsz info out.tsz | grep "^records: 1" &&
	grep "two passes.*tokens" progress &&
	recon-score -m m1 --sae relu48.tsz -q --json <w1.tsz >a.json 2>err && test ! -s err &&
	recon-score -m m1 --sae relu48.tsz --json w1.tsz >b.json 2>/dev/null && test_cmp a.json b.json &&
	"$PYTHON" -c "import numpy as np; t = np.load(\"w1.npy\"); t[6, 2] = 500; np.save(\"late.npy\", t)" &&
	tsz from-npy --rows 3 tokens=late.npy >late.tsz &&
	test_must_fail recon-score -m m1 --sae relu48.tsz -o bad.tsz late.tsz >out 2>err &&
	grep "^recon-score: late.tsz: record 3: token id 500 at row 0, position 2" err &&
	test ! -e bad.tsz && test ! -s out && ls >files && ! grep "bad.tsz" files
'

test_expect_success NUMPY '--mean: a .npy, a recon_mean record, a recon record; --mean-only' '
	"$PYTHON" -c "import numpy as np; np.save(\"mu.npy\", np.random.default_rng(9).standard_normal(48).astype(np.float32))" &&
	recon-score -m m1 --sae relu48.tsz --mean mu.npy --json w1.tsz >got.json 2>/dev/null &&
	"$PYTHON" "$RREF" eval m1 w1.npy relu48 blocks.1.hook_resid_mid --mean mu.npy >ref.json &&
	"$PYTHON" "$RREF" check got.json ref.json >check.out &&
	recon-score -m m1 --hook blocks.1.hook_resid_mid --mean-only w1.tsz >mean.tsz 2>/dev/null &&
	tsz json mean.tsz >json && grep "\"kind\":\"recon_mean\"" json && grep "\"n_rows\":105" json &&
	recon-score -m m1 --sae relu48.tsz --json w1.tsz >a.json 2>/dev/null &&
	recon-score -m m1 --sae relu48.tsz --mean mean.tsz --json w1.tsz >b.json 2>/dev/null &&
	recon-score -m m1 --sae relu48.tsz w1.tsz 2>/dev/null >full.tsz &&
	recon-score -m m1 --sae relu48.tsz --mean full.tsz --json w1.tsz >c.json 2>/dev/null &&
	test_cmp a.json b.json && test_cmp a.json c.json &&
	! test_cmp a.json got.json >/dev/null
'

test_expect_success NUMPY 'shards merge into the single run: tsz split, mean pass, merge' '
	windows 11 16 97 20 w3.npy && tsz from-npy --rows 2 tokens=w3.npy >w3.tsz &&
	tsz split -n 3 sh w3.tsz &&
	for s in sh.00 sh.01 sh.02; do
		recon-score -m m1 --hook blocks.1.hook_resid_mid --mean-only $s.tsz >$s.mean.tsz 2>/dev/null || return 1
	done &&
	recon-score --merge sh.00.mean.tsz sh.01.mean.tsz sh.02.mean.tsz >mean.tsz 2>/dev/null &&
	for s in sh.00 sh.01 sh.02; do
		recon-score -m m1 --sae relu48.tsz --mean mean.tsz -b 2 $s.tsz >$s.r.tsz 2>/dev/null || return 1
	done &&
	recon-score --merge --json sh.00.r.tsz sh.01.r.tsz sh.02.r.tsz >merged.json 2>table &&
	recon-score -m m1 --sae relu48.tsz -b 5 --json w3.tsz >single.json 2>/dev/null &&
	"$PYTHON" "$RREF" check --tol 1e-6 merged.json single.json >check.out &&
	cat check.out >&3 && grep "^ok tokens: got 176 ref 176 " check.out &&
	recon-score --merge sh.00.r.tsz sh.01.r.tsz sh.02.r.tsz >merged.tsz 2>/dev/null &&
	tsz json merged.tsz >json && grep "\"mean_exact\":true" json && grep "\"merged\":3" json &&
	tsz cat sh.00.r.tsz sh.01.r.tsz >two.tsz &&
	recon-score --merge --json two.tsz sh.02.r.tsz >merged2.json 2>/dev/null &&
	test_cmp merged.json merged2.json
'

test_expect_success NUMPY 'merging shards with their own means warns and says so' '
	for s in sh.00 sh.01; do
		recon-score -m m1 --sae relu48.tsz $s.tsz >$s.own.tsz 2>/dev/null || return 1
	done &&
	recon-score --merge sh.00.own.tsz sh.01.own.tsz >m.tsz 2>err &&
	grep "^recon-score: the shards used different ablation means" err &&
	tsz json m.tsz >json && grep "\"mean_exact\":false" json
'

test_expect_success NUMPY 'the SAE splice itself matters: identity and zero SAEs on the random model' '
	"$PYTHON" "$RREF" sae id48 --d 48 --kind identity && mksae id48 blocks.1.hook_resid_mid relu 0 1.0 &&
	"$PYTHON" "$RREF" sae z48 --d 48 --f 64 --kind zero && mksae z48 blocks.1.hook_resid_mid relu 0 1.0 &&
	recon-score -m m1 --sae id48.tsz --json w1.tsz >id.json 2>/dev/null &&
	recon-score -m m1 --sae z48.tsz --json w1.tsz >z.json 2>/dev/null &&
	"$PYTHON" -c "
import json, sys
i, z = json.load(open(\"id.json\")), json.load(open(\"z.json\"))
print(i, z)
assert abs(i[\"score\"] - 1) < 1e-4 and i[\"kl\"] < 1e-6 and i[\"fvu\"] < 1e-10, i
assert abs(z[\"score\"]) < 1e-12 and z[\"recons_loss\"] == z[\"zero_abl_loss\"] and z[\"dead_frac\"] == 1, z
" >&3
'

# ---- the real tiny model ----
test_expect_success TINY_MODEL,NUMPY 'shipped model: identity SAE scores 1, zero SAE scores 0' '
	cat "$SRC_DIR/README.md" "$TINY_MODEL_DIR/README.md" | LC_ALL=C tr -cd "\n -~" >text &&
	"$PYTHON" "$GREF" windows "$TINY_MODEL_DIR" text tw.npy 64 &&
	"$PYTHON" -c "import numpy as np; t = np.load(\"tw.npy\"); np.save(\"tw.npy\", t[:24])" &&
	tsz from-npy tokens=tw.npy >tw.tsz &&
	"$PYTHON" "$RREF" sae id256 --d 256 --kind identity && mksae id256 blocks.1.hook_resid_post relu 0 1.0 &&
	"$PYTHON" "$RREF" sae z256 --d 256 --f 512 --kind zero && mksae z256 blocks.1.hook_resid_post relu 0 1.0 &&
	recon-score -m "$TINY_MODEL_DIR" --sae id256.tsz --json tw.tsz >id.json 2>table &&
	cat table >&3 &&
	recon-score -m "$TINY_MODEL_DIR" --sae z256.tsz --json tw.tsz >z.json 2>/dev/null &&
	"$PYTHON" -c "
import json
i, z = json.load(open(\"id.json\")), json.load(open(\"z.json\"))
print(i, z)
assert 2 < i[\"clean_loss\"] < 7 and i[\"zero_abl_loss\"] > i[\"clean_loss\"] + 0.5, i
assert abs(i[\"score\"] - 1) < 1e-3 and abs(i[\"score_mean_abl\"] - 1) < 1e-3 and i[\"kl\"] < 1e-4, i
assert i[\"fvu\"] < 1e-8 and abs(i[\"l0\"] - 256) < 1, i
assert abs(z[\"score\"]) < 1e-9 and z[\"l0\"] == 0 and z[\"fvu\"] > 1, z
assert z[\"clean_loss\"] == i[\"clean_loss\"] and z[\"mean_abl_loss\"] == i[\"mean_abl_loss\"]
" >&3
'

test_expect_success TINY_MODEL,NUMPY 'shipped model: an SAE trained by sae-fit recovers most of the loss' '
	cat "$SRC_DIR"/man/man1/*.1 "$SRC_DIR/README.md" >corpus.txt &&
	gpt2-tok -m "$TINY_MODEL_DIR" --ctx 64 --drop-tail --rows 48 corpus.txt >ctok.tsz &&
	gpt2-fwd -m "$TINY_MODEL_DIR" --hook blocks.1.hook_resid_post ctok.tsz |
	mlp-tap --hook blocks.1.hook_resid_post --shuffle-buffer 100000 >rows.tsz &&
	sae-fit --arch topk --dict 4x --k 32 --batch 1024 --epochs 2 --lr 1e-3 --warmup 10 --aux-k 0 \
		rows.tsz >fit.tsz 2>/dev/null &&
	tsz head -n 1 ctok.tsz >eval.tsz &&
	recon-score -m "$TINY_MODEL_DIR" --sae fit.tsz --json eval.tsz >fit.json 2>table &&
	cat table >&3 &&
	recon-score -m "$TINY_MODEL_DIR" --sae z256.tsz --json eval.tsz >z.json 2>/dev/null &&
	"$PYTHON" -c "
import json
s, z = json.load(open(\"fit.json\")), json.load(open(\"z.json\"))
assert s[\"tokens\"] == 48 * 64 and s[\"clean_loss\"] == z[\"clean_loss\"], (s, z)
assert 0.5 < s[\"score\"] < 1.2 and s[\"fvu\"] < 0.5 and s[\"l0\"] <= 32, s
assert s[\"recons_loss\"] < s[\"mean_abl_loss\"] < s[\"zero_abl_loss\"], s
assert s[\"kl\"] < z[\"kl\"] and s[\"mse\"] < z[\"mse\"], (s, z)
"
'

# ---- refusals ----
test_expect_success NUMPY 'a --hook other than the SAE'"'"'s is refused' '
	test_must_fail recon-score -m m1 --sae relu48.tsz --hook blocks.0.hook_resid_mid w1.tsz >out 2>err &&
	test_line_count = 1 err &&
	grep "^recon-score: relu48.tsz: --hook blocks.0.hook_resid_mid, but the SAE was trained on blocks.1.hook_resid_mid$" err &&
	test ! -s out
'

test_expect_success NUMPY 'an SAE whose width is not the hook'"'"'s is refused' '
	mksae relu48 blocks.1.mlp.hook_post relu 0 1.0 && cp relu48.tsz wide.tsz &&
	mksae relu48 blocks.1.hook_resid_mid relu 0 1.0 &&
	test_must_fail recon-score -m m1 --sae wide.tsz w1.tsz >out 2>err &&
	grep "^recon-score: wide.tsz: the SAE'"'"'s width d=48 does not match blocks.1.mlp.hook_post'"'"'s width 192$" err
'

test_expect_success NUMPY 'an SAE without a hook needs --hook' '
	tsz from-npy --meta kind=sae --meta arch=relu --meta d=48 --meta f=96 \
		W_enc=relu48/W_enc.npy b_dec=relu48/b_dec.npy b_enc=relu48/b_enc.npy W_dec=relu48/W_dec.npy >nohook.tsz &&
	test_must_fail recon-score -m m1 --sae nohook.tsz w1.tsz 2>err &&
	grep "^recon-score: --hook NAME is required (nohook.tsz records no hook)$" err &&
	recon-score -m m1 --sae nohook.tsz --hook blocks.1.hook_resid_mid --json w1.tsz >a.json 2>/dev/null &&
	recon-score -m m1 --sae relu48.tsz --json w1.tsz >b.json 2>/dev/null && test_cmp a.json b.json
'

test_expect_success NUMPY 'bad inputs: missing SAE, not an SAE, bad token, long window, truncated, no tokens' '
	test_must_fail recon-score -m m1 --sae nope.tsz w1.tsz 2>err &&
	grep "^recon-score: nope.tsz: " err &&
	test_must_fail recon-score -m m1 --sae w1.tsz w1.tsz 2>err &&
	grep "^recon-score: w1.tsz: not an SAE file" err &&
	"$PYTHON" -c "import numpy as np; t = np.load(\"w1.npy\"); t[2, 5] = 97; np.save(\"bad.npy\", t)" &&
	tsz from-npy tokens=bad.npy >bad.tsz &&
	test_must_fail recon-score -m m1 --sae relu48.tsz bad.tsz 2>err &&
	grep "^recon-score: bad.tsz: record 1: token id 97 at row 2, position 5 is outside the model'"'"'s vocabulary \[0, 97)$" err &&
	windows 2 17 97 1 long.npy && tsz from-npy tokens=long.npy >long.tsz &&
	test_must_fail recon-score -m m1 --sae relu48.tsz long.tsz 2>err &&
	grep "^recon-score: long.tsz: record 1: windows of 17 tokens exceed the model'"'"'s n_positions 16$" err &&
	head -c 200 w1.tsz >cut.tsz &&
	test_must_fail recon-score -m m1 --sae relu48.tsz cut.tsz >out 2>err &&
	grep "^recon-score: cut.tsz: " err && test ! -s out &&
	tsz from-npy other=w1.npy >other.tsz &&
	test_must_fail recon-score -m m1 --sae relu48.tsz other.tsz 2>err &&
	grep "^recon-score: other.tsz: record 1: no tensor .tokens.$" err &&
	recon-score -m m1 --sae relu48.tsz w1.tsz >r1.tsz 2>/dev/null &&
	test_must_fail recon-score -m m1 --sae relu48.tsz r1.tsz 2>err &&
	grep "^recon-score: r1.tsz: record 1: kind .recon. is not .tokens. (gpt2-tok output)$" err &&
	test_must_fail recon-score -m nomodel --sae relu48.tsz w1.tsz 2>err && grep "^recon-score: .*nomodel" err
'

test_expect_success NUMPY 'one-token windows: nothing to predict' '
	windows 3 1 97 2 one.npy && tsz from-npy tokens=one.npy >one.tsz &&
	test_must_fail recon-score -m m1 --sae relu48.tsz --include-bos one.tsz 2>err &&
	grep "^recon-score: one.tsz: no next-token predictions (every window has one token)$" err &&
	test_must_fail recon-score -m m1 --sae relu48.tsz one.tsz 2>err &&
	grep "^recon-score: one.tsz: no positions to average (windows of one token, BOS excluded)$" err
'

test_expect_success NUMPY 'merge refusals: not a recon record, mixed hooks, mixed pos0' '
	test_must_fail recon-score --merge w1.tsz 2>err &&
	grep "^recon-score: w1.tsz: record 1: kind .. (read as .tokens.: no activations in it) is not .recon. or .recon_mean. (recon-score output)$" err &&
	recon-score -m m2 --sae btk32.tsz w2.tsz >o2.tsz 2>/dev/null &&
	test_must_fail recon-score --merge full.tsz o2.tsz 2>err &&
	grep "^recon-score: o2.tsz: record 1: hook blocks.2.hook_resid_post, but the first record'"'"'s is blocks.1.hook_resid_mid$" err &&
	recon-score -m m1 --sae relu48.tsz --include-bos w1.tsz >bos.tsz 2>/dev/null &&
	test_must_fail recon-score --merge full.tsz bos.tsz 2>err &&
	grep "^recon-score: bos.tsz: record 1: pos0 differs from the first record'"'"'s (--include-bos mixed)$" err &&
	test_must_fail recon-score --merge full.tsz mean.tsz 2>err &&
	grep "^recon-score: mean.tsz: record 1: width d=48 f=0 does not match d=48 f=96$" err &&
	test_must_fail recon-score --merge --json mean.tsz 2>err &&
	grep "^recon-score: --json: recon_mean records have no metrics to print$" err &&
	test_must_fail recon-score --merge -o m3.tsz sh.00.r.tsz sh.01.r.tsz sh.00.r.tsz 2>err &&
	grep "^recon-score: sh.00.r.tsz: record 1: the same sums as sh.00.r.tsz record 1: the inputs overlap (a shard given twice?)$" err &&
	! test -e m3.tsz &&
	test_must_fail recon-score --merge sh.01.mean.tsz sh.00.mean.tsz sh.01.mean.tsz >o 2>err &&
	grep "^recon-score: sh.01.mean.tsz: record 1: the same sums as sh.01.mean.tsz record 1: the inputs overlap" err &&
	test_must_fail recon-score --merge two.tsz sh.01.r.tsz >o 2>err &&
	grep "^recon-score: sh.01.r.tsz: record 1: the same sums as two.tsz record 2: the inputs overlap" err
'

test_expect_success 'usage errors' '
	test_must_fail recon-score --sae x.tsz 2>err && grep "^recon-score: --model DIR is required$" err &&
	test_must_fail recon-score -m m1 2>err && grep "^recon-score: --sae FILE is required$" err &&
	test_must_fail recon-score -m m1 --sae x -b 0 2>err && grep "^recon-score: --batch" err &&
	test_must_fail recon-score -m m1 --mean-only 2>err &&
	grep "^recon-score: --hook NAME is required with --mean-only and no --sae$" err &&
	test_must_fail recon-score -m m1 --mean-only --mean x.npy 2>err &&
	grep "^recon-score: --mean-only computes the mean; it takes no --mean$" err &&
	test_must_fail recon-score --merge 2>err && grep "^recon-score: --merge needs at least one RECON.tsz$" err &&
	test_must_fail recon-score --merge -m m1 a.tsz 2>err && grep "^recon-score: --merge takes only record files" err &&
	test_must_fail recon-score --bogus 2>err && grep "unrecognized option .--bogus" err && grep "^Try .recon-score --help. for more information.$" err
'

test_done
