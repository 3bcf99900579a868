#!/bin/sh
# explain-part.sh: explain part PART of NPARTS of a topk-ctx stream's
# features (a contiguous id range), so explanation spreads over make -j
# jobs or HOSTS; `tsz cat` of the parts is the whole. Used by experiment.mk.
#   explain-part.sh BIN TOPK.tsz PART NPARTS RANGE OUT.tsz [explain-gpt4 OPTIONS...]
# RANGE "A-B" limits the features ("all": every feature, F from the dict_stats
# record).
# An empty part writes an empty stream. The exit status is explain-gpt4's
# (3: some features failed, their records say why).
set -e
[ $# -ge 6 ] || { echo "usage: explain-part.sh BIN TOPK PART NPARTS RANGE OUT [OPTIONS...]" >&2; exit 2; }
bin=$1 topk=$2 part=$3 n=$4 range=$5 out=$6
shift 6
part=${part#0} part=${part:-0}
[ "$range" != all ] || range=
if [ -z "$range" ]; then
	f=$("${bin}tsz" json "$topk" | grep '"kind":"dict_stats"' | sed -n 's/.*"f":\([0-9][0-9]*\).*/\1/p' | head -n 1)
	[ -n "$f" ] || { echo "explain-part.sh: $topk: no dict_stats record with \"f\"" >&2; exit 1; }
	lo=0 hi=$((f - 1))
else
	lo=${range%-*} hi=${range#*-}
fi
cnt=$((hi - lo + 1))
a=$((lo + part * cnt / n))
b=$((lo + (part + 1) * cnt / n - 1))
if [ "$b" -lt "$a" ]; then
	exec "${bin}tsz" head -n 0 "$topk" -o "$out"
fi
# explain-gpt4 writes stdout: a temporary file, renamed when the stream is whole
# (exit 0, or 3 when some features failed: their records say why)
s=0
"${bin}explain-gpt4" --features "$a-$b" "$@" "$topk" >"$out.tmp.$$" || s=$?
case $s in
0|3) mv "$out.tmp.$$" "$out" ;;
*) rm -f "$out.tmp.$$" ;;
esac
exit $s
