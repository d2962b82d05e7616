#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Concurrency: fio writers verifying their data and readers comparing a
# fixed pattern run against a 3-leg mirror (disk log, handle_errors) while
# a loop changes the read policy with messages, suspends and resumes the
# mirror (flush and noflush), fails a leg (its dm-linear wrapper becomes an
# error target) and brings it back the way lvm2 does (noflush suspend,
# reload, resume).  Zero data errors, zero kernel reports, and at the end
# the legs are identical.
#
# Runs in the guest: scripts/vm-run tests/guest/stress.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

RUNTIME=${DMMR_STRESS_SECONDS:-45}

ktap_plan 11

modprobe -r dm_mirror 2>/dev/null || true
modprobe dm_mirror_rs

L0=$(mk_loop 32) L1=$(mk_loop 32) L2=$(mk_loop 32) LOG=$(mk_loop 1)
SECTORS=65536 # 32 MiB
M0=$(dev_majmin "$L0") M1=$(dev_majmin "$L1") ML=$(dev_majmin "$LOG")
WRAP_OK="0 $SECTORS linear $L2 0"
WRAP_DEAD="0 $SECTORS error"

setup() {
	dm create leg2 --table "$WRAP_OK" &&
		M2=$(dev_majmin /dev/mapper/leg2) &&
		TABLE="0 $SECTORS mirror disk 2 $ML 512 3 $M0 0 $M1 0 $M2 0 1 handle_errors" &&
		dm create st --table "$TABLE" &&
		wait_for 180 mirror_in_sync st
}
ktap_check "3-leg mirror (one leg behind a dm-linear wrapper), in sync" setup

leg_health() { dm status st | awk '{ print $(7 + $4) }'; }

# The readers' area: the first 8 MiB hold a fixed pattern nobody writes.
READ_MB=8
dd if=/dev/urandom of="$DMMR_WORK/pat" bs=1M count=$READ_MB status=none
ktap_check "readers' area written" \
	dd if="$DMMR_WORK/pat" of=/dev/mapper/st bs=1M oflag=direct status=none

# reader <bs>: O_DIRECT reads of the readers' area compared with the
# pattern until $DMMR_WORK/stop exists; counts rounds and mismatches.
reader() {
	local bs=$1 n=0 bad=0
	while [ ! -e "$DMMR_WORK/stop" ]; do
		if ! dd if=/dev/mapper/st bs="$bs" count=$((READ_MB * 1048576 / bs)) iflag=direct status=none |
			cmp -s - "$DMMR_WORK/pat"; then
			bad=$((bad + 1))
		fi
		n=$((n + 1))
	done
	echo "$n $bad" >"$DMMR_WORK/reader.$bs"
}

# One round of trouble.  Each step must succeed; failures are logged.
chaos_step() {
	"$@" >>"$DMMR_WORK/chaos.log" 2>&1 || { echo "FAILED: $*" >>"$DMMR_WORK/chaos.log"; return 1; }
}
wrap_to() {
	dm suspend leg2 && dm load leg2 --table "$1" && dm resume leg2
}
reload_mirror() {
	dm suspend --noflush st && dm load st --table "$TABLE" && dm resume st
}
msg() { dmsetup message st 0 io_balance "$@"; }
chaos() {
	local i=0 errs=0 degraded=0
	while [ ! -e "$DMMR_WORK/stop" ]; do
		i=$((i + 1))
		chaos_step msg round_robin ios $((i % 5)) || errs=$((errs + 1))
		chaos_step msg default "$M1" || errs=$((errs + 1))
		chaos_step msg weight "$M0" $((i % 4)) || errs=$((errs + 1))
		chaos_step msg weighted || errs=$((errs + 1))
		chaos_step dm suspend st || errs=$((errs + 1))
		chaos_step dm resume st || errs=$((errs + 1))
		chaos_step msg adaptive || errs=$((errs + 1))
		chaos_step dm suspend --noflush st || errs=$((errs + 1))
		chaos_step dm resume st || errs=$((errs + 1))
		# Leg 2 dies; writes to it fail, the mirror marks it and holds
		# the writes (handle_errors) until the reload below.
		chaos_step wrap_to "$WRAP_DEAD" || errs=$((errs + 1))
		if wait_for 10 bash -c "dmsetup status st | awk '{ exit \$(7 + \$4) !~ /[DSR]/ }'"; then
			degraded=$((degraded + 1))
		fi
		chaos_step wrap_to "$WRAP_OK" || errs=$((errs + 1))
		chaos_step reload_mirror || errs=$((errs + 1))
		chaos_step msg round_robin ios 1 || errs=$((errs + 1))
		sleep 1
	done
	echo "$i $errs $degraded" >"$DMMR_WORK/chaos.result"
}

rm -f "$DMMR_WORK/stop"
reader 4096 &
r1=$!
reader 65536 &
r2=$!
chaos &
c=$!
# Two writers, each verifying its own 8 MiB as it goes (verify_backlog)
# and at the end.
fio_rc=0
fio --output="$DMMR_WORK/fio.out" --eta=never --filename=/dev/mapper/st --direct=1 \
	--ioengine=libaio --iodepth=8 --bs=4k --rw=randwrite --verify=crc32c \
	--verify_backlog=128 --verify_fatal=1 --time_based --runtime="$RUNTIME" \
	--size=8M --name=w1 --offset=8M --name=w2 --offset=16M --name=w3 --offset=24M \
	--bs=16k || fio_rc=$?
touch "$DMMR_WORK/stop"
wait "$r1" "$r2" "$c" || true

if [ $fio_rc = 0 ]; then
	ktap_pass "fio: 3 writers with verify, $RUNTIME s, no error"
	grep -E '^ +(write|read):' "$DMMR_WORK/fio.out" | ktap_diag
else
	ktap_fail "fio: 3 writers with verify, $RUNTIME s, no error" "fio exited $fio_rc"
	tail -n 30 "$DMMR_WORK/fio.out" | ktap_diag
fi
read -r n4 bad4 <"$DMMR_WORK/reader.4096"
read -r n64 bad64 <"$DMMR_WORK/reader.65536"
ktap_check_eq "readers (4 KiB and 64 KiB O_DIRECT): no mismatch in $n4 + $n64 rounds" "0 0" "$bad4 $bad64"
ktap_check "readers completed rounds" test "$n4" -gt 0 -a "$n64" -gt 0
read -r rounds errs degraded <"$DMMR_WORK/chaos.result"
ktap_diag "chaos: $rounds rounds, leg 2 seen failed in $degraded"
if [ "$errs" = 0 ]; then
	ktap_pass "every message, suspend, resume, leg failure and reload succeeded ($rounds rounds)"
else
	ktap_fail "every message, suspend, resume, leg failure and reload succeeded ($rounds rounds)" \
		"$errs steps failed"
	grep -B3 FAILED "$DMMR_WORK/chaos.log" | tail -n 30 | ktap_diag
fi
ktap_check "at least 2 rounds ran" test "$rounds" -ge 2
ktap_check "the mirror saw leg 2 fail at least once" test "$degraded" -ge 1
ktap_check "resync completes" wait_for 300 mirror_in_sync st
ktap_check_eq "all legs healthy" AAA "$(leg_health)"
legs_identical() {
	cmp "$L0" "$L1" && cmp "$L0" "$L2"
}
ktap_check "legs identical" legs_identical

ktap_done
