/* train_tiny.c - a tiny transformer learns to reverse sequences, trained with attention.h's backward pass.

   The model (everything but attention written here, as a reader would write it): token and position
   embeddings, one multi-head self-attention layer (attn_self_forward / attn_self_backward: 4 heads of 8,
   weights and biases), a ReLU MLP, each with a residual connection, and a linear read-out to the 10 digit
   classes; softmax cross-entropy; Adam. The task: given 8 random digits, output them in reverse order at
   every position (position i must look at position 7 - i: only attention can move the information). The
   loss starts near ln 10 = 2.3; the program prints it as it trains and ends with a line "ok: ..." when the
   final loss is under a quarter of the first, else says why not and exits with 1.

   Build and run:  cc -std=c99 -O2 -I. -o train_tiny examples/train_tiny.c -lm && ./train_tiny */

#define ATTENTION_IMPLEMENTATION
#include "attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { V = 10, L = 8, E = 32, H = 4, F = 64, B = 32, STEPS = 300, ROWS = B * L };

/* ---- parameters and Adam ---- */

typedef struct param {
    float *w, *g, *m, *v; /* value, gradient, Adam's moments */
    int n;
} param;

static unsigned long long rng = 88172645463325252ull;
static float uniform(void) /* [-1, 1) */
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void param_init(param *p, int n, float scale)
{
    int i;
    p->n = n;
    p->w = (float *)calloc((size_t)n, sizeof(float)); p->g = (float *)calloc((size_t)n, sizeof(float));
    p->m = (float *)calloc((size_t)n, sizeof(float)); p->v = (float *)calloc((size_t)n, sizeof(float));
    if (!p->w || !p->g || !p->m || !p->v) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (i = 0; i < n; ++i) p->w[i] = scale * uniform();
}

static void adam(param *p, int t, float lr)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    const float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
    int i;
    for (i = 0; i < p->n; ++i) {
        p->m[i] = b1 * p->m[i] + (1.0f - b1) * p->g[i];
        p->v[i] = b2 * p->v[i] + (1.0f - b2) * p->g[i] * p->g[i];
        p->w[i] -= lr * (p->m[i] / c1) / (sqrtf(p->v[i] / c2) + eps);
    }
}

/* ---- dense layers: y [n x d_out] = x [n x d_in] . w [d_in x d_out] + b, and their gradients ---- */

static void linear(float *y, const float *x, const float *w, const float *b, int n, int d_in, int d_out)
{
    int i, j, k;
    for (i = 0; i < n; ++i)
        for (j = 0; j < d_out; ++j) {
            float acc = b[j];
            for (k = 0; k < d_in; ++k) acc += x[i * d_in + k] * w[k * d_out + j];
            y[i * d_out + j] = acc;
        }
}

/* dw += x^T dy, db += column sums of dy, dx = dy . w^T (dx may be NULL) */
static void linear_backward(float *dx, float *dw, float *db, const float *x, const float *dy, const float *w, int n,
                            int d_in, int d_out)
{
    int i, j, k;
    for (i = 0; i < n; ++i)
        for (j = 0; j < d_out; ++j) {
            const float g = dy[i * d_out + j];
            db[j] += g;
            for (k = 0; k < d_in; ++k) dw[k * d_out + j] += x[i * d_in + k] * g;
        }
    if (dx)
        for (i = 0; i < n; ++i)
            for (k = 0; k < d_in; ++k) {
                float acc = 0.0f;
                for (j = 0; j < d_out; ++j) acc += dy[i * d_out + j] * w[k * d_out + j];
                dx[i * d_in + k] = acc;
            }
}

/* ---- the model ---- */

enum { P_TOK, P_POS, P_WQ, P_WK, P_WV, P_WO, P_BQ, P_BK, P_BV, P_BO, P_W1, P_B1, P_W2, P_B2, P_WOUT, P_BOUT, N_PARAMS };

static param prm[N_PARAMS];
/* activations [ROWS x width] and their gradients */
static float h0[ROWS * E], att[ROWS * E], h1[ROWS * E], z1[ROWS * F], r1[ROWS * F], mlp[ROWS * E], h2[ROWS * E];
static float logits[ROWS * V], dlogits[ROWS * V], dh2[ROWS * E], dr1[ROWS * F], dh1[ROWS * E], dh0[ROWS * E];
static int tokens[ROWS], targets[ROWS];

static void make_batch(void)
{
    int b, t;
    for (b = 0; b < B; ++b) {
        for (t = 0; t < L; ++t) {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            tokens[b * L + t] = (int)(rng % V);
        }
        for (t = 0; t < L; ++t) targets[b * L + t] = tokens[b * L + L - 1 - t];
    }
}

static void check(attn_result r, const char *what)
{
    if (r != ATTN_OK) { fprintf(stderr, "%s: %s\n", what, attn_result_string(r)); exit(1); }
}

/* The forward pass and the mean cross-entropy over the batch (and the accuracy, in *acc). */
static float forward(const attn_mha *m, void *ws, size_t ws_bytes, float *acc)
{
    double loss = 0.0;
    int i, c, right = 0;
    for (i = 0; i < ROWS; ++i) /* embeddings */
        for (c = 0; c < E; ++c) h0[i * E + c] = prm[P_TOK].w[tokens[i] * E + c] + prm[P_POS].w[(i % L) * E + c];
    check(attn_self_forward(att, h0, B, L, m, NULL, ws, ws_bytes), "attn_self_forward");
    for (i = 0; i < ROWS * E; ++i) h1[i] = h0[i] + att[i];
    linear(z1, h1, prm[P_W1].w, prm[P_B1].w, ROWS, E, F);
    for (i = 0; i < ROWS * F; ++i) r1[i] = z1[i] > 0.0f ? z1[i] : 0.0f;
    linear(mlp, r1, prm[P_W2].w, prm[P_B2].w, ROWS, F, E);
    for (i = 0; i < ROWS * E; ++i) h2[i] = h1[i] + mlp[i];
    linear(logits, h2, prm[P_WOUT].w, prm[P_BOUT].w, ROWS, E, V);
    for (i = 0; i < ROWS; ++i) { /* softmax cross-entropy; dlogits = (p - onehot) / ROWS */
        const float *z = logits + i * V;
        float mx = z[0], sum = 0.0f;
        int best = 0;
        for (c = 1; c < V; ++c) if (z[c] > mx) { mx = z[c]; best = c; }
        for (c = 0; c < V; ++c) sum += expf(z[c] - mx);
        for (c = 0; c < V; ++c) dlogits[i * V + c] = (expf(z[c] - mx) / sum - (c == targets[i])) / ROWS;
        loss += (double)(logf(sum) + mx - z[targets[i]]);
        right += best == targets[i];
    }
    *acc = (float)right / ROWS;
    return (float)(loss / ROWS);
}

/* The backward pass into every param's g (attention's through attn_self_backward). */
static void backward(const attn_mha *m, void *ws, size_t ws_bytes)
{
    attn_mha_grads g;
    int i, c;
    for (i = 0; i < N_PARAMS; ++i) memset(prm[i].g, 0, sizeof(float) * (size_t)prm[i].n);
    linear_backward(dh2, prm[P_WOUT].g, prm[P_BOUT].g, h2, dlogits, prm[P_WOUT].w, ROWS, E, V);
    linear_backward(dr1, prm[P_W2].g, prm[P_B2].g, r1, dh2, prm[P_W2].w, ROWS, F, E); /* the MLP branch */
    for (i = 0; i < ROWS * F; ++i) dr1[i] = z1[i] > 0.0f ? dr1[i] : 0.0f;
    linear_backward(dh1, prm[P_W1].g, prm[P_B1].g, h1, dr1, prm[P_W1].w, ROWS, E, F);
    for (i = 0; i < ROWS * E; ++i) dh1[i] += dh2[i]; /* and the residual */
    memset(&g, 0, sizeof g);
    g.w_q = prm[P_WQ].g; g.w_k = prm[P_WK].g; g.w_v = prm[P_WV].g; g.w_o = prm[P_WO].g;
    g.b_q = prm[P_BQ].g; g.b_k = prm[P_BK].g; g.b_v = prm[P_BV].g; g.b_o = prm[P_BO].g;
    check(attn_self_backward(dh0, &g, h0, dh1, B, L, m, NULL, ws, ws_bytes), "attn_self_backward");
    for (i = 0; i < ROWS * E; ++i) dh0[i] += dh1[i]; /* the attention branch and the residual */
    for (i = 0; i < ROWS; ++i)
        for (c = 0; c < E; ++c) {
            prm[P_TOK].g[tokens[i] * E + c] += dh0[i * E + c];
            prm[P_POS].g[(i % L) * E + c] += dh0[i * E + c];
        }
}

int main(void)
{
    const float ws_e = 1.0f / sqrtf((float)E), ws_f = 1.0f / sqrtf((float)F);
    attn_mha m;
    size_t fwd_bytes = 0, bwd_bytes = 0;
    void *ws;
    float first = 0.0f, last = 0.0f, acc = 0.0f, lr = 3e-3f;
    int step, i;
    param_init(&prm[P_TOK], V * E, 1.0f); param_init(&prm[P_POS], L * E, 1.0f);
    for (i = P_WQ; i <= P_WO; ++i) param_init(&prm[i], E * E, ws_e);
    for (i = P_BQ; i <= P_BO; ++i) param_init(&prm[i], E, 0.0f);
    param_init(&prm[P_W1], E * F, ws_e); param_init(&prm[P_B1], F, 0.0f);
    param_init(&prm[P_W2], F * E, ws_f); param_init(&prm[P_B2], E, 0.0f);
    param_init(&prm[P_WOUT], E * V, ws_e); param_init(&prm[P_BOUT], V, 0.0f);
    memset(&m, 0, sizeof m);
    m.d_model = E; m.n_heads = H;
    m.w_q = prm[P_WQ].w; m.w_k = prm[P_WK].w; m.w_v = prm[P_WV].w; m.w_o = prm[P_WO].w;
    m.b_q = prm[P_BQ].w; m.b_k = prm[P_BK].w; m.b_v = prm[P_BV].w; m.b_o = prm[P_BO].w;
    /* one workspace for both passes, allocated once */
    check(attn_self_workspace_size(&fwd_bytes, B, L, &m, NULL), "attn_self_workspace_size");
    check(attn_self_backward_workspace_size(&bwd_bytes, B, L, &m, NULL), "attn_self_backward_workspace_size");
    ws = malloc(fwd_bytes > bwd_bytes ? fwd_bytes : bwd_bytes);
    if (!ws) { fprintf(stderr, "out of memory\n"); return 1; }
    printf("train_tiny: reverse %d digits; d_model %d, %d heads, MLP %d, batch %d, Adam lr %g, kernels %s\n", L, E, H,
           F, B, (double)lr, attn_simd_name());
    for (step = 1; step <= STEPS; ++step) {
        float loss;
        make_batch();
        loss = forward(&m, ws, fwd_bytes > bwd_bytes ? fwd_bytes : bwd_bytes, &acc);
        if (step == 1) first = loss;
        last = loss;
        if (step == 1 || step % 25 == 0) printf("step %4d  loss %.4f  accuracy %.2f\n", step, (double)loss, (double)acc);
        backward(&m, ws, fwd_bytes > bwd_bytes ? fwd_bytes : bwd_bytes);
        for (i = 0; i < N_PARAMS; ++i) adam(&prm[i], step, lr);
    }
    free(ws);
    for (i = 0; i < N_PARAMS; ++i) { free(prm[i].w); free(prm[i].g); free(prm[i].m); free(prm[i].v); }
    if (!(last < 0.25f * first)) {
        printf("not ok: the loss went from %.4f to %.4f, not under a quarter of the first\n", (double)first, (double)last);
        return 1;
    }
    printf("ok: the loss went from %.4f to %.4f (accuracy %.2f) in %d steps\n", (double)first, (double)last,
           (double)acc, STEPS);
    return 0;
}
