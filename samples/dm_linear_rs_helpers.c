// SPDX-License-Identifier: GPL-2.0
/* The dm layer's C glue, built into the sample module too. */
#define DMMR_NO_KCOPYD_THROTTLE
#define DMMR_NO_IO_BALANCE_PARAM
#include "../src/dm/helpers.c"
