/* A program that uses an installed (or added) attention.h as a user's project would: found through
 * pkg-config, CMake's find_package or add_subdirectory, never by a path into this repository. One
 * attn_sdpa over two queries and two keys of width 2, checked against the softmax worked out here. */
#include <math.h>
#include <stdio.h>
#define ATTENTION_IMPLEMENTATION
#include "attention.h"

int main(void)
{
    const float q[2 * 2] = {1, 0, 0, 1};
    const float k[2 * 2] = {1, 0, 0, 1};
    const float v[2 * 2] = {1, 2, 3, 4};
    float out[2 * 2];
    attn_dims dims = {0};
    attn_options opt = {0};
    attn_stride s = attn_stride_bhnd(1, 2, 2);
    attn_result r;
    int i, bad = 0;
    /* query i matches key i (score 1/sqrt(2)) and not the other (0): weight p on its own value row */
    double p = 1.0 / (1.0 + exp(-1.0 / sqrt(2.0)));
    double want[4];
    want[0] = p * 1 + (1 - p) * 3;
    want[1] = p * 2 + (1 - p) * 4;
    want[2] = (1 - p) * 1 + p * 3;
    want[3] = (1 - p) * 2 + p * 4;

    dims.batch = 1;
    dims.n_heads = 1;
    dims.n_q = 2;
    dims.n_kv = 2;
    dims.d_k = 2;
    r = attn_sdpa(out, s, q, s, k, s, v, s, &dims, &opt, NULL, 0);
    if (r != ATTN_OK) {
        fprintf(stderr, "consumer: attn_sdpa: %s\n", attn_result_string(r));
        return 1;
    }
    for (i = 0; i < 4; ++i)
        if (fabs(out[i] - want[i]) > 1e-5) {
            fprintf(stderr, "consumer: out[%d] = %.7f, expected %.7f\n", i, out[i], want[i]);
            bad = 1;
        }
    if (!bad) printf("consumer: attention.h %s, kernels %s: ok\n", ATTN_VERSION_STRING, attn_simd_name());
    return bad;
}
