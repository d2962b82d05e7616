#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Read balancing: each policy's per-leg read distribution, measured where the
# reads land (/sys/block/<leg>/stat) after O_DIRECT reads through the mirror;
# the adaptive policy with a slowed leg; malformed messages; table features;
# failed legs never read; policy changes hammered under fio verify.
#
# Runs in the guest: scripts/vm-run tests/guest/io-balance.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

ktap_plan 72

modprobe -r dm_mirror 2>/dev/null || true
modprobe dm_mirror_rs || die "cannot load dm_mirror_rs"
modprobe dm-delay || die "cannot load dm-delay"

SECTORS=131072 # 64 MiB
L0=$(mk_loop 64) L1=$(mk_loop 64)
M0=$(dev_majmin "$L0") M1=$(dev_majmin "$L1")
N=400

# read_split <mirror> <count> <leg0> <leg1>: read_split_dev on /dev/mapper/<mirror>.
read_split() { read_split_dev "/dev/mapper/$1" "${@:2}"; }
# leg_field <mirror> <maj:min> <field>
leg_field() {
	dmsetup message "$1" 0 io_balance show |
		awk -v d="$2" -v k="$3" '$1 == "leg" && $3 == d { for (i = 4; i < NF; i++) if ($i == k) print $(i + 1) }'
}
# `--`: words such as -1 are for the target, not options of dmsetup.
msg() { dmsetup message -- "$1" 0 io_balance "${@:2}"; }

# rand_split <mirror> <count> <leg0> <leg1>: like read_split with random
# 4 KiB reads, 4 in flight (the adaptive policy keeps a sequential stream
# on one leg on purpose).
rand_split() {
	local a0 b0 a1 b1
	a0=$(reads_of "$3") b0=$(reads_of "$4")
	fio --name=r --filename="/dev/mapper/$1" --direct=1 --ioengine=libaio --iodepth=4 \
		--rw=randread --bs=4k --number_ios="$2" --size=64m --randrepeat=0 >/dev/null 2>&1
	a1=$(reads_of "$3") b1=$(reads_of "$4")
	echo "$((a1 - a0)) $((b1 - b0))"
}

dm create rr --table "0 $SECTORS mirror core 2 1024 nosync 2 $L0 0 $L1 0 1 handle_errors" ||
	die "cannot create the mirror"

# --- policies on legs of equal speed ------------------------------------
ktap_check_eq "fresh mirror: every read on the default leg (upstream)" "$N 0" "$(read_split rr $N "$L0" "$L1")"
ktap_check "message: round_robin ios 1" msg rr round_robin ios 1
ktap_check_eq "ios 1 alternates: 200/200" "200 200" "$(read_split rr $N "$L0" "$L1")"
ktap_check "message: round_robin ios 10" msg rr round_robin ios 10
ktap_check_eq "ios 10: 200/200" "200 200" "$(read_split rr $N "$L0" "$L1")"
ktap_check "message: round_robin ios 128" msg rr round_robin ios 128
ktap_check_eq "ios 128: 256/256 over 512 reads" "256 256" "$(read_split rr 512 "$L0" "$L1")"
ktap_check "message: round_robin ios 300" msg rr round_robin ios 300
ktap_check_eq "ios 300: 300 then 100" "300 100" "$(read_split rr $N "$L0" "$L1")"
ktap_check "message: round_robin ios 0" msg rr round_robin ios 0
ktap_check_eq "ios 0 pins the default leg" "$N 0" "$(read_split rr $N "$L0" "$L1")"
ktap_check "message: default $M1 (by maj:min)" msg rr default "$M1"
ktap_check_eq "ios 0 now reads leg 1 only" "0 $N" "$(read_split rr $N "$L0" "$L1")"
ktap_check "message: default 0 (by index)" msg rr default 0
ktap_check_eq "and back to leg 0" "$N 0" "$(read_split rr $N "$L0" "$L1")"
ktap_check "message: weight $M0 1, weight $M1 1" \
	bash -c "dmsetup message rr 0 io_balance weight $M0 1 && dmsetup message rr 0 io_balance weight $M1 1"
ktap_check_eq "weights 1:1: 200/200" "200 200" "$(read_split rr $N "$L0" "$L1")"
ktap_check "message: weight $M1 3" msg rr weight "$M1" 3
ktap_check_eq "weights 1:3: 100/300" "100 300" "$(read_split rr $N "$L0" "$L1")"
ktap_check "message: weight 0 0 (by index)" msg rr weight 0 0
ktap_check_eq "weights 0:1: 0/400" "0 $N" "$(read_split rr $N "$L0" "$L1")"
show=$(dmsetup message rr 0 io_balance show)
ktap_check_eq "show: policy line" "policy weighted" "$(head -n1 <<<"$show")"
ktap_check "show: per-leg weights" \
	bash -c "grep -q '^leg 0 $M0 usable weight 0 ' <<<'$show' && grep -q '^leg 1 $M1 usable weight 3 ' <<<'$show'"
ktap_check "message: reset_stats" msg rr reset_stats
ktap_check "show after reset: no reads counted" \
	bash -c "dmsetup message rr 0 io_balance show | grep '^leg' | grep -q ' reads 0 ' && ! dmsetup message rr 0 io_balance show | grep '^leg' | grep -vq ' reads 0 '"
# Reads routed without the lock (a read lease) count as if chosen: every
# one of them in reads and sectors, on the leg whose block stats saw them.
ktap_check "message: round_robin ios 0" msg rr round_robin ios 0
msg rr reset_stats
dd if=/dev/mapper/rr of=/dev/null bs=4k count=$N iflag=direct status=none
dd if=/dev/mapper/rr of=/dev/null bs=64k count=10 skip=100 iflag=direct status=none
ktap_check_eq "show counts leased reads: reads, sectors of both legs" \
	"$((N + 10)) $((N * 8 + 10 * 128)) 0 0" \
	"$(leg_field rr "$M0" reads) $(leg_field rr "$M0" sectors) $(leg_field rr "$M1" reads) $(leg_field rr "$M1" sectors)"
ktap_check_eq "show after the leased reads: none in flight" "0 0" \
	"$(leg_field rr "$M0" in_flight) $(leg_field rr "$M1" in_flight)"
ktap_check "message: adaptive" msg rr adaptive
split=$(rand_split rr $N "$L0" "$L1")
spread() { local a=${1% *} b=${1#* }; [ "$a" -ge $(($2 * 30 / 100)) ] && [ "$b" -ge $(($2 * 30 / 100)) ]; }
ktap_check "adaptive spreads random reads over equal legs (each >= 30%): $split" spread "$split" $N
ktap_check_eq "the table is untouched by messages" \
	"0 $SECTORS mirror core 2 1024 nosync 2 $M0 0 $M1 0 1 handle_errors" "$(dm table rr)"

# --- malformed messages: -EINVAL, a log line, no change ------------------
before=$(dmsetup message rr 0 io_balance show)
nbad=0
bad_msg() {
	local mark rc=0
	mark=$(kmsg_mark)
	dmsetup message -- rr 0 "$@" >/dev/null 2>&1 && rc=1
	kmsg_grep "$mark" "device-mapper: mirror: " || { ktap_diag "no log line for: $*"; rc=1; }
	[ "$(dmsetup message rr 0 io_balance show)" = "$before" ] || { ktap_diag "state changed by: $*"; rc=1; }
	nbad=$((nbad + 1))
	[ $rc = 0 ] || ktap_diag "accepted or changed state: '$*'"
	return $rc
}
malformed() {
	local fails=0
	bad_msg io_balance || fails=$((fails + 1))
	bad_msg io_balancer round_robin ios 1 || fails=$((fails + 1))
	bad_msg bogus || fails=$((fails + 1))
	bad_msg io_balance bogus || fails=$((fails + 1))
	bad_msg io_balance round_robin || fails=$((fails + 1))
	bad_msg io_balance round_robin ios || fails=$((fails + 1))
	bad_msg io_balance round_robin ios -1 || fails=$((fails + 1))
	bad_msg io_balance round_robin ios x || fails=$((fails + 1))
	bad_msg io_balance round_robin ios 0x10 || fails=$((fails + 1))
	bad_msg io_balance round_robin ios 1000001 || fails=$((fails + 1))
	bad_msg io_balance round_robin ios 99999999999999999999 || fails=$((fails + 1))
	bad_msg io_balance round_robin ios 4 extra || fails=$((fails + 1))
	bad_msg io_balance round_robin io 4 || fails=$((fails + 1))
	bad_msg io_balance round_robin ios +4 || fails=$((fails + 1))
	bad_msg io_balance default || fails=$((fails + 1))
	bad_msg io_balance default 2 || fails=$((fails + 1))
	bad_msg io_balance default 9:9 || fails=$((fails + 1))
	bad_msg io_balance default "$M0" extra || fails=$((fails + 1))
	bad_msg io_balance default /dev/loop0 || fails=$((fails + 1))
	bad_msg io_balance weight || fails=$((fails + 1))
	bad_msg io_balance weight "$M0" || fails=$((fails + 1))
	bad_msg io_balance weight "$M0" 1001 || fails=$((fails + 1))
	bad_msg io_balance weight "$M0" -1 || fails=$((fails + 1))
	bad_msg io_balance weight "$M0" one || fails=$((fails + 1))
	bad_msg io_balance weight 5 1 || fails=$((fails + 1))
	bad_msg io_balance weight 1:1 1 || fails=$((fails + 1))
	bad_msg io_balance weight "$M0" 1 2 || fails=$((fails + 1))
	bad_msg io_balance adaptive tolerance || fails=$((fails + 1))
	bad_msg io_balance adaptive tolerance 1001 || fails=$((fails + 1))
	bad_msg io_balance adaptive probe_ms 60001 || fails=$((fails + 1))
	bad_msg io_balance adaptive bogus 1 || fails=$((fails + 1))
	bad_msg io_balance show extra || fails=$((fails + 1))
	bad_msg io_balance reset_stats now || fails=$((fails + 1))
	bad_msg io_balance ROUND_ROBIN ios 1 || fails=$((fails + 1))
	[ $fails = 0 ]
}
ktap_check "34 malformed messages: each -EINVAL, logged, state unchanged" malformed
ktap_check_eq "all 34 were tried" 34 "$nbad"
ktap_check "remove rr" dm remove rr

# --- table features --------------------------------------------------------
ft="core 2 1024 nosync 2 $M0 0 $M1 0 5 handle_errors io_balance round_robin ios 8"
ktap_check "create with io_balance features" dm create ft --table "0 $SECTORS mirror $ft"
ktap_check_eq "table reads back with the features" "0 $SECTORS mirror $ft" "$(dm table ft)"
ktap_check_eq "the table's policy is active" "policy round_robin ios 8" \
	"$(dmsetup message ft 0 io_balance show | head -n1)"
ktap_check_eq "ios 8 from the table: 200/200" "200 200" "$(read_split ft $N "$L0" "$L1")"
reload() {
	dm suspend ft && dm load ft --table "0 $SECTORS mirror $ft" && dm resume ft
}
ktap_check "message changes the policy, then the same table is reloaded" \
	bash -c "dmsetup message ft 0 io_balance round_robin ios 0"
ktap_check "reload" reload
ktap_check_eq "the reloaded table's policy is back" "policy round_robin ios 8" \
	"$(dmsetup message ft 0 io_balance show | head -n1)"
ft2="core 2 1024 nosync 2 $M0 0 $M1 0 11 io_balance weight 0 1 io_balance weight 1 3 io_balance default 1"
ft2_canon="core 2 1024 nosync 2 $M0 0 $M1 0 11 io_balance default 1 io_balance weight 0 1 io_balance weight 1 3"
ktap_check "create with weights and a default leg" dm create ft2 --table "0 $SECTORS mirror $ft2"
ktap_check_eq "readback is canonical" "0 $SECTORS mirror $ft2_canon" "$(dm table ft2)"
ktap_check_eq "weights 1:3 from the table" "100 300" "$(read_split ft2 $N "$L0" "$L1")"
ktap_check_fails "a bad io_balance feature is rejected" \
	dm create ft3 --table "0 $SECTORS mirror core 2 1024 nosync 2 $M0 0 $M1 0 4 io_balance round_robin ios x"
ktap_check_fails "show is not a table feature" \
	dm create ft3 --table "0 $SECTORS mirror core 2 1024 nosync 2 $M0 0 $M1 0 2 io_balance show"
ktap_check "remove ft ft2" bash -c "dmsetup --noudevsync remove ft && dmsetup --noudevsync remove ft2"

# --- a failed leg is never read -------------------------------------------
dm create leg1 --table "0 $SECTORS linear $L1 0" || die "cannot create leg1"
# Without handle_errors a write that fails on one leg is acknowledged (with
# it, dm-raid1 holds it for userspace; tests/guest/parity.sh covers that).
dm create fl --table "0 $SECTORS mirror core 2 1024 nosync 2 $L0 0 /dev/mapper/leg1 0" ||
	die "cannot create fl"
msg fl round_robin ios 1
ktap_check_eq "before the failure reads alternate" "200 200" \
	"$(read_split fl $N "$L0" /dev/mapper/leg1)"
fail_leg1() {
	dm suspend leg1 && dm load leg1 --table "0 $SECTORS error" && dm resume leg1
}
ktap_check "leg 1 starts failing I/O (error target)" fail_leg1
ktap_check "a write still succeeds (leg 0 takes it)" \
	dd if=/dev/urandom of=/dev/mapper/fl bs=4k count=1 oflag=direct status=none
ktap_check "status shows leg 1 failed (D)" bash -c "dmsetup status fl | grep -q ' 1 AD 1 core\$'"
ktap_check_eq "no read goes to the failed leg" "$N 0" "$(read_split fl $N "$L0" /dev/mapper/leg1)"
ktap_check "show: leg 1 failed" bash -c "dmsetup message fl 0 io_balance show | grep -q '^leg 1 .* failed '"
ktap_check_fails "a failed leg cannot become the default" msg fl default 1
ktap_check "remove fl, leg1" bash -c "dmsetup --noudevsync remove fl && dmsetup --noudevsync remove leg1"

# --- one slow leg (dm-delay) ---------------------------------------------
dm create slow --table "0 $SECTORS delay $L1 0 8" || die "cannot create the delay leg"
dm create sl --table "0 $SECTORS mirror core 2 1024 nosync 2 $L0 0 /dev/mapper/slow 0 1 handle_errors" ||
	die "cannot create sl"
msg sl round_robin ios 1
ktap_check_eq "slow leg, round robin: still exactly half" "100 100" \
	"$(read_split sl 200 "$L0" /dev/mapper/slow)"
msg sl weight 0 3
ktap_check_eq "slow leg, weights 3:1" "150 50" "$(read_split sl 200 "$L0" /dev/mapper/slow)"
msg sl adaptive
t0=$(date +%s.%N)
split=$(read_split sl $N "$L0" /dev/mapper/slow)
t1=$(date +%s.%N)
fast_share() { local a=${1% *}; [ "$a" -ge $(($2 * 90 / 100)) ]; }
ktap_check "adaptive: >= 90% of reads on the fast leg ($split)" fast_share "$split" $N
ktap_diag "adaptive with an 8 ms leg: $N reads in $(echo "$t1 - $t0" | bc 2>/dev/null || echo "$t0 $t1") s"
msg sl round_robin ios 0
ktap_check "default leg slow (default 1), ios 0: all on the slow leg" \
	bash -c "dmsetup message sl 0 io_balance default 1 && [ \"\$(dmsetup message sl 0 io_balance show | head -n2 | tail -n1)\" = 'default 1 $(dev_majmin /dev/mapper/slow)' ]"
ktap_check_eq "reads follow the default" "0 100" "$(read_split sl 100 "$L0" /dev/mapper/slow)"
msg sl adaptive
split=$(read_split sl $N "$L0" /dev/mapper/slow)
ktap_check "adaptive finds the fast leg even when the slow one is default ($split)" fast_share "$split" $N
ktap_check "remove sl, slow" bash -c "dmsetup --noudevsync remove sl && dmsetup --noudevsync remove slow"

# --- a fresh mapping with a slow leg, in either order ------------------------
# The adaptive policy measures every leg with warm-up reads of its own from
# resume on and sends no user read to a leg it has not measured (issue #14:
# a fresh mapping used to send a sequential stream to the slow leg, assumed
# fast, and keep it there).  The first 8 MiB of sequential O_DIRECT reads
# right after create: at most one on the slow leg (dm-raid1's default-leg
# fallback, if a read beats the warm-up of the fast leg).
dm create slow --table "0 $SECTORS delay $L1 0 20" || die "cannot create the delay leg"
SLOW=$(dev_majmin /dev/mapper/slow)
for order in "slow first" "slow second"; do
	if [ "$order" = "slow first" ]; then legs="/dev/mapper/slow 0 $L0 0"; else legs="$L0 0 /dev/mapper/slow 0"; fi
	dm create fr --table "0 $SECTORS mirror core 2 1024 nosync 2 $legs 2 io_balance adaptive" ||
		die "cannot create fr ($order)"
	dd if=/dev/mapper/fr of=/dev/null bs=128k count=64 iflag=direct status=none
	user=$(leg_field fr "$SLOW" reads) warm=$(leg_field fr "$SLOW" probe_reads)
	fast_warm=$(leg_field fr "$M0" probe_reads)
	ktap_check_eq "fresh mapping, $order: user reads on the slow leg (of 64)" 1 \
		"$([ "${user:-99}" -le 1 ] && echo 1 || echo "$user")"
	ktap_check_eq "fresh mapping, $order: both legs measured by warm-up reads (slow $warm, fast $fast_warm)" 1 \
		"$([ "${warm:-0}" -ge 4 ] && [ "${fast_warm:-0}" -ge 4 ] && echo 1 || echo 0)"
	# The slow leg, idle for longer than 64 times its extra latency, is
	# probed again: with the module's own reads, not the user's.  64 times
	# 20 ms is 1.3 s, but a loaded host measures the delay leg slower (at
	# 32 ms the wait passes 2 s): up to 3 more idle seconds and reads.
	for wait_s in 2 1 1 1; do
		sleep "$wait_s"
		dd if=/dev/mapper/fr of=/dev/null bs=128k count=64 iflag=direct status=none
		sleep 0.5
		user2=$(leg_field fr "$SLOW" reads) warm2=$(leg_field fr "$SLOW" probe_reads)
		[ "${warm2:-0}" -le "${warm:-0}" ] || break
	done
	ktap_check_eq "fresh mapping, $order: re-probed with probe reads ($warm -> $warm2), user reads still $user2" 1 \
		"$([ "${warm2:-0}" -gt "${warm:-0}" ] && [ "${user2:-99}" -le 1 ] && echo 1 || echo 0)"
	dm remove fr
done
dm remove slow

# --- hammer: policy changes while fio verifies -----------------------------
dm create hm --table "0 $SECTORS mirror core 2 1024 nosync 2 $L0 0 $L1 0 1 handle_errors" ||
	die "cannot create hm"
hammer() {
	local i=0
	while [ -e "$DMMR_WORK/hammer" ]; do
		case $((i % 7)) in
		0) msg hm round_robin ios $((i % 5)) ;;
		1) msg hm weight 0 $((i % 4)) ;;
		2) msg hm adaptive ;;
		3) msg hm default $((i % 2)) ;;
		4) msg hm weight 1 $((i % 3 + 1)) ;;
		5) msg hm show >/dev/null ;;
		6) msg hm adaptive tolerance $((i % 100)) probe_ms $((i % 50)) ;;
		esac || { echo "message $i failed" >"$DMMR_WORK/hammer-failed"; }
		i=$((i + 1))
	done
	echo "$i" >"$DMMR_WORK/hammer-count"
}
touch "$DMMR_WORK/hammer"
hammer &
hpid=$!
fio_out=$DMMR_WORK/fio.out
fio --name=verify --filename=/dev/mapper/hm --direct=1 --ioengine=libaio --iodepth=8 \
	--rw=randrw --rwmixread=60 --bs=4k --size=32m --numjobs=2 --offset_increment=32m \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --loops=4 \
	--group_reporting >"$fio_out" 2>&1
fio_rc=$?
rm -f "$DMMR_WORK/hammer"
wait "$hpid"
ktap_check_eq "fio with verify passes while policies change" 0 "$fio_rc"
[ "$fio_rc" = 0 ] || tail -n 30 "$fio_out" | ktap_diag
ktap_check_fails "no message failed during the hammer" test -e "$DMMR_WORK/hammer-failed"
ktap_diag "policy changes during fio: $(cat "$DMMR_WORK/hammer-count")"
verify_read() {
	fio --name=reread --filename=/dev/mapper/hm --direct=1 --rw=read --bs=64k --size=64m \
		--verify=crc32c --verify_only=1 --verify_fatal=1 >/dev/null 2>&1 || true
	[ "$(dd if="$L0" bs=1M count=64 iflag=direct status=none | md5sum)" = \
		"$(dd if="$L1" bs=1M count=64 iflag=direct status=none | md5sum)" ]
}
ktap_check "both legs hold identical data afterwards" verify_read
ktap_check "remove hm" dm remove hm

ktap_done
