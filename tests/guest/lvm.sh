#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# lvm2 end to end on the Rust target: lvcreate --type mirror (core and disk
# logs), lvs Copy%, a file system on it, lvconvert -m0/-m1/-m2, a PV failing
# under a mirror then lvconvert --repair, and pvmove (which uses the mirror
# target for its temporary mapping), with md5sum checks.
#
# lvm2 runs `modprobe dm-mirror` when no `mirror` target is registered; the
# guest resolves that to dm_mirror_rs with a modprobe.d install rule (see
# Documentation/admin-guide.rst). Here the module is loaded explicitly and
# the C dm_mirror must stay unloaded throughout.
#
# Runs in the guest: scripts/vm-run tests/guest/lvm.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

ktap_plan 29

modprobe -r dm_mirror 2>/dev/null || true
mkdir -p /etc/modprobe.d
echo "install dm-mirror /sbin/modprobe dm_mirror_rs" >/etc/modprobe.d/dm-mirror-rs.conf
ktap_check "modprobe dm-mirror resolves to dm_mirror_rs" \
	bash -c 'modprobe dm-mirror && grep -q "^dm_mirror_rs " /proc/modules && ! grep -q "^dm_mirror " /proc/modules'

# PVs on dm-linear devices over loops, so that one can be made to fail; lvm2
# must not see them twice (through the loops too).
sed -i 's|^devices {|devices {\n\tglobal_filter = [ "r\|^/dev/loop\|" ]|' /etc/lvm/lvm.conf
# PVs on dm-linear devices over loops, so that one can be made to fail.
PVS=()
for i in 0 1 2 3; do
	l=$(mk_loop 72)
	dm create "pv$i" --table "0 $(dev_sectors "$l") linear $l 0" || die "cannot create pv$i"
	PVS+=("/dev/mapper/pv$i")
done
lv() { lvs --noheadings -o "$2" "vg/$1" | tr -d ' '; }
copy_done() { [ "$(lv "$1" copy_percent)" = "100.00" ]; }

ktap_check "pvcreate, vgcreate" bash -c "pvcreate -q ${PVS[*]} && vgcreate -q vg ${PVS[*]}"
ktap_check "lvcreate --type mirror -m1 --mirrorlog core" \
	lvcreate -q -y --type mirror -m1 --mirrorlog core -L 32M -n lvc vg "${PVS[0]}" "${PVS[1]}"
ktap_check "Copy% reaches 100" wait_for 120 copy_done lvc
ktap_check "the mapping uses the mirror target" bash -c "dmsetup table vg-lvc | grep -q ' mirror core '"
ktap_check "lvcreate --type mirror -m1 (disk log)" \
	lvcreate -q -y --type mirror -m1 -L 32M -n lvd vg "${PVS[0]}" "${PVS[1]}" "${PVS[2]}"
ktap_check "Copy% reaches 100 (disk log)" wait_for 120 copy_done lvd
ktap_check "lvs -a -o +devices shows the legs and the log" \
	bash -c "lvs -a -o +devices vg | grep -q 'lvd_mimage_0' && lvs -a -o +devices vg | grep -q 'lvd_mlog'"
# Deprecated in lvm2 2.03 and refused unless enabled (lvm2's own tests do so).
ktap_check "lvcreate --mirrorlog mirrored" \
	lvcreate -q -y --config 'global { support_mirrored_mirror_log=1 }' \
	--type mirror -m1 --mirrorlog mirrored -L 16M -n lvm vg
ktap_check "Copy% reaches 100 (mirrored log)" wait_for 120 copy_done lvm

dd if=/dev/urandom of="$DMMR_WORK/f" bs=1M count=8 status=none
want=$(md5sum <"$DMMR_WORK/f" | cut -d' ' -f1)
mkdir -p "$DMMR_WORK/mnt"
fs() {
	mkfs.ext4 -q -F /dev/vg/lvd && mount /dev/vg/lvd "$DMMR_WORK/mnt" &&
		cp "$DMMR_WORK/f" "$DMMR_WORK/mnt/f" && umount "$DMMR_WORK/mnt"
}
ktap_check "mkfs, mount, write a file" fs
file_md5() {
	mount /dev/vg/lvd "$DMMR_WORK/mnt" || return 1
	sync; echo 3 >/proc/sys/vm/drop_caches
	md5sum <"$DMMR_WORK/mnt/f" | cut -d' ' -f1
	umount "$DMMR_WORK/mnt"
}
ktap_check_eq "read back" "$want" "$(file_md5)"
ktap_check "lvconvert -m0 (to linear)" lvconvert -q -y -m0 vg/lvd
ktap_check_eq "data intact after -m0" "$want" "$(file_md5)"
ktap_check "lvconvert -m1 (back to a mirror)" lvconvert -q -y --type mirror -m1 vg/lvd
ktap_check "Copy% reaches 100 after -m1" wait_for 120 copy_done lvd
ktap_check "lvconvert -m2 (three legs)" lvconvert -q -y --type mirror -m2 --mirrorlog core vg/lvd
ktap_check "Copy% reaches 100 after -m2" wait_for 120 copy_done lvd
ktap_check_eq "data intact on three legs" "$want" "$(file_md5)"

# A PV under lvd fails; a write is held; lvconvert --repair removes the leg
# and the write completes.
leg_pv=$(lvs --noheadings -a -o devices vg/lvd_mimage_1 | tr -d ' ' | sed 's/(.*//')
fail_pv() {
	local n=${leg_pv##*/}
	dm suspend "$n" && dm load "$n" --table "0 $(dev_sectors "$leg_pv") error" && dm resume "$n"
}
ktap_check "fail the PV of leg 1 ($leg_pv)" fail_pv
dd if="$DMMR_WORK/f" of=/dev/vg/lvd bs=1M count=1 seek=20 oflag=direct status=none &
ddpid=$!
ktap_check "the mirror reports a dead leg" wait_for 30 bash -c "dmsetup status vg-lvd | grep -q ' 1 [AD]*D[AD]* '"
ktap_check "lvconvert --repair" timeout 120 lvconvert -q -y --repair vg/lvd
ktap_check "the held write completes" wait $ddpid
ktap_check_eq "written data reads back" \
	"$(head -c 1048576 "$DMMR_WORK/f" | md5sum | cut -d' ' -f1)" \
	"$(dd if=/dev/vg/lvd bs=1M count=1 skip=20 iflag=direct status=none | md5sum | cut -d' ' -f1)"
# The failed PV also held legs of the other mirrors: drop those legs too.
ktap_check "vgreduce --removemissing --mirrorsonly --force" \
	vgreduce -q --removemissing --mirrorsonly --force vg
# pvmove moves everything off pv0 to a new, empty PV through a temporary
# mirror (the `mirror` target with a core log).
l=$(mk_loop 72)
dm create pv4 --table "0 $(dev_sectors "$l") linear $l 0" || die "cannot create pv4"
ktap_check "vgextend with an empty PV" bash -c "pvcreate -q /dev/mapper/pv4 && vgextend -q vg /dev/mapper/pv4"
before=$(dd if=/dev/vg/lvc bs=1M count=32 iflag=direct status=none | md5sum)
ktap_check "pvmove ${PVS[0]} /dev/mapper/pv4" timeout 300 pvmove -q -i0 "${PVS[0]}" /dev/mapper/pv4
ktap_check_eq "nothing is left on ${PVS[0]}" 0 "$(pvs --noheadings -o pv_used --units s --nosuffix "${PVS[0]}" | tr -d ' ')"
ktap_check_eq "lvc's data is unchanged after pvmove" "$before" \
	"$(dd if=/dev/vg/lvc bs=1M count=32 iflag=direct status=none | md5sum)"

ktap_done
