/* safetensors.h: read-only access to a .safetensors file (Hugging Face):
 * an 8-byte little-endian header length, a JSON header mapping each tensor
 * name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into
 * the data that follows the header), and the data. The file is mmapped;
 * tensors point into the mapping until st_close.
 *
 * Every entry is checked when the file is opened: known dtype, offsets
 * inside the file, and end - begin equal to the shape's element count times
 * the dtype size. Errors name the file and the key. */
#ifndef SP_SAFETENSORS_H
#define SP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define ST_MAX_DIMS 8

typedef enum { ST_F32 = 0, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
               ST_NDTYPE } StDtype;

typedef struct {
    char *name;                 /* owned */
    StDtype dtype;
    int ndim;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    const void *data;           /* into the mapping; not aligned in general */
    size_t nbytes;
} StTensor;

typedef struct {
    void *map;                  /* the whole file */
    size_t map_len;
    StTensor *t;                /* (n), in header order */
    size_t n;
    char *meta;                 /* "__metadata__" as JSON text, or NULL */
    char err[512];
} SafeTensors;

/* 0, or -1 with s->err ("m.safetensors: h.0.attn.c_attn.weight: data_offsets
 * [0, 12] but F32 (3,4) needs 48 bytes"). st_close is safe after failure. */
int st_open(SafeTensors *s, const char *path) SP_RESULT_USED;
const StTensor *st_find(const SafeTensors *s, const char *name); /* NULL if absent */
void st_close(SafeTensors *s);

const char *st_dtype_name(StDtype dt);   /* "F32", ... */
size_t st_dtype_size(StDtype dt);
/* "(768,2304) F16" into buf; returns buf. */
const char *st_tensor_desc(const StTensor *t, char *buf, size_t len);
/* Widen n elements of a float tensor (F32, F16, BF16, F64) to f32, from
 * unaligned data. 0, or -1 if t is not a float dtype. */
int st_to_f32(const StTensor *t, float *dst);

#endif
