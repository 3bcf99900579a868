#!/bin/sh
# frontier-calib.sh: the coefficient that gives each target L0, from pilot
# fits at a grid of coefficients (frontier.mk, step 1).
#   frontier-calib.sh BIN "L0 L0..." OUT.tsv ARCH COEF PILOT.tsz [ARCH COEF PILOT.tsz]...
# A pilot's L0 is that of its last validation (the SAE's final_val.l0).
# Per arch, log L0 is taken as piecewise linear in log coefficient: each
# target is interpolated between the two pilots that bracket it, or
# extrapolated from the nearest two when the grid does not reach it, no
# further than a factor of 4 beyond the grid's ends (both said on stderr). OUT gets lines "arch target_l0 knob_value pilot_l0s", atomically.
set -e
[ $# -ge 6 ] && [ $(( ($# - 3) % 3 )) = 0 ] ||
	{ echo "usage: frontier-calib.sh BIN L0S OUT ARCH COEF PILOT [ARCH COEF PILOT]..." >&2; exit 2; }
bin=$1 targets=$2 out=$3
shift 3
tmp=$out.tmp.$$
trap 'rm -f "$tmp" "$tmp.pts"' EXIT
: >"$tmp.pts"
while [ $# -gt 0 ]; do
	l0=$("${bin}tsz" json "$3" | head -n 1 | sed -n 's/.*"final_val":{[^}]*"l0":\([^,}]*\).*/\1/p')
	[ -n "$l0" ] || { echo "frontier-calib.sh: $3: no final_val.l0 (fitted without --val?)" >&2; exit 1; }
	printf '%s %s %s\n' "$1" "$2" "$l0" >>"$tmp.pts"
	shift 3
done
sort -k1,1 -k2,2g "$tmp.pts" | awk -v targets="$targets" '
	function emit(a,   i, j, t, lo, n, s, c, pts) {
		n = cnt[a]
		if (n < 2) { printf "frontier-calib.sh: %s: two pilots at least\n", a > "/dev/stderr"; bad = 1; return }
		pts = ""
		for (i = 1; i <= n; i++) pts = pts sprintf("%s%g:%g", i > 1 ? "," : "", C[a, i], L[a, i])
		m = split(targets, T, " ")
		for (j = 1; j <= m; j++) {
			t = T[j]
			# L0 falls as the coefficient grows: the first pilot at or under t
			for (lo = 1; lo < n && L[a, lo + 1] > t; lo++) ;
			if (lo >= n) lo = n - 1
			if (t > L[a, 1] || t < L[a, n])
				printf "frontier-calib.sh: %s: L0 %s is outside the pilots (%g..%g): extrapolated\n", \
					a, t, L[a, n], L[a, 1] > "/dev/stderr"
			if (L[a, lo] > 0 && L[a, lo + 1] > 0 && L[a, lo] > L[a, lo + 1]) {
				s = (log(C[a, lo + 1]) - log(C[a, lo])) / (log(L[a, lo + 1]) - log(L[a, lo]))
				c = exp(log(C[a, lo]) + s * (log(t) - log(L[a, lo])))
			} else # no fall of L0 there: the end of the grid on the side of t
				c = t < L[a, lo + 1] ? C[a, n] * 4 : C[a, 1] / 4
			# within a factor of 4 beyond the grid: far extrapolation is noise
			if (c > C[a, n] * 4 || c < C[a, 1] / 4) {
				c = c > C[a, n] * 4 ? C[a, n] * 4 : C[a, 1] / 4
				printf "frontier-calib.sh: %s: L0 %s: %s clamped to %g (widen the grid)\n", \
					a, t, "coefficient", c > "/dev/stderr"
			}
			printf "%s\t%s\t%.4g\t%s\n", a, t, c, pts
		}
	}
	{ if ($1 != cur) { if (cur != "") emit(cur); cur = $1 }
	  cnt[$1]++; C[$1, cnt[$1]] = $2; L[$1, cnt[$1]] = $3 }
	END { if (cur != "") emit(cur); exit bad }' >"$tmp"
mv "$tmp" "$out"
