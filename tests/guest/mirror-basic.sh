#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The first working target: the Rust `mirror` registers, maps writes to every
# leg and reads to one, prints dm-raid1's table and status strings, rejects
# malformed table lines cleanly, and loads/unloads repeatedly.
#
# Runs in the guest: scripts/vm-run tests/guest/mirror-basic.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

MALFORMED=21
ktap_plan $((31 + MALFORMED))

load_rust() {
	modprobe -r dm_mirror 2>/dev/null || true
	modprobe dm_mirror_rs
}

ktap_check "module loads (modprobe dm_mirror_rs)" load_rust
ktap_check "target 'mirror' v1.15.0 registered" \
	bash -c 'dmsetup targets | grep -Eq "^mirror +v1\.15\.0$"'
ktap_check "the C dm-mirror is not what provides it" \
	bash -c '! grep -q "^dm_mirror " /proc/modules && grep -q "^dm_mirror_rs " /proc/modules'

L0=$(mk_loop 16) L1=$(mk_loop 16) L2=$(mk_loop 17)
M0=$(dev_majmin "$L0") M1=$(dev_majmin "$L1") M2=$(dev_majmin "$L2")
SECTORS=32768 # 16 MiB

# --- table and status strings ------------------------------------------
table="core 1 1024 2 $M0 0 $M1 0 1 handle_errors"
ktap_check "create: $table" dm create m0 --table "0 $SECTORS mirror $table"
ktap_check_eq "table reads back exactly as loaded" \
	"0 $SECTORS mirror $table" "$(dm table m0)"
# A core log without 'nosync' starts with no region in sync; resync copies
# the default leg to the others.
ktap_check "resync completes" wait_for 60 mirror_in_sync m0
ktap_check_eq "status in dm-raid1's format" \
	"0 $SECTORS mirror 2 $M0 $M1 32/32 1 AA 1 core" "$(dm status m0)"

table2="core 2 2048 nosync 3 $L0 0 $L1 0 $L2 2048"
ktap_check "create with paths, nosync, 3 legs, offset" \
	dm create m1 --table "0 $SECTORS mirror $table2"
ktap_check_eq "table shows major:minor and no features" \
	"0 $SECTORS mirror core 2 2048 nosync 3 $M0 0 $M1 0 $M2 2048" "$(dm table m1)"
ktap_check_eq "nosync: every region in sync" \
	"0 $SECTORS mirror 3 $M0 $M1 $M2 16/16 1 AAA 1 core" "$(dm status m1)"

# --- data: writes reach every leg, reads come back ----------------------
dd if=/dev/urandom of="$DMMR_WORK/pattern" bs=1M count=16 status=none
want=$(md5sum <"$DMMR_WORK/pattern" | cut -d' ' -f1)
ktap_check "write 16 MiB through the 3-leg mirror (O_DIRECT)" \
	dd if="$DMMR_WORK/pattern" of=/dev/mapper/m1 bs=64k oflag=direct status=none
ktap_check "flush (fsync) succeeds" sync /dev/mapper/m1
ktap_check_eq "read back through the mirror (O_DIRECT)" "$want" \
	"$(dd if=/dev/mapper/m1 bs=64k iflag=direct status=none | md5sum | cut -d' ' -f1)"
ktap_check_eq "leg 0 holds the same bytes" "$want" \
	"$(dd if="$L0" bs=512 count=$SECTORS iflag=direct status=none | md5sum | cut -d' ' -f1)"
ktap_check_eq "leg 1 holds the same bytes" "$want" \
	"$(dd if="$L1" bs=512 count=$SECTORS iflag=direct status=none | md5sum | cut -d' ' -f1)"
ktap_check_eq "leg 2 holds them at its offset (2048)" "$want" \
	"$(dd if="$L2" bs=512 skip=2048 count=$SECTORS iflag=direct status=none | md5sum | cut -d' ' -f1)"
ktap_check_eq "leg 2 before its offset is untouched" \
	"$(head -c 1048576 /dev/zero | md5sum | cut -d' ' -f1)" \
	"$(dd if="$L2" bs=512 count=2048 status=none | md5sum | cut -d' ' -f1)"
ktap_check "discard through the mirror" blkdiscard -o 0 -l 1048576 /dev/mapper/m1
ktap_check "remove m1" dm remove m1

# ext4 on the mirror: each leg on its own must then be a clean file system.
ktap_check "mkfs.ext4 on the mirror" mkfs.ext4 -q -F /dev/mapper/m0
mkdir -p "$DMMR_WORK/mnt"
head -c 8388608 "$DMMR_WORK/pattern" >"$DMMR_WORK/file"
want_file=$(md5sum <"$DMMR_WORK/file" | cut -d' ' -f1)
fs_write() {
	mount /dev/mapper/m0 "$DMMR_WORK/mnt" || return 1
	cp "$DMMR_WORK/file" "$DMMR_WORK/mnt/p" || { umount "$DMMR_WORK/mnt"; return 1; }
	umount "$DMMR_WORK/mnt"
}
ktap_check "mount, write a file, unmount" fs_write
ktap_check "remove m0" dm remove m0
ktap_check "leg 0 alone is a clean ext4" e2fsck -fn "$L0"
ktap_check "leg 1 alone is a clean ext4" e2fsck -fn "$L1"
leg_file_md5() {
	mount -o ro "$1" "$DMMR_WORK/mnt" || return 1
	md5sum <"$DMMR_WORK/mnt/p" | cut -d' ' -f1
	umount "$DMMR_WORK/mnt"
}
ktap_check_eq "the file on leg 1 alone is intact" "$want_file" "$(leg_file_md5 "$L1")"

# --- malformed table lines ---------------------------------------------
# Each: rejected, the reason in the kernel log, no device left behind.
bad() { ktap_rejects_table "$1" "0 $SECTORS mirror $2" "$2"; }
T="mirror: "
bad "${T}Insufficient mirror log arguments" "core"
# dm-raid1 hands a count of 0 to dm-log, which refuses it.
bad "${T}Error creating mirror dirty log" "core 0 1024 2 $M0 0 $M1 0"
bad "${T}Invalid mirror log argument count" "core one 1024 2 $M0 0 $M1 0"
bad "${T}Insufficient mirror log arguments" "core 3 1024 nosync"
bad "${T}Error creating mirror dirty log" "bogus 1 1024 2 $M0 0 $M1 0"
bad "${T}Error creating mirror dirty log" "core 1 1000 2 $M0 0 $M1 0"
bad "${T}Error creating mirror dirty log" "core 1 0 2 $M0 0 $M1 0"
bad "${T}Error creating mirror dirty log" "core 1 65536 2 $M0 0 $M1 0"
bad "${T}Error creating mirror dirty log" "core 2 1024 maybe 2 $M0 0 $M1 0"
bad "${T}Invalid number of mirrors" "core 1 1024 1 $M0 0"
bad "${T}Invalid number of mirrors" "core 1 1024 10 $M0 0 $M1 0"
bad "${T}Invalid number of mirrors" "core 1 1024 two $M0 0 $M1 0"
bad "${T}Too few mirror arguments" "core 1 1024 2 $M0 0"
bad "${T}Invalid offset" "core 1 1024 2 $M0 x $M1 0"
bad "${T}Invalid offset" "core 1 1024 2 $M0 -1 $M1 0"
bad "${T}Device lookup failure" "core 1 1024 2 /dev/nonexistent 0 $M1 0"
bad "${T}Unrecognised feature requested" "core 1 1024 2 $M0 0 $M1 0 1 bogus"
bad "${T}Not enough arguments to support feature count" "core 1 1024 2 $M0 0 $M1 0 2 handle_errors"
bad "${T}keep_log feature requires the handle_errors feature" "core 1 1024 2 $M0 0 $M1 0 1 keep_log"
bad "${T}Too many mirror arguments" "core 1 1024 2 $M0 0 $M1 0 1 handle_errors extra"
bad "too small for target|beyond the end" "core 1 1024 2 $M0 0 $M1 20480"

# --- module lifetime -----------------------------------------------------
ktap_check "create a mapping again" dm create m2 --table "0 $SECTORS mirror $table"
ktap_check_fails "rmmod refused while a mapping exists" rmmod dm_mirror_rs
ktap_check "remove the mapping" dm remove m2
cycles() {
	local i
	for i in $(seq 1 10); do
		rmmod dm_mirror_rs || return 1
		modprobe dm_mirror_rs || return 1
		dm create "c$i" --table "0 $SECTORS mirror $table" || return 1
		dm remove "c$i" || return 1
	done
}
ktap_check "10 unload/load/create/remove cycles" cycles
ktap_check "unload at the end" rmmod dm_mirror_rs
ktap_check_fails "no 'mirror' target left registered" \
	bash -c 'dmsetup targets | grep -q "^mirror "'

ktap_done
