#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Harness smoke test: proves that the guest boots with working device-mapper,
# C reference mirror target, lvm2 and fio.  Needs no Rust module.
#
# Run alone: scripts/vm-run tests/guest/smoke.sh   (or tests/run --suite smoke)

. /dmmr/tests/lib.sh

ktap_plan 16

ktap_check "dmsetup version talks to the kernel" dm version

ktap_check "modprobe dm-mirror (C reference target)" modprobe dm-mirror
# grep >/dev/null, not grep -q: under pipefail an early exit can SIGPIPE dmsetup.
ktap_check "mirror target registered" eval 'dm targets | grep "^mirror " >/dev/null'

a=$(mk_loop 64)
b=$(mk_loop 64)
sz=$(dev_sectors "$a")
table="0 $sz mirror core 1 1024 2 $a 0 $b 0 1 handle_errors"
ktap_check "create a 2-leg mirror (core log, handle_errors)" dm create smoke_m --table "$table"
ktap_check "mirror resyncs to all regions in sync" wait_for 60 mirror_in_sync smoke_m
ktap_diag "status: $(dm status smoke_m)"

# The kernel reports devices as major:minor and keeps the feature argument.
want="0 $sz mirror core 1 1024 2 $(dev_majmin "$a") 0 $(dev_majmin "$b") 0 1 handle_errors"
ktap_check_eq "table round-trips" "$want" "$(dm table smoke_m)"
ktap_check "status shows 2 legs alive (AA)" eval 'dm status smoke_m | grep " AA " >/dev/null'

data=$DMMR_WORK/data
dd if=/dev/urandom of="$data" bs=1M count=16 status=none
ktap_check "dd O_DIRECT write through the mirror" \
	dd if="$data" of=/dev/mapper/smoke_m bs=1M oflag=direct conv=fsync status=none
ktap_check "data reads back" cmp -n $((16 << 20)) "$data" /dev/mapper/smoke_m
ktap_check "legs are identical" cmp "$a" "$b"
ktap_check "remove the mirror" dm remove smoke_m

# lvm2 drives the same target through its own table construction.
lvm_mirror() {
	pvcreate -q "$a" "$b" &&
		vgcreate -q smokevg "$a" "$b" &&
		lvcreate -q -y --type mirror -m1 --mirrorlog core -L 32M -n lv smokevg &&
		lvs -a smokevg
}
ktap_check "lvcreate --type mirror -m1 --mirrorlog core" lvm_mirror
lv_synced() { [ "$(lvs --noheadings -o copy_percent smokevg/lv | tr -d ' ')" = 100.00 ]; }
ktap_check "lvm mirror reaches 100% sync" wait_for 60 lv_synced
ktap_check "lvm mirror table uses the mirror target" \
	eval 'dm table smokevg-lv | grep " mirror core " >/dev/null'

fio_verify() {
	fio --name=smoke --filename=/dev/smokevg/lv --size=8M --bs=4k --rw=randwrite \
		--ioengine=libaio --iodepth=4 --direct=1 --verify=crc32c --do_verify=1 \
		--randrepeat=0 --output-format=terse >/dev/null
}
ktap_check "fio randwrite + crc32c verify on the lvm mirror" fio_verify
ktap_check "lvremove/vgremove/pvremove" \
	eval 'lvremove -q -f smokevg/lv && vgremove -q smokevg && pvremove -q "$a" "$b"'

ktap_done
