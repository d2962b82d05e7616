#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Module lifetime: 100 load/create/I/O/message/remove/unload cycles leak
# nothing.  On the debug kernel kmemleak scans after the cycles and the
# per-cache slab object counts (KASAN's quarantine drained first) may not
# grow with the number of cycles; on the base kernel (no kmemleak, no
# /proc/slabinfo) those two checks skip and say why.  Unloading while a
# mapping exists is refused.
#
# Runs in the guest: scripts/vm-run tests/guest/lifecycle.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

CYCLES=${DMMR_LIFECYCLE_CYCLES:-100}
# Slab counts are compared between this cycle and the last one: the first
# cycles warm up caches (dm-io pools, sysfs nodes, the module loader).
WARMUP=10

ktap_plan 8

modprobe -r dm_mirror 2>/dev/null || true
modprobe dm_log 2>/dev/null || true
L0=$(mk_loop 8) L1=$(mk_loop 8) L2=$(mk_loop 8) LOG=$(mk_loop 1) LOG2=$(mk_loop 1)
M0=$(dev_majmin "$L0") M1=$(dev_majmin "$L1") M2=$(dev_majmin "$L2")
ML=$(dev_majmin "$LOG") ML2=$(dev_majmin "$LOG2")
SECTORS=16384 # 8 MiB

# Cycle i uses one of these tables (core and disk logs, 2 and 3 legs,
# nosync, handle_errors, a read policy feature).
tables=(
	"core 1 1024 2 $M0 0 $M1 0"
	"disk 2 $ML 1024 3 $M0 0 $M1 0 $M2 0 1 handle_errors"
	"core 2 512 nosync 2 $M0 0 $M2 0"
	"disk 3 $ML2 256 sync 2 $M1 0 $M2 0 1 handle_errors"
)

# Active objects per slab cache, "name count" lines.  Shrinking every cache
# first returns KASAN's quarantined objects (and empty slabs) so that the
# counts are what is allocated, not what was freed lately.
#
# The debug tools' own caches are left out: debugobjects keeps freed
# tracking objects on a free list and returns them to the slab only as its
# usage average falls (lib/debugobjects.c, free_obj_work), so its cache
# grows with activity, not with leaks.  Its count of objects in use
# ("pool_used") is no leak signal either: on 7.3 it grows by about 2.5 per
# fork of /bin/true, and by about 30 per dmsetup create/remove of a mirror
# with the C dm-mirror and the Rust module alike.  kmemleak's caches track
# every allocation; kmemleak itself is checked below.
DEBUG_TOOL_CACHES='^(debug_objects_cache|kmemleak_object|kmemleak_scan_area) '
slab_counts() {
	local s
	for s in /sys/kernel/slab/*/shrink; do
		echo 1 >"$s" 2>/dev/null || true
	done
	awk 'NR > 2 { print $1, $2 }' /proc/slabinfo | grep -Ev "$DEBUG_TOOL_CACHES" | sort
}

one_cycle() {
	local i=$1 t=${tables[$(($1 % ${#tables[@]}))]}
	modprobe dm_mirror_rs || { echo "cycle $i: modprobe failed"; return 1; }
	dm create lc --table "0 $SECTORS mirror $t" || { echo "cycle $i: create failed: $t"; return 1; }
	dd if=/dev/urandom of="$DMMR_WORK/pat" bs=64k count=16 status=none
	dd if="$DMMR_WORK/pat" of=/dev/mapper/lc bs=64k oflag=direct status=none ||
		{ echo "cycle $i: write failed"; return 1; }
	cmp -n 1048576 "$DMMR_WORK/pat" /dev/mapper/lc || { echo "cycle $i: read back differs"; return 1; }
	dmsetup message lc 0 io_balance round_robin ios $((i % 7)) ||
		{ echo "cycle $i: message failed"; return 1; }
	dmsetup status lc >/dev/null
	dm suspend lc && dm resume lc || { echo "cycle $i: suspend/resume failed"; return 1; }
	dm remove lc || { echo "cycle $i: remove failed"; return 1; }
	rmmod dm_mirror_rs || { echo "cycle $i: rmmod failed"; return 1; }
}

# --- unload refused while mapped ----------------------------------------
ktap_check "module loads" modprobe dm_mirror_rs
ktap_check "create a mapping" dm create held --table "0 $SECTORS mirror ${tables[0]}"
ktap_check_fails "rmmod refused while a mapping exists" rmmod dm_mirror_rs
ktap_check "remove the mapping, then rmmod succeeds" \
	bash -c 'dmsetup --noudevsync remove held && rmmod dm_mirror_rs'

# --- the cycles -----------------------------------------------------------
have_slab=0
[ -r /proc/slabinfo ] && have_slab=1
cycles() {
	local i
	for ((i = 1; i <= CYCLES; i++)); do
		one_cycle "$i" || return 1
		if [ "$i" = "$WARMUP" ] && [ $have_slab = 1 ]; then
			slab_counts >"$DMMR_WORK/slab.before"
		fi
	done
	[ $have_slab = 0 ] || slab_counts >"$DMMR_WORK/slab.after"
}
t0=$SECONDS
ktap_check "$CYCLES load/create/write/read/message/suspend/remove/unload cycles" cycles
ktap_diag "cycles took $((SECONDS - t0)) s"
ktap_check_fails "no 'mirror' target left registered" \
	bash -c 'dmsetup targets | grep -q "^mirror "'

# A cache whose object count grew by at least one per cycle after the
# warm-up is what a per-cycle leak looks like.
# "cache before after" for every cache in both lists.
slab_pairs() {
	awk 'NR == FNR { before[$1] = $2; next } $1 in before { print $1, before[$1], $2 }' \
		"$DMMR_WORK/slab.before" "$DMMR_WORK/slab.after"
}
slab_growth() {
	slab_pairs | awk -v lim=$((CYCLES - WARMUP)) '
		$3 - $2 >= lim { print $1 ": " $2 " -> " $3; bad = 1 }
		END { exit bad }'
}
if [ $have_slab = 1 ] && [ -f "$DMMR_WORK/slab.after" ]; then
	ktap_check "no slab cache grew by one object per cycle" slab_growth
	slab_pairs | awk '$3 != $2 { printf "%d slab %s %d -> %d\n", $3 - $2, $1, $2, $3 }' |
		sort -n | tail -n 5 | ktap_diag
else
	ktap_skip "no slab cache grew by one object per cycle" \
		"no /proc/slabinfo: CONFIG_SLUB_DEBUG is in the debug kernel profile only"
fi

if kmemleak_available; then
	leaks_check() {
		local r
		if r=$(kmemleak_check); then
			echo "$r"
			return 1
		fi
	}
	ktap_check "kmemleak: nothing unreferenced after the cycles" leaks_check
else
	ktap_skip "kmemleak: nothing unreferenced after the cycles" \
		"no kmemleak: CONFIG_DEBUG_KMEMLEAK is in the debug kernel profile only"
fi

ktap_done
