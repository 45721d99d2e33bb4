/* self_attention_heatmap: the attention weights of multi-head self-attention on a short sentence, with
   and without the causal mask, printed as heatmaps and written as images.

   Each token is a sinusoidal position code plus an embedding of its word (the same vector wherever the
   word occurs); W_k is the identity and W_q three times it: a token attends most to itself, then to its
   neighbours (close positions have similar codes) and to the other occurrences of its word. attn_self_forward
   returns the weights averaged over the heads (opt.out_weights, average_weights = 1, as PyTorch's
   need_weights); with ATTN_CAUSAL_TOP_LEFT the upper triangle is zero.

   Build and run:  make examples && ./build/self_attention_heatmap [--ansi] [output_dir]
   It writes self_attention.png and self_attention_causal.png (viridis) into output_dir (default: .). */
#include <math.h>
#include <stdio.h>
#include <string.h>

/* On any failure, print which argument broke which rule (README.md, "Error codes"). */
#define ATTN_ERROR_HOOK(func, code, arg, rule) \
    fprintf(stderr, "%s: %s: %s: %s\n", func, attn_result_string(code), arg, rule)
#define ATTENTION_IMPLEMENTATION
#include "../attention.h"

enum { N = 11, D_MODEL = 16, N_HEADS = 2 };

static const char *const k_words[N] = {"the", "cat", "sat", "on", "the", "mat", "and", "the", "dog", "sat", "too"};

/* a number in [-1, 1) from a word and a dimension (FNV-1a hash): the word's embedding */
static float word_value(const char *word, int dim)
{
    unsigned h = 2166136261u ^ (unsigned)dim;
    for (; *word; ++word) h = (h ^ (unsigned char)*word) * 16777619u;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    return (float)(h % 2001u) / 1000.0f - 1.0f;
}

/* x [N x D_MODEL]: sinusoidal position code (Vaswani et al.) plus the word's embedding */
static void tokens(float *x)
{
    int i, c;
    for (i = 0; i < N; ++i)
        for (c = 0; c < D_MODEL; ++c) {
            const double freq = pow(10000.0, -(double)(c / 2 * 2) / D_MODEL);
            const double pos = c % 2 == 0 ? sin(i * freq) : cos(i * freq);
            x[i * D_MODEL + c] = (float)pos + word_value(k_words[i], c);
        }
}

static int run(const char *title, const char *file, attn_causal causal, const char *dir, int ansi)
{
    static float x[N * D_MODEL], out[N * D_MODEL], weights[N * N];
    static float w_q[D_MODEL * D_MODEL], w_k[D_MODEL * D_MODEL], w_v[D_MODEL * D_MODEL], w_o[D_MODEL * D_MODEL];
    attn_mha mha = {0};
    attn_options opt = {0};
    attn_image_options img = {0};
    attn_result r;
    char path[1024];
    int i;
    tokens(x);
    for (i = 0; i < D_MODEL * D_MODEL; ++i) {
        w_k[i] = i % (D_MODEL + 1) == 0 ? 1.0f : 0.0f; /* identity */
        w_q[i] = 3.0f * w_k[i];
        w_v[i] = w_o[i] = word_value("w", i) * 0.25f;
    }
    mha.d_model = D_MODEL;
    mha.n_heads = N_HEADS;
    mha.w_q = w_q; mha.w_k = w_k; mha.w_v = w_v; mha.w_o = w_o;
    opt.causal = causal;
    opt.out_weights = weights; /* [1, N, N]: the mean over the heads */
    opt.average_weights = 1;
    if ((r = attn_self_forward(out, x, 1, N, &mha, &opt, NULL, 0)) != ATTN_OK) {
        fprintf(stderr, "attn_self_forward: %s\n", attn_result_string(r));
        return 1;
    }
    printf("%s (rows: queries, columns: keys)\n", title);
    img.colormap = ATTN_COLORMAP_VIRIDIS;
    img.lo = 0.0f; /* weights: 0 dark, 1 bright */
    img.hi = 1.0f;
    img.ansi = ansi;
    img.row_labels = k_words;
    img.col_labels = k_words;
    if ((r = attn_heatmap_print(stdout, weights, N, N, N, &img)) != ATTN_OK) {
        fprintf(stderr, "attn_heatmap_print: %s\n", attn_result_string(r));
        return 1;
    }
    img.cell = 16;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if ((r = attn_image_save(path, weights, N, N, N, &img)) != ATTN_OK) {
        fprintf(stderr, "%s: %s\n", path, attn_result_string(r));
        return 1;
    }
    printf("wrote %s\n\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = ".";
    int ansi = 0, i;
    for (i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--ansi") == 0) ansi = 1;
        else dir = argv[i];
    }
    if (run("self-attention weights", "self_attention.png", ATTN_CAUSAL_NONE, dir, ansi) ||
        run("causal self-attention weights", "self_attention_causal.png", ATTN_CAUSAL_TOP_LEFT, dir, ansi))
        return 1;
    return 0;
}
