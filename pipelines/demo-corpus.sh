#!/bin/sh
# demo-corpus.sh OUTDIR [MAX_BYTES] [MAX_FILE_BYTES]: the demo's corpus, as
# files 00001.txt ... in OUTDIR of at most about MAX_FILE_BYTES each, about
# MAX_BYTES in all. Online, the first MAX_BYTES of a public dataset:
# $DEMO_DATASET_URL, by default TinyStories' validation text on the hub
# ($HF_ENDPOINT/datasets/roneneldan/TinyStories/resolve/main/TinyStories-valid.txt;
# HF_ENDPOINT defaults to https://huggingface.co), fetched with a Range request
# within DEMO_PROBE_TIMEOUT seconds to connect (default 8) and 120 to finish;
# its <|endoftext|> separators become blank lines. DEMO_DATASET_URL= (empty)
# skips it. Offline, or when that fails, text already on this machine (its
# documentation): a bounded and deterministic selection (sorted paths,
# READMEs and text files first, then copyright and licence texts). Says on
# stderr which it took and why, in lines short enough to read. OUTDIR
# appears only when complete.
set -e
[ $# -ge 1 ] || { echo "usage: demo-corpus.sh OUTDIR [MAX_BYTES] [MAX_FILE_BYTES]" >&2; exit 2; }
out=$1 max=${2:-1500000} per=${3:-24000}
tmp=$out.tmp.$$
trap 'rm -rf "$tmp" "$tmp.list" "$tmp.dl" "$tmp.err"' EXIT
rm -rf "$tmp"
mkdir -p "$tmp"
export LC_ALL=C
ep=${HF_ENDPOINT:-https://huggingface.co}
url=${DEMO_DATASET_URL-${ep%/}/datasets/roneneldan/TinyStories/resolve/main/TinyStories-valid.txt}
wait=${DEMO_PROBE_TIMEOUT:-8}

if [ -n "$url" ]; then
	if curl -fsSL --connect-timeout "$wait" --max-time 120 -r "0-$((max - 1))" -o "$tmp.dl" "$url" 2>"$tmp.err" &&
		[ "$(wc -c <"$tmp.dl")" -ge 1000 ] && tr -d '\000' <"$tmp.dl" | cmp -s - "$tmp.dl"; then
		# stories as blank-line separated paragraphs, files cut at a story's end
		head -c "$max" "$tmp.dl" | sed 's/<|endoftext|>//g' |
			awk -v dir="$tmp" -v per="$per" '
				BEGIN { n = 1; f = sprintf("%s/%05d.txt", dir, n) }
				{ print > f; size += length($0) + 1 }
				/^[ \t\r]*$/ && size >= per { close(f); n++; f = sprintf("%s/%05d.txt", dir, n); size = 0 }'
		n=$(ls "$tmp" | wc -l) total=$(cat "$tmp"/* | wc -c)
		rm -rf "$out"
		mv "$tmp" "$out"
		echo "demo-corpus.sh: a public dataset, $url: $n documents, $total bytes" >&2
		exit 0
	fi
	why=$(head -n 1 "$tmp.err")
	echo "demo-corpus.sh: $url: ${why:-too short or not text}" >&2   # the next line says what instead
fi
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
echo "demo-corpus.sh: local documentation under /usr/share/doc: $n documents, $total bytes in $out" >&2
