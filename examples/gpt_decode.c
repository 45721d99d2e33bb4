/* gpt_decode: GPT-style autoregressive decoding through a KV cache, with grouped-query heads.

   A toy one-layer, attention-only language model with random weights (vocabulary 32, d_model 64, 8 query
   heads sharing 2 key/value heads, head_dim 8) reads a 5-token prompt and greedily writes 11 more tokens
   (they mean nothing; the point is the bookkeeping):
     - the cache is an attn_kv_cache over the caller's memory: K and V [B = 1, Hkv, MAX_LEN, D] and the
       length len[1] (zero: an empty sequence);
     - prefill: one attn_kv_step with the whole prompt (n_new = 5) projects Q, K and V, appends K and V to
       the cache, attends causally and applies W_o;
     - then one token at a time: attn_kv_step with n_new = 1; each new token sees the whole cache;
     - one workspace, sized before the loop with attn_kv_step_workspace_size for the largest step (the size
       covers a step of that many tokens at any cache length up to MAX_LEN), so no step allocates.
   At the end one causal attn_self_forward over the whole sequence, from scratch, must give the same
   outputs at every position (to 1e-5).

   Build and run:  make examples && ./build/gpt_decode */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* On any failure, print which argument broke which rule (README.md, "Errors"). */
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

/* the token after the layer's output y [D_MODEL] (of the previous position): argmax of y.E^T */
static int next_token(const float *y)
{
    float logits[VOCAB];
    int v, best = 0;
    /* the tied output layer: E is [VOCAB x D_MODEL], i.e. [d_out x d_in], PyTorch's orientation */
    attn_project(logits, VOCAB, y, D_MODEL, g_embed, D_MODEL, ATTN_LAYOUT_OUT_IN, NULL, 1, D_MODEL, VOCAB);
    for (v = 1; v < VOCAB; ++v)
        if (logits[v] > logits[best]) best = v;
    return best;
}

int main(void)
{
    static float k_cache[HKV * MAX_LEN * D], v_cache[HKV * MAX_LEN * D];
    static float x[MAX_LEN * D_MODEL], y[MAX_LEN * D_MODEL], full[MAX_LEN * D_MODEL];
    int tokens[MAX_LEN] = {3, 14, 15, 9, 26}; /* the prompt */
    int len = 0;                              /* tokens in the cache */
    attn_kv_cache cache = {0};
    attn_mha m = {0};
    attn_options opt = {0};
    size_t ws_prefill, ws_step;
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
    m.d_model = D_MODEL; m.n_heads = HQ; m.n_kv_heads = HKV;
    m.w_q = g_wq; m.w_k = g_wk; m.w_v = g_wv; m.w_o = g_wo;
    cache.batch = 1; cache.n_kv_heads = HKV; cache.max_len = MAX_LEN; cache.d_k = D;
    cache.k = k_cache; cache.v = v_cache; cache.len = &len;

    /* one workspace for every step: the larger of the prefill's and a one-token step's */
    if ((r = attn_kv_step_workspace_size(&ws_prefill, &cache, PROMPT, &m, &opt)) != ATTN_OK ||
        (r = attn_kv_step_workspace_size(&ws_step, &cache, 1, &m, &opt)) != ATTN_OK)
        goto fail;
    if (ws_step < ws_prefill) ws_step = ws_prefill;
    if (!(ws = malloc(ws_step))) return 1;

    /* prefill: the prompt in one step */
    for (t = 0; t < PROMPT; ++t) input(x + t * D_MODEL, tokens[t], t);
    if ((r = attn_kv_step(y, &cache, x, PROMPT, &m, &opt, ws, ws_step)) != ATTN_OK) goto fail;

    /* decode: the token after position t - 1 enters at position t */
    for (t = PROMPT; t < MAX_LEN; ++t) {
        tokens[t] = next_token(y + (t - 1) * D_MODEL);
        input(x + t * D_MODEL, tokens[t], t);
        if ((r = attn_kv_step(y + t * D_MODEL, &cache, x + t * D_MODEL, 1, &m, &opt, ws, ws_step)) != ATTN_OK)
            goto fail;
    }

    printf("attention.h %s (%s kernels): %d query heads over %d kv heads, %d tokens cached, workspace %zu bytes\n",
           ATTN_VERSION_STRING, attn_simd_name(), HQ, HKV, len, ws_step);
    printf("prompt   ");
    for (t = 0; t < PROMPT; ++t) printf(" %2d", tokens[t]);
    printf("\ngenerated");
    for (t = PROMPT; t < MAX_LEN; ++t) printf(" %2d", tokens[t]);
    printf("\n");

    /* check: one causal pass over the whole sequence equals the incremental outputs */
    opt.causal = ATTN_CAUSAL_TOP_LEFT;
    if ((r = attn_self_forward(full, x, 1, MAX_LEN, &m, &opt, NULL, 0)) != ATTN_OK) goto fail;
    for (i = 0; i < MAX_LEN * D_MODEL; ++i) {
        const float e = fabsf(full[i] - y[i]);
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
