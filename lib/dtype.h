/* dtype.h: the tensor element types of the stream, f16/bf16 conversion,
 * and the byte shuffle that streams may apply to float tensors. */
#ifndef SP_DTYPE_H
#define SP_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef enum {
    TSZ_F32 = 0, TSZ_F16, TSZ_BF16, TSZ_I32, TSZ_I64, TSZ_U8, TSZ_U16, TSZ_U32,
    TSZ_NDTYPE
} TszDtype;

size_t tsz_dtype_size(TszDtype dt);
const char *tsz_dtype_name(TszDtype dt);          /* "f32", ... */
int tsz_dtype_parse(const char *s, TszDtype *out); /* 0 or -1 */
int tsz_dtype_is_float(TszDtype dt);
/* The float dtypes by name, in the order messages list them, for an enum
 * flag: (TszDtype)SP_OPT_CHOICE("--dtype", optarg, tsz_float_dtypes). */
extern const SpChoice tsz_float_dtypes[3];

/* IEEE half and bfloat16. Rounding is to nearest even; NaN stays NaN,
 * overflow gives Inf, as numpy and torch do. */
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
float bf16_to_f32(uint16_t b);

/* Convert n elements between any two dtypes (float<->int truncates toward
 * zero as C does; callers that care check ranges themselves). */
void tsz_convert(void *dst, TszDtype dd, const void *src, TszDtype sd, size_t n);
/* Convenience: n elements of any dtype to f32. */
void tsz_to_f32(float *dst, const void *src, TszDtype sd, size_t n);

/* Byte shuffle (blosc's): n elements of elsize bytes, byte plane by plane.
 * Groups the exponent bytes of floats together so zstd finds them. */
void tsz_shuffle(uint8_t *dst, const uint8_t *src, size_t n, size_t elsize);
void tsz_unshuffle(uint8_t *dst, const uint8_t *src, size_t n, size_t elsize);

#endif
