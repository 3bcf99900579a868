#!/bin/sh
# bench/recon.sh: the cost of one recon-score evaluation beside three plain
# forwards. A distilgpt2-shaped random model (6 layers, d_model 768, 12
# heads, MLP 3072, vocab 50257, written by tests/helpers/gpt2_ref.py as
# bench/fwd.sh does), ROWS windows of T=128 (default 782: 100k tokens), a
# random top-k SAE at HOOK (default blocks.3.mlp.hook_post, D=3072) with F
# features (default 12288, k=32). Measured in this one invocation:
#   (a) gpt2-fwd --loss, three times (clean, plus the two ablations one
#       would run by hand): the reference;
#   (b) recon-score with --mean FILE: clean + reconstruction + zero + mean
#       ablation forwards (the last three resumed at the hook's layer), the
#       SAE, KL over the vocabulary;
#   (c) recon-score computing the mean itself (a first pass to the hook).
# Prints tokens/s of each and the ratios (b)/(a), (c)/(a) in time.
# THREADS (default: all cores), BATCH (8), ROWS, HOOK, F.
# Measured 2026-11-27, 2 shared cores (other jobs' load 3-9, so wall times
# swing): full size, 3 forwards 1557.8 s, (b) 1238.5 s, (c) 680.8 s (load fell
# during the run; the ratios 0.80x/0.44x are not meaningful). Interleaved on
# 4096 tokens, user CPU: 3 forwards 23.7 s, (b) 33.4 s = 1.41x, as the FLOPs
# predict (1 + 3 x (3 of 6 layers + lm_head) forwards ~ 0.9 of 3 forwards,
# plus the SAE's dense encode and decode, 2 x 2DF = 150 MFLOP a token, about
# one forward). perf: 76% in sgemm, 6% gpt2_token_loss, 2% recon_kl_sum.
set -e
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
"$PY" -c 'import numpy' 2>/dev/null || { echo "bench/recon.sh: skipped: needs python3-numpy"; exit 0; }
THREADS=${THREADS:-$(nproc)}
BATCH=${BATCH:-8}
ROWS=${ROWS:-782}
HOOK=${HOOK:-blocks.3.mlp.hook_post}
F=${F:-12288}
T=128
export OPENBLAS_NUM_THREADS=$THREADS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" tests/helpers/gpt2_ref.py make "$tmp/m" --layers 6 --embd 768 --heads 12 --vocab 50257 --positions 1024
"$PY" -c "
import numpy as np
t = np.random.default_rng(0).integers(0, 50257, ($ROWS, $T)).astype(np.int32)
t[:, 0] = 50256
np.save('$tmp/tok.npy', t)"
bin/tsz from-npy tokens="$tmp/tok.npy" >"$tmp/tok.tsz"
case $HOOK in *mlp.hook_p*) D=3072 ;; *) D=768 ;; esac
"$PY" tests/helpers/recon_ref.py sae "$tmp/sae" --d $D --f "$F" --seed 1
bin/tsz from-npy --rows 100000000 --meta kind=sae --meta arch=topk --meta k=32 --meta d=$D --meta f="$F" \
	--meta hook="$HOOK" W_enc="$tmp/sae/W_enc.npy" b_dec="$tmp/sae/b_dec.npy" \
	b_enc="$tmp/sae/b_enc.npy" W_dec="$tmp/sae/W_dec.npy" >"$tmp/sae.tsz"
"$PY" -c "import numpy as np; np.save('$tmp/mean.npy', np.zeros($D, dtype=np.float32))"

now () { date +%s.%N; }
secs () { awk "BEGIN{print $2 - $1}"; }
# (a) three plain forwards with the loss
s=$(now)
for i in 1 2 3; do bin/gpt2-fwd -m "$tmp/m" --loss -b "$BATCH" "$tmp/tok.tsz" >/dev/null; done
fwd3=$(secs "$s" "$(now)")
# (b) one evaluation, mean given
s=$(now)
bin/recon-score -m "$tmp/m" --sae "$tmp/sae.tsz" --mean "$tmp/mean.npy" -b "$BATCH" -q "$tmp/tok.tsz" >/dev/null
rec1=$(secs "$s" "$(now)")
# (c) one evaluation with its own mean pass
s=$(now)
bin/recon-score -m "$tmp/m" --sae "$tmp/sae.tsz" -b "$BATCH" -q "$tmp/tok.tsz" >/dev/null
rec2=$(secs "$s" "$(now)")

n=$((ROWS * T))
printf 'recon-score on %d tokens (T=%d, B=%s, threads %s), distilgpt2 shape, SAE %s d=%d f=%s top-32\n' \
	"$n" "$T" "$BATCH" "$THREADS" "$HOOK" "$D" "$F"
printf '%-48s %8.1f s %10.0f tokens/s\n' "3 x gpt2-fwd --loss (reference)" "$fwd3" "$(awk "BEGIN{print 3 * $n / $fwd3}")"
printf '%-48s %8.1f s %10.0f tokens/s   %.2fx the time of 3 forwards\n' "recon-score --mean FILE (4 forwards, 3 resumed)" \
	"$rec1" "$(awk "BEGIN{print $n / $rec1}")" "$(awk "BEGIN{print $rec1 / $fwd3}")"
printf '%-48s %8.1f s %10.0f tokens/s   %.2fx the time of 3 forwards\n' "recon-score (with its mean pass)" \
	"$rec2" "$(awk "BEGIN{print $n / $rec2}")" "$(awk "BEGIN{print $rec2 / $fwd3}")"
