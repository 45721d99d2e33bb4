/* bert_padding: a BERT-style encoder layer over a padded batch, with a key padding mask.

   Three sentences of 8, 5 and 3 tokens are padded to one length (8) and run as one batch through
   multi-head self-attention (attn_self_forward, 4 heads). attn_options.key_padding_mask marks the padded
   positions (nonzero = ignore the key, as PyTorch's bool key_padding_mask), so:
     1. no token gives any weight to a padded position: the weights (averaged over the heads) are exactly
        0 in those columns; the program prints them for the second sentence;
     2. a sentence's outputs do not depend on what its padding holds: the batch runs twice with different
        garbage in the padded positions, and the outputs of the real tokens are compared;
     3. attn_options.kv_len (valid keys per sentence) is the other way to say the same thing, and gives
        the same outputs.
   The outputs at padded positions are computed too (a padded query still attends to the real tokens, as in
   PyTorch); a model ignores them.

   Build and run:  make examples && ./build/bert_padding */
#include <math.h>
#include <stdio.h>

/* On any failure, print which argument broke which rule (README.md, "Error codes"). */
#define ATTN_ERROR_HOOK(func, code, arg, rule) \
    fprintf(stderr, "%s: %s: %s: %s\n", func, attn_result_string(code), arg, rule)
#define ATTENTION_IMPLEMENTATION
#include "../attention.h"

enum { B = 3, N = 8, D_MODEL = 32, N_HEADS = 4 };

static const int k_len[B] = {8, 5, 3}; /* real tokens per sentence; the rest is padding */
static const char *const k_words[B][N] = {
    {"the", "quick", "brown", "fox", "jumps", "over", "the", "dog"},
    {"all", "you", "need", "is", "love", "[pad]", "[pad]", "[pad]"},
    {"hello", "world", "!", "[pad]", "[pad]", "[pad]", "[pad]", "[pad]"}};

/* a small deterministic pseudo-random number in [-0.5, 0.5) from a seed */
static float rnd(unsigned seed)
{
    seed = seed * 2654435761u + 12345u;
    seed ^= seed >> 15;
    seed *= 0x2c1b3c6du;
    seed ^= seed >> 12;
    return (float)(seed % 10000u) / 10000.0f - 0.5f;
}

/* x [B, N, D_MODEL]: a token embedding per word (a hash of its letters), garbage where padded */
static void embed(float *x, unsigned garbage_seed)
{
    int b, i, c;
    for (b = 0; b < B; ++b)
        for (i = 0; i < N; ++i) {
            unsigned h = 2166136261u; /* FNV-1a of the word */
            const char *w;
            for (w = k_words[b][i]; *w; ++w) h = (h ^ (unsigned char)*w) * 16777619u;
            for (c = 0; c < D_MODEL; ++c) {
                float *x_c = x + (b * N + i) * D_MODEL + c;
                if (i < k_len[b]) *x_c = 2.0f * rnd(h + (unsigned)c) + 0.1f * (float)sin(i + 0.3 * c);
                else *x_c = 100.0f * rnd(garbage_seed + (unsigned)(((b * N + i) * D_MODEL) + c));
            }
        }
}

/* the largest |a - b| over the real tokens of every sentence */
static float max_diff_real(const float *a, const float *b)
{
    float m = 0.0f;
    int s, i, c;
    for (s = 0; s < B; ++s)
        for (i = 0; i < k_len[s]; ++i)
            for (c = 0; c < D_MODEL; ++c) {
                const float d = fabsf(a[(s * N + i) * D_MODEL + c] - b[(s * N + i) * D_MODEL + c]);
                if (d > m) m = d;
            }
    return m;
}

int main(void)
{
    static float x[B * N * D_MODEL], out1[B * N * D_MODEL], out2[B * N * D_MODEL], out3[B * N * D_MODEL];
    static float w_q[D_MODEL * D_MODEL], w_k[D_MODEL * D_MODEL], w_v[D_MODEL * D_MODEL], w_o[D_MODEL * D_MODEL];
    static float weights[B * N * N]; /* [B, N, N], averaged over the heads */
    unsigned char padding[B * N];    /* [B x N], 1 = padded key */
    attn_mha mha = {0};
    attn_options opt = {0};
    attn_result r;
    float leak = 0.0f, d_garbage, d_kv_len;
    int b, i, j;

    for (i = 0; i < D_MODEL * D_MODEL; ++i) {
        w_q[i] = 1.0f * rnd(1000000u + (unsigned)i);
        w_k[i] = 1.0f * rnd(2000000u + (unsigned)i);
        w_v[i] = 0.4f * rnd(3000000u + (unsigned)i);
        w_o[i] = 0.4f * rnd(4000000u + (unsigned)i);
    }
    for (b = 0; b < B; ++b)
        for (j = 0; j < N; ++j) padding[b * N + j] = (unsigned char)(j >= k_len[b]);
    mha.d_model = D_MODEL;
    mha.n_heads = N_HEADS;
    mha.w_q = w_q; mha.w_k = w_k; mha.w_v = w_v; mha.w_o = w_o;
    opt.key_padding_mask = padding;
    opt.out_weights = weights;
    opt.average_weights = 1;

    /* 1. the batch with one kind of garbage in the padding, and the weights */
    embed(x, 7u);
    if ((r = attn_self_forward(out1, x, B, N, &mha, &opt, NULL, 0)) != ATTN_OK) goto fail;
    for (b = 0; b < B; ++b)
        for (i = 0; i < N; ++i)
            for (j = k_len[b]; j < N; ++j) leak += weights[(b * N + i) * N + j];

    printf("attention weights of sentence 2 (%d tokens + %d padding), mean over %d heads\n", k_len[1],
           N - k_len[1], N_HEADS);
    printf("%-6s", "");
    for (j = 0; j < N; ++j) printf(" %6.6s", k_words[1][j]);
    printf("\n");
    for (i = 0; i < N; ++i) {
        printf("%-6s", k_words[1][i]);
        for (j = 0; j < N; ++j) printf(" %6.3f", weights[(N + i) * N + j]);
        printf("\n");
    }

    /* 2. other garbage in the padding: the real tokens' outputs must not move */
    embed(x, 99991u);
    opt.out_weights = NULL;
    if ((r = attn_self_forward(out2, x, B, N, &mha, &opt, NULL, 0)) != ATTN_OK) goto fail;
    d_garbage = max_diff_real(out1, out2);

    /* 3. the same padding given as lengths instead of a mask */
    opt.key_padding_mask = NULL;
    opt.kv_len = k_len;
    if ((r = attn_self_forward(out3, x, B, N, &mha, &opt, NULL, 0)) != ATTN_OK) goto fail;
    d_kv_len = max_diff_real(out2, out3);

    printf("\ntotal weight on padded keys, all sentences:       %g\n", leak);
    printf("max |change| of real outputs with other padding:  %g\n", d_garbage);
    printf("max |mask - kv_len| over real outputs:            %g\n", d_kv_len);
    if (leak != 0.0f || d_garbage > 1e-6f || d_kv_len > 1e-6f) {
        printf("FAILED: the padding leaks into the real tokens\n");
        return 1;
    }
    printf("ok: padded tokens get no attention and do not change the sentence\n");
    return 0;
fail:
    fprintf(stderr, "attn_self_forward: %s\n", attn_result_string(r));
    return 1;
}
