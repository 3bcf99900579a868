# sae-arch-test-lib.sh: what the sae-fit arch tests (t3010, t3011) share;
# sourced after test-lib.sh. Defines:
#   py 'code'        numpy, with ld(name) loading name.npy
#   jget FILE KEY    a number of a one-line JSON
#   is VALUE COND    awk's COND on v (and VALUE and COND on the TAP stream)
#   usage_err CMD... CMD exits with 2 (bad usage)
#   score SAE        sae-synth's scores of SAE.tsz on eval.tsz against
#                    truth.tsz, as JSON in SAE.json
#   same_tensors A B every tensor of SAE file A is in B, bit for bit
#   cut_resume FLAGS sae-fit FLAGS on r.tsz (12800 rows, records of 640):
#                    whole (full.tsz, checkpoints in ckf), cut short after a
#                    checkpoint (in ckc) and --resume'd on the whole (res.tsz)
py () {
	"$PYTHON" -c "import numpy as np, sys, json
ld = lambda n: np.load(n + '.npy')
$1"
}
jget () { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"; }
is () { echo "# $1 ($2)" && awk -v v="$1" "BEGIN { exit !($2) }"; }
usage_err () { "$@"; test $? = 2; }
score () { sae-synth score --truth truth.tsz --sae "$1.tsz" --json eval.tsz >"$1.json" && cat "$1.json" >&3; }
same_tensors () {
	for n in $(tsz json "$1" | tr "{," "\n\n" | sed -n "s/^\"\([A-Za-z_]*\)\":$/\1/p" | grep -v "^tensors$"); do
		tsz to-npy --name $n a.npy "$1" && tsz to-npy --name $n b.npy "$2" && cmp a.npy b.npy || return 1
		echo "# $n same" >&3
	done
}
cut_resume () {
	sae-synth -n 12800 --record-rows 640 --data-seed 5 >r.tsz &&
	sae-fit $1 --checkpoint ckf -o full.tsz r.tsz 2>/dev/null &&
	rm -rf ckc && { head -c 1000000 r.tsz | sae-fit $1 --checkpoint ckc -o cut.tsz 2>/dev/null; true; } &&
	test -f ckc/checkpoint.tsz && test ! -f cut.tsz &&
	sae-fit $1 --checkpoint ckc --resume -o res.tsz r.tsz 2>/dev/null
}
