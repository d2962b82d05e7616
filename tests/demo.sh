#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make demo`: why this module exists, in under a minute.  A mirror with a
# fast leg and a slow one (dm-delay, 20 ms each way: a remote leg), the slow
# one listed first as a careless table would: reads timed with dm-raid1's
# behaviour and with the adaptive policy, `io_balance show`; then writes
# timed with and without write-behind, and both legs compared.
# Runs in the guest: scripts/vm-run tests/demo.sh

set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1
dm() { dmsetup --noudevsync "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { echo "\$ $*"; "$@"; }
# timed <what> cmd...: runs it and prints how long it took.
timed() {
	local what=$1 t0 t1
	shift
	t0=$EPOCHREALTIME
	"$@"
	t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" -v w="$what" 'BEGIN { printf "  %-52s %7.3f s\n", w, b - a }'
}
show() { dmsetup message demo 0 io_balance show | sed 's/^/  /'; }

say "load the Rust mirror target"
run modprobe dm_mirror_rs
run modprobe dm-delay
dmesg | grep 'device-mapper: mirror' | tail -n 1

say "two 64 MiB legs: a fast one, and a slow one (dm-delay 20 ms: a remote leg)"
mkdir -p /tmp/demo
truncate -s 64M /tmp/demo/fast /tmp/demo/remote
FAST=$(losetup -f --show /tmp/demo/fast)
R=$(losetup -f --show /tmp/demo/remote)
run dm create remote --table "0 131072 delay $R 0 20"
SLOW=/dev/mapper/remote

say "the mirror, slow leg listed first (so it is the default leg)"
run dm create demo --table "0 131072 mirror core 2 1024 nosync 2 $SLOW 0 $FAST 0 1 handle_errors"
run dm table demo
dd if=/dev/urandom of=/tmp/demo/data bs=1M count=8 status=none
dd if=/tmp/demo/data of=/dev/mapper/demo bs=1M oflag=direct status=none

say "read 8 MiB (O_DIRECT, 128 KiB reads)"
read8() { dd if=/dev/mapper/demo of=/dev/null bs=128k count=64 iflag=direct status=none; }
timed "dm-raid1's behaviour (every read on the default leg)" read8
run dmsetup message demo 0 io_balance adaptive
timed "io_balance adaptive (no tuning)" read8
timed "io_balance adaptive, again" read8
say "io_balance show: where the reads went, what each leg costs"
show

say "write 100 x 4 KiB, each synchronous (O_DIRECT + O_SYNC)"
write100() { dd if=/dev/urandom of=/dev/mapper/demo bs=4k count=100 oflag=direct,sync status=none; }
timed "both legs acknowledge every write" write100
run dmsetup message demo 0 io_balance default 1
run dmsetup message demo 0 write_mostly 0 on
run dmsetup message demo 0 max_write_behind 8192
timed "the slow leg write-mostly: it catches up behind" write100
dmsetup message demo 0 io_balance show | grep '^behind' | sed 's/^/  /'
drained() { dmsetup message demo 0 io_balance show | awk '$1 == "behind" && $5 != 0 { b = 1 } END { exit b }'; }
for _ in $(seq 1 100); do drained && break; sleep 0.1; done
echo "  caught up; the legs compared:"
a=$(dd if="$FAST" bs=1M count=64 iflag=direct status=none | md5sum | cut -d' ' -f1)
b=$(dd if="$R" bs=1M count=64 iflag=direct status=none | md5sum | cut -d' ' -f1)
echo "  fast leg   $a"
echo "  remote leg $b"
[ "$a" = "$b" ] && echo "  identical" || echo "  DIFFERENT"
run dm status demo

say "remove it and unload"
run dm remove demo
run dm remove remote
run rmmod dm_mirror_rs
losetup -d "$FAST" "$R"
echo
echo "demo: done"
