/* Concurrency check for attention.h, built with -fsanitize=thread (make test-tsan): several pthreads call
   attn_sdpa, attn_self_forward and attn_cross_forward at once on shared read-only inputs, each with its own
   outputs, and run the slices of one split call into one shared output (disjoint rows); built with
   -fopenmp, the calls also run OpenMP teams inside (n_threads 2), nested in the pthreads and from the main
   thread. Every result must equal, bitwise, the one computed serially before the threads start.
   Prints "tsan_concurrent: ok" and exits 0, or names the mismatch and exits 1. */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTENTION_IMPLEMENTATION
#include "../attention.h"

enum { T = 4, ROUNDS = 2 };
/* fused attention: a 32-query tile shape and a decoding shape whose keys are cut into chunks */
enum { B = 2, H = 4, HKV = 2, NQ = 40, NK = 70, D = 24, DQ = 2, NKD = 2100 };
/* multi-head attention */
enum { MB = 2, MN = 19, E = 32, MH = 4 };

static float g_q[B * H * NQ * D], g_k[B * HKV * NKD * D], g_v[B * HKV * NKD * D], g_mask[NQ * NK];
static float g_x[MB * MN * E], g_w[E * E], g_b[E];
static int g_kv_len[B] = {NK - 5, 33};

/* serial results */
static float r_o[B * H * NQ * D], r_lse[B * H * NQ], r_w[B * NQ * NK], r_dec[B * H * DQ * D];
static float r_self[MB * MN * E], r_cross[MB * MN * E];
/* the shared output of the split, each thread writing its own slice */
static float s_o[B * H * NQ * D];

static const attn_dims k_dims = {B, H, HKV, NQ, NK, D, 0}, k_dec = {B, H, HKV, DQ, NKD, D, 0};

static attn_options sdpa_options(float *lse, float *w, int n_threads)
{
    attn_options o;
    memset(&o, 0, sizeof o);
    o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    o.mask = g_mask;
    o.kv_len = g_kv_len;
    o.out_lse = lse;
    o.out_weights = w;
    o.average_weights = 1;
    o.n_threads = n_threads;
    return o;
}

static attn_mha mha_weights(void)
{
    attn_mha m;
    memset(&m, 0, sizeof m);
    m.d_model = E; m.n_heads = MH; m.n_kv_heads = 2;
    m.w_q = g_w; m.w_k = g_w; m.w_v = g_w; m.w_o = g_w; m.b_q = g_b; m.b_o = g_b;
    return m;
}

/* every call of one round into the caller's outputs; returns nonzero when all succeed */
static int run_calls(float *o, float *lse, float *w, float *dec, float *self, float *cross, int n_threads)
{
    const attn_stride qs = attn_stride_bhnd(H, NQ, D), ks = attn_stride_bhnd(HKV, NKD, D);
    const attn_stride ds = attn_stride_bhnd(H, DQ, D);
    attn_options o1 = sdpa_options(lse, w, n_threads), o2;
    attn_mha m = mha_weights();
    memset(&o2, 0, sizeof o2);
    o2.causal = ATTN_CAUSAL_TOP_LEFT;
    o2.n_threads = n_threads;
    return attn_sdpa(o, qs, g_q, qs, g_k, ks, g_v, ks, &k_dims, &o1, NULL, 0) == ATTN_OK &&
           attn_sdpa(dec, ds, g_q, ds, g_k, ks, g_v, ks, &k_dec, &o2, NULL, 0) == ATTN_OK &&
           attn_self_forward(self, g_x, MB, MN, &m, &o2, NULL, 0) == ATTN_OK &&
           attn_cross_forward(cross, g_x, g_x, MB, MN, MN, &m, &o2, NULL, 0) == ATTN_OK;
}

typedef struct worker {
    int index, n_threads, ok;
    float o[B * H * NQ * D], lse[B * H * NQ], w[B * NQ * NK], dec[B * H * DQ * D];
    float self[MB * MN * E], cross[MB * MN * E];
} worker;

static void *work(void *arg)
{
    worker *wk = (worker *)arg;
    const attn_stride qs = attn_stride_bhnd(H, NQ, D), ks = attn_stride_bhnd(HKV, NKD, D);
    int r;
    wk->ok = 1;
    for (r = 0; r < ROUNDS; ++r) {
        attn_options os = sdpa_options(NULL, NULL, 0);
        if (!run_calls(wk->o, wk->lse, wk->w, wk->dec, wk->self, wk->cross, wk->n_threads)) wk->ok = 0;
        os.split_index = wk->index;
        os.split_count = T;
        if (attn_sdpa(s_o, qs, g_q, qs, g_k, ks, g_v, ks, &k_dims, &os, NULL, 0) != ATTN_OK) wk->ok = 0;
    }
    return NULL;
}

static int same(const float *a, const float *b, size_t n, const char *what, int t)
{
    if (memcmp(a, b, n * sizeof *a) == 0) return 1;
    printf("tsan_concurrent: %s of thread %d differs from the serial result\n", what, t);
    return 0;
}

int main(void)
{
    static worker w[T];
    pthread_t th[T];
    unsigned s = 12345u;
    size_t i;
    int t, ok = 1;
#define FILL(a, amp) for (i = 0; i < sizeof a / sizeof *a; ++i) { s = s * 1103515245u + 12345u; a[i] = (amp) * ((float)(s >> 8) / 8388608.0f - 1.0f); }
    FILL(g_q, 1.0f) FILL(g_k, 1.0f) FILL(g_v, 1.0f) FILL(g_mask, 0.5f) FILL(g_x, 1.0f) FILL(g_w, 0.3f) FILL(g_b, 0.3f)
#undef FILL
    if (!run_calls(r_o, r_lse, r_w, r_dec, r_self, r_cross, 1)) { printf("tsan_concurrent: serial call failed\n"); return 1; }
    for (t = 0; t < T; ++t) {
        w[t].index = t;
        w[t].n_threads = 1 + (t & 1); /* with -fopenmp, odd threads run a team of 2 inside */
        if (pthread_create(&th[t], NULL, work, &w[t]) != 0) { printf("tsan_concurrent: pthread_create\n"); return 1; }
    }
    for (t = 0; t < T; ++t) pthread_join(th[t], NULL);
    for (t = 0; t < T; ++t) {
        ok = ok && w[t].ok;
        ok = same(w[t].o, r_o, sizeof r_o / sizeof *r_o, "attn_sdpa output", t) && ok;
        ok = same(w[t].lse, r_lse, sizeof r_lse / sizeof *r_lse, "attn_sdpa lse", t) && ok;
        ok = same(w[t].w, r_w, sizeof r_w / sizeof *r_w, "attn_sdpa weights", t) && ok;
        ok = same(w[t].dec, r_dec, sizeof r_dec / sizeof *r_dec, "decoding output", t) && ok;
        ok = same(w[t].self, r_self, sizeof r_self / sizeof *r_self, "attn_self_forward", t) && ok;
        ok = same(w[t].cross, r_cross, sizeof r_cross / sizeof *r_cross, "attn_cross_forward", t) && ok;
    }
    ok = same(s_o, r_o, sizeof r_o / sizeof *r_o, "split output", -1) && ok;
    /* OpenMP teams from the main thread (one thread without -fopenmp) */
    {
        static worker m;
        ok = run_calls(m.o, m.lse, m.w, m.dec, m.self, m.cross, 3) && ok;
        ok = same(m.o, r_o, sizeof r_o / sizeof *r_o, "attn_sdpa output, 3 threads", -1) && ok;
        ok = same(m.dec, r_dec, sizeof r_dec / sizeof *r_dec, "decoding output, 3 threads", -1) && ok;
        ok = same(m.self, r_self, sizeof r_self / sizeof *r_self, "attn_self_forward, 3 threads", -1) && ok;
    }
    printf("tsan_concurrent: %s (%s kernels, %d pthreads)\n", ok ? "ok" : "FAILED", attn_simd_name(), T);
    return ok ? 0 : 1;
}
