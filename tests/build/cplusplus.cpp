// Build check: the header, implementation included, compiled as C++ (extern "C", no C-only syntax),
// then one fused attention call: out of one query over two keys with equal scores is the mean of V.
// Option structs are value-initialised as the README tells C++ users (`opt{}`, `= {}`): `= {0}` draws
// -Wmissing-field-initializers from g++ -Wextra. The error hook is defined too, to check that it
// compiles as C++.
#include <cstdio>
#define ATTN_ERROR_HOOK(func, code, arg, rule) \
    std::fprintf(stderr, "%s: %s: %s: %s\n", func, attn_result_string(code), arg, rule)
#define ATTENTION_IMPLEMENTATION
#include "../../attention.h"

int main()
{
    float q[2] = {1.0f, 0.0f}, k[4] = {0.0f, 1.0f, 0.0f, -1.0f}, v[4] = {1.0f, 2.0f, 3.0f, 4.0f}, out[2];
    float lse[1] = {0.0f};
    attn_dims d = {1, 1, 0, 1, 2, 2, 0};
    attn_stride q_s = attn_stride_bhnd(1, 1, 2), kv_s = attn_stride_bhnd(1, 2, 2);
    attn_options opt{};
    attn_options plain = {};
    opt.out_lse = lse;
    attn_result r = attn_sdpa(out, q_s, q, q_s, k, kv_s, v, kv_s, &d, &opt, nullptr, 0);
    std::printf("c++ check: %s, out = [%.3f %.3f] (want [2.000 3.000])\n", attn_result_string(r), out[0], out[1]);
    if (r != ATTN_OK || out[0] != 2.0f || out[1] != 3.0f) return 1;
    r = attn_sdpa(out, q_s, q, q_s, k, kv_s, v, kv_s, &d, &plain, nullptr, 0);
    return r == ATTN_OK && out[0] == 2.0f && out[1] == 3.0f ? 0 : 1;
}
