/* Unit tests for lib/safetensors.c and lib/gpt2.c: the loader's refusals,
 * hook names, and the forward's API semantics (taps, patches, early stop,
 * resuming from a cached residual, per-token loss). The numerics against an
 * independent numpy forward are in tests/t2000-gpt2-fwd.sh; here the
 * references are double-precision formulas written in this file. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpt2.h"
#include "parfor.h"
#include "safetensors.h"
#include "tap.h"

enum { L = 2, C = 12, NH = 3, V = 23, P = 8, F = 4 * C };

static char dir[64];

static void put_u64(FILE *f, uint64_t v)
{
    for (int i = 0; i < 8; i++) fputc((int)(v >> (8 * i)) & 0xff, f);
}

/* Write a random GPT-2 checkpoint with F32 tensors into dir. */
static void write_model(void)
{
    struct { char name[64]; size_t n; int nd; size_t s0, s1; } t[64];
    size_t nt = 0;
#define ADD(nm, a, b, nd_) do { snprintf(t[nt].name, 64, "%s", nm); t[nt].s0 = a; t[nt].s1 = b; \
    t[nt].nd = nd_; t[nt].n = (nd_ == 1 ? a : a * b); nt++; } while (0)
    ADD("wte.weight", V, C, 2);
    ADD("wpe.weight", P, C, 2);
    char k[64];
    static const struct { const char *s; size_t a, b; int nd; } per[] = {
        {"ln_1.weight", C, 0, 1}, {"ln_1.bias", C, 0, 1}, {"attn.c_attn.weight", C, 3 * C, 2},
        {"attn.c_attn.bias", 3 * C, 0, 1}, {"attn.c_proj.weight", C, C, 2}, {"attn.c_proj.bias", C, 0, 1},
        {"ln_2.weight", C, 0, 1}, {"ln_2.bias", C, 0, 1}, {"mlp.c_fc.weight", C, F, 2},
        {"mlp.c_fc.bias", F, 0, 1}, {"mlp.c_proj.weight", F, C, 2}, {"mlp.c_proj.bias", C, 0, 1},
    };
    for (int l = 0; l < L; l++)
        for (size_t i = 0; i < sizeof per / sizeof per[0]; i++) {
            snprintf(k, sizeof k, "h.%d.%s", l, per[i].s);
            ADD(k, per[i].a, per[i].b, per[i].nd);
        }
    ADD("ln_f.weight", C, 0, 1);
    ADD("ln_f.bias", C, 0, 1);
#undef ADD
    char *hdr = xmalloc(16384);
    size_t hl = 0, off = 0;
    hl += snprintf(hdr + hl, 16384 - hl, "{");
    for (size_t i = 0; i < nt; i++) {
        char shape[48];
        if (t[i].nd == 1) snprintf(shape, sizeof shape, "[%zu]", t[i].s0);
        else snprintf(shape, sizeof shape, "[%zu,%zu]", t[i].s0, t[i].s1);
        hl += snprintf(hdr + hl, 16384 - hl, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                       i ? "," : "", t[i].name, shape, off, off + 4 * t[i].n);
        off += 4 * t[i].n;
    }
    hl += snprintf(hdr + hl, 16384 - hl, "}");
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    put_u64(f, hl);
    fwrite(hdr, 1, hl, f);
    SpRng rng;
    sp_rng_seed(&rng, 42);
    for (size_t i = 0; i < nt; i++) {
        int is_lnw = strstr(t[i].name, "ln_") && strstr(t[i].name, "weight");
        double scale = t[i].nd == 2 ? 1.0 / sqrt((double)t[i].s0) : 0.2;
        if (!strcmp(t[i].name, "wte.weight")) scale = 1.0;
        for (size_t j = 0; j < t[i].n; j++) {
            float v = (float)((is_lnw ? 1.0 : 0.0) + scale * sp_rng_normal(&rng));
            fwrite(&v, 4, 1, f);
        }
    }
    fclose(f);
    free(hdr);
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "w");
    fprintf(f, "{\"model_type\":\"gpt2\",\"n_embd\":%d,\"n_layer\":%d,\"n_head\":%d,\"vocab_size\":%d,"
               "\"n_positions\":%d,\"layer_norm_epsilon\":1e-5}\n", C, L, NH, V, P);
    fclose(f);
}

static void write_bytes(const char *name, const void *p, size_t n)
{
    FILE *f = fopen(name, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

/* A safetensors file from a header text and data bytes. */
static void write_st(const char *path, const char *hdr, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    put_u64(f, strlen(hdr));
    fputs(hdr, f);
    fwrite(data, 1, n, f);
    fclose(f);
}

static void test_safetensors_refusals(void)
{
    SafeTensors st;
    char path[128];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    write_bytes(path, "abc", 3);
    ok(st_open(&st, path) < 0 && strstr(st.err, "too short for a safetensors file"), "short file: %s", st.err);
    st_close(&st);
    const char h1[] = "\x05\0\0\0\0\0\0\0{bad}";
    write_bytes(path, h1, sizeof h1 - 1);
    ok(st_open(&st, path) < 0 && strstr(st.err, "header is not valid JSON"), "bad JSON: %s", st.err);
    st_close(&st);
    write_st(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", "0123456789abcdef", 16);
    ok(st_open(&st, path) < 0 && strstr(st.err, "x: data_offsets [0, 12] but (2,2) F32 needs 16 bytes"),
       "size mismatch: %s", st.err);
    st_close(&st);
    write_st(path, "{\"x\":{\"dtype\":\"Q42\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", "0123456789abcdef", 16);
    ok(st_open(&st, path) < 0 && strstr(st.err, "x: unsupported dtype Q42"), "bad dtype: %s", st.err);
    st_close(&st);
    write_st(path, "{\"x\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}",
             "\0\x3c\0\xc0\0\0\0\x7c", 8);
    write_st(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", "0123456789ab", 12);
    ok(st_open(&st, path) < 0 && strstr(st.err, "x: data_offsets outside the file's 12 data bytes"), "truncated data: %s",
       st.err);
    st_close(&st);
    write_st(path, "{\"x\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}",
             "\0\x3c\0\xc0\0\0\0\x7c", 8);
    float out[4] = {0, 0, 0, 0};
    int rc = st_open(&st, path);
    const StTensor *x = rc ? NULL : st_find(&st, "x");
    rc = x ? st_to_f32(x, out) : -1;
    ok(rc == 0 && out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.0f && isinf(out[3]),
       "F16 tensor widened: %g %g %g %g", out[0], out[1], out[2], out[3]);
    st_close(&st);
}

static void test_hooks(const GPT2Config *c)
{
    char err[256], name[64];
    int all = 1;
    for (size_t l = 0; l < L; l++)
        for (int k = 0; k < GPT2_HOOK_NKIND; k++) {
            GPT2Hook h = {l, (GPT2HookKind)k}, back;
            gpt2_hook_name(h, name, sizeof name);
            all &= gpt2_hook_parse(c, name, &back, err, sizeof err) == 0 && back.layer == l && back.kind == h.kind &&
                   gpt2_hook_index(h) == l * 7 + (size_t)k;
        }
    ok(all, "hook names round trip for every layer and kind");
    GPT2Hook h;
    ok(gpt2_hook_parse(c, "blocks.2.hook_resid_pre", &h, err, sizeof err) < 0 &&
       strstr(err, "layer 2 but the model has 2 layers"), "layer out of range: %s", err);
    static const char *const bad[] = {"blocks.x.hook_resid_pre", "blocks.0.hook_nothing", "hook_resid_pre",
                                      "blocks.-1.hook_attn_out", "blocks.0.mlp.hook_post.x", "blocks.01x.mlp.hook_pre"};
    int rej = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) rej &= gpt2_hook_parse(c, bad[i], &h, err, sizeof err) < 0;
    ok(rej, "malformed hook names are refused");
    ok(gpt2_hook_dim(c, (GPT2Hook){0, GPT2_HOOK_MLP_POST}) == F && gpt2_hook_dim(c, (GPT2Hook){1, GPT2_HOOK_ATTN_OUT}) == C,
       "hook widths");
}

typedef struct { int calls; int fail; } PatchCtx;

static int zero_patch(void *ctx, const char *hook, float *act, size_t B, size_t T, size_t D)
{
    PatchCtx *p = ctx;
    p->calls++;
    if (p->fail) return -1;
    memset(act, 0, B * T * D * sizeof *act);
    return 0;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void test_forward(GPT2 *g)
{
    enum { B = 3, T = P };
    size_t BT = B * T;
    int32_t tok[B * T];
    SpRng rng;
    sp_rng_seed(&rng, 7);
    for (size_t i = 0; i < BT; i++) tok[i] = (int32_t)sp_rng_below(&rng, V);
    ok(gpt2_alloc(g, B, T, 1) == 0, "alloc scratch for (%d,%d) with logits", B, T);

    // full run, every hook saved
    float *save[L * 7], loss[B * (T - 1)], loss2[B * (T - 1)], ref[B * (T - 1)];
    GPT2Tap taps[L * 7];
    for (size_t i = 0; i < L * 7; i++) {
        GPT2Hook h = {i / 7, (GPT2HookKind)(i % 7)};
        save[i] = malloc(BT * gpt2_hook_dim(&g->cfg, h) * sizeof(float));
        taps[i] = (GPT2Tap){.hook = h, .save = save[i]};
    }
    GPT2Run r = {.tokens = tok, .B = B, .T = T, .taps = taps, .ntaps = L * 7, .loss = loss};
    ok(gpt2_forward(g, &r) == 0, "full forward: %s", g->err);
    float *logits = malloc(BT * V * sizeof(float));
    memcpy(logits, g->acts.logits, BT * V * sizeof(float));

    // per-token loss against a double log-softmax of the logits
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t + 1 < T; t++) {
            const float *z = logits + (b * T + t) * V;
            double mx = -INFINITY, s = 0;
            for (size_t j = 0; j < V; j++) mx = fmax(mx, z[j]);
            for (size_t j = 0; j < V; j++) s += exp(z[j] - mx);
            ref[b * (T - 1) + t] = (float)(log(s) + mx - z[tok[b * T + t + 1]]);
        }
    close_enough(loss, ref, B * (T - 1), 1e-6, "per-token loss vs double log-softmax");

    // gelu_new against double tanh, and the residual identities
    float *gref = malloc(BT * F * sizeof(float));
    for (size_t i = 0; i < BT * F; i++) {
        double x = save[3][i];
        gref[i] = (float)(0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))));
    }
    close_enough(save[4], gref, BT * F, 1e-6, "mlp.hook_post = gelu_new(mlp.hook_pre), double reference");
    float *sum = malloc(BT * C * sizeof(float));
    for (size_t i = 0; i < BT * C; i++) sum[i] = save[0][i] + save[1][i];
    close_enough(save[2], sum, BT * C, 1e-6, "resid_mid = resid_pre + attn_out");
    for (size_t i = 0; i < BT * C; i++) sum[i] = save[2][i] + save[5][i];
    close_enough(save[6], sum, BT * C, 1e-6, "resid_post = resid_mid + mlp_out");
    ok(max_abs_diff(save[6], save[7], BT * C) == 0, "blocks.0.hook_resid_post is blocks.1.hook_resid_pre");

    // early stop: a run with one tap at layer 0 and no logits gives the same value
    float *one = malloc(BT * F * sizeof(float));
    GPT2Tap t1 = {.hook = {0, GPT2_HOOK_MLP_POST}, .save = one};
    GPT2Run r1 = {.tokens = tok, .B = B, .T = T, .taps = &t1, .ntaps = 1};
    memset(g->acts.logits, 0, BT * V * sizeof(float));
    ok(gpt2_forward(g, &r1) == 0 && max_abs_diff(one, save[4], BT * F) == 0, "stopping at a hook gives the same value");
    int untouched = 1;
    for (size_t i = 0; i < BT * V; i++) untouched &= g->acts.logits[i] == 0;
    ok(untouched, "no unembedding without logits or loss");

    // resume from the cached residual of layer 1: same logits and loss
    GPT2Run rr = {.tokens = tok, .B = B, .T = T, .loss = loss2, .resid_in = save[7], .start_layer = 1};
    ok(gpt2_forward(g, &rr) == 0, "resumed forward: %s", g->err);
    ok(max_abs_diff(g->acts.logits, logits, BT * V) == 0 && max_abs_diff(loss2, loss, B * (T - 1)) == 0,
       "resuming at layer 1 from blocks.1.hook_resid_pre reproduces logits and loss exactly");
    // resume mid-layer, at each point of layer 1 from its residual and its value: the same bytes
    for (int k = 0; k < 7; k++) {
        GPT2Hook at = {1, (GPT2HookKind)k};
        GPT2Run rk = {.tokens = tok, .B = B, .T = T, .loss = loss2, .resume = &at,
                      .resid_in = save[7 + gpt2_hook_resid(at).kind], .act_in = save[7 + k]};
        memset(g->acts.logits, 0, BT * V * sizeof(float));
        int rk_rc = gpt2_forward(g, &rk);
        ok(rk_rc == 0 && max_abs_diff(g->acts.logits, logits, BT * V) == 0 &&
           max_abs_diff(loss2, loss, B * (T - 1)) == 0, "resuming at blocks.1 point %d reproduces logits and loss", k);
    }
    GPT2Hook at_post = {1, GPT2_HOOK_MLP_POST};
    GPT2Run noact = {.tokens = tok, .B = B, .T = T, .loss = loss2, .resume = &at_post, .resid_in = save[9]};
    ok(gpt2_forward(g, &noact) < 0 && strstr(g->err, "resuming at blocks.1.mlp.hook_post needs its value"),
       "resuming at a non-residual point without its value: %s", g->err);

    // patch: zero attn_out at layer 0; taps before and after the patch see clean and patched values
    PatchCtx pc = {0, 0};
    float *before = malloc(BT * C * sizeof(float)), *after = malloc(BT * C * sizeof(float));
    float *mid = malloc(BT * C * sizeof(float));
    GPT2Tap tp[] = {
        {.hook = {0, GPT2_HOOK_ATTN_OUT}, .save = before, .fn = zero_patch, .ctx = &pc},
        {.hook = {0, GPT2_HOOK_ATTN_OUT}, .save = after},
        {.hook = {0, GPT2_HOOK_RESID_MID}, .save = mid},
    };
    GPT2Run rp = {.tokens = tok, .B = B, .T = T, .taps = tp, .ntaps = 3, .loss = loss2};
    int prc = gpt2_forward(g, &rp);
    int zeros = 1;
    for (size_t i = 0; i < BT * C; i++) zeros &= after[i] == 0;
    ok(prc == 0 && pc.calls == 1 && max_abs_diff(before, save[1], BT * C) == 0 && zeros,
       "a tap saves before its fn; a later tap sees the patched value");
    ok(max_abs_diff(mid, save[0], BT * C) == 0, "with attn_out zeroed, resid_mid = resid_pre");
    ok(max_abs_diff(loss2, loss, B * (T - 1)) > 1e-3, "the patched loss differs (max diff %.3g)",
       max_abs_diff(loss2, loss, B * (T - 1)));

    // the ready-made patches
    float *mean = malloc(F * sizeof(float)), *got = malloc(BT * F * sizeof(float));
    for (size_t i = 0; i < F; i++) mean[i] = (float)i - 3.5f;
    GPT2Tap tm[] = {{.hook = {1, GPT2_HOOK_MLP_POST}, .fn = gpt2_patch_mean, .ctx = mean},
                    {.hook = {1, GPT2_HOOK_MLP_POST}, .save = got}};
    GPT2Run rm = {.tokens = tok, .B = B, .T = T, .taps = tm, .ntaps = 2};
    int mrc = gpt2_forward(g, &rm), same = 1;
    for (size_t i = 0; i < BT * F; i++) same &= got[i] == mean[i % F];
    ok(mrc == 0 && same, "gpt2_patch_mean writes the mean at every position");

    // failures
    pc.fail = 1;
    ok(gpt2_forward(g, &rp) < 0 && !strcmp(g->err, "hook blocks.0.hook_attn_out failed"), "a failing hook fn: %s",
       g->err);
    tok[5] = V;
    ok(gpt2_forward(g, &r1) < 0 && strstr(g->err, "token id 23 at (0,5) is outside the vocabulary [0, 23)"),
       "bad token id: %s", g->err);
    tok[5] = 0;
    GPT2Run big = {.tokens = tok, .B = B + 1, .T = T, .taps = &t1, .ntaps = 1};
    ok(gpt2_forward(g, &big) < 0 && strstr(g->err, "exceeds the (3,8) reserved"), "batch too large: %s", g->err);
    GPT2Run early = {.tokens = tok, .B = B, .T = T, .taps = &t1, .ntaps = 1, .resid_in = save[7], .start_layer = 1};
    ok(gpt2_forward(g, &early) < 0 && strstr(g->err, "hook blocks.0.mlp.hook_post is before the start blocks.1.hook_resid_pre"),
       "tap before the start layer: %s", g->err);
    ok(gpt2_alloc(g, 1, P + 1, 0) < 0 && strstr(g->err, "exceed n_positions 8"), "alloc beyond n_positions: %s",
       g->err);
    ok(gpt2_alloc(g, 2, 4, 0) == 0, "re-alloc smaller, no logits");
    GPT2Run nolog = {.tokens = tok, .B = 2, .T = 4, .loss = loss2};
    ok(gpt2_forward(g, &nolog) < 0 && strstr(g->err, "logits asked for but gpt2_alloc reserved none"),
       "loss without reserved logits: %s", g->err);
    GPT2Run t1run = {.tokens = tok, .B = 2, .T = 1, .taps = &t1, .ntaps = 1};
    ok(gpt2_forward(g, &t1run) == 0, "T = 1 runs");

    for (size_t i = 0; i < L * 7; i++) free(save[i]);
    free(logits), free(gref), free(sum), free(one), free(before), free(after), free(mid), free(mean), free(got);
}

static void test_config_refusals(void)
{
    GPT2Config c;
    char err[256];
    ok(gpt2_config_parse(&c, "{\"model_type\":\"gpt2\",\"n_embd\":8,\"n_layer\":1,\"n_head\":2,\"vocab_size\":5}", "c",
                         err, sizeof err) < 0 && !strcmp(err, "c: missing \"n_positions\""), "missing key: %s", err);
    ok(gpt2_config_parse(&c, "{\"model_type\":\"gpt2\",\"n_embd\":-8}", "c", err, sizeof err) < 0 &&
       !strcmp(err, "c: \"n_embd\" must be a positive integer"), "negative size: %s", err);
    ok(gpt2_config_parse(&c, "{\"model_type\":\"gpt2\",\"activation_function\":\"relu\"}", "c", err, sizeof err) < 0 &&
       strstr(err, "activation_function \"relu\" is not supported"), "other activation: %s", err);
    ok(gpt2_config_parse(&c, "[1]", "c", err, sizeof err) < 0 && !strcmp(err, "c: not a JSON object"), "not an object: %s",
       err);
    ok(gpt2_config_parse(&c, "{\"model_type\":\"gpt2\",\"n_embd\":8,\"n_layer\":1,\"n_head\":2,\"vocab_size\":5,"
                             "\"n_positions\":4,\"n_inner\":null}", "c", err, sizeof err) == 0 && c.n_inner == 32 &&
       fabsf(c.ln_eps - 1e-5f) < 1e-12f, "defaults: n_inner 4C, eps 1e-5");
}

/* gpt2_token_loss against log-sum-exp in double, on logits wide enough for
 * the vectorised lanes and their tail (V not a multiple of 16), with logits
 * far from 0; and the same bits on 1 and 2 threads. */
static void test_token_loss(void)
{
    size_t B = 3, T = 40, V2 = 50257 % 4096;   /* 1105 = 69 * 16 + 1 */
    float *z = malloc(B * T * V2 * sizeof *z), *l1 = malloc(B * T * sizeof *l1), *l2 = malloc(B * T * sizeof *l2);
    int32_t *tok = malloc(B * T * sizeof *tok);
    unsigned x = 7;
    for (size_t i = 0; i < B * T * V2; i++) x = x * 1103515245u + 12345u, z[i] = (float)((x >> 8) % 4000) / 100.0f + 30;
    for (size_t i = 0; i < B * T; i++) x = x * 1103515245u + 12345u, tok[i] = (int32_t)((x >> 8) % V2);
    z[V2 - 1] = 95;                 /* the max in the tail of row 0 */
    int nt = sp_par_threads();
    sp_par_set_threads(1);
    gpt2_token_loss(z, tok, B, T, V2, l1);
    sp_par_set_threads(2);
    gpt2_token_loss(z, tok, B, T, V2, l2);
    sp_par_set_threads(nt);
    double worst = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t + 1 < T; t++) {
            const float *r = z + (b * T + t) * V2;
            double mx = r[0], s = 0;
            for (size_t j = 0; j < V2; j++) mx = r[j] > mx ? r[j] : mx;
            for (size_t j = 0; j < V2; j++) s += exp(r[j] - mx);
            double want = log(s) + mx - r[tok[b * T + t + 1]];
            double d = fabs(l1[b * (T - 1) + t] - want) / fmax(1, fabs(want));
            worst = d > worst ? d : worst;
        }
    ok(worst < 1e-5, "token loss matches double log-sum-exp (max rel diff %.2g)", worst);
    ok(!memcmp(l1, l2, B * (T - 1) * sizeof *l1), "token loss: same bits on 1 and 2 threads");
    free(z), free(l1), free(l2), free(tok);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/gpt2-unit.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    write_model();
    test_safetensors_refusals();
    test_config_refusals();
    test_token_loss();
    GPT2 g;
    int rc = gpt2_open(&g, dir);
    ok(rc == 0, "open a random F32 checkpoint: %s", rc ? g.err : "ok");
    if (rc == 0) {
        ok(g.cfg.num_layers == L && g.cfg.channels == C && g.cfg.n_inner == F && g.w.lm_head == g.w.wte,
           "config read; lm_head tied to wte");
        test_hooks(&g.cfg);
        test_forward(&g);
    }
    gpt2_close(&g);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) diag("could not remove %s", dir);
    return done_testing();
}
