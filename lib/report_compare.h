/* report_compare.h: the page of sae-report --compare: sae-compare's output
 * (summary tables, a chart of duplication, breadth and splitting by size,
 * and the splitting trees) as one self-contained HTML page. */
#ifndef SP_REPORT_COMPARE_H
#define SP_REPORT_COMPARE_H

#include <stddef.h>
#include <stdio.h>

/* Read path (sae-compare output; "-" is stdin) and write the page to out.
 * 0, or -1 with err ("c.tsz: no compare_summary record"). */
int report_compare_html(const char *path, const char *title, FILE *out, char *err, size_t errlen);

#endif
