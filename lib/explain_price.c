/* explain_price.c: what an OpenAI model costs per token (see explain.h). */
#include <string.h>

#include "explain.h"

/* USD per million tokens; the longest matching prefix wins. */
static const struct { const char *prefix; double in, out; } PRICES[] = {
    {"gpt-4-turbo", 10.0, 30.0},   {"gpt-4-1106", 10.0, 30.0},  {"gpt-4-0125", 10.0, 30.0},
    {"gpt-4o-mini", 0.15, 0.60},   {"gpt-4o", 2.50, 10.0},      {"gpt-4.1-mini", 0.40, 1.60},
    {"gpt-4.1-nano", 0.10, 0.40},  {"gpt-4.1", 2.00, 8.00},     {"gpt-4-32k", 60.0, 120.0},
    {"gpt-4", 30.0, 60.0},         {"gpt-3.5-turbo", 0.50, 1.50},
};

int explain_price(const char *model, double *in_per_m, double *out_per_m)
{
    size_t best = 0;
    int found = 0;
    for (size_t i = 0; i < sizeof PRICES / sizeof *PRICES; i++) {
        size_t l = strlen(PRICES[i].prefix);
        if (strncmp(model, PRICES[i].prefix, l) || l <= best) continue;
        best = l;
        *in_per_m = PRICES[i].in;
        *out_per_m = PRICES[i].out;
        found = 1;
    }
    if (!found) *in_per_m = *out_per_m = 0;
    return found;
}
