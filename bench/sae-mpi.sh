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
# 32), SAE_MPI_GBITS (its network, Gbit/s, "10 25 100").
set -e
D=${SAE_MPI_D:-512}
M=${SAE_MPI_DICT:-32}
B=${SAE_MPI_B:-1024}
STEPS=${SAE_MPI_STEPS:-8}
CORES=${SAE_MPI_CORES:-32}
GBITS=${SAE_MPI_GBITS:-"10 25 100"}
K=32
F=$((D * M))
PY=/usr/bin/python3
command -v mpirun >/dev/null || { echo "sae-mpi.sh: mpirun not found (openmpi-bin)"; exit 1; }
test -x bin/sae-fit || { echo "sae-mpi.sh: run make first"; exit 1; }
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
	"(model: B*D*4 = $(awk "BEGIN{printf \"%.3g\", $B*$D*4/1e6}") MB reconstruction + B*k*8 candidates + scalars)"

# The projection. A rank's step is its encoder share, 2*D*F/R flops a token,
# at the rate per core measured above (R=1, 1 thread: every cost of the step
# folded into it), plus the exchange: two all-reduces of B*D floats (the
# reconstruction, and AuxK's residual once latents die) and the top-k
# candidates, over a ring at the assumed bandwidth (2(R-1)/R of the bytes).
g=$(awk "BEGIN{print $r11 * 2 * $D * $F / 1e9}")
echo "measured: $g GFLOP/s of encoder work per core (R=1, 1 thread)"
echo "projected (D=3072, batch 4096, 2B tokens in 24 h = 23148 tokens/s; machines of $CORES such cores):"
for mult in 32 128; do
	for gb in $GBITS; do
		awk -v g="$g" -v C="$CORES" -v gb="$gb" -v m="$mult" 'BEGIN {
			D = 3072; F = D * m; B = 4096; k = 32; need = 2e9 / 86400
			P = 2 * D * F + F + D; mem = 16 * P + 2 * 4 * B * F     # weights, grads, Adam; pre and g
			for (R = 1; R <= 4096; R++) {
				comp = B * 2 * D * F / (R * C * g * 1e9)
				ring = 2 * (R - 1) / R
				comm = R > 1 ? (2 * ring * B * D * 4 + (R - 1) * B * k * 8) / (gb * 1e9 / 8) : 0
				tps = B / (comp + comm)
				if (tps >= need) break
			}
			if (tps < need) { printf "  %dx (F=%d): %d Gbit/s: no R reaches it (exchange %.3f s a step)\n", m, F, gb, comm; exit }
			printf "  %dx (F=%d): %d Gbit/s: %d machines, %.0f tokens/s, step %.3f s compute + %.3f s exchange, %.1f GB a machine\n",
				m, F, gb, R, tps, comp, comm, mem / R / 1e9
		}'
	done
done
