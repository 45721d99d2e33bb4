/* Build check: the implementation in this translation unit, a second one (link_other.c) that only
   includes the header; linked together they must give one definition of each function. */
#include <stdio.h>
#define ATTENTION_IMPLEMENTATION
#include "../../attention.h"

float link_other_softmax_first(void);

int main(void)
{
    const float p0 = link_other_softmax_first();
    printf("link check: softmax([0, log 3])[0] = %.4f (want 0.2500)\n", p0);
    return p0 > 0.2499f && p0 < 0.2501f ? 0 : 1;
}
