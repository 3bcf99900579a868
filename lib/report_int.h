/* report_int.h: what the loading half of the report (report.c) gives the
 * rendering half (report_html.c) beyond report.h. Not part of the API. */
#ifndef SP_REPORT_INT_H
#define SP_REPORT_INT_H

#include "report.h"

/* Put the features that have an explanation but no topk-ctx record into
 * the browser's JSON, without examples; the page is written after this. */
void report_emit_unseen_explanations(Report *r);

#endif
