/* runners_loss.c: fixture cases -> loss ops. NOT YET WRITTEN. */
#include "harness.h"

const op_runner runners_loss[] = {
    {AG_OP_COUNT, NULL},
};
