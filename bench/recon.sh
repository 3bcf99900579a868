#!/bin/sh
# bench/recon.sh: the cost of one recon-score evaluation beside three plain
# forwards. A distilgpt2-shaped random model (6 layers, d_model 768, 12
# heads, MLP 3072, vocab 50257, written by tests/helpers/gpt2_ref.py as
# bench/fwd.sh does), ROWS windows of T=128 (default 782: 100k tokens), a
# random top-k SAE at HOOK (default blocks.3.mlp.hook_post, D=3072) with F
# features (default 12288, k=32). Measured in this one invocation:
#   (a) gpt2-fwd --loss, three times (clean, plus the two ablations one
#       would run by hand): the reference;
#   (b) recon-score with --mean FILE: clean + reconstruction + zero + mean
#       ablation forwards (the last three resumed at the hook point itself),
#       the SAE (top-k decoded from its nonzero features), KL over the
#       vocabulary;
#   (c) recon-score computing the mean itself (a first pass to the hook);
#   (d) PyTorch doing what (b) does (python3-torch; skipped without it).
# Prints tokens/s of each, the ratios (b)/(a), (c)/(a) in time, and the
# speed of (b) over (d).
# THREADS (default: all cores), BATCH (8), ROWS, HOOK, F.
# Measured 2026-11-27, 2 shared cores (other jobs' load 3-9, so wall times
# swing): full size, 3 forwards 1557.8 s, (b) 1238.5 s, (c) 680.8 s (load fell
# during the run; the ratios 0.80x/0.44x are not meaningful). Interleaved on
# 4096 tokens, user CPU: 3 forwards 23.7 s, (b) 33.4 s = 1.41x, as the FLOPs
# predict (1 + 3 x (3 of 6 layers + lm_head) forwards ~ 0.9 of 3 forwards,
# plus the SAE's dense encode and decode, 2 x 2DF = 150 MFLOP a token, about
# one forward). perf: 76% in sgemm, 6% gpt2_token_loss, 2% recon_kl_sum.
# (d) checks it does the same work: its clean, reconstruction, zero- and
# mean-ablation losses and KL must match recon-score's --json (printed as
# the largest relative difference). (d) times the evaluation alone (best of
# two, model loaded); (b) is the whole process, model load included.
# Measured 2026-12-02, ROWS=8 (1024 tokens), THREADS=2, load 8-11: (b)
# 51.9 s, PyTorch 1.13 70.8 s, losses within 9.3e-05: 1.36x in speed.
# After resuming at the hook point and the sparse decode (same day, ROWS=8,
# load 14-29, so the wall times say little): (a) 102.3 s, (b) 131.5 s,
# PyTorch 141.0 s (losses within 1.7e-04): 1.07x. In CPU time (user+sys,
# load ~20): 3 forwards 13.1 s, (b) 15.2 s = 1.16x, as the FLOPs say.
# Why 3x PyTorch is out of reach: both do the same matrix products but
# one, and both are sgemm-bound. Per token (C=768, V=50257, 6 layers, hook
# blocks.3.mlp.hook_post, F=12288, k=32): a layer is 14.6 MFLOP, the
# unembedding 77.2; the clean forward 164.5, the SAE's encoder 75.5, each
# resumed forward (the hook layer's c_proj, 2 layers, unembedding) 111.0:
# recon-score 573 MFLOP a token, PyTorch the same plus its dense decode
# (75.5) = 649, so 1.13x at equal sgemm speed. The unembedding is 54% of
# recon-score's FLOPs and none of it can go: each of the four losses (and
# the KL) needs the log-sum-exp over the whole vocabulary. perf (cpu-clock,
# ROWS=8): sgemm 49% (kernel and packing), loading the model and the SAE
# (page clearing 22%, copies 10%: a third of a 1024-token run, amortised at
# the default ROWS; PyTorch's time excludes its loading), KL 1.3%, the loss
# 1%, the sparse decode 0.5%.
set -e
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
"$PY" -c 'import numpy' 2>/dev/null || { echo "bench/recon.sh: skipped: needs python3-numpy"; exit 0; }
THREADS=${THREADS:-$(nproc)}
BATCH=${BATCH:-8}
ROWS=${ROWS:-782}
HOOK=${HOOK:-blocks.3.mlp.hook_post}
F=${F:-12288}
T=128
export OPENBLAS_NUM_THREADS=$THREADS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" tests/helpers/gpt2_ref.py make "$tmp/m" --layers 6 --embd 768 --heads 12 --vocab 50257 --positions 1024
"$PY" -c "
import numpy as np
t = np.random.default_rng(0).integers(0, 50257, ($ROWS, $T)).astype(np.int32)
t[:, 0] = 50256
np.save('$tmp/tok.npy', t)"
bin/tsz from-npy tokens="$tmp/tok.npy" >"$tmp/tok.tsz"
case $HOOK in *mlp.hook_p*) D=3072 ;; *) D=768 ;; esac
"$PY" tests/helpers/recon_ref.py sae "$tmp/sae" --d $D --f "$F" --seed 1
bin/tsz from-npy --rows 100000000 --meta kind=sae --meta arch=topk --meta k=32 --meta d=$D --meta f="$F" \
	--meta hook="$HOOK" W_enc="$tmp/sae/W_enc.npy" b_dec="$tmp/sae/b_dec.npy" \
	b_enc="$tmp/sae/b_enc.npy" W_dec="$tmp/sae/W_dec.npy" >"$tmp/sae.tsz"
"$PY" -c "import numpy as np; np.save('$tmp/mean.npy', np.zeros($D, dtype=np.float32))"

now () { date +%s.%N; }
secs () { awk "BEGIN{print $2 - $1}"; }
# (a) three plain forwards with the loss
s=$(now)
for i in 1 2 3; do bin/gpt2-fwd -m "$tmp/m" --loss -b "$BATCH" "$tmp/tok.tsz" >/dev/null; done
fwd3=$(secs "$s" "$(now)")
# (b) one evaluation, mean given
s=$(now)
bin/recon-score -m "$tmp/m" --sae "$tmp/sae.tsz" --mean "$tmp/mean.npy" -b "$BATCH" -q --json "$tmp/tok.tsz" >"$tmp/rec.json"
rec1=$(secs "$s" "$(now)")
# (c) one evaluation with its own mean pass
s=$(now)
bin/recon-score -m "$tmp/m" --sae "$tmp/sae.tsz" -b "$BATCH" -q "$tmp/tok.tsz" >/dev/null
rec2=$(secs "$s" "$(now)")

n=$((ROWS * T))
printf 'recon-score on %d tokens (T=%d, B=%s, threads %s), distilgpt2 shape, SAE %s d=%d f=%s top-32\n' \
	"$n" "$T" "$BATCH" "$THREADS" "$HOOK" "$D" "$F"
printf '%-48s %8.1f s %10.0f tokens/s\n' "3 x gpt2-fwd --loss (reference)" "$fwd3" "$(awk "BEGIN{print 3 * $n / $fwd3}")"
printf '%-48s %8.1f s %10.0f tokens/s   %.2fx the time of 3 forwards\n' "recon-score --mean FILE (4 forwards, 3 resumed)" \
	"$rec1" "$(awk "BEGIN{print $n / $rec1}")" "$(awk "BEGIN{print $rec1 / $fwd3}")"
printf '%-48s %8.1f s %10.0f tokens/s   %.2fx the time of 3 forwards\n' "recon-score (with its mean pass)" \
	"$rec2" "$(awk "BEGIN{print $n / $rec2}")" "$(awk "BEGIN{print $rec2 / $fwd3}")"

# (d) the same evaluation in PyTorch (python3-torch), same windows, batch
# and threads: the clean forward to the loss, then the reconstruction, zero
# and mean ablations spliced in at the hook (BOS kept, as recon-score does)
# and resumed right after the hook, the top-k SAE's dense encode and
# decode, the losses and the KL of the reconstruction over the vocabulary
if ! "$PY" -c 'import torch' 2>/dev/null; then
	echo "PyTorch: skipped (python3-torch is not installed)"
	exit 0
fi
"$PY" - "$tmp/m" "$tmp/tok.npy" "$tmp/sae" "$HOOK" "$THREADS" "$BATCH" "$rec1" "$tmp/rec.json" <<'PY'
import sys, time, json
import numpy as np, torch
sys.path.insert(0, "tests/helpers")
from gpt2_ref import read_safetensors
d, tokp, sdir, hook, threads, B, rec1, recj = sys.argv[1:]
threads, B, rec1 = int(threads), int(B), float(rec1)
torch.set_num_threads(threads)
cfg = json.load(open(d + "/config.json"))
W = {k: torch.from_numpy(v.astype(np.float32)) for k, v in read_safetensors(d + "/model.safetensors").items()}
S = {n: torch.from_numpy(np.load("%s/%s.npy" % (sdir, n)).astype(np.float32)) for n in ["W_enc", "b_enc", "W_dec", "b_dec"]}
tok = torch.from_numpy(np.load(tokp).astype(np.int64))
C, NH, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
hs, K = C // NH, 32
HL, post = int(hook.split(".")[1]), hook.endswith("mlp.hook_post")
assert post, "the PyTorch side splices blocks.N.mlp.hook_post only"
ln, F = torch.nn.functional.layer_norm, torch.nn.functional
def attn_mlp_in(x, l):
    """layer l up to the MLP's activation: (residual after attention, hook_post)"""
    Bb, T, _ = x.shape
    p = lambda k: W["h.%d.%s" % (l, k)]
    h = ln(x, (C,), p("ln_1.weight"), p("ln_1.bias"), 1e-5)
    q, k, v = torch.addmm(p("attn.c_attn.bias"), h.view(-1, C), p("attn.c_attn.weight")).view(Bb, T, 3 * C).split(C, 2)
    q, k, v = (a.view(Bb, T, NH, hs).transpose(1, 2) for a in (q, k, v))
    s = (q @ k.transpose(-1, -2)) / hs ** 0.5
    s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")).softmax(-1)
    y = (s @ v).transpose(1, 2).reshape(Bb * T, C)
    x = x + torch.addmm(p("attn.c_proj.bias"), y, p("attn.c_proj.weight")).view(Bb, T, C)
    h = ln(x, (C,), p("ln_2.weight"), p("ln_2.bias"), 1e-5)
    return x, F.gelu(torch.addmm(p("mlp.c_fc.bias"), h.view(-1, C), p("mlp.c_fc.weight")), approximate="tanh").view(Bb, T, -1)
def mlp_out(x, a, l):
    p = lambda k: W["h.%d.%s" % (l, k)]
    return x + torch.addmm(p("mlp.c_proj.bias"), a.reshape(-1, a.shape[-1]), p("mlp.c_proj.weight")).view(x.shape)
def logprobs(x, a):
    """from the hook's layer (its residual x after attention, its activation a) to log-softmax"""
    x = mlp_out(x, a, HL)
    for l in range(HL + 1, L):
        x = mlp_out(*attn_mlp_in(x, l), l)
    h = ln(x, (C,), W["ln_f.weight"], W["ln_f.bias"], 1e-5)
    return (h @ W["wte.weight"].T).log_softmax(-1)
def loss(lp, t):   # summed over the predictions
    return -lp[:, :-1].gather(-1, t[:, 1:, None]).sum().item()
def sae(a):
    pre = (a - S["b_dec"]) @ S["W_enc"] + S["b_enc"]
    v, i = pre.topk(K, -1)
    f = torch.zeros_like(pre).scatter_(-1, i, v.clamp(min=0))
    return f @ S["W_dec"] + S["b_dec"]
mean = torch.zeros(S["b_dec"].shape)   # as the --mean FILE given to recon-score
def evaluate(t):
    x = W["wte.weight"][t] + W["wpe.weight"][:t.shape[1]]
    for l in range(HL):
        x = mlp_out(*attn_mlp_in(x, l), l)
    x, a = attn_mlp_in(x, HL)
    clean = logprobs(x, a)
    out = [loss(clean, t)]
    for val in (sae(a), torch.zeros_like(mean), mean):
        v = a.clone()
        v[:, 1:] = val[:, 1:] if val.dim() == 3 else val
        lp = logprobs(x, v)
        out.append(loss(lp, t))
        if len(out) == 2:   # the reconstruction's KL from the clean predictions
            out.append((clean[:, 1:-1].exp() * (clean[:, 1:-1] - lp[:, 1:-1])).sum().item())
    return np.array(out)
def timed():
    global sums
    t0 = time.perf_counter()
    sums = sum(evaluate(tok[i:i + B]) for i in range(0, len(tok), B))
    return time.perf_counter() - t0
with torch.inference_mode():
    evaluate(tok[:B])   # warm up
    best = min(timed(), timed())
n = tok.numel()
R, T = tok.shape
got = dict(zip(["clean_loss", "recons_loss", "kl", "zero_abl_loss", "mean_abl_loss"],
               sums / [R * (T - 1), R * (T - 1), R * (T - 2), R * (T - 1), R * (T - 1)]))
ref = json.load(open(recj))
diff = max(abs(got[k] - ref[k]) / max(abs(ref[k]), 1e-3) for k in got)
print("%-48s %8.1f s %10.0f tokens/s   (losses and KL within %.1e of recon-score's)" % (
    "PyTorch %s, the same evaluation" % torch.__version__, best, n / best, diff))
print("ratio recon-score --mean FILE / PyTorch, in speed: %.2fx" % (best / rec1))
PY
