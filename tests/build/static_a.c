/* Build check: ATTN_STATIC with the implementation in two translation units (static_a.c, static_b.c)
   linked into one program: each gets private copies, nothing clashes. */
#include <stdio.h>
#define ATTN_STATIC
#define ATTENTION_IMPLEMENTATION
#include "../../attention.h"

int static_b_check(void);

int main(void)
{
    float s[2] = {0.0f, 1.0986123f}, p[2];
    const int ok = attn_softmax(p, 2, s, 2, 1, 2, NULL) == ATTN_OK && p[0] > 0.2499f && p[0] < 0.2501f;
    printf("static check: %s\n", ok && static_b_check() ? "ok" : "FAILED");
    return ok && static_b_check() ? 0 : 1;
}
