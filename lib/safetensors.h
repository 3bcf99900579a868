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

/* A checkpoint directory: DIR/model.safetensors, or, when that is absent,
 * the shards that DIR/model.safetensors.index.json lists (Hugging Face's
 * sharded layout: {"weight_map": {"tensor name": "model-00001-of-00002.safetensors", ...}}).
 * Every shard is opened and checked; the index must agree with the shards:
 * each tensor it names is in the shard it names, and no tensor is in two
 * shards. Tensors are numbered 0..n-1 across shards (for "used" maps). */
typedef struct {
    SafeTensors *shard;         /* (nshard) */
    char **path;                /* (nshard) DIR/FILE of each shard */
    size_t nshard;
    size_t n;                   /* tensors in all shards */
    char *index;                /* DIR/model.safetensors.index.json, or NULL if unsharded */
    char err[768];
} StCheckpoint;

/* 0, or -1 with c->err naming the file. st_ckpt_close is safe after failure. */
int st_ckpt_open(StCheckpoint *c, const char *dir) SP_RESULT_USED;
/* The tensor called name, or NULL; *file gets its shard's path and *id its
 * number in 0..n-1 (either may be NULL). */
const StTensor *st_ckpt_find(const StCheckpoint *c, const char *name, const char **file, size_t *id);
/* Tensor number id (0..n-1) and its shard's path. */
const StTensor *st_ckpt_get(const StCheckpoint *c, size_t id, const char **file);
void st_ckpt_close(StCheckpoint *c);

const char *st_dtype_name(StDtype dt);   /* "F32", ... */
size_t st_dtype_size(StDtype dt);
/* "(768,2304) F16" into buf; returns buf. */
const char *st_tensor_desc(const StTensor *t, char *buf, size_t len);
/* Widen n elements of a float tensor (F32, F16, BF16, F64) to f32, from
 * unaligned data. 0, or -1 if t is not a float dtype. */
int st_to_f32(const StTensor *t, float *dst);

#endif
