#!/bin/sh
# bench/sae-mpi.sh: sae-fit's latent-sharded training (mpirun -np R) on one
# machine: tokens/s at R = 1 (1 and 2 threads) and R = 2 (1 thread a rank),
# the ratio of R = 2 to R = 1 measured in the same invocation, and the bytes
# rank 0 gives to the collectives per step and the time it spends in them
# (sae-fit --progress). From the measured rate per core and the exchange
# per step it then projects how many machines train the seed's dictionaries
# (D = 3072, 32x and 128x, topk k = 32, batch 4096) on 2B tokens in a day.
# Measured: the rates and bytes here. Projected: everything at the seed's
# size; the network bandwidth is an assumption (SAE_MPI_GBITS), not measured.
# Environment: SAE_MPI_D (512), SAE_MPI_DICT (32, times D), SAE_MPI_B
# (1024), SAE_MPI_STEPS (8), SAE_MPI_CORES (cores of a projected machine,
# 32), SAE_MPI_GBITS (its network, Gbit/s, "10 25 100"), SAE_MPI_ASSUME
# (GFLOP/s of an unloaded core, assumed, projected beside the measured
# rates: 80, an AVX2 core's sgemm with 2 FMA units at 3 GHz).
set -e
D=${SAE_MPI_D:-512}
M=${SAE_MPI_DICT:-32}
B=${SAE_MPI_B:-1024}
STEPS=${SAE_MPI_STEPS:-8}
CORES=${SAE_MPI_CORES:-32}
GBITS=${SAE_MPI_GBITS:-"10 25 100"}
ASSUME=${SAE_MPI_ASSUME:-80}
K=32
F=$((D * M))
PY=/usr/bin/python3
command -v mpirun >/dev/null || { echo "sae-mpi.sh: mpirun not found (openmpi-bin)"; exit 1; }
test -x bin/sae-fit && test -x tests/helpers/sgemm-peak || { echo "sae-mpi.sh: run make first"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

$PY -c "
import numpy as np
x = np.random.default_rng(0).standard_normal(($B * $STEPS, $D)).astype(np.float32)
np.save('$tmp/rows.npy', x)"
bin/tsz from-npy --meta kind=acts acts="$tmp/rows.npy" >"$tmp/rows.tsz"

FIT="--arch topk --k $K --dict $F --batch $B --tokens $((B * STEPS)) --log-every 1 --progress"
# median tokens/s of the steps after the first two (initialisation, warm caches)
rate () { awk -F '\t' 'NR > 1 && $1 == "train" && $2 > 2 { print $10 }' "$1" | sort -n |
	awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "sae-fit topk k=$K, D=$D, F=$F (${M}x), batch $B, $STEPS steps; $(nproc) cores here"
OPENBLAS_NUM_THREADS=1 bin/sae-fit $FIT --log "$tmp/r1t1.tsv" -o "$tmp/s.tsz" "$tmp/rows.tsz" 2>/dev/null
OPENBLAS_NUM_THREADS=2 bin/sae-fit $FIT --log "$tmp/r1t2.tsv" -o "$tmp/s.tsz" "$tmp/rows.tsz" 2>/dev/null
mpirun --oversubscribe -np 2 -x OPENBLAS_NUM_THREADS=1 bin/sae-fit $FIT --log "$tmp/r2.tsv" -o "$tmp/s.tsz" \
	"$tmp/rows.tsz" 2>"$tmp/r2.err"
r11=$(rate "$tmp/r1t1.tsv") r12=$(rate "$tmp/r1t2.tsv") r2=$(rate "$tmp/r2.tsv")
mb=$(sed -n 's/.*rank 0 gave \([0-9.e+-]*\) MB.*/\1/p' "$tmp/r2.err")
ms=$(sed -n 's/.* spent \([0-9.e+-]*\) ms.*/\1/p' "$tmp/r2.err")
echo "  R=1, 1 thread:          $r11 tokens/s"
echo "  R=1, 2 threads:         $r12 tokens/s"
echo "  R=2, 1 thread a rank:   $r2 tokens/s = $(awk "BEGIN{printf \"%.2f\", $r2/$r12}")x R=1 on 2 threads," \
	"$(awk "BEGIN{printf \"%.2f\", $r2/$r11}")x R=1 on 1 thread"
echo "  exchanged per step (R=2): rank 0 gave $mb MB to the collectives, $ms ms in them" \
	"(the model: 4BD = $(awk "BEGIN{printf \"%.3g\", $B*$D*4/1e6}") MB reconstruction + 8Bk =" \
	"$(awk "BEGIN{printf \"%.3g\", $B*$K*8/1e6}") MB candidates + scalars; no AuxK here, no latent is dead yet)"

# The projection. A rank's step is its encoder share, 2*D*F/R flops a token,
# at a rate per core measured here, plus the exchange, which does not shrink
# with R: all-reduces of B*D floats (the reconstruction, and AuxK's residual:
# real runs have dead latents) and of the B*k and B*aux_k candidates (a
# merge op), each moving about 2(R-1)/R of its bytes a rank over a ring, at
# the assumed bandwidth, not overlapped with compute.
g=$(awk "BEGIN{print $r11 * 2 * $D * $F / 1e9}")
peak=$(OPENBLAS_NUM_THREADS=1 tests/helpers/sgemm-peak $B $F $D 2 | sed -n 's/.* \([0-9.]*\) GFLOP\/s.*/\1/p')
echo "measured: the step at $g GFLOP/s of encoder work a core (R=1, 1 thread); sgemm at the encoder's shape:" \
	"$peak GFLOP/s on 1 thread"
project () {
	awk -v g="$1" -v C="$CORES" -v gb="$2" -v m="$3" 'BEGIN {
		D = 3072; F = D * m; B = 4096; k = 32; ak = 512; need = 2e9 / 86400
		P = 2 * D * F + F + D; mem = 16 * P + 2 * 4 * B * F        # weights, grads, Adam; pre and g
		for (R = 1; R <= 100000; R++) {
			comp = B * 2 * D * F / (R * C * g * 1e9)
			comm = R > 1 ? 2 * (R - 1) / R * (2 * 4 * B * D + 8 * B * (k + ak)) / (gb * 1e9 / 8) : 0
			if (B / (comp + comm) >= need) break
		}
		if (R > 100000) { printf "    %4dx, %3d Gbit/s: no number of machines (the exchange alone is %.3f s of a %.3f s step)\n", m, gb, comm, B / need; exit }
		printf "    %4dx, %3d Gbit/s: %5d machines (%.2g GB each), a step %.3f s compute + %.3f s exchange\n",
			m, gb, R, mem / R / 1e9, comp, comm
	}'
}
echo "projected: machines of $CORES such cores for D=3072, topk k=32, aux_k=512, batch 4096, 2B tokens in 24 h" \
	"(23148 tokens/s):"
for rate in "$g:the step rate measured here" "$peak:sgemm's rate measured here" "$ASSUME:assumed, not measured"; do
	echo "  a core at ${rate%%:*} GFLOP/s (${rate#*:}):"
	for mult in 32 128; do
		for gb in $GBITS; do project "${rate%%:*}" "$gb" "$mult"; done
	done
done
