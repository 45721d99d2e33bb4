/* seq2seq_alignment: an encoder-decoder that reverses words, with Bahdanau (additive) and Luong
   (general) attention, and pictures of its alignment.

   The weights are set by hand so that the alignment means something. The encoder is a recurrent network
   whose state h_j holds the letter read at step j and a "clock": pairs (cos, sin) that turn by a fixed
   angle at each step, so the clock tells the position. The decoder starts from the encoder's last clock
   and turns it backwards; attention compares the decoder's clock with every encoder clock, finds the
   position whose letter comes next, and the decoder writes the letter it reads in the context vector.
   The alignment of output step t with input position j is then the anti-diagonal j = len - 1 - t.

   Two words of different lengths run as one batch (source lengths 9 and 7); the encoder keys are projected
   once and reused at every decoder step, in one workspace allocated before the loop.

   Build and run:  make examples && ./build/seq2seq_alignment [--ansi] [output_dir]
   It prints each alignment as a heatmap (ASCII, or ANSI colours with --ansi) and writes
   alignment_additive.png and alignment_luong.png (the first word) into output_dir (default: .). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* On any failure, print which argument broke which rule (README.md, "Error codes"). */
#define ATTN_ERROR_HOOK(func, code, arg, rule) \
    fprintf(stderr, "%s: %s: %s: %s\n", func, attn_result_string(code), arg, rule)
#define ATTENTION_IMPLEMENTATION
#include "../attention.h"

enum {
    B = 2,             /* words in the batch */
    NK = 9,            /* longest word: encoder steps, and decoder steps */
    K = 4,             /* clock frequencies */
    CLOCK = 2 * K,     /* clock width */
    V = 26,            /* letters A..Z, one-hot */
    D_H = CLOCK + V,   /* encoder state: clock, letter */
    D_S = CLOCK + V,   /* decoder state: clock, previous letter */
    D_A = 2 * CLOCK    /* additive attention width: two units per clock component */
};

static const char *const k_words[B] = {"ATTENTION", "DECODER"};

/* Turns each (cos, sin) pair of a clock by one step, forwards (dir 1) or backwards (dir -1): pair k by
   2 pi (k + 1) / (2 NK), so that no two positions of a word share a clock. */
static void clock_step(float *dst, const float *src, int dir)
{
    const double pi = 3.14159265358979323846;
    int k;
    for (k = 0; k < K; ++k) {
        const double angle = dir * 2.0 * pi * (k + 1) / (2.0 * NK);
        const float c = (float)cos(angle), s = (float)sin(angle), x = src[2 * k], y = src[2 * k + 1];
        dst[2 * k] = c * x - s * y;
        dst[2 * k + 1] = s * x + c * y;
    }
}

/* The encoder: h [B, NK, D_H], h_j = (clock turned j steps, one-hot letter j); padding past the word
   keeps turning the clock with no letter (attention never reads it: src_len masks it). */
static void encode(float *h, int *len)
{
    int b, j, k;
    memset(h, 0, sizeof(float) * B * NK * D_H);
    for (b = 0; b < B; ++b) {
        len[b] = (int)strlen(k_words[b]);
        for (j = 0; j < NK; ++j) {
            float *h_j = h + (b * NK + j) * D_H;
            if (j == 0)
                for (k = 0; k < K; ++k) h_j[2 * k] = 1.0f; /* every pair at angle 0 */
            else
                clock_step(h_j, h_j - D_H, 1);
            if (j < len[b]) h_j[CLOCK + (k_words[b][j] - 'A')] = 1.0f;
        }
    }
}

/* Luong general: e_tj = s_t^T W h_j with W picking the clock of both, times a sharpness: the score is
   beta * cos-similarity of the two clocks, highest where they agree. w is stored [d_h x d_s] (h . w). */
static void luong_weights(attn_align *a, float *w)
{
    int c;
    memset(w, 0, sizeof(float) * D_H * D_S);
    for (c = 0; c < CLOCK; ++c) w[c * D_S + c] = 1.0f;
    memset(a, 0, sizeof *a);
    a->score = ATTN_SCORE_GENERAL;
    a->d_s = D_S;
    a->d_h = D_H;
    a->w = w;
    a->scale = 1.2f; /* soft enough that the neighbours show */
}

/* Bahdanau: e_tj = v . tanh(W_s s_t + W_h h_j + b). For each clock component c two hidden units see the
   difference d = s_c - h_c: tanh(b + alpha d) + tanh(b - alpha d) is largest at d = 0 (for b > 0), so v
   summing them scores highest where the two clocks agree. */
static void additive_weights(attn_align *a, float *w_s, float *w_h, float *bias, float *v)
{
    const float alpha = 2.0f;
    int c;
    memset(w_s, 0, sizeof(float) * D_S * D_A);
    memset(w_h, 0, sizeof(float) * D_H * D_A);
    for (c = 0; c < CLOCK; ++c) {
        w_s[c * D_A + 2 * c] = alpha;
        w_s[c * D_A + 2 * c + 1] = -alpha;
        w_h[c * D_A + 2 * c] = -alpha;
        w_h[c * D_A + 2 * c + 1] = alpha;
    }
    for (c = 0; c < D_A; ++c) {
        bias[c] = 1.0f;
        v[c] = 0.6f;
    }
    memset(a, 0, sizeof *a);
    a->score = ATTN_SCORE_ADDITIVE;
    a->d_s = D_S;
    a->d_h = D_H;
    a->d_a = D_A;
    a->w_s = w_s;
    a->w_h = w_h;
    a->b = bias;
    a->v = v;
}

/* The decoder loop: NK steps for the whole batch, one attention call each. align [B, NK, NK] receives the
   weights of every step, out the letters written. */
static int decode(const attn_align *a, const float *h, const int *len, float *align, char out[B][NK + 1])
{
    static float keys[B * NK * (D_A > D_S ? D_A : D_S)]; /* keys: D_A wide (additive), D_S (general) */
    const int d_key = a->score == ATTN_SCORE_ADDITIVE ? D_A : D_S;
    const attn_stride hs = attn_stride_bhnd(1, NK, D_H), ks = attn_stride_bhnd(1, NK, d_key);
    const attn_stride ss = attn_stride_bhnd(1, 1, D_S), cs = attn_stride_bhnd(1, 1, D_H);
    float s[B * D_S], ctx[B * D_H], w[B * NK], turned[CLOCK];
    attn_align_options opt = {0};
    attn_result r;
    size_t bytes = 0;
    void *ws;
    int b, t, c;
    /* the keys W_h h_j + b once per source sentence, and one workspace for every step */
    if ((r = attn_align_keys(keys, ks, h, hs, B, NK, a)) != ATTN_OK ||
        (r = attn_align_workspace_size(&bytes, 1, NK, a, 1)) != ATTN_OK) {
        fprintf(stderr, "attention: %s\n", attn_result_string(r));
        return 1;
    }
    if (!(ws = malloc(bytes))) return 1;
    opt.src_len = len;     /* positions past each word are masked and never read */
    opt.out_weights = w;   /* [B, 1, NK]: this step's alignment */
    /* the decoder starts from the encoder's last clock and no previous letter */
    memset(s, 0, sizeof s);
    for (b = 0; b < B; ++b) memcpy(s + b * D_S, h + (b * NK + len[b] - 1) * D_H, sizeof(float) * CLOCK);
    for (t = 0; t < NK; ++t) {
        r = attn_align_forward(ctx, cs, s, ss, h, hs, keys, ks, B, 1, NK, a, &opt, ws, bytes);
        if (r != ATTN_OK) {
            fprintf(stderr, "attn_align_forward: %s\n", attn_result_string(r));
            free(ws);
            return 1;
        }
        for (b = 0; b < B; ++b) {
            const float *letter = ctx + b * D_H + CLOCK; /* the context's letter part */
            float *s_b = s + b * D_S;
            int best = 0;
            for (c = 1; c < V; ++c) best = letter[c] > letter[best] ? c : best;
            memcpy(align + (b * NK + t) * NK, w + b * NK, sizeof(float) * NK);
            if (t < len[b]) out[b][t] = (char)('A' + best);
            out[b][t < len[b] ? t + 1 : len[b]] = '\0';
            /* next state: the clock one step back, the letter just written */
            clock_step(turned, s_b, -1);
            memcpy(s_b, turned, sizeof turned);
            memset(s_b + CLOCK, 0, sizeof(float) * V);
            s_b[CLOCK + best] = 1.0f;
        }
    }
    free(ws);
    return 0;
}

/* Prints the alignment of word b and, for the first word, writes it as a PNG into dir. */
static int show(const char *name, const char *file, const float *align, char out[B][NK + 1], const int *len,
                const char *dir, int ansi)
{
    char labels_in[NK][2], labels_out[NK][2], path[1024];
    const char *rows[NK], *cols[NK];
    attn_image_options o = {0};
    attn_result r;
    int b, j;
    o.lo = 0.0f; /* weights: black 0, white 1 */
    o.hi = 1.0f;
    o.ansi = ansi;
    for (b = 0; b < B; ++b) {
        for (j = 0; j < len[b]; ++j) {
            labels_in[j][0] = k_words[b][j];
            labels_out[j][0] = out[b][j];
            labels_in[j][1] = labels_out[j][1] = '\0';
            cols[j] = labels_in[j];
            rows[j] = labels_out[j];
        }
        o.row_labels = rows;
        o.col_labels = cols;
        printf("%s: %s -> %s (rows: output steps, columns: input positions)\n", name, k_words[b], out[b]);
        /* the len x len block of this word's [NK x NK] alignment */
        if ((r = attn_heatmap_print(stdout, align + b * NK * NK, NK, len[b], len[b], &o)) != ATTN_OK) {
            fprintf(stderr, "attn_heatmap_print: %s\n", attn_result_string(r));
            return 1;
        }
        printf("\n");
    }
    o.cell = 16; /* 16 x 16 pixels per weight */
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if ((r = attn_image_save(path, align, NK, len[0], len[0], &o)) != ATTN_OK) {
        fprintf(stderr, "%s: %s\n", path, attn_result_string(r));
        return 1;
    }
    printf("wrote %s\n\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    static float h[B * NK * D_H], w_general[D_H * D_S], w_s[D_S * D_A], w_h[D_H * D_A], bias[D_A], v[D_A];
    static float align[B * NK * NK];
    char out[B][NK + 1];
    const char *dir = ".";
    attn_align luong, additive;
    int len[B], ansi = 0, i;
    for (i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--ansi") == 0) ansi = 1;
        else dir = argv[i];
    }
    encode(h, len);
    additive_weights(&additive, w_s, w_h, bias, v);
    luong_weights(&luong, w_general);
    if (decode(&additive, h, len, align, out) ||
        show("additive (Bahdanau) attention", "alignment_additive.png", align, out, len, dir, ansi))
        return 1;
    if (decode(&luong, h, len, align, out) ||
        show("Luong (general) attention", "alignment_luong.png", align, out, len, dir, ansi))
        return 1;
    return 0;
}
