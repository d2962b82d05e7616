#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The benchmark, smoke sizes: runs bench/guest.sh in quick mode (tiny files,
# one repetition, about 3 minutes under TCG) so the bench does not rot.  One
# result per configuration of every phase: ok when it produced a number for
# each of its tests and reported no failure.  The numbers themselves are not
# judged (TCG timings are too noisy for that); `make bench` measures.
#
# Runs in the guest: scripts/vm-run tests/guest/bench-smoke.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

BENCH=/dmmr/bench/guest.sh
[ -f "$BENCH" ] || ktap_skip_all "no $BENCH"

list=$(BENCH_QUICK=1 bash "$BENCH" --list) || ktap_skip_all "bench/guest.sh --list failed"
[ -n "$list" ] || ktap_skip_all "bench/guest.sh --list printed nothing"
mapfile -t expected <<<"$list"

ktap_plan $((${#expected[@]} + 1))

out=$DMMR_WORK/bench.out
rc=0
# About 180 s on the base kernel (CI); the debug kernel (it has kmemleak) runs
# 5 to 10 times slower.
limit=900
! kmemleak_available || limit=3600
t0=$EPOCHREALTIME
BENCH_QUICK=1 BENCH_REPS=1 timeout -k 10 "$limit" bash "$BENCH" --quick --reps 1 >"$out" 2>&1 || rc=$?
t1=$EPOCHREALTIME
ktap_diag "bench/guest.sh --quick: exit $rc after $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') s"
grep -a '^BENCH-DONE' "$out" | awk -F'\t' '{ printf "phase %s: %.0f s\n", $2, $3 }' | ktap_diag
if [ "$rc" = 0 ]; then
	ktap_pass "bench/guest.sh --quick exits 0"
else
	tail -n 30 "$out" | ktap_diag
	ktap_fail "bench/guest.sh --quick exits 0" "exit status $rc"
fi

# One result per configuration: a number for every test, no BENCH-FAIL.
for line in "${expected[@]}"; do
	read -r phase cfg tests <<<"$line"
	missing=()
	IFS=, read -ra ts <<<"$tests"
	for t in "${ts[@]}"; do
		awk -F'\t' -v p="$phase" -v t="$t" -v c="$cfg" \
			'$1 == "BENCH" && $2 == p && $3 == t && $4 == c && $7 ~ /^[0-9.]+$/ { f = 1 } END { exit !f }' \
			"$out" || missing+=("$t")
	done
	fails=$(awk -F'\t' -v p="$phase" -v c="$cfg" '$1 == "BENCH-FAIL" && $2 == p && $4 == c { print $3 ": " $6 }' "$out")
	if [ ${#missing[@]} -eq 0 ] && [ -z "$fails" ]; then
		ktap_pass "$phase/$cfg: ${tests//,/, }"
	else
		[ ${#missing[@]} -eq 0 ] || ktap_diag "$phase/$cfg: no number for: ${missing[*]}"
		[ -z "$fails" ] || ktap_diag <<<"$fails"
		ktap_fail "$phase/$cfg"
	fi
done

ktap_done
