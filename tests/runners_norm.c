/* runners_norm.c: fixture cases -> norm ops. NOT YET WRITTEN. */
#include "harness.h"

const op_runner runners_norm[] = {
    {AG_OP_COUNT, NULL},
};
