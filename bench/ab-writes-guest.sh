#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/ab-writes-guest.sh: issue 13's write path, two builds of
# dm-mirror-rs, A (/dmmr/dm_mirror_rs.ko) and B (/dmmr/dm_mirror_rs_b.ko),
# taking turns in one boot (run by `AB_MODE=writes bench/ab`).  Two
# memory-backed null_blk devices; the second also behind dm-delay
# (AB_DELAY_MS, default 10, writes only) for a slow write-mostly leg:
# short enough that the backlog stays under its 1024 slots.
# Configurations, in turn within each repetition (AB_REPS, default 5):
#   linear      dm-linear over the first device: the local leg alone
#   c-mirror    the C dm-mirror over both devices
#   a-sync b-sync          dm-mirror-rs, no write-mostly leg
#   a-wb-fast b-wb-fast    leg 1 (the second device) write-mostly
#   a-wb-slow b-wb-slow    leg 1 (dm-delay) write-mostly
# Each: AB_WRITES (default 2000) direct 4 KiB random writes one at a time
# (AB_WRITE_QD, default 1: with more, libaio at that queue depth) over 16 MiB (32 regions of 512 KiB, hot after a 64-write warm-up), as
# bench/guest.sh's QD1 write test but longer, so that the backlog fills as
# it does in use.  Prints one line per run (p50 and p99 completion latency,
# IOPS, the write-behind backlog's peak), then medians with ratios to
# linear and B over A.  (No CPU figure: a run is too short for
# /proc/stat's 10 ms ticks.)

export PATH=/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1
A=/dmmr/dm_mirror_rs.ko
B=/dmmr/dm_mirror_rs_b.ko
REPS=${AB_REPS:-5}
DELAY_MS=${AB_DELAY_MS:-10}
WRITES=${AB_WRITES:-2000}
QD=${AB_WRITE_QD:-1}
CFGS="linear c-mirror a-sync b-sync a-wb-fast b-wb-fast a-wb-slow b-wb-slow"
[ -f "$A" ] && [ -f "$B" ] || { echo "bench/ab-writes-guest.sh: needs $A and $B" >&2; exit 1; }
modprobe null_blk nr_devices=2 gb=1 bs=512 irqmode=1 memory_backed=1 || exit 1
modprobe dm-delay && modprobe dm_mirror_rs && rmmod dm_mirror_rs || exit 1
sectors=$(blockdev --getsz /dev/nullb0)
dmsetup create ab_slow --table "0 $sectors delay /dev/nullb1 0 0 /dev/nullb1 0 $DELAY_MS" || exit 1

fio_writes() {
	local engine=(--ioengine=psync)
	[ "$QD" = 1 ] || engine=(--ioengine=libaio --iodepth="$QD")
	fio --name=w --filename=/dev/mapper/ab --direct=1 "${engine[@]}" --rw=randwrite --bs=4k \
		--offset=48m --size=16m --number_ios="$1" --randrepeat=0 --percentile_list=50:99 \
		--output-format=terse 2>/dev/null
}

# run <cfg>: "<p50 us> <p99 us> <IOPS> <backlog peak>".
run() {
	local cfg=$1 t mirror="0 $sectors mirror core 2 1024 nosync 2" out peak
	case "$cfg" in
	c-*) modprobe dm-mirror || return 1 ;;
	a-*) insmod "$A" || return 1 ;;
	b-*) insmod "$B" || return 1 ;;
	esac
	case "$cfg" in
	linear) t="0 $sectors linear /dev/nullb0 0" ;;
	*-wb-fast) t="$mirror /dev/nullb0 0 /dev/nullb1 0 4 write_mostly 1 max_write_behind 16384" ;;
	*-wb-slow) t="$mirror /dev/nullb0 0 /dev/mapper/ab_slow 0 4 write_mostly 1 max_write_behind 16384" ;;
	*) t="$mirror /dev/nullb0 0 /dev/nullb1 0" ;;
	esac
	dmsetup create ab --table "$t" || return 1
	fio_writes 64 >/dev/null
	sleep 0.1
	out=$(fio_writes "$WRITES")
	# "behind <idx> <dev> writes <n> sectors <n> peak_writes <n> ..."
	peak=$(dmsetup message ab 0 io_balance show 2>/dev/null | awk '$1 == "behind" { print $9 }')
	dmsetup remove ab
	case "$cfg" in linear) ;; c-*) rmmod dm_mirror ;; *) rmmod dm_mirror_rs ;; esac
	# Terse v3: field 49 write IOPS, 59 and 60 the write clat percentiles
	# ("50.000000%=<us>").
	awk -F';' -v peak="${peak:--}" '{
		split($59, p50, "="); split($60, p99, "=")
		printf "%s %s %s %s\n", p50[2], p99[2], $49, peak
	}' <<<"$out"
}

echo "# rep config p50_us p99_us iops backlog_peak_writes"
for rep in $(seq 1 "$REPS"); do
	for cfg in $CFGS; do
		m=$(run "$cfg") && [ -n "$m" ] || m=failed
		echo "$rep $cfg $m"
	done
done | tee /tmp/ab.txt
dmsetup remove ab_slow

echo
echo "medians over $REPS repetitions of $WRITES writes at QD$QD (ratios to linear; B / A)"
printf "%-10s %6s %6s %7s %6s %7s %8s %7s %8s\n" config p50 p99 IOPS peak \
	"p50/lin" "IOPS/lin" "B/A p50" "B/A IOPS"
awk -v cfgs="$CFGS" '
	$1 == "#" || $3 == "failed" { next }
	{ c = $2; k = ++n[c]; p50[c, k] = $3; p99[c, k] = $4; iops[c, k] = $5; pk[c, k] = $6 }
	function median(arr, c, cnt,    i, j, t, v) {
		for (i = 1; i <= cnt; i++) v[i] = arr[c, i] + 0
		for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
		return (cnt % 2) ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
	}
	END {
		m = split(cfgs, order, " ")
		for (i = 1; i <= m; i++) {
			c = order[i]; if (!n[c]) continue
			mp[c] = median(p50, c, n[c]); mi[c] = median(iops, c, n[c])
			ba = ""; bi = ""
			if (c ~ /^b-/) {
				a = "a-" substr(c, 3)
				if (mp[a] > 0) ba = sprintf("%.2f", mp[c] / mp[a])
				if (mi[a] > 0) bi = sprintf("%.2f", mi[c] / mi[a])
			}
			printf "%-10s %6.1f %6.1f %7d %6s %7.2f %8.2f %7s %8s\n", c, mp[c], median(p99, c, n[c]), mi[c],
				(pk[c, 1] == "-") ? "-" : median(pk, c, n[c]),
				mp["linear"] ? mp[c] / mp["linear"] : 0, mi["linear"] ? mi[c] / mi["linear"] : 0, ba, bi
		}
	}' /tmp/ab.txt
