#!/usr/bin/env python3
"""SAEs for sae-synth score tests, without numpy (pure Python .npy I/O).

  synth_oracle.py true DIR THRESH   W_dec = the true directions (DIR/dirs.npy),
                                    W_enc its transpose, b_dec the bias
                                    (DIR/bias.npy), b_enc = -THRESH
  synth_oracle.py random DIR SEED   the same shapes, Gaussian directions

Writes DIR/W_enc.npy, W_dec.npy, b_enc.npy, b_dec.npy (f32)."""
import array
import ast
import math
import random
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY", path
    if data[6] == 1:
        hlen, off = struct.unpack("<H", data[8:10])[0], 10
    else:
        hlen, off = struct.unpack("<I", data[8:12])[0], 12
    hdr = ast.literal_eval(data[off:off + hlen].decode("latin1"))
    assert hdr["descr"] == "<f4" and not hdr["fortran_order"], hdr
    a = array.array("f")
    a.frombytes(data[off + hlen:])
    return a, hdr["shape"]


def save(path, a, shape):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % (
        "".join("%d," % s for s in shape))
    pad = 64 - (10 + len(hdr) + 1) % 64
    hdr = hdr + " " * pad + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode("latin1"))
        f.write(array.array("f", a).tobytes())


def main():
    mode, d = sys.argv[1], sys.argv[2]
    dirs, (F, D) = load(d + "/dirs.npy")
    bias, _ = load(d + "/bias.npy")
    if mode == "true":
        W, b_enc, b_dec = dirs, [-float(sys.argv[3])] * F, bias
    else:
        rng = random.Random(int(sys.argv[3]))
        W = []
        for _ in range(F):
            v = [rng.gauss(0, 1) for _ in range(D)]
            n = math.sqrt(sum(x * x for x in v))
            W += [x / n for x in v]
        b_enc, b_dec = [0.0] * F, [0.0] * D
    save(d + "/W_dec.npy", W, (F, D))
    save(d + "/W_enc.npy", [W[i * D + k] for k in range(D) for i in range(F)], (D, F))
    save(d + "/b_enc.npy", b_enc, (F,))
    save(d + "/b_dec.npy", b_dec, (D,))


main()
