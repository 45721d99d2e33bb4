/* llama_decode: a small Llama-style decoder (RoPE, grouped-query attention, RMSNorm, SwiGLU) generating
   text through per-layer KV caches.

   The model has random weights (seeded; it writes nonsense), but every part a real one has: token
   embeddings tied to the output layer, two layers of pre-norm attention (8 query heads over 2 kv heads,
   head_dim 32, rotary positions GPT-NeoX/Llama style, weights stored [out x in] as PyTorch's nn.Linear,
   ATTN_LAYOUT_OUT_IN) and a SwiGLU MLP, a final RMSNorm. The non-attention parts are written here.
     - prefill: the 24-token prompt goes through each layer in one attn_kv_step (n_new = 24), which
       projects Q, K, V, rotates Q and K to their positions, appends K and V to the layer's cache,
       attends causally and applies W_o;
     - decode: greedy, one token per step (n_new = 1), timed: the step's time and tokens per second;
     - check: the whole sequence once more through attn_self_forward (causal, the same RoPE from position
       0), from scratch; the logits at every position must match the incremental ones.
   It ends with a line starting "ok:" (or says what differed and exits 1).

   Build and run:  make examples && ./build/llama_decode */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ATTN_ERROR_HOOK(func, code, arg, rule) \
    fprintf(stderr, "%s: %s: %s: %s\n", func, attn_result_string(code), arg, rule)
#define ATTENTION_IMPLEMENTATION
#include "../attention.h"

enum {
    VOCAB = 256, E = 256, HQ = 8, HKV = 2, HD = E / HQ, KVD = HKV * HD, FFN = 512, LAYERS = 2,
    PROMPT = 24, MAX_LEN = 64
};

typedef struct layer {
    float attn_norm[E], ffn_norm[E];
    float wq[E * E], wk[KVD * E], wv[KVD * E], wo[E * E]; /* [out x in] */
    float w1[FFN * E], w3[FFN * E], w2[E * FFN];          /* gate, up [FFN x E]; down [E x FFN] */
    float k_cache[HKV * MAX_LEN * HD], v_cache[HKV * MAX_LEN * HD];
    int len;
    attn_mha mha;
    attn_kv_cache cache;
} layer;

static float g_embed[VOCAB * E], g_final_norm[E];
static layer g_layers[LAYERS];

static unsigned g_seed = 12345u;
static float rnd(void) /* uniform in [-1, 1) */
{
    g_seed = g_seed * 1664525u + 1013904223u;
    return (float)(g_seed >> 8) / 8388608.0f - 1.0f;
}
static void fill(float *w, int n, float amp)
{
    int i;
    for (i = 0; i < n; ++i) w[i] = amp * rnd();
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* y [n x E] = x / rms(x) * g, per row */
static void rmsnorm(float *y, const float *x, const float *g, int n)
{
    int i, c;
    for (i = 0; i < n; ++i) {
        double ss = 0.0;
        float inv;
        for (c = 0; c < E; ++c) ss += (double)x[i * E + c] * x[i * E + c];
        inv = (float)(1.0 / sqrt(ss / E + 1e-5));
        for (c = 0; c < E; ++c) y[i * E + c] = x[i * E + c] * inv * g[c];
    }
}

/* h [n x E] += W2 (silu(W1 a) * (W3 a)), a = rmsnorm(h) */
static attn_result mlp(float *h, const layer *l, int n, float *a, float *g1, float *g3)
{
    attn_result r;
    int i;
    rmsnorm(a, h, l->ffn_norm, n);
    if ((r = attn_project(g1, FFN, a, E, l->w1, E, ATTN_LAYOUT_OUT_IN, NULL, n, E, FFN)) != ATTN_OK ||
        (r = attn_project(g3, FFN, a, E, l->w3, E, ATTN_LAYOUT_OUT_IN, NULL, n, E, FFN)) != ATTN_OK)
        return r;
    for (i = 0; i < n * FFN; ++i) g1[i] = g1[i] / (1.0f + expf(-g1[i])) * g3[i];
    if ((r = attn_project(a, E, g1, FFN, l->w2, FFN, ATTN_LAYOUT_OUT_IN, NULL, n, FFN, E)) != ATTN_OK) return r;
    for (i = 0; i < n * E; ++i) h[i] += a[i];
    return ATTN_OK;
}

/* logits [n x VOCAB] of the final hidden states h [n x E] (the tied embedding) */
static attn_result head(float *logits, const float *h, int n, float *a)
{
    rmsnorm(a, h, g_final_norm, n);
    return attn_project(logits, VOCAB, a, E, g_embed, E, ATTN_LAYOUT_OUT_IN, NULL, n, E, VOCAB);
}

/* n tokens at the next positions through the model; cached: attn_kv_step per layer, else one causal
   attn_self_forward over the n tokens from position 0. logits [n x VOCAB]. */
static attn_result forward(float *logits, const int *tokens, int n, int cached, void *ws, size_t ws_bytes)
{
    static float h[MAX_LEN * E], a[MAX_LEN * E], att[MAX_LEN * E], g1[MAX_LEN * FFN], g3[MAX_LEN * FFN];
    attn_options opt = {0};
    attn_result r;
    int i, li;
    for (i = 0; i < n; ++i) memcpy(h + i * E, g_embed + tokens[i] * E, sizeof(float) * E);
    opt.causal = cached ? ATTN_CAUSAL_NONE : ATTN_CAUSAL_TOP_LEFT; /* a cache step is causal by itself */
    for (li = 0; li < LAYERS; ++li) {
        layer *l = &g_layers[li];
        rmsnorm(a, h, l->attn_norm, n);
        r = cached ? attn_kv_step(att, &l->cache, a, n, &l->mha, &opt, ws, ws_bytes)
                   : attn_self_forward(att, a, 1, n, &l->mha, &opt, NULL, 0);
        if (r != ATTN_OK) return r;
        for (i = 0; i < n * E; ++i) h[i] += att[i];
        if ((r = mlp(h, l, n, a, g1, g3)) != ATTN_OK) return r;
    }
    return head(logits, h, n, a);
}

static int argmax(const float *x, int n)
{
    int i, best = 0;
    for (i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return best;
}

int main(void)
{
    static float logits[MAX_LEN * VOCAB], full[MAX_LEN * VOCAB];
    int tokens[MAX_LEN];
    size_t ws_prefill, ws_step, ws_bytes;
    void *ws;
    attn_result r;
    double t0, ms_prefill, ms_decode = 0.0, ms_max = 0.0, err = 0.0, scale = 0.0;
    int i, li, t;

    fill(g_embed, VOCAB * E, 1.0f);
    for (i = 0; i < E; ++i) g_final_norm[i] = 1.0f + 0.1f * rnd();
    for (li = 0; li < LAYERS; ++li) {
        layer *l = &g_layers[li];
        for (i = 0; i < E; ++i) { l->attn_norm[i] = 1.0f + 0.1f * rnd(); l->ffn_norm[i] = 1.0f + 0.1f * rnd(); }
        fill(l->wq, E * E, 0.1f); fill(l->wk, KVD * E, 0.1f); fill(l->wv, KVD * E, 0.1f);
        fill(l->wo, E * E, 0.06f); fill(l->w1, FFN * E, 0.06f); fill(l->w3, FFN * E, 0.06f);
        fill(l->w2, E * FFN, 0.04f);
        memset(&l->mha, 0, sizeof l->mha);
        l->mha.d_model = E; l->mha.n_heads = HQ; l->mha.n_kv_heads = HKV; l->mha.layout = ATTN_LAYOUT_OUT_IN;
        l->mha.w_q = l->wq; l->mha.w_k = l->wk; l->mha.w_v = l->wv; l->mha.w_o = l->wo;
        l->mha.rope.style = ATTN_ROPE_NEOX; /* Llama's rotate-half RoPE over the whole head, base 10000 */
        memset(&l->cache, 0, sizeof l->cache);
        l->cache.batch = 1; l->cache.n_kv_heads = HKV; l->cache.max_len = MAX_LEN; l->cache.d_k = HD;
        l->cache.k = l->k_cache; l->cache.v = l->v_cache; l->cache.len = &l->len;
        l->len = 0;
    }
    for (t = 0; t < PROMPT; ++t) tokens[t] = (int)(128.0f * (rnd() + 1.0f)) % VOCAB; /* a random prompt */

    /* one workspace for all layers and steps: the larger of the prefill's and a one-token step's */
    if ((r = attn_kv_step_workspace_size(&ws_prefill, &g_layers[0].cache, PROMPT, &g_layers[0].mha, NULL)) != ATTN_OK ||
        (r = attn_kv_step_workspace_size(&ws_step, &g_layers[0].cache, 1, &g_layers[0].mha, NULL)) != ATTN_OK)
        goto fail;
    ws_bytes = ws_prefill > ws_step ? ws_prefill : ws_step;
    if (!(ws = malloc(ws_bytes))) return 1;

    t0 = now_ms();
    if ((r = forward(logits, tokens, PROMPT, 1, ws, ws_bytes)) != ATTN_OK) goto fail;
    ms_prefill = now_ms() - t0;
    for (t = PROMPT; t < MAX_LEN; ++t) {
        double ms;
        tokens[t] = argmax(logits + (t - 1) * VOCAB, VOCAB);
        t0 = now_ms();
        if ((r = forward(logits + t * VOCAB, tokens + t, 1, 1, ws, ws_bytes)) != ATTN_OK) goto fail;
        ms = now_ms() - t0;
        ms_decode += ms;
        if (ms > ms_max) ms_max = ms;
    }
    printf("attention.h %s (%s kernels): %d layers, d_model %d, %d query heads over %d kv heads, RoPE, SwiGLU\n",
           ATTN_VERSION_STRING, attn_simd_name(), LAYERS, E, HQ, HKV);
    printf("prefill %d tokens: %.3f ms; decode %d tokens: %.3f ms per token (slowest %.3f), %.0f tokens/s\n",
           PROMPT, ms_prefill, MAX_LEN - PROMPT, ms_decode / (MAX_LEN - PROMPT), ms_max,
           1e3 * (MAX_LEN - PROMPT) / ms_decode);
    printf("tokens:");
    for (t = 0; t < MAX_LEN; ++t) printf(" %d", tokens[t]);
    printf("\n");

    /* the full causal pass over the whole sequence, no cache */
    if ((r = forward(full, tokens, MAX_LEN, 0, NULL, 0)) != ATTN_OK) goto fail;
    for (i = 0; i < MAX_LEN * VOCAB; ++i) {
        const double e = fabs((double)full[i] - logits[i]);
        if (e > err) err = e;
        if (fabs(full[i]) > scale) scale = fabs(full[i]);
    }
    free(ws);
    printf("max |cached - full pass| over %d positions: %.2g (logits up to %.2g)\n", MAX_LEN, err, scale);
    if (!(err <= 1e-5 * scale)) {
        printf("FAILED: decoding through the caches differs from the full causal pass\n");
        return 1;
    }
    printf("ok: %d tokens decoded through the KV caches equal the full causal pass (relative %.1e)\n",
           MAX_LEN - PROMPT, err / scale);
    return 0;
fail:
    fprintf(stderr, "llama_decode: %s\n", attn_result_string(r));
    return 1;
}
