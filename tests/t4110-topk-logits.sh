#!/bin/sh
test_description='topk-ctx --sae: logit effects against numpy on a tiny random GPT-2; merge; threads; refusals'
. "$(dirname "$0")/test-lib.sh"

REF="$TEST_DIRECTORY/helpers/logits_ref.py"
MK="$TEST_DIRECTORY/helpers/topk_ref.py"
GREF="$TEST_DIRECTORY/helpers/gpt2_ref.py"
OPTS="-k 3 -w 4 --random 2 --bands 2 --per-band 1"

# sae NAME D F HOOK: NAME.tsz, an SAE of NAME/W_dec.npy..., with its hook; NAME.feat.tsz its features
sae () {
	mkdir -p $1 && "$PYTHON" "$MK" mk $1 --arch relu --d $2 --f $3 --b 6 --t 9 --docs --seed 4 &&
	tsz from-npy --rows 1000000 --meta kind=sae --meta arch=relu --meta d=$2 --meta f=$3 --meta hook=\"$4\" \
		W_enc=$1/W_enc.npy b_enc=$1/b_enc.npy W_dec=$1/W_dec.npy b_dec=$1/b_dec.npy >$1.tsz &&
	tsz from-npy --rows 3 --meta pos0=1 acts=$1/acts.npy tokens=$1/tokens.npy doc=$1/doc.npy offset=$1/offset.npy >$1.ctx.tsz &&
	sae-encode --sae $1.tsz $1.ctx.tsz >$1.feat.tsz
}

test_expect_success GPT2_VOCAB,NUMPY 'setup: a tiny random GPT-2 with the GPT-2 vocabulary; SAEs on three hooks' '
	"$PYTHON" "$GREF" make m --layers 2 --embd 16 --heads 2 --vocab 50257 --inner 24 --positions 16 --seed 7 &&
	cp "$GPT2_DIR/vocab.json" "$GPT2_DIR/merges.txt" m/ &&
	sae post 24 40 blocks.1.mlp.hook_post &&
	sae pre 24 12 blocks.0.mlp.hook_pre &&
	sae res 16 30 blocks.0.hook_resid_post
'

test_expect_success GPT2_VOCAB,NUMPY 'mlp.hook_post: top and bottom 10 tokens and values match numpy' '
	topk-ctx $OPTS --model m --sae post.tsz post.feat.tsz >post.tk.tsz &&
	tsz json --full post.tk.tsz >post.json &&
	"$PYTHON" "$REF" check m post/W_dec.npy blocks.1.mlp.hook_post post.json >out && cat out &&
	grep "^max diff .* over 40 features$" out && grep "^all ok$" out &&
	tsz json post.tk.tsz | head -1 | grep "\"logit_top_ids\":{\"dtype\":\"i32\",\"shape\":\[10\]}" &&
	tsz json post.tk.tsz | head -1 | grep "\"logit_bot_vals\":{\"dtype\":\"f32\",\"shape\":\[10\]}" &&
	tsz json --headers post.tk.tsz | head -1 | grep "\"logits\":{\"k\":10,\"sae\":\"post.tsz\",\"hook\":\"blocks.1.mlp.hook_post\",\"method\":\"saedashboard\"}"
'

test_expect_success GPT2_VOCAB,NUMPY 'the check can fail: the same logits are not those of another layer' '
	test_must_fail "$PYTHON" "$REF" check m post/W_dec.npy blocks.0.mlp.hook_post post.json >out &&
	grep "^mismatch: feature 0: " out
'

test_expect_success GPT2_VOCAB,NUMPY 'mlp.hook_pre and a residual hook (no c_proj), --logits 5, --features' '
	topk-ctx $OPTS --model m --sae pre.tsz --logits 5 pre.feat.tsz | tsz json --full >pre.json &&
	"$PYTHON" "$REF" check m pre/W_dec.npy blocks.0.mlp.hook_pre pre.json >out && grep "^all ok$" out &&
	grep -c "\"logit_top_ids\":{\"dtype\":\"i32\",\"shape\":\[5\]" pre.json >n && test "$(cat n)" = 12 &&
	topk-ctx $OPTS --model m --sae res.tsz --features 3-9,20 res.feat.tsz | tsz json --full >res.json &&
	"$PYTHON" "$REF" check m res/W_dec.npy blocks.0.hook_resid_post res.json >out && cat out &&
	grep "^max diff .* over 8 features$" out && grep "^all ok$" out
'

test_expect_success GPT2_VOCAB,NUMPY 'the same bytes with 2 threads; merge of shards equals one run and keeps the logits' '
	OPENBLAS_NUM_THREADS=2 topk-ctx $OPTS --model m --sae post.tsz post.feat.tsz | tsz json --full >t2.json &&
	cmp post.json t2.json &&
	tsz split -n 2 sh post.ctx.tsz &&
	for i in 00 01; do
		sae-encode --sae post.tsz sh.$i.tsz | topk-ctx $OPTS -m m --sae post.tsz -o lk.$i.tsz || return 1
	done &&
	topk-ctx --merge lk.00.tsz lk.01.tsz >lm.tsz && tsz json --full lm.tsz >lm.json && cmp post.json lm.json &&
	tsz json --headers lm.tsz | head -1 | grep "\"logits\":{\"k\":10,"
'

test_expect_success GPT2_VOCAB,NUMPY 'merge refusals: shards with and without logits, or of other SAEs' '
	sae-encode --sae post.tsz sh.01.tsz | topk-ctx $OPTS -m m -o nolk.01.tsz &&
	test_must_fail topk-ctx --merge lk.00.tsz nolk.01.tsz >o 2>err &&
	grep "^topk-ctx: nolk.01.tsz: header .logits. differs from lk.00.tsz.s (logit effects of another --sae, or none)$" err &&
	"$PYTHON" -c "import numpy as np; w = np.load(\"post/W_dec.npy\"); np.save(\"neg.npy\", -w)" &&
	tsz from-npy --rows 1000000 --meta kind=sae --meta arch=relu --meta d=24 --meta f=40 \
		--meta hook=\"blocks.1.mlp.hook_post\" W_enc=post/W_enc.npy b_enc=post/b_enc.npy W_dec=neg.npy \
		b_dec=post/b_dec.npy >post.tsz.neg && mkdir -p negdir && cp post.tsz.neg negdir/post.tsz &&
	(cd negdir && sae-encode --sae ../post.tsz ../sh.01.tsz | topk-ctx $OPTS -m ../m --sae post.tsz -o ../neg.01.tsz) &&
	test_must_fail topk-ctx --merge lk.00.tsz neg.01.tsz >o.tsz 2>err &&
	grep "^topk-ctx: neg.01.tsz: record 1: the promoted tokens differ from lk.00.tsz.s: the inputs were made with another --sae or --model$" err &&
	spoil-logits short lk.01.tsz >short.01.tsz &&
	test_must_fail topk-ctx --merge lk.00.tsz short.01.tsz >o.tsz 2>err &&
	echo "topk-ctx: short.01.tsz: record 1: feature 0: \"logit_top_vals\" has length 9 but \"logit_top_ids\" has length 10" >expect &&
	test_cmp expect err &&
	spoil-logits none lk.01.tsz >none.01.tsz &&
	test_must_fail topk-ctx --merge lk.00.tsz none.01.tsz >o.tsz 2>err &&
	grep "^topk-ctx: none.01.tsz: record 1: no logit effects, though the header has .logits.$" err &&
	test_line_count = 1 err
'

test_expect_success GPT2_VOCAB,NUMPY 'the report shows the promoted and suppressed tokens' '
	sae-report -o r.html -F post.tk.tsz &&
	grep -o "\"lg\":\[\[\"promoted\",\[\[[0-9]*,[-0-9.e]*\].*\"suppressed\",\[\[[0-9]*,[-0-9.e]*\]" r.html >lg && test_line_count = 40 lg &&
	grep "el(.div.,.logits.)" r.html && grep "Logit effects" r.html &&
	topk-ctx $OPTS post.feat.tsz >plain.tsz && sae-report -o r0.html -F plain.tsz && ! grep "\"lg\":" r0.html
'

test_expect_success GPT2_VOCAB,NUMPY 'refusals: no --model, no weights, width, vocabulary, size, hook' '
	test_must_fail topk-ctx --sae post.tsz post.feat.tsz >o 2>err &&
	grep "^topk-ctx: --sae needs --model: the logit effects go through the model.s weights$" err &&
	test_must_fail topk-ctx --logits 3 post.feat.tsz >o 2>err && grep "^topk-ctx: --logits needs --sae$" err &&
	test_must_fail topk-ctx --merge --sae post.tsz lk.00.tsz >o 2>err && grep "^topk-ctx: --sae does not go with --merge" err &&
	test_must_fail topk-ctx -m "$GPT2_DIR" --sae post.tsz post.feat.tsz >o 2>err && cat err &&
	grep "^topk-ctx: $GPT2_DIR: .*config.json" err && ! test -s o &&
	tsz from-npy --rows 1000000 --meta kind=sae --meta arch=relu --meta d=24 --meta f=40 --meta hook=\"blocks.1.hook_resid_post\" \
		W_enc=post/W_enc.npy b_enc=post/b_enc.npy W_dec=post/W_dec.npy b_dec=post/b_dec.npy >wide.tsz &&
	test_must_fail topk-ctx -m m --sae wide.tsz -o wo.tsz post.feat.tsz 2>err &&
	grep "^topk-ctx: wide.tsz: the SAE is d=24 wide but blocks.1.hook_resid_post of this model is 16 wide$" err && ! test -e wo.tsz &&
	tsz from-npy --rows 1000000 --meta kind=sae --meta arch=relu --meta d=24 --meta f=40 \
		W_enc=post/W_enc.npy b_enc=post/b_enc.npy W_dec=post/W_dec.npy b_dec=post/b_dec.npy >nohook.tsz &&
	test_must_fail topk-ctx -m m --sae nohook.tsz post.feat.tsz >o 2>err &&
	grep "^topk-ctx: nohook.tsz: the SAE names no hook (metadata .hook.): logit effects need the hook it reads$" err &&
	tsz from-npy --rows 1000000 --meta kind=sae --meta arch=relu --meta d=24 --meta f=40 --meta hook=\"blocks.7.mlp.hook_post\" \
		W_enc=post/W_enc.npy b_enc=post/b_enc.npy W_dec=post/W_dec.npy b_dec=post/b_dec.npy >deep.tsz &&
	test_must_fail topk-ctx -m m --sae deep.tsz post.feat.tsz >o 2>err && cat err &&
	grep "^topk-ctx: deep.tsz: the SAE.s hook: .*7" err &&
	test_must_fail topk-ctx -m m --sae pre.tsz post.feat.tsz >o 2>err &&
	grep "^topk-ctx: pre.tsz: the SAE has f=12 features but the input.s dictionary has f=40$" err &&
	"$PYTHON" "$GREF" make small --layers 2 --embd 16 --heads 2 --vocab 97 --inner 24 --positions 16 --seed 7 &&
	cp "$GPT2_DIR/vocab.json" "$GPT2_DIR/merges.txt" small/ &&
	test_must_fail topk-ctx -m small --sae post.tsz post.feat.tsz >o 2>err &&
	grep "^topk-ctx: small: the model.s vocabulary has 97 tokens but its tokenizer (vocab.json) has 50257$" err
'

test_done
