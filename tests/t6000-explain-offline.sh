#!/bin/sh
test_description='explain-gpt4 offline: flags, bad input, baseline backend, dry run, prompt files'
. "$(dirname "$0")/test-lib.sh"

# every run here must work with no key and no network
unset OPENAI_API_KEY
NOWHERE=http://127.0.0.1:9/v1

test_expect_success 'setup planted streams' '
	mk-topk --features 6 --pad --seed 3 >topk.tsz &&
	tsz info topk.tsz >info && grep "^records: 7" info
'

test_expect_success 'bad usage exits 2 with one line naming the flag' '
	code2 () { "$@"; test $? = 2; } &&
	code2 explain-gpt4 --backend gpt5 topk.tsz 2>err && grep "^explain-gpt4: --backend: expected one of openai, baseline, got .gpt5.$" err &&
	code2 explain-gpt4 --scorer vibes topk.tsz 2>err && grep "^explain-gpt4: --scorer: expected one of simulation, detection, fuzzing, none, got .vibes.$" err &&
	code2 explain-gpt4 --features 1-x topk.tsz 2>err && grep "^explain-gpt4: --features: expected numbers and ranges" err &&
	code2 explain-gpt4 --n-explain 0 topk.tsz 2>err && grep "^explain-gpt4: --n-explain: expected a whole number from 1" err &&
	code2 explain-gpt4 --price 3 topk.tsz 2>err && grep "^explain-gpt4: --price: expected IN,OUT" err &&
	code2 explain-gpt4 --timeout -1 topk.tsz 2>err && grep "^explain-gpt4: --timeout:" err &&
	code2 explain-gpt4 --dry-run=paper topk.tsz 2>err && grep "^explain-gpt4: --dry-run: expected one of stderr, stdout, got .paper.$" err &&
	code2 explain-gpt4 a.tsz b.tsz 2>err && grep "^explain-gpt4: one input at most" err &&
	code2 explain-gpt4 --frobnicate topk.tsz 2>err && grep "^explain-gpt4: unknown option .--frobnicate.$" err &&
	test_line_count = 2 err &&
	code2 explain-gpt4 topk.tsz --model 2>err && grep "^explain-gpt4: --model: needs a value$" err
'

test_expect_success 'bad input fails with one line naming file, record and feature' '
	test_must_fail explain-gpt4 --backend baseline --cache "" nope.tsz >o 2>err &&
	grep "^explain-gpt4: nope.tsz: " err && test_line_count = 1 err &&
	echo "not a stream" >junk.tsz &&
	test_must_fail explain-gpt4 --backend baseline --cache "" junk.tsz >o 2>err && grep "^explain-gpt4: junk.tsz: " err &&
	head -c 3000 topk.tsz >cut.tsz &&
	test_must_fail explain-gpt4 --backend baseline --cache "" cut.tsz >o 2>err &&
	grep "^explain-gpt4: cut.tsz: .*end marker\|^explain-gpt4: cut.tsz: .*truncated" err &&
	for b in strs dtype shape nan nofeature; do mk-topk --break $b >$b.tsz || return 1; done &&
	test_must_fail explain-gpt4 --backend baseline --cache "" strs.tsz >o 2>err &&
	grep "^explain-gpt4: strs.tsz: record 2 (feature 1): meta has no .token_strs. object (run topk-ctx with --model)$" err &&
	test_must_fail explain-gpt4 --backend baseline --cache "" dtype.tsz >o 2>err &&
	grep "^explain-gpt4: dtype.tsz: record 2 (feature 1): tensor .top_acts. is (20,16) i32, expected (rows,window) f32$" err &&
	test_must_fail explain-gpt4 --backend baseline --cache "" shape.tsz >o 2>err &&
	grep "^explain-gpt4: shape.tsz: record 2 (feature 1): tokens and activations differ in shape$" err &&
	test_must_fail explain-gpt4 --backend baseline --cache "" nan.tsz >o 2>err &&
	grep "^explain-gpt4: nan.tsz: record 2 (feature 1): activations are not finite$" err &&
	test_must_fail explain-gpt4 --backend baseline --cache "" nofeature.tsz >o 2>err &&
	grep "^explain-gpt4: nofeature.tsz: record 2: meta has no integer .feature.$" err
'

test_expect_success NUMPY 'a stream of another kind is refused' '
	"$PYTHON" -c "import numpy as np; np.save(\"x.npy\", np.zeros((4, 3), dtype=np.float32))" &&
	tsz from-npy x=x.npy >x.tsz &&
	test_must_fail explain-gpt4 --backend baseline --cache "" x.tsz >o 2>err &&
	grep "^explain-gpt4: x.tsz: record 1: kind .. (read as .hook_acts.: no tensor .acts.) is not .feature. or .dict_stats. (topk-ctx output)$" err &&
	tsz from-npy --meta kind=features x=x.npy >f.tsz &&
	test_must_fail explain-gpt4 --backend baseline --cache "" f.tsz >o 2>err &&
	grep "^explain-gpt4: f.tsz: record 1: kind .features. is not .feature. or .dict_stats. (topk-ctx output)$" err
'

test_expect_success 'a cache that cannot be made is refused by name' '
	test_must_fail explain-gpt4 --api-base $NOWHERE --cache topk.tsz topk.tsz >o 2>err &&
	grep "^explain-gpt4: topk.tsz: cannot create cache directory: Not a directory$" err &&
	test_must_fail explain-gpt4 --api-base $NOWHERE --cache topk.tsz/sub topk.tsz >o 2>err &&
	grep "^explain-gpt4: topk.tsz/sub: cannot create cache directory: Not a directory$" err
'

test_expect_success 'the OpenAI backend without a key says what to do' '
	test_must_fail explain-gpt4 topk.tsz >o 2>err &&
	grep "^explain-gpt4: OPENAI_API_KEY is not set (use --api-base for a local server, or --backend baseline" err
'

test_expect_success NUMPY 'baseline finds the planted token and scores above 0.8; scores match numpy' '
	explain-gpt4 --backend baseline --cache "" <topk.tsz >out.tsz 2>err &&
	grep "^explain-gpt4: 6 features: 6 ok, 0 failed; baseline backend, no API calls$" err &&
	tsz json --full topk.tsz >topk.json && tsz json --full out.tsz >out.json &&
	test_line_count = 6 out.json &&
	"$PYTHON" "$TEST_DIRECTORY/helpers/explain-check.py" topk.json out.json --planted 60 --min-score 0.8 >check &&
	grep "checked 6 features" check && cat check
'

test_expect_success NUMPY 'baseline with other splits and the detection and fuzzing scorers' '
	explain-gpt4 --backend baseline --cache "" --n-explain 5 --n-score 7 topk.tsz >out.tsz &&
	tsz json --full out.tsz >out.json &&
	"$PYTHON" "$TEST_DIRECTORY/helpers/explain-check.py" topk.json out.json --n-explain 5 --n-score 7 --planted 60 &&
	explain-gpt4 --backend baseline --cache "" --scorer detection topk.tsz >det.tsz &&
	tsz json det.tsz >det.json && test_line_count = 6 det.json &&
	grep -c "\"detection\":{\"balanced_accuracy\":1.0,\"tpr\":1.0,\"tnr\":1.0,\"precision\":1.0,\"recall\":1.0,\"f1\":1.0,\"auroc\":1.0," det.json >n && echo 6 >expect && test_cmp expect n &&
	explain-gpt4 --backend baseline --cache "" --scorer fuzzing topk.tsz >fz.tsz &&
	tsz json fz.tsz >fz.json && test_line_count = 6 fz.json &&
	grep -c "\"fuzzing\":{\"balanced_accuracy\":1.0,.*\"auroc\":1.0,\"tp\":[0-9]*,\"fp\":0,\"tn\":[0-9]*,\"fn\":0}" fz.json >n && test_cmp expect n &&
	sae-report -e fz.tsz -F topk.tsz -o fz.html &&
	grep "^<tr><td>fuzzing</td><td>AUROC</td><td>6</td><td>1.000</td><td>1.000</td></tr>$" fz.html &&
	grep -c "\"y\":{\"k\":\"fuzzing\",\"ba\":1.0,\"p\":1.0,\"r\":1.0,\"f1\":1.0,\"auc\":1.0}" fz.html >n && test_cmp expect n &&
	sae-report -e det.tsz -o det.html &&
	grep "^<tr><td>detection</td><td>F1</td><td>6</td><td>1.000</td><td>1.000</td></tr>$" det.html &&
	explain-gpt4 --backend baseline --cache "" --scorer none topk.tsz >none.tsz &&
	tsz json none.tsz >none.json && grep -c "\"score\":null" none.json >n && test_cmp expect n
'

test_expect_success '--features picks features; features with nothing to score fail with a reason' '
	explain-gpt4 --backend baseline --cache "" --features 1,3-4 topk.tsz >sel.tsz &&
	tsz json sel.tsz | sed "s/.*\"feature\":\([0-9]*\),.*/\1/" >got && printf "1\n3\n4\n" >expect && test_cmp expect got &&
	mk-topk --features 2 -K 10 -R 0 >few.tsz &&
	explain-gpt4 --backend baseline --cache "" few.tsz >few.out 2>err; test $? = 3 &&
	grep "^explain-gpt4: 2 of 2 features failed" err &&
	tsz json few.out >few.json && test_line_count = 2 few.json &&
	grep "\"status\":\"failed\",\"error\":\"no held-out examples to score" few.json
'

test_expect_success 'a feature that never fired is written dead, which is not a failure' '
	mk-topk --features 3 --dead 2 >dead.tsz &&
	explain-gpt4 --backend baseline --cache "" dead.tsz >dead.out 2>err &&
	grep "^explain-gpt4: 3 features: 2 ok, 0 failed, 1 dead; baseline backend, no API calls$" err &&
	tsz json dead.out >dead.json && test_line_count = 3 dead.json &&
	grep "\"feature\":1,\"explanation\":null,.*\"status\":\"dead\",\"error\":\"no top examples (the feature never fired)\"" dead.json
'

test_expect_success 'dry run prints prompts to stderr with an estimate and calls nothing' '
	explain-gpt4 --dry-run --api-base $NOWHERE --features 2 topk.tsz >out 2>err &&
	test ! -s out &&
	grep "^=== feature 2: explain request" err && grep "^=== feature 2: simulate request" err &&
	grep "^--- system" err && grep "Explanation of feature 3 behavior" err &&
	grep "^ w12	[1-9]" err && grep "^ w12	unknown" err && grep "^\\\\n	0\|^\\\\n	unknown" err &&
	grep "^explain-gpt4: dry run: 1 features, 2 requests, about [0-9]* prompt + [0-9]* completion tokens, estimated cost .[0-9.]* (gpt-4-turbo-2024-04-09 at .10/.30 per million)" err &&
	explain-gpt4 --dry-run=stdout --scorer detection --api-base $NOWHERE --features 2 topk.tsz >out 2>err &&
	grep "^=== feature 2: detect request" out && grep "^1: " out && ! grep "===" err
'

test_expect_success 'prompt files come from --prompt-dir, then SAEPIPE_PROMPT_DIR; bad ones are refused' '
	mkdir p && cp "$SRC_DIR"/share/prompts/*.txt p/ &&
	printf "=== user\nCUSTOM PROMPT {{EXAMPLES}}\n" >p/explain.txt &&
	SAEPIPE_PROMPT_DIR=$PWD/p explain-gpt4 --dry-run --api-base $NOWHERE --features 0 topk.tsz 2>err &&
	grep "^CUSTOM PROMPT <start>" err &&
	explain-gpt4 --dry-run --prompt-dir "$SRC_DIR/share/prompts" --api-base $NOWHERE --features 0 topk.tsz 2>err &&
	! grep CUSTOM err &&
	printf "hello\n=== user\nx\n" >p/explain.txt &&
	test_must_fail explain-gpt4 --dry-run --prompt-dir p --api-base $NOWHERE topk.tsz 2>err &&
	grep "^explain-gpt4: p/explain.txt: line 1: text before the first .=== ROLE. line$" err &&
	printf "=== robot\nx\n" >p/explain.txt &&
	test_must_fail explain-gpt4 --dry-run --prompt-dir p --api-base $NOWHERE topk.tsz 2>err &&
	grep "^explain-gpt4: p/explain.txt: line 1: unknown role .robot." err &&
	test_must_fail explain-gpt4 --dry-run --prompt-dir nowhere --api-base $NOWHERE topk.tsz 2>err &&
	grep "^explain-gpt4: nowhere/explain.txt: cannot read prompt file: No such file or directory$" err
'

# The layout make install makes (PREFIX/bin, PREFIX/share/saepipe/prompts),
# copied by hand: running make here would relink binaries that tests
# running in parallel are using.
test_expect_success 'an installed program finds its installed prompts' '
	mkdir -p inst/bin inst/share/saepipe &&
	cp "$SRC_DIR/bin/explain-gpt4" inst/bin/ && cp -r "$SRC_DIR/share/prompts" inst/share/saepipe/ &&
	sed "s/Feature explanation:/INSTALLED explanation:/" inst/share/saepipe/prompts/simulate.txt >s &&
	mv s inst/share/saepipe/prompts/simulate.txt &&
	inst/bin/explain-gpt4 --dry-run --api-base $NOWHERE --features 0 topk.tsz 2>err &&
	grep "^=== feature 0: explain request" err && grep "^INSTALLED explanation: <the explanation>" err
'

test_done
