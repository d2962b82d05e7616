# SPDX-License-Identifier: GPL-2.0
#
# The disk of the crash suites (crash, crash-behind), sourced after lib.sh.
# Layout of /dev/vda in sectors: log, two legs, and a raw copy of the
# acknowledged data outside the mirror.
VDA=/dev/vda
LOG_START=0 LOG_LEN=2048
LEG_LEN=57344 # 28 MiB: 224 regions of 128 KiB
LEG0=2048 LEG1=$((2048 + LEG_LEN))
COPY=$((LEG1 + LEG_LEN)) ACK_MB=4
REGION=256 NR_REGIONS=$((LEG_LEN / REGION))

# layout [<leg 1 table>]: the log and leg devices (leg 1 linear unless a
# table is given, e.g. dm-delay over the same sectors).
layout() {
	dm create clog --table "0 $LOG_LEN linear $VDA $LOG_START" &&
		dm create cleg0 --table "0 $LEG_LEN linear $VDA $LEG0" &&
		dm create cleg1 --table "${1:-0 $LEG_LEN linear $VDA $LEG1}"
}

# log_clean_bits <n>: the first <n> region bits of the on-disk dm-log, one
# 0/1 (1 = clean) per line; dm-log keeps them from byte 1024 (LOG_OFFSET).
log_clean_bits() {
	local byte bit i=0
	for byte in $(dd if=$VDA bs=1 skip=1024 count=$((($1 + 7) / 8)) status=none | od -An -tu1); do
		for ((bit = 0; bit < 8 && i < $1; bit++, i++)); do
			echo $(((byte >> bit) & 1))
		done
	done
}
