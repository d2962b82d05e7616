#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Fault injection (debug kernel profile): fail_make_request under a leg and
# under the disk log, failslab aimed at the module's code.  The target never
# crashes or leaks, fails cleanly (a constructor that cannot allocate leaves
# no device; a leg whose I/O fails is marked and the caller never sees the
# error while another leg is healthy) and recovers once the faults stop.
#
# Runs in the guest: DMMR_PROFILE=debug scripts/vm-run tests/guest/faults.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

DBG=/sys/kernel/debug
[ -d $DBG/fail_make_request ] && [ -d $DBG/failslab ] ||
	ktap_skip_all "no fail_make_request/failslab in debugfs: run on the debug kernel profile (tests/run --profile debug)"

ktap_plan 29
# Failed allocations make the kernel print allocation-failure warnings
# with a stack dump ("vmalloc error: ...", "page allocation failure");
# those are expected here.  Every other report still fails the suite.
KTAP_ALLOC_FAILURES_EXPECTED=1

modprobe -r dm_mirror 2>/dev/null || true
modprobe dm_mirror_rs

L0=$(mk_loop 16) L1=$(mk_loop 16) LOG=$(mk_loop 1)
M0=$(dev_majmin "$L0") M1=$(dev_majmin "$L1") ML=$(dev_majmin "$LOG")
SECTORS=32768 # 16 MiB
TABLE="0 $SECTORS mirror disk 2 $ML 512 2 $M0 0 $M1 0"

# fault_attr <dir> <probability> <times>: arm a fault_attr quietly
# (verbose=0: its stack dumps would look like kernel reports).
fault_attr() {
	echo 0 >"$1/verbose"
	echo 0 >"$1/interval"
	echo "$2" >"$1/probability"
	echo "$3" >"$1/times"
}
make_it_fail() { echo "$2" >"/sys/block/${1#/dev/}/make-it-fail"; }
faults_off() {
	local l
	for l in "$L0" "$L1" "$LOG"; do
		make_it_fail "$l" 0
	done
	echo 0 >$DBG/fail_make_request/probability
	echo 0 >$DBG/failslab/probability
}
at_exit faults_off

# Health characters of the legs ("AA", "DA", ...) and of the disk log.
leg_health() { dm status "$1" | awk '{ print $(7 + $4) }'; }
log_health() { dm status "$1" | awk '{ print $(11 + $4) }'; }

# Reloads the same table (what lvconvert --repair ends with once the
# device is back) and waits for the resync.
reload_and_resync() {
	dm suspend "$1" && dm load "$1" --table "$TABLE" && dm resume "$1" &&
		wait_for 180 mirror_in_sync "$1" && [ "$(leg_health "$1")" = AA ]
}
legs_identical() { cmp "$L0" "$L1"; }

# --- a leg whose writes fail ---------------------------------------------
ktap_check "create a mirror over a disk log" dm create fm --table "$TABLE"
ktap_check "initial resync" wait_for 180 mirror_in_sync fm
dd if=/dev/urandom of="$DMMR_WORK/pat" bs=1M count=8 status=none
fault_attr $DBG/fail_make_request 100 -1
make_it_fail "$L1" 1
ktap_check "writes succeed while every write to leg 1 fails" \
	dd if="$DMMR_WORK/pat" of=/dev/mapper/fm bs=1M oflag=direct status=none
# Status lists the legs' health in table order.  (No table event: like
# dm-raid1, only handle_errors raises one for a leg failure.)
ktap_check_eq "leg 1 is marked D" AD "$(leg_health fm)"
not_in_sync() { ! mirror_in_sync "$1"; }
ktap_check "the regions it missed are out of sync" not_in_sync fm
ktap_check "the data reads back through the mirror" \
	cmp -n 8388608 "$DMMR_WORK/pat" /dev/mapper/fm
ktap_check "and is on leg 0" cmp -n 8388608 "$DMMR_WORK/pat" "$L0"
make_it_fail "$L1" 0
ktap_check "faults off, same table reloaded: resync, both legs A" reload_and_resync fm
ktap_check "legs identical after the resync" legs_identical

# --- the default leg fails reads: invisible to the reader ----------------
make_it_fail "$L0" 1
ktap_check "reads succeed while every I/O to leg 0 fails" \
	cmp -n 8388608 "$DMMR_WORK/pat" /dev/mapper/fm
ktap_check_eq "leg 0 is marked R (read error), leg 1 A" RA "$(leg_health fm)"
make_it_fail "$L0" 0
ktap_check "reloaded: resync, both legs A" reload_and_resync fm

# --- random failures under fio verify -------------------------------------
# On leg 1: the default leg (0) stays healthy.  (Without handle_errors
# dm-raid1 never moves the default leg, and a region a failed write left
# out of sync can only be read from it: random failures there may end in
# EIO with the C target too.)
fio_verify() {
	fio --name=rw --filename=/dev/mapper/fm --rw=randrw --bs=4k --size=16M \
		--direct=1 --ioengine=libaio --iodepth=8 --verify=crc32c \
		--do_verify=1 --verify_fatal=1 --randseed="$1" --output="$DMMR_WORK/fio.out" ||
		{ grep -iE 'err|verify|bad' "$DMMR_WORK/fio.out"; head -n 12 "$DMMR_WORK/fio.out"; return 1; }
}
fault_attr $DBG/fail_make_request 5 -1
make_it_fail "$L1" 1
ktap_check "fio randrw with verify, 5% of leg 1's I/O failing: no error" fio_verify 1
make_it_fail "$L1" 0
ktap_check "leg 1 is marked failed (D, R or F), leg 0 A" \
	bash -c "[[ '$(leg_health fm)' =~ ^A[DRF]$ ]]"
ktap_check "reloaded: resync, both legs A" reload_and_resync fm
ktap_check "legs identical after the resync" legs_identical

# --- the disk log fails ----------------------------------------------------
fault_attr $DBG/fail_make_request 100 -1
make_it_fail "$LOG" 1
ktap_check "writes succeed while the log device fails (no handle_errors)" \
	dd if="$DMMR_WORK/pat" of=/dev/mapper/fm bs=1M oflag=direct seek=4 status=none
ktap_check "status shows the log failed (D)" wait_for 10 test "$(log_health fm)" = D
ktap_check "the data reads back" \
	cmp -n 8388608 "$DMMR_WORK/pat" /dev/mapper/fm --ignore-initial=0:4194304
make_it_fail "$LOG" 0
log_recovered() { reload_and_resync fm && [ "$(log_health fm)" = A ]; }
ktap_check "faults off, reloaded: the log works again" log_recovered
ktap_check "legs identical" legs_identical
ktap_check "remove the mirror" dm remove fm

# --- failslab aimed at the module's code -----------------------------------
# Only allocations with one of the module's functions on their stack may
# fail: the constructor's own (the mirror set, work queue) and what the C
# code it calls allocates (dirty log, region hash, dm-io and kcopyd
# clients, leg devices).  The range is the module's text per /proc/kallsyms.
range=$(awk '$4 == "[dm_mirror_rs]" && $2 ~ /^[tT]$/ { print $1 }' /proc/kallsyms | sort | sed -n '1p;$p')
lo=$(head -n 1 <<<"$range") hi=$(tail -n 1 <<<"$range")
ktap_check "the module's text range is known" test -n "$lo" -a -n "$hi"
fs=$DBG/failslab
echo "0x$lo" >$fs/require-start
printf '0x%x\n' $((0x$hi + 0x2000)) >$fs/require-end
echo 32 >$fs/stacktrace-depth
echo N >$fs/ignore-gfp-wait
fault_attr $fs 0 -1

# A create that failed must leave no table behind (dmsetup removes the
# device it made for the failed load; remove it if not).
no_leftover() {
	dmsetup info fs >/dev/null 2>&1 || return 0
	[ -z "$(dmsetup table fs)" ] || { echo "$1: a table is left after a failed create"; return 1; }
	dm remove fs || { echo "$1: could not remove the empty device"; return 1; }
}

# Uses a fresh mirror, then removes it.
use_and_remove() {
	dd if="$DMMR_WORK/pat" of=/dev/mapper/fs bs=1M count=1 oflag=direct status=none ||
		{ echo "$1: write failed"; return 1; }
	cmp -n 1048576 "$DMMR_WORK/pat" /dev/mapper/fs || { echo "$1: read differs"; return 1; }
	dmsetup message fs 0 io_balance round_robin ios 3 || { echo "$1: message failed"; return 1; }
	dm suspend fs && dm resume fs || { echo "$1: suspend/resume failed"; return 1; }
	dm remove fs || { echo "$1: remove failed"; return 1; }
}

# Systematic: /proc/self/fail-nth makes the n-th allocation of the task
# that the filter lets through fail.  try_nth <n> creates the mirror so and
# prints the stage that failed (what the module and dm logged), or "ok".
# A core log: the disk log only adds dm-log's own (C) error paths.
CORE_TABLE="0 $SECTORS mirror core 1 512 2 $M0 0 $M1 0"
try_nth() {
	local mark stage
	mark=$(kmsg_mark "nth$1")
	if (echo "$1" >/proc/self/fail-nth && exec dmsetup --noudevsync create fs --table "$CORE_TABLE") >/dev/null 2>&1; then
		use_and_remove "fail-nth $1" >&2 || return 1
		echo ok
		return
	fi
	no_leftover "fail-nth $1" >&2 || return 1
	stage=$(kmsg_since "$mark" | sed -n 's/.*device-mapper: \(table: [0-9:]*: \)\{0,1\}mirror: //p' |
		sort -u | tr '\n' '|')
	echo "${stage:-no error logged}"
}

# Some failures are absorbed (kvmalloc falls back to vmalloc, a mempool to
# its reserve): then the create succeeds although later allocations would
# still fail it.  stage_at <n> looks a few allocations further before it
# believes "ok", and otherwise reports the stage that fails next.
stage_at() {
	local s k
	s=$(try_nth "$1") || return 1
	if [ "$s" = ok ]; then
		for k in 1 2 3; do
			s=$(try_nth $(($1 + k))) || return 1
			[ "$s" = ok ] || break
		done
	fi
	echo "$s"
}

# The constructor's stages run one after the other, each failing with its
# own message, and some allocate a lot (a mempool preallocates dozens of
# elements): gallop through a stage, then bisect for the first allocation
# of the next one.  Every stage's first allocation is failed once, and every
# stage must say why it failed; at a few seconds per create under KASAN
# and TCG, failing all ~200 allocations one by one would take too long.
nth_rounds() {
	local lo hi mid stride cur m prev tries=0 stages
	prev=$(stage_at 1) || return 1
	stages="1: $prev"
	lo=1
	while [ "$prev" != ok ]; do
		case "$prev" in
		"no error logged") echo "fail-nth $lo: the create failed without saying why"; return 1 ;;
		esac
		stride=1
		while :; do
			hi=$((lo + stride))
			[ $hi -le 4000 ] || { echo "still failing at fail-nth $hi"; return 1; }
			cur=$(stage_at $hi) || return 1
			tries=$((tries + 1))
			[ "$cur" = "$prev" ] || break
			lo=$hi stride=$((stride * 2))
		done
		while [ $((hi - lo)) -gt 1 ]; do
			mid=$(((lo + hi) / 2))
			m=$(stage_at $mid) || return 1
			tries=$((tries + 1))
			if [ "$m" = "$prev" ]; then lo=$mid; else hi=$mid cur=$m; fi
		done
		stages="$stages; $hi: $cur"
		lo=$hi prev=$cur
	done
	echo "$tries creates; first failing allocation of each stage: $stages"
	# dirty log, region hash, context, devices, dm-io, kcopyd, worker, ...
	[ "$(tr ';' '\n' <<<"$stages" | wc -l)" -ge 6 ] || { echo "fewer stages than expected"; return 1; }
}

# Then every 1499th filtered allocation fails (a create over the disk log
# makes about 800, so about half the creates fail), during create, I/O
# (whose allocations come from mempools with reserves), messages,
# suspend/resume.
random_rounds() {
	local i ok=0 failed=0
	fault_attr $fs 100 -1
	echo 1499 >$fs/interval
	for ((i = 0; i < 20; i++)); do
		if dm create fs --table "$TABLE" 2>/dev/null; then
			ok=$((ok + 1))
			use_and_remove "round $i" || { fault_attr $fs 0 -1; return 1; }
		else
			failed=$((failed + 1))
			no_leftover "round $i" || { fault_attr $fs 0 -1; return 1; }
		fi
	done
	fault_attr $fs 0 -1
	echo "$ok creates succeeded, $failed failed"
	[ $ok -gt 0 ] || { echo "no create succeeded"; return 1; }
}

mark=$(kmsg_mark failslab)
KTAP_VERBOSE=1 ktap_check "fail-nth: each constructor stage fails cleanly and says why" nth_rounds
ktap_check_kmsg "failed constructors said why (device-mapper: ... error)" "$mark" \
	'device-mapper: (mirror|table)'
ktap_check "20 create/use/remove rounds with every 1499th of the module's allocations failing" random_rounds

resync_fresh() {
	dm create fs --table "$TABLE" && wait_for 180 mirror_in_sync fs
}
ktap_check "faults off: a mirror creates and resyncs" resync_fresh
ktap_check "fio verify on it" fio --name=v --filename=/dev/mapper/fs --rw=randwrite \
	--bs=4k --size=8M --direct=1 --ioengine=libaio --iodepth=8 --verify=crc32c \
	--verify_fatal=1 --output=/dev/null
unload() { dm remove fs && rmmod dm_mirror_rs; }
ktap_check "remove it and unload the module" unload

# ktap_done scans with kmemleak: nothing the failed constructors allocated
# may be left unreferenced.
ktap_done
