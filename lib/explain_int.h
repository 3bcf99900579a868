/* explain_int.h: what the explain_*.c files share beyond explain.h: a
 * growing string. Not part of the API. */
#ifndef SP_EXPLAIN_INT_H
#define SP_EXPLAIN_INT_H

#include <string.h>

#include "util.h"

typedef struct { char *s; size_t n, cap; } Sb;

static inline void sb_add(Sb *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2 + 64;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static inline void sb_str(Sb *b, const char *s) { sb_add(b, s, strlen(s)); }
static inline char *sb_done(Sb *b) { return b->s ? b->s : xstrdup(""); }

#endif
