/* speech_alignment: attention from the characters of a transcript to the frames of an utterance, as in
   attention-based speech recognition (Listen, Attend and Spell), and the alignment it finds.

   The "audio" is synthetic: every character of "read the news" has a random 16-number sound pattern, and
   the utterance holds each character's pattern for 2 to 4 frames (a space is a short pause with its own
   pattern), plus noise; 37 frames in all. Each frame also carries a position code, (cos, sin) pairs of
   its relative time, and each character the code of its relative place in the text.

   The attention is Luong's general score, e_ij = s_i^T W h_j, through attn_align_forward: s_i is the
   character (one-hot, and its position code), h_j the frame (features, position code), and W is set by
   hand: the features block scores how well frame j sounds like character i, the position block adds
   a prior for being at the same relative time, which tells repeated letters (the three e's) apart.
   attn_align_forward suits this best: it takes d_s != d_h as is, returns the weights without head
   averaging (out_weights) and the frame each character attends to most (out_index). attn_cross_forward
   (d_kv != d_model, one head) would do too, but asks for value and output projections this needs not.

   It prints the alignment as a heatmap (rows: characters; columns: frames, labelled with the character
   spoken there) and the frames each character attends to, and checks that the alignment is monotonic
   and that every character's most-attended frame is one where it is spoken.

   Build and run:  make examples && ./build/speech_alignment [--ansi] */
#include <math.h>
#include <stdio.h>
#include <string.h>

/* On any failure, print which argument broke which rule (README.md, "Error codes"). */
#define ATTN_ERROR_HOOK(func, code, arg, rule) \
    fprintf(stderr, "%s: %s: %s: %s\n", func, attn_result_string(code), arg, rule)
#define ATTENTION_IMPLEMENTATION
#include "../attention.h"

#define TEXT "read the news"
enum {
    NQ = sizeof TEXT - 1, /* characters: the queries */
    MAX_FRAMES = 4 * NQ,
    ALPHA = 27,           /* a..z and space, one-hot */
    FEAT = 16,            /* sound features per frame */
    K = 4,                /* position code: K (cos, sin) pairs */
    D_S = ALPHA + 2 * K,  /* character state: one-hot, position code */
    D_H = FEAT + 2 * K    /* frame: features, position code */
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

static int letter(char c) { return c == ' ' ? 26 : c - 'a'; }

/* the sound pattern of letter l, feature f, in [-1, 1) */
static float pattern(int l, int f) { return 2.0f * rnd(1000u * (unsigned)l + (unsigned)f); }

/* (cos, sin) of relative time r in [0, 1] at K frequencies */
static void position_code(float *code, double r)
{
    int k;
    for (k = 0; k < K; ++k) {
        code[2 * k] = (float)cos(3.14159265358979 * (k + 1) * r);
        code[2 * k + 1] = (float)sin(3.14159265358979 * (k + 1) * r);
    }
}

int main(int argc, char **argv)
{
    static float s[NQ * D_S], h[MAX_FRAMES * D_H], w[D_H * D_S], context[NQ * D_H], weights[NQ * MAX_FRAMES];
    static char row_text[NQ][2], col_text[MAX_FRAMES][2];
    const char *row_labels[NQ], *col_labels[MAX_FRAMES];
    int first[NQ], last[NQ], best[NQ], spoken_by[MAX_FRAMES];
    const attn_stride no_keys = {0, 0, 0};
    attn_align a = {0};
    attn_align_options opt = {0};
    attn_image_options img = {0};
    attn_result r;
    int i, j, f, l, nk = 0, ok = 1;

    /* the utterance: frames h [nk x D_H], character i spoken over frames first[i]..last[i] */
    for (i = 0; i < NQ; ++i) {
        const int frames = TEXT[i] == ' ' ? 2 : 2 + (int)((rnd(77u + (unsigned)i) + 0.5f) * 3.0f);
        first[i] = nk;
        for (j = 0; j < frames; ++j, ++nk) {
            spoken_by[nk] = i;
            for (f = 0; f < FEAT; ++f)
                h[nk * D_H + f] = pattern(letter(TEXT[i]), f) + 0.4f * rnd(5000u + (unsigned)(nk * FEAT + f));
        }
        last[i] = nk - 1;
    }
    for (j = 0; j < nk; ++j) position_code(h + j * D_H + FEAT, (j + 0.5) / nk);
    /* the transcript: s [NQ x D_S] */
    memset(s, 0, sizeof s);
    for (i = 0; i < NQ; ++i) {
        s[i * D_S + letter(TEXT[i])] = 1.0f;
        position_code(s + i * D_S + ALPHA, (i + 0.5) / NQ);
    }

    /* W [D_H x D_S] (h . W is the key of a frame): sound block 8 p_l / |p_l|^2, position block the identity */
    for (l = 0; l < ALPHA; ++l) {
        float norm2 = 0.0f;
        for (f = 0; f < FEAT; ++f) norm2 += pattern(l, f) * pattern(l, f);
        for (f = 0; f < FEAT; ++f) w[f * D_S + l] = 8.0f * pattern(l, f) / norm2;
    }
    for (j = 0; j < 2 * K; ++j) w[(FEAT + j) * D_S + ALPHA + j] = 1.0f;
    a.d_s = D_S;
    a.d_h = D_H;
    a.score = ATTN_SCORE_GENERAL;
    a.w = w;
    opt.out_weights = weights; /* [NQ x nk] */
    opt.out_index = best;      /* [NQ]: the frame of largest weight */
    /* keys NULL: the frames are projected inside (h . W), and the keys' stride is not used */
    r = attn_align_forward(context, attn_stride_bhnd(1, NQ, D_H), s, attn_stride_bhnd(1, NQ, D_S), h,
                           attn_stride_bhnd(1, nk, D_H), NULL, no_keys, 1, NQ, nk, &a, &opt, NULL, 0);
    if (r != ATTN_OK) goto fail;

    printf("alignment of \"%s\" (%d characters) with %d frames (rows: characters, columns: frames)\n", TEXT, NQ, nk);
    for (i = 0; i < NQ; ++i) {
        row_text[i][0] = TEXT[i] == ' ' ? '_' : TEXT[i];
        row_labels[i] = row_text[i];
    }
    for (j = 0; j < nk; ++j) {
        col_text[j][0] = row_text[spoken_by[j]][0];
        col_labels[j] = col_text[j];
    }
    img.ansi = argc > 1 && strcmp(argv[1], "--ansi") == 0;
    img.hi = 1.0f; /* weights: 0 blank, 1 full */
    img.row_labels = row_labels;
    img.col_labels = col_labels;
    if ((r = attn_heatmap_print(stdout, weights, nk, NQ, nk, &img)) != ATTN_OK) goto fail;

    /* the frames each character attends to: the run of frames with weight >= 0.1 around its best frame */
    printf("\nchar  attends to frames  spoken at frames\n");
    for (i = 0; i < NQ; ++i) {
        const float *w_i = weights + i * nk;
        int lo = best[i], hi = best[i];
        while (lo > 0 && w_i[lo - 1] >= 0.1f) --lo;
        while (hi < nk - 1 && w_i[hi + 1] >= 0.1f) ++hi;
        printf("  %c      %2d-%-2d  (%.2f)      %2d-%-2d\n", row_text[i][0], lo, hi, w_i[best[i]], first[i], last[i]);
        if (best[i] < first[i] || best[i] > last[i]) ok = 0;    /* attends where the character is spoken */
        if (i > 0 && best[i] <= best[i - 1]) ok = 0;            /* and moves forward in time */
    }
    if (!ok) {
        printf("FAILED: the alignment is not monotonic or misses a character\n");
        return 1;
    }
    printf("ok: the alignment is monotonic and every character finds its own frames\n");
    return 0;
fail:
    fprintf(stderr, "attention: %s\n", attn_result_string(r));
    return 1;
}
