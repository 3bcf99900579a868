#!/bin/sh
# howmuch.sh BIN KIND FILE...: what a pipeline step made, in a few words, for
# the one line a step prints (quiet.mk). Reads only small files or headers;
# prints "?" for what it cannot tell, and exits 0 whatever happens: it only
# ever describes, never judges, a step.
#   tokens TOKENS.tsz  "2283 windows of 128 (292K tokens)"
#   bytes FILE...      "178 MB"
#   fit SAE.tsz        "410K tokens in 400 steps, validation FVU 0.123"
#   recon RECON.tsz    "96.3% of the loss recovered"
#   features TOPK.tsz  "4096 features, 12 dead"
#   records STREAM     "13 records"
[ $# -ge 3 ] || { echo "usage: howmuch.sh BIN KIND FILE..." >&2; exit 2; }
bin=$1 kind=$2
shift 2
export LC_ALL=C
# n as 2283, 292K, 1.2M
short='function short(n) { n += 0; if (n >= 1e6) return sprintf("%.1fM", n / 1e6);
	if (n >= 1e4) return sprintf("%.0fK", n / 1e3); return sprintf("%d", n) }'
# the value of "key" in the JSON meta of the first record of that kind
meta() {
	"${bin}tsz" json "$1" 2>/dev/null | grep "\"kind\":\"$2\"" | head -n 1 |
		sed -n "s/.*\"$3\":\([-0-9.e+]*\).*/\1/p"
}
case $kind in
tokens)
	"${bin}tsz" info "$1" 2>/dev/null | awk "$short"'
		$1 == "tokens" { rows = $5; w = $3; sub(/.*,/, "", w); sub(/\).*/, "", w) }
		END { if (rows == "") print "?"; else printf "%d windows of %d (%s tokens)\n", rows, w, short(rows * w) }' ;;
bytes)
	du -cb "$@" 2>/dev/null | tail -n 1 | awk '{ b = $1; if (b >= 1e9) printf "%.1f GB\n", b / 1e9;
		else if (b >= 1e7) printf "%.0f MB\n", b / 1e6; else if (b >= 1e6) printf "%.1f MB\n", b / 1e6;
		else printf "%.0f KB\n", b / 1e3 }' ;;
fit)
	"${bin}tsz" json "$1" 2>/dev/null | head -n 1 | awk "$short"'
		function num(key,  m) { if (!match($0, "\"" key "\":[-0-9.e+]*")) return ""
			m = substr($0, RSTART, RLENGTH); sub(/.*:/, "", m); return m }
		{ t = num("tokens_seen"); s = num("steps"); v = $0; sub(/.*"val":[{]/, "", v); sub(/[}].*/, "", v)
		  $0 = v; f = num("fvu") }
		END { if (t == "") print "?"; else printf "%s tokens in %d step%s, validation FVU %.3f\n", short(t), s, s == 1 ? "" : "s", f }' ;;
recon)
	s=$(meta "$1" recon score)
	if [ -n "$s" ]; then awk -v s="$s" 'BEGIN { printf "%.1f%% of the loss recovered\n", 100 * s }'; else echo "?"; fi ;;
features)
	f=$(meta "$1" dict_stats f) d=$(meta "$1" dict_stats dead)
	echo "${f:-?} features, ${d:-?} dead" ;;
records)
	"${bin}tsz" info "$@" 2>/dev/null | awk '$1 == "records:" { n += $2 } END { printf "%d records\n", n }' ;;
*)
	echo "howmuch.sh: unknown kind '$kind'" >&2; exit 2 ;;
esac
exit 0
