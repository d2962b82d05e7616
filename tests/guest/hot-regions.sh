#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Hot regions (src/core/hot_regions.rs): a write to a region whose mark is
# on disk goes to the legs from map, without the worker; the mark stays on
# disk while the region is hot and is cleared once it is idle; a suspend
# hands every region back; a failed leg closes the set; write-behind writes
# go from map with their copies; the hot_region_idle_ms module parameter
# (refused when bad, 0 turns the set off) and dm-io's reserve bound it.
# The crash suites cover hot regions at a crash (the regions are dirty in
# the log, so the resync copies them). Checks that need a region to stay
# hot run on a mapping with a 10 s idle time, so that a slow (debug)
# kernel cannot let it go between two commands.
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

ktap_plan 33
ktap_check "load the module" modprobe dm_mirror_rs
PARAM=/sys/module/dm_mirror_rs/parameters/hot_region_idle_ms
RESERVE=/sys/module/dm_mod/parameters/reserved_bio_based_ios
for v in 60001 -1 1e3 abc "5 5"; do
	mark=$(kmsg_mark)
	before=$(cat $PARAM)
	rc=0
	echo "$v" 2>/dev/null >$PARAM || rc=$?
	logged() { kmsg_grep "$mark" 'device-mapper: mirror: hot_region_idle_ms: not a number'; }
	ok=1
	[ $rc -ne 0 ] && [ "$(cat $PARAM)" = "$before" ] && wait_for 2 logged && ok=0
	ktap_result "hot_region_idle_ms refuses '$v', logs it, keeps the old value" $ok
done
echo 10000 >$PARAM || die "cannot set hot_region_idle_ms"

REGION=256                      # sectors: 128 KiB
SECTORS=32768                   # 16 MiB: 128 regions
LOGDEV=$(mk_loop 1) L0=$(mk_loop 16) L1=$(mk_loop 16)
dm create hlog --table "0 2048 linear $LOGDEV 0" || die "cannot create the log device"
dm create hleg1 --table "0 $SECTORS linear $L1 0" || die "cannot create leg 1"
TABLE="0 $SECTORS mirror disk 2 /dev/mapper/hlog $REGION 2 $L0 0 /dev/mapper/hleg1 0"
ktap_check "disk-log mirror, idle time 10 s (in sync after the initial resync)" dm create hm --table "$TABLE"
wait_for 120 mirror_in_sync hm

show() { dmsetup message hm 0 io_balance show; }
# hot <field>: a field of the show output's hot_regions line.
hot() { show | awk -v f="$1" '$1 == "hot_regions" { for (i = 1; i < NF; i++) if ($i == f) print $(i + 1) }'; }
# log_bytes: the first 128 clean bits of the on-disk log (dm-log keeps them
# from byte 1024), as 16 numbers.
log_bytes() {
	# Through a file: od stops reading after 16 bytes, and a pipe from dd
	# would then end in SIGPIPE.
	dd if=/dev/mapper/hlog of="$DMMR_WORK/log" bs=512 count=4 iflag=direct status=none &&
		od -An -tu1 -j1024 -N16 "$DMMR_WORK/log"
}
# bit_of <bytes> <region>: the region's clean bit in log_bytes' output.
bit_of() {
	local b=($1)
	echo $(((b[$2 / 8] >> ($2 % 8)) & 1))
}
# log_clean <region>: 1 if the on-disk log has <region> clean.
log_clean() { bit_of "$(log_bytes)" "$1"; }
# write4k <region> <count> <file>: <count> direct 4 KiB writes from <file>
# to the start of <region>.
write4k() {
	dd if="$3" of=/dev/mapper/hm bs=4k count="$2" seek=$(($1 * REGION / 8)) oflag=direct status=none
}
leg_md5() { dd if="$1" bs=4k count="$3" skip=$(($2 * REGION / 8)) iflag=direct status=none | md5sum; }
dd if=/dev/urandom of="$DMMR_WORK/data" bs=4k count=32 status=none

ktap_check_eq "the set is open on a healthy mapping" 1 "$(hot open)"
ktap_check_eq "nothing is hot before any write" 0 "$(hot hot_regions)"
write4k 5 1 "$DMMR_WORK/data"
ktap_check_eq "the first write to region 5 makes it hot" "1 1" "$(hot hot_regions) $(hot made_hot)"
ktap_check_eq "the worker sent that write (map_writes 0)" 0 "$(hot map_writes)"
ktap_check_eq "region 5 is dirty in the on-disk log while hot" 0 "$(log_clean 5)"
write4k 5 20 "$DMMR_WORK/data"
ktap_check_eq "20 more writes to region 5 are sent from map" 20 "$(hot map_writes)"
want=$(dd if="$DMMR_WORK/data" bs=4k count=20 status=none | md5sum)
ktap_check_eq "leg 0 has the writes sent from map" "$want" "$(leg_md5 "$L0" 5 20)"
ktap_check_eq "leg 1 has the writes sent from map" "$want" "$(leg_md5 /dev/mapper/hleg1 5 20)"
ktap_check_eq "region 5 is still dirty on disk" 0 "$(log_clean 5)"

# 80 regions, one 128 KiB write each, in one process (quicker than the
# idle time): the set fills to its size, less windows that collided. The
# log is read at once (hot regions go after 1 to 2 s idle).
dd if=/dev/urandom of=/dev/mapper/hm bs=128k count=80 seek=10 oflag=direct status=none
n=$(hot hot_regions)
bytes=$(log_bytes)
dirty=0
for r in $(seq 10 89); do [ "$(bit_of "$bytes" "$r")" = 0 ] && dirty=$((dirty + 1)); done
ktap_diag "80 regions written: $n hot, made_hot $(hot made_hot); regions 10..89 dirty on disk: $dirty"
ktap_check "80 regions written: at most 64 hot, at least 56" test "$n" -le 64 -a "$n" -ge 56
ktap_check "every hot region is dirty on disk" test "$dirty" -ge "$n"

ktap_check "suspend" dm suspend hm
bytes=$(log_bytes)
clean=0
for r in $(seq 10 89); do [ "$(bit_of "$bytes" "$r")" = 1 ] && clean=$((clean + 1)); done
ktap_check_eq "suspended: every region handed back, the on-disk log clean" "0 80" \
	"$(hot hot_regions) $clean"
ktap_check "resume" dm resume hm
reopened() { [ "$(hot open)" = 1 ]; }
ktap_check "the set opens again after the resume" wait_for 5 reopened

# Write-behind: writes to a hot region go from map too, each with its copy
# admitted to the backlog (the copy holds the region as well).
behind() { show | awk -v f="$1" '$1 == "behind" { for (i = 1; i < NF; i++) if ($i == f) print $(i + 1) }'; }
write4k 40 1 "$DMMR_WORK/data"
dmsetup message hm 0 write_mostly 1 on && dmsetup message hm 0 max_write_behind 256
before=$(hot map_writes) admitted=$(behind admitted)
write4k 40 4 "$DMMR_WORK/data"
ktap_check_eq "with write-behind, 4 writes to a hot region: from map, 4 copies admitted" \
	"4 4" "$(($(hot map_writes) - before)) $(($(behind admitted) - admitted))"
drained() { [ "$(behind writes)" = 0 ]; }
wait_for 10 drained
want=$(dd if="$DMMR_WORK/data" bs=4k count=4 status=none | md5sum)
ktap_check_eq "the copies reached the write-mostly leg" "$want" "$(leg_md5 /dev/mapper/hleg1 40 4)"
dmsetup message hm 0 max_write_behind 0 && dmsetup message hm 0 write_mostly 1 off

# A failed leg: the worker decides about every write again.
write4k 50 1 "$DMMR_WORK/data"
write4k 50 1 "$DMMR_WORK/data"
before=$(hot map_writes)
dm suspend hleg1 && dm reload hleg1 --table "0 $SECTORS error" && dm resume hleg1
write4k 50 1 "$DMMR_WORK/data"
write4k 50 4 "$DMMR_WORK/data"
after=$(hot map_writes)
ktap_diag "map_writes around the failure: $before -> $after"
ktap_check "after a leg failed, the set is closed" test "$(hot open)" = 0
ktap_check "at most the write that met the failure was sent from map" test "$after" -le $((before + 1))
ktap_check "the failed leg shows in the status" bash -c "dmsetup status hm | grep -q ' AD '"

dm remove hm
dm remove hleg1
dm remove hlog

# The idle time: a region goes after 300 ms without writes (and a scan).
echo 300 >$PARAM
dm create hleg1 --table "0 $SECTORS linear $L1 0" || die "cannot create leg 1"
dm create hlog --table "0 2048 linear $LOGDEV 0" || die "cannot create the log device"
dm create hm --table "0 $SECTORS mirror disk 3 /dev/mapper/hlog $REGION nosync 2 $L0 0 /dev/mapper/hleg1 0" ||
	die "cannot create the mirror"
write4k 5 1 "$DMMR_WORK/data"
idle() { [ "$(hot hot_regions)" = 0 ]; }
ktap_check "idle time 300 ms: the written region is handed back within 5 s" wait_for 5 idle
ktap_check_eq "made_hot 1 released 1" "1 1" "$(hot made_hot) $(hot released)"
ktap_check_eq "the region is clean in the on-disk log again" 1 "$(log_clean 5)"
dm remove hm

# 0: no hot regions, every write through the worker (as dm-raid1).
echo 0 >$PARAM
dm create hm --table "0 $SECTORS mirror core 2 $REGION nosync 2 $L0 0 /dev/mapper/hleg1 0" ||
	die "cannot create the mirror"
write4k 7 1 "$DMMR_WORK/data"
write4k 7 8 "$DMMR_WORK/data"
ktap_check_eq "hot_region_idle_ms 0: the set stays closed, nothing sent from map" \
	"0 0 0" "$(hot open) $(hot made_hot) $(hot map_writes)"
dm remove hm

# dm-io keeps reserved_bio_based_ios bios per client; with 1 no thread may
# park a bio in map (src/core/hot_regions.rs, map_writers_max).
echo 10000 >$PARAM
old_reserve=$(cat $RESERVE)
echo 1 >$RESERVE
dm create hm --table "0 $SECTORS mirror core 2 $REGION nosync 2 $L0 0 /dev/mapper/hleg1 0" ||
	die "cannot create the mirror"
echo "$old_reserve" >$RESERVE
write4k 7 1 "$DMMR_WORK/data"
write4k 7 8 "$DMMR_WORK/data"
ktap_check_eq "reserved_bio_based_ios 1: region hot, but no write sent from map" \
	"1 1 0" "$(hot open) $(hot hot_regions) $(hot map_writes)"
want=$(dd if="$DMMR_WORK/data" bs=4k count=8 status=none | md5sum)
ktap_check_eq "and the writes reached leg 1" "$want" "$(leg_md5 /dev/mapper/hleg1 7 8)"
dm remove hm
dm remove hleg1
dm remove hlog
echo >$PARAM
ktap_done
