# SPDX-License-Identifier: GPL-2.0
#
# tests/lib.sh: KTAP output and shared helpers for the guest suites.
# Sourced by every tests/guest/*.sh (inside the VM, as /dmmr/tests/lib.sh):
#
#	. /dmmr/tests/lib.sh
#	ktap_plan 3
#	ktap_check "dmsetup talks to the kernel" dm version
#	...
#	ktap_done
#
# Output follows KTAP v1 (Documentation/dev-tools/ktap.rst): tests/run
# counts the top-level `ok N`, `not ok N` and `# SKIP` lines.  A suite
# also fails when the kernel logged a WARN/BUG/Oops while it ran, or when
# it dies before ktap_done (set -e, a helper's die): the EXIT trap reports
# that and cleans up its dm and loop devices.

set -euo pipefail

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# No udev in the guest: libdevmapper creates the /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1 LVM_SUPPRESS_FD_WARNINGS=1

KTAP_N=0 KTAP_PASS=0 KTAP_FAIL=0 KTAP_SKIP=0 KTAP_PLAN=
KTAP_DONE=0
# vm-run names the suite (the script itself is always /dmmr/run/script).
KTAP_SUITE=${DMMR_SUITE:-$(basename "${0%.sh}")}
# Set to 1 in a suite that provokes kernel warnings on purpose.
KTAP_ALLOW_SPLAT=${KTAP_ALLOW_SPLAT:-0}
# Set to 1 to see the output of passing ktap_check commands too.
KTAP_VERBOSE=${KTAP_VERBOSE:-0}
DMMR_WORK=${DMMR_WORK:-/tmp/dmmr-$KTAP_SUITE}
mkdir -p "$DMMR_WORK"

# The settings the guest's /etc/lvm/lvm.conf already holds, for tools that
# are handed an explicit --config (or a different LVM_SYSTEM_DIR).
LVM_CONFIG='devices { obtain_device_list_from_udev=0 } activation { udev_sync=0 udev_rules=0 monitoring=0 } backup { backup=0 archive=0 }'

# ---------------------------------------------------------------- KTAP

ktap_plan() {
	KTAP_PLAN=$1
	echo "KTAP version 1"
	echo "1..$1"
}

# Print each argument (or each line of stdin) as a KTAP diagnostic line.
ktap_diag() {
	if [ $# -gt 0 ]; then
		printf '# %s\n' "$@"
	else
		sed 's/^/# /'
	fi
}

ktap_pass() {
	KTAP_N=$((KTAP_N + 1)) KTAP_PASS=$((KTAP_PASS + 1))
	echo "ok $KTAP_N - $1"
}

# ktap_fail "desc" [diagnostic...]
ktap_fail() {
	local d=$1
	shift
	KTAP_N=$((KTAP_N + 1)) KTAP_FAIL=$((KTAP_FAIL + 1))
	[ $# -eq 0 ] || ktap_diag "$@"
	echo "not ok $KTAP_N - $d"
}

# ktap_skip "desc" "reason"
ktap_skip() {
	KTAP_N=$((KTAP_N + 1)) KTAP_SKIP=$((KTAP_SKIP + 1))
	echo "ok $KTAP_N - $1 # SKIP ${2:-}"
}

# Skip every planned test not reported yet.
ktap_skip_rest() {
	while [ -n "$KTAP_PLAN" ] && [ "$KTAP_N" -lt "$KTAP_PLAN" ]; do
		ktap_skip "not run" "$1"
	done
}

# The whole suite does not apply (before ktap_plan): one skip, clean exit.
ktap_skip_all() {
	echo "KTAP version 1"
	echo "1..0 # SKIP $1"
	KTAP_DONE=1
	exit 0
}

# ktap_result "desc" <status>: ok when status is 0.
ktap_result() {
	if [ "$2" = 0 ]; then ktap_pass "$1"; else ktap_fail "$1" "exit status $2"; fi
}

# ktap_check "desc" cmd args...: run the command (in this shell, so
# functions work); ok if it succeeds.  Its output is shown as diagnostics
# when it fails (always with KTAP_VERBOSE=1).
ktap_check() {
	local d=$1 rc=0 out
	shift
	out=$DMMR_WORK/.ktap-out
	"$@" >"$out" 2>&1 || rc=$?
	if [ $rc = 0 ]; then
		ktap_pass "$d"
		[ "$KTAP_VERBOSE" = 0 ] || ktap_diag <"$out"
	else
		ktap_diag "\$ ${*@Q}"
		tail -n 40 "$out" | ktap_diag
		ktap_fail "$d" "exit status $rc"
	fi
	return 0
}

# ktap_check_fails "desc" cmd args...: ok if the command FAILS.
ktap_check_fails() {
	local d=$1 rc=0 out
	shift
	out=$DMMR_WORK/.ktap-out
	"$@" >"$out" 2>&1 || rc=$?
	if [ $rc != 0 ]; then
		ktap_pass "$d"
	else
		ktap_diag "\$ ${*@Q}"
		tail -n 40 "$out" | ktap_diag
		ktap_fail "$d" "succeeded but should have failed"
	fi
	return 0
}

# ktap_check_eq "desc" expected actual
ktap_check_eq() {
	if [ "$2" = "$3" ]; then
		ktap_pass "$1"
	else
		ktap_fail "$1" "expected: $2" "got:      $3"
	fi
}

# Prints the summary; exits non-zero on any failure, a plan mismatch, a
# kernel splat since the suite started, or (debug kernel) a kmemleak report.
# Cleans up first, so that leaks and splats of the teardown count too.
ktap_done() {
	local rc=0 splat leaks
	KTAP_DONE=1
	if [ -n "$KTAP_PLAN" ] && [ "$KTAP_N" != "$KTAP_PLAN" ]; then
		ktap_diag "plan mismatch: planned $KTAP_PLAN, ran $KTAP_N"
		rc=1
	fi
	dmmr_cleanup
	if kmemleak_available; then
		# Unloading frees the module's own state: what it leaked stays.
		if [ -d /sys/module/dm_mirror_rs ]; then
			rmmod dm_mirror_rs 2>/dev/null || true
		fi
		if leaks=$(kmemleak_check); then
			ktap_diag "kmemleak reports unreferenced objects:"
			ktap_diag <<<"$leaks"
			rc=1
		fi
	fi
	if [ "$KTAP_ALLOW_SPLAT" = 0 ] && splat=$(kernel_splats "$KMSG_SUITE_MARK"); then
		ktap_diag "the kernel logged a warning/bug while the suite ran:"
		ktap_diag <<<"$splat"
		rc=1
	fi
	[ "$KTAP_FAIL" = 0 ] || rc=1
	echo "# $KTAP_SUITE: $KTAP_PASS passed, $KTAP_FAIL failed, $KTAP_SKIP skipped"
	exit $rc
}

# ---------------------------------------------------------- kernel log
# ktap_rejects_table <ERE> <table> [what]: creating a device with <table>
# must fail, the kernel must log a line matching <ERE> (the reason), and no
# device may be left behind.  The test is named "rejects '<what>'".
ktap_rejects_table() {
	local expect=$1 table=$2 what=${3:-$2} mark rc=0
	mark=$(kmsg_mark)
	dm create bad --table "$table" >/dev/null 2>&1 && rc=1
	if [ $rc = 0 ] && ! kmsg_grep "$mark" "$expect"; then
		ktap_diag "no kernel log line matching /$expect/; log:"
		kmsg_since "$mark" | tail -n 5 | ktap_diag
		rc=1
	fi
	if dm info bad >/dev/null 2>&1; then
		ktap_diag "device 'bad' left behind"
		dm remove bad >/dev/null 2>&1 || true
		rc=1
	fi
	ktap_result "rejects '$what'" $rc
}


KMSG_SEQ=0
# kmsg_mark [label]: write a unique mark into the kernel log and print it;
# kmsg_since <mark> prints what the kernel logged after it.
kmsg_mark() {
	KMSG_SEQ=$((KMSG_SEQ + 1))
	local m="dmmr-mark:$KTAP_SUITE:$$:$KMSG_SEQ${1:+:$1}"
	# Level 6 (info): in the log, but below the console's loglevel.
	echo "<6>$m" >/dev/kmsg
	echo "$m"
}

kmsg_since() {
	# Everything after the last line holding the mark (all of the log if the
	# mark has already rotated out of the ring buffer).
	dmesg | awk -v m="$1" '
		{ line[NR] = $0; if (index($0, m)) start = NR }
		END { for (i = start + 1; i <= NR; i++) print line[i] }'
}

# kmsg_grep <mark> <ERE>: did the kernel log a matching line since <mark>?
kmsg_grep() {
	# Not grep -q: it exits at the first match and, under pipefail, the
	# writer's SIGPIPE would turn a match into a failure.
	kmsg_since "$1" | grep -E -- "$2" >/dev/null
}

# kmsg_wait <mark> <ERE> [seconds=10]: wait for a matching kernel log line.
kmsg_wait() {
	local i
	for ((i = 0; i < ${3:-10} * 10; i++)); do
		kmsg_grep "$1" "$2" && return 0
		sleep 0.1
	done
	return 1
}

# ktap_check_kmsg "desc" <mark> <ERE>: ok if the kernel logged it since <mark>.
ktap_check_kmsg() {
	if kmsg_grep "$2" "$3"; then
		ktap_pass "$1"
	else
		ktap_diag "no kernel log line matching /$3/ since $2; the log since then:"
		kmsg_since "$2" | tail -n 20 | ktap_diag
		ktap_fail "$1"
	fi
}

# The headlines of kernel reports (one ERE, shared with tests/run and
# scripts/lvm2-tests): WARN, BUG and oops, KASAN, KFENCE, UBSAN, lockdep
# (its reports start with WARNING:), "BUG: sleeping function called from
# invalid context", kmemleak, a Rust panic, hung tasks.
KERNEL_REPORT_ERE=$(cat "$(dirname "${BASH_SOURCE[0]}")/kernel-reports.ere")

# Kernel warnings, bugs and oopses logged since <mark>; fails if none.
kernel_splats() {
	local s
	# Collected first: `| head` would SIGPIPE grep and, under pipefail,
	# hide a long splat.
	local ere=$KERNEL_REPORT_ERE
	# A suite's own check also counts any bare stack dump, unless the suite
	# injects allocation failures: then warn_alloc()'s dumps are expected.
	[ "${KTAP_ALLOC_FAILURES_EXPECTED:-0}" != 0 ] || ere="$ere|Call Trace:"
	s=$(kmsg_since "$1" |
		grep -E "$ere" ||
		true)
	[ -n "$s" ] || return 1
	head -n 20 <<<"$s"
}

# ------------------------------------------------------------ kmemleak

KMEMLEAK=/sys/kernel/debug/kmemleak

# The debug kernel profile has kmemleak; the base one does not.
kmemleak_available() {
	[ -w "$KMEMLEAK" ]
}

# Forget what was unreferenced before now (boot, earlier suites).
kmemleak_reset() {
	echo scan >"$KMEMLEAK" && echo clear >"$KMEMLEAK"
}

# Prints the objects kmemleak finds unreferenced now and fails if none.
# kmemleak reports an object only once it is 5 s old, and an object a
# stale stack or register still points to only on a later scan: wait,
# then scan twice.
kmemleak_check() {
	local r
	sleep 6
	echo scan >"$KMEMLEAK"
	echo scan >"$KMEMLEAK"
	r=$(cat "$KMEMLEAK")
	[ -n "$r" ] || return 1
	head -n 60 <<<"$r"
}

# ------------------------------------------------------------- devices

dm() { dmsetup --noudevsync "$@"; }

# mk_loop <size_mb>: a loop device over a sparse file on tmpfs; prints
# /dev/loopN.  Removed again by the EXIT trap.
DMMR_LOOPS=()
mk_loop() {
	local f dev
	f=$(mktemp "$DMMR_WORK/loop.XXXXXX")
	truncate -s "${1}M" "$f"
	dev=$(losetup -f --show "$f")
	DMMR_LOOPS+=("$dev")
	echo "$dev"
}

# dev_majmin /dev/x: "major:minor", the form dm tables and status use.
dev_majmin() {
	stat -Lc '%Hr:%Lr' "$1"
}

# dev_sectors /dev/x: size in 512-byte sectors.
dev_sectors() {
	blockdev --getsz "$1"
}

# wait_for <seconds> cmd args...: poll (every 0.1 s) until cmd succeeds.
wait_for() {
	local t=$1 i
	shift
	for ((i = 0; i < t * 10; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# wait_gone <seconds> <pid>: wait until the background job has ended.
wait_gone() {
	local i
	for ((i = 0; i < $1 * 10; i++)); do
		kill -0 "$2" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# mirror_in_sync <dm-name>: the mirror status shows every region in sync
# ("<in-sync>/<total>" with both equal).
mirror_in_sync() {
	dm status "$1" | awk '{ split($(4 + $4 + 1), r, "/"); exit !(r[1] == r[2] && r[2] > 0) }'
}

# reads_of <dev>: the reads a block device completed (first field of its
# stat file).
reads_of() { awk '{ print $1 }' "/sys/dev/block/$(dev_majmin "$1")/stat"; }

# read_split_dev <dev> <count> <leg0> <leg1>: <count> O_DIRECT 4 KiB reads
# of <dev>; prints "<reads on leg0> <reads on leg1>" as the legs' own
# counters saw them.
read_split_dev() {
	local a0 b0 a1 b1
	a0=$(reads_of "$3") b0=$(reads_of "$4")
	dd if="$1" of=/dev/null bs=4k count="$2" iflag=direct status=none
	a1=$(reads_of "$3") b1=$(reads_of "$4")
	echo "$((a1 - a0)) $((b1 - b0))"
}

# need_module: skip the whole suite when the Rust module was not shipped.
need_module() {
	[ -f /dmmr/dm_mirror_rs.ko ] ||
		ktap_skip_all "no /dmmr/dm_mirror_rs.ko (build it with: make module)"
}

# at_exit "command": run it at exit, before the generic cleanup (suites
# must not replace the EXIT trap).  Last registered runs first.
DMMR_AT_EXIT=()
at_exit() {
	DMMR_AT_EXIT=("$1" "${DMMR_AT_EXIT[@]}")
}

# Removes what the suite left behind: LVM volumes, dm devices, loops.  Each
# step is bounded: a mirror holding I/O for a dead leg can block removal.
DMMR_CLEANED=0
dmmr_cleanup() {
	local vg d c
	[ "$DMMR_CLEANED" = 0 ] || return 0
	DMMR_CLEANED=1
	for c in "${DMMR_AT_EXIT[@]}"; do
		eval "$c" || true
	done
	if [ -e /dev/mapper/control ]; then
		for vg in $(timeout 30 vgs --noheadings -o vg_name 2>/dev/null); do
			timeout 30 vgremove -ff "$vg" >/dev/null 2>&1 || true
		done
		timeout 30 dmsetup --noudevsync remove_all >/dev/null 2>&1 ||
			timeout 30 dmsetup --noudevsync remove_all --force >/dev/null 2>&1 || true
	fi
	for d in "${DMMR_LOOPS[@]}"; do
		losetup -d "$d" 2>/dev/null || true
	done
	rm -rf "$DMMR_WORK"
}

dmmr_exit() {
	local rc=$?
	set +e
	if [ "$KTAP_DONE" = 0 ]; then
		# The suite died (set -e or die): say so in KTAP terms so the
		# runner counts a failure, then still clean up.
		ktap_diag "$KTAP_SUITE aborted with status $rc after test $KTAP_N${DMMR_ERR:+: $DMMR_ERR}"
		KTAP_N=$((KTAP_N + 1)) KTAP_FAIL=$((KTAP_FAIL + 1))
		echo "not ok $KTAP_N - $KTAP_SUITE aborted"
		echo "# $KTAP_SUITE: $KTAP_PASS passed, $KTAP_FAIL failed, $KTAP_SKIP skipped"
		[ $rc != 0 ] || rc=1
	fi
	dmmr_cleanup
	exit $rc
}
trap dmmr_exit EXIT
# Remember which command made set -e end the suite, for the report above.
DMMR_ERR=
trap 'DMMR_ERR="line $LINENO: $BASH_COMMAND (status $?)"' ERR

# die "message": abort the suite (reported as a failure by the EXIT trap).
die() {
	ktap_diag "FATAL: $*"
	exit 1
}

KMSG_SUITE_MARK=$(kmsg_mark start)
if kmemleak_available; then
	kmemleak_reset
fi
