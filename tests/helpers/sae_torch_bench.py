"""PyTorch reference of sae-fit's training step, for bench/sae.sh.

    sae_torch_bench.py ARCH D F B K STEPS THREADS [DENSITY]

The same step as lib/sae_train.c: pre = (x - b_dec) W_enc + b_enc; relu:
f = relu(pre), loss = sum((x_hat - x)^2)/B + l1 * sum(f)/B; topk: the K
largest of each row (torch.topk, scattered into a dense f, the SAELens way);
x_hat = f W_dec + b_dec; autograd backward; the decoder gradient's component
parallel to each row removed; Adam; decoder rows renormalised. Rows
x ~ N(0,1) and unit decoder rows make each pre-activation N(0,1); relu's
b_enc = -z with P(N(0,1) > z) = DENSITY (default 0.5), as sae_bench does,
so both fire the same fraction of latents. Prints the same line format as
sae_bench."""
import statistics
import sys
import time

import torch


def main():
    arch, D, F, B, K, steps, threads = sys.argv[1], *map(int, sys.argv[2:8])
    density = float(sys.argv[8]) if len(sys.argv) > 8 else 0.5
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(B, D)
    W_dec = torch.randn(F, D)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_enc = W_dec.t().contiguous()
    b_enc, b_dec = torch.zeros(F), torch.zeros(D)
    if arch == "relu":
        b_enc.fill_(-statistics.NormalDist().inv_cdf(1 - density))
    params = [p.requires_grad_() for p in (W_enc, b_enc, W_dec, b_dec)]
    opt = torch.optim.Adam(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    l1 = 5.0

    l0 = []

    def step():
        pre = (x - b_dec) @ W_enc + b_enc
        if arch == "relu":
            f = torch.relu(pre)
        else:
            v, i = pre.topk(K, dim=-1)
            f = torch.zeros_like(pre).scatter_(-1, i, torch.relu(v))
        l0.append((f > 0).sum().item() / B)
        x_hat = f @ W_dec + b_dec
        loss = ((x_hat - x) ** 2).sum(-1).mean()
        if arch == "relu":
            loss = loss + l1 * f.sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            g = W_dec.grad
            g -= (g * W_dec).sum(-1, keepdim=True) * W_dec
            opt.step()
            W_dec.div_(W_dec.norm(dim=1, keepdim=True))

    step()
    l0.clear()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    flops = 2.0 * B * D * F * (5 if arch == "relu" else 1)
    print("%s D=%d F=%d B=%d K=%d: %.0f tokens/s (%.3f s/step, %.1f GFLOP/s in the dense products) L0 %.0f [torch %s, %d threads]"
          % (arch, D, F, B, 0 if arch == "relu" else K, B / dt, dt, flops / dt / 1e9, sum(l0) / len(l0),
             torch.__version__, threads))


main()
