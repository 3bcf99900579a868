#!/bin/sh
test_description='model-fetch: a loopback hub (tests/helpers/httpd-hub.py): fetch, no-op, resume, checksum, 404, token'
. "$(dirname "$0")/test-lib.sh"

PY=${PYTHON:-$(command -v python3)}
test -n "$PY" || test_skip_all 'no python3 for the loopback hub'

SAEPIPE_HOME=$PWD/home
export SAEPIPE_HOME
unset HF_TOKEN HF_ENDPOINT XDG_CACHE_HOME

# start_hub [httpd-hub.py options]: serve ./hub on a free loopback port and
# set HF_ENDPOINT. Test bodies run in a subshell, so each body ends with
# stop_hub; start_hub also stops a server a failed body left, the script
# stops the last one, and the server exits by itself after 30 idle seconds.
start_hub () {
	stop_hub
	rm -f port log || return 1
	"$PY" "$TEST_DIRECTORY/helpers/httpd-hub.py" hub port --log log --idle 30 "$@" \
		</dev/null >/dev/null 2>hub.err 3>&- 4>&- &
	echo $! >hub.pid &&
	i=0 &&
	while ! test -s port; do
		i=$((i + 1)) && test $i -lt 100 || { cat hub.err >&4; return 1; }
		sleep 0.1
	done &&
	HF_ENDPOINT=http://127.0.0.1:$(cat port) && export HF_ENDPOINT
}
stop_hub () {
	if test -f hub.pid; then kill "$(cat hub.pid)" 2>/dev/null; rm -f hub.pid; fi
}

M=home/models/org/tiny

test_expect_success 'setup: a small model directory on the hub (an LFS-sized safetensors, small json)' '
	mkdir -p hub/org/tiny &&
	"$PY" -c "import os; open(\"hub/org/tiny/model.safetensors\", \"wb\").write(bytes((i * 7 + i // 251) % 256 for i in range(300000)))" &&
	echo "{\"n_positions\": 64, \"model_type\": \"gpt2\"}" >hub/org/tiny/config.json &&
	if test -n "$GPT2_DIR"; then cp "$GPT2_DIR/vocab.json" "$GPT2_DIR/merges.txt" hub/org/tiny/;
	else echo "{}" >hub/org/tiny/vocab.json && echo "#version: 0.2" >hub/org/tiny/merges.txt; fi
'

test_expect_success '--help lists every option; bad usage exits 2' '
	model-fetch --help >help &&
	for o in --dir --endpoint --revision --retries --quiet --progress --help --version; do
		grep -e "$o" help || return 1
	done &&
	model-fetch --version | grep "^model-fetch " &&
	test_expect_code () { "$@"; test $? = 2; } &&
	test_expect_code model-fetch 2>err && grep "^model-fetch: a repository ID is required" err &&
	test_expect_code model-fetch ../etc 2>err && grep "^model-fetch: .../etc. is not a repository id" err &&
	test_expect_code model-fetch a/b/c 2>err && grep "^model-fetch: .a/b/c. is not a repository id" err &&
	test_expect_code model-fetch --endpoint ftp://x gpt2 2>err && grep "^model-fetch: --endpoint: expected an http" err &&
	test_expect_code model-fetch --retries x gpt2 2>err && grep "^model-fetch: --retries" err
'

test_expect_success 'fetch: the four files land whole in $SAEPIPE_HOME/models/ID, the directory on stdout' '
	start_hub &&
	model-fetch org/tiny >out 2>err &&
	echo "$PWD/$M" >want && test_cmp want out &&
	for f in config.json model.safetensors vocab.json merges.txt; do
		cmp hub/org/tiny/$f $M/$f || return 1
	done &&
	! ls $M | grep part &&
	grep "^HEAD /org/tiny/resolve/main/model.safetensors" log &&
	grep "^GET /cdn/org/tiny/model.safetensors" log &&
	stop_hub
'

test_expect_success 'a second run is a no-op that needs no network' '
	HF_ENDPOINT=http://127.0.0.1:9 model-fetch org/tiny >out 2>err &&
	echo "$PWD/$M" >want && test_cmp want out && test_must_be_empty () { ! test -s "$1"; } && test_must_be_empty err
'

test_expect_success 'an interrupted download keeps its .part and the next run resumes it with Range' '
	start_hub --cut model.safetensors:100000 &&
	rm -rf home &&
	test_must_fail model-fetch --retries 0 org/tiny >out 2>err &&
	grep "^model-fetch: org/tiny: model.safetensors: transfer cut after 100000 bytes (.*); .*model.safetensors.part keeps them, run again to resume$" err &&
	test $(wc -c <$M/model.safetensors.part) = 100000 && ! test -e $M/model.safetensors &&
	model-fetch org/tiny >out 2>err &&
	grep "^GET /cdn/org/tiny/model.safetensors bytes=100000- " log &&
	cmp hub/org/tiny/model.safetensors $M/model.safetensors && ! test -e $M/model.safetensors.part &&
	stop_hub
'

test_expect_success 'a cut transfer is resumed within one run (--retries)' '
	start_hub --cut model.safetensors:123456 &&
	rm -rf home &&
	model-fetch org/tiny >out 2>err &&
	grep "bytes=123456- " log && cmp hub/org/tiny/model.safetensors $M/model.safetensors &&
	stop_hub
'

test_expect_success 'a server that ignores Range: the .part is restarted, the file still right' '
	start_hub --no-range &&
	rm -rf home && mkdir -p $M && head -c 5000 /dev/zero >$M/model.safetensors.part &&
	model-fetch org/tiny model.safetensors >out 2>err &&
	grep "bytes=5000- " log && cmp hub/org/tiny/model.safetensors $M/model.safetensors &&
	stop_hub
'

test_expect_success 'a wrong SHA-256 is refused: no file, no .part' '
	start_hub --bad-sha model.safetensors &&
	rm -rf home &&
	test_must_fail model-fetch org/tiny >out 2>err &&
	grep "^model-fetch: org/tiny: model.safetensors: SHA-256 mismatch: got [0-9a-f]\{64\}, the hub says [0-9a-f]\{64\}; removed the download$" err &&
	! test -e $M/model.safetensors && ! test -e $M/model.safetensors.part &&
	! test -s out &&
	stop_hub
'

test_expect_success 'a 404 names the file and the URL' '
	start_hub &&
	test_must_fail model-fetch org/tiny nothere.bin >out 2>err &&
	grep "^model-fetch: org/tiny: nothere.bin: HTTP 404 from $HF_ENDPOINT/org/tiny/resolve/main/nothere.bin (no such repository or file)$" err &&
	test_must_fail model-fetch org/nosuch >out 2>err &&
	grep "^model-fetch: org/nosuch: config.json: HTTP 404 from $HF_ENDPOINT/org/nosuch/resolve/main/config.json" err &&
	! test -e home/models/org/nosuch/config.json &&
	stop_hub
'

test_expect_success 'HF_TOKEN is sent as a bearer token and never printed' '
	start_hub --token s3cr3t-tok &&
	rm -rf home &&
	test_must_fail model-fetch org/tiny config.json >out 2>err &&
	grep "^model-fetch: org/tiny: config.json: HTTP 401 from .* (private or gated repository? set HF_TOKEN)$" err &&
	HF_TOKEN=wrong-tok test_must_fail model-fetch --progress org/tiny config.json >out 2>err &&
	! grep wrong-tok err &&
	HF_TOKEN=s3cr3t-tok model-fetch --progress org/tiny >out 2>err &&
	! grep s3cr3t err && ! grep s3cr3t out &&
	cmp hub/org/tiny/model.safetensors $M/model.safetensors &&
	grep "^HEAD /org/tiny/resolve/main/config.json - auth" log &&
	stop_hub
'

test_expect_success 'a dead endpoint gives a clear error; --dir and --endpoint' '
	test_must_fail model-fetch --endpoint http://127.0.0.1:9 org/other >out 2>err &&
	grep "^model-fetch: org/other: config.json: http://127.0.0.1:9/org/other/resolve/main/config.json: .*" err &&
	start_hub &&
	mkdir -p hub/org/tiny/sub && echo nested >hub/org/tiny/sub/n.txt &&
	model-fetch --dir elsewhere --endpoint "$HF_ENDPOINT" -q org/tiny config.json sub/n.txt >out &&
	! test -s out && cmp hub/org/tiny/config.json elsewhere/config.json && cmp hub/org/tiny/sub/n.txt elsewhere/sub/n.txt &&
	stop_hub
'

test_expect_success NUMPY 'no model.safetensors on the hub: the index and every shard it names; gpt2-fwd loads them' '
	"$PYTHON" "$TEST_DIRECTORY/helpers/gpt2_ref.py" make hub/org/sharded --layers 2 --embd 48 --heads 3 \
		--vocab 97 --positions 16 --shards 2 &&
	start_hub &&
	rm -rf home && S=home/models/org/sharded &&
	model-fetch org/sharded config.json model.safetensors >out 2>err &&
	echo "$PWD/$S" >want && test_cmp want out &&
	for f in config.json model.safetensors.index.json model-00001-of-00002.safetensors model-00002-of-00002.safetensors; do
		cmp hub/org/sharded/$f $S/$f || return 1
	done &&
	! test -e $S/model.safetensors && ! ls $S | grep part &&
	grep "^HEAD /org/sharded/resolve/main/model.safetensors " log &&
	grep "^GET /org/sharded/resolve/main/model.safetensors.index.json " log &&
	grep "^GET /cdn/org/sharded/model-00002-of-00002.safetensors " log &&
	HF_ENDPOINT=http://127.0.0.1:9 model-fetch --progress org/sharded config.json model.safetensors >out 2>err &&
	grep "^model-fetch: org/sharded: 0 file(s) fetched, 4 already there$" err &&
	"$PYTHON" -c "import numpy as np; np.save(\"t.npy\", np.arange(32, dtype=np.int32).reshape(2, 16) % 97)" &&
	tsz from-npy tokens=t.npy >t.tsz &&
	gpt2-fwd -m org/sharded --loss t.tsz >a.tsz && gpt2-fwd -m hub/org/sharded --loss t.tsz >b.tsz &&
	tsz to-npy --name loss a.npy a.tsz && tsz to-npy --name loss b.npy b.tsz && cmp a.npy b.npy &&
	stop_hub
'

test_expect_success NUMPY 'a shard with a wrong SHA-256 is refused; the next run fetches only what is missing' '
	start_hub --bad-sha model-00002-of-00002.safetensors &&
	rm -rf home && S=home/models/org/sharded &&
	test_must_fail model-fetch org/sharded model.safetensors >out 2>err &&
	grep "^model-fetch: org/sharded: model-00002-of-00002.safetensors: SHA-256 mismatch: got [0-9a-f]\{64\}, the hub says [0-9a-f]\{64\}; removed the download$" err &&
	test -e $S/model-00001-of-00002.safetensors && ! test -e $S/model-00002-of-00002.safetensors &&
	start_hub &&
	model-fetch org/sharded model.safetensors >out 2>err &&
	cmp hub/org/sharded/model-00002-of-00002.safetensors $S/model-00002-of-00002.safetensors &&
	! grep "model.safetensors.index.json\|model-00001" log &&
	stop_hub
'

test_expect_success 'neither model.safetensors nor an index: the 404 says both' '
	mkdir -p hub/org/empty && echo "{}" >hub/org/empty/config.json &&
	start_hub &&
	test_must_fail model-fetch org/empty >out 2>err &&
	grep "^model-fetch: org/empty: model.safetensors: HTTP 404 from $HF_ENDPOINT/org/empty/resolve/main/model.safetensors (no such repository or file); nor model.safetensors.index.json (a sharded checkpoint)$" err &&
	! test -s out && ! test -e home/models/org/empty/model.safetensors.index.json &&
	mkdir -p hub/org/badidx && echo "{\"weight_map\": {\"a\": \"../../etc/passwd\"}}" >hub/org/badidx/model.safetensors.index.json &&
	test_must_fail model-fetch org/badidx model.safetensors >out 2>err &&
	grep "^model-fetch: org/badidx: .*model.safetensors.index.json: weight_map: a: shard must be a file name inside the repository$" err &&
	stop_hub
'

test_expect_success GPT2_VOCAB 'a fetched repo id works as --model for gpt2-tok' '
	start_hub &&
	model-fetch org/tiny >/dev/null &&
	echo "Hello world" | gpt2-tok -m org/tiny --ctx 0 >t.tsz &&
	tsz json --full t.tsz | grep "\[\[50256,15496,995,198\]\]" &&
	echo hi | test_must_fail gpt2-tok -m org/tiny --ctx 65 >t.tsz 2>err && grep "n_positions 64" err &&
	stop_hub
'

stop_hub
test_done
