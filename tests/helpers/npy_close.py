#!/usr/bin/env python3
"""npy_close.py --tol T A.npy B.npy: the arrays have one shape and
max |A - B| <= T * max |A| (the tolerance README "Reproducibility" states
where it promises no bytes). Prints the largest relative difference; exits
1 when it is over T or the shapes differ."""
import sys

import numpy as np


def main(argv):
    if len(argv) != 5 or argv[1] != "--tol":
        print("usage: npy_close.py --tol T A.npy B.npy", file=sys.stderr)
        return 2
    tol = float(argv[2])
    a, b = np.load(argv[3]).astype(np.float64), np.load(argv[4]).astype(np.float64)
    if a.shape != b.shape:
        print(f"shapes differ: {a.shape} != {b.shape}")
        return 1
    rel = np.abs(a - b).max() / max(np.abs(a).max(), 1e-30)
    print(f"max rel diff {rel:.3g} (tol {tol:g}), shape {a.shape}")
    return 0 if rel <= tol else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
