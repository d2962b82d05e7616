#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Crash with a disk log: boot 1 writes acknowledged data, then stops hard
# (sysrq b) while writes run; boot 2 loads the same table: only the regions
# dirty at the crash resynchronise, and the acknowledged data is on every leg.
#
# tests/run boots the guest twice with the same disk, passing the boot number.
# dmmr-needs: module
# dmmr-boots: 2
# dmmr-vm-disk: 64

. /dmmr/tests/lib.sh
need_module

phase=${1:?boot number}
. /dmmr/tests/crash-layout.sh
TABLE="disk 2 /dev/mapper/clog $REGION 2 /dev/mapper/cleg0 0 /dev/mapper/cleg1 0 1 handle_errors"

in_sync_count() { dm status cm | awk '{ split($(4 + $4 + 1), r, "/"); print r[1] }'; }

if [ "$phase" = 1 ]; then
	ktap_plan 6
	ktap_check "load the module" modprobe dm_mirror_rs
	ktap_check "log and legs on /dev/vda" layout
	ktap_check "disk-log mirror, initial resync" \
		bash -c "dmsetup --noudevsync create cm --table '0 $LEG_LEN mirror $TABLE' && true"
	wait_for 120 mirror_in_sync cm
	dd if=/dev/urandom of="$DMMR_WORK/ack" bs=1M count=$ACK_MB status=none
	ack() {
		dd if="$DMMR_WORK/ack" of=/dev/mapper/cm bs=1M oflag=direct conv=fsync status=none &&
			dd if="$DMMR_WORK/ack" of=$VDA bs=512 seek=$COPY oflag=direct conv=fsync status=none
	}
	ktap_check "acknowledged writes to the first $ACK_MB MiB (and a raw copy)" ack
	# Their regions stay hot (marked) for a second or two after the last
	# write (src/core/hot_regions.rs); boot 2 expects them clean.
	released() { dmsetup message cm 0 io_balance show | grep -q '^hot_regions 0 '; }
	ktap_check "the acknowledged writes' regions are handed back" wait_for 10 released
	# Writes in flight at the crash, on the upper 12 MiB only.
	fio --name=crash --filename=/dev/mapper/cm --direct=1 --ioengine=libaio --iodepth=16 \
		--rw=randwrite --bs=4k --offset=16m --size=12m --time_based --runtime=900 \
		>/dev/null 2>&1 &
	fiopid=$!
	# Crash only once writes are really flowing (fio may take a while to
	# start under TCG): the mirror's own write counter must be climbing.
	writes() { awk '{ print $5 }' "/sys/dev/block/$(dev_majmin /dev/mapper/cm)/stat"; }
	w0=$(writes)
	flowing() { kill -0 "$fiopid" && [ $(($(writes) - w0)) -ge 200 ]; }
	ktap_check "writes running at the crash" wait_for 60 flowing
	echo "# boot 1: stopping hard with writes in flight"
	echo "# crash: $KTAP_PASS passed, $KTAP_FAIL failed, 0 skipped"
	# The marker for vm-run, then the crash: no flush, no unmount.
	echo "DMMR-GUEST-EXIT: $KTAP_FAIL"
	sleep 1
	# The second after the marker (for the console) must not be a gap: crash
	# only once fio is seen writing again, and say so if it is not (a CI run
	# once found every region clean in boot 2 and could not tell why).
	w1=$(writes)
	rising() { kill -0 "$fiopid" && [ $(($(writes) - w1)) -ge 16 ]; }
	if wait_for 10 rising; then
		echo "# boot 1: crashing with fio writing ($(($(writes) - w1)) writes in the last moment)"
	else
		echo "# boot 1: fio is not writing before the crash (alive: $(kill -0 "$fiopid" 2>/dev/null && echo yes || echo no), writes $w1 -> $(writes))"
	fi
	echo "# boot 1: status: $(dmsetup status cm)"
	echo b >/proc/sysrq-trigger
	sleep 10
	exit 1
fi

ktap_plan 9
ktap_check "load the module, resync throttled to 1%" \
	modprobe dm_mirror_rs raid1_resync_throttle=1
ktap_check "log and legs on /dev/vda again" layout
# What the disk log recorded at the crash, read before the mirror loads (a
# resync of a few regions can finish before `dmsetup status` could tell).
clean_regions() { log_clean_bits "$NR_REGIONS" | awk '{ n += $1 } END { print n + 0 }'; }
clean=$(clean_regions)
ktap_diag "clean in the on-disk log after the crash: $clean of $NR_REGIONS regions"
# The crash writes covered 96 regions, everything else was clean.
ktap_check "regions outside the crash writes are clean in the log ($clean >= 128)" \
	test "$clean" -ge 128
ktap_check "regions written at the crash are dirty in the log ($clean < $NR_REGIONS)" \
	test "$clean" -lt "$NR_REGIONS"
ktap_check "the same table loads" dm create cm --table "0 $LEG_LEN mirror $TABLE"
ktap_diag "in sync right after load: $(in_sync_count) of $NR_REGIONS regions"
ack_md5=$(dd if=$VDA bs=512 skip=$COPY count=$((ACK_MB * 2048)) iflag=direct status=none | md5sum)
ktap_check_eq "acknowledged data on leg 0" "$ack_md5" \
	"$(dd if=/dev/mapper/cleg0 bs=1M count=$ACK_MB iflag=direct status=none | md5sum)"
ktap_check_eq "acknowledged data on leg 1" "$ack_md5" \
	"$(dd if=/dev/mapper/cleg1 bs=1M count=$ACK_MB iflag=direct status=none | md5sum)"
echo 100 >/sys/module/dm_mirror_rs/parameters/raid1_resync_throttle
ktap_check "resync completes" wait_for 120 mirror_in_sync cm
ktap_check_eq "the legs are identical" \
	"$(dd if=/dev/mapper/cleg0 bs=1M iflag=direct status=none | md5sum)" \
	"$(dd if=/dev/mapper/cleg1 bs=1M iflag=direct status=none | md5sum)"
ktap_done
