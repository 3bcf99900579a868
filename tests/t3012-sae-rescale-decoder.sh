#!/bin/sh
test_description='sae-fit --decoder free for topk, batchtopk and matryoshka (SAELens rescale_acts_by_decoder_norm): one Adam step of the raw rows against torch, --aux-scale dead, cut and resumed, refusals'
. "$(dirname "$0")/test-lib.sh"
. "$TEST_DIRECTORY/helpers/sae-arch-test-lib.sh"

# One step of 128 rows, no AuxK, constant lr, Adam's eps large enough that
# the first step (lr g/(|g| + eps)) is a smooth function of the gradient.
ONE="--arch matryoshka --dict 64 --k 4 --groups 16,64 --batch 128 --tokens 128 --aux-k 0 --warmup 0 --lr-schedule constant --eps 1e-3 --init-bdec zero"
FREE="--decoder free --init-norm 0.1"

test_expect_success 'setup: sae-synth rows of its small model (128 features in 32 dims)' '
	sae-synth -n 8192 --data-seed 7 --truth truth.tsz -o eval.tsz &&
	sae-synth -n 20000 --data-seed 11 -o train.tsz &&
	tsz to-npy --name acts x.npy train.tsz
'

# The start: --lr 0 writes it back (the effective map: unit rows u_j,
# encoder rows s_j W_j = s_j^2 u_j with the tied start). torch then takes
# the raw rows W = E/s, b = b'/s, V = s u, SAELens' map pre = s (x - b_dec)
# W + s b, x_hat = f V/||V|| + b_dec over the batchtopk selection, the two
# prefixes' summed losses, one Adam step of each raw tensor, and folds the
# result as sae-fit writes it; the two must agree to float32 rounding.
# The unit-row decoder's step from the same start must not (it is another
# optimiser path), which shows the comparison can tell them apart.
test_expect_success TORCH 'matryoshka --decoder free: one step matches torch autograd through the decoder norms; the unit decoder does not' '
	sae-fit $ONE $FREE --lr 0 train.tsz >s0.tsz 2>/dev/null &&
	sae-fit $ONE $FREE --lr 0.003 train.tsz >s1.tsz 2>/dev/null &&
	sae-fit $ONE --lr 0.003 train.tsz >u1.tsz 2>/dev/null &&
	for s in s0 s1 u1; do for n in W_enc b_enc W_dec b_dec; do tsz to-npy --name $n $s.$n.npy $s.tsz || return 1; done; done &&
	"$PYTHON" -c "
import numpy as np, torch
t = lambda n: torch.tensor(np.load(n + \".npy\"), dtype=torch.float64)
x = t(\"x\")[:128]
E, be, U, bd = t(\"s0.W_enc\").T, t(\"s0.b_enc\"), t(\"s0.W_dec\"), t(\"s0.b_dec\")
s = E.norm(dim=1).sqrt()
print(\"# start: s\", s.min().item(), s.max().item(), \"|b_dec|\", bd.abs().max().item())
assert (s - 0.1).abs().max() < 1e-4 and bd.abs().max() == 0
W, b, V = (E / s[:, None]).requires_grad_(), (be / s).requires_grad_(), (U * s[:, None]).requires_grad_()
bd = bd.clone().requires_grad_()
n = V.norm(dim=1)
pre = ((x - bd) @ W.T + b) * n
a = pre.clamp(min=0)
thr = a.flatten().topk(128 * 4).values[-1]
f = a * ((a >= thr) & (a > 0))
Un = V / n[:, None]
loss = sum(((f[:, :m] @ Un[:m] + bd - x) ** 2).sum(1).mean() for m in (16, 64))
loss.backward()
with torch.no_grad():
    for p in (W, b, V, bd): p -= 0.003 * p.grad / (p.grad.abs() + 1e-3)
    s1 = V.norm(dim=1)
    ref = {\"W_enc\": (W * s1[:, None]).T, \"b_enc\": b * s1, \"W_dec\": V / s1[:, None], \"b_dec\": bd}
for run, bound in ((\"s1\", None), (\"u1\", None)):
    d = max((ref[k] - t(run + \".\" + k)).abs().max().item() for k in ref)
    moved = max((ref[k] - t(\"s0.\" + k)).abs().max().item() for k in ref)
    print(\"#\", run, \"largest difference from torch\", d, \"(the step moved entries up to\", moved, \")\")
    if run == \"s1\": assert d < 2e-5 and moved > 1e-3, d
    else: assert d > 1e-3, d
"
'

# AuxK with a short dead window, so latents die and the dead share scales
# it: the logged aux term is its coefficient times min(dead/aux_k, 1) of
# the fixed-coefficient run's whenever the dead are fewer than aux_k.
test_expect_success 'batchtopk --decoder free runs and writes unit decoder rows; --aux-scale dead logs a smaller AuxK term than fixed' '
	F="--arch batchtopk --dict 256 --k 4 --batch 256 --tokens 20000 --aux-k 200 --aux-coef 1 --dead-tokens 1000 $FREE" &&
	sae-fit $F --log-every 1 --log fixed.jsonl train.tsz >fixed.tsz 2>/dev/null &&
	sae-fit $F --aux-scale dead --log-every 1 --log dead.jsonl train.tsz >dead.tsz 2>/dev/null &&
	score fixed && score dead &&
	tsz to-npy --name W_dec wd.npy dead.tsz &&
	py "n = np.linalg.norm(ld(\"wd\"), axis=1); print(\"# decoder norms\", n.min(), n.max()); assert abs(n - 1).max() < 1e-5" &&
	is "$(jget dead.json mcc_dec)" "v > 0.3" &&
	grep "\"kind\":\"train\"" fixed.jsonl | tail -1 >fl.json && grep "\"kind\":\"train\"" dead.jsonl | tail -1 >dl.json &&
	is "$(jget dl.json aux)" "v > 0" && is "$(jget dl.json aux)" "v < 0.9 * $(jget fl.json aux)"
'

test_expect_success 'topk --decoder free: a run cut short and resumed gives the same bytes (the norms in the checkpoint)' '
	cut_resume "--arch topk --dict 128 --k 4 --batch 64 --lr 0.003 --tokens 12800 --checkpoint-every 30 $FREE" &&
	same_tensors full.tsz res.tsz &&
	tsz json ckc/checkpoint.tsz | grep -q "dec_scale"
'

test_expect_success 'refusals: --decoder for relu and the k archs only' '
	usage_err sae-fit --arch jumprelu --decoder free train.tsz 2>err &&
	grep "^sae-fit: --decoder is for --arch relu, topk, batchtopk or matryoshka$" err &&
	usage_err sae-fit --arch gated --init-norm 0.1 train.tsz 2>err &&
	grep "^sae-fit: --init-norm is for --arch relu, topk, batchtopk or matryoshka$" err &&
	usage_err sae-fit --arch topk --aux-scale some train.tsz 2>err &&
	grep "^sae-fit: --aux-scale: expected one of fixed, dead, got .some.$" err
'

test_done
