/* dtype.c: element types, f16/bf16 conversion, byte shuffle. */
#include "dtype.h"

#include <math.h>
#include <string.h>

static const struct { const char *name; size_t size; int is_float; } dtypes[TSZ_NDTYPE] = {
    [TSZ_F32] = {"f32", 4, 1}, [TSZ_F16] = {"f16", 2, 1}, [TSZ_BF16] = {"bf16", 2, 1},
    [TSZ_I32] = {"i32", 4, 0}, [TSZ_I64] = {"i64", 8, 0}, [TSZ_U8] = {"u8", 1, 0},
    [TSZ_U16] = {"u16", 2, 0}, [TSZ_U32] = {"u32", 4, 0},
};

size_t tsz_dtype_size(TszDtype dt) { return dt < TSZ_NDTYPE ? dtypes[dt].size : 0; }
const char *tsz_dtype_name(TszDtype dt) { return dt < TSZ_NDTYPE ? dtypes[dt].name : "?"; }
const SpChoice tsz_float_dtypes[3] = {{"f32", TSZ_F32}, {"bf16", TSZ_BF16}, {"f16", TSZ_F16}};

int tsz_dtype_is_float(TszDtype dt) { return dt < TSZ_NDTYPE && dtypes[dt].is_float; }

int tsz_dtype_parse(const char *s, TszDtype *out)
{
    for (int i = 0; i < TSZ_NDTYPE; i++)
        if (!strcmp(s, dtypes[i].name)) {
            *out = (TszDtype)i;
            return 0;
        }
    return -1;
}

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fff + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t b) { return u2f((uint32_t)b << 16); }

uint16_t f32_to_f16(float f)
{
    uint32_t u = f2u(f), sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffff;
    if (a > 0x7f800000) return (uint16_t)(sign | 0x7e00);         /* NaN */
    if (a >= 0x477ff000) return (uint16_t)(sign | 0x7c00);        /* overflow: Inf */
    if (a < 0x38800000) {                                         /* subnormal or zero */
        /* scale so the integer part is the subnormal mantissa, rounding even */
        float m = u2f(a) * 0x1p24f;
        return (uint16_t)(sign | (uint32_t)lrintf(m));
    }
    uint32_t h = ((a >> 13) - (112u << 10));                       /* rebias exponent */
    uint32_t rest = a & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) {
        float v = m * 0x1p-24f;
        return sign ? -v : v;
    }
    if (e == 31) return u2f(sign | 0x7f800000 | (m << 13));
    return u2f(sign | ((e + 112) << 23) | (m << 13));
}

static double load(const void *src, TszDtype sd, size_t i)
{
    switch (sd) {
    case TSZ_F32: return ((const float *)src)[i];
    case TSZ_F16: return f16_to_f32(((const uint16_t *)src)[i]);
    case TSZ_BF16: return bf16_to_f32(((const uint16_t *)src)[i]);
    case TSZ_I32: return ((const int32_t *)src)[i];
    case TSZ_I64: return (double)((const int64_t *)src)[i];
    case TSZ_U8: return ((const uint8_t *)src)[i];
    case TSZ_U16: return ((const uint16_t *)src)[i];
    case TSZ_U32: return ((const uint32_t *)src)[i];
    default: return 0;
    }
}

static void store(void *dst, TszDtype dd, size_t i, double v)
{
    switch (dd) {
    case TSZ_F32: ((float *)dst)[i] = (float)v; break;
    case TSZ_F16: ((uint16_t *)dst)[i] = f32_to_f16((float)v); break;
    case TSZ_BF16: ((uint16_t *)dst)[i] = f32_to_bf16((float)v); break;
    case TSZ_I32: ((int32_t *)dst)[i] = (int32_t)v; break;
    case TSZ_I64: ((int64_t *)dst)[i] = (int64_t)v; break;
    case TSZ_U8: ((uint8_t *)dst)[i] = (uint8_t)v; break;
    case TSZ_U16: ((uint16_t *)dst)[i] = (uint16_t)v; break;
    case TSZ_U32: ((uint32_t *)dst)[i] = (uint32_t)v; break;
    default: break;
    }
}

void tsz_to_f32(float *dst, const void *src, TszDtype sd, size_t n)
{
    /* the hot cases get their own loops; the rest go through double */
    if (sd == TSZ_F32) {
        if (n) memmove(dst, src, n * 4);   // an empty tensor may have no data
    } else if (sd == TSZ_BF16) {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
    } else if (sd == TSZ_F16) {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(s[i]);
    } else {
        for (size_t i = 0; i < n; i++) dst[i] = (float)load(src, sd, i);
    }
}

void tsz_convert(void *dst, TszDtype dd, const void *src, TszDtype sd, size_t n)
{
    if (dd == sd) {
        if (n) memmove(dst, src, n * tsz_dtype_size(sd));
    } else if (dd == TSZ_F32) {
        tsz_to_f32(dst, src, sd, n);
    } else if (sd == TSZ_F32 && dd == TSZ_BF16) {
        const float *s = src;
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = f32_to_bf16(s[i]);
    } else if (sd == TSZ_F32 && dd == TSZ_F16) {
        const float *s = src;
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = f32_to_f16(s[i]);
    } else if (sd == TSZ_I64 && dd == TSZ_I32) {
        const int64_t *s = src;
        int32_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = (int32_t)s[i];
    } else {
        for (size_t i = 0; i < n; i++) store(dst, dd, i, load(src, sd, i));
    }
}

void tsz_shuffle(uint8_t *dst, const uint8_t *src, size_t n, size_t elsize)
{
    for (size_t b = 0; b < elsize; b++) {
        uint8_t *d = dst + b * n;
        const uint8_t *s = src + b;
        for (size_t i = 0; i < n; i++) d[i] = s[i * elsize];
    }
}

void tsz_unshuffle(uint8_t *dst, const uint8_t *src, size_t n, size_t elsize)
{
    for (size_t b = 0; b < elsize; b++) {
        const uint8_t *s = src + b * n;
        uint8_t *d = dst + b;
        for (size_t i = 0; i < n; i++) d[i * elsize] = s[i];
    }
}
