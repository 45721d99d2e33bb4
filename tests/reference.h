/* Naive float64 references for attention.h, shared by the test runner (tests/test_attention.c) and the
   fuzz harnesses (tests/fuzz/). Include after attention.h. Each computes in double from the same float32
   inputs, with the documented conventions for masked rows, +inf and NaN. */
#ifndef ATTN_REFERENCE_H
#define ATTN_REFERENCE_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double *ref_dalloc(size_t n)
{
    double *p = (double *)calloc(n ? n : 1, sizeof(double));
    if (!p) abort();
    return p;
}


/* y[n x d_out] = x . W + b; W [d_in x d_out] (in_out) or [d_out x d_in] */
/* Element i of w stored as type t (float32, or float16 / bfloat16 bits), decoded from its definition. */
static double ref_elem(const void *w, attn_dtype t, ptrdiff_t i)
{
    unsigned short h;
    int e, m;
    if (t == ATTN_F32) return ((const float *)w)[i];
    memcpy(&h, (const unsigned short *)w + i, sizeof h);
    if (t == ATTN_BF16) {
        const unsigned x = (unsigned)h << 16;
        float f;
        memcpy(&f, &x, sizeof f);
        return f;
    }
    e = (h >> 10) & 31; m = h & 1023; /* float16: sign, 5-bit exponent, 10-bit fraction */
    if (e == 31) return m ? NAN : (h & 0x8000 ? -INFINITY : INFINITY);
    return (h & 0x8000 ? -1.0 : 1.0) * (e ? ldexp(1024 + m, e - 25) : ldexp(m, -24));
}

static void ref_project(double *y, const float *x, ptrdiff_t xs, const void *w, attn_dtype wt, ptrdiff_t ws,
                        int out_in, const float *b, int n, int d_in, int d_out)
{
    int i, j, k;
    for (i = 0; i < n; ++i)
        for (j = 0; j < d_out; ++j) {
            double acc = b ? b[j] : 0.0;
            for (k = 0; k < d_in; ++k)
                acc += (double)x[i * xs + k] * ref_elem(w, wt, out_in ? j * ws + k : k * ws + j);
            y[i * d_out + j] = acc;
        }
}

/* softmax of one row in float64, with the documented conventions for -inf, +inf and NaN */
static void ref_softmax_row(double *p, double *lse, const double *s, int n)
{
    double m = -INFINITY, sum = 0.0;
    int j, any_nan = 0;
    for (j = 0; j < n; ++j) {
        if (isnan(s[j])) any_nan = 1;
        else if (s[j] > m) m = s[j];
    }
    if (any_nan) {
        for (j = 0; j < n; ++j) p[j] = NAN;
        *lse = NAN;
        return;
    }
    if (m == -INFINITY) {
        for (j = 0; j < n; ++j) p[j] = 0.0;
        *lse = -INFINITY;
        return;
    }
    if (m == INFINITY) {
        for (j = 0; j < n; ++j) sum += s[j] == INFINITY;
        for (j = 0; j < n; ++j) p[j] = (s[j] == INFINITY) / sum;
        *lse = INFINITY;
        return;
    }
    for (j = 0; j < n; ++j) sum += exp(s[j] - m);
    for (j = 0; j < n; ++j) p[j] = exp(s[j] - m) / sum;
    *lse = m + log(sum);
}

typedef struct ref_opts {
    double scale;                 /* in force (not 0) */
    int causal;                   /* attn_causal */
    const float *mask; attn_stride mask_s; /* row stride in force */
    const int *kv_len;
    const unsigned char *kpm;
    int window, window_left, window_right; /* as attn_options: -1 no limit on that side */
    double softcap;                        /* > 0: s = softcap * tanh(s / softcap) before the mask */
    const float *sinks;                    /* [Hq] or NULL: an extra logit in each row's denominator */
    const float *alibi;                    /* [Hq] or NULL: ALiBi slopes, -slope * |g_i - j| after the soft-cap */
} ref_opts;

/* g_i - i, the causal diagonal of batch b: query i sits at key i (top-left) or at i + n - Nq, n the batch's
   valid keys (bottom-right, and without a causal option: the window's and ALiBi's diagonal) */
static long long ref_diag(const ref_opts *o, int b, int Nq, int Nk)
{
    const int n = o->kv_len ? o->kv_len[b] : Nk;
    return o->causal == ATTN_CAUSAL_TOP_LEFT ? 0 : (long long)n - Nq;
}

/* Whether query i of batch b sees key j, from the definitions of the window, kv_len, key padding and
   causal options (base: the query's diagonal offset, ref_diag). */
static int ref_visible(const ref_opts *o, int b, int i, int j, long long base, int Nk)
{
    if (o->window && o->window_left >= 0 && j < i + base - o->window_left) return 0;
    if (o->window && o->window_right >= 0 && j > i + base + o->window_right) return 0;
    if (o->kv_len && j >= o->kv_len[b]) return 0;
    if (o->kpm && o->kpm[b * Nk + j]) return 0;
    if (o->causal == ATTN_CAUSAL_TOP_LEFT && j > i) return 0;
    if (o->causal == ATTN_CAUSAL_BOTTOM_RIGHT && j > i + base) return 0;
    return 1;
}

/* Naive attention. out [B,Hq,Nq,Dv] dense, lse [B,Hq,Nq], w [B,Hq,Nq,Nk] (per head) */
static void ref_sdpa(double *out, double *lse, double *w, const float *q, attn_stride qs, const float *k,
                     attn_stride ks, const float *v, attn_stride vs, const attn_dims *d, const ref_opts *o)
{
    const int B = d->batch, Hq = d->n_heads, Hkv = d->n_kv_heads ? d->n_kv_heads : Hq;
    const int Nq = d->n_q, Nk = d->n_kv, Dk = d->d_k, Dv = d->d_v ? d->d_v : Dk;
    double *s = ref_dalloc((size_t)Nk + 1), *p = ref_dalloc((size_t)Nk + 1);
    int b, h, i, j, c;
    for (b = 0; b < B; ++b)
        for (h = 0; h < Hq; ++h) {
            const long long base = ref_diag(o, b, Nq, Nk);
            const int hk = h / (Hq / Hkv);
            for (i = 0; i < Nq; ++i) {
                const size_t row = ((size_t)b * Hq + h) * Nq + i;
                double l;
                for (j = 0; j < Nk; ++j) {
                    int visible = 1;
                    double acc = 0.0;
                    for (c = 0; c < Dk; ++c)
                        acc += (double)q[b * qs.batch + h * qs.head + i * qs.row + c] *
                               (double)k[b * ks.batch + hk * ks.head + j * ks.row + c];
                    acc *= o->scale;
                    if (o->softcap > 0.0) acc = o->softcap * tanh(acc / o->softcap);
                    if (o->alibi) acc -= o->alibi[h] * fabs((double)(i + base - j));
                    if (o->mask) acc += o->mask[b * o->mask_s.batch + h * o->mask_s.head + i * o->mask_s.row + j];
                    if (!ref_visible(o, b, i, j, base, Nk)) visible = 0;
                    s[j] = visible ? acc : -INFINITY;
                }
                if (o->sinks) s[Nk] = o->sinks[h]; /* the sink: in the denominator, with no value */
                ref_softmax_row(p, &l, s, Nk + (o->sinks != NULL));
                if (lse) lse[row] = l;
                if (w) for (j = 0; j < Nk; ++j) w[row * Nk + j] = p[j];
                for (c = 0; c < Dv; ++c) {
                    double acc = 0.0;
                    for (j = 0; j < Nk; ++j)
                        if (p[j] != 0.0) acc += p[j] * v[b * vs.batch + hk * vs.head + j * vs.row + c];
                    out[row * Dv + c] = acc;
                }
            }
        }
    free(s); free(p);
}

/* The gradients of attention from its definition, in float64 (the backward pass, attn_sdpa_backward).
   For each row i of a (batch b, head h): raw scores u_j = scale q_i . k_j, scores s_j = u_j (soft-capped:
   c tanh(u_j / c)) - ALiBi + mask, -inf where hidden, the sink as one more logit; p = softmax(s) (as
   ref_softmax_row: a fully masked row is all 0); out_i = sum_j p_j v_j. With dO_i given, the chain rule:
       dL/dp_j = dO_i . v_j = dp_j (the sink's value is 0: dp_sink = 0)
       dL/ds_j = p_j (dp_j - sum_k p_k dp_k)                       (the softmax's Jacobian, the sink included)
       dL/du_j = dL/ds_j (1 - tanh^2(u_j / c)), or dL/ds_j without a soft-cap (ALiBi and masks are constants)
       dq_i += scale dL/du_j k_j,  dk_j += scale dL/du_j q_i,  dv_j += p_j dO_i,  dsinks_h += dL/ds_sink.
   dq [B,Hq,Nq,Dk], dk [B,Hkv,Nk,Dk], dv [B,Hkv,Nk,Dv] dense (a kv head sums its query heads); dsinks [Hq]
   or NULL, and dsinks_abs [Hq] (or NULL) the sum of the absolute values of its terms (a sum of terms of both
   signs can only be held to their rounding). */
static void ref_sdpa_backward(double *dq, double *dk, double *dv, double *dsinks, double *dsinks_abs,
                              const float *q, attn_stride qs,
                              const float *k, attn_stride ks, const float *v, attn_stride vs, const float *dout,
                              attn_stride dos, const attn_dims *d, const ref_opts *o)
{
    const int B = d->batch, Hq = d->n_heads, Hkv = d->n_kv_heads ? d->n_kv_heads : Hq;
    const int Nq = d->n_q, Nk = d->n_kv, Dk = d->d_k, Dv = d->d_v ? d->d_v : Dk;
    double *s = ref_dalloc((size_t)Nk + 1), *u = ref_dalloc((size_t)Nk), *p = ref_dalloc((size_t)Nk + 1);
    double *dp = ref_dalloc((size_t)Nk);
    int b, h, i, j, c;
    memset(dq, 0, sizeof(double) * (size_t)B * Hq * Nq * Dk);
    memset(dk, 0, sizeof(double) * (size_t)B * Hkv * Nk * Dk);
    memset(dv, 0, sizeof(double) * (size_t)B * Hkv * Nk * Dv);
    if (dsinks) memset(dsinks, 0, sizeof(double) * (size_t)Hq);
    if (dsinks_abs) memset(dsinks_abs, 0, sizeof(double) * (size_t)Hq);
    for (b = 0; b < B; ++b)
        for (h = 0; h < Hq; ++h) {
            const long long base = ref_diag(o, b, Nq, Nk);
            const int hk = h / (Hq / Hkv);
            for (i = 0; i < Nq; ++i) {
                const float *q_i = q + b * qs.batch + h * qs.head + i * qs.row;
                const float *do_i = dout + b * dos.batch + h * dos.head + i * dos.row;
                double *dq_i = dq + (((size_t)b * Hq + h) * Nq + i) * Dk, l, pdp = 0.0;
                for (j = 0; j < Nk; ++j) {
                    const float *k_j = k + b * ks.batch + hk * ks.head + j * ks.row;
                    int visible = 1;
                    double acc = 0.0;
                    for (c = 0; c < Dk; ++c) acc += (double)q_i[c] * (double)k_j[c];
                    u[j] = acc * o->scale;
                    acc = o->softcap > 0.0 ? o->softcap * tanh(u[j] / o->softcap) : u[j];
                    if (o->alibi) acc -= o->alibi[h] * fabs((double)(i + base - j));
                    if (o->mask) acc += o->mask[b * o->mask_s.batch + h * o->mask_s.head + i * o->mask_s.row + j];
                    if (!ref_visible(o, b, i, j, base, Nk)) visible = 0;
                    s[j] = visible ? acc : -INFINITY;
                }
                if (o->sinks) s[Nk] = o->sinks[h];
                ref_softmax_row(p, &l, s, Nk + (o->sinks != NULL));
                for (j = 0; j < Nk; ++j) {
                    const float *v_j = v + b * vs.batch + hk * vs.head + j * vs.row;
                    double acc = 0.0;
                    for (c = 0; c < Dv; ++c) acc += (double)do_i[c] * (double)v_j[c];
                    dp[j] = acc;
                    pdp += p[j] * acc; /* + p_sink * 0 */
                }
                if (dsinks && o->sinks) dsinks[h] += p[Nk] * (0.0 - pdp);
                if (dsinks_abs && o->sinks) dsinks_abs[h] += fabs(p[Nk] * pdp);
                for (j = 0; j < Nk; ++j) {
                    const float *k_j = k + b * ks.batch + hk * ks.head + j * ks.row;
                    double *dk_j = dk + (((size_t)b * Hkv + hk) * Nk + j) * Dk;
                    double *dv_j = dv + (((size_t)b * Hkv + hk) * Nk + j) * Dv;
                    double ds = p[j] * (dp[j] - pdp), t;
                    if (p[j] == 0.0) continue;
                    if (o->softcap > 0.0) { t = tanh(u[j] / o->softcap); ds *= 1.0 - t * t; }
                    for (c = 0; c < Dk; ++c) {
                        dq_i[c] += o->scale * ds * (double)k_j[c];
                        dk_j[c] += o->scale * ds * (double)q_i[c];
                    }
                    for (c = 0; c < Dv; ++c) dv_j[c] += p[j] * (double)do_i[c];
                }
            }
        }
    free(s); free(u); free(p); free(dp);
}

/* Reference MHA from float64 projections and ref_sdpa (over float-rounded projections? no: the
   projections stay in float64 through the attention). */
static void ref_rope_row(double *x, int D, double pos, const attn_rope *rope);

static void ref_mha(double *out, const float *xq, const float *xkv, int B, int Nq, int Nk, const attn_mha *m,
                    const ref_opts *ro_in)
{
    const int E = m->d_model, H = m->n_heads, Hkv = m->n_kv_heads ? m->n_kv_heads : H, Dh = E / H;
    const int dkv = m->d_kv ? m->d_kv : E, kvd = Hkv * Dh, out_in = m->layout == ATTN_LAYOUT_OUT_IN;
    double *Q = ref_dalloc((size_t)Nq * E), *K = ref_dalloc((size_t)Nk * kvd), *V = ref_dalloc((size_t)Nk * kvd);
    double *A = ref_dalloc((size_t)Nq * E);
    double *s = ref_dalloc((size_t)Nk), *p = ref_dalloc((size_t)Nk);
    /* the weights' row strides as stored (0: dense) */
    const ptrdiff_t wq_rs = m->w_q_stride ? m->w_q_stride : E, wo_rs = m->w_o_stride ? m->w_o_stride : E;
    const ptrdiff_t wk_rs = m->w_k_stride ? m->w_k_stride : out_in ? dkv : kvd;
    const ptrdiff_t wv_rs = m->w_v_stride ? m->w_v_stride : out_in ? dkv : kvd;
    int b, h, i, j, c;
    for (b = 0; b < B; ++b) {
        ref_project(Q, xq + (size_t)b * Nq * E, E, m->w_q, m->w_type, wq_rs, out_in, m->b_q, Nq, E, E);
        ref_project(K, xkv + (size_t)b * Nk * dkv, dkv, m->w_k, m->w_type, wk_rs, out_in, m->b_k, Nk, dkv, kvd);
        ref_project(V, xkv + (size_t)b * Nk * dkv, dkv, m->w_v, m->w_type, wv_rs, out_in, m->b_v, Nk, dkv, kvd);
        for (i = 0; i < Nq; ++i) for (h = 0; h < H; ++h) ref_rope_row(Q + i * E + h * Dh, Dh, i, &m->rope);
        for (j = 0; j < Nk; ++j) for (h = 0; h < Hkv; ++h) ref_rope_row(K + j * kvd + h * Dh, Dh, j, &m->rope);
        for (h = 0; h < H; ++h) {
            const int hk = h / (H / Hkv);
            for (i = 0; i < Nq; ++i) {
                double l;
                for (j = 0; j < Nk; ++j) {
                    double acc = 0.0;
                    int vis = 1;
                    for (c = 0; c < Dh; ++c) acc += Q[i * E + h * Dh + c] * K[j * kvd + hk * Dh + c];
                    acc *= ro_in->scale;
                    if (ro_in->alibi) acc -= ro_in->alibi[h] * fabs((double)(i + ref_diag(ro_in, b, Nq, Nk) - j));
                    if (ro_in->mask) acc += ro_in->mask[b * ro_in->mask_s.batch + h * ro_in->mask_s.head + i * ro_in->mask_s.row + j];
                    if (ro_in->kpm && ro_in->kpm[b * Nk + j]) vis = 0;
                    if (ro_in->kv_len && j >= ro_in->kv_len[b]) vis = 0;
                    if (ro_in->causal == ATTN_CAUSAL_TOP_LEFT && j > i) vis = 0;
                    if (ro_in->causal == ATTN_CAUSAL_BOTTOM_RIGHT && j > i + ref_diag(ro_in, b, Nq, Nk)) vis = 0;
                    s[j] = vis ? acc : -INFINITY;
                }
                ref_softmax_row(p, &l, s, Nk);
                for (c = 0; c < Dh; ++c) {
                    double acc = 0.0;
                    for (j = 0; j < Nk; ++j) if (p[j] != 0.0) acc += p[j] * V[j * kvd + hk * Dh + c];
                    A[i * E + h * Dh + c] = acc;
                }
            }
        }
        for (i = 0; i < Nq; ++i)
            for (j = 0; j < E; ++j) {
                double acc = m->b_o ? m->b_o[j] : 0.0;
                for (c = 0; c < E; ++c) acc += A[i * E + c] * ref_elem(m->w_o, m->w_type, out_in ? j * wo_rs + c : c * wo_rs + j);
                out[((size_t)b * Nq + i) * E + j] = acc;
            }
    }
    free(Q); free(K); free(V); free(A); free(s); free(p);
}

/* ---- classic attention (attn_align_*, attn_hardmax, attn_topk, attn_sample) ---- */

static float *ref_falloc(size_t n)
{
    float *p = (float *)calloc(n ? n : 1, sizeof(float));
    if (!p) abort();
    return p;
}

/* the row stride in force of a weight d_in -> d_out stored as `layout` */
static ptrdiff_t ref_w_rs(ptrdiff_t stride, int out_in, int d_in, int d_out)
{
    return stride ? stride : (out_in ? d_in : d_out);
}

/* the key k_j = W_h h_j + b in float64, d_key wide (DOT: h_j) */
static void ref_align_key(double *k, const attn_align *a, const float *h_j)
{
    const int out_in = a->layout == ATTN_LAYOUT_OUT_IN, ds = a->d_s, dh = a->d_h, da = a->d_a;
    int c;
    if (a->score == ATTN_SCORE_DOT) for (c = 0; c < dh; ++c) k[c] = h_j[c];
    if (a->score == ATTN_SCORE_GENERAL) ref_project(k, h_j, dh, a->w, ATTN_F32, ref_w_rs(a->w_stride, out_in, dh, ds), out_in, a->b, 1, dh, ds);
    if (a->score == ATTN_SCORE_ADDITIVE) ref_project(k, h_j, dh, a->w_h, ATTN_F32, ref_w_rs(a->w_h_stride, out_in, dh, da), out_in, a->b, 1, dh, da);
    if (a->score == ATTN_SCORE_CONCAT) { /* W [0; h_j] + b */
        float *x = ref_falloc((size_t)(ds + dh));
        memcpy(x + ds, h_j, sizeof(float) * dh);
        ref_project(k, x, ds + dh, a->w, ATTN_F32, ref_w_rs(a->w_stride, out_in, ds + dh, da), out_in, a->b, 1, ds + dh, da);
        free(x);
    }
}

/* e = scale * score(s_i, h_j) in float64 from the definitions, the weights read as stored */
static double ref_align_score(const attn_align *a, const float *s_i, const float *h_j)
{
    const int out_in = a->layout == ATTN_LAYOUT_OUT_IN, ds = a->d_s, dh = a->d_h, da = a->d_a;
    double *k = ref_dalloc((size_t)(ds + dh + da)), *q = ref_dalloc((size_t)da), e = 0.0;
    float *x = ref_falloc((size_t)(ds + dh));
    int c;
    if (a->score == ATTN_SCORE_DOT || a->score == ATTN_SCORE_GENERAL) {
        ref_align_key(k, a, h_j);
        for (c = 0; c < ds; ++c) e += (double)s_i[c] * k[c];
    } else if (a->score == ATTN_SCORE_CONCAT) { /* W [s_i; h_j] + b, the concatenation as such */
        memcpy(x, s_i, sizeof(float) * ds);
        memcpy(x + ds, h_j, sizeof(float) * dh);
        ref_project(k, x, ds + dh, a->w, ATTN_F32, ref_w_rs(a->w_stride, out_in, ds + dh, da), out_in, a->b, 1, ds + dh, da);
        for (c = 0; c < da; ++c) e += a->v[c] * tanh(k[c]);
    } else {
        ref_project(q, s_i, ds, a->w_s, ATTN_F32, ref_w_rs(a->w_s_stride, out_in, ds, da), out_in, NULL, 1, ds, da);
        ref_align_key(k, a, h_j);
        for (c = 0; c < da; ++c) e += a->v[c] * tanh(q[c] + k[c]);
    }
    free(k); free(q); free(x);
    return (a->scale != 0.0f ? a->scale : 1.0) * e;
}

/* e [B, Nq, Nk] dense: the masked scores (-inf past src_len) */
static void ref_align_scores(double *e, const attn_align *a, const float *s, attn_stride ss, const float *h,
                             attn_stride hs, int B, int Nq, int Nk, const int *src_len)
{
    int b, i, j;
    for (b = 0; b < B; ++b)
        for (i = 0; i < Nq; ++i)
            for (j = 0; j < Nk; ++j)
                e[((size_t)b * Nq + i) * Nk + j] = src_len && j >= src_len[b] ? -INFINITY
                    : ref_align_score(a, s + b * ss.batch + i * ss.row, h + b * hs.batch + j * hs.row);
}

typedef struct ranked { double v; int j; } ranked;
static int cmp_ranked(const void *pa, const void *pb)
{
    const ranked *a = (const ranked *)pa, *b = (const ranked *)pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return a->j - b->j;
}

/* Reference selection of one row of masked scores (no NaN): the weights p[n], the index (argmax or draw)
   and the log of its softmax weight; order[n] (or NULL) receives the ranking, -1 past the visible keys. */
static void ref_select(double *p, int *idx, double *lp, int *order, const double *e, int n, attn_select mode,
                       int k, double u)
{
    double *soft = ref_dalloc((size_t)n), lse, cum = 0.0, m, sum = 0.0;
    ranked *r = (ranked *)calloc((size_t)n, sizeof(ranked));
    int j, n_vis = 0, pick = -1;
    ref_softmax_row(soft, &lse, e, n);
    for (j = 0; j < n; ++j)
        if (e[j] > -INFINITY) { r[n_vis].v = e[j]; r[n_vis].j = j; ++n_vis; }
    qsort(r, (size_t)n_vis, sizeof *r, cmp_ranked);
    if (order) for (j = 0; j < n; ++j) order[j] = j < n_vis ? r[j].j : -1;
    for (j = 0; j < n; ++j) p[j] = 0.0;
    if (mode == ATTN_SELECT_SAMPLE) {
        for (j = 0; j < n; ++j)
            if (soft[j] > 0.0) { pick = j; cum += soft[j]; if (u < cum) break; }
        if (pick >= 0) p[pick] = 1.0;
    } else {
        pick = n_vis ? r[0].j : -1;
        if (mode == ATTN_SELECT_SOFT) for (j = 0; j < n; ++j) p[j] = soft[j];
        if (mode == ATTN_SELECT_HARD && pick >= 0) p[pick] = 1.0;
        if (mode == ATTN_SELECT_TOPK && n_vis) {
            const int kk = k < n_vis ? k : n_vis;
            m = r[0].v;
            for (j = 0; j < kk; ++j) sum += exp(r[j].v - m);
            for (j = 0; j < kk; ++j) p[r[j].j] = exp(r[j].v - m) / sum;
        }
    }
    *idx = pick;
    *lp = pick >= 0 ? log(soft[pick]) : -INFINITY;
    free(soft); free(r);
}

/* Rotary position embeddings from the definition, in float64: y [B, H, N, D] dense = x [B, H, N, D] (view s)
   with, for each pair p < n_rot/2 at position pos = pos0[b] + t (pos0 NULL: t),
       angle = pos * freq_scale * theta^(-2p/n_rot),  (x_a, x_b) -> (x_a cos - x_b sin, x_a sin + x_b cos),
   a = p, b = p + n_rot/2 for ATTN_ROPE_NEOX; a = 2p, b = 2p + 1 for ATTN_ROPE_GPTJ; the rest copied.
   n_rot 0 = D, theta 0 = 10000, freq_scale 0 = 1, as attn_rope says. */
/* One row x [D] rotated in place to position pos, from RoPE's definition (NONE or NULL: unchanged). */
static void ref_rope_row(double *x, int D, double pos, const attn_rope *rope)
{
    const int style = rope ? (int)rope->style : (int)ATTN_ROPE_NONE;
    const int n_rot = rope && rope->n_rot ? rope->n_rot : D;
    const double theta = rope && rope->theta != 0.0f ? rope->theta : 10000.0;
    const double fs = rope && rope->freq_scale != 0.0f ? rope->freq_scale : 1.0;
    int p;
    if (style == ATTN_ROPE_NONE) return;
    for (p = 0; p < n_rot / 2; ++p) {
        const int ia = style == ATTN_ROPE_NEOX ? p : 2 * p;
        const int ib = style == ATTN_ROPE_NEOX ? p + n_rot / 2 : 2 * p + 1;
        const double angle = pos * fs * pow(theta, -2.0 * p / n_rot);
        const double xa = x[ia], xb = x[ib];
        x[ia] = xa * cos(angle) - xb * sin(angle);
        x[ib] = xa * sin(angle) + xb * cos(angle);
    }
}

static void ref_rope(double *y, const float *x, attn_stride s, int B, int H, int N, int D, const int *pos0,
                     const attn_rope *rope)
{
    int b, h, t, c;
    for (b = 0; b < B; ++b)
        for (h = 0; h < H; ++h)
            for (t = 0; t < N; ++t) {
                const float *xr = x + b * s.batch + h * s.head + t * s.row;
                double *yr = y + (((size_t)b * (size_t)H + (size_t)h) * (size_t)N + (size_t)t) * (size_t)D;
                for (c = 0; c < D; ++c) yr[c] = xr[c];
                ref_rope_row(yr, D, (double)(pos0 ? pos0[b] : 0) + t, rope);
            }
}

#endif /* ATTN_REFERENCE_H */
