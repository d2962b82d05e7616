#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Write-mostly legs with write-behind: settings (table features, messages,
# refusals), writes acknowledged while the write-mostly leg lags (its copies
# show in `io_balance show`), the bound, reads never on the lagging leg,
# fio verify while the backlog fills and drains, legs identical after it
# drains, a failing write-mostly leg (D, nothing lost) and a failing fast
# leg (EIO or the latest data, never older data), and a write the fast leg
# fails (acknowledged once its copy is on the slow leg, EIO if that fails).
#
# The write-mostly leg is dm-delay (writes delayed) over dm-linear over a
# loop device; the fast leg is dm-linear over another. Switching a linear
# device to `error` fails a leg (for the slow leg: also the copies dm-delay
# still holds, which a suspend of dm-delay itself would write out).
#
# Runs in the guest: scripts/vm-run tests/guest/write-behind.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

ktap_plan 49

modprobe -r dm_mirror 2>/dev/null || true
modprobe dm_mirror_rs || die "cannot load dm_mirror_rs"
modprobe dm-delay || die "cannot load dm-delay"

SECTORS=131072 # 64 MiB
L0=$(mk_loop 64) L1=$(mk_loop 64) L2=$(mk_loop 64) L3=$(mk_loop 64)

# set_fast <table>, set_slow <table>: swap a leg's table (suspend flushes
# what dm-delay holds).
swap_table() {
	dm suspend "$1" && dm reload "$1" --table "$2" && dm resume "$1"
}
fast_ok() { swap_table fast "0 $SECTORS linear $L0 0"; }
fast_error() { swap_table fast "0 $SECTORS error"; }
SB=/dev/mapper/slowbase
slow_delay() { swap_table slow "0 $SECTORS delay $SB 0 0 $SB 0 $1"; }
slow_error() { swap_table slowbase "0 $SECTORS error"; }
# legs_cmp <bytes>: the legs' first bytes are equal (read past the page
# cache, which the mirror's bios bypass).
legs_cmp() {
	dd if="$L0" of="$DMMR_WORK/l0" bs=1M count=$(($1 >> 20)) iflag=direct status=none &&
		dd if="$L1" of="$DMMR_WORK/l1" bs=1M count=$(($1 >> 20)) iflag=direct status=none &&
		cmp "$DMMR_WORK/l0" "$DMMR_WORK/l1"
}
# slow_has <file> <4k-block>: the slow leg holds <file> at <block>.
slow_has() {
	dd if="$L1" of="$DMMR_WORK/l1" bs=4k skip="$2" count=$(($(stat -c %s "$1") / 4096)) \
		iflag=direct status=none && cmp "$1" "$DMMR_WORK/l1"
}

dm create fast --table "0 $SECTORS linear $L0 0" || die "cannot create the fast leg"
dm create slowbase --table "0 $SECTORS linear $L1 0" || die "cannot create the slow base"
dm create slow --table "0 $SECTORS delay $SB 0 0 $SB 0 0" || die "cannot create the slow leg"
dm create fast2 --table "0 $SECTORS linear $L2 0" || die "cannot create the second fast leg"
F=$(dev_majmin /dev/mapper/fast) S=$(dev_majmin /dev/mapper/slow)
F2=$(dev_majmin /dev/mapper/fast2)

msg() { dmsetup message -- "$1" 0 "${@:2}"; }
show() { msg "$1" io_balance show; }
# behind_writes <mirror>: copies the slow leg (leg 1) is behind on.
behind_writes() { show "$1" | awk '$1 == "behind" && $2 == 1 { print $5; f = 1 } END { if (!f) print 0 }'; }
behind_field() { show "$1" | awk -v k="$2" '$1 == "behind" && $2 == 1 { for (i = 4; i < NF; i++) if ($i == k) print $(i + 1) }'; }
drained() { [ "$(behind_writes "$1")" = 0 ]; }
default_of() { show "$1" | awk '$1 == "default" { print $2 }'; }
reads_of() { awk '{ print $1 }' "/sys/dev/block/$1/stat"; }
# flushes_of /dev/loopN: flush requests the loop device completed (it has a
# write cache, so flushes reach it).
flushes_of() { awk '{ print $16 }' "/sys/block/${1#/dev/}/stat"; }
# pattern <byte> <blocks>: <blocks> 4 KiB blocks of one byte value.
pattern() { head -c $((4096 * $2)) /dev/zero | tr '\0' "\\$(printf '%03o' "$1")"; }

# --- settings --------------------------------------------------------------
TABLE="0 $SECTORS mirror core 2 1024 nosync 2 $F 0 $S 0"
ktap_check "create with write_mostly 1 max_write_behind 8192" \
	dm create wb --table "$TABLE 5 handle_errors write_mostly 1 max_write_behind 8192"
ktap_check_eq "the table prints the features back as given" \
	"0 $SECTORS mirror core 2 1024 nosync 2 $F 0 $S 0 5 handle_errors write_mostly 1 max_write_behind 8192" \
	"$(dm table wb)"
ktap_check_eq "show reports the settings" "write_behind max_write_behind 8192 write_mostly 1" \
	"$(show wb | grep '^write_behind')"
ktap_rejects_table "write_mostly: leg 0 is the default leg" "$TABLE 2 write_mostly 0" \
	"write_mostly on the default leg"
ktap_rejects_table "Can't set all mirror legs to write_mostly" \
	"$TABLE 7 io_balance default 1 write_mostly 0 write_mostly 1" "every leg write_mostly"
ktap_rejects_table "max_write_behind: 524289 sectors out of range" "$TABLE 2 max_write_behind 524289" \
	"max_write_behind out of range"
ktap_rejects_table "write_mostly: leg \"1\" given twice" "$TABLE 4 write_mostly 1 write_mostly 1" \
	"write_mostly twice"
ktap_rejects_table "write_mostly: unknown leg" "$TABLE 2 write_mostly 7:99" "write_mostly of no leg"

before=$(show wb)
mark=$(kmsg_mark)
ktap_check_fails "message write_mostly 0 on (the default leg) is refused" msg wb write_mostly 0 on
ktap_check_fails "message max_write_behind 524289 is refused" msg wb max_write_behind 524289
ktap_check_fails "message io_balance default 1 (a write-mostly leg) is refused" msg wb io_balance default 1
ktap_check_fails "message write_mostly 1 maybe is refused" msg wb write_mostly 1 maybe
ktap_check "each refusal logged a reason" kmsg_grep "$mark" \
	"device-mapper: mirror: Can't set all mirror legs to write_mostly"
ktap_check_eq "refused messages changed nothing" "$before" "$(show wb)"

# --- writes at the fast leg's pace -----------------------------------------
slow_delay 1000
pattern 171 16 >"$DMMR_WORK/b"
dd if="$DMMR_WORK/b" of=/dev/mapper/wb bs=4k oflag=direct,sync status=none
n=$(behind_writes wb)
ktap_check_eq "16 synchronous writes returned while the slow leg is behind on them" 1 \
	"$([ "${n:-0}" -ge 1 ] && echo 1 || echo "0 (behind: $n)")"
r0=$(reads_of "$S")
ktap_check_eq "read back at once: the latest data" "$(md5sum <"$DMMR_WORK/b" | cut -d' ' -f1)" \
	"$(dd if=/dev/mapper/wb bs=4k count=16 iflag=direct status=none | md5sum | cut -d' ' -f1)"
ktap_check_eq "no read went to the lagging leg" 0 "$(($(reads_of "$S") - r0))"
ktap_check "the backlog drains" wait_for 60 drained wb
ktap_check "the slow leg has the data after it drains" slow_has "$DMMR_WORK/b" 0

# The bound: 64 sectors (8 writes of 4 KiB) behind at most.
msg wb max_write_behind 64
msg wb io_balance reset_stats
slow_delay 300
dd if=/dev/urandom of=/dev/mapper/wb bs=4k count=40 seek=100 oflag=direct status=none
peak=$(behind_field wb peak_sectors) waits=$(behind_field wb waits)
ktap_check_eq "at most max_write_behind sectors behind (peak $peak), writes waited ($waits)" 1 \
	"$([ "${peak:-999}" -le 64 ] && [ "${waits:-0}" -ge 1 ] && echo 1 || echo 0)"
ktap_check "drains again" wait_for 60 drained wb

# fio verify while the backlog fills and drains.
msg wb max_write_behind 8192
slow_delay 20
ktap_check "fio randwrite verify (crc32c) while the slow leg lags" \
	fio --name=v --filename=/dev/mapper/wb --direct=1 --ioengine=libaio --iodepth=8 \
	--rw=randwrite --bs=4k --size=16m --verify=crc32c --verify_fatal=1 --do_verify=1 \
	--randrepeat=0
ktap_check "drains after fio" wait_for 120 drained wb
ktap_check "legs identical after the drain" legs_cmp $((16 << 20))

# A copy sent from the mapping function (a hot region) goes out at the next
# tick, with nothing else to wake the worker: not at the worker's next
# hot-region timer (up to a second away), nor at the bound. Timed from the
# write's return to the slow leg's completion of the copy (its sysfs write
# count), polled with shell builtins only.
slow_delay 0
map_writes() { show wb | awk '$1 == "hot_regions" { for (i = 2; i < NF; i++) if ($i == "map_writes") print $(i + 1) }'; }
# slow_writes: SW is the slow leg's completed writes (no fork: polled).
slow_writes() { read -r _ _ _ _ SW _ <"/sys/dev/block/$S/stat"; }
m0=$(map_writes) worst=0
for trial in 0 1 2 3 4 5; do
	wait_for 10 drained wb
	slow_writes
	w0=$SW
	dd if=/dev/urandom of=/dev/mapper/wb bs=4k count=1 seek=200 oflag=direct status=none
	t0=${EPOCHREALTIME/./} now=$t0
	while slow_writes && [ "$SW" = "$w0" ] && [ $((now - t0)) -lt 3000000 ]; do
		now=${EPOCHREALTIME/./}
	done
	now=${EPOCHREALTIME/./}
	ms=$(((now - t0) / 1000))
	# Trial 0 makes the region hot (its write goes through the worker).
	[ "$trial" = 0 ] || [ "$ms" -le "$worst" ] || worst=$ms
done
sent=$(($(map_writes) - ${m0:-0}))
ktap_check_eq "copies of writes sent from map land within 300 ms (worst of 5: $worst ms; $sent of 6 from map)" 1 \
	"$([ "$worst" -lt 300 ] && [ "$sent" -ge 4 ] && echo 1 || echo 0)"

# --- the write-mostly leg fails with writes behind ------------------------
slow_delay 2000
pattern 85 8 >"$DMMR_WORK/c"
dd if="$DMMR_WORK/c" of=/dev/mapper/wb bs=4k seek=1000 oflag=direct status=none
slow_error
ktap_check "the slow leg shows D once its copies fail" \
	wait_for 30 sh -c "dmsetup status wb | grep -q ' AD '"
ktap_check_eq "nothing acknowledged is lost (read from the fast leg)" \
	"$(md5sum <"$DMMR_WORK/c" | cut -d' ' -f1)" \
	"$(dd if=/dev/mapper/wb bs=4k count=8 skip=1000 iflag=direct status=none | md5sum | cut -d' ' -f1)"
ktap_check_eq "the region is out of sync" 1 \
	"$(dm status wb | awk '{ split($(4 + $4 + 1), r, "/"); print (r[1] < r[2]) ? 1 : 0 }')"
dm remove wb
swap_table slowbase "0 $SECTORS linear $L1 0"

# --- the fast leg fails with writes behind ---------------------------------
slow_delay 0
dm create wb2 --table "$TABLE 4 write_mostly 1 max_write_behind 8192" || die "cannot create wb2"
wait_for 30 mirror_in_sync wb2
pattern 17 8 | dd of=/dev/mapper/wb2 bs=4k seek=2000 oflag=direct status=none
wait_for 30 drained wb2
slow_delay 3000
pattern 34 8 >"$DMMR_WORK/new"
dd if="$DMMR_WORK/new" of=/dev/mapper/wb2 bs=4k seek=2000 oflag=direct status=none
fast_error
got=$({ dd if=/dev/mapper/wb2 bs=4k count=8 skip=2000 iflag=direct status=none 2>/dev/null || true; } | md5sum | cut -d' ' -f1)
old=$(pattern 17 8 | md5sum | cut -d' ' -f1)
ktap_check_eq "while behind, a read the fast leg cannot serve is never the older data" 1 \
	"$([ "$got" != "$old" ] && echo 1 || echo 0)"
ktap_check "the backlog drains to the slow leg" wait_for 60 drained wb2
ktap_check_eq "then the slow leg serves the latest data" "$(md5sum <"$DMMR_WORK/new" | cut -d' ' -f1)" \
	"$(dd if=/dev/mapper/wb2 bs=4k count=8 skip=2000 iflag=direct status=none | md5sum | cut -d' ' -f1)"
dm remove wb2
fast_ok

# --- a write the fast leg fails, with writes behind ------------------------
# The fast leg is the one leg that acknowledges writes: a write it fails is
# held only by its copy for the slow leg, so it is acknowledged once the copy
# is written, and fails if the copy fails. Each mapping writes its region
# twice first (the second write goes from map, a hot region).
fail_fast_write() {
	slow_delay 0
	dm create "$1" --table "$TABLE 4 write_mostly 1 max_write_behind 8192" || die "cannot create $1"
	wait_for 30 mirror_in_sync "$1"
	pattern 51 8 | dd of="/dev/mapper/$1" bs=32k seek=375 oflag=direct status=none
	pattern 51 8 | dd of="/dev/mapper/$1" bs=32k seek=375 oflag=direct status=none
	wait_for 30 drained "$1"
	slow_delay 1500
	fast_error
}
fail_fast_write wb3
pattern 68 8 >"$DMMR_WORK/new3"
flushes=$(flushes_of "$L1")
ktap_check "a write the fast leg fails is acknowledged (its copy holds it)" \
	dd if="$DMMR_WORK/new3" of=/dev/mapper/wb3 bs=32k seek=375 oflag=direct status=none
ktap_check "when it is acknowledged, the slow leg holds it" slow_has "$DMMR_WORK/new3" 3000
# No flush was asked for (O_DIRECT without O_SYNC): the slow leg's is the
# mirror's own, made before the acknowledgement.
ktap_check_eq "and has flushed its cache" 1 \
	"$([ "$(flushes_of "$L1")" -gt "$flushes" ] && echo 1 || echo "0 (flushes $flushes, then $(flushes_of "$L1"))")"
ktap_check "the fast leg shows D" sh -c "dmsetup status wb3 | grep -q ' DA '"
ktap_check_eq "reads return it" "$(md5sum <"$DMMR_WORK/new3" | cut -d' ' -f1)" \
	"$(dd if=/dev/mapper/wb3 bs=32k count=1 skip=375 iflag=direct status=none | md5sum | cut -d' ' -f1)"
dm remove wb3
fast_ok

fail_fast_write wb4
pattern 85 8 >"$DMMR_WORK/new4"
dd if="$DMMR_WORK/new4" of=/dev/mapper/wb4 bs=32k seek=375 oflag=direct status=none \
	2>/dev/null &
writer=$!
# The copy is still in dm-delay: failing the slow leg's base fails it.
sleep 0.5
slow_error
ktap_check_fails "a write the fast leg and then its copy fail is not acknowledged" wait "$writer"
dm remove wb4
swap_table slowbase "0 $SECTORS linear $L1 0"
fast_ok

# Two legs acknowledge writes (through dm-io), and both fail the write.
slow_delay 0
dm create wb5 --table "0 $SECTORS mirror core 2 1024 nosync 3 $F 0 $F2 0 $S 0 4 write_mostly 2 max_write_behind 8192" ||
	die "cannot create wb5"
wait_for 30 mirror_in_sync wb5
slow_delay 1500
fast_error
dd if=/dev/urandom of=/dev/mapper/wb5 bs=4k count=1 seek=5000 oflag=direct status=none
ktap_check_eq "the first fast leg failed a write: the default is the other fast leg, not the write-mostly one" \
	1 "$(default_of wb5)"
swap_table fast2 "0 $SECTORS error"
pattern 102 8 >"$DMMR_WORK/new5"
ktap_check "three legs: a write both fast legs fail is acknowledged" \
	dd if="$DMMR_WORK/new5" of=/dev/mapper/wb5 bs=32k seek=375 oflag=direct status=none
ktap_check "when it is acknowledged, the slow leg holds it" slow_has "$DMMR_WORK/new5" 3000
dm remove wb5
swap_table fast2 "0 $SECTORS linear $L2 0"
fast_ok

# Two write-mostly legs; the fast leg fails a write (its region only, so
# writes elsewhere stay in sync and keep getting copies), then one
# write-mostly leg is made a leg that acknowledges writes, so writes go on,
# each adding a copy for the other one (4 s behind): the failed write is
# acknowledged once its own copies and the earlier ones are done, not when
# the backlog is empty, which it never is while the writes go on.
slow_delay 0
dm create slow2 --table "0 $SECTORS delay $L3 0 0 $L3 0 0" || die "cannot create slow2"
S2=$(dev_majmin /dev/mapper/slow2)
dm create wb6 --table "0 $SECTORS mirror core 2 1024 nosync 3 $F 0 $S 0 $S2 0 6 write_mostly 1 write_mostly 2 max_write_behind 8192" ||
	die "cannot create wb6"
wait_for 30 mirror_in_sync wb6
swap_table slow2 "0 $SECTORS delay $L3 0 0 $L3 0 4000 $L3 0 0"
# Region 23 (sectors 23552-24575) of the fast leg fails.
dm suspend fast
printf '0 23552 linear %s 0\n23552 1024 error\n24576 %s linear %s 24576\n' \
	"$L0" $((SECTORS - 24576)) "$L0" | dmsetup reload fast
dm resume fast
pattern 119 8 >"$DMMR_WORK/new6"
dd if="$DMMR_WORK/new6" of=/dev/mapper/wb6 bs=32k seek=375 oflag=direct status=none &
writer=$!
wait_for 10 sh -c "dmsetup status wb6 | grep -q ' DAA '" || true
msg wb6 write_mostly 1 off
fio --name=w --filename=/dev/mapper/wb6 --direct=1 --ioengine=libaio --iodepth=4 \
	--rw=randwrite --bs=4k --offset=32m --size=16m --time_based --runtime=40 \
	--output=/dev/null --eta=never &
load=$!
acked_under_load() { wait_gone 15 "$writer" && kill -0 "$load"; }
ktap_check "a write the fast leg failed is acknowledged while later writes keep a leg behind" \
	acked_under_load
ktap_check "it succeeded" wait "$writer"
ktap_check_eq "the leg no longer write-mostly is the default" 1 "$(default_of wb6)"
kill "$load" 2>/dev/null || true
wait "$load" 2>/dev/null || true
ktap_check "the slow leg holds it" slow_has "$DMMR_WORK/new6" 3000
swap_table slow2 "0 $SECTORS delay $L3 0 0 $L3 0 0"
dm remove wb6
fast_ok

# A write to a region out of sync goes to one leg, the resync's source: here
# the slow leg, the fast one having failed a write there. A copy of an
# earlier write still waits in the backlog for that leg (behind the one in
# dm-delay): the write must not go before it, or the copy lands over it.
slow_delay 0
dm create wb7 --table "$TABLE 4 write_mostly 1 max_write_behind 8192" || die "cannot create wb7"
wait_for 30 mirror_in_sync wb7
slow_delay 3000
pattern 1 8 | dd of=/dev/mapper/wb7 bs=4k seek=4000 oflag=direct status=none
pattern 2 8 | dd of=/dev/mapper/wb7 bs=4k seek=4000 oflag=direct status=none
fast_error
# The fast leg fails a write to the same region (blocks 3968-4095).
pattern 3 2 | dd of=/dev/mapper/wb7 bs=4k seek=4090 oflag=direct status=none 2>/dev/null &
writer=$!
wait_for 10 sh -c "! mirror_in_sync wb7" || true
pattern 4 8 >"$DMMR_WORK/new7"
ktap_check "a write to the region, now out of sync, is acknowledged" \
	dd if="$DMMR_WORK/new7" of=/dev/mapper/wb7 bs=4k seek=4000 oflag=direct status=none
wait "$writer" || true
wait_for 60 drained wb7
ktap_check "once the copies are done, the slow leg holds it (not the copy before it)" \
	slow_has "$DMMR_WORK/new7" 4000
ktap_check_eq "and reads return it" "$(md5sum <"$DMMR_WORK/new7" | cut -d' ' -f1)" \
	"$(dd if=/dev/mapper/wb7 bs=4k count=8 skip=4000 iflag=direct status=none | md5sum | cut -d' ' -f1)"
dm remove wb7
fast_ok

# A message ends a leg's write_mostly while a copy for it still waits in the
# backlog: the next write to those blocks goes to that leg behind the copy,
# not around it.
slow_delay 0
dm create wb8 --table "0 $SECTORS mirror core 2 1024 nosync 3 $F 0 $S 0 $S2 0 6 write_mostly 1 write_mostly 2 max_write_behind 8192" ||
	die "cannot create wb8"
wait_for 30 mirror_in_sync wb8
slow_delay 3000
pattern 5 8 | dd of=/dev/mapper/wb8 bs=4k seek=5000 oflag=direct status=none
pattern 6 8 | dd of=/dev/mapper/wb8 bs=4k seek=5000 oflag=direct status=none
msg wb8 write_mostly 1 off
pattern 7 8 >"$DMMR_WORK/new8"
dd if="$DMMR_WORK/new8" of=/dev/mapper/wb8 bs=4k seek=5000 oflag=direct status=none
ktap_check "the backlog drains" wait_for 60 drained wb8
ktap_check "the leg no longer write-mostly holds the latest write (not the copy before it)" \
	slow_has "$DMMR_WORK/new8" 5000
dm remove wb8

ktap_done
