#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/guest.sh [--list] [--quick] [--reps N] [--phases "nbd iscsi write delay equal cpu matrix matrix-iscsi step"]
#
# The benchmark, inside the VM (scripts/vm-run bench/guest.sh; bench/run does
# that and turns the output into tables and charts).  Every configuration of
# a phase runs side by side in the same boot: repetitions are the middle
# loop, configurations the inner one, so slow drift hits all of them alike.
#
# Phases (see Documentation/benchmarks.rst):
#   nbd    local leg null_blk + remote leg NBD over a veth pair, netem
#          15 ms each way (30 ms RTT) at 1384 kbit/s: ext4 file read,
#          fio sequential and 4 KiB random reads
#   write  the same legs: ext4 file write + fsync and fio 4 KiB random
#          writes at queue depth 1 (p50, p99), with and without a
#          write-mostly remote leg; how long the remote leg takes to catch
#          up afterwards (drain) and the write-behind backlog's peak
#   delay  the same with a dm-delay leg (BENCH_DELAY_MS, default 15) instead
#          of NBD
#   equal  two legs of equal, bandwidth-capped speed (null_blk mbps=):
#          1 and 4 parallel readers
#   cpu    uncapped memory-backed null_blk legs: 4 KiB random read/write IOPS,
#          and the write phase's QD1 write latency without a remote leg (what
#          the write path itself costs)
#   iscsi  the nbd phase's tests with the reference experiment's transport:
#          the remote leg over iSCSI (tgt in the other namespace, open-iscsi
#          in the guest), same netem shaping; the C mirror and the module
#          with no tuning, each leg order
#   matrix the nbd phase's legs: fio direct reads {seq, rand} x {4k, 1M} x
#          {QD1, QD32} on a just-created mapping, against the best static
#          choice (the local leg: c-mirror, rs-local)
#   matrix-iscsi  the same over the iscsi phase's legs
#   step   a fast leg that becomes slow and recovers (dm-delay switched):
#          how long until 90% of the reads have moved, each way; probe
#          reads as a share of all reads; a convergence chart
#
# Output on stdout, one record per line, tab-separated:
#   BENCH-META <key> <value>
#   BENCH <phase> <test> <config> <rep> <metric> <value> <unit>
#   BENCH-FAIL <phase> <test|-> <config> <rep|-> <reason>
#   BENCH-CONFIG <phase> <config> <description>
#   BENCH-DONE <phase> <seconds>
#   BENCH-SERIES <phase> <config> <rep> <ms> <percent>   (the step chart)
# and '# ...' comment lines.  --list prints "<phase> <config> <test>,..."
# for every configuration that would run, and nothing else.
#
# Environment (forwarded by bench/run): BENCH_REPS, BENCH_QUICK=1 (tiny
# sizes, 1 repetition), BENCH_PHASES, BENCH_CONFIGS (run only these
# configurations of each phase), BENCH_DELAY_MS, BENCH_MBPS.

set -uo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export DM_DISABLE_UDEV=1

IP=/usr/sbin/ip
TC=/usr/sbin/tc
# The guest's devtmpfs has no /dev/fd, which process substitution needs.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd 2>/dev/null

QUICK=${BENCH_QUICK:-0}
REPS=${BENCH_REPS:-}
PHASES=${BENCH_PHASES:-nbd iscsi write delay equal cpu matrix matrix-iscsi step}
ONLY_CFGS=${BENCH_CONFIGS:-}
DELAY_MS=${BENCH_DELAY_MS:-15}
MBPS=${BENCH_MBPS:-10}
LIST=0
while [ $# -gt 0 ]; do
	case "$1" in
	--list) LIST=1 ;;
	--quick) QUICK=1 ;;
	--reps) REPS=$2; shift ;;
	--phases) PHASES=$2; shift ;;
	*) echo "bench/guest.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done

if [ "$QUICK" = 1 ]; then
	REPS=${REPS:-1}
	FILE_KB=128	# the ext4 file read and written
	FIO_MB=4	# region the fio jobs read in the nbd/delay phases
	FIO_CAP=500ms	# their runtime cap
	RUNTIME=500ms	# time-based fio runs of the equal/cpu phases
	WRITE_IOS=32	# 4 KiB writes of the write phase's QD1 run
else
	REPS=${REPS:-5}
	FILE_KB=2048
	FIO_MB=32
	FIO_CAP=2s
	RUNTIME=2s
	WRITE_IOS=256
fi
# The write-behind bound of the write phase, in sectors (8 MiB): above what
# one test writes, so the tests measure writes while the backlog is under
# its bound.
WRITE_BEHIND=16384
DEV_MB=64		# every leg and mirror
FS_MB=48		# the ext4 file system on them; raw writes go past it
SECTORS=$((DEV_MB * 2048))

# ------------------------------------------------------------ configurations

# What each configuration is, for the report.
declare -A DESC=(
	[linear]="dm-linear over the local device alone (the physical limit)"
	[c-mirror]="dm-mirror (C, same kernel), local leg first: reads its default leg"
	[c-mirror-rf]="dm-mirror (C, same kernel), remote leg listed first (its default leg)"
	[rs-rr128]="dm-mirror-rs, round_robin ios 128"
	[rs-rr1]="dm-mirror-rs, round_robin ios 1 (strict alternation)"
	[rs-local]="dm-mirror-rs, round_robin ios 0, default leg local"
	[rs-remote]="dm-mirror-rs, round_robin ios 0, default leg remote"
	[rs-w3-1]="dm-mirror-rs, weight local 3 remote 1"
	[rs-w1-0]="dm-mirror-rs, weight local 1 remote 0"
	[rs-w1-1]="dm-mirror-rs, weighted 1:1"
	[rs-adaptive]="dm-mirror-rs, adaptive (no tuning)"
	[rs-adaptive-rf]="dm-mirror-rs, adaptive (no tuning), remote leg listed first (the default leg)"
	[rs-param]="dm-mirror-rs, no message: module parameter default_io_balance=adaptive"
	[rs-param-rf]="dm-mirror-rs, no message: module parameter default_io_balance=adaptive, remote leg listed first"
	[md-raid1]="md raid1 via dm-raid, remote leg write_mostly"
	[md-raid1-eq]="md raid1 via dm-raid (no write_mostly)"
	[md-raid1-wb]="md raid1 via dm-raid, remote leg write_mostly, max_write_behind 16384, local metadata devices (bitmap)"
	[rs-sync]="dm-mirror-rs, no write-mostly leg: writes complete on both legs"
	[rs-wb]="dm-mirror-rs, remote leg write_mostly, max_write_behind 16384"
)

# Configurations per phase, in table order.
MIRROR_CFGS="linear c-mirror rs-rr128 rs-rr1 rs-local rs-remote rs-w3-1 rs-w1-0 rs-adaptive rs-adaptive-rf rs-param md-raid1"
WRITE_CFGS="linear c-mirror md-raid1-wb rs-sync rs-wb"
EQUAL_CFGS="linear c-mirror rs-rr128 rs-w1-1 rs-adaptive md-raid1-eq"
CPU_CFGS="linear c-mirror rs-local rs-rr128 rs-adaptive md-raid1-eq rs-wb"
MATRIX_CFGS="linear c-mirror rs-local rs-adaptive rs-adaptive-rf rs-param"
# The issue-14 rows, both leg orders: what a user gets with no tuning.
ISCSI_CFGS="linear c-mirror c-mirror-rf md-raid1 rs-param rs-param-rf rs-adaptive rs-adaptive-rf"
STEP_CFGS="c-mirror rs-adaptive md-raid1-eq"

phase_cfgs() {
	local all
	all=$(all_phase_cfgs "$1") || return 1
	[ -n "$ONLY_CFGS" ] || { echo "$all"; return; }
	local c kept=
	for c in $all; do
		case " $ONLY_CFGS " in *" $c "*) kept="$kept $c" ;; esac
	done
	echo "${kept# }"
}
all_phase_cfgs() {
	case "$1" in
	nbd|delay) echo "$MIRROR_CFGS" ;;
	iscsi) echo "$ISCSI_CFGS" ;;
	matrix-iscsi) echo "$MATRIX_CFGS" ;;
	write) echo "$WRITE_CFGS" ;;
	equal) echo "$EQUAL_CFGS" ;;
	cpu) echo "$CPU_CFGS" ;;
	matrix) echo "$MATRIX_CFGS" ;;
	step) echo "$STEP_CFGS" ;;
	*) return 1 ;;
	esac
}

for p in $PHASES; do
	phase_cfgs "$p" >/dev/null || { echo "bench/guest.sh: unknown phase '$p'" >&2; exit 2; }
done
# tests_for <phase> <config>: the tests to run, one "function [arg]" a line.
tests_for() {
	case "$1" in
	nbd|delay|iscsi) printf '%s\n' t_ext4_read t_fio_seq t_fio_rand ;;
	write) printf '%s\n' t_ext4_write t_fio_wqd1 ;;
	equal) printf '%s\n' "t_readers 1" "t_readers 4" ;;
	cpu) printf '%s\n' "t_cpu randread" "t_cpu randwrite" t_fio_wqd1 ;;
	matrix|matrix-iscsi)
		local rw bs qd
		for rw in seq rand; do
			for bs in 4k 1m; do
				for qd in 1 32; do echo "t_matrix $rw $bs $qd"; done
			done
		done
		;;
	step) echo t_step ;;
	esac
}

# The name a test reports its numbers under.
test_name() {
	case "$1" in
	t_ext4_read) echo ext4-read ;;
	t_ext4_write) echo ext4-write ;;
	t_fio_seq) echo fio-seq-read ;;
	t_fio_rand) echo fio-rand-read ;;
	t_fio_wqd1) echo fio-randwrite-qd1 ;;
	"t_readers "*) echo "readers-${1#t_readers }" ;;
	"t_cpu "*) echo "4k-${1#t_cpu }" ;;
	"t_matrix "*) set -- $1; echo "$2-$3-qd$4" ;;
	t_step) echo step-slow,step-recover ;;
	esac
}

if [ $LIST = 1 ]; then
	for p in $PHASES; do
		for c in $(phase_cfgs "$p"); do
			mapfile -t ts < <(tests_for "$p" "$c")
			names=
			for t in "${ts[@]}"; do names+=${names:+,}$(test_name "$t"); done
			echo "$p $c $names"
		done
	done
	exit 0
fi

# ------------------------------------------------------------------ output

# Records go to fd 3, the console, even from code whose output is redirected
# (the phase setup's goes to a log).
exec 3>&1
tab() { local IFS=$'\t'; echo "$*" >&3; }
meta() { tab BENCH-META "$1" "$2"; }
emit() { tab BENCH "$@"; }
# bfail <phase> <test|-> <config> <rep|-> <reason...>
bfail() { tab BENCH-FAIL "$1" "$2" "$3" "$4" "${*:5}"; }
note() { echo "# $*" >&3; }

# Microseconds since the epoch, without forking (a fork costs ~40 ms here).
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }
# secs <us>: seconds with 4 decimals.
secs() { printf '%d.%04d' $(($1 / 1000000)) $((($1 % 1000000) / 100)); }

WORK=/tmp/bench
MNT=$WORK/mnt
mkdir -p "$WORK" "$MNT"
ERR=$WORK/err

# run <timeout> cmd...: the command's output goes to $ERR; fails on timeout.
run() {
	local t=$1
	shift
	timeout -k 5 "$t" "$@" >"$ERR" 2>&1
}
# The last line of $ERR, for failure reasons.
why() { tail -n 1 "$ERR" 2>/dev/null | tr '\t' ' ' | cut -c1-200; }

dm() { dmsetup --noudevsync "$@"; }
mounted() { grep -q " $1 " /proc/mounts; }
# leg_reads <dev> <var>: sets <var>_ios and <var>_sect to the read requests
# and sectors the device completed so far.  The paths of the sysfs stat
# files are cached: a fork costs ~40 ms here.
declare -A STATF=()
leg_reads() {
	local n s
	[ -n "${STATF[$1]:-}" ] || STATF[$1]=/sys/dev/block/$(stat -Lc '%Hr:%Lr' "$1")/stat
	read -r n _ s _ <"${STATF[$1]}"
	printf -v "${2}_ios" %s "$n"
	printf -v "${2}_sect" %s "$s"
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# ----------------------------------------------------------------- modules

# Only one of dm_mirror (C) and dm_mirror_rs can be loaded: both register
# the target "mirror".
use_c() {
	grep -q '^dm_mirror_rs ' /proc/modules && { rmmod dm_mirror_rs || return 1; }
	grep -q '^dm_mirror ' /proc/modules || modprobe dm-mirror
}
use_rust() {
	grep -q '^dm_mirror ' /proc/modules && { rmmod dm_mirror || return 1; }
	grep -q '^dm_mirror_rs ' /proc/modules || modprobe dm_mirror_rs
}

# ---------------------------------------------------------------- null_blk

NULLB_CFS=/sys/kernel/config/nullb
NULLBS=()
# mk_nullb <name> <size_mb> [mbps]: a memory-backed null_blk, /dev/<name>.
# null_blk's default request limit is 127 KiB, so every 128 KiB read
# (readahead, fio) would reach the mirror split into 127 + 1 KiB, which
# policies that count reads rather than sectors split very unevenly (the
# 127 KiB parts all on one leg with round_robin ios 1).  1280 KiB is the
# block layer's default limit for disks.  With mbps, null_blk hands out
# mbps/50 MiB every 20 ms and requeues a larger request forever, so the
# capped legs get 128 KiB (the equal phase's reads are 64 KiB).
NULLB_MAX_SECTORS=2560
NULLB_MAX_SECTORS_CAPPED=256
mk_nullb() {
	local d=$NULLB_CFS/$1 ms=$NULLB_MAX_SECTORS
	[ -z "${3:-}" ] || ms=$NULLB_MAX_SECTORS_CAPPED
	mkdir "$d" || return 1
	echo "$2" >"$d/size" && echo 1 >"$d/memory_backed" &&
		echo "$ms" >"$d/max_sectors" &&
		{ [ -z "${3:-}" ] || echo "$3" >"$d/mbps"; } &&
		echo 1 >"$d/power" || return 1
	NULLBS+=("$1")
	[ -b "/dev/$1" ] || { sleep 0.2; [ -b "/dev/$1" ]; }
}
rm_nullbs() {
	local n
	for n in "${NULLBS[@]}"; do
		echo 0 >"$NULLB_CFS/$n/power" 2>/dev/null
		rmdir "$NULLB_CFS/$n" 2>/dev/null
	done
	NULLBS=()
}

# ------------------------------------------------------------- the mirrors

BM=bm			# the device under test: /dev/mapper/bm
DEV=/dev/mapper/$BM
LOCAL= REMOTE= SCRATCH=	# legs of the current phase (SCRATCH: the linear config's copy)

msg() { dmsetup message -- "$BM" 0 io_balance "$@"; }

# create <config>: /dev/mapper/bm for the configuration, on $LOCAL/$REMOTE.
create() {
	local cfg=$1 mirror="0 $SECTORS mirror core 2 1024 nosync 2 $LOCAL 0 $REMOTE 0"
	# The same with the remote leg listed first (the default leg).
	local mirror_rf="0 $SECTORS mirror core 2 1024 nosync 2 $REMOTE 0 $LOCAL 0"
	case "$cfg" in
	linear) dm create "$BM" --table "0 $SECTORS linear ${SCRATCH:-$LOCAL} 0" ;;
	c-mirror) use_c && dm create "$BM" --table "$mirror" ;;
	c-mirror-rf)
		use_c && dm create "$BM" --table "$mirror_rf"
		;;
	rs-wb)
		use_rust && dm create "$BM" --table \
			"$mirror 4 write_mostly 1 max_write_behind $WRITE_BEHIND"
		;;
	rs-adaptive-rf)
		use_rust && dm create "$BM" --table "$mirror_rf 2 io_balance adaptive"
		;;
	rs-param|rs-param-rf)
		# The table lvm2 would load, no message: the policy comes from the
		# module parameter (set through sysfs for this mapping only).
		local param=/sys/module/dm_mirror_rs/parameters/default_io_balance
		[ "$cfg" = rs-param ] || mirror=$mirror_rf
		use_rust && echo adaptive >"$param" || return 1
		dm create "$BM" --table "$mirror"
		local rc=$?
		echo >"$param"
		return $rc
		;;
	rs-*)
		use_rust && dm create "$BM" --table "$mirror" || return 1
		case "$cfg" in
		rs-rr128) msg round_robin ios 128 ;;
		rs-rr1) msg round_robin ios 1 ;;
		rs-local) msg default 0 && msg round_robin ios 0 ;;
		rs-remote) msg default 1 && msg round_robin ios 0 ;;
		rs-w3-1) msg weight 0 3 && msg weight 1 1 ;;
		rs-w1-0) msg weight 0 1 && msg weight 1 0 ;;
		rs-w1-1) msg weight 0 1 && msg weight 1 1 && msg weighted ;;
		rs-adaptive) msg adaptive ;;
		rs-sync) ;;
		*) echo "unknown configuration $cfg"; return 1 ;;
		esac
		;;
	md-raid1)
		modprobe dm-raid && dm create "$BM" --table \
			"0 $SECTORS raid raid1 6 0 region_size 1024 nosync write_mostly 1 2 - $LOCAL - $REMOTE"
		;;
	md-raid1-wb)
		# md's write-behind needs its write-intent bitmap, which dm-raid
		# keeps on the metadata devices: both local (md's best case), and
		# zeroed so every repetition builds a new array.
		modprobe dm-raid && zero_meta || return 1
		dm create "$BM" --table "0 $SECTORS raid raid1 8 0 region_size 1024 nosync write_mostly 1 max_write_behind $WRITE_BEHIND 2 $META0 $LOCAL $META1 $REMOTE"
		;;
	md-raid1-eq)
		modprobe dm-raid && dm create "$BM" --table \
			"0 $SECTORS raid raid1 4 0 region_size 1024 nosync 2 - $LOCAL - $REMOTE"
		;;
	*) echo "unknown configuration $cfg"; return 1 ;;
	esac
}

destroy() {
	mounted "$MNT" && { timeout 300 umount "$MNT" || umount -l "$MNT"; }
	[ -e "$DEV" ] || return 0
	timeout 120 dmsetup --noudevsync remove --retry "$BM" >/dev/null 2>&1 ||
		timeout 60 dmsetup --noudevsync remove --force "$BM" >/dev/null 2>&1
}

# The legs' read counters around a measurement: LOCAL_SHARE is the percentage
# of the sectors read from the legs that came from the local leg, REMOTE_IOS
# the read requests the remote leg completed.
legs_before() {
	leg_reads "$CUR_LOCAL" LB
	leg_reads "$REMOTE" RB
}
legs_after() {
	local l r
	leg_reads "$CUR_LOCAL" LA
	leg_reads "$REMOTE" RA
	l=$((LA_sect - LB_sect)) r=$((RA_sect - RB_sect))
	REMOTE_IOS=$((RA_ios - RB_ios))
	if [ $((l + r)) -gt 0 ]; then
		LOCAL_SHARE=$((l * 1000 / (l + r)))
		LOCAL_SHARE=$((LOCAL_SHARE / 10)).$((LOCAL_SHARE % 10))
	else
		LOCAL_SHARE=
	fi
}

# The write phase's metadata devices for md (META0 for the local leg, META1
# for the remote one), both local null_blk.
META0= META1=
zero_meta() {
	dd if=/dev/zero of="$META0" bs=1M count=4 oflag=direct status=none &&
		dd if=/dev/zero of="$META1" bs=1M count=4 oflag=direct status=none
}

# behind_stat <field>: the field of the remote leg's "behind" line of
# io_balance show (dm-mirror-rs with a write-mostly leg), else nothing.
behind_stat() {
	dmsetup message "$BM" 0 io_balance show 2>/dev/null |
		awk -v k="$1" '$1 == "behind" && $2 == 1 { for (i = 4; i < NF; i++) if ($i == k) print $(i + 1) }'
}

# caught_up <config> <t0-us>: waits until the remote leg has caught up (no
# write in flight on it and, on dm-mirror-rs, no copy behind); fails after
# 600 s from <t0-us>.  md's behind writes are in flight on the remote leg
# from the moment md acknowledges the write.
caught_up() {
	local c=$1 t0=$2 inflight=/sys/block/${REMOTE##*/}/inflight w n
	while :; do
		read -r _ w <"$inflight"
		n=0
		[ "$c" != rs-wb ] || n=$(behind_stat writes)
		[ "$w" != 0 ] || [ "${n:-0}" != 0 ] || return 0
		[ $(($(now_us) - t0)) -le 600000000 ] || return 1
		sleep 0.05
	done
}

# wait_drain <phase> <test> <config> <rep> <t-end-us>: emits how long after
# <t-end-us> (when the test's writes were acknowledged) the remote leg had
# caught up (a sync mirror: at once) and, with a write-behind backlog, the
# backlog's peak.
wait_drain() {
	local p=$1 t=$2 c=$3 r=$4 t1=$5 peak
	caught_up "$c" "$t1" || { bfail "$p" "$t" "$c" "$r" "the remote leg did not catch up in 600 s"; return 1; }
	emit "$p" "$t" "$c" "$r" drain "$(secs $(($(now_us) - t1)))" s
	[ "$c" = rs-wb ] || return 0
	peak=$(behind_stat peak_sectors)
	[ -z "$peak" ] || emit "$p" "$t" "$c" "$r" peak $((peak / 2)) KiB
}
# reset_peak <config>: the backlog's peak from here on.
reset_peak() { [ "$1" != rs-wb ] || msg reset_stats >/dev/null 2>&1; }

# ------------------------------------------------------------------- tests
#
# Each test takes <phase> <config> <rep>, emits its numbers or a BENCH-FAIL.

# fio_terse <args...>: run fio; F[1..] = the fields of its terse v3 line
# (F[5] error, F[6] read KiB, F[7] read KiB/s, F[8] read IOPS, F[47..49]
# the same for writes).  Fails when fio did.
F=()
fio_terse() {
	local out
	out=$(timeout -k 5 300 fio --output-format=terse --terse-version=3 --group_reporting "$@" 2>"$ERR") ||
		return 1
	out=${out##*$'\n'}
	IFS=';' read -ra F <<<";$out"
	[ "${F[5]:-x}" = 0 ]
}
# kib_to_mib <KiB/s>: MiB/s with 3 decimals.
kib_to_mib() { printf '%d.%03d' $(($1 / 1024)) $((($1 % 1024) * 1000 / 1024)); }

t_ext4_read() {
	local p=$1 c=$2 r=$3 t0 t1
	drop_caches
	run 120 mount -t ext4 -o ro "$DEV" "$MNT" || { bfail "$p" ext4-read "$c" "$r" "mount: $(why)"; return 1; }
	legs_before
	t0=$(now_us)
	run 600 cat "$MNT/file" || { bfail "$p" ext4-read "$c" "$r" "read: $(why)"; return 1; }
	t1=$(now_us)
	legs_after
	run 300 umount "$MNT"
	emit "$p" ext4-read "$c" "$r" time "$(secs $((t1 - t0)))" s
	[ -z "$LOCAL_SHARE" ] || emit "$p" ext4-read "$c" "$r" local_share "$LOCAL_SHARE" %
	emit "$p" ext4-read "$c" "$r" remote_reads "$REMOTE_IOS" requests
}

t_ext4_write() {
	local p=$1 c=$2 r=$3 t0 t1
	drop_caches
	run 120 mount -t ext4 -o noatime "$DEV" "$MNT" || { bfail "$p" ext4-write "$c" "$r" "mount: $(why)"; return 1; }
	sync
	caught_up "$c" "$(now_us)"
	reset_peak "$c"
	t0=$(now_us)
	run 600 dd if="$WORK/wfile" of="$MNT/written" bs=1M conv=fsync status=none ||
		{ bfail "$p" ext4-write "$c" "$r" "dd: $(why)"; return 1; }
	t1=$(now_us)
	emit "$p" ext4-write "$c" "$r" time "$(secs $((t1 - t0)))" s
	wait_drain "$p" ext4-write "$c" "$r" "$t1"
	rm -f "$MNT/written"
	run 600 umount "$MNT"
}

# t_fio_wqd1: $WRITE_IOS direct 4 KiB random writes, one at a time, over
# the 16 MiB after the file system, at most $FIO_CAP: the p50 and p99
# completion latency (us), then the drain.
t_fio_wqd1() {
	local p=$1 c=$2 r=$3 t=fio-randwrite-qd1 t1
	reset_peak "$c"
	fio_terse --name="$t" --filename="$DEV" --direct=1 --ioengine=psync --rw=randwrite --bs=4k \
		--offset="${FS_MB}m" --size=$((DEV_MB - FS_MB))m --number_ios="$WRITE_IOS" --runtime="$FIO_CAP" --randrepeat=0 \
		--percentile_list=50:99 || { bfail "$p" "$t" "$c" "$r" "fio: $(why)"; return 1; }
	t1=$(now_us)
	# Terse v3: the write clat percentiles are fields 59.. ("50.000000%=<us>").
	emit "$p" "$t" "$c" "$r" p50 "${F[59]#*=}" us
	emit "$p" "$t" "$c" "$r" p99 "${F[60]#*=}" us
	wait_drain "$p" "$t" "$c" "$r" "$t1"
}

# fio_read <test> <phase> <config> <rep> <metric> <fio args...>: a read
# job with the legs' counters around it; emits bw (MiB/s) or iops and the
# local leg's share of the sectors read.
fio_read() {
	local t=$1 p=$2 c=$3 r=$4 m=$5 share=local_share
	shift 5
	legs_before
	fio_terse --name="$t" --filename="$DEV" --readonly --direct=1 --ioengine=libaio "$@" ||
		{ bfail "$p" "$t" "$c" "$r" "fio: $(why)"; return 1; }
	legs_after
	case $m in
	bw) emit "$p" "$t" "$c" "$r" bw "$(kib_to_mib "${F[7]}")" MiB/s ;;
	iops) emit "$p" "$t" "$c" "$r" iops "${F[8]}" IOPS ;;
	esac
	[ "$p" != equal ] || share=leg0_share
	[ -z "$LOCAL_SHARE" ] || emit "$p" "$t" "$c" "$r" "$share" "$LOCAL_SHARE" %
}

# A sequential reader with 4 x 128 KiB in flight; at most $FIO_MB MiB or
# $FIO_CAP, whichever comes first.
t_fio_seq() {
	fio_read fio-seq-read "$@" bw --iodepth=4 --rw=read --bs=128k --size="${FIO_MB}m" \
		--runtime="$FIO_CAP"
}

# 4 KiB random reads, 4 in flight, over $FIO_MB MiB, at most $FIO_CAP.
t_fio_rand() {
	fio_read fio-rand-read "$@" iops --iodepth=4 --rw=randread --bs=4k --size="${FIO_MB}m" \
		--runtime="$FIO_CAP"
}

# t_matrix <seq|rand> <4k|1m> <qd>: one cell of the read matrix, direct
# reads over $FIO_MB MiB for at most $FIO_CAP.  The configurations are
# created anew each repetition and the cells run in this order, so the
# first cell reads a just-created mapping.
t_matrix() {
	local name=$1-$2-qd$3 rw=randread bs=$2 qd=$3
	[ "$1" != seq ] || rw=read
	shift 3
	fio_read "$name" "$@" bw --iodepth="$qd" --rw="$rw" --bs="$bs" --size="${FIO_MB}m" \
		--runtime="$FIO_CAP"
}

# t_readers <n>: n parallel sequential readers (4 x 64 KiB in flight each),
# each in its own quarter of the device, for $RUNTIME.
t_readers() {
	local n=$1
	shift
	fio_read "readers-$n" "$@" bw --iodepth=4 --rw=read --bs=64k --numjobs="$n" \
		--size=$((DEV_MB / 4))m --offset_increment=$((DEV_MB / 4))m --time_based --runtime="$RUNTIME"
}

# Busy CPU time of the whole guest so far, in USER_HZ ticks (1/100 s).
cpu_busy() {
	local u n sy id io irq sirq st
	read -r _ u n sy id io irq sirq st _ </proc/stat
	echo $((u + n + sy + irq + sirq + st))
}

# t_cpu <randread|randwrite>: 2 jobs x 16 in flight, 4 KiB, $RUNTIME.
# Besides IOPS, the guest's busy CPU time per I/O (all CPUs, fio included:
# the mirrors do part of their work in kernel threads, which fio's own CPU
# figures miss).
t_cpu() {
	local rw=$1 p=$2 c=$3 r=$4 ios b0 b1 t=4k-$1
	b0=$(cpu_busy)
	fio_terse --name=cpu --filename="$DEV" --direct=1 --ioengine=libaio --iodepth=16 \
		--numjobs=2 --rw="$rw" --bs=4k --size="${DEV_MB}m" --time_based --runtime="$RUNTIME" \
		--randrepeat=0 || { bfail "$p" "$t" "$c" "$r" "fio: $(why)"; return 1; }
	b1=$(cpu_busy)
	if [ "$rw" = randread ]; then
		emit "$p" "$t" "$c" "$r" iops "${F[8]}" IOPS
		ios=$((F[6] / 4))
	else
		emit "$p" "$t" "$c" "$r" iops "${F[49]}" IOPS
		ios=$((F[47] / 4))
	fi
	[ "$ios" -le 0 ] || emit "$p" "$t" "$c" "$r" cpu_per_io \
		"$(printf '%d.%02d' $(((b1 - b0) * 10000 / ios)) $(((b1 - b0) * 1000000 / ios % 100)))" us
}

# The step phase's timeline (ms from the start of the reads): the local
# leg becomes slow at STEP_SLOW_MS and fast again at STEP_FAST_MS; the
# reads stop at STEP_END_MS; the legs' counters are sampled every
# STEP_SAMPLE_MS.
STEP_SLOW_MS=2000 STEP_FAST_MS=5000 STEP_END_MS=9000 STEP_SAMPLE_MS=100
STEP_DELAY_MS=50	# what "slow" is (5 times the remote leg's delay)
STEP_REMOTE_MS=10
[ "$QUICK" = 1 ] && STEP_SLOW_MS=1000 STEP_FAST_MS=2000 STEP_END_MS=3500

# set_delay <dm name> <ms>: the dm-delay device now delays by <ms>.
set_delay() {
	local dev=$1 under=$2 ms=$3
	dm suspend "$dev" && dm reload "$dev" --table "0 $SECTORS delay $under 0 $ms" && dm resume "$dev"
}

# t_step: random 4 KiB reads, 4 in flight, for STEP_END_MS; the local leg
# (dm-delay 0 ms) becomes STEP_DELAY_MS slow, 5 times slower than the
# remote one, then fast again.  Emits how long after each switch the
# first 100 ms window had 90% of its reads on the leg that is now fast,
# the probe reads' share of all reads (dm-mirror-rs), and the series of
# the local leg's share for the chart.
t_step() {
	local p=$1 c=$2 r=$3 t0 now ms l0 r0 nl nr pct fio_pid slow_done= fast_done= moved_down= moved_up=
	local series=$WORK/step-series
	: >"$series"
	timeout -k 5 60 fio --name=step --filename="$DEV" --readonly --direct=1 --ioengine=libaio \
		--iodepth=4 --rw=randread --bs=4k --size=$((DEV_MB / 2))m --time_based \
		--runtime=$((STEP_END_MS / 1000 + 1)) --randrepeat=0 >"$ERR" 2>&1 &
	fio_pid=$!
	sleep 0.3
	leg_reads "$STEP_LOCAL_UNDER" LA
	leg_reads "$STEP_REMOTE_UNDER" RA
	l0=$LA_ios r0=$RA_ios
	t0=$(now_us)
	while :; do
		now=$(now_us)
		ms=$(((now - t0) / 1000))
		[ "$ms" -lt "$STEP_END_MS" ] || break
		if [ -z "$slow_done" ] && [ "$ms" -ge "$STEP_SLOW_MS" ]; then
			set_delay "$STEP_LOCAL" "$STEP_LOCAL_UNDER" "$STEP_DELAY_MS" >/dev/null 2>&1 ||
				bfail "$p" step-slow "$c" "$r" "cannot slow the local leg"
			slow_done=$ms
		fi
		if [ -z "$fast_done" ] && [ "$ms" -ge "$STEP_FAST_MS" ]; then
			set_delay "$STEP_LOCAL" "$STEP_LOCAL_UNDER" 0 >/dev/null 2>&1 ||
				bfail "$p" step-recover "$c" "$r" "cannot make the local leg fast again"
			fast_done=$ms
		fi
		sleep "0.$((STEP_SAMPLE_MS / 100))" 2>/dev/null || sleep 0.1
		leg_reads "$STEP_LOCAL_UNDER" LA
		leg_reads "$STEP_REMOTE_UNDER" RA
		nl=$((LA_ios - l0)) nr=$((RA_ios - r0))
		l0=$LA_ios r0=$RA_ios
		[ $((nl + nr)) -gt 0 ] || continue
		pct=$((nl * 100 / (nl + nr)))
		ms=$((($(now_us) - t0) / 1000))
		echo "$ms $pct" >>"$series"
		tab BENCH-SERIES "$p" "$c" "$r" "$ms" "$pct"
		if [ -n "$slow_done" ] && [ -z "$fast_done" ] && [ -z "$moved_down" ] && [ "$pct" -le 10 ]; then
			moved_down=$((ms - slow_done))
		fi
		if [ -n "$fast_done" ] && [ -z "$moved_up" ] && [ "$pct" -ge 90 ]; then
			moved_up=$((ms - fast_done))
		fi
	done
	wait "$fio_pid" 2>/dev/null
	# Reads that never moved (a mirror that reads its default leg only)
	# report the whole window: "not within it".
	if [ -z "$moved_down" ]; then
		moved_down=$((STEP_FAST_MS - STEP_SLOW_MS))
		note "$p $c rep $r: reads did not move off the slowed leg within ${moved_down} ms"
	fi
	if [ -z "$moved_up" ]; then
		moved_up=$((STEP_END_MS - STEP_FAST_MS))
		note "$p $c rep $r: reads did not come back within ${moved_up} ms"
	fi
	emit "$p" step-slow "$c" "$r" time "$(secs $((moved_down * 1000)))" s
	emit "$p" step-recover "$c" "$r" time "$(secs $((moved_up * 1000)))" s
	if [ "${c#rs-}" != "$c" ]; then
		local show reads probes
		show=$(dmsetup message "$BM" 0 io_balance show 2>/dev/null)
		reads=$(awk '$1 == "leg" { for (i = 4; i < NF; i++) if ($i == "reads") s += $(i + 1) } END { print s + 0 }' <<<"$show")
		probes=$(awk '$1 == "leg" { for (i = 4; i < NF; i++) if ($i == "probe_reads") s += $(i + 1) } END { print s + 0 }' <<<"$show")
		[ "$reads" -le 0 ] || emit "$p" step-slow "$c" "$r" probe_pct \
			"$(printf '%d.%02d' $((probes * 100 / reads)) $((probes * 10000 / reads % 100)))" %
	fi
}

# ------------------------------------------------------------------ phases

# The ext4 image every leg of the nbd/write/delay phases starts with: one
# file of random data to read; lazy init off so a rw mount does not start
# zeroing inode tables through the remote leg.  The file system ends at
# FS_MB, so the write phase's raw writes (past it) leave it intact.
make_image() {
	[ -f "$WORK/img" ] && return 0
	truncate -s "${DEV_MB}M" "$WORK/img" &&
		mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$WORK/img" "${FS_MB}M" &&
		mount -o loop "$WORK/img" "$MNT" &&
		dd if=/dev/urandom of="$MNT/file" bs=1k count="$FILE_KB" status=none &&
		umount "$MNT" &&
		dd if=/dev/urandom of="$WORK/wfile" bs=1k count="$FILE_KB" status=none
}

copy_to() { dd if="$WORK/img" of="$1" bs=1M oflag=direct status=none; }

NETNS=bench-srv
# The legs of the nbd and iscsi phases: the local null_blk, its copy for
# `linear`, the remote leg's image file, and the link to the "remote"
# network namespace, netem 15 ms each way at 1384 kbit/s on both ends.
# setup_remote_net <transport>: the RTT is recorded as <transport>.rtt_ms.
setup_remote_net() {
	modprobe veth && modprobe sch_netem || return 1
	mk_nullb bl_local "$DEV_MB" && mk_nullb bl_scratch "$DEV_MB" || return 1
	copy_to /dev/bl_local && copy_to /dev/bl_scratch && cp "$WORK/img" "$WORK/remote.img" || return 1
	$IP netns add $NETNS &&
		$IP link add bench-c type veth peer name bench-s &&
		$IP link set bench-s netns $NETNS &&
		$IP addr add 10.99.0.1/24 dev bench-c && $IP link set bench-c up &&
		$IP -n $NETNS addr add 10.99.0.2/24 dev bench-s && $IP -n $NETNS link set bench-s up &&
		$IP -n $NETNS link set lo up || return 1
	$TC qdisc add dev bench-c root netem delay 15ms rate 1384kbit &&
		$TC -n $NETNS qdisc add dev bench-s root netem delay 15ms rate 1384kbit || return 1
	meta "$1.rtt_ms" "$(ping -c 2 -q 10.99.0.2 2>/dev/null | awk -F/ '/min\/avg/ { print $4 }')"
}
teardown_remote_net() {
	local pids
	pids=$($IP netns pids $NETNS 2>/dev/null)
	[ -z "$pids" ] || kill $pids 2>/dev/null
	sleep 0.2
	$IP netns del $NETNS 2>/dev/null
	$IP link del bench-c 2>/dev/null
	rm_nullbs
	rm -f "$WORK/remote.img"
}

setup_nbd() {
	modprobe nbd nbds_max=1 && setup_remote_net nbd || return 1
	cat >"$WORK/nbd.conf" <<-EOF
		[generic]
		listenaddr = 10.99.0.2
		port = 10809
		[remote]
		exportname = $WORK/remote.img
	EOF
	$IP netns exec $NETNS nbd-server -C "$WORK/nbd.conf" || return 1
	local i
	for i in 1 2 3 4 5 6 7 8 9 10; do
		nbd-client 10.99.0.2 10809 /dev/nbd0 -N remote >"$ERR" 2>&1 && break
		sleep 0.5
	done
	[ "$(blockdev --getsz /dev/nbd0 2>/dev/null)" = "$SECTORS" ] || return 1
	LOCAL=/dev/bl_local REMOTE=/dev/nbd0 SCRATCH=/dev/bl_scratch
	meta nbd.remote "NBD over veth, netem delay 15ms rate 1384kbit on both ends"
}
teardown_nbd() {
	nbd-client -d /dev/nbd0 >/dev/null 2>&1
	teardown_remote_net
}

# The iscsi phase: the reference experiment's transport.  tgt (tgtd, a
# userspace target) serves the image file from the remote namespace; the
# guest logs in with open-iscsi (iscsid, the kernel's iscsi_tcp) and the
# LUN is the remote leg.
ISCSI_IQN=iqn.2026-12.org.dm-mirror-rs:remote
setup_iscsi() {
	setup_remote_net iscsi || return 1
	mkdir -p /run/tgtd /etc/iscsi/nodes /etc/iscsi/send_targets /run/lock/iscsi /var/lib/iscsi
	echo "InitiatorName=iqn.2026-12.org.dm-mirror-rs:guest" >/etc/iscsi/initiatorname.iscsi
	: >/etc/iscsi/iscsid.conf
	$IP netns exec $NETNS tgtd --iscsi portal=10.99.0.2:3260 || return 1
	local i
	for i in 1 2 3 4 5 6 7 8 9 10; do
		$IP netns exec $NETNS tgtadm --lld iscsi --op show --mode target >/dev/null 2>&1 && break
		sleep 0.5
	done
	$IP netns exec $NETNS tgtadm --lld iscsi --op new --mode target --tid 1 -T $ISCSI_IQN &&
		$IP netns exec $NETNS tgtadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 \
			-b "$WORK/remote.img" &&
		$IP netns exec $NETNS tgtadm --lld iscsi --op bind --mode target --tid 1 -I ALL || return 1
	iscsid || return 1
	iscsiadm -m discovery -t sendtargets -p 10.99.0.2 >"$ERR" 2>&1 || return 1
	iscsiadm -m node -T $ISCSI_IQN -p 10.99.0.2 --login >"$ERR" 2>&1 || return 1
	local disk=
	for i in $(seq 1 40); do
		disk=$(iscsiadm -m session -P 3 2>/dev/null | awk '/Attached scsi disk/ { print $4; exit }')
		[ -n "$disk" ] && [ -b "/dev/$disk" ] && break
		disk=
		sleep 0.25
	done
	[ -n "$disk" ] || { echo "no disk attached after the iSCSI login"; return 1; }
	[ "$(blockdev --getsz "/dev/$disk")" = "$SECTORS" ] || { echo "/dev/$disk: wrong size"; return 1; }
	LOCAL=/dev/bl_local REMOTE=/dev/$disk SCRATCH=/dev/bl_scratch
	meta iscsi.remote "iSCSI (tgt target, open-iscsi initiator) over veth, netem delay 15ms rate 1384kbit on both ends"
}
teardown_iscsi() {
	iscsiadm -m node --logoutall=all >/dev/null 2>&1
	iscsiadm -k 0 >/dev/null 2>&1
	rm -rf /etc/iscsi/nodes/* /etc/iscsi/send_targets/*
	# tgtd ignores SIGTERM while it has targets: stop it the way its
	# service does, then make sure (the next phase starts another).
	$IP netns exec $NETNS tgtadm --op update --mode sys --name State -v offline >/dev/null 2>&1
	$IP netns exec $NETNS tgtadm --op delete --mode system --force >/dev/null 2>&1
	local i
	for i in 1 2 3 4 5 6 7 8 9 10; do
		[ -z "$($IP netns pids $NETNS 2>/dev/null)" ] && break
		sleep 0.2
	done
	$IP netns pids $NETNS 2>/dev/null | xargs -r kill -9 2>/dev/null
	teardown_remote_net
}

# The write phase: the nbd phase's legs, plus md's metadata devices.
setup_write() {
	setup_nbd || return 1
	mk_nullb bl_meta0 8 && mk_nullb bl_meta1 8 || return 1
	META0=/dev/bl_meta0 META1=/dev/bl_meta1
	meta write.max_write_behind "$WRITE_BEHIND"
	meta write.ios "$WRITE_IOS"
}
teardown_write() { teardown_nbd; }

setup_delay() {
	modprobe dm-delay || return 1
	mk_nullb bl_local "$DEV_MB" && mk_nullb bl_scratch "$DEV_MB" && mk_nullb bl_remote "$DEV_MB" || return 1
	copy_to /dev/bl_local && copy_to /dev/bl_scratch && copy_to /dev/bl_remote || return 1
	dm create bench-delay --table "0 $SECTORS delay /dev/bl_remote 0 $DELAY_MS" || return 1
	LOCAL=/dev/bl_local REMOTE=/dev/mapper/bench-delay SCRATCH=/dev/bl_scratch
	meta delay.remote "dm-delay ${DELAY_MS} ms (reads and writes) over memory-backed null_blk"
}
teardown_delay() {
	dm remove bench-delay >/dev/null 2>&1
	rm_nullbs
}

# The matrix phases: the nbd and iscsi phases' legs.
setup_matrix() { setup_nbd; }
teardown_matrix() { teardown_nbd; }
setup_matrix-iscsi() { setup_iscsi; }
teardown_matrix-iscsi() { teardown_iscsi; }

setup_equal() {
	# Not written: the cap would make that take DEV_MB / MBPS seconds, and
	# reads of holes cost the same under the cap.
	mk_nullb bl_eq0 "$DEV_MB" "$MBPS" && mk_nullb bl_eq1 "$DEV_MB" "$MBPS" || return 1
	LOCAL=/dev/bl_eq0 REMOTE=/dev/bl_eq1 SCRATCH=
	meta equal.legs "two memory-backed null_blk, mbps=$MBPS each"
}
teardown_equal() { rm_nullbs; }

setup_cpu() {
	mk_nullb bl_cpu0 "$DEV_MB" && mk_nullb bl_cpu1 "$DEV_MB" || return 1
	copy_to /dev/bl_cpu0 && copy_to /dev/bl_cpu1 || return 1
	LOCAL=/dev/bl_cpu0 REMOTE=/dev/bl_cpu1 SCRATCH=
	meta cpu.legs "two memory-backed null_blk, no bandwidth cap"
}
teardown_cpu() { rm_nullbs; }

# The step phase: local leg = dm-delay (0 ms) over null_blk, remote leg =
# dm-delay (STEP_REMOTE_MS) over null_blk; the legs' own counters are
# the null_blk devices'.
STEP_LOCAL=bench-step-local STEP_REMOTE=bench-step-remote
setup_step() {
	modprobe dm-delay || return 1
	mk_nullb bl_step0 "$DEV_MB" && mk_nullb bl_step1 "$DEV_MB" || return 1
	copy_to /dev/bl_step0 && copy_to /dev/bl_step1 || return 1
	dm create "$STEP_LOCAL" --table "0 $SECTORS delay /dev/bl_step0 0 0" &&
		dm create "$STEP_REMOTE" --table "0 $SECTORS delay /dev/bl_step1 0 $STEP_REMOTE_MS" || return 1
	STEP_LOCAL_UNDER=/dev/bl_step0 STEP_REMOTE_UNDER=/dev/bl_step1
	LOCAL=/dev/mapper/$STEP_LOCAL REMOTE=/dev/mapper/$STEP_REMOTE SCRATCH=
	meta step.legs "dm-delay over memory-backed null_blk: local 0 ms (${STEP_DELAY_MS} ms from ${STEP_SLOW_MS} to ${STEP_FAST_MS} ms), remote ${STEP_REMOTE_MS} ms"
	meta step.slow_ms "$STEP_SLOW_MS"
	meta step.fast_ms "$STEP_FAST_MS"
}
teardown_step() {
	dm remove "$STEP_LOCAL" >/dev/null 2>&1
	dm remove "$STEP_REMOTE" >/dev/null 2>&1
	rm_nullbs
}

# warm_rr <config> <rep>: a fresh round_robin mirror starts its schedule at
# the default leg, so the first <N> reads would always be local.  A
# long-lived mirror meets a file read at any point of its 2 * N read cycle:
# single 4 KiB O_DIRECT reads first move the schedule to the point
# (rep - 1/2) / REPS of the cycle, so the repetitions sample it evenly.
warm_rr() {
	local c=$1 r=$2 n k
	case "$c" in rs-rr[0-9]*) n=${c#rs-rr} ;; *) return 0 ;; esac
	k=$(((2 * r - 1) * n / REPS))
	[ "$k" -gt 0 ] || return 0
	note "$p $c rep $r: $k reads move the round-robin schedule to $k of $((2 * n))"
	run 600 dd if="$DEV" of=/dev/null bs=4k count="$k" iflag=direct ||
		bfail "$p" - "$c" "$r" "warm-up reads: $(why)"
}

run_phase() {
	local p=$1 cfgs c r t t0 tc tests
	cfgs=$(phase_cfgs "$p")
	t0=$(now_us)
	note "phase $p: setting up"
	if ! "setup_$p" >"$WORK/setup.log" 2>&1; then
		for c in $cfgs; do
			bfail "$p" - "$c" - "phase setup failed: $(tail -n 1 "$WORK/setup.log" | tr '\t' ' ')"
		done
		"teardown_$p" >/dev/null 2>&1
		return
	fi
	note "phase $p: set up in $(secs $(($(now_us) - t0))) s"
	for c in $cfgs; do tab BENCH-CONFIG "$p" "$c" "${DESC[$c]}"; done
	declare -A broken=()
	for ((r = 1; r <= REPS; r++)); do
		note "phase $p: repetition $r of $REPS"
		for c in $cfgs; do
			[ -z "${broken[$c]:-}" ] || continue
			# The linear configuration reads the local device (or its copy).
			CUR_LOCAL=$LOCAL
			[ "$c" != linear ] || CUR_LOCAL=${SCRATCH:-$LOCAL}
			tc=$(now_us)
			if ! create "$c" >"$ERR" 2>&1; then
				bfail "$p" - "$c" "$r" "create: $(why)"
				destroy
				# A configuration that cannot be created will not be
				# created in the next repetition either.
				broken[$c]=1
				continue
			fi
			warm_rr "$c" "$r"
			mapfile -t tests < <(tests_for "$p" "$c")
			for t in "${tests[@]}"; do
				# shellcheck disable=SC2086 # "t_readers 4": a function and its argument
				$t "$p" "$c" "$r" </dev/null
			done
			[ "${c#rs-}" = "$c" ] || note "$p $c rep $r: $(dmsetup message "$BM" 0 io_balance show 2>/dev/null | tr '\n' ';')"
			note "$p $c rep $r: $(secs $(($(now_us) - tc))) s"
			destroy || bfail "$p" - "$c" "$r" "cannot remove the device"
		done
	done
	"teardown_$p" >/dev/null 2>&1
	tab BENCH-DONE "$p" "$(secs $(($(now_us) - t0)))"
}

cleanup() {
	destroy >/dev/null 2>&1
	teardown_nbd >/dev/null 2>&1
	teardown_iscsi >/dev/null 2>&1
	teardown_delay >/dev/null 2>&1
	teardown_step >/dev/null 2>&1
	rm_nullbs >/dev/null 2>&1
}
trap cleanup EXIT

# ------------------------------------------------------------------- main

T0=$(now_us)
meta kernel "$(uname -r)"
meta profile "${DMMR_PROFILE:-base}"
meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta reps "$REPS"
meta quick "$QUICK"
meta phases "$PHASES"
meta cpus "$(nproc)"
meta mem_mb "$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)"
meta fio "$(fio --version)"
meta file_kb "$FILE_KB"
meta fio_region_mb "$FIO_MB"
meta fio_cap "$FIO_CAP"
meta runtime "$RUNTIME"
meta nullb_max_sectors "$NULLB_MAX_SECTORS ($NULLB_MAX_SECTORS_CAPPED with mbps)"

modprobe configfs 2>/dev/null
mounted /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
modprobe null_blk nr_devices=0 || { echo "# cannot load null_blk"; exit 1; }
[ -d $NULLB_CFS ] || { echo "# null_blk has no configfs interface"; exit 1; }
if [ ! -f /dmmr/dm_mirror_rs.ko ]; then
	echo "# no /dmmr/dm_mirror_rs.ko: build it with make module"
fi
if ! make_image >"$ERR" 2>&1; then
	echo "# cannot build the ext4 image: $(why)"
	exit 1
fi

for p in $PHASES; do
	run_phase "$p"
done
meta guest_seconds "$(secs $(($(now_us) - T0)))"
exit 0
