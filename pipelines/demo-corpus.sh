#!/bin/sh
# demo-corpus.sh OUTDIR [MAX_BYTES] [MAX_FILE_BYTES]: text already on this
# machine (its documentation) as a corpus: one document per file in OUTDIR,
# 00001.txt ..., a bounded and deterministic selection (sorted paths, READMEs
# and text files first, then copyright and licence texts; each file cut at
# MAX_FILE_BYTES, the whole at about MAX_BYTES). OUTDIR appears only when
# complete.
set -e
[ $# -ge 1 ] || { echo "usage: demo-corpus.sh OUTDIR [MAX_BYTES] [MAX_FILE_BYTES]" >&2; exit 2; }
out=$1 max=${2:-1500000} per=${3:-24000}
tmp=$out.tmp.$$
trap 'rm -rf "$tmp" "$tmp.list"' EXIT
rm -rf "$tmp"
mkdir -p "$tmp"
export LC_ALL=C
{
	find /usr/share/doc -type f \( -name 'README*' -o -name '*.txt' -o -name '*.md' \
		-o -name 'NEWS' -o -name 'NEWS.gz' \) 2>/dev/null | sort
	find /usr/share/common-licenses /usr/share/doc -type f \( -name 'copyright' -o -path '*/common-licenses/*' \) \
		2>/dev/null | sort
} >"$tmp.list"
total=0 n=0
while IFS= read -r f; do
	[ "$total" -lt "$max" ] || break
	case $f in
	*.gz) gzip -dc -- "$f" 2>/dev/null | head -c "$per" >"$tmp/doc" || continue ;;
	*.bz2|*.xz|*.zst|*.html|*.pdf) continue ;;
	*) head -c "$per" -- "$f" >"$tmp/doc" 2>/dev/null || continue ;;
	esac
	size=$(wc -c <"$tmp/doc")
	[ "$size" -ge 200 ] || continue
	tr -d '\000' <"$tmp/doc" | cmp -s - "$tmp/doc" || continue   # binary
	n=$((n + 1))
	mv "$tmp/doc" "$tmp/$(printf %05d $n).txt"
	total=$((total + size))
done <"$tmp.list"
rm -f "$tmp/doc"
[ "$n" -gt 0 ] || { echo "demo-corpus.sh: no text found under /usr/share/doc" >&2; exit 1; }
rm -rf "$out"
mv "$tmp" "$out"
echo "demo-corpus.sh: $n documents, $total bytes in $out" >&2
