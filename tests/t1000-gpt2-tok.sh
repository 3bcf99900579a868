#!/bin/sh
test_description='gpt2-tok: golden ids, windows with doc/offset, text and jsonl inputs, refusals'
. "$(dirname "$0")/test-lib.sh"

DATA="$TEST_DIRECTORY/data/tok"

# ids FILE.tsz: every record's tokens, one id per line, records in order
ids () {
	tsz json --full "$1" | "$PYTHON" -c '
import json, sys
for line in sys.stdin:
    for row in json.loads(line)["tensors"]["tokens"]["data"]:
        print("\n".join(map(str, row)))'
}
# idline FILE.tsz: the same ids on one line, space-terminated
idline () { ids "$1" | tr "\n" " " && echo; }

test_expect_success '--help lists every option; --version' '
	gpt2-tok --help >help &&
	for o in --model --format --key --split --ctx --drop-tail --no-special --rows --threads --output --force --progress --help --version; do
		grep -e "$o" help || return 1
	done &&
	gpt2-tok --version | grep "^gpt2-tok "
'

test_expect_success 'bad usage exits 2 with a message' '
	test_must_fail gpt2-tok --ctx 8 </dev/null 2>err && grep "^gpt2-tok: --model DIR|ID is required" err &&
	test_expect_code () { "$@"; test $? = 2; } &&
	test_expect_code gpt2-tok -m x --format csv 2>err && grep "^gpt2-tok: --format: expected one of text, jsonl, got .csv.$" err &&
	test_expect_code gpt2-tok -m x --split para 2>err && grep "^gpt2-tok: --split: expected one of file, blank, line, got .para.$" err &&
	test_expect_code gpt2-tok -m x --ctx 1 2>err && grep "^gpt2-tok: --ctx: 1 leaves no room" err &&
	test_expect_code gpt2-tok -m x --ctx -5 2>err && grep "^gpt2-tok: --ctx" err &&
	test_expect_code gpt2-tok -m x --key body 2>err && grep "^gpt2-tok: --key goes with --format jsonl" err &&
	test_expect_code gpt2-tok -m x --format jsonl --split line 2>err && grep "^gpt2-tok: --split goes with --format text" err
'

# cuts.txt (150 KB: long, random, long, code, random, long .txt joined; its
# ids from tests/helpers/make-tok-goldens.sh) is cut into pieces of about 64 KB
# as it is read (bin/gpt2-tok.c, PIECE_BYTES), encoded apart on 1-3 threads
test_expect_success GPT2_VOCAB 'every golden file: ids equal the independent reference (--ctx 0: BOS + ids), a document cut into pieces on 1-3 threads too' '
	for f in "$DATA"/*.txt; do
		n=$(basename "$f" .txt) &&
		gpt2-tok -m "$GPT2_DIR" --ctx 0 "$f" >$n.tsz &&
		ids $n.tsz >$n.got &&
		{ echo 50256 && cat "$DATA/$n.ids"; } >$n.want &&
		test_cmp $n.want $n.got || return 1
	done &&
	test $(cat invalid.got | wc -l) -gt 200 &&
	test $(wc -c <"$DATA/cuts.txt") -gt 131072 &&
	for j in 2 3; do
		gpt2-tok -m "$GPT2_DIR" --ctx 0 -j $j "$DATA/cuts.txt" >cuts.tsz &&
		ids cuts.tsz >cuts.got && test_cmp cuts.want cuts.got || return 1
	done
'

test_expect_success GPT2_VOCAB 'invalid UTF-8 and NUL bytes from stdin are encoded, not dropped (ids from tests/helpers/tok-ref.js)' '
	printf "a\\000b\\377\\376 \\300x" | gpt2-tok -m "$GPT2_DIR" --ctx 0 >nul.tsz &&
	idline nul.tsz >got &&
	echo "50256 64 188 65 187 186 220 124 87 " >want && test_cmp want got
'

test_expect_success GPT2_VOCAB '--no-special: <|endoftext|> in the text is plain text' '
	printf "a<|endoftext|>b" | gpt2-tok -m "$GPT2_DIR" --ctx 0 >s.tsz &&
	idline s.tsz >got && echo "50256 64 50256 65 " >want && test_cmp want got &&
	printf "a<|endoftext|>b" | gpt2-tok -m "$GPT2_DIR" --ctx 0 --no-special >s.tsz &&
	idline s.tsz >got && echo "50256 64 27 91 437 1659 5239 91 29 65 " >want && test_cmp want got
'

test_expect_success GPT2_VOCAB,NUMPY 'windows: BOS-led cuts of the documents joined by <|endoftext|>; doc and offset trace back' '
	cat "$DATA/prose.txt" "$DATA/code.txt" >two.txt &&
	gpt2-tok -m "$GPT2_DIR" --ctx 0 "$DATA/prose.txt" "$DATA/code.txt" "$DATA/emoji.txt" >docs.tsz &&
	gpt2-tok -m "$GPT2_DIR" --ctx 16 --rows 5 "$DATA/prose.txt" "$DATA/code.txt" "$DATA/emoji.txt" >win.tsz &&
	tsz json --full docs.tsz >docs.json && tsz json --full win.tsz >win.json &&
	"$PYTHON" -c "
import json, sys
docs = [json.loads(l)[\"tensors\"][\"tokens\"][\"data\"][0][1:] for l in open(\"docs.json\")]
stream, src = [], []
for d, toks in enumerate(docs):
    for i, t in enumerate(toks + [50256]):
        stream.append(t); src.append((d, i))
rows, doc, off, shapes = [], [], [], []
for l in open(\"win.json\"):
    t = json.loads(l)[\"tensors\"]
    shapes.append(tuple(t[\"tokens\"][\"shape\"]))
    rows += t[\"tokens\"][\"data\"]; doc += t[\"doc\"][\"data\"]; off += t[\"offset\"][\"data\"]
W = 15
assert all(r[0] == 50256 for r in rows), \"BOS\"
assert sum(len(r) - 1 for r in rows) == len(stream), (sum(len(r) - 1 for r in rows), len(stream))
for k, r in enumerate(rows):
    assert r[1:] == stream[k * W:k * W + len(r) - 1], k
    assert (doc[k], off[k]) == src[k * W], (k, doc[k], off[k], src[k * W])
assert shapes[0] == (5, 16) and shapes[-1][0] == 1 and shapes[-1][1] == len(stream) % W + 1, shapes
print(len(rows), \"rows\", shapes)
" &&
	gpt2-tok -m "$GPT2_DIR" --ctx 16 --drop-tail "$DATA/prose.txt" "$DATA/code.txt" "$DATA/emoji.txt" >drop.tsz &&
	tsz info drop.tsz >info && grep "tokens .*i32  (\\*,16)" info
'

test_expect_success GPT2_VOCAB 'the header names the model and ctx; records are kind tokens' '
	echo hello | gpt2-tok -m "$GPT2_DIR" --ctx 8 >h.tsz &&
	tsz json --headers h.tsz >json &&
	grep "\"stage\":\"gpt2-tok\"" json && grep "\"ctx\":8" json && grep "\"model\":\"$GPT2_DIR\"" json &&
	grep "\"kind\":\"tokens\"" json
'

test_expect_success GPT2_VOCAB '--split file, blank and line decide what a document is' '
	printf "one\\ntwo\\n\\n\\nthree\\n  \\nfour" >s.txt &&
	for m in file:1 blank:3 line:4; do
		gpt2-tok -m "$GPT2_DIR" --ctx 0 --split ${m%:*} s.txt >s.tsz &&
		test $(tsz json s.tsz | grep -c "\"kind\":\"tokens\"") = ${m#*:} || return 1
	done &&
	gpt2-tok -m "$GPT2_DIR" --ctx 0 --split blank s.txt >s.tsz && idline s.tsz >got &&
	echo "50256 505 198 11545 50256 15542 50256 14337 " >want && test_cmp want got
'

test_expect_success GPT2_VOCAB 'jsonl: the --key field of each line is a document; blank lines skipped' '
	printf "{\"text\": \"hello\", \"id\": 1}\\n\\n{\"body\": \"x\", \"text\": \"a\\\\u00e9\\\\n\"}\\n" >c.jsonl &&
	gpt2-tok -m "$GPT2_DIR" --ctx 0 --format jsonl c.jsonl >j.tsz && idline j.tsz >got &&
	echo "50256 31373 50256 64 2634 198 " >want && test_cmp want got &&
	test_must_fail gpt2-tok -m "$GPT2_DIR" --ctx 0 --format jsonl --key body <c.jsonl >j.tsz 2>err &&
	grep "^gpt2-tok: stdin: line 1: no \"body\" field$" err
'

test_expect_success GPT2_VOCAB 'malformed jsonl: an error naming the line, no end marker, no -o file' '
	printf "{\"text\": \"ok\"}\\n{\"text\": 5}\\n" >num.jsonl &&
	test_must_fail gpt2-tok -m "$GPT2_DIR" --format jsonl num.jsonl >o.tsz 2>err &&
	grep "^gpt2-tok: num.jsonl: line 2: \"text\" is not a string$" err &&
	printf "{\"text\": \"ok\"}\\n{\"text\": \"a\"}\\n{\"text\": \"b\\n" >bad.jsonl &&
	test_must_fail gpt2-tok -m "$GPT2_DIR" --format jsonl bad.jsonl -o out.tsz 2>err &&
	grep "^gpt2-tok: bad.jsonl: line 3: invalid JSON: " err && ! test -e out.tsz &&
	test_must_fail gpt2-tok -m "$GPT2_DIR" --format jsonl --ctx 2 --rows 1 bad.jsonl >o.tsz 2>err && test -s o.tsz &&
	test_must_fail tsz info o.tsz 2>err && grep "end marker" err &&
	printf "[1, 2]\\n" >arr.jsonl &&
	test_must_fail gpt2-tok -m "$GPT2_DIR" --format jsonl arr.jsonl >o.tsz 2>err &&
	grep "^gpt2-tok: arr.jsonl: line 1: expected a JSON object$" err &&
	printf "{\"text\": \"\\377\"}\\n" >inv.jsonl &&
	test_must_fail gpt2-tok -m "$GPT2_DIR" --format jsonl inv.jsonl >o.tsz 2>err &&
	grep "^gpt2-tok: inv.jsonl: line 1: invalid JSON: unable to decode byte 0xff" err
'

test_expect_success GPT2_VOCAB 'a missing input file, a missing model, a broken vocabulary' '
	test_must_fail gpt2-tok -m "$GPT2_DIR" nosuch.txt >o.tsz 2>err &&
	grep "^gpt2-tok: nosuch.txt: No such file or directory$" err &&
	SAEPIPE_HOME=$PWD/home && export SAEPIPE_HOME &&
	test_must_fail gpt2-tok -m org/nomodel </dev/null >o.tsz 2>err &&
	grep "^gpt2-tok: org/nomodel: not a directory, nor in the model cache ($PWD/home/models/org/nomodel); fetch it with: model-fetch org/nomodel$" err &&
	test_must_fail gpt2-tok -m ./no/such/dir </dev/null >o.tsz 2>err &&
	grep "^gpt2-tok: ./no/such/dir: no such model directory$" err &&
	mkdir -p broken &&
	test_must_fail gpt2-tok -m broken </dev/null >o.tsz 2>err &&
	grep "^gpt2-tok: broken/vocab.json: No such file or directory$" err &&
	test_must_fail gpt2-tok -m "$GPT2_DIR" . >o.tsz 2>err && grep "^gpt2-tok: .: read error: Is a directory$" err &&
	cp "$GPT2_DIR/vocab.json" broken/ && printf "#version: 0.2\\nx y z\\n" >broken/merges.txt &&
	test_must_fail gpt2-tok -m broken </dev/null >o.tsz 2>err &&
	grep "^gpt2-tok: broken/merges.txt: line 2: expected two tokens separated by one space$" err &&
	for j in 2 3; do   # the model loads on its own thread while the input is read
		test_must_fail gpt2-tok -m broken -j $j -o out.tsz "$DATA"/*.txt 2>err &&
		grep "^gpt2-tok: broken/merges.txt: line 2: expected two tokens separated by one space$" err &&
		test_line_count = 1 err && test_path_is_missing out.tsz &&
		# no document at all: nothing waits on the load, its failure still counts
		test_must_fail gpt2-tok -m broken -j $j --format jsonl -o out.tsz </dev/null 2>err &&
		grep "^gpt2-tok: broken/merges.txt: line 2: expected two tokens separated by one space$" err &&
		test_path_is_missing out.tsz &&
		test_must_fail gpt2-tok -m "$GPT2_DIR" -j $j -o out.tsz "$DATA/prose.txt" nosuch.txt 2>err &&
		grep "^gpt2-tok: nosuch.txt: No such file or directory$" err && test_path_is_missing out.tsz || return 1
	done &&
	echo "{\"a\": " >broken/vocab.json &&
	test_must_fail gpt2-tok -m broken </dev/null >o.tsz 2>err && grep "^gpt2-tok: broken/vocab.json: line 2: " err
'

test_expect_success GPT2_VOCAB 'a repo id in the cache resolves; --ctx is checked against n_positions' '
	SAEPIPE_HOME=$PWD/home && export SAEPIPE_HOME &&
	mkdir -p home/models/org/small && cp "$GPT2_DIR/vocab.json" "$GPT2_DIR/merges.txt" home/models/org/small/ &&
	echo "{\"n_positions\": 64, \"model_type\": \"gpt2\"}" >home/models/org/small/config.json &&
	echo hi | gpt2-tok -m org/small --ctx 64 >ok.tsz && tsz info ok.tsz >/dev/null &&
	echo hi | test_must_fail gpt2-tok -m org/small --ctx 65 >o.tsz 2>err &&
	grep "^gpt2-tok: --ctx 65 exceeds the model.s n_positions 64" err
'

test_expect_success GPT2_VOCAB '--threads: the same stream as one thread, across batches (> 4096 documents)' '
	cat "$DATA"/*.txt "$DATA"/*.txt >all.txt &&
	for i in 1 2 3 4 5 6 7 8 9 10 11 12; do cat all.txt; done >big.txt &&
	test $(grep -c "[^[:space:]]" big.txt) -gt 4096 &&
	gpt2-tok -m "$GPT2_DIR" --split line --ctx 32 big.txt >j1.tsz &&
	gpt2-tok -m "$GPT2_DIR" --split line --ctx 32 -j 3 big.txt >j3.tsz &&
	tsz json --full j1.tsz >j1.json && tsz json --full j3.tsz >j3.json && test_cmp j1.json j3.json &&
	test $(wc -l <j1.json) -gt 1 &&
	gpt2-tok -m "$GPT2_DIR" --ctx 0 --threads 2 "$DATA"/*.txt >f2.tsz &&
	gpt2-tok -m "$GPT2_DIR" --ctx 0 "$DATA"/*.txt >f1.tsz &&
	tsz json --full f1.tsz >f1.json && tsz json --full f2.tsz >f2.json && test_cmp f1.json f2.json &&
	test_must_fail gpt2-tok -m "$GPT2_DIR" -j 0 </dev/null 2>err && grep "^gpt2-tok: --threads" err
'

test_expect_success GPT2_VOCAB,NUMPY '--threads 2 gives the bytes of one thread on real JSON Lines and text, long documents cut into parts' '
	SRC="$TEST_DIRECTORY/.." &&
	cat "$SRC"/README.md "$SRC"/man/man*/* "$SRC"/lib/*.c "$DATA"/*.txt >book.txt &&
	test $(wc -c <book.txt) -gt 300000 &&
	"$PYTHON" -c "
import glob, json, sys
src = sys.argv[1]
files = sorted(glob.glob(src + \"/man/man*/*\")) + sorted(glob.glob(src + \"/lib/*.[ch]\"))
with open(\"corpus.jsonl\", \"w\") as out:
    for i, f in enumerate(files):
        doc = {\"id\": i, \"meta\": {\"path\": f, \"n\": [1, 2.5, None, True]}, \"text\": open(f, encoding=\"utf-8\").read()}
        out.write(json.dumps(doc, ensure_ascii=i % 2 == 0) + \"\\n\")
    out.write(json.dumps({\"text\": open(\"book.txt\", encoding=\"utf-8\", errors=\"replace\").read()}) + \"\\n\")
" "$SRC" &&
	for args in "--format jsonl corpus.jsonl" "--ctx 0 --format jsonl corpus.jsonl" "book.txt" "--ctx 0 book.txt" "--rows 1000 --split blank book.txt"; do
		gpt2-tok -m "$GPT2_DIR" $args >one.tsz &&
		tsz json --full one.tsz >one.json &&
		for j in 2 3; do
			gpt2-tok -m "$GPT2_DIR" -j $j $args >j.tsz &&
			tsz json --full j.tsz >j.json &&
			test_cmp one.json j.json || return 1
		done
	done &&
	test $(grep -c "\"kind\":\"tokens\"" one.json) -gt 1
'

# A document longer than a batch (1 MB) is read and cut a batch at a time;
# the same text as one JSON line is cut in one batch: both give one
# document and the same stream, for every --threads. Lines ending in \r\n
# without spaces cut before the \r; a long run without any cut point (no
# whitespace) stays one piece.
test_expect_success GPT2_VOCAB,NUMPY 'documents longer than a batch: the same stream read whole, as a JSON line, on 1-3 threads' '
	for i in 1 2 3 4 5 6 7 8; do cat book.txt; done >long.txt &&
	seq 1 150000 | sed "s/\$/\r/" >crlf.txt &&
	{ head -c 1200000 /dev/zero | tr "\0" x && echo " tail"; } >nocut.txt &&
	"$PYTHON" -c "
import json, sys
for f in sys.argv[1:]:
    t = open(f + \".txt\", encoding=\"utf-8\", errors=\"replace\", newline=\"\").read()   # JSON holds no invalid UTF-8
    open(f + \".txt\", \"w\", encoding=\"utf-8\", newline=\"\").write(t)
    open(f + \".jsonl\", \"w\", encoding=\"utf-8\").write(json.dumps({\"text\": t}, ensure_ascii=False) + \"\\n\")
" long crlf nocut &&
	for f in long crlf nocut; do
		test $(wc -c <$f.txt) -gt 1048576 &&
		gpt2-tok -m "$GPT2_DIR" --ctx 0 $f.txt >$f.tsz &&
		tsz json --full $f.tsz >$f.want &&
		test $(wc -l <$f.want) = 1 &&
		for j in 1 2 3; do
			gpt2-tok -m "$GPT2_DIR" --ctx 0 -j $j --format jsonl $f.jsonl >got.tsz &&
			tsz json --full got.tsz >got && test_cmp $f.want got &&
			gpt2-tok -m "$GPT2_DIR" --ctx 0 -j $j $f.txt >got.tsz &&
			tsz json --full got.tsz >got && test_cmp $f.want got &&
			gpt2-tok -m "$GPT2_DIR" --ctx 64 -j $j --split blank $f.txt >got.tsz &&
			tsz json --full got.tsz >got.$j || return 1
		done &&
		test_cmp got.1 got.2 && test_cmp got.1 got.3 || return 1
	done
'

test_expect_success GPT2_VOCAB 'a long JSON line is decoded as it goes out, yet judged whole: the last of a repeated key, errors past its text' '
	{ printf "{\"text\": \"" && head -c 3000000 /dev/zero | tr "\0" y && printf "\\\\n\""; } >head.part &&
	{ cat head.part && printf ", \"text\": \"short \\\\u00e9\"}\n"; } >rep.jsonl &&
	printf "short \303\251" >short.txt &&
	gpt2-tok -m "$GPT2_DIR" --ctx 0 short.txt >want.tsz && tsz json --full want.tsz >want &&
	for j in 1 2; do
		gpt2-tok -m "$GPT2_DIR" --ctx 0 -j $j --format jsonl rep.jsonl >got.tsz &&
		tsz json --full got.tsz >got && test_cmp want got &&
		{ cat head.part && printf ", \"text\": 5}\n"; } >num.jsonl &&
		test_must_fail gpt2-tok -m "$GPT2_DIR" -j $j --format jsonl num.jsonl -o out.tsz 2>err &&
		grep "^gpt2-tok: num.jsonl: line 1: \"text\" is not a string$" err && ! test -e out.tsz &&
		{ cat head.part && printf ", \"n\": 01}\n"; } >bad.jsonl &&
		test_must_fail gpt2-tok -m "$GPT2_DIR" -j $j --format jsonl bad.jsonl -o out.tsz 2>err &&
		grep "^gpt2-tok: bad.jsonl: line 1: invalid JSON: " err && ! test -e out.tsz || return 1
	done &&
	# an escape one byte before the end of a batch (1 MB): it waits for the next
	{ printf "{\"text\": \"" && head -c 1048575 /dev/zero | tr "\0" a && printf "\\\\u00e9\"}\n"; } >edge.jsonl &&
	{ head -c 1048575 /dev/zero | tr "\0" a && printf "\303\251"; } >edge.txt &&
	gpt2-tok -m "$GPT2_DIR" --ctx 0 edge.txt >want.tsz && tsz json --full want.tsz >want &&
	for j in 1 2; do
		timeout 120 gpt2-tok -m "$GPT2_DIR" --ctx 0 -j $j --format jsonl --progress edge.jsonl >got.tsz 2>err &&
		tsz json --full got.tsz >got && test_cmp want got &&
		grep " $(wc -c <edge.jsonl)/$(wc -c <edge.jsonl) B (100%)" err || return 1
	done
'

test_expect_success GPT2_VOCAB 'empty input: one empty document, one window of BOS and separator' '
	gpt2-tok -m "$GPT2_DIR" </dev/null >e.tsz && idline e.tsz >got &&
	echo "50256 50256 " >want && test_cmp want got
'

command -v script >/dev/null && test_set_prereq SCRIPT
test_expect_success GPT2_VOCAB,SCRIPT 'a terminal on stdout is refused unless -f' '
	echo hi >hi.txt &&
	script -qec "gpt2-tok -m \"$GPT2_DIR\" hi.txt" /dev/null >tty.out 2>&1 </dev/null;
	grep "gpt2-tok: stdout is a terminal: refusing to write a binary stream (redirect it, or -f)" tty.out &&
	script -qec "gpt2-tok -f -m \"$GPT2_DIR\" hi.txt | wc -c" /dev/null >tty.out 2>&1 </dev/null &&
	! grep "refusing" tty.out
'

test_expect_success GPT2_VOCAB 'gzip and zstd inputs (files, concatenated members, stdin) read as their text' '
	cat "$DATA"/*.txt >plain.txt &&
	gzip -c plain.txt >c.txt.gz && zstd -q -c plain.txt >c.txt.zst &&
	head -c 1000 plain.txt | gzip -c >two.gz && tail -c +1001 plain.txt | gzip -c >>two.gz &&
	gpt2-tok -m "$GPT2_DIR" --ctx 64 plain.txt >p.tsz && tsz json --full p.tsz >want &&
	for f in c.txt.gz c.txt.zst two.gz; do
		gpt2-tok -m "$GPT2_DIR" --ctx 64 $f >c.tsz && tsz json --full c.tsz >got &&
		test_cmp want got || return 1
	done &&
	gpt2-tok -m "$GPT2_DIR" --ctx 64 <c.txt.zst >c.tsz && tsz json --full c.tsz >got && test_cmp want got &&
	printf "{\"text\": \"a b\"}\n" | gzip -c >j.jsonl.gz &&
	gpt2-tok -m "$GPT2_DIR" --format jsonl j.jsonl.gz >j.tsz && tsz info j.tsz >/dev/null
'

test_expect_success GPT2_VOCAB 'a cut-short or corrupt compressed input is an error naming it, and writes nothing' '
	head -c 100 c.txt.gz >cut.gz &&
	test_must_fail gpt2-tok -m "$GPT2_DIR" -o out.tsz cut.gz 2>err &&
	grep "^gpt2-tok: cut.gz: gzip data cut short$" err && test_path_is_missing out.tsz &&
	head -c 100 c.txt.zst >cut.zst &&
	test_must_fail gpt2-tok -m "$GPT2_DIR" cut.zst >out 2>err &&
	grep "^gpt2-tok: cut.zst: zstd data cut short$" err &&
	printf "\037\213garbage-garbage-garbage" >bad.gz &&
	test_must_fail gpt2-tok -m "$GPT2_DIR" bad.gz >out 2>err &&
	grep "^gpt2-tok: bad.gz: corrupt gzip data" err
'

# Lines of a regular file are read from it mapped: a file cut short while
# it is read makes the pages past its new end raise SIGBUS, which must end
# the run with a one-line error and no output, not a crash. The cut comes
# once the first record is out (the file mapped and being read), the run
# stopped meanwhile (it reads at most 8 MB ahead of a 33 MB file).
test_expect_success GPT2_VOCAB 'a file cut short while it is read (mapped): an error naming it, nothing written' '
	awk "BEGIN { srand(3); for (i = 0; i < 400000; i++) { for (j = 0; j < 12; j++) printf \"w%d \", int(rand() * 90000); print \"\" } }" >long.txt &&
	gpt2-tok -m "$GPT2_DIR" --split line -j 1 -o cut.tsz long.txt 2>err &
	pid=$! &&
	for i in $(seq 600); do
		kill -0 $pid 2>/dev/null || break
		for t in cut.tsz.tmp.*; do test -s "$t" && break 2; done
		sleep 0.05
	done &&
	kill -STOP $pid && truncate -s 4096 long.txt && kill -CONT $pid &&
	{ wait $pid; echo $? >rc; } &&
	test "$(cat rc)" = 1 &&
	grep "^gpt2-tok: long.txt: cut short while being read (the file shrank)$" err &&
	test_path_is_missing cut.tsz && ! ls cut.tsz.tmp.* 2>/dev/null
'

# Both threads on one core under SCHED_FIFO (no preemption: each runs until
# it waits): the worker takes the only job and finishes it while the main
# thread sets up its encoder. The main thread slept on that job for ever
# until it looked at the job again after setting up.
chrt -f 1 taskset -c 0 true 2>/dev/null && command -v timeout >/dev/null && test_set_prereq FIFO
test_expect_success GPT2_VOCAB,FIFO '-j 2 on one core without preemption: the main thread sees a job done while it set up' '
	echo "hello world" >tiny.txt &&
	gpt2-tok -m "$GPT2_DIR" tiny.txt >want.tsz && tsz json --full want.tsz >want &&
	for i in 1 2 3; do
		chrt -f 1 taskset -c 0 timeout 60 gpt2-tok -m "$GPT2_DIR" -j 2 tiny.txt >got.tsz &&
		tsz json --full got.tsz >got && test_cmp want got || return 1
	done
'

test_done
