#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/tail-guest.sh: read latency tails with one leg that stalls 1% of
# its reads for 200 ms, inside the VM (run by bench/tail): what hedged
# reads could win, and what the policies give without them.
#
# Two null_blk legs without memory backing.  Leg 0 is a dm table over
# /dev/nullb0 in 1 MiB chunks, every hundredth a dm-delay of TAIL_STALL_MS
# (default 200): 1% of uniformly random reads sent to leg 0 stall.  Leg 1
# is /dev/nullb1.  Configurations, each on a mapping created just before:
#   stalled-leg   the default policy: every read to leg 0 (dm-raid1)
#   adaptive      adaptive, no tuning: both legs look equal when idle
#   round-robin   round_robin ios 1: half of the reads on leg 0
#   clean-leg     the default policy with leg 1 as the default: no stall,
#                 the floor a perfect hedge could at best reach
# Tests (TAIL_TESTS, default "qd32 qd1"): 4 KiB random reads, 2 jobs x 16
# in flight or one at a time (libaio), TAIL_RUNTIME seconds (default 10)
# after a 1 s warm-up; TAIL_REPS repetitions (default 3).  Prints per
# repetition, test and configuration: IOPS, completion latency p50, p99 and
# p99.9 (us), and the share of reads leg 0 took (its own counter).

export PATH=/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1
REPS=${TAIL_REPS:-3}
RUNTIME=${TAIL_RUNTIME:-10}
TESTS=${TAIL_TESTS:-qd32 qd1}
STALL_MS=${TAIL_STALL_MS:-200}
modprobe null_blk nr_devices=2 gb=1 bs=512 irqmode=1 || exit 1
modprobe dm-delay && modprobe dm_mirror_rs || exit 1
sectors=$(blockdev --getsz /dev/nullb0)
chunk=2048 # 1 MiB

# Leg 0: 99 chunks straight through, then one behind dm-delay, and so on.
table=$(awk -v total="$sectors" -v chunk="$chunk" -v ms="$STALL_MS" 'BEGIN {
	for (start = 0; start < total; start += 100 * chunk) {
		len = 99 * chunk
		if (start + len > total) len = total - start
		printf "%d %d linear /dev/nullb0 %d\n", start, len, start
		if (start + len + chunk <= total)
			printf "%d %d delay /dev/nullb0 %d %d\n", start + len, chunk, start + len, ms
	}
}')
dmsetup create tail_leg0 <<<"$table" || exit 1
echo "# leg 0: $(grep -c delay <<<"$table") of $((sectors / chunk)) chunks of 1 MiB stall ${STALL_MS} ms"

reads_of() { awk '{ print $1 }' "/sys/block/$1/stat"; }
leg0=$(dmsetup info -c --noheadings -o blkdevname tail_leg0)

# run <config> <rep> <test>: one measurement on a fresh mapping.
run() {
	local mirror="0 $sectors mirror core 2 1024 nosync 2 /dev/mapper/tail_leg0 0 /dev/nullb1 0"
	dmsetup create tail --table "$mirror" || return 1
	case "$1" in
	adaptive) dmsetup message tail 0 io_balance adaptive ;;
	round-robin) dmsetup message tail 0 io_balance round_robin ios 1 ;;
	clean-leg) dmsetup message tail 0 io_balance default 1 ;;
	esac
	local depth=(--iodepth=16 --numjobs=2)
	[ "$3" = qd1 ] && depth=(--iodepth=1 --numjobs=1)
	local args=(--name=t --filename=/dev/mapper/tail --direct=1 --ioengine=libaio
		--rw=randread --bs=4k "${depth[@]}" --group_reporting)
	fio "${args[@]}" --time_based --runtime=1 >/dev/null 2>&1
	local r0 r1 l0 l1 out
	r0=$(reads_of "$leg0")
	l0=$(awk '{ print $1 }' /sys/block/nullb1/stat)
	out=$(fio "${args[@]}" --time_based --runtime="$RUNTIME" \
		--percentile_list=50:99:99.9 --output-format=terse 2>/dev/null)
	r1=$(reads_of "$leg0")
	l1=$(awk '{ print $1 }' /sys/block/nullb1/stat)
	dmsetup remove tail
	# Terse v3: field 8 read IOPS; the read clat percentiles follow as
	# "<p>%=<usec>" fields.
	awk -F';' -v cfg="$1" -v rep="$2" -v test="$3" -v on0=$((r1 - r0)) -v on1=$((l1 - l0)) '{
		for (i = 18; i <= 37; i++) {
			split($i, kv, "=")
			if (kv[1] == "50.000000%") p50 = kv[2]
			if (kv[1] == "99.000000%") p99 = kv[2]
			if (kv[1] == "99.900000%") p999 = kv[2]
		}
		share = (on0 + on1) ? 100 * on0 / (on0 + on1) : 0
		printf "%s %s %s %d %d %d %d %.1f\n", rep, test, cfg, $8, p50, p99, p999, share
	}' <<<"$out"
}

echo "# rep test config IOPS p50 p99 p99.9 (us) leg0-share(%)"
for ((rep = 1; rep <= REPS; rep++)); do
	for test in $TESTS; do
		for cfg in stalled-leg adaptive round-robin clean-leg; do
			run "$cfg" "$rep" "$test"
		done
	done
done | tee /tmp/tail.txt
echo
echo "medians over $REPS repetitions"
printf '%-5s %-12s %8s %8s %8s %10s %6s\n' test config IOPS p50 p99 p99.9 leg0%
for test in $TESTS; do
	for cfg in stalled-leg adaptive round-robin clean-leg; do
		awk -v cfg="$cfg" -v test="$test" '$2 == test && $3 == cfg { for (i = 4; i <= 8; i++) v[i, n] = $i; n++ }
		END {
			printf "%-5s %-12s", test, cfg
			for (i = 4; i <= 8; i++) {
				for (a = 0; a < n; a++) s[a] = v[i, a]
				for (a = 0; a < n; a++) for (b = a + 1; b < n; b++) if (s[b] < s[a]) { t = s[a]; s[a] = s[b]; s[b] = t }
				printf (i == 8) ? " %6s" : (i == 7 ? " %10s" : " %8s"), s[int(n / 2)]
			}
			print ""
		}' /tmp/tail.txt
	done
done
dmsetup remove tail_leg0
