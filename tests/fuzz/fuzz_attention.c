/* libFuzzer harnesses for attention.h: one source, one harness per public entry point (clang
   -fsanitize=fuzzer,address,undefined). One binary holds them all and runs the harness its name says:
   make fuzz builds build/fuzz/fuzz_attention once and links build/fuzz/fuzz_<name> to it, so
   build/fuzz/fuzz_sdpa runs fuzz_sdpa (argv[0] fuzz_<name>). -DFUZZ_TARGET=fuzz_<name> builds a binary of
   that one harness instead, whatever its name.

   An input is read as the call's sizes, strides, options and pointers (a few bytes each), then a 4-byte
   seed from which every tensor is filled with moderate values (multiples of 1/32), then patches:
   (tensor, index, value) triples that plant NaN, +-inf, denormals, huge values or other finite values
   anywhere. Small inputs thus drive large tensors (up to 2100 keys, for the decoding key chunks).

   Whatever the input, the call must either return an error code, leaving every output untouched
   (bitwise), or succeed having written nothing outside its output views; and when every input is finite
   and moderate (|x| <= 64; masks and log-sum-exps may also be -inf) the result must match the float64
   reference of tests/reference.h within a rounding-error bound computed from the inputs' magnitudes.
   attn_sdpa and the multi-head calls are also compared on extreme inputs (issue 16): huge finite values,
   +-inf and -FLT_MAX masks (now and then a whole mask filled with -FLT_MAX, -1e9, -2.4e38 or -1e30, as
   padded rows are), scales up to FLT_MAX, up to three 2048-key chunks; row by row wherever the float64
   reference says every scaled and masked logit is a finite float or the mask is +-inf, with a bound
   that follows what float can know of each masked logit (fz_row_ref); NaN anywhere skips it.
   attn_merge's rows with a +inf log-sum-exp are compared with its documented rule (a +inf side takes
   all the weight, two weigh 1:1).
   fuzz_sdpa also draws sliding windows, soft-caps, sinks and ALiBi slopes (one byte after the options, so
   a zero byte there keeps an older input's meaning; the issue16_* seeds have it), compared with the
   float64 reference on moderate inputs.
   Any violation aborts (a libFuzzer crash) with a message that names the output, its index and row, the
   value, the reference and the error allowed; sanitizer reports abort too.

   fuzz_sdpa_backward: attn_sdpa_backward after attn_sdpa on the same views and options (out_weights and
   splits rejected, out_lse ignored), against ref_sdpa_backward on moderate inputs.

   fuzz_rope: attn_rope_apply in place, against ref_rope; a failed call leaves x bitwise as it was.

   fuzz_project_ex: the threaded projection with threads, splits and workspaces, bitwise equal to
   attn_project's result.

   Classic attention: fuzz_align_scores and fuzz_align_forward (every score kind, layouts, weight strides,
   biases, scales, src_len, precomputed keys, workspaces, selection modes, top_k, uniform numbers or a
   rand_fn callback; the scores, and the context of soft selection, against the float64 reference);
   fuzz_hardmax and fuzz_topk (exact indices and one-hot rows, top-k weights within rounding); fuzz_sample
   (a one-hot row at a visible entry, its index); fuzz_image_write (a writer into a bounded buffer that
   refuses past its capacity: ATTN_ERR_IO then, no write after a refusal, nothing past the bytes taken). */

#include <float.h>
#include <limits.h> /* INT_MAX */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTENTION_IMPLEMENTATION
#include "../../attention.h"
#include "../reference.h"

/* ---------------------------------------------------------------------------------------------- */
/* the input reader                                                                               */
/* ---------------------------------------------------------------------------------------------- */

#define FZ_MAX_TENSORS 16
#define FZ_MAX_FLOATS (1 << 20) /* views larger than this are only built to be rejected */

typedef struct fz {
    const uint8_t *p;
    size_t n;
    uint64_t rng;
    float *t[FZ_MAX_TENSORS]; /* registered input tensors, patched at the end */
    size_t len[FZ_MAX_TENSORS];
    int neg_inf_ok[FZ_MAX_TENSORS]; /* -inf is a meaningful value here (masks, log-sum-exps) */
    int n_t;
    int comparable; /* set by fz_patch: every input finite and moderate */
} fz;

static unsigned fz_u8(fz *f)
{
    if (!f->n) return 0;
    --f->n;
    return *f->p++;
}
static int fz_range(fz *f, int lo, int hi) { return lo + (int)(fz_u8(f) % (unsigned)(hi - lo + 1)); }

static float fz_special(unsigned kind)
{
    static const float k[] = {NAN, INFINITY, -INFINITY, 1e-40f, -1.4e-45f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX,
                              88.7f, -0.0f, 0.0f, 1e-20f, -3e38f};
    const unsigned n = sizeof k / sizeof *k;
    return kind < n ? k[kind] : ((float)(int)(kind - n) - 100.0f) / 8.0f; /* else moderate, in [-12.5, 18] */
}

static float *fz_tensor(fz *f, size_t n, float amp, int neg_inf_ok)
{
    float *t = (float *)malloc((n ? n : 1) * sizeof(float));
    size_t i;
    if (!t) abort();
    for (i = 0; i < n; ++i) {
        f->rng = f->rng * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = amp * (float)((int)(f->rng >> 58) - 32) / 32.0f; /* [-amp, amp) in steps of amp/32 */
    }
    if (f->n_t < FZ_MAX_TENSORS) {
        f->t[f->n_t] = t; f->len[f->n_t] = n; f->neg_inf_ok[f->n_t] = neg_inf_ok; ++f->n_t;
    }
    return t;
}

/* the rest of the input: (tensor, index lo, index hi, value) patches; then is everything comparable? */
static void fz_patch(fz *f)
{
    int i;
    size_t j;
    while (f->n >= 4 && f->n_t > 0) {
        const int t = (int)(fz_u8(f) % (unsigned)f->n_t);
        const size_t at = fz_u8(f) | (size_t)fz_u8(f) << 8;
        const float x = fz_special(fz_u8(f));
        if (f->len[t]) f->t[t][at % f->len[t]] = x;
    }
    f->comparable = 1;
    for (i = 0; i < f->n_t; ++i)
        for (j = 0; j < f->len[i]; ++j) {
            const float x = f->t[i][j];
            if (!(fabsf(x) <= 64.0f) && !(f->neg_inf_ok[i] && x == -INFINITY)) f->comparable = 0;
        }
}

static void fz_free(fz *f)
{
    int i;
    for (i = 0; i < f->n_t; ++i) free(f->t[i]);
}

/* A strided view [B, H, N, D] as the fuzzer picks it: [B,H,N,D], [B,N,H*D], padded rows, broadcast batch
   or head (inputs), or a broken stride that must be rejected. *len: floats to allocate; 0 when the view is
   too large to allocate, and then a call must reject it. */
static attn_stride fz_view(fz *f, int B, int H, int N, int D, size_t *len)
{
    attn_stride s = attn_stride_bhnd(H, N, D);
    unsigned long long span = 1, cap = FZ_MAX_FLOATS;
    switch (fz_range(f, 0, 7)) {
    case 1: s = attn_stride_bnhd(N, H, D); break;
    case 2: s = attn_stride_bhnd(H, N, D + fz_range(f, 1, 3)); break;
    case 3: s.batch = 0; break;
    case 4: s.head = 0; break;
    case 5: s.row = D - 1; break;
    case 6: s.head = -fz_range(f, 1, 3); break;
    case 7: s.batch = PTRDIFF_MAX / 2; break; /* overflows unless B == 1 */
    default: break;
    }
    if (s.row < D || s.head < 0 || s.batch < 0) { *len = 1; return s; } /* must be rejected */
    {
        const long double e = (long double)(B - 1) * s.batch + (long double)(H - 1) * s.head +
                              (long double)(N - 1) * s.row + D;
        if (e > (long double)cap) { *len = 0; return s; }
        span = (unsigned long long)e;
    }
    *len = (size_t)span;
    return s;
}

/* ---------------------------------------------------------------------------------------------- */
/* outputs: sentinel-filled, checked untouched on error and outside the view on success            */
/* ---------------------------------------------------------------------------------------------- */

#define FZ_GUARD 5
static const uint32_t k_sentinel = 0x7fc0beefu; /* a NaN no computation produces */

typedef struct fz_out {
    float *p;
    size_t len;             /* floats, plus FZ_GUARD after */
    unsigned char *in_view; /* [len] 1 where the call may write */
} fz_out;

static float *fz_out_alloc(fz_out *o, size_t len)
{
    size_t i;
    o->len = len;
    o->p = (float *)malloc((len + FZ_GUARD) * sizeof(float));
    o->in_view = (unsigned char *)calloc(len + FZ_GUARD, 1);
    if (!o->p || !o->in_view) abort();
    for (i = 0; i < len + FZ_GUARD; ++i) memcpy(o->p + i, &k_sentinel, sizeof k_sentinel);
    return o->p;
}

static void fz_out_mark(fz_out *o, attn_stride s, int B, int H, int N, int D)
{
    int b, h, n, d;
    for (b = 0; b < B; ++b) for (h = 0; h < H; ++h) for (n = 0; n < N; ++n) for (d = 0; d < D; ++d) {
        const size_t i = (size_t)(b * s.batch + h * s.head + n * s.row + d);
        if (i < o->len) o->in_view[i] = 1;
    }
}

/* every float of o that the call may not write (all of them after an error) still holds the sentinel */
static void fz_out_check(const fz_out *o, int after_error, const char *what)
{
    size_t i;
    if (!o->p) return;
    for (i = 0; i < o->len + FZ_GUARD; ++i)
        if ((after_error || !o->in_view[i]) && memcmp(o->p + i, &k_sentinel, sizeof k_sentinel) != 0) {
            fprintf(stderr, "fuzz: %s[%zu] written %s\n", what, i, after_error ? "by a failed call" : "outside its view");
            abort();
        }
}

static void fz_out_free(fz_out *o) { free(o->p); free(o->in_view); }

/* got[i] (strided through `at`) against ref[i]: non-finite references must match exactly; finite ones
   within tol * bound[i] (bound NULL: 1) plus g_floor, the absolute error of gradual underflow (products of
   denormals are exact to 2^-149 only: a scale applied after a dot product magnifies that) */
static double g_floor = 1e-30;
static void fz_compare(const char *what, const float *got, const size_t *at, const double *ref, const double *bound,
                       size_t n, double tol)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        const double g = got[at ? at[i] : i], r = ref[i], lim = tol * (bound ? bound[i] : 1.0) + g_floor;
        const int ok = isnan(r) ? isnan(g) : isinf(r) ? g == r : fabs(g - r) <= lim;
        if (!ok) {
            fprintf(stderr, "fuzz: %s[%zu] = %.9g, reference %.9g (allowed error %.3g)\n", what, i, g, r, lim);
            abort();
        }
    }
}

static float fz_maxabs(const float *x, size_t n)
{
    float m = 0.0f;
    size_t i;
    for (i = 0; i < n; ++i) m = isfinite(x[i]) && fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

static float *fz_abs_copy(const float *x, size_t n)
{
    float *a = (float *)malloc((n ? n : 1) * sizeof(float));
    size_t i;
    if (!a) abort();
    for (i = 0; i < n; ++i) a[i] = fabsf(x[i]);
    return a;
}

#define U 5.97e-8 /* float32 unit roundoff, with a little slack */

/* the scale as fuzzed: 0 (default), moderate, or non-finite (must be rejected) */
static float fz_scale(fz *f)
{
    const unsigned b = fz_u8(f);
    if (b < 128) return 0.0f;
    if (b < 250) return (float)((int)b - 189) / 32.0f;
    return fz_special(b - 250); /* NaN, +-inf, denormal, ... */
}

/* ---------------------------------------------------------------------------------------------- */
/* building blocks                                                                                */
/* ---------------------------------------------------------------------------------------------- */

static void fuzz_project(fz *f)
{
    const int n = fz_range(f, 1, 9), d_in = fz_range(f, 1, 40), d_out = fz_range(f, 1, 70);
    const int layout = fz_range(f, 0, 2), out_in = layout == ATTN_LAYOUT_OUT_IN, flags = (int)fz_u8(f);
    const ptrdiff_t xs = d_in + fz_range(f, -1, 2), ys = d_out + fz_range(f, -1, 2);
    const ptrdiff_t ws = (out_in ? d_in : d_out) + fz_range(f, -1, 2);
    const int w_rows = out_in ? d_out : d_in;
    const size_t nx = (size_t)(n - 1) * (size_t)(xs > 0 ? xs : 0) + (size_t)d_in;
    const size_t nw = (size_t)(w_rows - 1) * (size_t)(ws > 0 ? ws : 0) + (size_t)(out_in ? d_in : d_out);
    float *x, *w, *b, *y;
    fz_out oy;
    attn_result r;
    x = fz_tensor(f, nx, 2.0f, 0); w = fz_tensor(f, nw, 2.0f, 0); b = fz_tensor(f, (size_t)d_out, 2.0f, 0);
    fz_patch(f);
    y = fz_out_alloc(&oy, (size_t)(n - 1) * (size_t)(ys > 0 ? ys : 0) + (size_t)d_out);
    r = attn_project(flags & 1 ? NULL : y, ys, flags & 2 ? NULL : x, xs, flags & 4 ? NULL : w, ws,
                     (attn_layout)layout, flags & 8 ? b : NULL, n, d_in, d_out);
    if (r == ATTN_OK) {
        double *ref = ref_dalloc((size_t)n * d_out), *bound = ref_dalloc((size_t)n * d_out);
        size_t *at = (size_t *)malloc(sizeof(size_t) * (size_t)n * (size_t)d_out);
        float *xa = fz_abs_copy(x, nx), *wa = fz_abs_copy(w, nw), *ba = fz_abs_copy(b, (size_t)d_out);
        int i, j;
        attn_stride vw = {0, 0, 0};
        vw.row = ys;
        fz_out_mark(&oy, vw, 1, 1, n, d_out);
        fz_out_check(&oy, 0, "y");
        for (i = 0; i < n; ++i) for (j = 0; j < d_out; ++j) at[i * d_out + j] = (size_t)(i * ys + j);
        if (f->comparable) {
            ref_project(ref, x, xs, w, ATTN_F32, ws, out_in, flags & 8 ? b : NULL, n, d_in, d_out);
            ref_project(bound, xa, xs, wa, ATTN_F32, ws, out_in, flags & 8 ? ba : NULL, n, d_in, d_out);
            fz_compare("y", y, at, ref, bound, (size_t)n * d_out, 2.0 * U * (d_in + 4));
        }
        free(ref); free(bound); free(at); free(xa); free(wa); free(ba);
    } else {
        fz_out_check(&oy, 1, "y");
    }
    fz_out_free(&oy);
}

/* attn_project_ex: attn_project's inputs, plus n up to 12 (across the few-row cutoff), n_threads (negative
   must be rejected), a split of up to 4 slices (all run, in reverse order; an index outside the split must
   be rejected) and a workspace that is none, the size reported, or one byte short (rejected when a
   workspace is needed). The result must equal attn_project's bitwise, whatever the threads and split. */
static void fuzz_project_ex(fz *f)
{
    const int n = fz_range(f, 1, 12), d_in = fz_range(f, 1, 40), d_out = fz_range(f, 1, 200);
    const int layout = fz_range(f, 0, 2), out_in = layout == ATTN_LAYOUT_OUT_IN, flags = (int)fz_u8(f);
    const int threads = fz_range(f, -1, 3), split = fz_range(f, 0, 4), bad_index = fz_range(f, 0, 15) == 0;
    const int ws_mode = fz_range(f, 0, 2);
    const ptrdiff_t xs = d_in + fz_range(f, -1, 2), ys = d_out + fz_range(f, -1, 2);
    const ptrdiff_t ws = (out_in ? d_in : d_out) + fz_range(f, -1, 2);
    const int w_rows = out_in ? d_out : d_in;
    const size_t nx = (size_t)(n - 1) * (size_t)(xs > 0 ? xs : 0) + (size_t)d_in;
    const size_t nw = (size_t)(w_rows - 1) * (size_t)(ws > 0 ? ws : 0) + (size_t)(out_in ? d_in : d_out);
    const size_t ny = (size_t)(n - 1) * (size_t)(ys > 0 ? ys : 0) + (size_t)d_out;
    float *x, *w, *b, *y, *y_ref;
    attn_options opt;
    fz_out oy;
    attn_result r = ATTN_OK, r_ref;
    int s;
    x = fz_tensor(f, nx, 2.0f, 0); w = fz_tensor(f, nw, 2.0f, 0); b = fz_tensor(f, (size_t)d_out, 2.0f, 0);
    fz_patch(f);
    y = fz_out_alloc(&oy, ny);
    y_ref = (float *)malloc(ny * sizeof(float));
    if (!y_ref) abort();
    memcpy(y_ref, y, ny * sizeof(float));
    r_ref = attn_project(flags & 1 ? NULL : y_ref, ys, flags & 2 ? NULL : x, xs, flags & 4 ? NULL : w, ws,
                         (attn_layout)layout, flags & 8 ? b : NULL, n, d_in, d_out);
    memset(&opt, 0, sizeof opt);
    opt.n_threads = threads;
    opt.split_count = split;
    for (s = split > 0 ? split - 1 : 0; s >= 0; --s) {
        size_t need = 0;
        char *mem = NULL;
        attn_result rs;
        opt.split_index = bad_index ? split : s;
        if (attn_project_workspace_size(&need, n, d_in, d_out, &opt) == ATTN_OK && ws_mode > 0 &&
            !(mem = (char *)malloc(need + 1)))
            abort();
        rs = attn_project_ex(flags & 1 ? NULL : y, ys, flags & 2 ? NULL : x, xs, flags & 4 ? NULL : w, ws,
                             (attn_layout)layout, flags & 8 ? b : NULL, n, d_in, d_out, &opt,
                             mem ? mem + 1 : NULL, ws_mode == 2 && need > 0 ? need - 1 : need);
        free(mem);
        if (s == (split > 0 ? split - 1 : 0)) r = rs;
        else if (rs != r) { fprintf(stderr, "fuzz: slice %d returned %d, the first %d\n", s, (int)rs, (int)r); abort(); }
    }
    if (r == ATTN_OK) {
        attn_stride vw = {0, 0, 0};
        vw.row = ys;
        if (r_ref != ATTN_OK) { fprintf(stderr, "fuzz: attn_project_ex accepted what attn_project refused\n"); abort(); }
        fz_out_mark(&oy, vw, 1, 1, n, d_out);
        fz_out_check(&oy, 0, "y");
        if (memcmp(y, y_ref, ny * sizeof(float)) != 0) {
            fprintf(stderr, "fuzz: attn_project_ex (threads %d, split %d) differs from attn_project\n", threads, split);
            abort();
        }
    } else {
        fz_out_check(&oy, 1, "y");
    }
    free(y_ref);
    fz_out_free(&oy);
}

static void fuzz_scores(fz *f)
{
    const int nq = fz_range(f, 1, 40), nk = fz_range(f, 1, 70), dk = fz_range(f, 1, 40), flags = (int)fz_u8(f);
    const ptrdiff_t qs = dk + fz_range(f, -1, 2), ks = dk + fz_range(f, -1, 2), ss = nk + fz_range(f, -1, 2);
    const float scale = fz_scale(f);
    const size_t nqf = (size_t)(nq - 1) * (size_t)(qs > 0 ? qs : 0) + (size_t)dk;
    const size_t nkf = (size_t)(nk - 1) * (size_t)(ks > 0 ? ks : 0) + (size_t)dk;
    float *q, *k, *s;
    fz_out os;
    attn_result r;
    q = fz_tensor(f, nqf, 2.0f, 0); k = fz_tensor(f, nkf, 2.0f, 0);
    fz_patch(f);
    s = fz_out_alloc(&os, (size_t)(nq - 1) * (size_t)(ss > 0 ? ss : 0) + (size_t)nk);
    r = attn_scores(flags & 1 ? NULL : s, ss, flags & 2 ? NULL : q, qs, flags & 4 ? NULL : k, ks, nq, nk, dk, scale);
    if (r == ATTN_OK) {
        const double sc = scale != 0.0f ? scale : 1.0 / sqrt((double)dk);
        double *ref = ref_dalloc((size_t)nq * nk), *bound = ref_dalloc((size_t)nq * nk);
        size_t *at = (size_t *)malloc(sizeof(size_t) * (size_t)nq * (size_t)nk);
        int i, j, c;
        attn_stride v = {0, 0, ss};
        fz_out_mark(&os, v, 1, 1, nq, nk);
        fz_out_check(&os, 0, "s");
        for (i = 0; i < nq; ++i)
            for (j = 0; j < nk; ++j) {
                double acc = 0.0, mag = 0.0;
                for (c = 0; c < dk; ++c) {
                    acc += (double)q[i * qs + c] * k[j * ks + c];
                    mag += fabs((double)q[i * qs + c] * k[j * ks + c]);
                }
                ref[i * nk + j] = sc * acc; bound[i * nk + j] = fabs(sc) * mag;
                at[i * nk + j] = (size_t)(i * ss + j);
            }
        g_floor = 1e-30 + fabs(sc) * (dk + 2) * 1.5e-45;
        if (f->comparable) fz_compare("s", s, at, ref, bound, (size_t)nq * nk, 2.0 * U * (dk + 4));
        free(ref); free(bound); free(at);
    } else {
        fz_out_check(&os, 1, "s");
    }
    fz_out_free(&os);
}

static void fuzz_softmax(fz *f)
{
    const int rows = fz_range(f, 1, 9), cols = fz_range(f, 1, 70), flags = (int)fz_u8(f);
    const ptrdiff_t ss = cols + fz_range(f, -1, 2), ps = flags & 16 ? ss : cols + fz_range(f, -1, 2);
    const size_t ns = (size_t)(rows - 1) * (size_t)(ss > 0 ? ss : 0) + (size_t)cols;
    const int in_place = (flags & 16) != 0; /* p == s, same stride */
    float *s, *p, *lse;
    fz_out op, ol;
    attn_result r;
    s = fz_tensor(f, ns, 8.0f, 1);
    fz_patch(f);
    memset(&op, 0, sizeof op);
    if (in_place) { /* the input doubles as the output: its copy is the reference's input */
        float *s2 = fz_abs_copy(s, ns); /* placeholder allocation of the right size */
        memcpy(s2, s, ns * sizeof(float));
        p = s; s = s2; /* s2 is freed below */
    } else {
        p = fz_out_alloc(&op, (size_t)(rows - 1) * (size_t)(ps > 0 ? ps : 0) + (size_t)cols);
    }
    lse = fz_out_alloc(&ol, (size_t)rows);
    r = attn_softmax(flags & 1 ? NULL : p, ps, flags & 2 ? NULL : (in_place ? p : s), ss, rows, cols, flags & 4 ? NULL : lse);
    if (r == ATTN_OK) {
        int i, j;
        attn_stride v = {0, 0, ps};
        double *row = ref_dalloc((size_t)cols), *pr = ref_dalloc((size_t)cols), l, m;
        if (!in_place) { fz_out_mark(&op, v, 1, 1, rows, cols); fz_out_check(&op, 0, "p"); }
        if (!(flags & 4)) { fz_out_mark(&ol, attn_stride_bhnd(1, 1, rows), 1, 1, 1, rows); }
        fz_out_check(&ol, 0, "lse");
        for (i = 0; f->comparable && i < rows; ++i) {
            double pb[70];
            size_t at[70];
            double lb;
            m = -INFINITY;
            for (j = 0; j < cols; ++j) { row[j] = s[i * ss + j]; m = row[j] > m ? row[j] : m; }
            ref_softmax_row(pr, &l, row, cols);
            for (j = 0; j < cols; ++j) {
                pb[j] = (isinf(row[j]) ? 0.0 : pr[j] * (fabs(row[j] - m) + cols + 8)) + 1e-37 / (4.0 * U);
                at[j] = (size_t)(i * ps + j);
            }
            fz_compare("p", p, at, pr, pb, (size_t)cols, 4.0 * U);
            lb = fabs(l) + cols + 8;
            if (!(flags & 4)) fz_compare("lse", lse + i, NULL, &l, &lb, 1, 4.0 * U);
        }
        free(row); free(pr);
    } else {
        if (!in_place) fz_out_check(&op, 1, "p");
        else if (memcmp(p, s, ns * sizeof(float)) != 0) { fprintf(stderr, "fuzz: in-place s written by a failed call\n"); abort(); }
        fz_out_check(&ol, 1, "lse");
    }
    if (in_place) free(s);
    fz_out_free(&op); fz_out_free(&ol);
}

static void fuzz_weighted_sum(fz *f)
{
    const int nq = fz_range(f, 1, 9), nk = fz_range(f, 1, 70), dv = fz_range(f, 1, 70), flags = (int)fz_u8(f);
    const ptrdiff_t ps = nk + fz_range(f, -1, 2), vs = dv + fz_range(f, -1, 2), os = dv + fz_range(f, -1, 2);
    const size_t np = (size_t)(nq - 1) * (size_t)(ps > 0 ? ps : 0) + (size_t)nk;
    const size_t nv = (size_t)(nk - 1) * (size_t)(vs > 0 ? vs : 0) + (size_t)dv;
    float *p, *v, *o;
    fz_out oo;
    attn_result r;
    p = fz_tensor(f, np, 1.0f, 0); v = fz_tensor(f, nv, 2.0f, 0);
    fz_patch(f);
    o = fz_out_alloc(&oo, (size_t)(nq - 1) * (size_t)(os > 0 ? os : 0) + (size_t)dv);
    r = attn_weighted_sum(flags & 1 ? NULL : o, os, flags & 2 ? NULL : p, ps, flags & 4 ? NULL : v, vs, nq, nk, dv);
    if (r == ATTN_OK) {
        double *ref = ref_dalloc((size_t)nq * dv), *bound = ref_dalloc((size_t)nq * dv);
        size_t *at = (size_t *)malloc(sizeof(size_t) * (size_t)nq * (size_t)dv);
        int i, j, c;
        attn_stride vw = {0, 0, os};
        fz_out_mark(&oo, vw, 1, 1, nq, dv);
        fz_out_check(&oo, 0, "o");
        for (i = 0; i < nq; ++i)
            for (c = 0; c < dv; ++c) {
                double acc = 0.0, mag = 0.0;
                for (j = 0; j < nk; ++j) {
                    acc += (double)p[i * ps + j] * v[j * vs + c];
                    mag += fabs((double)p[i * ps + j] * v[j * vs + c]);
                }
                ref[i * dv + c] = acc; bound[i * dv + c] = mag;
                at[i * dv + c] = (size_t)(i * os + c);
            }
        if (f->comparable) fz_compare("o", o, at, ref, bound, (size_t)nq * dv, 2.0 * U * (nk + 4));
        free(ref); free(bound); free(at);
    } else {
        fz_out_check(&oo, 1, "o");
    }
    fz_out_free(&oo);
}

static void fuzz_merge(fz *f)
{
    const int rows = fz_range(f, 1, 9), dv = fz_range(f, 1, 40), flags = (int)fz_u8(f);
    const int alias = fz_range(f, 0, 2); /* 0: separate output; 1: o = o_a, lse = lse_a; 2: o = o_b, lse = lse_b */
    const ptrdiff_t as = dv + fz_range(f, -1, 2), bs = alias == 2 ? as : dv + fz_range(f, -1, 2);
    const ptrdiff_t os = alias == 1 ? as : alias == 2 ? bs : dv + fz_range(f, -1, 2);
    const size_t na = (size_t)(rows - 1) * (size_t)(as > 0 ? as : 0) + (size_t)dv;
    const size_t nb = (size_t)(rows - 1) * (size_t)(bs > 0 ? bs : 0) + (size_t)dv;
    float *oa, *ob, *la, *lb, *o, *l, *oa0, *ob0, *la0, *lb0;
    fz_out oo, ol;
    attn_result r;
    memset(&oo, 0, sizeof oo); memset(&ol, 0, sizeof ol);
    oa = fz_tensor(f, na, 2.0f, 0); ob = fz_tensor(f, nb, 2.0f, 0);
    la = fz_tensor(f, (size_t)rows, 8.0f, 1); lb = fz_tensor(f, (size_t)rows, 8.0f, 1);
    fz_patch(f);
    oa0 = fz_abs_copy(oa, na); memcpy(oa0, oa, na * sizeof(float)); /* the inputs before the call */
    ob0 = fz_abs_copy(ob, nb); memcpy(ob0, ob, nb * sizeof(float));
    la0 = fz_abs_copy(la, (size_t)rows); memcpy(la0, la, sizeof(float) * (size_t)rows);
    lb0 = fz_abs_copy(lb, (size_t)rows); memcpy(lb0, lb, sizeof(float) * (size_t)rows);
    if (alias == 1) { o = oa; l = la; }
    else if (alias == 2) { o = ob; l = lb; }
    else { o = fz_out_alloc(&oo, (size_t)(rows - 1) * (size_t)(os > 0 ? os : 0) + (size_t)dv); l = fz_out_alloc(&ol, (size_t)rows); }
    r = attn_merge(flags & 1 ? NULL : o, os, flags & 2 ? NULL : l, flags & 4 ? NULL : oa, as, flags & 8 ? NULL : la, ob, bs,
                   flags & 16 ? NULL : lb, rows, dv);
    if (r == ATTN_OK) {
        int i, c;
        if (!alias) {
            attn_stride v = {0, 0, os};
            fz_out_mark(&oo, v, 1, 1, rows, dv); fz_out_check(&oo, 0, "o");
            if (!(flags & 2)) fz_out_mark(&ol, attn_stride_bhnd(1, 1, rows), 1, 1, 1, rows);
            fz_out_check(&ol, 0, "lse");
        }
        for (i = 0; f->comparable && i < rows; ++i) {
            const double a = la0[i], b = lb0[i], m = a > b ? a : b;
            double ref[40], bound[40], rl, bl;
            size_t at[40];
            rl = m == -INFINITY ? -INFINITY : m + log(exp(a - m) + exp(b - m));
            for (c = 0; c < dv; ++c) {
                const double xa = oa0[i * as + c], xb = ob0[i * bs + c];
                ref[c] = m == -INFINITY ? 0.0 : (a == -INFINITY ? 0.0 : exp(a - rl) * xa) + (b == -INFINITY ? 0.0 : exp(b - rl) * xb);
                bound[c] = (fabs(xa) + fabs(xb)) * ((isinf(a) || isinf(b) ? 0.0 : fabs(a - b)) + (isinf(m) ? 0.0 : fabs(m)) + 8);
                at[c] = (size_t)(i * os + c);
            }
            fz_compare("o", o, at, ref, bound, (size_t)dv, 4.0 * U);
            bl = fabs(rl) + 8;
            if (!(flags & 2)) fz_compare("lse", l + i, NULL, &rl, &bl, 1, 4.0 * U);
        }
        /* rows with a +inf log-sum-exp (the inputs then are not all moderate): the documented rule, a
           +inf side takes all the weight and two +inf sides weigh 1:1; lse +inf */
        for (i = 0; !f->comparable && i < rows; ++i) {
            const double a = la0[i], b = lb0[i], rl = INFINITY, bl = 0.0;
            double ref[40], bound[40];
            size_t at[40];
            int ok = (a == INFINITY || b == INFINITY) && !isnan(a) && !isnan(b);
            for (c = 0; ok && c < dv; ++c) ok = fabs(oa0[i * as + c]) <= 64.0 && fabs(ob0[i * bs + c]) <= 64.0;
            if (!ok) continue;
            for (c = 0; c < dv; ++c) {
                const double xa = oa0[i * as + c], xb = ob0[i * bs + c];
                ref[c] = a == b ? 0.5 * xa + 0.5 * xb : a == INFINITY ? xa : xb;
                bound[c] = fabs(xa) + fabs(xb);
                at[c] = (size_t)(i * os + c);
            }
            fz_compare("o (+inf lse)", o, at, ref, bound, (size_t)dv, 4.0 * U);
            if (!(flags & 2)) fz_compare("lse (+inf)", l + i, NULL, &rl, &bl, 1, 0.0);
        }
    } else if (!alias) {
        fz_out_check(&oo, 1, "o"); fz_out_check(&ol, 1, "lse");
    } else if (memcmp(oa, oa0, na * sizeof(float)) || memcmp(ob, ob0, nb * sizeof(float)) ||
               memcmp(la, la0, sizeof(float) * (size_t)rows) || memcmp(lb, lb0, sizeof(float) * (size_t)rows)) {
        fprintf(stderr, "fuzz: in-place merge wrote by a failed call\n");
        abort();
    }
    free(oa0); free(ob0); free(la0); free(lb0);
    fz_out_free(&oo); fz_out_free(&ol);
}

/* attn_rope_apply in place on a fuzzed view: styles (two of them invalid), n_rot (odd, negative, past d),
   theta and freq_scale (0 = default, moderate, special values), pos0 (small, up to 2.5e6, near INT_MAX,
   negative, or NULL). x is input and output: a failed call leaves every float of it with its bits; a
   successful one leaves those outside the view with theirs and, on moderate inputs, matches ref_rope
   within a few units of roundoff of each pair's magnitude (exactly where nothing rotates). */
static void fuzz_rope(fz *f)
{
    const int B = fz_range(f, 1, 3), H = fz_range(f, 1, 4), N = fz_range(f, 1, 9), D = fz_range(f, 1, 140);
    const int flags = (int)fz_u8(f);
    unsigned u;
    int pos0[3], b, h, t, c, n_rot, half, active;
    size_t len, i, count = (size_t)B * (size_t)H * (size_t)N * (size_t)D;
    attn_rope rope;
    attn_stride s;
    attn_result r;
    float *x, *x0;
    unsigned char *in_view;
    memset(&rope, 0, sizeof rope);
    rope.style = (attn_rope_style)fz_range(f, -1, 3);
    u = fz_u8(f);
    rope.n_rot = u < 96 ? 0 : u < 224 ? 2 * (int)(u - 96) : (int)u - 226; /* 0, even up to 254, or -2..29 */
    u = fz_u8(f);
    rope.theta = u < 128 ? 0.0f : u < 240 ? (float)(u - 120) * 1000.0f : fz_special(u - 240);
    u = fz_u8(f);
    rope.freq_scale = u < 128 ? 0.0f : u < 240 ? (float)(u - 127) / 64.0f : fz_special(u - 240);
    for (b = 0; b < 3; ++b) {
        u = fz_u8(f);
        pos0[b] = u < 128 ? (int)u : u < 224 ? (int)(u - 128) * 26000 + (int)fz_u8(f)
                : u < 252 ? INT_MAX - (int)(u - 224) : -(int)(u - 251);
    }
    s = fz_view(f, B, H, N, D, &len);
    if (!len) { /* too large to allocate: must be rejected */
        float tiny[1] = {0.0f};
        if (attn_rope_apply(tiny, s, B, H, N, D, pos0, &rope) == ATTN_OK) abort();
        return;
    }
    x = fz_tensor(f, len, 4.0f, 0);
    fz_patch(f);
    x0 = (float *)malloc(len * sizeof(float));
    in_view = (unsigned char *)calloc(len, 1);
    if (!x0 || !in_view) abort();
    memcpy(x0, x, len * sizeof(float));
    r = attn_rope_apply(flags & 1 ? NULL : x, s, B, H, N, D, flags & 2 ? NULL : pos0, flags & 4 ? NULL : &rope);
    if (r != ATTN_OK) {
        if (memcmp(x, x0, len * sizeof(float)) != 0) { fprintf(stderr, "fuzz: x written by a failed call\n"); abort(); }
        free(x0); free(in_view);
        return;
    }
    for (b = 0; b < B; ++b) for (h = 0; h < H; ++h) for (t = 0; t < N; ++t) for (c = 0; c < D; ++c)
        in_view[(size_t)(b * s.batch + h * s.head + t * s.row + c)] = 1;
    for (i = 0; i < len; ++i)
        if (!in_view[i] && memcmp(x + i, x0 + i, sizeof(float)) != 0) {
            fprintf(stderr, "fuzz: x[%zu] written outside its view\n", i);
            abort();
        }
    active = !(flags & 4) && rope.style != ATTN_ROPE_NONE;
    n_rot = active ? (rope.n_rot ? rope.n_rot : D) : 0;
    half = n_rot / 2;
    if (f->comparable) {
        double *ref = ref_dalloc(count), *bound = ref_dalloc(count);
        size_t *at = (size_t *)malloc(count * sizeof(size_t));
        if (!at) abort();
        ref_rope(ref, x0, s, B, H, N, D, flags & 2 ? NULL : pos0, active ? &rope : NULL);
        i = 0;
        for (b = 0; b < B; ++b) for (h = 0; h < H; ++h) for (t = 0; t < N; ++t) for (c = 0; c < D; ++c, ++i) {
            const size_t row = (size_t)(b * s.batch + h * s.head + t * s.row);
            const int mate = c >= n_rot ? -1 : rope.style == ATTN_ROPE_GPTJ ? c ^ 1 : c < half ? c + half : c - half;
            at[i] = row + (size_t)c;
            bound[i] = mate < 0 ? 0.0 : fabs((double)x0[row + (size_t)c]) + fabs((double)x0[row + (size_t)mate]);
        }
        fz_compare("x", x, at, ref, bound, count, 4.0 * U);
        free(ref); free(bound); free(at);
    }
    free(x0); free(in_view);
}

/* ---------------------------------------------------------------------------------------------- */
/* fused attention and multi-head attention                                                       */
/* ---------------------------------------------------------------------------------------------- */

/* options shared by attn_sdpa and the multi-head calls; mask_floats etc. sized for the batch and heads */
typedef struct fz_opts {
    attn_options o;
    int *kv_len;
    unsigned char *kpm;
    int ws_mode; /* 0: NULL; 1: the reported size, misaligned; 2: one byte short */
} fz_opts;

static void fz_options(fz *f, fz_opts *fo, int B, int H, int Nq, int Nk, int Dk, int mha)
{
    attn_options *o = &fo->o;
    const int flags = (int)fz_u8(f) | (int)fz_u8(f) << 8;
    int b;
    memset(fo, 0, sizeof *fo);
    o->scale = fz_scale(f);
    if ((flags & 0x380) == 0x380) { /* a large finite scale (the vector kernels once overflowed scale * log2(e)) */
        static const float big[] = {3e38f, FLT_MAX, 2.5e38f, 1e36f};
        o->scale = big[(flags >> 10) & 3];
    }
    o->causal = (attn_causal)fz_range(f, 0, 3);
    o->n_threads = fz_range(f, -1, 3);
    if (flags & 1) { /* a split: count 1..3, index -1..count */
        o->split_count = fz_range(f, 1, 3);
        o->split_index = fz_range(f, -1, o->split_count);
    }
    if (flags & 2) { /* mask: broadcast, per batch, per head, both, or a row stride too short */
        const int kind = fz_range(f, 0, 4);
        const ptrdiff_t rs = kind == 4 ? Nk - 1 : Nk;
        o->mask_stride.row = kind == 0 ? 0 : rs;
        o->mask_stride.batch = kind == 1 || kind == 3 ? (ptrdiff_t)(kind == 3 ? H : 1) * Nq * Nk : 0;
        o->mask_stride.head = kind == 2 || kind == 3 ? (ptrdiff_t)Nq * Nk : 0;
        float *mask = fz_tensor(f, (size_t)B * H * Nq * Nk + 4, 2.0f, 1);
        o->mask = mask;
        if ((flags & 0x7000) == 0x7000) { /* every entry, or every other row, one huge value as padded rows
                                             are filled (torch.finfo.min, masked_fill(-1e9)); patches follow */
            static const float fill[] = {-FLT_MAX, -1e9f, -2.4e38f, -1e30f};
            const size_t n = (size_t)B * H * Nq * Nk + 4;
            size_t x;
            for (x = 0; x < n; ++x)
                if (!(flags & 0x8000) || (x / (size_t)Nk) % 2 == 0) mask[x] = fill[(flags >> 10) & 3];
        }
    }
    if (flags & 4) {
        fo->kv_len = (int *)malloc(sizeof(int) * (size_t)B);
        for (b = 0; b < B; ++b) /* in [0, Nk], now and then -1 or Nk + 1 (rejected) */
            fo->kv_len[b] = fz_range(f, 0, 31) == 0 ? (fz_range(f, 0, 1) ? -1 : Nk + 1) : (int)(fz_u8(f) * (unsigned)(Nk + 1) / 256u);
        o->kv_len = fo->kv_len;
    }
    if (flags & 8) {
        fo->kpm = (unsigned char *)malloc((size_t)B * Nk);
        for (b = 0; b < B * Nk; ++b) fo->kpm[b] = (unsigned char)(fz_range(f, 0, 3) == 0);
        o->key_padding_mask = fo->kpm;
    }
    o->average_weights = (flags & 16) != 0;
    fo->ws_mode = fz_range(f, 0, 2);
    if (!mha) { /* a sliding window, soft-capping, sinks: read last, so that older inputs keep their meaning */
        const int more = (int)fz_u8(f);
        if (more & 1) { /* -2 is rejected */
            o->window = 1;
            o->window_left = fz_range(f, -2, 40);
            o->window_right = fz_range(f, -2, 10);
        }
        if (more & 2) {
            static const float caps[] = {0.5f, 3.0f, 30.0f, -1.0f, INFINITY, 0.0f}; /* the last three: none or rejected */
            o->softcap = caps[fz_range(f, 0, 5)];
        }
        if (more & 4) o->sinks = fz_tensor(f, (size_t)H, 4.0f, 1); /* -inf: no sink; NaN, +inf rejected */
        if (more & 8) o->alibi_slopes = fz_tensor(f, (size_t)H, 1.0f, 0); /* NaN, +-inf rejected */
    }
    (void)Dk;
    fo->o.out_lse = (flags & 32) ? (float *)1 : NULL;     /* replaced by the caller's buffers */
    fo->o.out_weights = (flags & 64) ? (float *)1 : NULL;
}

static void fz_options_free(fz_opts *fo) { free(fo->kv_len); free(fo->kpm); }

/* ---------------------------------------------------------------------------------------------- */
/* the float64 answer on extreme inputs (issue 16): huge finite values, +-inf and -FLT_MAX masks,    */
/* large scales, long key ranges                                                                  */
/* ---------------------------------------------------------------------------------------------- */

/* The contract: every kernel path gives the float64 answer, within rounding, whenever each visible
   key's scaled logit scale*(q.k) (with the products scale*q_c and every partial sum of the dot
   product) and masked logit are finite floats, or its mask is +-inf. "Within rounding" is worked out
   per row from what float32 can know of each masked logit:
   - a logit l computed in float strays by at most e (the dot product's rounding, given by the caller);
     the kernel adds the mask in float, so its masked logit lies in [fl(l - e + m), fl(l + e + m)],
     and where both ends are one float (a huge mask swallows the logit: -FLT_MAX, -1e9) the kernel's
     value is exactly that float while float64 still sees l + m: the reference takes the float;
   - the softmax amplifies an error A in a masked logit into a relative error of about A in the
     weights, and float arithmetic on logits of size L (x * log2(e), a running max) errs by about
     L * 2^-24: L counts unless every key that matters holds the same exactly known float (a row
     masked with -FLT_MAX everywhere: any sound kernel gives every key the same weight);
   - keys more than 100 below the row's maximum weigh less than e^-70 whatever the kernel's error.
   Past an error of 30 in the logits nothing is promised (such a row checks only that the output is not
   NaN). A false alarm is a bug in this bound: the margins are wide. */

typedef struct fz_key {
    double l, e; /* the scaled logit in float64 and its float rounding bound */
    float mask;  /* additive mask entry (0: none) */
    int vis;     /* visible: not masked by kv_len, padding, causality or a -inf mask */
} fz_key;

typedef struct fz_row_res {
    double lse, lse_tol;   /* the float64 log-sum-exp and the error allowed in it */
    double rel;            /* the relative error allowed in each weight (inf: unchecked) */
    int n_vis, n_pos_inf;  /* visible keys, +inf keys */
    double E, L;           /* the logits' error bound and the magnitude that counted */
    int hull;              /* no precision promised: out is only held within the range of the values */
} fz_row_res;

static float fz_addf(float x, float y) { volatile float r = x + y; return r; } /* as in float, no contraction */
static float fz_f_down(double x) { float r = (float)x; return (double)r > x ? nextafterf(r, -INFINITY) : r; }
static float fz_f_up(double x) { float r = (float)x; return (double)r < x ? nextafterf(r, INFINITY) : r; }

/* One row of attention in float64 over n keys with value rows v + j * vs (Dv doubles, each off by at
   most v_err[j * vs + c] in the kernel; v_err NULL: exact): p[n] the weights, out[Dv] and out_tol[Dv]
   the allowed absolute error of each output. Returns 0 when the row is outside the contract. s[n] and
   r[n] are scratch. */
static int fz_row_ref(fz_row_res *res, double *p, double *out, double *out_tol, const fz_key *key, int n,
                      const double *v, const double *v_err, ptrdiff_t vs, int Dv, double *s, double *r)
{
    double M = -INFINITY, M_lo = -INFINITY, A_max = 0.0, L = 0.0, sum = 0.0, vsum = 0.0, same = 0.0;
    int j, c, all_exact = 1, have_same = 0;
    memset(res, 0, sizeof *res);
    for (c = 0; c < Dv; ++c) out[c] = out_tol[c] = 0.0;
    for (j = 0; j < n; ++j) {
        p[j] = 0.0;
        /* a key hidden by a -inf mask is hidden by adding it: a logit that may overflow float (scale * q_c
           beyond FLT_MAX, outside the contract) gives inf - inf = NaN there, as in PyTorch */
        if (!key[j].vis && key[j].mask == -INFINITY && !(fabs(key[j].l) + key[j].e <= FLT_MAX)) return 0;
        if (!key[j].vis) continue;
        if (isnan(key[j].mask) || !(fabs(key[j].l) + key[j].e <= FLT_MAX)) return 0;
        res->n_vis++;
        res->n_pos_inf += key[j].mask == INFINITY;
    }
    if (res->n_vis == 0) { res->lse = -INFINITY; return 1; } /* output 0, LSE -inf, weights 0: exact */
    if (res->n_pos_inf) { /* the +inf keys share the weight equally */
        for (j = 0; j < n; ++j) if (key[j].vis && key[j].mask == INFINITY) p[j] = 1.0 / res->n_pos_inf;
        res->lse = INFINITY;
        res->rel = 8.0 * U * (res->n_pos_inf + 16);
    } else {
        for (j = 0; j < n; ++j) { /* each masked logit: the float64 value s and its float interval */
            const fz_key *k = &key[j];
            float lo, hi;
            if (!k->vis) continue;
            lo = fz_f_down(k->l - k->e); hi = fz_f_up(k->l + k->e);
            if (k->mask != 0.0f) {
                const float wlo = fz_f_down(k->l - 2.0 * k->e - fabs(k->l)), whi = fz_f_up(k->l + 2.0 * k->e + fabs(k->l));
                lo = fz_addf(lo, k->mask); hi = fz_addf(hi, k->mask);
                if (!isfinite(lo) || !isfinite(hi)) return 0; /* the masked logit overflows float */
                /* swallowed: even twice the logit's range leaves one float */
                if (lo == hi && fz_addf(wlo, k->mask) == lo && fz_addf(whi, k->mask) == lo) { s[j] = lo; r[j] = 0.0; }
                else { s[j] = k->l + (double)k->mask; r[j] = (double)hi - lo + 2.0 * U * fabs(s[j]); }
            } else {
                s[j] = k->l;
                r[j] = lo == hi && (double)lo == k->l ? 0.0 : (double)hi - lo + 2.0 * U * fabs(s[j]);
            }
            if (s[j] > M) M = s[j];
            if (lo > M_lo) M_lo = lo;
        }
        for (j = 0; j < n; ++j) { /* the keys that matter: within 100 of the maximum */
            if (!key[j].vis) continue;
            if (s[j] + r[j] < M_lo - 100.0) continue;
            if (r[j] > A_max) A_max = r[j];
            if (fabs(s[j]) > L) L = fabs(s[j]);
            if (r[j] != 0.0 || (have_same && s[j] != same)) all_exact = 0;
            same = s[j]; have_same = 1;
        }
        if (all_exact) L = 0.0;
        res->E = 2.0 * A_max + 8.0 * U * (L + 100.0);
        res->L = L;
        for (j = 0; j < n; ++j) if (key[j].vis) sum += p[j] = exp(s[j] - M);
        for (j = 0; j < n; ++j) p[j] /= sum;
        res->lse = M + log(sum);
        res->rel = res->E > 30.0 ? INFINITY : expm1(2.0 * res->E) + 8.0 * U * (res->n_vis + 32);
        res->lse_tol = res->E + 8.0 * U * (fabs(res->lse) + res->n_vis + 32);
    }
    for (j = 0; j < n; ++j) { /* an unnormalised sum of the values that overflows float is not promised */
        double m = 0.0;
        if (!key[j].vis) continue;
        for (c = 0; c < Dv; ++c) m = fabs(v[j * vs + c]) > m ? fabs(v[j * vs + c]) : m;
        vsum += m;
    }
    res->hull = isinf(res->rel);
    for (c = 0; c < Dv; ++c) {
        double acc = 0.0, mag = 0.0, err = 0.0, vmax = 0.0, emax = 0.0, lo = INFINITY, hi = -INFINITY;
        for (j = 0; j < n; ++j) {
            const double x = key[j].vis ? v[j * vs + c] : 0.0;
            if (p[j] != 0.0) { acc += p[j] * x; mag += p[j] * fabs(x); if (v_err) err += p[j] * v_err[j * vs + c]; }
            if (fabs(x) > vmax) vmax = fabs(x);
            if (key[j].vis) { lo = x < lo ? x : lo; hi = x > hi ? x : hi; }
            if (key[j].vis && v_err && v_err[j * vs + c] > emax) emax = v_err[j * vs + c];
        }
        out[c] = acc;
        out_tol[c] = 2.0 * res->rel * mag + err * (1.0 + res->rel) + res->n_vis * 1e-30 * vmax + 1e-30;
        if (res->hull) { /* weights of any size, but weights: the output is a mean of the values */
            out[c] = lo / 2 + hi / 2;
            out_tol[c] = hi / 2 - lo / 2 + 8.0 * U * (res->n_vis + 32) * vmax + 2.0 * emax + 1e-30;
        }
        if (!(vsum <= FLT_MAX / 8)) out_tol[c] = INFINITY;
    }
    return 1;
}

/* got against the reference of one row, the row's context in the message when it fails */
static void fz_check_row(const char *what, int b, int h, int i, const fz_row_res *res, double got, double ref,
                         double tol, int at)
{
    const int ok = isnan(ref) ? isnan(got) : isinf(ref) ? got == ref : fabs(got - ref) <= tol;
    if (ok) return;
    fprintf(stderr, "fuzz: %s[%d] of batch %d head %d query %d = %.9g, float64 reference %.9g (allowed error %.3g; "
            "row: %d visible keys, %d of them +inf, logit error bound %.3g, magnitude %.3g%s)\n",
            what, at, b, h, i, got, ref, tol, res->n_vis, res->n_pos_inf, res->E, res->L,
            res->hull ? "; no precision promised, so the reference is the middle of the values' range" : "");
    abort();
}

/* no NaN anywhere, and every tensor finite but the masks (which may hold +-inf): the inputs on which
   the float64 answer is compared row by row (fz_row_ref says which rows) */
static int fz_no_nan(const fz *f)
{
    int i;
    size_t j;
    for (i = 0; i < f->n_t; ++i)
        for (j = 0; j < f->len[i]; ++j)
            if (isnan(f->t[i][j]) || (!f->neg_inf_ok[i] && isinf(f->t[i][j]))) return 0;
    return 1;
}

/* attn_sdpa's out, lse and weights against fz_row_ref, row by row, on any input without NaN whose q, k
   and v are finite (masks may hold anything else): the rows inside the contract are compared, the
   others skipped */
static void fz_sdpa_extreme(const attn_dims *d, const attn_options *o, const float *q, attn_stride qs, const float *k,
                            attn_stride ks, const float *v, attn_stride vs, const float *out, attn_stride os)
{
    const int B = d->batch, Hq = d->n_heads, Hkv = d->n_kv_heads > 0 ? d->n_kv_heads : Hq, Nq = d->n_q, Nk = d->n_kv;
    const int Dk = d->d_k, Dv = d->d_v ? d->d_v : Dk;
    const double sc = o->scale != 0.0f ? o->scale : 1.0 / sqrt((double)Dk);
    const ptrdiff_t mrow = o->mask_stride.row ? o->mask_stride.row : Nk;
    const size_t per = (size_t)Nq * Nk;
    fz_key *key = (fz_key *)malloc(sizeof(fz_key) * (size_t)Nk);
    double *vd = ref_dalloc((size_t)Nk * Dv), *p = ref_dalloc((size_t)Nk), *ro = ref_dalloc((size_t)Dv);
    double *rt = ref_dalloc((size_t)Dv), *s = ref_dalloc((size_t)Nk), *r = ref_dalloc((size_t)Nk);
    double *avg = ref_dalloc((size_t)B * per), *avg_tol = ref_dalloc((size_t)B * per);
    unsigned char *avg_ok = (unsigned char *)malloc((size_t)B * Nq + 1);
    fz_row_res res;
    int b, h, i, j, c;
    if (!key || !avg_ok) abort();
    memset(avg_ok, 1, (size_t)B * Nq + 1);
    for (b = 0; b < B; ++b)
        for (h = 0; h < Hq; ++h) {
            const int hk = h / (Hq / Hkv);
            for (j = 0; j < Nk; ++j)
                for (c = 0; c < Dv; ++c) vd[(size_t)j * Dv + c] = v[b * vs.batch + hk * vs.head + j * vs.row + c];
            for (i = 0; i < Nq; ++i) {
                const float *qi = q + b * qs.batch + h * qs.head + i * qs.row;
                const size_t row = ((size_t)b * Hq + h) * Nq + i;
                for (j = 0; j < Nk; ++j) {
                    const float *kj = k + b * ks.batch + hk * ks.head + j * ks.row;
                    double dot = 0.0, mag = 0.0, qmax = 0.0, kmax = 0.0;
                    fz_key *kk = &key[j];
                    for (c = 0; c < Dk; ++c) {
                        dot += (double)qi[c] * kj[c];
                        mag += fabs((double)qi[c] * kj[c]);
                        if (fabs(qi[c]) > qmax) qmax = fabs(qi[c]);
                        if (fabs(kj[c]) > kmax) kmax = fabs(kj[c]);
                    }
                    kk->l = sc * dot;
                    /* rounding of the products and sums in any order, and gradual underflow (each product
                       of small values exact to 2^-149 only, before or after the scale) */
                    kk->e = 2.0 * (Dk + 4) * U * fabs(sc) * mag + 2.0 * (Dk + 1) * (fabs(sc) + kmax + 1.0) * 1.5e-45;
                    /* scale * q_c and every partial sum, scaled or not, must be finite floats */
                    if (!(fabs(sc) * qmax <= FLT_MAX && mag <= FLT_MAX / 2 && fabs(sc) * mag * (1.0 + 4.0 * (Dk + 4) * U) <= FLT_MAX))
                        kk->e = INFINITY;
                    kk->mask = o->mask ? o->mask[b * o->mask_stride.batch + h * o->mask_stride.head + i * mrow + j] : 0.0f;
                    kk->vis = kk->mask != -INFINITY && !(o->kv_len && j >= o->kv_len[b]) &&
                              !(o->key_padding_mask && o->key_padding_mask[b * Nk + j]) &&
                              !(o->causal == ATTN_CAUSAL_TOP_LEFT && j > i) &&
                              !(o->causal == ATTN_CAUSAL_BOTTOM_RIGHT && j > i + (o->kv_len ? o->kv_len[b] : Nk) - Nq);
                }
                if (!fz_row_ref(&res, p, ro, rt, key, Nk, vd, NULL, Dv, Dv, s, r)) { avg_ok[b * Nq + i] = 0; continue; }
                for (c = 0; c < Dv; ++c)
                    fz_check_row("out", b, h, i, &res, out[b * os.batch + h * os.head + i * os.row + c], ro[c], rt[c], c);
                if (o->out_lse) fz_check_row("lse", b, h, i, &res, o->out_lse[row], res.lse, res.lse_tol, 0);
                for (j = 0; o->out_weights && j < Nk; ++j) {
                    const double tol = isinf(res.rel) ? 1.0 + 1e-6 : 2.0 * res.rel * p[j] + 1e-30; /* any weight */
                    if (!o->average_weights) fz_check_row("weights", b, h, i, &res, o->out_weights[row * Nk + j], p[j], tol, j);
                    avg[b * per + (size_t)i * Nk + j] += p[j] / Hq;
                    avg_tol[b * per + (size_t)i * Nk + j] += tol / Hq;
                }
            }
        }
    for (b = 0; o->out_weights && o->average_weights && b < B; ++b) /* the mean over heads, where every head counts */
        for (i = 0; i < Nq; ++i)
            for (j = 0; avg_ok[b * Nq + i] && j < Nk; ++j)
                fz_check_row("averaged weights", b, -1, i, &res, o->out_weights[b * per + (size_t)i * Nk + j],
                             avg[b * per + (size_t)i * Nk + j], avg_tol[b * per + (size_t)i * Nk + j] + 8.0 * U, j);
    free(key); free(vd); free(p); free(ro); free(rt); free(s); free(r); free(avg); free(avg_tol); free(avg_ok);
}

/* x [n] stored as type t (float32: a copy) into a new buffer, and back into a new float buffer *wide. */
static void *fz_store_as(float **wide, const float *x, size_t n, attn_dtype t)
{
    void *st = malloc((n ? n : 1) * sizeof(float));
    *wide = (float *)malloc((n ? n : 1) * sizeof(float));
    if (!st || !*wide) abort();
    if (t == ATTN_F16) { attn_f32_to_f16((unsigned short *)st, x, n); attn_f16_to_f32(*wide, (const unsigned short *)st, n); }
    else if (t == ATTN_BF16) { attn_f32_to_bf16((unsigned short *)st, x, n); attn_bf16_to_f32(*wide, (const unsigned short *)st, n); }
    else { memcpy(st, x, n * sizeof(float)); memcpy(*wide, x, n * sizeof(float)); }
    return st;
}

/* attn_sdpa once more with float32, float16 or bfloat16 q, k, v and out (whole views converted, padding
   too; the types from the tensor stream's state, not from more input bytes): bitwise the float32 call on
   the stored values widened back, its out rounded to the out type -- except with bfloat16 q, k and v on a
   CPU where vdpbf16ps runs (attn_simd_bf16dot), compared where fuzz_sdpa compares against float64 (tol > 0:
   comparable inputs, a moderate scale) within P's rounding to
   bfloat16 (2^-9 max|v|) plus the out's own rounding and twice the float32 bound, tol max|v|. */
static void fz_sdpa_types(const fz *f, const attn_dims *d, const attn_options *o, const float *q, attn_stride qs,
                          size_t nq_f, const float *k, attn_stride ks, size_t nk_f, const float *v, attn_stride vs,
                          size_t nv_f, attn_stride os, size_t no_f, double tol)
{
    const unsigned pick = (unsigned)(f->rng >> 33);
    const attn_dtype qt = (attn_dtype)(pick % 3), kt = (attn_dtype)(pick / 3 % 3), vt = (attn_dtype)(pick / 9 % 3);
    const attn_dtype out_t = (attn_dtype)(pick / 27 % 3);
    const int dot = qt == ATTN_BF16 && kt == ATTN_BF16 && vt == ATTN_BF16 && d->d_k % 2 == 0 && attn_simd_bf16dot();
    const int Dv = d->d_v ? d->d_v : d->d_k, Hkv = d->n_kv_heads ? d->n_kv_heads : d->n_heads;
    float *qw, *kw, *vw, *o16 = (float *)calloc(no_f, sizeof(float)), *o32 = (float *)calloc(no_f, sizeof(float));
    void *q16 = fz_store_as(&qw, q, nq_f, qt), *k16 = fz_store_as(&kw, k, nk_f, kt), *v16 = fz_store_as(&vw, v, nv_f, vt);
    const float vmax = fz_maxabs(vw, nv_f);
    attn_options t = *o;
    int b, h, i, c;
    (void)Hkv;
    if (!o16 || !o32) abort();
    t.split_count = t.split_index = 0; t.out_lse = NULL; t.out_weights = NULL;
    t.q_type = qt; t.k_type = kt; t.v_type = vt; t.out_type = out_t;
    if (attn_sdpa(o16, os, q16, qs, k16, ks, v16, vs, d, &t, NULL, 0) != ATTN_OK) abort();
    t.q_type = t.k_type = t.v_type = t.out_type = ATTN_F32;
    if (attn_sdpa(o32, os, qw, qs, kw, ks, vw, vs, d, &t, NULL, 0) != ATTN_OK) abort();
    for (b = 0; b < d->batch; ++b) for (h = 0; h < d->n_heads; ++h) for (i = 0; i < d->n_q; ++i) for (c = 0; c < Dv; ++c) {
        const size_t e = (size_t)(b * os.batch + h * os.head + i * os.row + c);
        float got, want = o32[e];
        unsigned short bits;
        if (out_t == ATTN_F32) got = o16[e];
        else { /* element e of a 16-bit out, and the float32 result rounded the same way */
            memcpy(&bits, (const unsigned short *)(const void *)o16 + e, sizeof bits);
            if (out_t == ATTN_F16) { attn_f16_to_f32(&got, &bits, 1); attn_f32_to_f16(&bits, &want, 1); attn_f16_to_f32(&want, &bits, 1); }
            else { attn_bf16_to_f32(&got, &bits, 1); attn_f32_to_bf16(&bits, &want, 1); attn_bf16_to_f32(&want, &bits, 1); }
        }
        if (dot) {
            if (tol > 0.0 && !(fabs((double)got - o32[e]) <= (1.0 / 512.0 + 2.0 * tol) * vmax + fabs(o32[e]) / 128.0)) {
                fprintf(stderr, "fuzz: bf16 dot products: out[%zu] = %.9g, float32 %.9g (max|v| %g)\n", e, got, o32[e], vmax);
                abort();
            }
        } else if (memcmp(&got, &want, sizeof got) != 0 && !(isnan(got) && isnan(want))) {
            fprintf(stderr, "fuzz: q %d k %d v %d out %d: out[%zu] = %.9g, the float32 call's %.9g\n", (int)qt, (int)kt,
                    (int)vt, (int)out_t, e, got, want);
            abort();
        }
    }
    free(qw); free(kw); free(vw); free(q16); free(k16); free(v16); free(o16); free(o32);
}

static void fuzz_sdpa(fz *f)
{
    attn_dims d;
    fz_opts fo;
    attn_options *o = &fo.o;
    attn_stride qs, ks, vs, os;
    size_t nq_f, nk_f, nv_f, no_f, need = 0;
    int Hkv, Dv, null_mask, long_keys;
    float *q, *k, *v;
    fz_out oo, ol, ow;
    attn_result r, rw;
    char *ws = NULL;
    void *ws_arg = NULL;
    memset(&oo, 0, sizeof oo); memset(&ol, 0, sizeof ol); memset(&ow, 0, sizeof ow);
    d.batch = fz_range(f, 1, 2);
    Hkv = fz_range(f, 1, 2);
    d.n_heads = Hkv * fz_range(f, 1, 3);
    d.n_kv_heads = Hkv == d.n_heads && fz_range(f, 0, 1) ? 0 : Hkv;
    if (fz_range(f, 0, 15) == 0) d.n_kv_heads = fz_range(f, -1, 4); /* maybe not a divisor */
    long_keys = fz_range(f, 0, 15) == 0; /* decoding over more than 2048 keys: key chunks */
    d.n_q = long_keys ? fz_range(f, 1, 9) : fz_range(f, 1, 40);
    d.n_kv = long_keys ? fz_range(f, 2040, 2100) : fz_range(f, 1, 70);
    if (long_keys && d.n_kv > 2096) d.n_kv += 2048; /* now and then three chunks */
    d.d_k = fz_range(f, 1, 20);
    d.d_v = fz_range(f, 0, 20);
    if (fz_range(f, 0, 31) == 0) d.n_q = fz_range(f, -1, 0);
    Hkv = d.n_kv_heads > 0 ? d.n_kv_heads : d.n_heads;
    if (d.n_q <= 0 || Hkv <= 0) { /* only the validation runs: tiny buffers */
        float x[4] = {0, 0, 0, 0};
        attn_stride s = {0, 0, 64};
        if (attn_sdpa(x, s, x, s, x, s, x, s, &d, NULL, NULL, 0) == ATTN_OK) abort();
        return;
    }
    Dv = d.d_v ? d.d_v : d.d_k;
    null_mask = (int)fz_u8(f);
    qs = fz_view(f, d.batch, d.n_heads, d.n_q, d.d_k, &nq_f);
    ks = fz_view(f, d.batch, Hkv, d.n_kv, d.d_k, &nk_f);
    vs = fz_view(f, d.batch, Hkv, d.n_kv, Dv, &nv_f);
    os = fz_view(f, d.batch, d.n_heads, d.n_q, Dv, &no_f);
    fz_options(f, &fo, d.batch, d.n_heads, d.n_q, d.n_kv, d.d_k, 0);
    q = fz_tensor(f, nq_f, 2.0f, 0); k = fz_tensor(f, nk_f, 2.0f, 0); v = fz_tensor(f, nv_f, 2.0f, 0);
    fz_patch(f);
    fz_out_alloc(&oo, no_f ? no_f : 1);
    if (o->out_lse) o->out_lse = fz_out_alloc(&ol, (size_t)d.batch * d.n_heads * d.n_q);
    if (o->out_weights) o->out_weights = fz_out_alloc(&ow, (size_t)d.batch * (o->average_weights ? 1 : d.n_heads) * d.n_q * d.n_kv);
    rw = attn_sdpa_workspace_size(&need, &d, o);
    if (fo.ws_mode && rw == ATTN_OK) {
        ws = (char *)malloc(need + 1);
        ws_arg = ws + 1;
    }
    r = attn_sdpa(null_mask & 1 ? NULL : oo.p, os, null_mask & 2 ? NULL : q, qs, null_mask & 4 ? NULL : k, ks,
                  null_mask & 8 ? NULL : v, vs, null_mask & 16 ? NULL : &d, o, ws_arg,
                  fo.ws_mode == 2 ? need - 1 : need);
    if (r == ATTN_OK && (no_f == 0 || nq_f == 0 || nk_f == 0 || nv_f == 0 || rw != ATTN_OK || fo.ws_mode == 2)) {
        fprintf(stderr, "fuzz: attn_sdpa accepted a view too large to exist, or too small a workspace\n");
        abort();
    }
    if (r == ATTN_OK && o->split_count > 0) { /* the other slices, to complete the output */
        const int mine = o->split_index;
        for (o->split_index = 0; o->split_index < o->split_count; ++o->split_index)
            if (o->split_index != mine &&
                attn_sdpa(oo.p, os, q, qs, k, ks, v, vs, &d, o, ws_arg, need) != ATTN_OK) abort();
    }
    if (r == ATTN_OK) {
        const size_t n_out = (size_t)d.batch * d.n_heads * d.n_q, n_w = n_out * (size_t)d.n_kv;
        double *ref = ref_dalloc(n_out * Dv), *bound = ref_dalloc(n_out * Dv), *rl = ref_dalloc(n_out);
        double *rw_ = ref_dalloc(n_w), *bl = ref_dalloc(n_out), *bw = ref_dalloc(n_w);
        size_t *at = (size_t *)malloc(sizeof(size_t) * n_out * (size_t)Dv);
        double tol_cmp = 0.0; /* comparable inputs: the relative bound of out against float64 */
        int b, h, i, c;
        fz_out_mark(&oo, os, d.batch, d.n_heads, d.n_q, Dv);
        fz_out_check(&oo, 0, "out");
        if (ol.p) { fz_out_mark(&ol, attn_stride_bhnd(1, 1, (int)ol.len), 1, 1, 1, (int)ol.len); fz_out_check(&ol, 0, "lse"); }
        if (ow.p) { memset(ow.in_view, 1, ow.len); fz_out_check(&ow, 0, "weights"); }
        if (f->comparable && fabsf(o->scale) <= 1e30f) { /* moderate: one bound for the whole call */
            ref_opts ro;
            float *va = fz_abs_copy(v, nv_f);
            const double sc = o->scale != 0.0f ? o->scale : 1.0 / sqrt((double)d.d_k);
            const double s_abs = fabs(sc) * d.d_k * fz_maxabs(q, nq_f) * fz_maxabs(k, nk_f) +
                                 (o->mask ? fz_maxabs(o->mask, (size_t)d.batch * d.n_heads * d.n_q * d.n_kv + 4) : 0.0f) +
                                 (o->sinks ? fz_maxabs(o->sinks, (size_t)d.n_heads) : 0.0f) +
                                 (o->alibi_slopes ? fz_maxabs(o->alibi_slopes, (size_t)d.n_heads) * (d.n_q + d.n_kv) : 0.0f);
            const double tol = 4.0 * U * ((d.d_k + 4) * (s_abs + 1.0) + d.n_kv + 16);
            tol_cmp = tol;
            memset(&ro, 0, sizeof ro);
            ro.scale = sc; ro.causal = o->causal; ro.mask = o->mask; ro.mask_s = o->mask_stride;
            if (!ro.mask_s.row) ro.mask_s.row = d.n_kv;
            ro.kv_len = o->kv_len; ro.kpm = o->key_padding_mask;
            ro.window = o->window; ro.window_left = o->window_left; ro.window_right = o->window_right;
            ro.softcap = o->softcap; ro.sinks = o->sinks; ro.alibi = o->alibi_slopes;
            ref_sdpa(ref, rl, rw_, q, qs, k, ks, v, vs, &d, &ro);
            ref_sdpa(bound, NULL, bw, q, qs, k, ks, va, vs, &d, &ro);
            for (b = 0; b < d.batch; ++b) for (h = 0; h < d.n_heads; ++h) for (i = 0; i < d.n_q; ++i) for (c = 0; c < Dv; ++c)
                at[(((size_t)b * d.n_heads + h) * d.n_q + i) * Dv + c] = (size_t)(b * os.batch + h * os.head + i * os.row + c);
            fz_compare("out", oo.p, at, ref, bound, n_out * Dv, tol);
            for (i = 0; i < (int)n_out; ++i) bl[i] = 1.0 + fabs(rl[i]);
            if (ol.p) fz_compare("lse", ol.p, NULL, rl, bl, n_out, tol);
            if (ow.p && !o->average_weights) fz_compare("weights", ow.p, NULL, rw_, rw_, n_w, tol);
            if (ow.p && o->average_weights) { /* the mean over heads, per batch */
                const size_t per = (size_t)d.n_q * d.n_kv;
                double *avg = ref_dalloc((size_t)d.batch * per);
                size_t j;
                for (b = 0; b < d.batch; ++b) for (h = 0; h < d.n_heads; ++h) for (j = 0; j < per; ++j)
                    avg[b * per + j] += rw_[((size_t)b * d.n_heads + h) * per + j] / d.n_heads;
                fz_compare("weights", ow.p, NULL, avg, avg, (size_t)d.batch * per, tol + 8.0 * U);
                free(avg);
            }
            free(va);
        }
        if (fz_no_nan(f) && !o->window && o->softcap == 0.0f && !o->sinks && !o->alibi_slopes) /* its row reference has none */
            fz_sdpa_extreme(&d, o, q, qs, k, ks, v, vs, oo.p, os);
        fz_sdpa_types(f, &d, o, q, qs, nq_f, k, ks, nk_f, v, vs, nv_f, os, no_f, tol_cmp);
        free(ref); free(bound); free(rl); free(rw_); free(bl); free(bw); free(at);
    } else {
        fz_out_check(&oo, 1, "out"); fz_out_check(&ol, 1, "lse"); fz_out_check(&ow, 1, "weights");
    }
    free(ws);
    fz_out_free(&oo); fz_out_free(&ol); fz_out_free(&ow);
    fz_options_free(&fo);
}

/* fuzz_sdpa_backward: attn_sdpa (for out and lse) then attn_sdpa_backward on the same fuzzed views and
   options, whose out_weights and splits it must reject and whose out_lse it must ignore: an error leaves
   dq, dk, dv and dsinks untouched; a success writes only inside their views and, on moderate inputs with a
   successful forward, matches ref_sdpa_backward within absolute bounds from the inputs' magnitudes: an
   element of dS = P (dP - D) carries ~(|s| + Dv) U |dO| |V| of rounding (the scores' relative error in P,
   the roundings of dP and of D = dO . O), summed over up to Nk keys into dq (times scale |K|) and Nq x
   group queries into dk (times scale |Q|); dv sums P |dO| with P's relative error. */
static void fuzz_sdpa_backward(fz *f)
{
    attn_dims d;
    fz_opts fo;
    attn_options *o = &fo.o, fwd;
    attn_stride qs, ks, vs, os, dqs, dks, dvs;
    size_t nq_f, nk_f, nv_f, no_f, ndq_f, ndk_f, ndv_f, need = 0, n_lse;
    int Hkv, Dv, null_mask;
    float *q, *k, *v, *dout, *out, *lse;
    fz_out oq, ok, ov, osk;
    attn_result r, rf, rw;
    char *ws = NULL;
    void *ws_arg = NULL;
    d.batch = fz_range(f, 1, 2);
    Hkv = fz_range(f, 1, 2);
    d.n_heads = Hkv * fz_range(f, 1, 3);
    d.n_kv_heads = Hkv == d.n_heads && fz_range(f, 0, 1) ? 0 : Hkv;
    if (fz_range(f, 0, 15) == 0) d.n_kv_heads = fz_range(f, -1, 4); /* maybe not a divisor */
    d.n_q = fz_range(f, 1, 80);
    d.n_kv = fz_range(f, 1, 80);
    d.d_k = fz_range(f, 1, 20);
    d.d_v = fz_range(f, 0, 20);
    if (fz_range(f, 0, 31) == 0) d.n_q = fz_range(f, -1, 0);
    Hkv = d.n_kv_heads > 0 ? d.n_kv_heads : d.n_heads;
    if (d.n_q <= 0 || Hkv <= 0) { /* only the validation runs: tiny buffers */
        float x[4] = {0, 0, 0, 0};
        attn_stride s = {0, 0, 64};
        if (attn_sdpa_backward(x, s, x, s, x, s, NULL, x, s, x, s, x, s, x, s, x, s, x, &d, NULL, NULL, 0) == ATTN_OK)
            abort();
        return;
    }
    Dv = d.d_v ? d.d_v : d.d_k;
    null_mask = (int)fz_u8(f);
    qs = fz_view(f, d.batch, d.n_heads, d.n_q, d.d_k, &nq_f);
    ks = fz_view(f, d.batch, Hkv, d.n_kv, d.d_k, &nk_f);
    vs = fz_view(f, d.batch, Hkv, d.n_kv, Dv, &nv_f);
    os = fz_view(f, d.batch, d.n_heads, d.n_q, Dv, &no_f); /* out and dout */
    dqs = fz_view(f, d.batch, d.n_heads, d.n_q, d.d_k, &ndq_f);
    dks = fz_view(f, d.batch, Hkv, d.n_kv, d.d_k, &ndk_f);
    dvs = fz_view(f, d.batch, Hkv, d.n_kv, Dv, &ndv_f);
    fz_options(f, &fo, d.batch, d.n_heads, d.n_q, d.n_kv, d.d_k, 0);
    q = fz_tensor(f, nq_f, 2.0f, 0); k = fz_tensor(f, nk_f, 2.0f, 0); v = fz_tensor(f, nv_f, 2.0f, 0);
    dout = fz_tensor(f, no_f, 1.0f, 0);
    fz_patch(f);
    n_lse = (size_t)d.batch * (size_t)d.n_heads * (size_t)d.n_q;
    out = (float *)calloc(no_f ? no_f : 1, sizeof(float));
    lse = (float *)calloc(n_lse, sizeof(float));
    if (!out || !lse) abort();
    fwd = *o;
    fwd.out_lse = lse; fwd.out_weights = NULL; fwd.split_count = 0; fwd.split_index = 0;
    rf = no_f ? attn_sdpa(out, os, q, qs, k, ks, v, vs, &d, &fwd, NULL, 0) : ATTN_ERR_OVERFLOW;
    if (o->out_lse) o->out_lse = (float *)1; /* never read nor written by the backward pass */
    fz_out_alloc(&oq, ndq_f ? ndq_f : 1); fz_out_alloc(&ok, ndk_f ? ndk_f : 1); fz_out_alloc(&ov, ndv_f ? ndv_f : 1);
    fz_out_alloc(&osk, (size_t)d.n_heads);
    rw = attn_sdpa_backward_workspace_size(&need, &d, o);
    if (fo.ws_mode && rw == ATTN_OK) {
        ws = (char *)malloc(need + 1);
        ws_arg = ws + 1;
    }
    r = attn_sdpa_backward(null_mask & 1 ? NULL : oq.p, dqs, null_mask & 2 ? NULL : ok.p, dks, ov.p, dvs,
                           null_mask & 4 ? osk.p : NULL, null_mask & 8 ? NULL : q, qs, k, ks, v, vs,
                           null_mask & 16 ? NULL : out, os, dout, os, null_mask & 32 ? NULL : lse,
                           null_mask & 64 ? NULL : &d, o, ws_arg, fo.ws_mode == 2 ? need - 1 : need);
    if (r == ATTN_OK && (ndq_f == 0 || ndk_f == 0 || ndv_f == 0 || nq_f == 0 || nk_f == 0 || nv_f == 0 || no_f == 0 ||
                         rw != ATTN_OK || fo.ws_mode == 2 || o->out_weights || o->split_count)) {
        fprintf(stderr, "fuzz: attn_sdpa_backward accepted a view too large to exist, too small a workspace, "
                        "out_weights or a split\n");
        abort();
    }
    if (r == ATTN_OK) {
        const size_t n_dq = n_lse * (size_t)d.d_k, n_dk = (size_t)d.batch * Hkv * d.n_kv * d.d_k;
        const size_t n_dv = (size_t)d.batch * Hkv * d.n_kv * Dv;
        fz_out_mark(&oq, dqs, d.batch, d.n_heads, d.n_q, d.d_k); fz_out_check(&oq, 0, "dq");
        fz_out_mark(&ok, dks, d.batch, Hkv, d.n_kv, d.d_k); fz_out_check(&ok, 0, "dk");
        fz_out_mark(&ov, dvs, d.batch, Hkv, d.n_kv, Dv); fz_out_check(&ov, 0, "dv");
        if (null_mask & 4) { memset(osk.in_view, 1, osk.len); fz_out_check(&osk, 0, "dsinks"); }
        else fz_out_check(&osk, 1, "dsinks");
        if (rf == ATTN_OK && f->comparable && fabsf(o->scale) <= 64.0f) {
            const double sc = o->scale != 0.0f ? o->scale : 1.0 / sqrt((double)d.d_k);
            const double qm = fz_maxabs(q, nq_f), km = fz_maxabs(k, nk_f), vm = fz_maxabs(v, nv_f);
            const double dom = fz_maxabs(dout, no_f), group = (double)d.n_heads / Hkv;
            const double s_abs = fabs(sc) * d.d_k * qm * km + (o->mask ? fz_maxabs(o->mask, (size_t)d.batch * d.n_heads * d.n_q * d.n_kv + 4) : 0.0f) +
                                 (o->sinks ? fz_maxabs(o->sinks, (size_t)d.n_heads) : 0.0f) +
                                 (o->alibi_slopes ? fz_maxabs(o->alibi_slopes, (size_t)d.n_heads) * (d.n_q + d.n_kv) : 0.0f);
            const double e_ds = 64.0 * U * (1.0 + s_abs + Dv + d.d_k) * (Dv + 1) * dom * (vm + 1e-3);
            const double t_dq = fabs(sc) * d.n_kv * e_ds * km + 1e-30, t_dk = fabs(sc) * d.n_q * group * e_ds * qm + 1e-30;
            const double t_dv = 64.0 * U * (1.0 + s_abs + d.d_k) * d.n_q * group * dom + 1e-30;
            double *rq = ref_dalloc(n_dq), *rk = ref_dalloc(n_dk), *rv = ref_dalloc(n_dv);
            size_t *aq = (size_t *)malloc(sizeof(size_t) * (n_dq + n_dk + n_dv + 1)), *ak = aq + n_dq, *av = ak + n_dk;
            ref_opts ro;
            int b, h, i, c;
            if (!aq) abort();
            memset(&ro, 0, sizeof ro);
            ro.scale = sc; ro.causal = o->causal; ro.mask = o->mask; ro.mask_s = o->mask_stride;
            if (!ro.mask_s.row) ro.mask_s.row = d.n_kv;
            ro.kv_len = o->kv_len; ro.kpm = o->key_padding_mask;
            ro.window = o->window; ro.window_left = o->window_left; ro.window_right = o->window_right;
            ro.softcap = o->softcap; ro.sinks = o->sinks; ro.alibi = o->alibi_slopes;
            ref_sdpa_backward(rq, rk, rv, NULL, NULL, q, qs, k, ks, v, vs, dout, os, &d, &ro);
            for (b = 0; b < d.batch; ++b) for (h = 0; h < d.n_heads; ++h) for (i = 0; i < d.n_q; ++i) for (c = 0; c < d.d_k; ++c)
                aq[(((size_t)b * d.n_heads + h) * d.n_q + i) * d.d_k + c] = (size_t)(b * dqs.batch + h * dqs.head + i * dqs.row + c);
            for (b = 0; b < d.batch; ++b) for (h = 0; h < Hkv; ++h) for (i = 0; i < d.n_kv; ++i) {
                for (c = 0; c < d.d_k; ++c)
                    ak[(((size_t)b * Hkv + h) * d.n_kv + i) * d.d_k + c] = (size_t)(b * dks.batch + h * dks.head + i * dks.row + c);
                for (c = 0; c < Dv; ++c)
                    av[(((size_t)b * Hkv + h) * d.n_kv + i) * Dv + c] = (size_t)(b * dvs.batch + h * dvs.head + i * dvs.row + c);
            }
            fz_compare("dq", oq.p, aq, rq, NULL, n_dq, t_dq);
            fz_compare("dk", ok.p, ak, rk, NULL, n_dk, t_dk);
            fz_compare("dv", ov.p, av, rv, NULL, n_dv, t_dv);
            free(rq); free(rk); free(rv); free(aq);
        }
    } else {
        fz_out_check(&oq, 1, "dq"); fz_out_check(&ok, 1, "dk"); fz_out_check(&ov, 1, "dv"); fz_out_check(&osk, 1, "dsinks");
    }
    free(ws); free(out); free(lse);
    fz_out_free(&oq); fz_out_free(&ok); fz_out_free(&ov); fz_out_free(&osk);
    fz_options_free(&fo);
}

/* every tensor but the masks moderate (|x| <= 64), the masks anything but NaN */
static int fz_moderate_but_masks(const fz *f)
{
    int i;
    size_t j;
    for (i = 0; i < f->n_t; ++i)
        for (j = 0; j < f->len[i]; ++j)
            if (f->neg_inf_ok[i] ? isnan(f->t[i][j]) : !(fabsf(f->t[i][j]) <= 64.0f)) return 0;
    return 1;
}

/* the multi-head calls' output against fz_row_ref through float64 projections, row by row, when the
   projection inputs are moderate (|x| <= 64, so the projections are plain float sums) and nothing is
   NaN: masks of any size or +-inf and scales of any size are the extreme part. Each projected value is
   off by its dot product's rounding, (width + 2) u times the sum of |x| |w| (+ |b|); a logit by that
   much in Q and K, times the scale */
static void fz_mha_extreme(const float *out, const float *xq, const float *xkv, int B, int Nq, int Nk,
                           const attn_mha *m, const attn_options *o)
{
    const int E = m->d_model, H = m->n_heads, Hkv = m->n_kv_heads ? m->n_kv_heads : H, Dh = E / H;
    const int dkv = m->d_kv ? m->d_kv : E, kvd = Hkv * Dh, out_in = m->layout == ATTN_LAYOUT_OUT_IN;
    const double sc = o->scale != 0.0f ? o->scale : 1.0 / sqrt((double)Dh);
    const ptrdiff_t mrow = o->mask_stride.row ? o->mask_stride.row : Nk;
    const double U_proj_q = 2.0 * (E + 2) * U, U_proj_kv = 2.0 * (dkv + 2) * U, tiny = 1.5e-45;
    float *xqa = fz_abs_copy(xq, (size_t)B * Nq * E), *xkva = fz_abs_copy(xkv, (size_t)B * Nk * dkv);
    float *wqa = fz_abs_copy(m->w_q, (size_t)E * E), *wka = fz_abs_copy(m->w_k, (size_t)dkv * kvd);
    float *wva = fz_abs_copy(m->w_v, (size_t)dkv * kvd);
    float *bqa = m->b_q ? fz_abs_copy(m->b_q, (size_t)E) : NULL, *bka = m->b_k ? fz_abs_copy(m->b_k, (size_t)kvd) : NULL;
    float *bva = m->b_v ? fz_abs_copy(m->b_v, (size_t)kvd) : NULL;
    double *Q = ref_dalloc((size_t)Nq * E), *Qa = ref_dalloc((size_t)Nq * E), *K = ref_dalloc((size_t)Nk * kvd);
    double *Ka = ref_dalloc((size_t)Nk * kvd), *V = ref_dalloc((size_t)Nk * kvd), *Ve = ref_dalloc((size_t)Nk * kvd);
    double *A = ref_dalloc((size_t)Nq * E), *At = ref_dalloc((size_t)Nq * E), *p = ref_dalloc((size_t)Nk);
    double *s = ref_dalloc((size_t)Nk), *r = ref_dalloc((size_t)Nk), *ro = ref_dalloc((size_t)Dh), *rt = ref_dalloc((size_t)Dh);
    unsigned char *row_ok = (unsigned char *)malloc((size_t)Nq + 1);
    fz_key *key = (fz_key *)malloc(sizeof(fz_key) * (size_t)Nk);
    fz_row_res res, *worst = (fz_row_res *)calloc((size_t)Nq, sizeof(fz_row_res));
    int b, h, i, j, c;
    size_t x;
    if (!row_ok || !key || !worst) abort();
    memset(&res, 0, sizeof res);
    for (b = 0; b < B; ++b) {
        const float *xb = xq + (size_t)b * Nq * E, *xkb = xkv + (size_t)b * Nk * dkv;
        ref_project(Q, xb, E, m->w_q, ATTN_F32, E, out_in, m->b_q, Nq, E, E);
        ref_project(Qa, xqa + (size_t)b * Nq * E, E, wqa, ATTN_F32, E, out_in, bqa, Nq, E, E);
        ref_project(K, xkb, dkv, m->w_k, ATTN_F32, out_in ? dkv : kvd, out_in, m->b_k, Nk, dkv, kvd);
        ref_project(Ka, xkva + (size_t)b * Nk * dkv, dkv, wka, ATTN_F32, out_in ? dkv : kvd, out_in, bka, Nk, dkv, kvd);
        ref_project(V, xkb, dkv, m->w_v, ATTN_F32, out_in ? dkv : kvd, out_in, m->b_v, Nk, dkv, kvd);
        ref_project(Ve, xkva + (size_t)b * Nk * dkv, dkv, wva, ATTN_F32, out_in ? dkv : kvd, out_in, bva, Nk, dkv, kvd);
        for (x = 0; x < (size_t)Nk * kvd; ++x) Ve[x] = U_proj_kv * Ve[x] + (dkv + 1) * 64.0 * tiny;
        memset(row_ok, 1, (size_t)Nq + 1);
        for (h = 0; h < H; ++h) {
            const int hk = h / (H / Hkv);
            for (i = 0; i < Nq; ++i) {
                double qmax = 0.0;
                for (c = 0; c < Dh; ++c) qmax = Qa[i * E + h * Dh + c] > qmax ? Qa[i * E + h * Dh + c] : qmax;
                for (j = 0; j < Nk; ++j) {
                    double dot = 0.0, mag = 0.0;
                    fz_key *kk = &key[j];
                    for (c = 0; c < Dh; ++c) {
                        dot += Q[i * E + h * Dh + c] * K[j * kvd + hk * Dh + c];
                        mag += Qa[i * E + h * Dh + c] * Ka[j * kvd + hk * Dh + c];
                    }
                    kk->l = sc * dot;
                    kk->e = fabs(sc) * ((2.0 * (Dh + 4) * U + U_proj_q + U_proj_kv) * mag +
                                        Dh * (E + dkv + 2) * 64.0 * 4.0 * tiny) + 2.0 * (Dh + 1) * (fabs(sc) + 64.0 * dkv + 1.0) * tiny;
                    if (!(fabs(sc) * qmax <= FLT_MAX / 2 && mag <= FLT_MAX / 4 && fabs(sc) * mag <= FLT_MAX / 2)) kk->e = INFINITY;
                    kk->mask = o->mask ? o->mask[b * o->mask_stride.batch + h * o->mask_stride.head + i * mrow + j] : 0.0f;
                    kk->vis = kk->mask != -INFINITY && !(o->kv_len && j >= o->kv_len[b]) &&
                              !(o->key_padding_mask && o->key_padding_mask[b * Nk + j]) &&
                              !(o->causal == ATTN_CAUSAL_TOP_LEFT && j > i) &&
                              !(o->causal == ATTN_CAUSAL_BOTTOM_RIGHT && j > i + (o->kv_len ? o->kv_len[b] : Nk) - Nq);
                }
                if (!fz_row_ref(&res, p, ro, rt, key, Nk, V + hk * Dh, Ve + hk * Dh, kvd, Dh, s, r)) { row_ok[i] = 0; continue; }
                for (c = 0; c < Dh; ++c) { A[i * E + h * Dh + c] = ro[c]; At[i * E + h * Dh + c] = rt[c]; }
                if (h == 0 || res.E > worst[i].E || res.hull) worst[i] = res; /* the context a failure reports */
            }
        }
        for (i = 0; i < Nq; ++i) /* out = A W_o + b_o, off by A's error through |W_o| and its own rounding */
            for (j = 0; row_ok[i] && j < E; ++j) {
                double acc = m->b_o ? m->b_o[j] : 0.0, tol = m->b_o ? 2.0 * U * fabs(m->b_o[j]) : 0.0;
                for (c = 0; c < E; ++c) {
                    const double w = ((const float *)m->w_o)[out_in ? j * E + c : c * E + j];
                    acc += A[i * E + c] * w;
                    if (w != 0.0) tol += (At[i * E + c] + 2.0 * (E + 2) * U * (fabs(A[i * E + c]) + At[i * E + c])) * fabs(w);
                }
                fz_check_row("out (after W_o; the row: its least accurate head)", b, -1, i, &worst[i], out[((size_t)b * Nq + i) * E + j], acc,
                             tol + E * 64.0 * 4.0 * tiny + 1e-30, j);
            }
    }
    free(xqa); free(xkva); free(wqa); free(wka); free(wva); free(bqa); free(bka); free(bva);
    free(Q); free(Qa); free(K); free(Ka); free(V); free(Ve); free(A); free(At); free(p); free(s); free(r); free(ro); free(rt);
    free(row_ok); free(key); free(worst);
}

static void fuzz_mha(fz *f, int self)
{
    const int B = fz_range(f, 1, 2), Nq = fz_range(f, 1, 12), Nk = self ? Nq : fz_range(f, 1, 12);
    const int H = fz_range(f, 1, 4), null_mask = (int)fz_u8(f);
    int Dh = fz_range(f, 1, 6), E = H * Dh;
    attn_mha m;
    fz_opts fo;
    attn_options *o = &fo.o;
    int Hkv, dkv, kvd, Hq_eff;
    float *xq, *xkv, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *bo;
    fz_out oo, ol, ow;
    size_t need = 0;
    attn_result r, rw;
    char *ws = NULL;
    void *ws_arg = NULL;
    memset(&m, 0, sizeof m); memset(&oo, 0, sizeof oo); memset(&ol, 0, sizeof ol); memset(&ow, 0, sizeof ow);
    m.d_model = fz_range(f, 0, 15) == 0 ? E + fz_range(f, -1, 1) : E; /* maybe not divisible */
    m.n_heads = H;
    m.n_kv_heads = fz_range(f, 0, 3) == 0 ? fz_range(f, -1, 4) : (fz_range(f, 0, 1) ? H : 1);
    m.d_kv = self ? (fz_range(f, 0, 15) == 0 ? fz_range(f, 1, 9) : 0) : fz_range(f, 0, 9);
    m.layout = (attn_layout)(fz_range(f, 0, 31) == 0 ? 2 : fz_range(f, 0, 1));
    E = m.d_model > 0 ? m.d_model : 1; /* the buffers' sizes, as the library will read them if it accepts */
    Dh = E % H == 0 ? E / H : 1;
    Hkv = m.n_kv_heads > 0 ? m.n_kv_heads : H;
    dkv = m.d_kv > 0 ? m.d_kv : E;
    kvd = Hkv * Dh;
    Hq_eff = H;
    fz_options(f, &fo, B, Hq_eff, Nq, Nk, Dh, 1);
    {
        const int e = E;
        xq = fz_tensor(f, (size_t)B * Nq * e, 0.5f, 0);
        xkv = self ? xq : fz_tensor(f, (size_t)B * Nk * dkv, 0.5f, 0);
        wq = fz_tensor(f, (size_t)e * e, 0.5f, 0); wo = fz_tensor(f, (size_t)e * e, 0.5f, 0);
        wk = fz_tensor(f, (size_t)dkv * kvd, 0.5f, 0); wv = fz_tensor(f, (size_t)dkv * kvd, 0.5f, 0);
        bq = fz_tensor(f, (size_t)e, 0.5f, 0); bo = fz_tensor(f, (size_t)e, 0.5f, 0);
        bk = fz_tensor(f, (size_t)kvd, 0.5f, 0); bv = fz_tensor(f, (size_t)kvd, 0.5f, 0);
        fz_patch(f);
        m.w_q = null_mask & 1 ? NULL : wq; m.w_k = wk; m.w_v = wv; m.w_o = wo;
        if (null_mask & 2) { m.b_q = bq; m.b_k = bk; m.b_v = bv; m.b_o = bo; }
        fz_out_alloc(&oo, (size_t)B * Nq * e);
    }
    if (o->out_lse) o->out_lse = fz_out_alloc(&ol, (size_t)B * H * Nq);
    if (o->out_weights) o->out_weights = fz_out_alloc(&ow, (size_t)B * (o->average_weights ? 1 : H) * Nq * Nk);
    rw = self ? attn_self_workspace_size(&need, B, Nq, &m, o) : attn_cross_workspace_size(&need, B, Nq, Nk, &m, o);
    if (fo.ws_mode && rw == ATTN_OK) {
        ws = (char *)malloc(need + 1);
        ws_arg = ws + 1;
    }
    if (self)
        r = attn_self_forward(null_mask & 4 ? NULL : oo.p, null_mask & 8 ? NULL : xq, B, Nq, null_mask & 16 ? NULL : &m,
                              o, ws_arg, fo.ws_mode == 2 ? need - 1 : need);
    else
        r = attn_cross_forward(null_mask & 4 ? NULL : oo.p, null_mask & 8 ? NULL : xq, null_mask & 32 ? NULL : xkv, B, Nq,
                               Nk, null_mask & 16 ? NULL : &m, o, ws_arg, fo.ws_mode == 2 ? need - 1 : need);
    if (r == ATTN_OK && (rw != ATTN_OK || fo.ws_mode == 2)) {
        fprintf(stderr, "fuzz: multi-head call succeeded where its size function failed, or with a short workspace\n");
        abort();
    }
    if (r == ATTN_OK) {
        memset(oo.in_view, 1, oo.len); fz_out_check(&oo, 0, "out");
        if (ol.p) { memset(ol.in_view, 1, ol.len); fz_out_check(&ol, 0, "lse"); }
        if (ow.p) { memset(ow.in_view, 1, ow.len); fz_out_check(&ow, 0, "weights"); }
        if (f->comparable && fabsf(o->scale) <= 1e30f) { /* moderate: one bound for the whole call */
            const size_t n_out = (size_t)B * Nq * E;
            double *ref = ref_dalloc(n_out), *bound = ref_dalloc(n_out);
            const double sc = o->scale != 0.0f ? o->scale : 1.0 / sqrt((double)Dh);
            const double xm = fz_maxabs(xq, (size_t)B * Nq * E) + fz_maxabs(xkv, (size_t)B * Nk * dkv);
            const double qm = E * xm * fz_maxabs(wq, (size_t)E * E) + (m.b_q ? fz_maxabs(bq, (size_t)E) : 0.0);
            const double km = dkv * xm * fz_maxabs(wk, (size_t)dkv * kvd) + (m.b_k ? fz_maxabs(bk, (size_t)kvd) : 0.0);
            const double vm = dkv * xm * fz_maxabs(wv, (size_t)dkv * kvd) + (m.b_v ? fz_maxabs(bv, (size_t)kvd) : 0.0);
            const double om = E * vm * fz_maxabs(wo, (size_t)E * E) + (m.b_o ? fz_maxabs(bo, (size_t)E) : 0.0);
            const double s_abs = fabs(sc) * Dh * qm * km + (o->mask ? fz_maxabs(o->mask, (size_t)B * H * Nq * Nk + 4) : 0.0f);
            const double tol = 8.0 * U * ((Dh + 4) * (s_abs + 1.0) + Nk + E + dkv + 16);
            ref_opts ro;
            size_t i;
            memset(&ro, 0, sizeof ro);
            ro.scale = sc; ro.causal = o->causal; ro.mask = o->mask; ro.mask_s = o->mask_stride;
            if (!ro.mask_s.row) ro.mask_s.row = Nk;
            ro.kv_len = o->kv_len; ro.kpm = o->key_padding_mask;
            ref_mha(ref, xq, xkv, B, Nq, Nk, &m, &ro);
            for (i = 0; i < n_out; ++i) bound[i] = om + 1e-30;
            fz_compare("out", oo.p, NULL, ref, bound, n_out, tol);
            free(ref); free(bound);
        }
        if (fz_moderate_but_masks(f)) fz_mha_extreme(oo.p, xq, xkv, B, Nq, Nk, &m, o);
    } else {
        fz_out_check(&oo, 1, "out"); fz_out_check(&ol, 1, "lse"); fz_out_check(&ow, 1, "weights");
    }
    free(ws);
    fz_out_free(&oo); fz_out_free(&ol); fz_out_free(&ow);
    fz_options_free(&fo);
}

static void fuzz_self_forward(fz *f) { fuzz_mha(f, 1); }
static void fuzz_cross_forward(fz *f) { fuzz_mha(f, 0); }

/* ---------------------------------------------------------------------------------------------- */
/* classic attention                                                                              */
/* ---------------------------------------------------------------------------------------------- */

/* a [B, N, D] view of the classic calls (head stride 0): rows padded by -1..2 (-1: too short, rejected),
   dense or broadcast batch, now and then a batch stride that overflows; *len: floats to allocate */
static attn_stride fz_view3(fz *f, int B, int N, int D, size_t *len)
{
    attn_stride s = {0, 0, 0};
    const int kind = fz_range(f, 0, 15);
    s.row = D + fz_range(f, -1, 2);
    if (s.row < 0) s.row = 0;
    s.batch = kind == 0 ? 0 : kind == 1 && B > 1 ? PTRDIFF_MAX / 2 : (ptrdiff_t)N * s.row;
    *len = (size_t)(s.batch == PTRDIFF_MAX / 2 ? 0 : (B - 1) * s.batch) + (size_t)(N - 1) * (size_t)s.row + (size_t)D;
    return s;
}

/* the alignment model as fuzzed; *d_key its key width. Weights of amplitude 1, registered for patches. */
static void fz_align(fz *f, attn_align *a, int *d_key)
{
    const int sc = fz_range(f, 0, 16), flags = (int)fz_u8(f);
    int out_in, ds, dh, da;
    memset(a, 0, sizeof *a);
    a->score = (attn_score)(sc < 16 ? sc % 4 : fz_range(f, -1, 5)); /* now and then not a score */
    a->d_s = fz_range(f, 1, 8); a->d_h = a->score == ATTN_SCORE_DOT && (flags & 1) == 0 ? a->d_s : fz_range(f, 1, 8);
    a->d_a = fz_range(f, 1, 8);
    if (fz_range(f, 0, 31) == 0) a->d_s = fz_range(f, -1, 0);
    if (fz_range(f, 0, 31) == 0) a->d_a = fz_range(f, -1, 0);
    a->layout = (attn_layout)(fz_range(f, 0, 31) == 0 ? 2 : fz_range(f, 0, 1));
    a->scale = fz_scale(f);
    out_in = a->layout == ATTN_LAYOUT_OUT_IN;
    ds = a->d_s > 0 ? a->d_s : 1; dh = a->d_h; da = a->d_a > 0 ? a->d_a : 1;
    *d_key = a->score == ATTN_SCORE_DOT ? dh : a->score == ATTN_SCORE_GENERAL ? ds : da;
    { /* every weight: a stride 0 (dense) or cols + pad, pad in -1..2 (too short: rejected) */
        const int pad = (flags >> 1) & 3;
        const int rg = out_in ? ds : dh, cg = out_in ? dh : ds;          /* GENERAL [d_h x d_s] */
        const int rc = out_in ? da : ds + dh, cc = out_in ? ds + dh : da; /* CONCAT [(d_s + d_h) x d_a] */
        const int rs = out_in ? da : ds, cs = out_in ? ds : da, rh = out_in ? da : dh, chh = out_in ? dh : da;
        const ptrdiff_t pg = pad ? cg + pad - 2 : 0, pc = pad ? cc + pad - 2 : 0;
        const ptrdiff_t ps = pad ? cs + pad - 2 : 0, ph = pad ? chh + pad - 1 : 0;
        a->w_stride = a->score == ATTN_SCORE_CONCAT ? pc : pg;
        a->w_s_stride = ps; a->w_h_stride = ph;
        a->w = fz_tensor(f, (size_t)(a->score == ATTN_SCORE_CONCAT ? rc * (cc + 2) : rg * (cg + 2)), 1.0f, 0);
        a->w_s = fz_tensor(f, (size_t)rs * (cs + 2), 1.0f, 0);
        a->w_h = fz_tensor(f, (size_t)rh * (chh + 2), 1.0f, 0);
        a->b = flags & 8 ? fz_tensor(f, (size_t)(ds + dh + da), 1.0f, 0) : NULL;
        a->v = fz_tensor(f, (size_t)da, 1.0f, 0);
        if (flags & 16) { /* a weight missing */
            switch (fz_range(f, 0, 3)) {
            case 0: a->w = NULL; break;
            case 1: a->w_s = NULL; break;
            case 2: a->w_h = NULL; break;
            default: a->v = NULL; break;
            }
        }
    }
}

/* the absolute error allowed for a score, from the magnitudes of the inputs */
static double fz_align_tol(const attn_align *a, double smax, double hmax, double wmax, double bmax, double vmax)
{
    const double sc = a->scale != 0.0f ? fabs(a->scale) : 1.0;
    const int ds = a->d_s, dh = a->d_h, da = a->d_a;
    if (a->score == ATTN_SCORE_DOT) return sc * 4.0 * U * (ds + 4) * ds * smax * hmax + 1e-30;
    if (a->score == ATTN_SCORE_GENERAL)
        return sc * 4.0 * U * (ds + dh + 8) * ds * smax * (dh * wmax * hmax + bmax) + 1e-30;
    /* pre-activations within 4U (d_s + d_h + 8) of their magnitude; tanhf within a few ulps */
    return sc * (da * vmax * (4.0 * U * (ds + dh + 8) * ((ds * smax + dh * hmax) * wmax + bmax) + 8.0 * U) +
                 4.0 * U * (da + 4) * da * vmax) + 1e-30;
}

/* uniform numbers for attn_sample and ATTN_SELECT_SAMPLE: mostly [0, 1), now and then 1, NaN, +-inf, ... */
static float fz_uniform(uint64_t *st)
{
    unsigned b;
    *st = *st * 6364136223846793005ull + 1442695040888963407ull;
    b = (unsigned)(*st >> 56);
    return b < 240 ? (float)(*st >> 40 & 0xffff) / 65536.0f : b == 240 ? 1.0f : fz_special(b - 241);
}
static float fz_rand(void *user) { return fz_uniform((uint64_t *)user); }

static void fz_int_check(const int *p, size_t n, const char *what)
{
    size_t i;
    for (i = 0; i < n; ++i)
        if (p[i] != 0x5a5a5a5a) { fprintf(stderr, "fuzz: %s[%zu] written by a failed call\n", what, i); abort(); }
}
static int *fz_int_alloc(size_t n)
{
    int *p = (int *)malloc((n ? n : 1) * sizeof(int));
    if (!p) abort();
    memset(p, 0x5a, (n ? n : 1) * sizeof(int));
    return p;
}

static void fuzz_align(fz *f, int forward)
{
    const int B = fz_range(f, 1, 2), Nq = fz_range(f, 1, 12), Nk = fz_range(f, 1, 20), flags = (int)fz_u8(f);
    attn_align a;
    attn_align_options o;
    int dk, Dv, *src_len = NULL, *idx = NULL, b;
    attn_stride ss, hs, ks, es;
    size_t ns, nh, nk, ne, need = 0;
    float *s, *h, *keys = NULL, *u = NULL;
    fz_out oe, ow, ol;
    char *ws = NULL;
    void *ws_arg = NULL;
    const int ws_mode = fz_range(f, 0, 2), with_keys = (flags & 1) != 0;
    uint64_t rs = f->rng ^ 0x9e3779b97f4a7c15ull;
    attn_result r, rw;
    memset(&o, 0, sizeof o); memset(&ow, 0, sizeof ow); memset(&ol, 0, sizeof ol);
    fz_align(f, &a, &dk);
    Dv = a.d_h;
    ss = fz_view3(f, B, Nq, a.d_s > 0 ? a.d_s : 1, &ns);
    hs = fz_view3(f, B, Nk, a.d_h, &nh);
    ks = fz_view3(f, B, Nk, dk, &nk);
    es = fz_view3(f, B, Nq, forward ? Dv : Nk, &ne);
    if (flags & 2) {
        src_len = (int *)malloc(sizeof(int) * (size_t)B);
        for (b = 0; b < B; ++b)
            src_len[b] = fz_range(f, 0, 31) == 0 ? (fz_range(f, 0, 1) ? -1 : Nk + 1) : (int)(fz_u8(f) * (unsigned)(Nk + 1) / 256u);
        o.src_len = src_len;
    }
    if (forward) {
        o.mode = (attn_select)fz_range(f, 0, 4);
        o.top_k = fz_range(f, -1, 6);
        if (flags & 4) {
            u = (float *)malloc(sizeof(float) * (size_t)B * Nq);
            for (b = 0; b < B * Nq; ++b) u[b] = fz_uniform(&rs);
            o.uniform = u;
        }
        if (flags & 8) { o.rand_fn = fz_rand; o.rand_user = &rs; }
    }
    s = fz_tensor(f, ns ? ns : 1, 1.0f, 0);
    h = fz_tensor(f, nh ? nh : 1, 1.0f, 0);
    fz_patch(f);
    if (with_keys && nk) {
        keys = (float *)malloc(sizeof(float) * nk);
        if (!keys) abort();
        if (attn_align_keys(keys, ks, h, hs, B, Nk, &a) != ATTN_OK) { free(keys); keys = NULL; }
    }
    fz_out_alloc(&oe, ne ? ne : 1);
    if (forward && (flags & 16)) o.out_weights = fz_out_alloc(&ow, (size_t)B * Nq * Nk);
    if (forward && (flags & 32)) o.out_log_prob = fz_out_alloc(&ol, (size_t)B * Nq);
    if (forward && (flags & 64)) o.out_index = idx = fz_int_alloc((size_t)B * Nq);
    rw = attn_align_workspace_size(&need, Nq, Nk, &a, keys != NULL);
    if (ws_mode && rw == ATTN_OK) { ws = (char *)malloc(need + 1); ws_arg = ws + 1; }
    if (forward)
        r = attn_align_forward(flags & 128 ? NULL : oe.p, es, s, ss, h, hs, keys, ks, B, Nq, Nk, &a, &o, ws_arg,
                               ws_mode == 2 ? need - 1 : need);
    else
        r = attn_align_scores(flags & 128 ? NULL : oe.p, es, s, ss, keys ? NULL : h, hs, keys, ks, B, Nq, Nk, &a,
                              flags & 4 ? NULL : &o, ws_arg, ws_mode == 2 ? need - 1 : need);
    if (r == ATTN_OK && (rw != ATTN_OK || ws_mode == 2 || !ns || !nh || !ne)) {
        fprintf(stderr, "fuzz: classic call accepted where its size function failed, a short workspace or a view too large\n");
        abort();
    }
    if (r == ATTN_OK) {
        const int W = forward ? Dv : Nk;
        fz_out_mark(&oe, es, B, 1, Nq, W);
        fz_out_check(&oe, 0, forward ? "context" : "e");
        if (ow.p) { memset(ow.in_view, 1, ow.len); fz_out_check(&ow, 0, "weights"); }
        if (ol.p) { memset(ol.in_view, 1, ol.len); fz_out_check(&ol, 0, "log_prob"); }
        if (idx) for (b = 0; b < B * Nq; ++b) if (idx[b] < -1 || idx[b] >= Nk) { fprintf(stderr, "fuzz: index %d\n", idx[b]); abort(); }
        if (f->comparable && (a.scale == 0.0f || fabsf(a.scale) <= 64.0f) && fabsf(a.scale) >= 1e-6f &&
            (!forward || o.mode == ATTN_SELECT_SOFT)) {
            const size_t n_e = (size_t)B * Nq * Nk;
            double *e = ref_dalloc(n_e), *ref = ref_dalloc((size_t)B * Nq * W), *bound = ref_dalloc((size_t)B * Nq * W);
            size_t *at = (size_t *)malloc(sizeof(size_t) * (size_t)B * Nq * W);
            const double smax = fz_maxabs(s, ns), hmax = fz_maxabs(h, nh);
            double wmax = 0.0, tol;
            int i, j, c, t;
            for (t = 0; t < f->n_t; ++t) { /* weights, biases and v: the largest of every input */
                const double m = fz_maxabs(f->t[t], f->len[t]);
                wmax = m > wmax ? m : wmax;
            }
            tol = fz_align_tol(&a, smax, hmax, wmax, wmax, wmax);
            attn_align ra = a; /* DOT and GENERAL accept any d_a: the reference sizes buffers with it */
            if (ra.d_a < 1) ra.d_a = 1;
            ref_align_scores(e, &ra, s, ss, h, hs, B, Nq, Nk, forward || !(flags & 4) ? src_len : NULL);
            for (b = 0; b < B; ++b) for (i = 0; i < Nq; ++i) for (c = 0; c < W; ++c) {
                const size_t row = (size_t)b * Nq + i;
                at[row * W + c] = (size_t)(b * es.batch + i * es.row + c);
                bound[row * W + c] = 1.0;
                if (!forward) ref[row * W + c] = e[row * Nk + c];
            }
            if (forward) {
                double *p = ref_dalloc((size_t)Nk), lse;
                for (b = 0; b < B; ++b) for (i = 0; i < Nq; ++i) {
                    const size_t row = (size_t)b * Nq + i;
                    const int nv = src_len ? src_len[b] : Nk;
                    ref_softmax_row(p, &lse, e + row * Nk, Nk);
                    for (c = 0; c < Dv; ++c) {
                        double acc = 0.0;
                        for (j = 0; j < nv; ++j) acc += p[j] * h[b * hs.batch + j * hs.row + c];
                        ref[row * Dv + c] = acc;
                    }
                }
                tol = hmax * (2.0 * tol + 4.0 * U * (Nk + 8)) + 1e-30;
                free(p);
            }
            g_floor = 1e-30;
            fz_compare(forward ? "context" : "e", oe.p, at, ref, bound, (size_t)B * Nq * W, tol);
            free(e); free(ref); free(bound); free(at);
        }
    } else {
        fz_out_check(&oe, 1, forward ? "context" : "e"); fz_out_check(&ow, 1, "weights"); fz_out_check(&ol, 1, "log_prob");
        if (idx) fz_int_check(idx, (size_t)B * Nq, "index");
    }
    free(ws); free(keys); free(u); free(src_len); free(idx);
    fz_out_free(&oe); fz_out_free(&ow); fz_out_free(&ol);
}

static void fuzz_align_scores(fz *f) { fuzz_align(f, 0); }
static void fuzz_align_forward(fz *f) { fuzz_align(f, 1); }

/* attn_hardmax (kind 0), attn_topk (1), attn_sample (2) on rows of scores with -inf (masked), +inf, NaN */
static void fuzz_select(fz *f, int kind)
{
    const int rows = fz_range(f, 1, 9), cols = fz_range(f, 1, 70), flags = (int)fz_u8(f);
    const int in_place = (flags & 16) != 0, k = kind == 1 ? fz_range(f, -1, 8) : 1;
    const ptrdiff_t ss = cols + fz_range(f, -1, 2), ps = in_place ? ss : cols + fz_range(f, -1, 2);
    const size_t ns = (size_t)(rows - 1) * (size_t)(ss > 0 ? ss : 0) + (size_t)cols;
    const size_t n_idx = (size_t)rows * (size_t)(k > 0 ? k : 1);
    float *s, *s0, *p, *lp, *u = NULL;
    int *idx;
    uint64_t rs = f->rng ^ 0x9e3779b97f4a7c15ull;
    fz_out op, ol;
    attn_result r;
    memset(&op, 0, sizeof op); memset(&ol, 0, sizeof ol);
    if (kind == 2 && (flags & 32)) {
        int i;
        u = (float *)malloc(sizeof(float) * (size_t)rows);
        for (i = 0; i < rows; ++i) u[i] = fz_uniform(&rs);
    }
    s = fz_tensor(f, ns, 8.0f, 1);
    fz_patch(f);
    s0 = (float *)malloc(sizeof(float) * ns);
    memcpy(s0, s, sizeof(float) * ns);
    if (in_place) {
        p = s;
    } else {
        p = fz_out_alloc(&op, (size_t)(rows - 1) * (size_t)(ps > 0 ? ps : 0) + (size_t)cols);
    }
    idx = fz_int_alloc(n_idx);
    lp = fz_out_alloc(&ol, (size_t)rows);
    if (kind == 0)
        r = attn_hardmax(flags & 1 ? NULL : p, ps, flags & 4 ? NULL : idx, flags & 2 ? NULL : s, ss, rows, cols);
    else if (kind == 1)
        r = attn_topk(flags & 1 ? NULL : p, ps, flags & 4 ? NULL : idx, flags & 2 ? NULL : s, ss, rows, cols, k);
    else
        r = attn_sample(flags & 1 ? NULL : p, ps, flags & 4 ? NULL : idx, flags & 8 ? NULL : lp, flags & 2 ? NULL : s,
                        ss, rows, cols, u, flags & 128 ? NULL : fz_rand, &rs);
    if (r == ATTN_OK) {
        int i, j, c;
        attn_stride v = {0, 0, ps};
        double *e = ref_dalloc((size_t)cols), *rp = ref_dalloc((size_t)cols), rlp;
        int *order = (int *)malloc(sizeof(int) * (size_t)cols), ridx;
        if (!in_place) { fz_out_mark(&op, v, 1, 1, rows, cols); fz_out_check(&op, 0, "p"); }
        if (!(flags & 8) && kind == 2) { memset(ol.in_view, 1, ol.len); }
        fz_out_check(&ol, 0, "log_prob");
        if (flags & 4) fz_int_check(idx, n_idx, "index (NULL)");
        for (i = 0; i < rows; ++i) {
            int nan_row = 0;
            for (j = 0; j < cols; ++j) { e[j] = s0[i * ss + j]; nan_row |= isnan(e[j]); }
            for (c = 0; c < (kind == 1 ? k : 1) && !(flags & 4); ++c)
                if (idx[i * (kind == 1 ? k : 1) + c] < -1 || idx[i * (kind == 1 ? k : 1) + c] >= cols) {
                    fprintf(stderr, "fuzz: index out of range\n"); abort();
                }
            if (!f->comparable || nan_row) continue;
            ref_select(rp, &ridx, &rlp, order, e, cols, kind == 0 ? ATTN_SELECT_HARD : kind == 1 ? ATTN_SELECT_TOPK : ATTN_SELECT_SAMPLE, k, 0.0);
            if (kind == 0) { /* exact: the argmax, lowest index on ties, and a one-hot row */
                if (!(flags & 4) && idx[i] != ridx) { fprintf(stderr, "fuzz: hardmax row %d index %d, reference %d\n", i, idx[i], ridx); abort(); }
                for (j = 0; j < cols; ++j)
                    if (p[i * ps + j] != (j == ridx ? 1.0f : 0.0f)) { fprintf(stderr, "fuzz: hardmax row %d p[%d]\n", i, j); abort(); }
            } else if (kind == 1) { /* exact indices by decreasing score; the weights within rounding */
                for (c = 0; c < k && !(flags & 4); ++c) {
                    const int want = c < cols ? order[c] : -1;
                    if (idx[i * k + c] != want) {
                        fprintf(stderr, "fuzz: topk row %d rank %d index %d, reference %d\n", i, c, idx[i * k + c], want);
                        abort();
                    }
                }
                {
                    size_t at[70];
                    for (j = 0; j < cols; ++j) at[j] = (size_t)(i * ps + j);
                    g_floor = 1e-30;
                    fz_compare("p", p, at, rp, NULL, (size_t)cols, 4.0 * U * (cols + 8) * 16.0);
                }
            } else { /* one-hot at a visible entry; log_prob that entry's log-softmax */
                int got = -1;
                for (j = 0; j < cols; ++j) {
                    const float x = p[i * ps + j];
                    if (x == 1.0f && got < 0) got = j;
                    else if (x != 0.0f) { fprintf(stderr, "fuzz: sample row %d not one-hot\n", i); abort(); }
                }
                if (!(flags & 4) && idx[i] != got) { fprintf(stderr, "fuzz: sample row %d index %d, p at %d\n", i, idx[i], got); abort(); }
                if ((got < 0) != (ridx < 0) || (got >= 0 && e[got] == -INFINITY)) {
                    fprintf(stderr, "fuzz: sample row %d drew %d (reference draws %d)\n", i, got, ridx); abort();
                }
            }
        }
        free(e); free(rp); free(order);
    } else {
        if (!in_place) fz_out_check(&op, 1, "p");
        else if (memcmp(s, s0, sizeof(float) * ns) != 0) { fprintf(stderr, "fuzz: in-place call wrote by a failed call\n"); abort(); }
        fz_out_check(&ol, 1, "log_prob");
        fz_int_check(idx, n_idx, "index");
    }
    free(s0); free(u); free(idx);
    fz_out_free(&op); fz_out_free(&ol);
}

static void fuzz_hardmax(fz *f) { fuzz_select(f, 0); }
static void fuzz_topk(fz *f) { fuzz_select(f, 1); }
static void fuzz_sample(fz *f) { fuzz_select(f, 2); }

/* attn_image_write into a bounded buffer: the writer refuses (returns 1) past its capacity */
typedef struct fz_sink {
    unsigned char *buf;
    size_t cap, pos;
    int refused, calls;
} fz_sink;

static int fz_sink_write(void *user, const void *data, size_t bytes)
{
    fz_sink *k = (fz_sink *)user;
    ++k->calls;
    if (k->refused) { fprintf(stderr, "fuzz: attn_image_write wrote after its writer failed\n"); abort(); }
    if (bytes > k->cap - k->pos) { k->refused = 1; return 1; }
    if (bytes) memcpy(k->buf + k->pos, data, bytes);
    k->pos += bytes;
    return 0;
}

static void fuzz_image_write(fz *f)
{
    enum { GUARD = 64 };
    const int rows = fz_range(f, 0, 24) - (fz_range(f, 0, 31) == 0), cols = fz_range(f, 0, 24), flags = (int)fz_u8(f);
    const ptrdiff_t ms = cols + fz_range(f, -1, 2);
    const size_t nm = (size_t)(rows > 0 ? rows - 1 : 0) * (size_t)(ms > 0 ? ms : 0) + (size_t)(cols > 0 ? cols : 1);
    attn_image_options o;
    fz_sink k;
    float *m;
    size_t i, px;
    attn_result r;
    memset(&o, 0, sizeof o); memset(&k, 0, sizeof k);
    o.cell = fz_range(f, 0, 31) == 0 ? fz_range(f, -1, 1) * 100000 : fz_range(f, 0, 5);
    o.format = (attn_image_format)fz_range(f, 0, 3);
    o.colormap = (attn_colormap)fz_range(f, 0, 2);
    o.lo = flags & 1 ? fz_special(fz_u8(f)) : 0.0f;
    o.hi = flags & 2 ? fz_special(fz_u8(f)) : 0.0f;
    px = (size_t)(rows > 0 ? rows : 0) * (size_t)(cols > 0 ? cols : 0) * 36u * 3u; /* cell <= 5: 25 pixels */
    k.cap = flags & 4 ? (size_t)fz_u8(f) * 8u : px + 4096; /* too small: the writer fails */
    k.buf = (unsigned char *)malloc(k.cap + GUARD);
    if (!k.buf) abort();
    memset(k.buf, 0xa5, k.cap + GUARD);
    m = fz_tensor(f, nm, 2.0f, 1);
    fz_patch(f);
    r = attn_image_write(flags & 8 ? NULL : fz_sink_write, &k, flags & 16 ? NULL : m, ms, rows, cols, &o);
    for (i = k.pos; i < k.cap + GUARD; ++i)
        if (k.buf[i] != 0xa5) { fprintf(stderr, "fuzz: image byte %zu written past the %zu reported\n", i, k.pos); abort(); }
    if (k.refused && r != ATTN_ERR_IO) { fprintf(stderr, "fuzz: writer failed, attn_image_write returned %d\n", (int)r); abort(); }
    if (r != ATTN_OK && r != ATTN_ERR_IO && k.calls) { fprintf(stderr, "fuzz: invalid arguments rejected after writing\n"); abort(); }
    if (r == ATTN_OK) {
        const int cell = o.cell ? o.cell : 1, ch = o.format == ATTN_IMAGE_PPM || (o.format == ATTN_IMAGE_PNG && o.colormap == ATTN_COLORMAP_VIRIDIS) ? 3 : 1;
        const size_t data = (size_t)rows * cell * (size_t)cols * cell * ch;
        static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        if (o.format == ATTN_IMAGE_PNG ? k.pos < 8 + data || memcmp(k.buf, png, 8) != 0
                                        : k.pos < 3 + data || k.buf[0] != 'P' || k.buf[1] != (o.format == ATTN_IMAGE_PGM ? '5' : '6')) {
            fprintf(stderr, "fuzz: image of %zu bytes, format %d, %zu pixel bytes\n", k.pos, (int)o.format, data);
            abort();
        }
    }
    free(k.buf);
}

/* ---------------------------------------------------------------------------------------------- */

typedef void (*fz_target)(fz *f);
static const struct { const char *name; fz_target fn; } k_targets[] = {
    {"project", fuzz_project}, {"project_ex", fuzz_project_ex}, {"scores", fuzz_scores}, {"softmax", fuzz_softmax},
    {"weighted_sum", fuzz_weighted_sum}, {"merge", fuzz_merge}, {"rope", fuzz_rope}, {"sdpa", fuzz_sdpa},
    {"sdpa_backward", fuzz_sdpa_backward}, {"self_forward", fuzz_self_forward}, {"cross_forward", fuzz_cross_forward},
    {"align_scores", fuzz_align_scores}, {"align_forward", fuzz_align_forward}, {"hardmax", fuzz_hardmax},
    {"topk", fuzz_topk}, {"sample", fuzz_sample}, {"image_write", fuzz_image_write}};

#ifdef FUZZ_TARGET
#define g_target FUZZ_TARGET /* chosen at build time */
#else
static fz_target g_target; /* chosen by LLVMFuzzerInitialize from the program's name */

/* libFuzzer calls this once, before any input: the harness is the one argv[0] names (fuzz_<name>, any
   directory); another name lists the harnesses and exits */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *prog = *argc > 0 ? (*argv)[0] : "", *base = strrchr(prog, '/');
    size_t t;
    base = base ? base + 1 : prog;
    if (strncmp(base, "fuzz_", 5) == 0)
        for (t = 0; t < sizeof k_targets / sizeof *k_targets; ++t)
            if (strcmp(base + 5, k_targets[t].name) == 0) { g_target = k_targets[t].fn; return 0; }
    fprintf(stderr, "%s: run me as fuzz_<name> (a link to this binary; make fuzz makes them), <name> one of:", prog);
    for (t = 0; t < sizeof k_targets / sizeof *k_targets; ++t) fprintf(stderr, " %s", k_targets[t].name);
    fprintf(stderr, "\n");
    exit(2);
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f;
    memset(&f, 0, sizeof f);
    f.p = data;
    f.n = size;
    f.rng = fz_u8(&f) | fz_u8(&f) << 8 | (uint64_t)fz_u8(&f) << 16; /* the seed of every tensor */
    (void)k_targets;
    g_target(&f);
    fz_free(&f);
    return 0;
}
