/* vision_patches: ViT-style self-attention over the patches of an image.

   A 32 x 32 grayscale image (a dark, slightly noisy background with a bright 16 x 16 square that straddles
   patch borders) is cut into 8 x 8 patches: 16 tokens of 64 pixels each. Each flattened patch is embedded
   linearly (attn_project with a random [64 x 64] matrix, which roughly keeps dot products) plus a small
   position embedding, and the 16 tokens go through multi-head self-attention (attn_self_forward, 4 heads,
   no mask). W_q and W_k are the identity, so a patch attends to the patches whose embeddings resemble
   its own: a hand-set stand-in for a trained ViT head that groups an object's patches.

   The program prints, for the patch that lies wholly inside the square, its attention weights (mean over
   the heads) as a 4 x 4 grid beside the share of each patch the square covers, and as a terminal heatmap;
   it checks that every patch holding part of the square gets more attention than every patch without.

   Build and run:  make examples && ./build/vision_patches [--ansi] */
#include <stdio.h>
#include <string.h>

/* On any failure, print which argument broke which rule (README.md, "Error codes"). */
#define ATTN_ERROR_HOOK(func, code, arg, rule) \
    fprintf(stderr, "%s: %s: %s: %s\n", func, attn_result_string(code), arg, rule)
#define ATTENTION_IMPLEMENTATION
#include "../attention.h"

enum {
    SIZE = 32, PATCH = 8, GRID = SIZE / PATCH, /* 4 x 4 patches */
    TOKENS = GRID * GRID, PIXELS = PATCH * PATCH, D_MODEL = 64, N_HEADS = 4,
    SQ_ROW = 6, SQ_COL = 10, SQ_SIZE = 16 /* the bright square: rows 6..21, columns 10..25 */
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

static int in_square(int y, int x)
{
    return y >= SQ_ROW && y < SQ_ROW + SQ_SIZE && x >= SQ_COL && x < SQ_COL + SQ_SIZE;
}

int main(int argc, char **argv)
{
    static float image[SIZE * SIZE], patches[TOKENS * PIXELS], w_embed[PIXELS * D_MODEL], x[TOKENS * D_MODEL];
    static float w_q[D_MODEL * D_MODEL], w_k[D_MODEL * D_MODEL], w_v[D_MODEL * D_MODEL], w_o[D_MODEL * D_MODEL];
    static float out[TOKENS * D_MODEL], weights[TOKENS * TOKENS];
    static const char *const labels[GRID] = {"0", "1", "2", "3"};
    float coverage[TOKENS], min_in = 1.0f, max_out = 0.0f;
    attn_mha mha = {0};
    attn_options opt = {0};
    attn_image_options img = {0};
    attn_result r;
    int y, xx, p, i, query = 0;

    /* the image, and its patches flattened row by row: patches [TOKENS x PIXELS] */
    for (y = 0; y < SIZE; ++y)
        for (xx = 0; xx < SIZE; ++xx)
            image[y * SIZE + xx] = (in_square(y, xx) ? 1.0f : 0.1f) + 0.1f * rnd((unsigned)(y * SIZE + xx));
    for (p = 0; p < TOKENS; ++p) {
        const int py = p / GRID * PATCH, px = p % GRID * PATCH;
        int covered = 0;
        for (y = 0; y < PATCH; ++y) {
            memcpy(patches + p * PIXELS + y * PATCH, image + (py + y) * SIZE + px, sizeof(float) * PATCH);
            for (xx = 0; xx < PATCH; ++xx) covered += in_square(py + y, px + xx);
        }
        coverage[p] = (float)covered / PIXELS;
        if (coverage[p] > coverage[query]) query = p; /* the patch wholly inside the square */
    }

    /* patch embedding x = patches . W_e + position embedding; W_e entries of variance 1/D_MODEL */
    for (i = 0; i < PIXELS * D_MODEL; ++i) w_embed[i] = 0.433f * rnd(100000u + (unsigned)i);
    r = attn_project(x, D_MODEL, patches, PIXELS, w_embed, D_MODEL, ATTN_LAYOUT_IN_OUT, NULL, TOKENS, PIXELS,
                     D_MODEL);
    if (r != ATTN_OK) goto fail;
    for (i = 0; i < TOKENS * D_MODEL; ++i) x[i] += 0.1f * rnd(200000u + (unsigned)i);

    /* self-attention over the 16 patch tokens */
    for (i = 0; i < D_MODEL * D_MODEL; ++i) {
        w_q[i] = w_k[i] = i % (D_MODEL + 1) == 0 ? 1.0f : 0.0f; /* identity */
        w_v[i] = w_o[i] = 0.2f * rnd(300000u + (unsigned)i);
    }
    mha.d_model = D_MODEL;
    mha.n_heads = N_HEADS;
    mha.w_q = w_q; mha.w_k = w_k; mha.w_v = w_v; mha.w_o = w_o;
    opt.out_weights = weights; /* [TOKENS x TOKENS], the mean over the heads */
    opt.average_weights = 1;
    if ((r = attn_self_forward(out, x, 1, TOKENS, &mha, &opt, NULL, 0)) != ATTN_OK) goto fail;

    printf("32x32 image, bright square at rows %d-%d, columns %d-%d; %d patches of %dx%d\n", SQ_ROW,
           SQ_ROW + SQ_SIZE - 1, SQ_COL, SQ_COL + SQ_SIZE - 1, TOKENS, PATCH, PATCH);
    printf("query: patch (row %d, column %d)\n\n", query / GRID, query % GRID);
    printf("share of the patch in the square     attention of the query patch\n");
    for (y = 0; y < GRID; ++y) {
        for (xx = 0; xx < GRID; ++xx) printf(" %5.2f", coverage[y * GRID + xx]);
        printf("           ");
        for (xx = 0; xx < GRID; ++xx) printf(" %5.3f", weights[query * TOKENS + y * GRID + xx]);
        printf("\n");
    }
    printf("\nthe same weights as a heatmap (rows and columns of patches):\n");
    img.ansi = argc > 1 && strcmp(argv[1], "--ansi") == 0;
    img.lo = 0.0f;
    img.hi = weights[query * TOKENS + query];
    img.row_labels = labels;
    img.col_labels = labels;
    if ((r = attn_heatmap_print(stdout, weights + query * TOKENS, GRID, GRID, GRID, &img)) != ATTN_OK) goto fail;

    /* check: the patches that hold part of the square get more attention than all the others */
    for (p = 0; p < TOKENS; ++p) {
        const float w = weights[query * TOKENS + p];
        if (coverage[p] > 0.0f && w < min_in) min_in = w;
        if (coverage[p] == 0.0f && w > max_out) max_out = w;
    }
    printf("\nleast attention to a patch with part of the square %.3f, most to one without %.3f\n", min_in, max_out);
    if (min_in <= max_out) {
        printf("FAILED: the square's patches do not stand out\n");
        return 1;
    }
    printf("ok: the query patch attends to the patches of the square\n");
    return 0;
fail:
    fprintf(stderr, "attention: %s\n", attn_result_string(r));
    return 1;
}
