#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs lvm2's own shell tests (from tests/lvm2/harness.tar.xz, staged by
# scripts/lvm2-tests build) against the system lvm2 tools with ONE mirror
# implementation loaded:
#
#	scripts/vm-run tests/lvm2/run-guest.sh <rust|c> <test>...
#
# <test> is a test/shell name without .sh (lvcreate-mirror, pvmove-basic).
# One KTAP line per test: "ok N - rust lvcreate-mirror", "not ok N - ...",
# "ok N - ... # SKIP <reason>", preceded by "# time <impl> <test> <seconds>".
# A failing test's last lines of output follow as diagnostics.
#
# Mode: lvm2's "installed test suite" (what `lvm2-testsuite` of a distro
# package runs, test/Makefile.in: install) with the ndev-vanilla flavour:
# the tests use the system lvm/dmsetup/dmeventd, and create their PVs as
# dm-linear devices over a loop device in a private /dev directory
# ($TESTDIR/dev) that libdevmapper fills itself.  The udev-* flavours that
# `make check_system` uses need a running udev, which the guest does not
# have (DM_DISABLE_UDEV=1).

. /dmmr/tests/lib.sh

impl=${1:-}
shift || true
case "$impl" in
rust | c) ;;
*) die "usage: run-guest.sh <rust|c> <test>..." ;;
esac
[ $# -gt 0 ] || die "no tests given"
# Kernel warnings are checked per test below.
KTAP_ALLOW_SPLAT=1
TIMEOUT=${LVM2_TEST_TIMEOUT:-900}
VERBOSE=${LVM2_TEST_VERBOSE:-0}

ktap_plan $#
skip_all() {
	local t
	for t in "$@"; do ktap_skip "$impl $t" "$SKIP_REASON"; done
	ktap_done
}

tarball=/dmmr/tests/lvm2/harness.tar.xz
if [ ! -f $tarball ]; then
	SKIP_REASON="no $tarball (run scripts/lvm2-tests build on the host)"
	skip_all "$@"
fi
tar -C / -xJf $tarball --skip-old-files 2>/dev/null || tar -C / -xJf $tarball
T=/opt/lvm2-testsuite

# The module under test, and nothing else providing `mirror`.
mkdir -p /etc/modprobe.d
if [ "$impl" = rust ]; then
	if [ ! -f /dmmr/dm_mirror_rs.ko ]; then
		SKIP_REASON="no /dmmr/dm_mirror_rs.ko (make module)"
		skip_all "$@"
	fi
	# lvm2 and the tests (aux target_at_least dm-mirror) run
	# `modprobe dm-mirror`: resolve it to the Rust module.
	echo "install dm-mirror /sbin/modprobe dm_mirror_rs" >/etc/modprobe.d/dmmr-lvm2.conf
	echo "install dm_mirror /sbin/modprobe dm_mirror_rs" >>/etc/modprobe.d/dmmr-lvm2.conf
	modprobe dm_mirror_rs || die "modprobe dm_mirror_rs failed"
	want=dm_mirror_rs other=dm_mirror
else
	echo "install dm_mirror_rs /bin/false" >/etc/modprobe.d/dmmr-lvm2.conf
	modprobe dm-mirror || die "modprobe dm-mirror failed"
	want=dm_mirror other=dm_mirror_rs
fi
# dm-snapshot, dm-raid and friends are loaded on demand by lvm2.
ktap_diag "$impl: $(dmsetup targets | grep '^mirror') ($want)"

# The GNU tools the lvm2 test library expects come first (busybox's reduced
# versions are behind them); lib/paths adds the test suite's lib/ and bin/.
export PATH=/opt/gnu/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LVM_TEST_DIR=/tmp LVM_TEST_FLAVOUR=ndev-vanilla LVM_TEST_PREFER_BRD=0
export LVM_TEST_CAN_CLOBBER_DMESG=0 LVM_TEST_PARALLEL=0
mkdir -p /run/lock/lvm /run/lvm /etc/lvm/archive /etc/lvm/backup
# devtmpfs has no /dev/fd: bash's process substitution (aux teardown) needs it.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
for i in 0 1 2; do
	n=(stdin stdout stderr)
	[ -e "/dev/${n[$i]}" ] || ln -s "/proc/self/fd/$i" "/dev/${n[$i]}"
done
cd "$T"

for t in "$@"; do
	name="$impl $t"
	if [ ! -f "shell/$t.sh" ]; then
		ktap_skip "$name" "no shell/$t.sh in lvm2 $(cat lib/version-expected)"
		continue
	fi
	log=/tmp/lvm2-$t.log
	mark=$(kmsg_mark "$t")
	s0=$(date +%s.%N)
	rc=0
	# Each test in its own session so a timeout kills all of it.
	timeout -k 10 "$TIMEOUT" setsid bash "shell/$t.sh" >"$log" 2>&1 </dev/null || rc=$?
	s1=$(date +%s.%N)
	secs=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.1f", b - a }')
	echo "# time $impl $t $secs"
	splat=$(kernel_splats "$mark" || true)
	wrong=
	grep -q "^$other " /proc/modules && wrong="the $other module got loaded"
	[ "$VERBOSE" = 0 ] || ktap_diag <"$log"
	if [ -n "$splat" ] || [ -n "$wrong" ]; then
		awk '/^<======== Info ========>/ { exit } { print }' "$log" |
			grep -avE '^## (LVMCONF|DEBUG|Line:|LSLR)' | tail -n 30 | cut -c1-300 | ktap_diag
		ktap_fail "$name" "exit status $rc" ${wrong:+"$wrong"} ${splat:+"kernel warning:"} ${splat:+"$splat"}
	elif [ $rc = 0 ]; then
		ktap_pass "$name"
	elif [ $rc = 200 ]; then
		reason=$(grep -a -m1 "TEST SKIPPED" "$log" | sed 's/.*TEST SKIPPED:* *//' || true)
		# skip without a reason prints "## 1 skip() called from
		# shell/x.sh:58": show that line of the test instead.
		where=$(grep -aoE -m1 'skip\(\) called from shell/[^:]+\.sh:[0-9]+' "$log" || true)
		if [ -z "$reason" ] && [ -n "$where" ]; then
			where=${where#*from }
			reason="$where: $(sed -n "${where##*:}p" "${where%:*}" | sed 's/^[[:space:]]*//')"
		fi
		[ -n "$reason" ] || reason=$(grep -a 'skip' "$log" | tail -n 1 | cut -c1-120)
		ktap_skip "$name" "${reason:-skipped by the test}"
	else
		[ $rc != 124 ] || ktap_diag "timed out after $TIMEOUT s"
		# The end of the trace holds the failing command; the kernel's
		# view since the test started comes after.
		# (without the teardown's dumps of the config, the script and dm)
		awk '/^<======== Info ========>/ { exit } { print }' "$log" |
			grep -avE '^## (LVMCONF|DEBUG|Line:|LSLR)' | tail -n 60 | cut -c1-300 | ktap_diag
		ktap_diag "--- kernel log since the test started:"
		kmsg_since "$mark" | tail -n 20 | ktap_diag
		ktap_fail "$name" "exit status $rc"
	fi
	# A test that died in the middle may leave devices behind: the next
	# one must start clean (inittest refuses LVMTEST devices of its PID only).
	if dmsetup table 2>/dev/null | grep -q LVMTEST; then
		ktap_diag "removing leftovers of $t: $(dmsetup info -c --noheadings -o name 2>/dev/null | grep LVMTEST | tr '\n' ' ')"
		dmsetup --noudevsync remove_all --force >/dev/null 2>&1 || true
	fi
	pkill -x dmeventd 2>/dev/null || true
	for l in $(losetup -a 2>/dev/null | grep LVMTEST | cut -d: -f1); do losetup -d "$l" || true; done
	rm -rf /tmp/LVMTEST* "$log"
done
ktap_done
