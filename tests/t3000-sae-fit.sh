#!/bin/sh
test_description='sae-fit: toy superposition recovery, output layout, determinism, kill -9 and resume, validation, refusals'
. "$(dirname "$0")/test-lib.sh"

# py 'code': numpy with ld(name) loading name.npy
py () {
	"$PYTHON" -c "import numpy as np, sys
ld = lambda n: np.load(n + '.npy')
$1"
}

# fit_refuses FILE MESSAGE: sae-fit FILE fails with the one line "sae-fit: FILE: MESSAGE"
fit_refuses () {
	test_must_fail sae-fit "$1" >o 2>err && grep "^sae-fit: $1: $2\$" err
}

# mmcs SAE: mean over the true directions of the max cosine with a learned
# decoder row; fails unless above 0.95
mmcs () {
	tsz to-npy --name W_dec wd.npy "$1" &&
	py "
W = ld('true'); L = ld('wd'); L = L / np.maximum(np.linalg.norm(L, axis=1, keepdims=True), 1e-12)
m = (W @ L.T).max(axis=1).mean(); print('# mmcs', m); sys.exit(0 if m > 0.95 else 1)"
}

test_must_be_empty () { ! test -s "$1" || { cat "$1" >&4; false; }; }
test_expect_code () { want=$1; shift; "$@"; got=$?; test $got = $want || { echo >&4 "exit $got, want $want: $*"; return 1; }; }

# same_weights A B: every tensor of two SAE files equal bit for bit
same_weights () {
	for n in W_enc b_enc W_dec b_dec; do
		tsz to-npy --name $n a.npy "$1" && tsz to-npy --name $n b.npy "$2" && cmp a.npy b.npy || return 1
	done
}

test_expect_success NUMPY 'setup: toy superposition data (48 unit directions in 32 dims, ~3 active, non-negative)' '
	py "
rng = np.random.default_rng(1)
D, G, N = 32, 48, 64000
W = rng.standard_normal((G, D)); W /= np.linalg.norm(W, axis=1, keepdims=True)
c = (rng.random((N, G)) < 3.0 / G) * rng.uniform(0.5, 1.5, (N, G))
x = (c @ W).astype(np.float32)
np.save(\"true.npy\", W); np.save(\"train.npy\", x[4000:]); np.save(\"val.npy\", x[:4000])
np.save(\"trainbf.npy\", x[4000:12000])" &&
	tsz from-npy --rows 2000 --meta kind=acts --meta hook=blocks.1.mlp.hook_post --meta norm_scale=0.5 acts=train.npy >train.tsz &&
	tsz from-npy --meta kind=acts acts=val.npy >val.tsz
'

FIT="--dict 96 --batch 256 --lr 3e-3 --warmup 20 --dead-tokens 5000"

test_expect_success NUMPY 'topk recovers the true directions (mean max cosine > 0.95)' '
	sae-fit --arch topk --k 3 --aux-k 16 $FIT --input train.tsz --epochs 2 --val val.tsz -o topk.tsz &&
	mmcs topk.tsz
'

test_expect_success NUMPY 'batchtopk recovers the true directions' '
	sae-fit --arch batchtopk --k 3 --aux-k 16 $FIT --input train.tsz --epochs 3 -o btk.tsz &&
	mmcs btk.tsz
'

test_expect_success NUMPY 'relu with L1 and resampling recovers the true directions' '
	sae-fit --arch relu --l1 0.6 --resample-every 100 $FIT --input train.tsz --epochs 3 -o relu.tsz &&
	mmcs relu.tsz
'

test_expect_success NUMPY 'the SAE file: layout, metadata carried from the stream, reconstruction checked by numpy' '
	tsz json topk.tsz >json &&
	grep "\"kind\":\"sae\",\"arch\":\"topk\",\"k\":3" json &&
	grep "\"d\":32,\"f\":96,\"hook\":\"blocks.1.mlp.hook_post\"" json &&
	grep "\"norm_scale\":0.5" json && grep "\"tokens_seen\":120000" json &&
	grep "\"W_enc\":{\"dtype\":\"f32\",\"shape\":\[32,96\]}" json &&
	grep "\"W_dec\":{\"dtype\":\"f32\",\"shape\":\[96,32\]}" json &&
	tsz json btk.tsz >bjson && grep "\"threshold\":{\"dtype\":\"f32\",\"shape\":\[96\]}" bjson &&
	for n in W_enc b_enc W_dec b_dec; do tsz to-npy --name $n $n.npy topk.tsz || return 1; done &&
	py "
x = ld(\"val\"); pre = (x - ld(\"b_dec\")) @ ld(\"W_enc\") + ld(\"b_enc\")
f = np.zeros_like(pre); i = np.argsort(-pre, axis=1)[:, :3]
np.put_along_axis(f, i, np.maximum(np.take_along_axis(pre, i, 1), 0), 1)
xh = f @ ld(\"W_dec\") + ld(\"b_dec\")
fvu = ((xh - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
import json, subprocess
m = json.loads(subprocess.check_output([\"tsz\", \"json\", \"topk.tsz\"]).splitlines()[0])
print(\"# numpy fvu\", fvu, \"sae-fit val fvu\", m[\"val\"][\"fvu\"])
sys.exit(0 if fvu < 0.3 and abs(fvu - m[\"val\"][\"fvu\"]) < 1e-4 * fvu else 1)"
'

test_expect_success NUMPY 'same seed, input and threads: identical bytes; another seed differs' '
	sae-fit --arch topk --k 3 $FIT --tokens 8000 train.tsz >a.tsz &&
	sae-fit --arch topk --k 3 $FIT --tokens 8000 train.tsz >b.tsz &&
	cmp a.tsz b.tsz &&
	sae-fit --arch topk --k 3 $FIT --tokens 8000 --seed 1 train.tsz >c.tsz &&
	! cmp -s a.tsz c.tsz &&
	tsz json a.tsz | grep "\"tokens_seen\":8000,\"steps\":32,"
'

# relu passes through its dense and its sparse step (few latents fire once
# the L1 term bites); the element passes and products split over threads
test_expect_success NUMPY 'relu on 1 and 2 threads: identical bytes; val log lines carry the L1 term' '
	OPENBLAS_NUM_THREADS=1 sae-fit --arch relu --l1 0.6 $FIT --tokens 30000 --val val.tsz --eval-every 50 \
		--log rl.tsv train.tsz >ra.tsz &&
	OPENBLAS_NUM_THREADS=2 sae-fit --arch relu --l1 0.6 $FIT --tokens 30000 --val val.tsz --eval-every 50 \
		train.tsz >rb.tsz &&
	same_weights ra.tsz rb.tsz &&
	grep "^val" rl.tsv >vl && test_line_count = 3 vl &&
	awk -F "	" "{ d = \$4 - 32 * \$5 - \$6; if (\$6 <= 0 || d > 1e-4 || d < -1e-4) exit 1 }" vl
'

# resume: kill -9 at a random moment, resume, compare with an uninterrupted
# run. The rows reach the killed run through a FIFO that the test fills with
# a random prefix of the input and then holds open, so the process is
# certainly still running (training, or waiting for rows) when it is killed.
# Every product and parallel loop gives the same bytes on any thread count
# (lib/gemm.h), so a run killed on 2 threads and resumed on 1 ends as the
# uninterrupted run on 2 does.
RES="--arch topk --k 3 --aux-k 16 $FIT --batch 64 --tokens 60000 --val val.tsz --eval-every 40 --checkpoint-every 7"
for threads in 1,1 2,2 2,1; do
	run=${threads%,*} resume=${threads#*,}
	test_expect_success NUMPY "kill -9 at a random moment and --resume: bit-identical weights (OPENBLAS_NUM_THREADS=$run, resumed with $resume)" '
		OPENBLAS_NUM_THREADS='$run' && export OPENBLAS_NUM_THREADS &&
		sae-fit $RES --checkpoint ck0 -o full.tsz <train.tsz &&
		rm -rf ck1 part.tsz fifo && mkfifo fifo &&
		size=$(wc -c <train.tsz) &&
		cut=$(py "import random; print(random.randint($size // 5, 4 * $size // 5))") &&
		{ sae-fit $RES --checkpoint ck1 -o part.tsz <fifo & } &&
		pid=$! &&
		exec 9>fifo && head -c $cut train.tsz >&9 &&
		i=0 && while ! test -f ck1/checkpoint.tsz && test $i -lt 500; do sleep 0.02; i=$((i + 1)); done &&
		test -f ck1/checkpoint.tsz &&
		sleep $(py "import random; print(random.uniform(0, 0.3))") &&
		kill -9 $pid && ! wait $pid && exec 9>&- && test ! -f part.tsz &&
		tsz json ck1/checkpoint.tsz >ckjson && sed "s/.*\"rows_trained\":\([0-9]*\).*/# checkpoint at row \1 when killed/" ckjson >&3 &&
		OPENBLAS_NUM_THREADS='$resume' sae-fit $RES --checkpoint ck1 --resume -o res.tsz <train.tsz &&
		same_weights full.tsz res.tsz &&
		tsz json full.tsz >m1 && tsz json res.tsz >m2 && test_cmp m1 m2
	'
done

test_expect_success NUMPY 'resuming a finished run changes nothing' '
	sae-fit $RES --checkpoint ck0 --resume -o again.tsz <train.tsz && same_weights full.tsz again.tsz
'

test_expect_success NUMPY 'relu resumed from a checkpoint of its last step: the same file, final validation loss with its L1 term' '
	R="--arch relu --l1 0.6 $FIT --tokens 8000 --val val.tsz --eval-every 10 --checkpoint-every 32 --checkpoint ckr" &&
	sae-fit $R -o r1.tsz train.tsz && tsz json ckr/checkpoint.tsz | grep "\"rows_trained\":8000," &&
	sae-fit $R --resume -o r2.tsz train.tsz &&
	same_weights r1.tsz r2.tsz && tsz json r1.tsz >m1 && tsz json r2.tsz >m2 && test_cmp m1 m2
'

# SAEs and checkpoints over the part size go in part records: 1000 bytes
# here, so the (32,96) matrices and the 6272 parameters split in many
test_expect_success NUMPY 'SAEPIPE_PART_BYTES=1000: the SAE and checkpoints in parts; the same weights, resume bit-identical' '
	SAEPIPE_PART_BYTES=1000 sae-fit $RES --checkpoint ckp -o parted.tsz <train.tsz &&
	tsz json parted.tsz >pjson && grep -c "\"kind\":\"sae_part\",\"tensor\":\"W_enc\"" pjson >n && echo 16 >want && test_cmp want n &&
	grep -c "\"kind\":\"sae_part\",\"tensor\":\"W_dec\"" pjson >n && echo 14 >want && test_cmp want n &&
	head -1 pjson | grep "\"parts\":\[{\"name\":\"W_enc\",\"dtype\":\"f32\",\"shape\":\[32,96\]}" &&
	same_weights full.tsz parted.tsz &&
	tsz json ckp/checkpoint.tsz >cjson && grep -c "\"kind\":\"sae_checkpoint_part\"" cjson >n && echo 104 >want && test_cmp want n &&
	SAEPIPE_PART_BYTES=1000 sae-fit $RES --checkpoint ckp --resume -o res_p.tsz <train.tsz &&
	same_weights full.tsz res_p.tsz &&
	sae-fit $RES --checkpoint ckp --resume -o res_q.tsz <train.tsz && same_weights full.tsz res_q.tsz &&
	mkdir ckc && tsz head -n 60 ckp/checkpoint.tsz >ckc/checkpoint.tsz &&
	test_must_fail sae-fit $RES --checkpoint ckc --resume -o o <train.tsz 2>err &&
	grep "^sae-fit: ckc/checkpoint.tsz: ends at row [0-9]* of 6272 of adam_v (a part is missing)$" err
'

test_expect_success NUMPY '--state-dtype bf16 checkpoints in parts resume bit-identical' '
	B="--arch topk --k 3 $FIT --batch 64 --tokens 6000 --state-dtype bf16 --checkpoint-every 9" &&
	sae-fit $B --checkpoint ckb0 -o b0.tsz <train.tsz &&
	SAEPIPE_PART_BYTES=1000 sae-fit $B --checkpoint ckb -o b1.tsz <train.tsz && same_weights b0.tsz b1.tsz &&
	tsz json ckb/checkpoint.tsz | grep "\"tensor\":\"adam_m\"" | grep -c "\"bf16\"" >n && echo 13 >want && test_cmp want n &&
	SAEPIPE_PART_BYTES=1000 sae-fit $B --checkpoint ckb --resume -o b2.tsz <train.tsz && same_weights b0.tsz b2.tsz
'

test_expect_success NUMPY '--val and --keep-best: the kept step is the best validation fvu in the log' '
	sae-fit --arch topk --k 3 $FIT --lr 2e-2 --input train.tsz --val val.tsz --eval-every 20 \
		--log log.tsv -o best.tsz 2>err &&
	grep "^sae-fit: kept the weights of step" err &&
	head -1 log.tsv >hdr && echo "kind	step	tokens	loss	mse	aux	l0	dead	lr	tokens_per_s	fvu" >want && test_cmp want hdr &&
	grep "^val" log.tsv | sort -t "	" -k11,11g | head -1 | cut -f2 >beststep &&
	tsz json best.tsz >json && grep "\"best_step\":$(cat beststep)," json &&
	grep "\"val\":{\"step\":$(cat beststep)," json &&
	sae-fit --arch topk --k 3 $FIT --tokens 5120 --input train.tsz --val val.tsz --eval-every 5 --keep-best loss \
		--log log.jsonl -o bl.tsz &&
	py "
import json
rows = [json.loads(l) for l in open(\"log.jsonl\")]
val = [r for r in rows if r[\"kind\"] == \"val\"]; tr = [r for r in rows if r[\"kind\"] == \"train\"]
assert len(val) == 4 and len(tr) == 0, (len(val), len(tr))
best = min(val, key=lambda r: r[\"loss\"])
import subprocess
m = json.loads(subprocess.check_output([\"tsz\", \"json\", \"bl.tsz\"]).splitlines()[0])
assert m[\"best_step\"] == best[\"step\"], (m[\"best_step\"], best)
assert abs(m[\"val\"][\"loss\"] - best[\"loss\"]) < 1e-4 * best[\"loss\"]
"
'

test_expect_success NUMPY 'bf16 input rows and --state-dtype bf16; linear and cosine schedules; rows mlp-tap declares or counted' '
	py "np.save(\"bt.npy\", ld(\"train\").reshape(3000, 20, 32))" &&
	tsz from-npy blocks.1.mlp.hook_post=bt.npy >bt.tsz && mlp-tap --no-drop-bos --dtype bf16 bt.tsz >bf.tsz &&
	tsz json bf.tsz | head -1 | grep "\"acts\":{\"dtype\":\"bf16\"" &&
	sae-fit --arch topk --k 3 $FIT --state-dtype bf16 --lr-schedule cosine --input bf.tsz --epochs 2 -o s1.tsz &&
	sae-fit --arch relu --l1 0.5 $FIT --batch 64 --tokens 8000 --lr-schedule linear --input bf.tsz --log l.tsv --log-every 1 -o s2.tsz &&
	py "
lr = [float(l.split()[8]) for l in open(\"l.tsv\").readlines()[1:]]
n = len(lr); print(\"# lr\", lr[0], lr[int(0.7 * n)], lr[-1])
assert lr[int(0.7 * n)] == 3e-3 and lr[-1] < 0.05 * 3e-3 and all(a >= b for a, b in zip(lr[int(0.8 * n):], lr[int(0.8 * n) + 1:]))" &&
	mmcs s1.tsz &&
	tsz cat bf.tsz >bfc.tsz &&
	sae-fit --arch topk --k 3 $FIT --state-dtype bf16 --lr-schedule cosine --input bfc.tsz --epochs 2 -o s1c.tsz &&
	tsz to-npy --name W_enc w1.npy s1.tsz && tsz to-npy --name W_enc w1c.npy s1c.tsz && cmp w1.npy w1c.npy
'

test_expect_success NUMPY 'NaN and Inf rows: counted and skipped, or stop with the row named' '
	py "
x = ld(\"val\")[:600].copy(); x[5, 3] = np.nan; x[300, 0] = np.inf
np.save(\"nan.npy\", x)" &&
	tsz from-npy --meta kind=acts acts=nan.npy >nan.tsz &&
	sae-fit --k 3 $FIT nan.tsz -o n.tsz 2>err &&
	grep "^sae-fit: nan.tsz: skipped 2 rows with NaN or Inf$" err &&
	tsz json n.tsz | grep "\"tokens_seen\":598,.*\"nan_rows\":2" &&
	sae-fit --k 3 $FIT --on-nan skip nan.tsz -o n.tsz 2>err && test_must_be_empty err &&
	test_must_fail sae-fit --k 3 $FIT --on-nan stop nan.tsz -o n.tsz 2>err &&
	grep "^sae-fit: nan.tsz: record 1 row 5 has a NaN or Inf (--on-nan stop)$" err
'

test_expect_success NUMPY 'refusals: empty, truncated, wrong kind, context rows, wrong dtype, wrong width on resume, memory, part size' '
	tsz head -n 0 val.tsz >empty.tsz &&
	test_must_fail sae-fit empty.tsz >o 2>err && grep "^sae-fit: empty.tsz: no rows to train on (empty input)$" err &&
	head -c 3000 val.tsz >cut.tsz &&
	test_must_fail sae-fit cut.tsz >o 2>err && grep "^sae-fit: cut.tsz: " err && test_line_count = 1 err &&
	tsz from-npy x=val.npy >nokind.tsz &&
	fit_refuses nokind.tsz "record 1: kind .. (read as .hook_acts.: no tensor .acts.) is not .acts. (mlp-tap output)" &&
	tsz from-npy --meta kind=tokens acts=val.npy >tokkind.tsz &&
	fit_refuses tokkind.tsz "record 1: kind .tokens. is not .acts. (mlp-tap output)" &&
	py "np.save(\"ctx.npy\", ld(\"val\")[:60].reshape(3, 20, 32))" &&
	tsz from-npy --meta kind=acts acts=ctx.npy >ctx.tsz &&
	fit_refuses ctx.tsz "record 1: kind .acts. (read as .ctx_acts.: its .acts. is 3-D) is not .acts. (mlp-tap output)" &&
	tsz from-npy --meta kind=ctx_acts acts=ctx.npy >ctx2.tsz &&
	fit_refuses ctx2.tsz "record 1: kind .ctx_acts. is not .acts. (mlp-tap output)" &&
	py "np.save(\"int.npy\", np.ones((100, 32), np.int32))" &&
	tsz from-npy --meta kind=acts acts=int.npy >int.tsz &&
	fit_refuses int.tsz "record 1: tensor .acts. is (100,32) i32, want float (N,D) for kind .acts." &&
	py "np.save(\"wide.npy\", np.ones((100, 16), np.float32))" &&
	tsz from-npy --meta kind=acts acts=wide.npy >wide.tsz &&
	test_must_fail sae-fit $RES --checkpoint ck0 --resume --input wide.tsz -o o 2>err &&
	grep "^sae-fit: wide.tsz: rows are 16 wide but the checkpoint in ck0 was trained on width 32$" err &&
	test_must_fail sae-fit $RES --k 4 --checkpoint ck0 --resume -o o <train.tsz 2>err &&
	grep "^sae-fit: ck0/checkpoint.tsz: checkpoint was written with .arch=topk f=96 k=3" err &&
	test_must_fail sae-fit --dict 128x --batch 4096 --max-memory 1M val.tsz >o 2>err &&
	grep "^sae-fit: d=32 f=4096 batch=4096 needs 0.054 GB but 0.001 GB is available (--max-memory); try a smaller --dict or --batch, or --state-dtype bf16$" err &&
	SAEPIPE_PART_BYTES=0 test_must_fail sae-fit --checkpoint ck9 val.tsz >o 2>err &&
	grep "^sae-fit: SAEPIPE_PART_BYTES=0: want a positive number of bytes$" err &&
	test ! -d ck9 &&
	test ! -s o
'

test_expect_success NUMPY 'rows from NumPy without a kind: tsz from-npy acts=X.npy | sae-fit' '
	tsz from-npy acts=val.npy | sae-fit --k 3 $FIT -o np.tsz 2>err && test_must_be_empty err &&
	tsz json np.tsz | grep "\"tokens_seen\":4000,"
'

test_expect_success NUMPY '--tokens beyond the data: a warning, and the linear decay runs to the end of the data' '
	sae-fit --arch topk --k 3 $FIT --tokens 1M --log over.tsv --log-every 1 train.tsz -o over.tsz 2>err &&
	grep "^sae-fit: train.tsz: --tokens 1000000 is more than the 60000 rows of 1 epoch; the schedule runs over those$" err &&
	py "
lr = [float(l.split()[8]) for l in open(\"over.tsv\").readlines()[1:]]
n = len(lr); print(\"# lr\", n, lr[int(0.7 * n)], lr[-1])
assert n == 235 and lr[int(0.7 * n)] == 3e-3 and lr[-1] < 0.05 * 3e-3, (n, lr[-1])"
'

test_expect_success NUMPY 'several input files are one input: as their cat, with their length known' '
	tsz split -n 2 half train.tsz &&
	sae-fit --k 3 $FIT --tokens 8000 half.00.tsz half.01.tsz -o m1.tsz &&
	cat half.00.tsz half.01.tsz | sae-fit --k 3 $FIT --tokens 8000 -o m2.tsz &&
	same_weights m1.tsz m2.tsz &&
	sae-fit --k 3 $FIT --tokens 1M half.00.tsz half.01.tsz -o m3.tsz 2>err &&
	grep "^sae-fit: the inputs: --tokens 1000000 is more than the 60000 rows of 1 epoch; the schedule runs over those$" err &&
	test_must_fail sae-fit half.00.tsz - <half.01.tsz 2>err &&
	grep "^sae-fit: stdin (.-.) is an input alone, not one of several$" err
'

test_expect_success 'bad flags: exit 2 with one line' '
	test_expect_code 2 sae-fit --arch foo x 2>err &&
	grep "^sae-fit: --arch: expected one of relu, topk, batchtopk, jumprelu, gated, matryoshka, got .foo.$" err &&
	test_expect_code 2 sae-fit --dict 0x x 2>err && grep "^sae-fit: --dict" err &&
	test_expect_code 2 sae-fit --keep-best fvu x 2>err && grep "^sae-fit: --keep-best fvu needs --val$" err &&
	test_expect_code 2 sae-fit --epochs 2 2>err </dev/null && grep "^sae-fit: --epochs needs --input FILE (stdin is read once)$" err &&
	test_expect_code 2 sae-fit --resume x 2>err && grep "^sae-fit: --resume needs --checkpoint DIR$" err &&
	test_expect_code 2 sae-fit --lr-schedule cosine <val.tsz >o 2>err &&
	grep "^sae-fit: --lr-schedule cosine/linear needs a known length: --tokens N or --input FILE$" err &&
	test_expect_code 2 sae-fit --k 200 --dict 96 val.tsz 2>err && grep "^sae-fit: --k 200 is more than the 96 features$" err &&
	test_expect_code 1 sae-fit missing.tsz -o o 2>err && grep "^sae-fit: missing.tsz: " err
'

test_expect_success NUMPY 'a short run warms up over 5% of its steps by default; --warmup overrides' '
	sae-fit --arch topk --k 4 --dict 2x --batch 64 --tokens 2560 --log short.tsv --log-every 1 <train.tsz >short.tsz &&
	awk -F "\t" "\$1 == \"train\" && \$2 == 3 { print \$9 }" short.tsv >lr3 && test "$(cat lr3)" = 0.0004 &&
	sae-fit --arch topk --k 4 --dict 2x --batch 64 --tokens 2560 --warmup 1000 --log long.tsv --log-every 1 <train.tsz >long.tsz &&
	awk -F "\t" "\$1 == \"train\" && \$2 == 3 { print \$9 }" long.tsv >lr3 && test "$(cat lr3)" = 1.2e-06
'

test_done
