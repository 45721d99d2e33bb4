/* Build check: the second translation unit of the ATTN_STATIC check (see static_a.c). */
#define ATTN_STATIC
#define ATTENTION_IMPLEMENTATION
#include "../../attention.h"

int static_b_check(void);

int static_b_check(void)
{
    return attn_result_string(ATTN_ERR_NULL)[0] != '\0';
}
