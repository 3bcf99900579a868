#!/bin/sh
# bench/fwd.sh: gpt2-fwd tokens/s on a distilgpt2-shaped random model (6
# layers, d_model 768, 12 heads, MLP 3072, vocab 50257), windows of T=128,
# forward up to blocks.5.mlp.hook_post, written as f32 to /dev/null; beside
#   (a) the same forward in PyTorch (python3-torch), same threads, same batch,
#       same stopping point, on the same weights and tokens;
#   (b) the sgemm FLOP/s OpenBLAS reaches here (tests/helpers/sgemm-peak at
#       the forward's largest shape), as the fraction of it gpt2-fwd uses.
# THREADS (default: all cores), BATCH (8), ROWS (windows, default 128).
# Measured 2026-12-02 on the quiet 2-core AMD EPYC (Zen 4, OpenBLAS Haswell
# kernel): 1770 tokens/s, 146 GFLOP/s = 75% of the 194 GFLOP/s sgemm peak,
# 1.63x PyTorch (1089). Issue 19 asks 85% of the peak; what keeps it at 75%
# (perf record -e cpu-clock of this gpt2-fwd run): the sgemm kernel 72%,
# OpenBLAS packing 11% (sgemm_itcopy 8.9%, oncopy 1.8%), the kernel clearing
# fresh pages 3.8%, memmove 2.4%, zstd writing the 200 MB of f32 ~3%, layer
# norm, softmax, GELU and residual 2.8% together. The packing is the price of
# byte-identical rows (lib/gemm.h): sp_gemm tiles a window of 128 rows on its
# own, so every weight slab is packed again for every window; sgemm-peak at
# M=128 spends 7.6-8.4% in sgemm_itcopy, at M=1024 under 3%. Tiles spanning
# several windows would pack less, but a window's bytes would then depend on
# where in a tile it lands and what shares the tile, which OpenBLAS does not
# promise (README "Reproducibility"), so the 85% is not reached by this design; the output's compression and page clearing are the stage's
# own work, which the peak (and PyTorch's forward-only loop) does not do.
set -e
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
"$PY" -c 'import numpy' 2>/dev/null || { echo "bench/fwd.sh: skipped: needs python3-numpy"; exit 0; }
THREADS=${THREADS:-$(nproc)}
BATCH=${BATCH:-8}
ROWS=${ROWS:-128}
T=128
export OPENBLAS_NUM_THREADS=$THREADS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" tests/helpers/gpt2_ref.py make "$tmp/m" --layers 6 --embd 768 --heads 12 --vocab 50257 --positions 1024
"$PY" -c "import numpy as np; np.save('$tmp/tok.npy', np.random.default_rng(0).integers(0, 50257, ($ROWS, $T)).astype(np.int32))"
bin/tsz from-npy tokens="$tmp/tok.npy" >"$tmp/tok.tsz"

peak1=$(tests/helpers/sgemm-peak $((BATCH * T)) 3072 768 2 | sed 's/.*: \([0-9.]*\) GFLOP.*/\1/')
# gpt2-fwd: best of 3 (the first run also warms the page cache for the model)
best=1e30
for i in 1 2 3; do
	s=$(date +%s.%N)
	bin/gpt2-fwd -m "$tmp/m" --hook blocks.5.mlp.hook_post -b "$BATCH" "$tmp/tok.tsz" >/dev/null
	e=$(date +%s.%N)
	t=$(awk "BEGIN{print $e - $s}")
	best=$(awk "BEGIN{print ($t < $best) ? $t : $best}")
done
c_tps=$(awk "BEGIN{printf \"%.0f\", $ROWS * $T / $best}")
# FLOPs of the matrix work up to layer 5's MLP neurons, per token:
# 6 layers of qkv (2*C*3C), attn proj (2*C*C), fc (2*C*4C), minus layer 5's
# MLP c_proj (2*4C*C) which the forward skips; plus attention (2 sgemm of
# 2*T*C per token each, the full T x T as computed)
flop=$(awk "BEGIN{C=768; print 6*(2*C*3*C + 2*C*C + 2*C*4*C + 2*4*C*C) - 2*4*C*C + 6*4*$T*C}")
c_gflops=$(awk "BEGIN{printf \"%.1f\", $c_tps * $flop * 1e-9}")
# the sgemm peak: best of a measurement before and one after, since other
# load on the machine only ever lowers it
peak2=$(tests/helpers/sgemm-peak $((BATCH * T)) 3072 768 2 | sed 's/.*: \([0-9.]*\) GFLOP.*/\1/')
peak=$(awk "BEGIN{print ($peak1 > $peak2) ? $peak1 : $peak2}")

printf '%-44s %12s\n' "forward to blocks.5.mlp.hook_post, T=$T, B=$BATCH, threads $THREADS" "tokens/s"
printf '%-44s %12s   (%s GFLOP/s, %.0f%% of sgemm peak %s GFLOP/s)\n' "gpt2-fwd (end to end, f32 stream out)" \
	"$c_tps" "$c_gflops" "$(awk "BEGIN{print 100 * $c_gflops / $peak}")" "$peak"

if ! "$PY" -c 'import torch' 2>/dev/null; then
	echo "PyTorch: skipped (python3-torch is not installed)"
	exit 0
fi
"$PY" - "$tmp/m" "$tmp/tok.npy" "$THREADS" "$BATCH" "$c_tps" <<'PY'
import sys, time, json
import numpy as np, torch
sys.path.insert(0, "tests/helpers")
from gpt2_ref import read_safetensors
d, tokp, threads, B, c_tps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
torch.set_num_threads(threads)
cfg = json.load(open(d + "/config.json"))
W = {k: torch.from_numpy(v.astype(np.float32)) for k, v in read_safetensors(d + "/model.safetensors").items()}
tok = torch.from_numpy(np.load(tokp).astype(np.int64))
C, NH, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
hs = C // NH
ln = torch.nn.functional.layer_norm
def fwd(t):
    Bb, T = t.shape
    x = W["wte.weight"][t] + W["wpe.weight"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(L):
        p = lambda k: W["h.%d.%s" % (l, k)]
        h = ln(x, (C,), p("ln_1.weight"), p("ln_1.bias"), 1e-5)
        q, k, v = torch.addmm(p("attn.c_attn.bias"), h.view(-1, C), p("attn.c_attn.weight")).view(Bb, T, 3 * C).split(C, 2)
        q, k, v = (a.view(Bb, T, NH, hs).transpose(1, 2) for a in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / hs ** 0.5
        s = s.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (s @ v).transpose(1, 2).reshape(Bb * T, C)
        x = x + torch.addmm(p("attn.c_proj.bias"), y, p("attn.c_proj.weight")).view(Bb, T, C)
        h = ln(x, (C,), p("ln_2.weight"), p("ln_2.bias"), 1e-5)
        a = torch.nn.functional.gelu(torch.addmm(p("mlp.c_fc.bias"), h.view(-1, C), p("mlp.c_fc.weight")), approximate="tanh")
        if l == L - 1:
            return a                      # blocks.5.mlp.hook_post
        x = x + torch.addmm(p("mlp.c_proj.bias"), a, p("mlp.c_proj.weight")).view(Bb, T, C)
best = 1e30
with torch.inference_mode():
    fwd(tok[:B])
    for rep in range(3):
        t0 = time.perf_counter()
        for i in range(0, len(tok), B):
            out = fwd(tok[i:i + B]).numpy()      # the activations, as gpt2-fwd hands them on
        best = min(best, time.perf_counter() - t0)
tps = tok.numel() / best
print("%-44s %12.0f" % ("PyTorch %s (forward only, no output)" % torch.__version__, tps))
print("ratio gpt2-fwd / PyTorch: %.2fx (target >= 1.3x)" % (c_tps / tps))
PY
