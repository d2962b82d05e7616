#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The default_io_balance module parameter: the read policy of every new
# mapping whose table selects none, so that a mirror nobody sends a message
# to (every mirror lvm2 activates) balances.  Set at load time (modprobe
# argument and modprobe.d line) and through sysfs; a table's own policy
# wins; the table line lvm2 compares stays as it was written; bad values are
# refused with -EINVAL and a log line and change nothing; an lvm2 mirror
# reads both legs with no message sent.
#
# Runs in the guest: scripts/vm-run tests/guest/default-policy.sh
# dmmr-needs: module

. /dmmr/tests/lib.sh
need_module

ktap_plan 33

PARAM=/sys/module/dm_mirror_rs/parameters/default_io_balance
SECTORS=65536 # 32 MiB
L0=$(mk_loop 32) L1=$(mk_loop 32)
TABLE="0 $SECTORS mirror core 2 1024 nosync 2 $L0 0 $L1 0"

policy_of() { dmsetup message "$1" 0 io_balance show | awk '$1 == "policy" { $1 = ""; sub(/^ /, ""); print; exit }'; }
reload_module() {
	dmsetup --noudevsync remove_all >/dev/null 2>&1
	modprobe -r dm_mirror_rs 2>/dev/null
	modprobe dm_mirror_rs "$@"
}
param() { cat "$PARAM"; }

modprobe -r dm_mirror 2>/dev/null || true
mkdir -p /etc/modprobe.d
at_exit 'rm -f /etc/modprobe.d/dmmr-default-policy.conf; [ -w "$PARAM" ] && echo > "$PARAM"'

# --- built-in default --------------------------------------------------------
ktap_check "load without the parameter" reload_module
ktap_check_eq "the parameter is empty" "" "$(param)"
dm create m --table "$TABLE" || die "cannot create m"
ktap_check_eq "a new mapping reads its default leg (dm-raid1's behaviour)" "round_robin ios 0" "$(policy_of m)"
ktap_check_eq "all reads on the default leg" "200 0" "$(read_split_dev /dev/mapper/m 200 "$L0" "$L1")"
dm remove m

# --- set at load time -----------------------------------------------------------
ktap_check "load with default_io_balance=adaptive" reload_module default_io_balance=adaptive
ktap_check_eq "the parameter reads back" "adaptive" "$(param)"
dm create m --table "$TABLE" || die "cannot create m"
ktap_check_eq "a new mapping gets the adaptive policy" "adaptive tolerance 25 probe_ms 1000" "$(policy_of m)"
ktap_check_eq "the table line is the one written (lvm2 compares it)" \
	"0 $SECTORS mirror core 2 1024 nosync 2 $(dev_majmin "$L0") 0 $(dev_majmin "$L1") 0" \
	"$(dm table m)"
dm remove m
dm create m --table "$TABLE 4 io_balance round_robin ios 4" || die "cannot create m with a policy"
ktap_check_eq "a table's own policy wins" "round_robin ios 4" "$(policy_of m)"
dm remove m
dm create m --table "$TABLE 3 io_balance default 1" || die "cannot create m with a default leg"
ktap_check_eq "a table with only a default leg gets the parameter's policy" \
	"adaptive tolerance 25 probe_ms 1000" "$(policy_of m)"
dm remove m

# --- modprobe.d, with spaces --------------------------------------------------
echo 'options dm_mirror_rs default_io_balance="round_robin ios 1"' >/etc/modprobe.d/dmmr-default-policy.conf
ktap_check "load with a modprobe.d options line" reload_module
ktap_check_eq "the parameter holds the words with their spaces" "round_robin ios 1" "$(param)"
dm create m --table "$TABLE" || die "cannot create m"
ktap_check_eq "a new mapping gets round_robin ios 1" "round_robin ios 1" "$(policy_of m)"
split=$(read_split_dev /dev/mapper/m 200 "$L0" "$L1")
ktap_check_eq "reads alternate between the legs ($split)" "100 100" "$split"
rm -f /etc/modprobe.d/dmmr-default-policy.conf

# --- changed through sysfs ------------------------------------------------------
ktap_check "sysfs: echo 'round_robin,ios,8'" bash -c "echo round_robin,ios,8 > $PARAM"
ktap_check_eq "the new value reads back" "round_robin,ios,8" "$(param)"
ktap_check_eq "an existing mapping keeps its policy" "round_robin ios 1" "$(policy_of m)"
dm create m2 --table "$TABLE" || die "cannot create m2"
ktap_check_eq "a mapping created afterwards gets the new one" "round_robin ios 8" "$(policy_of m2)"
dm remove m2
dm suspend m && dm reload m --table "$TABLE" && dm resume m || die "cannot reload m"
ktap_check_eq "a reloaded table gets the new one too (lvm2 reloads on every change)" \
	"round_robin ios 8" "$(policy_of m)"
dm remove m

# --- bad values -------------------------------------------------------------------
long=$(printf 'weighted %.0s' $(seq 1 16))
bad_values=("bogus" "default 0" "weight 0 3" "show" "round_robin ios 1000001"
	"adaptive tolerance 5 tolerance 6" "weighted extra" "$long")
bad_logs=("unrecognised command" "not a read policy" "not a read policy" "not a read policy"
	"out of range" "given twice" "unexpected extra argument" "too long")
for i in "${!bad_values[@]}"; do
	v=${bad_values[$i]}
	mark=$(kmsg_mark)
	rc=0
	echo "$v" >"$PARAM" 2>/dev/null && rc=1
	[ "$(param)" = "round_robin,ios,8" ] || rc=1
	kmsg_grep "$mark" "device-mapper: mirror: default_io_balance: .*${bad_logs[$i]}" || rc=1
	[ "$rc" = 0 ] || { ktap_diag "value now: '$(param)'; log:"; kmsg_since "$mark" | tail -n 3 | ktap_diag; }
	ktap_result "sysfs refuses '${v:0:40}', logs it, keeps the old value" $rc
done

mark=$(kmsg_mark)
dmsetup --noudevsync remove_all >/dev/null 2>&1
modprobe -r dm_mirror_rs
rc=0
modprobe dm_mirror_rs default_io_balance=bogus 2>/dev/null && rc=1
grep -q '^dm_mirror_rs ' /proc/modules && rc=1
kmsg_grep "$mark" "device-mapper: mirror: default_io_balance: .*unrecognised command" || rc=1
ktap_result "modprobe with a bad value fails, logs it, leaves the module unloaded" $rc

# --- lvm2 activates a mirror: balanced with no message ----------------------------
if ! command -v lvcreate >/dev/null; then
	ktap_skip_rest "lvm2 is not installed"
	ktap_done
fi
echo "install dm-mirror /sbin/modprobe dm_mirror_rs" >/etc/modprobe.d/dm-mirror-rs.conf
at_exit 'rm -f /etc/modprobe.d/dm-mirror-rs.conf'
# On a command line the words take commas (spaces would split the argument).
ktap_check "load with default_io_balance=round_robin,ios,1" reload_module default_io_balance=round_robin,ios,1
sed -i 's|^devices {|devices {\n\tglobal_filter = [ "r\|^/dev/loop\|" ]|' /etc/lvm/lvm.conf
P0=$(mk_loop 40) P1=$(mk_loop 40)
dm create pv0 --table "0 $(dev_sectors "$P0") linear $P0 0" && dm create pv1 --table "0 $(dev_sectors "$P1") linear $P1 0" ||
	die "cannot create the PV devices"
pvcreate -q /dev/mapper/pv0 /dev/mapper/pv1 >/dev/null && vgcreate -q vg /dev/mapper/pv0 /dev/mapper/pv1 >/dev/null ||
	die "cannot create the VG"
ktap_check "lvcreate --type mirror -m1 --mirrorlog core" \
	lvcreate -q -y --type mirror -m1 --mirrorlog core -L 16M -n lvm vg /dev/mapper/pv0 /dev/mapper/pv1
copy_done() { [ "$(lvs --noheadings -o copy_percent vg/lvm | tr -d ' ')" = "100.00" ]; }
wait_for 120 copy_done || ktap_diag "the mirror did not finish its initial copy"
ktap_check_eq "the lvm2 mirror has the parameter's policy" "round_robin ios 1" "$(policy_of vg-lvm)"
ktap_check_eq "its table has no io_balance feature" "" "$(dm table vg-lvm | grep -o io_balance)"
split=$(read_split_dev /dev/vg/lvm 200 /dev/mapper/pv0 /dev/mapper/pv1)
ktap_check_eq "its reads alternate between the legs ($split)" "100 100" "$split"
lvremove -q -y vg >/dev/null 2>&1
vgremove -q -y vg >/dev/null 2>&1

ktap_done
