#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Randomized fault sequences on a real mirror (issue #11, per-leg
# freshness).  Each sequence builds a 2- or 3-leg mirror (4 MiB, 32 regions,
# core log, with or without handle_errors) whose legs are dm devices over
# loop devices, and takes random steps:
#   - write a 4 KiB block (or a whole region) with O_DIRECT; the data says
#     which block and which version it is;
#   - read a block with O_DIRECT and check it against a shell-side model:
#     the latest acknowledged version, or one written since then whose write
#     failed (EIO: not acknowledged, may or may not have landed); EIO on a
#     read is allowed and counted, any other content is a stale read;
#   - change a leg's fault: its wrapper becomes dm-linear (healthy),
#     dm-flakey error_writes or `error` (dead) by load + suspend + resume;
#   - suspend and resume the mirror (flush or noflush);
#   - change the read policy (round_robin ios 1, weighted, weight, adaptive,
#     default <leg>: a refused default is fine);
#   - reload the mirror table the way a correct userspace does: the new
#     table instance forgets per-leg freshness and trusts the dirty log, so
#     the first leg listed must be healthy (status A) and `stale 0` in
#     `io_balance show`, or the current default leg while a resync is under
#     way; with any leg stale (or a resync under way) the core log has no
#     `nosync` (a full resync from that first leg); with no such leg the
#     reload is skipped.
# With handle_errors a write to a failing leg is held: a write still
# pending after a few seconds is released the way lvm2 would (every leg
# healed, noflush suspend + resume) and must then complete.
# Each sequence ends with every leg healed, a reload with a fresh leg first
# and a full resync (if no leg is fresh everywhere, each region is first
# read through the mirror and written back whole; a region no leg is known
# to hold in full fails that read, EIO and never old data, and is restored
# from the model as a user would from a backup: counted, not a failure),
# a check of every block against the model, and the legs' backing devices
# compared byte for byte over the mirror's range.
#
#   DMMR_SEQUENCES  number of sequences (default 10; `make test-sequences`: 1000)
#   DMMR_SEED       seed of the first sequence (default: from the clock);
#                   sequence i uses seed+i, so one can be replayed alone with
#                   DMMR_SEED=<its seed> DMMR_SEQUENCES=1
#   DMMR_STEPS      random steps per sequence (default 40)
#   DMMR_JOBS       sequences run at a time, each on its own devices
#                   (default 4: a sequence mostly waits, for processes
#                   starting under TCG or for a held write)
# (tests/run passes these into the guest.)
#
# Runs in the guest: scripts/vm-run tests/guest/fault-sequences.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

NSEQ=${DMMR_SEQUENCES:-10}
STEPS=${DMMR_STEPS:-40}
JOBS=${DMMR_JOBS:-4}
SEED=${DMMR_SEED:-$(($(date +%s%N) % 1000000007))}
[[ "$NSEQ" =~ ^[0-9]+$ && "$STEPS" =~ ^[0-9]+$ && "$SEED" =~ ^[0-9]+$ && "$JOBS" =~ ^[1-9][0-9]*$ ]] ||
	ktap_skip_all "DMMR_SEQUENCES, DMMR_STEPS, DMMR_SEED and DMMR_JOBS must be numbers"

ktap_plan $((NSEQ + 1))
ktap_diag "seed $SEED, $NSEQ sequences of $STEPS steps, $JOBS at a time (replay: DMMR_SEED=$SEED DMMR_SEQUENCES=$NSEQ DMMR_STEPS=$STEPS)"

modprobe -r dm_mirror 2>/dev/null || true
modprobe dm_mirror_rs || die "cannot load dm_mirror_rs"
modprobe dm-flakey || die "cannot load dm-flakey"

SECTORS=8192 # the mirror: 4 MiB
REGION=256   # 32 regions of 128 KiB
NBLK=$((SECTORS / 8))
BPR=$((REGION / 8)) # 4 KiB blocks per region
NREG=$((SECTORS / REGION))
WRAP=$((SECTORS + 2048)) # a wrapper: room for a leg offset of 2048

# --- random numbers: an LCG in the shell (no subshell, so replayable) ------
RNG=1
rnd() { RNG=$(((RNG * 1103515245 + 12345) % 2147483648)); R=$(((RNG >> 8) % $1)); }

msg() { dmsetup message -- "$MR" 0 io_balance "$@"; }

# --- the data model ---------------------------------------------------------
# ACK[b]: latest acknowledged version of block b; MAYBE[b]: versions written
# since whose write failed; VER[b]: the last version issued.
declare -a ACK MAYBE VER
# pat <block> <version>: the block's content, on stdout.
pat() { printf '%-4095s\n' "seed $QSEED blk $1 ver $2"; }
# pat_region <region> <file>: new versions for every block of the region.
pat_blocks() { # <first block> <count>: the current VER of each, on stdout
	local b
	for ((b = $1; b < $1 + $2; b++)); do pat $b "${VER[$b]}"; done
}
# acked_blocks <first block> <count>: their acknowledged versions' content,
# on stdout (one awk, not a printf per block: bash is slow under TCG).
acked_blocks() {
	printf '%s\n' "${ACK[@]:$1:$2}" |
		awk -v s="$QSEED" -v b="$1" '{ printf "%-4095s\n", "seed " s " blk " (b + NR - 1) " ver " $1 }'
}
# model_image <file>: the expected image of the whole mirror.
model_image() { acked_blocks 0 "$NBLK" >"$1"; }
# allowed <block> <version>: the model allows reading this version.
allowed() {
	[ "$2" = "${ACK[$1]}" ] && return 0
	case " ${MAYBE[$1]} " in *" $2 "*) return 0 ;; esac
	return 1
}
STALE_DIAG=0
# check_block <block> <file holding 4096 bytes read>: 0 ok, 1 stale; V is
# the version read ("" if the content is no version of this block).  A
# version whose write failed stays only allowed, not acknowledged: the legs
# may differ there until the next acknowledged write.
check_block() {
	local line
	IFS= read -r line <"$2" 2>/dev/null || line=
	V=
	if [[ "$line" =~ ^seed\ $QSEED\ blk\ $1\ ver\ ([0-9]+)\ *$ ]]; then
		V=${BASH_REMATCH[1]}
		pat "$1" "$V" | cmp -s - "$2" || V=
	fi
	if [ -n "$V" ] && allowed "$1" "$V"; then
		return 0
	fi
	STALE=$((STALE + 1))
	if [ $STALE_DIAG -lt 10 ]; then
		STALE_DIAG=$((STALE_DIAG + 1))
		ktap_diag "stale read: block $1 (region $(($1 / BPR))) read '${line:0:48}', model: acked ${ACK[$1]}, maybe '${MAYBE[$1]}' (step $STEP: $(dm status "$MR" 2>/dev/null))"
	fi
	return 1
}
# check_image <file of the whole mirror>: every block against the model
# (counts VERIFIED and STALE); the model then holds what was read (the
# scrub writes it back: acknowledged).
check_image() {
	local d
	model_image "$DMMR_WORK/exp"
	VERIFIED=$((VERIFIED + NBLK))
	cmp -s "$1" "$DMMR_WORK/exp" && return 0
	for d in $(cmp -l "$1" "$DMMR_WORK/exp" 2>/dev/null |
		awk '{ b = int(($1 - 1) / 4096); if (b != last) print b; last = b }'); do
		dd if="$1" of="$DMMR_WORK/blk" bs=4096 skip="$d" count=1 status=none
		check_block "$d" "$DMMR_WORK/blk" || true
		[ -z "$V" ] || { ACK[$d]=$V MAYBE[$d]=; }
	done
}

# --- devices ----------------------------------------------------------------
# Leg i: loop LOOP[i] under the wrapper WR[i] (state FAULT[i]: linear,
# flakey or error), used by the mirror at offset OFF[i].  ORDER: the
# wrappers in the mirror table's order (table leg j is wrapper ORDER[j]).
wrap_table() {
	case $2 in
	linear) echo "0 $WRAP linear ${LOOP[$1]} 0" ;;
	flakey) echo "0 $WRAP flakey ${LOOP[$1]} 0 0 1 1 error_writes" ;;
	error) echo "0 $WRAP error" ;;
	esac
}
set_fault() {
	dm load "${WR[$1]}" --table "$(wrap_table "$1" "$2")" && dm suspend "${WR[$1]}" &&
		dm resume "${WR[$1]}" && FAULT[$1]=$2
}
mirror_table() {
	local j w legs=
	for j in "${ORDER[@]}"; do
		legs+=" /dev/mapper/${WR[$j]} ${OFF[$j]}"
	done
	echo "0 $SECTORS mirror core $1 $REGION$([ "$1" = 2 ] && echo " nosync") ${#ORDER[@]}$legs${HE:+ 1 handle_errors}"
}
# Health characters (table order) and stale counts (table order; "-" when
# io_balance show has no stale field: such a module claims nothing is stale).
health() { dm status "$MR" | awk '{ print $(7 + $4) }'; }
stale_of() {
	dmsetup message "$MR" 0 io_balance show |
		awk '$1 == "leg" { v = "-"; for (i = 4; i < NF; i++) if ($i == "stale") v = $(i + 1); printf "%s%s", sep, v; sep = " " } END { print "" }'
}
default_of() { dmsetup message "$MR" 0 io_balance show | awk '$1 == "default" { print $2 }'; }
in_sync() { mirror_in_sync "$MR"; }

FAILED_STEPS=0
step_fail() {
	FAILED_STEPS=$((FAILED_STEPS + 1))
	[ $FAILED_STEPS -gt 5 ] || ktap_diag "step $STEP failed: $*"
}

# reload <first table leg index> <full resync 0|1>: the new order lists that
# leg first, the others in random order.
reload() {
	local first=${ORDER[$1]} j rest=() k
	for j in "${ORDER[@]}"; do [ "$j" = "$first" ] || rest+=("$j"); done
	if [ ${#rest[@]} = 2 ]; then
		rnd 2
		[ $R = 0 ] || rest=("${rest[1]}" "${rest[0]}")
	fi
	ORDER=("$first" "${rest[@]}")
	k=2
	[ "$2" = 0 ] || k=1
	dm suspend --noflush "$MR" && dm load "$MR" --table "$(mirror_table $k)" && dm resume "$MR"
}

# The lvm2-like reload: returns 1 (and changes nothing) when no leg may
# come first.
careful_reload() {
	local h s d j cands=() full=0
	h=$(health) s=($(stale_of))
	for j in "${s[@]}"; do [ "$j" = 0 ] || [ "$j" = - ] || full=1; done
	if ! in_sync; then
		# A resync is under way: only its source has every region.
		d=$(default_of)
		[ "${h:$d:1}" = A ] && { [ "${s[$d]}" = 0 ] || [ "${s[$d]}" = - ]; } || return 1
		cands=("$d") full=1
	else
		for ((j = 0; j < ${#ORDER[@]}; j++)); do
			[ "${h:$j:1}" = A ] && { [ "${s[$j]}" = 0 ] || [ "${s[$j]}" = - ]; } && cands+=("$j")
		done
		[ ${#cands[@]} -gt 0 ] || return 1
		rnd ${#cands[@]}
		cands=("${cands[$R]}")
	fi
	RELOADS=$((RELOADS + 1))
	[ $full = 0 ] || FULL_RELOADS=$((FULL_RELOADS + 1))
	reload "${cands[0]}" $full || step_fail "reload (first leg ${cands[0]}, full $full)"
}

# scrub: every region read through the mirror, checked and written back
# whole; a region whose read fails (no leg holds all of it) is written from
# the model's acknowledged versions and counted in UNREADABLE.
scrub() {
	local r b i rb=$DMMR_WORK/region
	UNREADABLE=0
	for ((r = 0; r < NREG; r++)); do
		b=$((r * BPR))
		if dd if="/dev/mapper/$MR" of="$rb" bs=$((BPR * 4096)) skip=$r count=1 iflag=direct status=none 2>/dev/null; then
			check_region "$r" "$rb"
		else
			UNREADABLE=$((UNREADABLE + 1))
			acked_blocks "$b" "$BPR" >"$rb"
		fi
		for ((i = b; i < b + BPR; i++)); do MAYBE[$i]=; done
		dd if="$rb" of="/dev/mapper/$MR" bs=$((BPR * 4096)) seek=$r count=1 oflag=direct conv=notrunc status=none ||
			return 1
	done
}
# check_region <region> <file of its blocks>: each block against the model
# (a version read becomes the acknowledged one: it is written back).  One
# cmp against the acknowledged versions first: bash is slow under TCG.
check_region() {
	local i b first=$(($1 * BPR))
	VERIFIED=$((VERIFIED + BPR))
	acked_blocks "$first" "$BPR" >"$DMMR_WORK/exp"
	cmp -s "$2" "$DMMR_WORK/exp" && return 0
	for ((i = 0; i < BPR; i++)); do
		b=$((first + i))
		dd if="$2" of="$DMMR_WORK/blk" bs=4096 skip=$i count=1 status=none
		check_block "$b" "$DMMR_WORK/blk" || true
		[ -z "$V" ] || { ACK[$b]=$V MAYBE[$b]=; }
	done
}

# --- the steps ----------------------------------------------------------------
RECENT=()
pick_block() {
	rnd 10
	if [ $R -lt 5 ] && [ ${#RECENT[@]} -gt 0 ]; then
		rnd ${#RECENT[@]}
		B=${RECENT[$R]}
	else
		rnd $NBLK
		B=$R
	fi
}
remember() { RECENT=("$1" "${RECENT[@]:0:7}"); }

heal_all() {
	local i
	for ((i = 0; i < NLEGS; i++)); do
		[ "${FAULT[$i]}" = linear ] || set_fault "$i" linear || step_fail "heal leg $i"
	done
}
# do_write <first block> <count>: the blocks get new versions, written in
# one O_DIRECT write; the model learns whether it was acknowledged.
do_write() {
	local b rc=0 pid
	for ((b = $1; b < $1 + $2; b++)); do VER[$b]=$((VER[$b] + 1)); done
	pat_blocks "$1" "$2" >"$DMMR_WORK/w"
	if [ -z "$HE" ]; then
		timeout 120 dd if="$DMMR_WORK/w" of="/dev/mapper/$MR" bs=$((4096 * $2)) seek=$(($1 / $2)) count=1 \
			oflag=direct conv=notrunc status=none 2>/dev/null || rc=$?
	else
		dd if="$DMMR_WORK/w" of="/dev/mapper/$MR" bs=$((4096 * $2)) seek=$(($1 / $2)) count=1 \
			oflag=direct conv=notrunc status=none 2>/dev/null &
		pid=$!
		if ! wait_gone 4 $pid; then
			# Held (handle_errors): release it as lvm2 would.
			HOLDS=$((HOLDS + 1))
			heal_all
			dm suspend --noflush "$MR" && dm resume "$MR" || step_fail "release: noflush suspend/resume"
			if ! wait_gone 60 $pid; then
				step_fail "a held write did not complete after the release"
				WEDGED=1
				return
			fi
		fi
		wait $pid || rc=$?
	fi
	for ((b = $1; b < $1 + $2; b++)); do
		if [ $rc = 0 ]; then
			ACK[$b]=${VER[$b]} MAYBE[$b]=
		else
			MAYBE[$b]+=" ${VER[$b]}"
		fi
	done
	if [ $rc = 0 ]; then ACKED=$((ACKED + 1)); else WEIO=$((WEIO + 1)); fi
	remember "$1"
}
do_read() {
	rm -f "$DMMR_WORK/r"
	READS=$((READS + 1))
	if ! timeout 120 dd if="/dev/mapper/$MR" of="$DMMR_WORK/r" bs=4096 skip="$1" count=1 iflag=direct status=none 2>/dev/null; then
		REIO=$((REIO + 1))
		return
	fi
	check_block "$1" "$DMMR_WORK/r" || true
}

policy_step() {
	rnd 8
	case $R in
	0 | 1 | 2) msg round_robin ios 1 || step_fail "round_robin ios 1" ;;
	3) msg weighted || step_fail weighted ;;
	4) rnd ${#ORDER[@]}; local l=$R; rnd 4; msg weight "$l" "$R" || step_fail "weight $l" ;;
	5) msg adaptive || step_fail adaptive ;;
	*)
		rnd ${#ORDER[@]}
		if msg default "$R" 2>/dev/null; then DEFAULTS=$((DEFAULTS + 1)); else REFUSED=$((REFUSED + 1)); fi
		;;
	esac
}

# A failing leg is healed more often than not; a healthy one fails writes
# (70%) or dies; every leg failing at once is allowed one time in four.
fault_step() {
	local i j st healthy=0
	rnd "$NLEGS"
	i=$R
	rnd 10
	if [ "${FAULT[$i]}" != linear ]; then
		if [ $R -lt 6 ]; then st=linear; elif [ "${FAULT[$i]}" = flakey ]; then st=error; else st=flakey; fi
	else
		if [ $R -lt 7 ]; then st=flakey; else st=error; fi
		for ((j = 0; j < NLEGS; j++)); do
			[ "$j" = "$i" ] || [ "${FAULT[$j]}" != linear ] || healthy=$((healthy + 1))
		done
		if [ $healthy = 0 ]; then
			rnd 4
			[ $R = 0 ] || return 0
		fi
	fi
	set_fault "$i" "$st" || step_fail "leg $i -> $st"
}

# --- one sequence ---------------------------------------------------------------
run_sequence() {
	local q=$1 i j b img=$DMMR_WORK/img s h ok=1 why=() fresh legs_ok
	QSEED=$((SEED + q))
	RNG=$QSEED
	local t0=$SECONDS
	READS=0 VERIFIED=0 STALE=0 REIO=0 ACKED=0 WEIO=0 HOLDS=0 RELOADS=0 FULL_RELOADS=0 SKIPPED_RELOADS=0
	DEFAULTS=0 REFUSED=0 FAILED_STEPS=0 STALE_DIAG=0 WEDGED=0 SCRUBBED=0 UNREADABLE=0 STEP=0
	RECENT=()
	rnd 2
	NLEGS=$((2 + R))
	rnd 3
	if [ $R = 0 ]; then HE=1; else HE=; fi
	MR=fs_$q
	LOOP=() WR=() OFF=() FAULT=() ORDER=()
	for ((i = 0; i < NLEGS; i++)); do
		LOOP[$i]=$(mk_loop 5)
		WR[$i]=fs_${q}_w$i
		rnd 3
		if [ $R = 0 ]; then OFF[$i]=2048; else OFF[$i]=0; fi
		FAULT[$i]=linear
		ORDER[$i]=$i
		dm create "${WR[$i]}" --table "$(wrap_table $i linear)" || die "cannot create ${WR[$i]}"
	done
	for ((b = 0; b < NBLK; b++)); do ACK[$b]=0 MAYBE[$b]= VER[$b]=0; done
	# Version 0 of every block on every leg, then a nosync mirror over them.
	model_image "$DMMR_WORK/v0"
	for ((i = 0; i < NLEGS; i++)); do
		dd if="$DMMR_WORK/v0" of="/dev/mapper/${WR[$i]}" bs=128k seek=$((OFF[i] / 256)) oflag=direct status=none ||
			die "cannot initialise ${WR[$i]}"
	done
	dm create "$MR" --table "$(mirror_table 2)" || die "cannot create $MR: $(mirror_table 2)"

	for ((STEP = 1; STEP <= STEPS && WEDGED == 0; STEP++)); do
		rnd 100
		if [ $R -lt 28 ]; then
			pick_block
			do_write "$B" 1
		elif [ $R -lt 32 ]; then
			rnd $NREG
			do_write $((R * BPR)) $BPR
		elif [ $R -lt 62 ]; then
			pick_block
			do_read "$B"
		elif [ $R -lt 76 ]; then
			fault_step
		elif [ $R -lt 85 ]; then
			rnd 2
			if [ $R = 0 ]; then
				dm suspend "$MR" && dm resume "$MR" || step_fail "suspend/resume"
			else
				dm suspend --noflush "$MR" && dm resume "$MR" || step_fail "noflush suspend/resume"
			fi
		elif [ $R -lt 94 ]; then
			policy_step
		else
			careful_reload || SKIPPED_RELOADS=$((SKIPPED_RELOADS + 1))
		fi
	done

	if [ $WEDGED = 0 ]; then
		# The end: heal, reload with a fresh leg first, full resync, verify.
		heal_all
		h=$(health) s=($(stale_of))
		fresh=
		for ((j = 0; j < ${#ORDER[@]}; j++)); do
			if [ "${s[$j]}" = 0 ] || [ "${s[$j]}" = - ]; then
				if [ -z "$fresh" ] || [ "${h:$j:1}" = A ]; then fresh=$j; fi
				[ "${h:$j:1}" != A ] || break
			fi
		done
		if ! in_sync; then
			# A resync under way: its source is the one complete leg.
			j=$(default_of)
			if [ "${s[$j]}" = 0 ] || [ "${s[$j]}" = - ]; then fresh=$j; else fresh=; fi
		fi
		if [ -z "$fresh" ]; then
			# No leg is fresh everywhere: read each region through the
			# mirror (fresh legs serve it) and write it back whole, which
			# makes it fresh on every leg.  A region no leg is known to
			# hold fails its read (EIO, never old data): it is restored
			# from the model, as a user restores from a backup.
			SCRUBBED=1
			dm suspend "$MR" && dm resume "$MR" || step_fail "suspend/resume before the scrub"
			wait_for 60 in_sync || step_fail "not in sync before the scrub"
			scrub || step_fail "scrub"
			ktap_diag "no leg fresh everywhere (stale: ${s[*]}): scrubbed ($UNREADABLE regions unreadable, restored), now stale: $(stale_of)"
			h=$(health) s=($(stale_of))
			fresh=
			for ((j = 0; j < ${#ORDER[@]}; j++)); do
				[ "${s[$j]}" != 0 ] || { fresh=$j; break; }
			done
			[ -n "$fresh" ] || { step_fail "no leg fresh everywhere after the scrub: ${s[*]}"; fresh=$(default_of); }
		fi
		reload "$fresh" 1 || step_fail "final reload"
		wait_for 120 in_sync || step_fail "the final resync did not end: $(dm status "$MR")"
		msg round_robin ios 1 || step_fail "round_robin ios 1 after the final reload"
		if dd if="/dev/mapper/$MR" of="$img" bs=128k iflag=direct status=none; then
			check_image "$img"
		else
			step_fail "final read of the whole mirror"
		fi
		legs_ok=1
		for ((j = 1; j < NLEGS; j++)); do
			cmp -n $((SECTORS * 512)) -i $((OFF[0] * 512)):$((OFF[j] * 512)) "${LOOP[0]}" "${LOOP[$j]}" >/dev/null 2>&1 ||
				{ legs_ok=0; why+=("legs 0 and $j differ"); }
		done
	else
		legs_ok=0
		why+=("wedged")
	fi
	[ "$STALE" = 0 ] || { ok=0; why+=("$STALE stale reads"); }
	[ "$FAILED_STEPS" = 0 ] || { ok=0; why+=("$FAILED_STEPS steps failed"); }
	[ $legs_ok = 1 ] || ok=0
	ktap_diag "sequence $q (seed $QSEED, $NLEGS legs, offsets ${OFF[*]}${HE:+, handle_errors}, $((SECONDS - t0)) s): reads checked $READS (EIO $REIO) + $VERIFIED blocks at the end, stale $STALE; writes acked $ACKED, EIO $WEIO, held $HOLDS; reloads $RELOADS (full $FULL_RELOADS, skipped $SKIPPED_RELOADS); default set $DEFAULTS, refused $REFUSED; scrubbed $SCRUBBED (regions unreadable $UNREADABLE)"
	local name="sequence $q/$NSEQ (seed $QSEED, $NLEGS legs${HE:+, handle_errors}): no stale read, model verified, legs identical"
	if [ $WEDGED = 0 ]; then
		dm remove "$MR" || ktap_diag "cannot remove $MR"
		for ((i = 0; i < NLEGS; i++)); do
			dm remove "${WR[$i]}" || true
			losetup -d "${LOOP[$i]}" 2>/dev/null || true
		done
	else
		ktap_diag "leaving $MR and its legs in place: a write never completed"
	fi
	rm -f "$DMMR_WORK"/loop.* 2>/dev/null || true
	# The outcome, for the parent (written last, renamed into place).
	printf '%s\n' "$ok" "$name" "${why[*]}" \
		"$READS $VERIFIED $STALE $REIO $ACKED $SCRUBBED $UNREADABLE $WEDGED" >"$RESULTS/res.$q.new"
	mv "$RESULTS/res.$q.new" "$RESULTS/res.$q"
}

# worker <j>: sequences j, j + JOBS, ... in a work directory of its own;
# each sequence's diagnostics go to out.<q>, its outcome to res.<q>.
worker() {
	local q
	DMMR_WORK=$DMMR_WORK/worker$1
	mkdir -p "$DMMR_WORK"
	for ((q = $1; q < NSEQ; q += JOBS)); do
		run_sequence $q >"$RESULTS/out.$q" 2>&1
	done
}

RESULTS=$DMMR_WORK/results
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
WORKERS=()
for ((j = 0; j < JOBS && j < NSEQ; j++)); do
	worker $j &
	WORKERS+=($!)
done
# The outcomes in sequence order, each as soon as it is known.
TOTAL_SEQ=0 TOTAL_READS=0 TOTAL_STALE=0 TOTAL_EIO=0 TOTAL_ACKED=0 TOTAL_SCRUBBED=0 TOTAL_UNREADABLE=0
for ((q = 0; q < NSEQ; q++)); do
	pid=${WORKERS[$((q % JOBS))]}
	while [ ! -e "$RESULTS/res.$q" ] && kill -0 "$pid" 2>/dev/null; do sleep 1; done
	[ ! -e "$RESULTS/out.$q" ] || sed -e '/^#/!s/^/# /' "$RESULTS/out.$q"
	if [ ! -e "$RESULTS/res.$q" ]; then
		ktap_fail "sequence $q/$NSEQ (seed $((SEED + q)))" "its worker died before it ended"
		continue
	fi
	{
		read -r r_ok
		read -r r_name
		read -r r_why
		read -r r_reads r_verified r_stale r_eio r_acked r_scrubbed r_unreadable r_wedged
	} <"$RESULTS/res.$q"
	if [ "$r_ok" = 1 ]; then ktap_pass "$r_name"; else ktap_fail "$r_name" "$r_why"; fi
	[ "$r_wedged" = 0 ] || DMMR_CLEANED=1
	TOTAL_SEQ=$((TOTAL_SEQ + 1)) TOTAL_READS=$((TOTAL_READS + r_reads + r_verified))
	TOTAL_STALE=$((TOTAL_STALE + r_stale)) TOTAL_EIO=$((TOTAL_EIO + r_eio)) TOTAL_ACKED=$((TOTAL_ACKED + r_acked))
	TOTAL_SCRUBBED=$((TOTAL_SCRUBBED + r_scrubbed)) TOTAL_UNREADABLE=$((TOTAL_UNREADABLE + r_unreadable))
done
wait "${WORKERS[@]}" 2>/dev/null || true
ktap_diag "sequences $TOTAL_SEQ of $NSEQ ($JOBS at a time), reads checked $TOTAL_READS, stale reads $TOTAL_STALE, read EIOs $TOTAL_EIO, writes acked $TOTAL_ACKED; sequences scrubbed $TOTAL_SCRUBBED (regions no leg held: $TOTAL_UNREADABLE)"
ktap_check_eq "$NSEQ random fault sequences, seed $SEED: no stale read ($TOTAL_READS reads checked)" 0 "$TOTAL_STALE"
ktap_done
