/* gpt_decode: GPT-style autoregressive decoding with a caller-owned KV cache and grouped-query heads.

   A toy one-layer, attention-only language model with random weights (vocabulary 32, d_model 64, 8 query
   heads sharing 2 key/value heads, head_dim 8) reads a 5-token prompt and greedily writes 11 more tokens
   (they mean nothing; the point is the bookkeeping):
     - the KV cache is the caller's: K and V, each [Hkv, MAX_LEN, D], seen by attn_sdpa through the strides
       {head = MAX_LEN * D, row = D}, i.e. attn_stride_bhnd(Hkv, MAX_LEN, D), whatever the current length;
       each kv head's projection is one attn_project call that reads its D columns of W_k (row stride
       Hkv * D) and writes straight into that head's rows of the cache;
     - prefill: the prompt's K, V go into the cache and one attn_sdpa call, causal (top-left), attends over
       them;
     - then one token at a time: project the new token, append its K, V, and attn_sdpa with n_q = 1 over
       n_kv = the current length, ATTN_CAUSAL_BOTTOM_RIGHT (the last query sees every key: the convention
       that also covers several new tokens at once);
     - one workspace, sized once before the loop with attn_sdpa_workspace_size for the largest call (the
       size can grow with n_kv on long caches, so ask for MAX_LEN), so no step allocates.
   At the end one causal pass over the whole sequence, from scratch, must give the same attention
   outputs at every position (to 1e-5).

   Build and run:  make examples && ./build/gpt_decode */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* On any failure, print which argument broke which rule (README.md, "Error codes"). */
#define ATTN_ERROR_HOOK(func, code, arg, rule) \
    fprintf(stderr, "%s: %s: %s: %s\n", func, attn_result_string(code), arg, rule)
#define ATTENTION_IMPLEMENTATION
#include "../attention.h"

enum {
    VOCAB = 32, D_MODEL = 64, HQ = 8, HKV = 2, D = D_MODEL / HQ, /* head_dim */
    PROMPT = 5, MAX_LEN = 16
};

/* a small deterministic pseudo-random number in [-0.5, 0.5) from a seed */
static float rnd(unsigned seed)
{
    seed = seed * 2654435761u + 12345u;
    seed ^= seed >> 15;
    seed *= 0x2c1b3c6du;
    seed ^= seed >> 12;
    return (float)(seed % 10000u) / 10000.0f - 0.5f;
}

/* the model's weights, [d_in x d_out] (ATTN_LAYOUT_IN_OUT) except the tied embedding */
static float g_embed[VOCAB * D_MODEL];   /* token embeddings [VOCAB x D_MODEL], also the output layer */
static float g_pos[MAX_LEN * D_MODEL];   /* learned position embeddings */
static float g_wq[D_MODEL * D_MODEL];    /* [D_MODEL x HQ*D] */
static float g_wk[D_MODEL * HKV * D];    /* [D_MODEL x HKV*D] */
static float g_wv[D_MODEL * HKV * D];
static float g_wo[D_MODEL * D_MODEL];

/* x [D_MODEL] = embedding of token at position t */
static void input(float *x, int token, int t)
{
    int c;
    for (c = 0; c < D_MODEL; ++c) x[c] = g_embed[token * D_MODEL + c] + g_pos[t * D_MODEL + c];
}

/* K and V of n tokens x [n x D_MODEL] into rows t0.. of each head of the caches [HKV, MAX_LEN, D] */
static attn_result append_kv(float *k_cache, float *v_cache, const float *x, int t0, int n)
{
    attn_result r = ATTN_OK;
    int h;
    for (h = 0; h < HKV && r == ATTN_OK; ++h) {
        r = attn_project(k_cache + (h * MAX_LEN + t0) * D, D, x, D_MODEL, g_wk + h * D, HKV * D,
                         ATTN_LAYOUT_IN_OUT, NULL, n, D_MODEL, D);
        if (r == ATTN_OK)
            r = attn_project(v_cache + (h * MAX_LEN + t0) * D, D, x, D_MODEL, g_wv + h * D, HKV * D,
                             ATTN_LAYOUT_IN_OUT, NULL, n, D_MODEL, D);
    }
    return r;
}

/* the token after attention output a [D_MODEL] (of the previous position): argmax of (a.W_o).E^T */
static int next_token(const float *a)
{
    float y[D_MODEL], logits[VOCAB];
    int v, best = 0;
    attn_project(y, D_MODEL, a, D_MODEL, g_wo, D_MODEL, ATTN_LAYOUT_IN_OUT, NULL, 1, D_MODEL, D_MODEL);
    /* the tied output layer: E is [VOCAB x D_MODEL], i.e. [d_out x d_in], PyTorch's orientation */
    attn_project(logits, VOCAB, y, D_MODEL, g_embed, D_MODEL, ATTN_LAYOUT_OUT_IN, NULL, 1, D_MODEL, VOCAB);
    for (v = 1; v < VOCAB; ++v)
        if (logits[v] > logits[best]) best = v;
    return best;
}

int main(void)
{
    static float k_cache[HKV * MAX_LEN * D], v_cache[HKV * MAX_LEN * D];
    static float x[MAX_LEN * D_MODEL], q[MAX_LEN * D_MODEL], attn_out[MAX_LEN * D_MODEL];
    static float k_full[MAX_LEN * HKV * D], v_full[MAX_LEN * HKV * D], full[MAX_LEN * D_MODEL];
    const attn_stride cache_s = attn_stride_bhnd(HKV, MAX_LEN, D); /* {HKV*MAX_LEN*D, MAX_LEN*D, D} */
    int tokens[MAX_LEN] = {3, 14, 15, 9, 26}; /* the prompt */
    attn_dims dims = {1, HQ, HKV, PROMPT, PROMPT, D, D};
    attn_options opt = {0};
    size_t ws_prefill, ws_decode;
    void *ws;
    attn_result r;
    float err = 0.0f;
    int i, t;

    for (i = 0; i < VOCAB * D_MODEL; ++i) g_embed[i] = 2.0f * rnd(10u + (unsigned)i);
    for (i = 0; i < MAX_LEN * D_MODEL; ++i) g_pos[i] = 2.0f * rnd(20000u + (unsigned)i);
    for (i = 0; i < D_MODEL * D_MODEL; ++i) {
        g_wq[i] = 1.0f * rnd(30000u + (unsigned)i);
        g_wo[i] = 0.5f * rnd(40000u + (unsigned)i);
    }
    for (i = 0; i < D_MODEL * HKV * D; ++i) {
        g_wk[i] = 0.5f * rnd(50000u + (unsigned)i);
        g_wv[i] = 0.5f * rnd(60000u + (unsigned)i);
    }

    /* one workspace for every call: the prefill's and a decode step's over the full cache */
    opt.causal = ATTN_CAUSAL_TOP_LEFT;
    if ((r = attn_sdpa_workspace_size(&ws_prefill, &dims, &opt)) != ATTN_OK) goto fail;
    dims.n_q = 1;
    dims.n_kv = MAX_LEN;
    opt.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    if ((r = attn_sdpa_workspace_size(&ws_decode, &dims, &opt)) != ATTN_OK) goto fail;
    if (ws_decode < ws_prefill) ws_decode = ws_prefill;
    if (!(ws = malloc(ws_decode))) return 1;

    /* prefill: the prompt's K, V into the cache, Q [PROMPT, HQ*D], and one causal pass */
    for (t = 0; t < PROMPT; ++t) input(x + t * D_MODEL, tokens[t], t);
    if ((r = append_kv(k_cache, v_cache, x, 0, PROMPT)) != ATTN_OK) goto fail;
    if ((r = attn_project(q, D_MODEL, x, D_MODEL, g_wq, D_MODEL, ATTN_LAYOUT_IN_OUT, NULL, PROMPT, D_MODEL,
                          D_MODEL)) != ATTN_OK) goto fail;
    dims.n_q = dims.n_kv = PROMPT;
    opt.causal = ATTN_CAUSAL_TOP_LEFT;
    r = attn_sdpa(attn_out, attn_stride_bnhd(PROMPT, HQ, D), q, attn_stride_bnhd(PROMPT, HQ, D), k_cache, cache_s,
                  v_cache, cache_s, &dims, &opt, ws, ws_decode);
    if (r != ATTN_OK) goto fail;

    /* decode: the token after position t - 1 enters at position t */
    opt.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    dims.n_q = 1;
    for (t = PROMPT; t < MAX_LEN; ++t) {
        float *x_t = x + t * D_MODEL, *q_t = q + t * D_MODEL, *out_t = attn_out + t * D_MODEL;
        tokens[t] = next_token(attn_out + (t - 1) * D_MODEL);
        input(x_t, tokens[t], t);
        if ((r = append_kv(k_cache, v_cache, x_t, t, 1)) != ATTN_OK) goto fail;
        if ((r = attn_project(q_t, D_MODEL, x_t, D_MODEL, g_wq, D_MODEL, ATTN_LAYOUT_IN_OUT, NULL, 1, D_MODEL,
                              D_MODEL)) != ATTN_OK) goto fail;
        dims.n_kv = t + 1; /* the cache so far; its head stride stays MAX_LEN * D */
        r = attn_sdpa(out_t, attn_stride_bnhd(1, HQ, D), q_t, attn_stride_bnhd(1, HQ, D), k_cache, cache_s, v_cache,
                      cache_s, &dims, &opt, ws, ws_decode);
        if (r != ATTN_OK) goto fail;
    }

    printf("attention.h %s (%s kernels): %d query heads over %d kv heads, workspace %zu bytes\n",
           ATTN_VERSION_STRING, attn_simd_name(), HQ, HKV, ws_decode);
    printf("prompt   ");
    for (t = 0; t < PROMPT; ++t) printf(" %2d", tokens[t]);
    printf("\ngenerated");
    for (t = PROMPT; t < MAX_LEN; ++t) printf(" %2d", tokens[t]);
    printf("\n");

    /* check: one causal pass over the whole sequence, K and V recomputed, equals the incremental outputs */
    if ((r = attn_project(k_full, HKV * D, x, D_MODEL, g_wk, HKV * D, ATTN_LAYOUT_IN_OUT, NULL, MAX_LEN, D_MODEL,
                          HKV * D)) != ATTN_OK ||
        (r = attn_project(v_full, HKV * D, x, D_MODEL, g_wv, HKV * D, ATTN_LAYOUT_IN_OUT, NULL, MAX_LEN, D_MODEL,
                          HKV * D)) != ATTN_OK)
        goto fail;
    dims.n_q = dims.n_kv = MAX_LEN;
    opt.causal = ATTN_CAUSAL_TOP_LEFT;
    r = attn_sdpa(full, attn_stride_bnhd(MAX_LEN, HQ, D), q, attn_stride_bnhd(MAX_LEN, HQ, D), k_full,
                  attn_stride_bnhd(MAX_LEN, HKV, D), v_full, attn_stride_bnhd(MAX_LEN, HKV, D), &dims, &opt, NULL, 0);
    if (r != ATTN_OK) goto fail;
    for (i = 0; i < MAX_LEN * D_MODEL; ++i) {
        const float e = fabsf(full[i] - attn_out[i]);
        if (e > err) err = e;
    }
    free(ws);
    printf("max |incremental - full causal pass| over %d positions: %.2g\n", MAX_LEN, err);
    if (err > 1e-5f) {
        printf("FAILED\n");
        return 1;
    }
    printf("ok: decoding with the KV cache matches the full pass\n");
    return 0;
fail:
    fprintf(stderr, "attention: %s\n", attn_result_string(r));
    return 1;
}
