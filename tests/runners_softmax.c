/* runners_softmax.c: fixture cases -> softmax ops. NOT YET WRITTEN. */
#include "harness.h"

const op_runner runners_softmax[] = {
    {AG_OP_COUNT, NULL},
};
