/* runners_attention.c: fixture cases -> attention ops. NOT YET WRITTEN. */
#include "harness.h"

const op_runner runners_attention[] = {
    {AG_OP_COUNT, NULL},
};
