#!/usr/bin/python3
"""logits_ref.py: an independent numpy reference for topk-ctx's logit effects.

  logits_ref.py check MODELDIR W_DEC.npy HOOK TOPK.json [--tol 1e-4]
      TOPK.json: topk-ctx output as `tsz json --full`. For every feature
      record, recompute in float64, the way SAEDashboard does on a
      TransformerLens model (fold_ln, center_writing_weights,
      center_unembed), written out step by step rather than folded:
        u = W_dec[f] / |W_dec[f]|
        r = u @ mlp.c_proj[layer] for mlp.hook_pre/hook_post, else u
        r = r - mean(r)                       (ln_f centres)
        logits = (ln_f.weight * r) @ wte.T    (gamma, then the unembedding)
        logits -= mean(logits)                (W_U centred over the vocabulary)
      and compare: the top and bottom K ids must be numpy's (a swap is
      accepted only between values within tol: ties), the values within
      tol * max|logits|, and every id must have a token_strs entry when the
      record has token_strs.
Prints "max diff ...", "mismatch ..." lines and "all ok"; exit 1 on a mismatch.
Shares nothing with the C code: safetensors is read by gpt2_ref.py's reader.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_ref import read_safetensors  # noqa: E402


def weights(d):
    w = read_safetensors(os.path.join(d, "model.safetensors"))
    return {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in w.items()}


def reference(w, W_dec, hook, f):
    parts = hook.split(".")
    layer = int(parts[1])
    u = W_dec[f].astype(np.float64)
    u = u / np.linalg.norm(u)
    r = u @ w["h.%d.mlp.c_proj.weight" % layer] if parts[2] == "mlp" else u
    r = r - r.mean()
    logits = (w["ln_f.weight"] * r) @ w["wte.weight"].T
    return logits - logits.mean()


def check(argv):
    import argparse
    p = argparse.ArgumentParser(prog="logits_ref.py check")
    p.add_argument("model")
    p.add_argument("w_dec")
    p.add_argument("hook")
    p.add_argument("topk")
    p.add_argument("--tol", type=float, default=1e-4)
    a = p.parse_args(argv)
    w = weights(a.model)
    W_dec = np.load(a.w_dec)
    bad, worst, n = [], 0.0, 0
    with open(a.topk) as fh:
        recs = [json.loads(line) for line in fh if line.strip()]
    for rec in recs:
        if rec.get("kind") != "feature":
            continue
        f = rec["feature"]
        ref = reference(w, W_dec, a.hook, f)
        scale = np.abs(ref).max()
        strs = rec.get("token_strs")
        for side, order in (("top", np.argsort(-ref, kind="stable")), ("bot", np.argsort(ref, kind="stable"))):
            ids = np.array(rec["tensors"]["logit_%s_ids" % side]["data"], dtype=np.int64)
            vals = np.array(rec["tensors"]["logit_%s_vals" % side]["data"], dtype=np.float64)
            K = len(ids)
            want = order[:K]
            # a different id at a place is a tie only if numpy's values there are equal within tol
            for i in range(K):
                if ids[i] != want[i] and abs(ref[ids[i]] - ref[want[i]]) > a.tol * scale:
                    bad.append("feature %d: %s %d is token %d (%.6g), numpy says %d (%.6g)"
                               % (f, side, i, ids[i], ref[ids[i]], want[i], ref[want[i]]))
            diff = np.abs(vals - ref[ids]).max() / scale
            worst = max(worst, diff)
            if diff > a.tol:
                bad.append("feature %d: %s values differ by %.3g of max|logit|" % (f, side, diff))
            if strs is not None:
                for t in ids:
                    if str(int(t)) not in strs:
                        bad.append("feature %d: token %d has no token_strs entry" % (f, t))
        n += 1
    if not n:
        bad.append("no feature records")
    print("max diff %.3g over %d features" % (worst, n))
    for b in bad:
        print("mismatch: " + b)
    if bad:
        sys.exit(1)
    print("all ok")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "check":
        sys.exit(__doc__)
    check(sys.argv[2:])
