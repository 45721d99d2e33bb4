/* Naive float64 references for attention.h, shared by the test runner (tests/test_attention.c) and the
   fuzz harnesses (tests/fuzz/). Include after attention.h. Each computes in double from the same float32
   inputs, with the documented conventions for masked rows, +inf and NaN. */
#ifndef ATTN_REFERENCE_H
#define ATTN_REFERENCE_H

#include <math.h>
#include <stdlib.h>

static double *ref_dalloc(size_t n)
{
    double *p = (double *)calloc(n ? n : 1, sizeof(double));
    if (!p) abort();
    return p;
}


/* y[n x d_out] = x . W + b; W [d_in x d_out] (in_out) or [d_out x d_in] */
static void ref_project(double *y, const float *x, ptrdiff_t xs, const float *w, ptrdiff_t ws, int out_in,
                        const float *b, int n, int d_in, int d_out)
{
    int i, j, k;
    for (i = 0; i < n; ++i)
        for (j = 0; j < d_out; ++j) {
            double acc = b ? b[j] : 0.0;
            for (k = 0; k < d_in; ++k)
                acc += (double)x[i * xs + k] * (out_in ? w[j * ws + k] : w[k * ws + j]);
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
} ref_opts;

/* Naive attention. out [B,Hq,Nq,Dv] dense, lse [B,Hq,Nq], w [B,Hq,Nq,Nk] (per head) */
static void ref_sdpa(double *out, double *lse, double *w, const float *q, attn_stride qs, const float *k,
                     attn_stride ks, const float *v, attn_stride vs, const attn_dims *d, const ref_opts *o)
{
    const int B = d->batch, Hq = d->n_heads, Hkv = d->n_kv_heads ? d->n_kv_heads : Hq;
    const int Nq = d->n_q, Nk = d->n_kv, Dk = d->d_k, Dv = d->d_v ? d->d_v : Dk;
    double *s = ref_dalloc((size_t)Nk), *p = ref_dalloc((size_t)Nk);
    int b, h, i, j, c;
    for (b = 0; b < B; ++b)
        for (h = 0; h < Hq; ++h) {
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
                    if (o->mask) acc += o->mask[b * o->mask_s.batch + h * o->mask_s.head + i * o->mask_s.row + j];
                    if (o->kv_len && j >= o->kv_len[b]) visible = 0;
                    if (o->kpm && o->kpm[b * Nk + j]) visible = 0;
                    if (o->causal == ATTN_CAUSAL_TOP_LEFT && j > i) visible = 0;
                    if (o->causal == ATTN_CAUSAL_BOTTOM_RIGHT && j > i + Nk - Nq) visible = 0;
                    s[j] = visible ? acc : -INFINITY;
                }
                ref_softmax_row(p, &l, s, Nk);
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

/* Reference MHA from float64 projections and ref_sdpa (over float-rounded projections? no: the
   projections stay in float64 through the attention). */
static void ref_mha(double *out, const float *xq, const float *xkv, int B, int Nq, int Nk, const attn_mha *m,
                    const ref_opts *ro_in)
{
    const int E = m->d_model, H = m->n_heads, Hkv = m->n_kv_heads ? m->n_kv_heads : H, Dh = E / H;
    const int dkv = m->d_kv ? m->d_kv : E, kvd = Hkv * Dh, out_in = m->layout == ATTN_LAYOUT_OUT_IN;
    double *Q = ref_dalloc((size_t)Nq * E), *K = ref_dalloc((size_t)Nk * kvd), *V = ref_dalloc((size_t)Nk * kvd);
    double *A = ref_dalloc((size_t)Nq * E);
    double *s = ref_dalloc((size_t)Nk), *p = ref_dalloc((size_t)Nk);
    int b, h, i, j, c;
    for (b = 0; b < B; ++b) {
        ref_project(Q, xq + (size_t)b * Nq * E, E, m->w_q, E, out_in, m->b_q, Nq, E, E);
        ref_project(K, xkv + (size_t)b * Nk * dkv, dkv, m->w_k, out_in ? dkv : kvd, out_in, m->b_k, Nk, dkv, kvd);
        ref_project(V, xkv + (size_t)b * Nk * dkv, dkv, m->w_v, out_in ? dkv : kvd, out_in, m->b_v, Nk, dkv, kvd);
        for (h = 0; h < H; ++h) {
            const int hk = h / (H / Hkv);
            for (i = 0; i < Nq; ++i) {
                double l;
                for (j = 0; j < Nk; ++j) {
                    double acc = 0.0;
                    int vis = 1;
                    for (c = 0; c < Dh; ++c) acc += Q[i * E + h * Dh + c] * K[j * kvd + hk * Dh + c];
                    acc *= ro_in->scale;
                    if (ro_in->mask) acc += ro_in->mask[b * ro_in->mask_s.batch + h * ro_in->mask_s.head + i * ro_in->mask_s.row + j];
                    if (ro_in->kpm && ro_in->kpm[b * Nk + j]) vis = 0;
                    if (ro_in->kv_len && j >= ro_in->kv_len[b]) vis = 0;
                    if (ro_in->causal == ATTN_CAUSAL_TOP_LEFT && j > i) vis = 0;
                    if (ro_in->causal == ATTN_CAUSAL_BOTTOM_RIGHT && j > i + Nk - Nq) vis = 0;
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
                for (c = 0; c < E; ++c) acc += A[i * E + c] * (out_in ? m->w_o[j * E + c] : m->w_o[c * E + j]);
                out[((size_t)b * Nq + i) * E + j] = acc;
            }
    }
    free(Q); free(K); free(V); free(A); free(s); free(p);
}

#endif /* ATTN_REFERENCE_H */
