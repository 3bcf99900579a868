/* gpt2.c: GPT-2 config, parameter table, checkpoint loading and the
 * forward pass with hooks. One function per layer (llm.c's order of
 * arguments: outputs, inputs, weights, dimensions); gpt2_forward calls them
 * top to bottom. The weight products are sp_gemm on [B*T, C] operands, so
 * a window's activations and losses have the same bytes whatever batch,
 * shard or thread count it is computed in; attention is two sgemm calls of
 * one shape per (window, head). */
#include <cblas.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "gpt2.h"
#include "kinds.h"
#include "parfor.h"
#include "safetensors.h"

/* ---- config ---- */

/* A positive integer key; def 0 means required. */
static int cfg_size(json_t *root, const char *key, size_t def, size_t *out, const char *name, char *err,
                    size_t errlen)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (!def) return sp_fail(err, errlen, "%s: missing \"%s\"", name, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 24))
        return sp_fail(err, errlen, "%s: \"%s\" must be a positive integer", name, key);
    *out = (size_t)json_integer_value(v);
    return 0;
}

static int cfg_is_gpt2(json_t *root, const char *name, char *err, size_t errlen)
{
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    if (!mt) return sp_fail(err, errlen, "%s: missing \"model_type\"", name);
    if (strcmp(mt, "gpt2")) return sp_fail(err, errlen, "%s: model_type is \"%.40s\", not \"gpt2\"", name, mt);
    json_t *arch = json_object_get(root, "architectures"), *a;
    size_t i;
    json_array_foreach(arch, i, a) {
        const char *s = json_string_value(a);
        if (!s || (strcmp(s, "GPT2LMHeadModel") && strcmp(s, "GPT2Model")))
            return sp_fail(err, errlen, "%s: architecture \"%.40s\" is not GPT2LMHeadModel or GPT2Model", name,
                         s ? s : "?");
    }
    const char *act = json_string_value(json_object_get(root, "activation_function"));
    if (act && strcmp(act, "gelu_new") && strcmp(act, "gelu_pytorch_tanh"))
        return sp_fail(err, errlen, "%s: activation_function \"%.40s\" is not supported (gelu_new only)", name, act);
    if (json_is_true(json_object_get(root, "scale_attn_by_inverse_layer_idx")) ||
        json_is_false(json_object_get(root, "scale_attn_weights")))
        return sp_fail(err, errlen, "%s: non-standard attention scaling is not supported", name);
    return 0;
}

int gpt2_config_parse(GPT2Config *c, const char *text, const char *name, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root) return sp_fail(err, errlen, "%s: line %d: %s", name, je.line, je.text);
    memset(c, 0, sizeof *c);
    int rc = json_is_object(root) ? 0 : sp_fail(err, errlen, "%s: not a JSON object", name);
    if (!rc) rc = cfg_is_gpt2(root, name, err, errlen);
    if (!rc) rc = cfg_size(root, "n_embd", 0, &c->channels, name, err, errlen);
    if (!rc) rc = cfg_size(root, "n_layer", 0, &c->num_layers, name, err, errlen);
    if (!rc) rc = cfg_size(root, "n_head", 0, &c->num_heads, name, err, errlen);
    if (!rc) rc = cfg_size(root, "vocab_size", 0, &c->vocab_size, name, err, errlen);
    if (!rc) rc = cfg_size(root, "n_positions", 0, &c->max_seq_len, name, err, errlen);
    if (!rc) rc = cfg_size(root, "n_inner", 4 * c->channels, &c->n_inner, name, err, errlen);
    c->ln_eps = 1e-5f;
    json_t *eps = json_object_get(root, "layer_norm_epsilon");
    if (!rc && eps) {
        if (json_is_number(eps) && json_number_value(eps) > 0 && json_number_value(eps) < 1)
            c->ln_eps = (float)json_number_value(eps);
        else
            rc = sp_fail(err, errlen, "%s: \"layer_norm_epsilon\" must be a number in (0, 1)", name);
    }
    if (!rc && c->channels % c->num_heads)
        rc = sp_fail(err, errlen, "%s: n_embd %zu is not a multiple of n_head %zu", name, c->channels, c->num_heads);
    json_decref(root);
    return rc;
}

/* ---- parameters: one table drives size, load and pointers ---- */
typedef struct {
    const char *key;     /* safetensors key after the prefix; %zu = layer */
    int per_layer;
    int ndim;
    size_t shape[2];
    float **slot;
} GPT2Slot;

#define GPT2_NSLOTS 16
static size_t gpt2_slots(const GPT2Config *c, GPT2Params *p, GPT2Slot *t)
{
    size_t V = c->vocab_size, C = c->channels, F = c->n_inner, maxT = c->max_seq_len;
    GPT2Slot tab[GPT2_NSLOTS] = {
        {"wte.weight", 0, 2, {V, C}, &p->wte},
        {"wpe.weight", 0, 2, {maxT, C}, &p->wpe},
        {"h.%zu.ln_1.weight", 1, 1, {C}, &p->ln1w},
        {"h.%zu.ln_1.bias", 1, 1, {C}, &p->ln1b},
        {"h.%zu.attn.c_attn.weight", 1, 2, {C, 3 * C}, &p->qkvw},
        {"h.%zu.attn.c_attn.bias", 1, 1, {3 * C}, &p->qkvb},
        {"h.%zu.attn.c_proj.weight", 1, 2, {C, C}, &p->attprojw},
        {"h.%zu.attn.c_proj.bias", 1, 1, {C}, &p->attprojb},
        {"h.%zu.ln_2.weight", 1, 1, {C}, &p->ln2w},
        {"h.%zu.ln_2.bias", 1, 1, {C}, &p->ln2b},
        {"h.%zu.mlp.c_fc.weight", 1, 2, {C, F}, &p->fcw},
        {"h.%zu.mlp.c_fc.bias", 1, 1, {F}, &p->fcb},
        {"h.%zu.mlp.c_proj.weight", 1, 2, {F, C}, &p->fcprojw},
        {"h.%zu.mlp.c_proj.bias", 1, 1, {C}, &p->fcprojb},
        {"ln_f.weight", 0, 1, {C}, &p->lnfw},
        {"ln_f.bias", 0, 1, {C}, &p->lnfb},
    };
    memcpy(t, tab, sizeof tab);
    return GPT2_NSLOTS;
}

/* The checkpoint as messages name it: model.safetensors or the index. */
static const char *ck_name(const StCheckpoint *ck) { return ck->index ? ck->index : ck->path[0]; }

static size_t slot_numel(const GPT2Slot *s) { return s->ndim == 1 ? s->shape[0] : s->shape[0] * s->shape[1]; }

/* Find prefix+key, check its shape against the slot, widen it into dst.
 * Messages name the shard that holds the tensor (or the checkpoint). */
static int load_tensor(GPT2 *g, const StCheckpoint *ck, const char *key, const GPT2Slot *s, float *dst, char *used)
{
    const char *file;
    size_t id;
    const StTensor *t = st_ckpt_find(ck, key, &file, &id);
    if (!t) return SP_FAIL(g, "%s: missing tensor %s (config: n_layer %zu, n_embd %zu)", ck_name(ck), key,
                         g->cfg.num_layers, g->cfg.channels);
    used[id] = 1;
    int same = t->ndim == s->ndim;
    for (int d = 0; same && d < s->ndim; d++) same = t->shape[d] == s->shape[d];
    char have[96];
    if (!same) {
        char want[64];
        if (s->ndim == 1) snprintf(want, sizeof want, "(%zu)", s->shape[0]);
        else snprintf(want, sizeof want, "(%zu,%zu)", s->shape[0], s->shape[1]);
        return SP_FAIL(g, "%s: %s is %s but the config needs %s", file, key, st_tensor_desc(t, have, sizeof have),
                     want);
    }
    if (st_to_f32(t, dst) < 0)
        return SP_FAIL(g, "%s: %s is %s, not a float tensor", file, key, st_tensor_desc(t, have, sizeof have));
    return 0;
}

/* Keys a GPT-2 checkpoint may carry that the forward does not use. */
static int ignorable_key(const char *k)
{
    size_t n = strlen(k);
    return (n > 10 && !strcmp(k + n - 10, ".attn.bias")) || (n > 17 && !strcmp(k + n - 17, ".attn.masked_bias"));
}

static int gpt2_load(GPT2 *g, const StCheckpoint *ck)
{
    const GPT2Config *c = &g->cfg;
    GPT2Slot tab[GPT2_NSLOTS];
    size_t ns = gpt2_slots(c, &g->w, tab), L = c->num_layers;
    const char *prefix = st_ckpt_find(ck, "wte.weight", NULL, NULL)               ? ""
                         : st_ckpt_find(ck, "transformer.wte.weight", NULL, NULL) ? "transformer."
                                                                                   : NULL;
    if (!prefix)
        return SP_FAIL(g, "%s: no wte.weight or transformer.wte.weight: not a GPT-2 checkpoint", ck_name(ck));
    const StTensor *lm = st_ckpt_find(ck, "lm_head.weight", NULL, NULL);
    const StTensor *wte = st_ckpt_find(ck, *prefix ? "transformer.wte.weight" : "wte.weight", NULL, NULL);
    int tied = !lm || (lm->dtype == wte->dtype && lm->nbytes == wte->nbytes && !memcmp(lm->data, wte->data, lm->nbytes));
    size_t total = tied ? 0 : c->vocab_size * c->channels;
    for (size_t i = 0; i < ns; i++) total += slot_numel(&tab[i]) * (tab[i].per_layer ? L : 1);
    g->num_params = total;
    float *cur = g->params_mem = xmalloc_aligned(total * sizeof(float));
    for (size_t i = 0; i < ns; i++) {
        *tab[i].slot = cur;
        cur += slot_numel(&tab[i]) * (tab[i].per_layer ? L : 1);
    }
    g->w.lm_head = tied ? g->w.wte : cur;
    char *used = xcalloc(ck->n + 1, 1), key[160], fmt[128];
    int rc = 0;
    for (size_t i = 0; i < ns && !rc; i++) {
        snprintf(fmt, sizeof fmt, "%s%s", prefix, tab[i].key);
        size_t n = slot_numel(&tab[i]);
        for (size_t l = 0; l < (tab[i].per_layer ? L : 1) && !rc; l++) {
            snprintf(key, sizeof key, fmt, l);
            rc = load_tensor(g, ck, key, &tab[i], *tab[i].slot + l * n, used);
        }
    }
    if (!rc && lm) {
        GPT2Slot s = {"lm_head.weight", 0, 2, {c->vocab_size, c->channels}, NULL};
        float *dst = tied ? xmalloc(c->vocab_size * c->channels * sizeof(float)) : g->w.lm_head;
        rc = load_tensor(g, ck, "lm_head.weight", &s, dst, used);   /* checks the shape */
        if (tied) free(dst);
    }
    for (size_t i = 0; i < ck->n && !rc; i++) {
        const char *file;
        const StTensor *t = st_ckpt_get(ck, i, &file);
        if (!used[i] && !ignorable_key(t->name))
            rc = SP_FAIL(g, "%s: unexpected tensor %s (config: n_layer %zu): checkpoint and config disagree", file,
                       t->name, L);
    }
    free(used);
    return rc;
}

int gpt2_open(GPT2 *g, const char *dir)
{
    memset(g, 0, sizeof *g);
    char *cpath = sp_path_join(dir, "config.json");
    size_t len;
    char *text = sp_read_file(cpath, &len);
    int rc = text ? 0 : SP_FAIL(g, "%s: %s", cpath, strerror(errno));
    if (!rc && strlen(text) != len) rc = SP_FAIL(g, "%s: contains a NUL byte", cpath);
    if (!rc) rc = gpt2_config_parse(&g->cfg, text, cpath, g->err, sizeof g->err);
    free(text);
    free(cpath);
    if (rc) return rc;
    StCheckpoint ck;
    if (st_ckpt_open(&ck, dir) < 0) rc = SP_FAIL(g, "%s", ck.err);
    else rc = gpt2_load(g, &ck);
    st_ckpt_close(&ck);
    return rc;
}

int gpt2_alloc(GPT2 *g, size_t B, size_t T, int logits)
{
    const GPT2Config *c = &g->cfg;
    if (!B || !T) return SP_FAIL(g, "gpt2_alloc: empty batch");
    if (T > c->max_seq_len) return SP_FAIL(g, "windows of %zu tokens exceed n_positions %zu", T, c->max_seq_len);
    free(g->acts_mem);
    g->att_slots = (size_t)sp_par_threads(); /* one (T,T) scratch per attention worker */
    size_t BT = B * T, C = c->channels, F = c->n_inner, V = c->vocab_size;
    struct { float **slot; size_t n; } tab[] = {
        {&g->acts.resid, BT * C}, {&g->acts.ln, BT * C}, {&g->acts.qkv, BT * 3 * C},
        {&g->acts.att, T * T * g->att_slots}, {&g->acts.atty, BT * C}, {&g->acts.attn_out, BT * C},
        {&g->acts.fch, BT * F}, {&g->acts.fch_gelu, BT * F}, {&g->acts.mlp_out, BT * C},
        {&g->acts.logits, logits ? BT * V : 0},
    };
    size_t total = 0, nt = sizeof tab / sizeof tab[0];
    for (size_t i = 0; i < nt; i++) total += (tab[i].n + 15) & ~(size_t)15;  /* keep 64-byte alignment */
    float *cur = g->acts_mem = xmalloc_aligned(total * sizeof(float));
    for (size_t i = 0; i < nt; i++) {
        *tab[i].slot = tab[i].n ? cur : NULL;
        cur += (tab[i].n + 15) & ~(size_t)15;
    }
    g->maxB = B, g->maxT = T, g->has_logits = logits;
    return 0;
}

void gpt2_close(GPT2 *g)
{
    free(g->params_mem);
    free(g->acts_mem);
    g->params_mem = g->acts_mem = NULL;
}

/* ---- hooks ---- */
static const char *const hook_names[GPT2_HOOK_NKIND] = {
    "hook_resid_pre", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out",
    "hook_resid_post",
};

int gpt2_hook_parse(const GPT2Config *c, const char *name, GPT2Hook *h, char *err, size_t errlen)
{
    char *end;
    if (strncmp(name, "blocks.", 7) || name[7] < '0' || name[7] > '9') goto bad;
    errno = 0;
    unsigned long l = strtoul(name + 7, &end, 10);
    if (errno || *end != '.' || l > 100000) goto bad;
    for (int k = 0; k < GPT2_HOOK_NKIND; k++) {
        if (strcmp(end + 1, hook_names[k])) continue;
        if (c && l >= c->num_layers)
            return sp_fail(err, errlen, "hook %s: layer %lu but the model has %zu layers", name, l, c->num_layers);
        h->layer = l, h->kind = (GPT2HookKind)k;
        return 0;
    }
bad:
    return sp_fail(err, errlen, "unknown hook \"%.80s\" (expected blocks.L.hook_resid_pre|hook_attn_out|"
                 "hook_resid_mid|mlp.hook_pre|mlp.hook_post|hook_mlp_out|hook_resid_post)", name);
}

const char *gpt2_hook_name(GPT2Hook h, char *buf, size_t len)
{
    snprintf(buf, len, "blocks.%zu.%s", h.layer, h.kind < GPT2_HOOK_NKIND ? hook_names[h.kind] : "?");
    return buf;
}

size_t gpt2_hook_dim(const GPT2Config *c, GPT2Hook h)
{
    return h.kind == GPT2_HOOK_MLP_PRE || h.kind == GPT2_HOOK_MLP_POST ? c->n_inner : c->channels;
}

size_t gpt2_hook_index(GPT2Hook h) { return h.layer * GPT2_HOOK_NKIND + h.kind; }

GPT2Hook gpt2_hook_resid(GPT2Hook h)
{
    if (h.kind <= GPT2_HOOK_ATTN_OUT) h.kind = GPT2_HOOK_RESID_PRE;
    else if (h.kind < GPT2_HOOK_RESID_POST) h.kind = GPT2_HOOK_RESID_MID;
    return h;
}

int gpt2_patch_zero(void *ctx, const char *hook, float *act, size_t B, size_t T, size_t D)
{
    memset(act, 0, B * T * D * sizeof *act);
    return 0;
}

int gpt2_patch_mean(void *ctx, const char *hook, float *act, size_t B, size_t T, size_t D)
{
    const float *mean = ctx;
    for (size_t i = 0; i < B * T; i++) memcpy(act + i * D, mean, D * sizeof *act);
    return 0;
}

/* ---- vectorisable math ----
 * expf and tanhf are library calls that do not vectorise; these do (plain
 * arithmetic), to about 2 ulp, far inside the 1e-4 the forward is held to.
 * GCC vectorises the loops that use them only at -O3 and only when a float
 * compare may not trap (the clamps), hence the attribute on those loops. */
#if defined(__GNUC__) && !defined(__clang__)
#define GPT2_VECTORIZE __attribute__((optimize("O3", "tree-vectorize", "no-trapping-math", "fp-contract=off")))
#else
#define GPT2_VECTORIZE
#endif
/* The elementwise loops (GELU, layer norm, softmax, the loss) are built
 * three times, for AVX-512, AVX2 and the baseline (-march=x86-64-v2: SSE),
 * and the loader picks one for the CPU (ifunc): one binary, the vector
 * width of the machine it runs on. fp-contract=off keeps FMA out, so every
 * version does the same IEEE operations in the same order per element and
 * their bytes agree (reductions stay in source order: scalar, or the
 * explicit 16 lanes of token_loss_rows). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GPT2_HOT GPT2_VECTORIZE __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GPT2_HOT GPT2_VECTORIZE
#endif

GPT2_VECTORIZE static inline __attribute__((always_inline)) float fast_exp(float x)
{
    /* exp(x) = 2^n * exp(r), r = x - n ln2 in [-ln2/2, ln2/2]; Cephes' polynomial */
    x = x < -87.3f ? -87.3f : x > 88.3f ? 88.3f : x;
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } u = {.i = ((int32_t)n + 127) << 23};
    return p * u.f;
}

GPT2_VECTORIZE static inline __attribute__((always_inline)) float fast_tanh(float x)
{
    /* Eigen's rational approximation (ptanh_float), clamped where tanh is +-1 in f32 */
    x = x < -7.90531110763549805f ? -7.90531110763549805f : x > 7.90531110763549805f ? 7.90531110763549805f : x;
    float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 - 8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return x * p / q;
}

/* ---- layers ---- */
#define GELU_SCALE 0.7978845608028654f  /* sqrt(2/pi) */

GPT2_HOT static void encoder_forward(float *out, const int32_t *tok, const float *wte, const float *wpe, size_t B, size_t T,
                            size_t C)
{
    // out (B,T,C) = wte[tok[b,t]] + wpe[t]
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++) {
            float *o = out + (b * T + t) * C;
            const float *we = wte + (size_t)tok[b * T + t] * C, *pe = wpe + t * C;
            for (size_t i = 0; i < C; i++) o[i] = we[i] + pe[i];
        }
}

GPT2_HOT static void layernorm_forward(float *out, const float *inp, const float *w, const float *b, size_t N, size_t C,
                              float eps)
{
    // out (N,C) = (inp - mean) / sqrt(var + eps) * w + b, per row; two passes for accuracy
    for (size_t i = 0; i < N; i++) {
        const float *x = inp + i * C;
        float *o = out + i * C;
        float m = 0, v = 0;
        for (size_t j = 0; j < C; j++) m += x[j];
        m /= C;
        for (size_t j = 0; j < C; j++) v += (x[j] - m) * (x[j] - m);
        float s = 1.0f / sqrtf(v / C + eps);
        for (size_t j = 0; j < C; j++) o[j] = (x[j] - m) * s * w[j] + b[j];
    }
}

static void matmul_forward(float *out, const float *inp, const float *W, const float *bias, size_t N, size_t T,
                           size_t IC, size_t OC)
{
    // out (N,OC) = inp (N,IC) @ W (IC,OC) + bias (OC), N = B*T rows in windows of T;
    // most of the running time is spent here. sp_gemm's window layout: a
    // token's row comes out the same whatever else is in the batch
    for (size_t i = 0; i < N; i++) memcpy(out + i * OC, bias, OC * sizeof *out);
    sp_gemm_rows(SP_ROWS_WINDOWS(T), CblasNoTrans, CblasNoTrans, N, OC, IC, 1.0f, inp, IC, W, OC, 1.0f, out, OC);
}

GPT2_HOT static void softmax_causal(float *restrict row, size_t n, size_t T)
{
    // row (T): softmax over the first n entries, zero after (the causal mask)
    // maxval is only subtracted for numerical stability
    float mx = row[0], sum = 0;
    for (size_t j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    for (size_t j = 0; j < n; j++) sum += row[j] = fast_exp(row[j] - mx);
    float inv = 1.0f / sum;
    for (size_t j = 0; j < n; j++) row[j] *= inv;
    for (size_t j = n; j < T; j++) row[j] = 0;
}

typedef struct {
    float *out, *att;
    const float *qkv;
    size_t B, T, C, NH, workers;
} GPT2Attention;

/* Worker w takes the (b, h) pairs w, w + workers, ...: each pair is two
 * single-threaded sgemm calls of one shape, so a window's attention does
 * not depend on the batch or on which worker ran it. */
static void attention_worker(void *arg, size_t w0, size_t w1)
{
    const GPT2Attention *j = arg;
    size_t T = j->T, C = j->C, NH = j->NH, hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (size_t w = w0; w < w1; w++)
        for (size_t p = w; p < j->B * NH; p += j->workers) {
            size_t b = p / NH, h = p % NH;
            const float *q = j->qkv + b * T * 3 * C + h * hs, *k = q + C, *v = q + 2 * C;
            float *a = j->att + w * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)hs, scale, q, (int)(3 * C), k,
                        (int)(3 * C), 0.0f, a, (int)T);
            for (size_t t = 0; t < T; t++) softmax_causal(a + t * T, t + 1, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hs, (int)T, 1.0f, a, (int)T, v,
                        (int)(3 * C), 0.0f, j->out + b * T * C + h * hs, (int)C);
        }
}

static void attention_forward(float *out, float *att, size_t slots, const float *qkv, size_t B, size_t T, size_t C,
                              size_t NH)
{
    // qkv (B,T,3C) holds q, k, v side by side; att (slots,T,T) scratch; out (B,T,C)
    // per (b, h): att = softmax(q k^T / sqrt(hs)) causal, out = att v;
    // the B*NH pairs are independent, so they are spread over the workers
    size_t workers = (size_t)sp_par_threads();
    if (workers > slots) workers = slots;
    if (workers > B * NH) workers = B * NH;
    GPT2Attention j = {out, att, qkv, B, T, C, NH, workers};
    sp_parfor(workers, 1, attention_worker, &j);
}

GPT2_HOT static void gelu_forward(float *restrict out, const float *restrict inp, size_t n)
{
    // gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + fast_tanh(GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

GPT2_HOT static void residual_forward(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

typedef struct {
    const float *logits;    /* (B,T,V) */
    const int32_t *tokens;  /* (B,T) */
    size_t T, V, r0, r1;    /* rows r0..r1-1 of the (B*(T-1)) losses */
    float *loss;            /* (B,T-1) */
} GPT2LossJob;

/* loss[r] = logsumexp(logits[b,t]) - logits[b,t,tokens[b,t+1]], r = b*(T-1)+t */
GPT2_HOT static void *token_loss_rows(void *arg)
{
    const GPT2LossJob *j = arg;
    size_t T = j->T, V = j->V;
    for (size_t r = j->r0; r < j->r1; r++) {
        size_t b = r / (T - 1), t = r % (T - 1);
        const float *z = j->logits + (b * T + t) * V;
        // max in 16 lanes: a plain max reduction does not vectorise
        // without -ffast-math, 16 independent lanes do
        float lane[16], mx;
        size_t k = 0;
        for (size_t u = 0; u < 16; u++) lane[u] = z[0];
        for (; k + 16 <= V; k += 16)
            for (size_t u = 0; u < 16; u++) lane[u] = z[k + u] > lane[u] ? z[k + u] : lane[u];
        mx = lane[0];
        for (size_t u = 1; u < 16; u++) mx = lane[u] > mx ? lane[u] : mx;
        for (; k < V; k++) mx = z[k] > mx ? z[k] : mx;
        // 16 f32 lanes (vectorised; a single f32 sum would be a serial
        // chain of adds), each summing at most 16 values <= 1 before the
        // lanes go into the f64 total
        double sum = 0;
        float acc[16] = {0};
        size_t c = 0;
        for (k = 0; k + 16 <= V; k += 16) {
            for (size_t u = 0; u < 16; u++) acc[u] += fast_exp(z[k + u] - mx);
            if (++c == 16) {
                for (size_t u = 0; u < 16; u++) sum += acc[u], acc[u] = 0;
                c = 0;
            }
        }
        for (size_t u = 0; u < 16; u++) sum += acc[u];
        for (; k < V; k++) sum += fast_exp(z[k] - mx);
        j->loss[r] = (float)(log(sum) + mx - z[j->tokens[b * T + t + 1]]);
    }
    return NULL;
}

void gpt2_token_loss(const float *logits, const int32_t *tokens, size_t B, size_t T, size_t V, float *loss)
{
    // Rows are independent, so they are split over sp_par_threads()
    // threads (the loss is a fifth of the unembedding's time on one
    // core); each row is computed the same way, so the result does not
    // depend on the thread count. A thread that cannot start runs inline.
    if (T < 2) return;
    size_t n = B * (T - 1), nt = (size_t)sp_par_threads();
    if (nt > 64) nt = 64;
    if (nt > n / 8) nt = n / 8 ? n / 8 : 1;
    GPT2LossJob job[64];
    pthread_t tid[64];
    int started[64] = {0};
    for (size_t i = 0; i < nt; i++) {
        job[i] = (GPT2LossJob){logits, tokens, T, V, n * i / nt, n * (i + 1) / nt, loss};
        if (i) started[i] = pthread_create(&tid[i], NULL, token_loss_rows, &job[i]) == 0;
    }
    token_loss_rows(&job[0]);
    for (size_t i = 1; i < nt; i++) {
        if (started[i]) pthread_join(tid[i], NULL);
        else token_loss_rows(&job[i]);
    }
}

/* ---- the forward ---- */

/* Run the taps at one hook point. 0 = go on, 1 = this was the last point the
 * run needs, -1 = a hook function failed. */
static int run_taps(GPT2 *g, const GPT2Run *r, size_t l, GPT2HookKind kind, float *act, size_t last)
{
    GPT2Hook h = {l, kind};
    size_t D = gpt2_hook_dim(&g->cfg, h), n = r->B * r->T * D;
    char name[64];
    for (size_t i = 0; i < r->ntaps; i++) {
        const GPT2Tap *tp = &r->taps[i];
        if (tp->hook.layer != l || tp->hook.kind != kind) continue;
        if (tp->save) memcpy(tp->save, act, n * sizeof *act);
        if (tp->fn && tp->fn(tp->ctx, gpt2_hook_name(h, name, sizeof name), act, r->B, r->T, D) < 0)
            return SP_FAIL(g, "hook %s failed", name);
    }
    return gpt2_hook_index(h) == last ? 1 : 0;
}

/* The hook point a run starts at: the embedding's resid_pre of layer 0,
 * resid_pre of start_layer, or the resume point. */
static GPT2Hook run_start(const GPT2Run *r)
{
    if (r->resid_in && r->resume) return *r->resume;
    return (GPT2Hook){r->resid_in ? r->start_layer : 0, GPT2_HOOK_RESID_PRE};
}

/* The scratch holding hook point kind's value during a forward. */
static float *hook_act(GPT2Acts *a, GPT2HookKind kind)
{
    switch (kind) {
    case GPT2_HOOK_ATTN_OUT: return a->attn_out;
    case GPT2_HOOK_MLP_PRE: return a->fch;
    case GPT2_HOOK_MLP_POST: return a->fch_gelu;
    case GPT2_HOOK_MLP_OUT: return a->mlp_out;
    default: return a->resid;
    }
}

/* Checks before any work: sizes, token ids, taps. */
static int check_run(GPT2 *g, const GPT2Run *r, int want_logits)
{
    const GPT2Config *c = &g->cfg;
    size_t V = c->vocab_size;
    char name[64];
    if (!r->B || !r->T) return SP_FAIL(g, "empty batch");
    if (r->T > c->max_seq_len)
        return SP_FAIL(g, "window of %zu tokens exceeds n_positions %zu", r->T, c->max_seq_len);
    if (!g->acts_mem || r->B * r->T > g->maxB * g->maxT || r->T > g->maxT || r->B > g->maxB)
        return SP_FAIL(g, "batch (%zu,%zu) exceeds the (%zu,%zu) reserved by gpt2_alloc", r->B, r->T, g->maxB, g->maxT);
    if (want_logits && !g->has_logits) return SP_FAIL(g, "logits asked for but gpt2_alloc reserved none");
    if ((want_logits || !r->resid_in) && !r->tokens) return SP_FAIL(g, "no tokens");
    GPT2Hook s0 = run_start(r);
    if (s0.layer >= c->num_layers || s0.kind >= GPT2_HOOK_NKIND)
        return SP_FAIL(g, "start layer %zu but the model has %zu layers", s0.layer, c->num_layers);
    if (r->resume && !r->act_in && gpt2_hook_resid(s0).kind != s0.kind)
        return SP_FAIL(g, "resuming at %s needs its value", gpt2_hook_name(s0, name, sizeof name));
    for (size_t i = 0; r->tokens && i < r->B * r->T; i++)
        if (r->tokens[i] < 0 || (size_t)r->tokens[i] >= V)
            return SP_FAIL(g, "token id %" PRId32 " at (%zu,%zu) is outside the vocabulary [0, %zu)", r->tokens[i],
                         i / r->T, i % r->T, V);
    for (size_t i = 0; i < r->ntaps; i++) {
        GPT2Hook h = r->taps[i].hook;
        if (h.layer >= c->num_layers || h.kind >= GPT2_HOOK_NKIND)
            return SP_FAIL(g, "tap %zu: no such hook (layer %zu of %zu)", i, h.layer, c->num_layers);
        if (gpt2_hook_index(h) < gpt2_hook_index(s0)) {
            char sn[64];
            return SP_FAIL(g, "hook %s is before the start %s", gpt2_hook_name(h, name, sizeof name),
                           gpt2_hook_name(s0, sn, sizeof sn));
        }
    }
    return 0;
}

int gpt2_forward(GPT2 *g, const GPT2Run *r)
{
    const GPT2Config *c = &g->cfg;
    const GPT2Params *w = &g->w;
    GPT2Acts *a = &g->acts;
    size_t B = r->B, T = r->T, BT = B * T, C = c->channels, F = c->n_inner, NH = c->num_heads, V = c->vocab_size;
    int want_logits = r->logits || r->loss;
    if (check_run(g, r, want_logits) < 0) return -1;
    // the last hook point a tap needs; with logits, none: run every layer
    size_t last = SIZE_MAX;
    if (!want_logits) {
        last = 0;
        for (size_t i = 0; i < r->ntaps; i++) {
            size_t k = gpt2_hook_index(r->taps[i].hook);
            last = k > last ? k : last;
        }
        if (!r->ntaps) return 0;
    }
    // the residual stream (B,T,C): token + position embeddings, or resumed
    // at s0 (with that point's own value when it is not the residual)
    GPT2Hook s0 = run_start(r);
    if (r->resid_in) memmove(a->resid, r->resid_in, BT * C * sizeof(float));
    else encoder_forward(a->resid, r->tokens, w->wte, w->wpe, B, T, C);
    if (hook_act(a, s0.kind) != a->resid)
        memmove(hook_act(a, s0.kind), r->act_in, BT * gpt2_hook_dim(c, s0) * sizeof(float));
    // In the start layer, the steps up to s0 are skipped (k0 = s0.kind) and
    // the taps run from s0 on. HOOK: run the taps at this point; return once
    // the last point a tap needs is done
    int rc;
#define HOOK(kind, act) \
    if (kind >= k0 && (rc = run_taps(g, r, l, kind, act, last)) != 0) return rc < 0 ? -1 : 0
    for (size_t l = s0.layer; l < c->num_layers; l++) {
        GPT2HookKind k0 = l == s0.layer ? s0.kind : GPT2_HOOK_RESID_PRE;
        HOOK(GPT2_HOOK_RESID_PRE, a->resid);
        if (k0 < GPT2_HOOK_ATTN_OUT) {
            // ln_1 (BT,C)
            layernorm_forward(a->ln, a->resid, w->ln1w + l * C, w->ln1b + l * C, BT, C, c->ln_eps);
            // qkv (BT,3C) = ln @ c_attn
            matmul_forward(a->qkv, a->ln, w->qkvw + l * C * 3 * C, w->qkvb + l * 3 * C, BT, T, C, 3 * C);
            // atty (BT,C): causal self-attention, heads concatenated
            attention_forward(a->atty, a->att, g->att_slots, a->qkv, B, T, C, NH);
            // attn_out (BT,C) = atty @ attn.c_proj
            matmul_forward(a->attn_out, a->atty, w->attprojw + l * C * C, w->attprojb + l * C, BT, T, C, C);
        }
        HOOK(GPT2_HOOK_ATTN_OUT, a->attn_out);
        // resid_mid = resid_pre + attn_out
        if (k0 < GPT2_HOOK_RESID_MID) residual_forward(a->resid, a->attn_out, BT * C);
        HOOK(GPT2_HOOK_RESID_MID, a->resid);
        if (k0 < GPT2_HOOK_MLP_PRE) {
            // ln_2 (BT,C)
            layernorm_forward(a->ln, a->resid, w->ln2w + l * C, w->ln2b + l * C, BT, C, c->ln_eps);
            // fch (BT,F) = ln @ c_fc: the MLP pre-activations
            matmul_forward(a->fch, a->ln, w->fcw + l * C * F, w->fcb + l * F, BT, T, C, F);
        }
        HOOK(GPT2_HOOK_MLP_PRE, a->fch);
        // fch_gelu (BT,F) = gelu_new(fch): the MLP neurons
        if (k0 < GPT2_HOOK_MLP_POST) gelu_forward(a->fch_gelu, a->fch, BT * F);
        HOOK(GPT2_HOOK_MLP_POST, a->fch_gelu);
        // mlp_out (BT,C) = fch_gelu @ mlp.c_proj
        if (k0 < GPT2_HOOK_MLP_OUT)
            matmul_forward(a->mlp_out, a->fch_gelu, w->fcprojw + l * F * C, w->fcprojb + l * C, BT, T, F, C);
        HOOK(GPT2_HOOK_MLP_OUT, a->mlp_out);
        // resid_post = resid_mid + mlp_out
        if (k0 < GPT2_HOOK_RESID_POST) residual_forward(a->resid, a->mlp_out, BT * C);
        HOOK(GPT2_HOOK_RESID_POST, a->resid);
    }
#undef HOOK
    // ln_f (BT,C), then logits (BT,V) = ln @ lm_head^T
    layernorm_forward(a->ln, a->resid, w->lnfw, w->lnfb, BT, C, c->ln_eps);
    sp_gemm_rows(SP_ROWS_WINDOWS(T), CblasNoTrans, CblasTrans, BT, V, C, 1.0f, a->ln, C, w->lm_head, C, 0.0f,
                 a->logits, V);
    // loss (B,T-1): next-token cross-entropy
    if (r->loss) gpt2_token_loss(a->logits, r->tokens, B, T, V, r->loss);
    return 0;
}

const TszTensor *gpt2_record_tokens(const GPT2Config *c, const TszRecord *rec, char *err, size_t errlen)
{
    if (sp_kind_check(rec, SP_K_TOKENS, err, errlen) < 0) return NULL;
    const TszTensor *t = sp_kind_tensor(rec, SP_K_TOKENS, "tokens", err, errlen);
    char desc[96];
    if (!t) return NULL;
    if (t->ndim != 2 || (t->dtype != TSZ_I32 && t->dtype != TSZ_I64))
        return sp_fail(err, errlen, "tokens is %s, expected i32 (rows,T)", tsz_tensor_desc(t, desc, sizeof desc)), NULL;
    if (!t->shape[1]) return sp_fail(err, errlen, "empty token windows"), NULL;
    if (t->shape[1] > c->max_seq_len)
        return sp_fail(err, errlen, "windows of %" PRIu64 " tokens exceed the model's n_positions %zu", t->shape[1],
                       c->max_seq_len), NULL;
    return t;
}
