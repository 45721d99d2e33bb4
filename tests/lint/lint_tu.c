/* The translation unit that cppcheck and clang-tidy analyse (make lint): the whole implementation, with
   every instruction set's kernels, and nothing else. */
#define ATTENTION_IMPLEMENTATION
#include "../../attention.h"
