/* attention.h - v0.4.0 - attention on the CPU in one C99 header; public domain or MIT, see end of file

   Scaled dot-product attention, multi-head self- and cross-attention and their building blocks (projection,
   scores, softmax, weighted sum, log-sum-exp merge), float32, no dependency beyond the C standard library.
   For encoder-decoder models also the classic mechanisms: additive (Bahdanau), multiplicative (Luong) and
   hard attention, with pictures of the alignment (PNG, PGM, PPM, terminal heatmaps).

   ==================================================================================================
   CONTENTS
   ==================================================================================================

   Each name below is the text of a banner in this file (or its beginning), in file order: search for it.
   The implementation keeps the order of the data; the SIMD kernels sit in a template at the end of the
   file, because the file includes itself to compile them once per instruction set.

   This comment, the overview:
       QUICK START
       OPTION MACROS
       KERNELS AND THREADS
       CONVENTIONS
       REFERENCE                   a pointer: each type and function is documented at its declaration
       NUMERIC CONTRACT
       ERRORS (attn_result)
       REVISION HISTORY
   The declarations (always compiled), each with its documentation: what it computes, shapes,
   ownership, errors:
       API: types                  attn_result, attn_stride, attn_dims, attn_options, attn_rope, attn_mha,
                                   attn_kv_cache, with their fields
       API: helpers                attn_result_string, attn_simd_name, attn_simd_bf16dot, attn_stride_bhnd,
                                   attn_stride_bnhd, attn_alibi_slopes
       API: building blocks        attn_project, attn_project_ex, attn_scores, attn_softmax,
                                   attn_weighted_sum, attn_merge, attn_rope_apply, attn_f32_to_f16 ...,
                                   attn_f32_to_q8, attn_q8_to_f32
       API: fused attention        attn_sdpa
       API: fused attention backward  attn_sdpa_backward_workspace_size, attn_sdpa_backward (training:
                                   dq, dk, dv and the sinks' gradient)
       API: multi-head attention   attn_self_forward, attn_cross_forward, attn_mha_grads,
                                   attn_self_backward(_workspace_size), attn_cross_backward(_workspace_size)
       API: KV caches              attn_kv_append, attn_kv_step
       API: classic attention      attn_align, attn_align_options, attn_align_keys, attn_align_scores,
                                   attn_align_forward, attn_hardmax, attn_topk, attn_sample
       API: attention pictures     attn_image_options, attn_image_write, attn_image_save, attn_heatmap_print
   The implementation (with ATTENTION_IMPLEMENTATION), in the order the data flows, as issue 20 asks (it
   already was; no code was moved): validation, the kernels, the fused attention driver, the multi-head
   functions, the classic attention, the pictures:
       IMPLEMENTATION              option macros' defaults, the error hook, tile sizes, attn_result_string
       Size arithmetic and validation: every count is checked before use, never wrapped.
       Kernels: the portable dot product, matrix products and softmax rows
       Fused attention: the portable kernel (the SIMD versions are in the SIMD KERNEL TEMPLATE at the
                                   end of the file)
       SIMD selection (the one place): the kernel template instantiated per instruction set
       16-bit floats: float16 and bfloat16 conversions
       8-bit blocks (ATTN_Q8): quantisation and dequantisation
       Building blocks
       Rotary position embeddings
       Fused attention: the driver (sizes, options, work items, threads, key chunks, attn_sdpa)
       Fused attention: the backward pass (attn_sdpa_backward): FlashAttention-2's, deterministic
       Multi-head attention
       Multi-head attention: the backward pass (attn_self_backward, attn_cross_backward)
       KV caches: appending tokens, one decoding step of multi-head self-attention
       Classic attention: alignment models (additive and multiplicative scores)
       Classic attention: hard selection (hardmax, top-k, sampling)
       Classic attention: keys, scores and the attention step
       Attention pictures: PNG, PGM and PPM images, terminal heatmaps
   At the end of the file, the code that runs on x86 and ARM:
       SIMD KERNEL TEMPLATE: the AVX-512, AVX2+FMA and NEON kernels (the code that runs on x86 and ARM)
                                   exp and tanh, soft-cap and ALiBi rows, the micro-kernel, packed matrix
                                   products, few-row projections, the decoding row kernel and the fused
                                   tile kernel, written once over vector macros; "SIMD selection" defines
                                   them and includes this file again once per instruction set
   The license (MIT or public domain), after the template.

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
   | ATTN_NO_BF16DOT            | never the vdpbf16ps dot products (bfloat16 q, k, v keep float32 kernels) |
   | ATTN_HEADER_FILE           | this file's name if renamed (default "attention.h"): the implementation |
   |                            | includes itself once per instruction set                                 |
   | ATTN_NO_STDIO              | leave out <stdio.h>, attn_image_save and attn_heatmap_print             |
   | ATTN_MAX_THREADS           | the most OpenMP threads one call starts (default 256)                    |
   | ATTN_ERROR_HOOK(func, code,| called once by a call whose arguments fail validation (or ATTN_MALLOC), |
   |                 arg, rule) | before it returns: the public function's name, the attn_result, the     |
   |                            | argument as the caller wrote it ("k_s.row", "opt->kv_len[b]",           |
   |                            | "mha->layout") and the rule it broke ("row stride smaller than d_k"),   |
   |                            | static strings (default: nothing, no cost)                              |
   Compile with -fopenmp for threads (OpenMP); nothing else changes.

   ==================================================================================================
   KERNELS AND THREADS
   ==================================================================================================

   One kernel template in this file is compiled for AVX-512, AVX2+FMA (x86-64, gcc or clang, through
   target attributes: no -march needed) and NEON (aarch64), and each call picks the best the CPU has
   (attn_simd_name tells which); other compilers and targets get the portable scalar kernels. The fused
   kernel keeps a tile of 64 queries transposed (queries in the vector lanes) and walks 64-key tiles:
   scores and the output update are one 6 x 4-vector (AVX2: 6 x 2) register-blocked micro-kernel (with a
   four-row body for remainders; its loop unrolled four times) that broadcasts K and V straight from the
   caller's rows, the online softmax runs down the columns with a polynomial exp2, and key tiles past the
   causal diagonal or kv_len are skipped; causal query tiles are handed out heaviest first. Tiles of at
   most 8 queries (decoding) take a row kernel that streams K and V once, side by side (a key tile's P.V
   beside the next tile's scores; software prefetch); with more than 2048 keys their keys are cut into
   2048-key chunks processed as separate work items and merged from each chunk's running max and sum
   (flash-decoding; a log-sum-exp alone would lose the count of +inf scores and, for huge maxima, the sum).
   The sums over keys are blocked (512 keys, then the blocks), so rounding does not grow with Nk.
   Matrix products use the same micro-kernel: the multi-head functions pack each weight matrix once into
   their workspace (the threads pack it together) and sweep 256-deep slices of it with each 6-row block of
   the input held in L1; the building blocks pack 16 KiB panels on the stack. Projections of at most 8
   rows skip the packing: IN_OUT streams W's rows four at a time into the output rows; OUT_IN transposes
   [W x W] blocks of W's rows in registers, so each output keeps the packed path's order of operations.
   Threads: with -fopenmp, attn_sdpa and the multi-head functions run on attn_options.n_threads threads (0:
   omp_get_max_threads()), but never more than the call's work items nor ATTN_MAX_THREADS (256), over (batch,
   head, query tile, key chunk) work items, and projections by blocks of at most 96 rows, as many per thread
   (at most 8 rows: by blocks of output columns, IN_OUT at least 4 KiB of each W row per thread, and
   attn_kv_step's Q, K and V handed out together, so that two threads read W_k and W_v whole side by side); so
   does attn_project_ex. The other building blocks (attn_project, attn_scores, attn_softmax,
   attn_weighted_sum, attn_merge) run on the calling thread only. A caller with its own thread pool sets
   split_count = number of slices and split_index = this slice, and runs every slice (any order, any thread),
   each with its own workspace, on the same arguments: attn_sdpa and attn_project_ex. Results are bitwise
   identical whatever the thread count or split. attn_sdpa_backward runs one work item per (batch, kv head)
   (its dK, dV rows and the dQ rows of its query heads, in a fixed order: no atomics), so at most B x Hkv
   threads.


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
   - Every fallible call returns attn_result: ATTN_OK (0) or a negative code; attn_result_string describes it in a sentence.
     Arguments are validated before anything is written: on error every output is left untouched.
   - Option structs are zero-initialised by the caller: = {0} in C; in C++ attn_options opt{}; (or = {}),
     as g++ -Wextra warns about {0}. Zero means the documented default, and fields added later keep
     today's behaviour at zero.
   - Nothing allocates except attn_sdpa, attn_sdpa_backward, attn_self_forward, attn_self_backward,
     attn_cross_backward, attn_cross_forward, attn_project_ex (more
     than 8 rows), attn_align_scores and attn_align_forward when they are given no workspace: then they
     take one block through ATTN_MALLOC and free it before returning. There is no global state: every call is reentrant and thread-safe.

   ==================================================================================================
   REFERENCE
   ==================================================================================================

   Every public type and function is documented where it is declared, below this comment: what it
   computes, the shapes of its arguments, who owns what, its errors. The declarations are grouped under
   the banners "API: types", "API: helpers", "API: building blocks", "API: fused attention", "API: fused
   attention backward", "API: multi-head attention", "API: KV caches", "API: classic attention" and
   "API: attention pictures" (CONTENTS); the fields of attn_options, attn_mha, attn_mha_grads, attn_rope,
   attn_kv_cache, attn_align, attn_align_options and attn_image_options are described beside their
   structs. Search for a name.

   ==================================================================================================
   NUMERIC CONTRACT
   ==================================================================================================

   - float32 storage and arithmetic; the tests hold every function, on every kernel path, to a relative
     error of 1e-5 (max-norm error over the max-norm of the result) against a float64 reference. The SIMD
     exponential is a degree-6 polynomial (<= 2 ulp); paths differ from each other by rounding only.
   - Long key ranges: the fused kernels sum over keys in blocks of 512 keys, then over the blocks, so the
     error stays under 1e-6 (N(0,1) inputs, 4096 to 65536 keys, D 64 and 128, every path; make
     check-accuracy holds it to 2e-6) where one running sum would reach 1e-5 at 65536 keys.
   - Softmax subtracts the row max before anything else, in natural units, so logits of any finite
     magnitude are safe: masks of -FLT_MAX or -1e9 on every key give the mean of V over those keys, and
     any finite scale works. Every path gives the float64 answer (within rounding) whenever each scaled
     logit scale * (q . k) plus its mask is a float (finite, or a +-inf mask) and so are the partial dot
     sums and, on the SIMD paths, each scale * q_c (the query is scaled first); past that float32 itself
     overflows.
   - Decoding's key chunks are merged from each chunk's max and sum: the result does not depend on
     whether weights are requested (which takes no chunks), +inf counts and huge masks included.
   - A row whose keys are all masked (all -inf, all padded, before the causal diagonal, kv_len 0) gives
     weights 0, output 0 and log-sum-exp -inf, never NaN.
   - +inf scores: the weight is shared equally among the +inf entries (the limit), log-sum-exp +inf.
   - NaN: a NaN score makes its whole row NaN (weights, output, log-sum-exp); other rows are unaffected.
     A masked key's value is still multiplied by 0, so a NaN in V there poisons the row, as in PyTorch;
     keys past kv_len or past the causal limit of a query tile are never read.
   - Deterministic: the same inputs give bitwise the same outputs on one machine, whatever the workspace,
     the thread count or the split.
   - The backward pass (attn_sdpa_backward) is held to 1e-5 like the rest against float64 gradients of
     the definition (and PyTorch autograd fixtures). As in every FlashAttention-style backward pass, a row
     whose weights are nearly one-hot has a gradient P_j (dP_j - D) with D = dO . O ~ dP_j: it keeps the
     float32 rounding of the given out and lse (~|lse| 6e-8) divided by 1 - max_j P_j (measured 1e-5 to
     6e-5 of the largest gradient with few keys and sharp scores). Rows that see no key give exactly 0.

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
       ATTN_ERR_OVERFLOW   -6  an element or byte count does not fit in ptrdiff_t / size_t, or a size
                               along one axis is above INT_MAX - 128
       ATTN_ERR_OPTION     -7  an option has an invalid value (enum out of range, non-finite scale,
                               kv_len or src_len outside [0, Nk], top_k or k < 1, a uniform number
                               outside [0, 1), a negative RoPE position, a NaN or infinite ALiBi slope)
       ATTN_ERR_WORKSPACE  -8  the workspace is smaller than the size function reported
       ATTN_ERR_NOMEM      -9  ATTN_MALLOC returned NULL
       ATTN_ERR_IO        -10  a file could not be opened or written (pictures only)
       ATTN_ERR_FULL      -11  a KV cache has no room for the new tokens (len[b] + n_new > max_len)

   A code says what kind of argument is wrong; ATTN_ERROR_HOOK (OPTION MACROS) says which and why, e.g.
       #define ATTN_ERROR_HOOK(func, code, arg, rule) \
           fprintf(stderr, "%s: %s: %s: %s\n", func, attn_result_string(code), arg, rule)
   before the implementation prints "attn_sdpa: ...: k_s.row: row stride smaller than d_k". arg is a
   parameter ("n_q"), a field ("dims->n_kv", "opt->causal"), a stride ("q_s.head"), a whole view whose
   strides together break a rule ("out_s"), or an element with its index unnamed ("opt->kv_len[b]").

   ==================================================================================================
   REVISION HISTORY
   ==================================================================================================

       0.4.0 (unreleased)  breaking: attn_stride_bnhd(n, n_heads, d) takes its sizes in the order of its
                           name (was n_heads, n, d). ATTN_ERROR_HOOK; attn_options.mask_broadcast_rows;
                           the workspace size functions reject the sizes their calls reject;
                           few-row projections without packing; attn_project_ex (threads, splits);
                           KV caches: attn_kv_cache (linear or ring), attn_kv_append, attn_kv_step,
                           ATTN_ERR_FULL;
                           attn_mha weight row strides (packed QKV weights as stored);
                           attn_rope_apply (rotary position embeddings, NEOX and GPT-J styles);
                           float16 and bfloat16 conversions (attn_f32_to_f16, attn_f16_to_f32,
                           attn_f32_to_bf16, attn_bf16_to_f32), bit-exact round to nearest even;
                           sliding windows, soft-capping, sinks; ALiBi (attn_options.alibi_slopes,
                           attn_alibi_slopes). breaking: with kv_len the bottom-right diagonal ends at
                           each batch's last valid key (was Nk). attn_sdpa reads float16 and bfloat16
                           K and V (attn_dtype, attn_options.k_type, v_type); ATTN_Q8, 8-bit
                           blocks of 32 with a float32 scale, for K and V (attn_f32_to_q8,
                           attn_q8_to_f32); KV caches in float16, bfloat16 or Q8
                           (attn_kv_cache.k_type, v_type; k and v are void *). attn_sdpa's q and
                           out in float16 or bfloat16 (q_type, out_type; q and out are void *);
                           vdpbf16ps dot products for bfloat16 q, k, v on AVX512_BF16 CPUs
                           (attn_simd_bf16dot, ATTN_NO_BF16DOT). float16 / bfloat16 weights
                           (attn_mha.w_type, attn_options.w_type for attn_project_ex; the weights
                           are const void *).
                           attn_sdpa_backward and its workspace size (training: FlashAttention-2's
                           backward pass, memory linear in N, bitwise identical for any thread count,
                           every attn_sdpa option but out_weights, splits and 16-bit K/V, the sinks'
                           gradient); attn_self_backward, attn_cross_backward and attn_mha_grads
                           (multi-head attention's dx and parameter gradients in the weights' layout);
                           examples/train_tiny.c. See CHANGELOG.md.
       0.3.0 (2026-11-26)  classic attention: Bahdanau (additive) and Luong (dot, general, concat) scores
                           with keys projected once, source lengths, soft, hard, top-k and sampled
                           selection; attention pictures (PNG, PGM, PPM, terminal heatmaps); ATTN_ERR_IO,
                           ATTN_NO_STDIO.
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
#define ATTN_VERSION_MINOR 4
#define ATTN_VERSION_PATCH 0
#define ATTN_VERSION_STRING "0.4.0"

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

/* ---------------------------------------------------------------------------------------------- */
/* API: types (results, layouts, strides, sizes, options, RoPE, multi-head weights, KV caches)    */
/* ---------------------------------------------------------------------------------------------- */

/* The result of every fallible call: ATTN_OK (0) or a negative code (ERRORS, above, lists them);
   attn_result_string describes one in a sentence. */
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
    ATTN_ERR_NOMEM = -9,
    ATTN_ERR_IO = -10,
    ATTN_ERR_FULL = -11
} attn_result;

/* The orientation of a weight matrix (attn_project, attn_mha.layout, attn_align.layout). */
typedef enum attn_layout {
    ATTN_LAYOUT_IN_OUT = 0, /* W [d_in x d_out]: Y = X.W */
    ATTN_LAYOUT_OUT_IN = 1  /* W [d_out x d_in] (PyTorch nn.Linear.weight): Y = X.W^T */
} attn_layout;

/* attn_options.causal: which keys a query sees (attn_options, below, says more). */
typedef enum attn_causal {
    ATTN_CAUSAL_NONE = 0,
    ATTN_CAUSAL_TOP_LEFT = 1,    /* query i sees keys j <= i */
    ATTN_CAUSAL_BOTTOM_RIGHT = 2 /* query i sees keys j <= i + Nk - Nq (Nk: kv_len[b] when given) */
} attn_causal;

/* Element strides of a 4-D tensor [B, H, N, D] whose last axis is contiguous (CONVENTIONS; attn_stride_bhnd
   and attn_stride_bnhd give the dense layouts). */
typedef struct attn_stride {
    ptrdiff_t batch, head, row;
} attn_stride;

/* The sizes of attn_sdpa: dims = {batch, n_heads (Hq), n_kv_heads (Hkv, 0 = Hq), n_q, n_kv, d_k,
   d_v (0 = d_k)}. */
typedef struct attn_dims {
    int batch;      /* B */
    int n_heads;    /* Hq: query (and output) heads */
    int n_kv_heads; /* Hkv: key/value heads, Hq % Hkv == 0; 0 = Hq */
    int n_q;        /* Nq: queries per head */
    int n_kv;       /* Nk: keys (and values) per head */
    int d_k;        /* Dk: query and key width */
    int d_v;        /* Dv: value and output width; 0 = Dk */
} attn_dims;

/* Element types of attn_sdpa's k and v (attn_options.k_type, v_type), of its q and out (q_type, out_type:
   float32, float16 or bfloat16), of weights (attn_mha.w_type; float32, float16 or bfloat16) and of a KV
   cache's K and V (attn_kv_cache.k_type, v_type). A 16-bit element is an unsigned short bit pattern
   (attn_f32_to_f16 and attn_f32_to_bf16 make them, rounding to nearest even). ATTN_Q8 is 8-bit blocks
   (ggml's q8_0 with a float32 scale; attn_f32_to_q8 makes them, attn_q8_to_f32 reads them back): each run
   of ATTN_Q8_BLOCK (32) values along a row is one block of ATTN_Q8_BLOCK_BYTES (36) bytes, its scale d as a
   float32 (native byte order) then 32 int8 q_i, value_i = d * q_i (a float32 product): 1.125 bytes per
   value. With ATTN_Q8 the row width (Dk for k, Dv for v) and every stride (row, head, batch, in elements)
   must be multiples of 32 (else ATTN_ERR_SHAPE, ATTN_ERR_STRIDE), and element e of a tensor starts byte
   e / 32 * 36 of its block array (any alignment: the scale is read with memcpy).
   The kernels widen K and V to float32 exactly (the tile kernels a key tile at a time into the thread's
   workspace, the decoding kernel for few queries each row in its registers as it reads it: a 16-bit load
   and a widening, or 8 int8 loaded, widened to int32, converted and multiplied by the block's scale) and
   do all arithmetic in float32: the result is bitwise attn_sdpa's float32 result on the widened values (so
   within 1e-5 of the float64 attention of those values), with every option; decoding reads 2 bytes per
   element from memory (1.125 for ATTN_Q8) instead of 4, and takes about half the time (a third).
   A 16-bit q is widened exactly a query tile at a time; a 16-bit out is the float32 result rounded to
   nearest even, row by row, so it adds only its own rounding (2^-11 relative for float16, 2^-8 for
   bfloat16). The one exception to "bitwise the float32 result": with q, k and v all ATTN_BF16 and Dk
   even on a CPU with AVX512_BF16 (attn_simd_bf16dot() says), the tile kernel computes Q.K^T and P.V with
   vdpbf16ps dot products: twice the float32 rate. Each product of two bfloat16 is exact and the sums are float32, so
   Q.K^T is exact up to float32 summation as before; P (the probabilities, in [0, 1]) is rounded to
   bfloat16 for P.V only (the row sums use the float32 P), which adds at most 2^-9 relative error per
   weight, averaging out over keys (measured ~1e-3 relative on N(0,1) data, tests/test_attention.c
   sdpa_bf16dot); denormal inputs and products are read as zero (the instruction's rule), and the scale
   multiplies the finished sums, so |q.k| itself must stay below FLT_MAX (the float32 path scales q first).
   Query tiles of at most 8 rows (decoding) keep the float32 path. */
typedef enum attn_dtype {
    ATTN_F32 = 0, /* float */
    ATTN_F16 = 1, /* IEEE 754 binary16 (float16) */
    ATTN_BF16 = 2, /* bfloat16: the top 16 bits of a float */
    ATTN_Q8 = 3   /* blocks of 32: a float32 scale, then 32 int8 (36 bytes); K and V only */
} attn_dtype;

/* The ATTN_Q8 block: ATTN_Q8_BLOCK values in ATTN_Q8_BLOCK_BYTES bytes (a float32 scale, then the int8s).
   n values (n a multiple of 32) take n / ATTN_Q8_BLOCK * ATTN_Q8_BLOCK_BYTES bytes. */
#define ATTN_Q8_BLOCK 32
#define ATTN_Q8_BLOCK_BYTES 36

/* attn_options: the options of attn_sdpa, the multi-head functions, attn_kv_step and attn_project_ex (each
   says which it reads). All optional, zero = default:
       scale             0: 1/sqrt(Dk). Must be finite.
       causal            ATTN_CAUSAL_NONE; ATTN_CAUSAL_TOP_LEFT: query i sees keys j <= i (PyTorch
                         is_causal); ATTN_CAUSAL_BOTTOM_RIGHT: j <= i + Nk - Nq (the last query sees every
                         key: KV-cache decoding, FlashAttention's convention). With bottom-right and Nq > Nk
                         the first Nq - Nk queries see no key. With kv_len, Nk here is kv_len[b]: each
                         batch's last query sees its own last valid key (ragged batches, FlashAttention's
                         varlen); the same diagonal serves the window and ALiBi.
       mask, mask_stride additive float mask [Nq x Nk], added to the scaled scores (-inf hides a key).
                         mask_stride.row 0 means Nk; .batch and .head 0 broadcast over batches and heads,
                         or give a per-batch / per-head mask.
       mask_broadcast_rows  nonzero: the mask holds one row [Nk] per (batch, head), added to the scores of
                         every query (mask_stride.row unused): PyTorch's float attn_mask [B, 1, 1, Nk] is
                         mask_stride {Nk, 0, 0} with this set.
       kv_len            [B] number of valid keys per batch: keys j >= kv_len[b] are masked and never read,
                         and the bottom-right diagonal ends at key kv_len[b] - 1. Each value in [0, Nk].
       key_padding_mask  [B x Nk] bytes, nonzero = ignore that key (PyTorch's bool key_padding_mask).
       window,           a sliding window (window nonzero), FlashAttention's window_size: query i sees keys
       window_left,      g - window_left <= j <= g + window_right, g its diagonal (i with ATTN_CAUSAL_TOP_LEFT,
       window_right      i + Nk - Nq with _BOTTOM_RIGHT or no causal option, Nk = kv_len[b] when given);
                         -1: no limit on that side;
                         causal still hides j > g. Mistral's sliding_window W is window_left = W - 1 with
                         causal; key tiles wholly outside every query's window are skipped (work ~ the window).
       softcap           > 0: logit soft-capping (Gemma 2): each scaled score s becomes softcap * tanh(s /
                         softcap) before the masks are added; 0: none. Must be finite and >= 0.
       sinks             [Hq] one logit per query head that joins each row's softmax denominator but has no
                         value (gpt-oss, ggml's sinks): weights sum to less than 1, out_lse includes it; -inf
                         is no sink. NaN or +inf is an error. (-inf and NULL agree bitwise.) The sink is
                         taken as it is: not scaled, soft-capped or biased.
       alibi_slopes      [Hq] ALiBi (Press et al.; BLOOM, MPT, llama.cpp): query i's score of key j gets
                         -slope[h] * |g - j| after the soft-cap, before the masks, g its diagonal as for the
                         window; h the query head (GQA too). attn_alibi_slopes gives the standard slopes.
                         Equals llama.cpp's ALiBi and, causal, BLOOM's (a constant per row apart). Distances
                         are exact below 2^24 keys. Each slope must be finite; 0 adds nothing.
       out_lse           [B, Hq, Nq] dense: the log-sum-exp of each row of the scores as the softmax sees
                         them (scaled, soft-capped, ALiBi, masks), and the sink when there is one.
       out_weights       the attention weights (PyTorch's need_weights): [B, Hq, Nq, Nk] dense, or with
       average_weights   nonzero, [B, Nq, Nk], the mean over the Hq heads (PyTorch's default
                         average_attn_weights=True). This output is Nq x Nk per head by nature.
       alloc_user        passed to ATTN_MALLOC / ATTN_FREE.
       n_threads         OpenMP threads (with -fopenmp): 0 = omp_get_max_threads(). Ignored without OpenMP.
                         A call starts at most one thread per work item and at most ATTN_MAX_THREADS (256
                         unless defined before the implementation), so no count can exhaust the system.
       split_index,      split_count > 0: this call computes only slice split_index of split_count (a
       split_count       caller's thread pool runs all of them); attn_sdpa only (the multi-head functions
                         reject it). Both must satisfy 0 <= split_index < split_count.
   A value out of its range gives ATTN_ERR_OPTION. */
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
    int mask_broadcast_rows;               /* nonzero: mask holds one row [Nk] per (batch, head), read by
                                              every query (PyTorch's [B, 1, 1, Nk] float attn_mask) */
    int window;                            /* nonzero: a sliding window, window_left and window_right apply */
    int window_left, window_right;         /* keys before / after the diagonal a query sees; -1: no limit */
    float softcap;                         /* > 0: scaled logits s become softcap * tanh(s / softcap) */
    const float *sinks;                    /* [Hq] a logit per head in the softmax denominator only, or NULL */
    const float *alibi_slopes;             /* [Hq] per-head slopes, or NULL: scores get -slope * |g_i - j| */
    attn_dtype k_type, v_type;             /* attn_sdpa only: the element type of k and of v, ATTN_F32 (0),
                                              ATTN_F16, ATTN_BF16 or ATTN_Q8 (attn_dtype); pass the arrays as
                                              k and v, their strides in elements, any alignment. Each one not
                                              float32 adds 256 * D bytes (D = Dk for k, Dv for v) per thread
                                              to the workspace. Else ATTN_ERR_OPTION; the multi-head
                                              functions and attn_kv_step require both 0 (ATTN_ERR_OPTION,
                                              "opt->k_type": a cache's types are its own) */
    attn_dtype q_type, out_type;           /* attn_sdpa only: the element type of q and of out, ATTN_F32 (0),
                                              ATTN_F16 or ATTN_BF16 (not ATTN_Q8); strides in elements, any
                                              alignment. Each one not float32 adds 256 * D bytes (Dk for q,
                                              Dv for out) per thread to the workspace. Else ATTN_ERR_OPTION;
                                              the other functions require both 0 ("opt->q_type") */
    attn_dtype w_type;                     /* attn_project_ex only: the element type of w, ATTN_F32 (0), ATTN_F16
                                              or ATTN_BF16 (strides in elements); as attn_mha.w_type. Else
                                              ATTN_ERR_OPTION; the other functions require 0 ("opt->w_type") */
} attn_options;

/* Rotary position embeddings (RoPE). */
typedef enum attn_rope_style {
    ATTN_ROPE_NONE = 0, /* no rotation */
    ATTN_ROPE_NEOX = 1, /* rotate halves: dimension c pairs with c + n_rot/2 (GPT-NeoX, Llama, HF rotate_half) */
    ATTN_ROPE_GPTJ = 2  /* interleaved pairs: dimension 2p pairs with 2p + 1 (GPT-J, original RoFormer, ggml mode 0) */
} attn_rope_style;

/* attn_rope (zero = default), for attn_rope_apply and attn_mha.rope: style (ATTN_ROPE_NONE, _NEOX, _GPTJ);
   n_rot, the rotated dimensions (even; 0: d); theta, the frequency base (0: 10000; Llama 3: 500000);
   freq_scale, multiplies the positions (0: 1; HF's "linear" rope_scaling with factor f is 1/f, ggml's
   freq_scale as is). */
typedef struct attn_rope {
    attn_rope_style style;
    int n_rot;        /* dimensions rotated, the first n_rot of each head (even); 0 = the whole head */
    float theta;      /* frequency base; 0 = 10000 */
    float freq_scale; /* linear position scaling: positions are multiplied by it (ggml's freq_scale, 1/factor of
                         HF's "linear" rope_scaling); 0 = 1 */
} attn_rope;

/* attn_mha: the weights of multi-head attention (attn_self_forward, attn_cross_forward, attn_kv_step).
   d_model; n_heads (d_model % n_heads == 0, head_dim = d_model / n_heads); n_kv_heads (0 = n_heads;
   n_heads % n_kv_heads == 0); d_kv (cross only, 0 = d_model; self needs 0 or d_model); layout (of all four
   weights, as in attn_project); w_q [d_model x d_model], w_k and w_v [d_kv x n_kv_heads*head_dim], w_o
   [d_model x d_model] (shapes for ATTN_LAYOUT_IN_OUT; transposed for ATTN_LAYOUT_OUT_IN, e.g. PyTorch's
   in_proj_weight, in_proj_weight + E*E, + 2*E*E, out_proj.weight); b_q, b_o [d_model], b_k, b_v
   [n_kv_heads*head_dim], each optional.
   w_type: the weights stored as float16 or bfloat16 (unsigned short patterns, attn_f32_to_bf16 makes
   them): the projections widen each weight exactly as they read it (few rows: in registers, half the
   bytes of float32 read; more rows: into the packed copy) and compute in float32, so the result is
   bitwise the float32 result on the widened weights.
   w_q_stride, w_k_stride, w_v_stride, w_o_stride: each weight's row stride as stored, in elements (0: dense),
   so packed weights load as stored: GPT-2's c_attn [E x 3E] (IN_OUT) is w_q = c_attn, w_k = c_attn + E,
   w_v = c_attn + 2E with the three strides 3E; PyTorch's in_proj_weight [3E x E] (OUT_IN) is w_q = p,
   w_k = p + E*E, w_v = p + 2*E*E, dense.
   rope: rotary position embeddings (attn_rope, above) applied to Q and K after their projections and
   biases: in attn_self_forward at positions 0 .. N-1, in attn_kv_step at each batch's positions len[b] ..
   (style ATTN_ROPE_NONE, the zero default: none; cross-attention takes none, ATTN_ERR_OPTION). */
typedef struct attn_mha {
    int d_model;        /* width of x_q and out; n_heads * head_dim */
    int n_heads;        /* query heads */
    int n_kv_heads;     /* key/value heads; 0 = n_heads */
    int d_kv;           /* width of x_kv (cross-attention); 0 = d_model */
    attn_layout layout; /* orientation of w_q, w_k, w_v, w_o */
    const void *w_q;    /* [d_model x d_model] of w_type (const float * before 0.4.0: a float * still converts) */
    const void *w_k;    /* [d_kv x n_kv_heads*head_dim] */
    const void *w_v;    /* [d_kv x n_kv_heads*head_dim] */
    const void *w_o;    /* [d_model x d_model] */
    const float *b_q;   /* [d_model] or NULL */
    const float *b_k;   /* [n_kv_heads*head_dim] or NULL */
    const float *b_v;   /* [n_kv_heads*head_dim] or NULL */
    const float *b_o;   /* [d_model] or NULL */
    ptrdiff_t w_q_stride, w_k_stride, w_v_stride, w_o_stride; /* row strides of the weights as stored, in
                           floats; 0 = dense (GPT-2's c_attn [E x 3E]: w_k = w_q + E, strides 3E) */
    attn_rope rope;     /* rotary positions for Q and K (self-attention and cache steps); style 0: none */
    attn_dtype w_type;  /* the element type of the four weights: ATTN_F32 (0), ATTN_F16 or ATTN_BF16 (biases
                           stay float32); strides in elements. Else ATTN_ERR_OPTION; the backward passes
                           require 0 ("mha->w_type") */
} attn_mha;

/* A KV cache (decoding) in the caller's memory: the keys and values of the tokens seen so far, per batch and
   kv head. attn_kv_cache describes that memory: {batch, n_kv_heads, max_len, d_k, d_v (0 = d_k), k, v, len},
   k [B, Hkv, max_len, Dk] and v [B, Hkv, max_len, Dv] dense (row t of a head holds the token at position t;
   attn_stride_bhnd(Hkv, max_len, D) views it for attn_sdpa) and len [B] the tokens each batch holds (zero it
   to start; set len[b] = 0 to start a new sequence in batch b while the others go on). k and v hold
   elements of k_type and v_type (attn_dtype; zero: float32): float16 or bfloat16 take half the memory and
   ATTN_Q8 blocks 1.125 bytes per value, and a decoding step, which reads the whole cache, takes about that
   much less time (test kv_cache_types: a 16-bit or Q8 cache gives bitwise the result of a float32 cache
   holding the same rounded values). Nothing is allocated
   for it and nothing else is kept: the struct is only a description. attn_kv_append and attn_kv_step add
   tokens and advance len.
   Ring caches (sliding-window models: Mistral, Gemma's local layers). With ring nonzero the token at
   position p lives in row p % max_len, so the cache never fills and never grows; len[b] counts every token
   seen (the positions, for RoPE), up to INT_MAX - 128. A step needs opt->window with window_left >= 0 and
   window_left + n_new <= max_len (each new token's window, and the new tokens, must still be in the rows:
   size max_len = window_left + the largest n_new), else ATTN_ERR_OPTION. The keys a step may see lie in
   at most two runs of rows (before and after the wrap); each run is cut into key chunks of 2048, attended
   separately and merged exactly from their maxima and sums, so the result equals a linear cache with the
   same window (test kv_cache_ring). attn_kv_append into a ring takes at most max_len tokens
   (ATTN_ERR_FULL). */
typedef struct attn_kv_cache {
    int batch;      /* B */
    int n_kv_heads; /* Hkv */
    int max_len;    /* token slots per (batch, kv head): the most tokens a sequence may hold */
    int d_k;        /* key width */
    int d_v;        /* value width; 0 = d_k */
    void *k;        /* [B, Hkv, max_len, Dk] of k_type (float * before 0.4.0: a float * still converts) */
    void *v;        /* [B, Hkv, max_len, Dv] of v_type */
    int *len;       /* [B] tokens per batch: held (each in [0, max_len]), or with ring, seen so far */
    int ring;       /* nonzero: a ring buffer for sliding-window attention, the token at position p in row
                       p % max_len; it never fills, and a step needs opt->window with window_left + n_new
                       <= max_len */
    attn_dtype k_type, v_type; /* the element type of k and of v (attn_dtype): ATTN_F32 (0), ATTN_F16,
                       ATTN_BF16 or ATTN_Q8 (d_k, or d_v, a multiple of 32). Appends convert the new float32
                       K and V into it (round to nearest even; Q8 quantised per block), steps attend
                       reading it. Else ATTN_ERR_OPTION ("cache->k_type") */
} attn_kv_cache;

/* ---------------------------------------------------------------------------------------------- */
/* API: helpers                                                                                   */
/* ---------------------------------------------------------------------------------------------- */

/* r described in a sentence (ERRORS lists the codes), a static string. */
ATTNDEF const char *attn_result_string(attn_result r);
/* The kernels in use on this CPU: "avx512", "avx2", "neon" or "scalar" (KERNELS AND THREADS). */
ATTNDEF const char *attn_simd_name(void);
/* 1 when attn_sdpa computes with vdpbf16ps dot products on this CPU (bfloat16 q, k and v: the AVX-512
   kernels on a CPU with AVX512_BF16 and AVX512BW, not built with ATTN_NO_BF16DOT), else 0 (attn_dtype). */
ATTNDEF int attn_simd_bf16dot(void);

/* The strides of a dense [B, H, N, D] tensor: attn_stride_bhnd(H, N, D) -> {H*N*D, N*D, D}. Each helper takes
   its sizes in the order of its name. */
ATTNDEF attn_stride attn_stride_bhnd(int n_heads, int n, int d);
/* The interleaved [B, N, H*D] output of a projection viewed as [B, H, N, D]: attn_stride_bnhd(N, H, D) ->
   {N*H*D, D, H*D}. */
ATTNDEF attn_stride attn_stride_bnhd(int n, int n_heads, int d);
/* slopes [n_heads] = ggml's and BLOOM's ALiBi slopes (for attn_options.alibi_slopes): with
   n = 2^floor(log2(n_heads)), slope h = 2^(-max_bias (h + 1) / n) for h < n, else
   2^(-max_bias (2 (h - n) + 1) / 2n); max_bias 0 means 8 (8 heads: 1/2, 1/4, ..., 1/256).
   Errors: ATTN_ERR_NULL, ATTN_ERR_SHAPE (n_heads < 1), ATTN_ERR_OPTION (max_bias negative or not finite). */
ATTNDEF attn_result attn_alibi_slopes(float *slopes, int n_heads, float max_bias);

/* ---------------------------------------------------------------------------------------------- */
/* API: building blocks (projection, scores, softmax, weighted sum, merge, RoPE, 16/8-bit K, V)   */
/* ---------------------------------------------------------------------------------------------- */

/* Building blocks: each never allocates, but attn_project_ex given no workspace; at most about 17 KiB of
   stack. Matrices are row-major with a row stride in floats; the caller owns every buffer. Errors common to
   all: ATTN_ERR_NULL (a required pointer), ATTN_ERR_SHAPE (a size < 1), ATTN_ERR_STRIDE (a row stride
   smaller than its row), ATTN_ERR_OVERFLOW (CONVENTIONS, ERRORS). */

/* Y[n x d_out] = X[n x d_in] . W + bias. layout ATTN_LAYOUT_IN_OUT (0): W is [d_in x d_out] (Q = X.W^Q);
   ATTN_LAYOUT_OUT_IN: W is [d_out x d_in] as PyTorch stores nn.Linear.weight and in_proj_weight (Y = X.W^T),
   loaded as is. w_stride is the row stride of W as stored. bias [d_out] or NULL.
   At most 8 rows (decoding) read each weight once from W as stored, with no packing; a row's result is
   bitwise the same whatever n. Runs on the calling thread. Errors: the common ones, ATTN_ERR_OPTION
   (layout out of range). */
ATTNDEF attn_result attn_project(float *y, ptrdiff_t y_stride, const float *x, ptrdiff_t x_stride,
                                 const float *w, ptrdiff_t w_stride, attn_layout layout, const float *bias,
                                 int n, int d_in, int d_out);
/* *bytes = the workspace attn_project_ex needs for these sizes and options (0 for n <= 8 rows; else W packed,
   of the slice's columns). */
ATTNDEF attn_result attn_project_workspace_size(size_t *bytes, int n, int d_in, int d_out, const attn_options *opt);
/* attn_project on opt->n_threads OpenMP threads (0: omp_get_max_threads(); opt NULL: defaults), or with
   split_count > 0 only slice split_index of the output columns (whole blocks of 64 columns, as even as they
   go; a slice past the last block does nothing): a caller's thread pool runs every slice, each with its own
   workspace. Bitwise identical to attn_project for any thread count or split. n <= 8 rows: the threads split
   the output columns (IN_OUT: one slice per thread of at least 4 KiB of each W row, so a narrow W takes fewer
   threads: two threads on 2 KiB of every row read DRAM slower than one on whole rows) and the workspace size
   is 0. More rows: W is packed into the workspace (of the slice's columns) and the threads split the rows;
   with workspace NULL a block is taken through ATTN_MALLOC(opt->alloc_user) and freed. Other options are
   ignored. Errors as attn_project, plus n_threads < 0, a split index outside [0, split_count)
   (ATTN_ERR_OPTION), a workspace smaller than reported (ATTN_ERR_WORKSPACE) and ATTN_ERR_NOMEM. w holds
   float32, or float16 / bfloat16 bit patterns as opt->w_type says (w_stride in elements; bitwise the float32
   result on the widened weights, reading half the bytes: the few-row kernels widen in registers). */
ATTNDEF attn_result attn_project_ex(float *y, ptrdiff_t y_stride, const float *x, ptrdiff_t x_stride,
                                    const void *w, ptrdiff_t w_stride, attn_layout layout, const float *bias,
                                    int n, int d_in, int d_out, const attn_options *opt, void *workspace,
                                    size_t workspace_bytes);

/* S[n_q x n_k] = scale . Q[n_q x d_k] . K[n_k x d_k]^T; scale 0 means 1/sqrt(d_k). Errors: the common ones,
   ATTN_ERR_OPTION (scale not finite). */
ATTNDEF attn_result attn_scores(float *s, ptrdiff_t s_stride, const float *q, ptrdiff_t q_stride,
                                const float *k, ptrdiff_t k_stride, int n_q, int n_k, int d_k, float scale);

/* P = softmax over each row of S[n_rows x n_cols], stable (the row max is subtracted). -inf entries are
   masked. lse [n_rows] (or NULL) receives log(sum_j exp(s_ij)). p may be s (same stride): in place. */
ATTNDEF attn_result attn_softmax(float *p, ptrdiff_t p_stride, const float *s, ptrdiff_t s_stride,
                                 int n_rows, int n_cols, float *lse);

/* O[n_q x d_v] = P[n_q x n_k] . V[n_k x d_v]. */
ATTNDEF attn_result attn_weighted_sum(float *o, ptrdiff_t o_stride, const float *p, ptrdiff_t p_stride,
                                      const float *v, ptrdiff_t v_stride, int n_q, int n_k, int d_v);

/* Combines two attention results over disjoint key sets, O_a, O_b [n_rows x d_v] with their log-sum-exps
   lse_a, lse_b [n_rows], into the result over the union:
       lse = log(exp(lse_a) + exp(lse_b)),  O = exp(lse_a - lse) O_a + exp(lse_b - lse) O_b.
   lse (or NULL) receives the merged log-sum-exp. o may be o_a or o_b and lse may be lse_a or lse_b (in
   place). A side with lse -inf (no visible key) contributes nothing, whatever its O holds. A log-sum-exp does
   not say how many +inf scores it came from: two sides with lse +inf weigh 1:1 (so merging A = {+inf, +inf}
   with B = {+inf} gives the mean of O_a and O_b, not 2:1), and one +inf side takes all the weight.
   attn_sdpa's own key chunks carry each chunk's max and sum instead, and are exact. */
ATTNDEF attn_result attn_merge(float *o, ptrdiff_t o_stride, float *lse, const float *o_a,
                               ptrdiff_t o_a_stride, const float *lse_a, const float *o_b,
                               ptrdiff_t o_b_stride, const float *lse_b, int n_rows, int d_v);

/* Rotary position embeddings (RoPE) in place on x [B, H, N, D], any view x_s (the Q or K of a packed QKV
   buffer: row stride 3*H*D). Row t of batch b is at position pos = pos0[b] + t (pos0 [B], or NULL: t). Each
   pair p < n_rot/2, with angle = pos * freq_scale * theta^(-2p/n_rot), becomes
       (x_a, x_b) <- (x_a cos - x_b sin, x_a sin + x_b cos),
   a = p, b = p + n_rot/2 for ATTN_ROPE_NEOX (GPT-NeoX, Llama, HF's rotate_half); a = 2p, b = 2p + 1 for
   ATTN_ROPE_GPTJ (GPT-J, RoFormer, ggml mode 0). Dimensions n_rot to d - 1 are kept (partial rotary,
   GPT-NeoX's and Phi's rotary_pct). Rotate Q and K, not V: the scores q_i . k_j then depend on i - j only.
   The angle and its cos and sin are computed in double and rounded to float once, so positions up to INT_MAX
   keep full accuracy (a float angle is off by ~1e-2 rad at position 1e5); this is more exact than PyTorch's
   and HF's float32 cos/sin tables, which differ from it by their own rounding. cos and sin are computed once
   per (batch, row, pair) for all the heads; nothing is allocated. rope NULL or style ATTN_ROPE_NONE: the
   arguments are validated, x is left as it is. RoPE is a pass over Q and K before attention (as ggml_rope
   and PyTorch models apply it), not a step inside the fused kernel, which would rotate every key once per
   query tile: the multi-head functions and attn_kv_step do it as they project (attn_mha.rope); callers of
   attn_sdpa call this first.
   Errors: x NULL; a size < 1; x_s breaks an output's rules (ATTN_ERR_STRIDE); style out of range, n_rot odd,
   negative or > d (or 0 with d odd), theta or freq_scale not finite or negative, a negative pos0[b]
   (ATTN_ERR_OPTION); pos0[b] + n - 1 > INT_MAX (ATTN_ERR_OVERFLOW). */
ATTNDEF attn_result attn_rope_apply(float *x, attn_stride x_s, int batch, int n_heads, int n, int d,
                                    const int *pos0, const attn_rope *rope);

/* 16-bit float storage: n values of src converted into dst, a float16 (IEEE 754 binary16) or bfloat16 bit
   pattern per unsigned short, rounding to nearest even. Any alignment of the 16-bit arrays (unaligned loads
   and stores); dst must not overlap src. n == 0 does nothing (NULL allowed); NULL with n > 0 is
   ATTN_ERR_NULL, nothing written. Every path gives the bits of the portable scalar reference.
   Instructions: x86 AVX2 machines F16C (vcvtps2ph with round-to-nearest in its immediate, vcvtph2ps; every
   AVX2+FMA CPU has F16C, as in x86-64-v3), AVX-512 machines their 512-bit forms; bfloat16 by an integer
   rounding (bits + 0x7fff + bit 16, NaN lanes blended) and a widening 16-bit shift, on AVX2 and AVX-512
   alike: AVX512_BF16's vcvtneps2bf16 flushes subnormal inputs to zero, so it is not used. aarch64: NEON
   fcvtn / fcvtl and the same integer bfloat16 sequence. The scalar path (ATTN_NO_SIMD, other targets) is the
   bit-manipulation reference. The SIMD paths assume the default floating-point environment (no DAZ in MXCSR;
   FPCR's FZ, DN and AHP clear, round to nearest), as set at startup. */

/* float32 -> float16: round to nearest, ties to even; subnormals kept (multiples of 2^-24; below 2^-25 in
   magnitude, and exactly 2^-25, to +-0); |x| >= 65520 (half-way past the largest float16, 65504) and +-inf to
   +-inf; -0 kept; NaN to the quiet NaN sign | 0x7e00 | payload bits 22..13 (0x7fc00000 gives 0x7e00). */
ATTNDEF attn_result attn_f32_to_f16(unsigned short *dst, const float *src, size_t n);
/* float16 -> float32: exact (a signalling NaN comes back quiet: sign | 0x7fc00000 | payload << 13). */
ATTNDEF attn_result attn_f16_to_f32(float *dst, const unsigned short *src, size_t n);
/* float32 -> bfloat16: the top 16 bits rounded to nearest even (subnormals too; finite values past 0x7f7f8000
   round to +-inf, as RNE says); inf kept; NaN keeps its sign and top 7 payload bits with the quiet bit
   (0x0040) set, never rounded into inf. */
ATTNDEF attn_result attn_f32_to_bf16(unsigned short *dst, const float *src, size_t n);
/* bfloat16 -> float32: exact, the bits shifted left by 16 (NaN payloads unchanged). */
ATTNDEF attn_result attn_bf16_to_f32(float *dst, const unsigned short *src, size_t n);

/* 8-bit blocks (ATTN_Q8, ggml's q8_0 with a float32 scale; attn_dtype has the layout): n values (a multiple
   of ATTN_Q8_BLOCK, 32, else ATTN_ERR_SHAPE, nothing written) in n / 32 blocks of ATTN_Q8_BLOCK_BYTES (36)
   bytes, any alignment; dst must not overlap src. n == 0 does nothing (NULL allowed); NULL with n > 0 is
   ATTN_ERR_NULL. Every path gives the bytes (and floats) of the portable scalar reference.
   attn_f32_to_q8, per block of x_0 .. x_31: amax = max |x_i|; d = amax / 127 (a float32 division, rounded
   to nearest); q_i = x_i / d (the float32 quotient) rounded to the nearest integer, ties to even, clamped
   to [-127, 127] (the clamp only acts when d is subnormal); the block stores d then the q_i. So |q_i| <=
   127, the largest |x_i| maps to +-127, and value_i = d * q_i is within d/2 (plus d's rounding) of x_i:
   relative to amax, 1/254 at most. An all-zero block (or one so small that d rounds to 0: amax < 2^-143)
   gets d = 0 and q_i = 0. A block holding a NaN or an infinity gets d = NaN (0x7fc00000) and q_i = 0: it
   reads back as 32 NaNs (propagated, as a NaN in float32 K or V would be; nothing is rejected). */
ATTNDEF attn_result attn_f32_to_q8(void *dst, const float *src, size_t n);
/* 8-bit blocks -> float32: value_i = d * (float)q_i, one float32 product rounded to nearest (a NaN scale gives
   NaNs, d = 0 zeros). AVX2 and AVX-512: int8 widened to int32
   (vpmovsxbd), converted (vcvtdq2ps) and multiplied by d; NEON: sxtl, scvtf, fmul. */
ATTNDEF attn_result attn_q8_to_f32(float *dst, const void *src, size_t n);

/* ---------------------------------------------------------------------------------------------- */
/* API: fused attention (scaled dot-product attention)                                            */
/* ---------------------------------------------------------------------------------------------- */

/* *bytes = the workspace attn_sdpa needs for the same dims and options (the thread count matters: n_threads 0
   is omp_get_max_threads() when asked; size a reused buffer for the largest call, e.g. a KV cache's
   max_len). It rejects every size and option attn_sdpa rejects, with the same code, except the strides (it
   has none) and the values of kv_len, which it does not read (a buffer can be sized before the lengths are
   known); the same holds for attn_self_workspace_size and attn_cross_workspace_size against their calls. */
ATTNDEF attn_result attn_sdpa_workspace_size(size_t *bytes, const attn_dims *dims, const attn_options *opt);
/* Fused scaled dot-product attention: out [B, Hq, Nq, Dv] = softmax(scale . Q.K^T + masks) . V, per batch b
   and query head h, reading kv head h / (Hq / Hkv) (grouped-query; Hkv = 1 is multi-query):
       q [B, Hq, Nq, Dk], k [B, Hkv, Nk, Dk], v [B, Hkv, Nk, Dv], each with its attn_stride.
   k and v are float32, float16 / bfloat16 bit patterns or ATTN_Q8 blocks as opt->k_type and opt->v_type say
   (attn_dtype; strides in elements of the stored type, for Q8 multiples of 32); q and out float32, or
   float16 / bfloat16 as opt->q_type and opt->out_type say (strides in elements).
   dims = {batch, n_heads (Hq), n_kv_heads (Hkv, 0 = Hq), n_q, n_kv, d_k, d_v (0 = d_k)}; opt (NULL: the
   defaults): attn_options, every field of which applies.
   The Nq x Nk matrix is never materialised: the kernel walks query tiles against key tiles with an online
   softmax, so the workspace is a few tiles per thread, 256 * (Dk + 2 Dv + 70) bytes, independent of Nq and
   Nk (plus 256 Dk bytes for a K and 256 Dv for a V stored in 16 or 8 bits, 256 Dk for a 16-bit q and 256 Dv
   for a 16-bit out; plus, for key chunks, B * Hq * Nq * (Dv + 2) floats per 2048-key chunk);
   attn_sdpa_workspace_size tells. workspace NULL: allocated and freed inside. A workspace smaller than
   reported gives ATTN_ERR_WORKSPACE. The caller owns every buffer; nothing is kept after the call.
   Errors: ATTN_ERR_NULL, ATTN_ERR_SHAPE, ATTN_ERR_KV_HEADS (Hq not a multiple of Hkv), ATTN_ERR_STRIDE,
   ATTN_ERR_OVERFLOW, ATTN_ERR_OPTION, ATTN_ERR_WORKSPACE, ATTN_ERR_NOMEM. */
ATTNDEF attn_result attn_sdpa(void *out, attn_stride out_s, const void *q, attn_stride q_s, const void *k,
                              attn_stride k_s, const void *v, attn_stride v_s, const attn_dims *dims,
                              const attn_options *opt, void *workspace, size_t workspace_bytes);

/* ---------------------------------------------------------------------------------------------- */
/* API: fused attention backward (training: the gradients of attn_sdpa)                           */
/* ---------------------------------------------------------------------------------------------- */

/* *bytes = the workspace attn_sdpa_backward needs for the same dims and options (n_threads matters, as for
   attn_sdpa_workspace_size; kv_len, sinks and alibi_slopes are not read). Rejects what attn_sdpa_backward
   rejects, except the strides. */
ATTNDEF attn_result attn_sdpa_backward_workspace_size(size_t *bytes, const attn_dims *dims, const attn_options *opt);
/* The backward pass of attn_sdpa (FlashAttention-2's, memory linear in N): given the forward's inputs q, k, v,
   its output out and log-sum-exp lse (attn_sdpa with opt->out_lse), and dout = dL/dout, the gradients
       dq [B, Hq, Nq, Dk], dk [B, Hkv, Nk, Dk], dv [B, Hkv, Nk, Dv]   (each with its attn_stride)
       dsinks [Hq] (optional: NULL, or opt->sinks' gradient summed over batches and queries; 0 without sinks)
   from q [B, Hq, Nq, Dk], k [B, Hkv, Nk, Dk], v [B, Hkv, Nk, Dv], out and dout [B, Hq, Nq, Dv] (strided
   views) and lse [B, Hq, Nq] dense. dims and opt as given to attn_sdpa (the same struct may be reused:
   out_lse is ignored here). Per row i of a (batch, query head), with the scores s_ij the forward's (scaled,
   soft-capped, ALiBi, masks) recomputed tile by tile:
       P_ij = exp(s_ij - lse_i), D_i = dout_i . out_i, dS_ij = P_ij (dout_i . v_j - D_i)
       dv_j += sum_i P_ij dout_i, dq_i += scale sum_j dS'_ij k_j, dk_j += scale sum_i dS'_ij q_i
   with dS' = dS, or with softcap c, dS . (1 - tanh^2(u/c)) for u = scale q_i . k_j (ALiBi and the masks add
   constants: no term); dsinks_h = -sum_{b,i} exp(sink_h - lse_bhi) D_bhi. Grouped-query heads: dk and dv
   are summed over the Hq / Hkv query heads of a group. Keys that no query sees (masked, past kv_len) get 0;
   a fully masked row (lse -inf) gives 0, never NaN. +inf scores have no derivative: such rows are not
   meaningful. Every option of attn_sdpa applies except out_weights and split_count (ATTN_ERR_OPTION).
   Work: five matrix products per visible (query tile, key tile) pair of each head, on the SIMD kernels.
   Threads: one work item per (batch, kv head), which owns its dk and dv rows and the dq rows of its
   query heads and sums in one fixed order, so the result is bitwise the same for any thread count
   (B x Hkv items: at most that many threads). The workspace is a few tiles per thread, 256 * (2 Dk + Dv
   + 259) bytes, independent of Nq and Nk; workspace NULL: allocated and freed inside.
   Errors: as attn_sdpa (ATTN_ERR_NULL for a missing input, output or lse). */
ATTNDEF attn_result attn_sdpa_backward(float *dq, attn_stride dq_s, float *dk, attn_stride dk_s, float *dv,
                                       attn_stride dv_s, float *dsinks, const float *q, attn_stride q_s,
                                       const float *k, attn_stride k_s, const float *v, attn_stride v_s,
                                       const float *out, attn_stride out_s, const float *dout, attn_stride dout_s,
                                       const float *lse, const attn_dims *dims, const attn_options *opt,
                                       void *workspace, size_t workspace_bytes);


/* ---------------------------------------------------------------------------------------------- */
/* API: multi-head attention (self- and cross-attention with their projections)                   */
/* ---------------------------------------------------------------------------------------------- */

/* Multi-head attention: x, x_q, x_kv and out dense, batch first, as PyTorch's batch_first tensors; the
   weights in attn_mha (API: types). The options of attn_sdpa apply per head; scale 0 is 1/sqrt(head_dim);
   out_lse is [B, Hq, Nq]; out_weights [B, Hq, Nq, Nk] or averaged [B, Nq, Nk]. The workspace holds
   attn_sdpa's, one packed weight matrix (max(d_model, d_kv) x d_model rounded up to 64 columns) and the
   projected Q, K, V and the attention output of one batch. workspace NULL: allocated and freed inside.
   opt NULL: the defaults. Errors: as attn_sdpa, plus ATTN_ERR_HEADS (d_model % n_heads != 0); split_count
   > 0, a layout out of range and an invalid rope are ATTN_ERR_OPTION. */

/* *bytes = the workspace of attn_self_forward for these sizes, weights and options. */
ATTNDEF attn_result attn_self_workspace_size(size_t *bytes, int batch, int n, const attn_mha *mha,
                                             const attn_options *opt);
/* out [B, N, d_model] = (softmax(scale . Q.K^T + masks) . V) . W_o + b_o, per head, with Q = x.W_q + b_q,
   K = x.W_k + b_k, V = x.W_v + b_v; x [B, N, d_model]. */
ATTNDEF attn_result attn_self_forward(float *out, const float *x, int batch, int n, const attn_mha *mha,
                                      const attn_options *opt, void *workspace, size_t workspace_bytes);

/* *bytes = the workspace of attn_cross_forward for these sizes, weights and options. */
ATTNDEF attn_result attn_cross_workspace_size(size_t *bytes, int batch, int n_q, int n_kv,
                                              const attn_mha *mha, const attn_options *opt);
/* As attn_self_forward, with Q from x_q [B, Nq, d_model] and K, V from x_kv [B, Nk, d_kv] (encoder-decoder
   attention; PyTorch's kdim = vdim = d_kv); out [B, Nq, d_model]. */
ATTNDEF attn_result attn_cross_forward(float *out, const float *x_q, const float *x_kv, int batch, int n_q,
                                       int n_kv, const attn_mha *mha, const attn_options *opt,
                                       void *workspace, size_t workspace_bytes);

/* The gradients of multi-head attention's parameters (attn_self_backward): each in the shape, layout and
   row stride of its weight in attn_mha (packed QKV weights get packed QKV gradients), written, or added
   to with accumulate (gradient accumulation over micro-batches). The four weight gradients are required;
   a bias gradient (or sinks [n_heads], for opt->sinks) is computed when its pointer is not NULL. */
typedef struct attn_mha_grads {
    float *w_q, *w_k, *w_v, *w_o; /* dL/dW, as the weights are stored */
    float *b_q, *b_k, *b_v, *b_o; /* dL/db, or NULL */
    float *sinks;                 /* [n_heads] dL/d opt->sinks, or NULL */
    int accumulate;               /* nonzero: add into the gradients; 0: overwrite them */
} attn_mha_grads;

/* *bytes = the workspace of attn_self_backward for these sizes, weights and options. */
ATTNDEF attn_result attn_self_backward_workspace_size(size_t *bytes, int batch, int n, const attn_mha *mha,
                                                      const attn_options *opt);
/* The backward pass of attn_self_forward: from x [B, N, d_model] and dout = dL/dout [B, N, d_model], dx
   [B, N, d_model] (or NULL: not computed) and the parameters' gradients in *grads. The forward is
   recomputed per batch (projections, RoPE, attn_sdpa with its log-sum-exp), then: dA = dout . W_o^T,
   attn_sdpa_backward, RoPE's inverse rotation on dQ and dK, dx = dQ . W_q^T + dK . W_k^T + dV . W_v^T,
   dW = x^T . dY (IN_OUT; dY^T . x for OUT_IN) and db = the column sums of dY for each projection. The
   options of attn_self_forward apply, except out_weights (ATTN_ERR_OPTION; out_lse is ignored). Products
   and attention run on attn_options.n_threads threads, deterministic for any count. The workspace holds
   one batch's Q, K, V, attention output and their gradients (about 8 N d_model floats), a transposed
   operand, a product and the larger of a packed weight and a packed [N x d_model] gradient; NULL:
   allocated inside.
   Errors: as attn_self_forward, plus ATTN_ERR_NULL for dout, grads or a weight gradient. */
ATTNDEF attn_result attn_self_backward(float *dx, const attn_mha_grads *grads, const float *x, const float *dout,
                                       int batch, int n, const attn_mha *mha, const attn_options *opt,
                                       void *workspace, size_t workspace_bytes);
/* *bytes = the workspace of attn_cross_backward for these sizes, weights and options. */
ATTNDEF attn_result attn_cross_backward_workspace_size(size_t *bytes, int batch, int n_q, int n_kv,
                                                       const attn_mha *mha, const attn_options *opt);
/* The backward pass of attn_cross_forward, as attn_self_backward: from x_q [B, Nq, d_model], x_kv [B, Nk, d_kv]
   and dout [B, Nq, d_model], dx_q [B, Nq, d_model] (through W_q) and dx_kv [B, Nk, d_kv] (through W_k and
   W_v), each optional (NULL), and the parameters' gradients in *grads. */
ATTNDEF attn_result attn_cross_backward(float *dx_q, float *dx_kv, const attn_mha_grads *grads, const float *x_q,
                                        const float *x_kv, const float *dout, int batch, int n_q, int n_kv,
                                        const attn_mha *mha, const attn_options *opt, void *workspace,
                                        size_t workspace_bytes);


/* ---------------------------------------------------------------------------------------------- */
/* API: KV caches (decoding: appending tokens, one step of multi-head self-attention)             */
/* ---------------------------------------------------------------------------------------------- */

/* The cache is attn_kv_cache (API: types), memory the caller owns. Errors: ATTN_ERR_NULL, ATTN_ERR_SHAPE,
   ATTN_ERR_STRIDE, ATTN_ERR_OVERFLOW as everywhere; a batch without room for n_new more tokens gives
   ATTN_ERR_FULL, with the cache, len and out untouched (as for every error); a len[b] outside [0, max_len]
   gives ATTN_ERR_OPTION. */

/* Appends n_new tokens to every batch of the cache: copies k [B, Hkv, n_new, Dk] and v [B, Hkv, n_new, Dv]
   (float32 attn_stride views) to rows len[b] .. len[b] + n_new - 1 of each batch, converted to the cache's
   k_type and v_type (attn_f32_to_f16, attn_f32_to_bf16, attn_f32_to_q8 per row: round to nearest even),
   and adds n_new to every len[b]. For callers that project K and V themselves; then attn_sdpa over the
   cache with kv_len = cache.len, ATTN_CAUSAL_BOTTOM_RIGHT and k_type, v_type = the cache's attends over
   each batch's tokens. */
ATTNDEF attn_result attn_kv_append(attn_kv_cache *cache, const float *k, attn_stride k_s, const float *v,
                                   attn_stride v_s, int n_new);
/* *bytes = the workspace of attn_kv_step. The size for n_new covers every step of n_new tokens up to
   max_len: size one buffer for the largest of the n_new you use (a prefill chunk and 1). */
ATTNDEF attn_result attn_kv_step_workspace_size(size_t *bytes, const attn_kv_cache *cache, int n_new,
                                                const attn_mha *mha, const attn_options *opt);
/* One step of causal multi-head self-attention over the cache, for a prefill chunk or one token per batch:
   x [B, n_new, d_model] are each batch's next n_new tokens. It projects Q, K, V of all B * n_new rows at once
   (up to 8 rows: each weight read once for the whole batch), appends K and V at rows len[b] .., attends each
   new token over its own batch's tokens up to itself (kv_len = the new len, bottom-right causal from each
   batch's own length: ragged batches; Q and K rotated to positions len[b] .. when mha->rope is set), applies
   W_o into out [B, n_new, d_model], and adds n_new to every len[b]. The result equals attn_self_forward with
   ATTN_CAUSAL_TOP_LEFT over each batch's whole sequence (tests/test_attention.c kv_cache_decode,
   kv_cache_ragged) and is bitwise the same for any thread count. The cache's n_kv_heads and d_k (and d_v)
   must be the model's kv heads and head_dim; B is cache->batch. Options: scale, window, softcap, sinks,
   out_lse [B, Hq, n_new], n_threads, alloc_user apply; causal must be ATTN_CAUSAL_NONE or _BOTTOM_RIGHT (the
   step is causal either way); kv_len, mask, key_padding_mask and out_weights must be unset
   (ATTN_ERR_OPTION), and so must opt->k_type and v_type: the step appends in, and attends reading, the
   cache's own k_type and v_type. Prompts of different lengths: prefill each batch alone through a one-batch view of the
   cache (k + b * Hkv * max_len * Dk, v likewise, len + b). workspace NULL: allocated and freed inside.
   Errors: as attn_self_forward, plus ATTN_ERR_FULL. */
ATTNDEF attn_result attn_kv_step(float *out, attn_kv_cache *cache, const float *x, int n_new, const attn_mha *mha,
                                 const attn_options *opt, void *workspace, size_t workspace_bytes);

#ifdef __cplusplus
}
#endif

/* ---------------------------------------------------------------------------------------------- */
/* API: classic attention (encoder-decoder: additive and multiplicative scores, soft and hard     */
/* selection); the pictures follow                                                                */
/* ---------------------------------------------------------------------------------------------- */

#ifndef ATTN_NO_STDIO
#include <stdio.h> /* FILE: attn_image_save, attn_heatmap_print */
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Classic attention (encoder-decoder models: Bahdanau, Luong, hard attention). s are decoder states
   [B, Nq, d_s] (the queries), h encoder states [B, Nk, d_h] (keys and values). [B, N, D] tensors are
   attn_stride views whose head stride is unused (leave it 0); attn_stride_bhnd(1, N, D) is dense.
   Errors of the functions below: ATTN_ERR_NULL, ATTN_ERR_SHAPE, ATTN_ERR_STRIDE, ATTN_ERR_OVERFLOW;
   ATTN_ERR_OPTION for an enum out of range, a non-finite scale or an out-of-range option value. */

/* The score of decoder state s_i (query) against encoder state h_j (key), times attn_align.scale. */
typedef enum attn_score {
    ATTN_SCORE_DOT = 0,     /* Luong dot:     e_ij = s_i . h_j                            (d_s == d_h) */
    ATTN_SCORE_GENERAL = 1, /* Luong general: e_ij = s_i^T W h_j                                       */
    ATTN_SCORE_CONCAT = 2,  /* Luong concat:  e_ij = v^T tanh(W [s_i; h_j] + b)                        */
    ATTN_SCORE_ADDITIVE = 3 /* Bahdanau:      e_ij = v^T tanh(W_s s_i + W_h h_j + b)                   */
} attn_score;

/* The alignment model: a score function and its weights {d_s, d_h, d_a, score, layout, w, w_s, w_h (each with
   a row stride as stored, 0 = dense), b, v, scale}:
       ATTN_SCORE_DOT       e_ij = s_i . h_j                        d_s == d_h
       ATTN_SCORE_GENERAL   e_ij = s_i^T W h_j (+ s_i . b)          w [d_h x d_s], b [d_s]
       ATTN_SCORE_CONCAT    e_ij = v . tanh(W [s_i; h_j] + b)       w [(d_s + d_h) x d_a], b and v [d_a]
       ATTN_SCORE_ADDITIVE  e_ij = v . tanh(W_s s_i + W_h h_j + b)  w_s [d_s x d_a], w_h [d_h x d_a], b, v
   every score times scale (0 = 1, unscaled; 1/sqrt(d_h) gives a scaled dot). The weight shapes are
   ATTN_LAYOUT_IN_OUT (x . W, TensorFlow's Dense kernel); ATTN_LAYOUT_OUT_IN stores them transposed as
   PyTorch's nn.Linear.weight (GENERAL: nn.Linear(d_h, d_s); CONCAT: nn.Linear(d_s + d_h, d_a) applied to
   torch.cat((s, h))). b is optional. The key of h_j is k_j = W_h h_j + b, d_key wide: d_h (DOT: h_j
   itself), d_s (GENERAL: W h_j + b), d_a (CONCAT: W's h block; ADDITIVE). */
typedef struct attn_align {
    int d_s;               /* decoder state (query) width */
    int d_h;               /* encoder state (key and value) width */
    int d_a;               /* attention width of CONCAT and ADDITIVE (length of v) */
    attn_score score;      /* ATTN_SCORE_DOT (0), _GENERAL, _CONCAT, _ADDITIVE */
    attn_layout layout;    /* orientation of w, w_s, w_h, as in attn_project */
    const float *w;        /* GENERAL: [d_h x d_s] (h . w = W h_j); CONCAT: [(d_s + d_h) x d_a] */
    ptrdiff_t w_stride;
    const float *w_s;      /* ADDITIVE: W_s [d_s x d_a] */
    ptrdiff_t w_s_stride;
    const float *w_h;      /* ADDITIVE: W_h [d_h x d_a] */
    ptrdiff_t w_h_stride;
    const float *b;        /* GENERAL [d_s], CONCAT and ADDITIVE [d_a]: bias of the key projection, or NULL */
    const float *v;        /* CONCAT, ADDITIVE: [d_a] */
    float scale;           /* every score is multiplied by it; 0 = 1 (unscaled, as Luong and Bahdanau) */
} attn_align;

/* How the weights of a row are chosen from its scores. */
typedef enum attn_select {
    ATTN_SELECT_SOFT = 0,  /* softmax */
    ATTN_SELECT_HARD = 1,  /* one-hot at the argmax (TensorFlow Addons' hardmax) */
    ATTN_SELECT_TOPK = 2,  /* softmax over the top_k largest scores, 0 elsewhere */
    ATTN_SELECT_SAMPLE = 3 /* one-hot at an index drawn from the softmax */
} attn_select;

/* A uniform random number in [0, 1); values outside are clamped into it (NaN: 0). */
typedef float (*attn_rand_fn)(void *user);

/* attn_align_options (all optional, zero = default), for attn_align_scores (only src_len and alloc_user) and
   attn_align_forward:
       src_len       [B] valid encoder positions, each in [0, Nk]; NULL: all Nk
       mode          ATTN_SELECT_SOFT: softmax; _HARD: one-hot at the argmax (TensorFlow Addons' hardmax);
                     _TOPK: softmax over the top_k largest scores (top_k >= 1), 0 elsewhere; _SAMPLE: one-hot
                     at an index drawn from the softmax, with uniform[b*Nq + i] in [0, 1), or when uniform
                     is NULL rand_fn(rand_user), called once per row in row order (masked rows too), its
                     value clamped into [0, 1) (NaN: 0)
       out_weights   [B, Nq, Nk] dense: the weights applied
       out_index     [B x Nq]: the argmax (SOFT, HARD, TOPK) or the drawn index (SAMPLE); -1 for a row with
                     no visible key or a NaN score
       out_log_prob  [B x Nq]: log of the softmax weight of out_index (REINFORCE's log-probability); -inf with
                     no visible key, NaN for a NaN row
       alloc_user    passed to ATTN_MALLOC / ATTN_FREE */
typedef struct attn_align_options {
    const int *src_len;    /* [B] valid encoder positions per batch, in [0, Nk]; later ones masked and
                              never read. NULL: all Nk */
    attn_select mode;      /* ATTN_SELECT_SOFT (0), _HARD, _TOPK, _SAMPLE */
    int top_k;             /* TOPK: k >= 1 */
    const float *uniform;  /* SAMPLE: [B x Nq] numbers in [0, 1), one per row; or NULL to call rand_fn */
    attn_rand_fn rand_fn;  /* SAMPLE without uniform: called once per row, in row order */
    void *rand_user;       /* passed to rand_fn */
    float *out_weights;    /* [B, Nq, Nk] dense: the weights applied (soft, one-hot, top-k), or NULL */
    int *out_index;        /* [B x Nq]: the argmax (SOFT, HARD, TOPK) or the drawn index (SAMPLE), -1 for
                              a row with no visible key or a NaN score; or NULL */
    float *out_log_prob;   /* [B x Nq]: log of the softmax weight of out_index (REINFORCE), or NULL */
    void *alloc_user;      /* passed to ATTN_MALLOC / ATTN_FREE */
} attn_align_options;

/* keys [B, Nk, d_key] = the keys of h [B, Nk, d_h]: W_h h_j + b (DOT: h_j itself). Project them once per
   source sequence and pass them to every decoder step, as real decoders do. Nothing is allocated. */
ATTNDEF attn_result attn_align_keys(float *keys, attn_stride keys_s, const float *h, attn_stride h_s, int batch,
                                    int n_k, const attn_align *align);

/* *bytes = the workspace of either attn_align_scores or attn_align_forward for n_q x n_k (with_keys nonzero
   when the call is given keys): the weights of one batch [Nq x Nk] and a row [Nk], plus the projected keys
   [Nk x d_key] unless given (not for DOT) and for CONCAT and ADDITIVE the projected queries [Nq x d_key].
   workspace NULL: allocated and freed inside. A workspace smaller than reported gives ATTN_ERR_WORKSPACE. */
ATTNDEF attn_result attn_align_workspace_size(size_t *bytes, int n_q, int n_k, const attn_align *align,
                                              int with_keys);

/* e [B, Nq, Nk]: the scores of s [B, Nq, d_s] against keys [B, Nk, d_key] from attn_align_keys, or with keys
   NULL against h [B, Nk, d_h], projected inside (bitwise the same scores; h is not read when keys are given).
   Of opt only src_len and alloc_user are used: e_ij = -inf for j >= src_len[b]. workspace NULL: allocated
   and freed inside; errors also ATTN_ERR_WORKSPACE, ATTN_ERR_NOMEM. */
ATTNDEF attn_result attn_align_scores(float *e, attn_stride e_s, const float *s, attn_stride s_s, const float *h,
                                      attn_stride h_s, const float *keys, attn_stride keys_s, int batch, int n_q,
                                      int n_k, const attn_align *align, const attn_align_options *opt,
                                      void *workspace, size_t workspace_bytes);

/* One attention step: the scores of s [B, Nq, d_s] against keys [B, Nk, d_key] (or h [B, Nk, d_h]), masked
   past src_len; the weights [B, Nq, Nk] of every row by opt->mode (attn_align_options); the context
   [B, Nq, d_h] = weights . h. h is required (the values); keys as for attn_align_scores. Encoder states and
   keys past src_len are never read; a row with no visible key gets context 0. workspace NULL: allocated and
   freed inside; errors also ATTN_ERR_WORKSPACE, ATTN_ERR_NOMEM. */
ATTNDEF attn_result attn_align_forward(float *context, attn_stride context_s, const float *s, attn_stride s_s,
                                       const float *h, attn_stride h_s, const float *keys, attn_stride keys_s,
                                       int batch, int n_q, int n_k, const attn_align *align,
                                       const attn_align_options *opt, void *workspace, size_t workspace_bytes);

/* Hard attention on rows of scores S [n_rows x n_cols] (-inf = masked; to start from weights pass their
   logarithms), the weights P [n_rows x n_cols] out; p may be s (same stride). For attn_hardmax, attn_topk and
   attn_sample: a tie goes to the lowest index; masked entries are never chosen; a row with no visible entry
   gives P 0, index -1 (log_prob -inf); a NaN score gives a NaN row, index -1 (log_prob NaN); +inf scores tie
   among themselves (and are equally likely for attn_sample). Nothing is allocated. */

/* P one-hot at the argmax of each row; index [n_rows] (or NULL) its position. */
ATTNDEF attn_result attn_hardmax(float *p, ptrdiff_t p_stride, int *index, const float *s, ptrdiff_t s_stride,
                                 int n_rows, int n_cols);

/* P the softmax over the k largest scores of each row, 0 elsewhere (k >= the visible entries: the softmax);
   index [n_rows x k] (or NULL) their positions by decreasing score, -1 past the visible entries. O(k n_cols)
   per row. attn_hardmax is k = 1. k < 1 is ATTN_ERR_OPTION. */
ATTNDEF attn_result attn_topk(float *p, ptrdiff_t p_stride, int *index, const float *s, ptrdiff_t s_stride,
                              int n_rows, int n_cols, int k);

/* P one-hot at an index drawn from softmax(S) by inverse CDF: the first j whose cumulative weight exceeds
   u[i] (u [n_rows] in [0, 1), else ATTN_ERR_OPTION; or u NULL and rand_fn(rand_user), called once per row in
   row order, its value clamped into [0, 1)). index and log_prob [n_rows] (each or NULL): the index and the
   log of its softmax weight. */
ATTNDEF attn_result attn_sample(float *p, ptrdiff_t p_stride, int *index, float *log_prob, const float *s,
                                ptrdiff_t s_stride, int n_rows, int n_cols, const float *u, attn_rand_fn rand_fn,
                                void *rand_user);

/* ---------------------------------------------------------------------------------------------- */
/* API: attention pictures (PNG, PGM and PPM images, terminal heatmaps)                           */
/* ---------------------------------------------------------------------------------------------- */

/* Attention pictures of a matrix M [rows x cols] (attention weights, scores), row stride m_stride. Images are
   limited to 2^31 - 1 pixels a side, and a PNG to 2^31 - 1 bytes of image data (ATTN_ERR_OVERFLOW).
   attn_image_save and attn_heatmap_print are absent under ATTN_NO_STDIO. Errors: ATTN_ERR_NULL,
   ATTN_ERR_SHAPE, ATTN_ERR_STRIDE, ATTN_ERR_OVERFLOW, ATTN_ERR_OPTION (an option out of range),
   ATTN_ERR_IO. */

typedef enum attn_image_format {
    ATTN_IMAGE_PNG = 0, /* 8-bit gray or RGB, stored (uncompressed) deflate blocks */
    ATTN_IMAGE_PGM = 1, /* binary PGM (P5), gray */
    ATTN_IMAGE_PPM = 2  /* binary PPM (P6), RGB */
} attn_image_format;

typedef enum attn_colormap {
    ATTN_COLORMAP_GRAY = 0,   /* black (lo) to white (hi) */
    ATTN_COLORMAP_VIRIDIS = 1 /* dark blue (lo) through green to yellow (hi) */
} attn_colormap;

/* attn_image_options (all optional, zero = default):
       cell        pixels per entry on each side; 0 = 1 (images)
       format      ATTN_IMAGE_PNG (0), ATTN_IMAGE_PGM (gray only), ATTN_IMAGE_PPM
       colormap    ATTN_COLORMAP_GRAY (0): black (lo) to white (hi); ATTN_COLORMAP_VIRIDIS
       lo, hi      the values at the ends of the colour map, lo < hi, values outside clamped; lo == hi
                   (0, 0): the min and max of the finite entries. NaN and -inf show as lo, +inf as hi
       ansi        heatmap: 0 ASCII, nonzero ANSI 256 colours (gray ramp or the nearest of the 6x6x6 cube)
       row_labels, col_labels   heatmap: [rows] and [cols] strings, or NULL */
typedef struct attn_image_options {
    int cell;                      /* image: pixels per matrix entry, each side; 0 = 1 */
    attn_image_format format;      /* image: ATTN_IMAGE_PNG (0), _PGM, _PPM */
    attn_colormap colormap;        /* ATTN_COLORMAP_GRAY (0), _VIRIDIS (not for PGM) */
    float lo, hi;                  /* values mapped to the ends of the colour map; lo == hi: the min and
                                      max of the finite entries */
    int ansi;                      /* heatmap: 0 ASCII ramp, nonzero ANSI 256-colour cells */
    const char *const *row_labels; /* heatmap: [rows] strings left of the rows, or NULL */
    const char *const *col_labels; /* heatmap: [cols] strings above the columns (vertically), or NULL */
} attn_image_options;

/* Receives the bytes of an image in order; returns 0 on success, nonzero to fail with ATTN_ERR_IO. */
typedef int (*attn_write_fn)(void *user, const void *data, size_t bytes);

/* M [rows x cols] as an image streamed to write_fn(user, bytes, n) (0 = success; nonzero stops with
   ATTN_ERR_IO): PNG (8-bit gray, or RGB for viridis; stored deflate blocks, CRC-32, Adler-32, no compression
   library), binary PGM (gray) or PPM (RGB). Each entry is a cell x cell square; row i of M is the i-th row of
   squares from the top. Nothing is allocated. */
ATTNDEF attn_result attn_image_write(attn_write_fn write_fn, void *user, const float *m, ptrdiff_t m_stride,
                                     int rows, int cols, const attn_image_options *opt);

#ifndef ATTN_NO_STDIO
/* The same into a file at path (created only once the arguments are valid; ATTN_ERR_IO when it cannot be
   opened or written). */
ATTNDEF attn_result attn_image_save(const char *path, const float *m, ptrdiff_t m_stride, int rows, int cols,
                                    const attn_image_options *opt);

/* Prints M to a FILE * f (a terminal): two characters per entry, the ASCII ramp " .:-=+*#%@" or ANSI
   256-colour backgrounds; optional row labels on the left and column labels written downwards above the
   columns. ATTN_ERR_IO when the stream's error indicator is set afterwards. */
ATTNDEF attn_result attn_heatmap_print(FILE *f, const float *m, ptrdiff_t m_stride, int rows, int cols,
                                       const attn_image_options *opt);
#endif

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

#ifndef ATTN_MAX_THREADS
#define ATTN_MAX_THREADS 256 /* most threads a call starts, whatever n_threads asks */
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

#ifndef ATTN_ERROR_HOOK
#define ATTN_ERROR_HOOK(func, code, arg, rule) ((void)0)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Every validation failure returns through here, so that a user-defined ATTN_ERROR_HOOK learns which
   argument broke which rule. The strings are literals; with the default hook the call folds to `code`. */
static attn_result attn__fail(const char *func, attn_result code, const char *arg, const char *rule)
{
    (void)func; (void)arg; (void)rule;
    ATTN_ERROR_HOOK(func, code, arg, rule);
    return code;
}
/* In a validation function with a `func` parameter: fail with `code` unless `cond` holds. */
#define ATTN__REQUIRE(cond, code, arg, rule)                              \
    do {                                                                  \
        if (!(cond)) return attn__fail(func, code, arg, rule);            \
    } while (0)

#ifdef __cplusplus
static const attn_options attn__default_options = {}; /* all zero: every default */
#else
static const attn_options attn__default_options = {0};
#endif

/* Tile sizes of the fused kernel: ATTN__TQ queries against ATTN__TK keys at a time. */
#define ATTN__TQ 64
#define ATTN__TK 64
/* Tiles of at most ATTN__ROW_MAX queries (decoding) take the SIMD row kernel; when such a call has more
   than ATTN__KEY_CHUNK keys, the keys are cut into chunks of that size, each a separate work item, and
   the partial results merged from each chunk's max and sum in key order (flash-decoding). */
#define ATTN__ROW_MAX 8
#define ATTN__KEY_CHUNK 2048
/* Decoding with grouped-query attention: up to ATTN__GROUP_MAX query heads of one kv head share a work item
   and one pass over its K and V (attn__sdpa_run, the SIMD decoding kernel attn__row_forward_group). */
#define ATTN__GROUP_MAX 8
/* Key tiles per block of the kernels' blocked sums (512 keys): see attn__tile_forward_scalar. Blocks of 4
   tiles cost 0.3% more instructions (a fold per block) for about the same error at 65536 keys. */
#define ATTN__FOLD 8
/* Rows of the next micro-kernel call with `left` rows to go: 6, but 7 and 8 as 4 + 3 and 4 + 4 (two calls of
   the four-row body) rather than 6 + 1 and 6 + 2, whose second call would run the four-row body for one or
   two rows: 128 rows are 20 x 6 + 2 x 4 (128 rows of FMAs, not 130). */
#define ATTN__BLOCK_ROWS(left) ((left) == 7 || (left) == 8 ? 4 : (left) < 6 ? (left) : 6)
/* Alignment of the arrays carved from a workspace, and the slack reserved to reach it. */
#define ATTN__ALIGN 64
/* Largest element count an array may have: its byte count and every offset fit in ptrdiff_t. */
#define ATTN__MAX_ELEMS ((size_t)PTRDIFF_MAX / sizeof(float))
/* Largest size along one axis: the kernels step int tile counters by up to 64 past it. */
#define ATTN__MAX_DIM (INT_MAX - 128)

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
    case ATTN_ERR_IO: return "a file could not be opened or written";
    case ATTN_ERR_FULL: return "the KV cache has no room for the new tokens";
    }
    return "unknown attn_result";
}

/* ---------------------------------------------------------------------------------------------- */
/* Size arithmetic and validation: every count is checked before use, never wrapped.              */
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

ATTNDEF attn_stride attn_stride_bnhd(int n, int n_heads, int d)
{
    attn_stride s;
    s.batch = attn__mul3_sat(n, n_heads, d);
    s.head = d;
    s.row = attn__mul3_sat(n_heads, d, 1);
    return s;
}

ATTNDEF attn_result attn_alibi_slopes(float *slopes, int n_heads, float max_bias)
{
    const char *func = "attn_alibi_slopes";
    double bias;
    int n = 1, h;
    ATTN__REQUIRE(slopes, ATTN_ERR_NULL, "slopes", "NULL");
    ATTN__REQUIRE(n_heads >= 1, ATTN_ERR_SHAPE, "n_heads", "must be > 0");
    ATTN__REQUIRE(isfinite(max_bias) && max_bias >= 0.0f, ATTN_ERR_OPTION, "max_bias",
                  "negative or not finite (0: 8)");
    bias = max_bias == 0.0f ? 8.0 : (double)max_bias;
    while (n <= n_heads / 2) n *= 2; /* the largest power of two <= n_heads */
    /* slope h = m0^(h + 1) for h < n, m1^(2 (h - n) + 1) after, m0 = 2^(-bias / n), m1 = 2^(-bias / 2n):
       the powers of 2 taken at once in double, so BLOOM's 8 heads get exactly 1/2, 1/4, ..., 1/256 */
    for (h = 0; h < n_heads; ++h)
        slopes[h] = (float)(h < n ? pow(2.0, -bias / n * (h + 1))
                                  : pow(2.0, -bias / (2.0 * n) * (2.0 * (h - n) + 1.0)));
    return ATTN_OK;
}

/* The names a view's failures report: its batch, head and row strides, the view, and the rule its row
   stride breaks, e.g. ATTN__VIEW("q_s", "d_k") for q_s [B, H, N, d_k]. Expands to five arguments. */
#define ATTN__VIEW(v, width) v ".batch", v ".head", v ".row", v, "row stride smaller than " width
/* The same for a plain matrix whose row stride is the argument `stride`. */
#define ATTN__MATRIX(stride, width) stride, stride, stride, stride, "row stride smaller than " width

/* Validates the strides of a view [nb, nh, nr, nc] (sizes already checked positive): the row stride holds
   a row, no stride is negative, the highest offset fits, and for an output no two elements share memory
   (sorted by stride, each axis's stride covers the span of the axes inside it). Failures are reported
   for `func` under the names given by ATTN__VIEW or ATTN__MATRIX. */
static attn_result attn__check_view(const char *func, const char *batch_arg, const char *head_arg,
                                    const char *row_arg, const char *view_arg, const char *row_rule,
                                    attn_stride s, int nb, int nh, int nr, int nc, int is_output)
{
    const char *arg[4];
    ptrdiff_t ext[4], str[4];
    size_t span = 1;
    int i, n = 0;
    ATTN__REQUIRE(s.row >= nc, ATTN_ERR_STRIDE, row_arg, row_rule);
    ATTN__REQUIRE(s.batch >= 0, ATTN_ERR_STRIDE, batch_arg, "negative");
    ATTN__REQUIRE(s.head >= 0, ATTN_ERR_STRIDE, head_arg, "negative");
    ATTN__REQUIRE(nb <= ATTN__MAX_DIM && nh <= ATTN__MAX_DIM && nr <= ATTN__MAX_DIM && nc <= ATTN__MAX_DIM,
                  ATTN_ERR_OVERFLOW, view_arg, "a size along one of its axes is above INT_MAX - 128");
    ext[0] = nc; str[0] = 1; arg[0] = view_arg;
    ext[1] = nr; str[1] = s.row; arg[1] = row_arg;
    ext[2] = nh; str[2] = s.head; arg[2] = head_arg;
    ext[3] = nb; str[3] = s.batch; arg[3] = batch_arg;
    for (i = 0; i < 4; ++i) {
        size_t term;
        ATTN__REQUIRE(attn__mul(&term, (size_t)(ext[i] - 1), (size_t)str[i]) && attn__add(&span, span, term),
                      ATTN_ERR_OVERFLOW, arg[i], "the view's highest element offset does not fit in ptrdiff_t");
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
            ATTN__REQUIRE((size_t)t[i] >= covered, ATTN_ERR_STRIDE, view_arg,
                          "an output's strides make two of its elements share memory");
            covered += (size_t)(e[i] - 1) * (size_t)t[i]; /* <= span: no overflow */
        }
    }
    return ATTN_OK;
}

/* A plain matrix [rows x cols] with row stride `stride`, as a view; names from ATTN__MATRIX. */
static attn_result attn__check_matrix(const char *func, const char *batch_arg, const char *head_arg,
                                      const char *row_arg, const char *view_arg, const char *row_rule,
                                      ptrdiff_t stride, int rows, int cols, int is_output)
{
    attn_stride s;
    s.batch = 0; s.head = 0; s.row = stride;
    return attn__check_view(func, batch_arg, head_arg, row_arg, view_arg, row_rule, s, 1, 1, rows, cols, is_output);
}

/* ---------------------------------------------------------------------------------------------- */
/* Kernels: the portable dot product, matrix products and softmax rows                            */
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
/* Fused attention: the portable kernel (the SIMD versions are in the SIMD KERNEL TEMPLATE at the */
/* end of the file)                                                                               */
/* ---------------------------------------------------------------------------------------------- */

/* One (batch, query head) problem of the fused kernel, as views of the caller's tensors. */
typedef struct attn__head {
    float *out; ptrdiff_t out_rs;         /* [Nq x Dv] */
    const float *q; ptrdiff_t q_rs;       /* [Nq x Dk] */
    const void *k; ptrdiff_t k_rs;        /* [Nk x Dk] of k_type (row stride in its elements) */
    const void *v; ptrdiff_t v_rs;        /* [Nk x Dv] of v_type */
    attn_dtype k_type, v_type;            /* the tile kernels read a 16-bit or Q8 K, V via attn__k_rows, */
    float *k_buf, *v_buf;                 /* attn__v_rows: a key tile widened into [TK x Dk], [TK x Dv] */
                                          /* (NULL for float32); the decoding kernel widens in registers */
    const float *mask; ptrdiff_t mask_rs; /* [Nq x Nk] additive, or NULL */
    const unsigned char *kpm;             /* [Nk] nonzero = masked, or NULL */
    float *lse;                           /* [Nq], or NULL */
    float *ml;                            /* [Nq x 2] max and sum of each row instead of lse, out left
                                             unnormalised (a key chunk's partial result), or NULL */
    float *w;                             /* [Nq x Nk] weights, or NULL */
    int w_accumulate;                     /* add into w (head averaging) instead of writing */
    int nq, nk, dk, dv;
    int n_valid;                          /* keys >= n_valid are masked and never read */
    int k_lo;                             /* keys < k_lo are left out (a key split's later parts) */
    int causal;                           /* an upper bound: key j visible from query i only if j <= i + diag */
    ptrdiff_t diag;                       /* (causal, or a window's right edge) */
    int lower;                            /* a lower bound: key j visible from query i only if */
    long long diag_lo;                    /* j >= i + diag_lo (a window's left edge) */
    float scale;
    float softcap;                        /* > 0: scores s become softcap * tanh(s / softcap) before masks */
    float alibi;                          /* nonzero: ALiBi's slope, scores get -alibi * |i + diag0 - j| */
    ptrdiff_t diag0;                      /* query i sits at key i + diag0: the causal diagonal (ALiBi) */
    const float *sink;                    /* the head's sink logit (in the denominator only), or NULL */
    int bf16dot;                          /* the AVX-512 tile kernel with vdpbf16ps: q (as float32), k and v
                                             hold bfloat16 values, Dk even; k_buf then holds the packed P and
                                             v_buf the packed V (attn__pack_pairs_bf16, attn__pack_v_bf16) */
} attn__head;

/* t is one of the attn_dtype values. */
static int attn__dtype_valid(attn_dtype t)
{
    return t == ATTN_F32 || t == ATTN_F16 || t == ATTN_BF16 || t == ATTN_Q8;
}

/* Bytes of n elements of type t, n >= 0 (for ATTN_Q8 a multiple of 32: whole blocks), so that element n of
   a K or V starts at byte attn__dtype_bytes(t, n). */
static ptrdiff_t attn__dtype_bytes(attn_dtype t, ptrdiff_t n)
{
    if (t == ATTN_Q8) return n / ATTN_Q8_BLOCK * ATTN_Q8_BLOCK_BYTES;
    return n * (ptrdiff_t)(t == ATTN_F32 ? sizeof(float) : sizeof(unsigned short));
}

/* The scale of the ATTN_Q8 block at b (any alignment). */
static inline float attn__q8_scale(const void *b)
{
    float d;
    memcpy(&d, b, sizeof d);
    return d;
}

/* Floats of the tile buffer of a K (d = Dk) or V (d = Dv) of element type `type`: TK rows of d floats
   for a 16-bit or Q8 type, none for float32 (read in place). 0 on overflow. */
static int attn__kv_buf_floats(size_t *n, attn_dtype type, int d)
{
    if (type == ATTN_F32) { *n = 0; return 1; }
    return attn__mul(n, ATTN__TK, (size_t)d);
}

/* q, k and v all bfloat16: the AVX-512 BF16 kernel may run (attn__bf16dot). */
static int attn__bf16_types(const attn_options *o)
{
    return o->q_type == ATTN_BF16 && o->k_type == ATTN_BF16 && o->v_type == ATTN_BF16;
}

/* The buffers of one thread's fused-kernel workspace before the kernel's own part, in floats: a key tile of a
   K and of a V not float32 ([TK x Dk], [TK x Dv]; with bfloat16 q, k and v the K one at least [TK/2 x TQ],
   which the BF16 kernel uses for its packed probabilities and the V one for its packed V), a query tile of
   a q not float32 [TQ x Dk] and of an out not float32 [TQ x Dv] (each 0 when float32). 0 on overflow. */
typedef struct attn__bufs { size_t k, v, q, out; } attn__bufs;
static int attn__sdpa_bufs(attn__bufs *b, int d_k, int d_v, const attn_options *o)
{
    if (!attn__kv_buf_floats(&b->k, o->k_type, d_k) || !attn__kv_buf_floats(&b->v, o->v_type, d_v) ||
        !attn__mul(&b->q, o->q_type == ATTN_F32 ? 0 : ATTN__TQ, (size_t)d_k) ||
        !attn__mul(&b->out, o->out_type == ATTN_F32 ? 0 : ATTN__TQ, (size_t)d_v))
        return 0;
    if (attn__bf16_types(o) && b->k < ATTN__TK / 2 * ATTN__TQ) b->k = ATTN__TK / 2 * ATTN__TQ;
    return 1;
}

/* Floats of one thread's fused-kernel workspace, enough for every instruction set: first the buffers of
   attn__sdpa_bufs, then the kernel's own floats (the SIMD kernels hold Q^T [Dk x TQ], scores [TK x TQ], the
   block's and the total O^T [Dv x TQ] and six [TQ] vectors; the scalar one less). Each part is a whole
   number of ATTN__ALIGN blocks (TK and TQ floats are), so that each thread's slice and the kernel's part
   stay aligned. The kernels index their part with int (c * TQ + i), so it must stay below INT_MAX floats:
   Dk + 2 Dv up to about 2^25. *kv gets the floats of the buffers (the kernel's part starts there). */
static int attn__sdpa_ws_floats(size_t *n, size_t *kv, int d_k, int d_v, const attn_options *o)
{
    size_t dims;
    attn__bufs b;
    if (!attn__add(&dims, (size_t)d_k, (size_t)d_v) || !attn__add(&dims, dims, (size_t)d_v) ||
        !attn__add(&dims, dims, ATTN__TK + 6) ||
        !attn__mul(n, dims, ATTN__TQ) || *n > (size_t)INT_MAX)
        return 0;
    if (!attn__sdpa_bufs(&b, d_k, d_v, o) || !attn__add(kv, b.k, b.v) || !attn__add(kv, *kv, b.q) ||
        !attn__add(kv, *kv, b.out))
        return 0;
    return attn__add(n, *n, *kv);
}

/* dst [n] = n elements of type t at src, widened to float32 by the public conversions (exact for the 16-bit
   types; d * q for Q8, n a multiple of 32): the same floats on every instruction set. */
static void attn__to_f32(float *dst, const void *src, attn_dtype t, size_t n)
{
    if (t == ATTN_F16) (void)attn_f16_to_f32(dst, (const unsigned short *)src, n);
    else if (t == ATTN_BF16) (void)attn_bf16_to_f32(dst, (const unsigned short *)src, n);
    else if (t == ATTN_Q8) (void)attn_q8_to_f32(dst, src, n);
    else memcpy(dst, src, sizeof(float) * n);
}

/* dst = n float32 values of src stored as type t (round to nearest even; Q8: n a multiple of 32, quantised
   per block): the conversions of the public functions. */
static void attn__from_f32(void *dst, attn_dtype t, const float *src, size_t n)
{
    if (t == ATTN_F16) (void)attn_f32_to_f16((unsigned short *)dst, src, n);
    else if (t == ATTN_BF16) (void)attn_f32_to_bf16((unsigned short *)dst, src, n);
    else if (t == ATTN_Q8) (void)attn_f32_to_q8(dst, src, n);
    else memcpy(dst, src, sizeof(float) * n);
}

/* Rows [j0, j0 + n) of K or V (x [.. x d] of element type `type`, row stride rs elements) as float32: the
   caller's own rows when they are float32, else the rows widened into buf [n x d] (attn__to_f32). *view_rs
   gets the row stride of the result. */
static const float *attn__kv_rows(const void *x, attn_dtype type, ptrdiff_t rs, int j0, int n, int d, float *buf,
                                  ptrdiff_t *view_rs)
{
    const char *x_0 = (const char *)x + attn__dtype_bytes(type, (ptrdiff_t)j0 * rs);
    int r;
    if (type == ATTN_F32) { *view_rs = rs; return (const float *)(const void *)x_0; }
    *view_rs = d;
    if (n <= 0) return buf;
    if (rs == d) /* contiguous rows: one conversion */
        attn__to_f32(buf, x_0, type, (size_t)n * (size_t)d);
    else
        for (r = 0; r < n; ++r)
            attn__to_f32(buf + (ptrdiff_t)r * d, x_0 + attn__dtype_bytes(type, (ptrdiff_t)r * rs), type, (size_t)d);
    return buf;
}

/* Keys [j0, j0 + n) of a head's K and V as float32 rows (attn__kv_rows), *rs their row stride. */
static const float *attn__k_rows(const attn__head *h, int j0, int n, ptrdiff_t *rs)
{
    return attn__kv_rows(h->k, h->k_type, h->k_rs, j0, n, h->dk, h->k_buf, rs);
}
static const float *attn__v_rows(const attn__head *h, int j0, int n, ptrdiff_t *rs)
{
    return attn__kv_rows(h->v, h->v_type, h->v_rs, j0, n, h->dv, h->v_buf, rs);
}

/* ALiBi on n scores: s[x] -= slope * |a + x|, the distance computed in integers and rounded to float once
   (exact below 2^24). The SIMD kernels' tails call it too, so every path adds the same bias. */
static void attn__alibi_row(float *s, int n, float slope, long long a)
{
    int x;
    for (x = 0; x < n; ++x) {
        const long long dist = a + x < 0 ? -(a + x) : a + x;
        s[x] -= slope * (float)dist;
    }
}

/* s[tq x TK] = scale * Q[i0 .. i0+tq) . K[j0 .. j0+tk)^T with every mask applied (-inf = hidden). */
static void attn__score_tile(float *s, const attn__head *h, int i0, int tq, int j0, int tk)
{
    ptrdiff_t k_rs;
    const float *k_t = attn__k_rows(h, j0, tk, &k_rs);
    int r, c;
    attn__gemm_nt(s, ATTN__TK, h->q + (ptrdiff_t)i0 * h->q_rs, h->q_rs, k_t, k_rs, tq, tk, h->dk, h->scale, 0);
    for (r = 0; r < tq; ++r) {
        float *s_r = s + r * ATTN__TK;
        if (h->softcap > 0.0f)
            for (c = 0; c < tk; ++c) s_r[c] = h->softcap * tanhf(s_r[c] / h->softcap);
        if (h->alibi != 0.0f) /* key j0 + c at distance |i0 + r + diag0 - j0 - c| */
            attn__alibi_row(s_r, tk, h->alibi, (long long)j0 - i0 - r - h->diag0);
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
        if (h->lower) {
            /* visible: j0 + c >= i0 + r + diag_lo */
            const long long first = (long long)i0 + r + h->diag_lo - j0;
            for (c = 0; c < tk && c < first; ++c) s_r[c] = -INFINITY;
        }
    }
}

/* The statistics of row i at the end of a kernel, from its max m and sum l (natural units): the
   log-sum-exp, or for a key chunk's partial result m and l themselves (what the merge needs: a
   log-sum-exp loses the count of +inf scores, and m + log(l) loses l when m is huge). */
static void attn__row_stats(const attn__head *h, int i, float m, float l)
{
    if (h->ml) { h->ml[2 * (ptrdiff_t)i] = m; h->ml[2 * (ptrdiff_t)i + 1] = l; }
    else if (h->lse) h->lse[i] = attn__lse(m, l);
}

/* The first key that any query of the tile [i0, ...) may see: k_lo, or the window's left edge of query i0. */
static int attn__key_begin(const attn__head *h, int i0)
{
    const long long first = h->lower ? (long long)i0 + h->diag_lo : 0;
    return first > h->k_lo ? (int)(first < h->n_valid ? first : h->n_valid) : h->k_lo;
}

/* The sink of a head, a logit in the softmax denominator only, folded into a row's max m and sum l: returns
   the factor by which the row's unnormalised output must be scaled to follow the new max. A -inf sink
   (or none) changes nothing. */
static float attn__sink(float *m, float *l, const float *sink)
{
    float m_new, a;
    if (!sink || *sink == -INFINITY) return 1.0f;
    m_new = *sink > *m ? *sink : *m;
    a = *m == m_new ? 1.0f : expf(*m - m_new);
    *l = *l * a + (*sink == m_new ? 1.0f : expf(*sink - m_new));
    *m = m_new;
    return a;
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
   rescaled when the max grows), then normalise. The sums over keys are blocked: each block of
   ATTN__FOLD key tiles is summed on its own (acc, l) and folded into the totals (acc_tot, l_tot), so
   that rounding grows with the block count and the block length, not with the key count (a plain
   running sum over 65536 keys loses ~1e-5 relative; blocks of 512 keys keep it under 1e-6). m and the
   sums stay in natural units: a finite score of any size gives a finite difference s - m <= 0. */
static void attn__tile_forward_scalar(const attn__head *h, int i0, float *ws)
{
    const int tq = h->nq - i0 < ATTN__TQ ? h->nq - i0 : ATTN__TQ;
    const int key_end = attn__key_end(h, i0, tq);
    float *s = ws;                                 /* [TQ x TK] scores, then probabilities */
    float *m = s + ATTN__TQ * ATTN__TK;            /* [TQ] running max */
    float *l = m + ATTN__TQ;                       /* [TQ] running sum of the current block */
    float *l_tot = l + ATTN__TQ;                   /* [TQ] running sum of the blocks before */
    float *a_tot = l_tot + ATTN__TQ;               /* [TQ] rescale of the totals since the last fold */
    float *acc = a_tot + ATTN__TQ;                 /* [TQ x Dv] unnormalised output of the current block */
    float *acc_tot = acc + ATTN__TQ * h->dv;       /* [TQ x Dv] unnormalised output of the blocks before */
    int j0, r, c, t;
    for (r = 0; r < tq; ++r) { m[r] = -INFINITY; l[r] = 0.0f; l_tot[r] = 0.0f; a_tot[r] = 1.0f; }
    memset(acc, 0, sizeof(float) * (size_t)tq * (size_t)h->dv);
    memset(acc_tot, 0, sizeof(float) * (size_t)tq * (size_t)h->dv);
    /* pass 1: online softmax over the key tiles that any query of this tile may see */
    for (j0 = attn__key_begin(h, i0), t = 0; j0 < key_end; j0 += ATTN__TK, ++t) {
        const int tk = key_end - j0 < ATTN__TK ? key_end - j0 : ATTN__TK;
        const int first = t % ATTN__FOLD == 0, last = t % ATTN__FOLD == ATTN__FOLD - 1 || key_end - j0 <= ATTN__TK;
        const float *v_t;
        ptrdiff_t v_rs;
        attn__score_tile(s, h, i0, tq, j0, tk);
        for (r = 0; r < tq; ++r) {
            float *s_r = s + r * ATTN__TK;
            float *acc_r = acc + (ptrdiff_t)r * h->dv;
            const float m_tile = attn__row_max(s_r, tk);
            const float m_new = m_tile > m[r] ? m_tile : m[r];
            const float alpha = m_new == m[r] ? 1.0f : expf(m[r] - m_new);
            const float sum = attn__exp_row(s_r, s_r, tk, m_new);
            l[r] = first ? sum : l[r] * alpha + sum;
            a_tot[r] *= alpha;
            m[r] = m_new;
            if (alpha != 1.0f && !first)
                for (c = 0; c < h->dv; ++c) acc_r[c] *= alpha;
        }
        v_t = attn__v_rows(h, j0, tk, &v_rs);
        attn__gemm_nn(acc, h->dv, s, ATTN__TK, v_t, v_rs, tq, h->dv, tk, !first);
        if (last) /* fold the block into the totals */
            for (r = 0; r < tq; ++r) {
                float *acc_r = acc + (ptrdiff_t)r * h->dv, *tot_r = acc_tot + (ptrdiff_t)r * h->dv;
                for (c = 0; c < h->dv; ++c) tot_r[c] = tot_r[c] * a_tot[r] + acc_r[c];
                l_tot[r] = l_tot[r] * a_tot[r] + l[r];
                a_tot[r] = 1.0f;
            }
    }
    /* the sink joins each row's max and sum (a chunk's partial result leaves it to the merge); a_tot now
       rescales the output to the new max */
    for (r = 0; r < tq; ++r) a_tot[r] = h->ml ? 1.0f : attn__sink(&m[r], &l_tot[r], h->sink);
    /* pass 2 (only when asked): the normalised weights, recomputing each score tile */
    if (h->w) {
        for (j0 = 0; j0 < h->nk; j0 += ATTN__TK) {
            const int tk = h->nk - j0 < ATTN__TK ? h->nk - j0 : ATTN__TK;
            const int tv = key_end - j0 < 0 ? 0 : (key_end - j0 < tk ? key_end - j0 : tk);
            if (tv > 0) attn__score_tile(s, h, i0, tq, j0, tv);
            for (r = 0; r < tq; ++r) {
                float *s_r = s + r * ATTN__TK;
                float *w_r = h->w + (ptrdiff_t)(i0 + r) * h->nk + j0;
                const float inv = attn__inv_sum(l_tot[r]);
                attn__exp_row(s_r, s_r, tv, m[r]);
                for (c = tv; c < tk; ++c) s_r[c] = 0.0f; /* never visible to this tile */
                if (h->w_accumulate) for (c = 0; c < tk; ++c) w_r[c] += s_r[c] * inv;
                else for (c = 0; c < tk; ++c) w_r[c] = s_r[c] * inv;
            }
        }
    }
    for (r = 0; r < tq; ++r) {
        const float inv = h->ml ? 1.0f : a_tot[r] * attn__inv_sum(l_tot[r]);
        const float *tot_r = acc_tot + (ptrdiff_t)r * h->dv;
        float *o_r = h->out + (ptrdiff_t)(i0 + r) * h->out_rs;
        for (c = 0; c < h->dv; ++c) o_r[c] = tot_r[c] * inv;
        attn__row_stats(h, i0 + r, m[r], l_tot[r]);
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
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
#define ATTN__UNROLL4 _Pragma("GCC unroll 4") /* the micro-kernel's loop (gcc does not unroll at -O2) */
#else
#define ATTN__UNROLL4
#endif

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

/* One element of a K or V row (or a weight row) of element type t, p + i, as a float (exact): the SIMD
   kernels' tails, and the portable projections of 16-bit weights. */
static inline float attn__f16_to_f32_1(unsigned short h);
static inline float attn__bf16_to_f32_1(unsigned short h);
static inline float attn__load_as(const void *p, int i, attn_dtype t)
{
    if (t == ATTN_F16) return attn__f16_to_f32_1(((const unsigned short *)p)[i]);
    if (t == ATTN_BF16) return attn__bf16_to_f32_1(((const unsigned short *)p)[i]);
    if (t == ATTN_Q8) {
        const signed char *b = (const signed char *)p + i / ATTN_Q8_BLOCK * ATTN_Q8_BLOCK_BYTES;
        return attn__q8_scale(b) * (float)b[sizeof(float) + (size_t)(i % ATTN_Q8_BLOCK)];
    }
    return ((const float *)p)[i];
}

/* Row j of a K or V of element type t (rs elements apart), as bytes. */
static inline const void *attn__row_as(const void *x, attn_dtype t, ptrdiff_t rs, int j)
{
    return (const char *)x + attn__dtype_bytes(t, (ptrdiff_t)j * rs);
}

#define ATTN__VLOAD(p) ATTN__P(loadu_ps)(p)
#define ATTN__VSTORE(p, v) ATTN__P(storeu_ps)(p, v)
#define ATTN__VSET1(x) ATTN__P(set1_ps)(x)
#define ATTN__VZERO ATTN__P(setzero_ps)()
#define ATTN__VADD(a, b) ATTN__P(add_ps)(a, b)
#define ATTN__VSUB(a, b) ATTN__P(sub_ps)(a, b)
#define ATTN__VMUL(a, b) ATTN__P(mul_ps)(a, b)
#define ATTN__VDIV(a, b) ATTN__P(div_ps)(a, b)
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
#define ATTN__NV 4 /* 32 registers: 6 x 4 accumulators */
#define ATTN__VROUND(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define ATTN__VLDEXP_Z(p, n, z) _mm512_maskz_scalef_ps((__mmask16)~(z), p, n) /* one instruction */
#define ATTN__M __mmask16
#define ATTN__VEQ(a, b) _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ)
#define ATTN__VLT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define ATTN__VBLEND(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define ATTN__VANY(m) ((m) != 0)
#define ATTN__VSUM(v) _mm512_reduce_add_ps(v)
#define ATTN__VLOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p)))
#define ATTN__VLOAD_BF16(p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(p))), 16))
#define ATTN__VLOAD_Q8(p) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))))
#define ATTN__TRANSPOSE(dst, dst_rs, src, src_rs, s) attn__transpose_block_avx512(dst, dst_rs, src, src_rs, s)
#define ATTN__PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#define ATTN__PREFETCH_L2(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#if defined(__GNUC__) && !defined(__clang__) /* gcc 12's _mm512_undefined_ps trips a false   */
#pragma GCC diagnostic push                   /* -W(maybe-)uninitialized in C++ (gcc bug 105593) */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
/* dst [16 x 16] (row stride dst_rs) = the transpose of src [16 x 16] (row stride src_rs) with lane c of each
   src row times lane c of s: pairs of rows interleaved, then quads within 128-bit lanes, then the lanes.
   The loops unrolled (gcc -O2 does not by itself) so that r and t live in registers, not on the stack.
   Always inlined: as a function taking a vector argument, gcc left the upper halves of the registers
   dirty on return from attn_sdpa (no vzeroupper), and the caller's next SSE code paid for it (attn_merge
   right after attn_sdpa: 315 -> 59 ns per row of D = 64 on the Zen 2 host). */
static __attribute__((target("avx512f"), always_inline)) inline void attn__transpose_block_avx512(float *dst, ptrdiff_t dst_rs, const float *src,
                                                                      ptrdiff_t src_rs, __m512 s)
{
    __m512 r[16], t[16];
    int k, j;
#pragma GCC unroll 16
    for (k = 0; k < 16; ++k) r[k] = _mm512_mul_ps(_mm512_loadu_ps(src + k * src_rs), s);
#pragma GCC unroll 16
    for (k = 0; k < 16; k += 2) { /* t[k], t[k+1]: columns {0,1}, {2,3} of each lane, rows k, k+1 */
        t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
    }
#pragma GCC unroll 16
    for (k = 0; k < 16; k += 4) { /* r[k + j]: column j of each lane, rows k .. k+3 */
        r[k] = _mm512_shuffle_ps(t[k], t[k + 2], 0x44);
        r[k + 1] = _mm512_shuffle_ps(t[k], t[k + 2], 0xEE);
        r[k + 2] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        r[k + 3] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (j = 0; j < 4; ++j) { /* column 4 L + j gathers lane L of r[j], r[4 + j], r[8 + j], r[12 + j] */
        const __m512 a = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), b = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        const __m512 c = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88), d = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
        _mm512_storeu_ps(dst + j * dst_rs, _mm512_shuffle_f32x4(a, c, 0x88));
        _mm512_storeu_ps(dst + (4 + j) * dst_rs, _mm512_shuffle_f32x4(b, d, 0x88));
        _mm512_storeu_ps(dst + (8 + j) * dst_rs, _mm512_shuffle_f32x4(a, c, 0xDD));
        _mm512_storeu_ps(dst + (12 + j) * dst_rs, _mm512_shuffle_f32x4(b, d, 0xDD));
    }
}
#ifndef ATTN_NO_BF16DOT
/* The bfloat16 dot products of the AVX-512 tile kernel (attn__head.bf16dot; attn_simd_bf16dot tells when
   they run). vdpbf16ps adds to each float32 lane the two products of the bfloat16 pairs in the matching
   32-bit words of its operands: a word is a pair (low half, high half) along the sum's index. So Q^T and P^T
   are packed as pairs of rows (along Dk, along keys) with queries across the lanes, and the other operand,
   broadcast, is a pair taken whole from a K row (two adjacent elements) or from the packed V (the same
   column of two adjacent keys, attn__pack_v_bf16). */
#define ATTN__BF16DOT 1
#define ATTN__BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16,fma")))

/* dst [ceil(n/2) x TQ] 32-bit words = rows 2p and 2p + 1 of src [n x TQ] floats rounded to bfloat16 (nearest
   even), row 2p's element i in the low half of word i of dst row p, row 2p + 1's in the high half (0 past
   row n). In place (dst == src) works: dst row p is written after src rows 2p, 2p + 1 >= p are read, a
   vector at a time. */
static ATTN__BF16_TARGET void attn__pack_pairs_bf16(void *dst, const float *src, int n)
{
    static const unsigned short mix[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                           8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i idx = _mm512_loadu_si512((const void *)mix);
    int p, v;
    for (p = 0; 2 * p < n; ++p) {
        const float *r0 = src + (ptrdiff_t)2 * p * ATTN__TQ, *r1 = r0 + ATTN__TQ;
        for (v = 0; v < ATTN__TQ; v += 16) {
            const __m512 lo = _mm512_loadu_ps(r0 + v), hi = 2 * p + 1 < n ? _mm512_loadu_ps(r1 + v) : _mm512_setzero_ps();
            const __m512i x = (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* lo's 16 in elements 0..15, hi's in 16..31 */
            _mm512_storeu_si512((char *)dst + ((ptrdiff_t)p * ATTN__TQ + v) * 4, _mm512_permutexvar_epi16(idx, x));
        }
    }
}

/* dst [ceil(n/2) x d] 32-bit words = rows 2p and 2p + 1 of the bfloat16 x [n x d] (row stride rs elements,
   any alignment), paired per column: word c of dst row p holds x[2p][c] low, x[2p + 1][c] high (0 past row
   n, which is never read). */
static ATTN__BF16_TARGET void attn__pack_v_bf16(unsigned *dst, const unsigned short *x, ptrdiff_t rs, int n, int d)
{
    static const unsigned short mix[64] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                           8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47,
                                           16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                           24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
    const __m512i lo_idx = _mm512_loadu_si512((const void *)mix), hi_idx = _mm512_loadu_si512((const void *)(mix + 32));
    int p, c;
    for (p = 0; 2 * p < n; ++p) {
        const unsigned short *r0 = x + (ptrdiff_t)2 * p * rs, *r1 = r0 + rs;
        unsigned *d_p = dst + (ptrdiff_t)p * d;
        for (c = 0; c < d; c += 32) {
            const int left = d - c < 32 ? d - c : 32;
            const __mmask32 m = left == 32 ? 0xffffffffu : (1u << left) - 1u;
            const __m512i a = _mm512_maskz_loadu_epi16(m, r0 + c);
            const __m512i b = 2 * p + 1 < n ? _mm512_maskz_loadu_epi16(m, r1 + c) : _mm512_setzero_si512();
            _mm512_mask_storeu_epi32(d_p + c, (__mmask16)(left >= 16 ? 0xffff : (1u << left) - 1u),
                                     _mm512_permutex2var_epi16(a, lo_idx, b));
            if (left > 16)
                _mm512_mask_storeu_epi32(d_p + c + 16, (__mmask16)(left == 32 ? 0xffff : (1u << (left - 16)) - 1u),
                                         _mm512_permutex2var_epi16(a, hi_idx, b));
        }
    }
}

/* The micro-kernel of attn__kernel_rows in bfloat16 pairs: C[r][0..TQ) = out_scale * sum_{p < k} B[p] . A(r, p)
   for r < rows <= 6, or with accumulate C[r][j] = C[r][j] * col_scale[j] + the sum; B [k x TQ] 32-bit words
   (pairs), A(r, p) the word at a + r*a_rs + p*a_cs (in 16-bit units, any alignment) broadcast. 6 x 4
   accumulators; rows past `rows` re-read row 0 and are never stored. */
static ATTN__BF16_TARGET void attn__dot_tile_bf16(float *c, const unsigned short *a, ptrdiff_t a_rs, ptrdiff_t a_cs,
                                                  const void *b, int k, int rows, int accumulate,
                                                  const float *col_scale, float out_scale)
{
    const unsigned short *a_r[6];
    __m512 acc[6][4];
    int r, v, p;
    for (r = 0; r < 6; ++r) a_r[r] = a + (r < rows ? r : 0) * a_rs;
#pragma GCC unroll 6
    for (r = 0; r < 6; ++r)
#pragma GCC unroll 4
        for (v = 0; v < 4; ++v)
            acc[r][v] = accumulate && r < rows ? _mm512_mul_ps(_mm512_loadu_ps(c + r * ATTN__TQ + 16 * v), _mm512_loadu_ps(col_scale + 16 * v))
                                               : _mm512_setzero_ps();
    for (p = 0; p < k; ++p) {
        const char *b_p = (const char *)b + (ptrdiff_t)p * ATTN__TQ * 4;
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b_p), b1 = (__m512bh)_mm512_loadu_si512(b_p + 64);
        const __m512bh b2 = (__m512bh)_mm512_loadu_si512(b_p + 128), b3 = (__m512bh)_mm512_loadu_si512(b_p + 192);
#pragma GCC unroll 6
        for (r = 0; r < 6; ++r) {
            unsigned w;
            __m512bh x;
            memcpy(&w, a_r[r] + p * a_cs, sizeof w);
            x = (__m512bh)_mm512_set1_epi32((int)w);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], b0, x); acc[r][1] = _mm512_dpbf16_ps(acc[r][1], b1, x);
            acc[r][2] = _mm512_dpbf16_ps(acc[r][2], b2, x); acc[r][3] = _mm512_dpbf16_ps(acc[r][3], b3, x);
        }
    }
#pragma GCC unroll 6
    for (r = 0; r < 6; ++r)
#pragma GCC unroll 4
        for (v = 0; v < 4; ++v)
            if (r < rows)
                _mm512_storeu_ps(c + r * ATTN__TQ + 16 * v, accumulate ? acc[r][v] : _mm512_mul_ps(acc[r][v], _mm512_set1_ps(out_scale)));
}
#endif
#include ATTN_HEADER_FILE
#undef ATTN__BF16DOT
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
/* Sum of the 8 lanes of an AVX2 vector: halves, then pairs. */
static __attribute__((target("avx2,fma"))) float attn__hsum_avx2(__m256 v)
{
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}
/* The 8 x 8 transpose of attn__transpose_block_avx512: pairs, quads within 128-bit lanes, then the two lanes. */
static __attribute__((target("avx2,fma"), always_inline)) inline void attn__transpose_block_avx2(float *dst, ptrdiff_t dst_rs, const float *src,
                                                                     ptrdiff_t src_rs, __m256 s)
{
    __m256 r[8], t[8];
    int k, j;
#pragma GCC unroll 8
    for (k = 0; k < 8; ++k) r[k] = _mm256_mul_ps(_mm256_loadu_ps(src + k * src_rs), s);
#pragma GCC unroll 8
    for (k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
#pragma GCC unroll 8
    for (k = 0; k < 8; k += 4) {
        r[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        r[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
        r[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        r[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (j = 0; j < 4; ++j) {
        _mm256_storeu_ps(dst + j * dst_rs, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20));
        _mm256_storeu_ps(dst + (4 + j) * dst_rs, _mm256_permute2f128_ps(r[j], r[4 + j], 0x31));
    }
}
#define ATTN__TEMPLATE 1
#define ATTN__SFX(name) name##_avx2
#define ATTN__TARGET __attribute__((target("avx2,fma,f16c"))) /* F16C: every AVX2+FMA CPU has it */
#define ATTN__P(op) _mm256_##op
#define ATTN__V __m256
#define ATTN__W 8
#define ATTN__NV 2 /* 16 registers: 6 x 2 accumulators */
#define ATTN__VROUND(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define ATTN__VLDEXP_Z(p, n, z) _mm256_blendv_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))), _mm256_setzero_ps(), z)
#define ATTN__M __m256
#define ATTN__VEQ(a, b) _mm256_cmp_ps(a, b, _CMP_EQ_OQ)
#define ATTN__VLT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define ATTN__VBLEND(m, a, b) _mm256_blendv_ps(a, b, m)
#define ATTN__VANY(m) (_mm256_movemask_ps(m) != 0)
#define ATTN__VSUM(v) attn__hsum_avx2(v)
#define ATTN__VLOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define ATTN__VLOAD_BF16(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))), 16))
#define ATTN__VLOAD_Q8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(p))))
#define ATTN__TRANSPOSE(dst, dst_rs, src, src_rs, s) attn__transpose_block_avx2(dst, dst_rs, src, src_rs, s)
#define ATTN__PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#define ATTN__PREFETCH_L2(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#include ATTN_HEADER_FILE
#endif /* ATTN__HAVE_X86 */

#ifdef ATTN__HAVE_NEON
/* 4 bytes at p (any alignment): ATTN__VLOAD_Q8's four int8, with no read past them. */
static inline uint32_t attn__u32_at(const void *p)
{
    uint32_t x;
    memcpy(&x, p, sizeof x);
    return x;
}
/* The 4 x 4 transpose of attn__transpose_block_avx512: pairs (vtrn), then halves. */
static void attn__transpose_block_neon(float *dst, ptrdiff_t dst_rs, const float *src, ptrdiff_t src_rs, float32x4_t s)
{
    const float32x4x2_t a = vtrnq_f32(vmulq_f32(vld1q_f32(src), s), vmulq_f32(vld1q_f32(src + src_rs), s));
    const float32x4x2_t b = vtrnq_f32(vmulq_f32(vld1q_f32(src + 2 * src_rs), s), vmulq_f32(vld1q_f32(src + 3 * src_rs), s));
    vst1q_f32(dst, vcombine_f32(vget_low_f32(a.val[0]), vget_low_f32(b.val[0])));
    vst1q_f32(dst + dst_rs, vcombine_f32(vget_low_f32(a.val[1]), vget_low_f32(b.val[1])));
    vst1q_f32(dst + 2 * dst_rs, vcombine_f32(vget_high_f32(a.val[0]), vget_high_f32(b.val[0])));
    vst1q_f32(dst + 3 * dst_rs, vcombine_f32(vget_high_f32(a.val[1]), vget_high_f32(b.val[1])));
}
#define ATTN__TEMPLATE 1
#define ATTN__SFX(name) name##_neon
#define ATTN__TARGET
#define ATTN__V float32x4_t
#define ATTN__W 4
#define ATTN__NV 4 /* 32 registers: 6 x 4 accumulators */
#undef ATTN__VLOAD
#undef ATTN__VSTORE
#undef ATTN__VSET1
#undef ATTN__VZERO
#undef ATTN__VADD
#undef ATTN__VSUB
#undef ATTN__VMUL
#undef ATTN__VDIV
#undef ATTN__VFMA
#undef ATTN__VMAX
#define ATTN__VLOAD(p) vld1q_f32(p)
#define ATTN__VSTORE(p, v) vst1q_f32(p, v)
#define ATTN__VSET1(x) vdupq_n_f32(x)
#define ATTN__VZERO vdupq_n_f32(0.0f)
#define ATTN__VADD(a, b) vaddq_f32(a, b)
#define ATTN__VSUB(a, b) vsubq_f32(a, b)
#define ATTN__VMUL(a, b) vmulq_f32(a, b)
#define ATTN__VDIV(a, b) vdivq_f32(a, b)
#define ATTN__VFMA(a, b, c) vfmaq_f32(c, a, b)
/* x86 semantics: a > b ? a : b, so a NaN in a yields b and a NaN in b yields b */
#define ATTN__VMAX(a, b) vbslq_f32(vcgtq_f32(a, b), a, b)
#define ATTN__VROUND(x) vrndnq_f32(x)
#define ATTN__VLDEXP_Z(p, n, z) vbslq_f32(z, vdupq_n_f32(0.0f), vmulq_f32(p, vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23))))
#define ATTN__M uint32x4_t
#define ATTN__VEQ(a, b) vceqq_f32(a, b)
#define ATTN__VLT(a, b) vcltq_f32(a, b)
#define ATTN__VBLEND(m, a, b) vbslq_f32(m, b, a)
#define ATTN__VANY(m) (vmaxvq_u32(m) != 0)
#define ATTN__VSUM(v) vaddvq_f32(v)
#define ATTN__VLOAD_F16(p) vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(p))))
#define ATTN__VLOAD_BF16(p) vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)(p)), 16))
#define ATTN__VLOAD_Q8(p) vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_u32(vdup_n_u32(attn__u32_at(p)))))))
#define ATTN__TRANSPOSE(dst, dst_rs, src, src_rs, s) attn__transpose_block_neon(dst, dst_rs, src, src_rs, s)
#define ATTN__PREFETCH(p) __builtin_prefetch(p)
#define ATTN__PREFETCH_L2(p) __builtin_prefetch(p, 0, 2)
#include ATTN_HEADER_FILE
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

ATTNDEF int attn_simd_bf16dot(void)
{
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512) && !defined(ATTN_NO_BF16DOT)
    return attn__isa() == ATTN__ISA_AVX512 && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
#else
    return 0;
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

/* Floats of a buffer for attn__pack_b of a [k x n] B on any instruction set (strips of up to 64 columns). */
static int attn__pack_floats(size_t *r, int k, int n)
{
    return attn__mul(r, (size_t)k, ((size_t)n + 63) / 64 * 64);
}

/* Packs strips part, part + parts, ... of op(w) [d_in x d_out] into bpack on instruction set isa. */
static void attn__pack_weights(float *bpack, const void *w, attn_dtype wt, ptrdiff_t w_stride, int out_in, int d_in,
                               int d_out, int isa, int part, int parts)
{
    switch (isa) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
    case ATTN__ISA_AVX512: attn__pack_b_avx512(bpack, w, wt, w_stride, out_in, d_out, d_in, part, parts); break;
#endif
#if defined(ATTN__HAVE_X86)
    case ATTN__ISA_AVX2: attn__pack_b_avx2(bpack, w, wt, w_stride, out_in, d_out, d_in, part, parts); break;
#endif
#if defined(ATTN__HAVE_NEON)
    case ATTN__ISA_NEON: attn__pack_b_neon(bpack, w, wt, w_stride, out_in, d_out, d_in, part, parts); break;
#endif
    default: (void)bpack; (void)w; (void)wt; (void)w_stride; (void)out_in; (void)d_in; (void)d_out; (void)part; (void)parts;
    }
}

/* Projections of at most this many rows take the few-row (GEMV) kernels: W read once from the caller's
   memory, no packing. Measured on the Zen 4 host (AVX-512, one thread, W out of cache; time of the GEMV
   kernel against packing W and the packed micro-kernel): IN_OUT 4096 -> 4096 at 1 row 4.3 ms vs 12 ms,
   8 rows 15 vs 20 ms, 10 rows 29 vs 18 ms; 768 -> 3072 at 8 rows 1.32 vs 1.35 ms, 9 rows 1.8 vs 1.4 ms.
   The GEMV kernel's cost grows with the rows (it loads and stores y for every four rows of W) while the
   packed kernel's hardly does, so they cross at 8-9 rows. OUT_IN's packing (a transpose of W) costs
   70 ms at 4096 -> 4096, so GEMV wins there at 12 rows still: one cutoff for both, IN_OUT's. 8 also
   covers decoding (1-8 tokens per step). */
#define ATTN__GEMV_ROWS 8

/* The scalar reference of the few-row kernels (and the portable path): columns [j0, j1) of
   y[n x d_out] = x[n x d_in] . op(W) (+ bias), op(W) = W [d_in x d_out] or, with out_in, W^T for
   W [d_out x d_in]. IN_OUT streams W's rows into the n rows of y; OUT_IN takes a dot product per output.
   The arithmetic of the scalar matrix products (attn__gemm_nn, attn__gemm_nt), so that on this path too a
   row's result does not depend on how many rows are projected with it. */
static void attn__gemv_ref(float *y, ptrdiff_t y_rs, const float *x, ptrdiff_t x_rs, const void *w, attn_dtype wt,
                           ptrdiff_t w_rs, int out_in, const float *bias, int n, int d_in, int j0, int j1)
{
    int i, j, p, l;
    for (i = 0; i < n; ++i) {
        const float *x_i = x + i * x_rs;
        float *y_i = y + i * y_rs;
        if (out_in)
            for (j = j0; j < j1; ++j) { /* attn__dot's sums, on W's values */
                const void *w_j = attn__row_as(w, wt, w_rs, j);
                float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, dot;
                for (p = 0; p + 8 <= d_in; p += 8)
                    for (l = 0; l < 8; ++l) acc[l] += x_i[p + l] * attn__load_as(w_j, p + l, wt);
                for (l = 0; p < d_in; ++p, ++l) acc[l] += x_i[p] * attn__load_as(w_j, p, wt);
                dot = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
                y_i[j] = bias ? bias[j] + dot : dot;
            }
        else {
            for (j = j0; j < j1; ++j) y_i[j] = bias ? bias[j] : 0.0f;
            for (p = 0; p < d_in; ++p) {
                const float x_ip = x_i[p];
                const void *w_p = attn__row_as(w, wt, w_rs, p);
                for (j = j0; j < j1; ++j) y_i[j] += x_ip * attn__load_as(w_p, j, wt);
            }
        }
    }
}

/* One product of attn__gemv: y[n x d_out] = x . op(W) + bias, W of element type wt and row stride w_stride. */
typedef struct attn__gemv_job {
    float *y;
    ptrdiff_t y_stride;
    const void *w;
    attn_dtype wt;
    ptrdiff_t w_stride;
    const float *bias;
    int d_out;
} attn__gemv_job;

/* The work items of a job on `threads` threads. OUT_IN: chunks of 64 outputs (64 contiguous rows of W),
   handed out as the threads ask, so that a thread slowed by other work on its core takes fewer of them.
   IN_OUT: even slices of whole vectors, at most one per thread, each at least 4 KiB of a W row, as a
   thread reads its slice of every row and shorter runs defeat the hardware's stream prefetch (a plain
   read of 4096 x 1024 floats, two threads each on 2 KiB of every 4 KiB row: 15 GB/s, against 23 GB/s
   for one thread on whole rows; one thread on 4096 -> 4096 in runs of 2 KiB: 7.3 ms, of 4 KiB: 6.4 ms,
   whole rows: 5.5 ms; Zen 4). So no finer slices to hand out. */
static int attn__gemv_items(const attn__gemv_job *jb, int out_in, int threads)
{
    const int units = 1 + (jb->d_out - 1) / 16, runs = (int)(attn__dtype_bytes(jb->wt, jb->d_out) / 4096);
    int t = threads;
    if (out_in) return 1 + (jb->d_out - 1) / 64;
    if (t > units) t = units;
    if (t > runs) t = runs;
    return t < 1 ? 1 : t;
}

/* y[n x d_out] = x[n x d_in] . op(W) + bias for n <= ATTN__GEMV_ROWS, for each of n_jobs products of the
   same x (a decoding step's Q, K and V), on up to `threads` threads. The threads split the output
   columns (never the sum over d_in), so the result is bitwise the same for any thread count; the items
   of all the jobs are handed out together, in order, so that two threads on Q's halves go on to K and V
   side by side, each on a whole W (decode_layer's W_k and W_v, 4096 -> 1024, 2 threads: 1.2 ms each
   split in two, against 0.75 ms read whole by one thread). At least 64 Ki weights per thread: smaller
   products are not worth a thread's start. */
static void attn__gemv(const attn__gemv_job *jobs, int n_jobs, const float *x, ptrdiff_t x_stride, int out_in,
                       int n, int d_in, int threads)
{
    const int isa = attn__isa();
    double weights = 0.0;
    int t, jn, items = 0, per[4];
    ATTN_ASSERT(n_jobs >= 1 && n_jobs <= 4);
    for (jn = 0; jn < n_jobs; ++jn) {
        weights += (double)d_in * (double)jobs[jn].d_out;
        items += per[jn] = attn__gemv_items(&jobs[jn], out_in, threads);
    }
    if (threads > items) threads = items;
    if ((double)threads > 1.0 + weights / 65536.0) threads = (int)(1.0 + weights / 65536.0);
    if (threads < 1) threads = 1;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
#endif
    for (t = 0; t < items; ++t) {
        const attn__gemv_job *jb = jobs;
        int k = t, j0, j1;
        while (k >= per[jb - jobs]) k -= per[jb++ - jobs]; /* item k of job jb */
        if (out_in) { /* chunk k: outputs [64 k, 64 k + 64) */
            j0 = 64 * k;
            j1 = jb->d_out - j0 < 64 ? jb->d_out : j0 + 64;
        } else { /* slice k of per[], in units of 16 columns */
            const int units = 1 + (jb->d_out - 1) / 16, parts = per[jb - jobs];
            j0 = 16 * (int)((long long)units * k / parts);
            j1 = 16 * (int)((long long)units * (k + 1) / parts);
            if (j1 > jb->d_out) j1 = jb->d_out;
        }
        if (j0 >= j1) continue;
        switch (isa) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
        case ATTN__ISA_AVX512:
            if (out_in) attn__gemv_out_in_avx512(jb->y, jb->y_stride, x, x_stride, jb->w, jb->wt, jb->w_stride, jb->bias, n, d_in, j0, j1);
            else attn__gemv_in_out_avx512(jb->y, jb->y_stride, x, x_stride, jb->w, jb->wt, jb->w_stride, jb->bias, n, d_in, j0, j1);
            break;
#endif
#if defined(ATTN__HAVE_X86)
        case ATTN__ISA_AVX2:
            if (out_in) attn__gemv_out_in_avx2(jb->y, jb->y_stride, x, x_stride, jb->w, jb->wt, jb->w_stride, jb->bias, n, d_in, j0, j1);
            else attn__gemv_in_out_avx2(jb->y, jb->y_stride, x, x_stride, jb->w, jb->wt, jb->w_stride, jb->bias, n, d_in, j0, j1);
            break;
#endif
#if defined(ATTN__HAVE_NEON)
        case ATTN__ISA_NEON:
            if (out_in) attn__gemv_out_in_neon(jb->y, jb->y_stride, x, x_stride, jb->w, jb->wt, jb->w_stride, jb->bias, n, d_in, j0, j1);
            else attn__gemv_in_out_neon(jb->y, jb->y_stride, x, x_stride, jb->w, jb->wt, jb->w_stride, jb->bias, n, d_in, j0, j1);
            break;
#endif
        default: attn__gemv_ref(jb->y, jb->y_stride, x, x_stride, jb->w, jb->wt, jb->w_stride, out_in, jb->bias, n, d_in, j0, j1);
        }
    }
}

/* y[n x d_out] = x[n x d_in] . W + bias on `threads` threads. With a pack buffer (attn__pack_floats(d_in,
   d_out) floats) the threads pack W together, then split the rows (each row gets the same arithmetic
   whatever the threads); without one, or on the scalar path, one thread and no buffer. At most
   ATTN__GEMV_ROWS rows take the few-row kernels instead, on `threads` threads, buffer or not. */
static void attn__project(float *y, ptrdiff_t y_stride, const float *x, ptrdiff_t x_stride, const void *w,
                          attn_dtype wt, ptrdiff_t w_stride, attn_layout layout, const float *bias, int n, int d_in,
                          int d_out, int threads, float *bpack)
{
    const int isa = bpack ? attn__isa() : ATTN__ISA_SCALAR, out_in = layout == ATTN_LAYOUT_OUT_IN;
    int n_blocks;
    if (n <= ATTN__GEMV_ROWS) { /* decoding: W read once, unpacked */
        const attn__gemv_job jb = {y, y_stride, w, wt, w_stride, bias, d_out};
        attn__gemv(&jb, 1, x, x_stride, out_in, n, d_in, threads);
        return;
    }
    if (isa == ATTN__ISA_SCALAR && wt != ATTN_F32) { /* the portable path: W widened into bpack, dense */
        const int rows = out_in ? d_out : d_in, cols = out_in ? d_in : d_out;
        int r;
        for (r = 0; r < rows; ++r)
            attn__to_f32(bpack + (size_t)r * (size_t)cols, attn__row_as(w, wt, w_stride, r), wt, (size_t)cols);
        w = bpack; wt = ATTN_F32; w_stride = cols;
    }
    if (isa == ATTN__ISA_SCALAR) threads = 1;
    if (threads > 1 + n / 96) threads = 1 + n / 96;
    /* blocks of at most about 96 rows, as many per thread, cut at multiples of 6 (the micro-kernel's rows) */
    n_blocks = threads * (1 + (n - 1) / threads / 96); /* n > 0; <= 1 + n / 48: no int overflow */
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
#ifdef _OPENMP
        const int part = omp_get_thread_num(), parts = omp_get_num_threads();
#else
        const int part = 0, parts = 1;
#endif
        int blk;
        attn__pack_weights(bpack, w, wt, w_stride, out_in, d_in, d_out, isa, part, parts);
#ifdef _OPENMP
#pragma omp barrier
#pragma omp for schedule(static)
#endif
        for (blk = 0; blk < n_blocks; ++blk) {
            const int q = n / n_blocks, r = n % n_blocks; /* block b starts at b q + min(b, r), rounded to 6 */
            const int s0 = blk * q + (blk < r ? blk : r), s1 = s0 + q + (blk < r);
            const int i0 = s0 - s0 % 6, m = (blk + 1 == n_blocks ? n : s1 - s1 % 6) - i0;
            float *y_b = y + (ptrdiff_t)i0 * y_stride;
            const float *x_b = x + (ptrdiff_t)i0 * x_stride;
            int i, j;
            if (m == 0) continue;
            if (bias)
                for (i = 0; i < m; ++i)
                    for (j = 0; j < d_out; ++j) y_b[(ptrdiff_t)i * y_stride + j] = bias[j];
            switch (isa) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
            case ATTN__ISA_AVX512: attn__gemm_packed_avx512(y_b, y_stride, x_b, x_stride, bpack, m, d_out, d_in, bias != NULL); break;
#endif
#if defined(ATTN__HAVE_X86)
            case ATTN__ISA_AVX2: attn__gemm_packed_avx2(y_b, y_stride, x_b, x_stride, bpack, m, d_out, d_in, bias != NULL); break;
#endif
#if defined(ATTN__HAVE_NEON)
            case ATTN__ISA_NEON: attn__gemm_packed_neon(y_b, y_stride, x_b, x_stride, bpack, m, d_out, d_in, bias != NULL); break;
#endif
            default: attn__matmul(y_b, y_stride, x_b, x_stride, (const float *)w, w_stride, out_in, m, d_out, d_in, bias != NULL);
            }
        }
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

/* The decoding kernel for the query heads of a kv group (attn__group_forward), on the instruction set of
   this call; NULL on the portable path, which runs each head on its own. */
typedef void (*attn__group_fn)(const attn__head *h, int g, float *ws);
static attn__group_fn attn__group_kernel(void)
{
    switch (attn__isa()) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
    case ATTN__ISA_AVX512: return attn__group_forward_avx512;
#endif
#if defined(ATTN__HAVE_X86)
    case ATTN__ISA_AVX2: return attn__group_forward_avx2;
#endif
#if defined(ATTN__HAVE_NEON)
    case ATTN__ISA_NEON: return attn__group_forward_neon;
#endif
    default: return NULL;
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* 16-bit floats: float16 and bfloat16 conversions                                                */
/* ---------------------------------------------------------------------------------------------- */

/* The bits are unsigned short, so that the public declarations need no <stdint.h>: 16 bits on every
   SIMD target; the scalar code reads and writes only the low 16 bits, so a wider one works too. Every path gives the bits of the scalar reference below, which rounds to nearest
   even exactly as IEEE 754 does:
   - float16: subnormals kept (units of 2^-24), |x| >= 65520 (half-way past 65504) to +-inf, -0 kept;
     a NaN becomes the quiet NaN sign | 0x7e00 | the top 9 payload bits (what F16C's vcvtps2ph and
     AArch64's fcvtn give), and back the quiet NaN sign | 0x7fc00000 | payload << 13 (vcvtph2ps, fcvtl).
   - bfloat16: the top 16 bits rounded to nearest even (subnormals too: an integer add does it), so
     values past 0x7f7f.8000 become +-inf as RNE says; a NaN keeps its sign and top payload bits with the
     quiet bit 0x40 set, as rounding could otherwise carry it into inf. Back: a 16-bit shift, exact
     (NaN payloads, signalling or not, unchanged).
   The SIMD paths assume the default floating-point environment (x86 MXCSR without DAZ, as -ffast-math's
   startup code would set; AArch64 FPCR with FZ, DN and AHP clear, round to nearest: Linux's default). */

/* float32 bits, and the float32 of bits, without aliasing a float as an integer (memcpy). */
static inline uint32_t attn__f32_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}
static inline float attn__f32_from_bits(uint32_t x)
{
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* float32 -> float16 bits, round to nearest even. */
static inline unsigned short attn__f32_to_f16_1(float f)
{
    const uint32_t x = attn__f32_bits(f), sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    uint32_t m, q, rem, half, shift;
    if (a > 0x7f800000u) return (unsigned short)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN: quiet */
    if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u); /* >= 65520 (and inf): inf */
    if (a >= 0x38800000u) {                                        /* >= 2^-14: a normal float16 */
        m = a - 0x38000000u;                                       /* exponent rebiased, 127 -> 15 */
        m += 0xfffu + ((m >> 13) & 1u);                            /* ties to even; may carry into the exponent */
        return (unsigned short)(sign | (m >> 13));
    }
    if (a < 0x33000000u) return (unsigned short)sign; /* below 2^-25, half the least subnormal: 0 */
    /* a subnormal float16, units of 2^-24: the significand (with its implicit bit) shifted right by
       126 - exponent, 14 to 24 places, rounded to nearest even (0x400, the least normal, is encoded right) */
    shift = 126u - (a >> 23);
    m = (a & 0x7fffffu) | 0x800000u;
    q = m >> shift;
    rem = m & ((1u << shift) - 1u);
    half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return (unsigned short)(sign | q);
}

/* float16 bits -> float32, exact (a signalling NaN comes back quiet). */
static inline float attn__f16_to_f32_1(unsigned short h)
{
    const uint32_t sign = ((uint32_t)h & 0x8000u) << 16, e = ((uint32_t)h >> 10) & 0x1fu;
    uint32_t m = (uint32_t)h & 0x3ffu, x, ex;
    if (e == 31u) x = sign | 0x7f800000u | (m ? 0x400000u | (m << 13) : 0u);
    else if (e != 0u) x = sign | ((e + 112u) << 23) | (m << 13);
    else if (m == 0u) x = sign;
    else { /* subnormal m * 2^-24: normalised, the leading bit moved to bit 10 */
        ex = 113u;
        while (!(m & 0x400u)) { m <<= 1; --ex; }
        x = sign | (ex << 23) | ((m & 0x3ffu) << 13);
    }
    return attn__f32_from_bits(x);
}

/* float32 -> bfloat16 bits, round to nearest even; NaN stays a quiet NaN. */
static inline unsigned short attn__f32_to_bf16_1(float f)
{
    const uint32_t x = attn__f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x40u);
    return (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* bfloat16 bits -> float32, exact. */
static inline float attn__bf16_to_f32_1(unsigned short h)
{
    return attn__f32_from_bits((uint32_t)h << 16);
}

/* The portable loops: the reference, and the tails of the SIMD loops. */
static void attn__f32_to_f16_scalar(unsigned short *dst, const float *src, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) dst[i] = attn__f32_to_f16_1(src[i]);
}
static void attn__f16_to_f32_scalar(float *dst, const unsigned short *src, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) dst[i] = attn__f16_to_f32_1(src[i]);
}
static void attn__f32_to_bf16_scalar(unsigned short *dst, const float *src, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) dst[i] = attn__f32_to_bf16_1(src[i]);
}
static void attn__bf16_to_f32_scalar(float *dst, const unsigned short *src, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) { /* the bits, not a float value: on x87 (32-bit x86) a float passing through */
        const uint32_t x = (uint32_t)src[i] << 16; /* the FPU stack comes out of it with a NaN quieted */
        memcpy(dst + i, &x, sizeof x);
    }
}

#ifdef ATTN__HAVE_X86
/* AVX2 machines: float16 by F16C (vcvtps2ph with the rounding in its immediate, so MXCSR.RC does not
   matter; vcvtph2ps), which every AVX2+FMA CPU has (x86-64-v3 bundles them; clang 14 cannot ask
   __builtin_cpu_supports about f16c); bfloat16 by integer rounding, 8 lanes at a time. Unaligned loads
   and stores throughout; the tails go to the scalar loops. */
#define ATTN__HALF_AVX2 __attribute__((target("avx2,fma,f16c")))
static ATTN__HALF_AVX2 void attn__f32_to_f16_avx2(unsigned short *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    attn__f32_to_f16_scalar(dst + i, src + i, n - i);
}
static ATTN__HALF_AVX2 void attn__f16_to_f32_avx2(float *dst, const unsigned short *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(src + i))));
    attn__f16_to_f32_scalar(dst + i, src + i, n - i);
}
/* 8 float32 bit patterns -> their bfloat16 bits in the low half of each lane (the scalar rule). */
static ATTN__HALF_AVX2 __m256i attn__bf16_round_avx2(__m256i x)
{
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    return _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40)), nan);
}
static ATTN__HALF_AVX2 void attn__f32_to_bf16_avx2(unsigned short *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 16; i += 16) { /* packus works within 128-bit lanes: a0-3 b0-3 a4-7 b4-7, then reordered */
        const __m256i a = attn__bf16_round_avx2(_mm256_castps_si256(_mm256_loadu_ps(src + i)));
        const __m256i b = attn__bf16_round_avx2(_mm256_castps_si256(_mm256_loadu_ps(src + i + 8)));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8));
    }
    if (n - i >= 8) {
        const __m256i a = attn__bf16_round_avx2(_mm256_castps_si256(_mm256_loadu_ps(src + i)));
        _mm_storeu_si128((__m128i *)(void *)(dst + i),
                         _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(a, a), 0x08)));
        i += 8;
    }
    attn__f32_to_bf16_scalar(dst + i, src + i, n - i);
}
static ATTN__HALF_AVX2 void attn__bf16_to_f32_avx2(float *dst, const unsigned short *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(src + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
    }
    attn__bf16_to_f32_scalar(dst + i, src + i, n - i);
}

#ifndef ATTN_NO_AVX512
/* AVX-512F, 16 lanes: float16 by the 512-bit vcvtps2ph / vcvtph2ps (AVX512F itself), bfloat16 by the same
   integer rounding with a mask blend and vpmovdw; the tails through the AVX2 loops. AVX512_BF16's
   vcvtneps2bf16 is not used: it flushes subnormal inputs to +-0 (its NaN rule is ours), and fixing those
   lanes costs as much as the integer rounding, which is exact. */
#if defined(__GNUC__) && !defined(__clang__) /* gcc 12's _mm256_undefined_si256 in the intrinsics trips */
#pragma GCC diagnostic push                   /* -W(maybe-)uninitialized in C++ (gcc bug 105593) */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#define ATTN__HALF_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
static ATTN__HALF_AVX512 void attn__f32_to_f16_avx512(unsigned short *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 16; i += 16)
        _mm256_storeu_si256((__m256i *)(void *)(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    attn__f32_to_f16_avx2(dst + i, src + i, n - i);
}
static ATTN__HALF_AVX512 void attn__f16_to_f32_avx512(float *dst, const unsigned short *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 16; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(src + i))));
    attn__f16_to_f32_avx2(dst + i, src + i, n - i);
}
static ATTN__HALF_AVX512 void attn__f32_to_bf16_avx512(unsigned short *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 16; i += 16) {
        const __m512i x = _mm512_castps_si512(_mm512_loadu_ps(src + i));
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
        const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb), 16);
        const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff)),
                                                      _mm512_set1_epi32(0x7f800000));
        const __m512i q = _mm512_or_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x40));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, q)));
    }
    attn__f32_to_bf16_avx2(dst + i, src + i, n - i);
}
static ATTN__HALF_AVX512 void attn__bf16_to_f32_avx512(float *dst, const unsigned short *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 16; i += 16) {
        const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(src + i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
    }
    attn__bf16_to_f32_avx2(dst + i, src + i, n - i);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif /* !ATTN_NO_AVX512 */
#endif /* ATTN__HAVE_X86 */

#ifdef ATTN__HAVE_NEON
/* NEON, 8 lanes: float16 by fcvtn / fcvtl (vcvt_f16_f32, vcvt_f32_f16; round to nearest even under the
   default FPCR), bfloat16 by the integer rounding (vbsl for NaN lanes, vmovn) and a widening shift. */
static void attn__f32_to_f16_neon(unsigned short *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        const float16x8_t h = vcombine_f16(vcvt_f16_f32(vld1q_f32(src + i)), vcvt_f16_f32(vld1q_f32(src + i + 4)));
        vst1q_u16((uint16_t *)(dst + i), vreinterpretq_u16_f16(h));
    }
    attn__f32_to_f16_scalar(dst + i, src + i, n - i);
}
static void attn__f16_to_f32_neon(float *dst, const unsigned short *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16((const uint16_t *)(src + i)));
        vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(dst + i + 4, vcvt_f32_f16(vget_high_f16(h)));
    }
    attn__f16_to_f32_scalar(dst + i, src + i, n - i);
}
/* 4 float32 bit patterns -> their bfloat16 bits (the scalar rule), narrowed to 16-bit lanes. */
static uint16x4_t attn__bf16_round_neon(uint32x4_t x)
{
    const uint32x4_t lsb = vandq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(1));
    const uint32x4_t r = vshrq_n_u32(vaddq_u32(vaddq_u32(x, vdupq_n_u32(0x7fff)), lsb), 16);
    const uint32x4_t nan = vcgtq_u32(vandq_u32(x, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
    return vmovn_u32(vbslq_u32(nan, vorrq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(0x40)), r));
}
static void attn__f32_to_bf16_neon(unsigned short *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        const uint16x4_t a = attn__bf16_round_neon(vreinterpretq_u32_f32(vld1q_f32(src + i)));
        const uint16x4_t b = attn__bf16_round_neon(vreinterpretq_u32_f32(vld1q_f32(src + i + 4)));
        vst1q_u16((uint16_t *)(dst + i), vcombine_u16(a, b));
    }
    attn__f32_to_bf16_scalar(dst + i, src + i, n - i);
}
static void attn__bf16_to_f32_neon(float *dst, const unsigned short *src, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        const uint16x8_t h = vld1q_u16((const uint16_t *)(src + i));
        vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
        vst1q_f32(dst + i + 4, vreinterpretq_f32_u32(vshll_n_u16(vget_high_u16(h), 16)));
    }
    attn__bf16_to_f32_scalar(dst + i, src + i, n - i);
}
#endif /* ATTN__HAVE_NEON */

/* The conversions, validated: n == 0 does nothing (NULL allowed); otherwise dst and src are required. */
static attn_result attn__convert_check(const char *func, const void *dst, const void *src, size_t n)
{
    if (n == 0) return ATTN_OK;
    ATTN__REQUIRE(dst, ATTN_ERR_NULL, "dst", "NULL with n > 0");
    ATTN__REQUIRE(src, ATTN_ERR_NULL, "src", "NULL with n > 0");
    return ATTN_OK;
}

ATTNDEF attn_result attn_f32_to_f16(unsigned short *dst, const float *src, size_t n)
{
    const attn_result r = attn__convert_check("attn_f32_to_f16", dst, src, n);
    if (r != ATTN_OK || n == 0) return r;
    switch (attn__isa()) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
    case ATTN__ISA_AVX512: attn__f32_to_f16_avx512(dst, src, n); break;
#endif
#if defined(ATTN__HAVE_X86)
    case ATTN__ISA_AVX2: attn__f32_to_f16_avx2(dst, src, n); break;
#endif
#if defined(ATTN__HAVE_NEON)
    case ATTN__ISA_NEON: attn__f32_to_f16_neon(dst, src, n); break;
#endif
    default: attn__f32_to_f16_scalar(dst, src, n);
    }
    return ATTN_OK;
}

ATTNDEF attn_result attn_f16_to_f32(float *dst, const unsigned short *src, size_t n)
{
    const attn_result r = attn__convert_check("attn_f16_to_f32", dst, src, n);
    if (r != ATTN_OK || n == 0) return r;
    switch (attn__isa()) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
    case ATTN__ISA_AVX512: attn__f16_to_f32_avx512(dst, src, n); break;
#endif
#if defined(ATTN__HAVE_X86)
    case ATTN__ISA_AVX2: attn__f16_to_f32_avx2(dst, src, n); break;
#endif
#if defined(ATTN__HAVE_NEON)
    case ATTN__ISA_NEON: attn__f16_to_f32_neon(dst, src, n); break;
#endif
    default: attn__f16_to_f32_scalar(dst, src, n);
    }
    return ATTN_OK;
}

ATTNDEF attn_result attn_f32_to_bf16(unsigned short *dst, const float *src, size_t n)
{
    const attn_result r = attn__convert_check("attn_f32_to_bf16", dst, src, n);
    if (r != ATTN_OK || n == 0) return r;
    switch (attn__isa()) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
    case ATTN__ISA_AVX512: attn__f32_to_bf16_avx512(dst, src, n); break;
#endif
#if defined(ATTN__HAVE_X86)
    case ATTN__ISA_AVX2: attn__f32_to_bf16_avx2(dst, src, n); break;
#endif
#if defined(ATTN__HAVE_NEON)
    case ATTN__ISA_NEON: attn__f32_to_bf16_neon(dst, src, n); break;
#endif
    default: attn__f32_to_bf16_scalar(dst, src, n);
    }
    return ATTN_OK;
}

ATTNDEF attn_result attn_bf16_to_f32(float *dst, const unsigned short *src, size_t n)
{
    const attn_result r = attn__convert_check("attn_bf16_to_f32", dst, src, n);
    if (r != ATTN_OK || n == 0) return r;
    switch (attn__isa()) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
    case ATTN__ISA_AVX512: attn__bf16_to_f32_avx512(dst, src, n); break;
#endif
#if defined(ATTN__HAVE_X86)
    case ATTN__ISA_AVX2: attn__bf16_to_f32_avx2(dst, src, n); break;
#endif
#if defined(ATTN__HAVE_NEON)
    case ATTN__ISA_NEON: attn__bf16_to_f32_neon(dst, src, n); break;
#endif
    default: attn__bf16_to_f32_scalar(dst, src, n);
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* 8-bit blocks (ATTN_Q8): quantisation and dequantisation                                        */
/* ---------------------------------------------------------------------------------------------- */

/* The format is at attn_dtype and attn_f32_to_q8: blocks of 32 values, a float32 scale d = max|x| / 127
   then 32 int8 q = round(x / d), value d * q. The float32 scale (ggml's q8_0 stores a float16 one, 34
   bytes a block) keeps d exact as computed: 36 bytes, 1.125 per value, 4-byte aligned blocks when the
   array is. Quantising is scalar on every path (it runs once per value appended to a cache; a division
   per value, so that q is the documented rounding of the float32 quotient); dequantising, which the
   tile kernels run once per key tile, has SIMD loops in the kernel template (ATTN__VLOAD_Q8). */

/* x rounded to the nearest integer, ties to even, whatever the rounding mode (|x| < 2^23). */
static float attn__round_even(float x)
{
    float f = floorf(x);
    const float r = x - f; /* exact */
    if (r > 0.5f || (r == 0.5f && fmodf(f, 2.0f) != 0.0f)) f += 1.0f;
    return f;
}

/* One block: dst [36 bytes] = the scale and int8s of x [32] (attn_f32_to_q8). */
static void attn__f32_to_q8_block(unsigned char *dst, const float *x)
{
    float amax = 0.0f, d;
    int i, finite = 1;
    signed char q[ATTN_Q8_BLOCK];
    for (i = 0; i < ATTN_Q8_BLOCK; ++i) {
        const float a = fabsf(x[i]);
        if (!isfinite(a)) finite = 0;
        else if (a > amax) amax = a;
    }
    d = finite ? amax / 127.0f : attn__f32_from_bits(0x7fc00000u);
    for (i = 0; i < ATTN_Q8_BLOCK; ++i) {
        float y = finite && d != 0.0f ? attn__round_even(x[i] / d) : 0.0f;
        y = y > 127.0f ? 127.0f : y < -127.0f ? -127.0f : y;
        q[i] = (signed char)(int)y;
    }
    memcpy(dst, &d, sizeof d);
    memcpy(dst + sizeof d, q, sizeof q);
}

/* The portable dequantiser, the reference of the SIMD loops: d * q per value. */
static void attn__q8_to_f32_scalar(float *dst, const unsigned char *src, size_t n_blocks)
{
    size_t b;
    int i;
    for (b = 0; b < n_blocks; ++b, src += ATTN_Q8_BLOCK_BYTES, dst += ATTN_Q8_BLOCK) {
        const float d = attn__q8_scale(src);
        for (i = 0; i < ATTN_Q8_BLOCK; ++i) dst[i] = d * (float)(signed char)src[sizeof d + (size_t)i];
    }
}

ATTNDEF attn_result attn_f32_to_q8(void *dst, const float *src, size_t n)
{
    const char *func = "attn_f32_to_q8";
    const attn_result r = attn__convert_check(func, dst, src, n);
    size_t b;
    if (r != ATTN_OK || n == 0) return r;
    ATTN__REQUIRE(n % ATTN_Q8_BLOCK == 0, ATTN_ERR_SHAPE, "n", "not a multiple of 32 (ATTN_Q8_BLOCK)");
    for (b = 0; b < n / ATTN_Q8_BLOCK; ++b)
        attn__f32_to_q8_block((unsigned char *)dst + b * ATTN_Q8_BLOCK_BYTES, src + b * ATTN_Q8_BLOCK);
    return ATTN_OK;
}

ATTNDEF attn_result attn_q8_to_f32(float *dst, const void *src, size_t n)
{
    const char *func = "attn_q8_to_f32";
    const attn_result r = attn__convert_check(func, dst, src, n);
    const unsigned char *s = (const unsigned char *)src;
    if (r != ATTN_OK || n == 0) return r;
    ATTN__REQUIRE(n % ATTN_Q8_BLOCK == 0, ATTN_ERR_SHAPE, "n", "not a multiple of 32 (ATTN_Q8_BLOCK)");
    switch (attn__isa()) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
    case ATTN__ISA_AVX512: attn__q8_to_f32_avx512(dst, s, n / ATTN_Q8_BLOCK); break;
#endif
#if defined(ATTN__HAVE_X86)
    case ATTN__ISA_AVX2: attn__q8_to_f32_avx2(dst, s, n / ATTN_Q8_BLOCK); break;
#endif
#if defined(ATTN__HAVE_NEON)
    case ATTN__ISA_NEON: attn__q8_to_f32_neon(dst, s, n / ATTN_Q8_BLOCK); break;
#endif
    default: attn__q8_to_f32_scalar(dst, s, n / ATTN_Q8_BLOCK);
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Building blocks                                                                                */
/* ---------------------------------------------------------------------------------------------- */

/* Validates attn_project's arguments (and attn_project_ex's, under its own name). */
static attn_result attn__project_check(const char *func, const float *y, ptrdiff_t y_stride, const float *x,
                                       ptrdiff_t x_stride, const void *w, ptrdiff_t w_stride, attn_layout layout,
                                       int n, int d_in, int d_out)
{
    attn_result r;
    ATTN__REQUIRE(y, ATTN_ERR_NULL, "y", "NULL");
    ATTN__REQUIRE(x, ATTN_ERR_NULL, "x", "NULL");
    ATTN__REQUIRE(w, ATTN_ERR_NULL, "w", "NULL");
    ATTN__REQUIRE(n > 0, ATTN_ERR_SHAPE, "n", "must be > 0");
    ATTN__REQUIRE(d_in > 0, ATTN_ERR_SHAPE, "d_in", "must be > 0");
    ATTN__REQUIRE(d_out > 0, ATTN_ERR_SHAPE, "d_out", "must be > 0");
    ATTN__REQUIRE(layout == ATTN_LAYOUT_IN_OUT || layout == ATTN_LAYOUT_OUT_IN, ATTN_ERR_OPTION, "layout",
                  "must be ATTN_LAYOUT_IN_OUT (0) or ATTN_LAYOUT_OUT_IN (1)");
    if ((r = attn__check_matrix(func, ATTN__MATRIX("y_stride", "d_out"), y_stride, n, d_out, 1)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(func, ATTN__MATRIX("x_stride", "d_in"), x_stride, n, d_in, 0)) != ATTN_OK) return r;
    if (layout == ATTN_LAYOUT_IN_OUT)
        r = attn__check_matrix(func, ATTN__MATRIX("w_stride", "d_out"), w_stride, d_in, d_out, 0);
    else r = attn__check_matrix(func, ATTN__MATRIX("w_stride", "d_in"), w_stride, d_out, d_in, 0);
    return r;
}

ATTNDEF attn_result attn_project(float *y, ptrdiff_t y_stride, const float *x, ptrdiff_t x_stride,
                                 const float *w, ptrdiff_t w_stride, attn_layout layout, const float *bias,
                                 int n, int d_in, int d_out)
{
    attn_result r;
    if ((r = attn__project_check("attn_project", y, y_stride, x, x_stride, w, w_stride, layout, n, d_in, d_out)) != ATTN_OK)
        return r;
    attn__project(y, y_stride, x, x_stride, w, ATTN_F32, w_stride, layout, bias, n, d_in, d_out, 1, NULL);
    return ATTN_OK;
}

static attn_result attn__ws_bytes(size_t *bytes, size_t floats); /* defined with the fused kernel's sizes */
static float *attn__ws_base(void *ws);
static int attn__threads(const attn_options *o, double items);

/* The output columns [*c0, *c1) of slice split_index of split_count (all of them without a split): whole
   blocks of 64 columns, as even as they go. A column's arithmetic does not depend on its slice. */
static void attn__project_slice(int *c0, int *c1, int d_out, const attn_options *o)
{
    const long long blocks = 1 + (d_out - 1) / 64;
    *c0 = 0;
    *c1 = d_out;
    if (o->split_count > 0) {
        const long long b0 = blocks * o->split_index / o->split_count, b1 = blocks * (o->split_index + 1) / o->split_count;
        *c0 = 64 * b0 < d_out ? (int)(64 * b0) : d_out;
        *c1 = 64 * b1 < d_out ? (int)(64 * b1) : d_out;
    }
}

/* Validates the options of attn_project_ex and of its size query; *need = the workspace bytes of one call
   (of one slice with a split): none for the few-row kernels, else the slice's columns of W packed. */
static attn_result attn__project_need(const char *func, size_t *need, int n, int d_in, int d_out,
                                      const attn_options *o)
{
    int c0, c1;
    size_t floats;
    ATTN__REQUIRE(o->n_threads >= 0, ATTN_ERR_OPTION, "opt->n_threads", "negative");
    ATTN__REQUIRE(o->split_count >= 0, ATTN_ERR_OPTION, "opt->split_count", "negative");
    ATTN__REQUIRE(o->split_count == 0 || (o->split_index >= 0 && o->split_index < o->split_count), ATTN_ERR_OPTION,
                  "opt->split_index", "outside [0, split_count)");
    *need = 0;
    if (n <= ATTN__GEMV_ROWS) return ATTN_OK;
    attn__project_slice(&c0, &c1, d_out, o);
    ATTN__REQUIRE(attn__pack_floats(&floats, d_in, c1 > c0 ? c1 - c0 : 1) && attn__ws_bytes(need, floats) == ATTN_OK,
                  ATTN_ERR_OVERFLOW, "d_in", "the packed weights (d_in x d_out floats) overflow size_t");
    return ATTN_OK;
}

ATTNDEF attn_result attn_project_workspace_size(size_t *bytes, int n, int d_in, int d_out, const attn_options *opt)
{
    const char *func = "attn_project_workspace_size";
    size_t need;
    attn_result r;
    if (!opt) opt = &attn__default_options;
    ATTN__REQUIRE(bytes, ATTN_ERR_NULL, "bytes", "NULL");
    ATTN__REQUIRE(n > 0, ATTN_ERR_SHAPE, "n", "must be > 0");
    ATTN__REQUIRE(d_in > 0, ATTN_ERR_SHAPE, "d_in", "must be > 0");
    ATTN__REQUIRE(d_out > 0, ATTN_ERR_SHAPE, "d_out", "must be > 0");
    if ((r = attn__project_need(func, &need, n, d_in, d_out, opt)) != ATTN_OK) return r;
    *bytes = need; /* written only on success */
    return ATTN_OK;
}

ATTNDEF attn_result attn_project_ex(float *y, ptrdiff_t y_stride, const float *x, ptrdiff_t x_stride,
                                    const void *w, ptrdiff_t w_stride, attn_layout layout, const float *bias,
                                    int n, int d_in, int d_out, const attn_options *opt, void *workspace,
                                    size_t workspace_bytes)
{
    const char *func = "attn_project_ex";
    attn_result r;
    size_t need;
    void *mem = workspace;
    int c0, c1;
    if (!opt) opt = &attn__default_options;
    if ((r = attn__project_check(func, y, y_stride, x, x_stride, w, w_stride, layout, n, d_in, d_out)) != ATTN_OK)
        return r;
    ATTN__REQUIRE(opt->w_type == ATTN_F32 || opt->w_type == ATTN_F16 || opt->w_type == ATTN_BF16, ATTN_ERR_OPTION,
                  "opt->w_type", "must be 0, 1 or 2 (ATTN_F32, ATTN_F16, ATTN_BF16)");
    if ((r = attn__project_need(func, &need, n, d_in, d_out, opt)) != ATTN_OK) return r;
    ATTN__REQUIRE(!workspace || workspace_bytes >= need, ATTN_ERR_WORKSPACE, "workspace_bytes",
                  "smaller than attn_project_workspace_size reported");
    attn__project_slice(&c0, &c1, d_out, opt);
    if (c0 == c1) return ATTN_OK; /* a slice past the last block of columns: nothing to compute */
    if (need && !workspace && !(mem = ATTN_MALLOC(need, opt->alloc_user)))
        return attn__fail(func, ATTN_ERR_NOMEM, "workspace", "NULL, and ATTN_MALLOC returned NULL");
    /* the slice is a projection of its own: columns [c0, c1) of y, of W (rows of W for OUT_IN) and of bias */
    attn__project(y + c0, y_stride, x, x_stride,
                  (const char *)w + attn__dtype_bytes(opt->w_type, layout == ATTN_LAYOUT_OUT_IN ? (ptrdiff_t)c0 * w_stride : c0),
                  opt->w_type, w_stride, layout, bias ? bias + c0 : NULL, n, d_in, c1 - c0, attn__threads(opt, ATTN_MAX_THREADS),
                  need ? attn__ws_base(mem) : NULL);
    if (need && !workspace) ATTN_FREE(mem, opt->alloc_user);
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
    const char *func = "attn_scores";
    attn_result r;
    int i, j;
    ATTN__REQUIRE(s, ATTN_ERR_NULL, "s", "NULL");
    ATTN__REQUIRE(q, ATTN_ERR_NULL, "q", "NULL");
    ATTN__REQUIRE(k, ATTN_ERR_NULL, "k", "NULL");
    ATTN__REQUIRE(n_q > 0, ATTN_ERR_SHAPE, "n_q", "must be > 0");
    ATTN__REQUIRE(n_k > 0, ATTN_ERR_SHAPE, "n_k", "must be > 0");
    ATTN__REQUIRE(d_k > 0, ATTN_ERR_SHAPE, "d_k", "must be > 0");
    ATTN__REQUIRE(isfinite(scale), ATTN_ERR_OPTION, "scale", "not finite");
    if ((r = attn__check_matrix(func, ATTN__MATRIX("s_stride", "n_k"), s_stride, n_q, n_k, 1)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(func, ATTN__MATRIX("q_stride", "d_k"), q_stride, n_q, d_k, 0)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(func, ATTN__MATRIX("k_stride", "d_k"), k_stride, n_k, d_k, 0)) != ATTN_OK) return r;
    attn__matmul(s, s_stride, q, q_stride, k, k_stride, 1, n_q, n_k, d_k, 0);
    scale = attn__scale(scale, d_k);
    for (i = 0; i < n_q; ++i)
        for (j = 0; j < n_k; ++j) s[(ptrdiff_t)i * s_stride + j] *= scale;
    return ATTN_OK;
}

ATTNDEF attn_result attn_softmax(float *p, ptrdiff_t p_stride, const float *s, ptrdiff_t s_stride,
                                 int n_rows, int n_cols, float *lse)
{
    const char *func = "attn_softmax";
    attn_result r;
    int i, j;
    ATTN__REQUIRE(p, ATTN_ERR_NULL, "p", "NULL");
    ATTN__REQUIRE(s, ATTN_ERR_NULL, "s", "NULL");
    ATTN__REQUIRE(n_rows > 0, ATTN_ERR_SHAPE, "n_rows", "must be > 0");
    ATTN__REQUIRE(n_cols > 0, ATTN_ERR_SHAPE, "n_cols", "must be > 0");
    if ((r = attn__check_matrix(func, ATTN__MATRIX("p_stride", "n_cols"), p_stride, n_rows, n_cols, 1)) != ATTN_OK)
        return r;
    if ((r = attn__check_matrix(func, ATTN__MATRIX("s_stride", "n_cols"), s_stride, n_rows, n_cols, 0)) != ATTN_OK)
        return r;
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
    const char *func = "attn_weighted_sum";
    attn_result r;
    ATTN__REQUIRE(o, ATTN_ERR_NULL, "o", "NULL");
    ATTN__REQUIRE(p, ATTN_ERR_NULL, "p", "NULL");
    ATTN__REQUIRE(v, ATTN_ERR_NULL, "v", "NULL");
    ATTN__REQUIRE(n_q > 0, ATTN_ERR_SHAPE, "n_q", "must be > 0");
    ATTN__REQUIRE(n_k > 0, ATTN_ERR_SHAPE, "n_k", "must be > 0");
    ATTN__REQUIRE(d_v > 0, ATTN_ERR_SHAPE, "d_v", "must be > 0");
    if ((r = attn__check_matrix(func, ATTN__MATRIX("o_stride", "d_v"), o_stride, n_q, d_v, 1)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(func, ATTN__MATRIX("p_stride", "n_k"), p_stride, n_q, n_k, 0)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(func, ATTN__MATRIX("v_stride", "d_v"), v_stride, n_k, d_v, 0)) != ATTN_OK) return r;
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
    const char *func = "attn_merge";
    attn_result r;
    int i;
    ATTN__REQUIRE(o, ATTN_ERR_NULL, "o", "NULL");
    ATTN__REQUIRE(o_a, ATTN_ERR_NULL, "o_a", "NULL");
    ATTN__REQUIRE(lse_a, ATTN_ERR_NULL, "lse_a", "NULL");
    ATTN__REQUIRE(o_b, ATTN_ERR_NULL, "o_b", "NULL");
    ATTN__REQUIRE(lse_b, ATTN_ERR_NULL, "lse_b", "NULL");
    ATTN__REQUIRE(n_rows > 0, ATTN_ERR_SHAPE, "n_rows", "must be > 0");
    ATTN__REQUIRE(d_v > 0, ATTN_ERR_SHAPE, "d_v", "must be > 0");
    if ((r = attn__check_matrix(func, ATTN__MATRIX("o_stride", "d_v"), o_stride, n_rows, d_v, 1)) != ATTN_OK) return r;
    if ((r = attn__check_matrix(func, ATTN__MATRIX("o_a_stride", "d_v"), o_a_stride, n_rows, d_v, 0)) != ATTN_OK)
        return r;
    if ((r = attn__check_matrix(func, ATTN__MATRIX("o_b_stride", "d_v"), o_b_stride, n_rows, d_v, 0)) != ATTN_OK)
        return r;
    for (i = 0; i < n_rows; ++i)
        attn__merge_row(o + (ptrdiff_t)i * o_stride, lse ? lse + i : NULL, o_a + (ptrdiff_t)i * o_a_stride, lse_a[i],
                        o_b + (ptrdiff_t)i * o_b_stride, lse_b[i], d_v);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Rotary position embeddings                                                                     */
/* ---------------------------------------------------------------------------------------------- */

/* Pairs whose cos and sin are held at a time: their frequencies in double, their cos and sin in float,
   on the stack (1 KiB), so any head width works without a workspace. */
#define ATTN__ROPE_CHUNK 64

/* Validates a rotary option for heads of width d (already checked positive); ATTN_OK for NULL or
   ATTN_ROPE_NONE, whose other fields are not read. Fields are reported as "rope->...". */
static attn_result attn__check_rope(const char *func, const attn_rope *rope, int d)
{
    float theta;
    if (!rope || rope->style == ATTN_ROPE_NONE) return ATTN_OK;
    ATTN__REQUIRE(rope->style == ATTN_ROPE_NEOX || rope->style == ATTN_ROPE_GPTJ, ATTN_ERR_OPTION, "rope->style",
                  "not ATTN_ROPE_NONE, _NEOX or _GPTJ");
    ATTN__REQUIRE(rope->n_rot >= 0, ATTN_ERR_OPTION, "rope->n_rot", "negative");
    ATTN__REQUIRE(rope->n_rot <= d, ATTN_ERR_OPTION, "rope->n_rot", "above the head width d");
    ATTN__REQUIRE(rope->n_rot % 2 == 0, ATTN_ERR_OPTION, "rope->n_rot", "odd");
    ATTN__REQUIRE(rope->n_rot != 0 || d % 2 == 0, ATTN_ERR_OPTION, "rope->n_rot", "0 (the whole head) with d odd");
    theta = rope->theta == 0.0f ? 10000.0f : rope->theta;
    ATTN__REQUIRE(isfinite(theta) && theta > 0.0f, ATTN_ERR_OPTION, "rope->theta", "not finite, or negative");
    ATTN__REQUIRE(isfinite(rope->freq_scale) && rope->freq_scale >= 0.0f, ATTN_ERR_OPTION, "rope->freq_scale",
                  "not finite, or negative");
    return ATTN_OK;
}

/* Rotates np pairs (x_a[p * step], x_b[p * step]) by the angles whose cos and sin are cs[p] and sn[p]:
   (a, b) <- (a cos - b sin, a sin + b cos). By blocks of 8 pairs copied into locals, each step its own
   loop of fixed length, so that compilers vectorise it at -O2 without checking whether x_a and x_b
   overlap; the last np % 8 pairs one by one. */
static void attn__rope_pairs(float *x_a, float *x_b, int step, const float *cs, const float *sn, int np)
{
    int p = 0, l;
    for (; p + 8 <= np; p += 8) {
        float a[8], b[8], ra[8], rb[8];
        for (l = 0; l < 8; ++l) a[l] = x_a[(p + l) * step];
        for (l = 0; l < 8; ++l) b[l] = x_b[(p + l) * step];
        for (l = 0; l < 8; ++l) {
            ra[l] = a[l] * cs[p + l] - b[l] * sn[p + l];
            rb[l] = a[l] * sn[p + l] + b[l] * cs[p + l];
        }
        for (l = 0; l < 8; ++l) x_a[(p + l) * step] = ra[l];
        for (l = 0; l < 8; ++l) x_b[(p + l) * step] = rb[l];
    }
    for (; p < np; ++p) {
        const float a = x_a[p * step], b = x_b[p * step];
        x_a[p * step] = a * cs[p] - b * sn[p];
        x_b[p * step] = a * sn[p] + b * cs[p];
    }
}

/* Rotates the rows of one batch in place, on validated arguments: x [n_heads, n, d] with the given row and
   head strides, row t at position pos0 + t. For pair p < n_rot/2, with frequency theta^(-2p/n_rot) and
   angle = (pos0 + t) * freq_scale * frequency, computed in double and rounded to float once as cos and sin:
       (x_a, x_b) <- (x_a cos - x_b sin, x_a sin + x_b cos),
   a = p and b = p + n_rot/2 (NEOX) or a = 2p and b = 2p + 1 (GPTJ); dimensions from n_rot on are kept.
   By chunks of pairs: the chunk's frequencies once, then per row its cos and sin once for all the heads. */
static void attn__rope_rows(float *x, ptrdiff_t row_stride, ptrdiff_t head_stride, int n_heads, int n, int d,
                            int pos0, const attn_rope *rope)
{
    double freq[ATTN__ROPE_CHUNK];
    float cs[ATTN__ROPE_CHUNK], sn[ATTN__ROPE_CHUNK];
    double theta, scale;
    int n_rot, half, p0, np, t, h, p;
    if (!rope || rope->style == ATTN_ROPE_NONE) return;
    n_rot = rope->n_rot ? rope->n_rot : d;
    half = n_rot / 2;
    theta = rope->theta != 0.0f ? (double)rope->theta : 10000.0;
    scale = rope->freq_scale != 0.0f ? (double)rope->freq_scale : 1.0;
    for (p0 = 0; p0 < half; p0 += np) {
        np = half - p0 < ATTN__ROPE_CHUNK ? half - p0 : ATTN__ROPE_CHUNK;
        for (p = 0; p < np; ++p) freq[p] = pow(theta, -2.0 * (double)(p0 + p) / (double)n_rot);
        for (t = 0; t < n; ++t) {
            const double pos = ((double)pos0 + (double)t) * scale; /* the scaled position */
            float *x_t = x + (ptrdiff_t)t * row_stride;
            for (p = 0; p < np; ++p) {
                const double angle = pos * freq[p];
                cs[p] = (float)cos(angle);
                sn[p] = (float)sin(angle);
            }
            for (h = 0; h < n_heads; ++h) {
                float *x_h = x_t + (ptrdiff_t)h * head_stride;
                if (rope->style == ATTN_ROPE_NEOX) /* the halves */
                    attn__rope_pairs(x_h + p0, x_h + half + p0, 1, cs, sn, np);
                else /* interleaved pairs */
                    attn__rope_pairs(x_h + 2 * p0, x_h + 2 * p0 + 1, 2, cs, sn, np);
            }
        }
    }
}

ATTNDEF attn_result attn_rope_apply(float *x, attn_stride x_s, int batch, int n_heads, int n, int d,
                                    const int *pos0, const attn_rope *rope)
{
    const char *func = "attn_rope_apply";
    attn_result r;
    int b;
    ATTN__REQUIRE(x, ATTN_ERR_NULL, "x", "NULL");
    ATTN__REQUIRE(batch > 0, ATTN_ERR_SHAPE, "batch", "must be > 0");
    ATTN__REQUIRE(n_heads > 0, ATTN_ERR_SHAPE, "n_heads", "must be > 0");
    ATTN__REQUIRE(n > 0, ATTN_ERR_SHAPE, "n", "must be > 0");
    ATTN__REQUIRE(d > 0, ATTN_ERR_SHAPE, "d", "must be > 0");
    /* x is read and written: an output view, so no two of its elements may share memory */
    if ((r = attn__check_view(func, ATTN__VIEW("x_s", "d"), x_s, batch, n_heads, n, d, 1)) != ATTN_OK) return r;
    if ((r = attn__check_rope(func, rope, d)) != ATTN_OK) return r;
    if (pos0)
        for (b = 0; b < batch; ++b) {
            ATTN__REQUIRE(pos0[b] >= 0, ATTN_ERR_OPTION, "pos0[b]", "negative");
            ATTN__REQUIRE(pos0[b] <= INT_MAX - (n - 1), ATTN_ERR_OVERFLOW, "pos0[b]",
                          "pos0[b] + n - 1 (the last position) above INT_MAX");
        }
    if (!rope || rope->style == ATTN_ROPE_NONE) return ATTN_OK;
    for (b = 0; b < batch; ++b)
        attn__rope_rows(x + (ptrdiff_t)b * x_s.batch, x_s.row, x_s.head, n_heads, n, d, pos0 ? pos0[b] : 0, rope);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Fused attention: the driver (sizes, options, work items, threads, key chunks, attn_sdpa)       */
/* ---------------------------------------------------------------------------------------------- */

/* One row of the key chunks' merge: o[d_v] and *lse (or NULL) from the chunks' unnormalised outputs
   acc_c [d_v] at acc + c * step and their max and sum ml_c = (m_c, l_c) at ml + c * step, in key order:
   with M = max m_c and f_c = exp(m_c - M) (1 where m_c = M, so that +inf and -inf maxima weigh l_c),
       o = sum_c f_c acc_c / sum_c f_c l_c,   lse = M + log(sum_c f_c l_c).
   The softmax of all the keys at once, as one kernel pass gives it: +inf scores share the weight by their
   count (l_c counts them where m_c = +inf), a fully masked row gives 0 and -inf, and a NaN in any chunk
   (l_c NaN) makes the row NaN. */
static void attn__merge_chunks(float *o, float *lse, const float *acc, const float *ml, size_t step, int chunks,
                               int d_v, const float *sink)
{
    float m = -INFINITY, l = 0.0f, inv;
    int c, j;
    for (c = 0; c < chunks; ++c) m = ml[(size_t)c * step] > m ? ml[(size_t)c * step] : m;
    for (j = 0; j < d_v; ++j) o[j] = 0.0f;
    for (c = 0; c < chunks; ++c) {
        const float m_c = ml[(size_t)c * step], l_c = ml[(size_t)c * step + 1];
        const float f = m_c == m ? 1.0f : expf(m_c - m);
        const float *acc_c = acc + (size_t)c * step;
        if (l_c == 0.0f) continue; /* no visible key: nothing to add, whatever acc_c holds */
        for (j = 0; j < d_v; ++j) o[j] += f * acc_c[j];
        l += f * l_c;
    }
    inv = attn__sink(&m, &l, sink); /* the head's sink, once for all the chunks */
    inv *= attn__inv_sum(l);
    for (j = 0; j < d_v; ++j) o[j] *= inv;
    if (lse) *lse = attn__lse(m, l);
}

/* Resolved sizes: n_kv_heads and d_v defaults filled in. Checks sizes and head counts. */
static attn_result attn__resolve_dims(const char *func, attn_dims *d, const attn_dims *in)
{
    *d = *in;
    if (d->n_kv_heads == 0) d->n_kv_heads = d->n_heads;
    if (d->d_v == 0) d->d_v = d->d_k;
    ATTN__REQUIRE(d->batch > 0, ATTN_ERR_SHAPE, "dims->batch", "must be > 0");
    ATTN__REQUIRE(d->n_heads > 0, ATTN_ERR_SHAPE, "dims->n_heads", "must be > 0");
    ATTN__REQUIRE(d->n_kv_heads > 0, ATTN_ERR_SHAPE, "dims->n_kv_heads", "must be >= 0 (0: n_heads)");
    ATTN__REQUIRE(d->n_q > 0, ATTN_ERR_SHAPE, "dims->n_q", "must be > 0");
    ATTN__REQUIRE(d->n_kv > 0, ATTN_ERR_SHAPE, "dims->n_kv", "must be > 0");
    ATTN__REQUIRE(d->d_k > 0, ATTN_ERR_SHAPE, "dims->d_k", "must be > 0");
    ATTN__REQUIRE(d->d_v > 0, ATTN_ERR_SHAPE, "dims->d_v", "must be >= 0 (0: d_k)");
    ATTN__REQUIRE(d->n_heads % d->n_kv_heads == 0, ATTN_ERR_KV_HEADS, "dims->n_heads",
                  "not a multiple of n_kv_heads");
    return ATTN_OK;
}

/* The sizes of attn_sdpa that no choice of strides can make valid: an axis above ATTN__MAX_DIM, or a view
   that cannot fit in ptrdiff_t even with its smallest strides (the output dense, as it may not overlap
   itself; the inputs with one [N x D] matrix broadcast over batches and heads). The checks of the views
   reject exactly these too, so attn_sdpa_workspace_size, which has no strides, agrees with attn_sdpa. */
static attn_result attn__check_sizes(const char *func, const attn_dims *d)
{
    size_t n;
    ATTN__REQUIRE(d->batch <= ATTN__MAX_DIM, ATTN_ERR_OVERFLOW, "dims->batch", "above INT_MAX - 128");
    ATTN__REQUIRE(d->n_heads <= ATTN__MAX_DIM, ATTN_ERR_OVERFLOW, "dims->n_heads", "above INT_MAX - 128");
    ATTN__REQUIRE(d->n_q <= ATTN__MAX_DIM, ATTN_ERR_OVERFLOW, "dims->n_q", "above INT_MAX - 128");
    ATTN__REQUIRE(d->n_kv <= ATTN__MAX_DIM, ATTN_ERR_OVERFLOW, "dims->n_kv", "above INT_MAX - 128");
    ATTN__REQUIRE(d->d_k <= ATTN__MAX_DIM, ATTN_ERR_OVERFLOW, "dims->d_k", "above INT_MAX - 128");
    ATTN__REQUIRE(d->d_v <= ATTN__MAX_DIM, ATTN_ERR_OVERFLOW, "dims->d_v", "above INT_MAX - 128");
    /* n_kv_heads <= n_heads, which divides by it */
    ATTN__REQUIRE(attn__mul(&n, (size_t)d->batch, (size_t)d->n_heads) && attn__mul(&n, n, (size_t)d->n_q) &&
                      attn__mul(&n, n, (size_t)d->d_v),
                  ATTN_ERR_OVERFLOW, "out", "its batch x n_heads x n_q x d_v elements overflow ptrdiff_t");
    ATTN__REQUIRE(attn__mul(&n, (size_t)d->n_q, (size_t)d->d_k), ATTN_ERR_OVERFLOW, "q",
                  "its n_q x d_k elements overflow ptrdiff_t");
    ATTN__REQUIRE(attn__mul(&n, (size_t)d->n_kv, (size_t)d->d_k), ATTN_ERR_OVERFLOW, "k",
                  "its n_kv x d_k elements overflow ptrdiff_t");
    ATTN__REQUIRE(attn__mul(&n, (size_t)d->n_kv, (size_t)d->d_v), ATTN_ERR_OVERFLOW, "v",
                  "its n_kv x d_v elements overflow ptrdiff_t");
    return ATTN_OK;
}

/* Validates the options against resolved sizes: everything but the values of kv_len, sinks and
   alibi_slopes when read_values is 0 (the workspace queries: a caller may size a buffer before its lengths are known). */
static attn_result attn__check_options(const char *func, const attn_options *o, const attn_dims *d, int read_values)
{
    size_t n;
    attn_result r;
    int b;
    ATTN__REQUIRE(isfinite(o->scale), ATTN_ERR_OPTION, "opt->scale", "not finite");
    ATTN__REQUIRE(o->n_threads >= 0, ATTN_ERR_OPTION, "opt->n_threads", "negative");
    ATTN__REQUIRE(o->split_count >= 0, ATTN_ERR_OPTION, "opt->split_count", "negative");
    ATTN__REQUIRE(o->split_count == 0 || (o->split_index >= 0 && o->split_index < o->split_count), ATTN_ERR_OPTION,
                  "opt->split_index", "outside [0, split_count)");
    ATTN__REQUIRE(o->causal == ATTN_CAUSAL_NONE || o->causal == ATTN_CAUSAL_TOP_LEFT ||
                      o->causal == ATTN_CAUSAL_BOTTOM_RIGHT,
                  ATTN_ERR_OPTION, "opt->causal", "must be 0, 1 or 2 (ATTN_CAUSAL_NONE, _TOP_LEFT, _BOTTOM_RIGHT)");
    ATTN__REQUIRE(attn__dtype_valid(o->k_type), ATTN_ERR_OPTION, "opt->k_type",
                  "must be 0, 1, 2 or 3 (ATTN_F32, ATTN_F16, ATTN_BF16, ATTN_Q8)");
    ATTN__REQUIRE(attn__dtype_valid(o->v_type), ATTN_ERR_OPTION, "opt->v_type",
                  "must be 0, 1, 2 or 3 (ATTN_F32, ATTN_F16, ATTN_BF16, ATTN_Q8)");
    ATTN__REQUIRE(o->w_type == ATTN_F32, ATTN_ERR_OPTION, "opt->w_type",
                  "must be 0: attn_project_ex's (a multi-head model's weights: attn_mha.w_type)");
    ATTN__REQUIRE(o->q_type == ATTN_F32 || o->q_type == ATTN_F16 || o->q_type == ATTN_BF16, ATTN_ERR_OPTION,
                  "opt->q_type", "must be 0, 1 or 2 (ATTN_F32, ATTN_F16, ATTN_BF16)");
    ATTN__REQUIRE(o->out_type == ATTN_F32 || o->out_type == ATTN_F16 || o->out_type == ATTN_BF16, ATTN_ERR_OPTION,
                  "opt->out_type", "must be 0, 1 or 2 (ATTN_F32, ATTN_F16, ATTN_BF16)");
    ATTN__REQUIRE(o->k_type != ATTN_Q8 || d->d_k % ATTN_Q8_BLOCK == 0, ATTN_ERR_SHAPE, "dims->d_k",
                  "not a multiple of 32 with k_type ATTN_Q8");
    ATTN__REQUIRE(o->v_type != ATTN_Q8 || d->d_v % ATTN_Q8_BLOCK == 0, ATTN_ERR_SHAPE, "dims->d_v",
                  "not a multiple of 32 with v_type ATTN_Q8");
    if (o->mask) { /* [B, Hq, Nq, Nk], or one row per (batch, head) when broadcast over the queries */
        attn_stride ms = o->mask_stride;
        if (ms.row == 0 || o->mask_broadcast_rows) ms.row = d->n_kv; /* broadcast: the row stride is unused */
        if ((r = attn__check_view(func, ATTN__VIEW("opt->mask_stride", "n_kv"), ms, d->batch, d->n_heads,
                                  o->mask_broadcast_rows ? 1 : d->n_q, d->n_kv, 0)) != ATTN_OK)
            return r;
    }
    if (o->kv_len && read_values)
        for (b = 0; b < d->batch; ++b) {
            ATTN__REQUIRE(o->kv_len[b] >= 0, ATTN_ERR_OPTION, "opt->kv_len[b]", "negative");
            ATTN__REQUIRE(o->kv_len[b] <= d->n_kv, ATTN_ERR_OPTION, "opt->kv_len[b]", "above n_kv");
        }
    ATTN__REQUIRE(!o->window || o->window_left >= -1, ATTN_ERR_OPTION, "opt->window_left", "below -1 (-1: no limit)");
    ATTN__REQUIRE(!o->window || o->window_right >= -1, ATTN_ERR_OPTION, "opt->window_right", "below -1 (-1: no limit)");
    ATTN__REQUIRE(isfinite(o->softcap) && o->softcap >= 0.0f, ATTN_ERR_OPTION, "opt->softcap",
                  "negative or not finite (0: none)");
    if (o->sinks && read_values)
        for (b = 0; b < d->n_heads; ++b)
            ATTN__REQUIRE(o->sinks[b] == o->sinks[b] && o->sinks[b] != INFINITY, ATTN_ERR_OPTION, "opt->sinks[h]",
                          "NaN or +inf (-inf: no sink)");
    if (o->alibi_slopes && read_values)
        for (b = 0; b < d->n_heads; ++b)
            ATTN__REQUIRE(isfinite(o->alibi_slopes[b]), ATTN_ERR_OPTION, "opt->alibi_slopes[h]", "not finite");
    ATTN__REQUIRE(!o->key_padding_mask || attn__mul(&n, (size_t)d->batch, (size_t)d->n_kv), ATTN_ERR_OVERFLOW,
                  "opt->key_padding_mask", "its batch x n_kv bytes overflow ptrdiff_t");
    ATTN__REQUIRE(!o->out_lse ||
                      (attn__mul(&n, (size_t)d->batch, (size_t)d->n_heads) && attn__mul(&n, n, (size_t)d->n_q)),
                  ATTN_ERR_OVERFLOW, "opt->out_lse", "its batch x n_heads x n_q elements overflow ptrdiff_t");
    ATTN__REQUIRE(!o->out_weights ||
                      (attn__mul(&n, (size_t)d->batch, o->average_weights ? 1u : (size_t)d->n_heads) &&
                       attn__mul(&n, n, (size_t)d->n_q) && attn__mul(&n, n, (size_t)d->n_kv)),
                  ATTN_ERR_OVERFLOW, "opt->out_weights",
                  "its batch x n_heads (1 averaged) x n_q x n_kv elements overflow ptrdiff_t");
    return ATTN_OK;
}

/* Bytes of an aligned workspace holding `floats` floats. */
static attn_result attn__ws_bytes(size_t *bytes, size_t floats)
{
    size_t n;
    if (!attn__mul(&n, floats, sizeof(float)) || !attn__add(&n, n, ATTN__ALIGN)) return ATTN_ERR_OVERFLOW;
    *bytes = n; /* written only on success */
    return ATTN_OK;
}

/* The first ATTN__ALIGN-aligned float in a workspace. */
static float *attn__ws_base(void *ws)
{
    const size_t off = (ATTN__ALIGN - (size_t)((uintptr_t)ws % ATTN__ALIGN)) % ATTN__ALIGN;
    return (float *)(void *)((char *)ws + off);
}

/* Threads a call runs on: the option, else OpenMP's default, but never more than its `items` work items
   nor ATTN_MAX_THREADS (so that a thread count beyond what the system can start never reaches OpenMP,
   which aborts the process then); 1 without OpenMP or within a split. */
static int attn__threads(const attn_options *o, double items)
{
#ifdef _OPENMP
    int n;
    if (o->split_count > 0) return 1;
    n = o->n_threads > 0 ? o->n_threads : omp_get_max_threads();
    if (n > ATTN_MAX_THREADS) n = ATTN_MAX_THREADS;
    if ((double)n > items) n = (int)items;
    return n > 1 ? n : 1;
#else
    (void)o; (void)items;
    return 1;
#endif
}

/* A ring-buffer KV cache seen by the fused kernel (attn_kv_step): the keys are rows 0 .. max_len - 1,
   the token at position p in row p % max_len; len [B] the tokens seen (the new ones included), n_q of
   them new; each new query sees the window_left keys before it and itself. */
typedef struct attn__ring {
    const int *len;
    int max_len, window_left;
} attn__ring;

/* Key chunks per query tile of a call: more than one for decoding shapes over many keys without the
   weights output, and for a ring cache (its keys in up to two runs of rows, each cut into chunks).
   Depends on the sizes alone, never on the threads. */
static int attn__key_chunks(const attn_dims *d, const attn_options *o, const attn__ring *ring)
{
    if (ring) return 2 + (ring->max_len - 1) / ATTN__KEY_CHUNK;
    if (d->n_q > ATTN__ROW_MAX || o->out_weights || d->n_kv <= ATTN__KEY_CHUNK) return 1;
    return 1 + (d->n_kv - 1) / ATTN__KEY_CHUNK; /* not (n_kv + CHUNK - 1): n_kv may be INT_MAX */
}

/* Threads of a fused-attention call: one per work item at most (attn__sdpa_run's items). */
static int attn__sdpa_threads(const attn_dims *d, const attn_options *o, const attn__ring *ring)
{
    const int n_qt = 1 + (d->n_q - 1) / ATTN__TQ; /* query tiles */
    const double heads = o->out_weights && o->average_weights ? 1.0 : (double)d->n_heads;
    return attn__threads(o, (double)d->batch * heads * (double)n_qt * (double)attn__key_chunks(d, o, ring));
}

/* Floats of a call's workspace: each thread's tiles (attn__sdpa_ws_floats: *kv_bufs of them the 16-bit
   K and V tile buffers), then the partial results of the key chunks, per query tile and chunk its rows'
   outputs [rows x Dv] and max and sum [rows x 2]. */
static int attn__sdpa_call_floats(size_t *n, const attn_dims *d, const attn_options *o, const attn__ring *ring,
                                  size_t *per_thread, size_t *kv_bufs)
{
    size_t parts = 0;
    const int chunks = attn__key_chunks(d, o, ring), n_qt = 1 + (d->n_q - 1) / ATTN__TQ;
    const int rows = d->n_q < ATTN__TQ ? d->n_q : ATTN__TQ;
    if (!attn__sdpa_ws_floats(per_thread, kv_bufs, d->d_k, d->d_v, o) ||
        !attn__mul(n, *per_thread, (size_t)attn__sdpa_threads(d, o, ring)))
        return 0;
    if (chunks > 1 && (!attn__mul(&parts, (size_t)d->batch * (size_t)d->n_heads, (size_t)n_qt) ||
                       !attn__mul(&parts, parts, (size_t)chunks) ||
                       !attn__mul(&parts, parts, (size_t)rows * ((size_t)d->d_v + 2))))
        return 0;
    return attn__add(n, *n, parts);
}

/* The keys of chunk c of a ring cache for batch b: rows [*k_lo, *k_hi) and the diagonal offset *base (query
   i may see row j <= i + base). The keys the new queries may see are positions [S, L), S = L - n_q -
   window_left (at least 0), at most max_len of them; they sit in rows S % max_len .. to the end of the
   buffer, then from row 0: two runs of rows, each in chunks of ATTN__KEY_CHUNK; unused chunks are empty. */
static void attn__ring_chunk(int *k_lo, int *k_hi, ptrdiff_t *base, const attn__ring *ring, int b, int n_q, int c)
{
    const int len = ring->len[b], cap = ring->max_len;
    const int first = len - n_q - ring->window_left > 0 ? len - n_q - ring->window_left : 0;
    const int s0 = first % cap, n = len - first;
    const int len_a = n < cap - s0 ? n : cap - s0, len_b = n - len_a;
    const int chunks_a = len_a > 0 ? 1 + (len_a - 1) / ATTN__KEY_CHUNK : 0;
    /* row j of the first run holds position first + j - s0; query i is at position len - n_q + i */
    *base = (ptrdiff_t)len - n_q - first + s0;
    *k_lo = *k_hi = 0;
    if (c < chunks_a) {
        *k_lo = s0 + c * ATTN__KEY_CHUNK;
        *k_hi = s0 + len_a - *k_lo > ATTN__KEY_CHUNK ? *k_lo + ATTN__KEY_CHUNK : s0 + len_a;
    } else if ((c - chunks_a) * ATTN__KEY_CHUNK < len_b) { /* the second run: position first + cap - s0 + j */
        *k_lo = (c - chunks_a) * ATTN__KEY_CHUNK;
        *k_hi = len_b - *k_lo > ATTN__KEY_CHUNK ? *k_lo + ATTN__KEY_CHUNK : len_b;
        *base -= cap;
    }
}

/* The keys each query may see, from the causal option and the sliding window: an upper bound j <= i + diag
   and a lower bound j >= i + diag_lo, each measured from the causal diagonal j = i + diag0 (bottom-right
   when there is no causal option, as FlashAttention's window_size), each set only where it hides some key.
   n_keys is the batch's valid keys (kv_len[b], else Nk): a bottom-right diagonal ends at the batch's own
   last key (FlashAttention's varlen), so the offsets stay within [-Nq, Nk) (-Nq only for kv_len 0, where
   no key is visible), and j - diag < Nq for every key j < n_keys the kernels read. */
static void attn__visible_keys(attn__head *h, const attn_dims *d, const attn_options *o, int n_keys, ptrdiff_t base)
{
    h->diag0 = base;
    h->causal = o->causal != ATTN_CAUSAL_NONE;
    h->diag = base;
    if (!h->causal && o->window && o->window_right >= 0 && (long long)base + o->window_right < n_keys) {
        h->causal = 1;
        h->diag = base + o->window_right;
    }
    h->lower = o->window && o->window_left >= 0 && (long long)base - o->window_left > -(long long)d->n_q;
    h->diag_lo = (long long)base - (h->lower ? o->window_left : 0);
}

/* Query heads per work item of a decoding call with grouped-query attention: gq heads of one kv head (a
   divisor of the group, at most ATTN__GROUP_MAX) share one pass over its K and V (attn__group_kernel), for
   calls of at most ATTN__ROW_MAX queries without the weights output, on a SIMD path; else 1. The largest gq
   that still leaves a work item per thread (batch x n_heads / gq x chunks items), so that no thread idles.
   A head's results are bitwise the same in a group or alone, so this choice, which depends on the threads,
   changes no result. */
static int attn__group_heads(const attn_dims *d, const attn_options *o, int threads, int chunks)
{
    const int group = d->n_heads / d->n_kv_heads;
    int gq;
    if (group == 1 || d->n_q > ATTN__ROW_MAX || o->out_weights || !attn__group_kernel()) return 1;
    for (gq = group < ATTN__GROUP_MAX ? group : ATTN__GROUP_MAX; gq > 1; --gq) {
        const int heads = d->n_heads / gq; /* work items per batch and key chunk */
        if (group % gq == 0 && (double)d->batch * (double)heads * (double)chunks >= (double)threads) break;
    }
    return gq;
}

/* Rows [i0, i0 + n) of head hq of batch b of a 16-bit out (type t, view s) from their float32 values in
   buf [n x d]; nothing for a float32 out (the kernels wrote it in place). */
static void attn__narrow_rows(void *out, attn_stride s, attn_dtype t, int b, int hq, int i0, int n, const float *buf, int d)
{
    int i;
    for (i = 0; i < n && t != ATTN_F32; ++i)
        attn__from_f32((char *)out + attn__dtype_bytes(t, b * s.batch + hq * s.head + (ptrdiff_t)(i0 + i) * s.row), t,
                       buf + (size_t)i * (size_t)d, (size_t)d);
}

/* The fused kernel over all batches and heads, on validated arguments and resolved sizes. A group of work
   is one query tile of one (batch, head); with averaged weights, one query tile of a batch over all its
   heads in order, so that the sum over heads has one order; when decoding with GQA, the gq query heads
   of a kv head that attn__group_heads gives, in one pass over K and V. A group is one work item, or with
   key chunks one item per chunk and a merge after. A split takes whole groups. Every head's rows get their
   own arithmetic, so the result is bitwise the same whatever the threads or the split. */
static void attn__sdpa_run(void *out, attn_stride out_s, const void *q, attn_stride q_s, const void *k,
                           attn_stride k_s, const void *v, attn_stride v_s, const attn_dims *d,
                           const attn_options *o, const attn__ring *ring, float *ws)
{
    const attn__tile_fn tile = attn__tile_kernel();
    const int bf16dot = attn__bf16_types(o) && d->d_k % 2 == 0 && attn_simd_bf16dot();
    const int group = d->n_heads / d->n_kv_heads, threads = attn__sdpa_threads(d, o, ring);
    const int chunks = attn__key_chunks(d, o, ring);
    const int n_qt = 1 + (d->n_q - 1) / ATTN__TQ; /* n_q > 0; no int overflow at INT_MAX */
    const int gq = attn__group_heads(d, o, threads, chunks); /* heads of a kv group per item */
    const attn__group_fn grouped = gq > 1 ? attn__group_kernel() : NULL;
    const int heads_per_item = o->out_weights && o->average_weights ? d->n_heads : gq;
    const int head_groups = d->n_heads / heads_per_item;
    const int part_rows = d->n_q < ATTN__TQ ? d->n_q : ATTN__TQ;
    const ptrdiff_t n_groups = (ptrdiff_t)d->batch * head_groups * n_qt;
    const size_t head_w = (size_t)d->n_q * (size_t)d->n_kv, part_floats = (size_t)part_rows * ((size_t)d->d_v + 2);
    size_t per_thread, total, kv_bufs;
    attn__bufs bufs;
    float *parts;
    ptrdiff_t it, g0 = 0, g1 = n_groups;
    attn__sdpa_call_floats(&total, d, o, ring, &per_thread, &kv_bufs);
    (void)attn__sdpa_bufs(&bufs, d->d_k, d->d_v, o); /* checked by attn__sdpa_call_floats */
    parts = ws + per_thread * (size_t)threads; /* [group][gq][chunk] partial outputs [rows x Dv], max and sum [rows x 2] */
    /* grouped heads: one query tile of at most ATTN__ROW_MAX rows, so the gq heads' 16-bit q and out rows fit
       the [TQ x D] buffers side by side */
    ATTN_ASSERT(!grouped || (n_qt == 1 && d->n_q * gq <= ATTN__TQ));
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
        /* the thread's buffers (attn__sdpa_bufs), then the kernel's part */
        float *k_buf = ws_t, *v_buf = k_buf + bufs.k, *q_buf = v_buf + bufs.v, *out_buf = q_buf + bufs.q;
        const ptrdiff_t g = it / chunks;
        const int c = (int)(it % chunks), hg = (int)(g / n_qt % head_groups);
        /* causal: a head's last query tiles see the most keys; hand them out first (heaviest first balances
           the threads: measured 2-thread causal N = 2048 D = 64, 21.5 -> 18.2 ms) */
        const int qt = o->causal != ATTN_CAUSAL_NONE ? n_qt - 1 - (int)(g % n_qt) : (int)(g % n_qt);
        const int b = (int)(g / n_qt / head_groups), i0 = qt * ATTN__TQ;
        float *w_b = o->out_weights ? o->out_weights + (size_t)b * (size_t)head_groups * head_w : NULL;
        attn__head h, hs[ATTN__GROUP_MAX]; /* hs: the heads of a grouped item */
        int hh, i;
        memset(&h, 0, sizeof h);
        /* the query tile as a head of its own: its row i is query i0 + i */
        h.nq = d->n_q - i0 < ATTN__TQ ? d->n_q - i0 : ATTN__TQ;
        h.nk = d->n_kv; h.dk = d->d_k; h.dv = d->d_v;
        h.k_rs = k_s.row; h.v_rs = v_s.row;
        h.k_type = o->k_type; h.v_type = o->v_type; h.bf16dot = bf16dot;
        h.k_buf = o->k_type != ATTN_F32 ? k_buf : NULL;
        h.v_buf = o->v_type != ATTN_F32 ? v_buf : NULL;
        h.mask_rs = o->mask_broadcast_rows ? 0 : o->mask_stride.row ? o->mask_stride.row : d->n_kv;
        h.n_valid = o->kv_len ? o->kv_len[b] : d->n_kv;
        if (ring) { /* chunk c of the ring's rows */
            ptrdiff_t base;
            attn__ring_chunk(&h.k_lo, &h.n_valid, &base, ring, b, d->n_q, c);
            attn__visible_keys(&h, d, o, h.n_valid, base);
        } else { /* a bottom-right diagonal ends at the batch's last key */
            attn__visible_keys(&h, d, o, h.n_valid, o->causal == ATTN_CAUSAL_TOP_LEFT ? 0 : (ptrdiff_t)h.n_valid - d->n_q);
            if (chunks > 1) { /* keys [c * CHUNK, (c + 1) * CHUNK) */
                h.k_lo = c * ATTN__KEY_CHUNK;
                if (h.n_valid - h.k_lo > ATTN__KEY_CHUNK) h.n_valid = h.k_lo + ATTN__KEY_CHUNK; /* no int overflow */
            }
        }
        h.diag += i0; h.diag_lo += i0; h.diag0 += i0;
        h.scale = attn__scale(o->scale, d->d_k);
        h.softcap = o->softcap;
        h.kpm = o->key_padding_mask ? o->key_padding_mask + (size_t)b * (size_t)d->n_kv : NULL;
        for (hh = 0; hh < heads_per_item; ++hh) {
            const int hq = hg * heads_per_item + hh, hk = hq / group, slot = grouped ? hh : 0; /* slot: 16-bit rows */
            const char *q_t = (const char *)q + attn__dtype_bytes(o->q_type, b * q_s.batch + hq * q_s.head + (ptrdiff_t)i0 * q_s.row);
            if (o->q_type == ATTN_F32) {
                h.q = (const float *)(const void *)q_t; h.q_rs = q_s.row;
            } else { /* the tile's rows widened (exactly) */
                h.q = q_buf + (size_t)slot * (size_t)h.nq * (size_t)d->d_k; h.q_rs = d->d_k;
                for (i = 0; i < h.nq; ++i)
                    attn__to_f32(q_buf + ((size_t)slot * (size_t)h.nq + (size_t)i) * (size_t)d->d_k,
                                 q_t + attn__dtype_bytes(o->q_type, (ptrdiff_t)i * q_s.row), o->q_type, (size_t)d->d_k);
            }
            if (o->out_type == ATTN_F32) {
                h.out = (float *)(void *)((char *)out + attn__dtype_bytes(ATTN_F32, b * out_s.batch + hq * out_s.head + (ptrdiff_t)i0 * out_s.row));
                h.out_rs = out_s.row;
            } else {
                h.out = out_buf + (size_t)slot * (size_t)h.nq * (size_t)d->d_v; h.out_rs = d->d_v;
            }
            h.k = (const char *)k + attn__dtype_bytes(o->k_type, b * k_s.batch + hk * k_s.head);
            h.v = (const char *)v + attn__dtype_bytes(o->v_type, b * v_s.batch + hk * v_s.head);
            h.mask = o->mask ? o->mask + b * o->mask_stride.batch + hq * o->mask_stride.head + (ptrdiff_t)i0 * h.mask_rs : NULL;
            h.lse = o->out_lse ? o->out_lse + ((size_t)b * (size_t)d->n_heads + (size_t)hq) * (size_t)d->n_q + (size_t)i0 : NULL;
            h.sink = o->sinks && !(chunks > 1) ? o->sinks + hq : NULL; /* key chunks: the merge adds it */
            h.alibi = o->alibi_slopes ? o->alibi_slopes[hq] : 0.0f;
            h.w = w_b ? w_b + (size_t)hg * head_w + (size_t)i0 * (size_t)d->n_kv : NULL;
            h.w_accumulate = hh > 0;
            if (chunks > 1) { /* this chunk's keys into its partial result */
                h.out = parts + (((size_t)(g - g0) * (size_t)gq + (size_t)(grouped ? hh : 0)) * (size_t)chunks + (size_t)c) * part_floats;
                h.out_rs = d->d_v;
                h.lse = NULL;
                h.ml = h.out + (size_t)part_rows * (size_t)d->d_v;
            }
            if (grouped) {
                hs[hh] = h;
            } else {
                tile(&h, 0, ws_t + kv_bufs);
                if (chunks == 1) attn__narrow_rows(out, out_s, o->out_type, b, hq, i0, h.nq, out_buf, d->d_v);
            }
        }
        if (grouped) {
            grouped(hs, gq, ws_t + kv_bufs);
            for (hh = 0; hh < gq && chunks == 1; ++hh)
                attn__narrow_rows(out, out_s, o->out_type, b, hg * gq + hh, i0, h.nq,
                                  out_buf + (size_t)hh * (size_t)h.nq * (size_t)d->d_v, d->d_v);
        }
        if (w_b && heads_per_item > 1) { /* the mean over the heads of this tile's rows */
            const float inv_h = 1.0f / (float)d->n_heads;
            float *w_t = w_b + (size_t)i0 * (size_t)d->n_kv;
            size_t e;
            for (e = 0; e < (size_t)h.nq * (size_t)d->n_kv; ++e) w_t[e] *= inv_h;
        }
    }
    if (chunks > 1) { /* merge the chunks of each head's query tile, in key order */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && (g1 - g0) * gq > 1)
#endif
        for (it = g0 * gq; it < g1 * gq; ++it) { /* head it % gq of group it / gq, as the work items numbered them */
#ifdef _OPENMP
            float *row = ws + (size_t)omp_get_thread_num() * per_thread + bufs.k + bufs.v + bufs.q; /* [Dv] */
#else
            float *row = ws + bufs.k + bufs.v + bufs.q;
#endif
            const ptrdiff_t g = it / gq;
            const int qt = o->causal != ATTN_CAUSAL_NONE ? n_qt - 1 - (int)(g % n_qt) : (int)(g % n_qt);
            const int hq = (int)(g / n_qt % head_groups) * gq + (int)(it % gq), b = (int)(g / n_qt / head_groups);
            const int i0 = qt * ATTN__TQ;
            const float *part = parts + (size_t)(it - g0 * gq) * (size_t)chunks * part_floats;
            const size_t ml_off = (size_t)part_rows * (size_t)d->d_v;
            int i;
            for (i = 0; i < part_rows && i0 + i < d->n_q; ++i) {
                char *o_i = (char *)out + attn__dtype_bytes(o->out_type, b * out_s.batch + hq * out_s.head + (ptrdiff_t)(i0 + i) * out_s.row);
                float *lse = o->out_lse ? o->out_lse + ((size_t)b * (size_t)d->n_heads + (size_t)hq) * (size_t)d->n_q + (size_t)(i0 + i) : NULL;
                attn__merge_chunks(o->out_type == ATTN_F32 ? (float *)(void *)o_i : row, lse, part + (size_t)i * (size_t)d->d_v,
                                   part + ml_off + 2 * (size_t)i, part_floats, chunks, d->d_v, o->sinks ? o->sinks + hq : NULL);
                if (o->out_type != ATTN_F32) attn__from_f32(o_i, o->out_type, row, (size_t)d->d_v);
            }
        }
    }
}

/* Every stride of s a whole number of ATTN_Q8 blocks. */
static int attn__q8_strides(attn_stride s)
{
    return s.batch % ATTN_Q8_BLOCK == 0 && s.head % ATTN_Q8_BLOCK == 0 && s.row % ATTN_Q8_BLOCK == 0;
}

/* The bytes of attn_sdpa's workspace, on resolved sizes and checked options. */
static attn_result attn__sdpa_need(const char *func, size_t *bytes, const attn_dims *d, const attn_options *opt)
{
    size_t floats, per_thread, kv_bufs;
    ATTN__REQUIRE(attn__sdpa_call_floats(&floats, d, opt, NULL, &per_thread, &kv_bufs) && attn__ws_bytes(bytes, floats) == ATTN_OK,
                  ATTN_ERR_OVERFLOW, "dims", "the workspace's size (d_k + d_v per thread, key chunks) overflows");
    return ATTN_OK;
}

ATTNDEF attn_result attn_sdpa_workspace_size(size_t *bytes, const attn_dims *dims, const attn_options *opt)
{
    const char *func = "attn_sdpa_workspace_size";
    attn_dims d;
    attn_result r;
    if (!opt) opt = &attn__default_options;
    ATTN__REQUIRE(bytes, ATTN_ERR_NULL, "bytes", "NULL");
    ATTN__REQUIRE(dims, ATTN_ERR_NULL, "dims", "NULL");
    if ((r = attn__resolve_dims(func, &d, dims)) != ATTN_OK) return r;
    if ((r = attn__check_sizes(func, &d)) != ATTN_OK) return r;
    if ((r = attn__check_options(func, opt, &d, 0)) != ATTN_OK) return r;
    return attn__sdpa_need(func, bytes, &d, opt);
}

ATTNDEF attn_result attn_sdpa(void *out, attn_stride out_s, const void *q, attn_stride q_s, const void *k,
                              attn_stride k_s, const void *v, attn_stride v_s, const attn_dims *dims,
                              const attn_options *opt, void *workspace, size_t workspace_bytes)
{
    const char *func = "attn_sdpa";
    attn_dims d;
    attn_result r;
    size_t need = 0;
    void *mem = workspace;
    if (!opt) opt = &attn__default_options;
    ATTN__REQUIRE(out, ATTN_ERR_NULL, "out", "NULL");
    ATTN__REQUIRE(q, ATTN_ERR_NULL, "q", "NULL");
    ATTN__REQUIRE(k, ATTN_ERR_NULL, "k", "NULL");
    ATTN__REQUIRE(v, ATTN_ERR_NULL, "v", "NULL");
    ATTN__REQUIRE(dims, ATTN_ERR_NULL, "dims", "NULL");
    if ((r = attn__resolve_dims(func, &d, dims)) != ATTN_OK) return r;
    if ((r = attn__check_view(func, ATTN__VIEW("out_s", "d_v"), out_s, d.batch, d.n_heads, d.n_q, d.d_v, 1)) != ATTN_OK)
        return r;
    if ((r = attn__check_view(func, ATTN__VIEW("q_s", "d_k"), q_s, d.batch, d.n_heads, d.n_q, d.d_k, 0)) != ATTN_OK)
        return r;
    if ((r = attn__check_view(func, ATTN__VIEW("k_s", "d_k"), k_s, d.batch, d.n_kv_heads, d.n_kv, d.d_k, 0)) != ATTN_OK)
        return r;
    if ((r = attn__check_view(func, ATTN__VIEW("v_s", "d_v"), v_s, d.batch, d.n_kv_heads, d.n_kv, d.d_v, 0)) != ATTN_OK)
        return r;
    /* the views passed, so these sizes pass too; checked for the same codes as attn_sdpa_workspace_size */
    if ((r = attn__check_sizes(func, &d)) != ATTN_OK) return r;
    if ((r = attn__check_options(func, opt, &d, 1)) != ATTN_OK) return r;
    ATTN__REQUIRE(opt->k_type != ATTN_Q8 || attn__q8_strides(k_s), ATTN_ERR_STRIDE, "k_s",
                  "a stride not a multiple of 32 with k_type ATTN_Q8 (whole blocks)");
    ATTN__REQUIRE(opt->v_type != ATTN_Q8 || attn__q8_strides(v_s), ATTN_ERR_STRIDE, "v_s",
                  "a stride not a multiple of 32 with v_type ATTN_Q8 (whole blocks)");
    if ((r = attn__sdpa_need(func, &need, &d, opt)) != ATTN_OK) return r;
    ATTN__REQUIRE(!workspace || workspace_bytes >= need, ATTN_ERR_WORKSPACE, "workspace_bytes",
                  "smaller than attn_sdpa_workspace_size reported");
    if (!workspace && !(mem = ATTN_MALLOC(need, opt->alloc_user)))
        return attn__fail(func, ATTN_ERR_NOMEM, "workspace", "NULL, and ATTN_MALLOC returned NULL");
    attn__sdpa_run(out, out_s, q, q_s, k, k_s, v, v_s, &d, opt, NULL, attn__ws_base(mem));
    if (!workspace) ATTN_FREE(mem, opt->alloc_user);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Fused attention: the backward pass (attn_sdpa_backward)                                        */
/* ---------------------------------------------------------------------------------------------- */

/* FlashAttention-2's backward pass, deterministic. Each score tile is recomputed with the forward's own code
   (attn__score_tile_t of the SIMD kernels, attn__score_tile on the portable path), so the probabilities
   P = exp(S - lse) are those of the forward; the tile is kept transposed as the SIMD forward keeps it, keys
   down the rows and the TQ queries of a tile along them. A visible pair (query tile, key tile) takes five
   matrix products: three on the forward's micro-kernel with the operands read in place (S^T and dP^T as
   the forward's scores, from Q^T and dO^T packed once per query tile; dQ^T as its P.V, K read down its
   columns, into a [Dk x TQ] accumulator written out once per query tile), two on attn__matmul:
       S^T = K Q^T (the forward's scores)      P^T = exp(S^T - lse)         dP^T = V dO^T
       dV += P^T dO                            dS'^T = scale P^T (dP^T - D) (soft-cap: * sech^2(u / c))
       dK += dS'^T Q                           dQ^T += K^T dS'^T            (D_i = dO_i . O_i)
   A work item is one (batch, kv head): for each query head of its group and each query tile in order, it
   walks the visible key tiles, accumulating into its own dK, dV rows and the dQ rows of its query heads.
   Nothing is shared between items and each item's order is fixed: bitwise the same result for any thread
   count, no atomics. */

/* Floats of one thread's workspace: Q^T and dQ^T [Dk x TQ], dO^T [Dv x TQ], four [TK x TQ] tiles and three
   [TQ] vectors (attn__bwd_tile), whole ATTN__ALIGN blocks since TQ floats are. Below INT_MAX: the kernels
   index with int. */
static int attn__bwd_ws_floats(size_t *n, int d_k, int d_v)
{
    size_t f;
    return attn__add(&f, 2 * (size_t)d_k, (size_t)d_v) && attn__add(&f, f, 4 * ATTN__TK + 3) &&
           attn__mul(n, f, ATTN__TQ) && *n <= (size_t)INT_MAX;
}

/* One thread's scratch, carved from the workspace. */
typedef struct attn__bwd_tile {
    float *q_t;  /* [Dk x TQ] scale * Q^T of the query tile, zero past tq (SIMD paths) */
    float *do_t; /* [Dv x TQ] dO^T of the query tile, zero past tq (SIMD paths) */
    float *dq_t; /* [Dk x TQ] dQ^T of the query tile, summed over its key tiles */
    float *s_t;  /* [TK x TQ] S^T, then P^T (0 past tq) */
    float *u_t;  /* [TK x TQ] raw scores u = scale q.k (soft-cap only) */
    float *d_t;  /* [TK x TQ] dP^T, then dS'^T (0 past tq) */
    float *tmp;  /* [TQ x TK] the portable path's row-major tiles */
    float *m;    /* [TQ] lse of each query: +inf for -inf (a fully masked row: P = 0) and past tq */
    float *dd;   /* [TQ] D_i = dO_i . O_i */
    float *sum;  /* [TQ] scratch of the SIMD exp */
} attn__bwd_tile;

static void attn__bwd_carve(attn__bwd_tile *t, float *ws, int d_k, int d_v)
{
    t->q_t = ws;
    t->do_t = t->q_t + (ptrdiff_t)d_k * ATTN__TQ;
    t->dq_t = t->do_t + (ptrdiff_t)d_v * ATTN__TQ;
    t->s_t = t->dq_t + (ptrdiff_t)d_k * ATTN__TQ;
    t->u_t = t->s_t + ATTN__TK * ATTN__TQ;
    t->d_t = t->u_t + ATTN__TK * ATTN__TQ;
    t->tmp = t->d_t + ATTN__TK * ATTN__TQ;
    t->m = t->tmp + ATTN__TQ * ATTN__TK;
    t->dd = t->m + ATTN__TQ;
    t->sum = t->dd + ATTN__TQ;
}

/* The arguments of one call, validated. */
typedef struct attn__bwd_args {
    float *dq, *dk, *dv, *dsinks;
    attn_stride dq_s, dk_s, dv_s;
    const float *q, *k, *v, *out, *dout, *lse;
    attn_stride q_s, k_s, v_s, out_s, dout_s;
    const attn_dims *d;
    const attn_options *o;
} attn__bwd_args;

/* One (batch, query head): the forward's view of it (h) and the rows of its gradients. */
typedef struct attn__bwd_head {
    attn__head h;                              /* q, k, v, masks, scale, ... as the forward sets them */
    float *dq; ptrdiff_t dq_rs;                /* [Nq x Dk] */
    float *dk; ptrdiff_t dk_rs;                /* [Nk x Dk] of the kv head */
    float *dv; ptrdiff_t dv_rs;                /* [Nk x Dv] of the kv head */
    const float *out; ptrdiff_t out_rs;        /* [Nq x Dv] */
    const float *dout; ptrdiff_t dout_rs;      /* [Nq x Dv] */
    const float *lse;                          /* [Nq] */
} attn__bwd_head;

/* Batch b, query head hq, set up as attn__sdpa_run sets up the forward's head. */
static void attn__bwd_head_init(attn__bwd_head *g, const attn__bwd_args *a, int b, int hq)
{
    const attn_dims *d = a->d;
    const attn_options *o = a->o;
    const int hk = hq / (d->n_heads / d->n_kv_heads);
    attn__head *h = &g->h;
    memset(g, 0, sizeof *g);
    h->nq = d->n_q; h->nk = d->n_kv; h->dk = d->d_k; h->dv = d->d_v;
    h->q = a->q + b * a->q_s.batch + hq * a->q_s.head; h->q_rs = a->q_s.row;
    h->k = a->k + b * a->k_s.batch + hk * a->k_s.head; h->k_rs = a->k_s.row;
    h->v = a->v + b * a->v_s.batch + hk * a->v_s.head; h->v_rs = a->v_s.row;
    h->mask = o->mask ? o->mask + b * o->mask_stride.batch + hq * o->mask_stride.head : NULL;
    h->mask_rs = o->mask_broadcast_rows ? 0 : o->mask_stride.row ? o->mask_stride.row : d->n_kv;
    h->kpm = o->key_padding_mask ? o->key_padding_mask + (size_t)b * (size_t)d->n_kv : NULL;
    h->n_valid = o->kv_len ? o->kv_len[b] : d->n_kv;
    attn__visible_keys(h, d, o, h->n_valid, o->causal == ATTN_CAUSAL_TOP_LEFT ? 0 : (ptrdiff_t)h->n_valid - d->n_q);
    h->scale = attn__scale(o->scale, d->d_k);
    h->softcap = o->softcap;
    h->alibi = o->alibi_slopes ? o->alibi_slopes[hq] : 0.0f;
    g->dq = a->dq + b * a->dq_s.batch + hq * a->dq_s.head; g->dq_rs = a->dq_s.row;
    g->dk = a->dk + b * a->dk_s.batch + hk * a->dk_s.head; g->dk_rs = a->dk_s.row;
    g->dv = a->dv + b * a->dv_s.batch + hk * a->dv_s.head; g->dv_rs = a->dv_s.row;
    g->out = a->out + b * a->out_s.batch + hq * a->out_s.head; g->out_rs = a->out_s.row;
    g->dout = a->dout + b * a->dout_s.batch + hq * a->dout_s.head; g->dout_rs = a->dout_s.row;
    g->lse = a->lse + ((size_t)b * (size_t)d->n_heads + (size_t)hq) * (size_t)d->n_q;
}

/* s_t [tk x TQ] = the forward's scores of keys [j0, j0 + tk) against queries [i0, i0 + tq), transposed, on
   instruction set isa: the SIMD kernels' attn__score_tile_t from q_t (columns past tq: the scores of zero
   queries), or attn__score_tile into tmp [TQ x TK] (portable), transposed, `pad` past tq. */
static void attn__bwd_scores_t(float *s_t, float *tmp, const attn__head *h, const float *q_t, int i0, int tq,
                               int j0, int tk, float pad, int isa)
{
    int r, c;
    switch (isa) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
    case ATTN__ISA_AVX512: attn__score_tile_t_avx512(s_t, h, q_t, i0, tq, j0, tk); return;
#endif
#if defined(ATTN__HAVE_X86)
    case ATTN__ISA_AVX2: attn__score_tile_t_avx2(s_t, h, q_t, i0, tq, j0, tk); return;
#endif
#if defined(ATTN__HAVE_NEON)
    case ATTN__ISA_NEON: attn__score_tile_t_neon(s_t, h, q_t, i0, tq, j0, tk); return;
#endif
    default:
        (void)q_t;
        attn__score_tile(tmp, h, i0, tq, j0, tk);
        for (c = 0; c < tk; ++c) {
            for (r = 0; r < tq; ++r) s_t[c * ATTN__TQ + r] = tmp[r * ATTN__TK + c];
            for (; r < ATTN__TQ; ++r) s_t[c * ATTN__TQ + r] = pad;
        }
    }
}

/* c_t [tk x TQ] = A [tk x n] . B^T for B [tq x n] (rows a_rs, b_rs apart), on the score kernel with no
   modifier and scale 1: B read as b_t = B^T [n x TQ] (zero past tq) on the SIMD paths, as the queries of
   attn__score_tile on the portable one. Each element is one FMA chain over n in order (SIMD) or attn__dot
   of the B row and the A row (portable): the same arithmetic for any A row with the same values. Columns
   past tq: 0. */
static void attn__bwd_product_t(float *c_t, float *tmp, const float *a, ptrdiff_t a_rs, const float *b, ptrdiff_t b_rs,
                                const float *b_t, int tq, int tk, int n, int isa)
{
    attn__head p;
    memset(&p, 0, sizeof p);
    p.q = b; p.q_rs = b_rs;
    p.k = a; p.k_rs = a_rs;
    p.v = a; p.v_rs = a_rs; /* the SIMD kernel prefetches these rows for a P.V that here does not follow */
    p.nq = tq; p.nk = tk; p.dk = n; p.dv = n; p.n_valid = tk;
    p.scale = 1.0f;
    attn__bwd_scores_t(c_t, tmp, &p, b_t, 0, tq, 0, tk, 0.0f, isa);
}

/* P^T = exp(S^T - m) down the columns of s_t [tk x TQ], m [TQ] never -inf (+inf past tq, where P is 0);
   sum [TQ] scratch. */
static void attn__bwd_exp_t(float *s_t, int tk, const float *m, float *sum, int isa)
{
    int j, i;
    switch (isa) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
    case ATTN__ISA_AVX512: attn__exp_cols_avx512(s_t, tk, m, sum); return;
#endif
#if defined(ATTN__HAVE_X86)
    case ATTN__ISA_AVX2: attn__exp_cols_avx2(s_t, tk, m, sum); return;
#endif
#if defined(ATTN__HAVE_NEON)
    case ATTN__ISA_NEON: attn__exp_cols_neon(s_t, tk, m, sum); return;
#endif
    default:
        (void)sum;
        for (j = 0; j < tk; ++j)
            for (i = 0; i < ATTN__TQ; ++i) s_t[j * ATTN__TQ + i] = expf(s_t[j * ATTN__TQ + i] - m[i]);
    }
}

/* dQ^T [Dk x TQ] += K^T [Dk x tk] . dS'^T [tk x TQ], K [tk x Dk] (rows k_rs apart) read down its columns:
   the SIMD forward's P.V product (attn__kernel_t over 6-row blocks of Dk and micro-kernel-wide column
   blocks), or its scalar form. */
static void attn__bwd_dq_t(float *dq_t, const float *k, ptrdiff_t k_rs, const float *ds_t, int tk, int dk, int isa)
{
    int c, j, i, rows = 1, nb = ATTN__TQ;
    switch (isa) { /* the micro-kernel's width: ATTN__NV vectors of ATTN__W floats */
    case ATTN__ISA_AVX512: nb = 64; break;
    case ATTN__ISA_AVX2: case ATTN__ISA_NEON: nb = 16; break;
    default: break;
    }
    for (c = 0; c < dk; c += rows) {
        rows = ATTN__BLOCK_ROWS(dk - c);
        for (i = 0; i < ATTN__TQ; i += nb)
            switch (isa) {
#if defined(ATTN__HAVE_X86) && !defined(ATTN_NO_AVX512)
            case ATTN__ISA_AVX512:
                attn__kernel_t_avx512(dq_t + c * ATTN__TQ + i, k + c, k_rs, 1, ds_t + i, tk, rows, 1, NULL); break;
#endif
#if defined(ATTN__HAVE_X86)
            case ATTN__ISA_AVX2:
                attn__kernel_t_avx2(dq_t + c * ATTN__TQ + i, k + c, k_rs, 1, ds_t + i, tk, rows, 1, NULL); break;
#endif
#if defined(ATTN__HAVE_NEON)
            case ATTN__ISA_NEON:
                attn__kernel_t_neon(dq_t + c * ATTN__TQ + i, k + c, k_rs, 1, ds_t + i, tk, rows, 1, NULL); break;
#endif
            default: { /* rows of dQ^T c .. c + rows, all TQ columns */
                int r;
                for (r = c; r < c + rows; ++r)
                    for (j = 0; j < tk; ++j) {
                        const float k_jr = k[(ptrdiff_t)j * k_rs + r];
                        const float *ds_j = ds_t + j * ATTN__TQ;
                        float *dq_r = dq_t + r * ATTN__TQ;
                        for (i = 0; i < ATTN__TQ; ++i) dq_r[i] += k_jr * ds_j[i];
                    }
            }
            }
    }
}

/* dst [cols x TQ] = scale * src^T for src [rows x cols] (rows src_rs apart), zero past `rows`. */
static void attn__bwd_pack_t(float *dst, const float *src, ptrdiff_t src_rs, int rows, int cols, float scale)
{
    int i, c;
    for (c = 0; c < cols; ++c) {
        float *d_c = dst + (ptrdiff_t)c * ATTN__TQ;
        for (i = 0; i < rows; ++i) d_c[i] = src[(ptrdiff_t)i * src_rs + c] * scale;
        for (; i < ATTN__TQ; ++i) d_c[i] = 0.0f;
    }
}

/* The per-query data of the tile [i0, i0 + tq), once per query tile: Q^T scaled and dO^T (SIMD paths, Q^T as
   the forward packs it), lse (-inf, a fully masked row, as +inf: its P is 0; +inf past tq) and D_i =
   dO_i . O_i. D is the diagonal of O dO^T on the kernel of dP^T = V dO^T, with its arithmetic: where O_i is
   a value row v_j (a row that sees one key), dP_ij - D_i is exactly 0, as is its gradient, rather than the
   difference of two roundings of the same sum. */
static void attn__bwd_rows(const attn__bwd_tile *t, const attn__bwd_head *g, int i0, int tq, int isa)
{
    const attn__head *h = &g->h;
    const float *o_i = g->out + (ptrdiff_t)i0 * g->out_rs, *do_i = g->dout + (ptrdiff_t)i0 * g->dout_rs;
    int i;
    if (isa != ATTN__ISA_SCALAR) {
        attn__bwd_pack_t(t->q_t, h->q + (ptrdiff_t)i0 * h->q_rs, h->q_rs, tq, h->dk, h->scale);
        attn__bwd_pack_t(t->do_t, do_i, g->dout_rs, tq, h->dv, 1.0f);
    }
    attn__bwd_product_t(t->d_t, t->tmp, o_i, g->out_rs, do_i, g->dout_rs, t->do_t, tq, tq, h->dv, isa);
    memset(t->dq_t, 0, sizeof(float) * (size_t)h->dk * ATTN__TQ);
    for (i = 0; i < ATTN__TQ; ++i) {
        const float l = i < tq ? g->lse[i0 + i] : INFINITY;
        t->m[i] = l == -INFINITY ? INFINITY : l;
        t->dd[i] = i < tq ? t->d_t[i * ATTN__TQ + i] : 0.0f;
    }
}

/* Lets gcc vectorise a loop whose arrays it cannot prove apart (they are): at -O2 it does not add the
   runtime checks. clang adds them itself (and its assume_safety hint warns when -O1 cannot vectorise). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 5
#define ATTN__IVDEP _Pragma("GCC ivdep")
#else
#define ATTN__IVDEP
#endif

/* dS'^T = scale P^T (dP^T - D), in place of dP^T in d_t, over all TQ columns (0 past tq, where P, dP and D
   are 0); with a soft-cap c each entry also times sech^2(u / c) = 1 - tanh^2(u / c), u the raw score in
   u_t (1 / cosh^2: no cancellation near saturation; cosh^2 overflowing to inf gives the exact limit 0). */
static void attn__bwd_ds(const attn__bwd_tile *t, const attn__head *h, int tk)
{
    const float scale = h->scale, *dd = t->dd;
    int i, j;
    for (j = 0; j < tk; ++j) {
        const float *p_j = t->s_t + j * ATTN__TQ, *u_j = t->u_t + j * ATTN__TQ;
        float *d_j = t->d_t + j * ATTN__TQ;
        ATTN__IVDEP
        for (i = 0; i < ATTN__TQ; ++i) d_j[i] = scale * (p_j[i] * (d_j[i] - dd[i]));
        if (h->softcap > 0.0f)
            for (i = 0; i < ATTN__TQ; ++i) {
                const float ch = coshf(u_j[i] / h->softcap);
                d_j[i] = d_j[i] / (ch * ch);
            }
    }
}

/* One visible pair: queries [i0, i0 + tq) of head g (attn__bwd_rows done) against keys [j0, j0 + tk). */
static void attn__bwd_pair(const attn__bwd_tile *t, const attn__bwd_head *g, int i0, int tq, int j0, int tk, int isa)
{
    const attn__head *h = &g->h;
    const float *q_i = h->q + (ptrdiff_t)i0 * h->q_rs, *do_i = g->dout + (ptrdiff_t)i0 * g->dout_rs;
    const float *k_j = (const float *)h->k + (ptrdiff_t)j0 * h->k_rs; /* float32 K and V (attn__bwd_need) */
    const float *v_j = (const float *)h->v + (ptrdiff_t)j0 * h->v_rs;
    /* 1. P^T = exp(S^T - lse), S^T the forward's scores */
    attn__bwd_scores_t(t->s_t, t->tmp, h, t->q_t, i0, tq, j0, tk, -INFINITY, isa);
    attn__bwd_exp_t(t->s_t, tk, t->m, t->sum, isa);
    /* 2. dP^T [tk x tq] = V [tk x Dv] . dO^T */
    attn__bwd_product_t(t->d_t, t->tmp, v_j, h->v_rs, do_i, g->dout_rs, t->do_t, tq, tk, h->dv, isa);
    /* 3. dV [tk x Dv] += P^T [tk x tq] . dO [tq x Dv] */
    attn__matmul(g->dv + (ptrdiff_t)j0 * g->dv_rs, g->dv_rs, t->s_t, ATTN__TQ, do_i, g->dout_rs, 0, tk, h->dv, tq, 1);
    /* 4. the soft-cap's raw scores u = scale q.k: the same kernel with no modifier */
    if (h->softcap > 0.0f) {
        attn__head raw = *h;
        raw.softcap = 0.0f; raw.alibi = 0.0f; raw.mask = NULL; raw.kpm = NULL; raw.causal = 0; raw.lower = 0;
        attn__bwd_scores_t(t->u_t, t->tmp, &raw, t->q_t, i0, tq, j0, tk, 0.0f, isa);
    }
    /* 5. dS'^T */
    attn__bwd_ds(t, h, tk);
    /* 6. dK [tk x Dk] += dS'^T [tk x tq] . Q [tq x Dk];  dQ^T [Dk x TQ] += K^T [Dk x tk] . dS'^T */
    attn__matmul(g->dk + (ptrdiff_t)j0 * g->dk_rs, g->dk_rs, t->d_t, ATTN__TQ, q_i, h->q_rs, 0, tk, h->dk, tq, 1);
    attn__bwd_dq_t(t->dq_t, k_j, h->k_rs, t->d_t, tk, h->dk, isa);
}

/* rows [n x d] of stride rs set to 0 */
static void attn__bwd_zero(float *x, ptrdiff_t rs, int n, int d)
{
    int r;
    for (r = 0; r < n; ++r) memset(x + (ptrdiff_t)r * rs, 0, sizeof(float) * (size_t)d);
}

/* Work item (batch b, kv head hk): zero its dK, dV rows; then for each query head of the group and each
   query tile in order, the visible key tiles' pairs (the forward's key range of the tile, from
   attn__key_begin to attn__key_end), and the tile's dQ rows written from dQ^T (0 when it sees no key). */
static void attn__bwd_item(const attn__bwd_args *a, int b, int hk, const attn__bwd_tile *t, int isa)
{
    const attn_dims *d = a->d;
    const int group = d->n_heads / d->n_kv_heads;
    attn__bwd_head g;
    int hh, i0, j0;
    attn__bwd_head_init(&g, a, b, hk * group);
    attn__bwd_zero(g.dk, g.dk_rs, d->n_kv, d->d_k);
    attn__bwd_zero(g.dv, g.dv_rs, d->n_kv, d->d_v);
    for (hh = 0; hh < group; ++hh) {
        attn__bwd_head_init(&g, a, b, hk * group + hh);
        for (i0 = 0; i0 < d->n_q; i0 += ATTN__TQ) {
            const int tq = d->n_q - i0 < ATTN__TQ ? d->n_q - i0 : ATTN__TQ;
            const int end = attn__key_end(&g.h, i0, tq), begin = attn__key_begin(&g.h, i0);
            float *dq_i = g.dq + (ptrdiff_t)i0 * g.dq_rs;
            int i, c;
            if (begin >= end) { /* no query of the tile sees a key */
                attn__bwd_zero(dq_i, g.dq_rs, tq, d->d_k);
                continue;
            }
            attn__bwd_rows(t, &g, i0, tq, isa);
            for (j0 = begin; j0 < end; j0 += ATTN__TK)
                attn__bwd_pair(t, &g, i0, tq, j0, end - j0 < ATTN__TK ? end - j0 : ATTN__TK, isa);
            for (i = 0; i < tq; ++i)
                for (c = 0; c < d->d_k; ++c) dq_i[(ptrdiff_t)i * g.dq_rs + c] = t->dq_t[c * ATTN__TQ + i];
        }
    }
}

/* dsinks [Hq]: d L / d sink_h = -sum over batches and queries of p_sink D_i, p_sink = exp(sink_h - lse_i) the
   sink's probability (its value is 0, so its dP is 0). In float64, batch then query order. No sink (or
   -inf): 0. */
static void attn__bwd_sinks(const attn__bwd_args *a)
{
    const attn_dims *d = a->d;
    int hq, b, i;
    for (hq = 0; hq < d->n_heads; ++hq) {
        const float sink = a->o->sinks ? a->o->sinks[hq] : -INFINITY;
        double acc = 0.0;
        for (b = 0; b < d->batch && sink != -INFINITY; ++b) {
            attn__bwd_head g;
            attn__bwd_head_init(&g, a, b, hq);
            for (i = 0; i < d->n_q; ++i) {
                const float *do_i = g.dout + (ptrdiff_t)i * g.dout_rs, *o_i = g.out + (ptrdiff_t)i * g.out_rs;
                double dd = 0.0;
                int c;
                for (c = 0; c < d->d_v; ++c) dd += (double)do_i[c] * (double)o_i[c];
                if (g.lse[i] != -INFINITY) acc -= exp((double)sink - (double)g.lse[i]) * dd;
            }
        }
        a->dsinks[hq] = (float)acc;
    }
}

/* The backward pass on validated arguments: the work items (batch, kv head) on the threads, each with its
   own slice of the workspace, then the sinks' gradient. */
static void attn__bwd_run(const attn__bwd_args *a, float *ws)
{
    const attn_dims *d = a->d;
    const ptrdiff_t items = (ptrdiff_t)d->batch * d->n_kv_heads;
    const int threads = attn__threads(a->o, (double)items), isa = attn__isa();
    size_t per_thread = 0;
    ptrdiff_t it;
    attn__bwd_ws_floats(&per_thread, d->d_k, d->d_v);
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
#endif
    for (it = 0; it < items; ++it) {
#ifdef _OPENMP
        float *ws_t = ws + (size_t)omp_get_thread_num() * per_thread;
#else
        float *ws_t = ws;
#endif
        attn__bwd_tile t;
        attn__bwd_carve(&t, ws_t, d->d_k, d->d_v);
        attn__bwd_item(a, (int)(it / d->n_kv_heads), (int)(it % d->n_kv_heads), &t, isa);
    }
    if (a->dsinks) attn__bwd_sinks(a);
}

/* The options of attn_sdpa, less the two the backward pass has no use for; and the workspace bytes. */
static attn_result attn__bwd_need(const char *func, size_t *bytes, const attn_dims *d, const attn_options *o,
                                  int read_values)
{
    size_t per_thread, floats;
    attn_result r;
    if ((r = attn__check_options(func, o, d, read_values)) != ATTN_OK) return r;
    ATTN__REQUIRE(!o->out_weights, ATTN_ERR_OPTION, "opt->out_weights", "not computed by the backward pass (NULL)");
    ATTN__REQUIRE(o->split_count == 0, ATTN_ERR_OPTION, "opt->split_count", "not available in the backward pass (0)");
    ATTN__REQUIRE(o->k_type == ATTN_F32 && o->v_type == ATTN_F32, ATTN_ERR_OPTION, "opt->k_type",
                  "the backward pass reads float32 K and V (ATTN_F32)");
    ATTN__REQUIRE(o->q_type == ATTN_F32 && o->out_type == ATTN_F32, ATTN_ERR_OPTION, "opt->q_type",
                  "the backward pass reads float32 q and out (ATTN_F32)");
    ATTN__REQUIRE(attn__bwd_ws_floats(&per_thread, d->d_k, d->d_v) &&
                      attn__mul(&floats, per_thread, (size_t)attn__threads(o, (double)d->batch * d->n_kv_heads)) &&
                      attn__ws_bytes(bytes, floats) == ATTN_OK,
                  ATTN_ERR_OVERFLOW, "dims", "the workspace's size (d_k + d_v per thread) overflows");
    return ATTN_OK;
}

ATTNDEF attn_result attn_sdpa_backward_workspace_size(size_t *bytes, const attn_dims *dims, const attn_options *opt)
{
    const char *func = "attn_sdpa_backward_workspace_size";
    attn_dims d;
    attn_result r;
    if (!opt) opt = &attn__default_options;
    ATTN__REQUIRE(bytes, ATTN_ERR_NULL, "bytes", "NULL");
    ATTN__REQUIRE(dims, ATTN_ERR_NULL, "dims", "NULL");
    if ((r = attn__resolve_dims(func, &d, dims)) != ATTN_OK) return r;
    if ((r = attn__check_sizes(func, &d)) != ATTN_OK) return r;
    return attn__bwd_need(func, bytes, &d, opt, 0);
}

/* The views of attn_sdpa_backward: the outputs may not overlap themselves. */
static attn_result attn__bwd_check_views(const char *func, const attn__bwd_args *a, const attn_dims *d)
{
    attn_result r;
    if ((r = attn__check_view(func, ATTN__VIEW("dq_s", "d_k"), a->dq_s, d->batch, d->n_heads, d->n_q, d->d_k, 1)) ||
        (r = attn__check_view(func, ATTN__VIEW("dk_s", "d_k"), a->dk_s, d->batch, d->n_kv_heads, d->n_kv, d->d_k, 1)) ||
        (r = attn__check_view(func, ATTN__VIEW("dv_s", "d_v"), a->dv_s, d->batch, d->n_kv_heads, d->n_kv, d->d_v, 1)) ||
        (r = attn__check_view(func, ATTN__VIEW("q_s", "d_k"), a->q_s, d->batch, d->n_heads, d->n_q, d->d_k, 0)) ||
        (r = attn__check_view(func, ATTN__VIEW("k_s", "d_k"), a->k_s, d->batch, d->n_kv_heads, d->n_kv, d->d_k, 0)) ||
        (r = attn__check_view(func, ATTN__VIEW("v_s", "d_v"), a->v_s, d->batch, d->n_kv_heads, d->n_kv, d->d_v, 0)) ||
        (r = attn__check_view(func, ATTN__VIEW("out_s", "d_v"), a->out_s, d->batch, d->n_heads, d->n_q, d->d_v, 0)) ||
        (r = attn__check_view(func, ATTN__VIEW("dout_s", "d_v"), a->dout_s, d->batch, d->n_heads, d->n_q, d->d_v, 0)))
        return r;
    return attn__check_sizes(func, d);
}

ATTNDEF attn_result attn_sdpa_backward(float *dq, attn_stride dq_s, float *dk, attn_stride dk_s, float *dv,
                                       attn_stride dv_s, float *dsinks, const float *q, attn_stride q_s,
                                       const float *k, attn_stride k_s, const float *v, attn_stride v_s,
                                       const float *out, attn_stride out_s, const float *dout, attn_stride dout_s,
                                       const float *lse, const attn_dims *dims, const attn_options *opt,
                                       void *workspace, size_t workspace_bytes)
{
    const char *func = "attn_sdpa_backward";
    attn__bwd_args a;
    attn_dims d;
    attn_result r;
    size_t need = 0;
    void *mem = workspace;
    if (!opt) opt = &attn__default_options;
    ATTN__REQUIRE(dq, ATTN_ERR_NULL, "dq", "NULL");
    ATTN__REQUIRE(dk, ATTN_ERR_NULL, "dk", "NULL");
    ATTN__REQUIRE(dv, ATTN_ERR_NULL, "dv", "NULL");
    ATTN__REQUIRE(q, ATTN_ERR_NULL, "q", "NULL");
    ATTN__REQUIRE(k, ATTN_ERR_NULL, "k", "NULL");
    ATTN__REQUIRE(v, ATTN_ERR_NULL, "v", "NULL");
    ATTN__REQUIRE(out, ATTN_ERR_NULL, "out", "NULL");
    ATTN__REQUIRE(dout, ATTN_ERR_NULL, "dout", "NULL");
    ATTN__REQUIRE(lse, ATTN_ERR_NULL, "lse", "NULL");
    ATTN__REQUIRE(dims, ATTN_ERR_NULL, "dims", "NULL");
    if ((r = attn__resolve_dims(func, &d, dims)) != ATTN_OK) return r;
    a.dq = dq; a.dk = dk; a.dv = dv; a.dsinks = dsinks; a.dq_s = dq_s; a.dk_s = dk_s; a.dv_s = dv_s;
    a.q = q; a.k = k; a.v = v; a.out = out; a.dout = dout; a.lse = lse;
    a.q_s = q_s; a.k_s = k_s; a.v_s = v_s; a.out_s = out_s; a.dout_s = dout_s;
    a.d = &d; a.o = opt;
    if ((r = attn__bwd_check_views(func, &a, &d)) != ATTN_OK) return r;
    if ((r = attn__bwd_need(func, &need, &d, opt, 1)) != ATTN_OK) return r;
    ATTN__REQUIRE(!workspace || workspace_bytes >= need, ATTN_ERR_WORKSPACE, "workspace_bytes",
                  "smaller than attn_sdpa_backward_workspace_size reported");
    if (!workspace && !(mem = ATTN_MALLOC(need, opt->alloc_user)))
        return attn__fail(func, ATTN_ERR_NOMEM, "workspace", "NULL, and ATTN_MALLOC returned NULL");
    attn__bwd_run(&a, attn__ws_base(mem));
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
    size_t ws_floats;   /* the fused kernel's tiles, packed weights, then Q, K, V (split by head), output of a batch */
    size_t sdpa_floats; /* the fused kernel's part, a whole number of ATTN__ALIGN blocks */
    size_t pack_floats; /* a packed weight matrix, the largest of the four */
} attn__mha_dims;

/* Validates a multi-head call's sizes and options for `func` (kv_len's and sinks' values only when read_values:
   not for the workspace queries) and resolves its sizes. Shared by the calls and their workspace queries,
   so that both reject the same sizes with the same codes. */
static attn_result attn__mha_resolve(const char *func, attn__mha_dims *md, int batch, int n_q, int n_kv,
                                     const attn_mha *m, const attn_options *opt, int self, int read_values)
{
    const char *n_q_arg = self ? "n" : "n_q", *n_kv_arg = self ? "n" : "n_kv";
    attn_dims full;
    attn_result r;
    size_t n, q_floats, kv_floats, per_thread, kv_bufs;
    int head_dim, n_kv_heads, d_kv;
    ATTN__REQUIRE(m, ATTN_ERR_NULL, "mha", "NULL");
    n_kv_heads = m->n_kv_heads ? m->n_kv_heads : m->n_heads;
    d_kv = m->d_kv ? m->d_kv : m->d_model;
    ATTN__REQUIRE(batch > 0, ATTN_ERR_SHAPE, "batch", "must be > 0");
    ATTN__REQUIRE(n_q > 0, ATTN_ERR_SHAPE, n_q_arg, "must be > 0");
    ATTN__REQUIRE(n_kv > 0, ATTN_ERR_SHAPE, n_kv_arg, "must be > 0");
    ATTN__REQUIRE(m->d_model > 0, ATTN_ERR_SHAPE, "mha->d_model", "must be > 0");
    ATTN__REQUIRE(m->n_heads > 0, ATTN_ERR_SHAPE, "mha->n_heads", "must be > 0");
    ATTN__REQUIRE(n_kv_heads > 0, ATTN_ERR_SHAPE, "mha->n_kv_heads", "must be >= 0 (0: n_heads)");
    ATTN__REQUIRE(d_kv > 0, ATTN_ERR_SHAPE, "mha->d_kv", "must be >= 0 (0: d_model)");
    ATTN__REQUIRE(!self || d_kv == m->d_model, ATTN_ERR_SHAPE, "mha->d_kv", "must be 0 or d_model in self-attention");
    ATTN__REQUIRE(m->d_model % m->n_heads == 0, ATTN_ERR_HEADS, "mha->d_model", "not divisible by n_heads");
    ATTN__REQUIRE(batch <= ATTN__MAX_DIM, ATTN_ERR_OVERFLOW, "batch", "above INT_MAX - 128");
    ATTN__REQUIRE(n_q <= ATTN__MAX_DIM, ATTN_ERR_OVERFLOW, n_q_arg, "above INT_MAX - 128");
    ATTN__REQUIRE(n_kv <= ATTN__MAX_DIM, ATTN_ERR_OVERFLOW, n_kv_arg, "above INT_MAX - 128");
    ATTN__REQUIRE(m->d_model <= ATTN__MAX_DIM, ATTN_ERR_OVERFLOW, "mha->d_model", "above INT_MAX - 128");
    ATTN__REQUIRE(d_kv <= ATTN__MAX_DIM, ATTN_ERR_OVERFLOW, "mha->d_kv", "above INT_MAX - 128");
    ATTN__REQUIRE(m->n_heads % n_kv_heads == 0, ATTN_ERR_KV_HEADS, "mha->n_heads", "not a multiple of n_kv_heads");
    ATTN__REQUIRE(m->w_type == ATTN_F32 || m->w_type == ATTN_F16 || m->w_type == ATTN_BF16, ATTN_ERR_OPTION,
                  "mha->w_type", "must be 0, 1 or 2 (ATTN_F32, ATTN_F16, ATTN_BF16)");
    ATTN__REQUIRE(m->layout == ATTN_LAYOUT_IN_OUT || m->layout == ATTN_LAYOUT_OUT_IN, ATTN_ERR_OPTION, "mha->layout",
                  "must be ATTN_LAYOUT_IN_OUT (0) or ATTN_LAYOUT_OUT_IN (1)");
    head_dim = m->d_model / m->n_heads;
    if ((r = attn__check_rope(func, &m->rope, head_dim)) != ATTN_OK) return r;
    ATTN__REQUIRE(self || m->rope.style == ATTN_ROPE_NONE, ATTN_ERR_OPTION, "mha->rope.style",
                  "rotary positions apply to self-attention only (ATTN_ROPE_NONE in cross-attention)");
    {   /* weight row strides: 0 is dense; a row holds d_out (IN_OUT) or d_in (OUT_IN) floats */
        const int in_out = m->layout == ATTN_LAYOUT_IN_OUT, kv_cols = in_out ? n_kv_heads * head_dim : d_kv;
        ATTN__REQUIRE(m->w_q_stride == 0 || m->w_q_stride >= m->d_model, ATTN_ERR_STRIDE, "mha->w_q_stride",
                      "row stride smaller than d_model (0: dense)");
        ATTN__REQUIRE(m->w_k_stride == 0 || m->w_k_stride >= kv_cols, ATTN_ERR_STRIDE, "mha->w_k_stride",
                      in_out ? "row stride smaller than n_kv_heads * head_dim (0: dense)" : "row stride smaller than d_kv (0: dense)");
        ATTN__REQUIRE(m->w_v_stride == 0 || m->w_v_stride >= kv_cols, ATTN_ERR_STRIDE, "mha->w_v_stride",
                      in_out ? "row stride smaller than n_kv_heads * head_dim (0: dense)" : "row stride smaller than d_kv (0: dense)");
        ATTN__REQUIRE(m->w_o_stride == 0 || m->w_o_stride >= m->d_model, ATTN_ERR_STRIDE, "mha->w_o_stride",
                      "row stride smaller than d_model (0: dense)");
        ATTN__REQUIRE(attn__mul(&n, (size_t)(in_out ? d_kv : n_kv_heads * head_dim),
                                (size_t)(m->w_k_stride > m->w_v_stride ? m->w_k_stride : m->w_v_stride)) &&
                          attn__mul(&n, (size_t)m->d_model,
                                    (size_t)(m->w_q_stride > m->w_o_stride ? m->w_q_stride : m->w_o_stride)),
                      ATTN_ERR_OVERFLOW, "mha->w_q_stride", "a weight's rows x row stride overflow ptrdiff_t");
    }
    md->batch = batch;
    md->d_model = m->d_model;
    md->d_kv = d_kv;
    md->kv_dim = n_kv_heads * head_dim; /* <= d_model */
    full.batch = batch; full.n_heads = m->n_heads; full.n_kv_heads = n_kv_heads;
    full.n_q = n_q; full.n_kv = n_kv; full.d_k = head_dim; full.d_v = head_dim;
    if (opt && (r = attn__check_options(func, opt, &full, read_values)) != ATTN_OK) return r;
    ATTN__REQUIRE(!opt || opt->split_count == 0, ATTN_ERR_OPTION, "opt->split_count",
                  "must be 0: splits are for attn_sdpa only");
    ATTN__REQUIRE(!opt || (opt->k_type == ATTN_F32 && opt->v_type == ATTN_F32), ATTN_ERR_OPTION, "opt->k_type",
                  "must be 0 (ATTN_F32), as v_type: other K and V types are for attn_sdpa and caches only");
    ATTN__REQUIRE(!opt || (opt->q_type == ATTN_F32 && opt->out_type == ATTN_F32), ATTN_ERR_OPTION, "opt->q_type",
                  "must be 0 (ATTN_F32), as out_type: other q and out types are for attn_sdpa only");
    md->sdpa = full;
    md->sdpa.batch = 1;
    /* the dense inputs and output must be addressable */
    ATTN__REQUIRE(attn__mul(&n, (size_t)batch, (size_t)n_q) && attn__mul(&n, n, (size_t)m->d_model), ATTN_ERR_OVERFLOW,
                  self ? "x" : "x_q", "its batch x n x d_model elements overflow ptrdiff_t");
    ATTN__REQUIRE(attn__mul(&n, (size_t)batch, (size_t)n_kv) && attn__mul(&n, n, (size_t)d_kv), ATTN_ERR_OVERFLOW,
                  self ? "x" : "x_kv", "its batch x n_kv x d_kv elements overflow ptrdiff_t");
    ATTN__REQUIRE(attn__mul(&n, (size_t)d_kv, (size_t)m->d_model), ATTN_ERR_OVERFLOW, "mha->w_k",
                  "its d_kv x d_model elements overflow ptrdiff_t");
    ATTN__REQUIRE(attn__mul(&n, (size_t)m->d_model, (size_t)m->d_model), ATTN_ERR_OVERFLOW, "mha->w_q",
                  "its d_model x d_model elements overflow ptrdiff_t");
    if (!attn__mul(&q_floats, (size_t)n_q, (size_t)m->d_model) ||
        !attn__mul(&kv_floats, (size_t)n_kv, (size_t)md->kv_dim) || !attn__sdpa_call_floats(&md->sdpa_floats, &md->sdpa, opt ? opt : &attn__default_options, NULL, &per_thread, &kv_bufs) ||
        !attn__add(&md->sdpa_floats, md->sdpa_floats, 15) ||
        !attn__pack_floats(&md->pack_floats, d_kv > m->d_model ? d_kv : m->d_model, m->d_model) ||
        !attn__add(&n, q_floats, q_floats > kv_floats ? q_floats : kv_floats) || !attn__add(&n, n, kv_floats) ||
        !attn__add(&n, n, kv_floats) ||
        !attn__add(&n, n, md->pack_floats) || !attn__add(&md->ws_floats, n, md->sdpa_floats & ~(size_t)15) ||
        !attn__mul(&n, md->ws_floats, sizeof(float)) || !attn__add(&n, n, ATTN__ALIGN))
        return attn__fail(func, ATTN_ERR_OVERFLOW, "mha", "the workspace's size overflows");
    return ATTN_OK;
}

/* The row strides of W_q, W_k, W_v and W_o as stored: the caller's, or dense for 0 (a row of W_q and W_o
   holds d_model floats in either layout; of W_k and W_v kv_dim (IN_OUT) or d_kv (OUT_IN)). */
static void attn__weight_strides(ptrdiff_t rs[4], const attn_mha *m, ptrdiff_t d_model, ptrdiff_t d_kv, ptrdiff_t kv_dim)
{
    const ptrdiff_t kv = m->layout == ATTN_LAYOUT_IN_OUT ? kv_dim : d_kv;
    rs[0] = m->w_q_stride ? m->w_q_stride : d_model;
    rs[1] = m->w_k_stride ? m->w_k_stride : kv;
    rs[2] = m->w_v_stride ? m->w_v_stride : kv;
    rs[3] = m->w_o_stride ? m->w_o_stride : d_model;
}

/* dst [heads x n x d] (head-major) = src [n x heads*d] (a projection's rows, the heads interleaved). */
static void attn__split_heads(float *dst, const float *src, int n, int heads, int d, int threads)
{
    ptrdiff_t i;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
#endif
    for (i = 0; i < n; ++i) {
        int h;
        for (h = 0; h < heads; ++h)
            memcpy(dst + ((size_t)h * (size_t)n + (size_t)i) * (size_t)d,
                   src + ((size_t)i * (size_t)heads + (size_t)h) * (size_t)d, sizeof(float) * (size_t)d);
    }
}

/* Per batch: project Q, K, V into the workspace (K and V through a scratch into head-major [Hkv, N, D]),
   run the fused kernel, project its [N, H*D] result through W_o into out. K and V are split by head
   because the kernel reads every key tile once per query tile: a head's rows stored together stay in
   L2 between query tiles, rows H*D floats apart (a power of two for common sizes) fall into a fraction
   of its sets and come from L3 each time (measured, one thread, d_model 512 at N = 2048: the whole
   call 109 -> 93 ms with the copy). */
static void attn__mha_run(float *out, const float *x_q, const float *x_kv, int n_q, int n_kv, const attn_mha *m,
                          const attn_options *o, const attn__mha_dims *md, float *ws)
{
    const attn_dims *d = &md->sdpa;
    const ptrdiff_t d_model = md->d_model, kv_dim = md->kv_dim, d_kv = md->d_kv;
    float *sdpa_ws = ws;                        /* the fused kernel's tiles   */
    float *bpack = ws + (md->sdpa_floats & ~(size_t)15); /* a packed weight matrix */
    float *qb = bpack + md->pack_floats;        /* [Nq x d_model]  */
    float *kb = qb + (size_t)n_q * (size_t)md->d_model; /* [Nk x kv_dim]   */
    float *vb = kb + (size_t)n_kv * (size_t)md->kv_dim; /* [Nk x kv_dim]   */
    float *ab = vb + (size_t)n_kv * (size_t)md->kv_dim; /* [Nq x d_model], first the scratch [Nk x kv_dim] */
    const attn_stride q_s = attn_stride_bnhd(n_q, d->n_heads, d->d_k);
    const attn_stride kv_s = attn_stride_bhnd(d->n_kv_heads, n_kv, d->d_k);
    const size_t w_per_batch = (o->average_weights ? 1u : (size_t)d->n_heads) * (size_t)n_q * (size_t)n_kv;
    const int threads = attn__threads(o, ATTN_MAX_THREADS); /* attn__project and sdpa take fewer as they need */
    ptrdiff_t w_rs[4];
    int b;
    attn__weight_strides(w_rs, m, d_model, d_kv, kv_dim);
    for (b = 0; b < md->batch; ++b) {
        const float *xq_b = x_q + (size_t)b * (size_t)n_q * (size_t)md->d_model;
        const float *xkv_b = x_kv + (size_t)b * (size_t)n_kv * (size_t)md->d_kv;
        attn_options ob = *o; /* the options seen from batch b */
        ob.mask = o->mask ? o->mask + b * o->mask_stride.batch : NULL;
        ob.kv_len = o->kv_len ? o->kv_len + b : NULL;
        ob.key_padding_mask = o->key_padding_mask ? o->key_padding_mask + (size_t)b * (size_t)n_kv : NULL;
        ob.out_lse = o->out_lse ? o->out_lse + (size_t)b * (size_t)d->n_heads * (size_t)n_q : NULL;
        ob.out_weights = o->out_weights ? o->out_weights + (size_t)b * w_per_batch : NULL;
        attn__project(qb, d_model, xq_b, d_model, m->w_q, m->w_type, w_rs[0], m->layout, m->b_q, n_q, md->d_model, md->d_model, threads, bpack);
        attn__project(ab, kv_dim, xkv_b, d_kv, m->w_k, m->w_type, w_rs[1], m->layout, m->b_k, n_kv, md->d_kv, md->kv_dim, threads, bpack);
        attn__rope_rows(qb, d_model, d->d_k, d->n_heads, n_q, d->d_k, 0, &m->rope); /* positions 0 .. */
        attn__rope_rows(ab, kv_dim, d->d_k, d->n_kv_heads, n_kv, d->d_k, 0, &m->rope);
        attn__split_heads(kb, ab, n_kv, d->n_kv_heads, d->d_k, threads);
        attn__project(ab, kv_dim, xkv_b, d_kv, m->w_v, m->w_type, w_rs[2], m->layout, m->b_v, n_kv, md->d_kv, md->kv_dim, threads, bpack);
        attn__split_heads(vb, ab, n_kv, d->n_kv_heads, d->d_k, threads);
        attn__sdpa_run(ab, q_s, qb, q_s, kb, kv_s, vb, kv_s, d, &ob, NULL, sdpa_ws);
        attn__project(out + (size_t)b * (size_t)n_q * (size_t)md->d_model, d_model, ab, d_model, m->w_o, m->w_type, w_rs[3], m->layout,
                      m->b_o, n_q, md->d_model, md->d_model, threads, bpack);
    }
}

static attn_result attn__mha_workspace_size(size_t *bytes, int batch, int n_q, int n_kv, const attn_mha *m,
                                            const attn_options *opt, int self)
{
    const char *func = self ? "attn_self_workspace_size" : "attn_cross_workspace_size";
    attn__mha_dims md;
    attn_result r;
    ATTN__REQUIRE(bytes, ATTN_ERR_NULL, "bytes", "NULL");
    if ((r = attn__mha_resolve(func, &md, batch, n_q, n_kv, m, opt, self, 0)) != ATTN_OK) return r;
    return attn__ws_bytes(bytes, md.ws_floats); /* checked by attn__mha_resolve */
}

static attn_result attn__mha_forward(float *out, const float *x_q, const float *x_kv, int batch, int n_q,
                                     int n_kv, const attn_mha *m, const attn_options *opt, void *workspace,
                                     size_t workspace_bytes, int self)
{
    const char *func = self ? "attn_self_forward" : "attn_cross_forward";
    attn__mha_dims md;
    attn_result r;
    size_t need = 0;
    void *mem = workspace;
    if (!opt) opt = &attn__default_options;
    ATTN__REQUIRE(out, ATTN_ERR_NULL, "out", "NULL");
    ATTN__REQUIRE(x_q, ATTN_ERR_NULL, self ? "x" : "x_q", "NULL");
    ATTN__REQUIRE(x_kv, ATTN_ERR_NULL, self ? "x" : "x_kv", "NULL");
    ATTN__REQUIRE(m, ATTN_ERR_NULL, "mha", "NULL");
    ATTN__REQUIRE(m->w_q, ATTN_ERR_NULL, "mha->w_q", "NULL");
    ATTN__REQUIRE(m->w_k, ATTN_ERR_NULL, "mha->w_k", "NULL");
    ATTN__REQUIRE(m->w_v, ATTN_ERR_NULL, "mha->w_v", "NULL");
    ATTN__REQUIRE(m->w_o, ATTN_ERR_NULL, "mha->w_o", "NULL");
    if ((r = attn__mha_resolve(func, &md, batch, n_q, n_kv, m, opt, self, 1)) != ATTN_OK) return r;
    (void)attn__ws_bytes(&need, md.ws_floats); /* checked by attn__mha_resolve */
    ATTN__REQUIRE(!workspace || workspace_bytes >= need, ATTN_ERR_WORKSPACE, "workspace_bytes",
                  "smaller than the workspace size function reported");
    if (!workspace && !(mem = ATTN_MALLOC(need, opt->alloc_user)))
        return attn__fail(func, ATTN_ERR_NOMEM, "workspace", "NULL, and ATTN_MALLOC returned NULL");
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

/* ---------------------------------------------------------------------------------------------- */
/* Multi-head attention: the backward pass (attn_self_backward, attn_cross_backward)              */
/* ---------------------------------------------------------------------------------------------- */

/* The sizes of the multi-head backward pass's buffers, in floats: the kernels' tiles (the larger of
   attn_sdpa's and attn_sdpa_backward's for one batch), a packed matrix (a weight, or an [N x width] gradient
   as the right-hand side of a weight's gradient), then per batch Q, A, dA, dQ [Nq x E], K, V, dK, dV
   [Nk x kvd], lse [H x Nq], a transposed operand [max(E, d_kv) x max(Nq, Nk)] and a product (a weight's
   gradient, or a dx term). */
typedef struct attn__mbw_sizes {
    size_t kern, pack, t, p, total;
} attn__mbw_sizes;

static int attn__mbw_floats(attn__mbw_sizes *z, const attn__mha_dims *md, int n_q, int n_kv, const attn_options *o)
{
    const attn_dims *d = &md->sdpa;
    const int w_max = md->d_kv > md->d_model ? md->d_kv : md->d_model, n_max = n_q > n_kv ? n_q : n_kv;
    size_t per_thread, fwd, bwd, p2, x, kv_bufs;
    if (!attn__sdpa_call_floats(&fwd, d, o, NULL, &per_thread, &kv_bufs) || !attn__bwd_ws_floats(&per_thread, d->d_k, d->d_v) ||
        !attn__mul(&bwd, per_thread, (size_t)attn__threads(o, (double)d->n_kv_heads)))
        return 0;
    z->kern = (fwd > bwd ? fwd : bwd) + 15 - ((fwd > bwd ? fwd : bwd) + 15) % 16; /* whole ATTN__ALIGN blocks */
    if (!attn__pack_floats(&z->pack, w_max, md->d_model) || !attn__pack_floats(&p2, md->d_model, w_max)) return 0;
    if (p2 > z->pack) z->pack = p2;
    if (!attn__pack_floats(&p2, n_max, w_max)) return 0;
    if (p2 > z->pack) z->pack = p2;
    if (!attn__mul(&z->t, (size_t)w_max, (size_t)n_max) || !attn__mul(&z->p, (size_t)w_max, (size_t)md->d_model) ||
        !attn__mul(&x, (size_t)n_q, (size_t)md->d_model))
        return 0;
    if (x > z->p) z->p = x;
    if (!attn__mul(&x, (size_t)n_kv, (size_t)md->d_kv)) return 0;
    if (x > z->p) z->p = x;
    if ((size_t)d->n_heads > z->p) z->p = (size_t)d->n_heads;
    if (!attn__mul(&x, (size_t)n_q, (size_t)md->d_model) || !attn__mul(&z->total, x, 4)) return 0;
    if (!attn__mul(&x, (size_t)n_kv, (size_t)md->kv_dim) || !attn__mul(&x, x, 4) || !attn__add(&z->total, z->total, x))
        return 0;
    return attn__mul(&x, (size_t)d->n_heads, (size_t)n_q) && attn__add(&z->total, z->total, x) &&
           attn__add(&z->total, z->total, z->t) && attn__add(&z->total, z->total, z->p) &&
           attn__add(&z->total, z->total, z->kern) && attn__add(&z->total, z->total, z->pack);
}

/* RoPE's inverse on rows of [n x heads*d] (its transpose: a rotation by -angle), for the gradients of Q and
   K: (a, b) -> (a cos + b sin, b cos - a sin) is the forward rotation of (a, -b) with b negated after. */
static void attn__rope_rows_inverse(float *x, ptrdiff_t row_stride, int n_heads, int n, int d, const attn_rope *rope)
{
    int t, h, p, pass;
    if (!rope || rope->style == ATTN_ROPE_NONE) return;
    for (pass = 0; pass < 2; ++pass) {
        const int half = (rope->n_rot ? rope->n_rot : d) / 2;
        for (t = 0; t < n; ++t)
            for (h = 0; h < n_heads; ++h) {
                float *x_h = x + (ptrdiff_t)t * row_stride + (ptrdiff_t)h * d;
                for (p = 0; p < half; ++p) {
                    float *b = rope->style == ATTN_ROPE_NEOX ? x_h + half + p : x_h + 2 * p + 1;
                    *b = -*b;
                }
            }
        if (pass == 0) attn__rope_rows(x, row_stride, d, n_heads, n, d, 0, rope);
    }
}

/* dst [cols x rows] = src^T for src [rows x cols] (rows src_rs apart). */
static void attn__transpose_rows(float *dst, const float *src, ptrdiff_t src_rs, int rows, int cols)
{
    int i, c;
    for (i = 0; i < rows; ++i)
        for (c = 0; c < cols; ++c) dst[(ptrdiff_t)c * rows + i] = src[(ptrdiff_t)i * src_rs + c];
}

/* g (+)= a [rows x cols] (rows g_rs apart, a dense), g's rows of `cols` floats */
static void attn__add_rows(float *g, ptrdiff_t g_rs, const float *a, int rows, int cols)
{
    int i, c;
    for (i = 0; i < rows; ++i)
        for (c = 0; c < cols; ++c) g[(ptrdiff_t)i * g_rs + c] += a[(ptrdiff_t)i * cols + c];
}

/* A projection's gradients, y = x . op(W) + b with x [n x d_in], dy [n x d_out] dense:
   dW += x^T dy (IN_OUT, W [d_in x d_out]) or dy^T x (OUT_IN, W [d_out x d_in]), in W's layout and row
   stride g_rs; db += the column sums of dy (in row order); dx = (or +=) dy . op(W)^T. t [max(d_in, d_out) x
   n] and p [max(n, d_in, d_out) x max(d_in, d_out)] are scratch; bpack a packing buffer. */
static void attn__proj_backward(float *dx, int dx_add, float *g, ptrdiff_t g_rs, float *gb, const float *x,
                                const float *dy, const float *w, ptrdiff_t w_rs, attn_layout layout, int n, int d_in,
                                int d_out, float *t, float *p, int threads, float *bpack)
{
    const int out_in = layout == ATTN_LAYOUT_OUT_IN;
    int i, j;
    if (out_in) { /* dW [d_out x d_in] += dy^T . x */
        attn__transpose_rows(t, dy, d_out, n, d_out);
        attn__project(p, d_in, t, n, x, ATTN_F32, d_in, ATTN_LAYOUT_IN_OUT, NULL, d_out, n, d_in, threads, bpack);
        attn__add_rows(g, g_rs, p, d_out, d_in);
    } else { /* dW [d_in x d_out] += x^T . dy */
        attn__transpose_rows(t, x, d_in, n, d_in);
        attn__project(p, d_out, t, n, dy, ATTN_F32, d_out, ATTN_LAYOUT_IN_OUT, NULL, d_in, n, d_out, threads, bpack);
        attn__add_rows(g, g_rs, p, d_in, d_out);
    }
    if (gb)
        for (i = 0; i < n; ++i)
            for (j = 0; j < d_out; ++j) gb[j] += dy[(ptrdiff_t)i * d_out + j];
    if (!dx) return;
    /* dx [n x d_in] = dy . W^T (IN_OUT) or dy . W (OUT_IN): a projection with the other layout */
    attn__project(dx_add ? p : dx, d_in, dy, d_out, w, ATTN_F32, w_rs, out_in ? ATTN_LAYOUT_IN_OUT : ATTN_LAYOUT_OUT_IN, NULL,
                  n, d_out, d_in, threads, bpack);
    if (dx_add) attn__add_rows(dx, d_in, p, n, d_in);
}

/* Per batch: the forward again (Q, K, V with RoPE, A and its lse), then the backward of the output
   projection, of attention (attn__bwd_run on the interleaved heads) and of RoPE and the three input
   projections, accumulating the weight gradients over the batches in order. Self-attention (x_kv = x_q,
   dx_kv = dx_q) sums the three projections' terms into dx; cross-attention gives dx_q from W_q and dx_kv
   from W_k and W_v. */
static void attn__mha_bwd_run(float *dx_q, float *dx_kv, const attn_mha_grads *gr, const float *x_q, const float *x_kv,
                              const float *dout, int n_q, int n_kv, const attn_mha *m, const attn_options *o,
                              const attn__mha_dims *md, const attn__mbw_sizes *z, float *ws, int self)
{
    const attn_dims *d = &md->sdpa;
    const int E = md->d_model, kvd = md->kv_dim, d_kv = md->d_kv, H = d->n_heads, Hkv = d->n_kv_heads, hd = d->d_k;
    const ptrdiff_t wkv_rs = m->layout == ATTN_LAYOUT_IN_OUT ? kvd : d_kv;
    const ptrdiff_t wq_rs = m->w_q_stride ? m->w_q_stride : E, wo_rs = m->w_o_stride ? m->w_o_stride : E;
    const ptrdiff_t wk_rs = m->w_k_stride ? m->w_k_stride : wkv_rs, wv_rs = m->w_v_stride ? m->w_v_stride : wkv_rs;
    const int in_out = m->layout == ATTN_LAYOUT_IN_OUT, threads = attn__threads(o, ATTN_MAX_THREADS);
    const size_t nqE = (size_t)n_q * (size_t)E, nkv = (size_t)n_kv * (size_t)kvd, nkx = (size_t)n_kv * (size_t)d_kv;
    float *kern = ws, *bpack = kern + z->kern;
    float *qb = bpack + z->pack, *ab = qb + nqE, *dab = ab + nqE, *dqb = dab + nqE;
    float *kb = dqb + nqE, *vb = kb + nkv, *dkb = vb + nkv, *dvb = dkb + nkv, *lse = dvb + nkv;
    float *tb = lse + (size_t)H * (size_t)n_q, *pb = tb + z->t;
    const attn_stride q_s = attn_stride_bnhd(n_q, H, hd), kv_s = attn_stride_bnhd(n_kv, Hkv, hd);
    attn__bwd_args a;
    int b, h;
    /* the gradients start at 0 unless accumulating */
    if (!gr->accumulate) {
        attn__bwd_zero(gr->w_q, wq_rs, E, E);
        attn__bwd_zero(gr->w_k, wk_rs, in_out ? d_kv : kvd, in_out ? kvd : d_kv);
        attn__bwd_zero(gr->w_v, wv_rs, in_out ? d_kv : kvd, in_out ? kvd : d_kv);
        attn__bwd_zero(gr->w_o, wo_rs, E, E);
        if (gr->b_q) memset(gr->b_q, 0, sizeof(float) * (size_t)E);
        if (gr->b_k) memset(gr->b_k, 0, sizeof(float) * (size_t)kvd);
        if (gr->b_v) memset(gr->b_v, 0, sizeof(float) * (size_t)kvd);
        if (gr->b_o) memset(gr->b_o, 0, sizeof(float) * (size_t)E);
        if (gr->sinks) memset(gr->sinks, 0, sizeof(float) * (size_t)H);
    }
    memset(&a, 0, sizeof a);
    a.dq = dqb; a.dk = dkb; a.dv = dvb; a.dq_s = q_s; a.dk_s = kv_s; a.dv_s = kv_s;
    a.q = qb; a.k = kb; a.v = vb; a.out = ab; a.dout = dab; a.lse = lse;
    a.q_s = q_s; a.k_s = kv_s; a.v_s = kv_s; a.out_s = q_s; a.dout_s = q_s;
    a.d = d;
    for (b = 0; b < md->batch; ++b) {
        const float *xq_b = x_q + (size_t)b * nqE, *xkv_b = x_kv + (size_t)b * nkx, *dout_b = dout + (size_t)b * nqE;
        float *dxq_b = dx_q ? dx_q + (size_t)b * nqE : NULL, *dxkv_b = dx_kv ? dx_kv + (size_t)b * nkx : NULL;
        attn_options ob = *o; /* the options seen from batch b */
        ob.mask = o->mask ? o->mask + b * o->mask_stride.batch : NULL;
        ob.kv_len = o->kv_len ? o->kv_len + b : NULL;
        ob.key_padding_mask = o->key_padding_mask ? o->key_padding_mask + (size_t)b * (size_t)n_kv : NULL;
        ob.out_lse = lse;
        /* 1. the forward: Q, K, V (RoPE on Q and K), A = attention, its lse */
        attn__project(qb, E, xq_b, E, (const float *)m->w_q, ATTN_F32, wq_rs, m->layout, m->b_q, n_q, E, E, threads, bpack);
        attn__project(kb, kvd, xkv_b, d_kv, (const float *)m->w_k, ATTN_F32, wk_rs, m->layout, m->b_k, n_kv, d_kv, kvd, threads, bpack);
        attn__project(vb, kvd, xkv_b, d_kv, (const float *)m->w_v, ATTN_F32, wv_rs, m->layout, m->b_v, n_kv, d_kv, kvd, threads, bpack);
        attn__rope_rows(qb, E, hd, H, n_q, hd, 0, &m->rope);
        attn__rope_rows(kb, kvd, hd, Hkv, n_kv, hd, 0, &m->rope);
        attn__sdpa_run(ab, q_s, qb, q_s, kb, kv_s, vb, kv_s, d, &ob, NULL, kern);
        /* 2. out = A . W_o + b_o: dW_o, db_o, dA */
        attn__proj_backward(dab, 0, gr->w_o, wo_rs, gr->b_o, ab, dout_b, (const float *)m->w_o, wo_rs, m->layout, n_q, E, E, tb, pb,
                            threads, bpack);
        /* 3. attention: dQ, dK, dV (and the sinks' gradient of this batch, in pb, summed over the batches) */
        a.o = &ob;
        a.dsinks = gr->sinks && o->sinks ? pb : NULL;
        attn__bwd_run(&a, kern);
        if (a.dsinks)
            for (h = 0; h < H; ++h) gr->sinks[h] += pb[h];
        /* 4. RoPE's inverse, then the three input projections: dW, db, dx */
        attn__rope_rows_inverse(dqb, E, H, n_q, hd, &m->rope);
        attn__rope_rows_inverse(dkb, kvd, Hkv, n_kv, hd, &m->rope);
        attn__proj_backward(dxq_b, 0, gr->w_q, wq_rs, gr->b_q, xq_b, dqb, (const float *)m->w_q, wq_rs, m->layout, n_q, E, E, tb, pb,
                            threads, bpack);
        attn__proj_backward(dxkv_b, self, gr->w_k, wk_rs, gr->b_k, xkv_b, dkb, (const float *)m->w_k, wk_rs, m->layout, n_kv, d_kv, kvd,
                            tb, pb, threads, bpack);
        attn__proj_backward(dxkv_b, 1, gr->w_v, wv_rs, gr->b_v, xkv_b, dvb, (const float *)m->w_v, wv_rs, m->layout, n_kv, d_kv, kvd,
                            tb, pb, threads, bpack);
    }
}

/* Validation shared by the calls and their workspace queries. */
static attn_result attn__mha_bwd_need(const char *func, attn__mha_dims *md, attn__mbw_sizes *z, size_t *bytes,
                                      int batch, int n_q, int n_kv, const attn_mha *m, const attn_options *opt,
                                      int self, int read_values)
{
    attn_result r;
    if ((r = attn__mha_resolve(func, md, batch, n_q, n_kv, m, opt, self, read_values)) != ATTN_OK) return r;
    ATTN__REQUIRE(!opt->out_weights, ATTN_ERR_OPTION, "opt->out_weights", "not computed by the backward pass (NULL)");
    ATTN__REQUIRE(m->w_type == ATTN_F32, ATTN_ERR_OPTION, "mha->w_type", "the backward passes read float32 weights");
    ATTN__REQUIRE(attn__mbw_floats(z, md, n_q, n_kv, opt) && attn__ws_bytes(bytes, z->total) == ATTN_OK,
                  ATTN_ERR_OVERFLOW, "mha", "the workspace's size overflows");
    return ATTN_OK;
}

static attn_result attn__mha_bwd_size(size_t *bytes, int batch, int n_q, int n_kv, const attn_mha *mha,
                                      const attn_options *opt, int self)
{
    const char *func = self ? "attn_self_backward_workspace_size" : "attn_cross_backward_workspace_size";
    attn__mha_dims md;
    attn__mbw_sizes z;
    if (!opt) opt = &attn__default_options;
    ATTN__REQUIRE(bytes, ATTN_ERR_NULL, "bytes", "NULL");
    return attn__mha_bwd_need(func, &md, &z, bytes, batch, n_q, n_kv, mha, opt, self, 0);
}

static attn_result attn__mha_backward(float *dx_q, float *dx_kv, const attn_mha_grads *grads, const float *x_q,
                                      const float *x_kv, const float *dout, int batch, int n_q, int n_kv,
                                      const attn_mha *mha, const attn_options *opt, void *workspace,
                                      size_t workspace_bytes, int self)
{
    const char *func = self ? "attn_self_backward" : "attn_cross_backward";
    attn__mha_dims md;
    attn__mbw_sizes z;
    attn_result r;
    size_t need = 0;
    void *mem = workspace;
    if (!opt) opt = &attn__default_options;
    ATTN__REQUIRE(grads, ATTN_ERR_NULL, "grads", "NULL");
    ATTN__REQUIRE(x_q, ATTN_ERR_NULL, self ? "x" : "x_q", "NULL");
    ATTN__REQUIRE(x_kv, ATTN_ERR_NULL, self ? "x" : "x_kv", "NULL");
    ATTN__REQUIRE(dout, ATTN_ERR_NULL, "dout", "NULL");
    ATTN__REQUIRE(mha, ATTN_ERR_NULL, "mha", "NULL");
    ATTN__REQUIRE(mha->w_q && mha->w_k && mha->w_v && mha->w_o, ATTN_ERR_NULL, "mha->w_q", "a weight is NULL");
    ATTN__REQUIRE(grads->w_q && grads->w_k && grads->w_v && grads->w_o, ATTN_ERR_NULL, "grads->w_q",
                  "a weight's gradient is NULL");
    if ((r = attn__mha_bwd_need(func, &md, &z, &need, batch, n_q, n_kv, mha, opt, self, 1)) != ATTN_OK) return r;
    ATTN__REQUIRE(!workspace || workspace_bytes >= need, ATTN_ERR_WORKSPACE, "workspace_bytes",
                  "smaller than the workspace size function reported");
    if (!workspace && !(mem = ATTN_MALLOC(need, opt->alloc_user)))
        return attn__fail(func, ATTN_ERR_NOMEM, "workspace", "NULL, and ATTN_MALLOC returned NULL");
    attn__mha_bwd_run(dx_q, dx_kv, grads, x_q, x_kv, dout, n_q, n_kv, mha, opt, &md, &z, attn__ws_base(mem), self);
    if (!workspace) ATTN_FREE(mem, opt->alloc_user);
    return ATTN_OK;
}

ATTNDEF attn_result attn_self_backward_workspace_size(size_t *bytes, int batch, int n, const attn_mha *mha,
                                                      const attn_options *opt)
{
    return attn__mha_bwd_size(bytes, batch, n, n, mha, opt, 1);
}

ATTNDEF attn_result attn_self_backward(float *dx, const attn_mha_grads *grads, const float *x, const float *dout,
                                       int batch, int n, const attn_mha *mha, const attn_options *opt,
                                       void *workspace, size_t workspace_bytes)
{
    return attn__mha_backward(dx, dx, grads, x, x, dout, batch, n, n, mha, opt, workspace, workspace_bytes, 1);
}

ATTNDEF attn_result attn_cross_backward_workspace_size(size_t *bytes, int batch, int n_q, int n_kv,
                                                       const attn_mha *mha, const attn_options *opt)
{
    return attn__mha_bwd_size(bytes, batch, n_q, n_kv, mha, opt, 0);
}

ATTNDEF attn_result attn_cross_backward(float *dx_q, float *dx_kv, const attn_mha_grads *grads, const float *x_q,
                                        const float *x_kv, const float *dout, int batch, int n_q, int n_kv,
                                        const attn_mha *mha, const attn_options *opt, void *workspace,
                                        size_t workspace_bytes)
{
    return attn__mha_backward(dx_q, dx_kv, grads, x_q, x_kv, dout, batch, n_q, n_kv, mha, opt, workspace,
                              workspace_bytes, 0);
}

/* ---------------------------------------------------------------------------------------------- */
/* KV caches: appending tokens, one decoding step of multi-head self-attention                    */
/* ---------------------------------------------------------------------------------------------- */

/* Validates a cache's description for `func` (and, when n_new > 0, that every batch has room for n_new more
   tokens; the lengths are read only then). */
static attn_result attn__check_cache(const char *func, const attn_kv_cache *c, int n_new)
{
    size_t n;
    int b, d_v;
    ATTN__REQUIRE(c, ATTN_ERR_NULL, "cache", "NULL");
    d_v = c->d_v ? c->d_v : c->d_k;
    ATTN__REQUIRE(c->k, ATTN_ERR_NULL, "cache->k", "NULL");
    ATTN__REQUIRE(c->v, ATTN_ERR_NULL, "cache->v", "NULL");
    ATTN__REQUIRE(c->len, ATTN_ERR_NULL, "cache->len", "NULL");
    ATTN__REQUIRE(c->batch > 0, ATTN_ERR_SHAPE, "cache->batch", "must be > 0");
    ATTN__REQUIRE(c->n_kv_heads > 0, ATTN_ERR_SHAPE, "cache->n_kv_heads", "must be > 0");
    ATTN__REQUIRE(c->max_len > 0, ATTN_ERR_SHAPE, "cache->max_len", "must be > 0");
    ATTN__REQUIRE(c->d_k > 0, ATTN_ERR_SHAPE, "cache->d_k", "must be > 0");
    ATTN__REQUIRE(c->d_v >= 0, ATTN_ERR_SHAPE, "cache->d_v", "must be >= 0 (0: d_k)");
    ATTN__REQUIRE(attn__dtype_valid(c->k_type), ATTN_ERR_OPTION, "cache->k_type",
                  "must be 0, 1, 2 or 3 (ATTN_F32, ATTN_F16, ATTN_BF16, ATTN_Q8)");
    ATTN__REQUIRE(attn__dtype_valid(c->v_type), ATTN_ERR_OPTION, "cache->v_type",
                  "must be 0, 1, 2 or 3 (ATTN_F32, ATTN_F16, ATTN_BF16, ATTN_Q8)");
    ATTN__REQUIRE(c->k_type != ATTN_Q8 || c->d_k % ATTN_Q8_BLOCK == 0, ATTN_ERR_SHAPE, "cache->d_k",
                  "not a multiple of 32 with k_type ATTN_Q8");
    ATTN__REQUIRE(c->v_type != ATTN_Q8 || d_v % ATTN_Q8_BLOCK == 0, ATTN_ERR_SHAPE, "cache->d_v",
                  "not a multiple of 32 with v_type ATTN_Q8");
    ATTN__REQUIRE(c->batch <= ATTN__MAX_DIM && c->n_kv_heads <= ATTN__MAX_DIM && c->max_len <= ATTN__MAX_DIM &&
                      c->d_k <= ATTN__MAX_DIM && d_v <= ATTN__MAX_DIM,
                  ATTN_ERR_OVERFLOW, "cache", "a size is above INT_MAX - 128");
    ATTN__REQUIRE(attn__mul(&n, (size_t)c->batch, (size_t)c->n_kv_heads) && attn__mul(&n, n, (size_t)c->max_len) &&
                      attn__mul(&n, n, (size_t)(c->d_k > d_v ? c->d_k : d_v)) && n <= ATTN__MAX_ELEMS,
                  ATTN_ERR_OVERFLOW, "cache", "batch x n_kv_heads x max_len x d elements overflow ptrdiff_t");
    ATTN__REQUIRE(!c->ring || n_new <= c->max_len, ATTN_ERR_FULL, "n_new", "more tokens than the ring has rows");
    if (n_new > 0)
        for (b = 0; b < c->batch; ++b) {
            ATTN__REQUIRE(c->len[b] >= 0, ATTN_ERR_OPTION, "cache->len[b]", "negative");
            ATTN__REQUIRE(c->ring || c->len[b] <= c->max_len, ATTN_ERR_OPTION, "cache->len[b]", "above max_len");
            ATTN__REQUIRE(!c->ring || n_new <= ATTN__MAX_DIM - c->len[b], ATTN_ERR_OVERFLOW, "cache->len[b]",
                          "the new tokens' positions pass INT_MAX - 128");
            ATTN__REQUIRE(c->ring || n_new <= c->max_len - c->len[b], ATTN_ERR_FULL, "n_new",
                          "more tokens than the cache has room for");
        }
    return ATTN_OK;
}

/* Batch b's n_new tokens into its rows for positions len[b] .. of the cache (row p, or p % max_len in a
   ring), converted to the cache's types: k_b [Hkv, n_new, Dk] and v_b with the given head and row strides.
   len is not advanced here. */
static void attn__kv_write(attn_kv_cache *c, int b, const float *k_b, ptrdiff_t k_hs, ptrdiff_t k_rs,
                           const float *v_b, ptrdiff_t v_hs, ptrdiff_t v_rs, int n_new)
{
    const size_t d_k = (size_t)c->d_k, d_v = (size_t)(c->d_v ? c->d_v : c->d_k);
    int h, t;
    for (h = 0; h < c->n_kv_heads; ++h) {
        const size_t head0 = ((size_t)b * (size_t)c->n_kv_heads + (size_t)h) * (size_t)c->max_len;
        for (t = 0; t < n_new; ++t) {
            const size_t row = head0 + (size_t)(c->ring ? (c->len[b] + t) % c->max_len : c->len[b] + t);
            attn__from_f32((char *)c->k + attn__dtype_bytes(c->k_type, (ptrdiff_t)(row * d_k)), c->k_type,
                           k_b + h * k_hs + t * k_rs, d_k);
            attn__from_f32((char *)c->v + attn__dtype_bytes(c->v_type, (ptrdiff_t)(row * d_v)), c->v_type,
                           v_b + h * v_hs + t * v_rs, d_v);
        }
    }
}

ATTNDEF attn_result attn_kv_append(attn_kv_cache *cache, const float *k, attn_stride k_s, const float *v,
                                   attn_stride v_s, int n_new)
{
    const char *func = "attn_kv_append";
    attn_result r;
    int b;
    ATTN__REQUIRE(k, ATTN_ERR_NULL, "k", "NULL");
    ATTN__REQUIRE(v, ATTN_ERR_NULL, "v", "NULL");
    ATTN__REQUIRE(n_new > 0, ATTN_ERR_SHAPE, "n_new", "must be > 0");
    if ((r = attn__check_cache(func, cache, n_new)) != ATTN_OK) return r;
    if ((r = attn__check_view(func, ATTN__VIEW("k_s", "cache->d_k"), k_s, cache->batch, cache->n_kv_heads, n_new,
                              cache->d_k, 0)) != ATTN_OK)
        return r;
    if ((r = attn__check_view(func, ATTN__VIEW("v_s", "cache->d_v"), v_s, cache->batch, cache->n_kv_heads, n_new,
                              cache->d_v ? cache->d_v : cache->d_k, 0)) != ATTN_OK)
        return r;
    for (b = 0; b < cache->batch; ++b) {
        attn__kv_write(cache, b, k + b * k_s.batch, k_s.head, k_s.row, v + b * v_s.batch, v_s.head, v_s.row, n_new);
        cache->len[b] += n_new;
    }
    return ATTN_OK;
}

/* Sizes of one cache step, resolved and validated. */
typedef struct attn__step_dims {
    attn_dims sdpa;     /* all batches; n_kv = max_len (the workspace of every step up to it) */
    int rows;           /* B * n_new */
    size_t sdpa_floats; /* the fused kernel's part, a whole number of ATTN__ALIGN blocks */
    size_t pack_floats; /* a packed weight matrix (0 when the rows take the few-row projections) */
    size_t ws_floats;   /* then Q, K, V and the attention output of all rows */
    attn__ring ring;    /* a ring cache's geometry (used when cache->ring) */
} attn__step_dims;

/* Validates a cache step for `func` (the lengths and option values only when read_values) and sizes it. */
static attn_result attn__step_resolve(const char *func, attn__step_dims *sd, const attn_kv_cache *c, int n_new,
                                      const attn_mha *m, const attn_options *opt, int read_values)
{
    attn__mha_dims md;
    attn_options o;
    attn_result r;
    size_t n, per_thread, kv_bufs, q_floats, kv_floats;
    int head_dim;
    ATTN__REQUIRE(n_new > 0, ATTN_ERR_SHAPE, "n_new", "must be > 0");
    if ((r = attn__check_cache(func, c, read_values ? n_new : 0)) != ATTN_OK) return r;
    ATTN__REQUIRE(m, ATTN_ERR_NULL, "mha", "NULL");
    if (opt) {
        ATTN__REQUIRE(opt->causal == ATTN_CAUSAL_NONE || opt->causal == ATTN_CAUSAL_BOTTOM_RIGHT, ATTN_ERR_OPTION,
                      "opt->causal", "a cache step is causal: ATTN_CAUSAL_NONE (0) or _BOTTOM_RIGHT");
        ATTN__REQUIRE(!opt->kv_len, ATTN_ERR_OPTION, "opt->kv_len", "must be NULL: the cache's len gives the lengths");
        ATTN__REQUIRE(!opt->mask, ATTN_ERR_OPTION, "opt->mask", "must be NULL in a cache step");
        ATTN__REQUIRE(!opt->key_padding_mask, ATTN_ERR_OPTION, "opt->key_padding_mask", "must be NULL in a cache step");
        ATTN__REQUIRE(!opt->out_weights, ATTN_ERR_OPTION, "opt->out_weights", "must be NULL in a cache step");
    }
    ATTN__REQUIRE(!c->ring || (opt && opt->window && opt->window_left >= 0), ATTN_ERR_OPTION, "opt->window_left",
                  "a ring cache needs a sliding window with window_left >= 0");
    ATTN__REQUIRE(!c->ring || opt->window_left <= c->max_len - n_new, ATTN_ERR_OPTION, "opt->window_left",
                  "a ring cache must hold window_left + n_new rows (max_len too small)");
    /* the multi-head sizes and options, as a self-attention of n_new queries over max_len keys */
    if ((r = attn__mha_resolve(func, &md, c->batch, n_new, c->max_len, m, opt, 1, read_values)) != ATTN_OK) return r;
    head_dim = md.sdpa.d_k;
    ATTN__REQUIRE(c->n_kv_heads == md.sdpa.n_kv_heads, ATTN_ERR_SHAPE, "cache->n_kv_heads",
                  "differs from the model's kv heads");
    ATTN__REQUIRE(c->d_k == head_dim, ATTN_ERR_SHAPE, "cache->d_k", "differs from the model's head_dim");
    ATTN__REQUIRE(c->d_v == 0 || c->d_v == head_dim, ATTN_ERR_SHAPE, "cache->d_v", "differs from the model's head_dim");
    sd->sdpa = md.sdpa;
    sd->sdpa.batch = c->batch;
    sd->rows = c->batch * n_new; /* <= the elements of x, checked */
    sd->ring.len = c->len; sd->ring.max_len = c->max_len; sd->ring.window_left = c->ring && opt ? opt->window_left : 0;
    o = opt ? *opt : attn__default_options; /* validated with types 0: the cache's own go in now */
    o.k_type = c->k_type; o.v_type = c->v_type;
    if (!attn__sdpa_call_floats(&sd->sdpa_floats, &sd->sdpa, &o, c->ring ? &sd->ring : NULL, &per_thread, &kv_bufs) ||
        !attn__add(&sd->sdpa_floats, sd->sdpa_floats, 15) ||
        !attn__mul(&q_floats, (size_t)sd->rows, (size_t)md.d_model) ||
        !attn__mul(&kv_floats, (size_t)sd->rows, (size_t)md.kv_dim) || !attn__add(&n, q_floats, q_floats) ||
        !attn__add(&n, n, kv_floats) || !attn__add(&n, n, kv_floats) ||
        !attn__add(&n, n, sd->pack_floats = sd->rows > ATTN__GEMV_ROWS ? md.pack_floats : 0) ||
        !attn__add(&sd->ws_floats, n, sd->sdpa_floats & ~(size_t)15) ||
        !attn__mul(&n, sd->ws_floats, sizeof(float)) || !attn__add(&n, n, ATTN__ALIGN))
        return attn__fail(func, ATTN_ERR_OVERFLOW, "mha", "the workspace's size overflows");
    return ATTN_OK;
}

/* A validated cache step: every row's Q, K, V at once (the few-row projections read each weight once for
   all batches), rotary positions from each batch's length, K and V into the cache, attention of the new
   rows over each batch's tokens (kv_len = the new lengths, bottom-right causal from each), W_o. */
static void attn__step_run(float *out, attn_kv_cache *c, const float *x, int n_new, const attn_mha *m,
                           const attn_options *o, const attn__step_dims *sd, float *ws)
{
    const attn_dims *d = &sd->sdpa;
    const ptrdiff_t d_model = (ptrdiff_t)d->n_heads * d->d_k, kv_dim = (ptrdiff_t)d->n_kv_heads * d->d_k;
    const int threads = attn__threads(o, ATTN_MAX_THREADS), rows = sd->rows;
    float *sdpa_ws = ws;                                      /* the fused kernel's tiles   */
    float *bpack = ws + (sd->sdpa_floats & ~(size_t)15);      /* a packed weight matrix     */
    float *qb = bpack + sd->pack_floats;                      /* [rows x d_model] Q         */
    float *kb = qb + (size_t)rows * (size_t)d_model;          /* [rows x kv_dim] new K      */
    float *vb = kb + (size_t)rows * (size_t)kv_dim;           /* [rows x kv_dim] new V      */
    float *ab = vb + (size_t)rows * (size_t)kv_dim;           /* [rows x d_model] attention */
    const attn_stride q_s = attn_stride_bnhd(n_new, d->n_heads, d->d_k);
    const attn_stride cache_s = attn_stride_bhnd(d->n_kv_heads, c->max_len, d->d_k);
    attn_options ob = *o;
    attn_dims db = *d;
    ptrdiff_t w_rs[4];
    int b;
    attn__weight_strides(w_rs, m, d_model, d_model, kv_dim);
    if (rows <= ATTN__GEMV_ROWS) { /* Q, K and V together: the threads' items of all three in one region */
        const attn__gemv_job jobs[3] = {{qb, d_model, m->w_q, m->w_type, w_rs[0], m->b_q, (int)d_model},
                                        {kb, kv_dim, m->w_k, m->w_type, w_rs[1], m->b_k, (int)kv_dim},
                                        {vb, kv_dim, m->w_v, m->w_type, w_rs[2], m->b_v, (int)kv_dim}};
        attn__gemv(jobs, 3, x, d_model, m->layout == ATTN_LAYOUT_OUT_IN, rows, (int)d_model, threads);
    } else {
        attn__project(qb, d_model, x, d_model, m->w_q, m->w_type, w_rs[0], m->layout, m->b_q, rows, (int)d_model, (int)d_model, threads, bpack);
        attn__project(kb, kv_dim, x, d_model, m->w_k, m->w_type, w_rs[1], m->layout, m->b_k, rows, (int)d_model, (int)kv_dim, threads, bpack);
        attn__project(vb, kv_dim, x, d_model, m->w_v, m->w_type, w_rs[2], m->layout, m->b_v, rows, (int)d_model, (int)kv_dim, threads, bpack);
    }
    db.n_kv = c->ring ? c->max_len : 0;
    for (b = 0; b < c->batch; ++b) {
        const size_t r0 = (size_t)b * (size_t)n_new;
        /* the new rows of batch b are at positions len[b] .. */
        attn__rope_rows(qb + r0 * (size_t)d_model, d_model, d->d_k, d->n_heads, n_new, d->d_k, c->len[b], &m->rope);
        attn__rope_rows(kb + r0 * (size_t)kv_dim, kv_dim, d->d_k, d->n_kv_heads, n_new, d->d_k, c->len[b], &m->rope);
        attn__kv_write(c, b, kb + r0 * (size_t)kv_dim, d->d_k, kv_dim, vb + r0 * (size_t)kv_dim, d->d_k, kv_dim, n_new);
        c->len[b] += n_new;
        if (!c->ring && c->len[b] > db.n_kv) db.n_kv = c->len[b];
    }
    /* keys past the longest sequence are never read: n_kv is its length, each batch's own is kv_len (a
       ring: its rows in the order of their positions, chunk by chunk) */
    ob.kv_len = c->ring ? NULL : c->len;
    ob.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    ob.k_type = c->k_type; ob.v_type = c->v_type; /* the cache's types (opt's are 0, checked) */
    attn__sdpa_run(ab, q_s, qb, q_s, c->k, cache_s, c->v, cache_s, &db, &ob, c->ring ? &sd->ring : NULL, sdpa_ws);
    attn__project(out, d_model, ab, d_model, m->w_o, m->w_type, w_rs[3], m->layout, m->b_o, rows, (int)d_model, (int)d_model, threads, bpack);
}

ATTNDEF attn_result attn_kv_step_workspace_size(size_t *bytes, const attn_kv_cache *cache, int n_new,
                                                const attn_mha *mha, const attn_options *opt)
{
    const char *func = "attn_kv_step_workspace_size";
    attn__step_dims sd;
    attn_result r;
    ATTN__REQUIRE(bytes, ATTN_ERR_NULL, "bytes", "NULL");
    if ((r = attn__step_resolve(func, &sd, cache, n_new, mha, opt, 0)) != ATTN_OK) return r;
    return attn__ws_bytes(bytes, sd.ws_floats); /* checked by attn__step_resolve */
}

ATTNDEF attn_result attn_kv_step(float *out, attn_kv_cache *cache, const float *x, int n_new, const attn_mha *mha,
                                 const attn_options *opt, void *workspace, size_t workspace_bytes)
{
    const char *func = "attn_kv_step";
    attn__step_dims sd;
    attn_result r;
    size_t need = 0;
    void *mem = workspace;
    if (!opt) opt = &attn__default_options;
    ATTN__REQUIRE(out, ATTN_ERR_NULL, "out", "NULL");
    ATTN__REQUIRE(x, ATTN_ERR_NULL, "x", "NULL");
    ATTN__REQUIRE(mha, ATTN_ERR_NULL, "mha", "NULL");
    ATTN__REQUIRE(mha->w_q, ATTN_ERR_NULL, "mha->w_q", "NULL");
    ATTN__REQUIRE(mha->w_k, ATTN_ERR_NULL, "mha->w_k", "NULL");
    ATTN__REQUIRE(mha->w_v, ATTN_ERR_NULL, "mha->w_v", "NULL");
    ATTN__REQUIRE(mha->w_o, ATTN_ERR_NULL, "mha->w_o", "NULL");
    if ((r = attn__step_resolve(func, &sd, cache, n_new, mha, opt, 1)) != ATTN_OK) return r;
    (void)attn__ws_bytes(&need, sd.ws_floats); /* checked by attn__step_resolve */
    ATTN__REQUIRE(!workspace || workspace_bytes >= need, ATTN_ERR_WORKSPACE, "workspace_bytes",
                  "smaller than the workspace size function reported");
    if (!workspace && !(mem = ATTN_MALLOC(need, opt->alloc_user)))
        return attn__fail(func, ATTN_ERR_NOMEM, "workspace", "NULL, and ATTN_MALLOC returned NULL");
    attn__step_run(out, cache, x, n_new, mha, opt, &sd, attn__ws_base(mem));
    if (!workspace) ATTN_FREE(mem, opt->alloc_user);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Classic attention: alignment models (additive and multiplicative scores)                       */
/* ---------------------------------------------------------------------------------------------- */

/* An alignment model, resolved and validated. Every score is scale * s_i . k_j (DOT, GENERAL) or
   scale * v . tanh(q_i + k_j) with q_i = W_s s_i (CONCAT, ADDITIVE), where the key k_j = W_h h_j + b. */
typedef struct attn__align_w {
    int additive;                       /* v . tanh(q_i + k_j) rather than s_i . k_j */
    int d_s, d_h, d_key;
    attn_layout layout;
    const float *w_s; ptrdiff_t w_s_rs; /* d_s -> d_key (additive forms) */
    const float *w_h; ptrdiff_t w_h_rs; /* d_h -> d_key; NULL for DOT, whose key is h_j itself */
    const float *b;                     /* [d_key] or NULL */
    const float *v;                     /* [d_key] (additive forms) */
    float scale;
} attn__align_w;

/* The row stride in force of a weight mapping d_in -> d_out (stride 0 = dense), validated; `arg` names
   the stride for the error hook. */
static attn_result attn__weight_rs(const char *func, const char *arg, ptrdiff_t *rs, ptrdiff_t stride,
                                   attn_layout layout, int d_in, int d_out)
{
    const int in_out = layout == ATTN_LAYOUT_IN_OUT;
    *rs = stride ? stride : (in_out ? d_out : d_in);
    return attn__check_matrix(func, ATTN__MATRIX(arg, "the weight's row (d_out, or d_in for ATTN_LAYOUT_OUT_IN)"),
                              *rs, in_out ? d_in : d_out, in_out ? d_out : d_in, 0);
}

static attn_result attn__align_resolve(const char *func, attn__align_w *w, const attn_align *a)
{
    const attn_score sc = a->score;
    const int additive = sc == ATTN_SCORE_CONCAT || sc == ATTN_SCORE_ADDITIVE;
    attn_result r = ATTN_OK;
    ATTN__REQUIRE(sc == ATTN_SCORE_DOT || sc == ATTN_SCORE_GENERAL || additive, ATTN_ERR_OPTION, "align->score",
                  "must be ATTN_SCORE_DOT, _GENERAL, _CONCAT or _ADDITIVE");
    ATTN__REQUIRE(a->w || (sc != ATTN_SCORE_GENERAL && sc != ATTN_SCORE_CONCAT), ATTN_ERR_NULL, "align->w",
                  "NULL with ATTN_SCORE_GENERAL or _CONCAT");
    ATTN__REQUIRE(a->w_s || sc != ATTN_SCORE_ADDITIVE, ATTN_ERR_NULL, "align->w_s", "NULL with ATTN_SCORE_ADDITIVE");
    ATTN__REQUIRE(a->w_h || sc != ATTN_SCORE_ADDITIVE, ATTN_ERR_NULL, "align->w_h", "NULL with ATTN_SCORE_ADDITIVE");
    ATTN__REQUIRE(a->v || !additive, ATTN_ERR_NULL, "align->v", "NULL with ATTN_SCORE_CONCAT or _ADDITIVE");
    ATTN__REQUIRE(a->d_s > 0, ATTN_ERR_SHAPE, "align->d_s", "must be > 0");
    ATTN__REQUIRE(a->d_h > 0, ATTN_ERR_SHAPE, "align->d_h", "must be > 0");
    ATTN__REQUIRE(sc != ATTN_SCORE_DOT || a->d_s == a->d_h, ATTN_ERR_SHAPE, "align->d_h",
                  "must equal d_s with ATTN_SCORE_DOT");
    ATTN__REQUIRE(!additive || a->d_a > 0, ATTN_ERR_SHAPE, "align->d_a",
                  "must be > 0 with ATTN_SCORE_CONCAT or _ADDITIVE");
    ATTN__REQUIRE(a->layout == ATTN_LAYOUT_IN_OUT || a->layout == ATTN_LAYOUT_OUT_IN, ATTN_ERR_OPTION,
                  "align->layout", "must be ATTN_LAYOUT_IN_OUT (0) or ATTN_LAYOUT_OUT_IN (1)");
    ATTN__REQUIRE(isfinite(a->scale), ATTN_ERR_OPTION, "align->scale", "not finite");
    memset(w, 0, sizeof *w);
    w->additive = additive;
    w->d_s = a->d_s;
    w->d_h = a->d_h;
    w->layout = a->layout;
    w->b = sc == ATTN_SCORE_DOT ? NULL : a->b;
    w->v = a->v;
    w->scale = a->scale != 0.0f ? a->scale : 1.0f;
    if (sc == ATTN_SCORE_DOT) {
        w->d_key = a->d_h;
    } else if (sc == ATTN_SCORE_GENERAL) {
        w->d_key = a->d_s;
        w->w_h = a->w;
        r = attn__weight_rs(func, "align->w_stride", &w->w_h_rs, a->w_stride, a->layout, a->d_h, a->d_s);
    } else if (sc == ATTN_SCORE_CONCAT) {
        /* W [s; h] = W_s s + W_h h: the two blocks of rows (IN_OUT) or of columns (OUT_IN) of W */
        ATTN__REQUIRE((unsigned)a->d_s + (unsigned)a->d_h <= (unsigned)-1 / 2u, ATTN_ERR_OVERFLOW, "align->d_h",
                      "d_s + d_h does not fit in int");
        w->d_key = a->d_a;
        r = attn__weight_rs(func, "align->w_stride", &w->w_s_rs, a->w_stride, a->layout, a->d_s + a->d_h, a->d_a);
        w->w_h_rs = w->w_s_rs;
        w->w_s = a->w;
        w->w_h = a->layout == ATTN_LAYOUT_IN_OUT ? a->w + (ptrdiff_t)a->d_s * w->w_s_rs : a->w + a->d_s;
    } else {
        w->d_key = a->d_a;
        w->w_s = a->w_s;
        w->w_h = a->w_h;
        r = attn__weight_rs(func, "align->w_s_stride", &w->w_s_rs, a->w_s_stride, a->layout, a->d_s, a->d_a);
        if (r == ATTN_OK)
            r = attn__weight_rs(func, "align->w_h_stride", &w->w_h_rs, a->w_h_stride, a->layout, a->d_h, a->d_a);
    }
    return r;
}

/* Workspace of one batch, in floats: the weights [Nq x Nk] and a row [Nk] (attn_align_forward), the keys
   [Nk x d_key] unless given (not for DOT), the projected queries [Nq x d_key] and a row [d_key]
   (additive forms). */
typedef struct attn__align_ws {
    float *weights, *row, *keys, *queries, *tmp;
} attn__align_ws;

static int attn__align_ws_floats(size_t *n, const attn__align_w *w, int n_q, int n_k, int with_keys)
{
    size_t t;
    if (!attn__mul(n, (size_t)n_q, (size_t)n_k) || !attn__add(n, *n, (size_t)n_k)) return 0;
    if (!with_keys && w->w_h && (!attn__mul(&t, (size_t)n_k, (size_t)w->d_key) || !attn__add(n, *n, t))) return 0;
    if (w->additive && (!attn__mul(&t, (size_t)n_q + 1u, (size_t)w->d_key) || !attn__add(n, *n, t))) return 0;
    return 1;
}

static void attn__align_carve(attn__align_ws *p, float *ws, const attn__align_w *w, int n_q, int n_k, int with_keys)
{
    p->weights = ws;
    p->row = p->weights + (size_t)n_q * (size_t)n_k;
    p->keys = p->row + n_k;
    p->queries = p->keys + (!with_keys && w->w_h ? (size_t)n_k * (size_t)w->d_key : 0u);
    p->tmp = p->queries + (w->additive ? (size_t)n_q * (size_t)w->d_key : 0u);
}

/* t[n] = tanh(a[n] + b[n]) */
static void attn__tanh_sum(float *t, const float *a, const float *b, int n)
{
    int i;
    for (i = 0; i < n; ++i) t[i] = tanhf(a[i] + b[i]);
}

/* e[n_q x n_k] of one batch: the scores of s [n_q x d_s] against the first n_valid keys, -inf after them.
   keys [n_valid x d_key], or NULL to project h [n_valid x d_h] here; rows past n_valid are never read. */
static void attn__align_batch(float *e, ptrdiff_t e_rs, const float *s, ptrdiff_t s_rs, const float *h,
                              ptrdiff_t h_rs, const float *keys, ptrdiff_t keys_rs, int n_q, int n_k, int n_valid,
                              const attn__align_w *w, const attn__align_ws *ws)
{
    int i, j;
    /* projections and dot products through the public attn_project and attn_scores (on validated
       arguments they return ATTN_OK) */
    if (!keys && w->w_h) {
        if (n_valid > 0)
            (void)attn_project(ws->keys, w->d_key, h, h_rs, w->w_h, w->w_h_rs, w->layout, w->b, n_valid, w->d_h,
                               w->d_key);
        keys = ws->keys;
        keys_rs = w->d_key;
    } else if (!keys) { /* DOT: the key is the encoder state */
        keys = h;
        keys_rs = h_rs;
    }
    if (!w->additive) {
        if (n_valid > 0) (void)attn_scores(e, e_rs, s, s_rs, keys, keys_rs, n_q, n_valid, w->d_s, w->scale);
    } else {
        (void)attn_project(ws->queries, w->d_key, s, s_rs, w->w_s, w->w_s_rs, w->layout, NULL, n_q, w->d_s, w->d_key);
        for (i = 0; i < n_q; ++i) {
            const float *q_i = ws->queries + (ptrdiff_t)i * w->d_key;
            float *e_i = e + (ptrdiff_t)i * e_rs;
            for (j = 0; j < n_valid; ++j) {
                attn__tanh_sum(ws->tmp, q_i, keys + (ptrdiff_t)j * keys_rs, w->d_key);
                e_i[j] = w->scale * attn__dot(w->v, ws->tmp, w->d_key);
            }
        }
    }
    for (i = 0; i < n_q; ++i)
        for (j = n_valid; j < n_k; ++j) e[(ptrdiff_t)i * e_rs + j] = -INFINITY;
}

/* ---------------------------------------------------------------------------------------------- */
/* Classic attention: hard selection (hardmax, top-k, sampling)                                   */
/* ---------------------------------------------------------------------------------------------- */

/* The k largest entries of s[n] in order: score descending, then index ascending (a tie goes to the lower
   index); -inf (masked) and NaN entries are never selected. Writes their indices to idx[0 .. count) when
   idx is not NULL and returns count <= k; *last is the last index selected, -1 for none. O(k n). */
static int attn__topk_select(int *idx, int *last, const float *s, int n, int k)
{
    int count = 0, prev = -1, j;
    while (count < k) {
        const float s_prev = prev >= 0 ? s[prev] : INFINITY; /* the last entry taken */
        int best = -1;
        for (j = 0; j < n; ++j) {
            const float x = s[j];
            if (!(x > -INFINITY)) continue;                                           /* masked or NaN */
            if (prev >= 0 && !(x < s_prev || (x == s_prev && j > prev))) continue;    /* taken already */
            if (best < 0 || x > s[best]) best = j;
        }
        if (best < 0) break;
        if (idx) idx[count] = best;
        prev = best;
        ++count;
    }
    *last = prev;
    return count;
}

/* p[n] = softmax over the top k entries of s[n] (attn__topk_select), 0 elsewhere; p may be s. idx [k] or
   NULL receives their indices, -1 past the last one and for a row made NaN by a NaN score. */
static void attn__topk_row(float *p, int *idx, const float *s, int n, int k)
{
    int last = -1, count = n, j;
    if (idx || k < n) count = attn__topk_select(idx, &last, s, n, k);
    if (count < n) {
        const float lv = count > 0 ? s[last] : -INFINITY;
        for (j = 0; j < n; ++j) {
            const float x = s[j];
            const int keep = x != x || (count > 0 && (x > lv || (x == lv && j <= last)));
            p[j] = keep ? x : -INFINITY;
        }
    } else if (p != s) {
        memcpy(p, s, sizeof(float) * (size_t)n);
    }
    (void)attn_softmax(p, n, p, n, 1, n, NULL);
    if (idx)
        for (j = 0; j < k; ++j) idx[j] = j < count && p[0] == p[0] ? idx[j] : -1;
}

/* Draws an index from softmax(s[n]) by inverse CDF: the first j whose cumulative weight exceeds u in
   [0, 1); zero weights are never drawn, and rounding falls back to the last positive weight. p[n] (may
   be s) receives the one-hot of the draw, *index and *log_prob the index and log of its weight: -1 and
   -inf when every entry is masked, -1 and NaN (and a NaN row) when a score is NaN. */
static void attn__sample_row(float *p, int *index, float *log_prob, const float *s, int n, float u)
{
    float lse, cum = 0.0f;
    int j, pick = -1;
    (void)attn_softmax(p, n, s, n, 1, n, &lse);
    if (lse != lse || lse == -INFINITY) {
        *index = -1;
        *log_prob = lse;
        return;
    }
    for (j = 0; j < n; ++j) {
        if (!(p[j] > 0.0f)) continue;
        pick = j;
        cum += p[j];
        if (u < cum) break;
    }
    *index = pick;
    *log_prob = logf(p[pick]);
    for (j = 0; j < n; ++j) p[j] = 0.0f;
    p[pick] = 1.0f;
}

/* A uniform number from a callback, clamped into [0, 1) (NaN gives 0). */
static float attn__unit(float u)
{
    return u >= 0.0f && u < 1.0f ? u : (u >= 1.0f ? 0.99999994f : 0.0f);
}

/* The weights of one row of masked scores by the options' mode: p[n] (may be s); *index (or NULL): the
   argmax, or the draw for SAMPLE; *log_prob (or NULL): log of its softmax weight. scratch [n]. */
static void attn__select_row(float *p, int *index, float *log_prob, const float *s, int n,
                             const attn_align_options *o, float u, float *scratch)
{
    int idx = -1;
    float lp = -INFINITY;
    if (o->mode == ATTN_SELECT_SAMPLE) {
        attn__sample_row(p, &idx, &lp, s, n, u);
    } else {
        const float *soft = p;
        if (index || log_prob) (void)attn__topk_select(NULL, &idx, s, n, 1);
        if (log_prob && o->mode != ATTN_SELECT_SOFT) {
            (void)attn_softmax(scratch, n, s, n, 1, n, NULL);
            soft = scratch;
        }
        if (o->mode == ATTN_SELECT_SOFT) (void)attn_softmax(p, n, s, n, 1, n, NULL);
        else attn__topk_row(p, NULL, s, n, o->mode == ATTN_SELECT_HARD ? 1 : o->top_k);
        if (idx >= 0) lp = logf(soft[idx]);
        if (p[0] != p[0]) { /* a NaN score: the row is NaN */
            idx = -1;
            lp = p[0];
        }
    }
    if (index) *index = idx;
    if (log_prob) *log_prob = lp;
}

/* Validates the rows of a selection: p [n_rows x n_cols] out, s in. */
static attn_result attn__check_rows(const char *func, const float *p, ptrdiff_t p_stride, const float *s,
                                    ptrdiff_t s_stride, int n_rows, int n_cols)
{
    attn_result r;
    ATTN__REQUIRE(p, ATTN_ERR_NULL, "p", "NULL");
    ATTN__REQUIRE(s, ATTN_ERR_NULL, "s", "NULL");
    ATTN__REQUIRE(n_rows > 0, ATTN_ERR_SHAPE, "n_rows", "must be > 0");
    ATTN__REQUIRE(n_cols > 0, ATTN_ERR_SHAPE, "n_cols", "must be > 0");
    if ((r = attn__check_matrix(func, ATTN__MATRIX("p_stride", "n_cols"), p_stride, n_rows, n_cols, 1)) != ATTN_OK)
        return r;
    return attn__check_matrix(func, ATTN__MATRIX("s_stride", "n_cols"), s_stride, n_rows, n_cols, 0);
}

/* attn_topk's body; attn_hardmax reports its failures under its own name. */
static attn_result attn__topk(const char *func, float *p, ptrdiff_t p_stride, int *index, const float *s,
                              ptrdiff_t s_stride, int n_rows, int n_cols, int k)
{
    attn_result r;
    size_t n;
    int i;
    if ((r = attn__check_rows(func, p, p_stride, s, s_stride, n_rows, n_cols)) != ATTN_OK) return r;
    ATTN__REQUIRE(k >= 1, ATTN_ERR_OPTION, "k", "must be >= 1");
    ATTN__REQUIRE(!index || attn__mul(&n, (size_t)n_rows, (size_t)k), ATTN_ERR_OVERFLOW, "index",
                  "its n_rows x k elements overflow ptrdiff_t");
    for (i = 0; i < n_rows; ++i)
        attn__topk_row(p + (ptrdiff_t)i * p_stride, index ? index + (size_t)i * (size_t)k : NULL,
                       s + (ptrdiff_t)i * s_stride, n_cols, k);
    return ATTN_OK;
}

ATTNDEF attn_result attn_topk(float *p, ptrdiff_t p_stride, int *index, const float *s, ptrdiff_t s_stride,
                              int n_rows, int n_cols, int k)
{
    return attn__topk("attn_topk", p, p_stride, index, s, s_stride, n_rows, n_cols, k);
}

ATTNDEF attn_result attn_hardmax(float *p, ptrdiff_t p_stride, int *index, const float *s, ptrdiff_t s_stride,
                                 int n_rows, int n_cols)
{
    return attn__topk("attn_hardmax", p, p_stride, index, s, s_stride, n_rows, n_cols, 1);
}

ATTNDEF attn_result attn_sample(float *p, ptrdiff_t p_stride, int *index, float *log_prob, const float *s,
                                ptrdiff_t s_stride, int n_rows, int n_cols, const float *u, attn_rand_fn rand_fn,
                                void *rand_user)
{
    const char *func = "attn_sample";
    attn_result r;
    int i;
    if ((r = attn__check_rows(func, p, p_stride, s, s_stride, n_rows, n_cols)) != ATTN_OK) return r;
    ATTN__REQUIRE(u || rand_fn, ATTN_ERR_NULL, "u", "NULL with rand_fn NULL");
    if (u)
        for (i = 0; i < n_rows; ++i)
            ATTN__REQUIRE(u[i] >= 0.0f && u[i] < 1.0f, ATTN_ERR_OPTION, "u[i]", "outside [0, 1)");
    for (i = 0; i < n_rows; ++i) {
        int idx;
        float lp;
        attn__sample_row(p + (ptrdiff_t)i * p_stride, &idx, &lp, s + (ptrdiff_t)i * s_stride, n_cols,
                         u ? u[i] : attn__unit(rand_fn(rand_user)));
        if (index) index[i] = idx;
        if (log_prob) log_prob[i] = lp;
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Classic attention: keys, scores and the attention step                                         */
/* ---------------------------------------------------------------------------------------------- */

#ifdef __cplusplus
static const attn_align_options attn__align_default_options = {}; /* all zero: every default */
#else
static const attn_align_options attn__align_default_options = {0};
#endif

/* Validates the options against the sizes: src_len for both calls, the rest for attn_align_forward. */
static attn_result attn__align_check_options(const char *func, const attn_align_options *o, int batch, int n_q,
                                             int n_k, int forward)
{
    const attn_select m = o->mode;
    size_t rows, n, i;
    int b;
    if (o->src_len)
        for (b = 0; b < batch; ++b) {
            ATTN__REQUIRE(o->src_len[b] >= 0, ATTN_ERR_OPTION, "opt->src_len[b]", "negative");
            ATTN__REQUIRE(o->src_len[b] <= n_k, ATTN_ERR_OPTION, "opt->src_len[b]", "above n_k");
        }
    if (!forward) return ATTN_OK;
    ATTN__REQUIRE(m == ATTN_SELECT_SOFT || m == ATTN_SELECT_HARD || m == ATTN_SELECT_TOPK || m == ATTN_SELECT_SAMPLE,
                  ATTN_ERR_OPTION, "opt->mode", "must be ATTN_SELECT_SOFT, _HARD, _TOPK or _SAMPLE");
    ATTN__REQUIRE(m != ATTN_SELECT_TOPK || o->top_k >= 1, ATTN_ERR_OPTION, "opt->top_k",
                  "must be >= 1 with ATTN_SELECT_TOPK");
    ATTN__REQUIRE(m != ATTN_SELECT_SAMPLE || o->uniform || o->rand_fn, ATTN_ERR_NULL, "opt->uniform",
                  "NULL with rand_fn NULL and ATTN_SELECT_SAMPLE");
    ATTN__REQUIRE(attn__mul(&rows, (size_t)batch, (size_t)n_q), ATTN_ERR_OVERFLOW, "batch",
                  "batch x n_q rows overflow ptrdiff_t");
    ATTN__REQUIRE(!o->out_weights || attn__mul(&n, rows, (size_t)n_k), ATTN_ERR_OVERFLOW, "opt->out_weights",
                  "its batch x n_q x n_k elements overflow ptrdiff_t");
    if (m == ATTN_SELECT_SAMPLE && o->uniform)
        for (i = 0; i < rows; ++i)
            ATTN__REQUIRE(o->uniform[i] >= 0.0f && o->uniform[i] < 1.0f, ATTN_ERR_OPTION, "opt->uniform[i]",
                          "outside [0, 1)");
    return ATTN_OK;
}

ATTNDEF attn_result attn_align_keys(float *keys, attn_stride keys_s, const float *h, attn_stride h_s, int batch,
                                    int n_k, const attn_align *align)
{
    const char *func = "attn_align_keys";
    attn__align_w w;
    attn_result r;
    int b, j;
    ATTN__REQUIRE(keys, ATTN_ERR_NULL, "keys", "NULL");
    ATTN__REQUIRE(h, ATTN_ERR_NULL, "h", "NULL");
    ATTN__REQUIRE(align, ATTN_ERR_NULL, "align", "NULL");
    if ((r = attn__align_resolve(func, &w, align)) != ATTN_OK) return r;
    ATTN__REQUIRE(batch > 0, ATTN_ERR_SHAPE, "batch", "must be > 0");
    ATTN__REQUIRE(n_k > 0, ATTN_ERR_SHAPE, "n_k", "must be > 0");
    if ((r = attn__check_view(func, ATTN__VIEW("keys_s", "d_key"), keys_s, batch, 1, n_k, w.d_key, 1)) != ATTN_OK)
        return r;
    if ((r = attn__check_view(func, ATTN__VIEW("h_s", "d_h"), h_s, batch, 1, n_k, w.d_h, 0)) != ATTN_OK) return r;
    for (b = 0; b < batch; ++b) {
        float *k_b = keys + b * keys_s.batch;
        const float *h_b = h + b * h_s.batch;
        if (w.w_h)
            (void)attn_project(k_b, keys_s.row, h_b, h_s.row, w.w_h, w.w_h_rs, w.layout, w.b, n_k, w.d_h, w.d_key);
        else
            for (j = 0; j < n_k; ++j)
                memcpy(k_b + j * keys_s.row, h_b + j * h_s.row, sizeof(float) * (size_t)w.d_h);
    }
    return ATTN_OK;
}

ATTNDEF attn_result attn_align_workspace_size(size_t *bytes, int n_q, int n_k, const attn_align *align,
                                              int with_keys)
{
    const char *func = "attn_align_workspace_size";
    attn__align_w w;
    attn_result r;
    size_t floats;
    ATTN__REQUIRE(bytes, ATTN_ERR_NULL, "bytes", "NULL");
    ATTN__REQUIRE(align, ATTN_ERR_NULL, "align", "NULL");
    if ((r = attn__align_resolve(func, &w, align)) != ATTN_OK) return r;
    ATTN__REQUIRE(n_q > 0, ATTN_ERR_SHAPE, "n_q", "must be > 0");
    ATTN__REQUIRE(n_k > 0, ATTN_ERR_SHAPE, "n_k", "must be > 0");
    ATTN__REQUIRE(attn__align_ws_floats(&floats, &w, n_q, n_k, with_keys) && attn__ws_bytes(bytes, floats) == ATTN_OK,
                  ATTN_ERR_OVERFLOW, "n_q", "the workspace's size (n_q x n_k and the projected keys) overflows");
    return ATTN_OK;
}

/* attn_align_scores (forward 0: out is e [B, Nq, Nk]) and attn_align_forward (forward 1: out is the
   context [B, Nq, d_h]): validation, workspace, then per batch the scores and, for forward, the weights of
   every row and the context over the valid encoder states. */
static attn_result attn__align_call(float *out, attn_stride out_s, const float *s, attn_stride s_s,
                                    const float *h, attn_stride h_s, const float *keys, attn_stride keys_s,
                                    int batch, int n_q, int n_k, const attn_align *align,
                                    const attn_align_options *o, void *workspace, size_t workspace_bytes,
                                    int forward)
{
    attn__align_w w;
    attn__align_ws p;
    attn_result r;
    size_t floats, need = 0;
    void *mem = workspace;
    int b, i;
    const char *func = forward ? "attn_align_forward" : "attn_align_scores";
    if (!o) o = &attn__align_default_options;
    ATTN__REQUIRE(out, ATTN_ERR_NULL, forward ? "context" : "e", "NULL");
    ATTN__REQUIRE(s, ATTN_ERR_NULL, "s", "NULL");
    ATTN__REQUIRE(align, ATTN_ERR_NULL, "align", "NULL");
    ATTN__REQUIRE(h || (!forward && keys), ATTN_ERR_NULL, "h", forward ? "NULL (the values)" : "NULL with keys NULL");
    if ((r = attn__align_resolve(func, &w, align)) != ATTN_OK) return r;
    ATTN__REQUIRE(batch > 0, ATTN_ERR_SHAPE, "batch", "must be > 0");
    ATTN__REQUIRE(n_q > 0, ATTN_ERR_SHAPE, "n_q", "must be > 0");
    ATTN__REQUIRE(n_k > 0, ATTN_ERR_SHAPE, "n_k", "must be > 0");
    if (forward) r = attn__check_view(func, ATTN__VIEW("context_s", "d_h"), out_s, batch, 1, n_q, w.d_h, 1);
    else r = attn__check_view(func, ATTN__VIEW("e_s", "n_k"), out_s, batch, 1, n_q, n_k, 1);
    if (r != ATTN_OK) return r;
    if ((r = attn__check_view(func, ATTN__VIEW("s_s", "d_s"), s_s, batch, 1, n_q, w.d_s, 0)) != ATTN_OK) return r;
    if (h && (r = attn__check_view(func, ATTN__VIEW("h_s", "d_h"), h_s, batch, 1, n_k, w.d_h, 0)) != ATTN_OK) return r;
    if (keys && (r = attn__check_view(func, ATTN__VIEW("keys_s", "d_key"), keys_s, batch, 1, n_k, w.d_key, 0)) != ATTN_OK)
        return r;
    if ((r = attn__align_check_options(func, o, batch, n_q, n_k, forward)) != ATTN_OK) return r;
    ATTN__REQUIRE(attn__align_ws_floats(&floats, &w, n_q, n_k, keys != NULL) && attn__ws_bytes(&need, floats) == ATTN_OK,
                  ATTN_ERR_OVERFLOW, "n_q", "the workspace's size (n_q x n_k and the projected keys) overflows");
    ATTN__REQUIRE(!workspace || workspace_bytes >= need, ATTN_ERR_WORKSPACE, "workspace_bytes",
                  "smaller than attn_align_workspace_size reported");
    if (!workspace && !(mem = ATTN_MALLOC(need, o->alloc_user)))
        return attn__fail(func, ATTN_ERR_NOMEM, "workspace", "NULL, and ATTN_MALLOC returned NULL");
    attn__align_carve(&p, attn__ws_base(mem), &w, n_q, n_k, keys != NULL);
    for (b = 0; b < batch; ++b) {
        const int n_valid = o->src_len ? o->src_len[b] : n_k;
        const size_t row0 = (size_t)b * (size_t)n_q; /* first row of this batch in [B x Nq] outputs */
        const float *s_b = s + b * s_s.batch, *h_b = h ? h + b * h_s.batch : NULL;
        const float *k_b = keys ? keys + b * keys_s.batch : NULL;
        float *wt;
        if (!forward) {
            attn__align_batch(out + b * out_s.batch, out_s.row, s_b, s_s.row, h_b, h_s.row, k_b, keys_s.row, n_q,
                              n_k, n_valid, &w, &p);
            continue;
        }
        /* 1. scores, masked past src_len; 2. each row's weights; 3. context = weights . h (valid rows,
           attn_weighted_sum) */
        wt = o->out_weights ? o->out_weights + row0 * (size_t)n_k : p.weights;
        attn__align_batch(wt, n_k, s_b, s_s.row, h_b, h_s.row, k_b, keys_s.row, n_q, n_k, n_valid, &w, &p);
        for (i = 0; i < n_q; ++i) {
            const float u = o->mode != ATTN_SELECT_SAMPLE ? 0.0f
                            : o->uniform                  ? o->uniform[row0 + (size_t)i]
                                                          : attn__unit(o->rand_fn(o->rand_user));
            float *wt_i = wt + (size_t)i * (size_t)n_k;
            attn__select_row(wt_i, o->out_index ? o->out_index + row0 + i : NULL,
                             o->out_log_prob ? o->out_log_prob + row0 + i : NULL, wt_i, n_k, o, u, p.row);
        }
        if (n_valid > 0)
            (void)attn_weighted_sum(out + b * out_s.batch, out_s.row, wt, n_k, h_b, h_s.row, n_q, n_valid, w.d_h);
        else /* no visible key: context 0 */
            for (i = 0; i < n_q; ++i) memset(out + b * out_s.batch + i * out_s.row, 0, sizeof(float) * (size_t)w.d_h);
    }
    if (!workspace) ATTN_FREE(mem, o->alloc_user);
    return ATTN_OK;
}

ATTNDEF attn_result attn_align_scores(float *e, attn_stride e_s, const float *s, attn_stride s_s, const float *h,
                                      attn_stride h_s, const float *keys, attn_stride keys_s, int batch, int n_q,
                                      int n_k, const attn_align *align, const attn_align_options *opt,
                                      void *workspace, size_t workspace_bytes)
{
    return attn__align_call(e, e_s, s, s_s, h, h_s, keys, keys_s, batch, n_q, n_k, align, opt, workspace,
                            workspace_bytes, 0);
}

ATTNDEF attn_result attn_align_forward(float *context, attn_stride context_s, const float *s, attn_stride s_s,
                                       const float *h, attn_stride h_s, const float *keys, attn_stride keys_s,
                                       int batch, int n_q, int n_k, const attn_align *align,
                                       const attn_align_options *opt, void *workspace, size_t workspace_bytes)
{
    return attn__align_call(context, context_s, s, s_s, h, h_s, keys, keys_s, batch, n_q, n_k, align, opt,
                            workspace, workspace_bytes, 1);
}

/* ---------------------------------------------------------------------------------------------- */
/* Attention pictures: PNG, PGM and PPM images, terminal heatmaps                                 */
/* ---------------------------------------------------------------------------------------------- */

/* viridis at t = 0, 1/8, ..., 1 (viridisLite's viridis(9)) */
static const unsigned char attn__viridis[9][3] = {
    {0x44, 0x01, 0x54}, {0x47, 0x2D, 0x7B}, {0x3B, 0x52, 0x8B}, {0x2C, 0x72, 0x8E}, {0x21, 0x90, 0x8C},
    {0x27, 0xAD, 0x81}, {0x5D, 0xC8, 0x63}, {0xAA, 0xDC, 0x32}, {0xFD, 0xE7, 0x25}};

#ifdef __cplusplus
static const attn_image_options attn__image_default_options = {}; /* all zero: every default */
#else
static const attn_image_options attn__image_default_options = {0};
#endif

/* Validates a picture request (both images and heatmaps). */
static attn_result attn__image_check(const char *func, const float *m, ptrdiff_t m_stride, int rows, int cols,
                                     const attn_image_options *o)
{
    ATTN__REQUIRE(m, ATTN_ERR_NULL, "m", "NULL");
    ATTN__REQUIRE(rows > 0, ATTN_ERR_SHAPE, "rows", "must be > 0");
    ATTN__REQUIRE(cols > 0, ATTN_ERR_SHAPE, "cols", "must be > 0");
    ATTN__REQUIRE(o->format == ATTN_IMAGE_PNG || o->format == ATTN_IMAGE_PGM || o->format == ATTN_IMAGE_PPM,
                  ATTN_ERR_OPTION, "opt->format", "must be ATTN_IMAGE_PNG, _PGM or _PPM");
    ATTN__REQUIRE(o->colormap == ATTN_COLORMAP_GRAY || o->colormap == ATTN_COLORMAP_VIRIDIS, ATTN_ERR_OPTION,
                  "opt->colormap", "must be ATTN_COLORMAP_GRAY or _VIRIDIS");
    ATTN__REQUIRE(o->format != ATTN_IMAGE_PGM || o->colormap == ATTN_COLORMAP_GRAY, ATTN_ERR_OPTION, "opt->colormap",
                  "a PGM is gray only");
    ATTN__REQUIRE(o->cell >= 0, ATTN_ERR_OPTION, "opt->cell", "negative");
    ATTN__REQUIRE(isfinite(o->lo), ATTN_ERR_OPTION, "opt->lo", "not finite");
    ATTN__REQUIRE(isfinite(o->hi), ATTN_ERR_OPTION, "opt->hi", "not finite");
    ATTN__REQUIRE(o->lo <= o->hi, ATTN_ERR_OPTION, "opt->lo", "above opt->hi");
    return attn__check_matrix(func, ATTN__MATRIX("m_stride", "cols"), m_stride, rows, cols, 0);
}

/* The colour map of one matrix: t = (x - lo) * inv clamped to [0, 1]; NaN and -inf at 0, +inf at 1. */
typedef struct attn__cmap {
    double lo, inv;
    attn_colormap map;
} attn__cmap;

static void attn__cmap_init(attn__cmap *c, const float *m, ptrdiff_t m_stride, int rows, int cols,
                            const attn_image_options *o)
{
    double lo = o->lo, hi = o->hi;
    int i, j;
    if (o->lo == o->hi) { /* the range of the finite entries */
        lo = INFINITY;
        hi = -INFINITY;
        for (i = 0; i < rows; ++i)
            for (j = 0; j < cols; ++j) {
                const float x = m[(ptrdiff_t)i * m_stride + j];
                if (!isfinite(x)) continue;
                lo = x < lo ? x : lo;
                hi = x > hi ? x : hi;
            }
        if (lo > hi) lo = hi = 0.0;
    }
    c->lo = lo;
    c->inv = hi > lo ? 1.0 / (hi - lo) : 0.0;
    c->map = o->colormap;
}

static double attn__cmap_t(const attn__cmap *c, float x)
{
    double t;
    if (x == INFINITY) return 1.0;
    if (!(x > -INFINITY)) return 0.0; /* -inf, NaN */
    t = ((double)x - c->lo) * c->inv;
    return t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t);
}

/* The colour of x: gray (three equal bytes) or viridis, interpolated between its nine samples. */
static void attn__cmap_rgb(unsigned char rgb[3], const attn__cmap *c, float x)
{
    const double t = attn__cmap_t(c, x);
    int ch;
    if (c->map == ATTN_COLORMAP_GRAY) {
        rgb[0] = rgb[1] = rgb[2] = (unsigned char)(t * 255.0 + 0.5);
    } else {
        const double pos = t * 8.0;
        const int i = pos >= 8.0 ? 7 : (int)pos;
        const double f = pos - i;
        for (ch = 0; ch < 3; ++ch) {
            const double a = attn__viridis[i][ch], b = attn__viridis[i + 1][ch];
            rgb[ch] = (unsigned char)(a + f * (b - a) + 0.5);
        }
    }
}

/* Sizes of an image: cell x cell pixels per entry, bytes per pixel, raw bytes (with PNG's filter byte per
   scanline) and the number of stored deflate blocks of at most 65535 bytes. */
typedef struct attn__image_geom {
    int cell, channels;
    size_t width, height, raw, blocks;
} attn__image_geom;

#define ATTN__IMAGE_MAX_SIDE 2147483647u /* PNG's limit on width and height, and on a chunk's length */
#define ATTN__STORED_MAX 65535u          /* bytes of one stored deflate block */

static attn_result attn__image_geometry(const char *func, attn__image_geom *g, const float *m, ptrdiff_t m_stride,
                                        int rows, int cols, const attn_image_options *o)
{
    const int png = o->format == ATTN_IMAGE_PNG;
    attn_result r;
    size_t line, idat;
    if ((r = attn__image_check(func, m, m_stride, rows, cols, o)) != ATTN_OK) return r;
    g->cell = o->cell ? o->cell : 1;
    g->channels = o->format == ATTN_IMAGE_PGM || (png && o->colormap == ATTN_COLORMAP_GRAY) ? 1 : 3;
    if (!attn__mul(&g->width, (size_t)cols, (size_t)g->cell) ||
        !attn__mul(&g->height, (size_t)rows, (size_t)g->cell) || g->width > ATTN__IMAGE_MAX_SIDE ||
        g->height > ATTN__IMAGE_MAX_SIDE ||
        !attn__mul(&line, g->width, (size_t)g->channels) || !attn__add(&line, line, (size_t)png) ||
        !attn__mul(&g->raw, line, g->height))
        return attn__fail(func, ATTN_ERR_OVERFLOW, "rows",
                          "the image is above 2^31 - 1 pixels a side (rows or cols x cell)");
    g->blocks = (g->raw + ATTN__STORED_MAX - 1) / ATTN__STORED_MAX;
    idat = 2 + g->raw + 5 * g->blocks + 4; /* raw <= ATTN__MAX_ELEMS: no wrap */
    ATTN__REQUIRE(!png || idat <= ATTN__IMAGE_MAX_SIDE, ATTN_ERR_OVERFLOW, "rows",
                  "the PNG's image data is above 2^31 - 1 bytes");
    return ATTN_OK;
}

/* An image being written: the caller's sink, the running CRC-32 (PNG chunks) and Adler-32 (zlib), and
   the stored deflate block being filled. */
typedef struct attn__image_out {
    attn_write_fn write_fn;
    void *user;
    int failed;
    uint32_t crc, adler_a, adler_b;
    int zlib;                  /* raw bytes go into stored deflate blocks */
    size_t block_left;         /* bytes left in the current block */
    size_t raw_left;           /* raw bytes still to come */
    uint32_t crc_table[256];
} attn__image_out;

static void attn__image_emit(attn__image_out *w, const unsigned char *data, size_t n)
{
    size_t i;
    if (w->failed || n == 0) return;
    for (i = 0; i < n; ++i) w->crc = w->crc_table[(w->crc ^ data[i]) & 0xFFu] ^ (w->crc >> 8);
    if (w->write_fn(w->user, data, n) != 0) w->failed = 1;
}

static void attn__image_u32(attn__image_out *w, uint32_t v) /* big-endian */
{
    unsigned char b[4];
    b[0] = (unsigned char)(v >> 24); b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8); b[3] = (unsigned char)v;
    attn__image_emit(w, b, 4);
}

/* Raw image bytes: as they are (PGM, PPM), or into stored deflate blocks (PNG). */
static void attn__image_raw(attn__image_out *w, const unsigned char *data, size_t n)
{
    size_t i;
    if (!w->zlib) {
        attn__image_emit(w, data, n);
        return;
    }
    for (i = 0; i < n; ++i) {
        w->adler_a = (w->adler_a + data[i]) % 65521u;
        w->adler_b = (w->adler_b + w->adler_a) % 65521u;
    }
    while (n > 0) {
        size_t take;
        if (w->block_left == 0) { /* a block header: BFINAL, BTYPE 00 (stored), LEN, NLEN little-endian */
            const size_t len = w->raw_left < ATTN__STORED_MAX ? w->raw_left : ATTN__STORED_MAX;
            unsigned char hdr[5];
            hdr[0] = (unsigned char)(len == w->raw_left);
            hdr[1] = (unsigned char)(len & 0xFFu); hdr[2] = (unsigned char)(len >> 8);
            hdr[3] = (unsigned char)(~len & 0xFFu); hdr[4] = (unsigned char)((~len >> 8) & 0xFFu);
            attn__image_emit(w, hdr, 5);
            w->block_left = len;
        }
        take = n < w->block_left ? n : w->block_left;
        attn__image_emit(w, data, take);
        data += take;
        n -= take;
        w->block_left -= take;
        w->raw_left -= take;
    }
}

/* The pixels: every entry a cell x cell square, scanline by scanline, each scanline after a filter byte
   0 (none) for PNG; buffered in small pieces. */
static void attn__image_pixels(attn__image_out *w, const float *m, ptrdiff_t m_stride, int rows, int cols,
                               const attn__image_geom *g, int png, const attn__cmap *c)
{
    unsigned char buf[1024];
    size_t used = 0;
    int r, dy, col, dx, ch;
    for (r = 0; r < rows; ++r)
        for (dy = 0; dy < g->cell; ++dy) {
            if (w->failed) return; /* the writer failed: stop, rather than colour the rest for nothing */
            if (png) buf[used++] = 0;
            for (col = 0; col < cols; ++col) {
                unsigned char rgb[3];
                attn__cmap_rgb(rgb, c, m[(ptrdiff_t)r * m_stride + col]);
                for (dx = 0; dx < g->cell; ++dx)
                    for (ch = 0; ch < g->channels; ++ch) {
                        if (used == sizeof buf) {
                            attn__image_raw(w, buf, used);
                            used = 0;
                        }
                        buf[used++] = rgb[ch];
                    }
            }
            attn__image_raw(w, buf, used);
            used = 0;
        }
}

/* Decimal digits of v into buf (no terminator); returns their count. */
static size_t attn__fmt_size(char *buf, size_t v)
{
    char tmp[24];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v);
    for (i = 0; i < n; ++i) buf[i] = tmp[n - 1 - i];
    return n;
}

ATTNDEF attn_result attn_image_write(attn_write_fn write_fn, void *user, const float *m, ptrdiff_t m_stride,
                                     int rows, int cols, const attn_image_options *opt)
{
    static const unsigned char png_sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    static const unsigned char zlib_hdr[2] = {0x78, 0x01}; /* deflate, 32 KiB window, no dictionary */
    attn__image_geom g;
    attn__image_out w;
    attn__cmap c;
    attn_result r;
    uint32_t k;
    int bit;
    if (!opt) opt = &attn__image_default_options;
    if (!write_fn) return attn__fail("attn_image_write", ATTN_ERR_NULL, "write_fn", "NULL");
    if ((r = attn__image_geometry("attn_image_write", &g, m, m_stride, rows, cols, opt)) != ATTN_OK) return r;
    memset(&w, 0, sizeof w);
    w.write_fn = write_fn;
    w.user = user;
    for (k = 0; k < 256u; ++k) { /* CRC-32, reflected polynomial 0xEDB88320 */
        uint32_t v = k;
        for (bit = 0; bit < 8; ++bit) v = (v & 1u) ? 0xEDB88320u ^ (v >> 1) : v >> 1;
        w.crc_table[k] = v;
    }
    attn__cmap_init(&c, m, m_stride, rows, cols, opt);
    if (opt->format == ATTN_IMAGE_PNG) {
        unsigned char ihdr[17];
        memcpy(ihdr, "IHDR", 4);
        ihdr[4] = (unsigned char)(g.width >> 24); ihdr[5] = (unsigned char)(g.width >> 16);
        ihdr[6] = (unsigned char)(g.width >> 8); ihdr[7] = (unsigned char)g.width;
        ihdr[8] = (unsigned char)(g.height >> 24); ihdr[9] = (unsigned char)(g.height >> 16);
        ihdr[10] = (unsigned char)(g.height >> 8); ihdr[11] = (unsigned char)g.height;
        ihdr[12] = 8;                             /* bit depth */
        ihdr[13] = g.channels == 1 ? 0 : 2;       /* colour type: gray, RGB */
        ihdr[14] = ihdr[15] = ihdr[16] = 0;       /* deflate, adaptive filtering, no interlace */
        attn__image_emit(&w, png_sig, 8);
        attn__image_u32(&w, 13);
        w.crc = 0xFFFFFFFFu;
        attn__image_emit(&w, ihdr, 17);
        attn__image_u32(&w, ~w.crc);
        /* IDAT: one zlib stream of stored blocks */
        attn__image_u32(&w, (uint32_t)(2 + g.raw + 5 * g.blocks + 4));
        w.crc = 0xFFFFFFFFu;
        attn__image_emit(&w, (const unsigned char *)"IDAT", 4);
        attn__image_emit(&w, zlib_hdr, 2);
        w.zlib = 1;
        w.raw_left = g.raw;
        w.adler_a = 1;
        attn__image_pixels(&w, m, m_stride, rows, cols, &g, 1, &c);
        w.zlib = 0;
        attn__image_u32(&w, (w.adler_b << 16) | w.adler_a);
        attn__image_u32(&w, ~w.crc);
        attn__image_u32(&w, 0);
        w.crc = 0xFFFFFFFFu;
        attn__image_emit(&w, (const unsigned char *)"IEND", 4);
        attn__image_u32(&w, ~w.crc);
    } else {
        char hdr[64];
        size_t n = 0;
        hdr[n++] = 'P';
        hdr[n++] = opt->format == ATTN_IMAGE_PGM ? '5' : '6';
        hdr[n++] = '\n';
        n += attn__fmt_size(hdr + n, g.width);
        hdr[n++] = ' ';
        n += attn__fmt_size(hdr + n, g.height);
        memcpy(hdr + n, "\n255\n", 5);
        attn__image_emit(&w, (const unsigned char *)hdr, n + 5);
        attn__image_pixels(&w, m, m_stride, rows, cols, &g, 0, &c);
    }
    return w.failed ? ATTN_ERR_IO : ATTN_OK;
}

#ifndef ATTN_NO_STDIO
static int attn__fwrite(void *user, const void *data, size_t bytes)
{
    return fwrite(data, 1, bytes, (FILE *)user) == bytes ? 0 : 1;
}

ATTNDEF attn_result attn_image_save(const char *path, const float *m, ptrdiff_t m_stride, int rows, int cols,
                                    const attn_image_options *opt)
{
    attn__image_geom g;
    attn_result r;
    FILE *f;
    if (!opt) opt = &attn__image_default_options;
    if (!path) return attn__fail("attn_image_save", ATTN_ERR_NULL, "path", "NULL");
    /* before creating the file */
    if ((r = attn__image_geometry("attn_image_save", &g, m, m_stride, rows, cols, opt)) != ATTN_OK) return r;
    if (!(f = fopen(path, "wb")))
        return attn__fail("attn_image_save", ATTN_ERR_IO, "path", "cannot be opened for writing");
    r = attn_image_write(attn__fwrite, f, m, m_stride, rows, cols, opt);
    if (fclose(f) != 0 && r == ATTN_OK) r = ATTN_ERR_IO;
    return r;
}

/* The ANSI 256-colour code of x: the gray ramp (16, 232..255, 231) or the nearest colour of the 6x6x6 cube. */
static int attn__ansi256(const attn__cmap *c, float x)
{
    unsigned char rgb[3];
    int cube[3], ch;
    if (c->map == ATTN_COLORMAP_GRAY) {
        const int level = (int)(attn__cmap_t(c, x) * 25.0 + 0.5);
        return level == 0 ? 16 : (level == 25 ? 231 : 231 + level);
    }
    attn__cmap_rgb(rgb, c, x);
    for (ch = 0; ch < 3; ++ch) cube[ch] = rgb[ch] < 48 ? 0 : (rgb[ch] < 115 ? 1 : (rgb[ch] - 35) / 40);
    return 16 + 36 * cube[0] + 6 * cube[1] + cube[2];
}

ATTNDEF attn_result attn_heatmap_print(FILE *f, const float *m, ptrdiff_t m_stride, int rows, int cols,
                                       const attn_image_options *opt)
{
    static const char ramp[] = " .:-=+*#%@"; /* 10 levels, light to dense */
    attn__cmap c;
    attn_result r;
    size_t label_w = 0, label_h = 0, k;
    int i, j;
    if (!opt) opt = &attn__image_default_options;
    if (!f) return attn__fail("attn_heatmap_print", ATTN_ERR_NULL, "f", "NULL");
    if ((r = attn__image_check("attn_heatmap_print", m, m_stride, rows, cols, opt)) != ATTN_OK) return r;
    attn__cmap_init(&c, m, m_stride, rows, cols, opt);
    for (i = 0; opt->row_labels && i < rows; ++i) {
        const size_t len = opt->row_labels[i] ? strlen(opt->row_labels[i]) : 0;
        label_w = len > label_w ? len : label_w;
    }
    for (j = 0; opt->col_labels && j < cols; ++j) {
        const size_t len = opt->col_labels[j] ? strlen(opt->col_labels[j]) : 0;
        label_h = len > label_h ? len : label_h;
    }
    /* column labels written downwards, one character per line, over the first character of each cell */
    for (k = 0; k < label_h; ++k) {
        if (opt->row_labels) fprintf(f, "%*s", (int)label_w + 1, "");
        for (j = 0; j < cols; ++j) {
            const char *l = opt->col_labels[j] ? opt->col_labels[j] : "";
            fputc(k < strlen(l) ? l[k] : ' ', f);
            fputc(' ', f);
        }
        fputc('\n', f);
    }
    /* one line per row, two characters per entry */
    for (i = 0; i < rows; ++i) {
        if (opt->row_labels) fprintf(f, "%-*s ", (int)label_w, opt->row_labels[i] ? opt->row_labels[i] : "");
        for (j = 0; j < cols; ++j) {
            const float x = m[(ptrdiff_t)i * m_stride + j];
            if (opt->ansi) {
                fprintf(f, "\x1b[48;5;%dm  ", attn__ansi256(&c, x));
            } else {
                const char ch = ramp[(int)(attn__cmap_t(&c, x) * 9.0 + 0.5)];
                fputc(ch, f);
                fputc(ch, f);
            }
        }
        if (opt->ansi) fputs("\x1b[0m", f);
        fputc('\n', f);
    }
    return ferror(f) ? ATTN_ERR_IO : ATTN_OK;
}
#endif /* ATTN_NO_STDIO */

#ifdef __cplusplus
}
#endif

#endif /* ATTENTION_IMPLEMENTATION */

#else /* ATTN__TEMPLATE: the SIMD kernels, included once per instruction set by the implementation */

/* ---------------------------------------------------------------------------------------------- */
/* SIMD KERNEL TEMPLATE: the AVX-512, AVX2+FMA and NEON kernels (the code that runs on x86 and    */
/* ARM), instantiated by the file including itself: "SIMD selection" defines the vector macros    */
/* and includes this part once per instruction set. The portable versions: "Kernels" and          */
/* "Fused attention: the portable kernel".                                                        */
/* ---------------------------------------------------------------------------------------------- */

/* The kernels below are written once over a small vector vocabulary that the implementation defines per
   instruction set before including this file again (the stb_image_resize2 scheme):
     ATTN__SFX(name) the name with the set's suffix; ATTN__TARGET the function attribute;
     ATTN__V a vector of ATTN__W floats, ATTN__NV vectors per micro-kernel row; ATTN__M a lane mask;
     ATTN__VLOAD, _VSTORE, _VSET1, _VZERO, _VADD, _VSUB, _VMUL, _VDIV, _VFMA(a, b, c) = a*b + c,
     _VMAX(a, b) = a > b ? a : b, _VROUND (to nearest), _VLDEXP_Z(p, n, m) = m ? 0 : p * 2^n, _VSUM (of
     the lanes); _VLOAD_F16(p), _VLOAD_BF16(p) W 16-bit elements widened to floats (exactly); _VLOAD_Q8(p)
     W int8 converted to floats; _VEQ(a, b),
     _VLT(a, b) -> mask, _VBLEND(m, a, b) = m ? b : a, _VANY(m); ATTN__PREFETCH(p) into L1,
     ATTN__PREFETCH_L2(p) into L2.
   Layout of the fused kernel: a query tile is kept transposed, queries along the vector lanes. Scores
   S^T [keys x TQ] = K . Q^T and the output O^T [Dv x TQ] = alpha O^T + V^T . P^T are one micro-kernel that
   broadcasts K or V elements straight from the caller's rows (no packing), and the online softmax runs
   down the columns without a horizontal reduction. */

#define ATTN__NB (ATTN__NV * ATTN__W) /* columns of the micro-kernel: ATTN__NV vectors */

/* 2^x, |error| <= 2 ulp; x <= 0 in every use (scores minus their running max). NaN stays NaN. Below
   -125.5 (and for -inf, masked scores) the result is exactly 0, set with the final scaling (AVX-512's
   zero-masked scalef, a blend elsewhere): every value kept is a normal float, since a denormal or
   underflowing result costs a microcode assist of ~100 cycles on x86. */
static ATTN__TARGET ATTN__V ATTN__SFX(attn__vexp2)(ATTN__V x)
{
    const ATTN__V lo = ATTN__VSET1(-125.5f);
    const ATTN__M tiny = ATTN__VLT(x, lo); /* false for NaN */
    ATTN__V n, f, p;
    x = ATTN__VMAX(lo, x); /* NaN passes: ATTN__VMAX returns its second operand on NaN */
    n = ATTN__VROUND(x);
    f = ATTN__VSUB(x, n); /* [-0.5, 0.5] */
    p = ATTN__VSET1(1.5345811e-4f);
    p = ATTN__VFMA(p, f, ATTN__VSET1(1.3399931e-3f));
    p = ATTN__VFMA(p, f, ATTN__VSET1(9.6184891e-3f));
    p = ATTN__VFMA(p, f, ATTN__VSET1(5.5503286e-2f));
    p = ATTN__VFMA(p, f, ATTN__VSET1(2.4022646e-1f));
    p = ATTN__VFMA(p, f, ATTN__VSET1(6.9314718e-1f));
    p = ATTN__VFMA(p, f, ATTN__VSET1(1.0f));
    return ATTN__VLDEXP_Z(p, n, tiny);
}

/* e^x for x <= 0 (a score minus its running max: never an overflow, whatever the scores' size):
   2^(x log2 e), where x log2 e may round to -inf below -FLT_MAX / 1.44, which gives the right 0. */
static ATTN__TARGET ATTN__V ATTN__SFX(attn__vexp)(ATTN__V x)
{
    return ATTN__SFX(attn__vexp2)(ATTN__VMUL(x, ATTN__VSET1(ATTN__LOG2E)));
}

/* tanh(x), a few ulp: for |x| < 0.5 its Taylor series to x^15 (no cancellation near 0), above it
   (1 - e) / (1 + e) with e = e^(-2|x|) <= 0.37; the sign of x put back. NaN stays NaN. */
static ATTN__TARGET ATTN__V ATTN__SFX(attn__vtanh)(ATTN__V x)
{
    const ATTN__V a = ATTN__VMAX(ATTN__VSUB(ATTN__VZERO, x), x); /* |x|; NaN passes */
    const ATTN__V a2 = ATTN__VMUL(a, a);
    const ATTN__V e = ATTN__SFX(attn__vexp)(ATTN__VMUL(a, ATTN__VSET1(-2.0f)));
    const ATTN__V big = ATTN__VDIV(ATTN__VSUB(ATTN__VSET1(1.0f), e), ATTN__VADD(ATTN__VSET1(1.0f), e));
    ATTN__V p = ATTN__VSET1(-929569.0f / 638512875.0f), t;
    p = ATTN__VFMA(p, a2, ATTN__VSET1(21844.0f / 6081075.0f));
    p = ATTN__VFMA(p, a2, ATTN__VSET1(-1382.0f / 155925.0f));
    p = ATTN__VFMA(p, a2, ATTN__VSET1(62.0f / 2835.0f));
    p = ATTN__VFMA(p, a2, ATTN__VSET1(-17.0f / 315.0f));
    p = ATTN__VFMA(p, a2, ATTN__VSET1(2.0f / 15.0f));
    p = ATTN__VFMA(p, a2, ATTN__VSET1(-1.0f / 3.0f));
    p = ATTN__VFMA(ATTN__VMUL(p, a2), a, a); /* a + a^3 P(a^2) */
    t = ATTN__VBLEND(ATTN__VLT(a, ATTN__VSET1(0.5f)), big, p);
    return ATTN__VBLEND(ATTN__VLT(x, ATTN__VZERO), t, ATTN__VSUB(ATTN__VZERO, t));
}

/* s[n] = c tanh(s / c), logit soft-capping (Gemma 2), c > 0. */
static ATTN__TARGET void ATTN__SFX(attn__softcap)(float *s, int n, float c)
{
    const ATTN__V cv = ATTN__VSET1(c), inv = ATTN__VSET1(1.0f / c);
    int j;
    for (j = 0; j + ATTN__W <= n; j += ATTN__W)
        ATTN__VSTORE(s + j, ATTN__VMUL(cv, ATTN__SFX(attn__vtanh)(ATTN__VMUL(ATTN__VLOAD(s + j), inv))));
    for (; j < n; ++j) s[j] = c * tanhf(s[j] / c);
}

/* ALiBi on n scores, as attn__alibi_row: s[x] -= slope * |a + x|, W distances a vector (a + x, exact in
   float below 2^24, plus the lane numbers), the tail by attn__alibi_row itself. */
static ATTN__TARGET void ATTN__SFX(attn__alibi)(float *s, int n, float slope, long long a)
{
    static const float lane[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const ATTN__V sv = ATTN__VSET1(slope), lv = ATTN__VLOAD(lane);
    int x;
    for (x = 0; x + ATTN__W <= n; x += ATTN__W) {
        const ATTN__V d = ATTN__VADD(ATTN__VSET1((float)(a + x)), lv);
        const ATTN__V dist = ATTN__VMAX(d, ATTN__VSUB(ATTN__VZERO, d));
        ATTN__VSTORE(s + x, ATTN__VSUB(ATTN__VLOAD(s + x), ATTN__VMUL(sv, dist)));
    }
    attn__alibi_row(s + x, n - x, slope, a + x);
}

/* The micro-kernel: C[r][0..NB) = sum_p A(r, p) * B[p][0..NB) for r < rows <= 6, or with accumulate
   C[r][j] = C[r][j] * col_scale[j] + the sum (col_scale NULL: 1), with A(r, p) = a[r*a_rs + p*a_cs]
   broadcast from memory and B rows at b + p*b_rs (NB contiguous floats). The accumulators start from the
   (scaled) C, so C is read and written once per call, and the fused kernel's rescale of its running
   output by the online softmax costs one multiply per accumulator rather than a pass over the output.
   6 x ATTN__NV accumulators (12 or 24): enough independent FMA chains to hide the FMA latency on every
   target, and as many FMAs per load as the registers allow. */
#if ATTN__NV == 4
#define ATTN__ACC(r) ATTN__V c##r##0 = ATTN__VZERO, c##r##1 = ATTN__VZERO, c##r##2 = ATTN__VZERO, c##r##3 = ATTN__VZERO
#define ATTN__LOAD_ROW(r)                                                                                     \
    if (rows > r) {                                                                                           \
        c##r##0 = ATTN__VMUL(ATTN__VLOAD(c + r * c_rs), s0);                                                  \
        c##r##1 = ATTN__VMUL(ATTN__VLOAD(c + r * c_rs + ATTN__W), s1);                                        \
        c##r##2 = ATTN__VMUL(ATTN__VLOAD(c + r * c_rs + 2 * ATTN__W), s2);                                    \
        c##r##3 = ATTN__VMUL(ATTN__VLOAD(c + r * c_rs + 3 * ATTN__W), s3);                                    \
    }
#define ATTN__FMA_ROW(r)                                                                                      \
    x = ATTN__VSET1(a##r[off]);                                                                               \
    c##r##0 = ATTN__VFMA(x, b0, c##r##0); c##r##1 = ATTN__VFMA(x, b1, c##r##1);                               \
    c##r##2 = ATTN__VFMA(x, b2, c##r##2); c##r##3 = ATTN__VFMA(x, b3, c##r##3)
#define ATTN__STORE_ROW(r)                                                                                    \
    if (rows > r) {                                                                                           \
        ATTN__VSTORE(c + r * c_rs, c##r##0); ATTN__VSTORE(c + r * c_rs + ATTN__W, c##r##1);                   \
        ATTN__VSTORE(c + r * c_rs + 2 * ATTN__W, c##r##2); ATTN__VSTORE(c + r * c_rs + 3 * ATTN__W, c##r##3); \
    }
#else
#define ATTN__ACC(r) ATTN__V c##r##0 = ATTN__VZERO, c##r##1 = ATTN__VZERO
#define ATTN__LOAD_ROW(r)                                                                                     \
    if (rows > r) {                                                                                           \
        c##r##0 = ATTN__VMUL(ATTN__VLOAD(c + r * c_rs), s0);                                                  \
        c##r##1 = ATTN__VMUL(ATTN__VLOAD(c + r * c_rs + ATTN__W), s1);                                        \
    }
#define ATTN__FMA_ROW(r)                                                                                      \
    x = ATTN__VSET1(a##r[off]);                                                                               \
    c##r##0 = ATTN__VFMA(x, b0, c##r##0); c##r##1 = ATTN__VFMA(x, b1, c##r##1)
#define ATTN__STORE_ROW(r)                                                                                    \
    if (rows > r) { ATTN__VSTORE(c + r * c_rs, c##r##0); ATTN__VSTORE(c + r * c_rs + ATTN__W, c##r##1); }
#endif

/* The body, for six rows or (six = 0) four: inlined with a constant `six`, so that a call with at most four
   rows (the remainder of 64 keys or 64 head dimensions in blocks of 6) runs two thirds of the FMAs instead
   of computing two rows it drops; and with constant strides (b_rs always; a_cs = 1 for the scores and the
   panels, a_rs = 1 for P.V), so that the loop, unrolled four times, reaches the next B rows and A elements
   by fixed displacements. That leaves ~21.5 instructions per step for 12 FMAs on AVX2 instead of 24: a
   step needs 6 cycles of FMA either way, but in the phases where a shared host slows loads and issue and
   not the FMA units, the loop of 24 took ~8 and the unrolled one ~7 (measured +13% for the fused kernel
   on a shared Zen 3 host; git log has the runs). */
static ATTN__TARGET inline __attribute__((always_inline)) void ATTN__SFX(attn__kernel_rows)(
    float *c, ptrdiff_t c_rs, const float *a, ptrdiff_t a_rs, ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs,
    int k, int rows, int accumulate, const float *col_scale, const int six)
{
    /* rows past `rows` re-read row 0 (in bounds) and are never stored */
    const float *a0 = a, *a1 = a + (rows > 1) * a_rs, *a2 = a + (rows > 2) * 2 * a_rs;
    const float *a3 = a + (rows > 3) * 3 * a_rs, *a4 = a + (rows > 4) * 4 * a_rs, *a5 = a + (rows > 5) * 5 * a_rs;
    ptrdiff_t p, off;
    ATTN__ACC(0); ATTN__ACC(1); ATTN__ACC(2); ATTN__ACC(3); ATTN__ACC(4); ATTN__ACC(5);
    if (accumulate) {
        const ATTN__V s0 = col_scale ? ATTN__VLOAD(col_scale) : ATTN__VSET1(1.0f);
        const ATTN__V s1 = col_scale ? ATTN__VLOAD(col_scale + ATTN__W) : ATTN__VSET1(1.0f);
#if ATTN__NV == 4
        const ATTN__V s2 = col_scale ? ATTN__VLOAD(col_scale + 2 * ATTN__W) : ATTN__VSET1(1.0f);
        const ATTN__V s3 = col_scale ? ATTN__VLOAD(col_scale + 3 * ATTN__W) : ATTN__VSET1(1.0f);
#endif
        ATTN__LOAD_ROW(0) ATTN__LOAD_ROW(1) ATTN__LOAD_ROW(2) ATTN__LOAD_ROW(3)
        if (six) { ATTN__LOAD_ROW(4) ATTN__LOAD_ROW(5) }
    }
    ATTN__UNROLL4
    for (p = 0, off = 0; p < k; ++p, off += a_cs) {
        const float *b_p = b + p * b_rs;
        const ATTN__V b0 = ATTN__VLOAD(b_p), b1 = ATTN__VLOAD(b_p + ATTN__W);
#if ATTN__NV == 4
        const ATTN__V b2 = ATTN__VLOAD(b_p + 2 * ATTN__W), b3 = ATTN__VLOAD(b_p + 3 * ATTN__W);
#endif
        ATTN__V x;
        ATTN__FMA_ROW(0); ATTN__FMA_ROW(1); ATTN__FMA_ROW(2); ATTN__FMA_ROW(3);
        if (six) { ATTN__FMA_ROW(4); ATTN__FMA_ROW(5); }
    }
    ATTN__STORE_ROW(0) ATTN__STORE_ROW(1) ATTN__STORE_ROW(2) ATTN__STORE_ROW(3)
    if (six) { ATTN__STORE_ROW(4) ATTN__STORE_ROW(5) }
}

#define ATTN__KERNEL_AS(c_rs, a_rs, a_cs, b_rs)                                                               \
    if (rows > 4) ATTN__SFX(attn__kernel_rows)(c, c_rs, a, a_rs, a_cs, b, b_rs, k, rows, accumulate, col_scale, 1); \
    else ATTN__SFX(attn__kernel_rows)(c, c_rs, a, a_rs, a_cs, b, b_rs, k, rows, accumulate, col_scale, 0)

/* The fused kernel's products, on C and B tiles with rows of ATTN__TQ floats: A(r, p) = a[r*a_stride + p]
   (the scores: A = rows of K) or, with a_down, a[r + p*a_stride] (P.V: A = V read down its columns). */
static ATTN__TARGET void ATTN__SFX(attn__kernel_t)(float *c, const float *a, ptrdiff_t a_stride, int a_down,
                                                   const float *b, int k, int rows, int accumulate,
                                                   const float *col_scale)
{
    if (a_down) { ATTN__KERNEL_AS(ATTN__TQ, 1, a_stride, ATTN__TQ); }
    else { ATTN__KERNEL_AS(ATTN__TQ, a_stride, 1, ATTN__TQ); }
}

/* C (rows of stride c_rs) = or += A [rows x k] (rows of stride a_rs) times a packed panel b [k x NB]. */
static ATTN__TARGET void ATTN__SFX(attn__kernel_panel)(float *c, ptrdiff_t c_rs, const float *a, ptrdiff_t a_rs,
                                                       const float *b, int k, int rows, int accumulate)
{
    const float *col_scale = NULL;
    ATTN__KERNEL_AS(c_rs, a_rs, 1, ATTN__NB);
}
#undef ATTN__KERNEL_AS
#undef ATTN__ACC
#undef ATTN__LOAD_ROW
#undef ATTN__FMA_ROW
#undef ATTN__STORE_ROW

/* Packs rows [p0, p0 + kc) of columns [j0, j0 + NB) of op(B) -- B [k x n], or B^T given as [n x k] with
   b_trans -- into panel [kc x NB], zero past column n. */
static ATTN__TARGET void ATTN__SFX(attn__pack_panel)(float *panel, const void *b, attn_dtype bt, ptrdiff_t ldb,
                                                     int b_trans, int n, int j0, int p0, int kc)
{
    const int nb = n - j0 < ATTN__NB ? n - j0 : ATTN__NB;
    int p, jj;
    for (p = 0; p < kc; ++p) {
        float *row = panel + (ptrdiff_t)p * ATTN__NB;
        if (b_trans)
            for (jj = 0; jj < nb; ++jj) row[jj] = attn__load_as(attn__row_as(b, bt, ldb, j0 + jj), p0 + p, bt);
        else if (bt == ATTN_F32)
            memcpy(row, (const float *)b + (ptrdiff_t)(p0 + p) * ldb + j0, sizeof(float) * (size_t)nb);
        else
            attn__to_f32(row, (const char *)attn__row_as(b, bt, ldb, p0 + p) + attn__dtype_bytes(bt, j0), bt, (size_t)nb);
        for (jj = nb; jj < ATTN__NB; ++jj) row[jj] = 0.0f;
    }
}

/* C[rows x nb] (+)= A[rows x kc] . panel[kc x NB] for one tile: the micro-kernel, through a stack tile when
   the tile is narrower than NB so that C is never touched outside [rows x nb]. */
static ATTN__TARGET void ATTN__SFX(attn__tile_mm)(float *c, ptrdiff_t ldc, const float *a, ptrdiff_t lda,
                                                  const float *panel, int kc, int rows, int nb, int accumulate)
{
    float tile[6 * ATTN__NB];
    int r, jj;
    if (nb == ATTN__NB) {
        ATTN__SFX(attn__kernel_panel)(c, ldc, a, lda, panel, kc, rows, accumulate);
        return;
    }
    for (r = 0; r < rows; ++r)
        for (jj = 0; jj < ATTN__NB; ++jj) tile[r * ATTN__NB + jj] = accumulate && jj < nb ? c[(ptrdiff_t)r * ldc + jj] : 0.0f;
    ATTN__SFX(attn__kernel_panel)(tile, ATTN__NB, a, lda, panel, kc, rows, accumulate);
    for (r = 0; r < rows; ++r)
        for (jj = 0; jj < nb; ++jj) c[(ptrdiff_t)r * ldc + jj] = tile[r * ATTN__NB + jj];
}

/* C[m x n] (+)= A[m x k] . op(B) without a buffer: one KC x NB panel of B at a time on the stack
   (16 KiB), swept over every row of A. */
#define ATTN__KC (4096 / ATTN__NB)
static ATTN__TARGET void ATTN__SFX(attn__gemm)(float *c, ptrdiff_t ldc, const float *a, ptrdiff_t lda,
                                               const float *b, ptrdiff_t ldb, int b_trans, int m, int n, int k,
                                               int accumulate)
{
    float panel[ATTN__KC * ATTN__NB];
    int j0, p0, i0, rows;
    for (j0 = 0; j0 < n; j0 += ATTN__NB)
        for (p0 = 0; p0 < k; p0 += ATTN__KC) {
            const int kc = k - p0 < ATTN__KC ? k - p0 : ATTN__KC;
            ATTN__SFX(attn__pack_panel)(panel, b, ATTN_F32, ldb, b_trans, n, j0, p0, kc);
            for (i0 = 0; i0 < m; i0 += rows) {
                rows = ATTN__BLOCK_ROWS(m - i0);
                ATTN__SFX(attn__tile_mm)(c + (ptrdiff_t)i0 * ldc + j0, ldc, a + (ptrdiff_t)i0 * lda + p0, lda, panel, kc,
                                         rows, n - j0 < ATTN__NB ? n - j0 : ATTN__NB, accumulate || p0 > 0);
            }
        }
}

/* Packs op(B) [k x n] into bp: strip s (columns [s*NB, s*NB + NB)) is [k x NB] at bp + s*k*NB. This call
   packs strips part, part + parts, part + 2 parts, ... (parts threads pack one B together). */
static ATTN__TARGET void ATTN__SFX(attn__pack_b)(float *bp, const void *b, attn_dtype bt, ptrdiff_t ldb, int b_trans, int n, int k,
                                                 int part, int parts)
{
    ptrdiff_t j0;
    for (j0 = (ptrdiff_t)part * ATTN__NB; j0 < n; j0 += (ptrdiff_t)parts * ATTN__NB)
        ATTN__SFX(attn__pack_panel)(bp + j0 * k, b, bt, ldb, b_trans, n, (int)j0, 0, k);
}

/* C[m x n] (+)= A[m x k] . B from B packed by attn__pack_b: each 6-row block of A stays in L1 while it
   sweeps every strip of a KC_PACKED-deep slice of the packed B (which stays in L2), so A is read once.
   The deeper slice (256 rather than the stack panel's 64) stores each C tile a quarter as often. */
#define ATTN__KC_PACKED 256
static ATTN__TARGET void ATTN__SFX(attn__gemm_packed)(float *c, ptrdiff_t ldc, const float *a, ptrdiff_t lda,
                                                      const float *bp, int m, int n, int k, int accumulate)
{
    int p0, i0, j0, rows;
    for (p0 = 0; p0 < k; p0 += ATTN__KC_PACKED) {
        const int kc = k - p0 < ATTN__KC_PACKED ? k - p0 : ATTN__KC_PACKED;
        for (i0 = 0; i0 < m; i0 += rows) {
            rows = ATTN__BLOCK_ROWS(m - i0);
            for (j0 = 0; j0 < n; j0 += ATTN__NB)
                ATTN__SFX(attn__tile_mm)(c + (ptrdiff_t)i0 * ldc + j0, ldc, a + (ptrdiff_t)i0 * lda + p0, lda,
                                         bp + ((ptrdiff_t)(j0 / ATTN__NB) * k + p0) * ATTN__NB, kc, rows,
                                         n - j0 < ATTN__NB ? n - j0 : ATTN__NB, accumulate || p0 > 0);
        }
    }
}

/* W elements of a K or V row of element type t at p + i, as floats (exact; t is a constant in each copy of
   attn__scores_pv_as, so this is one load or one load and a widening). */
static ATTN__TARGET inline __attribute__((always_inline)) ATTN__V ATTN__SFX(attn__vload_as)(const void *p, int i,
                                                                                           attn_dtype t)
{
    if (t == ATTN_F16) return ATTN__VLOAD_F16((const unsigned short *)p + i);
    if (t == ATTN_BF16) return ATTN__VLOAD_BF16((const unsigned short *)p + i);
    if (t == ATTN_Q8) { /* W of the 32 int8 of a block (W divides 32), times its scale; i >= 0 */
        const signed char *b = (const signed char *)p + (unsigned)i / ATTN_Q8_BLOCK * ATTN_Q8_BLOCK_BYTES;
        return ATTN__VMUL(ATTN__VLOAD_Q8(b + sizeof(float) + (unsigned)i % ATTN_Q8_BLOCK), ATTN__VSET1(attn__q8_scale(b)));
    }
    return ATTN__VLOAD((const float *)p + i);
}

/* Few-row projections (decoding: n <= ATTN__GEMV_ROWS rows), read straight from the caller's W with no
   packing: each weight element is loaded once, so the time is W's bytes over the memory bandwidth.
   Columns [j0, j1) of y[n x d_out] = x[n x d_in] . W (+ bias), W [d_in x d_out] (row stride w_rs).
   W's rows are streamed four at a time; each vector of the n output rows is loaded, takes the four rows'
   FMAs and is stored, in blocks of ATTN__GEMV_COLS / n columns, so that the n rows of y (16 KiB) stay in L1
   and W is read in runs of 2 KiB (8 rows) to 16 KiB (one row; a run per 4 KiB page or more keeps DRAM
   streaming, where shorter ones measured slower). Column j is
   y[j] = fma(x[d_in-1], w[d_in-1][j], ... fma(x[0], w[0][j], bias[j] or 0)), in a vector lane or in the
   scalar tail alike (fmaf is the same fused operation), so a column's value never depends on where
   [j0, j1) starts or ends: threads may split the columns anywhere and agree bitwise. It is also the
   packed path's arithmetic (attn__gemm_packed), so a row projected alone equals the same row projected
   among many, bitwise. */
#define ATTN__GEMV_COLS 4096
static ATTN__TARGET inline __attribute__((always_inline)) void ATTN__SFX(attn__gemv_in_out_as)(
    float *y, ptrdiff_t y_rs, const float *x, ptrdiff_t x_rs, const void *w, attn_dtype wt, ptrdiff_t w_rs,
    const float *bias, int n, int d_in, int j0, int j1)
{
    int i, jb, j, p;
    for (i = 0; i < n; ++i)
        for (j = j0; j < j1; ++j) y[i * y_rs + j] = bias ? bias[j] : 0.0f;
    const int cols = ATTN__GEMV_COLS / n / 16 * 16; /* whole vectors on every ISA: no scalar tail inside */
    for (jb = j0; jb < j1; jb += cols) {
        const int je = j1 - jb < cols ? j1 : jb + cols;
        /* four rows of W at a time while the rows of y are wide; narrow ones (y under 8 KiB, in L1 beside W's
           stream) read W one row after another when that is one sequential stream (whole rows, contiguous):
           one row of 4096 -> 1024 (the K and V of decode_layer), 1 thread, 0.72 ms rather than 1.06;
           4096 -> 512 0.34 / 0.72; 4096 -> 2048 1.7 / 1.9; 4096 -> 4096 4.3 / 3.5, so not there (Zen 4).
           A slice of each row (threads side by side) is read four rows at a time, wide or not: a plain read
           of 768 x 3072 floats, two threads on halves of each row, one row at a time 22.6 GB/s, four 32.9
           (one thread on it all, 34.0). The same FMAs per column in the same order either way. */
        const int four = n * (je - jb) >= 2048 || jb > 0 || je != w_rs;
        for (p = 0; four && p + 4 <= d_in; p += 4) { /* four rows of W: 4 FMAs per load and store of y */
            const void *w0 = attn__row_as(w, wt, w_rs, p), *w1 = attn__row_as(w, wt, w_rs, p + 1);
            const void *w2 = attn__row_as(w, wt, w_rs, p + 2), *w3 = attn__row_as(w, wt, w_rs, p + 3);
            for (j = jb; j + ATTN__W <= je; j += ATTN__W) {
                const ATTN__V b0 = ATTN__SFX(attn__vload_as)(w0, j, wt), b1 = ATTN__SFX(attn__vload_as)(w1, j, wt);
                const ATTN__V b2 = ATTN__SFX(attn__vload_as)(w2, j, wt), b3 = ATTN__SFX(attn__vload_as)(w3, j, wt);
                for (i = 0; i < n; ++i) {
                    const float *x_i = x + i * x_rs + p;
                    float *y_i = y + i * y_rs + j;
                    ATTN__V acc = ATTN__VLOAD(y_i);
                    acc = ATTN__VFMA(ATTN__VSET1(x_i[0]), b0, acc);
                    acc = ATTN__VFMA(ATTN__VSET1(x_i[1]), b1, acc);
                    acc = ATTN__VFMA(ATTN__VSET1(x_i[2]), b2, acc);
                    acc = ATTN__VFMA(ATTN__VSET1(x_i[3]), b3, acc);
                    ATTN__VSTORE(y_i, acc);
                }
            }
            for (; j < je; ++j)
                for (i = 0; i < n; ++i) {
                    const float *x_i = x + i * x_rs + p;
                    float *y_ij = y + i * y_rs + j;
                    *y_ij = fmaf(x_i[3], attn__load_as(w3, j, wt), fmaf(x_i[2], attn__load_as(w2, j, wt),
                                 fmaf(x_i[1], attn__load_as(w1, j, wt), fmaf(x_i[0], attn__load_as(w0, j, wt), *y_ij))));
                }
        }
        for (; p < d_in; ++p) { /* the last d_in % 4 rows of W (or all of them), one at a time */
            const void *w0 = attn__row_as(w, wt, w_rs, p);
            for (j = jb; j + ATTN__W <= je; j += ATTN__W) {
                const ATTN__V b0 = ATTN__SFX(attn__vload_as)(w0, j, wt);
                for (i = 0; i < n; ++i) {
                    float *y_i = y + i * y_rs + j;
                    ATTN__VSTORE(y_i, ATTN__VFMA(ATTN__VSET1(x[i * x_rs + p]), b0, ATTN__VLOAD(y_i)));
                }
            }
            for (; j < je; ++j)
                for (i = 0; i < n; ++i) y[i * y_rs + j] = fmaf(x[i * x_rs + p], attn__load_as(w0, j, wt), y[i * y_rs + j]);
        }
    }
}

/* attn__gemv_in_out_as with W's element type constant in each copy */
static ATTN__TARGET void ATTN__SFX(attn__gemv_in_out)(float *y, ptrdiff_t y_rs, const float *x, ptrdiff_t x_rs,
                                                      const void *w, attn_dtype wt, ptrdiff_t w_rs, const float *bias,
                                                      int n, int d_in, int j0, int j1)
{
    if (wt == ATTN_F16) ATTN__SFX(attn__gemv_in_out_as)(y, y_rs, x, x_rs, w, ATTN_F16, w_rs, bias, n, d_in, j0, j1);
    else if (wt == ATTN_BF16) ATTN__SFX(attn__gemv_in_out_as)(y, y_rs, x, x_rs, w, ATTN_BF16, w_rs, bias, n, d_in, j0, j1);
    else ATTN__SFX(attn__gemv_in_out_as)(y, y_rs, x, x_rs, w, ATTN_F32, w_rs, bias, n, d_in, j0, j1);
}

/* Outputs [j0, j1) of y[n x d_out] = x[n x d_in] . W^T (+ bias), W [d_out x d_in] (row stride w_rs), for
   `rows` (1, 2, 4 or 8, a constant once inlined) rows of x; rows past n re-read row 0 and are not stored.
   Each output gets the packed path's arithmetic, y = fma(x[d_in-1], w[d_in-1], ... fma(x[0], w[0], bias or
   0)) in order, so that a row projected alone equals the same row projected among many, bitwise: a dot
   product along d_in would sum in another order. So the vector lanes are ATTN__W outputs: a [W x W] block
   of W (W consecutive rows, W floats of each: every W element is read once, W rows streamed side by side)
   is transposed in registers through a stack tile, whose row q then holds w[j + l][p + q] in lane l.
   Outputs past the last whole block, and the d_in % W tail, take the same fused steps in scalar code. */
static ATTN__TARGET inline __attribute__((always_inline)) void ATTN__SFX(attn__gemv_out_in_rows)(
    float *y, ptrdiff_t y_rs, const float *x, ptrdiff_t x_rs, const void *w, attn_dtype wt, ptrdiff_t w_rs,
    const float *bias, int n, int d_in, int j0, int j1, const int rows)
{
    const float *x0 = x, *x1 = x + (n > 1) * x_rs, *x2 = x + (n > 2) * 2 * x_rs, *x3 = x + (n > 3) * 3 * x_rs;
    const float *x4 = x + (n > 4) * 4 * x_rs, *x5 = x + (n > 5) * 5 * x_rs, *x6 = x + (n > 6) * 6 * x_rs;
    const float *x7 = x + (n > 7) * 7 * x_rs;
    float tile[ATTN__W * ATTN__W], wide[ATTN__W * ATTN__W], acc_t[8 * ATTN__W];
    const ATTN__V one = ATTN__VSET1(1.0f);
    int j, p, q, i, l;
    for (j = j0; j + ATTN__W <= j1; j += ATTN__W) {
        const char *w_j = (const char *)attn__row_as(w, wt, w_rs, j);
        const ATTN__V b = bias ? ATTN__VLOAD(bias + j) : ATTN__VZERO;
        ATTN__V a0 = b, a1 = b, a2 = b, a3 = b, a4 = b, a5 = b, a6 = b, a7 = b;
        for (p = 0; p + ATTN__W <= d_in; p += ATTN__W) {
            /* the next block's lines into L2 as this block's are read: rows of a few KiB (d_in = 768) are too
               short for the hardware's stream prefetch (one row of 768 -> 3072: 0.55 ms without, 0.45 with) */
            if (j + 2 * ATTN__W <= j1)
                for (q = 0; q < ATTN__W; ++q) ATTN__PREFETCH_L2((const char *)attn__row_as(w_j, wt, w_rs, ATTN__W + q) + attn__dtype_bytes(wt, p));
            if (wt == ATTN_F32) {
                ATTN__TRANSPOSE(tile, ATTN__W, (const float *)(const void *)w_j + p, w_rs, one); /* tile[q][l] = w[j + l][p + q] (times 1) */
            } else { /* a 16-bit block widened first */
                for (q = 0; q < ATTN__W; ++q)
                    ATTN__VSTORE(wide + q * ATTN__W, ATTN__SFX(attn__vload_as)(attn__row_as(w_j, wt, w_rs, q), p, wt));
                ATTN__TRANSPOSE(tile, ATTN__W, wide, ATTN__W, one);
            }
            for (q = 0; q < ATTN__W; ++q) {
                const ATTN__V t = ATTN__VLOAD(tile + q * ATTN__W);
                a0 = ATTN__VFMA(ATTN__VSET1(x0[p + q]), t, a0);
                if (rows > 1) a1 = ATTN__VFMA(ATTN__VSET1(x1[p + q]), t, a1);
                if (rows > 2) {
                    a2 = ATTN__VFMA(ATTN__VSET1(x2[p + q]), t, a2);
                    a3 = ATTN__VFMA(ATTN__VSET1(x3[p + q]), t, a3);
                }
                if (rows > 4) {
                    a4 = ATTN__VFMA(ATTN__VSET1(x4[p + q]), t, a4);
                    a5 = ATTN__VFMA(ATTN__VSET1(x5[p + q]), t, a5);
                    a6 = ATTN__VFMA(ATTN__VSET1(x6[p + q]), t, a6);
                    a7 = ATTN__VFMA(ATTN__VSET1(x7[p + q]), t, a7);
                }
            }
        }
        ATTN__VSTORE(acc_t, a0); ATTN__VSTORE(acc_t + ATTN__W, a1); ATTN__VSTORE(acc_t + 2 * ATTN__W, a2);
        ATTN__VSTORE(acc_t + 3 * ATTN__W, a3); ATTN__VSTORE(acc_t + 4 * ATTN__W, a4);
        ATTN__VSTORE(acc_t + 5 * ATTN__W, a5); ATTN__VSTORE(acc_t + 6 * ATTN__W, a6);
        ATTN__VSTORE(acc_t + 7 * ATTN__W, a7);
        for (i = 0; i < n && i < rows; ++i) /* the d_in % W tail, then y */
            for (l = 0; l < ATTN__W; ++l) {
                const float *x_i = x + i * x_rs;
                const void *w_l = attn__row_as(w_j, wt, w_rs, l);
                float acc = acc_t[i * ATTN__W + l];
                int pp;
                for (pp = p; pp < d_in; ++pp) acc = fmaf(x_i[pp], attn__load_as(w_l, pp, wt), acc);
                y[i * y_rs + j + l] = acc;
            }
    }
    for (; j < j1; ++j) /* the last j1 - j0 % W outputs */
        for (i = 0; i < n && i < rows; ++i) {
            const float *x_i = x + i * x_rs;
            const void *w_l = attn__row_as(w, wt, w_rs, j);
            float acc = bias ? bias[j] : 0.0f;
            for (p = 0; p < d_in; ++p) acc = fmaf(x_i[p], attn__load_as(w_l, p, wt), acc);
            y[i * y_rs + j] = acc;
        }
}

/* attn__gemv_out_in_rows for n rows, the rows (1, 2, 4, 8) and W's element type constant in each copy */
#define ATTN__GEMV_OUT_IN_TYPE(t)                                                                                      \
    if (n == 1) ATTN__SFX(attn__gemv_out_in_rows)(y, y_rs, x, x_rs, w, t, w_rs, bias, n, d_in, j0, j1, 1);           \
    else if (n == 2) ATTN__SFX(attn__gemv_out_in_rows)(y, y_rs, x, x_rs, w, t, w_rs, bias, n, d_in, j0, j1, 2);      \
    else if (n <= 4) ATTN__SFX(attn__gemv_out_in_rows)(y, y_rs, x, x_rs, w, t, w_rs, bias, n, d_in, j0, j1, 4);      \
    else ATTN__SFX(attn__gemv_out_in_rows)(y, y_rs, x, x_rs, w, t, w_rs, bias, n, d_in, j0, j1, 8)
static ATTN__TARGET void ATTN__SFX(attn__gemv_out_in)(float *y, ptrdiff_t y_rs, const float *x, ptrdiff_t x_rs,
                                                      const void *w, attn_dtype wt, ptrdiff_t w_rs, const float *bias,
                                                      int n, int d_in, int j0, int j1)
{
    if (wt == ATTN_F16) { ATTN__GEMV_OUT_IN_TYPE(ATTN_F16); }
    else if (wt == ATTN_BF16) { ATTN__GEMV_OUT_IN_TYPE(ATTN_BF16); }
    else { ATTN__GEMV_OUT_IN_TYPE(ATTN_F32); }
}
#undef ATTN__GEMV_OUT_IN_TYPE

/* Prefetches `bytes` bytes at p into the cache: one prefetch per 64-byte line, four per loop step (the
   decoding kernel issues one for every line of K and V it will read). */
static ATTN__TARGET void ATTN__SFX(attn__prefetch_bytes)(const char *p, int bytes)
{
    int c;
    for (c = 0; c + 256 <= bytes; c += 256) {
        ATTN__PREFETCH(p + c); ATTN__PREFETCH(p + c + 64); ATTN__PREFETCH(p + c + 128); ATTN__PREFETCH(p + c + 192);
    }
    for (; c < bytes; c += 64) ATTN__PREFETCH(p + c);
}

/* The same into L2 only, for the tile kernel's V rows (a separate loop: the decoding kernel's is tuned). */
static ATTN__TARGET void ATTN__SFX(attn__prefetch_rows_l2)(const float *p, ptrdiff_t rs, int rows, int d)
{
    int r, c;
    for (r = 0; r < rows; ++r, p += rs)
        for (c = 0; c < d; c += 16) ATTN__PREFETCH_L2(p + c);
}

/* s_t[TK x TQ] = scores of keys [j0, j0 + tk) against the packed queries q_t [Dk x TQ] (already times the
   scale), with every mask applied (-inf = hidden). Only the first tq columns are real queries. */
static ATTN__TARGET void ATTN__SFX(attn__score_tile_t)(float *s_t, const attn__head *h, const float *q_t, int i0,
                                                       int tq, int j0, int tk)
{
    ptrdiff_t k_rs = 0;
    const float *k_t = NULL;
    int j, i, nb, rows;
#ifdef ATTN__BF16DOT
    if (h->bf16dot) /* Q^T packed in pairs (attn__tile_forward), K's pairs read in place, scaled at the end */
        for (j = 0; j < tk; j += rows) {
            rows = ATTN__BLOCK_ROWS(tk - j);
            attn__dot_tile_bf16(s_t + j * ATTN__TQ, (const unsigned short *)h->k + (ptrdiff_t)(j0 + j) * h->k_rs, h->k_rs, 2,
                                q_t, h->dk / 2, rows, 0, NULL, h->scale);
        }
    else
#endif
        k_t = attn__k_rows(h, j0, tk, &k_rs);
    for (j = 0; k_t && j < tk; j += rows) {
        const int next = j0 + ATTN__TK + j; /* the same keys of the next tile */
        rows = ATTN__BLOCK_ROWS(tk - j);
        /* the V rows of these keys, into L2 for the P.V pass that follows: it reads them a few floats
           per row, a pattern the hardware prefetchers do not follow (D = 128, one thread: -4%). A 16-bit
           V is read whole, row after row, when its tile is widened: no need. */
        if (h->v_type == ATTN_F32)
            ATTN__SFX(attn__prefetch_rows_l2)((const float *)h->v + (ptrdiff_t)(j0 + j) * h->v_rs, h->v_rs, rows, h->dv);
        /* K rows apart from each other (a head of interleaved [N, H*D] rows) get no stream prefetch across
           rows: fetch the next tile's (-4 to -6% there; nothing gained on contiguous rows, so only here) */
        if (h->k_type == ATTN_F32 && h->k_rs != h->dk && next < h->n_valid)
            ATTN__SFX(attn__prefetch_rows_l2)((const float *)h->k + (ptrdiff_t)next * h->k_rs, h->k_rs,
                                              h->n_valid - next < rows ? h->n_valid - next : rows, h->dk);
        for (nb = 0; nb < ATTN__TQ; nb += ATTN__NB)
            ATTN__SFX(attn__kernel_t)(s_t + j * ATTN__TQ + nb, k_t + (ptrdiff_t)j * k_rs, k_rs, 0,
                                      q_t + nb, h->dk, rows, 0, NULL);
    }
    if (h->softcap > 0.0f) ATTN__SFX(attn__softcap)(s_t, tk * ATTN__TQ, h->softcap);
    if (h->alibi != 0.0f) /* key j0 + j against query i0 + i: distance |i0 + diag0 - j0 - j + i| */
        for (j = 0; j < tk; ++j)
            ATTN__SFX(attn__alibi)(s_t + j * ATTN__TQ, ATTN__TQ, h->alibi, (long long)i0 + h->diag0 - j0 - j);
    if (h->mask)
        for (j = 0; j < tk; ++j)
            for (i = 0; i < tq; ++i)
                s_t[j * ATTN__TQ + i] += h->mask[(ptrdiff_t)(i0 + i) * h->mask_rs + j0 + j];
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
    if (h->lower)
        for (j = 0; j < tk; ++j) {
            /* key j0 + j is visible from query i0 + i iff i <= j0 + j - diag_lo - i0 */
            const long long last = (long long)j0 + j - h->diag_lo - i0;
            for (i = last < -1 ? 0 : (int)(last + 1 < ATTN__TQ ? last + 1 : ATTN__TQ); i < ATTN__TQ; ++i)
                s_t[j * ATTN__TQ + i] = -INFINITY;
        }
}

/* p = e^(s - m) down each column of s_t [tk x TQ], m the running max of the column (with the documented
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
            ATTN__V p = ATTN__SFX(attn__vexp)(ATTN__VSUB(s, mu));
            if (any_inf) p = ATTN__VBLEND(ATTN__VEQ(s, ATTN__VSET1(INFINITY)), p, ATTN__VSET1(1.0f));
            ATTN__VSTORE(s_j, p);
            acc = ATTN__VADD(acc, p);
        }
        ATTN__VSTORE(sum + v, acc);
    }
}

/* Sum of the lanes of v (a fixed order per instruction set). */
static ATTN__TARGET float ATTN__SFX(attn__vsum)(ATTN__V v)
{
    return ATTN__VSUM(v);
}


/* dst [32 n_blocks] = the values of n_blocks ATTN_Q8 blocks at src: d * q, as attn__vload_as (the tile
   kernels' buffers, attn_q8_to_f32). */
static ATTN__TARGET void ATTN__SFX(attn__q8_to_f32)(float *dst, const unsigned char *src, size_t n_blocks)
{
    size_t b;
    int c;
    for (b = 0; b < n_blocks; ++b, src += ATTN_Q8_BLOCK_BYTES, dst += ATTN_Q8_BLOCK) {
        const ATTN__V d = ATTN__VSET1(attn__q8_scale(src));
        for (c = 0; c < ATTN_Q8_BLOCK; c += ATTN__W)
            ATTN__VSTORE(dst + c, ATTN__VMUL(ATTN__VLOAD_Q8((const signed char *)src + sizeof(float) + c), d));
    }
}

/* The decoding kernel's pass over one key tile: its scores and the P.V of the tile before it, key by key --
   s[j] = qs . k_j for j < n_s and acc += p[j] v_j for j < n_pv (k_j, v_j rows j of k and v, k_rs and v_rs
   elements of type kt and vt apart) -- so that K and V are read as two sequential streams side by side,
   each row whole. 16-bit and Q8 rows are widened in the registers (the same floats as attn__kv_rows
   gives, so the same sums as float32 rows holding them), so memory moves their 2 (1.125) bytes per
   element only. Each K row
   in four chains; the first 8 (or 4) vectors of acc in registers, the rest in memory. Prefetches K row
   j + 16 while j + 16 < pf_end. */
static ATTN__TARGET inline __attribute__((always_inline)) void ATTN__SFX(attn__scores_pv_as)(
    float *s, const void *k, ptrdiff_t k_rs, const float *qs, int dk, int n_s, int pf_end, float *acc, const void *v,
    ptrdiff_t v_rs, const float *p, int n_pv, int dv, attn_dtype kt, attn_dtype vt)
{
    const int n = n_s > n_pv ? n_s : n_pv;
    const int c_reg = dv >= 8 * ATTN__W ? 8 * ATTN__W : dv >= 4 * ATTN__W ? 4 * ATTN__W : 0; /* floats in r0.. */
    /* a prefetched K row: one more line for 16-bit and Q8 rows, which need not start on one */
    const int k_bytes = (int)attn__dtype_bytes(kt, dk) + (kt == ATTN_F32 ? 0 : 63);
    ATTN__V r0 = ATTN__VZERO, r1 = ATTN__VZERO, r2 = ATTN__VZERO, r3 = ATTN__VZERO;
    ATTN__V r4 = ATTN__VZERO, r5 = ATTN__VZERO, r6 = ATTN__VZERO, r7 = ATTN__VZERO;
    int j, c;
    if (c_reg && n_pv > 0) {
        r0 = ATTN__VLOAD(acc);                r1 = ATTN__VLOAD(acc + ATTN__W);
        r2 = ATTN__VLOAD(acc + 2 * ATTN__W);  r3 = ATTN__VLOAD(acc + 3 * ATTN__W);
    }
    if (c_reg > 4 * ATTN__W && n_pv > 0) {
        r4 = ATTN__VLOAD(acc + 4 * ATTN__W);  r5 = ATTN__VLOAD(acc + 5 * ATTN__W);
        r6 = ATTN__VLOAD(acc + 6 * ATTN__W);  r7 = ATTN__VLOAD(acc + 7 * ATTN__W);
    }
    for (j = 0; j < n; ++j) {
        if (j < n_s) {
            const void *k_j = attn__row_as(k, kt, k_rs, j);
            ATTN__V a0 = ATTN__VZERO, a1 = ATTN__VZERO, a2 = ATTN__VZERO, a3 = ATTN__VZERO;
            if (j + 16 < pf_end) ATTN__SFX(attn__prefetch_bytes)((const char *)attn__row_as(k, kt, k_rs, j + 16), k_bytes);
            for (c = 0; c + 4 * ATTN__W <= dk; c += 4 * ATTN__W) {
                a0 = ATTN__VFMA(ATTN__VLOAD(qs + c), ATTN__SFX(attn__vload_as)(k_j, c, kt), a0);
                a1 = ATTN__VFMA(ATTN__VLOAD(qs + c + ATTN__W), ATTN__SFX(attn__vload_as)(k_j, c + ATTN__W, kt), a1);
                a2 = ATTN__VFMA(ATTN__VLOAD(qs + c + 2 * ATTN__W), ATTN__SFX(attn__vload_as)(k_j, c + 2 * ATTN__W, kt), a2);
                a3 = ATTN__VFMA(ATTN__VLOAD(qs + c + 3 * ATTN__W), ATTN__SFX(attn__vload_as)(k_j, c + 3 * ATTN__W, kt), a3);
            }
            for (; c + ATTN__W <= dk; c += ATTN__W) a0 = ATTN__VFMA(ATTN__VLOAD(qs + c), ATTN__SFX(attn__vload_as)(k_j, c, kt), a0);
            s[j] = ATTN__SFX(attn__vsum)(ATTN__VADD(ATTN__VADD(a0, a1), ATTN__VADD(a2, a3)));
            for (; c < dk; ++c) s[j] += qs[c] * attn__load_as(k_j, c, kt);
        }
        if (j < n_pv) {
            const void *v_j = attn__row_as(v, vt, v_rs, j);
            const ATTN__V pj = ATTN__VSET1(p[j]);
            if (c_reg) {
                r0 = ATTN__VFMA(pj, ATTN__SFX(attn__vload_as)(v_j, 0, vt), r0);
                r1 = ATTN__VFMA(pj, ATTN__SFX(attn__vload_as)(v_j, ATTN__W, vt), r1);
                r2 = ATTN__VFMA(pj, ATTN__SFX(attn__vload_as)(v_j, 2 * ATTN__W, vt), r2);
                r3 = ATTN__VFMA(pj, ATTN__SFX(attn__vload_as)(v_j, 3 * ATTN__W, vt), r3);
            }
            if (c_reg > 4 * ATTN__W) {
                r4 = ATTN__VFMA(pj, ATTN__SFX(attn__vload_as)(v_j, 4 * ATTN__W, vt), r4);
                r5 = ATTN__VFMA(pj, ATTN__SFX(attn__vload_as)(v_j, 5 * ATTN__W, vt), r5);
                r6 = ATTN__VFMA(pj, ATTN__SFX(attn__vload_as)(v_j, 6 * ATTN__W, vt), r6);
                r7 = ATTN__VFMA(pj, ATTN__SFX(attn__vload_as)(v_j, 7 * ATTN__W, vt), r7);
            }
            for (c = c_reg; c + ATTN__W <= dv; c += ATTN__W)
                ATTN__VSTORE(acc + c, ATTN__VFMA(pj, ATTN__SFX(attn__vload_as)(v_j, c, vt), ATTN__VLOAD(acc + c)));
            for (; c < dv; ++c) acc[c] += p[j] * attn__load_as(v_j, c, vt);
        }
    }
    if (c_reg && n_pv > 0) {
        ATTN__VSTORE(acc, r0);                ATTN__VSTORE(acc + ATTN__W, r1);
        ATTN__VSTORE(acc + 2 * ATTN__W, r2);  ATTN__VSTORE(acc + 3 * ATTN__W, r3);
    }
    if (c_reg > 4 * ATTN__W && n_pv > 0) {
        ATTN__VSTORE(acc + 4 * ATTN__W, r4);  ATTN__VSTORE(acc + 5 * ATTN__W, r5);
        ATTN__VSTORE(acc + 6 * ATTN__W, r6);  ATTN__VSTORE(acc + 7 * ATTN__W, r7);
    }
}

/* attn__scores_pv_as with the element types of h: one copy per type shared by K and V (the common case),
   with the types constant in it, and one for mixed types (a branch per load). */
static ATTN__TARGET void ATTN__SFX(attn__scores_pv)(const attn__head *h, float *s, const void *k, const float *qs,
                                                    int n_s, int pf_end, float *acc, const void *v, const float *p,
                                                    int n_pv)
{
    const attn_dtype kt = h->k_type, vt = h->v_type;
    if (kt == ATTN_F32 && vt == ATTN_F32)
        ATTN__SFX(attn__scores_pv_as)(s, k, h->k_rs, qs, h->dk, n_s, pf_end, acc, v, h->v_rs, p, n_pv, h->dv, ATTN_F32, ATTN_F32);
    else if (kt == ATTN_F16 && vt == ATTN_F16)
        ATTN__SFX(attn__scores_pv_as)(s, k, h->k_rs, qs, h->dk, n_s, pf_end, acc, v, h->v_rs, p, n_pv, h->dv, ATTN_F16, ATTN_F16);
    else if (kt == ATTN_BF16 && vt == ATTN_BF16)
        ATTN__SFX(attn__scores_pv_as)(s, k, h->k_rs, qs, h->dk, n_s, pf_end, acc, v, h->v_rs, p, n_pv, h->dv, ATTN_BF16, ATTN_BF16);
    else if (kt == ATTN_Q8 && vt == ATTN_Q8)
        ATTN__SFX(attn__scores_pv_as)(s, k, h->k_rs, qs, h->dk, n_s, pf_end, acc, v, h->v_rs, p, n_pv, h->dv, ATTN_Q8, ATTN_Q8);
    else
        ATTN__SFX(attn__scores_pv_as)(s, k, h->k_rs, qs, h->dk, n_s, pf_end, acc, v, h->v_rs, p, n_pv, h->dv, kt, vt);
}

/* The grouped decoding kernel: ATTN__GH heads per register block (16 accumulators of scores with 32
   registers, 8 with 16); the scores of ATTN__GSTEP keys, then their P.V (1 thread, the attention of
   decode_layer from DRAM: 2.5 ms with steps of 2 keys, 2.3 with 4, 2.4 with 8, 2.9 with 16, Zen 4). */
#define ATTN__GH (ATTN__NV == 4 ? 4 : 2)
#define ATTN__GSTEP 4

/* s_r[j] = qs_r . k_j for the nh heads r < nh (1, 2 or 4 <= ATTN__GH, a constant once inlined), s_r = s + r TK
   and qs_r = qs + r Dk: each K vector loaded once for all of them. Each head's sum is that of
   attn__scores_pv_as: the same four chains (vector c of the row into chain c % 4), the same lane sum and
   scalar tail, so the same float. */
#define ATTN__DOT_ACC(r) ATTN__V a##r##0 = ATTN__VZERO, a##r##1 = ATTN__VZERO, a##r##2 = ATTN__VZERO, a##r##3 = ATTN__VZERO
#define ATTN__DOT_FMA4(r)                                                                                          \
    a##r##0 = ATTN__VFMA(ATTN__VLOAD(q##r + c), k0, a##r##0);                                                   \
    a##r##1 = ATTN__VFMA(ATTN__VLOAD(q##r + c + ATTN__W), k1, a##r##1);                                         \
    a##r##2 = ATTN__VFMA(ATTN__VLOAD(q##r + c + 2 * ATTN__W), k2, a##r##2);                                     \
    a##r##3 = ATTN__VFMA(ATTN__VLOAD(q##r + c + 3 * ATTN__W), k3, a##r##3)
#define ATTN__DOT_SUM(r)                                                                                           \
    s[r * ATTN__TK + j] = ATTN__SFX(attn__vsum)(ATTN__VADD(ATTN__VADD(a##r##0, a##r##1), ATTN__VADD(a##r##2, a##r##3))); \
    for (t = c; t < dk; ++t) s[r * ATTN__TK + j] += q##r[t] * attn__load_as(k_j, t, kt)
static ATTN__TARGET inline __attribute__((always_inline)) void ATTN__SFX(attn__dot_heads)(
    float *s, int j, const void *k_j, const float *qs, int dk, attn_dtype kt, const int nh)
{
    const float *q0 = qs, *q1 = qs + (nh > 1) * dk, *q2 = qs + (nh > 2) * 2 * dk, *q3 = qs + (nh > 3) * 3 * dk;
    int c, t;
    ATTN__DOT_ACC(0); ATTN__DOT_ACC(1); ATTN__DOT_ACC(2); ATTN__DOT_ACC(3);
    for (c = 0; c + 4 * ATTN__W <= dk; c += 4 * ATTN__W) {
        const ATTN__V k0 = ATTN__SFX(attn__vload_as)(k_j, c, kt), k1 = ATTN__SFX(attn__vload_as)(k_j, c + ATTN__W, kt);
        const ATTN__V k2 = ATTN__SFX(attn__vload_as)(k_j, c + 2 * ATTN__W, kt), k3 = ATTN__SFX(attn__vload_as)(k_j, c + 3 * ATTN__W, kt);
        ATTN__DOT_FMA4(0);
        if (nh > 1) { ATTN__DOT_FMA4(1); }
        if (nh > 2) { ATTN__DOT_FMA4(2); ATTN__DOT_FMA4(3); }
    }
    for (; c + ATTN__W <= dk; c += ATTN__W) {
        const ATTN__V k0 = ATTN__SFX(attn__vload_as)(k_j, c, kt);
        a00 = ATTN__VFMA(ATTN__VLOAD(q0 + c), k0, a00);
        if (nh > 1) a10 = ATTN__VFMA(ATTN__VLOAD(q1 + c), k0, a10);
        if (nh > 2) { a20 = ATTN__VFMA(ATTN__VLOAD(q2 + c), k0, a20); a30 = ATTN__VFMA(ATTN__VLOAD(q3 + c), k0, a30); }
    }
    ATTN__DOT_SUM(0);
    if (nh > 1) { ATTN__DOT_SUM(1); }
    if (nh > 2) { ATTN__DOT_SUM(2); ATTN__DOT_SUM(3); }
}
#undef ATTN__DOT_ACC
#undef ATTN__DOT_FMA4
#undef ATTN__DOT_SUM

/* acc_r += p_r[j] v_j for the nh heads r < nh (1, 2 or 4 <= ATTN__GH, a constant once inlined), acc_r = acc +
   r Dv, p_r = p + r TK: each V vector loaded once for the nh heads. Each acc element takes the one fused
   multiply-add per key of attn__scores_pv_as (or its scalar tail's expression): the same floats. One key at a
   time: blocks of 2 or 4 keys (one load and store of acc for several keys, the keys' V read across or row
   after row) ran 8.5 to 10 rather than 12.6 ns per head and key with K and V in L2, but from DRAM the
   attention of decode_layer took 3.5 to 3.7 ms rather than 2.3 (1 thread, Zen 4). */
#define ATTN__PV_ROW(r) ATTN__VSTORE(acc##r + c, ATTN__VFMA(p##r, x, ATTN__VLOAD(acc##r + c)))
static ATTN__TARGET inline __attribute__((always_inline)) void ATTN__SFX(attn__pv_heads)(
    float *acc, int dv, const void *v_j, const float *p, int j, attn_dtype vt, const int nh)
{
    float *acc0 = acc, *acc1 = acc + (nh > 1) * dv, *acc2 = acc + (nh > 2) * 2 * dv, *acc3 = acc + (nh > 3) * 3 * dv;
    const float pj0 = p[j], pj1 = p[(nh > 1) * ATTN__TK + j], pj2 = p[(nh > 2) * 2 * ATTN__TK + j];
    const float pj3 = p[(nh > 3) * 3 * ATTN__TK + j];
    const ATTN__V p0 = ATTN__VSET1(pj0), p1 = ATTN__VSET1(pj1), p2 = ATTN__VSET1(pj2), p3 = ATTN__VSET1(pj3);
    int c;
    for (c = 0; c + ATTN__W <= dv; c += ATTN__W) {
        const ATTN__V x = ATTN__SFX(attn__vload_as)(v_j, c, vt);
        ATTN__PV_ROW(0);
        if (nh > 1) { ATTN__PV_ROW(1); }
        if (nh > 2) { ATTN__PV_ROW(2); ATTN__PV_ROW(3); }
    }
    for (; c < dv; ++c) { /* the Dv % W tail */
        const float e = attn__load_as(v_j, c, vt);
        acc0[c] += pj0 * e;
        if (nh > 1) acc1[c] += pj1 * e;
        if (nh > 2) { acc2[c] += pj2 * e; acc3[c] += pj3 * e; }
    }
}
#undef ATTN__PV_ROW

/* attn__scores_pv_as for the g query heads (2 <= g <= ATTN__GROUP_MAX) of a kv group, K and V read once for
   all of them (decoding with grouped-query attention): s_r[j] = qs_r . k_j for each head r (j < n_s) and
   acc_r += p_r[j] v_j (j < n_pv), with s_r = s + r TK, p_r = p + r TK, qs_r = qs + r Dk and acc_r = acc + r Dv;
   ATTN__GSTEP keys of K, then of V: two sequential streams side by side, as there. Each head gets the sums
   of attn__scores_pv_as in the same order (attn__dot_heads, attn__pv_heads), so its results are bitwise
   those of a pass of its own. Heads in register blocks of ATTN__GH, then 2, then 1 (7 heads: 4 + 2 + 1 with
   32 registers); each row of K and V comes from memory for the first block, from L1 for the others. No
   software prefetch: K's 16 keys ahead, as attn__scores_pv_as asks for it, made the attention of
   decode_layer 0.5 ms slower (1 thread, Zen 4). (gcc 12 drops that one there: it takes
   attn__prefetch_bytes, a function of prefetches only, for one without effect and deletes its calls.) */
static ATTN__TARGET inline __attribute__((always_inline)) void ATTN__SFX(attn__scores_pv_group_as)(
    float *s, const void *k, ptrdiff_t k_rs, const float *qs, int dk, int n_s, float *acc, const void *v,
    ptrdiff_t v_rs, const float *p, int n_pv, int dv, int g, attn_dtype kt, attn_dtype vt)
{
    const int n = n_s > n_pv ? n_s : n_pv;
    int j0, j, r, nh;
    for (j0 = 0; j0 < n; j0 += ATTN__GSTEP) {
        for (j = j0; j < j0 + ATTN__GSTEP && j < n_s; ++j) {
            const void *k_j = attn__row_as(k, kt, k_rs, j);
            for (r = 0; r < g; r += nh) {
                float *s_r = s + r * ATTN__TK;
                const float *qs_r = qs + (ptrdiff_t)r * dk;
                nh = g - r >= ATTN__GH ? ATTN__GH : ATTN__GH > 2 && g - r >= 2 ? 2 : 1;
                if (nh == ATTN__GH) ATTN__SFX(attn__dot_heads)(s_r, j, k_j, qs_r, dk, kt, ATTN__GH);
                else if (nh == 2) ATTN__SFX(attn__dot_heads)(s_r, j, k_j, qs_r, dk, kt, 2);
                else ATTN__SFX(attn__dot_heads)(s_r, j, k_j, qs_r, dk, kt, 1);
            }
        }
        for (j = j0; j < j0 + ATTN__GSTEP && j < n_pv; ++j) {
            const void *v_j = attn__row_as(v, vt, v_rs, j);
            for (r = 0; r < g; r += nh) {
                float *acc_r = acc + (ptrdiff_t)r * dv;
                const float *p_r = p + r * ATTN__TK;
                nh = g - r >= ATTN__GH ? ATTN__GH : ATTN__GH > 2 && g - r >= 2 ? 2 : 1;
                if (nh == ATTN__GH) ATTN__SFX(attn__pv_heads)(acc_r, dv, v_j, p_r, j, vt, ATTN__GH);
                else if (nh == 2) ATTN__SFX(attn__pv_heads)(acc_r, dv, v_j, p_r, j, vt, 2);
                else ATTN__SFX(attn__pv_heads)(acc_r, dv, v_j, p_r, j, vt, 1);
            }
        }
    }
}

/* attn__scores_pv_group_as with the element types of h, one copy per type as attn__scores_pv. */
static ATTN__TARGET void ATTN__SFX(attn__scores_pv_group)(const attn__head *h, int g, float *s, const void *k,
                                                          const float *qs, int n_s, float *acc, const void *v,
                                                          const float *p, int n_pv)
{
    const attn_dtype kt = h->k_type, vt = h->v_type;
    if (kt == ATTN_F32 && vt == ATTN_F32)
        ATTN__SFX(attn__scores_pv_group_as)(s, k, h->k_rs, qs, h->dk, n_s, acc, v, h->v_rs, p, n_pv, h->dv, g, ATTN_F32, ATTN_F32);
    else if (kt == ATTN_F16 && vt == ATTN_F16)
        ATTN__SFX(attn__scores_pv_group_as)(s, k, h->k_rs, qs, h->dk, n_s, acc, v, h->v_rs, p, n_pv, h->dv, g, ATTN_F16, ATTN_F16);
    else if (kt == ATTN_BF16 && vt == ATTN_BF16)
        ATTN__SFX(attn__scores_pv_group_as)(s, k, h->k_rs, qs, h->dk, n_s, acc, v, h->v_rs, p, n_pv, h->dv, g, ATTN_BF16, ATTN_BF16);
    else if (kt == ATTN_Q8 && vt == ATTN_Q8)
        ATTN__SFX(attn__scores_pv_group_as)(s, k, h->k_rs, qs, h->dk, n_s, acc, v, h->v_rs, p, n_pv, h->dv, g, ATTN_Q8, ATTN_Q8);
    else
        ATTN__SFX(attn__scores_pv_group_as)(s, k, h->k_rs, qs, h->dk, n_s, acc, v, h->v_rs, p, n_pv, h->dv, g, kt, vt);
}

/* acc_tot[d] = acc_tot * a + acc, then acc = 0: a block of the blocked sums folded into the total. */
static ATTN__TARGET void ATTN__SFX(attn__fold)(float *acc_tot, float *acc, float a, int d)
{
    int c;
    for (c = 0; c + ATTN__W <= d; c += ATTN__W) {
        ATTN__VSTORE(acc_tot + c, ATTN__VFMA(ATTN__VLOAD(acc_tot + c), ATTN__VSET1(a), ATTN__VLOAD(acc + c)));
        ATTN__VSTORE(acc + c, ATTN__VZERO);
    }
    for (; c < d; ++c) { acc_tot[c] = acc_tot[c] * a + acc[c]; acc[c] = 0.0f; }
}

/* One query row i of the g query heads hs[0 .. g) of a kv group (g = 1: one head) against their visible
   keys, vectorised along d: the decoding kernel, for few queries, where the tile kernel's 64 query lanes
   would idle. Reads each K and V row once, whole, for all g heads, and keeps the instructions per key few
   (a cached key costs ~70 ns of DRAM time; the work on it must hide under that): the queries pre-scaled,
   software prefetch of K 16 keys ahead, and a tile's P.V computed beside the next tile's scores
   (attn__scores_pv, or attn__scores_pv_group for g > 1), so that K and V are read as two sequential streams
   side by side rather than a tile of K, then a tile of V. The running output is rescaled by the tile's
   alpha before that tile's terms are added to it; the sums are blocked as in attn__tile_forward_scalar (acc
   and l per block of ATTN__FOLD tiles, folded into acc_tot and l_tot), the max and sums in natural units.
   The heads of a group share everything of attn__head but out, q, mask, lse, ml, sink and alibi (each head's
   own: the score modifiers run per head), and hold no weights output when g > 1; each head's state and
   arithmetic is that of g = 1, so every head's results are bitwise those of a call of its own. */
static ATTN__TARGET void ATTN__SFX(attn__row_forward_group)(const attn__head *hs, int g, int i, float *ws)
{
    const attn__head *h = hs;                     /* the fields the heads share */
    const int key_end = attn__key_end(h, i, 1), dk = h->dk, dv = h->dv;
    float *s = ws;                                /* [g x TK] scores of a key tile, padded with -inf */
    float *p_prev = s + g * ATTN__TK;             /* [g x TK] the probabilities of the tile before */
    float *acc = p_prev + g * ATTN__TK;           /* [g x Dv] unnormalised output of the current block */
    float *acc_tot = acc + (ptrdiff_t)g * dv;     /* [g x Dv] unnormalised output of the blocks before */
    float *qs = acc_tot + (ptrdiff_t)g * dv;      /* [g x Dk] the scaled queries */
    float m[ATTN__GROUP_MAX], l[ATTN__GROUP_MAX], l_tot[ATTN__GROUP_MAX]; /* per head: max and sums, */
    float a_tot[ATTN__GROUP_MAX], inv[ATTN__GROUP_MAX], a_out[ATTN__GROUP_MAX]; /* rescales, 1 / sum */
    const void *v_prev = NULL;                    /* the V rows of the tile before, n_prev of them */
    int j0, pass, c, t, r, n_prev = 0;
    ATTN_ASSERT(g >= 1 && g <= ATTN__GROUP_MAX && (g == 1 || !h->w));
    for (r = 0; r < g; ++r) {
        const float *q_i = hs[r].q + (ptrdiff_t)i * hs[r].q_rs;
        float *qs_r = qs + (ptrdiff_t)r * dk;
        for (c = 0; c < dk; ++c) qs_r[c] = q_i[c] * h->scale;
        m[r] = -INFINITY; l[r] = 0.0f; l_tot[r] = 0.0f; a_tot[r] = 1.0f; inv[r] = 0.0f; a_out[r] = 1.0f;
    }
    memset(acc, 0, sizeof(float) * (size_t)g * (size_t)dv);
    memset(acc_tot, 0, sizeof(float) * (size_t)g * (size_t)dv);
    /* pass 0: online softmax and output; pass 1 (only with weights, g = 1): the normalised weights */
    for (pass = 0; pass < (h->w ? 2 : 1); ++pass) {
        const int end = pass ? h->nk : key_end;
        for (j0 = pass ? 0 : attn__key_begin(h, i), t = 0; j0 < end; j0 += ATTN__TK, ++t) {
            const int tk = end - j0 < ATTN__TK ? end - j0 : ATTN__TK;
            const int tv = key_end - j0 < tk ? (key_end - j0 < 0 ? 0 : key_end - j0) : tk; /* visible */
            const void *k_t = attn__row_as(h->k, h->k_type, h->k_rs, j0), *v_t = attn__row_as(h->v, h->v_type, h->v_rs, j0);
            float *tmp;
            /* this tile's scores, and the P.V of the tile before (none in the weights pass) */
            if (g == 1) ATTN__SFX(attn__scores_pv)(h, s, k_t, qs, tv, key_end - j0, acc, v_prev, p_prev, n_prev);
            else ATTN__SFX(attn__scores_pv_group)(h, g, s, k_t, qs, tv, acc, v_prev, p_prev, n_prev);
            for (r = 0; r < g; ++r) { /* each head's scores into probabilities, and its state */
                const attn__head *h_r = hs + r;
                float *s_r = s + r * ATTN__TK, *acc_r = acc + (ptrdiff_t)r * dv;
                float m_new = m[r], mu, sum, alpha = 1.0f;
                ATTN__V vsum = ATTN__VZERO;
                int j;
                if (h->softcap > 0.0f) ATTN__SFX(attn__softcap)(s_r, tv, h->softcap);
                if (h_r->alibi != 0.0f) /* key j0 + j at distance |j0 - i - diag0 + j| */
                    ATTN__SFX(attn__alibi)(s_r, tv, h_r->alibi, (long long)j0 - i - h->diag0);
                if (h_r->mask)
                    for (j = 0; j < tv; ++j) s_r[j] += h_r->mask[(ptrdiff_t)i * h_r->mask_rs + j0 + j];
                if (h->kpm)
                    for (j = 0; j < tv; ++j) s_r[j] = h->kpm[j0 + j] ? -INFINITY : s_r[j];
                if (h->lower) /* the window's left edge: keys j0 + j < i + diag_lo hidden */
                    for (j = 0; j < tv && (long long)j0 + j < (long long)i + h->diag_lo; ++j) s_r[j] = -INFINITY;
                for (j = tv; j < ATTN__TK; ++j) s_r[j] = -INFINITY;
                if (pass == 0) {
                    const float m_tile = attn__row_max(s_r, tv);
                    m_new = m_tile > m[r] ? m_tile : m[r];
                    alpha = m_new == m[r] ? 1.0f : expf(m[r] - m_new);
                }
                mu = m_new == -INFINITY ? 0.0f : m_new;
                for (j = 0; j < ATTN__TK; j += ATTN__W) { /* p = e^(s - m); the -inf padding gives 0 */
                    const ATTN__V x = ATTN__VLOAD(s_r + j);
                    ATTN__V p = ATTN__SFX(attn__vexp)(ATTN__VSUB(x, ATTN__VSET1(mu)));
                    if (m_new == INFINITY) p = ATTN__VBLEND(ATTN__VEQ(x, ATTN__VSET1(INFINITY)), p, ATTN__VSET1(1.0f));
                    ATTN__VSTORE(s_r + j, p);
                    vsum = ATTN__VADD(vsum, p);
                }
                if (pass == 1) {
                    float *w_i = h->w + (ptrdiff_t)i * h->nk + j0;
                    for (j = 0; j < tk; ++j) w_i[j] = h->w_accumulate ? w_i[j] + s_r[j] * inv[r] : s_r[j] * inv[r];
                    continue;
                }
                sum = ATTN__SFX(attn__vsum)(vsum);
                l[r] = l[r] * alpha + sum;
                a_tot[r] *= alpha;
                m[r] = m_new;
                /* acc = alpha acc + sum_j p_j v_j: acc (through the tile before) times alpha now, the sum
                   beside the next tile's scores */
                for (c = 0; c + ATTN__W <= dv && alpha != 1.0f; c += ATTN__W)
                    ATTN__VSTORE(acc_r + c, ATTN__VMUL(ATTN__VLOAD(acc_r + c), ATTN__VSET1(alpha)));
                for (; c < dv && alpha != 1.0f; ++c) acc_r[c] *= alpha;
                if (t % ATTN__FOLD == ATTN__FOLD - 1) { /* fold the block (its last P.V is still to come: harmless) */
                    ATTN__SFX(attn__fold)(acc_tot + (ptrdiff_t)r * dv, acc_r, a_tot[r], dv);
                    l_tot[r] = l_tot[r] * a_tot[r] + l[r];
                    l[r] = 0.0f; a_tot[r] = 1.0f;
                }
            }
            if (pass == 1) continue;
            tmp = p_prev; p_prev = s; s = tmp; v_prev = v_t; n_prev = tv;
        }
        if (n_prev > 0) { /* the last tile's P.V (no scores) */
            if (g == 1) ATTN__SFX(attn__scores_pv)(h, s, h->k, qs, 0, 0, acc, v_prev, p_prev, n_prev);
            else ATTN__SFX(attn__scores_pv_group)(h, g, s, h->k, qs, 0, acc, v_prev, p_prev, n_prev);
        }
        n_prev = 0;
        for (r = 0; r < g; ++r) {
            if (pass == 0) {
                ATTN__SFX(attn__fold)(acc_tot + (ptrdiff_t)r * dv, acc + (ptrdiff_t)r * dv, a_tot[r], dv);
                l_tot[r] = l_tot[r] * a_tot[r] + l[r];
                a_out[r] = hs[r].ml ? 1.0f : attn__sink(&m[r], &l_tot[r], hs[r].sink); /* the sink joins the max and sum */
            }
            inv[r] = attn__inv_sum(l_tot[r]);
        }
    }
    for (r = 0; r < g; ++r) {
        const attn__head *h_r = hs + r;
        const float *tot_r = acc_tot + (ptrdiff_t)r * dv;
        float *o_i = h_r->out + (ptrdiff_t)i * h_r->out_rs;
        const float f = h_r->ml ? 1.0f : a_out[r] * inv[r];
        for (c = 0; c < dv; ++c) o_i[c] = tot_r[c] * f;
        attn__row_stats(h_r, i, m[r], l_tot[r]);
    }
}

/* One query row i of one head: the decoding kernel on a group of one (the tile kernel's rows). */
static ATTN__TARGET void ATTN__SFX(attn__row_forward)(const attn__head *h, int i, float *ws)
{
    ATTN__SFX(attn__row_forward_group)(h, 1, i, ws);
}

/* Every query row of the g heads hs[0 .. g) of a kv group, at most ATTN__ROW_MAX rows (decoding; a key
   chunk's heads alike): attn__sdpa_run's work item for GQA decoding, each K and V row read once per row. */
static ATTN__TARGET void ATTN__SFX(attn__group_forward)(const attn__head *hs, int g, float *ws)
{
    int i;
    ATTN_ASSERT(hs->nq <= ATTN__ROW_MAX);
    for (i = 0; i < hs->nq; ++i) ATTN__SFX(attn__row_forward_group)(hs, g, i, ws);
}

/* dst [cols x rows] = the transpose of src [rows x cols] with column c times col_scale[c] (col_scale NULL:
   times scale): W x W blocks through the registers (ATTN__TRANSPOSE), the edges one float at a time. The
   same one multiply per float either way. Packs Q^T and writes the output of a query tile (as scalar loops
   these took 5-7% more time at N = 512 and 1-3% at N = 2048, D = 64; git log has the runs). */
static ATTN__TARGET void ATTN__SFX(attn__transpose)(float *dst, ptrdiff_t dst_rs, const float *src, ptrdiff_t src_rs,
                                                   int rows, int cols, const float *col_scale, float scale)
{
    int r0, c0, r, c;
    for (c0 = 0; c0 < cols; c0 += ATTN__W)
        for (r0 = 0; r0 < rows; r0 += ATTN__W) {
            if (r0 + ATTN__W <= rows && c0 + ATTN__W <= cols) {
                ATTN__TRANSPOSE(dst + (ptrdiff_t)c0 * dst_rs + r0, dst_rs, src + (ptrdiff_t)r0 * src_rs + c0, src_rs,
                                col_scale ? ATTN__VLOAD(col_scale + c0) : ATTN__VSET1(scale));
                continue;
            }
            for (c = c0; c < cols && c < c0 + ATTN__W; ++c)
                for (r = r0; r < rows && r < r0 + ATTN__W; ++r)
                    dst[(ptrdiff_t)c * dst_rs + r] = src[(ptrdiff_t)r * src_rs + c] * (col_scale ? col_scale[c] : scale);
        }
}

/* A block of the tile kernel's blocked sums folded into the totals, per query lane i:
   O_tot^T[c][i] = O_tot^T[c][i] a_tot[i] + O^T[c][i] for c < dv, l_tot[i] = l_tot[i] a_tot[i] + l[i], a_tot = 1. */
static ATTN__TARGET void ATTN__SFX(attn__fold_t)(float *o_tot, const float *o_t, float *l_tot, const float *l,
                                                 float *a_tot, int dv)
{
    int c, v;
    for (c = 0; c < dv; ++c)
        for (v = 0; v < ATTN__TQ; v += ATTN__W)
            ATTN__VSTORE(o_tot + c * ATTN__TQ + v, ATTN__VFMA(ATTN__VLOAD(o_tot + c * ATTN__TQ + v), ATTN__VLOAD(a_tot + v),
                                                              ATTN__VLOAD(o_t + c * ATTN__TQ + v)));
    for (v = 0; v < ATTN__TQ; v += ATTN__W) {
        ATTN__VSTORE(l_tot + v, ATTN__VFMA(ATTN__VLOAD(l_tot + v), ATTN__VLOAD(a_tot + v), ATTN__VLOAD(l + v)));
        ATTN__VSTORE(a_tot + v, ATTN__VSET1(1.0f));
    }
}

/* One query tile [i0, i0 + ATTN__TQ) of one head: pack Q^T, walk the visible key tiles with the online
   softmax (running max m and sum l per query, natural units), then normalise and write out. The sums
   over keys are blocked as in attn__tile_forward_scalar: O^T and l per block of ATTN__FOLD key tiles,
   folded into O_tot^T and l_tot (one pass over O^T per block: ~0.15% of the instructions of a block). */
static ATTN__TARGET void ATTN__SFX(attn__tile_forward)(const attn__head *h, int i0, float *ws)
{
    const int tq = h->nq - i0 < ATTN__TQ ? h->nq - i0 : ATTN__TQ;
    const int key_end = attn__key_end(h, i0, tq);
    float *q_t = ws;                              /* [Dk x TQ] scaled queries, transposed */
    float *s_t = q_t + h->dk * ATTN__TQ;          /* [TK x TQ] scores, then probabilities */
    float *o_t = s_t + ATTN__TK * ATTN__TQ;       /* [Dv x TQ] unnormalised output of the block, transposed */
    float *o_tot = o_t + h->dv * ATTN__TQ;        /* [Dv x TQ] unnormalised output of the blocks before */
    float *m = o_tot + h->dv * ATTN__TQ;          /* [TQ] running max */
    float *l = m + ATTN__TQ;                      /* [TQ] running sum of the block */
    float *l_tot = l + ATTN__TQ;                  /* [TQ] running sum of the blocks before */
    float *a_tot = l_tot + ATTN__TQ;              /* [TQ] rescale of the totals since the last fold */
    float *alpha = a_tot + ATTN__TQ;              /* [TQ] rescale of the running state */
    float *sum = alpha + ATTN__TQ;                /* [TQ] column sums of a tile; at the end 1 / l_tot */
    int i, c, j0, v, rows, t;
    if (tq <= ATTN__ROW_MAX) {
        for (i = 0; i < tq; ++i) ATTN__SFX(attn__row_forward)(h, i0 + i, ws);
        return;
    }
    ATTN__SFX(attn__transpose)(q_t, ATTN__TQ, h->q + (ptrdiff_t)i0 * h->q_rs, h->q_rs, tq, h->dk, NULL,
                               h->bf16dot ? 1.0f : h->scale);
    for (c = 0; c < h->dk; ++c) /* the padding queries of a last tile: zero */
        for (i = tq; i < ATTN__TQ; ++i) q_t[c * ATTN__TQ + i] = 0.0f;
#ifdef ATTN__BF16DOT
    if (h->bf16dot) attn__pack_pairs_bf16(q_t, q_t, h->dk); /* [Dk/2 x TQ] pairs, in place (exact: bfloat16 values) */
#endif
    for (i = 0; i < ATTN__TQ; ++i) { m[i] = -INFINITY; l[i] = 0.0f; l_tot[i] = 0.0f; a_tot[i] = 1.0f; }
    memset(o_tot, 0, sizeof(float) * (size_t)h->dv * ATTN__TQ);
    for (j0 = attn__key_begin(h, i0), t = 0; j0 < key_end; j0 += ATTN__TK, ++t) {
        const int tk = key_end - j0 < ATTN__TK ? key_end - j0 : ATTN__TK;
        const int first = t % ATTN__FOLD == 0;
        const float *v_t;
        ptrdiff_t v_rs;
        ATTN__SFX(attn__score_tile_t)(s_t, h, q_t, i0, tq, j0, tk);
        for (v = 0; v < ATTN__TQ; v += ATTN__W) { /* new running max, and the rescale of the old state */
            const ATTN__V m_old = ATTN__VLOAD(m + v);
            ATTN__V m_new, m1 = m_old, m2 = m_old, m3 = m_old, a;
            const float *s_v = s_t + v;
            int j;
            /* four chains (one would wait on the max's latency at every key); NaN scores are ignored */
            for (m_new = m_old, j = 0; j + 4 <= tk; j += 4, s_v += 4 * ATTN__TQ) {
                m_new = ATTN__VMAX(ATTN__VLOAD(s_v), m_new);                m1 = ATTN__VMAX(ATTN__VLOAD(s_v + ATTN__TQ), m1);
                m2 = ATTN__VMAX(ATTN__VLOAD(s_v + 2 * ATTN__TQ), m2);       m3 = ATTN__VMAX(ATTN__VLOAD(s_v + 3 * ATTN__TQ), m3);
            }
            for (; j < tk; ++j, s_v += ATTN__TQ) m_new = ATTN__VMAX(ATTN__VLOAD(s_v), m_new);
            m_new = ATTN__VMAX(ATTN__VMAX(m_new, m1), ATTN__VMAX(m2, m3));
            a = ATTN__VBLEND(ATTN__VEQ(m_old, m_new), ATTN__SFX(attn__vexp)(ATTN__VSUB(m_old, m_new)), ATTN__VSET1(1.0f));
            ATTN__VSTORE(alpha + v, a);
            ATTN__VSTORE(a_tot + v, ATTN__VMUL(ATTN__VLOAD(a_tot + v), a));
            ATTN__VSTORE(m + v, m_new);
        }
        ATTN__SFX(attn__exp_cols)(s_t, tk, m, sum);
        for (v = 0; v < ATTN__TQ; v += ATTN__W)
            ATTN__VSTORE(l + v, first ? ATTN__VLOAD(sum + v) : ATTN__VFMA(ATTN__VLOAD(l + v), ATTN__VLOAD(alpha + v), ATTN__VLOAD(sum + v)));
#ifdef ATTN__BF16DOT
        if (h->bf16dot) { /* P^T and V in pairs of keys (P rounded to bfloat16 here only), then the same sum */
            attn__pack_pairs_bf16(h->k_buf, s_t, tk);
            attn__pack_v_bf16((unsigned *)(void *)h->v_buf, (const unsigned short *)h->v + (ptrdiff_t)j0 * h->v_rs, h->v_rs, tk, h->dv);
            for (c = 0; c < h->dv; c += rows) {
                rows = ATTN__BLOCK_ROWS(h->dv - c);
                attn__dot_tile_bf16(o_t + c * ATTN__TQ, (const unsigned short *)(const void *)h->v_buf + 2 * c, 2, 2 * (ptrdiff_t)h->dv,
                                    h->k_buf, (tk + 1) / 2, rows, !first, alpha, 1.0f);
            }
        } else
#endif
        for (v_t = attn__v_rows(h, j0, tk, &v_rs), c = 0; c < h->dv; c += rows) { /* O^T[c][:] = alpha O^T[c][:] + sum_j V[j][c] * P^T[j][:] (a block's first: = the sum) */
            rows = ATTN__BLOCK_ROWS(h->dv - c);
            for (v = 0; v < ATTN__TQ; v += ATTN__NB)
                ATTN__SFX(attn__kernel_t)(o_t + c * ATTN__TQ + v, v_t + c, v_rs, 1,
                                          s_t + v, tk, rows, !first, alpha + v);
        }
        if (t % ATTN__FOLD == ATTN__FOLD - 1 || key_end - j0 <= ATTN__TK)
            ATTN__SFX(attn__fold_t)(o_tot, o_t, l_tot, l, a_tot, h->dv);
    }
    if (h->sink && !h->ml) /* the sink joins each row's max and sum; a_tot rescales the output to the new max */
        for (i = 0; i < ATTN__TQ; ++i) a_tot[i] = attn__sink(&m[i], &l_tot[i], h->sink);
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
                const float inv = attn__inv_sum(l_tot[i]);
                for (j = 0; j < tk; ++j) {
                    const float p = j < tv ? s_t[j * ATTN__TQ + i] * inv : 0.0f;
                    w_i[j] = h->w_accumulate ? w_i[j] + p : p;
                }
            }
        }
    }
    for (i = 0; i < ATTN__TQ; ++i) sum[i] = h->ml ? 1.0f : a_tot[i] * attn__inv_sum(l_tot[i]); /* out = O^T / l */
    ATTN__SFX(attn__transpose)(h->out + (ptrdiff_t)i0 * h->out_rs, h->out_rs, o_tot, ATTN__TQ, h->dv, tq, sum, 0.0f);
    for (i = 0; i < tq; ++i) attn__row_stats(h, i0 + i, m[i], l_tot[i]);
}

#undef ATTN__NB
#undef ATTN__GH
#undef ATTN__KC
#undef ATTN__KC_PACKED
/* the parameters of this instantiation, so that the next one can define its own */
#undef ATTN__TEMPLATE
#undef ATTN__SFX
#undef ATTN__TARGET
#undef ATTN__P
#undef ATTN__V
#undef ATTN__W
#undef ATTN__NV
#undef ATTN__VROUND
#undef ATTN__VLDEXP_Z
#undef ATTN__M
#undef ATTN__VEQ
#undef ATTN__VLT
#undef ATTN__VBLEND
#undef ATTN__VANY
#undef ATTN__VSUM
#undef ATTN__VLOAD_F16
#undef ATTN__VLOAD_BF16
#undef ATTN__VLOAD_Q8
#undef ATTN__TRANSPOSE
#undef ATTN__PREFETCH
#undef ATTN__PREFETCH_L2
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
