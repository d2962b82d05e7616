# SPDX-License-Identifier: GPL-2.0
#
# bench/stats.awk: turns the guest's console log (BENCH* lines, see
# bench/guest.sh) into the report.  Run by bench/report:
#
#	awk -v out=<dir> -v data=<dir> -f bench/stats.awk <console-log>
#
# Writes <out>/raw.tsv (every measurement), <out>/summary.tsv (one line per
# phase/test/configuration/metric) and, into <data>, results.md.body (the
# Markdown tables), charts.list and the gnuplot data files the charts need.
# Works with mawk (Debian's default awk): no gawk extensions.

BEGIN {
	FS = "\t"
	raw = out "/raw.tsv"
	summary = out "/summary.tsv"
	print "phase\ttest\tconfig\trep\tmetric\tvalue\tunit" > raw
	print "phase\ttest\tconfig\tmetric\tn\tmedian\tmin\tmax\tratio_linear\tratio_c\tunit" > summary
	np = 0
	nfail = 0
	# Metrics shown as the table's main value, and which way is better.
	primary["time"] = 1; better["time"] = "lower"
	primary["bw"] = 1; better["bw"] = "higher"
	primary["iops"] = 1; better["iops"] = "higher"
	primary["p50"] = 1; better["p50"] = "lower"
	better["cpu_per_io"] = "lower"
	# Further metrics, as columns after the main value (median only;
	# cpu_per_io also as a ratio to c-mirror).
	label["cpu_per_io"] = "CPU us/IO | CPU ÷ c-mirror"
	label["p99"] = "p99 (us)"
	label["drain"] = "drain (s)"
	label["peak"] = "backlog peak (KiB)"
	label["probe_pct"] = "probe reads (% of reads)"
}

function add_phase(p) {
	if (!(p in pseen)) { pseen[p] = 1; plist[++np] = p }
}
function add_test(p, t) {
	add_phase(p)
	if (!((p, t) in tseen)) { tseen[p, t] = 1; nt[p]++; tlist[p, nt[p]] = t }
}
function add_config(p, c) {
	add_phase(p)
	if (!((p, c) in cseen)) { cseen[p, c] = 1; nc[p]++; clist[p, nc[p]] = c }
}

# The median of a[1..n] (sorted in place).
function median(a, n,    i, j, x) {
	for (i = 2; i <= n; i++) {
		x = a[i]
		for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]
		a[j + 1] = x
	}
	if (n % 2) return a[(n + 1) / 2]
	return (a[n / 2] + a[n / 2 + 1]) / 2
}

# A value with as many digits as make sense for TCG measurements.
function fmt(v) {
	if (v == "") return "-"
	if (v >= 1000) return sprintf("%.0f", v)
	if (v >= 100) return sprintf("%.1f", v)
	if (v >= 10) return sprintf("%.2f", v)
	if (v >= 1) return sprintf("%.3f", v)
	return sprintf("%.4f", v)
}
function fmt_ratio(v) {
	if (v == "") return "-"
	if (v >= 10) return sprintf("%.1f", v)
	if (v >= 0.1) return sprintf("%.2f", v)
	if (v >= 0.01) return sprintf("%.3f", v)
	return sprintf("%.4f", v)
}

# Statistics of (p, t, c, m): sets S_n, S_med, S_min, S_max, S_rl, S_rc
# (the medians of the per-repetition ratios to linear and c-mirror).
function stats(p, t, c, m,    k, i, r, a, n, rl, nrl, rc, nrc, b) {
	k = p SUBSEP t SUBSEP c SUBSEP m
	S_n = 0; S_med = ""; S_min = ""; S_max = ""; S_rl = ""; S_rc = ""
	if (!(k in cnt)) return 0
	n = 0; nrl = 0; nrc = 0
	for (i = 1; i <= cnt[k]; i++) {
		r = rep_of[k, i]
		a[++n] = val[k, r]
		if (S_min == "" || val[k, r] < S_min) S_min = val[k, r]
		if (S_max == "" || val[k, r] > S_max) S_max = val[k, r]
		b = p SUBSEP t SUBSEP "linear" SUBSEP m SUBSEP r
		if ((b in byrep) && byrep[b] > 0) rl[++nrl] = val[k, r] / byrep[b]
		b = p SUBSEP t SUBSEP "c-mirror" SUBSEP m SUBSEP r
		if ((b in byrep) && byrep[b] > 0) rc[++nrc] = val[k, r] / byrep[b]
	}
	S_n = n
	S_mean = 0
	for (i = 1; i <= n; i++) S_mean += a[i] / n
	S_med = median(a, n)
	if (nrl) S_rl = median(rl, nrl)
	if (nrc) S_rc = median(rc, nrc)
	return n
}

{ sub(/\r$/, "") }

$1 == "BENCH-META" && NF >= 3 { meta[$2] = $3; next }
$1 == "BENCH-CONFIG" && NF >= 4 { add_config($2, $3); desc[$2, $3] = $4; next }
$1 == "BENCH-DONE" && NF >= 3 { pdur[$2] = $3; next }
$1 == "BENCH-FAIL" && NF >= 6 {
	add_phase($2)
	fl = $2 SUBSEP $3 SUBSEP $4 SUBSEP $6
	if (!(fl in failseen)) { failseen[fl] = 0; flist[++nfail] = fl }
	failseen[fl]++
	failrep[fl] = failrep[fl] (failrep[fl] == "" ? "" : ",") $5
	failcfg[$2, $4] = 1
	next
}
# A console line can be torn by a kernel message: only well-formed records.
$1 == "BENCH" && NF == 8 && $5 ~ /^[0-9]+$/ && $7 ~ /^-?[0-9]+(\.[0-9]+)?$/ {
	p = $2; t = $3; c = $4; r = $5; m = $6
	add_test(p, t); add_config(p, c)
	k = p SUBSEP t SUBSEP c SUBSEP m
	if (!((k, r) in val)) { cnt[k]++; rep_of[k, cnt[k]] = r }
	val[k, r] = $7 + 0
	byrep[p, t, c, m, r] = $7 + 0
	unit[p, t, m] = $8
	if (!((p, t, m) in mseen)) { mseen[p, t, m] = 1; nm[p, t]++; mlist[p, t, nm[p, t]] = m }
	got[p, c] = 1
	nrec++
	print p "\t" t "\t" c "\t" r "\t" m "\t" $7 "\t" $8 > raw
	next
}
/^\[ *[0-9]+\.[0-9]+\] / && /WARNING:|BUG:|Oops|general protection|rust_panic|UBSAN:|KASAN:/ {
	splat[++nsplat] = $0
}

END {
	body = data "/results.md.body"
	charts = data "/charts.list"
	printf "" > charts
	printf "" > body
	if (nrec == 0) print "**No measurements were found in the console log.**\n" > body

	for (pi = 1; pi <= np; pi++) {
		p = plist[pi]
		printf "## Phase `%s`", p > body
		if (pdur[p] != "") printf " (%.0f s)", pdur[p] > body
		print "\n" > body
		if (p == "nbd") {
			printf "Local leg: memory-backed null_blk.  Remote leg: NBD served from another network namespace over a veth pair, netem `%s`", \
				"delay 15ms rate 1384kbit" > body
			if (meta["nbd.rtt_ms"] != "") printf " on both ends (ping RTT %s ms)", meta["nbd.rtt_ms"] > body
			print ".\n" > body
		} else if (p == "iscsi") {
			printf "Local leg: memory-backed null_blk.  Remote leg: %s", meta["iscsi.remote"] > body
			if (meta["iscsi.rtt_ms"] != "") printf " (ping RTT %s ms)", meta["iscsi.rtt_ms"] > body
			print ".  The `-rf` configurations list the remote leg first.\n" > body
		} else if (p == "write") {
			print "The `nbd` phase's legs.  Every write goes to both legs; `md-raid1-wb` and `rs-wb` acknowledge it once the local leg has it" > body
			print "and copy it to the remote leg in the background (at most " meta["write.max_write_behind"] " sectors behind).  *drain*: how long after the" > body
			print "test's last acknowledgement the remote leg had caught up; *backlog peak*: dm-mirror-rs's `peak_sectors`.\n" > body
		} else if (p == "delay" && meta["delay.remote"] != "") {
			print "Local leg: memory-backed null_blk.  Remote leg: " meta["delay.remote"] ".\n" > body
		} else if (p == "equal" && meta["equal.legs"] != "") {
			print "Legs: " meta["equal.legs"] ".  Baseline `linear`: one of those legs alone.\n" > body
		} else if (p == "step" && meta["step.legs"] != "") {
			print "Legs: " meta["step.legs"] ".  Random 4 KiB reads, 4 in flight.  *step-slow*: time from slowing the local leg" > body
			print "to the first 100 ms with at most 10% of the reads on it; *step-recover*: time from its recovery to the first" > body
			print "100 ms with at least 90% on it (the whole window if never: a mirror that reads its default leg only).\n" > body
		} else if (p == "cpu" && meta["cpu.legs"] != "") {
			print "Legs: " meta["cpu.legs"] ".  IOPS here measure the CPU cost of the whole I/O path under TCG;" > body
			print "*fio-randwrite-qd1*: the write phase's QD1 writes without a remote leg (what the write path itself costs).\n" > body
		} else if (p == "matrix" || p == "matrix-iscsi") {
			print "The `" (p == "matrix" ? "nbd" : "iscsi") "` phase's legs.  Direct reads over " meta["fio_region_mb"] " MiB, at most " meta["fio_cap"] " each; every configuration is created" > body
			print "anew in each repetition and its cells run top to bottom, so the first cell reads a just-created mapping." > body
			print "The best static choice is the local leg (`c-mirror`, `rs-local`).\n" > body
		}
		print "| configuration | what |" > body
		print "|---|---|" > body
		for (ci = 1; ci <= nc[p]; ci++) {
			c = clist[p, ci]
			print "| `" c "` | " desc[p, c] " |" > body
		}
		print "" > body

		for (ti = 1; ti <= nt[p]; ti++) {
			t = tlist[p, ti]
			pm = ""; share = ""; ne = 0
			for (mi = 1; mi <= nm[p, t]; mi++) {
				m = mlist[p, t, mi]
				if (m in primary) pm = m
				else if (m ~ /_share$/) share = m
				else if (m in label) extra[++ne] = m
			}
			if (pm == "") continue
			printf "### %s: %s", p, t > body
			printf " - %s in %s, %s is better\n\n", pm, unit[p, t, pm], better[pm] > body
			hdr = "| configuration | median | min - max | n | ÷ linear | ÷ c-mirror |"
			sep = "|---|---:|---:|---:|---:|---:|"
			if (share != "") {
				hdr = hdr (share == "leg0_share" ? " leg 0 share |" : " local share |")
				sep = sep "---:|"
			}
			for (ei = 1; ei <= ne; ei++) {
				hdr = hdr " " label[extra[ei]] " |"
				sep = sep (extra[ei] == "cpu_per_io" ? "---:|---:|" : "---:|")
			}
			print hdr > body
			print sep > body
			dat = data "/" p "-" t ".dat"
			printf "" > dat
			for (ci = 1; ci <= nc[p]; ci++) {
				c = clist[p, ci]
				if (!stats(p, t, c, pm)) {
					# Not run for this test (the write test runs on a
					# subset) unless the configuration failed.
					if (!failcfg[p, c]) continue
					line = "| `" c "` | - | - | 0 | - | - |"
					if (share != "") line = line " - |"
					for (ei = 1; ei <= ne; ei++)
						line = line (extra[ei] == "cpu_per_io" ? " - | - |" : " - |")
					print line (failcfg[p, c] ? " (failed, see below)" : "") > body
					continue
				}
				line = "| `" c "` | " fmt(S_med) " | " fmt(S_min) " - " fmt(S_max) " | " S_n " | " \
					fmt_ratio(S_rl) " | " fmt_ratio(S_rc) " |"
				printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p, t, c, pm, S_n, S_med, S_min, \
					S_max, S_rl, S_rc, unit[p, t, pm] > summary
				printf "\"%s\"\t%s\t%s\t%s\t%s\t%s\n", c, S_med, S_min, S_max, \
					(S_rl == "" ? "NaN" : S_rl), (S_rc == "" ? "NaN" : S_rc) > dat
				if (share != "") {
					if (stats(p, t, c, share)) {
						line = line " " sprintf("%.0f%%", S_med) " |"
						printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t\t%%\n", p, t, c, share, S_n, S_med, \
							S_min, S_max > summary
					} else line = line " - |"
				}
				for (ei = 1; ei <= ne; ei++) {
					m = extra[ei]
					if (stats(p, t, c, m)) {
						line = line " " fmt(S_med) " |"
						if (m == "cpu_per_io") line = line " " fmt_ratio(S_rc) " |"
						printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p, t, c, m, S_n, \
							S_med, S_min, S_max, S_rl, S_rc, unit[p, t, m] > summary
					} else line = line (m == "cpu_per_io" ? " - | - |" : " - |")
				}
				print line > body
			}
			print "" > body
			close(dat)
			print p "\t" t "\t" pm "\t" unit[p, t, pm] "\t" better[pm] > charts
		}
	}

	# The original measurements the bench reproduces (issue 5).
	if (stats("nbd", "ext4-read", "rs-remote", "time")) {
		remote = S_med
		print "## Against the original measurements\n" > body
		print "Reading a 2 MB file through ext4, caches dropped, local leg + remote leg at 1.4 Mbit/s, 30 ms RTT." > body
		print "Absolute times differ (TCG, a different machine, maybe a different link); compare the" > body
		print "ratios to `remote only`.  The mean is shown because a round-robin schedule meets a file read" > body
		print "at a random point of its cycle, so single reads are either local-fast or remote-slow.\n" > body
		print "| | original | ratio to remote | this run: median | min - max | mean | mean ÷ remote median |" > body
		print "|---|---:|---:|---:|---:|---:|---:|" > body
		row("round robin (ios 128)", 1.85, "rs-rr128")
		row("round robin, ios 1 (not in the original)", "", "rs-rr1")
		row("local only (default leg local)", 0.04, "rs-local")
		row("remote only (default leg remote)", 3.52, "rs-remote")
		row("adaptive (not in the original)", "", "rs-adaptive")
		row("C dm-mirror (not in the original)", "", "c-mirror")
		print "" > body
	}

	if (nfail) {
		print "## Failures\n" > body
		print "| phase | test | configuration | repetitions | reason |" > body
		print "|---|---|---|---|---|" > body
		for (i = 1; i <= nfail; i++) {
			split(flist[i], f, SUBSEP)
			print "| " f[1] " | " f[2] " | `" f[3] "` | " failrep[flist[i]] " | " f[4] " |" > body
		}
		print "" > body
	}
	missing = ""
	for (pi = 1; pi <= np; pi++)
		for (ci = 1; ci <= nc[plist[pi]]; ci++)
			if (!((plist[pi], clist[plist[pi], ci]) in got))
				missing = missing " " plist[pi] "/" clist[plist[pi], ci]
	if (missing != "") print "Configurations without any number:" missing "\n" > body
	if (nsplat) {
		print "## Kernel warnings during the run\n\n```" > body
		for (i = 1; i <= nsplat && i <= 20; i++) print splat[i] > body
		print "```\n" > body
	}

	# Meta for bench/report (sourced by bash: keys are plain words).
	for (k in meta) {
		v = meta[k]
		gsub(/'/, "", v)
		kk = k
		gsub(/[^A-Za-z0-9_]/, "_", kk)
		print "META_" kk "='" v "'" > (data "/meta.sh")
	}
	print "NREC=" nrec + 0 > (data "/meta.sh")
	print "NFAIL=" nfail + 0 > (data "/meta.sh")
	print "NSPLAT=" nsplat + 0 > (data "/meta.sh")
}

function row(label, orig, c,    s) {
	s = "| " label " | " (orig == "" ? "-" : orig " s") " | " (orig == "" ? "-" : sprintf("%.2f", orig / 3.52)) " | "
	if (stats("nbd", "ext4-read", c, "time"))
		s = s fmt(S_med) " s | " fmt(S_min) " - " fmt(S_max) " | " fmt(S_mean) " s | " sprintf("%.3f", S_mean / remote) " |"
	else
		s = s "- | - | - | - |"
	print s > body
}
