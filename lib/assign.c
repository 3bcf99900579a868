/* assign.c: the linear assignment problem by shortest augmenting paths
 * with dual potentials (Hungarian method in the Jonker-Volgenant form).
 * Rows are added one at a time; each addition runs a Dijkstra-like search
 * over the columns on reduced costs c(i,j) - u(i) - v(j) >= 0 and flips
 * the alternating path it finds. With n <= m rows this is O(n^2 m). */
#include <math.h>
#include <stdlib.h>

#include "assign.h"
#include "util.h"

typedef struct {
    const float *S;
    size_t n, m;        /* the problem as solved: n <= m */
    int trans;          /* S is (m,n) in memory: row i col j is S[j*n_mem + i] */
    double sign;        /* -1 to maximise (costs are -S), +1 to minimise */
} Cost;

static double cost_at(const Cost *c, size_t i, size_t j)
{
    float s = c->trans ? c->S[j * c->n + i] : c->S[i * c->m + j];
    return c->sign * (double)s;
}

/* Rows 1..n, columns 1..m (0 is the virtual start column); row_of[j] is
 * the row on column j, 0 for none. */
static void lap(const Cost *c, size_t *row_of)
{
    size_t n = c->n, m = c->m;
    double *u = xcalloc(n + 1, sizeof *u), *v = xcalloc(m + 1, sizeof *v);
    double *minv = xmalloc((m + 1) * sizeof *minv);
    size_t *way = xcalloc(m + 1, sizeof *way);
    char *used = xmalloc(m + 1);
    for (size_t j = 0; j <= m; j++) row_of[j] = 0;
    for (size_t i = 1; i <= n; i++) {
        row_of[0] = i;
        size_t j0 = 0;
        for (size_t j = 0; j <= m; j++) minv[j] = INFINITY, used[j] = 0;
        do {    /* grow the tree by the column of least reduced cost */
            used[j0] = 1;
            size_t i0 = row_of[j0], j1 = 0;
            double delta = INFINITY;
            for (size_t j = 1; j <= m; j++) {
                if (used[j]) continue;
                double cur = cost_at(c, i0 - 1, j - 1) - u[i0] - v[j];
                if (cur < minv[j]) minv[j] = cur, way[j] = j0;
                if (minv[j] < delta) delta = minv[j], j1 = j;
            }
            for (size_t j = 0; j <= m; j++) {
                if (used[j]) u[row_of[j]] += delta, v[j] -= delta;
                else minv[j] -= delta;
            }
            j0 = j1;
        } while (row_of[j0] != 0);
        do {    /* flip the augmenting path back to the start */
            size_t j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
        } while (j0);
    }
    free(u), free(v), free(minv), free(way), free(used);
}

double assign_solve(const float *S, size_t n, size_t m, int maximize, int32_t *col_of_row)
{
    for (size_t i = 0; i < n; i++) col_of_row[i] = -1;
    if (!n || !m) return 0.0;
    /* Solve with the shorter side as rows: transpose the view when n > m. */
    Cost c = {.S = S, .n = n <= m ? n : m, .m = n <= m ? m : n, .trans = n > m, .sign = maximize ? -1.0 : 1.0};
    size_t *row_of = xmalloc((c.m + 1) * sizeof *row_of);
    lap(&c, row_of);
    double sum = 0.0;
    for (size_t j = 1; j <= c.m; j++) {
        if (!row_of[j]) continue;
        size_t r = row_of[j] - 1, q = j - 1;        /* in the solved orientation */
        size_t i = c.trans ? q : r, jj = c.trans ? r : q;
        col_of_row[i] = (int32_t)jj;
        sum += (double)S[i * m + jj];
    }
    free(row_of);
    return sum;
}
