#!/usr/bin/env python3
"""cmp_saes.py DIR: two relu SAEs whose relations are known, for t4300.

D = 16, directions on the standard basis e0..e15 so that every cosine is
exact. Small dictionary S (F = 4): e0, e1, e2, e3. Large L (F = 8):
  L0, L1 = (e0 +- 0.5 e4)/|.|       children of S0 (cosine 0.894)
  L2, L3 = (e1 +- 0.5 e5)/|.|, L4 = (e1 + 0.5 e6)/|.|   children of S1
  L5 = e2                            the one child of S2 (cosine 1)
  L6 = e7                            no parent (cosine 0 with all of S)
  L7 = (e3 + e9)/|.|                 cosine 0.707 with S3, but S3's encoder
                                     bias (-10) keeps it silent where L7 fires:
                                     a child by the decoder, not by activations
Encoders are the decoders' transposes (b_enc 0) except S3's bias. Rows
(N = 400): 3 x (a random positive multiple of one L direction, cycling
through L0..L7), so every large latent fires on 50 rows.
Writes S/ and L/ (W_enc, b_enc, W_dec, b_dec .npy) and acts.npy.
"""
import os
import sys

import numpy as np

D = 16


def unit(v):
    return v / np.linalg.norm(v)


def e(i):
    v = np.zeros(D, np.float32)
    v[i] = 1
    return v


def save(d, W_dec, b_enc):
    os.makedirs(d, exist_ok=True)
    W_dec = np.asarray(W_dec, np.float32)
    np.save(os.path.join(d, "W_dec.npy"), W_dec)
    np.save(os.path.join(d, "W_enc.npy"), np.ascontiguousarray(W_dec.T))
    np.save(os.path.join(d, "b_enc.npy"), np.asarray(b_enc, np.float32))
    np.save(os.path.join(d, "b_dec.npy"), np.zeros(D, np.float32))


def main():
    out = sys.argv[1]
    S = [e(0), e(1), e(2), e(3)]
    L = [unit(e(0) + .5 * e(4)), unit(e(0) - .5 * e(4)), unit(e(1) + .5 * e(5)), unit(e(1) - .5 * e(5)),
         unit(e(1) + .5 * e(6)), e(2), e(7), unit(e(3) + e(9))]
    save(os.path.join(out, "S"), S, [0, 0, 0, -10])
    save(os.path.join(out, "L"), L, np.zeros(8))
    rng = np.random.default_rng(1)
    rows = [3 * (0.5 + rng.random()) * L[i % 8] for i in range(400)]
    np.save(os.path.join(out, "acts.npy"), np.asarray(rows, np.float32))


if __name__ == "__main__":
    main()
