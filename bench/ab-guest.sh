#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/ab-guest.sh: two builds of dm-mirror-rs, A (/dmmr/dm_mirror_rs.ko)
# and B (/dmmr/dm_mirror_rs_b.ko), and the C dm-mirror, taking turns in one
# boot (run by bench/ab), so that boot-to-boot noise (2x under TCG) cancels
# out of the ratios.  Two null_blk legs without memory backing, so that the
# mirror's own work is a large part of each read's CPU:
#   equal      both legs null_blk
#   slow-leg   leg 1 behind dm-delay (AB_DELAY_MS, default 2): the adaptive
#              policy's clear winner is leg 0
# For each repetition (AB_REPS, default 5) and test, every configuration in
# turn: c-mirror, then A and B with the default policy and with adaptive.
# Tests: 4 KiB random reads, 2 jobs x 16 in flight (qd32) and one at a
# time (qd1), AB_RUNTIME seconds each (default 3) after a 1 s warm-up.
# AB_LEGS and AB_TESTS select (default "equal slow-leg" and "qd32 qd1").
# Prints one line per measurement, then medians: IOPS, the guest's busy CPU
# per read (all CPUs, fio included), their ratios to c-mirror, and B over A.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1
A=/dmmr/dm_mirror_rs.ko
B=/dmmr/dm_mirror_rs_b.ko
REPS=${AB_REPS:-5}
RUNTIME=${AB_RUNTIME:-3}
DELAY_MS=${AB_DELAY_MS:-2}
LEG_SETS=${AB_LEGS:-equal slow-leg}
TESTS=${AB_TESTS:-qd32 qd1}
[ -f "$A" ] && [ -f "$B" ] || { echo "bench/ab-guest.sh: needs $A and $B" >&2; exit 1; }
modprobe null_blk nr_devices=2 gb=1 bs=512 irqmode=1 || exit 1
# Loading and unloading the installed module (A) leaves its dependencies
# loaded for the insmods below.
modprobe dm-delay && modprobe dm_mirror_rs && rmmod dm_mirror_rs || exit 1
sectors=$(blockdev --getsz /dev/nullb0)
dmsetup create ab_slow --table "0 $sectors delay /dev/nullb1 0 $DELAY_MS" || exit 1

cpu_busy() {
	local u n sy id io irq sirq st
	read -r _ u n sy id io irq sirq st _ </proc/stat
	echo $((u + n + sy + irq + sirq + st))
}

# measure <test>: "<iops> <busy CPU us per read>" for /dev/mapper/ab.
measure() {
	local args b0 b1 out iops ios
	case "$1" in
	qd32) args=(--iodepth=16 --numjobs=2) ;;
	qd1) args=(--iodepth=1 --numjobs=1) ;;
	esac
	fio --name=w --filename=/dev/mapper/ab --direct=1 --ioengine=libaio --rw=randread --bs=4k \
		"${args[@]}" --time_based --runtime=1 --group_reporting >/dev/null 2>&1
	b0=$(cpu_busy)
	out=$(fio --name=m --filename=/dev/mapper/ab --direct=1 --ioengine=libaio --rw=randread \
		--bs=4k "${args[@]}" --time_based --runtime="$RUNTIME" --group_reporting \
		--output-format=terse 2>/dev/null)
	b1=$(cpu_busy)
	# Terse v3: field 8 read IOPS, field 6 KiB read.
	iops=$(awk -F';' '{ print $8 }' <<<"$out")
	ios=$(awk -F';' '{ print int($6 / 4) }' <<<"$out")
	[ "${ios:-0}" -gt 0 ] || { echo "0 0"; return; }
	# /proc/stat counts in USER_HZ (100) ticks: 10000 us each.
	echo "$iops $(((b1 - b0) * 10000 * 100 / ios))"
}

# run <cfg> <legs> <test>: one measurement of a configuration.
run() {
	local cfg=$1 legs=$2 t=$3 m
	case "$cfg" in
	c-*) modprobe dm-mirror || return 1 ;;
	a-*) insmod "$A" || return 1 ;;
	b-*) insmod "$B" || return 1 ;;
	esac
	dmsetup create ab --table "0 $sectors mirror core 2 1024 nosync 2 $legs" || return 1
	case "$cfg" in *-adaptive) dmsetup message ab 0 io_balance adaptive || return 1 ;; esac
	m=$(measure "$t")
	dmsetup remove ab
	case "$cfg" in c-*) rmmod dm_mirror ;; *) rmmod dm_mirror_rs ;; esac
	echo "$rep ${legs_name} $t $cfg $m"
}

echo "# rep legs test config iops cpu_us_per_read_x100"
for rep in $(seq 1 "$REPS"); do
	for legs_name in $LEG_SETS; do
		case $legs_name in
		equal) legs="/dev/nullb0 0 /dev/nullb1 0" ;;
		slow-leg) legs="/dev/nullb0 0 /dev/mapper/ab_slow 0" ;;
		esac
		for t in $TESTS; do
			for cfg in c-mirror a-default b-default a-adaptive b-adaptive; do
				run "$cfg" "$legs" "$t" || echo "$rep $legs_name $t $cfg failed"
			done
		done
	done
done | tee /tmp/ab.txt
dmsetup remove ab_slow

echo
echo "medians over $REPS repetitions (IOPS; busy CPU us per read; ratios to c-mirror; B / A)"
printf "%-16s %-11s %8s %8s %7s %7s %7s %7s\n" "legs test" "config" "IOPS" "CPU us" "IOPS/C" "CPU/C" "B/A IO" "B/A CPU"
awk '
	$1 == "#" || $5 == "failed" { next }
	{ k = $2 " " $3; key[k] = 1; n[k " " $4]++; iops[k " " $4, n[k " " $4]] = $5; cpu[k " " $4, n[k " " $4]] = $6 }
	function median(arr, k, cnt,    i, j, t, v) {
		for (i = 1; i <= cnt; i++) v[i] = arr[k, i]
		for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
		return (cnt % 2) ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
	}
	END {
		for (k in key) {
			ci = median(iops, k " c-mirror", n[k " c-mirror"]); cc = median(cpu, k " c-mirror", n[k " c-mirror"]) / 100
			split("c-mirror a-default b-default a-adaptive b-adaptive", cfgs, " ")
			for (c = 1; c <= 5; c++) {
				kk = k " " cfgs[c]; if (!n[kk]) continue
				mi[cfgs[c]] = median(iops, kk, n[kk]); mc[cfgs[c]] = median(cpu, kk, n[kk]) / 100
				ba = ""; bc = ""
				if (cfgs[c] ~ /^b-/) {
					a = "a-" substr(cfgs[c], 3)
					if (mi[a] > 0) ba = sprintf("%.2f", mi[cfgs[c]] / mi[a])
					if (mc[a] > 0) bc = sprintf("%.2f", mc[cfgs[c]] / mc[a])
				}
				printf "%-16s %-11s %8d %8.2f %7.2f %7.2f %7s %7s\n", k, cfgs[c], mi[cfgs[c]], mc[cfgs[c]],
					(ci > 0) ? mi[cfgs[c]] / ci : 0, (cc > 0) ? mc[cfgs[c]] / cc : 0, ba, bc
			}
		}
	}' /tmp/ab.txt | sort -s -k1,2
