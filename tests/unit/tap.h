/* tap.h: TAP output for C unit tests (prove reads it).
 *   ok(cond, "name %d", i);  close_enough(got, want, n, tol, "name")
 *   done_testing() prints the plan and returns the exit status. */
#ifndef SP_TAP_H
#define SP_TAP_H
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

static int tap_n, tap_fail;

static int ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3), unused));
static int ok(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s %d - ", cond ? "ok" : "not ok", ++tap_n);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!cond) tap_fail++;
    fflush(stdout);
    return cond;
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* Max relative difference |a-b| / max(|b|, 1e-6 floor scale) over n values;
 * passes when below tol, and reports the max diff either way. */
static int close_enough(const float *got, const float *want, size_t n, double tol,
                        const char *name) __attribute__((unused));
static int close_enough(const float *got, const float *want, size_t n, double tol, const char *name)
{
    double maxd = 0, scale = 0;
    for (size_t i = 0; i < n; i++) if (fabs(want[i]) > scale) scale = fabs(want[i]);
    if (scale < 1e-6) scale = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d != d) d = INFINITY;
        if (d > maxd) maxd = d;
    }
    return ok(maxd / scale <= tol, "%s (max diff %.3g, rel %.3g, tol %.1g)", name, maxd, maxd / scale, tol);
}

static int done_testing(void) __attribute__((unused));
static int done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_fail ? 1 : 0;
}
#endif
