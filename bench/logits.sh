#!/bin/sh
# bench/logits.sh: topk-ctx --sae's logit effects (lib/logits.c: every
# feature's decoder row through c_proj and the folded unembedding, top and
# bottom 10 tokens) in features/s on the shipped tiny GPT-2 (C=256,
# V=50257) for an SAE of F features on blocks.3.mlp.hook_post (D=1024);
# the time is that of topk-ctx --sae minus that of topk-ctx without it on
# the same input. The reference, measured in the same run: the same maths
# in torch (one matmul per 256 features and torch.topk both ways), with as
# many threads; the ratio is ours over torch's rate.
# Run from the repo root (make bench): bins on ./bin, helpers in tests/helpers.
set -e
PY=/usr/bin/python3
F=${BENCH_LOGITS_FEATURES:-4096}
M=examples/models/tiny-gpt2-docs
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then echo "logits: skipped (torch or numpy missing)"; exit 0; fi
if ! test -f $M/model.safetensors; then echo "logits: skipped (no $M)"; exit 0; fi
root=$(pwd)
T=${OPENBLAS_NUM_THREADS:-$(nproc)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cd "$tmp"
"$PY" - "$F" <<'PY'
import sys
import numpy as np
rng = np.random.default_rng(0)
D, F = 1024, int(sys.argv[1])
np.save("W_enc.npy", (rng.standard_normal((D, F)) / 32).astype(np.float32))
np.save("b_enc.npy", np.full(F, -0.5, np.float32))
np.save("W_dec.npy", (rng.standard_normal((F, D)) / 32).astype(np.float32))
np.save("b_dec.npy", np.zeros(D, np.float32))
np.save("acts.npy", rng.standard_normal((2, 8, D)).astype(np.float32))
np.save("tokens.npy", rng.integers(0, 50000, (2, 9)).astype(np.int32))
PY
"$root/bin/tsz" from-npy --rows 1000000 --meta kind=sae --meta arch=relu --meta d=1024 --meta f="$F" \
	--meta hook=\"blocks.3.mlp.hook_post\" W_enc=W_enc.npy b_enc=b_enc.npy W_dec=W_dec.npy b_dec=b_dec.npy >sae.tsz
"$root/bin/tsz" from-npy --meta pos0=1 acts=acts.npy tokens=tokens.npy >ctx.tsz
"$root/bin/sae-encode" --sae sae.tsz ctx.tsz >feat.tsz
now () { date +%s.%N; }
opts="-k 2 -w 4 --random 0 --bands 0 -m $root/$M"
t0=$(now)
OPENBLAS_NUM_THREADS=$T "$root/bin/topk-ctx" $opts feat.tsz >plain.tsz
t1=$(now)
OPENBLAS_NUM_THREADS=$T "$root/bin/topk-ctx" $opts --sae sae.tsz feat.tsz >lg.tsz
t2=$(now)

"$PY" - "$root/$M" "$T" "$root" >ref <<'PY'
import sys, time
import numpy as np
import torch
sys.path.insert(0, sys.argv[3] + "/tests/helpers")
from gpt2_ref import read_safetensors
torch.set_num_threads(int(sys.argv[2]))
w = {k.replace("transformer.", ""): torch.from_numpy(v.astype(np.float32)) for k, v in
     read_safetensors(sys.argv[1] + "/model.safetensors").items()}
W_dec = torch.from_numpy(np.load("W_dec.npy"))
t = time.time()
U = w["ln_f.weight"] * (w["wte.weight"] - w["wte.weight"].mean(0))
U = U - U.mean(1, keepdim=True)
proj = w["h.3.mlp.c_proj.weight"]
u = W_dec / W_dec.norm(dim=1, keepdim=True)
for i in range(0, len(u), 256):
    L = (u[i:i + 256] @ proj) @ U.T
    torch.topk(L, 10), torch.topk(-L, 10)
print(len(u) / (time.time() - t))
PY
awk -v f="$F" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v ref="$(cat ref)" -v th="$T" 'BEGIN {
	s = (t2 - t1) - (t1 - t0)
	printf "logits: %d features of a 1024-wide MLP, C=256, V=50257, %d threads\n", f, th
	printf "logits: %.0f features/s (%.1f GFLOP/s in the unembedding GEMM); torch, same maths: %.0f features/s; ratio %.2f\n", f / s, f * 50257 * 256 * 2 / s / 1e9, ref, f / s / ref
}'
