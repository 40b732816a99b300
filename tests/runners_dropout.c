/* runners_dropout.c: fixture cases -> dropout ops. NOT YET WRITTEN. */
#include "harness.h"

const op_runner runners_dropout[] = {
    {AG_OP_COUNT, NULL},
};
