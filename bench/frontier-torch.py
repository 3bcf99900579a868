#!/usr/bin/python3
"""frontier-torch.py: sae-fit's recipe for topk and relu SAEs in PyTorch, a
reference for the frontier (bench/frontier.sh; never part of the product).

Trains on the first --rows-n rows of ROWS.npy (the rows sae-fit saw, in its
order) and writes the SAE in the SAELens layout (cfg.json and
sae_weights.safetensors, f32), for `sae-convert from-saelens`.

The recipe is sae-fit(1)'s, read from lib/sae_train.c and lib/sae_fit.c:
  pre = (x - b_dec) W_enc + b_enc; x_hat = f W_dec + b_dec;
  loss = 1/n sum ||x_hat - x||^2 + (relu) l1/n sum f
                                 + (topk) AuxK: aux_coef/n sum ||e^ - (x - x_hat)||^2,
  e^ the decoder (no bias) of the aux_k largest relu'd pre-activations among
  dead latents (not fired for dead_rows rows), x - x_hat held constant;
  topk: f = relu(pre) on each row's k largest pre;
  init: decoder rows random unit vectors, W_enc = W_dec^T, b_enc = 0, b_dec
  the geometric median (Weiszfeld from the mean, 100 iterations) of the
  first batch's rows (at most 4096);
  Adam (beta 0.9, 0.999, eps 1e-8, bias-corrected); the decoder gradient's
  component parallel to each row removed before the step, rows renormalised
  after; lr: linear warmup over 5% of the steps (the default for runs under
  20000 steps), linear decay to 0 over the last 20%.
Differences: the random draws (torch's generator, not sae-fit's; --init
DIR starts from a given SAE instead, e.g. sae-fit's own start, and then
the two differ only in the next item); summation order (torch's kernels);
relu's dead-latent resampling every 25000 steps is not done (the
frontier's runs are far shorter). --log writes each step's training loss,
as sae-fit's --log-every 1 --log does (its loss column), to compare the two
step by step.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch


def geometric_median(x, iters=100):
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / torch.clamp(torch.linalg.norm(x - y, dim=1), min=1e-8)
        ny = (w[:, None] * x).sum(0) / w.sum()
        shift = float(((ny - y) ** 2).sum())
        y = ny
        if shift < 1e-12:
            break
    return y


def lr_at(step, total, lr, decay_frac=0.2):
    warmup = min(1000, max(total // 20, 1))
    if step < warmup:
        lr *= (step + 1) / warmup
    p = step / total
    if p > 1 - decay_frac:
        lr *= max(0.0, (1 - p) / decay_frac)
    return lr


def save_safetensors(path, tensors):
    header, off, blobs = {}, 0, []
    for name, t in tensors.items():
        b = t.detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", required=True, help="(N, D) float .npy")
    ap.add_argument("--rows-n", type=int, required=True, help="rows to train on (the token budget)")
    ap.add_argument("--arch", choices=["topk", "relu"], required=True)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--l1", type=float, default=5.0)
    ap.add_argument("--dict", type=int, required=True, help="features F")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--dead-rows", type=int, default=1000000)
    ap.add_argument("--aux-k", type=int, default=512)
    ap.add_argument("--aux-coef", type=float, default=1 / 32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hook", default="")
    ap.add_argument("--model", default="")
    ap.add_argument("--init", default="", help="start from this SAELens directory (e.g. sae-fit's start, "
                    "sae-convert to-saelens of a --lr 0 fit) instead of drawing the initialisation")
    ap.add_argument("--log", default="", help="write each step: step, recon (squared error a row), aux, loss "
                    "(their sum), lr, l0 (TSV)")
    ap.add_argument("-o", "--output", required=True, help="SAELens directory")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    X = np.load(a.rows, mmap_mode="r")
    n_rows = min(a.rows_n, X.shape[0])
    D, F, B = X.shape[1], a.dict, a.batch
    total = (n_rows + B - 1) // B

    if a.init:
        # the tests' reader (float64 values of the file's f32: exact back in f32)
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "helpers"))
        from gpt2_ref import read_safetensors
        w = read_safetensors(os.path.join(a.init, "sae_weights.safetensors"))
        W_enc, b_enc, W_dec, b_dec = (torch.from_numpy(w[n].astype(np.float32)) for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
        assert W_dec.shape == (F, D), (W_dec.shape, F, D)
    else:
        W_dec = torch.randn(F, D)
        W_dec /= torch.linalg.norm(W_dec, dim=1, keepdim=True)
        W_enc = W_dec.t().clone()
        b_enc = torch.zeros(F)
        b_dec = geometric_median(torch.from_numpy(np.array(X[: min(B, n_rows, 4096)], dtype=np.float32)).double()).float()
    logf = open(a.log, "w") if a.log else None
    if logf:
        logf.write("step\trecon\taux\tloss\tlr\tl0\n")
    params = [W_enc, b_enc, W_dec, b_dec]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    since_fired = torch.zeros(F, dtype=torch.int64)
    t0 = time.time()
    for step in range(total):
        x = torch.from_numpy(np.array(X[step * B: min((step + 1) * B, n_rows)], dtype=np.float32))
        n = x.shape[0]
        pre = (x - b_dec) @ W_enc + b_enc
        if a.arch == "topk":
            # the decoder over the k active latents of each row, as sae-fit's
            v, i = pre.topk(a.k, dim=1)
            v = torch.relu(v)
            x_hat = torch.nn.functional.embedding_bag(i, W_dec, per_sample_weights=v, mode="sum") + b_dec
            fired_idx = i[v > 0]
        else:
            f = torch.relu(pre)
            x_hat = f @ W_dec + b_dec
        loss = ((x_hat - x) ** 2).sum(1).mean()
        mse = float(loss)
        if a.arch == "relu":
            loss = loss + a.l1 * f.sum(1).mean()
            fired = (f > 0).any(0)
        else:
            dead = torch.nonzero(since_fired >= a.dead_rows).flatten()
            if len(dead) and a.aux_coef:
                A = min(a.aux_k, len(dead))
                av, ai = pre[:, dead].topk(A, dim=1)
                e_hat = torch.nn.functional.embedding_bag(dead[ai], W_dec, per_sample_weights=torch.relu(av),
                                                          mode="sum")
                r = e_hat - (x - x_hat).detach()
                loss = loss + a.aux_coef * (r ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        if not math.isfinite(float(loss)):
            sys.exit(f"frontier-torch.py: loss is {float(loss)} at step {step}")
        with torch.no_grad():
            if a.arch == "topk":
                fired = torch.zeros(F, dtype=torch.bool)
                fired[fired_idx] = True
            since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + n)
            g = W_dec.grad
            g -= (g * W_dec).sum(1, keepdim=True) * W_dec
            for grp in opt.param_groups:
                grp["lr"] = lr_at(step, total, a.lr)
            opt.step()
            if logf:
                l0 = float((v > 0).sum(1).float().mean()) if a.arch == "topk" else float((f > 0).sum(1).float().mean())
                logf.write(f"{step + 1}\t{mse:.6g}\t{float(loss) - mse:.6g}\t{float(loss):.6g}\t{lr_at(step, total, a.lr):.6g}\t{l0:.4g}\n")
            W_dec /= torch.linalg.norm(W_dec, dim=1, keepdim=True)
    secs = time.time() - t0
    if logf:
        logf.close()
    os.makedirs(a.output, exist_ok=True)
    cfg = {"architecture": "standard", "d_in": D, "d_sae": F, "dtype": "float32", "device": "cpu",
           "model_name": a.model, "hook_name": a.hook, "apply_b_dec_to_input": True,
           "normalize_activations": "none", "activation_fn_str": a.arch,
           "saepipe": {"arch": a.arch, "k": a.k if a.arch == "topk" else 0, "l1": a.l1 if a.arch == "relu" else 0,
                       "norm_scale": 1.0}}
    if a.arch == "topk":
        cfg["activation_fn_kwargs"] = {"k": a.k}
        cfg["k"] = a.k
    save_safetensors(os.path.join(a.output, "sae_weights.safetensors"),
                     {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec})
    with open(os.path.join(a.output, "cfg.json.tmp"), "w") as fh:
        json.dump(cfg, fh, indent=1)
    os.replace(os.path.join(a.output, "cfg.json.tmp"), os.path.join(a.output, "cfg.json"))
    print(f"{n_rows} rows in {total} steps, {secs:.1f} s, {n_rows / secs:.0f} rows/s")


if __name__ == "__main__":
    main()
