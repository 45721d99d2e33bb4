/* ggml_bench.c - ggml's flash attention beside attention.h's decoding rows, for bench/RESULTS.md.

   Times ggml_flash_attn_ext (ggml's CPU backend, the op llama.cpp decodes with) on bench.c's decoding
   cases: one query of 32 heads, D = 128, against 8192 cached keys, K and V in float32, float16 (llama.cpp's
   default cache), bfloat16 and q8_0, with 1 and 2 threads. Prints one 'bench:' line per measurement in
   bench.c's format (impl=ggml), so that bench/results_table.py puts ggml's time over attention.h's in the
   same minutes, and each case's error against a float64 reference of the stored K and V (ggml
   accumulates P.V in float16 when V is float16, as llama.cpp runs it; attention.h always in float32).

   ggml is not part of attention.h or its CI: build it from a llama.cpp source tree, then this file:
       cmake -S llama.cpp/ggml -B ggml-build -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DGGML_OPENMP=ON \
             -DCMAKE_BUILD_TYPE=Release
       cmake --build ggml-build -j
       make bench-ggml GGML=llama.cpp GGML_BUILD=ggml-build >> bench/results/run1.txt
   (the source of some npm packages holds it: node-llama-cpp's llama/gitRelease.bundle is a git bundle
   of llama.cpp; `touch ggml/ggml.pc.in` if cmake misses that file). */

#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml.h"
#include "ggml-cpu.h"

enum { H = 32, D = 128, N = 8192, REPS = 7 };

static volatile float g_sink;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* Uniform in [-1, 1] from a fixed seed (xorshift64*). */
static unsigned long long g_rng = 0x9E3779B97F4A7C15ull;
static float rnd(void)
{
    g_rng ^= g_rng >> 12; g_rng ^= g_rng << 25; g_rng ^= g_rng >> 27;
    return (float)((g_rng * 2685821657736338717ull) >> 40) / 8388608.0f - 1.0f;
}

/* Reads 512 MiB so that the next call finds K and V in DRAM, as a decoding step does. */
static void evict(const float *buf, size_t n)
{
    float s = 0.0f;
    size_t i;
    for (i = 0; i < n; i += 16) s += buf[i];
    g_sink = s;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One case: K and V of type t filled from the same random floats; q float32. */
static void run_case(enum ggml_type t, const char *kv_name, const char *suffix, const float *src_k,
                     const float *src_v, const float *src_q, const float *ev, size_t ev_n)
{
    const size_t kv_bytes = ggml_row_size(t, (int64_t)D * N * H);
    struct ggml_init_params ip = {2 * kv_bytes + ((size_t)64 << 20), NULL, false};
    struct ggml_context *ctx = ggml_init(ip);
    struct ggml_tensor *q = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, D, 1, H);
    struct ggml_tensor *k = ggml_new_tensor_3d(ctx, t, D, N, H);
    struct ggml_tensor *v = ggml_new_tensor_3d(ctx, t, D, N, H);
    struct ggml_tensor *o = ggml_flash_attn_ext(ctx, q, k, v, NULL, 1.0f / sqrtf((float)D), 0.0f, 0.0f);
    struct ggml_cgraph *gf = ggml_new_graph(ctx);
    const struct ggml_type_traits *tt = ggml_get_type_traits(t);
    float *kf = (float *)malloc(sizeof(float) * (size_t)N * D), *vf = (float *)malloc(sizeof(float) * (size_t)N * D);
    double err = 0.0, top = 0.0;
    int h, threads;
    if (!ctx || !kf || !vf) { fprintf(stderr, "ggml_bench: out of memory\n"); exit(1); }
    ggml_build_forward_expand(gf, o);
    memcpy(q->data, src_q, sizeof(float) * (size_t)H * D);
    for (h = 0; h < H; ++h) { /* rows of head h: quantised as ggml stores them */
        const size_t off = (size_t)h * N * D, row = ggml_row_size(t, (int64_t)N * D);
        if (t == GGML_TYPE_F32) {
            memcpy((char *)k->data + h * row, src_k + off, row);
            memcpy((char *)v->data + h * row, src_v + off, row);
        } else {
            ggml_quantize_chunk(t, src_k + off, (char *)k->data + h * row, 0, N, D, NULL);
            ggml_quantize_chunk(t, src_v + off, (char *)v->data + h * row, 0, N, D, NULL);
        }
    }
    for (threads = 1; threads <= 2; ++threads) {
        double ms[REPS];
        int r;
        for (r = 0; r < REPS + 1; ++r) { /* one warm-up */
            double t0;
            evict(ev, ev_n);
            t0 = now_ms();
            if (ggml_graph_compute_with_ctx(ctx, gf, threads) != GGML_STATUS_SUCCESS) {
                fprintf(stderr, "ggml_bench: compute failed\n");
                exit(1);
            }
            if (r) ms[r - 1] = now_ms() - t0;
        }
        qsort(ms, REPS, sizeof ms[0], cmp_double);
        if (threads == 1) { /* the error against float64 on the stored values (o: [D, H, 1]) */
            for (h = 0; h < H; ++h) {
                const size_t row = ggml_row_size(t, (int64_t)N * D);
                const float *qh = src_q + (size_t)h * D, *oh = (const float *)o->data + (size_t)h * D;
                double *s = (double *)malloc(sizeof(double) * N), mx = -INFINITY, sum = 0.0, acc[D];
                int j, c;
                if (!s) exit(1);
                if (t == GGML_TYPE_F32) {
                    memcpy(kf, (char *)k->data + h * row, row);
                    memcpy(vf, (char *)v->data + h * row, row);
                } else {
                    tt->to_float((char *)k->data + h * row, kf, (int64_t)N * D);
                    tt->to_float((char *)v->data + h * row, vf, (int64_t)N * D);
                }
                for (j = 0; j < N; ++j) {
                    double dot = 0.0;
                    for (c = 0; c < D; ++c) dot += (double)qh[c] * kf[(size_t)j * D + c];
                    s[j] = dot / sqrt((double)D);
                    if (s[j] > mx) mx = s[j];
                }
                for (c = 0; c < D; ++c) acc[c] = 0.0;
                for (j = 0; j < N; ++j) {
                    const double p = exp(s[j] - mx);
                    sum += p;
                    for (c = 0; c < D; ++c) acc[c] += p * vf[(size_t)j * D + c];
                }
                for (c = 0; c < D; ++c) {
                    const double ref = acc[c] / sum;
                    if (fabs(oh[c] - ref) > err) err = fabs(oh[c] - ref);
                    if (fabs(ref) > top) top = fabs(ref);
                }
                free(s);
            }
        }
        printf("bench: op=decode impl=ggml name=decode_h32_d128_kv8192%s B=1 H=%d Hkv=%d Nq=1 Nk=%d D=%d causal=2 "
               "threads=%d ms=%.4f bytes=%.0f kv=%s reps=%d err_f64=%.2e\n",
               suffix, H, H, N, D, threads, ms[REPS / 2], 2.0 * (double)kv_bytes, kv_name, REPS, err / top);
    }
    free(kf); free(vf);
    ggml_free(ctx);
}

int main(void)
{
    const size_t n = (size_t)H * N * D, ev_n = (size_t)128 << 20;
    float *k = (float *)malloc(sizeof(float) * n), *v = (float *)malloc(sizeof(float) * n);
    float *q = (float *)malloc(sizeof(float) * (size_t)H * D), *ev = (float *)malloc(sizeof(float) * ev_n);
    size_t i;
    if (!k || !v || !q || !ev) { fprintf(stderr, "ggml_bench: out of memory\n"); return 1; }
    for (i = 0; i < ev_n; ++i) ev[i] = 1.0f; /* written: untouched pages would all be the one zero page */
    for (i = 0; i < n; ++i) k[i] = rnd();
    for (i = 0; i < n; ++i) v[i] = rnd();
    for (i = 0; i < (size_t)H * D; ++i) q[i] = rnd();
    printf("ggml: %s (ggml_flash_attn_ext, CPU backend)\n", ggml_commit());
    run_case(GGML_TYPE_F32, "f32", "", k, v, q, ev, ev_n);
    run_case(GGML_TYPE_F16, "f16", "_f16", k, v, q, ev, ev_n);
    run_case(GGML_TYPE_BF16, "bf16", "_bf16", k, v, q, ev, ev_n);
    run_case(GGML_TYPE_Q8_0, "q8", "_q8", k, v, q, ev, ev_n);
    free(k); free(v); free(q); free(ev);
    return 0;
}
