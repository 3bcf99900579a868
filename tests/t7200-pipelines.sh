#!/bin/sh
test_description='pipelines: experiment.mk end to end on the shipped model (resumable, parameter-driven reruns, sweeps), examples/dict-sweep.sh, make demo'
. "$(dirname "$0")/test-lib.sh"

missing=
for s in gpt2-tok gpt2-fwd mlp-tap sae-fit sae-encode topk-ctx recon-score explain-gpt4 sae-report tsz; do
	test -x "$SRC_DIR/bin/$s" || missing="$missing $s"
done
if test -z "$missing"; then test_set_prereq STAGES
else echo "# stages not built:$missing: pipeline tests are skipped"; fi
CHROMIUM=$(command -v chromium || true)
test -n "$CHROMIUM" && test_set_prereq CHROMIUM

# a small, quick configuration of the experiment on the shipped model
exp () {
	timeout 600 make -f "$SRC_DIR/pipelines/experiment.mk" MODEL="$TINY_MODEL_DIR" CORPUS=corp \
		LAYER=3 CTX=64 SHARDS=2 ARCH=topk K=8 DICT=2x TOKENS=20K SHUFFLE=2000 \
		TOPK_K=5 WINDOW=16 RANDOM=3 "$@"
}
run=runs/tiny-gpt2-docs/corp-ctx64-s2
store=$run/blocks.3.mlp.hook_post-bf16
sae=$store/topk-2x-k8-t20K

test_expect_success STAGES,TINY_MODEL 'a corpus of text on this machine' '
	DEMO_DATASET_URL= sh "$SRC_DIR/pipelines/demo-corpus.sh" corp 16000 4000 2>err &&
	grep "documents" err && ls corp >docs && test_line_count -ge 4 docs &&
	DEMO_DATASET_URL= sh "$SRC_DIR/pipelines/demo-corpus.sh" small 5000 2500 2>err
'

test_expect_success STAGES,TINY_MODEL 'experiment.mk: the whole run, ending with the report path' '
	exp -j2 report >out 2>err &&
	grep "^report: $PWD/$sae/report/index.html$" out &&
	grep "^  TOK     [0-9]* files\{0,1\} to [0-9]* windows of 64 ([0-9]* tokens)  [0-9.]* s$" out &&
	grep "^  FIT     topk-2x-k8-t20K: [0-9.KM]* tokens in [0-9]* steps\{0,1\}, validation FVU 0\.[0-9]*  [0-9.]* s$" out &&
	grep "^  RECON   topk-2x-k8-t20K on held-out shard 01: [-0-9.]*% of the loss recovered" out &&
	! grep "bin/gpt2-tok \|bin/sae-fit " out &&
	for f in tokens.tsz tok.00.tsz tok.01.tsz; do test -s $run/$f || return 1; done &&
	for f in rows.00 rows.01 ctx.00 ctx.01; do test -s $store/$f.tsz || return 1; done &&
	for f in sae.tsz train.tsv recon.tsz topk.tsz expl.tsz report/index.html; do test -s $sae/$f || return 1; done &&
	tsz json $sae/recon.tsz >recon.json && grep "\"kind\":\"recon\"" recon.json
'

test_expect_success STAGES,TINY_MODEL 'a rerun redoes nothing' '
	touch marker &&
	exp -j2 report >out 2>err &&
	find runs -newer marker >redone &&
	test_line_count = 0 redone &&
	grep "^report: " out
'

test_expect_success STAGES,TINY_MODEL 'a changed parameter reruns what it affects, nothing else' '
	touch marker &&
	exp -j2 report TOPK_K=4 V=1 >out 2>err &&
	grep "bin/topk-ctx --merge .*/topk.00.tsz" out && ! grep "^  MERGE" out &&
	find runs -newer marker -name "*.tsz" | sort >redone &&
	grep "/topk\\.tsz$" redone && grep "/expl\\.tsz$" redone &&
	! grep "/sae\\.tsz$\\|/rows\\.\\|/ctx\\.\\|/tok" redone &&
	test $sae/report/index.html -nt marker
'

test_expect_success STAGES,TINY_MODEL 'the store: bf16 activations, shuffled rows' '
	tsz json --headers $store/rows.00.tsz >h.json &&
	grep "\"dtype\":\"bf16\"" h.json
'

test_expect_success STAGES,TINY_MODEL,CHROMIUM 'the report opens in chromium and lists the features' '
	timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$PWD/chrome-profile" --enable-logging=stderr --v=0 \
		--dump-dom "file://$PWD/$sae/report/index.html" >dom.html 2>dom.log &&
	grep "data-state=\"ok\" data-chunks=\"0\">ok: [1-9][0-9]* features" dom.html &&
	grep -o "<details class=\"feat\"" dom.html >cards && test_line_count -ge 10 cards &&
	! grep "Uncaught" dom.log
'

test_expect_success STAGES,TINY_MODEL 'sweep: two dictionaries from one read of the store, compared in one report' '
	exp sweep SWEEP="topk/1x/8 topk/2x/8" >out 2>err &&
	grep "^sweep report: " out &&
	sed -n "/<section id=\"recon\">/,/<\/section>/p" $store/sweep/report.html >recon.html &&
	grep -c "<td>1x</td>\\|<td>2x</td>" recon.html >n && test "$(cat n)" = 2
'

test_expect_success STAGES,TINY_MODEL 'examples/dict-sweep.sh runs on the shipped model' '
	MODEL="$TINY_MODEL_DIR" LAYER=3 DICTS="1x 2x" ARCH=topk K=8 TOKENS=10K CTX=64 OUT=ds \
		timeout 600 sh "$SRC_DIR/examples/dict-sweep.sh" small/* >out 2>err &&
	grep "^report: $PWD/ds/sweep.html" out &&
	test -s ds/1x/sae.tsz && test -s ds/2x/sae.tsz && test -s ds/2x/recon.tsz
'

test_expect_success STAGES,TINY_MODEL 'examples/pipeline.sh (the README pipeline) ends with a report' '
	MODEL="$TINY_MODEL_DIR" DICT=2x K=8 TOKENS=10K OUT=pe EXPLAINER=baseline \
		timeout 600 sh "$SRC_DIR/examples/pipeline.sh" small/* >out 2>err &&
	grep "^report: $PWD/pe/report.html" out &&
	grep "data-state=\"loading\"" pe/report.html
'

# the demo's choice of model and corpus, against a loopback hub
PY=${PYTHON:-$(command -v python3)}
test -n "$PY" && test_set_prereq PYTHON
demo_choose () {
	timeout 120 make -f "$SRC_DIR/pipelines/demo.mk" -C "$SRC_DIR" DEMO_DIR="$PWD/$1" CORPUS_BYTES=20000 choose
}
# a newcomer reads make demo: no line longer than 200 characters (paths
# under the trash directory counted from it, as the demo's own demo/ is)
short_lines () {
	sed "s|$PWD/||g" "$@" | awk "length > 200" >long &&
	test_line_count = 0 long
}
start_hub () {
	rm -f port log &&
	"$PY" "$TEST_DIRECTORY/helpers/httpd-hub.py" hub port --log log --idle 60 \
		</dev/null >/dev/null 2>hub.err 3>&- 4>&- &
	echo $! >hub.pid &&
	i=0 &&
	while ! test -s port; do
		i=$((i + 1)) && test $i -lt 100 || return 1
		sleep 0.1
	done
}

test_expect_success STAGES,TINY_MODEL 'demo offline: the shipped model and local documentation, and it says so' '
	HF_ENDPOINT=http://127.0.0.1:1 DEMO_PROBE_TIMEOUT=3 demo_choose off >out 2>err &&
	grep "^model=$SRC_DIR/examples/models/tiny-gpt2-docs layer=3 source=shipped corpus=$PWD/off/corpus$" out &&
	grep "== model: the shipped tiny-gpt2-docs (http://127.0.0.1:1 not reachable within 3s: curl: (7)" err &&
	grep "demo-corpus.sh: http://127.0.0.1:1/datasets/roneneldan/TinyStories/resolve/main/TinyStories-valid.txt: curl: (7)" err &&
	grep "demo-corpus.sh: local documentation under /usr/share/doc" err &&
	ls off/corpus/*.txt >docs && test_line_count -ge 1 docs &&
	HF_ENDPOINT=http://127.0.0.1:1 demo_choose off >out2 2>err2 &&
	grep "^model=" out >m1 && grep "^model=" out2 >m2 && test_cmp m1 m2 &&
	! grep "==\|demo-corpus" out2 err2
'

test_expect_success STAGES,TINY_MODEL,PYTHON 'demo online: distilgpt2 from the hub (HF_ENDPOINT) and a public dataset, end to end; a rerun redoes nothing' '
	mkdir -p hub/distilgpt2 hub/datasets/roneneldan/TinyStories &&
	cp "$TINY_MODEL_DIR"/config.json "$TINY_MODEL_DIR"/model.safetensors "$TINY_MODEL_DIR"/vocab.json \
		"$TINY_MODEL_DIR"/merges.txt hub/distilgpt2/ &&
	for i in $(seq 400); do
		printf "Once upon a time there was a little cat number %d. It liked to sleep in the sun.\n\nThe end.\n<|endoftext|>\n" $i || return 1
	done >hub/datasets/roneneldan/TinyStories/TinyStories-valid.txt &&
	# (the hub leaves by itself after 60 s without a request: a slow run outlives it)
	start_hub && test_when_finished "kill \$(cat hub.pid) 2>/dev/null || :" &&
	HF_ENDPOINT=http://127.0.0.1:$(cat port) DEMO_PROBE_TIMEOUT=5 demo_choose on >out 2>err &&
	grep "^model=distilgpt2 layer=5 source=hub corpus=$PWD/on/corpus$" out &&
	grep "== model: distilgpt2 from the hub (http://127.0.0.1:$(cat port) answered within 5s)" err &&
	grep "demo-corpus.sh: a public dataset, http://127.0.0.1:$(cat port)/datasets/roneneldan/TinyStories/resolve/main/TinyStories-valid.txt: [0-9]* documents" err &&
	cat on/corpus/*.txt >all.txt &&
	test $(wc -c <all.txt) -le 20000 && test $(wc -c <all.txt) -ge 15000 &&
	grep -c "Once upon a time" all.txt >n && test $(cat n) -ge 150 &&
	! grep "endoftext" all.txt &&
	grep "^GET /datasets/roneneldan/TinyStories/resolve/main/TinyStories-valid.txt bytes=0-19999 " log &&
	# the demo on that choice (small sizes; LAYER=3: the stand-in has 4 layers):
	# model-fetch gets the model through HF_ENDPOINT, the run ends with the report
	demo_on () {
		SAEPIPE_HOME=$PWD/home HF_ENDPOINT=http://127.0.0.1:$(cat port) timeout 600 \
			make -f "$SRC_DIR/pipelines/demo.mk" -C "$SRC_DIR" DEMO_DIR="$PWD/on" \
			LAYER=3 TOKENS=10K SHARDS=2 CTX=64 "$@"
	} &&
	demo_on >dout 2>derr &&
	grep "^== saepipe demo: model distilgpt2 (hub), layer 3" dout &&
	grep "^report: $PWD/on/runs/distilgpt2/corpus-ctx64-s2/.*/report/index.html$" dout &&
	# one short line a step, no command lines
	grep "^  FETCH   distilgpt2  [0-9.]* s$" dout &&
	grep "^  FIT     topk-4x-k32-t10K: " dout && grep "^  REPORT  topk-4x-k32-t10K: " dout &&
	! grep "bin/[a-z0-9-]* \|/pipelines/[a-z-]*\.sh " dout &&
	short_lines dout derr &&
	grep "^GET /distilgpt2/resolve/main/model.safetensors" log &&
	test -s home/models/distilgpt2/model.safetensors &&
	# a second run redoes nothing and asks the hub nothing
	cp log log.before && touch marker &&
	demo_on >dout2 2>derr2 &&
	grep "^report: " dout2 &&
	find on -newer marker >redone && test_line_count = 0 redone &&
	test_cmp log.before log &&
	# V=1: the commands themselves, here the report'"'"'s, made again
	rm -r on/runs/distilgpt2/corpus-ctx64-s2/*/topk-4x-k32-t10K/report &&
	demo_on V=1 >vout 2>verr &&
	grep "bin/sae-report -s .*/sae.tsz" vout && ! grep "^  REPORT" vout &&
	grep "^report: " vout
'

test_expect_success STAGES,TINY_MODEL,PYTHON 'demo: a hub that accepts but never answers costs the probe timeout, no more' '
	"$PY" -c "import socket,time,sys; s=socket.socket(); s.bind((\"127.0.0.1\",0)); s.listen(5); open(\"mute.port\",\"w\").write(str(s.getsockname()[1])); sys.stdout.close(); time.sleep(60)" \
		</dev/null >/dev/null 2>&1 3>&- 4>&- &
	echo $! >mute.pid && test_when_finished "kill \$(cat mute.pid)" &&
	i=0 && while ! test -s mute.port; do i=$((i + 1)) && test $i -lt 100 || return 1; sleep 0.1; done &&
	start=$(date +%s) &&
	HF_ENDPOINT=http://127.0.0.1:$(cat mute.port) DEMO_PROBE_TIMEOUT=2 DEMO_DATASET_URL= demo_choose mute >out 2>err &&
	test $(( $(date +%s) - start )) -lt 15 &&
	grep "source=shipped" out && grep "not reachable within 2s: curl: (28)" err
'

test_expect_success EXPENSIVE,STAGES,TINY_MODEL 'make demo offline: end to end, then a rerun redoes nothing' '
	HF_ENDPOINT=http://127.0.0.1:1 && export HF_ENDPOINT &&
	timeout 1800 make -f "$SRC_DIR/pipelines/demo.mk" -C "$SRC_DIR" DEMO_DIR="$PWD/demo" >out 2>err &&
	grep "^report: $PWD/demo/.*/report/index.html" out &&
	grep "== model: the shipped tiny-gpt2-docs" err &&
	grep "^  FIT     " out && ! grep "bin/[a-z0-9-]* " out && short_lines out err &&
	touch marker &&
	timeout 600 make -f "$SRC_DIR/pipelines/demo.mk" -C "$SRC_DIR" DEMO_DIR="$PWD/demo" >out2 2>err2 &&
	find demo -newer marker >redone && test_line_count = 0 redone &&
	grep "^report: " out2
'

test_done
