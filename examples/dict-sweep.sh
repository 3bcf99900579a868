#!/bin/sh
# dict-sweep.sh: the seed's comparison, a 32x against a 128x dictionary of
# DistilGPT-2's last MLP layer (3072 neurons), trained from ONE forward pass:
# the activation rows are tee'd into one sae-fit per dictionary size, then
# each is scored (recon-score) and sae-report puts them in one table (with
# the seed's 77% and 48% beside ours) and one set of training curves.
#
#   examples/dict-sweep.sh TEXT-FILE...
#
# Environment (defaults in brackets): MODEL [distilgpt2], LAYER [5],
# DICTS ["32x 128x"], ARCH [relu], L1 [5], K [32], TOKENS [2M],
# CTX [128], OUT [dict-sweep]. A quick run on the shipped model:
#   MODEL=examples/models/tiny-gpt2-docs LAYER=3 DICTS="2x 8x" TOKENS=50K \
#       examples/dict-sweep.sh /usr/share/common-licenses/*
set -e
[ $# -ge 1 ] || { echo "usage: dict-sweep.sh TEXT-FILE..." >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
PATH=$root/bin:$PATH
MODEL=${MODEL:-distilgpt2} LAYER=${LAYER:-5} DICTS=${DICTS:-"32x 128x"} ARCH=${ARCH:-relu}
L1=${L1:-5} K=${K:-32} TOKENS=${TOKENS:-2M} CTX=${CTX:-128} OUT=${OUT:-dict-sweep}
hook=blocks.$LAYER.mlp.hook_post
mkdir -p "$OUT"
[ -d "$MODEL" ] || model-fetch "$MODEL"   # a hub id: into the cache once

# tokens, cut in two: a training part and a held-out part
gpt2-tok --model "$MODEL" --ctx "$CTX" "$@" -o "$OUT/tokens.tsz"
tsz split -n 2 "$OUT/tok" "$OUT/tokens.tsz"
gpt2-fwd --model "$MODEL" --hook "$hook" --dtype bf16 "$OUT/tok.01.tsz" |
	mlp-tap --hook "$hook" --dtype bf16 -o "$OUT/val.tsz"

# one forward pass over the training part, tee'd into every fit
set --
for d in $DICTS; do
	case $ARCH in relu) p="--l1 $L1" ;; *) p="--k $K" ;; esac
	set -- "$@" "--arch $ARCH --dict $d $p --log-every 10 --eval-every 50" "$OUT/$d"
done
gpt2-fwd --model "$MODEL" --hook "$hook" --dtype bf16 "$OUT/tok.00.tsz" |
	mlp-tap --hook "$hook" --dtype bf16 --shuffle-buffer 65536 |
	sh "$root/pipelines/fit-sweep.sh" "$root/bin/" "$OUT/val.tsz" "$TOKENS" "$@"

# score each on the held-out tokens; one report compares them
set --
for d in $DICTS; do
	recon-score --model "$MODEL" --sae "$OUT/$d/sae.tsz" "$OUT/tok.01.tsz" -o "$OUT/$d/recon.tsz"
	set -- "$@" -s "$OUT/$d/sae.tsz" -r "$OUT/$d/recon.tsz" -l "$d=$OUT/$d/train.tsv"
done
sae-report "$@" -t "dictionary sweep: $MODEL $hook" -o "$OUT/sweep.html"
echo "report: $(cd "$OUT" && pwd)/sweep.html"
