#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make demo`: a mirror created, written, read and removed, with its status.
# Runs in the guest: scripts/vm-run tests/demo.sh

set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1
dm() { dmsetup --noudevsync "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { echo "\$ $*"; "$@"; }

say "load the Rust mirror target"
run modprobe dm_mirror_rs
run dmsetup targets
dmesg | grep 'device-mapper: mirror' | tail -n 1

say "two 64 MiB legs on loop devices"
mkdir -p /tmp/demo
truncate -s 64M /tmp/demo/a /tmp/demo/b
A=$(losetup -f --show /tmp/demo/a)
B=$(losetup -f --show /tmp/demo/b)
echo "legs: $A $B"

say "create the mirror (the table line lvm2 sends, nosync)"
run dm create demo --table "0 131072 mirror core 2 1024 nosync 2 $A 0 $B 0 1 handle_errors"
run dm table demo
run dm status demo

say "write 32 MiB through it, read it back, compare each leg"
dd if=/dev/urandom of=/tmp/demo/data bs=1M count=32 status=none
run dd if=/tmp/demo/data of=/dev/mapper/demo bs=1M oflag=direct status=none
md5sum </tmp/demo/data | sed 's/-$/written/'
dd if=/dev/mapper/demo bs=1M count=32 iflag=direct status=none | md5sum | sed 's/-$/read through the mirror/'
dd if="$A" bs=1M count=32 iflag=direct status=none | md5sum | sed "s|-\$|on leg $A|"
dd if="$B" bs=1M count=32 iflag=direct status=none | md5sum | sed "s|-\$|on leg $B|"
run dm status demo

say "remove it and unload"
run dm remove demo
run rmmod dm_mirror_rs
losetup -d "$A" "$B"
echo
echo "demo: done"
