/* Test runner for attention.h: every function against a naive float64 reference written here, the
   identities between options, softmax edge cases, every error code, the allocator contract and PyTorch
   fixtures (tests/data, made by tests/gen_golden.py). Usage: test_attention [data_dir]. The last line
   printed is "N passed, N failed".

   Tolerance: a float32 result passes when max|got - ref| <= TOL * max|ref| (max-norm relative error),
   TOL = 1e-5, with ref computed in float64 from the same float32 inputs. Special values (inf, NaN) must
   match exactly. */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a counting allocator that can be told to fail: exercises ATTN_MALLOC / ATTN_FREE and alloc_user */
typedef struct test_alloc {
    int fail;     /* nonzero: the next allocation returns NULL */
    int n_alloc;  /* successful allocations */
    int n_free;
    int n_tries;  /* allocation requests, failed or not */
    int fail_at;  /* > 0: request number fail_at (counted by n_tries from 1) returns NULL */
} test_alloc;
static void *test_malloc(size_t size, void *user)
{
    test_alloc *a = (test_alloc *)user;
    if (a && ++a->n_tries == a->fail_at) return NULL;
    if (a && a->fail) return NULL;
    if (a) a->n_alloc++;
    return malloc(size);
}
static void test_free(void *p, void *user)
{
    test_alloc *a = (test_alloc *)user;
    if (a) a->n_free++;
    free(p);
}
#define ATTN_MALLOC(size, user) test_malloc(size, user)
#define ATTN_FREE(ptr, user) test_free(ptr, user)
#define ATTENTION_IMPLEMENTATION
#include "../attention.h"
#include "../attention.h" /* included twice on purpose: the declarations and definitions are guarded */

#define TOL 1e-5

/* ---------------------------------------------------------------------------------------------- */
/* runner                                                                                         */
/* ---------------------------------------------------------------------------------------------- */

static int g_fails; /* failed checks in the current test */
static const char *g_data_dir = "tests/data";

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            printf("    check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
            ++g_fails;                                                             \
        }                                                                          \
    } while (0)

#define CHECK_CODE(call, want)                                                                     \
    do {                                                                                           \
        attn_result got_ = (call);                                                                 \
        if (got_ != (want)) {                                                                      \
            printf("    check failed at %s:%d: %s returned %d (%s), want %s\n", __FILE__, __LINE__, \
                   #call, (int)got_, attn_result_string(got_), #want);                             \
            ++g_fails;                                                                             \
        }                                                                                          \
    } while (0)

/* max-norm relative error of got against ref; special values must agree exactly (else returns inf) */
static double rel_err(const float *got, const double *ref, size_t n)
{
    double num = 0.0, den = 0.0;
    size_t i;
    for (i = 0; i < n; ++i) {
        const double g = got[i], r = ref[i];
        if (isnan(r) || isinf(r)) {
            if (!(isnan(r) ? isnan(g) : g == r)) return INFINITY;
            continue;
        }
        if (isnan(g) || isinf(g)) return INFINITY;
        if (fabs(g - r) > num) num = fabs(g - r);
        if (fabs(r) > den) den = fabs(r);
    }
    return den > 0.0 ? num / den : num;
}

#define CHECK_CLOSE(got, ref, n)                                                               \
    do {                                                                                       \
        double e_ = rel_err((got), (ref), (size_t)(n));                                        \
        if (!(e_ <= TOL)) {                                                                    \
            printf("    check failed at %s:%d: %s vs %s: relative error %.3g > %g\n", __FILE__, \
                   __LINE__, #got, #ref, e_, TOL);                                             \
            ++g_fails;                                                                         \
        }                                                                                      \
    } while (0)

/* deterministic random numbers (xorshift64*) */
static unsigned long long g_rng = 0x9E3779B97F4A7C15ull;
static unsigned rnd_u32(void)
{
    g_rng ^= g_rng >> 12; g_rng ^= g_rng << 25; g_rng ^= g_rng >> 27;
    return (unsigned)((g_rng * 2685821657736338717ull) >> 32);
}
static int rnd_int(int n) { return (int)(rnd_u32() % (unsigned)n); }                  /* [0, n) */
static float rnd_unit(void) { return (float)((double)rnd_u32() / 4294967296.0 * 2.0 - 1.0); } /* [-1, 1) */
static void rnd_fill(float *x, size_t n, float amp)
{
    size_t i;
    for (i = 0; i < n; ++i) x[i] = amp * rnd_unit();
}
static int pick(const int *choices, int n) { return choices[rnd_int(n)]; }

static float *falloc(size_t n) { float *p = (float *)calloc(n ? n : 1, sizeof(float)); if (!p) abort(); return p; }
static double *dalloc(size_t n) { double *p = (double *)calloc(n ? n : 1, sizeof(double)); if (!p) abort(); return p; }

#include "reference.h" /* the float64 references: ref_project, ref_softmax_row, ref_sdpa, ref_mha */

/* gathers a strided [B,H,N,D] float tensor into a dense array */
static void gather(float *dst, const float *src, attn_stride s, int B, int H, int N, int D)
{
    int b, h, n, d;
    for (b = 0; b < B; ++b) for (h = 0; h < H; ++h) for (n = 0; n < N; ++n) for (d = 0; d < D; ++d)
        *dst++ = src[b * s.batch + h * s.head + n * s.row + d];
}

/* ---------------------------------------------------------------------------------------------- */
/* building blocks                                                                                */
/* ---------------------------------------------------------------------------------------------- */

static const int k_sizes[] = {1, 3, 17, 127, 64, 5};

static void test_project(void)
{
    int t;
    for (t = 0; t < 24; ++t) {
        const int n = pick(k_sizes, 6), d_in = pick(k_sizes, 6), d_out = pick(k_sizes, 6);
        const int out_in = t & 1, with_bias = (t >> 1) & 1, pad = rnd_int(3);
        const ptrdiff_t xs = d_in + pad, ys = d_out + pad, ws = (out_in ? d_in : d_out) + pad;
        float *x = falloc((size_t)n * xs), *w = falloc((size_t)(out_in ? d_out : d_in) * ws);
        float *b = falloc((size_t)d_out), *y = falloc((size_t)n * ys), *yd = falloc((size_t)n * d_out);
        double *ref = dalloc((size_t)n * d_out);
        int i;
        rnd_fill(x, (size_t)n * xs, 1.0f);
        rnd_fill(w, (size_t)(out_in ? d_out : d_in) * ws, 1.0f);
        rnd_fill(b, (size_t)d_out, 1.0f);
        CHECK_CODE(attn_project(y, ys, x, xs, w, ws, out_in ? ATTN_LAYOUT_OUT_IN : ATTN_LAYOUT_IN_OUT,
                                with_bias ? b : NULL, n, d_in, d_out), ATTN_OK);
        ref_project(ref, x, xs, w, ws, out_in, with_bias ? b : NULL, n, d_in, d_out);
        for (i = 0; i < n; ++i) memcpy(yd + (size_t)i * d_out, y + (size_t)i * ys, sizeof(float) * d_out);
        CHECK_CLOSE(yd, ref, (size_t)n * d_out);
        free(x); free(w); free(b); free(y); free(yd); free(ref);
    }
}

/* The PyTorch orientation loads without a transpose: OUT_IN with W^T gives the same Y as IN_OUT with W. */
static void test_project_layouts_agree(void)
{
    enum { N = 9, DI = 13, DO = 7 };
    float x[N * DI], w[DI * DO], wt[DO * DI], b[DO], y1[N * DO], y2[N * DO];
    int i, j;
    rnd_fill(x, N * DI, 1.0f); rnd_fill(w, DI * DO, 1.0f); rnd_fill(b, DO, 1.0f);
    for (i = 0; i < DI; ++i) for (j = 0; j < DO; ++j) wt[j * DI + i] = w[i * DO + j];
    CHECK_CODE(attn_project(y1, DO, x, DI, w, DO, ATTN_LAYOUT_IN_OUT, b, N, DI, DO), ATTN_OK);
    CHECK_CODE(attn_project(y2, DO, x, DI, wt, DI, ATTN_LAYOUT_OUT_IN, b, N, DI, DO), ATTN_OK);
    for (i = 0; i < N * DO; ++i) CHECK(fabsf(y1[i] - y2[i]) <= 1e-5f * (1.0f + fabsf(y1[i])));
}

static void test_scores(void)
{
    int t;
    for (t = 0; t < 20; ++t) {
        const int nq = pick(k_sizes, 6), nk = pick(k_sizes, 6), dk = pick(k_sizes, 6), pad = rnd_int(3);
        const float scale = (t & 1) ? 0.0f : 0.3f;
        const double sc = scale != 0.0f ? scale : 1.0 / sqrt((double)dk);
        float *q = falloc((size_t)nq * (dk + pad)), *k = falloc((size_t)nk * (dk + pad));
        float *s = falloc((size_t)nq * (nk + pad)), *sd = falloc((size_t)nq * nk);
        double *ref = dalloc((size_t)nq * nk);
        int i, j, c;
        rnd_fill(q, (size_t)nq * (dk + pad), 1.0f); rnd_fill(k, (size_t)nk * (dk + pad), 1.0f);
        CHECK_CODE(attn_scores(s, nk + pad, q, dk + pad, k, dk + pad, nq, nk, dk, scale), ATTN_OK);
        for (i = 0; i < nq; ++i)
            for (j = 0; j < nk; ++j) {
                double acc = 0.0;
                for (c = 0; c < dk; ++c) acc += (double)q[i * (dk + pad) + c] * k[j * (dk + pad) + c];
                ref[i * nk + j] = sc * acc;
                sd[i * nk + j] = s[i * (nk + pad) + j];
            }
        CHECK_CLOSE(sd, ref, (size_t)nq * nk);
        free(q); free(k); free(s); free(sd); free(ref);
    }
}

/* runs attn_softmax on rows [n_rows x n] and compares with ref_softmax_row, including lse */
static void check_softmax(const float *s, int n_rows, int n)
{
    float *p = falloc((size_t)n_rows * n), *lse = falloc((size_t)n_rows), *inplace = falloc((size_t)n_rows * n);
    double *ref = dalloc((size_t)n_rows * n), *ref_lse = dalloc((size_t)n_rows), *row = dalloc((size_t)n);
    int i, j;
    CHECK_CODE(attn_softmax(p, n, s, n, n_rows, n, lse), ATTN_OK);
    for (i = 0; i < n_rows; ++i) {
        for (j = 0; j < n; ++j) row[j] = s[i * n + j];
        ref_softmax_row(ref + (size_t)i * n, ref_lse + i, row, n);
    }
    CHECK_CLOSE(p, ref, (size_t)n_rows * n);
    CHECK_CLOSE(lse, ref_lse, (size_t)n_rows);
    memcpy(inplace, s, sizeof(float) * (size_t)n_rows * n);
    CHECK_CODE(attn_softmax(inplace, n, inplace, n, n_rows, n, NULL), ATTN_OK);
    CHECK(memcmp(inplace, p, sizeof(float) * (size_t)n_rows * n) == 0);
    free(p); free(lse); free(inplace); free(ref); free(ref_lse); free(row);
}

static void test_softmax_random(void)
{
    int t;
    for (t = 0; t < 20; ++t) {
        const int rows = pick(k_sizes, 6), n = pick(k_sizes, 6);
        float *s = falloc((size_t)rows * n);
        int i;
        rnd_fill(s, (size_t)rows * n, 8.0f);
        for (i = 0; i < rows * n; ++i) if (rnd_int(5) == 0) s[i] = -INFINITY;
        check_softmax(s, rows, n);
        free(s);
    }
}

static void test_softmax_edges(void)
{
    /* each row one edge: huge logits, logits around expf's overflow at 88.7, all masked, masks mixed,
       +inf (the limit: shared among the +inf entries), NaN (the row becomes NaN), huge negative */
    float s[9][4] = {
        {1e30f, -1e30f, 0.0f, 1e30f},
        {88.0f, 88.7f, 89.0f, 100.0f},
        {-INFINITY, -INFINITY, -INFINITY, -INFINITY},
        {-INFINITY, 3.0f, -INFINITY, 2.0f},
        {INFINITY, 1.0f, INFINITY, -INFINITY},
        {1.0f, NAN, 2.0f, 3.0f},
        {-1e30f, -1e30f, -3e38f, -1e30f},
        {NAN, -INFINITY, -INFINITY, -INFINITY},
        {-88.7f, -103.0f, -104.0f, -87.0f},
    };
    float p[9][4], lse[9], one, one_lse;
    float k1 = 12345.0f;
    check_softmax(&s[0][0], 9, 4);
    /* exact expectations where the math gives them */
    CHECK_CODE(attn_softmax(&p[0][0], 4, &s[0][0], 4, 9, 4, lse), ATTN_OK);
    CHECK(p[0][0] == 0.5f && p[0][3] == 0.5f && p[0][1] == 0.0f && p[0][2] == 0.0f);
    CHECK(p[2][0] == 0.0f && p[2][1] == 0.0f && p[2][2] == 0.0f && p[2][3] == 0.0f && lse[2] == -INFINITY);
    CHECK(p[3][0] == 0.0f && p[3][2] == 0.0f && p[3][1] > p[3][3]);
    CHECK(p[4][0] == 0.5f && p[4][2] == 0.5f && p[4][1] == 0.0f && lse[4] == INFINITY);
    CHECK(isnan(p[5][0]) && isnan(p[5][3]) && isnan(lse[5]));
    CHECK(isnan(p[7][1]) && isnan(lse[7]));
    CHECK(!isnan(p[6][0]) && fabsf(p[6][0] - 1.0f / 3.0f) < 1e-6f && p[6][2] == 0.0f);
    CHECK(isfinite(lse[1]) && fabsf(lse[1] - 100.0f) < 1e-4f);
    /* one key: weight exactly 1 and lse = the score */
    CHECK_CODE(attn_softmax(&one, 1, &k1, 1, 1, 1, &one_lse), ATTN_OK);
    CHECK(one == 1.0f && one_lse == k1);
}

static void test_weighted_sum(void)
{
    int t;
    for (t = 0; t < 20; ++t) {
        const int nq = pick(k_sizes, 6), nk = pick(k_sizes, 6), dv = pick(k_sizes, 6), pad = rnd_int(3);
        float *p = falloc((size_t)nq * (nk + pad)), *v = falloc((size_t)nk * (dv + pad));
        float *o = falloc((size_t)nq * (dv + pad)), *od = falloc((size_t)nq * dv);
        double *ref = dalloc((size_t)nq * dv);
        int i, j, c;
        rnd_fill(p, (size_t)nq * (nk + pad), 1.0f); rnd_fill(v, (size_t)nk * (dv + pad), 1.0f);
        CHECK_CODE(attn_weighted_sum(o, dv + pad, p, nk + pad, v, dv + pad, nq, nk, dv), ATTN_OK);
        for (i = 0; i < nq; ++i)
            for (c = 0; c < dv; ++c) {
                double acc = 0.0;
                for (j = 0; j < nk; ++j) acc += (double)p[i * (nk + pad) + j] * v[j * (dv + pad) + c];
                ref[i * dv + c] = acc;
                od[i * dv + c] = o[i * (dv + pad) + c];
            }
        CHECK_CLOSE(od, ref, (size_t)nq * dv);
        free(p); free(v); free(o); free(od); free(ref);
    }
}

static void test_merge(void)
{
    enum { R = 6, D = 5 };
    float oa[R * D], ob[R * D], la[R], lb[R], o[R * D], l[R], o2[R * D];
    double ref[R * D], ref_l[R];
    int i, c;
    rnd_fill(oa, R * D, 1.0f); rnd_fill(ob, R * D, 1.0f); rnd_fill(la, R, 5.0f); rnd_fill(lb, R, 5.0f);
    la[1] = -INFINITY;                               /* a saw no key: its O is ignored, even NaN */
    for (c = 0; c < D; ++c) oa[1 * D + c] = NAN;
    lb[2] = -INFINITY;
    la[3] = -INFINITY; lb[3] = -INFINITY;            /* neither saw a key */
    la[4] = 80.0f; lb[4] = 95.0f;                    /* beyond expf's range if not shifted */
    for (i = 0; i < R; ++i) {
        const double a = la[i], b = lb[i], m = a > b ? a : b;
        if (m == -INFINITY) { ref_l[i] = -INFINITY; for (c = 0; c < D; ++c) ref[i * D + c] = 0.0; continue; }
        ref_l[i] = m + log(exp(a - m) + exp(b - m));
        for (c = 0; c < D; ++c)
            ref[i * D + c] = (a == -INFINITY ? 0.0 : exp(a - ref_l[i]) * oa[i * D + c]) +
                             (b == -INFINITY ? 0.0 : exp(b - ref_l[i]) * ob[i * D + c]);
    }
    CHECK_CODE(attn_merge(o, D, l, oa, D, la, ob, D, lb, R, D), ATTN_OK);
    CHECK_CLOSE(o, ref, R * D);
    CHECK_CLOSE(l, ref_l, R);
    /* in place: o = o_b */
    memcpy(o2, ob, sizeof ob);
    CHECK_CODE(attn_merge(o2, D, NULL, oa, D, la, o2, D, lb, R, D), ATTN_OK);
    CHECK(memcmp(o2, o, sizeof o) == 0);
}

/* ---------------------------------------------------------------------------------------------- */
/* fused attention                                                                                */
/* ---------------------------------------------------------------------------------------------- */

/* One randomised attn_sdpa problem with all its inputs, run against ref_sdpa. */
typedef struct sdpa_case {
    attn_dims d;
    int layout;                /* 0: [B,H,N,D]; 1: [B,N,H*D] interleaved; 2: padded rows */
    int causal, mask_kind;     /* mask_kind 0 none, 1 broadcast, 2 per batch and head */
    int use_kv_len, use_kpm, weights; /* weights 0 none, 1 per head, 2 averaged */
    float scale;
} sdpa_case;

static attn_stride make_stride(int layout, int H, int N, int D)
{
    attn_stride s;
    if (layout == 1) return attn_stride_bnhd(H, N, D);
    s = attn_stride_bhnd(H, N, D + (layout == 2 ? 3 : 0));
    return s;
}

static size_t view_size(attn_stride s, int B, int H, int N, int D)
{
    return (size_t)((B - 1) * s.batch + (H - 1) * s.head + (N - 1) * s.row + D);
}

/* runs one case; returns nonzero when its results pass */
static void run_sdpa_case(const sdpa_case *c)
{
    const attn_dims *d = &c->d;
    const int B = d->batch, Hq = d->n_heads, Hkv = d->n_kv_heads, Nq = d->n_q, Nk = d->n_kv;
    const int Dk = d->d_k, Dv = d->d_v;
    const attn_stride qs = make_stride(c->layout, Hq, Nq, Dk), ks = make_stride(c->layout, Hkv, Nk, Dk);
    const attn_stride vs = make_stride(c->layout, Hkv, Nk, Dv), os = make_stride(c->layout, Hq, Nq, Dv);
    float *q = falloc(view_size(qs, B, Hq, Nq, Dk)), *k = falloc(view_size(ks, B, Hkv, Nk, Dk));
    float *v = falloc(view_size(vs, B, Hkv, Nk, Dv)), *o = falloc(view_size(os, B, Hq, Nq, Dv));
    float *od = falloc((size_t)B * Hq * Nq * Dv), *mask = NULL, *lse = falloc((size_t)B * Hq * Nq);
    const size_t n_w = (size_t)B * (c->weights == 2 ? 1 : Hq) * Nq * Nk;
    float *w = c->weights ? falloc(n_w) : NULL;
    double *ref = dalloc((size_t)B * Hq * Nq * Dv), *ref_lse = dalloc((size_t)B * Hq * Nq);
    double *ref_w = dalloc((size_t)B * Hq * Nq * Nk), *ref_wavg = dalloc(n_w);
    int *kv_len = NULL;
    unsigned char *kpm = NULL;
    attn_options opt;
    ref_opts ro;
    int b, h, i;
    memset(&opt, 0, sizeof opt);
    memset(&ro, 0, sizeof ro);
    rnd_fill(q, view_size(qs, B, Hq, Nq, Dk), 2.0f);
    rnd_fill(k, view_size(ks, B, Hkv, Nk, Dk), 2.0f);
    rnd_fill(v, view_size(vs, B, Hkv, Nk, Dv), 1.0f);
    opt.scale = c->scale;
    opt.causal = (attn_causal)c->causal;
    ro.causal = c->causal;
    ro.scale = c->scale != 0.0f ? c->scale : 1.0 / sqrt((double)Dk);
    if (c->mask_kind) {
        const size_t n_mask = (size_t)(c->mask_kind == 2 ? B * Hq : 1) * Nq * Nk;
        mask = falloc(n_mask);
        rnd_fill(mask, n_mask, 1.0f);
        for (i = 0; i < (int)n_mask; ++i) if (rnd_int(7) == 0) mask[i] = -INFINITY;
        opt.mask = mask;
        if (c->mask_kind == 2) {
            opt.mask_stride.batch = (ptrdiff_t)Hq * Nq * Nk;
            opt.mask_stride.head = (ptrdiff_t)Nq * Nk;
        }
        ro.mask = mask;
        ro.mask_s = opt.mask_stride;
        ro.mask_s.row = Nk;
    }
    if (c->use_kv_len) {
        kv_len = (int *)calloc((size_t)B, sizeof(int));
        for (b = 0; b < B; ++b) kv_len[b] = rnd_int(Nk + 1);
        opt.kv_len = ro.kv_len = kv_len;
    }
    if (c->use_kpm) {
        kpm = (unsigned char *)calloc((size_t)B * Nk, 1);
        for (i = 0; i < B * Nk; ++i) kpm[i] = (unsigned char)(rnd_int(4) == 0);
        opt.key_padding_mask = ro.kpm = kpm;
    }
    opt.out_lse = lse;
    opt.out_weights = w;
    opt.average_weights = c->weights == 2;
    CHECK_CODE(attn_sdpa(o, os, q, qs, k, ks, v, vs, d, &opt, NULL, 0), ATTN_OK);
    ref_sdpa(ref, ref_lse, ref_w, q, qs, k, ks, v, vs, d, &ro);
    gather(od, o, os, B, Hq, Nq, Dv);
    {
        double e_o = rel_err(od, ref, (size_t)B * Hq * Nq * Dv), e_l = rel_err(lse, ref_lse, (size_t)B * Hq * Nq);
        double e_w = 0.0;
        if (c->weights == 1) e_w = rel_err(w, ref_w, n_w);
        if (c->weights == 2) {
            for (b = 0; b < B; ++b)
                for (h = 0; h < Hq; ++h)
                    for (i = 0; i < Nq * Nk; ++i)
                        ref_wavg[(size_t)b * Nq * Nk + i] += ref_w[((size_t)b * Hq + h) * Nq * Nk + i] / Hq;
            e_w = rel_err(w, ref_wavg, n_w);
        }
        if (!(e_o <= TOL && e_l <= TOL && e_w <= TOL)) {
            printf("    sdpa B=%d Hq=%d Hkv=%d Nq=%d Nk=%d Dk=%d Dv=%d layout=%d causal=%d mask=%d kv_len=%d kpm=%d "
                   "weights=%d: errors out %.3g lse %.3g weights %.3g\n",
                   B, Hq, Hkv, Nq, Nk, Dk, Dv, c->layout, c->causal, c->mask_kind, c->use_kv_len, c->use_kpm,
                   c->weights, e_o, e_l, e_w);
            ++g_fails;
        }
    }
    free(q); free(k); free(v); free(o); free(od); free(mask); free(lse); free(w);
    free(ref); free(ref_lse); free(ref_w); free(ref_wavg); free(kv_len); free(kpm);
}

static void test_sdpa_random(void)
{
    static const int n_choices[] = {1, 3, 17, 127, 64, 65, 200};
    static const int d_choices[] = {1, 3, 17, 64, 8};
    int t;
    for (t = 0; t < 120; ++t) {
        sdpa_case c;
        memset(&c, 0, sizeof c);
        c.d.batch = 1 + rnd_int(2);
        c.d.n_kv_heads = 1 + rnd_int(2);
        c.d.n_heads = c.d.n_kv_heads * (1 + rnd_int(3)); /* MHA, GQA and MQA */
        c.d.n_q = pick(n_choices, 7);
        c.d.n_kv = pick(n_choices, 7);
        c.d.d_k = pick(d_choices, 5);
        c.d.d_v = rnd_int(2) ? c.d.d_k : pick(d_choices, 5);
        c.layout = rnd_int(3);
        c.causal = rnd_int(3);
        c.mask_kind = rnd_int(3);
        c.use_kv_len = rnd_int(3) == 0;
        c.use_kpm = rnd_int(3) == 0;
        c.weights = rnd_int(3);
        c.scale = rnd_int(3) == 0 ? 0.7f : 0.0f;
        run_sdpa_case(&c);
    }
}

/* Dense [B,H,N,D] helpers for the identity tests. */
static attn_result sdpa_dense(float *o, const float *q, const float *k, const float *v, const attn_dims *d,
                              const attn_options *opt)
{
    const int Dv = d->d_v ? d->d_v : d->d_k, Hkv = d->n_kv_heads ? d->n_kv_heads : d->n_heads;
    return attn_sdpa(o, attn_stride_bhnd(d->n_heads, d->n_q, Dv), q, attn_stride_bhnd(d->n_heads, d->n_q, d->d_k),
                     k, attn_stride_bhnd(Hkv, d->n_kv, d->d_k), v, attn_stride_bhnd(Hkv, d->n_kv, Dv), d, opt, NULL, 0);
}

static int close_rel(const float *a, const float *b, size_t n, double tol)
{
    double num = 0.0, den = 0.0;
    size_t i;
    for (i = 0; i < n; ++i) {
        if (fabs((double)a[i] - b[i]) > num) num = fabs((double)a[i] - b[i]);
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num <= tol * (den > 0.0 ? den : 1.0);
}

static void test_identity_causal_is_mask(void)
{
    static const int shapes[][2] = {{17, 17}, {5, 130}, {130, 70}, {64, 64}, {1, 9}};
    int t, i, j;
    for (t = 0; t < 5; ++t) {
        int br;
        for (br = 0; br < 2; ++br) {
            attn_dims d = {2, 2, 1, 0, 0, 16, 8};
            float *q, *k, *v, *o1, *o2, *mask;
            attn_options a, m;
            d.n_q = shapes[t][0]; d.n_kv = shapes[t][1];
            if (br == 0 && d.n_q > d.n_kv) continue;
            q = falloc((size_t)2 * 2 * d.n_q * 16); k = falloc((size_t)2 * d.n_kv * 16); v = falloc((size_t)2 * d.n_kv * 8);
            o1 = falloc((size_t)2 * 2 * d.n_q * 8); o2 = falloc((size_t)2 * 2 * d.n_q * 8);
            mask = falloc((size_t)d.n_q * d.n_kv);
            rnd_fill(q, (size_t)2 * 2 * d.n_q * 16, 1.0f); rnd_fill(k, (size_t)2 * d.n_kv * 16, 1.0f);
            rnd_fill(v, (size_t)2 * d.n_kv * 8, 1.0f);
            for (i = 0; i < d.n_q; ++i)
                for (j = 0; j < d.n_kv; ++j)
                    mask[i * d.n_kv + j] = j <= i + (br ? d.n_kv - d.n_q : 0) ? 0.0f : -INFINITY;
            memset(&a, 0, sizeof a); memset(&m, 0, sizeof m);
            a.causal = br ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_TOP_LEFT;
            m.mask = mask;
            CHECK_CODE(sdpa_dense(o1, q, k, v, &d, &a), ATTN_OK);
            CHECK_CODE(sdpa_dense(o2, q, k, v, &d, &m), ATTN_OK);
            CHECK(close_rel(o1, o2, (size_t)2 * 2 * d.n_q * 8, 1e-6));
            free(q); free(k); free(v); free(o1); free(o2); free(mask);
        }
    }
}

static void test_identity_gqa_is_repeated_mha(void)
{
    enum { B = 2, HQ = 6, HKV = 2, NQ = 19, NK = 33, D = 12 };
    float q[B * HQ * NQ * D], k[B * HKV * NK * D], v[B * HKV * NK * D];
    float kr[B * HQ * NK * D], vr[B * HQ * NK * D], o1[B * HQ * NQ * D], o2[B * HQ * NQ * D];
    attn_dims gqa = {B, HQ, HKV, NQ, NK, D, D}, mha = {B, HQ, HQ, NQ, NK, D, D}, mqa = {B, HQ, 1, NQ, NK, D, D};
    attn_options opt;
    int b, h;
    memset(&opt, 0, sizeof opt);
    opt.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    rnd_fill(q, sizeof q / sizeof *q, 1.0f); rnd_fill(k, sizeof k / sizeof *k, 1.0f); rnd_fill(v, sizeof v / sizeof *v, 1.0f);
    for (b = 0; b < B; ++b)
        for (h = 0; h < HQ; ++h) {
            memcpy(kr + ((size_t)b * HQ + h) * NK * D, k + ((size_t)b * HKV + h / (HQ / HKV)) * NK * D, sizeof(float) * NK * D);
            memcpy(vr + ((size_t)b * HQ + h) * NK * D, v + ((size_t)b * HKV + h / (HQ / HKV)) * NK * D, sizeof(float) * NK * D);
        }
    CHECK_CODE(sdpa_dense(o1, q, k, v, &gqa, &opt), ATTN_OK);
    CHECK_CODE(sdpa_dense(o2, q, kr, vr, &mha, &opt), ATTN_OK);
    CHECK(memcmp(o1, o2, sizeof o1) == 0);
    /* multi-query: every query head reads kv head 0 */
    for (b = 0; b < B; ++b)
        for (h = 0; h < HQ; ++h) {
            memcpy(kr + ((size_t)b * HQ + h) * NK * D, k + (size_t)b * HKV * NK * D, sizeof(float) * NK * D);
            memcpy(vr + ((size_t)b * HQ + h) * NK * D, v + (size_t)b * HKV * NK * D, sizeof(float) * NK * D);
        }
    {
        /* MQA reads k, v as [B, 1, NK, D] with batch stride HKV*NK*D (kv head 0 of each batch) */
        attn_stride kvs = attn_stride_bhnd(1, NK, D);
        kvs.batch = (ptrdiff_t)HKV * NK * D;
        CHECK_CODE(attn_sdpa(o1, attn_stride_bhnd(HQ, NQ, D), q, attn_stride_bhnd(HQ, NQ, D), k, kvs, v, kvs, &mqa,
                             &opt, NULL, 0), ATTN_OK);
    }
    CHECK_CODE(sdpa_dense(o2, q, kr, vr, &mha, &opt), ATTN_OK);
    CHECK(memcmp(o1, o2, sizeof o1) == 0);
}

/* Decoding: one query, bottom-right causal, sees the whole cache = full attention without a mask. */
static void test_identity_decode_is_full(void)
{
    enum { H = 4, NK = 300, D = 32 };
    float q[H * D], k[H * NK * D], v[H * NK * D], o1[H * D], o2[H * D];
    attn_dims d = {1, H, 0, 1, NK, D, 0};
    attn_options br, none;
    memset(&br, 0, sizeof br); memset(&none, 0, sizeof none);
    br.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    rnd_fill(q, H * D, 1.0f); rnd_fill(k, H * NK * D, 1.0f); rnd_fill(v, H * NK * D, 1.0f);
    CHECK_CODE(sdpa_dense(o1, q, k, v, &d, &br), ATTN_OK);
    CHECK_CODE(sdpa_dense(o2, q, k, v, &d, &none), ATTN_OK);
    CHECK(memcmp(o1, o2, sizeof o1) == 0);
    /* top-left with one query sees only key 0: the output is v[0] */
    br.causal = ATTN_CAUSAL_TOP_LEFT;
    CHECK_CODE(sdpa_dense(o1, q, k, v, &d, &br), ATTN_OK);
    CHECK(memcmp(o1, v, sizeof(float) * D) == 0);
}

/* Split the keys in two, attend to each half with LSE, merge: equals attention over all keys. */
static void test_identity_merge_halves(void)
{
    enum { H = 3, NQ = 7, NK = 150, SPLIT = 61, D = 16 };
    float q[H * NQ * D], k[H * NK * D], v[H * NK * D];
    float oa[H * NQ * D], ob[H * NQ * D], o[H * NQ * D], full[H * NQ * D];
    float la[H * NQ], lb[H * NQ], l[H * NQ], lfull[H * NQ];
    attn_dims d = {1, H, 0, NQ, NK, D, 0}, da = {1, H, 0, NQ, SPLIT, D, 0}, db = {1, H, 0, NQ, NK - SPLIT, D, 0};
    attn_stride qs = attn_stride_bhnd(H, NQ, D), ks = attn_stride_bhnd(H, NK, D);
    attn_options opt;
    memset(&opt, 0, sizeof opt);
    rnd_fill(q, sizeof q / sizeof *q, 2.0f); rnd_fill(k, sizeof k / sizeof *k, 2.0f); rnd_fill(v, sizeof v / sizeof *v, 1.0f);
    opt.out_lse = lfull;
    CHECK_CODE(attn_sdpa(full, qs, q, qs, k, ks, v, ks, &d, &opt, NULL, 0), ATTN_OK);
    opt.out_lse = la; /* keys [0, SPLIT): the same k, v views with fewer rows */
    CHECK_CODE(attn_sdpa(oa, qs, q, qs, k, ks, v, ks, &da, &opt, NULL, 0), ATTN_OK);
    opt.out_lse = lb; /* keys [SPLIT, NK) */
    CHECK_CODE(attn_sdpa(ob, qs, q, qs, k + SPLIT * D, ks, v + SPLIT * D, ks, &db, &opt, NULL, 0), ATTN_OK);
    CHECK_CODE(attn_merge(o, D, l, oa, D, la, ob, D, lb, H * NQ, D), ATTN_OK);
    CHECK(close_rel(o, full, H * NQ * D, 2e-6));
    CHECK(close_rel(l, lfull, H * NQ, 2e-6));
}

/* Workspace: a caller buffer (of exactly the reported size, misaligned) gives bitwise the same result as
   the internal allocation; the size does not grow with N. */
static void test_workspace(void)
{
    enum { H = 2, NQ = 70, NK = 90, D = 24 };
    float q[H * NQ * D], k[H * NK * D], v[H * NK * D], o1[H * NQ * D], o2[H * NQ * D];
    attn_dims d = {1, H, 0, NQ, NK, D, 0}, big = {1, 1, 0, 32768, 32768, 64, 0}, small = {1, 1, 0, 16, 16, 64, 0};
    attn_stride qs = attn_stride_bhnd(H, NQ, D), ks = attn_stride_bhnd(H, NK, D);
    size_t need = 0, need_big = 0, need_small = 0;
    char *buf;
    rnd_fill(q, sizeof q / sizeof *q, 1.0f); rnd_fill(k, sizeof k / sizeof *k, 1.0f); rnd_fill(v, sizeof v / sizeof *v, 1.0f);
    CHECK_CODE(attn_sdpa_workspace_size(&need, &d, NULL), ATTN_OK);
    buf = (char *)malloc(need + 1);
    CHECK_CODE(attn_sdpa(o1, qs, q, qs, k, ks, v, ks, &d, NULL, NULL, 0), ATTN_OK);
    CHECK_CODE(attn_sdpa(o2, qs, q, qs, k, ks, v, ks, &d, NULL, buf + 1, need), ATTN_OK);
    CHECK(memcmp(o1, o2, sizeof o1) == 0);
    free(buf);
    {
        attn_options one;
        memset(&one, 0, sizeof one);
        one.n_threads = 1; /* the size is per thread */
        CHECK_CODE(attn_sdpa_workspace_size(&need_big, &big, &one), ATTN_OK);
        CHECK_CODE(attn_sdpa_workspace_size(&need_small, &small, &one), ATTN_OK);
        CHECK(need_big == need_small && need_big < 32 * 1024);
    }
}

/* N = 32768 keys on one head runs in a workspace of a few KiB (the 32768 x 32768 case only differs in
   the number of query tiles; the test keeps 64 queries to stay fast) and matches the reference. */
static void test_long_sequence(void)
{
    enum { NQ = 64, NK = 32768, D = 64 };
    float *q = falloc((size_t)NQ * D), *k = falloc((size_t)NK * D), *v = falloc((size_t)NK * D);
    float *o = falloc((size_t)NQ * D);
    double *ref = dalloc((size_t)NQ * D);
    attn_dims d = {1, 1, 0, NQ, NK, D, 0};
    attn_stride qs = attn_stride_bhnd(1, NQ, D), ks = attn_stride_bhnd(1, NK, D);
    attn_options opt;
    ref_opts ro;
    size_t need = 0;
    char *ws;
    memset(&opt, 0, sizeof opt); memset(&ro, 0, sizeof ro);
    opt.causal = ro.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    opt.n_threads = 1; /* the workspace bound below is per thread */
    ro.scale = 1.0 / 8.0;
    rnd_fill(q, (size_t)NQ * D, 3.0f); rnd_fill(k, (size_t)NK * D, 3.0f); rnd_fill(v, (size_t)NK * D, 1.0f);
    CHECK_CODE(attn_sdpa_workspace_size(&need, &d, &opt), ATTN_OK);
    CHECK(need < 32 * 1024);
    ws = (char *)malloc(need);
    CHECK_CODE(attn_sdpa(o, qs, q, qs, k, ks, v, ks, &d, &opt, ws, need), ATTN_OK);
    ref_sdpa(ref, NULL, NULL, q, qs, k, ks, v, ks, &d, &ro);
    CHECK_CLOSE(o, ref, (size_t)NQ * D);
    free(q); free(k); free(v); free(o); free(ref); free(ws);
}


/* Threads and splits: 1 or 2 OpenMP threads (where compiled with -fopenmp) and a 3-way split run by the
   caller give bitwise the result of one serial call, for attn_sdpa (with averaged weights and LSE) and
   multi-head attention. */
static void test_threads_and_splits(void)
{
    enum { B = 2, H = 4, HKV = 2, NQ = 100, NK = 77, D = 24, E = H * D };
    const attn_dims d = {B, H, HKV, NQ, NK, D, 0};
    const attn_stride qs = attn_stride_bhnd(H, NQ, D), ks = attn_stride_bhnd(HKV, NK, D);
    float *q = falloc((size_t)B * H * NQ * D), *k = falloc((size_t)B * HKV * NK * D), *v = falloc((size_t)B * HKV * NK * D);
    float *o1 = falloc((size_t)B * H * NQ * D), *o2 = falloc((size_t)B * H * NQ * D);
    float *w1 = falloc((size_t)B * NQ * NK), *w2 = falloc((size_t)B * NQ * NK), *l1 = falloc((size_t)B * H * NQ), *l2 = falloc((size_t)B * H * NQ);
    float *x = falloc((size_t)B * NQ * E), *wt = falloc((size_t)E * E), *m1 = falloc((size_t)B * NQ * E), *m2 = falloc((size_t)B * NQ * E);
    attn_options opt;
    attn_mha m;
    int t, part;
    rnd_fill(q, (size_t)B * H * NQ * D, 2.0f); rnd_fill(k, (size_t)B * HKV * NK * D, 2.0f); rnd_fill(v, (size_t)B * HKV * NK * D, 1.0f);
    rnd_fill(x, (size_t)B * NQ * E, 1.0f); rnd_fill(wt, (size_t)E * E, 0.3f);
    memset(&opt, 0, sizeof opt);
    opt.causal = ATTN_CAUSAL_BOTTOM_RIGHT; opt.average_weights = 1;
    opt.out_weights = w1; opt.out_lse = l1; opt.n_threads = 1;
    CHECK_CODE(attn_sdpa(o1, qs, q, qs, k, ks, v, ks, &d, &opt, NULL, 0), ATTN_OK);
    for (t = 2; t <= 3; ++t) {
        opt.out_weights = w2; opt.out_lse = l2; opt.n_threads = t;
        CHECK_CODE(attn_sdpa(o2, qs, q, qs, k, ks, v, ks, &d, &opt, NULL, 0), ATTN_OK);
        CHECK(memcmp(o1, o2, sizeof(float) * B * H * NQ * D) == 0 && memcmp(w1, w2, sizeof(float) * B * NQ * NK) == 0 &&
              memcmp(l1, l2, sizeof(float) * B * H * NQ) == 0);
    }
    memset(o2, 0, sizeof(float) * B * H * NQ * D);
    opt.n_threads = 0;
    for (part = 0; part < 3; ++part) { /* as a caller's thread pool would, one slice per worker */
        opt.split_index = part; opt.split_count = 3;
        CHECK_CODE(attn_sdpa(o2, qs, q, qs, k, ks, v, ks, &d, &opt, NULL, 0), ATTN_OK);
    }
    CHECK(memcmp(o1, o2, sizeof(float) * B * H * NQ * D) == 0 && memcmp(w1, w2, sizeof(float) * B * NQ * NK) == 0);
    opt.split_index = 3;
    CHECK_CODE(attn_sdpa(o2, qs, q, qs, k, ks, v, ks, &d, &opt, NULL, 0), ATTN_ERR_OPTION);
    opt.split_index = -1;
    CHECK_CODE(attn_sdpa(o2, qs, q, qs, k, ks, v, ks, &d, &opt, NULL, 0), ATTN_ERR_OPTION);
    opt.split_index = 0; opt.split_count = -2;
    CHECK_CODE(attn_sdpa(o2, qs, q, qs, k, ks, v, ks, &d, &opt, NULL, 0), ATTN_ERR_OPTION);
    memset(&opt, 0, sizeof opt); opt.n_threads = -1;
    CHECK_CODE(attn_sdpa(o2, qs, q, qs, k, ks, v, ks, &d, &opt, NULL, 0), ATTN_ERR_OPTION);
    /* multi-head attention: projections by column blocks, attention by tiles */
    memset(&m, 0, sizeof m);
    m.d_model = E; m.n_heads = H; m.n_kv_heads = HKV;
    m.w_q = wt; m.w_k = wt; m.w_v = wt; m.w_o = wt; /* k, v use the first HKV*D columns' worth of rows */
    memset(&opt, 0, sizeof opt); opt.causal = ATTN_CAUSAL_TOP_LEFT; opt.n_threads = 1;
    CHECK_CODE(attn_self_forward(m1, x, B, NQ, &m, &opt, NULL, 0), ATTN_OK);
    opt.n_threads = 2;
    CHECK_CODE(attn_self_forward(m2, x, B, NQ, &m, &opt, NULL, 0), ATTN_OK);
    CHECK(memcmp(m1, m2, sizeof(float) * B * NQ * E) == 0);
    opt.split_count = 2;
    CHECK_CODE(attn_self_forward(m2, x, B, NQ, &m, &opt, NULL, 0), ATTN_ERR_OPTION);
    free(q); free(k); free(v); free(o1); free(o2); free(w1); free(w2); free(l1); free(l2); free(x); free(wt); free(m1); free(m2);
}

/* Decoding over a long cache: few queries against more than 2048 keys are cut into key chunks merged
   through their LSEs (flash-decoding). Against the reference, with kv_len ending inside and exactly at a
   chunk boundary, bottom-right causal, GQA, LSE; and bitwise the same for 1 or 2 threads and a split. */
static void test_decode_key_chunks(void)
{
    enum { B = 2, H = 4, HKV = 2, NK = 5000, D = 40 };
    static const int nqs[] = {1, 3, 8};
    int t;
    for (t = 0; t < 3; ++t) {
        const int NQ = nqs[t];
        const attn_dims d = {B, H, HKV, NQ, NK, D, 0};
        const attn_stride qs = attn_stride_bnhd(H, NQ, D), ks = attn_stride_bnhd(HKV, NK, D);
        float *q = falloc((size_t)B * H * NQ * D), *k = falloc((size_t)B * HKV * NK * D), *v = falloc((size_t)B * HKV * NK * D);
        float *o = falloc((size_t)B * H * NQ * D), *o2 = falloc((size_t)B * H * NQ * D), *lse = falloc((size_t)B * H * NQ);
        float *lse2 = falloc((size_t)B * H * NQ), *od = falloc((size_t)B * H * NQ * D);
        double *ref = dalloc((size_t)B * H * NQ * D), *ref_lse = dalloc((size_t)B * H * NQ);
        int kv_len[B];
        attn_options opt;
        ref_opts ro;
        int part;
        kv_len[0] = t == 1 ? 4096 : 4999; kv_len[1] = 2050;
        rnd_fill(q, (size_t)B * H * NQ * D, 2.0f); rnd_fill(k, (size_t)B * HKV * NK * D, 2.0f); rnd_fill(v, (size_t)B * HKV * NK * D, 1.0f);
        memset(&opt, 0, sizeof opt); memset(&ro, 0, sizeof ro);
        opt.causal = ro.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
        opt.kv_len = ro.kv_len = kv_len;
        ro.scale = 1.0 / sqrt((double)D);
        opt.out_lse = lse; opt.n_threads = 1;
        CHECK_CODE(attn_sdpa(o, qs, q, qs, k, ks, v, ks, &d, &opt, NULL, 0), ATTN_OK);
        ref_sdpa(ref, ref_lse, NULL, q, qs, k, ks, v, ks, &d, &ro);
        gather(od, o, qs, B, H, NQ, D);
        CHECK_CLOSE(od, ref, (size_t)B * H * NQ * D);
        CHECK_CLOSE(lse, ref_lse, (size_t)B * H * NQ);
        opt.out_lse = lse2; opt.n_threads = 2;
        CHECK_CODE(attn_sdpa(o2, qs, q, qs, k, ks, v, ks, &d, &opt, NULL, 0), ATTN_OK);
        CHECK(memcmp(o, o2, sizeof(float) * B * H * NQ * D) == 0 && memcmp(lse, lse2, sizeof(float) * B * H * NQ) == 0);
        memset(o2, 0, sizeof(float) * B * H * NQ * D);
        for (part = 0; part < 3; ++part) {
            size_t need = 0;
            char *ws;
            opt.split_index = part; opt.split_count = 3;
            CHECK_CODE(attn_sdpa_workspace_size(&need, &d, &opt), ATTN_OK);
            ws = (char *)malloc(need);
            CHECK_CODE(attn_sdpa(o2, qs, q, qs, k, ks, v, ks, &d, &opt, ws, need), ATTN_OK);
            free(ws);
        }
        CHECK(memcmp(o, o2, sizeof(float) * B * H * NQ * D) == 0);
        free(q); free(k); free(v); free(o); free(o2); free(lse); free(lse2); free(od); free(ref); free(ref_lse);
    }
}

/* The numeric contract through the fused kernels (tile and row paths, every instruction set): a +inf in
   the additive mask shares the weight among the +inf keys (LSE +inf), a NaN makes its row NaN, a fully
   masked row gives 0 and LSE -inf; other rows stay exact. Weights included. */
static void test_sdpa_special_values(void)
{
    static const int nqs[] = {40, 2};
    enum { NK = 150, D = 16 };
    int t;
    for (t = 0; t < 2; ++t) {
        const int NQ = nqs[t];
        const attn_dims d = {1, 1, 0, NQ, NK, D, 0};
        const attn_stride qs = attn_stride_bhnd(1, NQ, D), ks = attn_stride_bhnd(1, NK, D);
        float *q = falloc((size_t)NQ * D), *k = falloc((size_t)NK * D), *v = falloc((size_t)NK * D);
        float *o = falloc((size_t)NQ * D), *mask = falloc((size_t)NQ * NK), *lse = falloc((size_t)NQ), *w = falloc((size_t)NQ * NK);
        double *ref = dalloc((size_t)NQ * D), *ref_lse = dalloc((size_t)NQ), *ref_w = dalloc((size_t)NQ * NK);
        attn_options opt;
        ref_opts ro;
        int j;
        rnd_fill(q, (size_t)NQ * D, 1.0f); rnd_fill(k, (size_t)NK * D, 1.0f); rnd_fill(v, (size_t)NK * D, 1.0f);
        rnd_fill(mask, (size_t)NQ * NK, 1.0f);
        mask[0 * NK + 3] = INFINITY; mask[0 * NK + 100] = INFINITY;     /* row 0: two +inf keys, in two tiles */
        mask[1 * NK + 70] = NAN;                                         /* row 1: NaN */
        if (NQ > 2) {
            for (j = 0; j < NK; ++j) mask[2 * NK + j] = -INFINITY;       /* row 2: fully masked */
            mask[3 * NK + 149] = INFINITY;                               /* row 3: +inf in the last tile */
        }
        memset(&opt, 0, sizeof opt); memset(&ro, 0, sizeof ro);
        opt.mask = ro.mask = mask; ro.mask_s.row = NK;
        ro.scale = 1.0 / 4.0;
        opt.out_lse = lse; opt.out_weights = w;
        CHECK_CODE(attn_sdpa(o, qs, q, qs, k, ks, v, ks, &d, &opt, NULL, 0), ATTN_OK);
        ref_sdpa(ref, ref_lse, ref_w, q, qs, k, ks, v, ks, &d, &ro);
        CHECK_CLOSE(o, ref, (size_t)NQ * D);
        CHECK_CLOSE(lse, ref_lse, (size_t)NQ);
        CHECK_CLOSE(w, ref_w, (size_t)NQ * NK);
        CHECK(lse[0] == INFINITY && w[3] == 0.5f && w[100] == 0.5f && isnan(lse[1]) && isnan(o[D]));
        if (NQ > 2) CHECK(lse[2] == -INFINITY && o[2 * D] == 0.0f && w[2 * NK + 5] == 0.0f && w[3 * NK + 149] == 1.0f);
        opt.out_weights = NULL; /* without weights the row path may also take key chunks: same values */
        CHECK_CODE(attn_sdpa(o, qs, q, qs, k, ks, v, ks, &d, &opt, NULL, 0), ATTN_OK);
        CHECK_CLOSE(o, ref, (size_t)NQ * D);
        free(q); free(k); free(v); free(o); free(mask); free(lse); free(w); free(ref); free(ref_lse); free(ref_w);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* multi-head attention                                                                           */
/* ---------------------------------------------------------------------------------------------- */

static void test_mha_random(void)
{
    int t;
    for (t = 0; t < 16; ++t) {
        const int H = 1 + rnd_int(4), Hkv_div = rnd_int(2) ? H : 1, Dh = pick(k_sizes, 5);
        const int E = H * Dh, B = 1 + rnd_int(2), self = t & 1;
        const int Nq = pick(k_sizes, 5), Nk = self ? Nq : pick(k_sizes, 5), dkv = self ? E : 1 + rnd_int(20);
        const int kvd = Hkv_div * Dh;
        attn_mha m;
        attn_options opt;
        ref_opts ro;
        float *xq = falloc((size_t)B * Nq * E), *xkv = self ? xq : falloc((size_t)B * Nk * dkv);
        float *wq = falloc((size_t)E * E), *wk = falloc((size_t)dkv * kvd), *wv = falloc((size_t)dkv * kvd);
        float *wo = falloc((size_t)E * E), *bq = falloc((size_t)E), *bk = falloc((size_t)kvd), *bv = falloc((size_t)kvd);
        float *bo = falloc((size_t)E), *out = falloc((size_t)B * Nq * E);
        double *ref = dalloc((size_t)B * Nq * E);
        memset(&m, 0, sizeof m); memset(&opt, 0, sizeof opt); memset(&ro, 0, sizeof ro);
        rnd_fill(xq, (size_t)B * Nq * E, 1.0f);
        if (!self) rnd_fill(xkv, (size_t)B * Nk * dkv, 1.0f);
        rnd_fill(wq, (size_t)E * E, 0.5f); rnd_fill(wk, (size_t)dkv * kvd, 0.5f); rnd_fill(wv, (size_t)dkv * kvd, 0.5f);
        rnd_fill(wo, (size_t)E * E, 0.5f); rnd_fill(bq, E, 0.5f); rnd_fill(bk, kvd, 0.5f); rnd_fill(bv, kvd, 0.5f);
        rnd_fill(bo, E, 0.5f);
        m.d_model = E; m.n_heads = H; m.n_kv_heads = Hkv_div; m.d_kv = self ? 0 : dkv;
        m.layout = (t >> 1) & 1 ? ATTN_LAYOUT_OUT_IN : ATTN_LAYOUT_IN_OUT;
        m.w_q = wq; m.w_k = wk; m.w_v = wv; m.w_o = wo;
        if ((t >> 2) & 1) { m.b_q = bq; m.b_k = bk; m.b_v = bv; m.b_o = bo; }
        opt.causal = ro.causal = (attn_causal)rnd_int(3);
        ro.scale = 1.0 / sqrt((double)Dh);
        if (self) CHECK_CODE(attn_self_forward(out, xq, B, Nq, &m, &opt, NULL, 0), ATTN_OK);
        else CHECK_CODE(attn_cross_forward(out, xq, xkv, B, Nq, Nk, &m, &opt, NULL, 0), ATTN_OK);
        ref_mha(ref, xq, xkv, B, Nq, Nk, &m, &ro);
        CHECK_CLOSE(out, ref, (size_t)B * Nq * E);
        free(xq); if (!self) free(xkv);
        free(wq); free(wk); free(wv); free(wo); free(bq); free(bk); free(bv); free(bo); free(out); free(ref);
    }
}

/* self-attention equals cross-attention with x_kv = x, bitwise; MHA options (mask per batch, kv_len, LSE,
   weights) reach every batch */
static void test_mha_self_is_cross(void)
{
    enum { B = 3, N = 21, E = 24, H = 4, HKV = 2, KVD = HKV * (E / H) };
    float x[B * N * E], wq[E * E], wk[E * KVD], wv[E * KVD], wo[E * E], bq[E], bo[E];
    float o1[B * N * E], o2[B * N * E], l1[B * H * N], l2[B * H * N], w1[B * N * N], w2[B * N * N];
    float mask[B * N * N];
    int kv_len[B] = {N, 5, 0};
    double ref[B * N * E];
    attn_mha m;
    attn_options opt;
    ref_opts ro;
    memset(&m, 0, sizeof m); memset(&opt, 0, sizeof opt); memset(&ro, 0, sizeof ro);
    rnd_fill(x, sizeof x / sizeof *x, 1.0f); rnd_fill(wq, sizeof wq / sizeof *wq, 0.5f);
    rnd_fill(wk, sizeof wk / sizeof *wk, 0.5f); rnd_fill(wv, sizeof wv / sizeof *wv, 0.5f);
    rnd_fill(wo, sizeof wo / sizeof *wo, 0.5f); rnd_fill(bq, E, 0.5f); rnd_fill(bo, E, 0.5f);
    rnd_fill(mask, sizeof mask / sizeof *mask, 1.0f);
    m.d_model = E; m.n_heads = H; m.n_kv_heads = HKV;
    m.w_q = wq; m.w_k = wk; m.w_v = wv; m.w_o = wo; m.b_q = bq; m.b_o = bo;
    opt.mask = mask; opt.mask_stride.batch = N * N; /* per batch, broadcast over heads */
    opt.kv_len = kv_len;
    opt.out_weights = w1; opt.average_weights = 1; opt.out_lse = l1;
    CHECK_CODE(attn_self_forward(o1, x, B, N, &m, &opt, NULL, 0), ATTN_OK);
    opt.out_weights = w2; opt.out_lse = l2;
    CHECK_CODE(attn_cross_forward(o2, x, x, B, N, N, &m, &opt, NULL, 0), ATTN_OK);
    CHECK(memcmp(o1, o2, sizeof o1) == 0 && memcmp(l1, l2, sizeof l1) == 0 && memcmp(w1, w2, sizeof w1) == 0);
    ro.scale = 1.0 / sqrt((double)(E / H));
    ro.mask = mask; ro.mask_s = opt.mask_stride; ro.mask_s.row = N; ro.kv_len = kv_len;
    ref_mha(ref, x, x, B, N, N, &m, &ro);
    CHECK_CLOSE(o1, ref, B * N * E);
    /* batch 2 has no valid key: its attention output is 0, so out = b_o; its LSE is -inf, weights 0 */
    CHECK(fabsf(o1[2 * N * E + 3] - bo[3]) <= 1e-6f && l1[2 * H * N] == -INFINITY && w1[2 * N * N + 7] == 0.0f);
    /* batch 1 sees keys 0..4 only: weights on key 5 and later are 0 and each row sums to 1 */
    {
        int i, j;
        for (i = 0; i < N; ++i) {
            double sum = 0.0;
            for (j = 0; j < N; ++j) sum += w1[N * N + i * N + j];
            CHECK(w1[N * N + i * N + 5] == 0.0f && fabs(sum - 1.0) < 1e-5);
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* PyTorch fixtures                                                                               */
/* ---------------------------------------------------------------------------------------------- */

typedef struct golden {
    int batch, n_q, n_kv, d_model, d_kv, n_heads, bias, self, causal, weights_mode, has_kpm, has_mask;
    float *x_q, *x_kv, *w_q, *w_k, *w_v, *w_o, *b_q, *b_k, *b_v, *b_o, *kpm, *mask, *out, *weights;
    int n_weights;
} golden;

static int read_int(FILE *f, const char *name, int *v)
{
    char key[64], tag[16];
    return fscanf(f, "%15s %63s %d", tag, key, v) == 3 && strcmp(tag, "int") == 0 && strcmp(key, name) == 0;
}

static float *read_tensor(FILE *f, const char *name, int count)
{
    char key[64], tag[16];
    int n, i;
    float *t;
    if (fscanf(f, "%15s %63s %d", tag, key, &n) != 3 || strcmp(tag, "tensor") || strcmp(key, name) || n != count) {
        printf("    fixture: expected tensor %s of %d values\n", name, count);
        return NULL;
    }
    t = falloc((size_t)n);
    for (i = 0; i < n; ++i) {
        char num[64];
        if (fscanf(f, "%63s", num) != 1) { free(t); return NULL; }
        t[i] = strtof(num, NULL);
    }
    return t;
}

static int load_golden(golden *g, const char *path)
{
    FILE *f = fopen(path, "r");
    char magic[32];
    int version, ok, E, Dkv;
    memset(g, 0, sizeof *g);
    if (!f) { printf("    cannot open %s\n", path); return 0; }
    ok = fscanf(f, "%31s %d", magic, &version) == 2 && strcmp(magic, "attn-golden") == 0 && version == 1;
    ok = ok && read_int(f, "batch", &g->batch) && read_int(f, "n_q", &g->n_q) && read_int(f, "n_kv", &g->n_kv) &&
         read_int(f, "d_model", &g->d_model) && read_int(f, "d_kv", &g->d_kv) && read_int(f, "n_heads", &g->n_heads) &&
         read_int(f, "bias", &g->bias) && read_int(f, "self", &g->self) && read_int(f, "causal", &g->causal) &&
         read_int(f, "weights_mode", &g->weights_mode) && read_int(f, "has_key_padding_mask", &g->has_kpm) &&
         read_int(f, "has_attn_mask", &g->has_mask);
    if (!ok) { fclose(f); printf("    %s: bad header\n", path); return 0; }
    E = g->d_model; Dkv = g->d_kv;
    ok = (g->x_q = read_tensor(f, "x_q", g->batch * g->n_q * E)) && (g->x_kv = read_tensor(f, "x_kv", g->batch * g->n_kv * Dkv)) &&
         (g->w_q = read_tensor(f, "w_q", E * E)) && (g->w_k = read_tensor(f, "w_k", E * Dkv)) &&
         (g->w_v = read_tensor(f, "w_v", E * Dkv)) && (g->w_o = read_tensor(f, "w_o", E * E));
    if (ok && g->bias)
        ok = (g->b_q = read_tensor(f, "b_q", E)) && (g->b_k = read_tensor(f, "b_k", E)) &&
             (g->b_v = read_tensor(f, "b_v", E)) && (g->b_o = read_tensor(f, "b_o", E));
    if (ok && g->has_kpm) ok = (g->kpm = read_tensor(f, "key_padding_mask", g->batch * g->n_kv)) != NULL;
    if (ok && g->has_mask) ok = (g->mask = read_tensor(f, "attn_mask", g->n_q * g->n_kv)) != NULL;
    ok = ok && (g->out = read_tensor(f, "out", g->batch * g->n_q * E));
    if (ok && g->weights_mode) {
        g->n_weights = g->batch * (g->weights_mode == 2 ? g->n_heads : 1) * g->n_q * g->n_kv;
        ok = (g->weights = read_tensor(f, "weights", g->n_weights)) != NULL;
    }
    if (ok) {
        char end[8];
        ok = fscanf(f, "%7s", end) == 1 && strcmp(end, "end") == 0;
    }
    fclose(f);
    if (!ok) printf("    %s: malformed\n", path);
    return ok;
}

static void free_golden(golden *g)
{
    free(g->x_q); free(g->x_kv); free(g->w_q); free(g->w_k); free(g->w_v); free(g->w_o); free(g->b_q);
    free(g->b_k); free(g->b_v); free(g->b_o); free(g->kpm); free(g->mask); free(g->out); free(g->weights);
}

/* runs one fixture; use_causal replaces the fixture's explicit causal mask by opt.causal */
static void run_golden(const golden *g, int use_causal, const char *name)
{
    const int B = g->batch, E = g->d_model;
    float *out = falloc((size_t)B * g->n_q * E), *w = g->n_weights ? falloc((size_t)g->n_weights) : NULL;
    double *ref = dalloc((size_t)B * g->n_q * E), *ref_w = dalloc((size_t)g->n_weights);
    unsigned char *kpm = NULL;
    attn_mha m;
    attn_options opt;
    int i;
    double e_o, e_w = 0.0;
    memset(&m, 0, sizeof m); memset(&opt, 0, sizeof opt);
    m.d_model = E; m.n_heads = g->n_heads; m.d_kv = g->self ? 0 : g->d_kv;
    m.layout = ATTN_LAYOUT_OUT_IN; /* PyTorch's [out, in] weights, loaded as stored */
    m.w_q = g->w_q; m.w_k = g->w_k; m.w_v = g->w_v; m.w_o = g->w_o;
    m.b_q = g->b_q; m.b_k = g->b_k; m.b_v = g->b_v; m.b_o = g->b_o;
    if (g->has_kpm) {
        kpm = (unsigned char *)calloc((size_t)B * g->n_kv, 1);
        for (i = 0; i < B * g->n_kv; ++i) kpm[i] = g->kpm[i] != 0.0f;
        opt.key_padding_mask = kpm;
    }
    if (use_causal) opt.causal = ATTN_CAUSAL_TOP_LEFT;
    else opt.mask = g->mask;
    opt.out_weights = w;
    opt.average_weights = g->weights_mode == 1;
    if (g->self) CHECK_CODE(attn_self_forward(out, g->x_q, B, g->n_q, &m, &opt, NULL, 0), ATTN_OK);
    else CHECK_CODE(attn_cross_forward(out, g->x_q, g->x_kv, B, g->n_q, g->n_kv, &m, &opt, NULL, 0), ATTN_OK);
    for (i = 0; i < B * g->n_q * E; ++i) ref[i] = g->out[i];
    for (i = 0; i < g->n_weights; ++i) ref_w[i] = g->weights[i];
    e_o = rel_err(out, ref, (size_t)B * g->n_q * E);
    if (w) e_w = rel_err(w, ref_w, (size_t)g->n_weights);
    if (!(e_o <= TOL && e_w <= TOL)) {
        printf("    fixture %s%s: errors out %.3g weights %.3g\n", name, use_causal ? " (causal option)" : "", e_o, e_w);
        ++g_fails;
    }
    free(out); free(w); free(ref); free(ref_w); free(kpm);
}

static void test_pytorch_fixtures(void)
{
    static const char *cases[] = {"mha_bias", "mha_nobias", "mha_padding", "mha_attn_mask",
                                  "mha_causal", "mha_cross", "mha_cross_same_dim"};
    size_t c;
    for (c = 0; c < sizeof cases / sizeof *cases; ++c) {
        char path[512];
        golden g;
        snprintf(path, sizeof path, "%s/%s.txt", g_data_dir, cases[c]);
        if (!load_golden(&g, path)) { ++g_fails; free_golden(&g); continue; }
        run_golden(&g, 0, cases[c]);
        if (g.causal) run_golden(&g, 1, cases[c]);
        free_golden(&g);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* errors and memory                                                                              */
/* ---------------------------------------------------------------------------------------------- */

#define SENTINEL 1234.5f
static int untouched(const float *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) if (p[i] != SENTINEL) return 0;
    return 1;
}
static void fill_sentinel(float *p, size_t n) { size_t i; for (i = 0; i < n; ++i) p[i] = SENTINEL; }

static void test_errors_building_blocks(void)
{
    float a[64], b[64], y[64], l[8];
    rnd_fill(a, 64, 1.0f); rnd_fill(b, 64, 1.0f);
    fill_sentinel(y, 64);
    /* attn_project */
    CHECK_CODE(attn_project(NULL, 4, a, 4, b, 4, ATTN_LAYOUT_IN_OUT, NULL, 2, 4, 4), ATTN_ERR_NULL);
    CHECK_CODE(attn_project(y, 4, NULL, 4, b, 4, ATTN_LAYOUT_IN_OUT, NULL, 2, 4, 4), ATTN_ERR_NULL);
    CHECK_CODE(attn_project(y, 4, a, 4, NULL, 4, ATTN_LAYOUT_IN_OUT, NULL, 2, 4, 4), ATTN_ERR_NULL);
    CHECK_CODE(attn_project(y, 4, a, 4, b, 4, ATTN_LAYOUT_IN_OUT, NULL, 0, 4, 4), ATTN_ERR_SHAPE);
    CHECK_CODE(attn_project(y, 4, a, 4, b, 4, ATTN_LAYOUT_IN_OUT, NULL, 2, -1, 4), ATTN_ERR_SHAPE);
    CHECK_CODE(attn_project(y, 4, a, 4, b, 4, ATTN_LAYOUT_IN_OUT, NULL, 2, 4, 0), ATTN_ERR_SHAPE);
    CHECK_CODE(attn_project(y, 4, a, 4, b, 4, (attn_layout)7, NULL, 2, 4, 4), ATTN_ERR_OPTION);
    CHECK_CODE(attn_project(y, 3, a, 4, b, 4, ATTN_LAYOUT_IN_OUT, NULL, 2, 4, 4), ATTN_ERR_STRIDE);
    CHECK_CODE(attn_project(y, 4, a, 3, b, 4, ATTN_LAYOUT_IN_OUT, NULL, 2, 4, 4), ATTN_ERR_STRIDE);
    CHECK_CODE(attn_project(y, 4, a, 4, b, 3, ATTN_LAYOUT_IN_OUT, NULL, 2, 4, 4), ATTN_ERR_STRIDE);
    CHECK_CODE(attn_project(y, 8, a, 4, b, 3, ATTN_LAYOUT_OUT_IN, NULL, 2, 4, 8), ATTN_ERR_STRIDE);
    CHECK_CODE(attn_project(y, -8, a, 4, b, 8, ATTN_LAYOUT_IN_OUT, NULL, 2, 4, 8), ATTN_ERR_STRIDE);
    CHECK_CODE(attn_project(y, PTRDIFF_MAX / 2, a, 4, b, 4, ATTN_LAYOUT_IN_OUT, NULL, 3, 4, 4), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_project(y, 4, a, PTRDIFF_MAX, b, 4, ATTN_LAYOUT_IN_OUT, NULL, 2, 4, 4), ATTN_ERR_OVERFLOW);
    /* attn_scores */
    CHECK_CODE(attn_scores(NULL, 4, a, 4, b, 4, 2, 4, 4, 0.0f), ATTN_ERR_NULL);
    CHECK_CODE(attn_scores(y, 4, a, 4, NULL, 4, 2, 4, 4, 0.0f), ATTN_ERR_NULL);
    CHECK_CODE(attn_scores(y, 4, a, 4, b, 4, 2, 0, 4, 0.0f), ATTN_ERR_SHAPE);
    CHECK_CODE(attn_scores(y, 4, a, 4, b, 4, 2, 4, 4, NAN), ATTN_ERR_OPTION);
    CHECK_CODE(attn_scores(y, 4, a, 4, b, 4, 2, 4, 4, INFINITY), ATTN_ERR_OPTION);
    CHECK_CODE(attn_scores(y, 2, a, 4, b, 4, 2, 4, 4, 0.0f), ATTN_ERR_STRIDE);
    CHECK_CODE(attn_scores(y, 4, a, 4, b, 1, 2, 4, 4, 0.0f), ATTN_ERR_STRIDE);
    CHECK_CODE(attn_scores(y, 4, a, 4, b, PTRDIFF_MAX / 3, 2, 4, 4, 0.0f), ATTN_ERR_OVERFLOW);
    /* attn_softmax */
    CHECK_CODE(attn_softmax(NULL, 4, a, 4, 2, 4, l), ATTN_ERR_NULL);
    CHECK_CODE(attn_softmax(y, 4, NULL, 4, 2, 4, l), ATTN_ERR_NULL);
    CHECK_CODE(attn_softmax(y, 4, a, 4, 2, -4, l), ATTN_ERR_SHAPE);
    CHECK_CODE(attn_softmax(y, 3, a, 4, 2, 4, l), ATTN_ERR_STRIDE);
    CHECK_CODE(attn_softmax(y, 4, a, 0, 2, 4, l), ATTN_ERR_STRIDE);
    CHECK_CODE(attn_softmax(y, 4, a, PTRDIFF_MAX - 2, 2, 4, l), ATTN_ERR_OVERFLOW);
    /* attn_weighted_sum */
    CHECK_CODE(attn_weighted_sum(y, 4, a, 4, NULL, 4, 2, 4, 4), ATTN_ERR_NULL);
    CHECK_CODE(attn_weighted_sum(y, 4, a, 4, b, 4, 2, 4, 0), ATTN_ERR_SHAPE);
    CHECK_CODE(attn_weighted_sum(y, 4, a, 4, b, 3, 2, 4, 4), ATTN_ERR_STRIDE);
    CHECK_CODE(attn_weighted_sum(y, 4, a, PTRDIFF_MAX, b, 4, 2, 4, 4), ATTN_ERR_OVERFLOW);
    /* attn_merge */
    CHECK_CODE(attn_merge(y, 4, l, a, 4, NULL, b, 4, l, 2, 4), ATTN_ERR_NULL);
    CHECK_CODE(attn_merge(y, 4, l, a, 4, l, b, 4, l, 0, 4), ATTN_ERR_SHAPE);
    CHECK_CODE(attn_merge(y, 4, NULL, a, 4, b, b, 2, b, 2, 4), ATTN_ERR_STRIDE);
    CHECK_CODE(attn_merge(y, PTRDIFF_MAX, NULL, a, 4, b, b, 4, b, 2, 4), ATTN_ERR_OVERFLOW);
    CHECK(untouched(y, 64));
    CHECK(strcmp(attn_result_string(ATTN_OK), "success") == 0);
    CHECK(strcmp(attn_result_string((attn_result)-100), "unknown attn_result") == 0);
    {
        int r;
        for (r = ATTN_ERR_NOMEM; r <= ATTN_OK; ++r) CHECK(strcmp(attn_result_string((attn_result)r), "unknown attn_result") != 0);
    }
}

static void test_errors_sdpa(void)
{
    enum { B = 2, H = 2, N = 8, D = 4 };
    float q[B * H * N * D], k[B * H * N * D], v[B * H * N * D], o[B * H * N * D], lse[B * H * N];
    float mask[N * N], w[B * H * N * N];
    const attn_dims d = {B, H, 0, N, N, D, 0};
    const attn_stride s = attn_stride_bhnd(H, N, D);
    attn_dims bad;
    attn_stride bs;
    attn_options opt;
    int kv_len[B] = {3, 9};
    unsigned char ws[16];
    size_t bytes = 0;
    memset(&opt, 0, sizeof opt);
    rnd_fill(q, sizeof q / sizeof *q, 1.0f); rnd_fill(k, sizeof k / sizeof *k, 1.0f); rnd_fill(v, sizeof v / sizeof *v, 1.0f);
    memset(mask, 0, sizeof mask);
    fill_sentinel(o, sizeof o / sizeof *o); fill_sentinel(lse, sizeof lse / sizeof *lse); fill_sentinel(w, sizeof w / sizeof *w);
    CHECK_CODE(attn_sdpa(NULL, s, q, s, k, s, v, s, &d, NULL, NULL, 0), ATTN_ERR_NULL);
    CHECK_CODE(attn_sdpa(o, s, q, s, NULL, s, v, s, &d, NULL, NULL, 0), ATTN_ERR_NULL);
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, NULL, NULL, NULL, 0), ATTN_ERR_NULL);
    bad = d; bad.n_q = 0;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, &bad, NULL, NULL, 0), ATTN_ERR_SHAPE);
    bad = d; bad.d_k = -3;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, &bad, NULL, NULL, 0), ATTN_ERR_SHAPE);
    bad = d; bad.n_kv_heads = -1;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, &bad, NULL, NULL, 0), ATTN_ERR_SHAPE);
    bad = d; bad.n_heads = 3; bad.n_kv_heads = 2;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, &bad, NULL, NULL, 0), ATTN_ERR_KV_HEADS);
    bs = s; bs.row = D - 1;
    CHECK_CODE(attn_sdpa(o, s, q, bs, k, s, v, s, &d, NULL, NULL, 0), ATTN_ERR_STRIDE);
    bs = s; bs.head = -1;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, bs, v, s, &d, NULL, NULL, 0), ATTN_ERR_STRIDE);
    bs = s; bs.batch = 0; /* broadcast is fine for an input ... */
    CHECK_CODE(attn_sdpa(o, s, q, bs, k, s, v, s, &d, NULL, NULL, 0), ATTN_OK);
    fill_sentinel(o, sizeof o / sizeof *o);
    CHECK_CODE(attn_sdpa(o, bs, q, s, k, s, v, s, &d, NULL, NULL, 0), ATTN_ERR_STRIDE); /* ... not for an output */
    bs = s; bs.head = D * (N - 1); /* heads overlap the rows of the previous head */
    CHECK_CODE(attn_sdpa(o, bs, q, s, k, s, v, s, &d, NULL, NULL, 0), ATTN_ERR_STRIDE);
    bs = s; bs.batch = PTRDIFF_MAX / 2;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, bs, &d, NULL, NULL, 0), ATTN_ERR_OVERFLOW);
    bs = attn_stride_bhnd(1 << 20, 1 << 21, 1 << 21); /* 2^62 elements: saturated by the helper, then rejected */
    CHECK_CODE(attn_sdpa(o, s, q, s, k, bs, v, s, &d, NULL, NULL, 0), ATTN_ERR_OVERFLOW);
    /* options */
    opt.scale = NAN;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, &d, &opt, NULL, 0), ATTN_ERR_OPTION);
    memset(&opt, 0, sizeof opt); opt.causal = (attn_causal)3;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, &d, &opt, NULL, 0), ATTN_ERR_OPTION);
    memset(&opt, 0, sizeof opt); opt.kv_len = kv_len; opt.out_lse = lse; /* kv_len[1] = 9 > N */
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, &d, &opt, NULL, 0), ATTN_ERR_OPTION);
    kv_len[1] = -1;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, &d, &opt, NULL, 0), ATTN_ERR_OPTION);
    memset(&opt, 0, sizeof opt); opt.mask = mask; opt.mask_stride.row = N - 1;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, &d, &opt, NULL, 0), ATTN_ERR_STRIDE);
    opt.mask_stride.row = 0; opt.mask_stride.head = -N;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, &d, &opt, NULL, 0), ATTN_ERR_STRIDE);
    opt.mask_stride.head = PTRDIFF_MAX;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, &d, &opt, NULL, 0), ATTN_ERR_OVERFLOW);
    /* workspace */
    memset(&opt, 0, sizeof opt); opt.out_weights = w; opt.out_lse = lse;
    CHECK_CODE(attn_sdpa(o, s, q, s, k, s, v, s, &d, &opt, ws, sizeof ws), ATTN_ERR_WORKSPACE);
    CHECK_CODE(attn_sdpa_workspace_size(NULL, &d, NULL), ATTN_ERR_NULL);
    CHECK_CODE(attn_sdpa_workspace_size(&bytes, NULL, NULL), ATTN_ERR_NULL);
    bad = d; bad.batch = 0;
    CHECK_CODE(attn_sdpa_workspace_size(&bytes, &bad, NULL), ATTN_ERR_SHAPE);
    bad = d; bad.d_v = 2147483647; /* the tile workspace would pass INT_MAX floats (see errors_overflow) */
    CHECK_CODE(attn_sdpa_workspace_size(&bytes, &bad, NULL), ATTN_ERR_OVERFLOW);
    CHECK(bytes == 0 || bytes > (size_t)2147483647);
    /* nothing was written by any failed call */
    CHECK(untouched(o, sizeof o / sizeof *o) && untouched(lse, sizeof lse / sizeof *lse) && untouched(w, sizeof w / sizeof *w));
    /* the weights output's element count overflows */
    {
        attn_dims huge = {65536, 65536, 1, 1, 1, 1, 1};
        memset(&opt, 0, sizeof opt); opt.out_weights = w;
        bs.batch = 0; bs.head = 0; bs.row = 1;
        CHECK_CODE(attn_sdpa(o, s, q, bs, k, bs, v, bs, &huge, &opt, NULL, 0), ATTN_ERR_STRIDE); /* output first */
    }
}

static void test_errors_mha(void)
{
    enum { B = 2, N = 5, E = 8 };
    float x[B * N * E], w[E * E], out[B * N * E];
    attn_mha m, bad;
    attn_options opt;
    size_t bytes;
    unsigned char ws[8];
    rnd_fill(x, sizeof x / sizeof *x, 1.0f); rnd_fill(w, sizeof w / sizeof *w, 0.3f);
    fill_sentinel(out, sizeof out / sizeof *out);
    memset(&m, 0, sizeof m); memset(&opt, 0, sizeof opt);
    m.d_model = E; m.n_heads = 2; m.w_q = w; m.w_k = w; m.w_v = w; m.w_o = w;
    CHECK_CODE(attn_self_forward(NULL, x, B, N, &m, NULL, NULL, 0), ATTN_ERR_NULL);
    CHECK_CODE(attn_self_forward(out, NULL, B, N, &m, NULL, NULL, 0), ATTN_ERR_NULL);
    CHECK_CODE(attn_self_forward(out, x, B, N, NULL, NULL, NULL, 0), ATTN_ERR_NULL);
    CHECK_CODE(attn_cross_forward(out, x, NULL, B, N, N, &m, NULL, NULL, 0), ATTN_ERR_NULL);
    bad = m; bad.w_v = NULL;
    CHECK_CODE(attn_self_forward(out, x, B, N, &bad, NULL, NULL, 0), ATTN_ERR_NULL);
    CHECK_CODE(attn_self_forward(out, x, 0, N, &m, NULL, NULL, 0), ATTN_ERR_SHAPE);
    CHECK_CODE(attn_self_forward(out, x, B, -2, &m, NULL, NULL, 0), ATTN_ERR_SHAPE);
    CHECK_CODE(attn_cross_forward(out, x, x, B, N, 0, &m, NULL, NULL, 0), ATTN_ERR_SHAPE);
    bad = m; bad.d_kv = 4; /* self-attention needs d_kv == d_model */
    CHECK_CODE(attn_self_forward(out, x, B, N, &bad, NULL, NULL, 0), ATTN_ERR_SHAPE);
    bad = m; bad.d_kv = -4;
    CHECK_CODE(attn_cross_forward(out, x, x, B, N, N, &bad, NULL, NULL, 0), ATTN_ERR_SHAPE);
    bad = m; bad.n_heads = 3;
    CHECK_CODE(attn_self_forward(out, x, B, N, &bad, NULL, NULL, 0), ATTN_ERR_HEADS);
    bad = m; bad.n_heads = 0;
    CHECK_CODE(attn_self_forward(out, x, B, N, &bad, NULL, NULL, 0), ATTN_ERR_SHAPE);
    bad = m; bad.n_heads = 4; bad.n_kv_heads = 3;
    CHECK_CODE(attn_self_forward(out, x, B, N, &bad, NULL, NULL, 0), ATTN_ERR_KV_HEADS);
    bad = m; bad.layout = (attn_layout)2;
    CHECK_CODE(attn_self_forward(out, x, B, N, &bad, NULL, NULL, 0), ATTN_ERR_OPTION);
    opt.causal = (attn_causal)-1;
    CHECK_CODE(attn_self_forward(out, x, B, N, &m, &opt, NULL, 0), ATTN_ERR_OPTION);
    memset(&opt, 0, sizeof opt);
    CHECK_CODE(attn_self_forward(out, x, 2147483647, 2147483647, &m, NULL, NULL, 0), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_self_forward(out, x, B, N, &m, NULL, ws, sizeof ws), ATTN_ERR_WORKSPACE);
    CHECK_CODE(attn_self_workspace_size(NULL, B, N, &m, NULL), ATTN_ERR_NULL);
    CHECK_CODE(attn_self_workspace_size(&bytes, B, N, NULL, NULL), ATTN_ERR_NULL);
    CHECK_CODE(attn_cross_workspace_size(&bytes, B, N, 0, &m, NULL), ATTN_ERR_SHAPE);
    CHECK(untouched(out, sizeof out / sizeof *out));
    CHECK_CODE(attn_self_workspace_size(&bytes, B, N, &m, NULL), ATTN_OK);
    CHECK(bytes >= sizeof(float) * (2 * N * E + 2 * N * E));
}

/* The allocator macros get alloc_user, every allocation is freed, and a failing allocator gives
   ATTN_ERR_NOMEM with the output untouched. */
static void test_allocator(void)
{
    enum { B = 1, N = 6, E = 8 };
    float x[B * N * E], w[E * E], out[B * N * E];
    attn_mha m;
    attn_options opt;
    test_alloc a = {0, 0, 0, 0, 0};
    const attn_dims d = {1, 1, 0, N, N, E, 0};
    const attn_stride s = attn_stride_bhnd(1, N, E);
    rnd_fill(x, sizeof x / sizeof *x, 1.0f); rnd_fill(w, sizeof w / sizeof *w, 0.3f);
    memset(&m, 0, sizeof m); memset(&opt, 0, sizeof opt);
    m.d_model = E; m.n_heads = 2; m.w_q = w; m.w_k = w; m.w_v = w; m.w_o = w;
    opt.alloc_user = &a;
    CHECK_CODE(attn_self_forward(out, x, B, N, &m, &opt, NULL, 0), ATTN_OK);
    CHECK_CODE(attn_sdpa(out, s, x, s, x, s, x, s, &d, &opt, NULL, 0), ATTN_OK);
    CHECK(a.n_alloc == 2 && a.n_free == 2);
    a.fail = 1;
    fill_sentinel(out, sizeof out / sizeof *out);
    CHECK_CODE(attn_self_forward(out, x, B, N, &m, &opt, NULL, 0), ATTN_ERR_NOMEM);
    CHECK_CODE(attn_cross_forward(out, x, x, B, N, N, &m, &opt, NULL, 0), ATTN_ERR_NOMEM);
    CHECK_CODE(attn_sdpa(out, s, x, s, x, s, x, s, &d, &opt, NULL, 0), ATTN_ERR_NOMEM);
    CHECK(untouched(out, sizeof out / sizeof *out) && a.n_alloc == 2 && a.n_free == 2);
    /* a caller workspace: no allocation at all */
    a.fail = 0;
    {
        size_t need = 0;
        void *ws;
        CHECK_CODE(attn_self_workspace_size(&need, B, N, &m, &opt), ATTN_OK);
        ws = malloc(need);
        CHECK_CODE(attn_self_forward(out, x, B, N, &m, &opt, ws, need), ATTN_OK);
        CHECK(a.n_alloc == 2);
        free(ws);
    }
}

/* Failure injection: for every call that allocates (attn_sdpa, attn_self_forward, attn_cross_forward
   without a workspace, in shapes that take each code path: query tiles, decoding key chunks, weights,
   threads), count the allocations k of a successful call, then make the 1st, 2nd, ... k-th fail in turn:
   each run returns ATTN_ERR_NOMEM, frees everything it took and leaves every output untouched; and a run
   that fails nothing matches the first. */
enum { FI_SDPA_TILE, FI_SDPA_DECODE, FI_SELF, FI_CROSS, FI_CALLS };
static attn_result fi_call(int which, float *out, float *lse, float *w, test_alloc *a)
{
    enum { B = 2, H = 4, HKV = 2, NQ = 37, NK = 2100, D = 8, E = H * D, N = 11 };
    static float q[B * H * NQ * D], kv[B * HKV * NK * D], wt[E * E], x[B * N * E];
    static int init;
    attn_options opt;
    attn_mha m;
    memset(&opt, 0, sizeof opt);
    memset(&m, 0, sizeof m);
    if (!init) {
        rnd_fill(q, sizeof q / sizeof *q, 1.0f); rnd_fill(kv, sizeof kv / sizeof *kv, 1.0f);
        rnd_fill(wt, sizeof wt / sizeof *wt, 0.3f); rnd_fill(x, sizeof x / sizeof *x, 1.0f);
        init = 1;
    }
    opt.alloc_user = a;
    opt.out_lse = lse;
    opt.n_threads = 2;
    m.d_model = E; m.n_heads = H; m.n_kv_heads = HKV; m.w_q = wt; m.w_k = wt; m.w_v = wt; m.w_o = wt;
    switch (which) {
    case FI_SDPA_TILE: {
        const attn_dims d = {B, H, HKV, NQ, 50, D, 0};
        opt.out_weights = w; opt.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
        return attn_sdpa(out, attn_stride_bhnd(H, NQ, D), q, attn_stride_bhnd(H, NQ, D), kv,
                         attn_stride_bhnd(HKV, 50, D), kv, attn_stride_bhnd(HKV, 50, D), &d, &opt, NULL, 0);
    }
    case FI_SDPA_DECODE: { /* more than 2048 keys, one query: key chunks and their partial results */
        const attn_dims d = {B, H, HKV, 1, NK, D, 0};
        return attn_sdpa(out, attn_stride_bhnd(H, 1, D), q, attn_stride_bhnd(H, 1, D), kv,
                         attn_stride_bhnd(HKV, NK, D), kv, attn_stride_bhnd(HKV, NK, D), &d, &opt, NULL, 0);
    }
    case FI_SELF:
        opt.out_weights = w;
        return attn_self_forward(out, x, B, N, &m, &opt, NULL, 0);
    default:
        m.d_kv = 2 * D; /* x_kv [B, N, 2D]: the first floats of x */
        return attn_cross_forward(out, x, x, B, N, N, &m, &opt, NULL, 0);
    }
}

static void test_failure_injection(void)
{
    enum { OUT = 2 * 4 * 37 * 8, LSE = 2 * 4 * 37, W = 2 * 4 * 37 * 50 };
    static float out[OUT], lse[LSE], w[W], out_ok[OUT];
    int which;
    for (which = 0; which < FI_CALLS; ++which) {
        test_alloc a = {0, 0, 0, 0, 0};
        int n, k;
        memset(out_ok, 0, sizeof out_ok);
        CHECK_CODE(fi_call(which, out_ok, lse, w, &a), ATTN_OK);
        n = a.n_tries;
        CHECK(n >= 1 && a.n_alloc == n && a.n_free == n);
        for (k = 1; k <= n; ++k) {
            memset(&a, 0, sizeof a);
            a.fail_at = k;
            fill_sentinel(out, OUT); fill_sentinel(lse, LSE); fill_sentinel(w, W);
            CHECK_CODE(fi_call(which, out, lse, w, &a), ATTN_ERR_NOMEM);
            CHECK(a.n_alloc == a.n_free && a.n_tries >= k);
            CHECK(untouched(out, OUT) && untouched(lse, LSE) && untouched(w, W));
            if (g_fails) { printf("    call %d, allocation %d of %d failing\n", which, k, n); return; }
        }
        memset(&a, 0, sizeof a);
        a.fail_at = n + 1; /* past the last request: nothing fails */
        memset(out, 0, sizeof out);
        CHECK_CODE(fi_call(which, out, lse, w, &a), ATTN_OK);
        CHECK(memcmp(out, out_ok, sizeof out) == 0 && a.n_alloc == n && a.n_free == n);
    }
}

/* Overflow: sizes whose element or byte counts overflow int, ptrdiff_t or size_t are rejected with
   ATTN_ERR_OVERFLOW by every entry point before anything is read or written. Each size alone is a valid
   int and the pairwise products fit; the buffers are tiny, since nothing may be touched. Inputs use
   strides 0 where that keeps their own views small, so that the count under test is the one that
   overflows. Holds for 32- and 64-bit size_t. */
static void test_errors_overflow(void)
{
    const int BIG = 2147483647;
    float a[64], y[64], l[8];
    const attn_stride zero = {0, 0, 1}, one = {1, 1, 1};
    attn_dims d;
    attn_options opt;
    attn_mha m;
    unsigned char kpm[4] = {0, 0, 0, 0};
    size_t bytes = 12345;
    rnd_fill(a, 64, 1.0f);
    fill_sentinel(y, 64); fill_sentinel(l, 8);
    /* building blocks: the extent of a strided matrix (rows x row stride) */
    CHECK_CODE(attn_weighted_sum(y, 4, a, 4, a, PTRDIFF_MAX / 2, 2, 4, 4), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_project(y, 4, a, 4, a, PTRDIFF_MAX / 2, ATTN_LAYOUT_OUT_IN, NULL, 2, 4, 4), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_scores(y, PTRDIFF_MAX / 2, a, 4, a, 4, 2, 4, 4, 0.0f), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_softmax(y, PTRDIFF_MAX / 2, a, 4, 2, 4, l), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_merge(y, 4, l, a, PTRDIFF_MAX / 2, l, a, 4, l, 2, 4), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_merge(y, 4, l, a, 4, l, a, PTRDIFF_MAX / 2, l, 2, 4), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_project(y, BIG, a, BIG, a, BIG, ATTN_LAYOUT_IN_OUT, NULL, BIG, BIG, BIG), ATTN_ERR_OVERFLOW);
    /* attn_sdpa: the batch x Nk of the key padding mask, with every view small (broadcast inputs, an
       output of B rows of 1) */
    memset(&opt, 0, sizeof opt);
    d.batch = BIG; d.n_heads = 1; d.n_kv_heads = 1; d.n_q = 1; d.n_kv = BIG; d.d_k = 1; d.d_v = 1;
    opt.key_padding_mask = kpm;
    CHECK_CODE(attn_sdpa(y, one, a, zero, a, zero, a, zero, &d, &opt, NULL, 0), ATTN_ERR_OVERFLOW);
    /* ... and the weights output's B x Nq x Nk, per head or averaged */
    memset(&opt, 0, sizeof opt);
    opt.out_weights = y;
    CHECK_CODE(attn_sdpa(y, one, a, zero, a, zero, a, zero, &d, &opt, NULL, 0), ATTN_ERR_OVERFLOW);
    opt.average_weights = 1;
    CHECK_CODE(attn_sdpa(y, one, a, zero, a, zero, a, zero, &d, &opt, NULL, 0), ATTN_ERR_OVERFLOW);
    /* the output's B x Hq x Nq x Dv, each pair of which fits */
    d.batch = 1 << 20; d.n_heads = 1 << 20; d.n_kv_heads = 1; d.n_q = 1 << 22; d.n_kv = 1; d.d_k = 1; d.d_v = 1;
    CHECK_CODE(attn_sdpa(y, attn_stride_bhnd(d.n_heads, d.n_q, 1), a, zero, a, zero, a, zero, &d, NULL, NULL, 0),
               ATTN_ERR_OVERFLOW);
    /* attn_sdpa_workspace_size: the key chunks' partial results, B x Hq x chunks x Nq x (Dv + 1) */
    d.batch = BIG; d.n_heads = BIG; d.n_kv_heads = 1; d.n_q = 8; d.n_kv = 4096; d.d_k = 1; d.d_v = BIG;
    CHECK_CODE(attn_sdpa_workspace_size(&bytes, &d, NULL), ATTN_ERR_OVERFLOW);
    /* ... and Nk near INT_MAX, where the number of key chunks was once computed as (Nk + 2047) / 2048 in int
       (signed overflow, found by UBSan): 2^20 chunks of 2 floats, which fit even in 32 bits */
    d.batch = 1; d.n_heads = 1; d.n_q = 1; d.n_kv = BIG; d.d_v = 1;
    CHECK_CODE(attn_sdpa_workspace_size(&bytes, &d, NULL), ATTN_OK);
    /* the per-thread tile workspace, indexed with int in the kernels: (Dk + Dv + 68) x 32 floats must stay
       below INT_MAX (Dk = Dv = 2^26 made c * 32 overflow int in the SIMD tile kernel; found by clang-tidy) */
    d.n_q = 40; d.n_kv = 1; d.d_k = 1 << 26; d.d_v = 1 << 26;
    CHECK_CODE(attn_sdpa_workspace_size(&bytes, &d, NULL), ATTN_ERR_OVERFLOW);
    {
        const attn_stride wide = {0, 0, 1 << 26}; /* rows of 2^26: valid views, never read */
        CHECK_CODE(attn_sdpa(y, wide, a, wide, a, wide, a, wide, &d, NULL, NULL, 0), ATTN_ERR_OVERFLOW);
    }
    d.d_k = 1 << 16; d.d_v = 0;
    CHECK_CODE(attn_sdpa_workspace_size(&bytes, &d, NULL), ATTN_OK);
#ifdef _OPENMP
    /* the per-thread tiles times a huge thread count */
    d.n_q = 1; d.n_kv = 1; d.d_k = BIG; d.d_v = BIG;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = BIG;
    CHECK_CODE(attn_sdpa_workspace_size(&bytes, &d, &opt), ATTN_ERR_OVERFLOW);
#endif
    /* multi-head attention: batch x n x d_model (each pair fits), d_model^2 of the weights, n_kv x d_kv */
    memset(&m, 0, sizeof m);
    m.w_q = a; m.w_k = a; m.w_v = a; m.w_o = a;
    m.d_model = 1 << 22; m.n_heads = 1;
    CHECK_CODE(attn_self_forward(y, a, 1 << 20, 1 << 20, &m, NULL, NULL, 0), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_self_workspace_size(&bytes, 1 << 20, 1 << 20, &m, NULL), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_cross_forward(y, a, a, 1 << 20, 1 << 20, 1, &m, NULL, NULL, 0), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_cross_workspace_size(&bytes, 1 << 20, 1 << 20, 1, &m, NULL), ATTN_ERR_OVERFLOW);
    m.d_model = BIG - 1; m.n_heads = 2; /* W_q, W_o [d_model x d_model] */
    CHECK_CODE(attn_self_forward(y, a, 1, 1, &m, NULL, NULL, 0), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_self_workspace_size(&bytes, 1, 1, &m, NULL), ATTN_ERR_OVERFLOW);
    m.d_model = 4; m.n_heads = 1; m.d_kv = BIG; /* x_kv [B, Nk, d_kv] and W_k, W_v [d_kv x d_model] */
    CHECK_CODE(attn_cross_forward(y, a, a, 1, 1, BIG, &m, NULL, NULL, 0), ATTN_ERR_OVERFLOW);
    CHECK_CODE(attn_cross_workspace_size(&bytes, 1, 1, BIG, &m, NULL), ATTN_ERR_OVERFLOW);
    m.d_kv = 0; m.d_model = 2; /* Nk near INT_MAX with few queries: key chunks (see above) */
    CHECK_CODE(attn_cross_workspace_size(&bytes, 1, 1, BIG, &m, NULL), sizeof(size_t) > 4 ? ATTN_OK : ATTN_ERR_OVERFLOW);
    CHECK(untouched(y, 64) && untouched(l, 8));
}

/* ---------------------------------------------------------------------------------------------- */

typedef struct test_case { const char *name; void (*fn)(void); } test_case;

static const test_case k_tests[] = {
    {"project", test_project},
    {"project_layouts_agree", test_project_layouts_agree},
    {"scores", test_scores},
    {"softmax_random", test_softmax_random},
    {"softmax_edges", test_softmax_edges},
    {"weighted_sum", test_weighted_sum},
    {"merge", test_merge},
    {"sdpa_random", test_sdpa_random},
    {"identity_causal_is_mask", test_identity_causal_is_mask},
    {"identity_gqa_is_repeated_mha", test_identity_gqa_is_repeated_mha},
    {"identity_decode_is_full", test_identity_decode_is_full},
    {"identity_merge_halves", test_identity_merge_halves},
    {"workspace", test_workspace},
    {"long_sequence", test_long_sequence},
    {"threads_and_splits", test_threads_and_splits},
    {"decode_key_chunks", test_decode_key_chunks},
    {"sdpa_special_values", test_sdpa_special_values},
    {"mha_random", test_mha_random},
    {"mha_self_is_cross", test_mha_self_is_cross},
    {"pytorch_fixtures", test_pytorch_fixtures},
    {"errors_building_blocks", test_errors_building_blocks},
    {"errors_sdpa", test_errors_sdpa},
    {"errors_mha", test_errors_mha},
    {"allocator", test_allocator},
    {"failure_injection", test_failure_injection},
    {"errors_overflow", test_errors_overflow},
};

/* Is test `name` selected by the arguments argv[2..]: names to run, or -names to skip (valgrind skips the
   slowest)? With no names, every test runs. */
static int selected(const char *name, int argc, char **argv)
{
    int a, any_include = 0;
    for (a = 2; a < argc; ++a) {
        if (argv[a][0] == '-') { if (strcmp(argv[a] + 1, name) == 0) return 0; }
        else { any_include = 1; if (strcmp(argv[a], name) == 0) return 1; }
    }
    return !any_include;
}

/* Usage: test_attention [data_dir [[-]test_name...]] */
int main(int argc, char **argv)
{
    int passed = 0, failed = 0, a;
    size_t t;
    if (argc > 1) g_data_dir = argv[1];
    for (a = 2; a < argc; ++a) {
        const char *n = argv[a] + (argv[a][0] == '-');
        for (t = 0; t < sizeof k_tests / sizeof *k_tests; ++t)
            if (strcmp(n, k_tests[t].name) == 0) break;
        if (t == sizeof k_tests / sizeof *k_tests) { printf("no test named %s\n", n); return 2; }
    }
    printf("attention.h %s, kernels: %s\n", ATTN_VERSION_STRING, attn_simd_name());
    for (t = 0; t < sizeof k_tests / sizeof *k_tests; ++t) {
        if (!selected(k_tests[t].name, argc, argv)) continue;
        g_fails = 0;
        k_tests[t].fn();
        if (g_fails == 0) { ++passed; printf("ok   %s\n", k_tests[t].name); }
        else { ++failed; printf("FAIL %s (%d checks)\n", k_tests[t].name, g_fails); }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
