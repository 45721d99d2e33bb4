/* Build check: declarations only (see link_main.c); the header included twice on purpose. */
#include "../../attention.h"
#include "../../attention.h"

float link_other_softmax_first(void);

float link_other_softmax_first(void)
{
    float s[2] = {0.0f, 1.0986123f}, p[2];
    return attn_softmax(p, 2, s, 2, 1, 2, NULL) == ATTN_OK ? p[0] : -1.0f;
}
