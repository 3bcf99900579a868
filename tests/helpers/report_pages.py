#!/usr/bin/env python3
"""report_pages.py DIR: a sae-report --pages directory as one JSON object on
stdout, read independently of the browser: {"index": the columns of
features/index.js decoded (base-64 little-endian int32/float32 -> lists;
NaN -> null), "chunks": the number of side files, "features": every side
file's features in order}. Checks that each file is the one call it should
be and that the side files are numbered 0000, 0001, ... without gaps."""
import base64, glob, json, math, os, re, struct, sys

def call(path, name):
    text = open(path, encoding="utf-8").read()
    m = re.fullmatch(name + r"\((.*)\);\n", text, re.S)
    if not m:
        sys.exit(f"{path}: not one {name}(...) call")
    return m.group(1)

def column(b64, code):
    raw = base64.b64decode(b64, validate=True)
    vals = struct.unpack("<%d%s" % (len(raw) // 4, code), raw)
    return [None if isinstance(v, float) and math.isnan(v) else v for v in vals]

d = sys.argv[1]
index = json.loads(call(os.path.join(d, "features", "index.js"), "SAEPIPE_INDEX"))
for k, code in (("id", "i"), ("tt", "i"), ("d", "f"), ("mx", "f"), ("s", "f")):
    index[k] = column(index[k], code)
files = sorted(glob.glob(os.path.join(d, "features", "[0-9]*.js")))
features = []
for k, path in enumerate(files):
    if os.path.basename(path) != "%04d.js" % k:
        sys.exit(f"{path}: expected {k:04d}.js")
    m = re.fullmatch(r"(\d+),(.*)", call(path, "SAEPIPE_CHUNK"), re.S)
    if not m or int(m.group(1)) != k:
        sys.exit(f"{path}: not chunk {k}")
    features += json.loads(m.group(2))
json.dump({"index": index, "chunks": len(files), "features": features}, sys.stdout, sort_keys=True)
