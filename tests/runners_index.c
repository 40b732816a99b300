/* runners_index.c: fixture cases -> index ops. NOT YET WRITTEN. */
#include "harness.h"

const op_runner runners_index[] = {
    {AG_OP_COUNT, NULL},
};
