#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The dm layer's sample target (samples/linear.rs, no unsafe of its own):
# `linear_rs` against the kernel's dm-linear in the same boot, table for
# table and byte for byte: the same data through both at several offsets,
# the same table string (but the name), flushes and discards
# passed on, the same malformed lines refused (with a log line, no device
# left), and unload.
#
# Runs in the guest: scripts/vm-run tests/guest/sample-linear.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
[ -f /dmmr/dm_linear_rs.ko ] ||
	ktap_skip_all "no /dmmr/dm_linear_rs.ko (make module builds it)"

ktap_plan 26

ktap_check "dm-linear is there (modprobe dm_mod)" modprobe dm_mod
ktap_check "the sample loads (modprobe dm_linear_rs)" modprobe dm_linear_rs
ktap_check "target 'linear_rs' v1.5.0 registered" \
	bash -c 'dmsetup targets | grep -Eq "^linear_rs +v1\.5\.0$"'

L0=$(mk_loop 16)
M0=$(dev_majmin "$L0")
SECTORS=16384 # 8 MiB of the 16 MiB loop device

md5() { md5sum | cut -d' ' -f1; }

# One table per offset: the C target and the sample over the same sectors.
for offset in 0 2048 12345; do
	ktap_check "create linear and linear_rs at offset $offset" bash -c "
		dmsetup --noudevsync create c$offset --table '0 $SECTORS linear $L0 $offset' &&
		dmsetup --noudevsync create r$offset --table '0 $SECTORS linear_rs $L0 $offset'"
	ktap_check_eq "offset $offset: the same table (but the name)" \
		"$(dm table c$offset | sed 's/ linear / T /')" \
		"$(dm table r$offset | sed 's/ linear_rs / T /')"
	dd if=/dev/urandom of="$DMMR_WORK/p$offset" bs=64k count=128 status=none
	want=$(md5 <"$DMMR_WORK/p$offset")
	ktap_check "offset $offset: write 8 MiB through linear_rs (O_DIRECT, bs 64k)" \
		dd if="$DMMR_WORK/p$offset" of=/dev/mapper/r$offset bs=64k oflag=direct status=none
	ktap_check_eq "offset $offset: dm-linear reads the same bytes back" "$want" \
		"$(dd if=/dev/mapper/c$offset bs=4k iflag=direct status=none | md5)"
	ktap_check_eq "offset $offset: the loop device holds them at the offset" "$want" \
		"$(dd if="$L0" bs=512 skip=$offset count=$SECTORS iflag=direct status=none | md5)"
done

# Unaligned and odd-sized I/O, written by the C target, read by the sample.
dd if=/dev/urandom of="$DMMR_WORK/odd" bs=512 count=77 status=none
ktap_check "dm-linear writes 77 sectors at sector 1001" \
	dd if="$DMMR_WORK/odd" of=/dev/mapper/c12345 bs=512 seek=1001 oflag=direct status=none
ktap_check_eq "linear_rs reads them back" "$(md5 <"$DMMR_WORK/odd")" \
	"$(dd if=/dev/mapper/r12345 bs=512 skip=1001 count=77 iflag=direct status=none | md5)"
ktap_check "flush (fsync) through linear_rs" sync /dev/mapper/r0
ktap_check "discard through linear_rs" blkdiscard -o 0 -l 1048576 /dev/mapper/r0

# Malformed lines: refused like dm-linear, with the reason logged.
bad() { ktap_rejects_table "device-mapper: (table|linear_rs): .*$1" "0 $SECTORS linear_rs $2" "$2"; }
bad "Invalid argument count" "$L0"
bad "Invalid device sector" "$L0 12x"
bad "Device lookup failed" "/dev/nonexistent 0"

for offset in 0 2048 12345; do
	dm remove c$offset
	dm remove r$offset
done
ktap_check "unload the sample" modprobe -r dm_linear_rs
ktap_done
