#!/bin/sh
test_description='sae-report: a self-contained HTML page from a run'"'"'s streams, checked as text, as JSON and in a headless browser'
. "$(dirname "$0")/test-lib.sh"

. "$TEST_DIRECTORY/helpers/report-test-lib.sh"

# the JSON blob of a page, as Python sees it, examples unpacked: token ids
# from three base-64 digits each, levels (0-63 of the feature max) one digit
UNPACK='
B = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
def unpack(x):
    t = [B.index(x["t"][i]) * 4096 + B.index(x["t"][i + 1]) * 64 + B.index(x["t"][i + 2])
         for i in range(0, len(x["t"]), 3)]
    return t, [B.index(c) for c in x["a"]]
'
test_expect_success 'synthetic run streams' '
	mk-report-input . &&
	printf "step\ttokens\tloss\tmse\tl0\n" >log32.tsv &&
	for i in 1 2 3 4 5 6 7 8; do
		printf "%d\t%d\t%s\t0.%d\t%d\n" $i $((i * 4096)) 2.$((9 - i)) $((9 - i)) $((100 / i)) || return 1
	done >>log32.tsv &&
	for i in 1 2 3 4 5; do
		echo "{\"step\": $i, \"tokens\": $((i * 4096)), \"loss\": 3.$i, \"val\": {\"fvu\": 0.$((9 - i))}}" || return 1
	done >log128.jsonl &&
	sae-report -s sae32.tsz -s sae128.tsz -r recon32.tsz -r recon128.tsz \
		-l 32x=log32.tsv -l 128x=log128.jsonl -e expl.tsz -F feat.tsz -t "run <1> & co" \
		-o report.html 2>err &&
	test ! -s err && test -s report.html
'

test_expect_success 'the page is self-contained: no external resource' '
	! grep -Ei "(src|href)=\"(https?:)?//|<link|@import|url\(" report.html &&
	! grep -i "<script src" report.html &&
	grep -c "<svg" report.html >n && test $(cat n) -ge 4
'

test_expect_success 'inputs cannot break out of the data script: exactly three script elements' '
	grep -o "<script[^>]*>" report.html >scripts &&
	test_line_count = 3 scripts &&
	grep -o "</script>" report.html >ends && test_line_count = 3 ends &&
	! grep "<img src=x" report.html &&
	! grep "<b>cats" report.html &&
	grep "<title>run &lt;1&gt; &amp; co</title>" report.html
'

test_expect_success NUMPY 'the data blob round-trips every hostile string exactly' '
	blob report.html >blob.json &&
	"$PYTHON" - blob.json <<-\EOF
	import json, sys
	d = json.load(open(sys.argv[1]))
	f = {x["i"]: x for x in d["features"]}
	assert sorted(f) == [3, 7, 12, 14, 15], sorted(f)
	assert f[3]["e"] == "the word </script><script>document.title=\x27pwned\x27</script> & <b>cats</b>", f[3]["e"]
	assert f[15]["e"] == "line\u2028separator and \"quotes\"", f[15]["e"]
	assert d["vocab"]["2"] == "</script>" and d["vocab"]["3"] == "<img src=x onerror=alert(1)>"
	assert d["vocab"]["8"] == "\u2028" and d["vocab"]["5"] == "\n"
	assert f[7]["x"] == "failed" and "s" not in f[7] and f[7]["er"].startswith("HTTP 429")
	assert "top" not in f[15] and f[12].get("e") is None
	EOF
'

test_expect_success NUMPY 'examples: cut around the max, levels are round(63 a / max_act)' '
	"$PYTHON" - blob.json <<-EOF
	$UNPACK
	import json, sys
	import numpy as np
	d = json.load(open(sys.argv[1]))
	f = {x["i"]: x for x in d["features"]}
	# independent: mk-report-input puts, for feature i and example k, the peak
	# (2+i)(1-0.2k) at position 8 and 0.5 at position 7 of a 12-token window
	for i in (3, 7, 12, 14):
	    mx = 2.0 + i
	    assert f[i]["mx"] == mx
	    assert len(f[i]["top"]) == 3 and len(f[i]["rnd"]) == 2
	    for k, ex in enumerate(f[i]["top"]):
	        acts = np.zeros(12); acts[8] = mx * (1 - 0.2 * k); acts[7] = 0.5
	        want = np.round(63 * acts / mx).astype(int).tolist()
	        t, a = unpack(ex)
	        assert a == want, (i, k, a, want)
	        assert t[8] == (i + k) % 10 and len(t) == 12
	        assert abs(ex["m"] - acts[8]) < 1e-3 and ex["src"] == [100 + k, 17 * k]
	# bands: at most --max-band (2) per band, in stored order, tagged
	assert [x["b"] for x in f[3]["bands"]] == [0, 0, 1], f[3]["bands"]
	assert [x["m"] for x in f[3]["bands"]] == [1.0, 2.0, 4.0]
	assert all("bands" not in f[i] for i in (7, 12, 14))
	EOF
'

test_expect_success 'reconstruction table: our scores beside the seed figures' '
	sed -n "/<section id=\"recon\">/,/<\/section>/p" report.html >recon.html &&
	grep "<td class=\"l\">sae32.tsz</td>.*<td>32x</td>.*<td>81.25%</td>.*<td class=\"seed\">77%</td>" recon.html &&
	grep "<td class=\"l\">sae128.tsz</td>.*<td>128x</td>.*<td>62.50%</td>.*<td class=\"seed\">48%</td>" recon.html
'

test_expect_success 'SAE metadata from the header when it is there (the weights are not read)' '
	sae-report -s sae128.tsz -o h128.html &&
	grep "<td>393216</td>" h128.html &&
	! grep "tokens_seen" h128.html &&
	sae-report -s sae32.tsz -o h32.html &&
	grep "<th>tokens_seen</th><td>1000000</td>" h32.html
'

test_expect_success NUMPY 'an SAE in part records: from its header, and read through its parts when the header lacks d and f' '
	"$PYTHON" -c "import numpy as np; np.save(\"x.npy\", np.random.default_rng(1).standard_normal((600, 16)).astype(np.float32))" &&
	tsz from-npy --meta kind=acts acts=x.npy >x.tsz &&
	SAEPIPE_PART_BYTES=200 sae-fit --dict 40 --batch 100 x.tsz -o parted.tsz &&
	tsz json parted.tsz | grep -q "\"kind\":\"sae_part\"" &&
	sae-report -s parted.tsz -o p1.html &&
	grep "<th>f</th><td>40</td>" p1.html && grep "<th>tokens_seen</th><td>600</td>" p1.html &&
	tsz cat parted.tsz >cat.tsz &&
	sae-report -s cat.tsz -o p2.html 2>err && test ! -s err &&
	grep "<th>f</th><td>40</td>" p2.html && grep "<th>tokens_seen</th><td>600</td>" p2.html &&
	! grep "parts" p2.html
'

test_expect_success 'no seed figure where the setting differs' '
	sae-report -r recon32.tsz -o plain.html &&
	grep "<td>81.25%</td>" plain.html &&
	! grep "class=\"seed\"" plain.html
'

test_expect_success 'training curves overlay both logs, x is tokens' '
	sed -n "/<section id=\"training\">/,/<\/section>/p" report.html >curves.html &&
	grep -o "<svg" curves.html >svgs && test_line_count = 4 svgs &&
	grep -o "<title>[a-z0-9.]*</title>" curves.html >titles &&
	printf "<title>%s</title>\n" loss mse l0 val.fvu >expect &&
	test_cmp expect titles &&
	grep -o "<polyline" curves.html >lines && test_line_count = 5 lines &&
	! grep "Constant throughout" curves.html &&
	grep ">32x</text>" curves.html && grep ">128x</text>" curves.html &&
	grep -c ">tokens</text>" curves.html
'

test_expect_success 'constant columns are a note, not a flat plot' '
	printf "step\tloss\tdead\tl0\n1\t2\t0\t32\n2\t1\t0\t32\n" >flat.tsv &&
	sae-report -l flat.tsv -o flat.html &&
	grep "Constant throughout: dead = 0, l0 = 32." flat.html &&
	grep -o "<svg" flat.html >svgs && test_line_count = 1 svgs
'

test_expect_success 'density histogram from dict_stats: dead and dense counts' '
	grep "16 features: 4 dead (never fired), 1 dense" report.html &&
	sed -n "/<section id=\"density\">/,/<\/section>/p" report.html | grep -o "<rect class=\"bar\"" >bars &&
	test_line_count -ge 2 bars
'

test_expect_success 'provenance lists every input with its command line' '
	sed -n "/<section id=\"provenance\">/,/<\/section>/p" report.html >prov.html &&
	grep "recon: recon32.tsz" prov.html && grep "<code>recon-score --model distilgpt2 --sae sae32.tsz</code>" prov.html &&
	grep "training log: 128x" prov.html &&
	sed -n "/<b>Commands/,/<\/table>/p" report.html >cmds.html &&
	grep "<tr><th>recon-score</th><td><code>recon-score --model distilgpt2 --sae sae128.tsz</code>" cmds.html &&
	grep -c "<tr><th>" cmds.html >n && test $(cat n) = 6
'

test_expect_success 'same inputs, same bytes' '
	sae-report -e expl.tsz -F feat.tsz -o a.html &&
	sae-report -e expl.tsz -F feat.tsz >b.html &&
	cmp a.html b.html
'

test_expect_success NUMPY 'stdin works as an input' '
	sae-report -e expl.tsz -F - -o c.html <feat.tsz &&
	grep "features: stdin" c.html &&
	blob a.html >a.json && blob c.html >c.json && test_cmp a.json c.json
'

test_expect_success NUMPY '--max-features, --max-top, --max-random, --context-before/after' '
	sae-report -F feat.tsz --max-features 2 --max-top 1 --max-random 0 \
		--context-before 2 --context-after 1 -o small.html &&
	blob small.html >small.json &&
	"$PYTHON" - small.json <<-EOF
	$UNPACK
	import json, sys
	d = json.load(open(sys.argv[1]))
	assert [f["i"] for f in d["features"]] == [3, 7]
	for f in d["features"]:
	    assert len(f["top"]) == 1 and "rnd" in f and f["rnd"] == []
	    t, a = unpack(f["top"][0])
	    assert len(t) == 4 and a[2] == 63, (t, a)
	EOF
'

test_expect_success 'a log with invalid UTF-8 is cleaned, not refused' '
	printf "step\tloss\377\n1\t2\n2\t1\n" >bad-utf8.tsv &&
	sae-report -l bad-utf8.tsv -o u.html &&
	grep "$(printf "loss\357\277\275")" u.html
'

test_expect_success 'bad usage: no input, stray argument, two stdins, bad number' '
	test_must_fail sae-report 2>err && grep "^sae-report: nothing to report" err &&
	test_must_fail sae-report -F feat.tsz extra 2>err && grep "^sae-report: unexpected argument .extra." err &&
	test_must_fail sae-report -F - -e - 2>err </dev/null && grep "^sae-report: only one input can be stdin" err &&
	test_must_fail sae-report -F feat.tsz --max-top x 2>err && grep "^sae-report: .*--max-top" err
'

test_expect_success 'bad inputs: one line naming the file, and no page left behind' '
	test_must_fail sae-report -F missing.tsz -o out.html 2>err &&
	grep "^sae-report: missing.tsz: " err && test ! -e out.html &&
	head -c 300 feat.tsz >cut.tsz &&
	test_must_fail sae-report -F cut.tsz -o out.html 2>err &&
	grep "^sae-report: cut.tsz: .*" err && test ! -e out.html &&
	test_must_fail sae-report -F expl.tsz 2>err >/dev/null &&
	grep "^sae-report: expl.tsz: record 1: kind .explanation. is not .feature. or .dict_stats. (topk-ctx output)$" err &&
	test_must_fail sae-report -F bad-shape.tsz 2>err >/dev/null &&
	grep "^sae-report: bad-shape.tsz: record 1: \"top_acts\" is (3,11) f32 but \"top_tokens\" is (3,12) i32" err &&
	test_must_fail sae-report -F bad-band.tsz 2>err >/dev/null &&
	grep "^sae-report: bad-band.tsz: record 1: \"band_tokens\" needs \"band_id\" i32 or i64 (4)" err &&
	test_must_fail sae-report -F no-id.tsz 2>err >/dev/null &&
	grep "^sae-report: no-id.tsz: record 1: no \"feature\" id" err &&
	test_must_fail sae-report -r feat.tsz 2>err >/dev/null &&
	grep "^sae-report: feat.tsz: record 1: kind .feature. is not .recon. (recon-score output)$" err &&
	test_must_fail sae-report -s recon32.tsz 2>err >/dev/null &&
	grep "^sae-report: recon32.tsz: record 1: kind .recon. is not .sae. (sae-fit or sae-convert output)$" err
'

test_expect_success 'logs: malformed JSON line, empty file, missing file, not a log; a header alone is no error' '
	printf "{\"step\": 1}\n{\"step\": 2,\n" >broken.jsonl &&
	test_must_fail sae-report -l broken.jsonl 2>err >/dev/null &&
	grep "^sae-report: broken.jsonl: line 2: not a JSON object" err &&
	: >empty.tsv &&
	test_must_fail sae-report -l empty.tsv 2>err >/dev/null &&
	grep "^sae-report: empty.tsv: no header line" err &&
	printf "step\tloss\n" >header.tsv &&
	sae-report -l header.tsv -o h.html &&
	grep "The logs have no rows with numbers to plot yet." h.html &&
	test_must_fail sae-report -l nope.tsv 2>err >/dev/null &&
	grep "^sae-report: nope.tsv: No such file or directory" err &&
	printf "user:x:1000\nroot:x:0\n" >notalog.txt &&
	test_must_fail sae-report -l notalog.txt -o n.html 2>err >/dev/null &&
	grep "^sae-report: notalog.txt: no number in any line after the header (1 lines; not a training log)$" err &&
	! test -e n.html
'

test_expect_success CHROMIUM 'headless chromium: the page lists every feature, no console error' '
	chrome "file://$PWD/report.html" dom.html &&
	test "$(page_state dom.html)" = ok &&
	grep -o "<details class=\"feat\" id=\"feature-[0-9]*\"" dom.html | sed "s/.*feature-//; s/\"//" >ids &&
	printf "%s\n" 3 7 12 14 15 >expect && test_cmp expect ids &&
	! console_errors dom.html &&
	grep "<title>run &lt;1&gt; &amp; co</title>" dom.html &&
	! grep -i "<img" dom.html && ! grep "pwned</title>" dom.html
'

test_expect_success CHROMIUM 'headless chromium: examples shaded by activation, hostile tokens shown as text' '
	grep -o "<span class=\"tk\" title=\"[^\"]*\" style=\"background: rgb(255, 102, 0);\">[^<]*</span>" dom.html >hot &&
	head -n 1 hot | grep "&lt;img src=x onerror=alert(1)&gt;</span>" &&
	grep -o "<span class=\"tk\"[^>]*>&lt;/script&gt;</span>" dom.html >/dev/null &&
	grep "the word &lt;/script&gt;&lt;script&gt;document.title=.pwned.&lt;/script&gt; &amp; &lt;b&gt;cats&lt;/b&gt;" dom.html &&
	grep -o "<h4>[^<]*</h4>\|<div class=\"band\">[^<]*</div>" dom.html >heads &&
	printf "%s\n" "<h4>Activation histogram</h4>" "<h4>Logit effects</h4>" \
		"<h4>Top activations</h4>" "<h4>Activation quantile bands</h4>" \
		"<div class=\"band\">band 0</div>" "<div class=\"band\">band 1</div>" \
		"<h4>Random activating examples</h4>" >expect &&
	test_cmp expect heads
'

test_expect_success CHROMIUM 'headless chromium: #q= searches, #feature-N opens a feature' '
	chrome "file://$PWD/report.html#q=pwned" q.html &&
	test "$(page_state q.html)" = ok &&
	grep -o "<details class=\"feat\" id=\"feature-[0-9]*\"" q.html >found &&
	test_line_count = 1 found && grep "feature-3" found &&
	chrome "file://$PWD/report.html#feature-7" f7.html &&
	grep "<details class=\"feat\" id=\"feature-7\" open=\"\">" f7.html &&
	grep "explanation failed: HTTP 429 after 5 attempts &lt;retry&gt;" f7.html &&
	! console_errors f7.html
'

test_expect_success CHROMIUM 'thousands of features: a small page that loads and pages' '
	mk-report-input --many 4096 64 many.tsz &&
	sae-report -F many.tsz -o many.html &&
	size=$(wc -c <many.html) && test $size -lt 20000000 &&
	chrome "file://$PWD/many.html" many-dom.html &&
	test "$(page_state many-dom.html)" = ok &&
	grep "ok: 4096 features" many-dom.html &&
	grep -o "<details class=\"feat\"" many-dom.html >cards && test_line_count = 50 cards &&
	grep "4096 of 4096 features · page 1/82" many-dom.html &&
	! console_errors many-dom.html
'

test_expect_success CHROMIUM 'the browser check can fail: a broken script is caught' '
	sed "s/var D=JSON.parse/var D=JSON.parse(\"{\")||JSON.parse/" report.html >broken.html &&
	chrome "file://$PWD/broken.html" broken-dom.html &&
	test "$(page_state broken-dom.html)" = error &&
	console_errors broken-dom.html
'

test_done
