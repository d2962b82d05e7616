#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Crash with writes behind, disk log: boot 1 makes leg 1 write-mostly with
# write-behind, delays its writes by 5 s, writes acknowledged data (which
# the fast leg has and the slow leg does not yet) and stops hard (sysrq b)
# with the copies still behind; boot 2 finds those regions dirty in the
# on-disk log, loads the same table, reads the acknowledged data through
# the mirror before and after the resync, and finds the legs identical.
#
# tests/run boots the guest twice with the same disk, passing the boot number.
# dmmr-needs: module
# dmmr-boots: 2
# dmmr-vm-disk: 64

. /dmmr/tests/lib.sh
need_module

phase=${1:?boot number}
. /dmmr/tests/crash-layout.sh
ACK_REGIONS=$((ACK_MB * 2048 / REGION))
TABLE="disk 2 /dev/mapper/clog $REGION 2 /dev/mapper/cleg0 0 /dev/mapper/cleg1 0 \
5 handle_errors write_mostly 1 max_write_behind 65536"
# Leg 1 is dm-delay over its part of the disk (no delay until asked).
DELAY_LEG1="0 $LEG_LEN delay $VDA $LEG1 0 $VDA $LEG1 0"

slow_writes() {
	dm suspend cleg1 &&
		dm reload cleg1 --table "0 $LEG_LEN delay $VDA $LEG1 0 $VDA $LEG1 $1" &&
		dm resume cleg1
}
behind_writes() {
	dmsetup message cm 0 io_balance show |
		awk '$1 == "behind" && $2 == 1 { print $5; f = 1 } END { if (!f) print 0 }'
}

if [ "$phase" = 1 ]; then
	ktap_plan 5
	ktap_check "load the module" modprobe dm_mirror_rs
	ktap_check "log and legs on /dev/vda (leg 1 through dm-delay)" layout "$DELAY_LEG1"
	ktap_check "disk-log mirror, leg 1 write-mostly, initial resync" \
		bash -c "dmsetup --noudevsync create cm --table '0 $LEG_LEN mirror $TABLE' && true"
	wait_for 120 mirror_in_sync cm
	slow_writes 5000
	dd if=/dev/urandom of="$DMMR_WORK/ack" bs=1M count=$ACK_MB status=none
	# The raw copy first, in 64 KiB writes: 512-byte ones took longer
	# under the debug kernel than the copies' delay, which then drained.
	ack() {
		dd if="$DMMR_WORK/ack" of=$VDA bs=64k seek=$((COPY * 512)) oflag=direct,seek_bytes \
			conv=fsync status=none &&
			dd if="$DMMR_WORK/ack" of=/dev/mapper/cm bs=64k oflag=direct conv=fsync status=none
	}
	ktap_check "a raw copy, then acknowledged writes of it to the first $ACK_MB MiB" ack
	n=$(behind_writes)
	ktap_check "the slow leg is behind at the crash ($n copies)" test "${n:-0}" -ge 1
	echo "# boot 1: stopping hard with copies behind"
	echo "# crash-behind: $KTAP_PASS passed, $KTAP_FAIL failed, 0 skipped"
	echo "DMMR-GUEST-EXIT: $KTAP_FAIL"
	sleep 1
	echo b >/proc/sysrq-trigger
	sleep 10
	exit 1
fi

ktap_plan 8
ktap_check "load the module" modprobe dm_mirror_rs
ktap_check "log and legs on /dev/vda again" layout "$DELAY_LEG1"
dirty_ack_regions() { log_clean_bits "$ACK_REGIONS" | awk '{ n += 1 - $1 } END { print n + 0 }'; }
dirty=$(dirty_ack_regions)
ack_md5=$(dd if=$VDA bs=512 skip=$COPY count=$((ACK_MB * 2048)) iflag=direct status=none | md5sum)
leg1_md5=$(dd if=/dev/mapper/cleg1 bs=1M count=$ACK_MB iflag=direct status=none | md5sum)
ktap_diag "slow leg already had the acknowledged data: $([ "$leg1_md5" = "$ack_md5" ] && echo yes || echo no)"
ktap_check_eq "every region of the acknowledged data is dirty in the log" \
	"$ACK_REGIONS" "$dirty"
ktap_check_eq "acknowledged data on the fast leg" "$ack_md5" \
	"$(dd if=/dev/mapper/cleg0 bs=1M count=$ACK_MB iflag=direct status=none | md5sum)"
ktap_check "the same table loads" dm create cm --table "0 $LEG_LEN mirror $TABLE"
ktap_check_eq "the mirror reads the acknowledged data at once" "$ack_md5" \
	"$(dd if=/dev/mapper/cm bs=1M count=$ACK_MB iflag=direct status=none | md5sum)"
ktap_check "resync completes" wait_for 120 mirror_in_sync cm
ktap_check_eq "the legs are identical" \
	"$(dd if=/dev/mapper/cleg0 bs=1M iflag=direct status=none | md5sum)" \
	"$(dd if=/dev/mapper/cleg1 bs=1M iflag=direct status=none | md5sum)"
ktap_done
