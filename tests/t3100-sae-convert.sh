#!/bin/sh
test_description='sae-convert: SAELens export and import, round trips, directories written by numpy, refusals'
. "$(dirname "$0")/test-lib.sh"

py () {
	"$PYTHON" -c "import numpy as np, sys, json, struct
ld = lambda n: np.load(n + '.npy')
def st_read(path):
    b = open(path, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        assert v['dtype'] == 'F32', v
        s, e = v['data_offsets']; out[k] = np.frombuffer(b[8 + n + s:8 + n + e], '<f4').reshape(v['shape'])
    return out
def st_write(path, tensors):
    # tensors: name -> (dtype name, raw bytes, shape)
    h, off, data = {}, 0, b''
    for k, (dt, raw, shape) in tensors.items():
        h[k] = {'dtype': dt, 'shape': list(shape), 'data_offsets': [off, off + len(raw)]}; off += len(raw); data += raw
    hb = json.dumps(h).encode(); hb += b' ' * (-len(hb) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)
def bf16(a):
    u = np.ascontiguousarray(a, np.float32).view(np.uint32)
    return ((u + 0x7fff + ((u >> 16) & 1)) >> 16).astype('<u2')
$1"
}

# sae_tensors SAE.tsz PREFIX: every tensor of an SAE file to PREFIX_NAME.npy
sae_tensors () {
	for n in W_enc b_enc W_dec b_dec; do tsz to-npy --name $n $2_$n.npy $1 || return 1; done
}

test_expect_success NUMPY 'setup: SAEs of each arch from sae-fit, rows scaled by norm_scale 0.37' '
	py "
rng = np.random.default_rng(3)
np.save(\"x.npy\", rng.standard_normal((3000, 16)).astype(np.float32))" &&
	tsz from-npy --meta kind=acts --meta norm_scale=0.37 --meta hook=blocks.2.mlp.hook_post acts=x.npy >x.tsz &&
	sae-fit --arch topk --k 4 --dict 48 --batch 256 --warmup 2 --lr 1e-2 x.tsz -o topk.tsz &&
	sae-fit --arch relu --l1 0.1 --dict 48 --batch 256 --warmup 2 --lr 1e-2 x.tsz -o relu.tsz &&
	sae-fit --arch batchtopk --k 4 --dict 48 --batch 256 --warmup 2 --lr 1e-2 x.tsz -o btk.tsz
'

for arch in topk relu btk; do
	test_expect_success NUMPY "$arch: to-saelens and back gives the same SAE (norm_scale unfolded)" '
		sae-convert to-saelens '$arch'.tsz -o sl_'$arch' &&
		test -f sl_'$arch'/cfg.json && test -f sl_'$arch'/sae_weights.safetensors &&
		sae-convert from-saelens sl_'$arch' >back_'$arch'.tsz &&
		sae_tensors '$arch'.tsz a && sae_tensors back_'$arch'.tsz b &&
		py "
for n in (\"W_enc\", \"b_enc\", \"W_dec\", \"b_dec\"):
    a, b = ld(\"a_\" + n), ld(\"b_\" + n)
    d = np.abs(a - b).max(); print(\"#\", n, \"max diff\", d)
    assert a.shape == b.shape and d <= 1e-6 * max(1, np.abs(a).max()), n
" &&
		tsz json '$arch'.tsz | sed "s/,\"tensors.*//; s/,\"tokens_seen.*//" >m1 &&
		tsz json back_'$arch'.tsz | sed "s/,\"tensors.*//; s/,\"imported_from.*//" >m2 &&
		test_cmp m1 m2
	'
done

test_expect_success NUMPY 'SAE files in parts (SAEPIPE_PART_BYTES=300): from-saelens writes them, to-saelens reads them' '
	SAEPIPE_PART_BYTES=300 sae-convert from-saelens sl_btk >pt.tsz &&
	tsz json pt.tsz >pjson && grep -c "\"kind\":\"sae_part\"" pjson >n && echo 28 >want && test_cmp want n &&
	sae_tensors pt.tsz p && sae_tensors back_btk.tsz b &&
	for n in W_enc b_enc W_dec b_dec; do cmp p_$n.npy b_$n.npy || return 1; done &&
	sae-convert to-saelens pt.tsz -o sl_pt && sae-convert to-saelens back_btk.tsz -o sl_back &&
	cmp sl_back/sae_weights.safetensors sl_pt/sae_weights.safetensors
'

test_expect_success NUMPY 'the exported SAELens SAE maps raw activations as ours does (numpy, SAELens formulas)' '
	sae_tensors topk.tsz o && tsz to-npy --name threshold o_threshold.npy btk.tsz &&
	py "
cfg = json.load(open(\"sl_topk/cfg.json\")); w = st_read(\"sl_topk/sae_weights.safetensors\")
assert cfg[\"architecture\"] == \"standard\" and cfg[\"activation_fn_str\"] == \"topk\" and cfg[\"activation_fn_kwargs\"] == {\"k\": 4}
assert cfg[\"d_in\"] == 16 and cfg[\"d_sae\"] == 48 and cfg[\"hook_name\"] == \"blocks.2.mlp.hook_post\" and cfg[\"hook_layer\"] == 2
assert cfg[\"apply_b_dec_to_input\"] is True and cfg[\"normalize_activations\"] == \"none\"
x = ld(\"x\")[:200] / 0.37          # raw activations: the stream held raw * 0.37
def topk(pre, k):
    f = np.zeros_like(pre); i = np.argsort(-pre, 1)[:, :k]
    np.put_along_axis(f, i, np.maximum(np.take_along_axis(pre, i, 1), 0), 1); return f
# SAELens on raw x
xs = topk((x - w[\"b_dec\"]) @ w[\"W_enc\"] + w[\"b_enc\"], 4) @ w[\"W_dec\"] + w[\"b_dec\"]
# ours (sae.h): scale in, unscale out
s = 0.37
xo = (topk((s * x - ld(\"o_b_dec\")) @ ld(\"o_W_enc\") + ld(\"o_b_enc\"), 4) @ ld(\"o_W_dec\") + ld(\"o_b_dec\")) / s
d = np.abs(xs - xo).max(); print(\"# max diff\", d); assert d < 1e-4 * np.abs(xo).max()
cb = json.load(open(\"sl_btk/cfg.json\")); wb = st_read(\"sl_btk/sae_weights.safetensors\")
assert cb[\"architecture\"] == \"jumprelu\" and \"threshold\" in wb and (wb[\"threshold\"] == ld(\"o_threshold\")).all()
cr = json.load(open(\"sl_relu/cfg.json\")); assert cr[\"architecture\"] == \"standard\" and cr[\"activation_fn_str\"] == \"relu\"
"
'

test_expect_success NUMPY 'from-saelens: directories written by numpy (F16 standard without b_dec on input, BF16 jumprelu, SAELens 6 topk)' '
	py "
import os
rng = np.random.default_rng(5); D, F = 8, 20
We, be, Wd, bd = (rng.standard_normal(s).astype(np.float32) for s in ((D, F), (F,), (F, D), (D,)))
th = np.abs(rng.standard_normal(F)).astype(np.float32)
for n, a in ((\"We\", We), (\"be\", be), (\"Wd\", Wd), (\"bd\", bd), (\"th\", th)): np.save(n + \".npy\", a)
def mk(d, cfg, tensors):
    os.mkdir(d); json.dump(cfg, open(d + \"/cfg.json\", \"w\")); st_write(d + \"/sae_weights.safetensors\", tensors)
h = lambda a: (\"F16\", a.astype(\"<f2\").tobytes(), a.shape)
f = lambda a: (\"F32\", a.astype(\"<f4\").tobytes(), a.shape)
b = lambda a: (\"BF16\", bf16(a).tobytes(), a.shape)
mk(\"std\", {\"architecture\": \"standard\", \"d_in\": D, \"d_sae\": F, \"activation_fn_str\": \"relu\", \"hook_name\": \"blocks.0.hook_resid_pre\",
           \"model_name\": \"gpt2-small\", \"apply_b_dec_to_input\": False, \"normalize_activations\": \"none\"},
   {\"W_enc\": h(We), \"b_enc\": h(be), \"W_dec\": h(Wd), \"b_dec\": h(bd)})
mk(\"jump\", {\"architecture\": \"jumprelu\", \"d_in\": D, \"d_sae\": F, \"hook_name\": \"blocks.5.mlp.hook_post\", \"model_name\": \"gemma\"},
   {\"W_enc\": b(We), \"b_enc\": b(be), \"W_dec\": b(Wd), \"b_dec\": b(bd), \"threshold\": b(th)})
mk(\"tk6\", {\"architecture\": \"topk\", \"k\": 5, \"d_in\": D, \"d_sae\": F, \"hook_name\": \"h\", \"model_name\": \"m\"},
   {\"b_dec\": f(bd), \"W_dec\": f(Wd), \"W_enc\": f(We), \"b_enc\": f(be)})
" &&
	sae-convert from-saelens std >std.tsz && sae-convert from-saelens jump -o jump.tsz && sae-convert from-saelens tk6 >tk6.tsz &&
	tsz json std.tsz | grep "\"arch\":\"relu\",\"k\":0,.*\"hook\":\"blocks.0.hook_resid_pre\",\"model\":\"gpt2-small\",\"norm_scale\":1.0" &&
	tsz json jump.tsz | grep "\"arch\":\"jumprelu\",\"k\":0,.*\"threshold\":{\"dtype\":\"f32\",\"shape\":\[20\]}" &&
	tsz json tk6.tsz | grep "\"arch\":\"topk\",\"k\":5," &&
	sae_tensors std.tsz s && sae_tensors jump.tsz j && sae_tensors tk6.tsz t && tsz to-npy --name threshold j_th.npy jump.tsz &&
	py "
We, be, Wd, bd, th = ld(\"We\"), ld(\"be\"), ld(\"Wd\"), ld(\"bd\"), ld(\"th\")
h = lambda a: a.astype(np.float16).astype(np.float32)
bf = lambda a: (bf16(a).astype(np.uint32) << 16).view(np.float32)
assert (ld(\"s_W_enc\") == h(We)).all() and (ld(\"s_W_dec\") == h(Wd)).all() and (ld(\"s_b_dec\") == h(bd)).all()
# apply_b_dec_to_input false: b_enc absorbs b_dec W_enc so that (x - b_dec) W_enc + b_enc = x W_enc + b_enc_saelens
want = h(be) + h(bd) @ h(We); d = np.abs(ld(\"s_b_enc\") - want).max(); print(\"# b_enc max diff\", d); assert d < 1e-5
for n, a in ((\"W_enc\", We), (\"b_enc\", be), (\"W_dec\", Wd), (\"b_dec\", bd)):
    assert (ld(\"j_\" + n) == bf(a)).all(), n
    assert (ld(\"t_\" + n) == a).all(), n
assert (ld(\"j_th\") == bf(th)).all()
"
'

test_expect_success NUMPY 'jumprelu, gated, matryoshka (norm_scale 0.37): SAELens names out, the same SAE back' '
	sae-fit --arch jumprelu --dict 48 --batch 256 --warmup 2 --lr 1e-2 x.tsz -o jr.tsz &&
	sae-fit --arch gated --dict 48 --batch 256 --warmup 2 --lr 1e-2 x.tsz -o gt.tsz &&
	sae-fit --arch matryoshka --k 4 --groups 12,24 --dict 48 --batch 256 --warmup 2 --lr 1e-2 x.tsz -o mt.tsz &&
	for a in jr gt mt; do
		sae-convert to-saelens $a.tsz -o sl_$a && sae-convert from-saelens sl_$a >back_$a.tsz &&
		for n in W_enc b_enc b_gate W_dec b_dec threshold r_mag b_mag; do
			rm -f a_$n.npy b_$n.npy && { tsz to-npy --name $n a_$n.npy $a.tsz 2>/dev/null || continue; } &&
			tsz to-npy --name $n b_$n.npy back_$a.tsz || return 1
		done &&
		py "
import glob
cfg = json.load(open(\"sl_$a/cfg.json\")); w = st_read(\"sl_$a/sae_weights.safetensors\")
want = {\"jr\": (\"jumprelu\", [\"W_enc\", \"b_enc\", \"W_dec\", \"b_dec\", \"threshold\"]),
        \"gt\": (\"gated\", [\"W_enc\", \"b_gate\", \"W_dec\", \"b_dec\", \"r_mag\", \"b_mag\"]),
        \"mt\": (\"jumprelu\", [\"W_enc\", \"b_enc\", \"W_dec\", \"b_dec\", \"threshold\"])}[\"$a\"]
assert cfg[\"architecture\"] == want[0] and list(w) == want[1], (cfg[\"architecture\"], list(w))
for f in sorted(glob.glob(\"a_*.npy\")):
    n = f[2:-4]; a, b = np.load(f), ld(\"b_\" + n); d = np.abs(a - b).max()
    # norm_scale is folded into W_enc, W_dec, b_dec and out again: rounding; the rest exactly
    tol = 1e-6 * max(1, np.abs(a).max()) if n in (\"W_enc\", \"W_dec\", \"b_dec\") else 0
    print(\"# $a\", n, \"max diff\", d); assert a.shape == b.shape and d <= tol, n
" &&
		tsz json $a.tsz | sed "s/,\"tensors.*//; s/,\"tokens_seen.*//" >m1 &&
		tsz json back_$a.tsz | sed "s/,\"tensors.*//; s/,\"imported_from.*//" >m2 &&
		test_cmp m1 m2 || return 1
	done &&
	grep "\"groups\":\[12,24,48\]" m2
'

test_expect_success NUMPY 'a SAELens gated SAE (apply_b_dec_to_input false) maps raw rows as SAELens does' '
	py "
import os
rng = np.random.default_rng(8); D, F = 8, 20
t = {n: rng.standard_normal(s).astype(np.float32) for n, s in ((\"W_enc\", (D, F)), (\"b_gate\", (F,)), (\"W_dec\", (F, D)),
     (\"b_dec\", (D,)), (\"r_mag\", (F,)), (\"b_mag\", (F,)))}
os.mkdir(\"gsl\"); json.dump({\"architecture\": \"gated\", \"d_in\": D, \"d_sae\": F, \"apply_b_dec_to_input\": False},
                              open(\"gsl/cfg.json\", \"w\"))
st_write(\"gsl/sae_weights.safetensors\", {n: (\"F32\", a.tobytes(), a.shape) for n, a in t.items()})
x = rng.standard_normal((50, D)).astype(np.float32); np.save(\"gx.npy\", x)
P = {n: a.astype(np.float64) for n, a in t.items()}; z = x.astype(np.float64) @ P[\"W_enc\"]  # SAELens: no b_dec on input
f = (z + P[\"b_gate\"] > 0) * np.maximum(z * np.exp(P[\"r_mag\"]) + P[\"b_mag\"], 0); np.save(\"gwant.npy\", f)
" &&
	sae-convert from-saelens gsl >gsl.tsz && tsz json gsl.tsz | grep "\"arch\":\"gated\",\"k\":0," &&
	tsz from-npy --meta kind=acts acts=gx.npy >gx.tsz && sae-encode --sae gsl.tsz --dense gx.tsz | tsz to-npy --name features gget.npy &&
	py "d = np.abs(ld(\"gget\") - ld(\"gwant\")).max(); print(\"# max diff\", d); assert d < 1e-4"
'

test_expect_success NUMPY 'refusals name the file and the problem' '
	test_must_fail sae-convert from-saelens nodir >o 2>err &&
	grep "^sae-convert: nodir/cfg.json: No such file or directory$" err &&
	mkdir bad && echo "{\"d_in\": 8," >bad/cfg.json &&
	test_must_fail sae-convert from-saelens bad >o 2>err && grep "^sae-convert: bad/cfg.json: line 2: " err &&
	echo "{\"architecture\": \"transcoder\", \"d_in\": 8, \"d_sae\": 20}" >bad/cfg.json &&
	test_must_fail sae-convert from-saelens bad >o 2>err &&
	grep "^sae-convert: bad/cfg.json: architecture .transcoder. is not supported (standard relu, topk, jumprelu, batchtopk, matryoshka_batchtopk, gated)$" err &&
	echo "{\"architecture\": \"standard\", \"activation_fn_str\": \"topk\", \"d_in\": 8, \"d_sae\": 20}" >bad/cfg.json &&
	test_must_fail sae-convert from-saelens bad >o 2>err && grep "needs k" err &&
	echo "{\"d_in\": 8, \"d_sae\": 20, \"normalize_activations\": \"expected_average_only_in\"}" >bad/cfg.json &&
	test_must_fail sae-convert from-saelens bad >o 2>err && grep "normalize_activations .expected_average_only_in. is not supported" err &&
	echo "{\"d_in\": 8, \"d_sae\": 21}" >bad/cfg.json && cp std/sae_weights.safetensors bad/ &&
	test_must_fail sae-convert from-saelens bad >o 2>err &&
	grep "^sae-convert: bad/sae_weights.safetensors: W_enc is (8,20) F16 but d_in=8 d_sae=21 needs (8,21) float$" err &&
	echo "{\"architecture\": \"jumprelu\", \"d_in\": 8, \"d_sae\": 20}" >bad/cfg.json &&
	test_must_fail sae-convert from-saelens bad >o 2>err && grep "^sae-convert: bad/sae_weights.safetensors: no tensor threshold$" err &&
	echo "{\"architecture\": \"gated\", \"d_in\": 8, \"d_sae\": 20}" >bad/cfg.json &&
	test_must_fail sae-convert from-saelens bad >o 2>err && grep "^sae-convert: bad/sae_weights.safetensors: no tensor b_gate$" err &&
	head -c 100 std/sae_weights.safetensors >bad/sae_weights.safetensors &&
	test_must_fail sae-convert from-saelens bad >o 2>err && grep "^sae-convert: bad/sae_weights.safetensors" err &&
	test_line_count = 1 err &&
	test_must_fail sae-convert to-saelens x.tsz -o out 2>err && grep "^sae-convert: x.tsz: not an SAE file" err &&
	test_expect_code () { want=$1; shift; "$@"; got=$?; test $got = $want; } &&
	test_expect_code 2 sae-convert to-saelens topk.tsz 2>err && grep "^sae-convert: to-saelens needs -o DIR$" err &&
	test_expect_code 2 sae-convert frobnicate 2>err && grep "^sae-convert: unknown command .frobnicate." err &&
	test_expect_code 2 sae-convert 2>err && grep "^sae-convert: missing command" err
'

test_done
