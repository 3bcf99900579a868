#!/usr/bin/env python3
"""json_close.py [--tol T] A B: two files of JSON lines hold the same
records, with numbers equal within a relative tolerance T (default 1e-5,
of the largest magnitude of each line's numbers: f32 rounding of sums in
another order) and everything else (keys, strings, integers, shapes) equal.
Prints the largest difference; exits 1 on a mismatch. The tests use it where
README "Reproducibility" promises a tolerance and not the same bytes."""
import json
import sys


def walk(a, b, path, out):
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
        if a != b:
            raise ValueError(f"{path}: {a!r} != {b!r}")
    elif isinstance(a, int) and isinstance(b, int):
        if a != b:
            raise ValueError(f"{path}: {a} != {b}")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        out.append((abs(a - b), max(abs(a), abs(b)), path))
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            raise ValueError(f"{path}: {len(a)} items != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", out)
    elif isinstance(a, dict) and isinstance(b, dict):
        if sorted(a) != sorted(b):
            raise ValueError(f"{path}: keys {sorted(a)} != {sorted(b)}")
        for k in a:
            walk(a[k], b[k], f"{path}.{k}", out)
    else:
        raise ValueError(f"{path}: {type(a).__name__} != {type(b).__name__}")


def main(argv):
    tol = 1e-5
    if len(argv) > 1 and argv[1] == "--tol":
        tol = float(argv[2])
        argv = argv[:1] + argv[3:]
    if len(argv) != 3:
        print("usage: json_close.py [--tol T] A B", file=sys.stderr)
        return 2
    la, lb = open(argv[1]).read().splitlines(), open(argv[2]).read().splitlines()
    if len(la) != len(lb):
        print(f"{len(la)} lines != {len(lb)} lines")
        return 1
    worst = 0.0
    for n, (x, y) in enumerate(zip(la, lb), 1):
        out = []
        try:
            walk(json.loads(x), json.loads(y), f"line {n}", out)
        except ValueError as e:
            print(e)
            return 1
        scale = max([m for _, m, _ in out] + [1e-30])
        for d, _, path in out:
            if d / scale > tol:
                print(f"{path}: differs by {d:.3g} (rel {d / scale:.3g}, tol {tol:g})")
                return 1
            worst = max(worst, d / scale)
    print(f"equal within tolerance: max rel diff {worst:.3g} (tol {tol:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
