#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/profile-guest.sh <reads|writes>: where the CPU goes, inside the VM
# (run by bench/profile, which ships perf).  Two null_blk legs without
# memory backing (so the mirror's share of the work is larger), the C
# dm-mirror, then dm-mirror-rs with its default policy and with adaptive:
#   reads   4 KiB random reads, 2 jobs x 16 in flight (libaio)
#   writes  4 KiB random writes over 16 MiB, one at a time (psync); also dm-linear over
#           the first leg and dm-mirror-rs with the second leg write-mostly
#           (issue 13's write path), in place of adaptive
# For each: fio's IOPS and the top symbols of `perf record -a -e cpu-clock`
# (self time).  A cpu-clock sample that falls while interrupts are off is
# taken when they come back on: time inside an IRQ-off critical section
# shows up on the function that ends it (_raw_spin_unlock_irq*).

export PATH=/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1
mode=${1:-reads}
case "$mode" in
reads) fio_args=(--rw=randread --iodepth=16 --numjobs=2 --ioengine=libaio) ;;
# Writes stay within 16 MiB (32 regions), so that after the first pass
# every write finds its region hot, as in bench/guest.sh's write phase.
writes) fio_args=(--rw=randwrite --iodepth=1 --numjobs=1 --ioengine=psync --size=16m) ;;
*) echo "usage: profile-guest.sh <reads|writes>" >&2; exit 2 ;;
esac
command -v perf >/dev/null || { echo "no perf in the guest: run bench/profile" >&2; exit 1; }
modprobe null_blk nr_devices=2 gb=1 bs=512 irqmode=1 || exit 1
sectors=$(blockdev --getsz /dev/nullb0)
table="0 $sectors mirror core 2 1024 nosync 2 /dev/nullb0 0 /dev/nullb1 0"

fio_cmd=(fio --name=p --filename=/dev/mapper/prof --direct=1 --bs=4k "${fio_args[@]}"
	--time_based --group_reporting --output-format=terse)
profile() {
	"${fio_cmd[@]}" --runtime=2 >/dev/null 2>&1	# warm: probes, caches
	perf record -q -a -e cpu-clock -F 2000 -o /tmp/perf.data -- \
		"${fio_cmd[@]}" --runtime=5 >/tmp/fio.out 2>/dev/null
	# fio's terse format (v3): field 8 is the read IOPS, 49 the write IOPS.
	local iops
	iops=$(awk -F';' -v m="$mode" '{ print (m == "reads") ? $8 : $49 }' /tmp/fio.out)
	echo "=== $1: $iops IOPS"
	perf report -i /tmp/perf.data --sort comm,sym --stdio 2>/dev/null |
		grep -v '^#' | grep -v '^$' | head -n 30
	echo
}

if [ "$mode" = writes ]; then
	dmsetup create prof --table "0 $sectors linear /dev/nullb0 0" || exit 1
	profile "dm-linear over the first leg"
	dmsetup remove prof
fi
modprobe dm-mirror && dmsetup create prof --table "$table" || exit 1
profile "C dm-mirror"
dmsetup remove prof && rmmod dm_mirror
modprobe dm_mirror_rs && dmsetup create prof --table "$table" || exit 1
profile "dm-mirror-rs, default policy"
if [ "$mode" = writes ]; then
	dmsetup remove prof
	dmsetup create prof --table "$table 4 write_mostly 1 max_write_behind 8192" || exit 1
	profile "dm-mirror-rs, leg 1 write-mostly"
else
	dmsetup message prof 0 io_balance adaptive
	profile "dm-mirror-rs, adaptive"
fi
dmsetup remove prof
