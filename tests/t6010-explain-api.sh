#!/bin/sh
test_description='explain-gpt4 against a loopback chat-completions server: faults, retries, cache, resume, key hygiene'
. "$(dirname "$0")/test-lib.sh"

unset OPENAI_API_KEY
test_have_prereq NUMPY || test_skip_all 'needs $PYTHON with numpy (fake server and independent Pearson)'
KEY=sk-test-6f1d2c9e8b7a4c3dSECRET
CHECK="$TEST_DIRECTORY/helpers/explain-check.py"

# start_server ARGS...: fake-openai.py in the background; sets $API.
# Waits at most 10 s for the port. The first server takes a free port and
# later ones the same (saved in server.port): the cache key includes the
# endpoint, port and all, so reruns must talk to the same URL. Each start stops the server before it
# (its pid is in server.pid) and the last test stops the last one: test
# bodies run in a subshell, so test_when_finished set inside one would
# not reach test-lib.
start_server () {
	stop_server
	rm -f port log
	"$PYTHON" "$TEST_DIRECTORY/helpers/fake-openai.py" --port-file port --log log \
		--port "$(cat server.port 2>/dev/null || echo 0)" "$@" \
		</dev/null >/dev/null 2>server.err 3>&- 4>&- &
	echo $! >server.pid &&
	i=0 &&
	while ! test -s port; do
		i=$((i + 1)) && test $i -le 100 || { echo "server did not start"; cat server.err; return 1; }
		sleep 0.1
	done &&
	cp port server.port &&
	API=http://127.0.0.1:$(cat port)/v1
}
stop_server () {
	if test -f server.pid; then kill "$(cat server.pid)" 2>/dev/null; rm -f server.pid; fi
	return 0
}
calls () { if test -f log; then wc -l <log | tr -d " "; else echo 0; fi; }
# explain ARGS...: explain-gpt4 against $API with test-sized retry waits
explain () { explain-gpt4 --api-base "$API" --backoff 0.05 --max-backoff 2 "$@"; }

test_expect_success 'setup planted stream' '
	mk-topk --features 6 --pad --seed 5 >topk.tsz &&
	tsz json --full topk.tsz >topk.json
'

test_expect_success 'happy path: explanations name the planted token, scores equal numpy, logprobs used' '
	start_server &&
	explain --cache c0 -j 3 topk.tsz >out.tsz 2>err &&
	grep "^explain-gpt4: 6 features: 6 ok, 0 failed; 12 API calls (0 retries), 0 cached replies; [0-9]* prompt + [0-9]* completion tokens; estimated cost" err &&
	test $(calls) = 12 && grep -c "\"kind\": \"simulate\".*\"logprobs\": true" log >n && echo 6 >six && test_cmp six n &&
	tsz json --full out.tsz >out.json &&
	"$PYTHON" "$CHECK" topk.json out.json --planted 60 --min-score 0.8 --pred-values 9.35,0.1 >check && cat check &&
	tsz json out.tsz >meta.json && test $(grep -c "\"logprob_frac\":1.0[,}]" meta.json) = 6 &&
	grep -q "\"usage\":{\"prompt_tokens\":[1-9][0-9]*,\"completion_tokens\":[1-9]" out.json
'

test_expect_success 'without logprobs the integers replied are the simulation' '
	start_server --no-logprobs &&
	explain --cache "" --no-logprobs topk.tsz >out.tsz &&
	! grep "\"logprobs\": true" log &&
	tsz json out.tsz >meta.json && test $(grep -c "\"logprob_frac\":0.0[,}]" meta.json) = 6 &&
	tsz json --full out.tsz >out.json &&
	"$PYTHON" "$CHECK" topk.json out.json --planted 60 --pred-values 10,0
'

test_expect_success 'completions-style logprobs in a chat reply are used too' '
	start_server --legacy-logprobs &&
	explain --cache "" --features 0-1 topk.tsz >out.tsz &&
	tsz json --full out.tsz >out.json &&
	"$PYTHON" "$CHECK" topk.json out.json --planted 60 --pred-values 9.35,0.1
'

test_expect_success 'completions endpoint: one prompt text, logprobs as a number, expected values scored' '
	start_server &&
	explain --cache c7 --endpoint completions topk.tsz >out.tsz 2>err &&
	grep "6 features: 6 ok, 0 failed; 12 API calls (0 retries)" err &&
	test $(grep -c "\"path\": \"/v1/completions\"" log) = 12 &&
	grep -c "\"kind\": \"simulate\".*\"logprobs\": true" log >n && echo 6 >six && test_cmp six n &&
	tsz json --full out.tsz >out.json &&
	"$PYTHON" "$CHECK" topk.json out.json --planted 60 --min-score 0.8 --pred-values 9.35,0.1 &&
	tsz json out.tsz >meta.json && test $(grep -c "\"logprob_frac\":1.0[,}]" meta.json) = 6 &&
	explain --cache c7 --endpoint completions --dry-run=stdout --features 0 topk.tsz >dry 2>err &&
	grep "^--- prompt$" dry && grep "^User:$" dry && test "$(tail -n 2 dry | head -n 1)" = "Assistant:" &&
	explain --cache "" --endpoint completions --no-logprobs --features 0-1 topk.tsz >o2.tsz &&
	tsz json --full o2.tsz >o2.json &&
	"$PYTHON" "$CHECK" topk.json o2.json --planted 60 --pred-values 10,0
'

test_expect_success 'completions endpoint: every fault survived; an unknown --endpoint is a usage error' '
	start_server --faults 429,short,nonjson,badformat,500 &&
	explain --cache "" --endpoint completions -j 3 topk.tsz >out.tsz 2>err &&
	grep "6 features: 6 ok, 0 failed" err &&
	for f in 429 short nonjson badformat 500; do grep -q "\"fault\": \"$f\"" log || return 1; done &&
	tsz json --full out.tsz >out.json &&
	"$PYTHON" "$CHECK" topk.json out.json --planted 60 --pred-values 9.35,0.1 &&
	explain --endpoint bogus topk.tsz >o.tsz 2>e3; test $? = 2 &&
	grep "^explain-gpt4: --endpoint: expected one of chat, completions, got .bogus.$" e3
'

test_expect_success 'messy replies (prose, fences, reordered blocks, a missing line) are aligned' '
	start_server --messy &&
	explain --cache "" topk.tsz >out.tsz 2>err &&
	grep "6 ok, 0 failed" err &&
	tsz json --full out.tsz >out.json &&
	"$PYTHON" "$CHECK" topk.json out.json --planted 60 --pred-values 9.35,0.1,0 &&
	tsz json out.tsz >meta.json && grep -c "\"aligned\":0.9[0-9]*," meta.json >n && test_cmp six n
'

test_expect_success 'every fault is survived; a feature that keeps failing is written failed with its reason' '
	start_server --faults 429,500,slow,nonjson,short,badformat,badformat --fail-token w13 --slow 3 &&
	explain --cache c1 -j 4 --timeout 1 --max-attempts 4 topk.tsz >out.tsz 2>err; test $? = 3 &&
	grep "^explain-gpt4: 6 features: 5 ok, 1 failed;" err &&
	grep "^explain-gpt4: 1 of 6 features failed (their records say why; rerun to retry them)$" err &&
	for f in 429 500 slow nonjson short badformat; do grep -q "\"fault\": \"$f\"" log || { echo "fault $f not injected"; return 1; }; done &&
	tsz json out.tsz >meta.json && test_line_count = 6 meta.json &&
	sed "s/.*\"feature\":\([0-9]*\),.*/\1/" meta.json >got && printf "0\n1\n2\n3\n4\n5\n" >expect && test_cmp expect got &&
	grep "\"feature\":3,.*\"status\":\"failed\",\"error\":\"explain request failed: HTTP 500 (after 4 attempts): API error: The server had an error\",\"attempts\":4" meta.json &&
	test $(grep -c "\"status\":\"ok\",\"error\":null" meta.json) = 5 &&
	tsz json --full out.tsz >out.json && "$PYTHON" "$CHECK" topk.json out.json --planted 60 --pred-values 9.35,0.1 &&
	"$PYTHON" - <<-\PY
	import json
	log = [json.loads(l) for l in open("log")]
	first = [e for e in log if e["fault"] == "429"][0]
	again = [e for e in log if e["body_sha"] == first["body_sha"] and e["n"] > first["n"]]
	assert again, "the 429 request was never retried"
	gap = again[0]["t"] - first["t"]
	assert gap >= 0.95, "Retry-After: 1 not honoured (retried after %.3f s)" % gap
	print("retry after 429 came %.2f s later" % gap)
	PY
'

test_expect_success 'rerun: finished work makes no call; the failed feature is retried' '
	cp -r c1 c2 &&
	start_server &&
	explain --cache c2 topk.tsz >out2.tsz 2>err &&
	grep "6 features: 6 ok, 0 failed; 2 API calls (0 retries), 10 cached replies" err &&
	test $(calls) = 2 && test $(grep -c "\"kind\": \"explain\"" log) = 1 &&
	: >log && explain --cache c2 topk.tsz >out3.tsz 2>err &&
	grep "6 features: 6 ok, 0 failed; 0 API calls (0 retries), 12 cached replies" err &&
	test $(calls) = 0 &&
	tsz json out2.tsz | sed "s/\"cached\":[0-9]*,//; s/\"attempts\":[0-9]*,//" >a &&
	tsz json out3.tsz | sed "s/\"cached\":[0-9]*,//; s/\"attempts\":[0-9]*,//" >b && test_cmp a b
'

test_expect_success 'kill -9 mid-run: cache entries are whole, the resumed run repeats nothing' '
	start_server --delay 0.15 &&
	{ explain-gpt4 --api-base "$API" --cache c3 -j 1 topk.tsz >killed.tsz 2>/dev/null & echo $! >run.pid; } &&
	i=0 && while test $(find c3 -name "????????????????????????????????????????????????????????????????" 2>/dev/null | wc -l) -lt 5; do
		i=$((i + 1)) && test $i -le 200 || { echo "no cache entries appeared"; return 1; }
		sleep 0.05
	done &&
	kill -9 $(cat run.pid) && wait $(cat run.pid) 2>/dev/null; 
	n=$(find c3 -name "????????????????????????????????????????????????????????????????" | wc -l) &&
	echo "$n cache entries after kill -9" && test $n -ge 5 && test $n -lt 12 &&
	for e in $(find c3 -name "????????????????????????????????????????????????????????????????"); do
		"$PYTHON" -c "import json,sys; json.load(open(sys.argv[1]))" $e || return 1
	done &&
	: >log && explain --cache c3 topk.tsz >resumed.tsz 2>err &&
	test $(calls) = $((12 - n)) && grep "6 ok, 0 failed; $((12 - n)) API calls (0 retries), $n cached replies" err
'

test_expect_success 'a spoilt cache entry is asked again and replaced; stray temp files are ignored' '
	start_server &&
	explain --cache c6 --features 0 topk.tsz >a.tsz 2>err && grep "1 ok, 0 failed; 2 API calls" err &&
	e=$(find c6 -name "????????????????????????????????????????????????????????????????" | head -n 1) &&
	printf "{\"choices\": [" >"$e" && echo junk >"$e.tmp.99999" &&
	: >log && explain --cache c6 --features 0 topk.tsz >b.tsz 2>err &&
	grep "1 ok, 0 failed; 1 API calls (0 retries), 1 cached replies" err &&
	"$PYTHON" -c "import json,sys; json.load(open(sys.argv[1]))" "$e" &&
	: >log && explain --cache c6 --features 0 topk.tsz >c.tsz 2>err &&
	grep "0 API calls (0 retries), 2 cached replies" err &&
	tsz json a.tsz | sed "s/\"attempts\":[0-9]*,\"cached\":[0-9]*,//" >ja &&
	tsz json c.tsz | sed "s/\"attempts\":[0-9]*,\"cached\":[0-9]*,//" >jc && test_cmp ja jc
'

test_expect_success 'the API key is sent but never written anywhere' '
	start_server --key $KEY --faults 500 &&
	OPENAI_API_KEY=$KEY explain --cache c4 --features 0-2 topk.tsz >out.tsz 2>err &&
	grep "3 ok, 0 failed" err &&
	tsz json --full out.tsz >out.json && tsz info out.tsz >info &&
	! grep -r -F "$KEY" out.tsz out.json info err c4 &&
	! grep -r -F "SECRET" out.json info err c4 &&
	WRONG=sk-wrong-0123456789abcdefWRONGKEY &&
	OPENAI_API_KEY=$WRONG explain --cache c5 --features 0-2 topk.tsz >bad.tsz 2>err; test $? = 3 &&
	tsz json bad.tsz >bad.json &&
	grep "\"error\":\"explain request failed: HTTP 401: API error: Incorrect API key provided: \[redacted\]\.\"" bad.json &&
	! grep -r -F "$WRONG" bad.tsz bad.json err c5
'

test_expect_success 'unusable servers end every feature failed with a reason, never a hang' '
	start_server &&
	explain-gpt4 --api-base "http://127.0.0.1:$(cat port)/nope" --cache "" --features 0-1 topk.tsz >o.tsz 2>err; test $? = 3 &&
	tsz json o.tsz >o.json && test_line_count = 2 o.json &&
	grep "\"error\":\"explain request failed: HTTP 404: API error: no such path /nope/chat/completions\"" o.json &&
	stop_server && sleep 0.2 &&
	explain --cache "" --max-attempts 3 --features 0-1 topk.tsz >o.tsz 2>err; test $? = 3 &&
	tsz json o.tsz >o.json && test_line_count = 2 o.json &&
	grep "\"error\":\"explain request failed: .*(after 3 attempts)\"" o.json
'

test_expect_success 'replies in the wrong format every time fail the feature with the reason' '
	start_server --always badformat &&
	explain --cache "" --max-attempts 2 --features 0 --scorer none topk.tsz >o.tsz 2>err; test $? = 3 &&
	tsz json o.tsz >o.json &&
	grep "\"error\":\"explain: empty explanation (2 replies)\"" o.json
'

test_expect_success 'detection scorer: balanced accuracy from the detector reply' '
	start_server &&
	explain --cache "" --scorer detection topk.tsz >det.tsz 2>err &&
	grep "6 ok, 0 failed" err &&
	tsz json det.tsz >det.json &&
	test $(grep -c "\"detection\":{\"balanced_accuracy\":1.0,\"tpr\":1.0,\"tnr\":1.0,\"precision\":1.0,\"recall\":1.0,\"f1\":1.0,\"auroc\":1.0," det.json) = 6
'

test_expect_success 'fuzzing scorer: highlighted tokens judged, delphi metrics, faults survived, a rerun from the cache' '
	start_server --faults 429,500,badformat,nonjson &&
	explain --cache c8 --scorer fuzzing -j 3 topk.tsz >fz.tsz 2>err &&
	grep "6 features: 6 ok, 0 failed" err &&
	test $(grep -c "\"kind\": \"fuzz\"" log) -ge 6 &&
	for f in 429 500 badformat nonjson; do grep -q "\"fault\": \"$f\"" log || return 1; done &&
	tsz json fz.tsz >fz.json &&
	test $(grep -c "\"fuzzing\":{\"balanced_accuracy\":1.0,\"tpr\":1.0,\"tnr\":1.0,\"precision\":1.0,\"recall\":1.0,\"f1\":1.0,\"auroc\":1.0,\"tp\":[1-9][0-9]*,\"fp\":0,\"tn\":[1-9][0-9]*,\"fn\":0}" fz.json) = 6 &&
	test $(grep -c "\"scorer\":\"fuzzing\",\"density\":0\.[0-9]*," fz.json) = 6 &&
	: >log && explain --cache c8 --scorer fuzzing topk.tsz >fz2.tsz 2>err &&
	grep "6 features: 6 ok, 0 failed; 0 API calls (0 retries), 12 cached replies" err && test $(calls) = 0 &&
	explain --cache "" --scorer fuzzing --dry-run=stdout --features 0 topk.tsz >dry 2>err &&
	grep "^=== feature 0: fuzz request$" dry && grep "^[0-9]*: .*<<.*>>" dry
'

test_expect_success 'no server is left running' '
	stop_server && ! test -f server.pid
'

test_done
