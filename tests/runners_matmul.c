/* runners_matmul.c: fixture cases -> matmul ops. NOT YET WRITTEN. */
#include "harness.h"

const op_runner runners_matmul[] = {
    {AG_OP_COUNT, NULL},
};
