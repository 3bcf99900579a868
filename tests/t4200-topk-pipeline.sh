#!/bin/sh
test_description='sae-encode | topk-ctx on real context windows (gpt2-tok, gpt2-fwd, mlp-tap on the tiny model): brute force, provenance, merge, explain-gpt4 reads it'
. "$(dirname "$0")/test-lib.sh"

REF="$TEST_DIRECTORY/helpers/topk_ref.py"
HOOK=blocks.1.mlp.hook_post

test_expect_success TINY_MODEL,NUMPY 'setup: three documents, windows of 24, normalised context, an SAE' '
	head -c 3000 /usr/share/common-licenses/GPL-3 >a.txt &&
	head -c 2500 /usr/share/common-licenses/Apache-2.0 >b.txt &&
	head -c 2000 /usr/share/common-licenses/Artistic >c.txt &&
	gpt2-tok -m "$TINY_MODEL_DIR" --ctx 24 --drop-tail a.txt b.txt c.txt >tok.tsz &&
	gpt2-fwd -m "$TINY_MODEL_DIR" --hook $HOOK tok.tsz | mlp-tap --keep-context --normalize >ctx.tsz &&
	mkdir sae && "$PYTHON" "$REF" mk sae --d 1024 --f 48 --b 1 --t 2 --sae-scale 1 &&
	tsz from-npy --rows 1000000 --meta kind=sae --meta arch=relu --meta d=1024 --meta f=48 --meta hook=\"$HOOK\" \
		W_enc=sae/W_enc.npy b_enc=sae/b_enc.npy W_dec=sae/W_dec.npy b_dec=sae/b_dec.npy >sae/sae.tsz &&
	tsz to-npy --name acts sae/acts.npy ctx.tsz
'

test_expect_success TINY_MODEL,NUMPY 'sae-encode undoes mlp-tap'"'"'s norm_scale: equals numpy to 1e-5' '
	tsz json ctx.tsz | head -1 >m &&
	s=$("$PYTHON" -c "import json; print(repr(json.load(open(\"m\"))[\"norm_scale\"]))") &&
	sae-encode --sae sae/sae.tsz ctx.tsz >feat.tsz &&
	tsz json --full feat.tsz >feat.json &&
	"$PYTHON" "$REF" encode sae --in-scale "$s" <feat.json >out && cat out && grep "^all ok" out
'

test_expect_success TINY_MODEL,NUMPY 'topk-ctx equals brute force; windows are the documents'"'"' tokens at top_src' '
	topk-ctx -m "$TINY_MODEL_DIR" -k 5 -w 16 --random 4 --bands 2 --per-band 2 --seed 1 feat.tsz >topk.tsz &&
	tsz json --full topk.tsz >topk.json &&
	"$PYTHON" "$REF" topk --k 5 --w 16 --r 4 --nb 2 --npb 2 --seed 1 feat.json topk.json >out && cat out &&
	grep "^all ok" out &&
	tsz json --full tok.tsz >tok.json &&
	"$PYTHON" -c "
import json
doc = {}
for line in open(\"tok.json\"):
    r = json.loads(line)[\"tensors\"]
    for row, d, o in zip(r[\"tokens\"][\"data\"], r[\"doc\"][\"data\"], r[\"offset\"][\"data\"]):
        for i, t in enumerate(row[1:]):
            doc.setdefault(d, {})[o + i] = t
n = 0
for line in open(\"topk.json\"):
    r = json.loads(line)
    if r[\"kind\"] != \"feature\": continue
    for p in (\"top\", \"rand\", \"band\"):
        t = r[\"tensors\"]
        for toks, src in zip(t[p + \"_tokens\"][\"data\"], t[p + \"_src\"][\"data\"]):
            for i, tk in enumerate(toks):
                assert doc[src[0]][src[1] + i] == tk, (r[\"feature\"], p, src, i)
                n += 1
assert n > 1000, n
print(\"checked\", n, \"tokens\")
"
'

test_expect_success TINY_MODEL,NUMPY 'shards of the context stream merge to the single run' '
	tsz split -n 3 sh ctx.tsz &&
	for i in 00 01 02; do
		sae-encode --sae sae/sae.tsz sh.$i.tsz | topk-ctx -m "$TINY_MODEL_DIR" -k 5 -w 16 --random 4 \
			--bands 2 --per-band 2 --seed 1 -o tk.$i.tsz || return 1
	done &&
	topk-ctx --merge tk.00.tsz tk.01.tsz tk.02.tsz | tsz json --full >merged.json && cmp topk.json merged.json
'

test_expect_success TINY_MODEL,NUMPY 'short tail windows (records of other T) and windows longer than rows' '
	gpt2-tok -m "$TINY_MODEL_DIR" --ctx 24 a.txt b.txt c.txt >tail.tsz &&
	tsz json tail.tsz | grep -c "\"shape\":\[1,[0-9]*\]" >n && test $(cat n) -ge 1 &&
	gpt2-fwd -m "$TINY_MODEL_DIR" --hook $HOOK tail.tsz | mlp-tap --keep-context |
		sae-encode --sae sae/sae.tsz >tf.tsz &&
	topk-ctx -k 4 -w 30 --random 3 --bands 2 --per-band 1 tf.tsz >tt.tsz &&
	tsz json --full tf.tsz >tf.json && tsz json --full tt.tsz >tt.json &&
	"$PYTHON" "$REF" topk --k 4 --w 30 --r 3 --nb 2 --npb 1 --seed 0 tf.json tt.json >out && cat out &&
	grep "^all ok" out
'

test_expect_success TINY_MODEL 'gpt2-fwd output directly: the SAE'"'"'s hook tensor, BOS kept, as mlp-tap --no-drop-bos' '
	gpt2-fwd -m "$TINY_MODEL_DIR" --hook $HOOK tok.tsz >fwd.tsz &&
	sae-encode --sae sae/sae.tsz fwd.tsz >f1.tsz &&
	mlp-tap --keep-context --no-drop-bos fwd.tsz | sae-encode --sae sae/sae.tsz >f2.tsz &&
	for t in indptr indices values tokens doc offset; do
		tsz to-npy --name $t 1.npy f1.tsz && tsz to-npy --name $t 2.npy f2.tsz && cmp 1.npy 2.npy || return 1
	done
'

test_expect_success TINY_MODEL,NUMPY 'explain-gpt4 (offline baseline) reads the records' '
	explain-gpt4 --backend baseline --features 0-5 --cache "" topk.tsz >expl.tsz &&
	tsz json expl.tsz >j && test_line_count = 6 j && grep "\"kind\":\"explanation\"" j
'

test_done
