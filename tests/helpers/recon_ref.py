#!/usr/bin/python3
"""recon_ref.py: an independent numpy reference for recon-score, and a
writer of SAE parameter arrays for its tests.

  recon_ref.py sae OUTDIR --d D --f F [--arch relu|topk|batchtopk|jumprelu|gated]
               [--k K] [--seed S] [--scale X] [--kind random|identity|zero]
      write OUTDIR/{W_enc,b_enc,W_dec,b_dec[,threshold]}.npy (f32) (gated:
      b_gate for b_enc, and r_mag, b_mag); identity
      (F = 2D): W_enc = [I, -I], W_dec rows +-e_i, biases 0, so relu gives
      x_hat = relu(x) - relu(-x) = x exactly; zero: every parameter 0
  recon_ref.py eval MODEL TOKENS.npy SAEDIR HOOK [--arch A] [--k K]
               [--norm-scale S] [--include-bos] [--mean MEAN.npy] > REF.json
      the metrics of recon-score(1) in float64: the losses from gpt2_ref.py's
      forward with the hook's value replaced at positions t >= pos0 (pos0 = 1
      unless --include-bos), KL over predictions at pos0..T-2, MSE, FVU about
      the direct mean, L0, dead/dense fractions (dense: > 10% of positions)
  recon_ref.py check GOT.json REF.json [--tol T]
      |got - ref| / max(|ref|, 1e-3) <= T (default 1e-4) for every key of
      REF; prints one line per key, exits 1 on any failure

Shares no code with the C side: the SAE maps are written here from the
formulas in lib/sae.h, the model forward is gpt2_ref.py's float64 numpy.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref  # noqa: E402

KEYS = ["clean_loss", "recons_loss", "zero_abl_loss", "mean_abl_loss", "score", "score_mean_abl", "kl",
        "mse", "fvu", "l0", "dead_frac", "dense_frac", "tokens"]


def opt(argv, name, default, conv=str):
    if name in argv:
        i = argv.index(name)
        v = argv[i + 1]
        del argv[i:i + 2]
        return conv(v)
    return default


def flag(argv, name):
    if name in argv:
        argv.remove(name)
        return True
    return False


def make_sae(argv):
    d, f = opt(argv, "--d", 0, int), opt(argv, "--f", 0, int)
    arch, seed = opt(argv, "--arch", "relu"), opt(argv, "--seed", 0, int)
    scale, kind = opt(argv, "--scale", 1.0, float), opt(argv, "--kind", "random")
    out = argv[0]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    if kind == "identity":
        f = 2 * d
        eye = np.eye(d)
        p = {"W_enc": np.concatenate([eye, -eye], 1), "b_enc": np.zeros(f),
             "W_dec": np.concatenate([eye, -eye], 0), "b_dec": np.zeros(d)}
    elif kind == "zero":
        p = {"W_enc": np.zeros((d, f)), "b_enc": np.zeros(f), "W_dec": np.zeros((f, d)), "b_dec": np.zeros(d)}
    else:
        p = {"W_enc": rng.standard_normal((d, f)) * scale / np.sqrt(d), "b_enc": rng.standard_normal(f) * 0.1,
             "W_dec": rng.standard_normal((f, d)) * scale / np.sqrt(f), "b_dec": rng.standard_normal(d) * 0.1}
    if arch in ("batchtopk", "jumprelu"):
        p["threshold"] = np.abs(rng.standard_normal(f)) * 0.1
    if arch == "gated":
        p["b_gate"] = p.pop("b_enc")
        p["r_mag"], p["b_mag"] = rng.standard_normal(f) * 0.3, rng.standard_normal(f) * 0.1
    for k, v in p.items():
        np.save(os.path.join(out, k + ".npy"), v.astype(np.float32))


def sae_maps(sdir, arch, k, s):
    names = ["W_enc", "W_dec", "b_dec"] + (["b_gate", "r_mag", "b_mag"] if arch == "gated" else ["b_enc"])
    P = {n: np.load(os.path.join(sdir, n + ".npy")).astype(np.float64) for n in names}
    th = np.load(os.path.join(sdir, "threshold.npy")).astype(np.float64) if arch in ("batchtopk", "jumprelu") else None

    def encode(x):
        z = (s * x - P["b_dec"]) @ P["W_enc"]
        if arch == "gated":  # Rajamanoharan et al.: a gate and a rescaled magnitude on one W_enc
            mag = np.exp(P["r_mag"]) * z + P["b_mag"]
            return np.where(z + P["b_gate"] > 0, np.maximum(mag, 0), 0)
        pre = z + P["b_enc"]
        if arch == "relu":
            return np.maximum(pre, 0)
        if th is not None:
            return np.where((pre > th) & (pre > 0), pre, 0)
        f = np.zeros_like(pre)
        idx = np.argsort(-pre, axis=-1, kind="stable")[..., :k]
        np.put_along_axis(f, idx, np.maximum(np.take_along_axis(pre, idx, -1), 0), -1)
        return f

    def decode(f):
        return (f @ P["W_dec"] + P["b_dec"]) / s
    return encode, decode


def logprobs(mdir, out):
    """log-softmax of the logits, from the last residual of a forward."""
    cfg = json.load(open(mdir + "/config.json"))
    W = gpt2_ref.read_safetensors(mdir + "/model.safetensors")
    pre = "transformer." if "transformer.wte.weight" in W else ""
    x = out["blocks.%d.hook_resid_post" % (cfg["n_layer"] - 1)]
    h = gpt2_ref.layernorm(x, W[pre + "ln_f.weight"], W[pre + "ln_f.bias"], cfg.get("layer_norm_epsilon", 1e-5))
    z = h @ W.get("lm_head.weight", W[pre + "wte.weight"]).T
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def evaluate(argv):
    arch, k = opt(argv, "--arch", "relu"), opt(argv, "--k", 0, int)
    s, mean_path = opt(argv, "--norm-scale", 1.0, float), opt(argv, "--mean", None)
    pos0 = 0 if flag(argv, "--include-bos") else 1
    mdir, tokp, sdir, hook = argv
    tok = np.load(tokp).astype(np.int64)
    B, T = tok.shape
    encode, decode = sae_maps(sdir, arch, k, s)
    clean = gpt2_ref.forward(mdir, tok)
    x = clean[hook]
    xs = x[:, pos0:].reshape(-1, x.shape[-1])            # the counted rows
    mean = np.load(mean_path).astype(np.float64) if mean_path else xs.mean(0)
    f = encode(x)
    xhat = decode(f)

    def spliced(val):
        v = x.copy()
        v[:, pos0:] = val[:, pos0:] if val.ndim == 3 else val
        return gpt2_ref.forward(mdir, tok, {hook: v})
    rec, zero, mabl = spliced(xhat), spliced(np.zeros(x.shape[-1])), spliced(mean)
    L = {n: o["loss"].mean() for n, o in [("clean", clean), ("recons", rec), ("zero", zero), ("mean", mabl)]}
    lpc, lps = logprobs(mdir, clean)[:, pos0:T - 1], logprobs(mdir, rec)[:, pos0:T - 1]
    kl = (np.exp(lpc) * (lpc - lps)).sum(-1).mean()
    fs = f[:, pos0:].reshape(-1, f.shape[-1])
    err = ((xs - xhat[:, pos0:].reshape(xs.shape)) ** 2)
    fires = (fs > 0).sum(0)
    r = {"clean_loss": L["clean"], "recons_loss": L["recons"], "zero_abl_loss": L["zero"],
         "mean_abl_loss": L["mean"], "score": (L["zero"] - L["recons"]) / (L["zero"] - L["clean"]),
         "score_mean_abl": (L["mean"] - L["recons"]) / (L["mean"] - L["clean"]), "kl": kl,
         "mse": err.mean(), "fvu": err.sum() / ((xs - xs.mean(0)) ** 2).sum(), "l0": (fs > 0).sum(1).mean(),
         "dead_frac": (fires == 0).mean(), "dense_frac": (fires > 0.1 * len(fs)).mean(), "tokens": B * T}
    print(json.dumps({k2: float(v) if k2 != "tokens" else int(v) for k2, v in r.items()}))


def check(argv):
    tol = opt(argv, "--tol", 1e-4, float)
    got, ref = json.load(open(argv[0])), json.load(open(argv[1]))
    bad = 0
    for key in ref:
        g, w = got.get(key), ref[key]
        if g is None or w is None:
            ok = g is None and w is None
            print("%s %s: got %s ref %s" % ("ok" if ok else "FAIL", key, g, w))
        else:
            d = abs(g - w) / max(abs(w), 1e-3)
            ok = d <= tol
            print("%s %s: got %.10g ref %.10g rel %.3g tol %g" % ("ok" if ok else "FAIL", key, g, w, d, tol))
        bad += not ok
    sys.exit(1 if bad else 0)


def main():
    cmd, argv = sys.argv[1], sys.argv[2:]
    {"sae": make_sae, "eval": evaluate, "check": check}[cmd](argv)


if __name__ == "__main__":
    main()
