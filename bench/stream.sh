#!/bin/sh
# bench/stream.sh: write and read 1 GB of f32 activations through the tensor
# stream, as f32 and as bf16; print MB/s and the compression ratio beside
# `zstd -1` and `zstd -3` on the same raw bytes, measured in the same run.
# SIZE_MB=... to change the amount (default 1024).
set -e
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
"$PY" -c 'import numpy' 2>/dev/null || { echo "bench/stream.sh: skipped: needs python3-numpy"; exit 0; }
SIZE_MB=${SIZE_MB:-1024}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# activation-like data: post-GELU values of a 3072-wide MLP (many near-zero
# negatives, heavy positive tail), rows of 3072 f32
rows=$((SIZE_MB * 1024 * 1024 / (3072 * 4)))
"$PY" - "$tmp/acts.npy" "$rows" <<'PY'
import numpy as np, sys
rows = int(sys.argv[2])
out = np.lib.format.open_memmap(sys.argv[1], mode="w+", dtype=np.float32, shape=(rows, 3072))
rng = np.random.default_rng(0)
for i in range(0, rows, 4096):
    x = rng.standard_normal((min(4096, rows - i), 3072), dtype=np.float32) * 1.5 - 0.5
    out[i:i + len(x)] = 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))
out.flush()
PY
raw=$(wc -c <"$tmp/acts.npy")
mb=$(awk "BEGIN{print $raw/1048576}")
t() { s=$(date +%s.%N); "$@"; e=$(date +%s.%N); awk "BEGIN{print $e-$s}"; }
rate() { awk "BEGIN{printf \"%.0f\", $mb/$1}"; }

tw=$(t sh -c "bin/tsz from-npy acts=$tmp/acts.npy > $tmp/f32.tsz")
tr=$(t sh -c "bin/tsz to-npy $tmp/back.npy $tmp/f32.tsz")
cmp -s "$tmp/acts.npy" "$tmp/back.npy" || { echo "bench/stream.sh: round trip differs"; exit 1; }
zf=$(wc -c <"$tmp/f32.tsz")
# bf16: what gpt2-fwd --dtype bf16 writes; converted here by a C-free path:
# numpy rounds to bf16 bits as u16 and the stream stores them as u16 planes
"$PY" - "$tmp/acts.npy" "$tmp/bf16.npy" <<'PY'
import numpy as np, sys
a = np.load(sys.argv[1], mmap_mode="r")
out = np.lib.format.open_memmap(sys.argv[2], mode="w+", dtype=np.uint16, shape=a.shape)
for i in range(0, len(a), 4096):
    u = a[i:i + 4096].view(np.uint32)
    out[i:i + len(u)] = ((u + 0x7fff + ((u >> 16) & 1)) >> 16).astype(np.uint16)
out.flush()
PY
tbw=$(t sh -c "bin/tsz from-npy acts=$tmp/bf16.npy > $tmp/bf16.tsz")
tbr=$(t sh -c "bin/tsz to-npy $tmp/bf16back.npy $tmp/bf16.tsz")
zb=$(wc -c <"$tmp/bf16.tsz")
tz1=$(t sh -c "zstd -q -1 -c $tmp/acts.npy > $tmp/z1")
tz3=$(t sh -c "zstd -q -3 -c $tmp/acts.npy > $tmp/z3")
tzd=$(t sh -c "zstd -q -d -c $tmp/z1 > /dev/null")
z1=$(wc -c <"$tmp/z1"); z3=$(wc -c <"$tmp/z3")
printf '%-34s %10s %10s %8s\n' "stream ($mb MB of f32 activations)" "write MB/s" "read MB/s" "ratio"
printf '%-34s %10s %10s %8.2f\n' "tsz f32 (level 3, shuffle auto)" "$(rate $tw)" "$(rate $tr)" "$(awk "BEGIN{print $raw/$zf}")"
printf '%-34s %10s %10s %8.2f\n' "tsz bf16 (vs the f32 bytes)" "$(rate $tbw)" "$(rate $tbr)" "$(awk "BEGIN{print $raw/$zb}")"
printf '%-34s %10s %10s %8.2f\n' "zstd -1 on raw f32 (reference)" "$(rate $tz1)" "$(rate $tzd)" "$(awk "BEGIN{print $raw/$z1}")"
printf '%-34s %10s %10s %8.2f\n' "zstd -3 on raw f32 (reference)" "$(rate $tz3)" "-" "$(awk "BEGIN{print $raw/$z3}")"
echo "ratio of tsz f32 write speed to zstd -1: $(awk "BEGIN{printf \"%.2f\", $tz1/$tw}")x; size: $(awk "BEGIN{printf \"%.2f\", $z1/$zf}")x smaller"
