#!/bin/sh
# demo-choose.sh OUT.mk: the demo's model, decided once by a short probe of
# the hub. When $HF_ENDPOINT (else https://huggingface.co) answers a HEAD of
# DEMO_HUB_MODEL's config.json (default distilgpt2) within DEMO_PROBE_TIMEOUT
# seconds (default 8), the demo uses that model from the hub (model-fetch
# downloads it, honouring HF_ENDPOINT) at its seed setting: layer 5 of
# distilgpt2, with a corpus and a token budget cut so that the run stays
# near the time of the offline one. Otherwise it uses the small GPT-2
# shipped with the project (examples/models/tiny-gpt2-docs). Writes make
# assignments to OUT.mk (atomically; demo.mk includes it, with HERE set to
# the pipelines directory) and says on stderr which was chosen and why.
# Exit 0 either way; 2 on bad usage.
set -u
[ $# -eq 1 ] || { echo "usage: demo-choose.sh OUT.mk" >&2; exit 2; }
out=$1
ep=${HF_ENDPOINT:-https://huggingface.co}
ep=${ep%/}
model=${DEMO_HUB_MODEL:-distilgpt2}
wait=${DEMO_PROBE_TIMEOUT:-8}
url=$ep/$model/resolve/main/config.json
tmp=$out.tmp.$$
trap 'rm -f "$tmp" "$tmp.err"' EXIT

code=$(curl -sS -o /dev/null -I -L --max-redirs 5 --connect-timeout "$wait" --max-time "$wait" \
	-w '%{http_code}' "$url" 2>"$tmp.err")
rc=$?
if [ $rc -eq 0 ] && [ "$code" = 200 ]; then
	cat >"$tmp" <<EOF
# demo-choose.sh: $url answered 200: the hub is reachable
DEMO_SOURCE := hub
DEMO_MODEL := $model
DEMO_LAYER := 5
DEMO_CORPUS_BYTES := 300000
DEMO_TOKENS := 200K
DEMO_DICT := 4x
DEMO_RECON_RECORDS := 1
EOF
	echo "== model: $model from the hub ($ep answered within ${wait}s); delete $out to choose again" >&2
else
	why=$(head -n 1 "$tmp.err")
	[ -n "$why" ] || why="HTTP $code"
	cat >"$tmp" <<EOF
# demo-choose.sh: $url: $why: the hub is not reachable
DEMO_SOURCE := shipped
DEMO_MODEL := \$(abspath \$(HERE)/../examples/models/tiny-gpt2-docs)
DEMO_LAYER := 3
DEMO_CORPUS_BYTES := 1000000
DEMO_TOKENS := 400K
DEMO_DICT := 4x
DEMO_RECON_RECORDS := 2
EOF
	echo "== model: the shipped tiny-gpt2-docs ($ep not reachable within ${wait}s: $why)" >&2
fi
mv "$tmp" "$out"
