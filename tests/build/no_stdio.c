/* Build check: ATTN_NO_STDIO leaves <stdio.h> out of the header (this file includes no stdio either);
   the pictures still stream through a callback: a 2 x 2 PGM is its 11-byte header and 4 pixels. */
#define ATTN_NO_STDIO
#define ATTENTION_IMPLEMENTATION
#include "../../attention.h"

static size_t g_bytes;

static int count_bytes(void *user, const void *data, size_t bytes)
{
    (void)user;
    (void)data;
    g_bytes += bytes;
    return 0;
}

int main(void)
{
    const float m[4] = {0.0f, 1.0f, 2.0f, 3.0f};
    attn_image_options o = {0};
    o.format = ATTN_IMAGE_PGM;
    return attn_image_write(count_bytes, NULL, m, 2, 2, 2, &o) == ATTN_OK && g_bytes == 11 + 4 ? 0 : 1;
}
