/* assign.h: the linear assignment problem (Hungarian algorithm, in the
 * shortest-augmenting-path form of Jonker and Volgenant), for matching
 * SAE latents to ground-truth features (sae-synth score).
 *
 * Given a score matrix S (n,m) row-major, choose a one-to-one matching of
 * min(n,m) pairs (row i, column j) that maximises the sum of S over the
 * pairs (or minimises it). Exact; O(min^2 max) time, O(n+m) extra memory
 * beyond S. */
#ifndef SP_ASSIGN_H
#define SP_ASSIGN_H

#include <stddef.h>
#include <stdint.h>

/* col_of_row (n): the column matched to each row, or -1 for a row left
 * over (n > m). maximize: 1 to maximise the sum, 0 to minimise. Returns
 * the optimal sum over the matched pairs. Entries of S must be finite. */
double assign_solve(const float *S, size_t n, size_t m, int maximize, int32_t *col_of_row);

#endif
