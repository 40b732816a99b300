/* runners_rope.c: fixture cases -> rope ops. NOT YET WRITTEN. */
#include "harness.h"

const op_runner runners_rope[] = {
    {AG_OP_COUNT, NULL},
};
