#!/usr/bin/env python3
"""explain-check.py: check explain-gpt4 output against its input with numpy,
independently of the C scoring code.

  explain-check.py TOPK.json OUT.json [--n-explain N] [--n-score N]
                   [--pred-values V,V...] [--min-score S] [--planted V]

TOPK.json and OUT.json are `tsz json --full` of the input and the output.
For every ok record with simulation tensors: the held-out rows must be top
rows n_explain..n_explain+n_score-1 and random rows 0..n_score-1 of the
input (never a shown row); score, score_top and score_random must equal
numpy's Pearson correlation of sim_acts and sim_pred (padding skipped).
--pred-values: every simulated value is one of these. --min-score: every
score is above it. --planted V: the explanation names the planted token
w<10 + feature % (V - 10)>, as mk-topk plants it."""
import argparse, json, math, sys
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("topk")
ap.add_argument("out")
ap.add_argument("--n-explain", type=int, default=10)
ap.add_argument("--n-score", type=int, default=10)
ap.add_argument("--pred-values", default=None)
ap.add_argument("--min-score", type=float, default=None)
ap.add_argument("--planted", type=int, default=None)
a = ap.parse_args()


def load(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def t(rec, name, dtype):
    return np.array(rec["tensors"][name]["data"], dtype=dtype).reshape(rec["tensors"][name]["shape"])


def pearson(x, y):
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x.astype(np.float64), y.astype(np.float64))[0, 1])


inp = {r["feature"]: r for r in load(a.topk) if r.get("kind") == "feature"}
bad, maxdiff, checked = [], 0.0, 0
for r in load(a.out):
    f = r["feature"]
    if r["status"] != "ok" or "sim_pred" not in r.get("tensors", {}):
        continue
    src = inp[f]
    ne, ns = a.n_explain, a.n_score
    tt, ta = t(src, "top_tokens", np.int32), t(src, "top_acts", np.float32)
    rt, ra = t(src, "rand_tokens", np.int32), t(src, "rand_acts", np.float32)
    want_tok = np.concatenate([tt[ne:ne + ns], rt[:ns]])
    want_act = np.concatenate([ta[ne:ne + ns], ra[:ns]])
    tok, act, pred = t(r, "sim_tokens", np.int32), t(r, "sim_acts", np.float32), t(r, "sim_pred", np.float32)
    is_top = t(r, "sim_is_top", np.uint8).astype(bool)
    if tok.shape != want_tok.shape or (tok != want_tok).any() or (act != want_act).any():
        bad.append("feature %d: held-out rows are not top %d..%d and random 0..%d" % (f, ne, ne + ns - 1, ns - 1))
        continue
    for shown in tt[:ne]:
        if any((row == shown).all() for row in tok):
            bad.append("feature %d: a shown example is in the held-out set" % f)
    m = tok >= 0
    ref = {"score": pearson(act[m], pred[m]),
           "score_top": pearson(act[is_top][m[is_top]], pred[is_top][m[is_top]]),
           "score_random": pearson(act[~is_top][m[~is_top]], pred[~is_top][m[~is_top]])}
    for k, v in ref.items():
        got = r[k]
        if got is None and math.isnan(v):
            continue
        if got is None or math.isnan(v) or abs(got - v) > 1e-5:
            bad.append("feature %d: %s %r but numpy says %r" % (f, k, got, v))
        else:
            maxdiff = max(maxdiff, abs(got - v))
    if a.pred_values:
        vals = [float(v) for v in a.pred_values.split(",")]
        off = [p for p in pred[m].ravel() if min(abs(p - v) for v in vals) > 1e-4]
        if off:
            bad.append("feature %d: simulated value %r is not one of %s" % (f, off[0], a.pred_values))
    if a.min_score is not None and not (r["score"] is not None and r["score"] > a.min_score):
        bad.append("feature %d: score %r is not above %g" % (f, r["score"], a.min_score))
    if a.planted is not None and ('w%d"' % (10 + f % (a.planted - 10))) not in (r["explanation"] or ""):
        bad.append("feature %d: explanation %r misses the planted token" % (f, r["explanation"]))
    checked += 1
for b in bad:
    print(b, file=sys.stderr)
print("checked %d features, max |score - numpy| %.3g" % (checked, maxdiff))
sys.exit(1 if bad or not checked else 0)
