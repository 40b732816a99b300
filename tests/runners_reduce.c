/* runners_reduce.c: fixture cases -> reduce ops. NOT YET WRITTEN. */
#include "harness.h"

const op_runner runners_reduce[] = {
    {AG_OP_COUNT, NULL},
};
