#!/bin/sh
test_description='topk-ctx: top, random and band examples and statistics against brute force; exact --merge; ties; refusals'
. "$(dirname "$0")/test-lib.sh"

REF="$TEST_DIRECTORY/helpers/topk_ref.py"
OPTS="-k 3 -w 4 --random 3 --bands 2 --per-band 2 --seed 5"
ROPTS="--k 3 --w 4 --r 3 --nb 2 --npb 2 --seed 5"

# check FEAT.tsz TOPK.tsz REF-OPTIONS...: brute force agrees
check () {
	feat=$1 topk=$2 && shift 2 &&
	tsz json --full "$feat" >feat.json && tsz json --full "$topk" >topk.json &&
	"$PYTHON" "$REF" topk "$@" feat.json topk.json >out && cat out && grep "^all ok" out
}

test_expect_success NUMPY 'setup: an SAE, 12 context windows of 4 documents, their features' '
	"$PYTHON" "$REF" mk . --arch relu --d 16 --f 40 --b 12 --t 9 --docs --seed 3 &&
	tsz from-npy --rows 1000000 --meta kind=sae --meta arch=relu --meta d=16 --meta f=40 \
		W_enc=W_enc.npy b_enc=b_enc.npy W_dec=W_dec.npy b_dec=b_dec.npy >sae.tsz &&
	tsz from-npy --rows 4 --meta pos0=1 acts=acts.npy tokens=tokens.npy doc=doc.npy offset=offset.npy >ctx.tsz &&
	sae-encode --sae sae.tsz ctx.tsz >feat.tsz
'

test_expect_success NUMPY 'small windows: top, random, bands, statistics, dict_stats equal brute force' '
	topk-ctx $OPTS feat.tsz >topk.tsz && check feat.tsz topk.tsz $ROPTS &&
	tsz json topk.tsz >j && test_line_count = 41 j &&
	grep "^{\"kind\":\"feature\",\"feature\":0,\"n_tokens\":96," j &&
	tail -1 j | grep "^{\"kind\":\"dict_stats\",\"f\":40,\"n_features\":40,\"n_tokens\":96,\"dead\":1,\"dense\":"
'

test_expect_success NUMPY 'the brute force check can fail: another seed gives other random examples' '
	topk-ctx $OPTS --seed 6 feat.tsz >other.tsz &&
	test_must_fail check feat.tsz other.tsz $ROPTS && grep "^mismatch: feature .*: rand" out
'

test_expect_success NUMPY 'default options (windows of 64 padded with -1); -k 0 --random 0 --bands 0' '
	topk-ctx feat.tsz >d.tsz && check feat.tsz d.tsz --k 20 --w 64 --r 20 --nb 4 --npb 2 --seed 0 &&
	tsz json d.tsz | head -1 | grep "\"top_tokens\":{\"dtype\":\"i32\",\"shape\":\[[0-9]*,64\]}" &&
	topk-ctx -k 0 --random 0 --bands 0 feat.tsz >z.tsz && check feat.tsz z.tsz --k 0 --w 64 --r 0 --nb 0 --npb 2 --seed 0
'

test_expect_success NUMPY 'merge of shards equals one run, byte for byte (records), in any order, merged again' '
	tsz split -n 3 sh ctx.tsz &&
	for i in 00 01 02; do
		sae-encode --sae sae.tsz sh.$i.tsz | topk-ctx $OPTS -o tk.$i.tsz || return 1
	done &&
	topk-ctx --merge tk.00.tsz tk.01.tsz tk.02.tsz >m.tsz &&
	tsz json --full topk.tsz >one.json && tsz json --full m.tsz >merged.json && cmp one.json merged.json &&
	topk-ctx --merge tk.02.tsz tk.00.tsz tk.01.tsz | tsz json --full >m2.json && cmp one.json m2.json &&
	topk-ctx --merge tk.00.tsz tk.01.tsz >a.tsz && topk-ctx --merge a.tsz tk.02.tsz | tsz json --full >m3.json &&
	cmp one.json m3.json
'

test_expect_success NUMPY 'merge of shards equals one run with the default options too' '
	for i in 00 01 02; do
		sae-encode --sae sae.tsz sh.$i.tsz | topk-ctx -o d.$i.tsz || return 1
	done &&
	topk-ctx --merge d.00.tsz d.01.tsz d.02.tsz | tsz json --full >dm.json &&
	tsz json --full d.tsz >d.json && cmp d.json dm.json
'

test_expect_success NUMPY 'ties are broken by (doc, offset, position): brute force and merge agree' '
	"$PYTHON" -c "
import numpy as np
rng = np.random.default_rng(1)
B, T, F = 10, 7, 6
x = rng.integers(0, 3, (B, T, F)).astype(np.float32)   # activations 0, 1, 2: many ties
tok = rng.integers(0, 100, (B, T)).astype(np.int32)
doc = np.arange(B, dtype=np.int64)[::-1].copy() // 2    # docs descending in stream order
off = (np.arange(B, dtype=np.int64) % 2) * 7
for n, s in ((\"all\", slice(0, B)), (\"h1\", slice(0, 4)), (\"h2\", slice(4, B))):
    np.save(n + \"_f.npy\", x[s].reshape(-1, F)); np.save(n + \"_t.npy\", tok[s])
    np.save(n + \"_d.npy\", doc[s]); np.save(n + \"_o.npy\", off[s])
" &&
	for n in all h1 h2; do
		tsz from-npy --rows 1000000 --meta kind=\"features\" --meta f=6 --meta pos0=0 \
			features=${n}_f.npy tokens=${n}_t.npy doc=${n}_d.npy offset=${n}_o.npy >$n.tsz &&
		topk-ctx -k 4 -w 3 --random 2 --bands 2 --per-band 1 $n.tsz >tk_$n.tsz || return 1
	done &&
	check all.tsz tk_all.tsz --k 4 --w 3 --r 2 --nb 2 --npb 1 --seed 0 &&
	topk-ctx --merge tk_h2.tsz tk_h1.tsz | tsz json --full >tm.json &&
	tsz json --full tk_all.tsz >ta.json && cmp ta.json tm.json
'

test_expect_success NUMPY 'without doc/offset: windows are numbered in stream order' '
	tsz from-npy --rows 5 --meta pos0=1 acts=acts.npy tokens=tokens.npy >nodoc.tsz &&
	sae-encode --sae sae.tsz nodoc.tsz >nf.tsz && topk-ctx $OPTS nf.tsz >nt.tsz && check nf.tsz nt.tsz $ROPTS
'

# sae-encode --features computes the chosen columns alone: their values are
# the full encoding's within f32 rounding, not its bytes (README
# "Reproducibility"), so the summaries are compared within a tolerance.
test_expect_success NUMPY '--features, and sae-encode --features carried in the header; --dense input equals CSR' '
	topk-ctx $OPTS --features 2-4,39 feat.tsz >s.tsz && check feat.tsz s.tsz $ROPTS --features 2-4,39 &&
	tsz json s.tsz >j && test_line_count = 5 j &&
	sae-encode --sae sae.tsz --features 2-4,39 ctx.tsz >sf.tsz && topk-ctx $OPTS sf.tsz >s2.tsz &&
	tsz json s2.tsz >j2 && "$PYTHON" "$TEST_DIRECTORY/helpers/json_close.py" --tol 1e-5 j j2 &&
	sed "s/\"n_tokens\":96,/\"n_tokens\":95,/" j2 >j3 && ! "$PYTHON" "$TEST_DIRECTORY/helpers/json_close.py" j j3 &&
	sed "s/\"density\":0\.4375/\"density\":0.4376/" j2 >j3 && ! "$PYTHON" "$TEST_DIRECTORY/helpers/json_close.py" j j3 &&
	sae-encode --sae sae.tsz --dense ctx.tsz | topk-ctx $OPTS | tsz json --full >dense.json &&
	tsz json --full topk.tsz >csr.json && cmp csr.json dense.json
'

test_expect_success GPT2_VOCAB,NUMPY '--model: token_strs hold every token of the examples, as display strings; merge keeps them' '
	topk-ctx $OPTS --model "$GPT2_DIR" feat.tsz >m.tsz && tsz json --full m.tsz >mj.json &&
	"$PYTHON" -c "
import json, sys
seen = 0
for line in open(\"mj.json\"):
    r = json.loads(line)
    if r[\"kind\"] != \"feature\": continue
    ids = set()
    for n in (\"top_tokens\", \"rand_tokens\", \"band_tokens\"):
        for row in r[\"tensors\"][n][\"data\"]: ids.update(str(i) for i in row if i >= 0)
    assert set(r[\"token_strs\"]) == ids, r[\"feature\"]
    if \"262\" in ids: assert r[\"token_strs\"][\"262\"] == \" the\"; seen += 1
    if \"198\" in ids: assert r[\"token_strs\"][\"198\"] == \"\\\\n\"
assert seen > 0
" &&
	for i in 00 01 02; do
		sae-encode --sae sae.tsz sh.$i.tsz | topk-ctx $OPTS -m "$GPT2_DIR" -o g.$i.tsz || return 1
	done &&
	topk-ctx --merge g.00.tsz g.01.tsz g.02.tsz | tsz json --full >gm.json && cmp mj.json gm.json
'

test_expect_success NUMPY '--progress on stderr' '
	topk-ctx --progress feat.tsz 2>err >/dev/null && tr "\r" "\n" <err | grep "^topk-ctx: topk 96 tokens"
'

test_expect_success '--help, --version, bad usage' '
	topk-ctx --help >out && grep "^  -k, --top K" out && grep "^      --merge" out && grep "^Memory: F x" out &&
	topk-ctx --version | grep "^topk-ctx " &&
	test_must_fail topk-ctx --window 0 2>err && grep "^topk-ctx: --window" err &&
	test_must_fail topk-ctx --merge 2>err && grep "^topk-ctx: --merge needs the topk-ctx outputs to merge$" err &&
	test_must_fail topk-ctx a b 2>err && grep "^topk-ctx: one input (or --merge for several), got 2$" err &&
	test_must_fail topk-ctx --merge --features 1 a 2>err && grep "^topk-ctx: --features does not go with --merge$" err &&
	for o in "-k 5:top" "--top=5:top" "-w 8:window" "--random 1:random" "--bands 1:bands" "--per-band 1:per-band" \
		"--seed 1:seed" "-m x:model" "--max-mem 1G:max-mem"
	do
		test_must_fail topk-ctx --merge ${o%:*} a >o 2>err &&
		grep "^topk-ctx: --${o#*:} does not go with --merge: the inputs. options (headers) and token_strs are used$" err &&
		! test -s o || return 1
	done
'

test_expect_success NUMPY 'refusals: not features, no f, no tokens, bad CSR, memory, bad --features, truncation' '
	test_must_fail topk-ctx ctx.tsz >o 2>err &&
	grep "^topk-ctx: ctx.tsz: record 1: kind .. (read as .ctx_acts.: its .acts. is 3-D) is not .features. (sae-encode output)$" err &&
	test_must_fail topk-ctx topk.tsz >o 2>err &&
	grep "^topk-ctx: topk.tsz: record 1: kind .feature. is not .features. (sae-encode output)$" err &&
	"$PYTHON" -c "import numpy as np; a = np.load(\"acts.npy\"); np.save(\"rows.npy\", a.reshape(-1, 16))" &&
	tsz from-npy acts=rows.npy >rows.tsz && sae-encode --sae sae.tsz rows.tsz >rf.tsz &&
	test_must_fail topk-ctx rf.tsz >o 2>err &&
	grep "^topk-ctx: rf.tsz: record 1: no \"tokens\" tensor (topk-ctx needs context windows: mlp-tap --keep-context)$" err &&
	"$PYTHON" -c "
import numpy as np
np.save(\"ip.npy\", np.array([0, 2, 3], np.int64)); np.save(\"ix.npy\", np.array([3, 1, 2], np.int32))
np.save(\"ix2.npy\", np.array([0, 7, 2], np.int32)); np.save(\"v.npy\", np.ones(3, np.float32))
np.save(\"t.npy\", np.zeros((1, 3), np.int32))" &&
	tsz from-npy --meta kind=\"features\" --meta pos0=1 indptr=ip.npy indices=ix.npy values=v.npy tokens=t.npy >nof.tsz &&
	test_must_fail topk-ctx nof.tsz >o 2>err &&
	grep "^topk-ctx: nof.tsz: no dictionary size: neither the header nor the first record has an integer .f. (is this sae-encode output?)$" err &&
	tsz from-npy --meta kind=\"features\" --meta f=4 --meta pos0=1 indptr=ip.npy indices=ix.npy values=v.npy tokens=t.npy >bad1.tsz &&
	test_must_fail topk-ctx bad1.tsz >o 2>err &&
	grep "^topk-ctx: bad1.tsz: record 1: indices of row 0 are not ascending at 1$" err &&
	tsz from-npy --meta kind=\"features\" --meta f=4 --meta pos0=1 indptr=ip.npy indices=ix2.npy values=v.npy tokens=t.npy >bad2.tsz &&
	test_must_fail topk-ctx bad2.tsz >o 2>err &&
	grep "^topk-ctx: bad2.tsz: record 1: indices\[1\] = 7 is outside \[0, 4)$" err &&
	tsz from-npy --meta kind=\"features\" --meta f=4 --meta pos0=0 indptr=ip.npy indices=ix2.npy values=v.npy tokens=t.npy >bad3.tsz &&
	test_must_fail topk-ctx bad3.tsz >o 2>err &&
	grep "^topk-ctx: bad3.tsz: record 1: \"indptr\" is (3) i64 but needs (4) i64$" err &&
	test_must_fail topk-ctx --max-mem 1000 feat.tsz >o 2>err &&
	grep "^topk-ctx: needs 1123040 bytes (1.1 MB) for 40 features x 48 examples x 64-token windows but 1000 bytes are available (lower -k, --random, --bands, --window, or pick --features)$" err &&
	test_must_fail topk-ctx --features 50 feat.tsz >o 2>err &&
	grep "^topk-ctx: --features: feature range 50-50 is outside \[0, 40)$" err &&
	head -c 3000 feat.tsz >cut.tsz &&
	test_must_fail topk-ctx -o out.tsz cut.tsz 2>err && grep "^topk-ctx: cut.tsz: " err && ! test -e out.tsz
'

test_expect_success NUMPY 'merge refusals: other options, not topk-ctx output, different features, missing model' '
	topk-ctx -k 4 -w 4 --random 3 --bands 2 --per-band 2 --seed 5 feat.tsz >k4.tsz &&
	test_must_fail topk-ctx --merge topk.tsz k4.tsz >o 2>err &&
	grep "^topk-ctx: k4.tsz: made with other topk-ctx options or dictionary size than topk.tsz$" err &&
	test_must_fail topk-ctx --merge topk.tsz feat.tsz >o 2>err &&
	grep "^topk-ctx: feat.tsz: header has no .topk. options and .f. (is this topk-ctx output?)$" err &&
	sae-encode --sae sae.tsz sh.00.tsz >sf0.tsz && sae-encode --sae sae.tsz sh.01.tsz >sf1.tsz &&
	topk-ctx $OPTS --features 0-3 sf0.tsz >f03.tsz && topk-ctx $OPTS --features 0-4 sf1.tsz >f04.tsz &&
	test_must_fail topk-ctx --merge f03.tsz f04.tsz >o 2>err &&
	grep "^topk-ctx: f04.tsz: record 5: the inputs hold different features (f03.tsz has another record here)$" err &&
	topk-ctx $OPTS --features 1-4 sf1.tsz >f14.tsz &&
	test_must_fail topk-ctx --merge f03.tsz f14.tsz >o 2>err &&
	grep "^topk-ctx: f14.tsz: record 1: feature is not 0: the inputs hold different features$" err &&
	test_must_fail topk-ctx --merge tk.00.tsz tk.01.tsz tk.00.tsz >o 2>err &&
	grep "^topk-ctx: tk.00.tsz: record [0-9]*: feature [0-9]*: token (doc [0-9]*, offset [0-9]*, position [0-9]*) is in two inputs: the inputs overlap (a shard given twice?)$" err &&
	test_must_fail topk-ctx --merge -o mm.tsz m.tsz tk.01.tsz 2>err && grep "inputs overlap" err && ! test -e mm.tsz &&
	test_must_fail topk-ctx --model nowhere feat.tsz >o 2>err && grep "^topk-ctx: nowhere: not a directory, nor in the model cache (.*); fetch it with: model-fetch nowhere$" err
'

test_done
