/* mpi_ring_attention: exact sequence-parallel attention over MPI (ring attention).

   One long sequence of N tokens, H heads of width D, split over P ranks (MPI processes, on one machine or
   many). Each rank holds N/P queries and the keys and values of N/P tokens. The key/value blocks travel
   around a ring: at step t rank r computes attention of its queries against the block of rank r - t while
   it already receives the block of rank r - t - 1 (non-blocking MPI_Isend / MPI_Irecv into a second
   buffer: double buffering) and sends the current one on to rank r + 1. After P steps every query has seen
   every key, and the partial results over disjoint key blocks are combined exactly through their
   log-sum-exps:
     - each block's partial result comes from attn_sdpa with opt.out_lse (its output O_b [rows x D] and
       lse_b = log sum_j exp(s_ij) over the block's keys);
     - attn_merge folds it into the running result: lse = log(e^lse_a + e^lse_b),
       O = e^(lse_a - lse) O_a + e^(lse_b - lse) O_b.
       Its +inf rule (two sides with lse +inf weigh 1:1) never applies here: with finite inputs every lse
       is finite, and no row of any block is fully masked (see the causal layout), so no lse is -inf.

   Causal attention, load-balanced (the zig-zag layout): the sequence is cut into 2P blocks of C = N/(2P)
   tokens and rank r holds blocks r and 2P-1-r (its queries, keys and values), so every rank has the same
   amount of work at every step:
     - step 0 (its own keys): local rows are in global order, so causal attention of the 2C local queries
       over the 2C local keys is attn_sdpa with ATTN_CAUSAL_TOP_LEFT: block r sees its own diagonal, block
       2P-1-r sees block r whole and its own diagonal;
     - keys of a rank s < r: block s is before both query blocks and block 2P-1-s after both: all 2C
       queries against the first C keys, no mask;
     - keys of a rank s > r: both key blocks come before block 2P-1-r and after block r: the last C
       queries against all 2C keys, no mask.
   Fully invisible block pairs are skipped, never computed and masked: each step is 2 C^2 = (N/P)^2 / 2
   query-key pairs on every rank. Non-causal attention gives rank r the contiguous rows r N/P .. (r+1) N/P - 1
   and every step is (N/P)^2 pairs.

   Exactness: rank 0 gathers the outputs, runs one single-process attn_sdpa over the whole sequence on the
   same data (the data are a hash of the global position, so every rank makes its own share) and prints a
   line "ok: ..." with the max-norm relative error, max |O_ring - O_sdpa| / max |O_sdpa|, which must be
   within 1e-6 (or, failing that, the ring within 1e-6 of a float64 reference on the rows where the two
   differ most: at some sizes attn_sdpa's own rounding takes the difference just past 1e-6). It is not bitwise equal and cannot be made so: attn_sdpa sums a row over its keys in its
   own order (key tiles with a running max, unnormalised accumulators), the ring sums per block and merges
   normalised block results through rounded float log-sum-exps, in an order that starts at each rank's own
   block. Both are rounded float32 sums of the same terms; a float64 reference on sampled rows shows how
   far each is from the exact value (equally far: docs/ring_attention.md). With --qscale=K the logits are
   K times larger, and so are their own rounding errors in both computations: the tolerance is K x 1e-6.

   Bad input: sizes are compared across ranks (an allreduce of min and max); a mismatch, or N not divisible
   by 2P (causal) or P, makes every rank print a message and exit with status 1. A failure inside a rank
   (allocation, an attn_sdpa error; --fail-rank=R simulates one on rank R) prints the rank and the reason
   and calls MPI_Abort, which ends every rank: no rank waits for a message that will not come. A rank
   that dies without it (killed, crashed) is noticed by mpirun, which ends the job. Every receive of the
   ring has its matching send (P - 1 transfers per rank, the same on every rank).

   Build and run (Debian: apt-get install openmpi-bin libopenmpi-dev):
       make mpi
       mpirun --allow-run-as-root --oversubscribe -np 4 build/mpi_ring_attention
   Options (all optional): --n=N (4096), --heads=H (4), --d=D (64), --causal / --no-causal (causal),
       --timings (per step: time in attn_sdpa, in attn_merge, in the MPI_Testall polls, in the final
       MPI_Waitall, and the same transfer with nothing computed), --repeat=R (runs of the
       ring for the timings, medians; 1, 5 with --timings), --no-check (no single-process reference: large
       N), --fail-rank=R (rank R fails at step 1: shows the abort path), --qscale=K (queries K times larger:
       large logits).
   Overlap: attn_sdpa is called per head, and MPI_Testall between heads lets MPI move the next block while
   the current one is computed (many MPI libraries progress a large message only inside MPI calls).
   Scaling model and measurements: docs/ring_attention.md. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

/* On any failure, print which argument broke which rule (README.md, "Errors"). */
#define ATTN_ERROR_HOOK(func, code, arg, rule) \
    fprintf(stderr, "%s: %s: %s: %s\n", func, attn_result_string(code), arg, rule)
#define ATTENTION_IMPLEMENTATION
#include "../attention.h"

#define TOLERANCE 1e-6
#define N_SAMPLE_ROWS 64 /* rows checked against float64 */
#define MAX_REPEAT 101

static int g_rank, g_size;

/* A failure inside one rank: say where and why, then end every rank (the others may be waiting on this
   one's messages; MPI_Abort ends them instead of letting them hang). */
static void die(const char *what, const char *why)
{
    fprintf(stderr, "rank %d of %d: %s: %s; aborting all ranks\n", g_rank, g_size, what, why);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
    exit(3); /* not reached */
}

static void check(attn_result r, const char *what)
{
    if (r != ATTN_OK) die(what, attn_result_string(r));
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) die("malloc", "out of memory");
    return p;
}

/* The data: element (tensor, head, global token, dim) of Q, K or V, a hash in [-1, 1), so any rank makes
   any part of the sequence without communication. Queries are scaled by 3 so that the scaled scores have
   a standard deviation near 1 (attention that is neither uniform nor one-hot); --qscale=K multiplies them
   by K more (large logits: peaked attention, log-sum-exps far from 0). */
static int g_qscale = 1;
static float value(int tensor, int h, long long tok, int c)
{
    uint64_t x = ((uint64_t)tensor << 56) ^ ((uint64_t)h << 40) ^ ((uint64_t)tok << 12) ^ (uint64_t)c;
    x += 0x9e3779b97f4a7c15ull; /* splitmix64 */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    return ((float)(x >> 40) / 8388608.0f - 1.0f) * (tensor == 0 ? 3.0f * (float)g_qscale : 1.0f);
}

typedef struct config {
    int n, heads, d, causal, timings, repeat, check, fail_rank, qscale;
} config;

/* The global position of local row l of rank r: zig-zag blocks r and 2P-1-r when causal, else contiguous. */
static long long global_row(const config *cf, int r, int l)
{
    const int n_loc = cf->n / g_size;
    if (!cf->causal) return (long long)r * n_loc + l;
    {
        const int c = n_loc / 2;
        return l < c ? (long long)r * c + l : (long long)(2 * g_size - 1 - r) * c + (l - c);
    }
}

static int parse(config *cf, int argc, char **argv)
{
    int i;
    cf->n = 4096; cf->heads = 4; cf->d = 64; cf->causal = 1;
    cf->timings = 0; cf->repeat = 0; cf->check = 1; cf->fail_rank = -1; cf->qscale = 1;
    for (i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (!strncmp(a, "--n=", 4)) cf->n = atoi(a + 4);
        else if (!strncmp(a, "--heads=", 8)) cf->heads = atoi(a + 8);
        else if (!strncmp(a, "--d=", 4)) cf->d = atoi(a + 4);
        else if (!strcmp(a, "--causal")) cf->causal = 1;
        else if (!strcmp(a, "--no-causal")) cf->causal = 0;
        else if (!strcmp(a, "--timings")) cf->timings = 1;
        else if (!strncmp(a, "--repeat=", 9)) cf->repeat = atoi(a + 9);
        else if (!strcmp(a, "--no-check")) cf->check = 0;
        else if (!strncmp(a, "--fail-rank=", 12)) cf->fail_rank = atoi(a + 12);
        else if (!strncmp(a, "--qscale=", 9)) cf->qscale = atoi(a + 9);
        else {
            if (g_rank == 0)
                fprintf(stderr, "unknown argument %s\nusage: mpi_ring_attention [--n=N] [--heads=H] [--d=D] "
                                "[--causal|--no-causal] [--timings] [--repeat=R] [--no-check] [--fail-rank=R] [--qscale=K]\n", a);
            return 0;
        }
    }
    if (cf->repeat == 0) cf->repeat = cf->timings ? 5 : 1;
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* The ring state of one rank. Buffers are head-major: q, out [H, n_loc, D], lse [H, n_loc]; a key/value
   block is one message [K: H, n_loc, D][V: H, n_loc, D]. */
typedef struct ring {
    int n_loc, c;               /* rows per rank; causal block size C = n_loc / 2 */
    float *q, *kv[2];           /* local queries; the current and the next key/value block */
    float *out, *lse;           /* the running (merged) result */
    float *part, *lse_part;     /* one head's partial result of a step [n_loc, D], [n_loc] */
    void *ws;                   /* attn_sdpa's workspace, sized once: the loop never allocates */
    size_t ws_bytes;
    MPI_Datatype row;           /* D floats: counts stay small for any N */
} ring;

/* One head's attention of local rows q0 .. q0+nq-1 against keys k0 .. k0+nk-1 of block kv, written to
   out [nq, D] and lse [nq]. */
static void block_attention(const config *cf, ring *g, const float *kv, int h, int q0, int nq, int k0, int nk,
                            attn_causal causal, float *out, float *lse)
{
    const int D = cf->d;
    const size_t hoff = (size_t)h * (size_t)g->n_loc;
    const attn_dims dims = {1, 1, 0, nq, nk, D, D};
    attn_options opt;
    memset(&opt, 0, sizeof opt);
    opt.causal = causal;
    opt.out_lse = lse;
    check(attn_sdpa(out, attn_stride_bhnd(1, nq, D),
                    g->q + (hoff + (size_t)q0) * (size_t)D, attn_stride_bhnd(1, nq, D),
                    kv + (hoff + (size_t)k0) * (size_t)D, attn_stride_bhnd(1, nk, D),
                    kv + ((size_t)cf->heads * (size_t)g->n_loc + hoff + (size_t)k0) * (size_t)D,
                    attn_stride_bhnd(1, nk, D), &dims, &opt, g->ws, g->ws_bytes),
          "attn_sdpa");
}

/* One pass of the ring: P steps. t_comp, t_merge, t_prog, t_wait [P] receive the times of each step: in
   attn_sdpa, in attn_merge, in the MPI_Testall calls between heads, in the final MPI_Waitall. */
static void ring_pass(const config *cf, ring *g, double *t_comp, double *t_merge, double *t_prog, double *t_wait)
{
    const int P = g_size, r = g_rank, H = cf->heads, D = cf->d;
    const int right = (r + 1) % P, left = (r + P - 1) % P, rows = 2 * H * g->n_loc;
    int t, h, cur = 0;
    for (t = 0; t < P; ++t) {
        const int src = (r - t + P) % P; /* whose keys and values kv[cur] holds */
        MPI_Request req[2];
        int n_req = 0, flag;
        double t0, t1, t2;
        int q0 = 0, nq = g->n_loc, k0 = 0, nk = g->n_loc;
        attn_causal causal = ATTN_CAUSAL_NONE;
        /* the next block is on its way while this one is computed (none after the last step) */
        if (t < P - 1) {
            MPI_Irecv(g->kv[1 - cur], rows, g->row, left, t, MPI_COMM_WORLD, &req[n_req++]);
            MPI_Isend(g->kv[cur], rows, g->row, right, t, MPI_COMM_WORLD, &req[n_req++]);
        }
        if (cf->causal) {
            if (t == 0) causal = ATTN_CAUSAL_TOP_LEFT; /* own blocks: r's diagonal, all of r, 2P-1-r's diagonal */
            else if (src < r) nk = g->c;               /* all queries, key block src only */
            else { q0 = g->c; nq = g->c; }             /* queries of block 2P-1-r, both key blocks */
        }
        if (t == 1 && r == cf->fail_rank) die("step 1", "simulated failure (--fail-rank)");
        t_comp[t] = t_merge[t] = t_prog[t] = 0.0;
        for (h = 0; h < H; ++h) {
            const size_t o = (size_t)h * (size_t)g->n_loc + (size_t)q0; /* row h, q0 of out and lse */
            t0 = MPI_Wtime();
            if (t == 0) { /* the first partial result is the running result */
                block_attention(cf, g, g->kv[cur], h, q0, nq, k0, nk, causal, g->out + o * (size_t)D, g->lse + o);
                t1 = t2 = MPI_Wtime();
            } else { /* a partial result, merged into the running one while it is in the cache */
                block_attention(cf, g, g->kv[cur], h, q0, nq, k0, nk, causal, g->part, g->lse_part);
                t1 = MPI_Wtime();
                check(attn_merge(g->out + o * (size_t)D, D, g->lse + o, g->out + o * (size_t)D, D, g->lse + o,
                                 g->part, D, g->lse_part, nq, D),
                      "attn_merge");
                t2 = MPI_Wtime();
            }
            t_comp[t] += t1 - t0;
            t_merge[t] += t2 - t1;
            if (n_req) MPI_Testall(n_req, req, &flag, MPI_STATUSES_IGNORE); /* lets MPI progress the transfer */
            t_prog[t] += MPI_Wtime() - t2;
        }
        t0 = MPI_Wtime();
        if (n_req) MPI_Waitall(n_req, req, MPI_STATUSES_IGNORE);
        t_wait[t] = MPI_Wtime() - t0;
        cur = 1 - cur;
    }
}

/* The same P - 1 transfers with nothing computed: what one step's communication costs alone. */
static void transfer_pass(const config *cf, ring *g, double *t_xfer)
{
    const int P = g_size, r = g_rank, rows = 2 * cf->heads * g->n_loc;
    int t, cur = 0;
    for (t = 0; t < P - 1; ++t) {
        MPI_Request req[2];
        const double t0 = MPI_Wtime();
        MPI_Irecv(g->kv[1 - cur], rows, g->row, (r + P - 1) % P, t, MPI_COMM_WORLD, &req[0]);
        MPI_Isend(g->kv[cur], rows, g->row, (r + 1) % P, t, MPI_COMM_WORLD, &req[1]);
        MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
        t_xfer[t] = MPI_Wtime() - t0;
        cur = 1 - cur;
    }
}

/* Fills q and kv[0] with this rank's share of the sequence. */
static void fill_local(const config *cf, ring *g)
{
    const int H = cf->heads, D = cf->d;
    const size_t vo = (size_t)H * (size_t)g->n_loc * (size_t)D;
    int h, l, c;
    for (h = 0; h < H; ++h)
        for (l = 0; l < g->n_loc; ++l) {
            const long long tok = global_row(cf, g_rank, l);
            const size_t o = ((size_t)h * (size_t)g->n_loc + (size_t)l) * (size_t)D;
            for (c = 0; c < D; ++c) {
                g->q[o + (size_t)c] = value(0, h, tok, c);
                g->kv[0][o + (size_t)c] = value(1, h, tok, c);
                g->kv[0][vo + o + (size_t)c] = value(2, h, tok, c);
            }
        }
}

/* float64 attention of one row (global token i, head h) over the full q, k, v [H, N, D]. */
static void row_f64(const config *cf, const float *q, const float *k, const float *v, int h, long long i, double *o,
                    double *s)
{
    const int D = cf->d;
    const long long nk = cf->causal ? i + 1 : cf->n;
    const float *qi = q + ((size_t)h * (size_t)cf->n + (size_t)i) * (size_t)D;
    const double scale = 1.0 / sqrt((double)D);
    double m = -INFINITY, sum = 0.0;
    long long j;
    int c;
    for (j = 0; j < nk; ++j) {
        const float *kj = k + ((size_t)h * (size_t)cf->n + (size_t)j) * (size_t)D;
        double dot = 0.0;
        for (c = 0; c < D; ++c) dot += (double)qi[c] * (double)kj[c];
        s[j] = dot * scale;
        if (s[j] > m) m = s[j];
    }
    for (c = 0; c < D; ++c) o[c] = 0.0;
    for (j = 0; j < nk; ++j) {
        const float *vj = v + ((size_t)h * (size_t)cf->n + (size_t)j) * (size_t)D;
        const double p = exp(s[j] - m);
        sum += p;
        for (c = 0; c < D; ++c) o[c] += p * (double)vj[c];
    }
    for (c = 0; c < D; ++c) o[c] /= sum;
}

#define N_WORST 8 /* the rows where the ring and attn_sdpa differ most, also checked against float64 */

/* Rank 0: the single-process attn_sdpa over the whole sequence, compared with the gathered ring outputs
   all [P, H, n_loc, D]. The verdict: within the tolerance of attn_sdpa; or, where the two differ most,
   the ring within the tolerance of float64 (the two float32 results each carry their own rounding, and
   when the difference exceeds the tolerance it may be attn_sdpa's share). Returns 1 if ok. */
static int check_result(const config *cf, const ring *g, const float *all)
{
    const int P = g_size, H = cf->heads, D = cf->d, N = cf->n, n_loc = g->n_loc;
    const size_t per_head = (size_t)N * (size_t)D, total = (size_t)H * per_head;
    float *q = (float *)xmalloc(sizeof(float) * total), *k = (float *)xmalloc(sizeof(float) * total);
    float *v = (float *)xmalloc(sizeof(float) * total), *ref = (float *)xmalloc(sizeof(float) * total);
    double *o64 = (double *)xmalloc(sizeof(double) * (size_t)D), *s64 = (double *)xmalloc(sizeof(double) * (size_t)N);
    const attn_dims dims = {1, H, 0, N, N, D, D};
    const attn_stride st = attn_stride_bhnd(H, N, D);
    attn_options opt;
    double num = 0.0, den = 0.0, t0, t_ref, e_ring = 0.0, e_sdpa = 0.0, den64 = 0.0, w_ring = 0.0, w_sdpa = 0.0;
    double worst_d[N_WORST];
    const float *worst_a[N_WORST];
    int worst_h[N_WORST], n_worst = 0;
    long long worst_i[N_WORST];
    size_t equal = 0, idx;
    /* larger logits carry larger rounding errors of their own (a score s is rounded to ~6e-8 |s|, which
       moves its weight by that much relative), in the ring and in attn_sdpa alike: K times the tolerance */
    const double tol = TOLERANCE * cf->qscale;
    int h, rr, l, c, si, w, ok;
    for (h = 0; h < H; ++h)
        for (l = 0; l < N; ++l)
            for (c = 0; c < D; ++c) {
                idx = (size_t)h * per_head + (size_t)l * (size_t)D + (size_t)c;
                q[idx] = value(0, h, l, c);
                k[idx] = value(1, h, l, c);
                v[idx] = value(2, h, l, c);
            }
    memset(&opt, 0, sizeof opt);
    opt.causal = cf->causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
    t0 = MPI_Wtime();
    check(attn_sdpa(ref, st, q, st, k, st, v, st, &dims, &opt, NULL, 0), "attn_sdpa (reference)");
    t_ref = MPI_Wtime() - t0;
    /* every ring output beside the reference's row for the same token; the N_WORST rows that differ most */
    for (rr = 0; rr < P; ++rr)
        for (h = 0; h < H; ++h)
            for (l = 0; l < n_loc; ++l) {
                const long long i = global_row(cf, rr, l);
                const float *a = all + (((size_t)rr * (size_t)H + (size_t)h) * (size_t)n_loc + (size_t)l) * (size_t)D;
                const float *b = ref + (size_t)h * per_head + (size_t)i * (size_t)D;
                double row = 0.0;
                for (c = 0; c < D; ++c) {
                    const double e = fabs((double)a[c] - (double)b[c]);
                    if (!(e <= row)) row = e; /* NaN fails */
                    if (fabs((double)b[c]) > den) den = fabs((double)b[c]);
                    equal += a[c] == b[c];
                }
                if (!(row <= num)) num = row;
                if (n_worst < N_WORST || !(row <= worst_d[n_worst - 1])) { /* insertion into the sorted list */
                    w = n_worst < N_WORST ? n_worst++ : N_WORST - 1;
                    for (; w > 0 && !(row <= worst_d[w - 1]); --w) {
                        worst_d[w] = worst_d[w - 1]; worst_a[w] = worst_a[w - 1];
                        worst_h[w] = worst_h[w - 1]; worst_i[w] = worst_i[w - 1];
                    }
                    worst_d[w] = row; worst_a[w] = a; worst_h[w] = h; worst_i[w] = i;
                }
            }
    /* both against float64 on sampled rows (spread over the sequence, every head) */
    for (si = 0; si < N_SAMPLE_ROWS; ++si) {
        const long long i = (long long)(((double)si + 0.5) * N / N_SAMPLE_ROWS);
        int owner = -1, lo = -1;
        for (rr = 0; rr < P && owner < 0; ++rr)
            for (l = 0; l < n_loc; ++l)
                if (global_row(cf, rr, l) == i) { owner = rr; lo = l; break; }
        for (h = 0; h < H; ++h) {
            const float *a = all + (((size_t)owner * (size_t)H + (size_t)h) * (size_t)n_loc + (size_t)lo) * (size_t)D;
            const float *b = ref + (size_t)h * per_head + (size_t)i * (size_t)D;
            row_f64(cf, q, k, v, h, i, o64, s64);
            for (c = 0; c < D; ++c) {
                if (fabs((double)a[c] - o64[c]) > e_ring) e_ring = fabs((double)a[c] - o64[c]);
                if (fabs((double)b[c] - o64[c]) > e_sdpa) e_sdpa = fabs((double)b[c] - o64[c]);
                if (fabs(o64[c]) > den64) den64 = fabs(o64[c]);
            }
        }
    }
    /* and on the rows where they differ most, relative to the largest output */
    for (w = 0; w < n_worst; ++w) {
        const float *b = ref + (size_t)worst_h[w] * per_head + (size_t)worst_i[w] * (size_t)D;
        row_f64(cf, q, k, v, worst_h[w], worst_i[w], o64, s64);
        for (c = 0; c < D; ++c) {
            const double ea = fabs((double)worst_a[w][c] - o64[c]), eb = fabs((double)b[c] - o64[c]);
            if (!(ea <= w_ring)) w_ring = ea;
            if (eb > w_sdpa) w_sdpa = eb;
        }
    }
    num /= den; w_ring /= den; w_sdpa /= den;
    ok = num <= tol || w_ring <= tol;
    printf("single-process attn_sdpa on rank 0: %.1f ms\n", t_ref * 1e3);
    printf("against float64, max-norm relative: %d sampled rows x %d heads: ring %.2e, single-process attn_sdpa "
           "%.2e; the %d rows where they differ most: ring %.2e, attn_sdpa %.2e\n",
           N_SAMPLE_ROWS, H, e_ring / den64, e_sdpa / den64, n_worst, w_ring, w_sdpa);
    printf("%s: ring attention over %d ranks (N=%d, H=%d, D=%d, %s) vs single-process attn_sdpa: max relative "
           "error %.2e (tolerance %.0e%s); %.1f%% of the outputs bitwise equal (not all: the sums over keys run "
           "in a different order)\n",
           ok ? "ok" : "FAILED", P, N, H, D, cf->causal ? "causal, zig-zag" : "non-causal", num, tol,
           num <= tol ? "" : ok ? "; above it, but the ring is within it of float64 where they differ most"
                                : "; and the ring is not within it of float64 where they differ most",
           100.0 * (double)equal / (double)total);
    free(q); free(k); free(v); free(ref); free(o64); free(s64);
    return ok;
}

int main(int argc, char **argv)
{
    config cf;
    ring g;
    int mine[5], lo[5], hi[5], i, t, rep, status = 0;
    const char *names[5] = {"n", "heads", "d", "causal", "qscale"};
    double *tc, *tm, *tp, *tw, *tx, *tr, t_total[MAX_REPEAT];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);

    /* every rank parses its own command line; all must agree (an MPMD launch may give them different ones) */
    i = parse(&cf, argc, argv);
    MPI_Allreduce(MPI_IN_PLACE, &i, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!i) { MPI_Finalize(); return 1; }
    mine[0] = cf.n; mine[1] = cf.heads; mine[2] = cf.d; mine[3] = cf.causal; mine[4] = cf.qscale;
    MPI_Allreduce(mine, lo, 5, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(mine, hi, 5, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    for (i = 0; i < 5; ++i)
        if (lo[i] != hi[i]) {
            fprintf(stderr, "rank %d of %d: sizes differ across ranks: %s is %d here, between %d and %d over the "
                            "ranks; every rank must run with the same --n, --heads, --d, causal option and --qscale\n",
                    g_rank, g_size, names[i], mine[i], lo[i], hi[i]);
            status = 1;
        }
    if (!status && (cf.n < 1 || cf.heads < 1 || cf.d < 1 || cf.d > 4096 || cf.repeat < 1 || cf.repeat > MAX_REPEAT ||
                    cf.qscale < 1 || cf.qscale > 1000)) {
        fprintf(stderr, "rank %d of %d: need n, heads >= 1, 1 <= d <= 4096, 1 <= repeat <= %d, 1 <= qscale <= 1000\n",
                g_rank, g_size, MAX_REPEAT);
        status = 1;
    }
    if (!status && cf.n % (cf.causal ? 2 * g_size : g_size) != 0) {
        fprintf(stderr, "rank %d of %d: N = %d is not divisible by %s = %d: each rank needs %s (choose N a "
                        "multiple of %d)\n",
                g_rank, g_size, cf.n, cf.causal ? "2P" : "P", cf.causal ? 2 * g_size : g_size,
                cf.causal ? "two equal blocks (zig-zag causal layout)" : "an equal share of the sequence",
                cf.causal ? 2 * g_size : g_size);
        status = 1;
    }
    if (!status && (double)cf.heads * 2.0 * (double)(cf.n / g_size) > (double)INT_MAX) {
        fprintf(stderr, "rank %d of %d: a block of 2 x %d heads x %d rows is too many rows for one message\n",
                g_rank, g_size, cf.heads, cf.n / g_size);
        status = 1;
    }
    /* the decision is the same on every rank (the checks above depend on agreed values only) */
    MPI_Allreduce(MPI_IN_PLACE, &status, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (status) { MPI_Finalize(); return 1; }

    g_qscale = cf.qscale;
    memset(&g, 0, sizeof g);
    g.n_loc = cf.n / g_size;
    g.c = g.n_loc / 2;
    {
        const size_t nq = (size_t)cf.heads * (size_t)g.n_loc * (size_t)cf.d;
        const attn_dims dims = {1, 1, 0, g.n_loc, g.n_loc, cf.d, cf.d};
        size_t b0, b1;
        attn_options opt;
        g.q = (float *)xmalloc(sizeof(float) * nq);
        g.kv[0] = (float *)xmalloc(sizeof(float) * 2 * nq);
        g.kv[1] = (float *)xmalloc(sizeof(float) * 2 * nq);
        g.out = (float *)xmalloc(sizeof(float) * nq);
        g.part = (float *)xmalloc(sizeof(float) * (size_t)g.n_loc * (size_t)cf.d);
        g.lse = (float *)xmalloc(sizeof(float) * (size_t)cf.heads * (size_t)g.n_loc);
        g.lse_part = (float *)xmalloc(sizeof(float) * (size_t)g.n_loc);
        memset(&opt, 0, sizeof opt);
        opt.out_lse = g.lse;
        check(attn_sdpa_workspace_size(&b0, &dims, &opt), "attn_sdpa_workspace_size");
        opt.causal = ATTN_CAUSAL_TOP_LEFT;
        check(attn_sdpa_workspace_size(&b1, &dims, &opt), "attn_sdpa_workspace_size");
        g.ws_bytes = b0 > b1 ? b0 : b1;
        g.ws = xmalloc(g.ws_bytes);
    }
    MPI_Type_contiguous(cf.d, MPI_FLOAT, &g.row);
    MPI_Type_commit(&g.row);
    fill_local(&cf, &g);
    memcpy(g.kv[1], g.kv[0], sizeof(float) * 2 * (size_t)cf.heads * (size_t)g.n_loc * (size_t)cf.d); /* touch */

    tc = (double *)xmalloc(sizeof(double) * (size_t)g_size * (size_t)cf.repeat);
    tm = (double *)xmalloc(sizeof(double) * (size_t)g_size * (size_t)cf.repeat);
    tw = (double *)xmalloc(sizeof(double) * (size_t)g_size * (size_t)cf.repeat);
    tp = (double *)xmalloc(sizeof(double) * (size_t)g_size * (size_t)cf.repeat);
    tx = (double *)xmalloc(sizeof(double) * (size_t)g_size * (size_t)cf.repeat);
    tr = (double *)xmalloc(sizeof(double) * (size_t)cf.repeat);
    if (g_rank == 0)
        printf("ring attention: %d ranks, N=%d, H=%d, D=%d, %s, %d rows per rank, blocks of %.2f MiB (K and V)\n",
               g_size, cf.n, cf.heads, cf.d, cf.causal ? "causal (zig-zag)" : "non-causal", g.n_loc,
               2.0 * cf.heads * g.n_loc * cf.d * 4.0 / 1048576.0);
    for (rep = 0; rep < cf.repeat; ++rep) {
        double t0;
        /* a pass ends with kv[cur] holding the block of rank r + 1 when P is even, so refill the own block */
        if (rep > 0) fill_local(&cf, &g);
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        ring_pass(&cf, &g, tc + (size_t)rep * g_size, tm + (size_t)rep * g_size, tp + (size_t)rep * g_size,
                  tw + (size_t)rep * g_size);
        MPI_Barrier(MPI_COMM_WORLD);
        t_total[rep] = MPI_Wtime() - t0;
    }

    if (cf.timings) {
        /* per step: the median over the repeats on this rank, then the max over the ranks */
        double mx[5], comp_sum = 0.0, flops_step;
        for (rep = 0; rep < cf.repeat; ++rep) transfer_pass(&cf, &g, tx + (size_t)rep * g_size);
        if (g_rank == 0)
            printf("per step, seconds: median of %d passes on each rank, then the max over the ranks\n"
                   "step   compute     merge       progress    wait        transfer alone\n", cf.repeat);
        flops_step = 4.0 * (double)g.n_loc * (double)g.n_loc * cf.d * cf.heads * (cf.causal ? 0.5 : 1.0);
        for (t = 0; t < g_size; ++t) {
            double v[5];
            for (rep = 0; rep < cf.repeat; ++rep) tr[rep] = tc[(size_t)rep * g_size + t];
            v[0] = median(tr, cf.repeat);
            for (rep = 0; rep < cf.repeat; ++rep) tr[rep] = tm[(size_t)rep * g_size + t];
            v[1] = median(tr, cf.repeat);
            for (rep = 0; rep < cf.repeat; ++rep) tr[rep] = tw[(size_t)rep * g_size + t];
            v[2] = median(tr, cf.repeat);
            for (rep = 0; rep < cf.repeat; ++rep) tr[rep] = tx[(size_t)rep * g_size + t];
            v[3] = t < g_size - 1 ? median(tr, cf.repeat) : 0.0;
            for (rep = 0; rep < cf.repeat; ++rep) tr[rep] = tp[(size_t)rep * g_size + t];
            v[4] = median(tr, cf.repeat);
            MPI_Reduce(v, mx, 5, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
            if (g_rank == 0) {
                printf("%4d   %.6f  %.6f  %.6f  %.6f    %.6f\n", t, mx[0], mx[1], mx[4], mx[2], mx[3]);
                comp_sum += mx[0];
            }
        }
        if (g_rank == 0) {
            const double mib = 2.0 * cf.heads * g.n_loc * cf.d * 4.0 / 1048576.0;
            for (rep = 0; rep < cf.repeat; ++rep) tr[rep] = t_total[rep];
            printf("summary: %.3f GFLOP per rank per step, compute %.2f GFLOP/s per rank (mean over steps of the "
                   "max over ranks), ring total %.1f ms (median)\n",
                   flops_step * 1e-9, flops_step * g_size / comp_sum * 1e-9, median(tr, cf.repeat) * 1e3);
            printf("summary: a step moves %.2f MiB per rank\n", mib);
        }
    }

    /* rank 0 gathers every rank's outputs [H, n_loc, D] and checks them */
    if (cf.check) {
        const size_t nq = (size_t)cf.heads * (size_t)g.n_loc;
        float *all = g_rank == 0 ? (float *)xmalloc(sizeof(float) * nq * (size_t)g_size * (size_t)cf.d) : NULL;
        int ok = 1;
        if (nq > (size_t)INT_MAX) die("gather", "too many rows for one MPI_Gather");
        MPI_Gather(g.out, (int)nq, g.row, all, (int)nq, g.row, 0, MPI_COMM_WORLD);
        if (g_rank == 0) ok = check_result(&cf, &g, all);
        MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
        status = !ok;
        free(all);
    } else if (g_rank == 0) {
        printf("ok: ring attention over %d ranks ran (N=%d, H=%d, D=%d, %s); --no-check: not compared\n", g_size,
               cf.n, cf.heads, cf.d, cf.causal ? "causal, zig-zag" : "non-causal");
    }

    MPI_Type_free(&g.row);
    free(g.q); free(g.kv[0]); free(g.kv[1]); free(g.out); free(g.part); free(g.lse); free(g.lse_part); free(g.ws);
    free(tc); free(tm); free(tp); free(tw); free(tx); free(tr);
    MPI_Finalize();
    return status;
}
