#!/bin/sh
# tap-shard.sh: one forward pass over a token shard, tapped twice: shuffled
# SAE training rows and context windows (for sae-encode/topk-ctx), both in
# the activation store's dtype. Used by experiment.mk, locally or on a
# remote host through GNU parallel.
#   tap-shard.sh BIN MODEL HOOK DTYPE BATCH SHUFFLE SEED TOKENS.tsz ROWS.tsz CTX.tsz
# Both outputs are written atomically by mlp-tap; every stage checks the end
# marker of its input, so a failure anywhere fails the script (no pipefail
# needed), and the exit status of every process is checked.
set -e
[ $# = 10 ] || { echo "usage: tap-shard.sh BIN MODEL HOOK DTYPE BATCH SHUFFLE SEED TOKENS ROWS CTX" >&2; exit 2; }
bin=$1 model=$2 hook=$3 dtype=$4 batch=$5 shuffle=$6 seed=$7 in=$8 rows=$9
shift 9
ctx=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tap-shard.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkfifo "$tmp/fwd" "$tmp/ctx"
"${bin}mlp-tap" --hook "$hook" --dtype "$dtype" --keep-context -o "$ctx" <"$tmp/ctx" & p_ctx=$!
"${bin}gpt2-fwd" --model "$model" --hook "$hook" --dtype "$dtype" --batch "$batch" "$in" >"$tmp/fwd" & p_fwd=$!
tee "$tmp/ctx" <"$tmp/fwd" |
	"${bin}mlp-tap" --hook "$hook" --dtype "$dtype" --shuffle-buffer "$shuffle" --seed "$seed" -o "$rows"
status=0
wait $p_fwd || status=1
wait $p_ctx || status=1
exit $status
