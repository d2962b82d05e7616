#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-raid1 parity: the Rust target and the C dm-mirror of the same kernel,
# loaded one after the other in one boot, must print byte-identical tables
# and status lines for the same mappings (core and disk logs, sync and
# nosync, 2/3/4 legs, features, before and after resync, after a leg
# failure); and the Rust target must handle failures like dm-raid1: read
# errors fail over without the reader noticing, write errors degrade the
# mirror and raise an event, writes are held under handle_errors until a
# noflush suspend hands them back, EIO only when no leg is left.
#
# Runs in the guest: scripts/vm-run tests/guest/parity.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

ktap_plan 47

modprobe dm-log && modprobe dm-region-hash && modprobe dm-flakey ||
	die "cannot load dm-log, dm-region-hash or dm-flakey"

use_impl() {
	modprobe -r dm_mirror 2>/dev/null || true
	rmmod dm_mirror_rs 2>/dev/null || true
	case $1 in
	c) modprobe dm-mirror ;;
	rust) modprobe dm_mirror_rs ;;
	esac
}

SECTORS=32768 # 16 MiB
L=()
for i in 0 1 2 3; do L+=("$(mk_loop 16)"); done
LOGDEV=$(mk_loop 1)
M=()
for d in "${L[@]}"; do M+=("$(dev_majmin "$d")"); done
LOG=$(dev_majmin "$LOGDEV")

# snapshot <table>: load, print the status before resync (the inactive
# table: constructed, never resumed, so no recovery has started and the
# result is deterministic), resume, wait for resync, print table and
# status, remove.
snapshot() {
	local t=$1
	dd if=/dev/zero of="$LOGDEV" bs=1M count=1 status=none
	dm create par --notable && dm load par --table "0 $SECTORS mirror $t" ||
		{ echo "load failed"; dm remove par; return; }
	echo "before resync: $(dmsetup status --inactive par)"
	dm resume par || { echo "resume failed"; dm remove par; return; }
	wait_for 60 mirror_in_sync par || echo "not in sync after 60 s"
	echo "table: $(dm table par)"
	echo "status: $(dm status par)"
	dm remove par
}

TABLES=(
	"core 1 1024 2 ${M[0]} 0 ${M[1]} 0 1 handle_errors"
	"core 2 1024 nosync 2 ${M[0]} 0 ${M[1]} 0 1 handle_errors"
	"core 2 512 sync 2 ${M[0]} 0 ${M[1]} 0"
	"core 1 2048 3 ${M[0]} 0 ${M[1]} 0 ${M[2]} 0"
	"core 1 1024 4 ${M[0]} 0 ${M[1]} 0 ${M[2]} 0 ${M[3]} 0 1 handle_errors"
	"core 1 1024 2 ${M[0]} 8 ${M[1]} 16 2 handle_errors keep_log"
	"disk 2 $LOG 1024 2 ${M[0]} 0 ${M[1]} 0 1 handle_errors"
	"disk 3 $LOG 1024 nosync 2 ${M[0]} 0 ${M[1]} 0 1 handle_errors"
	"disk 3 $LOG 2048 sync 3 ${M[0]} 0 ${M[1]} 0 ${M[2]} 0"
	"disk 2 $LOG 1024 4 ${M[0]} 0 ${M[1]} 0 ${M[2]} 0 ${M[3]} 0 1 handle_errors"
)
declare -A C_OUT
use_impl c || die "cannot load the C dm-mirror"
for t in "${TABLES[@]}"; do C_OUT[$t]=$(snapshot "$t"); done
use_impl rust || die "cannot load dm_mirror_rs"
for t in "${TABLES[@]}"; do
	r=$(snapshot "$t")
	if [ "$r" = "${C_OUT[$t]}" ]; then
		ktap_pass "same table and status as C, before and after resync: $t"
	else
		ktap_fail "same table and status as C, before and after resync: $t" "C:    ${C_OUT[$t]//$'\n'/ | }" "Rust: ${r//$'\n'/ | }"
	fi
done

# --- after a leg failure (no handle_errors: the write is acknowledged) -----
degrade() {
	dm create lf --table "0 $SECTORS linear ${L[1]} 0" &&
		dm create par --table "0 $SECTORS mirror core 2 1024 nosync 2 ${M[0]} 0 /dev/mapper/lf 0" &&
		dm suspend lf && dm load lf --table "0 $SECTORS error" && dm resume lf &&
		dd if=/dev/urandom of=/dev/mapper/par bs=4k count=1 oflag=direct status=none
	echo "status: $(dm status par | sed 's/ [0-9]*:[0-9]* / L /')"
	dm remove par
	dm remove lf
}
use_impl c
c_deg=$(degrade 2>&1)
use_impl rust
r_deg=$(degrade 2>&1)
ktap_check_eq "after a failed write: same status as C" "$c_deg" "$r_deg"
ktap_check "the failed leg shows D" grep -q ' AD 1 core$' <<<"$r_deg"

events() { dmsetup info -c --noheadings -o events "$1"; }

# --- resync: progress, completion event -------------------------------------
dd if=/dev/urandom of="${L[0]}" bs=1M count=16 status=none
ktap_check "create a 'sync' mirror over differing legs" \
	dm create rs --table "0 $SECTORS mirror core 1 512 2 ${M[0]} 0 ${M[1]} 0 1 handle_errors"
ktap_check "resync completes" wait_for 60 mirror_in_sync rs
ktap_check "an event was raised on completion" bash -c "[ \$(dmsetup info -c --noheadings -o events rs) -ge 1 ]"
ktap_check_eq "resync copied the default leg to the other" \
	"$(dd if="${L[0]}" bs=1M count=16 status=none | md5sum)" \
	"$(dd if="${L[1]}" bs=1M count=16 iflag=direct status=none | md5sum)"
ktap_check "remove rs" dm remove rs

# --- read errors fail over without the reader noticing ---------------------
dd if=/dev/urandom of="$DMMR_WORK/data" bs=1M count=8 status=none
dd if="$DMMR_WORK/data" of="${L[0]}" bs=1M status=none conv=notrunc
dd if="$DMMR_WORK/data" of="${L[1]}" bs=1M status=none conv=notrunc
# Leg 0 (the default leg) fails every read, writes still work.
ktap_check "flakey leg 0: reads fail" \
	dm create fr --table "0 $SECTORS flakey ${L[0]} 0 0 3600 1 error_reads"
ktap_check "mirror with the flakey leg as default" \
	dm create rd --table "0 $SECTORS mirror core 2 1024 nosync 2 /dev/mapper/fr 0 ${M[1]} 0 1 handle_errors"
ev0=$(events rd)
ktap_check_eq "reads return the data anyway" \
	"$(md5sum <"$DMMR_WORK/data" | cut -d' ' -f1)" \
	"$(dd if=/dev/mapper/rd bs=1M count=8 iflag=direct status=none | md5sum | cut -d' ' -f1)"
ktap_check "leg 0 is marked R" bash -c "dmsetup status rd | grep -q ' 1 RA 1 core\$'"
ktap_check "an event was raised" wait_for 10 bash -c "[ \$(dmsetup info -c --noheadings -o events rd) -gt $ev0 ]"
ktap_check "the other leg is the default now" \
	bash -c "dmsetup message rd 0 io_balance show | grep -q '^default 1 '"
ktap_check "remove rd, fr" bash -c "dmsetup --noudevsync remove rd && dmsetup --noudevsync remove fr"

# --- write errors with handle_errors: held, event, noflush suspend hands back -
ktap_check "leg 1 as a linear device" dm create wl --table "0 $SECTORS linear ${L[1]} 0"
ktap_check "mirror with handle_errors" \
	dm create we --table "0 $SECTORS mirror core 2 1024 nosync 2 ${M[0]} 0 /dev/mapper/wl 0 1 handle_errors"
ev0=$(events we)
fail_wl() { dm suspend wl && dm load wl --table "0 $SECTORS error" && dm resume wl; }
ktap_check "leg 1 starts failing" fail_wl
head -c 65536 /dev/urandom >"$DMMR_WORK/w"
dd if="$DMMR_WORK/w" of=/dev/mapper/we bs=64k count=1 oflag=direct status=none &
ddpid=$!
ktap_check "the mirror reports leg 1 dead (D)" wait_for 20 bash -c "dmsetup status we | grep -q ' 1 AD 1 core\$'"
ktap_check "an event was raised" wait_for 10 bash -c "[ \$(dmsetup info -c --noheadings -o events we) -gt $ev0 ]"
sleep 1
ktap_check "the write is held, not failed" kill -0 $ddpid
repair() {
	# What lvconvert --repair does: noflush suspend (held writes go back to
	# dm core), a table without the dead leg, resume (dm core resends them).
	dm suspend --noflush we && dm load we --table "0 $SECTORS linear ${L[0]} 0" && dm resume we
}
ktap_check "repair: noflush suspend, linear table, resume" repair
ktap_check "the held write completes successfully" wait $ddpid
ktap_check_eq "and its data is on the surviving leg" \
	"$(md5sum <"$DMMR_WORK/w" | cut -d' ' -f1)" \
	"$(dd if="${L[0]}" bs=64k count=1 iflag=direct status=none | md5sum | cut -d' ' -f1)"
ktap_check "remove we, wl" bash -c "dmsetup --noudevsync remove we && dmsetup --noudevsync remove wl"

# --- all legs dead: EIO -------------------------------------------------------
ktap_check "two error legs" bash -c \
	"dmsetup --noudevsync create e0 --table '0 $SECTORS error' && dmsetup --noudevsync create e1 --table '0 $SECTORS error'"
ktap_check "mirror over them" \
	dm create ee --table "0 $SECTORS mirror core 2 1024 nosync 2 /dev/mapper/e0 0 /dev/mapper/e1 0 1 handle_errors"
ktap_check_fails "a write fails with EIO" timeout 30 dd if=/dev/zero of=/dev/mapper/ee bs=4k count=1 oflag=direct status=none
ktap_check_fails "a read fails with EIO" timeout 30 dd if=/dev/mapper/ee of=/dev/null bs=4k count=1 iflag=direct status=none
ktap_check "status shows both legs dead" bash -c "dmsetup status ee | grep -Eq ' 1 [DR]D 1 core\$| 1 D[DR] 1 core\$'"
ktap_check "remove ee, e0, e1" bash -c "dmsetup --noudevsync remove ee && dmsetup --noudevsync remove e0 e1"

# --- disk log: a write marks the log, status shows it ------------------------
ktap_check "disk-log mirror" \
	dm create dl --table "0 $SECTORS mirror disk 2 $LOG 1024 2 ${M[0]} 0 ${M[1]} 0 1 handle_errors"
ktap_check "it resyncs" wait_for 60 mirror_in_sync dl
ktap_check "fio verify through it" fio --name=v --filename=/dev/mapper/dl --direct=1 \
	--rw=randwrite --bs=4k --size=8m --verify=crc32c --verify_fatal=1 --ioengine=libaio --iodepth=8
ktap_check_eq "status with the disk log" "0 $SECTORS mirror 2 ${M[0]} ${M[1]} 32/32 1 AA 3 disk $LOG A" "$(dm status dl)"
ktap_check "suspend and resume (log flushed and reread)" bash -c "dmsetup --noudevsync suspend dl && dmsetup --noudevsync resume dl"
ktap_check "remove dl" dm remove dl
ktap_check_eq "the legs are identical" \
	"$(dd if="${L[0]}" bs=1M count=16 iflag=direct status=none | md5sum)" \
	"$(dd if="${L[1]}" bs=1M count=16 iflag=direct status=none | md5sum)"

ktap_done
