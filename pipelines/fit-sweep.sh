#!/bin/sh
# fit-sweep.sh: several sae-fit processes trained from ONE read of the
# activation store: the rows are read once and tee'd into every fit.
#   fit-sweep.sh BIN VAL.tsz TOKENS "FLAGS1" OUTDIR1 ["FLAGS2" OUTDIR2 ...] < ROWS
# Each fit writes OUTDIR/sae.tsz (atomically) and OUTDIR/train.tsv.
set -e
[ $# -ge 5 ] && [ $(( ($# - 3) % 2 )) = 0 ] ||
	{ echo "usage: fit-sweep.sh BIN VAL TOKENS FLAGS OUTDIR [FLAGS OUTDIR]... < ROWS" >&2; exit 2; }
bin=$1 val=$2 tokens=$3
shift 3
# One thread a fit once the fits alone fill the cores: OpenBLAS's threads
# spin while they wait, so 27 fits of 2 threads on 2 cores spend much of
# their time waiting on each other. The bytes do not depend on the thread
# count (README "Reproducibility"); OPENBLAS_NUM_THREADS set by the caller wins.
if [ -z "${OPENBLAS_NUM_THREADS:-}" ] && [ $(($# / 2)) -ge "$(nproc 2>/dev/null || echo 1)" ]; then
	OPENBLAS_NUM_THREADS=1
	export OPENBLAS_NUM_THREADS
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fit-sweep.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pids= fifos= n=0
while [ $# -gt 0 ]; do
	flags=$1 out=$2
	shift 2
	n=$((n + 1))
	mkdir -p "$out"
	mkfifo "$tmp/in$n"
	# shellcheck disable=SC2086 # flags are words by design
	"${bin}sae-fit" $flags --tokens "$tokens" --val "$val" --log "$out/train.tsv" \
		-o "$out/sae.tsz" <"$tmp/in$n" & pids="$pids $!"
	fifos="$fifos $tmp/in$n"
done
# every fit stops reading at its token budget: tee must not die of SIGPIPE
# before the others got theirs, so it ignores write errors (-p) and goes on
# shellcheck disable=SC2086
tee -p $fifos >/dev/null || true
status=0
for p in $pids; do wait "$p" || status=1; done
exit $status
