/* quickstart: causal multi-head self-attention over a short sequence with attention.h.

   Six tokens of width 8 go through attn_self_forward with 2 heads; the program prints the output and
   the attention weights (averaged over the heads), where the causal mask shows as zeros above the
   diagonal. Build and run: make run (or cc -std=c99 -I. examples/quickstart.c -lm from the repository) */
#include <stdio.h>

/* On any failure, print which argument broke which rule (README.md, "Error codes"). */
#define ATTN_ERROR_HOOK(func, code, arg, rule) \
    fprintf(stderr, "%s: %s: %s: %s\n", func, attn_result_string(code), arg, rule)
#define ATTENTION_IMPLEMENTATION
#include "attention.h"

enum { N = 6, D_MODEL = 8, N_HEADS = 2 };

/* a small deterministic pseudo-random number in [-0.5, 0.5) */
static float value(unsigned i)
{
    i = i * 2654435761u + 12345u;
    i ^= i >> 15;
    return (float)(i % 1000u) / 1000.0f - 0.5f;
}

int main(void)
{
    float x[N * D_MODEL], out[N * D_MODEL], weights[N * N];
    float w_q[D_MODEL * D_MODEL], w_k[D_MODEL * D_MODEL], w_v[D_MODEL * D_MODEL], w_o[D_MODEL * D_MODEL];
    attn_mha mha = {0};
    attn_options opt = {0};
    attn_result r;
    int i, j;

    for (i = 0; i < N * D_MODEL; ++i) x[i] = value((unsigned)i);
    for (i = 0; i < D_MODEL * D_MODEL; ++i) {
        w_q[i] = value(1000u + (unsigned)i);
        w_k[i] = value(2000u + (unsigned)i);
        w_v[i] = value(3000u + (unsigned)i);
        w_o[i] = value(4000u + (unsigned)i);
    }

    mha.d_model = D_MODEL;
    mha.n_heads = N_HEADS;
    mha.w_q = w_q; mha.w_k = w_k; mha.w_v = w_v; mha.w_o = w_o; /* [d_in x d_out]: Q = x . w_q */
    opt.causal = ATTN_CAUSAL_TOP_LEFT; /* token i attends to tokens 0..i */
    opt.out_weights = weights;         /* [N x N] averaged over the heads */
    opt.average_weights = 1;

    r = attn_self_forward(out, x, 1, N, &mha, &opt, NULL, 0);
    if (r != ATTN_OK) {
        fprintf(stderr, "attn_self_forward: %s\n", attn_result_string(r));
        return 1;
    }

    printf("attention.h %s: causal self-attention, %d tokens, d_model %d, %d heads\n\n", ATTN_VERSION_STRING, N,
           D_MODEL, N_HEADS);
    printf("output [%d x %d]\n", N, D_MODEL);
    for (i = 0; i < N; ++i) {
        for (j = 0; j < D_MODEL; ++j) printf(" %7.4f", out[i * D_MODEL + j]);
        printf("\n");
    }
    printf("\nattention weights [%d x %d] (row = query, column = key; each row sums to 1)\n", N, N);
    for (i = 0; i < N; ++i) {
        for (j = 0; j < N; ++j) printf(" %6.3f", weights[i * N + j]);
        printf("\n");
    }
    return 0;
}
