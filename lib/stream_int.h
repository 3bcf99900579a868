/* stream_int.h: what stream.c (records), stream_read.c and stream_write.c
 * share beyond stream.h. Not part of the API. */
#ifndef SP_STREAM_INT_H
#define SP_STREAM_INT_H

#include "stream.h"

/* numel * elsize, or UINT64_MAX on overflow */
uint64_t tsz_shape_bytes(const uint64_t *shape, int ndim, size_t elsize);
/* A slot with at least nbytes of buffer, named and shaped: the reader
 * fills it in place, without tsz_record_add's size checks. */
TszTensor *tsz_record_slot(TszRecord *r, const char *name, TszDtype dt, int ndim,
                           const uint64_t *shape, size_t nbytes);

#endif
