/* runners_shape.c: fixture cases -> shape ops. NOT YET WRITTEN. */
#include "harness.h"

const op_runner runners_shape[] = {
    {AG_OP_COUNT, NULL},
};
