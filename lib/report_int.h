/* report_int.h: what the parts of the report share beyond report.h:
 * report.c (reading), report_features.c (feature records to JSON),
 * report_html.c (the page) and report_pages.c (the side files). Not part
 * of the API. */
#ifndef SP_REPORT_INT_H
#define SP_REPORT_INT_H

#include "report.h"
#include "stream.h"

/* A record's "feature" id; 0 or -1 with r->err naming the record. */
int report_feature_id(Report *r, TszReader *rd, const TszRecord *rec, long long *id) SP_RESULT_USED;
/* One topk-ctx record of kind feature, or dict_stats. 0 or -1 with r->err. */
int report_add_feature(Report *r, TszReader *rd, const TszRecord *rec) SP_RESULT_USED;
int report_add_dict_stats(Report *r, TszReader *rd, const TszRecord *rec) SP_RESULT_USED;

/* Put the features that have an explanation but no topk-ctx record into
 * the browser, without examples; the page is written after this. */
int report_emit_unseen_explanations(Report *r) SP_RESULT_USED;

/* One feature's JSON object into the side files (report_pages.c); tt is its
 * top token for the index (-1: none). 0 or -1 with r->err. */
int report_pages_put(Report *r, const json_t *f, int32_t tt) SP_RESULT_USED;
void report_pages_free(Report *r);

#endif
