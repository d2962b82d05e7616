#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dmeventd repairs a mirror on the Rust target by itself: a monitored
# mirror loses a leg, the held write raises an event, dmeventd's mirror
# plugin runs lvconvert --repair (mirror_image_fault_policy = remove), and
# the write completes on the surviving leg.
#
# Runs in the guest: scripts/vm-run tests/guest/dmeventd.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

ktap_plan 9

modprobe -r dm_mirror 2>/dev/null || true
modprobe dm_mirror_rs || die "cannot load dm_mirror_rs"
sed -i 's|^devices {|devices {\n\tglobal_filter = [ "r\|^/dev/loop\|" ]|' /etc/lvm/lvm.conf
# Monitoring on, with the default fault policies.
sed -i 's|monitoring = 0|monitoring = 1|' /etc/lvm/lvm.conf
at_exit "pkill dmeventd"

PVS=()
for i in 0 1 2; do
	l=$(mk_loop 40)
	dm create "pv$i" --table "0 $(dev_sectors "$l") linear $l 0" || die "cannot create pv$i"
	PVS+=("/dev/mapper/pv$i")
done
ktap_check "dmeventd starts" dmeventd
ktap_check "pvcreate, vgcreate" bash -c "pvcreate -q ${PVS[*]} && vgcreate -q vg ${PVS[*]}"
ktap_check "lvcreate --type mirror -m1 --mirrorlog core (monitored)" \
	lvcreate -q -y --type mirror -m1 --mirrorlog core -L 16M -n lv vg "${PVS[0]}" "${PVS[1]}"
copy_done() { [ "$(lvs --noheadings -o copy_percent vg/lv | tr -d ' ')" = "100.00" ]; }
ktap_check "Copy% reaches 100" wait_for 120 copy_done
ktap_check "dmeventd monitors it" bash -c "lvs --noheadings -o seg_monitor vg/lv | grep -q monitored"
fail_pv() {
	dm suspend pv1 && dm load pv1 --table "0 $(dev_sectors "${PVS[1]}") error" && dm resume pv1
}
ktap_check "fail the PV of leg 1" fail_pv
head -c 1048576 /dev/urandom >"$DMMR_WORK/w"
timeout 120 dd if="$DMMR_WORK/w" of=/dev/vg/lv bs=1M count=1 seek=4 oflag=direct status=none &
ddpid=$!
repaired() { ! dmsetup table vg-lv | grep -q ' mirror '; }
ktap_check "dmeventd repairs the mirror (the dead leg is gone)" wait_for 120 repaired
ktap_check "the held write completes" wait $ddpid
ktap_check_eq "its data reads back" "$(md5sum <"$DMMR_WORK/w" | cut -d' ' -f1)" \
	"$(dd if=/dev/vg/lv bs=1M count=1 skip=4 iflag=direct status=none | md5sum | cut -d' ' -f1)"
ktap_done
