// SPDX-License-Identifier: GPL-2.0
/*
 * The dm layer's C glue, built into the sample module too, without what
 * only a target with a region hash (and a mirror's parameters) needs: so
 * the sample depends on dm-mod alone.
 */
#define DMMR_NO_KCOPYD_THROTTLE
#define DMMR_NO_IO_BALANCE_PARAM
#define DMMR_NO_REGION_HASH
#include "../src/dm/helpers.c"
