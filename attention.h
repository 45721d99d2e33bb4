/* attention.h - v0.2.0 - attention on the CPU in one C99 header; public domain or MIT, see end of file

   Scaled dot-product attention, multi-head self- and cross-attention and their building blocks (projection,
   scores, softmax, weighted sum, log-sum-exp merge), float32, no dependency beyond the C standard library.

   ==================================================================================================
   QUICK START
   ==================================================================================================

   In exactly one C or C++ file:

       #define ATTENTION_IMPLEMENTATION
       #include "attention.h"

   everywhere else just #include "attention.h". Then, for causal self-attention of x [1, 4, 8] with 2 heads:

       float x[4 * 8], out[4 * 8], wq[8 * 8], wk[8 * 8], wv[8 * 8], wo[8 * 8];
       // ... fill x and the weights ([d_in x d_out], so Q = x . wq) ...
       attn_mha m = {0};
       m.d_model = 8; m.n_heads = 2;
       m.w_q = wq; m.w_k = wk; m.w_v = wv; m.w_o = wo;
       attn_options opt = {0};
       opt.causal = ATTN_CAUSAL_TOP_LEFT;
       attn_result r = attn_self_forward(out, x, 1, 4, &m, &opt, NULL, 0);
       if (r != ATTN_OK) fprintf(stderr, "attention: %s\n", attn_result_string(r));

   Link with -lm.

   ==================================================================================================
   OPTION MACROS (define before the #include that has ATTENTION_IMPLEMENTATION)
   ==================================================================================================

   | macro                      | effect                                                                  |
   |----------------------------|-------------------------------------------------------------------------|
   | ATTENTION_IMPLEMENTATION   | emit the definitions in this translation unit                           |
   | ATTN_STATIC                | give every public function static linkage (define it, with the          |
   |                            | implementation, in each file that uses the header)                      |
   | ATTN_ASSERT(x)             | assert for internal invariants only (default: assert from <assert.h>)   |
   | ATTN_MALLOC(size, user)    | allocator; define both or neither (default: malloc/free). `user` is     |
   | ATTN_FREE(ptr, user)       | attn_options.alloc_user                                                 |
   | ATTN_NO_SIMD               | portable scalar kernels only (the reference the SIMD kernels are held to) |
   | ATTN_NO_AVX512             | on x86-64, use AVX2+FMA at most                                          |
   | ATTN_HEADER_FILE           | this file's name if renamed (default "attention.h"): the implementation |
   |                            | includes itself once per instruction set                                 |
   Compile with -fopenmp for threads (OpenMP); nothing else changes.

   ==================================================================================================
   KERNELS AND THREADS
   ==================================================================================================

   One kernel template in this file is compiled for AVX-512, AVX2+FMA (x86-64, gcc or clang, through
   target attributes: no -march needed) and NEON (aarch64), and each call picks the best the CPU has
   (attn_simd_name tells which); other compilers and targets get the portable scalar kernels. The fused
   kernel keeps a tile of 32 queries transposed (queries in the vector lanes) and walks 64-key tiles:
   scores and the output update are one 6 x 2-vector register-blocked micro-kernel that broadcasts K and
   V straight from the caller's rows, the online softmax runs down the columns with a polynomial exp2,
   and key tiles past the causal diagonal or kv_len are skipped. Tiles of at most 8 queries (decoding)
   take a row kernel vectorised along d; with more than 2048 keys their keys are cut into 2048-key
   chunks processed as separate work items and merged through their log-sum-exps (flash-decoding).
   Projections use the same micro-kernel on 16 KiB stack panels.
   Threads: with -fopenmp, attn_sdpa and the multi-head functions run on attn_options.n_threads threads
   (0: omp_get_max_threads()), over (batch, head, query tile, key chunk) work items; attn_project,
   attn_scores and attn_weighted_sum use omp_get_max_threads() for projections by column blocks. A caller
   with its own thread pool sets split_count = number of slices and split_index = this slice, and runs
   every slice (any order, any thread), each with its own workspace, on the same arguments: attn_sdpa
   only. Results are bitwise identical whatever the thread count or split.

   ==================================================================================================
   CONVENTIONS
   ==================================================================================================

   - Tensors are row-major float32. Every matrix argument has an explicit row stride, in elements (floats),
     and its rows are contiguous. A row stride smaller than the row is an error.
   - 4-D tensors [B, H, N, D] are a pointer plus an attn_stride {batch, head, row}. The same data can be
     [B, H, N, D] (attn_stride_bhnd) or the interleaved [B, N, H*D] output of a projection
     (attn_stride_bnhd), or any other strided view (a packed QKV buffer: row stride 3*H*D), without copies.
     Input strides may be 0 on the batch and head axes (broadcast); output strides must not make two
     elements share memory (checked: sorted by size, each stride covers the extent of the axes inside it).
   - Outputs must not overlap inputs, except where a function says so.
   - Every fallible call returns attn_result: ATTN_OK (0) or a negative code; attn_result_string names it.
     Arguments are validated before anything is written: on error every output is left untouched.
   - Option structs are zero-initialised by the caller ({0}); zero means the documented default, and
     fields added later keep today's behaviour at zero.
   - Nothing allocates except attn_sdpa, attn_self_forward and attn_cross_forward when they are given no
     workspace: then they take one block through ATTN_MALLOC and free it before returning. There is no
     global state: every call is reentrant and thread-safe.

   ==================================================================================================
   REFERENCE
   ==================================================================================================

   Building blocks (each never allocates; at most about 17 KiB of stack):

   attn_project(y, y_stride, x, x_stride, w, w_stride, layout, bias, n, d_in, d_out)
       Y[n x d_out] = X[n x d_in] . W + bias. layout ATTN_LAYOUT_IN_OUT (0): W is [d_in x d_out] (Q = X.W^Q);
       ATTN_LAYOUT_OUT_IN: W is [d_out x d_in] as PyTorch stores nn.Linear.weight and in_proj_weight
       (Y = X.W^T), loaded as is. w_stride is the row stride of W as stored. bias [d_out] or NULL.

   attn_scores(s, s_stride, q, q_stride, k, k_stride, n_q, n_k, d_k, scale)
       S[n_q x n_k] = scale . Q[n_q x d_k] . K[n_k x d_k]^T; scale 0 means 1/sqrt(d_k).

   attn_softmax(p, p_stride, s, s_stride, n_rows, n_cols, lse)
       P = softmax over each row of S[n_rows x n_cols], stable (the row max is subtracted). -inf entries are
       masked. lse [n_rows] (or NULL) receives log(sum_j exp(s_ij)). p may be s (same stride): in place.

   attn_weighted_sum(o, o_stride, p, p_stride, v, v_stride, n_q, n_k, d_v)
       O[n_q x d_v] = P[n_q x n_k] . V[n_k x d_v].

   attn_merge(o, o_stride, lse, o_a, o_a_stride, lse_a, o_b, o_b_stride, lse_b, n_rows, d_v)
       Combines two attention results over disjoint key sets, O_a, O_b [n_rows x d_v] with their log-sum-exps
       lse_a, lse_b [n_rows], into the result over the union:
           lse = log(exp(lse_a) + exp(lse_b)),  O = exp(lse_a - lse) O_a + exp(lse_b - lse) O_b.
       lse (or NULL) receives the merged log-sum-exp. o may be o_a or o_b and lse may be lse_a or lse_b
       (in place). A side with lse -inf (no visible key) contributes nothing, whatever its O holds.

   Fused scaled dot-product attention:

   attn_sdpa(out, out_s, q, q_s, k, k_s, v, v_s, dims, opt, workspace, workspace_bytes)
   attn_sdpa_workspace_size(&bytes, dims, opt)
       out [B, Hq, Nq, Dv] = softmax(scale . Q.K^T + masks) . V, per batch b and query head h, reading kv head
       h / (Hq / Hkv) (grouped-query; Hkv = 1 is multi-query):
           q [B, Hq, Nq, Dk], k [B, Hkv, Nk, Dk], v [B, Hkv, Nk, Dv], each with its attn_stride.
       dims = {batch, n_heads (Hq), n_kv_heads (Hkv, 0 = Hq), n_q, n_kv, d_k, d_v (0 = d_k)}.
       The Nq x Nk matrix is never materialised: the kernel walks query tiles against key tiles with an
       online softmax, so the workspace is a few tiles per thread, 128 * (Dk + Dv + 68) bytes, independent
       of Nq and Nk (plus, for decoding over more than 2048 keys, B * Hq * Nq * (Dv + 1) floats per
       2048-key chunk); attn_sdpa_workspace_size tells, for the same dims and options (the thread count
       and split count in them matter). workspace NULL: allocated and freed inside. A workspace smaller
       than reported gives ATTN_ERR_WORKSPACE.

   attn_options (all optional, zero = default):
       scale             0: 1/sqrt(Dk). Must be finite.
       causal            ATTN_CAUSAL_NONE; ATTN_CAUSAL_TOP_LEFT: query i sees keys j <= i (PyTorch
                         is_causal); ATTN_CAUSAL_BOTTOM_RIGHT: j <= i + Nk - Nq (the last query sees every
                         key: KV-cache decoding, FlashAttention's convention). With bottom-right and Nq > Nk
                         the first Nq - Nk queries see no key.
       mask, mask_stride additive float mask [Nq x Nk], added to the scaled scores (-inf hides a key).
                         mask_stride.row 0 means Nk; .batch and .head 0 broadcast over batches and heads,
                         or give a per-batch / per-head mask.
       kv_len            [B] number of valid keys per batch: keys j >= kv_len[b] are masked and never read.
                         Each value in [0, Nk].
       key_padding_mask  [B x Nk] bytes, nonzero = ignore that key (PyTorch's bool key_padding_mask).
       out_lse           [B, Hq, Nq] dense: the log-sum-exp of each row of the scaled, masked scores.
       out_weights       the attention weights (PyTorch's need_weights): [B, Hq, Nq, Nk] dense, or with
       average_weights   nonzero, [B, Nq, Nk], the mean over the Hq heads (PyTorch's default
                         average_attn_weights=True). This output is Nq x Nk per head by nature.
       alloc_user        passed to ATTN_MALLOC / ATTN_FREE.
       n_threads         OpenMP threads (with -fopenmp): 0 = omp_get_max_threads(). Ignored without OpenMP.
       split_index,      split_count > 0: this call computes only slice split_index of split_count (a
       split_count       caller's thread pool runs all of them); attn_sdpa only (the multi-head functions
                         reject it). Both must satisfy 0 <= split_index < split_count.

   Multi-head attention (x, x_q, x_kv and out dense, batch first, as PyTorch's batch_first tensors):

   attn_self_forward(out, x, batch, n, mha, opt, workspace, workspace_bytes)
   attn_self_workspace_size(&bytes, batch, n, mha, opt)
       out [B, N, d_model] = (softmax(scale . Q.K^T + masks) . V) . W_o + b_o, per head, with
       Q = x.W_q + b_q, K = x.W_k + b_k, V = x.W_v + b_v; x [B, N, d_model].
   attn_cross_forward(out, x_q, x_kv, batch, n_q, n_kv, mha, opt, workspace, workspace_bytes)
   attn_cross_workspace_size(&bytes, batch, n_q, n_kv, mha, opt)
       As self, with Q from x_q [B, Nq, d_model] and K, V from x_kv [B, Nk, d_kv] (encoder-decoder
       attention; PyTorch's kdim = vdim = d_kv).
   attn_mha fields: d_model; n_heads (d_model % n_heads == 0, head_dim = d_model / n_heads); n_kv_heads
       (0 = n_heads; n_heads % n_kv_heads == 0); d_kv (cross only, 0 = d_model; self needs 0 or d_model);
       layout (of all four weights, as in attn_project); w_q [d_model x d_model], w_k and w_v
       [d_kv x n_kv_heads*head_dim], w_o [d_model x d_model] (shapes for ATTN_LAYOUT_IN_OUT; transposed for
       ATTN_LAYOUT_OUT_IN, e.g. PyTorch's in_proj_weight, in_proj_weight + E*E, + 2*E*E, out_proj.weight);
       b_q, b_o [d_model], b_k, b_v [n_kv_heads*head_dim], each optional.
       The options of attn_sdpa apply per head; scale 0 is 1/sqrt(head_dim); out_lse is [B, Hq, Nq];
       out_weights [B, Hq, Nq, Nk] or averaged [B, Nq, Nk]. The workspace holds the projected Q, K, V and
       the attention output of one batch, plus attn_sdpa's.

   Helpers: attn_stride_bhnd(H, N, D) -> {H*N*D, N*D, D}; attn_stride_bnhd(H, N, D) -> {N*H*D, D, H*D};
   attn_result_string(r); attn_simd_name() -> "avx512", "avx2", "neon" or "scalar", the kernels in use.

   ==================================================================================================
   NUMERIC CONTRACT
   ==================================================================================================

   - float32 storage and arithmetic; the tests hold every function, on every kernel path, to a relative
     error of 1e-5 (max-norm error over the max-norm of the result) against a float64 reference. The SIMD
     exponential is a degree-6 polynomial (<= 2 ulp); paths differ from each other by rounding only.
   - Softmax subtracts the row max, so logits of any finite magnitude (1e30, or around 88.7 where expf
     overflows) are safe.
   - A row whose keys are all masked (all -inf, all padded, before the causal diagonal, kv_len 0) gives
     weights 0, output 0 and log-sum-exp -inf, never NaN.
   - +inf scores: the weight is shared equally among the +inf entries (the limit), log-sum-exp +inf.
   - NaN: a NaN score makes its whole row NaN (weights, output, log-sum-exp); other rows are unaffected.
     A masked key's value is still multiplied by 0, so a NaN in V there poisons the row, as in PyTorch;
     keys past kv_len or past the causal limit of a query tile are never read.
   - Deterministic: the same inputs give bitwise the same outputs on one machine, whatever the workspace,
     the thread count or the split.

   ==================================================================================================
   ERRORS (attn_result)
   ==================================================================================================

       ATTN_OK              0  success
       ATTN_ERR_NULL       -1  a required pointer is NULL
       ATTN_ERR_SHAPE      -2  a size is zero or negative, or two sizes disagree
       ATTN_ERR_HEADS      -3  d_model is not divisible by n_heads
       ATTN_ERR_KV_HEADS   -4  n_heads is not a multiple of n_kv_heads
       ATTN_ERR_STRIDE     -5  a row stride is smaller than its row, a stride is negative, or an
                               output's strides make two of its elements overlap
       ATTN_ERR_OVERFLOW   -6  an element or byte count does not fit in ptrdiff_t / size_t
       ATTN_ERR_OPTION     -7  an option has an invalid value (enum out of range, non-finite scale,
                               kv_len outside [0, Nk])
       ATTN_ERR_WORKSPACE  -8  the workspace is smaller than the size function reported
       ATTN_ERR_NOMEM      -9  ATTN_MALLOC returned NULL

   ==================================================================================================
   REVISION HISTORY
   ==================================================================================================

       0.2.0 (2026-11-26)  SIMD kernels (AVX-512, AVX2, NEON) with runtime dispatch; OpenMP threads,
                           splits for caller thread pools; decoding row kernel and flash-decoding key
                           chunks; attn_simd_name.
       0.1.0 (2026-11-26)  first release: building blocks, fused SDPA (masks, causal, GQA, LSE, weights),
                           multi-head self- and cross-attention, workspace, error codes.
*/

#ifndef ATTN__TEMPLATE /* the whole header, except the SIMD kernel template at its end */

#ifndef ATTENTION_H
#define ATTENTION_H

#include <stddef.h> /* size_t, ptrdiff_t */

#define ATTN_VERSION_MAJOR 0
#define ATTN_VERSION_MINOR 2
#define ATTN_VERSION_PATCH 0
#define ATTN_VERSION_STRING "0.2.0"

#ifndef ATTNDEF
#ifdef ATTN_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define ATTNDEF static __attribute__((unused))
#else
#define ATTNDEF static
#endif
#else
#define ATTNDEF extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum attn_result {
    ATTN_OK = 0,
    ATTN_ERR_NULL = -1,
    ATTN_ERR_SHAPE = -2,
    ATTN_ERR_HEADS = -3,
    ATTN_ERR_KV_HEADS = -4,
    ATTN_ERR_STRIDE = -5,
    ATTN_ERR_OVERFLOW = -6,
    ATTN_ERR_OPTION = -7,
    ATTN_ERR_WORKSPACE = -8,
    ATTN_ERR_NOMEM = -9
} attn_result;

typedef enum attn_layout {
    ATTN_LAYOUT_IN_OUT = 0, /* W [d_in x d_out]: Y = X.W */
    ATTN_LAYOUT_OUT_IN = 1  /* W [d_out x d_in] (PyTorch nn.Linear.weight): Y = X.W^T */
} attn_layout;

typedef enum attn_causal {
    ATTN_CAUSAL_NONE = 0,
    ATTN_CAUSAL_TOP_LEFT = 1,    /* query i sees keys j <= i */
    ATTN_CAUSAL_BOTTOM_RIGHT = 2 /* query i sees keys j <= i + Nk - Nq */
} attn_causal;

/* Element strides of a 4-D tensor [B, H, N, D] whose last axis is contiguous. */
typedef struct attn_stride {
    ptrdiff_t batch, head, row;
} attn_stride;

typedef struct attn_dims {
    int batch;      /* B */
    int n_heads;    /* Hq: query (and output) heads */
    int n_kv_heads; /* Hkv: key/value heads, Hq % Hkv == 0; 0 = Hq */
    int n_q;        /* Nq: queries per head */
    int n_kv;       /* Nk: keys (and values) per head */
    int d_k;        /* Dk: query and key width */
    int d_v;        /* Dv: value and output width; 0 = Dk */
} attn_dims;

typedef struct attn_options {
    float scale;                           /* 0: 1/sqrt(Dk) */
    attn_causal causal;                    /* ATTN_CAUSAL_NONE (0), _TOP_LEFT, _BOTTOM_RIGHT */
    const float *mask;                     /* additive [Nq x Nk] per (batch, head), or NULL */
    attn_stride mask_stride;               /* row 0 = Nk; batch, head 0 = broadcast */
    const int *kv_len;                     /* [B] valid keys per batch, or NULL */
    const unsigned char *key_padding_mask; /* [B x Nk], nonzero = ignore the key, or NULL */
    float *out_lse;                        /* [B, Hq, Nq] log-sum-exp out, or NULL */
    float *out_weights;                    /* [B, Hq, Nq, Nk] (or [B, Nq, Nk] averaged) out, or NULL */
    int average_weights;                   /* nonzero: out_weights is the mean over heads */
    void *alloc_user;                      /* user pointer for ATTN_MALLOC / ATTN_FREE */
    int n_threads;                         /* OpenMP threads (with -fopenmp): 0 = omp_get_max_threads() */
    int split_index, split_count;          /* split_count > 0: run only slice split_index of the work */
} attn_options;

typedef struct attn_mha {
    int d_model;        /* width of x_q and out; n_heads * head_dim */
    int n_heads;        /* query heads */
    int n_kv_heads;     /* key/value heads; 0 = n_heads */
    int d_kv;           /* width of x_kv (cross-attention); 0 = d_model */
    attn_layout layout; /* orientation of w_q, w_k, w_v, w_o */
    const float *w_q;   /* [d_model x d_model] */
    const float *w_k;   /* [d_kv x n_kv_heads*head_dim] */
    const float *w_v;   /* [d_kv x n_kv_heads*head_dim] */
    const float *w_o;   /* [d_model x d_model] */
    const float *b_q;   /* [d_model] or NULL */
    const float *b_k;   /* [n_kv_heads*head_dim] or NULL */
    const float *b_v;   /* [n_kv_heads*head_dim] or NULL */
    const float *b_o;   /* [d_model] or NULL */
} attn_mha;

ATTNDEF const char *attn_result_string(attn_result r);
ATTNDEF const char *attn_simd_name(void);

ATTNDEF attn_stride attn_stride_bhnd(int n_heads, int n, int d);
ATTNDEF attn_stride attn_stride_bnhd(int n_heads, int n, int d);

ATTNDEF attn_result attn_project(float *y, ptrdiff_t y_stride, const float *x, ptrdiff_t x_stride,
                                 const float *w, ptrdiff_t w_stride, attn_layout layout, const float *bias,
                                 int n, int d_in, int d_out);

ATTNDEF attn_result attn_scores(float *s, ptrdiff_t s_stride, const float *q, ptrdiff_t q_stride,
                                const float *k, ptrdiff_t k_stride, int n_q, int n_k, int d_k, float scale);

ATTNDEF attn_result attn_softmax(float *p, ptrdiff_t p_stride, const float *s, ptrdiff_t s_stride,
                                 int n_rows, int n_cols, float *lse);

ATTNDEF attn_result attn_weighted_sum(float *o, ptrdiff_t o_stride, const float *p, ptrdiff_t p_stride,
                                      const float *v, ptrdiff_t v_stride, int n_q, int n_k, int d_v);

ATTNDEF attn_result attn_merge(float *o, ptrdiff_t o_stride, float *lse, const float *o_a,
                               ptrdiff_t o_a_stride, const float *lse_a, const float *o_b,
                               ptrdiff_t o_b_stride, const float *lse_b, int n_rows, int d_v);

ATTNDEF attn_result attn_sdpa_workspace_size(size_t *bytes, const attn_dims *dims, const attn_options *opt);
ATTNDEF attn_result attn_sdpa(float *out, attn_stride out_s, const float *q, attn_stride q_s, const float *k,
                              attn_stride k_s, const float *v, attn_stride v_s, const attn_dims *dims,
                              const attn_options *opt, void *workspace, size_t workspace_bytes);

ATTNDEF attn_result attn_self_workspace_size(size_t *bytes, int batch, int n, const attn_mha *mha,
                                             const attn_options *opt);
ATTNDEF attn_result attn_self_forward(float *out, const float *x, int batch, int n, const attn_mha *mha,
                                      const attn_options *opt, void *workspace, size_t workspace_bytes);

ATTNDEF attn_result attn_cross_workspace_size(size_t *bytes, int batch, int n_q, int n_kv,
                                              const attn_mha *mha, const attn_options *opt);
ATTNDEF attn_result attn_cross_forward(float *out, const float *x_q, const float *x_kv, int batch, int n_q,
                                       int n_kv, const attn_mha *mha, const attn_options *opt,
                                       void *workspace, size_t workspace_bytes);

#ifdef __cplusplus
}
#endif

#endif /* ATTENTION_H */

/* ============================================================================================== */
/*                                        IMPLEMENTATION                                          */
/* ============================================================================================== */

#if defined(ATTENTION_IMPLEMENTATION) && !defined(ATTN__IMPLEMENTATION_DONE)
#define ATTN__IMPLEMENTATION_DONE

#include <math.h>   /* expf, logf, sqrtf, INFINITY */
#include <limits.h> /* INT_MAX */
#include <stdint.h> /* SIZE_MAX, PTRDIFF_MAX, uintptr_t */
#include <string.h> /* memset */
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef ATTN_ASSERT
#include <assert.h>
#define ATTN_ASSERT(x) assert(x)
#endif

#if defined(ATTN_MALLOC) != defined(ATTN_FREE)
#error "attention.h: define both ATTN_MALLOC and ATTN_FREE, or neither"
#endif
#ifndef ATTN_MALLOC
#include <stdlib.h>
#define ATTN_MALLOC(size, user) ((void)(user), malloc(size))
#define ATTN_FREE(ptr, user) ((void)(user), free(ptr))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
static const attn_options attn__default_options = {}; /* all zero: every default */
#else
static const attn_options attn__default_options = {0};
#endif

/* Tile sizes of the fused kernel: ATTN__TQ queries against ATTN__TK keys at a time. */
#define ATTN__TQ 32
#define ATTN__TK 64
/* Tiles of at most ATTN__ROW_MAX queries (decoding) take the SIMD row kernel; when such a call has more
   than ATTN__KEY_CHUNK keys, the keys are cut into chunks of that size, each a separate work item, and
   the partial results merged through their log-sum-exps in key order (flash-decoding). */
#define ATTN__ROW_MAX 8
#define ATTN__KEY_CHUNK 2048
/* Alignment of the arrays carved from a workspace, and the slack reserved to reach it. */
#define ATTN__ALIGN 64
/* Largest element count an array may have: its byte count and every offset fit in ptrdiff_t. */
#define ATTN__MAX_ELEMS ((size_t)PTRDIFF_MAX / sizeof(float))

ATTNDEF const char *attn_result_string(attn_result r)
{
    switch (r) {
    case ATTN_OK: return "success";
    case ATTN_ERR_NULL: return "a required pointer is NULL";
    case ATTN_ERR_SHAPE: return "a size is zero or negative, or two sizes disagree";
    case ATTN_ERR_HEADS: return "d_model is not divisible by n_heads";
    case ATTN_ERR_KV_HEADS: return "n_heads is not a multiple of n_kv_heads";
    case ATTN_ERR_STRIDE: return "a stride is smaller than its row, negative, or makes an output overlap itself";
    case ATTN_ERR_OVERFLOW: return "an element or byte count overflows";
    case ATTN_ERR_OPTION: return "an option has an invalid value";
    case ATTN_ERR_WORKSPACE: return "the workspace is smaller than the size function reported";
    case ATTN_ERR_NOMEM: return "out of memory";
    }
    return "unknown attn_result";
}

/* ---------------------------------------------------------------------------------------------- */
/* Size arithmetic: every count is checked before use, never wrapped.                             */
/* ---------------------------------------------------------------------------------------------- */

/* *r = a * b; returns 0 when the product exceeds ATTN__MAX_ELEMS. */
static int attn__mul(size_t *r, size_t a, size_t b)
{
    if (b != 0 && a > ATTN__MAX_ELEMS / b) return 0;
    *r = a * b;
    return 1;
}

/* *r = a + b; returns 0 when the sum exceeds ATTN__MAX_ELEMS. */
static int attn__add(size_t *r, size_t a, size_t b)
{
    if (a > ATTN__MAX_ELEMS || b > ATTN__MAX_ELEMS - a) return 0;
    *r = a + b;
    return 1;
}

/* Product of up to three non-negative ints, saturating at PTRDIFF_MAX (used for stride helpers, where a
   saturated stride is then rejected as ATTN_ERR_OVERFLOW by the validation of the call that uses it). */
static ptrdiff_t attn__mul3_sat(int a, int b, int c)
{
    size_t r;
    if (a < 0 || b < 0 || c < 0) return -1;
    if (!attn__mul(&r, (size_t)a, (size_t)b) || !attn__mul(&r, r, (size_t)c)) return PTRDIFF_MAX;
    return (ptrdiff_t)r;
}

ATTNDEF attn_stride attn_stride_bhnd(int n_heads, int n, int d)
{
    attn_stride s;
    s.batch = attn__mul3_sat(n_heads, n, d);
    s.head = attn__mul3_sat(n, d, 1);
    s.row = d;
    return s;
}

ATTNDEF attn_stride attn_stride_bnhd(int n_heads, int n, int d)
{
    attn_stride s;
    s.batch = attn__mul3_sat(n, n_heads, d);
    s.head = d;
    s.row = attn__mul3_sat(n_heads, d, 1);
    return s;
}

/* Validates the strides of a view [nb, nh, nr, nc] (sizes already checked positive): the row stride holds
   a row, no stride is negative, the highest offset fits, and for an output no two elements share memory
   (sorted by stride, each axis's stride covers the span of the axes inside it). */
static attn_result attn__check_view(attn_stride s, int nb, int nh, int nr, int nc, int is_output)
{
    ptrdiff_t ext[4], str[4];
    size_t span = 1;
    int i, n = 0;
    if (s.row < nc || s.batch < 0 || s.head < 0) return ATTN_ERR_STRIDE;
    ext[0] = nc; str[0] = 1;
    ext[1] = nr; str[1] = s.row;
    ext[2] = nh; str[2] = s.head;
    ext[3] = nb; str[3] = s.batch;
    for (i = 0; i < 4; ++i) {
        size_t term;
        if (!attn__mul(&term, (size_t)(ext[i] - 1), (size_t)str[i]) || !attn__add(&span, span, term))
            return ATTN_ERR_OVERFLOW;
    }
    if (is_output) {
        /* keep the axes of extent > 1, insertion-sorted by stride */
        ptrdiff_t e[4], t[4];
        size_t covered = 1;
        for (i = 0; i < 4; ++i) {
            int j;
            if (ext[i] <= 1) continue;
            for (j = n; j > 0 && t[j - 1] > str[i]; --j) { e[j] = e[j - 1]; t[j] = t[j - 1]; }
            e[j] = ext[i]; t[j] = str[i];
            ++n;
        }
        for (i = 0; i < n; ++i) {
            if ((size_t)t[i] < covered) return ATTN_ERR_STRIDE;
            covered += (size_t)(e[i] - 1) * (size_t)t[i]; /* <= span: no overflow */
        }
    }
    return ATTN_OK;
}

/* A plain matrix [rows x cols] with row stride `stride`, as a view. */
static attn_result attn__check_matrix(ptrdiff_t stride, int rows, int cols, int is_output)
{
    attn_stride s;
    s.batch = 0; s.head = 0; s.row = stride;
    return attn__check_view(s, 1, 1, rows, cols, is_output);
}

/* ---------------------------------------------------------------------------------------------- */
/* Kernels                                                                                        */
/* ---------------------------------------------------------------------------------------------- */

/* Dot product of a[n] and b[n] with eight partial sums (a fixed order, so results are reproducible). */
static float attn__dot(const float *a, const float *b, int n)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0, l;
    for (; i + 8 <= n; i += 8)
        for (l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
    for (l = 0; i < n; ++i, ++l) acc[l] += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* c[m x n] = alpha * a[m x k] . b[n x k]^T (+ c when accumulate). c is not read when !accumulate. */
static void attn__gemm_nt(float *c, ptrdiff_t ldc, const float *a, ptrdiff_t lda, const float *b,
                          ptrdiff_t ldb, int m, int n, int k, float alpha, int accumulate)
{
    int i, j;
    for (i = 0; i < m; ++i) {
        const float *a_i = a + (ptrdiff_t)i * lda;
        float *c_i = c + (ptrdiff_t)i * ldc;
        for (j = 0; j < n; ++j) {
            float dot = alpha * attn__dot(a_i, b + (ptrdiff_t)j * ldb, k);
            c_i[j] = accumulate ? c_i[j] + dot : dot;
        }
    }
}

/* c[m x n] = a[m x k] . b[k x n] (+ c when accumulate). c is not read when !accumulate. */
static void attn__gemm_nn(float *c, ptrdiff_t ldc, const float *a, ptrdiff_t lda, const float *b,
                          ptrdiff_t ldb, int m, int n, int k, int accumulate)
{
    int i, j, p;
    for (i = 0; i < m; ++i) {
        const float *a_i = a + (ptrdiff_t)i * lda;
        float *c_i = c + (ptrdiff_t)i * ldc;
        if (!accumulate)
            for (j = 0; j < n; ++j) c_i[j] = 0.0f;
        for (p = 0; p < k; ++p) {
            const float a_ip = a_i[p];
            const float *b_p = b + (ptrdiff_t)p * ldb;
            for (j = 0; j < n; ++j) c_i[j] += a_ip * b_p[j];
        }
    }
}

/* Largest of s[n], ignoring NaN; -inf when every entry is -inf or NaN. */
static float attn__row_max(const float *s, int n)
{
    float m = -INFINITY;
    int j;
    for (j = 0; j < n; ++j) m = s[j] > m ? s[j] : m;
    return m;
}

/* p[j] = exp(s[j] - m) for a row whose max (or a running max at least as large) is m; returns the sum.
   m = -inf (every entry masked) gives zeros; m = +inf gives 1 at the +inf entries and 0 elsewhere (the
   limit); NaN entries stay NaN. p may be s. */
static float attn__exp_row(float *p, const float *s, int n, float m)
{
    float sum = 0.0f;
    int j;
    if (m == INFINITY) {
        for (j = 0; j < n; ++j) {
            const float x = s[j];
            p[j] = x == INFINITY ? 1.0f : (x != x ? x : 0.0f);
            sum += p[j];
        }
        return sum;
    }
    if (m == -INFINITY) m = 0.0f;
    for (j = 0; j < n; ++j) {
        p[j] = expf(s[j] - m);
        sum += p[j];
    }
    return sum;
}

/* 1/sum for a softmax denominator: 0 for a fully masked row (sum 0), NaN stays NaN. */
static float attn__inv_sum(float sum)
{
    return sum == 0.0f ? 0.0f : 1.0f / sum;
}

/* log-sum-exp of a row from its max m and sum of exp(s - m): -inf when fully masked. */
static float attn__lse(float m, float sum)
{
    if (sum == 0.0f) return -INFINITY;
    return m == -INFINITY ? logf(sum) : m + logf(sum);
}

/* ---------------------------------------------------------------------------------------------- */
/* Fused attention: the portable kernel                                                           */
/* ---------------------------------------------------------------------------------------------- */

/* One (batch, query head) problem of the fused kernel, as views of the caller's tensors. */
typedef struct attn__head {
    float *out; ptrdiff_t out_rs;         /* [Nq x Dv] */
    const float *q; ptrdiff_t q_rs;       /* [Nq x Dk] */
    const float *k; ptrdiff_t k_rs;       /* [Nk x Dk] */
    const float *v; ptrdiff_t v_rs;       /* [Nk x Dv] */
    const float *mask; ptrdiff_t mask_rs; /* [Nq x Nk] additive, or NULL */
    const unsigned char *kpm;             /* [Nk] nonzero = masked, or NULL */
    float *lse;                           /* [Nq], or NULL */
    float *w;                             /* [Nq x Nk] weights, or NULL */
    int w_accumulate;                     /* add into w (head averaging) instead of writing */
    int nq, nk, dk, dv;
    int n_valid;                          /* keys >= n_valid are masked and never read */
    int k_lo;                             /* keys < k_lo are left out (a key split's later parts) */
    int causal;                           /* key j visible from query i iff j <= i + diag */
    ptrdiff_t diag;
    float scale;
} attn__head;

/* Floats of one thread's fused-kernel workspace, enough for every instruction set (the SIMD kernels hold
   Q^T [Dk x TQ], scores [TK x TQ], O^T [Dv x TQ] and four [TQ] vectors; the scalar one less), rounded up
   to whole ATTN__ALIGN blocks so that each thread's slice stays aligned. The kernels index it with int
   (c * TQ + i), so it must stay below INT_MAX floats: Dk + Dv up to about 2^26. */
static int attn__sdpa_ws_floats(size_t *n, int d_k, int d_v)
{
    size_t dims;
    if (!attn__add(&dims, (size_t)d_k, (size_t)d_v) || !attn__add(&dims, dims, ATTN__TK + 4) ||
        !attn__mul(n, dims, ATTN__TQ) || *n > (size_t)INT_MAX)
        return 0;
    return 1; /* TQ floats are a whole number of ATTN__ALIGN blocks */
}

/* s[tq x TK] = scale * Q[i0 .. i0+tq) . K[j0 .. j0+tk)^T with every mask applied (-inf = hidden). */
static void attn__score_tile(float *s, const attn__head *h, int i0, int tq, int j0, int tk)
{
    int r, c;
    attn__gemm_nt(s, ATTN__TK, h->q + (ptrdiff_t)i0 * h->q_rs, h->q_rs, h->k + (ptrdiff_t)j0 * h->k_rs,
                  h->k_rs, tq, tk, h->dk, h->scale, 0);
    for (r = 0; r < tq; ++r) {
        float *s_r = s + r * ATTN__TK;
        if (h->mask) {
            const float *m_r = h->mask + (ptrdiff_t)(i0 + r) * h->mask_rs + j0;
            for (c = 0; c < tk; ++c) s_r[c] += m_r[c];
        }
        if (h->kpm)
            for (c = 0; c < tk; ++c) s_r[c] = h->kpm[j0 + c] ? -INFINITY : s_r[c];
        if (h->causal) {
            /* visible: j0 + c <= i0 + r + diag */
            ptrdiff_t lim = (ptrdiff_t)(i0 + r) + h->diag - j0 + 1;
            for (c = lim < 0 ? 0 : (int)(lim < tk ? lim : tk); c < tk; ++c) s_r[c] = -INFINITY;
        }
    }
}

/* Keys [0, end) that any query of the tile [i0, i0 + tq) may see. */
static int attn__key_end(const attn__head *h, int i0, int tq)
{
    ptrdiff_t end = h->n_valid;
    if (h->causal) {
        ptrdiff_t last = (ptrdiff_t)(i0 + tq - 1) + h->diag + 1;
        if (last < end) end = last;
    }
    return end < 0 ? 0 : (int)end;
}

/* The portable fused kernel (and the reference for the SIMD ones) for one query tile [i0, i0 + TQ):
   walk the visible key tiles with an online softmax (running max m and sum l per row, the accumulator
   rescaled when the max grows), then normalise. */
static void attn__tile_forward_scalar(const attn__head *h, int i0, float *ws)
{
    const int tq = h->nq - i0 < ATTN__TQ ? h->nq - i0 : ATTN__TQ;
    const int key_end = attn__key_end(h, i0, tq);
    float *s = ws;                                 /* [TQ x TK] scores, then probabilities */
    float *m = s + ATTN__TQ * ATTN__TK;            /* [TQ] running max */
    float *l = m + ATTN__TQ;                       /* [TQ] running sum */
    float *acc = l + ATTN__TQ;                     /* [TQ x Dv] unnormalised output */
    int j0, r, c;
    for (r = 0; r < tq; ++r) { m[r] = -INFINITY; l[r] = 0.0f; }
    memset(acc, 0, sizeof(float) * (size_t)tq * (size_t)h->dv);
    /* pass 1: online softmax over the key tiles that any query of this tile may see */
    for (j0 = h->k_lo; j0 < key_end; j0 += ATTN__TK) {
        const int tk = key_end - j0 < ATTN__TK ? key_end - j0 : ATTN__TK;
        attn__score_tile(s, h, i0, tq, j0, tk);
        for (r = 0; r < tq; ++r) {
            float *s_r = s + r * ATTN__TK;
            float *acc_r = acc + (ptrdiff_t)r * h->dv;
            const float m_tile = attn__row_max(s_r, tk);
            const float m_new = m_tile > m[r] ? m_tile : m[r];
            const float alpha = m_new == m[r] ? 1.0f : expf(m[r] - m_new);
            const float sum = attn__exp_row(s_r, s_r, tk, m_new);
            l[r] = l[r] * alpha + sum;
            m[r] = m_new;
            if (alpha != 1.0f)
                for (c = 0; c < h->dv; ++c) acc_r[c] *= alpha;
        }
        attn__gemm_nn(acc, h->dv, s, ATTN__TK, h->v + (ptrdiff_t)j0 * h->v_rs, h->v_rs, tq, h->dv, tk, 1);
    }
    /* pass 2 (only when asked): the normalised weights, recomputing each score tile */
    if (h->w) {
        for (j0 = 0; j0 < h->nk; j0 += ATTN__TK) {
            const int tk = h->nk - j0 < ATTN__TK ? h->nk - j0 : ATTN__TK;
            const int tv = key_end - j0 < 0 ? 0 : (key_end - j0 < tk ? key_end - j0 : tk);
            if (tv > 0) attn__score_tile(s, h, i0, tq, j0, tv);
            for (r = 0; r < tq; ++r) {
                float *s_r = s + r * ATTN__TK;
                float *w_r = h->w + (ptrdiff_t)(i0 + r) * h->nk + j0;
                const float inv = attn__inv_sum(l[r]);
                attn__exp_row(s_r, s_r, tv, m[r]);
                for (c = tv; c < tk; ++c) s_r[c] = 0.0f; /* never visible to this tile */
                if (h->w_accumulate) for (c = 0; c < tk; ++c) w_r[c] += s_r[c] * inv;
                else for (c = 0; c < tk; ++c) w_r[c] = s_r[c] * inv;
            }
        }
    }
    for (r = 0; r < tq; ++r) {
        const float inv = attn__inv_sum(l[r]);
        const float *acc_r = acc + (ptrdiff_t)r * h->dv;
        float *o_r = h->out + (ptrdiff_t)(i0 + r) * h->out_rs;
        for (c = 0; c < h->dv; ++c) o_r[c] = acc_r[c] * inv;
        if (h->lse) h->lse[i0 + r] = attn__lse(m[r], l[r]);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* SIMD selection (the one place): the kernel template instantiated per instruction set           */
/* ---------------------------------------------------------------------------------------------- */

/* x86-64 with gcc or clang: AVX-512 and AVX2+FMA kernels are compiled with target attributes, so a
   binary built without -march still runs them, and chosen at each call from the CPU's features
   (__builtin_cpu_supports: no state of ours). aarch64: NEON, always present. Elsewhere, or with
   ATTN_NO_SIMD: the portable scalar kernels, which are also the reference the tests hold the others to.
   ATTN_NO_AVX512 caps x86 at AVX2 (the test suite builds once per path with these macros). */
#define ATTN__LOG2E 1.44269504088896341f
#define ATTN__LN2 0.69314718055994531f

#if !defined(ATTN_NO_SIMD) && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ATTN__HAVE_X86 1
#include <immintrin.h>
#endif
#if !defined(ATTN_NO_SIMD) && defined(__aarch64__) && defined(__ARM_NEON)
#define ATTN__HAVE_NEON 1
#include <arm_neon.h>
#endif

#ifndef ATTN_HEADER_FILE
#define ATTN_HEADER_FILE "attention.h" /* this file's name, for the self-includes below */
#endif

#define ATTN__VLOAD(p) ATTN__P(loadu_ps)(p)
#define ATTN__VSTORE(p, v) ATTN__P(storeu_ps)(p, v)
#define ATTN__VSET1(x) ATTN__P(set1_ps)(x)
#define ATTN__VZERO ATTN__P(setzero_ps)()
#define ATTN__VADD(a, b) ATTN__P(add_ps)(a, b)
#define ATTN__VSUB(a, b) ATTN__P(sub_ps)(a, b)
#define ATTN__VMUL(a, b) ATTN__P(mul_ps)(a, b)
#define ATTN__VFMA(a, b, c) ATTN__P(fmadd_ps)(a, b, c)
#define ATTN__VMAX(a, b) ATTN__P(max_ps)(a, b)

#ifdef ATTN__HAVE_X86
#ifndef ATTN_NO_AVX512
#define ATTN__TEMPLATE 1
#define ATTN__SFX(name) name##_avx512
#define ATTN__TARGET __attribute__((target("avx512f,fma")))
#define ATTN__P(op) _mm512_##op
#define ATTN__V __m512
#define ATTN__W 16
#define ATTN__EXP2_LO -200.0f /* scalef flushes 2^-200 to exactly 0 */
#define ATTN__VROUND(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define ATTN__VLDEXP(p, n) _mm512_scalef_ps(p, n)
#define ATTN__M __mmask16
#define ATTN__VEQ(a, b) _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ)
#define ATTN__VBLEND(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define ATTN__VANY(m) ((m) != 0)
#define ATTN__PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#if defined(__GNUC__) && !defined(__clang__) /* gcc 12's _mm512_undefined_ps trips a false   */
#pragma GCC diagnostic push                   /* -Wmaybe-uninitialized in C++ (gcc bug 105593) */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include ATTN_HEADER_FILE
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#undef ATTN__TEMPLATE
#undef ATTN__SFX
#undef ATTN__TARGET
#undef ATTN__P
#undef ATTN__V
#undef ATTN__W
#undef ATTN__EXP2_LO
#undef ATTN__VROUND
#undef ATTN__VLDEXP
#undef ATTN__M
#undef ATTN__VEQ
#undef ATTN__VBLEND
#undef ATTN__VANY
#undef ATTN__PREFETCH
#endif
#define ATTN__TEMPLATE 1
#define ATTN__SFX(name) name##_avx2
#define ATTN__TARGET __attribute__((target("avx2,fma")))
#define ATTN__P(op) _mm256_##op
#define ATTN__V __m256
#define ATTN__W 8
#define ATTN__EXP2_LO -127.0f /* 2^-127 built from exponent bits 0: exactly 0 */
#define ATTN__VROUND(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define ATTN__VLDEXP(p, n) _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23)))
#define ATTN__M __m256
#define ATTN__VEQ(a, b) _mm256_cmp_ps(a, b, _CMP_EQ_OQ)
#define ATTN__VBLEND(m, a, b) _mm256_blendv_ps(a, b, m)
#define ATTN__VANY(m) (_mm256_movemask_ps(m) != 0)
#define ATTN__PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#include ATTN_HEADER_FILE
#undef ATTN__TEMPLATE
#undef ATTN__SFX
#undef ATTN__TARGET
#undef ATTN__P
#undef ATTN__V
#undef ATTN__W
#undef ATTN__EXP2_LO
#undef ATTN__VROUND
#undef ATTN__VLDEXP
#undef ATTN__M
#undef ATTN__VEQ
#undef ATTN__VBLEND
#undef ATTN__VANY
#undef ATTN__PREFETCH
#endif /* ATTN__HAVE_X86 */

#ifdef ATTN__HAVE_NEON
#define ATTN__TEMPLATE 1
#define ATTN__SFX(name) name##_neon
#define ATTN__TARGET
#define ATTN__V float32x4_t
#define ATTN__W 4
#define ATTN__EXP2_LO -127.0f
#undef ATTN__VLOAD
#undef ATTN__VSTORE
#undef ATTN__VSET1
#undef ATTN__VZERO
#undef ATTN__VADD
#undef ATTN__VSUB
#undef ATTN__VMUL
#undef ATTN__VFMA
#undef ATTN__VMAX
#define ATTN__VLOAD(p) vld1q_f32(p)
#define ATTN__VSTORE(p, v) vst1q_f32(p, v)
#define ATTN__VSET1(x) vdupq_n_f32(x)
#define ATTN__VZERO vdupq_n_f32(0.0f)
#define ATTN__VADD(a, b) vaddq_f32(a, b)
#define ATTN__VSUB(a, b) vsubq_f32(a, b)
#define ATTN__VMUL(a, b) vmulq_f32(a, b)
#define ATTN__VFMA(a, b, c) vfmaq_f32(c, a, b)
/* x86 semantics: a > b ? a : b, so a NaN in a yields b and a NaN in b yields b */
#define ATTN__VMAX(a, b) vbslq_f32(vcgtq_f32(a, b), a, b)
#define ATTN__VROUND(x) vrndnq_f32(x)
#define ATTN__VLDEXP(p, n) vmulq_f32(p, vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23)))
#define ATTN__M uint32x4_t
#define ATTN__VEQ(a, b) vceqq_f32(a, b)
#define ATTN__VBLEND(m, a, b) vbslq_f32(m, b, a)
#define ATTN__VANY(m) (vmaxvq_u32(m) != 0)
#define ATTN__PREFETCH(p) __builtin_prefetch(p)
#include ATTN_HEADER_FILE
#undef ATTN__TEMPLATE
#endif /* ATTN__HAVE_NEON */

/* Instruction sets, best last. */
enum { ATTN__ISA_SCALAR = 0, ATTN__ISA_NEON, ATTN__ISA_AVX2, ATTN__ISA_AVX512 };

/* The instruction set this call runs on. */
static int attn__isa(void)
{
#if defined(ATTN__HAVE_X86)
#ifndef ATTN_NO_AVX512
    if (__builtin_cpu_supports("avx512f")) return ATTN__ISA_AVX512;
#endif
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ATTN__ISA_AVX2;
    return ATTN__ISA_SCALAR;
#elif defined(ATTN__HAVE_NEON)
    return ATTN__ISA_NEON;
#else
    return ATTN__ISA_SCALAR;
#endif
}

ATTNDEF const char *attn_simd_name(void)
{
    switch (attn__isa()) {
    case ATTN__ISA_AVX512: return "avx512";
    case ATTN__ISA_AVX2: return "avx2";
    case ATTN__ISA_NEON: return "neon";
    default: return "scalar";
    }
}

/* c[m x n] (+)= a[m x k] . op(b), op(b) = b [k x n] or, with b_trans, b^T for b [n x k]. */
static void attn__matmul(float *c, ptrdiff_t ldc, const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb,
                         int b_trans, int m, int n, int k, int accumulate)
{
    switch (attn__isa()) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
    case ATTN__ISA_AVX512: attn__gemm_avx512(c, ldc, a, lda, b, ldb, b_trans, m, n, k, accumulate); return;
#endif
#if defined(ATTN__HAVE_X86)
    case ATTN__ISA_AVX2: attn__gemm_avx2(c, ldc, a, lda, b, ldb, b_trans, m, n, k, accumulate); return;
#endif
#if defined(ATTN__HAVE_NEON)
    case ATTN__ISA_NEON: attn__gemm_neon(c, ldc, a, lda, b, ldb, b_trans, m, n, k, accumulate); return;
#endif
    default:
        if (b_trans) attn__gemm_nt(c, ldc, a, lda, b, ldb, m, n, k, 1.0f, accumulate);
        else attn__gemm_nn(c, ldc, a, lda, b, ldb, m, n, k, accumulate);
    }
}

/* The fused kernel for one query tile, on the instruction set of this call. */
typedef void (*attn__tile_fn)(const attn__head *h, int i0, float *ws);
static attn__tile_fn attn__tile_kernel(void)
{
    switch (attn__isa()) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
    case ATTN__ISA_AVX512: return attn__tile_forward_avx512;
#endif
#if defined(ATTN__HAVE_X86)
    case ATTN__ISA_AVX2: return attn__tile_forward_avx2;
#endif
#if defined(ATTN__HAVE_NEON)
    case ATTN__ISA_NEON: return attn__tile_forward_neon;
#endif
    default: return attn__tile_forward_scalar;
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Building blocks                                                                                */
/* ---------------------------------------------------------------------------------------------- */

/* y[n x d_out] = x[n x d_in] . W + bias, validated, on `threads` threads: blocks of 64 output columns
   (every row and column gets the same arithmetic whatever the threads). */
static void attn__project(float *y, ptrdiff_t y_stride, const float *x, ptrdiff_t x_stride, const float *w,
                          ptrdiff_t w_stride, attn_layout layout, const float *bias, int n, int d_in, int d_out,
                          int threads)
{
    const int cols = 64, n_blocks = 1 + (d_out - 1) / cols, out_in = layout == ATTN_LAYOUT_OUT_IN;
    int blk;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && n_blocks > 1)
#endif
    for (blk = 0; blk < n_blocks; ++blk) {
        const int j0 = blk * cols, nc = d_out - j0 < cols ? d_out - j0 : cols;
        int i, j;
        if (bias)
            for (i = 0; i < n; ++i)
                for (j = 0; j < nc; ++j) y[(ptrdiff_t)i * y_stride + j0 + j] = bias[j0 + j];
        attn__matmul(y + j0, y_stride, x, x_stride, out_in ? w + (ptrdiff_t)j0 * w_stride : w + j0, w_stride, out_in,
                     n, nc, d_in, bias != NULL);
    }
}

ATTNDEF attn_result attn_project(float *y, ptrdiff_t y_stride, const float *x, ptrdiff_t x_stride,
                                 const float *w, ptrdiff_t w_stride, attn_layout layout, const float *bias,
                                 int n, int d_in, int d_out)
{
    attn_result r;
    if (!y || !x || !w) return ATTN_ERR_NULL;
    if (n <= 0 || d_in <= 0 || d_out <= 0) return ATTN_ERR_SHAPE;
    if (layout != ATTN_LAYOUT_IN_OUT && layout != ATTN_LAYOUT_OUT_IN) return ATTN_ERR_OPTION;
    if ((r = attn__check_matrix(y_stride, n, d_out, 1)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(x_stride, n, d_in, 0)) != ATTN_OK) return r;
    if (layout == ATTN_LAYOUT_IN_OUT) r = attn__check_matrix(w_stride, d_in, d_out, 0);
    else r = attn__check_matrix(w_stride, d_out, d_in, 0);
    if (r != ATTN_OK) return r;
#ifdef _OPENMP
    attn__project(y, y_stride, x, x_stride, w, w_stride, layout, bias, n, d_in, d_out, omp_get_max_threads());
#else
    attn__project(y, y_stride, x, x_stride, w, w_stride, layout, bias, n, d_in, d_out, 1);
#endif
    return ATTN_OK;
}

/* The scale in force: the caller's, or 1/sqrt(d_k) for 0. */
static float attn__scale(float scale, int d_k)
{
    return scale != 0.0f ? scale : (float)(1.0 / sqrt((double)d_k));
}

ATTNDEF attn_result attn_scores(float *s, ptrdiff_t s_stride, const float *q, ptrdiff_t q_stride,
                                const float *k, ptrdiff_t k_stride, int n_q, int n_k, int d_k, float scale)
{
    attn_result r;
    int i, j;
    if (!s || !q || !k) return ATTN_ERR_NULL;
    if (n_q <= 0 || n_k <= 0 || d_k <= 0) return ATTN_ERR_SHAPE;
    if (!isfinite(scale)) return ATTN_ERR_OPTION;
    if ((r = attn__check_matrix(s_stride, n_q, n_k, 1)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(q_stride, n_q, d_k, 0)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(k_stride, n_k, d_k, 0)) != ATTN_OK) return r;
    attn__matmul(s, s_stride, q, q_stride, k, k_stride, 1, n_q, n_k, d_k, 0);
    scale = attn__scale(scale, d_k);
    for (i = 0; i < n_q; ++i)
        for (j = 0; j < n_k; ++j) s[(ptrdiff_t)i * s_stride + j] *= scale;
    return ATTN_OK;
}

ATTNDEF attn_result attn_softmax(float *p, ptrdiff_t p_stride, const float *s, ptrdiff_t s_stride,
                                 int n_rows, int n_cols, float *lse)
{
    attn_result r;
    int i, j;
    if (!p || !s) return ATTN_ERR_NULL;
    if (n_rows <= 0 || n_cols <= 0) return ATTN_ERR_SHAPE;
    if ((r = attn__check_matrix(p_stride, n_rows, n_cols, 1)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(s_stride, n_rows, n_cols, 0)) != ATTN_OK) return r;
    for (i = 0; i < n_rows; ++i) {
        const float *s_i = s + (ptrdiff_t)i * s_stride;
        float *p_i = p + (ptrdiff_t)i * p_stride;
        const float m = attn__row_max(s_i, n_cols);
        const float sum = attn__exp_row(p_i, s_i, n_cols, m);
        const float inv = attn__inv_sum(sum);
        for (j = 0; j < n_cols; ++j) p_i[j] *= inv;
        if (lse) lse[i] = attn__lse(m, sum);
    }
    return ATTN_OK;
}

ATTNDEF attn_result attn_weighted_sum(float *o, ptrdiff_t o_stride, const float *p, ptrdiff_t p_stride,
                                      const float *v, ptrdiff_t v_stride, int n_q, int n_k, int d_v)
{
    attn_result r;
    if (!o || !p || !v) return ATTN_ERR_NULL;
    if (n_q <= 0 || n_k <= 0 || d_v <= 0) return ATTN_ERR_SHAPE;
    if ((r = attn__check_matrix(o_stride, n_q, d_v, 1)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(p_stride, n_q, n_k, 0)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(v_stride, n_k, d_v, 0)) != ATTN_OK) return r;
    attn__matmul(o, o_stride, p, p_stride, v, v_stride, 0, n_q, d_v, n_k, 0);
    return ATTN_OK;
}

/* One row of attn_merge: o[d_v] and *lse from (o_a, la) and (o_b, lb); o may be o_a or o_b. */
static void attn__merge_row(float *o, float *lse, const float *o_a, float la, const float *o_b, float lb, int d_v)
{
    const float m = la > lb ? la : lb; /* a NaN side loses here but poisons wa or wb below */
    float wa, wb, inv;
    int j;
    if (m == -INFINITY && la == la && lb == lb) { /* neither side saw a key */
        for (j = 0; j < d_v; ++j) o[j] = 0.0f;
        if (lse) *lse = -INFINITY;
        return;
    }
    if (m == INFINITY) {
        wa = la == INFINITY ? 1.0f : 0.0f;
        wb = lb == INFINITY ? 1.0f : 0.0f;
    } else {
        wa = expf(la - m);
        wb = expf(lb - m);
    }
    inv = 1.0f / (wa + wb);
    /* a side of weight 0 (lse -inf, or far below the other) is skipped, not multiplied by 0 */
    if (wa == 0.0f) for (j = 0; j < d_v; ++j) o[j] = o_b[j];
    else if (wb == 0.0f) for (j = 0; j < d_v; ++j) o[j] = o_a[j];
    else for (j = 0; j < d_v; ++j) o[j] = (wa * inv) * o_a[j] + (wb * inv) * o_b[j];
    if (lse) *lse = m + logf(wa + wb);
}

ATTNDEF attn_result attn_merge(float *o, ptrdiff_t o_stride, float *lse, const float *o_a,
                               ptrdiff_t o_a_stride, const float *lse_a, const float *o_b,
                               ptrdiff_t o_b_stride, const float *lse_b, int n_rows, int d_v)
{
    attn_result r;
    int i;
    if (!o || !o_a || !lse_a || !o_b || !lse_b) return ATTN_ERR_NULL;
    if (n_rows <= 0 || d_v <= 0) return ATTN_ERR_SHAPE;
    if ((r = attn__check_matrix(o_stride, n_rows, d_v, 1)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(o_a_stride, n_rows, d_v, 0)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(o_b_stride, n_rows, d_v, 0)) != ATTN_OK) return r;
    for (i = 0; i < n_rows; ++i)
        attn__merge_row(o + (ptrdiff_t)i * o_stride, lse ? lse + i : NULL, o_a + (ptrdiff_t)i * o_a_stride, lse_a[i],
                        o_b + (ptrdiff_t)i * o_b_stride, lse_b[i], d_v);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Fused attention                                                                                */
/* ---------------------------------------------------------------------------------------------- */

/* Resolved sizes: n_kv_heads and d_v defaults filled in. Checks sizes and head counts. */
static attn_result attn__resolve_dims(attn_dims *d, const attn_dims *in)
{
    *d = *in;
    if (d->n_kv_heads == 0) d->n_kv_heads = d->n_heads;
    if (d->d_v == 0) d->d_v = d->d_k;
    if (d->batch <= 0 || d->n_heads <= 0 || d->n_kv_heads <= 0 || d->n_q <= 0 || d->n_kv <= 0 ||
        d->d_k <= 0 || d->d_v <= 0)
        return ATTN_ERR_SHAPE;
    if (d->n_heads % d->n_kv_heads != 0) return ATTN_ERR_KV_HEADS;
    return ATTN_OK;
}

/* Validates the options against resolved sizes. Reads kv_len. */
static attn_result attn__check_options(const attn_options *o, const attn_dims *d)
{
    size_t n;
    attn_result r;
    int b;
    if (!isfinite(o->scale)) return ATTN_ERR_OPTION;
    if (o->n_threads < 0 || o->split_count < 0 ||
        (o->split_count > 0 && (o->split_index < 0 || o->split_index >= o->split_count)))
        return ATTN_ERR_OPTION;
    if (o->causal != ATTN_CAUSAL_NONE && o->causal != ATTN_CAUSAL_TOP_LEFT &&
        o->causal != ATTN_CAUSAL_BOTTOM_RIGHT)
        return ATTN_ERR_OPTION;
    if (o->mask) {
        attn_stride ms = o->mask_stride;
        if (ms.row == 0) ms.row = d->n_kv;
        if ((r = attn__check_view(ms, d->batch, d->n_heads, d->n_q, d->n_kv, 0)) != ATTN_OK) return r;
    }
    if (o->kv_len)
        for (b = 0; b < d->batch; ++b)
            if (o->kv_len[b] < 0 || o->kv_len[b] > d->n_kv) return ATTN_ERR_OPTION;
    if (o->key_padding_mask && !attn__mul(&n, (size_t)d->batch, (size_t)d->n_kv)) return ATTN_ERR_OVERFLOW;
    if (o->out_lse && (!attn__mul(&n, (size_t)d->batch, (size_t)d->n_heads) || !attn__mul(&n, n, (size_t)d->n_q)))
        return ATTN_ERR_OVERFLOW;
    if (o->out_weights &&
        (!attn__mul(&n, (size_t)d->batch, o->average_weights ? 1u : (size_t)d->n_heads) ||
         !attn__mul(&n, n, (size_t)d->n_q) || !attn__mul(&n, n, (size_t)d->n_kv)))
        return ATTN_ERR_OVERFLOW;
    return ATTN_OK;
}

/* Bytes of an aligned workspace holding `floats` floats. */
static attn_result attn__ws_bytes(size_t *bytes, size_t floats)
{
    if (!attn__mul(bytes, floats, sizeof(float)) || !attn__add(bytes, *bytes, ATTN__ALIGN))
        return ATTN_ERR_OVERFLOW;
    return ATTN_OK;
}

/* The first ATTN__ALIGN-aligned float in a workspace. */
static float *attn__ws_base(void *ws)
{
    const size_t off = (ATTN__ALIGN - (size_t)((uintptr_t)ws % ATTN__ALIGN)) % ATTN__ALIGN;
    return (float *)(void *)((char *)ws + off);
}

/* Threads a call runs on: the option, else OpenMP's default; 1 without OpenMP or within a split. */
static int attn__threads(const attn_options *o)
{
#ifdef _OPENMP
    if (o->split_count > 0) return 1;
    return o->n_threads > 0 ? o->n_threads : omp_get_max_threads();
#else
    (void)o;
    return 1;
#endif
}

/* Key chunks per (batch, head) of a call: more than one only for decoding shapes over many keys without
   the weights output. Depends on the sizes alone, never on the threads. */
static int attn__key_chunks(const attn_dims *d, const attn_options *o)
{
    if (d->n_q > ATTN__ROW_MAX || o->out_weights || d->n_kv <= ATTN__KEY_CHUNK) return 1;
    return 1 + (d->n_kv - 1) / ATTN__KEY_CHUNK; /* not (n_kv + CHUNK - 1): n_kv may be INT_MAX */
}

/* Floats of a call's workspace: each thread's tiles, then the partial results of the key chunks. */
static int attn__sdpa_call_floats(size_t *n, const attn_dims *d, const attn_options *o, size_t *per_thread)
{
    size_t parts = 0;
    const int chunks = attn__key_chunks(d, o);
    if (!attn__sdpa_ws_floats(per_thread, d->d_k, d->d_v) || !attn__mul(n, *per_thread, (size_t)attn__threads(o)))
        return 0;
    if (chunks > 1 && (!attn__mul(&parts, (size_t)d->batch * (size_t)d->n_heads, (size_t)chunks) ||
                       !attn__mul(&parts, parts, (size_t)d->n_q * ((size_t)d->d_v + 1))))
        return 0;
    return attn__add(n, *n, parts);
}

/* The fused kernel over all batches and heads, on validated arguments and resolved sizes. A group of work
   is one query tile of one (batch, head); with averaged weights, one query tile of a batch over all its
   heads in order, so that the sum over heads has one order. A group is one work item, or with key chunks
   one item per chunk and a merge after. A split takes whole groups. Every group writes its own rows with
   its own arithmetic, so the result is bitwise the same whatever the threads or the split. */
static void attn__sdpa_run(float *out, attn_stride out_s, const float *q, attn_stride q_s, const float *k,
                           attn_stride k_s, const float *v, attn_stride v_s, const attn_dims *d,
                           const attn_options *o, float *ws)
{
    const attn__tile_fn tile = attn__tile_kernel();
    const int group = d->n_heads / d->n_kv_heads, threads = attn__threads(o), chunks = attn__key_chunks(d, o);
    const int n_qt = 1 + (d->n_q - 1) / ATTN__TQ; /* n_q > 0; no int overflow at INT_MAX */
    const int heads_per_item = o->out_weights && o->average_weights ? d->n_heads : 1;
    const int head_groups = d->n_heads / heads_per_item;
    const ptrdiff_t n_groups = (ptrdiff_t)d->batch * head_groups * n_qt;
    const size_t head_w = (size_t)d->n_q * (size_t)d->n_kv, part_floats = (size_t)d->n_q * ((size_t)d->d_v + 1);
    size_t per_thread, total;
    float *parts;
    ptrdiff_t it, g0 = 0, g1 = n_groups;
    attn__sdpa_call_floats(&total, d, o, &per_thread);
    parts = ws + per_thread * (size_t)threads; /* [group][chunk] partial outputs [Nq x Dv] and LSEs [Nq] */
    if (o->split_count > 0) {
        const ptrdiff_t per_split = (n_groups + o->split_count - 1) / o->split_count;
        g0 = per_split * o->split_index < n_groups ? per_split * o->split_index : n_groups;
        g1 = g0 + per_split < n_groups ? g0 + per_split : n_groups;
    }
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1 && (g1 - g0) * chunks > 1)
#endif
    for (it = g0 * chunks; it < g1 * chunks; ++it) {
#ifdef _OPENMP
        float *ws_t = ws + (size_t)omp_get_thread_num() * per_thread;
#else
        float *ws_t = ws;
#endif
        const ptrdiff_t g = it / chunks;
        const int c = (int)(it % chunks), qt = (int)(g % n_qt), hg = (int)(g / n_qt % head_groups);
        const int b = (int)(g / n_qt / head_groups);
        float *w_b = o->out_weights ? o->out_weights + (size_t)b * (size_t)head_groups * head_w : NULL;
        attn__head h;
        int hh;
        memset(&h, 0, sizeof h);
        h.nq = d->n_q; h.nk = d->n_kv; h.dk = d->d_k; h.dv = d->d_v;
        h.out_rs = out_s.row; h.q_rs = q_s.row; h.k_rs = k_s.row; h.v_rs = v_s.row;
        h.mask_rs = o->mask_stride.row ? o->mask_stride.row : d->n_kv;
        h.causal = o->causal != ATTN_CAUSAL_NONE;
        h.diag = o->causal == ATTN_CAUSAL_BOTTOM_RIGHT ? (ptrdiff_t)d->n_kv - d->n_q : 0;
        h.scale = attn__scale(o->scale, d->d_k);
        h.n_valid = o->kv_len ? o->kv_len[b] : d->n_kv;
        h.kpm = o->key_padding_mask ? o->key_padding_mask + (size_t)b * (size_t)d->n_kv : NULL;
        for (hh = 0; hh < heads_per_item; ++hh) {
            const int hq = hg * heads_per_item + hh, hk = hq / group;
            h.out = out + b * out_s.batch + hq * out_s.head;
            h.q = q + b * q_s.batch + hq * q_s.head;
            h.k = k + b * k_s.batch + hk * k_s.head;
            h.v = v + b * v_s.batch + hk * v_s.head;
            h.mask = o->mask ? o->mask + b * o->mask_stride.batch + hq * o->mask_stride.head : NULL;
            h.lse = o->out_lse ? o->out_lse + ((size_t)b * (size_t)d->n_heads + (size_t)hq) * (size_t)d->n_q : NULL;
            h.w = w_b ? w_b + (size_t)hg * head_w : NULL;
            h.w_accumulate = hh > 0;
            if (chunks > 1) { /* keys [c * CHUNK, (c + 1) * CHUNK) into this chunk's partial result */
                h.out = parts + ((size_t)(g - g0) * (size_t)chunks + (size_t)c) * part_floats;
                h.out_rs = d->d_v;
                h.lse = h.out + (size_t)d->n_q * (size_t)d->d_v;
                h.k_lo = c * ATTN__KEY_CHUNK;
                if (h.n_valid > h.k_lo + ATTN__KEY_CHUNK) h.n_valid = h.k_lo + ATTN__KEY_CHUNK;
            }
            tile(&h, qt * ATTN__TQ, ws_t);
        }
        if (w_b && heads_per_item > 1) { /* the mean over the heads of this tile's rows */
            const float inv_h = 1.0f / (float)d->n_heads;
            const int i0 = qt * ATTN__TQ, tq = d->n_q - i0 < ATTN__TQ ? d->n_q - i0 : ATTN__TQ;
            float *w_t = w_b + (size_t)i0 * (size_t)d->n_kv;
            size_t i;
            for (i = 0; i < (size_t)tq * (size_t)d->n_kv; ++i) w_t[i] *= inv_h;
        }
    }
    if (chunks > 1) { /* merge the chunks of each group in key order (groups are (batch, head) here) */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && g1 - g0 > 1)
#endif
        for (it = g0; it < g1; ++it) {
            const int hq = (int)(it % d->n_heads), b = (int)(it / d->n_heads);
            const float *part = parts + (size_t)(it - g0) * (size_t)chunks * part_floats;
            int i, c;
            for (i = 0; i < d->n_q; ++i) {
                float *o_i = out + b * out_s.batch + hq * out_s.head + (ptrdiff_t)i * out_s.row;
                float l = part[(size_t)d->n_q * (size_t)d->d_v + (size_t)i];
                memcpy(o_i, part + (size_t)i * (size_t)d->d_v, sizeof(float) * (size_t)d->d_v);
                for (c = 1; c < chunks; ++c) {
                    const float *p_c = part + (size_t)c * part_floats;
                    attn__merge_row(o_i, &l, o_i, l, p_c + (size_t)i * (size_t)d->d_v,
                                    p_c[(size_t)d->n_q * (size_t)d->d_v + (size_t)i], d->d_v);
                }
                if (o->out_lse) o->out_lse[((size_t)b * (size_t)d->n_heads + (size_t)hq) * (size_t)d->n_q + (size_t)i] = l;
            }
        }
    }
}

ATTNDEF attn_result attn_sdpa_workspace_size(size_t *bytes, const attn_dims *dims, const attn_options *opt)
{
    attn_dims d;
    attn_result r;
    size_t floats;
    if (!bytes || !dims) return ATTN_ERR_NULL;
    if ((r = attn__resolve_dims(&d, dims)) != ATTN_OK) return r;
    size_t per_thread;
    if (!opt) opt = &attn__default_options;
    if (!attn__sdpa_call_floats(&floats, &d, opt, &per_thread)) return ATTN_ERR_OVERFLOW;
    return attn__ws_bytes(bytes, floats);
}

ATTNDEF attn_result attn_sdpa(float *out, attn_stride out_s, const float *q, attn_stride q_s, const float *k,
                              attn_stride k_s, const float *v, attn_stride v_s, const attn_dims *dims,
                              const attn_options *opt, void *workspace, size_t workspace_bytes)
{
    attn_dims d;
    attn_result r;
    size_t need;
    void *mem = workspace;
    if (!opt) opt = &attn__default_options;
    if (!out || !q || !k || !v || !dims) return ATTN_ERR_NULL;
    if ((r = attn__resolve_dims(&d, dims)) != ATTN_OK) return r;
    if ((r = attn__check_view(out_s, d.batch, d.n_heads, d.n_q, d.d_v, 1)) != ATTN_OK) return r;
    if ((r = attn__check_view(q_s, d.batch, d.n_heads, d.n_q, d.d_k, 0)) != ATTN_OK) return r;
    if ((r = attn__check_view(k_s, d.batch, d.n_kv_heads, d.n_kv, d.d_k, 0)) != ATTN_OK) return r;
    if ((r = attn__check_view(v_s, d.batch, d.n_kv_heads, d.n_kv, d.d_v, 0)) != ATTN_OK) return r;
    if ((r = attn__check_options(opt, &d)) != ATTN_OK) return r;
    if ((r = attn_sdpa_workspace_size(&need, &d, opt)) != ATTN_OK) return r;
    if (workspace && workspace_bytes < need) return ATTN_ERR_WORKSPACE;
    if (!workspace && !(mem = ATTN_MALLOC(need, opt->alloc_user))) return ATTN_ERR_NOMEM;
    attn__sdpa_run(out, out_s, q, q_s, k, k_s, v, v_s, &d, opt, attn__ws_base(mem));
    if (!workspace) ATTN_FREE(mem, opt->alloc_user);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Multi-head attention                                                                           */
/* ---------------------------------------------------------------------------------------------- */

/* Sizes of one multi-head call, resolved and validated. */
typedef struct attn__mha_dims {
    attn_dims sdpa;  /* per batch: batch = 1 */
    int batch, d_model, d_kv, kv_dim;
    size_t ws_floats; /* Q, K, V, attention output of one batch, then the fused kernel's tiles */
} attn__mha_dims;

static attn_result attn__mha_resolve(attn__mha_dims *md, int batch, int n_q, int n_kv, const attn_mha *m,
                                     const attn_options *opt, int self)
{
    attn_dims full;
    attn_result r;
    size_t n, q_floats, kv_floats, sdpa_floats, per_thread;
    int head_dim, n_kv_heads, d_kv;
    if (!m) return ATTN_ERR_NULL;
    n_kv_heads = m->n_kv_heads ? m->n_kv_heads : m->n_heads;
    d_kv = m->d_kv ? m->d_kv : m->d_model;
    if (batch <= 0 || n_q <= 0 || n_kv <= 0 || m->d_model <= 0 || m->n_heads <= 0 || n_kv_heads <= 0 ||
        d_kv <= 0 || (self && d_kv != m->d_model))
        return ATTN_ERR_SHAPE;
    if (m->d_model % m->n_heads != 0) return ATTN_ERR_HEADS;
    if (m->n_heads % n_kv_heads != 0) return ATTN_ERR_KV_HEADS;
    if (m->layout != ATTN_LAYOUT_IN_OUT && m->layout != ATTN_LAYOUT_OUT_IN) return ATTN_ERR_OPTION;
    head_dim = m->d_model / m->n_heads;
    md->batch = batch;
    md->d_model = m->d_model;
    md->d_kv = d_kv;
    md->kv_dim = n_kv_heads * head_dim; /* <= d_model */
    full.batch = batch; full.n_heads = m->n_heads; full.n_kv_heads = n_kv_heads;
    full.n_q = n_q; full.n_kv = n_kv; full.d_k = head_dim; full.d_v = head_dim;
    if (opt && (r = attn__check_options(opt, &full)) != ATTN_OK) return r;
    if (opt && opt->split_count != 0) return ATTN_ERR_OPTION; /* a split is for attn_sdpa only */
    md->sdpa = full;
    md->sdpa.batch = 1;
    /* the dense inputs and output must be addressable */
    if (!attn__mul(&n, (size_t)batch, (size_t)n_q) || !attn__mul(&n, n, (size_t)m->d_model) ||
        !attn__mul(&n, (size_t)batch, (size_t)n_kv) || !attn__mul(&n, n, (size_t)d_kv) ||
        !attn__mul(&n, (size_t)d_kv, (size_t)m->d_model) || !attn__mul(&n, (size_t)m->d_model, (size_t)m->d_model))
        return ATTN_ERR_OVERFLOW;
    if (!attn__mul(&q_floats, (size_t)n_q, (size_t)m->d_model) ||
        !attn__mul(&kv_floats, (size_t)n_kv, (size_t)md->kv_dim) || !attn__sdpa_call_floats(&sdpa_floats, &md->sdpa, opt ? opt : &attn__default_options, &per_thread) ||
        !attn__add(&n, q_floats, q_floats) || !attn__add(&n, n, kv_floats) || !attn__add(&n, n, kv_floats) ||
        !attn__add(&md->ws_floats, n, sdpa_floats))
        return ATTN_ERR_OVERFLOW;
    return ATTN_OK;
}

/* Per batch: project Q, K, V into the workspace, run the fused kernel on the interleaved [N, H*D] heads,
   project the result through W_o into out. */
static void attn__mha_run(float *out, const float *x_q, const float *x_kv, int n_q, int n_kv, const attn_mha *m,
                          const attn_options *o, const attn__mha_dims *md, float *ws)
{
    const attn_dims *d = &md->sdpa;
    const ptrdiff_t d_model = md->d_model, kv_dim = md->kv_dim, d_kv = md->d_kv;
    const ptrdiff_t wkv_rs = m->layout == ATTN_LAYOUT_IN_OUT ? kv_dim : d_kv; /* W_q, W_o: d_model either way */
    float *qb = ws;                             /* [Nq x d_model]  */
    float *kb = qb + (size_t)n_q * md->d_model; /* [Nk x kv_dim]   */
    float *vb = kb + (size_t)n_kv * md->kv_dim; /* [Nk x kv_dim]   */
    float *ab = vb + (size_t)n_kv * md->kv_dim; /* [Nq x d_model]  */
    float *sdpa_ws = ab + (size_t)n_q * md->d_model;
    const attn_stride q_s = attn_stride_bnhd(d->n_heads, n_q, d->d_k);
    const attn_stride kv_s = attn_stride_bnhd(d->n_kv_heads, n_kv, d->d_k);
    const size_t w_per_batch = (o->average_weights ? 1u : (size_t)d->n_heads) * (size_t)n_q * (size_t)n_kv;
    const int threads = attn__threads(o);
    int b;
    for (b = 0; b < md->batch; ++b) {
        const float *xq_b = x_q + (size_t)b * (size_t)n_q * md->d_model;
        const float *xkv_b = x_kv + (size_t)b * (size_t)n_kv * md->d_kv;
        attn_options ob = *o; /* the options seen from batch b */
        ob.mask = o->mask ? o->mask + b * o->mask_stride.batch : NULL;
        ob.kv_len = o->kv_len ? o->kv_len + b : NULL;
        ob.key_padding_mask = o->key_padding_mask ? o->key_padding_mask + (size_t)b * (size_t)n_kv : NULL;
        ob.out_lse = o->out_lse ? o->out_lse + (size_t)b * (size_t)d->n_heads * (size_t)n_q : NULL;
        ob.out_weights = o->out_weights ? o->out_weights + (size_t)b * w_per_batch : NULL;
        attn__project(qb, d_model, xq_b, d_model, m->w_q, d_model, m->layout, m->b_q, n_q, md->d_model, md->d_model, threads);
        attn__project(kb, kv_dim, xkv_b, d_kv, m->w_k, wkv_rs, m->layout, m->b_k, n_kv, md->d_kv, md->kv_dim, threads);
        attn__project(vb, kv_dim, xkv_b, d_kv, m->w_v, wkv_rs, m->layout, m->b_v, n_kv, md->d_kv, md->kv_dim, threads);
        attn__sdpa_run(ab, q_s, qb, q_s, kb, kv_s, vb, kv_s, d, &ob, sdpa_ws);
        attn__project(out + (size_t)b * (size_t)n_q * md->d_model, d_model, ab, d_model, m->w_o, d_model, m->layout,
                      m->b_o, n_q, md->d_model, md->d_model, threads);
    }
}

static attn_result attn__mha_workspace_size(size_t *bytes, int batch, int n_q, int n_kv, const attn_mha *m,
                                            const attn_options *opt, int self)
{
    attn__mha_dims md;
    attn_result r;
    if (!bytes) return ATTN_ERR_NULL;
    if ((r = attn__mha_resolve(&md, batch, n_q, n_kv, m, opt, self)) != ATTN_OK) return r;
    return attn__ws_bytes(bytes, md.ws_floats);
}

static attn_result attn__mha_forward(float *out, const float *x_q, const float *x_kv, int batch, int n_q,
                                     int n_kv, const attn_mha *m, const attn_options *opt, void *workspace,
                                     size_t workspace_bytes, int self)
{
    attn__mha_dims md;
    attn_result r;
    size_t need;
    void *mem = workspace;
    if (!opt) opt = &attn__default_options;
    if (!out || !x_q || !x_kv || !m) return ATTN_ERR_NULL;
    if (!m->w_q || !m->w_k || !m->w_v || !m->w_o) return ATTN_ERR_NULL;
    if ((r = attn__mha_resolve(&md, batch, n_q, n_kv, m, opt, self)) != ATTN_OK) return r;
    if ((r = attn__ws_bytes(&need, md.ws_floats)) != ATTN_OK) return r;
    if (workspace && workspace_bytes < need) return ATTN_ERR_WORKSPACE;
    if (!workspace && !(mem = ATTN_MALLOC(need, opt->alloc_user))) return ATTN_ERR_NOMEM;
    attn__mha_run(out, x_q, x_kv, n_q, n_kv, m, opt, &md, attn__ws_base(mem));
    if (!workspace) ATTN_FREE(mem, opt->alloc_user);
    return ATTN_OK;
}

ATTNDEF attn_result attn_self_workspace_size(size_t *bytes, int batch, int n, const attn_mha *mha,
                                             const attn_options *opt)
{
    return attn__mha_workspace_size(bytes, batch, n, n, mha, opt, 1);
}

ATTNDEF attn_result attn_self_forward(float *out, const float *x, int batch, int n, const attn_mha *mha,
                                      const attn_options *opt, void *workspace, size_t workspace_bytes)
{
    return attn__mha_forward(out, x, x, batch, n, n, mha, opt, workspace, workspace_bytes, 1);
}

ATTNDEF attn_result attn_cross_workspace_size(size_t *bytes, int batch, int n_q, int n_kv,
                                              const attn_mha *mha, const attn_options *opt)
{
    return attn__mha_workspace_size(bytes, batch, n_q, n_kv, mha, opt, 0);
}

ATTNDEF attn_result attn_cross_forward(float *out, const float *x_q, const float *x_kv, int batch, int n_q,
                                       int n_kv, const attn_mha *mha, const attn_options *opt,
                                       void *workspace, size_t workspace_bytes)
{
    return attn__mha_forward(out, x_q, x_kv, batch, n_q, n_kv, mha, opt, workspace, workspace_bytes, 0);
}

#ifdef __cplusplus
}
#endif

#endif /* ATTENTION_IMPLEMENTATION */

#else /* ATTN__TEMPLATE: the SIMD kernels, included once per instruction set by the implementation */
/* The kernels below are written once over a small vector vocabulary that the implementation defines per
   instruction set before including this file again (the stb_image_resize2 scheme):
     ATTN__SFX(name)  name with the instruction set's suffix      ATTN__TARGET  function attribute
     ATTN__V, ATTN__W a vector of ATTN__W floats                  ATTN__M       a lane mask
     ATTN__VLOAD ATTN__VSTORE ATTN__VSET1 ATTN__VZERO ATTN__VADD ATTN__VSUB ATTN__VMUL ATTN__VFMA(a, b, c) = a*b + c  ATTN__VMAX(a, b) = a > b ? a : b
     ATTN__VROUND (to nearest)  ATTN__VLDEXP(p, n) = p * 2^n  ATTN__VEQ(a, b) -> mask  ATTN__VBLEND(m, a, b) = m ? b : a  ATTN__VANY(m)
     ATTN__EXP2_LO    below it 2^x is flushed to exactly 0.
   Layout of the fused kernel: a query tile is kept transposed, queries along the vector lanes. Scores
   S^T [keys x TQ] = K . Q^T and the output O^T [Dv x TQ] += V^T . P^T are both one micro-kernel that
   broadcasts K or V elements straight from the caller's rows (no packing), and the online softmax runs
   down the columns without a horizontal reduction. */

#define ATTN__NB (2 * ATTN__W) /* columns of the micro-kernel: two vectors */

/* 2^x, |error| <= 2 ulp; x <= 0 in every use (scores minus their running max). NaN stays NaN. */
static ATTN__TARGET ATTN__V ATTN__SFX(attn__vexp2)(ATTN__V x)
{
    ATTN__V n, f, p;
    x = ATTN__VMAX(ATTN__VSET1(ATTN__EXP2_LO), x); /* NaN passes: ATTN__VMAX returns its second operand on NaN */
    n = ATTN__VROUND(x);
    f = ATTN__VSUB(x, n); /* [-0.5, 0.5] */
    p = ATTN__VSET1(1.5345811e-4f);
    p = ATTN__VFMA(p, f, ATTN__VSET1(1.3399931e-3f));
    p = ATTN__VFMA(p, f, ATTN__VSET1(9.6184891e-3f));
    p = ATTN__VFMA(p, f, ATTN__VSET1(5.5503286e-2f));
    p = ATTN__VFMA(p, f, ATTN__VSET1(2.4022646e-1f));
    p = ATTN__VFMA(p, f, ATTN__VSET1(6.9314718e-1f));
    p = ATTN__VFMA(p, f, ATTN__VSET1(1.0f));
    return ATTN__VLDEXP(p, n);
}

/* The micro-kernel: C[r][0..NB) (+)= sum_p A(r, p) * B[p][0..NB) for r < rows <= 6, with
   A(r, p) = a[r*a_rs + p*a_cs] broadcast from memory and B rows at b + p*b_rs (NB contiguous floats).
   Twelve accumulators: enough independent FMA chains to hide the FMA latency on every target. */
static ATTN__TARGET void ATTN__SFX(attn__kernel)(float *c, ptrdiff_t c_rs, const float *a, ptrdiff_t a_rs,
                                                 ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs, int k,
                                                 int rows, int accumulate)
{
    /* rows past `rows` re-read row 0 (in bounds) and are never stored */
    const float *a0 = a, *a1 = a + (rows > 1) * a_rs, *a2 = a + (rows > 2) * 2 * a_rs;
    const float *a3 = a + (rows > 3) * 3 * a_rs, *a4 = a + (rows > 4) * 4 * a_rs, *a5 = a + (rows > 5) * 5 * a_rs;
    ATTN__V c00 = ATTN__VZERO, c01 = ATTN__VZERO, c10 = ATTN__VZERO, c11 = ATTN__VZERO, c20 = ATTN__VZERO, c21 = ATTN__VZERO;
    ATTN__V c30 = ATTN__VZERO, c31 = ATTN__VZERO, c40 = ATTN__VZERO, c41 = ATTN__VZERO, c50 = ATTN__VZERO, c51 = ATTN__VZERO;
    ATTN__V acc[12];
    ptrdiff_t p, off;
    int r;
    for (p = 0, off = 0; p < k; ++p, off += a_cs) {
        const float *b_p = b + p * b_rs;
        const ATTN__V b0 = ATTN__VLOAD(b_p), b1 = ATTN__VLOAD(b_p + ATTN__W);
        ATTN__V x;
        x = ATTN__VSET1(a0[off]); c00 = ATTN__VFMA(x, b0, c00); c01 = ATTN__VFMA(x, b1, c01);
        x = ATTN__VSET1(a1[off]); c10 = ATTN__VFMA(x, b0, c10); c11 = ATTN__VFMA(x, b1, c11);
        x = ATTN__VSET1(a2[off]); c20 = ATTN__VFMA(x, b0, c20); c21 = ATTN__VFMA(x, b1, c21);
        x = ATTN__VSET1(a3[off]); c30 = ATTN__VFMA(x, b0, c30); c31 = ATTN__VFMA(x, b1, c31);
        x = ATTN__VSET1(a4[off]); c40 = ATTN__VFMA(x, b0, c40); c41 = ATTN__VFMA(x, b1, c41);
        x = ATTN__VSET1(a5[off]); c50 = ATTN__VFMA(x, b0, c50); c51 = ATTN__VFMA(x, b1, c51);
    }
    acc[0] = c00; acc[1] = c01; acc[2] = c10; acc[3] = c11; acc[4] = c20; acc[5] = c21;
    acc[6] = c30; acc[7] = c31; acc[8] = c40; acc[9] = c41; acc[10] = c50; acc[11] = c51;
    for (r = 0; r < rows; ++r) {
        float *c_r = c + r * c_rs;
        if (accumulate) {
            acc[2 * r] = ATTN__VADD(ATTN__VLOAD(c_r), acc[2 * r]);
            acc[2 * r + 1] = ATTN__VADD(ATTN__VLOAD(c_r + ATTN__W), acc[2 * r + 1]);
        }
        ATTN__VSTORE(c_r, acc[2 * r]);
        ATTN__VSTORE(c_r + ATTN__W, acc[2 * r + 1]);
    }
}

/* C[m x n] (+)= A[m x k] . op(B): B [k x n] (b_trans 0) or B^T given as [n x k] (b_trans 1). B is packed
   into KC x NB panels on the stack (16 KiB at most); A is read in place; edge tiles go through a small
   stack tile so C is never touched outside [m x n]. */
#define ATTN__KC 128
static ATTN__TARGET void ATTN__SFX(attn__gemm)(float *c, ptrdiff_t ldc, const float *a, ptrdiff_t lda,
                                               const float *b, ptrdiff_t ldb, int b_trans, int m, int n, int k,
                                               int accumulate)
{
    float panel[ATTN__KC * ATTN__NB], tile[6 * ATTN__NB];
    int j0, p0, i0, p, jj, r;
    for (j0 = 0; j0 < n; j0 += ATTN__NB) {
        const int nb = n - j0 < ATTN__NB ? n - j0 : ATTN__NB;
        for (p0 = 0; p0 < k; p0 += ATTN__KC) {
            const int kc = k - p0 < ATTN__KC ? k - p0 : ATTN__KC, acc = accumulate || p0 > 0;
            for (p = 0; p < kc; ++p)
                for (jj = 0; jj < ATTN__NB; ++jj)
                    panel[p * ATTN__NB + jj] = jj >= nb ? 0.0f
                                             : b_trans ? b[(ptrdiff_t)(j0 + jj) * ldb + p0 + p]
                                                       : b[(ptrdiff_t)(p0 + p) * ldb + j0 + jj];
            for (i0 = 0; i0 < m; i0 += 6) {
                const int rows = m - i0 < 6 ? m - i0 : 6;
                float *c_t = c + (ptrdiff_t)i0 * ldc + j0;
                const float *a_t = a + (ptrdiff_t)i0 * lda + p0;
                if (nb == ATTN__NB) {
                    ATTN__SFX(attn__kernel)(c_t, ldc, a_t, lda, 1, panel, ATTN__NB, kc, rows, acc);
                    continue;
                }
                for (r = 0; r < rows; ++r)
                    for (jj = 0; jj < ATTN__NB; ++jj)
                        tile[r * ATTN__NB + jj] = acc && jj < nb ? c_t[(ptrdiff_t)r * ldc + jj] : 0.0f;
                ATTN__SFX(attn__kernel)(tile, ATTN__NB, a_t, lda, 1, panel, ATTN__NB, kc, rows, acc);
                for (r = 0; r < rows; ++r)
                    for (jj = 0; jj < nb; ++jj) c_t[(ptrdiff_t)r * ldc + jj] = tile[r * ATTN__NB + jj];
            }
        }
    }
}

/* s_t[TK x TQ] = scores of keys [j0, j0 + tk) against the packed queries q_t [Dk x TQ] (already scaled to
   log2 units), with every mask applied (-inf = hidden). Only the first tq columns are real queries. */
static ATTN__TARGET void ATTN__SFX(attn__score_tile_t)(float *s_t, const attn__head *h, const float *q_t, int i0,
                                                       int tq, int j0, int tk)
{
    int j, i, nb;
    for (j = 0; j < tk; j += 6)
        for (nb = 0; nb < ATTN__TQ; nb += ATTN__NB)
            ATTN__SFX(attn__kernel)(s_t + j * ATTN__TQ + nb, ATTN__TQ, h->k + (ptrdiff_t)(j0 + j) * h->k_rs, h->k_rs,
                                    1, q_t + nb, ATTN__TQ, h->dk, tk - j < 6 ? tk - j : 6, 0);
    if (h->mask)
        for (j = 0; j < tk; ++j)
            for (i = 0; i < tq; ++i)
                s_t[j * ATTN__TQ + i] += h->mask[(ptrdiff_t)(i0 + i) * h->mask_rs + j0 + j] * ATTN__LOG2E;
    if (h->kpm)
        for (j = 0; j < tk; ++j)
            if (h->kpm[j0 + j])
                for (i = 0; i < ATTN__TQ; ++i) s_t[j * ATTN__TQ + i] = -INFINITY;
    if (h->causal)
        for (j = 0; j < tk; ++j) {
            /* key j0 + j is visible from query i0 + i iff i >= j0 + j - diag - i0 */
            const ptrdiff_t first = (ptrdiff_t)(j0 + j) - h->diag - i0;
            const int hide = first <= 0 ? 0 : first >= ATTN__TQ ? ATTN__TQ : (int)first;
            for (i = 0; i < hide; ++i) s_t[j * ATTN__TQ + i] = -INFINITY;
        }
}

/* p = 2^(s - m) down each column of s_t [tk x TQ], m the running max of the column (with the documented
   conventions: m = -inf gives 0, m = +inf gives 1 at the +inf entries); returns the column sums. */
static ATTN__TARGET void ATTN__SFX(attn__exp_cols)(float *s_t, int tk, const float *m, float *sum)
{
    int v, j;
    for (v = 0; v < ATTN__TQ; v += ATTN__W) {
        const ATTN__V mv = ATTN__VLOAD(m + v);
        const ATTN__V mu = ATTN__VBLEND(ATTN__VEQ(mv, ATTN__VSET1(-INFINITY)), mv, ATTN__VZERO);
        const int any_inf = ATTN__VANY(ATTN__VEQ(mv, ATTN__VSET1(INFINITY)));
        ATTN__V acc = ATTN__VZERO;
        for (j = 0; j < tk; ++j) {
            float *s_j = s_t + j * ATTN__TQ + v;
            const ATTN__V s = ATTN__VLOAD(s_j);
            ATTN__V p = ATTN__SFX(attn__vexp2)(ATTN__VSUB(s, mu));
            if (any_inf) p = ATTN__VBLEND(ATTN__VEQ(s, ATTN__VSET1(INFINITY)), p, ATTN__VSET1(1.0f));
            ATTN__VSTORE(s_j, p);
            acc = ATTN__VADD(acc, p);
        }
        ATTN__VSTORE(sum + v, acc);
    }
}

/* Sum of the lanes of v, in a fixed pairwise order. */
static ATTN__TARGET float ATTN__SFX(attn__vsum)(ATTN__V v)
{
    float t[ATTN__W];
    int n, i;
    ATTN__VSTORE(t, v);
    for (n = ATTN__W / 2; n > 0; n /= 2)
        for (i = 0; i < n; ++i) t[i] += t[i + n];
    return t[0];
}


/* One query row i against its visible keys, vectorised along d and along the keys: the decoding kernel,
   for few queries, where the tile kernel's 32 query lanes would idle. Reads each K and V row once. */
static ATTN__TARGET void ATTN__SFX(attn__row_forward)(const attn__head *h, int i, float *ws)
{
    const int key_end = attn__key_end(h, i, 1);
    const float q_scale = h->scale * ATTN__LOG2E;
    const float *q_i = h->q + (ptrdiff_t)i * h->q_rs;
    float *s = ws;                                /* [TK] scores of a key tile, padded with -inf */
    float *acc = s + ATTN__TK;                    /* [Dv] unnormalised output */
    float m = -INFINITY, l = 0.0f, inv = 0.0f;
    int j0, pass;
    memset(acc, 0, sizeof(float) * (size_t)h->dv);
    /* pass 0: online softmax and output; pass 1 (only with weights): the normalised weights */
    for (pass = 0; pass < (h->w ? 2 : 1); ++pass) {
        for (j0 = pass ? 0 : h->k_lo; j0 < (pass ? h->nk : key_end); j0 += ATTN__TK) {
            const int tk = (pass ? h->nk : key_end) - j0 < ATTN__TK ? (pass ? h->nk : key_end) - j0 : ATTN__TK;
            const int tv = key_end - j0 < tk ? (key_end - j0 < 0 ? 0 : key_end - j0) : tk; /* visible */
            float m_new, mu, sum = 0.0f, alpha = 1.0f;
            int j, c;
            for (j = 0; j < tv; j += 4) { /* four keys at a time: four independent streams and chains */
                const float *k0 = h->k + (ptrdiff_t)(j0 + j) * h->k_rs;
                const float *k1 = j + 1 < tv ? k0 + h->k_rs : k0, *k2 = j + 2 < tv ? k0 + 2 * h->k_rs : k0;
                const float *k3 = j + 3 < tv ? k0 + 3 * h->k_rs : k0;
                ATTN__V a0 = ATTN__VZERO, a1 = ATTN__VZERO, a2 = ATTN__VZERO, a3 = ATTN__VZERO;
                float d4[4];
                int r;
                if (j + 8 < tv) /* the K rows two groups ahead, and this group's V rows for the PV loop */
                    for (c = 0; c < h->dk || c < h->dv; c += 16) {
                        const int r8 = j + 8 + (j + 11 < tv ? 3 : 0);
                        if (c < h->dk) {
                            ATTN__PREFETCH(k0 + 8 * h->k_rs + c);
                            ATTN__PREFETCH(h->k + (ptrdiff_t)(j0 + r8) * h->k_rs + c);
                        }
                        if (c < h->dv) {
                            ATTN__PREFETCH(h->v + (ptrdiff_t)(j0 + j) * h->v_rs + c);
                            ATTN__PREFETCH(h->v + (ptrdiff_t)(j0 + j + 1) * h->v_rs + c);
                            ATTN__PREFETCH(h->v + (ptrdiff_t)(j0 + j + 2) * h->v_rs + c);
                            ATTN__PREFETCH(h->v + (ptrdiff_t)(j0 + j + 3) * h->v_rs + c);
                        }
                    }
                for (c = 0; c + ATTN__W <= h->dk; c += ATTN__W) {
                    const ATTN__V qv = ATTN__VLOAD(q_i + c);
                    a0 = ATTN__VFMA(qv, ATTN__VLOAD(k0 + c), a0);
                    a1 = ATTN__VFMA(qv, ATTN__VLOAD(k1 + c), a1);
                    a2 = ATTN__VFMA(qv, ATTN__VLOAD(k2 + c), a2);
                    a3 = ATTN__VFMA(qv, ATTN__VLOAD(k3 + c), a3);
                }
                d4[0] = ATTN__SFX(attn__vsum)(a0); d4[1] = ATTN__SFX(attn__vsum)(a1);
                d4[2] = ATTN__SFX(attn__vsum)(a2); d4[3] = ATTN__SFX(attn__vsum)(a3);
                for (; c < h->dk; ++c) {
                    d4[0] += q_i[c] * k0[c]; d4[1] += q_i[c] * k1[c]; d4[2] += q_i[c] * k2[c]; d4[3] += q_i[c] * k3[c];
                }
                for (r = 0; r < 4 && j + r < tv; ++r) s[j + r] = d4[r] * q_scale;
            }
            if (h->mask)
                for (j = 0; j < tv; ++j) s[j] += h->mask[(ptrdiff_t)i * h->mask_rs + j0 + j] * ATTN__LOG2E;
            if (h->kpm)
                for (j = 0; j < tv; ++j) s[j] = h->kpm[j0 + j] ? -INFINITY : s[j];
            for (j = tv; j < ATTN__TK; ++j) s[j] = -INFINITY;
            m_new = m;
            if (pass == 0) {
                m_new = attn__row_max(s, tv) > m ? attn__row_max(s, tv) : m;
                alpha = m_new == m ? 1.0f : exp2f(m - m_new);
            }
            mu = m_new == -INFINITY ? 0.0f : m_new;
            for (j = 0; j < ATTN__TK; j += ATTN__W) {
                const ATTN__V x = ATTN__VLOAD(s + j);
                ATTN__V p = ATTN__SFX(attn__vexp2)(ATTN__VSUB(x, ATTN__VSET1(mu)));
                if (m_new == INFINITY) p = ATTN__VBLEND(ATTN__VEQ(x, ATTN__VSET1(INFINITY)), p, ATTN__VSET1(1.0f));
                ATTN__VSTORE(s + j, p);
            }
            if (pass == 1) {
                float *w_i = h->w + (ptrdiff_t)i * h->nk + j0;
                for (j = 0; j < tk; ++j) w_i[j] = h->w_accumulate ? w_i[j] + s[j] * inv : s[j] * inv;
                continue;
            }
            for (j = 0; j < tv; ++j) sum += s[j];
            l = l * alpha + sum;
            m = m_new;
            for (c = 0; c + 4 * ATTN__W <= h->dv; c += 4 * ATTN__W) { /* acc = alpha acc + sum_j p_j v_j */
                const ATTN__V al = ATTN__VSET1(alpha);
                ATTN__V a0 = ATTN__VMUL(ATTN__VLOAD(acc + c), al), a1 = ATTN__VMUL(ATTN__VLOAD(acc + c + ATTN__W), al);
                ATTN__V a2 = ATTN__VMUL(ATTN__VLOAD(acc + c + 2 * ATTN__W), al);
                ATTN__V a3 = ATTN__VMUL(ATTN__VLOAD(acc + c + 3 * ATTN__W), al);
                for (j = 0; j < tv; ++j) { /* along each V row: 4 independent chains */
                    const float *v_j = h->v + (ptrdiff_t)(j0 + j) * h->v_rs + c;
                    const ATTN__V pj = ATTN__VSET1(s[j]);
                    a0 = ATTN__VFMA(pj, ATTN__VLOAD(v_j), a0);
                    a1 = ATTN__VFMA(pj, ATTN__VLOAD(v_j + ATTN__W), a1);
                    a2 = ATTN__VFMA(pj, ATTN__VLOAD(v_j + 2 * ATTN__W), a2);
                    a3 = ATTN__VFMA(pj, ATTN__VLOAD(v_j + 3 * ATTN__W), a3);
                }
                ATTN__VSTORE(acc + c, a0); ATTN__VSTORE(acc + c + ATTN__W, a1);
                ATTN__VSTORE(acc + c + 2 * ATTN__W, a2); ATTN__VSTORE(acc + c + 3 * ATTN__W, a3);
            }
            for (; c + ATTN__W <= h->dv; c += ATTN__W) {
                ATTN__V a = ATTN__VMUL(ATTN__VLOAD(acc + c), ATTN__VSET1(alpha));
                for (j = 0; j < tv; ++j)
                    a = ATTN__VFMA(ATTN__VSET1(s[j]), ATTN__VLOAD(h->v + (ptrdiff_t)(j0 + j) * h->v_rs + c), a);
                ATTN__VSTORE(acc + c, a);
            }
            for (; c < h->dv; ++c) {
                float a = acc[c] * alpha;
                for (j = 0; j < tv; ++j) a += s[j] * h->v[(ptrdiff_t)(j0 + j) * h->v_rs + c];
                acc[c] = a;
            }
        }
        inv = attn__inv_sum(l);
    }
    {
        float *o_i = h->out + (ptrdiff_t)i * h->out_rs;
        int c;
        inv = attn__inv_sum(l);
        for (c = 0; c < h->dv; ++c) o_i[c] = acc[c] * inv;
        if (h->lse) h->lse[i] = l == 0.0f ? -INFINITY : m * ATTN__LN2 + logf(l);
    }
}

/* One query tile [i0, i0 + ATTN__TQ) of one head: pack Q^T, walk the visible key tiles with the online
   softmax (running max m and sum l per query, in log2 units), then normalise and write out. */
static ATTN__TARGET void ATTN__SFX(attn__tile_forward)(const attn__head *h, int i0, float *ws)
{
    const int tq = h->nq - i0 < ATTN__TQ ? h->nq - i0 : ATTN__TQ;
    const int key_end = attn__key_end(h, i0, tq);
    const float q_scale = h->scale * ATTN__LOG2E;
    float *q_t = ws;                              /* [Dk x TQ] scaled queries, transposed */
    float *s_t = q_t + h->dk * ATTN__TQ;          /* [TK x TQ] scores, then probabilities */
    float *o_t = s_t + ATTN__TK * ATTN__TQ;       /* [Dv x TQ] unnormalised output, transposed */
    float *m = o_t + h->dv * ATTN__TQ;            /* [TQ] running max */
    float *l = m + ATTN__TQ;                      /* [TQ] running sum */
    float *alpha = l + ATTN__TQ;                  /* [TQ] rescale of the running state */
    float *sum = alpha + ATTN__TQ;                /* [TQ] column sums of a tile */
    int i, c, j0, v;
    if (tq <= ATTN__ROW_MAX) {
        for (i = 0; i < tq; ++i) ATTN__SFX(attn__row_forward)(h, i0 + i, ws);
        return;
    }
    for (c = 0; c < h->dk; ++c)
        for (i = 0; i < ATTN__TQ; ++i)
            q_t[c * ATTN__TQ + i] = i < tq ? h->q[(ptrdiff_t)(i0 + i) * h->q_rs + c] * q_scale : 0.0f;
    for (i = 0; i < ATTN__TQ; ++i) { m[i] = -INFINITY; l[i] = 0.0f; }
    memset(o_t, 0, sizeof(float) * (size_t)h->dv * ATTN__TQ);
    for (j0 = h->k_lo; j0 < key_end; j0 += ATTN__TK) {
        const int tk = key_end - j0 < ATTN__TK ? key_end - j0 : ATTN__TK;
        ATTN__SFX(attn__score_tile_t)(s_t, h, q_t, i0, tq, j0, tk);
        for (v = 0; v < ATTN__TQ; v += ATTN__W) { /* new running max, and the rescale of the old state */
            const ATTN__V m_old = ATTN__VLOAD(m + v);
            ATTN__V m_new = m_old;
            int j;
            for (j = 0; j < tk; ++j) m_new = ATTN__VMAX(ATTN__VLOAD(s_t + j * ATTN__TQ + v), m_new); /* NaN ignored */
            ATTN__VSTORE(alpha + v, ATTN__VBLEND(ATTN__VEQ(m_old, m_new), ATTN__SFX(attn__vexp2)(ATTN__VSUB(m_old, m_new)), ATTN__VSET1(1.0f)));
            ATTN__VSTORE(m + v, m_new);
        }
        ATTN__SFX(attn__exp_cols)(s_t, tk, m, sum);
        for (v = 0; v < ATTN__TQ; v += ATTN__W) {
            const ATTN__V a = ATTN__VLOAD(alpha + v);
            ATTN__VSTORE(l + v, ATTN__VFMA(ATTN__VLOAD(l + v), a, ATTN__VLOAD(sum + v)));
            for (c = 0; c < h->dv; ++c) ATTN__VSTORE(o_t + c * ATTN__TQ + v, ATTN__VMUL(ATTN__VLOAD(o_t + c * ATTN__TQ + v), a));
        }
        for (c = 0; c < h->dv; c += 6) /* O^T[c][:] += sum_j V[j][c] * P^T[j][:] */
            for (v = 0; v < ATTN__TQ; v += ATTN__NB)
                ATTN__SFX(attn__kernel)(o_t + c * ATTN__TQ + v, ATTN__TQ, h->v + (ptrdiff_t)j0 * h->v_rs + c, 1,
                                        h->v_rs, s_t + v, ATTN__TQ, tk, h->dv - c < 6 ? h->dv - c : 6, 1);
    }
    if (h->w) { /* the normalised weights, recomputing each score tile */
        for (j0 = 0; j0 < h->nk; j0 += ATTN__TK) {
            const int tk = h->nk - j0 < ATTN__TK ? h->nk - j0 : ATTN__TK;
            const int tv = key_end - j0 < 0 ? 0 : (key_end - j0 < tk ? key_end - j0 : tk);
            int j;
            if (tv > 0) {
                ATTN__SFX(attn__score_tile_t)(s_t, h, q_t, i0, tq, j0, tv);
                ATTN__SFX(attn__exp_cols)(s_t, tv, m, sum);
            }
            for (i = 0; i < tq; ++i) {
                float *w_i = h->w + (ptrdiff_t)(i0 + i) * h->nk + j0;
                const float inv = attn__inv_sum(l[i]);
                for (j = 0; j < tk; ++j) {
                    const float p = j < tv ? s_t[j * ATTN__TQ + i] * inv : 0.0f;
                    w_i[j] = h->w_accumulate ? w_i[j] + p : p;
                }
            }
        }
    }
    for (i = 0; i < tq; ++i) {
        const float inv = attn__inv_sum(l[i]);
        float *o_i = h->out + (ptrdiff_t)(i0 + i) * h->out_rs;
        for (c = 0; c < h->dv; ++c) o_i[c] = o_t[c * ATTN__TQ + i] * inv;
        if (h->lse) h->lse[i0 + i] = l[i] == 0.0f ? -INFINITY : m[i] * ATTN__LN2 + logf(l[i]);
    }
}

#undef ATTN__NB
#undef ATTN__KC
#endif /* ATTN__TEMPLATE */

/*
------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2026 the attention.h authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this
software dedicate any and all copyright interest in the software to the public
domain. We make this dedication in perpetuity and in the spirit of
encouragement to help facilitate our growth of the software. To that end, we
intend this dedication to be an overt act of relinquishment of all present and
future rights to this software under copyright law.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN
ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
