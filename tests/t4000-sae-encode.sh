#!/bin/sh
test_description='sae-encode: relu, topk and batchtopk against numpy; normalisation; --features, --dense; refusals'
. "$(dirname "$0")/test-lib.sh"

REF="$TEST_DIRECTORY/helpers/topk_ref.py"

# mk_sae DIR ARCH K SCALE: the SAE of DIR's npy files as an SAE file DIR/sae.tsz
mk_sae () {
	th= && if test -f "$1/threshold.npy"; then th="threshold=$1/threshold.npy"; fi &&
	tsz from-npy --rows 1000000 --meta kind=sae --meta arch=$2 --meta d=16 --meta f=40 --meta k=$3 \
		--meta norm_scale=$4 --meta hook=\"blocks.1.mlp.hook_post\" \
		W_enc=$1/W_enc.npy b_enc=$1/b_enc.npy W_dec=$1/W_dec.npy b_dec=$1/b_dec.npy $th >$1/sae.tsz
}

# mk_ctx DIR SCALE: context windows (acts stored as raw * SCALE), 3 windows a record
mk_ctx () {
	tsz from-npy --rows 3 --meta kind=\"acts\" --meta pos0=1 --meta norm_scale=$2 \
		--meta hook=\"blocks.1.mlp.hook_post\" acts=$1/acts.npy tokens=$1/tokens.npy \
		doc=$1/doc.npy offset=$1/offset.npy >$1/ctx.tsz
}

test_expect_success NUMPY 'setup: relu, topk and batchtopk SAEs and their inputs' '
	mkdir relu topk btk &&
	"$PYTHON" "$REF" mk relu --arch relu --d 16 --f 40 --b 8 --t 9 --in-scale 2.5 --sae-scale 1.5 --docs &&
	"$PYTHON" "$REF" mk topk --arch topk --d 16 --f 40 --b 8 --t 9 --seed 1 --docs &&
	"$PYTHON" "$REF" mk btk --arch batchtopk --d 16 --f 40 --b 8 --t 9 --seed 2 --sae-scale 0.5 --docs &&
	mk_sae relu relu 0 1.5 && mk_sae topk topk 5 1 && mk_sae btk batchtopk 5 0.5 &&
	mk_ctx relu 2.5 && mk_ctx topk 1 && mk_ctx btk 1
'

test_expect_success NUMPY 'relu: input scale undone, SAE scale applied, equals numpy to 1e-5' '
	sae-encode --sae relu/sae.tsz relu/ctx.tsz >f.tsz &&
	tsz json --full f.tsz >f.json &&
	"$PYTHON" "$REF" encode relu --in-scale 2.5 --sae-scale 1.5 <f.json >out &&
	cat out && grep "^all ok" out
'

test_expect_success NUMPY 'the reference notices a wrong scale (the check can fail)' '
	test_must_fail "$PYTHON" "$REF" encode relu --in-scale 1 --sae-scale 1.5 <f.json >out &&
	grep "^mismatch: max diff" out
'

test_expect_success NUMPY 'topk and batchtopk equal numpy to 1e-5' '
	sae-encode --sae topk/sae.tsz topk/ctx.tsz | tsz json --full >t.json &&
	"$PYTHON" "$REF" encode topk --arch topk --k 5 <t.json >out && cat out && grep "^all ok" out &&
	sae-encode -s btk/sae.tsz <btk/ctx.tsz | tsz json --full >b.json &&
	"$PYTHON" "$REF" encode btk --arch batchtopk --sae-scale 0.5 <b.json >out && cat out && grep "^all ok" out
'

test_expect_success NUMPY 'kinds: ctx_acts and the old name acts give the same features; so do acts rows and no kind' '
	tsz from-npy --rows 3 --meta kind=ctx_acts --meta pos0=1 --meta norm_scale=2.5 \
		--meta hook=\"blocks.1.mlp.hook_post\" acts=relu/acts.npy tokens=relu/tokens.npy \
		doc=relu/doc.npy offset=relu/offset.npy >cx.tsz &&
	sae-encode --sae relu/sae.tsz cx.tsz >f1.tsz && sae-encode --sae relu/sae.tsz relu/ctx.tsz >f2.tsz &&
	tsz json --full f1.tsz >j1 && tsz json --full f2.tsz >j2 && test_cmp j2 j1 &&
	"$PYTHON" -c "import numpy as np; a = np.load(\"relu/acts.npy\"); np.save(\"rows.npy\", a.reshape(-1, a.shape[-1]))" &&
	tsz from-npy --meta kind=acts acts=rows.npy >r1.tsz && tsz from-npy acts=rows.npy >r2.tsz &&
	sae-encode --sae relu/sae.tsz r1.tsz >f1.tsz && sae-encode --sae relu/sae.tsz r2.tsz >f2.tsz &&
	tsz json --full f1.tsz >j1 && tsz json --full f2.tsz >j2 && test_cmp j2 j1
'

test_expect_success NUMPY 'records: CSR layout, tokens/doc/offset/pos0 passed through, meta f/rows/t' '
	tsz json f.tsz >j && test_line_count = 3 j &&
	grep "^{\"kind\":\"features\",\"f\":40,\"rows\":24,\"hook\":\"blocks.1.mlp.hook_post\",\"pos0\":1,\"t\":8," j &&
	grep "\"indptr\":{\"dtype\":\"i64\",\"shape\":\[25\]}" j &&
	for t in tokens doc offset; do
		tsz to-npy --name $t a.npy relu/ctx.tsz && tsz to-npy --name $t b.npy f.tsz && cmp a.npy b.npy || return 1
	done &&
	tsz json --headers f.tsz | head -1 >h && grep "\"f\":40,\"d\":16,\"arch\":\"relu\"" h
'

test_expect_success NUMPY '--features keeps those ids (CSR and --dense); --dense equals CSR' '
	sae-encode --sae relu/sae.tsz --features 3-5,20,39 relu/ctx.tsz | tsz json --full >s.json &&
	"$PYTHON" "$REF" encode relu --in-scale 2.5 --sae-scale 1.5 --features 3-5,20,39 <s.json >out && grep "^all ok" out &&
	sae-encode --sae topk/sae.tsz --features 0-9 topk/ctx.tsz | tsz json --full >s.json &&
	"$PYTHON" "$REF" encode topk --arch topk --k 5 --features 0-9 <s.json >out && grep "^all ok" out &&
	sae-encode --sae relu/sae.tsz --dense relu/ctx.tsz | tsz json --full >d.json &&
	grep "\"features\":{\"dtype\":\"f32\",\"shape\":\[24,40\]" d.json &&
	"$PYTHON" "$REF" encode relu --in-scale 2.5 --sae-scale 1.5 <d.json >out && grep "^all ok" out &&
	sae-encode --sae btk/sae.tsz --dense --features 7,9 btk/ctx.tsz | tsz json --full >d.json &&
	grep "\"feature_ids\":{\"dtype\":\"i32\",\"shape\":\[2\],\"data\":\[7,9\]}" d.json &&
	"$PYTHON" "$REF" encode btk --arch batchtopk --sae-scale 0.5 --features 7,9 <d.json >out && grep "^all ok" out
'

test_expect_success NUMPY 'rows (N,D) in f16; --batch does not change the result' '
	"$PYTHON" -c "import numpy as np; a = np.load(\"topk/acts.npy\"); np.save(\"topk/h.npy\", a.reshape(-1, 16).astype(np.float16))" &&
	tsz from-npy --rows 10 acts=topk/h.npy >rows.tsz && tsz info rows.tsz | grep "acts  *f16" &&
	sae-encode --sae topk/sae.tsz rows.tsz | tsz json --full >r.json &&
	"$PYTHON" "$REF" encode topk --arch topk --k 5 --acts h <r.json >out && grep "^all ok" out &&
	sae-encode --sae topk/sae.tsz --batch 3 rows.tsz | tsz json --full >r3.json && cmp r.json r3.json
'

# A shard cut inside a record puts its rows at other places in their tiles
# (lib/gemm.h): README "Reproducibility" promises 1e-5 relative there.
test_expect_success NUMPY 'rows (N,D) cut inside records by tsz split: the whole run within 1e-5' '
	tsz split -n 3 rs rows.tsz &&
	sae-encode --sae relu/sae.tsz --dense rows.tsz -o whole.tsz && tsz to-npy --name features whole.npy whole.tsz &&
	for i in 00 01 02; do sae-encode --sae relu/sae.tsz --dense rs.$i.tsz -o rf.$i.tsz || return 1; done &&
	tsz cat rf.00.tsz rf.01.tsz rf.02.tsz -o cut.tsz && tsz to-npy --name features cut.npy cut.tsz &&
	"$PYTHON" "$TEST_DIRECTORY/helpers/npy_close.py" --tol 1e-5 whole.npy cut.npy &&
	"$PYTHON" -c "import numpy as np; a = np.load(\"cut.npy\"); assert a.shape[0] > 30; a[0, 0] += 1; np.save(\"off.npy\", a)" &&
	! "$PYTHON" "$TEST_DIRECTORY/helpers/npy_close.py" --tol 1e-5 whole.npy off.npy
'

test_expect_success NUMPY 'the input tensor by --tensor; output to -o' '
	tsz from-npy --rows 10 x=topk/h.npy >x.tsz &&
	sae-encode --sae topk/sae.tsz --tensor x -o o.tsz x.tsz && tsz json --full o.tsz >o.json && cmp o.json r.json
'

test_expect_success NUMPY '--progress on stderr' '
	sae-encode --progress --sae relu/sae.tsz relu/ctx.tsz 2>err >/dev/null &&
	tr "\r" "\n" <err | grep "^sae-encode: encode 64 rows"
'

test_expect_success '--help, --version, bad usage' '
	sae-encode --help >out && grep "^  -s, --sae FILE" out && grep "^      --features LIST" out &&
	sae-encode --version >out && grep "^sae-encode " out &&
	test_must_fail sae-encode relu/ctx.tsz 2>err && grep "^sae-encode: --sae FILE is required" err &&
	test_must_fail sae-encode --bogus 2>err && grep "unrecognized option" err &&
	test_must_fail sae-encode --sae x --batch 0 2>err && grep "^sae-encode: --batch" err
'

test_expect_success NUMPY 'refusals: missing SAE, bad --features, wrong width, tokens, hook, norm_scale, kind, truncation' '
	test_must_fail sae-encode --sae nope.tsz relu/ctx.tsz >o 2>err && grep "^sae-encode: nope.tsz" err &&
	test_must_fail sae-encode --sae relu/sae.tsz --features 3-50 relu/ctx.tsz 2>err &&
	grep "^sae-encode: --features: feature range 3-50 is outside \[0, 40)$" err &&
	test_must_fail sae-encode --sae relu/sae.tsz --features 3, relu/ctx.tsz 2>err &&
	grep "^sae-encode: --features: bad feature list .3,." err &&
	"$PYTHON" -c "import numpy as np; np.save(\"w.npy\", np.zeros((4, 8), np.float32)); np.save(\"t.npy\", np.zeros((2, 3), np.int32)); np.save(\"a.npy\", np.zeros((2, 3, 16), np.float32))" &&
	tsz from-npy acts=w.npy >w.tsz &&
	test_must_fail sae-encode --sae relu/sae.tsz w.tsz >o 2>err &&
	grep "^sae-encode: w.tsz: record 1: acts is (4,8) f32 but the SAE needs (N,16) or (B,T,16) floats$" err &&
	tsz from-npy acts=a.npy tokens=t.npy --meta pos0=1 >a.tsz &&
	test_must_fail sae-encode --sae relu/sae.tsz a.tsz >o 2>err &&
	grep "^sae-encode: a.tsz: record 1: tokens is (2,3) i32 but acts is (2,3,16) f32 with pos0 1$" err &&
	tsz from-npy acts=a.npy --meta hook=\"blocks.0.mlp.hook_post\" >h.tsz &&
	test_must_fail sae-encode --sae relu/sae.tsz h.tsz >o 2>err &&
	grep "^sae-encode: h.tsz: record 1: activations of blocks.0.mlp.hook_post but the SAE was trained on blocks.1.mlp.hook_post (--any-hook to encode anyway)$" err &&
	sae-encode --sae relu/sae.tsz --any-hook h.tsz >o &&
	tsz from-npy acts=a.npy --meta norm_scale=-1 >n.tsz &&
	test_must_fail sae-encode --sae relu/sae.tsz n.tsz >o 2>err &&
	grep "^sae-encode: n.tsz: record 1: meta .norm_scale. must be a positive number$" err &&
	tsz from-npy x=a.npy >x3.tsz && test_must_fail sae-encode --sae relu/sae.tsz x3.tsz >o 2>err &&
	grep "^sae-encode: x3.tsz: record 1: no tensor .blocks.1.mlp.hook_post.$" err &&
	sae-encode --sae relu/sae.tsz relu/ctx.tsz >f.tsz && test_must_fail sae-encode --sae relu/sae.tsz f.tsz >o 2>err &&
	grep "^sae-encode: f.tsz: record 1: kind .features. is not .hook_acts. (gpt2-fwd output), .acts. (mlp-tap output) or .ctx_acts. (mlp-tap --keep-context output)$" err &&
	test_must_fail sae-encode --sae relu/sae.tsz --tensor nope a.tsz >o 2>err &&
	grep "^sae-encode: a.tsz: record 1: no tensor .nope. (--tensor names another)$" err &&
	head -c 2000 relu/ctx.tsz >cut.tsz &&
	test_must_fail sae-encode --sae relu/sae.tsz -o out.tsz cut.tsz 2>err && grep "^sae-encode: cut.tsz: " err &&
	! test -e out.tsz &&
	test_must_fail sae-encode --sae relu/ctx.tsz relu/ctx.tsz >o 2>err &&
	grep "^sae-encode: relu/ctx.tsz: not an SAE file" err
'

test_done
