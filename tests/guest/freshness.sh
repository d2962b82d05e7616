#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Per-leg freshness (issue #11): a leg that missed a write to a region (its
# write failed, or the resync copy to it failed) must not serve reads of
# that region, nor be the resync source for it, although dm-raid1's status
# (which this module copies byte for byte) says every region is in sync.
#
#  a. No handle_errors, the non-default leg fails writes: NEW is written
#     (acknowledged: on leg 0 only), suspend + resume (the resync copy to
#     leg 1 fails and, without handle_errors, is marked in sync anyway:
#     status AA, all in sync), then 40 O_DIRECT reads per policy must all
#     return NEW; `io_balance show` says `stale 1` for leg 1, and
#     `io_balance default 1` is refused.
#  b. The same with the default leg failing writes: reads return NEW or
#     EIO, never OLD, before and after the resync, and the resync must not
#     copy the stale default leg over the only copy of NEW (leg 1's backing
#     device still holds NEW).
#  c. With handle_errors: the write to a failing leg is held; after the leg
#     is repaired a noflush suspend + resume requeues it and it completes;
#     then every policy reads NEW and the legs are identical.  These pass on
#     a module without freshness tracking too (the held write is re-issued
#     to every leg once the region is resynchronised): they are regression
#     coverage.  Only the `stale 0` check needs the new show field.
#  l. A read lease ends when a leg misses a write: with round_robin ios
#     1000 started on leg 1, the first read leaves a lease on leg 1 for the
#     next 999; leg 1 then misses NEW (no handle_errors), and after the
#     resync (which marks the region in sync, so that reads of it may take
#     a lease again) every read must return NEW. A lease that outlived the
#     missed write would send them to leg 1, which still holds OLD.
#  m. The same with a lease for two legs in turn: adaptive between two
#     measured equal legs leases the next reads to both in turn; leg 1 then
#     misses NEW, and every read must return NEW, before the resync as
#     after it, when each read of the block follows a read of a region both
#     legs hold.  A lease for both legs granted by such a read would send
#     every other read of the block to leg 1, which still holds OLD.  This
#     is regression coverage: a leg that missed a write is unusable for
#     reads and its region out of sync until the resync, and either keeps
#     it out of every lease, so a module whose lease ignores freshness (the
#     mutant tried) passes it too; the host lease and balancer tests guard
#     the turns themselves.
#  e. I/O-path error messages are rate limited: a full resync onto an
#     `error` leg fails one copy per region (2048 regions here) and must not
#     log a line for each.
#  f. presuspend_undo: a suspend interrupted (SIGKILL) while dm core waits
#     for an in-flight read to a slow leg must leave the mirror working:
#     not suspended, the resync carries on to the end without another
#     suspend/resume, and a write to a failing leg (handle_errors) is held,
#     not failed, until a noflush suspend hands it back.
#  g. A resync copy whose source read fails (no handle_errors, 3 legs) must
#     not write over the other legs: dm-raid1 writes what kcopyd's pages
#     held, destroying the one readable leg that had NEW.
#  d. A read error on a leg with an offset (8 GiB, then 2048 sectors on a
#     leg of exactly the mirror's size plus the offset): the read is retried
#     on the other leg, the leg is marked R, nothing oopses, and the mirror
#     can be removed.  Last, because on a module with the bug it oopses:
#     panic_on_oops is turned off around it so that the suite still ends
#     with its counts; devices a bug wedged are left in place (removing them
#     would hang the guest) instead of being torn down.
#
# DMMR_FRESHNESS_CASES="a g d" runs only those cases (in the order above),
# DMMR_FRESHNESS_POLICIES=1 cases a and b with round_robin only: for the
# debug kernel, where the whole suite would take hours under TCG.
#
# Runs in the guest: scripts/vm-run tests/guest/freshness.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

POLICIES=("round_robin ios 1" "weighted" "adaptive")
# DMMR_FRESHNESS_CASES: the cases to run (default all: "a b l m c e f g d"),
# DMMR_FRESHNESS_POLICIES: a and b with the first N policies only (the debug
# kernel run: tests/run --profile debug passes both).
CASES=" ${DMMR_FRESHNESS_CASES:-a b l m c e f g d} "
[[ "${DMMR_FRESHNESS_POLICIES:-3}" =~ ^[1-3]$ ]] ||
	ktap_skip_all "DMMR_FRESHNESS_POLICIES must be 1, 2 or 3"
POLICIES=("${POLICIES[@]:0:${DMMR_FRESHNESS_POLICIES:-3}}")
case_on() { [[ "$CASES" == *" $1 "* ]]; }
NREADS=40
SECTORS=8192 # 4 MiB: 8 regions of 1024 sectors
BLK=130      # the 4 KiB block the scenarios write (sectors 1040..1047: region 1)

# a: 5 per policy; b: 6 per policy; l: 4; m: 5; c: 9 per failing leg; e: 2; f: 7;
# g: 3; d: 5 per offset.
plan=0
! case_on a || plan=$((plan + 5 * ${#POLICIES[@]}))
! case_on b || plan=$((plan + 6 * ${#POLICIES[@]}))
! case_on l || plan=$((plan + 4))
! case_on m || plan=$((plan + 5))
! case_on c || plan=$((plan + 9 * 2))
! case_on e || plan=$((plan + 2))
! case_on f || plan=$((plan + 7))
! case_on g || plan=$((plan + 3))
! case_on d || plan=$((plan + 5 * 2))
ktap_plan $plan

modprobe -r dm_mirror 2>/dev/null || true
modprobe dm_mirror_rs || die "cannot load dm_mirror_rs"
modprobe dm-flakey || die "cannot load dm-flakey"
modprobe dm-delay || die "cannot load dm-delay"

# --- helpers -----------------------------------------------------------------

# `--`: words such as -1 are for the target, not options of dmsetup.
msg() { dmsetup message -- "$1" 0 io_balance "${@:2}"; }
# mkpat <text> <file>: a 4 KiB block holding <text>, padded with blanks.
mkpat() { printf '%-4095s\n' "$1" >"$2"; }
# write_block <dev> <file> [block]: one O_DIRECT 4 KiB write.
write_block() {
	dd if="$2" of="$1" bs=4096 seek="${3:-$BLK}" count=1 oflag=direct conv=notrunc status=none
}
# same_block <dev> <file> [block]: the device's block equals the file.
same_block() {
	dd if="$1" bs=4096 skip="${3:-$BLK}" count=1 iflag=direct status=none | cmp -s - "$2"
}
# count_reads <dev> <n> [block]: n O_DIRECT reads of the block, classified
# against $DMMR_WORK/new and $DMMR_WORK/old; prints "<new> <old> <other> <eio>".
count_reads() {
	local i new=0 old=0 other=0 eio=0 f=$DMMR_WORK/rd
	for ((i = 0; i < $2; i++)); do
		rm -f "$f"
		if ! timeout 60 dd if="$1" of="$f" bs=4096 skip="${3:-$BLK}" count=1 iflag=direct status=none 2>/dev/null; then
			eio=$((eio + 1))
		elif cmp -s "$f" "$DMMR_WORK/new"; then
			new=$((new + 1))
		elif cmp -s "$f" "$DMMR_WORK/old"; then
			old=$((old + 1))
		else
			other=$((other + 1))
		fi
	done
	echo "$new $old $other $eio"
}
counts_text() { local c=($1); echo "${c[0]} NEW, ${c[1]} OLD, ${c[2]} other, ${c[3]} EIO"; }
# Each leg's health character (status) and stale count (show; "-" when the
# leg line has no trailing "stale <N>").
leg_health() { dm status "$1" | awk '{ print $(7 + $4) }'; }
stale_counts() {
	dmsetup message "$1" 0 io_balance show |
		awk '$1 == "leg" { v = "-"; for (i = 4; i < NF; i++) if ($i == "stale") v = $(i + 1); printf "%s%s", sep, v; sep = " " } END { print "" }'
}
swap() { dm suspend "$1" && dm load "$1" --table "$2" && dm resume "$1"; }
lin() { echo "0 $SECTORS linear $1 0"; }
flk() { echo "0 $SECTORS flakey $1 0 0 1 1 error_writes"; }

# Devices a bug left unremovable (I/O that never completes, recovery that
# can never be stopped again): once there is one, the generic cleanup (which
# would hang on it) is off and finish() removes everything else itself.
WEDGED=()
abandon() {
	WEDGED+=("$@")
	DMMR_CLEANED=1
	ktap_diag "leaving $* in place: removing it would hang the guest"
}
finish() {
	local pass d left
	if [ ${#WEDGED[@]} -gt 0 ]; then
		ktap_diag "wedged devices left behind: ${WEDGED[*]}"
		for pass in 1 2 3; do
			for d in $(dmsetup info -c --noheadings -o name 2>/dev/null); do
				case " ${WEDGED[*]} " in *" $d "*) continue ;; esac
				timeout 30 dmsetup --noudevsync remove "$d" >/dev/null 2>&1 || true
			done
		done
		left=$(dmsetup info -c --noheadings -o name 2>/dev/null | tr '\n' ' ')
		ktap_diag "devices left: $left"
	fi
	ktap_done
}

# new_stack [features...]: fresh loops L[0] L[1], each under a dm-linear
# wrapper W[0] W[1], and a 2-leg mirror MR over the wrappers.
n=0
L=() W=()
new_stack() {
	n=$((n + 1))
	L=("$(mk_loop 4)" "$(mk_loop 4)")
	W=("w0_$n" "w1_$n")
	MR=fr_$n
	dm create "${W[0]}" --table "$(lin "${L[0]}")" &&
		dm create "${W[1]}" --table "$(lin "${L[1]}")" &&
		dm create "$MR" --table "0 $SECTORS mirror core 2 1024 nosync 2 /dev/mapper/${W[0]} 0 /dev/mapper/${W[1]} 0${1:+ $*}"
}
# Removes the scenario's devices; a mirror that cannot be removed is left.
drop_stack() {
	if timeout 60 dmsetup --noudevsync remove "$MR" >/dev/null 2>&1; then
		dm remove "${W[0]}" 2>/dev/null || true
		dm remove "${W[1]}" 2>/dev/null || true
		losetup -d "${L[0]}" "${L[1]}" 2>/dev/null || true
	else
		ktap_diag "could not remove $MR: $(dm status "$MR" 2>&1)"
		abandon "$MR" "${W[0]}" "${W[1]}"
	fi
}

# --- a, b: no handle_errors ----------------------------------------------------

# OLD on both legs, leg $1 starts failing writes, the policy $2 is set and
# NEW is written (acknowledged: the other leg took it).
nh_setup() {
	new_stack || return 1
	write_block "/dev/mapper/$MR" "$DMMR_WORK/old" || { echo "OLD write failed"; return 1; }
	same_block "${L[0]}" "$DMMR_WORK/old" && same_block "${L[1]}" "$DMMR_WORK/old" ||
		{ echo "OLD is not on both legs"; return 1; }
	# shellcheck disable=SC2086 # the policy is several words
	msg "$MR" $2 || return 1
	swap "${W[$1]}" "$(flk "${L[$1]}")" || return 1
	write_block "/dev/mapper/$MR" "$DMMR_WORK/new" || { echo "the NEW write was not acknowledged"; return 1; }
	dm status "$MR"
}
resync_cycle() {
	dm suspend "$MR" && dm resume "$MR" && wait_for 60 mirror_in_sync "$MR"
}
no_old() { local c=($1); [ "${c[1]}" = 0 ] && [ "${c[2]}" = 0 ]; }

nohandle_case() {
	local f=$1 pol=$2 tag c s
	tag="no handle_errors, leg $f fails writes, $pol"
	mkpat "OLD: $tag" "$DMMR_WORK/old"
	mkpat "NEW: $tag" "$DMMR_WORK/new"
	ktap_check "$tag: OLD on both legs, leg $f fails writes, NEW acknowledged" nh_setup "$f" "$pol"
	if [ "$f" = 0 ]; then
		# The region is out of sync: dm-raid1 reads it from the default
		# leg, which missed NEW.
		c=$(count_reads "/dev/mapper/$MR" $NREADS)
		if no_old "$c"; then
			ktap_pass "$tag: before the resync, $NREADS reads: NEW or EIO, never OLD ($(counts_text "$c"))"
		else
			ktap_fail "$tag: before the resync, $NREADS reads: NEW or EIO, never OLD" "$(counts_text "$c")"
		fi
	fi
	ktap_check "$tag: suspend + resume, the resync ends with every region in sync" resync_cycle
	ktap_diag "status after the resync: $(dm status "$MR")"
	c=$(count_reads "/dev/mapper/$MR" $NREADS)
	if [ "$f" = 1 ]; then
		ktap_check_eq "$tag: $NREADS reads after the resync all return NEW (NEW OLD other EIO)" \
			"$NREADS 0 0 0" "$c"
	else
		if no_old "$c"; then
			ktap_pass "$tag: after the resync, $NREADS reads: NEW or EIO, never OLD ($(counts_text "$c"))"
		else
			ktap_fail "$tag: after the resync, $NREADS reads: NEW or EIO, never OLD" "$(counts_text "$c")"
		fi
		ktap_check "$tag: the resync did not copy OLD over NEW on leg 1's backing device" \
			same_block "${L[1]}" "$DMMR_WORK/new"
	fi
	s=$(stale_counts "$MR")
	if [ "$f" = 1 ]; then
		ktap_check_eq "$tag: io_balance show: stale 0 for leg 0, stale 1 for leg 1" "0 1" "$s"
		ktap_check_fails "$tag: io_balance default 1 is refused (leg 1 is stale)" msg "$MR" default 1
	else
		ktap_check_eq "$tag: io_balance show: stale 1 for leg 0, stale 0 for leg 1" "1 0" "$s"
	fi
	[ "$s" != "- -" ] || dmsetup message "$MR" 0 io_balance show | ktap_diag
	drop_stack
}

if case_on a; then
	for p in "${POLICIES[@]}"; do
		nohandle_case 1 "$p"
	done
fi
if case_on b; then
	for p in "${POLICIES[@]}"; do
		nohandle_case 0 "$p"
	done
fi

# --- l: a read lease ends when a leg misses a write -----------------------------

# Leg 1 starts failing writes; NEW is written (acknowledged: leg 0 took it).
leg1_misses_new() {
	swap "${W[1]}" "$(flk "${L[1]}")" || return 1
	write_block "/dev/mapper/$MR" "$DMMR_WORK/new" || { echo "the NEW write was not acknowledged"; return 1; }
}

# OLD on both legs; reads leased to leg 1; leg 1 fails writes; NEW written.
lease_setup() {
	local r0 r1
	new_stack || return 1
	write_block "/dev/mapper/$MR" "$DMMR_WORK/old" || { echo "OLD write failed"; return 1; }
	msg "$MR" default 1 && msg "$MR" round_robin ios 1000 || return 1
	r0=$(reads_of "${L[1]}")
	dd if="/dev/mapper/$MR" of=/dev/null bs=4096 count=10 iflag=direct status=none || return 1
	r1=$(reads_of "${L[1]}")
	[ $((r1 - r0)) -ge 10 ] || { echo "the 10 reads did not go to leg 1 ($((r1 - r0)))"; return 1; }
	leg1_misses_new
}

lease_case() {
	local tag="read lease on leg 1, leg 1 misses a write" c
	mkpat "OLD: $tag" "$DMMR_WORK/old"
	mkpat "NEW: $tag" "$DMMR_WORK/new"
	ktap_check "$tag: OLD on both legs, 10 reads on leg 1 (round_robin ios 1000), NEW acknowledged" lease_setup
	ktap_check "$tag: suspend + resume, the resync ends with every region in sync" resync_cycle
	c=$(count_reads "/dev/mapper/$MR" $NREADS)
	ktap_check_eq "$tag: $NREADS reads after the resync all return NEW (NEW OLD other EIO)" \
		"$NREADS 0 0 0" "$c"
	ktap_check_eq "$tag: io_balance show: stale 0 for leg 0, stale 1 for leg 1" "0 1" "$(stale_counts "$MR")"
	drop_stack
}

! case_on l || lease_case

# --- m: a lease for two legs in turn ends when a leg misses a write -------------

# OLD on both legs; adaptive; non-contiguous reads of other blocks until
# both legs are measured and each took reads; leg 1 fails writes; NEW.
turns_setup() {
	local i a0 a1 b0 b1
	new_stack || return 1
	write_block "/dev/mapper/$MR" "$DMMR_WORK/old" || { echo "OLD write failed"; return 1; }
	msg "$MR" adaptive || return 1
	a0=$(reads_of "${L[0]}") a1=$(reads_of "${L[1]}")
	# Every other block of regions 2..7: no read continues the last.
	for ((i = 0; i < 200; i++)); do
		dd if="/dev/mapper/$MR" of=/dev/null bs=4096 skip=$((256 + 2 * i)) count=1 \
			iflag=direct status=none || return 1
	done
	b0=$(reads_of "${L[0]}") b1=$(reads_of "${L[1]}")
	echo "200 reads: $((b0 - a0)) on leg 0, $((b1 - a1)) on leg 1"
	[ $((b0 - a0)) -ge 50 ] && [ $((b1 - a1)) -ge 50 ] || { echo "the legs did not share the reads"; return 1; }
	leg1_misses_new
}

turns_case() {
	local tag="adaptive, equal legs in turn, leg 1 misses a write" c
	mkpat "OLD: $tag" "$DMMR_WORK/old"
	mkpat "NEW: $tag" "$DMMR_WORK/new"
	ktap_check "$tag: OLD on both legs, 200 reads shared, NEW acknowledged" turns_setup
	c=$(count_reads "/dev/mapper/$MR" $NREADS)
	ktap_check_eq "$tag: $NREADS reads before the resync all return NEW (NEW OLD other EIO)" \
		"$NREADS 0 0 0" "$c"
	ktap_check "$tag: suspend + resume, the resync ends with every region in sync" resync_cycle
	c=$(count_reads_after_others "/dev/mapper/$MR" $NREADS)
	ktap_check_eq "$tag: $NREADS reads after the resync, each after a read of region 2, all return NEW (NEW OLD other EIO)" \
		"$NREADS 0 0 0" "$c"
	ktap_check_eq "$tag: io_balance show: stale 0 for leg 0, stale 1 for leg 1" "0 1" "$(stale_counts "$MR")"
	drop_stack
}

# count_reads_after_others <dev> <n>: count_reads, each read of the block
# after a read of another block of region 2 (never contiguous).
count_reads_after_others() {
	local i total=(0 0 0 0) c
	for ((i = 0; i < $2; i++)); do
		dd if="$1" of=/dev/null bs=4096 skip=$((256 + 2 * i)) count=1 iflag=direct status=none
		c=($(count_reads "$1" 1))
		total=($((total[0] + c[0])) $((total[1] + c[1])) $((total[2] + c[2])) $((total[3] + c[3])))
	done
	echo "${total[*]}"
}

! case_on m || turns_case

# --- c: handle_errors: the write is held until the repair ------------------------

h_setup() {
	new_stack 1 handle_errors || return 1
	write_block "/dev/mapper/$MR" "$DMMR_WORK/old" || { echo "OLD write failed"; return 1; }
	same_block "${L[0]}" "$DMMR_WORK/old" && same_block "${L[1]}" "$DMMR_WORK/old" ||
		{ echo "OLD is not on both legs"; return 1; }
	swap "${W[$1]}" "$(flk "${L[$1]}")"
}
# held <leg> <pid>: the leg is marked D and the write has not completed.
held() {
	local rc=0
	wait_for 20 bash -c "dmsetup status $MR | awk '{ exit substr(\$(7 + \$4), $1 + 1, 1) != \"D\" }'" ||
		{ echo "leg $1 never marked D: $(dm status "$MR")"; }
	sleep 2
	if ! kill -0 "$2" 2>/dev/null; then
		wait "$2" || rc=$?
		echo "the write completed (status $rc) instead of being held"
		return 1
	fi
}
# release <leg> <pid>: repair the leg, noflush suspend + resume; the held
# write must complete successfully.
release() {
	local rc=0
	swap "${W[$1]}" "$(lin "${L[$1]}")" || return 1
	dm suspend --noflush "$MR" && dm resume "$MR" || return 1
	if ! wait_gone 30 "$2"; then
		echo "the write is still not complete 30 s after the resume"
		return 1
	fi
	wait "$2" || rc=$?
	[ $rc = 0 ] || { echo "the write failed (status $rc)"; return 1; }
}
legs_identical() {
	cmp -n $((SECTORS * 512)) "${L[0]}" "${L[1]}"
}

handle_case() {
	local f=$1 tag pid c p
	tag="handle_errors, leg $f fails writes"
	mkpat "OLD: $tag" "$DMMR_WORK/old"
	mkpat "NEW: $tag" "$DMMR_WORK/new"
	ktap_check "$tag: OLD on both legs, leg $f fails writes" h_setup "$f"
	write_block "/dev/mapper/$MR" "$DMMR_WORK/new" 2>/dev/null &
	pid=$!
	ktap_check "$tag: the NEW write is held (leg $f marked D, write not completed)" held "$f" "$pid"
	ktap_check "$tag: leg $f repaired, noflush suspend + resume: the held write completes" release "$f" "$pid"
	if kill -0 "$pid" 2>/dev/null; then
		abandon "$MR" "${W[0]}" "${W[1]}"
	fi
	ktap_check "$tag: the resync ends with every region in sync" wait_for 60 mirror_in_sync "$MR"
	ktap_diag "status: $(dm status "$MR")"
	for p in "${POLICIES[@]}"; do
		# shellcheck disable=SC2086 # the policy is several words
		msg "$MR" $p || ktap_diag "message $p failed"
		c=$(count_reads "/dev/mapper/$MR" $NREADS)
		ktap_check_eq "$tag: $p: $NREADS reads all return NEW (NEW OLD other EIO)" "$NREADS 0 0 0" "$c"
	done
	ktap_check "$tag: legs identical over the mirror's range" legs_identical
	ktap_check_eq "$tag: io_balance show: no leg stale (stale 0 on both)" "0 0" "$(stale_counts "$MR")"
	case " ${WEDGED[*]} " in *" $MR "*) ;; *) drop_stack ;; esac
}

if case_on c; then
	handle_case 1
	handle_case 0
fi

# --- e: error messages of the I/O path are rate limited ---------------------
if case_on e; then
	RL_SECTORS=32768 # 16 MiB in 2048 regions of 16 sectors (dm-log: power of 2, >= 2)
	RL_REGIONS=$((RL_SECTORS / 16))
	rl_loop=$(mk_loop 16)
	rl_mark=$(kmsg_mark ratelimit)
	rl_t0=$SECONDS
	rl_resync() {
		dm create rl_err --table "0 $RL_SECTORS error" &&
			dm create rl --table "0 $RL_SECTORS mirror core 1 16 2 $rl_loop 0 /dev/mapper/rl_err 0" &&
			wait_for 300 mirror_in_sync rl
	}
	ktap_check "full resync of $RL_REGIONS regions onto an error leg ends (failed copies marked in sync)" rl_resync
	rl_t=$((SECONDS - rl_t0))
	sleep 1
	rl_lines=$(kmsg_since "$rl_mark" | grep -cE 'device-mapper: mirror:|callbacks suppressed' || true)
	# printk's rate limit: 10 lines per 5 s per call site, plus a "callbacks
	# suppressed" line each interval.  At most 100, or 4 per second of resync
	# if it took longer than 25 s; always far below one line per region.
	rl_max=$((rl_t * 4 > 100 ? rl_t * 4 : 100))
	[ $rl_max -lt $((RL_REGIONS / 4)) ] || rl_max=$((RL_REGIONS / 4))
	ktap_diag "resync took ${rl_t} s; mirror lines logged: $rl_lines"
	if [ "$rl_lines" -le $rl_max ]; then
		ktap_pass "at most $rl_max mirror log lines for $RL_REGIONS failed copies ($rl_lines)"
	else
		ktap_fail "at most $rl_max mirror log lines for $RL_REGIONS failed copies" "got $rl_lines; the first:" \
			"$(kmsg_since "$rl_mark" | grep -E 'device-mapper: mirror:' | head -n 3)"
	fi
	dm remove rl 2>/dev/null || ktap_diag "could not remove rl"
	dm remove rl_err 2>/dev/null || true
fi

# --- f: presuspend_undo ------------------------------------------------------------
if case_on f; then
	# Leg 0 reads in 150 ms (the resync source: 128 regions take ~20 s), leg 1
	# reads in 8 s (writes at once): a read of an in-sync region sent to leg 1
	# is in flight long enough to interrupt a suspend waiting for it.
	PU_SECTORS=8192 # 4 MiB, 128 regions of 64 sectors
	pu_l0=$(mk_loop 4) pu_l1=$(mk_loop 4)
	dd if=/dev/urandom of="$DMMR_WORK/pu" bs=4096 count=2 status=none
	sync_count() { dm status "$1" | awk '{ split($(5 + $4), r, "/"); print r[1] }'; }
	sync_at_least() { [ "$(sync_count "$1")" -ge "$2" ]; }
	pu_setup() {
		dm create pa --table "0 $PU_SECTORS delay $pu_l0 0 150 $pu_l0 0 0" &&
			dm create pb --table "0 $PU_SECTORS delay $pu_l1 0 8000 $pu_l1 0 0" &&
			dm create pu --table "0 $PU_SECTORS mirror core 1 64 2 /dev/mapper/pa 0 /dev/mapper/pb 0 1 handle_errors" ||
			return 1
		# Region 0 in sync, then its blocks written (to both legs).
		wait_for 60 sync_at_least pu 2 ||
			{ echo "region 0 never in sync: $(dm status pu)"; return 1; }
		dd if="$DMMR_WORK/pu" of=/dev/mapper/pu bs=4096 count=2 oflag=direct status=none || return 1
		# Reads of in-sync regions go to leg 1 only.
		msg pu weight 0 0 && msg pu weighted || return 1
		! mirror_in_sync pu || { echo "already in sync: the test needs a mirror mid-resync"; return 1; }
		dm status pu
	}
	pu_ok=0
	if pu_setup >"$DMMR_WORK/pu.out" 2>&1; then
		pu_ok=1
		ktap_pass "mirror mid-resync, leg 1 reads in 8 s, reads of in-sync regions on leg 1"
		ktap_diag "status: $(dm status pu)"
	else
		ktap_fail "mirror mid-resync, leg 1 reads in 8 s, reads of in-sync regions on leg 1" "$(cat "$DMMR_WORK/pu.out")"
	fi
	pu_rd=$DMMR_WORK/pu.rd
	rm -f "$pu_rd"
	dd if=/dev/mapper/pu of="$pu_rd" bs=4096 count=1 iflag=direct status=none &
	rdpid=$!
	sleep 1
	dmsetup --noudevsync suspend pu &
	spid=$!
	sleep 2
	pu_interrupted=0
	if kill -0 "$spid" 2>/dev/null && kill -0 "$rdpid" 2>/dev/null; then
		ktap_pass "dmsetup suspend is blocked waiting for the in-flight read"
		kill -KILL "$spid"
		wait "$spid" 2>/dev/null || true
		pu_interrupted=1
	else
		ktap_fail "dmsetup suspend is blocked waiting for the in-flight read" \
			"suspend running: $(kill -0 "$spid" 2>/dev/null && echo yes || echo no)," \
			"read running: $(kill -0 "$rdpid" 2>/dev/null && echo yes || echo no)"
		wait "$spid" 2>/dev/null || true
	fi
	pu_state=$(dmsetup info pu | sed -n 's/^State: *//p')
	ktap_check_eq "after SIGKILL the suspend is undone: State ACTIVE (dmsetup info)" ACTIVE "$pu_state"
	[ "$pu_state" != SUSPENDED ] || dm resume pu
	pu_read_ok() {
		wait_gone 30 "$rdpid" || { echo "the read has not completed"; return 1; }
		wait "$rdpid" || { echo "the read failed"; return 1; }
		cmp -n 4096 "$pu_rd" "$DMMR_WORK/pu"
	}
	ktap_check "the in-flight read completes with the right data" pu_read_ok
	# The resync must go on by itself.  It moves a region every ~0.15 s: no
	# progress for 15 s means recovery is stopped.
	pu_resync() {
		local last now same=0 i
		last=$(sync_count pu)
		for ((i = 0; i < 180; i++)); do
			mirror_in_sync pu && return 0
			sleep 1
			now=$(sync_count pu)
			if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; fi
			last=$now
			[ $same -lt 15 ] || { echo "no progress for 15 s: $(dm status pu)"; return 1; }
		done
		echo "not in sync after 180 s: $(dm status pu)"
		return 1
	}
	pu_synced=0
	if [ $pu_interrupted = 1 ] && [ $pu_ok = 1 ]; then
		ktap_diag "sync count after the interrupted suspend: $(sync_count pu)"
		ktap_check "the resync continues to the end without another suspend/resume" pu_resync
		mirror_in_sync pu && pu_synced=1
	else
		ktap_skip "the resync continues to the end without another suspend/resume" \
			"no interrupted suspend of a mirror mid-resync (see above)"
		mirror_in_sync pu && pu_synced=1
	fi
	if [ $pu_synced = 0 ]; then
		# Recovery stopped and never restarted: the next presuspend (suspend
		# or remove) would wait for it forever.
		abandon pu pa pb
	fi
	# A write failing on leg 1 after the interrupted suspend: held, not failed.
	swap pb "0 $PU_SECTORS flakey $pu_l1 0 0 1 1 error_writes" || ktap_diag "cannot make leg 1 fail writes"
	dd if=/dev/urandom of="$DMMR_WORK/pu2" bs=4096 count=1 status=none
	write_block /dev/mapper/pu "$DMMR_WORK/pu2" 0 2>/dev/null &
	wpid=$!
	MR=pu
	ktap_check "a write that fails on leg 1 afterwards is held (handle_errors), not failed" held 1 "$wpid"
	pu_release() {
		swap pb "0 $PU_SECTORS linear $pu_l1 0" || return 1
		dm suspend --noflush pu && dm resume pu || return 1
		wait_gone 30 "$wpid" || { echo "the write is still not complete"; return 1; }
		wait "$wpid" || { echo "the write failed"; return 1; }
		same_block /dev/mapper/pu "$DMMR_WORK/pu2" 0 || { echo "its data does not read back"; return 1; }
	}
	if [ $pu_synced = 1 ]; then
		ktap_check "leg 1 repaired, noflush suspend + resume: the held write completes, data reads back" pu_release
		if kill -0 "$wpid" 2>/dev/null; then
			abandon pu pa pb
		else
			dm remove pu && dm remove pa && dm remove pb || ktap_diag "could not remove pu, pa, pb"
		fi
	else
		ktap_skip "leg 1 repaired, noflush suspend + resume: the held write completes, data reads back" \
			"recovery never restarted: a suspend of this mirror would hang"
	fi
fi

# --- g: a resync copy whose source read fails writes nothing ----------------------

# Three legs, no handle_errors: leg 0 (the default, the copy source) fails
# reads, leg 2 fails writes.  NEW reaches legs 0 and 1 (acknowledged), the
# region goes out of sync and its copy from leg 0 fails to read.  dm-raid1
# (kcopyd IGNORE_ERROR) then writes what kcopyd's pages held over leg 1,
# the one readable leg with NEW; the copy must stop instead, and leg 1 go on
# serving NEW.
cs_setup() {
	local i
	n=$((n + 1))
	L=("$(mk_loop 4)" "$(mk_loop 4)" "$(mk_loop 4)")
	W=("w0_$n" "w1_$n" "w2_$n")
	MR=fr_$n
	for i in 0 1 2; do
		dm create "${W[$i]}" --table "$(lin "${L[$i]}")" || return 1
	done
	dm create "$MR" --table "0 $SECTORS mirror core 2 1024 nosync 3 /dev/mapper/${W[0]} 0 /dev/mapper/${W[1]} 0 /dev/mapper/${W[2]} 0" ||
		return 1
	write_block "/dev/mapper/$MR" "$DMMR_WORK/old" || { echo "OLD write failed"; return 1; }
	msg "$MR" round_robin ios 1 || return 1
	swap "${W[0]}" "0 $SECTORS flakey ${L[0]} 0 0 1 1 error_reads" &&
		swap "${W[2]}" "$(flk "${L[2]}")" || return 1
	write_block "/dev/mapper/$MR" "$DMMR_WORK/new" || { echo "the NEW write was not acknowledged"; return 1; }
	dm status "$MR"
	# The out-of-sync region is copied after the next resume (the full
	# resync then clears the error marks: the status says AAA again).
	local mark
	mark=$(kmsg_mark copy-read)
	resync_cycle || { echo "the resync did not end: $(dm status "$MR")"; return 1; }
	dm status "$MR"
	kmsg_grep "$mark" "Unable to read primary mirror during recovery" ||
		{ echo "no failed copy read logged"; return 1; }
}
copy_read_fail_case() {
	local tag="no handle_errors, the copy source fails reads" c
	mkpat "OLD: $tag" "$DMMR_WORK/old"
	mkpat "NEW: $tag" "$DMMR_WORK/new"
	ktap_check "$tag: 3 legs, NEW acknowledged on legs 0 and 1, the copy from leg 0 failed" cs_setup
	ktap_diag "status: $(dm status "$MR")"
	ktap_check "$tag: leg 1's backing device still holds NEW (nothing written over it)" \
		same_block "${L[1]}" "$DMMR_WORK/new"
	c=$(count_reads "/dev/mapper/$MR" $NREADS)
	ktap_check_eq "$tag: $NREADS reads all return NEW, from leg 1 (NEW OLD other EIO)" "$NREADS 0 0 0" "$c"
	if timeout 60 dmsetup --noudevsync remove "$MR" >/dev/null 2>&1; then
		dm remove "${W[0]}" && dm remove "${W[1]}" && dm remove "${W[2]}" || true
		losetup -d "${L[0]}" "${L[1]}" "${L[2]}" 2>/dev/null || true
	else
		abandon "$MR" "${W[@]}"
	fi
}
! case_on g || copy_read_fail_case

# --- d: a failed read on a leg with an offset --------------------------------------

# oops_case <offset> <error device length>
oops_case() {
	local off=$1 elen=$2 tag l mark i fails=0 hung=0 pid blk nblk=$((SECTORS / 8)) rep
	tag="read error on a leg at offset $off"
	n=$((n + 1))
	l=$(mk_loop 4)
	dd if=/dev/urandom of="$DMMR_WORK/opat" bs=1M count=4 status=none
	dd if="$DMMR_WORK/opat" of="$l" bs=1M oflag=direct status=none
	ktap_check "$tag: mirror over a loop and an error device of $elen sectors, round_robin ios 1" \
		bash -c "dmsetup --noudevsync create oe_$n --table '0 $elen error' &&
			dmsetup --noudevsync create oo_$n --table '0 $SECTORS mirror core 2 1024 nosync 2 $l 0 /dev/mapper/oe_$n $off 1 handle_errors' &&
			dmsetup message oo_$n 0 io_balance round_robin ios 1"
	mark=$(kmsg_mark "oops$n")
	echo 0 >/proc/sys/kernel/panic_on_oops
	# From the end of the device: the leg-relative sector of a read there
	# lies past the mirror's last region.
	for ((i = 0; i < 20; i++)); do
		blk=$((nblk - 1 - i))
		rm -f "$DMMR_WORK/ord"
		dd if="/dev/mapper/oo_$n" of="$DMMR_WORK/ord" bs=4096 skip=$blk count=1 iflag=direct status=none 2>/dev/null &
		pid=$!
		if ! wait_gone 30 $pid; then
			hung=1
			ktap_diag "read $i (block $blk) did not complete in 30 s"
			break
		fi
		dd if="$DMMR_WORK/opat" of="$DMMR_WORK/oexp" bs=4096 skip=$blk count=1 status=none
		if ! wait $pid || ! cmp -s "$DMMR_WORK/ord" "$DMMR_WORK/oexp"; then
			fails=$((fails + 1))
			ktap_diag "read $i (block $blk) failed or returned wrong data"
		fi
		kmsg_grep "$mark" "$KERNEL_REPORT_ERE" && { hung=1; break; }
	done
	echo 1 >/proc/sys/kernel/panic_on_oops
	if [ $hung = 0 ] && [ $fails = 0 ]; then
		ktap_pass "$tag: 20 O_DIRECT reads all succeed with the right data"
	else
		ktap_fail "$tag: 20 O_DIRECT reads all succeed with the right data" "$fails bad reads, hung/report: $hung"
	fi
	ktap_check_eq "$tag: status shows the error leg R" AR "$(leg_health "oo_$n")"
	if rep=$(kernel_splats "$mark"); then
		ktap_fail "$tag: no Oops/BUG/WARNING logged" "$rep"
	else
		ktap_pass "$tag: no Oops/BUG/WARNING logged"
	fi
	if [ $hung = 0 ]; then
		ktap_check "$tag: the mirror and the error device can be removed" \
			bash -c "timeout 60 dmsetup --noudevsync remove oo_$n && dmsetup --noudevsync remove oe_$n"
	else
		ktap_fail "$tag: the mirror and the error device can be removed" "not tried: the read hung or the kernel oopsed"
		abandon "oo_$n" "oe_$n"
	fi
}

if case_on d; then
	oops_case 8589934592 $((8589934592 + SECTORS))
	oops_case 2048 $((2048 + SECTORS))
fi

finish
