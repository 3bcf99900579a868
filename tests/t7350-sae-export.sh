#!/bin/sh
test_description='sae-export --neuronpedia: Neuronpedia feature JSON, validated against their schema; refusals'
. "$(dirname "$0")/test-lib.sh"

MK="$TEST_DIRECTORY/helpers/topk_ref.py"
GREF="$TEST_DIRECTORY/helpers/gpt2_ref.py"
VAL="$TEST_DIRECTORY/helpers/json_schema.py"
SCH="$TEST_DIRECTORY/data/neuronpedia"

# valid DIR [--builtin]: every batch file of DIR against the schemas
valid () {
	"$PYTHON" "$VAL" $2 "$SCH/feature-batch.schema.json" $1/features/batch-*.json >v.out &&
	"$PYTHON" "$VAL" $2 "$SCH/explanations.schema.json" $1/explanations/batch-*.json >>v.out
}

test_expect_success GPT2_VOCAB,NUMPY 'setup: tiny GPT-2, an SAE with hook and model, topk-ctx --sae, baseline explanations' '
	"$PYTHON" "$GREF" make m --layers 2 --embd 16 --heads 2 --vocab 50257 --inner 24 --positions 16 --seed 7 &&
	cp "$GPT2_DIR/vocab.json" "$GPT2_DIR/merges.txt" m/ &&
	mkdir s && "$PYTHON" "$MK" mk s --arch relu --d 24 --f 40 --b 6 --t 9 --docs --seed 4 &&
	tsz from-npy --rows 1000000 --meta kind=sae --meta arch=relu --meta d=24 --meta f=40 \
		--meta hook=\"blocks.1.mlp.hook_post\" --meta model=\"gpt2-small\" \
		W_enc=s/W_enc.npy b_enc=s/b_enc.npy W_dec=s/W_dec.npy b_dec=s/b_dec.npy >sae.tsz &&
	tsz from-npy --rows 3 --meta pos0=1 acts=s/acts.npy tokens=s/tokens.npy doc=s/doc.npy offset=s/offset.npy >ctx.tsz &&
	sae-encode --sae sae.tsz ctx.tsz >feat.tsz &&
	topk-ctx -k 3 -w 4 --random 2 --bands 2 --per-band 2 -m m --sae sae.tsz feat.tsz >tk.tsz &&
	explain-gpt4 --backend baseline tk.tsz >ex.tsz 2>/dev/null
'

test_expect_success GPT2_VOCAB,NUMPY 'batches of 16: files, manifest, and both schemas hold (jsonschema when installed, and the builtin)' '
	sae-export --neuronpedia np -m m --sae sae.tsz -e ex.tsz --batch 16 tk.tsz &&
	ls np/features np/explanations >ls && cat >want <<-\EOF &&
	np/explanations:
	batch-0.json
	batch-1.json
	batch-2.json

	np/features:
	batch-0.json
	batch-1.json
	batch-2.json
	EOF
	test_cmp want ls &&
	grep "^{\"model_id\":\"gpt2-small\",\"layer\":1,\"sae_set\":\"saepipe\",\"n_features\":40,\"n_explanations\":39," np/manifest.json &&
	valid np && cat v.out && grep -c ": ok$" v.out >n && test "$(cat n)" = 6 &&
	valid np --builtin && grep -c ": ok$" v.out >n && test "$(cat n)" = 6 && grep "^validator: builtin$" v.out
'

test_expect_success GPT2_VOCAB,NUMPY 'the content is the run: features, density, logits, examples, explanations and scores' '
	tsz json --full tk.tsz >tk.json && tsz json ex.tsz >ex.json &&
	"$PYTHON" - <<-\EOF
	import json
	tk = [json.loads(l) for l in open("tk.json") if "\"feature\"" in l.split(",")[0]]
	ex = {r["feature"]: r for r in map(json.loads, open("ex.json"))}
	feats = [f for i in range(3) for f in json.load(open("np/features/batch-%d.json" % i))["features"]]
	expl = [e for i in range(3) for e in json.load(open("np/explanations/batch-%d.json" % i))]
	assert [f["feature_index"] for f in feats] == [r["feature"] for r in tk] == list(range(40))
	seen_pad = 0
	for f, r in zip(feats, tk):
	    assert abs(f["frac_nonzero"] - r["density"]) < 1e-9
	    t = r["tensors"]
	    assert f["pos_values"] == [round(v, 3) for v in t["logit_top_vals"]["data"]], f["feature_index"]
	    assert f["neg_values"] == [round(v, 3) for v in t["logit_bot_vals"]["data"]]
	    assert f["pos_str"] == [r["token_strs"][str(i)] for i in t["logit_top_ids"]["data"]] or \
	        any("\\" in r["token_strs"][str(i)] for i in t["logit_top_ids"]["data"])
	    ntop, nband = len(t["top_tokens"]["data"]), len(t["band_tokens"]["data"])
	    assert len(f["activations"]) == ntop + nband
	    for a, row, acts in zip(f["activations"], t["top_tokens"]["data"], t["top_acts"]["data"]):
	        assert a["bin_min"] == -1 and a["bin_contains"] == -1 and a["bin_max"] == round(r["max_act"], 3)
	        assert len(a["tokens"]) == len(a["values"]) == sum(1 for x in row if x >= 0)
	        seen_pad += len(a["tokens"]) < len(row)
	        assert a["values"] == [round(v, 3) for v, x in zip(acts, row) if x >= 0]
	    for a in f["activations"][ntop:]:
	        assert a["bin_contains"] == 0.5 and a["bin_min"] <= a["bin_max"]
	    assert sum(f["freq_hist_data_bar_heights"]) == r["n_fired"]
	assert [int(e["index"]) for e in expl] == [k for k in range(40) if ex[k]["explanation"] is not None]
	for e in expl:
	    x = ex[int(e["index"])]
	    assert e["description"] == x["explanation"] and e["layer"] == "1-saepipe" and e["explanationModelName"] == "baseline"
	    assert ("scoreV1" in e) == (x["score"] is not None)
	    if x["score"] is not None: assert e["scoreV1"] == round(x["score"], 3)
	print("content ok")
	EOF
'

test_expect_success GPT2_VOCAB,NUMPY 'the schema check can fail: a missing key, an unknown key, a wrong type, a bad source id' '
	for edit in "del f[\"frac_nonzero\"]" "f[\"extra\"] = 1" "f[\"pos_values\"] = [\"x\"]" "f[\"activations\"][0][\"tokens\"] = 3"; do
		"$PYTHON" -c "
import json
b = json.load(open(\"np/features/batch-0.json\")); f = b[\"features\"][2]
$edit
json.dump(b, open(\"bad.json\", \"w\"))" &&
		test_must_fail "$PYTHON" "$VAL" --builtin "$SCH/feature-batch.schema.json" bad.json >out &&
		grep "^bad.json: 1 problems$" out &&
		test_must_fail "$PYTHON" "$VAL" "$SCH/feature-batch.schema.json" bad.json >out || return 1
	done &&
	sed "s/\"layer\":\"1-saepipe\"/\"layer\":\"saepipe\"/" np/explanations/batch-0.json >bad.json &&
	test_must_fail "$PYTHON" "$VAL" --builtin "$SCH/explanations.schema.json" bad.json >out && grep "does not match" out
'

test_expect_success GPT2_VOCAB,NUMPY 'token_strs without -m; defaults: one batch, layer and model from the SAE; --layer, --model-id, --sae-set' '
	sae-export --neuronpedia np2 tk.tsz 2>err; test $? = 1 && grep "^sae-export: no model id: give --model-id" err &&
	sae-export --neuronpedia np2 --model-id gpt2-small tk.tsz &&
	ls np2/features >ls && echo batch-0.json >want && test_cmp want ls && valid np2 &&
	grep "\"n_explanations\":0" np2/manifest.json && grep "\"layer\":1," np2/manifest.json &&
	sae-export --neuronpedia np3 --sae sae.tsz --layer 7 --model-id other --sae-set res-x -e ex.tsz tk.tsz && valid np3 &&
	grep -q "^{\"model_id\":\"other\",\"layer\":7,\"sae_set\":\"res-x\"" np3/features/batch-0.json &&
	grep -q "\"layer\":\"7-res-x\"" np3/explanations/batch-0.json
'

test_expect_success GPT2_VOCAB,NUMPY 'refusals: usage, an export there already, wrong inputs, no layer, no strings, hook mismatch' '
	test_must_fail sae-export tk.tsz 2>err && grep "^sae-export: --neuronpedia DIR is needed" err &&
	test_must_fail sae-export --neuronpedia x 2>err && grep "^sae-export: one topk-ctx output to export, got 0$" err &&
	test_must_fail sae-export --neuronpedia x --sae-set a/b tk.tsz 2>err && grep "^sae-export: --sae-set must be" err &&
	test_must_fail sae-export --neuronpedia np --sae sae.tsz tk.tsz 2>err &&
	grep "^sae-export: np: holds an export already (manifest.json); -f replaces it$" err &&
	sae-export -f --neuronpedia np --sae sae.tsz tk.tsz && valid np &&
	test_must_fail sae-export --neuronpedia x --sae sae.tsz feat.tsz 2>err &&
	grep "^sae-export: feat.tsz: header has no .topk. options (is this topk-ctx output?)$" err &&
	test_must_fail sae-export --neuronpedia x --sae sae.tsz -e tk.tsz tk.tsz 2>err &&
	grep "^sae-export: tk.tsz: record 1: kind .feature. is not .explanation. (explain-gpt4 output)$" err && ! test -e x/manifest.json &&
	topk-ctx -k 2 -w 4 feat.tsz >plain.tsz &&
	test_must_fail sae-export --neuronpedia y --model-id g plain.tsz 2>err &&
	grep "^sae-export: no layer: give --layer, or --sae with a \"hook\" like blocks.L.mlp.hook_post (plain.tsz has none)$" err &&
	test_must_fail sae-export --neuronpedia y --model-id g --layer 1 plain.tsz 2>err &&
	grep "^sae-export: plain.tsz: record 1: feature 0: no token_strs (run topk-ctx with --model, or give sae-export --model)$" err &&
	! test -e y/manifest.json &&
	sae-export --neuronpedia y2 --model-id g --layer 1 -m m plain.tsz && valid y2 &&
	tsz from-npy --rows 1000000 --meta kind=sae --meta arch=relu --meta d=24 --meta f=40 --meta hook=\"blocks.0.mlp.hook_post\" \
		W_enc=s/W_enc.npy b_enc=s/b_enc.npy W_dec=s/W_dec.npy b_dec=s/b_dec.npy >sae0.tsz &&
	test_must_fail sae-export --neuronpedia z --sae sae0.tsz --model-id g tk.tsz 2>err &&
	grep "^sae-export: tk.tsz: logit effects of hook blocks.1.mlp.hook_post, but sae0.tsz reads blocks.0.mlp.hook_post$" err &&
	echo >afile && test_must_fail sae-export --neuronpedia afile --sae sae.tsz tk.tsz 2>err && grep "^sae-export: afile: " err &&
	test_must_fail sae-export --neuronpedia z --sae nowhere.tsz tk.tsz 2>err && grep "^sae-export: nowhere.tsz: " err
'

test_expect_success GPT2_VOCAB,NUMPY 'malformed logit effects: sae-export and sae-report refuse them with the same line; no manifest' '
	cat >cases <<-\EOF &&
	short|"logit_top_vals" has length 9 but "logit_top_ids" has length 10
	k|"logit_bot_ids" has length 9 but "logit_top_ids" has length 10: K differs between the promoted and the suppressed tokens
	dtype|"logit_top_ids" is (10) i64 but needs (K) i32
	negative|"logit_top_ids"[0] is -1, not a token id
	missing|no "logit_bot_vals": topk-ctx --sae writes all four logit tensors, or none
	EOF
	while IFS="|" read what msg; do
		spoil-logits $what tk.tsz >bad.tsz &&
		test_must_fail sae-export --neuronpedia bad --sae sae.tsz bad.tsz 2>err &&
		echo "sae-export: bad.tsz: record 1: feature 0: $msg" >expect &&
		test_cmp expect err && test_path_is_missing bad/manifest.json &&
		test_must_fail sae-report -F bad.tsz -o bad.html 2>err &&
		echo "sae-report: bad.tsz: record 1: feature 0: $msg" >expect &&
		test_cmp expect err && test_path_is_missing bad.html || return 1
	done <cases
'

test_expect_success GPT2_VOCAB,NUMPY 'a logit id past the vocabulary: refused with the tokenizer (-m), else as a token without a string' '
	spoil-logits vocab tk.tsz >big.tsz &&
	test_must_fail sae-export --neuronpedia big -m m --sae sae.tsz big.tsz 2>err &&
	echo "sae-export: big.tsz: record 1: feature 0: \"logit_bot_ids\"[9] is 50257, outside the vocabulary [0, 50257)" >expect &&
	test_cmp expect err &&
	test_must_fail sae-export --neuronpedia big --sae sae.tsz big.tsz 2>err &&
	echo "sae-export: big.tsz: record 1: feature 0: token 50257 has no token_strs entry (topk-ctx --model gives them)" >expect &&
	test_cmp expect err && test_path_is_missing big/manifest.json
'

test_expect_success '--help and --version' '
	sae-export --help >out && grep "^Usage: sae-export --neuronpedia DIR" out && grep "^  -e, --explanations FILE" out &&
	sae-export --version | grep "^sae-export "
'

test_done
