#!/bin/sh
# pipeline.sh: the README's worked pipeline, stage by stage, ending with the
# HTML report: tokens -> activations -> SAE -> score -> top contexts ->
# explanations -> report.html.
#
#   examples/pipeline.sh [TEXT-FILE...]   [Default: /usr/share/common-licenses/*]
#
# Environment (defaults in brackets): MODEL [examples/models/tiny-gpt2-docs],
# LAYER [3], DICT [8x], ARCH [topk], K [32], TOKENS [200K], OUT [pipeline-out],
# EXPLAINER [openai when OPENAI_API_KEY is set, else baseline].
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
PATH=$root/bin:$PATH
MODEL=${MODEL:-$root/examples/models/tiny-gpt2-docs} LAYER=${LAYER:-3} DICT=${DICT:-8x}
ARCH=${ARCH:-topk} K=${K:-32} TOKENS=${TOKENS:-200K} OUT=${OUT:-pipeline-out}
EXPLAINER=${EXPLAINER:-$([ -n "$OPENAI_API_KEY" ] && echo openai || echo baseline)}
hook=blocks.$LAYER.mlp.hook_post
[ $# -gt 0 ] || set -- /usr/share/common-licenses/*
mkdir -p "$OUT"
o=$OUT

gpt2-tok --model "$MODEL" --ctx 128 "$@" > "$o/tokens.tsz"
gpt2-fwd --model "$MODEL" --hook "$hook" "$o/tokens.tsz" |
	mlp-tap --shuffle-buffer 65536 > "$o/acts.tsz"
sae-fit --dict "$DICT" --arch "$ARCH" --k "$K" --tokens "$TOKENS" --log "$o/train.tsv" --log-every 10 < "$o/acts.tsz" > "$o/sae.tsz"
recon-score --model "$MODEL" --sae "$o/sae.tsz" < "$o/tokens.tsz" > "$o/recon.tsz"
gpt2-fwd --model "$MODEL" --hook "$hook" "$o/tokens.tsz" |
	mlp-tap --keep-context | sae-encode --sae "$o/sae.tsz" |
	topk-ctx --model "$MODEL" > "$o/topk.tsz"
explain-gpt4 --backend "$EXPLAINER" < "$o/topk.tsz" > "$o/explanations.tsz" || [ $? = 3 ]
sae-report -s "$o/sae.tsz" -r "$o/recon.tsz" -l "$o/train.tsv" -F "$o/topk.tsz" \
	-e "$o/explanations.tsz" -o "$o/report.html"
echo "report: $(cd "$o" && pwd)/report.html"
