/* runners_elementwise.c: fixture cases -> elementwise ops. NOT YET WRITTEN. */
#include "harness.h"

const op_runner runners_elementwise[] = {
    {AG_OP_COUNT, NULL},
};
