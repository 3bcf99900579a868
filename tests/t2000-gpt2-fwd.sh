#!/bin/sh
test_description='gpt2-fwd: GPT-2 forward with hooks, loss and patches, against a numpy reference'
. "$(dirname "$0")/test-lib.sh"

REF="$TEST_DIRECTORY/helpers/gpt2_ref.py"
ALL_KINDS="hook_resid_pre hook_attn_out hook_resid_mid mlp.hook_pre mlp.hook_post hook_mlp_out hook_resid_post"

# tokens B T V SEED OUT.npy: random windows as i32
tokens () {
	"$PYTHON" -c "import numpy as np; np.save('$5', np.random.default_rng($4).integers(0, $3, ($1, $2)).astype(np.int32))"
}

# check_all MODEL TOKENS.npy ACTS.tsz LAYERS TOL [PATCH...]: every hook and the loss
check_all () {
	model=$1 tok=$2 acts=$3 layers=$4 tol=$5 &&
	shift 5 &&
	"$PYTHON" "$REF" forward "$model" "$tok" ref.npz "$@" &&
	args= &&
	l=0 &&
	while test $l -lt "$layers"; do
		for k in $ALL_KINDS; do
			tsz to-npy --name blocks.$l.$k got.$l.$k.npy "$acts" &&
			args="$args blocks.$l.$k=got.$l.$k.npy" || return 1
		done
		l=$((l + 1))
	done &&
	# T=1 has an empty loss (B,0), checked by shape by the caller
	if test "$(tsz json "$acts" | head -1 | grep -c "\"loss\":{\"dtype\":\"f32\",\"shape\":\[[0-9]*,0\]")" = 0
	then
		tsz to-npy --name loss got.loss.npy "$acts" && args="$args loss=got.loss.npy"
	fi &&
	"$PYTHON" "$REF" check ref.npz --tol "$tol" $args >check.out &&
	cat check.out >&3
}

test_expect_success 'help and version' '
	gpt2-fwd --help >out && grep "^Usage: gpt2-fwd --model DIR" out && grep -- "--patch HOOK=WHAT" out &&
	gpt2-fwd --version >out && grep "^gpt2-fwd (saepipe)" out
'

test_expect_success NUMPY 'tiny random checkpoints' '
	"$PYTHON" "$REF" make f32 --layers 2 --embd 48 --heads 3 --vocab 97 --positions 16 --seed 1 &&
	"$PYTHON" "$REF" make f16 --layers 2 --embd 40 --heads 5 --vocab 61 --positions 12 --seed 2 \
		--dtype f16 --prefix --lm-head same --attn-bias &&
	"$PYTHON" "$REF" make bf16 --layers 3 --embd 24 --heads 1 --vocab 50 --positions 9 --seed 3 \
		--dtype bf16 --lm-head own --inner 40 --eps 1e-3 &&
	tokens 5 16 97 10 f32.16.npy && tokens 4 7 97 11 f32.7.npy && tokens 3 1 97 12 f32.1.npy &&
	tokens 6 12 61 13 f16.12.npy && tokens 2 3 61 14 f16.3.npy &&
	tokens 3 9 50 15 bf16.9.npy
'

for case in f32:16:2 f32:7:2 f32:1:2 f16:12:2 f16:3:2 bf16:9:3; do
	m=${case%%:*} rest=${case#*:} T=${rest%%:*} L=${rest#*:}
	test_expect_success NUMPY "every hook and the loss match numpy: $m checkpoint, T=$T" "
		tsz from-npy tokens=$m.$T.npy >tok.tsz &&
		gpt2-fwd -m $m --hook all --loss -b 2 tok.tsz >acts.tsz &&
		check_all $m $m.$T.npy acts.tsz $L 1e-4 &&
		if test $T = 1
		then
			test_line_count = $((L * 7)) check.out &&
			tsz json acts.tsz >json && grep '\"loss\":{\"dtype\":\"f32\",\"shape\":\[2,0\]}' json
		else
			test_line_count = $((L * 7 + 1)) check.out
		fi
	"
done

test_expect_success NUMPY 'records and batches: tokens, doc and offset pass through; batch boundaries do not matter' '
	"$PYTHON" -c "import numpy as np; np.save(\"doc.npy\", np.arange(5, dtype=np.int64) + 100); np.save(\"off.npy\", np.arange(5, dtype=np.int64) * 7)" &&
	tsz from-npy --rows 2 tokens=f32.16.npy doc=doc.npy offset=off.npy >tok.tsz &&
	gpt2-fwd -m f32 --hook blocks.1.hook_resid_post -b 3 tok.tsz >a3.tsz &&
	gpt2-fwd -m f32 --hook blocks.1.hook_resid_post -b 1 tok.tsz >a1.tsz &&
	tsz json a3.tsz >json && test_line_count = 2 json &&
	grep "\"kind\":\"hook_acts\"" json &&
	tsz to-npy --name doc d.npy a3.tsz && tsz to-npy --name offset o.npy a3.tsz && tsz to-npy --name tokens t.npy a3.tsz &&
	tsz to-npy --name blocks.1.hook_resid_post r3.npy a3.tsz && tsz to-npy --name blocks.1.hook_resid_post r1.npy a1.tsz &&
	"$PYTHON" -c "
import numpy as np, sys
ok = (np.load(\"d.npy\") == np.load(\"doc.npy\")).all() and (np.load(\"o.npy\") == np.load(\"off.npy\")).all()
ok = ok and (np.load(\"t.npy\") == np.load(\"f32.16.npy\")).all()
ok = ok and np.abs(np.load(\"r3.npy\") - np.load(\"r1.npy\")).max() < 1e-5
sys.exit(0 if ok else 1)" &&
	tsz json --headers a3.tsz | head -1 >h && grep "\"hooks\":\[\"blocks.1.hook_resid_post\"\]" h && grep "\"model\":\"f32\"" h
'

test_expect_success NUMPY 'windows of different lengths in one stream are batched apart' '
	tsz from-npy tokens=f32.16.npy >a.tsz && tsz from-npy tokens=f32.7.npy >b.tsz &&
	tsz cat a.tsz b.tsz a.tsz >mixed.tsz &&
	gpt2-fwd -m f32 --loss -b 4 mixed.tsz >m.tsz &&
	tsz json m.tsz >json &&
	grep -c "\"loss\":{\"dtype\":\"f32\",\"shape\":\[4,15\]}" json >n16 && echo 2 >expect && test_cmp expect n16 &&
	grep -c "\"shape\":\[1,15\]" json >n1 && echo 2 >expect && test_cmp expect n1 &&
	grep -c "\"shape\":\[4,6\]" json >n7 && echo 1 >expect && test_cmp expect n7 &&
	tsz json --full m.tsz >full &&
	"$PYTHON" "$REF" forward f32 f32.7.npy ref7.npz &&
	"$PYTHON" -c "
import json, numpy as np, sys
recs = [json.loads(l) for l in open(\"full\")]
got = np.array(recs[2][\"tensors\"][\"loss\"][\"data\"])
ref = np.load(\"ref7.npz\")[\"loss\"]
sys.exit(0 if got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max() else 1)"
'

test_expect_success NUMPY 'default hook is the last layer mlp.hook_post; --loss alone writes only the loss' '
	tsz from-npy tokens=f32.7.npy >tok.tsz &&
	gpt2-fwd -m f32 tok.tsz >a.tsz && tsz info a.tsz >info &&
	grep "blocks.1.mlp.hook_post *f32 *(\*,7,192)" info && ! grep "blocks.0" info && ! grep "^  loss " info &&
	gpt2-fwd -m f32 --loss tok.tsz >b.tsz && tsz info b.tsz >info &&
	grep "loss *f32 *(\*,6)" info && ! grep "blocks\." info
'

test_expect_success NUMPY '--dtype bf16 and f16 round the same values' '
	tsz from-npy tokens=f32.16.npy >tok.tsz &&
	gpt2-fwd -m f32 --hook blocks.0.mlp.hook_post --dtype bf16 tok.tsz >b.tsz &&
	gpt2-fwd -m f32 --hook blocks.0.mlp.hook_post --dtype f16 tok.tsz >h.tsz &&
	tsz info b.tsz | grep "blocks.0.mlp.hook_post *bf16" &&
	tsz info h.tsz | grep "blocks.0.mlp.hook_post *f16" &&
	"$PYTHON" "$REF" forward f32 f32.16.npy ref.npz &&
	tsz to-npy --name blocks.0.mlp.hook_post b.npy b.tsz && tsz to-npy --name blocks.0.mlp.hook_post h.npy h.tsz &&
	"$PYTHON" "$REF" check ref.npz --tol 1e-2 blocks.0.mlp.hook_post=b.npy &&
	"$PYTHON" "$REF" check ref.npz --tol 1e-3 blocks.0.mlp.hook_post=h.npy &&
	! "$PYTHON" "$REF" check ref.npz --tol 1e-6 blocks.0.mlp.hook_post=b.npy
'

test_expect_success NUMPY '--patch zero and mean:FILE match the patched numpy forward' '
	tsz from-npy tokens=f32.16.npy >tok.tsz &&
	"$PYTHON" -c "import numpy as np; np.save(\"mean.npy\", np.random.default_rng(5).standard_normal(192).astype(np.float32))" &&
	gpt2-fwd -m f32 --hook all --loss --patch blocks.0.hook_attn_out=zero \
		--patch blocks.1.mlp.hook_post=mean:mean.npy tok.tsz >p.tsz &&
	check_all f32 f32.16.npy p.tsz 2 1e-4 blocks.0.hook_attn_out=zero blocks.1.mlp.hook_post=mean:mean.npy &&
	grep "ok blocks.1.mlp.hook_post" check.out &&
	gpt2-fwd -m f32 --loss tok.tsz >clean.tsz && tsz to-npy --name loss clean.npy clean.tsz &&
	! "$PYTHON" "$REF" check ref.npz loss=clean.npy &&
	gpt2-fwd -m f32 --hook blocks.1.hook_resid_pre --patch blocks.0.hook_resid_post=zero tok.tsz >z.tsz &&
	tsz to-npy --name blocks.1.hook_resid_pre z.npy z.tsz &&
	"$PYTHON" -c "import numpy as np, sys; sys.exit(0 if not np.load(\"z.npy\").any() else 1)"
'

# mk_sae PREFIX ARCH K D F SCALE HOOK SEED: an SAE file PREFIX.tsz (as sae-fit writes
# it: one record, kind "sae") and the same arrays for the numpy reference
mk_sae () {
	"$PYTHON" -c "
import json, numpy as np
p, arch, k, D, F, s, seed = \"$1\", \"$2\", $3, $4, $5, $6, $8
rng = np.random.default_rng(seed)
a = {\"W_enc\": rng.standard_normal((D, F)) / np.sqrt(D), \"b_enc\": rng.standard_normal(F) * 0.1,
     \"W_dec\": rng.standard_normal((F, D)) / np.sqrt(F), \"b_dec\": rng.standard_normal(D) * 0.1}
for n, v in a.items():
    np.save(\"%s.%s.npy\" % (p, n), v.astype(np.float32))
json.dump({\"arch\": arch, \"k\": k, \"norm_scale\": s}, open(p + \".json\", \"w\"))" &&
	tsz from-npy --meta kind=sae --meta arch=$2 --meta k=$3 --meta d=$4 --meta f=$5 --meta norm_scale=$6 \
		--meta hook=$7 W_enc=$1.W_enc.npy b_enc=$1.b_enc.npy W_dec=$1.W_dec.npy b_dec=$1.b_dec.npy >$1.tsz
}

test_expect_success NUMPY '--patch sae:FILE splices the SAE reconstruction (relu and topk, with norm_scale)' '
	tsz from-npy tokens=f32.16.npy >tok.tsz &&
	mk_sae relu relu 0 192 300 0.7 blocks.0.mlp.hook_post 1 &&
	mk_sae topk topk 9 48 100 1.3 "" 2 &&
	gpt2-fwd -m f32 --hook all --loss --patch blocks.0.mlp.hook_post=sae:relu.tsz \
		--patch blocks.1.hook_resid_mid=sae:topk.tsz tok.tsz >s.tsz &&
	check_all f32 f32.16.npy s.tsz 2 1e-4 blocks.0.mlp.hook_post=sae:relu blocks.1.hook_resid_mid=sae:topk &&
	grep "ok blocks.0.mlp.hook_post" check.out && grep "ok loss" check.out &&
	test_must_fail gpt2-fwd -m f32 --patch blocks.1.mlp.hook_post=sae:topk.tsz tok.tsz >out 2>err &&
	grep "^gpt2-fwd: topk.tsz: SAE width d=48 but blocks.1.mlp.hook_post has width 192$" err &&
	test_must_fail gpt2-fwd -m f32 --patch blocks.1.mlp.hook_post=sae:relu.tsz tok.tsz >out 2>err &&
	grep "^gpt2-fwd: relu.tsz: SAE was trained on blocks.0.mlp.hook_post, not blocks.1.mlp.hook_post$" err &&
	test_must_fail gpt2-fwd -m f32 --patch blocks.1.mlp.hook_post=sae:tok.tsz tok.tsz >out 2>err &&
	grep "^gpt2-fwd: tok.tsz: not an SAE file" err
'

test_expect_success NUMPY 'windows longer than n_positions, bad token ids and bad token tensors are refused' '
	tokens 2 17 97 1 long.npy && tsz from-npy tokens=long.npy >long.tsz &&
	test_must_fail gpt2-fwd -m f32 long.tsz >out 2>err &&
	grep "^gpt2-fwd: long.tsz: record 1: windows of 17 tokens exceed the model.s n_positions 16$" err &&
	"$PYTHON" -c "import numpy as np; a = np.zeros((2, 4), np.int32); a[1, 2] = 97; np.save(\"big.npy\", a); np.save(\"neg.npy\", -a); np.save(\"flt.npy\", a.astype(np.float32)); np.save(\"x.npy\", a)" &&
	tsz from-npy tokens=big.npy >big.tsz && tsz from-npy tokens=neg.npy >neg.tsz &&
	tsz from-npy tokens=flt.npy >flt.tsz && tsz from-npy x=x.npy >x.tsz &&
	test_must_fail gpt2-fwd -m f32 big.tsz >out 2>err &&
	grep "^gpt2-fwd: big.tsz: record 1: token id 97 at row 1, position 2 is outside the model.s vocabulary \[0, 97)$" err &&
	test_must_fail gpt2-fwd -m f32 neg.tsz >out 2>err && grep "token id -97 at row 1, position 2" err &&
	test_must_fail gpt2-fwd -m f32 flt.tsz >out 2>err &&
	grep "^gpt2-fwd: flt.tsz: record 1: tokens is (2,4) f32, expected i32 (rows,T)$" err &&
	test_must_fail gpt2-fwd -m f32 x.tsz >out 2>err &&
	grep "^gpt2-fwd: x.tsz: record 1: no tensor .tokens.$" err &&
	gpt2-fwd -m f32 --hook blocks.0.mlp.hook_post tok.tsz >fwd.tsz && test_must_fail gpt2-fwd -m f32 fwd.tsz >out 2>err &&
	grep "^gpt2-fwd: fwd.tsz: record 1: kind .hook_acts. is not .tokens. (gpt2-tok output)$" err
'

test_expect_success NUMPY '-o writes atomically; a failed run leaves no output and no end marker; --progress on stderr' '
	tsz from-npy tokens=f32.16.npy >good.tsz &&
	gpt2-fwd -m f32 --progress -o out.tsz good.tsz >stdout 2>progress &&
	test ! -s stdout && tsz info out.tsz | grep "^records: 1" &&
	grep "forward .*tokens" progress &&
	"$PYTHON" -c "import numpy as np; a = np.load(\"f32.16.npy\"); a[4, 3] = 500; np.save(\"late.npy\", a)" &&
	tsz from-npy --rows 2 tokens=late.npy >late.tsz &&
	test_must_fail gpt2-fwd -m f32 -o bad.tsz late.tsz 2>err &&
	grep "^gpt2-fwd: late.tsz: record 3: token id 500 at row 0, position 3" err &&
	test ! -e bad.tsz && ls >files && ! grep "bad.tsz" files &&
	test_must_fail gpt2-fwd -m f32 -b 1 late.tsz >piped.tsz 2>err &&
	test_must_fail tsz info piped.tsz 2>err && grep "piped.tsz: .*without end marker" err
'

test_expect_success NUMPY 'truncated and missing inputs fail with the input named' '
	tsz from-npy tokens=f32.16.npy >tok.tsz &&
	head -c $(($(wc -c <tok.tsz) - 20)) tok.tsz >cut.tsz &&
	test_must_fail gpt2-fwd -m f32 cut.tsz >out 2>err && grep "^gpt2-fwd: cut.tsz: " err &&
	test_must_fail gpt2-fwd -m f32 nosuch.tsz >out 2>err && grep "^gpt2-fwd: nosuch.tsz: " err
'

test_expect_success NUMPY 'checkpoints that do not match their config are refused, naming the key and shapes' '
	cp -r f32 bad && sed "s/\"n_embd\": 48/\"n_embd\": 60/" f32/config.json >bad/config.json &&
	test_must_fail gpt2-fwd -m bad tok.tsz >out 2>err &&
	grep "^gpt2-fwd: bad/model.safetensors: wte.weight is (97,48) F32 but the config needs (97,60)$" err &&
	sed "s/\"n_layer\": 2/\"n_layer\": 3/" f32/config.json >bad/config.json &&
	test_must_fail gpt2-fwd -m bad tok.tsz >out 2>err &&
	grep "^gpt2-fwd: bad/model.safetensors: missing tensor h.2.ln_1.weight" err &&
	sed "s/\"n_layer\": 2/\"n_layer\": 1/" f32/config.json >bad/config.json &&
	test_must_fail gpt2-fwd -m bad tok.tsz >out 2>err &&
	grep "^gpt2-fwd: bad/model.safetensors: unexpected tensor h.1.ln_1.weight" err &&
	sed "s/\"n_head\": 3/\"n_head\": 5/" f32/config.json >bad/config.json &&
	test_must_fail gpt2-fwd -m bad tok.tsz >out 2>err &&
	grep "^gpt2-fwd: bad/config.json: n_embd 48 is not a multiple of n_head 5$" err &&
	sed "s/\"model_type\": \"gpt2\"/\"model_type\": \"llama\"/" f32/config.json >bad/config.json &&
	test_must_fail gpt2-fwd -m bad tok.tsz >out 2>err &&
	grep "^gpt2-fwd: bad/config.json: model_type is \"llama\", not \"gpt2\"$" err &&
	sed "s/GPT2LMHeadModel/BertModel/" f32/config.json >bad/config.json &&
	test_must_fail gpt2-fwd -m bad tok.tsz >out 2>err &&
	grep "^gpt2-fwd: bad/config.json: architecture \"BertModel\" is not GPT2LMHeadModel or GPT2Model$" err &&
	echo "{\"model_type\": " >bad/config.json &&
	test_must_fail gpt2-fwd -m bad tok.tsz >out 2>err && grep "^gpt2-fwd: bad/config.json: line " err &&
	cp f32/config.json bad/config.json &&
	head -c 3000 f32/model.safetensors >bad/model.safetensors &&
	test_must_fail gpt2-fwd -m bad tok.tsz >out 2>err &&
	grep "^gpt2-fwd: bad/model.safetensors: .*data_offsets outside the file" err &&
	printf "\377\377\377\377\377\377\377\377junk" >bad/model.safetensors &&
	test_must_fail gpt2-fwd -m bad tok.tsz >out 2>err &&
	grep "^gpt2-fwd: bad/model.safetensors: header length .* not a safetensors file$" err &&
	SAEPIPE_HOME=$PWD/home && export SAEPIPE_HOME &&
	test_must_fail gpt2-fwd -m nosuchdir tok.tsz >out 2>err &&
	grep "^gpt2-fwd: nosuchdir: not a directory, nor in the model cache ($PWD/home/models/nosuchdir); fetch it with: model-fetch nosuchdir$" err &&
	mkdir empty && test_must_fail gpt2-fwd -m empty tok.tsz >out 2>err &&
	grep "^gpt2-fwd: empty/config.json: No such file or directory$" err
'

test_expect_success NUMPY 'a sharded checkpoint (model.safetensors.index.json) loads like the single file' '
	"$PYTHON" "$REF" make sh --layers 2 --embd 40 --heads 5 --vocab 61 --positions 12 --seed 2 \
		--dtype f16 --prefix --lm-head same --attn-bias --shards 3 &&
	! test -e sh/model.safetensors && test -e sh/model-00003-of-00003.safetensors &&
	tsz from-npy tokens=f16.12.npy >tok12.tsz &&
	gpt2-fwd -m sh --hook all --loss tok12.tsz >sh.tsz &&
	check_all sh f16.12.npy sh.tsz 2 1e-4 &&
	gpt2-fwd -m f16 --hook all --loss tok12.tsz >one.tsz &&
	for n in loss blocks.1.hook_resid_post; do
		tsz to-npy --name $n a.npy sh.tsz && tsz to-npy --name $n b.npy one.tsz && cmp a.npy b.npy || return 1
	done
'

test_expect_success NUMPY 'a sharded checkpoint that disagrees with its index is refused, naming the file' '
	cp -r sh bad1 && rm bad1/model-00002-of-00003.safetensors &&
	test_must_fail gpt2-fwd -m bad1 tok12.tsz >out 2>err &&
	grep "^gpt2-fwd: bad1/model-00002-of-00003.safetensors: No such file or directory$" err &&
	cp -r sh bad2 && sed "s/\"transformer.wte.weight\": \"model-00001/\"transformer.wte.weight\": \"model-00002/" \
		sh/model.safetensors.index.json >bad2/model.safetensors.index.json &&
	test_must_fail gpt2-fwd -m bad2 tok12.tsz >out 2>err &&
	grep "^gpt2-fwd: bad2/model.safetensors.index.json: transformer.wte.weight: not in model-00002-of-00003.safetensors, where the index puts it$" err &&
	cp -r sh bad3 && "$PYTHON" -c "import json; f = \"bad3/model.safetensors.index.json\"; d = json.load(open(f)); del d[\"weight_map\"][\"transformer.ln_f.bias\"]; json.dump(d, open(f, \"w\"))" &&
	test_must_fail gpt2-fwd -m bad3 tok12.tsz >out 2>err &&
	grep "^gpt2-fwd: bad3/model-00003-of-00003.safetensors: transformer.ln_f.bias: not listed in bad3/model.safetensors.index.json$" err &&
	cp -r sh bad4 && echo "{\"weight_map\": {\"x\": \"../f16/model.safetensors\"}}" >bad4/model.safetensors.index.json &&
	test_must_fail gpt2-fwd -m bad4 tok12.tsz >out 2>err &&
	grep "^gpt2-fwd: bad4/model.safetensors.index.json: weight_map: x: shard must be a file name inside the directory$" err &&
	echo "{\"metadata\": {}}" >bad4/model.safetensors.index.json &&
	test_must_fail gpt2-fwd -m bad4 tok12.tsz >out 2>err &&
	grep "^gpt2-fwd: bad4/model.safetensors.index.json: no \"weight_map\" object naming the shards$" err &&
	echo "{" >bad4/model.safetensors.index.json &&
	test_must_fail gpt2-fwd -m bad4 tok12.tsz >out 2>err && grep "^gpt2-fwd: bad4/model.safetensors.index.json: line " err &&
	cp -r sh bad5 && sed "s/\"n_layer\": 2/\"n_layer\": 3/" sh/config.json >bad5/config.json &&
	test_must_fail gpt2-fwd -m bad5 tok12.tsz >out 2>err &&
	grep "^gpt2-fwd: bad5/model.safetensors.index.json: missing tensor transformer.h.2.ln_1.weight" err &&
	mkdir bad6 && cp sh/config.json bad6/ &&
	test_must_fail gpt2-fwd -m bad6 tok12.tsz >out 2>err &&
	grep "^gpt2-fwd: bad6: no model.safetensors (nor model.safetensors.index.json for a sharded one)$" err
'

test_expect_success NUMPY '--model takes a repo id from the model cache' '
	mkdir -p home/models/someone/tiny && cp f32/config.json f32/model.safetensors home/models/someone/tiny/ &&
	tsz from-npy tokens=f32.7.npy >tok.tsz &&
	SAEPIPE_HOME=$PWD/home gpt2-fwd -m someone/tiny --loss tok.tsz >a.tsz &&
	gpt2-fwd -m f32 --loss tok.tsz >b.tsz &&
	tsz to-npy --name loss a.npy a.tsz && tsz to-npy --name loss b.npy b.tsz && cmp a.npy b.npy &&
	tsz json --headers a.tsz | head -1 | grep "\"model\":\"someone/tiny\""
'

test_expect_success NUMPY 'bad flags exit 2 with one line' '
	test_code_2 () { "$@"; test $? = 2; } &&
	test_code_2 gpt2-fwd tok.tsz 2>err && grep "^gpt2-fwd: --model DIR is required$" err &&
	test_code_2 gpt2-fwd -m f32 -b 0 tok.tsz 2>err && grep "^gpt2-fwd: --batch: expected a whole number" err &&
	test_code_2 gpt2-fwd -m f32 --dtype i32 tok.tsz 2>err && grep "^gpt2-fwd: --dtype: expected one of f32, bf16, f16, got .i32.$" err &&
	test_code_2 gpt2-fwd -m f32 --hook blocks.2.mlp.hook_post tok.tsz 2>err &&
	grep "^gpt2-fwd: --hook: hook blocks.2.mlp.hook_post: layer 2 but the model has 2 layers$" err &&
	test_code_2 gpt2-fwd -m f32 --hook blocks.0.mlp.hook_mid tok.tsz 2>err && grep "^gpt2-fwd: --hook: unknown hook" err &&
	test_code_2 gpt2-fwd -m f32 --patch blocks.0.hook_attn_out tok.tsz 2>err && grep "^gpt2-fwd: --patch: expected HOOK=" err &&
	test_code_2 gpt2-fwd -m f32 --patch blocks.0.hook_attn_out=one tok.tsz 2>err && grep "^gpt2-fwd: --patch: expected zero, mean:FILE or sae:FILE" err &&
	"$PYTHON" -c "import numpy as np; np.save(\"m7.npy\", np.zeros(7, np.float32))" &&
	test_must_fail gpt2-fwd -m f32 --patch blocks.0.hook_attn_out=mean:m7.npy tok.tsz >out 2>err &&
	grep "^gpt2-fwd: m7.npy: mean must be a (48) float vector$" err
'

command -v script >/dev/null && test_set_prereq SCRIPT
test_expect_success NUMPY,SCRIPT 'a terminal on stdout is refused unless -f' '
	tsz from-npy tokens=f32.7.npy >tok7.tsz &&
	script -qec "gpt2-fwd -m f32 tok7.tsz" /dev/null >tty.out 2>&1 </dev/null;
	grep "gpt2-fwd: stdout is a terminal: refusing to write a binary stream (redirect it, or -f)" tty.out &&
	script -qec "gpt2-fwd -f -m f32 tok7.tsz | wc -c" /dev/null >tty.out 2>&1 </dev/null &&
	! grep "refusing" tty.out
'

test_expect_success EXPENSIVE,NUMPY 'a distilgpt2-shaped random model matches numpy (T=128)' '
	"$PYTHON" "$REF" make big --layers 6 --embd 768 --heads 12 --vocab 50257 --positions 1024 --dtype f16 &&
	tokens 2 128 50257 3 big.npy && tsz from-npy tokens=big.npy >big.tsz &&
	gpt2-fwd -m big --loss --hook blocks.5.mlp.hook_post --hook blocks.3.hook_attn_out big.tsz >b.tsz &&
	tsz to-npy --name loss l.npy b.tsz && tsz to-npy --name blocks.5.mlp.hook_post h.npy b.tsz &&
	tsz to-npy --name blocks.3.hook_attn_out a.npy b.tsz &&
	"$PYTHON" "$REF" forward big big.npy ref.npz &&
	"$PYTHON" "$REF" check ref.npz loss=l.npy blocks.5.mlp.hook_post=h.npy blocks.3.hook_attn_out=a.npy >&3
'

test_expect_success TINY_MODEL,NUMPY 'the shipped tiny model: a sane loss on English text, and numpy agrees' '
	cat >text.txt <<-\EOF &&
	This package contains the documentation for the GNU C Library. The library provides the basic
	routines for allocating memory, searching directories, opening and closing files, reading and
	writing files, string handling, pattern matching, arithmetic, and so on. Please report bugs to
	the Debian bug tracking system, and include the version of the package you are using. See the
	file COPYING for the copying conditions, and the file NEWS for the changes in each release.
	def main(argv=None):
	    """Parse the command line and run the program."""
	    if argv is None:
	        argv = sys.argv[1:]
	    parser = argparse.ArgumentParser(description=__doc__)
	    parser.add_argument("files", nargs="*", help="the files to read")
	    args = parser.parse_args(argv)
	    for name in args.files:
	        with open(name) as f:
	            print(f.read())
	    return 0
	EOF
	"$PYTHON" "$REF" windows "$TINY_MODEL_DIR" text.txt w.npy 64 &&
	tsz from-npy tokens=w.npy >w.tsz &&
	gpt2-fwd -m "$TINY_MODEL_DIR" --loss --hook blocks.3.mlp.hook_post w.tsz >l.tsz &&
	tsz to-npy --name loss l.npy l.tsz &&
	"$PYTHON" -c "
import numpy as np, sys
l = np.load(\"l.npy\"); m = float(l.mean())
print(\"tiny model loss %.3f nats on %d tokens\" % (m, l.size))
sys.exit(0 if 2.0 < m < 5.0 else 1)" >&3 &&
	"$PYTHON" "$REF" forward "$TINY_MODEL_DIR" w.npy ref.npz &&
	tsz to-npy --name blocks.3.mlp.hook_post h.npy l.tsz &&
	"$PYTHON" "$REF" check ref.npz loss=l.npy blocks.3.mlp.hook_post=h.npy >&3
'

test_done
