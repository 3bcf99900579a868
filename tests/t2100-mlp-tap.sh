#!/bin/sh
test_description='mlp-tap: hook selection, BOS drop, shuffling, context, normalisation, dtype'
. "$(dirname "$0")/test-lib.sh"

REF="$TEST_DIRECTORY/helpers/gpt2_ref.py"

# py 'code': run numpy code; `ld(name)` loads name.npy
py () {
	"$PYTHON" -c "import numpy as np, sys
ld = lambda n: np.load(n + '.npy')
$1"
}

test_expect_success NUMPY 'setup: activations from tsz from-npy (no hooks in the header) and from gpt2-fwd' '
	py "
rng = np.random.default_rng(7)
np.save(\"h2.npy\", rng.standard_normal((10, 6, 8)).astype(np.float32) * 3)
np.save(\"h0.npy\", rng.standard_normal((10, 6, 8)).astype(np.float32))
np.save(\"r.npy\", rng.standard_normal((10, 6, 4)).astype(np.float32))
np.save(\"tok.npy\", rng.integers(0, 50, (10, 6)).astype(np.int32))
np.save(\"doc.npy\", np.arange(10, dtype=np.int64))
np.save(\"off.npy\", np.arange(10, dtype=np.int64) * 5)" &&
	tsz from-npy --rows 3 blocks.0.mlp.hook_post=h0.npy blocks.2.mlp.hook_post=h2.npy \
		blocks.2.hook_resid_post=r.npy tokens=tok.npy doc=doc.npy offset=off.npy >acts.tsz &&
	"$PYTHON" "$REF" make m --layers 2 --embd 12 --heads 3 --vocab 50 --positions 6 &&
	tsz from-npy --rows 4 tokens=tok.npy >tok.tsz &&
	gpt2-fwd -m m --hook blocks.0.mlp.hook_post --hook blocks.1.mlp.hook_post --hook blocks.1.hook_resid_pre tok.tsz >fwd.tsz
'

test_expect_success NUMPY 'default hook: the deepest mlp.hook_post, from tensor names or the header; BOS dropped' '
	mlp-tap acts.tsz >rows.tsz && tsz to-npy --name acts rows.npy rows.tsz &&
	py "a = ld(\"rows\"); b = ld(\"h2\")[:, 1:].reshape(-1, 8); sys.exit(0 if a.shape == b.shape and (a == b).all() else 1)" &&
	tsz json rows.tsz >json && grep "\"hook\":\"blocks.2.mlp.hook_post\",\"d\":8,\"norm_scale\":1" json &&
	mlp-tap fwd.tsz >frows.tsz && tsz json --headers frows.tsz | head -1 >h && grep "\"hook\":\"blocks.1.mlp.hook_post\"" h &&
	tsz to-npy --name blocks.1.mlp.hook_post f.npy fwd.tsz && tsz to-npy --name acts fr.npy frows.tsz &&
	py "a = ld(\"fr\"); b = ld(\"f\")[:, 1:].reshape(-1, 48); sys.exit(0 if (a == b).all() else 1)"
'

test_expect_success NUMPY '--hook picks another tensor; --no-drop-bos keeps position 0; --rows sets record size' '
	mlp-tap --hook blocks.2.hook_resid_post --no-drop-bos --rows 7 acts.tsz >rows.tsz &&
	tsz to-npy --name acts rows.npy rows.tsz &&
	py "a = ld(\"rows\"); b = ld(\"r\").reshape(-1, 4); sys.exit(0 if a.shape == (60, 4) and (a == b).all() else 1)" &&
	tsz json rows.tsz >json && test_line_count = 9 json && grep "\"shape\":\[4,4\]" json
'

test_expect_success NUMPY '--shuffle-buffer is a permutation: no row lost or duplicated; seeded' '
	mlp-tap acts.tsz >plain.tsz && tsz to-npy --name acts plain.npy plain.tsz &&
	for n in 1 7 50 1000; do
		mlp-tap --shuffle-buffer $n --seed 3 acts.tsz >s$n.tsz && tsz to-npy --name acts s$n.npy s$n.tsz || return 1
	done &&
	mlp-tap --shuffle-buffer 7 --seed 3 acts.tsz >again.tsz && tsz to-npy --name acts again.npy again.tsz &&
	mlp-tap --shuffle-buffer 7 --seed 4 acts.tsz >other.tsz && tsz to-npy --name acts other.npy other.tsz &&
	py "
p = ld(\"plain\")
key = lambda a: a[np.lexsort(a.T[::-1])]
assert len(np.unique(p, axis=0)) == len(p) == 50
for n in (1, 7, 50, 1000):
    s = ld(\"s%d\" % n)
    assert s.shape == p.shape, n
    assert (key(s) == key(p)).all(), n          # same multiset of rows
    assert n == 1 or not (s == p).all(), n      # and moved
assert (ld(\"again\") == ld(\"s7\")).all()
assert not (ld(\"other\") == ld(\"s7\")).all()
"
'

test_expect_success NUMPY '--keep-context: (B,T-1,D) with tokens, doc, offset and pos0' '
	mlp-tap --keep-context acts.tsz >ctx.tsz &&
	tsz json ctx.tsz >json && test_line_count = 4 json && grep "\"pos0\":1" json &&
	grep "\"acts\":{\"dtype\":\"f32\",\"shape\":\[3,5,8\]}" json &&
	for n in acts tokens doc offset; do tsz to-npy --name $n c_$n.npy ctx.tsz || return 1; done &&
	py "
assert (ld(\"c_acts\") == ld(\"h2\")[:, 1:]).all()
assert (ld(\"c_tokens\") == ld(\"tok\")).all() and (ld(\"c_doc\") == ld(\"doc\")).all() and (ld(\"c_offset\") == ld(\"off\")).all()" &&
	mlp-tap --keep-context --no-drop-bos acts.tsz >ctx0.tsz && tsz json ctx0.tsz >json && grep "\"pos0\":0" json &&
	grep "\"shape\":\[3,6,8\]" json
'

test_expect_success NUMPY '--normalize: mean squared norm D over the first --norm-rows rows, scale recorded' '
	mlp-tap --normalize --norm-rows 20 acts.tsz >n.tsz && tsz to-npy --name acts n.npy n.tsz &&
	tsz json n.tsz | head -1 | sed "s/.*\"norm_scale\":\([0-9.e-]*\).*/\1/" >scale &&
	tsz json --headers n.tsz | head -1 >h && grep "\"norm_scale\":$(cat scale)" h &&
	py "
x = ld(\"h2\")[:, 1:].reshape(-1, 8).astype(np.float64)
s = np.sqrt(8 / (x[:20] ** 2).sum(1).mean())
got = float(open(\"scale\").read())
n = ld(\"n\")
assert abs(got - s) / s < 1e-6, (got, s)
assert np.abs(n - x * s).max() < 1e-5 * np.abs(x * s).max()
assert abs((n[:20].astype(np.float64) ** 2).sum(1).mean() - 8) < 1e-4 * 8" &&
	mlp-tap --normalize --norm-rows 100000 --keep-context acts.tsz >nc.tsz && tsz to-npy --name acts nc.npy nc.tsz &&
	py "
x = ld(\"h2\")[:, 1:].astype(np.float64)
n = ld(\"nc\").astype(np.float64)
assert abs((n.reshape(-1, 8) ** 2).sum(1).mean() - 8) < 1e-4 * 8" &&
	mlp-tap --norm-scale 0.5 acts.tsz >h.tsz && tsz to-npy --name acts half.npy h.tsz &&
	tsz json h.tsz | head -1 | grep "\"norm_scale\":0.5" &&
	py "assert (ld(\"half\") == ld(\"h2\")[:, 1:].reshape(-1, 8) * 0.5).all()"
'

test_expect_success NUMPY '--dtype bf16 and f16' '
	mlp-tap --dtype bf16 acts.tsz >b.tsz && tsz info b.tsz | grep "acts *bf16 *(\*,8)" &&
	mlp-tap --dtype f16 --keep-context acts.tsz >f.tsz && tsz info f.tsz | grep "acts *f16 *(\*,5,8)" &&
	tsz to-npy --name acts b.npy b.tsz && tsz to-npy --name acts f.npy f.tsz &&
	py "
x = ld(\"h2\")[:, 1:]
b, f = ld(\"b\"), ld(\"f\")
assert np.abs(b - x.reshape(-1, 8)).max() <= 2 ** -8 * np.abs(x).max() and not (b == x.reshape(-1, 8)).all()
assert np.abs(f - x).max() <= 2 ** -11 * np.abs(x).max()"
'

test_expect_success NUMPY 'bad inputs and flags are refused with one line' '
	test_must_fail mlp-tap --hook blocks.9.mlp.hook_post acts.tsz >out 2>err &&
	grep "^mlp-tap: acts.tsz: record 1: no tensor .blocks.9.mlp.hook_post.$" err &&
	test_must_fail mlp-tap --hook tokens acts.tsz >out 2>err &&
	grep "^mlp-tap: acts.tsz: record 1: tensor .tokens. is (3,6) i32, want float (B,T,D) for kind .hook_acts.$" err &&
	tsz from-npy blocks.2.hook_resid_post=r.npy >nompl.tsz &&
	test_must_fail mlp-tap nompl.tsz >out 2>err &&
	grep "^mlp-tap: nompl.tsz: no --hook given and the stream has no blocks.L.mlp.hook_post$" err &&
	py "np.save(\"w.npy\", np.zeros((2, 6, 9), np.float32))" &&
	tsz from-npy blocks.2.mlp.hook_post=w.npy >w.tsz && tsz cat acts.tsz w.tsz >mixed.tsz &&
	test_must_fail mlp-tap mixed.tsz >out 2>err &&
	grep "^mlp-tap: mixed.tsz: record 5: blocks.2.mlp.hook_post is (2,6,9) f32 but earlier records have D = 8$" err &&
	head -c $(($(wc -c <acts.tsz) - 30)) acts.tsz >cut.tsz &&
	test_must_fail mlp-tap cut.tsz >out 2>err && grep "^mlp-tap: cut.tsz: " err &&
	test_code_2 () { "$@"; test $? = 2; } &&
	test_code_2 mlp-tap --keep-context --shuffle-buffer 4 acts.tsz 2>err &&
	grep "^mlp-tap: --shuffle-buffer and --keep-context do not go together$" err &&
	test_code_2 mlp-tap --dtype i8 acts.tsz 2>err && grep "^mlp-tap: --dtype: expected one of f32, bf16, f16, got .i8.$" err &&
	test_code_2 mlp-tap --shuffle-buffer -1 acts.tsz 2>err && grep "^mlp-tap: --shuffle-buffer: expected a whole number" err &&
	test_code_2 mlp-tap --normalize --norm-scale 2 acts.tsz 2>err && grep "^mlp-tap: --normalize computes a scale" err
'

test_expect_success NUMPY '--drop-bos is the default; -o writes atomically and a failed run leaves no file; --progress on stderr' '
	mlp-tap acts.tsz >a.tsz && mlp-tap --drop-bos acts.tsz >b.tsz &&
	tsz to-npy --name acts a.npy a.tsz && tsz to-npy --name acts b.npy b.tsz && cmp a.npy b.npy &&
	mlp-tap --progress -o o.tsz acts.tsz >stdout 2>progress &&
	! test -s stdout && tsz to-npy --name acts o.npy o.tsz && cmp a.npy o.npy &&
	tr "\\r" "\\n" <progress | grep "^mlp-tap: tap [0-9]* rows" &&
	head -c $(($(wc -c <acts.tsz) - 30)) acts.tsz >cut.tsz &&
	test_must_fail mlp-tap -o bad.tsz cut.tsz 2>err && grep "^mlp-tap: cut.tsz: " err &&
	ls >files && ! grep "bad.tsz" files
'

test_expect_success NUMPY 'kinds: rows are acts, contexts ctx_acts; other kinds are refused, the old name acts read' '
	mlp-tap acts.tsz >rows.tsz && tsz json rows.tsz | grep -c "^{\"kind\":\"acts\"," >n && test $(cat n) -ge 1 &&
	mlp-tap --keep-context acts.tsz >ctx.tsz && tsz json ctx.tsz | grep -c "^{\"kind\":\"ctx_acts\"," >n &&
	test $(cat n) -ge 1 &&
	test_must_fail mlp-tap rows.tsz >out 2>err &&
	grep "^mlp-tap: rows.tsz: record 1: kind .acts. is not .hook_acts. (gpt2-fwd output)$" err &&
	test_must_fail mlp-tap ctx.tsz >out 2>err &&
	grep "^mlp-tap: ctx.tsz: record 1: kind .ctx_acts. is not .hook_acts. (gpt2-fwd output)$" err &&
	test_must_fail mlp-tap tok.tsz >out 2>err &&
	grep "^mlp-tap: tok.tsz: record 1: kind .. (read as .tokens.: no activations in it) is not .hook_acts. (gpt2-fwd output)$" err &&
	tsz from-npy --rows 3 --meta kind=acts blocks.2.mlp.hook_post=h2.npy tokens=tok.npy >old.tsz &&
	mlp-tap old.tsz >o1.tsz && mlp-tap --hook blocks.2.mlp.hook_post acts.tsz >o2.tsz &&
	tsz to-npy --name acts o1.npy o1.tsz && tsz to-npy --name acts o2.npy o2.tsz && cmp o1.npy o2.npy
'

command -v script >/dev/null && test_set_prereq SCRIPT
test_expect_success NUMPY,SCRIPT 'a terminal on stdout is refused unless -f' '
	script -qec "mlp-tap acts.tsz" /dev/null >tty.out 2>&1 </dev/null;
	grep "mlp-tap: stdout is a terminal: refusing to write a binary stream (redirect it, or -f)" tty.out &&
	script -qec "mlp-tap -f --rows 1 --hook blocks.2.hook_resid_post acts.tsz | wc -c" /dev/null >tty.out 2>&1 </dev/null &&
	! grep "refusing" tty.out
'

test_expect_success NUMPY 'an empty stream gives an empty, well-formed stream' '
	tsz head -n 0 acts.tsz >empty.tsz && mlp-tap --hook blocks.2.mlp.hook_post --normalize empty.tsz >out.tsz &&
	tsz info out.tsz | grep "^records: 0"
'

test_done
