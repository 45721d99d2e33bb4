/* decode_probe.c - the decoding kernel against a plain read of the same bytes, for bench/RESULTS.md.

   The bench compares decoding with a two-stream DRAM read measured in the same run; this probe asks
   the finer question of where the rest goes. It times, in one process and interleaved round by round
   (so that the host's slow minutes hit every variant alike):
     sdpa   attn_sdpa, one query, H = 32 heads, D = 128, N = 8192 cached keys (K and V: 256 MiB)
     tiles  a plain SIMD read of the same K and V, a 64-key tile of K, then of V (the kernel's order until
            session 8; it now reads K and V side by side)
     kv     a plain read of K and V side by side (two streams)
   each after reading an eviction buffer, and prints the median GB/s of each and the median of the
   per-round ratios. With `hot N` it instead times attn_sdpa on one head of N keys that stays in the
   cache: the kernel's own cost per key, which must hide under the DRAM time of a key.

   Build and run (an AVX-512 or AVX2 machine; from the repository root):
       cc -std=c99 -O2 -march=native -fopenmp -o build/decode_probe bench/decode_probe.c -lm
       ./build/decode_probe [threads]      # DRAM: attn_sdpa vs plain reads, 15 rounds
       ./build/decode_probe hot 256        # cache-resident: ns per key */

#define _GNU_SOURCE
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define ATTENTION_IMPLEMENTATION
#include "../attention.h"

/* The plain reads use the widest vectors the build targets: AVX-512, else AVX2. */
#if defined(__AVX512F__)
typedef __m512 vec;
#define VW 16
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_load_ps(p)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUM(a) _mm512_reduce_add_ps(a)
#elif defined(__AVX2__)
typedef __m256 vec;
#define VW 8
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_load_ps(p)
#define VADD(a, b) _mm256_add_ps(a, b)
static float vsum256(__m256 a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#define VSUM(a) vsum256(a)
#else
#error "decode_probe reads with AVX-512 or AVX2: build with -march=native on such a machine"
#endif

enum { H = 32, N = 8192, D = 128, ROUNDS = 15 };

static volatile float sink;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *alloc_floats(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, (size_t)2 << 20, n * sizeof(float)) != 0) abort();
    (void)madvise(p, n * sizeof(float), MADV_HUGEPAGE);
    memset(p, 0, n * sizeof(float));
    return (float *)p;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* sum of n floats (a multiple of 4 VW) with four independent chains */
static vec read_sum(const float *p, size_t n, vec s)
{
    vec a = VZERO(), b = a, c = a, d = a;
    size_t i;
    for (i = 0; i < n; i += 4 * VW) {
        a = VADD(a, VLOAD(p + i));
        b = VADD(b, VLOAD(p + i + VW));
        c = VADD(c, VLOAD(p + i + 2 * VW));
        d = VADD(d, VLOAD(p + i + 3 * VW));
    }
    return VADD(s, VADD(VADD(a, b), VADD(c, d)));
}

/* sum of two arrays of n floats (a multiple of 2 VW) read side by side */
static vec read_sum2(const float *p, const float *q, size_t n, vec s)
{
    vec a = VZERO(), b = a, c = a, d = a;
    size_t i;
    for (i = 0; i < n; i += 2 * VW) {
        a = VADD(a, VLOAD(p + i));
        b = VADD(b, VLOAD(p + i + VW));
        c = VADD(c, VLOAD(q + i));
        d = VADD(d, VLOAD(q + i + VW));
    }
    return VADD(s, VADD(VADD(a, b), VADD(c, d)));
}

static void fill(float *q, float *k, float *v, size_t per_head, int heads)
{
    size_t i;
    for (i = 0; i < (size_t)heads * D; ++i) q[i] = (float)((i * 3) % 7) * 0.05f;
    for (i = 0; i < (size_t)heads * per_head; ++i) {
        k[i] = (float)((i * 7) % 13) * 0.1f - 0.6f;
        v[i] = (float)((i * 5) % 11) * 0.1f;
    }
}

static int hot(int n_keys)
{
    const size_t per = (size_t)n_keys * D;
    float *q = alloc_floats(D), *k = alloc_floats(per), *v = alloc_floats(per), *o = alloc_floats(D);
    const attn_dims d = {1, 1, 1, 1, n_keys, D, D};
    const attn_stride qs = attn_stride_bhnd(1, 1, D), ks = attn_stride_bhnd(1, n_keys, D);
    attn_options opt;
    size_t ws_bytes;
    void *ws;
    double best = 1e30;
    int r, reps = 20000000 / n_keys;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = 1;
    fill(q, k, v, per, 1);
    if (attn_sdpa_workspace_size(&ws_bytes, &d, &opt) != ATTN_OK || !(ws = malloc(ws_bytes))) return 1;
    for (r = 0; r < (reps < 10 ? 10 : reps); ++r) {
        const double t0 = now_s();
        double dt;
        if (attn_sdpa(o, qs, q, qs, k, ks, v, ks, &d, &opt, ws, ws_bytes) != ATTN_OK) return 1;
        dt = now_s() - t0;
        best = dt < best ? dt : best;
    }
    printf("hot, one head of %d keys, D = %d, %s: %.1f ns per key (%.1f GB/s of K and V)\n", n_keys, D,
           attn_simd_name(), 1e9 * best / n_keys, 2.0 * (double)per * sizeof(float) / best / 1e9);
    return 0;
}

int main(int argc, char **argv)
{
    const size_t per = (size_t)N * D, evict_n = (size_t)1200 << 18; /* 1.2 GB: more than any L3 here */
    const int threads = argc > 1 && strcmp(argv[1], "hot") ? atoi(argv[1]) : 1;
    float *k, *v, *q, *o, *e;
    double t[3][ROUNDS], ratio_tiles[ROUNDS], ratio_kv[ROUNDS];
    const double bytes = 2.0 * H * (double)per * sizeof(float);
    const attn_dims d = {1, H, H, 1, N, D, D};
    const attn_stride qs = attn_stride_bhnd(H, 1, D), ks = attn_stride_bhnd(H, N, D);
    attn_options opt;
    size_t ws_bytes;
    void *ws;
    int r, m;
    if (argc > 2 && !strcmp(argv[1], "hot")) return hot(atoi(argv[2]));
    k = alloc_floats(H * per); v = alloc_floats(H * per); e = alloc_floats(evict_n);
    q = alloc_floats(H * D); o = alloc_floats(H * D);
    fill(q, k, v, per, H);
    memset(&opt, 0, sizeof opt);
    opt.n_threads = threads;
    opt.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    if (attn_sdpa_workspace_size(&ws_bytes, &d, &opt) != ATTN_OK || !(ws = malloc(ws_bytes))) return 1;
    for (r = 0; r < ROUNDS; ++r)
        for (m = 0; m < 3; ++m) {
            double t0;
            float total = 0.0f;
            int h;
            sink = VSUM(read_sum(e, evict_n, VZERO())); /* untimed */
            t0 = now_s();
            if (m == 0) {
                if (attn_sdpa(o, qs, q, qs, k, ks, v, ks, &d, &opt, ws, ws_bytes) != ATTN_OK) return 1;
            } else {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) reduction(+ : total)
#endif
                for (h = 0; h < H; ++h) {
                    const float *k_h = k + (size_t)h * per, *v_h = v + (size_t)h * per;
                    vec s = VZERO();
                    size_t j;
                    if (m == 1)
                        for (j = 0; j < per; j += 64 * D) s = read_sum(v_h + j, 64 * D, read_sum(k_h + j, 64 * D, s));
                    else
                        s = read_sum2(k_h, v_h, per, s);
                    total += VSUM(s);
                }
            }
            t[m][r] = now_s() - t0;
            sink = total;
        }
    for (r = 0; r < ROUNDS; ++r) {
        ratio_tiles[r] = t[1][r] / t[0][r];
        ratio_kv[r] = t[2][r] / t[0][r];
    }
    printf("decoding, H = %d, N = %d, D = %d, %d thread%s, %s, %d rounds: median GB/s: attn_sdpa %.2f, plain "
           "read by tiles %.2f, plain read of K and V side by side %.2f; median ratio attn_sdpa / tiles %.3f, "
           "attn_sdpa / side by side %.3f\n", H, N, D, threads, threads > 1 ? "s" : "", attn_simd_name(), ROUNDS,
           bytes / median(t[0], ROUNDS) / 1e9, bytes / median(t[1], ROUNDS) / 1e9, bytes / median(t[2], ROUNDS) / 1e9,
           median(ratio_tiles, ROUNDS), median(ratio_kv, ROUNDS));
    return 0;
}
