#!/bin/sh
test_description='sae-report --pages: the report as a directory whose features load by page; 100,000 features in headless chromium from file:// and a loopback server'
. "$(dirname "$0")/test-lib.sh"

. "$TEST_DIRECTORY/helpers/report-test-lib.sh"
# features in the scale test (the issue asks for 100,000 or more)
NBIG=${SAEPIPE_REPORT_FEATURES:-100000}

# one field of the JSON line of a report-load.js step
field () { "$PYTHON" -c 'import json, sys; print(json.loads(open(sys.argv[1]).readlines()[int(sys.argv[2])])[sys.argv[3]])' "$@"; }

test_expect_success 'a directory: index.html, the index and side files of --chunk features' '
	mk-report-input . &&
	sae-report -s sae32.tsz -r recon32.tsz -e expl.tsz -F feat.tsz -t "run <1> & co" --chunk 2 -D rep 2>err &&
	test ! -s err &&
	(cd rep && find . -type f | sort) >files &&
	printf "%s\n" ./features/0000.js ./features/0001.js ./features/0002.js ./features/index.js ./index.html >expect &&
	test_cmp expect files &&
	! ls -d rep.tmp.* rep.old.* 2>/dev/null
'

test_expect_success 'index.html: the sections, no features, three script elements' '
	grep "<td class=\"l\">sae32.tsz</td>" rep/index.html &&
	grep "5 features in the browser, 2 explained, 1 explanations failed" rep/index.html &&
	grep -o "<script[^>]*>" rep/index.html >scripts && test_line_count = 3 scripts &&
	grep "{\"pages\":\"features/\",\"n\":5}" rep/index.html &&
	! grep "top_tokens\|\"top\"" rep/index.html &&
	! grep -l "</script\|<img" rep/features/*.js
'

test_expect_success NUMPY 'side files hold exactly the one-page report'"'"'s features; the index their summary' '
	sae-report -s sae32.tsz -r recon32.tsz -e expl.tsz -F feat.tsz -o one.html &&
	blob one.html >one.json &&
	report_pages.py rep >rep.json &&
	"$PYTHON" - one.json rep.json <<-\EOF
	import json, struct, sys
	one, rep = (json.load(open(p)) for p in sys.argv[1:])
	f32 = lambda v: None if v is None else struct.unpack("<f", struct.pack("<f", v))[0]
	assert rep["features"] == one["features"], "side files differ from the page"
	assert rep["index"]["vocab"] == one["vocab"]
	I, F = rep["index"], rep["features"]
	assert I["n"] == 5 and I["chunk"] == 2 and I["nchunks"] == 3 and rep["chunks"] == 3
	assert I["id"] == [f["i"] for f in F] == [3, 7, 12, 14, 15]
	for k in ("d", "mx", "s"):
	    assert I[k] == [f32(f.get(k)) for f in F], (k, I[k])
	assert I["x"] == "of--o", I["x"]
	assert I["e"] == [f.get("e") for f in F]
	# top token: the most active token of the first top example (id 3 + 0 at position 8)
	assert I["tt"] == [3, 7 % 10, 12 % 10, 14 % 10, -1], I["tt"]
	EOF
'

test_expect_success NUMPY 'per feature: activation histogram, logit effects, scorer' '
	"$PYTHON" - rep.json <<-\EOF
	import json, math, sys
	f = {x["i"]: x for x in json.load(open(sys.argv[1]))["features"]}
	# mk-report-input: 10 (id + 1) >> k in bin 24 + k; topk-ctx edges 2^((b - 25) / 2)
	for i in (3, 7, 12, 14):
	    n, c = 10 * (i + 1), f[i]["h"]["c"]
	    assert c == [n >> k for k in range(len(c))] and (n >> len(c)) == 0, (i, c)
	    e = f[i]["h"]["e"]
	    assert len(e) == len(c) + 1
	    for k, v in enumerate(e):
	        assert abs(v - 2 ** ((24 + k - 25) / 2)) < 1e-3 * v, (i, k, v)
	    assert f[i]["nt"] == 10000
	assert f[3]["lg"] == [["promoted", [[3, 1.5], [1, 0.75]]], ["suppressed", [[4, -0.5], [0, 0]]]], f[3]["lg"]
	assert all("lg" not in f[i] for i in (7, 12, 14, 15))
	assert f[3]["sc"] == "simulation" and f[3]["be"] == "baseline" and f[3]["s"] == 0.62
	assert f[7]["x"] == "failed" and "s" not in f[7] and "h" in f[7]
	assert "h" not in f[15] and f[15]["e"].startswith("line")
	EOF
'

test_expect_success 'same inputs, same bytes; a rerun replaces the earlier report whole' '
	sae-report -e expl.tsz -F feat.tsz -D a &&
	sae-report -e expl.tsz -F feat.tsz -D b &&
	diff -r a b &&
	sae-report -e expl.tsz -F feat.tsz --chunk 1 -D a &&
	test -e a/features/0004.js &&
	sae-report -e expl.tsz -F feat.tsz -D a &&
	test ! -e a/features/0001.js && diff -r a b &&
	mkdir empty && sae-report -F feat.tsz -D empty && test -e empty/index.html
'

test_expect_success 'a directory that is not a report is not replaced; bad input leaves nothing' '
	mkdir mine && echo keep >mine/notes.txt &&
	test_must_fail sae-report -F feat.tsz -D mine 2>err &&
	grep "^sae-report: mine: exists and is not a sae-report directory (index.html, features/index.js): not replaced$" err &&
	test "$(cat mine/notes.txt)" = keep &&
	test_must_fail sae-report -F bad-hist.tsz -D out 2>err &&
	grep "^sae-report: bad-hist.tsz: record 1: \"act_hist\" needs \"act_hist_edges\", float, one value longer (49)$" err &&
	spoil-logits missing feat.tsz >bad-logits.tsz &&
	test_must_fail sae-report -F bad-logits.tsz -D out 2>err &&
	echo "sae-report: bad-logits.tsz: record 1: feature 3: no \"logit_bot_vals\": topk-ctx --sae writes all four logit tensors, or none" >expect &&
	test_cmp expect err &&
	test_must_fail sae-report -F bad-logits.tsz -o out.html 2>err && test_cmp expect err &&
	test_path_is_missing out && test_path_is_missing out.html &&
	! ls -d out.* mine.* 2>/dev/null
'

test_expect_success 'malformed logit effects: each problem refused on one line naming the record, the feature and the tensor' '
	cat >cases <<-\EOF &&
	short|"logit_top_vals" has length 1 but "logit_top_ids" has length 2
	k|"logit_bot_ids" has length 1 but "logit_top_ids" has length 2: K differs between the promoted and the suppressed tokens
	dtype|"logit_top_ids" is (2) i64 but needs (K) i32
	negative|"logit_top_ids"[0] is -1, not a token id
	EOF
	while IFS="|" read what msg; do
		spoil-logits $what feat.tsz >bad.tsz &&
		test_must_fail sae-report -F bad.tsz -D out 2>err &&
		echo "sae-report: bad.tsz: record 1: feature 3: $msg" >expect &&
		test_cmp expect err && test_path_is_missing out || return 1
	done <cases &&
	spoil-logits vocab feat.tsz >big.tsz && sae-report -F big.tsz -D big &&
	grep -q "\"suppressed\",\[\[4,-0.5\],\[50257,0.0\]\]" big/features/0000.js
'

test_expect_success 'bad usage: --output with --pages, --chunk 0' '
	test_must_fail sae-report -F feat.tsz -o x.html -D x 2>err &&
	grep "^sae-report: --output and --pages exclude each other" err &&
	test_must_fail sae-report -F feat.tsz --chunk 0 -D x 2>err &&
	grep "^sae-report: .*--chunk" err &&
	test_path_is_missing x
'

test_expect_success CHROMIUM 'headless chromium: the list from the index, the first feature from its side file' '
	chrome "file://$PWD/rep/index.html" dom.html &&
	test "$(page_state dom.html)" = ok && ! console_errors dom.html &&
	grep -o "<details class=\"feat\" id=\"feature-[0-9]*\"" dom.html | sed "s/.*feature-//; s/\"//" >ids &&
	printf "%s\n" 3 7 12 14 15 >expect && test_cmp expect ids &&
	grep "id=\"status\" data-state=\"ok\" data-chunks=\"0\">ok: 5 features<" dom.html &&
	grep "<p class=\"escore\">scorer simulation (baseline): score 0.620 (top 0.720, random 0.520)</p>" dom.html &&
	grep -o "<svg class=\"hist\".*</svg>" dom.html | grep -o "<rect class=\"bar\"" >bars && test_line_count = 6 bars &&
	grep "<caption>promoted</caption><tr><td class=\"l\">&lt;img src=x onerror=alert(1)&gt;</td><td>1.50</td></tr>" dom.html &&
	grep "<caption>suppressed</caption><tr><td class=\"l\">&amp;amp;</td><td>-0.500</td></tr>" dom.html &&
	! grep -i "<img" dom.html
'

test_expect_success CHROMIUM 'headless chromium: #feature-N loads the side file that holds it; a missing one is an error' '
	chrome "file://$PWD/rep/index.html#feature-12" f12.html &&
	grep "<details class=\"feat\" id=\"feature-12\" open=\"\">" f12.html &&
	grep "data-chunks=\"1\"" f12.html && test "$(page_state f12.html)" = ok &&
	cp -R rep broken && rm broken/features/0001.js &&
	chrome "file://$PWD/broken/index.html#feature-12" b12.html &&
	test "$(page_state b12.html)" = error &&
	grep "error: cannot load features/0001.js" b12.html
'

test_expect_success 'many features: synthetic topk-ctx and explain-gpt4 streams' '
	mk-report-input --many $NBIG 24 big.tsz big-expl.tsz &&
	sae-report -s sae128.tsz -e big-expl.tsz -F big.tsz -t big -D big 2>err && test ! -s err &&
	echo "$NBIG features: $(du -sk big | cut -f1) kB in $(ls big/features | wc -l) files," \
		"index.html $(wc -c <big/index.html) B, index.js $(wc -c <big/features/index.js) B," \
		"side file 0000.js $(wc -c <big/features/0000.js) B" >sizes.txt
'
test -s sizes.txt && sed "s/^/# sizes: /" sizes.txt

test_expect_success 'many features: the page is small, the index compact, side files of 1000' '
	test $(wc -c <big/index.html) -lt 2000000 &&
	test $(wc -c <big/features/index.js) -lt $((NBIG * 160 + 2000000)) &&
	ls big/features/[0-9]*.js >chunks && test_line_count = $(((NBIG + 999) / 1000)) chunks &&
	for c in $(cat chunks); do test $(wc -c <$c) -lt 8000000 || return 1; done
'

# the page, the page that starts at feature LATE (side file 40 of 100), a
# search for a feature of the last side file; then from a loopback server
LATE=$((NBIG * 4 / 10)) FOUND=$((NBIG - 3))
check_load () {
	test "$(field $1 0 state)" = ok &&
	test "$(field $1 0 status)" = "ok: $NBIG features" &&
	test "$(field $1 0 cards)" = 50 && test "$(field $1 0 examples)" = 23 &&
	test "$(field $1 0 hist)" -gt 0 &&
	test "$(field $1 0 chunks)" = 0 &&
	test "$(field $1 1 opened)" = feature-$LATE &&
	test "$(field $1 1 chunks)" = "0 $((LATE / 1000))" &&
	test "$(field $1 1 examples)" = 23 &&
	test "$(field $1 2 opened)" = feature-$FOUND &&
	test "$(field $1 2 count)" = "1 of $NBIG features · page 1/1" &&
	test "$(field $1 2 chunks)" = "0 $((LATE / 1000)) $((FOUND / 1000))"
}
diag () { sed "s/^/# $1: /" "$2"; }
# start_server DIR: python3 -m http.server on a free loopback port (in
# http.port, its pid in http.pid, its log in http.log), once it answers
start_server () {
	"$PYTHON" -c "import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])" >http.port &&
	"$PYTHON" -m http.server --bind 127.0.0.1 --directory "$1" $(cat http.port) \
		</dev/null >http.log 2>&1 3>&- 4>&- &
	echo $! >http.pid &&
	for i in $(seq 100); do
		curl -sf -o /dev/null "http://127.0.0.1:$(cat http.port)/index.html" && return 0
		sleep 0.1
	done
	return 1
}

test_expect_success CHROMIUM,NODE,NUMPY 'many features from file://: first page, paging and search load side files' '
	node "$TEST_DIRECTORY/helpers/report-load.js" "$CHROMIUM" "$PWD/prof-file" "file://$PWD/big/index.html" \
		"#page=$((LATE / 50 + 1))" "#q=(marker $FOUND)" >load-file.json &&
	check_load load-file.json
'
test -s load-file.json && diag file load-file.json

test_expect_success CHROMIUM,NODE,NUMPY 'many features from a loopback web server: the same' '
	start_server big &&
	test_when_finished "kill \$(cat http.pid)" &&
	port=$(cat http.port) &&
	node "$TEST_DIRECTORY/helpers/report-load.js" "$CHROMIUM" "$PWD/prof-http" "http://127.0.0.1:$port/index.html" \
		"#page=$((LATE / 50 + 1))" "#q=(marker $FOUND)" >load-http.json &&
	check_load load-http.json &&
	grep "GET /features/0000.js" http.log && grep "GET /features/$(printf %04d $((FOUND / 1000))).js" http.log
'
test -s load-http.json && diag http load-http.json

test_done
