#!/usr/bin/python3
"""topk_ref.py: brute-force numpy references for sae-encode and topk-ctx.

  topk_ref.py mk DIR --arch A --d D --f F [--k K] [--b B] [--t T] [--pos0 P]
             [--in-scale S] [--sae-scale S] [--seed N] [--docs]
      writes DIR/{W_enc,b_enc,W_dec,b_dec[,threshold]}.npy (an SAE) and
      DIR/{acts,tokens[,doc,offset]}.npy (context windows; acts stored as
      raw * in-scale).
  topk_ref.py encode DIR --arch A [--k K] [--in-scale S] [--sae-scale S]
             [--features LIST] [--tol X] < sae-encode output as `tsz json --full`
      recomputes relu/topk/batchtopk in float64 and compares (max diff).
  topk_ref.py topk --k K --w W --r R --nb NB --npb NPB --seed S FEAT.json TOPK.json
      recomputes every feature record and dict_stats of topk-ctx from the
      sae-encode records (FEAT.json) by brute force and compares.
Prints "max diff ..." / "mismatch ..." lines and "all ok" at the end; exit 1
on any mismatch.
"""
import json
import sys
import argparse
import numpy as np

M64 = (1 << 64) - 1
bad = []


def mismatch(msg):
    bad.append(msg)
    print("mismatch: " + msg)


def finish():
    if bad:
        sys.exit(1)
    print("all ok")


def feature_list(s, F):
    if not s:
        return list(range(F))
    out = set()
    for part in s.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return sorted(out)


def cmd_mk(a):
    rng = np.random.default_rng(a.seed)
    D, F = a.d, a.f
    W_enc = rng.standard_normal((D, F)).astype(np.float32) / np.sqrt(D)
    b_enc = (rng.standard_normal(F) * 0.2 - 0.5).astype(np.float32)
    b_enc[F - 1] = -100  # a dead feature
    W_dec = rng.standard_normal((F, D)).astype(np.float32) / np.sqrt(F)
    b_dec = (rng.standard_normal(D) * 0.1).astype(np.float32)
    for n, v in [("W_enc", W_enc), ("b_enc", b_enc), ("W_dec", W_dec), ("b_dec", b_dec)]:
        np.save(f"{a.dir}/{n}.npy", v)
    if a.arch == "batchtopk":
        np.save(f"{a.dir}/threshold.npy", (rng.random(F) * 0.5).astype(np.float32))
    Tp = a.t - a.pos0
    raw = rng.standard_normal((a.b, Tp, D)).astype(np.float32) / np.float32(a.sae_scale)
    np.save(f"{a.dir}/acts.npy", (raw * np.float32(a.in_scale)).astype(np.float32))
    tok = rng.integers(0, 300, (a.b, a.t)).astype(np.int32)
    tok[:, 0] = 50256
    np.save(f"{a.dir}/tokens.npy", tok)
    if a.docs:
        np.save(f"{a.dir}/doc.npy", (np.arange(a.b) // 3).astype(np.int64))
        np.save(f"{a.dir}/offset.npy", ((np.arange(a.b) % 3) * (a.t - 1)).astype(np.int64))


def read_records(f):
    return [json.loads(line) for line in f if line.strip()]


def tensor(rec, name, dtype):
    t = rec["tensors"][name]
    return np.array(t["data"], dtype=dtype).reshape(t["shape"])


def csr_dense(rec, F):
    if "features" in rec["tensors"]:
        x = tensor(rec, "features", np.float32)
        if "feature_ids" in rec["tensors"]:
            full = np.zeros((x.shape[0], F), np.float32)
            full[:, tensor(rec, "feature_ids", np.int64)] = x
            return full
        return x
    ip = tensor(rec, "indptr", np.int64)
    ix = tensor(rec, "indices", np.int64)
    v = tensor(rec, "values", np.float32)
    out = np.zeros((len(ip) - 1, F), np.float32)
    for r in range(len(ip) - 1):
        out[r, ix[ip[r]:ip[r + 1]]] = v[ip[r]:ip[r + 1]]
    return out


def cmd_encode(a):
    d = a.dir
    W_enc = np.load(f"{d}/W_enc.npy").astype(np.float64)
    b_enc = np.load(f"{d}/b_enc.npy").astype(np.float64)
    b_dec = np.load(f"{d}/b_dec.npy").astype(np.float64)
    F = W_enc.shape[1]
    x = np.load(f"{d}/{a.acts}.npy").astype(np.float64)
    x = x.reshape(-1, x.shape[-1]) / a.in_scale
    pre = (a.sae_scale * x - b_dec) @ W_enc + b_enc
    if a.arch == "relu":
        f = np.maximum(pre, 0)
    elif a.arch == "batchtopk":
        th = np.load(f"{d}/threshold.npy").astype(np.float64)
        f = np.where((pre > th) & (pre > 0), pre, 0)
    else:
        f = np.zeros_like(pre)
        idx = np.argsort(-pre, axis=1, kind="stable")[:, :a.k]
        rows = np.arange(pre.shape[0])[:, None]
        f[rows, idx] = np.maximum(pre[rows, idx], 0)
    sel = feature_list(a.features, F)
    mask = np.zeros(F, bool)
    mask[sel] = True
    f[:, ~mask] = 0
    recs = read_records(sys.stdin)
    got = np.concatenate([csr_dense(r, F) for r in recs]) if recs else np.zeros((0, F))
    if got.shape != f.shape:
        mismatch(f"shape {got.shape} vs reference {f.shape}")
        return finish()
    diff = np.abs(got - f).max() if f.size else 0.0
    scale = max(np.abs(f).max() if f.size else 0.0, 1.0)
    print(f"max diff {diff:.3g} (scale {scale:.3g}, nnz {np.count_nonzero(got)} of {got.size})")
    if diff > a.tol * scale:
        mismatch(f"max diff {diff:.3g} > {a.tol} * {scale:.3g}")
    if np.count_nonzero(got[:, ~mask]):
        mismatch("unselected features are nonzero")
    finish()


def mix64(z):
    z = (z + 0x9e3779b97f4a7c15) & M64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def khash(seed, salt, f, g):
    h = mix64(seed ^ mix64(salt))
    h = mix64(h ^ f)
    for v in g:
        h = mix64(h ^ (v & M64))
    return h


def hist_bin(v):
    v = np.float32(v)
    if v < np.float32(2.0 ** -12):
        return 0
    m, e = np.frexp(v)
    h = 2 * (int(e) - 1) + (1 if m >= np.float32(0.70710678) else 0)
    return min(h + 25, 47)


class Ex:
    pass


def collect(feat_recs, F):
    """Every token where a feature fires, with what its example would be."""
    per = {f: [] for f in range(F)}
    rows = []  # (tokens row, acts dense rows, doc, off, pos0)
    n_tokens = 0
    nwin = 0
    for rec in feat_recs:
        tok = tensor(rec, "tokens", np.int64)
        pos0 = rec.get("pos0", 0)
        B, T = tok.shape
        Tp = T - pos0
        dense = csr_dense(rec, F).reshape(B, Tp, F)
        docs = tensor(rec, "doc", np.int64) if "doc" in rec["tensors"] else None
        offs = tensor(rec, "offset", np.int64) if "offset" in rec["tensors"] else None
        for b in range(B):
            doc = int(docs[b]) if docs is not None else nwin + b
            off = int(offs[b]) if offs is not None else 1
            rows.append((tok[b], dense[b], doc, off, pos0))
            ri = len(rows) - 1
            for f in np.nonzero((dense[b] > 0).any(axis=0))[0]:
                for tp in np.nonzero(dense[b][:, f] > 0)[0]:
                    per[int(f)].append((ri, int(tp), float(dense[b][tp, f])))
        n_tokens += B * Tp
        nwin += B
    return per, rows, n_tokens


def window(rows, ri, tp, f, W):
    tok, dense, doc, off, pos0 = rows[ri]
    Tp = dense.shape[0]
    s = max(tp - 3 * W // 4, 0)
    s = min(s, max(0, Tp - W))
    n = min(W, Tp)
    t = np.full(W, -1, np.int64)
    act = np.zeros(W, np.float32)
    t[:n] = tok[pos0 + s:pos0 + s + n]
    act[:n] = dense[s:s + n, f]
    return t, act, [doc, off + pos0 + s - 1, tp - s], (doc, off, pos0 + tp)


def check_set(rec, prefix, want, rows, f, W):
    got_t = tensor(rec, prefix + "_tokens", np.int64)
    got_a = tensor(rec, prefix + "_acts", np.float32)
    got_s = tensor(rec, prefix + "_src", np.int64)
    if len(got_t) != len(want):
        return mismatch(f"feature {f}: {prefix}: {len(got_t)} examples, reference {len(want)}")
    for i, (ri, tp) in enumerate(want):
        t, act, src, _ = window(rows, ri, tp, f, W)
        if not (np.array_equal(got_t[i], t) and np.array_equal(got_a[i], act) and list(got_s[i]) == src):
            return mismatch(f"feature {f}: {prefix} example {i} differs (src {list(got_s[i])} vs {src})")


def cmd_topk(a):
    with open(a.feat) as fh:
        feat = read_records(fh)
    with open(a.topk) as fh:
        out = read_records(fh)
    F = feat[0]["f"]
    per, rows, n_tokens = collect(feat, F)
    recs = [r for r in out if r.get("kind") == "feature"]
    stats = [r for r in out if r.get("kind") == "dict_stats"]
    sel = feature_list(a.features, F)
    if [r["feature"] for r in recs] != sel:
        mismatch("feature records are not the selected features in order")
        return finish()
    fired_all = []
    maxdiff_mean = 0.0
    for rec in recs:
        f = rec["feature"]
        ev = per[f]
        fired_all.append(len(ev))
        if rec["n_fired"] != len(ev) or rec["n_tokens"] != n_tokens:
            mismatch(f"feature {f}: n_fired {rec['n_fired']} / {rec['n_tokens']} vs {len(ev)} / {n_tokens}")
        vals = np.array([v for _, _, v in ev], np.float32)
        mx = float(vals.max()) if len(vals) else 0.0
        if np.float32(rec["max_act"]) != np.float32(mx):
            mismatch(f"feature {f}: max_act {rec['max_act']} vs {mx}")
        mean = sum(round(float(v) * 2.0 ** 32) for v in vals) / 2.0 ** 32 / len(vals) if len(vals) else 0.0
        maxdiff_mean = max(maxdiff_mean, abs(rec["mean_act"] - mean))
        # meta reals print with 9 significant digits in `tsz json`
        if abs(rec["mean_act"] - mean) > 1e-8 * max(1.0, abs(mean)):
            mismatch(f"feature {f}: mean_act {rec['mean_act']} vs {mean}")
        h = np.zeros(48, np.int64)
        for v in vals:
            h[hist_bin(v)] += 1
        if not np.array_equal(tensor(rec, "act_hist", np.int64), h):
            mismatch(f"feature {f}: act_hist differs")
        # top: the maximum of each context row (earliest on ties), best first
        best = {}
        for ri, tp, v in ev:
            if ri not in best or v > best[ri][1]:
                best[ri] = (tp, v)
        cands = sorted(best.items(), key=lambda kv: (-kv[1][1],) + window(rows, kv[0], kv[1][0], f, a.w)[3])
        check_set(rec, "top", [(ri, tp) for ri, (tp, _) in cands[:a.k]], rows, f, a.w)
        for prefix, salt, cap in (("rand", 0x72616e64, a.r), ("band", 0x62616e64, a.nb * a.npb)):
            keyed = sorted((khash(a.seed, salt, f, window(rows, ri, tp, f, a.w)[3]),
                            window(rows, ri, tp, f, a.w)[3], ri, tp, v) for ri, tp, v in ev)[:cap]
            if prefix == "band":
                keyed.sort(key=lambda x: (-x[4],) + x[1])
                ids = [i * a.nb // len(keyed) for i in range(len(keyed))]
                if list(tensor(rec, "band_id", np.int64)) != ids:
                    mismatch(f"feature {f}: band_id differs")
            check_set(rec, prefix, [(ri, tp) for _, _, ri, tp, _ in keyed], rows, f, a.w)
    print(f"features {len(recs)}, tokens {n_tokens}, max mean_act diff {maxdiff_mean:.3g}")
    if len(stats) != 1:
        mismatch("not one dict_stats record")
        return finish()
    s = stats[0]
    fired = np.array(fired_all)
    dens = fired / n_tokens
    if s["dead"] != int((fired == 0).sum()) or s["dense"] != int((dens > 0.1).sum()) or s["n_tokens"] != n_tokens:
        mismatch(f"dict_stats dead/dense/n_tokens {s['dead']}/{s['dense']}/{s['n_tokens']}")
    if not np.array_equal(tensor(s, "density", np.float32), dens.astype(np.float32)):
        mismatch("dict_stats density differs")
    h = np.zeros(32, np.int64)
    for d in dens[fired > 0]:
        h[min(max(int(np.floor((np.log10(d) + 8) * 4)), 0), 31)] += 1
    if not np.array_equal(tensor(s, "log10_density_hist", np.int64), h):
        mismatch(f"log10_density_hist {tensor(s, 'log10_density_hist', np.int64)} vs {h}")
    finish()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mk")
    m.add_argument("dir")
    e = sub.add_parser("encode")
    e.add_argument("dir")
    for q in (m, e):
        q.add_argument("--arch", default="relu")
        q.add_argument("--k", type=int, default=0)
        q.add_argument("--in-scale", type=float, default=1.0)
        q.add_argument("--sae-scale", type=float, default=1.0)
    m.add_argument("--d", type=int, required=True)
    m.add_argument("--f", type=int, required=True)
    m.add_argument("--b", type=int, default=6)
    m.add_argument("--t", type=int, default=9)
    m.add_argument("--pos0", type=int, default=1)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--docs", action="store_true")
    e.add_argument("--features", default="")
    e.add_argument("--acts", default="acts")
    e.add_argument("--tol", type=float, default=1e-5)
    t = sub.add_parser("topk")
    for n in ("k", "w", "r", "nb", "npb", "seed"):
        t.add_argument("--" + n, type=int, required=True)
    t.add_argument("--features", default="")
    t.add_argument("feat")
    t.add_argument("topk")
    a = p.parse_args()
    {"mk": cmd_mk, "encode": cmd_encode, "topk": cmd_topk}[a.cmd](a)


if __name__ == "__main__":
    main()
