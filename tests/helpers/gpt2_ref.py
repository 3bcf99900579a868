#!/usr/bin/python3
"""gpt2_ref.py: an independent numpy reference for the GPT-2 forward, and a
writer of tiny random Hugging Face checkpoints, for saepipe's tests.

  gpt2_ref.py make DIR [--layers L] [--embd C] [--heads NH] [--vocab V]
              [--positions P] [--inner F] [--dtype f32|f16|bf16] [--prefix]
              [--lm-head same|own] [--attn-bias] [--seed S] [--eps E] [--shards N]
      write DIR/config.json and DIR/model.safetensors (the safetensors
      format written by hand: 8-byte header length, JSON header, data);
      --shards N: instead N files model-0000i-of-0000N.safetensors, the
      tensors in order cut into N runs, and model.safetensors.index.json
      with the "weight_map" Hugging Face writes for sharded checkpoints
  gpt2_ref.py forward DIR TOKENS.npy OUT.npz [HOOK=zero|HOOK=mean:FILE.npy|HOOK=sae:PREFIX]...
      (sae:PREFIX: PREFIX.json {"arch", "k", "norm_scale"} and PREFIX.W_enc.npy,
      .b_enc, .W_dec, .b_dec[, .threshold] as lib/sae.h defines them)
      every hook of every layer (TransformerLens names) and "loss" (B,T-1),
      computed in float64 from the file's own values
  gpt2_ref.py windows VOCABDIR TEXT OUT.npy CTX
      tokenize ASCII TEXT with GPT-2's BPE (vocab.json, merges.txt) into
      windows (rows, CTX) i32, each BOS (50256) + CTX-1 tokens
  gpt2_ref.py check REF.npz [--tol 1e-4] NAME=FILE.npy...
      compare arrays with the reference: max |diff| / max |ref| per name;
      prints one line each, exits 1 if any exceeds tol or shapes differ

Nothing here shares code with the C forward: safetensors is parsed with
json + numpy, the maths is float64 numpy.
"""
import json
import struct
import sys

import numpy as np

HOOKS = ["hook_resid_pre", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post",
         "hook_mlp_out", "hook_resid_post"]


def to_bf16_bits(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, tensors, dtype):
    header, blobs, off = {}, [], 0
    for name, a in tensors:
        if dtype == "f32" or a.dtype == np.bool_:
            raw, st = (a.astype(np.uint8).tobytes(), "BOOL") if a.dtype == np.bool_ else \
                (a.astype("<f4").tobytes(), "F32")
        elif dtype == "f16":
            raw, st = a.astype("<f2").tobytes(), "F16"
        else:
            raw, st = to_bf16_bits(a).astype("<u2").tobytes(), "BF16"
        header[name] = {"dtype": st, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    data = buf[8 + n:]
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        raw = data[b:e]
        if v["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4").astype(np.float64)
        elif v["dtype"] == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float64)
        elif v["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        else:
            a = np.frombuffer(raw, np.uint8)
        out[k] = a.reshape(v["shape"])
    return out


def make(argv):
    import argparse
    p = argparse.ArgumentParser(prog="gpt2_ref.py make")
    p.add_argument("dir")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embd", type=int, default=48)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--vocab", type=int, default=97)
    p.add_argument("--positions", type=int, default=16)
    p.add_argument("--inner", type=int, default=None)
    p.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    p.add_argument("--prefix", action="store_true", help="keys start with transformer.")
    p.add_argument("--lm-head", choices=["none", "same", "own"], default="none")
    p.add_argument("--attn-bias", action="store_true", help="add the attn.bias mask buffers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eps", type=float, default=1e-5)
    p.add_argument("--shards", type=int, default=0)
    a = p.parse_args(argv)
    import os
    os.makedirs(a.dir, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    C, L, V, P = a.embd, a.layers, a.vocab, a.positions
    F = a.inner or 4 * C

    def w(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    pre = "transformer." if a.prefix else ""
    t = [(pre + "wte.weight", w(V, C, scale=1.0)), (pre + "wpe.weight", w(P, C, scale=0.5))]
    for l in range(L):
        h = pre + "h.%d." % l
        t += [(h + "ln_1.weight", 1 + w(C, scale=0.2)), (h + "ln_1.bias", w(C, scale=0.2))]
        if a.attn_bias:
            t += [(h + "attn.bias", np.tril(np.ones((1, 1, P, P), dtype=np.bool_))),
                  (h + "attn.masked_bias", np.array([-1e4], dtype=np.float32))]
        t += [(h + "attn.c_attn.weight", w(C, 3 * C, scale=1.5 / np.sqrt(C))),
              (h + "attn.c_attn.bias", w(3 * C, scale=0.2)),
              (h + "attn.c_proj.weight", w(C, C, scale=1 / np.sqrt(C))),
              (h + "attn.c_proj.bias", w(C, scale=0.1)),
              (h + "ln_2.weight", 1 + w(C, scale=0.2)), (h + "ln_2.bias", w(C, scale=0.2)),
              (h + "mlp.c_fc.weight", w(C, F, scale=1 / np.sqrt(C))), (h + "mlp.c_fc.bias", w(F, scale=0.2)),
              (h + "mlp.c_proj.weight", w(F, C, scale=1 / np.sqrt(F))), (h + "mlp.c_proj.bias", w(C, scale=0.1))]
    t += [(pre + "ln_f.weight", 1 + w(C, scale=0.2)), (pre + "ln_f.bias", w(C, scale=0.2))]
    if a.lm_head == "same":
        t.append(("lm_head.weight", t[0][1]))
    elif a.lm_head == "own":
        t.append(("lm_head.weight", w(V, C, scale=1.0)))
    if a.shards:
        cut = [len(t) * i // a.shards for i in range(a.shards + 1)]
        wmap = {}
        for i in range(a.shards):
            name = "model-%05d-of-%05d.safetensors" % (i + 1, a.shards)
            write_safetensors(os.path.join(a.dir, name), t[cut[i]:cut[i + 1]], a.dtype)
            wmap.update({k: name for k, _ in t[cut[i]:cut[i + 1]]})
        with open(os.path.join(a.dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(v.nbytes for _, v in t)}, "weight_map": wmap}, f, indent=2)
    else:
        write_safetensors(os.path.join(a.dir, "model.safetensors"), t, a.dtype)
    cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": C, "n_layer": L,
           "n_head": a.heads, "n_positions": P, "n_ctx": P, "vocab_size": V, "layer_norm_epsilon": a.eps,
           "activation_function": "gelu_new", "n_inner": a.inner}
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def layernorm(x, w, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def gelu_new(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def forward(d, tokens, patches=None):
    """Every hook and the loss; patches maps a hook name to "zero" or a (D)
    mean vector that replaces the value there (the rest runs on it)."""
    patches = patches or {}
    cfg = json.load(open(d + "/config.json"))
    try:
        W = read_safetensors(d + "/model.safetensors")
    except FileNotFoundError:
        W = {}
        for f in sorted(set(json.load(open(d + "/model.safetensors.index.json"))["weight_map"].values())):
            W.update(read_safetensors(d + "/" + f))
    pre = "transformer." if "transformer.wte.weight" in W else ""
    g = lambda k: W[pre + k]
    C, NH, eps = cfg["n_embd"], cfg["n_head"], cfg.get("layer_norm_epsilon", 1e-5)
    B, T = tokens.shape
    hs = C // NH
    out = {}

    def tap(name, v):
        p = patches.get(name)
        if isinstance(p, dict):
            v = sae_reconstruct(p, v)
        elif isinstance(p, str):
            v = np.zeros_like(v)
        elif p is not None:
            v = np.broadcast_to(p, v.shape).astype(np.float64)
        out[name] = v.copy()
        return v

    x = g("wte.weight")[tokens] + g("wpe.weight")[np.arange(T)]
    mask = np.tril(np.ones((T, T), dtype=bool))
    for l in range(cfg["n_layer"]):
        p = lambda k: g("h.%d.%s" % (l, k))
        name = lambda k: "blocks.%d.%s" % (l, k)
        x = tap(name("hook_resid_pre"), x)
        h = layernorm(x, p("ln_1.weight"), p("ln_1.bias"), eps)
        qkv = h @ p("attn.c_attn.weight") + p("attn.c_attn.bias")
        q, k, v = np.split(qkv, 3, axis=-1)
        q = q.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
        k = k.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
        v = v.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)
        s = np.where(mask, s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        y = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        attn_out = tap(name("hook_attn_out"), y @ p("attn.c_proj.weight") + p("attn.c_proj.bias"))
        x = tap(name("hook_resid_mid"), x + attn_out)
        h = layernorm(x, p("ln_2.weight"), p("ln_2.bias"), eps)
        fc = tap(name("mlp.hook_pre"), h @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias"))
        act = tap(name("mlp.hook_post"), gelu_new(fc))
        mlp_out = tap(name("hook_mlp_out"), act @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias"))
        x = tap(name("hook_resid_post"), x + mlp_out)
    h = layernorm(x, g("ln_f.weight"), g("ln_f.bias"), eps)
    lm = W.get("lm_head.weight", g("wte.weight"))
    z = h @ lm.T
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    tgt = tokens[:, 1:]
    out["loss"] = -np.take_along_axis(logp[:, :-1], tgt[..., None], -1)[..., 0]
    return out


def load_sae(prefix):
    """An SAE as PREFIX.json {"arch","k","norm_scale"} + PREFIX.W_enc.npy etc."""
    sae = json.load(open(prefix + ".json"))
    for k in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
        try:
            sae[k] = np.load("%s.%s.npy" % (prefix, k)).astype(np.float64)
        except FileNotFoundError:
            pass
    return sae


def sae_reconstruct(sae, x):
    """The maps of lib/sae.h, in float64: pre = (s x - b_dec) W_enc + b_enc,
    f by arch, x_hat = (f W_dec + b_dec) / s."""
    s = sae.get("norm_scale", 1.0)
    pre = (s * x - sae["b_dec"]) @ sae["W_enc"] + sae["b_enc"]
    if sae["arch"] == "relu":
        f = np.maximum(pre, 0)
    elif sae["arch"] == "topk":
        k = sae["k"]
        kth = -np.sort(-pre, axis=-1)[..., k - 1:k]
        f = np.where(pre >= kth, np.maximum(pre, 0), 0)
    else:
        f = np.where((pre > sae["threshold"]) & (pre > 0), pre, 0)
    return (f @ sae["W_dec"] + sae["b_dec"]) / s


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def bpe_encode(d, text):
    """GPT-2 BPE for ASCII text (Python's re lacks \\p{L}; for ASCII the
    pattern below splits as GPT-2's does)."""
    import re
    enc = json.load(open(d + "/vocab.json"))
    merges = [tuple(l.split()) for l in open(d + "/merges.txt").read().split("\n")[1:] if l.strip()]
    rank = {m: i for i, m in enumerate(merges)}
    b2u = bytes_to_unicode()
    pat = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")
    ids = []
    for tok in pat.findall(text):
        word = [b2u[b] for b in tok.encode()]
        while len(word) > 1:
            pairs = [(rank.get((word[i], word[i + 1]), 1 << 30), i) for i in range(len(word) - 1)]
            r, i = min(pairs)
            if r == 1 << 30:
                break
            a, b = word[i], word[i + 1]
            out, j = [], 0
            while j < len(word):
                if j < len(word) - 1 and word[j] == a and word[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(word[j])
                    j += 1
            word = out
        ids += [enc[w] for w in word]
    return ids


def windows(argv):
    """windows VOCABDIR TEXT OUT.npy CTX: BOS + CTX-1 tokens per row"""
    ids = bpe_encode(argv[0], open(argv[1]).read())
    ctx = int(argv[3])
    n = len(ids) // (ctx - 1)
    a = np.array(ids[:n * (ctx - 1)], dtype=np.int32).reshape(n, ctx - 1)
    np.save(argv[2], np.concatenate([np.full((n, 1), 50256, dtype=np.int32), a], axis=1))


def check(argv):
    ref = np.load(argv[0])
    tol, bad = 1e-4, 0
    rest = argv[1:]
    if rest and rest[0] == "--tol":
        tol, rest = float(rest[1]), rest[2:]
    for arg in rest:
        name, path = arg.split("=", 1)
        got = np.load(path).astype(np.float64)
        want = ref[name]
        if got.shape != want.shape:
            print("%s: shape %s, reference %s" % (name, got.shape, want.shape))
            bad += 1
            continue
        scale = max(np.abs(want).max() if want.size else 0.0, 1e-6)
        d = np.abs(got - want).max() if want.size else 0.0
        ok = d / scale <= tol
        print("%s %s: max diff %.3g rel %.3g tol %g" % ("ok" if ok else "FAIL", name, d, d / scale, tol))
        bad += not ok
    sys.exit(1 if bad else 0)


def main():
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "make":
        make(argv)
    elif cmd == "forward":
        tokens = np.load(argv[1]).astype(np.int64)
        patches = {}
        for a in argv[3:]:
            hook, what = a.split("=", 1)
            if what == "zero":
                patches[hook] = "zero"
            elif what.startswith("sae:"):
                patches[hook] = load_sae(what[4:])
            else:
                patches[hook] = np.load(what.split(":", 1)[1]).astype(np.float64)
        np.savez(argv[2], **forward(argv[0], tokens, patches))
    elif cmd == "check":
        check(argv)
    elif cmd == "windows":
        windows(argv)
    else:
        sys.exit("gpt2_ref.py: unknown command " + cmd)


if __name__ == "__main__":
    main()
