/* bench.c - attention.h benchmark: fused attention, multi-head attention and decoding against the
   machine's own FMA peak and DRAM read bandwidth, measured in the same run; a naive triple-loop reference
   and, with -DBENCH_OPENBLAS, the classic composition sgemm -> softmax -> sgemm.

   Build (from the repository root; see bench/README.md):
       cc -std=c99 -O2 -march=native -fopenmp -o build/bench bench/bench.c -lm
       cc -std=c99 -O2 -march=native -fopenmp -DBENCH_OPENBLAS -o build/bench bench/bench.c -lopenblas -lm
   Run:
       ./build/bench [--quick] [--long] [--filter=WORD] [--threads=1,2] [--reps=N] [--naive-all|--no-naive]

   Output: a readable table as the cases run, then one line per measurement that starts with "bench:" and
   holds key=value pairs (op, impl, name, B, H, Hkv, Nq, Nk, D, causal, threads, ms, gflops, pct_peak, gbps,
   pct_bw, ...). */

#define _GNU_SOURCE /* clock_gettime, getrusage, madvise, posix_memalign under -std=c99 */

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#ifdef BENCH_OPENBLAS
#include <cblas.h>
#endif

#define ATTENTION_IMPLEMENTATION
#include "../attention.h"

/* attn_options.n_threads (0 = every OpenMP thread, 1 = serial) arrived in attention.h 0.2. With an older
   header (or BENCH_HAS_N_THREADS undefined) the thread count reaches the library through
   omp_set_num_threads alone, which it honours as well. */
#if !defined(BENCH_HAS_N_THREADS) && (ATTN_VERSION_MAJOR > 0 || ATTN_VERSION_MINOR >= 2)
#define BENCH_HAS_N_THREADS 1
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Settings, timing, memory                                                                       */
/* ---------------------------------------------------------------------------------------------- */

#define MAX_THREAD_COUNTS 8
#define MAX_RESULTS 512

static struct {
    int quick, long_cases, naive_all, no_naive, hugepages, reps;
    size_t l3_bytes;   /* last-level cache size, for the eviction buffer */
    float *evict;      /* eviction buffer: 2 x L3 (at least 64 MiB), read before each decoding run */
    size_t evict_n;
    const char *filter;
    int threads[MAX_THREAD_COUNTS], n_threads;
    double peak[MAX_THREAD_COUNTS]; /* GFLOP/s per entry of threads[] (0: not measured) */
    double bw[MAX_THREAD_COUNTS];   /* GB/s, best pass (0: not measured) */
} g;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what)
{
    fprintf(stderr, "bench: %s\n", what);
    exit(1);
}

#define CHECK(call)                                                                                  \
    do {                                                                                             \
        attn_result r_ = (call);                                                                     \
        if (r_ != ATTN_OK) {                                                                         \
            fprintf(stderr, "bench: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,                     \
                    attn_result_string(r_));                                                         \
            abort();                                                                                 \
        }                                                                                            \
    } while (0)

/* 64-byte aligned; blocks of 4 MiB and more are 2 MiB aligned and asked for transparent huge pages
   (unless --no-hugepages), the DRAM bandwidth arrays and the decoding cache alike. */
static void *bench_alloc(size_t bytes)
{
    void *p = NULL;
    const size_t align = bytes >= ((size_t)4 << 20) ? ((size_t)2 << 20) : 64;
    if (posix_memalign(&p, align, bytes ? bytes : 1) != 0) die("out of memory");
#ifdef MADV_HUGEPAGE
    if (align > 64 && g.hugepages) (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

static uint64_t rng_state; /* seeded per case from its name: the same inputs whatever --filter selects */

static void rng_seed(const char *name)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *name; ++name) h = (h ^ (unsigned char)*name) * 1099511628211ull;
    rng_state = h;
}

static float rng_uniform(void) /* [-1, 1) */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) * (2.0 / 16777216.0) - 1.0);
}

static float *alloc_random(size_t n, float scale)
{
    float *p = (float *)bench_alloc(n * sizeof(float));
    size_t i;
    for (i = 0; i < n; ++i) p[i] = scale * rng_uniform();
    return p;
}

static float *alloc_zero(size_t n)
{
    float *p = (float *)bench_alloc(n * sizeof(float));
    memset(p, 0, n * sizeof(float));
    return p;
}

static void set_threads(int t)
{
#ifdef _OPENMP
    omp_set_num_threads(t);
#endif
#ifdef BENCH_OPENBLAS
    openblas_set_num_threads(t);
#endif
    (void)t;
}

static int thread_index(int t)
{
    int i;
    for (i = 0; i < g.n_threads; ++i)
        if (g.threads[i] == t) return i;
    return -1;
}

/* ---------------------------------------------------------------------------------------------- */
/* Results: one table row as each is measured, one "bench:" line each at the end                  */
/* ---------------------------------------------------------------------------------------------- */

typedef struct result {
    char name[40];
    const char *op, *impl;
    int B, H, Hkv, Nq, Nk, D, causal, d_model, threads, reps, window;
    int d_out, layout; /* gemv */
    attn_dtype kv;     /* decode: K and V element type */
    double ms, flops, bytes, gflops, pct_peak, gbps, pct_bw;
    double vs_1t;    /* ms with 1 thread / ms (same impl and case), 0 if n/a */
    double attn_x;   /* ms / attention.h's ms (same case and threads), 0 if n/a */
    double err;      /* max |out - attention.h out| / max |attention.h out|, < 0 if n/a */
    double other_rate; /* peak: GFLOP/s of the median run (the headline is the best); bw: GB/s of the best
                          pass (the headline is the median, as for every case) */
    const char *simd;
    double ws_bytes, rss_growth, inputs_bytes; /* mem only */
} result;

static result results[MAX_RESULTS];
static int n_results;

static const result *find_result(const char *name, const char *impl, int threads)
{
    int i;
    for (i = 0; i < n_results; ++i)
        if (!strcmp(results[i].name, name) && !strcmp(results[i].impl, impl) && results[i].threads == threads)
            return &results[i];
    return NULL;
}

static void print_table_header(void)
{
    printf("\n%-26s %-11s %3s %2s %3s %3s %5s %5s %4s %1s %10s %8s %6s %7s %5s %5s %6s %8s\n", "case", "impl",
           "thr", "B", "Hq", "Hkv", "Nq", "Nk", "D", "c", "ms", "GFLOP/s", "%peak", "GB/s", "%bw", "x1t",
           "xattn", "err");
    printf("%-26s %-11s %3s %2s %3s %3s %5s %5s %4s %1s %10s %8s %6s %7s %5s %5s %6s %8s\n",
           "--------------------------", "-----------", "---", "--", "---", "---", "-----", "-----", "----", "-",
           "----------", "--------", "------", "-------", "-----", "-----", "------", "--------");
}

/* Completes the derived fields of r from ms, flops and bytes, prints its table row and stores it. */
static void record(result r)
{
    const int ti = thread_index(r.threads);
    const double peak = ti >= 0 ? g.peak[ti] : 0.0, bw = ti >= 0 ? g.bw[ti] : 0.0;
    const result *one, *ref;
    char c_ms[16], c_gf[16], c_pp[16], c_gb[16], c_pb[16], c_1t[16], c_ax[16], c_err[16];
    r.gflops = r.flops > 0 ? r.flops / (r.ms * 1e6) : 0.0;
    r.pct_peak = peak > 0 ? 100.0 * r.gflops / peak : 0.0;
    r.gbps = r.bytes > 0 ? r.bytes / (r.ms * 1e6) : 0.0;
    r.pct_bw = r.bytes > 0 && bw > 0 ? 100.0 * r.gbps / bw : 0.0;
    one = r.threads > 1 ? find_result(r.name, r.impl, 1) : NULL;
    r.vs_1t = one ? one->ms / r.ms : 0.0;
    ref = strcmp(r.impl, "attention.h") ? find_result(r.name, "attention.h", r.threads) : NULL;
    r.attn_x = ref ? r.ms / ref->ms : 0.0;
    if (n_results == MAX_RESULTS) die("too many results");
    results[n_results++] = r;

    snprintf(c_ms, sizeof c_ms, "%.3f", r.ms);
    snprintf(c_gf, sizeof c_gf, r.flops > 0 ? "%.1f" : "-", r.gflops);
    snprintf(c_pp, sizeof c_pp, r.flops > 0 && peak > 0 ? "%.1f" : "-", r.pct_peak);
    snprintf(c_gb, sizeof c_gb, r.bytes > 0 ? "%.1f" : "-", r.gbps);
    snprintf(c_pb, sizeof c_pb, r.bytes > 0 && bw > 0 ? "%.1f" : "-", r.pct_bw);
    snprintf(c_1t, sizeof c_1t, r.vs_1t > 0 ? "%.2f" : "-", r.vs_1t);
    snprintf(c_ax, sizeof c_ax, r.attn_x > 0 ? "%.2f" : "-", r.attn_x);
    snprintf(c_err, sizeof c_err, r.err >= 0 ? "%.1e" : "-", r.err);
    printf("%-26s %-11s %3d %2d %3d %3d %5d %5d %4d %1d %10s %8s %6s %7s %5s %5s %6s %8s\n", r.name, r.impl,
           r.threads, r.B, r.H, r.Hkv, r.Nq, r.Nk, r.D, r.causal, c_ms, c_gf, c_pp, c_gb, c_pb, c_1t, c_ax, c_err);
    fflush(stdout);
    if (r.err > 1e-3) fprintf(stderr, "bench: warning: %s %s threads=%d differs from attention.h by %.2e\n",
                              r.name, r.impl, r.threads, r.err);
}

static void print_bench_lines(void)
{
    int i;
    printf("\n");
    for (i = 0; i < n_results; ++i) {
        const result *r = &results[i];
        printf("bench: op=%s impl=%s name=%s B=%d H=%d Hkv=%d Nq=%d Nk=%d D=%d causal=%d threads=%d ms=%.4f "
               "gflops=%.2f pct_peak=%.1f",
               r->op, r->impl, r->name, r->B, r->H, r->Hkv, r->Nq, r->Nk, r->D, r->causal, r->threads, r->ms,
               r->gflops, r->pct_peak);
        if (r->bytes > 0) printf(" gbps=%.2f pct_bw=%.1f bytes=%.0f", r->gbps, r->pct_bw, r->bytes);
        if (!strcmp(r->op, "peak")) printf(" gflops_median=%.2f", r->other_rate);
        if (!strcmp(r->op, "bw")) printf(" gbps_best=%.2f", r->other_rate);
        if (r->d_model > 0) printf(" d_model=%d", r->d_model);
        if (!strcmp(r->op, "sdpa"))
            printf(" window=%d dtype=%s%s", r->window, r->kv == ATTN_F16 ? "f16" : r->kv == ATTN_BF16 ? "bf16" : "f32",
                   r->kv == ATTN_BF16 && attn_simd_bf16dot() ? " bf16dot=1" : "");
        if (!strncmp(r->op, "decode", 6))
            printf(" kv=%s", r->kv == ATTN_F16 ? "f16" : r->kv == ATTN_BF16 ? "bf16" : r->kv == ATTN_Q8 ? "q8" : "f32");
        if (!strcmp(r->op, "gemv"))
            printf(" d_in=%d d_out=%d layout=%s dtype=%s", r->d_model, r->d_out, r->layout ? "out_in" : "in_out",
                   r->kv == ATTN_BF16 ? "bf16" : "f32");
        if (r->flops > 0) printf(" flops=%.0f", r->flops);
        printf(" reps=%d", r->reps);
        if (r->vs_1t > 0) printf(" speedup_vs_1t=%.3f", r->vs_1t);
        if (r->attn_x > 0) printf(" attn_speedup=%.3f", r->attn_x);
        if (r->err >= 0) printf(" err=%.2e", r->err);
        if (r->simd) printf(" simd=%s", r->simd);
        if (!strcmp(r->op, "mem"))
            printf(" workspace_bytes=%.0f rss_growth_bytes=%.0f inputs_bytes=%.0f", r->ws_bytes, r->rss_growth,
                   r->inputs_bytes);
        printf("\n");
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* The machine: FMA peak and DRAM read bandwidth                                                  */
/* ---------------------------------------------------------------------------------------------- */

/* 12 independent FMA chains (latency 4 x 2 FMA units needs >= 8 in flight). Returns a value that
   depends on every chain, so that nothing is optimised away. */
#if defined(__AVX512F__)
#define FMA_SIMD "avx512"
#define FMA_FLOPS_PER_ITER (12.0 * 2.0 * 16.0)
static float fma_chains(long iters)
{
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    __m512 a0 = _mm512_set1_ps(0.10f), a1 = _mm512_set1_ps(0.11f), a2 = _mm512_set1_ps(0.12f);
    __m512 a3 = _mm512_set1_ps(0.13f), a4 = _mm512_set1_ps(0.14f), a5 = _mm512_set1_ps(0.15f);
    __m512 a6 = _mm512_set1_ps(0.16f), a7 = _mm512_set1_ps(0.17f), a8 = _mm512_set1_ps(0.18f);
    __m512 a9 = _mm512_set1_ps(0.19f), a10 = _mm512_set1_ps(0.20f), a11 = _mm512_set1_ps(0.21f);
    long i;
    for (i = 0; i < iters; ++i) {
        a0 = _mm512_fmadd_ps(a0, m, c); a1 = _mm512_fmadd_ps(a1, m, c); a2 = _mm512_fmadd_ps(a2, m, c);
        a3 = _mm512_fmadd_ps(a3, m, c); a4 = _mm512_fmadd_ps(a4, m, c); a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c); a7 = _mm512_fmadd_ps(a7, m, c); a8 = _mm512_fmadd_ps(a8, m, c);
        a9 = _mm512_fmadd_ps(a9, m, c); a10 = _mm512_fmadd_ps(a10, m, c); a11 = _mm512_fmadd_ps(a11, m, c);
    }
    a0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                       _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    a8 = _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11));
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a8));
}
#elif defined(__AVX2__) && defined(__FMA__)
#define FMA_SIMD "avx2"
#define FMA_FLOPS_PER_ITER (12.0 * 2.0 * 8.0)
static float fma_chains(long iters)
{
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    __m256 a0 = _mm256_set1_ps(0.10f), a1 = _mm256_set1_ps(0.11f), a2 = _mm256_set1_ps(0.12f);
    __m256 a3 = _mm256_set1_ps(0.13f), a4 = _mm256_set1_ps(0.14f), a5 = _mm256_set1_ps(0.15f);
    __m256 a6 = _mm256_set1_ps(0.16f), a7 = _mm256_set1_ps(0.17f), a8 = _mm256_set1_ps(0.18f);
    __m256 a9 = _mm256_set1_ps(0.19f), a10 = _mm256_set1_ps(0.20f), a11 = _mm256_set1_ps(0.21f);
    float tmp[8], s = 0.0f;
    long i;
    int k;
    for (i = 0; i < iters; ++i) {
        a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c); a10 = _mm256_fmadd_ps(a10, m, c); a11 = _mm256_fmadd_ps(a11, m, c);
    }
    a0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                       _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    a8 = _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11));
    _mm256_storeu_ps(tmp, _mm256_add_ps(a0, a8));
    for (k = 0; k < 8; ++k) s += tmp[k];
    return s;
}
#else
#define FMA_SIMD "scalar"
#define FMA_FLOPS_PER_ITER (12.0 * 2.0)
static float fma_chains(long iters) /* a multiply and an add (fused only where the target has FMA) */
{
    float a[12];
    long i;
    int k;
    for (k = 0; k < 12; ++k) a[k] = 0.1f + 0.01f * (float)k;
    for (i = 0; i < iters; ++i)
        for (k = 0; k < 12; ++k) a[k] = a[k] * 0.999999f + 1e-6f;
    for (k = 1; k < 12; ++k) a[0] += a[k];
    return a[0];
}
#endif

static volatile float bench_sink; /* keeps the microbenchmarks' results alive */

#define PEAK_ITERS (1L << 25) /* per thread and run: ~70 ms with AVX-512 at ~2.8 GHz */
#define PEAK_CHUNK (1L << 20)

/* GFLOP/s of t threads running fma_chains over t * PEAK_ITERS iterations handed out in chunks of
   PEAK_CHUNK (dynamic), so that a thread slowed down by other work on the host does not hold the other
   back: the figure is the sum of what each thread delivers, as for a dynamically scheduled kernel. The
   best of repeated runs after a warm-up (other work only ever slows a run down, so the fastest is the
   closest to the ceiling); the median goes to *median_out. */
static double measure_peak(int t, int *reps_out, double *median_out)
{
    const long chunks = (long)t * (PEAK_ITERS / PEAK_CHUNK);
    const double flops = (double)chunks * (double)PEAK_CHUNK * FMA_FLOPS_PER_ITER;
    double ms[9], best;
    const int reps = g.quick ? 5 : 7;
    int i, rep;
    for (rep = -1; rep < reps; ++rep) {
        float sum = 0.0f;
        const double t0 = now_s();
        long c;
#ifdef _OPENMP
#pragma omp parallel for num_threads(t) schedule(dynamic, 1) reduction(+ : sum)
#endif
        for (c = 0; c < chunks; ++c) sum += fma_chains(PEAK_CHUNK);
        if (rep >= 0) ms[rep] = 1e3 * (now_s() - t0);
        bench_sink = sum;
    }
    (void)t;
    *reps_out = reps;
    best = ms[0];
    for (i = 1; i < reps; ++i) best = ms[i] < best ? ms[i] : best;
    *median_out = flops / (median(ms, reps) * 1e6);
    return flops / (best * 1e6);
}

/* Sum of a[0..n) + b[0..n): two read streams, like K and V. n is a multiple of 64. */
static float read2(const float *a, const float *b, size_t n)
{
    size_t i;
#if defined(__AVX512F__)
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (i = 0; i < n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_add_ps(_mm512_load_ps(a + i), _mm512_load_ps(b + i)));
        s1 = _mm512_add_ps(s1, _mm512_add_ps(_mm512_load_ps(a + i + 16), _mm512_load_ps(b + i + 16)));
        s2 = _mm512_add_ps(s2, _mm512_add_ps(_mm512_load_ps(a + i + 32), _mm512_load_ps(b + i + 32)));
        s3 = _mm512_add_ps(s3, _mm512_add_ps(_mm512_load_ps(a + i + 48), _mm512_load_ps(b + i + 48)));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    float tmp[8], s = 0.0f;
    int k;
    for (i = 0; i < n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_add_ps(_mm256_load_ps(a + i), _mm256_load_ps(b + i)));
        s1 = _mm256_add_ps(s1, _mm256_add_ps(_mm256_load_ps(a + i + 8), _mm256_load_ps(b + i + 8)));
        s2 = _mm256_add_ps(s2, _mm256_add_ps(_mm256_load_ps(a + i + 16), _mm256_load_ps(b + i + 16)));
        s3 = _mm256_add_ps(s3, _mm256_add_ps(_mm256_load_ps(a + i + 24), _mm256_load_ps(b + i + 24)));
    }
    _mm256_storeu_ps(tmp, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (k = 0; k < 8; ++k) s += tmp[k];
    return s;
#else
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (i = 0; i < n; i += 4) {
        s0 += a[i] + b[i]; s1 += a[i + 1] + b[i + 1];
        s2 += a[i + 2] + b[i + 2]; s3 += a[i + 3] + b[i + 3];
    }
    return (s0 + s1) + (s2 + s3);
#endif
}

/* Bytes of each of the two streams: 512 MiB, or twice the last-level cache if that is larger. */
static size_t bw_array_bytes(void)
{
    const size_t base = (size_t)512 << 20;
    return 2 * g.l3_bytes > base ? ((2 * g.l3_bytes) + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1) : base;
}

#define BW_CHUNK ((size_t)1 << 18) /* floats of each stream per work item: 1 MiB */

/* DRAM read bandwidth in GB/s of t threads reading both arrays in 1 MiB chunks handed out dynamically
   (as for the peak: a slowed-down thread does not hold the other back): the median of several passes after
   a warm-up pass, like the ms of every case (pct_bw compares median with median); the best pass goes to
   *best_out. n is a multiple of 64. */
static double measure_bw(const float *a, const float *b, size_t n, int t, double *best_out, int *reps_out)
{
    double ms[9];
    const int reps = g.quick ? 4 : 7;
    const double bytes = 2.0 * (double)n * sizeof(float);
    const long chunks = (long)((n + BW_CHUNK - 1) / BW_CHUNK);
    int rep;
    for (rep = -1; rep < reps; ++rep) {
        float sum = 0.0f;
        const double t0 = now_s();
        long c;
#ifdef _OPENMP
#pragma omp parallel for num_threads(t) schedule(dynamic, 1) reduction(+ : sum)
#endif
        for (c = 0; c < chunks; ++c) {
            const size_t lo = (size_t)c * BW_CHUNK, hi = lo + BW_CHUNK < n ? lo + BW_CHUNK : n;
            sum += read2(a + lo, b + lo, hi - lo);
        }
        if (rep >= 0) ms[rep] = 1e3 * (now_s() - t0);
        bench_sink = sum;
    }
    (void)t;
    *reps_out = reps;
    {
        double lo = ms[0];
        int i;
        for (i = 1; i < reps; ++i) lo = ms[i] < lo ? ms[i] : lo;
        *best_out = bytes / (lo * 1e6);
        return bytes / (median(ms, reps) * 1e6);
    }
}

/* Measures the DRAM read bandwidth for every thread count into g.bw (the figure of every later %bw),
   records one bw result each (name dram_read_2x<size>MiB<suffix>) and prints them after indent. Run at the
   start and again right before the decoding case: the host's bandwidth drifts from minute to minute, and
   a decode is compared with the bandwidth of its own minute. */
static void measure_machine_bw(const char *suffix, const char *indent)
{
    const size_t bw_bytes = bw_array_bytes(), n = bw_bytes / sizeof(float);
    float *a = (float *)bench_alloc(bw_bytes), *b = (float *)bench_alloc(bw_bytes);
    size_t j;
    int ti;
    for (j = 0; j < n; ++j) {
        a[j] = (float)(j & 1023) * 1e-3f;
        b[j] = (float)(j & 511) * 1e-3f;
    }
    for (ti = 0; ti < g.n_threads; ++ti) {
        result r;
        const int t = g.threads[ti];
        memset(&r, 0, sizeof r);
        snprintf(r.name, sizeof r.name, "dram_read_2x%zuMiB%s", bw_bytes >> 20, suffix);
        r.op = "bw";
        r.impl = "machine";
        r.threads = t;
        r.err = -1.0;
        r.bytes = 2.0 * (double)bw_bytes;
        g.bw[ti] = measure_bw(a, b, n, t, &r.other_rate, &r.reps);
        r.gbps = g.bw[ti];
        r.pct_bw = 100.0;
        r.ms = r.bytes / (r.gbps * 1e6);
        if (n_results == MAX_RESULTS) die("too many results");
        results[n_results++] = r;
        printf("%sDRAM read, %d thread%s: %7.1f GB/s    (median of %d; best %.1f)%s\n", indent, t, t > 1 ? "s" : " ",
               g.bw[ti], r.reps, r.other_rate, *suffix ? ", for the %bw of the decoding rows" : "");
    }
    free(a);
    free(b);
}

/* ---------------------------------------------------------------------------------------------- */
/* The cases                                                                                      */
/* ---------------------------------------------------------------------------------------------- */

typedef struct bench_case {
    const char *name, *op; /* op: sdpa, sdpa_bwd, mha, proj, decode, mem, gemv */
    int B, Hq, Hkv, Nq, Nk, D;
    attn_causal causal;
    int d_model;      /* mha and proj: d_model = Hq * D */
    int naive;        /* 1: the naive reference runs by default; 0: only with --naive-all (too slow) */
    int skip_quick;   /* not with --quick */
    int long_only;    /* only with --long */
    int window;       /* > 0: a sliding window of this many keys ending at the causal diagonal (Mistral's
                         sliding_window: window_left = window - 1, window_right = 0) */
    attn_dtype kv;    /* decode: the element type of K and V (attn_options.k_type, v_type); sdpa: of q, k, v and out */
} bench_case;

static const bench_case cases[] = {
    {"mem_n32768_d64_causal", "mem", 1, 1, 1, 32768, 32768, 64, ATTN_CAUSAL_TOP_LEFT, 0, 0, 0, 1, 0, ATTN_F32},
    {"sdpa_n2048_d64", "sdpa", 1, 8, 8, 2048, 2048, 64, ATTN_CAUSAL_NONE, 0, 1, 0, 0, 0, ATTN_F32},
    {"sdpa_n2048_d64_causal", "sdpa", 1, 8, 8, 2048, 2048, 64, ATTN_CAUSAL_TOP_LEFT, 0, 1, 0, 0, 0, ATTN_F32},
    {"sdpa_n2048_d128", "sdpa", 1, 8, 8, 2048, 2048, 128, ATTN_CAUSAL_NONE, 0, 1, 0, 0, 0, ATTN_F32},
    {"sdpa_n512_d64", "sdpa", 1, 8, 8, 512, 512, 64, ATTN_CAUSAL_NONE, 0, 1, 0, 0, 0, ATTN_F32},
    {"sdpa_n8192_d64", "sdpa", 1, 8, 8, 8192, 8192, 64, ATTN_CAUSAL_NONE, 0, 0, 1, 0, 0, ATTN_F32},
    /* the sliding window: the same causal shape with and without a window of 1024 keys */
    {"sdpa_n8192_d64_causal", "sdpa", 1, 8, 8, 8192, 8192, 64, ATTN_CAUSAL_TOP_LEFT, 0, 0, 0, 0, 0, ATTN_F32},
    {"sdpa_n8192_d64_causal_w1024", "sdpa", 1, 8, 8, 8192, 8192, 64, ATTN_CAUSAL_TOP_LEFT, 0, 0, 0, 0, 1024, ATTN_F32},
    {"gqa_h32_kv8_n2048_d128", "sdpa", 1, 32, 8, 2048, 2048, 128, ATTN_CAUSAL_NONE, 0, 0, 0, 0, 0, ATTN_F32},
    /* dtype=bf16: q, k, v and out in bfloat16 (vdpbf16ps products where the CPU has AVX512_BF16, bf16dot=1) */
    {"sdpa_n2048_d64_bf16", "sdpa", 1, 8, 8, 2048, 2048, 64, ATTN_CAUSAL_NONE, 0, 0, 0, 0, 0, ATTN_BF16},
    {"sdpa_n2048_d128_bf16", "sdpa", 1, 8, 8, 2048, 2048, 128, ATTN_CAUSAL_NONE, 0, 0, 0, 0, 0, ATTN_BF16},
    /* the backward pass (attn_sdpa_backward: dq, dk, dv from q, k, v, out, lse and dout), FLOPs counted as
       2.5x the forward's (five products instead of two: 10 B H Nq Nk D, half when causal) */
    {"sdpa_bwd_n2048_d64", "sdpa_bwd", 1, 8, 8, 2048, 2048, 64, ATTN_CAUSAL_NONE, 0, 0, 0, 0, 0, ATTN_F32},
    {"sdpa_bwd_n2048_d64_causal", "sdpa_bwd", 1, 8, 8, 2048, 2048, 64, ATTN_CAUSAL_TOP_LEFT, 0, 0, 0, 0, 0, ATTN_F32},
    {"sdpa_bwd_n2048_d128", "sdpa_bwd", 1, 8, 8, 2048, 2048, 128, ATTN_CAUSAL_NONE, 0, 0, 0, 0, 0, ATTN_F32},
    {"sdpa_bwd_n2048_d128_causal", "sdpa_bwd", 1, 8, 8, 2048, 2048, 128, ATTN_CAUSAL_TOP_LEFT, 0, 0, 0, 0, 0, ATTN_F32},
    {"mha_d512_h8_n2048", "mha", 1, 8, 8, 2048, 2048, 64, ATTN_CAUSAL_NONE, 512, 1, 0, 0, 0, ATTN_F32},
    {"mha_proj_d512_n2048", "proj", 1, 8, 8, 2048, 2048, 64, ATTN_CAUSAL_NONE, 512, 0, 0, 0, 0, ATTN_F32},
    /* multi-head attention's own projections (the internal attn__project: packed weights, threads by row
       blocks) on the four shapes of mha_proj; attention.h only */
    {"mha_proj_inside_d512_n2048", "projmha", 1, 8, 8, 2048, 2048, 64, ATTN_CAUSAL_NONE, 512, 0, 0, 0, 0, ATTN_F32},
    {"decode_h32_d128_kv8192", "decode", 1, 32, 32, 1, 8192, 128, ATTN_CAUSAL_BOTTOM_RIGHT, 0, 1, 0, 0, 0, ATTN_F32},
    /* the same with a float16 and a bfloat16 cache: half the bytes (no naive reference: it reads floats) */
    {"decode_h32_d128_kv8192_f16", "decode", 1, 32, 32, 1, 8192, 128, ATTN_CAUSAL_BOTTOM_RIGHT, 0, 0, 0, 0, 0, ATTN_F16},
    {"decode_h32_d128_kv8192_bf16", "decode", 1, 32, 32, 1, 8192, 128, ATTN_CAUSAL_BOTTOM_RIGHT, 0, 0, 0, 0, 0, ATTN_BF16},
    /* and 8-bit blocks (ATTN_Q8: a float32 scale per 32 int8, 1.125 bytes a value) */
    {"decode_h32_d128_kv8192_q8", "decode", 1, 32, 32, 1, 8192, 128, ATTN_CAUSAL_BOTTOM_RIGHT, 0, 0, 0, 0, 0, ATTN_Q8},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* op=gemv: a one-row attn_project_ex (a decoding step's projection) d_in -> d_out, W out of cache; pct_bw
   of W's bytes. A table of its own: the shape is a projection's, not an attention's. */
typedef struct gemv_case {
    const char *name;
    int d_in, d_out;
    attn_layout layout;
    attn_dtype w_type; /* W's element type (attn_options.w_type): float32, or bfloat16 (half the bytes) */
} gemv_case;

static const gemv_case gemv_cases[] = {
    {"gemv_in_out_4096x4096", 4096, 4096, ATTN_LAYOUT_IN_OUT, ATTN_F32},
    {"gemv_out_in_4096x4096", 4096, 4096, ATTN_LAYOUT_OUT_IN, ATTN_F32},
    {"gemv_in_out_768x3072", 768, 3072, ATTN_LAYOUT_IN_OUT, ATTN_F32},
    {"gemv_out_in_768x3072", 768, 3072, ATTN_LAYOUT_OUT_IN, ATTN_F32},
    {"gemv_in_out_4096x4096_bf16", 4096, 4096, ATTN_LAYOUT_IN_OUT, ATTN_BF16},
    {"gemv_out_in_4096x4096_bf16", 4096, 4096, ATTN_LAYOUT_OUT_IN, ATTN_BF16},
};
#define N_GEMV_CASES ((int)(sizeof gemv_cases / sizeof gemv_cases[0]))

static int gemv_selected(const gemv_case *c)
{
    return !g.filter || strstr(c->name, g.filter) || strstr("gemv", g.filter);
}

static int selected(const bench_case *c)
{
    if (c->long_only && !g.long_cases) return 0;
    if (c->skip_quick && g.quick) return 0;
    if (g.filter && !strstr(c->name, g.filter) && !strstr(c->op, g.filter)) return 0;
    return 1;
}

/* Keys that query i of Nq sees among Nk under the causal rule. */
static int visible_keys(int i, int n_q, int n_k, attn_causal causal)
{
    long lim;
    if (causal == ATTN_CAUSAL_NONE) return n_k;
    lim = causal == ATTN_CAUSAL_TOP_LEFT ? (long)i + 1 : (long)i + 1 + n_k - n_q;
    return lim < 0 ? 0 : lim > n_k ? n_k : (int)lim;
}

/* Visible (query, key) pairs of one head: Nq.Nk, or half of it for a square causal mask (the issue's
   convention, as FlashAttention's benchmarks count it), else the exact count (decoding: Nk; a sliding
   window of `window` keys: at most that many per query). */
static double core_pairs(int n_q, int n_k, attn_causal causal, int window)
{
    double pairs = 0.0;
    int i;
    if (causal == ATTN_CAUSAL_NONE && !window) return (double)n_q * n_k;
    if (n_q == n_k && !window) return 0.5 * (double)n_q * n_k;
    for (i = 0; i < n_q; ++i) {
        const int keys = visible_keys(i, n_q, n_k, causal);
        pairs += window && keys > window ? window : keys;
    }
    return pairs;
}

/* Everything one case needs: inputs, outputs, workspaces. */
typedef struct ctx {
    const bench_case *c;
    int threads;
    attn_dims dims;
    attn_options opt;
    attn_stride q_s, kv_s, o_s;
    float *q, *k, *v, *out, *ref; /* sdpa/decode [B,H,N,D]; mha: x = q, out [N x d_model]; sdpa_bwd: out = dq */
    void *k16, *v16;              /* decode with a 16-bit or q8 kv: K and V as attn_sdpa reads them, else NULL */
    void *q16, *o16;              /* sdpa with a 16-bit dtype: q and out in that type too, else NULL */
    float *o_fwd, *lse, *dout, *dk, *dv; /* sdpa_bwd: the forward's out and lse, dL/dout, dk and dv */
    float *wq, *wk, *wv, *wo;     /* mha, proj: [d_model x d_model], layout IN_OUT */
    float *qb, *kb, *vb, *ab;     /* mha, proj: [N x d_model] projections and attention output */
    float *scores;                /* openblas: [Nq x Nk] */
    void *ws;
    size_t ws_bytes;
    size_t out_n;
    int evict; /* decoding: evict K and V from the caches before each run (untimed) */
    const gemv_case *gc; /* gemv: the case (c is NULL) */
    float **w_copies;    /* gemv: copies of W, cycled through so that each call finds its W in DRAM */
    int n_copies;
    attn_mha mha;        /* decode_layer: the layer */
    attn_kv_cache kv;    /* decode_layer: the cache, its length reset to kv_len0 before each step */
    int kv_len0;
} ctx;

/* --- attention.h --- */

static void attn_options_threads(attn_options *opt, int t)
{
#ifdef BENCH_HAS_N_THREADS
    opt->n_threads = t;
#else
    (void)opt;
    (void)t;
#endif
}

static void run_attn(ctx *x)
{
    const bench_case *c = x->c;
    attn_options_threads(&x->opt, x->threads);
    if (!strcmp(c->op, "sdpa_bwd")) {
        CHECK(attn_sdpa_backward(x->out, x->q_s, x->dk, x->kv_s, x->dv, x->kv_s, NULL, x->q, x->q_s, x->k, x->kv_s, x->v,
                                 x->kv_s, x->o_fwd, x->o_s, x->dout, x->o_s, x->lse, &x->dims, &x->opt, x->ws,
                                 x->ws_bytes));
    } else if (!strcmp(c->op, "sdpa") || !strcmp(c->op, "decode")) {
        CHECK(attn_sdpa(x->o16 ? x->o16 : (void *)x->out, x->o_s, x->q16 ? x->q16 : (const void *)x->q, x->q_s,
                        x->k16 ? x->k16 : (const void *)x->k, x->kv_s,
                        x->v16 ? x->v16 : (const void *)x->v, x->kv_s, &x->dims, &x->opt, x->ws, x->ws_bytes));
    } else if (!strcmp(c->op, "mha")) {
        attn_mha m;
        memset(&m, 0, sizeof m);
        m.d_model = c->d_model;
        m.n_heads = c->Hq;
        m.n_kv_heads = c->Hkv;
        m.w_q = x->wq; m.w_k = x->wk; m.w_v = x->wv; m.w_o = x->wo;
        CHECK(attn_self_forward(x->out, x->q, 1, c->Nq, &m, &x->opt, x->ws, x->ws_bytes));
    } else if (!strcmp(c->op, "projmha")) {
        /* the library's internal projection routine, called as attn__mha_run calls it (white-box: the
           bench includes the implementation): W packed into the workspace, threads over row blocks */
        const int n = c->Nq, dm = c->d_model, t = x->threads;
        float *bp = (float *)x->ws;
        attn__project(x->qb, dm, x->q, dm, x->wq, ATTN_F32, dm, ATTN_LAYOUT_IN_OUT, NULL, n, dm, dm, t, bp);
        attn__project(x->kb, dm, x->q, dm, x->wk, ATTN_F32, dm, ATTN_LAYOUT_IN_OUT, NULL, n, dm, dm, t, bp);
        attn__project(x->vb, dm, x->q, dm, x->wv, ATTN_F32, dm, ATTN_LAYOUT_IN_OUT, NULL, n, dm, dm, t, bp);
        attn__project(x->out, dm, x->ab, dm, x->wo, ATTN_F32, dm, ATTN_LAYOUT_IN_OUT, NULL, n, dm, dm, t, bp);
    } else if (!strcmp(c->op, "proj")) {
        const int n = c->Nq, dm = c->d_model;
        CHECK(attn_project(x->qb, dm, x->q, dm, x->wq, dm, ATTN_LAYOUT_IN_OUT, NULL, n, dm, dm));
        CHECK(attn_project(x->kb, dm, x->q, dm, x->wk, dm, ATTN_LAYOUT_IN_OUT, NULL, n, dm, dm));
        CHECK(attn_project(x->vb, dm, x->q, dm, x->wv, dm, ATTN_LAYOUT_IN_OUT, NULL, n, dm, dm));
        CHECK(attn_project(x->out, dm, x->ab, dm, x->wo, dm, ATTN_LAYOUT_IN_OUT, NULL, n, dm, dm));
    }
}

/* op=gemv: y[1 x d_out] = x . W through attn_project_ex on x->threads threads, once with each copy of W
   (the copies together exceed the last-level cache, so every call reads its W from DRAM). */
static void run_gemv(ctx *x)
{
    const gemv_case *c = x->gc;
    const ptrdiff_t w_rs = c->layout == ATTN_LAYOUT_OUT_IN ? c->d_in : c->d_out;
    int i;
    attn_options_threads(&x->opt, x->threads);
    x->opt.w_type = c->w_type;
    for (i = 0; i < x->n_copies; ++i)
        CHECK(attn_project_ex(x->out, c->d_out, x->q, c->d_in, x->w_copies[i], w_rs, c->layout, NULL, 1, c->d_in,
                              c->d_out, &x->opt, NULL, 0));
}

/* The path attn_project took for one row before the few-row kernels (white-box: the bench includes the
   implementation): attn__matmul, which packs W into 16 KiB stack panels, on the calling thread. */
static void run_gemv_old(ctx *x)
{
    const gemv_case *c = x->gc;
    const int out_in = c->layout == ATTN_LAYOUT_OUT_IN;
    int i;
    for (i = 0; i < x->n_copies; ++i)
        attn__matmul(x->out, c->d_out, x->q, c->d_in, x->w_copies[i], out_in ? c->d_in : c->d_out, out_in, 1, c->d_out,
                     c->d_in, 0);
}

/* op=decode_layer: one attn_kv_step of one token over kv_len0 cached tokens (the token's K and V go to
   row kv_len0, every run). */
static void run_decode_layer(ctx *x)
{
    attn_options_threads(&x->opt, x->threads);
    x->kv.len[0] = x->kv_len0;
    CHECK(attn_kv_step(x->out, &x->kv, x->q, 1, &x->mha, &x->opt, x->ws, x->ws_bytes));
}

/* --- naive reference: plain loops, scalar expf --- */

/* out = softmax(scale Q.K^T, causal) . V per (batch, query head), over strided [B,H,N,D] views. */
static void naive_sdpa(float *out, attn_stride o_s, const float *q, attn_stride q_s, const float *k,
                       attn_stride k_s, const float *v, attn_stride v_s, int B, int Hq, int Hkv, int Nq, int Nk,
                       int D, attn_causal causal, int threads)
{
    const float scale = 1.0f / sqrtf((float)D);
    int bh;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
#endif
    for (bh = 0; bh < B * Hq; ++bh) {
        const int b = bh / Hq, h = bh % Hq, hk = h / (Hq / Hkv);
        float *s = (float *)malloc((size_t)Nk * sizeof(float));
        int i, j, d;
        if (!s) die("out of memory");
        for (i = 0; i < Nq; ++i) {
            const float *q_i = q + b * q_s.batch + h * q_s.head + i * q_s.row;
            float *o_i = out + b * o_s.batch + h * o_s.head + i * o_s.row;
            const int lim = visible_keys(i, Nq, Nk, causal);
            float mx = -INFINITY, sum = 0.0f;
            for (j = 0; j < lim; ++j) {
                const float *k_j = k + b * k_s.batch + hk * k_s.head + j * k_s.row;
                float dot = 0.0f;
                for (d = 0; d < D; ++d) dot += q_i[d] * k_j[d];
                s[j] = scale * dot;
                if (s[j] > mx) mx = s[j];
            }
            for (j = 0; j < lim; ++j) {
                s[j] = expf(s[j] - mx);
                sum += s[j];
            }
            for (d = 0; d < D; ++d) o_i[d] = 0.0f;
            for (j = 0; j < lim; ++j) {
                const float *v_j = v + b * v_s.batch + hk * v_s.head + j * v_s.row;
                const float p = s[j] / sum;
                for (d = 0; d < D; ++d) o_i[d] += p * v_j[d];
            }
        }
        free(s);
    }
    (void)threads;
}

/* y[n x d_out] = x[n x d_in] . w[d_in x d_out], plain i-k-j loops. */
static void naive_matmul(float *y, const float *x, const float *w, int n, int d_in, int d_out, int threads)
{
    int i;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
    for (i = 0; i < n; ++i) {
        float *y_i = y + (size_t)i * d_out;
        int j, kk;
        for (j = 0; j < d_out; ++j) y_i[j] = 0.0f;
        for (kk = 0; kk < d_in; ++kk) {
            const float x_ik = x[(size_t)i * d_in + kk];
            const float *w_k = w + (size_t)kk * d_out;
            for (j = 0; j < d_out; ++j) y_i[j] += x_ik * w_k[j];
        }
    }
    (void)threads;
}

static void run_naive(ctx *x)
{
    const bench_case *c = x->c;
    if (!strcmp(c->op, "sdpa") || !strcmp(c->op, "decode")) {
        naive_sdpa(x->out, x->o_s, x->q, x->q_s, x->k, x->kv_s, x->v, x->kv_s, c->B, c->Hq, c->Hkv, c->Nq, c->Nk,
                   c->D, c->causal, x->threads);
    } else if (!strcmp(c->op, "mha")) {
        const int n = c->Nq, dm = c->d_model;
        const attn_stride s = attn_stride_bnhd(n, c->Hq, c->D);
        naive_matmul(x->qb, x->q, x->wq, n, dm, dm, x->threads);
        naive_matmul(x->kb, x->q, x->wk, n, dm, dm, x->threads);
        naive_matmul(x->vb, x->q, x->wv, n, dm, dm, x->threads);
        naive_sdpa(x->ab, s, x->qb, s, x->kb, s, x->vb, s, 1, c->Hq, c->Hkv, n, n, c->D, c->causal, x->threads);
        naive_matmul(x->out, x->ab, x->wo, n, dm, dm, x->threads);
    }
}

/* --- OpenBLAS: sgemm -> row softmax -> sgemm per head, with an Nq x Nk buffer --- */

#ifdef BENCH_OPENBLAS

/* exp(x) for x <= ~88 (Cephes polynomial, ~2 ulp; below -87.3 it returns ~1e-38 instead of a smaller
   value), vectorised as any serious composition does: glibc's scalar expf would dominate. */
#if defined(__AVX512F__)
#define SM_W 16
static __m512 exp_ps(__m512 x)
{
    __m512 n, r, p;
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3f)), _mm512_set1_ps(-87.3f));
    n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}
#elif defined(__AVX2__) && defined(__FMA__)
#define SM_W 8
static __m256 exp_ps(__m256 x)
{
    __m256 n, r, p;
    __m256i e;
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3f)), _mm256_set1_ps(-87.3f));
    n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

/* Softmax of s[0..n_valid) in place; s[n_valid..n) (causally hidden keys) set to 0. */
static void softmax_row(float *s, int n_valid, int n)
{
    float mx = -INFINITY, sum = 0.0f, inv;
    int j = 0;
    if (n_valid == 0) {
        memset(s, 0, (size_t)n * sizeof(float));
        return;
    }
#if defined(__AVX512F__)
    {
        __m512 vm = _mm512_set1_ps(-INFINITY), vs = _mm512_setzero_ps(), vi;
        for (j = 0; j + SM_W <= n_valid; j += SM_W) vm = _mm512_max_ps(vm, _mm512_loadu_ps(s + j));
        mx = _mm512_reduce_max_ps(vm);
        for (; j < n_valid; ++j) mx = s[j] > mx ? s[j] : mx;
        vm = _mm512_set1_ps(mx);
        for (j = 0; j + SM_W <= n_valid; j += SM_W) {
            const __m512 e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(s + j), vm));
            _mm512_storeu_ps(s + j, e);
            vs = _mm512_add_ps(vs, e);
        }
        sum = _mm512_reduce_add_ps(vs);
        for (; j < n_valid; ++j) sum += (s[j] = expf(s[j] - mx));
        inv = 1.0f / sum;
        vi = _mm512_set1_ps(inv);
        for (j = 0; j + SM_W <= n_valid; j += SM_W) _mm512_storeu_ps(s + j, _mm512_mul_ps(_mm512_loadu_ps(s + j), vi));
        for (; j < n_valid; ++j) s[j] *= inv;
    }
#elif defined(__AVX2__) && defined(__FMA__)
    {
        __m256 vm = _mm256_set1_ps(-INFINITY), vs = _mm256_setzero_ps(), vi;
        float tmp[8];
        int k;
        for (j = 0; j + SM_W <= n_valid; j += SM_W) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j));
        _mm256_storeu_ps(tmp, vm);
        for (k = 0; k < 8; ++k) mx = tmp[k] > mx ? tmp[k] : mx;
        for (; j < n_valid; ++j) mx = s[j] > mx ? s[j] : mx;
        vm = _mm256_set1_ps(mx);
        for (j = 0; j + SM_W <= n_valid; j += SM_W) {
            const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
            _mm256_storeu_ps(s + j, e);
            vs = _mm256_add_ps(vs, e);
        }
        _mm256_storeu_ps(tmp, vs);
        for (k = 0; k < 8; ++k) sum += tmp[k];
        for (; j < n_valid; ++j) sum += (s[j] = expf(s[j] - mx));
        inv = 1.0f / sum;
        vi = _mm256_set1_ps(inv);
        for (j = 0; j + SM_W <= n_valid; j += SM_W) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), vi));
        for (; j < n_valid; ++j) s[j] *= inv;
    }
#else
    for (j = 0; j < n_valid; ++j) mx = s[j] > mx ? s[j] : mx;
    for (j = 0; j < n_valid; ++j) sum += (s[j] = expf(s[j] - mx));
    inv = 1.0f / sum;
    for (j = 0; j < n_valid; ++j) s[j] *= inv;
#endif
    if (n_valid < n) memset(s + n_valid, 0, (size_t)(n - n_valid) * sizeof(float));
}

/* One head: o[Nq x D] = softmax(scale q.k^T, causal) . v, rows strided, s [Nq x Nk] scratch. The whole
   score matrix is computed (also above a causal diagonal), as the composition does. */
static void blas_head(float *o, ptrdiff_t o_rs, const float *q, ptrdiff_t q_rs, const float *k, ptrdiff_t k_rs,
                      const float *v, ptrdiff_t v_rs, float *s, int Nq, int Nk, int D, attn_causal causal)
{
    int i;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Nq, Nk, D, 1.0f / sqrtf((float)D), q, (int)q_rs, k,
                (int)k_rs, 0.0f, s, Nk);
    for (i = 0; i < Nq; ++i) softmax_row(s + (size_t)i * Nk, visible_keys(i, Nq, Nk, causal), Nk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Nq, D, Nk, 1.0f, s, Nk, v, (int)v_rs, 0.0f, o,
                (int)o_rs);
}

/* y[n x d_out] = x[n x d_in] . w[d_in x d_out], dense rows. */
static void blas_matmul(float *y, const float *x, const float *w, int n, int d_in, int d_out)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d_out, d_in, 1.0f, x, d_in, w, d_out, 0.0f, y,
                d_out);
}

/* Threads. sdpa, decode, mha: OpenMP threads over heads (and over row blocks for the projections of mha),
   each calling single-threaded OpenBLAS: the fastest arrangement measured here. With OpenBLAS's own
   threads splitting each sgemm instead, the softmax between the two sgemms is either serial or an OpenMP
   region whose spinning worker then competes with OpenBLAS's worker for the second core (measured: the
   2-thread composition 4x slower than 1 thread). proj: OpenBLAS's own threads (openblas_set_num_threads),
   the plain sgemm the issue compares the projections against. */
static void run_blas(ctx *x)
{
    const bench_case *c = x->c;
    const size_t per_thread = (size_t)c->Nq * c->Nk;
    if (!strcmp(c->op, "sdpa") || !strcmp(c->op, "decode")) {
        int bh;
        openblas_set_num_threads(1);
#ifdef _OPENMP
#pragma omp parallel for num_threads(x->threads) schedule(static)
#endif
        for (bh = 0; bh < c->B * c->Hq; ++bh) {
            const int b = bh / c->Hq, h = bh % c->Hq, hk = h / (c->Hq / c->Hkv);
#ifdef _OPENMP
            float *s = x->scores + (size_t)omp_get_thread_num() * per_thread;
#else
            float *s = x->scores;
#endif
            blas_head(x->out + b * x->o_s.batch + h * x->o_s.head, x->o_s.row, x->q + b * x->q_s.batch + h * x->q_s.head,
                      x->q_s.row, x->k + b * x->kv_s.batch + hk * x->kv_s.head, x->kv_s.row,
                      x->v + b * x->kv_s.batch + hk * x->kv_s.head, x->kv_s.row, s, c->Nq, c->Nk, c->D, c->causal);
        }
    } else if (!strcmp(c->op, "mha")) {
        const int n = c->Nq, dm = c->d_model;
        openblas_set_num_threads(1);
#ifdef _OPENMP
#pragma omp parallel num_threads(x->threads)
#endif
        {
#ifdef _OPENMP
            const int nt = omp_get_num_threads(), id = omp_get_thread_num();
#else
            const int nt = 1, id = 0;
#endif
            const int r0 = (int)((long)n * id / nt), r1 = (int)((long)n * (id + 1) / nt);
            const size_t o = (size_t)r0 * dm;
            float *s = x->scores + (size_t)id * per_thread;
            int h;
            blas_matmul(x->qb + o, x->q + o, x->wq, r1 - r0, dm, dm);
            blas_matmul(x->kb + o, x->q + o, x->wk, r1 - r0, dm, dm);
            blas_matmul(x->vb + o, x->q + o, x->wv, r1 - r0, dm, dm);
#ifdef _OPENMP
#pragma omp barrier
#pragma omp for schedule(static)
#endif
            for (h = 0; h < c->Hq; ++h) {
                const int hk = h / (c->Hq / c->Hkv);
                blas_head(x->ab + h * c->D, dm, x->qb + h * c->D, dm, x->kb + hk * c->D, dm, x->vb + hk * c->D, dm, s,
                          n, n, c->D, c->causal);
            }
            /* the implicit barrier of the for: every head is done */
            blas_matmul(x->out + o, x->ab + o, x->wo, r1 - r0, dm, dm);
        }
    } else if (!strcmp(c->op, "proj")) {
        const int n = c->Nq, dm = c->d_model;
        openblas_set_num_threads(x->threads);
        blas_matmul(x->qb, x->q, x->wq, n, dm, dm);
        blas_matmul(x->kb, x->q, x->wk, n, dm, dm);
        blas_matmul(x->vb, x->q, x->wv, n, dm, dm);
        blas_matmul(x->out, x->ab, x->wo, n, dm, dm);
    }
}

/* Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) takes a CPU model it does not know for "Prescott" and runs SSE3
   kernels (e.g. Intel family 6 model 207: 19 instead of ~110 GFLOP/s). It reads OPENBLAS_CORETYPE only
   when it loads, so: set it and start again, unless the caller set it. */
static void openblas_fix_coretype(char **argv)
{
    const char *want = NULL, *core = openblas_get_corename();
#if defined(__AVX512F__)
    want = "SkylakeX";
#elif defined(__AVX2__) && defined(__FMA__)
    want = "Haswell";
#endif
    if (!want || getenv("OPENBLAS_CORETYPE") || !core || strcmp(core, "Prescott")) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv("BENCH_OPENBLAS_DETECTED", core, 1);
    execv("/proc/self/exe", argv);
    fprintf(stderr, "bench: warning: could not restart with OPENBLAS_CORETYPE=%s: %s\n", want, strerror(errno));
}
#endif /* BENCH_OPENBLAS */

/* --- measuring --- */

typedef void (*run_fn)(ctx *);

/* Reads the eviction buffer so that the next run finds its inputs in DRAM, not in the last-level cache,
   as a decoding step does when the other layers' caches were read in between. */
static void evict_caches(void)
{
    float sum = 0.0f;
    size_t i;
    if (!g.evict) {
        const size_t floor_bytes = (size_t)64 << 20;
        const size_t bytes = 2 * g.l3_bytes > floor_bytes ? 2 * g.l3_bytes : floor_bytes;
        g.evict_n = (bytes / sizeof(float) + 63) & ~(size_t)63;
        g.evict = (float *)bench_alloc(g.evict_n * sizeof(float));
        for (i = 0; i < g.evict_n; ++i) g.evict[i] = (float)(i & 255);
    }
    sum = read2(g.evict, g.evict + g.evict_n / 2, g.evict_n / 2);
    bench_sink = sum;
}

/* Median ms of repeated runs after warm-ups. The number of repeats adapts to the time of one run so a
   slow case does not take minutes: up to 7 (5 with --quick), at least 3, within a budget of ~4 s (~1.5 s
   with --quick) of repeated runs; --reps=N fixes it. warm == 0: one cold run, nothing else (naive). */
static double measure(run_fn f, ctx *x, int warm, int *reps_out)
{
    double ms[16], t0, first;
    int reps, rep;
    if (!warm) {
        if (x->evict) evict_caches();
        t0 = now_s();
        f(x);
        *reps_out = 1;
        return 1e3 * (now_s() - t0);
    }
    if (x->evict) evict_caches();
    t0 = now_s();
    f(x);
    first = now_s() - t0;
    if (!g.quick && first < 1.0) f(x); /* second warm-up for the fast cases */
    if (g.reps > 0) reps = g.reps;
    else {
        const double budget = g.quick ? 1.5 : 4.0;
        const int max_reps = g.quick ? 5 : 7;
        reps = first > 0 ? (int)(budget / first) : max_reps;
        reps = reps < 3 ? 3 : reps > max_reps ? max_reps : reps;
    }
    if (reps > 16) reps = 16;
    for (rep = 0; rep < reps; ++rep) {
        if (x->evict) evict_caches();
        t0 = now_s();
        f(x);
        ms[rep] = 1e3 * (now_s() - t0);
    }
    *reps_out = reps;
    return median(ms, reps);
}

static double rel_err(const float *a, const float *ref, size_t n)
{
    double num = 0.0, den = 0.0;
    size_t i;
    for (i = 0; i < n; ++i) {
        const double e = fabs((double)a[i] - (double)ref[i]), m = fabs((double)ref[i]);
        num = e > num ? e : num;
        den = m > den ? m : den;
    }
    return den > 0 ? num / den : num;
}

static result base_result(const ctx *x, const char *impl)
{
    const bench_case *c = x->c;
    result r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "%s", c->name);
    r.op = c->op;
    r.impl = impl;
    r.B = c->B; r.H = c->Hq; r.Hkv = c->Hkv; r.Nq = c->Nq; r.Nk = c->Nk; r.D = c->D;
    r.causal = (int)c->causal;
    r.window = c->window;
    r.d_model = c->d_model;
    r.threads = x->threads;
    r.err = -1.0;
    {
        const double core = 4.0 * c->B * c->Hq * core_pairs(c->Nq, c->Nk, c->causal, c->window) * c->D;
        const double proj = 2.0 * c->Nq * (double)c->d_model * c->d_model; /* one projection, B = 1 */
        if (!strcmp(c->op, "proj") || !strcmp(c->op, "projmha")) r.flops = 4.0 * proj;
        else if (!strcmp(c->op, "mha")) r.flops = core + 4.0 * proj;
        else if (!strcmp(c->op, "sdpa_bwd")) r.flops = 2.5 * core;
        else r.flops = core;
    }
    r.kv = c->kv;
    if (!strcmp(c->op, "decode")) /* the bytes of K and V as stored */
        r.bytes = 2.0 * c->B * c->Hkv * (double)c->Nk * c->D *
                  (c->kv == ATTN_F32 ? 4.0 : c->kv == ATTN_Q8 ? (double)ATTN_Q8_BLOCK_BYTES / ATTN_Q8_BLOCK : 2.0);
    return r;
}

static void run_impl(ctx *x, const char *impl, run_fn f, int warm)
{
    result r = base_result(x, impl);
    const int is_attn = !strcmp(impl, "attention.h");
    if (!is_attn) memset(x->out, 0, x->out_n * sizeof(float));
    r.ms = measure(f, x, warm, &r.reps);
    if (is_attn) {
        if (x->threads == g.threads[0]) memcpy(x->ref, x->out, x->out_n * sizeof(float));
        else r.err = rel_err(x->out, x->ref, x->out_n); /* other thread counts: same result expected */
    } else {
        r.err = rel_err(x->out, x->ref, x->out_n);
    }
    record(r);
}

/* One gemv measurement: ms per call (the run's median over the copies), W's bytes for the %bw. */
static void run_gemv_impl(ctx *x, const char *impl, run_fn f)
{
    const gemv_case *c = x->gc;
    result r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "%s", c->name);
    r.op = "gemv";
    r.impl = impl;
    r.B = 1; r.Nq = 1;
    r.d_model = c->d_in;
    r.d_out = c->d_out;
    r.layout = (int)c->layout;
    r.kv = c->w_type;
    r.threads = x->threads;
    r.err = -1.0;
    memset(x->out, 0, x->out_n * sizeof(float));
    r.ms = measure(f, x, 1, &r.reps) / x->n_copies;
    r.flops = 2.0 * c->d_in * (double)c->d_out;
    r.bytes = (c->w_type == ATTN_F32 ? 4.0 : 2.0) * c->d_in * (double)c->d_out;
    if (!strcmp(impl, "attention.h") && x->threads == g.threads[0]) memcpy(x->ref, x->out, x->out_n * sizeof(float));
    else r.err = rel_err(x->out, x->ref, x->out_n); /* other threads: bitwise the same expected (err 0) */
    record(r);
}

/* op=gemv: a one-row projection d_in -> d_out, W in DRAM, with each thread count, then the old path. */
static void run_gemv_case(const gemv_case *c)
{
    const size_t w_n = (size_t)c->d_in * (size_t)c->d_out;
    const size_t w_bytes = w_n * (c->w_type == ATTN_F32 ? sizeof(float) : sizeof(unsigned short));
    const size_t want = (size_t)96 << 20; /* 3 x the 32 MiB L3 of the hosts measured */
    const float scale = 1.0f / sqrtf((float)c->d_in);
    ctx x;
    int i, ti;
    memset(&x, 0, sizeof x);
    rng_seed(c->name);
    x.gc = c;
    x.n_copies = (int)((want + w_bytes - 1) / w_bytes);
    x.w_copies = (float **)malloc(sizeof(float *) * (size_t)x.n_copies);
    if (!x.w_copies) die("out of memory");
    for (i = 0; i < x.n_copies; ++i) {
        x.w_copies[i] = alloc_random(w_n, scale);
        if (c->w_type == ATTN_BF16) CHECK(attn_f32_to_bf16((unsigned short *)(void *)x.w_copies[i], x.w_copies[i], w_n)); /* in place: the first half */
    }
    x.out_n = (size_t)c->d_out;
    x.q = alloc_random((size_t)c->d_in, 1.0f);
    x.out = alloc_zero(x.out_n);
    x.ref = alloc_zero(x.out_n);
    for (ti = 0; ti < g.n_threads; ++ti) {
        x.threads = g.threads[ti];
        set_threads(x.threads);
        run_gemv_impl(&x, "attention.h", run_gemv);
    }
    x.threads = 1;
    set_threads(1);
    if (c->w_type == ATTN_F32) run_gemv_impl(&x, "old_packed", run_gemv_old);
    for (i = 0; i < x.n_copies; ++i) free(x.w_copies[i]);
    free(x.w_copies); free(x.q); free(x.out); free(x.ref);
}

/* op=decode_layer: a Llama-7B-like attention layer (d_model 4096, 32 query heads, 8 kv heads, D = 128, IN_OUT
   weights) decoding one token over 4096 cached tokens: projections, append, attention, W_o. Weights and
   cache (201 MB) are far beyond the last-level cache, so every step reads them from DRAM: pct_bw counts
   the weights plus the cache's K and V. With t = ATTN_BF16 the weights (attn_mha.w_type) and the cache
   (k_type, v_type) are bfloat16, a model held as llama.cpp holds it in 16 bits: half the bytes. */
static void run_decode_layer_case(attn_dtype t)
{
    enum { E = 4096, H = 32, HKV = 8, D = 128, N = 4096, KVD = HKV * D };
    const float scale = 1.0f / sqrtf((float)E);
    const double elem = t == ATTN_F32 ? 4.0 : 2.0;
    ctx x;
    int ti, len = N;
    memset(&x, 0, sizeof x);
    rng_seed("decode_layer");
    x.mha.d_model = E; x.mha.n_heads = H; x.mha.n_kv_heads = HKV;
    x.mha.w_q = x.wq = alloc_random((size_t)E * E, scale);
    x.mha.w_k = x.wk = alloc_random((size_t)E * KVD, scale);
    x.mha.w_v = x.wv = alloc_random((size_t)E * KVD, scale);
    x.mha.w_o = x.wo = alloc_random((size_t)E * E, scale);
    x.kv.batch = 1; x.kv.n_kv_heads = HKV; x.kv.max_len = N + 1; x.kv.d_k = D; x.kv.len = &len;
    x.kv.k = x.k = alloc_random((size_t)HKV * (N + 1) * D, 1.0f);
    x.kv.v = x.v = alloc_random((size_t)HKV * (N + 1) * D, 1.0f);
    if (t == ATTN_BF16) { /* each buffer's first half becomes its values in bfloat16 (in place) */
        float *bufs[6];
        const size_t lens[6] = {(size_t)E * E, (size_t)E * KVD, (size_t)E * KVD, (size_t)E * E,
                                (size_t)HKV * (N + 1) * D, (size_t)HKV * (N + 1) * D};
        int b;
        bufs[0] = x.wq; bufs[1] = x.wk; bufs[2] = x.wv; bufs[3] = x.wo; bufs[4] = x.k; bufs[5] = x.v;
        for (b = 0; b < 6; ++b) CHECK(attn_f32_to_bf16((unsigned short *)(void *)bufs[b], bufs[b], lens[b]));
        x.mha.w_type = ATTN_BF16;
        x.kv.k_type = x.kv.v_type = ATTN_BF16;
    }
    x.kv_len0 = N;
    x.q = alloc_random((size_t)E, 1.0f);
    x.out_n = (size_t)E;
    x.out = alloc_zero(x.out_n);
    x.ref = alloc_zero(x.out_n);
    x.evict = 1;
    for (ti = 0; ti < g.n_threads; ++ti) {
        result r;
        memset(&r, 0, sizeof r);
        x.threads = g.threads[ti];
        set_threads(x.threads);
        attn_options_threads(&x.opt, x.threads);
        CHECK(attn_kv_step_workspace_size(&x.ws_bytes, &x.kv, 1, &x.mha, &x.opt));
        free(x.ws);
        x.ws = bench_alloc(x.ws_bytes);
        snprintf(r.name, sizeof r.name, "decode_layer_llama7b_kv4096%s", t == ATTN_BF16 ? "_bf16" : "");
        r.op = "decode_layer";
        r.impl = "attention.h";
        r.B = 1; r.H = H; r.Hkv = HKV; r.Nq = 1; r.Nk = N + 1; r.D = D; r.causal = 2;
        r.d_model = E;
        r.threads = x.threads;
        r.ms = measure(run_decode_layer, &x, 1, &r.reps);
        r.flops = 2.0 * (2.0 * E * E + 2.0 * E * KVD) + 4.0 * H * (double)(N + 1) * D;
        r.bytes = elem * (2.0 * E * E + 2.0 * E * KVD) + 2.0 * HKV * (double)(N + 1) * D * elem;
        r.kv = t;
        if (ti == 0) { memcpy(x.ref, x.out, x.out_n * sizeof(float)); r.err = -1.0; }
        else r.err = rel_err(x.out, x.ref, x.out_n); /* other thread counts: bitwise the same expected */
        record(r);
    }
    free(x.wq); free(x.wk); free(x.wv); free(x.wo); free(x.k); free(x.v); free(x.q); free(x.out); free(x.ref);
    free(x.ws);
}

static void run_case(const bench_case *c)
{
    ctx x;
    int ti;
    const int naive = !g.quick && !g.no_naive && (c->naive || g.naive_all) && strcmp(c->op, "proj") &&
                      strcmp(c->op, "projmha") && strcmp(c->op, "sdpa_bwd") && !c->window; /* the references
                      have no window, nor a backward pass */
    memset(&x, 0, sizeof x);
    rng_seed(c->name);
    x.c = c;
    x.dims.batch = c->B;
    x.dims.n_heads = c->Hq;
    x.dims.n_kv_heads = c->Hkv;
    x.dims.n_q = c->Nq;
    x.dims.n_kv = c->Nk;
    x.dims.d_k = c->D;
    x.dims.d_v = c->D;
    x.opt.causal = c->causal;
    if (c->window) { x.opt.window = 1; x.opt.window_left = c->window - 1; x.opt.window_right = 0; }
    x.evict = !strcmp(c->op, "decode");
    if (c->d_model == 0) { /* sdpa, decode: [B, H, N, D] */
        x.q_s = attn_stride_bhnd(c->Hq, c->Nq, c->D);
        x.kv_s = attn_stride_bhnd(c->Hkv, c->Nk, c->D);
        x.o_s = x.q_s;
        x.out_n = (size_t)c->B * c->Hq * c->Nq * c->D;
        x.q = alloc_random(x.out_n, 1.0f);
        x.k = alloc_random((size_t)c->B * c->Hkv * c->Nk * c->D, 1.0f);
        x.v = alloc_random((size_t)c->B * c->Hkv * c->Nk * c->D, 1.0f);
        if (c->kv != ATTN_F32) { /* K and V converted to the case's 16-bit or q8 type */
            const size_t n = (size_t)c->B * c->Hkv * c->Nk * c->D;
            const size_t bytes = c->kv == ATTN_Q8 ? n / ATTN_Q8_BLOCK * ATTN_Q8_BLOCK_BYTES : n * sizeof(unsigned short);
            x.k16 = bench_alloc(bytes);
            x.v16 = bench_alloc(bytes);
            if (c->kv == ATTN_Q8) {
                CHECK(attn_f32_to_q8(x.k16, x.k, n));
                CHECK(attn_f32_to_q8(x.v16, x.v, n));
            } else {
                CHECK(c->kv == ATTN_F16 ? attn_f32_to_f16((unsigned short *)x.k16, x.k, n) : attn_f32_to_bf16((unsigned short *)x.k16, x.k, n));
                CHECK(c->kv == ATTN_F16 ? attn_f32_to_f16((unsigned short *)x.v16, x.v, n) : attn_f32_to_bf16((unsigned short *)x.v16, x.v, n));
            }
            x.opt.k_type = x.opt.v_type = c->kv;
            if (!strcmp(c->op, "sdpa")) { /* dtype: q and out of the same 16-bit type (a model held in bf16) */
                x.q16 = bench_alloc(x.out_n * sizeof(unsigned short));
                x.o16 = bench_alloc(x.out_n * sizeof(unsigned short));
                CHECK(c->kv == ATTN_F16 ? attn_f32_to_f16((unsigned short *)x.q16, x.q, x.out_n)
                                        : attn_f32_to_bf16((unsigned short *)x.q16, x.q, x.out_n));
                x.opt.q_type = x.opt.out_type = c->kv;
            }
        }
        CHECK(attn_sdpa_workspace_size(&x.ws_bytes, &x.dims, &x.opt));
        if (!strcmp(c->op, "sdpa_bwd")) { /* the forward once (out, lse), untimed; its workspace fits both */
            size_t bwd_bytes = 0;
            CHECK(attn_sdpa_backward_workspace_size(&bwd_bytes, &x.dims, &x.opt));
            x.o_fwd = alloc_zero(x.out_n);
            x.lse = alloc_zero((size_t)c->B * c->Hq * c->Nq);
            x.dout = alloc_random(x.out_n, 1.0f);
            x.dk = alloc_zero((size_t)c->B * c->Hkv * c->Nk * c->D);
            x.dv = alloc_zero((size_t)c->B * c->Hkv * c->Nk * c->D);
            x.opt.out_lse = x.lse;
            CHECK(attn_sdpa(x.o_fwd, x.o_s, x.q, x.q_s, x.k, x.kv_s, x.v, x.kv_s, &x.dims, &x.opt, NULL, 0));
            x.opt.out_lse = NULL;
            if (bwd_bytes > x.ws_bytes) x.ws_bytes = bwd_bytes;
        }
    } else { /* mha, proj: x [N x d_model], weights scaled by 1/sqrt(d_model) to keep the logits sane */
        const size_t nd = (size_t)c->Nq * c->d_model, dd = (size_t)c->d_model * c->d_model;
        const float ws = 1.0f / sqrtf((float)c->d_model);
        attn_mha m;
        memset(&m, 0, sizeof m);
        m.d_model = c->d_model;
        m.n_heads = c->Hq;
        m.n_kv_heads = c->Hkv;
        x.out_n = nd;
        x.q = alloc_random(nd, 1.0f);
        x.wq = alloc_random(dd, ws); x.wk = alloc_random(dd, ws);
        x.wv = alloc_random(dd, ws); x.wo = alloc_random(dd, ws);
        x.qb = alloc_zero(nd); x.kb = alloc_zero(nd); x.vb = alloc_zero(nd);
        x.ab = alloc_random(nd, 1.0f);
        if (!strcmp(c->op, "projmha")) { /* one packed weight matrix */
            size_t floats = 0;
            if (!attn__pack_floats(&floats, c->d_model, c->d_model)) die("pack size");
            x.ws_bytes = floats * sizeof(float);
        } else CHECK(attn_self_workspace_size(&x.ws_bytes, 1, c->Nq, &m, &x.opt));
    }
    x.out = alloc_zero(x.out_n);
    x.ref = alloc_zero(x.out_n);
    x.ws = bench_alloc(x.ws_bytes);
    memset(x.ws, 0, x.ws_bytes);
#ifdef BENCH_OPENBLAS
    if (strcmp(c->op, "proj")) { /* one Nq x Nk score matrix per thread */
        int mt = 1;
        for (ti = 0; ti < g.n_threads; ++ti) mt = g.threads[ti] > mt ? g.threads[ti] : mt;
        x.scores = alloc_zero((size_t)mt * c->Nq * c->Nk);
    }
#endif

    for (ti = 0; ti < g.n_threads; ++ti) {
        x.threads = g.threads[ti];
        set_threads(x.threads);
        run_impl(&x, "attention.h", run_attn, 1);
    }
#ifdef BENCH_OPENBLAS
    for (ti = 0; ti < g.n_threads && strcmp(c->op, "projmha") && strcmp(c->op, "sdpa_bwd") && !c->window; ++ti) { /* projmha: compare with proj's rows */
        x.threads = g.threads[ti];
        set_threads(x.threads);
        run_impl(&x, "openblas", run_blas, 1);
    }
#endif
    if (naive)
        for (ti = 0; ti < g.n_threads; ++ti) {
            x.threads = g.threads[ti];
            set_threads(x.threads);
            run_impl(&x, "naive", run_naive, 0);
        }

    free(x.q); free(x.k); free(x.v); free(x.k16); free(x.v16); free(x.q16); free(x.o16); free(x.out); free(x.ref); free(x.ws);
    free(x.wq); free(x.wk); free(x.wv); free(x.wo);
    free(x.qb); free(x.kb); free(x.vb); free(x.ab); free(x.scores);
    free(x.o_fwd); free(x.lse); free(x.dout); free(x.dk); free(x.dv);
}

/* The memory target: attn_sdpa at N = 32768, one head, D = 64, causal, no workspace given (the library
   allocates what it needs), with the largest thread count. Runs first, before anything else has raised
   the process's peak RSS. Growth = peak RSS after - peak RSS before, with the inputs and output already
   allocated and touched. */
static void run_mem_case(const bench_case *c)
{
    ctx x;
    struct rusage before, after;
    size_t ws_bytes, n;
    result r;
    const int t = g.threads[g.n_threads - 1];
    double t0;
    memset(&x, 0, sizeof x);
    rng_seed(c->name);
    x.c = c;
    x.threads = t;
    x.dims.batch = c->B; x.dims.n_heads = c->Hq; x.dims.n_kv_heads = c->Hkv;
    x.dims.n_q = c->Nq; x.dims.n_kv = c->Nk; x.dims.d_k = c->D; x.dims.d_v = c->D;
    x.opt.causal = c->causal;
    attn_options_threads(&x.opt, t);
    x.q_s = attn_stride_bhnd(c->Hq, c->Nq, c->D);
    x.kv_s = attn_stride_bhnd(c->Hkv, c->Nk, c->D);
    x.o_s = x.q_s;
    n = (size_t)c->B * c->Hq * c->Nq * c->D;
    x.q = alloc_random(n, 1.0f);
    x.k = alloc_random(n, 1.0f);
    x.v = alloc_random(n, 1.0f);
    x.out = alloc_zero(n);
    CHECK(attn_sdpa_workspace_size(&ws_bytes, &x.dims, &x.opt));
    set_threads(t);
    getrusage(RUSAGE_SELF, &before);
    t0 = now_s();
    CHECK(attn_sdpa(x.out, x.o_s, x.q, x.q_s, x.k, x.kv_s, x.v, x.kv_s, &x.dims, &x.opt, NULL, 0));
    r = base_result(&x, "attention.h");
    r.ms = 1e3 * (now_s() - t0);
    r.reps = 1;
    getrusage(RUSAGE_SELF, &after);
    r.ws_bytes = (double)ws_bytes;
    r.rss_growth = 1024.0 * (double)(after.ru_maxrss - before.ru_maxrss); /* ru_maxrss is in KiB */
    r.inputs_bytes = 4.0 * (double)n * sizeof(float);
    record(r);
    printf("mem: inputs+output %.1f MiB; attn_sdpa_workspace_size %.0f bytes (%.2f MiB); peak RSS growth above "
           "inputs and output %.2f MiB (target < 64 MiB: %s); threads=%d, one run, no workspace passed\n",
           r.inputs_bytes / 1048576.0, r.ws_bytes, r.ws_bytes / 1048576.0, r.rss_growth / 1048576.0,
           r.rss_growth < 64.0 * 1048576.0 ? "met" : "MISSED", t);
    free(x.q); free(x.k); free(x.v); free(x.out);
}

/* ---------------------------------------------------------------------------------------------- */
/* main                                                                                           */
/* ---------------------------------------------------------------------------------------------- */

static void usage(void)
{
    int i;
    printf("usage: bench [--quick] [--long] [--filter=WORD] [--threads=1,2] [--reps=N] [--naive-all] [--no-naive]\n"
           "             [--no-hugepages] [--no-bind] [--list]\n"
           "  --quick         fewer repeats; skips the N=8192 case and the naive reference\n"
           "  --long          adds the memory case (N=32768, one head, D=64, causal)\n"
           "  --filter=WORD   only the cases whose name or op contains WORD (peak always runs; bw runs\n"
           "                  when a decode case is selected or WORD is in \"bw\")\n"
           "  --threads=LIST  thread counts, comma-separated (default 1,2)\n"
           "  --reps=N        exactly N timed runs per measurement (default adaptive, 3..7)\n"
           "  --naive-all     run the naive reference on every case (slow: minutes)\n"
           "  --no-naive      never run the naive reference\n"
           "  --no-hugepages  do not madvise(MADV_HUGEPAGE) the large buffers\n"
           "  --no-bind       do not pin OpenMP thread i to CPU i (pinned by default, unless\n"
           "                  OMP_PROC_BIND is in the environment: then libgomp places the threads)\n"
           "cases:\n");
    for (i = 0; i < N_CASES; ++i)
        printf("  %-26s op=%-6s%s%s%s\n", cases[i].name, cases[i].op, cases[i].naive ? " naive" : "",
               cases[i].skip_quick ? " (not --quick)" : "", cases[i].long_only ? " (--long only)" : "");
    for (i = 0; i < N_GEMV_CASES; ++i)
        printf("  %-26s op=gemv   %s\n", gemv_cases[i].name, gemv_cases[i].layout ? "layout=out_in" : "layout=in_out");
}

static void parse_threads(const char *s)
{
    g.n_threads = 0;
    while (*s) {
        char *end;
        const long t = strtol(s, &end, 10);
        if (end == s || t < 1 || t > 1024 || g.n_threads == MAX_THREAD_COUNTS) die("bad --threads list");
        g.threads[g.n_threads++] = (int)t;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') die("bad --threads list");
    }
    if (g.n_threads == 0) die("bad --threads list");
}

/* Measures, records and prints the FMA peak of t threads; name suffix "" at the start, "_end" at the end. */
static double peak_line(int t, const char *suffix)
{
    result r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "peak_fma_%s%s", FMA_SIMD, suffix);
    r.op = "peak";
    r.impl = "machine";
    r.threads = t;
    r.err = -1.0;
    r.simd = FMA_SIMD;
    r.gflops = measure_peak(t, &r.reps, &r.other_rate);
    r.pct_peak = 100.0;
    r.flops = (double)t * (double)PEAK_ITERS * FMA_FLOPS_PER_ITER;
    r.ms = r.flops / (r.gflops * 1e6);
    if (n_results == MAX_RESULTS) die("too many results");
    results[n_results++] = r;
    printf("  FMA peak%s,  %d thread%s: %7.1f GFLOP/s (best of %d; median %.1f)\n", *suffix ? " at the end" : "",
           t, t > 1 ? "s" : " ", r.gflops, r.reps, r.other_rate);
    return r.gflops;
}

/* The CPU's name from /proc/cpuinfo, or "unknown". */
static void cpu_name(char *buf, size_t size)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    snprintf(buf, size, "unknown");
    if (!f) return;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            const char *p = strchr(line, ':');
            if (p) {
                size_t n;
                for (++p; *p == ' '; ++p) {}
                snprintf(buf, size, "%s", p);
                n = strlen(buf);
                if (n && buf[n - 1] == '\n') buf[n - 1] = 0;
            }
            break;
        }
    fclose(f);
}

/* Pins OpenMP thread i of a team of n to the i-th allowed CPU (modulo their number). Unpinned, the two
   OpenMP threads often share one vCPU on a 2-vCPU machine for a whole run (2 threads = 1 thread's
   speed). libgomp keeps and reuses the same pool threads in later parallel regions, so they stay pinned.
   Done by hand rather than through OMP_PROC_BIND: libgomp pins the main thread at load time, before
   OpenBLAS counts the CPUs it may use, and OpenBLAS then runs every call on one CPU. OpenBLAS's own
   threads stay unpinned. Returns 0 when it could not pin. */
static int pin_threads(int n)
{
#if defined(_OPENMP) && defined(CPU_SET)
    cpu_set_t allowed;
    int cpus[CPU_SETSIZE], n_cpus = 0, c, ok = 1;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return 0;
    for (c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &allowed)) cpus[n_cpus++] = c;
    if (n_cpus == 0) return 0;
#pragma omp parallel num_threads(n) reduction(&& : ok)
    {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[omp_get_thread_num() % n_cpus], &one);
        ok = sched_setaffinity(0, sizeof one, &one) == 0;
    }
    return ok;
#else
    (void)n;
    return 0;
#endif
}

int main(int argc, char **argv)
{
    int i, ti, any_decode = 0, gemv_bw = 0, want_bw, max_threads = 1, bind = 1, pinned = 0;
    char cpu[128];
    long l3 = -1;
#ifdef BENCH_OPENBLAS
    openblas_fix_coretype(argv);
#endif
#ifdef _SC_LEVEL3_CACHE_SIZE
    l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    g.l3_bytes = l3 > 0 ? (size_t)l3 : (size_t)32 << 20;
    g.hugepages = 1;
    g.threads[0] = 1;
    g.threads[1] = 2;
#ifdef _OPENMP
    g.n_threads = 2;
#else
    g.n_threads = 1; /* built without OpenMP: one thread */
#endif
    for (i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) g.quick = 1;
        else if (!strcmp(a, "--long")) g.long_cases = 1;
        else if (!strncmp(a, "--filter=", 9)) g.filter = a + 9;
        else if (!strncmp(a, "--threads=", 10)) parse_threads(a + 10);
        else if (!strncmp(a, "--reps=", 7)) {
            g.reps = atoi(a + 7);
            if (g.reps < 1 || g.reps > 16) die("--reps must be 1..16");
        } else if (!strcmp(a, "--naive-all")) g.naive_all = 1;
        else if (!strcmp(a, "--no-naive")) g.no_naive = 1;
        else if (!strcmp(a, "--no-hugepages")) g.hugepages = 0;
        else if (!strcmp(a, "--no-bind")) bind = 0;
        else if (!strcmp(a, "--list") || !strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        } else {
            fprintf(stderr, "bench: unknown argument %s\n", a);
            usage();
            return 2;
        }
    }
#ifdef _OPENMP
    max_threads = omp_get_num_procs();
#else
    (void)bind;
    (void)pinned;
    for (i = 0; i < g.n_threads; ++i)
        if (g.threads[i] != 1) die("built without OpenMP: only --threads=1");
#endif
    for (i = 0; i < g.n_threads; ++i) {
        if (g.threads[i] > max_threads)
            fprintf(stderr, "bench: warning: %d threads on %d processors\n", g.threads[i], max_threads);
        if (thread_index(g.threads[i]) != i) die("repeated thread count in --threads");
    }
    if (thread_index(1) > 0) die("--threads: put 1 first (the 1-thread results are the reference)");

    printf("attention.h %s benchmark: simd=%s openmp=%s openblas=%s n_threads_field=%s quick=%d processors=%d\n",
           ATTN_VERSION_STRING, FMA_SIMD,
#ifdef _OPENMP
           "yes",
#else
           "no",
#endif
#ifdef BENCH_OPENBLAS
           "yes",
#else
           "no",
#endif
#ifdef BENCH_HAS_N_THREADS
           "yes",
#else
           "no",
#endif
           g.quick, max_threads);
    {
        int mt = 1;
        for (i = 0; i < g.n_threads; ++i) mt = g.threads[i] > mt ? g.threads[i] : mt;
        if (bind && !getenv("OMP_PROC_BIND")) pinned = pin_threads(mt);
    }
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__AVX512F__)
    /* the microbenchmarks use the instruction set of the build: -march=native makes them the machine's */
    if (__builtin_cpu_supports("avx512f") || (__builtin_cpu_supports("avx2") && strcmp(FMA_SIMD, "avx2")))
        printf("warning: built for %s but this CPU has %s: the peak and bandwidth figures are below the "
               "machine's (build with -march=native)\n", FMA_SIMD,
               __builtin_cpu_supports("avx512f") ? "AVX-512" : "AVX2");
#endif
    cpu_name(cpu, sizeof cpu);
    printf("cpu: %s; last-level cache %.0f MiB; OpenMP threads %s\n", cpu, g.l3_bytes / 1048576.0,
#ifdef _OPENMP
           pinned ? "pinned one per CPU" : getenv("OMP_PROC_BIND") ? "placed by OMP_PROC_BIND" : "not pinned"
#else
           "(no OpenMP)"
#endif
    );
#ifdef BENCH_OPENBLAS
    printf("openblas: %s (core %s%s%s%s)\n", openblas_get_config(), openblas_get_corename(),
           getenv("OPENBLAS_CORETYPE") ? ", OPENBLAS_CORETYPE=" : "",
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "",
           getenv("BENCH_OPENBLAS_DETECTED") ? ", set by the bench: OpenBLAS detected Prescott" : "");
#endif
    printf("inputs uniform in [-1,1] (mha weights scaled by 1/sqrt(d_model)), fixed seed; ms = median of the "
           "repeated runs after warm-up; naive: one cold run (%s)\n",
           g.quick || g.no_naive ? "skipped" : g.naive_all ? "every case" : "sdpa N<=2048 with 8 heads, mha, decode");

    /* warm the OpenMP thread pool, so thread creation is in no measurement (nor in the memory growth) */
#ifdef _OPENMP
    for (i = 0; i < g.n_threads; ++i) {
        float s = 0.0f;
#pragma omp parallel num_threads(g.threads[i]) reduction(+ : s)
        s += 1.0f;
        bench_sink = s;
    }
#endif

    /* 1. the memory case first: nothing has raised the peak RSS yet */
    for (i = 0; i < N_CASES; ++i)
        if (!strcmp(cases[i].op, "mem") && selected(&cases[i])) {
            print_table_header();
            run_mem_case(&cases[i]);
        }

    /* 2. the machine: FMA peak and DRAM read bandwidth per thread count */
    for (i = 0; i < N_CASES; ++i)
        if (!strcmp(cases[i].op, "decode") && selected(&cases[i])) any_decode = 1;
    for (i = 0; i < N_GEMV_CASES; ++i)
        if (gemv_selected(&gemv_cases[i])) any_decode = 1; /* the projection rows need the bandwidth too */
    if (!g.filter || strstr("decode_layer_llama7b_kv4096_bf16", g.filter)) any_decode = 1;
    want_bw = any_decode || (g.filter && strstr("bw", g.filter));
    printf("\nmachine (FMA peak: 12 independent %s FMA chains per thread; DRAM read: 2 streams x %zu MiB, "
           "%s loads):\n", FMA_SIMD, bw_array_bytes() >> 20, FMA_SIMD);
    for (ti = 0; ti < g.n_threads; ++ti) g.peak[ti] = peak_line(g.threads[ti], "");
    for (ti = 1; ti < g.n_threads; ++ti)
        if (g.peak[ti] < 0.75 * g.threads[ti] * g.peak[0] / g.threads[0])
            printf("  warning: %d threads reach only %.2fx the 1-thread peak: the CPUs are shared or throttled "
                   "(other work on the host); the %d-thread results are not reliable\n", g.threads[ti],
                   g.peak[ti] / g.peak[0], g.threads[ti]);
    for (i = 0; i < n_results; ++i) /* the memory case ran before the peak was known */
        if (!strcmp(results[i].op, "mem") && (ti = thread_index(results[i].threads)) >= 0 && g.peak[ti] > 0)
            results[i].pct_peak = 100.0 * results[i].gflops / g.peak[ti];
    if (want_bw) measure_machine_bw("", "  ");

    /* 3. the cases */
    for (i = 0, ti = 0; i < N_CASES; ++i)
        if (strcmp(cases[i].op, "mem") && selected(&cases[i])) {
            if (!ti++) print_table_header();
            if (!strcmp(cases[i].op, "decode")) /* the bandwidth of this minute of the host, for its %bw */
                measure_machine_bw("_at_decode", "                           ");
            run_case(&cases[i]);
        }

    for (i = 0, gemv_bw = 0; i < N_GEMV_CASES; ++i)
        if (gemv_selected(&gemv_cases[i])) {
            if (!ti++) print_table_header();
            if (!gemv_bw++) /* the bandwidth of this minute, for the %bw of the projection rows */
                measure_machine_bw("_at_gemv", "                           ");
            run_gemv_case(&gemv_cases[i]);
        }

    if (!g.filter || strstr("decode_layer_llama7b_kv4096_bf16", g.filter)) {
        if (!ti++) print_table_header();
        measure_machine_bw("_at_decode_layer", "                           ");
        if (!g.filter || strstr("decode_layer_llama7b_kv4096", g.filter)) run_decode_layer_case(ATTN_F32);
        run_decode_layer_case(ATTN_BF16);
    }

    /* 4. the peak again: a large change means the machine was not quiet (other work, shared host) */
    printf("\nmachine again (the %%peak column used the figures from the start):\n");
    for (ti = 0; ti < g.n_threads; ++ti) {
        const double end = peak_line(g.threads[ti], "_end");
        if (end > 1.1 * g.peak[ti] || end < 0.9 * g.peak[ti])
            printf("  warning: the %d-thread peak moved by %+.0f%% during the run: the machine was not quiet\n",
                   g.threads[ti], 100.0 * (end / g.peak[ti] - 1.0));
    }

    printf("\ncolumns: thr threads; c causal (0 none, 1 top-left, 2 bottom-right); ms median; %%peak of the FMA peak "
           "and %%bw of the DRAM read bandwidth (the one measured right before the decoding case) with the same "
           "thread count; x1t speedup over 1 "
           "thread (same impl); xattn ms / attention.h ms (same case and threads; > 1: attention.h faster); err "
           "max|out - attention.h out| / max|attention.h out|\n");
    print_bench_lines();
    return 0;
}
